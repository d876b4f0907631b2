//! Damaged state (issue 8 point 4) on the real binary: a truncated, overwritten or foreign
//! database, a lost database, and a missing or empty checkpoint each stop the agent with an
//! error naming the file or the source and the recovery (README "Damaged state"); none of them
//! silently means "start over". The documented recovery (`queue set-checkpoint`) then works.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use auditrelay::clock::Clock;
use auditrelay::queue::{NewEvent, PageWrite, Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, Sim, SimOptions};
use harness::*;

/// Runs the binary to its end; async, so the simulator in this runtime keeps answering.
async fn auditrelay(args: &[&str], config: &Path, key: &str) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(args)
        .arg("-c")
        .arg(config)
        .env("TEST_AITRONOS_KEY", key)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

struct Setup {
    sim: Sim,
    dir: tempfile::TempDir,
    config: PathBuf,
    key: String,
}

impl Setup {
    async fn new(records: usize) -> Setup {
        let mut opts = SimOptions::default();
        opts.aitronos.records = records;
        opts.faults.rate_limit = RateLimitSetting::Off;
        let sim = start_sim(opts, &Clock::system()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("auditrelay.toml");
        let fast = "max_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }";
        std::fs::write(&config, config_text(&sim, dir.path(), fast)).unwrap();
        let key = sim.aitronos_api_key().to_owned();
        Setup { sim, dir, config, key }
    }

    async fn run_once(&self) -> Output {
        auditrelay(&["run", "--once"], &self.config, &self.key).await
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn db(&self) -> PathBuf {
        self.state().join("auditrelay.db")
    }

    fn sql(&self, statement: &str) {
        rusqlite::Connection::open(self.db()).unwrap().execute_batch(statement).unwrap();
    }
}

/// A database holding 3 000 queued events (about 4 MB) and a checkpoint, as the agent leaves it
/// when its sink is behind: the damage below lands on pages in use.
async fn queue_with_backlog(state: &Path) {
    let queue = Queue::open(state, QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
    for page in 0..30 {
        let events = (0..100)
            .map(|i| NewEvent {
                dedupe_key: format!("k{page}-{i}"),
                event_time_ms: 1_773_800_000_000 + i,
                body: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(1200)).into_bytes(),
            })
            .collect();
        let checkpoint = Some(r#"{"done_until":"2026-03-18T10:00:00Z"}"#.to_owned());
        let write = PageWrite { source: "aitronos-test".into(), events, checkpoint, ..PageWrite::default() };
        queue.store_page(write).await.unwrap();
    }
    queue.close().await.unwrap();
}

fn assert_refused(out: &Output, must_contain: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "the agent started on damaged state:\n{err}");
    for needle in must_contain {
        assert!(err.contains(needle), "the error does not say {needle:?}:\n{err}");
    }
}

#[tokio::test]
async fn test_truncated_or_overwritten_database_is_refused_with_the_recovery_path() {
    let s = Setup::new(10).await;
    queue_with_backlog(&s.state()).await;
    let db = s.db();
    let len = std::fs::metadata(&db).unwrap().len();
    assert!(len > 1_000_000, "the database should hold the backlog ({len} bytes)");
    let pristine = std::fs::read(&db).unwrap();
    let path = db.display().to_string();

    // Cut short, as by a copy that did not finish.
    std::fs::write(&db, &pristine[..pristine.len() * 6 / 10]).unwrap();
    let out = s.run_once().await;
    assert_refused(&out, &[&path, "is damaged", "README \"Damaged state\""]);
    // The damaged file is left as it was for the operator.
    assert_eq!(std::fs::metadata(&db).unwrap().len(), (pristine.len() * 6 / 10) as u64);

    // 8 KiB of garbage in the middle, as by a bad sector or a stray write.
    let mut bad = pristine.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 8192].fill(0xA5);
    std::fs::write(&db, &bad).unwrap();
    assert_refused(&s.run_once().await, &[&path, "is damaged", "Damaged state"]);

    // A foreign file.
    let mut foreign = pristine.clone();
    foreign[..16].copy_from_slice(b"not sqlite at al");
    std::fs::write(&db, &foreign).unwrap();
    assert_refused(&s.run_once().await, &[&path, "not a SQLite database"]);

    // Put back, it runs: the refusals changed nothing.
    std::fs::write(&db, &pristine).unwrap();
    let out = s.run_once().await;
    assert!(out.status.success(), "{}", stderr(&out));
    s.sim.shutdown().await;
}

#[tokio::test]
async fn test_the_damage_message_lists_the_checkpoints_still_readable() {
    let s = Setup::new(10).await;
    queue_with_backlog(&s.state()).await;
    // The queued events' table (`pages`) is damaged at its root; the checkpoints table is intact.
    let db = s.db();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let root: i64 =
        conn.query_row("SELECT rootpage FROM sqlite_schema WHERE name = 'pages'", [], |r| r.get(0)).unwrap();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&db).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at..at + page_size as usize].fill(0x5A);
    std::fs::write(&db, &bytes).unwrap();
    let out = s.run_once().await;
    assert_refused(
        &out,
        &["is damaged", "Last checkpoints readable: aitronos-test collected up to 2026-03-18T10:00:00Z"],
    );
    s.sim.shutdown().await;
}

