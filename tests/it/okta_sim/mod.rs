//! A contract simulator of Okta's System Log API, `GET /api/v1/logs`, served on 127.0.0.1 for
//! the tests that run the agent against a vendor definition (`config/vendors.d/okta.toml`).
//!
//! It is an emulator of documented behaviour, not the product. Followed:
//! - System Log API: <https://developer.okta.com/docs/api/openapi/okta-management/management/tag/SystemLog/>
//!   and <https://developer.okta.com/docs/reference/api/system-log/> (request types, LogEvent
//!   object): `since`, `until`, `after`, `filter`, `q`, `limit` (default 100, at most 1000),
//!   `sortOrder` (`ASCENDING` default, `DESCENDING`); `since` defaults to 7 days before `until`;
//!   "bounded" requests (with `until`) filter on `published`, "polling" requests (without
//!   `until`) on the time the event was persisted, and a polling request always answers a
//!   `next` link, even after an empty page (okta/okta-sdk-python#231 is that loop seen in the
//!   field); `Link: <…>; rel="self"` and `Link: <…>; rel="next"` headers, the `after` cursor
//!   opaque (<https://developer.okta.com/docs/api/#pagination>); retention of 90 days.
//! - Rate limits: <https://developer.okta.com/docs/reference/rl-best-practices/>:
//!   `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining`, `X-Rate-Limit-Reset` (UTC epoch seconds) on
//!   every answer; a spent budget is 429 with `errorCode` `E0000047`. `/api/v1/logs` has a
//!   per-minute org budget (120 by default here, [`OktaOptions::rate_limit`]).
//! - Errors: <https://developer.okta.com/docs/reference/error-codes/>: the body
//!   `{errorCode, errorSummary, errorLink, errorId, errorCauses}`; `E0000011` "Invalid token
//!   provided" (401) for a missing or wrong `Authorization: SSWS <token>`; `E0000001` "Api
//!   validation failed" (400) for a bad parameter.
//!
//! Choices where the docs are silent:
//! - `since` is inclusive, `until` exclusive (a half-open window; Okta's examples page with
//!   adjacent windows), both RFC 3339 with any offset; a `since` past the 90-day retention, a
//!   `limit` outside 1..=1000 or a cursor not ours is a 400 `E0000001` naming the parameter.
//! - Events with one `published` time are ordered by `uuid` (a stable tie order); a bounded
//!   answer has a `next` link exactly when records remain after its page.
//! - A polling request pages by persistence time (the event's arrival, [`LogEvent::arrival`]);
//!   `DESCENDING` without `until` is a 400 (Okta documents polling as ascending only).
//! - `filter` supports `eventType eq "…"` only (anything else is a 400 naming it); `q` matches
//!   events whose JSON holds every word, case-insensitively.
//! - Budget: every request counts, refused ones too, in fixed minute windows; the budget is
//!   asked before authentication, so a 401 carries the headers too.
//!
//! Faults (`contract_sim::Faults`, seeded per request number): 429 storms, 500, 503 (an HTML
//! page from a load balancer), truncated and malformed bodies, an empty page with a next link,
//! slow answers, a next link to another origin, a page that repeats the previous page's last
//! event. Every answer is logged ([`OktaSim::served`]) with its query and the uuids it held.
#![allow(dead_code)] // each test module uses a different part

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Value, json};

use super::contract_sim::{
    Budget, FOREIGN_ORIGIN, Fault, FaultPlan, Faults, HTML_PAGE, Rng, Served, SimTime, Spend, announced_until,
    date_header, decode_cursor, encode_cursor, link, param, query_pairs, truncate, url_with,
};
use super::killable::Serving;

pub const PATH: &str = "/api/v1/logs";
/// Okta's documented maximum `limit`.
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;
const RETENTION_DAYS: i64 = 90;
const DEFAULT_SINCE_DAYS: i64 = 7;

