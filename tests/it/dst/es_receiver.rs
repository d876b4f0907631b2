//! The randomized Elasticsearch receiver model: `POST /_bulk` (NDJSON action/document pairs,
//! gzip or not) on 127.0.0.1, whose every answer is drawn from the run's seed. Its own small
//! axum app: it shares nothing with the `_bulk` emulator of `tests/it/es_emulator/`, so a
//! misreading of the protocol in one is not silently shared by the other.
//!
//! Ground truth, as for the HEC model (`receiver.rs`): the record keys whose document it
//! *indexed* (a per-item 201), by `(_index, _id)` as one backing index keeps them, and the keys
//! it refuses for good (poison), for which a dead letter is legitimate. What it answers, by
//! fault family (the same families as the HEC model's, drawn from a seed of their own):
//! - outages (`receiver_outages`): whole-request 503 (or a proxy's 502/504) during seeded time
//!   windows, and whole-request 429 `es_rejected_execution_exception` with `Retry-After`;
//! - slow answers (`receiver_slow`): the request is indexed first, then answered after a virtual
//!   delay, sometimes past the sink's timeout: the resend finds its `_id`s taken (409
//!   `version_conflict_engine_exception`, which is delivered), never a loss;
//! - a 2xx that is not `_bulk`'s answer (`fake_acceptance`): a proxy's 200 HTML page, nothing
//!   indexed;
//! - item refusals, always on: `_bulk` answers 200 with `errors:true` and per-item 429
//!   `es_rejected_execution_exception` or 503 `unavailable_shards_exception` for a seeded share
//!   of items (transient: resent, those items only);
//! - poison (`event_refusal`): per-item 400 `document_parsing_exception` (a dead letter with
//!   Elastic's reason); with `batch_refusal` (drawn per seed), the whole request
//!   answered 500 while it holds a poison document (the sink bisects until the poison is alone);
//!   and (`receiver_outages`) a seeded share of requests answered 500 whatever they hold (a
//!   request-wide 400 is never about a document in Elasticsearch: the sink keeps the data);
//! - 413 for a request over a seeded decoded size, if it holds more than one document (one
//!   document is never too large for this model: a dead letter for size would not be poison).
//!
//! It also checks what the contract of the sink promises, and records every breach in
//! [`Seen::violations`] (an invariant of its own in `dst.rs`): every action is `create` with
//! `_id` = the document's `ocsf.metadata.uid`, into the expected data stream or index; every
//! document has `@timestamp` equal to the OCSF `time` (RFC 3339, milliseconds, UTC), `event.id`,
//! and `data_stream.*` in data-stream mode; the request carries the API key and the NDJSON
//! content type. It never sleeps on the real clock: every delay is `tokio::time`, paused.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::receiver::is_poison;
use super::record::record_key;

/// `Authorization` the model takes: `api_key = "dst:key"` (an `id:key` value) base64-encoded.
pub const API_KEY: &str = "dst:key";
const AUTHORIZATION: &str = "ApiKey ZHN0OmtleQ==";

/// Where the sink writes: a data stream `logs-<dataset>-<namespace>` or a plain index.
#[derive(Clone, Debug)]
pub enum Target {
    /// `dataset` as configured (may hold `{vendor}` and `{class_uid}`); `None`: the default.
    DataStream {
        dataset: Option<&'static str>,
        namespace: Option<&'static str>,
    },
    Index(&'static str),
}

impl Default for Target {
    fn default() -> Target {
        Target::DataStream { dataset: None, namespace: None }
    }
}

impl Target {
    /// The sink's configuration lines for this target.
    pub fn config_lines(&self) -> String {
        match self {
            Target::DataStream { dataset, namespace } => {
                let mut out = String::new();
                if let Some(d) = dataset {
                    out += &format!("dataset = {d:?}\n");
                }
                if let Some(n) = namespace {
                    out += &format!("namespace = {n:?}\n");
                }
                out
            }
            Target::Index(index) => format!("index = {index:?}\n"),
        }
    }

    /// The dataset of an event (`None` in index mode), as the contract names it.
    fn dataset(&self, ocsf: &Value) -> Option<String> {
        let Target::DataStream { dataset, .. } = self else { return None };
        let vendor: String = ocsf["metadata"]["product"]["vendor_name"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' { c } else { '_' })
            .collect();
        let class = ocsf["class_uid"].as_u64().map(|c| c.to_string()).unwrap_or_default();
        Some(dataset.unwrap_or("auditrelay.ocsf").replace("{vendor}", &vendor).replace("{class_uid}", &class))
    }

    fn namespace(&self) -> &'static str {
        match self {
            Target::DataStream { namespace, .. } => namespace.unwrap_or("default"),
            Target::Index(_) => "",
        }
    }

