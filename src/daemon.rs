//! Wiring: takes the state directory's lock, opens the queue, starts one task per source and per
//! sink, serves telemetry, talks to systemd, applies reloads, and stops everything in order.
//!
//! Start: sinks are opened first (an unreadable certificate stops the start before anything is
//! touched), then the lock, the queue, the telemetry listener, the sink workers and the sources;
//! then systemd hears `READY=1`.
//!
//! Reload ([`RunOptions::reload`], SIGHUP): systemd hears `RELOADING=1` (with
//! `MONOTONIC_USEC=`), the file is read again; an invalid file leaves the running configuration
//! in place with an error. Either way systemd then hears `READY=1` and a `STATUS=` saying
//! whether the reload was applied or refused, and `/metrics` says so too
//! (`auditrelay_config_last_reload_successful`). Otherwise each source or sink whose settings
//! changed (secrets included) is stopped the way a shutdown stops it and started again with the
//! new settings; removed ones are stopped; added ones started; unchanged ones are not touched (a
//! source keeps its rate limiter and any 429 pause). The queue keeps every event and checkpoint:
//! a new sink starts with what is still queued, a removed sink's cursor is dropped so it no
//! longer holds events back. `state_dir`, `[queue]` and `[telemetry]` need a restart.
//!
//! Shutdown order, top-down, in one place ([`run`]):
//! 1. the shutdown token fires (SIGTERM/SIGINT) — or, in catch-up mode, every source is done;
//!    systemd hears `STOPPING=1`;
//! 2. sources stop: a page already received is committed first (a source observes cancellation
//!    only while waiting or talking to the vendor, never between a page and its commit);
//! 3. sinks finish the batch in hand (on shutdown) or drain the queue (catch-up), within
//!    `drain_timeout` after a shutdown; an undelivered batch simply stays queued;
//! 4. telemetry stops, the queue closes (WAL checkpoint), the lock is released and the report
//!    is returned.
//!
//! It knows nothing of vendors' or protocols' details: those live in `sources/` and `sinks/`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::{Config, SinkConfig, SourceConfig};
use crate::lock::{LockError, StateLock};
use crate::queue::{Queue, QueueError, QueueOptions};
use crate::sinks::{self, Sink, SinkControl, SinkStats, SinkStatsSnapshot};
use crate::sources::{RunMode, Source, SourceExit, SourceStats, SourceStatsSnapshot};
use crate::telemetry::{SinkProbe, SourceProbe, Telemetry};

