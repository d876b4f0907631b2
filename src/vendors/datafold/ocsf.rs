//! Datafold → OCSF 1.8.0 (`ocsf/MAPPING.md` §4.2, with the §5a revisions).
//!
//! Source: `GET {base}/api/v1/audit_logs`, the time range as a JSON body on the GET, answered
//! with `{"logs": [...]}`, no paging, no documented rate limit; the source hands this module one
//! element of `logs`. Records are request-level (client IP, URL, method, status), so they become
//! **6003 API Activity**, except sign-ins and sign-outs: **3002 Authentication**, whatever
//! identity the record carries (§5a rule 3). The vocabulary of `action` is undocumented (vendors
//! README §3.5), so it is matched word by word and an unknown action never fails: it keeps its
//! own name as activity 99 Other.
//!
//! | record | class / activity | notes |
//! | --- | --- | --- |
//! | `action` login / sign-in words (`login`, `sso_login`, `logIn`); no action: a path ending in `/login`, `/signin`, `/saml/acs`, an OAuth/OIDC/SAML/SSO `/callback` | 3002 / 1 Logon | `status` failure → `status_id` 2, `payload.reason` → `status_detail` |
//! | `action` logout / sign-out words; no action: a path ending in `/logout`, `/signout` | 3002 / 2 Logoff | |
//! | anything else with a client address | 6003, activity from `request_type` (POST 1, GET 2, PUT/PATCH 3, DELETE 4), else the verb in `action`, else 99 with the action | |
//! | no client address | 3004 on the object (`object_id`/`object_type`; user 2, group 3, organization 4 with `entity.org`, else 99), else on the organization | §3 rule 7 |
//!
//! **3002 identity.** `user` is who signed in: `user_id` → `uid`, `user_email` → `name` (Datafold
//! has no username) and `email_addr`, typed User. Without either, the identity the attempt named
//! in `payload` (`email`/`user_email`, `username`/`user_name`/`login`); without that, nobody is
//! named: `user` is `{name: "unknown", type_id: 0 "Unknown"}` (OCSF needs a name or uid, and an
//! address or agent is no user) and the attempt is in `status_detail`, `message`,
//! `src_endpoint` and `http_request`. `actor` is the user on a sign-in that did not fail; a
//! failed one has no actor (who tried is not known; the account tried is `user`).
//! `auth_protocol_id` where action, path or log entry say it: SAML (`/saml/acs`, "via SAML
//! SSO") 5, OIDC/OpenID 4, OAuth 6, HTTP Basic 11; nothing else (an API key is no OCSF protocol).
//!
//! **Actor** (6003, 3004): the user as above, typed User; Datafold's own system
//! (`{name: "Datafold", type_id: 3 System}`) when `source` is `system` or no user is named.
//!
//! **Event codes** (`metadata.event_code`, `api.operation`): `action` as it is, with any id in
//! it replaced by `{id}`; without an action the request, `METHOD path`, its path templated
//! (`PUT /api/v1/data_sources/{id}`, `crate::ocsf::paths::template`). The ids go to
//! `resources[]` after the object (`object_id` as `uid`, `object_type` as `type`), once each.
//!
//! **Severity** (`crate::ocsf::Signal`, the highest that applies; otherwise Informational):
//! support-user access (`is_support_user: true`, also labelled `support_user`) → SupportAccess;
//! a failed sign-in → LoginFailed; on other records, by the words of action, object type and
//! templated path: API key / access token created, deleted, rotated (`rotate`, `regenerate`, `roll`,
//! `reset`) → Credential*; SAML / SSO / IdP / SCIM / OIDC changed (not read) → SsoChanged; a
//! role / permission / grant given or changed → PrivilegeGranted (AdminGranted when the role is
//! an admin's: `payload.role`/`roles`/`new_role`/`permission(s)`, or the words), taken away →
//! PrivilegeRevoked / AdminRevoked; MFA enabled / disabled → MfaEnabled / MfaDisabled; a
//! password reset → PasswordReset; a user removed, disabled, locked → AccountDisabled.
//!
//! **unmapped** holds only what is placed nowhere: `source` (unless `system`, then the actor
//! says it), `object_type` without an `object_id`, a `request_type` that is no HTTP method,
//! the user fields of a `system` request, and `payload` as text unless every field of it was
//! placed (`reason` of a failure, the attempted identity) or it is empty. `is_support_user` is
//! placed: the label and severity say it.
//!
//! Leaves to others: the dedupe key (`event_uuid`) and event time (the source), the configured
//! severity override (the caller). It sets no `url_string` for a bare path: the configured base
//! URL is not passed to mappings, and OCSF says a path must not fill `url_string`.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    Actor, Api, ApiActivity, ApiActivityId, AuthProtocol, Authentication, AuthenticationId, Class, EntityManagement,
    EntityManagementId, EventParts, Group, HttpRequest, ManagedEntity, ResourceDetails, Service, Severity, Status, Url,
    User, UserType,
};
use crate::ocsf::{
    Context, Fields, Signal, Unmappable, email, http_method, is_admin_privilege, paths, src_endpoint, status_from_word,
    text,
};

const PRODUCT: &str = "Datafold";

/// `user.name` of a sign-in whose record names nobody (see the module notes).
const UNKNOWN_USER: &str = "unknown";

