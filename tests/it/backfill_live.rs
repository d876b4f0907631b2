//! Issue 18 point 4, "backfill never resends what the live source delivered", on the real
//! binary against the simulator (127.0.0.1): the live source (`run --once`) delivers to a file
//! sink from its `start`; a backfill without `--until` then stops at the live source's recorded
//! start, an explicit `--until` into the live range is refused with the usage exit code (2)
//! unless `--allow-overlap`, and with it the range is deduped against the live source's keys.
//! Every record is counted by its `metadata.uid`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use auditrelay::sim::SimVendor;
use chrono::{DateTime, Utc};

/// The auditrelay binary with these arguments and `-c config`: (exit code, stdout, stderr).
fn auditrelay(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(args).arg("-c").arg(config).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The file sink's events, counted by `metadata.uid`.
fn by_uid(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let uid = event["metadata"]["uid"].as_str().unwrap().to_owned();
        *counts.entry(uid).or_insert(0) += 1;
    }
    counts
}

fn twice(counts: &HashMap<String, usize>) -> usize {
    counts.values().filter(|n| **n > 1).count()
}

/// A state directory with the simulated Aitronos source `a` (live from `start`, no lag) and one
/// file sink: (its directory, the sink's file, the configuration file, records the vendor holds).
fn live_from(
    start: DateTime<Utc>,
) -> (tokio::runtime::Runtime, auditrelay::sim::Sim, tempfile::TempDir, PathBuf, PathBuf) {
    let (rt, sim, _) = harness::sinks::simulated_source();
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let extra = format!("start = {:?}\nlag = \"1s\"\n", start.to_rfc3339());
    let source = harness::source_block(&sim, SimVendor::Aitronos, &org, "a", &extra);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = dir.path().join("auditrelay.toml");
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();
    (rt, sim, dir, out, config)
}

#[test]
fn test_backfill_after_the_live_source_delivers_each_record_once_and_refuses_an_overlap() {
    let now = Utc::now();
    let live_start = now - chrono::Duration::hours(12);
    let (_rt, sim, _dir, out, config) = live_from(live_start);
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();

    // The live source delivers what lies after its start, and stops.
    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let live = by_uid(&out);
    assert!(live.len() > 300 && live.len() < total, "the live source's half: {} of {total}", live.len());

    // A backfill without --until stops where the live source began, and says so.
    let since = (now - chrono::Duration::days(2)).to_rfc3339();
    let (code, stdout, stderr) = auditrelay(&config, &["backfill", "--source", "a", "--since", &since]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = by_uid(&out);
    assert_eq!(twice(&all), 0, "{} of {} records delivered more than once: {stdout}{stderr}", twice(&all), all.len());
    assert_eq!(all.len(), total, "every record: {stdout}{stderr}");
    assert!(stderr.contains("--until defaults to the live source's start"), "{stderr}");

    // An explicit --until into the live range: refused as a usage error, naming the way out.
    let until = (now - chrono::Duration::hours(6)).to_rfc3339();
    let args = ["backfill", "--source", "a", "--since", &since, "--until", &until];
    let (code, stdout, stderr) = auditrelay(&config, &args);
    assert_eq!(code, Some(2), "refused with the usage exit code: {stdout}{stderr}");
    assert!(stderr.contains("--allow-overlap") && stderr.contains("live"), "{stderr}");
    assert_eq!(by_uid(&out), all, "nothing delivered");

    // With --allow-overlap: the overlapping part is deduped against the live source's keys.
    let (code, stdout, stderr) = auditrelay(&config, &[&args[..], &["--allow-overlap"]].concat());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("done: 0 records stored"), "the live source's records are skipped: {stdout}");
    assert!(stderr.contains("are skipped"), "it says which part is deduped: {stderr}");
    let again = by_uid(&out);
    assert_eq!(twice(&again), 0, "{} records delivered more than once: {stdout}{stderr}", twice(&again));
    assert_eq!(again.len(), total, "{stdout}{stderr}");

    // The live source goes on from its checkpoint: nothing it delivered, nor anything the
    // backfills stored, arrives again.
    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let last = by_uid(&out);
    assert_eq!(twice(&last), 0, "{} records delivered more than once: {stdout}{stderr}", twice(&last));
    assert_eq!(last.len(), total);
}

