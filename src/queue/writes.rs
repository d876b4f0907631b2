//! What each grouped write does inside the writer's transaction (each in its own savepoint): a
//! page's events, dedupe keys, dead letters and checkpoint together (invariants 1 and 2), a
//! checkpoint time that never moves back, a staged chunk, and an ack that moves a cursor and
//! dead-letters what its sink refused.
//!
//! Grouping, savepoints, durability and replies are the writer's (`writer.rs`); the time stored
//! (`now_ms`: wall-clock ms, informational only, never compared) is read by the writer from the
//! agent's clock. Checkpoints are stored as the source serialized them, never read.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::cursors::delete_acked;
use super::pages::{self, RowWriter, set_issued};
use super::{NewDeadLetter, NewEvent, QueueError, RefusedEvent, SqliteContext, StoreOutcome};

/// Where a committing transaction takes its records from.
pub(super) enum Content<'a> {
    Memory {
        events: &'a [NewEvent],
        dead_letters: &'a [NewDeadLetter],
    },
    /// Everything staged for the source, in order (then the staging area is cleared).
    Staged,
}

/// One page (its events, or everything staged for its source) with its checkpoint, inside the
/// caller's transaction (invariants 1 and 2). Returns the outcome and the body bytes added;
/// `newest_id` follows the ids issued. `now_ms` is when the events were collected and the dead
/// letters and checkpoint written.
pub(super) fn write_page(
    tx: &Connection,
    source: &str,
    content: Content<'_>,
    checkpoint: Option<&str>,
    prune_dedupe_before_ms: Option<i64>,
    now_ms: i64,
    newest_id: &mut i64,
) -> rusqlite::Result<(StoreOutcome, u64)> {
    let mut outcome = StoreOutcome::default();
    // Prune before inserting: a late record older than the bound keeps its new key until the
    // next page, so a refetch of it is still recognised.
    if let Some(before) = prune_dedupe_before_ms {
        tx.execute("DELETE FROM dedupe WHERE source = ?1 AND event_time_ms < ?2", params![source, before])?;
        record_pruned(tx, source, before)?;
    }
    let mut key = tx.prepare_cached("INSERT OR IGNORE INTO dedupe (source, event_time_ms, key) VALUES (?1, ?2, ?3)")?;
    // A backfill range also skips what the source it backfills stored (while its key is kept):
    // that record went to the sinks already. Read only: the live source's keys stay its own.
    let live = super::backfilled_source(source);
    let mut live_has = match live {
        Some(_) => Some(tx.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM dedupe WHERE source = ?1 AND event_time_ms = ?2 AND key = ?3)",
        )?),
        None => None,
    };
    // Consecutive ids, after the last one issued (in this transaction or before).
    let mut rows = RowWriter::default();
    let mut next_id = *newest_id;
    let mut dead = tx.prepare_cached(
        "INSERT OR IGNORE INTO dead_letters (source, key, reason, raw, created_at_ms, crc)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    // Dead letters count against `max_bytes` too.
    let mut dead_bytes = 0u64;
    let mut put_event = |k: &str, time_ms: i64, body: &[u8]| -> rusqlite::Result<()> {
        if key.execute(params![source, time_ms, k])? == 0 {
            outcome.duplicates += 1;
            return Ok(());
        }
        if let (Some(live), Some(has)) = (live, live_has.as_mut())
            && has.query_row(params![live, time_ms, k], |r| r.get::<_, bool>(0))?
        {
            outcome.duplicates += 1;
            return Ok(());
        }
        next_id += 1;
        rows.push(tx, source, now_ms, next_id, body)?;
        outcome.stored += 1;
        Ok(())
    };
    match content {
        Content::Memory { events, dead_letters } => {
            for e in events {
                put_event(&e.dedupe_key, e.event_time_ms, &e.body)?;
            }
            for d in dead_letters {
                let stored = dead.execute(params![source, d.key, d.reason, d.raw, now_ms, pages::crc(&[], &d.raw)])?;
                outcome.dead_lettered += stored;
                dead_bytes += (stored as u64) * d.raw.len() as u64;
            }
        }
        Content::Staged => {
            let mut staged = tx.prepare_cached(
                "SELECT dead, key, event_time_ms, body, reason FROM staged WHERE source = ?1 ORDER BY seq",
            )?;
            let mut rows = staged.query([source])?;
            while let Some(row) = rows.next()? {
                let (is_dead, k, time_ms): (bool, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
                let body = row.get_ref(3)?.as_blob()?;
                if is_dead {
                    let reason: String = row.get(4)?;
                    let stored = dead.execute(params![source, k, reason, body, now_ms, pages::crc(&[], body)])?;
                    outcome.dead_lettered += stored;
                    dead_bytes += (stored as u64) * body.len() as u64;
                } else {
                    put_event(&k, time_ms, body)?;
                }
            }
            tx.execute("DELETE FROM staged WHERE source = ?1", [source])?;
        }
    }
    let added = rows.finish(tx)?;
    if next_id != *newest_id {
        set_issued(tx, next_id)?;
        *newest_id = next_id;
    }
    if let Some(state) = checkpoint {
        tx.execute(
            "INSERT INTO checkpoints (source, state, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (source) DO UPDATE
             SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            params![source, state, now_ms],
        )?;
    }
    Ok((outcome, added + dead_bytes))
}

/// Remembers that `source`'s dedupe keys before `before_ms` are gone (the largest bound ever
/// pruned: a smaller one later deletes nothing more).
fn record_pruned(tx: &Connection, source: &str, before_ms: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO dedupe_pruned (source, before_ms) VALUES (?1, ?2)
         ON CONFLICT (source) DO UPDATE SET before_ms = MAX(before_ms, excluded.before_ms)",
        params![source, before_ms],
    )?;
    Ok(())
}

