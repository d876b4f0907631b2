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
//! later "now"). A range interrupted *inside* a window (its checkpoint holds a sweep in progress:
//! pages of that window are stored, and only its own dedupe keys know them) is never asked again
//! under another name: any later backfill whose missing part meets what it has left is resumed
//! under its own name, whole, even where it reaches outside the range asked (a narrower or shifted
//! re-run collects it to its end, and says so on stderr); the rest of the new range runs around it.
//! A range interrupted between windows covers what its checkpoint passed; a narrower or shifted
//! range starts where it stopped, as a range of its own. Limit: a sweep in progress left by an
//! earlier version, whose range a later run already overlapped, cannot be resumed without asking
//! that overlap again; its window is then asked afresh, and the records its sweep had stored may
//! arrive twice (with the same `metadata.uid`). A checkpoint of the older form `<name>.backfill`
//! (no range) is left alone and covers nothing. It takes the state directory's lock like the
//! daemon, so the service is stopped while it runs. Records the live source already collected in
//! the same range arrive again (with the same `metadata.uid`): choose `--until` at or before the
//! live source's `start` to avoid that.
//!
//! Progress goes to stderr: a bar (windows done of the total, records, rate, ETA) on a
//! terminal, a plain line every ten seconds otherwise.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
    /// Its checkpoint's `done_until`: everything before it is stored (`None`: not one window yet).
    pub done: Option<DateTime<Utc>>,
    /// Its checkpoint holds a sweep in progress: pages of the window after `done` (after `from`
    /// before its first window) may be stored, and only this run, resumed under its own name
    /// (its own dedupe keys, its sweep going on from its next page), can ask that window without
    /// storing them twice.
    pub sweeping: bool,
}

impl RangeRun {
    /// Its checkpoint reached `until`.
    pub fn complete(&self) -> bool {
        self.done.is_some_and(|d| d >= self.until)
    }

    /// Where its checkpoint stands: `from` before its first window.
    fn reached(&self) -> DateTime<Utc> {
        self.done.unwrap_or(self.from).clamp(self.from, self.until)
    }
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
        let checkpoint = serde_json::from_str::<Checkpoint>(state).ok();
        let done = checkpoint.as_ref().and_then(|cp| cp.done_until);
        let sweeping = checkpoint.is_some_and(|cp| cp.sweep.is_some());
        runs.push(RangeRun { from, until, done, sweeping });
    }
    runs
}

