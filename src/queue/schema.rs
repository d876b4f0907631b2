//! The database's schema, its version and the migrations from every older version; opening the
//! file (pragmas, the integrity check that refuses a damaged one) and creating or upgrading the
//! schema in one transaction with the sink cursors' reconciliation.
//!
//! It leaves the sink cursors' rules to `cursors.rs`, and what a checkpoint says to the sources:
//! a damaged database's error lists the checkpoints as stored ([`ReadableCheckpoint`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::checkpoint::WRITER_AUTOCHECKPOINT_BYTES;
use super::cursors::reconcile_cursors;
use super::pages::{RowWriter, set_issued};
use super::{QueueError, ReadableCheckpoint, SqliteContext};

/// How many problems `PRAGMA quick_check` lists before it stops.
const QUICK_CHECK_PROBLEMS: u32 = 5;
/// The `PRAGMA user_version` this code writes and understands.
pub(super) const SCHEMA_VERSION: i64 = 10;

const SCHEMA: &str = "
-- Version 9: events stored a page at a time (`pages.rs`): the events `first_id..=last_id` of one
-- source page, stored together; `sizes` is each body's length (4 bytes little-endian per event),
-- `body` the bodies concatenated, as `codec` says (0: as they are, the only one written). Before,
-- one `events` row per event. The ids' table, `event_ids`, is `ENSURE_EVENT_IDS`.
CREATE TABLE IF NOT EXISTS pages (
    first_id INTEGER PRIMARY KEY,
    last_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    collected_ms INTEGER NOT NULL,  -- when the page was stored (ms since the epoch)
    sizes BLOB NOT NULL,
    codec INTEGER NOT NULL,
    body BLOB NOT NULL,
    -- Version 10: the CRC-32 of `sizes` then `body` as stored, checked at every read and at
    -- open (`pages::verify`): `quick_check` never reads the content of a row's overflow pages.
    -- NULL for a row stored before version 10 (not checked). The column is `ADD_CRC` on a
    -- version 9 database.
    crc INTEGER
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
    -- Version 10: the CRC-32 of `raw`, checked at open and before a replay stores it again;
    -- NULL for a dead letter made before version 10. `ADD_CRC` on an older table.
    crc INTEGER,
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
-- Version 8: how far each source's dedupe keys were pruned (the largest bound ever asked, ms
-- since the epoch): keys of records dated before it are gone, so `backfill` knows where the
-- live source's keys no longer tell what it stored. No row: never pruned by version 8 or later.
CREATE TABLE IF NOT EXISTS dedupe_pruned (source TEXT PRIMARY KEY, before_ms INTEGER NOT NULL);
PRAGMA user_version = 10;
";

/// Run on every open, after `SCHEMA` and before the migrations and the cursors' reconciliation
/// (which may drop the cursors that floor `issued`: `pages::ids`). Version 9: `issued`, the last event id
/// issued: an id is never reused, even after every row was deleted (a reused id at or below a
/// sink's cursor would be skipped). `purged`: every sink had passed every event at or below it
/// when events were last deleted; a row still holding some of them (the rest of its page is not
/// delivered everywhere yet) hides them. A salvage that lost this row makes it again from the
/// rows, the cursors and the ids sinks' dead letters name (key `<sink>#<id>`): a removed sink's
/// dead letter keeps its id from being issued again, where a new refusal of that id would find
/// the key taken and be dropped (review 21m).
const ENSURE_EVENT_IDS: &str = "
CREATE TABLE IF NOT EXISTS event_ids (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    issued INTEGER NOT NULL,
    purged INTEGER NOT NULL
);
INSERT OR IGNORE INTO event_ids (one, issued, purged) VALUES (1, 0, 0);
UPDATE event_ids SET issued = MAX(issued, purged,
    COALESCE((SELECT MAX(last_id) FROM pages), 0),
    COALESCE((SELECT MAX(last_id) FROM sink_cursors), 0),
    COALESCE((SELECT MAX(CAST(substr(key, length(sink) + 2) AS INTEGER)) FROM dead_letters
              WHERE sink IS NOT NULL AND substr(key, 1, length(sink) + 1) = sink || '#'), 0));
