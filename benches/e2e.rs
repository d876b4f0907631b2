//! End to end (not a test: it prints figures): the simulator with a backlog of 1,000,000 records
//! (a quarter per vendor), the real agent (`auditrelay run`, the bench-profile binary) draining
//! it, with durable queue commits as always, in three runs on fresh state and receivers:
//! 1. the three sinks of issue 21: a file, the HEC emulator (gzip) and a syslog TCP receiver;
//! 2. the file sink alone;
//! 3. the three and the Elasticsearch `_bulk` emulator (lean mode, gzip), a fourth sink.
//!
//! Measured per run: wall time from the agent's start until every sink holds every event;
//! events/s; the agent's CPU time (user + system, from `/proc/<pid>/stat`) per 100,000 events;
//! its peak RSS (`VmHWM`); this process's own CPU (the simulator and the receivers, on the same
//! two cores). Afterwards each event's `metadata.uid` is checked: every record arrived at the
//! file and HEC sinks exactly once, and Elasticsearch indexed each under its own `_id` once.
//! The targets of issue 21 are printed with verdicts.
//!
//! **The Elasticsearch sink's share.** The agent's sinks share its tokio workers, so `/proc`
//! cannot split its CPU by sink: run 3 minus run 1 is what adding the Elasticsearch sink costs
//! the agent (and, in this process, what the lean `_bulk` emulator costs). The runs share the
//! machine with whatever else runs on it; the difference is only as good as that.
//!
//! **The floor** (`common/floor.rs`): after run 1, the work no design can avoid for its events
//! (serializing each once, gzipping the HEC bodies, writing the bytes each sink must receive,
//! one fdatasync per durable commit) is timed in this process on the bytes the file sink
//! received; the agent's CPU per event is printed as a ratio of it for runs 1 and 2. Durable
//! commits are the vendors' 200 answers of the run: each page is one synced commit.
//!
//! Run: `cargo bench --bench e2e` (add `-- 200000` for another record count).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;
/// The `_bulk` emulator of the tests. Included here rather than in `common` (as `hec_emulator`
/// is) because it names the test PKI as `crate::harness::pki`: the `use` below gives it that
/// path in this crate, and the other benchmarks that include `common` need neither.
#[path = "../tests/it/es_emulator/mod.rs"]
mod es_emulator;
/// Only this benchmark measures a floor.
#[path = "common/floor.rs"]
mod floor;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::Sim;
use auditrelay::sinks::elasticsearch;
// `crate::harness`, as the emulator names it.
use common::harness;
use common::harness::agent::Agent;
use common::hec_emulator::{EventUid, HecEmulator, HecOptions, Retain};
use common::killable; // `super::killable` (its listener whose connections can be cut), likewise
use common::*;
use es_emulator::{EsEmulator, EsOptions, base64};
use floor::Floor;

/// Targets (issue 21), on a 2-core machine.
const TARGET_EVENTS_PER_S: f64 = 60_000.0;
/// Agent CPU-s per 100,000 events, three sinks.
const TARGET_CPU_PER_100K: f64 = 1.0;
/// Agent CPU-s per 100,000 events, the file sink alone.
const TARGET_FILE_CPU_PER_100K: f64 = 0.4;
const TARGET_PEAK_RSS_MIB: f64 = 32.0;
/// The agent's CPU per event within this factor of the floor.
const TARGET_FLOOR_RATIO: f64 = 2.0;

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(records));
}

/// Which sinks a run has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sinks {
    /// File, HEC (gzip), syslog TCP: issue 21's three.
    Three,
    /// The file sink alone.
    FileOnly,
    /// The three and Elasticsearch.
    WithElasticsearch,
}

impl Sinks {
    fn has_receivers(self) -> bool {
        self != Sinks::FileOnly
    }
}

/// What one agent run measured.
struct Measured {
    events: usize,
    wall: Duration,
    user: f64,
    system: f64,
    peak_mib: f64,
    /// This process's CPU (the simulator and receivers), user and system, in seconds.
    bench_user: f64,
    bench_system: f64,
    /// Vendor answers with a page (200): each is one synced queue commit.
    commits: u64,
}

impl Measured {
    fn cpu(&self) -> f64 {
        self.user + self.system
    }

    fn bench_cpu(&self) -> f64 {
        self.bench_user + self.bench_system
    }

    fn per_100k(&self, cpu: f64) -> f64 {
        cpu / (self.events as f64 / 100_000.0)
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }
}

