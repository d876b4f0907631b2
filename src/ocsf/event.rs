//! OCSF 1.8.0 events: the classes and objects auditrelay emits, as serde structs.
//!
//! One struct per class holds that class's own attributes; the attributes a class *requires*
//! are plain fields (a mapping cannot forget them), everything else is an `Option` skipped when
//! absent (OCSF's schemas reject `null`). Activities are one closed enum per class. The
//! classification attributes — `class_uid`/`class_name`, `category_*`, `activity_*`,
//! `type_uid`/`type_name`, `severity` — are derived by the event's writer
//! ([`crate::ocsf::write`]) from the same caption tables, never written by a mapping, so ids
//! and captions cannot disagree.
//! Sources: `ocsf/MAPPING.md` §2 (shared notes) and the OCSF 1.8.0 schema.

use std::borrow::Cow;

use serde::Serialize;

/// Every event carries this `metadata.version`.
pub const OCSF_VERSION: &str = "1.8.0";

/// Declares a class's activity enum: its ids, captions, and the `Other(String)` escape (id 99)
/// that carries the vendor's own verb as `activity_name`.
macro_rules! activities {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $id:literal, $caption:literal;)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($variant,)*
            /// 99: the vendor's verb, shown as `activity_name`.
            Other(String),
        }

        impl $name {
            pub fn id(&self) -> u8 {
                match self {
                    $($name::$variant => $id,)*
                    $name::Other(_) => 99,
                }
            }

            /// `activity_name`: the caption, or the vendor's verb for `Other`.
            pub fn caption(&self) -> &str {
                match self {
                    $($name::$variant => $caption,)*
                    $name::Other(verb) => verb,
                }
            }

            /// The caption of the id itself ("Other" for 99), as `type_name` needs it.
            pub fn id_caption(&self) -> &'static str {
                match self {
                    $($name::$variant => $caption,)*
                    $name::Other(_) => "Other",
                }
            }
        }
    };
}

activities!(
    /// 6003 API Activity.
    ApiActivityId { Unknown = 0, "Unknown"; Create = 1, "Create"; Read = 2, "Read"; Update = 3, "Update"; Delete = 4, "Delete"; }
);
activities!(
    /// 3001 Account Change.
    AccountChangeId {
        Unknown = 0, "Unknown"; Create = 1, "Create"; Enable = 2, "Enable"; PasswordChange = 3, "Password Change";
        PasswordReset = 4, "Password Reset"; Disable = 5, "Disable"; Delete = 6, "Delete";
        AttachPolicy = 7, "Attach Policy"; DetachPolicy = 8, "Detach Policy"; Lock = 9, "Lock";
        MfaFactorEnable = 10, "MFA Factor Enable"; MfaFactorDisable = 11, "MFA Factor Disable"; Unlock = 12, "Unlock";
    }
);
activities!(
    /// 3002 Authentication.
    AuthenticationId {
        Unknown = 0, "Unknown"; Logon = 1, "Logon"; Logoff = 2, "Logoff"; AuthenticationTicket = 3, "Authentication Ticket";
        ServiceTicketRequest = 4, "Service Ticket Request"; ServiceTicketRenew = 5, "Service Ticket Renew";
        Preauth = 6, "Preauth"; AccountSwitch = 7, "Account Switch";
    }
);
activities!(
    /// 3004 Entity Management.
    EntityManagementId {
        Unknown = 0, "Unknown"; Create = 1, "Create"; Read = 2, "Read"; Update = 3, "Update"; Delete = 4, "Delete";
        Move = 5, "Move"; Enroll = 6, "Enroll"; Unenroll = 7, "Unenroll"; Enable = 8, "Enable"; Disable = 9, "Disable";
        Activate = 10, "Activate"; Deactivate = 11, "Deactivate"; Suspend = 12, "Suspend"; Resume = 13, "Resume";
    }
);
activities!(
    /// 3005 User Access Management.
    UserAccessId { Unknown = 0, "Unknown"; AssignPrivileges = 1, "Assign Privileges"; RevokePrivileges = 2, "Revoke Privileges"; }
);
activities!(
    /// 3006 Group Management.
    GroupManagementId {
        Unknown = 0, "Unknown"; AssignPrivileges = 1, "Assign Privileges"; RevokePrivileges = 2, "Revoke Privileges";
        AddUser = 3, "Add User"; RemoveUser = 4, "Remove User"; Delete = 5, "Delete"; Create = 6, "Create";
        AddSubgroup = 7, "Add Subgroup"; RemoveSubgroup = 8, "Remove Subgroup";
    }
);