/// A live source that never ran: `--until` defaults to now, and stderr says the live source
/// will ask from its `start` when it first runs. It then stores what the backfill stored there
/// again (it never reads a backfill's keys): nothing is lost for the sinks, and what arrives
/// twice is exactly what was announced (the part after its start).
#[test]
fn test_a_backfill_before_the_live_source_ever_ran_loses_nothing_and_says_what_comes_again() {
    let now = Utc::now();
    let live_start = now - chrono::Duration::hours(12);
    let (_rt, sim, _dir, out, config) = live_from(live_start);
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();

    let since = (now - chrono::Duration::days(2)).to_rfc3339();
    let (code, stdout, stderr) = auditrelay(&config, &["backfill", "--source", "a", "--since", &since]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("never ran") && stderr.contains("defaults to now"), "{stderr}");
    assert!(stderr.contains("arrive again"), "it warns of what the live source will resend: {stderr}");
    assert_eq!(by_uid(&out).len(), total, "{stdout}{stderr}");

    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = by_uid(&out);
    assert_eq!(all.len(), total, "nothing lost");
    let again = twice(&all);
    assert!(again > 300 && again < total, "the part after the live start comes again, announced: {again} of {total}");
}

/// Review 18b (loses): `queue set-checkpoint` (the README's recovery for a damaged checkpoint,
/// and the documented way to skip or refetch) writes a checkpoint without `began`, so the live
/// source's recorded start is thrown away. A later backfill without `--until` then derives the
/// live start as its configured `start` less its `overlap` and stops there, while the live
/// source began at `start` and never asked before it: the `overlap` between them is collected by
/// nobody, and the backfill says it ended at "the live source's start".
#[test]
fn test_a_backfill_after_set_checkpoint_still_reaches_where_the_live_source_began() {
    let now = Utc::now();
    let live_start = now - chrono::Duration::hours(12);
    let (_rt, sim, dir, out, _) = live_from(live_start);
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();
    // The same source with a wider overlap (a gap wide enough to hold records).
    let extra = format!("start = {:?}\nlag = \"1s\"\noverlap = \"2h\"\n", live_start.to_rfc3339());
    let source = harness::source_block(&sim, SimVendor::Aitronos, &org, "a", &extra);
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    let config = dir.path().join("wide.toml");
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();

    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // The operator sets the checkpoint (here: to where it already was, roughly now).
    let done = (now - chrono::Duration::minutes(1)).to_rfc3339();
    let (code, stdout, stderr) =
        auditrelay(&config, &["queue", "set-checkpoint", "--source", "a", "--done-until", &done, "--yes"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    let since = (now - chrono::Duration::days(2)).to_rfc3339();
    let (code, stdout, stderr) = auditrelay(&config, &["backfill", "--source", "a", "--since", &since]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = by_uid(&out);
    assert_eq!(twice(&all), 0, "{stdout}{stderr}");
    assert_eq!(all.len(), total, "records never delivered (the live start was lost by set-checkpoint): {stderr}");
}

/// Review 18b (loses): a live checkpoint written before `began` existed (a database upgraded
/// from schema 7) is read as "began at `start` less `overlap`", the earliest it *may* have
/// asked. But an older version asked before `start` only after a first window shorter than the
/// overlap; with a usual first window it never did, so a backfill without `--until` stops
/// `overlap` short of where the live source really began and that stretch is never collected.
#[test]
fn test_a_backfill_beside_an_older_live_checkpoint_leaves_no_gap_before_its_start() {
    let now = Utc::now();
    let live_start = now - chrono::Duration::hours(12);
    let (_rt, sim, dir, out, _) = live_from(live_start);
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let total = sim.record_keys(SimVendor::Aitronos, &org).len();
    let extra = format!("start = {:?}\nlag = \"1s\"\noverlap = \"2h\"\n", live_start.to_rfc3339());
    let source = harness::source_block(&sim, SimVendor::Aitronos, &org, "a", &extra);
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    let config = dir.path().join("wide.toml");
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();

    let (code, stdout, stderr) = auditrelay(&config, &["run", "--once"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // As an older version wrote it: no `began`.
    let conn = rusqlite::Connection::open(dir.path().join("state").join("auditrelay.db")).unwrap();
    let n =
        conn.execute("UPDATE checkpoints SET state = json_remove(state, '$.began') WHERE source = 'a'", []).unwrap();
    assert_eq!(n, 1);
    drop(conn);

    let since = (now - chrono::Duration::days(2)).to_rfc3339();
    let (code, stdout, stderr) = auditrelay(&config, &["backfill", "--source", "a", "--since", &since]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = by_uid(&out);
    assert_eq!(twice(&all), 0, "{stdout}{stderr}");
    assert_eq!(all.len(), total, "records never delivered between start less overlap and start: {stderr}");
}
