//! Dead letters for the operator commands (`auditrelay queue replay`, `purge-dead-letters`,
//! `dead-letters`): which ones a selection picks, and, through the writer thread, replaying them
//! as new events and purging them.
//!
//! Recording them is the writes' (`writes.rs`: a source's unmappable record, a sink's refusal);
//! reading an event time out of a body is the caller's: the queue does not interpret bodies.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::pages::{RowWriter, check_dead_letter, set_issued};
use super::writer::{Command, Writer};
use super::{DeadLetter, DeadLetterCount, Queue, QueueError, SqliteContext, to_u64};

/// Which dead letters an operator command acts on: every criterion given must hold; none given
/// selects them all (callers decide whether that needs saying twice, like `--all`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterSelection {
    /// Only these ids (empty: any).
    pub ids: Vec<i64>,
    /// Only this source's.
    pub source: Option<String>,
    /// Only events this sink refused (which excludes records a source could not map).
    pub sink: Option<String>,
    /// Only those recorded before this time (ms since the epoch).
    pub before_ms: Option<i64>,
}

/// A dead letter to put back into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequeueItem {
    pub dead_letter_id: i64,
}

/// A dead letter that became a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeued {
    pub dead_letter_id: i64,
    pub event_id: i64,
}

/// `?1`: a JSON array of ids or NULL; `?2` source; `?3` sink; `?4` created before (ms).
const SELECTED: &str = "(?1 IS NULL OR id IN (SELECT value FROM json_each(?1)))
    AND (?2 IS NULL OR source = ?2) AND (?3 IS NULL OR sink = ?3) AND (?4 IS NULL OR created_at_ms < ?4)";

impl DeadLetterSelection {
    fn params(&self) -> (Option<String>, Option<&str>, Option<&str>, Option<i64>) {
        let ids = (!self.ids.is_empty())
            .then(|| format!("[{}]", self.ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")));
        (ids, self.source.as_deref(), self.sink.as_deref(), self.before_ms)
    }
}

/// The selected dead letters, oldest first, at most `limit`.
pub(super) fn read_dead_letters(
    conn: &Connection,
    selection: &DeadLetterSelection,
    limit: Option<usize>,
) -> rusqlite::Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT id, source, key, reason, raw, created_at_ms, sink FROM dead_letters WHERE {SELECTED}
         ORDER BY id LIMIT ?5"
    );
    let (ids, source, sink, before) = selection.params();
    // SQLite reads a negative LIMIT as none.
    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![ids, source, sink, before, limit], dead_letter_row)?;
    rows.collect()
}

/// A row of `SELECT id, source, key, reason, raw, created_at_ms, sink FROM dead_letters`.
pub(super) fn dead_letter_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        source: r.get(1)?,
        key: r.get(2)?,
        reason: r.get(3)?,
        raw: r.get(4)?,
        created_at_ms: r.get(5)?,
        sink: r.get(6)?,
    })
}

pub(super) fn count_dead_letters(conn: &Connection, selection: &DeadLetterSelection) -> rusqlite::Result<u64> {
    let (ids, source, sink, before) = selection.params();
    let sql = format!("SELECT COUNT(*) FROM dead_letters WHERE {SELECTED}");
    conn.query_row(&sql, params![ids, source, sink, before], |r| r.get(0)).map(to_u64)
}

pub(super) fn dead_letter_counts_of(conn: &Connection) -> rusqlite::Result<Vec<DeadLetterCount>> {
    let mut stmt =
        conn.prepare("SELECT source, sink, COUNT(*) FROM dead_letters GROUP BY source, sink ORDER BY source, sink")?;
    let rows = stmt.query_map([], |r| {
        Ok(DeadLetterCount { source: r.get(0)?, sink: r.get(1)?, count: r.get::<_, i64>(2).map(to_u64)? })
    })?;
    rows.collect()
}

impl Queue {
    /// The selected dead letters, oldest first (through the writer, for a command that then
    /// replays or purges them).
    pub async fn select_dead_letters(&self, selection: DeadLetterSelection) -> Result<Vec<DeadLetter>, QueueError> {
        self.call(|reply| Command::SelectDeadLetters { selection, reply }).await
    }

    /// ONE transaction: each listed dead letter that a sink refused becomes a new event (a new
    /// id, above every cursor, so every configured sink gets it again; collected now) and
    /// leaves the dead-letter table. Ids not found, and records a source could not map (they are
    /// not events), are skipped. Returns what was requeued, in the order given.
    pub async fn requeue_dead_letters(&self, items: Vec<RequeueItem>) -> Result<Vec<Requeued>, QueueError> {
        self.call(|reply| Command::RequeueDeadLetters { items, reply }).await
    }

