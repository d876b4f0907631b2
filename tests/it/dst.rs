//! Deterministic simulation testing of the whole collection and delivery path (issue 15,
//! point 12), in the manner of FoundationDB's simulator and TigerBeetle's VOPR.
//!
//! **The model.** One seed decides everything of a run ([`Scenario::from_seed`]): which vendors
//! are collected (the in-process simulator, `src/sim`, serving all four contracts from seeded
//! stores), their records and fault knobs, the sources' and sinks' settings, the receiver models
//! (`dst/receiver.rs`, a seeded HEC collector; `dst/es_receiver.rs`, a seeded Elasticsearch
//! `_bulk` endpoint) and a schedule of segments, each ended by a crash or a reload. The *real*
//! parts run in process on a current-thread tokio runtime with the clock paused ([`run_seed`]):
//! `sources::Source` (its loop), `queue::Queue` (SQLite on tmpfs), `sinks::run_sink` with a real
//! file sink, a real HEC sink and a real Elasticsearch sink. Virtual time advances
//! only when every task waits, so hours of polling, back-offs and `Retry-After` windows take
//! milliseconds. `fastrand`'s thread-local generator is seeded too, so the agent's own jitter
//! repeats. (Interleavings with the database thread and loopback sockets are up to the OS;
//! runs of one seed have been identical in practice, and the trace shows what happened.)
//!
//! **Fault families** ([`Family`]), each on or off per run (an enabled family is drawn in for
//! half the seeds): vendor side — dense bursts, late records (within lag + overlap), inserts
//! while paging, rate limits (429 in every `Retry-After` form, budgets announced or not), 5xx
//! and slow answers, malformed and truncated answers, redirects (ConfigCat v1 → v2), spurious
//! 401s, clock steps (the agent's clock jumps at a restart); receiver side — outages and 429s,
//! slow answers, 2xx that is not an acceptance (a proxy's 200 page, a 302 to a login page),
//! per-event refusal, whole-batch refusal, file rotation (the Elasticsearch model draws the same
//! receiver families, from a seed of its own, and always refuses a seeded share of items with
//! 429 / 503 inside a 200); agent side — crashes (every task
//! dropped at a seeded point, the database reopened), reloads (one source or sink stopped and
//! restarted with changed settings), a small queue cap.
//!
//! **Invariants**, checked after each run ([`check`]):
//! (a) every record the vendor model held at the stop, and did not mark as poison, is at every
//! sink (by record key; at least once); (b) no vendor request arrived inside a `Retry-After`
//! window the vendor announced, across restarts (the simulator outlives the agent's crashes);
//! (c) no source's checkpoint `done_until` ever moved backwards (sampled every few virtual
//! seconds and at every reopen); (d) nothing is dead-lettered that the model did not mark as
//! poison; (e) memory bounded: queued bytes stay within `max_bytes` plus one answer, and no
//! request to the receiver holds more events than the sink's `batch_max_events`; for the
//! Elasticsearch sink also (f) every action, `_id`, target and `@timestamp` is what the sink's
//! contract says (the model records each breach), and (g) no stall: after settling the sink holds
//! nothing but poison a 500 keeps refusing with nothing behind it to prove the receiver alive.
//! Its (a) is "every record indexed (item 201 once; a resend's 409 is delivered) or refused for
//! good by the model", its (d) "dead-lettered only if the model refused it for good, with
//! Elastic's reason for an item refusal".
//!
//! **What the Elasticsearch model found.** With poison refused by a whole-request 500 instead of
//! an item 400 (then behind `AUDITRELAY_SIM_ES_POISON=500`), seeds stalled: 6 of 20 with
//! `AUDITRELAY_SIM_FAMILIES=batch_refusal AUDITRELAY_SIM_ES=on` (seeds 0, 5, 6, 8, 14, 17), also
//! with no item refusal at all. The delivery loop (`sinks/mod.rs`, `Failure::ServerError`) gave
//! a suspect a strike only if no other server error came since its last failure; two poison
//! events of one batch, each failing alone in turn, cleared each other's strikes for ever, so
//! neither was dead-lettered and the sink never moved past them (HEC and OTLP 500s alike: the HEC
//! model never answers 500, so this was not seen before). Fixed: the loop isolates one suspect at
//! a time (its unit test `several_server_error_poison_events_of_one_batch_are_each_dead_lettered`);
//! those 20 seeds pass, and the 500 poison is part of every `batch_refusal` draw again.
//!
//! **The Elasticsearch sink in old seeds.** It is drawn last, from a generator of its own
//! (`seed ^ ES_SALT`): families, vendors, sources, the HEC model, segments and rotations of
//! every seed are what they were before it existed (a test proves it); half the seeds add it
//! (and, with `reloads`, maybe one reload of it). A run with it differs in interleavings (its
//! back-off jitter draws from the same thread's generator). `AUDITRELAY_SIM_ES=off` runs the
//! scenarios exactly as before, `on` gives every seed the sink.
//!
//! **Vendor definitions in old seeds** (issue 20, point 3). An Okta System Log source and/or a
//! GitHub Enterprise audit-log source, each `vendor = "<name>"` from the shipped
//! `config/vendors.d/`, run by the same source loop against the contract simulators `okta_sim`
//! and `github_sim`, which answer at the vendor clock (tokio's paused clock; their `Date` is the
//! simulated time). They are drawn last, from a generator of their own (`seed ^ DEFINED_SALT`,
//! `dst/defined.rs`): every other draw of a seed is what it was (a test proves it); half the
//! seeds add them, `AUDITRELAY_SIM_DEFINED=on|off` forces it. Their knobs follow the vendor-side
//! families: `rate_limits` (budgets far under the agent's own limiter: Okta's 429 until
//! `X-Rate-Limit-Reset`, GitHub's primary 403/429 at `x-ratelimit-remaining: 0` and secondary
//! 403/429 with `retry-after`, plus storms), `server_errors` (500, an HTML 503, slow answers),
//! `malformed` (cut and HTML bodies, a next link to another origin), `inserts_while_paging`
//! (records published while the agent pages, a repeated record, GitHub's empty page with a next
//! link), `late_records` (persisted late within the source's lag + overlap); `dense_bursts`
//! packs the store into seconds. The invariants (a)–(d) cover them: (a) every record the sim had
//! persisted at the stop (Git events excepted: the definition asks `include=web`) at every sink,
//! (b) no request inside a wait a 429 or rate-limit 403 announced (`retry-after`, else the reset
//! of a spent budget), across crashes, (c) their checkpoints sampled with the rest, (d) none of
//! their records dead-lettered (their faults spoil whole answers; none is poison).
//!
//! **Running it.** `cargo test --test it dst::` runs [`DEFAULT_SEEDS`] seeds with the families that
//! hold on today's code ([`DEFAULT_FAMILIES`]); `AUDITRELAY_SIM_SEEDS=N` runs N seeds,
//! `AUDITRELAY_SIM_FAMILIES=all` (or a comma list) chooses the families. A failing seed prints
//! its trace and the one command that replays it:
//! `AUDITRELAY_SIM_SEED=<seed> AUDITRELAY_SIM_FAMILIES=<families> cargo test --test it dst::replay -- --nocapture`.
//! Every seed that found a bug is kept in [`REGRESSION_SEEDS`], with the families it needs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod defined;
mod es_receiver;
mod receiver;
mod record;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::config::{Config, SinkConfig, SourceConfig};
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, RetryAfterMode, Sim, SimCredential, SimOptions, SimVendor};
use auditrelay::sinks::{self, Sink, SinkControl, SinkStats};
use auditrelay::sources::ratelimit::Gates;
use auditrelay::sources::{self, Checkpoint, RunMode, Source};
use chrono::{DateTime, Utc};
use defined::{DefinedSpec, DefinedVendor};
use es_receiver::{EsModel, EsReceiver, Target};
use receiver::{Receiver, ReceiverModel};
use record::{raw_key, record_key, store_key};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Seeds per CI run: sized to stay well under two minutes on the project's 2-core machine
/// (about two minutes of one core at 200 seeds with every family).
const DEFAULT_SEEDS: u64 = 200;

/// The fault families, each a switch of [`Scenario::from_seed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Family {
    DenseBursts,
    LateRecords,
    InsertsWhilePaging,
    RateLimits,
    ServerErrors,
    Malformed,
    Redirects,
    Spurious401,
    ClockSteps,
    ReceiverOutages,
    ReceiverSlow,
    FakeAcceptance,
    EventRefusal,
    BatchRefusal,
    FileRotation,
    Crashes,
    Reloads,
    SmallQueue,
    RestartsInPauses,
    TightBudget,
}

impl Family {
    const ALL: [Family; 20] = [
        Family::DenseBursts,
        Family::LateRecords,
        Family::InsertsWhilePaging,
        Family::RateLimits,
        Family::ServerErrors,
        Family::Malformed,
        Family::Redirects,
        Family::Spurious401,
        Family::ClockSteps,
        Family::ReceiverOutages,
        Family::ReceiverSlow,
        Family::FakeAcceptance,
        Family::EventRefusal,
        Family::BatchRefusal,
        Family::FileRotation,
        Family::Crashes,
        Family::Reloads,
        Family::SmallQueue,
        Family::RestartsInPauses,
        Family::TightBudget,
    ];

