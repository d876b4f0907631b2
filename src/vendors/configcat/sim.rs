//! Simulated ConfigCat Public Management API organization audit log, README §1.
//!
//! `GET /v2/organizations/{organizationId}/auditlogs`: page-number paging (`pageNumber` ≥ 1,
//! default 1; `pageSize` 1..=100, default 100), answered
//! `{"paging":{currentPage,totalPages,pageSize,totalCount,hasPrevious,hasNext},"data":[...]}`,
//! newest first (`auditLogDateTime` descending, ties by `auditLogId` descending: the [assume] of
//! §1.4); a page past the end is `data: []`, `hasNext: false`. The legacy
//! `GET /v1/organizations/{organizationId}/auditlogs` answers a bare array of every matching record,
//! or — knob [`ConfigCatSimOptions::v1_redirects`], the post-2026-06-01 behaviour — a 302 to the
//! v2 path, whose default paging then applies (§1.1).
//!
//! Time window (§1.3): `fromUtcDateTime` inclusive, `toUtcDateTime` exclusive; neither → the last
//! 7 days; only `from` → up to 30 days from it but not past now; only `to` → the 30 days before
//! it; a window over 30 days, `from` after `to`, a malformed date or an out-of-range page → 400.
//! Auth is HTTP Basic with one credential per organization (401 `text/plain` when missing or
//! wrong; another organization's id → 404 "Not found.", §1.2).
//!
//! Rate-limit signals (§1.6) are sent by `mod.rs` for this vendor: `X-Rate-Limit-Remaining` and
//! `X-Rate-Limit-Reset` (an RFC 3339 UTC timestamp) on every answer, 429 with `Retry-After`;
//! default 60 requests a minute per organization [assume]. This file never sleeps and keeps no
//! counters.
//!
//! Records are `AuditLogItemModel` in the current (2026) schema, or with
//! [`ConfigCatSimOptions::legacy_schema`] the ≤ mid-2025 one (`changeSetId`, no `modelVersion`).
//! Types come from the whole §1.7 list, now and then a removed or a not-yet-known one; a few records
//! have `truncated: true` with a cut `details`; SCIM and scheduler actions have `userEmail: null`.
//! A product's team events name the product in `where`; a permission-group change names the
//! member's old and new group in `details` (a diff or text), an e-mail or full-name change the
//! old and new value; `userFullNameChanged` and `teamMemberRemoved` name the member by display
//! name, the other member events by address.
//! Names are made up, mail domains are example.com/example.net.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use super::ConfigCat;
use crate::sim::{
    RateLimitSetting, RequestCtx, ServedRecords, Shared, SimContract, SimCredential, SimVendor, SimulateArgs, Tenant,
    ceil_secs, nth_id, numbered_tenants, parse_rate_limit, put, record_rng, seeded_range, seeded_times,
};

/// Simulator credentials (printed by `auditrelay simulate`; not secrets).
pub const DEFAULT_ORGANIZATION_ID: &str = "08d9e1f2-3a4b-4c5d-8e6f-000000000001";
pub const DEFAULT_USERNAME: &str = "configcat-sim-user-0001";
pub const DEFAULT_PASSWORD: &str = "configcat-sim-password-0001";

/// ConfigCat-specific knobs.
#[derive(Clone, Debug)]
pub struct ConfigCatSimOptions {
    /// Organizations served, each with its own credential, store and rate-limit window.
    pub organizations: usize,
    /// Records seeded at start, per organization.
    pub records: usize,
    /// Id and Basic credential of the first organization; the others count the trailing number up.
    pub organization_id: String,
    pub username: String,
    pub password: String,
    /// Seeded records lie in `[now - records_span, now - records_min_age]`.
    pub records_span: Duration,
    pub records_min_age: Duration,
    /// The v1 path answers 302 to the v2 path instead of a bare array (§1.1, since 2026-06-01).
    pub v1_redirects: bool,
    /// Records in the ≤ mid-2025 schema: `changeSetId`, no `modelVersion` (§1.5).
    pub legacy_schema: bool,
}

impl Default for ConfigCatSimOptions {
    fn default() -> Self {
        ConfigCatSimOptions {
            organizations: 1,
            records: 1000,
            organization_id: DEFAULT_ORGANIZATION_ID.to_owned(),
            username: DEFAULT_USERNAME.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            records_span: Duration::from_secs(24 * 3600),
            records_min_age: Duration::from_secs(600),
            v1_redirects: false,
            legacy_schema: false,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "ConfigCat")]
pub struct ConfigCatArgs {
    /// Seeded ConfigCat records per organization.
    #[arg(long, default_value_t = 1000)]
    pub configcat_records: usize,
    #[arg(long, default_value_t = 1)]
    pub configcat_organizations: usize,
    #[arg(long, default_value = DEFAULT_ORGANIZATION_ID)]
    pub configcat_organization_id: String,
    #[arg(long, default_value = DEFAULT_USERNAME)]
    pub configcat_username: String,
    #[arg(long, default_value = DEFAULT_PASSWORD)]
    pub configcat_password: String,
    /// The legacy v1 path answers 302 to v2 (post-2026-06-01 behaviour) instead of a bare array.
    #[arg(long)]
    pub configcat_v1_redirects: bool,
    /// Emit the ≤ mid-2025 record schema (`changeSetId`, no `modelVersion`).
    #[arg(long)]
    pub configcat_legacy_schema: bool,
    /// Overrides `--rate-limit` for ConfigCat.
    #[arg(long, value_parser = parse_rate_limit)]
    pub configcat_rate_limit: Option<RateLimitSetting>,
}

impl SimContract for ConfigCat {
    type Options = ConfigCatSimOptions;
    type Store = Store;
    type Args = ConfigCatArgs;