/// An API request's verb as an Entity Management activity (the fallback class when an API
/// Activity's required source endpoint is missing, MAPPING.md §3 rule 7).
impl From<ApiActivityId> for EntityManagementId {
    fn from(activity: ApiActivityId) -> Self {
        match activity {
            ApiActivityId::Unknown => EntityManagementId::Unknown,
            ApiActivityId::Create => EntityManagementId::Create,
            ApiActivityId::Read => EntityManagementId::Read,
            ApiActivityId::Update => EntityManagementId::Update,
            ApiActivityId::Delete => EntityManagementId::Delete,
            ApiActivityId::Other(verb) => EntityManagementId::Other(verb),
        }
    }
}

/// The class of an event with its class-specific attributes, flattened into the event when
/// serialized (the activity is not repeated: it is `activity_id`/`activity_name`).
// One event is built per record and serialized at once: boxing the larger variants would only
// add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Class {
    ApiActivity(ApiActivity),
    AccountChange(AccountChange),
    Authentication(Authentication),
    EntityManagement(EntityManagement),
    UserAccess(UserAccess),
    GroupManagement(GroupManagement),
}

impl Class {
    pub fn uid(&self) -> u32 {
        match self {
            Class::ApiActivity(_) => 6003,
            Class::AccountChange(_) => 3001,
            Class::Authentication(_) => 3002,
            Class::EntityManagement(_) => 3004,
            Class::UserAccess(_) => 3005,
            Class::GroupManagement(_) => 3006,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Class::ApiActivity(_) => "API Activity",
            Class::AccountChange(_) => "Account Change",
            Class::Authentication(_) => "Authentication",
            Class::EntityManagement(_) => "Entity Management",
            Class::UserAccess(_) => "User Access Management",
            Class::GroupManagement(_) => "Group Management",
        }
    }

    /// `category_uid` is the class uid's thousands: 3 IAM, 6 Application Activity.
    pub fn category_uid(&self) -> u32 {
        self.uid() / 1000
    }

