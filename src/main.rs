//! Entry point: logging, signals, and the mapping of each subcommand to its work.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use auditrelay::cli::{Cli, Command};
use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::daemon::{self, RunOptions};
use auditrelay::sources::RunMode;
use auditrelay::{demo, sim, sinks};

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
            Ok(if report.failed() {
                ExitCode::FAILURE
            } else if report.dead_lettered() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Check { config, connect, credentials_dir } => {
            set_credentials_dir(credentials_dir)?;
            let config = Config::load(&config)?;
            print!("{}", config.render_redacted());
            println!("# configuration OK: {} source(s), {} sink(s)", config.sources.len(), config.sinks.len());
            if let Some(note) = state_dir_note(&config.state_dir) {
                println!("# note: {note}");
            }
            // Removed or renamed sinks against the queue's cursors (read-only; beside a running agent).
            match auditrelay::ops::sink_changes(&config) {
                Ok(notes) => notes.iter().for_each(|n| println!("# {n}")),
                Err(e) => println!(
                    "# note: cannot read the state database, so removed sinks' backlogs are not checked: {e:#}"
                ),
            }
            if !connect {
                return Ok(ExitCode::SUCCESS);
            }
            // One row per source (its credential, with the cheapest request) and per sink.
            let clock = Clock::system();
            let mut rows = Vec::new();
            for source in &config.sources {
                let outcome = match auditrelay::sources::http_client(source) {
                    Ok(http) => auditrelay::sources::probe(source, &http, &clock).await,
                    Err(e) => Err(e),
                };
                rows.push(("source", source.name.clone(), outcome));
            }
            for probe in sinks::probe_all(&config).await {
                rows.push(("sink", probe.sink, probe.outcome));
            }
            let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(4).max(4);
            println!("\n{:<6}  {:<width$}  {:<6}  DETAIL", "KIND", "NAME", "RESULT");
            let mut failed = 0;
            for (kind, name, outcome) in &rows {
                let (result, detail) = match outcome {
                    Ok(what) => ("ok", what.as_str()),
                    Err(why) => {
                        failed += 1;
                        ("FAILED", why.as_str())
                    }
                };
                println!("{kind:<6}  {name:<width$}  {result:<6}  {detail}");
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
    }
}

/// What `check` says of a `state_dir` that does not exist yet: who will create it, and as whom.
fn state_dir_note(dir: &std::path::Path) -> Option<String> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return None;
    }
    let me = match (std::env::var("USER"), current_uid()) {
        (Ok(name), Some(uid)) if !name.is_empty() => format!("{name}, uid {uid}"),
        (_, Some(uid)) => format!("uid {uid}"),
        (Ok(name), None) => name,
        (Err(_), None) => "this user".to_owned(),
    };
    let d = dir.display();
    Some(if dir == std::path::Path::new("/var/lib/auditrelay") {
        format!(
            "state_dir {d} does not exist yet: under the packaged unit systemd creates it when the service starts \
             (StateDirectory=auditrelay: owner auditrelay, mode 0750); `auditrelay run` started by hand creates it, \
             owned by the user running it (here: {me})"
        )
    } else {
        format!(
            "state_dir {d} does not exist yet: `auditrelay run` creates it when it starts, owned by the user running it \
             (here: {me}); under the packaged unit (User=auditrelay, ProtectSystem=strict) only /var/lib/auditrelay \
             is created and writable: create {d} for auditrelay and add it to ReadWritePaths="
        )
    })
}

/// This process's user id (the owner of `/proc/self`).
fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    None
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