/// How often the daemon logs its one-line progress summary, while there is activity.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// Receives the running sources' names and counters ([`RunOptions::observe`]).
pub type SourceObserver = tokio::sync::watch::Sender<Vec<(String, Arc<SourceStats>)>>;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: RunMode,
    /// How long sinks may keep trying to deliver the batch in hand after a shutdown.
    pub drain_timeout: Duration,
    /// Notified to reload the configuration from `Config::origin` (SIGHUP); `None`: never.
    pub reload: Option<Arc<Notify>>,
    /// Told the running sources and their counters whenever the set changes (`backfill`'s
    /// progress display).
    pub observe: Option<Arc<SourceObserver>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { mode: RunMode::Follow, drain_timeout: Duration::from_secs(30), reload: None, observe: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    CaughtUp,
    Shutdown,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct SourceReport {
    pub name: String,
    pub vendor: &'static str,
    pub stats: SourceStatsSnapshot,
    pub outcome: SourceOutcome,
}

#[derive(Debug, Clone)]
pub struct SinkReport {
    pub name: String,
    pub stats: SinkStatsSnapshot,
    /// Events still queued for this sink when it stopped.
    pub backlog: u64,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub sources: Vec<SourceReport>,
    pub sinks: Vec<SinkReport>,
    pub elapsed: Duration,
}

impl RunReport {
    pub fn failed(&self) -> bool {
        self.sources.iter().any(|s| matches!(s.outcome, SourceOutcome::Failed(_)))
    }

    /// Events still queued for some sink when the run ended (a catch-up stopped before its
    /// sinks drained).
    pub fn undelivered(&self) -> u64 {
        self.sinks.iter().map(|s| s.backlog).sum()
    }

    /// Records (sources could not map) and events (sinks refused for good) moved to the
    /// dead-letter table in this run.
    pub fn dead_lettered(&self) -> u64 {
        let sources: u64 = self.sources.iter().map(|s| s.stats.dead_lettered).sum();
        let sinks: u64 = self.sinks.iter().map(|s| s.stats.dead_lettered).sum();
        sources.saturating_add(sinks)
    }

    /// The one line `run --once` prints at its end: records stored per source, events
    /// delivered per sink (and what each still has queued), dead letters of this run.
    pub fn summary_line(&self) -> String {
        let sources: Vec<String> = self
            .sources
            .iter()
            .map(|s| {
                let failed = if matches!(s.outcome, SourceOutcome::Failed(_)) { " (FAILED)" } else { "" };
                format!("{} stored {}{failed}", s.name, s.stats.stored)
            })
            .collect();
        let sinks: Vec<String> = self
            .sinks
            .iter()
            .map(|s| {
                let backlog = if s.backlog > 0 { format!(" ({} still queued)", s.backlog) } else { String::new() };
                format!("{} delivered {}{backlog}", s.name, s.stats.events)
            })
            .collect();
        let by_sources: u64 = self.sources.iter().map(|s| s.stats.dead_lettered).sum();
        let mut line = format!(
            "run --once: sources: {}; sinks: {}; {} dead-lettered",
            if sources.is_empty() { "none".to_owned() } else { sources.join(", ") },
            if sinks.is_empty() { "none".to_owned() } else { sinks.join(", ") },
            self.dead_lettered(),
        );
        if self.dead_lettered() > 0 {
            line.push_str(&format!(
                " ({by_sources} records sources could not map, {} events sinks refused: see `auditrelay queue dead-letters`)",
                self.dead_lettered().saturating_sub(by_sources)
            ));
        }
        line.push_str(&format!(" in {:.1}s", self.elapsed.as_secs_f64()));
        line
    }
}

/// Each message already holds its cause's text, so none of them also reports it as a
/// `source()` (an error chain printed with `{:#}` would say it twice).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the state database: {0}")]
    Queue(QueueError),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    #[error("cannot set up {0}")]
    Sink(sinks::OpenError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen for telemetry on {addr}: {error}")]
    Telemetry { addr: std::net::SocketAddr, error: std::io::Error },
}

impl From<QueueError> for DaemonError {
    fn from(e: QueueError) -> Self {
        DaemonError::Queue(e)
    }
}

impl From<sinks::OpenError> for DaemonError {
    fn from(e: sinks::OpenError) -> Self {
        DaemonError::Sink(e)
    }
}

/// Runs the agent described by `config` until `shutdown` fires (or, in catch-up mode, until
/// every source has caught up and every sink has drained the queue).
pub async fn run(
    config: &Config,
    clock: Clock,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunReport, DaemonError> {
    let started = clock.now();
    // Certificates and keys are read before anything else: a sink that cannot work stops the
    // start with its name and cause, instead of retrying forever.
    let opened: Vec<Sink> = config.sinks.iter().map(Sink::open).collect::<Result<_, _>>()?;
    let lock = StateLock::acquire(&config.state_dir, "run")?;
    notify_status("checking the state database");
    // A renamed sink's cursor moves to its new name before opening drops unknown cursors.
    for r in crate::queue::rename_sink_cursors(&config.state_dir, &sink_renames(&config.sinks))? {
        info!(from = %r.from, to = %r.to, after_id = r.cursor, "sink renamed: its cursor and backlog carried over");
    }
    let queue = Queue::open_with_clock(
        &config.state_dir,
        QueueOptions {
            max_bytes: config.queue.max_bytes,
            sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
        },
        clock.clone(),
    )
    .map_err(crate::sources::describe_damaged)?;
    info!(db = %queue.path().display(), sources = config.sources.len(), sinks = config.sinks.len(), "agent starting");
    // Each source's HTTP client (its CA file is read here): one that cannot be made stops the start.
    let clients = source_clients(&config.sources).map_err(DaemonError::Http)?;
    let telemetry = Telemetry::new(queue.clone(), clock.clone());
    let stop_telemetry = CancellationToken::new();
    let telemetry_task = match config.telemetry.listen {
        None => None,
        Some(addr) => {
            let listener =
                tokio::net::TcpListener::bind(addr).await.map_err(|error| DaemonError::Telemetry { addr, error })?;
            info!(listen = %addr, "serving /metrics, /health and /ready");
            Some(tokio::spawn(telemetry.clone().serve(listener, stop_telemetry.clone())))
        }
    };

    let mut agent = Agent {
        clock: clock.clone(),
        queue: queue.clone(),
        mode: opts.mode,
        drain_timeout: opts.drain_timeout,
        config: config.clone(),
        sinks: BTreeMap::new(),
        sources: BTreeMap::new(),
        source_tasks: JoinSet::new(),
        retiring_sinks: Vec::new(),
        generation: 0,
        finished_sources: Vec::new(),
        failed_sources: BTreeMap::new(),
        deferred_sinks: BTreeMap::new(),
        stop_sources: CancellationToken::new(),
        gates: crate::sources::ratelimit::Gates::default(),
    };
    for (cfg, sink) in config.sinks.iter().zip(opened) {
        agent.start_sink(cfg.clone(), sink);
    }
    for (cfg, http) in config.sources.iter().zip(clients) {
        agent.start_source(cfg.clone(), http);
    }
    agent.publish(&telemetry, opts.observe.as_deref());
    telemetry.set_ready(true);
    notify(&[sd_notify::NotifyState::Ready]);
    notify_status(&format!("collecting: {} source(s), {} sink(s)", config.sources.len(), config.sinks.len()));
    // The answer `auditrelay reload` (the unit's ExecReload=) waits for: 0 at start, then one
    // per reload attempt.
    let reload_status = opts.reload.as_ref().map(|_| crate::reload::status_paths(&config.state_dir));
    let mut reload_seq = 0;
    record_reload(reload_status.as_deref().unwrap_or_default(), reload_seq, config, Ok(()));
    let watchdog = spawn_watchdog(queue.clone(), clock.clone());

    // 1–2: wait for the sources to end, stopping them on shutdown; reload on request.
    let reload = opts.reload.clone().unwrap_or_default();
    // When the shutdown signal came: the sinks' drain deadline counts from it.
    let mut stopping_since: Option<tokio::time::Instant> = None;
    let mut progress = Progress::default();
    let mut next_progress = clock.now() + PROGRESS_EVERY;
    loop {
        tokio::select! {
            _ = clock.sleep_until(next_progress) => {
                next_progress += PROGRESS_EVERY;
                if let Some(line) = agent.progress(&mut progress).await {
                    info!("{line}");
                }
            }
            done = agent.source_tasks.join_next() => match done {
                None => break,
                Some(Ok((name, generation, exit))) => {
                    agent.source_ended(name, generation, exit);
                    agent.publish(&telemetry, opts.observe.as_deref());
                }
                Some(Err(e)) => error!(error = %e, "a source task ended abnormally"),
            },
            _ = shutdown.cancelled(), if !agent.stop_sources.is_cancelled() => {
                stopping_since = Some(clock.now());
                info!("shutting down: stopping sources");
                telemetry.set_ready(false);
                notify(&[sd_notify::NotifyState::Stopping]);
                agent.stop_sources.cancel();
            }
            _ = reload.notified(), if !agent.stop_sources.is_cancelled() => {
                // systemd's reload protocol: RELOADING=1 with the monotonic time now, READY=1
                // once done, applied or refused (the STATUS= line and the metric say which).
                let mut reloading = vec![sd_notify::NotifyState::Reloading];
                reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                notify(&reloading);
                // A SIGTERM during the reload interrupts it (the loop then shuts down).
                let digest = crate::reload::file_digest(&agent.config.origin);
                let outcome = agent.reload(&shutdown).await;
                telemetry.reloaded(outcome.is_ok());
                reload_seq += 1;
                record_reload_digest(reload_status.as_deref().unwrap_or_default(), reload_seq, digest, &agent.config, outcome);
                agent.publish(&telemetry, opts.observe.as_deref());
                let status = match &outcome {
                    Ok(()) => format!(
                        "collecting: {} source(s), {} sink(s) (reloaded)",
                        agent.config.sources.len(),
                        agent.config.sinks.len()
                    ),
                    Err(why) => format!("reload refused: {why}; the running configuration stays (see the log)"),
                };
                notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
            }
        }
    }

    // 3: sinks finish the batch in hand (shutdown) or drain the queue (catch-up).
    telemetry.set_ready(false);
    let sinks_done = agent.stop_sinks(!shutdown.is_cancelled(), &shutdown, stopping_since).await;

    // 4: report, then close the database.
    if let Some(w) = watchdog {
        w.abort();
    }
    stop_telemetry.cancel();
    if let Some(t) = telemetry_task {
        let _ = t.await;
    }
    let mut sinks = Vec::new();
    for (name, stats) in sinks_done {
        let backlog = match queue.backlog(&name).await {
            Ok(n) => n,
            Err(e) => {
                warn!(sink = %name, error = %e, "cannot read the sink's backlog at the end: the summary counts it as 0");
                0
            }
        };
        sinks.push(SinkReport { name, stats: stats.snapshot(), backlog });
    }
    // In the configuration's order, as the operator wrote them.
    let order: Vec<&str> = agent.config.sources.iter().map(|s| s.name.as_str()).collect();
    let mut sources = std::mem::take(&mut agent.finished_sources);
    sources.sort_by_key(|s| order.iter().position(|n| *n == s.name).unwrap_or(usize::MAX));
    drop(agent.queue);
    queue.close().await?;
    drop(lock);
    let elapsed = clock.now().saturating_duration_since(started);
    info!(?elapsed, "agent stopped");
    Ok(RunReport { sources, sinks, elapsed })
}

/// The running set of sources and sinks, and how to change it.
struct Agent {
    clock: Clock,
    queue: Queue,
    mode: RunMode,
    drain_timeout: Duration,
    /// The configuration in force (the last valid one loaded).
    config: Config,
    sinks: BTreeMap<String, RunningSink>,
    sources: BTreeMap<String, RunningSource>,
    /// Each source task returns its name and generation: a task stopped by a reload belongs to
    /// an older generation than the source now running under that name.
    source_tasks: JoinSet<(String, u64, SourceExit)>,
    /// Sink workers a reload was stopping when a shutdown interrupted it: told to abort, and
    /// awaited with the others at step 3.
    retiring_sinks: Vec<RunningSink>,
    generation: u64,
    /// Sources that ended (caught up, failed, or shut down), in the order they did.
    finished_sources: Vec<SourceReport>,
    /// Sources that failed for good while following: still on `/metrics` (state stopped) and on
    /// `/ready` (degraded, operator action needed) until a reload or restart starts them again.
    failed_sources: BTreeMap<String, RunningSource>,
    /// Renamed sinks a reload left stopped (their old cursor could not be carried over): on
    /// `/ready` (degraded, operator) and `/metrics` (state stopped) until started.
    deferred_sinks: BTreeMap<String, (SinkConfig, Arc<SinkStats>)>,
    /// Cancelled on shutdown: stops every source, present and future.
    stop_sources: CancellationToken,
    /// Every credential's limiter and rate-limit pause, kept across reloads: a source restarted
    /// by a reload shares them again instead of starting with a fresh budget.
    gates: crate::sources::ratelimit::Gates,
}

struct RunningSource {
    cfg: SourceConfig,
    generation: u64,
    stop: CancellationToken,
    stats: Arc<SourceStats>,
    state: tokio::sync::watch::Receiver<crate::sources::SourceState>,
}

struct RunningSink {
    cfg: SinkConfig,
    control: SinkControl,
    stats: Arc<SinkStats>,
    task: JoinHandle<()>,
}

impl Agent {
    fn start_source(&mut self, cfg: SourceConfig, http: reqwest::Client) {
        self.failed_sources.remove(&cfg.name);
        self.generation += 1;
        let generation = self.generation;
        let source = Source::with_gate(
            cfg.clone(),
            http,
            self.queue.clone(),
            self.clock.clone(),
            self.gates.gate(&cfg, &self.clock),
        );
        let stop = self.stop_sources.child_token();
        let (stats, state) = (source.stats(), source.subscribe_state());
        let (name, mode, token) = (cfg.name.clone(), self.mode, stop.clone());
        self.source_tasks.spawn(async move { (name, generation, source.run(mode, token).await) });
        self.sources.insert(cfg.name.clone(), RunningSource { cfg, generation, stop, stats, state });
    }

    fn source_ended(&mut self, name: String, generation: u64, exit: SourceExit) {
        let current = self.sources.get(&name).is_some_and(|s| s.generation == generation);
        if !current {
            info!(source = %name, "source stopped for the reload");
            return;
        }
        let Some(running) = self.sources.remove(&name) else { return };
        let outcome = match exit {
            SourceExit::CaughtUp => {
                info!(source = %name, "caught up");
                SourceOutcome::CaughtUp
            }
            SourceExit::Shutdown => SourceOutcome::Shutdown,
            SourceExit::Failed(e) => {
                error!(source = %name, error = %e, "source stopped");
                SourceOutcome::Failed(e.to_string())
            }
        };
        let vendor = running.cfg.vendor.vendor_name();
        self.finished_sources.push(SourceReport {
            name: name.clone(),
            vendor,
            stats: running.stats.snapshot(),
            outcome: outcome.clone(),
        });
        if let (SourceOutcome::Failed(why), RunMode::Follow) = (&outcome, self.mode)
            && !self.stop_sources.is_cancelled()
        {
            let now_ms = self.clock.now_utc().timestamp_millis();
            running.stats.trouble.failed(now_ms, format!("stopped for good: {why}"), true);
            self.failed_sources.insert(name, running);
        }
    }

    fn start_sink(&mut self, cfg: SinkConfig, sink: Sink) {
        self.deferred_sinks.remove(&cfg.name);
        let stats = Arc::new(SinkStats::default());
        let control = SinkControl::default();
        let task = tokio::spawn(sinks::run_sink(
            cfg.clone(),
            sink,
            self.queue.clone(),
            self.clock.clone(),
            Arc::clone(&stats),
            control.clone(),
        ));
        self.sinks.insert(cfg.name.clone(), RunningSink { cfg, control, stats, task });
    }

    /// Stops one sink's worker after the batch in hand (within `drain_timeout`). A shutdown
    /// meanwhile aborts it at once (the batch stays queued) and returns `false` without waiting:
    /// step 3 of the shutdown awaits it with the others.
    async fn stop_sink(&mut self, name: &str, shutdown: &CancellationToken) -> bool {
        let Some(mut running) = self.sinks.remove(name) else { return true };
        running.control.stop.cancel();
        running.control.replaced.cancel();
        tokio::select! {
            _ = &mut running.task => true,
            _ = self.clock.sleep(self.drain_timeout) => {
                warn!(sink = %name, "drain deadline reached: the batch in hand stays queued");
                running.control.abort.cancel();
                tokio::select! {
                    _ = &mut running.task => true,
                    _ = shutdown.cancelled() => {
                        self.retiring_sinks.push(running);
                        false
                    }
                }
            }
            _ = shutdown.cancelled() => {
                warn!(sink = %name, "shutdown during a reload: the sink being stopped leaves its batch in the queue");
                running.control.abort.cancel();
                self.retiring_sinks.push(running);
                false
            }
        }
    }

    /// Waits until the tasks of these stopped sources (name, generation) have ended, handling
    /// any other source that ends meanwhile; `false` if a shutdown came first.
    async fn await_stopped_sources(&mut self, mut waiting: Vec<(String, u64)>, shutdown: &CancellationToken) -> bool {
        while !waiting.is_empty() {
            tokio::select! {
                done = self.source_tasks.join_next() => match done {
                    None => break,
                    Some(Ok((name, generation, exit))) => {
                        waiting.retain(|w| *w != (name.clone(), generation));
                        self.source_ended(name, generation, exit);
                    }
                    // A task that panicked cannot say which it was: it ended either way, and
                    // the others are still awaited.
                    Some(Err(e)) => error!(error = %e, "a source task ended abnormally"),
                },
                _ = shutdown.cancelled() => return false,
            }
        }
        true
    }

    /// Step 3 of the shutdown: every sink drains (catch-up) or finishes its batch (shutdown),
    /// and a later shutdown signal still bounds a drain by `drain_timeout`. The deadline counts
    /// from the shutdown signal (`since`), so the time sources took to stop (a request in flight
    /// read for its pause) is inside `drain_timeout`, not added to it.
    async fn stop_sinks(
        &mut self,
        drain: bool,
        shutdown: &CancellationToken,
        since: Option<tokio::time::Instant>,
    ) -> Vec<(String, Arc<SinkStats>)> {
        let running: Vec<RunningSink> = std::mem::take(&mut self.sinks).into_values().collect();
        for r in &running {
            if drain { r.control.drain.cancel() } else { r.control.stop.cancel() }
        }
        let mut deadline_armed = !drain;
        let deadline = self.clock.sleep_until(since.unwrap_or_else(|| self.clock.now()) + self.drain_timeout);
        tokio::pin!(deadline);
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut done = Vec::new();
        let mut controls = Vec::new();
        for r in std::mem::take(&mut self.retiring_sinks) {
            // A sink a reload was stopping: already aborted, it only has to leave its send.
            controls.push(r.control.clone());
            tasks.spawn(async move {
                let _ = r.task.await;
            });
        }
        for r in running {
            controls.push(r.control.clone());
            done.push((r.cfg.name.clone(), r.stats));
            tasks.spawn(async move {
                let _ = r.task.await;
            });
        }
        let mut aborted = false;
        loop {
            tokio::select! {
                next = tasks.join_next() => if next.is_none() { break },
                _ = shutdown.cancelled(), if !deadline_armed => {
                    info!("shutting down: sinks finish the batch in hand");
                    notify(&[sd_notify::NotifyState::Stopping]);
                    controls.iter().for_each(|c| c.stop.cancel());
                    deadline_armed = true;
                    deadline.as_mut().set(self.clock.sleep_until(self.clock.now() + self.drain_timeout));
                }
                _ = &mut deadline, if deadline_armed && !aborted => {
                    warn!(timeout = ?self.drain_timeout, "drain deadline reached: undelivered batches stay queued");
                    controls.iter().for_each(|c| c.abort.cancel());
                    aborted = true;
                }
            }
        }
        done.sort_by(|a, b| a.0.cmp(&b.0));
        done
    }

    /// Reads the configuration file again and applies the differences (module docs). Every
    /// wait in it (a sink finishing its batch, a source ending) gives way to `shutdown`.
    /// `Err` says in a few words why the new configuration was refused (or not fully applied).
    async fn reload(&mut self, shutdown: &CancellationToken) -> Result<(), &'static str> {
        // What a logrotate `postrotate` expects of SIGHUP, whatever the file now says.
        sinks::file::request_reopen();
        let path = self.config.origin.clone();
        info!(file = %path.display(), "reload: reading the configuration file");
        let new = match Config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                // One log line per mistake of the file (each with its journal priority), in
                // the order `check` prints them; the last says how many.
                for line in e.to_string().lines() {
                    error!(error = %line, "reload refused: the configuration file is invalid; the running configuration stays");
                }
                return Err("invalid configuration");
            }
        };
        if new.state_dir != self.config.state_dir {
            error!(old = %self.config.state_dir.display(), new = %new.state_dir.display(),
                "reload refused: state_dir changed; restart the agent to move it");
            return Err("state_dir changed (needs a restart)");
        }
        if new.queue.max_bytes != self.config.queue.max_bytes || new.telemetry != self.config.telemetry {
            warn!("[queue] and [telemetry] changes take effect at the next restart");
        }
        // Sinks that cannot open (unreadable certificate) refuse the whole reload, before any
        // change is made.
        let mut opened = BTreeMap::new();
        for cfg in &new.sinks {
            let changed = self.sinks.get(&cfg.name).is_none_or(|r| r.cfg.fingerprint() != cfg.fingerprint());
            if changed {
                match Sink::open(cfg) {
                    Ok(sink) => {
                        opened.insert(cfg.name.clone(), sink);
                    }
                    Err(e) => {
                        error!(error = %e, "reload refused: the running configuration stays");
                        return Err("a sink cannot be opened");
                    }
                }
            }
        }
        // So do sources whose HTTP client cannot be made (an unreadable `ca_file`).
        let changed: Vec<SourceConfig> = new
            .sources
            .iter()
            .filter(|cfg| self.sources.get(&cfg.name).is_none_or(|r| r.cfg.fingerprint() != cfg.fingerprint()))
            .cloned()
            .collect();
        let mut clients: BTreeMap<String, reqwest::Client> = match source_clients(&changed) {
            Ok(made) => changed.iter().map(|cfg| cfg.name.clone()).zip(made).collect(),
            Err(e) => {
                error!(error = %e, "reload refused: the running configuration stays");
                return Err("a source's HTTP client cannot be made");
            }
        };
        let names: Vec<String> = new.sinks.iter().map(|s| s.name.clone()).collect();
        // Sinks: stop the removed and changed ones first (a worker must be gone before another
        // reads the same cursor), then update the cursors, then start the new ones.
        let stale: Vec<String> =
            self.sinks.keys().filter(|n| !names.contains(n) || opened.contains_key(*n)).cloned().collect();
        for name in &stale {
            if !self.stop_sink(name, shutdown).await {
                warn!("reload interrupted by a shutdown");
                return Err("interrupted by a shutdown");
            }
        }
        let renames = sink_renames(&new.sinks);
        let mut keep = names;
        // Renamed sinks whose old cursor could not be carried over: not started now. Started
        // fresh, one would deliver the old name's backlog, and the rename done at the next start
        // would put the old cursor back and deliver it again (adversarial review of issue 18).
        let mut deferred: Vec<String> = Vec::new();
        match self.queue.rename_sinks(renames.clone()).await {
            Ok(done) => done.iter().for_each(|r| {
                info!(from = %r.from, to = %r.to, after_id = r.cursor, "sink renamed: its cursor and backlog carried over")
            }),
            Err(e) => {
                deferred = renames.iter().map(|(_, to)| to.clone()).collect();
                error!(error = %e, sinks = ?deferred, "reload: cannot carry renamed sinks' cursors over; those sinks stay stopped, their backlog kept under the old name, until the next reload or start");
                // Nor do they get a cursor of their own now: a fresh one would start at the oldest
                // queued event, and the rename done later would keep it (the lower), resending
                // everything the old name delivered since (review C).
                keep.retain(|name| !deferred.contains(name));
                keep.extend(renames.into_iter().map(|(from, _)| from));
            }
        }
        if let Err(e) = self.queue.set_sinks(keep).await {
            error!(error = %e, "reload: cannot update the sink cursors; restart the agent");
        }
        for cfg in &new.sinks {
            if let Some(mut sink) = opened.remove(&cfg.name) {
                if deferred.contains(&cfg.name) {
                    sink.close().await;
                    let stats = Arc::new(SinkStats::default());
                    stats.set_phase(sinks::SinkPhase::Stopped);
                    let why = "stopped: its old name's cursor could not be carried over (database busy); reload again or restart";
                    stats.trouble.failed(self.clock.now_utc().timestamp_millis(), why.to_owned(), true);
                    self.deferred_sinks.insert(cfg.name.clone(), (cfg.clone(), stats));
                } else {
                    self.start_sink(cfg.clone(), sink);
                }
            }
        }
        // Sources: removed and changed ones stop (their next start resumes from the checkpoint).
        let keep: BTreeMap<&str, [u8; 32]> = new.sources.iter().map(|s| (s.name.as_str(), s.fingerprint())).collect();
        // A renamed sink left stopped and since removed from the file is no longer reported.
        self.deferred_sinks.retain(|name, _| new.sinks.iter().any(|s| &s.name == name));
        // A source stopped for good and removed from the file is no longer reported.
        self.failed_sources.retain(|name, _| keep.contains_key(name.as_str()));
        let stale: Vec<String> = self
            .sources
            .iter()
            .filter(|(n, r)| keep.get(n.as_str()).is_none_or(|f| *f != r.cfg.fingerprint()))
            .map(|(n, _)| n.clone())
            .collect();
        let mut stopped = Vec::new();
        for name in &stale {
            if let Some(r) = self.sources.remove(name) {
                r.stop.cancel();
                stopped.push((name.clone(), r.generation));
            }
        }
        // The old task must be gone before its replacement starts: it may still be committing
        // its last page, and the new one begins by discarding the source's staged records.
        if !self.await_stopped_sources(stopped, shutdown).await {
            warn!("reload interrupted by a shutdown: changed sources are not restarted");
            return Err("interrupted by a shutdown");
        }
        for cfg in &new.sources {
            if !self.sources.contains_key(&cfg.name)
                && let Some(http) = clients.remove(&cfg.name)
            {
                self.start_source(cfg.clone(), http);
            }
        }
        let (sources, sinks) = (new.sources.len(), new.sinks.len());
        self.config = new;
        if !deferred.is_empty() {
            error!(sinks = ?deferred, "configuration reloaded except renamed sinks, which stay stopped: reload again or restart");
            return Err(
                "renamed sinks could not take over their old cursors (database busy): they stay stopped until the next reload or start",
            );
        }
        info!(sources, sinks, restarted_sources = stale.len(), "configuration reloaded");
        Ok(())
    }

    /// The progress line since the last one (`None`: nothing stored or delivered since).
    async fn progress(&self, last: &mut Progress) -> Option<String> {
        let sources: Vec<(String, u64)> =
            self.sources.iter().map(|(name, r)| (name.clone(), r.stats.snapshot().stored)).collect();
        let mut sinks = Vec::with_capacity(self.sinks.len());
        for (name, r) in &self.sinks {
            let backlog = self.queue.backlog(name).await.ok();
            sinks.push((name.clone(), r.stats.snapshot().events, backlog));
        }
        last.line(sources, sinks)
    }

    /// Tells the telemetry endpoint (and an observer) what runs now.
    fn publish(&self, telemetry: &Telemetry, observe: Option<&SourceObserver>) {
        if let Some(observe) = observe {
            observe.send_replace(self.sources.iter().map(|(n, r)| (n.clone(), Arc::clone(&r.stats))).collect());
        }
        telemetry.set_sources(
            self.sources
                .iter()
                .chain(&self.failed_sources)
                .map(|(name, r)| SourceProbe {
                    name: name.clone(),
                    vendor: r.cfg.vendor.vendor_name(),
                    stats: Arc::clone(&r.stats),
                    state: r.state.clone(),
                })
                .collect(),
        );
        telemetry.set_sinks(
            self.sinks
                .iter()
                .map(|(name, r)| SinkProbe { name: name.clone(), kind: sink_kind(&r.cfg), stats: Arc::clone(&r.stats) })
                .chain(self.deferred_sinks.iter().map(|(name, (cfg, stats))| SinkProbe {
                    name: name.clone(),
                    kind: sink_kind(cfg),
                    stats: Arc::clone(stats),
                }))
                .collect(),
        );
    }
}

