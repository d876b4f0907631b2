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
//! Nor do they split a batch into several requests: a send that fails after the receiver took
//! part of its batch would have this loop send that part again, a silent duplicate. A send is
//! one request (HEC repeats it only without an event the collector named invalid); what must
//! be cut is cut here, where each part taken moves the cursor before the next is sent.
//!
//! **Request size.** `batch_max_bytes` bounds what one request carries before compression:
//! each event as sent (with its `transmit_time`) and what the protocol wraps it in (HEC's
//! envelope and newline, Elasticsearch's action line and document head; [`Protocol::wrapping`]
//! says how much, measured on the events; file, syslog and OTLP say nothing: a file and a
//! stream have no request to bound, syslog's `max_message_size` counts each message whole, and a
//! `LogRecord` is not the event's bytes plus a wrapping, so OTLP counts the events' JSON, about
//! 1 / 1.16 of a structured export). The queue reads a batch by queued bytes, so the loop
//! cuts it (`fit_request`) before the last event whose request would pass the bound, never
//! below one event (one too large alone is the receiver's to refuse and is dead-lettered);
//! the rest stays queued for the next read, which asks the queue for the share of the bound
//! that the last batch's events took of its request. So a batch filled to the bound no longer
//! draws a 413 from a collector whose limit is the bound (issue 21: 6,879 HEC requests per
//! 1,000,000 events, most of them 413 and halves), and the bisection below is left for
//! receivers whose limit is lower than the bound.
//!
//! **The send time.** Each attempt carries its own `metadata.transmit_time`: the loop hands the
//! sink a [`Stamped`] view (the stored events, whether each takes the stamp, asked once a batch
//! by `fit_request`, and the time), and the sink writes each event's stored bytes and the stamp
//! after them straight into its output (issue 21: the loop copied every event of a batch into a
//! stamped batch first, 8.4 of the 13.65 MB heap peak while catching up). `sent_bytes` counts
//! the events as sent ([`Stamped::bytes`]).
//!
//! **Bisection, once for every sink.** A protocol file that cannot tell which events a refusal
//! is about says so with the failure's class, and this loop finds them:
//! - [`Failure::Refused`] (OTLP 400 / `INVALID_ARGUMENT`, HEC 400 "invalid data" without an
//!   event number): the request itself is refused. The part is split in halves at once, each
//!   sent on its own; an event refused alone is dead-lettered with the receiver's words.
//! - [`Failure::TooLarge`] (HTTP 413, gRPC `RESOURCE_EXHAUSTED` without `RetryInfo`): the same,
//!   for the request's size: halves at once, an event too large alone dead-lettered. Each half
//!   the receiver takes is acknowledged as it is taken, so a half refused later (busy, down)
//!   resends only itself, never what was already taken. Halves found too large are never
//!   joined again (below). Believed only for a request larger (in event bytes) than the largest
//!   the receiver has taken since the worker started: a throttle or quota answering 413 or
//!   `RESOURCE_EXHAUSTED` for less, or before anything was taken, is a server error (next).
//! - [`Failure::ServerError`] (HTTP 500, 408, gRPC `UNKNOWN`/`INTERNAL`): an outage or an event
//!   that breaks the receiver, which one answer cannot tell apart. The part is split too, but
//!   after the back-off, and an event failing alone is dead-lettered only on proof that it is
//!   the event and not the receiver: [`POISON_STRIKES`] failures alone, each one after the
//!   receiver accepted other events of the same batch since the event's previous failure, and
//!   failed nothing else meanwhile (a receiver failing other requests too, as a load balancer
//!   with one broken indexer does at random, clears the strikes). *The sandwich*: a failure is a
//!   strike only if the request right before it was taken and the request right after it, sent
//!   at once (no back-off), is taken too; a round robin over n nodes of which n - 1 are broken
//!   fails whatever follows a "yes", and the suspect's own resends between two probes could
//!   otherwise keep every probe on the good node (issue 19's CI: 8-of-7 dead-lettered an
//!   innocent event in one run of three) (when
//!   none is left to send, one already delivered event of the batch is sent again as that proof,
//!   `auditrelay_sink_liveness_resends_total`; [`MAX_PROBES`] a batch, then one per
//!   `backoff.max`). An outage fails every part, so it never gives
//!   that proof: whatever its length it dead-letters nothing. A batch with no other event to
//!   prove the receiver alive waits for the receiver, like an outage.
//!
//!   *One suspect at a time.* A lone event that failed so is a suspect; only one suspect of a
//!   batch is in isolation (sent again, gathering strikes) at once. Any other suspect waits
//!   behind it, unsent, until it is dead-lettered or delivered, then takes its turn. So the
//!   only server errors between the isolated suspect's failures are other requests' (probes,
//!   other parts): a flaky receiver still clears its strikes, but two poison events of one
//!   batch no longer do so to each other (issue 19's simulation: each failing alone in turn,
//!   they cleared each other's strikes for ever and the sink stalled behind them). Suspects
//!   waiting their turn are no proof either: a batch with nothing else left reads again
//!   (`Ended::Reread`), as a lone suspect does.
//! - every other failure resends the same part after the back-off.
//!
//! The receiver's first "yes" in a batch clears what failed before it (an outage fails every
//! part and proves nothing about the events) and joins neighbouring parts again, so a batch an
//! outage cut into single events is not then delivered one event per request (parts cut because
//! the receiver found them too large stay as they are: joined, they would be too large again).
//! The cursor moves over a resolved prefix of the batch (delivered or dead-lettered) as soon as
//! there is one, so a restart in the middle of a bisection resends only the unresolved rest.
//!
//! **Shutdown.** `SinkControl::abort` (the drain deadline) ends a worker even inside a send (a
//! HEC indexer-ack wait, a receiver that drips its answer): the part in hand stays queued, and
//! the sink is dropped without its polite close, which could itself wait on the receiver.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::full_jitter;
use crate::clock::Clock;
use crate::config::{Res, SinkConfig, TableKeys};
use crate::queue::{Queue, QueuedEvent, RefusedEvent};

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

/// What a failure means for the batch and the operator (module docs: bisection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The receiver is down, busy or unreachable: back off and resend.
    Transient,
    /// Only an operator can fix it (certificate not trusted, token refused, a redirect, a 2xx
    /// that is not the protocol's "yes"): logged as an error and retried at the longest
    /// back-off, so a fixed receiver is picked up without a restart. The data is kept.
    Config,
    /// The receiver refused the request as a whole for what it holds, without naming the
    /// events at fault: the loop bisects it; an event refused alone is dead-lettered.
    Refused,
    /// The request is larger than the receiver takes (HTTP 413, gRPC `RESOURCE_EXHAUSTED`
    /// without `RetryInfo`): the loop sends it again in halves at once, acknowledging each as it
    /// is taken; an event too large alone is dead-lettered. Counted with the refusals.
    TooLarge,
    /// The receiver failed on the request without blaming it (HTTP 500, 408, gRPC `UNKNOWN`,
    /// `INTERNAL`): an outage or a poison event. Backed off and bisected; an event alone is
    /// dead-lettered only on proof that the receiver is alive ([`POISON_STRIKES`]).
    ServerError,
}

/// Failures alone, each between two requests the receiver took right before and right after
/// it and with no other failure in between, that make an event failing with [`Failure::ServerError`] a poison
/// event (dead-lettered). Six: a receiver failing half its requests at random would have to
/// fail this event and pass its proof six times running (about 1 in 8,000) to lose it.
pub const POISON_STRIKES: u32 = 6;

/// Liveness probes (an event of the batch the receiver took, sent again) one batch may send at
/// will: twice what [`POISON_STRIKES`] needs, so a poison event next to a steady receiver is
/// isolated at once, while a receiver that refuses whatever follows each "yes" (a rate limiter
/// in front of it) costs this many duplicates, then one per `backoff.max`, and its suspects
/// get the passes in between.
pub const MAX_PROBES: u32 = 2 * POISON_STRIKES;

/// The chunk a gzipped request body is written to its encoder in (HEC, Elasticsearch): the
/// envelopes' small writes gathered, since each write into deflate has a fixed cost.
const GZIP_CHUNK: usize = 32 * 1024;

