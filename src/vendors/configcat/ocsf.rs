//! ConfigCat audit-log item → OCSF 1.8.0 event (`ocsf/MAPPING.md` §4.4, with §5a's revisions).
//!
//! Input: one `AuditLogItemModel` of `GET /v2/organizations/{organizationId}/auditlogs` (vendors
//! README §1.5; every field may be missing or null). The class comes from `auditLogTypeEnum`
//! through one table, [`row`], which has a row for every value of README §1.7, the removed ones
//! included. The set is open: a value not in the table takes MAPPING's suffix rule
//! ([`by_suffix`]: 3004 with the activity from the verb), and so does a row whose required target
//! is missing from the record (MAPPING §3 rule 7), e.g. 3001 or 3005 without `actionTarget`.
//! There is no IP or user agent in the record, so no `src_endpoint`/`http_request`.
//!
//! Fields (MAPPING §4.4's field map as revised by §5a rules 7 and 9):
//! - `userEmail` is the actor's account: `actor.user.name` and `email_addr`; `userName` is a
//!   display name: `full_name`; typed User. No address means the vendor's own automation
//!   (README §1.5: SCIM and scheduler actions): typed System, named by `userName` (its label,
//!   e.g. "User provisioning (SCIM)"), or "ConfigCat" when the entry names nobody at all.
//! - `actionTarget` names the target: an address is a user's `name` and `email_addr`, any other
//!   value a user's display name (`full_name`, and `name` as nothing else identifies them).
//! - `where` is placed where it names the group (3006), the organization (3004 type 4) or the
//!   scope of a privilege (3005 `resources`); elsewhere it stays in `unmapped`.
//! - `why` is the `comment` of 3004 (other classes have none: `unmapped`); `truncated` is the
//!   `truncated` label when true and placed either way; `details` and `modelVersion` stay in
//!   `unmapped` (values read out of `details` do not make all of it placed).
//!
//! Severity: the shared [`Signal`] table for every security kind of action (a row's signal;
//! a privilege granted or revoked is the admin signal when the privilege is an administrator's,
//! [`is_admin_privilege`]); every other row Informational. Where this departs from MAPPING
//! §4.4's suggested severities: provisioning/SCIM configuration (Low there) is SsoChanged
//! (Medium), `apiKeyConnected` and `proxyNotificationSigningKeyAdded` are CredentialCreated
//! (Low), `syncUserDeleted` is AccountDisabled (Low), a move to an administrators' permission
//! group is AdminGranted (Medium). `productDeleted`, `productOwnershipTransferred` and
//! `organizationRemoved` are TenantDeleted, `userEmailChanged` EmailChanged (Low, as there).
//!
//! Not here: the severity override (applied by the caller, keyed on `metadata.event_code`), the
//! event uid and loggers ([`Context::metadata`]), observables ([`crate::ocsf::event::Event`]),
//! schema validation.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Class, EntityManagement, EntityManagementId, EventParts, Group,
    GroupManagement, GroupManagementId, ManagedEntity, ResourceDetails, Severity, Status, User, UserAccess,
    UserAccessId, UserType,
};
use crate::ocsf::{Context, Fields, Signal, Unmappable, email, is_admin_privilege, text};

const VENDOR: &str = "configcat";
const PRODUCT: &str = "ConfigCat";
const LOG_PROVIDER: &str = "ConfigCat Public Management API audit log";
/// The privilege of a permission-group change whose record names no group (MAPPING §5a rule 1:
/// the entity's type when its name is unknown).
const PERMISSION_GROUP: &str = "permission group";

/// One row of the table: what the event becomes and which kind of security action it is.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    action: Action,
    /// `None`: no security kind of action, Informational.
    signal: Option<Signal>,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// 3004 on `actionTarget`, an object of this type (`organization` → type_id 4 with
    /// `entity.org`, `permission_group` → 3 with `entity.group`, anything else 99).
    Entity(EntityManagementId, &'static str),
    /// 3001 on the account named by `actionTarget`; with an attribute, `user_result` carries its
    /// new value.
    Account(AccountChangeId, Option<Attribute>),
    /// 3005: a privilege given to or taken from a user.
    Access(UserAccessId, Who, Privilege),
    /// 3006 on a group, with the user who joins or leaves it.
    Group(GroupManagementId, GroupOf, Option<Who>),
}

/// Which user a row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// `actionTarget`, an e-mail address or a display name.
    Target,
    /// The user who did it (`userName`/`userEmail`).
    Actor,
    /// `actionTarget` when present, else the actor (someone joining by themselves).
    TargetOrActor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupOf {
    /// The product (its team): the first part of `where`.
    Product,
    /// The organization itself: the tenant, named by `where`.
    Organization,
    /// A permission group named by `actionTarget`.
    PermissionGroup,
    /// A group synchronised by SCIM, named by `actionTarget`.
    SyncGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    /// The organization's administrator role, over the organization (`where`).
    OrganizationAdmin,
    /// The member's new permission group ([`new_permission_group`]), in the product (`where`).
    NewPermissionGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    Email,
    FullName,
}

fn entity(activity: EntityManagementId, kind: &'static str, signal: impl Into<Option<Signal>>) -> Option<Row> {
    Some(Row { action: Action::Entity(activity, kind), signal: signal.into() })
}

fn account(activity: AccountChangeId, attribute: Option<Attribute>, signal: impl Into<Option<Signal>>) -> Option<Row> {
    Some(Row { action: Action::Account(activity, attribute), signal: signal.into() })
}

fn access(activity: UserAccessId, who: Who, privilege: Privilege, signal: Signal) -> Option<Row> {
    Some(Row { action: Action::Access(activity, who, privilege), signal: Some(signal) })
}

fn group(activity: GroupManagementId, of: GroupOf, who: Option<Who>, signal: impl Into<Option<Signal>>) -> Option<Row> {
    Some(Row { action: Action::Group(activity, of, who), signal: signal.into() })
}

