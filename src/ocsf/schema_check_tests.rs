//! Tests of the OCSF schema check (`tests/ocsf_schema/mod.rs`): the shared examples, broken
//! events, and one valid event of each class built with the crate's own types.

use chrono::{TimeZone, Utc};
use serde_json::json;

use serde_json::Value;

use super::schema_check::*;
use crate::ocsf::Context;
use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Api, ApiActivity, ApiActivityId, ApiRequest, ApiResponse, Authentication,
    AuthenticationId, Class as EventClass, EntityManagement, EntityManagementId, Event, EventParts, Group,
    GroupManagement, GroupManagementId, HttpRequest, HttpResponse, ManagedEntity, NetworkEndpoint, OCSF_VERSION,
    ResourceDetails, Service, Severity, Status, Url, User, UserAccess, UserAccessId,
};

const VALID: &str = include_str!("../../tests/fixtures/ocsf-schema/examples/valid.ndjson");
const INVALID: &str = include_str!("../../tests/fixtures/ocsf-schema/examples/invalid.ndjson");

/// Line 1 of valid.ndjson: an Astro `createUserInvite` as 6003 API Activity / Create.
fn valid_api_activity() -> Value {
    serde_json::from_str(VALID.lines().next().unwrap()).unwrap()
}

/// `errors` of the valid example after `change`, which must include one containing `expect`
/// (or be empty when `expect` is empty).
fn check(change: impl FnOnce(&mut Value), expect: &str) {
    let mut event = valid_api_activity();
    change(&mut event);
    let errors = errors(&event);
    if expect.is_empty() {
        assert!(errors.is_empty(), "expected valid, got {errors:#?}");
    } else {
        assert!(errors.iter().any(|e| e.contains(expect)), "expected an error containing {expect:?}, got {errors:#?}");
    }
}

#[test]
fn test_schemas_are_draft_2020_12_of_ocsf_1_8_0_and_compile() {
    for (uid, text) in SCHEMAS {
        let schema: Value = serde_json::from_str(text).unwrap();
        assert_eq!(schema["$schema"], DRAFT_2020_12, "{uid}.json");
        assert!(schema["$id"].as_str().unwrap().starts_with("https://schema.ocsf.io/schema/1.8.0/"), "{uid}.json");
        assert_eq!(schema["properties"]["class_uid"]["const"], uid, "{uid}.json");
        assert_eq!(CLASSES[&uid].validator.draft(), jsonschema::Draft::Draft202012);
    }
    assert_eq!(TABLE.version, OCSF_VERSION);
}

/// The regexes of the OCSF scalar types give the verdicts Python's `re.search` gives in
/// `validate-ocsf` (computed there), with the default engine (`fancy-regex`) of the crate.
#[test]
fn test_regex_typed_scalars_match_like_validate_ocsf() {
    let ips = [
        ("198.51.100.23", true),
        (" 10.0.0.1 ", true),
        ("0.0.0.0", true),
        ("255.255.255.255", true),
        ("2001:db8::1", true),
        ("::1", true),
        ("::", true),
        ("fe80::1%eth0", true),
        ("::ffff:192.0.2.1", true),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", true),
        ("1x2x3x4", true), // ip_t's dots are unescaped in OCSF 1.8.0: any character passes
        ("not-an-ip", false),
        ("256.1.1.1", false),
        ("1.2.3", false),
        ("1.2.3.4.5", false),
        ("2001:db8::g", false),
        (":::", false),
        ("", false),
    ];
    for (ip, valid) in ips {
        check(|e| e["src_endpoint"]["ip"] = json!(ip), if valid { "" } else { "src_endpoint.ip: value" });
    }
    let emails = [
        ("bob@example.com", true),
        ("a+b@x.co", true),
        ("a,b@x.y", true), // `+-/` in email_t is a range that includes ','
        ("bob@localhost", false),
        ("bob example@x.com", false),
        ("é@x.com", false),
        // Python's `$` also matches before a final newline; ECMA-262's (and this crate's)
        // does not, so this one is stricter here than in validate-ocsf.
        ("bob@x.com\n", false),
    ];
    for (email, valid) in emails {
        let expect = if valid { "" } else { "actor.user.email_addr: value" };
        check(|e| e["actor"]["user"]["email_addr"] = json!(email), expect);
    }
    check(|e| e["src_endpoint"]["mac"] = json!("00:1A:2b:3c:4d:5e"), "");
    check(
        |e| e["src_endpoint"]["mac"] = json!("00:1A:2b:3c:4d"),
        "src_endpoint.mac: value \"00:1A:2b:3c:4d\" is not a valid mac_t",
    );
}