impl SendError {
    pub fn transient(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::Transient, retry_after: None }
    }

    pub fn config(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::Config, retry_after: None }
    }

    pub fn refused(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::Refused, retry_after: None }
    }

    /// The message is the dead-letter reason of an event too large alone: say what the limit is.
    pub fn too_large(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::TooLarge, retry_after: None }
    }

    pub fn server_error(message: impl Into<String>) -> SendError {
        SendError { message: message.into(), class: Failure::ServerError, retry_after: None }
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

/// One sink protocol, in one file (or folder) of `sinks/`: its keys in a `[[sinks]]` table,
/// their defaults and checks, and how it sends a batch, proves the receiver reachable and
/// closes. Reached through [`SinkKind`] and [`Sink`], generated by the [`sinks!`] list below.
pub trait Protocol: std::fmt::Debug + Send + Sized + 'static {
    /// The `type = "…"` value.
    const TYPE: &'static str;
    /// The keys of a `[[sinks]]` table this protocol reads besides the common ones (`name`,
    /// `type`, `batch_max_events`, `batch_max_bytes`, `backoff`, `renamed_from`); exactly the
    /// fields of [`Protocol::Keys`]. Another protocol's key in this table is refused.
    const KEYS: &'static [&'static str];
    /// Those keys as written (`serde`, `deny_unknown_fields`, `Spanned` values for messages).
    type Keys: serde::de::DeserializeOwned;
    type Settings: std::fmt::Debug + Clone + Send + Sync;

    /// Validates the protocol's keys; each problem names file, line and key and is recorded
    /// through `cx`, and every key is checked even after one is refused.
    fn settings(keys: Self::Keys, cx: &TableKeys<'_>) -> Res<Self::Settings>;
    /// Every secret, for the fingerprint that tells a reload what changed.
    fn secrets(_settings: &Self::Settings) -> Vec<&secrecy::SecretString> {
        Vec::new()
    }
    /// The protocol's keys for `auditrelay check` (its `type` first), secrets as "[redacted]".
    fn render(settings: &Self::Settings, kv: &mut dyn FnMut(&str, String));
    /// Prepares the sink (reads certificates and keys); connects lazily, on the first batch.
    fn open(settings: &Self::Settings) -> Result<Self, String>;
    /// Gives the sink what it keeps in the queue database across restarts (the HEC channel),
    /// the worker's counters and the agent's clock (a sink opened for `check --connect` keeps
    /// the system's).
    fn attach(&mut self, at: Attach<'_>) -> impl Future<Output = Result<(), crate::queue::QueueError>> + Send;
    /// The bytes this protocol adds around each of `events` in one request (envelope, action
    /// line, framing, separators), pushed to `added` in their order: the loop cuts a batch where
    /// its request, counted so, would pass `batch_max_bytes` (module docs: request size). Counted
    /// before compression, which only shrinks a request. Default: nothing added.
    fn wrapping(&mut self, events: &[QueuedEvent], added: &mut Vec<usize>) {
        added.extend(std::iter::repeat_n(0, events.len()));
    }
    /// Delivers the whole batch, or fails with the receiver having taken none of it (module
    /// docs: a sink never splits a batch itself). Each event goes out with its send time,
    /// which the sink writes as it writes the event ([`Stamped`]: no stamped copy of the batch).
    fn send(&mut self, batch: &Stamped<'_>) -> impl Future<Output = Result<Delivery, SendError>> + Send;
    /// The worker has had nothing to send for a while (caught up for [`IDLE_RELEASE`], not at
    /// every pause between the pages of a live feed): a sink may let go of what it kept for its
    /// batches (buffers grown by a burst). Default: nothing to do.
    fn idle(&mut self) {}
    /// Proves the receiver can be reached (`check --connect`): opens the file or connection
    /// (TCP, TLS handshake) without sending an event; the error names the cause.
    fn probe(&mut self) -> impl Future<Output = Result<String, SendError>> + Send;
    /// Releases the connection or file cleanly (flush, `close_notify`, …).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// What [`Protocol::attach`] gets.
pub struct Attach<'a> {
    pub name: &'a str,
    pub queue: &'a Queue,
    pub stats: &'a Arc<SinkStats>,
    pub clock: &'a Clock,
}

/// `ca_file` of an HTTP sink: only meaningful for an https URL.
pub(crate) fn https_ca_file(
    cx: &TableKeys<'_>,
    ca_file: &Option<toml::Spanned<String>>,
    url: &url::Url,
) -> Res<Option<std::path::PathBuf>> {
    match ca_file {
        None => Ok(None),
        Some(p) if url.scheme() == "https" => Ok(Some(cx.path(p, "ca_file")?)),
        Some(p) => cx.fail(p.span(), "ca_file", "only used with an https URL"),
    }
}

/// Generates, from the list of protocol modules, their declarations and the two closed enums
/// through which the rest of the crate reaches a protocol: [`SinkKind`] (one configured sink's
/// settings) and [`Sink`] (an open sink).
macro_rules! sinks {
    ($($variant:ident => $module:ident :: $ty:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// One configured sink's protocol and settings, a closed set dispatched here.
        #[derive(Debug, Clone)]
        pub enum SinkKind {
            $($variant(<$module::$ty as Protocol>::Settings),)+
        }

        impl SinkKind {
            /// Every `type = "…"` value.
            pub const TYPES: &'static [&'static str] = &[$(<$module::$ty as Protocol>::TYPE,)+];

            /// The keys a protocol reads besides the common ones; `None`: no such type.
            pub fn keys_of(type_name: &str) -> Option<&'static [&'static str]> {
                $(if type_name == <$module::$ty as Protocol>::TYPE {
                    return Some(<$module::$ty as Protocol>::KEYS);
                })+
                None
            }

            /// Validates the keys of a `type = type_name` table (`None`: no such type).
            pub fn from_keys(type_name: &str, cx: &TableKeys<'_>) -> Option<Res<SinkKind>> {
                $(if type_name == <$module::$ty as Protocol>::TYPE {
                    let settings = cx.deserialize().and_then(|keys| <$module::$ty as Protocol>::settings(keys, cx));
                    return Some(settings.map(SinkKind::$variant));
                })+
                None
            }

            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SinkKind::$variant(_) => <$module::$ty as Protocol>::TYPE,)+
                }
            }

            pub fn secrets(&self) -> Vec<&secrecy::SecretString> {
                match self {
                    $(SinkKind::$variant(s) => <$module::$ty as Protocol>::secrets(s),)+
                }
            }

            pub fn render(&self, kv: &mut dyn FnMut(&str, String)) {
                match self {
                    $(SinkKind::$variant(s) => <$module::$ty as Protocol>::render(s, kv),)+
                }
            }
        }

        /// An open sink, a closed set dispatched here.
        #[derive(Debug)]
        pub enum Sink {
            $($variant(Box<$module::$ty>),)+
            /// A receiver whose answers a unit test scripts.
            #[cfg(test)]
            Scripted(tests::Scripted),
        }

        impl Sink {
            /// Prepares the sink (reads certificates and keys); connects lazily, on the first batch.
            pub fn open(cfg: &SinkConfig) -> Result<Sink, OpenError> {
                let fail = |message: String| OpenError { sink: cfg.name.clone(), message };
                Ok(match &cfg.kind {
                    $(SinkKind::$variant(s) => Sink::$variant(Box::new(<$module::$ty as Protocol>::open(s).map_err(fail)?)),)+
                })
            }

            async fn attach(
                &mut self,
                name: &str,
                queue: &Queue,
                stats: &Arc<SinkStats>,
                clock: &Clock,
            ) -> Result<(), crate::queue::QueueError> {
                let at = Attach { name, queue, stats, clock };
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::attach(s, at).await,)+
                    #[cfg(test)]
                    Sink::Scripted(_) => Ok(()),
                }
            }

            /// See [`Protocol::wrapping`].
            fn wrapping(&mut self, events: &[QueuedEvent], added: &mut Vec<usize>) {
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::wrapping(s, events, added),)+
                    #[cfg(test)]
                    Sink::Scripted(_) => added.extend(std::iter::repeat_n(0, events.len())),
                }
            }

            async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::send(s, batch).await,)+
                    #[cfg(test)]
                    Sink::Scripted(s) => s.send(batch).await,
                }
            }

            /// See [`Protocol::idle`].
            fn idle(&mut self) {
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::idle(s),)+
                    #[cfg(test)]
                    Sink::Scripted(s) => s.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).idles += 1,
                }
            }

            /// See [`Protocol::probe`].
            pub async fn probe(&mut self) -> Result<String, SendError> {
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::probe(s).await,)+
                    #[cfg(test)]
                    Sink::Scripted(_) => Ok(String::new()),
                }
            }

            /// See [`Protocol::close`].
            pub async fn close(&mut self) {
                match self {
                    $(Sink::$variant(s) => <$module::$ty as Protocol>::close(s).await,)+
                    #[cfg(test)]
                    Sink::Scripted(_) => {}
                }
            }
        }
    };
}

sinks!(File => file::FileSink, Syslog => syslog::SyslogSink, Hec => hec::HecSink, Otlp => otlp::OtlpSink,
    Elasticsearch => elasticsearch::ElasticsearchSink);

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
        let outcome = outcome.map_err(|why| crate::redact::secrets_in(&why, &cfg.kind.secrets()));
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
    /// Failed sends the receiver blamed on the request, its content or its size (bisected), or
    /// on itself (500, …).
    pub errors_refused: AtomicU64,
    pub errors_server: AtomicU64,
    /// Parts of a refused or too large batch split in two (bisection steps).
    pub splits: AtomicU64,
    /// Delivered events sent again to prove the receiver alive while isolating a poison event.
    pub liveness_resends: AtomicU64,
    /// Wall time (ms since the epoch) of the last delivered batch; 0 before the first.
    pub last_delivery_ms: AtomicI64,
    /// File sinks: rotations followed, by [`file::Reopen`] (indexed by `Reopen::index`).
    pub reopens: [AtomicU64; 4],
    /// Failing now (sends failed since the last delivery): `/ready` says degraded.
    pub trouble: crate::backoff::Trouble,
    /// Bytes of the events of every send attempt that ended (accepted or failed), as sent (with
    /// `transmit_time`): resends count again; the protocol's framing, envelope and compression
    /// do not count.
    pub sent_bytes: AtomicU64,
    /// Each send attempt (one request of the loop: a batch or a part of one), from handing it
    /// to the protocol to its outcome; a HEC send includes its indexer-ack wait.
    pub send_seconds: crate::latency::Histogram<crate::latency::HttpBuckets>,
    /// HEC with `indexer_ack`: from the collector accepting a request to its ack seen.
    pub ack_wait_seconds: crate::latency::Histogram<crate::latency::AckBuckets>,
    /// What the worker is doing ([`SinkPhase`] as a number); [`SinkStats::state`] reads it.
    phase: std::sync::atomic::AtomicU8,
    /// Elasticsearch: bulk items answered 429 / 5xx, resent alone.
    pub es_item_retries: AtomicU64,
    /// Elasticsearch: items answered 409 (the document was already there: a resend, delivered).
    pub es_conflicts: AtomicU64,
    /// Elasticsearch: requests handed to another node (the previous one unreachable, or 502-504).
    pub es_failovers: AtomicU64,
}

/// What a sink's worker is doing, as the worker says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkPhase {
    /// Before its first read of the queue (reading its saved state).
    Starting = 0,
    /// Nothing to send: waiting for new events.
    Idle = 1,
    /// A batch in hand: sending it (or backing off between its sends).
    Sending = 2,
    /// The worker ended.
    Stopped = 3,
}

/// What `auditrelay_sink_state` says: the worker's phase, except while its sends fail
/// (`backoff::Trouble`, what `/ready` reports), which says whether it mends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    Starting,
    Idle,
    Sending,
    /// Sends failing since the last delivery for reasons that mend by themselves (receiver down,
    /// busy, failing on its side, refusing content): resending with back-off.
    BackingOff,
    /// Sends failing since the last delivery, the last for a reason an operator must fix
    /// (credentials, certificates, a redirect, a 2xx that is not the protocol's "yes").
    Failing,
    Stopped,
}

impl SinkState {
    pub const ALL: [SinkState; 6] = [
        SinkState::Starting,
        SinkState::Idle,
        SinkState::Sending,
        SinkState::BackingOff,
        SinkState::Failing,
        SinkState::Stopped,
    ];

    /// The `state` label.
    pub fn label(self) -> &'static str {
        match self {
            SinkState::Starting => "starting",
            SinkState::Idle => "idle",
            SinkState::Sending => "sending",
            SinkState::BackingOff => "backing_off",
            SinkState::Failing => "failing",
            SinkState::Stopped => "stopped",
        }
    }
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
    pub errors_refused: u64,
    pub errors_server: u64,
    pub splits: u64,
    pub liveness_resends: u64,
    pub last_delivery_ms: i64,
    /// By [`file::Reopen::index`].
    pub reopens: [u64; 4],
    pub es_item_retries: u64,
    pub es_conflicts: u64,
    pub es_failovers: u64,
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
            errors_refused: self.errors_refused.load(Ordering::Relaxed),
            errors_server: self.errors_server.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            liveness_resends: self.liveness_resends.load(Ordering::Relaxed),
            last_delivery_ms: self.last_delivery_ms.load(Ordering::Relaxed),
            reopens: self.reopens.each_ref().map(|n| n.load(Ordering::Relaxed)),
            es_item_retries: self.es_item_retries.load(Ordering::Relaxed),
            es_conflicts: self.es_conflicts.load(Ordering::Relaxed),
            es_failovers: self.es_failovers.load(Ordering::Relaxed),
        }
    }

    pub fn set_phase(&self, phase: SinkPhase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// The worker's phase, or how its sends fail while they do (a stopped worker is stopped).
    pub fn state(&self) -> SinkState {
        let phase = match self.phase.load(Ordering::Relaxed) {
            0 => SinkState::Starting,
            1 => SinkState::Idle,
            2 => SinkState::Sending,
            _ => SinkState::Stopped,
        };
        match self.trouble.current() {
            Some(_) if phase == SinkState::Stopped => phase,
            Some(failing) if failing.operator => SinkState::Failing,
            Some(_) => SinkState::BackingOff,
            None => phase,
        }
    }
}

