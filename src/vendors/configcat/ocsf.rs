//! ConfigCat audit-log item → OCSF 1.8.0 event (`ocsf/MAPPING.md` §4.4).
//!
//! Input: one `AuditLogItemModel` of `GET /v2/organizations/{organizationId}/auditlogs` (vendors
//! README §1.5; every field may be missing or null). The class comes from `auditLogTypeEnum`
//! through one table, [`row`], which has a row for every value of README §1.7, the removed ones
//! included. The set is open: a value not in the table takes MAPPING's suffix rule
//! ([`by_suffix`]: 3004 with the activity from the verb), and so does a row whose required target
//! is missing from the record (MAPPING §3 rule 7), e.g. 3001 without `actionTarget`.
//! There is no IP or user agent in the record, so no `src_endpoint`/`http_request`.
//!
//! Not here: the severity override (applied by the caller, keyed on `metadata.event_code`), the
//! event uid and loggers ([`Context::metadata`]), schema validation.

use serde_json::{Map, Value};

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Class, EntityManagement, EntityManagementId, EventParts, Group,
    GroupManagement, GroupManagementId, ManagedEntity, Severity, Status, User, UserAccess, UserAccessId,
};
use crate::ocsf::{Context, Fields, Unmappable, email, text};

const VENDOR: &str = "configcat";
const PRODUCT: &str = "ConfigCat";
const LOG_PROVIDER: &str = "ConfigCat Public Management API audit log";

/// One row of the table: what the event becomes and its suggested severity.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    action: Action,
    severity: Severity,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// 3004 on `actionTarget`, an object of this type (`organization` → type_id 4,
    /// `permission_group` → 3 with `entity.group`, anything else 99).
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
    /// `actionTarget`, an e-mail address or a name.
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
    Named(&'static str),
    /// The member's new permission group, read from `details`.
    NewPermissionGroup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    Email,
    FullName,
}

fn entity(activity: EntityManagementId, kind: &'static str, severity: Severity) -> Option<Row> {
    Some(Row { action: Action::Entity(activity, kind), severity })
}

fn account(activity: AccountChangeId, attribute: Option<Attribute>, severity: Severity) -> Option<Row> {
    Some(Row { action: Action::Account(activity, attribute), severity })
}

fn access(activity: UserAccessId, who: Who, privilege: Privilege, severity: Severity) -> Option<Row> {
    Some(Row { action: Action::Access(activity, who, privilege), severity })
}

fn group(activity: GroupManagementId, of: GroupOf, who: Option<Who>, severity: Severity) -> Option<Row> {
    Some(Row { action: Action::Group(activity, of, who), severity })
}