async fn run(records: usize) {
    println!("{}; agent environment as the packaged unit sets it: {}", machine(), unit_env());
    let per_vendor = records / 4;
    let total = per_vendor * 4;
    let mut opts = sim_options(per_vendor);
    for span in [
        &mut opts.aitronos.records_span,
        &mut opts.astronomer.records_span,
        &mut opts.configcat.records_span,
        &mut opts.datafold.records_span,
    ] {
        // A week: about 36,000 records a day per vendor, a heavy organization's audit log.
        *span = Duration::from_secs(7 * 86_400);
    }
    let seeded = Instant::now();
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, Clock::system()).await.unwrap();
    println!("simulator: {total} records ({per_vendor} per vendor over 7 days) seeded in {:.1?}", seeded.elapsed());

    println!("\n-- run 1: three sinks (file, HEC gzip, syslog TCP)");
    let (three, floor) = drain(&sim, total, Sinks::Three).await;
    let floor = floor.expect("run 1 measures the floor");
    println!("\n-- run 2: the same backlog, the file sink alone");
    let (file, _) = drain(&sim, total, Sinks::FileOnly).await;
    println!(
        "\n-- run 3: the same backlog, four sinks (the three and Elasticsearch), for the Elasticsearch sink's share"
    );
    let (four, _) = drain(&sim, total, Sinks::WithElasticsearch).await;
    sim.shutdown().await;

    println!();
    println!("{:<46} {:>14} {:>12} {:>8}", "targets (issue 21, 2 cores)", "measured", "target", "");
    let target = |what: &str, value: f64, precision: usize, target: String, ok: bool| {
        println!("{what:<46} {value:>14.precision$} {target:>12} {:>8}", verdict(ok));
    };
    let info = |what: &str, value: String| println!("{what:<46} {value:>14}");
    target(
        "3 sinks: events/s (all sinks)",
        three.rate(),
        0,
        format!(">= {TARGET_EVENTS_PER_S:.0}"),
        three.rate() >= TARGET_EVENTS_PER_S,
    );
    let per = three.per_100k(three.cpu());
    target(
        "3 sinks: agent CPU-s per 100,000 events",
        per,
        3,
        format!("<= {TARGET_CPU_PER_100K}"),
        per <= TARGET_CPU_PER_100K,
    );
    info("  of which user / system", format!("{:.1} / {:.1} s", three.user, three.system));
    target(
        "3 sinks: agent peak RSS, MiB",
        three.peak_mib,
        1,
        format!("<= {TARGET_PEAK_RSS_MIB}"),
        three.peak_mib <= TARGET_PEAK_RSS_MIB,
    );
    info("3 sinks: wall, s", format!("{:.1}", three.wall.as_secs_f64()));
    let per = file.per_100k(file.cpu());
    target(
        "file sink alone: agent CPU-s per 100,000 events",
        per,
        3,
        format!("<= {TARGET_FILE_CPU_PER_100K}"),
        per <= TARGET_FILE_CPU_PER_100K,
    );
    info("  of which user / system", format!("{:.1} / {:.1} s", file.user, file.system));
    info("file sink alone: events/s", format!("{:.0}", file.rate()));
    target(
        "file sink alone: agent peak RSS, MiB",
        file.peak_mib,
        1,
        format!("<= {TARGET_PEAK_RSS_MIB}"),
        file.peak_mib <= TARGET_PEAK_RSS_MIB,
    );
    target(
        "4 sinks: events/s (all sinks)",
        four.rate(),
        0,
        format!(">= {TARGET_EVENTS_PER_S:.0}"),
        four.rate() >= TARGET_EVENTS_PER_S,
    );
    info("4 sinks: agent CPU-s per 100,000 events", format!("{:.3}", four.per_100k(four.cpu())));
    target(
        "4 sinks: agent peak RSS, MiB",
        four.peak_mib,
        1,
        format!("<= {TARGET_PEAK_RSS_MIB}"),
        four.peak_mib <= TARGET_PEAK_RSS_MIB,
    );

    println!();
    println!("{:<46} {:>10} {:>10} {:>10}", "this process (simulator + receivers)", "3 sinks", "file", "4 sinks");
    let row = |what: &str, f: &dyn Fn(&Measured) -> f64, precision: usize| {
        println!("{what:<46} {:>10.precision$} {:>10.precision$} {:>10.precision$}", f(&three), f(&file), f(&four));
    };
    row("CPU-s", &|m| m.bench_cpu(), 1);
    row("  user", &|m| m.bench_user, 1);
    row("  system", &|m| m.bench_system, 1);
    row("CPU-s per 100,000 events", &|m| m.per_100k(m.bench_cpu()), 3);
    row("share of the 2 cores during the run, %", &|m| 100.0 * m.bench_cpu() / (2.0 * m.wall.as_secs_f64()), 1);
    row("agent's share of the 2 cores, %", &|m| 100.0 * m.cpu() / (2.0 * m.wall.as_secs_f64()), 1);

    println!();
    println!("{:<46} {:>14} {:>14} {:>14}", "Elasticsearch sink's share", "4 sinks", "3 sinks", "difference");
    let row = |what: &str, a: f64, b: f64, precision: usize| {
        println!("{what:<46} {a:>14.precision$} {b:>14.precision$} {:>+14.precision$}", a - b);
    };
    row("agent CPU-s", four.cpu(), three.cpu(), 2);
    row("agent CPU-s per 100,000 events", four.per_100k(four.cpu()), three.per_100k(three.cpu()), 3);
    row("agent peak RSS, MiB", four.peak_mib, three.peak_mib, 1);
    row("wall, s", four.wall.as_secs_f64(), three.wall.as_secs_f64(), 1);
    row("simulator + receivers CPU-s (this process)", four.bench_cpu(), three.bench_cpu(), 1);
    println!(
        "Elasticsearch sink: {:.1} % of the agent's CPU in the 4-sink run ({:.3} CPU-s per 100,000 events); \
         the lean _bulk emulator: {:+.1} CPU-s of this process",
        100.0 * (four.cpu() - three.cpu()) / four.cpu(),
        four.per_100k(four.cpu()) - three.per_100k(three.cpu()),
        four.bench_cpu() - three.bench_cpu()
    );

    print_floor(&floor, &three, &file);
}