    fn name(self) -> &'static str {
        match self {
            Family::DenseBursts => "dense_bursts",
            Family::LateRecords => "late_records",
            Family::InsertsWhilePaging => "inserts_while_paging",
            Family::RateLimits => "rate_limits",
            Family::ServerErrors => "server_errors",
            Family::Malformed => "malformed",
            Family::Redirects => "redirects",
            Family::Spurious401 => "spurious_401",
            Family::ClockSteps => "clock_steps",
            Family::ReceiverOutages => "receiver_outages",
            Family::ReceiverSlow => "receiver_slow",
            Family::FakeAcceptance => "fake_acceptance",
            Family::EventRefusal => "event_refusal",
            Family::BatchRefusal => "batch_refusal",
            Family::FileRotation => "file_rotation",
            Family::Crashes => "crashes",
            Family::Reloads => "reloads",
            Family::SmallQueue => "small_queue",
            Family::RestartsInPauses => "restarts_in_pauses",
            Family::TightBudget => "tight_budget",
        }
    }
}

/// The families enabled in CI: every one. `fake_acceptance` and `batch_refusal` hold since
/// point 3 landed, `malformed` since an Astronomer HTML page or cut body is a broken answer
/// (seed 12), `restarts_in_pauses` and `clock_steps` since a stored pause is measured by time
/// since boot and a clamped checkpoint keeps `lag` (seeds 21, 55, 66, 76), `dense_bursts` and
/// `tight_budget` since a window is cut at the checkpoint first and a settled one is not asked
/// again (seeds 2, 3, 41: 200 seeds of every family went from over 13 minutes to about 2).
const DEFAULT_FAMILIES: &[Family] = &Family::ALL;

/// Every family but `dense_bursts` and `tight_budget`, as the regression seeds found with it
/// name it (the default set before those two were fast enough for CI).
const ALL_BUT_SLOW: &str = "late_records,inserts_while_paging,rate_limits,server_errors,redirects,\
    spurious_401,receiver_outages,receiver_slow,event_refusal,file_rotation,crashes,reloads,small_queue,\
    fake_acceptance,batch_refusal,malformed,restarts_in_pauses,clock_steps";

/// Seeds that found a bug, with the families they were run with and what they showed. The
/// regression test runs those whose families are all enabled (so today's default set skips
/// the ones still open; `AUDITRELAY_SIM_FAMILIES=all` runs every one).
const REGRESSION_SEEDS: &[(u64, &str, &str)] = &[
    (
        0,
        "dense_bursts",
        "(c) Datafold: once a burst halves the window below the overlap, the next window ends before \
         done_until, which moves backwards; the source loops without progress (point 1)",
    ),
    (
        2,
        "fake_acceptance",
        "(a) HEC: a 200 without `code` (a proxy's page, or a 302 to a login page) is taken as \
         acceptance; the batch is acknowledged and lost (point 3)",
    ),
    (
        2,
        "batch_refusal",
        "(a) HEC: 400 code 6 without an event number is retried forever; that batch and everything \
         behind it never reach the receiver (point 3: bisection)",
    ),
    (
        3,
        "rate_limits,crashes,reloads,restarts_in_pauses",
        "(b) a source restarted (crash or reload) inside a 429's Retry-After asks at once: the pause \
         is not stored (point 5)",
    ),
    (
        8,
        "clock_steps,inserts_while_paging,crashes",
        "(a) ConfigCat: after the agent's clock stepped at a restart, records the vendor added \
         meanwhile fall before the next window and are never collected (point 6)",
    ),
    (
        32,
        "rate_limits,redirects,tight_budget",
        "(a) ConfigCat v1: every page is a 302 to v2 that spends the one request of the window, so \
         v2 answers 429, forever: the source stalls and collects nothing",
    ),
    (12, "malformed", "(a) Astronomer: a record never collected after malformed answers (HTML 200, cut gzip)"),
    (
        61,
        "late_records,inserts_while_paging,rate_limits,server_errors,redirects,spurious_401,receiver_outages,\
         receiver_slow,event_refusal,file_rotation,crashes,reloads,small_queue,fake_acceptance,batch_refusal",
        "(a) a small queue filled by the HEC sink's dead letters (they count against max_bytes) stops \
         collection for good: the harness now purges them as the operator would",
    ),
    // Found after points 5 and 6 landed, with `restarts_in_pauses` and `clock_steps` on (10 of
    // 200 seeds failed; these four stand for the two kinds).
    (
        21,
        ALL_BUT_SLOW,
        "(b) Astronomer asked 7.2 s after its 429, across a restart with a clock step: the stored \
         pause was wall-clock time (now time since boot, with the boot id)",
    ),
    (66, ALL_BUT_SLOW, "(b) Datafold asked 60.3 s after its 429, across a restart with a clock step (as 21)"),
    (
        55,
        ALL_BUT_SLOW,
        "(a) 1 of 256 Aitronos records never collected: restarted with the clock ahead, the checkpoint \
         was clamped to the vendor's clock, not that clock less `lag`, so a record indexed late fell \
         before the next window",
    ),
    (76, ALL_BUT_SLOW, "(a) 4 of 308 ConfigCat records never collected (as 55)"),
    (
        3,
        "late_records,inserts_while_paging,rate_limits,server_errors,redirects,spurious_401,receiver_outages,\
         receiver_slow,event_refusal,file_rotation,crashes,reloads,small_queue,fake_acceptance,batch_refusal,\
         malformed,restarts_in_pauses,clock_steps,dense_bursts",
        "(stall) Datafold: a dense second inside the overlap halved every poll's window, shrinking the span \
         of new data: after 6 h the source had crept 40 s past the burst, 162 of 651 records uncollected \
         (windows straddling the checkpoint are now cut there first; seed 2 alike)",
    ),
    (
        41,
        "all",
        "(stall) Datafold far behind on dense data re-asked the whole overlap in pieces before every \
         few seconds of history: 2,034 of 4,674 records uncollected after 6 h (a window already older \
         than lag + overlap when asked is now settled: the next starts at its end; seeds 2, 3, 44 alike)",
    ),
    (
        767,
        ALL_BUT_SLOW,
        "(b) a reload while an Astronomer request was in flight dropped its 429 unread; the replacement \
         asked at once (a stopping source now reads an answer in flight for up to 5 s; the harness keeps \
         credential gates across reloads as the daemon does; seeds 47, 182, 278 alike)",
    ),
    (
        72,
        "late_records,inserts_while_paging,server_errors,event_refusal,dense_bursts,malformed",
        "(a) Datafold: a window split past its overlap never asks the overlap again, so a record indexed late \
         into it is lost",
    ),
];

/// The families named by `AUDITRELAY_SIM_FAMILIES` (`all`, `default`, or a comma list).
fn families_from_env() -> Vec<Family> {
    match std::env::var("AUDITRELAY_SIM_FAMILIES") {
        Ok(list) => parse_families(&list),
        Err(_) => DEFAULT_FAMILIES.to_vec(),
    }
}

fn parse_families(list: &str) -> Vec<Family> {
    match list.trim() {
        "all" => Family::ALL.to_vec(),
        "default" | "" => DEFAULT_FAMILIES.to_vec(),
        list => list
            .split(',')
            .map(|name| {
                Family::ALL
                    .into_iter()
                    .find(|f| f.name() == name.trim())
                    .unwrap_or_else(|| panic!("unknown fault family {name:?}"))
            })
            .collect(),
    }
}

fn family_list(families: &[Family]) -> String {
    if families.len() == Family::ALL.len() {
        return "all".into();
    }
    families.iter().map(|f| f.name()).collect::<Vec<_>>().join(",")
}

/// One collected vendor organization and the settings of its source.
#[derive(Clone, Debug)]
struct SourceSpec {
    vendor: SimVendor,
    lag: u64,
    overlap: u64,
    max_span: &'static str,
    poll: u64,
    page_size: u32,
    /// Requests per minute of the agent's own limiter, and its burst.
    quota: (u32, u32),
    max_records: Option<usize>,
    configcat_v1: bool,
}

#[derive(Clone, Debug)]
struct SinkSpec {
    name: &'static str,
    batch_max_events: usize,
}

/// How a segment of the run ends.
#[derive(Clone, Debug)]
enum SegmentEnd {
    /// Every task dropped where it stands, the database closed and reopened; the agent's clock
    /// may jump (seconds; 0: no step).
    Crash { clock_step: i64 },
    /// The source (index) stopped and started again with other settings.
    ReloadSource(usize),
    /// The sink (index) stopped and started again with another batch size.
    ReloadSink(usize),
    /// Nothing: the run goes on to its stop.
    Continue,
}

#[derive(Clone, Debug)]
enum Trigger {
    /// After this much virtual time.
    After(Duration),
    /// After the vendors received this many more requests (at most an hour).
    VendorRequests(u64),
    /// After the receiver got this many more requests (at most an hour).
    ReceiverRequests(u64),
}