/// The counts the last progress line reported: records stored per source, events delivered
/// per sink.
#[derive(Debug, Default)]
struct Progress {
    stored: BTreeMap<String, u64>,
    delivered: BTreeMap<String, u64>,
}

impl Progress {
    /// One line for these counts (per source: records stored; per sink: events delivered and
    /// backlog, `None` if unknown), each with what it added since the last line; `None` if none
    /// changed. Remembers them for the next.
    fn line(&mut self, sources: Vec<(String, u64)>, sinks: Vec<(String, u64, Option<u64>)>) -> Option<String> {
        let stored: BTreeMap<String, u64> = sources.into_iter().collect();
        let delivered: BTreeMap<String, u64> = sinks.iter().map(|(n, d, _)| (n.clone(), *d)).collect();
        if stored == self.stored && delivered == self.delivered {
            return None;
        }
        // A source or sink restarted by a reload counts from 0 again.
        let added = |before: &BTreeMap<String, u64>, name: &str, now: u64| {
            now.saturating_sub(before.get(name).copied().filter(|b| *b <= now).unwrap_or(0))
        };
        let sources: Vec<String> =
            stored.iter().map(|(name, n)| format!("{name} stored {n} (+{})", added(&self.stored, name, *n))).collect();
        let sinks: Vec<String> = sinks
            .iter()
            .map(|(name, n, backlog)| {
                let backlog = backlog.map_or_else(|| "?".to_owned(), |b| b.to_string());
                format!("{name} delivered {n} (+{}), backlog {backlog}", added(&self.delivered, name, *n))
            })
            .collect();
        let none = || "none".to_owned();
        let line = format!(
            "progress: sources: {}; sinks: {}",
            if sources.is_empty() { none() } else { sources.join(", ") },
            if sinks.is_empty() { none() } else { sinks.join(", ") },
        );
        self.stored = stored;
        self.delivered = delivered;
        Some(line)
    }
}