#[test]
fn test_every_shared_valid_example_is_valid() {
    let lines: Vec<&str> = VALID.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 7);
    for (i, line) in lines.into_iter().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert_eq!(errors(&event), Vec::<String>::new(), "valid.ndjson line {}", i + 1);
    }
}

/// Each line of invalid.ndjson breaks one rule; the reason is the one validate-ocsf gives.
#[test]
fn test_every_shared_invalid_example_is_invalid_for_its_reason() {
    let reasons = [
        "missing required attribute 'time'",
        "missing required attribute 'api.operation'",
        "activity_id: value 7 is not an allowed enum value",
        "severity_id: value 9 is not an allowed enum value",
        "type_uid: expected 600301 (class_uid 6003 * 100 + activity_id 1), got 600303",
        "type_uid: expected 600301 (class_uid 6003 * 100 + activity_id 1), got 300101",
        "category_uid: expected 6",
        "unknown attribute(s) 'operationName' in event",
        "time: wrong type, expected integer but got string",
        "src_endpoint.ip: value \"not-an-ip\" is not a valid ip_t",
        "http_request.user_agent: null is not allowed",
        "'actor': at least one of [process, user, invoked_by, session, app_name, app_uid] is required",
        "metadata.profiles[0]: unknown profile \"nope\"",
        "metadata.version: expected \"1.8.0\", got \"1.9.0\"",
        "class_uid: 6099 is not a class auditrelay emits",
        "not JSON",
    ];
    let lines: Vec<&str> = INVALID.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), reasons.len());
    for (i, (line, reason)) in lines.into_iter().zip(reasons).enumerate() {
        let errors = match serde_json::from_str::<Value>(line) {
            Ok(event) => errors(&event),
            Err(e) => vec![format!("not JSON: {e}")],
        };
        assert!(
            errors.iter().any(|e| e.contains(reason)),
            "invalid.ndjson line {}: want {reason:?}, got {errors:#?}",
            i + 1
        );
    }
}

#[test]
fn test_broken_events_are_invalid() {
    check(
        |e| e["type_uid"] = json!(600302),
        "type_uid: expected 600301 (class_uid 6003 * 100 + activity_id 1), got 600302",
    );
    check(|e| e["message"] = Value::Null, "message: null is not allowed");
    check(|e| e["resources"][0]["name"] = Value::Null, "resources[0].name: null is not allowed");
    check(|e| e["unmapped"] = Value::Null, "unmapped: null is not allowed");
    check(|e| _ = e.as_object_mut().unwrap().remove("src_endpoint"), "missing required attribute 'src_endpoint'");
    check(
        |e| _ = e["metadata"]["product"].as_object_mut().unwrap().remove("name"),
        "'metadata.product': at least one of",
    );
    check(|e| e["vendor"] = json!("astronomer"), "unknown attribute(s) 'vendor' in event");
    check(|e| e["api"]["verb"] = json!("create"), "unknown attribute(s) 'verb' in object at 'api'");
    check(
        |e| e["actor"]["user"]["email_addr"] = json!("bob at example.com"),
        "actor.user.email_addr: value \"bob at example.com\" is not a valid email_t",
    );
    check(
        |e| e["http_request"]["http_method"] = json!("get"),
        "http_request.http_method: value \"get\" is not an allowed enum value",
    );
    check(|e| e["category_uid"] = json!(3), "category_uid: expected 6 (class_uid 6003 / 1000), got 3");
    check(|e| e["metadata"]["version"] = json!("1.7.0"), "metadata.version: expected \"1.8.0\", got \"1.7.0\"");
    // The sibling captions, deprecations and profile attributes validate-ocsf warns about.
    check(
        |e| e["activity_name"] = json!("create"),
        "activity_name: expected \"Create\" to match activity_id=1, got \"create\"",
    );
    check(|e| e["severity"] = json!("Low"), "severity: expected \"Informational\" to match severity_id=1");
    check(
        |e| e["actor"]["user"]["type"] = json!("user"),
        "actor.user.type: expected \"User\" to match actor.user.type_id=1",
    );
    check(
        |e| (e["status_id"], e["status"]) = (json!(99), json!("Other")),
        "status: value \"Other\" for status_id=99 should carry the source's own value",
    );
    check(
        |e| e["actor"]["user"]["credential_uid"] = json!("k1"),
        "actor.user.credential_uid: attribute is deprecated since 1.6.0",
    );
    check(|e| e["metadata"]["profiles"] = json!(["datetime"]), "");
    check(
        |e| (e["metadata"]["profiles"], e["time_dt"]) = (json!(["datetime"]), json!("2025-06-03T14:21:07.123Z")),
        "unknown attribute(s) 'time_dt'",
    );
    // Free-form values take any JSON, nulls inside included (MAPPING.md §2.5).
    check(|e| e["unmapped"]["payload"] = json!({"before": null, "after": [1, null]}), "");
    check(|e| e["resources"][0]["data"] = json!({"x": null}), "");
}

