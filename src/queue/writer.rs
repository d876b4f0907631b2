//! The database thread: the one connection that writes, the commands it takes from the
//! [`Queue`] handles, and group commit (the writes waiting together share one transaction and
//! one sync to disk, each in its own savepoint). The reads that are one statement live here too.
//!
//! What each write stores is `writes.rs`'s; which sink cursors exist is `cursors.rs`'s; the WAL
//! is copied into the file by `checkpoint.rs`'s thread. The time stored with a write comes from
//! the agent's [`Clock`], read on this thread inside the opener's runtime (see [`Queue::open`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use rusqlite::types::FromSql;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

#[cfg(doc)]
use super::Queue;
use super::checkpoint::Checkpointer;
use super::cursors::{apply_renames, reconcile_cursors};
use super::dead_letters::{DeadLetterSelection, RequeueItem, Requeued, dead_letter_counts_of, dead_letter_row};
use super::pages;
use super::writes::{Content, write_ack, write_page, write_progress, write_stage};
use super::{
    BootPause, DeadLetter, DeadLetterCount, NewDeadLetter, NewEvent, PageWrite, QueueError, QueueStats, QueuedEvent,
    RefusedEvent, Reply, SinkRename, SqliteContext, StoreOutcome, StoredPause, Watches, sqlite_error, to_u64,
};
use crate::clock::Clock;

/// Everything the database thread does, dispatched in `Writer::run`.
pub(super) enum Command {
    RatePause {
        credential: String,
        reply: Reply<Option<StoredPause>>,
    },
    SetRatePause {
        credential: String,
        pause: StoredPause,
        reply: Reply<()>,
    },
    UnknownKeys {
        source: String,
        keys: Vec<(i64, String)>,
        reply: Reply<Vec<(i64, String)>>,
    },
    Checkpoint {
        source: String,
        reply: Reply<Option<String>>,
    },
    History {
        source: String,
        reply: Reply<bool>,
    },
    StorePage {
        page: Arc<PageWrite>,
        reply: Reply<StoreOutcome>,
    },
    ReadBatch {
        sink: String,
        max_events: usize,
        max_bytes: usize,
        reply: Reply<Vec<QueuedEvent>>,
    },
    Ack {
        sink: String,
        upto_id: i64,
        refused: Vec<RefusedEvent>,
        reply: Reply<()>,
    },
    Backlog {
        sink: String,
        reply: Reply<u64>,
    },
    OldestQueued {
        sink: String,
        reply: Reply<Option<i64>>,
    },
    SinkChannel {
        sink: String,
        reply: Reply<String>,
    },
    SetSinks {
        sinks: Vec<String>,
        reply: Reply<()>,
    },
    RenameSinks {
        renames: Vec<(String, String)>,
        reply: Reply<Vec<SinkRename>>,
    },
    Stats {
        reply: Reply<QueueStats>,
    },
    DeadLetters {
        limit: usize,
        reply: Reply<Vec<DeadLetter>>,
    },
    DeadLetterCounts {
        reply: Reply<Vec<DeadLetterCount>>,
    },
    Stage {
        source: String,
        events: Vec<NewEvent>,
        dead_letters: Vec<NewDeadLetter>,
        reply: Reply<()>,
    },
    CommitStaged {
        source: String,
        checkpoint: Option<String>,
        done_until_ms: Option<i64>,
        prune_dedupe_before_ms: Option<i64>,
        reply: Reply<StoreOutcome>,
    },
    DiscardStaged {
        source: String,
        reply: Reply<u64>,
    },
    // Operator commands (`auditrelay queue replay`, `purge-dead-letters`): see "Operator commands".
    SelectDeadLetters {
        selection: DeadLetterSelection,
        reply: Reply<Vec<DeadLetter>>,
    },
    RequeueDeadLetters {
        items: Vec<RequeueItem>,
        reply: Reply<Vec<Requeued>>,
    },
    PurgeDeadLetters {
        selection: DeadLetterSelection,
        reply: Reply<u64>,
    },
    /// The writer connection's value of a pragma (`synchronous`, `wal_autocheckpoint`, …).
    #[cfg(test)]
    Pragma {
        name: &'static str,
        reply: Reply<i64>,
    },
    /// Blocks the database thread until `resume` sends (or is dropped), so commands pile up.
    #[cfg(test)]
    Pause {
        resume: std::sync::mpsc::Receiver<()>,
    },
    /// How many write transactions (groups) were committed so far.
    #[cfg(test)]
    Groups {
        reply: Reply<u64>,
    },
    Close {
        reply: Reply<()>,
    },
}

