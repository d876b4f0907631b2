//! An HTTP Event Collector (HEC) emulator for the HEC sink's tests.
//!
//! No real HEC receiver can be installed on the project's machines (PROTOCOLS.md §2c), so this
//! is a small axum app on 127.0.0.1 that implements the *documented* behaviour gathered in
//! PROTOCOLS.md §1a: the `/event` endpoint with stacked JSON envelopes and
//! `invalid-event-number`, `/raw` (channel required), `/ack` with ackIds counted per channel,
//! `/health`, gzip request bodies, the `Authorization: Splunk <token>` check and the status table.
//! It is an emulator of documented behaviour, not the real product: where the documentation is
//! silent the choice made here is written down next to the code.
//!
//! What it does, in the order a data request is checked:
//! 1. a scripted [`Fault`] queued with [`HecEmulator::push_fault`] is taken (`/event` only);
//!    `Status` and `Disconnect` answer at once, without any further check;
//! 2. the token: no `Authorization` → 401 code 2; not `Splunk <token>` → 401 code 3; another
//!    token → 403 code 4;
//! 3. the channel (`X-Splunk-Request-Channel` header, else `?channel=`): required when the
//!    token has indexer acknowledgement on (and always on `/raw`) → 400 code 10; when present it
//!    must be a GUID → 400 code 11;
//! 4. the body: `Content-Encoding: gzip` is decompressed (a broken stream → 400 code 6; any
//!    other encoding than gzip/identity → 415); more than `max_content_length` bytes after
//!    decompression → 413; nothing but whitespace → 400 code 5;
//! 5. the envelopes one after the other, each checked (see [`HecOptions`] and `check_envelope`);
//!    the first bad one is answered 400 with its `invalid-event-number`, and, as in Vector's
//!    emulation (PROTOCOLS §1a), the envelopes before it stay indexed and the rest are dropped;
//! 6. success: `{"text":"Success","code":0}`, plus `"ackId":N` when acknowledgement is on.
//!
//! What a real installation puts in front of a collector, as knobs (PROTOCOLS §1a, "2xx without
//! a HEC code, or any 3xx"; EDGES.md "a proxy or load balancer in the way"): [`Fault::Redirect`]
//! (a 302/303/307 to `/login`, a page that answers 200 with HTML to any method), [`Fault::Raw`]
//! (any status, content type and body: a 200 with an empty body, HTML, or JSON of another
//! shape), and [`HecEmulator::refuse_requests_with`] (every request holding one event is
//! answered with a status and code but no `invalid-event-number`, the others pass: the "poison"
//! event a batch is bisected to find).
//!
//! Indexed envelopes are kept exactly as received (no defaults filled in), together with the
//! channel they came on. [`HecEmulator::stop`] closes the port and every open connection;
//! [`HecEmulator::restart`] serves again on the same port with everything kept (indexed events,
//! recorded requests, pending ackIds, queued faults).
#![allow(dead_code)] // each test module uses a different part of the emulator
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

// The listener whose connections can be cut (Fault::Disconnect, stop), shared with the Elasticsearch
// emulator. `super::`: declared beside this emulator, at the `it` crate's root and in
// the benchmarks' `common` (hec_emulator) or crate root (es_emulator).
use super::killable::{Conn, Serving};

/// The header carrying the channel GUID.
pub const CHANNEL_HEADER: &str = "x-splunk-request-channel";

/// How the emulated token and collector behave.
#[derive(Clone, Debug)]
pub struct HecOptions {
    /// The one accepted token; requests must carry `Authorization: Splunk <token>`.
    pub token: String,
    /// The token has indexer acknowledgement on: data requests need a channel, successes carry
    /// an `ackId`, and `/ack` answers (otherwise `/ack` is 400 code 14).
    pub use_ack: bool,
    /// Empty: any index is accepted. Otherwise an envelope whose `index` is not listed is
    /// answered 400 code 7 (an envelope without `index` goes to the token's default and passes).
    pub allowed_indexes: Vec<String>,
    /// A request body larger than this after decompression is answered 413 (limits.conf
    /// `[http_input] max_content_length`; PROTOCOLS advises a 1 MB batch cap, so 1 MiB here).
    pub max_content_length: usize,
    /// An ackId reports `true` only once this many `/ack` polls asking for it have answered
    /// `false` (0: `true` at the first poll; 2: false, false, true).
    pub ack_delay_polls: u32,
    /// What is kept of what arrives.
    pub retain: Retain,
}

