//! Adversarial review of issue 21: the writer's idle `PRAGMA shrink_memory` (after 1 s without a
//! command) against commands arriving around it, group commit, close and reopen.

use std::time::Duration;

use super::tests::{all, ev, opts, page};
use super::*;

/// `Writer::release_memory` is `execute_batch("PRAGMA shrink_memory")` with the error logged at
/// debug level: it must actually succeed on this rusqlite, or the feature is silently a no-op.
#[test]
fn review21a_shrink_memory_pragma_succeeds_and_frees_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("q.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x BLOB); \
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<2000) INSERT INTO t SELECT randomblob(1000) FROM c;",
    )
    .unwrap();
    let _: i64 = conn.query_row("SELECT count(*) FROM t WHERE length(x) > 0", [], |r| r.get(0)).unwrap();
    conn.execute_batch("PRAGMA shrink_memory").unwrap();
}

/// Writes and reads from several tasks at the instants the writer goes idle and releases its
/// cache (1 s after the last command, each round landing a little later), then close and reopen:
/// every event stored once, every cursor where the acks left it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review21a_commands_around_the_idle_release_are_neither_lost_nor_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s", "t"], u64::MAX)).unwrap();
    let mut expected = Vec::new();
    for round in 0..6u64 {
        // Idle just past the release (1 s), by a little more each round.
        tokio::time::sleep(Duration::from_millis(1000 + round * 7)).await;
        let mut tasks = Vec::new();
        for t in 0..4 {
            let q = q.clone();
            let key = format!("r{round}-t{t}");
            let p = page(&format!("src{t}"), vec![ev(&key, (round * 10 + t) as i64, &key)]);
            tasks.push(tokio::spawn(async move { q.store_page(p).await.unwrap().stored }));
            expected.push(format!("r{round}-t{t}"));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 1);
        }
        // Reads between writes: the held-command path of group commit.
        let batch = q.read_batch("s", 1000, usize::MAX).await.unwrap();
        q.ack("s", batch.last().unwrap().id).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut got_t = all(&q, "t").await;
    assert_eq!(q.backlog("s").await.unwrap(), 0, "every ack applied");
    q.close().await.unwrap();
    let q = Queue::open(dir.path(), opts(&["s", "t"], u64::MAX)).unwrap();
    let mut again = all(&q, "t").await;
    got_t.sort();
    again.sort();
    expected.sort();
    assert_eq!(got_t, expected);
    assert_eq!(again, expected, "durable across close and reopen");
    assert_eq!(q.backlog("s").await.unwrap(), 0);
    q.close().await.unwrap();
}
