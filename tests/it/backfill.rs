//! Issue 15 point 4, "a re-run backfill does what it says", on the real binary against the
//! simulator (127.0.0.1): the requested range is part of the backfill's state, so a second run
//! with an earlier `--since` collects what the first did not, and a range already covered says
//! which range covered it and exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use auditrelay::sim::SimVendor;
use chrono::{DateTime, Utc};

/// A state directory with a configuration of `source` and one file sink: (the directory, the
/// sink's file, the configuration file).
fn with_file_sink(source: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = dir.path().join("auditrelay.toml");
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();
    (dir, out, config)
}

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
    let (_dir, out, config) = with_file_sink(&source);
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

/// The end a `done:` line names ("… from <since> to <end>; delivered …"), as a time.
fn done_end(stdout: &str) -> DateTime<Utc> {
    let line = stdout.lines().find(|l| l.contains(": done: ")).unwrap_or_else(|| panic!("no done line: {stdout}"));
    let end = line.split(" to ").nth(1).and_then(|rest| rest.split(" UTC").next()).unwrap();
    chrono::NaiveDateTime::parse_from_str(end, "%Y-%m-%d %H:%M:%S").unwrap().and_utc()
}

#[test]
fn test_a_future_until_is_clamped_to_now_and_a_wider_rerun_delivers_each_record_once() {
    let (_rt, sim, source) = harness::sinks::simulated_source();
    let (_dir, out, config) = with_file_sink(&source);
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();
    let before = Utc::now();
    let (t1, t2) = (before - chrono::Duration::days(2), before - chrono::Duration::hours(12));

    // [T2, an hour from now): nothing exists past now, so the range ends now, and says so.
    let future = before + chrono::Duration::hours(1);
    let (code, stdout, stderr) = backfill(&config, t2, future);
    let after = Utc::now();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("clamped"), "the output says the future --until was clamped: {stdout}");
    let end = done_end(&stdout);
    assert!(
        end >= before - chrono::Duration::seconds(1) && end <= after,
        "the done line names the clamped end (now, {before} to {after}), not {future}: {stdout}"
    );
    let first = harness::delivered(&out);
    assert!(first.len() > 300 && first.len() < total, "about half: {} of {total}", first.len());

    // A wider range, [T1, now): only what the first did not cover, so each record once.
    let (code, stdout, stderr) = backfill(&config, t1, Utc::now());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = harness::delivered(&out);
    let twice = all.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} of {} records delivered more than once: {stdout}{stderr}", all.len());
    assert_eq!(all.len(), total, "every record: {stdout}");
}

/// A backfill interrupted inside its *first* window (pages stored and delivered, `done_until`
/// still `None`, a sweep in progress in its checkpoint) and re-run with an earlier `--since`
/// and the same `--until` delivers every record once: the interrupted range is resumed under
/// its own name from its sweep (its own dedupe keys), and only the older part is asked as a
/// new range, rather than the whole window again under another name.
#[test]
fn test_a_backfill_interrupted_inside_its_first_window_rerun_wider_delivers_each_record_once() {
    use auditrelay::clock::Clock;
    use auditrelay::sim::SimOptions;
    use std::time::Duration;

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 3000;
    // Pages 1-4 are answered, the 5th never: the backfill is interrupted mid-sweep.
    opts.faults.stall_at_request = Some(5);
    let sim = rt.block_on(harness::start_sim(opts, &Clock::system()));
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let source = harness::source_block(&sim, SimVendor::Aitronos, &org, "a", "");
    let (dir, out, config) = with_file_sink(&source);
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();
    let until = Utc::now();
    let (t1, t2) = (until - chrono::Duration::days(2), until - chrono::Duration::hours(12));

    let log = dir.path().join("first.log");
    let since = t2.to_rfc3339();
    let until_arg = until.to_rfc3339();
    let args = ["backfill", "--source", "a", "--since", since.as_str(), "--until", until_arg.as_str()];
    rt.block_on(async {
        let mut agent = harness::agent::Agent::spawn(&args, &config, &log, &[]);
        agent.until("four pages delivered", Duration::from_secs(60), |_| harness::delivered(&out).len() >= 400).await;
        agent.terminate(Duration::from_secs(30)).await;
    });
    let first = harness::delivered(&out);
    assert_eq!(first.len(), 400, "four pages of the first window");

    let (code, stdout, stderr) = backfill(&config, t1, until);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = harness::delivered(&out);
    let twice = all.values().filter(|n| **n > 1).count();
    assert_eq!(all.len(), total, "every record: {stdout}");
    assert_eq!(twice, 0, "{twice} of {} records delivered twice: {stdout}", all.len());
}