/// What the emulator keeps of indexed events and requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retain {
    /// Every envelope and every request body (for tests that inspect them).
    Everything,
    /// Only each indexed event's `metadata.uid` (benchmarks of a million events): an envelope
    /// is read only as far as that uid, and neither it nor the request body is kept. Faults
    /// still apply; `/raw` keeps everything.
    Uids,
}

impl Default for HecOptions {
    fn default() -> Self {
        HecOptions {
            token: "hec-test-token".to_owned(),
            use_ack: false,
            allowed_indexes: Vec::new(),
            max_content_length: 1024 * 1024,
            ack_delay_polls: 0,
            retain: Retain::Everything,
        }
    }
}

/// A scripted answer for the next `/services/collector/event` request(s) (any of the aliases),
/// consumed in order, one per request, when the request arrives, before normal processing.
/// A fault is used up even when the request then fails for another reason (a bad token, say).
#[derive(Clone, Debug)]
pub enum Fault {
    /// Nothing scripted: the request is processed as it would be without a fault (a place
    /// holder, so that a later fault hits a later request).
    Pass,
    /// Answer with this HTTP status and the HEC JSON body `{"text":..., "code":...}` (`code`
    /// left out when `None`); `retry_after` adds a `Retry-After: <seconds>` header. Nothing is
    /// checked or indexed.
    Status { status: u16, code: Option<u32>, text: String, retry_after: Option<u64> },
    /// Reject the envelope at this 0-based index as invalid: 400, code 6, "Invalid data format",
    /// `"invalid-event-number": index`. The envelopes before it are indexed, the rest are not.
    /// A genuinely bad envelope earlier in the request is answered for instead; when the
    /// request has `index` envelopes or fewer, all of them are indexed and the answer is still
    /// 400 code 6 with this number.
    InvalidEvent { index: usize },
    /// Accept and index the request normally, but its ackId never turns `true` (with
    /// `use_ack`; without it this is a plain success).
    NeverAck,
    /// Drop the connection without answering: the client sees a transport error. Recorded in
    /// [`HecEmulator::requests`] with status 0.
    Disconnect,
    /// Answer `status` (3xx) with `Location: location` and an empty body, as a proxy sending an
    /// unauthenticated client to its login page does. Nothing is indexed.
    Redirect { status: u16, location: String },
    /// Answer `status` with this `Content-Type` and body, as a proxy or load balancer in front
    /// of the collector may. Nothing is indexed.
    Raw { status: u16, content_type: String, body: String },
}

/// The login page a [`Fault::Redirect`] may point at: 200 with HTML for any method.
pub const LOGIN_PATH: &str = "/login";

/// One indexed event: the envelope exactly as received, and the channel of its request.
#[derive(Clone, Debug)]
pub struct Indexed {
    pub envelope: Value,
    pub channel: Option<String>,
}

/// One request to `/services/collector/event` (or an alias) as received.
#[derive(Clone, Debug)]
pub struct HecRequest {
    pub authorization: Option<String>,
    pub content_encoding: Option<String>,
    /// The channel from the header, else from `?channel=`.
    pub channel: Option<String>,
    pub content_type: Option<String>,
    /// The body's length on the wire (compressed, if it was).
    pub raw_len: usize,
    /// The decompressed body (the raw bytes when decompression failed or was not reached).
    pub body: Vec<u8>,
    /// The HTTP status answered; 0 for a [`Fault::Disconnect`].
    pub status: u16,
}

