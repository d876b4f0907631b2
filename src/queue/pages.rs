//! Events stored a page at a time (schema version 9): one row of `pages` holds a run of events
//! with consecutive ids (`first_id..=last_id`) from one source page, their bodies concatenated,
//! and each body's length. One insert, one b-tree entry and one delete per stored row instead of
//! per event. Bodies are stored as they are: deflating a row cut the database to a ninth but cost
//! more CPU in the sinks' reads (each sink inflates every row) than it saved in the writes
//! (BENCHMARKS.md, "Issue 21, fifth round"); `codec` leaves room for another layout.
//!
//! Ids stay per event, so sinks' cursors, acks and dead-letter keys mean what they meant. An event
//! leaves when every sink is past it; its row is deleted only when every sink is past the row's
//! last id, so `event_ids.purged` (the highest id every sink had passed when events were last
//! deleted) hides what a row still holds below it: every read, count and sum here starts after
//! `max(cursor, purged)`. `event_ids.issued` is the last id ever issued, so an id is never
//! reused even after every row was deleted (a reused id at or below a cursor would be skipped).
//!
//! This file owns the row layout (writing, reading, counting, deleting); which events are stored
//! is `writes.rs`'s, when they may go is `cursors.rs`'s.

use rusqlite::{Connection, OptionalExtension, params};

use super::{QueuedEvent, to_u64};

/// A stored row holds at most this many events ...
pub(super) const ROW_EVENTS: usize = 256;
/// ... and at most about this many body bytes (a larger single event is a row of its own). A
/// sink's batch that ends inside a row reads the row again for the next batch: rows well under a
/// batch (500 events, 1 MiB) keep that small, and bound what one read decodes.
pub(super) const ROW_BYTES: usize = 256 * 1024;

/// How a row's `body` holds the event bodies: concatenated as they are (the only codec written).
const CODEC_PLAIN: i64 = 0;

/// Rows being filled with events in id order and written as they fill: a new row starts when
/// the current one is full, the ids stop being consecutive, or the source or the time stored
/// changes (a row is one source's, stored at one time).
#[derive(Default)]
pub(super) struct RowWriter {
    source: String,
    collected_ms: i64,
    first_id: i64,
    count: usize,
    sizes: Vec<u8>,
    bodies: Vec<u8>,
    /// Body bytes of every row written so far.
    written: u64,
}

impl RowWriter {
    /// Adds the event `id` of `source`, stored at `collected_ms`.
    pub(super) fn push(
        &mut self,
        tx: &Connection,
        source: &str,
        collected_ms: i64,
        id: i64,
        body: &[u8],
    ) -> rusqlite::Result<()> {
        let full = self.count >= ROW_EVENTS || self.bodies.len() + body.len() > ROW_BYTES;
        let apart =
            id != self.first_id + self.count as i64 || source != self.source || collected_ms != self.collected_ms;
        if self.count > 0 && (full || apart) {
            self.flush(tx)?;
        }
        if self.count == 0 {
            (self.first_id, self.collected_ms) = (id, collected_ms);
            if source != self.source {
                source.clone_into(&mut self.source);
            }
        }
        let len = u32::try_from(body.len()).map_err(|_| too_large(id, body.len()))?;
        self.sizes.extend_from_slice(&len.to_le_bytes());
        self.bodies.extend_from_slice(body);
        self.count += 1;
        Ok(())
    }

    /// Writes what is pending; returns the body bytes of every row written.
    pub(super) fn finish(mut self, tx: &Connection) -> rusqlite::Result<u64> {
        self.flush(tx)?;
        Ok(self.written)
    }

