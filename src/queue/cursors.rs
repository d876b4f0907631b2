//! Sink cursors: each configured sink's last acknowledged event id. They are reconciled with the
//! configured sinks (at open and on a reload), carried over to a sink's new name, and they
//! decide which events leave the queue: those every cursor is past, and no others.
//!
//! Moving a cursor on an ack is the writer's (`writes.rs`); this file keeps the set of cursors
//! right and says what they allow to be deleted.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};

#[cfg(doc)]
use super::Queue;
use super::pages;
use super::schema::SCHEMA_VERSION;
use super::{QueueError, SqliteContext, database_path};

/// Makes the cursor table hold exactly `sinks`: new ones start at 0, removed ones are deleted
/// (with a warning), then the events every remaining cursor is past are deleted (a removed
/// sink may have been the one holding them back). Returns the body bytes freed, and each
/// removed sink with the events it had not delivered (discarded for it); the caller counts
/// them once the transaction is committed.
pub(super) fn reconcile_cursors(
    tx: &Transaction<'_>,
    path: &Path,
    sinks: &BTreeSet<String>,
) -> Result<(u64, Vec<(String, u64)>), QueueError> {
    let known: Vec<String> = tx
        .prepare("SELECT sink FROM sink_cursors")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .op(path, "read sink cursors")?;
    let mut removed = Vec::new();
    for sink in known.iter().filter(|s| !sinks.contains(*s)) {
        let (events, bytes) = backlog_of(tx, sink).op(path, "measure a removed sink's backlog")?;
        tracing::warn!(sink, path = %path.display(), discarded_events = events, discarded_bytes = bytes,
            "sink is no longer configured; deleting its cursor so it does not hold queued events: the events it had not delivered are discarded for it");
        tx.execute("DELETE FROM sink_cursors WHERE sink = ?1", [sink]).op(path, "drop a cursor")?;
        removed.push((sink.clone(), events));
    }
    for sink in sinks {
        tx.execute("INSERT OR IGNORE INTO sink_cursors (sink, last_id) VALUES (?1, 0)", [sink])
            .op(path, "add a sink cursor")?;
    }
    let freed = delete_acked(tx).op(path, "delete acknowledged events")?;
    Ok((freed, removed))
}

/// The events (and their body bytes) queued after `sink`'s cursor.
pub(super) fn backlog_of(tx: &Connection, sink: &str) -> rusqlite::Result<(u64, u64)> {
    let cursor: Option<i64> =
        tx.query_row("SELECT last_id FROM sink_cursors WHERE sink = ?1", [sink], |r| r.get(0)).optional()?;
    let Some(cursor) = cursor else { return Ok((0, 0)) };
    pages::span(tx, cursor.max(pages::purged(tx)?), i64::MAX)
}

/// A sink's cursor carried over to its new name (`renamed_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRename {
    pub from: String,
    pub to: String,
    /// The id the renamed sink continues after.
    pub cursor: i64,
}

/// Moves each `(old, new)` sink's cursor and HEC channel to the new name. Idempotent: an old
/// name without a cursor (renamed at an earlier start, or never run) changes nothing. If both
/// names have a cursor, the new name keeps the lower one, so it skips nothing (at least once).
pub(super) fn apply_renames(
    tx: &Connection,
    path: &Path,
    renames: &[(String, String)],
) -> Result<Vec<SinkRename>, QueueError> {
    let mut done = Vec::new();
    for (from, to) in renames {
        let cursor = |sink: &str| {
            tx.query_row("SELECT last_id FROM sink_cursors WHERE sink = ?1", [sink], |r| r.get::<_, i64>(0))
                .optional()
                .op(path, "read a sink cursor")
        };
        let Some(old) = cursor(from)? else { continue };
        let at = cursor(to)?.map_or(old, |new| new.min(old));
        tx.execute(
            "INSERT INTO sink_cursors (sink, last_id) VALUES (?1, ?2)
             ON CONFLICT(sink) DO UPDATE SET last_id = excluded.last_id",
            params![to, at],
        )
        .op(path, "carry a sink cursor over")?;
        tx.execute("DELETE FROM sink_cursors WHERE sink = ?1", [from]).op(path, "drop a renamed cursor")?;
        let channels: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sink_channels')",
                [],
                |r| r.get(0),
            )
            .op(path, "look for the sink channels")?;
        if channels {
            // The HEC channel goes with the cursor: acknowledgements pending on it stay valid.
            tx.execute("UPDATE OR IGNORE sink_channels SET sink = ?2 WHERE sink = ?1", params![from, to])
                .op(path, "carry a sink channel over")?;
            tx.execute("DELETE FROM sink_channels WHERE sink = ?1", [from]).op(path, "drop a renamed channel")?;
        }
        done.push(SinkRename { from: from.clone(), to: to.clone(), cursor: at });
    }
    Ok(done)
}

