//! Simulated Astronomer (Astro API v1) organization audit logs, README §2.
//!
//! `GET /v1/organizations/{organizationId}/audit-logs?startDate=&endDate=` with
//! `Authorization: Bearer <token>`: no paging, no envelope, no count. The answer is the whole
//! window `[startDate, endDate)` [assume] as NDJSON (one `\n`-terminated JSON object per line,
//! ascending `timestamp` [assume]), gzip-compressed with `Content-Encoding: gzip` and
//! `Content-Type: application/x-ndjson` (§2.4); an empty window is the gzip of zero bytes.
//! Missing `startDate` → now − 1 day, missing `endDate` → now; a date that is not RFC 3339,
//! `startDate > endDate` or a span over 90 days → 400 with the §2.7 body including `fieldErrors`.
//! A token reaches only its own organization: unknown token → 401, another known organization →
//! 403, an unknown one → 404; knob [`AstronomerSimOptions::tokens_lack_owner_role`] → 403.
//!
//! Rate limit (§2.6): 2 requests per minute per organization, documented; a 429 carries
//! `Retry-After` seconds (or not, with `RetryAfterMode::Omit`: clients then fall back to 60 s) and
//! no budget headers. Limit and shared faults are applied by `mod.rs`; this file adds the faults
//! only a gzip NDJSON answer can have, each decided per request from the seed:
//! [`AstronomerEncoding`] (double compression, a gzip file without `Content-Encoding`), a gzip
//! stream cut off mid-way ([`AstronomerSimOptions::truncated_rate`]), lines replaced by a line that
//! is not JSON ([`AstronomerSimOptions::malformed_lines_rate`]) and blank lines
//! ([`AstronomerSimOptions::blank_lines_rate`]). It never sleeps and keeps no counters.
//!
//! Records are heterogeneous (§2.5): v2 REST events, v1 GraphQL events, Airflow UI access,
//! container-registry access and Astro CLI calls, by users and API tokens. They include the
//! security actions detections are about: role changes (REST `users/{id}/roles` with
//! organization and workspace roles, GraphQL `workspaceUserRoleUpdate`, some of them anonymous
//! operations named only by the document's root field), users removed, API
//! tokens (the organization's service keys) created, rotated and deleted over REST and GraphQL,
//! SSO connections created and changed, and invitations. They have no id: the store keeps each
//! record as its exact NDJSON line, which is what a client hashes for its key.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use fastrand::Rng;
use serde::Serialize;
use serde_json::{Value, json};

use super::Astronomer;
use crate::sim::{
    CorruptBody, RateLimitSetting, RequestCtx, ServedRecords, Shared, Sim, SimContract, SimCredential, SimVendor,
    SimulateArgs, Tenant, nth_id, numbered_tenants, parse_rate_limit, parse_share, record_rng, roll, seeded_range,
    seeded_times, truncate_to,
};

/// The first organization's id and token (simulator credentials, printed by `auditrelay simulate`).
pub const DEFAULT_ORGANIZATION_ID: &str = "clq4n7x2a000008jz5b100001";
pub const DEFAULT_TOKEN: &str = "astro_sim_token_00000000000000000001";

/// How the gzipped NDJSON travels (§2.4: the server sets `Content-Encoding: gzip`; the other
/// two are what clients must also survive).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AstronomerEncoding {
    /// Body = gzip(NDJSON), `Content-Encoding: gzip`.
    #[default]
    ContentEncoding,
    /// Body = gzip(gzip(NDJSON)), `Content-Encoding: gzip`: a gzip file, transfer-encoded again.
    DoubleCompressed,
    /// Body = gzip(NDJSON), no `Content-Encoding`: a plain gzip file.
    PlainGzipFile,
}

/// Astronomer-specific knobs.
#[derive(Clone, Debug)]
pub struct AstronomerSimOptions {
    /// Organizations served, each with its own token, store and rate-limit window.
    pub organizations: usize,
    /// Records seeded at start, per organization.
    pub records: usize,
    /// Id and token of the first organization; the others count the trailing number up.
    pub organization_id: String,
    pub token: String,
    /// Seeded records lie in `[now - records_span, now - records_min_age]`.
    pub records_span: Duration,
    pub records_min_age: Duration,
    pub encoding: AstronomerEncoding,
    /// Share (0..=1) of 200 answers whose gzip stream is cut off mid-way.
    pub truncated_rate: f64,
    /// Share (0..=1) of lines replaced by a line that is not JSON (the record is missing from
    /// that answer).
    pub malformed_lines_rate: f64,
    /// Share (0..=1) of lines preceded by a blank line.
    pub blank_lines_rate: f64,
    /// Tokens are valid but lack the Organization Owner role: every request is answered 403.
    pub tokens_lack_owner_role: bool,
}