    pub fn category_name(&self) -> &'static str {
        match self.category_uid() {
            3 => "Identity & Access Management",
            _ => "Application Activity",
        }
    }

    pub fn activity_id(&self) -> u8 {
        match self {
            Class::ApiActivity(c) => c.activity.id(),
            Class::AccountChange(c) => c.activity.id(),
            Class::Authentication(c) => c.activity.id(),
            Class::EntityManagement(c) => c.activity.id(),
            Class::UserAccess(c) => c.activity.id(),
            Class::GroupManagement(c) => c.activity.id(),
        }
    }

    /// The caption of the activity id ("Other" for 99), for `type_name`.
    pub fn activity_id_caption(&self) -> &'static str {
        match self {
            Class::ApiActivity(c) => c.activity.id_caption(),
            Class::AccountChange(c) => c.activity.id_caption(),
            Class::Authentication(c) => c.activity.id_caption(),
            Class::EntityManagement(c) => c.activity.id_caption(),
            Class::UserAccess(c) => c.activity.id_caption(),
            Class::GroupManagement(c) => c.activity.id_caption(),
        }
    }

    /// Every user object of the class with its attribute path (for `observables`).
    pub fn users(&self) -> Vec<(&'static str, &User)> {
        fn actor(a: &Option<Actor>) -> Option<(&'static str, &User)> {
            a.as_ref().and_then(|a| a.user.as_ref()).map(|u| ("actor.user", u))
        }
        fn entity<'a>(path: &'static str, e: Option<&'a ManagedEntity>) -> Option<(&'static str, &'a User)> {
            e.and_then(|e| e.user.as_ref()).map(|u| (path, u))
        }
        let users = match self {
            Class::ApiActivity(c) => vec![c.actor.user.as_ref().map(|u| ("actor.user", u))],
            Class::AccountChange(c) => {
                vec![actor(&c.actor), Some(("user", &c.user)), c.user_result.as_ref().map(|u| ("user_result", u))]
            }
            Class::Authentication(c) => vec![actor(&c.actor), Some(("user", &c.user))],
            Class::EntityManagement(c) => vec![
                actor(&c.actor),
                entity("entity.user", Some(&c.entity)),
                entity("entity_result.user", c.entity_result.as_ref()),
            ],
            Class::UserAccess(c) => vec![actor(&c.actor), Some(("user", &c.user))],
            Class::GroupManagement(c) => vec![actor(&c.actor), c.user.as_ref().map(|u| ("user", u))],
        };
        users.into_iter().flatten().collect()
    }

    /// `src_endpoint` and `http_request`, where the class has them.
    pub fn endpoint_and_request(&self) -> (Option<&NetworkEndpoint>, Option<&HttpRequest>) {
        match self {
            Class::ApiActivity(c) => (Some(&c.src_endpoint), c.http_request.as_ref()),
            Class::AccountChange(c) => (c.src_endpoint.as_ref(), c.http_request.as_ref()),
            Class::Authentication(c) => (c.src_endpoint.as_ref(), c.http_request.as_ref()),
            Class::EntityManagement(c) => (c.src_endpoint.as_ref(), c.http_request.as_ref()),
            Class::UserAccess(c) => (c.src_endpoint.as_ref(), c.http_request.as_ref()),
            Class::GroupManagement(c) => (c.src_endpoint.as_ref(), c.http_request.as_ref()),
        }
    }

    pub fn activity_name(&self) -> &str {
        match self {
            Class::ApiActivity(c) => c.activity.caption(),
            Class::AccountChange(c) => c.activity.caption(),
            Class::Authentication(c) => c.activity.caption(),
            Class::EntityManagement(c) => c.activity.caption(),
            Class::UserAccess(c) => c.activity.caption(),
            Class::GroupManagement(c) => c.activity.caption(),
        }
    }
}

/// `severity_id` with its caption (MAPPING.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Unknown = 0,
    Informational = 1,
    Low = 2,
    Medium = 3,
    High = 4,
    Critical = 5,
    Fatal = 6,
}

impl Severity {
    pub fn caption(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
            Severity::Fatal => "Fatal",
        }
    }

    pub fn from_id(id: u8) -> Option<Severity> {
        [
            Severity::Unknown,
            Severity::Informational,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
            Severity::Fatal,
        ]
        .into_iter()
        .find(|s| *s as u8 == id)
    }
}

/// `status_id` (MAPPING.md §2.6): the vendor's own word goes with `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Success,
    Failure,
    Other(String),
}

impl Status {
    pub fn id(&self) -> u8 {
        match self {
            Status::Unknown => 0,
            Status::Success => 1,
            Status::Failure => 2,
            Status::Other(_) => 99,
        }
    }

    pub fn caption(&self) -> &str {
        match self {
            Status::Unknown => "Unknown",
            Status::Success => "Success",
            Status::Failure => "Failure",
            Status::Other(word) => word,
        }
    }
}

/// What a mapping fills in; the writer ([`crate::ocsf::write`]) derives the classification from it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventParts {
    pub class: Class,
    pub severity: Severity,
    /// Event time, epoch milliseconds.
    pub time: i64,
    pub metadata: Metadata,
    pub status: Option<Status>,
    pub status_code: Option<String>,
    pub status_detail: Option<String>,
    pub message: Option<String>,
    /// The vendor record verbatim, as a JSON string.
    pub raw_data: String,
    /// Vendor fields with no OCSF home, under their own names, each as text
    /// ([`crate::ocsf::as_text`]): one JSON type per path whatever the vendor sends.
    pub unmapped: Option<Unmapped>,
}

