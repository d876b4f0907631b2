//! A contract simulator of GitHub's "Get the audit log for an enterprise",
//! `GET /enterprises/{enterprise}/audit-log`, served on 127.0.0.1 for the tests that run the agent
//! against a vendor definition (`config/vendors.d/github-enterprise.toml`).
//!
//! It is an emulator of documented behaviour, not the product. Followed:
//! - <https://docs.github.com/en/rest/enterprise-admin/audit-log#get-the-audit-log-for-an-enterprise>:
//!   `phrase`, `include` (`web` default, `git`, `all`), `after`/`before` ("a cursor, as given in
//!   the Link header"), `order` (`desc` default, `asc`), `per_page` (default 30, max 100); the
//!   endpoint's own limit of 1,750 queries per hour.
//! - <https://docs.github.com/en/enterprise-cloud@latest/admin/monitoring-activity-in-your-enterprise/reviewing-audit-logs-for-your-enterprise/using-the-audit-log-api-for-your-enterprise>:
//!   `@timestamp` and `created_at` in UTC epoch milliseconds, `_document_id`; events of the
//!   last 180 days, Git events kept seven days and served only with `include=git|all`.
//! - Search syntax, <https://docs.github.com/en/search-github/getting-started-with-searching-on-github/understanding-the-search-syntax#query-for-dates>:
//!   `created:A..B` (inclusive, `*` an open end), `created:>=A`, `>A`, `<=A`, `<A`, `created:A`
//!   (that day), A a date `YYYY-MM-DD` or a date-time `YYYY-MM-DDTHH:MM:SS` with an optional
//!   offset; `action:` and `actor:` qualifiers.
//! - <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>: the
//!   `Link` header, one value with `rel="next"`, `rel="prev"`, `rel="first"`.
//! - <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>:
//!   `x-ratelimit-limit`, `-remaining`, `-used`, `-reset` (UTC epoch seconds), `-resource`; a
//!   spent primary limit answers 403 (or 429) with `x-ratelimit-remaining: 0`; a secondary limit
//!   answers 403 (or 429) with a message and possibly `retry-after` (seconds).
//! - Authentication: `Authorization: Bearer <token>` or `Authorization: token <token>`; a bad
//!   one is 401 `{"message":"Bad credentials", …}`. With [`GithubAuth::OAuth`] the tokens are the
//!   `oauth_sim`'s (a test set-up: GitHub itself issues no client-credentials tokens).
//!
//! Choices where the docs are silent:
//! - Ties of `@timestamp` are ordered by `_document_id`. The cursors encode a position;
//!   `after` lists what follows it in the requested order, `before` what precedes it (the last
//!   `per_page` of those). `next` is given exactly when records remain, `prev` when records
//!   precede the page, `first` whenever the request carried a cursor.
//! - `after` with `before`, an unknown qualifier or value is 422 "Validation Failed".
//! - The primary budget (5,000 an hour) counts authenticated requests; the audit-log budget
//!   (1,750 an hour) is answered as a secondary limit: 403 with `retry-after` to the hour's end.
//!   [`GithubOptions::spent_status`] chooses 403 or 429 for both.
//!
//! Faults (`contract_sim::Faults`, seeded per request number): secondary-limit storms (403 with
//! `retry-after`), 500, 503 (an HTML page), truncated and malformed bodies, an empty page with a
//! next link, slow answers, a next link to another origin, a repeated record. Every answer is
//! logged ([`GithubSim::served`]) with its query and the `_document_id`s it held.
#![allow(dead_code)] // each test module uses a different part

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::contract_sim::{
    Budget, FOREIGN_ORIGIN, Fault, FaultPlan, Faults, HTML_PAGE, Rng, Served, SimTime, announced_until, date_header,
    decode_cursor, encode_cursor, link, param, query_pairs, truncate, url_with,
};
use super::killable::Serving;
use super::oauth_sim::Issued;

pub const MAX_PER_PAGE: usize = 100;
const DEFAULT_PER_PAGE: usize = 30;
const DOCS: &str = "https://docs.github.com/rest";

/// Which credentials the simulated enterprise accepts.
#[derive(Clone)]
pub enum GithubAuth {
    /// Personal access tokens, sent as `Bearer <t>` or `token <t>`.
    Tokens(Vec<String>),
    /// Access tokens from an `oauth_sim` (RFC 6750 challenges on 401).
    OAuth(Issued),
}

