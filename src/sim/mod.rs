//! The vendor simulator: an HTTP server on loopback that serves the vendors' audit-log contracts
//! (`../shared/vendors/README.md`) from a seeded, deterministic record store, with fault knobs.
//!
//! This file owns what every vendor shares: starting and stopping the server, the knobs, the
//! fixed-window rate limiter, fault injection (stalls, latency, 5xx, malformed bodies), the request
//! log and the counters. A vendor file (`aitronos.rs`) owns only its routes, its record store, its
//! authentication and its error envelope. Every wait goes through [`Clock`], so tests that pause
//! tokio's time are deterministic; every fault is decided by hashing the seed with the request
//! number, so a run with the same seed fails the same requests.
//!
//! It deliberately does not bind anything but loopback from the command line (`run_simulate`), and
//! it never sleeps on the real clock.

pub mod aitronos;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
pub use aitronos::AitronosSimOptions;

/// Everything the simulator can be told; `Default` is a well-behaved vendor with the documented
/// rate limit.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Seeds the record stores and every fault decision.
    pub seed: u64,
    pub aitronos: AitronosSimOptions,
    pub faults: Faults,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { seed: 42, aitronos: AitronosSimOptions::default(), faults: Faults::default() }
    }
}

/// Fault knobs, applied to every vendor endpoint (not to `/_sim/*`).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Each answer waits this long on the clock before it is sent.
    pub page_latency: Duration,
    /// Fixed window: at most `.0` requests per `.1`; `None` disables the limit. Default 100/min,
    /// the simulator default of README §4.6.
    pub rate_limit: Option<(u32, Duration)>,
    /// How a 429 says when to come back.
    pub retry_after: RetryAfterMode,
    /// Share (0..=1) of requests answered 500, 502 or 503.
    pub error_rate: f64,
    /// Share (0..=1) of 200 answers whose body is replaced by a malformed one.
    pub malformed_rate: f64,
    /// After each page served, this many new records arrive with `created_at` = now.
    pub arrivals_per_page: usize,
    /// The N-th vendor request (1-based) is never answered (until the server shuts down).
    pub stall_at_request: Option<u64>,
    /// `X-RateLimit-*` on every answer (default). When false the budget vanishes unannounced
    /// (as when the limit is shared with other integrations) and a 429 says when to return
    /// only through `Retry-After` — or, with `RetryAfterMode::Omit`, through `X-RateLimit-Reset`.
    pub limit_headers: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            page_latency: Duration::ZERO,
            rate_limit: Some((100, Duration::from_secs(60))),
            retry_after: RetryAfterMode::Seconds,
            error_rate: 0.0,
            malformed_rate: 0.0,
            arrivals_per_page: 0,
            stall_at_request: None,
            limit_headers: true,
        }
    }
}

/// The form of `Retry-After` on a 429.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryAfterMode {
    /// Whole seconds until the window ends, rounded up.
    #[default]
    Seconds,
    /// The window end as an HTTP-date, rounded up to the next whole second.
    HttpDate,
    /// No `Retry-After`; only `X-RateLimit-Reset` says when.
    Omit,
}

/// Counters, readable in-process ([`Sim::stats`]) or as JSON at `GET /_sim/stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Vendor requests received (stalled ones included).
    pub requests: u64,
    /// 200 answers with an intact body.
    pub ok: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx answers (injected faults).
    pub server_errors: u64,
    /// 200 answers whose body was replaced by a malformed one.
    pub malformed: u64,
    /// 401 and 403 answers.
    pub unauthorized: u64,
    /// Requests that arrived before the instant the previous 429 announced.
    pub retry_after_violations: u64,
    /// Records in intact 200 pages.
    pub served_records: u64,
}

/// One vendor request, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub at: DateTime<Utc>,
    pub path: String,
    pub query: String,
    /// The status sent; 0 while (or if) the request is never answered.
    pub status: u16,
}