/// Records a checkpoint's `done_until` inside the caller's transaction, refusing one earlier than
/// the stored one (invariant 1: a checkpoint never moves backwards); `None` forgets it (an
/// operator's explicit `queue set-checkpoint`). The refusal is the caller's: its savepoint is
/// rolled back, so nothing of the page is stored.
pub(super) fn write_progress(
    tx: &Connection,
    path: &Path,
    source: &str,
    done_until_ms: Option<i64>,
) -> Result<(), QueueError> {
    let Some(new_ms) = done_until_ms else {
        tx.execute("DELETE FROM source_progress WHERE source = ?1", [source]).op(path, "store a page")?;
        return Ok(());
    };
    let stored: Option<i64> = tx
        .query_row("SELECT done_until_ms FROM source_progress WHERE source = ?1", [source], |r| r.get(0))
        .optional()
        .op(path, "store a page")?;
    if let Some(stored_ms) = stored.filter(|stored| *stored > new_ms) {
        let source_name = source.to_owned();
        return Err(QueueError::CheckpointBackwards { path: path.to_owned(), source_name, stored_ms, new_ms });
    }
    tx.execute(
        "INSERT INTO source_progress (source, done_until_ms) VALUES (?1, ?2)
         ON CONFLICT (source) DO UPDATE SET done_until_ms = excluded.done_until_ms",
        params![source, new_ms],
    )
    .op(path, "store a page")?;
    Ok(())
}

/// Appends a chunk to the source's staging area inside the caller's transaction.
pub(super) fn write_stage(
    tx: &Connection,
    source: &str,
    events: &[NewEvent],
    dead_letters: &[NewDeadLetter],
) -> rusqlite::Result<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO staged (source, dead, key, event_time_ms, body, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for e in events {
        put.execute(params![source, false, e.dedupe_key, e.event_time_ms, e.body, None::<String>])?;
    }
    for d in dead_letters {
        put.execute(params![source, true, d.key, 0, d.raw, d.reason])?;
    }
    Ok(())
}

