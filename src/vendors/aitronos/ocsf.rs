//! Aitronos audit-log entry → OCSF 1.8.0 event (`ocsf/MAPPING.md` §4.3, revised by §5a).
//!
//! Input: one item of `GET /v1/organizations/{organization_id}/audit-log` (vendors README §4.5;
//! the JSON field names are partly assumed, MAPPING §7). The class is chosen by
//! (`entity_type`, `action_type`) in one table, [`row`]; the rest of this file fills the chosen
//! class's objects from the record. Unknown pairs never fail: they become 3004 Entity Management
//! with the activity taken from the verb. A row whose required target cannot be identified (3001
//! without the target user, 3005/3006 without any grantee, 3006 without the department) degrades
//! to 3004 on the record's entity (MAPPING §3 rule 7). A grant or revocation whose value is null
//! keeps its class: the privilege is then the entity's name, else its type (§5a rule 1).
//!
//! Identity (§5a rule 7): `actor_name` / `target_name` / a user entity's name are display names
//! (`full_name`); `user.name` is the account, the e-mail address where the record has one (a
//! display name only when nothing else identifies the user); `actor.user` is typed: a person
//! (User), an API key (Service) or the vendor's automation (System, named "Aitronos").
//!
//! Severity (§5a, one table for all vendors): [`signal`] names the kind of security action, and
//! [`Signal::severity`] gives its level; anything else is Informational.
//!
//! Placement (§5a rule 9): `entity_type` is in `metadata.event_code` (and the entity's or a
//! resource's type); `entity_id` goes to the entity, the group, the user or `resources[]` when it
//! names one of them; the free-form `metadata` object's address and user agent go to
//! `src_endpoint` / `http_request`, and only the rest of it stays in `unmapped` (as JSON text).
//!
//! Not here: the severity override (applied by the caller, keyed on `metadata.event_code`), the
//! event uid and loggers ([`Context::metadata`]), observables, schema validation.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Class, EntityManagement, EntityManagementId, EventParts, Group,
    GroupManagement, GroupManagementId, HttpRequest, ManagedEntity, NetworkEndpoint, ResourceDetails, Severity, Status,
    User, UserAccess, UserAccessId, UserType,
};
use crate::ocsf::{Context, Fields, Signal, Unmappable, as_text, email, is_admin_privilege, text};

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
    /// A role assignment changed to another role: the new role (`new_value`) is what is given.
    RoleChange,
    Permission,
    Knowledge,
}

/// MAPPING §4.3 row by row (with §5a), the class of one (entity_type, action_type) pair:
///
/// | entity_type | action_type | class / activity |
/// | --- | --- | --- |
/// | `user` | created, invited | 3001 / 1 Create |
/// | `user` | updated | 3001 / 99 (`updated`, `user_result`) |
/// | `user` | reactivated, activated, enabled | 3001 / 2 Enable |
/// | `user` | password changed / updated | 3001 / 3 Password Change |
/// | `user` | password reset | 3001 / 4 Password Reset |
/// | `user` | deactivated, disabled, suspended | 3001 / 5 Disable |
/// | `user` | deleted, removed | 3001 / 6 Delete |
/// | `user` | locked (blocked) | 3001 / 9 Lock |
/// | `user` | MFA / 2FA / two-factor enabled, enrolled | 3001 / 10 MFA Factor Enable |
/// | `user` | MFA / 2FA / two-factor disabled, removed, reset | 3001 / 11 MFA Factor Disable |
/// | `user` | unlocked (unblocked) | 3001 / 12 Unlock |
/// | `department` | created / deleted | 3006 / 6 Create, 5 Delete |
/// | `department_membership` | membership_added, created, assigned | 3006 / 3 Add User |
/// | `department_membership` | membership_removed, deleted, removed, unassigned | 3006 / 4 Remove User |
/// | a grant¹ | assigned, created, granted, added | 3005 / 1 Assign Privileges (to a department 3006 / 1) |
/// | a grant¹ | unassigned, deleted, removed, revoked | 3005 / 2 Revoke Privileges (department 3006 / 2) |
/// | `role_assignment` | updated, changed | 3005 / 1 Assign Privileges: the new role (`new_value`) |
/// | any other pair² | by verb | 3004 ([`entity_activity`]) |
///
/// ¹ `role_assignment`, `permission`, `knowledge_grant`, whatever their values say (§5a rule 1).
/// ² department updated / reparented, role, permission updated, knowledge objects, `api_key`, ….
///
/// A 3001 row without any identity of the user, or a grant row without any grantee, is 3004 on
/// the entity. Judgement calls live here and only here (MAPPING §7).
fn row(entity_type: &str, verb: &str) -> Target {
    use GroupManagementId as Gm;
    let granted = match entity_type {
        "role_assignment" => Granted::Role,
        "permission" => Granted::Permission,
        _ => Granted::Knowledge,
    };
    match (entity_type, verb) {
        ("user", _) => account_verb(verb).map_or(Target::Entity, Target::Account),
        ("department", "created") => Target::Department(Gm::Create),
        ("department", "deleted") => Target::Department(Gm::Delete),
        ("department_membership", "membership_added" | "created" | "assigned") => Target::Membership(Gm::AddUser),
        ("department_membership", "membership_removed" | "deleted" | "removed" | "unassigned") => {
            Target::Membership(Gm::RemoveUser)
        }
        // Grant verbs in any case or separator style (`Revoked`, `un-assigned`), like account verbs.
        ("role_assignment" | "permission" | "knowledge_grant", _) => match squashed(verb).as_str() {
            "assigned" | "created" | "granted" | "added" => Target::Grant(granted, true),
            "unassigned" | "deleted" | "removed" | "revoked" => Target::Grant(granted, false),
            // A user's role changed (`Member` → `Org Admin`): the new role is assigned.
            "updated" | "changed" if granted == Granted::Role => Target::Grant(Granted::RoleChange, true),
            _ => Target::Entity,
        },
        // department updated (entity.group) and reparented (Move); role created/updated/deleted;
        // permission updated; knowledge_slice / vector_store / knowledge_composite; any other.
        _ => Target::Entity,
    }
}