    /// Deletes the selected dead letters; returns how many.
    pub async fn purge_dead_letters(&self, selection: DeadLetterSelection) -> Result<u64, QueueError> {
        self.call(|reply| Command::PurgeDeadLetters { selection, reply }).await
    }
}

impl Writer {
    pub(super) fn select_dead_letters(&self, selection: &DeadLetterSelection) -> Result<Vec<DeadLetter>, QueueError> {
        read_dead_letters(&self.conn, selection, None).op(&self.path, "read dead letters")
    }

    pub(super) fn requeue_dead_letters(&mut self, items: &[RequeueItem]) -> Result<Vec<Requeued>, QueueError> {
        let (mut requeued, mut newest_id, now_ms) = (Vec::new(), self.newest_id, self.now_ms());
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).op(&self.path, "begin a replay")?;
        let mut write = || -> rusqlite::Result<()> {
            let mut select =
                tx.prepare_cached("SELECT source, raw, crc FROM dead_letters WHERE id = ?1 AND sink IS NOT NULL")?;
            let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
            // Each replayed event is stored anew (ids after every cursor), in rows of its source's.
            let mut rows = RowWriter::default();
            for item in items {
                let row = select
                    .query_row([item.dead_letter_id], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Option<i64>>(2)?))
                    })
                    .optional()?;
                let Some((source, raw, sum)) = row else { continue };
                // Damaged bytes must not be stored anew under a checksum of their own.
                check_dead_letter(item.dead_letter_id, &raw, sum)?;
                delete.execute([item.dead_letter_id])?;
                newest_id += 1;
                rows.push(&tx, &source, now_ms, newest_id, &raw)?;
                requeued.push(Requeued { dead_letter_id: item.dead_letter_id, event_id: newest_id });
            }
            rows.finish(&tx)?;
            if newest_id != self.newest_id {
                set_issued(&tx, newest_id)?;
            }
            Ok(())
        };
        write().op(&self.path, "replay dead letters")?;
        tx.commit().op(&self.path, "commit a replay")?;
        self.newest_id = newest_id;
        // `queued_bytes` is unchanged: the bytes moved from a dead letter to an event.
        self.watches.newest_id.send_if_modified(|id| std::mem::replace(id, newest_id) != newest_id);
        Ok(requeued)
    }

    pub(super) fn purge_dead_letters(&mut self, selection: &DeadLetterSelection) -> Result<u64, QueueError> {
        let (ids, source, sink, before) = selection.params();
        let sql = format!("DELETE FROM dead_letters WHERE {SELECTED} RETURNING length(raw)");
        let purge = || -> rusqlite::Result<(u64, u64)> {
            let mut statement = self.conn.prepare(&sql)?;
            let mut lengths = statement.query_map(params![ids, source, sink, before], |r| r.get::<_, i64>(0))?;
            lengths.try_fold((0u64, 0u64), |(n, bytes), len| Ok((n + 1, bytes + to_u64(len?))))
        };
        let (purged, freed) = purge().op(&self.path, "purge dead letters")?;
        // The room they took under `max_bytes` is free again.
        self.watches.bytes.send_modify(|b| *b = b.saturating_sub(freed));
        Ok(purged)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;

    use crate::queue::tests::*;
    use crate::queue::*;

    /// Events "a", "b", "c" of "okta"; sink "s" refused "b" and acked all three (so the queue is
    /// empty); one unmappable record of "okta" and one of "github". Dead letters: 1 and 2 the
    /// records, 3 the refused event.
    pub(in crate::queue) async fn with_dead_letters(dir: &Path) -> Queue {
        let q = Queue::open(dir, opts(&["s", "t"], 1 << 20)).unwrap();
        let bad = |key: &str| NewDeadLetter { key: key.into(), reason: "no id".into(), raw: b"{}".to_vec() };
        let p = PageWrite {
            dead_letters: vec![bad("x")],
            ..page("okta", vec![ev("a", 1, "a"), ev("b", 2, "bb"), ev("c", 3, "c")])
        };
        q.store_page(p).await.unwrap();
        q.store_page(PageWrite { dead_letters: vec![bad("y")], ..page("github", vec![]) }).await.unwrap();
        for sink in ["s", "t"] {
            let refused = if sink == "s" { vec![RefusedEvent { id: 2, reason: "too large".into() }] } else { vec![] };
            q.ack_refusing(sink, 3, refused).await.unwrap();
        }
        q
    }

    fn ids(letters: &[DeadLetter]) -> Vec<i64> {
        letters.iter().map(|l| l.id).collect()
    }

    #[tokio::test]
    async fn dead_letters_are_selected_by_id_source_sink_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let q = with_dead_letters(dir.path()).await;
        let view = QueueView::open(dir.path()).unwrap();
        let select = |selection: DeadLetterSelection| ids(&view.dead_letters(&selection, None).unwrap());
        let all = DeadLetterSelection::default();
        assert_eq!(select(all.clone()), [1, 2, 3]);
        assert_eq!(ids(&view.dead_letters(&all, Some(2)).unwrap()), [1, 2]);
        assert_eq!(select(DeadLetterSelection { ids: vec![3, 1, 99], ..all.clone() }), [1, 3]);
        assert_eq!(select(DeadLetterSelection { source: Some("okta".into()), ..all.clone() }), [1, 3]);
        assert_eq!(select(DeadLetterSelection { sink: Some("s".into()), ..all.clone() }), [3]);
        let okta_records = DeadLetterSelection { ids: vec![1, 2], source: Some("okta".into()), ..all.clone() };
        assert_eq!(select(okta_records.clone()), [1]);
        assert_eq!(view.count_dead_letters(&okta_records).unwrap(), 1);
        assert!(select(DeadLetterSelection { before_ms: Some(1), ..all.clone() }).is_empty());
        assert_eq!(select(DeadLetterSelection { before_ms: Some(i64::MAX), ..all.clone() }), [1, 2, 3]);
        assert_eq!(ids(&q.select_dead_letters(okta_records).await.unwrap()), [1]);
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_requeued_dead_letter_is_a_new_event_for_every_sink_and_leaves_the_table_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let q = with_dead_letters(dir.path()).await;
        let mut news = q.subscribe_new_events();
        news.borrow_and_update();
        // No event left, but three dead letters of 2 bytes each count against max_bytes.
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 6));
        let items = [3, 1, 99].map(|id| RequeueItem { dead_letter_id: id }).to_vec();
        // Only the refused event: 1 is a record no source could map, 99 does not exist.
        let requeued = q.requeue_dead_letters(items).await.unwrap();
        assert_eq!(requeued, [Requeued { dead_letter_id: 3, event_id: 4 }]);
        assert_eq!(*news.borrow_and_update(), 4, "sinks are woken");
        assert_eq!(q.queued_bytes(), 6, "the replayed bytes moved from a dead letter to an event");
        assert_eq!(ids(&q.dead_letters(10).await.unwrap()), [1, 2]);
        // Both sinks get it, the one that refused it too; then it leaves like any event.
        for sink in ["s", "t"] {
            let batch = q.read_batch(sink, 10, usize::MAX).await.unwrap();
            assert_eq!((bodies(&batch), batch[0].id), (vec!["bb".to_string()], 4), "{sink}");
            assert!(batch[0].collected_ms > 0);
            q.ack(sink, 4).await.unwrap();
        }
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 4), "the two unmappable records");
        // Replaying it again finds nothing: the dead letter is gone.
        assert!(q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: 3 }]).await.unwrap().is_empty());
        q.close().await.unwrap();
        // The new id survives a restart as the newest issued.
        let q = Queue::open(dir.path(), opts(&["s", "t"], 1 << 20)).unwrap();
        assert_eq!(*q.subscribe_new_events().borrow(), 4);
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn purge_deletes_only_the_selection() {
        let dir = tempfile::tempdir().unwrap();
        let q = with_dead_letters(dir.path()).await;
        let okta = DeadLetterSelection { source: Some("okta".into()), ..DeadLetterSelection::default() };
        let none = DeadLetterSelection { ids: vec![99], ..DeadLetterSelection::default() };
        assert_eq!(q.purge_dead_letters(none).await.unwrap(), 0);
        assert_eq!(q.purge_dead_letters(okta).await.unwrap(), 2);
        assert_eq!(ids(&q.dead_letters(10).await.unwrap()), [2]);
        assert_eq!(q.purge_dead_letters(DeadLetterSelection::default()).await.unwrap(), 1);
        assert!(q.dead_letters(10).await.unwrap().is_empty());
        q.close().await.unwrap();
    }
}