/// How the simulated org behaves.
#[derive(Clone, Debug)]
pub struct OktaOptions {
    /// The API token: `Authorization: SSWS <token>`.
    pub token: String,
    pub seed: u64,
    /// How many events the store holds, published evenly (with ties) over `start..start+span`.
    pub records: usize,
    pub start: DateTime<Utc>,
    pub span: Duration,
    /// Per mille of events persisted late (eventual consistency), by up to `max_lateness`.
    pub late_permille: u32,
    pub max_lateness: Duration,
    /// Requests per minute.
    pub rate_limit: u32,
    /// The time the org answers at; `None`: the wall clock (moved by [`OktaSim::advance`]).
    pub now: Option<DateTime<Utc>>,
    pub faults: Faults,
}

impl Default for OktaOptions {
    fn default() -> OktaOptions {
        let start = Utc.with_ymd_and_hms(2026, 3, 18, 0, 0, 0).unwrap();
        OktaOptions {
            token: "00okta-sim-api-token".into(),
            seed: 20,
            records: 300,
            start,
            span: Duration::from_secs(6 * 3600),
            late_permille: 100,
            max_lateness: Duration::from_secs(600),
            rate_limit: 120,
            now: Some(start + chrono::Duration::hours(7)),
            faults: Faults::default(),
        }
    }
}

impl OktaOptions {
    /// For runs of the real agent: the wall clock, the store published over the `span` before
    /// now (its late events persisted in the minutes to come).
    pub fn live(span: Duration) -> OktaOptions {
        let start = Utc::now() - chrono::Duration::from_std(span).unwrap();
        OktaOptions { start, span, now: None, ..OktaOptions::default() }
    }
}

/// One event of the store.
#[derive(Clone, Debug)]
pub struct LogEvent {
    pub uuid: String,
    /// `published`, epoch ms.
    pub published: i64,
    /// When Okta persisted it (from then on it is served), epoch ms.
    pub arrival: i64,
    pub json: Value,
}

/// The running simulator; stops when dropped.
pub struct OktaSim {
    serving: Serving,
    state: Arc<OktaState>,
}

struct OktaState {
    opts: OktaOptions,
    /// `http://127.0.0.1:<port>`, set once bound.
    origin: OnceLock<String>,
    /// Sorted by (`published`, `uuid`).
    events: Vec<LogEvent>,
    time: SimTime,
    budget: Budget,
    faults: FaultPlan,
    requests: AtomicU64,
    served: Mutex<Vec<Served>>,
}

impl OktaSim {
    pub async fn start(opts: OktaOptions) -> OktaSim {
        let time = SimTime::new(opts.now);
        OktaSim::start_with(opts, time).await
    }

    /// A simulator whose org answers at `clock`'s time (the deterministic simulation's vendor
    /// clock, on tokio's paused clock): arrivals and budget windows follow virtual time.
    pub async fn start_on_clock(opts: OktaOptions, clock: auditrelay::clock::Clock) -> OktaSim {
        OktaSim::start_with(opts, SimTime::on_clock(clock)).await
    }

    async fn start_with(opts: OktaOptions, time: SimTime) -> OktaSim {
        let state = Arc::new(OktaState {
            events: generate(&opts),
            time,
            budget: Budget::new(opts.rate_limit, Duration::from_secs(60)),
            faults: FaultPlan::new(opts.faults.clone()),
            requests: AtomicU64::new(0),
            served: Mutex::new(Vec::new()),
            origin: OnceLock::new(),
            opts,
        });
        let app = Router::new().route(PATH, get(logs)).with_state(state.clone());
        let serving = Serving::start("okta_sim", None, app).await;
        // Known only once bound; no request can come before `start` returns the address.
        state.origin.set(format!("http://{}", serving.addr())).unwrap();
        OktaSim { serving, state }
    }