/// `(renamed_from, name)` of every sink that says it was renamed.
fn sink_renames(sinks: &[SinkConfig]) -> Vec<(String, String)> {
    sinks.iter().filter_map(|s| Some((s.renamed_from.clone()?, s.name.clone()))).collect()
}

fn sink_kind(cfg: &SinkConfig) -> &'static str {
    cfg.kind.type_name()
}

/// Tells systemd (when it started us with `Type=notify`; a no-op otherwise).
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

fn notify_status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

/// With `WatchdogSec=` set, pings systemd at half the interval while the queue's database
/// thread still answers: a wedged agent stops pinging and systemd restarts it.
fn spawn_watchdog(queue: Queue, clock: Clock) -> Option<JoinHandle<()>> {
    let every = sd_notify::watchdog_enabled().filter(|d| !d.is_zero())? / 2;
    Some(tokio::spawn(async move {
        loop {
            match clock.timeout(every, queue.stats()).await {
                Ok(Ok(_)) => notify(&[sd_notify::NotifyState::Watchdog]),
                Ok(Err(e)) => warn!(error = %e, "watchdog: the queue does not answer; not pinging systemd"),
                Err(_) => warn!("watchdog: the queue is slow to answer; not pinging systemd"),
            }
            clock.sleep(every).await;
        }
    }))
}

