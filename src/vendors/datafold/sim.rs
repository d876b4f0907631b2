//! Simulated Datafold audit log, README §3.
//!
//! `GET /api/v1/audit_logs` with `Authorization: Key <api-key>` and — unusually — a JSON body on
//! the GET: `{"start_date": ..., "end_date": ...}` (body optional, `null` allowed; §3.3). There is
//! no organization in the path: each simulated "organization" is a distinct API key with its own
//! store and rate-limit window. Missing `start_date` → the last 24 h (knob
//! [`DatafoldSimOptions::default_all_history`]: all history), missing `end_date` → now; the
//! window is `[start, end)` [assume]. A date that does not parse, `start_date > end_date`, a body
//! that is not a JSON object, or a body sent with a non-JSON content type → 422 with FastAPI's
//! validation body `{"detail":[{"loc":[...],"msg":...,"type":...}]}`. The answer is
//! `{"logs":[...]}`: the whole window, no paging, no count, ascending `timestamp` [assume].
//!
//! Rate limit (§3.6, undocumented): default 60 requests a minute per key [assume], 429 with
//! `Retry-After` seconds and `{"detail": "Too Many Requests"}`; no budget headers. Errors are
//! FastAPI's `{"detail": "<text>"}`: 401 for a missing or unknown key, 403 for a non-admin key
//! (knob [`DatafoldSimOptions::non_admin_keys`]). Faults and the limit are applied by `mod.rs`;
//! this file never sleeps and keeps no counters.
//!
//! Records are `AuditLogs` (§3.5) with `timestamp` like `2026-04-02T14:07:51.204915+00:00`; knob
//! [`DatafoldSimOptions::naive_times`] makes a share of them naive (no offset, meaning UTC).
//! Vocabularies (`action`, `object_type`, `source`, `status`) are the illustrative ones of the
//! sample; names are made up. Sign-ins come by SAML SSO (`/api/internal/auth/saml/acs`, "via
//! SAML SSO") or password (`/api/internal/auth/login`); a fifth fail, `user_id` null, and half
//! the failed SAML ones name nobody at all (no `user_email`, `payload.reason`
//! `invalid_saml_response`); about 3 % of records are a support user's (`is_support_user`),
//! their sign-ins and -outs kept as such, anything else they do logged as `impersonate`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::Datafold;
use crate::sim::{
    RateLimitSetting, RequestCtx, ServedRecords, Shared, SimContract, SimCredential, SimVendor, SimulateArgs, Tenant,
    nth_id, numbered_tenants, parse_rate_limit, parse_share, record_rng, seeded_range, seeded_times,
};

/// The first organization's key (a simulator credential, printed by `auditrelay simulate`).
pub const DEFAULT_API_KEY: &str = "dfsim_0000000000000000000000000000000001";
/// Label of the first organization; Datafold itself names none.
pub const DEFAULT_ORGANIZATION: &str = "datafold-org-0001";

/// Datafold-specific knobs.
#[derive(Clone, Debug)]
pub struct DatafoldSimOptions {
    /// Organizations (API keys) served, each with its own store and rate-limit window.
    pub organizations: usize,
    /// Records seeded at start, per organization.
    pub records: usize,
    /// The first organization's key; the others count its trailing number up.
    pub api_key: String,
    /// Seeded records lie in `[now - records_span, now - records_min_age]`.
    pub records_span: Duration,
    pub records_min_age: Duration,
    /// Share (0..=1) of records whose `timestamp` has no UTC offset (§3.5: naive means UTC).
    pub naive_times: f64,
    /// A missing `start_date` means all history instead of the last 24 h (§3.3 [assume]).
    pub default_all_history: bool,
    /// Keys are valid but not an admin's: every request is answered 403 (§3.2 [assume]).
    pub non_admin_keys: bool,
}

