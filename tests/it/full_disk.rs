//! A full disk (issue 8 point 3) on the real binary: the state directory sits on a 2 MiB tmpfs
//! this test mounts (it must run as root: the test command runs as root in CI, and a test
//! whose filesystem cannot be made fails loudly rather than skipping). The HEC receiver is down,
//! so the queue grows until the filesystem is full. Then the agent must stop fetching with a
//! clear error, keep its checkpoint and its queued events, and resume on its own once the
//! filesystem is grown again (`mount -o remount,size=…`): every record arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::hec_emulator;

use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, SimOptions, SimVendor};
use harness::agent::Agent;
use harness::*;
use hec_emulator::{HecEmulator, HecOptions};

const LIMIT: Duration = Duration::from_secs(120);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "auditrelay-test"])
            .arg(path)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "cannot mount a {size} tmpfs on {} (this test needs root, as scripts/test.sh runs in CI): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path: path.to_owned() }
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[tokio::test]
async fn test_full_disk_stops_fetching_keeps_everything_and_resumes_when_space_returns() {
    let mut opts = SimOptions::default();
    opts.aitronos.records = 3000;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &Clock::system()).await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    hec.stop().await; // the SIEM is down: the queue only grows
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let fs = Tmpfs::mount(&state, "2m");

    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let source = source_block(
        &sim,
        SimVendor::Aitronos,
        &org,
        "aitronos-test",
        "start = \"2d\"\nmax_span = \"3d\"\nrate_limit = { requests = 100, per = \"1s\", burst = 10 }\n\
         backoff = { initial = \"50ms\", max = \"200ms\" }",
    );
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\n[queue]\nmax_bytes = \"1GiB\"\n\n{source}\n[[sinks]]\nname = \"splunk\"\n\
             type = \"hec\"\nurl = {url:?}\ntoken = \"hec-test-token\"\nbackoff = {{ initial = \"50ms\", max = \"200ms\" }}\n",
            state = state.display().to_string(),
            url = hec.url(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config, true);

    // The filesystem fills: the commit fails with a clear error.
    let full = "cannot commit the page to the queue";
    agent.until("the disk-full error", LIMIT, |a| a.count(full) > 0).await;
    let line = agent.lines_with(&[full]).remove(0);
    assert!(line.contains("disk is full") && line.contains("aitronos-test"), "not a clear error: {line}");
    assert!(line.contains(&state.display().to_string()), "the error does not name the database: {line}");

    // Fetching stops: the page in hand is retried, no new page is asked for.
    let requests = sim.stats().requests;
    let errors = agent.count(full);
    agent.until("two more commit attempts", LIMIT, |a| a.count(full) >= errors + 2).await;
    assert_eq!(sim.stats().requests, requests, "the agent went on fetching with a full disk");

    // Space returns, and so does the SIEM: everything arrives, nothing twice.
    fs.resize("64m");
    hec.restart().await;
    let status = agent.exit(LIMIT).await;
    assert!(status.success(), "the agent failed after space returned:\n{}", agent.log());
    let mut got: Vec<String> =
        hec.indexed_events().iter().map(|e| e["metadata"]["original_event_uid"].as_str().unwrap().to_owned()).collect();
    got.sort();
    let n = got.len();
    got.dedup();
    assert_eq!(n, got.len(), "delivered twice");
    let mut ids = sim.aitronos_ids();
    ids.sort();
    assert_eq!(got, ids, "every record arrived after the disk-full episode");
    eprintln!("full disk: {errors} failed commits logged before space returned; {n} records delivered");
    sim.shutdown().await;
}