    /// The `_index` an event must be written to.
    fn index_of(&self, ocsf: &Value) -> String {
        match (self, self.dataset(ocsf)) {
            (Target::Index(index), _) => (*index).to_owned(),
            (Target::DataStream { .. }, dataset) => {
                format!("logs-{}-{}", dataset.unwrap_or_default(), self.namespace())
            }
        }
    }
}

/// How the receiver behaves, decided once from the seed.
#[derive(Clone, Debug, Default)]
pub struct EsModel {
    /// The model's own seed (the run's, salted): its draws are independent of the HEC model's.
    pub seed: u64,
    pub target: Target,
    /// The sink's `gzip` (the model reads either body).
    pub gzip: bool,
    /// Virtual-time windows (offsets from the receiver's start) answered 503 (or 502/504).
    pub outages: Vec<(Duration, Duration)>,
    /// Share of requests answered 429 with a `Retry-After`.
    pub busy_rate: f64,
    /// Share of items answered 429 `es_rejected_execution_exception` inside a 200.
    pub item_busy_rate: f64,
    /// Share of items answered 503 `unavailable_shards_exception` inside a 200.
    pub item_error_rate: f64,
    /// Share of requests answered after a delay of up to `max_delay` (indexed before it).
    pub slow_rate: f64,
    pub max_delay: Duration,
    /// Share of requests answered with a proxy's 200 HTML page (nothing indexed).
    pub fake_ok_rate: f64,
    /// Per mille of records refused for good (0: none).
    pub poison_permille: u64,
    /// Poison is refused request-wide (500, a document that breaks the node) instead of per
    /// item (400 `document_parsing_exception`): drawn with `batch_refusal` (`dst.rs`: what it
    /// found).
    pub whole_batch_refusal: bool,
    /// Share of requests answered 500 whatever they hold (a node failing at random): bisected
    /// by the sink, never dead-lettered without proof.
    pub server_error_rate: f64,
    /// Decoded request bodies over this many bytes, holding more than one document, answer 413.
    pub max_body_bytes: Option<usize>,
}

impl EsModel {
    pub fn is_poison(&self, key: &str) -> bool {
        is_poison(self.seed, self.poison_permille, key)
    }
}

/// What the receiver saw, for the invariants and the trace.
#[derive(Debug, Default)]
pub struct Seen {
    /// `(_index, _id)` of every document indexed, with its record key.
    pub docs: HashMap<(String, String), String>,
    /// Record keys indexed (ground truth of invariant (a)).
    pub indexed: HashSet<String>,
    /// Poison keys the model refused.
    pub poison: HashSet<String>,
    pub requests: u64,
    pub answers: BTreeMap<String, u64>,
    /// Per-item answers, by status.
    pub items: BTreeMap<u16, u64>,
    /// The largest number of documents in one request.
    pub max_batch: usize,
    /// Breaches of the sink's contract (the first few).
    pub violations: Vec<String>,
}

impl Seen {
    fn violation(&mut self, what: String) {
        if self.violations.len() < 5 {
            self.violations.push(what);
        }
    }
}

#[derive(Clone)]
struct Shared {
    model: EsModel,
    started: tokio::time::Instant,
    seen: Arc<Mutex<Seen>>,
}

pub struct EsReceiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: tokio_util::sync::CancellationToken,
}

impl EsReceiver {
    pub async fn start(model: EsModel) -> EsReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the ES receiver model");
        let addr = listener.local_addr().expect("ES receiver address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Shared { model, started: tokio::time::Instant::now(), seen: seen.clone() };
        let app = Router::new()
            .route("/_bulk", post(bulk))
            .route(
                "/",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/json"), (header::HeaderName::from_static("x-elastic-product"), "Elasticsearch")],
                        r#"{"name":"dst","cluster_name":"dst","version":{"number":"8.15.0"},"tagline":"You Know, for Search"}"#,
                    )
                }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], r#"{"status":404}"#) })
            .with_state(shared);
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        });
        EsReceiver { addr, seen, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// A reproducible number in `[0, 1)` for request `n`, item `i` and a purpose.
fn roll(seed: u64, n: u64, i: u64, salt: u64) -> f64 {
    fastrand::Rng::with_seed(
        seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xC2B2_AE3D_27D4_EB4F) ^ salt,
    )
    .f64()
}

fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Elastic's whole-request error body.
fn request_error(status: StatusCode, kind: &str, reason: &str) -> Response {
    let error = json!({"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason});
    json_answer(status, json!({"error": error, "status": status.as_u16()}))
}

/// The item outcome of one document: its status and, for a failure, Elastic's error object.
fn item(status: u16, error: Option<(&str, String)>) -> Value {
    match error {
        None => json!({"create": {"status": status}}),
        Some((kind, reason)) => json!({"create": {"status": status, "error": {"type": kind, "reason": reason}}}),
    }
}

/// The expected `@timestamp` of an OCSF event: its `time` (epoch ms) in RFC 3339 UTC, ms.
fn timestamp_of(ocsf: &Value) -> Option<String> {
    let ms = ocsf["time"].as_i64()?;
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)?;
    Some(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// One action/document pair, as read and checked.
struct Doc {
    index: String,
    id: String,
    key: String,
}

/// Reads the NDJSON body into pairs; a breach of the contract is recorded, the pair kept if it
/// can be named.
fn read_pairs(model: &EsModel, body: &[u8], seen: &mut Seen) -> Result<Vec<Doc>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the NDJSON body does not end with a newline".into());
    }
    let mut lines = text.lines();
    let mut docs = Vec::new();
    while let Some(action) = lines.next() {
        let action: Value = serde_json::from_str(action).map_err(|e| format!("action line is not JSON: {e}"))?;
        let doc = lines.next().ok_or("an action without its document")?;
        let doc: Value = serde_json::from_str(doc).map_err(|e| format!("document line is not JSON: {e}"))?;
        let Some(meta) = action.get("create") else {
            seen.violation(format!("an action other than create: {action}"));
            return Err("only write ops with an op_type of create are allowed in data streams".into());
        };
        let ocsf = &doc["ocsf"];
        let uid = ocsf["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let (index, id) = (meta["_index"].as_str().unwrap_or_default(), meta["_id"].as_str().unwrap_or_default());
        if id != uid || uid.is_empty() {
            seen.violation(format!("_id {id:?} is not the document's ocsf.metadata.uid {uid:?}"));
        }
        let expected = model.target.index_of(ocsf);
        if index != expected {
            seen.violation(format!("_index {index:?}, expected {expected:?} (uid {uid})"));
        }
        if doc["@timestamp"].as_str() != timestamp_of(ocsf).as_deref() {
            seen.violation(format!("@timestamp {} for OCSF time {} (uid {uid})", doc["@timestamp"], ocsf["time"]));
        }
        if doc["event"]["id"].as_str() != Some(&uid) {
            seen.violation(format!("event.id {} is not metadata.uid {uid}", doc["event"]["id"]));
        }
        if let Some(dataset) = model.target.dataset(ocsf) {
            let ds = &doc["data_stream"];
            if ds["type"] != "logs" || ds["dataset"] != dataset.as_str() || ds["namespace"] != model.target.namespace()
            {
                seen.violation(format!("data_stream {ds} for {expected} (uid {uid})"));
            }
        } else if doc.get("data_stream").is_some() {
            seen.violation(format!("data_stream in index mode (uid {uid})"));
        }
        docs.push(Doc { index: index.to_owned(), id: id.to_owned(), key: record_key(ocsf) });
    }
    Ok(docs)
}

async fn bulk(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let m = &s.model;
    let n = {
        let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.requests += 1;
        seen.requests
    };
    let answer = |what: &str| {
        let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        *seen.answers.entry(what.to_owned()).or_insert(0) += 1;
    };
    let violation = |what: String| s.seen.lock().unwrap_or_else(PoisonError::into_inner).violation(what);
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(AUTHORIZATION) {
        violation(format!("Authorization header {:?}", headers.get(header::AUTHORIZATION)));
        answer("401 unauthenticated");
        return request_error(StatusCode::UNAUTHORIZED, "security_exception", "missing authentication credentials");
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with("application/x-ndjson") {
        violation(format!("Content-Type {content_type:?}"));
    }
    let at = tokio::time::Instant::now().saturating_duration_since(s.started);
    if m.outages.iter().any(|(from, to)| *from <= at && at < *to) {
        let r = roll(m.seed, n, 0, 1);
        if r < 0.2 {
            answer("502 proxy");
            return (StatusCode::BAD_GATEWAY, [(header::CONTENT_TYPE, "text/html")], "<html>Bad Gateway</html>")
                .into_response();
        }
        if r < 0.3 {
            answer("504 proxy");
            return (
                StatusCode::GATEWAY_TIMEOUT,
                [(header::CONTENT_TYPE, "text/html")],
                "<html>Gateway Timeout</html>",
            )
                .into_response();
        }
        answer("503 outage");
        return request_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "cluster_block_exception",
            "blocked by: [SERVICE_UNAVAILABLE/2/no master]",
        );
    }
    if roll(m.seed, n, 0, 2) < m.busy_rate {
        answer("429 busy");
        let secs = 1 + (roll(m.seed, n, 0, 3) * 30.0) as u64;
        let mut resp = request_error(
            StatusCode::TOO_MANY_REQUESTS,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation",
        );
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return resp;
    }
    if roll(m.seed, n, 0, 4) < m.fake_ok_rate {
        answer("200 html");
        return ([(header::CONTENT_TYPE, "text/html")], "<html>Maintenance</html>").into_response();
    }
    let gzipped = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzipped {
        let mut out = Vec::new();
        if let Err(e) = flate2::read::MultiGzDecoder::new(&body[..]).read_to_end(&mut out) {
            violation(format!("a gzip body that does not decode: {e}"));
            answer("400 bad gzip");
            return request_error(StatusCode::BAD_REQUEST, "parse_exception", "request body is not valid gzip");
        }
        out
    } else {
        body.to_vec()
    };
    let docs = {
        let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match read_pairs(m, &body, &mut seen) {
            Ok(docs) => docs,
            Err(reason) => {
                seen.violation(format!("request {n}: {reason}"));
                *seen.answers.entry("400 bad request".into()).or_insert(0) += 1;
                drop(seen);
                return request_error(StatusCode::BAD_REQUEST, "illegal_argument_exception", &reason);
            }
        }
    };
    if m.max_body_bytes.is_some_and(|max| body.len() > max) && docs.len() > 1 {
        answer("413 too large");
        return (StatusCode::PAYLOAD_TOO_LARGE, [(header::CONTENT_TYPE, "text/plain")], "Request Entity Too Large")
            .into_response();
    }
    if m.whole_batch_refusal && docs.iter().any(|d| m.is_poison(&d.key)) {
        let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.poison.extend(docs.iter().filter(|d| m.is_poison(&d.key)).map(|d| d.key.clone()));
        *seen.answers.entry("500 refused".into()).or_insert(0) += 1;
        drop(seen);
        return request_error(StatusCode::INTERNAL_SERVER_ERROR, "null_pointer_exception", "a document broke the node");
    }
    if roll(m.seed, n, 0, 9) < m.server_error_rate {
        answer("500 random");
        return request_error(StatusCode::INTERNAL_SERVER_ERROR, "exception", "node failed at random");
    }
    let (items, errors) = {
        let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.max_batch = seen.max_batch.max(docs.len());
        let mut items = Vec::with_capacity(docs.len());
        let mut errors = false;
        for (i, d) in docs.into_iter().enumerate() {
            let i = i as u64 + 1;
            let (status, error) = if roll(m.seed, n, i, 5) < m.item_busy_rate {
                let reason = "rejected execution of primary operation [write queue capacity 10000]".to_owned();
                (429, Some(("es_rejected_execution_exception", reason)))
            } else if roll(m.seed, n, i, 6) < m.item_error_rate {
                (503, Some(("unavailable_shards_exception", "primary shard is not active".to_owned())))
            } else if seen.docs.contains_key(&(d.index.clone(), d.id.clone())) {
                let reason = format!("[{}]: version conflict, document already exists", d.id);
                (409, Some(("version_conflict_engine_exception", reason)))
            } else if m.is_poison(&d.key) {
                seen.poison.insert(d.key.clone());
                let reason = "[1:42] failed to parse field [ocsf.time] of type [date]".to_owned();
                (400, Some(("document_parsing_exception", reason)))
            } else {
                seen.indexed.insert(d.key.clone());
                seen.docs.insert((d.index, d.id), d.key);
                (201, None)
            };
            // Elastic sets `errors` for any failed item, a 409 included.
            errors |= error.is_some();
            *seen.items.entry(status).or_insert(0) += 1;
            items.push(item(status, error));
        }
        *seen.answers.entry(if errors { "200 item errors" } else { "200 all created" }.into()).or_insert(0) += 1;
        (items, errors)
    };
    // Indexed already: an answer later than the sink waits is a resend's 409s, never a loss.
    if roll(m.seed, n, 0, 7) < m.slow_rate {
        let ms = u64::try_from(m.max_delay.as_millis()).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_millis((roll(m.seed, n, 0, 8) * ms as f64) as u64)).await;
    }
    json_answer(StatusCode::OK, json!({"errors": errors, "items": items}))
}
