//! Simulated Aitronos (Freddy API) organization audit log, README §4.
//!
//! `GET /v1/organizations/{organization_id}/audit-log`: offset paging with `skip` (>= 0) and
//! `limit` (1..=100, default 50), answered `{"items","total","skip","limit","has_more"}` newest
//! first (`created_at` descending, ties by `id` descending: the [assume] of §4.4). Time filters
//! `from_date`/`to_date` take date-only (UTC midnight; a date-only `to_date` covers that whole
//! day) or RFC 3339, both inclusive. Auth is `X-API-Key` or `Authorization: Bearer`; errors use
//! the `{"success":false,"error":{...}}` envelope of §4.7. Rate-limit headers, 429s and other
//! faults are added by `mod.rs`; this file never sleeps and keeps no counters.
//!
//! Several organizations can be served, each with its own key and store: the first has the
//! configured id and key, the others count their trailing number up (`ORG_DEMO000000000002`). A key
//! reaches only its own organization (another one's id → 403 `ORGANIZATION_ACCESS_DENIED`).
//!
//! Records are generated from the seed: record `i` depends only on the seed and `i`, so the same
//! seed always yields the same ids. Names are made up, mail domains are example.ch/example.com.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use fastrand::Rng;
use serde::Serialize;
use serde_json::json;

use super::Aitronos;
use crate::sim::{
    RateLimitSetting, RequestCtx, ServedRecords, Shared, Sim, SimContract, SimCredential, SimVendor, SimulateArgs,
    Tenant, ceil_secs, chrono_duration, nth_id, numbered_tenants, parse_rate_limit, put, record_rng,
};

/// The demo key (a simulator credential, printed by `auditrelay simulate`; not a secret).
pub const DEFAULT_API_KEY: &str = "ak_demo000000000000000000000000000000000000";
pub const DEFAULT_ORGANIZATION_ID: &str = "ORG_DEMO000000000001";

/// Aitronos-specific knobs.
#[derive(Clone, Debug)]
pub struct AitronosSimOptions {
    /// Organizations served, each with its own key, store and rate-limit window.
    pub organizations: usize,
    /// Records seeded at start, per organization.
    pub records: usize,
    /// Key and id of the first organization.
    pub api_key: String,
    pub organization_id: String,
    /// Seeded records lie in `[now - records_span, now - records_min_age]` (now = the clock at
    /// start)...
    pub records_span: Duration,
    pub records_min_age: Duration,
    /// ...unless these override either end.
    pub records_start: Option<DateTime<Utc>>,
    pub records_end: Option<DateTime<Utc>>,
    /// `limit > 100` is clamped to 100 instead of answered 422.
    pub clamp_limit: bool,
}

