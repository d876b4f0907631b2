//! The operator's window on the agent: `/metrics` (Prometheus text format 0.0.4), `/health` and
//! `/ready`, served on `[telemetry] listen` (a loopback address: the metrics name sources, sinks
//! and their counts).
//!
//! Owns the metric names, their help texts and the exposition. It only reads: every value is
//! read when scraped from what the agent already keeps (the counters of `SourceStats` and
//! `SinkStats`, the state each source publishes, the queue's own counts), so there is no second
//! set of counters to keep in step and nothing here can lose a count. It leaves the wiring (which
//! sources and sinks exist, when the agent is ready) to `daemon.rs`.
//!
//! Deliberately hand-written, not a metrics library. `prometheus-client` (the official Rust
//! client) encodes only OpenMetrics 1.0 text (`# TYPE x counter` for samples named `x_total`,
//! `# UNIT`, `# EOF`), which must not be served as `text/plain; version=0.0.4`; and its
//! `Collector::encode` is synchronous while the queue answers asynchronously, so it would encode
//! a snapshot we had read already: the crate would contribute the escaping of three characters.
//! `metrics` + `metrics-exporter-prometheus` keep values in a global recorder that something would
//! have to copy ours into before each scrape. The exposition is written family by family in
//! one place ([`expose`]): counters, gauges, and the latency histograms of `crate::latency`
//! (cumulated here, at scrape time). Every family of a configured source or sink is present
//! from the first scrape, at zero, so `rate()` and alerts see a series before its first event;
//! only values that do not exist yet (a lag before the first sweep, a last delivery before the
//! first) are left out rather than faked.
//!
//! The `process_*` families are the Prometheus client libraries' (same names, same units), read
//! at each scrape from `/proc/self` on Linux ([`read_process`]); elsewhere they are left out.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::backoff::Failing;
use crate::clock::Clock;
use crate::latency::HistogramSnapshot;
use crate::queue::{DeadLetterCount, Queue, QueueError, QueueStats};
use crate::sinks::file::Reopen;
use crate::sinks::{SinkState, SinkStats, SinkStatsSnapshot};
use crate::sources::{SourceState, SourceStats, SourceStatsSnapshot};

/// The content type of the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a scrape or a health check waits for the queue's database thread. It answers in
/// milliseconds unless a large transaction holds it; past this the scrape reports
/// `auditrelay_queue_up 0` (and `/health` 503) rather than letting the scraper time out on us.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the metrics read of one source.
pub struct SourceProbe {
    pub name: String,
    pub vendor: &'static str,
    pub stats: Arc<SourceStats>,
    pub state: tokio::sync::watch::Receiver<SourceState>,
}

/// What the metrics read of one sink.
pub struct SinkProbe {
    pub name: String,
    /// `"file"`, `"syslog"`, `"hec"` or `"otlp"`: the `type` label.
    pub kind: &'static str,
    pub stats: Arc<SinkStats>,
}

/// The metrics and health endpoints; clones share the same sets of sources and sinks.
#[derive(Clone)]
pub struct Telemetry {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Queue,
    clock: Clock,
    /// std `Mutex`es: held only to swap or clone the `Arc`, never across an `.await`. A scrape
    /// renders the set it cloned, so a reload in the middle of it is seen by the next one.
    sources: Mutex<Arc<[SourceProbe]>>,
    sinks: Mutex<Arc<[SinkProbe]>>,
    ready: AtomicBool,
    /// The last reload's outcome and when it was tried (Unix ms); the start counts as a
    /// successful load.
    reload_ok: AtomicBool,
    reload_ms: AtomicI64,
    /// Reads the `process_*` values: [`read_process`], or a fixed one in tests.
    process: fn() -> Option<ProcessView>,
}

impl Telemetry {
    /// No sources, no sinks, not ready.
    pub fn new(queue: Queue, clock: Clock) -> Telemetry {
        PROCESS_STARTED_MS.get_or_init(|| chrono::Utc::now().timestamp_millis());
        Telemetry::with_process(queue, clock, read_process)
    }

    fn with_process(queue: Queue, clock: Clock, process: fn() -> Option<ProcessView>) -> Telemetry {
        Telemetry {
            shared: Arc::new(Shared {
                queue,
                sources: Mutex::new(Arc::from([])),
                sinks: Mutex::new(Arc::from([])),
                ready: AtomicBool::new(false),
                reload_ok: AtomicBool::new(true),
                reload_ms: AtomicI64::new(clock.now_utc().timestamp_millis()),
                clock,
                process,
            }),
        }
    }

    /// Replaces the set of sources (at start and after a reload).
    pub fn set_sources(&self, sources: Vec<SourceProbe>) {
        *self.shared.sources.lock().unwrap_or_else(PoisonError::into_inner) = sources.into();
    }

    /// Replaces the set of sinks (at start and after a reload).
    pub fn set_sinks(&self, sinks: Vec<SinkProbe>) {
        *self.shared.sinks.lock().unwrap_or_else(PoisonError::into_inner) = sinks.into();
    }

    /// `/ready` answers 200 only while this is true: set once configuration, database and
    /// workers are up, cleared when shutting down.
    pub fn set_ready(&self, ready: bool) {
        self.shared.ready.store(ready, Ordering::Relaxed);
    }

    /// Records a reload's outcome (`auditrelay_config_last_reload_*`), tried now.
    pub fn reloaded(&self, successful: bool) {
        self.shared.reload_ms.store(self.shared.clock.now_utc().timestamp_millis(), Ordering::Relaxed);
        self.shared.reload_ok.store(successful, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of everything, read now. Never fails: what the queue
    /// cannot tell is left out and `auditrelay_queue_up` says 0.
    pub async fn render(&self) -> String {
        let sources = Arc::clone(&self.shared.sources.lock().unwrap_or_else(PoisonError::into_inner));
        let sinks = Arc::clone(&self.shared.sinks.lock().unwrap_or_else(PoisonError::into_inner));
        let queue = read_queue(&self.shared.queue, &sinks, &self.shared.clock).await;
        let now_ms = self.shared.clock.now_utc().timestamp_millis();
        let reload = ReloadView {
            successful: self.shared.reload_ok.load(Ordering::Relaxed),
            at_ms: self.shared.reload_ms.load(Ordering::Relaxed),
        };
        let process = (self.shared.process)();
        expose(&sources, &sinks, &queue, &reload, now_ms, process.as_ref())
    }

    /// Serves `GET /metrics`, `/health` and `/ready` on `listener` until `shutdown` is cancelled,
    /// then lets requests in progress finish (each is bounded by the queue timeout).
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) {
        let listen = listener.local_addr().ok();
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(health))
            .route("/ready", get(ready))
            .with_state(self);
        tracing::info!(listen = ?listen, "serving /metrics, /health and /ready");
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        if let Err(e) = served {
            // Metrics are lost to the operator, no event is: not an ERROR.
            tracing::warn!(listen = ?listen, error = %e, "the telemetry server stopped");
        }
    }

    /// `Ok` while the queue answers.
    async fn health(&self) -> Result<(), String> {
        match self.shared.clock.timeout(QUEUE_TIMEOUT, self.shared.queue.stats()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("queue: {e}")),
            Err(_) => Err(format!("queue: no answer within {}s", QUEUE_TIMEOUT.as_secs())),
        }
    }
}

async fn metrics(State(telemetry): State<Telemetry>) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], telemetry.render().await).into_response()
}

async fn health(State(telemetry): State<Telemetry>) -> (StatusCode, String) {
    match telemetry.health().await {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// One failing source or sink in `/ready`'s body.
#[derive(Debug, serde::Serialize)]
struct Degraded {
    /// `"source"` or `"sink"`.
    kind: &'static str,
    name: String,
    #[serde(flatten)]
    failing: Failing,
    /// `since_ms` as RFC 3339.
    since: String,
}

/// `/ready`'s body.
#[derive(Debug, serde::Serialize)]
struct Readiness {
    /// `"ready"`, `"degraded"` or `"not_ready"`.
    status: &'static str,
    degraded: Vec<Degraded>,
}

impl Telemetry {
    /// What `/ready` answers: 200 `ready` when every source and sink works, 503 `degraded`
    /// (naming each failing one, since when and why) or 503 `not_ready` (starting, stopping).
    fn readiness(&self) -> (StatusCode, Readiness) {
        if !self.shared.ready.load(Ordering::Relaxed) {
            return (StatusCode::SERVICE_UNAVAILABLE, Readiness { status: "not_ready", degraded: Vec::new() });
        }
        let sources = Arc::clone(&self.shared.sources.lock().unwrap_or_else(PoisonError::into_inner));
        let sinks = Arc::clone(&self.shared.sinks.lock().unwrap_or_else(PoisonError::into_inner));
        let failing = sources
            .iter()
            .map(|s| ("source", &s.name, &s.stats.trouble))
            .chain(sinks.iter().map(|s| ("sink", &s.name, &s.stats.trouble)));
        let degraded: Vec<Degraded> = failing
            .filter_map(|(kind, name, trouble)| {
                let failing = trouble.current()?;
                let since = chrono::DateTime::from_timestamp_millis(failing.since_ms)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                    .unwrap_or_default();
                Some(Degraded { kind, name: name.clone(), failing, since })
            })
            .collect();
        if degraded.is_empty() {
            (StatusCode::OK, Readiness { status: "ready", degraded })
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, Readiness { status: "degraded", degraded })
        }
    }
}

async fn ready(State(telemetry): State<Telemetry>) -> Response {
    let (status, body) = telemetry.readiness();
    let body = serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"status\":{:?}}}", body.status));
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// What one scrape read from the queue.
#[derive(Debug, Default)]
struct QueueView {
    /// False if any read failed or timed out.
    up: bool,
    stats: Option<QueueStats>,
    /// Each sink's backlog, in the order of the sinks; `None` if it could not be read.
    backlogs: Vec<Option<u64>>,
    /// When each sink's oldest undelivered event was stored (ms), in the order of the sinks:
    /// `Some(None)` when it has delivered everything, `None` if it could not be read.
    oldest: Vec<Option<Option<i64>>>,
    dead_letters: Option<Vec<DeadLetterCount>>,
    /// Events discarded for each sink removed from the configuration (kept in memory: known
    /// even when the database does not answer).
    discarded: Vec<(String, u64)>,
}

/// Reads the queue's counts, the sinks' backlogs and the dead letters, within `QUEUE_TIMEOUT`.
async fn read_queue(queue: &Queue, sinks: &[SinkProbe], clock: &Clock) -> QueueView {
    let read = async {
        let mut failed = None;
        let mut fail = |e: QueueError| {
            failed.get_or_insert(e);
        };
        let stats = queue.stats().await.map_err(&mut fail).ok();
        let mut backlogs = Vec::with_capacity(sinks.len());
        let mut oldest = Vec::with_capacity(sinks.len());
        for sink in sinks {
            backlogs.push(match queue.backlog(&sink.name).await {
                Ok(n) => Some(n),
                // A sink the queue was not opened with (a reload racing the scrape) says nothing
                // about the queue's health: leave its series out.
                Err(QueueError::UnknownSink { .. }) => None,
                Err(e) => {
                    fail(e);
                    None
                }
            });
            oldest.push(match queue.oldest_queued_ms(&sink.name).await {
                Ok(at) => Some(at),
                Err(QueueError::UnknownSink { .. }) => None,
                Err(e) => {
                    fail(e);
                    None
                }
            });
        }
        let dead_letters = queue.dead_letter_counts().await.map_err(&mut fail).ok();
        if let Some(e) = &failed {
            // Logged at debug: a scrape every few seconds would repeat it; the gauge and
            // `/health` report it, and the queue's users log its failures where they matter.
            tracing::debug!(error = %e, "telemetry: cannot read the queue");
        }
        QueueView { up: failed.is_none(), stats, backlogs, oldest, dead_letters, discarded: Vec::new() }
    };
    // Timed out: nothing is known, the queue counts as down.
    let view = clock
        .timeout(QUEUE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_elapsed| QueueView { up: false, ..QueueView::default() });
    QueueView { discarded: queue.discarded_events(), ..view }
}

/// The last reload's outcome, as a scrape read it.
#[derive(Debug, Clone, Copy)]
struct ReloadView {
    successful: bool,
    at_ms: i64,
}

