//! Review 21n (issue 21 point 4). The ninth round first bounded how many pages of mapped events
//! wait for the database at once (a "page turn", a semaphore shared by every source, held from
//! mapping to the commit's answer). The review found that a turn was held through the commit's
//! retry loop while commits failed (disk full, database locked or read-only), and that waiting
//! for one ignored the source's stop: a reload that restarts one source waited for OTHER
//! sources' commits to succeed again, for the whole outage, and a shutdown took 5 s per 16
//! waiting sources. The turn was withdrawn (it bought 3 MiB of peak at 500 sources). This pins
//! what must stay true whatever bounds the sources' memory next: a source's commit path
//! never waits on another source's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use super::*;
use crate::config::Config;
use crate::queue::QueueOptions;

fn config(dir: &std::path::Path, name: &str) -> SourceConfig {
    let text = format!(
        "state_dir = \"state\"\n[[sources]]\nname = {name:?}\nvendor = \"aitronos\"\n\
         organization_id = \"ORG_A\"\napi_key = \"k\"\nbackoff = {{ initial = \"50ms\", max = \"200ms\" }}\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"out.ndjson\"\n"
    );
    Config::parse_with_env(&text, &dir.join("a.toml"), &|_: &str| None).unwrap().sources[0].clone()
}

/// A page of three records, as the Aitronos vendor file reads one.
fn page(tag: &str) -> Page {
    let raws: Vec<Box<RawValue>> = (0..3)
        .map(|i| {
            RawValue::from_string(format!(
                r#"{{"id":"{tag}-{i}","created_at":"2026-03-18T11:00:0{i}Z","action":"user.login","actor":{{"id":"u{i}"}}}}"#
            ))
            .unwrap()
        })
        .collect();
    Page::of_records(raws.iter().map(|r| r.as_ref()).collect(), "id", "created_at")
}

fn window() -> (Sweep, Checkpoint) {
    let from = Utc.with_ymd_and_hms(2026, 3, 18, 10, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 3, 18, 12, 0, 0).unwrap();
    let sweep = Sweep::new(Window { from, to }, PageCursor::Offset { skip: 0 });
    let next = Checkpoint { done_until: Some(to), ..Checkpoint::default() };
    (sweep, next)
}

/// `Source::store` of one page in a task of its own, stopped by `stop`.
fn spawn_store(
    dir: &std::path::Path,
    queue: &Queue,
    name: &str,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), SourceExit>> {
    let mut source = Source::new(config(dir, name), reqwest::Client::new(), queue.clone(), Clock::system());
    let page = page(name);
    tokio::spawn(async move {
        let (sweep, next) = window();
        source.store(page, &sweep, &next, &stop).await
    })
}

/// The write lock held by another connection (an operator's `sqlite3`; a full or read-only
/// disk fails commits the same way). 16 sources received a page and retry its commit. A 17th
/// received one and is stopped, as a reload stops the source it restarts: it must end after its
/// own attempt (one 5 s busy timeout), not when the others' commits succeed. On `16bc7fc` (the
/// page turn) it was still waiting after 20 s. Wall-clock time: SQLite's busy timeout is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_review21n_a_stopped_source_is_not_held_by_other_sources_commit_retries() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(dir.path(), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] }).unwrap();
    // The write lock, held by another connection until released (bounded).
    let db = crate::queue::database_path(dir.path());
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(120));
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();

    let keep_running = CancellationToken::new();
    let retrying: Vec<_> =
        (0..16).map(|i| spawn_store(dir.path(), &queue, &format!("retrying-{i}"), keep_running.clone())).collect();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let stop = CancellationToken::new();
    let stale = spawn_store(dir.path(), &queue, "stale", stop.clone());
    tokio::task::yield_now().await;
    stop.cancel();
    let started = std::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(20), stale).await;
    let waited = started.elapsed();

    release.send(()).unwrap();
    locker.join().unwrap();
    keep_running.cancel();
    for source in retrying {
        let _ = tokio::time::timeout(Duration::from_secs(30), source).await;
    }
    queue.close().await.unwrap();
    let ended = ended.unwrap_or_else(|_| panic!("a stopped source was still running {waited:?} after its stop"));
    assert!(
        matches!(ended.unwrap(), Err(SourceExit::Shutdown)),
        "the stopped source's page was not committed (the database is locked): it ends as stopped"
    );
}
