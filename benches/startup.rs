//! Start to first vendor request (not a test: it prints figures): the time from spawning the
//! real agent (`auditrelay run`, the bench-profile binary; four sources, three sinks) until
//! the first request of any source has fully arrived at the vendor, here a bare TCP listener on
//! 127.0.0.1 that timestamps it (every source points at it). Each run is measured twice: the
//! first start on an empty state directory (the queue database is created), then a restart on
//! that database (opened and integrity-checked).
//!
//! Run: `cargo bench --bench startup` (add `-- 50` for another number of runs; 20 by default).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::Sim;
use common::harness::agent::Agent;
use common::hec_emulator::{HecEmulator, HecOptions};
use common::*;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

const TARGET_MS: f64 = 50.0;

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(runs));
}

async fn run(runs: usize) {
    println!("{}; agent environment as the packaged unit sets it: {}", machine(), unit_env());
    let opts = sim_options(0);
    // Only for its organizations and credentials: the vendor is the listener below.
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, Clock::system()).await.unwrap();
    let hec = HecEmulator::start(HecOptions::default()).await;
    let syslog = SyslogReceiver::start().await;
    let vendor = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let vendor_url = format!("http://{}/", vendor.local_addr().unwrap());

    let (mut first, mut restart) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("auditrelay.toml");
        let text = agent_config(dir.path(), &sim, &hec.url(), syslog.addr, "1h", "")
            .replace(&sim.base_url().to_string(), &vendor_url);
        std::fs::write(&config, text).unwrap();
        for times in [&mut first, &mut restart] {
            times.push(first_request(&vendor, &config, &dir.path().join("agent.log")).await);
        }
    }
    println!("{runs} runs; 4 sources, 3 sinks");
    println!();
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "start to first vendor request", "min", "median", "max", "target", ""
    );
    for (what, times) in [("first start (new state), ms", &mut first), ("restart (existing state), ms", &mut restart)] {
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:<34} {:>8.1} {:>8.1} {:>8.1} {:>10} {:>8}",
            what,
            times[0],
            median,
            times[times.len() - 1],
            format!("< {TARGET_MS}"),
            verdict(median < TARGET_MS)
        );
    }
    sim.shutdown().await;
}

/// Starts the agent, waits for the head of its first vendor request, stops it: milliseconds.
async fn first_request(vendor: &TcpListener, config: &std::path::Path, log: &std::path::Path) -> f64 {
    let started = Instant::now();
    let mut agent = Agent::spawn(&["run"], config, log, UNIT_ENV);
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (mut socket, _) = vendor.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    return started.elapsed();
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no vendor request within 30 s; the agent's log:\n{}", agent.tail()));
    let status = agent.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "the agent failed: {status}\n{}", agent.tail());
    // Connections the stopped agent left in the backlog must not count for the next run.
    loop {
        tokio::select! {
            biased;
            accepted = vendor.accept() => drop(accepted),
            () = std::future::ready(()) => break,
        }
    }
    arrived.as_secs_f64() * 1000.0
}