";

/// Ids at or below `unheld_through` may hold no stored event: issued before this version
/// checked (`check_newest_stored`), or accepted as lost after a salvage. Added to any file
/// without it, whatever its version (no version step: an older agent ignores the column).
const ADD_UNHELD_THROUGH: &str = "ALTER TABLE event_ids ADD COLUMN unheld_through INTEGER NOT NULL DEFAULT 0;";

/// Version 10 on a table made before it (version 9 or older, or a salvaged file of one).
const ADD_CRC: [(&str, &str); 2] = [
    ("pages", "ALTER TABLE pages ADD COLUMN crc INTEGER;"),
    ("dead_letters", "ALTER TABLE dead_letters ADD COLUMN crc INTEGER;"),
];

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

/// The page size of a database this agent makes (SQLite's default is 4 KiB). A stored row (up to
/// 256 KiB of bodies) is then 16 overflow pages, not 64: each a WAL frame, a checkpoint copy and
/// a read per sink fewer (BENCHMARKS.md, "Issue 21, eighth round": less CPU and memory). It was
/// refused in the seventh round while a bad block inside an overflow page's content went unseen
/// (`review21i_tests.rs`); since schema 10 every row's checksum is checked at open and at every
/// read, whatever the page size. An existing file keeps the page size it was made with.
pub(super) const NEW_FILE_PAGE_SIZE: i64 = 16_384;

/// The writer connection's page cache, in KiB, for a file of `page_size` pages: 1,000 KiB (62
/// pages) in 16 KiB pages; SQLite's default 2,000 KiB in smaller ones, where halving it was
/// measured to cost about 13 % more CPU (BENCHMARKS.md, "Issue 21, seventh round").
fn cache_kib(page_size: i64) -> i64 {
    if page_size >= NEW_FILE_PAGE_SIZE { 1_000 } else { 2_000 }
}