/// `unmapped`: vendor field name → its value as text.
pub type Unmapped = std::collections::BTreeMap<String, String>;

/// What of the vendor record the event carries (`[ocsf] raw_data`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawData {
    /// `raw_data`: the record verbatim (and `raw_data_size`).
    #[default]
    Full,
    /// `raw_data_hash` (SHA-256) and `raw_data_size`, not the record.
    Hash,
    /// Neither the record nor its hash (`raw_data_size` only).
    Off,
}

impl RawData {
    pub fn name(self) -> &'static str {
        match self {
            RawData::Full => "full",
            RawData::Hash => "hash",
            RawData::Off => "off",
        }
    }
}

/// An OCSF event: a mapping's parts and how much of the record to carry. Its JSON is written
/// by [`crate::ocsf::write::event`], the one place that owns an event's bytes; serializing an
/// `Event` (tests turn it into a `serde_json::Value`) gives exactly those bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    parts: EventParts,
    raw_data: RawData,
}

impl Event {
    /// The event with the record verbatim in `raw_data`.
    pub fn new(parts: EventParts) -> Event {
        Event::with_raw_data(parts, RawData::Full)
    }

    /// The event carrying as much of the record as `raw_data` says.
    pub fn with_raw_data(parts: EventParts, raw_data: RawData) -> Event {
        Event { parts, raw_data }
    }

    /// Its JSON, at the end of `out`.
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        crate::ocsf::write::event(&self.parts, self.raw_data, out)
    }

    pub fn class_uid(&self) -> u32 {
        self.parts.class.uid()
    }

    pub fn type_uid(&self) -> u64 {
        u64::from(self.class_uid()) * 100 + u64::from(self.activity_id())
    }

    pub fn severity_id(&self) -> u8 {
        self.parts.severity as u8
    }

    pub fn activity_id(&self) -> u8 {
        self.parts.class.activity_id()
    }
}

impl Serialize for Event {
    /// The bytes [`Event::write`] writes, handed on as raw JSON.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut bytes = Vec::new();
        self.write(&mut bytes).map_err(S::Error::custom)?;
        let raw: &serde_json::value::RawValue = serde_json::from_slice(&bytes).map_err(S::Error::custom)?;
        raw.serialize(s)
    }
}

// ---- classes -------------------------------------------------------------------------------

/// 6003 API Activity: `actor`, `api` and `src_endpoint` are required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiActivity {
    #[serde(skip)]
    pub activity: ApiActivityId,
    pub actor: Actor,
    pub api: Api,
    pub src_endpoint: NetworkEndpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_response: Option<HttpResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ResourceDetails>>,
}

/// 3001 Account Change: `user` (the target account) is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountChange {
    #[serde(skip)]
    pub activity: AccountChangeId,
    pub user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_result: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetworkEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
}

/// 3002 Authentication: `user` is required, and one of `service`/`dst_endpoint`; we always
/// name the vendor's product as the service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authentication {
    #[serde(skip)]
    pub activity: AuthenticationId,
    pub user: User,
    pub service: Service,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetworkEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_mfa: Option<bool>,
    /// A sign-in to a SaaS service over the network is remote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_remote: Option<bool>,
    /// `auth_protocol_id` with its caption `auth_protocol`, where the record shows it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub auth_protocol: Option<AuthProtocol>,
}

/// `auth_protocol_id` / `auth_protocol` of 3002 (OCSF 1.8.0 values used by the vendors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthProtocol {
    OpenId = 4,
    Saml = 5,
    OAuth2 = 6,
    Basic = 11,
}

impl AuthProtocol {
    pub fn caption(self) -> &'static str {
        match self {
            AuthProtocol::OpenId => "OpenID",
            AuthProtocol::Saml => "SAML",
            AuthProtocol::OAuth2 => "OAUTH 2.0",
            AuthProtocol::Basic => "Basic Authentication",
        }
    }
}