impl Default for AitronosSimOptions {
    fn default() -> Self {
        AitronosSimOptions {
            organizations: 1,
            records: 1000,
            api_key: DEFAULT_API_KEY.to_owned(),
            organization_id: DEFAULT_ORGANIZATION_ID.to_owned(),
            records_span: Duration::from_secs(24 * 3600),
            records_min_age: Duration::from_secs(600),
            records_start: None,
            records_end: None,
            clamp_limit: false,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Aitronos")]
pub struct AitronosArgs {
    /// Seeded Aitronos records per organization.
    #[arg(long, default_value_t = 1000)]
    pub aitronos_records: usize,
    /// Aitronos organizations, each with its own key, records and rate-limit window.
    #[arg(long, default_value_t = 1)]
    pub aitronos_organizations: usize,
    /// Key of the first organization (the others count its trailing number up).
    #[arg(long, default_value = DEFAULT_API_KEY)]
    pub aitronos_api_key: String,
    #[arg(long, default_value = DEFAULT_ORGANIZATION_ID)]
    pub aitronos_organization_id: String,
    /// Clamp `limit > 100` to 100 instead of answering 422.
    #[arg(long)]
    pub clamp_limit: bool,
    /// Overrides `--rate-limit` for Aitronos.
    #[arg(long, value_parser = parse_rate_limit)]
    pub aitronos_rate_limit: Option<RateLimitSetting>,
}

impl SimContract for Aitronos {
    type Options = AitronosSimOptions;
    type Store = Store;
    type Args = AitronosArgs;

    /// 100/min (§4.6).
    const RATE_LIMIT: (u32, Duration) = (100, Duration::from_secs(60));
    /// Aitronos was the simulator's first vendor: its first organization keeps the ids it had then.
    const FIRST_ORGANIZATION_KEEPS_SEED: bool = true;

    fn audit_log_path(organization: &str) -> String {
        format!("/v1/organizations/{organization}/audit-log")
    }

    fn routes() -> Router<Arc<Shared>> {
        Router::new().route("/v1/organizations/{organization_id}/audit-log", get(audit_log))
    }

    /// The organizations `opts` describes, with their keys.
    fn tenants(opts: &AitronosSimOptions) -> Vec<Tenant> {
        numbered_tenants(opts.organizations, &opts.organization_id, |i| SimCredential::ApiKey(nth_id(&opts.api_key, i)))
    }

    fn no_credential() -> SimCredential {
        SimCredential::ApiKey(String::new())
    }

    /// The first organization's key and id, as `aitronos_api_key=…` and `aitronos_organization_id=…`.
    fn describe(opts: &AitronosSimOptions) -> String {
        format!("aitronos_api_key={}\naitronos_organization_id={}\n", opts.api_key, opts.organization_id)
    }

    fn generate(seed: u64, opts: &AitronosSimOptions, _index: usize, organization: &str, now: DateTime<Utc>) -> Store {
        Store::generate(seed, opts, organization, now)
    }

    fn set_records(opts: &mut AitronosSimOptions, records: usize) {
        opts.records = records;
    }

    fn record_keys(store: &Store) -> Vec<String> {
        store.ids()
    }

    fn records_json(store: &Store) -> Vec<String> {
        store.records_json()
    }

    fn error(status: StatusCode, code: &str, message: &str, ctx: &RequestCtx) -> Response {
        error_response(status, code, message, ctx)
    }

    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds).
    fn announce_limit(h: &mut HeaderMap, max: u32, remaining: u32, end: DateTime<Utc>) {
        for (name, value) in [
            ("x-ratelimit-limit", max.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", ceil_secs(end).to_string()),
        ] {
            put(h, name, &value);
        }
    }

    fn options(a: &AitronosArgs, common: &SimulateArgs) -> AitronosSimOptions {
        AitronosSimOptions {
            organizations: a.aitronos_organizations,
            records: a.aitronos_records,
            api_key: a.aitronos_api_key.clone(),
            organization_id: a.aitronos_organization_id.clone(),
            records_span: common.records_span,
            records_min_age: common.records_min_age,
            clamp_limit: a.clamp_limit,
            ..AitronosSimOptions::default()
        }
    }

    fn rate_limit(a: &AitronosArgs) -> Option<RateLimitSetting> {
        a.aitronos_rate_limit
    }
}

impl Sim {
    /// Records currently in the first Aitronos organization's store, arrivals included.
    pub fn aitronos_seeded(&self) -> usize {
        self.shared().state().stores.aitronos.first().map_or(0, Store::len)
    }

    /// Every record id in the first Aitronos organization's store, newest first.
    pub fn aitronos_ids(&self) -> Vec<String> {
        self.shared().state().stores.aitronos.first().map(Store::ids).unwrap_or_default()
    }

    /// The first Aitronos organization's key.
    pub fn aitronos_api_key(&self) -> &str {
        &self.shared().opts.aitronos.api_key
    }

    /// The first Aitronos organization's id.
    pub fn aitronos_organization_id(&self) -> &str {
        &self.shared().opts.aitronos.organization_id
    }
}

/// Entity types of §4.3, each with its id prefix and the actions it sees. `exported` and the
/// account-security verbs of `user` (password, MFA, lock) are not in the documented list: the
/// action set is open ("and more") and clients must cope.
const ENTITIES: &[(&str, &str, &[&str])] = &[
    (
        "user",
        "usr",
        &[
            "invited",
            "created",
            "updated",
            "deactivated",
            "reactivated",
            "deleted",
            "password_reset",
            "password_changed",
            "mfa_enabled",
            "mfa_disabled",
            "locked",
            "unlocked",
        ],
    ),
    ("department", "DEPT", &["created", "updated", "deleted", "reparented"]),
    ("role", "role", &["created", "updated", "deleted"]),
    ("role_assignment", "ra", &["assigned", "unassigned"]),
    ("department_membership", "DEPT", &["membership_added", "membership_removed"]),
    ("permission", "perm", &["updated"]),
    ("knowledge_slice", "ks", &["created", "updated", "deleted"]),
    ("vector_store", "vs", &["created", "deleted"]),
    ("knowledge_grant", "kg", &["assigned", "removed"]),
    ("knowledge_composite", "kc", &["created", "updated", "exported"]),
];
const PEOPLE: &[(&str, &str)] = &[
    ("Lena Fischer", "lena.fischer@example.ch"),
    ("Marco Bianchi", "marco.bianchi@example.ch"),
    ("Noah Keller", "noah.keller@example.ch"),
    ("Sofia Rossi", "sofia.rossi@example.com"),
    ("Jonas Weber", "jonas.weber@example.com"),
    ("Emma Martin", "emma.martin@example.ch"),
    ("Luca Meier", "luca.meier@example.com"),
    ("Mia Brunner", "mia.brunner@example.ch"),
];
const DEPARTMENTS: &[&str] = &["Data Platform", "Finance", "Legal", "Customer Success", "Research"];
const ROLES: &[&str] = &["Org Admin", "Member", "Billing Manager", "Department Admin", "Viewer"];
const KNOWLEDGE: &[&str] = &["Sales Playbook", "Support Macros", "Onboarding Handbook", "Product FAQ"];
const SOURCES: &[&str] = &["web_ui", "api", "scim"];

/// One audit entry (§4.5). `at` is `created_at` as a time, for filtering and ordering.
#[derive(Clone, Debug, Serialize)]
struct AuditEntry {
    id: String,
    entity_type: &'static str,
    entity_id: String,
    entity_name: Option<String>,
    action_type: &'static str,
    actor_id: String,
    actor_name: &'static str,
    actor_email: &'static str,
    target_id: Option<String>,
    target_name: Option<String>,
    previous_value: Option<String>,
    new_value: Option<String>,
    metadata: serde_json::Value,
    organization_id: String,
    department_id: Option<String>,
    created_at: String,
    #[serde(skip)]
    at: DateTime<Utc>,
}

/// The seeded records, newest first, plus what is needed to generate arrivals.
pub struct Store {
    records: Vec<AuditEntry>,
    seed: u64,
    organization_id: String,
    /// Index of the next record to generate (seeded records are `0..records`).
    next: u64,
    people: Vec<String>,
    departments: Vec<String>,
}

/// `prefix_` + `len` alphanumerics from `rng` (upper-case only for `ORG_`/`DEPT_`-style ids).
fn token(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let upper = prefix.chars().all(|c| c.is_ascii_uppercase());
    let body: String =
        (0..len).map(|_| rng.alphanumeric()).map(|c| if upper { c.to_ascii_uppercase() } else { c }).collect();
    format!("{prefix}_{body}")
}

impl Store {
    pub(crate) fn generate(seed: u64, opts: &AitronosSimOptions, organization_id: &str, now: DateTime<Utc>) -> Store {
        let end = opts.records_end.unwrap_or(now - chrono_duration(opts.records_min_age));
        let start = opts.records_start.unwrap_or(now - chrono_duration(opts.records_span));
        let span_us = (end - start).num_microseconds().unwrap_or(0).max(0) as u64;
        let mut names = Rng::with_seed(seed ^ 0xA17_0005);
        let mut store = Store {
            records: Vec::with_capacity(opts.records),
            seed,
            organization_id: organization_id.to_owned(),
            next: 0,
            people: PEOPLE.iter().map(|_| token(&mut names, "usr", 16)).collect(),
            departments: DEPARTMENTS.iter().map(|_| token(&mut names, "DEPT", 16)).collect(),
        };
        for i in 0..opts.records as u64 {
            let offset = record_rng(seed, i, 1).u64(..=span_us);
            let entry = store.entry(i, start + chrono::Duration::microseconds(offset as i64));
            store.records.push(entry);
        }
        store.next = opts.records as u64;
        store.records.sort_by(|a, b| (&b.at, &b.id).cmp(&(&a.at, &a.id)));
        store
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.records.iter().map(|r| r.id.clone()).collect()
    }

    /// Every record as the JSON text of its object in a page's `items`, newest first.
    pub(crate) fn records_json(&self) -> Vec<String> {
        self.records.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect()
    }

    /// Generates the next record (an arrival) at `at` and inserts it in order.
    fn add(&mut self, at: DateTime<Utc>) {
        let entry = self.entry(self.next, at);
        self.next += 1;
        let pos = self.records.partition_point(|r| (r.at, &r.id) > (entry.at, &entry.id));
        self.records.insert(pos, entry);
    }

    fn entry(&self, i: u64, at: DateTime<Utc>) -> AuditEntry {
        let mut rng = record_rng(self.seed, i, 2);
        let (entity_type, prefix, actions) = ENTITIES[rng.usize(..ENTITIES.len())];
        let action_type = actions[rng.usize(..actions.len())];
        let (actor, person) = (rng.usize(..PEOPLE.len()), rng.usize(..PEOPLE.len()));
        let (dept, role) = (rng.usize(..DEPARTMENTS.len()), rng.usize(..ROLES.len()));
        let knowledge = KNOWLEDGE[rng.usize(..KNOWLEDGE.len())];
        let (entity_id, entity_name, target) = match entity_type {
            "user" => (self.people[person].clone(), PEOPLE[person].0, Some(person)),
            "department" => (self.departments[dept].clone(), DEPARTMENTS[dept], None),
            "department_membership" => (self.departments[dept].clone(), DEPARTMENTS[dept], Some(person)),
            "role" => (token(&mut rng, prefix, 12), ROLES[role], None),
            "role_assignment" => (token(&mut rng, prefix, 16), ROLES[role], Some(person)),
            "knowledge_grant" => (token(&mut rng, prefix, 16), knowledge, Some(person)),
            _ => (token(&mut rng, prefix, 16), knowledge, None),
        };
        let (previous_value, new_value) = match action_type {
            "invited" => (None, Some(PEOPLE[person].1.to_owned())),
            "created" => (None, Some(json!({ "name": entity_name }).to_string())),
            "updated" => (Some(format!("{entity_name} (old)")), Some(entity_name.to_owned())),
            "deactivated" => (Some("active".to_owned()), Some("inactive".to_owned())),
            "reactivated" => (Some("inactive".to_owned()), Some("active".to_owned())),
            "locked" => (Some("active".to_owned()), Some("locked".to_owned())),
            "unlocked" => (Some("locked".to_owned()), Some("active".to_owned())),
            "assigned" => (Some("Member".to_owned()), Some(entity_name.to_owned())),
            "reparented" => {
                (Some(self.departments[(dept + 1) % DEPARTMENTS.len()].clone()), Some(self.departments[dept].clone()))
            }
            _ => (None, None),
        };
        let source = SOURCES[rng.usize(..SOURCES.len())];
        let mut metadata = json!({ "source": source });
        if source != "scim" {
            metadata["ip_address"] = json!(format!("198.51.100.{}", rng.u8(1..=254)));
        }
        if source == "api" {
            metadata["api_key_id"] = json!(token(&mut rng, "key", 12));
        }
        let department_id = match entity_type {
            "department" | "department_membership" => Some(self.departments[dept].clone()),
            _ => rng.bool().then(|| self.departments[dept].clone()),
        };
        let name = format!("aitronos/{}/{i}", self.seed);
        AuditEntry {
            id: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string(),
            entity_type,
            entity_id,
            entity_name: Some(entity_name.to_owned()),
            action_type,
            actor_id: self.people[actor].clone(),
            actor_name: PEOPLE[actor].0,
            actor_email: PEOPLE[actor].1,
            target_id: target.map(|p| self.people[p].clone()),
            target_name: target.map(|p| PEOPLE[p].0.to_owned()),
            previous_value,
            new_value,
            metadata,
            organization_id: self.organization_id.clone(),
            department_id,
            created_at: at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
            at,
        }
    }
}

/// Exact-match filters of §4.3 that the simulator honours.
const EXACT_FILTERS: &[&str] = &["entity_type", "entity_id", "action_type", "actor_id", "target_id", "department_id"];

impl AuditEntry {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "entity_type" => Some(self.entity_type),
            "entity_id" => Some(&self.entity_id),
            "action_type" => Some(self.action_type),
            "actor_id" => Some(&self.actor_id),
            "target_id" => self.target_id.as_deref(),
            "department_id" => self.department_id.as_deref(),
            _ => None,
        }
    }
}

/// A validated query.
struct Query {
    skip: usize,
    limit: usize,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    exact: Vec<(String, String)>,
    search: Option<String>,
}

impl Query {
    /// Parses the raw query; an error names the field, as a 422 `details` does.
    fn parse(raw: &str, clamp_limit: bool) -> Result<Query, (String, String)> {
        let mut q = Query { skip: 0, limit: 50, from: None, to: None, exact: Vec::new(), search: None };
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let bad = |why: &str| (k.to_string(), format!("{why}, got {v:?}"));
            match &*k {
                "skip" => q.skip = v.parse().map_err(|_| bad("must be an integer >= 0"))?,
                "limit" => match v.parse::<usize>() {
                    Ok(n @ 1..=100) => q.limit = n,
                    Ok(101..) if clamp_limit => q.limit = 100,
                    _ => return Err(bad("must be an integer between 1 and 100")),
                },
                "from_date" => {
                    q.from = Some(parse_date(&v, false).ok_or_else(|| bad("must be an ISO 8601 date or date-time"))?)
                }
                "to_date" => {
                    q.to = Some(parse_date(&v, true).ok_or_else(|| bad("must be an ISO 8601 date or date-time"))?)
                }
                "search_term" => q.search = Some(v.to_lowercase()),
                f if EXACT_FILTERS.contains(&f) => q.exact.push((k.to_string(), v.to_string())),
                _ => {} // Unknown parameters are ignored, as FastAPI does.
            }
        }
        Ok(q)
    }

