//! The shared delivery loop: one worker per configured sink, each with its own queue cursor.
//!
//! A worker reads a batch after its cursor, hands it to its sink, and moves the cursor (in its
//! own transaction) only after the sink says the receiver accepted the batch (DESIGN invariant
//! 3). A failed batch is resent, with full-jitter back-off (or the receiver's `Retry-After`),
//! until it is accepted: a dead receiver stalls only its own worker; the queue and the other
//! sinks carry on. An event a sink can never deliver (too large, refused as invalid) is moved to
//! the dead-letter table in the same transaction that moves the cursor past it, so it is never
//! lost (invariant 7). Protocol files (`file.rs`, `syslog.rs`, `hec.rs`, `otlp.rs`) only say how
//! to send one batch and what the answer means; they never touch the queue and never retry a
//! failed batch (HEC's wait for its indexer acknowledgement is the one wait inside a send).

pub mod file;
pub mod hec;
pub mod otlp;
pub mod syslog;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::{SinkConfig, SinkKind};
use crate::queue::{Queue, QueuedEvent, RefusedEvent};
use crate::sources::full_jitter;

/// Why a batch was not delivered. The loop resends it; the message names the sink's destination
/// (path, address, URL with secrets redacted) and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub message: String,
    pub class: Failure,
    /// The receiver asked for this pause (`Retry-After`, `RetryInfo`) before the next attempt.
    pub retry_after: Option<Duration>,
}

/// What a failure means for the operator; the batch is kept and resent in both cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The receiver is down, busy or unreachable: back off and resend.
    Transient,
    /// Only an operator can fix it (certificate not trusted, token refused): logged as an error
    /// and retried at the longest back-off, so a fixed receiver is picked up without a restart.
    Config,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::Transient, retry_after: None }
    }

    pub fn config(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::Config, retry_after: None }
    }
}

/// What became of a batch the receiver took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Events that will never be delivered by this sink, with the reason; they go to the
    /// dead-letter table as the cursor passes them.
    pub refused: Vec<RefusedEvent>,
    /// Events sent cut short (syslog `oversize = "truncate"`).
    pub truncated: u64,
    /// Events the receiver took but reported as rejected (OTLP partial success): counted and
    /// logged; the protocol forbids sending them again.
    pub rejected: u64,
}

/// A sink whose configuration cannot work (an unreadable CA or key file, …): the daemon refuses
/// to start rather than retry forever.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink:?}: {message}")]
pub struct OpenError {
    pub sink: String,
    pub message: String,
}

/// The protocols, a closed set dispatched in one `match` each (STYLE habit 4).
#[derive(Debug)]
pub enum Sink {
    File(file::FileSink),
    Syslog(Box<syslog::SyslogSink>),
    Hec(Box<hec::HecSink>),
    Otlp(Box<otlp::OtlpSink>),
}

impl Sink {
    /// Prepares the sink (reads certificates and keys); connects lazily, on the first batch.
    pub fn open(cfg: &SinkConfig) -> Result<Sink, OpenError> {
        let fail = |message: String| OpenError { sink: cfg.name.clone(), message };
        Ok(match &cfg.kind {
            SinkKind::File(s) => Sink::File(file::FileSink::new(s.path.clone())),
            SinkKind::Syslog(s) => Sink::Syslog(Box::new(syslog::SyslogSink::new(s).map_err(fail)?)),
            SinkKind::Hec(s) => Sink::Hec(Box::new(hec::HecSink::new(s).map_err(fail)?)),
            SinkKind::Otlp(s) => Sink::Otlp(Box::new(otlp::OtlpSink::new(s).map_err(fail)?)),
        })
    }

    /// Gives the sink what it keeps in the queue database across restarts (the HEC channel).
    async fn attach(&mut self, name: &str, queue: &Queue) -> Result<(), crate::queue::QueueError> {
        match self {
            Sink::Hec(s) => s.set_channel(queue.sink_channel(name).await?),
            Sink::File(_) | Sink::Syslog(_) | Sink::Otlp(_) => {}
        }
        Ok(())
    }