/// The exposition of one scrape, from what was read (no I/O, no clock: tests pin it exactly).
fn expose(
    sources: &[SourceProbe],
    sinks: &[SinkProbe],
    queue: &QueueView,
    reload: &ReloadView,
    now_ms: i64,
    process: Option<&ProcessView>,
) -> String {
    let mut out = Exposition::default();
    out.family(
        "auditrelay_build_info",
        Kind::Gauge,
        "The running auditrelay's version (the value is always 1).",
        vec![(labels([("version", env!("CARGO_PKG_VERSION"))]), Value::Count(1))],
    );
    out.family(
        "auditrelay_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last configuration reload (SIGHUP) was applied, 0 if it was refused (the running \
         configuration stays; the log says why); 1 at start.",
        vec![(Vec::new(), Value::Count(u64::from(reload.successful)))],
    );
    out.family(
        "auditrelay_config_last_reload_timestamp_seconds",
        Kind::Gauge,
        "When the last configuration reload was tried, applied or refused (Unix time); the start time \
         before any reload.",
        vec![(Vec::new(), Value::Millis(reload.at_ms))],
    );

    let sources: Vec<SourceRow<'_>> = sources.iter().map(SourceRow::read).collect();
    out.family(
        "auditrelay_source_requests_total",
        Kind::Counter,
        "Requests to the vendor's API by the HTTP status of the answer; status \"0\" counts requests \
         that got no answer (connection failure, timeout).",
        sources
            .iter()
            .flat_map(|s| {
                // "0" (no answer) is there at 0 before any request fails, so the family has a
                // series from the first scrape; the others come with the statuses answered.
                let unanswered = (!s.statuses.iter().any(|(status, _)| *status == 0)).then_some((0, 0));
                unanswered
                    .into_iter()
                    .chain(s.statuses.iter().copied())
                    .map(|(status, n)| (s.labels_and([("status", status.to_string())]), Value::Count(n)))
            })
            .collect(),
    );
    type SourceCounter = (&'static str, &'static str, fn(&SourceStatsSnapshot) -> u64);
    let source_counters: [SourceCounter; 11] = [
        (
            "auditrelay_source_rate_limited_total",
            "Answers HTTP 429: the source paused, then asked the same page again.",
            |s| s.rate_limited,
        ),
        ("auditrelay_source_pages_total", "Pages (or whole-window answers) committed to the queue.", |s| s.pages),
        ("auditrelay_source_records_fetched_total", "Records read from the vendor's answers.", |s| s.fetched),
        ("auditrelay_source_records_stored_total", "Records stored in the queue as new events.", |s| s.stored),
        (
            "auditrelay_source_duplicates_total",
            "Records already stored before (dedupe hits), as expected where windows overlap.",
            |s| s.duplicates,
        ),
        (
            "auditrelay_source_dead_lettered_total",
            "Records that could not be mapped, kept in the dead-letter table.",
            |s| s.dead_lettered,
        ),
        (
            "auditrelay_source_retries_total",
            "Requests repeated after a 429, a vendor error, a failed connection or an unreadable answer.",
            |s| s.retries,
        ),
        (
            "auditrelay_source_bad_answers_total",
            "Answers that could not be read: malformed pages, broken or oversized bodies, cut streams.",
            |s| s.bad_answers,
        ),
        (
            "auditrelay_source_queue_full_waits_total",
            "Times the source stopped fetching because the queue was at queue.max_bytes.",
            |s| s.queue_full_waits,
        ),
        (
            "auditrelay_source_window_splits_total",
            "Windows halved because the vendor's answer exceeded its record or byte cap.",
            |s| s.window_splits,
        ),
        (
            "auditrelay_source_retry_after_capped_total",
            "Waits the vendor asked for (Retry-After, rate-limit reset) longer than max_retry_after, cut to it.",
            |s| s.retry_after_capped,
        ),
    ];
    for (name, help, count) in source_counters {
        let samples = sources.iter().map(|s| (s.labels(), Value::Count(count(&s.stats)))).collect();
        out.family(name, Kind::Counter, help, samples);
    }
    // Issue 15 (points 1, 8, 10): what a source did at the edges of a vendor's contract.
    let edge_counters: [SourceCounter; 4] = [
        (
            "auditrelay_source_overlap_pieces_total",
            "Pieces of an overlap asked again on their own because the whole answer was too large (the overlap is still asked whole, for late records).",
            |s| s.overlap_pieces,
        ),
        (
            "auditrelay_source_oversized_taken_total",
            "Answers over the vendor's caps taken whole because their window could not be split further.",
            |s| s.oversized_taken,
        ),
        (
            "auditrelay_source_repeated_pages_total",
            "Sweeps ended because the vendor sent the same page twice while saying there were more.",
            |s| s.repeated_pages,
        ),
        (
            "auditrelay_source_redirects_refused_total",
            "Redirects not followed: to another origin (credentials never leave theirs) or past the limit.",
            |s| s.redirects_refused,
        ),
    ];
    for (name, help, count) in edge_counters {
        let samples = sources.iter().map(|s| (s.labels(), Value::Count(count(&s.stats)))).collect();
        out.family(name, Kind::Counter, help, samples);
    }
    expose_lateness_and_clocks(&mut out, &sources);
    out.family(
        "auditrelay_source_lag_seconds",
        Kind::Gauge,
        "Now minus the source's checkpoint: everything older is collected. At least the configured \
         lag; absent until the first sweep ends.",
        sources
            .iter()
            .filter(|s| s.checkpoint_ms != 0)
            // A wall clock stepped back would make it negative: none of the data is missing then.
            .map(|s| (s.labels(), Value::Millis(now_ms.saturating_sub(s.checkpoint_ms).max(0))))
            .collect(),
    );
    out.family(
        "auditrelay_source_last_success_timestamp_seconds",
        Kind::Gauge,
        "When the source last committed a page to the queue (Unix time); absent before the first.",
        sources
            .iter()
            .filter(|s| s.last_success_ms != 0)
            .map(|s| (s.labels(), Value::Millis(s.last_success_ms)))
            .collect(),
    );
    out.family(
        "auditrelay_source_state",
        Kind::Gauge,
        "What the source is doing: 1 for its current state, 0 for the others.",
        sources
            .iter()
            .flat_map(|s| {
                ALL_STATES.iter().map(|state| {
                    (
                        s.labels_and([("state", state_name(*state).to_owned())]),
                        Value::Count(u64::from(*state == s.state)),
                    )
                })
            })
            .collect(),
    );
    out.histogram(
        "auditrelay_source_request_duration_seconds",
        "Requests to the vendor's API, from sending one to its status and headers or its failure \
         (the body is read after), whatever the answer; on the agent's monotonic clock.",
        sources.iter().map(|s| (s.labels(), s.request_seconds.clone())).collect(),
    );

    let sinks: Vec<SinkRow<'_>> = sinks
        .iter()
        .enumerate()
        .map(|(i, p)| {
            SinkRow::read(p, queue.backlogs.get(i).copied().flatten(), queue.oldest.get(i).copied().flatten())
        })
        .collect();
    type SinkCounter = (&'static str, &'static str, fn(&SinkStatsSnapshot) -> u64);
    let sink_counters: [SinkCounter; 8] = [
        ("auditrelay_sink_events_total", "Events delivered (accepted by the receiver).", |s| s.events),
        ("auditrelay_sink_batches_total", "Batches delivered.", |s| s.batches),
        ("auditrelay_sink_retries_total", "Batches sent again after a failed send.", |s| s.retries),
        (
            "auditrelay_sink_dead_lettered_total",
            "Events this sink can never deliver, moved to the dead-letter table.",
            |s| s.dead_lettered,
        ),
        ("auditrelay_sink_truncated_total", "Events delivered truncated to the receiver's size limit.", |s| {
            s.truncated
        }),
        (
            "auditrelay_sink_rejected_total",
            "Events the receiver reported rejected after taking them (OTLP partial success).",
            |s| s.rejected,
        ),
        (
            "auditrelay_sink_splits_total",
            "Parts of a batch the receiver refused as a whole (to find the events at fault) or found too large, split in two.",
            |s| s.splits,
        ),
        (
            "auditrelay_sink_liveness_resends_total",
            "Delivered events sent again to prove the receiver alive before dead-lettering a poison event.",
            |s| s.liveness_resends,
        ),
    ];
    for (name, help, count) in sink_counters {
        let samples = sinks.iter().map(|s| (s.labels(), Value::Count(count(&s.stats)))).collect();
        out.family(name, Kind::Counter, help, samples);
    }
    out.family(
        "auditrelay_sink_errors_total",
        Kind::Counter,
        "Failed sends by class: \"transient\" (receiver unreachable or busy: resent with back-off), \
         \"operator\" (configuration, credentials, certificates, redirects: an operator must act), \
         \"refused\" (the request refused for its content or its size: bisected) or \"server\" (a server error: \
         backed off and bisected, never dead-lettered without proof the receiver is up).",
        sinks
            .iter()
            .flat_map(|s| {
                [
                    ("transient", s.stats.errors_transient),
                    ("operator", s.stats.errors_config),
                    ("refused", s.stats.errors_refused),
                    ("server", s.stats.errors_server),
                ]
                .map(|(class, n)| (s.labels_and([("class", class.to_owned())]), Value::Count(n)))
            })
            .collect(),
    );
    out.family(
        "auditrelay_sink_reopens_total",
        Kind::Counter,
        "File sinks: rotations of the file the sink noticed and followed, by reason: \"moved\" or \
         \"deleted\" (the path no longer named its file: reopened at the path), \"truncated\" \
         (copytruncate: appended at the new end, on a line boundary) or \"sighup\" (reopen requested).",
        sinks
            .iter()
            .filter(|s| s.kind == "file")
            .flat_map(|s| {
                Reopen::ALL.map(|why| {
                    (s.labels_and([("reason", why.label().to_owned())]), Value::Count(s.stats.reopens[why.index()]))
                })
            })
            .collect(),
    );
    expose_elasticsearch(&mut out, &sinks);
    out.family(
        "auditrelay_sink_discarded_events_total",
        Kind::Counter,
        "Events a sink removed from the configuration had not delivered, discarded for it when it was \
         removed (at start or at a reload; a renamed sink keeps its backlog), since the agent started.",
        queue
            .discarded
            .iter()
            .map(|(sink, n)| (vec![("sink", Cow::Borrowed(sink.as_str()))], Value::Count(*n)))
            .collect(),
    );
    out.family(
        "auditrelay_sink_backlog_events",
        Kind::Gauge,
        "Events queued after the sink's cursor: stored but not yet delivered by this sink.",
        sinks.iter().filter_map(|s| Some((s.labels(), Value::Count(s.backlog?)))).collect(),
    );
    out.family(
        "auditrelay_sink_oldest_event_age_seconds",
        Kind::Gauge,
        "Now minus when the oldest event the sink has not delivered was stored in the queue (its \
         enqueue time, not its event time); 0 when the sink has delivered everything.",
        sinks
            .iter()
            .filter_map(|s| {
                let age = s.oldest?.map_or(0, |at| now_ms.saturating_sub(at).max(0));
                Some((s.labels(), Value::Millis(age)))
            })
            .collect(),
    );
    expose_sink_sends(&mut out, &sinks);
    out.family(
        "auditrelay_sink_last_delivery_timestamp_seconds",
        Kind::Gauge,
        "When the sink last delivered a batch (Unix time); absent before the first.",
        sinks
            .iter()
            .filter(|s| s.stats.last_delivery_ms != 0)
            .map(|s| (s.labels(), Value::Millis(s.stats.last_delivery_ms)))
            .collect(),
    );

    out.family(
        "auditrelay_queue_up",
        Kind::Gauge,
        "1 if the queue database answered this scrape's reads, 0 if not (queue metrics are then absent).",
        vec![(Vec::new(), Value::Count(u64::from(queue.up)))],
    );
    if let Some(stats) = &queue.stats {
        let gauges = [
            ("auditrelay_queue_events", "Events in the queue (not yet delivered by every sink).", stats.events),
            (
                "auditrelay_queue_bytes",
                "Bytes of queued event bodies and dead letters, counted against queue.max_bytes.",
                stats.bytes,
            ),
            (
                "auditrelay_queue_max_bytes",
                "The configured cap (queue.max_bytes): at it, sources stop fetching.",
                stats.max_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            out.family(name, Kind::Gauge, help, vec![(Vec::new(), Value::Count(value))]);
        }
    }
    // By origin, not by reason: reasons are free text (a vendor's field name, a receiver's
    // message), and a label of unbounded values would make a new series per message.
    // `auditrelay dead-letters` shows the reasons.
    out.family(
        "auditrelay_dead_letters",
        Kind::Gauge,
        "Records in the dead-letter table, by source and origin: \"source\" (the source could not map \
         the record) or \"sink:<name>\" (that sink refused the event).",
        dead_letter_samples(&sources, queue.dead_letters.as_deref()),
    );
    if let Some(process) = process {
        expose_process(&mut out, process);
    }
    out.text
}

/// The dead-letter table's counts, and 0 with origin "source" for each configured source that
/// has none (a series to watch from the start); nothing when the queue did not answer.
fn dead_letter_samples<'a>(sources: &[SourceRow<'a>], counts: Option<&'a [DeadLetterCount]>) -> Vec<Sample<'a>> {
    let Some(counts) = counts else { return Vec::new() };
    let mut samples: Vec<Sample<'a>> = counts
        .iter()
        .map(|d| {
            let origin = d.sink.as_ref().map_or_else(|| "source".to_owned(), |sink| format!("sink:{sink}"));
            (vec![("source", Cow::Borrowed(d.source.as_str())), ("origin", Cow::Owned(origin))], Value::Count(d.count))
        })
        .collect();
    for source in sources {
        if !counts.iter().any(|d| d.source == source.name && d.sink.is_none()) {
            samples.push((
                vec![("source", Cow::Borrowed(source.name)), ("origin", Cow::Borrowed("source"))],
                Value::Count(0),
            ));
        }
    }
    samples
}