    /// [assume] 60/min (§1.6).
    const RATE_LIMIT: (u32, Duration) = (60, Duration::from_secs(60));

    fn audit_log_path(organization: &str) -> String {
        format!("/v2/organizations/{organization}/auditlogs")
    }

    fn routes() -> Router<Arc<Shared>> {
        Router::new()
            .route("/v2/organizations/{organization_id}/auditlogs", get(audit_logs_v2))
            .route("/v1/organizations/{organization_id}/auditlogs", get(audit_logs_v1))
    }

    /// The organizations `opts` describes, with their credentials.
    fn tenants(opts: &ConfigCatSimOptions) -> Vec<Tenant> {
        numbered_tenants(opts.organizations, &opts.organization_id, |i| SimCredential::Basic {
            username: nth_id(&opts.username, i),
            password: nth_id(&opts.password, i),
        })
    }

    fn no_credential() -> SimCredential {
        SimCredential::Basic { username: String::new(), password: String::new() }
    }

    fn generate(seed: u64, opts: &ConfigCatSimOptions, index: usize, _organization: &str, now: DateTime<Utc>) -> Store {
        Store::generate(seed, opts, index, now)
    }

    fn set_records(opts: &mut ConfigCatSimOptions, records: usize) {
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

    /// §1.6: remaining as an integer, reset as [assume] an RFC 3339 UTC timestamp.
    fn announce_limit(h: &mut HeaderMap, _max: u32, remaining: u32, end: DateTime<Utc>) {
        let reset = DateTime::from_timestamp(ceil_secs(end), 0).unwrap_or(end);
        put(h, "x-rate-limit-remaining", &remaining.to_string());
        put(h, "x-rate-limit-reset", &reset.to_rfc3339_opts(SecondsFormat::Secs, true));
    }

    fn options(c: &ConfigCatArgs, common: &SimulateArgs) -> ConfigCatSimOptions {
        ConfigCatSimOptions {
            organizations: c.configcat_organizations,
            records: c.configcat_records,
            organization_id: c.configcat_organization_id.clone(),
            username: c.configcat_username.clone(),
            password: c.configcat_password.clone(),
            records_span: common.records_span,
            records_min_age: common.records_min_age,
            v1_redirects: c.configcat_v1_redirects,
            legacy_schema: c.configcat_legacy_schema,
        }
    }

    fn rate_limit(c: &ConfigCatArgs) -> Option<RateLimitSetting> {
        c.configcat_rate_limit
    }
}

/// `auditLogTypeEnum`, the current list of §1.7.
#[rustfmt::skip]
pub const AUDIT_LOG_TYPES: &[&str] = &[
    "productCreated", "productChanged", "productDeleted", "productsReordered", "productPreferencesUpdated",
    "teamMemberInvited", "teamMemberInvitationRevoked", "teamMemberJoined", "teamMemberPermissionGroupChanged",
    "teamMemberRemoved", "teamMemberLeft", "teamMemberInvitationChanged", "teamMemberInvitationResent",
    "teamMemberInvitationRejected", "teamMemberAddedToProduct", "configCreated", "configChanged", "configDeleted",
    "configsReordered", "environmentCreated", "environmentChanged", "environmentDeleted", "environmentsReordered",
    "settingCreated", "settingChanged", "settingDeleted", "settingsReordered", "predefinedVariationsChanged",
    "settingConvertedToPredefinedVariations", "settingConvertedToFreeFormValues", "settingValueChanged",
    "webHookCreated", "webHookChanged", "webHookDeleted", "permissionGroupCreated", "permissionGroupChanged",
    "permissionGroupDeleted", "permissionGroupDefault", "apiKeyAdded", "apiKeyRemoved", "integrationAdded",
    "integrationChanged", "integrationRemoved", "apiKeyConnected", "integrationLinkAdded", "integrationLinkRemoved",
    "organizationAdded", "organizationChanged", "organizationSubscriptionTypeChanged", "organizationAdminChanged",
    "organizationAdminLeft", "twoFactorDisabledForMember", "tagAdded", "tagChanged", "tagRemoved", "settingTagAdded",
    "settingTagRemoved", "publicApiAccessTokenAdded", "publicApiAccessTokenRemoved", "domainAdded", "domainVerified",
    "domainRemoved", "autoProvisioningConfigurationChanged", "samlIdpConfigurationAdded",
    "samlIdpConfigurationRemoved", "samlIdpConfigurationUpdated", "autoProvisioningEnabledChanged",
    "organizationMemberJoined", "organizationMemberProductJoinRequested",
    "organizationMemberProductJoinRequestRejected", "organizationMemberProductJoinRequestApproved",
    "organizationMemberRemoved", "codeReferencesUploaded", "codeReferenceDeleted", "codeReferenceStaleBranchDeleted",
    "segmentCreated", "segmentChanged", "segmentDeleted", "webhookSigningKeyDeleted", "webhookSigningKeyCreated",
    "userProvisioningConfigurationChanged", "syncGroupProvisioningRuleChanged", "syncGroupsReordered",
    "syncUserProvisioningEnabled", "syncUserProvisioningDisabled", "userEmailChanged", "userFullNameChanged",
    "userDisabled", "awsConnected", "awsDisconnected", "userEnabled", "syncUserDeleted", "syncGroupDeleted",
    "proxyConfigurationCreated", "proxyConfigurationChanged", "proxyConfigurationDeleted",
    "proxyConfigurationSecretRegenerated", "proxyNotificationSettingsUpdated", "proxyNotificationSettingsDeleted",
    "proxyNotificationSigningKeyAdded", "proxyNotificationSigningKeyDeleted", "changeRequestCreated",
    "changeRequestUpdated", "changeRequestSettingValuesUpdated", "changeRequestSettingValueRebased",
    "changeRequestApproved", "changeRequestApprovalDismissed", "changeRequestApplied",
    "changeRequestAppliedOnSchedule", "changeRequestClosed", "changeRequestNeedsAttention",
    "changeRequestCommentAdded", "changeRequestCommentEdited", "changeRequestCommentDeleted",
    "changeRequestSettingDeleted", "changeRequestNeedsAttentionFixed", "changeRequestOwnershipClaimed",
];
/// Removed since 2024, still in old data (§1.7).
pub const REMOVED_TYPES: &[&str] =
    &["productOwnershipTransferred", "organizationRemoved", "domainSamlConfigured", "domainSamlDeleted"];
/// Not (yet) in any list: the set is open and clients must keep unknown values.
const FUTURE_TYPES: &[&str] = &["aiFlagCleanupSuggested", "settingArchived", "scheduledRolloutPaused"];
/// The everyday changes, drawn more often than the rest.
#[rustfmt::skip]
const COMMON_TYPES: &[&str] = &[
    "settingValueChanged", "settingValueChanged", "settingValueChanged", "settingChanged", "settingCreated",
    "configChanged", "changeRequestCreated", "changeRequestApproved", "changeRequestApplied", "teamMemberInvited",
];

const PEOPLE: &[(&str, &str)] = &[
    ("Jordan Reyes", "jordan.reyes@example.com"),
    ("Amara Osei", "amara.osei@example.com"),
    ("Sam Lindqvist", "sam.lindqvist@example.net"),
    ("Priya Raman", "priya.raman@example.com"),
    ("Tomasz Nowak", "tomasz.nowak@example.net"),
    ("Hana Sato", "hana.sato@example.com"),
];
const PRODUCTS: &[&str] = &["Checkout Service", "Mobile App", "Marketing Site"];
const CONFIGS: &[&str] = &["Main Config", "Feature Toggles", "Experiments"];
const ENVIRONMENTS: &[&str] = &["Production", "Staging", "Development"];
const FLAGS: &[&str] = &["enableNewPaymentPage", "isDarkModeEnabled", "maxCartItems", "showBetaBanner", "useNewSearch"];
const GROUPS: &[&str] = &["Developers", "Product Owners", "Read only", "Administrators"];
const REASONS: &[&str] = &[
    "Roll out new payment page to 25% (PAY-1182)",
    "Hotfix: disable search for EU traffic",
    "Bulk clean-up of stale flags after Q2 release",
    "Requested by support (SUP-3310)",
];

/// One `AuditLogItemModel` (§1.5). `at` is `auditLogDateTime` as a time, for filtering and order.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditLogItem {
    audit_log_id: i64,
    audit_log_date_time: String,
    audit_log_type_enum: &'static str,
    /// Legacy schema only: `Some(None)` is a `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    change_set_id: Option<Option<String>>,
    truncated: bool,
    /// Current schema only.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_version: Option<i32>,
    audit_log_type: String,
    user_email: Option<&'static str>,
    user_name: &'static str,
    #[serde(rename = "where")]
    location: String,
    why: Option<&'static str>,
    action_target: String,
    details: String,
    #[serde(skip)]
    at: DateTime<Utc>,
}

/// One organization's records, newest first, plus what is needed to generate arrivals.
pub struct Store {
    records: Vec<AuditLogItem>,
    seed: u64,
    organization_name: String,
    legacy: bool,
    /// Index of the next record to generate (seeded records are `0..records`).
    next: u64,
    /// The id the next arrival gets; ids grow with time, as the vendor's do.
    next_id: i64,
}

impl Store {
    /// Organization `index`'s records (ids of different organizations never meet).
    pub(crate) fn generate(seed: u64, opts: &ConfigCatSimOptions, index: usize, now: DateTime<Utc>) -> Store {
        let range = seeded_range(now, opts.records_span, opts.records_min_age);
        let times = seeded_times(seed, opts.records, range, 1000);
        let mut order: Vec<usize> = (0..times.len()).collect();
        order.sort_by_key(|&i| (times[i], i));
        let mut store = Store {
            records: Vec::with_capacity(opts.records),
            seed,
            organization_name: if index == 0 { "Example Org".to_owned() } else { format!("Example Org {}", index + 1) },
            legacy: opts.legacy_schema,
            next: opts.records as u64,
            next_id: 58_000_000 + 10_000_000 * index as i64,
        };
        for i in order {
            let item = store.item(i as u64, times[i]);
            store.records.push(item);
        }
        store.records.reverse();
        store
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.records.iter().map(|r| r.audit_log_id.to_string()).collect()
    }

