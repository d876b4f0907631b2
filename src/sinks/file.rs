//! File sink: one event per line (NDJSON), appended, `fsync`ed once per batch.
//!
//! A batch counts as delivered only after `write_all` and `sync_data` returned. A write that
//! fails half-way is cut back to the last complete batch so a resend never leaves a torn line;
//! a torn tail left by a crash or power loss is cut back the same way when the file is opened
//! (its events were never acknowledged, so they are sent again). Blocking file I/O runs on
//! tokio's blocking pool. Rotation is left to the operator's tools (copytruncate or move + the
//! next batch re-creates the file, since the file is reopened after any error).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::SendError;
use crate::queue::QueuedEvent;

#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    /// Open between batches; dropped after any error so the next batch reopens (and repairs) it.
    file: Option<File>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> FileSink {
        FileSink { path, file: None }
    }

    pub async fn send(&mut self, batch: &[QueuedEvent]) -> Result<(), SendError> {
        let mut buf = Vec::with_capacity(batch.iter().map(|e| e.body.len() + 1).sum());
        for event in batch {
            buf.extend_from_slice(&event.body);
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let file = self.file.take();
        let result = tokio::task::spawn_blocking(move || append(&path, file, &buf)).await;
        match result {
            Ok(Ok(file)) => {
                self.file = Some(file);
                Ok(())
            }
            Ok(Err(e)) => Err(SendError::transient(format!("file {}: {e}", self.path.display()))),
            Err(e) => Err(SendError::transient(format!("file {}: writer task failed: {e}", self.path.display()))),
        }
    }

    /// Opens (creating, repairing) the file without writing an event.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        self.send(&[]).await.map(|()| format!("file {} is writable", self.path.display()))
    }

    pub async fn close(&mut self) {
        self.file = None;
    }
}

/// Appends `buf` durably, returning the open file for the next batch.
fn append(path: &Path, file: Option<File>, buf: &[u8]) -> std::io::Result<File> {
    let mut file = match file {
        Some(f) => f,
        None => open_repaired(path)?,
    };
    let before = file.seek(SeekFrom::End(0))?;
    let written = file.write_all(buf).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Best effort: leave no torn line behind for the resend to follow.
        let _ = file.set_len(before);
        return Err(e);
    }
    Ok(file)
}

/// Opens (creating) the file for appending and cuts any torn last line.
fn open_repaired(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let len = file.seek(SeekFrom::End(0))?;
    let keep = complete_prefix_len(&mut file, len)?;
    if keep < len {
        tracing::warn!(path = %path.display(), cut = len - keep, "file sink: removing a torn last line left by an interrupted write");
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(file)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        sink.send(&events(&["{\"a\":1}", "{\"b\":2}"])).await.unwrap();
        sink.close().await;
        let mut again = FileSink::new(path.clone());
        again.send(&events(&["{\"c\":3}"])).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    }

    #[tokio::test]
    async fn test_torn_tail_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let mut sink = FileSink::new(path.clone());
        sink.send(&events(&["{\"b\":2}"])).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n{\"b\":2}\n");
    }

    #[tokio::test]
    async fn test_unwritable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let path = dir.path().join("file/out.ndjson");
        let err = FileSink::new(path.clone()).send(&events(&["{}"])).await.unwrap_err();
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }
}