/// What one grouped write did: a page's outcome and the body bytes it added, or the body
/// bytes an ack freed.
enum Written {
    Page(StoreOutcome, u64),
    /// Dead-letter bytes added, event bytes freed.
    Ack(u64, u64),
    Staged,
}

/// Writes that may share a transaction: at most this many per group.
const MAX_GROUP: usize = 64;

/// After this long without a command the connection's page cache is given back
/// ([`Writer::release_memory`]): an idle agent holds none of it, a busy one never pauses this
/// long, and an idle one re-reads the few pages its next poll needs from the OS's cache.
const RELEASE_MEMORY_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// With the page cache, the heap the allocator kept after the burst that just ended is given
/// back ([`crate::memory::release_freed`]), but at most once in this long. Given back, freed
/// memory costs a page fault per page when used again, and a vendor rate-limited to a page
/// every few seconds (or a sink waiting for its acks) leaves this thread quiet for a second
/// again and again: the end-to-end benchmark's agent trimmed 3 to 4 times a run (each a few
/// hundred `madvise` calls; BENCHMARKS.md, "Issue 21, ninth round"). A writer that goes quiet
/// before it is due waits the rest of the time (still quiet) and trims then: an idle agent is
/// trimmed within this long of its last command.
const TRIM_HEAP_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a quiet writer waits before giving the heap back: `None`, now (never before, or
/// not in the last [`TRIM_HEAP_AT_MOST_EVERY`]); else the rest of that time. So an agent that
/// goes quiet is trimmed within that time, and a busy one at most that often.
fn trim_wait(last: Option<std::time::Instant>, now: std::time::Instant) -> Option<std::time::Duration> {
    let since = now.saturating_duration_since(last?);
    TRIM_HEAP_AT_MOST_EVERY.checked_sub(since).filter(|rest| !rest.is_zero())
}

impl Command {
    fn is_write(&self) -> bool {
        matches!(
            self,
            Command::StorePage { .. } | Command::CommitStaged { .. } | Command::Ack { .. } | Command::Stage { .. }
        )
    }

    /// A page commit: it moves a checkpoint, so it must be on disk before the reply (acks and
    /// staging need not be: see [`Writer::write_group`]).
    fn moves_a_checkpoint(&self) -> bool {
        matches!(self, Command::StorePage { .. } | Command::CommitStaged { .. })
    }

    /// Answers a grouped write.
    fn answer(self, result: Result<Written, QueueError>) {
        match self {
            Command::StorePage { reply, .. } | Command::CommitStaged { reply, .. } => {
                let _ = reply.send(result.map(|w| match w {
                    Written::Page(outcome, _) => outcome,
                    Written::Ack(..) | Written::Staged => StoreOutcome::default(),
                }));
            }
            Command::Ack { reply, .. } | Command::Stage { reply, .. } => {
                let _ = reply.send(result.map(|_| ()));
            }
            _ => {}
        }
    }

    fn fail(self, e: QueueError) {
        self.answer(Err(e));
    }
}

/// A copy of a SQLite error (which is not `Clone`): its code and message.
fn copy_sqlite(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => rusqlite::Error::SqliteFailure(*code, message.clone()),
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// A copy of a grouped write's error, for the other writes of its group.
fn copy_error(e: &QueueError, path: &Path) -> QueueError {
    match e {
        QueueError::DiskFull { path, op } => QueueError::DiskFull { path: path.clone(), op },
        QueueError::Sqlite { path, op, source } => {
            QueueError::Sqlite { path: path.clone(), op, source: copy_sqlite(source) }
        }
        other => sqlite_error(
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            ),
            path,
            "write",
        ),
    }
}

/// Owns the connection; lives on the database thread.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) sinks: BTreeSet<String>,
    /// The last event id issued; acks are clamped to it.
    pub(super) newest_id: i64,
    pub(super) watches: Arc<Watches>,
    /// The connection's `synchronous` is FULL (else NORMAL); see [`Writer::write_group`].
    pub(super) durable: bool,
    pub(super) checkpointer: Option<Checkpointer>,
    /// Where "now" comes from for the times stored (collected, dead-lettered, checkpointed).
    pub(super) clock: Clock,
    #[cfg(test)]
    pub(super) groups: u64,
}