    /// Every record as the JSON text of its object in a page's `data`, newest first.
    pub(crate) fn records_json(&self) -> Vec<String> {
        self.records.iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect()
    }

    /// Generates the next record (an arrival) at `at` and inserts it in order.
    fn add(&mut self, at: DateTime<Utc>) {
        let item = self.item(self.next, crate::sim::truncate_to(at, 1000));
        self.next += 1;
        let pos = self.records.partition_point(|r| (r.at, r.audit_log_id) > (item.at, item.audit_log_id));
        self.records.insert(pos, item);
    }

    /// Record `i` at `at`, with the next id.
    fn item(&mut self, i: u64, at: DateTime<Utc>) -> AuditLogItem {
        let mut rng = record_rng(self.seed, i, 2);
        self.next_id += rng.i64(1..=40);
        let kind = match rng.u32(..100) {
            0 => FUTURE_TYPES[rng.usize(..FUTURE_TYPES.len())],
            1 => REMOVED_TYPES[rng.usize(..REMOVED_TYPES.len())],
            2..=39 => COMMON_TYPES[rng.usize(..COMMON_TYPES.len())],
            _ => AUDIT_LOG_TYPES[rng.usize(..AUDIT_LOG_TYPES.len())],
        };
        let (actor, target_person) = (PEOPLE[rng.usize(..PEOPLE.len())], PEOPLE[rng.usize(..PEOPLE.len())]);
        let (product, config) = (PRODUCTS[rng.usize(..PRODUCTS.len())], CONFIGS[rng.usize(..CONFIGS.len())]);
        let (environment, flag) = (ENVIRONMENTS[rng.usize(..ENVIRONMENTS.len())], FLAGS[rng.usize(..FLAGS.len())]);
        let group = GROUPS[rng.usize(..GROUPS.len())];
        let has = |prefixes: &[&str]| prefixes.iter().any(|p| kind.starts_with(p));
        // SCIM sync and scheduled changes have no human actor (§1.5: userEmail null).
        let (user_name, user_email) = if kind.starts_with("sync") {
            ("User provisioning (SCIM)", None)
        } else if kind == "changeRequestAppliedOnSchedule" {
            ("Scheduler", None)
        } else {
            (actor.0, Some(actor.1))
        };
        // A product's team (its members and their permission groups) is named by the product.
        let product_team = has(&["organizationMemberProduct"])
            || matches!(
                kind,
                "teamMemberJoined"
                    | "teamMemberRemoved"
                    | "teamMemberLeft"
                    | "teamMemberAddedToProduct"
                    | "teamMemberPermissionGroupChanged"
            );
        let location = if product_team {
            product.to_owned()
        } else if has(&["setting", "predefinedVariations", "changeRequest", "webHook", "webhookSigning"]) {
            format!("{product} / {config} / {environment}")
        } else if has(&["config"]) {
            format!("{product} / {config}")
        } else if has(&["environment"]) {
            format!("{product} / {environment}")
        } else if has(&["product", "segment", "tag", "integration", "apiKey", "codeReference", "permissionGroup"]) {
            product.to_owned()
        } else {
            self.organization_name.clone()
        };
        let action_target = if has(&["settingTag", "tag"]) {
            "beta".to_owned()
        } else if has(&["setting", "predefinedVariations", "changeRequest", "codeReference"]) {
            flag.to_owned()
        } else if has(&["config"]) {
            config.to_owned()
        } else if has(&["environment"]) {
            environment.to_owned()
        } else if has(&["product"]) {
            product.to_owned()
        } else if has(&["permissionGroup"]) {
            group.to_owned()
        } else if has(&["webHook", "webhook"]) {
            "https://hooks.example.com/configcat".to_owned()
        } else if has(&["domain"]) {
            "example.com".to_owned()
        } else if matches!(kind, "userFullNameChanged" | "teamMemberRemoved") {
            target_person.0.to_owned() // a member named by their display name, not an address
        } else if has(&["team", "organizationMember", "organizationAdmin", "user", "sync", "twoFactor"]) {
            target_person.1.to_owned()
        } else {
            self.organization_name.clone()
        };
        let audit_log_type = human(kind);
        let diff = |before: serde_json::Value, after: serde_json::Value| json!({"before": before, "after": after});
        let (details, truncated) = if rng.u32(..100) < 3 {
            // Too large for the log: the vendor cuts `details` (not valid JSON any more, §1.5).
            let description = "Flags for checkout, cart, payment and shipping flows; see runbook RB-221. ".repeat(12);
            let full = diff(json!({"name": config, "description": description}), json!({"name": config})).to_string();
            (full[..full.len() * 3 / 5].to_owned(), true)
        } else if kind == "settingValueChanged" {
            let percentage = rng.u8(1..=99);
            let after = json!({"value": false, "percentageOptions": [
                {"percentage": percentage, "value": true}, {"percentage": 100 - percentage, "value": false}]});
            (diff(json!({"value": false, "percentageOptions": []}), after).to_string(), false)
        } else if kind == "teamMemberPermissionGroupChanged" {
            // The member's old and new permission group, as a diff or as text by turns.
            let old = GROUPS[(GROUPS.iter().position(|g| *g == group).unwrap_or(0) + 1) % GROUPS.len()];
            if i.is_multiple_of(2) {
                (diff(json!({"permissionGroup": old}), json!({"permissionGroup": group})).to_string(), false)
            } else {
                (format!("Permission group changed from '{old}' to '{group}' in '{product}'"), false)
            }
        } else if kind == "userEmailChanged" {
            let (local, _) = target_person.1.split_once('@').unwrap_or((target_person.1, ""));
            let new = format!("{local}@example.org");
            (diff(json!({"email": target_person.1}), json!({"email": new})).to_string(), false)
        } else if kind == "userFullNameChanged" {
            let (first, last) = target_person.0.split_once(' ').unwrap_or((target_person.0, ""));
            let new = format!("{}. {last}", first.chars().next().unwrap_or('X'));
            (diff(json!({"fullName": target_person.0}), json!({"fullName": new})).to_string(), false)
        } else if kind.ends_with("Changed") {
            (
                diff(json!({"name": action_target}), json!({"name": format!("{action_target} (renamed)")})).to_string(),
                false,
            )
        } else {
            (format!("{audit_log_type}: '{action_target}'"), false)
        };
        let why = (rng.u32(..100) < 35).then(|| REASONS[rng.usize(..REASONS.len())]);
        let change_set = || {
            let name = format!("configcat/{}/{i}/change-set", self.seed);
            has(&["setting", "changeRequest"])
                .then(|| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string())
        };
        AuditLogItem {
            audit_log_id: self.next_id,
            audit_log_date_time: at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            audit_log_type_enum: kind,
            change_set_id: self.legacy.then(change_set),
            truncated,
            model_version: (!self.legacy).then_some(2),
            audit_log_type,
            user_email,
            user_name,
            location,
            why,
            action_target,
            details,
            at,
        }
    }
}

/// `settingValueChanged` → `Setting value changed`.
fn human(kind: &str) -> String {
    let mut out = String::with_capacity(kind.len() + 4);
    for (i, c) in kind.chars().enumerate() {
        if i == 0 {
            out.push(c.to_ascii_uppercase());
        } else if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A validated query.
#[derive(Debug)]
struct Query {
    page_number: usize,
    page_size: usize,
    /// Inclusive.
    from: DateTime<Utc>,
    /// Exclusive.
    to: DateTime<Utc>,
    kind: Option<String>,
}

impl Query {
    /// Parses the raw query at `now`; an error is the 400 message.
    fn parse(raw: &str, now: DateTime<Utc>) -> Result<Query, String> {
        let (mut page_number, mut page_size, mut from, mut to, mut kind) = (1, 100, None, None, None);
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            let bad = |why: &str| format!("Bad request. {k} {why}, got {v:?}.");
            match &*k {
                "pageNumber" => match v.parse::<i32>() {
                    Ok(n @ 1..) => page_number = n as usize,
                    _ => return Err(bad("must be an integer >= 1")),
                },
                "pageSize" => match v.parse::<i32>() {
                    Ok(n @ 1..=100) => page_size = n as usize,
                    _ => return Err(bad("must be an integer between 1 and 100")),
                },
                "fromUtcDateTime" => from = Some(parse_date(&v).ok_or_else(|| bad("must be a date-time"))?),
                "toUtcDateTime" => to = Some(parse_date(&v).ok_or_else(|| bad("must be a date-time"))?),
                "auditLogType" => {
                    let known = [AUDIT_LOG_TYPES, REMOVED_TYPES, FUTURE_TYPES].concat();
                    if !known.contains(&&*v) {
                        return Err(bad("is not a known audit log type"));
                    }
                    kind = Some(v.into_owned());
                }
                "productId" | "configId" | "environmentId" => {
                    // Accepted and validated, not applied: the records name products, not ids.
                    uuid::Uuid::parse_str(&v).map_err(|_| bad("must be a UUID"))?;
                }
                _ => {} // Unknown parameters are ignored, as ASP.NET does.
            }
        }
        let (days_7, days_30) = (chrono::Duration::days(7), chrono::Duration::days(30));
        let (from, to) = match (from, to) {
            (None, None) => (now - days_7, now),
            (Some(f), None) => (f, (f + days_30).min(now).max(f)),
            (None, Some(t)) => (t - days_30, t),
            (Some(f), Some(t)) => (f, t),
        };
        if to - from > days_30 {
            return Err("Bad request. The time window (toUtcDateTime - fromUtcDateTime) cannot exceed 30 days.".into());
        }
        if from > to {
            return Err("Bad request. fromUtcDateTime must not be after toUtcDateTime.".into());
        }
        Ok(Query { page_number, page_size, from, to, kind })
    }

    fn matches(&self, r: &AuditLogItem) -> bool {
        self.from <= r.at && r.at < self.to && self.kind.as_deref().is_none_or(|k| k == r.audit_log_type_enum)
    }
}

/// RFC 3339; a date-time without offset or a bare date is taken as UTC (as ASP.NET binds them).
fn parse_date(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    Some(NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0)?.and_utc())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    current_page: usize,
    total_pages: usize,
    page_size: usize,
    total_count: usize,
    has_previous: bool,
    has_next: bool,
}

#[derive(Serialize)]
struct Page<'a> {
    paging: Paging,
    data: &'a [AuditLogItem],
}