/// Everything a seed decides.
#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    active: Vec<Family>,
    sim: SimOptions,
    sources: Vec<SourceSpec>,
    sinks: Vec<SinkSpec>,
    receiver: Option<ReceiverModel>,
    /// The Elasticsearch receiver model, when the seed has an Elasticsearch sink.
    es: Option<EsModel>,
    max_bytes: u64,
    segments: Vec<(Trigger, SegmentEnd)>,
    /// Virtual times (from the start) at which the file sink's file is renamed aside.
    rotations: Vec<Duration>,
    /// Sources of vendor definitions (Okta, GitHub), drawn last ([`defined::draw`]).
    defined: Vec<DefinedSpec>,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Scenario {
    fn from_seed(seed: u64, enabled: &[Family]) -> Scenario {
        Scenario::from_seed_with(seed, enabled, es_from_env())
    }

    /// [`Scenario::from_seed`] with the Elasticsearch sink forced on or off (`None`: drawn).
    fn from_seed_with(seed: u64, enabled: &[Family], es: Option<bool>) -> Scenario {
        Scenario::from_seed_full(seed, enabled, es, defined::defined_from_env())
    }

    /// [`Scenario::from_seed_with`] with the defined sources forced on or off too (`None`: drawn).
    fn from_seed_full(seed: u64, enabled: &[Family], es: Option<bool>, defined: Option<bool>) -> Scenario {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut active: Vec<Family> = enabled.iter().copied().filter(|_| rng.bool()).collect();
        // Crashes and reloads land inside announced rate-limit pauses only with this family.
        if active.contains(&Family::RateLimits) && !active.contains(&Family::RestartsInPauses) {
            active.retain(|f| !matches!(f, Family::Crashes | Family::Reloads | Family::ClockSteps));
        }
        let on = |f: Family| active.contains(&f);
        let mut sim = SimOptions { seed, ..SimOptions::default() };
        let mut vendors: Vec<SimVendor> = SimVendor::ALL.into_iter().filter(|_| rng.u32(..10) < 6).collect();
        if vendors.is_empty() {
            vendors.push(SimVendor::ALL[rng.usize(..4)]);
        }
        // Records: a day of history, or a burst of many records inside seconds.
        let burst = on(Family::DenseBursts);
        let records = |rng: &mut fastrand::Rng| if burst { rng.usize(50..300) } else { rng.usize(5..150) };
        let span = |rng: &mut fastrand::Rng| if burst { secs(rng.u64(1..30)) } else { secs(rng.u64(3600..86_400)) };
        let min_age = |rng: &mut fastrand::Rng| secs(rng.u64(0..900));
        sim.aitronos.records = records(&mut rng);
        (sim.aitronos.records_span, sim.aitronos.records_min_age) = (span(&mut rng), min_age(&mut rng));
        sim.astronomer.records = records(&mut rng);
        (sim.astronomer.records_span, sim.astronomer.records_min_age) = (span(&mut rng), min_age(&mut rng));
        sim.configcat.records = records(&mut rng);
        (sim.configcat.records_span, sim.configcat.records_min_age) = (span(&mut rng), min_age(&mut rng));
        sim.datafold.records = records(&mut rng);
        (sim.datafold.records_span, sim.datafold.records_min_age) = (span(&mut rng), min_age(&mut rng));

        let mut sources = Vec::new();
        for vendor in vendors {
            let lag = rng.u64(0..180);
            let (max_span, span_secs) = match vendor {
                SimVendor::Datafold if burst => ("10m", 600),
                SimVendor::Datafold => ("1h", 3600),
                _ => [("1h", 3600), ("6h", 6 * 3600), ("1d", 86_400)][rng.usize(..3)],
            };
            // At most half the span: a window then always advances by half of it at least.
            let overlap = rng.u64(0..600.min(span_secs / 2));
            let (requests, _) = vendor.default_rate_limit();
            sources.push(SourceSpec {
                vendor,
                lag,
                overlap,
                max_span,
                poll: rng.u64(30..300),
                page_size: rng.u32(5..=100),
                quota: if on(Family::RateLimits) { (rng.u32(100..1000), rng.u32(1..10)) } else { (requests, 1) },
                max_records: (burst && vendor == SimVendor::Datafold).then(|| rng.usize(10..80)),
                configcat_v1: vendor == SimVendor::ConfigCat && on(Family::Redirects),
            });
        }
        sim.configcat.v1_redirects = on(Family::Redirects);
        let f = &mut sim.faults;
        f.rate_limit = RateLimitSetting::VendorDefault;
        if on(Family::RateLimits) {
            // One request per window is tighter than a redirected request (two requests) fits.
            let least = if on(Family::TightBudget) { 1 } else { 2 };
            f.rate_limit = RateLimitSetting::Fixed { requests: rng.u32(least..6), per: secs(rng.u64(5..90)) };
            f.retry_after = [RetryAfterMode::Seconds, RetryAfterMode::HttpDate, RetryAfterMode::Omit][rng.usize(..3)];
            f.limit_headers = rng.bool();
            if f.retry_after == RetryAfterMode::Omit {
                // Astronomer and Datafold have no reset header: a 429 without Retry-After announces
                // nothing the simulator's bookkeeping could hold the agent to (it counts from its
                // window's end rounded up, Astronomer documents 60 s from the 429), so they are
                // not limited and the agent keeps Datafold under its limit.
                f.vendor_rate_limits.insert(SimVendor::Astronomer, RateLimitSetting::Off);
                f.vendor_rate_limits.insert(SimVendor::Datafold, RateLimitSetting::VendorDefault);
                for s in sources.iter_mut().filter(|s| s.vendor == SimVendor::Datafold) {
                    s.quota = (SimVendor::Datafold.default_rate_limit().0, 1);
                }
            }
        }
        if on(Family::ServerErrors) {
            f.error_rate = rng.f64() * 0.3;
            f.page_latency = Duration::from_millis(rng.u64(0..5000));
        }
        if on(Family::Malformed) {
            f.malformed_rate = rng.f64() * 0.3;
            sim.astronomer.truncated_rate = rng.f64() * 0.3;
        }
        if on(Family::InsertsWhilePaging) || on(Family::LateRecords) {
            f.arrivals_per_page = rng.usize(1..6);
        }
        if on(Family::LateRecords) {
            // Late, but within every source's lag + overlap: the contract the agent is built for.
            let bound = sources.iter().map(|s| s.lag + s.overlap).min().unwrap_or(0);
            f.arrival_lateness = secs(bound);
        }
        if on(Family::Spurious401) {
            f.spurious_unauthorized_rate = rng.f64() * 0.1;
        }

        let mut sinks = vec![SinkSpec { name: "file", batch_max_events: rng.usize(1..300) }];
        let receiver = rng.bool().then(|| {
            sinks.push(SinkSpec { name: "hec", batch_max_events: rng.usize(1..300) });
            let mut m = ReceiverModel { seed, ..ReceiverModel::default() };
            if on(Family::ReceiverOutages) {
                for _ in 0..rng.usize(1..4) {
                    let start = secs(rng.u64(0..7200));
                    m.outages.push((start, start + secs(rng.u64(10..1800))));
                }
                m.busy_rate = rng.f64() * 0.2;
            }
            if on(Family::ReceiverSlow) {
                m.slow_rate = rng.f64() * 0.5;
                m.max_delay = secs(rng.u64(1..45));
            }
            if on(Family::FakeAcceptance) {
                m.fake_ok_rate = rng.f64() * 0.2;
            }
            if on(Family::EventRefusal) || on(Family::BatchRefusal) {
                m.poison_permille = rng.u64(1..30);
                m.whole_batch_refusal = on(Family::BatchRefusal) && (!on(Family::EventRefusal) || rng.bool());
            }
            m
        });
        let max_bytes = if on(Family::SmallQueue) { rng.u64(20_000..300_000) } else { 1 << 30 };

        let mut segments = Vec::new();
        for _ in 0..rng.usize(1..6) {
            let trigger = match rng.u32(..3) {
                0 => Trigger::VendorRequests(rng.u64(1..40)),
                1 if receiver.is_some() => Trigger::ReceiverRequests(rng.u64(1..20)),
                _ => Trigger::After(Duration::from_millis(rng.u64(100..1_800_000))),
            };
            let mut ends = vec![SegmentEnd::Continue];
            if on(Family::Crashes) {
                let step = if on(Family::ClockSteps) { rng.i64(-900..900) } else { 0 };
                ends.push(SegmentEnd::Crash { clock_step: step });
                ends.push(SegmentEnd::Crash { clock_step: 0 });
            } else if on(Family::ClockSteps) {
                ends.push(SegmentEnd::Crash { clock_step: rng.i64(-900..900) });
            }
            if on(Family::Reloads) {
                ends.push(SegmentEnd::ReloadSource(rng.usize(..sources.len())));
                ends.push(SegmentEnd::ReloadSink(rng.usize(..sinks.len())));
            }
            segments.push((trigger, ends[rng.usize(..ends.len())].clone()));
        }
        let rotations = if on(Family::FileRotation) {
            (0..rng.usize(1..4)).map(|_| Duration::from_millis(rng.u64(0..3_600_000))).collect()
        } else {
            Vec::new()
        };
        let es = elasticsearch(seed, es, &on, &mut sinks, &mut segments);
        let defined = defined::draw(seed, defined, &on);
        Scenario { seed, active, sim, sources, sinks, receiver, es, max_bytes, segments, rotations, defined }
    }
}

/// Salts the seed of every Elasticsearch draw (its own generator and its receiver model).
const ES_SALT: u64 = 0xE5_19_E5_19_E5_19_E5_19;

/// Whether seeds have an Elasticsearch sink: `AUDITRELAY_SIM_ES=on` (every seed), `off` (none:
/// the scenarios exactly as before issue 19), else half the seeds, drawn from the seed.
fn es_from_env() -> Option<bool> {
    match std::env::var("AUDITRELAY_SIM_ES").as_deref().map(str::trim) {
        Ok("on") => Some(true),
        Ok("off") => Some(false),
        Ok("" | "seeded") | Err(_) => None,
        Ok(other) => panic!("AUDITRELAY_SIM_ES={other:?}: on, off or seeded"),
    }
}

