//! What the contract simulators of vendors we do not build in (`okta_sim`, `github_sim`) share:
//! the fault knobs and their seeded plan, the time a simulator answers at, the request log, the
//! seeded generator of their record stores, opaque cursors and RFC 8288 `Link` values.
//!
//! Owns no vendor's contract: status codes, bodies and headers are each simulator's. It must not
//! sleep on anything but tokio's clock, and must not decide a fault from anything but the seed and
//! the request number (so a run with one seed fails the same requests every time).
#![allow(dead_code)] // each test module uses a different part

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use auditrelay::clock::Clock;
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

/// One fault, as served to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The vendor's rate-limit answer (429, or what the vendor uses), budget headers at 0.
    RateLimited,
    /// A 500 in the vendor's error shape.
    ServerError,
    /// A 503, as a load balancer in front of the vendor gives it.
    Unavailable,
    /// A 200 whose body stops half-way (a valid HTTP message, invalid JSON).
    Truncated,
    /// A 200 whose body is not JSON (an HTML error page from a proxy).
    Malformed,
    /// A 200 with no record and a next link to the same place.
    EmptyWithNext,
    /// The answer comes after this long (tokio's clock).
    Slow(Duration),
    /// The next link points at another origin.
    ForeignNext,
    /// The page starts again with the previous page's last record (a repeated record).
    Duplicate,
}

/// The fault knobs: a script of faults for the next requests, then seeded rates (per mille, per
/// request) decided by hashing the seed with the request number and the fault's kind.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub seed: u64,
    /// Taken one per request, before the rates are asked.
    pub script: Vec<Fault>,
    pub rate_limited: u32,
    pub server_error: u32,
    pub unavailable: u32,
    pub truncated: u32,
    pub malformed: u32,
    pub empty_with_next: u32,
    pub slow: u32,
    pub slow_by: Duration,
    pub foreign_next: u32,
    pub duplicate: u32,
}

/// The faults still to serve: the script left and the seeded rates.
pub struct FaultPlan {
    knobs: Faults,
    script: Mutex<VecDeque<Fault>>,
}

impl FaultPlan {
    pub fn new(knobs: Faults) -> FaultPlan {
        let script = Mutex::new(knobs.script.iter().cloned().collect());
        FaultPlan { knobs, script }
    }

    /// Queues `fault` for the next request not yet given one.
    pub fn push(&self, fault: Fault) {
        self.script.lock().unwrap().push_back(fault);
    }

    /// The fault of request number `n` (0 first), if any: the script first, then the rates in a
    /// fixed order (the first that fires wins).
    pub fn decide(&self, n: u64) -> Option<Fault> {
        if let Some(fault) = self.script.lock().unwrap().pop_front() {
            return Some(fault);
        }
        let k = &self.knobs;
        let rates = [
            (k.rate_limited, Fault::RateLimited),
            (k.server_error, Fault::ServerError),
            (k.unavailable, Fault::Unavailable),
            (k.truncated, Fault::Truncated),
            (k.malformed, Fault::Malformed),
            (k.empty_with_next, Fault::EmptyWithNext),
            (k.slow, Fault::Slow(k.slow_by)),
            (k.foreign_next, Fault::ForeignNext),
            (k.duplicate, Fault::Duplicate),
        ];
        rates.into_iter().enumerate().find_map(|(kind, (permille, fault))| {
            (permille > 0 && mix(k.seed ^ mix(n) ^ mix(kind as u64 + 1)) % 1000 < u64::from(permille)).then_some(fault)
        })
    }
}

/// SplitMix64's finalizer: a well-spread hash of one number.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded generator for the record stores (SplitMix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A UUID-shaped id (version 4 layout), from the generator.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The time a simulator answers at: a fixed instant a test moves with [`advance`](Self::advance)
/// (nothing waits on it), the wall clock plus what was advanced (for runs of the real agent), or
/// an agent's [`Clock`] (the deterministic simulation: tokio's paused clock drives both sides).
pub struct SimTime {
    fixed: Option<DateTime<Utc>>,
    clock: Option<Clock>,
    advanced: Mutex<chrono::Duration>,
}

impl SimTime {
    pub fn new(fixed: Option<DateTime<Utc>>) -> SimTime {
        SimTime { fixed, clock: None, advanced: Mutex::new(chrono::Duration::zero()) }
    }
    /// The time of `clock` (its virtual wall time when tokio's clock is paused).
    pub fn on_clock(clock: Clock) -> SimTime {
        SimTime { fixed: None, clock: Some(clock), advanced: Mutex::new(chrono::Duration::zero()) }
    }
    pub fn now(&self) -> DateTime<Utc> {
        let base = match (&self.clock, self.fixed) {
            (Some(clock), _) => clock.now_utc(),
            (None, Some(fixed)) => fixed,
            (None, None) => Utc::now(),
        };
        base + *self.advanced.lock().unwrap()
    }
    /// Whether it reads a [`Clock`]: the simulator then writes its own `Date` header (hyper's
    /// would be the machine's wall clock, months away from the simulated one).
    pub fn on_a_clock(&self) -> bool {
        self.clock.is_some()
    }
    pub fn advance(&self, by: Duration) {
        *self.advanced.lock().unwrap() += chrono::Duration::from_std(by).unwrap();
    }
}

