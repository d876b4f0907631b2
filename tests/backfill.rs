//! Issue 15 point 4, "a re-run backfill does what it says", on the real binary against the
//! simulator (127.0.0.1): the requested range is part of the backfill's state, so a second run
//! with an earlier `--since` collects what the first did not, and a range already covered says
//! which range covered it and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod harness;

use std::path::Path;
use std::process::Command;

use auditrelay::sim::SimVendor;
use chrono::{DateTime, Utc};

fn backfill(config: &Path, since: DateTime<Utc>, until: DateTime<Utc>) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["backfill", "--source", "a", "--since", &since.to_rfc3339(), "--until", &until.to_rfc3339(), "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn test_a_rerun_with_an_earlier_since_collects_what_the_first_did_not_and_a_covered_range_says_so() {
    let (_rt, sim, source) = harness::sinks::simulated_source();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = dir.path().join("auditrelay.toml");
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();
    let now = Utc::now();
    let (t1, t2) = (now - chrono::Duration::days(2), now - chrono::Duration::hours(12));

    // The simulator's records span the last day: the newer half first, [T2, now)…
    let (code, stdout, stderr) = backfill(&config, t2, now);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let first = harness::delivered(&out);
    assert!(first.len() > 300 && first.len() < total, "about half: {} of {total}", first.len());

    // …then from an earlier --since, [T1, now): the records of [T1, T2), each once.
    let (code, stdout, stderr) = backfill(&config, t1, now);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = harness::delivered(&out);
    assert_eq!(all.len(), total, "the second backfill stores what the first did not: {stdout}");
    assert!(all.values().all(|n| *n == 1), "every record once");
    assert!(stdout.contains(&format!("done: {} records stored", total - first.len())), "{stdout}");

    // A range inside what was collected: nothing asked, and it says which range covered it.
    let (code, stdout, stderr) = backfill(&config, t1 + chrono::Duration::hours(1), t2);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("already covered: ") && stdout.contains(" to "), "{stdout}");
    assert_eq!(harness::delivered(&out).len(), total, "nothing more");
}
