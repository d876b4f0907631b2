//! Adversarial review 21m, of `event_ids.unheld_through` (commit bf7fff8). Its first two tests
//! failed on that commit: a salvage that lost `event_ids`' row issued ids again (now floored by
//! the ids sinks' dead letters name), and the README's removal command failed on a file of the
//! previous release (now two steps, the second only when the agent asks for it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use super::tests::{all, db, ev, opts, page};
use super::*;

/// "Ids are never issued again" does not hold after a salvage that lost `event_ids`' row (a case
/// `open_connection` handles on purpose: `ids_row`): `ENSURE_EVENT_IDS` makes the row again
/// from the stored rows and the sink cursors only, never from the dead letters' keys
/// (`<sink>#<id>`). A sink "s" refused event 5 (dead letter `s#5`) and passed everything;
/// then it was replaced by "t" (its cursor deleted, "t" at 0: nothing left to purge). A
/// `.recover` that loses `event_ids`' row then issues ids 1..=5 again (no warning: nothing is
/// above them). When "s" is configured again and refuses the new event 5 of the same source,
/// its dead letter is dropped by `INSERT OR IGNORE` on the old key while its cursor passes it:
/// delivered nowhere, recorded nowhere (review 21l's second defect, by the salvage path).
#[tokio::test]
async fn review21m_a_salvage_that_lost_event_ids_row_never_reissues_a_dead_lettered_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    let evs: Vec<NewEvent> = (1..=5).map(|i| ev(&format!("o{i}"), i, &format!("old{i}"))).collect();
    q.store_page(page("a", evs)).await.unwrap();
    q.ack_refusing("s", 5, vec![RefusedEvent { id: 5, reason: "too large".into() }]).await.unwrap();
    q.close().await.unwrap();
    // "s" replaced by "t".
    Queue::open(dir.path(), opts(&["t"], u64::MAX)).unwrap().close().await.unwrap();
    let (issued, purged): (i64, i64) =
        db(dir.path()).query_row("SELECT issued, purged FROM event_ids", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((issued, purged), (5, 5));
    // The salvage kept everything but `event_ids`' row (its page was the damaged one).
    db(dir.path()).execute("DELETE FROM event_ids", []).unwrap();

    let q = Queue::open(dir.path(), opts(&["s", "t"], u64::MAX)).unwrap();
    let evs: Vec<NewEvent> = (1..=5).map(|i| ev(&format!("n{i}"), 100 + i, &format!("new{i}"))).collect();
    q.store_page(page("a", evs)).await.unwrap();
    let batch = q.read_batch("s", 100, usize::MAX).await.unwrap();
    let last = batch.last().unwrap().id;
    q.ack_refusing("s", last, vec![RefusedEvent { id: last, reason: "too large".into() }]).await.unwrap();
    let letters = q.dead_letters(100).await.unwrap();
    let keys: Vec<&str> = letters.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(letters.len(), 2, "both refused events are dead letters (new ids end at {last}): {keys:?}");
    q.close().await.unwrap();
}

/// README "Damaged state", step 2, on a file of the previous release (schema 10 without
/// `unheld_through`) whose newest row fails its checksum: refused at the first start of this
/// version before the column is added (the open's transaction is rolled back), salvaged
/// (`VACUUM INTO` for a `.recover` that keeps the version), the row removed as the README says
/// (`DELETE FROM pages WHERE first_id = N`, a command that runs on either layout): the agent
/// starts, the file never having been checked so. The README as first written ran an `UPDATE`
/// of the column in the same command, which failed here ("no such column: unheld_through").
#[tokio::test]
async fn review21m_the_readme_removal_of_a_damaged_row_runs_on_a_file_of_the_previous_release() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["a"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("k1", 1, "e1"), ev("k2", 2, "e2")])).await.unwrap();
    q.store_page(page("src", vec![ev("k3", 3, "e3")])).await.unwrap();
    q.close().await.unwrap();
    // As 74eb3d4 left it (no `unheld_through`), then a bad block in the newest row.
    db(dir.path())
        .execute_batch(
            "ALTER TABLE event_ids DROP COLUMN unheld_through;
             UPDATE pages SET body = CAST('eX' AS BLOB) WHERE first_id = 3;",
        )
        .unwrap();
    let err = Queue::open(dir.path(), opts(&["a"], u64::MAX)).unwrap_err();
    assert!(err.to_string().contains("the stored events from id 3"), "{err}");
    let salvaged = tempfile::tempdir().unwrap();
    db(dir.path()).execute("VACUUM INTO ?1", [salvaged.path().join("auditrelay.db").to_str().unwrap()]).unwrap();
    std::fs::copy(dir.path().join("auditrelay.db.created"), salvaged.path().join("auditrelay.db.created")).ok();
    db(salvaged.path())
        .execute_batch("DELETE FROM pages WHERE first_id = 3")
        .expect("README's command runs as written");
    let q = Queue::open(salvaged.path(), opts(&["a"], u64::MAX)).expect("starts after the removal");
    assert_eq!(all(&q, "a").await, ["e1", "e2"]);
    q.store_page(page("src", vec![ev("k4", 4, "e4")])).await.unwrap();
    let ids: Vec<i64> = q.read_batch("a", 10, usize::MAX).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 4], "id 3 is not issued again");
    q.close().await.unwrap();
    Queue::open(salvaged.path(), opts(&["a"], u64::MAX)).unwrap().close().await.unwrap();
}

