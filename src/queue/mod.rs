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
//! to deliver (sinks `read_batch`, send, then `ack`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::types::FromSql;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{oneshot, watch};

const DB_FILE: &str = "auditrelay.db";
/// Written beside the database once it exists. While it is there, a missing database is an error
/// (lost state), never a silent fresh start.
const MARKER_FILE: &str = "auditrelay.db.created";
/// How many problems `PRAGMA quick_check` lists before it stops.
const QUICK_CHECK_PROBLEMS: u32 = 5;
/// The `PRAGMA user_version` this code writes and understands.
const SCHEMA_VERSION: i64 = 7;

const SCHEMA: &str = "
-- AUTOINCREMENT: an id is never reused, even after every row was deleted. A reused id at or
-- below a sink's cursor would be skipped by that sink.
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_time_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    collected_ms INTEGER NOT NULL DEFAULT 0 -- since version 4: when the page was stored
);
-- Version 5: keyed by event time first. A record is the same record when its source, time and
-- key are; keys arriving in time order then fill the b-tree at one end (vendor ids are random,
-- so a (source, key) key scattered every page's inserts over the whole table), and pruning by
-- time needs no second index.
CREATE TABLE IF NOT EXISTS dedupe (
    source TEXT NOT NULL,
    event_time_ms INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (source, event_time_ms, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    source TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_cursors (sink TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
-- A record a source could not turn into an event (sink NULL; raw = the vendor's bytes), or, since
-- version 3, an event a sink refused for good (raw = the OCSF event; key = <sink>#<event id>).
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    reason TEXT NOT NULL,
    raw BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    sink TEXT,
    UNIQUE (source, key)
);
-- Version 2: records of a streamed answer (Astronomer's one-window export) wait here until the
-- whole answer was read; then one transaction moves them into the queue with the checkpoint.
-- Sinks never see them; a stream that breaks leaves nothing half-stored in `events`.
CREATE TABLE IF NOT EXISTS staged (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    dead INTEGER NOT NULL,          -- 0: an event; 1: a dead letter
    key TEXT NOT NULL,
    event_time_ms INTEGER NOT NULL,
    body BLOB NOT NULL,             -- the event body, or the dead letter's raw bytes
    reason TEXT                     -- dead letters only
);
CREATE INDEX IF NOT EXISTS staged_by_source ON staged (source, seq);
-- Version 4: a sink's identity towards its receiver that must survive restarts (the HEC
-- indexer-acknowledgement channel).
CREATE TABLE IF NOT EXISTS sink_channels (sink TEXT PRIMARY KEY, channel TEXT NOT NULL);
-- Version 6: each source's checkpoint time (`done_until`, ms since the epoch) as a number beside
-- its opaque checkpoint text, so the queue can refuse a checkpoint that moves backwards without
-- reading the source's JSON (invariant 1).
CREATE TABLE IF NOT EXISTS source_progress (source TEXT PRIMARY KEY, done_until_ms INTEGER NOT NULL);
-- Version 6: a vendor's rate-limit pause (429 Retry-After, spent budget), per credential
-- (`sources::ratelimit::credential_key`: vendor and a hash, never the secret), in wall-clock ms,
-- so that a restart or reload inside it sends nothing until it ends.
-- Version 7: also against time since boot (`boot_id`; `boot_at_ms`, `boot_until_ms`: CLOCK_BOOTTIME
-- in ms when stored and at the end), which a wall-clock step does not move; the wall time serves
-- only after a reboot (another boot id, or an uptime below `boot_at_ms`).
CREATE TABLE IF NOT EXISTS rate_pauses (
    credential TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL,
    boot_id TEXT,
    boot_at_ms INTEGER,
    boot_until_ms INTEGER
);
PRAGMA user_version = 7;
";

/// Run before `SCHEMA` on a version 6 database, whose `rate_pauses` has only the wall time.
const ADD_BOOT_PAUSE: &str = "ALTER TABLE rate_pauses ADD COLUMN boot_id TEXT;
ALTER TABLE rate_pauses ADD COLUMN boot_at_ms INTEGER;
ALTER TABLE rate_pauses ADD COLUMN boot_until_ms INTEGER;";

/// Run before `SCHEMA` on a version 1 or 2 database, whose `dead_letters` lacks the `sink` column.
const ADD_DEAD_LETTER_SINK: &str = "ALTER TABLE dead_letters ADD COLUMN sink TEXT;";
/// Run before `SCHEMA` on a version 1 to 3 database, whose `events` lacks `collected_ms`.
const ADD_COLLECTED_MS: &str = "ALTER TABLE events ADD COLUMN collected_ms INTEGER NOT NULL DEFAULT 0;";
/// Run before `SCHEMA` on a version 1 to 4 database: the dedupe keys move to the version 5
/// table, keyed by time first (its old index goes with the old table).
const DEDUPE_BY_TIME: &str = "
CREATE TABLE dedupe_v5 (
    source TEXT NOT NULL,
    event_time_ms INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (source, event_time_ms, key)
) WITHOUT ROWID;
INSERT INTO dedupe_v5 (source, event_time_ms, key) SELECT source, event_time_ms, key FROM dedupe;
DROP TABLE dedupe;
ALTER TABLE dedupe_v5 RENAME TO dedupe;
";

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

/// Where a committing transaction takes its records from.
enum Content<'a> {
    Memory {
        events: &'a [NewEvent],
        dead_letters: &'a [NewDeadLetter],
    },
    /// Everything staged for the source, in order (then the staging area is cleared).
    Staged,
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
    /// When the agent stored it (ms since the epoch; 0 for events queued before version 4).
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
        "queue database {} is damaged ({detail}); refusing to start on it.{checkpoints} {RECOVERY}",
        path.display()
    )]
    Damaged { path: PathBuf, detail: String, checkpoints: String },
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

/// Everything the database thread does, dispatched in `Writer::run`.
enum Command {
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
    #[cfg(test)]
    Synchronous {
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

impl Queue {
    /// Creates `state_dir` if missing, opens or creates the database and spawns its thread.
    ///
    /// Blocking (it runs SQLite on the caller's thread); call it at startup. Configured sinks
    /// without a cursor start at 0 (they get every event still queued); cursors of sinks no
    /// longer configured are deleted with a warning so they do not pin the queue.
    pub fn open(state_dir: &Path, opts: QueueOptions) -> Result<Queue, QueueError> {
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
        let (bytes, newest_id) = conn
            .query_row(
                // sqlite_sequence keeps the last id issued even when the table is empty. Dead
                // letters count against max_bytes too: they are on the same disk, for good.
                "SELECT (SELECT COALESCE(SUM(length(body)), 0) FROM events)
                        + (SELECT COALESCE(SUM(length(raw)), 0) FROM dead_letters),
                        MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                            COALESCE((SELECT MAX(id) FROM events), 0))",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .op(&path, "measure the queue")?;
        let watches = Arc::new(Watches {
            bytes: watch::Sender::new(to_u64(bytes)),
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
            #[cfg(test)]
            groups: 0,
        };
        let (commands, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("auditrelay-queue".into())
            .spawn(move || writer.run(receiver))
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
        self.call(|reply| Command::Synchronous { reply }).await
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

/// Opens the file, checks what it is, sets the pragmas, creates the schema and reconciles the
/// sink cursors with the configured sinks.
/// The connection, and the sinks no longer configured whose cursors it deleted, with the events
/// each had not delivered ([`reconcile_cursors`]).
fn open_connection(path: &Path, sinks: &BTreeSet<String>) -> Result<(Connection, Vec<(String, u64)>), QueueError> {
    // SQLite opens lazily: a foreign file shows up at the first read, as NOTADB (or CORRUPT).
    let fail = |source: rusqlite::Error| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => QueueError::NotADatabase { path: path.to_owned() },
        Some(ErrorCode::DatabaseCorrupt) => {
            QueueError::Damaged { path: path.to_owned(), detail: source.to_string(), checkpoints: String::new() }
        }
        _ => QueueError::Open { path: path.to_owned(), source },
    };
    let mut conn = Connection::open(path).map_err(fail)?;
    // Only an operator's `sqlite3` could hold a lock; wait for it rather than fail at once.
    conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(fail)?;
    if found > SCHEMA_VERSION {
        return Err(QueueError::NewerSchema { path: path.to_owned(), found, supported: SCHEMA_VERSION });
    }
    check_integrity(&conn, path)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a filesystem without shared memory. FULL sync keeps commits durable; only slower.
        tracing::warn!(path = %path.display(), mode, "queue database cannot use WAL journal mode");
    }
    // FULL: a commit is on disk before we reply, so a checkpoint never outruns its events.
    conn.pragma_update(None, "synchronous", "FULL").map_err(fail)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES).map_err(fail)?;

    let tx = conn.transaction().map_err(fail)?;
    if (1..3).contains(&found) {
        tx.execute_batch(ADD_DEAD_LETTER_SINK).op(path, "add the dead_letters.sink column")?;
    }
    if (1..4).contains(&found) {
        tx.execute_batch(ADD_COLLECTED_MS).op(path, "add the events.collected_ms column")?;
    }
    if (1..5).contains(&found) {
        tx.execute_batch(DEDUPE_BY_TIME).op(path, "key the dedupe table by time")?;
    }
    if found == 6 {
        tx.execute_batch(ADD_BOOT_PAUSE).op(path, "add the rate_pauses boot columns")?;
    }
    if found < SCHEMA_VERSION {
        tx.execute_batch(SCHEMA).op(path, "create the schema")?;
    }
    let (_, removed) = reconcile_cursors(&tx, path, sinks)?;
    tx.commit().op(path, "commit the schema and sink cursors")?;
    Ok((conn, removed))
}

/// `PRAGMA quick_check` (every page and index structure, O(size): about 1 s per GiB cached,
/// about 25 s per GiB from a cold, slow disk — measured on a 1.2 GiB queue): a
/// damaged file is refused before anything is written into it. The error lists the checkpoints
/// that can still be read, so the operator knows where each source stood.
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), QueueError> {
    let damaged =
        |detail: String| QueueError::Damaged { path: path.to_owned(), detail, checkpoints: readable_checkpoints(conn) };
    let problems: rusqlite::Result<Vec<String>> = conn
        .prepare(&format!("PRAGMA quick_check({QUICK_CHECK_PROBLEMS})"))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect());
    match problems {
        Ok(p) if p.len() == 1 && p[0] == "ok" => Ok(()),
        Ok(p) => Err(damaged(p.join("; "))),
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// " Last checkpoints readable: a done until …; b …" (empty when none can be read).
fn readable_checkpoints(conn: &Connection) -> String {
    let rows: rusqlite::Result<Vec<(String, String)>> = conn
        .prepare("SELECT source, state FROM checkpoints ORDER BY source")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
    let Ok(rows) = rows else { return String::new() };
    if rows.is_empty() {
        return String::new();
    }
    let described: Vec<String> = rows
        .iter()
        .map(|(source, state)| {
            let done = serde_json::from_str::<serde_json::Value>(state)
                .ok()
                .and_then(|v| v.get("done_until").and_then(|d| d.as_str()).map(str::to_owned));
            match done {
                Some(done) => format!("{source} collected up to {done}"),
                None => format!("{source}: {state}"),
            }
        })
        .collect();
    format!(" Last checkpoints readable: {}.", described.join("; "))
}

/// Makes the cursor table hold exactly `sinks`: new ones start at 0, removed ones are deleted
/// (with a warning), then the events every remaining cursor is past are deleted (a removed
/// sink may have been the one holding them back). Returns the body bytes freed, and each
/// removed sink with the events it had not delivered (discarded for it); the caller counts
/// them once the transaction is committed.
fn reconcile_cursors(
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
fn backlog_of(tx: &Connection, sink: &str) -> rusqlite::Result<(u64, u64)> {
    tx.query_row(
        "SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM events
         WHERE id > (SELECT last_id FROM sink_cursors WHERE sink = ?1)",
        [sink],
        |r| Ok((to_u64(r.get(0)?), to_u64(r.get(1)?))),
    )
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
fn apply_renames(tx: &Connection, path: &Path, renames: &[(String, String)]) -> Result<Vec<SinkRename>, QueueError> {
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

/// Deletes the events every remaining cursor is past; returns the body bytes freed. The cursor
/// table holds exactly the configured sinks (`open_connection` and `write_group` see to it).
/// With no sink configured nothing is deleted: nobody has taken the events yet.
fn delete_acked(tx: &Connection) -> rusqlite::Result<u64> {
    let floor: Option<i64> = tx.query_row("SELECT MIN(last_id) FROM sink_cursors", [], |r| r.get(0))?;
    let Some(floor) = floor else { return Ok(0) };
    let mut delete = tx.prepare_cached("DELETE FROM events WHERE id <= ?1 RETURNING length(body)")?;
    let freed: i64 = delete.query_map([floor], |r| r.get::<_, i64>(0))?.sum::<rusqlite::Result<_>>()?;
    Ok(to_u64(freed))
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

/// One page (its events, or everything staged for its source) with its checkpoint, inside the
/// caller's transaction (invariants 1 and 2). Returns the outcome and the body bytes added;
/// `newest_id` follows the ids issued.
fn write_page(
    tx: &Connection,
    source: &str,
    content: Content<'_>,
    checkpoint: Option<&str>,
    prune_dedupe_before_ms: Option<i64>,
    newest_id: &mut i64,
) -> rusqlite::Result<(StoreOutcome, u64)> {
    let mut outcome = StoreOutcome::default();
    let mut added = 0u64;
    // Prune before inserting: a late record older than the bound keeps its new key until the
    // next page, so a refetch of it is still recognised.
    if let Some(before) = prune_dedupe_before_ms {
        tx.execute("DELETE FROM dedupe WHERE source = ?1 AND event_time_ms < ?2", params![source, before])?;
    }
    let mut key = tx.prepare_cached("INSERT OR IGNORE INTO dedupe (source, event_time_ms, key) VALUES (?1, ?2, ?3)")?;
    let mut event =
        tx.prepare_cached("INSERT INTO events (source, event_time_ms, body, collected_ms) VALUES (?1, ?2, ?3, ?4)")?;
    let collected_ms = now_ms();
    let mut dead = tx.prepare_cached(
        "INSERT OR IGNORE INTO dead_letters (source, key, reason, raw, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    // Dead letters count against `max_bytes` too.
    let mut dead_bytes = 0u64;
    let mut put_event = |k: &str, time_ms: i64, body: &[u8]| -> rusqlite::Result<()> {
        if key.execute(params![source, time_ms, k])? == 0 {
            outcome.duplicates += 1;
            return Ok(());
        }
        event.execute(params![source, time_ms, body, collected_ms])?;
        *newest_id = tx.last_insert_rowid();
        outcome.stored += 1;
        added += body.len() as u64;
        Ok(())
    };
    match content {
        Content::Memory { events, dead_letters } => {
            for e in events {
                put_event(&e.dedupe_key, e.event_time_ms, &e.body)?;
            }
            for d in dead_letters {
                let stored = dead.execute(params![source, d.key, d.reason, d.raw, now_ms()])?;
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
                    let stored = dead.execute(params![source, k, reason, body, now_ms()])?;
                    outcome.dead_lettered += stored;
                    dead_bytes += (stored as u64) * body.len() as u64;
                } else {
                    put_event(&k, time_ms, body)?;
                }
            }
            tx.execute("DELETE FROM staged WHERE source = ?1", [source])?;
        }
    }
    if let Some(state) = checkpoint {
        tx.execute(
            "INSERT INTO checkpoints (source, state, updated_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (source) DO UPDATE
             SET state = excluded.state, updated_at_ms = excluded.updated_at_ms",
            params![source, state, now_ms()],
        )?;
    }
    Ok((outcome, added + dead_bytes))
}

/// Records a checkpoint's `done_until` inside the caller's transaction, refusing one earlier than
/// the stored one (invariant 1: a checkpoint never moves backwards); `None` forgets it (an
/// operator's explicit `queue set-checkpoint`). The refusal is the caller's: its savepoint is
/// rolled back, so nothing of the page is stored.
fn write_progress(tx: &Connection, path: &Path, source: &str, done_until_ms: Option<i64>) -> Result<(), QueueError> {
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
fn write_stage(
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
fn write_ack(tx: &Connection, sink: &str, upto: i64, refused: &[RefusedEvent]) -> rusqlite::Result<(u64, u64)> {
    let mut added = 0u64;
    if !refused.is_empty() {
        // Copied from the row itself, before the delete below can remove it. An event this sink
        // already passed (or that is gone) is not copied twice: the key is unique.
        let mut copy = tx.prepare_cached(
            "INSERT OR IGNORE INTO dead_letters (source, key, reason, raw, created_at_ms, sink)
             SELECT source, ?1 || '#' || id, ?2, body, ?3, ?1 FROM events WHERE id = ?4
             RETURNING length(raw)",
        )?;
        for r in refused.iter().filter(|r| r.id <= upto) {
            let len = copy.query_row(params![sink, r.reason, now_ms(), r.id], |row| row.get::<_, i64>(0)).optional()?;
            added += len.map_or(0, to_u64);
        }
    }
    tx.execute("UPDATE sink_cursors SET last_id = MAX(last_id, ?2) WHERE sink = ?1", params![sink, upto])?;
    Ok((added, delete_acked(tx)?))
}

/// The writer's own automatic checkpoint, in WAL pages: only a backstop (64 MiB of WAL) for when
/// the [`Checkpointer`] falls behind or fails.
const WRITER_AUTOCHECKPOINT_PAGES: i64 = 16_384;

/// At most one checkpoint per this interval; frames written meanwhile go with the next.
const CHECKPOINT_PACE: Duration = Duration::from_millis(50);

/// Copies the WAL into the database file on its own thread and connection (`PRAGMA
/// wal_checkpoint(PASSIVE)`, which never blocks the writer), so commits, and the sources and
/// sinks waiting on them, do not stop for it; it also runs on the other core. Woken after each
/// write group.
struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, QueueError> {
        let conn = Connection::open(path).op(path, "open the checkpoint connection")?;
        conn.busy_timeout(Duration::from_secs(5)).op(path, "open the checkpoint connection")?;
        conn.pragma_update(None, "synchronous", "FULL").op(path, "open the checkpoint connection")?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (path, stop) = (path.to_owned(), Arc::clone(&stopping));
        let thread = std::thread::Builder::new()
            .name("auditrelay-wal".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(path = %path.display(), error = %e,
                            "cannot checkpoint the queue database's WAL; the writer's own checkpoints take over");
                    }
                    if stop.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                    // The pace; `stop` cuts it short.
                    std::thread::park_timeout(CHECKPOINT_PACE);
                }
            })
            .map_err(QueueError::Thread)?;
        Ok(Checkpointer { wake, stopping, thread })
    }

    /// Asks for a checkpoint; one already asked for is enough.
    fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Lets the thread finish the checkpoint it may be running, and joins it.
    fn stop(self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        drop(self.wake);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

/// Owns the connection; lives on the database thread.
struct Writer {
    conn: Connection,
    path: PathBuf,
    sinks: BTreeSet<String>,
    /// The last event id issued; acks are clamped to it.
    newest_id: i64,
    watches: Arc<Watches>,
    /// The connection's `synchronous` is FULL (else NORMAL); see [`Writer::write_group`].
    durable: bool,
    checkpointer: Option<Checkpointer>,
    #[cfg(test)]
    groups: u64,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        // A command taken while gathering a group, handled right after it.
        let mut held = None;
        loop {
            let command = match held.take() {
                Some(command) => command,
                None => match commands.recv() {
                    Ok(command) => command,
                    // Every handle dropped without `close`: dropping the connection still
                    // checkpoints the WAL.
                    Err(_) => return,
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
                Command::Synchronous { reply } => {
                    let value = self.conn.pragma_query_value(None, "synchronous", |r| r.get(0));
                    let _ = reply.send(value.op(&self.path, "read synchronous"));
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
        let Writer { conn, path, sinks, newest_id, watches, .. } = self;
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
                let written = match command {
                    Command::StorePage { page, .. } => {
                        if page.checkpoint.is_some() {
                            write_progress(&sp, path, &page.source, page.done_until_ms)?;
                        }
                        let content = Content::Memory { events: &page.events, dead_letters: &page.dead_letters };
                        let checkpoint = page.checkpoint.as_deref();
                        let prune = page.prune_dedupe_before_ms;
                        write_page(&sp, &page.source, content, checkpoint, prune, &mut newest_here)
                            .map(|(outcome, added)| Written::Page(outcome, added))
                            .op(path, "store a page")?
                    }
                    Command::CommitStaged { source, checkpoint, done_until_ms, prune_dedupe_before_ms, .. } => {
                        if checkpoint.is_some() {
                            write_progress(&sp, path, source, *done_until_ms)?;
                        }
                        let checkpoint = checkpoint.as_deref();
                        write_page(&sp, source, Content::Staged, checkpoint, *prune_dedupe_before_ms, &mut newest_here)
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
                        write_ack(&sp, sink, upto, refused)
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
                     OR EXISTS (SELECT 1 FROM events WHERE source = ?1)
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

    fn read_batch(&self, sink: &str, max_events: usize, max_bytes: usize) -> Result<Vec<QueuedEvent>, QueueError> {
        let after = self.cursor(sink)?;
        let read = || -> rusqlite::Result<Vec<QueuedEvent>> {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, body, collected_ms FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")?;
            let limit = i64::try_from(max_events.max(1)).unwrap_or(i64::MAX);
            let mut rows = stmt.query(params![after, limit])?;
            let (mut batch, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = rows.next()? {
                let body: Vec<u8> = row.get(1)?;
                bytes = bytes.saturating_add(body.len());
                if bytes > max_bytes && !batch.is_empty() {
                    break;
                }
                batch.push(QueuedEvent { id: row.get(0)?, body, collected_ms: row.get(2)? });
            }
            Ok(batch)
        };
        read().op(&self.path, "read a batch")
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
        let after = self.cursor(sink)?;
        self.conn
            .query_row("SELECT COUNT(*) FROM events WHERE id > ?1", [after], |r| r.get(0))
            .map(to_u64)
            .op(&self.path, "count a backlog")
    }

    fn stats(&self) -> Result<QueueStats, QueueError> {
        let read = || -> rusqlite::Result<QueueStats> {
            let count = |sql: &str| self.conn.query_row(sql, [], |r| r.get(0)).map(to_u64);
            fn pairs<A: FromSql, B: FromSql>(c: &Connection, sql: &str) -> rusqlite::Result<Vec<(A, B)>> {
                c.prepare(sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
            }
            Ok(QueueStats {
                events: count("SELECT COUNT(*) FROM events")?,
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

// ---------------------------------------------------------------------------------------------
// Operator commands (`auditrelay queue …`): a read-only view of the database for `stats` and
// `dead-letters`, and, through the writer thread, selecting, replaying and purging dead letters.
// The commands that write take the state directory's lock first (`lock.rs`), so no agent runs.
// ---------------------------------------------------------------------------------------------

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

/// A dead letter to put back into the queue, and the event time to queue it with (the caller
/// reads it from the event: the queue does not interpret bodies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequeueItem {
    pub dead_letter_id: i64,
    pub event_time_ms: i64,
}

/// A dead letter that became a new event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requeued {
    pub dead_letter_id: i64,
    pub event_id: i64,
}

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

/// A read-only connection to the queue database, for looking without changing anything: it
/// never creates the file or the directory, migrates the schema or reconciles sink cursors
/// (all of which [`Queue::open`] does), and it reads beside a running agent (WAL allows readers
/// next to the writer).
pub struct QueueView {
    conn: Connection,
    path: PathBuf,
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
fn read_dead_letters(
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
fn dead_letter_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
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

fn count_dead_letters(conn: &Connection, selection: &DeadLetterSelection) -> rusqlite::Result<u64> {
    let (ids, source, sink, before) = selection.params();
    let sql = format!("SELECT COUNT(*) FROM dead_letters WHERE {SELECTED}");
    conn.query_row(&sql, params![ids, source, sink, before], |r| r.get(0)).map(to_u64)
}

fn dead_letter_counts_of(conn: &Connection) -> rusqlite::Result<Vec<DeadLetterCount>> {
    let mut stmt =
        conn.prepare("SELECT source, sink, COUNT(*) FROM dead_letters GROUP BY source, sink ORDER BY source, sink")?;
    let rows = stmt.query_map([], |r| {
        Ok(DeadLetterCount { source: r.get(0)?, sink: r.get(1)?, count: r.get::<_, i64>(2).map(to_u64)? })
    })?;
    rows.collect()
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

    /// Counts, cursors, backlogs, checkpoints and dead-letter counts, as of one instant.
    pub fn overview(&mut self) -> Result<QueueOverview, QueueError> {
        let tx = self.conn.transaction().op(&self.path, "begin reading")?;
        let read = |tx: &Transaction<'_>| -> rusqlite::Result<QueueOverview> {
            let (events, bytes, newest_id) = tx.query_row(
                "SELECT COUNT(*), COALESCE(SUM(length(body)), 0),
                        MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                            COALESCE(MAX(id), 0))
                 FROM events",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)),
            )?;
            let sinks = tx
                .prepare(
                    "SELECT c.sink, c.last_id,
                            (SELECT COUNT(*) FROM events WHERE id > c.last_id),
                            (SELECT collected_ms FROM events WHERE id > c.last_id ORDER BY id LIMIT 1)
                     FROM sink_cursors c ORDER BY c.sink",
                )?
                .query_map([], |r| {
                    Ok(SinkPosition {
                        sink: r.get(0)?,
                        cursor: r.get(1)?,
                        backlog: r.get::<_, i64>(2).map(to_u64)?,
                        oldest_pending_ms: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
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
                events: to_u64(events),
                bytes: to_u64(bytes),
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
    fn select_dead_letters(&self, selection: &DeadLetterSelection) -> Result<Vec<DeadLetter>, QueueError> {
        read_dead_letters(&self.conn, selection, None).op(&self.path, "read dead letters")
    }

    fn requeue_dead_letters(&mut self, items: &[RequeueItem]) -> Result<Vec<Requeued>, QueueError> {
        let (mut requeued, mut newest_id) = (Vec::new(), self.newest_id);
        let tx =
            self.conn.transaction_with_behavior(TransactionBehavior::Immediate).op(&self.path, "begin a replay")?;
        let mut write = || -> rusqlite::Result<()> {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (source, event_time_ms, body, collected_ms)
                 SELECT source, ?2, raw, ?3 FROM dead_letters WHERE id = ?1 AND sink IS NOT NULL
                 RETURNING id, length(body)",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
            for item in items {
                let row = insert
                    .query_row(params![item.dead_letter_id, item.event_time_ms, now_ms()], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()?;
                let Some((event_id, _len)) = row else { continue };
                delete.execute([item.dead_letter_id])?;
                requeued.push(Requeued { dead_letter_id: item.dead_letter_id, event_id });
                newest_id = event_id;
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

    fn purge_dead_letters(&mut self, selection: &DeadLetterSelection) -> Result<u64, QueueError> {
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

// ---------------------------------------------------------------------------------------------
// End of the operator commands.
// ---------------------------------------------------------------------------------------------

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Wall time for `updated_at_ms` / `created_at_ms`: informational only, never compared.
fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    fn opts(sinks: &[&str], max_bytes: u64) -> QueueOptions {
        QueueOptions { max_bytes, sinks: sinks.iter().map(|s| s.to_string()).collect() }
    }

    fn ev(key: &str, time_ms: i64, body: &str) -> NewEvent {
        NewEvent { dedupe_key: key.into(), event_time_ms: time_ms, body: body.into() }
    }

    fn page(source: &str, events: Vec<NewEvent>) -> PageWrite {
        PageWrite { source: source.into(), events, ..PageWrite::default() }
    }

    fn bodies(batch: &[QueuedEvent]) -> Vec<String> {
        batch.iter().map(|e| String::from_utf8_lossy(&e.body).into_owned()).collect()
    }

    async fn all(q: &Queue, sink: &str) -> Vec<String> {
        bodies(&q.read_batch(sink, 1000, usize::MAX).await.unwrap())
    }

    #[tokio::test]
    async fn open_sets_wal_full_sync_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("state"), opts(&["a"], 1000)).unwrap();
        assert_eq!(q.path(), dir.path().join("state").join("auditrelay.db"));
        assert_eq!(q.synchronous().await.unwrap(), 2, "synchronous=FULL on the writer");
        let other = Connection::open(q.path()).unwrap();
        let mode: String = other.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        let version: i64 = other.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!((mode.as_str(), version), ("wal", SCHEMA_VERSION));
        q.close().await.unwrap();
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
        let items = vec![RequeueItem { dead_letter_id: refused.id, event_time_ms: 1 }];
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

    #[test]
    fn a_foreign_file_is_not_a_database_and_the_error_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditrelay.db");
        std::fs::write(&path, "this is not a database\n".repeat(200)).unwrap();
        let err = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap_err();
        assert!(matches!(&err, QueueError::NotADatabase { path: p } if *p == path), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()) && msg.contains("move it aside"), "{msg}");
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

    #[tokio::test]
    async fn a_version_1_database_gains_the_staging_table_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("a", vec![ev("k", 1, "x")])).await.unwrap();
        q.close().await.unwrap();
        let old = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        old.execute_batch(
            "DROP TABLE staged; DROP TABLE sink_channels; ALTER TABLE dead_letters DROP COLUMN sink;
             ALTER TABLE events DROP COLUMN collected_ms; PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(old);
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.stage("a", vec![ev("k2", 2, "y")], vec![]).await.unwrap();
        q.commit_staged("a", None, None).await.unwrap();
        assert_eq!(all(&q, "s").await, ["x", "y"]);
        q.close().await.unwrap();
        let version: i64 = Connection::open(dir.path().join("auditrelay.db"))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn a_version_4_database_keeps_its_dedupe_keys_in_the_time_keyed_table() {
        let dir = tempfile::tempdir().unwrap();
        Queue::open(dir.path(), opts(&["s"], 1000)).unwrap().close().await.unwrap();
        let old = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        old.execute_batch(
            "DROP TABLE dedupe;
             CREATE TABLE dedupe (source TEXT NOT NULL, key TEXT NOT NULL, event_time_ms INTEGER NOT NULL,
                                  PRIMARY KEY (source, key)) WITHOUT ROWID;
             CREATE INDEX dedupe_by_time ON dedupe (source, event_time_ms);
             INSERT INTO dedupe VALUES ('a', 'k1', 1), ('a', 'k2', 2);
             PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(old);
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let outcome = q.store_page(page("a", vec![ev("k1", 1, "x"), ev("k3", 3, "y")])).await.unwrap();
        assert_eq!((outcome.stored, outcome.duplicates), (1, 1), "k1 was known before the upgrade");
        let mut pruned = page("a", vec![ev("k2", 2, "z")]);
        pruned.prune_dedupe_before_ms = Some(3);
        assert_eq!(q.store_page(pruned).await.unwrap().stored, 1, "keys older than the bound are pruned first");
        q.close().await.unwrap();
        let db = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let index: i64 =
            db.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'dedupe_by_time'", [], |r| r.get(0)).unwrap();
        assert_eq!(index, 0, "the old index went with the old table");
    }

    #[tokio::test]
    async fn a_version_6_database_keeps_its_wall_clock_pauses_and_gains_the_boot_columns() {
        let dir = tempfile::tempdir().unwrap();
        Queue::open(dir.path(), opts(&["s"], 1000)).unwrap().close().await.unwrap();
        let old = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        old.execute_batch(
            "DROP TABLE rate_pauses;
             CREATE TABLE rate_pauses (credential TEXT PRIMARY KEY, until_ms INTEGER NOT NULL);
             INSERT INTO rate_pauses VALUES ('aitronos:abc', 1234);
             PRAGMA user_version = 6;",
        )
        .unwrap();
        drop(old);
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        let kept = q.rate_pause("aitronos:abc").await.unwrap();
        assert_eq!(kept, Some(StoredPause { until_ms: 1234, boot: None }), "a pause stored before the upgrade");
        let both =
            StoredPause { until_ms: 5678, boot: Some(BootPause { id: "boot-1".into(), at_ms: 40, until_ms: 42 }) };
        q.set_rate_pause("aitronos:abc", both.clone()).await.unwrap();
        assert_eq!(q.rate_pause("aitronos:abc").await.unwrap(), Some(both));
        q.close().await.unwrap();
        let version: i64 = Connection::open(dir.path().join("auditrelay.db"))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auditrelay.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap_err();
        assert!(matches!(err, QueueError::NewerSchema { found: 99, supported: SCHEMA_VERSION, .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
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

    // Operator commands: the read-only view, replay (requeue) and purge of dead letters.

    /// Events "a", "b", "c" of "okta"; sink "s" refused "b" and acked all three (so the queue is
    /// empty); one unmappable record of "okta" and one of "github". Dead letters: 1 and 2 the
    /// records, 3 the refused event.
    async fn with_dead_letters(dir: &Path) -> Queue {
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
        let items = [3, 1, 99].map(|id| RequeueItem { dead_letter_id: id, event_time_ms: 2 }).to_vec();
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
        assert!(
            q.requeue_dead_letters(vec![RequeueItem { dead_letter_id: 3, event_time_ms: 2 }]).await.unwrap().is_empty()
        );
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