/// The Elasticsearch sink of a seed (issue 19), drawn last and from a generator of its own
/// (`seed ^ ES_SALT`): every draw made before it (families, vendors, sources, the HEC model, the
/// segments, the rotations) is what it was before this sink existed, so an old seed keeps its
/// HEC scenario; only the added sink (and, with `reloads`, one added reload of it) is new. Its
/// faults follow the receiver families the seed drew.
fn elasticsearch(
    seed: u64,
    forced: Option<bool>,
    on: &dyn Fn(Family) -> bool,
    sinks: &mut Vec<SinkSpec>,
    segments: &mut Vec<(Trigger, SegmentEnd)>,
) -> Option<EsModel> {
    let mut rng = fastrand::Rng::with_seed(seed ^ ES_SALT);
    let drawn = rng.bool();
    if !forced.unwrap_or(drawn) {
        return None;
    }
    let mut m = EsModel { seed: seed ^ ES_SALT, ..EsModel::default() };
    m.target = match rng.u32(..4) {
        0 => Target::default(),
        1 => Target::DataStream { dataset: Some("auditrelay.{vendor}"), namespace: Some("dst") },
        2 => Target::DataStream { dataset: Some("ocsf.{class_uid}"), namespace: None },
        _ => Target::Index("auditrelay-dst"),
    };
    m.gzip = rng.bool();
    // `_bulk` answers 200 with per-item rejections whenever a node's write queue is full: always.
    m.item_busy_rate = rng.f64() * 0.1;
    m.item_error_rate = rng.f64() * 0.05;
    m.max_body_bytes = rng.bool().then(|| rng.usize(20_000..400_000));
    if on(Family::ReceiverOutages) {
        for _ in 0..rng.usize(1..4) {
            let start = secs(rng.u64(0..7200));
            m.outages.push((start, start + secs(rng.u64(10..1800))));
        }
        m.busy_rate = rng.f64() * 0.2;
        m.server_error_rate = rng.f64() * 0.05;
    }
    if on(Family::ReceiverSlow) {
        m.slow_rate = rng.f64() * 0.5;
        m.max_delay = secs(rng.u64(1..45));
    }
    if on(Family::FakeAcceptance) {
        m.fake_ok_rate = rng.f64() * 0.2;
    }
    if on(Family::EventRefusal) || on(Family::BatchRefusal) {
        m.poison_permille = rng.u64(1..30);
        // Elasticsearch refuses a document per item (400 document_parsing_exception); a request
        // it refuses whole for a document is a 500 (a document that breaks the node), which the
        // loop bisects and isolates (module docs: what the model found, now fixed).
        m.whole_batch_refusal = on(Family::BatchRefusal) && (!on(Family::EventRefusal) || rng.bool());
    }
    sinks.push(SinkSpec { name: "elastic", batch_max_events: rng.usize(1..300) });
    if on(Family::Reloads) && rng.bool() {
        let at = rng.usize(..=segments.len());
        let trigger = Trigger::After(Duration::from_millis(rng.u64(100..1_800_000)));
        segments.insert(at, (trigger, SegmentEnd::ReloadSink(sinks.len() - 1)));
    }
    Some(m)
}

/// An invariant that did not hold, with what the run did.
#[derive(Debug)]
struct Violation {
    invariant: &'static str,
    detail: String,
    trace: Vec<String>,
}

/// What a passing run did, for the summary.
#[derive(Debug, Default)]
struct Report {
    vendor_requests: u64,
    records: usize,
    crashes: usize,
    reloads: usize,
    virtual_secs: u64,
    /// Seeds with an Elasticsearch sink, and what its receiver model answered: `_bulk`
    /// requests, per-item statuses (201 indexed, 409 conflict, 429/503 refused for now, 400
    /// poison), whole-request answers other than 200.
    es_runs: usize,
    es_requests: u64,
    es_items: BTreeMap<u16, u64>,
    es_refusals: u64,
    /// Per defined vendor: runs, requests, answers by status, faults served by kind, waits announced.
    defined: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

/// Samples taken while the agent runs: checkpoints (c) and queued bytes (e).
#[derive(Default)]
struct Monitor {
    done_until: HashMap<String, DateTime<Utc>>,
    backwards: Vec<String>,
    peak_bytes: u64,
}

/// A running task of the agent and how to stop it gracefully.
enum Stop {
    Source(CancellationToken),
    Sink(SinkControl),
    Monitor,
}

struct Agent {
    queue: Queue,
    clock: Clock,
    /// Each credential's limiter and pause, kept across reloads as the daemon keeps them (a crash
    /// loses them: only stored pauses outlive it).
    gates: Gates,
    tasks: Vec<(String, Stop, JoinHandle<()>)>,
}

/// The world of one run: the vendor model, the receiver model, the agent's state directory.
struct World {
    sc: Scenario,
    dir: tempfile::TempDir,
    sim: Sim,
    receiver: Option<Receiver>,
    es: Option<EsReceiver>,
    /// The contract simulators of the defined sources, on the vendor clock.
    okta: Option<super::okta_sim::OktaSim>,
    github: Option<super::github_sim::GithubSim>,
    vendor_clock: Clock,
    /// The agent's clock minus the vendors', in seconds (clock steps).
    offset: i64,
    monitor: Arc<Mutex<Monitor>>,
    trace: Vec<String>,
    started: tokio::time::Instant,
    /// Dead letters the operator purged during the run (checked by (d) with the rest).
    purged: Vec<auditrelay::queue::DeadLetter>,
    /// The vendor's clock at each crash: a 429 answered at that instant went to a process that
    /// died with the request in flight, and announced nothing any agent could honour.
    crashes_at: Vec<DateTime<Utc>>,
}

/// Virtual seconds since the run started, for the trace.
fn stamp(started: tokio::time::Instant) -> String {
    format!("{:>8.1}s", tokio::time::Instant::now().saturating_duration_since(started).as_secs_f64())
}

impl World {
    fn log(&mut self, what: String) {
        self.trace.push(format!("{} {what}", stamp(self.started)));
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config(&self) -> Config {
        let mut text = format!("state_dir = {:?}\n", self.state_dir().display().to_string());
        if !self.sc.defined.is_empty() {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vendors.d");
            text += &format!("vendors_dir = {:?}\n", shipped.display().to_string());
        }
        for s in &self.sc.sources {
            let org = self.sim.organizations(s.vendor)[0].clone();
            let credential = match self.sim.credential(s.vendor, &org) {
                SimCredential::ApiKey(key) => format!("api_key = {key:?}"),
                SimCredential::Bearer(token) => format!("bearer_token = {token:?}"),
                SimCredential::Basic { username, password } => {
                    format!("username = {username:?}\npassword = {password:?}")
                }
            };
            text += &format!(
                "[[sources]]\nname = {name:?}\nvendor = {name:?}\norganization_id = {org:?}\n{credential}\n\
                 base_url = {base:?}\nstart = \"26h\"\nlag = \"{lag}s\"\noverlap = \"{overlap}s\"\n\
                 max_span = {span:?}\npoll_interval = \"{poll}s\"\nrequest_timeout = \"30s\"\n\
                 rate_limit = {{ requests = {rq}, per = \"1m\", burst = {burst} }}\n\
                 backoff = {{ initial = \"1s\", max = \"60s\" }}\n",
                name = s.vendor.name(),
                base = self.sim.base_url().to_string(),
                lag = s.lag,
                overlap = s.overlap,
                span = s.max_span,
                poll = s.poll,
                rq = s.quota.0,
                burst = s.quota.1,
            );
            match s.vendor {
                SimVendor::Aitronos => text += &format!("page_size = {}\n", s.page_size),
                SimVendor::ConfigCat if s.configcat_v1 => text += "api_version = \"v1\"\n",
                SimVendor::ConfigCat => text += &format!("page_size = {}\n", s.page_size),
                SimVendor::Datafold => {
                    if let Some(n) = s.max_records {
                        text += &format!("max_records = {n}\n");
                    }
                }
                SimVendor::Astronomer => {}
            }
        }
        text += &self.defined_sources();
        for k in &self.sc.sinks {
            text += &format!(
                "[[sinks]]\nname = {:?}\nbatch_max_events = {}\nbackoff = {{ initial = \"1s\", max = \"30s\" }}\n",
                k.name, k.batch_max_events
            );
            match (k.name, &self.receiver, &self.es) {
                ("hec", Some(r), _) => {
                    text += &format!(
                        "type = \"hec\"\nurl = {:?}\ntoken = \"dst-token\"\ngzip = false\ntimeout = \"30s\"\n",
                        r.url()
                    )
                }
                ("elastic", _, Some(e)) => {
                    let model = self.sc.es.as_ref().expect("an ES receiver has its model");
                    text += &format!(
                        "type = \"elasticsearch\"\nhosts = [{:?}]\napi_key = {:?}\ngzip = {}\ntimeout = \"30s\"\n{}",
                        e.url(),
                        es_receiver::API_KEY,
                        model.gzip,
                        model.target.config_lines()
                    )
                }
                _ => {
                    text += &format!(
                        "type = \"file\"\npath = {:?}\n",
                        self.out_dir().join("events.ndjson").display().to_string()
                    )
                }
            }
        }
        Config::parse_with_env(&text, &self.dir.path().join("dst.toml"), &|_: &str| None)
            .unwrap_or_else(|e| panic!("seed {}: the harness wrote a bad config: {e}\n{text}", self.sc.seed))
    }

    /// The `[[sources]]` tables of the defined sources (after the built-in ones: their index in
    /// the configuration is `sources.len()` on).
    fn defined_sources(&self) -> String {
        let mut text = String::new();
        for d in &self.sc.defined {
            let (base, org, token) = match d.vendor {
                DefinedVendor::Okta => {
                    let sim = self.okta.as_ref().expect("an Okta source has its simulator");
                    (sim.origin().to_owned(), "dst-org".to_owned(), sim.token().to_owned())
                }
                DefinedVendor::Github => {
                    let sim = self.github.as_ref().expect("a GitHub source has its simulator");
                    let token = "ghp_simulatedToken0123456789abcdef".to_owned();
                    (sim.origin().to_owned(), "acme-corp".to_owned(), token)
                }
            };
            text += &format!(
                "[[sources]]\nname = {name:?}\nvendor = {name:?}\norganization_id = {org:?}\ntoken = {token:?}\n\
                 base_url = {base:?}\nstart = \"26h\"\nlag = \"{lag}s\"\noverlap = \"{overlap}s\"\n\
                 max_span = {span:?}\npoll_interval = \"{poll}s\"\nrequest_timeout = \"30s\"\npage_size = {page}\n\
                 rate_limit = {{ requests = {rq}, per = \"1m\", burst = {burst} }}\n\
                 backoff = {{ initial = \"1s\", max = \"60s\" }}\n",
                name = d.vendor.name(),
                lag = d.lag,
                overlap = d.overlap,
                span = d.max_span,
                poll = d.poll,
                page = d.page_size,
                rq = d.quota.0,
                burst = d.quota.1,
            );
        }
        text
    }

    fn source_cfg(&self, i: usize) -> SourceConfig {
        let config = self.config();
        config.sources[i].clone()
    }

    fn sink_cfg(&self, i: usize) -> SinkConfig {
        self.config().sinks[i].clone()
    }

    /// Opens the database and starts every source, every sink and the monitor.
    async fn start_agent(&mut self) -> Agent {
        let names = self.sc.sinks.iter().map(|k| k.name.to_owned()).collect();
        let queue = Queue::open(&self.state_dir(), QueueOptions { max_bytes: self.sc.max_bytes, sinks: names })
            .unwrap_or_else(|e| panic!("seed {}: cannot reopen the queue: {e}", self.sc.seed));
        let wall = self.vendor_clock.now_utc() + chrono::Duration::seconds(self.offset);
        // The same machine, restarted: time since boot goes on (the vendor clock's stands for it).
        let clock = self.vendor_clock.restarted_at(wall);
        let mut agent = Agent { queue, clock, gates: Gates::default(), tasks: Vec::new() };
        self.sample_checkpoints(&agent.queue, "reopen").await;
        for i in 0..self.sc.sources.len() + self.sc.defined.len() {
            self.start_source(&mut agent, i);
        }
        for i in 0..self.sc.sinks.len() {
            self.start_sink(&mut agent, i);
        }
        let (queue, monitor, names) = (agent.queue.clone(), self.monitor.clone(), self.source_names());
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(secs(5)).await;
                let bytes = queue.queued_bytes();
                {
                    let mut m = monitor.lock().unwrap();
                    m.peak_bytes = m.peak_bytes.max(bytes);
                }
                for name in &names {
                    if let Ok(Some(text)) = queue.checkpoint(name).await {
                        note_checkpoint(&monitor, name, &text, "while running");
                    }
                }
            }
        });
        agent.tasks.push(("monitor".into(), Stop::Monitor, handle));
        agent
    }

    fn source_names(&self) -> Vec<String> {
        let defined = self.sc.defined.iter().map(|d| d.vendor.name().to_owned());
        self.sc.sources.iter().map(|s| s.vendor.name().to_owned()).chain(defined).collect()
    }

    fn start_source(&mut self, agent: &mut Agent, i: usize) {
        let cfg = self.source_cfg(i);
        let http = sources::http_client(&cfg).expect("source HTTP client");
        let gate = agent.gates.gate(&cfg, &agent.clock);
        let source = Source::with_gate(cfg.clone(), http, agent.queue.clone(), agent.clock.clone(), gate);
        let token = CancellationToken::new();
        let run = source.run(RunMode::Follow, token.clone());
        let name = cfg.name.clone();
        agent.tasks.push((name, Stop::Source(token), tokio::spawn(async move { drop(run.await) })));
    }

    fn start_sink(&mut self, agent: &mut Agent, i: usize) {
        let cfg = self.sink_cfg(i);
        let sink = Sink::open(&cfg).expect("sink opens");
        let control = SinkControl::default();
        let name = cfg.name.clone();
        let run = sinks::run_sink(
            cfg,
            sink,
            agent.queue.clone(),
            agent.clock.clone(),
            Arc::new(SinkStats::default()),
            control.clone(),
        );
        agent.tasks.push((name, Stop::Sink(control), tokio::spawn(run)));
    }

    async fn sample_checkpoints(&mut self, queue: &Queue, when: &str) {
        for name in self.source_names() {
            if let Ok(Some(text)) = queue.checkpoint(&name).await {
                note_checkpoint(&self.monitor, &name, &text, when);
            }
        }
    }

    /// A crash: every task dropped where it stands; the database thread finishes what it was
    /// handed (a commit either happened or not) and the file is closed.
    async fn crash(&mut self, agent: Agent) {
        for (_, _, handle) in &agent.tasks {
            handle.abort();
        }
        for (_, _, handle) in agent.tasks {
            let _ = handle.await;
        }
        agent.queue.close().await.unwrap_or_else(|e| panic!("seed {}: queue close: {e}", self.sc.seed));
    }

    /// A reload of one task: stopped as the daemon stops it (sink: after its batch in hand, or
    /// given up after 30 s), then started with its new settings.
    async fn reload(&mut self, agent: &mut Agent, name: &str) {
        let Some(pos) = agent.tasks.iter().position(|(n, ..)| n == name) else { return };
        let (_, stop, handle) = agent.tasks.remove(pos);
        match stop {
            Stop::Source(token) => token.cancel(),
            Stop::Sink(control) => {
                control.stop.cancel();
                let abort = control.abort.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(secs(30)).await;
                    abort.cancel();
                });
            }
            Stop::Monitor => {}
        }
        let _ = handle.await;
    }
}