#[tokio::test]
async fn test_a_lost_database_is_not_a_fresh_start_unless_the_operator_says_so() {
    let s = Setup::new(300).await;
    let out = s.run_once().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let marker = s.state().join("auditrelay.db.created");
    assert!(marker.exists(), "the state marker is written with the database");
    let requests = s.sim.stats().requests;

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", s.db().display()));
    }
    let out = s.run_once().await;
    assert_refused(&out, &["is missing", &marker.display().to_string(), "Damaged state"]);
    assert_eq!(s.sim.stats().requests, requests, "nothing was fetched");

    // The operator starts over on purpose: everything is fetched again, under the same uids.
    std::fs::remove_file(&marker).unwrap();
    let out = s.run_once().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let got = delivered(&out_path(s.dir.path()));
    assert_eq!(got.len(), 300);
    assert!(got.values().all(|n| *n == 2), "each record refetched once after the deliberate fresh start");
    s.sim.shutdown().await;
}

#[tokio::test]
async fn test_missing_or_empty_checkpoint_stops_the_source_and_set_checkpoint_recovers() {
    let s = Setup::new(300).await;
    let out = s.run_once().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let requests = s.sim.stats().requests;

    for (statement, says) in [
        ("DELETE FROM checkpoints", "it is missing, yet the database holds records of this source"),
        ("UPDATE checkpoints SET state = ''", "EOF while parsing"),
        ("UPDATE checkpoints SET state = '{}'", "it is empty"),
        ("UPDATE checkpoints SET state = '{\"done_until\": 7}'", "invalid type"),
    ] {
        // Each case starts from a checkpoint row, deleted or spoiled.
        s.sql("INSERT OR IGNORE INTO checkpoints (source, state, updated_at_ms) VALUES ('aitronos-test', '{}', 0)");
        s.sql(statement);
        let out = s.run_once().await;
        assert_refused(&out, &["source aitronos-test", "checkpoint", says, "Damaged state"]);
        assert_eq!(s.sim.stats().requests, requests, "{statement}: fetched although the checkpoint is damaged");
    }

    // Recovery: show, then set the checkpoint; the source resumes from there.
    let set = ["queue", "set-checkpoint", "--source", "aitronos-test", "--done-until", "2026-01-01T00:00:00Z"];
    let dry = auditrelay(&set, &s.config, &s.key).await;
    assert!(!dry.status.success(), "without --yes nothing is written");
    assert!(stderr(&dry).contains("--yes"), "{}", stderr(&dry));
    let unknown = auditrelay(
        &["queue", "set-checkpoint", "--source", "nope", "--done-until", "2026-01-01T00:00:00Z", "--yes"],
        &s.config,
        &s.key,
    )
    .await;
    assert!(stderr(&unknown).contains("no source named \"nope\""), "{}", stderr(&unknown));
    let mut yes = set.to_vec();
    yes.push("--yes");
    let done = auditrelay(&yes, &s.config, &s.key).await;
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(String::from_utf8_lossy(&done.stdout).contains("2026-01-01T00:00:00Z"));
    let out = s.run_once().await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(s.sim.stats().requests > requests, "the source fetched again");
    // Every record arrived; the refetch from 2026-01-01 was deduplicated against the kept keys.
    assert_exactly_once_file(&s);
    s.sim.shutdown().await;
}

fn assert_exactly_once_file(s: &Setup) {
    assert_exactly_once(&s.sim, &out_path(s.dir.path()));
}