impl Default for DatafoldSimOptions {
    fn default() -> Self {
        DatafoldSimOptions {
            organizations: 1,
            records: 1000,
            api_key: DEFAULT_API_KEY.to_owned(),
            records_span: Duration::from_secs(24 * 3600),
            records_min_age: Duration::from_secs(600),
            naive_times: 0.0,
            default_all_history: false,
            non_admin_keys: false,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Datafold")]
pub struct DatafoldArgs {
    /// Seeded Datafold records per organization (API key).
    #[arg(long, default_value_t = 1000)]
    pub datafold_records: usize,
    #[arg(long, default_value_t = 1)]
    pub datafold_organizations: usize,
    #[arg(long, default_value = DEFAULT_API_KEY)]
    pub datafold_api_key: String,
    /// Share (0..=1) of timestamps without a UTC offset.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub datafold_naive_times: f64,
    /// A missing `start_date` means all history instead of the last 24 h.
    #[arg(long)]
    pub datafold_default_all_history: bool,
    /// Keys are not an admin's: every request is answered 403.
    #[arg(long)]
    pub datafold_non_admin_keys: bool,
    /// Overrides `--rate-limit` for Datafold.
    #[arg(long, value_parser = parse_rate_limit)]
    pub datafold_rate_limit: Option<RateLimitSetting>,
}

impl SimContract for Datafold {
    type Options = DatafoldSimOptions;
    type Store = Store;
    type Args = DatafoldArgs;

    /// [assume] 60/min (§3.6), per API key. No budget headers (§3.6): it announces nothing.
    const RATE_LIMIT: (u32, Duration) = (60, Duration::from_secs(60));

    /// The path names no organization: the key decides.
    fn audit_log_path(_organization: &str) -> String {
        "/api/v1/audit_logs".to_owned()
    }

    fn routes() -> Router<Arc<Shared>> {
        Router::new().route("/api/v1/audit_logs", get(audit_logs))
    }

    /// The organizations (keys) `opts` describes.
    fn tenants(opts: &DatafoldSimOptions) -> Vec<Tenant> {
        numbered_tenants(opts.organizations, DEFAULT_ORGANIZATION, |i| SimCredential::ApiKey(nth_id(&opts.api_key, i)))
    }

    fn no_credential() -> SimCredential {
        SimCredential::ApiKey(String::new())
    }

    /// `Authorization: Key <key>`.
    fn describe_credential(credential: &SimCredential) -> String {
        match credential {
            SimCredential::ApiKey(k) => format!("Authorization: Key {k}"),
            other => other.describe(),
        }
    }

    fn generate(seed: u64, opts: &DatafoldSimOptions, _index: usize, _organization: &str, now: DateTime<Utc>) -> Store {
        Store::generate(seed, opts, now)
    }

    fn set_records(opts: &mut DatafoldSimOptions, records: usize) {
        opts.records = records;
    }

    fn record_keys(store: &Store) -> Vec<String> {
        store.ids()
    }

    fn records_json(store: &Store) -> Vec<String> {
        store.records_json()
    }

    fn error(status: StatusCode, _code: &str, message: &str, _ctx: &RequestCtx) -> Response {
        error_response(status, message)
    }

    /// The path names no organization: a request spends its API key's budget.
    fn client_key(req: &Request) -> String {
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    fn options(d: &DatafoldArgs, common: &SimulateArgs) -> DatafoldSimOptions {
        DatafoldSimOptions {
            organizations: d.datafold_organizations,
            records: d.datafold_records,
            api_key: d.datafold_api_key.clone(),
            records_span: common.records_span,
            records_min_age: common.records_min_age,
            naive_times: d.datafold_naive_times,
            default_all_history: d.datafold_default_all_history,
            non_admin_keys: d.datafold_non_admin_keys,
        }
    }

    fn rate_limit(d: &DatafoldArgs) -> Option<RateLimitSetting> {
        d.datafold_rate_limit
    }
}

/// `(action, object_type, request_type, url, log_entry)`: the illustrative vocabulary of the sample.
/// A `login` is by SAML SSO (as here) or, for 30 %, by password (`Store::log`).
const ACTIONS: &[(&str, &str, &str, &str, &str)] = &[
    ("login", "user", "POST", "/api/internal/auth/saml/acs", "User signed in via SAML SSO"),
    ("logout", "user", "POST", "/api/internal/auth/logout", "User signed out"),
    ("create", "data_source", "POST", "/api/v1/data_sources", "Data source created"),
    ("update", "data_source", "PUT", "/api/v1/data_sources/{id}", "Data source updated"),
    ("delete", "data_source", "DELETE", "/api/v1/data_sources/{id}", "Data source deleted"),
    ("create", "data_diff", "POST", "/api/v1/datadiffs", "Data diff created via API"),
    ("create", "monitor", "POST", "/api/v1/monitors", "Monitor created"),
    ("update", "monitor", "PATCH", "/api/v1/monitors/{id}", "Monitor updated"),
    ("create", "api_key", "POST", "/api/v1/api_keys", "API key created"),
    ("delete", "api_key", "DELETE", "/api/v1/api_keys/{id}", "API key revoked"),
    ("invite", "user", "POST", "/api/v1/users/invite", "User invited"),
    ("update", "organization", "PATCH", "/api/v1/organization", "Organization settings updated"),
    ("export", "audit_log", "GET", "/api/v1/audit_logs", "Audit log exported"),
];
const PEOPLE: &[(&str, i64)] = &[
    ("priya.natarajan@example.com", 1423),
    ("ci-bot@example.com", 1502),
    ("luis.ortega@example.com", 1611),
    ("mei.chen@example.org", 1702),
];
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
];

/// One `AuditLogs` record (§3.5), fields in the sample's (alphabetical) order. `at` is
/// `timestamp` as a time, for filtering and order.
#[derive(Clone, Debug, Serialize)]
struct AuditLog {
    action: Option<&'static str>,
    client_ip: String,
    event_uuid: String,
    is_support_user: Option<bool>,
    log_entry: Option<String>,
    object_id: Option<i64>,
    object_type: Option<&'static str>,
    payload: Option<Value>,
    referer: Option<String>,
    request_type: Option<&'static str>,
    source: Option<&'static str>,
    status: Option<&'static str>,
    timestamp: String,
    url: String,
    user_agent: Option<&'static str>,
    user_email: Option<&'static str>,
    user_id: Option<i64>,
    #[serde(skip)]
    at: DateTime<Utc>,
}

/// One organization's records, oldest first, plus what is needed to generate arrivals.
pub struct Store {
    records: Vec<AuditLog>,
    seed: u64,
    naive_times: f64,
    /// Index of the next record to generate (seeded records are `0..records`).
    next: u64,
}

impl Store {
    pub(crate) fn generate(seed: u64, opts: &DatafoldSimOptions, now: DateTime<Utc>) -> Store {
        let range = seeded_range(now, opts.records_span, opts.records_min_age);
        let times = seeded_times(seed, opts.records, range, 1);
        let mut store = Store {
            records: Vec::with_capacity(opts.records),
            seed,
            naive_times: opts.naive_times,
            next: opts.records as u64,
        };
        for (i, at) in times.into_iter().enumerate() {
            let log = store.log(i as u64, at);
            store.records.push(log);
        }
        store.records.sort_by(|a, b| (a.at, &a.event_uuid).cmp(&(b.at, &b.event_uuid)));
        store
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.records.iter().map(|r| r.event_uuid.clone()).collect()
    }

    /// Every record as the JSON text of its object in an answer's `logs`, oldest first.
    pub(crate) fn records_json(&self) -> Vec<String> {
        self.records.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect()
    }

    /// Generates the next record (an arrival) at `at` and inserts it in order.
    fn add(&mut self, at: DateTime<Utc>) {
        let log = self.log(self.next, crate::sim::truncate_to(at, 1));
        self.next += 1;
        let pos = self.records.partition_point(|r| (r.at, &r.event_uuid) < (log.at, &log.event_uuid));
        self.records.insert(pos, log);
    }

    fn log(&self, i: u64, at: DateTime<Utc>) -> AuditLog {
        let mut rng = record_rng(self.seed, i, 2);
        let (action, object_type, method, url, entry) = ACTIONS[rng.usize(..ACTIONS.len())];
        let (email, user_id) = PEOPLE[rng.usize(..PEOPLE.len())];
        let object_id = rng.i64(100..1_000_000);
        let support = rng.u32(..100) < 3;
        let failed_login = action == "login" && rng.u32(..100) < 20;
        let api = !support && !failed_login && (email.starts_with("ci-bot") || rng.u32(..100) < 15);
        let source = if api { "api" } else { "web" };
        let payload = match (object_type, failed_login) {
            (_, true) => Some(json!({ "reason": "invalid_credentials" })),
            ("data_source", _) => {
                Some(json!({ "name": "snowflake_prod", "type": "snowflake", "password": "********" }))
            }
            ("data_diff", _) => {
                Some(json!({ "table1": ["ANALYTICS", "PUBLIC", "ORDERS"], "pk_columns": ["ORDER_ID"] }))
            }
            ("monitor", _) => Some(json!({ "name": "orders freshness", "schedule": "0 * * * *" })),
            _ if rng.bool() => Some(json!({})),
            _ => None,
        };
        let name = format!("datafold/{}/{i}", self.seed);
        let naive = rng.f64() < self.naive_times;
        // A support user's sign-in or -out stays one; anything else they do is "impersonate".
        let support_action = if ["login", "logout"].contains(&action) { action } else { "impersonate" };
        let mut log = AuditLog {
            action: Some(if support { support_action } else { action }),
            client_ip: format!("{}.{}", if api { "198.51.100" } else { "203.0.113" }, rng.u8(1..=254)),
            event_uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string(),
            // Unknown for failed logins (no user), as in the sample.
            is_support_user: if failed_login { None } else { Some(support) },
            log_entry: Some(if failed_login { "Failed sign-in attempt".to_owned() } else { entry.to_owned() }),
            object_id: (url.contains("{id}") || object_type == "data_diff").then_some(object_id),
            object_type: (!failed_login).then_some(object_type),
            payload,
            referer: (!api)
                .then(|| format!("https://app.datafold.com{}", if support { "/admin" } else { "/settings" })),
            request_type: Some(method),
            source: Some(source),
            status: Some(if failed_login { "failure" } else { "success" }),
            timestamp: if naive {
                at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            } else {
                at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
            },
            url: url.replace("{id}", &object_id.to_string()),
            user_agent: Some(if api { "python-requests/2.32.3" } else { BROWSERS[rng.usize(..BROWSERS.len())] }),
            user_email: Some(if support { "support-engineer@datafold.example" } else { email }),
            user_id: if failed_login {
                None
            } else if support {
                Some(7)
            } else {
                Some(user_id)
            },
            at,
        };
        // Sign-ins, drawn after everything else so that every other record stays as it was:
        // 30 % by password, the rest through the SAML ACS; half the failed SAML ones name
        // nobody (the assertion was rejected before a user was known).
        if action == "login" {
            let password = rng.u32(..100) < 30;
            if password {
                log.url = "/api/internal/auth/login".to_owned();
                log.log_entry = Some(if failed_login { "Failed sign-in attempt" } else { "User signed in" }.to_owned());
            } else if failed_login && rng.bool() {
                log.user_email = None;
                log.payload = Some(json!({ "reason": "invalid_saml_response" }));
            }
        }
        log
    }
}

/// One FastAPI validation error (§3.7): `(loc, msg, type)`.
type Invalid = (Vec<&'static str>, String, &'static str);

/// The window a request body asks for; `[start, end)`.
fn window(
    body: &[u8],
    headers: &HeaderMap,
    now: DateTime<Utc>,
    all_history: bool,
) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>), Invalid> {
    let text = std::str::from_utf8(body).unwrap_or("\u{FFFD}").trim();
    let value: Value = if text.is_empty() {
        Value::Null
    } else {
        // FastAPI reads a body as JSON when the content type says so or is missing; otherwise it
        // sees bytes, which are not an object.
        let content_type =
            headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
        let mime = content_type.split(';').next().unwrap_or_default().trim();
        if mime != "application/json" && !mime.ends_with("+json") {
            let msg = "Input should be a valid dictionary or object to extract fields from".to_owned();
            return Err((vec!["body"], msg, "model_attributes_type"));
        }
        serde_json::from_str(text).map_err(|e| (vec!["body"], format!("JSON decode error: {e}"), "json_invalid"))?
    };
    let field = |name: &'static str| -> Result<Option<DateTime<Utc>>, Invalid> {
        match value.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => parse_date(s).map(Some).ok_or_else(|| {
                (
                    vec!["body", name],
                    format!("Input should be a valid datetime, invalid input {s:?}"),
                    "datetime_from_date_parsing",
                )
            }),
            Some(_) => Err((vec!["body", name], "Input should be a valid datetime".to_owned(), "datetime_type")),
        }
    };
    if !(value.is_null() || value.is_object()) {
        let msg = "Input should be a valid dictionary or object to extract fields from".to_owned();
        return Err((vec!["body"], msg, "model_attributes_type"));
    }
    let (start, end) = (field("start_date")?, field("end_date")?);
    let end = end.unwrap_or(now);
    let start = match start {
        Some(s) => Some(s),
        None if all_history => None,
        None => Some(now - chrono::Duration::hours(24)),
    };
    if start.is_some_and(|s| s > end) {
        return Err((vec!["body"], "Value error, start_date must not be after end_date".to_owned(), "value_error"));
    }
    Ok((start, end))
}

