//! Datafold → OCSF 1.8.0 (`ocsf/MAPPING.md` §4.2).
//!
//! Source: `GET {base}/api/v1/audit_logs`, the time range as a JSON body on the GET, answered
//! with `{"logs": [...]}`, no paging, no documented rate limit; the source hands this module one
//! element of `logs`. Records are request-level (client IP, URL, method, status), so they become
//! **6003 API Activity**, except logins and logouts: **3002 Authentication**. The vocabulary of
//! `action` is undocumented (vendors README §3.5), so it is matched word by word and an unknown
//! action never fails: it keeps its own name as activity 99 Other.
//! Datafold staff acting in the tenant (`is_support_user: true`) is the high-signal case: the
//! event is labelled `support_user` and raised to Medium.
//!
//! Leaves to others: the dedupe key (`event_uuid`) and event time (the source), the configured
//! severity override (the caller). It sets no `url_string` for a bare path: the configured base
//! URL is not passed to mappings, and OCSF says a path must not fill `url_string`.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    Actor, Api, ApiActivity, ApiActivityId, Authentication, AuthenticationId, Class, EntityManagement,
    EntityManagementId, EventParts, HttpRequest, ManagedEntity, ResourceDetails, Service, Severity, Status, Url, User,
};
use crate::ocsf::{Context, Unmappable, email, http_method, src_endpoint, status_from_word, text, unmapped};

/// Fields that always get an OCSF home; `object_id`/`object_type` do when they make a resource
/// or entity. Everything else (`payload`, `source`, `is_support_user`, ...) goes to `unmapped`.
const MAPPED: &[&str] = &[
    "action",
    "client_ip",
    "event_uuid",
    "log_entry",
    "referer",
    "request_type",
    "status",
    "timestamp",
    "url",
    "user_agent",
    "user_email",
    "user_id",
];

const PRODUCT: &str = "Datafold";