impl Writer {
    /// `PRAGMA shrink_memory`: frees the connection's unused cache pages (sqlite3_db_release_memory).
    /// It writes nothing and changes no setting, so it cannot touch durability; a failure costs
    /// only the memory, so it is logged at debug level and otherwise ignored.
    pub(super) fn release_memory(&self) {
        if let Err(e) = self.conn.execute_batch("PRAGMA shrink_memory") {
            tracing::debug!(db = %self.path.display(), error = %e, "cannot release the page cache while idle");
        }
    }

    /// Wall time (ms since the epoch) for `collected_ms`, `created_at_ms` and `updated_at_ms`:
    /// informational only, never compared.
    pub(super) fn now_ms(&self) -> i64 {
        self.clock.now_utc().timestamp_millis()
    }

    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        // A command taken while gathering a group, handled right after it.
        let mut held = None;
        let mut trimmed: Option<std::time::Instant> = None;
        loop {
            let command = match held.take() {
                Some(command) => command,
                None => match commands.recv_timeout(RELEASE_MEMORY_WHEN_IDLE_FOR) {
                    Ok(command) => command,
                    // Idle: give the page cache back, then the heap once it is due (still
                    // idle), then wait as long as it takes.
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.release_memory();
                        let next = loop {
                            let now = std::time::Instant::now();
                            let Some(wait) = trim_wait(trimmed, now) else {
                                crate::memory::release_freed();
                                trimmed = Some(now);
                                break commands.recv().ok();
                            };
                            match commands.recv_timeout(wait) {
                                Ok(command) => break Some(command),
                                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                            }
                        };
                        match next {
                            Some(command) => command,
                            None => return,
                        }
                    }
                    // Every handle dropped without `close`: dropping the connection still
                    // checkpoints the WAL.
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                },
            };
            if command.is_write() {
                // Group commit: the writes already waiting (pages of other sources, acks of the
                // sinks) join this one's transaction, so they share one sync to disk. Each keeps
                // its own savepoint, so one that fails alone is rolled back alone.
                let mut group = vec![command];
                while group.len() < MAX_GROUP {
                    match commands.try_recv() {
                        Ok(next) if next.is_write() => group.push(next),
                        Ok(next) => {
                            held = Some(next);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                self.write_group(group);
                continue;
            }
            // Replies are dropped silently when the caller stopped waiting; the work is done anyway.
            match command {
                Command::StorePage { .. }
                | Command::CommitStaged { .. }
                | Command::Ack { .. }
                | Command::Stage { .. } => {
                    unreachable!("writes go through write_group")
                }
                Command::Checkpoint { source, reply } => {
                    let _ = reply.send(self.checkpoint(&source));
                }
                Command::RatePause { credential, reply } => {
                    let _ = reply.send(self.rate_pause(&credential));
                }
                Command::SetRatePause { credential, pause, reply } => {
                    let _ = reply.send(self.set_rate_pause(&credential, &pause));
                }
                Command::UnknownKeys { source, keys, reply } => {
                    let _ = reply.send(self.unknown_keys(&source, keys));
                }
                Command::History { source, reply } => {
                    let _ = reply.send(self.has_history(&source));
                }
                Command::ReadBatch { sink, max_events, max_bytes, reply } => {
                    let _ = reply.send(self.read_batch(&sink, max_events, max_bytes));
                }
                Command::DeadLetterCounts { reply } => {
                    let _ = reply.send(self.dead_letter_counts());
                }
                Command::SetSinks { sinks, reply } => {
                    let _ = reply.send(self.set_sinks(sinks));
                }
                Command::RenameSinks { renames, reply } => {
                    let _ = reply.send(self.rename_sinks(&renames));
                }
                Command::SinkChannel { sink, reply } => {
                    let _ = reply.send(self.sink_channel(&sink));
                }
                Command::Backlog { sink, reply } => {
                    let _ = reply.send(self.backlog(&sink));
                }
                Command::OldestQueued { sink, reply } => {
                    let _ = reply.send(self.oldest_queued(&sink));
                }
                Command::Stats { reply } => {
                    let _ = reply.send(self.stats());
                }
                Command::DeadLetters { limit, reply } => {
                    let _ = reply.send(self.dead_letters(limit));
                }
                Command::DiscardStaged { source, reply } => {
                    let _ = reply.send(self.discard_staged(&source));
                }
                Command::SelectDeadLetters { selection, reply } => {
                    let _ = reply.send(self.select_dead_letters(&selection));
                }
                Command::RequeueDeadLetters { items, reply } => {
                    let _ = reply.send(self.requeue_dead_letters(&items));
                }
                Command::PurgeDeadLetters { selection, reply } => {
                    let _ = reply.send(self.purge_dead_letters(&selection));
                }
                #[cfg(test)]
                Command::Pragma { name, reply } => {
                    let value = self.conn.pragma_query_value(None, name, |r| r.get(0));
                    let _ = reply.send(value.op(&self.path, "read a pragma"));
                }
                #[cfg(test)]
                Command::Pause { resume } => {
                    let _ = resume.recv();
                }
                #[cfg(test)]
                Command::Groups { reply } => {
                    let _ = reply.send(Ok(self.groups));
                }
                Command::Close { reply } => {
                    let _ = reply.send(self.close());
                    return;
                }
            }
        }
    }

    /// Page commits, acks and staged chunks in one transaction, each in its own savepoint;
    /// replies once the transaction is committed. A write that fails is rolled back to its
    /// savepoint and answered with its error; the others still commit. A failing BEGIN or
    /// COMMIT fails them all, and none took effect.
    ///
    /// A group with a page commit is committed durably (`synchronous = FULL`: the WAL is synced
    /// before the reply, invariant 1). A group of only acks and staged chunks is committed
    /// without a sync (`NORMAL`): it becomes durable with the next synced commit, which syncs
    /// the WAL up to its end. Losing it to a power cut loses nothing: an ack lost means its
    /// batch is sent again (at least once), and staged records are discarded at the next
    /// attempt anyway.
    fn write_group(&mut self, group: Vec<Command>) {
        let durable = group.iter().any(Command::moves_a_checkpoint);
        if let Err(e) = self.set_durability(durable) {
            for command in group {
                command.fail(copy_error(&e, &self.path));
            }
            return;
        }
        self.commit_group(group);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wake();
        }
        // Back to FULL for everything else the thread writes (a failure here is retried by the
        // next page commit, which fails if it cannot be durable).
        if let Err(e) = self.set_durability(true) {
            tracing::warn!(error = %e, "cannot return the queue database to synchronous = FULL");
        }
    }