async fn audit_logs_v2(
    State(shared): State<Arc<Shared>>,
    Path(organization_id): Path<String>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let org = match authorize(&shared, &headers, &organization_id) {
        Ok(org) => org,
        Err(denied) => return denied.into_response(),
    };
    let q = match Query::parse(raw.as_deref().unwrap_or_default(), ctx.now) {
        Ok(q) => q,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let Some((data, total)) = select(&shared, org, &q, Some((q.page_number, q.page_size))) else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let total_pages = total.div_ceil(q.page_size);
    let paging = Paging {
        current_page: q.page_number,
        total_pages,
        page_size: q.page_size,
        total_count: total,
        has_previous: q.page_number > 1,
        has_next: q.page_number < total_pages,
    };
    let mut resp = Json(Page { paging, data: &data }).into_response();
    resp.extensions_mut().insert(ServedRecords(data.len()));
    resp
}

/// Legacy v1: a bare array of every matching record, or a redirect to v2 (§1.1).
async fn audit_logs_v1(
    State(shared): State<Arc<Shared>>,
    Path(organization_id): Path<String>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if shared.opts.configcat.v1_redirects {
        // "Redirected to the V2 endpoints with default pagination parameters": the filters stay.
        let query = raw.map(|q| format!("?{q}")).unwrap_or_default();
        let location = format!("/v2/organizations/{organization_id}/auditlogs{query}");
        return (StatusCode::FOUND, [(header::LOCATION, location)]).into_response();
    }
    let org = match authorize(&shared, &headers, &organization_id) {
        Ok(org) => org,
        Err(denied) => return denied.into_response(),
    };
    let q = match Query::parse(raw.as_deref().unwrap_or_default(), ctx.now) {
        Ok(q) => q,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let Some((data, _)) = select(&shared, org, &q, None) else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let mut resp = Json(&data).into_response();
    resp.extensions_mut().insert(ServedRecords(data.len()));
    resp
}

/// The records of organization `org` matching `q` (one page of them if `page` is
/// `(number, size)`) and how many match; then the arrivals. `None` if the store is missing.
fn select(shared: &Shared, org: usize, q: &Query, page: Option<(usize, usize)>) -> Option<(Vec<AuditLogItem>, usize)> {
    let mut st = shared.state();
    let store = st.stores.configcat.get_mut(org)?;
    // The records are newest first: only the slice of [from, to) is filtered (a benchmark's
    // 250,000 records are not scanned for every page).
    let lo = store.records.partition_point(|r| r.at >= q.to);
    let hi = store.records.partition_point(|r| r.at >= q.from);
    let range = store.records.get(lo..hi.max(lo)).unwrap_or_default();
    let total = range.iter().filter(|r| q.matches(r)).count();
    let (skip, take) = page.map_or((0, usize::MAX), |(number, size)| ((number - 1).saturating_mul(size), size));
    let data = range.iter().filter(|r| q.matches(r)).skip(skip).take(take).cloned().collect();
    // New records arrive between pages (README "Simulator conventions"), at the current time
    // (or up to `arrival_lateness` before it).
    let now = shared.clock.now_utc();
    for _ in 0..shared.arrivals_per_answer() {
        store.add(shared.arrival_at(now));
    }
    Some((data, total))
}

/// The organization the request may read: its Basic credential must be one of ours (else 401),
/// and the organization in the path the credential's own (else 404 "Not found.", §1.2).
fn authorize(shared: &Shared, headers: &HeaderMap, organization_id: &str) -> Result<usize, Denied> {
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then(|| token.trim())
    });
    let org = presented.and_then(|token| {
        shared.tenants.of(SimVendor::ConfigCat).iter().position(|t| match &t.credential {
            SimCredential::Basic { username, password } => base64(format!("{username}:{password}").as_bytes()) == token,
            _ => false,
        })
    });
    let org = org.ok_or(Denied::Unauthorized)?;
    if shared.tenant_index(SimVendor::ConfigCat, organization_id) != Some(org) {
        return Err(Denied::NotFound);
    }
    Ok(org)
}