/// What the runs stored, merged into disjoint intervals, in order: a completed run's range, and
/// of an unfinished one the part its checkpoint passed (`[from, done_until)`): asking that part
/// again under another range's name would store its records twice.
fn covered(runs: &[RangeRun]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut spans: Vec<_> = runs.iter().map(|r| (r.from, r.reached())).filter(|(from, to)| from < to).collect();
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

/// The ranges to run for `[since, until)`, as `(from, until)` of the range source each runs as:
/// what earlier runs did not cover ([`covered`]), with unfinished runs resumed under their own
/// name from their checkpoint where they can be (their dedupe keys hold what their overlap asks
/// again, their sweep in progress goes on from its next page). Empty: the whole range is covered.
///
/// A run stopped inside a window ([`RangeRun::sweeping`]) whose rest (`[reached, until)`) meets
/// a missing part is resumed whole, even where its range reaches outside `[since, until)`: asking
/// any of its window under another name would store the pages it stored twice. A run stopped
/// between windows is resumed where a missing part starts at its checkpoint and holds its rest,
/// unless its rest meets the window of a run stopped inside one; otherwise the part is asked as
/// a new range (it stored nothing past its checkpoint). A run whose rest meets what another run
/// stored is not resumed (it would ask that again).
pub fn plan(since: DateTime<Utc>, until: DateTime<Utc>, runs: &[RangeRun]) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let covered = covered(runs);
    let meets = |a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)| a.0 < b.1 && b.0 < a.1;
    // What a run resumed from its checkpoint asks.
    let rest = |r: &RangeRun| (r.reached(), r.until);
    let sweeping: Vec<&RangeRun> =
        runs.iter().filter(|r| r.sweeping && !r.complete() && !covered.iter().any(|c| meets(*c, rest(r)))).collect();
    let mut missing = Vec::new();
    let mut at = since;
    for (from, to) in &covered {
        if *to <= at || *from >= until {
            continue;
        }
        if *from > at {
            missing.push((at, *from));
        }
        at = at.max(*to);
    }
    if at < until {
        missing.push((at, until));
    }
    let mut parts = Vec::new();
    // Everything before it is planned (a resumed run may reach past the part it was met in).
    let mut planned = since;
    for (from, to) in missing {
        let mut from = from.max(planned);
        while from < to {
            let between = runs
                .iter()
                .filter(|r| !r.complete() && r.reached() == from && r.until > from && r.until <= to)
                .filter(|r| !sweeping.iter().any(|s| meets(rest(s), rest(r))))
                .max_by_key(|r| r.until);
            let inside = sweeping.iter().copied().filter(|r| meets(rest(r), (from, to))).min_by_key(|r| r.reached());
            // A run resumed between windows ends before any sweeping one's rest starts.
            let Some(resume) = between.or(inside) else {
                parts.push((from, to));
                break;
            };
            if resume.reached() > from {
                parts.push((from, resume.reached()));
            }
            parts.push((resume.from, resume.until));
            from = resume.until;
            planned = planned.max(resume.until);
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
    let now = clock.now_utc().trunc_subsecs(0);
    // Nothing exists past now: a range named with a later end could never be completed (no
    // checkpoint passes now), so a wider re-run would ask it all again. It is named, run and
    // remembered as ending now.
    let asked = args.until.map(|u| u.trunc_subsecs(0));
    let clamped = asked.filter(|u| *u > now);
    let until = asked.map_or(now, |u| u.min(now));
    if since >= until {
        match clamped {
            Some(asked) => {
                bail!("--since ({}) must be before now ({now}; --until {asked} is in the future)", args.since)
            }
            None => bail!("--since ({}) must be before --until ({until})", args.since),
        }
    }
    let Some(live) = config.sources.iter().find(|s| s.name == args.source).cloned() else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("{}: no source named {:?} (sources: {})", args.config.display(), args.source, names.join(", "));
    };
    let label = format!("{}.backfill", args.source);
    if let Some(asked) = clamped {
        eprintln!("backfill {label}: --until {asked} is in the future: clamped to now, {until}");
    }
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
    for (from, to) in parts.iter().filter(|(from, to)| *from < since || *to > until) {
        eprintln!(
            "backfill {label}: resuming the interrupted range {from} to {to} whole, past the range asked: it stopped \
             inside a window, and only it can ask the rest of that window without storing records twice"
        );
    }
    for (from, to) in parts {
        let clamped = clamped.filter(|_| to == until);
        let code = run_range(&config, &live, &label, from, to, clamped, shutdown.clone()).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the checkpoint of the range `[since, until)` of `source` stands now.
fn range_reached(config: &Config, source: &str, since: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let checkpoints = stored_checkpoints(config).ok()?;
    let runs = range_runs(source, checkpoints.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    runs.into_iter().find(|r| r.from == since && r.until == until).map(|r| r.reached())
}

/// Runs the backfill of one range to its end (or its interruption), printing its outcome;
/// `clamped`: the `--until` asked, in the future, that `until` (now) replaced.
async fn run_range(
    config: &Config,
    live: &SourceConfig,
    label: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    clamped: Option<DateTime<Utc>>,
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
            // No window passes the vendor's clock: where it is behind ours, the range ends
            // short of `until`, and says where (the same command later resumes it from there).
            let reached = range_reached(&config, &live.name, since, until).unwrap_or(until);
            let end = if reached < until {
                format!(
                    "{reached} (not {until}: no window passes the vendor's clock, which is behind ours; run the same \
                     command again later for the rest)"
                )
            } else if let Some(asked) = clamped {
                format!("{until} (clamped to now: --until {asked} is in the future)")
            } else {
                until.to_string()
            };
            println!(
                "backfill {label}: done: {} records stored ({} duplicates skipped) from {since} to {end}; delivered: {}",
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
    let started = clock.now();
    let line = |done: i64| {
        let records = stats.stored.load(Ordering::Relaxed);
        let secs = clock.now().saturating_duration_since(started).as_secs_f64().max(0.001);
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
        RangeRun { from: t(from), until: t(until), done: complete.then(|| t(until)), sweeping: false }
    }

    /// An unfinished run whose checkpoint stands at `done`.
    fn partial(from: i64, until: i64, done: i64) -> RangeRun {
        RangeRun { from: t(from), until: t(until), done: Some(t(done)), sweeping: false }
    }

    /// An unfinished run interrupted inside a window: its checkpoint stands at `done` (`None`:
    /// inside its first window) and holds a sweep in progress.
    fn mid_sweep(from: i64, until: i64, done: Option<i64>) -> RangeRun {
        RangeRun { from: t(from), until: t(until), done: done.map(t), sweeping: true }
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
        // Interrupted at 2: the same command resumes it under its own name, from its checkpoint.
        assert_eq!(plan(t(0), t(4), &[partial(0, 4, 2)]), [(t(0), t(4))]);
        assert_eq!(plan(t(0), t(6), &[partial(0, 4, 2)]), [(t(0), t(4)), (t(4), t(6))]);
    }

    #[test]
    fn test_plan_never_asks_again_what_an_unfinished_run_stored() {
        // [2, 8) stopped at 5 (interrupted, or a vendor clock behind ours): a wider range asks
        // [0, 2), then resumes [2, 8) from its checkpoint, then [8, 10).
        let stopped = [partial(2, 8, 5)];
        assert_eq!(plan(t(0), t(10), &stopped), [(t(0), t(2)), (t(2), t(8)), (t(8), t(10))]);
        // It cannot be resumed inside a narrower range: [5, 7) starts afresh where it stopped,
        // and [2, 5) is not asked again.
        assert_eq!(plan(t(0), t(7), &stopped), [(t(0), t(2)), (t(5), t(7))]);
        assert!(plan(t(3), t(5), &stopped).is_empty());
        assert_eq!(covering(t(3), t(5), &stopped), Some((t(2), t(5))));
        // Covered past its checkpoint by another run: not resumed (it would ask [5, 6) again).
        let overtaken = [partial(2, 8, 5), run(5, 6, true)];
        assert_eq!(plan(t(0), t(10), &overtaken), [(t(0), t(2)), (t(6), t(10))]);
    }

    #[test]
    fn test_plan_resumes_a_run_interrupted_inside_its_first_window_under_its_own_name() {
        // [2, 8) interrupted inside its first window (pages stored, no `done_until`): a wider
        // range asks [0, 2) as a new range and resumes [2, 8) from its sweep, never asking its
        // window under another name (other dedupe keys).
        let first = [mid_sweep(2, 8, None)];
        assert_eq!(plan(t(0), t(8), &first), [(t(0), t(2)), (t(2), t(8))]);
        assert_eq!(plan(t(0), t(10), &first), [(t(0), t(2)), (t(2), t(8)), (t(8), t(10))]);
        // The same command resumes it.
        assert_eq!(plan(t(2), t(8), &first), [(t(2), t(8))]);
        // Narrower: resumed whole, past the range asked.
        assert_eq!(plan(t(3), t(5), &first), [(t(2), t(8))]);
        // Shifted either way: resumed whole, the rest of the new range around it.
        assert_eq!(plan(t(4), t(10), &first), [(t(2), t(8)), (t(8), t(10))]);
        assert_eq!(plan(t(0), t(5), &first), [(t(0), t(2)), (t(2), t(8))]);
        // A range it does not meet is asked as it is.
        assert_eq!(plan(t(8), t(12), &first), [(t(8), t(12))]);
        assert_eq!(plan(t(0), t(2), &first), [(t(0), t(2))]);
    }

    #[test]
    fn test_plan_resumes_a_run_interrupted_inside_a_later_window_under_its_own_name() {
        // [2, 8) stopped inside the window after 5: unlike one stopped between windows, the
        // rest is not asked as a new range, not by a narrower or shifted range either.
        let mid = [mid_sweep(2, 8, Some(5))];
        assert_eq!(plan(t(0), t(10), &mid), [(t(0), t(2)), (t(2), t(8)), (t(8), t(10))]);
        assert_eq!(plan(t(0), t(7), &mid), [(t(0), t(2)), (t(2), t(8))]);
        assert_eq!(plan(t(0), t(7), &[partial(2, 8, 5)]), [(t(0), t(2)), (t(5), t(7))]);
        assert_eq!(plan(t(6), t(7), &mid), [(t(2), t(8))]);
        assert_eq!(plan(t(5), t(12), &mid), [(t(2), t(8)), (t(8), t(12))]);
        // What its checkpoint passed is covered: a range inside it asks nothing.
        assert!(plan(t(3), t(5), &mid).is_empty());
        assert_eq!(covering(t(3), t(5), &mid), Some((t(2), t(5))));
    }

    #[test]
    fn test_plan_never_resumes_a_run_across_the_window_of_one_interrupted_inside_it() {
        // [5, 8) not started and [6, 7) interrupted inside its window: resuming [5, 8) would ask
        // [6, 7) under another name, so [5, 6) is a new range and [6, 7) resumes.
        let runs = [run(5, 8, false), mid_sweep(6, 7, None)];
        assert_eq!(plan(t(5), t(10), &runs), [(t(5), t(6)), (t(6), t(7)), (t(7), t(10))]);
        // [2, 8) stopped between windows at 5, then [5, 7) interrupted inside its window: [5, 7)
        // resumes, [2, 8) is left (it stored nothing past 5), [7, 10) is new.
        let runs = [partial(2, 8, 5), mid_sweep(5, 7, None)];
        assert_eq!(plan(t(0), t(10), &runs), [(t(0), t(2)), (t(5), t(7)), (t(7), t(10))]);
        // Two runs inside windows, in order: each resumed, the gaps new.
        let runs = [mid_sweep(6, 7, None), mid_sweep(2, 4, Some(3))];
        assert_eq!(plan(t(0), t(10), &runs), [(t(0), t(2)), (t(2), t(4)), (t(4), t(6)), (t(6), t(7)), (t(7), t(10))]);
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
        assert!(runs[0].complete());
        let half_name = range_source_name("a", t(0), t(10));
        let half_run = range_runs("a", [(half_name.as_str(), half.as_str())]);
        assert_eq!(half_run, [partial(0, 10, 4)]);
        assert!(!half_run[0].complete());
        // Interrupted inside its first window: no `done_until`, a sweep in progress.
        let window = crate::sources::Window { from: t(0), to: t(1) };
        let sweep = crate::sources::Sweep::new(window, crate::sources::PageCursor::Offset { skip: 400 });
        let first = serde_json::to_string(&Checkpoint { sweep: Some(sweep), ..Checkpoint::default() }).expect("json");
        assert_eq!(range_runs("a", [(name.as_str(), first.as_str())]), [mid_sweep(0, 10, None)]);
    }
}