    fn flush(&mut self, tx: &Connection) -> rusqlite::Result<()> {
        if self.count == 0 {
            return Ok(());
        }
        let last_id = self.first_id + self.count as i64 - 1;
        tx.prepare_cached(
            "INSERT INTO pages (first_id, last_id, source, collected_ms, sizes, codec, body, crc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            self.first_id,
            last_id,
            self.source,
            self.collected_ms,
            self.sizes,
            CODEC_PLAIN,
            self.bodies,
            crc(&self.sizes, &self.bodies)
        ])?;
        self.written += self.bodies.len() as u64;
        self.count = 0;
        self.sizes.clear();
        self.bodies.clear();
        Ok(())
    }
}

/// The events with ids `lo < id <= hi`: how many, and their body bytes (from each row's sizes,
/// the one account of its bytes, so what is added and what leaves always agree).
pub(super) fn span(conn: &Connection, lo: i64, hi: i64) -> rusqlite::Result<(u64, u64)> {
    if hi <= lo {
        return Ok((0, 0));
    }
    // `length` of a blob is read from the row's header: the bodies are not read.
    let mut rows = conn.prepare_cached(
        "SELECT first_id, last_id, sizes, length(body), codec FROM pages
         WHERE first_id >= COALESCE((SELECT first_id FROM pages WHERE first_id <= ?1 + 1
                                     ORDER BY first_id DESC LIMIT 1), 0)
           AND first_id <= ?2
         ORDER BY first_id",
    )?;
    let mut rows = rows.query(params![lo, hi])?;
    let (mut events, mut bytes) = (0u64, 0u64);
    while let Some(row) = rows.next()? {
        let (first, last): (i64, i64) = (row.get(0)?, row.get(1)?);
        let sizes = Sizes::new(first, last, row.get_ref(2)?.as_blob()?)?;
        let total = sizes.total();
        if usize::try_from(row.get::<_, i64>(3)?).ok() != Some(total) {
            return Err(damaged(first, "bodies do not match their sizes"));
        }
        match row.get::<_, i64>(4)? {
            CODEC_PLAIN => {}
            other => return Err(damaged(first, &format!("unknown codec {other}"))),
        }
        let (from, to) = (first.max(lo.saturating_add(1)), last.min(hi));
        if to < from {
            continue;
        }
        events += to_u64(to - from + 1);
        bytes += if (from, to) == (first, last) {
            total as u64
        } else {
            (from..=to).map(|id| sizes.len_of(id) as u64).sum::<u64>()
        };
    }
    Ok((events, bytes))
}

