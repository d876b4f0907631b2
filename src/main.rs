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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: under systemd the journal would store escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { config, once, drain_timeout } => {
            let config = Config::load(&config)?;
            let mode = if once { RunMode::CatchUp } else { RunMode::Follow };
            let report =
                daemon::run(&config, Clock::system(), RunOptions { mode, drain_timeout }, shutdown_on_signal())
                    .await
                    .context("the agent could not start")?;
            Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Check { config, connect } => {
            let config = Config::load(&config)?;
            print!("{}", config.render_redacted());
            println!("# configuration OK: {} source(s), {} sink(s)", config.sources.len(), config.sinks.len());
            if !connect {
                return Ok(ExitCode::SUCCESS);
            }
            let mut failed = 0;
            for probe in sinks::probe_all(&config).await {
                match probe.outcome {
                    Ok(what) => println!("# sink {:?}: ok: {what}", probe.sink),
                    Err(why) => {
                        failed += 1;
                        println!("# sink {:?}: FAILED: {why}", probe.sink);
                    }
                }
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Demo { records, out } => demo::run(records, &out, shutdown_on_signal()).await,
        Command::Simulate(args) => {
            sim::run_simulate(args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
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