/// A verb with case and separators dropped: `Password-Reset`, `password_reset` → `passwordreset`.
fn squashed(verb: &str) -> String {
    verb.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether a squashed verb is about a second factor (`mfa_…`, `2fa_…`, `two_factor_…`, `totp_…`).
fn is_mfa(v: &str) -> bool {
    ["mfa", "2fa", "twofactor", "multifactor", "secondfactor", "totp"].iter().any(|w| v.contains(w))
}

/// The 3001 activity of a `user` entry's verb (MAPPING §4.3 user rows and §5a rule 2), in the
/// spellings a vendor may use (`password_reset`, `PasswordReset`, `2fa-enabled`,
/// `two_factor_disabled`); `None` for a verb that is no account change.
fn account_verb(verb: &str) -> Option<AccountChangeId> {
    use AccountChangeId as Ac;
    let v = squashed(verb);
    let has = |w: &str| v.contains(w);
    // A request, reminder or notice about a change is not the change (`password_reset_requested`,
    // `mfa_enrollment_reminder_sent`): no account change, the entry stays 3004 by its verb.
    if ["request", "remind", "notif", "sent", "expir", "attempt"].iter().any(|w| has(w)) {
        return None;
    }
    if is_mfa(&v) {
        if has("disabl") || has("deactivat") || has("remov") || has("delet") || has("unenrol") || has("reset") {
            return Some(Ac::MfaFactorDisable);
        }
        if has("enabl") || has("activat") || has("enrol") || has("added") || has("setup") {
            return Some(Ac::MfaFactorEnable);
        }
        return None;
    }
    if has("password") || has("passwd") {
        if has("reset") {
            return Some(Ac::PasswordReset);
        }
        if has("chang") || has("updat") || has("set") || has("rotat") {
            return Some(Ac::PasswordChange);
        }
        return None;
    }
    if has("unlock") || has("unblock") {
        return Some(Ac::Unlock);
    }
    // locked, lockedout, accountlocked, blocked — not any word ending in "lock" (`clock_synced`).
    if v.starts_with("lock") || v.starts_with("block") || v.ends_with("locked") && !v.ends_with("clocked") {
        return Some(Ac::Lock);
    }
    Some(match v.as_str() {
        "created" | "invited" => Ac::Create,
        "reactivated" | "activated" | "enabled" | "unsuspended" => Ac::Enable,
        "deactivated" | "disabled" | "suspended" => Ac::Disable,
        "deleted" | "removed" => Ac::Delete,
        "updated" => Ac::Other(verb.to_owned()),
        _ => return None,
    })
}

/// The 3004 activity by verb: the fallback row's 1 / 3 / 4 / 5 / 8 / 9 / 10 / 11, else 99 with
/// the verb. The grant and membership verbs count as create/delete, as the `permission` rows
/// say for a grant whose grantee is unknown.
fn entity_activity(verb: &str) -> EntityManagementId {
    match verb {
        "created" | "invited" | "assigned" | "membership_added" => EntityManagementId::Create,
        "updated" => EntityManagementId::Update,
        "deleted" | "removed" | "unassigned" | "membership_removed" | "revoked" => EntityManagementId::Delete,
        "reparented" => EntityManagementId::Move,
        "enabled" => EntityManagementId::Enable,
        "disabled" => EntityManagementId::Disable,
        "reactivated" => EntityManagementId::Activate,
        "deactivated" => EntityManagementId::Deactivate,
        other => EntityManagementId::Other(other.to_owned()),
    }
}

/// Entity types that are a credential (MAPPING §5a: API keys are normalized like the other
/// vendors' key events).
fn is_credential(entity_type: &str) -> bool {
    matches!(entity_type, "api_key" | "api_token" | "access_token" | "service_token")
}

/// The kind of security action of the entry, for its default severity (one table for every
/// vendor, [`Signal`]); `None` is Informational. `privilege` is the grant's privilege.
fn signal(entity_type: &str, verb: &str, target: &Target, privilege: Option<&str>) -> Option<Signal> {
    use AccountChangeId as Ac;
    let admin = privilege.is_some_and(is_admin_privilege);
    match target {
        Target::Grant(_, true) => Some(if admin { Signal::AdminGranted } else { Signal::PrivilegeGranted }),
        Target::Grant(_, false) => Some(if admin { Signal::AdminRevoked } else { Signal::PrivilegeRevoked }),
        Target::Account(activity) => match activity {
            Ac::Disable | Ac::Delete | Ac::Lock => Some(Signal::AccountDisabled),
            Ac::PasswordReset => Some(Signal::PasswordReset),
            Ac::MfaFactorDisable => Some(Signal::MfaDisabled),
            Ac::MfaFactorEnable => Some(Signal::MfaEnabled),
            _ => None,
        },
        Target::Entity if is_credential(entity_type) => match verb {
            "created" | "generated" | "issued" | "reactivated" => Some(Signal::CredentialCreated),
            "rotated" | "regenerated" | "rolled" => Some(Signal::CredentialRotated),
            "deleted" | "removed" | "revoked" | "deactivated" | "expired" => Some(Signal::CredentialDeleted),
            _ => None,
        },
        // A role's or permission's definition changed: what every holder may do changed.
        Target::Entity if matches!(entity_type, "role" | "permission") && verb == "updated" => {
            Some(Signal::RoleChanged)
        }
        // MFA turned on or off for something other than one account (the organization).
        Target::Entity if is_mfa(&squashed(verb)) => match account_verb(verb) {
            Some(Ac::MfaFactorDisable) => Some(Signal::MfaDisabled),
            Some(Ac::MfaFactorEnable) => Some(Signal::MfaEnabled),
            _ => None,
        },
        _ => None,
    }
}

/// Maps one Aitronos audit entry. Fails only when the record has no `action_type` at all.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let Some(action) = text(record, "action_type") else {
        return Err(Unmappable("Aitronos audit entry without action_type".into()));
    };
    let mut f = Fields::new(record, "action_type");
    // Part of the event code (and of the entity's or a resource's type below).
    let entity_type = f.take("entity_type");

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

    let mut context = ContextObject::new(record);
    let common = Common {
        actor: actor(&mut f, &mut context),
        src_endpoint: src_endpoint(&mut f, &mut context),
        http_request: http_request(&mut f, &mut context),
    };
    let entity_type = entity_type.unwrap_or_default();
    let verb = action.to_ascii_lowercase();
    let target = row(&entity_type, &verb);
    let privilege = match &target {
        Target::Grant(what, assign) => Some(privilege(&f, *what, *assign, &entity_type).0),
        _ => None,
    };
    let severity =
        signal(&entity_type, &verb, &target, privilege.as_deref()).map_or(Severity::Informational, Signal::severity);
    let mark = f.placed.len();
    let class = match &target {
        Target::Account(activity) => account(&mut f, activity, &common),
        Target::Department(activity) => department(&mut f, activity, &common),
        Target::Membership(activity) => membership(&mut f, activity, &common),
        Target::Grant(what, assign) => {
            grant(&mut f, *what, *assign, &entity_type, metadata.tenant_uid.clone(), &common)
        }
        Target::Entity => None,
    };
    let class = class.unwrap_or_else(|| {
        f.placed.truncate(mark); // the abandoned class placed nothing
        entity(&mut f, &entity_type, entity_activity(&verb), &common)
    });

    let mut unmapped = f.unmapped();
    context.rest(&mut unmapped);
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
        unmapped: Some(unmapped),
    })
}

