//! Aitronos audit-log entry → OCSF 1.8.0 event (`ocsf/MAPPING.md` §4.3).
//!
//! Input: one item of `GET /v1/organizations/{organization_id}/audit-log` (vendors README §4.5;
//! the JSON field names are partly assumed, MAPPING §7). The class is chosen by
//! (`entity_type`, `action_type`) in one table, [`row`]; the rest of this file fills the chosen
//! class's objects from the record. Unknown pairs never fail: they become 3004 Entity Management
//! with the activity taken from the verb. A row whose required target cannot be identified (3001
//! without the target user, 3005 without a grantee or privilege, 3006 without the department)
//! degrades to 3004 on the record's entity (MAPPING §3 rule 7).
//!
//! Not here: the severity override (applied by the caller, keyed on `metadata.event_code`), the
//! event uid and loggers ([`Context::metadata`]), schema validation.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Class, EntityManagement, EntityManagementId, EventParts, Group,
    GroupManagement, GroupManagementId, HttpRequest, ManagedEntity, NetworkEndpoint, ResourceDetails, Severity, Status,
    User, UserAccess, UserAccessId,
};
use crate::ocsf::{Context, Fields, Unmappable, email, ip, text};

const VENDOR: &str = "aitronos";
const PRODUCT: &str = "Aitronos";
const LOG_PROVIDER: &str = "Aitronos API audit-log";

/// What a row of MAPPING §4.3 makes of the record; 3004 rows take their activity from the verb.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    /// 3001 on the target user (the target fields, else the entity).
    Account(AccountChangeId),
    /// 3006 create/delete of the department that is the record's entity.
    Department(GroupManagementId),
    /// 3006 add/remove of the target user to/from the department.
    Membership(GroupManagementId),
    /// 3005 when the grantee is a user, 3006 when it is a department; `true` grants.
    Grant(Granted, bool),
    /// 3004 on the record's entity.
    Entity,
}

/// What a grant row hands out: decides where the privilege and the resource come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granted {
    Role,
    Permission,
    Knowledge,
}

/// MAPPING §4.3 row by row: the target and the suggested severity of one (entity_type,
/// action_type) pair. Judgement calls live here and only here (MAPPING §7).
fn row(entity_type: &str, action: &str) -> (Target, Severity) {
    use AccountChangeId as Ac;
    use GroupManagementId as Gm;
    use Severity::{Informational, Low};
    let granted = match entity_type {
        "role_assignment" => Granted::Role,
        "permission" => Granted::Permission,
        _ => Granted::Knowledge,
    };
    match (entity_type, action) {
        ("user", "created" | "invited") => (Target::Account(Ac::Create), Informational),
        ("user", "updated") => (Target::Account(Ac::Other(action.to_owned())), Informational),
        ("user", "deactivated") => (Target::Account(Ac::Disable), Low),
        ("user", "reactivated") => (Target::Account(Ac::Enable), Informational),
        ("user", "deleted" | "removed") => (Target::Account(Ac::Delete), Low),
        ("department", "created") => (Target::Department(Gm::Create), Informational),
        ("department", "deleted") => (Target::Department(Gm::Delete), Informational),
        ("department_membership", "membership_added" | "created" | "assigned") => {
            (Target::Membership(Gm::AddUser), Informational)
        }
        ("department_membership", "membership_removed" | "deleted" | "removed" | "unassigned") => {
            (Target::Membership(Gm::RemoveUser), Informational)
        }
        ("role", "updated") => (Target::Entity, Low),
        ("role_assignment" | "permission", "assigned" | "created") => (Target::Grant(granted, true), Low),
        ("knowledge_grant", "assigned" | "created") => (Target::Grant(granted, true), Informational),
        ("role_assignment" | "permission" | "knowledge_grant", "unassigned" | "deleted" | "removed") => {
            (Target::Grant(granted, false), Informational)
        }
        // department updated (entity.group) and reparented (Move); role created/deleted;
        // permission updated; knowledge_slice / vector_store / knowledge_composite; any other.
        _ => (Target::Entity, Informational),
    }
}