impl Serialize for AuthProtocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("auth_protocol_id", &(*self as u8))?;
        map.serialize_entry("auth_protocol", self.caption())?;
        map.end()
    }
}

/// 3004 Entity Management: `entity` is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityManagement {
    #[serde(skip)]
    pub activity: EntityManagementId,
    pub entity: ManagedEntity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_result: Option<ManagedEntity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetworkEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// 3005 User Access Management: `user` and `privileges` are required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserAccess {
    #[serde(skip)]
    pub activity: UserAccessId,
    pub user: User,
    pub privileges: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ResourceDetails>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetworkEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
}

/// 3006 Group Management: `group` is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupManagement {
    #[serde(skip)]
    pub activity: GroupManagementId,
    pub group: Group,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<NetworkEndpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
}

// ---- objects -------------------------------------------------------------------------------

/// `metadata` (MAPPING.md §2.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    pub version: &'static str,
    pub product: Product,
    /// The id of this OCSF event: UUIDv5 over vendor, organization and dedupe key.
    pub uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_event_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_provider: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// The consumer-side name of the log (the source's `log_name`, by default its name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_name: Option<String>,
    /// When auditrelay mapped the record, epoch ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_time: Option<i64>,
    /// Last: see [`Event`]'s `metadata`.
    pub loggers: Vec<Logger>,
}

/// A product's names: a vendor's constants, or a definition's (borrowed, no copy per event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    pub name: Cow<'static, str>,
    pub vendor_name: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Cow<'static, str>>,
}

/// `metadata.loggers[]`: the agent that collected and mapped the record. `transmit_time` is
/// not here: the sink adds it when it sends ([`crate::ocsf::stamp_transmit_time`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logger {
    pub name: Cow<'static, str>,
    pub product: Product,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_name: Option<String>,
    /// When auditrelay logged (mapped and stored) the event, epoch ms. Last.
    pub logged_time: i64,
}

impl Logger {
    /// auditrelay itself, with its version, logging at `logged_time` (epoch ms).
    pub fn auditrelay(log_name: Option<String>, logged_time: i64) -> Logger {
        let product = Product {
            name: "auditrelay".into(),
            vendor_name: "auditrelay".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        };
        Logger { name: "auditrelay".into(), product, log_name, logged_time }
    }
}

/// `fingerprint` (`raw_data_hash`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fingerprint {
    /// 3 SHA-256.
    pub algorithm_id: u8,
    pub algorithm: &'static str,
    pub value: String,
}

impl Fingerprint {
    pub fn sha256(bytes: &[u8]) -> Fingerprint {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let value =
            digest.iter().flat_map(|b| [HEX[usize::from(b >> 4)] as char, HEX[usize::from(b & 15)] as char]).collect();
        Fingerprint { algorithm_id: 3, algorithm: "SHA-256", value }
    }
}

/// The observable types auditrelay reports (OCSF 1.8.0 `observable.type_id`); each
/// `observable` (`name`, `type_id`, `type`, `value`) is written by [`crate::ocsf::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservableType {
    IpAddress = 2,
    UserName = 4,
    EmailAddress = 5,
    UserAgent = 16,
    UserUid = 31,
}

impl ObservableType {
    pub fn caption(self) -> &'static str {
        match self {
            ObservableType::IpAddress => "IP Address",
            ObservableType::UserName => "User Name",
            ObservableType::EmailAddress => "Email Address",
            ObservableType::UserAgent => "HTTP User-Agent",
            ObservableType::UserUid => "User Object: uid",
        }
    }
}

/// `actor`: at least one of user, app_name, app_uid (we use those).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_uid: Option<String>,
}

/// `user`: at least one of name, uid (or account).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// Only a syntactically plausible address (OCSF's `email_t` is pattern-checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
}

