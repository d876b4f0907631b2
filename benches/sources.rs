//! How the agent's cost grows with the number of sources (not a test: it prints figures): the
//! real agent (`auditrelay run`, the bench-profile binary) with N sources, each its own
//! organization of one of the four simulated vendors (N/4 per vendor, `auditrelay::sim::Sim`),
//! and three sinks (a file, the HEC emulator, a syslog TCP receiver), for N = 4, 100 and 500.
//! Each agent catches up with a small backlog (a few records per organization), then sits idle,
//! polling on its schedule. Printed per N: start-up time from the spawn to the first request of
//! the first and of EVERY source (the simulator's request log, told apart by each request's
//! organization or credential), RSS while idle (max of 100 ms samples, the catch-up's tail
//! included), its last sample ("end": settled), and the anonymous / file-backed split at the end, CPU-seconds per idle minute, wake-ups per second (voluntary + involuntary
//! context switches summed over the agent's threads, `/proc/<pid>/task/*/status`, per second of
//! idle; sampled per thread, as the blocking pool's threads come and go), the vendor polls and
//! the open sockets (kept-alive connections); then the per-source cost, the slope between
//! successive N.
//!
//! Run: `cargo bench --bench sources` (add `-- 30` for another idle period in seconds, 60 by
//! default; `-- n=4,100` for other numbers of sources, each a multiple of 4).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::{Sim, SimVendor};
use common::harness::agent::Agent;
use common::hec_emulator::{HecEmulator, HecOptions};
use common::*;

/// Records each organization holds when the agent starts: a small backlog to catch up with.
const RECORDS_PER_SOURCE: usize = 20;
const TARGET_RSS_500_MIB: f64 = 40.0;
const TARGET_CPU_500_PER_MIN: f64 = 0.5;
/// "Flat": the per-source cost between the two larger N at most this many times the one between
/// the two smaller.
const FLAT_RATIO: f64 = 1.5;

fn main() {
    let mut idle_secs = 60;
    let mut counts = vec![4, 100, 500];
    for arg in std::env::args().skip(1) {
        if let Some(list) = arg.strip_prefix("n=") {
            counts = list.split(',').map(|n| n.trim().parse().expect("n=<count>,<count>,...")).collect();
        } else if let Ok(secs) = arg.parse() {
            idle_secs = secs;
        }
    }
    assert!(counts.iter().all(|n| *n > 0 && n % 4 == 0), "each number of sources is a positive multiple of 4");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(&counts, Duration::from_secs(idle_secs)));
}

/// What one N measured.
struct Figures {
    sources: usize,
    first_ms: f64,
    every_ms: f64,
    caught_up_s: f64,
    rss_mib: f64,
    /// The last sample: the agent settled (its idle release of freed memory done).
    end_mib: f64,
    anon_mib: f64,
    file_mib: f64,
    threads: u64,
    cpu_per_min: f64,
    wakeups_per_s: f64,
    polls_per_min: f64,
    /// Open sockets at the end of the idle period (kept-alive connections, listeners).
    sockets: usize,
}

