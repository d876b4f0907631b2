//! The queue and state database: one SQLite file, `auditrelay.db` in `state_dir`, holding the
//! queued OCSF events, their dedupe keys, each source's checkpoint, each sink's cursor and the
//! dead letters.
//!
//! It owns the schema and its version, the transactions that keep DESIGN.md invariants 1–4 true
//! (a page's events, dedupe keys and checkpoint commit together; a cursor only moves forward; a
//! row leaves only once every configured sink is past it; nothing is dropped for room), the byte
//! count behind the size cap, and the one thread that talks to SQLite.
//!
//! It leaves to others what a checkpoint means (an opaque string the source serializes), what a
//! dedupe key is and how long to keep it (the source says what to prune), what a body is (OCSF
//! JSON from `ocsf/`), when to stop fetching (sources check `is_full` / `wait_for_room`) and how
//! to deliver (sinks `read_batch`, send, then `ack`). It never reads a checkpoint's fields nor
//! imports from `sources`, `sinks` or `sim`; every "now" it stores comes from the agent's
//! [`Clock`]. One naming rule it does know: a backfill range (`<live>.backfill.<from>-<until>`,
//! [`backfilled_source`]) dedupes against its live source's keys too, reading them only; and it
//! records how far each source's keys were pruned (`dedupe_pruned`), so `backfill` knows where
//! they can no longer tell what was stored.
//!
//! This file holds the public types and the [`Queue`] facade, which sends each call to the
//! database thread. The rest, one job per file:
//! - `schema.rs`: the schema, its version and migrations; opening and checking the file.
//! - `cursors.rs`: sink cursors: reconciled with the configured sinks, carried over on a rename,
//!   and the delete of what every sink has passed.
//! - `writer.rs`: the database thread: its commands, group commit and one-statement reads.
//! - `writes.rs`: what a page, a staged chunk and an ack write inside a group's transaction.
//! - `checkpoint.rs`: the WAL checkpointer thread.
//! - `pages.rs`: how events are stored, a page at a time (schema 9): rows of consecutive ids,
//!   the purge mark, reading, counting and deleting them.
//! - `dead_letters.rs`: selecting, replaying and purging dead letters (operator commands).
//! - `views.rs`: the read-only view for `auditrelay queue stats` and `dead-letters`.

mod checkpoint;
mod cursors;
mod dead_letters;
mod pages;
#[cfg(test)]
mod review21a_tests;
#[cfg(test)]
mod review21e_tests;
#[cfg(test)]
mod review21f_tests;
#[cfg(test)]
mod review21i_tests;
#[cfg(test)]
mod review21j_tests;
#[cfg(test)]
mod review21k_tests;
#[cfg(test)]
mod review21l_tests;
#[cfg(test)]
mod review21m_tests;
mod schema;
mod views;
mod writer;
mod writes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use rusqlite::ErrorCode;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use checkpoint::Checkpointer;
use schema::open_connection;
use writer::{Command, Writer};

pub use cursors::{OrphanBacklog, SinkRename, rename_sink_cursors};
pub use dead_letters::{DeadLetterSelection, RequeueItem, Requeued};
pub use views::{QueueOverview, QueueView, SinkPosition, SourceCheckpoint};

const DB_FILE: &str = "auditrelay.db";
/// Written beside the database once it exists. While it is there, a missing database is an error
/// (lost state), never a silent fresh start.
const MARKER_FILE: &str = "auditrelay.db.created";

/// What the queue needs from the configuration.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// The size cap on queued event bodies and dead letters. Reaching it stops sources; it never
    /// drops events.
    pub max_bytes: u64,
    /// Every configured sink. A row is deleted once all of them acked it, so this must be the
    /// full list: a sink missing here loses its cursor at open (see [`Queue::open`]).
    pub sinks: Vec<String>,
}

/// A handle to the queue; clones share the one database thread.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    max_bytes: u64,
    /// A std channel because the receiving end is a plain thread blocking on it; its `Sender` is
    /// `Sync`, so no lock is needed here.
    commands: mpsc::Sender<Command>,
    watches: Arc<Watches>,
    /// Taken by the first `close`; a later `close` on another clone has nothing left to do.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Published by the database thread right after each commit, before it replies, so a caller that