/// The attributes every IAM class carries the same way.
struct Common {
    actor: Option<Actor>,
    src_endpoint: Option<NetworkEndpoint>,
    http_request: Option<HttpRequest>,
}

/// The free-form `metadata` object (README §4.5), read key by key: the keys given an OCSF home
/// leave it, and only the rest of it stays in `unmapped.metadata` (as JSON text).
struct ContextObject<'a> {
    object: Option<&'a Map<String, Value>>,
    placed: Vec<&'static str>,
}

impl<'a> ContextObject<'a> {
    fn new(record: &'a Map<String, Value>) -> Self {
        ContextObject { object: record.get("metadata").and_then(Value::as_object), placed: Vec::new() }
    }

    /// The first of `keys` in the `metadata` object, else at the top level (the older API
    /// shape); not placed.
    fn get(&self, f: &Fields<'_>, keys: &[&'static str]) -> Option<(&'static str, bool, String)> {
        keys.iter().find_map(|k| {
            let nested = self.object.and_then(|m| text(m, k)).map(|v| (*k, true, v));
            nested.or_else(|| f.get(k).map(|v| (*k, false, v)))
        })
    }

    /// Marks a value [`ContextObject::get`] found as placed.
    fn place(&mut self, f: &mut Fields<'_>, (key, nested, _): &(&'static str, bool, String)) {
        if *nested {
            self.placed.push(key);
        } else {
            f.place(key);
        }
    }

    /// The first of `keys`, placed.
    fn take(&mut self, f: &mut Fields<'_>, keys: &[&'static str]) -> Option<String> {
        let found = self.get(f, keys)?;
        self.place(f, &found);
        Some(found.2)
    }

    /// Puts what is left of the `metadata` object in `unmapped` in place of the whole object
    /// (nothing when all of it was placed). Any other `metadata` value stays as it is.
    fn rest(&self, unmapped: &mut crate::ocsf::event::Unmapped) {
        let Some(object) = self.object else { return };
        unmapped.remove("metadata");
        let rest: Map<String, Value> = object
            .iter()
            .filter(|(k, v)| !self.placed.contains(&k.as_str()) && !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !rest.is_empty() {
            unmapped.insert("metadata".into(), as_text(&Value::Object(rest)).unwrap_or_default());
        }
    }
}

/// What kind of subject the actor is: declared by `actor_type` (top level or in `metadata`),
/// else read from the actor id (`ak_…`/`key_…` an API key, `system`/`sys_…` the platform) or a
/// name that is the platform's; a person otherwise.
fn actor_kind(f: &mut Fields<'_>, context: &mut ContextObject<'_>) -> UserType {
    if let Some(declared) = context.take(f, &["actor_type"]) {
        return match squashed(&declared).as_str() {
            "user" | "person" | "member" | "human" => UserType::User,
            "admin" | "administrator" | "owner" => UserType::Admin,
            "apikey" | "apitoken" | "token" | "service" | "serviceaccount" | "integration" | "bot" => UserType::Service,
            "system" | "automation" | "scheduler" | "platform" => UserType::System,
            _ => UserType::Other(declared),
        };
    }
    let id = f.get("actor_id").unwrap_or_default().to_ascii_lowercase();
    let name = f.get("actor_name").unwrap_or_default().to_ascii_lowercase();
    let prefix = id.split_once('_').map_or("", |(p, _)| p);
    if ["ak", "key", "apikey", "sk", "svc", "sa"].contains(&prefix) || id.starts_with("api_key") {
        UserType::Service
    } else if ["system", "aitronos"].contains(&id.as_str())
        || prefix == "sys"
        || (id.is_empty() && ["system", "aitronos"].contains(&name.as_str()))
    {
        UserType::System
    } else {
        UserType::User
    }
}

