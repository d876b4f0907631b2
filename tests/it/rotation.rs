//! Issue 15 point 2, "log rotation loses nothing": the real binary with a file sink while the
//! operator's tools rotate its file mid-run, the three ways logrotate does it: move then delete
//! (`rotate 0`, or `delete` after compressing), move only (the default), `copytruncate`.
//!
//! The vendor (`harness/hostile.rs`, on 127.0.0.1) serves 300 Aitronos records in pages of 5
//! and holds the page at record 100 behind a gate: the test waits until the first 100 are in
//! the file, rotates it, then opens the gate. Everything the agent writes after the rotation
//! must be at the path, and every record must be at the path or in the rotated file exactly
//! once (after a move-and-delete, the first 100 were removed by the operator's own hand). A
//! second gate at record 200 holds the agent while `/metrics` is read: the rotation is counted
//! once, under its reason (`auditrelay_sink_reopens_total`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::harness::hostile;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use harness::agent::{Agent, sample};
use harness::{delivered, out_path};
use hostile::*;

const RUN_LIMIT: Duration = Duration::from_secs(30);
const RECORDS: usize = 300;
/// The records written before the rotation.
const BEFORE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rotation {
    MoveAndDelete,
    Move,
    CopyTruncate,
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("rot-{i:03}")).collect()
}

/// What a rotation left: the records at the path and in the rotated file, the agent's log, and
/// its `auditrelay_sink_reopens_total` once the rotation was followed, by reason.
struct Rotated {
    at_path: HashMap<String, usize>,
    in_rotated: HashMap<String, usize>,
    log: String,
    reopens: BTreeMap<&'static str, f64>,
}

