//! Astronomer → OCSF 1.8.0 (`ocsf/MAPPING.md` §4.1, with §5a's revisions for detections).
//!
//! Source: Astro API `GET /v1/organizations/{organizationId}/audit-logs`, one gzipped NDJSON
//! body per time window, no paging, 2 requests a minute; the source handles all of that and
//! hands this module one decoded line. Astro logs are request-level (an actor, a source IP, an
//! operation), so a record is **6003 API Activity** unless the request names a security action
//! a rule must find in its IAM class whatever the vendor (§3, §5a rule 1). The record's category
//! is told from its fields (vendors README §2.5), see [`Category`].
//!
//! | request (REST path tail / GraphQL operation, see below) | class / activity | severity |
//! | --- | --- | --- |
//! | `users/{id}/roles` (not GET), `users/{id}` with `organizationRole`/`workspaceRole(s)`/`deploymentRole(s)` in the body, a workspace's or deployment's `users/{id}` with a bare `role`/`roles` too (the v1alpha1 IAM API); GraphQL ops naming a role (`updateUserRole`, `workspaceUserRoleUpdate`, `deploymentAddUserRole`) or adding a user, whose input names the user (not a team's or group's) | 3005 / 1 Assign Privileges: the roles as `privileges`, `user.uid` from the path or input, scopes in `resources` | AdminGranted (Medium) for an admin/owner role, else PrivilegeGranted (Low) |
//! | `DELETE …/users/{id}` (removal from the organization, workspace or deployment; SCIM `Users/{id}` too), `DELETE users/{id}/roles`; GraphQL `…RemoveUser…`/`…RemoveUserRole` | 3005 / 2 Revoke Privileges: the roles named, else the scope's type (`organization`, `workspace`, `deployment`): the user loses their access there, the account stays (so not 3001 Delete), and an organization or workspace is no group (so not 3006) | AdminRevoked (Low) for an admin role, else PrivilegeRevoked (Informational) |
//! | `POST …/api-tokens`, `…/api-tokens/{id}/rotate`, `DELETE …/api-tokens/{id}`, other writes of `api-tokens/{id}`; GraphQL ops on API tokens/keys, service accounts/keys (`createApiToken`, `rotateApiToken`, `deleteApiToken`, `revokeWorkspaceApiToken`, …) | 3004 / 1 Create, 3 Update (rotate, edit), 4 Delete on entity `api_token` (uid from the path or input, name from the body) | CredentialCreated (Low), CredentialRotated (Low), CredentialDeleted (Informational); an edit Informational |
//! | writes of `sso-connections` (and `saml-connections`, `identity-providers`) | 3004 / 1, 3, 4 on the connection | SsoChanged (Medium) |
//! | `POST …/invites`, GraphQL invite ops, with the invitee's e-mail | 3001 / 1 Create: `user` is the invitee | Informational |
//! | anything else; any of the above without its required target (no user, no token id or name) | 6003 (activity from the verb table or method below), keeping the severity of its kind | Informational unless kind says otherwise; GraphQL SSO writes SsoChanged |
//!
//! A GraphQL record's operation is the **root field** of the document in `requestBody` (the
//! text, or the `query` of an object or of JSON text of one): the first field selected by the
//! operation `operationName` names (else the first operation), its alias skipped, inline
//! fragments and named fragments spread at the root read as root selections; of several root
//! fields, the first that is a security action, else the first. `operationName` is the client's
//! choice (absent for an anonymous operation, a read's name on a mutation, a per-request name):
//! it is the operation only when no document can be read, and stays in `unmapped` when it is
//! not the root field. The verb table, the security action and the event code all read the
//! operation. A record with `correlationId`, `graphqlClientName`, `operationName`, or (with no
//! `method`/`path`) a GraphQL document is GraphQL. The parser is one pass over bytes with
//! depth counters, no recursion, a few definitions and fields read at most.
//!
//! Event codes rules can match (§5a rule 4): `metadata.event_code` (and 6003 `api.operation`) is
//! the GraphQL operation (an API name: a root field); for REST `"METHOD <templated path>"`
//! (`POST /v1beta1/organizations/{org}/api-tokens/{id}/rotate`, [`crate::ocsf::paths::template`]
//! plus what only Astro's paths tell: the members of its collections, such as DAG ids or ids
//! without a digit, and the SCIM organization) with each id in `resources[]` `{uid, type}`
//! (the organization's short name as the name of the organization resource); Airflow UI,
//! Cloud IDE and registry access their category (`airflowUiAccess`, `cloudIdeAccess`,
//! `containerRegistryAccess`), never a path. 3004 and 3001 have no `resources`: there the token
//! or invitee is the target, the organization `metadata.tenant_uid`, the path in `http_request`.
//!
//! The actor is `subjectId`, typed from `subjectType` (USER → User, SERVICEKEY/API token →
//! Service, else Other), with the client (`graphqlClientName`, else `astroClient`) as
//! `actor.app_name`. A REST `requestId` is `http_request.uid` in every class (and 6003's
//! `api.request.uid`, as `correlationId` is for GraphQL). Every field placed is left out of
//! `unmapped` (§5a rule 9; MAPPING §4.1 kept `subjectType` there too); `requestBody` and
//! `requestInput` are read as objects or JSON text, and left out when every key was placed or
//! they are empty.
//!
//! Leaves to others: the dedupe key (a content hash: Astro records have no id) and the event
//! time (the source), the configured severity override (the caller, keyed by `event_code`).

use serde_json::{Map, Value};

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Api, ApiActivity, ApiActivityId, ApiRequest, Class, EntityManagement,
    EntityManagementId, EventParts, HttpRequest, HttpResponse, ManagedEntity, ResourceDetails, Service, Severity,
    Status, Url, User, UserAccess, UserAccessId, UserType,
};
use crate::ocsf::{
    Context, Fields, Signal, Unmappable, email, http_method, is_admin_privilege, paths, src_endpoint, status_from_http,
    status_from_word, text,
};

/// The kinds of Astro audit record (vendors README §2.5). Astro does not label them, so they
/// are told apart by the fields each kind adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    /// v1 GraphQL API event: `operationName`, `correlationId`, `graphqlClientName`, a GraphQL
    /// document in `requestBody` (an anonymous operation has no `operationName`).
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
    /// `document`: whether `requestBody` holds a GraphQL document with a root field.
    fn of(record: &Map<String, Value>, document: bool) -> Category {
        let has = |key: &str| record.get(key).is_some_and(|v| !v.is_null());
        let path = text(record, "path").unwrap_or_default();
        let segments = || path.split('/').map(str::to_ascii_lowercase);
        let graphql = ["operationName", "correlationId", "graphqlClientName"].iter().any(|k| has(k));
        if graphql || (document && !has("method") && !has("path")) {
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
    let operation_name = text(record, "operationName");
    let roots = graphql_document(record).map(|d| root_fields(&d, operation_name.as_deref())).unwrap_or_default();
    let category = Category::of(record, !roots.is_empty());
    // A GraphQL operation is its root field (the client names the operation as it likes, or
    // not at all); `operationName` only without a document.
    let graphql_operation = match category {
        Category::GraphQl => root_operation(record, &roots).or_else(|| operation_name.clone()),
        _ => None,
    };
    // `operationName` is placed when it is the event code; a different name stays in `unmapped`
    // (`method`, taken below whenever present, stands in as the field that chose the mapping).
    let named = graphql_operation.is_some() && graphql_operation == operation_name;
    let mut f = Fields::new(record, if named { "operationName" } else { "method" });
    let method = f.take("method").map(|m| m.trim().to_ascii_uppercase());
    let path = f.take("path");
    let rest_path = match category {
        Category::Rest | Category::CloudIde => path.as_deref().map(RestPath::new),
        _ => None,
    };
    // event_code = api.operation: the GraphQL operation, else the category name, else
    // "METHOD path" with the path templated. Vendors README §2.5 puts "METHOD path" before the
    // category; but an Airflow UI or registry path names a page or an image of one deployment,
    // and the category name is the stabler severity-override key.
    let operation = graphql_operation
        .clone()
        .or_else(|| category.operation().map(str::to_owned))
        .or_else(|| {
            let templated = rest_path.as_ref().map(|p| p.template.clone());
            match (&method, templated) {
                (Some(m), Some(p)) => Some(format!("{m} {p}")),
                (m, p) => m.clone().or(p),
            }
        })
        .unwrap_or_else(|| "unknown".to_owned());

    let mut metadata = ctx.metadata("astronomer", "Astro", "Astronomer", "Astro API audit-logs");
    metadata.event_code = Some(operation.clone());
    metadata.original_time = f.take("timestamp");
    metadata.correlation_uid = f.take("correlationId");

    let response_status = f.take("responseStatus");
    let response_code = response_status.as_deref().and_then(|s| s.trim().parse::<i64>().ok());
    // MAPPING §4.1: status_id is 0 unless the record carries a status (an HTTP code, or a word).
    let status = match (response_code, &response_status) {
        (Some(code), _) => status_from_http(code),
        (None, Some(word)) => status_from_word(word),
        (None, None) => Status::Unknown,
    };
    let organization = f.take("organizationId").or_else(|| Some(ctx.organization.to_owned()));
    let organization = Organization {
        uid: organization.filter(|o| !o.is_empty()),
        short_name: rest_path.as_ref().and_then(RestPath::organization),
    };
    let request_id = f.take("requestId");
    let http_request = http_request(&mut f, category, method.clone(), path, request_id.clone());
    let actor = actor(&mut f);
    let src = src_endpoint(record, "sourceIp");
    if src.is_some() {
        f.place("sourceIp");
    }
    // An empty body or input (`{}`, `""`) says nothing `raw_data` does not: not repeated.
    for key in ["requestBody", "requestInput"] {
        if record.get(key).and_then(crate::ocsf::as_text).is_some_and(|t| matches!(t.trim(), "" | "{}" | "[]")) {
            f.place(key);
        }
    }

    let request =
        Request { record, category, method: method.as_deref(), path: rest_path.as_ref(), operation: &operation };
    let action = match category {
        Category::Rest => rest_action(&request),
        Category::GraphQl => graphql_action(&request),
        _ => Action::Api { signal: None },
    };
    let severity = action.severity();
    let resource_list = |f: &mut Fields<'_>, skip: Option<&str>| {
        Some(resources(f, &request, &organization, skip)).filter(|l| !l.is_empty())
    };
    let class = match action {
        Action::Access { activity, user, privileges, scopes, placed } => {
            placed.into_iter().for_each(|key| f.place(key));
            let mut list = resource_list(&mut f, user.uid.as_deref()).unwrap_or_default();
            for scope in scopes {
                if !list.iter().any(|r| r.uid == scope.uid && r.kind == scope.kind) {
                    list.push(scope);
                }
            }
            Class::UserAccess(UserAccess {
                activity,
                user,
                privileges,
                resources: Some(list).filter(|l| !l.is_empty()),
                actor,
                src_endpoint: src,
                http_request,
            })
        }
        Action::Entity { activity, mut entity, data, .. } => {
            entity.data = data.and_then(|key| f.take_value(key)).filter(|d| !matches!(d.trim(), "{}" | "[]"));
            Class::EntityManagement(EntityManagement {
                activity,
                entity,
                entity_result: None,
                actor,
                src_endpoint: src,
                http_request,
                comment: None,
            })
        }
        Action::Invite { user } => Class::AccountChange(AccountChange {
            activity: AccountChangeId::Create,
            user,
            user_result: None,
            actor,
            src_endpoint: src,
            http_request,
        }),
        Action::Api { .. } => match (actor, src) {
            (Some(actor), Some(src_endpoint)) => Class::ApiActivity(ApiActivity {
                activity: activity(graphql_operation.as_deref(), category, method.as_deref()),
                actor,
                api: Api {
                    operation: operation.clone(),
                    service: Some(Service { name: category.service().to_owned() }),
                    // correlationId on GraphQL events (MAPPING §4.1); REST ones carry a requestId.
                    request: metadata.correlation_uid.clone().or(request_id).map(|uid| ApiRequest { uid }),
                    response: None,
                },
                src_endpoint,
                http_request,
                http_response: response_code.map(|code| HttpResponse { code }),
                resources: resource_list(&mut f, None),
            }),
            // MAPPING §3 rule 7: without an actor or a source, 6003 cannot be filled; say what
            // happened to the organization (or the deployment) instead.
            (actor, src_endpoint) => Class::EntityManagement(EntityManagement {
                activity: EntityManagementId::from(activity(graphql_operation.as_deref(), category, method.as_deref())),
                entity: fallback_entity(&mut f, &organization)
                    .ok_or_else(|| Unmappable("Astro record names no subject, source or organization".into()))?,
                entity_result: None,
                actor,
                src_endpoint,
                http_request,
                comment: None,
            }),
        },
    };

    Ok(EventParts {
        class,
        severity,
        time: ctx.time_ms(),
        metadata,
        status: Some(status),
        status_code: response_status,
        status_detail: None,
        message: None,
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(f.unmapped()),
    })
}