/// MAPPING §4.4's full table, one arm per `auditLogTypeEnum` value; `None` for a value it does
/// not know. The last column is the kind of security action ([`Signal`], its severity the shared
/// table's) or `None` (Informational); see the module doc for where it departs from MAPPING's
/// suggested severities. Rows marked "not in MAPPING" are README §1.7 values MAPPING has no row
/// for, decided here by analogy with their neighbours. Judgement calls live here and only here
/// (MAPPING §7).
#[rustfmt::skip]
fn row(kind: &str) -> Option<Row> {
    use AccountChangeId as Ac;
    use EntityManagementId as Em;
    use GroupManagementId as Gm;
    use Signal::{
        AccountDisabled, AdminGranted, AdminRevoked, CredentialCreated, CredentialDeleted, CredentialRotated,
        EmailChanged, MfaDisabled, PrivilegeGranted, SsoChanged, TenantDeleted,
    };
    use UserAccessId as Ua;
    let other = || Em::Other(kind.to_owned());
    let group_other = || Gm::Other(kind.to_owned());
    match kind {
        "productCreated" => entity(Em::Create, "product", None),
        "productChanged" => entity(Em::Update, "product", None),
        "productOwnershipTransferred" => entity(Em::Update, "product", Some(TenantDeleted)),
        "productDeleted" => entity(Em::Delete, "product", Some(TenantDeleted)),
        "productsReordered" => entity(Em::Update, "product", None),
        "productPreferencesUpdated" => entity(Em::Update, "product_preferences", None), // not in MAPPING
        "teamMemberInvited" => account(Ac::Create, None, None),
        "teamMemberInvitationRevoked" => account(Ac::Delete, None, None),
        "teamMemberJoined" => group(Gm::AddUser, GroupOf::Product, Some(Who::TargetOrActor), None),
        // PrivilegeGranted, or AdminGranted when the new group is an administrators' one.
        "teamMemberPermissionGroupChanged" => access(Ua::AssignPrivileges, Who::Target, Privilege::NewPermissionGroup, PrivilegeGranted),
        "teamMemberRemoved" => group(Gm::RemoveUser, GroupOf::Product, Some(Who::Target), None),
        "teamMemberLeft" => group(Gm::RemoveUser, GroupOf::Product, Some(Who::Actor), None),
        "teamMemberInvitationChanged" => entity(Em::Update, "invitation", None),
        "teamMemberInvitationResent" => entity(other(), "invitation", None),
        "teamMemberInvitationRejected" => entity(other(), "invitation", None),
        "teamMemberAddedToProduct" => group(Gm::AddUser, GroupOf::Product, Some(Who::Target), None), // not in MAPPING
        "configCreated" => entity(Em::Create, "config", None),
        "configChanged" => entity(Em::Update, "config", None),
        "configDeleted" => entity(Em::Delete, "config", None),
        "configsReordered" => entity(Em::Update, "config", None),
        "environmentCreated" => entity(Em::Create, "environment", None),
        "environmentChanged" => entity(Em::Update, "environment", None),
        "environmentDeleted" => entity(Em::Delete, "environment", None),
        "environmentsReordered" => entity(Em::Update, "environment", None),
        "settingCreated" => entity(Em::Create, "setting", None),
        "settingChanged" => entity(Em::Update, "setting", None),
        "settingDeleted" => entity(Em::Delete, "setting", None),
        "settingsReordered" => entity(Em::Update, "setting", None),
        "predefinedVariationsChanged" => entity(Em::Update, "setting", None), // not in MAPPING
        "settingConvertedToPredefinedVariations" => entity(Em::Update, "setting", None), // not in MAPPING
        "settingConvertedToFreeFormValues" => entity(Em::Update, "setting", None), // not in MAPPING
        "settingValueChanged" => entity(Em::Update, "setting", None),
        "webHookCreated" => entity(Em::Create, "web_hook", None),
        "webHookChanged" => entity(Em::Update, "web_hook", None),
        "webHookDeleted" => entity(Em::Delete, "web_hook", None),
        "permissionGroupCreated" => group(Gm::Create, GroupOf::PermissionGroup, None, None),
        // What the group's members may do changed.
        "permissionGroupChanged" => entity(Em::Update, "permission_group", PrivilegeGranted),
        "permissionGroupDeleted" => group(Gm::Delete, GroupOf::PermissionGroup, None, None),
        "permissionGroupDefault" => entity(Em::Update, "permission_group", None),
        "apiKeyAdded" => entity(Em::Create, "api_key", CredentialCreated),
        "apiKeyRemoved" => entity(Em::Delete, "api_key", CredentialDeleted),
        "integrationAdded" => entity(Em::Create, "integration", None),
        "integrationChanged" => entity(Em::Update, "integration", None),
        "integrationRemoved" => entity(Em::Delete, "integration", None),
        "apiKeyConnected" => entity(Em::Create, "api_key", CredentialCreated),
        "integrationLinkAdded" => entity(Em::Create, "integration_link", None),
        "integrationLinkRemoved" => entity(Em::Delete, "integration_link", None),
        "organizationAdded" => entity(Em::Create, "organization", None),
        "organizationRemoved" => entity(Em::Delete, "organization", Some(TenantDeleted)),
        "organizationChanged" => entity(Em::Update, "organization", None),
        "organizationSubscriptionTypeChanged" => entity(Em::Update, "organization", None),
        "organizationAdminChanged" => access(Ua::AssignPrivileges, Who::Target, Privilege::OrganizationAdmin, AdminGranted),
        "organizationAdminLeft" => access(Ua::RevokePrivileges, Who::Actor, Privilege::OrganizationAdmin, AdminRevoked),
        "twoFactorDisabledForMember" => account(Ac::MfaFactorDisable, None, MfaDisabled),
        "tagAdded" => entity(Em::Create, "tag", None),
        "tagChanged" => entity(Em::Update, "tag", None),
        "tagRemoved" => entity(Em::Delete, "tag", None),
        "settingTagAdded" => entity(Em::Create, "setting_tag", None),
        "settingTagRemoved" => entity(Em::Delete, "setting_tag", None),
        "publicApiAccessTokenAdded" => entity(Em::Create, "public_api_access_token", CredentialCreated),
        "publicApiAccessTokenRemoved" => entity(Em::Delete, "public_api_access_token", CredentialDeleted),
        "domainAdded" => entity(Em::Create, "domain", None),
        "domainVerified" => entity(Em::Update, "domain", None),
        "domainRemoved" => entity(Em::Delete, "domain", None),
        "domainSamlConfigured" => entity(Em::Update, "domain_saml", SsoChanged),
        "domainSamlDeleted" => entity(Em::Delete, "domain_saml", SsoChanged),
        "autoProvisioningConfigurationChanged" => entity(Em::Update, "auto_provisioning_configuration", SsoChanged),
        "samlIdpConfigurationAdded" => entity(Em::Create, "saml_idp_configuration", SsoChanged),
        "samlIdpConfigurationRemoved" => entity(Em::Delete, "saml_idp_configuration", SsoChanged),
        "samlIdpConfigurationUpdated" => entity(Em::Update, "saml_idp_configuration", SsoChanged),
        "autoProvisioningEnabledChanged" => entity(Em::Update, "auto_provisioning", SsoChanged),
        "organizationMemberJoined" => group(Gm::AddUser, GroupOf::Organization, Some(Who::TargetOrActor), None),
        "organizationMemberProductJoinRequested" => group(group_other(), GroupOf::Product, Some(Who::Actor), None),
        "organizationMemberProductJoinRequestRejected" => group(group_other(), GroupOf::Product, Some(Who::Target), None),
        "organizationMemberProductJoinRequestApproved" => group(Gm::AddUser, GroupOf::Product, Some(Who::Target), None),
        // The member loses the organization, and with it every product: their account there.
        "organizationMemberRemoved" => group(Gm::RemoveUser, GroupOf::Organization, Some(Who::Target), AccountDisabled),
        "codeReferencesUploaded" => entity(Em::Create, "code_reference", None),
        "codeReferenceDeleted" => entity(Em::Delete, "code_reference", None),
        "codeReferenceStaleBranchDeleted" => entity(Em::Delete, "code_reference", None),
        "segmentCreated" => entity(Em::Create, "segment", None),
        "segmentChanged" => entity(Em::Update, "segment", None),
        "segmentDeleted" => entity(Em::Delete, "segment", None),
        "webhookSigningKeyDeleted" => entity(Em::Delete, "webhook_signing_key", CredentialDeleted),
        "webhookSigningKeyCreated" => entity(Em::Create, "webhook_signing_key", CredentialCreated),
        // User provisioning (SCIM) configuration, its group rules and their order included.
        "userProvisioningConfigurationChanged" => entity(Em::Update, "user_provisioning_configuration", SsoChanged),
        "syncGroupProvisioningRuleChanged" => entity(Em::Update, "sync_group_provisioning_rule", SsoChanged),
        "syncGroupsReordered" => entity(Em::Update, "sync_group", SsoChanged),
        "syncUserProvisioningEnabled" => entity(Em::Enable, "user_provisioning", SsoChanged),
        "syncUserProvisioningDisabled" => entity(Em::Disable, "user_provisioning", SsoChanged),
        "userEmailChanged" => account(Ac::Other(kind.to_owned()), Some(Attribute::Email), Some(EmailChanged)),
        "userFullNameChanged" => account(Ac::Other(kind.to_owned()), Some(Attribute::FullName), None),
        "userDisabled" => account(Ac::Disable, None, AccountDisabled),
        "awsConnected" => entity(Em::Create, "aws", None),
        "awsDisconnected" => entity(Em::Delete, "aws", None),
        "userEnabled" => account(Ac::Enable, None, None),
        "syncUserDeleted" => account(Ac::Delete, None, AccountDisabled),
        "syncGroupDeleted" => group(Gm::Delete, GroupOf::SyncGroup, None, None),
        "proxyConfigurationCreated" => entity(Em::Create, "proxy_configuration", None),
        "proxyConfigurationChanged" => entity(Em::Update, "proxy_configuration", None),
        "proxyConfigurationDeleted" => entity(Em::Delete, "proxy_configuration", None),
        "proxyConfigurationSecretRegenerated" => entity(Em::Update, "proxy_configuration", CredentialRotated),
        "proxyNotificationSettingsUpdated" => entity(Em::Update, "proxy_notification_settings", None),
        "proxyNotificationSettingsDeleted" => entity(Em::Delete, "proxy_notification_settings", None),
        "proxyNotificationSigningKeyAdded" => entity(Em::Create, "proxy_notification_signing_key", CredentialCreated),
        "proxyNotificationSigningKeyDeleted" => entity(Em::Delete, "proxy_notification_signing_key", CredentialDeleted),
        // Change requests (not in MAPPING): CRUD on the request and its comments; workflow
        // steps (approve, apply, close, …) are 99 with the vendor's value.
        "changeRequestCreated" => entity(Em::Create, "change_request", None),
        "changeRequestUpdated" | "changeRequestSettingValuesUpdated" | "changeRequestSettingValueRebased"
        | "changeRequestSettingDeleted" | "changeRequestOwnershipClaimed" => entity(Em::Update, "change_request", None),
        "changeRequestApproved" | "changeRequestApprovalDismissed" | "changeRequestApplied"
        | "changeRequestAppliedOnSchedule" | "changeRequestClosed" | "changeRequestNeedsAttention"
        | "changeRequestNeedsAttentionFixed" => entity(other(), "change_request", None),
        "changeRequestCommentAdded" => entity(Em::Create, "change_request_comment", None),
        "changeRequestCommentEdited" => entity(Em::Update, "change_request_comment", None),
        "changeRequestCommentDeleted" => entity(Em::Delete, "change_request_comment", None),
        _ => None,
    }
}