/// got its reply already sees the new values. `watch::Sender` works from any thread.
struct Watches {
    bytes: watch::Sender<u64>,
    newest_id: watch::Sender<i64>,
    /// Events discarded for each sink removed from the configuration (at open or by
    /// [`Queue::set_sinks`]) since the queue was opened, by sink name.
    discarded: Mutex<BTreeMap<String, u64>>,
}

impl Watches {
    /// Adds what removing these sinks discarded (after its commit).
    fn add_discarded(&self, removed: &[(String, u64)]) {
        let mut discarded = self.discarded.lock().unwrap_or_else(PoisonError::into_inner);
        for (sink, events) in removed {
            *discarded.entry(sink.clone()).or_insert(0) += events;
        }
    }
}

/// The source a source of this name backfills, if it is one: `<live>.backfill.<from>-<until>`
/// (times as `20260318T120000Z`), as `backfill` names its ranges. Such a range's pages are also
/// deduped against `<live>`'s keys: a record the live source stored went to the sinks already.
pub fn backfilled_source(source: &str) -> Option<&str> {
    let (live, range) = source.rsplit_once(".backfill.")?;
    let time = |t: &[u8]| {
        t.len() == 16
            && t.iter().enumerate().all(|(i, b)| match i {
                8 => *b == b'T',
                15 => *b == b'Z',
                _ => b.is_ascii_digit(),
            })
    };
    let (from, until) = range.split_once('-')?;
    (!live.is_empty() && time(from.as_bytes()) && time(until.as_bytes())).then_some(live)
}

/// One source page, written in one transaction (invariants 1 and 2).
#[derive(Debug, Clone, Default)]
pub struct PageWrite {
    pub source: String,
    pub events: Vec<NewEvent>,
    pub dead_letters: Vec<NewDeadLetter>,
    /// The source's serialized checkpoint after this page; `None` leaves it unchanged.
    pub checkpoint: Option<String>,
    /// Delete this source's dedupe keys older than this event time (ms since the epoch).
    pub prune_dedupe_before_ms: Option<i64>,
    /// The new checkpoint's `done_until` (ms since the epoch). `Some`: the write is refused
    /// ([`QueueError::CheckpointBackwards`]) when it is earlier than the one last stored for the
    /// source. `None` with a checkpoint: no assertion and the stored time is forgotten (an
    /// operator's `queue set-checkpoint`, which may move it back on purpose).
    pub done_until_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub dedupe_key: String,
    pub event_time_ms: i64,
    /// The OCSF event, serialized.
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub key: String,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// What a `store_page` did; `dead_lettered` counts only dead letters not recorded before.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub dead_lettered: usize,
}

#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub id: i64,
    pub body: Vec<u8>,
    /// When the agent stored it (ms since the epoch; for an event queued before version 4, its
    /// event time, as the upgrade to version 9 recorded it).
    pub collected_ms: i64,
}

/// An event a sink will never deliver (too large, refused by the receiver as invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    pub id: i64,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct QueueStats {
    pub events: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    pub dead_letters: u64,
    /// (sink, last acked id), by sink name.
    pub sink_cursors: Vec<(String, i64)>,
    /// (source, serialized checkpoint), by source name.
    pub checkpoints: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub source: String,
    /// The sink that refused this event; `None` for a record its source could not map.
    pub sink: Option<String>,
    pub key: String,
    pub reason: String,
    pub raw: Vec<u8>,
    pub created_at_ms: i64,
}

/// How many dead letters one source has, from one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterCount {
    pub source: String,
    /// `None`: records the source could not map; `Some(sink)`: events that sink refused.
    pub sink: Option<String>,
    pub count: u64,
}

const MOVE_ASIDE: &str = "move it aside with its -wal and -shm files and delete auditrelay.db.created beside it; \
                          the agent then starts with an empty state and refetches from `start`";