/// What each sink's worker is doing, and what its sends cost: bytes, durations, HEC ack waits.
fn expose_sink_sends(out: &mut Exposition, sinks: &[SinkRow<'_>]) {
    out.family(
        "auditrelay_sink_state",
        Kind::Gauge,
        "What the sink's worker is doing, 1 for its current state and 0 for the others: \
         \"starting\", \"idle\" (delivered everything), \"sending\", \"backing_off\" (sends failing \
         since the last delivery for a reason that mends by itself: resending with back-off), \
         \"failing\" (the last failure needs an operator: credentials, certificates, redirects) or \"stopped\".",
        sinks
            .iter()
            .flat_map(|s| {
                SinkState::ALL.map(|state| {
                    (s.labels_and([("state", state.label().to_owned())]), Value::Count(u64::from(state == s.state)))
                })
            })
            .collect(),
    );
    out.family(
        "auditrelay_sink_sent_bytes_total",
        Kind::Counter,
        "Bytes of the events in every send attempt that ended, accepted or failed (resends count \
         again), as sent with their transmit_time; the protocol's framing, envelope and compression are \
         not counted.",
        sinks.iter().map(|s| (s.labels(), Value::Count(s.sent_bytes))).collect(),
    );
    out.histogram(
        "auditrelay_sink_send_duration_seconds",
        "Send attempts (one request of the delivery loop: a batch or a part of it), from handing it to \
         the protocol to its outcome, whatever it was; a HEC send includes its indexer-ack wait.",
        sinks.iter().map(|s| (s.labels(), s.send_seconds.clone())).collect(),
    );
    out.histogram(
        "auditrelay_sink_hec_ack_wait_seconds",
        "HEC sinks: from the collector accepting a request to its indexer acknowledgement seen \
         (indexer_ack = true; waits that ran out at ack_timeout are not in it: the send failed).",
        sinks.iter().filter(|s| s.kind == "hec").map(|s| (s.labels(), s.ack_wait_seconds.clone())).collect(),
    );
}

/// The process's resources, as the Prometheus client libraries name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessView {
    /// User plus system CPU time.
    cpu_ms: i64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    /// The soft limit on open files; `None` when unlimited.
    max_fds: Option<u64>,
    start_ms: i64,
}

fn expose_process(out: &mut Exposition, p: &ProcessView) {
    let one = |value: Value| vec![(Vec::new(), value)];
    out.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
        one(Value::Millis(p.cpu_ms)),
    );
    out.family(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory size in bytes.",
        one(Value::Count(p.resident_bytes)),
    );
    out.family(
        "process_virtual_memory_bytes",
        Kind::Gauge,
        "Virtual memory size in bytes.",
        one(Value::Count(p.virtual_bytes)),
    );
    out.family("process_open_fds", Kind::Gauge, "Number of open file descriptors.", one(Value::Count(p.open_fds)));
    if let Some(max) = p.max_fds {
        out.family("process_max_fds", Kind::Gauge, "Maximum number of open file descriptors.", one(Value::Count(max)));
    }
    out.family(
        "process_start_time_seconds",
        Kind::Gauge,
        "Start time of the process since unix epoch in seconds.",
        one(Value::Millis(p.start_ms)),
    );
}

/// When the first [`Telemetry`] was made (the agent's start, to the millisecond or so): the
/// process start time where `/proc/stat` (boot time) cannot be read, as under the unit's
/// `ProcSubset=pid`, which shows `/proc/self` only.
static PROCESS_STARTED_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

/// Reads `/proc/self` (`stat`: CPU times and start, `statm`: memory, `fd`, `limits`) and
/// `/proc/stat` (boot time, else [`PROCESS_STARTED_MS`]); `None`, and the families left out, if
/// a read of `/proc/self` fails. Clock ticks
/// and the page size come from the kernel's auxiliary vector (`rustix::param`), not assumed.
#[cfg(target_os = "linux")]
fn read_process() -> Option<ProcessView> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let to_ms = |t: u64| i64::try_from(t.saturating_mul(1000) / ticks).unwrap_or(i64::MAX);
    // proc(5): utime (14), stime (15) and starttime (22, since boot), in clock ticks.
    let cpu_ms = to_ms(field(14)?.saturating_add(field(15)?));
    let boot_s: Option<i64> = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok()));
    let start_ms = match boot_s {
        Some(boot_s) => boot_s.saturating_mul(1000).saturating_add(to_ms(field(22)?)),
        None => *PROCESS_STARTED_MS.get()?,
    };
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = statm.split_whitespace().map(|v| v.parse::<u64>().ok());
    let page = rustix::param::page_size() as u64;
    let virtual_bytes = pages.next()??.saturating_mul(page);
    let resident_bytes = pages.next()??.saturating_mul(page);
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    // "Max open files            1024                 524288               files"
    let soft = limits.lines().find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next())?;
    let max_fds = soft.parse().ok();
    Some(ProcessView { cpu_ms, resident_bytes, virtual_bytes, open_fds, max_fds, start_ms })
}

/// Not Linux: no `/proc`, the `process_*` families are left out.
#[cfg(not(target_os = "linux"))]
fn read_process() -> Option<ProcessView> {
    None
}

/// Every state, for `auditrelay_source_state`; `state_name`'s match is the exhaustive check.
const ALL_STATES: [SourceState; 6] = [
    SourceState::Starting,
    SourceState::Fetching,
    SourceState::Paused,
    SourceState::QueueFull,
    SourceState::Idle,
    SourceState::Stopped,
];

fn state_name(state: SourceState) -> &'static str {
    match state {
        SourceState::Starting => "starting",
        SourceState::Fetching => "fetching",
        SourceState::Paused => "paused",
        SourceState::QueueFull => "queue_full",
        SourceState::Idle => "idle",
        SourceState::Stopped => "stopped",
    }
}

/// Late records, transient refusals, clock steps and stored pauses (issue 15 points 5 and 6):
/// what tells an operator to raise `overlap` or to fix a host's clock.
fn expose_lateness_and_clocks(out: &mut Exposition, sources: &[SourceRow<'_>]) {
    type SourceCounter = (&'static str, &'static str, fn(&SourceStatsSnapshot) -> u64);
    let counters: [SourceCounter; 7] = [
        (
            "auditrelay_source_late_records_total",
            "Records stored only thanks to the overlap: dated before the checkpoint their window started from.",
            |s| s.late_records,
        ),
        (
            "auditrelay_source_auth_retries_total",
            "401/403 answers to a credential that has worked, asked again before the refusal is taken as final.",
            |s| s.auth_retries,
        ),
        (
            "auditrelay_source_token_refreshes_total",
            "OAuth2 access tokens the vendor refused (401), dropped and fetched again at once (vendor definitions).",
            |s| s.token_refreshes,
        ),
        (
            "auditrelay_source_token_failures_total",
            "Requests not sent because the OAuth2 token endpoint could not be reached or gave no token (retried).",
            |s| s.token_failures,
        ),
        (
            "auditrelay_source_clock_skew_warnings_total",
            "Times the vendor's clock (its answers' Date) was found more than a minute from ours.",
            |s| s.clock_skew_warnings,
        ),
        (
            "auditrelay_source_checkpoints_clamped_total",
            "Checkpoints kept at the vendor's clock because the window ended in its future (our clock ran ahead).",
            |s| s.checkpoints_clamped,
        ),
        (
            "auditrelay_source_pauses_restored_total",
            "Rate-limit pauses found stored at start (a restart or reload inside one) and honoured.",
            |s| s.pauses_restored,
        ),
    ];
    for (name, help, count) in counters {
        let samples = sources.iter().map(|s| (s.labels(), Value::Count(count(&s.stats)))).collect();
        out.family(name, Kind::Counter, help, samples);
    }
    out.family(
        "auditrelay_source_max_lateness_seconds",
        Kind::Gauge,
        "The largest lateness of a record found only thanks to the overlap (checkpoint minus its event \
         time); close to the configured overlap means records later still are being missed: raise it.",
        sources
            .iter()
            .map(|s| (s.labels(), Value::Millis(i64::try_from(s.stats.max_lateness_ms).unwrap_or(i64::MAX))))
            .collect(),
    );
    out.family(
        "auditrelay_source_vendor_clock_offset_seconds",
        Kind::Gauge,
        "The vendor's clock (its last answer's Date, whole seconds) minus ours; 0 before the first answer.",
        sources.iter().map(|s| (s.labels(), Value::Millis(s.vendor_clock_offset_ms))).collect(),
    );
}

/// One source's values, read once per scrape so every family shows the same moment.
struct SourceRow<'a> {
    name: &'a str,
    vendor: &'static str,
    stats: SourceStatsSnapshot,
    statuses: Vec<(u16, u64)>,
    state: SourceState,
    last_success_ms: i64,
    checkpoint_ms: i64,
    vendor_clock_offset_ms: i64,
    request_seconds: HistogramSnapshot,
}

impl<'a> SourceRow<'a> {
    fn read(probe: &'a SourceProbe) -> SourceRow<'a> {
        SourceRow {
            name: &probe.name,
            vendor: probe.vendor,
            stats: probe.stats.snapshot(),
            statuses: probe.stats.statuses(),
            state: *probe.state.borrow(),
            last_success_ms: probe.stats.last_success_ms.load(Ordering::Relaxed),
            checkpoint_ms: probe.stats.checkpoint_ms.load(Ordering::Relaxed),
            vendor_clock_offset_ms: probe.stats.vendor_clock_offset_ms.load(Ordering::Relaxed),
            request_seconds: probe.stats.request_seconds.snapshot(),
        }
    }

    fn labels(&self) -> Labels<'a> {
        labels([("source", self.name), ("vendor", self.vendor)])
    }