#[derive(Clone)]
pub struct GithubOptions {
    /// The enterprise slug in the path.
    pub enterprise: String,
    pub auth: GithubAuth,
    pub seed: u64,
    pub records: usize,
    pub start: DateTime<Utc>,
    pub span: Duration,
    /// Per mille of records indexed late, by up to `max_lateness`.
    pub late_permille: u32,
    pub max_lateness: Duration,
    /// Primary limit, requests per hour.
    pub primary_limit: u32,
    /// The audit-log endpoint's own limit, queries per hour.
    pub audit_log_limit: u32,
    /// 403 (default) or 429 for a spent limit.
    pub spent_status: u16,
    /// The `retry-after` of a secondary-limit fault, seconds.
    pub secondary_retry_after: u64,
    /// The time GitHub answers at; `None`: the wall clock (moved by [`GithubSim::advance`]).
    pub now: Option<DateTime<Utc>>,
    pub faults: Faults,
}

impl Default for GithubOptions {
    fn default() -> GithubOptions {
        let start = Utc.with_ymd_and_hms(2026, 3, 18, 0, 0, 0).unwrap();
        GithubOptions {
            enterprise: "acme-corp".into(),
            auth: GithubAuth::Tokens(vec!["ghp_simulatedToken0123456789abcdef".into()]),
            seed: 20,
            records: 250,
            start,
            span: Duration::from_secs(6 * 3600),
            late_permille: 100,
            max_lateness: Duration::from_secs(900),
            primary_limit: 5000,
            audit_log_limit: 1750,
            spent_status: 403,
            secondary_retry_after: 60,
            now: Some(start + chrono::Duration::hours(7)),
            faults: Faults::default(),
        }
    }
}

impl GithubOptions {
    /// For runs of the real agent: the wall clock, the store over the `span` before now (its
    /// late records indexed in the minutes to come).
    pub fn live(span: Duration) -> GithubOptions {
        let start = Utc::now() - chrono::Duration::from_std(span).unwrap();
        GithubOptions { start, span, now: None, ..GithubOptions::default() }
    }
}

/// One record of the store.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub document_id: String,
    /// `@timestamp`, epoch ms.
    pub at: i64,
    /// When it became searchable, epoch ms.
    pub arrival: i64,
    /// A Git event (served with `include=git|all` only).
    pub git: bool,
    pub json: Value,
}

pub struct GithubSim {
    serving: Serving,
    state: Arc<GithubState>,
}

struct GithubState {
    opts: GithubOptions,
    origin: OnceLock<String>,
    /// Sorted by (`@timestamp`, `_document_id`).
    events: Vec<AuditEvent>,
    time: SimTime,
    primary: Budget,
    audit_log: Budget,
    faults: FaultPlan,
    requests: AtomicU64,
    served: Mutex<Vec<Served>>,
}

impl GithubSim {
    pub async fn start(opts: GithubOptions) -> GithubSim {
        let time = SimTime::new(opts.now);
        GithubSim::start_with(opts, time).await
    }

    /// A simulator whose enterprise answers at `clock`'s time (the deterministic simulation's
    /// vendor clock, on tokio's paused clock): arrivals and budget windows follow virtual time.
    pub async fn start_on_clock(opts: GithubOptions, clock: auditrelay::clock::Clock) -> GithubSim {
        GithubSim::start_with(opts, SimTime::on_clock(clock)).await
    }

    async fn start_with(opts: GithubOptions, time: SimTime) -> GithubSim {
        let state = Arc::new(GithubState {
            events: generate(&opts),
            time,
            primary: Budget::new(opts.primary_limit, Duration::from_secs(3600)),
            audit_log: Budget::new(opts.audit_log_limit, Duration::from_secs(3600)),
            faults: FaultPlan::new(opts.faults.clone()),
            requests: AtomicU64::new(0),
            served: Mutex::new(Vec::new()),
            origin: OnceLock::new(),
            opts,
        });
        let app = Router::new().route("/enterprises/{enterprise}/audit-log", get(audit_log)).with_state(state.clone());
        let serving = Serving::start("github_sim", None, app).await;
        state.origin.set(format!("http://{}", serving.addr())).unwrap();
        GithubSim { serving, state }
    }