fn note_checkpoint(monitor: &Mutex<Monitor>, name: &str, text: &str, when: &str) {
    let Ok(cp) = serde_json::from_str::<Checkpoint>(text) else {
        monitor.lock().unwrap().backwards.push(format!("{name}: unreadable checkpoint {text:?} ({when})"));
        return;
    };
    let Some(done) = cp.done_until else { return };
    let mut m = monitor.lock().unwrap();
    match m.done_until.get(name) {
        Some(prev) if done < *prev => {
            if m.backwards.len() < 3 {
                let msg = format!("{name}: done_until went back from {prev} to {done} ({when})");
                m.backwards.push(msg);
            }
        }
        _ => {
            m.done_until.insert(name.to_owned(), done);
        }
    }
}

/// Runs one seed with the families `enabled` and checks the invariants.
fn run_seed(seed: u64, enabled: &[Family]) -> Result<Report, Violation> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().expect("a tokio runtime");
    // The agent's own jitter (`fastrand::Rng::new()`) forks this thread's generator.
    fastrand::seed(seed);
    let scenario = Scenario::from_seed(seed, enabled);
    runtime.block_on(simulate(scenario))
}

const T0: &str = "2026-03-18T12:00:00Z";

async fn simulate(sc: Scenario) -> Result<Report, Violation> {
    let wall: DateTime<Utc> = DateTime::parse_from_rfc3339(T0).unwrap().with_timezone(&Utc);
    let vendor_clock = Clock::starting_at(wall);
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), sc.sim.clone(), vendor_clock.clone()).await.unwrap();
    let receiver = match &sc.receiver {
        Some(m) => Some(Receiver::start(m.clone()).await),
        None => None,
    };
    let es = match &sc.es {
        Some(m) => Some(EsReceiver::start(m.clone()).await),
        None => None,
    };
    let (mut okta, mut github) = (None, None);
    for d in &sc.defined {
        match d.vendor {
            DefinedVendor::Okta => {
                okta = Some(super::okta_sim::OktaSim::start_on_clock(d.okta(wall), vendor_clock.clone()).await)
            }
            DefinedVendor::Github => {
                github = Some(super::github_sim::GithubSim::start_on_clock(d.github(wall), vendor_clock.clone()).await)
            }
        }
    }
    let tmp = if Path::new("/dev/shm").is_dir() { tempfile::tempdir_in("/dev/shm") } else { tempfile::tempdir() };
    let dir = tmp.expect("a temporary directory");
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let mut w = World {
        dir,
        sim,
        receiver,
        es,
        okta,
        github,
        vendor_clock,
        offset: 0,
        monitor: Arc::default(),
        trace: Vec::new(),
        purged: Vec::new(),
        crashes_at: Vec::new(),
        started: tokio::time::Instant::now(),
        sc,
    };
    w.log(format!("families {}", family_list(&w.sc.active)));
    let srcs: Vec<String> = w
        .sc
        .sources
        .iter()
        .map(|s| {
            format!("{} (lag {}s overlap {}s span {} poll {}s)", s.vendor.name(), s.lag, s.overlap, s.max_span, s.poll)
        })
        .collect();
    let f = &w.sc.sim.faults;
    w.log(format!(
        "vendor faults: limit {:?} retry_after {:?} limit_headers {} error_rate {:.2} latency {:?} malformed {:.2} \
         arrivals {} lateness {:?} spurious_401 {:.2}; receiver {:?}; elasticsearch {:?}",
        f.rate_limit,
        f.retry_after,
        f.limit_headers,
        f.error_rate,
        f.page_latency,
        f.malformed_rate,
        f.arrivals_per_page,
        f.arrival_lateness,
        f.spurious_unauthorized_rate,
        w.sc.receiver,
        w.sc.es
    ));
    let msg = format!("sources {}; sinks {:?}; max_bytes {}", srcs.join(", "), w.sc.sinks, w.sc.max_bytes);
    w.log(msg);
    for d in w.sc.defined.clone() {
        w.log(format!("defined source {:?}", d));
    }
    let (mut crashes, mut reloads) = (0, 0);

    // Rotations run beside the agent, on their own schedule.
    let rotations = {
        let (out, mut at) = (w.out_dir(), w.sc.rotations.clone());
        at.sort();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut done = Vec::new();
            for (n, t) in at.into_iter().enumerate() {
                tokio::time::sleep_until(start + t).await;
                let from = out.join("events.ndjson");
                if std::fs::rename(&from, out.join(format!("events.ndjson.{n}"))).is_ok() {
                    done.push(format!("rotated to events.ndjson.{n}"));
                }
            }
            done
        })
    };

    let mut agent = w.start_agent().await;
    for (trigger, end) in w.sc.segments.clone() {
        let before = w.sim.stats().requests;
        match trigger {
            Trigger::After(d) => tokio::time::sleep(d).await,
            Trigger::VendorRequests(n) => {
                tokio::select! {
                    _ = w.sim.wait_for_requests(before + n) => {}
                    _ = tokio::time::sleep(secs(3600)) => {}
                }
            }
            Trigger::ReceiverRequests(n) => {
                let target = w.receiver.as_ref().map_or(0, |r| r.with(|s| s.requests)) + n;
                let deadline = tokio::time::Instant::now() + secs(3600);
                while w.receiver.as_ref().map_or(0, |r| r.with(|s| s.requests)) < target
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        match end {
            SegmentEnd::Continue => {}
            SegmentEnd::Crash { clock_step } => {
                crashes += 1;
                w.crashes_at.push(w.vendor_clock.now_utc());
                w.crash(agent).await;
                w.offset += clock_step;
                let msg = format!("crash: every task dropped, database reopened; agent clock offset now {}s", w.offset);
                w.log(msg);
                agent = w.start_agent().await;
            }
            SegmentEnd::ReloadSource(i) => {
                reloads += 1;
                let name = w.sc.sources[i].vendor.name().to_owned();
                w.reload(&mut agent, &name).await;
                let mut rng = fastrand::Rng::with_seed(w.sc.seed ^ (reloads as u64) << 32);
                let s = &mut w.sc.sources[i];
                (s.poll, s.page_size) = (rng.u64(30..300), rng.u32(5..=100));
                let msg = format!("reload: source {name} restarted (poll {}s, page_size {})", s.poll, s.page_size);
                w.log(msg);
                w.start_source(&mut agent, i);
            }
            SegmentEnd::ReloadSink(i) => {
                reloads += 1;
                let name = w.sc.sinks[i].name;
                w.reload(&mut agent, name).await;
                let mut rng = fastrand::Rng::with_seed(w.sc.seed ^ (reloads as u64) << 32);
                w.sc.sinks[i].batch_max_events = rng.usize(1..300);
                let msg =
                    format!("reload: sink {name} restarted (batch_max_events {})", w.sc.sinks[i].batch_max_events);
                w.log(msg);
                w.start_sink(&mut agent, i);
            }
        }
    }

    // The stop: what the vendors hold now must reach every sink once the agent has had time to
    // collect past it (lag, poll interval, back-offs, outages).
    let stop_vendor = w.vendor_clock.now_utc();
    // The vendors go quiet: records that kept arriving with every answer would make a dense
    // burst a workload no client within the rate limit could ever catch up with (the invariant
    // is about what was there at the stop).
    w.sim.close_arrivals();
    let expected = expected_records(&w);
    let expected_defined = expected_defined(&w, stop_vendor);
    let held = expected.values().chain(expected_defined.values()).map(HashSet::len).sum::<usize>();
    w.log(format!("stop: {held} records at the vendors; settling"));
    let settle_deadline = tokio::time::Instant::now() + secs(6 * 3600);
    loop {
        tokio::time::sleep(secs(60)).await;
        // Dead letters count against `max_bytes`: a small queue they fill stops collection (the
        // data waits at the vendor) until the operator purges them, as README "Dead letters" says.
        if agent.queue.is_full() && sinks_drained(&w, &agent).await {
            let dead = agent.queue.dead_letters(1_000_000).await.unwrap();
            let purged =
                agent.queue.purge_dead_letters(auditrelay::queue::DeadLetterSelection::default()).await.unwrap();
            w.log(format!("operator: the queue is full of dead letters; purged {purged} after reading them"));
            w.purged.extend(dead);
        }
        if settled(&w, &agent, stop_vendor).await || tokio::time::Instant::now() >= settle_deadline {
            break;
        }
    }
    w.log("settled (or gave up after 6 h)".to_owned());
    let rotated = {
        rotations.abort();
        rotations.await.unwrap_or_default()
    };
    for r in rotated {
        w.trace.push(format!("         (file sink {r})"));
    }
    let outcome = check(&mut w, &agent, &expected, &expected_defined).await;
    let virtual_secs = tokio::time::Instant::now().saturating_duration_since(w.started).as_secs();
    w.crash(agent).await;
    if let Some(r) = &w.receiver {
        r.stop();
    }
    let mut report = Report { crashes, reloads, virtual_secs, ..Report::default() };
    if let Some(e) = &w.es {
        e.stop();
        e.with(|s| {
            report.es_runs = 1;
            report.es_requests = s.requests;
            report.es_items = s.items.clone();
            report.es_refusals = s.answers.iter().filter(|(a, _)| !a.starts_with("200 ")).map(|(_, n)| n).sum();
        });
    }
    report.vendor_requests = w.sim.stats().requests;
    report.records = held;
    for d in &w.sc.defined {
        let served = served_by(&w, d.vendor);
        let tally = report.defined.entry(d.vendor.name()).or_default();
        *tally.entry("runs".to_owned()).or_insert(0) += 1;
        *tally.entry("requests".to_owned()).or_insert(0) += served.len() as u64;
        defined::tally(&served, tally);
    }
    if let Some(o) = &w.okta {
        o.stop().await;
    }
    if let Some(g) = &w.github {
        g.stop().await;
    }
    w.sim.shutdown().await;
    outcome?;
    Ok(report)
}

/// Record names the vendor model holds now, by vendor collected.
fn expected_records(w: &World) -> BTreeMap<SimVendor, HashSet<String>> {
    let mut out = BTreeMap::new();
    for s in &w.sc.sources {
        let org = w.sim.organizations(s.vendor)[0].clone();
        let keys = w.sim.record_keys(s.vendor, &org).iter().map(|k| store_key(s.vendor, k)).collect();
        out.insert(s.vendor, keys);
    }
    out
}

/// Record names the defined vendors' simulators hold at the stop (arrived by then), by vendor.
fn expected_defined(w: &World, stop: DateTime<Utc>) -> BTreeMap<DefinedVendor, HashSet<String>> {
    let stop = stop.timestamp_millis();
    let mut out = BTreeMap::new();
    if let Some(o) = &w.okta {
        let ids = o.events().iter().map(|e| (e.uuid.clone(), e.arrival));
        out.insert(DefinedVendor::Okta, defined::held_at(DefinedVendor::Okta, ids, stop));
    }
    if let Some(g) = &w.github {
        // The definition asks `include=web`: Git events are never served to it.
        let ids = g.events().iter().filter(|e| !e.git).map(|e| (e.document_id.clone(), e.arrival));
        out.insert(DefinedVendor::Github, defined::held_at(DefinedVendor::Github, ids, stop));
    }
    out
}

/// Every answer the simulator of `vendor` gave, in order.
fn served_by(w: &World, vendor: DefinedVendor) -> Vec<super::contract_sim::Served> {
    match vendor {
        DefinedVendor::Okta => w.okta.as_ref().map(|o| o.served()).unwrap_or_default(),
        DefinedVendor::Github => w.github.as_ref().map(|g| g.served()).unwrap_or_default(),
    }
}

/// Every source's checkpoint is past the stop and every sink has nothing left to send.
async fn settled(w: &World, agent: &Agent, stop: DateTime<Utc>) -> bool {
    for name in w.source_names() {
        let Ok(Some(text)) = agent.queue.checkpoint(&name).await else { return false };
        let Ok(cp) = serde_json::from_str::<Checkpoint>(&text) else { return false };
        if cp.done_until.is_none_or(|d| d < stop) || cp.sweep.is_some() {
            return false;
        }
    }
    sinks_drained(w, agent).await
}

/// Every sink has nothing left to send.
async fn sinks_drained(w: &World, agent: &Agent) -> bool {
    for k in &w.sc.sinks {
        if agent.queue.backlog(k.name).await.map_or(true, |n| n > 0) {
            return false;
        }
    }
    true
}

/// Record names in every file the file sink wrote (rotated ones too).
fn file_sink_records(dir: &Path) -> HashSet<String> {
    let mut out = HashSet::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(line) {
                out.insert(record_key(&event));
            }
        }
    }
    out
}

