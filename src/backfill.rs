//! `auditrelay backfill`: collect one source's history over `[since, until)` and deliver it to
//! every configured sink, then exit.
//!
//! The requested range is part of the backfill's state. Each range runs as its own source,
//! `<name>.backfill.<from>-<until>` (times as `20260318T120000Z`): its own checkpoint (so the
//! live source's is never moved back, and no checkpoint ever moves backwards) and its own rate
//! limiter, on the vendor's documented limits. Before it starts, the backfill reads which ranges
//! earlier runs completed (their checkpoints reached their `until`) and asks only the part(s) of
//! the new range they did not cover: a second run with an earlier `--since` collects exactly what
//! the first did not, and a range already covered says so ("already covered: <from> to <until>")
//! and exits 0. Asking only the missing parts, rather than the whole range again, is what keeps
//! a re-run free of duplicates: dedupe keys are kept only for the overlap plus a day, so a
//! covered range asked again could enqueue its records twice.
//!
//! Interrupted (Ctrl-C, SIGTERM, a crash), the same command resumes: a range started at the same
//! `from` and not finished is taken up from its checkpoint (also when `--until` defaulted to a
//! later "now"). A backfill of a narrower or shifted range after an interruption starts that range
//! from its beginning, so records the interrupted run had stored may arrive twice (with the same
//! `metadata.uid`). A checkpoint of the older form `<name>.backfill` (no range) is left alone and
//! covers nothing. It takes the state directory's lock like the daemon, so the service is stopped
//! while it runs. Records the live source already collected in the same range arrive again (with
//! the same `metadata.uid`): choose `--until` at or before the live source's `start` to avoid that.
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
use chrono::{DateTime, NaiveDateTime, SubsecRound as _, Utc};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, SourceConfig, StartAt};
use crate::daemon::{self, RunOptions, SourceOutcome};
use crate::queue::{QueueError, QueueView, database_path};
use crate::sources::{Checkpoint, RunMode, SourceStats};

/// What `auditrelay backfill` was asked.
#[derive(Debug, Clone)]
pub struct Backfill {
    pub config: PathBuf,
    pub source: String,
    pub since: DateTime<Utc>,
    /// `None`: now.
    pub until: Option<DateTime<Utc>>,
}

/// How a range's bounds are written in its source name.
const NAME_TIME: &str = "%Y%m%dT%H%M%SZ";

/// The source name of the backfill of `source` over `[from, until)`.
pub fn range_source_name(source: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> String {
    format!("{source}.backfill.{}-{}", from.format(NAME_TIME), until.format(NAME_TIME))
}

/// A range an earlier backfill of this source worked on, read back from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRun {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Its checkpoint reached `until`.
    pub complete: bool,
}

/// The `[from, until)` of a range source name of `source`, if `name` is one.
fn parse_range_name(source: &str, name: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let rest = name.strip_prefix(source)?.strip_prefix(".backfill.")?;
    let (from, until) = rest.split_once('-')?;
    let time = |s: &str| NaiveDateTime::parse_from_str(s, NAME_TIME).ok().map(|t| t.and_utc());
    Some((time(from)?, time(until)?))
}

/// The ranges earlier backfills of `source` ran, from the checkpoints in `checkpoints`
/// (source name, stored state).
pub fn range_runs<'a>(source: &str, checkpoints: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<RangeRun> {
    let mut runs = Vec::new();
    for (name, state) in checkpoints {
        let Some((from, until)) = parse_range_name(source, name) else { continue };
        let done = serde_json::from_str::<Checkpoint>(state).ok().and_then(|cp| cp.done_until);
        runs.push(RangeRun { from, until, complete: done.is_some_and(|d| d >= until) });
    }
    runs
}

/// The completed ranges merged into disjoint intervals, in order.
fn covered(runs: &[RangeRun]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: Vec<_> = runs.iter().filter(|r| r.complete).map(|r| (r.from, r.until)).collect();
    spans.sort();
    let mut merged: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (from, until) in spans {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(until),
            _ => merged.push((from, until)),
        }
    }
    merged
}

/// The ranges to run for `[since, until)`: what the completed runs did not cover, each
/// beginning with the unfinished run that started at the same instant (if one fits), so an
/// interrupted backfill resumes from its checkpoint. Empty: the whole range is covered.
pub fn plan(since: DateTime<Utc>, until: DateTime<Utc>, runs: &[RangeRun]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut missing = Vec::new();
    let mut at = since;
    for (from, to) in covered(runs) {
        if to <= at || from >= until {
            continue;
        }
        if from > at {
            missing.push((at, from));
        }
        at = at.max(to);
    }
    if at < until {
        missing.push((at, until));
    }
    let mut parts = Vec::new();
    for (mut from, to) in missing {
        while let Some(resume) = runs
            .iter()
            .filter(|r| !r.complete && r.from == from && r.until > from && r.until <= to)
            .map(|r| r.until)
            .max()
        {
            parts.push((from, resume));
            from = resume;
        }
        if from < to {
            parts.push((from, to));
        }
    }
    parts
}

/// The merged completed interval holding all of `[since, until)`.
fn covering(since: DateTime<Utc>, until: DateTime<Utc>, runs: &[RangeRun]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    covered(runs).into_iter().find(|(from, to)| *from <= since && until <= *to)
}