    /// `http://127.0.0.1:<port>`: the source's `base_url`.
    pub fn origin(&self) -> &str {
        self.state.origin.get().map_or("", String::as_str)
    }
    pub fn path(&self) -> String {
        format!("/enterprises/{}/audit-log", self.state.opts.enterprise)
    }
    pub fn events(&self) -> &[AuditEvent] {
        &self.state.events
    }
    pub fn now(&self) -> DateTime<Utc> {
        self.state.time.now()
    }
    pub fn advance(&self, by: Duration) {
        self.state.time.advance(by);
    }
    pub fn push_fault(&self, fault: Fault) {
        self.state.faults.push(fault);
    }
    pub fn served(&self) -> Vec<Served> {
        self.state.served.lock().unwrap().clone()
    }
    pub fn served_ids(&self) -> Vec<String> {
        self.served().into_iter().flat_map(|s| s.ids).collect()
    }
    pub async fn stop(&self) {
        self.serving.stop().await;
    }
}

async fn audit_log(
    State(s): State<Arc<GithubState>>,
    Path(enterprise): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let n = s.requests.fetch_add(1, Ordering::SeqCst);
    let fault = s.faults.decide(n);
    let at = s.time.now();
    if let Some(Fault::Slow(by)) = &fault {
        tokio::time::sleep(*by).await;
    }
    let (status, mut response, ids) = answer(&s, &enterprise, &headers, &query, &fault);
    date_header(&s.time, &mut response);
    let answered = s.time.now();
    let until = announced_until(status, response.headers(), answered);
    let path = format!("/enterprises/{enterprise}/audit-log");
    s.served.lock().unwrap().push(Served { n, path, query, status, fault, ids, at, answered, until });
    response
}

/// GitHub's error body.
fn error(status: u16, message: &str, extra: &[(&'static str, String)]) -> Response {
    let body = json!({ "message": message, "documentation_url": DOCS, "status": status.to_string() });
    let mut response = (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    for (name, value) in extra {
        response.headers_mut().insert(*name, HeaderValue::from_str(value).unwrap());
    }
    response
}

fn answer(
    s: &GithubState,
    enterprise: &str,
    headers: &HeaderMap,
    query: &str,
    fault: &Option<Fault>,
) -> (u16, Response, Vec<String>) {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let refused = match &s.opts.auth {
        GithubAuth::Tokens(tokens) => {
            let given = authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("token "));
            (!given.is_some_and(|t| tokens.iter().any(|k| k == t))).then_some(None)
        }
        GithubAuth::OAuth(issued) => issued.check(headers).err().map(Some),
    };
    if let Some(challenge) = refused {
        let mut response = error(401, "Bad credentials", &[]);
        if let Some(challenge) = challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        return (401, response, vec![]);
    }
    let now = s.time.now();
    let primary = s.primary.spend(now);
    let limits = |remaining: u32| {
        vec![
            ("x-ratelimit-limit", s.primary.limit.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-used", primary.used.to_string()),
            ("x-ratelimit-reset", primary.reset.to_string()),
            ("x-ratelimit-resource", "core".to_string()),
            ("x-github-api-version-selected", "2022-11-28".to_string()),
        ]
    };
    let spent = s.opts.spent_status;
    if !primary.allowed {
        let message = "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.";
        return (spent, error(spent, message, &limits(0)), vec![]);
    }
    let secondary = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
    let audit = s.audit_log.spend(now);
    if !audit.allowed {
        let mut extra = limits(primary.remaining);
        extra.push(("retry-after", (audit.reset - now.timestamp()).max(1).to_string()));
        return (spent, error(spent, secondary, &extra), vec![]);
    }
    let extra = limits(primary.remaining);
    match fault {
        Some(Fault::RateLimited) => {
            let mut extra = extra;
            extra.push(("retry-after", s.opts.secondary_retry_after.to_string()));
            return (spent, error(spent, secondary, &extra), vec![]);
        }
        Some(Fault::ServerError) => return (500, error(500, "Server Error", &extra), vec![]),
        Some(Fault::Unavailable) => {
            let page = ([(header::CONTENT_TYPE, "text/html")], HTML_PAGE);
            return (503, (StatusCode::SERVICE_UNAVAILABLE, page).into_response(), vec![]);
        }
        _ => {}
    }
    if enterprise != s.opts.enterprise {
        return (404, error(404, "Not Found", &extra), vec![]);
    }
    let pairs = query_pairs(query);
    let page = match select(s, &pairs, now.timestamp_millis()) {
        Ok(page) => page,
        Err(why) => {
            let mut response = error(422, "Validation Failed", &extra);
            let body =
                json!({ "message": "Validation Failed", "errors": [why], "documentation_url": DOCS, "status": "422" });
            *response.body_mut() = body.to_string().into();
            return (422, response, vec![]);
        }
    };
    let mut events = page.events;
    let mut next = page.next;
    if *fault == Some(Fault::EmptyWithNext) {
        events.clear();
        next = Some(match (param(&pairs, "after"), param(&pairs, "before")) {
            (Some(c), _) | (None, Some(c)) => c.to_owned(),
            (None, None) => encode_cursor('g', if page.descending { i64::MAX } else { i64::MIN }, ""),
        });
    }
    if *fault == Some(Fault::Duplicate)
        && let Some(repeat) = page.before
    {
        events.insert(0, repeat);
    }
    let ids: Vec<String> = events.iter().map(|e| e.document_id.clone()).collect();
    let body = Value::Array(events.iter().map(|e| e.json.clone()).collect()).to_string();
    let body = match fault {
        Some(Fault::Truncated) => truncate(&body),
        Some(Fault::Malformed) => HTML_PAGE.to_owned(),
        _ => body,
    };
    let own = s.origin.get().map_or("", String::as_str);
    let origin = if *fault == Some(Fault::ForeignNext) { FOREIGN_ORIGIN } else { own };
    let base: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| k != "after" && k != "before").collect();
    let path = format!("/enterprises/{enterprise}/audit-log");
    let with = |key: &str, cursor: String| {
        let mut pairs = base.clone();
        pairs.push((key.to_owned(), cursor));
        pairs
    };
    let mut links = Vec::new();
    if let Some(cursor) = next {
        links.push(link(&url_with(origin, &path, &with("after", cursor)), "next"));
    }
    if let Some(cursor) = page.prev {
        links.push(link(&url_with(own, &path, &with("before", cursor)), "prev"));
    }
    if page.had_cursor {
        links.push(link(&url_with(own, &path, &base), "first"));
    }
    let mut response = ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, HeaderValue::from_str(&value).unwrap());
    }
    if !links.is_empty() {
        response.headers_mut().insert(header::LINK, HeaderValue::from_str(&links.join(", ")).unwrap());
    }
    (200, response, ids)
}

