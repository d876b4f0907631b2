//! The read-only view of the queue database for the operator commands (`auditrelay queue stats`,
//! `dead-letters`, `check`): counts, cursors, backlogs, checkpoints and dead letters, read beside
//! a running agent.
//!
//! It never writes, creates, migrates or reconciles anything (that is [`Queue::open`]'s); the
//! operator commands that change the database (replay, purge) go through the writer thread
//! (`dead_letters.rs`), after taking the state directory's lock (`lock.rs`), so no agent runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction};

#[cfg(doc)]
use super::Queue;
use super::cursors::{OrphanBacklog, backlog_of};
use super::dead_letters::{DeadLetterSelection, count_dead_letters, dead_letter_counts_of, read_dead_letters};
use super::pages;
use super::schema::SCHEMA_VERSION;
use super::{DeadLetter, DeadLetterCount, QueueError, SqliteContext, absent, database_path, to_u64};

/// Where one sink stands, as `queue stats` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkPosition {
    pub sink: String,
    /// The last event id this sink acknowledged.
    pub cursor: i64,
    /// Events after the cursor.
    pub backlog: u64,
    /// When the first of them was stored (ms since the epoch; 0 for events queued before
    /// schema version 4); `None` when the backlog is empty.
    pub oldest_pending_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCheckpoint {
    pub source: String,
    /// As the source serialized it.
    pub state: String,
    pub updated_at_ms: i64,
}

/// Everything `queue stats` shows, read in one transaction (a consistent snapshot even while
/// the agent writes).
#[derive(Debug, Clone)]
pub struct QueueOverview {
    pub events: u64,
    /// Bytes of queued event bodies.
    pub bytes: u64,
    /// Bytes of dead letters' raw records: with `bytes`, what `queue.max_bytes` caps.
    pub dead_letter_bytes: u64,
    /// The last event id ever issued (0: none yet); cursors never pass it.
    pub newest_id: i64,
    /// By sink name: the sinks that have a cursor in the database.
    pub sinks: Vec<SinkPosition>,
    /// By source name.
    pub checkpoints: Vec<SourceCheckpoint>,
    pub dead_letters: Vec<DeadLetterCount>,
    /// Records of streamed answers in the staging area: an agent mid-download, or one stopped
    /// mid-stream (its next start discards them and asks the window again).
    pub staged: u64,
}

/// A read-only connection to the queue database, for looking without changing anything: it
/// never creates the file or the directory, migrates the schema or reconciles sink cursors
/// (all of which [`Queue::open`] does), and it reads beside a running agent (WAL allows readers
/// next to the writer).
pub struct QueueView {
    conn: Connection,
    path: PathBuf,
}

