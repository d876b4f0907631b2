//! Adversarial review 21j, of the row checksum (queue schema 10). Damage is done to the file's
//! bytes in place, as a bad block would, never through SQL: `quick_check` does not read a row's
//! content, so only a checksum can see it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use super::tests::{ev, opts, page};
use super::*;

/// A body of `len` bytes, not zeros anywhere, with `marker` in its middle.
fn body_with(len: usize, marker: &str) -> String {
    let pad: String = (0..len / 2).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    format!("{pad}{marker}{pad}")
}

/// Overwrites every occurrence of `marker` in the closed database file with as many `#`, in
/// place (the file's structure untouched, as a bad block inside a cell's content). Returns how
/// many were overwritten.
fn damage_in_place(dir: &std::path::Path, marker: &str) -> usize {
    let path = dir.join("auditrelay.db");
    assert!(
        !dir.join("auditrelay.db-wal").exists() || std::fs::metadata(dir.join("auditrelay.db-wal")).unwrap().len() == 0
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let m = marker.as_bytes();
    let mut hits = 0;
    let mut i = 0;
    while i + m.len() <= bytes.len() {
        if &bytes[i..i + m.len()] == m {
            bytes[i..i + m.len()].fill(b'#');
            hits += 1;
            i += m.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(&path, bytes).unwrap();
    hits
}

/// What held: a bad block inside a stored row's overflow page is refused at open, naming the row.
#[tokio::test]
async fn review21j_a_row_damaged_in_the_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "MARKER-21J-ROW-MARKER";
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("k1", 1, &body_with(40_000, marker))])).await.unwrap();
    q.close().await.unwrap();
    assert_eq!(damage_in_place(dir.path(), marker), 1);
    let err = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap_err();
    assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("from id 1") && err.to_string().contains("checksum"), "{err}");
}

/// Found by the review (fixed): a dead letter (an event a sink refused, kept for `auditrelay
/// queue replay`) had no checksum, so a bad block inside its bytes went unseen, and the replay
/// stored the damaged bytes as a new row under a checksum of their own: every sink was then sent
/// the damaged event as sound. A dead letter now keeps a checksum of its bytes: the database is
/// refused at open, naming it; a replay checks it as well (below).
#[tokio::test]
async fn review21j_a_dead_letter_damaged_in_the_file_is_not_replayed_as_a_sound_event() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "MARKER-21J-DEAD-LETTER";
    let original = body_with(40_000, marker);
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("k1", 1, &original)])).await.unwrap();
    // The sink refuses it: it becomes a dead letter, and its row leaves the queue.
    q.ack_refusing("s", 1, vec![RefusedEvent { id: 1, reason: "too large".into() }]).await.unwrap();
    q.close().await.unwrap();
    assert!(damage_in_place(dir.path(), marker) >= 1);
    let err = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap_err();
    assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains("dead letter 1") && err.to_string().contains("checksum"), "{err}");
}

/// A replay checks the dead letter's bytes before it stores them again: damaged while the agent
/// runs, the replay fails, stores nothing and keeps the dead letter.
#[tokio::test]
async fn review21j_a_replay_of_a_dead_letter_damaged_while_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("k1", 1, "alpha")])).await.unwrap();
    q.ack_refusing("s", 1, vec![RefusedEvent { id: 1, reason: "too large".into() }]).await.unwrap();
    rusqlite::Connection::open(dir.path().join("auditrelay.db"))
        .unwrap()
        .execute_batch("UPDATE dead_letters SET raw = CAST('alphx' AS BLOB)")
        .unwrap();
    let letters = q.select_dead_letters(DeadLetterSelection::default()).await.unwrap();
    let err = q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: letters[0].id }]).await.unwrap_err();
    assert!(matches!(err, QueueError::Damaged { .. }) && err.to_string().contains("checksum"), "{err:?}");
    assert_eq!(q.select_dead_letters(DeadLetterSelection::default()).await.unwrap().len(), 1);
    assert!(q.read_batch("s", 10, usize::MAX).await.unwrap().is_empty());
    q.close().await.unwrap();
}

/// A version 9 file salvaged to user_version 0 (no `crc` column): upgraded, rows read as stored.
#[tokio::test]
async fn review21j_a_salvaged_version_9_file_without_the_column_opens_and_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let to_0 = "ALTER TABLE pages DROP COLUMN crc; PRAGMA user_version = 0;";
    super::tests::stored_then(dir.path(), vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")], to_0).await;
    let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
    q.store_page(page("src", vec![ev("c", 3, "charlie")])).await.unwrap();
    assert_eq!(super::tests::all(&q, "s").await, ["alpha", "bravo", "charlie"]);
    q.close().await.unwrap();
}

/// A row damaged while the agent runs: every read of it fails (the sink stalls, nothing is
/// delivered changed), and the refusal of one of its events (dead letter) fails too.
#[tokio::test]
async fn review21j_a_row_damaged_while_open_is_never_read_nor_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
    q.store_page(page("src", vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")])).await.unwrap();
    rusqlite::Connection::open(dir.path().join("auditrelay.db"))
        .unwrap()
        .execute_batch("UPDATE pages SET body = CAST(replace(CAST(body AS TEXT), 'bravo', 'brave') AS BLOB)")
        .unwrap();
    let err = q.read_batch("s", 10, usize::MAX).await.unwrap_err();
    assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}");
    let err = q.ack_refusing("s", 2, vec![RefusedEvent { id: 2, reason: "x".into() }]).await.unwrap_err();
    assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}");
    assert!(q.select_dead_letters(DeadLetterSelection::default()).await.unwrap().is_empty());
    q.close().await.unwrap();
}

/// README "Damaged state" on a row failing its checksum, after the salvage (which copies the row
/// as it is, so the new file is refused again naming it): `UPDATE pages SET crc = NULL WHERE
/// first_id = N` lets it start (the row delivered as it is), `DELETE FROM pages WHERE first_id =
/// N` too (the row's events gone, the others delivered).
#[tokio::test]
async fn review21j_the_readme_recovery_of_a_checksum_failure_works() {
    for fix in ["UPDATE pages SET crc = NULL WHERE first_id = 2", "DELETE FROM pages WHERE first_id = 2"] {
        let dir = tempfile::tempdir().unwrap();
        let marker = "MARKER-21J-RECOVER";
        let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
        q.store_page(page("a", vec![ev("k1", 1, "first")])).await.unwrap();
        q.store_page(page("b", vec![ev("k2", 2, &body_with(40_000, marker))])).await.unwrap();
        q.store_page(page("c", vec![ev("k3", 3, "third")])).await.unwrap();
        q.close().await.unwrap();
        assert_eq!(damage_in_place(dir.path(), marker), 1);
        let err = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap_err().to_string();
        assert!(err.contains("from id 2") && err.contains("checksum"), "{err}");

        rusqlite::Connection::open(dir.path().join("auditrelay.db")).unwrap().execute_batch(fix).unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
        let got = super::tests::all(&q, "s").await;
        q.close().await.unwrap();
        if fix.starts_with("DELETE") {
            assert_eq!(got, ["first", "third"], "{fix}");
        } else {
            assert_eq!(got.len(), 3, "{fix}");
            assert!(got[1].contains("######"), "{fix}");
        }
    }
}