/// When a worker stops. Checked only between batches, except `abort`, which also ends a send.
#[derive(Clone, Debug, Default)]
pub struct SinkControl {
    /// Stop after the batch in hand is delivered (SIGTERM).
    pub stop: CancellationToken,
    /// Stop as soon as the queue has nothing more for this sink (sources are done: `--once`, demo).
    pub drain: CancellationToken,
    /// Give up on the batch in hand (the shutdown deadline passed); it stays queued.
    pub abort: CancellationToken,
    /// With `stop`: a reload replaces this sink, so a batch waiting out a back-off after a
    /// failed send is left in the queue at once (its replacement sends it) instead of being
    /// retried until the drain deadline while the reload waits. A send under way still ends.
    pub replaced: CancellationToken,
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
    while let Err(e) = sink.attach(name, &queue, &stats, &clock).await {
        let wait = full_jitter(&cfg.backoff, failures, &mut rng);
        failures = failures.saturating_add(1);
        error!(sink = name, error = %e, retry_in = ?wait, "cannot read the sink's state from the queue");
        tokio::select! {
            _ = clock.sleep(wait) => {}
            _ = control.stop.cancelled() => {
                stats.set_phase(SinkPhase::Stopped);
                return;
            }
        }
    }
    // Events the next read must hold at least (0: as configured), after `Ended::Reread`.
    let mut widen = 0usize;
    // The largest request (event bytes) the receiver has taken since this worker started: a
    // "too large" answer for less than that is not about size (module docs).
    let mut largest_taken = 0usize;
    // The last batch's queued bytes and its request's bytes (`fit_request`): the next read asks
    // the queue for that share of `batch_max_bytes`, so a full batch is not read only to leave
    // its last tenth in the queue for the next read.
    let mut share = (1usize, 1usize);
    while !control.stop.is_cancelled() && !control.abort.is_cancelled() {
        // Mark what we have seen before reading, so an event stored meanwhile wakes us.
        new_events.borrow_and_update();
        // After a batch of nothing but suspects (`Ended::Reread`), at least one more event comes
        // with them, whatever `batch_max_events` says: only another event can prove the receiver
        // alive (one suspect: two events and twice the bytes, as always; more poison events than
        // a batch holds: one more each time, until one is not poison).
        let (max_events, max_bytes) = match widen {
            0 => (cfg.batch_max_events, cfg.batch_max_bytes),
            n => (cfg.batch_max_events.max(n), cfg.batch_max_bytes.saturating_mul(n)),
        };
        // A re-read asks for the whole widened bound (not the last batch's share of it), and
        // must hold the `widen` events whatever their bytes: a suspect alone again, because the
        // event behind it is large, would be re-read alone for ever (review 21b).
        let read_bytes = if widen > 0 { max_bytes } else { scaled(max_bytes, share) };
        let read = async {
            let batch = queue.read_batch(name, max_events, read_bytes).await?;
            if !batch.is_empty() && batch.len() < widen {
                return queue.read_batch(name, widen, usize::MAX).await;
            }
            Ok(batch)
        };
        let batch = match read.await {
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
        if batch.is_empty() {
            if control.drain.is_cancelled() {
                break;
            }
            stats.set_phase(SinkPhase::Idle);
            // Buffers a burst grew are let go once the sink has been idle for a while, not at
            // every idle: a worker that keeps up with a live feed goes idle after each page, and
            // would grow them again for the next (review 21d).
            let woke = tokio::select! {
                changed = new_events.changed() => changed.is_ok(),
                _ = control.stop.cancelled() => false,
                _ = control.drain.cancelled() => true,
                never = release_when_quiet(&mut sink, &clock) => match never {},
            };
            if !woke {
                break;
            }
            continue;
        }
        // One request must fit `batch_max_bytes` with what the protocol wraps each event in
        // (module docs: request size); what does not fit is read again next time.
        let (batch, stampable, fitted) =
            fit_request(&mut sink, batch, max_bytes, widen, clock.now_utc().timestamp_millis());
        share = fitted;
        stats.set_phase(SinkPhase::Sending);
        let mut delivery = Delivering {
            name,
            cfg: &cfg,
            queue: &queue,
            clock: &clock,
            stats: &stats,
            control: &control,
            failures: &mut failures,
            rng: &mut rng,
            largest_taken: &mut largest_taken,
        };
        match delivery.deliver(&mut sink, &batch, &stampable).await {
            Ended::Delivered => {
                stats.batches.fetch_add(1, Ordering::Relaxed);
                widen = 0;
            }
            // Read again from the cursor: newer events may have joined a lone suspect.
            Ended::Reread { unresolved } => {
                widen = unresolved + 1;
                continue;
            }
            Ended::Aborted => break,
            Ended::AbortedInSend => {
                // Not `close`: a half-sent request or frame is abandoned, and a polite close
                // could wait on the very receiver that held us past the deadline.
                info!(sink = name, "sink stopped inside a send at the shutdown deadline");
                stats.set_phase(SinkPhase::Stopped);
                return;
            }
        }
    }
    sink.close().await;
    stats.set_phase(SinkPhase::Stopped);
    info!(sink = name, "sink stopped");
}

/// How long a worker stays idle before its sink lets go of what it kept for its batches
/// ([`Protocol::idle`]).
const IDLE_RELEASE: Duration = Duration::from_secs(30);

/// Tells the sink it is idle once it has been for [`IDLE_RELEASE`]; then waits for ever (the
/// caller's other branches end the wait).
async fn release_when_quiet(sink: &mut Sink, clock: &Clock) -> std::convert::Infallible {
    clock.sleep(IDLE_RELEASE).await;
    sink.idle();
    std::future::pending().await
}

/// `bytes` × `share.0` / `share.1` (rounded down, at least 1; `bytes` itself for a share of
/// one or more).
fn scaled(bytes: usize, (part, whole): (usize, usize)) -> usize {
    if part >= whole || whole == 0 {
        return bytes;
    }
    let scaled = (bytes as u128) * (part as u128) / (whole as u128);
    usize::try_from(scaled).unwrap_or(bytes).max(1)
}

/// The longest prefix of `batch` whose request fits `max_bytes`, counting each event as sent
/// (with its `transmit_time`, [`crate::ocsf::stamp_transmit_time`]) and what the protocol wraps
/// it in ([`Protocol::wrapping`]): at least one event (an event too large alone is the
/// receiver's to refuse, and is dead-lettered) and at least `min_events` (after
/// `Ended::Reread`, one more than the unresolved rest). The rest stays queued for the next read.
/// Also whether each kept event takes the stamp ([`crate::ocsf::stampable`], asked here once
/// for every send of the batch: [`Stamped`]), and the prefix's queued bytes and its request's
/// bytes, the share the next read asks for.
fn fit_request(
    sink: &mut Sink,
    mut batch: Vec<QueuedEvent>,
    max_bytes: usize,
    min_events: usize,
    now_ms: i64,
) -> (Vec<QueuedEvent>, Vec<bool>, (usize, usize)) {
    let mut added = Vec::with_capacity(batch.len());
    sink.wrapping(&batch, &mut added);
    let (mut queued, mut request) = (0usize, 0usize);
    let mut stampable = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let takes_stamp = crate::ocsf::stampable(&event.body);
        let stamped = crate::ocsf::stamped_len_of(&event.body, takes_stamp, now_ms);
        let bytes = stamped.saturating_add(added.get(i).copied().unwrap_or(0));
        if request.saturating_add(bytes) > max_bytes && i >= min_events.max(1) {
            break;
        }
        stampable.push(takes_stamp);
        queued = queued.saturating_add(event.body.len());
        request = request.saturating_add(bytes);
    }
    batch.truncate(stampable.len());
    (batch, stampable, (queued.max(1), request.max(1)))
}

/// A batch, or a part of one, as a sink sends it now: the queued events, each carrying the send
/// time `transmit_ms` (`metadata.transmit_time`, [`crate::ocsf::stamp_transmit_time`]). No
/// stamped copy of the batch is made: the sink writes each event's stored bytes and then its
/// stamp ([`StampedEvent`]) straight into what it sends (a request body, a gzip encoder, a frame
/// buffer, a file's batch), so the bytes sent are exactly those of the stamped copy it used to
/// get (gzipped, the same once decompressed: deflate's own bytes depend on how its input is
/// fed, whole or an event at a time). What a sink reads of an event (`ocsf::summary`) it reads
/// from the stored bytes: the stamp changes none of those attributes.
#[derive(Debug, Clone)]
pub struct Stamped<'a> {
    events: &'a [QueuedEvent],
    /// Whether each event takes the stamp ([`crate::ocsf::stampable`]), asked once a batch.
    stampable: std::borrow::Cow<'a, [bool]>,
    transmit_ms: i64,
}

impl<'a> Stamped<'a> {
    /// `events` sent at `transmit_ms` (asks each event whether it takes the stamp).
    pub fn new(events: &'a [QueuedEvent], transmit_ms: i64) -> Stamped<'a> {
        let stampable = events.iter().map(|e| crate::ocsf::stampable(&e.body)).collect();
        Stamped { events, stampable: std::borrow::Cow::Owned(stampable), transmit_ms }
    }

    /// `events` sent at `transmit_ms`, with what [`crate::ocsf::stampable`] said of each
    /// (asked again if the two do not match).
    fn with_stampable(events: &'a [QueuedEvent], stampable: &'a [bool], transmit_ms: i64) -> Stamped<'a> {
        match stampable.len() == events.len() {
            true => Stamped { events, stampable: std::borrow::Cow::Borrowed(stampable), transmit_ms },
            false => Stamped::new(events, transmit_ms),
        }
    }

    /// The events as queued (ids, stored bodies, collection times).
    pub fn events(&self) -> &'a [QueuedEvent] {
        self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The send time every event carries, epoch ms.
    pub fn transmit_ms(&self) -> i64 {
        self.transmit_ms
    }

    /// Each event as sent, in order.
    pub fn iter(&self) -> impl Iterator<Item = StampedEvent<'a>> + '_ {
        let transmit_ms = self.transmit_ms;
        self.events.iter().zip(self.stampable.iter()).map(move |(event, stampable)| {
            let (head, stamp) = crate::ocsf::splice(&event.body, *stampable, transmit_ms);
            StampedEvent { event, head, stamp }
        })
    }

    /// The bytes of every event as sent ([`StampedEvent::len`]), framing aside.
    pub fn bytes(&self) -> usize {
        self.iter().map(|e| e.len()).sum()
    }
}

/// One event as sent ([`Stamped`]): its stored bytes up to the splice, then its stamp, if it
/// takes one ([`crate::ocsf::splice`]).
#[derive(Debug, Clone, Copy)]
pub struct StampedEvent<'a> {
    /// The event as queued.
    pub event: &'a QueuedEvent,
    head: &'a [u8],
    stamp: Option<crate::ocsf::Stamp>,
}

impl<'a> StampedEvent<'a> {
    /// The queue id.
    pub fn id(&self) -> i64 {
        self.event.id
    }

    /// The event as stored (what `ocsf::summary` reads: the stamp changes none of its
    /// attributes).
    pub fn stored(&self) -> &'a [u8] {
        &self.event.body
    }

    /// The stored bytes written before the stamp (all of them for an event sent as stored),
    /// and the stamp written after them.
    pub fn parts(&self) -> (&'a [u8], Option<crate::ocsf::Stamp>) {
        (self.head, self.stamp)
    }

    /// Its length as sent.
    pub fn len(&self) -> usize {
        self.head.len() + self.stamp.map_or(0, crate::ocsf::Stamp::len)
    }

    /// Whether it is sent as zero bytes (an empty body sent as stored).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes it as sent into `out` ([`crate::ocsf::write_stamped`]).
    pub fn write_to<W: std::io::Write + ?Sized>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(self.head)?;
        match self.stamp {
            Some(stamp) => stamp.write_to(out),
            None => Ok(()),
        }
    }

    /// Appends it as sent to `out`.
    pub fn extend(&self, out: &mut Vec<u8>) {
        // Writing into a `Vec` cannot fail.
        let _ = self.write_to(out);
    }

    /// A stamped copy, for a sink's rare path that needs the bytes whole (an event to cut or
    /// refuse, a body that is not an event).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.extend(&mut out);
        out
    }

    /// Appends it as sent to `out`, as text; `Err` (nothing appended) if it is not UTF-8.
    pub fn push_to(&self, out: &mut String) -> Result<(), std::str::Utf8Error> {
        let head = std::str::from_utf8(self.head)?;
        out.reserve(self.len());
        out.push_str(head);
        if let Some(stamp) = self.stamp {
            use std::fmt::Write as _;
            // Writing into a `String` cannot fail.
            let _ = write!(out, "{stamp}");
        }
        Ok(())
    }
}

/// How the delivery of one batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Every event delivered or dead-lettered, and the cursor moved past them.
    Delivered,
    /// The shutdown deadline passed between sends; the unresolved rest stays queued.
    Aborted,
    /// Only suspect events are left and nothing in this batch proved the receiver alive: the
    /// batch is read again after the back-off, with at least one event more than its
    /// `unresolved` rest, so that events queued since come with it (a lone poison event, or a
    /// batch of them, would otherwise hold the sink for good).
    Reread { unresolved: usize },
    /// The shutdown deadline passed during a send, which was dropped; the part stays queued.
    AbortedInSend,
}

/// A part of the batch still to deliver: `batch[range]`; for a single event that failed with a
/// server error, how often it did so after fresh proof that the receiver is alive.
#[derive(Debug, Clone)]
struct Part {
    range: std::ops::Range<usize>,
    strikes: u32,
    /// How many parts of the batch the receiver had accepted when this event last failed alone
    /// with a server error: proof is fresh when it has accepted more since.
    failed_at: Option<u64>,
    /// How many server errors the batch had drawn when this event last failed alone: any more
    /// before its next failure means the receiver fails other requests too (no proof).
    errors_at: u64,
    /// Cut from a part the receiver found too large ([`Failure::TooLarge`]): never joined with
    /// its neighbours again.
    sized: bool,
}