/// MAPPING §4.4's rule for values not in the table: 3004, the activity from the last camel-case
/// word, `entity.type` the snake-cased rest (`webHookArchived` → 99 on `web_hook`).
fn by_suffix(kind: &str) -> (EntityManagementId, String) {
    let split = kind.rfind(|c: char| c.is_ascii_uppercase()).filter(|at| *at > 0).unwrap_or(kind.len());
    let (prefix, verb) = kind.split_at(split);
    let activity = match verb {
        "Created" | "Added" | "Uploaded" | "Connected" => EntityManagementId::Create,
        "Changed" | "Updated" | "Reordered" | "Verified" | "Transferred" | "Regenerated" | "Configured" | "Default" => {
            EntityManagementId::Update
        }
        "Deleted" | "Removed" | "Disconnected" => EntityManagementId::Delete,
        "Enabled" => EntityManagementId::Enable,
        "Disabled" => EntityManagementId::Disable,
        _ => EntityManagementId::Other(kind.to_owned()),
    };
    let mut snake = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
        }
        snake.push(c.to_ascii_lowercase());
    }
    (activity, snake)
}

/// Maps one ConfigCat audit-log item. Fails only when it has no `auditLogTypeEnum` at all.
pub fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
    let Some(kind) = text(record, "auditLogTypeEnum") else {
        return Err(Unmappable("ConfigCat audit-log item without auditLogTypeEnum".into()));
    };
    let mut f = Fields::new(record, "auditLogTypeEnum");
    let mut metadata = ctx.metadata(VENDOR, PRODUCT, PRODUCT, LOG_PROVIDER);
    metadata.event_code = Some(kind.clone());
    metadata.original_event_uid = f.take("auditLogId");
    metadata.original_time = f.take("auditLogDateTime");
    metadata.correlation_uid = f.take("changeSetId");
    // `details` was cut by the vendor (README §1.5): say so where a SIEM can filter on it. The
    // label (or its absence) is the whole of a boolean `truncated`.
    if let Some(Value::Bool(truncated)) = record.get("truncated") {
        f.place("truncated");
        if *truncated {
            metadata.labels = Some(vec!["truncated".into()]);
        }
    }
    let actor = actor(&mut f);

    let row = row(&kind);
    let mark = f.placed.len();
    let built = row.as_ref().and_then(|r| build(&mut f, &r.action, &actor, metadata.tenant_uid.as_deref()));
    let class = built.unwrap_or_else(|| {
        f.placed.truncate(mark); // the abandoned class placed nothing
        let (activity, entity_type) = by_suffix(&kind);
        entity_management(&mut f, activity, &entity_type, &actor, metadata.tenant_uid.as_deref())
    });
    let severity = signal(row.and_then(|r| r.signal), &class).map_or(Severity::Informational, Signal::severity);

    Ok(EventParts {
        class,
        severity,
        time: ctx.time_ms(),
        metadata,
        // An entry exists only for a change that took place (MAPPING §4.4 example).
        status: Some(Status::Success),
        status_code: None,
        status_detail: None,
        message: f.take("auditLogType"),
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(f.unmapped()),
    })
}

