//! `auditrelay reload`: reload the running agent and learn whether it took the file.
//!
//! Debian 12's systemd (252) has no `Type=notify-reload`: `systemctl reload` finishes when the
//! unit's `ExecReload=` command does, so a `kill -HUP` there reports success even when the agent
//! then refuses the file. This command is that `ExecReload=`: it loads the file as `check` does
//! (a file `check` refuses is never signalled), sends SIGHUP to `--pid`, and waits for the agent's
//! answer, exiting 0 only once the agent applied it — so a refusal `check` cannot foresee
//! (`state_dir` changed, a certificate the agent cannot read) also fails the reload.
//!
//! The answer travels through a small status file the daemon rewrites (atomically) at start and
//! after every reload attempt ([`record`]): its pid, the attempt's sequence number, the SHA-256
//! of the file text the attempt read, and the outcome. It lives in `$RUNTIME_DIRECTORY` (the
//! unit's `RuntimeDirectory=auditrelay`, /run/auditrelay: the command and the agent see the same
//! one whatever the file's `state_dir` says) or else in the state directory. The command waits
//! for an attempt by that pid, numbered after the one it saw before signalling, that read the
//! same text it checked: an attempt already under way when it signalled (reading an older text)
//! is not taken for its answer. SIGHUPs that arrive during a reload are coalesced into one more
//! reload, which reads the file as it is then.
//!
//! Must not: change the agent's state itself, or wait without a deadline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::Config;

/// The status file's name, in `$RUNTIME_DIRECTORY` or the state directory.
pub const STATUS_FILE: &str = "reload-status.json";

/// What the daemon says of its last configuration load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub pid: u32,
    /// 0 for the load at start, then one more per reload attempt.
    pub seq: u64,
    /// Hex SHA-256 of the file text the attempt read (`None`: it could not read it).
    pub config_sha256: Option<String>,
    pub ok: bool,
    /// [`effective_digest`] of the configuration the agent runs after the attempt (`None` in a
    /// status written before it existed): how it resolved `${NAME}` variables and secret files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_sha256: Option<String>,
    /// Why the attempt was refused (`None` when applied).
    pub why: Option<String>,
    /// When the attempt ended (RFC 3339).
    pub at: String,
    /// The agent process's start (`/proc/<pid>/stat` field 22, clock ticks since boot): with the
    /// pid, it names the process; a status left by an agent that exited names no live process
    /// even when its pid is reused. `None` where there is no `/proc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_start: Option<u64>,
    /// The configuration file as the agent names it (its absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// `a` and `b` name the same file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        a == b
    }
}