/// The floor's parts and the agent's distance to it, for runs 1 and 2.
fn print_floor(floor: &Floor, three: &Measured, file: &Measured) {
    let per_100k = |cpu: f64| cpu / (floor.events as f64 / 100_000.0);
    println!();
    println!(
        "floor: the work no design can avoid, over run 1's {} events in {} batches of <= {} events / {} KiB \
         (CPU time of this process's measuring thread)",
        floor.events,
        floor.batches,
        floor::BATCH_EVENTS,
        floor::BATCH_BYTES / 1024
    );
    println!("{:<56} {:>9} {:>12} {:>22}", "part", "CPU-s", "per 100,000", "bytes");
    let part = |what: &str, cpu: f64, bytes: String| {
        println!("{what:<56} {cpu:>9.3} {:>12.4} {bytes:>22}", per_100k(cpu));
    };
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / MIB);
    part("(a) serialize each event once (serde_json::to_writer)", floor.serialize, mib(floor.json_bytes));
    part(
        "(b) gzip the HEC bodies (flate2/zlib-rs, fast)",
        floor.gzip,
        format!("{} -> {}", mib(floor.hec_plain_bytes), mib(floor.hec_gzip_bytes)),
    );
    part("(c) write(2) the file sink's bytes to a file", floor.file_write, mib(floor.file_bytes));
    part("(c) write(2) the syslog bytes to loopback TCP", floor.syslog_write, mib(floor.syslog_bytes));
    part("(c) write(2) the gzipped HEC bodies to loopback TCP", floor.hec_write, mib(floor.hec_gzip_bytes));
    println!(
        "(d) one fdatasync per durable commit: {:.1} µs CPU each (median of 200, wall {:.0} µs); \
         commits: run 1 {}, run 2 {}",
        floor.fsync_cpu.as_secs_f64() * 1e6,
        floor.fsync_wall.as_secs_f64() * 1e6,
        three.commits,
        file.commits
    );
    println!();
    println!("{:<46} {:>10} {:>10} {:>12} {:>8}", "distance to the floor", "3 sinks", "file", "goal", "");
    let floor_three = per_100k(floor.three_sinks(three.commits));
    let floor_file = per_100k(floor.file_only(file.commits));
    println!(
        "{:<46} {:>10.4} {:>10.4}",
        "  (d) fdatasyncs, CPU-s per 100,000 events",
        per_100k(floor.fsyncs(three.commits)),
        per_100k(floor.fsyncs(file.commits))
    );
    println!("{:<46} {:>10.3} {:>10.3}", "floor, CPU-s per 100,000 events", floor_three, floor_file);
    let (agent_three, agent_file) = (three.per_100k(three.cpu()), file.per_100k(file.cpu()));
    println!("{:<46} {:>10.3} {:>10.3}", "agent, CPU-s per 100,000 events", agent_three, agent_file);
    let (ratio_three, ratio_file) = (agent_three / floor_three, agent_file / floor_file);
    println!(
        "{:<46} {:>10.1} {:>10.1} {:>12} {:>8}",
        "agent / floor",
        ratio_three,
        ratio_file,
        format!("<= {TARGET_FLOOR_RATIO}"),
        verdict(ratio_three <= TARGET_FLOOR_RATIO && ratio_file <= TARGET_FLOOR_RATIO)
    );
}