/// Runs the agent (`run --once`), rotates the file sink's file the given way once the first
/// `BEFORE` records are in it, optionally sends SIGHUP as a `postrotate` would, reads /metrics
/// once the next `BEFORE` are at the path, and returns what is at the path and in the rotated
/// file once every record was delivered.
async fn rotate_mid_run(rotation: Rotation, hup: bool) -> Rotated {
    let t0 = Utc::now() - chrono::Duration::minutes(60);
    let records: Vec<serde_json::Value> = ids(0..RECORDS)
        .iter()
        .enumerate()
        .map(|(i, id)| aitronos_record(id, t0 + chrono::Duration::seconds(i as i64)))
        .collect();
    let (gate, scraped) = (Gate::default(), Gate::default());
    let (held, held_again) = (gate.clone(), scraped.clone());
    let vendor = Hostile::start(move |r| {
        let skip: usize = r.param("skip").parse().unwrap_or(0);
        let answer = aitronos_answer(r, &records);
        match skip {
            _ if skip >= 2 * BEFORE => Reply::Gated(held_again.clone(), Box::new(answer)),
            _ if skip >= BEFORE => Reply::Gated(held.clone(), Box::new(answer)),
            _ => answer,
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = "[telemetry]\nlisten = \"127.0.0.1:0\"";
    let config = write_config(dir.path(), telemetry, &aitronos_source(&vendor, ""));
    let path = out_path(dir.path());
    let rotated = dir.path().join("events.ndjson.1");
    let mut agent = Agent::start(&config, true);
    let lines = |p: &Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    agent.until("the records before the gate in the file", RUN_LIMIT, |_| lines(&path) >= BEFORE).await;
    assert_eq!(lines(&path), BEFORE, "nothing passes the gate before it opens");
    // Acknowledged, not only written: a file deleted before the sink checked it after writing
    // its batch (`sinks::file::append`) has that batch written again at the path, rightly, and
    // the records would count twice.
    let acknowledged = r#"auditrelay_sink_events_total{sink="file",type="file"}"#;
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    while sample(&agent.metrics().await, acknowledged).unwrap_or(0.0) < BEFORE as f64 {
        assert!(agent.exited().is_none(), "the agent exited before acknowledging; its log ends:\n{}", agent.tail());
        assert!(
            std::time::Instant::now() < deadline,
            "the first {BEFORE} records were not acknowledged within {RUN_LIMIT:?}; the agent's log ends:\n{}",
            agent.tail()
        );
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    match rotation {
        Rotation::MoveAndDelete => {
            std::fs::rename(&path, &rotated).unwrap();
            std::fs::remove_file(&rotated).unwrap();
        }
        Rotation::Move => std::fs::rename(&path, &rotated).unwrap(),
        Rotation::CopyTruncate => {
            std::fs::copy(&path, &rotated).unwrap();
            std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        }
    }
    if hup {
        let sent = std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
        assert!(sent.success());
        agent.until("the reload after SIGHUP", RUN_LIMIT, |a| a.count("configuration reloaded") >= 1).await;
    }
    gate.open();
    // The rotation is followed by the first batch after it; the next gate holds the agent.
    agent.until("the records after the rotation at the path", RUN_LIMIT, |_| lines(&path) >= BEFORE).await;
    let metrics = agent.metrics().await;
    let reopens = ["moved", "deleted", "truncated", "sighup"]
        .map(|reason| {
            let series = format!(r#"auditrelay_sink_reopens_total{{sink="file",type="file",reason="{reason}"}}"#);
            (reason, sample(&metrics, &series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}")))
        })
        .into();
    scraped.open();
    // `run --once` exits after the last page is stored and delivered: what it acknowledged is
    // final (the old code wrote the records after the gate into the moved or deleted file).
    let status = agent.exit(RUN_LIMIT).await;
    assert!(status.success(), "exit {status}:\n{}", agent.log());
    let at_path = delivered(&path);
    let in_rotated = if rotated.exists() { delivered(&rotated) } else { HashMap::new() };
    Rotated { at_path, in_rotated, log: agent.log(), reopens }
}

/// `auditrelay_sink_reopens_total` counting one reopen, for `reason`.
fn once_for(reason: &'static str) -> BTreeMap<&'static str, f64> {
    ["moved", "deleted", "truncated", "sighup"].map(|r| (r, if r == reason { 1.0 } else { 0.0 })).into()
}

/// Each id of `want` exactly once in `got`, and nothing else.
fn assert_exactly(got: &HashMap<String, usize>, want: &[String], what: &str) {
    let sorted: BTreeMap<&String, &usize> = got.iter().collect();
    let missing: Vec<&String> = want.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} records missing (first: {:?})",
        missing.len(),
        want.len(),
        missing.first()
    );
    let twice: Vec<_> = sorted.iter().filter(|(_, n)| ***n > 1).collect();
    assert!(twice.is_empty(), "{what}: records more than once: {twice:?}");
    let extra: Vec<_> = sorted.keys().filter(|id| !want.contains(id)).collect();
    assert!(extra.is_empty(), "{what}: records that belong elsewhere: {extra:?}");
}

#[tokio::test]
async fn test_move_and_delete_mid_run_puts_everything_after_it_at_the_path() {
    let r = rotate_mid_run(Rotation::MoveAndDelete, false).await;
    assert!(r.in_rotated.is_empty());
    assert_exactly(&r.at_path, &ids(BEFORE..RECORDS), "at the path after move-and-delete");
    assert_eq!(r.reopens, once_for("deleted"), "on /metrics");
}

#[tokio::test]
async fn test_move_mid_run_splits_the_records_between_the_files_exactly_once() {
    let r = rotate_mid_run(Rotation::Move, false).await;
    assert_exactly(&r.in_rotated, &ids(0..BEFORE), "in the moved file");
    assert_exactly(&r.at_path, &ids(BEFORE..RECORDS), "at the path after a move");
    assert_eq!(r.reopens, once_for("moved"), "on /metrics");
}

#[tokio::test]
async fn test_copytruncate_mid_run_leaves_no_torn_line_and_loses_nothing() {
    let r = rotate_mid_run(Rotation::CopyTruncate, false).await;
    assert_exactly(&r.in_rotated, &ids(0..BEFORE), "in the copy");
    assert_exactly(&r.at_path, &ids(BEFORE..RECORDS), "at the truncated path");
    assert_eq!(r.reopens, once_for("truncated"), "on /metrics");
}

#[tokio::test]
async fn test_sighup_after_a_move_reopens_the_file_sink() {
    let r = rotate_mid_run(Rotation::Move, true).await;
    assert_exactly(&r.in_rotated, &ids(0..BEFORE), "in the moved file");
    assert_exactly(&r.at_path, &ids(BEFORE..RECORDS), "at the path after a move and SIGHUP");
    assert!(r.log.contains("file sink: reopened") && r.log.contains("reopen requested"), "{}", r.log);
    // The reopen the SIGHUP asked for, which the move then needs no other.
    assert_eq!(r.reopens, once_for("sighup"), "on /metrics");
}