    /// `http://127.0.0.1:<port>`: the source's `base_url`.
    pub fn origin(&self) -> &str {
        self.state.origin.get().map_or("", String::as_str)
    }
    pub fn token(&self) -> &str {
        &self.state.opts.token
    }
    /// Every event of the store, served or not yet arrived, in (`published`, `uuid`) order.
    pub fn events(&self) -> &[LogEvent] {
        &self.state.events
    }
    /// The uuids a bounded request for `[since, until)` would cover once every event arrived.
    pub fn uuids_between(&self, since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<String> {
        let (a, b) = (since.timestamp_millis(), until.timestamp_millis());
        self.state.events.iter().filter(|e| e.published >= a && e.published < b).map(|e| e.uuid.clone()).collect()
    }
    pub fn now(&self) -> DateTime<Utc> {
        self.state.time.now()
    }
    /// Moves the org's time on (arrivals, budget windows); nothing waits.
    pub fn advance(&self, by: Duration) {
        self.state.time.advance(by);
    }
    /// Queues a fault for the next request.
    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.push(fault);
    }
    /// Every answer so far, in order.
    pub fn served(&self) -> Vec<Served> {
        self.state.served.lock().unwrap().clone()
    }
    /// Every uuid served so far (with repeats), in order.
    pub fn served_uuids(&self) -> Vec<String> {
        self.served().into_iter().flat_map(|s| s.ids).collect()
    }
    pub async fn stop(&self) {
        self.serving.stop().await;
    }
}

/// `GET /api/v1/logs`.
async fn logs(State(s): State<Arc<OktaState>>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let n = s.requests.fetch_add(1, Ordering::SeqCst);
    let fault = s.faults.decide(n);
    let now = s.time.now();
    let at = now;
    let spend = s.budget.spend(now);
    if let Some(Fault::Slow(by)) = &fault {
        tokio::time::sleep(*by).await;
    }
    let (status, mut response, ids) = answer(&s, &headers, &query, &fault, &spend, now);
    let limits = [
        ("x-rate-limit-limit", s.budget.limit.to_string()),
        ("x-rate-limit-remaining", if status == 429 { "0".into() } else { spend.remaining.to_string() }),
        ("x-rate-limit-reset", spend.reset.to_string()),
    ];
    for (name, value) in limits {
        response.headers_mut().insert(name, HeaderValue::from_str(&value).unwrap());
    }
    date_header(&s.time, &mut response);
    let answered = s.time.now();
    let until = announced_until(status, response.headers(), answered);
    let served = Served { n, path: PATH.into(), query, status, fault, ids, at, answered, until };
    s.served.lock().unwrap().push(served);
    response
}

fn answer(
    s: &OktaState,
    headers: &HeaderMap,
    query: &str,
    fault: &Option<Fault>,
    spend: &Spend,
    now: DateTime<Utc>,
) -> (u16, Response, Vec<String>) {
    let authorized = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(format!("SSWS {}", s.opts.token).as_str());
    if !authorized {
        return (401, error(401, "E0000011", "Invalid token provided", &[]), vec![]);
    }
    if !spend.allowed || *fault == Some(Fault::RateLimited) {
        let summary = "API call exceeded rate limit due to too many requests.";
        return (429, error(429, "E0000047", summary, &[]), vec![]);
    }
    match fault {
        Some(Fault::ServerError) => return (500, error(500, "E0000009", "Internal Server Error", &[]), vec![]),
        Some(Fault::Unavailable) => {
            let page = ([(header::CONTENT_TYPE, "text/html")], HTML_PAGE);
            return (503, (StatusCode::SERVICE_UNAVAILABLE, page).into_response(), vec![]);
        }
        _ => {}
    }
    let pairs = query_pairs(query);
    let page = match select(s, &pairs, now) {
        Ok(page) => page,
        Err(key) => {
            let (summary, cause) =
                (format!("Api validation failed: {key}"), format!("{key}: the parameter is invalid"));
            return (400, error(400, "E0000001", &summary, &[&cause]), vec![]);
        }
    };
    let mut events: Vec<&LogEvent> = if *fault == Some(Fault::EmptyWithNext) { vec![] } else { page.events };
    let mut next = page.next;
    if *fault == Some(Fault::EmptyWithNext) {
        // The next link leads back to where this page started: nothing was consumed.
        next = Some(page.started_at.unwrap_or_else(|| encode_cursor(page.mode, 0, "")));
    }
    if *fault == Some(Fault::Duplicate)
        && let Some(repeat) = page.before
    {
        events.insert(0, repeat);
    }
    let ids: Vec<String> = events.iter().map(|e| e.uuid.clone()).collect();
    let body = Value::Array(events.iter().map(|e| e.json.clone()).collect()).to_string();
    let body = match fault {
        Some(Fault::Truncated) => truncate(&body),
        Some(Fault::Malformed) => HTML_PAGE.to_owned(),
        _ => body,
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    let own = s.origin.get().map_or("", String::as_str);
    let self_url = if query.is_empty() { format!("{own}{PATH}") } else { format!("{own}{PATH}?{query}") };
    response.headers_mut().append(header::LINK, HeaderValue::from_str(&link(&self_url, "self")).unwrap());
    if let Some(cursor) = next {
        // Okta's next link repeats the request's parameters with the new `after`.
        let mut next_pairs: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "after").collect();
        next_pairs.push(("after".into(), cursor));
        let origin = if *fault == Some(Fault::ForeignNext) { FOREIGN_ORIGIN } else { own };
        let url = url_with(origin, PATH, &next_pairs);
        response.headers_mut().append(header::LINK, HeaderValue::from_str(&link(&url, "next")).unwrap());
    }
    (200, response, ids)
}