/// A fixed-window budget: `limit` requests per window of `window`, windows aligned on the epoch.
pub struct Budget {
    pub limit: u32,
    pub window: Duration,
    state: Mutex<(i64, u32)>,
}

/// What the budget said of one request.
pub struct Spend {
    pub allowed: bool,
    pub used: u32,
    pub remaining: u32,
    /// Epoch seconds at which the window resets.
    pub reset: i64,
}

impl Budget {
    pub fn new(limit: u32, window: Duration) -> Budget {
        Budget { limit, window, state: Mutex::new((i64::MIN, 0)) }
    }
    /// Counts one request at `now`; a refused request counts too (the vendors count them).
    pub fn spend(&self, now: DateTime<Utc>) -> Spend {
        let secs = self.window.as_secs().max(1) as i64;
        let start = now.timestamp().div_euclid(secs) * secs;
        let mut state = self.state.lock().unwrap();
        if state.0 != start {
            *state = (start, 0);
        }
        state.1 = state.1.saturating_add(1);
        let used = state.1.min(self.limit);
        Spend { allowed: state.1 <= self.limit, used, remaining: self.limit - used, reset: start + secs }
    }
}

/// One request a simulator answered, for assertions.
#[derive(Clone, Debug)]
pub struct Served {
    /// 0 first.
    pub n: u64,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub status: u16,
    pub fault: Option<Fault>,
    /// The ids of the records in the answer, in order.
    pub ids: Vec<String>,
    /// When the request arrived and when it was answered (the simulator's time).
    pub at: DateTime<Utc>,
    pub answered: DateTime<Utc>,
    /// The end of the wait a rate-limit answer announced ([`announced_until`]), if it was one.
    pub until: Option<DateTime<Utc>>,
}

/// The end of the wait a rate-limit answer announces, answered at `answered`: a 429, or a 403
/// with `retry-after` or a spent budget (GitHub's limits), waits for its `retry-after` (seconds),
/// else for the budget's reset (`x-rate-limit-reset` / `x-ratelimit-reset`, epoch seconds) when
/// the remaining budget is 0. Any other answer announces nothing.
pub fn announced_until(status: u16, headers: &HeaderMap, answered: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if status != 429 && status != 403 {
        return None;
    }
    let get = |names: &[&str]| names.iter().find_map(|n| headers.get(*n)?.to_str().ok()?.trim().parse::<i64>().ok());
    let retry = get(&["retry-after"]).map(|s| answered + chrono::Duration::seconds(s));
    let spent = get(&["x-rate-limit-remaining", "x-ratelimit-remaining"]) == Some(0);
    let reset = get(&["x-rate-limit-reset", "x-ratelimit-reset"])
        .filter(|_| spent)
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0));
    match (retry, reset) {
        (Some(r), Some(z)) => Some(r.max(z)),
        (r, z) => r.or(z),
    }
}

/// Sets the answer's `Date` from the simulator's time when it reads an agent's clock.
pub fn date_header(time: &SimTime, response: &mut axum::response::Response) {
    if time.on_a_clock() {
        let date = httpdate::fmt_http_date(std::time::SystemTime::from(time.now()));
        response.headers_mut().insert(axum::http::header::DATE, axum::http::HeaderValue::from_str(&date).unwrap());
    }
}

/// An opaque cursor: a position (time in ms, id) and a mode letter, base64url-encoded.
pub fn encode_cursor(mode: char, at_ms: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{mode}:{at_ms}:{id}"))
}

/// The cursor's mode, time and id; `None` when it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<(char, i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = raw.splitn(3, ':');
    let mode = parts.next()?.chars().next()?;
    let at = parts.next()?.parse().ok()?;
    Some((mode, at, parts.next()?.to_owned()))
}

/// `<url>; rel="rel"` (RFC 8288).
pub fn link(url: &str, rel: &str) -> String {
    format!("<{url}>; rel=\"{rel}\"")
}

/// Builds `origin + path + ?query` from pairs, form-encoded.
pub fn url_with(origin: &str, path: &str, pairs: &[(String, String)]) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    if query.is_empty() { format!("{origin}{path}") } else { format!("{origin}{path}?{query}") }
}

/// The query string as pairs, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// The first value of `key` in `pairs`.
pub fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A body cut half-way: the HTTP message is whole, the JSON in it is not.
pub fn truncate(body: &str) -> String {
    let mut cut = body.len() / 2;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    body[..cut].to_owned()
}

/// What a proxy answers instead of JSON.
pub const HTML_PAGE: &str = "<html><head><title>502 Bad Gateway</title></head><body>upstream error</body></html>";

/// The origin a [`Fault::ForeignNext`] link points at: another port of loopback, never served.
pub const FOREIGN_ORIGIN: &str = "http://127.0.0.2:9";