/// Maps one Datafold audit record. Fails only when no class's required attributes can be filled.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let mut fields = Fields::new(record, "action");
    let action = fields.get("action");
    let method = http_method(fields.get("request_type"));
    if method.is_some() {
        fields.place("request_type"); // one OCSF's enum lacks stays in `unmapped`
    }
    let url = fields.take("url");
    let path = url.as_deref().map(url_path);
    let templated = path.as_deref().map(paths::template);
    let code = event_code(action.as_deref(), method.as_deref(), templated.as_ref());
    let is_support_user = record.get("is_support_user").and_then(Value::as_bool);
    if is_support_user.is_some() {
        fields.place("is_support_user"); // the label and the severity say it
    }
    let support_user = is_support_user == Some(true);
    let mut payload = Payload::new(record.get("payload"));

    let mut metadata = ctx.metadata("datafold", PRODUCT, "Datafold", "Datafold audit logs");
    metadata.event_code = Some(code.code.clone());
    metadata.original_event_uid = fields.take("event_uuid");
    metadata.original_time = fields.take("timestamp");
    metadata.labels = support_user.then(|| vec!["support_user".to_owned()]);

    let status_code = fields.take("status");
    let status = status_code.as_deref().map(status_from_word);
    let failed = status == Some(Status::Failure);
    // 2.6: a failure's reason goes to status_detail; Datafold puts it in the payload.
    let status_detail = if failed { payload.take("reason") } else { None };
    let message = fields.take("log_entry");
    let src_endpoint = src_endpoint(record, "client_ip");
    if src_endpoint.is_some() {
        fields.place("client_ip");
    }
    let http_request = Some(HttpRequest {
        http_method: method.clone(),
        url: url.as_deref().map(request_url),
        user_agent: fields.take("user_agent"),
        referrer: fields.take("referer"),
        uid: None,
    })
    .filter(|h| !h.is_empty());
    let system = fields.get("source").is_some_and(|s| s.trim().eq_ignore_ascii_case("system"));
    if system {
        fields.place("source"); // the actor says it
    }
    let path_words = templated.as_ref().map(|t| words(&t.path)).unwrap_or_default();

    let mut signals: Vec<Signal> = Vec::new();
    if support_user {
        signals.push(Signal::SupportAccess);
    }
    let class = if let Some(activity) = auth_activity(action.as_deref(), templated.as_ref().map(|t| t.path.as_str())) {
        // §5a rule 3: a sign-in is 3002 whatever identity it carries.
        let named = person(&mut fields).or_else(|| payload.attempted_user());
        let actor = if system {
            Some(datafold())
        } else {
            // Who tried a failed sign-in is not known: the account tried is `user`, not the actor.
            named.clone().filter(|_| !failed).map(acted_by)
        };
        let user = named.unwrap_or_else(unknown_user);
        if failed {
            signals.push(Signal::LoginFailed);
        }
        let mut said = words(action.as_deref().unwrap_or_default());
        said.extend(path_words);
        said.extend(words(message.as_deref().unwrap_or_default()));
        Class::Authentication(Authentication {
            activity,
            user,
            service: Service { name: PRODUCT.to_owned() },
            actor,
            src_endpoint,
            http_request,
            is_mfa: None,
            // Every sign-in to Datafold, a SaaS service, comes over the network.
            is_remote: Some(true),
            auth_protocol: auth_protocol(&said),
        })
    } else {
        let activity = api_activity(method.as_deref(), action.as_deref(), &code);
        let mut subject = words(action.as_deref().unwrap_or_default());
        subject.extend(words(fields.get("object_type").as_deref().unwrap_or_default()));
        subject.extend(path_words);
        signals.extend(change_signal(&activity, &subject, &payload));
        let actor = if system { datafold() } else { person(&mut fields).map_or_else(datafold, acted_by) };
        match src_endpoint {
            Some(src_endpoint) => {
                let object = text(record, "object_id").map(|uid| (uid, text(record, "object_type")));
                if let Some((_, kind)) = &object {
                    fields.place("object_id");
                    // Placed only when it became the resource's type: an `object_type` of another
                    // shape (an object) stays in `unmapped`, not lost (adversarial review).
                    if kind.is_some() {
                        fields.place("object_type");
                    }
                }
                let ids = code.ids.iter().chain(templated.iter().flat_map(|t| t.ids.iter()));
                let resources = resources(object, ids);
                Class::ApiActivity(ApiActivity {
                    activity,
                    actor,
                    api: Api {
                        operation: code.code,
                        service: Some(Service { name: PRODUCT.to_owned() }),
                        request: None,
                        response: None,
                    },
                    src_endpoint,
                    http_request,
                    http_response: None,
                    resources: Some(resources).filter(|r| !r.is_empty()),
                })
            }
            // MAPPING §3 rule 7: no source, so no 6003; say what happened to the object (or,
            // naming none, to the organization).
            None => {
                let entity = match text(record, "object_id") {
                    Some(uid) => {
                        fields.place("object_id");
                        object_entity(uid, fields.take("object_type"))
                    }
                    None => {
                        let organization = Some(ctx.organization.to_owned()).filter(|o| !o.is_empty());
                        let nothing = || Unmappable("Datafold record names no client address, object or tenant".into());
                        ManagedEntity::organization(None, organization).ok_or_else(nothing)?
                    }
                };
                Class::EntityManagement(EntityManagement {
                    activity: EntityManagementId::from(activity),
                    entity,
                    entity_result: None,
                    actor: Some(actor),
                    src_endpoint: None,
                    http_request,
                    comment: None,
                })
            }
        }
    };
    if payload.fully_placed() {
        fields.place("payload");
    }

    Ok(EventParts {
        class,
        severity: signals.into_iter().map(Signal::severity).max().unwrap_or(Severity::Informational),
        time: ctx.time_ms(),
        metadata,
        status: Some(status.unwrap_or(Status::Unknown)),
        status_code,
        status_detail,
        message,
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(fields.unmapped()),
    })
}