impl Default for AstronomerSimOptions {
    fn default() -> Self {
        AstronomerSimOptions {
            organizations: 1,
            records: 1000,
            organization_id: DEFAULT_ORGANIZATION_ID.to_owned(),
            token: DEFAULT_TOKEN.to_owned(),
            records_span: Duration::from_secs(24 * 3600),
            records_min_age: Duration::from_secs(600),
            encoding: AstronomerEncoding::ContentEncoding,
            truncated_rate: 0.0,
            malformed_lines_rate: 0.0,
            blank_lines_rate: 0.0,
            tokens_lack_owner_role: false,
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Astronomer")]
pub struct AstronomerArgs {
    /// Seeded Astronomer records per organization.
    #[arg(long, default_value_t = 1000)]
    pub astronomer_records: usize,
    #[arg(long, default_value_t = 1)]
    pub astronomer_organizations: usize,
    #[arg(long, default_value = DEFAULT_ORGANIZATION_ID)]
    pub astronomer_organization_id: String,
    #[arg(long, default_value = DEFAULT_TOKEN)]
    pub astronomer_token: String,
    /// How the gzipped NDJSON is sent.
    #[arg(long, value_enum, default_value_t = AstronomerEncoding::ContentEncoding)]
    pub astronomer_encoding: AstronomerEncoding,
    /// Share (0..=1) of 200 answers whose gzip stream is cut off.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub astronomer_truncated_rate: f64,
    /// Share (0..=1) of lines replaced by a line that is not JSON.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub astronomer_malformed_lines_rate: f64,
    /// Share (0..=1) of lines preceded by a blank line.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub astronomer_blank_lines_rate: f64,
    /// Tokens lack the Organization Owner role: every request is answered 403.
    #[arg(long)]
    pub astronomer_tokens_lack_owner_role: bool,
    /// Overrides `--rate-limit` for Astronomer.
    #[arg(long, value_parser = parse_rate_limit)]
    pub astronomer_rate_limit: Option<RateLimitSetting>,
}

impl SimContract for Astronomer {
    type Options = AstronomerSimOptions;
    type Store = Store;
    type Args = AstronomerArgs;

    /// 2/min (§2.6, documented). No budget headers (§2.6): it announces nothing.
    const RATE_LIMIT: (u32, Duration) = (2, Duration::from_secs(60));
    const GZIP_BODY: bool = true;
    /// The records have no id: the keys are the raw NDJSON lines.
    const KEYS_ARE_RECORDS: bool = true;

    fn audit_log_path(organization: &str) -> String {
        format!("/v1/organizations/{organization}/audit-logs")
    }

    fn routes() -> Router<Arc<Shared>> {
        Router::new().route("/v1/organizations/{organization_id}/audit-logs", get(audit_logs))
    }

    /// The organizations `opts` describes, with their tokens.
    fn tenants(opts: &AstronomerSimOptions) -> Vec<Tenant> {
        numbered_tenants(opts.organizations, &opts.organization_id, |i| SimCredential::Bearer(nth_id(&opts.token, i)))
    }

    fn no_credential() -> SimCredential {
        SimCredential::Bearer(String::new())
    }

    fn generate(seed: u64, opts: &AstronomerSimOptions, index: usize, organization: &str, now: DateTime<Utc>) -> Store {
        Store::generate(seed, opts, index, organization, now)
    }

    fn set_records(opts: &mut AstronomerSimOptions, records: usize) {
        opts.records = records;
    }

    fn record_keys(store: &Store) -> Vec<String> {
        store.lines()
    }

    /// The NDJSON lines (without their `\n`).
    fn records_json(store: &Store) -> Vec<String> {
        store.lines()
    }

    fn error(status: StatusCode, _code: &str, message: &str, ctx: &RequestCtx) -> Response {
        error_response(status, message, ctx)
    }

    /// Some truncated gzip streams.
    fn demo_faults(opts: &mut AstronomerSimOptions) {
        opts.truncated_rate = 0.2;
    }

    fn options(s: &AstronomerArgs, common: &SimulateArgs) -> AstronomerSimOptions {
        AstronomerSimOptions {
            organizations: s.astronomer_organizations,
            records: s.astronomer_records,
            organization_id: s.astronomer_organization_id.clone(),
            token: s.astronomer_token.clone(),
            records_span: common.records_span,
            records_min_age: common.records_min_age,
            encoding: s.astronomer_encoding,
            truncated_rate: s.astronomer_truncated_rate,
            malformed_lines_rate: s.astronomer_malformed_lines_rate,
            blank_lines_rate: s.astronomer_blank_lines_rate,
            tokens_lack_owner_role: s.astronomer_tokens_lack_owner_role,
        }
    }

    fn rate_limit(s: &AstronomerArgs) -> Option<RateLimitSetting> {
        s.astronomer_rate_limit
    }
}

impl Sim {
    /// Every record of an Astronomer organization as its NDJSON line (without the `\n`), oldest
    /// first, exactly as an intact answer carries it.
    pub fn astronomer_lines(&self, organization: &str) -> Vec<String> {
        self.record_keys(SimVendor::Astronomer, organization)
    }
}

/// Longest window one request may ask for: the retention (§2.3 [assume]).
const MAX_SPAN_DAYS: i64 = 90;

/// v2 REST paths of the "Audit logs reference" (`{org}` is the organization's short name).
pub(crate) const REST: &[(&str, &str)] = &[
    ("POST", "/v1alpha1/organizations/{org}/invites"),
    ("PATCH", "/v1alpha1/organizations/{org}"),
    ("POST", "/v1alpha1/organizations/{org}/domains"),
    ("POST", "/v1alpha1/organizations/{org}/domains/{id}/verify"),
    ("PATCH", "/v1alpha1/organizations/{org}/users/{user}/roles"),
    ("DELETE", "/v1alpha1/organizations/{org}/users/{user}"),
    ("POST", "/v1alpha1/organizations/{org}/workspaces"),
    ("DELETE", "/v1alpha1/organizations/{org}/workspaces/{ws}"),
    ("POST", "/v1alpha1/organizations/{org}/workspaces/{ws}/api-tokens"),
    ("POST", "/v1alpha1/organizations/{org}/workspaces/{ws}/api-tokens/{token}/rotate"),
    ("DELETE", "/v1alpha1/organizations/{org}/workspaces/{ws}/api-tokens/{token}"),
    ("POST", "/v1beta1/organizations/{org}/api-tokens"),
    ("POST", "/v1beta1/organizations/{org}/api-tokens/{token}/rotate"),
    ("DELETE", "/v1beta1/organizations/{org}/api-tokens/{token}"),
    // SSO connections: the reference lists "SSO" paths without their shape [assume this one].
    ("POST", "/v1alpha1/organizations/{org}/sso-connections"),
    ("PATCH", "/v1alpha1/organizations/{org}/sso-connections/{id}"),
    ("POST", "/v1beta1/organizations/{org}/deployments"),
    ("POST", "/v1beta1/organizations/{org}/deployments/{dep}"),
    ("POST", "/v1beta1/organizations/{org}/clusters"),
    ("POST", "/v1beta1/organizations/{org}/teams"),
    ("POST", "/scim/v2/{org}/Users"),
    ("PATCH", "/scim/v2/{org}/Groups/{id}"),
    ("PATCH", "/v1alpha1/organizations/{org}/deployments/{dep}/dags/{dag}"),
    ("POST", "/v1alpha1/organizations/{org}/deployments/{dep}/dags/{dag}/dagRuns"),
    ("POST", "/v1alpha1/organizations/{org}/deployments/{dep}/dags/{dag}/clearTaskInstances"),
    ("POST", "/v1alpha1/organizations/{org}/projects/{id}/pipelines/{id}/cells"),
];
pub(crate) const GRAPHQL: &[&str] = &[
    "createUserInvite",
    "workspaceCreate",
    "createDeployment",
    "updateDeployment",
    "updateDeploymentVariables",
    "ImageCreate",
    "workspaceUserRoleUpdate",
    "createApiToken",
    "rotateApiToken",
    "deleteApiToken",
];
/// Roles a user is given (vendors README §2.5: users/roles paths; the Astro IAM API's names).
const ORGANIZATION_ROLES: &[&str] = &["ORGANIZATION_MEMBER", "ORGANIZATION_BILLING_ADMIN", "ORGANIZATION_OWNER"];
const WORKSPACE_ROLES: &[&str] = &["WORKSPACE_MEMBER", "WORKSPACE_OPERATOR", "WORKSPACE_OWNER"];
const AIRFLOW_PAGES: &[&str] = &["home", "configuration", "dags/etl_orders/grid", "connection/list/", "variable/list/"];
const DAGS: &[&str] = &["etl_orders", "refresh_dashboards", "sync_crm"];
const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) \
    Chrome/125.0.0.0 Safari/537.36";
const CLI_VERSIONS: &[&str] = &["1.29.0", "1.30.1"];

/// One audit-log line (§2.5). Every category has the common fields; the others are present only
/// where the category has them, in the order of the sample lines.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    subject_id: String,
    subject_type: &'static str,
    organization_id: String,
    timestamp: String,
    source_ip: String,
    user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    astro_client: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    astro_client_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    graphql_client_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation_name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_url: Option<String>,
    /// An object for REST events, the raw GraphQL text for GraphQL ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    /// Documented only as "response status" [assume key `responseStatus`].
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<u16>,
}

/// `c` + 24 lower-case alphanumerics, like the organization ids of §2.1.
fn cuid(rng: &mut Rng) -> String {
    let body: String = (0..24).map(|_| rng.alphanumeric().to_ascii_lowercase()).collect();
    format!("c{body}")
}

/// One organization's records as NDJSON lines (without `\n`), oldest first, plus what is needed
/// to generate arrivals.
pub struct Store {
    lines: Vec<(DateTime<Utc>, String)>,
    seed: u64,
    organization_id: String,
    /// The organization's short name, as in REST paths.
    short_name: String,
    users: Vec<String>,
    service_keys: Vec<String>,
    workspaces: Vec<String>,
    /// `(id, short name)` of each deployment.
    deployments: Vec<(String, String)>,
    /// Index of the next record to generate (seeded records are `0..records`).
    next: u64,
}

impl Store {
    pub(crate) fn generate(
        seed: u64,
        opts: &AstronomerSimOptions,
        index: usize,
        organization_id: &str,
        now: DateTime<Utc>,
    ) -> Store {
        let mut names = Rng::with_seed(seed ^ 0xA57_0005);
        let mut store = Store {
            lines: Vec::with_capacity(opts.records),
            seed,
            organization_id: organization_id.to_owned(),
            short_name: if index == 0 { "examplecorp".to_owned() } else { format!("examplecorp{}", index + 1) },
            users: (0..5).map(|_| cuid(&mut names)).collect(),
            service_keys: (0..3).map(|_| cuid(&mut names)).collect(),
            workspaces: (0..3).map(|_| cuid(&mut names)).collect(),
            deployments: (0..3)
                .map(|_| (cuid(&mut names), (0..8).map(|_| names.alphanumeric().to_ascii_lowercase()).collect()))
                .collect(),
            next: opts.records as u64,
        };
        let range = seeded_range(now, opts.records_span, opts.records_min_age);
        for (i, at) in seeded_times(seed, opts.records, range, 1000).into_iter().enumerate() {
            let line = store.line(i as u64, at);
            store.lines.push((at, line));
        }
        store.lines.sort();
        store
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().map(|(_, line)| line.clone()).collect()
    }