/// Where every damaged-state error sends the operator.
const RECOVERY: &str = "see README \"Damaged state\" for the recovery steps";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("cannot create state directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open queue database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("{} is not a SQLite database (or is corrupt): {MOVE_ASIDE}", path.display())]
    NotADatabase { path: PathBuf },
    #[error(
        "queue database {} is damaged ({detail}); nothing is delivered from it until it is recovered.{} {RECOVERY}",
        path.display(),
        readable(checkpoints)
    )]
    Damaged { path: PathBuf, detail: String, checkpoints: Vec<ReadableCheckpoint> },
    #[error(
        "queue database {} is missing, but {} says this state directory had one: refusing to start \
         over silently (sources would refetch from `start`). If it was moved, put it back; to start \
         over on purpose, delete {}; {RECOVERY}",
        path.display(),
        marker.display(),
        marker.display()
    )]
    Lost { path: PathBuf, marker: PathBuf },
    #[error("cannot write the state marker {}: {source}", path.display())]
    Marker { path: PathBuf, source: std::io::Error },
    #[error(
        "queue database {} has schema version {found}, newer than version {supported} known to \
         this auditrelay: run a newer auditrelay, or {MOVE_ASIDE}",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("no queue database at {}: no agent has run with this state_dir yet", path.display())]
    Missing { path: PathBuf },
    #[error(
        "queue database {} has schema version {found}, older than version {supported} of this \
         auditrelay: start this version's agent once (it upgrades the database), then look again",
        path.display()
    )]
    OlderSchema { path: PathBuf, found: i64, supported: i64 },
    #[error("queue database {}: cannot {op}: {source}", path.display())]
    Sqlite { path: PathBuf, op: &'static str, source: rusqlite::Error },
    #[error(
        "queue database {}: cannot {op}: the disk is full; free space on its filesystem (the agent \
         retries by itself and loses nothing meanwhile)",
        path.display()
    )]
    DiskFull { path: PathBuf, op: &'static str },
    #[error("sink {sink:?} is not among the sinks queue database {} was opened with", path.display())]
    UnknownSink { path: PathBuf, sink: String },
    #[error("cannot start the queue database thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the queue is closed")]
    Closed,
    #[error(
        "queue database {}: refusing to move source {source_name}'s checkpoint backwards, from done_until {stored_ms} \
         to {new_ms} (ms since the epoch); nothing of this page was stored",
        path.display()
    )]
    CheckpointBackwards { path: PathBuf, source_name: String, stored_ms: i64, new_ms: i64 },
}

/// A checkpoint still readable in a damaged database, listed in [`QueueError::Damaged`] so the
/// operator knows where each source stood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadableCheckpoint {
    pub source: String,
    /// As the source serialized it.
    pub state: String,
    /// What the source makes of it ("collected up to …"), filled in by the caller that knows
    /// the checkpoint's format (`sources::describe_damaged`); `None`: shown as stored.
    pub described: Option<String>,
}

/// " Last checkpoints readable: a collected up to …; b: {…}." (empty when none can be read).
fn readable(checkpoints: &[ReadableCheckpoint]) -> String {
    if checkpoints.is_empty() {
        return String::new();
    }
    let described: Vec<String> = checkpoints
        .iter()
        .map(|c| match &c.described {
            Some(described) => format!("{} {described}", c.source),
            None => format!("{}: {}", c.source, c.state),
        })
        .collect();
    format!(" Last checkpoints readable: {}.", described.join("; "))
}

/// Names the failed operation and the database in a SQLite error.
trait SqliteContext<T> {
    fn op(self, path: &Path, op: &'static str) -> Result<T, QueueError>;
}

impl<T> SqliteContext<T> for rusqlite::Result<T> {
    fn op(self, path: &Path, op: &'static str) -> Result<T, QueueError> {
        self.map_err(|source| sqlite_error(source, path, op))
    }
}

fn sqlite_error(source: rusqlite::Error, path: &Path, op: &'static str) -> QueueError {
    if let rusqlite::Error::ToSqlConversionFailure(e) = &source
        && let Some(row) = e.downcast_ref::<pages::DamagedRow>()
    {
        let detail = format!("cannot {op}: {row}");
        return QueueError::Damaged { path: path.to_owned(), detail, checkpoints: Vec::new() };
    }
    match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => QueueError::DiskFull { path: path.to_owned(), op },
        _ => QueueError::Sqlite { path: path.to_owned(), op, source },
    }
}