/// The 3004 activity by verb: the fallback row's 1 / 3 / 4 / 5 / 10 / 11, else 99 with the verb.
/// The grant and membership verbs count as create/delete, as the `permission` rows say for a
/// grant whose grantee is unknown.
fn entity_activity(verb: &str) -> EntityManagementId {
    match verb {
        "created" | "invited" | "assigned" | "membership_added" => EntityManagementId::Create,
        "updated" => EntityManagementId::Update,
        "deleted" | "removed" | "unassigned" | "membership_removed" => EntityManagementId::Delete,
        "reparented" => EntityManagementId::Move,
        "reactivated" => EntityManagementId::Activate,
        "deactivated" => EntityManagementId::Deactivate,
        other => EntityManagementId::Other(other.to_owned()),
    }
}

/// Maps one Aitronos audit entry. Fails only when the record has no `action_type` at all.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let Some(action) = text(record, "action_type") else {
        return Err(Unmappable("Aitronos audit entry without action_type".into()));
    };
    let entity_type = text(record, "entity_type");
    let mut f = Fields::new(record, "action_type");

    let mut metadata = ctx.metadata(VENDOR, PRODUCT, PRODUCT, LOG_PROVIDER);
    metadata.event_code = Some(match &entity_type {
        Some(kind) => format!("{kind}.{action}"),
        None => action.clone(),
    });
    metadata.original_event_uid = f.take("id");
    metadata.original_time = f.take("created_at");
    // The configured organization is the tenant; the record's own id only fills a gap or
    // confirms it (a different one stays visible in `unmapped`).
    let organization = f.get("organization_id");
    if metadata.tenant_uid.is_none() || metadata.tenant_uid == organization {
        metadata.tenant_uid = metadata.tenant_uid.or(f.take("organization_id"));
    }

    let common =
        Common { actor: actor(&mut f), src_endpoint: src_endpoint(record), http_request: http_request(record) };
    let entity_type = entity_type.unwrap_or_default();
    let verb = action.to_ascii_lowercase();
    let (target, severity) = row(&entity_type, &verb);
    let mark = f.placed.len();
    let class = match &target {
        Target::Account(activity) => account(&mut f, activity, &common),
        Target::Department(activity) => department(&mut f, activity, &common),
        Target::Membership(activity) => membership(&mut f, activity, &common),
        Target::Grant(what, assign) => grant(&mut f, *what, *assign, metadata.tenant_uid.clone(), &common),
        Target::Entity => None,
    };
    let class = class.unwrap_or_else(|| {
        f.placed.truncate(mark); // the abandoned class placed nothing
        entity(&mut f, &entity_type, entity_activity(&verb), &common)
    });

    Ok(EventParts {
        class,
        severity,
        time: ctx.time_ms(),
        metadata,
        // An entry exists only for a change that took place (MAPPING §4.3 example).
        status: Some(Status::Success),
        status_code: None,
        status_detail: None,
        message: None,
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(f.unmapped()),
    })
}

/// The attributes every IAM class carries the same way.
struct Common {
    actor: Option<Actor>,
    src_endpoint: Option<NetworkEndpoint>,
    http_request: Option<HttpRequest>,
}

/// `actor.user` from `actor_id` / `actor_name` / `actor_email`; none when nobody is identified.
fn actor(f: &mut Fields<'_>) -> Option<Actor> {
    let email_addr = email(f.get("actor_email"));
    let (uid, name) = (f.take("actor_id"), f.take("actor_name").or(email_addr.clone()));
    if email_addr.is_some() {
        f.take("actor_email");
    }
    let user = Some(User { uid, name, email_addr, ..User::default() }).filter(User::is_identified)?;
    Some(Actor { user: Some(user), app_name: None, app_uid: None })
}

/// A context value from the free-form `metadata` object, or the top level (older API shape).
fn context_text(record: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    let metadata = record.get("metadata").and_then(Value::as_object);
    keys.iter().find_map(|k| metadata.and_then(|m| text(m, k)).or_else(|| text(record, k)))
}