/// Moves `sink`'s cursor to `upto` inside the caller's transaction, dead-letters the events it
/// refused, and deletes what every sink has passed; returns the dead-letter bytes added and the
/// event body bytes freed (both count against `max_bytes`).
pub(super) fn write_ack(
    tx: &Connection,
    sink: &str,
    upto: i64,
    refused: &[RefusedEvent],
    now_ms: i64,
) -> rusqlite::Result<(u64, u64)> {
    let mut added = 0u64;
    if !refused.is_empty() {
        // Copied from its stored row, before the delete below can remove it. An event this sink
        // already passed (or that is gone) is not copied twice: the key is unique.
        let mut copy = tx.prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (source, key, reason, raw, created_at_ms, sink, crc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        // Below the purge mark an event is gone, even if its row is still stored.
        let purged = pages::purged(tx)?;
        for r in refused.iter().filter(|r| r.id <= upto && r.id > purged) {
            let Some((source, body)) = pages::event(tx, r.id)? else { continue };
            let key = format!("{sink}#{}", r.id);
            let stored = copy.execute(params![source, key, r.reason, body, now_ms, sink, pages::crc(&[], &body)])?;
            added += (stored as u64) * body.len() as u64;
        }
    }
    tx.execute("UPDATE sink_cursors SET last_id = MAX(last_id, ?2) WHERE sink = ?1", params![sink, upto])?;
    Ok((added, delete_acked(tx)?))
}

#[cfg(test)]
mod tests {
    use crate::queue::tests::*;
    use crate::queue::*;

    /// Issue 18 point 4: a backfill range (`<live>.backfill.<from>-<until>`) skips a record the
    /// live source stored (its event went to the sinks already), streamed pages too; the live
    /// source's keys are only read: it has no history from the range, and a record the range
    /// stored first is still stored by the live source (it never reads the range's keys).
    #[tokio::test]
    async fn a_backfill_range_skips_what_the_live_source_stored_and_never_feeds_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1 << 20)).unwrap();
        let range = "live.backfill.20260317T000000Z-20260318T000000Z";
        assert_eq!(backfilled_source(range), Some("live"));
        for other in ["live", "live.backfill", "live.backfill.2026-2027", ".backfill.20260317T000000Z-20260318T000000Z"]
        {
            assert_eq!(backfilled_source(other), None, "{other}");
        }
        let out = q.store_page(page("live", vec![ev("k1", 1, "live one"), ev("k2", 2, "live two")])).await.unwrap();
        assert_eq!(out.stored, 2);
        // The same record at another time is another record; a new one is stored.
        let out = q.store_page(page(range, vec![ev("k1", 1, "b1"), ev("k2", 5, "b2"), ev("k3", 3, "b3")])).await;
        assert_eq!(out.unwrap(), StoreOutcome { stored: 2, duplicates: 1, dead_lettered: 0 });
        q.stage(range, vec![ev("k2", 2, "b2 again"), ev("k4", 4, "b4")], vec![]).await.unwrap();
        let out = q.commit_staged(range, Some("{}".into()), None).await.unwrap();
        assert_eq!(out, StoreOutcome { stored: 1, duplicates: 1, dead_lettered: 0 });
        assert_eq!(all(&q, "s").await, ["live one", "live two", "b2", "b3", "b4"]);

        // Never poisoned: a source with nothing of its own has no history, and stores what
        // only a range (a source of another name) stored.
        assert!(!q.has_history("other").await.unwrap());
        let out = q.store_page(page("live", vec![ev("k3", 3, "live three")])).await.unwrap();
        assert_eq!(out.stored, 1, "the live source's own keys decide");
        q.close().await.unwrap();
    }

    /// How far a source's dedupe keys were pruned is kept (the largest bound) for `backfill`.
    #[tokio::test]
    async fn the_largest_prune_bound_is_recorded_per_source() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1 << 20)).unwrap();
        for bound in [20, 15] {
            let p = PageWrite { prune_dedupe_before_ms: Some(bound), ..page("live", vec![ev("k", 30, "x")]) };
            q.store_page(p).await.unwrap();
        }
        q.store_page(page("other", vec![ev("k", 30, "y")])).await.unwrap();
        q.close().await.unwrap();
        let mut view = QueueView::open(dir.path()).unwrap();
        assert_eq!(view.dedupe_pruned_before("live").unwrap(), Some(20));
        assert_eq!(view.dedupe_pruned_before("other").unwrap(), None);
        assert!(view.has_dedupe_keys("live").unwrap() && !view.has_dedupe_keys("never").unwrap());
    }

    #[tokio::test]
    async fn rows_leave_only_after_every_sink_acked() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["fast", "slow"], 1 << 20)).unwrap();
        let mut news = q.subscribe_new_events();
        let evs = vec![ev("k1", 1, "one"), ev("k2", 2, "two"), ev("k3", 3, "three")];
        let out = q.store_page(page("okta", evs)).await.unwrap();
        assert_eq!(out, StoreOutcome { stored: 3, duplicates: 0, dead_lettered: 0 });
        assert!(news.has_changed().unwrap());
        let newest = *news.borrow_and_update();
        assert_eq!(q.queued_bytes(), 11);

        let batch = q.read_batch("fast", 10, usize::MAX).await.unwrap();
        assert_eq!(bodies(&batch), ["one", "two", "three"]);
        assert_eq!(batch[2].id, newest);
        q.ack("fast", newest).await.unwrap();
        q.ack("fast", 1).await.unwrap(); // never backwards
        assert_eq!(q.backlog("fast").await.unwrap(), 0);
        assert_eq!(q.stats().await.unwrap().events, 3, "slow has not acked");
        assert_eq!(all(&q, "slow").await, ["one", "two", "three"]);

        q.ack("slow", batch[0].id).await.unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.events, stats.bytes, q.queued_bytes()), (2, 8, 8));
        assert_eq!(all(&q, "slow").await, ["two", "three"]);
        q.ack("slow", newest).await.unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.events, stats.bytes), (0, 0));
        assert_eq!(stats.sink_cursors, [("fast".into(), newest), ("slow".into(), newest)]);
        assert!(matches!(q.ack("nobody", 1).await, Err(QueueError::UnknownSink { .. })));
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn ids_are_not_reused_after_the_queue_emptied_and_acks_stop_at_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("okta", vec![ev("a", 1, "a")])).await.unwrap();
        q.ack("s", i64::MAX).await.unwrap();
        q.close().await.unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        assert_eq!(*q.subscribe_new_events().borrow(), 1);
        q.store_page(page("okta", vec![ev("b", 2, "b")])).await.unwrap();
        let batch = q.read_batch("s", 10, 1000).await.unwrap();
        assert_eq!((bodies(&batch), batch[0].id), (vec!["b".to_string()], 2));
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn duplicates_are_skipped_within_a_page_across_pages_and_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let first = vec![ev("a", 1, "a"), ev("b", 2, "b"), ev("a", 1, "a again")];
        let out = q.store_page(page("okta", first)).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (2, 1));
        let out = q.store_page(page("okta", vec![ev("b", 2, "b"), ev("c", 3, "c")])).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 1));
        // Keys are per source.
        let out = q.store_page(page("github", vec![ev("a", 1, "gh a")])).await.unwrap();
        assert_eq!(out.stored, 1);
        q.close().await.unwrap();

        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let out = q.store_page(page("okta", vec![ev("a", 1, "a"), ev("d", 4, "d")])).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 1));
        assert_eq!(all(&q, "s").await, ["a", "b", "c", "gh a", "d"]);
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn checkpoint_is_committed_with_its_events() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        assert_eq!(q.checkpoint("okta").await.unwrap(), None);
        let mut p = page("okta", vec![ev("a", 1, "a"), ev("b", 2, "b")]);
        p.checkpoint = Some(r#"{"until":2}"#.into());
        q.store_page(p).await.unwrap();
        // A page without a checkpoint leaves it alone; an empty page may still advance it.
        q.store_page(page("okta", vec![ev("c", 3, "c")])).await.unwrap();
        q.close().await.unwrap();

        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        assert_eq!(q.checkpoint("okta").await.unwrap().as_deref(), Some(r#"{"until":2}"#));
        assert_eq!(q.backlog("s").await.unwrap(), 3);
        let mut p = page("okta", vec![]);
        p.checkpoint = Some(r#"{"until":9}"#.into());
        q.store_page(p).await.unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.checkpoints, [("okta".into(), r#"{"until":9}"#.into())]);
        q.close().await.unwrap();
    }

    /// Invariant 1: a checkpoint never moves backwards. A page whose checkpoint time is earlier
    /// than the stored one is refused whole (its events too), in memory or staged; an equal or
    /// later one passes; an operator's write without a time forgets the stored one.
    #[tokio::test]
    async fn a_checkpoint_that_moves_backwards_is_refused_with_its_page() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1_000_000)).unwrap();
        let at = |ms: i64, events: Vec<NewEvent>| PageWrite {
            checkpoint: Some(format!("{{\"until\":{ms}}}")),
            done_until_ms: Some(ms),
            ..page("df", events)
        };
        q.store_page(at(2000, vec![ev("a", 1, "a")])).await.unwrap();
        q.store_page(at(2000, vec![])).await.unwrap();
        let err = q.store_page(at(1000, vec![ev("b", 2, "b")])).await.unwrap_err();
        assert!(matches!(err, QueueError::CheckpointBackwards { stored_ms: 2000, new_ms: 1000, .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("source df") && msg.contains("backwards"), "{msg}");
        assert_eq!(q.checkpoint("df").await.unwrap().as_deref(), Some(r#"{"until":2000}"#));
        assert_eq!(all(&q, "s").await, ["a"], "the refused page stored nothing");
        q.stage("df", vec![ev("c", 3, "c")], vec![]).await.unwrap();
        let err = q.commit_staged_at("df", Some("{}".into()), Some(1999), None).await.unwrap_err();
        assert!(matches!(err, QueueError::CheckpointBackwards { .. }), "{err}");
        q.commit_staged_at("df", Some(r#"{"until":3000}"#.into()), Some(3000), None).await.unwrap();
        assert_eq!(all(&q, "s").await, ["a", "c"]);
        // `queue set-checkpoint`: no time, on purpose earlier; then the source goes on from there.
        q.store_page(PageWrite { done_until_ms: None, ..at(500, vec![]) }).await.unwrap();
        q.store_page(at(600, vec![])).await.unwrap();
        assert_eq!(q.checkpoint("df").await.unwrap().as_deref(), Some(r#"{"until":600}"#));
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn staged_records_enter_the_queue_only_when_committed_with_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1_000_000)).unwrap();
        q.store_page(page("astro", vec![ev("old", 1, "old")])).await.unwrap();
        let dead = || vec![NewDeadLetter { key: "bad".into(), reason: "not JSON".into(), raw: b"{x".to_vec() }];
        q.stage("astro", vec![ev("a", 2, "a"), ev("old", 1, "old")], dead()).await.unwrap();
        q.stage("astro", vec![ev("b", 3, "b"), ev("a", 2, "a")], vec![]).await.unwrap();
        // Staged records are invisible: sinks see only the earlier page.
        assert_eq!(all(&q, "s").await, ["old"]);
        // A broken stream: discard, and nothing of it ever reaches the queue.
        assert_eq!(q.discard_staged("astro").await.unwrap(), 5);
        let none = q.commit_staged("astro", Some("{\"w\":0}".into()), None).await.unwrap();
        assert_eq!(none, StoreOutcome::default());

        q.stage("astro", vec![ev("a", 2, "a"), ev("old", 1, "old")], dead()).await.unwrap();
        q.stage("astro", vec![ev("b", 3, "b"), ev("a", 2, "a")], vec![]).await.unwrap();
        q.stage("other", vec![ev("z", 9, "z")], vec![]).await.unwrap();
        let outcome = q.commit_staged("astro", Some("{\"w\":1}".into()), None).await.unwrap();
        assert_eq!(outcome, StoreOutcome { stored: 2, duplicates: 2, dead_lettered: 1 });
        assert_eq!(all(&q, "s").await, ["old", "a", "b"]);
        assert_eq!(q.checkpoint("astro").await.unwrap().as_deref(), Some("{\"w\":1}"));
        assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
        // Another source's staging is untouched, and survives a reopen until discarded.
        q.close().await.unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1_000_000)).unwrap();
        assert_eq!(q.discard_staged("other").await.unwrap(), 1);
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_refetched_bad_record_is_dead_lettered_once() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let bad = |reason: &str| NewDeadLetter { key: "x".into(), reason: reason.into(), raw: b"{".to_vec() };
        for (reason, expected) in [("truncated JSON", 1), ("again", 0)] {
            let p = PageWrite { dead_letters: vec![bad(reason)], ..page("okta", vec![]) };
            assert_eq!(q.store_page(p).await.unwrap().dead_lettered, expected);
        }
        let letters = q.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        let (l, stats) = (&letters[0], q.stats().await.unwrap());
        assert_eq!((l.source.as_str(), l.key.as_str(), l.reason.as_str()), ("okta", "x", "truncated JSON"));
        assert_eq!((l.raw.as_slice(), stats.dead_letters, stats.events), (&b"{"[..], 1, 0));
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn prune_forgets_only_this_sources_older_keys() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("okta", vec![ev("old", 10, "1"), ev("new", 20, "2")])).await.unwrap();
        q.store_page(page("github", vec![ev("old", 10, "3")])).await.unwrap();
        let p = PageWrite { prune_dedupe_before_ms: Some(15), ..page("okta", vec![]) };
        q.store_page(p).await.unwrap();
        let refetch = || vec![ev("old", 10, "1"), ev("new", 20, "2")];
        let out = q.store_page(page("okta", refetch())).await.unwrap();
        assert_eq!((out.stored, out.duplicates), (1, 1), "old key forgotten, new kept");
        let out = q.store_page(page("github", vec![ev("old", 10, "3")])).await.unwrap();
        assert_eq!(out.duplicates, 1, "other sources untouched");
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn an_ack_refusing_events_dead_letters_them_with_the_sink_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["syslog", "file"], 1 << 20)).unwrap();
        q.store_page(page("okta", vec![ev("a", 1, "small"), ev("b", 2, "huge"), ev("c", 3, "small2")])).await.unwrap();
        let batch = q.read_batch("syslog", 10, 1 << 20).await.unwrap();
        let huge = batch[1].id;
        let refused = vec![RefusedEvent { id: huge, reason: "too large".into() }];
        q.ack_refusing("syslog", batch[2].id, refused.clone()).await.unwrap();
        // Acking again (a retried ack) records nothing twice.
        q.ack_refusing("syslog", batch[2].id, refused).await.unwrap();
        let letters = q.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        let l = &letters[0];
        assert_eq!((l.source.as_str(), l.sink.as_deref(), l.reason.as_str()), ("okta", Some("syslog"), "too large"));
        assert_eq!((l.raw.as_slice(), l.key.clone()), (&b"huge"[..], format!("syslog#{huge}")));
        let counts = q.dead_letter_counts().await.unwrap();
        assert_eq!(counts, [DeadLetterCount { source: "okta".into(), sink: Some("syslog".into()), count: 1 }]);
        // The other sink still gets every event, the refused one included.
        assert_eq!(all(&q, "file").await, ["small", "huge", "small2"]);
        assert_eq!(q.backlog("syslog").await.unwrap(), 0);
    }
}