async fn run(counts: &[usize], idle: Duration) {
    println!("{}; agent environment as the packaged unit sets it: {}", machine(), unit_env());
    println!(
        "N sources (N/4 organizations per vendor, {RECORDS_PER_SOURCE} records each), 3 sinks (file, HEC, syslog TCP); \
         idle for {idle:?} after catching up"
    );
    let mut all = Vec::new();
    for &n in counts {
        all.push(measure(n, idle).await);
    }
    println!();
    println!(
        "{:>7} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "sources",
        "first ms",
        "every ms",
        "catch s",
        "RSS MiB",
        "end MiB",
        "anon",
        "file",
        "threads",
        "CPU-s/min",
        "wakeups/s",
        "polls/min",
        "sockets"
    );
    for f in &all {
        println!(
            "{:>7} {:>9.1} {:>9.1} {:>8.2} {:>8.1} {:>8.1} {:>7.1} {:>7.1} {:>7} {:>9.3} {:>9.1} {:>9.0} {:>7}",
            f.sources,
            f.first_ms,
            f.every_ms,
            f.caught_up_s,
            f.rss_mib,
            f.end_mib,
            f.anon_mib,
            f.file_mib,
            f.threads,
            f.cpu_per_min,
            f.wakeups_per_s,
            f.polls_per_min,
            f.sockets
        );
    }
    if all.len() >= 2 {
        println!();
        println!(
            "{:<14} {:>14} {:>16} {:>14} {:>16}",
            "per source", "RSS KiB", "CPU ms/idle min", "wakeups/s", "start-up ms"
        );
        let mut slopes = Vec::new();
        for pair in all.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let d = (b.sources - a.sources) as f64;
            let s = (
                (b.rss_mib - a.rss_mib) * 1024.0 / d,
                (b.cpu_per_min - a.cpu_per_min) * 1000.0 / d,
                (b.wakeups_per_s - a.wakeups_per_s) / d,
                (b.every_ms - a.every_ms) / d,
            );
            println!(
                "{:<14} {:>14.1} {:>16.3} {:>14.3} {:>16.3}",
                format!("{} -> {}", a.sources, b.sources),
                s.0,
                s.1,
                s.2,
                s.3
            );
            slopes.push(s);
        }
        if let [.., early, late] = slopes[..] {
            // A slope at or below zero (noise around a flat cost) is flat.
            let flat = |e: f64, l: f64| l <= 0.0 || l <= FLAT_RATIO * e.max(0.0) + f64::EPSILON;
            println!(
                "per-source cost flat (last slope <= {FLAT_RATIO} x the one before): RSS {}, CPU {}",
                verdict(flat(early.0, late.0)),
                verdict(flat(early.1, late.1))
            );
        }
    }
    if let Some(f) = all.iter().find(|f| f.sources == 500) {
        println!();
        println!("{:<36} {:>10} {:>10} {:>8}", "500 sources, idle", "measured", "target", "");
        println!(
            "{:<36} {:>10.1} {:>10} {:>8}",
            "RSS while idle (max of samples), MiB",
            f.rss_mib,
            format!("<= {TARGET_RSS_500_MIB}"),
            verdict(f.rss_mib <= TARGET_RSS_500_MIB)
        );
        // Not the target's figure (that is the max, the catch-up's tail included): where the
        // agent settles once quiet.
        println!("{:<36} {:>10.1}", "RSS at the end of the idle period, MiB", f.end_mib);
        println!(
            "{:<36} {:>10.3} {:>10} {:>8}",
            "CPU-s per idle minute",
            f.cpu_per_min,
            format!("<= {TARGET_CPU_500_PER_MIN}"),
            verdict(f.cpu_per_min <= TARGET_CPU_500_PER_MIN)
        );
    }
}