/// `metadata.event_code` / `api.operation` and the ids taken out of it.
struct EventCode {
    code: String,
    /// Ids that were in `action`: (value, resource type).
    ids: Vec<(String, String)>,
    /// Whether the code is the action (then it also names a 99 Other activity).
    from_action: bool,
}

/// §5a rule 4: the action with its ids as `{id}`; else `METHOD path` with the path templated.
fn event_code(action: Option<&str>, method: Option<&str>, templated: Option<&paths::Templated>) -> EventCode {
    if let Some(action) = action {
        let (code, ids) = template_action(action);
        return EventCode { code, ids, from_action: true };
    }
    let code = match (method, templated) {
        (Some(m), Some(t)) => format!("{m} {}", t.path),
        (Some(m), None) => m.to_owned(),
        (None, Some(t)) => t.path.clone(),
        (None, None) => "unknown".to_owned(),
    };
    EventCode { code, ids: Vec::new(), from_action: false }
}

/// An action with every id in it ([`paths::is_id`]) replaced by `{id}`: a path-like action is
/// templated as a path; otherwise each token between separators (and each part of a token
/// between `_`/`-`) that is an id. Ids found are typed `resource`, the action naming no type.
fn template_action(action: &str) -> (String, Vec<(String, String)>) {
    if action.contains('/') {
        let t = paths::template(action);
        return (t.path, t.ids);
    }
    let mut out = String::with_capacity(action.len());
    let mut ids = Vec::new();
    let mut id = |token: &str, out: &mut String| {
        if paths::is_id(token) {
            ids.push((token.to_owned(), "resource".to_owned()));
            out.push_str("{id}");
        } else {
            out.push_str(token);
        }
    };
    let is_token = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut rest = action;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !is_token(c)).unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        if paths::is_id(token) {
            id(token, &mut out);
        } else {
            let mut part = token;
            while !part.is_empty() {
                let end = part.find(['_', '-']).unwrap_or(part.len());
                id(&part[..end], &mut out);
                out.push_str(&part[end..(end + 1).min(part.len())]);
                part = &part[(end + 1).min(part.len())..];
            }
        }
        let sep = tail.find(is_token).unwrap_or(tail.len());
        out.push_str(&tail[..sep]);
        rest = &tail[sep..];
    }
    (out, ids)
}

/// The path of `url` (a full URL's, or the text before any query string).
fn url_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(full) if full.has_host() => full.path().to_owned(),
        _ => url.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// `http_request.url`: `url` is documented as "request URL/path": a full URL fills url_string
/// and path, a bare path only path (without its query string).
fn request_url(raw: &str) -> Url {
    match url::Url::parse(raw) {
        Ok(full) if full.has_host() => Url { path: Some(full.path().to_owned()), url_string: Some(raw.to_owned()) },
        _ => Url { path: raw.split('?').next().map(str::to_owned), url_string: None },
    }
}