/// `src_endpoint.ip`: not documented for this endpoint, but the older audit-logs API had
/// `metadata.ipAddress` and the sample has `metadata.ip_address` (MAPPING §4.3).
fn src_endpoint(record: &Map<String, Value>) -> Option<NetworkEndpoint> {
    let ip = ip(context_text(record, &["ip_address", "ipAddress"]))?;
    Some(NetworkEndpoint { ip: Some(ip), ..NetworkEndpoint::default() })
}

fn http_request(record: &Map<String, Value>) -> Option<HttpRequest> {
    let user_agent = context_text(record, &["user_agent", "userAgent"])?;
    Some(HttpRequest { user_agent: Some(user_agent), ..HttpRequest::default() })
}

/// An identified user from an id/name pair of fields, placing them; `None` places nothing.
fn user_from(f: &mut Fields<'_>, id: &'static str, name: &'static str) -> Option<User> {
    f.get(id).or(f.get(name))?;
    Some(User { uid: f.take(id), name: f.take(name), ..User::default() })
}

/// A department as an OCSF group; `department_id` is placed when it names the same one.
fn department_group(f: &mut Fields<'_>, uid: Option<String>, name: Option<String>) -> Option<Group> {
    if uid.is_some() && uid == f.get("department_id") {
        f.take("department_id");
    }
    (uid.is_some() || name.is_some()).then(|| Group { uid, name, kind: Some("department".into()), privileges: None })
}

/// 3001: the target user is the target fields, else the entity (a `user` entity is the account).
fn account(f: &mut Fields<'_>, activity: &AccountChangeId, c: &Common) -> Option<Class> {
    let mut user = match user_from(f, "target_id", "target_name") {
        Some(user) => {
            if user.name.is_some() && user.name == f.get("entity_name") {
                f.take("entity_name"); // the `user` entity is the same account
            }
            user
        }
        None => {
            let user = User { uid: f.get("entity_id"), name: f.get("entity_name"), ..User::default() };
            f.take("entity_name");
            Some(user).filter(User::is_identified)?
        }
    };
    let mut user_result = None;
    match activity {
        // An invitation's new value is the invitee's address (sample record 3).
        AccountChangeId::Create => {
            user.email_addr = email(f.plain("new_value"));
            if user.email_addr.is_some() {
                f.take("new_value");
            }
        }
        // `user_result` = the new values; both values also stay in `unmapped`, since only
        // the attributes OCSF knows are carried over.
        AccountChangeId::Other(_) => user_result = changed_user(&user, f.get("new_value")),
        _ => {}
    }
    Some(Class::AccountChange(AccountChange {
        activity: activity.clone(),
        user,
        user_result,
        actor: c.actor.clone(),
        src_endpoint: c.src_endpoint.clone(),
        http_request: c.http_request.clone(),
    }))
}

/// The account after an update: `new_value` as a JSON object (`name`, `full_name`, `email`) or a
/// bare e-mail address. `None` when nothing of it has an OCSF attribute.
fn changed_user(user: &User, new_value: Option<String>) -> Option<User> {
    let new_value = new_value?;
    let base = User { uid: user.uid.clone(), name: user.name.clone(), ..User::default() };
    let mut after = base.clone();
    match serde_json::from_str::<Value>(&new_value) {
        Ok(Value::Object(o)) => {
            after.name = text(&o, "name").or(after.name);
            after.full_name = text(&o, "full_name");
            after.email_addr = email(text(&o, "email"));
        }
        _ => after.email_addr = email(Some(new_value)),
    }
    (after != base).then_some(after)
}

/// 3006 create/delete: the entity is the department.
fn department(f: &mut Fields<'_>, activity: &GroupManagementId, c: &Common) -> Option<Class> {
    let (uid, name) = (f.get("entity_id").or(f.get("department_id")), f.get("entity_name"));
    let group = department_group(f, uid, name)?;
    f.take("entity_name");
    Some(group_management(activity.clone(), group, None, None, c))
}

