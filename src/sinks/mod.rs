//! The shared delivery loop: one worker per configured sink, each with its own queue cursor.
//!
//! A worker reads a batch after its cursor, hands it to its sink, and moves the cursor (in its
//! own transaction) only after the sink says the receiver accepted the batch (DESIGN invariant
//! 3). A failed batch is resent, with full-jitter back-off, until it is accepted: a dead
//! receiver stalls only its own worker; the queue and the other sinks carry on. Protocol files
//! (`file.rs`, later syslog, HEC, OTLP) only say how to send one batch; they never touch the
//! queue, never sleep and never retry.

pub mod file;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::config::{SinkConfig, SinkKind};
use crate::queue::{Queue, QueuedEvent};
use crate::sources::full_jitter;

/// Why a batch was not delivered. Every variant is retried by the loop; the message names the
/// sink's destination (path, URL with secrets redacted) and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

/// The protocols, a closed set dispatched in one `match` each (STYLE habit 4).
#[derive(Debug)]
pub enum Sink {
    File(file::FileSink),
}

impl Sink {
    pub fn open(cfg: &SinkConfig) -> Sink {
        match &cfg.kind {
            SinkKind::File(s) => Sink::File(file::FileSink::new(s.path.clone())),
        }
    }

    /// Delivers the whole batch, or fails without acknowledging any of it.
    async fn send(&mut self, batch: &[QueuedEvent]) -> Result<(), SendError> {
        match self {
            Sink::File(s) => s.send(batch).await,
        }
    }

    /// Releases the connection or file cleanly (flush, `close_notify`, …).
    async fn close(&mut self) {
        match self {
            Sink::File(s) => s.close().await,
        }
    }
}

/// Counters of one sink, shared with the daemon's summary (and later the metrics endpoint).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub events: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStatsSnapshot {
    pub events: u64,
    pub batches: u64,
    pub retries: u64,
}

impl SinkStats {
    pub fn snapshot(&self) -> SinkStatsSnapshot {
        SinkStatsSnapshot {
            events: self.events.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
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
        loop {
            match sink.send(&batch).await {
                Ok(()) => break,
                Err(e) => {
                    let wait = full_jitter(&cfg.backoff, failures, &mut rng);
                    failures = failures.saturating_add(1);
                    stats.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(sink = name, error = %e, events = batch.len(), retry_in = ?wait, "batch not delivered; resending it");
                    tokio::select! {
                        _ = clock.sleep(wait) => {}
                        _ = control.abort.cancelled() => {
                            warn!(sink = name, events = batch.len(), "shutdown deadline: batch left in the queue for next start");
                            break 'batches;
                        }
                    }
                }
            }
        }
        // Delivered: record it. Retried rather than re-read, which would resend the batch; if it
        // never succeeds (shutdown deadline), the batch is sent again after a restart.
        while let Err(e) = queue.ack(name, last).await {
            let wait = full_jitter(&cfg.backoff, failures, &mut rng);
            failures = failures.saturating_add(1);
            error!(sink = name, error = %e, retry_in = ?wait, "batch delivered but the sink's cursor cannot be moved");
            tokio::select! {
                _ = clock.sleep(wait) => {}
                _ = control.abort.cancelled() => break 'batches,
            }
        }
        failures = 0;
        stats.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        debug!(sink = name, events = batch.len(), upto = last, "batch delivered");
    }
    sink.close().await;
    info!(sink = name, "sink stopped");
}