/// Field 22 (start time) of `/proc/<pid>/stat` (`None` for this process: `self`).
pub fn proc_start(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |pid| format!("/proc/{pid}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    stat.get(stat.rfind(')')? + 2..)?.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Where the status file of an agent whose state directory is `state_dir` lives: in
/// `$RUNTIME_DIRECTORY` when it is set (the unit's /run/auditrelay: found whatever the file's
/// `state_dir` now says), and always in the state directory (found by an operator running
/// `auditrelay reload` from a shell, which has no `$RUNTIME_DIRECTORY`). The agent writes both.
pub fn status_paths(state_dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(dirs) = std::env::var_os("RUNTIME_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may list several directories, separated by ':'; ours is the first.
        let dirs = dirs.to_string_lossy().into_owned();
        paths.push(PathBuf::from(dirs.split(':').next().unwrap_or_default()).join(STATUS_FILE));
    }
    paths.push(state_dir.join(STATUS_FILE));
    paths
}

/// The hex SHA-256 of the file at `path` as it is now (`None`: unreadable).
pub fn file_digest(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    Some(Sha256::digest(&text).iter().map(|b| format!("{b:02x}")).collect())
}

/// A digest of a loaded configuration as it resolved: every source's and sink's fingerprint
/// (settings and secrets) and the state directory. The agent's environment is the one it
/// started with, while `auditrelay reload` runs with systemd's fresh reading of the unit's
/// `EnvironmentFile=`: the same file resolving to another digest is a changed `${NAME}`.
pub fn effective_digest(config: &Config) -> String {
    let mut hash = Sha256::new();
    hash.update(config.state_dir.as_os_str().as_encoded_bytes());
    for fingerprint in
        config.sources.iter().map(|s| s.fingerprint()).chain(config.sinks.iter().map(|s| s.fingerprint()))
    {
        hash.update(fingerprint);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `status` to `path` atomically (a temporary file renamed over it), so that a reader
/// never sees half of it.
pub fn record(path: &Path, status: &Status) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, status)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The status file's content, if it holds one.
fn read(path: &Path) -> Option<Status> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// What `auditrelay reload` was asked.
#[derive(Debug, Clone)]
pub struct ReloadArgs {
    pub config: PathBuf,
    pub pid: u32,
    pub timeout: Duration,
}

/// How often the status file is read while waiting for the agent's answer.
const POLL: Duration = Duration::from_millis(50);

/// Runs `reload`: `Ok` with the line to print once the agent applied the file; `Err` naming why
/// not (the file refused, the agent refused it, or no answer by the deadline).
pub async fn run(args: ReloadArgs) -> anyhow::Result<String> {
    // systemd before 254 does not give ExecReload= the unit's credentials directory (and under a
    // mount namespace not even later: systemd issue 35227), so the secrets this command cannot
    // read are left to the agent, which reads them in its own namespace and answers.
    let (config, mine) = match Config::load(&args.config) {
        Ok(config) => {
            let mine = effective_digest(&config);
            (config, Some(mine))
        }
        Err(e) => match Config::load_without_secrets(&args.config) {
            Ok(config) => {
                tracing::warn!(error = %e, "this command cannot read every secret of the file (under systemd 252 \
                    ExecReload= has no credentials directory): the agent, which can, decides");
                (config, None)
            }
            Err(_) => return Err(e.into()),
        },
    };
    let digest = file_digest(&args.config)
        .with_context(|| format!("{}: cannot read the configuration file", args.config.display()))?;
    // The agent wrote its pid there at start: any other process is never signalled (SIGHUP
    // kills a process that does not handle it).
    let paths = status_paths(&config.state_dir);
    // ... and is still that process (a status left behind names a pid the system may reuse).
    let alive = |s: &Status| s.proc_start.is_none_or(|start| proc_start(Some(s.pid)) == Some(start));
    let Some((path, found)) =
        paths.iter().find_map(|p| read(p).filter(|s| s.pid == args.pid && alive(s)).map(|s| (p.clone(), s)))
    else {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "pid {} is not an auditrelay agent running this configuration: no reload status of it (of that \
             very process) in {} (an agent writes one when it starts). Not signalled. Check the pid (`systemctl show -p MainPID \
             auditrelay`); a changed state_dir needs a restart",
            args.pid,
            shown.join(" or ")
        );
    };
    let before = Some(found.seq);
    // Relative paths in the file resolve against the directory it was named by: through a
    // symlinked directory they differ from the agent's. The digest to compare is of the file
    // as the agent names it, when that is the same file (review C).
    let mine = match found.origin.as_deref().map(Path::new) {
        Some(origin) if mine.is_some() && origin != args.config && same_file(origin, &args.config) => {
            Config::load(origin).ok().map(|c| effective_digest(&c))
        }
        _ => mine,
    };
    signal_hup(args.pid)?;
    let deadline = tokio::time::Instant::now() + args.timeout;
    // The latest attempt after the signal that read another text (the file changed meanwhile).
    let mut other: Option<Status> = None;
    loop {
        if let Some(status) = read(&path).filter(|s| s.pid == args.pid && Some(s.seq) > before) {
            if status.config_sha256.as_deref() == Some(digest.as_str()) {
                return answer(&args, &status, mine.as_deref());
            }
            other = Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            let waited = humantime::format_duration(args.timeout);
            match other {
                Some(s) => bail!(
                    "the agent (pid {}) reloaded {} as it was at another moment (the file changed while it was \
                     being reloaded; {}): reload again to apply the file as it is now",
                    args.pid,
                    args.config.display(),
                    if s.ok { "that version was applied".to_owned() } else { format!("refused: {}", why(&s)) }
                ),
                None => bail!(
                    "no answer from the agent (pid {}) within {waited}: {} shows no reload after the signal. A \
                     reload waits for changed sinks to finish a send under way; is it an auditrelay agent with this \
                     configuration (a changed state_dir needs a restart)? `journalctl -u auditrelay` says more",
                    args.pid,
                    path.display()
                ),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn why(status: &Status) -> &str {
    status.why.as_deref().unwrap_or("no reason given")
}

/// The agent's answer to the file this command checked (and resolved as `mine`).
fn answer(args: &ReloadArgs, status: &Status, mine: Option<&str>) -> anyhow::Result<String> {
    // The agent's `${NAME}` variables are those it started with; this command's are systemd's
    // fresh reading of EnvironmentFile=. A difference is a changed variable the agent cannot see.
    const ENV_HINT: &str = "the agent's environment is the one it started with, so a `${NAME}` variable \
        added or changed in the environment file (EnvironmentFile=) since then takes a restart: \
        `systemctl restart auditrelay`";
    if status.ok {
        if let (Some(theirs), Some(mine)) = (status.effective_sha256.as_deref(), mine)
            && theirs != mine
        {
            bail!(
                "the agent (pid {}) applied {} but resolved it differently from this command: {ENV_HINT}",
                args.pid,
                args.config.display()
            );
        }
        Ok(format!("reloaded: the agent (pid {}) applied {}", args.pid, args.config.display()))
    } else {
        bail!(
            "the agent (pid {}) refused {}, which this command accepts: {}; the running configuration stays \
             (its log says more: `journalctl -u auditrelay`). If it names a variable that is not set: {ENV_HINT}",
            args.pid,
            args.config.display(),
            why(status)
        )
    }
}

/// Sends SIGHUP to `pid`.
fn signal_hup(pid: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let raw = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw);
        let Some(target) = raw else { bail!("--pid {pid}: not a process id") };
        rustix::process::kill_process(target, rustix::process::Signal::HUP)
            .with_context(|| format!("cannot send SIGHUP to the agent (pid {pid})"))
    }
    #[cfg(not(unix))]
    bail!("reload needs a Unix system (SIGHUP); pid {pid}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn status(pid: u32, seq: u64) -> Status {
        Status {
            pid,
            seq,
            config_sha256: Some("ab".into()),
            ok: true,
            effective_sha256: None,
            why: None,
            at: "t".into(),
            proc_start: Some(7),
            origin: None,
        }
    }

    #[test]
    fn test_this_process_has_a_start_and_a_dead_pid_has_none() {
        let me = proc_start(None).unwrap();
        assert_eq!(proc_start(Some(std::process::id())), Some(me));
        assert_eq!(proc_start(Some(u32::MAX)), None);
    }

    #[test]
    fn test_record_replaces_the_status_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATUS_FILE);
        record(&path, &status(7, 0)).unwrap();
        record(&path, &status(7, 1)).unwrap();
        assert_eq!(read(&path), Some(status(7, 1)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn test_the_digest_is_of_the_file_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(file_digest(&path).as_deref(), Some(abc));
        assert_eq!(file_digest(&dir.path().join("missing")), None);
    }
}