    /// Delivers the whole batch, or fails without acknowledging any of it.
    async fn send(&mut self, batch: &[QueuedEvent]) -> Result<Delivery, SendError> {
        match self {
            Sink::File(s) => s.send(batch).await.map(|()| Delivery::default()),
            Sink::Syslog(s) => s.send(batch).await,
            Sink::Hec(s) => s.send(batch).await,
            Sink::Otlp(s) => s.send(batch).await,
        }
    }

    /// Proves the receiver can be reached (`check --connect`): opens the file or connection
    /// (TCP, TLS handshake) without sending an event; the error names the cause.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        match self {
            Sink::File(s) => s.probe().await,
            Sink::Syslog(s) => s.probe().await,
            Sink::Hec(s) => s.probe().await,
            Sink::Otlp(s) => s.probe().await,
        }
    }

    /// Releases the connection or file cleanly (flush, `close_notify`, …).
    pub async fn close(&mut self) {
        match self {
            Sink::File(s) => s.close().await,
            Sink::Syslog(s) => s.close().await,
            Sink::Hec(s) => s.close().await,
            Sink::Otlp(s) => s.close().await,
        }
    }
}

/// The result of reaching one sink for `check --connect`.
#[derive(Debug)]
pub struct Probe {
    pub sink: String,
    /// What was proven, or why it failed.
    pub outcome: Result<String, String>,
}

/// Opens and probes every configured sink in turn, sending no event.
pub async fn probe_all(config: &crate::config::Config) -> Vec<Probe> {
    let mut probes = Vec::new();
    for cfg in &config.sinks {
        let outcome = match Sink::open(cfg) {
            Err(e) => Err(e.message),
            Ok(mut sink) => {
                let outcome = sink.probe().await.map_err(|e| e.message);
                sink.close().await;
                outcome
            }
        };
        probes.push(Probe { sink: cfg.name.clone(), outcome });
    }
    probes
}

/// Counters of one sink, shared with the daemon's summary (and later the metrics endpoint).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    /// Events moved to the dead-letter table instead of being delivered.
    pub dead_lettered: AtomicU64,
    pub truncated: AtomicU64,
    /// Events the receiver reported rejected after taking them (OTLP partial success).
    pub rejected: AtomicU64,
    /// Failed sends by class: the receiver unreachable or busy, or an operator must act.
    pub errors_transient: AtomicU64,
    pub errors_config: AtomicU64,
    /// Wall time (ms since the epoch) of the last delivered batch; 0 before the first.
    pub last_delivery_ms: AtomicI64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStatsSnapshot {
    pub events: u64,
    pub batches: u64,
    pub retries: u64,
    pub dead_lettered: u64,
    pub truncated: u64,
    pub rejected: u64,
    pub errors_transient: u64,
    pub errors_config: u64,
    pub last_delivery_ms: i64,
}

impl SinkStats {
    pub fn snapshot(&self) -> SinkStatsSnapshot {
        SinkStatsSnapshot {
            events: self.events.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            truncated: self.truncated.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            errors_transient: self.errors_transient.load(Ordering::Relaxed),
            errors_config: self.errors_config.load(Ordering::Relaxed),
            last_delivery_ms: self.last_delivery_ms.load(Ordering::Relaxed),
        }
    }
}

/// When a worker stops. Checked only between batches, except `abort`.
#[derive(Clone, Debug, Default)]
pub struct SinkControl {
    /// Stop after the batch in hand is delivered (SIGTERM).
    pub stop: CancellationToken,
    /// Stop as soon as the queue has nothing more for this sink (sources are done: `--once`, demo).
    pub drain: CancellationToken,
    /// Give up on the batch in hand (the shutdown deadline passed); it stays queued.
    pub abort: CancellationToken,
}