/// Opens the file, checks what it is, sets the pragmas, creates the schema and reconciles the
/// sink cursors with the configured sinks.
/// The connection, and the sinks no longer configured whose cursors it deleted, with the events
/// each had not delivered ([`reconcile_cursors`]).
pub(super) fn open_connection(
    path: &Path,
    sinks: &BTreeSet<String>,
) -> Result<(Connection, Vec<(String, u64)>), QueueError> {
    // SQLite opens lazily: a foreign file shows up at the first read, as NOTADB (or CORRUPT).
    let fail = |source: rusqlite::Error| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => QueueError::NotADatabase { path: path.to_owned() },
        Some(ErrorCode::DatabaseCorrupt) => {
            QueueError::Damaged { path: path.to_owned(), detail: source.to_string(), checkpoints: Vec::new() }
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
    // Before the first write (the WAL switch below writes the header): a new file is made in
    // NEW_FILE_PAGE_SIZE pages. On an existing file this does nothing; it keeps its own.
    conn.pragma_update(None, "page_size", NEW_FILE_PAGE_SIZE).map_err(fail)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(fail)?;
    if !mode.eq_ignore_ascii_case("wal") {
        // E.g. a filesystem without shared memory. FULL sync keeps commits durable; only slower.
        tracing::warn!(path = %path.display(), mode, "queue database cannot use WAL journal mode");
    }
    // FULL: a commit is on disk before we reply, so a checkpoint never outruns its events.
    conn.pragma_update(None, "synchronous", "FULL").map_err(fail)?;
    // The backstop counts in the file's own pages, whatever made it.
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0)).map_err(fail)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT_BYTES / page_size.max(512)).map_err(fail)?;
    conn.pragma_update(None, "cache_size", -cache_kib(page_size)).map_err(fail)?;

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
    // Version 0 too: a salvaged older file has its tables without their checksums.
    for (table, add) in ADD_CRC {
        if !has_column(&tx, path, table, "crc")? {
            tx.execute_batch(add).op(path, "add a checksum column")?;
        }
    }
    // On every open: a database salvaged with `sqlite3` may have lost this row (or the table, at
    // version 9). `ENSURE_EVENT_IDS` then floors the last id issued at the stored rows, the sink
    // cursors and the ids dead letters name. Whether it was kept, or so made again:
    let ids_table: bool = tx
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'event_ids')", [], |r| {
            r.get(0)
        })
        .op(path, "check the event ids")?;
    let ids_row = ids_table
        && tx.query_row("SELECT EXISTS (SELECT 1 FROM event_ids)", [], |r| r.get(0)).op(path, "check the event ids")?;
    tx.execute_batch(ENSURE_EVENT_IDS).op(path, "check the event ids")?;
    // Version 0 too: `sqlite3 .dump` (README "Damaged state") leaves `user_version` at 0, and a
    // version 8 file salvaged so still holds its `events`.
    if found < 9 {
        events_to_pages(&tx).op(path, "move the queued events into pages")?;
    }
    // Every stored row against its checksum, before anything is delivered from it: a bad block
    // inside a row's bodies is refused here as damage is (README "Damaged state").
    if let Err(e) = super::pages::verify(&tx) {
        let detail = e.to_string();
        return Err(QueueError::Damaged { path: path.to_owned(), detail, checkpoints: readable_checkpoints(&tx) });
    }
    // The newest events issued must still be stored (review 21k). The mark of what may be
    // missing comes with this check: a file without it has never been checked.
    let has_mark = has_column(&tx, path, "event_ids", "unheld_through")?;
    if !has_mark {
        tx.execute_batch(ADD_UNHELD_THROUGH).op(path, "add the event_ids.unheld_through column")?;
    }
    check_newest_stored(&tx, path, !has_mark || !ids_row || found < 9)?;
    let (_, removed) = reconcile_cursors(&tx, path, sinks)?;
    tx.commit().op(path, "commit the schema and sink cursors")?;
    Ok((conn, removed))
}

/// Whether `table` has `column` (a column added after the table was made may be missing).
fn has_column(tx: &Connection, path: &Path, table: &str, column: &str) -> Result<bool, QueueError> {
    tx.query_row("SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)", [table, column], |r| r.get(0))
        .op(path, "read a table's columns")
}