#[test]
fn test_many_faults_are_all_reported() {
    let mut event = valid_api_activity();
    event["type_uid"] = json!(600302);
    event["message"] = Value::Null;
    event.as_object_mut().unwrap().remove("time");
    event["operationName"] = json!("createUserInvite");
    event["actor"]["user"]["email_addr"] = json!("nobody");
    assert_eq!(
        errors(&event),
        [
            "type_uid: expected 600301 (class_uid 6003 * 100 + activity_id 1), got 600302",
            "missing required attribute 'time'",
            "unknown attribute(s) 'operationName' in event (not defined by the schema for this class without \
             profiles; put source-specific fields under 'unmapped')",
            "actor.user.email_addr: value \"nobody\" is not a valid email_t",
            "message: null is not allowed (omit the attribute instead of sending null)",
            "type_name: expected \"API Activity: Read\" to match type_uid=600302, got \"API Activity: Create\"",
        ]
    );
}

/// The schema would also call a null the wrong type or not an enum value: one message only.
#[test]
fn test_a_null_is_reported_once() {
    for key in ["activity_id", "time", "actor"] {
        let mut event = valid_api_activity();
        event[key] = Value::Null;
        let errors = errors(&event);
        let want = format!("{key}: null is not allowed (omit the attribute instead of sending null)");
        assert_eq!(errors, [want], "{key}");
    }
}

#[test]
#[should_panic(expected = "type_uid: expected 600301")]
fn test_assert_valid_panics_with_the_errors() {
    let mut event = valid_api_activity();
    event["type_uid"] = json!(600302);
    assert_valid(&event);
}

#[test]
fn test_non_events_are_invalid() {
    assert_eq!(errors(&json!([1])), ["event must be a JSON object, got array"]);
    assert_eq!(errors(&json!({})), ["missing required attribute 'class_uid' (cannot pick an event class)"]);
    assert_eq!(errors(&json!({"class_uid": "6003"})), ["class_uid: wrong type, expected integer but got \"6003\""]);
}

// ---- events built with the crate's own types --------------------------------------------