/// The command line of `auditrelay simulate`: one flag per knob.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to serve on; loopback only.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Seed of the record stores and of every fault decision.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of seeded Aitronos records.
    #[arg(long, default_value_t = 1000)]
    pub aitronos_records: usize,
    /// The oldest seeded Aitronos record is at most this old at start.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub records_span: Duration,
    /// The newest seeded record is this old at start.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub records_min_age: Duration,
    #[arg(long, default_value = aitronos::DEFAULT_API_KEY)]
    pub aitronos_api_key: String,
    #[arg(long, default_value = aitronos::DEFAULT_ORGANIZATION_ID)]
    pub aitronos_organization_id: String,
    /// Clamp `limit > 100` to 100 instead of answering 422.
    #[arg(long)]
    pub clamp_limit: bool,
    /// Delay of every answer, e.g. `250ms`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub page_latency: Duration,
    /// Fixed-window limit `REQUESTS/PERIOD` (e.g. `100/1m`), or `off`.
    #[arg(long, default_value = "100/1m", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitArg,
    #[arg(long, value_enum, default_value_t = RetryAfterMode::Seconds)]
    pub retry_after: RetryAfterMode,
    /// Share (0..=1) of requests answered 500/502/503.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub error_rate: f64,
    /// Share (0..=1) of 200 answers with a malformed body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub malformed_rate: f64,
    /// New records added after each page served.
    #[arg(long, default_value_t = 0)]
    pub arrivals_per_page: usize,
    /// The N-th request (1-based) is never answered.
    #[arg(long)]
    pub stall_at_request: Option<u64>,
    /// No `X-RateLimit-*` headers (the budget vanishes unannounced); a 429 then says when to
    /// return only by `Retry-After`, or by `X-RateLimit-Reset` with `--retry-after omit`.
    #[arg(long)]
    pub no_limit_headers: bool,
}

/// `--rate-limit`: `None` for `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitArg(pub Option<(u32, Duration)>);

fn parse_rate_limit(s: &str) -> Result<RateLimitArg, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(RateLimitArg(None));
    }
    let (n, per) = s.split_once('/').ok_or("expected REQUESTS/PERIOD (e.g. 100/1m) or off")?;
    let n: u32 = n.trim().parse().map_err(|e| format!("bad request count {n:?}: {e}"))?;
    let per = humantime::parse_duration(per.trim()).map_err(|e| format!("bad period {per:?}: {e}"))?;
    if n == 0 || per.is_zero() {
        return Err("requests and period must be positive".into());
    }
    Ok(RateLimitArg(Some((n, per))))
}

fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

impl SimulateArgs {
    /// The options these flags describe.
    pub fn options(&self) -> SimOptions {
        SimOptions {
            seed: self.seed,
            aitronos: AitronosSimOptions {
                records: self.aitronos_records,
                api_key: self.aitronos_api_key.clone(),
                organization_id: self.aitronos_organization_id.clone(),
                records_span: self.records_span,
                records_min_age: self.records_min_age,
                clamp_limit: self.clamp_limit,
                ..AitronosSimOptions::default()
            },
            faults: Faults {
                page_latency: self.page_latency,
                rate_limit: self.rate_limit.0,
                retry_after: self.retry_after,
                error_rate: self.error_rate,
                malformed_rate: self.malformed_rate,
                arrivals_per_page: self.arrivals_per_page,
                stall_at_request: self.stall_at_request,
                limit_headers: !self.no_limit_headers,
            },
        }
    }
}