/// Tells `auditrelay reload` how the load numbered `seq` of the file at `origin` ended
/// (`path`: where; `None`: this run takes no reloads).
fn record_reload(paths: &[std::path::PathBuf], seq: u64, running: &Config, outcome: Result<(), &str>) {
    record_reload_digest(paths, seq, crate::reload::file_digest(&running.origin), running, outcome);
}

/// As [`record_reload`], for an attempt that read the file whose text has `digest`; `running`:
/// the configuration the agent runs after it.
fn record_reload_digest(
    paths: &[std::path::PathBuf],
    seq: u64,
    digest: Option<String>,
    running: &Config,
    outcome: Result<(), &str>,
) {
    let status = crate::reload::Status {
        pid: std::process::id(),
        seq,
        config_sha256: digest,
        ok: outcome.is_ok(),
        effective_sha256: Some(crate::reload::effective_digest(running)),
        proc_start: crate::reload::proc_start(None),
        origin: Some(running.origin.display().to_string()),
        why: outcome.err().map(str::to_owned),
        at: chrono::Utc::now().to_rfc3339(),
    };
    for path in paths {
        if let Err(e) = crate::reload::record(path, &status) {
            warn!(path = %path.display(), error = %e, "cannot write the reload status: `auditrelay reload` (the unit's ExecReload=) will not hear this reload's outcome");
        }
    }
}