/// `user.type_id` (OCSF 1.8.0): the same kinds of actor are typed the same way for every vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserType {
    /// 0: nobody the record names (a failed sign-in with no identity): `name` is a placeholder,
    /// so the user yields no observable.
    Unknown,
    /// 1: a person.
    User,
    /// 2: a person acting as an administrator, where the record says so.
    Admin,
    /// 3: the vendor's own system (automation, scheduled jobs).
    System,
    /// 4: a credential acting on its own: API key, token, service account.
    Service,
    /// 99: the vendor's own subject type.
    Other(String),
}

impl UserType {
    pub fn id(&self) -> u8 {
        match self {
            UserType::Unknown => 0,
            UserType::User => 1,
            UserType::Admin => 2,
            UserType::System => 3,
            UserType::Service => 4,
            UserType::Other(_) => 99,
        }
    }

    /// The caption of a known type ("Other" for a vendor's own word, which
    /// [`UserType::caption`] gives).
    fn static_caption(&self) -> &'static str {
        match self {
            UserType::Unknown => "Unknown",
            UserType::User => "User",
            UserType::Admin => "Admin",
            UserType::System => "System",
            UserType::Service => "Service",
            UserType::Other(_) => "Other",
        }
    }

    pub fn caption(&self) -> &str {
        match self {
            UserType::Other(kind) => kind,
            known => known.static_caption(),
        }
    }
}

impl User {
    /// The user with `type_id` and `type` set from `kind`.
    pub fn typed(mut self, kind: UserType) -> User {
        self.type_id = Some(kind.id());
        // A caption of ours is borrowed; only a vendor's own word is kept as its text.
        self.kind = Some(match kind {
            UserType::Other(word) => Cow::Owned(word),
            known => Cow::Borrowed(known.static_caption()),
        });
        self
    }

    /// Whether it identifies anyone (OCSF: at least one of name, uid, account).
    pub fn is_identified(&self) -> bool {
        self.uid.is_some() || self.name.is_some()
    }
}

/// `network_endpoint`; we fill `ip` (pattern-checked by OCSF, so only a parsed address).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NetworkEndpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The other addresses of a forwarded-for list (proxies, or a client's claim).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intermediate_ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svc_name: Option<String>,
}

/// `api`: `operation` is required.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Api {
    pub operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<ApiRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ApiResponse>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiRequest {
    pub uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
}

/// `http_request`; `http_method` upper case.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HttpRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl HttpRequest {
    pub fn is_empty(&self) -> bool {
        *self == HttpRequest::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpResponse {
    pub code: i64,
}

/// `url`: at least one of url_string, path.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Url {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `resource_details`: at least one of name, uid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The vendor's value as JSON text ([`crate::ocsf::as_text`]): one type whatever it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// `managed_entity`: at least one of name, uid, group, user, org, …
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ManagedEntity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// 1 Device, 2 User, 3 Group, 4 Organization, 5 Policy, 99 Other (then `type`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_id: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The vendor's value as JSON text ([`crate::ocsf::as_text`]): one type whatever it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    /// Set with `type_id` 4 (Organization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<Organization>,
}

/// `organization`: at least one of name, uid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Organization {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ManagedEntity {
    /// An organization entity (`type_id` 4, `type` "Organization", `entity.org`), named by
    /// its uid and/or name; `None` when neither is known.
    pub fn organization(uid: Option<String>, name: Option<String>) -> Option<ManagedEntity> {
        if uid.is_none() && name.is_none() {
            return None;
        }
        Some(ManagedEntity {
            uid: uid.clone(),
            name: name.clone(),
            type_id: Some(4),
            kind: Some("Organization".into()),
            org: Some(Organization { uid, name }),
            ..ManagedEntity::default()
        })
    }
}