/// The emulator: one axum server on 127.0.0.1 and a port chosen at start, kept across
/// [`stop`](HecEmulator::stop) / [`restart`](HecEmulator::restart).
pub struct HecEmulator {
    shared: Arc<Shared>,
    server: Serving,
}

impl HecEmulator {
    /// Starts serving on 127.0.0.1 and a free port.
    pub async fn start(opts: HecOptions) -> HecEmulator {
        let shared = Arc::new(Shared { opts, healthy: AtomicBool::new(true), state: Mutex::new(EmuState::default()) });
        let server = Serving::start("HEC emulator", None, router(shared.clone())).await;
        HecEmulator { shared, server }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Queues a scripted answer for the next `/event` request (after those already queued).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Every event indexed so far, in order.
    pub fn indexed(&self) -> Vec<Indexed> {
        self.shared.lock().indexed.clone()
    }

    /// How many events are indexed so far (cheaper than [`HecEmulator::indexed`] in a poll loop).
    pub fn indexed_count(&self) -> usize {
        self.shared.lock().count
    }

    /// The `event.metadata.uid` of every indexed event, in order (with [`Retain::Uids`]; with
    /// [`Retain::Everything`], read from the kept envelopes).
    pub fn indexed_uids(&self) -> Vec<String> {
        let state = self.shared.lock();
        match self.shared.opts.retain {
            Retain::Uids => state.uids.clone(),
            Retain::Everything => state.indexed.iter().map(|i| uid_of(&i.envelope)).collect(),
        }
    }

    /// The `event` field of every indexed envelope, in order.
    pub fn indexed_events(&self) -> Vec<Value> {
        self.shared.lock().indexed.iter().map(|i| i.envelope["event"].clone()).collect()
    }

    /// Every request to `/services/collector/event` (and its aliases), in arrival order.
    pub fn requests(&self) -> Vec<HecRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests `/services/collector/ack` received (whatever their outcome).
    pub fn ack_polls(&self) -> usize {
        self.shared.lock().ack_polls
    }

    /// How many ackIds each channel has been issued (its next ackId).
    pub fn acks_issued(&self) -> HashMap<String, u64> {
        self.shared.lock().channels.iter().map(|(ch, acks)| (ch.clone(), acks.next_id)).collect()
    }

    /// From now on, every `/event` request holding an event whose `metadata.uid` is `uid` is
    /// answered `status` with `{"text": ..., "code": code}` and no `invalid-event-number`;
    /// nothing of it is indexed. Other requests are processed normally.
    pub fn refuse_requests_with(&self, uid: &str, status: u16, code: Option<u32>) {
        self.shared.lock().refusals.push((uid.to_owned(), status, code));
    }

    /// How many requests reached the login page ([`LOGIN_PATH`]).
    pub fn login_hits(&self) -> usize {
        self.shared.lock().login_hits
    }

    /// `false` makes `/health` answer 503 code 18 "HEC is unhealthy, queues are full" (the data
    /// endpoints are not affected: script those with [`Fault::Status`]).
    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Waits until at least `n` events are indexed and returns them all; panics after
    /// `timeout` of wall-clock time, listing what the emulator received.
    pub async fn wait_for_indexed(&self, n: usize, timeout: Duration) -> Vec<Indexed> {
        let deadline = Instant::now() + timeout;
        loop {
            let indexed = self.indexed();
            if indexed.len() >= n {
                return indexed;
            }
            if Instant::now() >= deadline {
                let answered: Vec<u16> = self.requests().iter().map(|r| r.status).collect();
                panic!(
                    "HEC emulator: waited {timeout:?} for {n} indexed events, have {}; /event requests answered {answered:?}; {} /ack polls",
                    indexed.len(),
                    self.ack_polls()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving: the listening socket is closed (connections are refused) and every open
    /// connection is dropped, idle or not. Nothing recorded is lost. Does nothing when stopped.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Serves again on the same port (stopping first if still serving), keeping everything.
    pub async fn restart(&self) {
        self.server.restart(router(self.shared.clone())).await;
    }
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    opts: HecOptions,
    healthy: AtomicBool,
    state: Mutex<EmuState>,
}

#[derive(Default)]
struct EmuState {
    faults: VecDeque<Fault>,
    indexed: Vec<Indexed>,
    /// Events indexed (also with [`Retain::Uids`]).
    count: usize,
    uids: Vec<String>,
    requests: Vec<HecRequest>,
    ack_polls: usize,
    channels: HashMap<String, ChannelAcks>,
    /// Uids whose requests are refused whole: (uid, status, code).
    refusals: Vec<(String, u16, Option<u32>)>,
    /// Requests to the login page.
    login_hits: usize,
}

#[derive(Default)]
struct ChannelAcks {
    next_id: u64,
    pending: HashMap<u64, PendingAck>,
}

struct PendingAck {
    /// Polls that asked for it and were answered `false`.
    polls: u32,
    never: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, EmuState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// An HTTP status and a JSON body.
type Answer = (u16, Value);

/// [`Retain::Uids`] without a fault: each envelope is read only as far as its event's uid, so
/// that a million events cost the receiver little (the full checks are the tests' business).
fn index_uids(shared: &Shared, opts: &HecOptions, channel: Option<&str>, body: &[u8]) -> Answer {
    #[derive(serde::Deserialize)]
    struct Envelope {
        event: EventUid,
    }
    let mut uids = Vec::new();
    for (i, item) in serde_json::Deserializer::from_slice(body).into_iter::<Envelope>().enumerate() {
        match item {
            Ok(envelope) => uids.push(envelope.event.metadata.uid),
            Err(_) => return bad_event(6, "Invalid data format", i),
        }
    }
    let mut state = shared.lock();
    state.count += uids.len();
    state.uids.extend(uids);
    state.success(opts, channel, false)
}

/// An OCSF event read only as far as its `metadata.uid`.
#[derive(serde::Deserialize)]
pub struct EventUid {
    pub metadata: UidOnly,
}

#[derive(serde::Deserialize)]
pub struct UidOnly {
    pub uid: String,
}

/// An envelope's `event.metadata.uid` ("" when it has none).
fn uid_of(envelope: &Value) -> String {
    envelope["event"]["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
}

fn hec(code: u32, text: &str) -> Value {
    json!({ "text": text, "code": code })
}

fn bad_event(code: u32, text: &str, i: usize) -> Answer {
    (400, json!({ "text": text, "code": code, "invalid-event-number": i }))
}

fn reply((status, body): Answer) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), Json(body)).into_response()
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The channel: header first, then `?channel=`; an empty value counts as none.
fn channel_of(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    header(headers, CHANNEL_HEADER).or_else(|| query.get("channel").cloned()).filter(|c| !c.is_empty())
}

fn check_auth(opts: &HecOptions, headers: &HeaderMap) -> Result<(), Answer> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err((401, hec(2, "Token is required")));
    };
    let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Splunk ")) else {
        return Err((401, hec(3, "Invalid authorization")));
    };
    if token != opts.token {
        return Err((403, hec(4, "Invalid token")));
    }
    Ok(())
}

/// `required`: 400 code 10 without a channel. A channel given must be a GUID (400 code 11),
/// whether acknowledgement is on or not.
fn check_channel(channel: Option<&str>, required: bool) -> Result<(), Answer> {
    match channel {
        None if required => Err((400, hec(10, "Data channel is missing"))),
        None => Ok(()),
        Some(c) if uuid::Uuid::parse_str(c).is_ok() => Ok(()),
        Some(_) => Err((400, hec(11, "Invalid data channel"))),
    }
}

/// The request body after `Content-Encoding`, limited to `max` bytes.
fn decode(headers: &HeaderMap, raw: &[u8], max: usize) -> Result<Vec<u8>, Answer> {
    let encoding = header(headers, CONTENT_ENCODING).map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
    match encoding.as_str() {
        "" | "identity" => {
            if raw.len() > max {
                return Err((
                    413,
                    json!({ "text": format!("Content-Length of {} too large (maximum is {max})", raw.len()) }),
                ));
            }
            Ok(raw.to_vec())
        }
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            if flate2::read::MultiGzDecoder::new(raw).take(limit).read_to_end(&mut out).is_err() {
                return Err((400, hec(6, "Invalid data format")));
            }
            if out.len() > max {
                return Err((413, json!({ "text": format!("Decompressed content too large (maximum is {max})") })));
            }
            Ok(out)
        }
        // Undocumented for HEC; Vector's source answers 415 too.
        _ => Err((415, json!({ "text": format!("Unsupported content encoding: {encoding}") }))),
    }
}

/// The per-envelope checks of §1a, in this order: an object (6), `event` present (12) and not
/// null or "" (13), `time` a JSON number (6), `index` a string the token allows (7), `fields`
/// an object whose values are scalars or arrays of scalars (15).
fn check_envelope(opts: &HecOptions, envelope: &Value, i: usize) -> Result<(), Answer> {
    let Some(obj) = envelope.as_object() else {
        return Err(bad_event(6, "Invalid data format", i));
    };
    match obj.get("event") {
        None => return Err(bad_event(12, "Event field is required", i)),
        Some(Value::Null) => return Err(bad_event(13, "Event field cannot be blank", i)),
        Some(Value::String(s)) if s.is_empty() => return Err(bad_event(13, "Event field cannot be blank", i)),
        Some(_) => {}
    }
    if obj.get("time").is_some_and(|t| !t.is_number()) {
        return Err(bad_event(6, "Invalid data format", i));
    }
    if let Some(index) = obj.get("index") {
        let allowed = index.as_str().is_some_and(|ix| {
            !ix.is_empty() && (opts.allowed_indexes.is_empty() || opts.allowed_indexes.iter().any(|a| a == ix))
        });
        if !allowed {
            return Err(bad_event(7, "Incorrect index", i));
        }
    }
    let flat = |v: &Value| match v {
        Value::Object(_) => false,
        Value::Array(items) => items.iter().all(|x| !x.is_object() && !x.is_array()),
        _ => true,
    };
    match obj.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) if fields.values().all(flat) => {}
        Some(_) => return Err(bad_event(15, "Error in handling indexed fields", i)),
    }
    Ok(())
}