/// Maps one Datafold audit record. Fails only when no class's required attributes can be filled.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let action = text(record, "action");
    let method = http_method(text(record, "request_type"));
    let path = text(record, "url");
    // event_code = api.operation: the action, else the request itself (stable per endpoint).
    let operation = action
        .clone()
        .or_else(|| match (&method, &path) {
            (Some(m), Some(p)) => Some(format!("{m} {p}")),
            (m, p) => m.clone().or_else(|| p.clone()),
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let support_user = record.get("is_support_user").and_then(Value::as_bool) == Some(true);

    let mut metadata = ctx.metadata("datafold", PRODUCT, "Datafold", "Datafold audit logs");
    metadata.event_code = Some(operation.clone());
    metadata.original_event_uid = text(record, "event_uuid");
    metadata.original_time = text(record, "timestamp");
    metadata.labels = support_user.then(|| vec!["support_user".to_owned()]);

    let status = text(record, "status").map(|s| status_from_word(&s));
    // 2.6: a failure's reason goes to status_detail; Datafold puts it in the payload.
    let reason = record.get("payload").and_then(Value::as_object).and_then(|p| text(p, "reason"));
    let status_detail = reason.filter(|_| status == Some(Status::Failure));
    let user = user(record);
    let src_endpoint = src_endpoint(record, "client_ip");
    let http_request = Some(http_request(record, method.clone(), path)).filter(|h| !h.is_empty());
    let mut mapped = MAPPED.to_vec();
    if method.is_none() {
        // A request_type OCSF's method enum lacks has no home but `unmapped`.
        mapped.retain(|k| *k != "request_type");
    }

    let class = match (auth_activity(action.as_deref()), user.clone()) {
        // MAPPING §4.2: the user who logged in is both `user` and the actor; `service` names
        // Datafold, which meets the class's "service or dst_endpoint" constraint.
        (Some(activity), Some(user)) => Class::Authentication(Authentication {
            activity,
            actor: Some(Actor { user: Some(user.clone()), app_name: None, app_uid: None }),
            user,
            service: Service { name: PRODUCT.to_owned() },
            src_endpoint,
            http_request,
            is_mfa: None,
            auth_protocol: None,
        }),
        // Everything else, and a login naming no user at all (MAPPING §3 rule 7), is 6003.
        _ => {
            let activity = api_activity(method.as_deref(), action.as_deref());
            match (actor(record, user), src_endpoint) {
                (Some(actor), Some(src_endpoint)) => {
                    let resource = resource(record);
                    if resource.is_some() {
                        mapped.extend(["object_id", "object_type"]);
                    }
                    Class::ApiActivity(ApiActivity {
                        activity,
                        actor,
                        api: Api {
                            operation,
                            service: Some(Service { name: PRODUCT.to_owned() }),
                            request: None,
                            response: None,
                        },
                        src_endpoint,
                        http_request,
                        http_response: None,
                        resources: resource.map(|r| vec![r]),
                    })
                }
                // MAPPING §3 rule 7: no actor or no source, so no 6003; say what happened to
                // the object (or, naming none, to the organization).
                (actor, src_endpoint) => {
                    let entity = fallback_entity(record, ctx.organization)
                        .ok_or_else(|| Unmappable("Datafold record names no actor, source or object".into()))?;
                    mapped.extend(["object_id", "object_type"]);
                    Class::EntityManagement(EntityManagement {
                        activity: EntityManagementId::from(activity),
                        entity,
                        entity_result: None,
                        actor,
                        src_endpoint,
                        http_request,
                        comment: None,
                    })
                }
            }
        }
    };

    let keys: Vec<&str> = record.keys().map(String::as_str).filter(|k| !mapped.contains(k)).collect();
    Ok(EventParts {
        class,
        severity: if support_user { Severity::Medium } else { Severity::Informational },
        time: ctx.time_ms(),
        metadata,
        status: Some(status.unwrap_or(Status::Unknown)),
        status_code: text(record, "status"),
        status_detail,
        message: text(record, "log_entry"),
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(unmapped(record, &keys)),
    })
}

/// 3002's activity when `action` is a login or logout (`login`, `sso_login`, `logOut`, ...).
fn auth_activity(action: Option<&str>) -> Option<AuthenticationId> {
    let words = words(action?);
    let has = |one: &str, two: [&str; 2]| {
        words.iter().any(|w| w == one) || words.windows(2).any(|p| p[0] == two[0] && p[1] == two[1])
    };
    if has("login", ["log", "in"]) || has("logon", ["log", "on"]) || has("signin", ["sign", "in"]) {
        Some(AuthenticationId::Logon)
    } else if has("logout", ["log", "out"]) || has("logoff", ["log", "off"]) || has("signout", ["sign", "out"]) {
        Some(AuthenticationId::Logoff)
    } else {
        None
    }
}

/// MAPPING §4.2's activity table: the HTTP method, else the first verb in `action`, else 99
/// Other with the action's own name.
fn api_activity(method: Option<&str>, action: Option<&str>) -> ApiActivityId {
    match method {
        Some("POST") => return ApiActivityId::Create,
        Some("GET") => return ApiActivityId::Read,
        Some("PUT" | "PATCH") => return ApiActivityId::Update,
        Some("DELETE") => return ApiActivityId::Delete,
        _ => {}
    }
    let Some(action) = action else { return ApiActivityId::Unknown };
    let verb = words(action).into_iter().find_map(|w| match w.as_str() {
        "create" | "add" => Some(ApiActivityId::Create),
        "view" | "get" | "list" | "export" => Some(ApiActivityId::Read),
        "update" | "edit" | "change" => Some(ApiActivityId::Update),
        "delete" | "remove" => Some(ApiActivityId::Delete),
        _ => None,
    });
    verb.unwrap_or_else(|| ApiActivityId::Other(action.to_owned()))
}

/// The lower-case words of an identifier: split at non-alphanumerics and camelCase humps.
fn words(name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut previous = ' ';
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push(String::new());
        } else {
            if previous.is_ascii_lowercase() && c.is_ascii_uppercase() {
                out.push(String::new());
            }
            match out.last_mut() {
                Some(word) => word.push(c.to_ascii_lowercase()),
                None => out.push(c.to_ascii_lowercase().to_string()),
            }
        }
        previous = c;
    }
    out.retain(|w| !w.is_empty());
    out
}

/// The acting user: `user_id` (an integer) and `user_email`, which is also the name (a failed
/// login has no `user_id`, only the address that was tried). `None` when neither is given.
fn user(record: &Map<String, Value>) -> Option<User> {
    let user = User {
        uid: text(record, "user_id"),
        name: text(record, "user_email"),
        email_addr: email(text(record, "user_email")),
        type_id: Some(1),
        kind: Some("User".to_owned()),
        ..User::default()
    };
    user.is_identified().then_some(user)
}