/// The row's kind of action, made the administrator's kind when the privilege granted or
/// revoked is an administrator's (conventions 3: [`is_admin_privilege`]).
fn signal(row: Option<Signal>, class: &Class) -> Option<Signal> {
    let admin = matches!(class, Class::UserAccess(c) if c.privileges.iter().any(|p| is_admin_privilege(p)));
    Some(match row? {
        Signal::PrivilegeGranted if admin => Signal::AdminGranted,
        Signal::PrivilegeRevoked if admin => Signal::AdminRevoked,
        signal => signal,
    })
}

/// `actor.user`: the account is `userEmail` (`name` and `email_addr`), `userName` its display
/// name (`full_name`), a person (User). Without an address the entry is the vendor's own
/// automation (README §1.5): System, named by its label in `userName`, else "ConfigCat".
fn actor(f: &mut Fields<'_>) -> Actor {
    let display = f.take("userName");
    let user = match (f.take("userEmail"), display) {
        (Some(account), display) => User {
            email_addr: email(Some(account.clone())),
            full_name: display.filter(|d| *d != account),
            name: Some(account),
            ..User::default()
        }
        .typed(UserType::User),
        (None, label) => {
            User { name: Some(label.unwrap_or_else(|| PRODUCT.to_owned())), ..User::default() }.typed(UserType::System)
        }
    };
    Actor { user: Some(user), app_name: None, app_uid: None }
}

/// The account named by `actionTarget` (a member: a person).
fn target_user(f: &mut Fields<'_>) -> Option<User> {
    f.take("actionTarget").map(member)
}

/// A member named by an address (its `name` and `email_addr`) or by a display name (its
/// `full_name`, and its `name` as nothing else identifies them).
fn member(target: String) -> User {
    let user = match email(Some(target.clone())) {
        Some(address) => User { name: Some(target), email_addr: Some(address), ..User::default() },
        None => User { name: Some(target.clone()), full_name: Some(target), ..User::default() },
    };
    user.typed(UserType::User)
}

fn user(f: &mut Fields<'_>, who: Who, actor: &Actor) -> Option<User> {
    match who {
        Who::Target => target_user(f),
        Who::Actor => actor.user.clone(),
        Who::TargetOrActor => target_user(f).or_else(|| actor.user.clone()),
    }
}

/// The product a team or permission-group event is about: the first part of `where`
/// ("Product / Config / Environment"); `where` is placed when it is the product alone.
fn product(f: &mut Fields<'_>) -> Option<String> {
    let place = f.get("where")?;
    let product = place.split(" / ").next().filter(|p| !p.trim().is_empty())?.to_owned();
    if product == place {
        f.place("where");
    }
    Some(product)
}

/// The class of a table row, or `None` when the record lacks the row's required target.
fn build(f: &mut Fields<'_>, action: &Action, actor: &Actor, tenant: Option<&str>) -> Option<Class> {
    let actor_field = Some(actor.clone());
    Some(match action {
        Action::Entity(activity, kind) => entity_management(f, activity.clone(), kind, actor, tenant),
        Action::Account(activity, attribute) => {
            let user = target_user(f)?;
            let user_result = attribute.and_then(|a| changed_user(&user, a, f.get("details").as_deref()));
            Class::AccountChange(AccountChange {
                activity: activity.clone(),
                user,
                user_result,
                actor: actor_field,
                src_endpoint: None,
                http_request: None,
            })
        }
        Action::Access(activity, who, privilege) => {
            let user = user(f, *who, actor)?;
            let (privilege, scope) = match privilege {
                Privilege::OrganizationAdmin => {
                    let name = f.take("where");
                    let scope = (tenant.is_some() || name.is_some()).then(|| ResourceDetails {
                        uid: tenant.map(str::to_owned),
                        name,
                        kind: Some("organization".into()),
                        data: None,
                    });
                    ("Organization Admin".to_owned(), scope)
                }
                Privilege::NewPermissionGroup => {
                    let group = new_permission_group(f, &user);
                    let scope = product(f).map(|name| ResourceDetails {
                        uid: None,
                        name: Some(name),
                        kind: Some("product".into()),
                        data: None,
                    });
                    (group, scope)
                }
            };
            Class::UserAccess(UserAccess {
                activity: activity.clone(),
                user,
                privileges: vec![privilege],
                resources: scope.map(|s| vec![s]),
                actor: actor_field,
                src_endpoint: None,
                http_request: None,
            })
        }
        Action::Group(activity, of, who) => {
            let (uid, name) = match of {
                GroupOf::Product => (None, product(f)),
                GroupOf::Organization => (tenant.map(str::to_owned), f.take("where")),
                GroupOf::PermissionGroup | GroupOf::SyncGroup => (None, f.take("actionTarget")),
            };
            let kind = match of {
                GroupOf::Product => "product",
                GroupOf::Organization => "organization",
                GroupOf::PermissionGroup => "permission_group",
                GroupOf::SyncGroup => "sync_group",
            };
            uid.as_ref().or(name.as_ref())?;
            Class::GroupManagement(GroupManagement {
                activity: activity.clone(),
                group: Group { uid, name, kind: Some(kind.into()), privileges: None },
                user: who.and_then(|w| user(f, w, actor)),
                privileges: None,
                actor: actor_field,
                src_endpoint: None,
                http_request: None,
            })
        }
    })
}

