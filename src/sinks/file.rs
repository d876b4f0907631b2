//! File sink: one event per line (NDJSON), appended, `fsync`ed once per batch.
//!
//! A batch counts as delivered only after `write_all` and `sync_data` returned on a file that
//! still has a name: written into a file that was deleted meanwhile, it is written again at the
//! path. A write that fails half-way is cut back to the last complete batch so a resend never
//! leaves a torn line; a torn tail left by a crash or power loss is cut back the same way when
//! the file is opened (its events were never acknowledged, so they are sent again). Blocking
//! file I/O runs on tokio's blocking pool.
//!
//! Rotation (logrotate, by hand) is noticed before every batch, not left to chance:
//! - **moved or deleted** (logrotate's default, `rotate 0`, `delete`): the path no longer names
//!   the open file (device + inode, or nothing at all): the old file is synced and closed and
//!   the path created again. A batch written in the instant between that check and the rotation
//!   went into the moved file (it is there, as the events before it are) or, if that file was
//!   already deleted (its link count is 0 after the write), is written again at the path: at
//!   least once, never into the void (events carry `metadata.uid` for the rare duplicate);
//! - **`copytruncate`** (the file shrank under us): writes append at the file's current end
//!   (`O_APPEND`), and a tail cut in mid-line is cut back to its last complete line first. A
//!   batch written between logrotate's copy and its truncation is in neither file, and no
//!   writer can see that happen (logrotate(8) says so of copytruncate): prefer the default
//!   move-and-create, which loses nothing;
//! - **SIGHUP** (a `postrotate` that signals us): [`request_reopen`] makes every file sink
//!   close and reopen its path before its next batch, whatever it found.
//!
//! Each is logged and counted by [`Reopen`] reason in the sink's `SinkStats`
//! (`auditrelay_sink_reopens_total` on `/metrics`).
//!
//! The logrotate configuration for the default path is `packaging/logrotate/auditrelay`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use toml::Spanned;

use super::{Attach, Delivery, Protocol, SendError, SinkStats, Stamped};
use crate::config::{Res, TableKeys, path_text};
use crate::queue::QueueError;

/// Bumped by [`request_reopen`]; each sink compares it with the value it last saw. One counter
/// for the process: a reopen is harmless, so a request meant for one agent reaching another in
/// the same process (tests) costs a reopen and nothing else.
static REOPEN_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink to close and reopen its path before its next batch (SIGHUP).
pub fn request_reopen() {
    REOPEN_REQUESTS.fetch_add(1, Ordering::Relaxed);
}

/// Why the file sink left the file it had open, or (truncated) found it cut under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen {
    /// The file was renamed (it still has a name elsewhere): reopened at the path.
    Moved,
    /// The file was deleted (no name left), before a batch or while one was written to it:
    /// reopened at the path (the batch written again).
    Deleted,
    /// The file shrank under us (`copytruncate`): appended at its new end, on a line boundary.
    Truncated,
    /// [`request_reopen`] (SIGHUP): closed and reopened whatever was found.
    Sighup,
}

impl Reopen {
    pub const ALL: [Reopen; 4] = [Reopen::Moved, Reopen::Deleted, Reopen::Truncated, Reopen::Sighup];

    /// The `reason` label on `/metrics` and in the log.
    pub fn label(self) -> &'static str {
        match self {
            Reopen::Moved => "moved",
            Reopen::Deleted => "deleted",
            Reopen::Truncated => "truncated",
            Reopen::Sighup => "sighup",
        }
    }

    /// Its index in `SinkStats::reopens`.
    pub fn index(self) -> usize {
        match self {
            Reopen::Moved => 0,
            Reopen::Deleted => 1,
            Reopen::Truncated => 2,
            Reopen::Sighup => 3,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Reopen::Moved => "the file was moved (rotated)",
            Reopen::Deleted => "the file was deleted",
            Reopen::Truncated => "the file was truncated (copytruncate)",
            Reopen::Sighup => "reopen requested (SIGHUP)",
        }
    }
}

/// Counts `why` in `stats`.
fn count(stats: &SinkStats, why: Reopen) {
    stats.reopens[why.index()].fetch_add(1, Ordering::Relaxed);
}