/// The invariants, after the run.
async fn check(
    w: &mut World,
    agent: &Agent,
    expected: &BTreeMap<SimVendor, HashSet<String>>,
    expected_defined: &BTreeMap<DefinedVendor, HashSet<String>>,
) -> Result<(), Violation> {
    let seed = w.sc.seed;
    let poison_permille = w.sc.receiver.as_ref().map_or(0, |m| m.poison_permille);
    let fail = |w: &World, invariant: &'static str, detail: String| {
        let mut trace = w.trace.clone();
        trace.push(format!("vendor answers: {:?}", statuses(&w.sim)));
        if let Some(r) = &w.receiver {
            trace.push(format!("receiver answers: {:?}", r.with(|s| s.answers.clone())));
        }
        for d in &w.sc.defined {
            let mut tally = BTreeMap::new();
            defined::tally(&served_by(w, d.vendor), &mut tally);
            trace.push(format!("{} answers: {tally:?}", d.vendor.name()));
        }
        if let Some(e) = &w.es {
            trace.push(format!(
                "elasticsearch answers: {:?}; items {:?}",
                e.with(|s| s.answers.clone()),
                e.with(|s| s.items.clone())
            ));
        }
        Err(Violation { invariant, detail, trace })
    };

    // (b) No request inside an announced Retry-After window, across restarts.
    let mut early: Vec<String> = early_requests(&w.sim, &w.crashes_at);
    for d in &w.sc.defined {
        early.extend(defined::early_requests(d.vendor.name(), &served_by(w, d.vendor), &w.crashes_at));
    }
    if !early.is_empty() {
        let detail = format!(
            "{} vendor request(s) arrived inside a Retry-After window the vendor announced: {}",
            early.len(),
            early.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
        );
        return fail(w, "(b) no request inside Retry-After", detail);
    }

    // (c) Checkpoints never move backwards.
    w.sample_checkpoints(&agent.queue, "end").await;
    let backwards = w.monitor.lock().unwrap().backwards.clone();
    if !backwards.is_empty() {
        return fail(w, "(c) checkpoint never backwards", backwards.join("; "));
    }

    // (a) Everything the vendors held at the stop is at every sink.
    let at_file = file_sink_records(&w.out_dir());
    let at_hec = w.receiver.as_ref().map(|r| r.with(|s| s.indexed.clone()));
    let at_es = w.es.as_ref().map(|e| e.with(|s| s.indexed.clone()));
    let built_in = expected.iter().map(|(v, keys)| (v.name(), record::product(*v), keys));
    let defined = expected_defined.iter().map(|(v, keys)| (v.name(), v.product(), keys));
    for (vendor, product, keys) in built_in.chain(defined) {
        let missing_file: Vec<&String> = keys.iter().filter(|k| !at_file.contains(*k)).collect();
        if !missing_file.is_empty() {
            let product = format!("{product}:");
            let there: Vec<&String> = at_file.iter().filter(|k| k.starts_with(&product)).collect();
            let detail = format!(
                "{} of {} {} records never reached the file sink, e.g. {} (it holds {} of this vendor{})",
                missing_file.len(),
                keys.len(),
                vendor,
                short(missing_file[0]),
                there.len(),
                there.first().map_or(String::new(), |k| format!(", e.g. {}", short(k)))
            );
            return fail(w, "(a) every record at every sink", detail);
        }
        if let Some(at_hec) = &at_hec {
            let missing: Vec<&String> = keys
                .iter()
                .filter(|k| !at_hec.contains(*k) && !receiver::is_poison(seed, poison_permille, k))
                .collect();
            if !missing.is_empty() {
                let detail = format!(
                    "{} of {} {} records never reached the HEC receiver (never answered code 0 for them), e.g. {}",
                    missing.len(),
                    keys.len(),
                    vendor,
                    short(missing[0])
                );
                return fail(w, "(a) every record at every sink", detail);
            }
        }
        if let (Some(at_es), Some(model)) = (&at_es, &w.sc.es) {
            let missing: Vec<&String> = keys.iter().filter(|k| !at_es.contains(*k) && !model.is_poison(k)).collect();
            if !missing.is_empty() {
                let detail = format!(
                    "{} of {} {} records never indexed by the Elasticsearch receiver (no item 201 for them), e.g. {}",
                    missing.len(),
                    keys.len(),
                    vendor,
                    short(missing[0])
                );
                return fail(w, "(a) every record at every sink", detail);
            }
        }
    }

    // (d) Nothing dead-lettered that the model did not mark as poison.
    let mut dead = agent.queue.dead_letters(1_000_000).await.unwrap();
    dead.extend(w.purged.iter().cloned());
    for d in &dead {
        let legitimate = match &d.sink {
            // A source's dead letter: garbage the vendor model injected is one; a real record is not.
            None => match DefinedVendor::ALL.into_iter().find(|v| v.name() == d.source) {
                // The defined vendors' simulators serve no poison record (their faults spoil whole
                // answers, which are retried): a record of theirs dead-lettered is a violation.
                Some(v) => v.raw_key(&d.raw).is_none(),
                None => {
                    let vendor = SimVendor::ALL.into_iter().find(|v| v.name() == d.source);
                    let key = vendor.and_then(|v| raw_key(v, &d.raw));
                    !key.is_some_and(|k| expected.values().any(|keys| keys.contains(&k)))
                }
            },
            Some(sink) => {
                let key =
                    serde_json::from_slice::<serde_json::Value>(&d.raw).map(|e| record_key(&e)).unwrap_or_default();
                match sink.as_str() {
                    "hec" => receiver::is_poison(seed, poison_permille, &key),
                    // Refused for good by the model, and the item's reason is Elastic's own.
                    "elastic" => w.sc.es.as_ref().is_some_and(|m| {
                        m.is_poison(&key) && (m.whole_batch_refusal || d.reason.contains("document_parsing_exception"))
                    }),
                    _ => false,
                }
            }
        };
        if !legitimate {
            let detail = format!(
                "source {} sink {:?} dead-lettered a record the model did not mark as poison: {} ({})",
                d.source,
                d.sink,
                short(&String::from_utf8_lossy(&d.raw)),
                d.reason
            );
            return fail(w, "(d) no dead letter without poison", detail);
        }
    }

    // (e) Bounded: queued bytes within the cap plus one answer; batches within their cap.
    const ONE_ANSWER: u64 = 8 << 20;
    let peak = w.monitor.lock().unwrap().peak_bytes;
    if peak > w.sc.max_bytes + ONE_ANSWER {
        let detail = format!("queued bytes reached {peak}, over max_bytes {} + one answer", w.sc.max_bytes);
        return fail(w, "(e) memory bounded", detail);
    }
    if let Some(r) = &w.receiver {
        let cap = w.sc.sinks.iter().filter(|k| k.name == "hec").map(|k| k.batch_max_events).max().unwrap_or(0);
        let biggest = r.with(|s| s.max_batch);
        // A reload may have lowered the cap after bigger batches went out: the largest cap of any
        // generation bounds them all.
        if biggest > cap.max(300) {
            return fail(w, "(e) memory bounded", format!("a HEC request held {biggest} events (cap {cap})"));
        }
    }
    if let Some(e) = &w.es {
        let biggest = e.with(|s| s.max_batch);
        if biggest > 300 {
            return fail(w, "(e) memory bounded", format!("a _bulk request held {biggest} documents (cap 300)"));
        }
        // (g) No stall: whatever the sink still holds after settling is poison that a 500 keeps
        // refusing with nothing behind it to prove the receiver alive (the loop waits for newer
        // events then, by design); in any other case the sink must have finished.
        let model = w.sc.es.as_ref().expect("an ES receiver has its model");
        let left = agent.queue.read_batch("elastic", 1000, usize::MAX).await.unwrap();
        let stuck: Vec<String> = left
            .iter()
            .map(|e| serde_json::from_slice::<serde_json::Value>(&e.body).map(|v| record_key(&v)).unwrap_or_default())
            .filter(|k| !(model.whole_batch_refusal && model.is_poison(k)))
            .collect();
        if !stuck.is_empty() {
            let detail = format!(
                "the Elasticsearch sink still holds {} event(s) after settling, e.g. {}",
                stuck.len(),
                short(&stuck[0])
            );
            return fail(w, "(g) no stall", detail);
        }
        // (f) What the sink sends is what its contract says (action, _id, target, @timestamp).
        let violations = e.with(|s| s.violations.clone());
        if !violations.is_empty() {
            return fail(w, "(f) the Elasticsearch sink's contract", violations.join("; "));
        }
    }
    Ok(())
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Vendor answers by vendor and status over the run.
fn statuses(sim: &Sim) -> BTreeMap<String, BTreeMap<u16, u64>> {
    let mut out: BTreeMap<String, BTreeMap<u16, u64>> = BTreeMap::new();
    for r in sim.request_log() {
        *out.entry(r.vendor.name().to_owned()).or_default().entry(r.status).or_insert(0) += 1;
    }
    out
}