/// 3004 on `actionTarget`, with `why` as the comment. An organization is type 4 with
/// `entity.org` and the tenant's uid, named by `actionTarget` or else `where`; a permission
/// group type 3 with the group; anything else 99 with its type.
fn entity_management(
    f: &mut Fields<'_>,
    activity: EntityManagementId,
    kind: &str,
    actor: &Actor,
    tenant: Option<&str>,
) -> Class {
    let target = f.take("actionTarget");
    let entity = match kind {
        "organization" => {
            // Without a target only an organization is named by the place (`where` is its name).
            let place = f.get("where");
            if place.is_some() && (target.is_none() || target == place) {
                f.place("where");
            }
            let name = target.or(place).unwrap_or_else(|| kind.to_owned());
            ManagedEntity::organization(tenant.map(Into::into), Some(name)).unwrap_or_default()
        }
        "permission_group" => ManagedEntity {
            name: Some(target.clone().unwrap_or_else(|| kind.to_owned())),
            type_id: Some(3),
            kind: Some("Group".into()),
            group: target.map(|name| Group { name: Some(name), kind: Some(kind.into()), ..Group::default() }),
            ..ManagedEntity::default()
        },
        // Any other object without a target is left as its type alone rather than named
        // after its container.
        _ => ManagedEntity {
            name: Some(target.unwrap_or_else(|| kind.to_owned())),
            type_id: Some(99),
            kind: Some(kind.into()),
            ..ManagedEntity::default()
        },
    };
    Class::EntityManagement(EntityManagement {
        activity,
        entity,
        entity_result: None,
        actor: Some(actor.clone()),
        src_endpoint: None,
        http_request: None,
        comment: f.take("why"),
    })
}

/// The account after an e-mail or full-name change, the new value read from `details`. The
/// account's name is its address, so a new address renames it too.
fn changed_user(user: &User, attribute: Attribute, details: Option<&str>) -> Option<User> {
    let details = details?;
    let mut after = user.clone();
    match attribute {
        Attribute::Email => {
            let from_text = || {
                let words = details.split(|c: char| c.is_whitespace() || "'\"(),;<>".contains(c));
                words
                    .filter_map(|w| email(Some(w.trim_end_matches('.').to_owned())))
                    .rfind(|e| user.name.as_ref() != Some(e))
            };
            after.email_addr = email(details_after(details, &["email", "userEmail", "newEmail"])).or_else(from_text);
            if user.email_addr.is_some() && user.name == user.email_addr && after.email_addr.is_some() {
                after.name.clone_from(&after.email_addr);
            }
        }
        Attribute::FullName => {
            after.full_name =
                details_after(details, &["fullName", "full_name", "name"]).or_else(|| quoted_after(details, "'"));
        }
    }
    (after != *user).then_some(after)
}

/// The new permission group of `teamMemberPermissionGroupChanged` (MAPPING §5a rules 1 and 5):
/// a permission-group field of `after` in a JSON diff in `details`, else quoted text naming one
/// in `details` or `auditLogType` ("permission group changed … to 'Admins'", "permission group
/// 'Admins'"; "… to '…'" only in a text that speaks of a permission group, so a member renamed
/// "to 'Bob (renamed)'" is never the group); a candidate that is the member's name or any
/// address is no group. Without one, the type label.
fn new_permission_group(f: &Fields<'_>, member: &User) -> String {
    let is_member = |g: &str| {
        [&member.name, &member.full_name, &member.email_addr].iter().any(|n| n.as_deref() == Some(g))
            || email(Some(g.to_owned())).is_some()
    };
    ["details", "auditLogType"]
        .iter()
        .filter_map(|key| f.get(key))
        .flat_map(|text| {
            let about_groups = text.to_ascii_lowercase().contains("permission group");
            let to = if about_groups { quoted_after(&text, " to '") } else { None };
            [permission_group_field(&text), to, quoted_after(&text, "permission group '")]
        })
        .flatten()
        .find(|g| !is_member(g))
        .unwrap_or_else(|| PERMISSION_GROUP.to_owned())
}

/// `after.permissionGroupName` or `after.permissionGroup` (a name, or an object with a `name`)
/// of a JSON `{"before":…,"after":…}` diff. Never `after.name`: in a member's diff that is the
/// member.
fn permission_group_field(details: &str) -> Option<String> {
    let diff: Value = serde_json::from_str(details).ok()?;
    let after = diff.get("after")?.as_object()?;
    text(after, "permissionGroupName").or_else(|| match after.get("permissionGroup")? {
        Value::Object(group) => text(group, "name").or_else(|| text(group, "permissionGroupName")),
        _ => text(after, "permissionGroup"),
    })
}

/// A field of `after` when `details` is a JSON `{"before":…,"after":…}` diff (sample record 1).
fn details_after(details: &str, keys: &[&str]) -> Option<String> {
    let diff: Value = serde_json::from_str(details).ok()?;
    let after = diff.get("after")?.as_object()?;
    keys.iter().find_map(|k| text(after, k))
}