/// How often a sink whose freshly written file was deleted at once writes the batch again
/// before it reports a (transient) failure to the delivery loop.
const MAX_REWRITES: usize = 3;

#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// Open between batches; dropped after any error so the next batch reopens (and repairs) it.
    file: Option<OpenFile>,
    /// The value of [`REOPEN_REQUESTS`] this sink has honoured.
    reopen_seen: u64,
    /// Where its reopens are counted: the worker's (see [`FileSink::count_into`]).
    stats: Arc<SinkStats>,
}

/// The open file and what names it.
#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// The file's length after our last write: a shorter file was truncated under us.
    end: u64,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path, file: None, reopen_seen: REOPEN_REQUESTS.load(Ordering::Relaxed), stats: Arc::default() }
    }

    /// Counts its reopens in `stats` (the worker's, which `/metrics` reads).
    pub fn count_into(&mut self, stats: Arc<SinkStats>) {
        self.stats = stats;
    }

    pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        // Each event written stamped straight into the batch's lines (no stamped copy first).
        let mut buf = Vec::with_capacity(batch.bytes() + batch.len());
        for event in batch.iter() {
            event.extend(&mut buf);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let file = self.file.take();
        let requested = REOPEN_REQUESTS.load(Ordering::Relaxed);
        let reopen = requested != self.reopen_seen;
        let stats = Arc::clone(&self.stats);
        let result = tokio::task::spawn_blocking(move || append(&path, file, reopen, &buf, &stats)).await;
        match result {
            Ok(Ok(file)) => {
                self.file = Some(file);
                self.reopen_seen = requested;
                Ok(Delivery::default())
            }
            Ok(Err(e)) => Err(SendError::transient(format!("file {}: {e}", self.path.display()))),
            Err(e) => Err(SendError::transient(format!("file {}: writer task failed: {e}", self.path.display()))),
        }
    }

    /// Opens (creating, repairing) the file without writing an event.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        self.send(&Stamped::new(&[], 0)).await.map(|_| format!("file {} is writable", self.path.display()))
    }

    pub async fn close(&mut self) {
        self.file = None;
    }
}

/// Appends `buf` durably at `path`, returning the open file for the next batch; reopens are
/// counted in `stats`.
fn append(
    path: &Path,
    file: Option<OpenFile>,
    reopen: bool,
    buf: &[u8],
    stats: &SinkStats,
) -> std::io::Result<OpenFile> {
    let mut file = match file {
        Some(open) => match rotated(path, &open, reopen)? {
            None => open,
            Some(why) => {
                // What was written to the old file is already synced; close it and start anew.
                drop(open);
                count(stats, why);
                tracing::info!(path = %path.display(), reason = why.describe(), "file sink: reopened its file");
                open_repaired(path)?
            }
        },
        None => open_repaired(path)?,
    };
    for _ in 0..MAX_REWRITES {
        write_batch(path, &mut file, buf, stats)?;
        // Deleted between our check and the write (`mv` then `rm` at once): the batch is in a
        // file nobody can read. Write it again where the path now points.
        if file.file.metadata()?.nlink() > 0 {
            return Ok(file);
        }
        count(stats, Reopen::Deleted);
        tracing::warn!(path = %path.display(), bytes = buf.len(),
            "file sink: the file was deleted while a batch was written to it; writing the batch again at the path");
        file = open_repaired(path)?;
    }
    Err(std::io::Error::other("the file was deleted during each of the last writes"))
}

/// Why the open file must be replaced before the next batch, if it must: the path names
/// another file or none, and the open file has a name left (moved) or none (deleted).
fn rotated(path: &Path, open: &OpenFile, reopen: bool) -> std::io::Result<Option<Reopen>> {
    if reopen {
        return Ok(Some(Reopen::Sighup));
    }
    match std::fs::metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == (open.dev, open.ino) => Ok(None),
        Ok(_) => Ok(Some(gone_how(open)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(gone_how(open)?)),
        Err(e) => Err(e),
    }
}

/// Whether the open file, no longer at the path, still has a name somewhere.
fn gone_how(open: &OpenFile) -> std::io::Result<Reopen> {
    Ok(if open.file.metadata()?.nlink() > 0 { Reopen::Moved } else { Reopen::Deleted })
}