fn parts(class: EventClass) -> EventParts {
    let raw = r#"{"id":"evt_1","action":"x"}"#;
    let context = Context::fixed("org_1", "evt_1", Utc.timestamp_millis_opt(1_748_948_553_000).unwrap(), raw);
    let mut metadata = context.metadata("aitronos", "Aitronos", "Aitronos", "Aitronos audit-log");
    metadata.original_event_uid = Some("evt_1".into());
    metadata.event_code = Some("role_assignment.assigned".into());
    metadata.original_time = Some("2025-06-03T11:02:33Z".into());
    metadata.labels = Some(vec!["support_user".into()]);
    EventParts {
        class,
        severity: Severity::Informational,
        time: context.time_ms(),
        metadata,
        status: Some(Status::Failure),
        status_code: Some("403".into()),
        status_detail: Some("forbidden".into()),
        message: Some("m".into()),
        raw_data: raw.into(),
        unmapped: Some([("payload".to_owned(), r#"{"old":null}"#.to_owned())].into()),
    }
}

fn user() -> User {
    User {
        uid: Some("usr_1".into()),
        name: Some("bob".into()),
        full_name: Some("Bob Example".into()),
        email_addr: crate::ocsf::email(Some("bob@example.com".into())),
        type_id: Some(1),
        kind: Some("User".into()),
        groups: Some(vec![Group { uid: Some("grp_1".into()), ..Group::default() }]),
    }
}

fn actor() -> Actor {
    Actor { user: Some(user()), app_name: None, app_uid: None }
}

fn endpoint() -> NetworkEndpoint {
    NetworkEndpoint { ip: crate::ocsf::ip(Some("2001:db8::7".into())), ..NetworkEndpoint::default() }
}

fn http_request() -> HttpRequest {
    HttpRequest {
        http_method: Some("POST".into()),
        url: Some(Url { url_string: None, path: Some("/v1/x".into()) }),
        user_agent: Some("curl/8".into()),
        referrer: None,
        uid: Some("req_1".into()),
    }
}

#[test]
fn test_events_built_with_the_crate_types_are_valid() {
    let classes = [
        EventClass::ApiActivity(ApiActivity {
            activity: ApiActivityId::Update,
            actor: actor(),
            api: Api {
                operation: "updateDeployment".into(),
                service: Some(Service { name: "Astro API".into() }),
                request: Some(ApiRequest { uid: "req_1".into() }),
                response: Some(ApiResponse { code: Some(403), error: Some("denied".into()), message: None }),
            },
            src_endpoint: endpoint(),
            http_request: Some(http_request()),
            http_response: Some(HttpResponse { code: 403 }),
            resources: Some(vec![ResourceDetails {
                uid: Some("dep_1".into()),
                name: None,
                kind: Some("deployment".into()),
                data: Some(r#"{"replicas":null}"#.into()),
            }]),
        }),
        EventClass::AccountChange(AccountChange {
            activity: AccountChangeId::MfaFactorDisable,
            user: user(),
            // `user` needs one of account, name, uid: the new e-mail alone is not enough.
            user_result: Some(User {
                uid: Some("usr_1".into()),
                email_addr: Some("new@example.com".into()),
                ..User::default()
            }),
            actor: Some(Actor { user: None, app_name: Some("Aitronos".into()), app_uid: None }),
            src_endpoint: Some(endpoint()),
            http_request: Some(http_request()),
        }),
        EventClass::Authentication(Authentication {
            activity: AuthenticationId::Logon,
            user: user(),
            service: Service { name: "Datafold".into() },
            actor: Some(actor()),
            src_endpoint: Some(endpoint()),
            http_request: None,
            is_mfa: Some(true),
            is_remote: Some(true),
            auth_protocol: Some(crate::ocsf::event::AuthProtocol::Saml),
        }),
        EventClass::EntityManagement(EntityManagement {
            activity: EntityManagementId::Create,
            entity: ManagedEntity {
                uid: Some("flag_1".into()),
                name: Some("isNewCheckoutEnabled".into()),
                type_id: Some(99),
                kind: Some("setting".into()),
                data: Some(r#"{"value":true}"#.into()),
                user: None,
                group: None,
                org: None,
            },
            entity_result: Some(ManagedEntity { name: Some("renamed".into()), ..ManagedEntity::default() }),
            actor: Some(actor()),
            src_endpoint: None,
            http_request: None,
            comment: Some("Roll out".into()),
        }),
        EventClass::UserAccess(UserAccess {
            activity: UserAccessId::RevokePrivileges,
            user: user(),
            privileges: vec!["Admin".into()],
            resources: Some(vec![ResourceDetails { uid: None, name: Some("org".into()), kind: None, data: None }]),
            actor: Some(actor()),
            src_endpoint: Some(endpoint()),
            http_request: None,
        }),
        EventClass::GroupManagement(GroupManagement {
            activity: GroupManagementId::AddSubgroup,
            group: Group {
                uid: Some("grp_1".into()),
                name: Some("Engineering".into()),
                kind: Some("department".into()),
                privileges: Some(vec!["read".into()]),
            },
            user: Some(user()),
            privileges: Some(vec!["read".into()]),
            actor: Some(actor()),
            src_endpoint: None,
            http_request: None,
        }),
    ];
    assert_eq!(classes.len(), SCHEMAS.len(), "one event per class auditrelay emits");
    for class in classes {
        assert_valid(&serde_json::to_value(Event::new(parts(class))).unwrap());
    }
}