/// `actor.user` from `actor_id` / `actor_name` / `actor_email`, typed; none when nobody is
/// identified. A person's account name is the e-mail address and `actor_name` is the display
/// name (`full_name`); an API key or the platform is named by its label (the system by default
/// as "Aitronos").
fn actor(f: &mut Fields<'_>, context: &mut ContextObject<'_>) -> Option<Actor> {
    let kind = actor_kind(f, context);
    let email_addr = email(f.get("actor_email"));
    if email_addr.is_some() {
        f.take("actor_email");
    }
    let (uid, label) = (f.take("actor_id"), f.take("actor_name"));
    let mut user = User { uid, email_addr: email_addr.clone(), ..User::default() };
    match kind {
        UserType::Service => user.name = label.or(email_addr),
        UserType::System => user.name = label.or(email_addr).or(Some(PRODUCT.into())),
        _ => person(&mut user, email_addr, label),
    }
    let user = Some(user).filter(User::is_identified)?.typed(kind);
    Some(Actor { user: Some(user), app_name: None, app_uid: None })
}

/// A person's names: the account (an e-mail address) as `name`, the display name as
/// `full_name`, and the display name as `name` too only when nothing else identifies them.
fn person(user: &mut User, account: Option<String>, display: Option<String>) {
    user.name = account;
    user.full_name = display;
    if !user.is_identified() {
        user.name = user.full_name.clone();
    }
}

/// `src_endpoint.ip`: not documented for this endpoint, but the older audit-logs API had
/// `metadata.ipAddress` and the sample has `metadata.ip_address` (MAPPING §4.3). The first
/// address of a list; a value that is no address is kept as the endpoint's name.
fn src_endpoint(f: &mut Fields<'_>, context: &mut ContextObject<'_>) -> Option<NetworkEndpoint> {
    let raw = context.take(f, &["ip_address", "ipAddress"])?;
    Some(crate::ocsf::endpoint(&raw))
}

fn http_request(f: &mut Fields<'_>, context: &mut ContextObject<'_>) -> Option<HttpRequest> {
    let user_agent = context.take(f, &["user_agent", "userAgent"])?;
    Some(HttpRequest { user_agent: Some(user_agent), ..HttpRequest::default() })
}

/// A target account (a `user` entity, a member, a grantee that is no department): a person,
/// typed User, by its id and display name (`full_name`; `name` too only when there is no id).
fn target_user(uid: Option<String>, display: Option<String>) -> User {
    let mut user = User { uid, ..User::default() };
    person(&mut user, None, display);
    user.typed(UserType::User)
}

/// An identified target account from an id / display-name pair of fields, placing them; `None`
/// places nothing.
fn user_from(f: &mut Fields<'_>, id: &'static str, name: &'static str) -> Option<User> {
    f.get(id).or(f.get(name))?;
    Some(target_user(f.take(id), f.take(name)))
}

/// A department as an OCSF group; `department_id` is placed when it names the same one.
fn department_group(f: &mut Fields<'_>, uid: Option<String>, name: Option<String>) -> Option<Group> {
    if uid.is_some() && uid == f.get("department_id") {
        f.take("department_id");
    }
    (uid.is_some() || name.is_some()).then(|| Group { uid, name, kind: Some("department".into()), privileges: None })
}

/// Places `entity_id` when it is the given uid (the entity is the object the event names).
fn place_entity_id(f: &mut Fields<'_>, uid: Option<&str>) {
    if uid.is_some() && f.get("entity_id").as_deref() == uid {
        f.take("entity_id");
    }
}