/// The organization a record belongs to: its id, and the short name its REST paths use.
struct Organization {
    uid: Option<String>,
    short_name: Option<String>,
}

/// What the classification reads of a record.
struct Request<'a> {
    record: &'a Map<String, Value>,
    category: Category,
    method: Option<&'a str>,
    path: Option<&'a RestPath>,
    operation: &'a str,
}

/// A REST path with its ids found: [`paths::template`], plus what only Astro's paths tell
/// (the members of its [`COLLECTIONS`]; SCIM paths name the organization after the version).
#[derive(Debug, Clone)]
struct RestPath {
    /// The path with `{org}` / `{id}` for the ids: what the event code carries.
    template: String,
    /// The non-empty segments: the API's own names, or an id with the type it names.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Name(String),
    Id { value: String, kind: String },
}

/// Astro's REST collections (vendors README §2.5) with the type of their members: the segment
/// after one is a member, a placeholder whatever it looks like — a name the user gave (Airflow's
/// DAG, run and task ids) or an id [`paths::is_id`] cannot tell from a word (a cuid without a
/// digit).
const COLLECTIONS: &[(&str, &str)] = &[
    ("dags", "dag"),
    ("dagRuns", "dag_run"),
    ("taskInstances", "task_instance"),
    ("tasks", "task"),
    ("workspaces", "workspace"),
    ("deployments", "deployment"),
    ("clusters", "cluster"),
    ("users", "user"),
    ("teams", "team"),
    ("members", "member"),
    ("api-tokens", "api_token"),
    ("domains", "domain"),
    ("invites", "invite"),
    ("sso-connections", "sso_connection"),
    ("projects", "project"),
    ("pipelines", "pipeline"),
    ("cells", "cell"),
    ("Groups", "group"),
];

impl RestPath {
    fn new(path: &str) -> RestPath {
        let core = paths::template(path);
        let raw: Vec<&str> = path.split(['?', '#']).next().unwrap_or_default().split('/').collect();
        let mut ids = core.ids.into_iter();
        let mut template = Vec::new();
        let mut segments = Vec::new();
        let mut previous = "";
        for (i, seg) in core.path.split('/').enumerate() {
            let value = raw.get(i).copied().unwrap_or(seg);
            let before = |n: usize| i.checked_sub(n).and_then(|j| raw.get(j)).copied().unwrap_or_default();
            // The core replaced exactly the segments that differ from the path's, and an
            // organization segment that is literally `{org}` (it is in the core's ids too).
            let replaced = value != seg || (value == "{org}" && previous.eq_ignore_ascii_case("organizations"));
            let core_id = if replaced { ids.next() } else { None };
            if !value.is_empty() {
                previous = value;
            }
            let named = COLLECTIONS.iter().find(|(collection, _)| collection.eq_ignore_ascii_case(before(1)));
            // `/scim/v2/<organization>/…`.
            let scim_org = paths::is_version(before(1)) && before(2).eq_ignore_ascii_case("scim");
            let (placeholder, id) = if !value.is_empty() && scim_org {
                ("{org}", Some((value.to_owned(), "organization".to_owned())))
            } else if let Some(id) = core_id {
                (seg, Some(id))
            } else if let (Some((_, kind)), false) = (named, value.is_empty()) {
                ("{id}", Some((value.to_owned(), (*kind).to_owned())))
            } else {
                (seg, None)
            };
            template.push(placeholder);
            match id {
                Some((value, kind)) => segments.push(Segment::Id { value, kind }),
                None if !seg.is_empty() => segments.push(Segment::Name(seg.to_owned())),
                None => {}
            }
        }
        RestPath { template: template.join("/"), segments }
    }

    /// The organization segment's value (its short name or id).
    fn organization(&self) -> Option<String> {
        self.ids().find(|(_, kind)| *kind == "organization").map(|(v, _)| v.to_owned())
    }

    /// Every id with the type it names, in path order.
    fn ids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Id { value, kind } => Some((value.as_str(), kind.as_str())),
            Segment::Name(_) => None,
        })
    }

    /// Whether the path ends with these segments: a name, or `None` for any id.
    fn ends_with(&self, tail: &[Option<&str>]) -> bool {
        self.segments.len() >= tail.len()
            && self.segments[self.segments.len() - tail.len()..].iter().zip(tail).all(|(s, want)| match (s, want) {
                (Segment::Name(name), Some(want)) => name.eq_ignore_ascii_case(want),
                (Segment::Id { .. }, None) => true,
                _ => false,
            })
    }

    /// The id `back` segments from the end (0: the last segment), if it is one.
    fn id_from_end(&self, back: usize) -> Option<(&str, &str)> {
        match self.segments.iter().rev().nth(back)? {
            Segment::Id { value, kind } => Some((value, kind)),
            Segment::Name(_) => None,
        }
    }

    /// The last collection name in the path that is one of `names`, with its position.
    fn position_of(&self, names: &[&str]) -> Option<usize> {
        self.segments
            .iter()
            .rposition(|s| matches!(s, Segment::Name(n) if names.iter().any(|w| n.eq_ignore_ascii_case(w))))
    }
}