/// `actor`: the user, else the client Datafold names (`source`: web, api, system), else its UA.
fn actor(record: &Map<String, Value>, user: Option<User>) -> Option<Actor> {
    if let Some(user) = user {
        return Some(Actor { user: Some(user), app_name: None, app_uid: None });
    }
    let app_name = text(record, "source").or_else(|| text(record, "user_agent"))?;
    Some(Actor { user: None, app_name: Some(app_name), app_uid: None })
}

fn http_request(record: &Map<String, Value>, method: Option<String>, url: Option<String>) -> HttpRequest {
    // `url` is documented as "request URL/path": a full URL fills url_string and path, a bare
    // path only path (without its query string).
    let url = url.map(|raw| match url::Url::parse(&raw) {
        Ok(full) if full.has_host() => Url { path: Some(full.path().to_owned()), url_string: Some(raw) },
        _ => Url { path: raw.split('?').next().map(str::to_owned), url_string: None },
    });
    HttpRequest {
        http_method: method,
        url,
        user_agent: text(record, "user_agent"),
        referrer: text(record, "referer"),
        uid: None,
    }
}

/// `resources[0]`: the object acted on, when it has an id (a resource needs a uid or name).
fn resource(record: &Map<String, Value>) -> Option<ResourceDetails> {
    let uid = text(record, "object_id")?;
    Some(ResourceDetails { uid: Some(uid), name: None, kind: text(record, "object_type"), data: None })
}