/// ISO 8601 as pydantic takes it: with offset, naive (UTC), or a bare date (UTC midnight).
fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc())
}

async fn audit_logs(
    State(shared): State<Arc<Shared>>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let opts = &shared.opts.datafold;
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(presented) = presented else {
        return error_response(StatusCode::UNAUTHORIZED, "Not authenticated");
    };
    let key = presented.strip_prefix("Key ").map(|k| SimCredential::ApiKey(k.trim().to_owned()));
    let Some(org) = key.and_then(|k| shared.tenant_of(SimVendor::Datafold, &k)) else {
        return error_response(StatusCode::UNAUTHORIZED, "Invalid API key");
    };
    if opts.non_admin_keys {
        return error_response(StatusCode::FORBIDDEN, "Only organization admins can read the audit log");
    }
    let (start, end) = match window(&body, &headers, ctx.now, opts.default_all_history) {
        Ok(w) => w,
        Err((loc, msg, kind)) => {
            let detail = json!([{ "loc": loc, "msg": msg, "type": kind }]);
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "detail": detail }))).into_response();
        }
    };
    let logs: Vec<AuditLog> = {
        let mut st = shared.state();
        let Some(store) = st.stores.datafold.get_mut(org) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        };
        let logs = store.records.iter().filter(|r| start.is_none_or(|s| s <= r.at) && r.at < end).cloned().collect();
        // New records arrive after each answer (README "Simulator conventions"), at the current time
        // (or up to `arrival_lateness` before it).
        let now = shared.clock.now_utc();
        for _ in 0..shared.arrivals_per_answer() {
            store.add(shared.arrival_at(now));
        }
        logs
    };
    let mut resp = Json(Answer { logs: &logs }).into_response();
    resp.extensions_mut().insert(ServedRecords(logs.len()));
    resp
}