/// The checkpoints in `config`'s state database (none before the first run; an older schema
/// cannot hold a range run yet).
fn stored_checkpoints(config: &Config) -> anyhow::Result<Vec<(String, String)>> {
    if !database_path(&config.state_dir).exists() {
        return Ok(Vec::new());
    }
    let mut view = match QueueView::open(&config.state_dir) {
        Ok(v) => v,
        Err(QueueError::OlderSchema { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e).context("cannot read the earlier backfills' ranges"),
    };
    let overview = view.overview().context("cannot read the earlier backfills' ranges")?;
    Ok(overview.checkpoints.into_iter().map(|c| (c.source, c.state)).collect())
}

pub async fn run(args: Backfill, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let clock = Clock::system();
    // Whole seconds: the range is written into the source's name and read back exactly.
    let since = args.since.trunc_subsecs(0);
    let until = args.until.unwrap_or_else(|| clock.now_utc()).trunc_subsecs(0);
    if since >= until {
        bail!("--since ({}) must be before --until ({until})", args.since);
    }
    let Some(live) = config.sources.iter().find(|s| s.name == args.source).cloned() else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("{}: no source named {:?} (sources: {})", args.config.display(), args.source, names.join(", "));
    };
    let label = format!("{}.backfill", args.source);
    let checkpoints = stored_checkpoints(&config)?;
    let runs = range_runs(&args.source, checkpoints.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    let parts = plan(since, until, &runs);
    if parts.is_empty() {
        let (from, to) = covering(since, until, &runs).unwrap_or((since, until));
        println!("backfill {label}: already covered: {from} to {to}; nothing to collect");
        return Ok(ExitCode::SUCCESS);
    }
    if parts != [(since, until)] {
        let asked: Vec<String> = parts.iter().map(|(f, t)| format!("{f} to {t}")).collect();
        eprintln!("backfill {label}: earlier runs covered part of the range; collecting {}", asked.join(", "));
    }
    for (from, to) in parts {
        let code = run_range(&config, &live, &label, from, to, shutdown.clone()).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the backfill of one range to its end (or its interruption), printing its outcome.
async fn run_range(
    config: &Config,
    live: &SourceConfig,
    label: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    shutdown: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let mut config = config.clone();
    let clock = Clock::system();
    let mut source = live.clone();
    source.name = range_source_name(&live.name, since, until);
    source.start = StartAt::At(since);
    source.until = Some(until);
    // The window end is fixed: data the vendor indexes late is not waited for.
    source.lag = Duration::ZERO;
    let windows = ((until - since).to_std().unwrap_or_default().as_secs_f64() / source.max_span.as_secs_f64())
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
        let clock = clock.clone();
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
                "backfill {label}: done: {} records stored ({} duplicates skipped) from {since} to {until}; delivered: {}",
                stats.stored,
                stats.duplicates,
                delivered.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(SourceOutcome::Failed(e)) => {
            eprintln!("backfill {label}: failed: {e}");
            Ok(ExitCode::FAILURE)
        }
        _ => {
            println!(
                "backfill {label}: interrupted after {} records; run the same command again to resume",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_773_835_200 + h * 3600, 0).expect("a time")
    }

    fn run(from: i64, until: i64, complete: bool) -> RangeRun {
        RangeRun { from: t(from), until: t(until), complete }
    }

    #[test]
    fn test_plan_asks_only_what_completed_runs_did_not_cover() {
        // Nothing yet: the whole range.
        assert_eq!(plan(t(0), t(10), &[]), [(t(0), t(10))]);
        // [5, 10) done: an earlier since asks [0, 5) only; a wider one both sides.
        let done = [run(5, 10, true)];
        assert_eq!(plan(t(0), t(10), &done), [(t(0), t(5))]);
        assert_eq!(plan(t(0), t(12), &done), [(t(0), t(5)), (t(10), t(12))]);
        // Covered, also by two adjacent runs: nothing.
        assert!(plan(t(6), t(9), &done).is_empty());
        assert!(plan(t(0), t(10), &[run(0, 5, true), run(5, 10, true)]).is_empty());
        assert_eq!(covering(t(1), t(9), &[run(0, 5, true), run(5, 10, true)]), Some((t(0), t(10))));
    }

    #[test]
    fn test_plan_resumes_an_unfinished_run_from_the_same_start() {
        // Interrupted [0, 4) then asked [0, 6) (`--until` defaulted to a later now): [0, 4)
        // resumes under its own name, then [4, 6).
        assert_eq!(plan(t(0), t(6), &[run(0, 4, false)]), [(t(0), t(4)), (t(4), t(6))]);
        // An unfinished run that does not start where a missing part does is not resumed.
        assert_eq!(plan(t(0), t(6), &[run(1, 4, false)]), [(t(0), t(6))]);
    }

    #[test]
    fn test_range_names_round_trip_and_only_finished_runs_are_complete() {
        let name = range_source_name("a", t(0), t(10));
        assert_eq!(name, "a.backfill.20260318T120000Z-20260318T220000Z");
        let done =
            serde_json::to_string(&Checkpoint { done_until: Some(t(10)), ..Checkpoint::default() }).expect("json");
        let half =
            serde_json::to_string(&Checkpoint { done_until: Some(t(4)), ..Checkpoint::default() }).expect("json");
        let other = range_source_name("ab", t(0), t(10));
        let runs = range_runs(
            "a",
            [(name.as_str(), done.as_str()), ("a.backfill", done.as_str()), (other.as_str(), done.as_str())],
        );
        assert_eq!(runs, [run(0, 10, true)]);
        let half_name = range_source_name("a", t(0), t(10));
        assert_eq!(range_runs("a", [(half_name.as_str(), half.as_str())]), [run(0, 10, false)]);
    }
}