/// A credential's rate-limit pause as stored: until when by the wall clock (ms since the
/// epoch), and by time since boot where the machine tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPause {
    pub until_ms: i64,
    pub boot: Option<BootPause>,
}

/// A pause by time since boot: the boot's id, and its uptime (ms) when stored and at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootPause {
    pub id: String,
    pub at_ms: i64,
    pub until_ms: i64,
}

type Reply<T> = oneshot::Sender<Result<T, QueueError>>;

impl Queue {
    /// Creates `state_dir` if missing, opens or creates the database and spawns its thread.
    ///
    /// Blocking (it runs SQLite on the caller's thread); call it at startup. Configured sinks
    /// without a cursor start at 0 (they get every event still queued); cursors of sinks no
    /// longer configured are deleted with a warning so they do not pin the queue.
    ///
    /// Times it stores (when an event was collected, a dead letter or checkpoint written) are
    /// the system's wall clock; [`Queue::open_with_clock`] takes the agent's.
    pub fn open(state_dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
        Queue::open_with_clock(state_dir, opts, Clock::system())
    }

    /// [`Queue::open`], with the times it stores read from `clock`.
    pub fn open_with_clock(state_dir: &Path, opts: QueueOptions, clock: Clock) -> Result<Queue, QueueError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| QueueError::CreateDir { path: state_dir.to_owned(), source })?;
        let path = state_dir.join(DB_FILE);
        let marker = state_dir.join(MARKER_FILE);
        if !path.exists() && marker.exists() {
            return Err(QueueError::Lost { path, marker });
        }
        let sinks: BTreeSet<String> = opts.sinks.into_iter().collect();
        let (conn, removed) = open_connection(&path, &sinks)?;
        if !marker.exists() {
            let note = format!(
                "auditrelay {} created {DB_FILE} in this directory. While this file exists, a missing \
                 {DB_FILE} stops the agent instead of starting over (README \"Damaged state\").\n",
                env!("CARGO_PKG_VERSION")
            );
            std::fs::write(&marker, note).map_err(|source| QueueError::Marker { path: marker, source })?;
        }
        let measure = || -> rusqlite::Result<(u64, i64)> {
            // `issued` keeps the last id issued even when no event is stored. Dead letters count
            // against max_bytes too: they are on the same disk, for good.
            let (newest_id, purged) = pages::ids(&conn)?;
            let (_, events) = pages::span(&conn, purged, i64::MAX)?;
            let dead: i64 =
                conn.query_row("SELECT COALESCE(SUM(length(raw)), 0) FROM dead_letters", [], |r| r.get(0))?;
            Ok((events + to_u64(dead), newest_id))
        };
        let (bytes, newest_id) = measure().map_err(|e| match sqlite_error(e, &path, "measure the queue") {
            // A stored row that does not hold together: say where each source stood, too.
            QueueError::Damaged { path, detail, .. } => {
                QueueError::Damaged { path, detail, checkpoints: schema::readable_checkpoints(&conn) }
            }
            other => other,
        })?;
        let watches = Arc::new(Watches {
            bytes: watch::Sender::new(bytes),
            newest_id: watch::Sender::new(newest_id),
            discarded: Mutex::default(),
        });
        watches.add_discarded(&removed);
        let writer = Writer {
            conn,
            path: path.clone(),
            sinks,
            newest_id,
            watches: watches.clone(),
            durable: true,
            checkpointer: Some(Checkpointer::start(&path)?),
            clock,
            #[cfg(test)]
            groups: 0,
        };
        // The thread reads `clock` inside the caller's runtime (if any), so a test clock that
        // follows tokio's paused time reads the same time there as on the runtime's threads.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (commands, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("auditrelay-queue".into())
            .spawn(move || {
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                writer.run(receiver)
            })
            .map_err(QueueError::Thread)?;
        let inner = Inner { path, max_bytes: opts.max_bytes, commands, watches, thread: Mutex::new(Some(thread)) };
        Ok(Queue { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The rate-limit pause stored for a credential key, if any.
    pub async fn rate_pause(&self, credential: &str) -> Result<Option<StoredPause>, QueueError> {
        self.call(|reply| Command::RatePause { credential: credential.to_owned(), reply }).await
    }

    /// Stores (replaces) a credential's rate-limit pause, durably, before it returns.
    pub async fn set_rate_pause(&self, credential: &str, pause: StoredPause) -> Result<(), QueueError> {
        self.call(|reply| Command::SetRatePause { credential: credential.to_owned(), pause, reply }).await
    }

    /// Which of these `(event time ms, dedupe key)` pairs the source has not stored yet.
    pub async fn unknown_keys(&self, source: &str, keys: Vec<(i64, String)>) -> Result<Vec<(i64, String)>, QueueError> {
        self.call(|reply| Command::UnknownKeys { source: source.to_owned(), keys, reply }).await
    }

    /// The source's last stored checkpoint, as it was serialized.
    pub async fn checkpoint(&self, source: &str) -> Result<Option<String>, QueueError> {
        self.call(|reply| Command::Checkpoint { source: source.to_owned(), reply }).await
    }

    /// Whether the database holds anything this source stored (dedupe keys, queued events or
    /// dead letters). Those are written only with a checkpoint, so with no checkpoint this
    /// means the checkpoint was lost, not that the source never ran.
    pub async fn has_history(&self, source: &str) -> Result<bool, QueueError> {
        self.call(|reply| Command::History { source: source.to_owned(), reply }).await
    }

    /// Stores one page in ONE transaction: prune old dedupe keys (if asked), then for each event
    /// insert its dedupe key (a key already present means a duplicate: the event is skipped,
    /// also within the page), insert the new events and dead letters (one already recorded for
    /// the same source and key is ignored), upsert the checkpoint (if any), commit. Never refused
    /// for lack of room. If the future is dropped after sending, the page is still written.
    ///
    /// The page is shared, not copied: a caller that retries a failed commit keeps its `Arc`.
    pub async fn store_page(&self, page: impl Into<Arc<PageWrite>>) -> Result<StoreOutcome, QueueError> {
        let page = page.into();
        self.call(|reply| Command::StorePage { page, reply }).await
    }

    /// Events after this sink's cursor, by ascending id: at most `max_events` (0 counts as 1)
    /// and stopping before the bodies exceed `max_bytes`, but at least one if any is queued.
    pub async fn read_batch(
        &self,
        sink: &str,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<QueuedEvent>, QueueError> {
        let sink = sink.to_owned();
        self.call(|reply| Command::ReadBatch { sink, max_events, max_bytes, reply }).await
    }

    /// Moves the sink's cursor to `upto_id` (never backwards, never past the newest id stored),
    /// then deletes the events every configured sink is past; one transaction.
    pub async fn ack(&self, sink: &str, upto_id: i64) -> Result<(), QueueError> {
        self.ack_refusing(sink, upto_id, Vec::new()).await
    }

    /// Like [`Queue::ack`], and in the same transaction copies each refused event (at or before
    /// `upto_id`) into the dead-letter table with its reason, so passing it never loses it.
    pub async fn ack_refusing(&self, sink: &str, upto_id: i64, refused: Vec<RefusedEvent>) -> Result<(), QueueError> {
        self.call(|reply| Command::Ack { sink: sink.to_owned(), upto_id, refused, reply }).await
    }

    /// Makes `sinks` the configured set (a reload): a new sink gets a cursor at 0 (it receives
    /// every event still queued); a removed sink's cursor is deleted so it no longer holds
    /// events back, and the events every remaining sink has passed are deleted.
    /// Carries each `(old, new)` sink's cursor and HEC channel over to its new name (see
    /// [`rename_sink_cursors`]); call it after the old name's worker stopped and before
    /// [`Queue::set_sinks`] drops the old cursor.
    pub async fn rename_sinks(&self, renames: Vec<(String, String)>) -> Result<Vec<SinkRename>, QueueError> {
        self.call(|reply| Command::RenameSinks { renames, reply }).await
    }

    pub async fn set_sinks(&self, sinks: Vec<String>) -> Result<(), QueueError> {
        self.call(|reply| Command::SetSinks { sinks, reply }).await
    }

    /// The sink's stored channel id (HEC indexer acknowledgement), created (a random UUID) and
    /// stored on first use, so it stays the same across restarts.
    pub async fn sink_channel(&self, sink: &str) -> Result<String, QueueError> {
        let sink = sink.to_owned();
        self.call(|reply| Command::SinkChannel { sink, reply }).await
    }

    /// Appends a chunk of a streamed answer to `source`'s staging area: committed, so memory
    /// stays bounded, but invisible to sinks until [`Queue::commit_staged`].
    pub async fn stage(
        &self,
        source: &str,
        events: Vec<NewEvent>,
        dead_letters: Vec<NewDeadLetter>,
    ) -> Result<(), QueueError> {
        let source = source.to_owned();
        self.call(|reply| Command::Stage { source, events, dead_letters, reply }).await
    }

    /// ONE transaction: everything staged for `source` enters the queue exactly like
    /// [`Queue::store_page`] would store it (dedupe, dead letters), with the checkpoint, and
    /// the staging area is cleared.
    pub async fn commit_staged(
        &self,
        source: &str,
        checkpoint: Option<String>,
        prune_dedupe_before_ms: Option<i64>,
    ) -> Result<StoreOutcome, QueueError> {
        self.commit_staged_at(source, checkpoint, None, prune_dedupe_before_ms).await
    }

    /// [`Queue::commit_staged`] with the checkpoint's `done_until` (ms since the epoch), checked
    /// as [`PageWrite::done_until_ms`] is: never earlier than the one stored.
    pub async fn commit_staged_at(
        &self,
        source: &str,
        checkpoint: Option<String>,
        done_until_ms: Option<i64>,
        prune_dedupe_before_ms: Option<i64>,
    ) -> Result<StoreOutcome, QueueError> {
        let source = source.to_owned();
        self.call(|reply| Command::CommitStaged { source, checkpoint, done_until_ms, prune_dedupe_before_ms, reply })
            .await
    }

    /// Forgets whatever is staged for `source` (a stream that broke, or was cut by a crash);
    /// returns how many records were dropped from staging (they will be fetched again).
    pub async fn discard_staged(&self, source: &str) -> Result<u64, QueueError> {
        let source = source.to_owned();
        self.call(|reply| Command::DiscardStaged { source, reply }).await
    }

    /// For each sink removed from the configuration since the queue was opened (at open, or by
    /// [`Queue::set_sinks`]), the events it had not delivered, discarded for it; by sink name.
    pub fn discarded_events(&self) -> Vec<(String, u64)> {
        let discarded = self.inner.watches.discarded.lock().unwrap_or_else(PoisonError::into_inner);
        discarded.iter().map(|(sink, n)| (sink.clone(), *n)).collect()
    }

    /// Bytes of event bodies currently queued, and of dead letters (kept until purged).
    pub fn queued_bytes(&self) -> u64 {
        *self.inner.watches.bytes.borrow()
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    /// True when sources must not fetch: `queued_bytes() >= max_bytes()`.
    pub fn is_full(&self) -> bool {
        self.queued_bytes() >= self.inner.max_bytes
    }

    /// Resolves once `queued_bytes() < max_bytes()` (at once if so already). Cancel-safe. It
    /// waits on sinks' acks, so callers select it against their shutdown signal.
    pub async fn wait_for_room(&self) {
        let max = self.inner.max_bytes;
        let mut bytes = self.inner.watches.bytes.subscribe();
        // Err only if the sender is gone, and `self` holds it.
        let _ = bytes.wait_for(|b| *b < max).await;
    }

    /// The newest event id stored (at open: the last id ever issued, or 0); sinks await changes.
    pub fn subscribe_new_events(&self) -> watch::Receiver<i64> {
        self.inner.watches.newest_id.subscribe()
    }

    /// Number of events after this sink's cursor.
    pub async fn backlog(&self, sink: &str) -> Result<u64, QueueError> {
        self.call(|reply| Command::Backlog { sink: sink.to_owned(), reply }).await
    }

    /// When the oldest event this sink has not delivered was stored (ms since the epoch), or
    /// `None` when it has delivered everything.
    pub async fn oldest_queued_ms(&self, sink: &str) -> Result<Option<i64>, QueueError> {
        self.call(|reply| Command::OldestQueued { sink: sink.to_owned(), reply }).await
    }

    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut stats = self.call(|reply| Command::Stats { reply }).await?;
        stats.max_bytes = self.inner.max_bytes;
        Ok(stats)
    }

    /// Dead letters counted by source and by who refused them (`None`: the source could not
    /// map the record; `Some(sink)`: that sink refused the event).
    pub async fn dead_letter_counts(&self) -> Result<Vec<DeadLetterCount>, QueueError> {
        self.call(|reply| Command::DeadLetterCounts { reply }).await
    }

    /// Up to `limit` dead letters, oldest first.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.call(|reply| Command::DeadLetters { limit, reply }).await
    }

    /// Runs the commands already sent, checkpoints the WAL into the main file (TRUNCATE), closes
    /// the database and joins its thread. Other clones then get `QueueError::Closed`.
    pub async fn close(self) -> Result<(), QueueError> {
        let thread = self.inner.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(thread) = thread else { return Ok(()) };
        let closed = self.call(|reply| Command::Close { reply }).await;
        // The thread replies after closing the connection, so this join is immediate.
        thread.join().map_err(|_| QueueError::Closed)?;
        closed
    }

    async fn call<T: Send + 'static>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.inner.commands.send(command(reply)).map_err(|_| QueueError::Closed)?;
        // Wait on the blocking pool, not with `answer.await`: tokio's paused test clock jumps to
        // the next timer whenever the runtime idles, unless a `spawn_blocking` task is running.
        // Our thread is invisible to it, so a plain await would let timeouts around a queue call
        // fire early in every paused-time test of sources and sinks.
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || answer.blocking_recv()).await.map_err(|_| QueueError::Closed)?
            }
            Err(_) => answer.await,
        };
        answer.map_err(|_| QueueError::Closed)?
    }

    #[cfg(test)]
    async fn synchronous(&self) -> Result<i64, QueueError> {
        self.pragma("synchronous").await
    }

    /// The writer connection's value of a pragma.
    #[cfg(test)]
    async fn pragma(&self, name: &'static str) -> Result<i64, QueueError> {
        self.call(|reply| Command::Pragma { name, reply }).await
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.inner.path)
            .field("queued_bytes", &self.queued_bytes())
            .field("max_bytes", &self.inner.max_bytes)
            .finish()
    }
}