/// Events after `after` by ascending id: at most `max_events` (0 counts as 1), stopping before
/// the bodies exceed `max_bytes`, but at least one if any is stored.
pub(super) fn read_after(
    conn: &Connection,
    after: i64,
    max_events: usize,
    max_bytes: usize,
) -> rusqlite::Result<Vec<QueuedEvent>> {
    let max_events = max_events.max(1);
    let mut stmt = conn.prepare_cached(
        "SELECT first_id, last_id, collected_ms, sizes, codec, body, crc FROM pages
         WHERE first_id >= COALESCE((SELECT first_id FROM pages WHERE first_id <= ?1 + 1
                                     ORDER BY first_id DESC LIMIT 1), 0)
         ORDER BY first_id",
    )?;
    let mut rows = stmt.query([after])?;
    let (mut batch, mut bytes) = (Vec::new(), 0usize);
    while let Some(row) = rows.next()? {
        let (first, last, collected_ms): (i64, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if last <= after {
            continue;
        }
        let sizes = Sizes::new(first, last, row.get_ref(3)?.as_blob()?)?;
        let bodies = decode(first, row.get(4)?, row.get_ref(5)?.as_blob()?, &sizes, row.get(6)?)?;
        let mut offset = 0usize;
        for id in first..=last {
            let len = sizes.len_of(id);
            let body = bodies.get(offset..offset + len).ok_or_else(|| damaged(first, "bodies shorter than sizes"))?;
            offset += len;
            if id <= after {
                continue;
            }
            bytes = bytes.saturating_add(len);
            if bytes > max_bytes && !batch.is_empty() {
                return Ok(batch);
            }
            batch.push(QueuedEvent { id, body: body.to_vec(), collected_ms });
            if batch.len() >= max_events {
                return Ok(batch);
            }
        }
    }
    Ok(batch)
}

/// The stored event `id`: its source and body, if it is still stored.
pub(super) fn event(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, Vec<u8>)>> {
    let row = conn
        .prepare_cached(
            "SELECT first_id, last_id, source, sizes, codec, body, crc FROM pages
             WHERE first_id <= ?1 ORDER BY first_id DESC LIMIT 1",
        )?
        .query_row([id], |row| {
            let (first, last): (i64, i64) = (row.get(0)?, row.get(1)?);
            if id > last {
                return Ok(None);
            }
            let sizes = Sizes::new(first, last, row.get_ref(3)?.as_blob()?)?;
            let bodies = decode(first, row.get(4)?, row.get_ref(5)?.as_blob()?, &sizes, row.get(6)?)?;
            let offset: usize = (first..id).map(|i| sizes.len_of(i)).sum();
            let body = bodies
                .get(offset..offset + sizes.len_of(id))
                .ok_or_else(|| damaged(first, "bodies shorter than sizes"))?;
            Ok(Some((row.get::<_, String>(2)?, body.to_vec())))
        })
        .optional()?;
    Ok(row.flatten())
}

/// When the first event after `after` was stored (ms since the epoch), if any is.
pub(super) fn first_collected_after(conn: &Connection, after: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT collected_ms FROM pages
         WHERE first_id >= COALESCE((SELECT first_id FROM pages WHERE first_id <= ?1 + 1
                                     ORDER BY first_id DESC LIMIT 1), 0)
           AND last_id > ?1
         ORDER BY first_id LIMIT 1",
    )?
    .query_row([after], |r| r.get(0))
    .optional()
}

/// The last id issued and the purge mark. Never below a stored row's last id, a sink's cursor or
/// the purge mark: after a salvage that lost `event_ids` (README "Damaged state"), an id at or
/// below one of them would be skipped by every sink. `open_connection` also stores this floor
/// (`ENSURE_EVENT_IDS`) before the cursors that gave it can be dropped.
pub(super) fn ids(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(
        "SELECT MAX(COALESCE((SELECT issued FROM event_ids), 0),
                    COALESCE((SELECT MAX(last_id) FROM pages), 0),
                    COALESCE((SELECT MAX(last_id) FROM sink_cursors), 0),
                    COALESCE((SELECT purged FROM event_ids), 0)),
                COALESCE((SELECT purged FROM event_ids), 0)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The purge mark: every event at or below it has left.
pub(super) fn purged(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE((SELECT purged FROM event_ids), 0)")?.query_row([], |r| r.get(0))
}

/// Records the last id issued (inside the transaction that stored it).
pub(super) fn set_issued(tx: &Connection, issued: i64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE event_ids SET issued = MAX(issued, ?1)")?.execute([issued])?;
    Ok(())
}

/// Everything at or below `floor` leaves: the rows wholly below it are deleted and the purge
/// mark hides the rest. Returns the body bytes that left.
pub(super) fn purge_through(tx: &Connection, floor: i64) -> rusqlite::Result<u64> {
    let purged = purged(tx)?;
    if floor <= purged {
        return Ok(0);
    }
    let (_, freed) = span(tx, purged, floor)?;
    tx.prepare_cached("DELETE FROM pages WHERE first_id <= ?1 AND last_id <= ?1")?.execute([floor])?;
    tx.prepare_cached("UPDATE event_ids SET purged = ?1")?.execute([floor])?;
    Ok(freed)
}

/// A row's `sizes`: each event's body length, 4 bytes little-endian, one per id.
struct Sizes<'a> {
    first: i64,
    raw: &'a [u8],
}