/// What a request did, as far as a detection rule cares.
enum Action {
    /// 3005: roles given to or taken from a user; `placed` are the record fields fully read.
    Access {
        activity: UserAccessId,
        user: User,
        privileges: Vec<String>,
        scopes: Vec<ResourceDetails>,
        placed: Vec<&'static str>,
    },
    /// 3004 on a credential or an SSO connection; `data` is the field describing it.
    Entity { activity: EntityManagementId, signal: Option<Signal>, entity: ManagedEntity, data: Option<&'static str> },
    /// 3001 Create: a user invited.
    Invite { user: User },
    /// 6003 (or its fallback), with the severity of its kind where it has one.
    Api { signal: Option<Signal> },
}

impl Action {
    fn severity(&self) -> Severity {
        let signal = match self {
            Action::Access { activity, privileges, .. } => {
                let admin = privileges.iter().any(|p| is_admin_privilege(p));
                Some(match (activity, admin) {
                    (UserAccessId::RevokePrivileges, true) => Signal::AdminRevoked,
                    (UserAccessId::RevokePrivileges, false) => Signal::PrivilegeRevoked,
                    (_, true) => Signal::AdminGranted,
                    (_, false) => Signal::PrivilegeGranted,
                })
            }
            Action::Entity { signal, .. } | Action::Api { signal } => *signal,
            Action::Invite { .. } => None,
        };
        signal.map_or(Severity::Informational, Signal::severity)
    }
}

/// The collections SSO configuration lives in.
const SSO: &[&str] = &["sso-connections", "saml-connections", "identity-providers"];

/// A REST request's security action, from its method and path (reads change nothing).
fn rest_action(req: &Request<'_>) -> Action {
    let (Some(path), Some(method)) = (req.path, req.method) else { return Action::Api { signal: None } };
    if matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return Action::Api { signal: None };
    }
    let body = object(req.record, "requestBody");
    let delete = method == "DELETE";
    // users/{id}/roles, users/{id} with roles in the body, DELETE users/{id}.
    let roles_path = path.ends_with(&[Some("users"), None, Some("roles")]);
    let user_path = path.ends_with(&[Some("users"), None]);
    // The scope the user gets or leaves: what the `users` collection hangs under.
    let users_at = path.position_of(&["users"]).unwrap_or_default();
    let scope = users_at.checked_sub(1).and_then(|i| match &path.segments[i] {
        Segment::Id { kind, .. } => Some(kind.clone()),
        Segment::Name(_) => None,
    });
    // A bare `role(s)` is a role on a roles path, and on a workspace's or deployment's
    // `users/{id}` (the v1alpha1 IAM API sets a member's role there with `{"role": …}`).
    let scoped_user = user_path && matches!(scope.as_deref(), Some("workspace" | "deployment"));
    let granted = body.as_ref().map(|b| roles(b, roles_path || scoped_user)).unwrap_or_default();
    if roles_path || (user_path && (delete || !granted.privileges.is_empty())) {
        let user_id = path.id_from_end(if roles_path { 1 } else { 0 }).map(|(v, _)| v.to_owned());
        let activity = if delete { UserAccessId::RevokePrivileges } else { UserAccessId::AssignPrivileges };
        let whole = body.as_ref().is_some_and(|b| granted.read_all_of(b, &[]));
        let placed = if whole { vec!["requestBody"] } else { Vec::new() };
        return access(activity, user(user_id, None), granted, scope, placed);
    }
    if let Some(at) = path.position_of(&["api-tokens"]) {
        let tail = path.segments.len() - at;
        let (activity, signal) = match (tail, method, path.segments.last()) {
            (1, "POST", _) => (EntityManagementId::Create, Some(Signal::CredentialCreated)),
            (2, "DELETE", _) => (EntityManagementId::Delete, Some(Signal::CredentialDeleted)),
            (2, _, _) => (EntityManagementId::Update, None),
            (3, _, Some(Segment::Name(n))) if n.eq_ignore_ascii_case("rotate") => {
                (EntityManagementId::Update, Some(Signal::CredentialRotated))
            }
            _ => return Action::Api { signal: None },
        };
        let uid = path.segments.get(at + 1).and_then(|s| match s {
            Segment::Id { value, .. } => Some(value.clone()),
            Segment::Name(_) => None,
        });
        let name = body.as_ref().and_then(|b| text(b, "name"));
        return entity(activity, signal, uid, name, "api_token", "requestBody");
    }
    if let Some(at) = path.position_of(SSO) {
        let signal = Some(Signal::SsoChanged);
        let uid = path.segments.get(at + 1).and_then(|s| match s {
            Segment::Id { value, .. } => Some(value.clone()),
            Segment::Name(_) => None,
        });
        let activity = match (method, uid.is_some()) {
            ("POST", false) => EntityManagementId::Create,
            ("DELETE", _) => EntityManagementId::Delete,
            _ => EntityManagementId::Update,
        };
        let Segment::Name(collection) = &path.segments[at] else { return Action::Api { signal } };
        let kind = collection.to_ascii_lowercase().replace('-', "_");
        let kind = kind.strip_suffix('s').unwrap_or(&kind).to_owned();
        let name = body.as_ref().and_then(|b| text(b, "name"));
        return entity(activity, signal, uid, name, &kind, "requestBody");
    }
    if path.ends_with(&[Some("invites")]) && method == "POST" {
        let invitee = body.as_ref().and_then(|b| email(text(b, "inviteEmail").or_else(|| text(b, "email"))));
        if let Some(address) = invitee {
            return Action::Invite { user: user(None, Some(address)) };
        }
    }
    Action::Api { signal: None }
}

/// The root field a GraphQL record is about: the first one that is a security action, else the
/// first (a document may select several, an alias or a read placed before a grant).
fn root_operation(record: &Map<String, Value>, roots: &[String]) -> Option<String> {
    let security = |root: &&String| {
        let req = Request { record, category: Category::GraphQl, method: None, path: None, operation: root.as_str() };
        !matches!(graphql_action(&req), Action::Api { signal: None })
    };
    roots.iter().find(security).or(roots.first()).cloned()
}

/// A GraphQL operation's security action, from the words of its root field and its input.
fn graphql_action(req: &Request<'_>) -> Action {
    let op = req.operation;
    let verb = verb_activity(op);
    if matches!(verb, ApiActivityId::Read) {
        return Action::Api { signal: None };
    }
    let words = words(op);
    let has = |w: &str| words.iter().any(|x| x == w);
    let input = object(req.record, "requestInput").unwrap_or_default();
    let lower = op.to_ascii_lowercase();
    let revoke = ["remove", "delete", "revoke", "unassign"].iter().any(|w| has(w));

    if ["apitoken", "apikey", "serviceaccount", "servicekey"].iter().any(|w| lower.contains(w)) {
        let (activity, signal) = if ["rotate", "regenerate", "roll"].iter().any(|w| has(w)) {
            (EntityManagementId::Update, Some(Signal::CredentialRotated))
        } else {
            match verb {
                ApiActivityId::Create => (EntityManagementId::Create, Some(Signal::CredentialCreated)),
                ApiActivityId::Delete => (EntityManagementId::Delete, Some(Signal::CredentialDeleted)),
                ApiActivityId::Update => (EntityManagementId::Update, None),
                _ => return Action::Api { signal: None },
            }
        };
        const IDS: &[&str] = &[
            "apiTokenId",
            "tokenId",
            "apiKeyId",
            "serviceAccountId",
            "serviceAccountUuid",
            "serviceKeyId",
            "id",
            "uuid",
        ];
        let uid = IDS.iter().find_map(|k| text(&input, k));
        let name = text(&input, "name").or_else(|| text(&input, "label"));
        return entity(activity, signal, uid, name, "api_token", "requestInput");
    }
    // A team's or group's roles and members are a group's (3006), not one user's: left as 6003.
    let group = has("team") || has("group");
    if !group && (has("role") || has("roles") || ((has("add") || has("remove")) && (has("user") || has("member")))) {
        const USER_IDS: &[&str] = &["userId", "userUuid", "userID", "memberId"];
        const EMAILS: &[&str] = &["email", "userEmail"];
        let granted = roles(&input, true);
        let id = USER_IDS.iter().find_map(|k| text(&input, k));
        let address = email(EMAILS.iter().find_map(|k| text(&input, k)));
        if id.is_none() && address.is_none() {
            return Action::Api { signal: None };
        }
        let scope = ["deployment", "workspace", "organization"].into_iter().find(|w| has(w)).map(str::to_owned);
        let activity = if revoke { UserAccessId::RevokePrivileges } else { UserAccessId::AssignPrivileges };
        // The user, the role and the scope ids (resources) are all an input usually holds.
        let read = [USER_IDS, EMAILS, &["workspaceId", "deploymentId"]].concat();
        let placed = if granted.read_all_of(&input, &read) { vec!["requestInput"] } else { Vec::new() };
        return access(activity, user(id, address), granted, scope, placed);
    }
    if has("invite") && matches!(verb, ApiActivityId::Create) {
        let address = email(["email", "inviteEmail", "userEmail"].iter().find_map(|k| text(&input, k)));
        if let Some(address) = address {
            return Action::Invite { user: user(None, Some(address)) };
        }
    }
    let sso = ["sso", "saml", "idp"].iter().any(|w| has(w));
    Action::Api { signal: (sso && !matches!(verb, ApiActivityId::Other(_))).then_some(Signal::SsoChanged) }
}

/// A 3005 action: without a role named, the privilege is the scope's type (§5a rule 1: the
/// entity's type; never a user's name).
fn access(
    activity: UserAccessId,
    user: User,
    granted: Roles,
    scope: Option<String>,
    placed: Vec<&'static str>,
) -> Action {
    let mut privileges = granted.privileges;
    if privileges.is_empty() {
        privileges.push(scope.unwrap_or_else(|| "organization".to_owned()));
    }
    Action::Access { activity, user, privileges, scopes: granted.scopes, placed }
}

/// A 3004 action on `kind`; without an id or a name it cannot be built: 6003 keeps its severity.
fn entity(
    activity: EntityManagementId,
    signal: Option<Signal>,
    uid: Option<String>,
    name: Option<String>,
    kind: &str,
    data: &'static str,
) -> Action {
    if uid.is_none() && name.is_none() {
        return Action::Api { signal };
    }
    let entity =
        ManagedEntity { uid, name, type_id: Some(99), kind: Some(kind.to_owned()), ..ManagedEntity::default() };
    Action::Entity { activity, signal, entity, data: Some(data) }
}

/// A target user: the id, else the e-mail as the name (§5a rule 7).
fn user(uid: Option<String>, address: Option<String>) -> User {
    let name = if uid.is_none() { address.clone() } else { None };
    User { uid, name, email_addr: address, ..User::default() }.typed(UserType::User)
}

/// The roles a request body or GraphQL input names, with the workspaces and deployments they
/// apply to, and the keys that named them.
#[derive(Default)]
struct Roles {
    privileges: Vec<String>,
    scopes: Vec<ResourceDetails>,
    used: Vec<&'static str>,
}

impl Roles {
    /// Whether every key of `m` was read, here or as one of `also`: then nothing of it is left
    /// for `unmapped`.
    fn read_all_of(&self, m: &Map<String, Value>, also: &[&str]) -> bool {
        m.keys().all(|k| self.used.contains(&k.as_str()) || also.contains(&k.as_str()))
    }
}