    fn matches(&self, r: &AuditEntry) -> bool {
        self.from.is_none_or(|f| r.at >= f)
            && self.to.is_none_or(|t| r.at <= t)
            && self.exact.iter().all(|(k, v)| r.field(k) == Some(v.as_str()))
            && self.search.as_ref().is_none_or(|s| {
                [r.entity_name.as_deref().unwrap_or(""), r.actor_name, r.actor_email]
                    .iter()
                    .any(|f| f.to_lowercase().contains(s))
            })
    }
}

/// Date-only is UTC midnight (for `to_date`, the last microsecond of that day); a date-time
/// without offset is taken as UTC.
fn parse_date(s: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    let midnight = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc();
    Some(if end_of_day { midnight + chrono::Duration::days(1) - chrono::Duration::microseconds(1) } else { midnight })
}

#[derive(Serialize)]
struct Page<'a> {
    items: &'a [AuditEntry],
    total: usize,
    skip: usize,
    limit: usize,
    has_more: bool,
}

async fn audit_log(
    State(shared): State<Arc<Shared>>,
    Path(organization_id): Path<String>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let opts = &shared.opts.aitronos;
    let Some(org) = presented_keys(&headers)
        .find_map(|key| shared.tenant_of(SimVendor::Aitronos, &SimCredential::ApiKey(key.to_owned())))
    else {
        return error_response(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "Your API key is invalid", &ctx);
    };
    if shared.tenant_index(SimVendor::Aitronos, &organization_id) != Some(org) {
        return error_response(
            StatusCode::FORBIDDEN,
            "ORGANIZATION_ACCESS_DENIED",
            "You do not have access to this organization",
            &ctx,
        );
    }
    let q = match Query::parse(raw.as_deref().unwrap_or_default(), opts.clamp_limit) {
        Ok(q) => q,
        Err((field, message)) => {
            let details = json!({ "field": field, "message": message });
            return envelope(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_ERROR",
                "Invalid query parameters",
                details,
                &ctx,
            );
        }
    };
    let (items, total) = {
        let mut st = shared.state();
        let Some(store) = st.stores.aitronos.get_mut(org) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "No store", &ctx);
        };
        // The records are newest first: only the slice of the asked time range is filtered (a
        // benchmark's 250,000 records are not scanned for every page).
        let lo = q.to.map_or(0, |t| store.records.partition_point(|r| r.at > t));
        let hi = q.from.map_or(store.records.len(), |f| store.records.partition_point(|r| r.at >= f));
        let range = store.records.get(lo..hi.max(lo)).unwrap_or_default();
        let total = range.iter().filter(|r| q.matches(r)).count();
        let items: Vec<AuditEntry> =
            range.iter().filter(|r| q.matches(r)).skip(q.skip).take(q.limit).cloned().collect();
        // New records arrive between pages (README "Simulator conventions"), at the current time
        // (or up to `arrival_lateness` before it).
        let now = shared.clock.now_utc();
        let at = now - chrono::Duration::from_std(shared.opts.faults.arrivals_age).unwrap_or_default();
        for _ in 0..shared.arrivals_per_answer() {
            store.add(shared.arrival_at(at));
        }
        (items, total)
    };
    let page = Page { has_more: q.skip + items.len() < total, items: &items, total, skip: q.skip, limit: q.limit };
    let mut resp = Json(page).into_response();
    resp.extensions_mut().insert(ServedRecords(items.len()));
    resp
}

