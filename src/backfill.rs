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
//! daemon, so the service is stopped while it runs.
//!
//! It never resends what the live source delivered ([`LiveView`], read from the live source's
//! checkpoint before anything runs). The live source records where its first window began
//! (`Checkpoint::began`) and no later window of it starts earlier, so everything it ever asked
//! lies at or after that time: without `--until` a backfill ends there ([`default_until`]); if
//! the live source never ran, now (it will ask from its `start` when it first runs, and stderr
//! says so). A checkpoint of an older version lacks `began`: a fixed `start` is used (where its
//! first window began; the overlap after a short first window may have reached before it, and
//! what it collected there then comes again — never a stretch left to nobody), unless the
//! checkpoint asks again before it (the start was changed); a relative start is refused.
//! `queue set-checkpoint` keeps `began` (the earlier of it and the new `done_until`).
//! The configuration cannot tell a fixed `start` changed to a later time since: stderr names the
//! bound derived. Each planned range is checked ([`check_overlap`]): one reaching past the live
//! source's start is refused (exit [`USAGE_EXIT`]) unless `--allow-overlap`. The queue dedupes
//! every range's pages against the live source's keys as well as its own
//! (`queue::backfilled_source`), reading them only: the live source never reads a range's keys,
//! so it stores every record it did not store itself and gains no history from a range (a
//! never-run live source still starts fresh). Instead a range never stores where the live
//! source will ask again, below, so the live source has nothing of a range's to skip. With
//! `--allow-overlap` that dedupe is what keeps the overlap free of duplicates, and it holds only
//! where the live source's keys are kept, from the bound they were pruned to (`dedupe_pruned`:
//! the overlap plus a day behind its last window; unknown when an older version pruned them) up
//! to where it asks again when it resumes (its overlap, its sweep in progress: there it would
//! store the range's records a second time). A range reaching outside that is refused too,
//! naming the bounds it may use. Where the live source's start cannot be told and `--until` is
//! given, the range runs and stderr says what may arrive again; nothing goes twice silently.
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
    /// `None`: where the live source began (now if it never ran).
    pub until: Option<DateTime<Utc>>,
    /// Let the range reach into the live source's range (deduped against its keys).
    pub allow_overlap: bool,
}

/// The exit code of a backfill refused as asked (an overlap with the live source, an `--until`
/// that cannot be derived): clap's code for a usage error.
pub const USAGE_EXIT: u8 = 2;

/// A backfill refused as asked: the operator must change the command (exit [`USAGE_EXIT`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What the live source's state says about the range it owns, read before a backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveView {
    /// No checkpoint: it never stored a page. Its first window will start at `start`
    /// (its configured `start`, resolved now).
    NeverRan { start: DateTime<Utc> },
    Ran {
        /// The earliest time it may have asked; `Err`: unknown, and why.
        start: Result<DateTime<Utc>, String>,
        /// `start` is derived from the configured `start` (an older checkpoint), not recorded.
        derived: bool,
        /// Where it asks again when it resumes ([`Checkpoint::asks_again_from`]).
        asks_from: DateTime<Utc>,
        /// The end of what it collected or is collecting (`done_until`, or its sweep's end).
        reached: DateTime<Utc>,
        /// Its dedupe keys are kept from here on (older ones were pruned); `None`: unknown
        /// (pruned by a version that did not record how far), as if all were pruned.
        keys_from: Option<DateTime<Utc>>,
    },
    /// Its state cannot be read (a database of an older version): where it began is unknown.
    Unreadable(String),
}