/// Reads `organizationRole`, `workspaceRole(s)`, `deploymentRole(s)` (the Astro IAM API's
/// body), and with `plain` a bare `role` / `roles` (a roles endpoint or a role operation).
fn roles(m: &Map<String, Value>, plain: bool) -> Roles {
    let mut out = Roles::default();
    let mut used: Vec<&'static str> = Vec::new();
    // A role with the id of what it applies to: `{workspaceRole, workspaceId}` in the body, or
    // an item `{workspaceId, role}` of `workspaceRoles`.
    let scoped = |out: &mut Roles, item: &Map<String, Value>, role_keys: [&str; 2], id_key: &str, kind: &str| {
        if let Some(role) = role_keys.iter().find_map(|k| text(item, k)) {
            out.privileges.push(role);
        }
        if let Some(uid) = text(item, id_key) {
            out.scopes.push(ResourceDetails { uid: Some(uid), name: None, kind: Some(kind.to_owned()), data: None });
        }
    };
    if let Some(role) = text(m, "organizationRole") {
        out.privileges.push(role);
        used.push("organizationRole");
    }
    for (kind, id_key, one, many) in [
        ("workspace", "workspaceId", "workspaceRole", "workspaceRoles"),
        ("deployment", "deploymentId", "deploymentRole", "deploymentRoles"),
    ] {
        if m.get(one).is_some_and(Value::is_string) {
            scoped(&mut out, m, [one, one], id_key, kind);
            used.extend([one, id_key]);
        }
        if let Some(items) = m.get(many).and_then(Value::as_array) {
            let items = items.iter().filter_map(Value::as_object);
            items.for_each(|item| scoped(&mut out, item, ["role", one], id_key, kind));
            used.push(many);
        }
    }
    if plain {
        if let Some(role) = text(m, "role") {
            out.privileges.push(role);
            used.push("role");
        }
        for item in m.get("roles").and_then(Value::as_array).into_iter().flatten() {
            out.privileges
                .extend(item.as_str().map(str::to_owned).or_else(|| item.as_object().and_then(|o| text(o, "role"))));
            used.push("roles");
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.privileges.retain(|p| seen.insert(p.clone()));
    out.used = used;
    out
}

/// A field holding an object, or JSON text of one (Astro sends `requestBody` both ways).
fn object(record: &Map<String, Value>, key: &str) -> Option<Map<String, Value>> {
    match record.get(key)? {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?.as_object().cloned(),
        _ => None,
    }
}

/// The GraphQL document of a record: `requestBody` as the document text, or the `query` of an
/// object (or of JSON text of one). JSON that is no such object is no document (a REST body).
fn graphql_document(record: &Map<String, Value>) -> Option<String> {
    let query = |m: &Map<String, Value>| m.get("query").and_then(Value::as_str).map(str::to_owned);
    match record.get("requestBody")? {
        Value::Object(m) => query(m),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => query(&m),
            Ok(Value::String(inner)) => Some(inner),
            Ok(_) => None,
            Err(_) => Some(s.clone()),
        },
        _ => None,
    }
}

/// The longest root field name taken: anything longer is no API name.
const MAX_NAME: usize = 128;
/// How many definitions of a document, and root fields of one operation, are read.
const MAX_DEFINITIONS: usize = 16;
const MAX_FIELDS: usize = 16;

/// A GraphQL token, as far as finding root fields needs: a name, a punctuator, the `...`
/// spread; any value (a string, a number, a `$variable`) is just a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Name(&'a str),
    Punct(u8),
    Spread,
    Value,
}

/// A GraphQL lexer over bytes: one pass, no allocation, no recursion. A byte it does not know
/// (any non-ASCII one too) is a punctuator of its own, so any input is read to its end.
struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Lexer<'a> {
    type Item = Token<'a>;

    fn next(&mut self) -> Option<Token<'a>> {
        let bytes = self.text.as_bytes();
        let run = |from: usize, keep: fn(u8) -> bool| from + bytes[from..].iter().take_while(|b| keep(**b)).count();
        // Ignored tokens: white space, commas, comments, a byte-order mark.
        loop {
            match *bytes.get(self.at)? {
                b' ' | b'\t' | b'\n' | b'\r' | b',' => self.at += 1,
                b'#' => self.at = run(self.at, |b| b != b'\n'),
                0xEF if bytes[self.at..].starts_with(b"\xEF\xBB\xBF") => self.at += 3,
                _ => break,
            }
        }
        let start = self.at;
        let token = match bytes[start] {
            b'_' | b'a'..=b'z' | b'A'..=b'Z' => {
                self.at = run(start, |b| b == b'_' || b.is_ascii_alphanumeric());
                // ASCII on both sides: always char boundaries.
                Token::Name(self.text.get(start..self.at).unwrap_or_default())
            }
            b'"' if bytes[start..].starts_with(b"\"\"\"") => {
                let mut i = start + 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                self.at = (i + 3).min(bytes.len());
                Token::Value
            }
            b'"' => {
                let mut i = start + 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                self.at = (i + 1).min(bytes.len());
                Token::Value
            }
            b'.' if bytes[start..].starts_with(b"...") => {
                self.at += 3;
                Token::Spread
            }
            b'$' | b'-' | b'0'..=b'9' => {
                self.at =
                    run(start + 1, |b| b == b'_' || b == b'.' || b == b'+' || b == b'-' || b.is_ascii_alphanumeric());
                Token::Value
            }
            other => {
                self.at += 1;
                Token::Punct(other)
            }
        };
        Some(token)
    }
}

type Tokens<'a> = std::iter::Peekable<Lexer<'a>>;

/// Skips past the bracket closing `open` (just read), counting depth: no recursion.
fn skip_balanced(tokens: &mut Tokens<'_>, open: u8) {
    let close = if open == b'(' { b')' } else { b'}' };
    let mut depth = 1usize;
    for token in tokens.by_ref() {
        match token {
            Token::Punct(b) if b == open => depth += 1,
            Token::Punct(b) if b == close => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return;
        }
    }
}

/// Skips what may follow a selection's name: arguments, directives, a selection set.
fn skip_selection_rest(tokens: &mut Tokens<'_>) {
    loop {
        match tokens.peek() {
            Some(Token::Punct(open @ (b'(' | b'{'))) => {
                let open = *open;
                tokens.next();
                skip_balanced(tokens, open);
            }
            Some(Token::Punct(b'@')) => {
                tokens.next();
                tokens.next_if(|t| matches!(t, Token::Name(_)));
            }
            _ => return,
        }
    }
}

/// A root selection: a field (by its name, not its alias) or a named fragment spread.
enum Root<'a> {
    Field(&'a str),
    Spread(&'a str),
}

/// An operation or fragment definition of a document, with its root selections.
struct Definition<'a> {
    fragment: bool,
    name: Option<&'a str>,
    roots: Vec<Root<'a>>,
}

/// The definitions of a GraphQL document, read up to the first thing that is not GraphQL.
fn definitions(document: &str) -> Vec<Definition<'_>> {
    let mut tokens = Lexer { text: document, at: 0 }.peekable();
    let mut out = Vec::new();
    while out.len() < MAX_DEFINITIONS {
        // `{` (a query in short), or `query|mutation|subscription|fragment`, an optional name,
        // then variable definitions, a fragment's `on Type`, directives, up to the `{`.
        let (fragment, name) = match tokens.next() {
            Some(Token::Punct(b'{')) => (false, None),
            Some(Token::Name(kind @ ("query" | "mutation" | "subscription" | "fragment"))) => {
                let name = tokens.next_if(|t| matches!(t, Token::Name(_)));
                loop {
                    match tokens.next() {
                        Some(Token::Punct(b'{')) => break,
                        Some(Token::Punct(b'(')) => skip_balanced(&mut tokens, b'('),
                        Some(Token::Punct(b'@') | Token::Name(_)) => {}
                        _ => return out,
                    }
                }
                (kind == "fragment", name.and_then(|t| if let Token::Name(n) = t { Some(n) } else { None }))
            }
            _ => break,
        };
        // The selection set: fields (after an alias and `:`), named fragment spreads, and the
        // selections of inline fragments (`... on Mutation { … }`), which are root ones too.
        let mut roots = Vec::new();
        let mut inline = 0usize;
        let complete = loop {
            match tokens.next() {
                Some(Token::Punct(b'}')) if inline == 0 => break true,
                Some(Token::Punct(b'}')) => inline -= 1,
                Some(Token::Name(first)) => {
                    let field = match tokens.next_if_eq(&Token::Punct(b':')) {
                        Some(_) => match tokens.next() {
                            Some(Token::Name(field)) => field,
                            _ => break false,
                        },
                        None => first,
                    };
                    if roots.len() < MAX_FIELDS && field.len() <= MAX_NAME {
                        roots.push(Root::Field(field));
                    }
                    skip_selection_rest(&mut tokens);
                }
                Some(Token::Spread) => match tokens.next_if(|t| matches!(t, Token::Name(_))) {
                    Some(Token::Name("on")) | None => {
                        tokens.next_if(|t| matches!(t, Token::Name(_)));
                        while tokens.next_if_eq(&Token::Punct(b'@')).is_some() {
                            tokens.next_if(|t| matches!(t, Token::Name(_)));
                            if tokens.next_if_eq(&Token::Punct(b'(')).is_some() {
                                skip_balanced(&mut tokens, b'(');
                            }
                        }
                        match tokens.next() {
                            Some(Token::Punct(b'{')) => inline += 1,
                            _ => break false,
                        }
                    }
                    Some(Token::Name(spread)) => {
                        if roots.len() < MAX_FIELDS {
                            roots.push(Root::Spread(spread));
                        }
                        skip_selection_rest(&mut tokens);
                    }
                    Some(_) => break false,
                },
                _ => break false,
            }
        };
        out.push(Definition { fragment, name, roots });
        if !complete {
            break;
        }
    }
    out
}

/// The root fields of a GraphQL document's operation: the one `operation_name` names, else the
/// first; named fragments spread at the root expanded (each once). Empty for no GraphQL.
fn root_fields(document: &str, operation_name: Option<&str>) -> Vec<String> {
    let definitions = definitions(document);
    let operations = || definitions.iter().filter(|d| !d.fragment);
    let named = operations().find(|d| d.name.is_some() && d.name == operation_name);
    let Some(operation) = named.or_else(|| operations().next()) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    let mut expanded: Vec<&str> = Vec::new();
    let mut stack: Vec<&Root<'_>> = operation.roots.iter().rev().collect();
    while let Some(root) = stack.pop()
        && out.len() < MAX_FIELDS
    {
        match *root {
            Root::Field(field) => {
                if !out.iter().any(|f| f == field) {
                    out.push(field.to_owned());
                }
            }
            Root::Spread(name) if !expanded.contains(&name) => {
                expanded.push(name);
                let fragment = definitions.iter().find(|d| d.fragment && d.name == Some(name));
                stack.extend(fragment.into_iter().flat_map(|d| d.roots.iter().rev()));
            }
            Root::Spread(_) => {}
        }
    }
    out
}

/// The lower-case words of an operation name: `revokeWorkspaceApiToken` → revoke, workspace,
/// api, token; `SSOConnectionUpdate` → sso, connection, update.
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            out.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1);
        let hump = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(char::is_ascii_lowercase))
            });
        if hump && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    out.extend((!current.is_empty()).then_some(current));
    out
}