struct Page<'a> {
    descending: bool,
    events: Vec<&'a AuditEvent>,
    next: Option<String>,
    prev: Option<String>,
    had_cursor: bool,
    /// The record just before the page (what a [`Fault::Duplicate`] repeats).
    before: Option<&'a AuditEvent>,
}

fn select<'a>(s: &'a GithubState, pairs: &[(String, String)], now_ms: i64) -> Result<Page<'a>, Value> {
    let invalid =
        |field: &str, why: &str| json!({ "resource": "AuditLog", "field": field, "code": "invalid", "message": why });
    let per_page = match param(pairs, "per_page") {
        None => DEFAULT_PER_PAGE,
        Some(v) => v.parse::<usize>().map_err(|_| invalid("per_page", "not a number"))?.clamp(1, MAX_PER_PAGE),
    };
    let descending = match param(pairs, "order") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(invalid("order", "asc or desc")),
    };
    let (web, git) = match param(pairs, "include") {
        None | Some("web") => (true, false),
        Some("git") => (false, true),
        Some("all") => (true, true),
        Some(_) => return Err(invalid("include", "web, git or all")),
    };
    let phrase = parse_phrase(param(pairs, "phrase").unwrap_or("")).map_err(|why| invalid("phrase", &why))?;
    let cursor = |key: &str| -> Result<Option<(i64, String)>, Value> {
        match param(pairs, key) {
            None => Ok(None),
            Some(c) => decode_cursor(c)
                .filter(|(m, _, _)| *m == 'g')
                .map(|(_, at, id)| Some((at, id)))
                .ok_or(invalid(key, "bad cursor")),
        }
    };
    let (after, before) = (cursor("after")?, cursor("before")?);
    if after.is_some() && before.is_some() {
        return Err(invalid("after", "after and before together"));
    }
    let mut listed: Vec<&AuditEvent> = s
        .events
        .iter()
        .filter(|e| e.arrival <= now_ms && if e.git { git } else { web })
        // Retention: Git events 7 days, the others 180 days (GitHub Enterprise Cloud).
        .filter(|e| e.at >= now_ms - if e.git { 7 } else { 180 } * 86_400_000)
        .filter(|e| phrase.matches(e))
        .collect();
    if descending {
        listed.reverse();
    }
    // Where a cursor sits in the listing: the index of the first record past it.
    let past = |(at, id): &(i64, String)| {
        listed
            .iter()
            .position(|e| {
                let key = (e.at, e.document_id.as_str());
                if descending { key < (*at, id.as_str()) } else { key > (*at, id.as_str()) }
            })
            .unwrap_or(listed.len())
    };
    let (from, to) = match (&after, &before) {
        (Some(c), _) => {
            let from = past(c);
            (from, (from + per_page).min(listed.len()))
        }
        (None, Some(c)) => {
            // Records strictly before the cursor in listing order: those at or past it are not.
            let end = listed
                .iter()
                .position(|e| {
                    let key = (e.at, e.document_id.as_str());
                    if descending { key <= (c.0, c.1.as_str()) } else { key >= (c.0, c.1.as_str()) }
                })
                .unwrap_or(listed.len());
            (end.saturating_sub(per_page), end)
        }
        (None, None) => (0, per_page.min(listed.len())),
    };
    let events: Vec<&AuditEvent> = listed[from..to].to_vec();
    let cursor_of = |e: &AuditEvent| encode_cursor('g', e.at, &e.document_id);
    let next = (to < listed.len()).then(|| events.last().map(|e| cursor_of(e))).flatten();
    let prev = (from > 0).then(|| events.first().map(|e| cursor_of(e))).flatten();
    let before = from.checked_sub(1).map(|i| listed[i]);
    Ok(Page { descending, events, next, prev, had_cursor: after.is_some() || before.is_some(), before })
}