/// The requests that arrived inside an announced window, each with the 429 before it.
/// Requests inside a window announced by a 429, except one announced to a process that crashed
/// with that request in flight (answered at a crash's instant: never read).
fn early_requests(sim: &Sim, crashes_at: &[DateTime<Utc>]) -> Vec<String> {
    let log = sim.request_log();
    let mut out = Vec::new();
    for (i, r) in log.iter().enumerate().filter(|(_, r)| r.early) {
        let limited = log[..i].iter().rev().find(|p| p.vendor == r.vendor && p.path == r.path && p.status == 429);
        if limited.is_some_and(|p| crashes_at.iter().any(|c| (*c - p.at).num_milliseconds().abs() <= 1)) {
            continue;
        }
        let after =
            limited.map_or("?".to_owned(), |p| format!("{:.3}s", (r.at - p.at).num_milliseconds() as f64 / 1000.0));
        out.push(format!("{} {} at {} ({after} after its 429; answered {})", r.vendor.name(), r.path, r.at, r.status));
    }
    out
}

/// Runs `seeds` and reports every failure with its trace and replay command; returns the
/// failures.
fn run_many(seeds: impl Iterator<Item = u64>, families: &[Family]) -> Vec<(u64, &'static str)> {
    let list = family_list(families);
    let started = std::time::Instant::now();
    let (mut passed, mut failures) = (0u64, Vec::new());
    let mut totals = Report::default();
    let mut slowest = (0.0, 0);
    for seed in seeds {
        let t = std::time::Instant::now();
        let outcome = run_seed(seed, families);
        if t.elapsed().as_secs_f64() > slowest.0 {
            slowest = (t.elapsed().as_secs_f64(), seed);
        }
        match outcome {
            Ok(r) => {
                passed += 1;
                totals.vendor_requests += r.vendor_requests;
                totals.records += r.records;
                totals.crashes += r.crashes;
                totals.reloads += r.reloads;
                totals.virtual_secs += r.virtual_secs;
                totals.es_runs += r.es_runs;
                totals.es_requests += r.es_requests;
                totals.es_refusals += r.es_refusals;
                for (status, n) in r.es_items {
                    *totals.es_items.entry(status).or_insert(0) += n;
                }
                for (vendor, tally) in r.defined {
                    let total = totals.defined.entry(vendor).or_default();
                    for (what, n) in tally {
                        *total.entry(what).or_insert(0) += n;
                    }
                }
            }
            Err(v) => {
                eprintln!("\nseed {seed} violated {}: {}", v.invariant, v.detail);
                eprintln!("trace of seed {seed}:");
                for line in &v.trace {
                    eprintln!("  {line}");
                }
                let es =
                    std::env::var("AUDITRELAY_SIM_ES").map(|v| format!(" AUDITRELAY_SIM_ES={v}")).unwrap_or_default();
                eprintln!(
                    "replay: AUDITRELAY_SIM_SEED={seed} AUDITRELAY_SIM_FAMILIES={list}{es} cargo test --test it dst::replay -- --nocapture"
                );
                failures.push((seed, v.invariant));
            }
        }
    }
    eprintln!(
        "dst: {passed} seeds passed, {} failed, families {list}; {} records, {} vendor requests, {} crashes, {} reloads, \
         {} h virtual, {:.1} s real (slowest: seed {} in {:.1} s)",
        failures.len(),
        totals.records,
        totals.vendor_requests,
        totals.crashes,
        totals.reloads,
        totals.virtual_secs / 3600,
        started.elapsed().as_secs_f64(),
        slowest.1,
        slowest.0
    );
    eprintln!(
        "dst: elasticsearch in {} seeds: {} _bulk requests, {} answered other than 200; items by status {:?}",
        totals.es_runs, totals.es_requests, totals.es_refusals, totals.es_items
    );
    for (vendor, tally) in &totals.defined {
        eprintln!("dst: defined vendor {vendor}: {tally:?}");
    }
    failures
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

/// The CI batch: `AUDITRELAY_SIM_SEEDS` seeds (default [`DEFAULT_SEEDS`]) from
/// `AUDITRELAY_SIM_FIRST_SEED` (default 0).
#[test]
fn seeds() {
    let n = env_u64("AUDITRELAY_SIM_SEEDS").unwrap_or(DEFAULT_SEEDS);
    let first = env_u64("AUDITRELAY_SIM_FIRST_SEED").unwrap_or(0);
    let failures = run_many(first..first + n, &families_from_env());
    assert!(failures.is_empty(), "seeds violating an invariant (replay commands above): {failures:?}");
}

/// Every kept seed whose families are all enabled must pass.
#[test]
fn regression_seeds() {
    let enabled = families_from_env();
    let mut failures = Vec::new();
    for (seed, families, found) in REGRESSION_SEEDS {
        let families = parse_families(families);
        if families.iter().all(|f| enabled.contains(f)) {
            eprintln!("regression seed {seed} ({found})");
            failures.extend(run_many(std::iter::once(*seed), &families));
        }
    }
    assert!(failures.is_empty(), "regression seeds violating an invariant (replay commands above): {failures:?}");
}

/// `AUDITRELAY_SIM_SEED=<seed>`: one seed, with its trace printed even when it passes.
#[test]
fn replay() {
    // Without a seed named, seed 0: the command itself stays proven to work.
    let seed = env_u64("AUDITRELAY_SIM_SEED").unwrap_or(0);
    let families = families_from_env();
    // `RUST_LOG=auditrelay=debug` shows what the agent did (on the virtual clock).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    match run_seed(seed, &families) {
        Ok(r) => eprintln!("seed {seed} passed: {r:?}"),
        Err(v) => {
            for line in &v.trace {
                eprintln!("  {line}");
            }
            panic!("seed {seed} violated {}: {}", v.invariant, v.detail);
        }
    }
}