/// What held (a control, passes): ordinary histories across restarts (a sink removed, none
/// configured, a new one at 0, a refusal and its replay, a rename, a sink added after every
/// event left, a file of the previous release without the column) never leave the last id
/// issued above every row and the purge mark; every start opens, the read-only view reads the
/// file with and without the column, and nothing is marked unheld.
#[tokio::test]
async fn review21m_ordinary_histories_across_restarts_are_never_refused_or_marked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let unheld = || db(d).query_row("SELECT unheld_through FROM event_ids", [], |r| r.get::<_, i64>(0)).unwrap();
    let reopen = |sinks: &[&str]| Queue::open(d, opts(sinks, u64::MAX)).expect("a sound file opens");

    let q = reopen(&["a", "b"]);
    q.store_page(page("src", vec![ev("k1", 1, "e1"), ev("k2", 2, "e2"), ev("k3", 3, "e3")])).await.unwrap();
    q.ack("a", 3).await.unwrap();
    q.close().await.unwrap();
    reopen(&["a", "b"]).close().await.unwrap();
    // b removed: everything leaves.
    reopen(&["a"]).close().await.unwrap();
    // No sink at all; events stored meanwhile.
    let q = reopen(&[]);
    q.store_page(page("src", vec![ev("k4", 4, "e4"), ev("k5", 5, "e5"), ev("k6", 6, "e6")])).await.unwrap();
    q.close().await.unwrap();
    reopen(&[]).close().await.unwrap();
    // A new sink gets them, refuses 6, the refusal is replayed (id 7).
    let q = reopen(&["c"]);
    assert_eq!(all(&q, "c").await, ["e4", "e5", "e6"]);
    q.ack_refusing("c", 6, vec![RefusedEvent { id: 6, reason: "no".into() }]).await.unwrap();
    let letter = q.dead_letters(10).await.unwrap()[0].id;
    q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: letter }]).await.unwrap();
    q.close().await.unwrap();
    // Renamed; the new name passes the replayed event; then a sink added after everything left.
    rename_sink_cursors(d, &[("c".into(), "d".into())]).unwrap();
    let q = reopen(&["d"]);
    assert_eq!(all(&q, "d").await, ["e6"]);
    q.ack("d", 7).await.unwrap();
    q.close().await.unwrap();
    reopen(&["d", "e"]).close().await.unwrap();
    reopen(&["e"]).close().await.unwrap();
    assert_eq!(unheld(), 0);
    // The previous release (no column) stores and purges; this one opens it again; the view
    // reads both layouts.
    db(d).execute_batch("ALTER TABLE event_ids DROP COLUMN unheld_through").unwrap();
    QueueView::open(d).unwrap().overview().unwrap();
    let q = reopen(&["e"]);
    q.store_page(page("src", vec![ev("k8", 8, "e8")])).await.unwrap();
    q.close().await.unwrap();
    assert_eq!(unheld(), 0, "nothing was unheld");
    let o = QueueView::open(d).unwrap().overview().unwrap();
    assert_eq!(o.events, 1);
    let q = reopen(&["e"]);
    assert_eq!(all(&q, "e").await, ["e8"]);
    q.close().await.unwrap();
}