/// The 3004 target when 6003 cannot be built: the object, else the organization (for Datafold
/// the configured label, so a `name`).
fn fallback_entity(record: &Map<String, Value>, organization: &str) -> Option<ManagedEntity> {
    let Some(uid) = text(record, "object_id") else {
        let name = Some(organization.to_owned()).filter(|o| !o.is_empty())?;
        return Some(ManagedEntity {
            name: Some(name),
            type_id: Some(4),
            kind: Some("Organization".into()),
            ..Default::default()
        });
    };
    let object_type = text(record, "object_type");
    let (type_id, kind) = match object_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("user") => (2, "User".to_owned()),
        Some("group") => (3, "Group".to_owned()),
        Some("organization") => (4, "Organization".to_owned()),
        Some("policy") => (5, "Policy".to_owned()),
        _ => (99, object_type.unwrap_or_else(|| "object".to_owned())),
    };
    Some(ManagedEntity { uid: Some(uid), type_id: Some(type_id), kind: Some(kind), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsf::event::Event;
    use crate::ocsf::schema_check::assert_valid;
    use serde_json::json;
    use serde_json::value::RawValue;

    const ORG: &str = "examplecorp";
    const SAMPLES: &str = include_str!("fixtures/records.json");

    /// Maps one record as the pipeline would, with a stable time (the record's, else a fixed one).
    fn convert(raw: &str, organization: &str) -> Result<Value, Unmappable> {
        let record: Value = serde_json::from_str(raw).unwrap();
        let time = record["timestamp"].as_str().and_then(|t| t.parse().ok());
        let time = time.unwrap_or_else(|| "2026-04-02T12:00:00Z".parse().unwrap());
        let key = record["event_uuid"].as_str().unwrap_or("k");
        let ctx = Context { organization, dedupe_key: key, time, raw, log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
        let parts = map(record.as_object().unwrap(), &ctx)?;
        Ok(serde_json::to_value(Event::new(parts)).unwrap())
    }

    /// `base` with `fields` set; a new `event_uuid` per row keeps the uids apart.
    fn with(base: &Value, row: &str, fields: &[(&str, Value)]) -> Value {
        let mut record = base.clone();
        let object = record.as_object_mut().unwrap();
        object.insert("event_uuid".into(), json!(format!("00000000-0000-4000-8000-{row:0>12.12}")));
        for (key, value) in fields {
            object.insert((*key).to_owned(), value.clone());
        }
        record
    }

    /// Every row of MAPPING §4.2 (name, raw record, expected type_uid), then the vendor samples
    /// (each element of the array verbatim, as the source hands it over).
    fn cases() -> Vec<(String, String, u64)> {
        let samples: Vec<&RawValue> = serde_json::from_str(SAMPLES).unwrap();
        let base: Value = serde_json::from_str(samples[1].get()).unwrap();
        let (n, s) = (Value::Null, |v: &str| json!(v));
        let login = |row: &str, action: &str| with(&base, row, &[("action", s(action)), ("object_id", n.clone())]);
        let rows = [
            ("method_get_read", with(&base, "1", &[("request_type", s("GET")), ("action", s("view"))]), 600302),
            ("method_put_update", with(&base, "2", &[("request_type", s("put")), ("action", s("update"))]), 600303),
            ("method_patch_update", with(&base, "3", &[("request_type", s("PATCH")), ("action", n.clone())]), 600303),
            ("method_delete", with(&base, "4", &[("request_type", s("DELETE")), ("action", s("delete"))]), 600304),
            (
                "action_verb_create",
                with(&base, "5", &[("request_type", n.clone()), ("action", s("add_member"))]),
                600301,
            ),
            ("action_verb_read", with(&base, "6", &[("request_type", n.clone()), ("action", s("exportDiff"))]), 600302),
            (
                "action_verb_update",
                with(&base, "7", &[("request_type", s("MOVE")), ("action", s("change_role"))]),
                600303,
            ),
            (
                "action_verb_delete",
                with(&base, "8", &[("request_type", n.clone()), ("action", s("remove_user"))]),
                600304,
            ),
            ("unknown_action_other", with(&base, "9", &[("request_type", n.clone()), ("action", s("rerun"))]), 600399),
            ("no_method_no_action", with(&base, "10", &[("request_type", n.clone()), ("action", n.clone())]), 600300),
            ("logout", login("11", "logout"), 300202),
            ("sso_login", login("12", "sso_login"), 300201),
            (
                "login_without_user_is_api_activity",
                with(&login("13", "login"), "13", &[("user_id", n.clone()), ("user_email", n.clone())]),
                600301,
            ),
            ("client_ip_not_an_address", with(&base, "14", &[("client_ip", s("unknown"))]), 600301),
            ("no_client_ip_entity_fallback", with(&base, "15", &[("client_ip", n.clone())]), 300401),
            (
                "full_url",
                with(&base, "16", &[("url", s("https://datafold.example.com/api/v1/data_sources?x=1"))]),
                600301,
            ),
        ];
        let mut out: Vec<_> = rows.into_iter().map(|(n, r, t)| (n.to_owned(), r.to_string(), t)).collect();
        let names =
            ["sample1_login", "sample2_create", "sample3_api_create", "sample4_support_user", "sample5_failed_login"];
        for ((name, raw), type_uid) in names.into_iter().zip(samples).zip([300201, 600301, 600301, 600302, 300201]) {
            out.push((name.to_owned(), raw.get().to_owned(), type_uid));
        }
        out
    }

    #[test]
    fn test_every_row_and_sample_snapshot() {
        // Every row is checked (and snapshotted) before the test fails, naming all bad rows.
        let failed: Vec<String> = cases()
            .into_iter()
            .filter(|(name, raw, type_uid)| {
                let json = convert(raw, ORG).unwrap();
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
        let nested = json!({"event_uuid": "e", "client_ip": "203.0.113.1", "url": "/x", "user_id": 1,
            "payload": {"a": null, "b": [null, 1]}, "source": null});
        for raw in cases().into_iter().map(|(_, r, _)| r).chain([nested.to_string()]) {
            let json = convert(&raw, ORG).unwrap();
            assert_valid(&json);
            crate::ocsf::event_checks::assert_complete(&json, &["event_code", "original_event_uid"]);
            assert_eq!(json["raw_data"], raw.as_str());
        }
    }

    #[test]
    fn test_support_user_is_labelled_and_raised() {
        let (_, raw, _) = cases().into_iter().find(|(n, _, _)| n == "sample4_support_user").unwrap();
        let json = convert(&raw, ORG).unwrap();
        assert_valid(&json);
        assert_eq!(json["metadata"]["labels"], json!(["support_user"]));
        assert_eq!(json["severity_id"], 3);
        assert_eq!(json["unmapped"]["is_support_user"], "true");
    }

    #[test]
    fn test_words_and_auth_actions() {
        assert_eq!(words("ssoLogin-v2 now"), ["sso", "login", "v2", "now"]);
        let want = [("login", Some(1)), ("log_in", Some(1)), ("SignOut", Some(2)), ("design_input", None)];
        for (action, id) in want {
            assert_eq!(auth_activity(Some(action)).map(|a| a.id()), id, "{action}");
        }
    }

    #[test]
    fn test_nothing_to_build_is_unmappable() {
        assert!(convert(r#"{"event_uuid":"e"}"#, "").is_err());
        let json = convert(r#"{"event_uuid":"e"}"#, ORG).unwrap();
        assert_valid(&json);
        assert_eq!(json["type_uid"], 300400);
    }
}