/// The same seed decides the same scenario: what makes a printed seed worth replaying.
#[test]
fn a_seed_decides_its_scenario() {
    let all = Family::ALL.to_vec();
    let (a, b) = (Scenario::from_seed(7, &all), Scenario::from_seed(7, &all));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_ne!(format!("{a:?}"), format!("{:?}", Scenario::from_seed(8, &all)));
}

/// The Elasticsearch sink is an independent draw: with it forced on, every seed keeps the
/// scenario it has without it (families, vendors, sources, faults, the HEC model, segments,
/// rotations), plus the sink and at most one reload of it.
#[test]
fn the_elasticsearch_sink_leaves_every_other_draw_as_it_was() {
    let all = Family::ALL.to_vec();
    let mut with_es = 0;
    for seed in 0..500 {
        let mut without = Scenario::from_seed_with(seed, &all, Some(false));
        let mut with = Scenario::from_seed_with(seed, &all, Some(true));
        assert!(without.es.is_none() && with.es.is_some());
        let es = with.sinks.iter().position(|k| k.name == "elastic").expect("the sink is added");
        assert_eq!(es, with.sinks.len() - 1, "seed {seed}: the sink is added after the others");
        with.sinks.pop();
        let reloads = with.segments.len() - without.segments.len();
        assert!(reloads <= 1, "seed {seed}: {reloads} segments added");
        with.segments.retain(|(_, end)| !matches!(end, SegmentEnd::ReloadSink(i) if *i == es));
        with.es = None;
        // A HashMap prints in no fixed order: compared as a map, then left out of the text.
        let without_limits = std::mem::take(&mut without.sim.faults.vendor_rate_limits);
        assert_eq!(with.sim.faults.vendor_rate_limits, without_limits, "seed {seed}");
        with.sim.faults.vendor_rate_limits.clear();
        assert_eq!(format!("{with:?}"), format!("{without:?}"), "seed {seed}");
        with_es += usize::from(Scenario::from_seed_with(seed, &all, None).es.is_some());
    }
    // Drawn, about half the seeds have it.
    assert!((150..350).contains(&with_es), "{with_es} of 500 seeds drew an Elasticsearch sink");
}

/// The defined sources are an independent draw: with them forced on, every seed keeps the
/// scenario it has without them (families, vendors, sources, faults, sinks, the receiver models,
/// segments, rotations), plus one or two defined sources.
#[test]
fn the_defined_sources_leave_every_other_draw_as_it_was() {
    let all = Family::ALL.to_vec();
    let mut with_defined = 0;
    for seed in 0..500 {
        let mut without = Scenario::from_seed_full(seed, &all, None, Some(false));
        let mut with = Scenario::from_seed_full(seed, &all, None, Some(true));
        assert!(without.defined.is_empty(), "seed {seed}");
        assert!((1..=2).contains(&with.defined.len()), "seed {seed}: {} defined sources", with.defined.len());
        with.defined.clear();
        let without_limits = std::mem::take(&mut without.sim.faults.vendor_rate_limits);
        assert_eq!(with.sim.faults.vendor_rate_limits, without_limits, "seed {seed}");
        with.sim.faults.vendor_rate_limits.clear();
        assert_eq!(format!("{with:?}"), format!("{without:?}"), "seed {seed}");
        with_defined += usize::from(!Scenario::from_seed_full(seed, &all, None, None).defined.is_empty());
    }
    // Drawn, about half the seeds have them.
    assert!((150..350).contains(&with_defined), "{with_defined} of 500 seeds drew defined sources");
}

/// Invariant (b) for the defined vendors can fail: a request inside the wait a 429 (Okta: until
/// its reset) or a 403 with `retry-after` (GitHub) announced is reported; one after it, or one
/// announced to a process that crashed with the request in flight, is not.
#[test]
fn a_request_inside_an_announced_wait_is_reported() {
    use super::contract_sim::{Served, announced_until};
    use axum::http::{HeaderMap, HeaderValue};
    let t = |s: i64| DateTime::parse_from_rfc3339(T0).unwrap().with_timezone(&Utc) + chrono::Duration::seconds(s);
    let mut okta = HeaderMap::new();
    okta.insert("x-rate-limit-remaining", HeaderValue::from_static("0"));
    okta.insert("x-rate-limit-reset", HeaderValue::from_str(&t(60).timestamp().to_string()).unwrap());
    let mut github = HeaderMap::new();
    github.insert("x-ratelimit-remaining", HeaderValue::from_static("10"));
    github.insert("retry-after", HeaderValue::from_static("30"));
    assert_eq!(announced_until(429, &okta, t(0)), Some(t(60)));
    assert_eq!(announced_until(403, &github, t(0)), Some(t(30)));
    assert_eq!(announced_until(200, &okta, t(0)), None, "a 200 with a spent budget refuses nothing");
    assert_eq!(announced_until(403, &HeaderMap::new(), t(0)), None, "a 403 without a wait is a refusal");
    let served = |n: u64, at: i64, status: u16, until: Option<DateTime<Utc>>| Served {
        n,
        path: "/".into(),
        query: String::new(),
        status,
        fault: None,
        ids: vec![],
        at: t(at),
        answered: t(at),
        until,
    };
    let log = [served(0, 0, 429, Some(t(60))), served(1, 59, 200, None), served(2, 60, 200, None)];
    let early = defined::early_requests("okta", &log, &[]);
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(early[0].contains("okta request 1"), "{early:?}");
    assert!(defined::early_requests("okta", &log, &[t(0)]).is_empty(), "a wait announced to a crashed process");
}