/// 3002's activity when `action` is a sign-in or sign-out (`login`, `sso_login`, `logOut`, ...);
/// with no action, when the (templated) path ends at a sign-in or sign-out endpoint.
fn auth_activity(action: Option<&str>, path: Option<&str>) -> Option<AuthenticationId> {
    let Some(action) = action else { return path.and_then(auth_endpoint) };
    let words = words(action);
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

/// A path's last segment as a sign-in endpoint (`/login`, `/signin`, SAML `/acs`, an SSO
/// `/callback`) or sign-out one; a `callback` only under OAuth/OIDC/SAML/SSO, as other
/// callbacks (webhooks) are no sign-ins.
fn auth_endpoint(path: &str) -> Option<AuthenticationId> {
    let segments: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(str::to_ascii_lowercase).collect();
    let last = segments.last()?.replace(['-', '_'], "");
    let sso = segments.iter().any(|s| ["oauth", "oauth2", "oidc", "saml", "sso"].contains(&s.as_str()));
    match last.as_str() {
        "login" | "signin" | "logon" => Some(AuthenticationId::Logon),
        "acs" | "callback" if sso => Some(AuthenticationId::Logon),
        "logout" | "signout" | "logoff" => Some(AuthenticationId::Logoff),
        _ => None,
    }
}

/// `auth_protocol_id` from the words of the action, path and log entry of a sign-in.
fn auth_protocol(said: &[String]) -> Option<AuthProtocol> {
    let has = |w: &str| said.iter().any(|s| s == w);
    let pair = |a: &str, b: &str| said.windows(2).any(|p| p[0] == a && p[1] == b);
    if has("saml") {
        Some(AuthProtocol::Saml)
    } else if has("oidc") || has("openid") || pair("open", "id") {
        Some(AuthProtocol::OpenId)
    } else if has("oauth") || has("oauth2") {
        Some(AuthProtocol::OAuth2)
    } else if has("basic") {
        Some(AuthProtocol::Basic)
    } else {
        None
    }
}

/// MAPPING §4.2's activity table: the HTTP method, else the first verb in `action`, else 99
/// Other with the action's own name (its ids templated).
fn api_activity(method: Option<&str>, action: Option<&str>, code: &EventCode) -> ApiActivityId {
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
    let name = if code.from_action { code.code.clone() } else { action.to_owned() };
    verb.unwrap_or(ApiActivityId::Other(name))
}

/// The security kind of a change (6003/3004) by the words naming it (action, object type,
/// templated path) and its activity; `None` for an ordinary one or a read.
fn change_signal(activity: &ApiActivityId, subject: &[String], payload: &Payload<'_>) -> Option<Signal> {
    let has = |w: &str| subject.iter().any(|s| s == w);
    let pair = |a: &str, b: &[&str]| subject.windows(2).any(|p| p[0] == a && b.contains(&p[1].as_str()));
    let any = |ws: &[&str]| ws.iter().any(|w| has(w));
    if *activity == ApiActivityId::Read {
        return None;
    }
    let removed = *activity == ApiActivityId::Delete || any(&["remove", "revoke", "unassign", "delete"]);
    // An API credential: an api / access / personal key or token (a session token is none).
    let credential = any(&["apikey", "apikeys", "apitoken", "apitokens"])
        || ["api", "access", "personal"].iter().any(|w| pair(w, &["key", "keys", "token", "tokens"]));
    if credential {
        return if any(&["rotate", "regenerate", "roll", "reset"]) {
            Some(Signal::CredentialRotated)
        } else if removed {
            Some(Signal::CredentialDeleted)
        } else if *activity == ApiActivityId::Create || any(&["create", "add", "generate"]) {
            Some(Signal::CredentialCreated)
        } else {
            None
        };
    }
    if any(&["saml", "sso", "idp", "scim", "oidc", "openid"]) {
        return Some(Signal::SsoChanged);
    }
    if any(&["role", "roles", "permission", "permissions", "privilege", "privileges", "grant", "grants"]) {
        let admin = any(&["admin", "owner"]) || payload.roles().iter().any(|r| is_admin_privilege(r));
        return Some(match (removed, admin) {
            (false, true) => Signal::AdminGranted,
            (false, false) => Signal::PrivilegeGranted,
            (true, true) => Signal::AdminRevoked,
            (true, false) => Signal::PrivilegeRevoked,
        });
    }
    if any(&["mfa", "2fa", "totp"]) || pair("two", &["factor"]) {
        return if removed || any(&["disable", "disabled", "off"]) {
            Some(Signal::MfaDisabled)
        } else if *activity == ApiActivityId::Create || any(&["enable", "enabled", "on"]) {
            Some(Signal::MfaEnabled)
        } else {
            None
        };
    }
    if has("password") && has("reset") {
        return Some(Signal::PasswordReset);
    }
    let on_user = any(&["user", "users", "member", "members", "account"]);
    (on_user && (removed || any(&["disable", "deactivate", "lock", "suspend"]))).then_some(Signal::AccountDisabled)
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

/// The user the record names: `user_id` → uid, `user_email` → name (Datafold has no
/// username) and `email_addr`, typed User; both placed. `None` when neither is given.
fn person(fields: &mut Fields<'_>) -> Option<User> {
    let uid = fields.take("user_id");
    let address = fields.take("user_email");
    let user = User { uid, email_addr: email(address.clone()), name: address, ..User::default() };
    user.is_identified().then(|| user.typed(UserType::User))
}

/// The `user` of a sign-in that names nobody: OCSF needs a name or uid, and we know neither.
fn unknown_user() -> User {
    User { name: Some(UNKNOWN_USER.to_owned()), ..User::default() }.typed(UserType::Unknown)
}

/// Datafold's own system as the actor.
fn datafold() -> Actor {
    let user = User { name: Some(PRODUCT.to_owned()), ..User::default() }.typed(UserType::System);
    acted_by(user)
}

/// `actor` with `user` as who acted.
fn acted_by(user: User) -> Actor {
    Actor { user: Some(user), app_name: None, app_uid: None }
}

/// `resources[]`: the object (`object_id`, `object_type`), then each id of the event code and
/// the path, once per uid.
fn resources<'a>(
    object: Option<(String, Option<String>)>,
    ids: impl Iterator<Item = &'a (String, String)>,
) -> Vec<ResourceDetails> {
    let mut out: Vec<ResourceDetails> = Vec::new();
    let all = object.into_iter().chain(ids.map(|(uid, kind)| (uid.clone(), Some(kind.clone()))));
    for (uid, kind) in all {
        if !out.iter().any(|r| r.uid.as_deref() == Some(uid.as_str())) {
            out.push(ResourceDetails { uid: Some(uid), name: None, kind, data: None });
        }
    }
    out
}

/// The 3004 target when 6003 cannot be built: the object, typed by `object_type`.
fn object_entity(uid: String, object_type: Option<String>) -> ManagedEntity {
    let entity = |type_id: u8, kind: &str| ManagedEntity {
        uid: Some(uid.clone()),
        type_id: Some(type_id),
        kind: Some(kind.to_owned()),
        ..ManagedEntity::default()
    };
    match object_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("user") => {
            ManagedEntity { user: Some(User { uid: Some(uid.clone()), ..User::default() }), ..entity(2, "User") }
        }
        Some("group") => {
            ManagedEntity { group: Some(Group { uid: Some(uid.clone()), ..Group::default() }), ..entity(3, "Group") }
        }
        Some("organization") => ManagedEntity::organization(Some(uid), None).unwrap_or_default(),
        Some("policy") => entity(5, "Policy"),
        _ => entity(99, object_type.as_deref().unwrap_or("object")),
    }
}