/// The single-quoted text after the last `marker` (ending in the opening quote), matched
/// case-insensitively; with `marker` `'` alone, the last quoted text.
fn quoted_after(details: &str, marker: &str) -> Option<String> {
    let lower = details.to_ascii_lowercase(); // ASCII-only change: byte offsets stay valid
    let start = if marker == "'" {
        let end = lower.rfind('\'')?;
        lower[..end].rfind('\'')? + 1
    } else {
        lower.rfind(marker)? + marker.len()
    };
    let rest = details.get(start..)?;
    let value = &rest[..rest.find('\'')?];
    (!value.trim().is_empty()).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use crate::sim::configcat::{AUDIT_LOG_TYPES, REMOVED_TYPES};
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use serde_json::value::RawValue;

    use super::*;
    use crate::ocsf::event::Event;

    const SAMPLES: &str = include_str!("fixtures/records.json");

    /// README §1.7: the current values, then the removed ones that may appear in old data.
    /// Every `auditLogTypeEnum` of vendors README §1.7, then the four removed since 2024: the
    /// simulator's lists, so the contract is written down once.
    fn values() -> Vec<&'static str> {
        [AUDIT_LOG_TYPES, REMOVED_TYPES].concat()
    }

    /// Maps a record as the pipeline does (the tenant from configuration, the time the source
    /// parsed) and checks what every event must satisfy.
    fn event(record: &Map<String, Value>, raw: &str) -> Value {
        let time = text(record, "auditLogDateTime").and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
        let time = time.map_or(DateTime::<Utc>::UNIX_EPOCH, |t| t.with_timezone(&Utc));
        let key = text(record, "auditLogId").unwrap_or_default();
        let ctx = Context::fixed("08d8a3f5-0000-4d4d-8e2e-1a2b3c4d5e6f", &key, time, raw);
        let json = serde_json::to_value(Event::new(map(record, &ctx).unwrap())).unwrap();
        crate::ocsf::schema_check::assert_valid(&json);
        crate::ocsf::event_checks::assert_complete(&json, &["event_code", "original_event_uid"]);
        json
    }

    fn samples() -> Vec<(Map<String, Value>, String)> {
        let raws: Vec<&RawValue> = serde_json::from_str(SAMPLES).unwrap();
        raws.into_iter().map(|r| (serde_json::from_str(r.get()).unwrap(), r.get().to_owned())).collect()
    }

    /// A record of one value: sample record 2 (an invitation: its target an e-mail address) for
    /// the rows about a member, else sample record 1 (a flag change); the product as the place
    /// of team events, the legacy schema for the removed values.
    fn record(kind: &str, id: usize) -> Map<String, Value> {
        let about_member = matches!(
            row(kind).map(|r| r.action),
            Some(
                Action::Account(..)
                    | Action::Access(..)
                    | Action::Group(_, GroupOf::Product | GroupOf::Organization, _)
            )
        );
        let mut r = samples().swap_remove(usize::from(about_member)).0;
        let words: String =
            kind.chars().flat_map(|c| [(c.is_ascii_uppercase()).then_some(' '), Some(c)]).flatten().collect();
        r.insert("auditLogTypeEnum".into(), kind.into());
        r.insert("auditLogId".into(), (58_300_000 + id).into());
        r.insert("auditLogType".into(), words.to_lowercase().into());
        if kind.starts_with("teamMember") || kind.contains("Product") {
            r.insert("where".into(), "Checkout Service".into());
        }
        if matches!(row(kind).map(|r| r.action), Some(Action::Entity(_, "organization"))) {
            // An organization's own entry: the organization is the target and the place.
            r.insert("actionTarget".into(), "Example Org".into());
            r.insert("where".into(), "Example Org".into());
        }
        let details = match kind {
            "userEmailChanged" => {
                r#"{"before":{"email":"sam.lindqvist@example.net"},"after":{"email":"sam.l@example.net"}}"#
            }
            "userFullNameChanged" => "Full name changed from 'Sam L' to 'Sam Lindqvist'",
            "teamMemberPermissionGroupChanged" => {
                "Permission group changed from 'Developers' to 'Admins' in 'Checkout Service'"
            }
            _ => "",
        };
        if !details.is_empty() {
            r.insert("details".into(), details.into());
        }
        if REMOVED_TYPES.contains(&kind) {
            r.remove("modelVersion");
            r.insert("changeSetId".into(), "5b9f4e1c-2a7d-4c1e-9f3b-8d6a0e2c7b14".into());
        }
        r
    }

    /// Every value of the table, two values it does not know, and the fallbacks, by name.
    fn cases() -> Vec<(String, Map<String, Value>)> {
        let unknown = ["settingArchived", "segmentsReordered"];
        let mut cases: Vec<_> =
            values().iter().chain(&unknown).enumerate().map(|(i, kind)| (kind.to_string(), record(kind, i))).collect();
        let variants = [
            ("userDisabled", "no_target", json!({"actionTarget": null})),
            ("teamMemberPermissionGroupChanged", "no_details", json!({"details": "Permission group changed"})),
            ("settingValueChanged", "system_actor", json!({"userName": null, "userEmail": null})),
            ("settingValueChanged", "email_only_actor", json!({"userName": null, "why": null})),
            (
                "teamMemberPermissionGroupChanged",
                "diff",
                json!({"details": r#"{"before":{"permissionGroup":"Developers"},"after":{"permissionGroup":"Read only"}}"#}),
            ),
            (
                "teamMemberPermissionGroupChanged",
                "truncated",
                json!({"details": r#"{"before":{"permissionGroup":"Developers"},"after":{"permissio"#, "truncated": true}),
            ),
            ("userDisabled", "display_name_target", json!({"actionTarget": "Sam Lindqvist"})),
        ];
        for (i, (kind, variant, patch)) in variants.into_iter().enumerate() {
            let mut r = record(kind, 200 + i);
            r.extend(patch.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone())));
            cases.push((format!("{kind}.{variant}"), r));
        }
        cases
    }

    #[test]
    fn test_every_value_matches_its_snapshot() {
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
    fn test_every_documented_value_has_a_row() {
        let missing: Vec<_> = values().into_iter().filter(|v| row(v).is_none()).collect();
        assert!(missing.is_empty(), "no table row for {missing:?}");
        let mut unique = values();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), values().len());
    }

    #[test]
    fn test_every_event_is_complete_and_has_no_null() {
        for record in cases().into_iter().map(|(_, r)| r).chain(samples().into_iter().map(|(r, _)| r)) {
            let json = event(&record, &serde_json::to_string(&record).unwrap());
            assert_eq!(json["metadata"]["event_code"], record["auditLogTypeEnum"]);
        }
    }

    #[test]
    fn test_unknown_values_take_the_suffix_rule() {
        let rule = |kind: &str| {
            let (activity, kind) = by_suffix(kind);
            (activity.id(), kind)
        };
        assert_eq!(rule("settingArchived"), (99, "setting".to_owned()));
        assert_eq!(rule("webHookPaused"), (99, "web_hook".to_owned()));
        assert_eq!(rule("samlIdpConfigurationUploaded"), (1, "saml_idp_configuration".to_owned()));
        assert_eq!(rule("proxySecretRegenerated"), (3, "proxy_secret".to_owned()));
        assert_eq!(rule("scimDisconnected"), (4, "scim".to_owned()));
        assert_eq!(rule("ssoEnabled"), (8, "sso".to_owned()));
        assert_eq!(rule("unexpected"), (99, "unexpected".to_owned()));
    }

    #[test]
    fn test_required_targets_fall_back_to_entity_management() {
        let class = |name: &str| {
            let (_, record) = cases().into_iter().find(|(n, _)| n == name).unwrap();
            let json = event(&record, "{}");
            (json["class_uid"].as_u64().unwrap(), json["activity_id"].as_u64().unwrap())
        };
        assert_eq!(class("userDisabled.no_target"), (3004, 9));
        // MAPPING §5a rule 1: a grant keeps its class when the details name no group.
        assert_eq!(class("teamMemberPermissionGroupChanged.no_details"), (3005, 1));
        assert_eq!(class("teamMemberPermissionGroupChanged"), (3005, 1));
    }

    /// A case of [`cases`] by name, mapped.
    fn case(name: &str) -> Value {
        let (_, record) = cases().into_iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no case {name}"));
        event(&record, &serde_json::to_string(&record).unwrap())
    }

    /// `kind`'s record of [`record`] with these fields replaced (a `null` removes one), mapped.
    fn patched(kind: &str, patch: Value) -> Value {
        let mut r = record(kind, 300);
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                r.remove(k);
            } else {
                r.insert(k.clone(), v.clone());
            }
        }
        event(&r, &serde_json::to_string(&r).unwrap())
    }

    /// MAPPING §5a rules 1 and 5: the member's new permission group comes from a permission-group
    /// field or quoted text of `details`/`auditLogType`, else the type label; never from a name
    /// of the member (the simulator's records were a rename diff of the member, and every demo
    /// 3005 event said `"privileges":["… (renamed)"]`).
    #[test]
    fn test_permission_group_change_stays_3005_and_never_names_the_member() {
        let member = "sam.lindqvist@example.net";
        let renamed = json!({"before": {"name": member}, "after": {"name": format!("{member} (renamed)")}}).to_string();
        let cut = r#"{"before":{"permissionGroup":"Developers"},"after":{"permissionGr"#;
        let cases = [
            (json!({"details": renamed}), "permission group"),
            (json!({"details": "Permission group changed"}), "permission group"),
            (json!({"details": null}), "permission group"),
            (json!({"details": format!("Team member permission group changed: '{member}'")}), "permission group"),
            (json!({"details": format!("'{member}' moved to '{member}'")}), "permission group"),
            // A display name the record does not give us, renamed (adversarial review F10).
            (json!({"details": "Member 'Bob Builder' moved to 'Bob Builder (renamed)'"}), "permission group"),
            (json!({"details": cut, "truncated": true}), "permission group"),
            (
                json!({"details": r#"{"before":{"permissionGroup":"Developers"},"after":{"permissionGroup":"Read only"}}"#}),
                "Read only",
            ),
            (
                json!({"details": r#"{"after":{"permissionGroup":{"permissionGroupId":7,"name":"Product Owners"}}}"#}),
                "Product Owners",
            ),
            (
                json!({"details": r#"{"before":{"permissionGroupName":"Developers"},"after":{"permissionGroupName":"Administrators"}}"#}),
                "Administrators",
            ),
            (
                json!({"details": "Permission group changed from 'Developers' to 'Admins' in 'Checkout Service'"}),
                "Admins",
            ),
            (
                json!({"details": "Permission group changed", "auditLogType": "Permission group changed to 'Read only'"}),
                "Read only",
            ),
        ];
        for (patch, privilege) in cases {
            let json = patched("teamMemberPermissionGroupChanged", patch.clone());
            let got = (&json["class_uid"], &json["activity_id"], &json["privileges"]);
            assert_eq!(got, (&json!(3005), &json!(1), &json!([privilege])), "{patch}");
            assert_eq!(json["user"]["email_addr"], member, "{patch}");
        }
    }

    /// Conventions 3: the severity of every security kind of action is the shared table's
    /// ([`Signal`]); everything else is Informational.
    #[test]
    fn test_severities_come_from_the_signal_table() {
        use crate::ocsf::Signal::*;
        let signals = [
            ("twoFactorDisabledForMember", MfaDisabled),
            ("organizationAdminChanged", AdminGranted),
            ("organizationAdminLeft", AdminRevoked),
            // The test record's member moves to 'Admins': an administrator group.
            ("teamMemberPermissionGroupChanged", AdminGranted),
            ("permissionGroupChanged", PrivilegeGranted),
            ("domainSamlConfigured", SsoChanged),
            ("domainSamlDeleted", SsoChanged),
            ("samlIdpConfigurationAdded", SsoChanged),
            ("samlIdpConfigurationUpdated", SsoChanged),
            ("samlIdpConfigurationRemoved", SsoChanged),
            ("autoProvisioningConfigurationChanged", SsoChanged),
            ("autoProvisioningEnabledChanged", SsoChanged),
            ("userProvisioningConfigurationChanged", SsoChanged),
            ("syncUserProvisioningEnabled", SsoChanged),
            ("syncUserProvisioningDisabled", SsoChanged),
            ("syncGroupProvisioningRuleChanged", SsoChanged),
            ("syncGroupsReordered", SsoChanged),
            ("apiKeyAdded", CredentialCreated),
            ("apiKeyConnected", CredentialCreated),
            ("publicApiAccessTokenAdded", CredentialCreated),
            ("webhookSigningKeyCreated", CredentialCreated),
            ("proxyNotificationSigningKeyAdded", CredentialCreated),
            ("proxyConfigurationSecretRegenerated", CredentialRotated),
            ("apiKeyRemoved", CredentialDeleted),
            ("publicApiAccessTokenRemoved", CredentialDeleted),
            ("webhookSigningKeyDeleted", CredentialDeleted),
            ("proxyNotificationSigningKeyDeleted", CredentialDeleted),
            ("userDisabled", AccountDisabled),
            ("syncUserDeleted", AccountDisabled),
            ("organizationMemberRemoved", AccountDisabled),
            ("productDeleted", TenantDeleted),
            ("productOwnershipTransferred", TenantDeleted),
            ("organizationRemoved", TenantDeleted),
            ("userEmailChanged", EmailChanged),
        ];
        for (kind, signal) in signals {
            assert_eq!(case(kind)["severity_id"], signal.severity() as u8, "{kind}: {signal:?}");
        }
        let member =
            |group: &str| json!({"details": format!("Permission group changed from 'Administrators' to '{group}'")});
        let granted = patched("teamMemberPermissionGroupChanged", member("Developers"));
        assert_eq!(granted["severity_id"], PrivilegeGranted.severity() as u8);
        for kind in values().into_iter().filter(|v| !signals.iter().any(|(k, _)| k == v)) {
            assert_eq!(case(kind)["severity_id"], 1, "{kind} is no security action: Informational");
        }
    }

    /// Conventions 4: the actor's account is its address (`userEmail`), its display name
    /// (`userName`) the full name, typed User; the vendor's own automation (no address) is
    /// System, named by its label, and an entry without any user is ConfigCat's.
    #[test]
    fn test_actor_is_the_account_with_its_display_name() {
        let actor = |json: &Value| json["actor"].clone();
        let jordan = json!({"user": {"name": "jordan.reyes@example.com", "full_name": "Jordan Reyes",
            "email_addr": "jordan.reyes@example.com", "type_id": 1, "type": "User"}});
        assert_eq!(actor(&case("settingValueChanged")), jordan);
        let email_only = json!({"user": {"name": "jordan.reyes@example.com", "email_addr": "jordan.reyes@example.com",
            "type_id": 1, "type": "User"}});
        assert_eq!(actor(&case("settingValueChanged.email_only_actor")), email_only);
        let configcat = json!({"user": {"name": "ConfigCat", "type_id": 3, "type": "System"}});
        assert_eq!(actor(&case("settingValueChanged.system_actor")), configcat);
        let (record, raw) = samples().swap_remove(4);
        let scim = json!({"user": {"name": "User provisioning (SCIM)", "type_id": 3, "type": "System"}});
        assert_eq!(actor(&event(&record, &raw)), scim);
    }

    /// Conventions 4: a target named by its address has it as name and `email_addr`; one named
    /// by its display name has it as `full_name` (and as `name`, as nothing else identifies it).
    #[test]
    fn test_target_user_by_address_or_display_name() {
        let by_address = case("userDisabled");
        assert_eq!(
            by_address["user"],
            json!({"name": "sam.lindqvist@example.net", "email_addr": "sam.lindqvist@example.net", "type_id": 1, "type": "User"})
        );
        let by_name = patched("userDisabled", json!({"actionTarget": "Sam Lindqvist"}));
        assert_eq!(
            by_name["user"],
            json!({"name": "Sam Lindqvist", "full_name": "Sam Lindqvist", "type_id": 1, "type": "User"})
        );
        assert_eq!((&by_name["class_uid"], &by_name["activity_id"]), (&json!(3001), &json!(5)));
    }

    /// Conventions 4: an organization entity is type 4 with `entity.org`.
    #[test]
    fn test_organization_entities_carry_the_org() {
        for kind in
            ["organizationAdded", "organizationChanged", "organizationSubscriptionTypeChanged", "organizationRemoved"]
        {
            let entity = &case(kind)["entity"];
            assert_eq!((&entity["type_id"], &entity["type"]), (&json!(4), &json!("Organization")), "{kind}");
            assert_eq!(entity["org"], json!({"uid": entity["uid"], "name": entity["name"]}), "{kind}");
            assert_eq!(
                (&entity["uid"], &entity["name"]),
                (&json!("08d8a3f5-0000-4d4d-8e2e-1a2b3c4d5e6f"), &json!("Example Org")),
                "{kind}"
            );
        }
    }

    /// MAPPING §5a rule 9: `unmapped` holds only fields placed nowhere: `truncated` is the label,
    /// `why` the comment of 3004, `where` the group or organization it names; no unmapped value
    /// repeats a value of the event.
    #[test]
    fn test_unmapped_holds_only_fields_placed_nowhere() {
        fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
            match v {
                Value::String(s) => out.push(s),
                Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
                Value::Object(o) => {
                    o.iter().filter(|(k, _)| *k != "unmapped" && *k != "raw_data").for_each(|(_, x)| strings(x, out))
                }
                _ => {}
            }
        }
        let mut events: Vec<(String, Value)> =
            cases().into_iter().map(|(n, r)| (n, event(&r, &serde_json::to_string(&r).unwrap()))).collect();
        events.extend(
            samples().into_iter().enumerate().map(|(i, (r, raw))| (format!("sample_{}", i + 1), event(&r, &raw))),
        );
        for (name, json) in &events {
            let unmapped = json["unmapped"].as_object().cloned().unwrap_or_default();
            assert!(!unmapped.contains_key("truncated"), "{name}: truncated is the label");
            if json["class_uid"] == 3004 {
                assert!(!unmapped.contains_key("why"), "{name}: why is the comment");
            }
            let mut placed = Vec::new();
            strings(json, &mut placed);
            for (key, value) in &unmapped {
                assert!(!placed.contains(&value.as_str().unwrap()), "{name}: unmapped.{key} {value} is placed");
            }
        }
        let joined = case("teamMemberJoined");
        assert_eq!(joined["group"]["name"], "Checkout Service");
        assert!(joined["unmapped"].get("where").is_none(), "{joined}");
    }

    /// The demo's records (the simulator's) map as the rules say: every permission-group change
    /// is 3005 naming a permission group, never a member; product-team events name the product.
    #[test]
    fn test_simulated_records_map_as_documented() {
        use crate::sim::configcat::{ConfigCatSimOptions, Store};
        let opts = ConfigCatSimOptions { records: 4000, ..ConfigCatSimOptions::default() };
        let store =
            Store::generate(7, &opts, 0, DateTime::parse_from_rfc3339("2026-05-13T00:00:00Z").unwrap().to_utc());
        let (mut changes, mut named) = (0, 0);
        for raw in store.records_json() {
            let record: Map<String, Value> = serde_json::from_str(&raw).unwrap();
            let json = event(&record, &raw);
            let kind = record["auditLogTypeEnum"].as_str().unwrap();
            if kind == "teamMemberPermissionGroupChanged" {
                changes += 1;
                assert_eq!((&json["class_uid"], &json["activity_id"]), (&json!(3005), &json!(1)), "{raw}");
                let privilege = json["privileges"][0].as_str().unwrap();
                assert!(
                    ["Developers", "Product Owners", "Read only", "Administrators", "permission group"]
                        .contains(&privilege),
                    "{raw}"
                );
                named += usize::from(privilege != "permission group");
                assert_eq!(json["resources"][0]["type"], "product", "{raw}");
            }
            if ["teamMemberJoined", "teamMemberRemoved", "teamMemberLeft", "teamMemberAddedToProduct"].contains(&kind) {
                assert!(
                    ["Checkout Service", "Mobile App", "Marketing Site"]
                        .contains(&json["group"]["name"].as_str().unwrap()),
                    "{raw}"
                );
            }
        }
        assert!(changes > 10 && named * 10 > changes * 8, "{named} of {changes} name their group");
    }

    #[test]
    fn test_a_record_without_audit_log_type_enum_is_unmappable() {
        let mut record = samples().swap_remove(0).0;
        record.insert("auditLogTypeEnum".into(), Value::Null);
        let ctx = Context::fixed("o", "k", DateTime::<Utc>::UNIX_EPOCH, "{}");
        assert!(map(&record, &ctx).is_err());
    }
}