impl EmuState {
    /// The success answer: with indexer acknowledgement, a new ackId on the request's channel
    /// (`never_ack`: one that never turns true).
    fn success(&mut self, opts: &HecOptions, channel: Option<&str>, never_ack: bool) -> Answer {
        match channel {
            Some(channel) if opts.use_ack => {
                let id = self.issue_ack(channel, never_ack);
                (200, json!({ "text": "Success", "code": 0, "ackId": id }))
            }
            _ => (200, hec(0, "Success")),
        }
    }

    fn issue_ack(&mut self, channel: &str, never: bool) -> u64 {
        let acks = self.channels.entry(channel.to_owned()).or_default();
        let id = acks.next_id;
        acks.next_id += 1;
        acks.pending.insert(id, PendingAck { polls: 0, never });
        id
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints

type Params = Query<HashMap<String, String>>;

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/collector", post(event_endpoint))
        .route("/services/collector/event", post(event_endpoint))
        .route("/services/collector/event/1.0", post(event_endpoint))
        .route("/services/collector/raw", post(raw_endpoint))
        .route("/services/collector/raw/1.0", post(raw_endpoint))
        .route("/services/collector/ack", post(ack_endpoint))
        .route("/services/collector/health", get(health_endpoint))
        .route("/services/collector/health/1.0", get(health_endpoint))
        .route(LOGIN_PATH, get(login_page).post(login_page))
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

async fn event_endpoint(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Query(query): Params,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let opts = &shared.opts;
    let fault = shared.lock().faults.pop_front();
    let mut record = HecRequest {
        authorization: header(&headers, AUTHORIZATION),
        content_encoding: header(&headers, CONTENT_ENCODING),
        channel: channel_of(&headers, &query),
        content_type: header(&headers, CONTENT_TYPE),
        raw_len: raw.len(),
        body: match opts.retain {
            Retain::Everything => decode(&headers, &raw, usize::MAX).unwrap_or_else(|_| raw.to_vec()),
            Retain::Uids => Vec::new(),
        },
        status: 0,
    };
    let response = match fault {
        Some(Fault::Disconnect) => {
            shared.lock().requests.push(record);
            conn.kill();
            // Never reaches the client: the connection fails on write.
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(Fault::Status { status, code, text, retry_after }) => {
            let mut body = json!({ "text": text });
            if let Some(code) = code {
                body["code"] = json!(code);
            }
            record.status = status;
            let mut response = reply((status, body));
            if let Some(secs) = retry_after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Some(Fault::Redirect { status, location }) => {
            record.status = status;
            let mut response = StatusCode::from_u16(status).unwrap().into_response();
            response.headers_mut().insert(axum::http::header::LOCATION, HeaderValue::from_str(&location).unwrap());
            response
        }
        Some(Fault::Raw { status, content_type, body }) => {
            record.status = status;
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap());
            response
        }
        other => {
            let other = other.filter(|f| !matches!(f, Fault::Pass));
            let decoded = decode(&headers, &raw, usize::MAX).unwrap_or_default();
            let refusal = shared.lock().refusals.iter().find(|(uid, ..)| contains(&decoded, uid.as_bytes())).cloned();
            if let Some((_, status, code)) = refusal {
                let mut body = json!({ "text": "Refused (injected)" });
                if let Some(code) = code {
                    body["code"] = json!(code);
                }
                record.status = status;
                shared.lock().requests.push(record);
                return reply((status, body));
            }
            let answer = process_events(&shared, opts, &headers, record.channel.as_deref(), &raw, other.as_ref());
            record.status = answer.0;
            reply(answer)
        }
    };
    shared.lock().requests.push(record);
    response
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

async fn login_page(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().login_hits += 1;
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], "<!doctype html><html><body><form>Sign in</form></body></html>")
        .into_response()
}

fn process_events(
    shared: &Shared,
    opts: &HecOptions,
    headers: &HeaderMap,
    channel: Option<&str>,
    raw: &[u8],
    fault: Option<&Fault>,
) -> Answer {
    let run = || -> Result<Answer, Answer> {
        check_auth(opts, headers)?;
        check_channel(channel, opts.use_ack)?;
        let body = decode(headers, raw, opts.max_content_length)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err((400, hec(5, "No data")));
        }
        if opts.retain == Retain::Uids && fault.is_none() {
            return Ok(index_uids(shared, opts, channel, &body));
        }
        let fail_at = match fault {
            Some(Fault::InvalidEvent { index }) => Some(*index),
            _ => None,
        };
        let mut accepted = Vec::new();
        let mut failure = None;
        for (i, item) in serde_json::Deserializer::from_slice(&body).into_iter::<Value>().enumerate() {
            if fail_at == Some(i) {
                break;
            }
            let checked = match item {
                Ok(envelope) => check_envelope(opts, &envelope, i).map(|()| envelope),
                Err(_) => Err(bad_event(6, "Invalid data format", i)),
            };
            match checked {
                Ok(envelope) => accepted.push(envelope),
                Err(answer) => {
                    failure = Some(answer);
                    break;
                }
            }
        }
        if failure.is_none()
            && let Some(index) = fail_at
        {
            failure = Some(bad_event(6, "Invalid data format", index));
        }
        let mut state = shared.lock();
        state.count += accepted.len();
        match opts.retain {
            Retain::Everything => {
                let owned_channel = channel.map(str::to_owned);
                state
                    .indexed
                    .extend(accepted.into_iter().map(|envelope| Indexed { envelope, channel: owned_channel.clone() }));
            }
            Retain::Uids => state.uids.extend(accepted.iter().map(uid_of)),
        }
        if let Some(answer) = failure {
            return Err(answer);
        }
        Ok(state.success(opts, channel, matches!(fault, Some(Fault::NeverAck))))
    };
    run().unwrap_or_else(|answer| answer)
}

/// `/raw`: the body is split into lines (the emulator's stand-in for props.conf line
/// breaking); each non-blank line becomes an indexed envelope `{"event": line}` plus `host`,
/// `source`, `sourcetype`, `index` from the query string when given. Channel always required.
/// Not recorded in `requests()`, and faults do not apply.
async fn raw_endpoint(
    State(shared): State<Arc<Shared>>,
    Query(query): Params,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let opts = &shared.opts;
    let channel = channel_of(&headers, &query);
    let run = || -> Result<Answer, Answer> {
        check_auth(opts, &headers)?;
        check_channel(channel.as_deref(), true)?;
        let body = decode(&headers, &raw, opts.max_content_length)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err((400, hec(5, "No data")));
        }
        let mut meta = serde_json::Map::new();
        for key in ["host", "source", "sourcetype", "index"] {
            if let Some(v) = query.get(key) {
                meta.insert(key.to_owned(), json!(v));
            }
        }
        if let Some(ix) = query.get("index")
            && !opts.allowed_indexes.is_empty()
            && !opts.allowed_indexes.contains(ix)
        {
            return Err((400, hec(7, "Incorrect index")));
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let mut state = shared.lock();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut envelope = meta.clone();
            envelope.insert("event".to_owned(), json!(line));
            state.count += 1;
            state.indexed.push(Indexed { envelope: Value::Object(envelope), channel: channel.clone() });
        }
        Ok(state.success(opts, channel.as_deref(), false))
    };
    reply(run().unwrap_or_else(|answer| answer))
}

