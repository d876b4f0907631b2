//! `auditrelay backfill`: collect one source's history over `[since, until)` and deliver it to
//! every configured sink, then exit.
//!
//! The backfill runs as its own source, `<name>.backfill`: its own checkpoint (so the live
//! source's is never moved back) and its own rate limiter, on the vendor's documented limits.
//! Interrupted (Ctrl-C, SIGTERM, a crash), the same command resumes from that checkpoint; run
//! once it is complete, it has nothing left to do. It takes the state directory's lock like the
//! daemon, so the service is stopped while it runs. Records the live source already collected
//! in the same range arrive again (with the same `metadata.uid`): choose `--until` at or before
//! the live source's `start` to avoid that.
//!
//! Progress goes to stderr: a bar (windows done of the total, records, rate, ETA) on a
//! terminal, a plain line every ten seconds otherwise.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, StartAt};
use crate::daemon::{self, RunOptions, SourceOutcome};
use crate::sources::{RunMode, SourceStats};

/// What `auditrelay backfill` was asked.
#[derive(Debug, Clone)]
pub struct Backfill {
    pub config: PathBuf,
    pub source: String,
    pub since: DateTime<Utc>,
    /// `None`: now.
    pub until: Option<DateTime<Utc>>,
}

pub async fn run(args: Backfill, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.config)?;
    let clock = Clock::system();
    let until = args.until.unwrap_or_else(|| clock.now_utc());
    if args.since >= until {
        bail!("--since ({}) must be before --until ({until})", args.since);
    }
    let Some(live) = config.sources.iter().find(|s| s.name == args.source).cloned() else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("{}: no source named {:?} (sources: {})", args.config.display(), args.source, names.join(", "));
    };
    let mut source = live;
    source.name = format!("{}.backfill", args.source);
    source.start = StartAt::At(args.since);
    source.until = Some(until);
    // The window end is fixed: data the vendor indexes late is not waited for.
    source.lag = Duration::ZERO;
    let name = source.name.clone();
    let windows = ((until - args.since).to_std().unwrap_or_default().as_secs_f64() / source.max_span.as_secs_f64())
        .ceil()
        .max(1.0) as u64;
    config.sources = vec![source];
    // The service is stopped while a backfill runs; its metrics listener is not needed.
    config.telemetry = Default::default();

    let (observe, mut observed) = tokio::sync::watch::channel(Vec::new());
    let opts = RunOptions { mode: RunMode::CatchUp, observe: Some(Arc::new(observe)), ..RunOptions::default() };
    let progress_stop = CancellationToken::new();
    let progress = tokio::spawn({
        let stop = progress_stop.clone();
        let (since, clock) = (args.since, clock.clone());
        async move {
            let stats = loop {
                if let Some((_, s)) = observed.borrow_and_update().first() {
                    break Arc::clone(s);
                }
                tokio::select! {
                    changed = observed.changed() => if changed.is_err() { return },
                    _ = stop.cancelled() => return,
                }
            };
            show_progress(&stats, since, until, windows, &clock, stop).await;
        }
    });
    let report = daemon::run(&config, clock, opts, shutdown).await.context("the backfill could not start");
    progress_stop.cancel();
    let _ = progress.await;
    let report = report?;
    let source = report.sources.first();
    let stats = source.map(|s| s.stats).unwrap_or_default();
    let delivered: Vec<String> =
        report.sinks.iter().map(|s| format!("{} {} (backlog {})", s.name, s.stats.events, s.backlog)).collect();
    match source.map(|s| &s.outcome) {
        Some(SourceOutcome::CaughtUp) => {
            println!(
                "backfill {name}: done: {} records stored ({} duplicates skipped) from {} to {until}; delivered: {}",
                stats.stored,
                stats.duplicates,
                args.since,
                delivered.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(SourceOutcome::Failed(e)) => {
            eprintln!("backfill {name}: failed: {e}");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            println!(
                "backfill {name}: interrupted after {} records; run the same command again to resume",
                stats.stored
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A bar on a terminal, a line every ten seconds elsewhere, until `stop`.
async fn show_progress(
    stats: &SourceStats,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    windows: u64,
    clock: &Clock,
    stop: CancellationToken,
) {
    let span_ms = (until - since).num_milliseconds().max(1);
    let done = || {
        let at = stats.checkpoint_ms.load(Ordering::Relaxed);
        if at <= 0 { 0 } else { (at - since.timestamp_millis()).clamp(0, span_ms) }
    };
    let started = Instant::now();
    let line = |done: i64| {
        let records = stats.stored.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let windows_done = (done as f64 / span_ms as f64 * windows as f64).floor() as u64;
        format!("windows {windows_done}/{windows}, {records} records, {:.0}/s", records as f64 / secs)
    };
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(span_ms as u64);
        let style = indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    });
    let every = if terminal { Duration::from_millis(250) } else { Duration::from_secs(10) };
    loop {
        let d = done();
        match &bar {
            Some(bar) => {
                bar.set_position(d as u64);
                bar.set_message(line(d));
            }
            None => eprintln!("backfill: {:.0}% {}", d as f64 * 100.0 / span_ms as f64, line(d)),
        }
        tokio::select! {
            _ = clock.sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    if let Some(bar) = bar {
        bar.set_position(done() as u64);
        bar.finish_with_message(line(done()));
    }
}