/// 3006 add/remove user: the group is the department (`department_id`, else the entity), the
/// user the target.
fn membership(f: &mut Fields<'_>, activity: &GroupManagementId, c: &Common) -> Option<Class> {
    let (uid, name) = (f.get("department_id").or(f.get("entity_id")), f.get("entity_name"));
    let group = department_group(f, uid, name)?;
    f.take("entity_name");
    let user = user_from(f, "target_id", "target_name");
    Some(group_management(activity.clone(), group, user, None, c))
}

fn group_management(
    activity: GroupManagementId,
    group: Group,
    user: Option<User>,
    privileges: Option<Vec<String>>,
    c: &Common,
) -> Class {
    Class::GroupManagement(GroupManagement {
        activity,
        group,
        user,
        privileges,
        actor: c.actor.clone(),
        src_endpoint: c.src_endpoint.clone(),
        http_request: c.http_request.clone(),
    })
}

/// Whether an id names a department: `DEPT_…` in the README, `dep_…` in MAPPING's example.
fn is_department_id(id: &str) -> bool {
    id.split_once('_')
        .is_some_and(|(prefix, _)| prefix.eq_ignore_ascii_case("dept") || prefix.eq_ignore_ascii_case("dep"))
}

/// Who receives or loses the grant.
enum Grantee {
    User(User),
    Department(Group),
}

/// The grantee is the target: a department when its id says so (or equals `department_id`, or
/// `metadata.target_type` says `department`), else a user. With no target, `department_id`
/// alone names a department grantee. Neither: unknown (3004).
fn grantee(f: &mut Fields<'_>) -> Option<Grantee> {
    let department_id = f.get("department_id");
    let target_id = f.get("target_id");
    if target_id.is_none() && f.get("target_name").is_none() {
        let uid = f.take("department_id");
        return department_group(f, uid, None).map(Grantee::Department);
    }
    let to_department =
        target_id.as_deref().is_some_and(|t| is_department_id(t) || Some(t) == department_id.as_deref())
            || context_text(f.record, &["target_type", "grantee_type"])
                .is_some_and(|t| t.eq_ignore_ascii_case("department"));
    if to_department {
        let (uid, name) = (f.take("target_id"), f.take("target_name"));
        department_group(f, uid, name).map(Grantee::Department)
    } else {
        user_from(f, "target_id", "target_name").map(Grantee::User)
    }
}

/// The privilege granted or revoked: a role or permission by its name (the entity's name, else
/// the new/previous value); a knowledge grant by its level (the new/previous value).
fn privilege(f: &mut Fields<'_>, what: Granted, assign: bool) -> Option<String> {
    let value_key = if assign { "new_value" } else { "previous_value" };
    let named = match what {
        Granted::Knowledge => None,
        Granted::Role | Granted::Permission => f.take("entity_name"),
    };
    let value = f.plain(value_key);
    if value.is_some() && (named.is_none() || named == value) {
        f.take(value_key);
    }
    named.or(value)
}

/// What a privilege applies to: a role or permission to the department it is scoped to, else
/// the organization; a knowledge grant to the knowledge object named by the entity.
fn resources(f: &mut Fields<'_>, what: Granted, organization: Option<String>) -> Option<Vec<ResourceDetails>> {
    let resource = |uid, name, kind: &str| ResourceDetails { uid, name, kind: Some(kind.into()), data: None };
    let scope = match what {
        Granted::Knowledge => {
            let (uid, name) = (f.get("entity_id"), f.take("entity_name"));
            (uid.is_some() || name.is_some()).then(|| resource(uid, name, "knowledge"))
        }
        Granted::Role | Granted::Permission => match f.take("department_id") {
            Some(department) => Some(resource(Some(department), None, "department")),
            None => organization.map(|org| resource(Some(org), None, "organization")),
        },
    };
    scope.map(|r| vec![r])
}