/// `group`: at least one of name, uid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Group {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileges: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata() -> Metadata {
        Metadata {
            version: OCSF_VERSION,
            product: Product { name: "Aitronos".into(), vendor_name: "Aitronos".into(), version: None },
            uid: "u".into(),
            original_event_uid: None,
            correlation_uid: None,
            event_code: None,
            original_time: None,
            tenant_uid: None,
            log_provider: None,
            labels: None,
            log_name: None,
            processed_time: None,
            loggers: vec![Logger::auditrelay(None, 1_780_000_000_000)],
        }
    }

    fn parts(class: Class) -> EventParts {
        EventParts {
            class,
            severity: Severity::Low,
            time: 1_748_948_553_000,
            metadata: metadata(),
            status: Some(Status::Success),
            status_code: None,
            status_detail: None,
            message: None,
            raw_data: "{}".into(),
            unmapped: Some(Unmapped::new()),
        }
    }

    #[test]
    fn test_classification_is_derived_and_nothing_is_null() {
        let user = User { uid: Some("usr_1".into()), ..User::default() };
        let class = Class::UserAccess(UserAccess {
            activity: UserAccessId::AssignPrivileges,
            user,
            privileges: vec!["Admin".into()],
            resources: None,
            actor: None,
            src_endpoint: None,
            http_request: None,
        });
        let json = serde_json::to_value(Event::new(parts(class))).unwrap();
        assert_eq!(json["class_uid"], 3005);
        assert_eq!(json["category_uid"], 3);
        assert_eq!(json["category_name"], "Identity & Access Management");
        assert_eq!(json["activity_id"], 1);
        assert_eq!(json["activity_name"], "Assign Privileges");
        assert_eq!(json["type_uid"], 300501);
        assert_eq!(json["type_name"], "User Access Management: Assign Privileges");
        assert_eq!((json["severity_id"].clone(), json["severity"].clone()), (2.into(), "Low".into()));
        assert_eq!((json["status_id"].clone(), json["status"].clone()), (1.into(), "Success".into()));
        assert_eq!(json["privileges"], serde_json::json!(["Admin"]));
        assert_eq!(json["raw_data_size"], 2);
        assert!(json.get("unmapped").is_none(), "an empty unmapped is left out");
        assert!(!serde_json::to_string(&json).unwrap().contains("null"));
    }

    #[test]
    fn test_other_activity_carries_the_vendor_verb() {
        let class = Class::EntityManagement(EntityManagement {
            activity: EntityManagementId::Other("teamMemberInvitationResent".into()),
            entity: ManagedEntity { name: Some("x".into()), ..ManagedEntity::default() },
            entity_result: None,
            actor: None,
            src_endpoint: None,
            http_request: None,
            comment: None,
        });
        let event = Event::new(parts(class));
        assert_eq!((event.class_uid(), event.activity_id(), event.type_uid()), (3004, 99, 300499));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["activity_name"], "teamMemberInvitationResent");
        assert_eq!(json["type_name"], "Entity Management: Other");
    }

    #[test]
    fn test_every_class_has_its_uid_and_category() {
        let user = User { uid: Some("u".into()), ..User::default() };
        let actor = Actor { user: Some(user.clone()), app_name: None, app_uid: None };
        let classes = [
            Class::ApiActivity(ApiActivity {
                activity: ApiActivityId::Read,
                actor,
                api: Api { operation: "op".into(), service: None, request: None, response: None },
                src_endpoint: NetworkEndpoint { ip: Some("198.51.100.7".into()), ..NetworkEndpoint::default() },
                http_request: None,
                http_response: None,
                resources: None,
            }),
            Class::Authentication(Authentication {
                activity: AuthenticationId::Logon,
                user: user.clone(),
                service: Service { name: "Datafold".into() },
                actor: None,
                src_endpoint: None,
                http_request: None,
                is_mfa: None,
                is_remote: None,
                auth_protocol: None,
            }),
            Class::GroupManagement(GroupManagement {
                activity: GroupManagementId::AddUser,
                group: Group { name: Some("g".into()), ..Group::default() },
                user: Some(user),
                privileges: None,
                actor: None,
                src_endpoint: None,
                http_request: None,
            }),
        ];
        let want = [(6003, 6, 600302), (3002, 3, 300201), (3006, 3, 300603)];
        for (class, (uid, category, type_uid)) in classes.into_iter().zip(want) {
            assert_eq!((class.uid(), class.category_uid()), (uid, category));
            assert_eq!(Event::new(parts(class)).type_uid(), type_uid);
        }
    }
}