/// MAPPING §4.4's full table, one arm per `auditLogTypeEnum` value; `None` for a value it does
/// not know. Rows marked "not in MAPPING" are README §1.7 values MAPPING has no row for, decided
/// here by analogy with their neighbours. Judgement calls live here and only here (MAPPING §7).
#[rustfmt::skip]
fn row(kind: &str) -> Option<Row> {
    use AccountChangeId as Ac;
    use EntityManagementId as Em;
    use GroupManagementId as Gm;
    use Severity::{Informational, Low, Medium};
    use UserAccessId as Ua;
    let other = || Em::Other(kind.to_owned());
    let group_other = || Gm::Other(kind.to_owned());
    match kind {
        "productCreated" => entity(Em::Create, "product", Informational),
        "productChanged" => entity(Em::Update, "product", Informational),
        "productOwnershipTransferred" => entity(Em::Update, "product", Low),
        "productDeleted" => entity(Em::Delete, "product", Low),
        "productsReordered" => entity(Em::Update, "product", Informational),
        "productPreferencesUpdated" => entity(Em::Update, "product_preferences", Informational), // not in MAPPING
        "teamMemberInvited" => account(Ac::Create, None, Informational),
        "teamMemberInvitationRevoked" => account(Ac::Delete, None, Informational),
        "teamMemberJoined" => group(Gm::AddUser, GroupOf::Product, Some(Who::TargetOrActor), Informational),
        "teamMemberPermissionGroupChanged" => access(Ua::AssignPrivileges, Who::Target, Privilege::NewPermissionGroup, Low),
        "teamMemberRemoved" => group(Gm::RemoveUser, GroupOf::Product, Some(Who::Target), Informational),
        "teamMemberLeft" => group(Gm::RemoveUser, GroupOf::Product, Some(Who::Actor), Informational),
        "teamMemberInvitationChanged" => entity(Em::Update, "invitation", Informational),
        "teamMemberInvitationResent" => entity(other(), "invitation", Informational),
        "teamMemberInvitationRejected" => entity(other(), "invitation", Informational),
        "teamMemberAddedToProduct" => group(Gm::AddUser, GroupOf::Product, Some(Who::Target), Informational), // not in MAPPING
        "configCreated" => entity(Em::Create, "config", Informational),
        "configChanged" => entity(Em::Update, "config", Informational),
        "configDeleted" => entity(Em::Delete, "config", Informational),
        "configsReordered" => entity(Em::Update, "config", Informational),
        "environmentCreated" => entity(Em::Create, "environment", Informational),
        "environmentChanged" => entity(Em::Update, "environment", Informational),
        "environmentDeleted" => entity(Em::Delete, "environment", Informational),
        "environmentsReordered" => entity(Em::Update, "environment", Informational),
        "settingCreated" => entity(Em::Create, "setting", Informational),
        "settingChanged" => entity(Em::Update, "setting", Informational),
        "settingDeleted" => entity(Em::Delete, "setting", Informational),
        "settingsReordered" => entity(Em::Update, "setting", Informational),
        "predefinedVariationsChanged" => entity(Em::Update, "setting", Informational), // not in MAPPING
        "settingConvertedToPredefinedVariations" => entity(Em::Update, "setting", Informational), // not in MAPPING
        "settingConvertedToFreeFormValues" => entity(Em::Update, "setting", Informational), // not in MAPPING
        "settingValueChanged" => entity(Em::Update, "setting", Informational),
        "webHookCreated" => entity(Em::Create, "web_hook", Informational),
        "webHookChanged" => entity(Em::Update, "web_hook", Informational),
        "webHookDeleted" => entity(Em::Delete, "web_hook", Informational),
        "permissionGroupCreated" => group(Gm::Create, GroupOf::PermissionGroup, None, Informational),
        "permissionGroupChanged" => entity(Em::Update, "permission_group", Low),
        "permissionGroupDeleted" => group(Gm::Delete, GroupOf::PermissionGroup, None, Informational),
        "permissionGroupDefault" => entity(Em::Update, "permission_group", Informational),
        "apiKeyAdded" => entity(Em::Create, "api_key", Low),
        "apiKeyRemoved" => entity(Em::Delete, "api_key", Informational),
        "integrationAdded" => entity(Em::Create, "integration", Informational),
        "integrationChanged" => entity(Em::Update, "integration", Informational),
        "integrationRemoved" => entity(Em::Delete, "integration", Informational),
        "apiKeyConnected" => entity(Em::Create, "api_key", Informational),
        "integrationLinkAdded" => entity(Em::Create, "integration_link", Informational),
        "integrationLinkRemoved" => entity(Em::Delete, "integration_link", Informational),
        "organizationAdded" => entity(Em::Create, "organization", Informational),
        "organizationRemoved" => entity(Em::Delete, "organization", Low),
        "organizationChanged" => entity(Em::Update, "organization", Informational),
        "organizationSubscriptionTypeChanged" => entity(Em::Update, "organization", Informational),
        "organizationAdminChanged" => access(Ua::AssignPrivileges, Who::Target, Privilege::Named("Organization Admin"), Medium),
        "organizationAdminLeft" => access(Ua::RevokePrivileges, Who::Actor, Privilege::Named("Organization Admin"), Low),
        "twoFactorDisabledForMember" => account(Ac::MfaFactorDisable, None, Medium),
        "tagAdded" => entity(Em::Create, "tag", Informational),
        "tagChanged" => entity(Em::Update, "tag", Informational),
        "tagRemoved" => entity(Em::Delete, "tag", Informational),
        "settingTagAdded" => entity(Em::Create, "setting_tag", Informational),
        "settingTagRemoved" => entity(Em::Delete, "setting_tag", Informational),
        "publicApiAccessTokenAdded" => entity(Em::Create, "public_api_access_token", Low),
        "publicApiAccessTokenRemoved" => entity(Em::Delete, "public_api_access_token", Informational),
        "domainAdded" => entity(Em::Create, "domain", Informational),
        "domainVerified" => entity(Em::Update, "domain", Informational),
        "domainRemoved" => entity(Em::Delete, "domain", Informational),
        "domainSamlConfigured" => entity(Em::Update, "domain_saml", Medium),
        "domainSamlDeleted" => entity(Em::Delete, "domain_saml", Medium),
        "autoProvisioningConfigurationChanged" => entity(Em::Update, "auto_provisioning_configuration", Low),
        "samlIdpConfigurationAdded" => entity(Em::Create, "saml_idp_configuration", Medium),
        "samlIdpConfigurationRemoved" => entity(Em::Delete, "saml_idp_configuration", Medium),
        "samlIdpConfigurationUpdated" => entity(Em::Update, "saml_idp_configuration", Medium),
        "autoProvisioningEnabledChanged" => entity(Em::Update, "auto_provisioning", Low),
        "organizationMemberJoined" => group(Gm::AddUser, GroupOf::Organization, Some(Who::TargetOrActor), Informational),
        "organizationMemberProductJoinRequested" => group(group_other(), GroupOf::Product, Some(Who::Actor), Informational),
        "organizationMemberProductJoinRequestRejected" => group(group_other(), GroupOf::Product, Some(Who::Target), Informational),
        "organizationMemberProductJoinRequestApproved" => group(Gm::AddUser, GroupOf::Product, Some(Who::Target), Informational),
        "organizationMemberRemoved" => group(Gm::RemoveUser, GroupOf::Organization, Some(Who::Target), Low),
        "codeReferencesUploaded" => entity(Em::Create, "code_reference", Informational),
        "codeReferenceDeleted" => entity(Em::Delete, "code_reference", Informational),
        "codeReferenceStaleBranchDeleted" => entity(Em::Delete, "code_reference", Informational),
        "segmentCreated" => entity(Em::Create, "segment", Informational),
        "segmentChanged" => entity(Em::Update, "segment", Informational),
        "segmentDeleted" => entity(Em::Delete, "segment", Informational),
        "webhookSigningKeyDeleted" => entity(Em::Delete, "webhook_signing_key", Informational),
        "webhookSigningKeyCreated" => entity(Em::Create, "webhook_signing_key", Low),
        "userProvisioningConfigurationChanged" => entity(Em::Update, "user_provisioning_configuration", Low),
        "syncGroupProvisioningRuleChanged" => entity(Em::Update, "sync_group_provisioning_rule", Informational),
        "syncGroupsReordered" => entity(Em::Update, "sync_group", Informational),
        "syncUserProvisioningEnabled" => entity(Em::Enable, "user_provisioning", Low),
        "syncUserProvisioningDisabled" => entity(Em::Disable, "user_provisioning", Low),
        "userEmailChanged" => account(Ac::Other(kind.to_owned()), Some(Attribute::Email), Low),
        "userFullNameChanged" => account(Ac::Other(kind.to_owned()), Some(Attribute::FullName), Informational),
        "userDisabled" => account(Ac::Disable, None, Low),
        "awsConnected" => entity(Em::Create, "aws", Informational),
        "awsDisconnected" => entity(Em::Delete, "aws", Informational),
        "userEnabled" => account(Ac::Enable, None, Informational),
        "syncUserDeleted" => account(Ac::Delete, None, Informational),
        "syncGroupDeleted" => group(Gm::Delete, GroupOf::SyncGroup, None, Informational),
        "proxyConfigurationCreated" => entity(Em::Create, "proxy_configuration", Informational),
        "proxyConfigurationChanged" => entity(Em::Update, "proxy_configuration", Informational),
        "proxyConfigurationDeleted" => entity(Em::Delete, "proxy_configuration", Informational),
        "proxyConfigurationSecretRegenerated" => entity(Em::Update, "proxy_configuration", Low),
        "proxyNotificationSettingsUpdated" => entity(Em::Update, "proxy_notification_settings", Informational),
        "proxyNotificationSettingsDeleted" => entity(Em::Delete, "proxy_notification_settings", Informational),
        "proxyNotificationSigningKeyAdded" => entity(Em::Create, "proxy_notification_signing_key", Informational),
        "proxyNotificationSigningKeyDeleted" => entity(Em::Delete, "proxy_notification_signing_key", Informational),
        // Change requests (not in MAPPING): CRUD on the request and its comments; workflow
        // steps (approve, apply, close, …) are 99 with the vendor's value.
        "changeRequestCreated" => entity(Em::Create, "change_request", Informational),
        "changeRequestUpdated" | "changeRequestSettingValuesUpdated" | "changeRequestSettingValueRebased"
        | "changeRequestSettingDeleted" | "changeRequestOwnershipClaimed" => entity(Em::Update, "change_request", Informational),
        "changeRequestApproved" | "changeRequestApprovalDismissed" | "changeRequestApplied"
        | "changeRequestAppliedOnSchedule" | "changeRequestClosed" | "changeRequestNeedsAttention"
        | "changeRequestNeedsAttentionFixed" => entity(other(), "change_request", Informational),
        "changeRequestCommentAdded" => entity(Em::Create, "change_request_comment", Informational),
        "changeRequestCommentEdited" => entity(Em::Update, "change_request_comment", Informational),
        "changeRequestCommentDeleted" => entity(Em::Delete, "change_request_comment", Informational),
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
    // `details` was cut by the vendor (README §1.5): say so where a SIEM can filter on it.
    if record.get("truncated") == Some(&Value::Bool(true)) {
        metadata.labels = Some(vec!["truncated".into()]);
    }
    let message = f.take("auditLogType");
    let actor = actor(&mut f);

    let row = row(&kind);
    let mark = f.placed.len();
    let built = row.as_ref().and_then(|r| build(&mut f, &r.action, &actor, metadata.tenant_uid.as_deref()));
    let class = built.unwrap_or_else(|| {
        f.placed.truncate(mark); // the abandoned class placed nothing
        let (activity, entity_type) = by_suffix(&kind);
        entity_management(&mut f, activity, &entity_type, &actor, metadata.tenant_uid.as_deref())
    });

    Ok(EventParts {
        class,
        severity: row.map_or(Severity::Informational, |r| r.severity),
        time: ctx.time_ms(),
        metadata,
        // An entry exists only for a change that took place (MAPPING §4.4 example).
        status: Some(Status::Success),
        status_code: None,
        status_detail: None,
        message,
        raw_data: ctx.raw.to_owned(),
        unmapped: Some(f.unmapped()),
    })
}

/// `actor.user` from `userName`/`userEmail` (the address as the name when there is no name);
/// with neither, a system action of ConfigCat itself.
fn actor(f: &mut Fields<'_>) -> Actor {
    let address = f.get("userEmail");
    let email_addr = email(address.clone());
    let Some(name) = f.get("userName").or(address) else {
        return Actor { user: None, app_name: Some(PRODUCT.into()), app_uid: None };
    };
    if f.take("userName").is_none() || email_addr.is_some() {
        f.take("userEmail");
    }
    Actor { user: Some(User { name: Some(name), email_addr, ..User::default() }), app_name: None, app_uid: None }
}

/// The account named by `actionTarget`: its name, and its address when it is one.
fn target_user(f: &mut Fields<'_>) -> Option<User> {
    let target = f.take("actionTarget")?;
    Some(User { email_addr: email(Some(target.clone())), name: Some(target), ..User::default() })
}

fn user(f: &mut Fields<'_>, who: Who, actor: &Actor) -> Option<User> {
    match who {
        Who::Target => target_user(f),
        Who::Actor => actor.user.clone(),
        Who::TargetOrActor => target_user(f).or_else(|| actor.user.clone()),
    }
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
            let privilege = match privilege {
                Privilege::Named(name) => (*name).to_owned(),
                Privilege::NewPermissionGroup => new_permission_group(f.get("details").as_deref()?)?,
            };
            Class::UserAccess(UserAccess {
                activity: activity.clone(),
                user: user(f, *who, actor)?,
                privileges: vec![privilege],
                resources: None,
                actor: actor_field,
                src_endpoint: None,
                http_request: None,
            })
        }
        Action::Group(activity, of, who) => {
            let where_ = f.get("where");
            let (uid, name) = match of {
                GroupOf::Product => (None, where_.and_then(|w| w.split(" / ").next().map(str::to_owned))),
                GroupOf::Organization => (tenant.map(str::to_owned), where_),
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

/// 3004 on `actionTarget`, with `why` as the comment. Organizations are type 4 with the tenant's uid; permission groups 3 with the group.
fn entity_management(
    f: &mut Fields<'_>,
    activity: EntityManagementId,
    kind: &str,
    actor: &Actor,
    tenant: Option<&str>,
) -> Class {
    // Without a target, only an organization is named by the place (`where` is its name);
    // any other object is left as its type alone rather than named after its container.
    let target = f.take("actionTarget");
    let place = if kind == "organization" { f.get("where") } else { None };
    let name = target.clone().or(place).unwrap_or_else(|| kind.to_owned());
    let mut entity = ManagedEntity { name: Some(name), ..ManagedEntity::default() };
    match kind {
        "organization" => {
            (entity.type_id, entity.kind, entity.uid) = (Some(4), Some("Organization".into()), tenant.map(Into::into));
        }
        "permission_group" => {
            (entity.type_id, entity.kind) = (Some(3), Some("Group".into()));
            entity.group = target.map(|name| Group { name: Some(name), kind: Some(kind.into()), ..Group::default() });
        }
        _ => (entity.type_id, entity.kind) = (Some(99), Some(kind.into())),
    }
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

/// The account after an e-mail or full-name change, the new value read from `details`.
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
        }
        Attribute::FullName => {
            after.full_name =
                details_after(details, &["fullName", "full_name", "name"]).or_else(|| quoted_after(details, "'"));
        }
    }
    (after != *user).then_some(after)
}

/// The new permission group of `teamMemberPermissionGroupChanged`: `after.permissionGroup…` of a
/// JSON diff, else the quoted name in text such as "… to 'Admins'" or "permission group 'Admins'".
fn new_permission_group(details: &str) -> Option<String> {
    details_after(details, &["permissionGroupName", "permissionGroup", "name"])
        .or_else(|| quoted_after(details, " to '"))
        .or_else(|| quoted_after(details, "permission group '"))
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
        let ctx = Context { organization: "08d8a3f5-0000-4d4d-8e2e-1a2b3c4d5e6f", dedupe_key: &key, time, raw, log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
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
        assert_eq!(class("teamMemberPermissionGroupChanged.no_details"), (3004, 3));
        assert_eq!(class("teamMemberPermissionGroupChanged"), (3005, 1));
    }

    #[test]
    fn test_a_record_without_audit_log_type_enum_is_unmappable() {
        let mut record = samples().swap_remove(0).0;
        record.insert("auditLogTypeEnum".into(), Value::Null);
        let ctx = Context { organization: "o", dedupe_key: "k", time: DateTime::<Utc>::UNIX_EPOCH, raw: "{}", log_name: "saas-audit", processed_ms: 1_780_000_000_000 };
        assert!(map(&record, &ctx).is_err());
    }
}