/// 3001: the target user is the target fields, else the entity (a `user` entity is the account).
fn account(f: &mut Fields<'_>, activity: &AccountChangeId, c: &Common) -> Option<Class> {
    let mut user = match user_from(f, "target_id", "target_name") {
        Some(user) => {
            if user.full_name.is_some() && user.full_name == f.get("entity_name") {
                f.take("entity_name"); // the `user` entity is the same account
            }
            user
        }
        None => {
            let user = target_user(f.get("entity_id"), f.get("entity_name"));
            f.take("entity_name");
            Some(user).filter(User::is_identified)?
        }
    };
    place_entity_id(f, user.uid.as_deref());
    let mut user_result = None;
    match activity {
        // An invitation's new value is the invitee's address (sample record 3): the account.
        AccountChangeId::Create => {
            user.email_addr = email(f.plain("new_value"));
            if user.email_addr.is_some() {
                user.name = user.email_addr.clone();
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

/// The account after an update: `new_value` as a JSON object (`username`, `email`, and the
/// display name as `name` or `full_name`) or a bare e-mail address. `None` when nothing of it
/// has an OCSF attribute.
fn changed_user(user: &User, new_value: Option<String>) -> Option<User> {
    let new_value = new_value?;
    let base = target_user(user.uid.clone(), None);
    let mut after = base.clone();
    match serde_json::from_str::<Value>(&new_value) {
        Ok(Value::Object(o)) => {
            after.email_addr = email(text(&o, "email").or(text(&o, "email_addr")));
            after.full_name = text(&o, "full_name").or(text(&o, "name")).or(text(&o, "display_name"));
            after.name = text(&o, "username").or(after.email_addr.clone());
        }
        _ => {
            after.email_addr = email(Some(new_value));
            after.name = after.email_addr.clone();
        }
    }
    if !after.is_identified() {
        after.name = after.full_name.clone(); // no uid nor account: the display name names it
    }
    (after != base && after.is_identified()).then_some(after)
}

/// 3006 create/delete: the entity is the department.
fn department(f: &mut Fields<'_>, activity: &GroupManagementId, c: &Common) -> Option<Class> {
    let (uid, name) = (f.get("entity_id").or(f.get("department_id")), f.get("entity_name"));
    place_entity_id(f, uid.as_deref());
    let group = department_group(f, uid, name)?;
    f.take("entity_name");
    Some(group_management(activity.clone(), group, None, None, c))
}

/// 3006 add/remove user: the group is the department (`department_id`, else the entity), the
/// user the target.
fn membership(f: &mut Fields<'_>, activity: &GroupManagementId, c: &Common) -> Option<Class> {
    let (uid, name) = (f.get("department_id").or(f.get("entity_id")), f.get("entity_name"));
    place_entity_id(f, uid.as_deref());
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
    let declared = |k: &str| f.record.get("metadata").and_then(Value::as_object).and_then(|m| text(m, k));
    let to_department =
        target_id.as_deref().is_some_and(|t| is_department_id(t) || Some(t) == department_id.as_deref())
            || ["target_type", "grantee_type"]
                .iter()
                .find_map(|k| declared(k).or_else(|| f.get(k)))
                .is_some_and(|t| t.eq_ignore_ascii_case("department"));
    if to_department {
        let (uid, name) = (f.take("target_id"), f.take("target_name"));
        department_group(f, uid, name).map(Grantee::Department)
    } else {
        user_from(f, "target_id", "target_name").map(Grantee::User)
    }
}

/// The privilege granted or revoked, and the fields that hold it (to place): a role or
/// permission by its name (the entity's name, else the new/previous value); a knowledge grant by
/// its level (the new/previous value), else the entity's name. Without any of them, the entity's
/// type (MAPPING §5a rule 1): never a user's name.
fn privilege(f: &Fields<'_>, what: Granted, assign: bool, entity_type: &str) -> (String, Vec<&'static str>) {
    let value_key = if assign { "new_value" } else { "previous_value" };
    let (name, value) = (f.get("entity_name"), f.plain(value_key));
    let (first, second) = match what {
        Granted::Role | Granted::Permission => ((name.clone(), "entity_name"), (value.clone(), value_key)),
        Granted::RoleChange | Granted::Knowledge => ((value.clone(), value_key), (name.clone(), "entity_name")),
    };
    let Some(privilege) = first.0.clone().or(second.0.clone()) else {
        return (entity_type.to_owned(), Vec::new());
    };
    // Both fields are placed when they say the same.
    let keys = [first, second].into_iter().filter(|(v, _)| v.as_ref() == Some(&privilege)).map(|(_, k)| k).collect();
    (privilege, keys)
}

/// What a privilege applies to: a role or permission to the department it is scoped to (else the
/// organization) and the assignment or permission itself (`entity_id` with `entity_type`); a
/// knowledge grant to the knowledge object named by the entity.
fn resources(
    f: &mut Fields<'_>,
    what: Granted,
    entity_type: &str,
    organization: Option<String>,
) -> Vec<ResourceDetails> {
    let resource = |uid, name, kind: &str| ResourceDetails { uid, name, kind: Some(kind.into()), data: None };
    let entity = |f: &mut Fields<'_>, kind: &str| {
        let (uid, name) = (f.take("entity_id"), f.get("entity_name"));
        f.place("entity_name");
        (uid.is_some() || name.is_some()).then(|| resource(uid, name, kind))
    };
    match what {
        Granted::Knowledge => entity(f, "knowledge").into_iter().collect(),
        Granted::Role | Granted::RoleChange | Granted::Permission => {
            let scope = match f.take("department_id") {
                Some(department) => Some(resource(Some(department), None, "department")),
                None => organization.map(|org| resource(Some(org), None, "organization")),
            };
            scope.into_iter().chain(entity(f, entity_type)).collect()
        }
    }
}

/// 3005 to a user, 3006 to a department; `None` (3004) only when no grantee is named at all.
fn grant(
    f: &mut Fields<'_>,
    what: Granted,
    assign: bool,
    entity_type: &str,
    org: Option<String>,
    c: &Common,
) -> Option<Class> {
    let grantee = grantee(f)?;
    let (privilege, keys) = privilege(f, what, assign, entity_type);
    for key in keys {
        f.place(key);
    }
    let privileges = vec![privilege];
    Some(match grantee {
        Grantee::User(user) => Class::UserAccess(UserAccess {
            activity: if assign { UserAccessId::AssignPrivileges } else { UserAccessId::RevokePrivileges },
            user,
            privileges,
            resources: Some(resources(f, what, entity_type, org)).filter(|r| !r.is_empty()),
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

/// 3004 on the record's entity (`entity_id` / `entity_name`). Its type: user (2), department
/// as a group (3), organization (4, with `entity.org`), else 99 with the vendor's
/// `entity_type`. The values: `entity.data` holds the created entity's new value or the
/// previous value, `entity_result.data` the new value of a change.
fn entity(f: &mut Fields<'_>, entity_type: &str, activity: EntityManagementId, c: &Common) -> Class {
    let (uid, name) = (f.take("entity_id"), f.take("entity_name"));
    let kind = if entity_type.is_empty() { "unknown" } else { entity_type };
    let mut e = ManagedEntity { uid: uid.clone(), name: name.clone(), ..ManagedEntity::default() };
    let identified = uid.is_some() || name.is_some();
    match kind {
        "user" => {
            (e.type_id, e.kind) = (Some(2), Some("User".into()));
            e.user = identified.then(|| target_user(uid, name));
        }
        "department" => {
            (e.type_id, e.kind) = (Some(3), Some("Group".into()));
            e.group = department_group(f, uid, name);
        }
        "organization" => {
            // Named by its type when the record names it not at all (never `None` then).
            let label = if identified { name } else { Some(kind.to_owned()) };
            e = ManagedEntity::organization(uid, label).unwrap_or_default();
        }
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
        let ctx = Context::fixed("ORG_7F3KQ9ZP2M4XW8RT", &key, time, raw);
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
            ("user", &["password_changed", "mfa_enabled", "mfa_disabled", "locked", "unlocked"], "", json!({})),
            (
                "user",
                &["locked"],
                "system_actor",
                json!({"actor_id": "system", "actor_name": null, "actor_email": null}),
            ),
            ("user", &["invited"], "", json!({"new_value": "noah.keller@example.ch"})),
            ("user", &["updated"], "", updated),
            ("user", &["deactivated"], "", json!({"previous_value": "active", "new_value": "inactive"})),
            ("user", &["deactivated"], "no_identity", no_identity),
            ("department", &["created", "deleted"], "", json!({"new_value": r#"{"name":"Data Platform"}"#})),
            ("department", &["updated", "reparented"], "", json!({})),
            ("department_membership", &["membership_added", "created", "assigned"], "", json!({})),
            ("department_membership", &["membership_removed", "deleted", "removed", "unassigned"], "", json!({})),
            ("role", &["created", "updated", "deleted"], "", json!({})),
            (
                "role",
                &["created"],
                "api_key_actor",
                json!({"actor_id": "ak_9XyZ8wVu7tSr6qPo5nMl", "actor_name": "CI pipeline", "actor_email": null}),
            ),
            ("organization", &["updated"], "", json!({"entity_id": "ORG_7F3KQ9ZP2M4XW8RT", "entity_name": "Acme"})),
            ("role_assignment", &["assigned", "created", "unassigned", "deleted", "removed"], "", json!({})),
            ("role_assignment", &["assigned", "unassigned"], "department", department.clone()),
            ("role_assignment", &["assigned"], "no_grantee", nobody.clone()),
            ("permission", &["assigned", "created", "unassigned", "deleted", "removed", "updated"], "", json!({})),
            ("permission", &["assigned", "unassigned"], "department", department.clone()),
            ("permission", &["assigned", "unassigned"], "no_grantee", nobody),
            ("knowledge_grant", &["assigned", "created", "unassigned", "deleted", "removed"], "", json!({})),
            ("knowledge_grant", &["assigned", "unassigned"], "department", department),
            ("knowledge_grant", &["assigned"], "no_level", json!({"new_value": null})),
            // The demo's revocations: no previous value (MAPPING §5a rule 1).
            ("knowledge_grant", &["removed"], "no_level", json!({"previous_value": null})),
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
        assert_eq!(class("knowledge_grant.assigned.no_level"), (3005, 1));
        assert_eq!(class("role_assignment.assigned.department"), (3006, 1));
        assert_eq!(class("api_key.rotated"), (3004, 99));
    }

    #[test]
    fn test_a_record_without_action_type_is_unmappable() {
        let mut record = samples().swap_remove(0).0;
        record.remove("action_type");
        let ctx = Context::fixed("o", "k", DateTime::<Utc>::UNIX_EPOCH, "{}");
        assert!(map(&record, &ctx).is_err());
        record.insert("action_type".into(), "archived".into());
        record.remove("entity_type");
        let json = event(&record, "{}");
        assert_eq!(
            (json["type_uid"].as_u64(), json["metadata"]["event_code"].as_str()),
            (Some(300499), Some("archived"))
        );
    }

    /// The event of a record built with [`record`].
    fn of(entity_type: &str, action: &str, patch: &Value) -> Value {
        let record = record(entity_type, action, patch);
        event(&record, &serde_json::to_string(&record).unwrap())
    }

    fn class_activity_severity(json: &Value) -> (u64, u64, u64) {
        let n = |k: &str| json[k].as_u64().unwrap();
        (n("class_uid"), n("activity_id"), n("severity_id"))
    }

    /// MAPPING §5a rule 1: a grant or a revocation stays 3005 when the record leaves its value
    /// out; the privilege is then the entity's name, else its type. A department grantee stays
    /// 3006; only a record naming no grantee at all falls to 3004.
    #[test]
    fn test_grants_and_revocations_keep_their_class_without_a_value() {
        let no_values = json!({"previous_value": null, "new_value": null});
        for (entity_type, action, privilege) in [
            ("knowledge_grant", "removed", "Sales Playbook"),
            ("knowledge_grant", "unassigned", "Sales Playbook"),
            ("knowledge_grant", "deleted", "Sales Playbook"),
            ("knowledge_grant", "assigned", "Sales Playbook"),
            ("knowledge_grant", "created", "Sales Playbook"),
            ("role_assignment", "unassigned", "Org Admin"),
            ("role_assignment", "removed", "Org Admin"),
            ("permission", "unassigned", "knowledge.write"),
            ("permission", "deleted", "knowledge.write"),
            ("permission", "assigned", "knowledge.write"),
        ] {
            let json = of(entity_type, action, &no_values);
            let activity = if ["assigned", "created"].contains(&action) { 1 } else { 2 };
            let what = format!("{entity_type}.{action}");
            assert_eq!(
                (json["class_uid"].as_u64(), json["activity_id"].as_u64()),
                (Some(3005), Some(activity)),
                "{what}"
            );
            assert_eq!(json["privileges"], json!([privilege]), "{what}");
            assert_eq!(json["user"]["uid"], "usr_3Kd9WfB6yQ2hJ5nP", "{what}");
            assert!(json["unmapped"].get("target_id").is_none(), "{what}: the grantee is placed");
        }
        let nameless = json!({"previous_value": null, "new_value": null, "entity_name": null});
        for (entity_type, action) in [("knowledge_grant", "removed"), ("role_assignment", "unassigned")] {
            let json = of(entity_type, action, &nameless);
            assert_eq!((json["class_uid"].as_u64(), json["activity_id"].as_u64()), (Some(3005), Some(2)));
            assert_eq!(json["privileges"], json!([entity_type]));
        }
        let department = json!({"previous_value": null, "new_value": null,
            "target_id": DEPT, "target_name": "Data Platform", "department_id": DEPT});
        let json = of("knowledge_grant", "removed", &department);
        assert_eq!((json["class_uid"].as_u64(), json["activity_id"].as_u64()), (Some(3006), Some(2)));
        assert_eq!((json["group"]["uid"].as_str(), &json["privileges"]), (Some(DEPT), &json!(["Sales Playbook"])));
        let nobody = json!({"previous_value": null, "new_value": null,
            "target_id": null, "target_name": null, "department_id": null});
        let json = of("knowledge_grant", "removed", &nobody);
        assert_eq!((json["class_uid"].as_u64(), json["activity_id"].as_u64()), (Some(3004), Some(4)));
    }

    /// MAPPING §5a rule 1 (adversarial review): the action set is open ("and more", vendors
    /// README §4.3) and this file reads `revoked` as a delete verb elsewhere; a grant entry
    /// spelled `revoked` / `granted` (or in another case or separator style, as account verbs
    /// are accepted) must keep its IAM class, not fall to 3004 with the grantee in `unmapped`.
    #[test]
    fn test_grant_verbs_in_other_spellings_keep_their_class() {
        let no_values = json!({"previous_value": null, "new_value": null});
        for (entity_type, action, activity) in [
            ("role_assignment", "revoked", 2),
            ("knowledge_grant", "revoked", 2),
            ("permission", "revoked", 2),
            ("role_assignment", "granted", 1),
            ("knowledge_grant", "granted", 1),
            ("role_assignment", "Unassigned", 2),
            ("role_assignment", "un-assigned", 2),
        ] {
            let json = of(entity_type, action, &no_values);
            let what = format!("{entity_type}.{action}");
            assert_eq!(
                (json["class_uid"].as_u64(), json["activity_id"].as_u64()),
                (Some(3005), Some(activity)),
                "{what}"
            );
            assert!(json["unmapped"].get("target_id").is_none(), "{what}: the grantee is placed");
        }
    }

    /// A user's role changed from Member to Org Admin is a privilege given: 3005 Assign with the
    /// new role, AdminGranted — not 3004 Update with the user in `unmapped` (adversarial review).
    #[test]
    fn test_a_role_assignment_changed_to_admin_is_an_admin_grant() {
        let patch = json!({"entity_name": "Member", "previous_value": "Member", "new_value": "Org Admin"});
        for action in ["updated", "changed"] {
            let json = of("role_assignment", action, &patch);
            assert_eq!(class_activity_severity(&json), (3005, 1, 3), "{json}");
            assert_eq!(json["privileges"], json!(["Org Admin"]));
            assert_eq!(json["user"]["uid"], "usr_3Kd9WfB6yQ2hJ5nP");
        }
    }

    /// MAPPING §5a rule 2: account-security verbs of a `user` entry, in the spellings a vendor
    /// may use, are 3001 with OCSF's activity and the severity of their kind (Signal).
    #[test]
    fn test_account_security_verbs_are_account_changes() {
        let (info, low, medium) = (1, 2, 3);
        for (verb, activity, severity) in [
            ("password_reset", 4, low),
            ("PasswordReset", 4, low),
            ("password_changed", 3, info),
            ("password_updated", 3, info),
            ("mfa_enabled", 10, info),
            ("2fa_enabled", 10, info),
            ("two_factor_enabled", 10, info),
            ("mfa_disabled", 11, medium),
            ("two_factor_disabled", 11, medium),
            ("2fa-disabled", 11, medium),
            ("mfa_reset", 11, medium),
            ("locked", 9, low),
            ("locked_out", 9, low),
            ("account_locked", 9, low),
            ("blocked", 9, low),
            ("unlocked", 12, info),
            ("deactivated", 5, low),
            ("disabled", 5, low),
            ("suspended", 5, low),
            ("reactivated", 2, info),
            ("enabled", 2, info),
            ("deleted", 6, low),
            ("removed", 6, low),
            ("created", 1, info),
            ("invited", 1, info),
        ] {
            let json = of("user", verb, &json!({}));
            assert_eq!(class_activity_severity(&json), (3001, activity, severity), "{verb}");
            assert_eq!(json["user"]["uid"], USER, "{verb}");
            assert_eq!(json["metadata"]["event_code"], format!("user.{verb}"));
        }
        // Not an account: MFA turned off organization-wide is still MFA disabled.
        let json = of("organization", "mfa_disabled", &json!({}));
        assert_eq!(json["severity_id"], 3);
        // A request, reminder or notice about a change is not the change, and a word ending in
        // "lock" is no lock (adversarial review).
        for verb in ["password_reset_requested", "mfa_enrollment_reminder_sent", "clock_synced", "unlock_attempted"] {
            let json = of("user", verb, &json!({}));
            assert_eq!(json["class_uid"], 3004, "{verb}: {json}");
        }
    }

    /// MAPPING §5a rule 7: `name` is the account (the e-mail address), the display name is
    /// `full_name`, and the actor is typed: a person, an API key (Service) or the system.
    #[test]
    fn test_actor_and_target_identity_in_one_place() {
        let (record, raw) = samples().swap_remove(0);
        let json = event(&record, &raw);
        let lena = json!({"uid": "usr_8Hq2LmN4pR7sT1vX", "name": "lena.fischer@example.ch",
            "full_name": "Lena Fischer", "email_addr": "lena.fischer@example.ch", "type_id": 1, "type": "User"});
        assert_eq!(json["actor"]["user"], lena);
        let marco = json!({"uid": "usr_3Kd9WfB6yQ2hJ5nP", "full_name": "Marco Bianchi", "type_id": 1, "type": "User"});
        assert_eq!(json["user"], marco);
        // Every target account is a person too: a member, an account changed, a user entity.
        for (entity_type, action, path) in [
            ("department_membership", "membership_added", "/user"),
            ("user", "locked", "/user"),
            ("user", "exported", "/entity/user"),
        ] {
            let json = of(entity_type, action, &json!({}));
            assert_eq!(json.pointer(&format!("{path}/type_id")), Some(&json!(1)), "{entity_type}.{action}");
        }
        // An invitee's address is its account name.
        let (record, raw) = samples().swap_remove(2);
        let json = event(&record, &raw);
        assert_eq!(json["user"]["name"], "noah.keller@example.ch");
        assert_eq!(json["user"]["email_addr"], "noah.keller@example.ch");
        assert_eq!(json["user"]["full_name"], "Noah Keller");
        // An API key acting on its own, by its id or a declared type.
        for patch in [
            json!({"actor_id": "ak_9XyZ8wVu7tSr6qPo5nMl", "actor_name": "CI pipeline", "actor_email": null}),
            json!({"actor_id": "cred_77", "actor_type": "api_key", "actor_name": "CI pipeline", "actor_email": null}),
        ] {
            let json = of("role", "created", &patch);
            let user = &json["actor"]["user"];
            assert_eq!((user["type_id"].as_u64(), user["name"].as_str()), (Some(4), Some("CI pipeline")), "{patch}");
            assert!(json["unmapped"].get("actor_type").is_none());
        }
        // The vendor's own automation.
        let json = of("user", "locked", &json!({"actor_id": "system", "actor_name": null, "actor_email": null}));
        let user = &json["actor"]["user"];
        assert_eq!((user["type_id"].as_u64(), user["name"].as_str()), (Some(3), Some("Aitronos")));
        // A person known only by a display name keeps it as the name too.
        let json = of("role", "created", &json!({"actor_id": null, "actor_email": null}));
        assert_eq!(json["actor"]["user"]["name"], "Lena Fischer");
    }

    /// A user updated without a uid still has an identified `user_result` (or none).
    #[test]
    fn test_user_result_without_uid_is_identified() {
        let patch = json!({"target_id": null, "entity_id": null, "new_value": r#"{"name":"Noah K."}"#});
        let json = of("user", "updated", &patch);
        assert_eq!(json["user_result"]["name"], "Noah K.");
        let patch = json!({"target_id": null, "entity_id": null, "new_value": "not an address"});
        assert!(of("user", "updated", &patch).get("user_result").is_none());
    }

    /// One severity table (MAPPING §5a, `Signal`): the same kind of action, the same default.
    #[test]
    fn test_severity_follows_the_signal_table() {
        let severity = |name: &str| {
            let (_, record) = cases().into_iter().find(|(n, _)| n == name).unwrap();
            event(&record, "{}")["severity_id"].as_u64().unwrap()
        };
        for (name, want) in [
            ("role_assignment.assigned", 3),            // Org Admin: admin granted
            ("role_assignment.assigned.department", 3), // to a department, still admin granted
            ("role_assignment.unassigned", 2),          // admin revoked
            ("permission.assigned", 2),                 // privilege granted
            ("permission.unassigned", 1),               // privilege revoked
            ("knowledge_grant.assigned", 2),
            ("knowledge_grant.removed", 1),
            ("user.deactivated", 2),
            ("user.deleted", 2),
            ("user.password_reset", 2),
            ("api_key.created", 2),
            ("api_key.rotated", 2),
            ("api_key.deleted", 1),
            ("api_key.deactivated", 1),
            ("role.updated", 2), // RoleChanged: what every holder may do changed
            ("department.created", 1),
        ] {
            assert_eq!(severity(name), want, "{name}");
        }
    }

    /// MAPPING §5a rule 9: a field placed in the event is not in `unmapped`; `entity_type` /
    /// `entity_id` go to the entity or resources; `metadata`'s address leaves its text.
    #[test]
    fn test_placed_fields_are_not_in_unmapped() {
        fn leaves<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(a) => a.iter().for_each(|x| leaves(x, out)),
                Value::Object(o) => o.values().for_each(|x| leaves(x, out)),
                _ => {}
            }
        }
        let records = cases().into_iter().chain(samples().into_iter().map(|(r, _)| (String::new(), r)));
        for (name, record) in records {
            let json = event(&record, &serde_json::to_string(&record).unwrap());
            let mut placed = Vec::new();
            for (k, v) in json.as_object().unwrap() {
                if !["raw_data", "unmapped", "observables"].contains(&k.as_str()) {
                    leaves(v, &mut placed);
                }
            }
            let unmapped = json["unmapped"].as_object().cloned().unwrap_or_default();
            assert!(!unmapped.contains_key("entity_type"), "{name}: {unmapped:?}");
            for (k, v) in &unmapped {
                assert!(!placed.contains(&v.as_str().unwrap()), "{name}: unmapped.{k} = {v} is placed too");
            }
            if let Some(ip) = json["src_endpoint"]["ip"].as_str() {
                let metadata = unmapped.get("metadata").and_then(Value::as_str).unwrap_or_default();
                assert!(!metadata.contains(ip), "{name}: {metadata}");
            }
        }
        let json = of("role", "created", &json!({}));
        assert_eq!(
            json["unmapped"]["metadata"],
            r#"{"role_id":"role_admin","scope":"organization","source":"web_ui"}"#
        );
        let (record, raw) = samples().swap_remove(0);
        let resources = event(&record, &raw)["resources"].clone();
        assert!(
            resources
                .as_array()
                .unwrap()
                .contains(&json!({"uid": "ra_4N8qT2vK7wX1zB5m", "name": "Org Admin", "type": "role_assignment"})),
            "{resources}"
        );
        let json = of("organization", "updated", &json!({"entity_id": "ORG_7F3KQ9ZP2M4XW8RT", "entity_name": "Acme"}));
        assert_eq!(
            (json["entity"]["type_id"].as_u64(), &json["entity"]["org"]),
            (Some(4), &json!({"uid": "ORG_7F3KQ9ZP2M4XW8RT", "name": "Acme"}))
        );
    }
}