impl LiveView {
    /// The view of the live source from its stored checkpoint (`None`: none stored) and how
    /// far its dedupe keys were pruned (`None`: no record of it); `cfg`: its configuration.
    pub fn of(
        cfg: &SourceConfig,
        checkpoint: Option<&Checkpoint>,
        pruned_before: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> LiveView {
        let fresh = StartAt::resolve(&cfg.start, now).trunc_subsecs(0);
        let Some(cp) = checkpoint else {
            return LiveView::NeverRan { start: fresh };
        };
        let reached = cp.done_until.into_iter().chain(cp.sweep.as_ref().map(|s| s.window.to)).max();
        let (Some(asks_from), Some(reached)) = (cp.asks_again_from(cfg.overlap), reached) else {
            // Every checkpoint written says how far the source got: this one is damaged.
            return LiveView::Unreadable("its checkpoint says neither how far it got nor what it is sweeping".into());
        };
        let start = match (cp.began, &cfg.start) {
            (Some(began), _) => Ok(began),
            // A checkpoint without `began` (an older version's): its first window started at the
            // fixed `start`. Versions before `began` let the overlap after a first window shorter
            // than it reach up to `overlap` before `start`; stopping there would leave the rest of
            // that overlap to nobody when the first window was longer (review 18b: 923 of 1000),
            // so the bound is `start` itself: at worst what such an overlap collected comes again.
            (None, StartAt::At(t)) => {
                if *t <= asks_from {
                    Ok(*t)
                } else {
                    Err(format!(
                        "its checkpoint (written by an older version) does not record where it began, and its \
                         configured start ({t}) is later than where it asks again ({asks_from}): the start was changed \
                         or the checkpoint set by hand"
                    ))
                }
            }
            (None, StartAt::Ago(_)) => Err("its checkpoint (written by an older version) does not record where it \
                 began, and its configured start is relative to when it first ran"
                .to_owned()),
        };
        // Nothing is pruned before the first window ends.
        let keys_from = pruned_before.or(cp.done_until.is_none().then_some(DateTime::<Utc>::MIN_UTC));
        LiveView::Ran { start, derived: cp.began.is_none(), asks_from, reached, keys_from }
    }
}

/// The end of a range asked without `--until` (`since` given, `now` the clamp), with what to
/// say about it on stderr: the live source's start, or now if it never ran. Refused when the
/// start is unknown or `since` is not before it.
pub fn default_until(
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    live: &LiveView,
) -> Result<(DateTime<Utc>, String), Refused> {
    match live {
        LiveView::NeverRan { start } => {
            let mut note =
                format!("the live source has no checkpoint yet (it never ran): --until defaults to now, {now}");
            if *start < now {
                note.push_str(&format!(
                    "; when it first runs it asks from its start, {start}: records this backfill stores after that \
                     arrive again then (same metadata.uid); pass --until {start} to avoid it"
                ));
            }
            Ok((now, note))
        }
        LiveView::Unreadable(why) | LiveView::Ran { start: Err(why), .. } => Err(Refused(format!(
            "cannot tell where the live source began ({why}): pass --until at or before its first collected record's \
             time (it resends whatever the live source collected before --until)"
        ))),
        LiveView::Ran { start: Ok(start), derived, .. } => {
            let start = (*start).min(now);
            if since >= start {
                return Err(Refused(format!(
                    "--since {since} is not before the live source's start, {start}: the live source collects from \
                     there; to collect inside its range again, pass --until and --allow-overlap"
                )));
            }
            let mut note = format!("--until defaults to the live source's start, {start}");
            if *derived {
                note.push_str(
                    " (its configured start: its checkpoint, written by an older version, does not record where it \
                     began; records an older version's overlap collected just before it arrive again with the same \
                     metadata.uid; if `start` was changed since it first ran, pass --until)",
                );
            }
            Ok((start, note))
        }
    }
}

/// Whether the range `[from, until)` may run beside the live source: `Ok` (with a note to
/// print, if any) where it cannot resend what the live source delivered, else why not.
///
/// Without `allow_overlap`, a range must end at or before the live source's start. With it, the
/// part inside the live range must lie where the live source's dedupe keys are kept
/// (`keys_from`: each record there it stored is skipped by the range's pages) and before where
/// the live source asks again when it resumes (`asks_from`: it does not know the range's keys,
/// and would store what the range stored there a second time).
pub fn check_overlap(
    from: DateTime<Utc>,
    until: DateTime<Utc>,
    allow_overlap: bool,
    live: &LiveView,
) -> Result<Option<String>, Refused> {
    let (start, asks_from, reached, keys_from) = match live {
        LiveView::NeverRan { .. } => return Ok(None),
        LiveView::Unreadable(why) => {
            return Ok(Some(format!(
                "cannot check the range {from} to {until} against the live source ({why}): records it collected there \
                 arrive again (same metadata.uid)"
            )));
        }
        LiveView::Ran { start, asks_from, reached, keys_from, .. } => (start, *asks_from, *reached, *keys_from),
    };
    let start_known = start.as_ref().ok().copied();
    if start_known.is_some_and(|s| until <= s) {
        return Ok(None);
    }
    let live_range = match start_known {
        Some(s) => format!("{s} to {reached}, going on from {asks_from}"),
        None => format!("(start unknown) to {reached}, going on from {asks_from}"),
    };
    if until > asks_from || (start_known.is_some() && !allow_overlap) {
        if !allow_overlap {
            let end = start_known.map_or_else(|| "where it began".to_owned(), |s| s.to_string());
            return Err(Refused(format!(
                "the range {from} to {until} overlaps the live source's range ({live_range}): its records there \
                 would arrive twice; end the range at or before {end} (the default without --until), or pass \
                 --allow-overlap to skip what the live source stored"
            )));
        }
        return Err(Refused(format!(
            "--allow-overlap: the range {from} to {until} reaches past {asks_from}, where the live source (range \
             {live_range}) asks again when it resumes; it does not know the backfill's keys and would store what \
             the backfill stored there a second time: end the range at or before {asks_from}"
        )));
    }
    let Some(start) = start_known else {
        let kept = keys_from.map_or_else(
            || "all of them: an older version pruned them without recording how far".to_owned(),
            |k| format!("before {k}"),
        );
        return Ok(Some(format!(
            "cannot tell where the live source began, so the range {from} to {until} is not checked against it: \
             records it collected there arrive again where its dedupe keys are gone ({kept})"
        )));
    };
    let inside = from.max(start);
    match keys_from {
        Some(kept) if inside >= kept => Ok(Some(format!(
            "--allow-overlap: {inside} to {until} is inside the live source's range ({live_range}): the records it \
             stored there are skipped (its dedupe keys are kept from {kept})"
        ))),
        _ => {
            let kept = keys_from.map_or_else(
                || "its dedupe keys were pruned by an older version, which did not record how far".to_owned(),
                |k| format!("its dedupe keys before {k} are pruned (they are kept for its overlap plus a day)"),
            );
            Err(Refused(format!(
                "--allow-overlap: the range {from} to {until} overlaps the live source's range ({live_range}) where \
                 {kept}: records it delivered there would arrive twice; start the range at or after {}, or end it at \
                 or before {start}",
                keys_from.map_or_else(|| asks_from.to_string(), |k| k.max(start).to_string())
            )))
        }
    }
}

/// The live source's checkpoint and how far its dedupe keys were pruned, as [`LiveView`].
fn read_live(config: &Config, live: &SourceConfig, now: DateTime<Utc>) -> anyhow::Result<LiveView> {
    if !database_path(&config.state_dir).exists() {
        return Ok(LiveView::of(live, None, None, now));
    }
    let mut view = match QueueView::open(&config.state_dir) {
        Ok(v) => v,
        Err(e @ QueueError::OlderSchema { .. }) => {
            return Ok(LiveView::Unreadable(format!("{e}; `auditrelay run` upgrades it")));
        }
        Err(e) => return Err(e).context("cannot read the live source's checkpoint"),
    };
    let overview = view.overview().context("cannot read the live source's checkpoint")?;
    let Some(stored) = overview.checkpoints.iter().find(|c| c.source == live.name) else {
        // Records are stored only with a checkpoint: keys without one mean it was lost.
        if view.has_dedupe_keys(&live.name).context("cannot read the live source's dedupe keys")? {
            return Ok(LiveView::Unreadable(
                "its checkpoint is missing, yet the database holds its dedupe keys (README \"Damaged state\")".into(),
            ));
        }
        return Ok(LiveView::of(live, None, None, now));
    };
    let checkpoint: Checkpoint = serde_json::from_str(&stored.state)
        .with_context(|| format!("cannot read the live source {:?}'s checkpoint", live.name))?;
    let pruned = view.dedupe_pruned_before(&live.name).context("cannot read the live source's dedupe keys")?;
    let pruned = pruned.and_then(DateTime::from_timestamp_millis);
    Ok(LiveView::of(live, Some(&checkpoint), pruned, now))
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
    let Some(live) = config.sources.iter().find(|s| s.name == args.source).cloned() else {
        let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        bail!("{}: no source named {:?} (sources: {})", args.config.display(), args.source, names.join(", "));
    };
    let label = format!("{}.backfill", args.source);
    let refused = |e: Refused| {
        eprintln!("backfill {label}: refused: {e}");
        Ok(ExitCode::from(USAGE_EXIT))
    };
    // Where the live source began bounds the range: it delivered what lies after.
    let live_view = read_live(&config, &live, now)?;
    let until = match asked {
        Some(u) => u.min(now),
        None => match default_until(since, now, &live_view) {
            Ok((until, note)) => {
                eprintln!("backfill {label}: {note}");
                until
            }
            Err(e) => return refused(e),
        },
    };
    if since >= until {
        match clamped {
            Some(asked) => {
                bail!("--since ({}) must be before now ({now}; --until {asked} is in the future)", args.since)
            }
            None => bail!("--since ({}) must be before --until ({until})", args.since),
        }
    }
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
    // Every part asked, resumed ones too (they may reach past the range asked), against the
    // live source's range.
    let mut notes = Vec::new();
    for (from, to) in &parts {
        match check_overlap(*from, *to, args.allow_overlap, &live_view) {
            Ok(note) => notes.extend(note),
            Err(e) => return refused(e),
        }
    }
    for note in notes {
        eprintln!("backfill {label}: {note}");
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

    /// The live source `a` with this `start` (and `overlap = "10m"`).
    fn live_cfg(start: &str) -> SourceConfig {
        let text = format!(
            "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"O\"\n\
             api_key = \"k\"\nstart = {start:?}\noverlap = \"10m\"\n[[sinks]]\nname = \"f\"\ntype = \"file\"\n\
             path = \"out.ndjson\"\n"
        );
        Config::parse_with_env(&text, std::path::Path::new("/etc/a.toml"), &|_: &str| None).expect("config").sources[0]
            .clone()
    }

    /// A live checkpoint done until `done` (hours from `t(0)`), begun at `began`.
    fn live_cp(done: i64, began: Option<i64>) -> Checkpoint {
        Checkpoint { done_until: Some(t(done)), began: began.map(t), ..Checkpoint::default() }
    }

    fn minutes(m: i64) -> chrono::Duration {
        chrono::Duration::minutes(m)
    }

    #[test]
    fn test_a_refusal_exits_with_the_code_clap_gives_a_usage_error() {
        use clap::Parser as _;
        let e = crate::cli::Cli::try_parse_from(["auditrelay", "backfill", "--source", "a", "--until", "x"])
            .expect_err("a usage error");
        assert_eq!(e.exit_code(), i32::from(USAGE_EXIT));
    }

    #[test]
    fn test_until_defaults_to_where_the_live_source_began() {
        let cfg = live_cfg("7d");
        let now = t(20);
        // Recorded: its start, and it says so.
        let live = LiveView::of(&cfg, Some(&live_cp(10, Some(4))), Some(t(2)), now);
        let (until, note) = default_until(t(0), now, &live).expect("a default");
        assert_eq!(until, t(4));
        assert!(note.contains("--until defaults to the live source's start, 2026-03-18 16:00:00 UTC"), "{note}");
        // A --since at or after it: nothing of the live source's to backfill without an overlap.
        let refused = default_until(t(4), now, &live).expect_err("refused");
        assert!(refused.0.contains("--allow-overlap") && refused.0.contains("--until"), "{refused}");
        // Never ran: now, and it says when the live source will start.
        let never = LiveView::of(&cfg, None, None, now);
        assert_eq!(never, LiveView::NeverRan { start: now - chrono::Duration::days(7) });
        let (until, note) = default_until(t(0), now, &never).expect("now");
        assert_eq!(until, now);
        assert!(note.contains("no checkpoint yet") && note.contains("defaults to now"), "{note}");
    }

    #[test]
    fn test_an_older_checkpoint_without_its_start_uses_its_fixed_start_or_refuses() {
        let now = t(20);
        let older = live_cp(10, None);
        // A fixed start: older versions' overlap reached up to `overlap` before it.
        let fixed = live_cfg("2026-03-18T16:00:00Z");
        let live = LiveView::of(&fixed, Some(&older), None, now);
        let (until, note) = default_until(t(0), now, &live).expect("derived");
        // Its start itself: stopping `overlap` short of it would leave that stretch to nobody.
        assert_eq!(until, t(4));
        assert!(note.contains("its configured start") && note.contains("pass --until"), "{note}");
        // A fixed start later than where the checkpoint asks again: changed since; refused.
        let moved = live_cfg("2026-03-19T00:00:00Z");
        let refused = default_until(t(0), now, &LiveView::of(&moved, Some(&older), None, now)).expect_err("refused");
        assert!(refused.0.contains("pass --until"), "{refused}");
        // A relative start: unknown; refused, telling the operator to pass --until.
        let relative = LiveView::of(&live_cfg("7d"), Some(&older), None, now);
        let refused = default_until(t(0), now, &relative).expect_err("refused");
        assert!(refused.0.contains("cannot tell where the live source began") && refused.0.contains("--until"));
        let unreadable = LiveView::Unreadable("older schema".into());
        assert!(default_until(t(0), now, &unreadable).is_err());
    }

    #[test]
    fn test_an_overlap_with_the_live_range_is_refused_unless_allowed_where_its_keys_tell() {
        let cfg = live_cfg("7d");
        let now = t(20);
        // Began at 4, done until 10: asks again from 10 less 10 minutes; keys kept from 2.
        let live = LiveView::of(&cfg, Some(&live_cp(10, Some(4))), Some(t(5)), now);
        assert_eq!(check_overlap(t(0), t(4), false, &live), Ok(None), "up to its start");
        assert_eq!(check_overlap(t(0), t(4), true, &live), Ok(None));
        let refused = check_overlap(t(0), t(6), false, &live).expect_err("an overlap");
        for piece in
            ["2026-03-18 12:00:00 UTC to 2026-03-18 18:00:00 UTC", "2026-03-18 16:00:00 UTC to", "--allow-overlap"]
        {
            assert!(refused.0.contains(piece), "{refused} lacks {piece}");
        }
        // Allowed: only where its keys are kept (from 5) and before it asks again (9:50).
        let ok = check_overlap(t(5), t(9), true, &live).expect("deduped against its keys");
        assert!(ok.is_some_and(|n| n.contains("are skipped")));
        assert_eq!(check_overlap(t(9), t(10) - minutes(10), true, &live).map(|n| n.is_some()), Ok(true));
        let past = check_overlap(t(9), t(10), true, &live).expect_err("past where it asks again");
        assert!(past.0.contains("asks again") && past.0.contains("2026-03-18 21:50:00 UTC"), "{past}");
        let pruned = check_overlap(t(0), t(9), true, &live).expect_err("its keys before 5 are pruned");
        assert!(pruned.0.contains("pruned") && pruned.0.contains("2026-03-18 17:00:00 UTC"), "{pruned}");
        // Pruned by a version that did not record how far: nothing inside it is allowed.
        let unknown = LiveView::of(&cfg, Some(&live_cp(10, Some(4))), None, now);
        assert!(check_overlap(t(5), t(9), true, &unknown).is_err());
        // A live source inside its first window has pruned nothing.
        let sweep = crate::sources::Sweep::new(
            crate::sources::Window { from: t(4), to: t(6) },
            crate::sources::PageCursor::Offset { skip: 100 },
        );
        let first = Checkpoint { sweep: Some(sweep), began: Some(t(4)), ..Checkpoint::default() };
        let first = LiveView::of(&cfg, Some(&first), None, now);
        assert!(check_overlap(t(0), t(5), true, &first).is_err(), "it resumes its sweep from 4");
        assert_eq!(check_overlap(t(0), t(4), false, &first), Ok(None));
        // A checkpoint that says nothing is damage, not a fresh start.
        let empty = LiveView::of(&cfg, Some(&Checkpoint::default()), None, now);
        assert!(matches!(empty, LiveView::Unreadable(_)), "{empty:?}");
        assert!(default_until(t(0), now, &empty).is_err());
        // Never ran: nothing to overlap.
        assert_eq!(check_overlap(t(0), t(20), false, &LiveView::of(&cfg, None, None, now)), Ok(None));
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