async fn measure(n: usize, idle: Duration) -> Figures {
    let mut opts = sim_options(RECORDS_PER_SOURCE);
    opts.aitronos.organizations = n / 4;
    opts.astronomer.organizations = n / 4;
    opts.configcat.organizations = n / 4;
    opts.datafold.organizations = n / 4;
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, Clock::system()).await.unwrap();
    let hec = HecEmulator::start(HecOptions::default()).await;
    let syslog = SyslogReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sources: Vec<String> = SimVendor::ALL
        .into_iter()
        .flat_map(|v| {
            let sim = &sim;
            sim.organizations(v).into_iter().enumerate().map(move |(i, org)| {
                let extra = "start = \"2d\"\nrate_limit = { requests = 100000, per = \"1s\", burst = 100 }";
                common::harness::source_block(sim, v, &org, &format!("{}-{i}", v.name()), extra)
            })
        })
        .collect();
    assert_eq!(sources.len(), n, "the simulator serves {n} organizations");
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, sources_config(dir.path(), &sources, &hec.url(), syslog.addr)).unwrap();
    let out = dir.path().join("events.ndjson");
    let total = (n * RECORDS_PER_SOURCE) as u64;

    let spawned_at = chrono::Utc::now();
    let spawned = Instant::now();
    let mut agent = Agent::spawn(&["run"], &config, &dir.path().join("agent.log"), UNIT_ENV);
    let mut firsts: HashMap<(SimVendor, String), chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut seen = 0;
    agent
        .until("the first request of every source", Duration::from_secs(120), |_| {
            let log = sim.request_log();
            for r in &log[seen..] {
                firsts.entry((r.vendor, r.client.clone())).or_insert(r.at);
            }
            seen = log.len();
            firsts.len() >= n
        })
        .await;
    let ms = |at: &chrono::DateTime<chrono::Utc>| (*at - spawned_at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
    let first_ms = firsts.values().map(ms).fold(f64::INFINITY, f64::min);
    let every_ms = firsts.values().map(ms).fold(0.0, f64::max);

    let mut lines = LineCounter::new();
    agent
        .until("the backlog at every sink", Duration::from_secs(300), |_| {
            lines.count(&out) >= total && hec.indexed_count() as u64 >= total && syslog.messages() >= total
        })
        .await;
    let caught_up_s = spawned.elapsed().as_secs_f64();
    let (user0, system0) = agent.cpu_seconds();
    let mut switches = Switches::default();
    switches.sample(agent.pid());
    let requests0 = sim.stats().requests;

    let (mut samples, started) = (Vec::new(), Instant::now());
    while started.elapsed() < idle {
        samples.push(agent.rss() as f64 / MIB);
        switches.sample(agent.pid());
        assert!(agent.exited().is_none(), "the agent exited while idle:\n{}", agent.tail());
        // The sampling interval: this loop measures over a fixed period, it waits for nothing.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_s = started.elapsed().as_secs_f64();
    let (user1, system1) = agent.cpu_seconds();
    switches.sample(agent.pid());
    let (anon, file, _shared, threads) = agent.rss_parts();
    let sockets = open_sockets(agent.pid());
    let polls = sim.stats().requests - requests0;
    let status = agent.terminate(Duration::from_secs(60)).await;
    assert!(status.success(), "the agent failed: {status}\n{}", agent.tail());
    sim.shutdown().await;

    let figures = Figures {
        sources: n,
        first_ms,
        every_ms,
        caught_up_s,
        rss_mib: samples.iter().copied().fold(0.0, f64::max),
        end_mib: samples.last().copied().unwrap_or(0.0),
        anon_mib: anon as f64 / MIB,
        file_mib: file as f64 / MIB,
        threads,
        cpu_per_min: ((user1 - user0) + (system1 - system0)) * 60.0 / idle_s,
        wakeups_per_s: switches.since_first() as f64 / idle_s,
        polls_per_min: polls as f64 * 60.0 / idle_s,
        sockets,
    };
    println!(
        "{n} sources: every source asked after {:.1} ms, caught up with {total} records after {:.2} s; idle RSS {:.1} MiB, \
         {:.3} CPU-s per idle minute, {:.1} wake-ups/s ({} threads, {} open sockets)",
        figures.every_ms,
        figures.caught_up_s,
        figures.rss_mib,
        figures.cpu_per_min,
        figures.wakeups_per_s,
        threads,
        figures.sockets
    );
    figures
}

/// Context switches (voluntary + involuntary) of the agent's threads, sampled per thread: a
/// thread's count since the first sample (a thread started later counts from zero), summed. The
/// blocking pool's threads come and go (a thread ends after 10 s unused), so a sum over the
/// threads alive at two instants would lose the switches of those that ended between them; per
/// thread, only those after its last sample are lost (at most 100 ms of its life).
#[derive(Default)]
struct Switches {
    /// Per thread id: its count at its first sample, and at its last.
    threads: HashMap<String, (u64, u64)>,
    sampled: bool,
}

impl Switches {
    fn sample(&mut self, pid: u32) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return };
        for task in tasks.filter_map(Result::ok) {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else { continue };
            let count: u64 = status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum();
            let base = if self.sampled { 0 } else { count };
            let entry = self.threads.entry(task.file_name().to_string_lossy().into_owned()).or_insert((base, count));
            entry.1 = count;
        }
        self.sampled = true;
    }

    fn since_first(&self) -> u64 {
        self.threads.values().map(|(first, last)| last.saturating_sub(*first)).sum()
    }
}

/// Sockets among the open files of `pid`: connections kept alive, listeners.
fn open_sockets(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}