/// What a phrase asks: a `created` range `[lo, hi)` in ms, and exact `action`/`actor` values.
struct Phrase {
    lo: i64,
    hi: i64,
    action: Option<String>,
    actor: Option<String>,
}

impl Phrase {
    fn matches(&self, e: &AuditEvent) -> bool {
        e.at >= self.lo
            && e.at < self.hi
            && self.action.as_deref().is_none_or(|a| e.json["action"] == a)
            && self.actor.as_deref().is_none_or(|a| e.json["actor"] == a)
    }
}

fn parse_phrase(phrase: &str) -> Result<Phrase, String> {
    let mut parsed = Phrase { lo: i64::MIN, hi: i64::MAX, action: None, actor: None };
    for word in phrase.split_whitespace() {
        let (qualifier, value) = word.split_once(':').ok_or_else(|| format!("{word}: not a qualifier"))?;
        match qualifier {
            "created" => (parsed.lo, parsed.hi) = parse_created(value).ok_or_else(|| format!("created:{value}"))?,
            "action" => parsed.action = Some(value.to_owned()),
            "actor" => parsed.actor = Some(value.to_owned()),
            _ => return Err(format!("{qualifier}: unknown qualifier")),
        }
    }
    Ok(parsed)
}

/// A `created:` value as `[lo, hi)` in ms.
fn parse_created(value: &str) -> Option<(i64, i64)> {
    // (start, end): the first ms of the value and the first ms after it (a day, or one ms).
    let point = |v: &str| -> Option<(i64, i64)> {
        if let Ok(day) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            let start = day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
            return Some((start, start + 86_400_000));
        }
        let at = DateTime::parse_from_rfc3339(v)
            .map(|t| t.timestamp_millis())
            .or_else(|_| NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S").map(|t| t.and_utc().timestamp_millis()))
            .ok()?;
        Some((at, at + 1))
    };
    if let Some((a, b)) = value.split_once("..") {
        let lo = if a == "*" { i64::MIN } else { point(a)?.0 };
        let hi = if b == "*" { i64::MAX } else { point(b)?.1 };
        return Some((lo, hi));
    }
    if let Some(v) = value.strip_prefix(">=") {
        return Some((point(v)?.0, i64::MAX));
    }
    if let Some(v) = value.strip_prefix("<=") {
        return Some((i64::MIN, point(v)?.1));
    }
    if let Some(v) = value.strip_prefix('>') {
        return Some((point(v)?.1, i64::MAX));
    }
    if let Some(v) = value.strip_prefix('<') {
        return Some((i64::MIN, point(v)?.0));
    }
    point(value)
}