/// The sources' HTTP clients (`sources::http_client`; a CA file is read here), in their order:
/// one per distinct `ca_file`, the only setting of a source's client, shared by every source
/// with that setting ([`crate::http::share`]): one connection pool and one root store for 500
/// organizations of one vendor, not 500. The first that cannot be made is the error.
fn source_clients(sources: &[SourceConfig]) -> Result<Vec<reqwest::Client>, String> {
    crate::http::share(sources, |cfg| cfg.ca_file.clone(), |cfg| crate::sources::http_client(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
        counts.iter().map(|(n, c)| ((*n).to_owned(), *c)).collect()
    }

    fn sinks(counts: &[(&str, u64, Option<u64>)]) -> Vec<(String, u64, Option<u64>)> {
        counts.iter().map(|(n, c, b)| ((*n).to_owned(), *c, *b)).collect()
    }

    #[test]
    fn test_progress_says_what_each_source_and_sink_did_and_nothing_when_idle() {
        let mut progress = Progress::default();
        let line = progress.line(sources(&[("acme", 120), ("beta", 0)]), sinks(&[("siem", 100, Some(20))]));
        assert_eq!(
            line.as_deref(),
            Some(
                "progress: sources: acme stored 120 (+120), beta stored 0 (+0); sinks: siem delivered 100 (+100), backlog 20"
            )
        );
        // Nothing new: no line.
        assert_eq!(progress.line(sources(&[("acme", 120), ("beta", 0)]), sinks(&[("siem", 100, Some(20))])), None);
        // The sink caught up; the source restarted by a reload counts from 0 again.
        let line = progress.line(sources(&[("acme", 5), ("beta", 0)]), sinks(&[("siem", 120, None)]));
        assert_eq!(
            line.as_deref(),
            Some(
                "progress: sources: acme stored 5 (+5), beta stored 0 (+0); sinks: siem delivered 120 (+20), backlog ?"
            )
        );
        assert_eq!(
            Progress::default().line(Vec::new(), sinks(&[("out", 1, Some(0))])).as_deref(),
            Some("progress: sources: none; sinks: out delivered 1 (+1), backlog 0")
        );
    }
}