    fn labels_and<const N: usize>(&self, more: [(&'static str, String); N]) -> Labels<'a> {
        let mut labels = self.labels();
        labels.extend(more.map(|(k, v)| (k, Cow::Owned(v))));
        labels
    }
}

struct SinkRow<'a> {
    name: &'a str,
    kind: &'static str,
    stats: SinkStatsSnapshot,
    backlog: Option<u64>,
    /// As [`QueueView::oldest`].
    oldest: Option<Option<i64>>,
    state: SinkState,
    sent_bytes: u64,
    send_seconds: HistogramSnapshot,
    ack_wait_seconds: HistogramSnapshot,
}

impl<'a> SinkRow<'a> {
    fn read(probe: &'a SinkProbe, backlog: Option<u64>, oldest: Option<Option<i64>>) -> SinkRow<'a> {
        let stats = &probe.stats;
        SinkRow {
            name: &probe.name,
            kind: probe.kind,
            stats: stats.snapshot(),
            backlog,
            oldest,
            state: stats.state(),
            sent_bytes: stats.sent_bytes.load(Ordering::Relaxed),
            send_seconds: stats.send_seconds.snapshot(),
            ack_wait_seconds: stats.ack_wait_seconds.snapshot(),
        }
    }

    fn labels(&self) -> Labels<'a> {
        labels([("sink", self.name), ("type", self.kind)])
    }

    fn labels_and<const N: usize>(&self, more: [(&'static str, String); N]) -> Labels<'a> {
        let mut labels = self.labels();
        labels.extend(more.map(|(k, v)| (k, Cow::Owned(v))));
        labels
    }
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;
type Sample<'a> = (Labels<'a>, Value);

fn labels<'a, const N: usize>(pairs: [(&'static str, &'a str); N]) -> Labels<'a> {
    pairs.into_iter().map(|(k, v)| (k, Cow::Borrowed(v))).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A histogram's `le` label: a bound in ms as seconds, without trailing zeros ("0.005", "2.5", "60").
fn le_label(ms: u64) -> String {
    match ms % 1000 {
        0 => (ms / 1000).to_string(),
        frac => format!("{}.{:03}", ms / 1000, frac).trim_end_matches('0').to_owned(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    /// Milliseconds, written as seconds with three decimals: exact, no float rounding.
    Millis(i64),
    /// Microseconds, written as seconds with six decimals (a histogram's `_sum`).
    Micros(u64),
}

/// The text being built. Each family is written whole by one [`Exposition::family`] call, so
/// its HELP and TYPE lines appear once and its samples stay together, as the format requires.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    /// Writes one family; a family without samples is left out entirely.
    fn family(&mut self, name: &str, kind: Kind, help: &str, samples: Vec<Sample<'_>>) {
        if samples.is_empty() {
            return;
        }
        self.header(
            name,
            match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            },
            help,
        );
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    /// Writes one histogram family: per label set, its cumulative `_bucket`s (`le`, then
    /// `+Inf`), `_sum` and `_count`; left out without label sets.
    fn histogram(&mut self, name: &str, help: &str, rows: Vec<(Labels<'_>, HistogramSnapshot)>) {
        if rows.is_empty() {
            return;
        }
        self.header(name, "histogram", help);
        let (bucket, sum, count) = (format!("{name}_bucket"), format!("{name}_sum"), format!("{name}_count"));
        for (labels, h) in rows {
            let with_le = |le: String| {
                let mut l = labels.clone();
                l.push(("le", Cow::Owned(le)));
                l
            };
            for (bound_ms, n) in h.cumulative() {
                self.sample(&bucket, &with_le(le_label(bound_ms)), Value::Count(n));
            }
            self.sample(&bucket, &with_le("+Inf".to_owned()), Value::Count(h.count()));
            self.sample(&sum, &labels, Value::Micros(h.sum_us));
            self.sample(&count, &labels, Value::Count(h.count()));
        }
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let t = &mut self.text;
        t.push_str("# HELP ");
        t.push_str(name);
        t.push(' ');
        escape_into(t, help, false);
        t.push_str("\n# TYPE ");
        t.push_str(name);
        t.push(' ');
        t.push_str(kind);
        t.push('\n');
    }

    fn sample(&mut self, name: &str, labels: &Labels<'_>, value: Value) {
        let t = &mut self.text;
        t.push_str(name);
        if !labels.is_empty() {
            t.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    t.push(',');
                }
                t.push_str(key);
                t.push_str("=\"");
                escape_into(t, value, true);
                t.push('"');
            }
            t.push('}');
        }
        t.push(' ');
        match value {
            Value::Count(n) => t.push_str(&n.to_string()),
            Value::Millis(ms) => {
                if ms < 0 {
                    t.push('-');
                }
                let ms = ms.unsigned_abs();
                t.push_str(&format!("{}.{:03}", ms / 1000, ms % 1000));
            }
            Value::Micros(us) => t.push_str(&format!("{}.{:06}", us / 1_000_000, us % 1_000_000)),
        }
        t.push('\n');
    }
}

/// The text format's escaping: backslash and line feed everywhere, the double quote in label
/// values only (a HELP text keeps its quotes).
fn escape_into(out: &mut String, s: &str, label_value: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Elasticsearch sinks' own counters: bulk items resent alone (429 / 5xx), items answered 409
/// (already there: a resend, counted delivered), requests handed to another node.
fn expose_elasticsearch(out: &mut Exposition, sinks: &[SinkRow<'_>]) {
    let es: Vec<&SinkRow<'_>> = sinks.iter().filter(|s| s.kind == "elasticsearch").collect();
    out.family(
        "auditrelay_sink_elasticsearch_items_total",
        Kind::Counter,
        "Elasticsearch sinks: bulk items by answer: \"retried\" (429 / 5xx item, resent alone after \
         back-off) or \"conflict\" (409, the document was already indexed: a resend, delivered).",
        es.iter()
            .flat_map(|s| {
                [("retried", s.stats.es_item_retries), ("conflict", s.stats.es_conflicts)]
                    .map(|(what, n)| (s.labels_and([("outcome", what.to_owned())]), Value::Count(n)))
            })
            .collect(),
    );
    out.family(
        "auditrelay_sink_elasticsearch_failovers_total",
        Kind::Counter,
        "Elasticsearch sinks: requests handed to the next node in hosts because a node could not be reached.",
        es.iter().map(|s| (s.labels(), Value::Count(s.stats.es_failovers))).collect(),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

    use super::*;
    use crate::queue::{NewDeadLetter, NewEvent, PageWrite, QueueOptions, RefusedEvent};
    use crate::sinks::SinkStats;
    use chrono::{DateTime, Utc};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::AtomicU64;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-18T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn open_queue(dir: &std::path::Path) -> Queue {
        open_queue_for(dir, &["siem", "archive"])
    }

    fn open_queue_for(dir: &std::path::Path, sinks: &[&str]) -> Queue {
        let sinks = sinks.iter().map(|s| (*s).to_owned()).collect();
        Queue::open(dir, QueueOptions { max_bytes: 1_000_000, sinks }).unwrap()
    }

    /// Three events from `acme` (one body of 10 bytes each), one unmappable record, and `siem`
    /// past the first two with the second refused; `archive` delivered nothing yet.
    async fn fill(queue: &Queue) {
        let event = |i: u32| NewEvent { dedupe_key: format!("k{i}"), event_time_ms: 1, body: b"0123456789".to_vec() };
        let page = PageWrite {
            source: "acme".into(),
            events: (0..3).map(event).collect(),
            dead_letters: vec![NewDeadLetter { key: "bad".into(), reason: "no `id`".into(), raw: b"{}".to_vec() }],
            ..PageWrite::default()
        };
        queue.store_page(page).await.unwrap();
        let batch = queue.read_batch("siem", 2, usize::MAX).await.unwrap();
        let refused = vec![RefusedEvent { id: batch[1].id, reason: "too large".into() }];
        queue.ack_refusing("siem", batch[1].id, refused).await.unwrap();
    }

    /// A source whose counters are `scale` times known, distinct counts.
    fn source_probe(name: &str, vendor: &'static str, state: SourceState, scale: u64) -> SourceProbe {
        let stats = Arc::new(SourceStats::default());
        let counters: [(&AtomicU64, u64); 12] = [
            (&stats.requests, 12),
            (&stats.pages, 11),
            (&stats.fetched, 1000),
            (&stats.stored, 990),
            (&stats.duplicates, 7),
            (&stats.dead_lettered, 3),
            (&stats.rate_limited, 2),
            (&stats.retries, 4),
            (&stats.queue_full_waits, 5),
            (&stats.window_splits, 6),
            (&stats.bad_answers, 1),
            (&stats.retry_after_capped, 8),
        ];
        for (counter, n) in counters {
            counter.store(n * scale, Ordering::Relaxed);
        }
        let (_, state) = tokio::sync::watch::channel(state);
        SourceProbe { name: name.into(), vendor, stats, state }
    }

    /// A sink whose counters are `scale` times known, distinct counts.
    fn sink_probe(name: &str, kind: &'static str, scale: u64) -> SinkProbe {
        let stats = Arc::new(SinkStats::default());
        let counters: [(&AtomicU64, u64); 12] = [
            (&stats.events, 100),
            (&stats.batches, 10),
            (&stats.retries, 9),
            (&stats.dead_lettered, 8),
            (&stats.truncated, 7),
            (&stats.rejected, 6),
            (&stats.errors_transient, 5),
            (&stats.errors_config, 4),
            (&stats.errors_refused, 3),
            (&stats.errors_server, 2),
            (&stats.splits, 11),
            (&stats.liveness_resends, 12),
        ];
        for (counter, n) in counters {
            counter.store(n * scale, Ordering::Relaxed);
        }
        SinkProbe { name: name.into(), kind, stats }
    }

    /// Two sources (one collecting, one just started) and two sinks over a real queue holding
    /// the events of [`fill`], read at a fixed wall time; a third sink, `retired`, was removed
    /// with the 3 events it had not delivered; `archive` followed rotations of its file.
    async fn fixture(dir: &std::path::Path) -> Telemetry {
        let clock = Clock::starting_at(start());
        let queue = open_queue_for(dir, &["siem", "archive", "retired"]);
        fill(&queue).await;
        queue.close().await.unwrap();
        let queue = open_queue(dir);
        let telemetry = Telemetry::with_process(queue, clock, || Some(PROCESS));
        let acme = source_probe("acme", "aitronos", SourceState::Idle, 1);
        for ms in [200, 3_000, 90_000] {
            acme.stats.request_seconds.observe(Duration::from_millis(ms));
        }
        // Checkpoint 90.5 s ago; last page committed 2.25 s ago.
        acme.stats.checkpoint_ms.store(start().timestamp_millis() - 90_500, Ordering::Relaxed);
        acme.stats.last_success_ms.store(start().timestamp_millis() - 2_250, Ordering::Relaxed);
        let fresh = source_probe("beta.prod", "configcat", SourceState::Starting, 0);
        telemetry.set_sources(vec![acme, fresh]);
        let siem = sink_probe("siem", "hec", 1);
        siem.stats.last_delivery_ms.store(start().timestamp_millis() - 1_000, Ordering::Relaxed);
        siem.stats.set_phase(crate::sinks::SinkPhase::Sending);
        siem.stats.sent_bytes.store(4_096, Ordering::Relaxed);
        siem.stats.send_seconds.observe(Duration::from_millis(40));
        siem.stats.send_seconds.observe(Duration::from_micros(1_500_250));
        siem.stats.ack_wait_seconds.observe(Duration::from_secs(2));
        let archive = sink_probe("archive", "file", 0);
        for (why, n) in [(Reopen::Moved, 4), (Reopen::Deleted, 3), (Reopen::Truncated, 2), (Reopen::Sighup, 1)] {
            archive.stats.reopens[why.index()].store(n, Ordering::Relaxed);
        }
        telemetry.set_sinks(vec![siem, archive]);
        telemetry
    }

    /// What the fixture's `process_*` families say.
    const PROCESS: ProcessView = ProcessView {
        cpu_ms: 12_340,
        resident_bytes: 25_165_824,
        virtual_bytes: 1_073_741_824,
        open_fds: 17,
        max_fds: Some(524_288),
        start_ms: 1_773_835_100_000,
    };

    #[tokio::test(start_paused = true)]
    async fn test_render_pins_the_exposition() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        let text = telemetry.render().await;
        let version = env!("CARGO_PKG_VERSION");
        let expected = EXPECTED.replace("{version}", version);
        if text != expected {
            for (i, (got, want)) in text.lines().zip(expected.lines()).enumerate() {
                assert_eq!(got, want, "line {}", i + 1);
            }
        }
        assert_eq!(text, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn test_render_parses_with_every_family_once() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        let families = parse(&telemetry.render().await);
        let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
            let want: BTreeMap<String, String> =
                labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            families[name].samples.iter().find(|(l, _)| *l == want).map(|(_, v)| *v)
        };
        let acme = [("source", "acme"), ("vendor", "aitronos")];
        let with = |base: &[(&'static str, &'static str)], more: (&'static str, &'static str)| {
            let mut l = base.to_vec();
            l.push(more);
            l
        };
        assert_eq!(value("auditrelay_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
        assert_eq!(value("auditrelay_source_rate_limited_total", &acme), Some(2.0));
        assert_eq!(value("auditrelay_source_records_fetched_total", &acme), Some(1000.0));
        assert_eq!(value("auditrelay_source_records_stored_total", &acme), Some(990.0));
        assert_eq!(value("auditrelay_source_duplicates_total", &acme), Some(7.0));
        assert_eq!(value("auditrelay_source_dead_lettered_total", &acme), Some(3.0));
        assert_eq!(value("auditrelay_source_retries_total", &acme), Some(4.0));
        assert_eq!(value("auditrelay_source_bad_answers_total", &acme), Some(1.0));
        assert_eq!(value("auditrelay_source_queue_full_waits_total", &acme), Some(5.0));
        assert_eq!(value("auditrelay_source_retry_after_capped_total", &acme), Some(8.0));
        assert_eq!(value("auditrelay_source_lag_seconds", &acme), Some(90.5));
        let last = (start().timestamp_millis() - 2_250) as f64 / 1000.0;
        assert_eq!(value("auditrelay_source_last_success_timestamp_seconds", &acme), Some(last));
        assert_eq!(value("auditrelay_source_state", &with(&acme, ("state", "idle"))), Some(1.0));
        assert_eq!(value("auditrelay_source_state", &with(&acme, ("state", "fetching"))), Some(0.0));
        let beta = [("source", "beta.prod"), ("vendor", "configcat")];
        assert_eq!(value("auditrelay_source_state", &with(&beta, ("state", "starting"))), Some(1.0));
        // A source before its first sweep ends has no lag and no last success yet.
        assert_eq!(value("auditrelay_source_lag_seconds", &beta), None);
        assert_eq!(value("auditrelay_source_last_success_timestamp_seconds", &beta), None);
        assert_eq!(families["auditrelay_source_state"].samples.len(), 2 * ALL_STATES.len());

        let siem = [("sink", "siem"), ("type", "hec")];
        let archive = [("sink", "archive"), ("type", "file")];
        assert_eq!(value("auditrelay_sink_events_total", &siem), Some(100.0));
        assert_eq!(value("auditrelay_sink_batches_total", &siem), Some(10.0));
        assert_eq!(value("auditrelay_sink_retries_total", &siem), Some(9.0));
        assert_eq!(value("auditrelay_sink_dead_lettered_total", &siem), Some(8.0));
        assert_eq!(value("auditrelay_sink_truncated_total", &siem), Some(7.0));
        assert_eq!(value("auditrelay_sink_rejected_total", &siem), Some(6.0));
        assert_eq!(value("auditrelay_sink_errors_total", &with(&siem, ("class", "transient"))), Some(5.0));
        assert_eq!(value("auditrelay_sink_errors_total", &with(&siem, ("class", "operator"))), Some(4.0));
        assert_eq!(value("auditrelay_sink_errors_total", &with(&siem, ("class", "refused"))), Some(3.0));
        assert_eq!(value("auditrelay_sink_errors_total", &with(&siem, ("class", "server"))), Some(2.0));
        assert_eq!(value("auditrelay_sink_splits_total", &siem), Some(11.0));
        assert_eq!(value("auditrelay_sink_liveness_resends_total", &siem), Some(12.0));
        // siem acked 2 of 3 events, archive none.
        assert_eq!(value("auditrelay_sink_backlog_events", &siem), Some(1.0));
        assert_eq!(value("auditrelay_sink_backlog_events", &archive), Some(3.0));
        let delivered = (start().timestamp_millis() - 1_000) as f64 / 1000.0;
        assert_eq!(value("auditrelay_sink_last_delivery_timestamp_seconds", &siem), Some(delivered));
        assert_eq!(value("auditrelay_sink_last_delivery_timestamp_seconds", &archive), None);
        // Rotations: file sinks only, each reason.
        for (reason, n) in [("moved", 4.0), ("deleted", 3.0), ("truncated", 2.0), ("sighup", 1.0)] {
            assert_eq!(value("auditrelay_sink_reopens_total", &with(&archive, ("reason", reason))), Some(n));
        }
        assert_eq!(families["auditrelay_sink_reopens_total"].samples.len(), 4, "no series for the HEC sink");
        assert_eq!(value("auditrelay_sink_discarded_events_total", &[("sink", "retired")]), Some(3.0));
        assert_eq!(families["auditrelay_sink_discarded_events_total"].samples.len(), 1);

        assert_eq!(value("auditrelay_queue_up", &[]), Some(1.0));
        assert_eq!(value("auditrelay_queue_events", &[]), Some(3.0));
        // 30 bytes of events, 2 of the unmappable record, 10 of the refused event.
        assert_eq!(value("auditrelay_queue_bytes", &[]), Some(42.0));
        assert_eq!(value("auditrelay_queue_max_bytes", &[]), Some(1_000_000.0));
        assert_eq!(value("auditrelay_dead_letters", &[("source", "acme"), ("origin", "source")]), Some(1.0));
        assert_eq!(value("auditrelay_dead_letters", &[("source", "acme"), ("origin", "sink:siem")]), Some(1.0));
        // A configured source without dead letters has its series, at 0, from the start.
        assert_eq!(value("auditrelay_dead_letters", &[("source", "beta.prod"), ("origin", "source")]), Some(0.0));
        assert_eq!(families["auditrelay_dead_letters"].samples.len(), 3);

        // Sinks' states (one 1 per sink), bytes, latencies.
        assert_eq!(value("auditrelay_sink_state", &with(&siem, ("state", "sending"))), Some(1.0));
        assert_eq!(value("auditrelay_sink_state", &with(&archive, ("state", "starting"))), Some(1.0));
        assert_eq!(families["auditrelay_sink_state"].samples.iter().map(|s| s.1).sum::<f64>(), 2.0);
        assert_eq!(value("auditrelay_sink_sent_bytes_total", &siem), Some(4096.0));
        let sample = |family: &str, name: &str, labels: &[(&str, &str)], le: Option<&str>| {
            let mut labels = labels.to_vec();
            labels.push(("__name__", name));
            labels.extend(le.map(|le| ("le", le)));
            value(family, &labels)
        };
        let send = "auditrelay_sink_send_duration_seconds";
        assert_eq!(sample(send, &format!("{send}_count"), &siem, None), Some(2.0));
        assert_eq!(sample(send, &format!("{send}_sum"), &siem, None), Some(1.540_25));
        assert_eq!(sample(send, &format!("{send}_bucket"), &siem, Some("0.05")), Some(1.0));
        assert_eq!(sample(send, &format!("{send}_bucket"), &siem, Some("2.5")), Some(2.0));
        assert_eq!(sample(send, &format!("{send}_count"), &archive, None), Some(0.0));
        let request = "auditrelay_source_request_duration_seconds";
        assert_eq!(sample(request, &format!("{request}_bucket"), &acme, Some("60")), Some(2.0));
        assert_eq!(sample(request, &format!("{request}_bucket"), &acme, Some("+Inf")), Some(3.0));
        assert_eq!(sample(request, &format!("{request}_count"), &beta, None), Some(0.0));
        let ack = "auditrelay_sink_hec_ack_wait_seconds";
        assert_eq!(sample(ack, &format!("{ack}_bucket"), &siem, Some("1")), Some(0.0));
        assert_eq!(sample(ack, &format!("{ack}_bucket"), &siem, Some("2.5")), Some(1.0));
        assert!(families[ack].samples.iter().all(|(l, _)| l["type"] == "hec"), "HEC sinks only");
        assert_eq!(value("process_resident_memory_bytes", &[]), Some(25_165_824.0));
        assert_eq!(value("process_cpu_seconds_total", &[]), Some(12.34));

        // Every family we promise, each with HELP and TYPE (`parse` checked they came once).
        let names: BTreeSet<&str> = families.keys().map(String::as_str).collect();
        for family in &families {
            assert!(family.1.help.is_some() && family.1.kind.is_some(), "{}", family.0);
        }
        let expected: BTreeSet<&str> =
            EXPECTED.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(names, expected);
    }

    /// Issue 19: an Elasticsearch sink's own counters (items retried, 409 conflicts, failovers)
    /// are exposed for it alone, at zero from the first scrape.
    #[tokio::test(start_paused = true)]
    async fn test_elasticsearch_counters_are_exposed_for_elasticsearch_sinks_only() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_queue_for(dir.path(), &["elastic", "siem"]);
        let telemetry = Telemetry::with_process(queue, Clock::starting_at(start()), || Some(PROCESS));
        let elastic = sink_probe("elastic", "elasticsearch", 0);
        elastic.stats.es_item_retries.store(5, Ordering::Relaxed);
        elastic.stats.es_conflicts.store(3, Ordering::Relaxed);
        telemetry.set_sinks(vec![elastic, sink_probe("siem", "hec", 0)]);
        let families = parse(&telemetry.render().await);
        let samples = |name: &str| -> Vec<(BTreeMap<String, String>, f64)> {
            families.get(name).unwrap_or_else(|| panic!("{name} missing")).samples.clone()
        };
        let items = samples("auditrelay_sink_elasticsearch_items_total");
        let value = |outcome: &str| {
            items.iter().find(|(l, _)| l.get("outcome").map(String::as_str) == Some(outcome)).map(|(_, v)| *v)
        };
        assert_eq!((value("retried"), value("conflict")), (Some(5.0), Some(3.0)), "{items:?}");
        assert!(items.iter().all(|(l, _)| l["sink"] == "elastic"), "{items:?}");
        let failovers = samples("auditrelay_sink_elasticsearch_failovers_total");
        assert_eq!(failovers.len(), 1);
        assert_eq!(failovers[0].1, 0.0);
    }

    /// Issue 18 point 5: before any source ran or any sink sent, every family of a configured
    /// source or sink is there at zero (histograms with empty buckets and `_count 0`), so alerts
    /// and `rate()` have a series from the first scrape.
    #[tokio::test(start_paused = true)]
    async fn test_first_scrape_has_every_family_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_queue(dir.path());
        let telemetry = Telemetry::with_process(queue, Clock::starting_at(start()), || Some(PROCESS));
        telemetry.set_sources(vec![source_probe("acme", "aitronos", SourceState::Starting, 0)]);
        telemetry.set_sinks(vec![sink_probe("siem", "hec", 0), sink_probe("archive", "file", 0)]);
        let families = parse(&telemetry.render().await);
        let zero_families = [
            "auditrelay_source_requests_total",
            "auditrelay_source_request_duration_seconds",
            "auditrelay_sink_send_duration_seconds",
            "auditrelay_sink_hec_ack_wait_seconds",
            "auditrelay_sink_sent_bytes_total",
            "auditrelay_sink_oldest_event_age_seconds",
            "auditrelay_sink_events_total",
            "auditrelay_source_records_stored_total",
            "auditrelay_dead_letters",
        ];
        for name in zero_families {
            let family = families.get(name).unwrap_or_else(|| panic!("{name} missing from the first scrape"));
            assert!(family.samples.iter().all(|(_, v)| *v == 0.0), "{name}: {:?}", family.samples);
        }
        let series = |name: &str| families[name].samples.len();
        // 13 bounds + Inf + sum + count, per label set.
        assert_eq!(series("auditrelay_source_request_duration_seconds"), 16);
        assert_eq!(series("auditrelay_sink_send_duration_seconds"), 2 * 16);
        assert_eq!(series("auditrelay_sink_hec_ack_wait_seconds"), 11 + 3);
        assert_eq!(series("auditrelay_sink_oldest_event_age_seconds"), 2);
        let starting: Vec<&str> = families["auditrelay_sink_state"]
            .samples
            .iter()
            .filter(|(_, v)| *v == 1.0)
            .map(|(l, _)| l["state"].as_str())
            .collect();
        assert_eq!(starting, ["starting", "starting"]);
        for name in ["process_cpu_seconds_total", "process_start_time_seconds", "process_max_fds"] {
            assert!(families.contains_key(name), "{name}");
        }
    }

    /// The oldest undelivered event per sink: by the time it was stored, 0 once all delivered.
    #[tokio::test(start_paused = true)]
    async fn test_oldest_event_age_is_per_sink_and_zero_when_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let queue = open_queue(dir.path());
        fill(&queue).await;
        // `siem` delivered 2 of 3: its oldest is the third; `archive` none: the first.
        let all = queue.read_batch("archive", 10, usize::MAX).await.unwrap();
        assert_eq!(queue.oldest_queued_ms("siem").await.unwrap(), Some(all[2].collected_ms));
        assert_eq!(queue.oldest_queued_ms("archive").await.unwrap(), Some(all[0].collected_ms));
        queue.ack_refusing("archive", all[2].id, Vec::new()).await.unwrap();
        assert_eq!(queue.oldest_queued_ms("archive").await.unwrap(), None);

        let view = QueueView { up: true, oldest: vec![Some(Some(55_000)), Some(None), None], ..QueueView::default() };
        let sinks = [sink_probe("siem", "hec", 0), sink_probe("archive", "file", 0), sink_probe("gone", "file", 0)];
        let text = expose(&[], &sinks, &view, &ReloadView { successful: true, at_ms: 0 }, 60_500, None);
        let ages = &parse(&text)["auditrelay_sink_oldest_event_age_seconds"].samples;
        let ages: Vec<(&str, f64)> = ages.iter().map(|(l, v)| (l["sink"].as_str(), *v)).collect();
        assert_eq!(ages, [("siem", 5.5), ("archive", 0.0)], "a sink the queue could not answer for is left out");
    }

    /// `process_*` read from this test process's `/proc/self`: plausible, never a panic.
    #[cfg(target_os = "linux")]
    #[test]
    fn test_process_metrics_read_proc_self() {
        let p = read_process().expect("/proc/self is readable on Linux");
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes, "{p:?}");
        assert!(p.open_fds >= 3, "stdin, stdout, stderr at least: {p:?}");
        assert!(p.max_fds.is_none_or(|max| max >= p.open_fds), "{p:?}");
        // Started after the boot and before now; the clock ticks were read, not assumed.
        let now_ms = chrono::Utc::now().timestamp_millis();
        assert!(p.start_ms > 1_500_000_000_000 && p.start_ms <= now_ms + 1_000, "{p:?}");
        assert!(p.cpu_ms >= 0);
    }

    #[tokio::test(start_paused = true)]
    async fn test_a_refused_reload_says_0_and_when_a_good_one_1() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        let reload = |text: &str| {
            let families = parse(text);
            let value = |name: &str| families[name].samples[0].1;
            (
                value("auditrelay_config_last_reload_successful"),
                value("auditrelay_config_last_reload_timestamp_seconds"),
            )
        };
        let at_start = start().timestamp() as f64;
        assert_eq!(reload(&telemetry.render().await), (1.0, at_start));
        tokio::time::advance(Duration::from_secs(10)).await;
        telemetry.reloaded(false);
        assert_eq!(reload(&telemetry.render().await), (0.0, at_start + 10.0));
        tokio::time::advance(Duration::from_secs(5)).await;
        telemetry.reloaded(true);
        assert_eq!(reload(&telemetry.render().await), (1.0, at_start + 15.0));
    }

    #[tokio::test(start_paused = true)]
    async fn test_closed_queue_renders_the_rest_and_says_queue_down() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        telemetry.shared.queue.clone().close().await.unwrap();
        let text = telemetry.render().await;
        let families = parse(&text);
        assert_eq!(families["auditrelay_queue_up"].samples, vec![(BTreeMap::new(), 0.0)]);
        for absent in [
            "auditrelay_queue_events",
            "auditrelay_queue_bytes",
            "auditrelay_sink_backlog_events",
            "auditrelay_dead_letters",
        ] {
            assert!(!families.contains_key(absent), "{absent} without a queue");
        }
        assert_eq!(families["auditrelay_source_records_stored_total"].samples.len(), 2);
        assert_eq!(families["auditrelay_sink_events_total"].samples.len(), 2);
        let err = telemetry.health().await.unwrap_err();
        assert_eq!(err, "queue: the queue is closed");
    }

    #[tokio::test(start_paused = true)]
    async fn test_a_sink_unknown_to_the_queue_is_left_out_not_a_queue_failure() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        telemetry.set_sinks(vec![sink_probe("gone", "syslog", 1), sink_probe("archive", "file", 0)]);
        let families = parse(&telemetry.render().await);
        assert_eq!(families["auditrelay_queue_up"].samples[0].1, 1.0);
        let backlogs = &families["auditrelay_sink_backlog_events"].samples;
        assert_eq!(backlogs.len(), 1);
        assert_eq!(backlogs[0].0["sink"], "archive");
        assert_eq!(families["auditrelay_sink_events_total"].samples.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn test_set_sources_replaces_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        telemetry.set_sources(vec![source_probe("gamma", "datafold", SourceState::Fetching, 1)]);
        telemetry.set_sinks(Vec::new());
        let families = parse(&telemetry.render().await);
        let sources: BTreeSet<&str> =
            families["auditrelay_source_pages_total"].samples.iter().map(|(l, _)| l["source"].as_str()).collect();
        assert_eq!(sources, BTreeSet::from(["gamma"]));
        // No sink, no sink family, but what removed sinks left behind: they are gone already.
        let sink_families: Vec<&String> = families.keys().filter(|name| name.starts_with("auditrelay_sink_")).collect();
        assert_eq!(sink_families, ["auditrelay_sink_discarded_events_total"]);
    }

    #[test]
    fn test_label_values_and_help_are_escaped() {
        let stats = Arc::new(SinkStats::default());
        let weird = SinkProbe { name: "a\\b\"c\nd".into(), kind: "file", stats };
        let view = QueueView { up: true, ..QueueView::default() };
        let text = expose(&[], &[weird], &view, &ReloadView { successful: true, at_ms: 0 }, 0, None);
        assert!(text.contains("auditrelay_sink_events_total{sink=\"a\\\\b\\\"c\\nd\",type=\"file\"} 0\n"), "{text}");
        let families = parse(&text);
        assert_eq!(families["auditrelay_sink_events_total"].samples[0].0["sink"], "a\\b\"c\nd");

        let mut help = String::new();
        escape_into(&mut help, "say \"0\" \\ twice\nthen", false);
        assert_eq!(help, "say \"0\" \\\\ twice\\nthen");
    }

    #[test]
    fn test_millis_are_written_as_exact_seconds() {
        let mut out = Exposition::default();
        let samples = [0, 7, 1_500, -1_500, 1_773_835_197_750].map(|ms| (labels([("ms", "x")]), Value::Millis(ms)));
        out.family("t_seconds", Kind::Gauge, "h", samples.to_vec());
        let values: Vec<&str> = out.text.lines().skip(2).map(|l| l.rsplit_once(' ').unwrap().1).collect();
        assert_eq!(values, ["0.000", "0.007", "1.500", "-1.500", "1773835197.750"]);
    }

    /// The server over a real socket: routes, status codes, bodies, content type, shutdown.
    #[tokio::test]
    async fn test_serve_answers_metrics_health_and_ready_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let telemetry = fixture(dir.path()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(telemetry.clone().serve(listener, shutdown.clone()));
        let http = reqwest::Client::new();
        let get = |path: &str| {
            let request = http.get(format!("{base}{path}"));
            async move {
                let answer = request.send().await.unwrap();
                let status = answer.status().as_u16();
                let content_type =
                    answer.headers().get(reqwest::header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
                (status, content_type, answer.text().await.unwrap())
            }
        };

        let (status, content_type, body) = get("/ready").await;
        assert_eq!((status, body.as_str()), (503, r#"{"status":"not_ready","degraded":[]}"#));
        assert_eq!(content_type.as_deref(), Some("application/json"));
        telemetry.set_ready(true);
        let (status, _, body) = get("/ready").await;
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ready","degraded":[]}"#));
        // A sink refused by its receiver: degraded, which and why; /health stays 200.
        let sinks = Arc::clone(&telemetry.shared.sinks.lock().unwrap());
        sinks[0].stats.trouble.failed(1_000, "401 Unauthorized: invalid token".into(), true);
        sinks[0].stats.trouble.failed(3_000, "401 Unauthorized: invalid token (again)".into(), true);
        let (status, _, body) = get("/ready").await;
        assert_eq!(status, 503);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "degraded", "degraded": [{
                "kind": "sink", "name": "siem", "failures": 2, "since_ms": 1000,
                "since": "1970-01-01T00:00:01.000Z", "error": "401 Unauthorized: invalid token (again)",
                "operator": true,
            }]})
        );
        assert_eq!(get("/health").await.0, 200, "degraded, alive");
        assert_eq!(sinks[0].stats.trouble.succeeded(4_500), Some((2, Duration::from_millis(3_500))));
        assert_eq!(get("/ready").await.0, 200);
        telemetry.set_ready(false);
        assert_eq!(get("/ready").await.0, 503);

        let (status, _, body) = get("/health").await;
        assert_eq!((status, body.as_str()), (200, "ok"));

        let (status, content_type, body) = get("/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE));
        assert_eq!(parse(&body)["auditrelay_queue_events"].samples[0].1, 3.0);

        assert_eq!(get("/nothing").await.0, 404);
        let post = http.post(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(post.status().as_u16(), 405);

        telemetry.shared.queue.clone().close().await.unwrap();
        let (status, _, body) = get("/health").await;
        assert_eq!((status, body.as_str()), (503, "queue: the queue is closed"));

        shutdown.cancel();
        server.await.unwrap();
        assert!(http.get(format!("{base}/health")).send().await.is_err(), "still listening after shutdown");
    }

    /// What [`fixture`] renders (`{version}`: the crate's). `promtool check metrics` accepts it.
    const EXPECTED: &str = r##"# HELP auditrelay_build_info The running auditrelay's version (the value is always 1).
# TYPE auditrelay_build_info gauge
auditrelay_build_info{version="{version}"} 1
# HELP auditrelay_config_last_reload_successful 1 if the last configuration reload (SIGHUP) was applied, 0 if it was refused (the running configuration stays; the log says why); 1 at start.
# TYPE auditrelay_config_last_reload_successful gauge
auditrelay_config_last_reload_successful 1
# HELP auditrelay_config_last_reload_timestamp_seconds When the last configuration reload was tried, applied or refused (Unix time); the start time before any reload.
# TYPE auditrelay_config_last_reload_timestamp_seconds gauge
auditrelay_config_last_reload_timestamp_seconds 1773835200.000
# HELP auditrelay_source_requests_total Requests to the vendor's API by the HTTP status of the answer; status "0" counts requests that got no answer (connection failure, timeout).
# TYPE auditrelay_source_requests_total counter
auditrelay_source_requests_total{source="acme",vendor="aitronos",status="0"} 0
auditrelay_source_requests_total{source="beta.prod",vendor="configcat",status="0"} 0
# HELP auditrelay_source_rate_limited_total Answers HTTP 429: the source paused, then asked the same page again.
# TYPE auditrelay_source_rate_limited_total counter
auditrelay_source_rate_limited_total{source="acme",vendor="aitronos"} 2
auditrelay_source_rate_limited_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_pages_total Pages (or whole-window answers) committed to the queue.
# TYPE auditrelay_source_pages_total counter
auditrelay_source_pages_total{source="acme",vendor="aitronos"} 11
auditrelay_source_pages_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_records_fetched_total Records read from the vendor's answers.
# TYPE auditrelay_source_records_fetched_total counter
auditrelay_source_records_fetched_total{source="acme",vendor="aitronos"} 1000
auditrelay_source_records_fetched_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_records_stored_total Records stored in the queue as new events.
# TYPE auditrelay_source_records_stored_total counter
auditrelay_source_records_stored_total{source="acme",vendor="aitronos"} 990
auditrelay_source_records_stored_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_duplicates_total Records already stored before (dedupe hits), as expected where windows overlap.
# TYPE auditrelay_source_duplicates_total counter
auditrelay_source_duplicates_total{source="acme",vendor="aitronos"} 7
auditrelay_source_duplicates_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_dead_lettered_total Records that could not be mapped, kept in the dead-letter table.
# TYPE auditrelay_source_dead_lettered_total counter
auditrelay_source_dead_lettered_total{source="acme",vendor="aitronos"} 3
auditrelay_source_dead_lettered_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_retries_total Requests repeated after a 429, a vendor error, a failed connection or an unreadable answer.
# TYPE auditrelay_source_retries_total counter
auditrelay_source_retries_total{source="acme",vendor="aitronos"} 4
auditrelay_source_retries_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_bad_answers_total Answers that could not be read: malformed pages, broken or oversized bodies, cut streams.
# TYPE auditrelay_source_bad_answers_total counter
auditrelay_source_bad_answers_total{source="acme",vendor="aitronos"} 1
auditrelay_source_bad_answers_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_queue_full_waits_total Times the source stopped fetching because the queue was at queue.max_bytes.
# TYPE auditrelay_source_queue_full_waits_total counter
auditrelay_source_queue_full_waits_total{source="acme",vendor="aitronos"} 5
auditrelay_source_queue_full_waits_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_window_splits_total Windows halved because the vendor's answer exceeded its record or byte cap.
# TYPE auditrelay_source_window_splits_total counter
auditrelay_source_window_splits_total{source="acme",vendor="aitronos"} 6
auditrelay_source_window_splits_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_retry_after_capped_total Waits the vendor asked for (Retry-After, rate-limit reset) longer than max_retry_after, cut to it.
# TYPE auditrelay_source_retry_after_capped_total counter
auditrelay_source_retry_after_capped_total{source="acme",vendor="aitronos"} 8
auditrelay_source_retry_after_capped_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_overlap_pieces_total Pieces of an overlap asked again on their own because the whole answer was too large (the overlap is still asked whole, for late records).
# TYPE auditrelay_source_overlap_pieces_total counter
auditrelay_source_overlap_pieces_total{source="acme",vendor="aitronos"} 0
auditrelay_source_overlap_pieces_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_oversized_taken_total Answers over the vendor's caps taken whole because their window could not be split further.
# TYPE auditrelay_source_oversized_taken_total counter
auditrelay_source_oversized_taken_total{source="acme",vendor="aitronos"} 0
auditrelay_source_oversized_taken_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_repeated_pages_total Sweeps ended because the vendor sent the same page twice while saying there were more.
# TYPE auditrelay_source_repeated_pages_total counter
auditrelay_source_repeated_pages_total{source="acme",vendor="aitronos"} 0
auditrelay_source_repeated_pages_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_redirects_refused_total Redirects not followed: to another origin (credentials never leave theirs) or past the limit.
# TYPE auditrelay_source_redirects_refused_total counter
auditrelay_source_redirects_refused_total{source="acme",vendor="aitronos"} 0
auditrelay_source_redirects_refused_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_late_records_total Records stored only thanks to the overlap: dated before the checkpoint their window started from.
# TYPE auditrelay_source_late_records_total counter
auditrelay_source_late_records_total{source="acme",vendor="aitronos"} 0
auditrelay_source_late_records_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_auth_retries_total 401/403 answers to a credential that has worked, asked again before the refusal is taken as final.
# TYPE auditrelay_source_auth_retries_total counter
auditrelay_source_auth_retries_total{source="acme",vendor="aitronos"} 0
auditrelay_source_auth_retries_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_token_refreshes_total OAuth2 access tokens the vendor refused (401), dropped and fetched again at once (vendor definitions).
# TYPE auditrelay_source_token_refreshes_total counter
auditrelay_source_token_refreshes_total{source="acme",vendor="aitronos"} 0
auditrelay_source_token_refreshes_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_token_failures_total Requests not sent because the OAuth2 token endpoint could not be reached or gave no token (retried).
# TYPE auditrelay_source_token_failures_total counter
auditrelay_source_token_failures_total{source="acme",vendor="aitronos"} 0
auditrelay_source_token_failures_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_clock_skew_warnings_total Times the vendor's clock (its answers' Date) was found more than a minute from ours.
# TYPE auditrelay_source_clock_skew_warnings_total counter
auditrelay_source_clock_skew_warnings_total{source="acme",vendor="aitronos"} 0
auditrelay_source_clock_skew_warnings_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_checkpoints_clamped_total Checkpoints kept at the vendor's clock because the window ended in its future (our clock ran ahead).
# TYPE auditrelay_source_checkpoints_clamped_total counter
auditrelay_source_checkpoints_clamped_total{source="acme",vendor="aitronos"} 0
auditrelay_source_checkpoints_clamped_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_pauses_restored_total Rate-limit pauses found stored at start (a restart or reload inside one) and honoured.
# TYPE auditrelay_source_pauses_restored_total counter
auditrelay_source_pauses_restored_total{source="acme",vendor="aitronos"} 0
auditrelay_source_pauses_restored_total{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_source_max_lateness_seconds The largest lateness of a record found only thanks to the overlap (checkpoint minus its event time); close to the configured overlap means records later still are being missed: raise it.
# TYPE auditrelay_source_max_lateness_seconds gauge
auditrelay_source_max_lateness_seconds{source="acme",vendor="aitronos"} 0.000
auditrelay_source_max_lateness_seconds{source="beta.prod",vendor="configcat"} 0.000
# HELP auditrelay_source_vendor_clock_offset_seconds The vendor's clock (its last answer's Date, whole seconds) minus ours; 0 before the first answer.
# TYPE auditrelay_source_vendor_clock_offset_seconds gauge
auditrelay_source_vendor_clock_offset_seconds{source="acme",vendor="aitronos"} 0.000
auditrelay_source_vendor_clock_offset_seconds{source="beta.prod",vendor="configcat"} 0.000
# HELP auditrelay_source_lag_seconds Now minus the source's checkpoint: everything older is collected. At least the configured lag; absent until the first sweep ends.
# TYPE auditrelay_source_lag_seconds gauge
auditrelay_source_lag_seconds{source="acme",vendor="aitronos"} 90.500
# HELP auditrelay_source_last_success_timestamp_seconds When the source last committed a page to the queue (Unix time); absent before the first.
# TYPE auditrelay_source_last_success_timestamp_seconds gauge
auditrelay_source_last_success_timestamp_seconds{source="acme",vendor="aitronos"} 1773835197.750
# HELP auditrelay_source_state What the source is doing: 1 for its current state, 0 for the others.
# TYPE auditrelay_source_state gauge
auditrelay_source_state{source="acme",vendor="aitronos",state="starting"} 0
auditrelay_source_state{source="acme",vendor="aitronos",state="fetching"} 0
auditrelay_source_state{source="acme",vendor="aitronos",state="paused"} 0
auditrelay_source_state{source="acme",vendor="aitronos",state="queue_full"} 0
auditrelay_source_state{source="acme",vendor="aitronos",state="idle"} 1
auditrelay_source_state{source="acme",vendor="aitronos",state="stopped"} 0
auditrelay_source_state{source="beta.prod",vendor="configcat",state="starting"} 1
auditrelay_source_state{source="beta.prod",vendor="configcat",state="fetching"} 0
auditrelay_source_state{source="beta.prod",vendor="configcat",state="paused"} 0
auditrelay_source_state{source="beta.prod",vendor="configcat",state="queue_full"} 0
auditrelay_source_state{source="beta.prod",vendor="configcat",state="idle"} 0
auditrelay_source_state{source="beta.prod",vendor="configcat",state="stopped"} 0
# HELP auditrelay_source_request_duration_seconds Requests to the vendor's API, from sending one to its status and headers or its failure (the body is read after), whatever the answer; on the agent's monotonic clock.
# TYPE auditrelay_source_request_duration_seconds histogram
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.005"} 0
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.01"} 0
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.025"} 0
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.05"} 0
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.1"} 0
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.25"} 1
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="0.5"} 1
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="1"} 1
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="2.5"} 1
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="5"} 2
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="10"} 2
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="30"} 2
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="60"} 2
auditrelay_source_request_duration_seconds_bucket{source="acme",vendor="aitronos",le="+Inf"} 3
auditrelay_source_request_duration_seconds_sum{source="acme",vendor="aitronos"} 93.200000
auditrelay_source_request_duration_seconds_count{source="acme",vendor="aitronos"} 3
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.005"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.01"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.025"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.05"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.1"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.25"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="0.5"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="1"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="2.5"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="5"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="10"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="30"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="60"} 0
auditrelay_source_request_duration_seconds_bucket{source="beta.prod",vendor="configcat",le="+Inf"} 0
auditrelay_source_request_duration_seconds_sum{source="beta.prod",vendor="configcat"} 0.000000
auditrelay_source_request_duration_seconds_count{source="beta.prod",vendor="configcat"} 0
# HELP auditrelay_sink_events_total Events delivered (accepted by the receiver).
# TYPE auditrelay_sink_events_total counter
auditrelay_sink_events_total{sink="siem",type="hec"} 100
auditrelay_sink_events_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_batches_total Batches delivered.
# TYPE auditrelay_sink_batches_total counter
auditrelay_sink_batches_total{sink="siem",type="hec"} 10
auditrelay_sink_batches_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_retries_total Batches sent again after a failed send.
# TYPE auditrelay_sink_retries_total counter
auditrelay_sink_retries_total{sink="siem",type="hec"} 9
auditrelay_sink_retries_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_dead_lettered_total Events this sink can never deliver, moved to the dead-letter table.
# TYPE auditrelay_sink_dead_lettered_total counter
auditrelay_sink_dead_lettered_total{sink="siem",type="hec"} 8
auditrelay_sink_dead_lettered_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_truncated_total Events delivered truncated to the receiver's size limit.
# TYPE auditrelay_sink_truncated_total counter
auditrelay_sink_truncated_total{sink="siem",type="hec"} 7
auditrelay_sink_truncated_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_rejected_total Events the receiver reported rejected after taking them (OTLP partial success).
# TYPE auditrelay_sink_rejected_total counter
auditrelay_sink_rejected_total{sink="siem",type="hec"} 6
auditrelay_sink_rejected_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_splits_total Parts of a batch the receiver refused as a whole (to find the events at fault) or found too large, split in two.
# TYPE auditrelay_sink_splits_total counter
auditrelay_sink_splits_total{sink="siem",type="hec"} 11
auditrelay_sink_splits_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_liveness_resends_total Delivered events sent again to prove the receiver alive before dead-lettering a poison event.
# TYPE auditrelay_sink_liveness_resends_total counter
auditrelay_sink_liveness_resends_total{sink="siem",type="hec"} 12
auditrelay_sink_liveness_resends_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_errors_total Failed sends by class: "transient" (receiver unreachable or busy: resent with back-off), "operator" (configuration, credentials, certificates, redirects: an operator must act), "refused" (the request refused for its content or its size: bisected) or "server" (a server error: backed off and bisected, never dead-lettered without proof the receiver is up).
# TYPE auditrelay_sink_errors_total counter
auditrelay_sink_errors_total{sink="siem",type="hec",class="transient"} 5
auditrelay_sink_errors_total{sink="siem",type="hec",class="operator"} 4
auditrelay_sink_errors_total{sink="siem",type="hec",class="refused"} 3
auditrelay_sink_errors_total{sink="siem",type="hec",class="server"} 2
auditrelay_sink_errors_total{sink="archive",type="file",class="transient"} 0
auditrelay_sink_errors_total{sink="archive",type="file",class="operator"} 0
auditrelay_sink_errors_total{sink="archive",type="file",class="refused"} 0
auditrelay_sink_errors_total{sink="archive",type="file",class="server"} 0
# HELP auditrelay_sink_reopens_total File sinks: rotations of the file the sink noticed and followed, by reason: "moved" or "deleted" (the path no longer named its file: reopened at the path), "truncated" (copytruncate: appended at the new end, on a line boundary) or "sighup" (reopen requested).
# TYPE auditrelay_sink_reopens_total counter
auditrelay_sink_reopens_total{sink="archive",type="file",reason="moved"} 4
auditrelay_sink_reopens_total{sink="archive",type="file",reason="deleted"} 3
auditrelay_sink_reopens_total{sink="archive",type="file",reason="truncated"} 2
auditrelay_sink_reopens_total{sink="archive",type="file",reason="sighup"} 1
# HELP auditrelay_sink_discarded_events_total Events a sink removed from the configuration had not delivered, discarded for it when it was removed (at start or at a reload; a renamed sink keeps its backlog), since the agent started.
# TYPE auditrelay_sink_discarded_events_total counter
auditrelay_sink_discarded_events_total{sink="retired"} 3
# HELP auditrelay_sink_backlog_events Events queued after the sink's cursor: stored but not yet delivered by this sink.
# TYPE auditrelay_sink_backlog_events gauge
auditrelay_sink_backlog_events{sink="siem",type="hec"} 1
auditrelay_sink_backlog_events{sink="archive",type="file"} 3
# HELP auditrelay_sink_oldest_event_age_seconds Now minus when the oldest event the sink has not delivered was stored in the queue (its enqueue time, not its event time); 0 when the sink has delivered everything.
# TYPE auditrelay_sink_oldest_event_age_seconds gauge
auditrelay_sink_oldest_event_age_seconds{sink="siem",type="hec"} 0.000
auditrelay_sink_oldest_event_age_seconds{sink="archive",type="file"} 0.000
# HELP auditrelay_sink_state What the sink's worker is doing, 1 for its current state and 0 for the others: "starting", "idle" (delivered everything), "sending", "backing_off" (sends failing since the last delivery for a reason that mends by itself: resending with back-off), "failing" (the last failure needs an operator: credentials, certificates, redirects) or "stopped".
# TYPE auditrelay_sink_state gauge
auditrelay_sink_state{sink="siem",type="hec",state="starting"} 0
auditrelay_sink_state{sink="siem",type="hec",state="idle"} 0
auditrelay_sink_state{sink="siem",type="hec",state="sending"} 1
auditrelay_sink_state{sink="siem",type="hec",state="backing_off"} 0
auditrelay_sink_state{sink="siem",type="hec",state="failing"} 0
auditrelay_sink_state{sink="siem",type="hec",state="stopped"} 0
auditrelay_sink_state{sink="archive",type="file",state="starting"} 1
auditrelay_sink_state{sink="archive",type="file",state="idle"} 0
auditrelay_sink_state{sink="archive",type="file",state="sending"} 0
auditrelay_sink_state{sink="archive",type="file",state="backing_off"} 0
auditrelay_sink_state{sink="archive",type="file",state="failing"} 0
auditrelay_sink_state{sink="archive",type="file",state="stopped"} 0
# HELP auditrelay_sink_sent_bytes_total Bytes of the events in every send attempt that ended, accepted or failed (resends count again), as sent with their transmit_time; the protocol's framing, envelope and compression are not counted.
# TYPE auditrelay_sink_sent_bytes_total counter
auditrelay_sink_sent_bytes_total{sink="siem",type="hec"} 4096
auditrelay_sink_sent_bytes_total{sink="archive",type="file"} 0
# HELP auditrelay_sink_send_duration_seconds Send attempts (one request of the delivery loop: a batch or a part of it), from handing it to the protocol to its outcome, whatever it was; a HEC send includes its indexer-ack wait.
# TYPE auditrelay_sink_send_duration_seconds histogram
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.005"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.01"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.025"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.05"} 1
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.1"} 1
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.25"} 1
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="0.5"} 1
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="1"} 1
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="2.5"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="5"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="10"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="30"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="60"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="siem",type="hec",le="+Inf"} 2
auditrelay_sink_send_duration_seconds_sum{sink="siem",type="hec"} 1.540250
auditrelay_sink_send_duration_seconds_count{sink="siem",type="hec"} 2
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.005"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.01"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.025"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.05"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.1"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.25"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="0.5"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="1"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="2.5"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="5"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="10"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="30"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="60"} 0
auditrelay_sink_send_duration_seconds_bucket{sink="archive",type="file",le="+Inf"} 0
auditrelay_sink_send_duration_seconds_sum{sink="archive",type="file"} 0.000000
auditrelay_sink_send_duration_seconds_count{sink="archive",type="file"} 0
# HELP auditrelay_sink_hec_ack_wait_seconds HEC sinks: from the collector accepting a request to its indexer acknowledgement seen (indexer_ack = true; waits that ran out at ack_timeout are not in it: the send failed).
# TYPE auditrelay_sink_hec_ack_wait_seconds histogram
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="0.25"} 0
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="0.5"} 0
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="1"} 0
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="2.5"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="5"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="10"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="30"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="60"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="120"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="300"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="600"} 1
auditrelay_sink_hec_ack_wait_seconds_bucket{sink="siem",type="hec",le="+Inf"} 1
auditrelay_sink_hec_ack_wait_seconds_sum{sink="siem",type="hec"} 2.000000
auditrelay_sink_hec_ack_wait_seconds_count{sink="siem",type="hec"} 1
# HELP auditrelay_sink_last_delivery_timestamp_seconds When the sink last delivered a batch (Unix time); absent before the first.
# TYPE auditrelay_sink_last_delivery_timestamp_seconds gauge
auditrelay_sink_last_delivery_timestamp_seconds{sink="siem",type="hec"} 1773835199.000
# HELP auditrelay_queue_up 1 if the queue database answered this scrape's reads, 0 if not (queue metrics are then absent).
# TYPE auditrelay_queue_up gauge
auditrelay_queue_up 1
# HELP auditrelay_queue_events Events in the queue (not yet delivered by every sink).
# TYPE auditrelay_queue_events gauge
auditrelay_queue_events 3
# HELP auditrelay_queue_bytes Bytes of queued event bodies and dead letters, counted against queue.max_bytes.
# TYPE auditrelay_queue_bytes gauge
auditrelay_queue_bytes 42
# HELP auditrelay_queue_max_bytes The configured cap (queue.max_bytes): at it, sources stop fetching.
# TYPE auditrelay_queue_max_bytes gauge
auditrelay_queue_max_bytes 1000000
# HELP auditrelay_dead_letters Records in the dead-letter table, by source and origin: "source" (the source could not map the record) or "sink:<name>" (that sink refused the event).
# TYPE auditrelay_dead_letters gauge
auditrelay_dead_letters{source="acme",origin="source"} 1
auditrelay_dead_letters{source="acme",origin="sink:siem"} 1
auditrelay_dead_letters{source="beta.prod",origin="source"} 0
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.340
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 25165824
# HELP process_virtual_memory_bytes Virtual memory size in bytes.
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 1073741824
# HELP process_open_fds Number of open file descriptors.
# TYPE process_open_fds gauge
process_open_fds 17
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 524288
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1773835100.000
"##;

    /// One family as parsed back from the text.
    #[derive(Debug, Default)]
    struct Family {
        help: Option<String>,
        kind: Option<String>,
        /// (labels, value) per sample.
        samples: Vec<(BTreeMap<String, String>, f64)>,
    }

    /// A strict reader of the text format 0.0.4 (the subset we write: counters, gauges and
    /// histograms). It fails the test on anything malformed: a bad name, a bad escape, HELP or
    /// TYPE twice or after samples, a family split in two, a counter not named `_total`, a
    /// duplicate series, a histogram whose buckets are not cumulative or whose `+Inf` bucket is
    /// not its `_count`. A histogram's samples keep their own name in the label `__name__`.
    fn parse(text: &str) -> BTreeMap<String, Family> {
        let name_ok = |n: &str| {
            let mut chars = n.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        };
        assert!(text.ends_with('\n'), "the exposition must end with a line feed");
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        let mut finished = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut series = BTreeSet::new();
        let mut enter = |name: &str, current: &mut Option<String>| {
            if current.as_deref() != Some(name) {
                if let Some(previous) = current.take() {
                    finished.insert(previous);
                }
                assert!(!finished.contains(name), "family {name} is split in two");
                *current = Some(name.to_owned());
            }
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                enter(name, &mut current);
                let family = families.entry(name.into()).or_default();
                assert!(family.help.is_none() && family.kind.is_none() && family.samples.is_empty(), "{line}");
                assert!(!help.contains('\n') && !help.is_empty());
                family.help = Some(help.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                enter(name, &mut current);
                let family = families.entry(name.into()).or_default();
                assert!(family.kind.is_none() && family.samples.is_empty(), "{line}");
                assert!(kind == "counter" || kind == "gauge" || kind == "histogram", "{line}");
                assert_eq!(
                    name.ends_with("_total"),
                    kind == "counter",
                    "counters, and only they, end in _total: {line}"
                );
                family.kind = Some(kind.to_owned());
            } else {
                assert!(!line.starts_with('#'), "unexpected comment {line}");
                let (name, mut labels, value) = parse_sample(line);
                assert!(name_ok(&name), "{line}");
                for key in labels.keys() {
                    assert!(name_ok(key) && !key.contains(':'), "label name {key:?} in {line}");
                }
                let histogram = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                    let family = name.strip_suffix(suffix)?;
                    (families.get(family)?.kind.as_deref() == Some("histogram")).then(|| family.to_owned())
                });
                let name = match histogram {
                    Some(family) => {
                        assert_eq!(labels.contains_key("le"), name.ends_with("_bucket"), "le only on buckets: {line}");
                        labels.insert("__name__".to_owned(), name);
                        family
                    }
                    None => name,
                };
                enter(&name, &mut current);
                let family = families.entry(name).or_default();
                assert!(family.help.is_some() && family.kind.is_some(), "sample before HELP and TYPE: {line}");
                assert!(series.insert(line.rsplit_once(' ').unwrap().0.to_owned()), "series twice: {line}");
                assert!(
                    family.kind.as_deref() != Some("histogram") || labels.contains_key("__name__"),
                    "a histogram's sample without _bucket, _sum or _count: {line}"
                );
                family.samples.push((labels, value));
            }
        }
        for (name, family) in &families {
            if family.kind.as_deref() == Some("histogram") {
                check_histogram(name, &family.samples);
            }
        }
        families
    }

    /// Per label set: buckets in ascending `le`, cumulative, ending with `+Inf` equal to
    /// `_count`; one `_sum`.
    fn check_histogram(name: &str, samples: &[(BTreeMap<String, String>, f64)]) {
        /// (sample name, `le`, value) of one label set.
        type Set = Vec<(String, Option<String>, f64)>;
        let mut sets: BTreeMap<BTreeMap<String, String>, Set> = BTreeMap::new();
        for (labels, value) in samples {
            let mut set = labels.clone();
            let sample = set.remove("__name__").unwrap();
            let le = set.remove("le");
            sets.entry(set).or_default().push((sample, le, *value));
        }
        for (set, samples) in sets {
            let buckets: Vec<(f64, f64)> = samples
                .iter()
                .filter_map(|(_, le, v)| {
                    le.as_ref().map(|le| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }, *v))
                })
                .collect();
            assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{name}{set:?}: {buckets:?}");
            assert_eq!(buckets.last().map(|b| b.0), Some(f64::INFINITY), "{name}{set:?} without +Inf");
            let one = |suffix: &str| {
                let found: Vec<f64> =
                    samples.iter().filter(|(n, _, _)| *n == format!("{name}{suffix}")).map(|s| s.2).collect();
                assert_eq!(found.len(), 1, "{name}{suffix}{set:?}");
                found[0]
            };
            assert_eq!(buckets.last().map(|b| b.1), Some(one("_count")), "{name}{set:?}: +Inf is not _count");
            assert!(one("_sum") >= 0.0);
        }
    }

    /// `name{key="value",...} value`, label values unescaped.
    fn parse_sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line}"));
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                let (key, after) = inner.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().unwrap_or_else(|| panic!("unterminated label value in {line}")) {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            other => panic!("bad escape {other:?} in {line}"),
                        },
                        (_, c) => value.push(c),
                    }
                };
                assert!(labels.insert(key.to_owned(), value).is_none(), "label {key} twice in {line}");
                let tail = &after[end + 1..];
                match tail.strip_prefix(',') {
                    Some(next) => inner = next,
                    None => {
                        rest = tail.strip_prefix('}').unwrap_or_else(|| panic!("expected , or }} in {line}"));
                        break;
                    }
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line}"));
        let value = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        (line[..name_end].to_owned(), labels, value)
    }
}