/// The 200 body (§3.4).
#[derive(Serialize)]
struct Answer<'a> {
    logs: &'a [AuditLog],
}

/// FastAPI's default error body (§3.7): `{"detail": "<text>"}`.
pub(crate) fn error_response(status: StatusCode, detail: &str) -> Response {
    (status, Json(json!({ "detail": detail }))).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::clock::Clock;
    use crate::sim::tests::{Answer, authed, call, opts, start, t0};
    use crate::sim::{Sim, SimOptions};

    const V: SimVendor = SimVendor::Datafold;

    /// GET with the first key and `body` as JSON (none if `None`).
    async fn logs(sim: &Sim, body: Option<&str>) -> Answer {
        let cred = sim.credential(V, DEFAULT_ORGANIZATION);
        call(sim, "api/v1/audit_logs", |r| {
            let r = authed(V, cred, r);
            match body {
                Some(b) => r.header("content-type", "application/json").body(b.to_owned()),
                None => r,
            }
        })
        .await
    }

    fn options(records: usize) -> SimOptions {
        let mut o = opts(records);
        o.datafold.records = records;
        o
    }

    fn at(r: &Value) -> DateTime<Utc> {
        parse_date(r["timestamp"].as_str().unwrap()).unwrap()
    }

    fn z(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// The records the mapping rules are about (issue 17): SAML and password sign-ins, failed
    /// sign-ins naming nobody (no `user_id`, no `user_email`), support-user sign-ins.
    #[test]
    fn test_generates_the_sign_ins_the_mapping_rules_are_about() {
        let opts = DatafoldSimOptions { records: 3000, ..Default::default() };
        let store = Store::generate(7, &opts, t0());
        assert_eq!(store.records.len(), 3000);
        let logins: Vec<&AuditLog> = store.records.iter().filter(|r| r.action == Some("login")).collect();
        let count = |f: &dyn Fn(&AuditLog) -> bool| logins.iter().filter(|r| f(r)).count();
        let saml = count(&|r| r.url.contains("/saml/") && r.log_entry.as_deref().is_some_and(|e| e.contains("SAML")));
        let password = count(&|r| r.url == "/api/internal/auth/login");
        let nobody = count(&|r| r.status == Some("failure") && r.user_id.is_none() && r.user_email.is_none());
        let support = count(&|r| r.is_support_user == Some(true) && r.status == Some("success"));
        assert!(saml > 50 && password > 20 && nobody > 5 && support > 0, "{saml} {password} {nobody} {support}");
        // An anonymous failure says why, and nothing else.
        let anonymous = logins.iter().find(|r| r.user_email.is_none()).unwrap();
        assert_eq!(anonymous.payload, Some(json!({"reason": "invalid_saml_response"})));
        // Same seed, same records.
        assert_eq!(Store::generate(7, &opts, t0()).records_json(), store.records_json());
    }

    #[tokio::test(start_paused = true)]
    async fn test_answer_holds_the_whole_window_oldest_first() {
        let sim = start(options(300), Clock::starting_at(t0())).await;
        let a = logs(&sim, None).await;
        assert_eq!((a.status, a.json.as_object().map(|o| o.len())), (200, Some(1)));
        let all = a.json["logs"].as_array().unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r["event_uuid"].as_str().unwrap()).collect();
        assert_eq!(ids, sim.record_keys(V, DEFAULT_ORGANIZATION), "every record once, no paging");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 300);
        assert!(all.windows(2).all(|w| at(&w[0]) <= at(&w[1])), "ascending timestamp");
        let fields = "action client_ip event_uuid is_support_user log_entry object_id object_type payload referer \
            request_type source status timestamp url user_agent user_email user_id";
        for r in all {
            let obj = r.as_object().unwrap();
            assert_eq!(obj.len(), 17, "{r}");
            assert!(fields.split_whitespace().all(|f| obj.contains_key(f)), "{r}");
            assert!(r["timestamp"].as_str().unwrap().ends_with("+00:00"), "{r}");
            assert!(uuid::Uuid::parse_str(r["event_uuid"].as_str().unwrap()).is_ok());
        }
        for nullable in ["object_id", "payload", "referer", "user_id", "is_support_user", "object_type"] {
            assert!(all.iter().any(|r| r[nullable].is_null()), "{nullable} is sometimes null");
        }
        assert!(all.iter().any(|r| r["is_support_user"] == true));
        // A `null` body is no body.
        assert_eq!(logs(&sim, Some("null")).await.json, a.json);
        assert_eq!(sim.vendor_stats(V).served_records, 600);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_window_comes_from_the_get_body() {
        let mut o = options(400);
        o.datafold.records_span = Duration::from_secs(72 * 3600);
        let sim = start(o, Clock::starting_at(t0())).await;
        let mut all_history = options(400);
        all_history.datafold.records_span = Duration::from_secs(72 * 3600);
        all_history.datafold.default_all_history = true;
        let sim_all = start(all_history, Clock::starting_at(t0())).await;
        let all = logs(&sim_all, Some("{}")).await.json["logs"].as_array().unwrap().clone();
        assert_eq!(all.len(), 400, "knob: a missing start_date means all history");

        let day_ago = t0() - chrono::Duration::hours(24);
        let recent = logs(&sim, None).await.json["logs"].as_array().unwrap().len();
        assert_eq!(recent, all.iter().filter(|r| at(r) >= day_ago).count(), "default: the last 24 h");
        assert!(recent < 400);

        let (start_at, end_at) = (at(&all[100]), at(&all[300]));
        let body = format!(r#"{{"start_date": "{}", "end_date": "{}"}}"#, z(start_at), z(end_at));
        let window = logs(&sim, Some(&body)).await;
        assert_eq!(window.json["logs"].as_array().unwrap().len(), 200, "[start, end)");
        assert_eq!(window.json["logs"][0], all[100]);
        let log = sim.request_log();
        assert_eq!(log.last().map(|r| r.body.as_str()), Some(body.as_str()), "the request log keeps the body");
        // Naive dates are UTC; a bare end means now.
        let naive = format!(r#"{{"start_date": "{}"}}"#, start_at.format("%Y-%m-%dT%H:%M:%S%.6f"));
        assert_eq!(logs(&sim, Some(&naive)).await.json["logs"].as_array().unwrap().len(), 300);
        for s in [sim, sim_all] {
            s.shutdown().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn test_invalid_bodies_are_422_validation_errors() {
        let sim = start(options(5), Clock::starting_at(t0())).await;
        let bad = logs(&sim, Some(r#"{"start_date": "yesterday"}"#)).await;
        assert_eq!(bad.status, 422);
        let detail = &bad.json["detail"][0];
        assert_eq!(detail["loc"], json!(["body", "start_date"]));
        assert!(detail["msg"].is_string() && detail["type"].is_string(), "{}", bad.json);
        let bad_end = logs(&sim, Some(r#"{"end_date": 17}"#)).await;
        assert_eq!((bad_end.status, &bad_end.json["detail"][0]["loc"]), (422, &json!(["body", "end_date"])));
        let reversed = r#"{"start_date": "2026-03-18T00:00:00Z", "end_date": "2026-03-17T00:00:00Z"}"#;
        assert_eq!(logs(&sim, Some(reversed)).await.status, 422);
        for body in ["{", "[1]", "\"2026-03-17\""] {
            let a = logs(&sim, Some(body)).await;
            assert_eq!((a.status, &a.json["detail"][0]["loc"][0]), (422, &json!("body")), "{body}");
        }
        let cred = sim.credential(V, DEFAULT_ORGANIZATION);
        let text = call(&sim, "api/v1/audit_logs", |r| {
            authed(V, cred, r).header("content-type", "text/plain").body(r#"{"start_date": null}"#)
        })
        .await;
        assert_eq!(text.status, 422);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_auth_errors() {
        let sim = start(options(5), Clock::starting_at(t0())).await;
        let none = call(&sim, "api/v1/audit_logs", |r| r).await;
        assert_eq!((none.status, &none.json), (401, &json!({"detail": "Not authenticated"})));
        for value in ["Key wrong", &format!("Bearer {DEFAULT_API_KEY}"), DEFAULT_API_KEY] {
            let a = call(&sim, "api/v1/audit_logs", |r| r.header("authorization", value)).await;
            assert_eq!(a.status, 401, "{value}");
            assert!(a.json["detail"].is_string());
        }
        assert_eq!(sim.vendor_stats(V).unauthorized, 4);
        sim.shutdown().await;

        let mut o = options(5);
        o.datafold.non_admin_keys = true;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = logs(&sim, None).await;
        assert_eq!(a.status, 403);
        assert!(a.json["detail"].is_string());
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_naive_timestamps_knob() {
        let mut o = options(200);
        o.datafold.naive_times = 0.5;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = logs(&sim, None).await;
        let stamps: Vec<&str> =
            a.json["logs"].as_array().unwrap().iter().map(|r| r["timestamp"].as_str().unwrap()).collect();
        let naive = stamps.iter().filter(|s| !s.ends_with("+00:00")).count();
        assert!(naive > 50 && naive < 150, "{naive} naive of 200");
        assert!(stamps.iter().all(|s| parse_date(s).is_some() && s.len() >= 26));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_arrivals_after_each_answer() {
        let mut o = options(10);
        o.faults.arrivals_per_page = 3;
        let sim = start(o, Clock::starting_at(t0())).await;
        assert_eq!(logs(&sim, None).await.json["logs"].as_array().unwrap().len(), 10);
        tokio::time::advance(Duration::from_secs(1)).await;
        let again = logs(&sim, None).await;
        let got = again.json["logs"].as_array().unwrap();
        assert_eq!(got.len(), 13);
        assert_eq!(at(&got[12]), t0());
        assert_eq!(sim.record_keys(V, DEFAULT_ORGANIZATION).len(), 16);
        sim.shutdown().await;
    }
}