/// Runs one sink's worker until told to stop. Nothing is acknowledged that was not accepted.
pub async fn run_sink(
    cfg: SinkConfig,
    mut sink: Sink,
    queue: Queue,
    clock: Clock,
    stats: Arc<SinkStats>,
    control: SinkControl,
) {
    let name = cfg.name.as_str();
    let mut new_events = queue.subscribe_new_events();
    let mut rng = fastrand::Rng::new();
    let mut failures = 0u32;
    // What the sink keeps in the database (the HEC channel), before its first batch.
    while let Err(e) = sink.attach(name, &queue).await {
        let wait = full_jitter(&cfg.backoff, failures, &mut rng);
        failures = failures.saturating_add(1);
        error!(sink = name, error = %e, retry_in = ?wait, "cannot read the sink's state from the queue");
        tokio::select! {
            _ = clock.sleep(wait) => {}
            _ = control.stop.cancelled() => return,
        }
    }
    'batches: while !control.stop.is_cancelled() && !control.abort.is_cancelled() {
        // Mark what we have seen before reading, so an event stored meanwhile wakes us.
        new_events.borrow_and_update();
        let batch = match queue.read_batch(name, cfg.batch_max_events, cfg.batch_max_bytes).await {
            Ok(b) => b,
            Err(e) => {
                let wait = full_jitter(&cfg.backoff, failures, &mut rng);
                failures = failures.saturating_add(1);
                error!(sink = name, error = %e, retry_in = ?wait, "cannot read from the queue");
                tokio::select! {
                    _ = clock.sleep(wait) => continue,
                    _ = control.stop.cancelled() => break,
                }
            }
        };
        let Some(last) = batch.last().map(|e| e.id) else {
            if control.drain.is_cancelled() {
                break;
            }
            tokio::select! {
                changed = new_events.changed() => if changed.is_err() { break },
                _ = control.stop.cancelled() => break,
                _ = control.drain.cancelled() => {}
            }
            continue;
        };
        let delivery = loop {
            match sink.send(&batch).await {
                Ok(d) => break d,
                Err(e) => {
                    let wait = match e.class {
                        Failure::Transient => full_jitter(&cfg.backoff, failures, &mut rng),
                        Failure::Config => cfg.backoff.max,
                    };
                    let wait = e.retry_after.unwrap_or(wait);
                    failures = failures.saturating_add(1);
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    let counter = match e.class {
                        Failure::Transient => &stats.errors_transient,
                        Failure::Config => &stats.errors_config,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    match e.class {
                        Failure::Transient => {
                            warn!(sink = name, error = %e, events = batch.len(), retry_in = ?wait, "batch not delivered; resending it")
                        }
                        Failure::Config => {
                            error!(sink = name, error = %e, events = batch.len(), retry_in = ?wait,
                                "batch not delivered and an operator must act; the events stay queued")
                        }
                    }
                    tokio::select! {
                        _ = clock.sleep(wait) => {}
                        _ = control.abort.cancelled() => {
                            warn!(sink = name, events = batch.len(), "shutdown deadline: batch left in the queue for next start");
                            break 'batches;
                        }
                    }
                }
            }
        };
        // Delivered: record it. Retried rather than re-read, which would resend the batch; if it
        // never succeeds (shutdown deadline), the batch is sent again after a restart.
        for r in &delivery.refused {
            warn!(sink = name, event_id = r.id, reason = %r.reason, "event dead-lettered: this sink will not deliver it");
        }
        while let Err(e) = queue.ack_refusing(name, last, delivery.refused.clone()).await {
            let wait = full_jitter(&cfg.backoff, failures, &mut rng);
            failures = failures.saturating_add(1);
            error!(sink = name, error = %e, retry_in = ?wait, "batch delivered but the sink's cursor cannot be moved");
            tokio::select! {
                _ = clock.sleep(wait) => {}
                _ = control.abort.cancelled() => break 'batches,
            }
        }
        failures = 0;
        let refused = delivery.refused.len() as u64;
        stats.dead_lettered.fetch_add(refused, Ordering::Relaxed);
        stats.truncated.fetch_add(delivery.truncated, Ordering::Relaxed);
        stats.rejected.fetch_add(delivery.rejected, Ordering::Relaxed);
        stats.events.fetch_add(batch.len() as u64 - refused, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.last_delivery_ms.store(clock.now_utc().timestamp_millis(), Ordering::Relaxed);
        debug!(sink = name, events = batch.len(), upto = last, "batch delivered");
    }
    sink.close().await;
    info!(sink = name, "sink stopped");
}