/// The database file in `state_dir`.
pub fn database_path(state_dir: &Path) -> PathBuf {
    state_dir.join(DB_FILE)
}

/// Why there is no database in `state_dir`: never one ([`QueueError::Missing`]), or one that
/// was lost ([`QueueError::Lost`]: its marker is still there).
pub fn absent(state_dir: &Path) -> QueueError {
    let (path, marker) = (database_path(state_dir), state_dir.join(MARKER_FILE));
    if marker.exists() { QueueError::Lost { path, marker } } else { QueueError::Missing { path } }
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    // Fixtures shared by the tests of every file of the queue.

    /// A connection of the test's own to the queue's file in `dir` (to damage it, or to set up
    /// an older layout).
    pub(super) fn db(dir: &Path) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.join("auditrelay.db")).unwrap()
    }

    pub(super) fn opts(sinks: &[&str], max_bytes: u64) -> QueueOptions {
        QueueOptions { max_bytes, sinks: sinks.iter().map(|s| s.to_string()).collect() }
    }

    pub(super) fn ev(key: &str, time_ms: i64, body: &str) -> NewEvent {
        NewEvent { dedupe_key: key.into(), event_time_ms: time_ms, body: body.into() }
    }

    pub(super) fn page(source: &str, events: Vec<NewEvent>) -> PageWrite {
        PageWrite { source: source.into(), events, ..PageWrite::default() }
    }

    /// A closed queue in `dir` (one sink, "s") holding `events` of source "src", then `sql` run
    /// on its file (the damage or the old layout a test starts from).
    pub(super) async fn stored_then(dir: &Path, events: Vec<NewEvent>, sql: &str) {
        let q = Queue::open(dir, opts(&["s"], 1000)).unwrap();
        q.store_page(page("src", events)).await.unwrap();
        q.close().await.unwrap();
        rusqlite::Connection::open(dir.join("auditrelay.db")).unwrap().execute_batch(sql).unwrap();
    }

    pub(super) fn bodies(batch: &[QueuedEvent]) -> Vec<String> {
        batch.iter().map(|e| String::from_utf8_lossy(&e.body).into_owned()).collect()
    }

    pub(super) async fn all(q: &Queue, sink: &str) -> Vec<String> {
        bodies(&q.read_batch(sink, 1000, usize::MAX).await.unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_waits_for_room_until_an_ack_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 10)).unwrap();
        timeout(Duration::from_millis(1), q.wait_for_room()).await.unwrap();
        // Never refused for the cap: the page that crosses it is stored whole.
        let out = q.store_page(page("okta", vec![ev("a", 1, "123456"), ev("b", 2, "123456")])).await;
        assert_eq!(out.unwrap().stored, 2);
        assert!(q.is_full());
        assert_eq!((q.queued_bytes(), q.max_bytes()), (12, 10));
        assert!(timeout(Duration::from_secs(3600), q.wait_for_room()).await.is_err());

        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_room().await }
        });
        let first = q.read_batch("s", 1, usize::MAX).await.unwrap();
        q.ack("s", first[0].id).await.unwrap();
        timeout(Duration::from_millis(1), waiter).await.unwrap().unwrap();
        assert!(!q.is_full());
        q.close().await.unwrap();
    }

    /// Dead letters live in the same database and disk: they count against `max_bytes` (issue
    /// 15, point 11), from a source's page, from a sink's refusal, and across a restart; a
    /// purge frees their room, a replay moves it back to the events.
    #[tokio::test(start_paused = true)]
    async fn dead_letters_count_against_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 20)).unwrap();
        let mut p = page("okta", vec![ev("a", 1, "12345"), ev("b", 2, "67890")]);
        p.dead_letters =
            vec![NewDeadLetter { key: "bad".into(), reason: "unmappable".into(), raw: b"0123456789".to_vec() }];
        q.store_page(p).await.unwrap();
        assert_eq!(q.queued_bytes(), 20, "10 bytes of events + 10 of the source's dead letter");
        assert!(q.is_full());

        // The sink refuses event "a" and delivers "b": "a" is freed from events but kept as a
        // dead letter, so only "b"'s 5 bytes leave.
        let batch = q.read_batch("s", 10, usize::MAX).await.unwrap();
        let refused = vec![RefusedEvent { id: batch[0].id, reason: "refused".into() }];
        q.ack_refusing("s", batch[1].id, refused).await.unwrap();
        assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 15));
        q.close().await.unwrap();

        let q = Queue::open(dir.path(), opts(&["s"], 20)).unwrap();
        assert_eq!(q.queued_bytes(), 15, "measured at open too");
        let letters = q.dead_letters(10).await.unwrap();
        let refused = letters.iter().find(|l| l.sink.is_some()).unwrap();
        let items = vec![RequeueItem { dead_letter_id: refused.id }];
        q.requeue_dead_letters(items).await.unwrap();
        assert_eq!(q.queued_bytes(), 15, "a replay moves the bytes from dead letters to events");
        let selection = DeadLetterSelection { source: Some("okta".into()), ..DeadLetterSelection::default() };
        assert_eq!(q.purge_dead_letters(selection).await.unwrap(), 1);
        assert_eq!(q.queued_bytes(), 5, "a purge frees the room");
        q.close().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_jump_while_a_call_is_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let started = tokio::time::Instant::now();
        for i in 0..20 {
            let p = page("okta", vec![ev(&format!("k{i}"), i, "x")]);
            timeout(Duration::from_millis(1), q.store_page(p)).await.unwrap().unwrap();
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        q.close().await.unwrap();
    }

    #[tokio::test]
    async fn calls_after_close_fail_as_closed() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let other = q.clone();
        q.close().await.unwrap();
        assert!(matches!(other.backlog("s").await, Err(QueueError::Closed)));
        other.close().await.unwrap();
        let wal = std::fs::metadata(dir.path().join("auditrelay.db-wal"));
        assert_eq!(wal.map(|m| m.len()).unwrap_or(0), 0, "WAL folded into the database");
    }
}