/// One agent, fresh state and receivers, draining the whole backlog of `sim` into `sinks`;
/// checks every record arrived, prints the run's lines and returns what it measured, and for
/// the three-sink run the floor measured on its file sink's output.
async fn drain(sim: &Sim, total: usize, sinks: Sinks) -> (Measured, Option<Floor>) {
    let hec = match sinks.has_receivers() {
        true => Some(HecEmulator::start(HecOptions { retain: Retain::Uids, ..HecOptions::default() }).await),
        false => None,
    };
    let syslog = match sinks.has_receivers() {
        true => Some(SyslogReceiver::start().await),
        false => None,
    };
    let es = if sinks == Sinks::WithElasticsearch {
        // Lean: counts and checks `_id`s; a million documents parsed and kept would be the
        // benchmark's CPU and memory.
        let es = EsEmulator::start(EsOptions::lean(vec![base64("bench:key")])).await;
        // The template the operator installs (README): every OCSF value a keyword, under the field cap.
        es.install_template(
            elasticsearch::TEMPLATE_NAME,
            elasticsearch::template(elasticsearch::DEFAULT_DATASET, false),
        );
        Some(es)
    } else {
        None
    };
    let dir = tempfile::tempdir().unwrap();
    println!("state and file sink on {} ({})", dir.path().display(), filesystem(dir.path()).0);
    let config = dir.path().join("auditrelay.toml");
    let mut text = match (&hec, &syslog) {
        (Some(hec), Some(syslog)) => agent_config(dir.path(), sim, &hec.url(), syslog.addr, "8d", ""),
        _ => agent_config_file_only(dir.path(), sim, "8d", ""),
    };
    if let Some(es) = &es {
        text += &elasticsearch_sink(&es.url(), "bench:key");
    }
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("events.ndjson");
    let (requests0, ok0) = (sim.stats().requests, sim.stats().ok);

    let bench_cpu0 = own_cpu_seconds();
    let started = Instant::now();
    let mut agent = Agent::spawn(&["run"], &config, &dir.path().join("agent.log"), UNIT_ENV);
    let mut file_lines = LineCounter::new();
    let names: Vec<&str> = ["file", "HEC", "syslog", "Elasticsearch"]
        .into_iter()
        .zip([true, hec.is_some(), syslog.is_some(), es.is_some()])
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
    let (mut first_event, mut done_at) = (None, vec![None; names.len()]);
    let total_u = total as u64;
    // The composition of the resident memory when it was largest (VmHWM has no breakdown).
    let (mut largest, mut parts) = (0u64, (0u64, 0u64, 0u64, 0u64));
    agent
        .until("every sink to hold every event", Duration::from_secs(1800), |agent| {
            let now = agent.rss_parts();
            if now.0 + now.1 + now.2 > largest {
                (largest, parts) = (now.0 + now.1 + now.2, now);
            }
            let mut counts = vec![file_lines.count(&out)];
            counts.extend(hec.as_ref().map(|h| h.indexed_count() as u64));
            counts.extend(syslog.as_ref().map(SyslogReceiver::messages));
            counts.extend(es.as_ref().map(|es| es.document_count() as u64));
            if first_event.is_none() && counts.iter().any(|c| *c > 0) {
                first_event = Some(started.elapsed());
            }
            for (at, n) in done_at.iter_mut().zip(&counts) {
                if at.is_none() && *n >= total_u {
                    *at = Some(started.elapsed());
                }
            }
            counts.iter().all(|c| *c >= total_u)
        })
        .await;
    let wall = started.elapsed();
    let (user, system) = agent.cpu_seconds();
    let peak_mib = agent.peak_rss() as f64 / MIB;
    let bench_cpu = own_cpu_seconds();
    let (bench_user, bench_system) = (bench_cpu.0 - bench_cpu0.0, bench_cpu.1 - bench_cpu0.1);
    let status = agent.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "the agent failed: {status}\n{}", agent.tail());

    // Every record exactly once at the file sink and at HEC; syslog got (at least) as many;
    // Elasticsearch one document per `_id`, as many as records.
    let file_uids = uids_of_file(&out);
    let mut exactly_once = vec![("file", file_uids.clone())];
    exactly_once.extend(hec.as_ref().map(|hec| ("HEC", hec.indexed_uids())));
    for (sink, uids) in &exactly_once {
        let distinct: HashSet<&String> = uids.iter().collect();
        assert_eq!(distinct.len(), total, "{sink}: {} distinct events of {total}", distinct.len());
        assert_eq!(uids.len(), total, "{sink}: {} events delivered for {total} records", uids.len());
    }
    if let Some(es) = &es {
        let distinct: HashSet<String> = file_uids.iter().cloned().collect();
        assert_eq!(es.document_count(), total, "Elasticsearch: {} documents for {total} records", es.document_count());
        assert!(es.indexed_ids() == distinct, "Elasticsearch: the _ids are not the events' metadata.uid");
    }
    drop(file_uids);
    if let Some(syslog) = &syslog {
        assert_eq!(syslog.malformed(), 0, "the syslog receiver saw malformed frames");
    }

    let stats = sim.stats();
    let commits = stats.ok - ok0;
    println!("vendor requests: {} ({commits} pages answered: durable commits)", stats.requests - requests0);
    let done: Vec<String> =
        names.iter().zip(&done_at).map(|(n, at)| format!("{n} {:.2?}", at.unwrap_or_default())).collect();
    println!("first event at a sink after {:.2?}; every event at {}", first_event.unwrap_or_default(), done.join(", "));
    let file_bytes = std::fs::metadata(&out).map_or(0, |m| m.len());
    // Octet counting: `LEN ` before each message.
    let syslog_wire = syslog.as_ref().map_or(0, |s| {
        let avg = s.bytes() / s.messages().max(1);
        s.bytes() + s.messages() * (avg.to_string().len() as u64 + 1)
    });
    match &syslog {
        Some(s) => println!(
            "syslog: {} messages, {:.1} MiB ({:.1} MiB with octet counts); file sink: {:.1} MiB",
            s.messages(),
            s.bytes() as f64 / MIB,
            syslog_wire as f64 / MIB,
            file_bytes as f64 / MIB
        ),
        None => println!("file sink: {:.1} MiB", file_bytes as f64 / MIB),
    }
    if let Some(hec) = &hec {
        let requests = hec.requests();
        let wire: usize = requests.iter().map(|r| r.raw_len).sum();
        println!("HEC: {} requests, {:.1} MiB on the wire (gzip)", requests.len(), wire as f64 / MIB);
    }
    if let Some(es) = &es {
        let requests = es.requests();
        let wire: usize = requests.iter().map(|r| r.raw_len).sum();
        let decoded: usize = requests.iter().map(|r| r.decoded_len).sum();
        println!(
            "elasticsearch: {} _bulk requests, {:.1} MiB on the wire (gzip) for {:.1} MiB of NDJSON",
            requests.len(),
            wire as f64 / MIB,
            decoded as f64 / MIB
        );
    }
    println!(
        "simulator + receivers (this process): {:.1} CPU-s ({bench_user:.1} user / {bench_system:.1} system)",
        bench_user + bench_system
    );
    println!(
        "agent memory at its largest sample: {:.1} MiB = anonymous {:.1} + file-backed {:.1} + shared {:.1}; {} threads",
        largest as f64 / MIB,
        parts.0 as f64 / MIB,
        parts.1 as f64 / MIB,
        parts.2 as f64 / MIB,
        parts.3
    );
    println!(
        "agent: {:.1} s wall, {:.1} CPU-s ({user:.1} user / {system:.1} system), peak RSS {peak_mib:.1} MiB",
        wall.as_secs_f64(),
        user + system
    );
    let measured = Measured { events: total, wall, user, system, peak_mib, bench_user, bench_system, commits };
    let floor = (sinks == Sinks::Three).then(|| measure_floor(&out, dir.path(), syslog_wire));
    (measured, floor)
}

/// [`floor::measure`] on a thread of its own (its CPU clock is that thread's).
fn measure_floor(events: &Path, scratch: &Path, syslog_wire: u64) -> Floor {
    let started = Instant::now();
    let floor = std::thread::scope(|s| s.spawn(|| floor::measure(events, scratch, syslog_wire)).join().unwrap());
    println!("floor measured in {:.1?} (wall)", started.elapsed());
    floor
}

/// `metadata.uid` of every line of the file sink's output.
fn uids_of_file(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str::<EventUid>(l).unwrap().metadata.uid).collect()
}

/// This process's CPU time so far (user, system), in seconds.
fn own_cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are in clock ticks: 100 per second on Linux.
    (fields[11].parse::<f64>().unwrap() / 100.0, fields[12].parse::<f64>().unwrap() / 100.0)
}
