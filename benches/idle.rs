//! An idle agent's memory (not a test: it prints figures): the real agent (`auditrelay run`, the
//! bench-profile binary) with four sources (one per simulated vendor) and three sinks (a file,
//! the HEC emulator, a syslog TCP receiver) catches up with a small backlog (1,000 records per
//! vendor), then sits idle, polling the vendors on their schedule. Its resident memory
//! (`VmRSS`) is sampled every 100 ms over the idle period; also reported: its peak (`VmHWM`)
//! and the CPU it used while idle.
//!
//! Run: `cargo bench --bench idle` (add `-- 30` for another idle period, in seconds; 10 by
//! default).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::Sim;
use common::harness::agent::Agent;
use common::hec_emulator::{HecEmulator, HecOptions};
use common::*;

const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const RECORDS_PER_VENDOR: usize = 1000;

fn main() {
    let idle_secs: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(Duration::from_secs(idle_secs)));
}

async fn run(idle: Duration) {
    println!("{}; agent environment as the packaged unit sets it: {}", machine(), unit_env());
    let opts = sim_options(RECORDS_PER_VENDOR);
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, Clock::system()).await.unwrap();
    let hec = HecEmulator::start(HecOptions::default()).await;
    let syslog = SyslogReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, agent_config(dir.path(), &sim, &hec.url(), syslog.addr, "2d", "")).unwrap();
    let out = dir.path().join("events.ndjson");

    let mut agent = Agent::spawn(&["run"], &config, &dir.path().join("agent.log"), UNIT_ENV);
    let total = 4 * RECORDS_PER_VENDOR as u64;
    let mut lines = LineCounter::new();
    agent
        .until("the backlog at every sink", Duration::from_secs(120), |_| {
            lines.count(&out) >= total && hec.indexed_count() as u64 >= total && syslog.messages() >= total
        })
        .await;
    let caught_up_rss = agent.rss() as f64 / MIB;
    let (user0, system0) = agent.cpu_seconds();
    let requests0 = sim.stats().requests;

    let (mut samples, started) = (Vec::new(), Instant::now());
    while started.elapsed() < idle {
        samples.push(agent.rss() as f64 / MIB);
        assert!(agent.exited().is_none(), "the agent exited while idle:\n{}", agent.tail());
        // The sampling interval: this loop measures over a fixed period, it waits for nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (user1, system1) = agent.cpu_seconds();
    let (anon, file, shared, threads) = agent.rss_parts();
    let peak = agent.peak_rss() as f64 / MIB;
    let polls = sim.stats().requests - requests0;
    let status = agent.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "the agent failed: {status}\n{}", agent.tail());

    let max = samples.iter().copied().fold(0.0, f64::max);
    let last = samples.last().copied().unwrap_or_default();
    println!("4 sources, 3 sinks; caught up with {total} records, then idle for {idle:?} ({polls} vendor polls)");
    println!();
    println!("{:<36} {:>10} {:>10} {:>8}", "idle agent", "measured", "target", "");
    println!(
        "{:<36} {:>10.1} {:>10} {:>8}",
        "RSS while idle (max of samples), MiB",
        max,
        format!("<= {TARGET_IDLE_RSS_MIB}"),
        verdict(max <= TARGET_IDLE_RSS_MIB)
    );
    println!("{:<36} {:>10.1}", "RSS at the end, MiB", last);
    println!(
        "{:<36} {:>10}",
        "  anonymous / file-backed / shared",
        format!("{:.1} / {:.1} / {:.1}", anon as f64 / MIB, file as f64 / MIB, shared as f64 / MIB)
    );
    println!("{:<36} {:>10}", "  threads", threads);
    println!("{:<36} {:>10.1}", "RSS right after catching up, MiB", caught_up_rss);
    println!("{:<36} {:>10.1}", "peak RSS (VmHWM) over the run, MiB", peak);
    println!("{:<36} {:>10.3}", "CPU-s while idle", (user1 - user0) + (system1 - system0));
    sim.shutdown().await;
}