    /// Generates the next record (an arrival) at `at` and inserts it in order.
    fn add(&mut self, at: DateTime<Utc>) {
        let at = truncate_to(at, 1000);
        let line = self.line(self.next, at);
        self.next += 1;
        let pos = self.lines.partition_point(|(t, l)| (t, l) < (&at, &line));
        self.lines.insert(pos, (at, line));
    }

    /// Record `i` at `at`, as its NDJSON line.
    fn line(&self, i: u64, at: DateTime<Utc>) -> String {
        let mut rng = record_rng(self.seed, i, 2);
        let pick = |rng: &mut Rng, from: &[String]| from[rng.usize(..from.len())].clone();
        let uuid = |rng: &mut Rng| uuid::Uuid::from_u128(rng.u128(..)).hyphenated().to_string();
        let category = rng.u32(..100);
        let by_token = match category {
            0..45 | 65..80 => rng.u32(..10) == 0,
            45..65 | 80..90 => rng.u32(..10) < 6,
            _ => rng.bool(),
        };
        let (subject_id, subject_type) = if by_token {
            (pick(&mut rng, &self.service_keys), "SERVICEKEY")
        } else {
            (pick(&mut rng, &self.users), "USER")
        };
        let (workspace, deployment) =
            (pick(&mut rng, &self.workspaces), self.deployments[rng.usize(..self.deployments.len())].clone());
        let mut event = Event {
            subject_id,
            subject_type,
            organization_id: self.organization_id.clone(),
            timestamp: at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            source_ip: format!("{}.{}", if by_token { "203.0.113" } else { "198.51.100" }, rng.u8(1..=254)),
            user_agent: BROWSER.to_owned(),
            astro_client: None,
            astro_client_version: None,
            correlation_id: None,
            graphql_client_name: None,
            operation_name: None,
            deployment_id: None,
            method: None,
            path: None,
            target_url: None,
            request_body: None,
            request_input: None,
            request_id: None,
            response_status: None,
        };
        match category {
            // v1 GraphQL API.
            45..65 => {
                let operation = GRAPHQL[rng.usize(..GRAPHQL.len())];
                let cli = by_token || rng.bool();
                if cli {
                    event.user_agent = format!("astro-cli/{}", CLI_VERSIONS[rng.usize(..CLI_VERSIONS.len())]);
                }
                let correlation_id = uuid(&mut rng);
                // A quarter of the role changes are anonymous operations (a script's, without
                // `operationName`): only the document's root field names them. Told from the
                // correlation id, so no draw is added.
                let anonymous =
                    operation == "workspaceUserRoleUpdate" && correlation_id.ends_with(['0', '1', '2', '3']);
                event.correlation_id = Some(correlation_id);
                event.graphql_client_name = Some(if cli { "cli" } else { "cloud-ui" });
                event.operation_name = (!anonymous).then_some(operation);
                event.request_body = Some(json!(if anonymous {
                    format!("mutation {{ {operation}(input: $input) {{ id }} }}")
                } else {
                    format!("mutation {operation}($input: {operation}Input!) {{ {operation}(input: $input) {{ id }} }}")
                }));
                // What each operation's input names (role changes their user and role, token
                // operations their token, invites the invitee).
                event.request_input = Some(match operation {
                    "workspaceUserRoleUpdate" => json!({
                        "workspaceId": workspace, "userId": pick(&mut rng, &self.users),
                        "role": WORKSPACE_ROLES[rng.usize(..WORKSPACE_ROLES.len())],
                    }),
                    "createApiToken" => {
                        json!({ "workspaceId": workspace, "name": "ci-deploy", "role": "WORKSPACE_OPERATOR" })
                    }
                    "rotateApiToken" | "deleteApiToken" => json!({ "apiTokenId": pick(&mut rng, &self.service_keys) }),
                    "createUserInvite" => json!({
                        "workspaceId": workspace, "email": format!("new.engineer{}@example.com", rng.u8(..100)),
                        "role": WORKSPACE_ROLES[rng.usize(..WORKSPACE_ROLES.len())],
                    }),
                    _ => json!({ "workspaceId": workspace, "deploymentId": deployment.0 }),
                });
            }
            // Airflow UI access.
            65..80 => {
                event.method = Some(if rng.u32(..5) == 0 { "POST" } else { "GET" });
                event.path = Some(format!("/{}/{}", deployment.1, AIRFLOW_PAGES[rng.usize(..AIRFLOW_PAGES.len())]));
                event.target_url = Some(format!("https://{}.astronomer.run", deployment.0));
            }
            // Container registry access.
            80..90 => {
                event.user_agent = "docker/26.1.3 go/go1.21.10 os/linux arch/amd64".to_owned();
                event.deployment_id = Some(deployment.0.clone());
                let push = rng.bool();
                event.method = Some(if push { "PUT" } else { "GET" });
                let stamp = at.format("%Y-%m-%dT%H-%M");
                event.path = Some(format!("/v2/{}/airflow/manifests/deploy-{stamp}", deployment.1));
            }
            // v2 REST API, from the browser (0..45) or the Astro CLI (90..).
            _ => {
                if category >= 90 {
                    let version = CLI_VERSIONS[rng.usize(..CLI_VERSIONS.len())];
                    event.user_agent = format!("astro-cli/{version}");
                    event.astro_client = Some("cli");
                    event.astro_client_version = Some(version);
                }
                let (method, template) = REST[rng.usize(..REST.len())];
                let dag = DAGS[rng.usize(..DAGS.len())];
                let path = template
                    .replace("{org}", &self.short_name)
                    .replace("{ws}", &workspace)
                    .replace("{dep}", &deployment.0)
                    .replace("{dag}", dag)
                    .replace("{user}", &pick(&mut rng, &self.users))
                    .replace("{token}", &pick(&mut rng, &self.service_keys))
                    .replace("{id}", &cuid(&mut rng));
                let body = if path.ends_with("/invites") {
                    json!({ "inviteEmail": format!("new.engineer{}@example.com", rng.u8(..100)), "role": "ORGANIZATION_MEMBER" })
                } else if path.ends_with("/api-tokens") {
                    json!({ "name": "siem-reader", "role": "WORKSPACE_MEMBER", "tokenExpiryPeriodInDays": 90 })
                } else if path.ends_with("/roles") {
                    let role = ORGANIZATION_ROLES[rng.usize(..ORGANIZATION_ROLES.len())];
                    if rng.bool() {
                        json!({ "organizationRole": role })
                    } else {
                        let workspace_role = WORKSPACE_ROLES[rng.usize(..WORKSPACE_ROLES.len())];
                        json!({ "organizationRole": role, "workspaceRoles": [{ "workspaceId": workspace, "role": workspace_role }] })
                    }
                } else if path.contains("/sso-connections") {
                    if method == "POST" {
                        json!({ "name": "okta-saml", "type": "SAML", "idpMetadataUrl": "https://example.okta.com/app/sso/saml/metadata" })
                    } else {
                        json!({ "enabled": rng.bool() })
                    }
                } else if path.ends_with("/rotate") {
                    json!({})
                } else if path.contains("/dags/") && method == "PATCH" {
                    json!({ "isPaused": rng.bool() })
                } else if method == "POST" {
                    json!({ "name": format!("{}-{}", dag.replace('_', "-"), rng.u16(..1000)) })
                } else {
                    json!({})
                };
                let statuses = [200, 200, 200, 200, 200, 201, 204, 400, 403];
                event.method = Some(method);
                event.path = Some(path);
                event.request_body = Some(body);
                event.request_id = Some(uuid(&mut rng));
                event.response_status = Some(statuses[rng.usize(..statuses.len())]);
            }
        }
        serde_json::to_string(&event).unwrap_or_default()
    }
}

/// The window a query asks for, `[start, end)`, or a 400 message and its field errors.
fn window(raw: &str, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>), (String, Value)> {
    let (mut start, mut end) = (None, None);
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        let slot = match &*k {
            "startDate" => &mut start,
            "endDate" => &mut end,
            _ => continue,
        };
        match DateTime::parse_from_rfc3339(&v) {
            Ok(t) => *slot = Some(t.to_utc()),
            Err(_) => {
                let errors = json!([{ "field": k, "message": format!("must be an RFC 3339 date-time, got {v:?}") }]);
                return Err(("Invalid request parameters".to_owned(), errors));
            }
        }
    }
    let (start, end) = (start.unwrap_or(now - chrono::Duration::days(1)), end.unwrap_or(now));
    if start > end {
        let errors = json!([{ "field": "startDate", "message": "must not be after endDate" }]);
        return Err(("Invalid request parameters".to_owned(), errors));
    }
    if end - start > chrono::Duration::days(MAX_SPAN_DAYS) {
        let errors =
            json!([{ "field": "endDate", "message": format!("must be at most {MAX_SPAN_DAYS} days after startDate") }]);
        return Err(("Invalid request parameters".to_owned(), errors));
    }
    Ok((start, end))
}