impl<'a> Sizes<'a> {
    /// Checked against the row's ids: one size each, and no more than a row ever holds.
    fn new(first: i64, last: i64, raw: &'a [u8]) -> rusqlite::Result<Self> {
        let count = last.checked_sub(first).and_then(|d| d.checked_add(1)).and_then(|n| usize::try_from(n).ok());
        match count {
            Some(n) if (1..=ROW_EVENTS).contains(&n) && raw.len() == n * 4 => Ok(Sizes { first, raw }),
            _ => Err(damaged(first, "sizes do not match its ids")),
        }
    }

    fn len_of(&self, id: i64) -> usize {
        let at = usize::try_from(id - self.first).unwrap_or(0) * 4;
        self.raw.get(at..at + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn total(&self) -> usize {
        self.raw.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).sum()
    }
}

/// The concatenated bodies of a row, checked against its sizes and its checksum (`None`: a row
/// stored before version 10, which has none).
fn decode<'b>(
    first: i64,
    codec: i64,
    stored: &'b [u8],
    sizes: &Sizes<'_>,
    sum: Option<i64>,
) -> rusqlite::Result<&'b [u8]> {
    match codec {
        CODEC_PLAIN if stored.len() == sizes.total() => {}
        CODEC_PLAIN => return Err(damaged(first, "bodies do not match their sizes")),
        other => return Err(damaged(first, &format!("unknown codec {other}"))),
    }
    if sum.is_some_and(|sum| sum != crc(sizes.raw, stored)) {
        return Err(damaged(first, "its bytes do not match their checksum"));
    }
    Ok(stored)
}

/// A row's checksum (`pages.crc`): the CRC-32 of its `sizes` then its `body`, as stored (a dead
/// letter's, `dead_letters.crc`: of its `raw` alone, `sizes` empty).
pub(super) fn crc(sizes: &[u8], body: &[u8]) -> i64 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(sizes);
    hasher.update(body);
    i64::from(hasher.finalize())
}

/// Every stored row checked as a read checks it (its sizes, codec and checksum), and every dead
/// letter against its checksum, one at a time: at open, so that a damaged row is refused before
/// anything is delivered (or replayed) from it.
pub(super) fn verify(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT first_id, last_id, sizes, codec, body, crc FROM pages ORDER BY first_id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (first, last): (i64, i64) = (row.get(0)?, row.get(1)?);
        let sizes = Sizes::new(first, last, row.get_ref(2)?.as_blob()?)?;
        decode(first, row.get(3)?, row.get_ref(4)?.as_blob()?, &sizes, row.get(5)?)?;
    }
    let mut stmt = conn.prepare("SELECT id, raw, crc FROM dead_letters WHERE crc IS NOT NULL ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        check_dead_letter(row.get(0)?, row.get_ref(1)?.as_blob()?, row.get(2)?)?;
    }
    Ok(())
}

/// A dead letter's `raw` against its checksum (`None`: stored before version 10, not checked).
pub(super) fn check_dead_letter(id: i64, raw: &[u8], sum: Option<i64>) -> rusqlite::Result<()> {
    if sum.is_some_and(|sum| sum != crc(&[], raw)) {
        return Err(damaged_row(format!("dead letter {id} is damaged: its bytes do not match their checksum")));
    }
    Ok(())
}

/// A stored row that does not hold together; [`super::sqlite_error`] makes it
/// [`super::QueueError::Damaged`], whichever call found it.
#[derive(Debug)]
pub(super) struct DamagedRow(pub(super) String);

impl std::fmt::Display for DamagedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DamagedRow {}

fn damaged(first: i64, what: &str) -> rusqlite::Error {
    damaged_row(format!("the stored events from id {first} are damaged: {what}"))
}

/// The error of a stored row or dead letter that does not hold together, saying so in `what`.
fn damaged_row(what: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(DamagedRow(what)))
}