/// The keys a request presents: `X-API-Key: <key>` (primary) and `Authorization: Bearer <key>`
/// (§4.2); either may authenticate it.
fn presented_keys(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let bearer = get(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    get(header::HeaderName::from_static("x-api-key")).into_iter().chain(bearer)
}

/// The §4.7 error envelope without details.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str, ctx: &RequestCtx) -> Response {
    envelope(status, code, message, json!({}), ctx)
}

fn envelope(status: StatusCode, code: &str, message: &str, details: serde_json::Value, ctx: &RequestCtx) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "client_error" };
    let body = json!({ "success": false, "error": {
        "code": code, "message": message, "system_message": message, "type": kind,
        "status": status.as_u16(), "details": details, "trace_id": ctx.request_id,
        "timestamp": ctx.now.to_rfc3339_opts(SecondsFormat::Secs, true),
    }});
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::clock::Clock;
    use crate::sim::Sim;
    use crate::sim::tests::{get, opts, page, start, t0};

    /// Every item of every page, following `has_more` with `limit`.
    async fn all_items(sim: &Sim, query: &str, limit: usize) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        loop {
            let a = page(sim, &format!("{query}&skip={}&limit={limit}", items.len())).await;
            assert_eq!(a.status, 200);
            let got = a.json["items"].as_array().unwrap();
            assert_eq!(a.json["skip"], items.len());
            assert_eq!(a.json["limit"], limit);
            items.extend(got.iter().cloned());
            let total = a.json["total"].as_u64().unwrap() as usize;
            assert_eq!(a.json["has_more"], items.len() < total);
            if items.len() >= total {
                return items;
            }
        }
    }

    fn created_at(item: &serde_json::Value) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(item["created_at"].as_str().unwrap()).unwrap().to_utc()
    }

    #[tokio::test(start_paused = true)]
    async fn test_seeded_store_is_deterministic() {
        let (a, b) =
            (start(opts(300), Clock::starting_at(t0())).await, start(opts(300), Clock::starting_at(t0())).await);
        let mut other = opts(300);
        other.seed = 7;
        let c = start(other, Clock::starting_at(t0())).await;
        assert_eq!(a.aitronos_ids(), b.aitronos_ids());
        assert_eq!(a.aitronos_ids().iter().collect::<BTreeSet<_>>().len(), 300);
        let other: BTreeSet<String> = c.aitronos_ids().into_iter().collect();
        assert!(a.aitronos_ids().iter().all(|id| !other.contains(id)));
        for sim in [a, b, c] {
            sim.shutdown().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn test_paging_covers_every_record_once_newest_first() {
        let sim = start(opts(250), Clock::starting_at(t0())).await;
        let items = all_items(&sim, "", 100).await;
        let ids: Vec<String> = items.iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect();
        assert_eq!(ids, sim.aitronos_ids());
        assert_eq!(sim.request_log().len(), 3);
        let newest_first = |w: &[serde_json::Value]| created_at(&w[0]) >= created_at(&w[1]);
        assert!(items.windows(2).all(newest_first));
        let (oldest, newest) = (created_at(&items[249]), created_at(&items[0]));
        assert!(oldest >= t0() - chrono::Duration::hours(24) && newest <= t0() - chrono::Duration::minutes(10));
        // Default limit 50; past the end an empty page.
        let first = page(&sim, "").await;
        assert_eq!((first.json["limit"].as_u64(), first.items()), (Some(50), 50));
        let past = page(&sim, "skip=250").await;
        assert_eq!((past.items(), past.json["has_more"].as_bool()), (0, Some(false)));
        assert_eq!(sim.stats().served_records, 300);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_records_have_every_field_of_the_contract() {
        let sim = start(opts(200), Clock::starting_at(t0())).await;
        let items = all_items(&sim, "", 100).await;
        let fields: Vec<&str> = "id entity_type entity_id entity_name action_type actor_id \
            actor_name actor_email target_id target_name previous_value new_value metadata \
            organization_id department_id created_at"
            .split_whitespace()
            .collect();
        for item in &items {
            let obj = item.as_object().unwrap();
            assert_eq!(obj.len(), fields.len());
            assert!(fields.iter().all(|f| obj.contains_key(*f)), "{item}");
            assert!(uuid::Uuid::parse_str(item["id"].as_str().unwrap()).is_ok());
            assert_eq!(item["organization_id"], DEFAULT_ORGANIZATION_ID);
            assert!(item["metadata"].is_object());
            let at = item["created_at"].as_str().unwrap();
            assert!(at.len() == 27 && at.ends_with('Z'), "{at}");
        }
        let kinds: BTreeSet<&str> = items.iter().map(|i| i["entity_type"].as_str().unwrap()).collect();
        assert_eq!(kinds.len(), ENTITIES.len());
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_date_filters_are_inclusive() {
        let mut o = opts(400);
        o.aitronos.records_span = Duration::from_secs(72 * 3600);
        let sim = start(o, Clock::starting_at(t0())).await;
        let all = all_items(&sim, "", 100).await;
        let z = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        let (from, to) = (z(created_at(&all[300])), z(created_at(&all[100])));
        let q = format!("from_date={from}&to_date={to}");
        assert_eq!(page(&sim, &q).await.total(), 201);

        let on_16th = |i: &&serde_json::Value| i["created_at"].as_str().unwrap().starts_with("2026-03-16");
        let expected = all.iter().filter(on_16th).count();
        assert!(expected > 0);
        for q in [
            "from_date=2026-03-16&to_date=2026-03-16",
            "from_date=2026-03-16T00:00:00&to_date=2026-03-16T23:59:59.999999Z",
        ] {
            assert_eq!(page(&sim, q).await.total(), expected, "{q}");
        }

        let bad = page(&sim, "from_date=yesterday").await;
        assert_eq!(bad.error(), (422, "VALIDATION_ERROR"));
        assert_eq!(bad.json["error"]["details"]["field"], "from_date");
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_auth_and_organization_errors() {
        let sim = start(opts(5), Clock::starting_at(t0())).await;
        let path = format!("v1/organizations/{DEFAULT_ORGANIZATION_ID}/audit-log");
        for key in [None, Some("ak_wrong")] {
            let a = get(&sim, &path, key).await;
            assert_eq!((a.error(), &a.json["success"]), ((401, "INVALID_API_KEY"), &json!(false)));
            let e = &a.json["error"];
            assert_eq!((&e["status"], &e["type"]), (&json!(401), &json!("client_error")));
            assert_eq!(e["trace_id"].as_str(), a.headers.get("x-request-id").and_then(|v| v.to_str().ok()));
            assert_eq!(e["timestamp"], "2026-03-18T08:00:00Z");
        }
        let url = sim.base_url().join(&path).unwrap();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let bearer = client.get(url).bearer_auth(DEFAULT_API_KEY).send().await.unwrap();
        assert_eq!(bearer.status().as_u16(), 200);
        let other_org = "v1/organizations/ORG_OTHER00000000001/audit-log";
        let other = get(&sim, other_org, Some(DEFAULT_API_KEY)).await;
        assert_eq!(other.error(), (403, "ORGANIZATION_ACCESS_DENIED"));
        assert_eq!(sim.stats().unauthorized, 3);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_limit_and_skip_validation() {
        let sim = start(opts(5), Clock::starting_at(t0())).await;
        for q in ["limit=101", "limit=0", "skip=-1", "limit=ten"] {
            assert_eq!(page(&sim, q).await.error(), (422, "VALIDATION_ERROR"), "{q}");
        }
        sim.shutdown().await;
        let mut o = opts(5);
        o.aitronos.clamp_limit = true;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = page(&sim, "limit=500").await;
        assert_eq!((a.status, a.json["limit"].as_u64()), (200, Some(100)));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_arrivals_land_after_a_frozen_window() {
        let mut o = opts(120);
        o.faults.arrivals_per_page = 3;
        let sim = start(o, Clock::starting_at(t0())).await;
        let to = (t0() - chrono::Duration::minutes(2)).to_rfc3339_opts(SecondsFormat::Micros, true);
        let items = all_items(&sim, &format!("to_date={to}"), 50).await;
        assert_eq!(items.len(), 120, "arrivals stay outside the frozen window");
        assert_eq!(sim.aitronos_seeded(), 120 + 3 * 3);
        let newest = page(&sim, "limit=1").await;
        assert_eq!(created_at(&newest.json["items"][0]), t0());
        assert_eq!(newest.json["total"], 129);
        sim.shutdown().await;
    }

    /// The demo shows the account-security actions a detection engineer looks for (issue 17).
    #[tokio::test(start_paused = true)]
    async fn test_user_security_verbs_are_generated() {
        let sim = start(opts(1000), Clock::starting_at(t0())).await;
        let items = all_items(&sim, "entity_type=user", 100).await;
        let verbs: BTreeSet<&str> = items.iter().map(|i| i["action_type"].as_str().unwrap()).collect();
        for verb in ["password_reset", "password_changed", "mfa_enabled", "mfa_disabled", "locked", "unlocked"] {
            assert!(verbs.contains(verb), "{verb} not in {verbs:?}");
        }
        for verb in ["invited", "created", "updated", "deactivated", "reactivated", "deleted"] {
            assert!(verbs.contains(verb), "{verb} not in {verbs:?}");
        }
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_entity_and_action_filters() {
        let sim = start(opts(300), Clock::starting_at(t0())).await;
        let items = all_items(&sim, "entity_type=user&action_type=invited", 100).await;
        assert!(!items.is_empty());
        let invited = |i: &serde_json::Value| i["entity_type"] == "user" && i["action_type"] == "invited";
        assert!(items.iter().all(invited));
        sim.shutdown().await;
    }
}