/// Why [`authorize`] refused a request; both answers are short plain text (§1.2, §1.8).
enum Denied {
    Unauthorized,
    NotFound,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Denied::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized."),
            Denied::NotFound => (StatusCode::NOT_FOUND, "Not found."),
        };
        (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
    }
}

/// Standard base64 with padding (RFC 4648 §4), for comparing Basic credentials.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The [assume] error body of §1.8: `{"code": <status>, "message": "<text>"}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "code": status.as_u16(), "message": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;
    use crate::clock::Clock;
    use crate::sim::tests::{Answer, authed, call, fetch, fixed, header, opts, send, start, t0};
    use crate::sim::{RateLimitSetting, Sim, SimOptions};

    const V: SimVendor = SimVendor::ConfigCat;

    async fn page(sim: &Sim, query: &str) -> Answer {
        fetch(sim, V, DEFAULT_ORGANIZATION_ID, query).await
    }

    /// Every record of every page, following `hasNext`.
    async fn all_pages(sim: &Sim, query: &str, size: usize) -> Vec<Value> {
        let mut data = Vec::new();
        for number in 1.. {
            let a = page(sim, &format!("{query}&pageNumber={number}&pageSize={size}")).await;
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            let p = &a.json["paging"];
            assert_eq!((p["currentPage"].as_u64(), p["pageSize"].as_u64()), (Some(number), Some(size as u64)));
            assert_eq!(p["hasPrevious"], number > 1);
            data.extend(a.json["data"].as_array().unwrap().iter().cloned());
            if !p["hasNext"].as_bool().unwrap() {
                assert_eq!(p["totalCount"].as_u64(), Some(data.len() as u64));
                assert_eq!(p["totalPages"].as_u64(), Some(number));
                break;
            }
        }
        data
    }

    fn options(records: usize) -> SimOptions {
        let mut o = opts(records);
        o.configcat.records = records;
        o
    }

    #[tokio::test(start_paused = true)]
    async fn test_paging_covers_every_record_once_newest_first() {
        let sim = start(options(250), Clock::starting_at(t0())).await;
        let data = all_pages(&sim, "", 100).await;
        let ids: Vec<String> = data.iter().map(|r| r["auditLogId"].as_i64().unwrap().to_string()).collect();
        assert_eq!(ids, sim.record_keys(V, DEFAULT_ORGANIZATION_ID));
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 250);
        let key = |r: &Value| (r["auditLogDateTime"].as_str().unwrap().to_owned(), r["auditLogId"].as_i64().unwrap());
        assert!(data.windows(2).all(|w| key(&w[0]) > key(&w[1])), "auditLogDateTime desc, then auditLogId desc");
        // Default page size 100; past the end an empty page.
        let first = page(&sim, "").await;
        assert_eq!(
            (first.json["data"].as_array().unwrap().len(), &first.json["paging"]["totalPages"]),
            (100, &json!(3))
        );
        let past = page(&sim, "pageNumber=9").await;
        assert_eq!(
            (past.status, &past.json["data"], &past.json["paging"]["hasNext"]),
            (200, &json!([]), &json!(false))
        );
        assert_eq!(sim.vendor_stats(V).served_records, 350);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_records_follow_the_current_schema() {
        let mut o = options(3000);
        o.configcat.records_span = Duration::from_secs(6 * 24 * 3600);
        let sim = start(o, Clock::starting_at(t0())).await;
        let data = all_pages(&sim, "", 100).await;
        assert_eq!(data.len(), 3000);
        let fields = "auditLogId auditLogDateTime auditLogTypeEnum truncated modelVersion auditLogType userEmail \
            userName where why actionTarget details";
        let fields: Vec<&str> = fields.split_whitespace().collect();
        for r in &data {
            let obj = r.as_object().unwrap();
            assert_eq!(obj.len(), fields.len(), "{r}");
            assert!(fields.iter().all(|f| obj.contains_key(*f)), "{r}");
            let at = r["auditLogDateTime"].as_str().unwrap();
            assert!(at.len() == 24 && at.ends_with('Z') && DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        }
        let types: BTreeSet<&str> = data.iter().map(|r| r["auditLogTypeEnum"].as_str().unwrap()).collect();
        assert!(types.iter().filter(|t| AUDIT_LOG_TYPES.contains(t)).count() > 100, "{} types", types.len());
        assert!(types.iter().any(|t| !AUDIT_LOG_TYPES.contains(t)), "an unknown or removed type now and then");
        let truncated: Vec<&Value> = data.iter().filter(|r| r["truncated"] == true).collect();
        assert!(!truncated.is_empty());
        assert!(truncated.iter().all(|r| serde_json::from_str::<Value>(r["details"].as_str().unwrap()).is_err()));
        let system: Vec<&Value> = data.iter().filter(|r| r["userEmail"].is_null()).collect();
        assert!(!system.is_empty() && system.iter().all(|r| r["userName"].is_string()));
        assert_eq!(data[0]["auditLogType"].as_str().unwrap().chars().next().map(|c| c.is_uppercase()), Some(true));
        sim.shutdown().await;

        let mut o = options(200);
        o.configcat.legacy_schema = true;
        let sim = start(o, Clock::starting_at(t0())).await;
        let data = all_pages(&sim, "", 100).await;
        assert!(data.iter().all(|r| r.get("modelVersion").is_none() && r.get("changeSetId").is_some()));
        assert!(data.iter().any(|r| r["changeSetId"].is_string()) && data.iter().any(|r| r["changeSetId"].is_null()));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_time_window_rules() {
        let mut o = options(400);
        o.configcat.records_span = Duration::from_secs(40 * 24 * 3600);
        let sim = start(o, Clock::starting_at(t0())).await;
        let z = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (days, now) = (chrono::Duration::days, t0());
        let over = page(&sim, &format!("fromUtcDateTime={}&toUtcDateTime={}", z(now - days(31)), z(now))).await;
        assert_eq!(over.status, 400);
        assert!(over.json["message"].as_str().unwrap().contains("cannot exceed 30 days"), "{}", over.json);
        let exactly = page(&sim, &format!("fromUtcDateTime={}&toUtcDateTime={}", z(now - days(30)), z(now))).await;
        assert_eq!(exactly.status, 200);
        for bad in [
            "fromUtcDateTime=yesterday",
            "pageSize=0",
            "pageSize=101",
            "pageNumber=0",
            "pageNumber=x",
            "auditLogType=notAType",
            "productId=42",
        ] {
            assert_eq!(page(&sim, bad).await.status, 400, "{bad}");
        }
        let reversed = format!("fromUtcDateTime={}&toUtcDateTime={}", z(now), z(now - days(1)));
        assert_eq!(page(&sim, &reversed).await.status, 400);

        // Neither bound: the last 7 days. Only `from`: up to now.
        let all = all_pages(&sim, &format!("fromUtcDateTime={}", z(now - days(30))), 100).await;
        let in_days = |d: i64| {
            all.iter().filter(|r| r["auditLogDateTime"].as_str().unwrap() >= z(now - days(d)).as_str()).count()
        };
        assert_eq!(page(&sim, "").await.json["paging"]["totalCount"].as_u64(), Some(in_days(7) as u64));
        // `from` inclusive, `to` exclusive.
        let (newer, older) =
            (all[10]["auditLogDateTime"].as_str().unwrap(), all[20]["auditLogDateTime"].as_str().unwrap());
        let q = format!("fromUtcDateTime={older}&toUtcDateTime={newer}");
        let window = all_pages(&sim, &q, 100).await;
        let expected = all.iter().filter(|r| {
            let at = r["auditLogDateTime"].as_str().unwrap();
            older <= at && at < newer
        });
        assert_eq!(window.len(), expected.count());
        assert_eq!(
            window.first().map(|r| &r["auditLogId"]),
            all.iter().find(|r| r["auditLogDateTime"].as_str().unwrap() < newer).map(|r| &r["auditLogId"])
        );
        // The type filter.
        let kind = all[0]["auditLogTypeEnum"].as_str().unwrap();
        let filtered =
            all_pages(&sim, &format!("fromUtcDateTime={}&auditLogType={kind}", z(now - days(30))), 100).await;
        assert!(!filtered.is_empty() && filtered.iter().all(|r| r["auditLogTypeEnum"] == kind));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_v1_bare_array_and_redirect_knob() {
        let sim = start(options(150), Clock::starting_at(t0())).await;
        let v1 = format!("v1/organizations/{DEFAULT_ORGANIZATION_ID}/auditlogs");
        let a = call(&sim, &v1, |r| authed(V, sim.credential(V, DEFAULT_ORGANIZATION_ID), r)).await;
        assert_eq!(a.status, 200);
        let ids: Vec<String> = a.json.as_array().unwrap().iter().map(|r| r["auditLogId"].to_string()).collect();
        assert_eq!(ids, sim.record_keys(V, DEFAULT_ORGANIZATION_ID), "every record, no paging");
        sim.shutdown().await;

        let mut o = options(150);
        o.configcat.v1_redirects = true;
        let sim = start(o, Clock::starting_at(t0())).await;
        let cred = || sim.credential(V, DEFAULT_ORGANIZATION_ID);
        let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let url = sim.base_url().join(&format!("{v1}?fromUtcDateTime=2026-03-17T00:00:00Z")).unwrap();
        let redirect = send(authed(V, cred(), client.get(url))).await;
        assert_eq!(redirect.status, 302);
        let location =
            format!("/v2/organizations/{DEFAULT_ORGANIZATION_ID}/auditlogs?fromUtcDateTime=2026-03-17T00:00:00Z");
        assert_eq!(header(&redirect, "location"), location);
        let followed = call(&sim, &v1, |r| authed(V, cred(), r)).await;
        assert_eq!((followed.status, followed.json["data"].as_array().map(Vec::len)), (200, Some(100)));
        assert_eq!(followed.json["paging"]["totalCount"], 150);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_auth_errors() {
        let mut o = options(5);
        o.configcat.organizations = 2;
        let sim = start(o, Clock::starting_at(t0())).await;
        let path = format!("v2/organizations/{DEFAULT_ORGANIZATION_ID}/auditlogs");
        let none = call(&sim, &path, |r| r).await;
        assert_eq!((none.status, header(&none, "content-type")), (401, "text/plain"));
        let wrong = call(&sim, &path, |r| r.basic_auth(DEFAULT_USERNAME, Some("wrong"))).await;
        assert_eq!(wrong.status, 401);
        let bearer = call(&sim, &path, |r| r.bearer_auth(DEFAULT_PASSWORD)).await;
        assert_eq!(bearer.status, 401);
        let second = sim.organizations(V)[1].clone();
        for org in [second.as_str(), "00000000-0000-0000-0000-000000000000"] {
            let path = format!("v2/organizations/{org}/auditlogs");
            let a = call(&sim, &path, |r| authed(V, sim.credential(V, DEFAULT_ORGANIZATION_ID), r)).await;
            assert_eq!((a.status, a.body.as_slice()), (404, b"Not found.".as_slice()), "{org}");
        }
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(sim.vendor_stats(V).unauthorized, 3);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_rate_limit_headers() {
        let mut o = options(5);
        o.faults.rate_limit = fixed(2, 60);
        let sim = start(o, Clock::starting_at(t0())).await;
        for remaining in ["1", "0"] {
            let a = page(&sim, "").await;
            assert_eq!(a.status, 200);
            assert_eq!(header(&a, "x-rate-limit-remaining"), remaining);
            assert_eq!(header(&a, "x-rate-limit-reset"), "2026-03-18T08:01:00Z");
            assert!(a.headers.get("x-ratelimit-remaining").is_none(), "ConfigCat's own header names only");
        }
        let limited = page(&sim, "").await;
        assert_eq!((limited.status, header(&limited, "retry-after")), (429, "60"));
        assert_eq!(limited.json["code"], 429);
        sim.shutdown().await;

        let mut o = options(5);
        o.faults.rate_limit = RateLimitSetting::VendorDefault;
        o.faults.limit_headers = false;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = page(&sim, "").await;
        assert!(a.headers.get("x-rate-limit-remaining").is_none() && a.headers.get("x-rate-limit-reset").is_none());
        for _ in 0..59 {
            page(&sim, "").await;
        }
        assert_eq!(page(&sim, "").await.status, 429, "the default 60/min");
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_arrivals_land_after_a_frozen_window() {
        let mut o = options(120);
        o.faults.arrivals_per_page = 2;
        let sim = start(o, Clock::starting_at(t0())).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        let to = (t0() - chrono::Duration::minutes(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let data = all_pages(&sim, &format!("toUtcDateTime={to}"), 50).await;
        assert_eq!(data.len(), 120);
        let keys = sim.record_keys(V, DEFAULT_ORGANIZATION_ID);
        assert_eq!(keys.len(), 126);
        let newest: i64 = keys[0].parse().unwrap();
        assert!(data.iter().all(|r| r["auditLogId"].as_i64().unwrap() < newest), "arrivals get larger ids");
        sim.shutdown().await;
    }

    #[test]
    fn test_type_list_is_the_whole_documented_one() {
        assert_eq!(AUDIT_LOG_TYPES.len(), 117);
        assert_eq!(AUDIT_LOG_TYPES.iter().collect::<BTreeSet<_>>().len(), 117);
        let (first, last) = (AUDIT_LOG_TYPES.first(), AUDIT_LOG_TYPES.last());
        assert_eq!((first, last), (Some(&"productCreated"), Some(&"changeRequestOwnershipClaimed")));
        assert!(REMOVED_TYPES.iter().chain(FUTURE_TYPES).all(|t| !AUDIT_LOG_TYPES.contains(t)));
        assert_eq!(human("settingValueChanged"), "Setting value changed");
    }

    #[test]
    fn test_base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