/// `auditrelay simulate`: serve on loopback until Ctrl-C or SIGTERM, on the system clock.
pub async fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!("--listen {}: the simulator serves loopback only (127.0.0.1 or ::1)", args.listen);
    }
    let sim = Sim::start(args.listen, args.options(), Clock::system())
        .await
        .map_err(|e| anyhow::anyhow!("simulator: cannot listen on {}: {e}", args.listen))?;
    println!("base_url={}", sim.base_url());
    println!("aitronos_api_key={}", sim.aitronos_api_key());
    println!("aitronos_organization_id={}", sim.aitronos_organization_id());
    let stopped = shutdown_signal().await;
    sim.shutdown().await;
    stopped.map_err(|e| anyhow::anyhow!("simulator: waiting for a signal: {e}"))
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// A running simulator. Dropping it leaves the server running until the runtime ends; call
/// [`Sim::shutdown`] to stop it (stalled requests are released then).
pub struct Sim {
    addr: SocketAddr,
    base_url: url::Url,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Sim {
    /// Binds `listen` (use `127.0.0.1:0` in tests), seeds the stores at `clock.now_utc()` and serves.
    pub async fn start(listen: SocketAddr, opts: SimOptions, clock: Clock) -> std::io::Result<Sim> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let base_url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let now = clock.now_utc();
        let shared = Arc::new(Shared {
            state: Mutex::new(Mutable {
                stats: SimStats::default(),
                log: Vec::new(),
                gates: HashMap::new(),
                malformed_turn: 0,
                aitronos: aitronos::Store::generate(opts.seed, &opts.aitronos, now),
            }),
            clock,
            seed: opts.seed,
            aitronos: opts.aitronos,
            faults: opts.faults,
            shutdown: CancellationToken::new(),
            arrived: watch::Sender::new(0),
        });
        let vendor = |v: Vendor, routes: Router<Arc<Shared>>| {
            routes.route_layer(middleware::from_fn_with_state((shared.clone(), v), gate))
        };
        let app = Router::new()
            .merge(vendor(Vendor::Aitronos, aitronos::routes()))
            .route(
                "/_sim/stats",
                get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.state().stats.clone()) }),
            )
            .route(
                "/_sim/records/aitronos",
                get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.state().aitronos.ids()) }),
            )
            .with_state(shared.clone());
        let stop = shared.shutdown.clone();
        let server =
            tokio::spawn(
                async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await },
            );
        tracing::info!(%addr, "simulator listening");
        Ok(Sim { addr, base_url, shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`
    pub fn base_url(&self) -> url::Url {
        self.base_url.clone()
    }

    pub fn stats(&self) -> SimStats {
        self.shared.state().stats.clone()
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.state().log.clone()
    }

    /// Records currently in the Aitronos store, arrivals included.
    pub fn aitronos_seeded(&self) -> usize {
        self.shared.state().aitronos.len()
    }

    /// Every record id in the Aitronos store, newest first.
    pub fn aitronos_ids(&self) -> Vec<String> {
        self.shared.state().aitronos.ids()
    }

    pub fn aitronos_api_key(&self) -> &str {
        &self.shared.aitronos.api_key
    }

    pub fn aitronos_organization_id(&self) -> &str {
        &self.shared.aitronos.organization_id
    }

    /// Returns once at least `n` vendor requests have arrived (answered or not).
    pub async fn wait_for_requests(&self, n: u64) {
        let mut rx = self.shared.arrived.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: the channel cannot close.
        let _ = rx.wait_for(|&seen| seen >= n).await;
    }

    /// Stops accepting, releases stalled requests and waits for open connections to finish.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "simulator server task failed"),
        }
    }
}

/// The vendors the simulator serves; each has its own rate-limit window and error envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Vendor {
    Aitronos,
}

impl Vendor {
    /// The vendor's error answer for `status` with its machine `code`.
    fn error(self, status: StatusCode, code: &str, ctx: &RequestCtx) -> Response {
        let message = status.canonical_reason().unwrap_or("Error");
        match self {
            Vendor::Aitronos => aitronos::error_response(status, code, message, ctx),
        }
    }
}

/// State shared by all handlers. Knobs are immutable; what changes sits behind a std `Mutex`,
/// which is never held across an `.await` (every critical section is a few field updates).
struct Shared {
    clock: Clock,
    seed: u64,
    aitronos: AitronosSimOptions,
    faults: Faults,
    /// Cancelled by [`Sim::shutdown`]: stops the server and releases a stalled request.
    shutdown: CancellationToken,
    /// Number of vendor requests arrived so far, for [`Sim::wait_for_requests`].
    arrived: watch::Sender<u64>,
    state: Mutex<Mutable>,
}

impl Shared {
    /// A poisoned lock only means a test panicked elsewhere; the counters are still usable.
    fn state(&self) -> MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What requests change.
struct Mutable {
    stats: SimStats,
    log: Vec<RequestRecord>,
    gates: HashMap<Vendor, Gate>,
    /// Which kind of malformed body comes next (they alternate).
    malformed_turn: u64,
    aitronos: aitronos::Store,
}

/// Per-vendor rate-limit window and the back-off the last 429 announced.
#[derive(Default)]
struct Gate {
    window: Option<Window>,
    not_before: Option<DateTime<Utc>>,
}

struct Window {
    end: DateTime<Utc>,
    used: u32,
}

/// What the handler of one request knows about it.
#[derive(Clone, Debug)]
struct RequestCtx {
    request_id: String,
    /// Arrival time, for the error envelopes' `timestamp`.
    now: DateTime<Utc>,
}

/// Set by a vendor handler on a page answer: how many records it carries.
#[derive(Clone, Copy, Debug)]
struct ServedRecords(usize);

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Seconds since the epoch, rounded up: a client that waits until then is never early.
fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// A reproducible number in `[0, 1)` for request `n` and a purpose `salt`.
fn roll(seed: u64, n: u64, salt: u64) -> f64 {
    fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).f64()
}

/// Middleware in front of every vendor route: counts and logs the request, then applies the rate
/// limit and the fault knobs, and lets the vendor handler answer only what is left.
async fn gate(State((shared, vendor)): State<(Arc<Shared>, Vendor)>, mut req: Request, next: Next) -> Response {
    let faults = &shared.faults;
    let now = shared.clock.now_utc();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let (number, log_index, limit) = {
        let mut st = shared.state();
        st.stats.requests += 1;
        let number = st.stats.requests;
        st.log.push(RequestRecord { at: now, path, query, status: 0 });
        let log_index = st.log.len() - 1;
        let g = st.gates.entry(vendor).or_default();
        let early = g.not_before.is_some_and(|nb| now < nb);
        let limit = faults.rate_limit.map(|(max, period)| {
            let w = match &mut g.window {
                Some(w) if now < w.end => w,
                // The first request after a window ended opens the next one.
                slot => slot.insert(Window { end: now + chrono_duration(period), used: 0 }),
            };
            let admitted = w.used < max;
            w.used += u32::from(admitted);
            (max, max - w.used, w.end, admitted)
        });
        if early {
            st.stats.retry_after_violations += 1;
        }
        // Sent under the lock, so the count seen by `wait_for_requests` never goes backwards.
        shared.arrived.send_replace(number);
        (number, log_index, limit)
    };
    let ctx = RequestCtx { request_id: request_id(shared.seed, number), now };

    if faults.stall_at_request == Some(number) {
        tracing::debug!(number, "simulator stalls this request until shutdown");
        shared.shutdown.cancelled().await;
    }
    if !faults.page_latency.is_zero() {
        shared.clock.sleep(faults.page_latency).await;
    }

    let mut retry_at = None;
    let mut resp = if let Some((_, _, end, false)) = limit {
        let mut resp = vendor.error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", &ctx);
        let announced = match faults.retry_after {
            RetryAfterMode::Seconds => {
                let wait_us = (end - now).num_microseconds().unwrap_or(i64::MAX);
                let secs = (wait_us.saturating_add(999_999) / 1_000_000).max(1);
                put(resp.headers_mut(), "retry-after", &secs.to_string());
                now + chrono::Duration::seconds(secs)
            }
            RetryAfterMode::HttpDate => {
                let at = DateTime::from_timestamp(ceil_secs(end), 0).unwrap_or(end);
                put(resp.headers_mut(), "retry-after", &httpdate::fmt_http_date(at.into()));
                at
            }
            RetryAfterMode::Omit => DateTime::from_timestamp(ceil_secs(end), 0).unwrap_or(end),
        };
        retry_at = Some(announced);
        resp
    } else if shared.shutdown.is_cancelled() {
        vendor.error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", &ctx)
    } else if roll(shared.seed, number, 0x5E5E) < faults.error_rate {
        match roll(shared.seed, number, 0xC0DE) {
            r if r < 1.0 / 3.0 => vendor.error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", &ctx),
            // A 502 comes from the load balancer, not the API: HTML, no envelope.
            r if r < 2.0 / 3.0 => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            _ => vendor.error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", &ctx),
        }
    } else {
        req.extensions_mut().insert(ctx.clone());
        next.run(req).await
    };

    let served = resp.extensions().get::<ServedRecords>().map_or(0, |s| s.0);
    let malformed = resp.status() == StatusCode::OK && roll(shared.seed, number, 0xBAD) < faults.malformed_rate;
    if malformed {
        let turn = {
            let mut st = shared.state();
            st.malformed_turn += 1;
            st.malformed_turn
        };
        resp = malform(resp, turn).await;
    }
    // Without `limit_headers`, only a 429 whose Retry-After is omitted says when to return, so
    // each Retry-After form is the sole signal a client can honour.
    let announce = |admitted: bool| faults.limit_headers || (!admitted && faults.retry_after == RetryAfterMode::Omit);
    if let Some((max, remaining, end, _)) = limit.filter(|(.., admitted)| announce(*admitted)) {
        for (name, value) in
            [("limit", max.to_string()), ("remaining", remaining.to_string()), ("reset", ceil_secs(end).to_string())]
        {
            put(resp.headers_mut(), &format!("x-ratelimit-{name}"), &value);
        }
    }
    put(resp.headers_mut(), "x-request-id", &ctx.request_id);

    let status = resp.status();
    let mut st = shared.state();
    if let Some(rec) = st.log.get_mut(log_index) {
        rec.status = status.as_u16();
    }
    let s = &mut st.stats;
    match status.as_u16() {
        200 if malformed => s.malformed += 1,
        200 => {
            s.ok += 1;
            s.served_records += served as u64;
        }
        401 | 403 => s.unauthorized += 1,
        429 => s.rate_limited += 1,
        500..=599 => s.server_errors += 1,
        _ => {}
    }
    if let Some(at) = retry_at {
        st.gates.entry(vendor).or_default().not_before = Some(at);
    }
    resp
}

fn put(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        h.insert(n, v);
    }
}

/// Deterministic `x-request-id` (also the error envelopes' `trace_id`).
fn request_id(seed: u64, number: u64) -> String {
    let name = format!("auditrelay-sim/{seed}/{number}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// Replaces a 200 body by one of three malformations, in turn: not JSON at all, JSON of the wrong
/// shape, the real body cut in half.
async fn malform(resp: Response, turn: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    let body: Vec<u8> = match turn % 3 {
        1 => b"<html><body>Service temporarily unavailable</body></html>".to_vec(),
        2 => br#"{"data":[{"unexpected":true}],"next":null}"#.to_vec(),
        _ => {
            let full = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            full[..full.len() / 2].to_vec()
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2026-03-18T08:00:00Z, the fixed start of every test clock.
    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_773_820_800, 0).unwrap()
    }

    /// Options with `records` records and no rate limit (tests that want one set it).
    pub(crate) fn opts(records: usize) -> SimOptions {
        let mut o = SimOptions::default();
        o.aitronos.records = records;
        o.faults.rate_limit = None;
        o
    }

    pub(crate) async fn start(opts: SimOptions, clock: Clock) -> Sim {
        Sim::start("127.0.0.1:0".parse().unwrap(), opts, clock).await.unwrap()
    }

    pub(crate) struct Answer {
        pub status: u16,
        pub headers: reqwest::header::HeaderMap,
        pub body: Vec<u8>,
        /// `Null` when the body is not JSON.
        pub json: serde_json::Value,
    }

    impl Answer {
        /// Number of `items` in a page (0 if none).
        pub(crate) fn items(&self) -> usize {
            self.json["items"].as_array().map_or(0, Vec::len)
        }

        /// `total` of a page (0 if none).
        pub(crate) fn total(&self) -> usize {
            self.json["total"].as_u64().unwrap_or(0) as usize
        }

        /// `(status, error.code)` of an error envelope.
        pub(crate) fn error(&self) -> (u16, &str) {
            (self.status, self.json["error"]["code"].as_str().unwrap_or(""))
        }
    }

    /// GET `path_and_query` with `X-API-Key: key` (none if `None`).
    pub(crate) async fn get(sim: &Sim, path_and_query: &str, key: Option<&str>) -> Answer {
        let url = sim.base_url().join(path_and_query).unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut req = client.get(url);
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Answer { status, headers, body, json }
    }

    /// One page of the default organization's audit log.
    pub(crate) async fn page(sim: &Sim, query: &str) -> Answer {
        let path = format!("v1/organizations/{}/audit-log?{query}", sim.aitronos_organization_id());
        get(sim, &path, Some(sim.aitronos_api_key())).await
    }

    fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
        a.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn test_rate_limit_429_and_retry_after_violation() {
        let mut o = opts(10);
        o.faults.rate_limit = Some((2, Duration::from_secs(60)));
        let sim = start(o, Clock::starting_at(t0())).await;
        let reset = (t0().timestamp() + 60).to_string();
        for remaining in ["1", "0"] {
            let a = page(&sim, "").await;
            assert_eq!(a.status, 200);
            assert_eq!(header(&a, "x-ratelimit-limit"), "2");
            assert_eq!(header(&a, "x-ratelimit-remaining"), remaining);
            assert_eq!(header(&a, "x-ratelimit-reset"), reset);
        }
        let limited = page(&sim, "").await;
        assert_eq!(limited.status, 429);
        assert_eq!(header(&limited, "retry-after"), "60");
        assert_eq!(limited.json["error"]["code"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(sim.stats().retry_after_violations, 0);

        tokio::time::advance(Duration::from_secs(30)).await;
        let early = page(&sim, "").await;
        assert_eq!((early.status, header(&early, "retry-after")), (429, "30"));
        assert_eq!(sim.stats().retry_after_violations, 1);

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(page(&sim, "").await.status, 200);
        let s = sim.stats();
        assert_eq!((s.requests, s.ok, s.rate_limited, s.retry_after_violations), (5, 3, 2, 1));
        let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 429, 429, 200]);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_retry_after_http_date_is_rounded_up() {
        let mut o = opts(10);
        o.faults.rate_limit = Some((1, Duration::from_secs(60)));
        o.faults.retry_after = RetryAfterMode::HttpDate;
        let sim = start(o, Clock::starting_at(t0() + chrono::Duration::milliseconds(250))).await;
        assert_eq!(page(&sim, "").await.status, 200);
        let limited = page(&sim, "").await;
        assert_eq!(limited.status, 429);
        // The window ends at 08:01:00.250; the announced instant is the next whole second.
        assert_eq!(header(&limited, "retry-after"), "Wed, 18 Mar 2026 08:01:01 GMT");
        tokio::time::advance(Duration::from_millis(60_500)).await; // 08:01:00.750: window over, but early
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(sim.stats().retry_after_violations, 1);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_retry_after_omitted_uses_reset_header() {
        let mut o = opts(10);
        o.faults.rate_limit = Some((1, Duration::from_secs(10)));
        o.faults.retry_after = RetryAfterMode::Omit;
        let sim = start(o, Clock::starting_at(t0())).await;
        page(&sim, "").await;
        let limited = page(&sim, "").await;
        assert_eq!((limited.status, limited.headers.get("retry-after")), (429, None));
        assert_eq!(header(&limited, "x-ratelimit-reset"), (t0().timestamp() + 10).to_string());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(sim.stats().retry_after_violations, 0);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_error_rate_is_reproducible() {
        let mut o = opts(10);
        o.faults.error_rate = 1.0;
        let sim = start(o.clone(), Clock::starting_at(t0())).await;
        for _ in 0..6 {
            let a = page(&sim, "").await;
            assert!([500, 502, 503].contains(&a.status), "{}", a.status);
            assert!(!header(&a, "x-request-id").is_empty());
        }
        assert_eq!(sim.stats().server_errors, 6);
        sim.shutdown().await;

        o.faults.error_rate = 0.5;
        let mut runs = Vec::new();
        for _ in 0..2 {
            let sim = start(o.clone(), Clock::starting_at(t0())).await;
            let mut statuses = Vec::new();
            for _ in 0..20 {
                statuses.push(page(&sim, "").await.status);
            }
            sim.shutdown().await;
            runs.push(statuses);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains(&200) && runs[0].iter().any(|s| *s >= 500));
    }

    #[tokio::test(start_paused = true)]
    async fn test_malformed_bodies_alternate() {
        let mut o = opts(10);
        o.faults.malformed_rate = 1.0;
        let sim = start(o, Clock::starting_at(t0())).await;
        let mut bodies = Vec::new();
        for _ in 0..3 {
            bodies.push(page(&sim, "").await);
        }
        assert!(bodies.iter().all(|a| a.status == 200));
        assert!(bodies[0].json.is_null() && bodies[0].body.starts_with(b"<html>"));
        assert!(bodies[1].json.is_object() && bodies[1].json.get("items").is_none());
        assert!(bodies[2].json.is_null() && bodies[2].body.starts_with(b"{\"items\":["));
        let s = sim.stats();
        assert_eq!((s.ok, s.malformed, s.served_records), (0, 3, 0));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_stall_at_request_stalls_only_that_request() {
        let mut o = opts(10);
        o.faults.stall_at_request = Some(2);
        o.faults.page_latency = Duration::from_secs(2);
        let clock = Clock::starting_at(t0());
        let sim = start(o, clock.clone()).await;
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(clock.now_utc() - t0(), chrono::Duration::seconds(2), "page_latency on the clock");
        let stalled = tokio::time::timeout(Duration::from_secs(3600), page(&sim, ""));
        let (stalled, ()) = tokio::join!(stalled, sim.wait_for_requests(2));
        assert!(stalled.is_err(), "request 2 must never be answered");
        assert_eq!(page(&sim, "").await.status, 200);
        let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 0, 200]);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_stats_endpoint_serves_counters() {
        let sim = start(opts(10), Clock::starting_at(t0())).await;
        page(&sim, "limit=4").await;
        let stats = get(&sim, "_sim/stats", None).await.json;
        assert_eq!((stats["requests"].as_u64(), stats["served_records"].as_u64()), (Some(1), Some(4)));
        let ids = get(&sim, "_sim/records/aitronos", None).await.json;
        assert_eq!(ids.as_array().map(Vec::len), Some(10));
        sim.shutdown().await;
    }

    /// Parses `flags` as the CLI does (`#[command(flatten)]`).
    fn parse(flags: &str) -> Result<SimulateArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let argv = std::iter::once("simulate").chain(flags.split_whitespace());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn test_simulate_args_parse_every_knob() {
        let flags = "--rate-limit 5/10s --retry-after http-date --error-rate 0.25 \
            --page-latency 250ms --stall-at-request 3 --clamp-limit";
        let o = parse(flags).unwrap().options();
        assert_eq!(o.faults.rate_limit, Some((5, Duration::from_secs(10))));
        assert_eq!(o.faults.retry_after, RetryAfterMode::HttpDate);
        assert_eq!((o.faults.error_rate, o.faults.stall_at_request), (0.25, Some(3)));
        assert!(o.aitronos.clamp_limit && o.faults.page_latency == Duration::from_millis(250));
        let default = parse("").unwrap();
        assert_eq!(default.listen.to_string(), "127.0.0.1:8089");
        assert_eq!(default.options().faults.rate_limit, Faults::default().rate_limit);
        assert_eq!(parse("--rate-limit off").unwrap().rate_limit, RateLimitArg(None));
        assert!(parse("--error-rate 1.5").is_err());
    }

    #[tokio::test]
    async fn test_run_simulate_refuses_non_loopback() {
        let args = parse("--listen 0.0.0.0:0").unwrap();
        let err = run_simulate(args).await.unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }
}