/// `payload` (free-form): the fields read out of it; it leaves `unmapped` only when every
/// field of it is placed (or it is empty).
struct Payload<'a> {
    object: Option<&'a Map<String, Value>>,
    placed: Vec<&'static str>,
}

impl<'a> Payload<'a> {
    fn new(value: Option<&'a Value>) -> Self {
        Payload { object: value.and_then(Value::as_object), placed: Vec::new() }
    }

    /// A field's text, now placed.
    fn take(&mut self, key: &'static str) -> Option<String> {
        let value = text(self.object?, key)?;
        self.placed.push(key);
        Some(value)
    }

    /// The identity a sign-in attempt named: `username` (or `user_name`, `login`) as the name,
    /// else the address (`email`, `user_email`); the address as `email_addr`. Placed.
    fn attempted_user(&mut self) -> Option<User> {
        let address = self.take("email").or_else(|| self.take("user_email"));
        let username = self.take("username").or_else(|| self.take("user_name")).or_else(|| self.take("login"));
        let email_addr = email(address.clone()).or_else(|| email(username.clone()));
        let user = User { name: username.or(address), email_addr, ..User::default() };
        user.is_identified().then(|| user.typed(UserType::User))
    }

    /// Role or permission names it gives (`role`, `roles`, `new_role`, `permission(s)`); not placed.
    fn roles(&self) -> Vec<String> {
        let Some(object) = self.object else { return Vec::new() };
        ["role", "roles", "new_role", "permission", "permissions"]
            .iter()
            .filter_map(|k| object.get(*k))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            })
            .collect()
    }

    /// Whether nothing of it is left for `unmapped` (an object, every field placed).
    fn fully_placed(&self) -> bool {
        self.object.is_some_and(|o| o.keys().all(|k| self.placed.contains(&k.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsf::Signal;
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
        let ctx = Context::fixed(organization, key, time, raw);
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
                "login_without_user_is_authentication",
                with(&login("13", "login"), "13", &[("user_id", n.clone()), ("user_email", n.clone())]),
                300201,
            ),
            ("client_ip_not_an_address", with(&base, "14", &[("client_ip", s("unknown"))]), 600301),
            ("no_client_ip_entity_fallback", with(&base, "15", &[("client_ip", n.clone())]), 300401),
            (
                "full_url",
                with(&base, "16", &[("url", s("https://datafold.example.com/api/v1/data_sources?x=1"))]),
                600301,
            ),
        ];
        // Issue 17: the rows of the §5a revisions.
        let failed: Value = serde_json::from_str(samples[4].get()).unwrap();
        let saml: Value = serde_json::from_str(samples[0].get()).unwrap();
        let support = [
            ("is_support_user", json!(true)),
            ("user_email", s("support-engineer@datafold.example")),
            ("user_id", json!(7)),
        ];
        let request =
            [("action", n.clone()), ("request_type", s("PUT")), ("url", s("/api/v1/data_sources/1432/columns/88"))];
        let api_key = [
            ("action", s("create")),
            ("object_type", s("api_key")),
            ("url", s("/api/v1/api_keys")),
            ("payload", n.clone()),
        ];
        let system = [("source", s("system")), ("user_id", n.clone()), ("user_email", n.clone())];
        let rows_17 = [
            ("failed_login_naming_nobody", with(&failed, "17", &[("user_email", n.clone())]), 300201),
            ("support_user_sign_in", with(&saml, "18", &support), 300201),
            ("request_code_templated", with(&base, "19", &request), 600303),
            ("api_key_created", with(&base, "20", &api_key), 600301),
            ("system_actor", with(&base, "21", &system), 600301),
        ];
        let mut out: Vec<_> =
            rows.into_iter().chain(rows_17).map(|(n, r, t)| (n.to_owned(), r.to_string(), t)).collect();
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
        // Placed: the label and the severity say it.
        assert!(json["unmapped"].get("is_support_user").is_none(), "{json}");
    }

    fn sample(i: usize) -> Value {
        serde_json::from_str::<Vec<Value>>(SAMPLES).unwrap().swap_remove(i)
    }

    fn mapped(record: &Value) -> Value {
        let json = convert(&record.to_string(), ORG).unwrap();
        assert_valid(&json);
        json
    }

    #[test]
    fn test_logins_stay_authentication_whatever_identity_the_record_has() {
        let n = Value::Null;
        // Nothing identifies who tried: still 3002 Logon / Failure, the user named "unknown" of
        // unknown type (OCSF needs a name or uid), no actor; the attempt is in the reason,
        // message, source address and request.
        let nobody = with(&sample(4), "a1", &[("user_email", n.clone()), ("user_id", n.clone())]);
        let json = mapped(&nobody);
        assert_eq!((json["type_uid"].clone(), json["status_id"].clone()), (json!(300201), json!(2)), "{json}");
        assert_eq!(json["status_detail"], "invalid_credentials");
        assert_eq!(json["message"], "Failed sign-in attempt");
        assert_eq!(json["user"], json!({"name": "unknown", "type_id": 0, "type": "Unknown"}));
        assert!(json.get("actor").is_none(), "{json}");
        assert_eq!(json["severity_id"], Signal::LoginFailed.severity() as u8);
        assert!(json["unmapped"].get("payload").is_none(), "its one field is placed: {json}");
        // The identity the attempt named, from the payload.
        let tried = [
            (json!({"reason": "user_not_found", "email": "mallory@example.net"}), "mallory@example.net", true),
            (json!({"username": "mallory"}), "mallory", false),
        ];
        for (payload, name, is_email) in tried {
            let record =
                with(&sample(4), "a2", &[("user_email", n.clone()), ("user_id", n.clone()), ("payload", payload)]);
            let json = mapped(&record);
            assert_eq!((json["class_uid"].clone(), json["user"]["name"].clone()), (json!(3002), json!(name)), "{json}");
            assert_eq!(json["user"]["email_addr"].as_str(), is_email.then_some(name));
            assert_eq!(json["user"]["type_id"], 1);
            assert!(json["unmapped"].get("payload").is_none(), "{json}");
        }
        // The sample's failed login (an address, no id) is typed and Low.
        let json = mapped(&sample(4));
        assert_eq!(json["user"]["email_addr"], "unknown.user@example.org");
        assert_eq!((json["user"]["type_id"].clone(), json["severity_id"].clone()), (json!(1), json!(2)));
    }

    #[test]
    fn test_auth_protocol_where_the_record_shows_it() {
        let login = |url: &str, entry: &str| with(&sample(0), "p", &[("url", json!(url)), ("log_entry", json!(entry))]);
        let want = [
            (login("/api/internal/auth/saml/acs", "User signed in"), Some((5, "SAML"))),
            (login("/api/v1/saml/login", "User signed in"), Some((5, "SAML"))),
            (login("/api/internal/auth/login", "User signed in via SAML SSO"), Some((5, "SAML"))),
            (login("/oauth/callback", "User signed in"), Some((6, "OAUTH 2.0"))),
            (login("/api/internal/auth/oidc/callback", "User signed in"), Some((4, "OpenID"))),
            (
                login("/api/internal/auth/login", "Signed in with HTTP Basic authentication"),
                Some((11, "Basic Authentication")),
            ),
            (login("/api/internal/auth/login", "User signed in"), None),
            (login("/api/internal/auth/login", "User signed in with an API key"), None),
        ];
        for (record, protocol) in want {
            let json = mapped(&record);
            assert_eq!(json["class_uid"], 3002);
            let got =
                json["auth_protocol_id"].as_u64().map(|id| (id, json["auth_protocol"].as_str().unwrap().to_owned()));
            assert_eq!(got, protocol.map(|(id, c)| (id, c.to_owned())), "{record}");
        }
        assert_eq!(mapped(&sample(0))["auth_protocol_id"], 5, "the sample: SAML ACS, \"via SAML SSO\"");
    }

    #[test]
    fn test_support_user_sign_in_is_authentication_labelled_and_medium() {
        let support = [
            ("is_support_user", json!(true)),
            ("user_email", json!("support-engineer@datafold.example")),
            ("user_id", json!(7)),
        ];
        let login = with(&sample(0), "s1", &support);
        let json = mapped(&login);
        assert_eq!(json["type_uid"], 300201);
        assert_eq!(json["metadata"]["labels"], json!(["support_user"]));
        assert_eq!(json["severity_id"], Signal::SupportAccess.severity() as u8);
        assert!(json["unmapped"].get("is_support_user").is_none(), "{json}");
        // Failed: support access outranks a failed login.
        let json = mapped(&with(&login, "s2", &[("status", json!("failure"))]));
        assert_eq!((json["status_id"].clone(), json["severity_id"].clone()), (json!(2), json!(3)));
        // `is_support_user: false` is placed too: no label says it.
        let json = mapped(&sample(1));
        assert!(json["metadata"].get("labels").is_none() && json["unmapped"].get("is_support_user").is_none());
    }

    #[test]
    fn test_event_codes_hold_no_ids_and_the_ids_are_resources() {
        let n = Value::Null;
        let resource = |uid: &str, kind: &str| json!({"uid": uid, "type": kind});
        // No action: the request is the code, its path templated; the ids become resources.
        let put = with(
            &sample(1),
            "c1",
            &[
                ("action", n.clone()),
                ("request_type", json!("PUT")),
                ("url", json!("/api/v1/data_sources/1432/columns/88")),
            ],
        );
        let json = mapped(&put);
        assert_eq!(json["metadata"]["event_code"], "PUT /api/v1/data_sources/{id}/columns/{id}");
        assert_eq!(json["api"]["operation"], json["metadata"]["event_code"]);
        let want = json!([resource("587", "data_source"), resource("1432", "data_source"), resource("88", "column")]);
        assert_eq!(json["resources"], want);
        // The object's own id in the path is one resource; object_id/object_type are placed.
        let delete = with(
            &sample(1),
            "c2",
            &[("action", n.clone()), ("request_type", json!("DELETE")), ("url", json!("/api/v1/data_sources/587"))],
        );
        let json = mapped(&delete);
        assert_eq!(json["metadata"]["event_code"], "DELETE /api/v1/data_sources/{id}");
        assert_eq!(json["resources"], json!([resource("587", "data_source")]));
        assert!(json["unmapped"].get("object_id").is_none() && json["unmapped"].get("object_type").is_none());
        // An action holding an id is used without it; a plain action as it is.
        let rerun = with(&sample(1), "c3", &[("action", json!("rerun_monitor:4411")), ("request_type", n.clone())]);
        let json = mapped(&rerun);
        assert_eq!(json["metadata"]["event_code"], "rerun_monitor:{id}");
        assert_eq!(
            (json["activity_id"].clone(), json["activity_name"].clone()),
            (json!(99), json!("rerun_monitor:{id}"))
        );
        assert_eq!(json["resources"], json!([resource("587", "data_source"), resource("4411", "resource")]));
        assert_eq!(mapped(&sample(1))["metadata"]["event_code"], "create");
    }

    #[test]
    fn test_actor_is_the_user_or_datafold_itself() {
        let n = Value::Null;
        let json = mapped(&sample(2));
        let person = json!({"uid": "1502", "name": "ci-bot@example.com", "email_addr": "ci-bot@example.com", "type_id": 1, "type": "User"});
        assert_eq!(json["actor"]["user"], person);
        let datafold = json!({"user": {"name": "Datafold", "type_id": 3, "type": "System"}});
        // No user: Datafold's own system, not the user agent as an app.
        let json = mapped(&with(&sample(2), "i1", &[("user_email", n.clone()), ("user_id", n.clone())]));
        assert_eq!(json["actor"], datafold, "{json}");
        assert_eq!(json["unmapped"]["source"], "api", "not what the actor says: stays");
        // `source: system`: the same, and `source` is placed.
        let system = [("source", json!("system")), ("user_email", n.clone()), ("user_id", n.clone())];
        let json = mapped(&with(&sample(2), "i2", &system));
        assert_eq!(json["actor"], datafold);
        assert!(json["unmapped"].get("source").is_none(), "{json}");
        // A user on a `system` request is not who acted: kept as sent, placed nowhere.
        let json = mapped(&with(&sample(2), "i3", &[("source", json!("system"))]));
        assert_eq!(json["actor"], datafold);
        assert_eq!(
            (json["unmapped"]["user_id"].clone(), json["unmapped"]["user_email"].clone()),
            (json!("1502"), json!("ci-bot@example.com"))
        );
    }

    #[test]
    fn test_ids_in_an_action_become_placeholders() {
        let want = [
            ("create", "create", vec![]),
            ("rerun_monitor:4411", "rerun_monitor:{id}", vec!["4411"]),
            ("delete_1432", "delete_{id}", vec!["1432"]),
            (
                "view 9a7e2b1d-4c6e-4a3f-8e7d-6c5b4a21f0c9 now",
                "view {id} now",
                vec!["9a7e2b1d-4c6e-4a3f-8e7d-6c5b4a21f0c9"],
            ),
            ("run/monitors/77/now", "run/monitors/{id}/now", vec!["77"]),
            (":: 12 ::", ":: {id} ::", vec!["12"]),
            ("désactiver_ü 5", "désactiver_ü {id}", vec!["5"]),
            ("", "", vec![]),
        ];
        for (action, code, ids) in want {
            let (got, got_ids) = template_action(action);
            assert_eq!(got, code, "{action}");
            assert_eq!(got_ids.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ids, "{action}");
        }
    }

    #[test]
    fn test_security_actions_take_their_severity_from_the_signal_table() {
        let row = |action: Value, object_type: &str, method: &str, url: &str, payload: Value| {
            let fields = [
                ("action", action),
                ("object_type", json!(object_type)),
                ("request_type", json!(method)),
                ("url", json!(url)),
                ("payload", payload),
            ];
            with(&sample(1), "g", &fields)
        };
        let (n, s) = (Value::Null, |v: &str| json!(v));
        let want = [
            (row(s("create"), "api_key", "POST", "/api/v1/api_keys", n.clone()), Signal::CredentialCreated.severity()),
            (
                row(s("delete"), "api_key", "DELETE", "/api/v1/api_keys/55", n.clone()),
                Signal::CredentialDeleted.severity(),
            ),
            (
                row(n.clone(), "api_token", "POST", "/api/v1/api_tokens/55/rotate", n.clone()),
                Signal::CredentialRotated.severity(),
            ),
            (row(s("update"), "saml_config", "PUT", "/api/v1/saml/config", n.clone()), Signal::SsoChanged.severity()),
            (row(s("view"), "saml_config", "GET", "/api/v1/saml/config", n.clone()), Severity::Informational),
            (
                row(s("change_role"), "user", "PATCH", "/api/v1/users/1611", json!({"role": "admin"})),
                Signal::AdminGranted.severity(),
            ),
            (
                row(s("change_role"), "user", "PATCH", "/api/v1/users/1611", json!({"role": "viewer"})),
                Signal::PrivilegeGranted.severity(),
            ),
            (row(s("update"), "data_source", "PUT", "/api/v1/data_sources/587", n.clone()), Severity::Informational),
        ];
        for (record, severity) in want {
            assert_eq!(mapped(&record)["severity_id"], severity as u8, "{record}");
        }
        // A session token is no API credential.
        let refresh = row(s("refresh_session"), "session", "POST", "/api/internal/auth/token/refresh", n.clone());
        assert_eq!(mapped(&refresh)["severity_id"], Severity::Informational as u8);
        let personal = row(s("create"), "personal_access_token", "POST", "/api/v1/tokens", n.clone());
        assert_eq!(mapped(&personal)["severity_id"], Signal::CredentialCreated.severity() as u8);
        // Signals raise, never lower, and severity overrides still win (`map_record`).
        assert_eq!(Signal::CredentialCreated.severity(), Severity::Low);
    }

    #[test]
    fn test_unmapped_holds_only_fields_placed_nowhere() {
        for (name, raw, _) in cases() {
            let json = convert(&raw, ORG).unwrap();
            let unmapped = json["unmapped"].as_object().cloned().unwrap_or_default();
            for always in [
                "action",
                "event_uuid",
                "is_support_user",
                "log_entry",
                "referer",
                "status",
                "timestamp",
                "url",
                "user_agent",
            ] {
                assert!(!unmapped.contains_key(always), "{name}: {always} in {unmapped:?}");
            }
            assert_ne!(unmapped.get("payload"), Some(&json!("{}")), "{name}: an empty payload says nothing");
            if json.get("resources").is_some() || json["entity"].get("uid").is_some() {
                assert!(!unmapped.contains_key("object_id") && !unmapped.contains_key("object_type"), "{name}");
            }
        }
    }

    /// An `object_type` that is no name (an object) did not become the resource's type: it stays
    /// in `unmapped`, not dropped (adversarial review: it was marked placed and lost).
    #[test]
    fn test_an_object_type_of_another_shape_stays_in_unmapped() {
        let (_, raw, _) = cases().into_iter().find(|(_, raw, _)| raw.contains("\"object_id\"")).unwrap();
        let mut record: Value = serde_json::from_str(&raw).unwrap();
        record["object_type"] = json!({"kind": "dataset"});
        let json = convert(&record.to_string(), ORG).unwrap();
        assert_eq!(json["unmapped"]["object_type"], r#"{"kind":"dataset"}"#, "{json}");
    }

    /// Every attribute path with the JSON types it takes over `events` (`[]` for array items).
    fn types(events: &[Value]) -> std::collections::BTreeMap<String, std::collections::BTreeSet<&'static str>> {
        fn walk(
            v: &Value,
            path: String,
            out: &mut std::collections::BTreeMap<String, std::collections::BTreeSet<&'static str>>,
        ) {
            let kind = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(items) => {
                    items.iter().for_each(|i| walk(i, format!("{path}[]"), out));
                    "array"
                }
                Value::Object(o) => {
                    o.iter().for_each(|(k, x)| {
                        walk(x, if path.is_empty() { k.clone() } else { format!("{path}.{k}") }, out)
                    });
                    "object"
                }
            };
            out.entry(path).or_default().insert(kind);
        }
        let mut out = std::collections::BTreeMap::new();
        events.iter().for_each(|e| walk(e, String::new(), &mut out));
        out
    }

    /// What the simulator generates (3,000 records of one seed), mapped.
    fn simulated() -> Vec<Value> {
        let opts = crate::vendors::datafold::sim::DatafoldSimOptions { records: 3000, ..Default::default() };
        let store = crate::vendors::datafold::sim::Store::generate(7, &opts, "2026-04-02T12:00:00Z".parse().unwrap());
        store.records_json().iter().map(|raw| convert(raw, ORG).unwrap()).collect()
    }

    #[test]
    fn test_every_path_has_one_json_type() {
        let mut events: Vec<Value> = cases().iter().map(|(_, raw, _)| convert(raw, ORG).unwrap()).collect();
        events.extend(simulated());
        let mixed: Vec<_> = types(&events).into_iter().filter(|(_, kinds)| kinds.len() > 1).collect();
        assert!(mixed.is_empty(), "paths with more than one type: {mixed:?}");
    }

    #[test]
    fn test_simulated_records_map_as_the_rules_say() {
        let events = simulated();
        let raw = |e: &Value| serde_json::from_str::<Value>(e["raw_data"].as_str().unwrap()).unwrap();
        let logins: Vec<&Value> =
            events.iter().filter(|e| ["login", "logout"].contains(&raw(e)["action"].as_str().unwrap())).collect();
        assert!(logins.iter().all(|e| e["class_uid"] == 3002), "every sign-in and -out is 3002");
        let saml = logins.iter().filter(|e| e["auth_protocol_id"] == 5).count();
        let nobody = logins.iter().filter(|e| e["user"]["name"] == "unknown" && e["status_id"] == 2).count();
        let support = logins.iter().filter(|e| e["metadata"]["labels"] == json!(["support_user"])).count();
        assert!(saml > 50 && nobody > 5 && support > 0, "SAML {saml}, anonymous failures {nobody}, support {support}");
        let codes: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e["metadata"]["event_code"].as_str().unwrap()).collect();
        assert!(codes.iter().all(|c| !c.split(['/', ' ', ':']).any(crate::ocsf::paths::is_id)), "{codes:?}");
        for e in events.iter().step_by(7) {
            assert_valid(e);
        }
    }

    #[test]
    fn test_words_and_auth_actions() {
        assert_eq!(words("ssoLogin-v2 now"), ["sso", "login", "v2", "now"]);
        let want = [("login", Some(1)), ("log_in", Some(1)), ("SignOut", Some(2)), ("design_input", None)];
        for (action, id) in want {
            assert_eq!(auth_activity(Some(action), Some("/api/internal/auth/login")).map(|a| a.id()), id, "{action}");
        }
        // No action: the endpoint decides; a callback is a sign-in only under an SSO protocol.
        let paths = [
            ("/api/internal/auth/login", Some(1)),
            ("/api/internal/auth/saml/acs", Some(1)),
            ("/api/v1/oauth/callback", Some(1)),
            ("/api/v1/integrations/github/callback", None),
            ("/api/internal/auth/sign-out", Some(2)),
            ("/api/v1/users/login_history", None),
        ];
        for (path, id) in paths {
            assert_eq!(auth_activity(None, Some(path)).map(|a| a.id()), id, "{path}");
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