/// 3005 to a user, 3006 to a department; `None` when the grantee or the privilege is unknown.
fn grant(f: &mut Fields<'_>, what: Granted, assign: bool, org: Option<String>, c: &Common) -> Option<Class> {
    let grantee = grantee(f)?;
    let privileges = vec![privilege(f, what, assign)?];
    Some(match grantee {
        Grantee::User(user) => Class::UserAccess(UserAccess {
            activity: if assign { UserAccessId::AssignPrivileges } else { UserAccessId::RevokePrivileges },
            user,
            privileges,
            resources: resources(f, what, org),
            actor: c.actor.clone(),
            src_endpoint: c.src_endpoint.clone(),
            http_request: c.http_request.clone(),
        }),
        Grantee::Department(group) => {
            let activity =
                if assign { GroupManagementId::AssignPrivileges } else { GroupManagementId::RevokePrivileges };
            group_management(activity, group, None, Some(privileges), c)
        }
    })
}

/// 3004 on the record's entity. Its type: user (2), department as a group (3), organization
/// (4), else 99 with the vendor's `entity_type`. The values: `entity.data` holds the created
/// entity's new value or the previous value, `entity_result.data` the new value of a change.
fn entity(f: &mut Fields<'_>, entity_type: &str, activity: EntityManagementId, c: &Common) -> Class {
    let (uid, name) = (f.get("entity_id"), f.take("entity_name"));
    let kind = if entity_type.is_empty() { "unknown" } else { entity_type };
    let mut e = ManagedEntity { uid: uid.clone(), name: name.clone(), ..ManagedEntity::default() };
    let identified = uid.is_some() || name.is_some();
    match kind {
        "user" => {
            (e.type_id, e.kind) = (Some(2), Some("User".into()));
            e.user = identified.then(|| User { uid, name, ..User::default() });
        }
        "department" => {
            (e.type_id, e.kind) = (Some(3), Some("Group".into()));
            e.group = department_group(f, uid, name);
        }
        "organization" => (e.type_id, e.kind) = (Some(4), Some("Organization".into())),
        other => (e.type_id, e.kind) = (Some(99), Some(other.into())),
    }
    if !identified {
        // Last resort so the required entity is never empty: the object by its type alone.
        e.name = Some(kind.into());
    }
    let mut result = None;
    match activity {
        EntityManagementId::Create => e.data = f.take_value("new_value"),
        EntityManagementId::Delete => e.data = f.take_value("previous_value"),
        _ => {
            result = f.take_value("new_value").map(|data| ManagedEntity { data: Some(data), ..e.clone() });
            e.data = f.take_value("previous_value");
        }
    }
    Class::EntityManagement(EntityManagement {
        activity,
        entity: e,
        entity_result: result,
        actor: c.actor.clone(),
        src_endpoint: c.src_endpoint.clone(),
        http_request: c.http_request.clone(),
        comment: None,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use serde_json::value::RawValue;

    use super::*;
    use crate::ocsf::event::Event;

    const SAMPLES: &str = include_str!("fixtures/records.json");
    const USER: &str = "usr_6Tz1RcM8vN3kL9wQ";
    const DEPT: &str = "DEPT_5C8E1A9F3B7D2K4M";

    /// Maps a record as the pipeline does (the tenant from configuration, the time the source
    /// parsed) and checks what every event must satisfy.
    fn event(record: &Map<String, Value>, raw: &str) -> Value {
        let time = text(record, "created_at").and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
        let time = time.map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
        let key = text(record, "id").unwrap_or_default();
        let ctx = Context { organization: "ORG_7F3KQ9ZP2M4XW8RT", dedupe_key: &key, time, raw, log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
        let json = serde_json::to_value(Event::new(map(record, &ctx).unwrap())).unwrap();
        crate::ocsf::schema_check::assert_valid(&json);
        crate::ocsf::event_checks::assert_complete(&json, &["event_code", "original_event_uid"]);
        json
    }

    fn samples() -> Vec<(Map<String, Value>, String)> {
        let raws: Vec<&RawValue> = serde_json::from_str(SAMPLES).unwrap();
        raws.into_iter().map(|r| (serde_json::from_str(r.get()).unwrap(), r.get().to_owned())).collect()
    }

    /// A record of one row: sample record 1 (`role_assignment.assigned`) with the entity, target
    /// and values of that entity type ("" for null), then `patch`. Creating has no previous
    /// value; revoking or deleting leaves the value as the previous one.
    fn record(entity_type: &str, action: &str, patch: &Value) -> Map<String, Value> {
        let (marco, dept) = ("usr_3Kd9WfB6yQ2hJ5nP", DEPT);
        let fields = match entity_type {
            "user" => [USER, "Noah Keller", USER, "Noah Keller", "", "", ""],
            "department" => [dept, "Data Platform", "", "", dept, "DEPT_1A2B3C4D5E6F", "DEPT_9Z8Y7X6W5V4U"],
            "department_membership" => [dept, "Data Platform", marco, "Marco Bianchi", dept, "", ""],
            "role" => ["role_billing", "Billing Admin", "", "", "", r#"["billing.read"]"#, r#"["billing.*"]"#],
            "role_assignment" => {
                ["ra_4N8qT2vK7wX1zB5m", "Org Admin", marco, "Marco Bianchi", "", "Member", "Org Admin"]
            }
            "permission" => ["perm_kn_write", "knowledge.write", marco, "Marco Bianchi", "", "", ""],
            "knowledge_grant" => ["ks_4Hb8Qw2Lm6", "Sales Playbook", marco, "Marco Bianchi", "", "", "read"],
            _ => ["kn_8Kq2", "Support Docs", "", "", "", r#"{"name":"Support"}"#, r#"{"name":"Support Docs"}"#],
        };
        let keys =
            ["entity_id", "entity_name", "target_id", "target_name", "department_id", "previous_value", "new_value"];
        let mut r = samples().swap_remove(0).0;
        for (key, value) in keys.into_iter().zip(fields) {
            r.insert(key.into(), if value.is_empty() { Value::Null } else { value.into() });
        }
        r.insert("id".into(), format!("ale_{entity_type}.{action}").into());
        r.insert("entity_type".into(), entity_type.into());
        r.insert("action_type".into(), action.into());
        if action == "created" {
            r.insert("previous_value".into(), Value::Null);
        }
        if ["unassigned", "deleted", "removed", "membership_removed"].contains(&action) {
            let new = r.insert("new_value".into(), Value::Null).unwrap_or_default();
            r.insert("previous_value".into(), new);
        }
        r.extend(patch.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
        r
    }

    /// Every row of MAPPING §4.3, the grantee variants and the fallbacks, by snapshot name.
    fn cases() -> Vec<(String, Map<String, Value>)> {
        let department = json!({"target_id": DEPT, "target_name": "Data Platform", "department_id": DEPT});
        let nobody = json!({"target_id": null, "target_name": null, "department_id": null});
        let no_identity = json!({"target_id": null, "target_name": null, "entity_id": null, "entity_name": null});
        let updated = json!({"previous_value": r#"{"name":"Noah Keller"}"#,
            "new_value": r#"{"name":"Noah K.","email":"noah.k@example.ch"}"#});
        let rows: Vec<(&str, &[&str], &str, Value)> = vec![
            ("user", &["created", "reactivated", "deleted", "removed", "password_reset"], "", json!({})),
            ("user", &["invited"], "", json!({"new_value": "noah.keller@example.ch"})),
            ("user", &["updated"], "", updated),
            ("user", &["deactivated"], "", json!({"previous_value": "active", "new_value": "inactive"})),
            ("user", &["deactivated"], "no_identity", no_identity),
            ("department", &["created", "deleted"], "", json!({"new_value": r#"{"name":"Data Platform"}"#})),
            ("department", &["updated", "reparented"], "", json!({})),
            ("department_membership", &["membership_added", "created", "assigned"], "", json!({})),
            ("department_membership", &["membership_removed", "deleted", "removed", "unassigned"], "", json!({})),
            ("role", &["created", "updated", "deleted"], "", json!({})),
            ("role_assignment", &["assigned", "created", "unassigned", "deleted", "removed"], "", json!({})),
            ("role_assignment", &["assigned", "unassigned"], "department", department.clone()),
            ("role_assignment", &["assigned"], "no_grantee", nobody.clone()),
            ("permission", &["assigned", "created", "unassigned", "deleted", "removed", "updated"], "", json!({})),
            ("permission", &["assigned", "unassigned"], "department", department.clone()),
            ("permission", &["assigned", "unassigned"], "no_grantee", nobody),
            ("knowledge_grant", &["assigned", "created", "unassigned", "deleted", "removed"], "", json!({})),
            ("knowledge_grant", &["assigned", "unassigned"], "department", department),
            ("knowledge_grant", &["assigned"], "no_level", json!({"new_value": null})),
            ("knowledge_slice", &["created", "updated", "deleted", "reparented"], "", json!({})),
            ("vector_store", &["created", "updated", "deleted", "reparented"], "", json!({})),
            ("knowledge_composite", &["created", "updated", "deleted", "reparented"], "", json!({})),
            (
                "api_key",
                &["created", "updated", "deleted", "reparented", "reactivated", "deactivated", "rotated"],
                "",
                json!({}),
            ),
        ];
        let mut cases = Vec::new();
        for (entity_type, actions, variant, patch) in rows {
            for action in actions {
                let name = [entity_type, *action, variant].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>();
                cases.push((name.join("."), record(entity_type, action, &patch)));
            }
        }
        cases
    }

    #[test]
    fn test_every_row_matches_its_snapshot() {
        for (name, record) in cases() {
            let raw = serde_json::to_string(&record).unwrap();
            insta::assert_json_snapshot!(name.as_str(), event(&record, &raw));
        }
    }

    #[test]
    fn test_sample_records_match_their_snapshots() {
        for (i, (record, raw)) in samples().iter().enumerate() {
            insta::assert_json_snapshot!(format!("sample_{}", i + 1).as_str(), event(record, raw));
        }
    }

    #[test]
    fn test_every_event_is_complete_and_has_no_null() {
        let records = cases().into_iter().map(|(_, r)| r).chain(samples().into_iter().map(|(r, _)| r));
        for record in records {
            let json = event(&record, &serde_json::to_string(&record).unwrap());
            assert_eq!(
                json["metadata"]["event_code"],
                format!("{}.{}", record["entity_type"].as_str().unwrap(), record["action_type"].as_str().unwrap())
            );
        }
    }

    #[test]
    fn test_required_targets_fall_back_to_entity_management() {
        let class = |name: &str| {
            let (_, record) = cases().into_iter().find(|(n, _)| n == name).unwrap();
            let json = event(&record, "{}");
            (json["class_uid"].as_u64().unwrap(), json["activity_id"].as_u64().unwrap())
        };
        assert_eq!(class("user.deactivated.no_identity"), (3004, 11));
        assert_eq!(class("permission.assigned.no_grantee"), (3004, 1));
        assert_eq!(class("permission.unassigned.no_grantee"), (3004, 4));
        assert_eq!(class("knowledge_grant.assigned.no_level"), (3004, 1));
        assert_eq!(class("role_assignment.assigned.department"), (3006, 1));
        assert_eq!(class("api_key.rotated"), (3004, 99));
    }

    #[test]
    fn test_a_record_without_action_type_is_unmappable() {
        let mut record = samples().swap_remove(0).0;
        record.remove("action_type");
        let ctx = Context { organization: "o", dedupe_key: "k", time: DateTime::<Utc>::UNIX_EPOCH, raw: "{}", log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
        assert!(map(&record, &ctx).is_err());
        record.insert("action_type".into(), "archived".into());
        record.remove("entity_type");
        let json = event(&record, "{}");
        assert_eq!(
            (json["type_uid"].as_u64(), json["metadata"]["event_code"].as_str()),
            (Some(300499), Some("archived"))
        );
    }
}
