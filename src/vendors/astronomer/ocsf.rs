//! Astronomer → OCSF 1.8.0 (`ocsf/MAPPING.md` §4.1).
//!
//! Source: Astro API `GET /v1/organizations/{organizationId}/audit-logs`, one gzipped NDJSON
//! body per time window, no paging, 2 requests a minute; the source handles all of that and
//! hands this module one decoded line. Every line becomes **6003 API Activity**: Astro logs are
//! request-level (an actor, a source IP, an operation) and name no target the IAM classes could
//! use. The record's category is told from its fields (vendors README §2.5), see [`Category`].
//!
//! Leaves to others: the dedupe key (a content hash: Astro records have no id) and the event
//! time (the source), the configured severity override (the caller, keyed by `event_code`).

use serde_json::{Map, Value};

use crate::ocsf::event::{
    Actor, Api, ApiActivity, ApiActivityId, ApiRequest, Class, EntityManagement, EntityManagementId, EventParts,
    HttpRequest, HttpResponse, ManagedEntity, ResourceDetails, Service, Severity, Status, Url, User,
};
use crate::ocsf::{Context, Unmappable, http_method, src_endpoint, status_from_http, status_from_word, text, unmapped};

/// Fields that get an OCSF home below; every other non-null field goes to `unmapped`.
/// `subjectType` is mapped *and* kept there (MAPPING §4.1 field map).
const MAPPED: &[&str] = &[
    "subjectId",
    "sourceIp",
    "userAgent",
    "correlationId",
    "operationName",
    "organizationId",
    "timestamp",
    "method",
    "path",
    "requestId",
    "responseStatus",
    "targetUrl",
    "deploymentId",
];

/// The kinds of Astro audit record (vendors README §2.5). Astro does not label them, so they
/// are told apart by the fields each kind adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    /// v1 GraphQL API event: `operationName`, `correlationId`, `graphqlClientName`.
    GraphQl,
    /// v2 REST API event (also from the Astro CLI, then with `astroClient`): `method`, `path`.
    Rest,
    /// Airflow UI access: `method`, `path`, `targetUrl` (the deployment's Airflow host).
    AirflowUi,
    /// Astro Cloud IDE access: REST-shaped, its paths name `projects` (pipelines, cells).
    CloudIde,
    /// Astronomer container registry access: `deploymentId` and a Docker registry v2 path.
    Registry,
    /// None of the above: still an event, with activity 0 Unknown.
    Unknown,
}

impl Category {
    fn of(record: &Map<String, Value>) -> Category {
        let has = |key: &str| record.get(key).is_some_and(|v| !v.is_null());
        let path = text(record, "path").unwrap_or_default();
        let segments = || path.split('/').map(str::to_ascii_lowercase);
        if has("operationName") {
            Category::GraphQl
        } else if has("targetUrl") {
            Category::AirflowUi
        } else if !has("requestId") && (has("deploymentId") || path.contains("/manifests/") || path.contains("/blobs/"))
        {
            Category::Registry
        } else if segments().any(|s| s == "projects" || s == "cloud-ide") {
            Category::CloudIde
        } else if has("method") || has("path") {
            Category::Rest
        } else {
            Category::Unknown
        }
    }

    /// `api.operation` for the categories that have no operation of their own (MAPPING §4.1:
    /// "`api.operation` = the category name").
    fn operation(self) -> Option<&'static str> {
        match self {
            Category::AirflowUi => Some("airflowUiAccess"),
            Category::CloudIde => Some("cloudIdeAccess"),
            Category::Registry => Some("containerRegistryAccess"),
            Category::GraphQl | Category::Rest | Category::Unknown => None,
        }
    }

    /// `api.service.name`: the Astro service that was used.
    fn service(self) -> &'static str {
        match self {
            Category::AirflowUi => "Airflow UI",
            Category::CloudIde => "Astro Cloud IDE",
            Category::Registry => "Astronomer container registry",
            Category::GraphQl | Category::Rest | Category::Unknown => "Astro API",
        }
    }
}