/// action, operation_type, acts on (`repo`, `user`, `app`), a Git event.
const ACTIONS: &[(&str, &str, &str, bool)] = &[
    ("org.add_member", "create", "user", false),
    ("org.remove_member", "remove", "user", false),
    ("org.update_member", "modify", "user", false),
    ("team.add_member", "modify", "user", false),
    ("business.add_admin", "create", "user", false),
    ("business.remove_admin", "remove", "user", false),
    ("repo.create", "create", "repo", false),
    ("repo.destroy", "remove", "repo", false),
    ("repo.access", "modify", "repo", false),
    ("protected_branch.destroy", "remove", "repo", false),
    ("hook.create", "create", "repo", false),
    ("oauth_application.create", "create", "app", false),
    ("personal_access_token.access_granted", "access", "app", false),
    ("git.clone", "access", "repo", true),
    ("git.push", "modify", "repo", true),
];

const ACTORS: &[(&str, u64, &str)] =
    &[("octocat", 583231, "US"), ("mona", 9919, "PT"), ("hubot", 480938, "DE"), ("ada-admin", 7731, "GB")];
const ORGS: &[(&str, u64)] = &[("acme-platform", 101), ("acme-security", 102)];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
    "GitHub CLI 2.49.0",
    "git/2.45.0",
];

fn generate(opts: &GithubOptions) -> Vec<AuditEvent> {
    let mut rng = Rng::new(opts.seed ^ 0x617);
    let start = opts.start.timestamp_millis();
    let step = (opts.span.as_millis() as i64 / opts.records.max(1) as i64).max(1);
    let mut at = start;
    let mut events: Vec<AuditEvent> = (0..opts.records)
        .map(|i| {
            // Every sixth record shares its predecessor's `@timestamp` (ties).
            if i % 6 != 5 {
                at = start + i as i64 * step + rng.below(step as u64) as i64;
            }
            let late = rng.below(1000) < u64::from(opts.late_permille);
            let lateness = if late { 1 + rng.below(opts.max_lateness.as_millis().max(1) as u64) as i64 } else { 0 };
            let bytes: Vec<u8> = rng.next().to_be_bytes().into_iter().chain(rng.next().to_be_bytes()).collect();
            let document_id = URL_SAFE_NO_PAD.encode(bytes);
            let (json, git) = record_json(&mut rng, &opts.enterprise, &document_id, at);
            AuditEvent { document_id, at, arrival: at + lateness, git, json }
        })
        .collect();
    events.sort_by(|a, b| (a.at, &a.document_id).cmp(&(b.at, &b.document_id)));
    events
}

fn record_json(rng: &mut Rng, enterprise: &str, document_id: &str, at: i64) -> (Value, bool) {
    let (action, operation, object, git) = *rng.pick(ACTIONS);
    let (actor, actor_id, country) = *rng.pick(ACTORS);
    let (org, org_id) = *rng.pick(ORGS);
    let mut record = json!({
        "@timestamp": at,
        "_document_id": document_id,
        "action": action,
        "actor": actor,
        "actor_id": actor_id,
        "actor_location": { "country_code": country },
        "business": enterprise,
        "business_id": 4242,
        "created_at": at,
        "operation_type": operation,
        "org": org,
        "org_id": org_id,
    });
    let fields = record.as_object_mut().unwrap();
    // IP disclosure is an enterprise setting: about half the records carry `actor_ip`.
    if rng.below(2) == 0 {
        fields.insert("actor_ip".into(), format!("198.51.100.{}", 1 + rng.below(250)).into());
    }
    fields.insert("user_agent".into(), (*rng.pick(AGENTS)).into());
    match object {
        "user" => {
            let (user, user_id, _) = *rng.pick(ACTORS);
            fields.insert("user".into(), user.into());
            fields.insert("user_id".into(), user_id.into());
        }
        "repo" => {
            let repo = format!("{org}/service-{}", rng.below(20));
            fields.insert("repo".into(), repo.clone().into());
            fields.insert("repo_id".into(), (700_000 + rng.below(1000)).into());
            if git {
                fields.insert("repository".into(), repo.into());
                fields.insert("repository_public".into(), false.into());
                fields.insert("transport_protocol_name".into(), "http".into());
            }
        }
        _ => {
            fields.insert("oauth_application_id".into(), (30_000 + rng.below(100)).into());
        }
    }
    (record, git)
}
