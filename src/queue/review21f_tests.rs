//! Second adversarial pass on the page-at-a-time storage as committed (2b7be66..0df95cd): the id
//! floor after a salvage against the purge mark and sinks changing, the damaged-row error at open
//! against `queue stats`, a brand-new version-0 file, migrated rows against `length(body)`, and
//! how long `Queue::open` takes on a large backlog.

use super::tests::{all, db, ev, opts, page, stored_then};
use super::*;

// ---------------------------------------------------------------- findings (fail on the change)

/// After a salvage that lost `event_ids`, `pages::ids` floors the last id issued at the rows and
/// cursors, but only in memory: `issued` stays 0 on disk until something is stored. An ack then
/// persists the purge mark (5) and deletes the rows, so once the sinks change (a removed, c
/// added at 0: an ordinary config edit) nothing on disk remembers id 5 except `purged` itself,
/// which `ids` does not floor at. The next event gets id 1, at or below the purge mark: no sink
/// ever reads it and its row is never deleted.
#[tokio::test]
async fn review21f_a_persisted_purge_mark_is_never_above_the_next_id_after_a_salvage() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["a"], u64::MAX)).unwrap();
    let evs: Vec<NewEvent> = (1..=5).map(|i| ev(&format!("k{i}"), i, &format!("e{i}"))).collect();
    q.store_page(page("src", evs)).await.unwrap();
    q.close().await.unwrap();
    // The salvage: `event_ids`' row is gone (README "Damaged state"; user_version kept at 9).
    db(dir.path()).execute_batch("DELETE FROM event_ids").unwrap();

    let q = Queue::open(dir.path(), opts(&["a"], u64::MAX)).unwrap();
    assert_eq!(*q.subscribe_new_events().borrow(), 5, "floored at the stored rows");
    q.ack("a", 5).await.unwrap(); // rows deleted, purged = 5, issued still 0 on disk
    q.close().await.unwrap();
    let (issued, purged): (i64, i64) =
        db(dir.path()).query_row("SELECT issued, purged FROM event_ids", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    eprintln!("on disk after the ack: issued {issued}, purged {purged}");

    // Sink a is replaced by c (not renamed): c starts at 0.
    let q = Queue::open(dir.path(), opts(&["c"], u64::MAX)).unwrap();
    let newest = *q.subscribe_new_events().borrow();
    q.store_page(page("src", vec![ev("k6", 6, "new")])).await.unwrap();
    let got = all(&q, "c").await;
    let backlog = q.backlog("c").await.unwrap();
    q.close().await.unwrap();
    assert_eq!(
        (newest, got, backlog),
        (5, vec!["new".to_owned()], 1),
        "the event stored after the sink change reaches the new sink (newest id at open, read, backlog)"
    );
}

/// A damaged row refuses the agent's start with `QueueError::Damaged` (the README's recovery
/// steps and the readable checkpoints), but `auditrelay queue stats` (the first thing an operator
/// runs) reports the same row as a generic SQLite error "cannot read the queue's state".
#[tokio::test]
async fn review21f_queue_stats_on_a_damaged_row_gives_the_damaged_error_like_open() {
    let dir = tempfile::tempdir().unwrap();
    stored_then(dir.path(), vec![ev("a", 1, "aa"), ev("b", 2, "bb")], "UPDATE pages SET body = X'00'").await;
    let at_open = Queue::open(dir.path(), opts(&["s"], 1000)).expect_err("open refuses the damaged row");
    assert!(matches!(at_open, QueueError::Damaged { .. }), "{at_open:?}");
    let stats = QueueView::open(dir.path()).unwrap().overview().expect_err("stats cannot count the damaged row");
    assert!(matches!(stats, QueueError::Damaged { .. }), "queue stats: {stats:?}\n  displayed: {stats}");
}

/// The commit refuses damaged rows at open, but `span` does not look at `codec`: a row whose codec
/// byte was damaged opens normally, is counted in every backlog, and then every sink's read fails
/// on it, on every retry, for ever (a stall with the agent running, where the other damage stops
/// the start with the recovery steps).
#[tokio::test]
async fn review21f_a_row_with_an_unknown_codec_is_refused_at_open_too() {
    let dir = tempfile::tempdir().unwrap();
    stored_then(dir.path(), vec![ev("a", 1, "a")], "UPDATE pages SET codec = 1").await;
    match Queue::open(dir.path(), opts(&["s"], 1000)) {
        Err(e) => assert!(matches!(e, QueueError::Damaged { .. }), "{e:?}"),
        Ok(q) => {
            let backlog = q.backlog("s").await.unwrap();
            let read = q.read_batch("s", 10, usize::MAX).await.map(|b| b.len());
            q.close().await.unwrap();
            panic!("opened; backlog {backlog}; every read: {read:?}");
        }
    }
}