fn too_large(id: i64, len: usize) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(format!("event {id} has a body of {len} bytes, over 4 GiB").into())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::{ROW_BYTES, ROW_EVENTS};
    use crate::queue::tests::*;
    use crate::queue::*;

    fn rows(dir: &std::path::Path) -> Vec<(i64, i64)> {
        let db = Connection::open(dir.join("auditrelay.db")).unwrap();
        let mut stmt = db.prepare("SELECT first_id, last_id FROM pages ORDER BY first_id").unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
    }

    /// A row holds at most `ROW_EVENTS` events and about `ROW_BYTES` of bodies; a page larger
    /// than that (a streamed answer committed at once) becomes several rows, read back whole
    /// and in order across them, whatever the batch size.
    #[tokio::test]
    async fn a_large_page_is_stored_in_bounded_rows_and_read_back_across_them() {
        let n = ROW_EVENTS * 2 + 7;
        let last = n as i64 + 3;
        for step in [1, 7, 100, 1000] {
            let dir = tempfile::tempdir().unwrap();
            let q = Queue::open(dir.path(), opts(&["s"], u64::MAX)).unwrap();
            let events: Vec<NewEvent> = (0..n).map(|i| ev(&format!("k{i}"), i as i64, &format!("body {i}"))).collect();
            q.store_page(page("a", events)).await.unwrap();
            let big = "x".repeat(ROW_BYTES / 2 + 1);
            let events = vec![ev("b1", 1, &big), ev("b2", 2, &big), ev("b3", 3, "small")];
            q.store_page(page("a", events)).await.unwrap();
            let row = ROW_EVENTS as i64;
            let expected =
                [(1, row), (row + 1, 2 * row), (2 * row + 1, n as i64), (last - 2, last - 2), (last - 1, last)];
            assert_eq!(rows(dir.path()), expected);
            let mut got = Vec::new();
            loop {
                let batch = q.read_batch("s", step, usize::MAX).await.unwrap();
                let Some(newest) = batch.last().map(|e| e.id) else { break };
                assert!(batch.len() <= step);
                got.extend(batch.iter().map(|e| (e.id, String::from_utf8(e.body.clone()).unwrap())));
                q.ack("s", newest).await.unwrap();
            }
            assert_eq!(got.len(), n + 3, "batches of {step}");
            for (i, (id, body)) in got.iter().take(n).enumerate() {
                assert_eq!((*id, body.as_str()), (i as i64 + 1, format!("body {i}").as_str()), "batches of {step}");
            }
            assert_eq!((got[n].1.len(), got[n + 2].clone()), (big.len(), (last, "small".to_owned())));
            assert!(rows(dir.path()).is_empty(), "every row left once passed");
            // A sink that joins now (cursor 0) gets nothing: what every sink passed is gone.
            q.set_sinks(vec!["s".into(), "late".into()]).await.unwrap();
            assert!(q.read_batch("late", 10, usize::MAX).await.unwrap().is_empty());
            assert_eq!(q.backlog("late").await.unwrap(), 0);
            q.close().await.unwrap();
        }
    }

    /// When every sink passed part of a row, that part leaves (count, bytes, reads, a sink that
    /// joins later) while the row stays for the rest; an event of the rest a sink refuses is
    /// still copied to the dead letters, one every sink passed is not.
    #[tokio::test(start_paused = true)]
    async fn a_row_passed_in_part_frees_that_part_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s1", "s2"], 20)).unwrap();
        let evs = vec![ev("a", 1, "aaaaa"), ev("b", 2, "bbbbb"), ev("c", 3, "ccccc"), ev("d", 4, "ddddd")];
        q.store_page(page("src", evs)).await.unwrap();
        assert!(q.is_full());
        q.ack("s1", 3).await.unwrap();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_room().await }
        });
        q.ack("s2", 2).await.unwrap();
        waiter.await.unwrap();
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (2, 10));
        assert_eq!(rows(dir.path()), [(1, 4)], "the row stays for c and d");
        // s2 refuses c (kept as a dead letter) and, again, a (every sink passed it: gone).
        let refused = vec![RefusedEvent { id: 1, reason: "again".into() }, RefusedEvent { id: 3, reason: "no".into() }];
        q.ack_refusing("s2", 3, refused).await.unwrap();
        let letters = q.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!((letters[0].key.as_str(), letters[0].raw.as_slice()), ("s2#3", &b"ccccc"[..]));
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (1, 10), "d and the dead letter");
        q.close().await.unwrap();
        let q = Queue::open(dir.path(), opts(&["s1", "s2", "new"], 20)).unwrap();
        assert_eq!(q.queued_bytes(), 10, "measured at open");
        assert_eq!(all(&q, "new").await, ["ddddd"], "a sink that joins gets only what is still queued");
        assert_eq!(all(&q, "s1").await, ["ddddd"]);
        q.ack("new", 4).await.unwrap();
        q.ack("s1", 4).await.unwrap();
        q.ack("s2", 4).await.unwrap();
        assert!(rows(dir.path()).is_empty());
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 5));
        q.close().await.unwrap();
    }

    /// A byte of a row's bodies changed in place (a bad block inside an overflow page, which
    /// `quick_check` does not read): the row no longer matches its checksum, and the database is
    /// refused at open as damaged, naming the file and the row. Found at a read as well, when the
    /// damage comes while the agent runs. A row stored before version 10 (no checksum) is read.
    #[tokio::test]
    async fn a_row_changed_in_place_fails_its_checksum_at_open_and_at_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let damage = "UPDATE pages SET body = CAST(replace(CAST(body AS TEXT), 'bravo', 'brave') AS BLOB)";
        stored_then(dir.path(), vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")], damage).await;
        let err = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap_err();
        assert!(matches!(err, QueueError::Damaged { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("from id 1") && msg.contains("checksum") && msg.contains("auditrelay.db"), "{msg}");

        // Damaged while open: the read that meets it fails; no changed body is delivered.
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("src", vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")])).await.unwrap();
        rusqlite::Connection::open(dir.path().join("auditrelay.db")).unwrap().execute_batch(damage).unwrap();
        let err = q.read_batch("s", 10, usize::MAX).await.unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        q.close().await.unwrap();

        // Without a checksum (stored before version 10): read as stored.
        let dir = tempfile::tempdir().unwrap();
        stored_then(dir.path(), vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")], "UPDATE pages SET crc = NULL").await;
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        assert_eq!(all(&q, "s").await, ["alpha", "bravo"]);
        q.close().await.unwrap();
    }

    /// A damaged row (sizes that do not match its ids or its bodies, an unknown codec) is an
    /// error naming the file and where the row starts, never a panic or a wrong event.
    #[tokio::test]
    async fn a_damaged_row_is_an_error_naming_it() {
        for (damage, expect) in [
            ("UPDATE pages SET sizes = X'0100'", "sizes do not match its ids"),
            ("UPDATE pages SET codec = 7", "unknown codec 7"),
            ("UPDATE pages SET body = X'00ff00ff00ff'", "bodies do not match their sizes"),
            ("UPDATE pages SET sizes = X'ffffff0001000000'", "the stored events from id 1 are damaged"),
            ("UPDATE pages SET last_id = first_id + 4611686018427387904", "sizes do not match its ids"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            stored_then(dir.path(), vec![ev("a", 1, "a"), ev("b", 2, "b")], damage).await;
            // Sizes that do not match the ids or the bodies are found when the queue is measured
            // at open (the agent refuses to start, with the recovery steps); a bad codec when read.
            let err = match Queue::open(dir.path(), opts(&["s"], 1000)) {
                Err(e) => {
                    assert!(matches!(e, QueueError::Damaged { .. }), "{damage}: {e:?}");
                    e.to_string()
                }
                Ok(q) => {
                    let err = q.read_batch("s", 10, usize::MAX).await.unwrap_err().to_string();
                    q.close().await.unwrap();
                    err
                }
            };
            assert!(err.contains(expect) && err.contains("auditrelay.db"), "{damage}: {err}");
        }
    }
}