impl QueueView {
    /// Opens `state_dir`'s database read-only. A missing database, a foreign file and a schema
    /// of another version are errors naming the file (an older schema is upgraded by starting
    /// the agent, which this view never does).
    pub fn open(state_dir: &Path) -> Result<QueueView, QueueError> {
        let path = database_path(state_dir);
        if !path.exists() {
            return Err(absent(state_dir));
        }
        let fail = |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                QueueError::NotADatabase { path: path.clone() }
            }
            _ => QueueError::Open { path: path.clone(), source },
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags).map_err(fail)?;
        // The agent's commits are short; wait through one rather than fail.
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
        if found > SCHEMA_VERSION {
            return Err(QueueError::NewerSchema { path, found, supported: SCHEMA_VERSION });
        }
        if found < SCHEMA_VERSION {
            return Err(QueueError::OlderSchema { path, found, supported: SCHEMA_VERSION });
        }
        Ok(QueueView { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `source`'s dedupe keys were pruned up to (ms since the epoch: keys of records
    /// dated before it are gone); `None`: never pruned since schema version 8.
    pub fn dedupe_pruned_before(&mut self, source: &str) -> Result<Option<i64>, QueueError> {
        use rusqlite::OptionalExtension as _;
        self.conn
            .query_row("SELECT before_ms FROM dedupe_pruned WHERE source = ?1", [source], |r| r.get(0))
            .optional()
            .op(&self.path, "read how far the dedupe keys were pruned")
    }

    /// Whether any dedupe key of `source` is stored (it stored records, with a checkpoint).
    pub fn has_dedupe_keys(&mut self, source: &str) -> Result<bool, QueueError> {
        self.conn
            .query_row("SELECT EXISTS (SELECT 1 FROM dedupe WHERE source = ?1)", [source], |r| r.get(0))
            .op(&self.path, "look up dedupe keys")
    }

    /// Counts, cursors, backlogs, checkpoints and dead-letter counts, as of one instant.
    pub fn overview(&mut self) -> Result<QueueOverview, QueueError> {
        let tx = self.conn.transaction().op(&self.path, "begin reading")?;
        let read = |tx: &Transaction<'_>| -> rusqlite::Result<QueueOverview> {
            let (newest_id, purged) = pages::ids(tx)?;
            let (events, bytes) = pages::span(tx, purged, i64::MAX)?;
            let cursors: Vec<(String, i64)> = tx
                .prepare("SELECT sink, last_id FROM sink_cursors ORDER BY sink")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut sinks = Vec::with_capacity(cursors.len());
            for (sink, cursor) in cursors {
                let after = cursor.max(purged);
                sinks.push(SinkPosition {
                    sink,
                    cursor,
                    backlog: pages::span(tx, after, i64::MAX)?.0,
                    oldest_pending_ms: pages::first_collected_after(tx, after)?,
                });
            }
            let checkpoints = tx
                .prepare("SELECT source, state, updated_at_ms FROM checkpoints ORDER BY source")?
                .query_map([], |r| {
                    Ok(SourceCheckpoint { source: r.get(0)?, state: r.get(1)?, updated_at_ms: r.get(2)? })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let staged = tx.query_row("SELECT COUNT(*) FROM staged", [], |r| r.get(0)).map(to_u64)?;
            let dead_letter_bytes = tx
                .query_row("SELECT COALESCE(SUM(length(raw)), 0) FROM dead_letters", [], |r| r.get::<_, i64>(0))
                .map(to_u64)?;
            Ok(QueueOverview {
                events,
                bytes,
                dead_letter_bytes,
                newest_id,
                sinks,
                checkpoints,
                dead_letters: dead_letter_counts_of(tx)?,
                staged,
            })
        };
        read(&tx).op(&self.path, "read the queue's state")
        // The read transaction ends (rolls back: nothing to undo) when `tx` drops.
    }

    /// The selected dead letters, oldest first; at most `limit` (`None`: all).
    pub fn dead_letters(
        &self,
        selection: &DeadLetterSelection,
        limit: Option<usize>,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        read_dead_letters(&self.conn, selection, limit).op(&self.path, "read dead letters")
    }

    /// How many dead letters the selection picks.
    pub fn count_dead_letters(&self, selection: &DeadLetterSelection) -> Result<u64, QueueError> {
        count_dead_letters(&self.conn, selection).op(&self.path, "count dead letters")
    }
}

impl QueueView {
    /// Sinks the database has a cursor for but `configured` does not name, with their backlog
    /// (`check`: a removed sink's undelivered events are discarded for it at the next start).
    pub fn orphan_backlogs(&self, configured: &[String]) -> Result<Vec<OrphanBacklog>, QueueError> {
        let read = || -> rusqlite::Result<Vec<OrphanBacklog>> {
            let known: Vec<String> = self
                .conn
                .prepare("SELECT sink FROM sink_cursors ORDER BY sink")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            for sink in known.into_iter().filter(|s| !configured.contains(s)) {
                let (events, bytes) = backlog_of(&self.conn, &sink)?;
                out.push(OrphanBacklog { sink, events, bytes });
            }
            Ok(out)
        };
        read().op(&self.path, "read the sink cursors")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::dead_letters::tests::with_dead_letters;
    use crate::queue::tests::*;
    use crate::queue::*;

    #[tokio::test]
    async fn a_view_reads_beside_the_writer_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(QueueView::open(&dir.path().join("none")), Err(QueueError::Missing { .. })));
        assert!(!dir.path().join("none").exists(), "the view creates nothing");
        let q = with_dead_letters(dir.path()).await;
        let mut p = page("okta", vec![ev("d", 4, "dddd")]);
        p.checkpoint = Some("{\"w\":1}".into());
        q.store_page(p).await.unwrap();
        q.ack("s", 4).await.unwrap();
        q.stage("astro", vec![ev("z", 9, "z")], vec![]).await.unwrap();

        // The writer is open and its last commits are in the WAL only.
        let mut view = QueueView::open(dir.path()).unwrap();
        assert_eq!(view.path(), database_path(dir.path()));
        let o = view.overview().unwrap();
        assert_eq!((o.events, o.bytes, o.newest_id, o.staged), (1, 4, 4, 1));
        assert_eq!(o.sinks.len(), 2);
        assert_eq!(
            (o.sinks[0].sink.as_str(), o.sinks[0].cursor, o.sinks[0].backlog, o.sinks[0].oldest_pending_ms),
            ("s", 4, 0, None)
        );
        assert_eq!((o.sinks[1].sink.as_str(), o.sinks[1].cursor, o.sinks[1].backlog), ("t", 3, 1));
        assert!(o.sinks[1].oldest_pending_ms.is_some_and(|ms| ms > 0));
        assert_eq!(o.checkpoints.len(), 1);
        assert_eq!((o.checkpoints[0].source.as_str(), o.checkpoints[0].state.as_str()), ("okta", "{\"w\":1}"));
        assert_eq!(o.dead_letters, q.dead_letter_counts().await.unwrap());
        assert!(view.dead_letters(&DeadLetterSelection::default(), None).unwrap().len() == 3);

        // A read-only connection cannot write, even by mistake.
        let write = view.conn.execute("DELETE FROM dead_letters", []);
        assert_eq!(write.unwrap_err().sqlite_error_code(), Some(ErrorCode::ReadOnly));
        q.close().await.unwrap();
        // And after the writer closed (the WAL folded away) it still reads.
        let mut view = QueueView::open(dir.path()).unwrap();
        assert_eq!(view.overview().unwrap().events, 1);
    }

    #[tokio::test]
    async fn a_view_refuses_other_schema_versions_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.close().await.unwrap();
        let path = database_path(dir.path());
        for (version, older) in [(3, true), (SCHEMA_VERSION + 1, false)] {
            Connection::open(&path).unwrap().pragma_update(None, "user_version", version).unwrap();
            let err = QueueView::open(dir.path()).err().unwrap();
            match err {
                QueueError::OlderSchema { found, .. } if older => assert_eq!(found, 3),
                QueueError::NewerSchema { .. } if !older => {}
                other => panic!("{other:?}"),
            }
            let msg = QueueView::open(dir.path()).err().unwrap().to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
    }
}