    fn commit_group(&mut self, group: Vec<Command>) {
        #[cfg(test)]
        {
            self.groups += 1;
        }
        let Writer { conn, path, sinks, newest_id, watches, clock, .. } = self;
        let mut newest = *newest_id;
        let mut results: Vec<Result<Written, QueueError>> = Vec::with_capacity(group.len());
        let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                for command in group {
                    command.fail(sqlite_error(copy_sqlite(&e), path, "begin a write"));
                }
                return;
            }
        };
        for command in &group {
            let written = (|| -> Result<Written, QueueError> {
                let sp = tx.savepoint().op(path, "begin a savepoint")?;
                let mut newest_here = newest;
                let now_ms = clock.now_utc().timestamp_millis();
                let written = match command {
                    Command::StorePage { page, .. } => {
                        if page.checkpoint.is_some() {
                            write_progress(&sp, path, &page.source, page.done_until_ms)?;
                        }
                        let content = Content::Memory { events: &page.events, dead_letters: &page.dead_letters };
                        let checkpoint = page.checkpoint.as_deref();
                        let prune = page.prune_dedupe_before_ms;
                        write_page(&sp, &page.source, content, checkpoint, prune, now_ms, &mut newest_here)
                            .map(|(outcome, added)| Written::Page(outcome, added))
                            .op(path, "store a page")?
                    }
                    Command::CommitStaged { source, checkpoint, done_until_ms, prune_dedupe_before_ms, .. } => {
                        if checkpoint.is_some() {
                            write_progress(&sp, path, source, *done_until_ms)?;
                        }
                        let (checkpoint, prune) = (checkpoint.as_deref(), *prune_dedupe_before_ms);
                        write_page(&sp, source, Content::Staged, checkpoint, prune, now_ms, &mut newest_here)
                            .map(|(outcome, added)| Written::Page(outcome, added))
                            .op(path, "store a page")?
                    }
                    Command::Ack { sink, upto_id, refused, .. } => {
                        if !sinks.contains(sink) {
                            return Err(QueueError::UnknownSink { path: path.clone(), sink: sink.clone() });
                        }
                        // Never past the last id issued: a cursor ahead of it would skip the
                        // next events.
                        let upto = (*upto_id).min(newest);
                        write_ack(&sp, sink, upto, refused, now_ms)
                            .map(|(added, freed)| Written::Ack(added, freed))
                            .op(path, "acknowledge a batch")?
                    }
                    Command::Stage { source, events, dead_letters, .. } => {
                        write_stage(&sp, source, events, dead_letters)
                            .map(|()| Written::Staged)
                            .op(path, "stage records")?
                    }
                    _ => unreachable!("only writes are grouped"),
                };
                sp.commit().op(path, "release a savepoint")?;
                newest = newest_here;
                Ok(written)
            })();
            // Some errors (a full disk, I/O) make SQLite roll back the whole transaction, not
            // just the statement: then nothing of the group stands, and each write is failed.
            if let Err(e) = &written
                && tx.is_autocommit()
            {
                for command in group {
                    command.fail(copy_error(e, path));
                }
                return;
            }
            results.push(written);
        }
        if let Err(e) = tx.commit() {
            for command in group {
                command.fail(sqlite_error(copy_sqlite(&e), path, "commit a write"));
            }
            return;
        }
        *newest_id = newest;
        let (added, freed) = results.iter().fold((0u64, 0u64), |(a, f), r| match r {
            Ok(Written::Page(_, bytes)) => (a + bytes, f),
            Ok(Written::Ack(dead, bytes)) => (a + dead, f + bytes),
            Ok(Written::Staged) | Err(_) => (a, f),
        });
        if added != freed {
            watches.bytes.send_modify(|b| *b = (*b + added).saturating_sub(freed));
        }
        watches.newest_id.send_if_modified(|id| std::mem::replace(id, newest) != newest);
        for (command, result) in group.into_iter().zip(results) {
            command.answer(result);
        }
    }

    fn rate_pause(&self, credential: &str) -> Result<Option<StoredPause>, QueueError> {
        self.conn
            .query_row(
                "SELECT until_ms, boot_id, boot_at_ms, boot_until_ms FROM rate_pauses WHERE credential = ?1",
                [credential],
                |r| {
                    let boot = match (r.get::<_, Option<String>>(1)?, r.get(2)?, r.get(3)?) {
                        (Some(id), Some(at_ms), Some(until_ms)) => Some(BootPause { id, at_ms, until_ms }),
                        _ => None,
                    };
                    Ok(StoredPause { until_ms: r.get(0)?, boot })
                },
            )
            .optional()
            .op(&self.path, "read a rate-limit pause")
    }

    /// One small autocommit write between page groups (synchronous=FULL: on disk when it returns).
    fn set_rate_pause(&self, credential: &str, pause: &StoredPause) -> Result<(), QueueError> {
        let boot = pause.boot.as_ref();
        self.conn
            .execute(
                "INSERT INTO rate_pauses (credential, until_ms, boot_id, boot_at_ms, boot_until_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (credential) DO UPDATE SET until_ms = excluded.until_ms, boot_id = excluded.boot_id,
                     boot_at_ms = excluded.boot_at_ms, boot_until_ms = excluded.boot_until_ms",
                params![
                    credential,
                    pause.until_ms,
                    boot.map(|b| b.id.as_str()),
                    boot.map(|b| b.at_ms),
                    boot.map(|b| b.until_ms)
                ],
            )
            .map(|_| ())
            .op(&self.path, "store a rate-limit pause")
    }

    fn unknown_keys(&self, source: &str, keys: Vec<(i64, String)>) -> Result<Vec<(i64, String)>, QueueError> {
        let mut known = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM dedupe WHERE source = ?1 AND event_time_ms = ?2 AND key = ?3)",
            )
            .op(&self.path, "look up dedupe keys")?;
        let mut unknown = Vec::new();
        for (time_ms, key) in keys {
            let seen: bool =
                known.query_row(params![source, time_ms, key], |r| r.get(0)).op(&self.path, "look up a dedupe key")?;
            if !seen {
                unknown.push((time_ms, key));
            }
        }
        Ok(unknown)
    }

    fn checkpoint(&self, source: &str) -> Result<Option<String>, QueueError> {
        self.conn
            .query_row("SELECT state FROM checkpoints WHERE source = ?1", [source], |r| r.get(0))
            .optional()
            .op(&self.path, "read a checkpoint")
    }

    fn has_history(&self, source: &str) -> Result<bool, QueueError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM dedupe WHERE source = ?1)
                     OR EXISTS (SELECT 1 FROM pages WHERE source = ?1)
                     OR EXISTS (SELECT 1 FROM dead_letters WHERE source = ?1)",
                [source],
                |r| r.get(0),
            )
            .op(&self.path, "look for a source's records")
    }

    /// ONE transaction: prune old dedupe keys (if asked), add the page's events (skipping keys
    /// already seen) and dead letters, and set the checkpoint.
    /// `synchronous = FULL` (`durable`) or `NORMAL` for the next commits.
    fn set_durability(&mut self, durable: bool) -> Result<(), QueueError> {
        if durable != self.durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            self.conn.pragma_update(None, "synchronous", level).op(&self.path, "set synchronous")?;
            self.durable = durable;
        }
        Ok(())
    }

    fn discard_staged(&mut self, source: &str) -> Result<u64, QueueError> {
        self.conn
            .execute("DELETE FROM staged WHERE source = ?1", [source])
            .map(|n| n as u64)
            .op(&self.path, "discard staged records")
    }

    fn cursor(&self, sink: &str) -> Result<i64, QueueError> {
        if !self.sinks.contains(sink) {
            return Err(QueueError::UnknownSink { path: self.path.clone(), sink: sink.to_owned() });
        }
        self.conn
            .query_row("SELECT last_id FROM sink_cursors WHERE sink = ?1", [sink], |r| r.get(0))
            .op(&self.path, "read a sink cursor")
    }

    /// Where `sink` reads from: after its cursor, and never at or below the purge mark.
    fn read_from(&self, sink: &str) -> Result<i64, QueueError> {
        let cursor = self.cursor(sink)?;
        Ok(cursor.max(pages::purged(&self.conn).op(&self.path, "read the purge mark")?))
    }

    fn read_batch(&self, sink: &str, max_events: usize, max_bytes: usize) -> Result<Vec<QueuedEvent>, QueueError> {
        let after = self.read_from(sink)?;
        pages::read_after(&self.conn, after, max_events, max_bytes).op(&self.path, "read a batch")
    }

    fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>, QueueError> {
        dead_letter_counts_of(&self.conn).op(&self.path, "count dead letters")
    }

    fn set_sinks(&mut self, sinks: Vec<String>) -> Result<(), QueueError> {
        let sinks: BTreeSet<String> = sinks.into_iter().collect();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op(&self.path, "begin a sink change")?;
        let (freed, removed) = reconcile_cursors(&tx, &self.path, &sinks)?;
        tx.commit().op(&self.path, "commit a sink change")?;
        self.watches.add_discarded(&removed);
        if freed > 0 {
            self.watches.bytes.send_modify(|b| *b = b.saturating_sub(freed));
        }
        self.sinks = sinks;
        Ok(())
    }

    fn rename_sinks(&mut self, renames: &[(String, String)]) -> Result<Vec<SinkRename>, QueueError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .op(&self.path, "begin a sink rename")?;
        let done = apply_renames(&tx, &self.path, renames)?;
        tx.commit().op(&self.path, "commit a sink rename")?;
        for r in &done {
            if self.sinks.remove(&r.from) {
                self.sinks.insert(r.to.clone());
            }
        }
        Ok(done)
    }

    fn sink_channel(&mut self, sink: &str) -> Result<String, QueueError> {
        self.cursor(sink)?;
        let fresh = uuid::Uuid::new_v4().to_string();
        self.conn
            .execute("INSERT OR IGNORE INTO sink_channels (sink, channel) VALUES (?1, ?2)", params![sink, fresh])
            .op(&self.path, "store a sink channel")?;
        self.conn
            .query_row("SELECT channel FROM sink_channels WHERE sink = ?1", [sink], |r| r.get(0))
            .op(&self.path, "read a sink channel")
    }

    fn backlog(&self, sink: &str) -> Result<u64, QueueError> {
        let after = self.read_from(sink)?;
        pages::span(&self.conn, after, i64::MAX).map(|(events, _)| events).op(&self.path, "count a backlog")
    }

    /// When the first event after the sink's cursor was stored: one step down the b-tree,
    /// whatever the backlog.
    fn oldest_queued(&self, sink: &str) -> Result<Option<i64>, QueueError> {
        let after = self.read_from(sink)?;
        pages::first_collected_after(&self.conn, after).op(&self.path, "read a sink's oldest queued event")
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        let read = || -> rusqlite::Result<QueueStats> {
            let count = |sql: &str| self.conn.query_row(sql, [], |r| r.get(0)).map(to_u64);
            fn pairs<A: FromSql, B: FromSql>(c: &Connection, sql: &str) -> rusqlite::Result<Vec<(A, B)>> {
                c.prepare(sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            }
            Ok(QueueStats {
                events: pages::span(&self.conn, pages::purged(&self.conn)?, i64::MAX)?.0,
                bytes: *self.watches.bytes.borrow(),
                max_bytes: 0, // filled in by `Queue::stats`, which knows the cap
                dead_letters: count("SELECT COUNT(*) FROM dead_letters")?,
                sink_cursors: pairs(&self.conn, "SELECT sink, last_id FROM sink_cursors ORDER BY sink")?,
                checkpoints: pairs(&self.conn, "SELECT source, state FROM checkpoints ORDER BY source")?,
            })
        };
        read().op(&self.path, "read stats")
    }

    fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let read = || -> rusqlite::Result<Vec<DeadLetter>> {
            let mut stmt = self.conn.prepare(
                "SELECT id, source, key, reason, raw, created_at_ms, sink FROM dead_letters
                 ORDER BY id LIMIT ?1",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            stmt.query_map([limit], dead_letter_row)?.collect()
        };
        read().op(&self.path, "read dead letters")
    }

    fn close(mut self) -> Result<(), QueueError> {
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        // Fold the WAL into the main file so the database is one self-contained file at rest.
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).op(&self.path, "checkpoint the WAL")?;
        self.conn.close().map_err(|(_, e)| e).op(&self.path, "close")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::oneshot;

    use super::*;
    use crate::queue::tests::*;
    use crate::queue::*;

    /// The heap is given back at the first quiet second, then not again within
    /// `TRIM_HEAP_AT_MOST_EVERY`: quiet seconds between a rate-limited vendor's pages must not
    /// each cost a trim and the page faults after it.
    #[test]
    fn test_the_heap_is_trimmed_at_most_once_in_thirty_seconds() {
        use std::time::Duration;
        let start = std::time::Instant::now();
        assert_eq!(trim_wait(None, start), None, "the first quiet second trims");
        assert_eq!(trim_wait(Some(start), start + Duration::from_secs(1)), Some(Duration::from_secs(29)));
        assert_eq!(trim_wait(Some(start), start + Duration::from_millis(29_999)), Some(Duration::from_millis(1)));
        assert_eq!(trim_wait(Some(start), start + TRIM_HEAP_AT_MOST_EVERY), None);
        assert_eq!(trim_wait(Some(start), start + Duration::from_secs(3600)), None);
        assert_eq!(TRIM_HEAP_AT_MOST_EVERY, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn writes_waiting_together_share_one_transaction_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["a"], 1 << 20)).unwrap();
        q.store_page(page("s1", vec![ev("k0", 1, "e0")])).await.unwrap();
        let before = q.call(|reply| Command::Groups { reply }).await.unwrap();
        // Hold the thread while two sources' pages and two acks (one of an unknown sink) queue up.
        let (resume, paused) = std::sync::mpsc::channel();
        q.inner.commands.send(Command::Pause { resume: paused }).unwrap();
        let mut p1 = page("s1", vec![ev("k1", 2, "e1"), ev("k0", 1, "e0")]);
        p1.checkpoint = Some("cp-s1".into());
        let mut p2 = page("s2", vec![ev("k2", 3, "e2")]);
        p2.checkpoint = Some("cp-s2".into());
        // Sent straight into the channel (as `Queue::call` does), so all four wait together.
        let send = |command: Command| q.inner.commands.send(command).unwrap();
        let (r1, a1) = oneshot::channel();
        send(Command::StorePage { page: Arc::new(p1), reply: r1 });
        let (r2, a2) = oneshot::channel();
        send(Command::StorePage { page: Arc::new(p2), reply: r2 });
        let (r3, a3) = oneshot::channel();
        send(Command::Ack { sink: "nobody".into(), upto_id: 1, refused: Vec::new(), reply: r3 });
        let (r4, a4) = oneshot::channel();
        send(Command::Ack { sink: "a".into(), upto_id: 1, refused: Vec::new(), reply: r4 });
        resume.send(()).unwrap();
        let (r1, r2, r3, r4) = (a1.await.unwrap(), a2.await.unwrap(), a3.await.unwrap(), a4.await.unwrap());
        assert_eq!(r1.unwrap(), StoreOutcome { stored: 1, duplicates: 1, dead_lettered: 0 });
        assert_eq!(r2.unwrap(), StoreOutcome { stored: 1, duplicates: 0, dead_lettered: 0 });
        assert!(matches!(r3, Err(QueueError::UnknownSink { .. })), "{r3:?}");
        r4.unwrap();
        let after = q.call(|reply| Command::Groups { reply }).await.unwrap();
        assert_eq!(after - before, 1, "four waiting writes, one transaction");
        assert_eq!(q.checkpoint("s1").await.unwrap().as_deref(), Some("cp-s1"));
        assert_eq!(q.checkpoint("s2").await.unwrap().as_deref(), Some("cp-s2"));
        assert_eq!(all(&q, "a").await, vec!["e1", "e2"], "event 1 acked, the rest queued");
        // An ack alone commits without a sync, then the connection is durable again.
        q.ack("a", 2).await.unwrap();
        assert_eq!(q.synchronous().await.unwrap(), 2, "synchronous=FULL after an ack-only group");
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn read_batch_respects_limits_but_returns_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let evs = vec![ev("a", 1, "aaaa"), ev("b", 2, "bbbb"), ev("c", 3, "cccc")];
        q.store_page(page("okta", evs)).await.unwrap();
        for (max_events, max_bytes, expected) in [
            (2, usize::MAX, vec!["aaaa", "bbbb"]),
            (10, 8, vec!["aaaa", "bbbb"]),
            (10, 7, vec!["aaaa"]),
            (10, 1, vec!["aaaa"]),
            (0, usize::MAX, vec!["aaaa"]),
        ] {
            let batch = q.read_batch("s", max_events, max_bytes).await.unwrap();
            assert_eq!(bodies(&batch), expected, "max_events {max_events}, max_bytes {max_bytes}");
        }
        q.ack("s", i64::MAX).await.unwrap();
        assert!(q.read_batch("s", 10, 10).await.unwrap().is_empty());
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_sink_channel_is_made_once_and_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["hec", "other"], 1000)).unwrap();
        let channel = q.sink_channel("hec").await.unwrap();
        assert!(uuid::Uuid::parse_str(&channel).is_ok(), "{channel}");
        assert_eq!(q.sink_channel("hec").await.unwrap(), channel);
        assert_ne!(q.sink_channel("other").await.unwrap(), channel);
        q.close().await.unwrap();
        let q = Queue::open(dir.path(), opts(&["hec"], 1000)).unwrap();
        assert_eq!(q.sink_channel("hec").await.unwrap(), channel);
        assert!(matches!(q.sink_channel("nope").await, Err(QueueError::UnknownSink { .. })));
    }
}