/// Writes one batch at the end of the file and syncs it; a failed write is cut back.
fn write_batch(path: &Path, open: &mut OpenFile, buf: &[u8], stats: &SinkStats) -> std::io::Result<()> {
    let len = open.file.metadata()?.len();
    let before = if len == open.end {
        len
    } else {
        // Shrunk (`copytruncate`) or written by someone else: start on a line boundary.
        if len < open.end {
            count(stats, Reopen::Truncated);
            tracing::info!(path = %path.display(), was = open.end, now = len, "file sink: the file was truncated (copytruncate); appending at its new end");
        }
        repair_tail(path, &mut open.file)?
    };
    // `O_APPEND`: the write lands at the end even if the file is truncated at this instant.
    let written = open.file.write_all(buf).and_then(|()| open.file.sync_data());
    if let Err(e) = written {
        // Best effort: leave no torn line behind for the resend to follow.
        let _ = open.file.set_len(before);
        open.end = before;
        return Err(e);
    }
    open.end = open.file.metadata()?.len();
    Ok(())
}

/// Opens (creating) the file for appending and cuts any torn last line.
fn open_repaired(path: &Path) -> std::io::Result<OpenFile> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().read(true).append(true).create(true).open(path)?;
    let end = repair_tail(path, &mut file)?;
    let m = file.metadata()?;
    Ok(OpenFile { file, dev: m.dev(), ino: m.ino(), end })
}