// ---------------------------------------------------------------- what held (pass on the change)

/// A brand-new file at user_version 0 (an empty `auditrelay.db`: `touch`, a provisioning tool)
/// is not a salvage: it becomes an empty queue of today's version whose ids start at 1.
#[tokio::test]
async fn review21f_an_empty_version_0_file_becomes_a_fresh_queue() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auditrelay.db"), b"").unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
    assert_eq!((*q.subscribe_new_events().borrow(), q.queued_bytes()), (0, 0));
    q.store_page(page("src", vec![ev("a", 1, "a")])).await.unwrap();
    let batch = q.read_batch("s", 10, usize::MAX).await.unwrap();
    assert_eq!(batch.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
    q.close().await.unwrap();
    let v: i64 = db(dir.path()).pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, crate::queue::schema::SCHEMA_VERSION);
}

/// A version 9 file salvaged to user_version 0 with `event_ids` gone: the floor comes from the
/// cursors (a renamed sink's carried cursor included), and the first store persists it.
#[tokio::test]
async fn review21f_a_salvaged_v9_file_floors_at_a_renamed_cursor_and_persists_it_on_store() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["a", "b"], u64::MAX)).unwrap();
    let evs: Vec<NewEvent> = (1..=4).map(|i| ev(&format!("k{i}"), i, "x")).collect();
    q.store_page(page("src", evs)).await.unwrap();
    q.ack("a", 4).await.unwrap();
    q.ack("b", 4).await.unwrap();
    q.close().await.unwrap();
    db(dir.path()).execute_batch("DROP TABLE event_ids; PRAGMA user_version = 0;").unwrap();
    let renamed = rename_sink_cursors(dir.path(), &[("a".to_owned(), "a2".to_owned())]);
    assert!(renamed.is_ok(), "{renamed:?}");
    let q = Queue::open(dir.path(), opts(&["a2", "b"], u64::MAX)).unwrap();
    assert_eq!(*q.subscribe_new_events().borrow(), 4);
    q.store_page(page("src", vec![ev("k5", 5, "new")])).await.unwrap();
    assert_eq!(all(&q, "a2").await, ["new"]);
    q.close().await.unwrap();
    let issued: i64 = db(dir.path()).query_row("SELECT issued FROM event_ids", [], |r| r.get(0)).unwrap();
    assert_eq!(issued, 5);
}

/// Rows written by the v8 -> v9 migration hold together for `span`'s `length(body)` check,
/// including empty bodies, a 300 KiB body and a BLOB stored as TEXT-free bytes with NULs.
#[tokio::test]
async fn review21f_migrated_rows_pass_the_length_check_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.close().await.unwrap();
    let old = db(dir.path());
    old.execute_batch(
        "DROP TABLE pages; DROP TABLE event_ids;
         CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                              event_time_ms INTEGER NOT NULL, body BLOB NOT NULL,
                              collected_ms INTEGER NOT NULL DEFAULT 0);
         PRAGMA user_version = 8;",
    )
    .unwrap();
    let mut insert =
        old.prepare("INSERT INTO events (source, event_time_ms, body, collected_ms) VALUES ('a', 1, ?1, 7)").unwrap();
    let mut total = 0usize;
    for i in 0..600usize {
        let body = match i {
            3 => vec![],
            100 => vec![b'z'; 300 * 1024],
            _ => vec![0u8, (i % 256) as u8, 0, 1],
        };
        total += body.len();
        insert.execute([body]).unwrap();
    }
    drop(insert);
    drop(old);
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    assert_eq!(q.queued_bytes(), total as u64);
    q.close().await.unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    assert_eq!((q.queued_bytes(), q.backlog("s").await.unwrap()), (total as u64, 600));
    q.close().await.unwrap();
}

// ---------------------------------------------------------------- measurement (run by hand)

/// The same damaged row, opened by a restart that also removes a sink: `reconcile_cursors`
/// measures the removed sink's backlog (`span`) before `Queue::open` measures the queue, and maps
/// the error to a generic SQLite one, so the agent refuses to start without the recovery steps.
#[tokio::test]
async fn review21f_a_damaged_row_is_the_damaged_error_when_a_sink_is_removed_too() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s", "gone"], 1000)).unwrap();
    q.store_page(page("src", vec![ev("a", 1, "aa"), ev("b", 2, "bb")])).await.unwrap();
    q.close().await.unwrap();
    db(dir.path()).execute_batch("UPDATE pages SET body = X'00'").unwrap();
    let err = Queue::open(dir.path(), opts(&["s"], 1000)).expect_err("open refuses the damaged row");
    assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}\n  displayed: {err}");
}
