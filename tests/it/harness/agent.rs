//! The real agent (`CARGO_BIN_EXE_auditrelay`) running as a child process, its log (stderr) in a
//! file so a test can read it, and `/proc/<pid>/status`, while the agent runs. Waits poll a
//! condition under a deadline; none sleeps to wait.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of the log a failure message shows.
const TAIL_LINES: usize = 20;

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture the project builds for (the unit of
/// `/proc/<pid>/stat` times).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// The real agent, running.
pub struct Agent {
    child: tokio::process::Child,
    log: PathBuf,
    pid: u32,
}

impl Agent {
    /// `auditrelay run --once -c config` (`once`), or `run` (follow), logging at `info` to
    /// `agent.log` beside the configuration (emptied first).
    pub fn start(config: &Path, once: bool) -> Agent {
        let log = config.with_file_name("agent.log");
        let _ = std::fs::remove_file(&log);
        let args: &[&str] = if once { &["run", "--once"] } else { &["run"] };
        Agent::spawn(args, config, &log, &[])
    }

    /// `auditrelay <args> -c config` with `RUST_LOG=info` unless `env` sets it, appending its
    /// stderr and stdout to `log`. The binary is cargo's build of this package, or `$AUDITRELAY_BIN`.
    pub fn spawn(args: &[&str], config: &Path, log: &Path, env: &[(&str, &str)]) -> Agent {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open the agent's log {}: {e}", log.display()));
        let stdout =
            stderr.try_clone().unwrap_or_else(|e| panic!("cannot share the agent's log {}: {e}", log.display()));
        // `AUDITRELAY_BIN` runs another build instead (benchmarks compare builds with it).
        let binary = std::env::var_os("AUDITRELAY_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_auditrelay").into());
        let mut cmd = tokio::process::Command::new(binary);
        cmd.args(args)
            .arg("-c")
            .arg(config)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            // Into the log too: `run --once` prints its summary line there (what each sink
            // still has queued, which source failed), and a failed test shows it with the log.
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        Agent { child, log: log.to_owned(), pid }
    }

    /// `program args` (not the agent binary itself: a wrapper that execs it), its stderr
    /// appended to `log`, `RUST_LOG=info`.
    pub fn spawn_command(program: &str, args: &[&str], log: &Path) -> Agent {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        Agent { child, log: log.to_owned(), pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, newest last: for failure messages.
    pub fn tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }

    /// How often `needle` occurs in the log.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The log lines containing every one of `pieces`.
    pub fn lines_with(&self, pieces: &[&str]) -> Vec<String> {
        self.log().lines().filter(|l| pieces.iter().all(|p| l.contains(p))).map(str::to_owned).collect()
    }

    /// The agent's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM") * 1024
    }

    /// The agent's resident memory now (`VmRSS`), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS") * 1024
    }

    /// What the resident memory is now, in bytes: anonymous (heap, stacks), file-backed (the
    /// binary's pages, mapped files), shared memory (SQLite's WAL index); and the thread count.
    pub fn rss_parts(&self) -> (u64, u64, u64, u64) {
        let kib = |key| self.status_kib(key) * 1024;
        (kib("RssAnon"), kib("RssFile"), kib("RssShmem"), self.status_kib("Threads"))
    }

    /// A number line of `/proc/<pid>/status` (most are in kB).
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("the agent (pid {}) is not running: {e}", self.pid));
        let line = status
            .lines()
            .find(|l| l.strip_prefix(key).is_some_and(|rest| rest.starts_with(':')))
            .unwrap_or_else(|| panic!("no {key} in /proc/{}/status", self.pid));
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}: not kB"))
    }

    /// CPU time the agent used so far, user and system (`/proc/<pid>/stat` fields 14 and 15),
    /// in seconds.
    pub fn cpu_seconds(&self) -> (f64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .unwrap_or_else(|e| panic!("the agent (pid {}) is not running: {e}", self.pid));
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let after = &stat[stat.rfind(')').expect("a /proc/<pid>/stat line") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields[i].parse::<f64>().expect("clock ticks") / CLOCK_TICKS_PER_SECOND;
        (ticks(11), ticks(12))
    }

    /// Its `/metrics` text, from the telemetry listener its log names (`[telemetry] listen =
    /// "127.0.0.1:0"`: the log says which port it got).
    pub async fn metrics(&self) -> String {
        let log = self.log();
        let at = log
            .find("Some(127.0.0.1:")
            .unwrap_or_else(|| panic!("no telemetry listen address in the agent's log; it ends:\n{}", self.tail()))
            + "Some(".len();
        let addr: String = log[at..].chars().take_while(|c| *c != ')').collect();
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Polls `done` every 10 ms until it holds, while the agent keeps running; panics naming
    /// `what`, with the log's tail, if the agent exits first or `limit` passes.
    pub async fn until(&mut self, what: &str, limit: Duration, mut done: impl FnMut(&Agent) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if let Some(status) = self.exited() {
                panic!("the agent exited ({status}) before {what}; its log ends:\n{}", self.tail());
            }
            if Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for {what}; the agent's log ends:\n{}", self.tail());
            }
            // The observer's polling interval, not a wait for the condition.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the agent to exit on its own (at most `limit`).
    pub async fn exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the agent did not exit within {limit:?}; its log ends:\n{}", self.tail()),
        }
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let sent = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().unwrap();
        assert!(sent.success(), "kill -TERM {} failed", self.pid);
        self.exit(limit).await
    }

    /// SIGKILL, then waits for the exit.
    pub async fn kill(&mut self) -> ExitStatus {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap()
    }
}

/// The value of the one sample of a `/metrics` text whose name and labels are exactly `series`
/// (`name{label="value",...}`, in the order the exposition writes them).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, value) = l.rsplit_once(' ')?;
        (s == series).then(|| value.parse().unwrap())
    })
}

/// Polls `done` every 10 ms until it holds; panics naming `what` after `limit`.
pub async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let poll = async {
        while !done() {
            // The observer's polling interval, not a wait for the condition.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(limit, poll).await.is_err() {
        panic!("timed out after {limit:?} waiting for {what}");
    }
}
