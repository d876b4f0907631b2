//! End to end (not a test: it prints figures): the simulator with a backlog of 1,000,000 records
//! (a quarter per vendor), the real agent (`auditrelay run`, the bench-profile binary) draining
//! it into three local sinks at once (a file, the HEC emulator, a syslog TCP receiver), with
//! durable queue commits as always.
//!
//! Measured: wall time from the agent's start until every sink holds every event; events/s;
//! the agent's CPU time (user + system, from `/proc/<pid>/stat`) per 100,000 events; its peak
//! RSS (`VmHWM`). The simulator and receivers run in this process, on the same two cores, and
//! their CPU is reported apart. Afterwards each event's `metadata.uid` is checked: every record
//! arrived at the file and HEC sinks exactly once.
//!
//! Run: `cargo bench --bench e2e` (add `-- 200000` for another record count).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::Sim;
use common::harness::agent::Agent;
use common::hec_emulator::{EventUid, HecEmulator, HecOptions, Retain};
use common::*;

/// Targets (issue 9), on a 2-core machine.
const TARGET_EVENTS_PER_S: f64 = 50_000.0;
const TARGET_CPU_PER_100K: f64 = 0.5;
const TARGET_PEAK_RSS_MIB: f64 = 40.0;

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(records));
}

async fn run(records: usize) {
    println!("{}", machine());
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
    let hec = HecEmulator::start(HecOptions { retain: Retain::Uids, ..HecOptions::default() }).await;
    let syslog = SyslogReceiver::start().await;
    println!("simulator: {total} records ({per_vendor} per vendor over 7 days) seeded in {:.1?}", seeded.elapsed());

    let dir = tempfile::tempdir().unwrap();
    println!("state and file sink on {} ({})", dir.path().display(), filesystem(dir.path()).0);
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, agent_config(dir.path(), &sim, &hec.url(), syslog.addr, "8d", "")).unwrap();
    let out = dir.path().join("events.ndjson");

    let bench_cpu0 = own_cpu_seconds();
    let started = Instant::now();
    let mut agent = Agent::spawn(&["run"], &config, &dir.path().join("agent.log"), &[]);
    let mut file_lines = LineCounter::new();
    let (mut first_event, mut done_at) = (None, [None; 3]);
    let total_u = total as u64;
    // The composition of the resident memory when it was largest (VmHWM has no breakdown).
    let (mut largest, mut parts) = (0u64, (0u64, 0u64, 0u64, 0u64));
    agent
        .until("every sink to hold every event", Duration::from_secs(1800), |agent| {
            let now = agent.rss_parts();
            if now.0 + now.1 + now.2 > largest {
                (largest, parts) = (now.0 + now.1 + now.2, now);
            }
            let counts = [file_lines.count(&out), hec.indexed_count() as u64, syslog.messages()];
            if first_event.is_none() && counts.iter().any(|c| *c > 0) {
                first_event = Some(started.elapsed());
            }
            for (at, n) in done_at.iter_mut().zip(counts) {
                if at.is_none() && n >= total_u {
                    *at = Some(started.elapsed());
                }
            }
            counts.iter().all(|c| *c >= total_u)
        })
        .await;
    let wall = started.elapsed();
    let (user, system) = agent.cpu_seconds();
    let peak = agent.peak_rss() as f64 / MIB;
    let bench_cpu = own_cpu_seconds() - bench_cpu0;
    let status = agent.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "the agent failed: {status}\n{}", agent.tail());

    // Every record exactly once at the file sink and at HEC; syslog got (at least) as many.
    let file_uids = uids_of_file(&out);
    let hec_uids = hec.indexed_uids();
    for (sink, uids) in [("file", &file_uids), ("HEC", &hec_uids)] {
        let distinct: HashSet<&String> = uids.iter().collect();
        assert_eq!(distinct.len(), total, "{sink}: {} distinct events of {total}", distinct.len());
        assert_eq!(uids.len(), total, "{sink}: {} events delivered for {total} records", uids.len());
    }
    assert_eq!(syslog.malformed(), 0, "the syslog receiver saw malformed frames");
    let stats = sim.stats();

    let cpu = user + system;
    let rate = total as f64 / wall.as_secs_f64();
    let per_100k = cpu / (total as f64 / 100_000.0);
    println!("vendor requests: {} ({} records served)", stats.requests, stats.served_records);
    println!(
        "first event at a sink after {:.2?}; every event at file {:.2?}, HEC {:.2?}, syslog {:.2?}",
        first_event.unwrap_or_default(),
        done_at[0].unwrap_or_default(),
        done_at[1].unwrap_or_default(),
        done_at[2].unwrap_or_default(),
    );
    println!(
        "syslog: {} messages, {:.1} MiB; file sink: {:.1} MiB",
        syslog.messages(),
        syslog.bytes() as f64 / MIB,
        std::fs::metadata(&out).map_or(0, |m| m.len()) as f64 / MIB
    );
    println!("simulator + receivers (this process): {bench_cpu:.1} CPU-s");
    println!(
        "agent memory at its largest sample: {:.1} MiB = anonymous {:.1} + file-backed {:.1} + shared {:.1}; {} threads",
        largest as f64 / MIB,
        parts.0 as f64 / MIB,
        parts.1 as f64 / MIB,
        parts.2 as f64 / MIB,
        parts.3
    );
    println!();
    println!("{:<32} {:>14} {:>14} {:>8}", "end to end, 3 sinks", "measured", "target", "");
    println!(
        "{:<32} {:>14.0} {:>14} {:>8}",
        "events/s (all sinks)",
        rate,
        format!(">= {TARGET_EVENTS_PER_S:.0}"),
        verdict(rate >= TARGET_EVENTS_PER_S)
    );
    println!(
        "{:<32} {:>14.3} {:>14} {:>8}",
        "agent CPU-s per 100,000 events",
        per_100k,
        format!("<= {TARGET_CPU_PER_100K}"),
        verdict(per_100k <= TARGET_CPU_PER_100K)
    );
    println!("{:<32} {:>14} {:>14}", "  of which user / system", format!("{user:.1} / {system:.1} s"), "");
    println!(
        "{:<32} {:>14.1} {:>14} {:>8}",
        "agent peak RSS, MiB",
        peak,
        format!("<= {TARGET_PEAK_RSS_MIB}"),
        verdict(peak <= TARGET_PEAK_RSS_MIB)
    );
    println!("{:<32} {:>14.1}", "wall, s", wall.as_secs_f64());
    sim.shutdown().await;
}

/// `metadata.uid` of every line of the file sink's output.
fn uids_of_file(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str::<EventUid>(l).unwrap().metadata.uid).collect()
}

/// This process's CPU time so far (user + system), in seconds.
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}