/// Cuts a torn last line (one without its newline); returns the file's length after it.
fn repair_tail(path: &Path, file: &mut File) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    let keep = complete_prefix_len(file, len)?;
    if keep < len {
        tracing::warn!(path = %path.display(), cut = len - keep, "file sink: removing a torn last line left by an interrupted write");
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

/// Length of the file up to and including its last newline (0 if it has none).
fn complete_prefix_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(i) = chunk[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// `type = "file"`: NDJSON appended to a local file.
#[derive(Debug, Clone)]
pub struct FileSinkSettings {
    pub path: PathBuf,
}

/// The keys of a `type = "file"` table besides the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    path: Option<Spanned<String>>,
}

impl Protocol for FileSink {
    const TYPE: &'static str = "file";
    const KEYS: &'static [&'static str] = &["path"];
    type Keys = Keys;
    type Settings = FileSinkSettings;

    fn settings(k: Keys, cx: &TableKeys<'_>) -> Res<FileSinkSettings> {
        let path = match &k.path {
            None => cx.fail(cx.table(), "path", "required for type \"file\""),
            Some(path) => cx.path(path, "path"),
        };
        Ok(FileSinkSettings { path: path? })
    }

    fn render(f: &FileSinkSettings, kv: &mut dyn FnMut(&str, String)) {
        kv("type", "\"file\"".to_owned());
        kv("path", path_text(&f.path));
    }

    fn open(s: &FileSinkSettings) -> Result<FileSink, String> {
        Ok(FileSink::new(s.path.clone()))
    }

    async fn attach(&mut self, a: Attach<'_>) -> Result<(), QueueError> {
        self.count_into(Arc::clone(a.stats));
        Ok(())
    }

    async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        FileSink::send(self, batch).await
    }

    async fn probe(&mut self) -> Result<String, SendError> {
        FileSink::probe(self).await
    }

    async fn close(&mut self) {
        FileSink::close(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueuedEvent;

    fn events(bodies: &[&str]) -> Vec<QueuedEvent> {
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| QueuedEvent { id: i as i64 + 1, body: b.as_bytes().to_vec(), collected_ms: 0 })
            .collect()
    }

    #[tokio::test]
    async fn test_appends_lines_across_batches_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.ndjson");
        let mut sink = FileSink::new(path.clone());
        sink.send(&Stamped::new(&events(&["{\"a\":1}", "{\"b\":2}"]), 0)).await.unwrap();
        sink.close().await;
        let mut again = FileSink::new(path.clone());
        again.send(&Stamped::new(&events(&["{\"c\":3}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    }

    #[tokio::test]
    async fn test_torn_tail_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let mut sink = FileSink::new(path.clone());
        sink.send(&Stamped::new(&events(&["{\"b\":2}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn test_a_moved_or_deleted_file_is_reopened_at_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let rotated = dir.path().join("out.ndjson.1");
        let mut sink = FileSink::new(path.clone());
        sink.send(&Stamped::new(&events(&["{\"a\":1}"]), 0)).await.unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        sink.send(&Stamped::new(&events(&["{\"b\":2}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "{\"a\":1}\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\":2}\n");
        std::fs::remove_file(&path).unwrap();
        sink.send(&Stamped::new(&events(&["{\"c\":3}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"c\":3}\n");
    }

    #[tokio::test]
    async fn test_a_truncated_file_is_appended_to_on_a_line_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = FileSink::new(path.clone());
        sink.send(&Stamped::new(&events(&["{\"a\":1}", "{\"b\":2}"]), 0)).await.unwrap();
        // copytruncate empties it; another tool might cut it mid-line.
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        sink.send(&Stamped::new(&events(&["{\"c\":3}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"c\":3}\n");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4).unwrap();
        sink.send(&Stamped::new(&events(&["{\"d\":4}"]), 0)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"d\":4}\n");
    }

    #[tokio::test]
    async fn test_a_reopen_request_reopens_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = FileSink::new(path.clone());
        sink.send(&Stamped::new(&events(&["{\"a\":1}"]), 0)).await.unwrap();
        request_reopen();
        sink.send(&Stamped::new(&events(&["{\"b\":2}"]), 0)).await.unwrap();
        assert_eq!(sink.reopen_seen, REOPEN_REQUESTS.load(Ordering::Relaxed));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    /// Each way the file is rotated is counted under its own reason (`append` is called
    /// directly: a reopen requested by another test of this process cannot interfere).
    #[test]
    fn test_each_rotation_is_counted_by_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let stats = SinkStats::default();
        let counts = || Reopen::ALL.map(|why| stats.reopens[why.index()].load(Ordering::Relaxed));
        // Opening the file the first time is no reopen.
        let file = append(&path, None, false, b"a\n", &stats).unwrap();
        assert_eq!(counts(), [0, 0, 0, 0]);
        std::fs::rename(&path, dir.path().join("out.ndjson.1")).unwrap();
        let file = append(&path, Some(file), false, b"b\n", &stats).unwrap();
        assert_eq!(counts(), [1, 0, 0, 0], "moved");
        std::fs::remove_file(&path).unwrap();
        let file = append(&path, Some(file), false, b"c\n", &stats).unwrap();
        assert_eq!(counts(), [1, 1, 0, 0], "deleted");
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(0).unwrap();
        let file = append(&path, Some(file), false, b"d\n", &stats).unwrap();
        assert_eq!(counts(), [1, 1, 1, 0], "truncated");
        let file = append(&path, Some(file), true, b"e\n", &stats).unwrap();
        assert_eq!(counts(), [1, 1, 1, 1], "reopen requested");
        append(&path, Some(file), false, b"f\n", &stats).unwrap();
        assert_eq!(counts(), [1, 1, 1, 1], "nothing happened");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "d\ne\nf\n");
    }

    /// Issue 21: the lines written from the stored events, each stamped as it is written, are
    /// byte for byte the stamped copies the loop used to hand the sink, one a line, for every
    /// shape of event and send time.
    #[tokio::test]
    async fn test_lines_are_byte_identical_to_the_stamped_copies() {
        use crate::sinks::tests::{TRANSMIT_TIMES, shaped_events};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut sink = FileSink::new(path.clone());
        let events = shaped_events();
        let mut expected = Vec::new();
        for ms in TRANSMIT_TIMES {
            sink.send(&Stamped::new(&events, ms)).await.unwrap();
            for event in &events {
                crate::ocsf::stamp_transmit_time(&event.body, ms, &mut expected);
                expected.push(b'\n');
            }
        }
        assert!(std::fs::read(&path).unwrap() == expected, "the file differs");
    }

    #[tokio::test]
    async fn test_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let path = dir.path().join("file/out.ndjson");
        let err = FileSink::new(path.clone()).send(&Stamped::new(&events(&["{}"]), 0)).await.unwrap_err();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
