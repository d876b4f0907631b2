//! One auditrelay per state directory: an exclusive lock on `<state_dir>/auditrelay.lock`.
//!
//! Two agents on one queue would each move the same sink cursors and fetch the same windows;
//! a `queue replay` or `purge-dead-letters` under a running agent would change rows its writer
//! thread assumes only it changes. So the daemon and every command that writes the queue take
//! this lock first, and a second one stops with a message naming the lock file and its holder.
//! Read-only commands (`queue stats`, `queue dead-letters`) never take it.
//!
//! The lock is `File::try_lock`, which on Linux is `flock(2)` (`LOCK_EX | LOCK_NB`): it belongs
//! to the open file, so the kernel drops it when the holder exits however it exits (SIGKILL, a
//! crash, OOM kill). A stale lock file therefore never blocks a start, and the file is never
//! deleted: deleting it would let a process that opened the old file and one that creates a new
//! one both "hold" the lock. The holder writes its pid, command and start time into the file;
//! that text is only for the message and is never trusted to decide who holds the lock.
//!
//! It leaves to its callers when to take the lock (before opening the queue) and for how long
//! (as long as the returned guard lives).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "auditrelay.lock";

/// Holds the state directory's lock until dropped (or until the process exits).
#[derive(Debug)]
pub struct StateLock {
    /// Kept open: closing the file releases the lock.
    file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "`auditrelay {what}` cannot use state directory {}: another auditrelay ({holder}) holds \
         its lock {}; stop it first, or point this one at another state_dir",
        state_dir.display(), path.display()
    )]
    Held { what: String, state_dir: PathBuf, path: PathBuf, holder: String },
    #[error("cannot create state directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl StateLock {
    /// Takes the exclusive lock on `<state_dir>/auditrelay.lock` without waiting, creating the
    /// directory and the file if missing, and records this process in it. `what` names the
    /// command taking it (`"run"`, `"queue replay"`), for the message a second one gets.
    pub fn acquire(state_dir: &Path, what: &str) -> Result<StateLock, LockError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|source| LockError::CreateDir { path: state_dir.to_owned(), source })?;
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        // No truncate on open: the file may belong to the running holder, whose pid we want.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held {
                    what: what.to_owned(),
                    state_dir: state_dir.to_owned(),
                    holder: describe_holder(&mut file),
                    path,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io(source)),
        }
        let note = format!(
            "pid={}\ncommand={what}\nstarted={}\n",
            std::process::id(),
            // The machine's wall time, for the operator reading the file (not a test clock's).
            crate::clock::Clock::system().now_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        // Freshly opened and never read, so the cursor is at 0. Informational only: not synced.
        file.set_len(0).map_err(io)?;
        file.write_all(note.as_bytes()).map_err(io)?;
        Ok(StateLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Forget our pid so nobody reads it later as if we still ran; closing the file (right
        // after this) releases the lock. Both are best effort: the kernel releases it anyway.
        let _ = self.file.set_len(0);
    }
}

/// "pid 1234, `auditrelay run` since 2026-03-18T12:00:00Z", from what the holder wrote; or
/// "pid unknown" when it has not written yet (or the file is not ours).
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    // A lock file is a few dozen bytes; cap the read in case it is something else.
    if file.take(4096).read_to_string(&mut text).is_err() {
        return "pid unknown".to_owned();
    }
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix('=')).map(str::trim).filter(|v| !v.is_empty())
    };
    let Some(pid) = field("pid").filter(|p| p.bytes().all(|b| b.is_ascii_digit())) else {
        return "pid unknown".to_owned();
    };
    let mut holder = format!("pid {pid}");
    if let Some(command) = field("command") {
        holder.push_str(&format!(", `auditrelay {command}`"));
    }
    if let Some(started) = field("started") {
        holder.push_str(&format!(" since {started}"));
    }
    holder
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Set in the child process that `a_killed_holder_does_not_block_the_next_start` spawns.
    const CHILD_DIR: &str = "AUDITRELAY_LOCK_TEST_CHILD_DIR";

    #[test]
    fn a_second_holder_is_refused_with_the_file_and_the_first_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateLock::acquire(&state, "run").unwrap();
        assert_eq!(first.path(), state.join(LOCK_FILE));
        let err = StateLock::acquire(&state, "queue replay").unwrap_err();
        let msg = err.to_string();
        let pid = format!("pid {}, `auditrelay run` since ", std::process::id());
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        for part in [&state.join(LOCK_FILE).display().to_string(), &pid, "`auditrelay queue replay`", "stop it first"] {
            assert!(msg.contains(part), "{part:?} in {msg}");
        }
        drop(first);
        let again = StateLock::acquire(&state, "run").unwrap();
        let text = std::fs::read_to_string(again.path()).unwrap();
        assert!(text.starts_with(&format!("pid={}\ncommand=run\nstarted=", std::process::id())), "{text}");
    }

    #[test]
    fn an_unreadable_note_still_gives_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let held = StateLock::acquire(dir.path(), "run").unwrap();
        std::fs::write(held.path(), "garbage\n").unwrap();
        let msg = StateLock::acquire(dir.path(), "run").unwrap_err().to_string();
        assert!(msg.contains("another auditrelay (pid unknown) holds"), "{msg}");
    }

    #[test]
    fn an_unusable_state_dir_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let err = StateLock::acquire(&file.join("state"), "run").unwrap_err();
        assert!(matches!(err, LockError::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains(&file.join("state").display().to_string()), "{err}");
    }

    /// The kernel releases a `flock` when its holder dies, even by SIGKILL: the next start is
    /// not blocked by what the dead one left behind (its note is still in the file).
    #[test]
    fn a_killed_holder_does_not_block_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        // This test binary again, running only `hold_the_lock_when_asked`, which holds the lock.
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "lock::tests::hold_the_lock_when_asked", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let note = format!("pid={}\n", child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !std::fs::read_to_string(dir.path().join(LOCK_FILE)).is_ok_and(|t| t.starts_with(&note)) {
            assert!(Instant::now() < deadline, "the child never took the lock");
            std::thread::sleep(Duration::from_millis(10));
        }
        let msg = StateLock::acquire(dir.path(), "run").unwrap_err().to_string();
        assert!(msg.contains(&format!("pid {}", child.id())), "{msg}");
        child.kill().unwrap(); // SIGKILL: no destructor runs in the child
        child.wait().unwrap();
        let lock = StateLock::acquire(dir.path(), "run").unwrap();
        drop(lock);
    }

    /// Not a test of its own: the holder process for the test above (does nothing otherwise).
    #[test]
    fn hold_the_lock_when_asked() {
        let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
        let _lock = StateLock::acquire(Path::new(&dir), "run").unwrap();
        // Block until killed (stdin stays open: the parent holds the pipe).
        let _ = std::io::stdin().read(&mut [0u8; 1]);
        panic!("the parent should have killed this process");
    }
}