async fn audit_logs(
    State(shared): State<Arc<Shared>>,
    Path(organization_id): Path<String>,
    Extension(ctx): Extension<RequestCtx>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let opts = &shared.opts.astronomer;
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(org) =
        token.and_then(|t| shared.tenant_of(SimVendor::Astronomer, &SimCredential::Bearer(t.trim().to_owned())))
    else {
        return error_response(StatusCode::UNAUTHORIZED, "Unauthorized: invalid or missing API token", &ctx);
    };
    if opts.tokens_lack_owner_role {
        return error_response(
            StatusCode::FORBIDDEN,
            "Forbidden: the API token lacks the Organization Owner role",
            &ctx,
        );
    }
    match shared.tenant_index(SimVendor::Astronomer, &organization_id) {
        Some(i) if i == org => {}
        Some(_) => return error_response(StatusCode::FORBIDDEN, "Forbidden: no access to this organization", &ctx),
        None => return error_response(StatusCode::NOT_FOUND, "Organization not found", &ctx),
    }
    let (start, end) = match window(raw.as_deref().unwrap_or_default(), ctx.now) {
        Ok(w) => w,
        Err((message, field_errors)) => {
            let body = json!({ "message": message, "requestId": ctx.request_id, "statusCode": 400, "fieldErrors": field_errors });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let lines: Vec<String> = {
        let mut st = shared.state();
        let Some(store) = st.stores.astronomer.get_mut(org) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &ctx);
        };
        let lines = store.lines.iter().filter(|(at, _)| start <= *at && *at < end).map(|(_, l)| l.clone()).collect();
        // New records arrive after each answer (README "Simulator conventions"), at the current time
        // (or up to `arrival_lateness` before it).
        let now = shared.clock.now_utc();
        for _ in 0..shared.arrivals_per_answer() {
            store.add(shared.arrival_at(now));
        }
        lines
    };

    let (ndjson, intact) = ndjson(&lines, shared.opts.seed, ctx.number, opts);
    let compressed = gzip(&ndjson).and_then(|gz| match opts.encoding {
        AstronomerEncoding::DoubleCompressed => gzip(&gz),
        AstronomerEncoding::ContentEncoding | AstronomerEncoding::PlainGzipFile => Ok(gz),
    });
    let Ok(mut body) = compressed else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", &ctx);
    };
    let truncated = roll(shared.opts.seed, ctx.number, 0x7C07) < opts.truncated_rate;
    if truncated {
        // The stream ends mid-way (a dropped upstream): valid HTTP, a gzip stream without its end.
        body.truncate(body.len() / 2);
    }
    let mut resp = (StatusCode::OK, [(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    if opts.encoding != AstronomerEncoding::PlainGzipFile {
        resp.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp.extensions_mut().insert(ServedRecords(intact));
    if truncated {
        resp.extensions_mut().insert(CorruptBody);
    }
    resp
}

/// The NDJSON text of `lines` for request `number`, with the line faults `opts` asks for, and how
/// many record lines came through intact.
fn ndjson(lines: &[String], seed: u64, number: u64, opts: &AstronomerSimOptions) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    let mut intact = 0;
    for (j, line) in lines.iter().enumerate() {
        let salt = 0xA570_0000_0000 ^ (j as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        if roll(seed, number, salt ^ 0xB1A) < opts.blank_lines_rate {
            out.push(b'\n');
        }
        if roll(seed, number, salt) < opts.malformed_lines_rate {
            // A line cut inside its object is never valid JSON.
            let mut cut = line.len() / 2;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            out.extend_from_slice(&line.as_bytes()[..cut]);
        } else {
            out.extend_from_slice(line.as_bytes());
            intact += 1;
        }
        out.push(b'\n');
    }
    (out, intact)
}

/// A gzip member holding `data` (for empty `data`, the gzip of zero bytes).
fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

/// The §2.7 error body: `{"message","requestId","statusCode"}`.
pub(crate) fn error_response(status: StatusCode, message: &str, ctx: &RequestCtx) -> Response {
    let body = json!({ "message": message, "requestId": ctx.request_id, "statusCode": status.as_u16() });
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::io::Read as _;

    use super::*;
    use crate::clock::Clock;
    use crate::sim::tests::{Answer, authed, call, fetch, header, opts, start, t0};
    use crate::sim::{Sim, SimOptions};

    const V: SimVendor = SimVendor::Astronomer;

    fn options(records: usize) -> SimOptions {
        let mut o = opts(records);
        o.astronomer.records = records;
        o
    }

    async fn get(sim: &Sim, query: &str) -> Answer {
        fetch(sim, V, DEFAULT_ORGANIZATION_ID, query).await
    }

    fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    /// The decompressed body as text, as a client must read it: undo `Content-Encoding`, then
    /// gunzip again if what is left is still gzip (§2.4).
    fn decode(a: &Answer) -> std::io::Result<String> {
        let mut body = a.body.clone();
        if header(a, "content-encoding") == "gzip" {
            body = gunzip(&body)?;
        }
        if body.starts_with(&[0x1f, 0x8b]) {
            body = gunzip(&body)?;
        }
        String::from_utf8(body).map_err(std::io::Error::other)
    }

    fn z(t: DateTime<Utc>) -> String {
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    #[tokio::test(start_paused = true)]
    async fn test_gzip_ndjson_decodes_to_exactly_the_records() {
        let sim = start(options(400), Clock::starting_at(t0())).await;
        let a = get(&sim, "").await;
        assert_eq!(a.status, 200);
        assert_eq!((header(&a, "content-encoding"), header(&a, "content-type")), ("gzip", "application/x-ndjson"));
        let text = String::from_utf8(gunzip(&a.body).unwrap()).unwrap();
        assert!(text.ends_with('\n'));
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        assert_eq!(lines, sim.astronomer_lines(DEFAULT_ORGANIZATION_ID));
        assert_eq!(lines, sim.record_keys(V, DEFAULT_ORGANIZATION_ID));
        assert_eq!(lines.iter().collect::<BTreeSet<_>>().len(), 400, "no two records alike");
        let records: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
        let stamps: Vec<&str> = records.iter().map(|r| r["timestamp"].as_str().unwrap()).collect();
        assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "ascending timestamp");
        assert!(stamps.iter().all(|s| s.len() == 24 && s.ends_with('Z') && DateTime::parse_from_rfc3339(s).is_ok()));
        for r in &records {
            for common in ["subjectId", "subjectType", "organizationId", "timestamp", "sourceIp", "userAgent"] {
                assert!(r[common].is_string(), "{common} in {r}");
            }
            assert_eq!(r["organizationId"], DEFAULT_ORGANIZATION_ID);
        }
        let has = |f: &str| records.iter().filter(|r| r.get(f).is_some()).count();
        for field in ["operationName", "correlationId", "requestInput", "targetUrl", "deploymentId", "astroClient"] {
            assert!(has(field) > 0, "{field}");
        }
        let rest = records.iter().filter(|r| r.get("requestId").is_some()).collect::<Vec<_>>();
        assert!(!rest.is_empty() && rest.iter().all(|r| r["responseStatus"].is_u64() && r["requestBody"].is_object()));
        assert!(records.iter().any(|r| r["requestBody"].is_string()), "GraphQL bodies are raw text");
        let kinds: BTreeSet<&str> = records.iter().map(|r| r["subjectType"].as_str().unwrap()).collect();
        assert_eq!(kinds, BTreeSet::from(["SERVICEKEY", "USER"]));
        assert_eq!(sim.vendor_stats(V).served_records, 400);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_window_rules() {
        let mut o = options(300);
        o.astronomer.records_span = Duration::from_secs(72 * 3600);
        let sim = start(o, Clock::starting_at(t0())).await;
        let all = sim.astronomer_lines(DEFAULT_ORGANIZATION_ID);
        let at = |line: &str| {
            DateTime::parse_from_rfc3339(serde_json::from_str::<Value>(line).unwrap()["timestamp"].as_str().unwrap())
                .unwrap()
                .to_utc()
        };
        let full = format!("startDate={}&endDate={}", z(t0() - chrono::Duration::days(3)), z(t0()));
        assert_eq!(decode(&get(&sim, &full).await).unwrap().lines().count(), 300);
        // Default: the last day.
        let day = decode(&get(&sim, "").await).unwrap();
        let expected = all.iter().filter(|l| at(l) >= t0() - chrono::Duration::days(1)).count();
        assert_eq!(day.lines().count(), expected);
        assert!(expected < 300);
        // [start, end).
        let q = format!("startDate={}&endDate={}", z(at(&all[50])), z(at(&all[150])));
        let lines: Vec<String> = decode(&get(&sim, &q).await).unwrap().lines().map(str::to_owned).collect();
        let expected: Vec<String> =
            all.iter().filter(|l| at(&all[50]) <= at(l) && at(l) < at(&all[150])).cloned().collect();
        assert_eq!(lines, expected);
        // An empty window is the gzip of zero bytes.
        let empty = get(&sim, &format!("startDate={0}&endDate={0}", z(t0()))).await;
        assert_eq!((empty.status, gunzip(&empty.body).unwrap().len()), (200, 0));
        assert!(!empty.body.is_empty());
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_bad_windows_are_400_with_field_errors() {
        let sim = start(options(5), Clock::starting_at(t0())).await;
        let reversed = format!("startDate={}&endDate={}", z(t0()), z(t0() - chrono::Duration::hours(1)));
        let too_long = format!("startDate={}&endDate={}", z(t0() - chrono::Duration::days(91)), z(t0()));
        let ninety = format!("startDate={}&endDate={}", z(t0() - chrono::Duration::days(90)), z(t0()));
        for q in [reversed.as_str(), too_long.as_str(), "startDate=2026-03-17", "endDate=yesterday"] {
            let a = get(&sim, q).await;
            assert_eq!((a.status, &a.json["statusCode"]), (400, &json!(400)), "{q}");
            assert!(a.json["message"].is_string() && a.json["requestId"] == header(&a, "x-request-id"), "{}", a.json);
            let errors = a.json["fieldErrors"].as_array().unwrap();
            assert!(!errors.is_empty() && errors[0]["field"].is_string(), "{}", a.json);
        }
        assert_eq!(get(&sim, &ninety).await.status, 200);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_auth_errors() {
        let mut o = options(5);
        o.astronomer.organizations = 2;
        let sim = start(o, Clock::starting_at(t0())).await;
        let path = format!("v1/organizations/{DEFAULT_ORGANIZATION_ID}/audit-logs");
        for a in [
            call(&sim, &path, |r| r).await,
            call(&sim, &path, |r| r.bearer_auth("wrong")).await,
            call(&sim, &path, |r| r.header("x-api-key", DEFAULT_TOKEN)).await,
        ] {
            assert_eq!((a.status, &a.json["statusCode"]), (401, &json!(401)));
            assert!(a.json.get("fieldErrors").is_none());
        }
        let second = sim.organizations(V)[1].clone();
        let first_token = || sim.credential(V, DEFAULT_ORGANIZATION_ID);
        let other = call(&sim, &format!("v1/organizations/{second}/audit-logs"), |r| authed(V, first_token(), r)).await;
        assert_eq!(other.status, 403);
        let unknown =
            call(&sim, "v1/organizations/clunknown0000000000000000/audit-logs", |r| authed(V, first_token(), r)).await;
        assert_eq!(unknown.status, 404);
        sim.shutdown().await;

        let mut o = options(5);
        o.astronomer.tokens_lack_owner_role = true;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = get(&sim, "").await;
        assert_eq!((a.status, &a.json["statusCode"]), (403, &json!(403)));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_double_compressed_and_plain_gzip_file() {
        let mut o = options(50);
        o.astronomer.encoding = AstronomerEncoding::DoubleCompressed;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = get(&sim, "").await;
        assert_eq!(header(&a, "content-encoding"), "gzip");
        let once = gunzip(&a.body).unwrap();
        assert!(once.starts_with(&[0x1f, 0x8b]), "a gzip file inside the transfer encoding");
        let lines: Vec<String> =
            String::from_utf8(gunzip(&once).unwrap()).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(lines, sim.astronomer_lines(DEFAULT_ORGANIZATION_ID));
        sim.shutdown().await;

        let mut o = options(50);
        o.astronomer.encoding = AstronomerEncoding::PlainGzipFile;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = get(&sim, "").await;
        assert!(a.headers.get("content-encoding").is_none());
        assert!(a.body.starts_with(&[0x1f, 0x8b]));
        let lines: Vec<String> = decode(&a).unwrap().lines().map(str::to_owned).collect();
        assert_eq!(lines, sim.astronomer_lines(DEFAULT_ORGANIZATION_ID));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_truncated_stream_fails_to_decode() {
        for (encoding, records) in [
            (AstronomerEncoding::ContentEncoding, 200),
            (AstronomerEncoding::DoubleCompressed, 200),
            (AstronomerEncoding::PlainGzipFile, 200),
            (AstronomerEncoding::ContentEncoding, 0),
        ] {
            let mut o = options(records);
            o.astronomer.encoding = encoding;
            o.astronomer.truncated_rate = 1.0;
            let sim = start(o, Clock::starting_at(t0())).await;
            let a = get(&sim, "").await;
            assert_eq!(a.status, 200);
            assert!(decode(&a).is_err(), "{encoding:?}, {records} records: a cut stream must not decode");
            let s = sim.vendor_stats(V);
            assert_eq!((s.ok, s.malformed, s.served_records), (0, 1, 0));
            sim.shutdown().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn test_malformed_and_blank_lines() {
        let mut o = options(300);
        o.astronomer.malformed_lines_rate = 0.1;
        o.astronomer.blank_lines_rate = 0.05;
        let sim = start(o, Clock::starting_at(t0())).await;
        let a = get(&sim, "").await;
        let text = decode(&a).unwrap();
        let records: BTreeSet<String> = sim.astronomer_lines(DEFAULT_ORGANIZATION_ID).into_iter().collect();
        let (mut blank, mut garbage, mut good) = (0, 0, 0);
        for line in text.lines() {
            if line.is_empty() {
                blank += 1;
            } else if serde_json::from_str::<Value>(line).is_ok() {
                assert!(records.contains(line));
                good += 1;
            } else {
                garbage += 1;
            }
        }
        assert!(blank > 0 && garbage > 0, "{blank} blank, {garbage} garbage");
        assert_eq!(good + garbage, 300);
        assert_eq!(sim.vendor_stats(V).served_records, good as u64);
        // Each answer draws its own faults: a second one loses other lines.
        let again = decode(&get(&sim, "").await).unwrap();
        assert_ne!(again, text);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_whole_body_malformations() {
        let mut o = options(20);
        o.faults.malformed_rate = 1.0;
        let sim = start(o, Clock::starting_at(t0())).await;
        let html = get(&sim, "").await;
        assert!(html.headers.get("content-encoding").is_none() && html.body.starts_with(b"<html>"));
        assert!(decode(&get(&sim, "").await).is_err(), "junk after a gzip header");
        assert!(decode(&get(&sim, "").await).is_err(), "half a gzip stream");
        assert_eq!(sim.vendor_stats(V).malformed, 3);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_arrivals_after_each_answer() {
        let mut o = options(10);
        o.faults.arrivals_per_page = 2;
        let sim = start(o, Clock::starting_at(t0())).await;
        assert_eq!(decode(&get(&sim, "").await).unwrap().lines().count(), 10);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(decode(&get(&sim, "").await).unwrap().lines().count(), 12);
        let lines = sim.astronomer_lines(DEFAULT_ORGANIZATION_ID);
        assert_eq!(lines.len(), 14);
        assert!(lines[13].contains(&format!("\"timestamp\":\"{}\"", z(t0() + chrono::Duration::milliseconds(1500)))));
        sim.shutdown().await;
    }
}