/// One page: its events, the cursor of its next page, the cursor it started at and the event
/// just before it (what a [`Fault::Duplicate`] repeats).
struct Page<'a> {
    mode: char,
    events: Vec<&'a LogEvent>,
    next: Option<String>,
    started_at: Option<String>,
    before: Option<&'a LogEvent>,
}

/// The page `pairs` asks for, or the name of the parameter at fault.
fn select<'a>(s: &'a OktaState, pairs: &[(String, String)], now: DateTime<Utc>) -> Result<Page<'a>, &'static str> {
    let time = |key: &'static str| -> Result<Option<i64>, &'static str> {
        match param(pairs, key) {
            None => Ok(None),
            Some(v) => DateTime::parse_from_rfc3339(v).map(|t| Some(t.timestamp_millis())).map_err(|_| key),
        }
    };
    let limit = match param(pairs, "limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v.parse::<usize>().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or("limit")?,
    };
    let descending = match param(pairs, "sortOrder") {
        None | Some("ASCENDING") => false,
        Some("DESCENDING") => true,
        Some(_) => return Err("sortOrder"),
    };
    let now_ms = now.timestamp_millis();
    let until = time("until")?;
    let since = time("since")?.unwrap_or(until.unwrap_or(now_ms) - DEFAULT_SINCE_DAYS * 86_400_000);
    if since < now_ms - RETENTION_DAYS * 86_400_000 {
        return Err("since");
    }
    let event_type = match param(pairs, "filter") {
        None => None,
        Some(f) => Some(parse_filter(f).ok_or("filter")?),
    };
    let words: Vec<String> =
        param(pairs, "q").map(|q| q.split_whitespace().map(str::to_lowercase).collect()).unwrap_or_default();
    let mode = if until.is_some() { 'b' } else { 'p' };
    if mode == 'p' && descending {
        return Err("sortOrder");
    }
    let after = match param(pairs, "after") {
        None => None,
        Some(c) => Some(decode_cursor(c).filter(|(m, _, _)| *m == mode).ok_or("after")?),
    };
    let mut matching: Vec<&LogEvent> = s
        .events
        .iter()
        .filter(|e| e.arrival <= now_ms)
        .filter(|e| match until {
            Some(until) => e.published >= since && e.published < until,
            None => e.arrival >= since,
        })
        .filter(|e| event_type.as_deref().is_none_or(|t| e.json["eventType"] == t))
        .filter(|e| {
            let text = e.json.to_string().to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect();
    matching.sort_by(|a, b| key(mode, a).cmp(&key(mode, b)));
    if descending {
        matching.reverse();
    }
    let past = |e: &&LogEvent| match &after {
        None => true,
        Some((_, at, id)) if descending => key(mode, e) < (*at, id.as_str()),
        Some((_, at, id)) => key(mode, e) > (*at, id.as_str()),
    };
    let first = matching.iter().position(past).unwrap_or(matching.len());
    let events: Vec<&LogEvent> = matching[first..].iter().take(limit).copied().collect();
    let more = matching.len() > first + events.len();
    let cursor_of = |e: &LogEvent| {
        let (at, id) = key(mode, e);
        encode_cursor(mode, at, id)
    };
    let started_at = param(pairs, "after").map(str::to_owned);
    let next = match (mode, events.last()) {
        ('b', Some(last)) if more => Some(cursor_of(last)),
        ('b', _) => None,
        // A poll always has a next link: after its last event, or where it started.
        (_, Some(last)) => Some(cursor_of(last)),
        (_, None) => Some(started_at.clone().unwrap_or_else(|| encode_cursor(mode, since, ""))),
    };
    let before = first.checked_sub(1).map(|i| matching[i]);
    Ok(Page { mode, events, next, started_at, before })
}

/// The key a page is ordered and cut by: `published` for bounded requests, arrival for polls.
fn key(mode: char, e: &LogEvent) -> (i64, &str) {
    if mode == 'b' { (e.published, e.uuid.as_str()) } else { (e.arrival, e.uuid.as_str()) }
}

/// `eventType eq "x"` → `x`.
fn parse_filter(filter: &str) -> Option<String> {
    let rest = filter.trim().strip_prefix("eventType")?.trim_start().strip_prefix("eq")?.trim();
    Some(rest.strip_prefix('"')?.strip_suffix('"')?.to_owned())
}

/// Okta's error body.
fn error(status: u16, code: &str, summary: &str, causes: &[&str]) -> Response {
    let body = json!({
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": format!("oae{status}sim{code}"),
        "errorCauses": causes.iter().map(|c| json!({ "errorSummary": c })).collect::<Vec<_>>(),
    });
    let status = StatusCode::from_u16(status).unwrap();
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// eventType, displayMessage, severity, the target's type (None: the actor acts on itself).
const EVENT_TYPES: &[(&str, &str, &str, Option<&str>)] = &[
    ("user.session.start", "User login to Okta", "INFO", None),
    ("user.session.end", "User logout from Okta", "INFO", None),
    ("user.authentication.sso", "User single sign on to app", "INFO", Some("AppInstance")),
    ("user.authentication.auth_via_mfa", "Authentication of user via MFA", "INFO", None),
    ("user.mfa.factor.deactivate", "Reset factor for user", "WARN", Some("User")),
    ("user.account.lock", "Max sign in attempts exceeded", "WARN", Some("User")),
    ("user.lifecycle.create", "Create okta user", "INFO", Some("User")),
    ("user.lifecycle.deactivate", "Deactivate Okta user", "INFO", Some("User")),
    ("user.account.privilege.grant", "Grant user privilege", "WARN", Some("User")),
    ("group.user_membership.add", "Add user to group membership", "INFO", Some("UserGroup")),
    ("application.user_membership.add", "Add user to application membership", "INFO", Some("AppUser")),
    ("policy.lifecycle.update", "Update policy", "INFO", Some("PolicyEntity")),
    ("system.api_token.create", "Create API token", "WARN", Some("Token")),
    ("security.threat.detected", "Request from suspicious actor", "WARN", None),
];

const PEOPLE: &[(&str, &str, &str)] = &[
    ("00u1qw1mqitPHM8AJ0g7", "John Fung", "john.fung@example.com"),
    ("00u2ab3cdeFGHIjk4l5m", "Ana Silva", "ana.silva@example.com"),
    ("00u9zy8xwvUTSrq7p6o5", "Wei Chen", "wei.chen@example.com"),
    ("00u5mn4opqRSTuv3w2x1", "Grace Okafor", "grace.okafor@example.com"),
];

const CLIENTS: &[(&str, &str, &str, &str)] = &[
    (
        "198.51.100.23",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
        "Windows",
        "CHROME",
    ),
    (
        "203.0.113.77",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
        "Mac OS X",
        "SAFARI",
    ),
    ("2001:db8::5", "okta-sdk-java/16.0.0 java/17.0.9 Linux/6.1", "Linux", "UNKNOWN"),
    ("192.0.2.140", "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Linux", "FIREFOX"),
];

/// The seeded store: `records` events over `start..start+span`, every fifth sharing its
/// predecessor's `published` (ties), some persisted late.
fn generate(opts: &OktaOptions) -> Vec<LogEvent> {
    let mut rng = Rng::new(opts.seed);
    let start = opts.start.timestamp_millis();
    let step = (opts.span.as_millis() as i64 / opts.records.max(1) as i64).max(1);
    let mut published = start;
    let mut events: Vec<LogEvent> = (0..opts.records)
        .map(|i| {
            if i % 5 != 4 {
                published = start + i as i64 * step + rng.below(step as u64) as i64;
            }
            let late = rng.below(1000) < u64::from(opts.late_permille);
            let lateness = if late { 1 + rng.below(opts.max_lateness.as_millis().max(1) as u64) as i64 } else { 0 };
            let uuid = rng.uuid();
            let json = event_json(&mut rng, &uuid, published);
            LogEvent { uuid, published, arrival: published + lateness, json }
        })
        .collect();
    events.sort_by(|a, b| (a.published, &a.uuid).cmp(&(b.published, &b.uuid)));
    events
}

fn event_json(rng: &mut Rng, uuid: &str, published: i64) -> Value {
    let (event_type, message, severity, target_type) = *rng.pick(EVENT_TYPES);
    let (actor_id, actor_name, actor_email) = *rng.pick(PEOPLE);
    let (ip, agent, os, browser) = *rng.pick(CLIENTS);
    let failed = rng.below(10) == 0;
    let (result, reason) = match (event_type, failed) {
        ("security.threat.detected", _) => ("DENY", Value::from("Password Spray")),
        (_, true) => ("FAILURE", Value::from("INVALID_CREDENTIALS")),
        _ => ("SUCCESS", Value::Null),
    };
    let target = match target_type {
        None => json!([]),
        Some("User") => {
            let (id, name, email) = *rng.pick(PEOPLE);
            json!([{ "id": id, "type": "User", "alternateId": email, "displayName": name, "detailEntry": null }])
        }
        Some(kind) => {
            let id = format!("0oa{:017x}", rng.next() >> 4);
            json!([{ "id": id, "type": kind, "alternateId": "unknown", "displayName": format!("{kind} {}", &id[3..9]), "detailEntry": null }])
        }
    };
    let at = Utc.timestamp_millis_opt(published).unwrap().to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({
        "uuid": uuid,
        "published": at,
        "eventType": event_type,
        "version": "0",
        "severity": severity,
        "legacyEventType": null,
        "displayMessage": message,
        "actor": { "id": actor_id, "type": "User", "alternateId": actor_email, "displayName": actor_name, "detailEntry": null },
        "client": {
            "userAgent": { "rawUserAgent": agent, "os": os, "browser": browser },
            "zone": "null",
            "device": "Computer",
            "id": null,
            "ipAddress": ip,
            "geographicalContext": { "city": "Lisbon", "state": "Lisbon", "country": "Portugal", "postalCode": null, "geolocation": { "lat": 38.72, "lon": -9.14 } }
        },
        "device": null,
        "authenticationContext": {
            "authenticationProvider": "OKTA_AUTHENTICATION_PROVIDER",
            "credentialProvider": null,
            "credentialType": null,
            "issuer": null,
            "interface": null,
            "authenticationStep": 0,
            "externalSessionId": format!("102{:013x}", rng.next() >> 12)
        },
        "outcome": { "result": result, "reason": reason },
        "securityContext": { "asNumber": 64496, "asOrg": "example isp", "isp": "example isp", "domain": "example.net", "isProxy": false },
        "debugContext": { "debugData": { "requestId": format!("Z{:015x}", rng.next() >> 4), "requestUri": "/api/v1/authn", "url": "/api/v1/authn?" } },
        "transaction": { "type": "WEB", "id": format!("W{:015x}", rng.next() >> 4), "detail": {} },
        "request": { "ipChain": [{ "ip": ip, "version": if ip.contains(':') { "V6" } else { "V4" }, "source": null }] },
        "target": target,
    })
}