/// Refuses a file that lost its newest rows: the last event id issued (`event_ids.issued`, in
/// another page of the file) is above every stored row and the purge mark (rows leave only by
/// `pages::purge_through`, which moves the mark past them). A write the disk acknowledged and
/// never kept (or a live copy of the file restored without its WAL) can put back an older version
/// of the page holding the newest rows: in 16 KiB pages all of a small queue's rows share one leaf
/// page, whose older header hides the newer rows in the same page, which `quick_check` does not
/// see and no row's checksum can (review 21k). The sources' checkpoints and dedupe keys say those
/// events were stored, so they would never be fetched again. A sink's cursor does not count: a
/// sink that had delivered them says nothing of one that had not (review 21l).
///
/// `tolerate`: the file was never checked so (made before version 9, when `event_ids` did not
/// exist; salvaged with `sqlite3 .dump`, which leaves `user_version` at 0; salvaged without
/// `event_ids`' row, made again by `ENSURE_EVENT_IDS`; or opened first by this version, whose
/// older ones may have left ids issued and unheld, as a version 8 upgrade did). Then the ids
/// above what the file holds are marked as missing (`unheld_through`), with a warning, and never
/// issued again (a dead letter's key names its id, review 21l). After a salvage that kept
/// `user_version` (`.recover`), the operator marks them (README "Damaged state").
fn check_newest_stored(tx: &Connection, path: &Path, tolerate: bool) -> Result<(), QueueError> {
    let (issued, held): (i64, i64) = tx
        .query_row(
            "SELECT issued, MAX(purged, unheld_through, COALESCE((SELECT MAX(last_id) FROM pages), 0))
             FROM event_ids",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .op(path, "check the newest events are stored")?;
    if issued <= held {
        return Ok(());
    }
    let missing = format!("{}..={issued}", held + 1);
    if tolerate {
        tx.execute("UPDATE event_ids SET unheld_through = issued", [])
            .op(path, "check the newest events are stored")?;
        tracing::warn!(path = %path.display(), ids = missing, "the last event ids issued hold no stored event: \
            taken as left by an older version, or lost in the damage a salvage recovered from");
        return Ok(());
    }
    Err(QueueError::Damaged {
        path: path.to_owned(),
        detail: format!(
            "events {missing} were stored (the last event id issued is {issued}) but no row holds them: the \
             file lost writes (after a salvage, see README \"Damaged state\" to accept the loss)"
        ),
        checkpoints: readable_checkpoints(tx),
    })
}

/// Version 9: the events of a version 1 to 8 database (one row each) move into `pages`, each run
/// of consecutive ids from one source stored at one time as one row, in the upgrade's transaction;
/// the last id issued is kept (ids are never reused).
fn events_to_pages(tx: &Connection) -> rusqlite::Result<()> {
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let issued: i64 = tx.query_row(
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                    COALESCE((SELECT MAX(id) FROM events), 0))",
        [],
        |r| r.get(0),
    )?;
    set_issued(tx, issued)?;
    {
        // Rows stored before version 4 have no `collected_ms`: their event time stands in, as
        // it did for "oldest queued".
        let mut rows = tx.prepare(
            "SELECT id, source, CASE WHEN collected_ms > 0 THEN collected_ms ELSE event_time_ms END, body
             FROM events ORDER BY id",
        )?;
        let mut rows = rows.query([])?;
        let mut writer = RowWriter::default();
        let mut moved = 0u64;
        while let Some(row) = rows.next()? {
            moved += 1;
            let (id, source, collected_ms): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            writer.push(tx, &source, collected_ms, id, row.get_ref(3)?.as_blob()?)?;
        }
        writer.finish(tx)?;
        if moved > 0 {
            tracing::info!(events = moved, "queue database upgraded to schema 9: queued events are now stored by page");
        }
    }
    tx.execute_batch("DROP TABLE events;")
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

/// The checkpoints that can still be read, by source, as stored (none when they cannot be read).
pub(super) fn readable_checkpoints(conn: &Connection) -> Vec<ReadableCheckpoint> {
    let rows: rusqlite::Result<Vec<(String, String)>> = conn
        .prepare("SELECT source, state FROM checkpoints ORDER BY source")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect());
    let Ok(rows) = rows else { return Vec::new() };
    rows.into_iter().map(|(source, state)| ReadableCheckpoint { source, state, described: None }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::*;
    use crate::queue::*;

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

    /// A new database is made in 16 KiB pages with a 1,000 KiB page cache on the writer, and its
    /// backstop checkpoint is 64 MiB of WAL. A database of SQLite's 4 KiB pages (made by an
    /// agent before the eighth round of issue 21, or by another tool) keeps them, with the same
    /// 64 MiB in its own pages and SQLite's 2,000 KiB cache, and stores and delivers as before.
    #[tokio::test]
    async fn the_writer_has_a_64_mib_backstop_in_any_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("new"), opts(&["a"], 1000)).unwrap();
        let other = Connection::open(q.path()).unwrap();
        let size: i64 = other.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        assert_eq!(size, NEW_FILE_PAGE_SIZE, "a new database's pages");
        assert_eq!(q.pragma("wal_autocheckpoint").await.unwrap(), (64 << 20) / 16_384);
        assert_eq!(q.pragma("cache_size").await.unwrap(), -1_000, "1,000 KiB");
        q.close().await.unwrap();

        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).unwrap();
        {
            let db = Connection::open(old.join("auditrelay.db")).unwrap();
            db.pragma_update(None, "page_size", 4096).unwrap();
            db.pragma_update(None, "journal_mode", "WAL").unwrap();
        }
        let q = Queue::open(&old, opts(&["a"], 10_000_000)).unwrap();
        let other = Connection::open(q.path()).unwrap();
        let size: i64 = other.pragma_query_value(None, "page_size", |r| r.get(0)).unwrap();
        assert_eq!(size, 4096, "an existing database keeps its page size");
        assert_eq!(q.pragma("wal_autocheckpoint").await.unwrap(), (64 << 20) / 4096);
        assert_eq!(q.pragma("cache_size").await.unwrap(), -2_000, "SQLite's default 2,000 KiB");
        let big = "x".repeat(300_000); // a row of overflow pages
        q.store_page(page("src", vec![ev("k1", 1, &big), ev("k2", 2, "small")])).await.unwrap();
        assert_eq!(all(&q, "a").await, vec![big, "small".to_owned()]);
        q.close().await.unwrap();
    }

    /// Version 9 (rows without checksums) upgrades to 10: the column is added, the rows stored
    /// before are read as stored (nothing to check them against), and rows stored after carry
    /// their checksum.
    #[tokio::test]
    async fn a_version_9_database_gains_row_checksums_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let to_9 = "ALTER TABLE pages DROP COLUMN crc; PRAGMA user_version = 9;";
        stored_then(dir.path(), vec![ev("a", 1, "alpha"), ev("b", 2, "bravo")], to_9).await;
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("src", vec![ev("c", 3, "charlie")])).await.unwrap();
        assert_eq!(all(&q, "s").await, ["alpha", "bravo", "charlie"]);
        q.close().await.unwrap();
        let db = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        let sums: Vec<Option<i64>> = db
            .prepare("SELECT crc FROM pages ORDER BY first_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(version, 10);
        assert!(sums.len() == 2 && sums[0].is_none() && sums[1].is_some(), "{sums:?}");
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
    async fn a_version_1_database_gains_the_staging_table_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), opts(&["s"], 1000)).unwrap();
        q.store_page(page("a", vec![ev("k", 1, "x")])).await.unwrap();
        q.close().await.unwrap();
        let old = Connection::open(dir.path().join("auditrelay.db")).unwrap();
        // Version 1's event table: one row per event, no `collected_ms`.
        old.execute_batch(
            "DROP TABLE staged; DROP TABLE sink_channels; ALTER TABLE dead_letters DROP COLUMN sink;
             DROP TABLE pages; DROP TABLE event_ids;
             CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                                  event_time_ms INTEGER NOT NULL, body BLOB NOT NULL);
             INSERT INTO events (source, event_time_ms, body) VALUES ('a', 1, CAST('x' AS BLOB));
             PRAGMA user_version = 1;",
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

    /// Version 9 stores events a page at a time: a version 8 database's backlog (one row per
    /// event) moves into pages in the upgrade. Every sink still gets exactly what it had not
    /// delivered, ids are never reused, the byte count and the oldest-queued time hold, dead
    /// letters stay, and what every sink then passes leaves.
    #[tokio::test(start_paused = true)]
    async fn a_version_8_database_keeps_its_backlog_ids_and_dead_letters_in_pages() {
        // Version 0: the same file salvaged by `sqlite3 .dump`, which resets `user_version`.
        for version in [8, 0] {
            let dir = tempfile::tempdir().unwrap();
            let q = Queue::open(dir.path(), opts(&["s1", "s2"], 1 << 20)).unwrap();
            let mut p = page("a", vec![ev("k1", 1, "a1")]);
            p.dead_letters =
                vec![NewDeadLetter { key: "bad".into(), reason: "unmappable".into(), raw: b"raw!".to_vec() }];
            q.store_page(p).await.unwrap();
            q.close().await.unwrap();
            let old = Connection::open(dir.path().join("auditrelay.db")).unwrap();
            // Version 8's layout, as an agent left it: ids 1-5 of "a" stored at 100, 6-7 of "b" at
            // 200, 10 of "a" from before version 4 (no collected_ms: its event time, 50, stands in);
            // ids 8, 9, 11 and 12 were issued and are gone. s1 delivered up to 6, s2 nothing.
            old.execute_batch(&format!(
                "DROP TABLE pages; DROP TABLE event_ids;
                 CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
                                      event_time_ms INTEGER NOT NULL, body BLOB NOT NULL,
                                      collected_ms INTEGER NOT NULL DEFAULT 0);
                 INSERT INTO events (id, source, event_time_ms, body, collected_ms) VALUES
                     (1, 'a', 1, CAST('e1' AS BLOB), 100), (2, 'a', 2, CAST('e2' AS BLOB), 100),
                     (3, 'a', 3, CAST('e3' AS BLOB), 100), (4, 'a', 4, CAST('e4' AS BLOB), 100),
                     (5, 'a', 5, CAST('e5' AS BLOB), 100), (6, 'b', 6, CAST('e6' AS BLOB), 200),
                     (7, 'b', 7, CAST('e7' AS BLOB), 200), (10, 'a', 50, CAST('e10' AS BLOB), 0),
                     (12, 'a', 1, CAST('gone' AS BLOB), 300);
                 DELETE FROM events WHERE id = 12;
                 UPDATE sink_cursors SET last_id = 6 WHERE sink = 's1';
                 UPDATE sink_cursors SET last_id = 0 WHERE sink = 's2';
                 PRAGMA user_version = {version};"
            ))
            .unwrap();
            drop(old);

            let q = Queue::open(dir.path(), opts(&["s1", "s2"], 1 << 20)).unwrap();
            assert_eq!(*q.subscribe_new_events().borrow(), 12, "the last id issued is kept");
            assert_eq!(q.queued_bytes(), 17 + 4, "8 events' bodies and the dead letter");
            assert_eq!(all(&q, "s2").await, ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e10"]);
            assert_eq!(all(&q, "s1").await, ["e7", "e10"]);
            let ids: Vec<i64> = q.read_batch("s2", 100, usize::MAX).await.unwrap().iter().map(|e| e.id).collect();
            assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 10]);
            assert_eq!((q.backlog("s1").await.unwrap(), q.backlog("s2").await.unwrap()), (2, 8));
            assert_eq!(q.oldest_queued_ms("s1").await.unwrap(), Some(200));
            assert_eq!(q.oldest_queued_ms("s2").await.unwrap(), Some(100));
            assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
            let out = q.store_page(page("a", vec![ev("k2", 2, "new")])).await.unwrap();
            assert_eq!(out.stored, 1);
            let batch = q.read_batch("s1", 100, usize::MAX).await.unwrap();
            assert_eq!(batch.last().map(|e| e.id), Some(13), "a new id after the last one issued");
            // s2 passes 1-6: they leave (s1 was past them), 7 on stays.
            q.ack("s2", 6).await.unwrap();
            assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (3, 3 + 3 + 2 + 4));
            q.ack("s1", 13).await.unwrap();
            q.ack("s2", 13).await.unwrap();
            assert_eq!((q.stats().await.unwrap().events, q.queued_bytes()), (0, 4), "the dead letter stays");
            q.close().await.unwrap();
            let db = Connection::open(dir.path().join("auditrelay.db")).unwrap();
            let tables: i64 =
                db.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'events'", [], |r| r.get(0)).unwrap();
            assert_eq!(tables, 0, "the old table is gone");
            drop(db);
            Queue::open(dir.path(), opts(&["s1", "s2"], 1 << 20)).unwrap().close().await.unwrap();
        }
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
}
