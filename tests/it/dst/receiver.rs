//! The randomized receiver model: a Splunk HEC collector (`POST /services/collector/event`,
//! stacked JSON envelopes, PROTOCOLS.md §1a answers) on 127.0.0.1, whose every answer is drawn
//! from the run's seed.
//!
//! It keeps, as the ground truth the invariants are checked against, the record keys it
//! *indexed* (only on its own "yes", `{"code":0}`) and the keys it considers poison (refused
//! for good, so a dead letter for them is legitimate). What it can answer, by fault family:
//! outages (503 during seeded time windows, 429 with `Retry-After`), slow answers (a virtual
//! delay before the answer, sometimes past the sink's timeout, after which it still indexes:
//! a duplicate, never a loss), a 2xx that is not HEC's acceptance (an HTML 200 from a proxy, or
//! a 302 to a login page that answers 200; nothing is indexed), per-event refusal (400 code 6
//! with `invalid-event-number` for the first poison envelope; the ones before it are indexed,
//! as Vector's emulation does) and whole-batch refusal (400 code 6 without an event number).
//! It never sleeps on the real clock: every delay is `tokio::time`, paused in the harness.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::record::record_key;

/// How the receiver behaves, decided once from the seed.
#[derive(Clone, Debug, Default)]
pub struct ReceiverModel {
    pub seed: u64,
    /// Virtual-time windows (offsets from the receiver's start) answered 503.
    pub outages: Vec<(Duration, Duration)>,
    /// Share of requests answered 429 with a `Retry-After`.
    pub busy_rate: f64,
    /// Share of requests answered after a delay of up to `max_delay`.
    pub slow_rate: f64,
    pub max_delay: Duration,
    /// Share of requests answered with a 2xx that is not HEC's `code 0` (nothing indexed).
    pub fake_ok_rate: f64,
    /// Per mille of records that this receiver refuses for good (0: none).
    pub poison_permille: u64,
    /// Poison is refused batch-wide (400 code 6 without an event number) instead of per event.
    pub whole_batch_refusal: bool,
}

/// What the receiver saw, for the invariants and the trace.
#[derive(Debug, Default)]
pub struct Seen {
    pub indexed: HashSet<String>,
    pub poison: HashSet<String>,
    pub requests: u64,
    pub answers: std::collections::BTreeMap<String, u64>,
    /// The largest number of envelopes in one request.
    pub max_batch: usize,
}

#[derive(Clone)]
struct Shared {
    model: ReceiverModel,
    started: tokio::time::Instant,
    seen: Arc<Mutex<Seen>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Receiver {
    pub async fn start(model: ReceiverModel) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver model");
        let addr = listener.local_addr().expect("receiver address");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = Shared { model, started: tokio::time::Instant::now(), seen: seen.clone() };
        let app = Router::new()
            .route("/services/collector/event", post(event))
            .route("/login", get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html>Sign in</html>") }))
            .with_state(shared);
        let stop = tokio_util::sync::CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(token.cancelled_owned()).await;
        });
        Receiver { addr, seen, stop }
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

/// A reproducible number in `[0, 1)` for request `n` and a purpose.
fn roll(seed: u64, n: u64, salt: u64) -> f64 {
    fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).f64()
}

/// Whether the model refuses this record for good.
pub fn is_poison(seed: u64, permille: u64, key: &str) -> bool {
    if permille == 0 {
        return false;
    }
    let h = key.bytes().fold(seed ^ 0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3));
    h % 1000 < permille
}

fn hec(status: StatusCode, body: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_owned()).into_response()
}

async fn event(State(s): State<Shared>, _headers: HeaderMap, body: Bytes) -> Response {
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
    if roll(m.seed, n, 1) < m.slow_rate {
        let ms = u64::try_from(m.max_delay.as_millis()).unwrap_or(u64::MAX);
        tokio::time::sleep(Duration::from_millis((roll(m.seed, n, 2) * ms as f64) as u64)).await;
    }
    let at = tokio::time::Instant::now().saturating_duration_since(s.started);
    if m.outages.iter().any(|(from, to)| *from <= at && at < *to) {
        answer("503 outage");
        return hec(StatusCode::SERVICE_UNAVAILABLE, r#"{"text":"Server is busy","code":9}"#);
    }
    if roll(m.seed, n, 3) < m.busy_rate {
        answer("429 busy");
        let secs = 1 + (roll(m.seed, n, 4) * 30.0) as u64;
        let mut resp = hec(StatusCode::TOO_MANY_REQUESTS, r#"{"text":"Server is busy","code":9}"#);
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
        return resp;
    }
    if roll(m.seed, n, 5) < m.fake_ok_rate {
        // A proxy in the way: its own 200 page, or a redirect to a login page answering 200.
        if roll(m.seed, n, 6) < 0.5 {
            answer("200 html");
            return ([(header::CONTENT_TYPE, "text/html")], "<html>Maintenance</html>").into_response();
        }
        answer("302 login");
        return (StatusCode::FOUND, [(header::LOCATION, "/login")]).into_response();
    }
    let mut keys = Vec::new();
    for envelope in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let Ok(envelope) = envelope else {
            answer("400 bad json");
            return hec(StatusCode::BAD_REQUEST, r#"{"text":"Invalid data format","code":6}"#);
        };
        keys.push(record_key(&envelope["event"]));
    }
    let mut seen = s.seen.lock().unwrap_or_else(PoisonError::into_inner);
    seen.max_batch = seen.max_batch.max(keys.len());
    let first_poison = keys.iter().position(|k| is_poison(m.seed, m.poison_permille, k));
    match first_poison {
        Some(i) if m.whole_batch_refusal => {
            seen.poison.insert(keys[i].clone());
            *seen.answers.entry("400 batch refused".into()).or_insert(0) += 1;
            hec(StatusCode::BAD_REQUEST, r#"{"text":"Invalid data format","code":6}"#)
        }
        Some(i) => {
            seen.poison.insert(keys[i].clone());
            seen.indexed.extend(keys[..i].iter().cloned());
            *seen.answers.entry("400 event refused".into()).or_insert(0) += 1;
            hec(
                StatusCode::BAD_REQUEST,
                &format!(r#"{{"text":"Invalid data format","code":6,"invalid-event-number":{i}}}"#),
            )
        }
        None => {
            seen.indexed.extend(keys);
            *seen.answers.entry("200 code 0".into()).or_insert(0) += 1;
            hec(StatusCode::OK, r#"{"text":"Success","code":0}"#)
        }
    }
}