/// The 6003 activity: the GraphQL operation's from the verb table, else per category (MAPPING
/// §4.1).
fn activity(graphql_operation: Option<&str>, category: Category, method: Option<&str>) -> ApiActivityId {
    match category {
        Category::GraphQl => graphql_operation.map_or(ApiActivityId::Unknown, verb_activity),
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

/// MAPPING §4.1's `operationName` table (read here on the operation, the root field), row by
/// row: a leading verb, or (for Create, Update, Delete) a trailing noun form such as
/// `workspaceCreate`; anything else is 99 Other.
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

/// `actor`: the subject as a user typed from `subjectType`, with the client that sent the
/// request as `app_name`; the client alone when no subject is named.
fn actor(f: &mut Fields<'_>) -> Option<Actor> {
    let user = f.take("subjectId").map(|uid| {
        let user = User { uid: Some(uid), ..User::default() };
        match f.take("subjectType") {
            Some(kind) => user.typed(subject_type(&kind)),
            None => user,
        }
    });
    let app_name = f.take("graphqlClientName").or_else(|| f.take("astroClient"));
    (user.is_some() || app_name.is_some()).then_some(Actor { user, app_name, app_uid: None })
}

/// `subjectType` (vendors README §2.5: `USER` or `SERVICEKEY`) as the user's type: an API token
/// acts as a Service (§5a rule 7); any other value is kept as the vendor's own type.
fn subject_type(kind: &str) -> UserType {
    match kind.trim().to_ascii_uppercase().replace(['_', '-', ' '], "").as_str() {
        "USER" => UserType::User,
        "SERVICEKEY" | "APITOKEN" | "APIKEY" | "TOKEN" | "SERVICEACCOUNT" => UserType::Service,
        _ => UserType::Other(kind.to_owned()),
    }
}

/// `http_request`: method, URL (an Airflow UI record names the host apart from the path),
/// user agent and the REST `requestId`.
fn http_request(
    f: &mut Fields<'_>,
    category: Category,
    method: Option<String>,
    path: Option<String>,
    uid: Option<String>,
) -> Option<HttpRequest> {
    let url_string = match (category, f.take("targetUrl"), &path) {
        (Category::AirflowUi, Some(host), Some(p)) => Some(format!("{}{p}", host.trim_end_matches('/'))),
        (_, host, _) => host,
    };
    let url = Url { url_string, path };
    let request = HttpRequest {
        http_method: http_method(method),
        url: Some(url).filter(|u| *u != Url::default()),
        user_agent: f.take("userAgent"),
        referrer: None,
        uid,
    };
    Some(request).filter(|h| !h.is_empty())
}

/// `resources[]`: the organization first (MAPPING §4.1, with the short name its paths use),
/// then what the request named: every id of a REST path but the target user's (`skip_user`),
/// the GraphQL input's workspace and deployment, the Airflow deployment, the registry image.
fn resources(
    f: &mut Fields<'_>,
    req: &Request<'_>,
    organization: &Organization,
    skip_user: Option<&str>,
) -> Vec<ResourceDetails> {
    let resource = |uid: Option<String>, name: Option<String>, kind: &str| ResourceDetails {
        uid,
        name,
        kind: Some(kind.to_owned()),
        data: None,
    };
    let short_name = organization.short_name.clone().filter(|s| Some(s) != organization.uid.as_ref());
    let mut out: Vec<ResourceDetails> = Vec::new();
    if organization.uid.is_some() || short_name.is_some() {
        out.push(resource(organization.uid.clone(), short_name, "organization"));
    }
    let path = text(req.record, "path").unwrap_or_default();
    let mut segments = path.split(['?', '#']).next().unwrap_or_default().split('/').filter(|s| !s.is_empty());
    match req.category {
        // The Airflow UI path starts with the deployment's short id (`/dzl9chy4/configuration`):
        // a name in the URL, not the deployment's API id.
        Category::AirflowUi => {
            out.extend(segments.next().map(|s| resource(None, Some(s.to_owned()), "deployment")));
        }
        Category::Rest | Category::CloudIde => {
            let ids = req.path.into_iter().flat_map(RestPath::ids);
            for (value, kind) in ids.filter(|(v, k)| *k != "organization" && !(*k == "user" && Some(*v) == skip_user)) {
                // A Cloud IDE project is named so apart from any other kind of project.
                let kind =
                    if req.category == Category::CloudIde && kind == "project" { "cloud_ide_project" } else { kind };
                out.push(resource(Some(value.to_owned()), None, kind));
            }
        }
        // The GraphQL input often names its target (`requestInput.deploymentId`, sample 2).
        Category::GraphQl => {
            const TARGETS: [(&str, &str); 2] = [("workspaceId", "workspace"), ("deploymentId", "deployment")];
            let input = object(req.record, "requestInput").unwrap_or_default();
            for (key, kind) in TARGETS {
                out.extend(text(&input, key).map(|uid| resource(Some(uid), None, kind)));
            }
            // An input that only named them is all here now.
            if !input.is_empty() && input.keys().all(|k| TARGETS.iter().any(|(key, _)| k == key)) {
                f.place("requestInput");
            }
        }
        // `/v2/<repository>/manifests/<tag or digest>`, `/v2/<repository>/blobs/<digest>`: the
        // image as Docker names it (`repository:tag`, `repository@digest`).
        Category::Registry => {
            let parts: Vec<&str> = segments.skip_while(|s| *s == "v2").collect();
            if let Some(at) = parts.iter().rposition(|s| *s == "manifests" || *s == "blobs")
                && let Some(reference) = parts.get(at + 1)
                && at > 0
            {
                let repository = parts[..at].join("/");
                let digest = reference.contains(':');
                let name = format!("{repository}{}{reference}", if digest { '@' } else { ':' });
                let kind = if parts[at] == "blobs" { "container_image_layer" } else { "container_image" };
                out.push(resource(None, Some(name), kind));
            }
        }
        Category::Unknown => {}
    }
    out.extend(f.take("deploymentId").map(|d| resource(Some(d), None, "deployment")));
    out
}

/// The 3004 target when 6003 cannot be built: the deployment, else the organization.
fn fallback_entity(f: &mut Fields<'_>, organization: &Organization) -> Option<ManagedEntity> {
    if let Some(deployment) = f.take("deploymentId") {
        let kind = Some("deployment".to_owned());
        return Some(ManagedEntity { uid: Some(deployment), type_id: Some(99), kind, ..ManagedEntity::default() });
    }
    ManagedEntity::organization(organization.uid.clone(), organization.short_name.clone())
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
        let ctx = Context::fixed(organization, dedupe_key, time, raw);
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
            (
                "rest_templated_dag_run",
                with(
                    &rest,
                    &[
                        ("method", json!("POST")),
                        (
                            "path",
                            json!(
                                "/v1alpha1/organizations/examplecorp/deployments/clw3b6d1e000308kz4f7g2h5j/dags/etl_orders/dagRuns"
                            ),
                        ),
                    ],
                ),
                600301,
            ),
            (
                "rest_role_change",
                with(
                    &rest,
                    &[
                        ("method", json!("POST")),
                        ("path", json!("/v1alpha1/organizations/examplecorp/users/cm4t8r2g7000508l3u9v1w2xy/roles")),
                        (
                            "requestBody",
                            json!({"organizationRole": "ORGANIZATION_OWNER",
                                "workspaceRoles": [{"workspaceId": "clx9d4e7f000408la3b5c8d2e", "role": "WORKSPACE_OPERATOR"}]}),
                        ),
                    ],
                ),
                300501,
            ),
            (
                "rest_user_removed",
                with(
                    &rest,
                    &[
                        ("method", json!("DELETE")),
                        ("path", json!("/v1alpha1/organizations/examplecorp/users/cm4t8r2g7000508l3u9v1w2xy")),
                        ("requestBody", json!({})),
                    ],
                ),
                300502,
            ),
            (
                "graphql_role_change",
                with(
                    &op("workspaceUserRoleUpdate"),
                    &[(
                        "requestInput",
                        json!({"workspaceId": "clx9d4e7f000408la3b5c8d2e", "userId": "cm4t8r2g7000508l3u9v1w2xy",
                            "role": "WORKSPACE_MEMBER"}),
                    )],
                ),
                300501,
            ),
            (
                "rest_token_rotate",
                with(
                    &rest,
                    &[
                        ("method", json!("POST")),
                        (
                            "path",
                            json!("/v1beta1/organizations/examplecorp/api-tokens/cm1x2y3z4000108l5abcd9efg/rotate"),
                        ),
                        ("requestBody", json!({})),
                    ],
                ),
                300403,
            ),
            (
                "rest_token_delete",
                with(
                    &rest,
                    &[
                        ("method", json!("DELETE")),
                        ("path", json!("/v1beta1/organizations/examplecorp/api-tokens/cm1x2y3z4000108l5abcd9efg")),
                        ("responseStatus", json!(204)),
                    ],
                ),
                300404,
            ),
            (
                "graphql_token_create",
                with(
                    &op("createApiToken"),
                    &[(
                        "requestInput",
                        json!({"workspaceId": "clx9d4e7f000408la3b5c8d2e", "name": "ci-deploy", "role": "WORKSPACE_OPERATOR"}),
                    )],
                ),
                300401,
            ),
            (
                "rest_sso_change",
                with(
                    &rest,
                    &[
                        ("method", json!("PATCH")),
                        (
                            "path",
                            json!("/v1alpha1/organizations/examplecorp/sso-connections/cm9s8o7c6000108l5ssoconn1"),
                        ),
                        ("requestBody", json!({"enabled": false})),
                    ],
                ),
                300403,
            ),
            // An anonymous operation (probe 4 of the adversarial review): its document's root
            // field names it, and a role grant is 3005 whatever the client called it.
            (
                "graphql_anonymous_role_grant",
                with(
                    &graphql,
                    &[
                        ("operationName", Value::Null),
                        (
                            "requestBody",
                            json!(
                                "mutation { updateUserRole(input: {userId: \"cm4t8r2g7000508l3u9v1w2xy\", role: ORGANIZATION_OWNER}) { id } }"
                            ),
                        ),
                        ("requestInput", json!({"userId": "cm4t8r2g7000508l3u9v1w2xy", "role": "ORGANIZATION_OWNER"})),
                    ],
                ),
                300501,
            ),
            // A per-request operation name: the root field is the event code, the name unmapped.
            (
                "graphql_per_request_name",
                with(&op("Q_1733490000123"), &[("requestBody", json!("query Q_1733490000123 { self { id } }"))]),
                600399,
            ),
            // A bare role on a workspace's user (the v1alpha1 IAM API).
            (
                "rest_workspace_user_role",
                with(
                    &rest,
                    &[
                        ("method", json!("POST")),
                        (
                            "path",
                            json!(
                                "/v1alpha1/organizations/examplecorp/workspaces/clx9d4e7f000408la3b5c8d2e/users/cm4t8r2g7000508l3u9v1w2xy"
                            ),
                        ),
                        ("requestBody", json!({"role": "WORKSPACE_ADMIN"})),
                    ],
                ),
                300501,
            ),
        ];
        let samples = ["sample1_v2_rest", "sample2_v1_graphql_servicekey", "sample3_airflow_ui"];
        let samples = samples.into_iter().chain(["sample4_registry_push", "sample5_cli"]);
        // Sample 1 invites a user (3001 Create), sample 5 creates a workspace API token (3004 Create).
        let want = [300101, 600303, 600302, 600303, 300401];
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

    const USER_ID: &str = "clr8k2m9f000108l4h7c2d9qa";
    const TARGET: &str = "cm4t8r2g7000508l3u9v1w2xy";
    const TOKEN_ID: &str = "cm1x2y3z4000108l5abcd9efg";
    const WORKSPACE: &str = "clx9d4e7f000408la3b5c8d2e";

    /// A v2 REST record by a user, answered 200.
    fn rest(method: &str, path: &str, body: Value) -> Value {
        json!({
            "subjectId": USER_ID, "subjectType": "USER", "organizationId": ORG,
            "timestamp": "2026-06-03T14:22:08.417Z", "sourceIp": "198.51.100.37", "userAgent": "astro-cli/1.29.0",
            "method": method, "path": path, "requestBody": body,
            "requestId": "4f0c9a7e-2b1d-4c6e-9a3f-8e7d6c5b4a21", "responseStatus": 200,
        })
    }

    /// A v1 GraphQL record by a user.
    fn graphql(operation: &str, input: Value) -> Value {
        json!({
            "subjectId": USER_ID, "subjectType": "USER", "organizationId": ORG,
            "timestamp": "2026-06-03T14:25:41.902Z", "sourceIp": "198.51.100.37", "userAgent": "astro-cli/1.29.0",
            "correlationId": "6a1e8f3c-0d52-47b9-b2e4-9c7f1a3d5e80", "graphqlClientName": "cli",
            "operationName": operation,
            "requestBody": format!("mutation {operation}($input: {operation}Input!) {{ {operation}(input: $input) {{ id }} }}"),
            "requestInput": input,
        })
    }

    /// Adversarial review of issue 17 (MAPPING §5a rules 1 and 4): a GraphQL `operationName` is
    /// chosen by the client, and may be absent (an anonymous operation). The operation that ran is
    /// the root field of the document in `requestBody`. A role grant sent anonymously, or named
    /// like a read, is still a 3005 grant; and the event code is the root field, not a name the
    /// client made up per request. Failed on 747cbab: both were 6003 Informational ("unknown" / the name).
    #[test]
    fn test_a_graphql_grant_is_found_by_its_root_field_whatever_the_operation_is_named() {
        let input = json!({"userId": TARGET, "role": "ORGANIZATION_OWNER"});
        let document = "mutation { updateUserRole(input: $input) { id } }";
        let mut anonymous = graphql("updateUserRole", input.clone());
        anonymous["operationName"] = Value::Null;
        anonymous["requestBody"] = json!(document);
        let mut misnamed = graphql("updateUserRole", input);
        misnamed["operationName"] = json!("GetDeployments_1733490000123");
        misnamed["requestBody"] =
            json!("mutation GetDeployments_1733490000123 { updateUserRole(input: $input) { id } }");
        for record in [anonymous, misnamed] {
            let json = event(&record);
            assert_eq!((kind(&json).0, kind(&json).1), (3005, 1), "{record}");
            assert_eq!(json["privileges"], json!(["ORGANIZATION_OWNER"]), "{record}");
            assert_eq!(json["metadata"]["event_code"], "updateUserRole", "{record}");
        }
        // Anonymous, with no `operationName` key at all and no client name: still GraphQL.
        let mut bare = graphql("updateUserRole", json!({"userId": TARGET, "role": "ORGANIZATION_OWNER"}));
        for key in ["operationName", "correlationId", "graphqlClientName"] {
            bare.as_object_mut().unwrap().remove(key);
        }
        bare["requestBody"] = json!("mutation { grant: updateUserRole(input: $input) { id } }");
        let json = event(&bare);
        assert_eq!((kind(&json), &json["metadata"]["event_code"]), ((3005, 1, 3), &json!("updateUserRole")), "{json}");
        // A name made up per request is no event code: the root field is; the name stays visible.
        let mut read = graphql("self", json!({}));
        read["operationName"] = json!("Q_1733490000123");
        read["requestBody"] = json!({"query": "query Q_1733490000123 { self { id } }"});
        let json = event(&read);
        assert_eq!((&json["metadata"]["event_code"], &json["api"]["operation"]), (&json!("self"), &json!("self")));
        assert_eq!(json["unmapped"]["operationName"], "Q_1733490000123", "{json}");
        // A named read whose document is a read keeps its verb; the name equal to the root field
        // is placed.
        let json = event(&graphql("getDeployments", json!({})));
        assert_eq!(kind(&json), (6003, 2, 1));
        assert!(json["unmapped"].get("operationName").is_none(), "{json}");
    }

    #[test]
    fn test_root_fields_of_graphql_documents() {
        let rows: [(&str, Option<&str>, &[&str]); 14] = [
            ("{ self { id } }", None, &["self"]),
            ("query { a: getX { id } b: getY }", None, &["getX", "getY"]),
            ("mutation M($a: Int = 1, $b: In = {x: \"(}\"}) @d(x: 1) { f(s: \"}\") { id } g }", None, &["f", "g"]),
            ("# mutation { evil }\n query { self }", None, &["self"]),
            ("query { self(q: \"\"\" } \\\"\"\" ) \"\"\") next }", None, &["self", "next"]),
            (
                "mutation { ... on Mutation @include(if: true) { updateUserRole(input: $i) { id } } after }",
                None,
                &["updateUserRole", "after"],
            ),
            (
                "mutation { ...Grant } fragment Grant on Mutation { updateUserRole { id } ...Grant }",
                None,
                &["updateUserRole"],
            ),
            ("query A { self } mutation B { deleteApiToken }", Some("B"), &["deleteApiToken"]),
            ("query A { self } mutation B { deleteApiToken }", Some("C"), &["self"]),
            ("query A { self } mutation B { deleteApiToken }", None, &["self"]),
            ("fragment F on Q { x } query { ...F y }", None, &["x", "y"]),
            // A name is ASCII: reading stops at anything else, keeping what came before.
            ("\u{feff}subscription S { onChange, événement, later }", None, &["onChange"]),
            (r#"{"name": "x"}"#, None, &[]),
            ("mutation { a: }", None, &[]),
        ];
        for (document, name, want) in rows {
            assert_eq!(root_fields(document, name), want, "{document}");
        }
        // requestBody as a document, an object with `query`, or JSON text of one; a REST body is
        // no document.
        for (body, want) in [
            (json!("mutation { updateUserRole { id } }"), Some("mutation { updateUserRole { id } }")),
            (json!({"query": "{ self }", "variables": {}}), Some("{ self }")),
            (json!(r#"{"query": "{ self }"}"#), Some("{ self }")),
            (json!(r#"{"name": "x"}"#), None),
            (json!({"name": "x"}), None),
            (json!(3), None),
        ] {
            let record = json!({ "requestBody": body });
            assert_eq!(graphql_document(record.as_object().unwrap()).as_deref(), want, "{body}");
        }
    }

    /// The document is the client's: any text reads to its end without a panic, in one pass, and
    /// gives at most a few short names.
    #[test]
    fn test_root_fields_of_any_text_are_bounded() {
        let mut odd: Vec<String> = [
            "",
            "{",
            "}",
            "mutation(",
            "mutation {",
            "query Q(",
            "...",
            "... on",
            "\"",
            "\"\"\"",
            "\"\\",
            "#",
            "{ a: ",
            "{ a(",
            "{ a @",
            "{ ... @",
            "{ ...F",
            "\u{feff}",
            "é{ü: ñ}",
            "{ \"\\é\" }",
            "mutation { 名前 }",
            "$",
            "-",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        odd.push("{".repeat(1 << 20));
        odd.push("(".repeat(1 << 20));
        odd.push(format!("mutation {{ {}", "a(".repeat(1 << 18)));
        odd.push(format!("{{ {} }}", "x".repeat(1 << 20)));
        odd.push("{ a } ".repeat(1 << 16));
        odd.push(format!("{{ {} }}", "f ".repeat(1 << 16)));
        // Random strings of the characters that matter.
        let alphabet: Vec<char> = "{}()[]:@$.\"\\#,\n mutationquery fragment on é_1".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let n = (seed % 40) as usize;
            let text: String = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            odd.push(text);
        }
        let started = std::time::Instant::now();
        for text in &odd {
            for name in [None, Some("Q")] {
                let roots = root_fields(text, name);
                assert!(roots.len() <= MAX_FIELDS && roots.iter().all(|r| !r.is_empty() && r.len() <= MAX_NAME));
            }
        }
        assert!(roots_are_fast(started), "{:?}", started.elapsed());
        // Whole records with such bodies still map to valid events with an event code.
        for text in odd.iter().filter(|t| t.len() < 1000) {
            let mut record = graphql("x", json!({}));
            record.as_object_mut().unwrap().remove("operationName");
            record["requestBody"] = json!(text);
            let json = event(&record);
            assert!(json["metadata"]["event_code"].as_str().is_some_and(|c| !c.is_empty()), "{json}");
        }
    }

    /// A generous bound (debug build, shared cores) that a quadratic scan would still break.
    fn roots_are_fast(started: std::time::Instant) -> bool {
        started.elapsed() < std::time::Duration::from_secs(10)
    }

    /// A grant hidden behind a read in the same document is found; a read alone stays a read.
    #[test]
    fn test_a_graphql_grant_after_a_read_in_the_same_document_is_found() {
        let mut record = graphql("getDeployments", json!({"userId": TARGET, "role": "WORKSPACE_ADMIN"}));
        record["requestBody"] =
            json!("mutation getDeployments { self { id } ... on Mutation { updateUserRole(input: $input) { id } } }");
        let json = event(&record);
        assert_eq!((kind(&json), &json["metadata"]["event_code"]), ((3005, 1, 3), &json!("updateUserRole")));
        assert_eq!(json["unmapped"]["operationName"], "getDeployments", "{json}");
    }

    /// Adversarial review of issue 17 (F5): Astro's v1alpha1 IAM API sets a workspace or
    /// deployment role with a bare `role` on the scoped `users/{id}` path. Fails on 747cbab: 6003
    /// Create at Informational.
    #[test]
    fn test_a_bare_role_on_a_workspace_or_deployment_user_path_is_a_grant() {
        for (scope, role, severity) in [
            ("workspaces", "WORKSPACE_ADMIN", 3),
            ("deployments", "DEPLOYMENT_ADMIN", 3),
            ("workspaces", "WORKSPACE_MEMBER", 2),
        ] {
            let path = format!("/v1alpha1/organizations/examplecorp/{scope}/{WORKSPACE}/users/{TARGET}");
            for body in [json!({"role": role}), json!({"roles": [role]}), json!(format!(r#"{{"role":"{role}"}}"#))] {
                let json = event(&rest("POST", &path, body));
                assert_eq!(kind(&json), (3005, 1, severity), "{json}");
                assert_eq!((&json["user"]["uid"], &json["privileges"]), (&json!(TARGET), &json!([role])), "{json}");
                let kind = scope.strip_suffix('s').unwrap();
                assert!(has_resource(&json, WORKSPACE, kind), "{json}");
                assert!(json["unmapped"].get("requestBody").is_none(), "{json}");
            }
        }
        // On the organization's own users path a bare `role` still says nothing (a profile edit
        // may carry one): only `organizationRole` is a grant there.
        let path = format!("/v1alpha1/organizations/examplecorp/users/{TARGET}");
        assert_eq!(kind(&event(&rest("POST", &path, json!({"role": "ORGANIZATION_OWNER"})))).0, 6003);
    }

    /// Adversarial review of issue 17: a path segment that is literally a placeholder (`{org}`,
    /// sent by a client that forgot to fill its template, and logged by Astro with the 4xx) must
    /// not shift the ids onto the wrong segments: the user is the user in the path, never "{org}".
    #[test]
    fn test_a_literal_placeholder_in_a_path_does_not_shift_the_ids() {
        let path = format!("/v1alpha1/organizations/{{org}}/users/{TARGET}/roles");
        let json = event(&rest("POST", &path, json!({"organizationRole": "ORGANIZATION_OWNER"})));
        assert_eq!((kind(&json).0, kind(&json).1), (3005, 1));
        assert_eq!(json["user"]["uid"], TARGET, "{json}");
        assert_eq!(json["metadata"]["event_code"], "POST /v1alpha1/organizations/{org}/users/{id}/roles");
    }

    fn event(record: &Value) -> Value {
        let json = convert(&record.to_string(), ORG, "k").unwrap();
        assert_valid(&json);
        json
    }

    /// (class_uid, activity_id, severity_id) of an event.
    fn kind(json: &Value) -> (u64, u64, u64) {
        let n = |k: &str| json[k].as_u64().unwrap_or_else(|| panic!("{k}: {json}"));
        (n("class_uid"), n("activity_id"), n("severity_id"))
    }

    fn has_resource(json: &Value, uid: &str, kind: &str) -> bool {
        json["resources"].as_array().is_some_and(|r| r.iter().any(|r| r["uid"] == uid && r["type"] == kind))
    }

    /// What every event built from a request keeps whatever its class (the 3004/3005/3001
    /// classes have actor, src_endpoint and http_request too).
    fn assert_request_kept(json: &Value) {
        assert_eq!(json["actor"]["user"]["uid"], USER_ID, "{json}");
        assert_eq!(json["src_endpoint"]["ip"], "198.51.100.37", "{json}");
        assert_eq!(json["http_request"]["user_agent"], "astro-cli/1.29.0", "{json}");
    }

    #[test]
    fn test_rest_event_codes_are_templated_with_the_ids_as_resources() {
        let verify = format!("/v1alpha1/organizations/examplecorp/domains/{TOKEN_ID}/verify");
        let json = event(&rest("POST", &verify, json!({})));
        let code = "POST /v1alpha1/organizations/{org}/domains/{id}/verify";
        assert_eq!((&json["metadata"]["event_code"], &json["api"]["operation"]), (&json!(code), &json!(code)));
        assert!(has_resource(&json, TOKEN_ID, "domain"), "{json}");
        // The organization is named by its id and the short name its paths use.
        assert_eq!(json["resources"][0], json!({"uid": ORG, "name": "examplecorp", "type": "organization"}));
        // The request's own path keeps its values.
        assert_eq!(json["http_request"]["url"]["path"], verify.as_str());
        assert_eq!(json["http_request"]["uid"], "4f0c9a7e-2b1d-4c6e-9a3f-8e7d6c5b4a21");

        // A DAG is named by its DAG id (a name, not an id): still a placeholder.
        let dag = format!("/v1alpha1/organizations/examplecorp/deployments/{TOKEN_ID}/dags/etl_orders/dagRuns");
        let json = event(&rest("POST", &dag, json!({})));
        assert_eq!(
            json["metadata"]["event_code"],
            "POST /v1alpha1/organizations/{org}/deployments/{id}/dags/{id}/dagRuns"
        );
        assert!(has_resource(&json, "etl_orders", "dag") && has_resource(&json, TOKEN_ID, "deployment"), "{json}");
        // An id of a known collection is an id whatever it looks like (a cuid without a digit).
        let json = event(&rest(
            "GET",
            "/v1alpha1/organizations/examplecorp/sso-connections/cvgixucihrvileknyykxyznlo",
            json!({}),
        ));
        assert_eq!(json["metadata"]["event_code"], "GET /v1alpha1/organizations/{org}/sso-connections/{id}");
        assert!(has_resource(&json, "cvgixucihrvileknyykxyznlo", "sso_connection"), "{json}");
        // SCIM paths name the organization after the version.
        let json = event(&rest("PATCH", &format!("/scim/v2/examplecorp2/Groups/{TOKEN_ID}"), json!({})));
        assert_eq!(json["metadata"]["event_code"], "PATCH /scim/v2/{org}/Groups/{id}");
        assert!(has_resource(&json, TOKEN_ID, "group"), "{json}");
        // Registry and Airflow UI records are coded by their category, never by their path.
        for (record, code) in [
            (SAMPLES.lines().nth(2).unwrap(), "airflowUiAccess"),
            (SAMPLES.lines().nth(3).unwrap(), "containerRegistryAccess"),
        ] {
            assert_eq!(event(&serde_json::from_str(record).unwrap())["metadata"]["event_code"], code);
        }
    }

    #[test]
    fn test_role_changes_are_user_access_management() {
        let roles = format!("/v1alpha1/organizations/examplecorp/users/{TARGET}/roles");
        // An administrator role: Assign Privileges, the role as the privilege, severity Medium.
        let json = event(&rest("PATCH", &roles, json!({"organizationRole": "ORGANIZATION_OWNER"})));
        assert_eq!(kind(&json), (3005, 1, 3), "{json}");
        assert_eq!(json["privileges"], json!(["ORGANIZATION_OWNER"]));
        assert_eq!(json["user"]["uid"], TARGET);
        assert_eq!(json["metadata"]["event_code"], "PATCH /v1alpha1/organizations/{org}/users/{id}/roles");
        assert!(has_resource(&json, ORG, "organization"), "{json}");
        assert_request_kept(&json);
        assert!(json["unmapped"].get("requestBody").is_none(), "every key of the body was placed: {json}");
        // Any other role: severity Low; workspace and deployment roles with their scope.
        let body = json!({"organizationRole": "ORGANIZATION_MEMBER",
            "workspaceRoles": [{"workspaceId": WORKSPACE, "role": "WORKSPACE_OPERATOR"}],
            "deploymentRoles": [{"deploymentId": TOKEN_ID, "role": "DEPLOYMENT_ADMIN"}]});
        let json = event(&rest("POST", &roles, body.clone()));
        assert_eq!(kind(&json), (3005, 1, 3), "DEPLOYMENT_ADMIN is an administrator role: {json}");
        assert_eq!(json["privileges"], json!(["ORGANIZATION_MEMBER", "WORKSPACE_OPERATOR", "DEPLOYMENT_ADMIN"]));
        assert!(has_resource(&json, WORKSPACE, "workspace") && has_resource(&json, TOKEN_ID, "deployment"), "{json}");
        let json = event(&rest("POST", &roles, json!({"workspaceRole": "WORKSPACE_MEMBER", "workspaceId": WORKSPACE})));
        assert_eq!(kind(&json), (3005, 1, 2), "{json}");
        // The body as JSON text reads the same.
        let json = event(&rest("PATCH", &roles, json!(r#"{"organizationRole":"ORGANIZATION_BILLING_ADMIN"}"#)));
        assert_eq!((kind(&json), &json["privileges"]), ((3005, 1, 3), &json!(["ORGANIZATION_BILLING_ADMIN"])));

        // GraphQL: the input names the role and the user.
        let input = json!({"workspaceId": WORKSPACE, "userId": TARGET, "role": "WORKSPACE_OPERATOR"});
        let json = event(&graphql("workspaceUserRoleUpdate", input));
        assert_eq!(kind(&json), (3005, 1, 2), "{json}");
        assert_eq!((&json["user"]["uid"], &json["privileges"]), (&json!(TARGET), &json!(["WORKSPACE_OPERATOR"])));
        assert_eq!(json["metadata"]["event_code"], "workspaceUserRoleUpdate");
        assert!(has_resource(&json, WORKSPACE, "workspace"), "{json}");
        assert_request_kept(&json);
        let json = event(&graphql("updateUserRole", json!({"userId": TARGET, "role": "ORGANIZATION_OWNER"})));
        assert_eq!(kind(&json), (3005, 1, 3), "{json}");

        // Removing a user from the organization, workspace or deployment revokes their access
        // there: the scope's type is the privilege (the record names no role).
        let json = event(&rest("DELETE", &format!("/v1alpha1/organizations/examplecorp/users/{TARGET}"), json!({})));
        assert_eq!(kind(&json), (3005, 2, 1), "{json}");
        assert_eq!((&json["user"]["uid"], &json["privileges"]), (&json!(TARGET), &json!(["organization"])));
        assert_request_kept(&json);
        let path = format!("/v1alpha1/organizations/examplecorp/workspaces/{WORKSPACE}/users/{TARGET}");
        let json = event(&rest("DELETE", &path, json!({})));
        assert_eq!((kind(&json), &json["privileges"]), ((3005, 2, 1), &json!(["workspace"])));
        assert!(has_resource(&json, WORKSPACE, "workspace"), "{json}");
        let json = event(&graphql("deploymentRemoveUserRole", json!({"deploymentId": TOKEN_ID, "userId": TARGET})));
        assert_eq!((kind(&json), &json["privileges"]), ((3005, 2, 1), &json!(["deployment"])));

        // A team's roles are a group's, not a user's.
        let team = json!({"teamId": TOKEN_ID, "userId": TARGET, "role": "WORKSPACE_MEMBER"});
        assert_eq!(kind(&event(&graphql("teamUpdateRole", team))).0, 6003);
        // Reading roles is no change; a role change naming no user cannot be 3005.
        assert_eq!(kind(&event(&rest("GET", &roles, json!({})))), (6003, 2, 1));
        assert_eq!(kind(&event(&graphql("updateUserRole", json!({"role": "ORGANIZATION_OWNER"})))).0, 6003);
    }

    #[test]
    fn test_api_token_events_are_entity_management() {
        let org_tokens = "/v1beta1/organizations/examplecorp/api-tokens";
        let ws_tokens = format!("/v1alpha1/organizations/examplecorp/workspaces/{WORKSPACE}/api-tokens");
        let body = json!({"name": "siem-reader", "role": "WORKSPACE_MEMBER", "tokenExpiryPeriodInDays": 90});
        let rows = [
            (rest("POST", org_tokens, body.clone()), (3004, 1, 2), None),
            (rest("POST", &ws_tokens, body.clone()), (3004, 1, 2), None),
            (rest("POST", &format!("{org_tokens}/{TOKEN_ID}/rotate"), json!({})), (3004, 3, 2), Some(TOKEN_ID)),
            (rest("POST", &format!("{ws_tokens}/{TOKEN_ID}/rotate"), json!({})), (3004, 3, 2), Some(TOKEN_ID)),
            (rest("DELETE", &format!("{org_tokens}/{TOKEN_ID}"), json!({})), (3004, 4, 1), Some(TOKEN_ID)),
            (graphql("createApiToken", json!({"workspaceId": WORKSPACE, "name": "ci"})), (3004, 1, 2), None),
            (graphql("rotateApiToken", json!({"apiTokenId": TOKEN_ID})), (3004, 3, 2), Some(TOKEN_ID)),
            (graphql("deleteApiToken", json!({"apiTokenId": TOKEN_ID})), (3004, 4, 1), Some(TOKEN_ID)),
            (graphql("revokeWorkspaceApiToken", json!({"apiTokenId": TOKEN_ID})), (3004, 4, 1), Some(TOKEN_ID)),
            (graphql("createDeploymentServiceAccount", json!({"label": "ci"})), (3004, 1, 2), None),
            (graphql("deleteServiceAccount", json!({"serviceAccountUuid": TOKEN_ID})), (3004, 4, 1), Some(TOKEN_ID)),
        ];
        for (record, want, uid) in rows {
            let json = event(&record);
            assert_eq!(kind(&json), want, "{json}");
            assert_eq!((&json["entity"]["type_id"], &json["entity"]["type"]), (&json!(99), &json!("api_token")));
            match uid {
                Some(uid) => assert_eq!(json["entity"]["uid"], uid, "{json}"),
                None => assert!(json["entity"]["name"] == "siem-reader" || json["entity"]["name"] == "ci", "{json}"),
            }
            assert_request_kept(&json);
        }
        let json = event(&rest("POST", &format!("{org_tokens}/{TOKEN_ID}/rotate"), json!({})));
        assert_eq!(json["metadata"]["event_code"], "POST /v1beta1/organizations/{org}/api-tokens/{id}/rotate");
        // Listing tokens is a read, not a credential change.
        assert_eq!(kind(&event(&rest("GET", org_tokens, json!({})))), (6003, 2, 1));
        assert_eq!(kind(&event(&graphql("listApiTokens", json!({})))), (6003, 2, 1));
    }

    #[test]
    fn test_invites_and_sso_changes() {
        let body = json!({"inviteEmail": "new.engineer@example.com", "role": "ORGANIZATION_MEMBER"});
        let json = event(&rest("POST", "/v1alpha1/organizations/examplecorp/invites", body));
        assert_eq!(kind(&json), (3001, 1, 1), "{json}");
        assert_eq!(json["user"]["email_addr"], "new.engineer@example.com");
        assert_request_kept(&json);
        let json = event(&graphql("createUserInvite", json!({"email": "ana@example.com", "role": "WORKSPACE_MEMBER"})));
        assert_eq!((kind(&json), &json["user"]["email_addr"]), ((3001, 1, 1), &json!("ana@example.com")));

        let sso = "/v1alpha1/organizations/examplecorp/sso-connections";
        let json = event(&rest("PATCH", &format!("{sso}/{TOKEN_ID}"), json!({"enabled": false})));
        assert_eq!(kind(&json), (3004, 3, 3), "{json}");
        assert_eq!((&json["entity"]["uid"], &json["entity"]["type"]), (&json!(TOKEN_ID), &json!("sso_connection")));
        assert_eq!(kind(&event(&rest("GET", sso, json!({})))), (6003, 2, 1));
    }

    #[test]
    fn test_actor_is_typed_and_nothing_placed_is_unmapped() {
        for (subject, type_id, caption) in [("USER", 1, "User"), ("SERVICEKEY", 4, "Service"), ("ROBOT", 99, "ROBOT")] {
            let record = with(&graphql("getDeployment", json!({})), &[("subjectType", json!(subject))]);
            let json = event(&record);
            assert_eq!(
                (&json["actor"]["user"]["type_id"], &json["actor"]["user"]["type"]),
                (&json!(type_id), &json!(caption))
            );
            assert_eq!(json["actor"]["app_name"], "cli");
        }
        let placed = [
            "subjectId",
            "subjectType",
            "organizationId",
            "timestamp",
            "sourceIp",
            "userAgent",
            "correlationId",
            "graphqlClientName",
            "operationName",
            "method",
            "path",
            "requestId",
            "responseStatus",
            "targetUrl",
            "deploymentId",
        ];
        // An input whose every key became a resource is not repeated; one with more is kept.
        let input = json!({"workspaceId": WORKSPACE, "deploymentId": TOKEN_ID});
        let json = event(&graphql("updateDeployment", input));
        assert!(has_resource(&json, WORKSPACE, "workspace") && has_resource(&json, TOKEN_ID, "deployment"));
        assert!(json["unmapped"].get("requestInput").is_none(), "{json}");
        let json = event(&graphql("updateDeployment", json!({"deploymentId": TOKEN_ID, "description": "x"})));
        assert!(json["unmapped"]["requestInput"].is_string(), "{json}");
        for (name, raw, _) in cases() {
            let json = convert(&raw, ORG, &name).unwrap();
            let unmapped = json["unmapped"].as_object().cloned().unwrap_or_default();
            let record: Value = serde_json::from_str(&raw).unwrap();
            for key in placed {
                // Only a subject type with no subject to describe stays unmapped, and an
                // operation name that is not the operation (the root field is the event code).
                let orphan = key == "subjectType" && record.get("subjectId").is_none();
                let renamed = key == "operationName" && record[key] != json["metadata"]["event_code"];
                assert!(
                    orphan || renamed || !unmapped.contains_key(key),
                    "{name}: {key} is placed, yet unmapped: {json}"
                );
            }
            assert!(unmapped.values().all(Value::is_string), "{name}: {json}");
        }
    }

    /// The simulator's records: few event codes, every kind of security action the rules are
    /// about, one JSON type per attribute path, every event valid.
    #[test]
    fn test_simulated_records_map_to_few_codes_and_every_security_action() {
        use super::super::sim;
        use std::collections::{BTreeMap, BTreeSet};
        let opts = crate::sim::AstronomerSimOptions { records: 3000, ..Default::default() };
        let now = "2026-06-04T00:00:00Z".parse().unwrap();
        let store = sim::Store::generate(7, &opts, 0, ORG, now);
        let mut codes = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        let mut types: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
        fn walk(v: &Value, path: String, types: &mut BTreeMap<String, BTreeSet<&'static str>>) {
            let t = match v {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(items) => {
                    items.iter().for_each(|i| walk(i, format!("{path}[]"), types));
                    "array"
                }
                Value::Object(o) => {
                    o.iter().for_each(|(k, v)| walk(v, format!("{path}.{k}"), types));
                    "object"
                }
            };
            types.entry(path).or_default().insert(t);
        }
        let mut anonymous_grants = 0;
        for line in store.lines() {
            let json = convert(&line, ORG, &line).unwrap();
            assert_valid(&json);
            // Anonymous role changes are found by their root field.
            if !line.contains("\"operationName\"") && line.contains("workspaceUserRoleUpdate(") {
                assert_eq!(json["metadata"]["event_code"], "workspaceUserRoleUpdate", "{json}");
                assert_eq!(kind(&json).0, 3005, "{json}");
                anonymous_grants += 1;
            }
            codes.insert(json["metadata"]["event_code"].as_str().unwrap().to_owned());
            kinds.insert((kind(&json).0, kind(&json).1));
            walk(&json, String::new(), &mut types);
        }
        // One code per endpoint the simulator calls, GraphQL operation and access category.
        let endpoints = sim::REST.len() + sim::GRAPHQL.len() + 3;
        assert!(codes.len() <= endpoints, "{} codes for {endpoints} endpoints: {codes:#?}", codes.len());
        assert!(anonymous_grants > 0, "no anonymous GraphQL role change");
        for want in [(3005, 1), (3005, 2), (3004, 1), (3004, 3), (3004, 4), (3001, 1)] {
            assert!(kinds.contains(&want), "no {want:?} among {kinds:?}");
        }
        let mixed: Vec<_> = types.iter().filter(|(_, t)| t.len() > 1).collect();
        assert!(mixed.is_empty(), "paths with more than one JSON type: {mixed:?}");
    }
}