/// Before the queue is opened with the new sink names (which drops the cursors of names no
/// longer configured), carries each `(old, new)` renamed sink's cursor and HEC channel over to
/// its new name in `state_dir`'s database. No database yet, or one of a newer schema (which
/// [`Queue::open`] then refuses): nothing to do. The caller holds the state directory's lock.
pub fn rename_sink_cursors(state_dir: &Path, renames: &[(String, String)]) -> Result<Vec<SinkRename>, QueueError> {
    let path = database_path(state_dir);
    if renames.is_empty() || !path.exists() {
        return Ok(Vec::new());
    }
    let mut conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|source| QueueError::Open { path: path.clone(), source })?;
    conn.busy_timeout(Duration::from_secs(5)).op(&path, "set the busy timeout")?;
    let found: i64 =
        conn.pragma_query_value(None, "user_version", |r| r.get(0)).op(&path, "read the schema version")?;
    if found > SCHEMA_VERSION || found == 0 {
        return Ok(Vec::new());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).op(&path, "begin a sink rename")?;
    let done = apply_renames(&tx, &path, renames)?;
    tx.commit().op(&path, "commit a sink rename")?;
    Ok(done)
}

/// A sink with a cursor in the database that the configuration no longer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanBacklog {
    pub sink: String,
    /// Events queued after its cursor, and their body bytes.
    pub events: u64,
    pub bytes: u64,
}

/// Deletes the events every remaining cursor is past; returns the body bytes freed. The cursor
/// table holds exactly the configured sinks (`open_connection` and `write_group` see to it).
/// With no sink configured nothing is deleted: nobody has taken the events yet.
pub(super) fn delete_acked(tx: &Connection) -> rusqlite::Result<u64> {
    let floor: Option<i64> = tx.query_row("SELECT MIN(last_id) FROM sink_cursors", [], |r| r.get(0))?;
    let Some(floor) = floor else { return Ok(0) };
    pages::purge_through(tx, floor)
}

#[cfg(test)]
mod tests {
    use crate::queue::tests::*;
    use crate::queue::*;

    #[tokio::test]
    async fn a_removed_sink_loses_its_cursor_and_stops_pinning_rows() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["kept", "gone"], 1000)).unwrap();
        q.store_page(page("okta", vec![ev("a", 1, "a"), ev("b", 2, "b")])).await.unwrap();
        q.ack("kept", 1).await.unwrap();
        assert_eq!(q.stats().await.unwrap().events, 2, "gone pins both");
        assert!(q.discarded_events().is_empty());
        q.close().await.unwrap();

        // "gone" no longer pins anything (its 2 events are counted as discarded for it);
        // "added" starts at 0 and gets what is still queued.
        let q = Queue::open(dir.path(), opts(&["kept", "added"], 1000)).unwrap();
        assert_eq!(q.discarded_events(), [("gone".to_owned(), 2)]);
        let stats = q.stats().await.unwrap();
        assert_eq!(stats.sink_cursors, [("added".into(), 0), ("kept".into(), 1)]);
        assert!(matches!(q.backlog("gone").await, Err(QueueError::UnknownSink { .. })));
        assert_eq!(all(&q, "added").await, ["a", "b"]);
        q.ack("added", 2).await.unwrap();
        assert_eq!(q.stats().await.unwrap().events, 1, "a deleted, b waits for kept");
        // Removed while open (a reload): counted too, added to what is counted already.
        q.set_sinks(vec!["kept".into()]).await.unwrap();
        assert_eq!(q.discarded_events(), [("added".to_owned(), 0), ("gone".to_owned(), 2)]);
        q.close().await.unwrap();

        let q = Queue::open(dir.path(), opts(&["kept"], 1000)).unwrap();
        assert!(q.discarded_events().is_empty(), "counted since the queue was opened");
        assert_eq!(q.stats().await.unwrap().events, 1);
        q.ack("kept", 2).await.unwrap();
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 0));
        q.close().await.unwrap();
    }
}
