//! Wiring: opens the queue, starts one task per source and per sink, and stops them in order.
//!
//! Shutdown order, top-down, in one place ([`run`]):
//! 1. the shutdown token fires (SIGTERM/SIGINT) — or, in catch-up mode, every source is done;
//! 2. sources stop: a page already received is committed first (a source observes cancellation
//!    only while waiting or talking to the vendor, never between a page and its commit);
//! 3. sinks finish the batch in hand (on shutdown) or drain the queue (catch-up), within
//!    `drain_timeout` after a shutdown; an undelivered batch simply stays queued;
//! 4. the queue closes (WAL checkpoint) and the report is returned.
//!
//! It knows nothing of vendors' or protocols' details: those live in `sources/` and `sinks/`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::queue::{Queue, QueueError, QueueOptions};
use crate::sinks::{self, Sink, SinkControl, SinkStats, SinkStatsSnapshot};
use crate::sources::{RunMode, Source, SourceExit, SourceStatsSnapshot};

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub mode: RunMode,
    /// How long sinks may keep trying to deliver the batch in hand after a shutdown.
    pub drain_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { mode: RunMode::Follow, drain_timeout: Duration::from_secs(30) }
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
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot open the state database: {0}")]
    Queue(#[from] QueueError),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
    #[error("cannot set up {0}")]
    Sink(#[from] sinks::OpenError),
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
    let queue = Queue::open(
        &config.state_dir,
        QueueOptions {
            max_bytes: config.queue.max_bytes,
            sinks: config.sinks.iter().map(|s| s.name.clone()).collect(),
        },
    )?;
    info!(db = %queue.path().display(), sources = config.sources.len(), sinks = config.sinks.len(), "agent starting");
    let http = reqwest::Client::builder()
        .user_agent(concat!("auditrelay/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| DaemonError::Http(e.to_string()))?;

    let control = SinkControl::default();
    let mut sink_tasks = JoinSet::new();
    let mut sink_stats: Vec<(String, Arc<SinkStats>)> = Vec::new();
    for (cfg, sink) in config.sinks.iter().zip(opened) {
        let stats = Arc::new(SinkStats::default());
        sink_stats.push((cfg.name.clone(), Arc::clone(&stats)));
        sink_tasks.spawn(sinks::run_sink(cfg.clone(), sink, queue.clone(), clock.clone(), stats, control.clone()));
    }

    let stop_sources = CancellationToken::new();
    let mut source_tasks = JoinSet::new();
    let mut sources: Vec<SourceReport> = Vec::new();
    let mut source_stats = Vec::new();
    for (i, cfg) in config.sources.iter().enumerate() {
        let source = Source::new(cfg.clone(), http.clone(), queue.clone(), clock.clone(), config.severity.clone());
        source_stats.push(source.stats());
        sources.push(SourceReport {
            name: cfg.name.clone(),
            vendor: cfg.vendor.vendor_name(),
            stats: SourceStatsSnapshot::default(),
            outcome: SourceOutcome::Shutdown,
        });
        let token = stop_sources.clone();
        source_tasks.spawn(async move { (i, source.run(opts.mode, token).await) });
    }

    // 1–2: wait for the sources to end, stopping them on shutdown.
    loop {
        tokio::select! {
            done = source_tasks.join_next() => match done {
                None => break,
                Some(Ok((i, exit))) => {
                    let name = &sources[i].name;
                    sources[i].outcome = match exit {
                        SourceExit::CaughtUp => { info!(source = %name, "caught up"); SourceOutcome::CaughtUp }
                        SourceExit::Shutdown => SourceOutcome::Shutdown,
                        SourceExit::Failed(e) => { error!(source = %name, error = %e, "source stopped"); SourceOutcome::Failed(e.to_string()) }
                    };
                }
                Some(Err(e)) => error!(error = %e, "a source task ended abnormally"),
            },
            _ = shutdown.cancelled(), if !stop_sources.is_cancelled() => {
                info!("shutting down: stopping sources");
                stop_sources.cancel();
            }
        }
    }

    // 3: sinks finish the batch in hand (shutdown) or drain the queue (catch-up).
    if shutdown.is_cancelled() {
        control.stop.cancel();
    } else {
        control.drain.cancel();
    }
    let mut deadline_armed = shutdown.is_cancelled();
    let deadline = tokio::time::sleep(opts.drain_timeout);
    tokio::pin!(deadline);
    if deadline_armed {
        deadline.as_mut().reset(clock.now() + opts.drain_timeout);
    }
    loop {
        tokio::select! {
            done = sink_tasks.join_next() => match done {
                None => break,
                Some(Err(e)) => error!(error = %e, "a sink task ended abnormally"),
                Some(Ok(())) => {}
            },
            _ = shutdown.cancelled(), if !deadline_armed => {
                info!("shutting down: sinks finish the batch in hand");
                control.stop.cancel();
                deadline_armed = true;
                deadline.as_mut().reset(clock.now() + opts.drain_timeout);
            }
            _ = &mut deadline, if deadline_armed && !control.abort.is_cancelled() => {
                warn!(timeout = ?opts.drain_timeout, "drain deadline reached: undelivered batches stay queued");
                control.abort.cancel();
            }
        }
    }

    // 4: report, then close the database.
    for (report, stats) in sources.iter_mut().zip(&source_stats) {
        report.stats = stats.snapshot();
    }
    let mut sinks = Vec::new();
    for (name, stats) in sink_stats {
        let backlog = queue.backlog(&name).await.unwrap_or(0);
        sinks.push(SinkReport { name, stats: stats.snapshot(), backlog });
    }
    queue.close().await?;
    let elapsed = clock.now().saturating_duration_since(started);
    info!(?elapsed, "agent stopped");
    Ok(RunReport { sources, sinks, elapsed })
}