/// Maps one Astro audit record. Fails only when nothing identifies the actor, the source or
/// the organization.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let category = Category::of(record);
    let method = text(record, "method").map(|m| m.trim().to_ascii_uppercase());
    let path = text(record, "path");
    // event_code = api.operation: operationName, else the category name, else "METHOD path".
    // Vendors README §2.5 puts "METHOD path" before the category; but an Airflow UI path names
    // a page of one deployment, and the category name is the stabler severity-override key.
    let operation = text(record, "operationName")
        .or_else(|| category.operation().map(str::to_owned))
        .or_else(|| match (&method, &path) {
            (Some(m), Some(p)) => Some(format!("{m} {p}")),
            (m, p) => m.clone().or_else(|| p.clone()),
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let activity = activity(record, category, method.as_deref());

    let mut metadata = ctx.metadata("astronomer", "Astro", "Astronomer", "Astro API audit-logs");
    metadata.event_code = Some(operation.clone());
    metadata.original_time = text(record, "timestamp");
    metadata.correlation_uid = text(record, "correlationId");

    let response_status = text(record, "responseStatus");
    let response_code = response_status.as_deref().and_then(|s| s.trim().parse::<i64>().ok());
    // MAPPING §4.1: status_id is 0 unless the record carries a status (an HTTP code, or a word).
    let status = match (response_code, &response_status) {
        (Some(code), _) => status_from_http(code),
        (None, Some(word)) => status_from_word(word),
        (None, None) => Status::Unknown,
    };
    let organization = text(record, "organizationId").or_else(|| Some(ctx.organization.to_owned()));
    let organization = organization.filter(|o| !o.is_empty());
    let http_request = http_request(record, category, method, path);
    let keys: Vec<&str> = record.keys().map(String::as_str).filter(|k| !MAPPED.contains(k)).collect();
    let class = match (actor(record), src_endpoint(record, "sourceIp")) {
        (Some(actor), Some(src_endpoint)) => Class::ApiActivity(ApiActivity {
            activity,
            actor,
            api: Api {
                operation,
                service: Some(Service { name: category.service().to_owned() }),
                // correlationId on GraphQL events (MAPPING §4.1); REST ones carry a requestId.
                request: text(record, "correlationId")
                    .or_else(|| text(record, "requestId"))
                    .map(|uid| ApiRequest { uid }),
                response: None,
            },
            src_endpoint,
            http_request: Some(http_request).filter(|h| !h.is_empty()),
            http_response: response_code.map(|code| HttpResponse { code }),
            resources: Some(resources(record, category, organization.as_deref())).filter(|r| !r.is_empty()),
        }),
        // MAPPING §3 rule 7: without an actor or a source, 6003 cannot be filled; say what
        // happened to the organization (or the deployment) instead.
        (actor, src_endpoint) => Class::EntityManagement(EntityManagement {
            activity: EntityManagementId::from(activity),
            entity: fallback_entity(record, organization.as_deref())
                .ok_or_else(|| Unmappable("Astro record names no subject, source or organization".into()))?,
            entity_result: None,
            actor,
            src_endpoint,
            http_request: Some(http_request).filter(|h| !h.is_empty()),
            comment: None,
        }),
    };

    Ok(EventParts {
        class,
        severity: Severity::Informational,
        time: ctx.time_ms(),
        metadata,
        status: Some(status),
        status_code: response_status,
        status_detail: None,
        message: None,
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(unmapped(record, &keys)),
    })
}

/// The activity: from the `operationName` verb table, else per category (MAPPING §4.1).
fn activity(record: &Map<String, Value>, category: Category, method: Option<&str>) -> ApiActivityId {
    match category {
        Category::GraphQl => text(record, "operationName").map_or(ApiActivityId::Unknown, |op| verb_activity(&op)),
        Category::AirflowUi | Category::CloudIde => ApiActivityId::Read,
        // A pull reads an image, a push writes one; anything else keeps its method.
        Category::Registry => match method {
            Some("GET" | "HEAD") => ApiActivityId::Read,
            Some("PUT" | "POST" | "PATCH") => ApiActivityId::Update,
            Some(other) => ApiActivityId::Other(other.to_owned()),
            None => ApiActivityId::Unknown,
        },
        // MAPPING §3 rule 6: a REST event's activity comes from its HTTP method.
        Category::Rest => match method {
            Some("POST") => ApiActivityId::Create,
            Some("GET" | "HEAD") => ApiActivityId::Read,
            Some("PUT" | "PATCH") => ApiActivityId::Update,
            Some("DELETE") => ApiActivityId::Delete,
            Some(other) => ApiActivityId::Other(other.to_owned()),
            None => ApiActivityId::Unknown,
        },
        Category::Unknown => ApiActivityId::Unknown,
    }
}

/// MAPPING §4.1's `operationName` table, row by row: a leading verb, or (for Create, Update,
/// Delete) a trailing noun form such as `workspaceCreate`; anything else is 99 Other.
fn verb_activity(operation: &str) -> ApiActivityId {
    let rows: [(&[&str], Option<&str>, ApiActivityId); 4] = [
        (&["create", "add", "invite", "generate", "upload", "deploy"], Some("create"), ApiActivityId::Create),
        (&["get", "list", "read", "export", "download", "view"], None, ApiActivityId::Read),
        (
            &["update", "set", "edit", "rename", "change", "patch", "enable", "disable", "transfer"],
            Some("update"),
            ApiActivityId::Update,
        ),
        (&["delete", "remove", "revoke"], Some("delete"), ApiActivityId::Delete),
    ];
    for (verbs, noun, activity) in rows {
        if verbs.iter().any(|v| starts_with_word(operation, v)) || noun.is_some_and(|n| ends_with_word(operation, n)) {
            return activity;
        }
    }
    ApiActivityId::Other(operation.to_owned())
}

/// Whether `name` begins with the word `word`, case-insensitively. Unlike a bare prefix test,
/// `deploymentUpdate` does not begin with "deploy" nor `settingsUpdate` with "set".
fn starts_with_word(name: &str, word: &str) -> bool {
    name.get(..word.len()).is_some_and(|head| head.eq_ignore_ascii_case(word)) && word_ends_at(name, word.len())
}

/// Whether `name` ends with the word `word`, case-insensitively (`workspaceCreate`).
fn ends_with_word(name: &str, word: &str) -> bool {
    let Some(cut) = name.len().checked_sub(word.len()) else { return false };
    name.get(cut..).is_some_and(|tail| tail.eq_ignore_ascii_case(word)) && word_ends_at(name, cut)
}

/// Whether a word boundary lies at byte `at`: the start or end, a non-letter on either side,
/// or a camelCase hump. A one-case name without separators (`createdeployment`) cannot be
/// split into words, so there any position counts, as in MAPPING's regexes.
fn word_ends_at(name: &str, at: usize) -> bool {
    let (Some(before), Some(after)) = (name.get(..at), name.get(at..)) else { return false };
    let (Some(b), Some(a)) = (before.chars().next_back(), after.chars().next()) else { return true };
    let one_case = !name.chars().any(|c| c.is_ascii_uppercase()) || !name.chars().any(|c| c.is_ascii_lowercase());
    !b.is_ascii_alphabetic()
        || !a.is_ascii_alphabetic()
        || (b.is_ascii_lowercase() && a.is_ascii_uppercase())
        || (one_case && name.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// `actor`: the subject as a user (an API token is a Service user), else the client app.
fn actor(record: &Map<String, Value>) -> Option<Actor> {
    let user = User {
        uid: text(record, "subjectId"),
        type_id: text(record, "subjectType").map(|t| match t.to_ascii_uppercase().as_str() {
            "USER" => 1,
            "SERVICEKEY" => 4,
            _ => 99,
        }),
        kind: text(record, "subjectType").map(|t| match t.to_ascii_uppercase().as_str() {
            "USER" => "User".to_owned(),
            "SERVICEKEY" => "Service".to_owned(),
            _ => t,
        }),
        ..User::default()
    };
    if user.is_identified() {
        return Some(Actor { user: Some(user), app_name: None, app_uid: None });
    }
    let app_name = text(record, "graphqlClientName").or_else(|| text(record, "astroClient"))?;
    Some(Actor { user: None, app_name: Some(app_name), app_uid: None })
}

fn http_request(
    record: &Map<String, Value>,
    category: Category,
    method: Option<String>,
    path: Option<String>,
) -> HttpRequest {
    // Airflow UI records name the host apart from the path: together they are the URL.
    let url_string = match (category, text(record, "targetUrl"), &path) {
        (Category::AirflowUi, Some(host), Some(p)) => Some(format!("{}{p}", host.trim_end_matches('/'))),
        (_, host, _) => host,
    };
    let url = Url { url_string, path };
    HttpRequest {
        http_method: http_method(method),
        url: Some(url).filter(|u| *u != Url::default()),
        user_agent: text(record, "userAgent"),
        referrer: None,
        uid: None,
    }
}

/// `resources[]`: the organization first (MAPPING §4.1), then what the category accessed.
fn resources(record: &Map<String, Value>, category: Category, organization: Option<&str>) -> Vec<ResourceDetails> {
    let resource = |uid: Option<String>, name: Option<String>, kind: &str| ResourceDetails {
        uid,
        name,
        kind: Some(kind.to_owned()),
        data: None,
    };
    let mut out: Vec<ResourceDetails> =
        organization.map(|o| resource(Some(o.to_owned()), None, "organization")).into_iter().collect();
    let path = text(record, "path").unwrap_or_default();
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match category {
        // The Airflow UI path starts with the deployment's short id (`/dzl9chy4/configuration`):
        // a name in the URL, not the deployment's API id.
        Category::AirflowUi => {
            out.extend(segments.next().map(|s| resource(None, Some(s.to_owned()), "deployment")));
        }
        Category::CloudIde => {
            let project = segments.skip_while(|s| !s.eq_ignore_ascii_case("projects")).nth(1);
            out.extend(project.map(|p| resource(Some(p.to_owned()), None, "cloud_ide_project")));
        }
        // The GraphQL input often names its target (`requestInput.deploymentId`, sample 2).
        Category::GraphQl => {
            let input = record.get("requestInput").and_then(Value::as_object);
            for (key, kind) in [("workspaceId", "workspace"), ("deploymentId", "deployment")] {
                out.extend(input.and_then(|i| text(i, key)).map(|uid| resource(Some(uid), None, kind)));
            }
        }
        Category::Rest | Category::Registry | Category::Unknown => {}
    }
    out.extend(text(record, "deploymentId").map(|d| resource(Some(d), None, "deployment")));
    out
}

/// The 3004 target when 6003 cannot be built: the deployment, else the organization.
fn fallback_entity(record: &Map<String, Value>, organization: Option<&str>) -> Option<ManagedEntity> {
    let entity = match (text(record, "deploymentId"), organization) {
        (Some(d), _) => {
            ManagedEntity { uid: Some(d), type_id: Some(99), kind: Some("deployment".into()), ..Default::default() }
        }
        (None, Some(o)) => ManagedEntity {
            uid: Some(o.to_owned()),
            type_id: Some(4),
            kind: Some("Organization".into()),
            ..Default::default()
        },
        (None, None) => return None,
    };
    Some(entity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsf::event::Event;
    use crate::ocsf::schema_check::assert_valid;
    use serde_json::json;

    const ORG: &str = "clq4n7x2a000008jz5b1c3e7f";
    const SAMPLES: &str = include_str!("fixtures/records.ndjson");

    /// Maps one record as the pipeline would, with a stable time (the record's, else a fixed one).
    fn convert(raw: &str, organization: &str, dedupe_key: &str) -> Result<Value, Unmappable> {
        let record: Value = serde_json::from_str(raw).unwrap();
        let time = record["timestamp"].as_str().and_then(|t| t.parse().ok());
        let time = time.unwrap_or_else(|| "2026-06-03T12:00:00Z".parse().unwrap());
        let ctx = Context { organization, dedupe_key, time, raw, log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
        let parts = map(record.as_object().unwrap(), &ctx)?;
        Ok(serde_json::to_value(Event::new(parts)).unwrap())
    }

    /// `base` with `fields` set (a `null` removes the field).
    fn with(base: &Value, fields: &[(&str, Value)]) -> Value {
        let mut record = base.clone();
        for (key, value) in fields {
            match value {
                Value::Null => record.as_object_mut().unwrap().remove(*key),
                v => record.as_object_mut().unwrap().insert((*key).to_owned(), v.clone()),
            };
        }
        record
    }

    /// Every row of MAPPING §4.1 (name, raw record, expected type_uid), then the vendor samples
    /// (their lines verbatim).
    fn cases() -> Vec<(String, String, u64)> {
        let graphql = json!({
            "subjectId": "clr8k2m9f000108l4h7c2d9qa", "subjectType": "USER", "organizationId": ORG,
            "timestamp": "2026-06-03T14:21:07.123Z", "sourceIp": "198.51.100.23", "userAgent": "astro-cli/1.29.0",
            "correlationId": "0c6f6a5e-0b3c-4b6e-9a3f-2f6d3d1b7e11", "graphqlClientName": "cloud-ui",
        });
        let op = |name: &str| with(&graphql, &[("operationName", json!(name))]);
        let rest = with(
            &graphql,
            &[
                ("correlationId", Value::Null),
                ("graphqlClientName", Value::Null),
                ("method", json!("GET")),
                ("path", json!("/v1alpha1/organizations/examplecorp/workspaces")),
                ("requestId", json!("4f0c9a7e-2b1d-4c6e-9a3f-8e7d6c5b4a21")),
                ("responseStatus", json!(200)),
            ],
        );
        let registry = json!({
            "subjectId": "clw0p5t3k000208mf2a9b6c1d", "subjectType": "SERVICEKEY", "organizationId": ORG,
            "timestamp": "2026-06-03T14:36:50.318Z", "sourceIp": "203.0.113.88", "deploymentId": "clw3b6d1e000308kz4f7g2h5j",
            "userAgent": "docker/26.1.3", "method": "GET", "path": "/v2/serene-orbit-1234/airflow/manifests/deploy-1",
        });
        let rows = vec![
            ("graphql_verb_create", op("createUserInvite"), 600301),
            ("graphql_noun_create", op("workspaceCreate"), 600301),
            ("graphql_verb_read", op("listDeployments"), 600302),
            ("graphql_verb_update", op("updateDeployment"), 600303),
            ("graphql_noun_update", op("deploymentUpdate"), 600303),
            ("graphql_verb_delete", op("revokeWorkspaceApiToken"), 600304),
            ("graphql_noun_delete", op("workspaceDelete"), 600304),
            ("graphql_other", op("triggerDagRun"), 600399),
            ("rest_get", rest.clone(), 600302),
            (
                "rest_delete_forbidden",
                with(&rest, &[("method", json!("delete")), ("responseStatus", json!(403))]),
                600304,
            ),
            ("registry_pull", registry.clone(), 600302),
            ("registry_delete_other", with(&registry, &[("method", json!("DELETE"))]), 600399),
            (
                "cloud_ide",
                with(
                    &rest,
                    &[
                        ("method", json!("POST")),
                        ("path", json!("/v1alpha1/organizations/examplecorp/projects/cm1p9q2r3/pipelines")),
                    ],
                ),
                600302,
            ),
            ("unknown_category", with(&rest, &[("method", Value::Null), ("path", Value::Null)]), 600300),
            ("source_ip_not_an_address", with(&op("createDeployment"), &[("sourceIp", json!("unknown"))]), 600301),
            (
                "source_ip_forwarded_list",
                with(&op("getDeployment"), &[("sourceIp", json!("10.1.2.3, 203.0.113.9"))]),
                600302,
            ),
            ("no_subject_client_as_actor", with(&op("getDeployment"), &[("subjectId", Value::Null)]), 600302),
            ("no_source_ip_entity_fallback", with(&op("deleteDeployment"), &[("sourceIp", Value::Null)]), 300404),
        ];
        let samples = ["sample1_v2_rest", "sample2_v1_graphql_servicekey", "sample3_airflow_ui"];
        let samples = samples.into_iter().chain(["sample4_registry_push", "sample5_cli"]);
        let want = [600301, 600303, 600302, 600303, 600301];
        let mut out: Vec<_> = rows.into_iter().map(|(n, r, t)| (n.to_owned(), r.to_string(), t)).collect();
        for ((name, line), type_uid) in samples.zip(SAMPLES.lines()).zip(want) {
            out.push((name.to_owned(), line.to_owned(), type_uid));
        }
        out
    }

    #[test]
    fn test_every_row_and_sample_snapshot() {
        // Every row is checked (and snapshotted) before the test fails, naming all bad rows.
        let failed: Vec<String> = cases()
            .into_iter()
            .filter(|(name, record, type_uid)| {
                let json = convert(record, ORG, name).unwrap();
                let check = || {
                    insta::assert_json_snapshot!(name.as_str(), json);
                    assert_valid(&json);
                    assert_eq!(json["type_uid"], *type_uid, "{name}");
                };
                std::panic::catch_unwind(check).is_err()
            })
            .map(|(name, _, _)| name)
            .collect();
        assert!(failed.is_empty(), "rows failing: {failed:?}");
    }

    #[test]
    fn test_no_null_and_always_event_code_and_raw_data() {
        let nested = json!({"subjectId": "u", "sourceIp": "198.51.100.1", "operationName": "setX",
            "requestInput": {"a": null, "b": [null, 1]}, "graphqlClientName": null});
        let rows = cases().into_iter().map(|(_, r, _)| r).chain([nested.to_string()]);
        for raw in rows {
            let json = convert(&raw, ORG, "k").unwrap();
            assert_valid(&json);
            crate::ocsf::event_checks::assert_complete(&json, &["event_code"]);
            assert_eq!(json["raw_data"], raw.as_str());
        }
    }

    #[test]
    fn test_verb_table_needs_a_word_boundary() {
        let want = [
            ("createUserInvite", 1),
            ("ImageCreate", 1),
            ("CreateDeployment", 1),
            ("create_deployment", 1),
            ("createdeployment", 1),
            ("deploymentCreate", 1),
            ("exportAuditLogs", 2),
            ("viewerSettings", 99),
            ("settingsUpdate", 3),
            ("setDeploymentHibernation", 3),
            ("DEPLOYMENT_UPDATE", 3),
            ("deploymentDelete", 4),
            ("deploymentAddUserRole", 99),
            ("addressBookSync", 99),
        ];
        for (operation, id) in want {
            assert_eq!(verb_activity(operation).id(), id, "{operation}");
        }
    }

    #[test]
    fn test_nothing_to_build_is_unmappable() {
        assert!(convert(r#"{"timestamp":"2026-06-03T14:21:07.123Z"}"#, "", "k").is_err());
        let json = convert("{}", ORG, "k").unwrap();
        assert_valid(&json);
        assert_eq!(json["type_uid"], 300400);
    }
}