#[derive(serde::Deserialize)]
struct AckRequest {
    acks: Vec<u64>,
}

/// `/ack`: `{"acks":[N,...]}` → `{"acks":{"N":bool}}`. An ackId reported `true` is forgotten,
/// so asking again (or for an id never issued on that channel) answers `false`.
async fn ack_endpoint(
    State(shared): State<Arc<Shared>>,
    Query(query): Params,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let opts = &shared.opts;
    shared.lock().ack_polls += 1;
    let run = || -> Result<Answer, Answer> {
        check_auth(opts, &headers)?;
        if !opts.use_ack {
            return Err((400, hec(14, "ACK is disabled")));
        }
        let channel = channel_of(&headers, &query);
        check_channel(channel.as_deref(), true)?;
        let channel = channel.unwrap_or_default();
        let body = decode(&headers, &raw, opts.max_content_length)?;
        let Ok(request) = serde_json::from_slice::<AckRequest>(&body) else {
            return Err((400, hec(6, "Invalid data format")));
        };
        let mut state = shared.lock();
        let acks = state.channels.entry(channel).or_default();
        let mut answer = serde_json::Map::new();
        for id in request.acks {
            let key = id.to_string();
            if answer.contains_key(&key) {
                continue;
            }
            let done = match acks.pending.get_mut(&id) {
                Some(p) if !p.never && p.polls >= opts.ack_delay_polls => true,
                Some(p) => {
                    p.polls = p.polls.saturating_add(1);
                    false
                }
                None => false,
            };
            if done {
                acks.pending.remove(&id);
            }
            answer.insert(key, Value::Bool(done));
        }
        Ok((200, json!({ "acks": answer })))
    };
    reply(run().unwrap_or_else(|answer| answer))
}

/// `/health` needs no token; a token that is given but wrong is answered 400 "Invalid HEC
/// token" (the status table of §1a; no code documented, so none sent). `?ack=true` is answered
/// like the plain probe: the emulated ack service is always available (code 19 is never sent).
async fn health_endpoint(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if headers.contains_key(AUTHORIZATION) && check_auth(&shared.opts, &headers).is_err() {
        return reply((400, json!({ "text": "Invalid HEC token" })));
    }
    if shared.healthy.load(Ordering::SeqCst) {
        reply((200, hec(17, "HEC is healthy")))
    } else {
        reply((503, hec(18, "HEC is unhealthy, queues are full")))
    }
}
