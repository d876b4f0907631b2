//! The WAL checkpointer: a thread with its own connection that copies the write-ahead log into
//! the database file after each write group, so the writer never stops for it.
//!
//! It owns only the pace of those checkpoints and the writer's backstop setting; what is
//! written, and when a write group ends, is the writer's (`writer.rs`).

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::{QueueError, SqliteContext};

/// The writer's own automatic checkpoint, as WAL bytes (set in pages of the file's size): only
/// a backstop for when the [`Checkpointer`] falls behind or fails.
pub(super) const WRITER_AUTOCHECKPOINT_BYTES: i64 = 64 << 20;

/// At most one checkpoint per this interval; frames written meanwhile go with the next.
const CHECKPOINT_PACE: Duration = Duration::from_millis(50);

/// Copies the WAL into the database file on its own thread and connection (`PRAGMA
/// wal_checkpoint(PASSIVE)`, which never blocks the writer), so commits, and the sources and
/// sinks waiting on them, do not stop for it; it also runs on the other core. Woken after each
/// write group.
pub(super) struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Checkpointer, QueueError> {
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
    pub(super) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Lets the thread finish the checkpoint it may be running, and joins it.
    pub(super) fn stop(self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        drop(self.wake);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}
