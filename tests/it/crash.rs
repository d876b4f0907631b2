//! The real binary killed with SIGKILL between pages and restarted: it fetches no page twice
//! and misses nothing. The simulator runs in this test process; it holds the agent's 4th
//! request open forever, so when that request arrives the agent has committed pages 1–3 and
//! is provably between pages when it is killed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, SimOptions};
use harness::*;
use tokio::process::Command;

/// Every seeded record arrived; a record arrived twice only if the sink wrote its batch and was
/// killed before the cursor moved (at-least-once, DESIGN invariant 3): at most one batch.
fn assert_delivered_allowing_one_batch_in_flight(sim: &auditrelay::sim::Sim, out: &std::path::Path) {
    let got = delivered(out);
    let mut ids = sim.aitronos_ids();
    ids.sort();
    let mut keys: Vec<_> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ids, "every record, and only those");
    let twice = got.values().filter(|n| **n > 1).count();
    assert!(got.values().all(|n| *n <= 2), "a record delivered three times");
    assert!(twice <= 500, "{twice} records delivered twice: more than the one batch in flight (500)");
}

/// One window holds every seeded record, and the quota is no bottleneck (the default, the
/// vendor's 100 requests a minute, would make these real-time tests take a minute).
const FAST: &str = "max_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }";

fn agent(config: &std::path::Path, key: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auditrelay"));
    cmd.args(["run", "--once", "-c"])
        .arg(config)
        .env("TEST_AITRONOS_KEY", key)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn test_killed_between_pages_restart_fetches_nothing_twice_and_misses_nothing() {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1000;
    opts.faults.stall_at_request = Some(4);
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    // One window holds every record, so the sweep pages through all of them: 10 pages.
    let text = config_text(&sim, dir.path(), FAST);
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, text).unwrap();
    let key = sim.aitronos_api_key().to_owned();

    let mut first = agent(&config, &key).spawn().unwrap();
    // A bound, not a wait: the 4th request normally arrives within milliseconds.
    tokio::time::timeout(Duration::from_secs(60), sim.wait_for_requests(4)).await.expect("4th request");
    first.start_kill().unwrap();
    let status = first.wait().await.unwrap();
    assert!(!status.success(), "the agent was killed");

    let second = agent(&config, &key).output().await.unwrap();
    assert!(second.status.success(), "restart failed: {}", String::from_utf8_lossy(&second.stderr));

    let log = sim.request_log();
    let mut answered = HashMap::new();
    for r in log.iter().filter(|r| r.status == 200) {
        *answered.entry(r.query.clone()).or_insert(0) += 1;
    }
    assert!(answered.values().all(|n| *n == 1), "a page was fetched twice: {answered:?}");
    assert!(answered.len() >= 10);
    // The stalled request (skip=300) is asked again after the restart, and only it.
    let stalled = &log[3];
    assert_eq!(stalled.status, 0);
    assert!(stalled.query.contains("skip=300"), "{}", stalled.query);
    assert_eq!(log[4].query, stalled.query, "the restart resumes the interrupted sweep");
    assert_delivered_allowing_one_batch_in_flight(&sim, &out_path(dir.path()));
    sim.shutdown().await;
}

#[tokio::test]
async fn test_sigterm_stops_fetching_lets_sinks_finish_and_exits_0() {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 3000;
    opts.faults.rate_limit = RateLimitSetting::Off;
    // Slow pages keep the agent mid-sweep when the signal comes.
    opts.faults.page_latency = Duration::from_millis(50);
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, config_text(&sim, dir.path(), FAST)).unwrap();
    let key = sim.aitronos_api_key().to_owned();

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_auditrelay"));
    daemon.args(["run", "-c"]).arg(&config).env("TEST_AITRONOS_KEY", &key).stdin(Stdio::null()).kill_on_drop(true);
    let child = daemon.stderr(Stdio::piped()).spawn().unwrap();
    tokio::time::timeout(Duration::from_secs(60), sim.wait_for_requests(5)).await.expect("5 requests");
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("exit").unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("shutting down") && stderr.contains("agent stopped"), "{stderr}");
    // Fetching stopped at the signal: the sweep is far from done.
    assert!(sim.stats().requests < 30, "{:?}", sim.stats());

    // What was committed before the signal is kept: a catch-up run completes the set.
    let rest = agent(&config, &key).output().await.unwrap();
    assert!(rest.status.success(), "{}", String::from_utf8_lossy(&rest.stderr));
    let got = delivered(&out_path(dir.path()));
    assert_eq!(got.len(), 3000);
    sim.shutdown().await;
}

#[tokio::test]
async fn test_malformed_pages_are_reported_with_source_and_url_and_retried() {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 500;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.malformed_rate = 0.5;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    let extra = format!("{FAST}\nbackoff = {{ initial = \"10ms\", max = \"50ms\" }}");
    std::fs::write(&config, config_text(&sim, dir.path(), &extra)).unwrap();
    let key = sim.aitronos_api_key().to_owned();

    let out = agent(&config, &key).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(sim.stats().malformed > 0);
    let line = stderr.lines().find(|l| l.contains("malformed page")).expect("a malformed-page warning");
    assert!(line.contains("aitronos-test"), "{line}");
    assert!(line.contains(&format!("{}v1/organizations/", sim.base_url())), "{line}");
    assert!(!stderr.contains(&key), "the API key leaked into the log");
    assert_exactly_once(&sim, &out_path(dir.path()));
    sim.shutdown().await;
}