impl Part {
    fn new(range: std::ops::Range<usize>) -> Part {
        Part { range, strikes: 0, failed_at: None, errors_at: 0, sized: false }
    }
}

/// Clears every part's suspicion and joins neighbouring parts into one, except parts cut for
/// their size.
fn forget_and_join(parts: &mut std::collections::VecDeque<Part>) {
    let mut sorted: Vec<Part> = parts.drain(..).collect();
    sorted.sort_by_key(|p| p.range.start);
    for part in sorted {
        match parts.back_mut() {
            Some(last) if last.range.end == part.range.start && !last.sized && !part.sized => {
                last.range.end = part.range.end
            }
            _ => parts.push_back(Part { sized: part.sized, ..Part::new(part.range) }),
        }
    }
}

/// One batch's delivery: the worker's context, borrowed.
struct Delivering<'a> {
    name: &'a str,
    cfg: &'a SinkConfig,
    queue: &'a Queue,
    clock: &'a Clock,
    stats: &'a SinkStats,
    control: &'a SinkControl,
    failures: &'a mut u32,
    rng: &'a mut fastrand::Rng,
    /// The largest request, in event bytes, the receiver has taken (kept across batches).
    largest_taken: &'a mut usize,
}

impl Delivering<'_> {
    /// Sends the batch, bisecting what the receiver refuses as a whole (module docs), and moves
    /// the cursor over each resolved prefix.
    async fn deliver(&mut self, sink: &mut Sink, batch: &[QueuedEvent], stampable: &[bool]) -> Ended {
        let name = self.name;
        let mut parts = std::collections::VecDeque::from([Part::new(0..batch.len())]);
        let mut resolved = vec![false; batch.len()];
        // Refused events not yet written with an ack, and how far the cursor has moved.
        let mut refused: Vec<RefusedEvent> = Vec::new();
        let mut acked = 0usize;
        // Parts the receiver accepted in this batch, and the last event of one (liveness proof).
        let mut accepted = 0u64;
        let mut delivered_event: Option<usize> = None;
        // Server errors the batch drew: a suspect's strike needs none but its own since its last.
        let mut server_errors = 0u64;
        // Liveness probes sent for this batch: `MAX_PROBES` at will, then at most one per
        // `backoff.max`, suspects being resent alone after the back-off in between (a proxy's
        // rate limiter that lets one request in N through would otherwise spend every pass on a
        // probe, a duplicate each time, and the suspect never get one).
        let mut probes = 0u32;
        let mut last_probe: Option<tokio::time::Instant> = None;
        // The suspect in isolation (its index in the batch): the one lone suspect that is sent
        // again and gathers strikes. Other suspects wait behind it, unsent, until it is
        // dead-lettered or delivered (module docs: one suspect at a time).
        let mut isolating: Option<usize> = None;
        // The isolated suspect's failure that awaits confirmation (its index in the batch and
        // the receiver's error): it came right after a "yes" and counts as a strike only if the
        // very next request, sent at once, is taken too (module docs: the sandwich).
        let mut pending: Option<(usize, String)> = None;
        // Whether the receiver took the request before this one.
        let mut taken_last = false;
        while let Some(mut part) = parts.pop_front() {
            if part.failed_at.is_some()
                && isolating.is_some_and(|i| i != part.range.start && parts.iter().any(|p| p.range.start == i))
            {
                parts.push_back(part);
                continue;
            }
            // An event under suspicion, and the receiver took nothing since it last failed: prove
            // the receiver alive first, with an event of this batch it already took.
            let may_probe = pending.is_some()
                || probes < MAX_PROBES
                || last_probe.is_none_or(|t| self.clock.now() >= t + self.cfg.backoff.max);
            // This request confirms or voids the suspect's pending strike, whatever it carries.
            let confirming = pending.take();
            let last_taken_right_before = std::mem::replace(&mut taken_last, false);
            let probe = delivered_event.filter(|_| part.failed_at == Some(accepted) && may_probe);
            let range = match probe {
                Some(i) => {
                    probes += 1;
                    last_probe = Some(self.clock.now());
                    parts.push_front(part.clone());
                    self.stats.liveness_resends.fetch_add(1, Ordering::Relaxed);
                    i..i + 1
                }
                None => part.range.clone(),
            };
            // Each attempt carries its own send time (`loggers[].transmit_time`), which the sink
            // writes as it writes each event.
            let stamped = Stamped::with_stampable(
                &batch[range.clone()],
                stampable.get(range.clone()).unwrap_or_default(),
                self.clock.now_utc().timestamp_millis(),
            );
            let sent_at = self.clock.now();
            let sent = tokio::select! {
                sent = sink.send(&stamped) => sent,
                _ = self.control.abort.cancelled() => {
                    warn!(sink = name, events = batch.len() - acked, "shutdown deadline inside a send: the batch stays queued for next start");
                    return Ended::AbortedInSend;
                }
            };
            self.stats.send_seconds.observe(self.clock.now().saturating_duration_since(sent_at));
            self.stats.sent_bytes.fetch_add(stamped.bytes() as u64, Ordering::Relaxed);
            let e = match sent {
                Ok(d) => {
                    accepted += 1;
                    taken_last = true;
                    if let Some(i) = range.clone().rev().find(|i| d.refused.iter().all(|r| r.id != batch[*i].id)) {
                        delivered_event = Some(i);
                    }
                    *self.failures = 0;
                    if let Some((failures, after)) =
                        self.stats.trouble.succeeded(self.clock.now_utc().timestamp_millis())
                    {
                        info!(sink = name, failures, after = %humantime::format_duration(after),
                            "sink {name} recovered after {failures} failures / {}", humantime::format_duration(after));
                    }
                    let bytes = batch[range.clone()].iter().map(|e| e.body.len()).sum::<usize>();
                    *self.largest_taken = (*self.largest_taken).max(bytes);
                    if let Some((suspect, message)) = confirming.filter(|(i, _)| !range.contains(i)) {
                        // Taken right before and right after the suspect failed alone: a strike.
                        let at = parts.iter().position(|p| p.range.start == suspect && p.range.len() == 1);
                        if let Some(at) = at {
                            parts[at].strikes += 1;
                            if parts[at].strikes >= POISON_STRIKES {
                                parts.remove(at);
                                // The next suspect's turn.
                                isolating = None;
                                let id = batch[suspect].id;
                                let reason = format!(
                                    "{message} (failed alone {POISON_STRIKES} times, each between two requests the receiver took)"
                                );
                                refused.push(RefusedEvent { id, reason });
                                resolved[suspect] = true;
                                if !self.ack_prefix(batch, &resolved, &mut acked, &mut refused).await {
                                    return Ended::Aborted;
                                }
                            }
                        }
                    }
                    if probe.is_some() {
                        debug!(sink = name, "receiver alive: it took an event of this batch again");
                        continue;
                    }
                    if isolating.is_some_and(|i| range.contains(&i)) {
                        // Not poison after all (a flaky receiver): the next suspect's turn.
                        isolating = None;
                    }
                    resolved[range].iter_mut().for_each(|r| *r = true);
                    if accepted == 1 {
                        isolating = None;
                        // The receiver's first "yes" in this batch: what failed before it proves
                        // nothing about the events (an outage fails every part). Forget it, and
                        // send the unresolved rest in as few parts as their order allows, not
                        // one event at a time as an outage left them.
                        forget_and_join(&mut parts);
                    }
                    refused.extend(d.refused);
                    self.stats.truncated.fetch_add(d.truncated, Ordering::Relaxed);
                    self.stats.rejected.fetch_add(d.rejected, Ordering::Relaxed);
                    if !self.ack_prefix(batch, &resolved, &mut acked, &mut refused).await {
                        return Ended::Aborted;
                    }
                    continue;
                }
                Err(e) => e,
            };
            // A receiver that echoes the credential back ("Invalid token: Splunk …") must not
            // put it in the log, on /ready or in the metrics' reasons.
            let e = SendError { message: crate::redact::secrets_in(&e.message, &self.cfg.kind.secrets()), ..e };
            // "Too large" is believed only for a request larger than the largest the receiver
            // has taken (so once it has taken one): a rate limiter or quota answering 413 /
            // RESOURCE_EXHAUSTED says nothing about size, and must not cut the backlog to single
            // events and dead-letter them at full speed. Otherwise it is handled as a server
            // error: halves after the back-off, and an event failing alone needs proof that it is
            // the event, not the receiver ([`POISON_STRIKES`]).
            let mut e = e;
            // Halves cut after a "too large", believed or not, are never joined again: joined,
            // they would draw it again.
            let size_refused = e.class == Failure::TooLarge;
            if e.class == Failure::TooLarge {
                let bytes = batch[range.clone()].iter().map(|e| e.body.len()).sum::<usize>();
                let believed = *self.largest_taken > 0 && bytes > *self.largest_taken;
                if !believed {
                    debug!(
                        sink = name,
                        bytes,
                        largest_taken = *self.largest_taken,
                        "too large for the receiver, though it took larger requests: treated as a server error"
                    );
                    e.class = Failure::ServerError;
                }
            }
            if e.class == Failure::ServerError {
                server_errors += 1;
            }
            // A refused or too large part is not sent again as it was: its halves are (`splits`).
            let cut_at_once = matches!(e.class, Failure::Refused | Failure::TooLarge);
            if !cut_at_once {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let counter = match e.class {
                Failure::Transient => &self.stats.errors_transient,
                Failure::Config => &self.stats.errors_config,
                Failure::Refused | Failure::TooLarge => &self.stats.errors_refused,
                Failure::ServerError => &self.stats.errors_server,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let events = range.len();
            if probe.is_some() {
                // The receiver failed an event it took before: no proof; the suspect waits.
                warn!(sink = name, error = %e, "receiver failed again on an event it took before: treated as an outage");
            } else {
                match e.class {
                    Failure::Refused | Failure::TooLarge | Failure::ServerError if events > 1 => {
                        let mid = part.range.start + events / 2;
                        self.stats.splits.fetch_add(1, Ordering::Relaxed);
                        let sized = part.sized || size_refused;
                        match e.class {
                            Failure::TooLarge => warn!(sink = name, error = %e, events,
                                "request too large for the receiver; sending it in halves"),
                            _ => warn!(sink = name, error = %e, events,
                                "receiver refused the batch as a whole; sending it in halves"),
                        }
                        parts.push_front(Part { sized, ..Part::new(mid..part.range.end) });
                        parts.push_front(Part { sized, ..Part::new(part.range.start..mid) });
                        if cut_at_once {
                            continue;
                        }
                    }
                    Failure::Refused | Failure::TooLarge => {
                        let id = batch[part.range.start].id;
                        refused.push(RefusedEvent { id, reason: e.message.clone() });
                        resolved[part.range.start] = true;
                        if !self.ack_prefix(batch, &resolved, &mut acked, &mut refused).await {
                            return Ended::Aborted;
                        }
                        continue;
                    }
                    Failure::ServerError => {
                        // A strike only on fresh proof that the receiver takes other events, and
                        // none of them failed since this one last did; a receiver that fails
                        // other requests too is flaky, not proof: the strikes start over.
                        let fresh = accepted > part.failed_at.unwrap_or(0);
                        let clean = part.failed_at.is_some() && part.errors_at + 1 == server_errors;
                        if !clean {
                            part.strikes = 0;
                        }
                        // Right after a "yes" (the request before this one was taken): the strike
                        // waits for the next request, sent at once, to be taken too.
                        let after_yes = accepted > 0 && last_taken_right_before;
                        if clean
                            && fresh
                            && after_yes
                            && e.retry_after.is_none()
                            && isolating.is_none_or(|i| i == part.range.start)
                        {
                            pending = Some((part.range.start, e.message.clone()));
                        }
                        part.failed_at = Some(accepted);
                        part.errors_at = server_errors;
                        isolating.get_or_insert(part.range.start);
                        // Behind the rest of the batch, whose delivery is the proof it needs;
                        // with no rest and no proof, newer events must be read in (`Reread`).
                        // Other suspects are no rest: they prove nothing (and wait their turn).
                        if parts.iter().all(|p| p.failed_at.is_some()) && delivered_event.is_none() {
                            let wait =
                                e.retry_after.unwrap_or(full_jitter(&self.cfg.backoff, *self.failures, self.rng));
                            *self.failures = self.failures.saturating_add(1);
                            warn!(sink = name, error = %e, retry_in = ?wait,
                                "event failed alone with no other event to prove the receiver alive; reading the batch again after the back-off");
                            tokio::select! {
                                _ = self.clock.sleep(wait) => return Ended::Reread { unresolved: batch.len() - acked },
                                _ = self.control.abort.cancelled() => return Ended::Aborted,
                                _ = self.control.replaced.cancelled() => {
                                    info!(sink = name, "replaced by a reload while backing off: its replacement sends the event");
                                    return Ended::Aborted;
                                }
                            }
                        }
                        parts.push_back(part);
                    }
                    Failure::Transient | Failure::Config => parts.push_front(part),
                }
            }
            let wait = match e.class {
                Failure::Config => self.cfg.backoff.max,
                _ => full_jitter(&self.cfg.backoff, *self.failures, self.rng),
            };
            // A pending strike is confirmed by the very next request, sent at once: a receiver
            // that only refuses what follows a "yes" closely (a rate limiter, a round robin over
            // broken nodes) then refuses that one too.
            let wait = if pending.is_some() { Duration::ZERO } else { e.retry_after.unwrap_or(wait) };
            *self.failures = self.failures.saturating_add(1);
            let now_ms = self.clock.now_utc().timestamp_millis();
            self.stats.trouble.failed(now_ms, e.to_string(), e.class == Failure::Config);
            match e.class {
                Failure::Config => error!(sink = name, error = %e, events, retry_in = ?wait,
                    "batch not delivered and an operator must act; the events stay queued"),
                _ => warn!(sink = name, error = %e, events, retry_in = ?wait, "batch not delivered; resending it"),
            }
            tokio::select! {
                _ = self.clock.sleep(wait) => {}
                _ = self.control.abort.cancelled() => {
                    warn!(sink = name, events = batch.len() - acked, "shutdown deadline: batch left in the queue for next start");
                    return Ended::Aborted;
                }
                _ = self.control.replaced.cancelled() => {
                    info!(sink = name, events = batch.len() - acked, "replaced by a reload while backing off: its replacement sends the batch");
                    return Ended::Aborted;
                }
            }
        }
        Ended::Delivered
    }

    /// Moves the cursor over the resolved prefix of the batch, if it grew, with the refused
    /// events in it dead-lettered in the same transaction. False: the shutdown deadline passed
    /// before the queue took it (the prefix is sent again after a restart).
    async fn ack_prefix(
        &mut self,
        batch: &[QueuedEvent],
        resolved: &[bool],
        acked: &mut usize,
        refused: &mut Vec<RefusedEvent>,
    ) -> bool {
        let name = self.name;
        let upto = *acked + resolved[*acked..].iter().take_while(|r| **r).count();
        if upto == *acked {
            return true;
        }
        let last = batch[upto - 1].id;
        let (now, later): (Vec<RefusedEvent>, Vec<RefusedEvent>) = refused.drain(..).partition(|r| r.id <= last);
        *refused = later;
        for r in &now {
            warn!(sink = name, event_id = r.id, reason = %r.reason, "event dead-lettered: this sink will not deliver it");
        }
        // Retried rather than re-read, which would resend the events; if it never succeeds
        // (shutdown deadline), they are sent again after a restart.
        while let Err(e) = self.queue.ack_refusing(name, last, now.clone()).await {
            let wait = full_jitter(&self.cfg.backoff, *self.failures, self.rng);
            *self.failures = self.failures.saturating_add(1);
            error!(sink = name, error = %e, retry_in = ?wait, "events delivered but the sink's cursor cannot be moved");
            tokio::select! {
                _ = self.clock.sleep(wait) => {}
                _ = self.control.abort.cancelled() => return false,
            }
        }
        let dead = now.len() as u64;
        self.stats.dead_lettered.fetch_add(dead, Ordering::Relaxed);
        self.stats.events.fetch_add((upto - *acked) as u64 - dead, Ordering::Relaxed);
        self.stats.last_delivery_ms.store(self.clock.now_utc().timestamp_millis(), Ordering::Relaxed);
        debug!(sink = name, events = upto - *acked, upto = last, "events delivered");
        *acked = upto;
        true
    }
}

#[cfg(test)]
mod tests {
    //! The delivery loop's rules on paused time, against a scripted receiver.
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::sync::Mutex;

    use super::*;
    use crate::queue::{NewEvent, PageWrite, QueueOptions};

    /// Issue 21 (module docs: request size): a batch is cut before the event whose request
    /// would pass the bound, never below one event nor below `min_events`; the share is the
    /// kept events' queued and request bytes, and the next read asks for that share.
    #[test]
    fn a_batch_is_cut_where_its_request_would_pass_the_bound() {
        let mut sink = Sink::Scripted(Scripted { script: Box::new(|_| Answer::Accept), log: Arc::default() });
        // Not stampable (not an event of ours): sent as queued, 100 bytes each.
        let events: Vec<QueuedEvent> =
            (1..=4).map(|id| QueuedEvent { id, body: vec![b'x'; 100], collected_ms: 0 }).collect();
        let mut cut = |max_bytes, min_events| {
            let (batch, stampable, share) = fit_request(&mut sink, events.clone(), max_bytes, min_events, 0);
            assert_eq!(stampable, vec![false; batch.len()], "not events of ours");
            (batch.iter().map(|e| e.id).collect::<Vec<_>>(), share)
        };
        assert_eq!(cut(250, 0), (vec![1, 2], (200, 200)));
        assert_eq!(cut(400, 0), (vec![1, 2, 3, 4], (400, 400)));
        assert_eq!(cut(50, 0), (vec![1], (100, 100)), "one event too large alone still goes alone");
        assert_eq!(cut(250, 3), (vec![1, 2, 3], (300, 300)), "a re-read keeps one more than its suspects");
        // An event of ours counts as sent, with its transmit_time.
        let stored =
            br#"{"raw_data_size":1,"metadata":{"loggers":[{"name":"auditrelay","product":{},"logged_time":5}]}}"#;
        let now_ms = 1_795_292_810_597;
        let mut sent = Vec::new();
        crate::ocsf::stamp_transmit_time(stored, now_ms, &mut sent);
        assert!(sent.len() > stored.len(), "stamped");
        let two: Vec<QueuedEvent> =
            (1..=2).map(|id| QueuedEvent { id, body: stored.to_vec(), collected_ms: 0 }).collect();
        let (batch, stampable, share) = fit_request(&mut sink, two, 2 * sent.len() - 1, 0, now_ms);
        assert_eq!((batch.len(), stampable, share), (1, vec![true], (stored.len(), sent.len())));
        assert_eq!(scaled(1000, (900, 1000)), 900);
        assert_eq!(scaled(1000, (1, 1)), 1000);
        assert_eq!(scaled(10, (1, 1000)), 1, "never zero");
    }

    /// Events of every shape a sink meets, as stored, for the tests that compare what each sink
    /// writes with what it wrote of a stamped copy (issue 21): ours (they take the stamp) small
    /// and huge, with unicode and escapes, with raw CR/LF between tokens, nested deeper than
    /// serde_json parses, already stamped once; an older version's (`metadata` first: sent as
    /// stored), one that ends like ours but is not; bodies that are no event (not JSON, JSON
    /// that breaks only at its end, not UTF-8, empty, an array).
    pub(crate) fn event_shapes() -> Vec<(&'static str, Vec<u8>)> {
        let ours = |actor: &str, extra: &str| -> Vec<u8> {
            let raw = serde_json::json!({
                "id": "r1", "entity_type": "user", "action_type": "deleted", "actor_id": "usr_1",
                "actor_name": actor, "actor_email": "ann@example.com", "target_id": "usr_2",
                "target_name": "Bo \"the\" \\ Builder\n", "created_at": "2026-03-18T08:15:42Z",
                "metadata": {"ip_address": "198.51.100.7", "user_agent": "curl/8.5"}, "extra": extra,
            })
            .to_string();
            let time = chrono::DateTime::parse_from_rfc3339("2026-03-18T08:15:42Z").unwrap().to_utc();
            let ctx = crate::ocsf::Context {
                organization: "ORG_1",
                dedupe_key: "r1",
                time,
                raw: &raw,
                log_name: "aitronos-prod",
                processed_ms: time.timestamp_millis() + 5_000,
            };
            let policy = crate::ocsf::Policy::default();
            crate::vendors::map_record(crate::vendors::VendorId::Aitronos, &ctx, &policy).unwrap()
        };
        let small = ours("Ann Admin", "");
        let text = String::from_utf8(small.clone()).unwrap();
        let mut stamped_once = Vec::new();
        crate::ocsf::stamp_transmit_time(&small, 1_700_000_000_000, &mut stamped_once);
        let mut not_utf8 = ours("Ann \u{e9}", "");
        let at = not_utf8.windows(2).position(|w| w == "\u{e9}".as_bytes()).unwrap();
        not_utf8[at] = 0xff;
        let deep = text.replacen('{', &format!("{{\"deep\":{}1{},", "[".repeat(130), "]".repeat(130)), 1);
        let shapes = vec![
            ("ours, small", small.clone()),
            ("ours, unicode", ours("Zoë 👩‍💻 山田 \u{7f}", "ünïcödé ✓")),
            ("ours, huge", ours("Ann", &"x".repeat(300_000))),
            ("ours, raw CR/LF between tokens", text.replacen(",\"raw_data_size\"", ",\r\n\"raw_data_size\"", 1).into()),
            ("ours, nested deeper than serde_json parses", deep.into()),
            ("ours, not UTF-8", not_utf8),
            ("ours, stored already stamped (goes as stored)", stamped_once),
            (
                "an older version's",
                br#"{"time":1795292810597,"class_uid":6003,"severity_id":2,"metadata":{"version":"1.8.0","uid":"u","loggers":[{"name":"auditrelay"}]},"raw_data":"{}","raw_data_size":2,"unmapped":{"payload":[{"logged_time":1}]}}"#.to_vec(),
            ),
            (
                "an older version's, no logger at its end",
                br#"{"time":1795292810597,"class_uid":6003,"metadata":{"uid":"u2","loggers":[{"name":"auditrelay","product":{"name":"auditrelay"},"logged_time":5}]},"raw_data_size":2,"unmapped":{"a":"b"}}"#.to_vec(),
            ),
            (
                "ours, one brace short (JSON that breaks at its end)",
                br#"{"time":1,"raw_data_size":1,"loggers":[{"name":"auditrelay","product":{},"logged_time":5}]}}"#.to_vec(),
            ),
            ("not JSON", b"not json".to_vec()),
            ("an array", b"[1,2]".to_vec()),
            ("empty", Vec::new()),
        ];
        for (what, body) in &shapes {
            assert_eq!(
                crate::ocsf::stampable(body),
                what.starts_with("ours,") && !what.contains("(goes as stored)"),
                "{what}"
            );
        }
        shapes
    }

    /// The send times the shape tests stamp: every width and sign.
    pub(crate) const TRANSMIT_TIMES: [i64; 6] = [0, 9, 1_795_292_820_000, -1_000, i64::MAX, i64::MIN];

    /// [`event_shapes`] as queued events (ids from 1).
    pub(crate) fn shaped_events() -> Vec<QueuedEvent> {
        event_shapes()
            .into_iter()
            .zip(1..)
            .map(|((_, body), id)| QueuedEvent { id, body, collected_ms: 1_795_292_811_000 })
            .collect()
    }

    /// Issue 21: each event as a sink writes it from the stored bytes is exactly the stamped
    /// copy the loop used to hand it, and counts as many bytes (`sent_bytes`); what sinks read
    /// of an event (`ocsf::summary`) reads the same from the stored event as from the copy.
    #[test]
    fn an_event_written_with_its_stamp_is_the_stamped_copy() {
        let events = shaped_events();
        let shapes = event_shapes();
        for ms in TRANSMIT_TIMES {
            let stamped = Stamped::new(&events, ms);
            let mut total = 0;
            for ((what, _), event) in shapes.iter().zip(stamped.iter()) {
                let mut copy = Vec::new();
                crate::ocsf::stamp_transmit_time(event.stored(), ms, &mut copy);
                assert_eq!(event.to_vec(), copy, "{what} at {ms}");
                assert_eq!(event.len(), copy.len(), "{what} at {ms}");
                let mut text = String::from("before:");
                match std::str::from_utf8(&copy) {
                    Ok(copy) => {
                        event.push_to(&mut text).unwrap();
                        assert_eq!(text, format!("before:{copy}"), "{what} at {ms}");
                    }
                    Err(_) => {
                        assert!(event.push_to(&mut text).is_err(), "{what}");
                        assert_eq!(text, "before:", "{what}: nothing appended");
                    }
                }
                let read = |body: &[u8]| format!("{:?}", crate::ocsf::summary::summarize(body));
                if crate::ocsf::summary::summarize(event.stored()).is_ok() {
                    assert_eq!(read(event.stored()), read(&copy), "{what} at {ms}: the summary");
                }
                total += copy.len();
            }
            assert_eq!(stamped.bytes(), total, "at {ms}");
            // The loop's view, with what `fit_request` asked of each event, is the same.
            let flags: Vec<bool> = events.iter().map(|e| crate::ocsf::stampable(&e.body)).collect();
            let kept = Stamped::with_stampable(&events, &flags, ms);
            assert!(kept.iter().zip(stamped.iter()).all(|(a, b)| a.to_vec() == b.to_vec()));
            // Flags that do not match the events are asked again rather than trusted.
            let wrong = Stamped::with_stampable(&events, &flags[1..], ms);
            assert!(wrong.iter().zip(stamped.iter()).all(|(a, b)| a.to_vec() == b.to_vec()));
            assert_eq!(wrong.len(), events.len());
        }
    }

    /// What the scripted receiver does with one request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Answer {
        Accept,
        Fail(Failure),
        /// Never answers (a receiver holding the request, an ack that never comes).
        Hang,
        /// Accepts after this long (a slow receiver; paused time makes it exact).
        AcceptAfter(Duration),
    }

    type Script = dyn FnMut(&[i64]) -> Answer + Send;

    /// A receiver answering as its script says, keeping the ids of every request it saw and of
    /// every event it accepted.
    pub struct Scripted {
        script: Box<Script>,
        pub(super) log: Arc<Mutex<Log>>,
    }

    #[derive(Debug, Default)]
    pub(super) struct Log {
        requests: Vec<Vec<i64>>,
        accepted: Vec<i64>,
        /// How often the worker told the sink it is idle ([`Protocol::idle`]).
        pub(super) idles: u32,
    }

    impl fmt::Debug for Scripted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Scripted").finish_non_exhaustive()
        }
    }
    use std::fmt;

    impl Scripted {
        pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
            let ids: Vec<i64> = batch.iter().map(|e| e.id()).collect();
            let answer = (self.script)(&ids);
            {
                let mut log = self.log.lock().unwrap();
                log.requests.push(ids.clone());
                if matches!(answer, Answer::Accept | Answer::AcceptAfter(_)) {
                    log.accepted.extend(&ids);
                }
            }
            match answer {
                Answer::Accept => Ok(Delivery::default()),
                Answer::Fail(class) => {
                    Err(SendError { message: format!("scripted {class:?}"), class, retry_after: None })
                }
                Answer::Hang => std::future::pending().await,
                Answer::AcceptAfter(took) => {
                    tokio::time::sleep(took).await;
                    Ok(Delivery::default())
                }
            }
        }
    }

    struct Run {
        queue: Queue,
        log: Arc<Mutex<Log>>,
        stats: Arc<SinkStats>,
        control: SinkControl,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    /// A queue of `n` events (ids 1..=n) and the worker loop over it with `script`.
    async fn start(n: usize, script: impl FnMut(&[i64]) -> Answer + Send + 'static) -> Run {
        start_padded(n, |_| 0, script).await
    }

    /// As [`start`], event `i`'s body padded with `pad(i)` bytes.
    async fn start_padded(
        n: usize,
        pad: impl Fn(usize) -> usize,
        script: impl FnMut(&[i64]) -> Answer + Send + 'static,
    ) -> Run {
        start_with(n, pad, 50, script).await
    }

    /// As [`start_padded`], with the sink's `batch_max_events`.
    async fn start_with(
        n: usize,
        pad: impl Fn(usize) -> usize,
        batch_max_events: usize,
        script: impl FnMut(&[i64]) -> Answer + Send + 'static,
    ) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["s".into()] })
                .unwrap();
        let events = (1..=n)
            .map(|i| NewEvent {
                dedupe_key: format!("k{i}"),
                event_time_ms: 0,
                body: format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(pad(i))).into(),
            })
            .collect();
        queue.store_page(PageWrite { source: "t".into(), events, ..PageWrite::default() }).await.unwrap();
        let text = format!(
            "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                    organization_id = \"O\"\napi_key = \"k\"\n[[sinks]]\nname = \"s\"\ntype = \"file\"\n\
                    path = \"out.ndjson\"\nbatch_max_events = {batch_max_events}\nbackoff = {{ initial = \"1s\", max = \"30s\" }}\n"
        );
        let cfg =
            crate::config::Config::parse_with_env(&text, Path::new("/etc/a.toml"), &|_| None).unwrap().sinks.remove(0);
        let log = Arc::new(Mutex::new(Log::default()));
        let sink = Sink::Scripted(Scripted { script: Box::new(script), log: Arc::clone(&log) });
        let (stats, control) = (Arc::new(SinkStats::default()), SinkControl::default());
        let task =
            tokio::spawn(run_sink(cfg, sink, queue.clone(), Clock::system(), Arc::clone(&stats), control.clone()));
        Run { queue, log, stats, control, task, _dir: dir }
    }

    impl Run {
        /// Drains the queue and returns the dead-lettered ids.
        async fn drain(self) -> (Vec<i64>, Log, SinkStatsSnapshot, Queue) {
            self.control.drain.cancel();
            self.task.await.unwrap();
            let dead = self.queue.dead_letters(1000).await.unwrap();
            let ids = dead.iter().map(|d| d.key.rsplit('#').next().unwrap().parse().unwrap()).collect();
            assert_eq!(self.queue.backlog("s").await.unwrap(), 0, "everything resolved");
            let log = std::mem::take(&mut *self.log.lock().unwrap());
            (ids, log, self.stats.snapshot(), self.queue)
        }
    }

    fn each_once(accepted: &[i64], n: i64, except: &[i64]) {
        let mut sorted = accepted.to_vec();
        sorted.sort_unstable();
        let expected: Vec<i64> = (1..=n).filter(|i| !except.contains(i)).collect();
        assert_eq!(sorted, expected, "every good event delivered exactly once");
    }

    /// Runs `work` while keeping the runtime busy, so paused time does not jump ahead while it
    /// waits on the queue's thread (a jump would end the worker's idle wait).
    async fn held_still<F: std::future::Future>(work: F) -> F::Output {
        let work = std::pin::pin!(work);
        let spin = async {
            loop {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            out = work => out,
            never = spin => never,
        }
    }

    /// Review 21d: a worker that keeps up with a live feed (a page every 10 s, idle between)
    /// does not tell its sink to let go of its buffers after each page (the syslog frame buffer
    /// was cut to 64 KiB at every idle and grown again, by doubling, for the next page); it does
    /// once it has been idle for [`IDLE_RELEASE`], once.
    #[tokio::test(start_paused = true)]
    async fn a_worker_that_keeps_up_lets_go_of_its_buffers_only_after_a_quiet_spell() {
        let run = start(5, |_| Answer::Accept).await;
        let delivered = |n: usize| {
            let (log, stats) = (Arc::clone(&run.log), Arc::clone(&run.stats));
            held_still(async move {
                while log.lock().unwrap().accepted.len() < n || stats.state() != SinkState::Idle {
                    tokio::task::yield_now().await;
                }
            })
        };
        delivered(5).await;
        for page in 0..6 {
            tokio::time::advance(Duration::from_secs(10)).await;
            let events = (0..5)
                .map(|i| NewEvent {
                    dedupe_key: format!("p{page}-{i}"),
                    event_time_ms: 0,
                    body: format!("{{\"p\":{page}}}").into(),
                })
                .collect();
            held_still(run.queue.store_page(PageWrite { source: "t".into(), events, ..PageWrite::default() }))
                .await
                .unwrap();
            delivered(10 + page * 5).await;
        }
        assert_eq!(run.log.lock().unwrap().idles, 0, "told to let go between the pages of a live feed");
        tokio::time::advance(IDLE_RELEASE).await;
        held_still(async {
            while run.log.lock().unwrap().idles == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        tokio::time::advance(10 * IDLE_RELEASE).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(run.log.lock().unwrap().idles, 1, "told once after a quiet spell");
        let (_, log, _, _) = run.drain().await;
        each_once(&log.accepted, 35, &[]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_refused_whole_is_bisected_to_the_culprit() {
        let run = start(50, |ids| match ids.contains(&17) {
            true => Answer::Fail(Failure::Refused),
            false => Answer::Accept,
        })
        .await;
        let (dead, log, stats, _) = run.drain().await;
        assert_eq!(dead, [17]);
        each_once(&log.accepted, 50, &[17]);
        assert_eq!((stats.events, stats.dead_lettered), (49, 1), "{stats:?}");
        // log2(50) halvings, at most twice (the rest is joined again after the first "yes").
        assert!(stats.splits >= 6 && stats.splits <= 12, "{stats:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_culprits_in_one_batch_are_both_found() {
        let run = start(50, |ids| match ids.contains(&1) || ids.contains(&50) {
            true => Answer::Fail(Failure::Refused),
            false => Answer::Accept,
        })
        .await;
        let (dead, log, _, _) = run.drain().await;
        assert_eq!(dead, [1, 50]);
        each_once(&log.accepted, 50, &[1, 50]);
    }

    /// A receiver answering 500 to everything for a long time, then recovering: nothing is
    /// dead-lettered, everything is delivered.
    #[tokio::test(start_paused = true)]
    async fn an_outage_of_server_errors_dead_letters_nothing() {
        let mut calls = 0;
        let run = start(50, move |_| {
            calls += 1;
            if calls <= 500 { Answer::Fail(Failure::ServerError) } else { Answer::Accept }
        })
        .await;
        let (dead, log, stats, _) = run.drain().await;
        assert_eq!(dead, Vec::<i64>::new(), "an outage dead-letters nothing");
        each_once(&log.accepted, 50, &[]);
        assert_eq!(stats.errors_server, 500, "{stats:?}");
        // The outage left the batch in single events; once the receiver answers, the rest goes
        // in one request again.
        assert!(log.requests.len() <= 503, "{:?}", &log.requests[500..]);
    }

    /// One event draws a server error while the others pass: it alone is dead-lettered, after
    /// `POISON_STRIKES` failures each following proof that the receiver takes other events.
    #[tokio::test(start_paused = true)]
    async fn a_server_error_that_persists_for_one_event_dead_letters_it_alone() {
        for poison in [1, 17, 50] {
            let run = start(50, move |ids| match ids.contains(&poison) {
                true => Answer::Fail(Failure::ServerError),
                false => Answer::Accept,
            })
            .await;
            let (dead, log, stats, queue) = run.drain().await;
            assert_eq!(dead, [poison]);
            let letters = queue.dead_letters(10).await.unwrap();
            assert!(
                letters[0].reason.contains(&format!("failed alone {POISON_STRIKES} times")),
                "{}",
                letters[0].reason
            );
            // The resent events that proved the receiver alive are the only duplicates.
            let mut once = log.accepted.clone();
            once.sort_unstable();
            once.dedup();
            each_once(&once, 50, &[poison]);
            assert_eq!(log.accepted.len() as u64 - 49, stats.liveness_resends, "{stats:?}");
            let alone = log.requests.iter().filter(|r| r.as_slice() == [poison]).count();
            assert!(alone >= POISON_STRIKES as usize, "{poison}: {alone} {stats:?}");
        }
    }

    /// Regression (issue 19's simulation, Elasticsearch 500 poison): two or three events of one
    /// batch that the receiver fails (500) alone or in any request holding them, while it takes
    /// every other event. Each failed alone in turn, and each failure cleared the other's
    /// strikes ("another server error since"): neither was ever dead-lettered and the sink
    /// stalled behind them. Suspects are isolated one at a time now: each is dead-lettered after
    /// `POISON_STRIKES` proofs, every other event is delivered.
    #[tokio::test(start_paused = true)]
    async fn several_server_error_poison_events_of_one_batch_are_each_dead_lettered() {
        for poison in [vec![17, 33], vec![1, 2], vec![5, 25, 45]] {
            let bad = poison.clone();
            let run = start(50, move |ids| match ids.iter().any(|i| bad.contains(i)) {
                true => Answer::Fail(Failure::ServerError),
                false => Answer::Accept,
            })
            .await;
            let (queue, log_handle, stats_handle) = (run.queue.clone(), Arc::clone(&run.log), Arc::clone(&run.stats));
            let drained = tokio::time::timeout(Duration::from_secs(86_400), run.drain()).await;
            let Ok((dead, log, stats, queue)) = drained else {
                let backlog = queue.backlog("s").await.unwrap();
                let dead = queue.dead_letters(10).await.unwrap().len();
                let log = log_handle.lock().unwrap();
                let tail: Vec<&Vec<i64>> = log.requests.iter().rev().take(8).collect();
                panic!(
                    "{poison:?}: stalled: not drained within a virtual day: {} requests, backlog {}, \
                     dead-lettered {}, last requests {tail:?}, {:?}",
                    log.requests.len(),
                    backlog,
                    dead,
                    stats_handle.snapshot()
                );
            };
            assert_eq!(dead, poison, "{stats:?}");
            for letter in queue.dead_letters(10).await.unwrap() {
                assert!(letter.reason.contains(&format!("failed alone {POISON_STRIKES} times")), "{}", letter.reason);
            }
            let mut once = log.accepted.clone();
            once.sort_unstable();
            once.dedup();
            each_once(&once, 50, &poison);
            assert_eq!(log.accepted.len() - once.len(), stats.liveness_resends as usize, "{stats:?}");
            for p in &poison {
                let alone = log.requests.iter().filter(|r| r.as_slice() == [*p]).count();
                assert!(alone >= POISON_STRIKES as usize, "{p}: failed alone {alone} times {stats:?}");
            }
        }
    }

    /// Poison events at the head of the queue, more of them than a batch holds
    /// (`batch_max_events = 1`): a batch of suspects alone has no event to prove the receiver
    /// alive, so it is read again with one more event each time until one does (it stalled:
    /// the batch was widened to two events only, both poison, for ever).
    #[tokio::test(start_paused = true)]
    async fn poison_events_filling_a_small_batch_do_not_stall_the_sink() {
        for poison in [vec![1, 2], vec![1, 2, 3]] {
            let bad = poison.clone();
            let run = start_with(
                10,
                |_| 0,
                1,
                move |ids| match ids.iter().any(|i| bad.contains(i)) {
                    true => Answer::Fail(Failure::ServerError),
                    false => Answer::Accept,
                },
            )
            .await;
            let (queue, log_handle) = (run.queue.clone(), Arc::clone(&run.log));
            let drained = tokio::time::timeout(Duration::from_secs(86_400), run.drain()).await;
            let Ok((dead, log, _, _)) = drained else {
                let backlog = queue.backlog("s").await.unwrap();
                let log = log_handle.lock().unwrap();
                let tail: Vec<&Vec<i64>> = log.requests.iter().rev().take(6).collect();
                panic!(
                    "{poison:?}: stalled: not drained within a virtual day: {} requests, backlog {}, last requests {tail:?}",
                    log.requests.len(),
                    backlog
                );
            };
            assert_eq!(dead, poison);
            let mut once = log.accepted.clone();
            once.sort_unstable();
            once.dedup();
            each_once(&once, 10, &poison);
        }
    }

    /// A load balancer in front of indexers of which all but one are broken, taking them in
    /// turn (two of three, seven of eight), or failing requests at random: no poison event at
    /// all, but lone events fail, become suspects, and their failures often follow a "yes" (a
    /// probe that reached the good indexer). A strike counts only with no other server error
    /// since the suspect's last failure (in isolation, the only other requests are probes and
    /// other parts), so such a receiver dead-letters nothing. Counting every failure after a
    /// "yes" dead-lettered events 33 and 30 of the two round-robin cases.
    #[tokio::test(start_paused = true)]
    async fn a_receiver_failing_other_requests_too_makes_no_innocent_event_poison() {
        let mut lone = 0;
        // Every round robin of n nodes with n - 1 broken, each four times (the back-off's jitter
        // is not seeded: a run of the suspect's own resends between two probes as long as the
        // broken nodes' run kept every probe on the good node, and 8-of-7 dead-lettered one
        // innocent event in about one run of three before the sandwich rule).
        let in_turn = (2u64..=8).flat_map(|n| [(n, n - 1); 4]).map(|(n, broken)| {
            let mut calls = 0u64;
            Box::new(move |_: &[i64]| {
                calls += 1;
                calls % n >= broken
            }) as Box<dyn FnMut(&[i64]) -> bool + Send>
        });
        let random = (0..8).map(|seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            Box::new(move |_: &[i64]| rng.u8(..4) == 0) as Box<dyn FnMut(&[i64]) -> bool + Send>
        });
        for (case, mut takes) in in_turn.into_iter().chain(random).enumerate() {
            let run = start(50, move |ids| match takes(ids) {
                true => Answer::Accept,
                false => Answer::Fail(Failure::ServerError),
            })
            .await;
            let (dead, log, stats, _) = run.drain().await;
            assert_eq!(dead, Vec::<i64>::new(), "case {case}: innocent events dead-lettered {stats:?}");
            let mut once = log.accepted.clone();
            once.sort_unstable();
            once.dedup();
            each_once(&once, 50, &[]);
            lone += log.requests.iter().filter(|r| r.len() == 1).count();
        }
        // Events went through isolation: the rule was exercised.
        assert!(lone > 100, "{lone} lone requests");
    }

    /// A receiver that goes down while a poison event is being isolated gives no proof: the
    /// suspect is not dead-lettered during the outage, only after the receiver is back.
    #[tokio::test(start_paused = true)]
    async fn an_outage_during_an_isolation_dead_letters_nothing_more() {
        let mut accepted = 0;
        let mut down = 0;
        let run = start(50, move |ids| {
            // After the first acceptance the receiver is down for 300 requests.
            if accepted > 0 && down < 300 {
                down += 1;
                return Answer::Fail(Failure::ServerError);
            }
            if ids.contains(&30) {
                return Answer::Fail(Failure::ServerError);
            }
            accepted += 1;
            Answer::Accept
        })
        .await;
        let (dead, log, _, _) = run.drain().await;
        assert_eq!(dead, [30]);
        let mut once = log.accepted.clone();
        once.sort_unstable();
        once.dedup();
        each_once(&once, 50, &[30]);
    }

    /// A poison event that is alone in its batch (the only one queued when it was read) has no
    /// neighbour to prove the receiver alive; once newer events are queued they must be read in
    /// with it, or the sink stalls behind it for good.
    #[tokio::test(start_paused = true)]
    async fn a_lone_poison_event_does_not_stall_the_sink_once_others_are_queued() {
        let run = start(1, |ids| match ids.contains(&1) {
            true => Answer::Fail(Failure::ServerError),
            false => Answer::Accept,
        })
        .await;
        // The lone event fails for a while, as in an outage: nothing is dead-lettered.
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(run.queue.dead_letters(10).await.unwrap().len(), 0, "no proof yet: nothing dead-lettered");
        let events = (2..=20)
            .map(|i| NewEvent { dedupe_key: format!("k{i}"), event_time_ms: 0, body: format!("{{\"n\":{i}}}").into() })
            .collect();
        run.queue.store_page(PageWrite { source: "t".into(), events, ..PageWrite::default() }).await.unwrap();
        let drained = tokio::time::timeout(Duration::from_secs(24 * 3600), run.drain()).await;
        let (dead, log, _, _) = drained.expect("the sink is stalled behind a lone poison event");
        assert_eq!(dead, [1]);
        let mut once = log.accepted.clone();
        once.sort_unstable();
        once.dedup();
        each_once(&once, 20, &[1]);
    }

    /// A part the receiver finds too large is halved at once and each half acknowledged as it
    /// is taken, so a busy answer to the second half resends only that half (regression: HEC
    /// and OTLP halved a batch inside their send, and a busy second half had the whole batch,
    /// the half already taken with it, sent again). Halves cut for size are not joined again
    /// after the receiver's first "yes".
    #[tokio::test(start_paused = true)]
    async fn a_part_too_large_is_halved_and_each_half_acknowledged_as_it_is_taken() {
        let mut busy = 1;
        let run = start(50, move |ids| {
            if ids.len() > 13 {
                return Answer::Fail(Failure::TooLarge);
            }
            if ids[0] > 25 && busy > 0 {
                busy -= 1;
                return Answer::Fail(Failure::Transient);
            }
            Answer::Accept
        })
        .await;
        let (dead, log, stats, _) = run.drain().await;
        assert!(dead.is_empty(), "{dead:?}");
        each_once(&log.accepted, 50, &[]);
        let sizes: Vec<usize> = log.requests.iter().map(Vec::len).collect();
        assert_eq!(sizes, [50, 25, 12, 13, 25, 12, 12, 13], "{:?}", log.requests);
        // Before the receiver took anything, "too large" is not believed: the first two halvings
        // wait the back-off (server errors, retries); the third, for 25 events when it took 13,
        // is believed and cut at once.
        assert_eq!(
            (stats.splits, stats.errors_refused, stats.errors_server, stats.retries, stats.errors_transient),
            (3, 1, 2, 3, 1)
        );
    }

    /// An event too large alone (larger than any request the receiver took) is dead-lettered
    /// with the receiver's words; its neighbours are delivered once.
    #[tokio::test(start_paused = true)]
    async fn an_event_too_large_alone_is_dead_lettered() {
        let pad = |i| if i == 7 { 100_000 } else { 0 };
        let run = start_padded(50, pad, |ids| match ids.contains(&7) || ids.len() > 25 {
            true => Answer::Fail(Failure::TooLarge),
            false => Answer::Accept,
        })
        .await;
        let (dead, log, stats, queue) = run.drain().await;
        assert_eq!(dead, [7]);
        assert!(queue.dead_letters(10).await.unwrap()[0].reason.contains("TooLarge"));
        each_once(&log.accepted, 50, &[7]);
        assert_eq!((stats.events, stats.dead_lettered), (49, 1), "{stats:?}");
    }

    /// Regression (review R3): a throttle or quota answering 413 / `RESOURCE_EXHAUSTED` for
    /// requests no larger than the receiver took before cut the batch to single events at full
    /// speed and dead-lettered them "too large alone". Such an answer is a server error: the
    /// sink backs off, an outage of it dead-letters nothing, and every event arrives once.
    #[tokio::test(start_paused = true)]
    async fn a_too_large_answer_for_what_the_receiver_took_before_dead_letters_nothing() {
        let mut calls = 0;
        let run = start(50, move |_| {
            calls += 1;
            match calls {
                1 => Answer::Accept,
                2..=40 => Answer::Fail(Failure::TooLarge),
                _ => Answer::Accept,
            }
        })
        .await;
        // The first batch (all 50) is taken; the next 50 meet the throttle.
        let events = (51..=100)
            .map(|i| NewEvent { dedupe_key: format!("k{i}"), event_time_ms: 0, body: format!("{{\"n\":{i}}}").into() })
            .collect();
        run.queue.store_page(PageWrite { source: "t".into(), events, ..PageWrite::default() }).await.unwrap();
        let (dead, log, stats, _) = run.drain().await;
        assert!(dead.is_empty(), "{dead:?}: dead-lettered for a throttle");
        let mut once = log.accepted.clone();
        once.sort_unstable();
        once.dedup();
        assert_eq!(once.len(), 100);
        assert_eq!(stats.errors_refused, 0, "{stats:?}");
    }

    /// Review R4 (failed before the probes were capped by [`MAX_PROBES`]: stalled, 57,589
    /// requests in a virtual day, 11,479 probes): a rate limiter answering 413 / `RESOURCE_EXHAUSTED` that lets one
    /// request in five through, whatever its size. The worker has just started (a restart), so
    /// nothing was taken yet: the first refusals are server errors and the batch is halved
    /// after back-offs down to small parts; the limiter lets one small part through, and from
    /// then on every part larger than it is "believed" too large, cut at once and its single
    /// events dead-lettered at full speed, though the receiver takes any of them a moment later.
    #[tokio::test(start_paused = true)]
    async fn review_r4_a_413_rate_limiter_after_a_small_yes_dead_letters_nothing() {
        let started = tokio::time::Instant::now();
        let mut calls = 0;
        // Event sizes vary (as real audit records do): 20 to 2,000 bytes of padding.
        let pad = |i: usize| 20 + (i * 397) % 2000;
        let run = start_padded(50, pad, move |_| {
            calls += 1;
            if calls % 5 == 0 { Answer::Accept } else { Answer::Fail(Failure::TooLarge) }
        })
        .await;
        let (queue, log_handle, stats_handle) = (run.queue.clone(), Arc::clone(&run.log), Arc::clone(&run.stats));
        // Virtual time (paused clock): a day is more than any back-off schedule needs.
        let drained = tokio::time::timeout(Duration::from_secs(86_400), run.drain()).await;
        let dead = queue.dead_letters(1000).await.unwrap();
        let requests = log_handle.lock().unwrap().requests.len();
        assert!(
            dead.is_empty(),
            "{} of 50 events dead-lettered by a throttle after {requests} requests: {:?} {:?}",
            dead.len(),
            dead.iter().map(|d| d.key.clone()).collect::<Vec<_>>(),
            stats_handle.snapshot()
        );
        let Ok((_, log, _, _)) = drained else {
            let backlog = queue.backlog("s").await.unwrap();
            let log = log_handle.lock().unwrap();
            let mut taken = log.accepted.clone();
            taken.sort_unstable();
            taken.dedup();
            let tail: Vec<usize> = log.requests.iter().rev().take(12).map(Vec::len).collect();
            panic!(
                "stalled: not drained within a virtual day: {requests} requests, {} of 50 events taken, \
                 backlog {}, last request sizes {tail:?}, {:?}",
                taken.len(),
                backlog,
                stats_handle.snapshot()
            );
        };
        // Every event delivered; the only duplicates are the bounded liveness probes.
        let mut once = log.accepted.clone();
        once.sort_unstable();
        once.dedup();
        each_once(&once, 50, &[]);
        // `MAX_PROBES` at will, then one per `backoff.max` (30 s here) of the run.
        let probes = log.accepted.len() - once.len();
        let paced = started.elapsed().as_secs() / 30 + 1;
        assert!(probes as u64 <= u64::from(MAX_PROBES) + paced, "{probes} duplicates in {:?}", started.elapsed());
    }

    /// Review R4b (failed before [`MAX_PROBES`]: 46 of 50 taken after a virtual day, 5,145
    /// duplicate probes; a scripted server error here, as our sinks classify a proxy's 500): a
    /// proxy rate limiter in front of the receiver, as nginx's
    /// `limit_req` (no burst) is by default: one request per 10 s passes, any other is answered
    /// 503 (a server error). The receiver takes every event it is given. The worker must deliver
    /// the 50 events; it must not resend an already delivered event as a "liveness proof"
    /// without end (each one a duplicate at the receiver).
    #[tokio::test(start_paused = true)]
    async fn review_r4b_a_503_limit_req_proxy_stalls_the_sink_and_duplicates_its_probe() {
        let mut last: Option<tokio::time::Instant> = None;
        let run = start(50, move |_| {
            let now = tokio::time::Instant::now();
            // Another client of the proxy has just used the first slot.
            let t = *last.get_or_insert(now);
            match now.duration_since(t) < Duration::from_secs(10) {
                true => Answer::Fail(Failure::ServerError),
                false => {
                    last = Some(now);
                    Answer::Accept
                }
            }
        })
        .await;
        let (queue, log_handle, stats_handle) = (run.queue.clone(), Arc::clone(&run.log), Arc::clone(&run.stats));
        let drained = tokio::time::timeout(Duration::from_secs(86_400), run.drain()).await;
        let backlog = queue.backlog("s").await.unwrap();
        let log = log_handle.lock().unwrap();
        let mut taken = log.accepted.clone();
        taken.sort_unstable();
        let total = taken.len();
        taken.dedup();
        assert!(
            drained.is_ok() && total - taken.len() < 50,
            "after a virtual day: {} requests, {} distinct of 50 taken, {} deliveries ({} duplicates), backlog {}, {:?}",
            log.requests.len(),
            taken.len(),
            total,
            total - taken.len(),
            backlog,
            stats_handle.snapshot()
        );
    }

    /// Transient and operator failures resend the same batch whole, never split it.
    #[tokio::test(start_paused = true)]
    async fn transient_and_operator_failures_resend_the_batch_whole() {
        let mut calls = 0;
        let run = start(50, move |_| {
            calls += 1;
            match calls {
                1..=3 => Answer::Fail(Failure::Transient),
                4..=5 => Answer::Fail(Failure::Config),
                _ => Answer::Accept,
            }
        })
        .await;
        let (dead, log, stats, _) = run.drain().await;
        assert!(dead.is_empty());
        assert!(log.requests.iter().all(|r| r.len() == 50), "{:?}", log.requests);
        assert_eq!((stats.splits, stats.errors_transient, stats.errors_config), (0, 3, 2));
    }

    /// Issue 18 point 5: every send attempt is timed on the agent's clock and its bytes counted,
    /// and `auditrelay_sink_state` follows the worker: sending, failing (operator), backing off
    /// (mends by itself), idle once caught up, stopped.
    #[tokio::test(start_paused = true)]
    async fn sends_are_timed_and_counted_and_the_state_follows_the_worker() {
        let cell: Arc<std::sync::OnceLock<Arc<SinkStats>>> = Arc::default();
        let states = Arc::new(Mutex::new(Vec::new()));
        let (stats_of_run, seen) = (Arc::clone(&cell), Arc::clone(&states));
        let mut calls = 0;
        let run = start(3, move |_| {
            calls += 1;
            seen.lock().unwrap().push(stats_of_run.get().map(|s| s.state()));
            match calls {
                1 => Answer::Fail(Failure::Config),
                2 => Answer::Fail(Failure::Transient),
                _ => Answer::AcceptAfter(Duration::from_millis(1_500)),
            }
        })
        .await;
        cell.set(Arc::clone(&run.stats)).unwrap();
        assert_eq!(run.stats.state(), SinkState::Starting);
        // Paused time: each step lets the worker's back-off sleeps run out in virtual time.
        while run.stats.events.load(Ordering::Relaxed) < 3 || run.stats.state() != SinkState::Idle {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // What the receiver's script saw at each request: the first attempt in "sending", the
        // second after an operator-class failure, the third after one that mends by itself.
        let seen = states.lock().unwrap().clone();
        assert_eq!(seen, [Some(SinkState::Sending), Some(SinkState::Failing), Some(SinkState::BackingOff)]);
        let sent = run.stats.send_seconds.snapshot();
        // Two instant failures (le 5 ms) and the 1.5 s acceptance (le 2.5 s, not le 1 s).
        assert_eq!((sent.count(), sent.sum_us), (3, 1_500_000));
        let cumulative: Vec<(u64, u64)> = sent.cumulative().collect();
        assert_eq!(cumulative[0], (5, 2));
        assert_eq!(cumulative.iter().find(|(le, _)| *le == 1_000), Some(&(1_000, 2)));
        assert_eq!(cumulative.iter().find(|(le, _)| *le == 2_500), Some(&(2_500, 3)));
        // Three attempts of the same three events, each counted as sent (with transmit_time).
        let log = run.log.lock().unwrap().requests.clone();
        assert_eq!(log, [vec![1, 2, 3], vec![1, 2, 3], vec![1, 2, 3]]);
        let events: Vec<QueuedEvent> = (1..=3)
            .map(|i| QueuedEvent { id: i, body: format!("{{\"n\":{i},\"pad\":\"\"}}").into(), collected_ms: 0 })
            .collect();
        let now_ms = Clock::system().now_utc().timestamp_millis();
        let one: usize = events.iter().map(|e| crate::ocsf::stamped_len(&e.body, now_ms)).sum();
        assert_eq!(run.stats.sent_bytes.load(Ordering::Relaxed), 3 * one as u64);
        assert_eq!(run.stats.ack_wait_seconds.snapshot().count(), 0, "not a HEC sink");
        let stats = Arc::clone(&run.stats);
        run.drain().await;
        assert_eq!(stats.state(), SinkState::Stopped);
    }

    /// The drain deadline ends a send that never returns; the batch stays queued.
    #[tokio::test(start_paused = true)]
    async fn abort_ends_a_send_that_never_returns() {
        let run = start(10, |_| Answer::Hang).await;
        while run.log.lock().unwrap().requests.is_empty() {
            tokio::task::yield_now().await;
        }
        run.control.stop.cancel();
        run.control.abort.cancel();
        run.task.await.unwrap();
        assert_eq!(run.queue.backlog("s").await.unwrap(), 10, "nothing acknowledged");
        let ids: BTreeSet<i64> = run.log.lock().unwrap().requests.concat().into_iter().collect();
        assert_eq!(ids.len(), 10);
    }

    /// A resolved prefix is acknowledged while the rest is still being isolated.
    #[tokio::test(start_paused = true)]
    async fn the_cursor_moves_over_the_resolved_prefix() {
        let run = start(50, |ids| match ids.contains(&40) {
            true => Answer::Hang,
            false => Answer::Accept,
        })
        .await;
        // The whole batch hangs: nothing resolved. Abort, then restart with a refusing script.
        while run.log.lock().unwrap().requests.is_empty() {
            tokio::task::yield_now().await;
        }
        run.control.abort.cancel();
        run.task.await.unwrap();
        assert_eq!(run.queue.backlog("s").await.unwrap(), 50);

        let mut refusals = 0;
        let queue = run.queue.clone();
        let log = Arc::new(Mutex::new(Log::default()));
        let script = move |ids: &[i64]| {
            if ids.contains(&40) {
                refusals += 1;
                // Refused while being isolated; then never answered.
                return if refusals <= 3 { Answer::Fail(Failure::Refused) } else { Answer::Hang };
            }
            Answer::Accept
        };
        let cfg = crate::config::Config::parse_with_env(
            "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"O\"\n\
             api_key = \"k\"\n[[sinks]]\nname = \"s\"\ntype = \"file\"\npath = \"o\"\nbatch_max_events = 50\n",
            Path::new("/etc/a.toml"),
            &|_| None,
        )
        .unwrap()
        .sinks
        .remove(0);
        let control = SinkControl::default();
        let sink = Sink::Scripted(Scripted { script: Box::new(script), log: Arc::clone(&log) });
        let task = tokio::spawn(run_sink(
            cfg,
            sink,
            queue.clone(),
            Clock::system(),
            Arc::new(SinkStats::default()),
            control.clone(),
        ));
        // 50 → 25 ok, [26..50] refused → [26..37] ok, [38..50] refused → [38..43] refused → hang.
        while log.lock().unwrap().requests.len() < 6 {
            tokio::task::yield_now().await;
        }
        control.abort.cancel();
        task.await.unwrap();
        assert_eq!(queue.backlog("s").await.unwrap(), 13, "events 1..=37 acknowledged: {:?}", log.lock().unwrap());
    }
}
