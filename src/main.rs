//! Entry point: logging, signals, and the mapping of each subcommand to its work.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use auditrelay::cli::{Cli, Command, ElasticsearchCommand, VendorsCommand};
use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::daemon::{self, RunOptions};
use auditrelay::sources::RunMode;
use auditrelay::vendors::defined;
use auditrelay::{demo, sim};

fn main() -> ExitCode {
    let cli = Cli::parse();
    auditrelay::logging::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            auditrelay::logging::fatal(cli.log_format, &format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let log_format = cli.log_format;
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            auditrelay::logging::fatal(log_format, &report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause added only if the text so far does not already hold
/// it (most of our messages quote their cause; `{:#}` would print it twice).
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, once, drain_timeout, credentials_dir } => {
            set_credentials_dir(credentials_dir)?;
            let config = Config::load(&config)?;
            let mode = if once { RunMode::CatchUp } else { RunMode::Follow };
            let opts = RunOptions { mode, drain_timeout, reload: Some(reload_on_sighup()), observe: None };
            let report = daemon::run(&config, Clock::system(), opts, shutdown_on_signal())
                .await
                .context("the agent could not start")?;
            if !once {
                return Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS });
            }
            println!("{}", report.summary_line());
            Ok(if report.failed() || report.undelivered() > 0 {
                ExitCode::FAILURE
            } else if report.dead_lettered() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { config, connect, show_config, json, credentials_dir } => {
            set_credentials_dir(credentials_dir)?;
            auditrelay::check::run(auditrelay::check::CheckArgs { config, connect, show_config, json }).await
        }
        Command::Reload { config, pid, timeout, credentials_dir } => {
            set_credentials_dir(credentials_dir)?;
            println!("{}", auditrelay::reload::run(auditrelay::reload::ReloadArgs { config, pid, timeout }).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { records, out } => demo::run(records, &out, shutdown_on_signal()).await,
        Command::Backfill { config, source, since, until, allow_overlap } => {
            let args = auditrelay::backfill::Backfill { config, source, since, until, allow_overlap };
            auditrelay::backfill::run(args, shutdown_on_signal()).await
        }
        Command::Simulate(args) => {
            sim::run_simulate(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue { command } => {
            print!("{}", auditrelay::ops::run(command).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Vendors { dir, config, json, command } => Ok(match command {
            Some(VendorsCommand::Check { file }) => defined::list::run_check(&file),
            None => defined::list::run_list(dir.as_deref(), config.as_deref(), json),
        }),
        Command::Elasticsearch { command: ElasticsearchCommand::Template { opensearch, dataset } } => {
            use auditrelay::sinks::elasticsearch;
            elasticsearch::check_name_part("dataset", &dataset, true).map_err(|e| anyhow::anyhow!("--dataset: {e}"))?;
            let template = elasticsearch::template(&dataset, opensearch);
            println!("{}", serde_json::to_string_pretty(&template)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `--credentials-dir DIR`: `$CREDENTIALS_DIRECTORY` for every configuration load.
fn set_credentials_dir(dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        let dir = std::path::absolute(&dir).with_context(|| format!("--credentials-dir {}", dir.display()))?;
        let text = dir.into_os_string().into_string().map_err(|d| {
            anyhow::anyhow!("--credentials-dir {}: not valid UTF-8", std::path::Path::new(&d).display())
        })?;
        Config::set_credentials_dir(text);
    }
    Ok(())
}

/// Notified on every SIGHUP: the daemon then reloads its configuration file.
fn reload_on_sighup() -> std::sync::Arc<tokio::sync::Notify> {
    let reload = std::sync::Arc::new(tokio::sync::Notify::new());
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let fire = std::sync::Arc::clone(&reload);
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the configuration");
                        fire.notify_one();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: reload needs a restart"),
        }
    }
    reload
}

/// A token cancelled by the first SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                },
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("signal received: shutting down");
        fire.cancel();
    });
    token
}
