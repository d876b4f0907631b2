//! The declarative OCSF mapping of a vendor definition (`[ocsf]`, docs/vendor-definitions.md):
//! validating the keys ([`Mapping::from_keys`]) and turning one record into the OCSF 1.8.0
//! event parts ([`Mapping::map`]), the way the built-in vendors' `ocsf.rs` files do.
//!
//! Owns: the `[ocsf]` keys, their checks (every problem with its span and key path), the rule
//! table (first match wins: exact, prefix or a size-capped `regex`, linear time), and filling
//! each class's required attributes from JSON Pointer values. Must not: do I/O, read a clock,
//! invent a value (an absent, `null` or empty value gives none), panic on any JSON, or apply
//! `[severity]` overrides (the caller's `map_record` does, keyed on `metadata.event_code`).
//!
//! Decisions (MAPPING.md §3 rule 7 and §5a, as the built-ins do):
//! - A record without its action value is [`Unmappable`] (dead-lettered with the reason), as
//!   the built-ins do with a record lacking `action_type` / `auditLogTypeEnum`: the action is
//!   what every rule and `[severity]` override keys on, so an event without it is not made up.
//! - A class whose required object cannot be filled from the record degrades to 3004 Entity
//!   Management on the resource (else the tenant organization): API Activity without an actor or
//!   a `src_ip` value, Account Change / User Access without a user, User Access without a
//!   privilege, Group Management without a group. Authentication never degrades (§5a rule 3): a
//!   sign-in naming nobody has the placeholder user of type Unknown, as Datafold's does.
//! - The IAM `user` is the `user` paths' user, else the resource when its type says user, else
//!   the actor. A privilege comes from the `privileges` paths, else the resource's name or type
//!   when the resource is no user (§5a rules 1 and 5: never a user's name).
//! - A top-level record field is placed when a value read through it went into the event; every
//!   other field goes to `unmapped` as text ([`as_text`]), except one repeating a placed value.

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use crate::ocsf::event::{
    AccountChange, AccountChangeId, Actor, Api, ApiActivity, ApiActivityId, Authentication, AuthenticationId, Class,
    EntityManagement, EntityManagementId, EventParts, Group, GroupManagement, GroupManagementId, HttpRequest,
    ManagedEntity, NetworkEndpoint, ResourceDetails, Service, Severity, Status, Unmapped, User, UserAccess,
    UserAccessId, UserType,
};
use crate::ocsf::{Context, Unmappable, as_text, email};

use super::model::{Definition, RecordId};

/// At most this many `[[ocsf.rules]]` (docs: "a definition at most 500 rules").
pub const MAX_RULES: usize = 500;
/// The compiled size cap of one rule's regex (`RegexBuilder::size_limit`, bytes): room for any
/// sensible alternation of action names or a few Unicode classes (`(?i)^\w+\.mfa\.\w+$` needs
/// over 64 KiB), not for a blown-up repetition; [`MAX_RULES`] bounds the total.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The lazy DFA cache of one rule's regex (`RegexBuilder::dfa_size_limit`, bytes): matching
/// stays linear past it (the regex crate falls back to its other engines), memory stays bounded.
pub const REGEX_DFA_LIMIT: usize = 128 * 1024;
/// The compiled size cap of ALL of a definition's regexes together: they are kept as one
/// `RegexSet`, so a definition costs at most this (plus [`REGEX_SET_DFA_LIMIT`]) whatever its
/// rules, and each edited version a reload loads (kept until the process ends: definitions
/// are interned) no more. 500 rules of 256 KiB each were 150 MiB a version (review 20 A #7).
pub const REGEX_SET_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// The lazy DFA cache of that set.
pub const REGEX_SET_DFA_LIMIT: usize = 1024 * 1024;
/// The `user.name` of a sign-in that names nobody (type Unknown: no observable), as Datafold's.
const UNKNOWN_USER: &str = "unknown";

/// The most pointers an `action` list may join.
const MAX_ACTION_PARTS: usize = 4;

/// `[ocsf]` as written (serde, `deny_unknown_fields`, `toml::Spanned` values for messages).
/// Besides the documented keys: `full_name` in `actor`/`user` (the display name, §5a rule 7),
/// `group = { uid, name }` (Group Management's group) and `privileges = [pointers]` (User
/// Access's privileges, the first that gives a value).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingKeys {
    pub action: Option<Spanned<ActionKeys>>,
    pub message: Option<Spanned<String>>,
    pub actor: Option<UserKeys>,
    pub user: Option<UserKeys>,
    pub src_ip: Option<Spanned<String>>,
    pub user_agent: Option<Spanned<String>>,
    pub resource: Option<ResourceKeys>,
    pub group: Option<GroupKeys>,
    #[serde(default)]
    pub privileges: Vec<Spanned<String>>,
    pub status: Option<Spanned<StatusKeys>>,
    pub status_detail: Option<Spanned<String>>,
    pub class: Option<Spanned<String>>,
    pub activity: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RuleKeys>>,
}

/// `actor` / `user`: pointers to the account's id, account name, display name, e-mail address
/// and (actor) kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserKeys {
    pub uid: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub full_name: Option<Spanned<String>>,
    pub email: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceKeys {
    pub uid: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupKeys {
    pub uid: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusKeys {
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub success: Vec<String>,
    #[serde(default)]
    pub failure: Vec<String>,
}

/// One `[[ocsf.rules]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleKeys {
    pub exact: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub regex: Option<Spanned<String>>,
    pub class: Option<Spanned<String>>,
    pub activity: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
}

/// One problem in `[ocsf]`: the span in the file (for the line), the key path under `ocsf`
/// (`"ocsf.rules[2].regex"`), and what is wrong.
#[derive(Debug, Clone)]
pub struct MappingError {
    pub span: Option<std::ops::Range<usize>>,
    pub key: String,
    pub message: String,
}

/// The classes a definition may name, by their snake-case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassName {
    ApiActivity,
    AccountChange,
    Authentication,
    EntityManagement,
    UserAccess,
    GroupManagement,
}

impl ClassName {
    pub const ALL: [ClassName; 6] = [
        ClassName::ApiActivity,
        ClassName::AccountChange,
        ClassName::Authentication,
        ClassName::EntityManagement,
        ClassName::UserAccess,
        ClassName::GroupManagement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClassName::ApiActivity => "api_activity",
            ClassName::AccountChange => "account_change",
            ClassName::Authentication => "authentication",
            ClassName::EntityManagement => "entity_management",
            ClassName::UserAccess => "user_access",
            ClassName::GroupManagement => "group_management",
        }
    }

    /// The activities a definition may name for the class (OCSF 1.8.0 captions in snake case;
    /// `other` is the vendor's verb as `activity_name`).
    pub fn activities(self) -> &'static [&'static str] {
        match self {
            ClassName::ApiActivity => &["create", "read", "update", "delete", "other"],
            ClassName::AccountChange => &[
                "create",
                "enable",
                "password_change",
                "password_reset",
                "disable",
                "delete",
                "attach_policy",
                "detach_policy",
                "lock",
                "mfa_factor_enable",
                "mfa_factor_disable",
                "unlock",
                "other",
            ],
            ClassName::Authentication => &[
                "logon",
                "logoff",
                "authentication_ticket",
                "service_ticket_request",
                "service_ticket_renew",
                "preauth",
                "account_switch",
                "other",
            ],
            ClassName::EntityManagement => &[
                "create",
                "read",
                "update",
                "delete",
                "move",
                "enroll",
                "unenroll",
                "enable",
                "disable",
                "activate",
                "deactivate",
                "suspend",
                "resume",
                "other",
            ],
            ClassName::UserAccess => &["assign_privileges", "revoke_privileges", "other"],
            ClassName::GroupManagement => &[
                "assign_privileges",
                "revoke_privileges",
                "add_user",
                "remove_user",
                "delete",
                "create",
                "add_subgroup",
                "remove_subgroup",
                "other",
            ],
        }
    }

    fn parse(name: &str) -> Option<ClassName> {
        ClassName::ALL.into_iter().find(|c| c.name() == name)
    }
}

const SEVERITIES: [(&str, Severity); 5] = [
    ("informational", Severity::Informational),
    ("low", Severity::Low),
    ("medium", Severity::Medium),
    ("high", Severity::High),
    ("critical", Severity::Critical),
];

/// What a matching rule (or the default) says: class, activity (one of the class's
/// [`ClassName::activities`]) and severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub class: ClassName,
    pub activity: &'static str,
    pub severity: Severity,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Prefix(String),
    /// The index of its pattern in the mapping's `RegexSet`.
    Regex(usize),
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Matcher,
    target: Target,
}

/// A JSON Pointer (RFC 6901), split into its unescaped reference tokens at load; never `""`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    text: String,
    tokens: Vec<String>,
}

impl Pointer {
    /// The pointer, or why it is not one.
    pub fn parse(text: &str) -> Result<Pointer, String> {
        if text.is_empty() {
            return Err("must name a field: \"\" is the whole record".into());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} is no JSON Pointer (RFC 6901): it must start with \"/\""));
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => return Err(format!("{text:?} is no JSON Pointer (RFC 6901): \"~\" must be \"~0\" or \"~1\"")),
                }
            }
            tokens.push(token);
        }
        Ok(Pointer { text: text.to_owned(), tokens })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level field it reads.
    fn field(&self) -> &str {
        self.tokens.first().map_or("", String::as_str)
    }

    /// The value it points at: one lookup per token (an array index is decimal without a
    /// leading zero, RFC 6901 §4).
    fn get<'r>(&self, record: &'r Map<String, Value>) -> Option<&'r Value> {
        let (first, rest) = self.tokens.split_first()?;
        rest.iter().try_fold(record.get(first)?, |value, token| match value {
            Value::Object(o) => o.get(token),
            Value::Array(items) => {
                let canonical = token == "0" || !(token.starts_with('0') || token.starts_with('+'));
                items.get(token.parse::<usize>().ok().filter(|_| canonical)?)
            }
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Default)]
struct UserPaths {
    uid: Option<Pointer>,
    name: Option<Pointer>,
    full_name: Option<Pointer>,
    email: Option<Pointer>,
    kind: Option<Pointer>,
}

#[derive(Debug, Clone, Default)]
struct ResourcePaths {
    uid: Option<Pointer>,
    name: Option<Pointer>,
    kind: Option<Pointer>,
}

#[derive(Debug, Clone)]
struct StatusTable {
    path: Pointer,
    success: Vec<String>,
    failure: Vec<String>,
}

/// `action`: one pointer, or several whose values are joined with `.` (Aitronos' action is
/// `entity_type` and `action_type`: `user.deleted`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ActionKeys {
    One(String),
    Many(Vec<String>),
}

/// The validated mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The action's JSON Pointer(s) as written (several joined with ` . `).
    pub action: String,
    action_paths: Vec<Pointer>,
    message: Option<Pointer>,
    actor: UserPaths,
    user: UserPaths,
    src_ip: Option<Pointer>,
    user_agent: Option<Pointer>,
    resource: ResourcePaths,
    group: (Option<Pointer>, Option<Pointer>),
    privileges: Vec<Pointer>,
    status: Option<StatusTable>,
    status_detail: Option<Pointer>,
    default: Target,
    rules: Vec<Rule>,
    /// Every rule's regex, one set (`Matcher::Regex` holds an index into it).
    regexes: Option<regex::RegexSet>,
    /// The definition's `answer.id` and `answer.time` pointers, parsed at the first event (the
    /// mapping is read before the `[answer]` it belongs with), not for each one.
    answer: std::sync::OnceLock<AnswerPointers>,
}

/// `answer.id` (none for a hashed id) and `answer.time` as pointers (none if not one).
#[derive(Debug, Clone)]
struct AnswerPointers {
    id: Option<Pointer>,
    time: Option<Pointer>,
}

/// Collects every problem while the keys are checked.
struct Problems(Vec<MappingError>);

impl Problems {
    fn add(&mut self, span: Option<std::ops::Range<usize>>, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(MappingError { span, key: key.into(), message: message.into() });
    }

    fn pointer(&mut self, key: &str, value: Option<Spanned<String>>) -> Option<Pointer> {
        let value = value?;
        match Pointer::parse(value.get_ref()) {
            Ok(p) => Some(p),
            Err(message) => {
                self.add(Some(value.span()), key, message);
                None
            }
        }
    }

    fn user(&mut self, key: &str, keys: Option<UserKeys>) -> UserPaths {
        let k = keys.unwrap_or_default();
        UserPaths {
            uid: self.pointer(&format!("{key}.uid"), k.uid),
            name: self.pointer(&format!("{key}.name"), k.name),
            full_name: self.pointer(&format!("{key}.full_name"), k.full_name),
            email: self.pointer(&format!("{key}.email"), k.email),
            kind: self.pointer(&format!("{key}.type"), k.kind),
        }
    }

    fn class(&mut self, key: &str, value: &Spanned<String>) -> Option<ClassName> {
        let class = ClassName::parse(value.get_ref());
        if class.is_none() {
            let names: Vec<&str> = ClassName::ALL.iter().map(|c| c.name()).collect();
            self.add(
                Some(value.span()),
                key,
                format!("unknown class {:?}; one of: {}", value.get_ref(), names.join(", ")),
            );
        }
        class
    }

    fn activity(&mut self, key: &str, class: ClassName, value: &Spanned<String>) -> Option<&'static str> {
        let found = class.activities().iter().copied().find(|a| a == value.get_ref());
        if found.is_none() {
            self.add(
                Some(value.span()),
                key,
                format!(
                    "{} has no activity {:?}; its activities: {}",
                    class.name(),
                    value.get_ref(),
                    class.activities().join(", ")
                ),
            );
        }
        found
    }

    fn severity(&mut self, key: &str, value: &Spanned<String>) -> Option<Severity> {
        let found = SEVERITIES.iter().find(|(n, _)| n == value.get_ref()).map(|(_, s)| *s);
        if found.is_none() {
            let names: Vec<&str> = SEVERITIES.iter().map(|(n, _)| *n).collect();
            self.add(
                Some(value.span()),
                key,
                format!("unknown severity {:?}; one of: {}", value.get_ref(), names.join(", ")),
            );
        }
        found
    }
}

impl Mapping {
    /// Validates `[ocsf]`; every problem is reported, not only the first.
    pub fn from_keys(keys: MappingKeys) -> Result<Mapping, Vec<MappingError>> {
        let mut p = Problems(Vec::new());
        let action_paths = match keys.action {
            None => {
                p.add(None, "ocsf.action", "is required: the JSON Pointer to the record's action");
                None
            }
            Some(a) => {
                let span = a.span();
                let texts = match a.into_inner() {
                    ActionKeys::One(one) => vec![one],
                    ActionKeys::Many(many) => many,
                };
                if texts.is_empty() || texts.len() > MAX_ACTION_PARTS {
                    let msg = format!("is a JSON Pointer or a list of 1 to {MAX_ACTION_PARTS} of them");
                    p.add(Some(span), "ocsf.action", msg);
                    None
                } else {
                    let paths: Vec<Option<Pointer>> = texts
                        .into_iter()
                        .map(|t| p.pointer("ocsf.action", Some(Spanned::new(span.clone(), t))))
                        .collect();
                    paths.into_iter().collect::<Option<Vec<Pointer>>>()
                }
            }
        };
        let message = p.pointer("ocsf.message", keys.message);
        let actor = p.user("ocsf.actor", keys.actor);
        let user = p.user("ocsf.user", keys.user);
        let src_ip = p.pointer("ocsf.src_ip", keys.src_ip);
        let user_agent = p.pointer("ocsf.user_agent", keys.user_agent);
        let r = keys.resource.unwrap_or_default();
        let resource = ResourcePaths {
            uid: p.pointer("ocsf.resource.uid", r.uid),
            name: p.pointer("ocsf.resource.name", r.name),
            kind: p.pointer("ocsf.resource.type", r.kind),
        };
        let g = keys.group.unwrap_or_default();
        let group = (p.pointer("ocsf.group.uid", g.uid), p.pointer("ocsf.group.name", g.name));
        let privileges: Vec<Pointer> = keys
            .privileges
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| p.pointer(&format!("ocsf.privileges[{i}]"), Some(v)))
            .collect();
        let status = keys.status.and_then(|s| {
            let span = s.span();
            let s = s.into_inner();
            match s.path {
                None => {
                    p.add(Some(span), "ocsf.status.path", "is required: the JSON Pointer to the vendor's outcome");
                    None
                }
                path => Some(StatusTable {
                    path: p.pointer("ocsf.status.path", path)?,
                    success: s.success,
                    failure: s.failure,
                }),
            }
        });
        let status_detail = p.pointer("ocsf.status_detail", keys.status_detail);

        let default_class = match &keys.class {
            Some(c) => p.class("ocsf.class", c),
            None => Some(ClassName::ApiActivity),
        };
        let default_activity = match (default_class, &keys.activity) {
            (Some(class), Some(a)) => p.activity("ocsf.activity", class, a),
            (_, None) => Some("other"),
            (None, Some(_)) => None,
        };
        let default_severity = match &keys.severity {
            Some(s) => p.severity("ocsf.severity", s),
            None => Some(Severity::Informational),
        };

        if keys.rules.len() > MAX_RULES {
            let span = keys.rules.get(MAX_RULES).map(Spanned::span);
            p.add(span, "ocsf.rules", format!("{} rules; at most {MAX_RULES}", keys.rules.len()));
        }
        let mut rules = Vec::new();
        let mut patterns: Vec<String> = Vec::new();
        for (i, rule) in keys.rules.into_iter().enumerate() {
            let span = rule.span();
            let rule = rule.into_inner();
            let key = |k: &str| format!("ocsf.rules[{i}].{k}");
            let matchers: Vec<(&str, Spanned<String>)> =
                [("exact", rule.exact), ("prefix", rule.prefix), ("regex", rule.regex)]
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v?)))
                    .collect();
            let matcher = match <[_; 1]>::try_from(matchers) {
                Ok([(kind, value)]) => match kind {
                    "exact" => Some(Matcher::Exact(value.into_inner())),
                    "prefix" => Some(Matcher::Prefix(value.into_inner())),
                    // Compiled alone for its own errors (then dropped), kept in the set.
                    _ => match regex::RegexBuilder::new(value.get_ref())
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_DFA_LIMIT)
                        .build()
                    {
                        Ok(_) => {
                            patterns.push(value.get_ref().clone());
                            Some(Matcher::Regex(patterns.len() - 1))
                        }
                        Err(regex::Error::CompiledTooBig(limit)) => {
                            p.add(
                                Some(value.span()),
                                key("regex"),
                                format!("the regex compiles to more than {limit} bytes; write a simpler one"),
                            );
                            None
                        }
                        Err(e) => {
                            p.add(Some(value.span()), key("regex"), format!("the regex does not compile: {e}"));
                            None
                        }
                    },
                },
                Err(found) => {
                    let names: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
                    let message = if names.is_empty() {
                        "needs one of exact, prefix or regex".to_owned()
                    } else {
                        format!("has {}: exactly one of exact, prefix or regex", names.join(" and "))
                    };
                    // At the second matcher where there are two, else at the rule's header.
                    let at = found.get(1).map_or(span.clone(), |(_, v)| v.span());
                    p.add(Some(at), format!("ocsf.rules[{i}]"), message);
                    None
                }
            };
            let class = match &rule.class {
                Some(c) => p.class(&key("class"), c),
                None => {
                    p.add(Some(span.clone()), key("class"), "is required");
                    None
                }
            };
            let activity = match (&rule.activity, class) {
                (Some(a), Some(class)) => p.activity(&key("activity"), class, a),
                (Some(_), None) => None,
                (None, _) => {
                    p.add(Some(span.clone()), key("activity"), "is required");
                    None
                }
            };
            // A rule without its own severity has the `[ocsf]` default.
            let severity = match &rule.severity {
                Some(s) => p.severity(&key("severity"), s),
                None => default_severity,
            };
            if let (Some(matcher), Some(class), Some(activity), Some(severity)) = (matcher, class, activity, severity) {
                rules.push(Rule { matcher, target: Target { class, activity, severity } });
            }
        }

        // Every regex in one set, whose compiled size bounds what the definition costs.
        let regexes = match patterns.is_empty() {
            true => None,
            false => match regex::RegexSetBuilder::new(&patterns)
                .size_limit(REGEX_SET_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SET_DFA_LIMIT)
                .build()
            {
                Ok(set) => Some(set),
                Err(e) => {
                    let message = match e {
                        regex::Error::CompiledTooBig(limit) => format!(
                            "the {} regexes together compile to more than {} KiB; write fewer or simpler ones",
                            patterns.len(),
                            limit / 1024
                        ),
                        other => format!("the regexes do not compile together: {other}"),
                    };
                    p.add(None, "ocsf.rules", message);
                    None
                }
            },
        };
        match (action_paths, default_class, default_activity, default_severity) {
            (Some(action_paths), Some(class), Some(activity), Some(severity)) if p.0.is_empty() => Ok(Mapping {
                action: action_paths.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join(" . "),
                action_paths,
                message,
                actor,
                user,
                src_ip,
                user_agent,
                resource,
                group,
                privileges,
                status,
                status_detail,
                default: Target { class, activity, severity },
                rules,
                regexes,
                answer: std::sync::OnceLock::new(),
            }),
            _ => Err(p.0),
        }
    }

    /// What the rules say of an action value: the first matching rule's target, else the default.
    pub fn target(&self, action: &str) -> Target {
        // The set is asked once, and only when a regex rule is reached.
        let mut set: Option<regex::SetMatches> = None;
        let mut matches = |m: &Matcher| match m {
            Matcher::Exact(s) => action == s,
            Matcher::Prefix(p) => action.starts_with(p.as_str()),
            Matcher::Regex(i) => match &self.regexes {
                Some(regexes) => set.get_or_insert_with(|| regexes.matches(action)).matched(*i),
                None => false,
            },
        };
        self.rules.iter().find(|r| matches(&r.matcher)).map_or(self.default, |r| r.target)
    }

    /// One line for `auditrelay vendors`: e.g. "api_activity by default, 12 rules".
    pub fn describe(&self) -> String {
        let rules = match self.rules.len() {
            1 => "1 rule".to_owned(),
            n => format!("{n} rules"),
        };
        format!("{} by default, {rules}", self.default.class.name())
    }

    /// The OCSF event of one record (pure: no I/O, no clock). `def` gives the product names and
    /// the uid name.
    pub fn map(
        &self,
        def: &'static Definition,
        record: &Map<String, Value>,
        ctx: &Context<'_>,
    ) -> Result<EventParts, Unmappable> {
        let mut r = Reader { record, placed: Vec::new(), values: Vec::new() };
        let parts: Option<Vec<Val>> = self.action_paths.iter().map(|p| r.peek(p)).collect();
        let parts = parts.ok_or_else(|| {
            Unmappable(format!("{}: record without its action at {} (ocsf.action)", def.name, self.action))
        })?;
        parts.iter().for_each(|v| r.place(v));
        let action = parts.into_iter().map(|v| v.text).collect::<Vec<_>>().join(".");
        let target = self.target(&action);

        let mut metadata = ctx.metadata(&def.uid_name, &def.product, &def.vendor_name, &def.title);
        metadata.event_code = Some(action.clone());
        let answer = self.answer.get_or_init(|| AnswerPointers {
            id: match &def.answer.id {
                RecordId::Pointer(id) => Pointer::parse(id).ok(),
                RecordId::Hash => None,
            },
            time: Pointer::parse(&def.answer.time).ok(),
        });
        metadata.original_event_uid = answer.id.as_ref().and_then(|p| r.take(p));
        metadata.original_time = answer.time.as_ref().and_then(|p| r.take(p));

        let message = self.message.as_ref().and_then(|p| r.take(p));
        let status_detail = self.status_detail.as_ref().and_then(|p| r.take(p));
        let status = self.status.as_ref().and_then(|s| {
            let word = r.take(&s.path)?;
            let is = |list: &[String]| list.iter().any(|w| w.eq_ignore_ascii_case(word.trim()));
            Some(if is(&s.success) {
                Status::Success
            } else if is(&s.failure) {
                Status::Failure
            } else {
                Status::Other(word)
            })
        });
        let actor = self.actor(&mut r, def);
        let src_endpoint = self.src_ip.as_ref().and_then(|p| r.take(p)).map(|ip| crate::ocsf::endpoint(&ip));
        let http_request = self
            .user_agent
            .as_ref()
            .and_then(|p| r.take(p))
            .map(|ua| HttpRequest { user_agent: Some(ua), ..HttpRequest::default() });
        let common = Common { actor, src_endpoint, http_request };

        let class = self.class(&mut r, def, ctx, &target, &action, common);
        let unmapped = r.unmapped();
        Ok(EventParts {
            class,
            severity: target.severity,
            time: ctx.time_ms(),
            metadata,
            status,
            status_code: None,
            status_detail,
            message,
            raw_data: ctx.raw.to_owned(),
            unmapped: Some(unmapped),
        })
    }

    /// `actor.user`, typed (as Aitronos' actor: a person, an admin, a credential or the
    /// vendor's system); `None` when the record identifies nobody.
    fn actor(&self, r: &mut Reader<'_>, def: &Definition) -> Option<Actor> {
        let kind = self.actor.kind.as_ref().and_then(|p| r.peek(p));
        let user_type = kind.as_ref().map(|k| actor_type(&k.text));
        let (mut user, vals) = person(r, &self.actor);
        if user_type == Some(UserType::System) && !user.is_identified() {
            // The vendor's automation, named by the vendor (as the built-ins name theirs).
            user.name = Some(def.vendor_name.clone());
        }
        if !user.is_identified() {
            return None;
        }
        vals.iter().for_each(|v| r.place(v));
        if let Some(kind) = &kind {
            r.place(kind);
        }
        let user = user.typed(user_type.unwrap_or(UserType::User));
        Some(Actor { user: Some(user), app_name: None, app_uid: None })
    }

    /// The class the target names, filled; or 3004 when its required objects are missing.
    fn class(
        &self,
        r: &mut Reader<'_>,
        def: &Definition,
        ctx: &Context<'_>,
        target: &Target,
        action: &str,
        c: Common,
    ) -> Class {
        let res = Resource {
            uid: self.resource.uid.as_ref().and_then(|p| r.peek(p)),
            name: self.resource.name.as_ref().and_then(|p| r.peek(p)),
            kind: self.resource.kind.as_ref().and_then(|p| r.peek(p)),
        };
        let activity = target.activity;
        match target.class {
            ClassName::ApiActivity => {
                if let (Some(actor), Some(src_endpoint)) = (&c.actor, &c.src_endpoint) {
                    let resources = res.details(r).map(|d| vec![d]);
                    return Class::ApiActivity(ApiActivity {
                        activity: api_activity(activity, action),
                        actor: actor.clone(),
                        api: Api { operation: action.to_owned(), service: None, request: None, response: None },
                        src_endpoint: src_endpoint.clone(),
                        http_request: c.http_request,
                        http_response: None,
                        resources,
                    });
                }
            }
            ClassName::AccountChange => {
                if let Some(user) = self.target_user(r, &res, &c) {
                    return Class::AccountChange(AccountChange {
                        activity: account_change(activity, action),
                        user,
                        user_result: None,
                        actor: c.actor,
                        src_endpoint: c.src_endpoint,
                        http_request: c.http_request,
                    });
                }
            }
            ClassName::Authentication => {
                // §5a rule 3: a sign-in stays 3002 whoever it names; nobody is type Unknown.
                let user = self.target_user(r, &res, &c).unwrap_or_else(|| {
                    User { name: Some(UNKNOWN_USER.to_owned()), ..User::default() }.typed(UserType::Unknown)
                });
                return Class::Authentication(Authentication {
                    activity: authentication(activity, action),
                    user,
                    service: Service { name: def.product.clone() },
                    actor: c.actor,
                    src_endpoint: c.src_endpoint,
                    http_request: c.http_request,
                    is_mfa: None,
                    is_remote: None,
                    auth_protocol: None,
                });
            }
            ClassName::UserAccess => {
                let privileges = self.privileges(r, &res);
                if !privileges.is_empty()
                    && let Some(user) = self.target_user(r, &res, &c)
                {
                    privileges.iter().for_each(|v| r.place(v));
                    let resources = if res.says_user() { None } else { res.details(r).map(|d| vec![d]) };
                    return Class::UserAccess(UserAccess {
                        activity: user_access(activity, action),
                        user,
                        privileges: privileges.into_iter().map(|v| v.text).collect(),
                        resources,
                        actor: c.actor,
                        src_endpoint: c.src_endpoint,
                        http_request: c.http_request,
                    });
                }
            }
            ClassName::GroupManagement => {
                if let Some(group) = self.group(r, &res) {
                    let user = self.target_user(r, &res, &c);
                    return Class::GroupManagement(GroupManagement {
                        activity: group_management(activity, action),
                        group,
                        user,
                        privileges: None,
                        actor: c.actor,
                        src_endpoint: c.src_endpoint,
                        http_request: c.http_request,
                    });
                }
            }
            ClassName::EntityManagement => {}
        }
        // MAPPING §3 rule 7: the required objects of the class are not in the record; say what
        // happened to the resource (or the tenant) instead.
        Class::EntityManagement(EntityManagement {
            activity: entity_management(activity, action),
            entity: self.entity(r, &res, def, ctx),
            entity_result: None,
            actor: c.actor,
            src_endpoint: c.src_endpoint,
            http_request: c.http_request,
            comment: None,
        })
    }

    /// The IAM `user`: the `user` paths' user, else the resource when its type says user, else
    /// the actor's user (already placed).
    fn target_user(&self, r: &mut Reader<'_>, res: &Resource, c: &Common) -> Option<User> {
        let (user, vals) = person(r, &self.user);
        if user.is_identified() {
            vals.iter().for_each(|v| r.place(v));
            return Some(user.typed(UserType::User));
        }
        if res.says_user() && (res.uid.is_some() || res.name.is_some()) {
            let user = User {
                uid: res.uid.clone().map(|v| v.text),
                name: res.name.clone().map(|v| v.text),
                ..User::default()
            };
            res.place_all(r);
            return Some(user.typed(UserType::User));
        }
        c.actor.as_ref().and_then(|a| a.user.clone())
    }

    /// User Access's privileges: the first `privileges` path with a value (a string, or an
    /// array of them), else the resource's name or type when the resource is no user.
    fn privileges(&self, r: &Reader<'_>, res: &Resource) -> Vec<Val> {
        for p in &self.privileges {
            let field = p.field().to_owned();
            let found: Vec<Val> = match p.get(r.record) {
                Some(Value::Array(items)) => items
                    .iter()
                    .take(64)
                    .filter_map(scalar_text)
                    .map(|text| Val { field: field.clone(), text })
                    .collect(),
                Some(v) => scalar_text(v).map(|text| Val { field: field.clone(), text }).into_iter().collect(),
                None => Vec::new(),
            };
            if !found.is_empty() {
                return found;
            }
        }
        if res.says_user() {
            return Vec::new();
        }
        res.name.clone().or(res.kind.clone()).into_iter().collect()
    }

    /// Group Management's group: the `group` paths, else the resource when it is no user.
    fn group(&self, r: &mut Reader<'_>, res: &Resource) -> Option<Group> {
        let uid = self.group.0.as_ref().and_then(|p| r.peek(p));
        let name = self.group.1.as_ref().and_then(|p| r.peek(p));
        if uid.is_some() || name.is_some() {
            [&uid, &name].into_iter().flatten().for_each(|v| r.place(v));
            return Some(Group { uid: uid.map(|v| v.text), name: name.map(|v| v.text), ..Group::default() });
        }
        if res.says_user() || (res.uid.is_none() && res.name.is_none()) {
            return None;
        }
        res.place_all(r);
        Some(Group {
            uid: res.uid.clone().map(|v| v.text),
            name: res.name.clone().map(|v| v.text),
            kind: res.kind.clone().map(|v| v.text),
            privileges: None,
        })
    }

    /// Entity Management's entity: the resource, typed by its type word; else the resource by
    /// its type alone; else the tenant organization; else the product itself.
    fn entity(&self, r: &mut Reader<'_>, res: &Resource, def: &Definition, ctx: &Context<'_>) -> ManagedEntity {
        let (uid, name) = (res.uid.clone().map(|v| v.text), res.name.clone().map(|v| v.text));
        let kind = res.kind.clone().map(|v| v.text);
        if uid.is_none() && name.is_none() {
            if let Some(kind) = kind {
                res.place_all(r);
                return ManagedEntity {
                    name: Some(kind.clone()),
                    type_id: Some(99),
                    kind: Some(kind),
                    ..Default::default()
                };
            }
            let tenant = Some(ctx.organization.to_owned()).filter(|o| !o.trim().is_empty());
            return ManagedEntity::organization(tenant, None).unwrap_or_else(|| ManagedEntity {
                name: Some(def.product.clone()),
                type_id: Some(99),
                kind: Some("product".into()),
                ..Default::default()
            });
        }
        res.place_all(r);
        let lower = kind.as_deref().unwrap_or_default().to_ascii_lowercase();
        let mut e = ManagedEntity { uid: uid.clone(), name: name.clone(), ..Default::default() };
        if kind.is_none() {
            return e;
        }
        if res.says_user() {
            (e.type_id, e.kind) = (Some(2), Some("User".into()));
            e.user = Some(User { uid, name, ..User::default() }.typed(UserType::User));
        } else if lower.contains("group") || lower.contains("team") {
            (e.type_id, e.kind) = (Some(3), Some("Group".into()));
            e.group = Some(Group { uid, name, kind, privileges: None });
        } else if ["organization", "organisation", "org", "enterprise", "business", "tenant"].contains(&lower.as_str())
        {
            e = ManagedEntity::organization(uid, name).unwrap_or(e);
        } else if lower.contains("policy") {
            (e.type_id, e.kind) = (Some(5), Some("Policy".into()));
        } else {
            (e.type_id, e.kind) = (Some(99), kind);
        }
        e
    }
}

/// The attributes every class carries the same way.
struct Common {
    actor: Option<Actor>,
    src_endpoint: Option<NetworkEndpoint>,
    http_request: Option<HttpRequest>,
}

/// A value read from the record: its text and the top-level field it came from.
#[derive(Debug, Clone)]
struct Val {
    field: String,
    text: String,
}

/// The record being mapped, remembering which top-level fields found an OCSF home and the
/// values placed (a field repeating one of them says nothing new in `unmapped`).
struct Reader<'a> {
    record: &'a Map<String, Value>,
    placed: Vec<String>,
    values: Vec<String>,
}

impl Reader<'_> {
    /// The text at `p` (a non-empty string, a number or a boolean); not placed.
    fn peek(&self, p: &Pointer) -> Option<Val> {
        let text = scalar_text(p.get(self.record)?)?;
        Some(Val { field: p.field().to_owned(), text })
    }

    fn place(&mut self, v: &Val) {
        if !self.placed.contains(&v.field) {
            self.placed.push(v.field.clone());
        }
        self.values.push(v.text.clone());
    }

    /// The text at `p`, placed.
    fn take(&mut self, p: &Pointer) -> Option<String> {
        let v = self.peek(p)?;
        self.place(&v);
        Some(v.text)
    }

    /// Every field not placed, as text; nulls and values repeating a placed one (4 characters
    /// or more: shorter ones are equal by chance) left out.
    fn unmapped(&self) -> Unmapped {
        self.record
            .iter()
            .filter(|(k, _)| !self.placed.contains(k))
            .filter_map(|(k, v)| Some((k.clone(), as_text(v)?)))
            .filter(|(_, text)| text.chars().count() < 4 || !self.values.contains(text))
            .collect()
    }
}

/// A scalar as text: a string that is not blank, a number, a boolean; `None` otherwise.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A person (or credential) from `actor` / `user` paths, with the values it used (not yet
/// placed): `name` is the account, `full_name` the display name, `email_addr` only a valid
/// address; the e-mail address names the account when nothing else does, and the display name
/// only when nothing else identifies it (§5a rule 7).
fn person(r: &Reader<'_>, paths: &UserPaths) -> (User, Vec<Val>) {
    let get = |p: &Option<Pointer>| p.as_ref().and_then(|p| r.peek(p));
    let (uid, name, full_name) = (get(&paths.uid), get(&paths.name), get(&paths.full_name));
    let email_val = get(&paths.email).filter(|v| email(Some(v.text.clone())).is_some());
    let mut user = User {
        uid: uid.as_ref().map(|v| v.text.clone()),
        name: name.as_ref().or(email_val.as_ref()).map(|v| v.text.clone()),
        full_name: full_name.as_ref().map(|v| v.text.clone()),
        email_addr: email_val.as_ref().map(|v| v.text.clone()),
        ..User::default()
    };
    if !user.is_identified() {
        user.name = user.full_name.clone();
    }
    let vals = [uid, name, full_name, email_val].into_iter().flatten().collect();
    (user, vals)
}

/// The resource's values (not yet placed).
struct Resource {
    uid: Option<Val>,
    name: Option<Val>,
    kind: Option<Val>,
}

impl Resource {
    /// Whether its type names a user account (`User`, `AppUser`, `user`), not a group of them.
    fn says_user(&self) -> bool {
        self.kind.as_ref().is_some_and(|k| {
            let lower = k.text.to_ascii_lowercase();
            lower.contains("user") && !lower.contains("group")
        })
    }

    fn place_all(&self, r: &mut Reader<'_>) {
        [&self.uid, &self.name, &self.kind].into_iter().flatten().for_each(|v| r.place(v));
    }

    /// `resources[]`'s item, placed; `None` when it has neither uid nor name.
    fn details(&self, r: &mut Reader<'_>) -> Option<ResourceDetails> {
        if self.uid.is_none() && self.name.is_none() {
            return None;
        }
        self.place_all(r);
        Some(ResourceDetails {
            uid: self.uid.clone().map(|v| v.text),
            name: self.name.clone().map(|v| v.text),
            kind: self.kind.clone().map(|v| v.text),
            data: None,
        })
    }
}

/// `actor.user.type_id` from the vendor's word (as Aitronos' `actor_type`).
fn actor_type(word: &str) -> UserType {
    let squashed: String = word.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    match squashed.as_str() {
        "user" | "person" | "member" | "human" | "enduser" => UserType::User,
        "admin" | "administrator" | "owner" => UserType::Admin,
        "apikey" | "apitoken" | "token" | "service" | "serviceaccount" | "integration" | "bot" | "app"
        | "application" | "publicclientapp" | "client" | "oauthapp" | "githubapp" => UserType::Service,
        "system" | "systemprincipal" | "automation" | "scheduler" | "platform" => UserType::System,
        // GitHub's `programmatic_access_type`: "OAuth access token", "Fine-grained personal
        // access token", "GitHub App server-to-server token": a credential acting.
        s if s.contains("token") || s.contains("apikey") => UserType::Service,
        _ => UserType::Other(word.to_owned()),
    }
}

// The activity of a validated name ("other", or a name not of the class, is the vendor's verb).

fn api_activity(name: &str, action: &str) -> ApiActivityId {
    match name {
        "create" => ApiActivityId::Create,
        "read" => ApiActivityId::Read,
        "update" => ApiActivityId::Update,
        "delete" => ApiActivityId::Delete,
        _ => ApiActivityId::Other(action.to_owned()),
    }
}

fn account_change(name: &str, action: &str) -> AccountChangeId {
    match name {
        "create" => AccountChangeId::Create,
        "enable" => AccountChangeId::Enable,
        "password_change" => AccountChangeId::PasswordChange,
        "password_reset" => AccountChangeId::PasswordReset,
        "disable" => AccountChangeId::Disable,
        "delete" => AccountChangeId::Delete,
        "attach_policy" => AccountChangeId::AttachPolicy,
        "detach_policy" => AccountChangeId::DetachPolicy,
        "lock" => AccountChangeId::Lock,
        "mfa_factor_enable" => AccountChangeId::MfaFactorEnable,
        "mfa_factor_disable" => AccountChangeId::MfaFactorDisable,
        "unlock" => AccountChangeId::Unlock,
        _ => AccountChangeId::Other(action.to_owned()),
    }
}

fn authentication(name: &str, action: &str) -> AuthenticationId {
    match name {
        "logon" => AuthenticationId::Logon,
        "logoff" => AuthenticationId::Logoff,
        "authentication_ticket" => AuthenticationId::AuthenticationTicket,
        "service_ticket_request" => AuthenticationId::ServiceTicketRequest,
        "service_ticket_renew" => AuthenticationId::ServiceTicketRenew,
        "preauth" => AuthenticationId::Preauth,
        "account_switch" => AuthenticationId::AccountSwitch,
        _ => AuthenticationId::Other(action.to_owned()),
    }
}

/// Also the activity of a class degraded to 3004: the same verb where Entity Management has it.
fn entity_management(name: &str, action: &str) -> EntityManagementId {
    match name {
        "create" => EntityManagementId::Create,
        "read" => EntityManagementId::Read,
        "update" => EntityManagementId::Update,
        "delete" => EntityManagementId::Delete,
        "move" => EntityManagementId::Move,
        "enroll" => EntityManagementId::Enroll,
        "unenroll" => EntityManagementId::Unenroll,
        "enable" => EntityManagementId::Enable,
        "disable" => EntityManagementId::Disable,
        "activate" => EntityManagementId::Activate,
        "deactivate" => EntityManagementId::Deactivate,
        "suspend" => EntityManagementId::Suspend,
        "resume" => EntityManagementId::Resume,
        _ => EntityManagementId::Other(action.to_owned()),
    }
}

fn user_access(name: &str, action: &str) -> UserAccessId {
    match name {
        "assign_privileges" => UserAccessId::AssignPrivileges,
        "revoke_privileges" => UserAccessId::RevokePrivileges,
        _ => UserAccessId::Other(action.to_owned()),
    }
}

fn group_management(name: &str, action: &str) -> GroupManagementId {
    match name {
        "assign_privileges" => GroupManagementId::AssignPrivileges,
        "revoke_privileges" => GroupManagementId::RevokePrivileges,
        "add_user" => GroupManagementId::AddUser,
        "remove_user" => GroupManagementId::RemoveUser,
        "delete" => GroupManagementId::Delete,
        "create" => GroupManagementId::Create,
        "add_subgroup" => GroupManagementId::AddSubgroup,
        "remove_subgroup" => GroupManagementId::RemoveSubgroup,
        _ => GroupManagementId::Other(action.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::ocsf::event::Event;
    use crate::ocsf::{event_checks, event_uid, schema_check};
    use crate::vendors::defined::model::{
        AnswerDef, AnswerFormat, AuthDef, Method, Order, PagingDef, PagingKind, RateLimitDef, RequestDef, ResetKind,
        Template, TimeFormat, WindowDefaults,
    };

    const OKTA: &str = include_str!("testdata/okta-ocsf.toml");
    const GITHUB: &str = include_str!("testdata/github-ocsf.toml");

    #[derive(Deserialize)]
    struct File {
        ocsf: MappingKeys,
    }

    fn parse(text: &str) -> Result<Mapping, Vec<MappingError>> {
        let file: File = toml::from_str(text).unwrap();
        Mapping::from_keys(file.ocsf)
    }

    fn mapping(text: &str) -> Mapping {
        parse(text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// A definition around `mapping` (only the names, the id and the time matter here), for the
    /// test's life as a loaded one is for the process's.
    fn def(name: &str, vendor_name: &str, mapping: Mapping, id: &str, time: &str) -> &'static Definition {
        let minute = Duration::from_secs(60);
        Box::leak(Box::new(Definition {
            name: name.into(),
            title: format!("{vendor_name} audit log"),
            vendor_name: vendor_name.into(),
            product: format!("{vendor_name} Audit Log"),
            uid_name: name.into(),
            base_url: None,
            path: PathBuf::from(format!("{name}.toml")),
            digest: String::new(),
            window: WindowDefaults { max_span: minute, span_limit: None, overlap: minute, poll_interval: minute },
            request: RequestDef {
                method: Method::Get,
                path: Template(Vec::new()),
                time_format: TimeFormat::Rfc3339,
                query: Vec::new(),
                headers: Vec::new(),
                body: None,
            },
            paging: PagingDef { kind: PagingKind::None, page_size: 100, max_page_size: 100, stop_on_empty: false },
            auth: AuthDef::Bearer,
            answer: AnswerDef {
                format: AnswerFormat::Json,
                gzip: false,
                records: String::new(),
                id: RecordId::Pointer(id.into()),
                time: time.into(),
                time_format: TimeFormat::Rfc3339,
                order: Order::OldestFirst,
                max_records: None,
                max_bytes: None,
            },
            rate_limit: RateLimitDef {
                requests: 60,
                per: minute,
                remaining_header: None,
                reset_header: None,
                reset: ResetKind::Epoch,
                retry_after_header: None,
                forbidden_is_rate_limit: false,
                bare_429_wait: None,
            },
            mapping,
        }))
    }

    fn okta() -> &'static Definition {
        def("okta", "Okta", mapping(OKTA), "/uuid", "/published")
    }

    fn github() -> &'static Definition {
        def("github", "GitHub", mapping(GITHUB), "/_document_id", "/@timestamp")
    }

    /// Maps a record as the pipeline does and checks what every event must satisfy: the OCSF
    /// 1.8.0 schema, the observables, nothing placed twice, no null.
    fn event(def: &'static Definition, record: &Value) -> Value {
        let raw = record.to_string();
        let json = try_event(def, &raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
        event_checks::assert_complete(&json, &["event_code", "uid"]);
        json
    }

    fn try_event(def: &'static Definition, raw: &str) -> Result<Value, Unmappable> {
        let record: Map<String, Value> = serde_json::from_str(raw).unwrap();
        let key = match &def.answer.id {
            RecordId::Pointer(p) => Pointer::parse(p).ok().and_then(|p| p.get(&record).and_then(scalar_text)),
            RecordId::Hash => None,
        }
        .unwrap_or_else(|| "hash".into());
        let ctx = Context::fixed("acme", &key, DateTime::<Utc>::UNIX_EPOCH, raw);
        let parts = def.mapping.map(def, &record, &ctx)?;
        let uid = event_uid(&def.uid_name, "acme", &key).to_string();
        assert_eq!(parts.metadata.uid, uid);
        let json = serde_json::to_value(Event::new(parts)).unwrap();
        schema_check::assert_valid(&json);
        schema_check::assert_observables(&json);
        schema_check::assert_unmapped_not_placed(&json);
        assert!(json.get("raw_data").is_some_and(|r| r == raw), "raw_data: {json}");
        Ok(json)
    }

    /// (class_uid, activity_id, severity_id)
    fn kind(json: &Value) -> (u64, u64, u64) {
        let n = |k: &str| json[k].as_u64().unwrap_or(u64::MAX);
        (n("class_uid"), n("activity_id"), n("severity_id"))
    }

    // ---- validation ------------------------------------------------------------------------

    #[test]
    fn test_every_problem_is_reported_with_its_key_path_and_span() {
        let text = r#"
[ocsf]
message = "displayMessage"
actor = { uid = "/actor/~2id" }
class = "api"
severity = "urgent"

[[ocsf.rules]]
exact = "a"
class = "authentication"
activity = "lock"

[[ocsf.rules]]
regex = "(unclosed"
class = "entity_management"
activity = "create"

[[ocsf.rules]]
regex = '(\w{100}){100}'
class = "entity_management"
activity = "create"

[[ocsf.rules]]
exact = "a"
prefix = "b"
class = "entity_management"
activity = "create"

[[ocsf.rules]]
class = "entity_management"
activity = "create"

[[ocsf.rules]]
exact = "c"
activity = "create"

[[ocsf.rules]]
exact = "d"
class = "user_access"
activity = "assign_privileges"
severity = "severe"
"#;
        let errors = parse(text).unwrap_err();
        let find = |key: &str| {
            errors.iter().find(|e| e.key == key).unwrap_or_else(|| panic!("no error at {key}: {errors:#?}")).clone()
        };
        assert!(find("ocsf.action").message.contains("required"));
        let cases = [
            ("ocsf.message", "\"displayMessage\"", "JSON Pointer"),
            ("ocsf.actor.uid", "~2id", "~0"),
            ("ocsf.class", "\"api\"", "unknown class"),
            ("ocsf.severity", "\"urgent\"", "unknown severity"),
            ("ocsf.rules[0].activity", "\"lock\"", "logon, logoff"),
            ("ocsf.rules[1].regex", "(unclosed", "does not compile"),
            ("ocsf.rules[2].regex", "{100}", "compiles to more than"),
            ("ocsf.rules[3]", "\"b\"", "exact and prefix"),
            ("ocsf.rules[4]", "[[ocsf.rules]]", "needs one of"),
            ("ocsf.rules[5].class", "[[ocsf.rules]]", "required"),
            ("ocsf.rules[6].severity", "\"severe\"", "unknown severity"),
        ];
        for (key, at, says) in cases {
            let e = find(key);
            let span = e.span.clone().unwrap_or_else(|| panic!("{key} has no span"));
            assert!(text[span].contains(at), "{key}: the span is not at {at:?}: {e:?}");
            assert!(e.message.contains(says), "{key}: {:?} does not say {says:?}", e.message);
        }
        assert_eq!(errors.len(), cases.len() + 1, "{errors:#?}");
    }

    #[test]
    fn test_sensible_regexes_fit_the_size_limit() {
        for ok in [r"^[\w.-]+$", r"^(user|group|app)\.(create|delete|update)_\w+$", r"(?i)^\w+\.mfa\.\w+$"] {
            let text = format!(
                "[ocsf]\naction = \"/a\"\n[[ocsf.rules]]\nregex = '{ok}'\nclass = \"entity_management\"\nactivity = \"create\"\n"
            );
            assert!(parse(&text).is_ok(), "{ok}: {:?}", parse(&text).err());
        }
    }

    #[test]
    fn test_more_than_500_rules_are_refused() {
        let rule = |i: usize| {
            format!("[[ocsf.rules]]\nexact = \"a{i}\"\nclass = \"entity_management\"\nactivity = \"create\"\n")
        };
        let text = |n: usize| format!("[ocsf]\naction = \"/a\"\n{}", (0..n).map(rule).collect::<String>());
        assert_eq!(mapping(&text(MAX_RULES)).describe(), "api_activity by default, 500 rules");
        let errors = parse(&text(MAX_RULES + 1)).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "ocsf.rules");
        assert!(errors[0].message.contains("501 rules; at most 500"), "{:?}", errors[0]);
    }

    /// Review 20 A #7: 500 rules of a Unicode class each compiled alone to ~300 KiB, 150 MiB a
    /// definition (and a reload of each edit kept another copy). The regexes are one set now,
    /// capped as a whole: such a definition is refused, a sensible one still matches in order.
    #[test]
    fn test_the_regexes_together_are_capped_and_still_match_in_rule_order() {
        let rule = |i: usize| {
            format!(
                "[[ocsf.rules]]\nregex = '(?i)^\\w{{5}}x{i}$'\nclass = \"entity_management\"\nactivity = \"create\"\n"
            )
        };
        let text = format!("[ocsf]\naction = \"/a\"\n{}", (0..MAX_RULES).map(rule).collect::<String>());
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, "ocsf.rules");
        assert!(errors[0].message.contains("together compile to more than 4096 KiB"), "{:?}", errors[0]);
        let m = mapping(
            "[ocsf]\naction = \"/a\"\n[[ocsf.rules]]\nexact = \"x.y\"\nclass = \"authentication\"\nactivity = \"logon\"\n\
             [[ocsf.rules]]\nregex = '^x\\.'\nclass = \"account_change\"\nactivity = \"lock\"\n\
             [[ocsf.rules]]\nprefix = \"x\"\nclass = \"group_management\"\nactivity = \"add_user\"\n\
             [[ocsf.rules]]\nregex = '^y'\nclass = \"user_access\"\nactivity = \"assign_privileges\"\n",
        );
        let class = |a: &str| m.target(a).class.name();
        assert_eq!(
            [class("x.y"), class("x.z"), class("xz"), class("yy"), class("z")],
            ["authentication", "account_change", "group_management", "user_access", "api_activity"]
        );
    }

    #[test]
    fn test_pointers_follow_rfc_6901() {
        let record: Map<String, Value> =
            serde_json::from_value(json!({"a/b": {"m~n": ["x", "y"]}, "": 1, "l": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}))
                .unwrap();
        let at = |p: &str| Pointer::parse(p).unwrap().get(&record).cloned();
        assert_eq!(at("/a~1b/m~0n/1"), Some(json!("y")));
        assert_eq!(at("/"), Some(json!(1)));
        assert_eq!(at("/l/10"), Some(json!(10)));
        for none in ["/l/01", "/l/-", "/l/+1", "/l/11", "/a~1b/m~0n/x", "/nope/x"] {
            assert_eq!(at(none), None, "{none}");
        }
        for bad in ["", "a", "/a~", "/a~2"] {
            assert!(Pointer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_the_first_matching_rule_wins_else_the_default() {
        let m = mapping(
            r#"[ocsf]
action = "/a"
class = "entity_management"
activity = "update"
severity = "low"
[[ocsf.rules]]
exact = "x.y"
class = "authentication"
activity = "logon"
[[ocsf.rules]]
prefix = "x."
class = "account_change"
activity = "lock"
severity = "high"
[[ocsf.rules]]
regex = '^x'
class = "user_access"
activity = "assign_privileges"
"#,
        );
        let t = |a: &str| {
            let t = m.target(a);
            (t.class, t.activity, t.severity)
        };
        assert_eq!(t("x.y"), (ClassName::Authentication, "logon", Severity::Low));
        assert_eq!(t("x.z"), (ClassName::AccountChange, "lock", Severity::High));
        assert_eq!(t("xz"), (ClassName::UserAccess, "assign_privileges", Severity::Low));
        assert_eq!(t("y"), (ClassName::EntityManagement, "update", Severity::Low));
        assert_eq!(m.describe(), "entity_management by default, 3 rules");
    }

    // ---- Okta System Log ---------------------------------------------------------------------

    /// A LogEvent as Okta's System Log API documents it, with `patch` applied at the top level.
    fn okta_record(event_type: &str, patch: Value) -> Value {
        let mut record = json!({
            "uuid": "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a",
            "published": "2026-03-18T08:15:42.123Z",
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "legacyEventType": "core.user_auth.login_success",
            "displayMessage": "User login to Okta",
            "actor": {"id": "00uttidj01jqL21aM1d6", "type": "User", "alternateId": "john.doe@example.com",
                      "displayName": "John Doe", "detailEntry": null},
            "client": {
                "userAgent": {"rawUserAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
                              "os": "Mac OS X", "browser": "CHROME"},
                "zone": "null", "device": "Computer", "id": null, "ipAddress": "198.51.100.23",
                "geographicalContext": {"city": "Zurich", "state": "Zurich", "country": "Switzerland", "postalCode": "8001",
                                        "geolocation": {"lat": 47.3769, "lon": 8.5417}}
            },
            "device": null,
            "authenticationContext": {"authenticationProvider": null, "credentialProvider": null, "credentialType": null,
                                      "issuer": null, "interface": null, "authenticationStep": 0,
                                      "externalSessionId": "102bZDNFfWaQSyEZQuDgWt-uQ"},
            "outcome": {"result": "SUCCESS", "reason": null},
            "securityContext": {"asNumber": 64496, "asOrg": "example isp", "isp": "example isp", "domain": "example.net", "isProxy": false},
            "debugContext": {"debugData": {"requestId": "ab609228fe84ce59cdcbfa690bcce016", "requestUri": "/idp/idx/authenticators/poll"}},
            "transaction": {"type": "WEB", "id": "ab609228fe84ce59cdcbfa690bcce016", "detail": {}},
            "target": null,
            "request": {"ipChain": [{"ip": "198.51.100.23", "version": "V4", "source": null}]}
        });
        for (k, v) in patch.as_object().cloned().unwrap_or_default() {
            record[k] = v;
        }
        record
    }

    fn okta_user(id: &str, login: &str, name: &str) -> Value {
        json!({"id": id, "type": "User", "alternateId": login, "displayName": name, "detailEntry": null})
    }

    #[test]
    fn test_okta_system_log_events() {
        let def = okta();
        let jane = okta_user("00u1qw2e3r4t5y6u7i8o", "jane.roe@example.com", "Jane Roe");
        let admin = json!({"id": "00u0admin000000000x1", "type": "User", "alternateId": "admin@example.com", "displayName": "Ada Admin"});

        let logon = event(def, &okta_record("user.session.start", json!({})));
        assert_eq!(kind(&logon), (3002, 1, 1));
        assert_eq!(logon["user"]["email_addr"], "john.doe@example.com");
        assert_eq!(logon["user"]["full_name"], "John Doe");
        assert_eq!(logon["src_endpoint"]["ip"], "198.51.100.23");
        assert_eq!(logon["status_id"], 1);
        assert_eq!(logon["service"]["name"], "Okta Audit Log");
        assert_eq!(logon["metadata"]["event_code"], "user.session.start");
        assert_eq!(logon["metadata"]["original_event_uid"], "dc9fd3c0-598c-11ef-8478-2b7584bf8d5a");
        assert_eq!(logon["metadata"]["original_time"], "2026-03-18T08:15:42.123Z");
        assert_eq!(logon["metadata"]["product"], json!({"name": "Okta Audit Log", "vendor_name": "Okta"}));
        assert_eq!(logon["metadata"]["tenant_uid"], "acme");
        assert_eq!(logon["message"], "User login to Okta");
        assert_eq!(logon["unmapped"]["severity"], "INFO");
        assert!(logon["unmapped"]["securityContext"].as_str().unwrap().starts_with("{\"asNumber\""));
        for placed in
            ["actor", "client", "outcome", "uuid", "published", "eventType", "displayMessage", "device", "target"]
        {
            assert!(logon["unmapped"].get(placed).is_none(), "{placed} in {}", logon["unmapped"]);
        }

        // A failed sign-in of an unknown login: still 3002, Failure with the reason.
        let failed = event(
            def,
            &okta_record(
                "user.session.start",
                json!({"actor": {"id": "unknown", "type": "User", "alternateId": "mallory@example.org", "displayName": "unknown"},
                       "outcome": {"result": "FAILURE", "reason": "INVALID_CREDENTIALS"}}),
            ),
        );
        assert_eq!((kind(&failed).0, failed["status_id"].as_u64()), (3002, Some(2)));
        assert_eq!(failed["status_detail"], "INVALID_CREDENTIALS");

        let mfa = event(
            def,
            &okta_record(
                "user.mfa.factor.deactivate",
                json!({"actor": admin, "target": [jane], "displayMessage": "Reset factor for user"}),
            ),
        );
        assert_eq!(kind(&mfa), (3001, 11, 3));
        assert_eq!(mfa["user"]["uid"], "00u1qw2e3r4t5y6u7i8o");
        assert_eq!(mfa["actor"]["user"]["uid"], "00u0admin000000000x1");

        let lock = event(def, &okta_record("user.account.lock", json!({"target": [jane]})));
        assert_eq!(kind(&lock), (3001, 9, 2));

        let group = json!({"id": "00g1eng0000000000001", "type": "UserGroup", "alternateId": "unknown", "displayName": "Engineering"});
        let added =
            event(def, &okta_record("group.user_membership.add", json!({"actor": admin, "target": [jane, group]})));
        assert_eq!(kind(&added), (3006, 3, 1));
        assert_eq!(added["group"], json!({"uid": "00g1eng0000000000001", "name": "Engineering"}));
        assert_eq!(added["user"]["name"], "jane.roe@example.com");

        let app = json!({"id": "0oa1sf00000000000001", "type": "AppInstance", "alternateId": "Salesforce", "displayName": "Salesforce.com"});
        let app_user = json!({"id": "0ua1jane000000000001", "type": "AppUser", "alternateId": "jane.roe@example.com", "displayName": "Jane Roe"});
        let assigned = event(
            def,
            &okta_record("application.user_membership.add", json!({"actor": admin, "target": [app_user, app]})),
        );
        assert_eq!(kind(&assigned), (3005, 1, 2));
        assert_eq!(assigned["privileges"], json!(["Salesforce.com"]));

        let granted = event(
            def,
            &okta_record(
                "user.account.privilege.grant",
                json!({"actor": admin, "target": [jane],
                       "debugContext": {"debugData": {"privilegeGranted": "Super administrator"}}}),
            ),
        );
        assert_eq!(kind(&granted), (3005, 1, 3));
        assert_eq!(granted["privileges"], json!(["Super administrator"]));

        let policy = json!({"id": "00p1default000000001", "type": "PolicyEntity", "alternateId": "unknown", "displayName": "Default Policy"});
        let updated = event(def, &okta_record("policy.lifecycle.update", json!({"actor": admin, "target": [policy]})));
        assert_eq!(kind(&updated), (3004, 3, 1));
        assert_eq!(
            (updated["entity"]["type_id"].as_u64(), updated["entity"]["name"].as_str()),
            (Some(5), Some("Default Policy"))
        );
        let other = event(def, &okta_record("policy.rule.update", json!({"target": [policy]})));
        assert_eq!((kind(&other), other["activity_name"].as_str()), ((3004, 99, 1), Some("policy.rule.update")));

        // No rule: the default API Activity, by an app (a Service actor).
        let token = event(
            def,
            &okta_record(
                "app.oauth2.as.token.grant.access_token",
                json!({"actor": {"id": "0oa1client0000000001", "type": "PublicClientApp", "alternateId": "cli-tool", "displayName": "CLI tool"}}),
            ),
        );
        assert_eq!(kind(&token), (6003, 99, 1));
        assert_eq!(token["api"]["operation"], "app.oauth2.as.token.grant.access_token");
        assert_eq!(token["actor"]["user"]["type_id"], 4);
        assert_eq!(token["http_request"]["user_agent"].as_str().map(|u| u.starts_with("Mozilla/5.0")), Some(true));
        // Without the client's address the same event is Entity Management (rule 7).
        let no_ip = event(
            def,
            &okta_record(
                "app.oauth2.as.token.grant.access_token",
                json!({"client": {"ipAddress": null, "zone": "null"}}),
            ),
        );
        assert_eq!(kind(&no_ip).0, 3004);
        assert_eq!(no_ip["entity"]["org"]["uid"], "acme");
    }

    // ---- GitHub Enterprise audit log -------------------------------------------------------

    fn github_record(action: &str, patch: Value) -> Value {
        let mut record = json!({
            "@timestamp": 1_773_821_742_000_i64,
            "_document_id": "xJJFlFOhQ6b-5vaAFy9Rjw",
            "action": action,
            "actor": "octocat",
            "actor_id": 583_231,
            "actor_location": {"country_code": "DE"},
            "business": "acme-corp",
            "business_id": 4242,
            "created_at": 1_773_821_742_000_i64,
            "operation_type": "create",
            "org": "acme-eng",
            "org_id": 98_765,
            "request_id": "C5A8:3F2B:1A2B3C:4D5E6F:65F0A1B2"
        });
        for (k, v) in patch.as_object().cloned().unwrap_or_default() {
            record[k] = v;
        }
        record
    }

    #[test]
    fn test_github_enterprise_audit_log_events() {
        let def = github();
        let member = json!({"user": "monalisa", "user_id": 1_234_567});

        let mut patch = member.clone();
        patch["actor_ip"] = json!("203.0.113.7");
        patch["user_agent"] = json!("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0");
        let added = event(def, &github_record("org.add_member", patch));
        assert_eq!(kind(&added), (3006, 3, 1));
        assert_eq!(added["group"], json!({"uid": "98765", "name": "acme-eng"}));
        assert_eq!(added["user"], json!({"uid": "1234567", "name": "monalisa", "type_id": 1, "type": "User"}));
        assert_eq!(added["src_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(added["actor"]["user"]["name"], "octocat");
        assert_eq!(added["unmapped"]["business"], "acme-corp");

        let mut patch = member.clone();
        patch["permission"] = json!("admin");
        patch["old_permission"] = json!("read");
        let promoted = event(def, &github_record("org.update_member", patch));
        assert_eq!(kind(&promoted), (3005, 1, 2));
        assert_eq!(promoted["privileges"], json!(["admin"]));
        assert_eq!(promoted["unmapped"]["old_permission"], "read");

        let created = event(
            def,
            &github_record(
                "repo.create",
                json!({"repo": "acme-eng/payments", "repo_id": 812_345_678, "visibility": "private"}),
            ),
        );
        assert_eq!(kind(&created), (3004, 1, 1));
        assert_eq!(created["entity"], json!({"uid": "812345678", "name": "acme-eng/payments"}));
        let destroyed = event(def, &github_record("repo.destroy", json!({"repo": "acme-eng/old"})));
        assert_eq!(kind(&destroyed), (3004, 4, 2));

        let admin = event(def, &github_record("business.add_admin", member.clone()));
        assert_eq!(kind(&admin).2, 3, "an admin granted is Medium");
        // Without a privilege field, an admin grant keeps nothing to name: Entity Management.
        assert_eq!(admin["class_uid"], 3004);
        let mut patch = member.clone();
        patch["role"] = json!("owner");
        assert_eq!(kind(&event(def, &github_record("business.add_admin", patch))), (3005, 1, 3));
        assert_eq!(kind(&event(def, &github_record("org.disable_two_factor_requirement", json!({})))), (3004, 9, 3));
        assert_eq!(
            kind(&event(def, &github_record("business.update_saml_provider_settings", json!({})))),
            (3004, 3, 3)
        );

        let pat = event(
            def,
            &github_record(
                "personal_access_token.access_granted",
                json!({"programmatic_access_type": "Fine-grained personal access token", "token_id": 9_912_345,
                       "user": "monalisa", "user_id": 1_234_567}),
            ),
        );
        assert_eq!(kind(&pat), (3004, 1, 2));
        assert_eq!(pat["actor"]["user"]["type_id"], 4);
        assert_eq!(pat["unmapped"]["token_id"], "9912345");
        assert_eq!(kind(&event(def, &github_record("oauth_application.reset_secret", json!({})))), (3004, 3, 2));
        assert_eq!(kind(&event(def, &github_record("oauth_application.destroy", json!({})))), (3004, 4, 1));
        assert_eq!(kind(&event(def, &github_record("hook.create", json!({"hook_id": 4_211})))), (3004, 1, 2));
        assert_eq!(kind(&event(def, &github_record("hook.config_changed", json!({})))), (3004, 3, 1));
        assert_eq!(kind(&event(def, &github_record("protected_branch.destroy", json!({})))), (3004, 4, 3));
        assert_eq!(kind(&event(def, &github_record("protected_branch.policy_override", json!({})))).1, 99);

        // No rule, with the actor's address: API Activity on the repository.
        let api = event(
            def,
            &github_record(
                "git.clone",
                json!({"actor_ip": "2001:db8::7", "repo": "acme-eng/payments", "repo_id": 812_345_678}),
            ),
        );
        assert_eq!(kind(&api), (6003, 99, 1));
        assert_eq!(api["resources"], json!([{"uid": "812345678", "name": "acme-eng/payments"}]));
    }

    // ---- the seed vendors, re-expressed ---------------------------------------------------------

    #[test]
    fn test_aitronos_like_and_configcat_like_records() {
        let aitronos = def(
            "aitronos-defined",
            "Aitronos",
            mapping(
                r#"[ocsf]
action = ["/entity_type", "/action_type"]
actor = { uid = "/actor_id", full_name = "/actor_name", email = "/actor_email", type = "/actor_type" }
user = { uid = "/target_id", full_name = "/target_name" }
src_ip = "/metadata/ip_address"
user_agent = "/metadata/user_agent"
resource = { uid = "/entity_id", name = "/entity_name", type = "/entity_type" }
privileges = ["/new_value"]
class = "entity_management"
[[ocsf.rules]]
exact = "role_assignment.assigned"
class = "user_access"
activity = "assign_privileges"
severity = "medium"
[[ocsf.rules]]
regex = '\.(created|updated|deleted)$'
class = "entity_management"
activity = "other"
"#,
            ),
            "/id",
            "/created_at",
        );
        let record = json!({"id": "ale_01J9Z7Q4M2X8", "organization_id": "org_abc123", "entity_type": "role_assignment",
            "entity_id": "ra_7731", "entity_name": "Admin", "action_type": "assigned", "actor_id": "usr_admin01",
            "actor_name": "Admin User", "actor_email": "admin@example.com", "target_id": "usr_def456",
            "target_name": "John Doe", "department_id": null, "previous_value": null, "new_value": "Admin",
            "created_at": "2025-06-03T11:02:33Z", "metadata": {"ip_address": "198.51.100.7", "user_agent": "curl/8.5"}});
        let granted = event(aitronos, &record);
        assert_eq!(kind(&granted), (3005, 1, 3));
        // Two fields joined: the action is entity_type.action_type, and neither is unmapped.
        assert_eq!(granted["metadata"]["event_code"], "role_assignment.assigned");
        assert_eq!(granted["privileges"], json!(["Admin"]));
        assert_eq!(granted["user"]["uid"], "usr_def456");
        assert_eq!(granted["actor"]["user"]["name"], "admin@example.com");
        assert_eq!(granted["metadata"]["uid"], event_uid("aitronos-defined", "acme", "ale_01J9Z7Q4M2X8").to_string());
        assert_eq!(granted["unmapped"], json!({"organization_id": "org_abc123"}));
        let mut deleted = record.clone();
        deleted["action_type"] = json!("deleted");
        deleted["entity_type"] = json!("user");
        deleted["actor_type"] = json!("api_key");
        let deleted = event(aitronos, &deleted);
        assert_eq!(deleted["metadata"]["event_code"], "user.deleted");
        assert_eq!((kind(&deleted), deleted["entity"]["type_id"].as_u64()), ((3004, 99, 1), Some(2)));
        // A part missing: no action, so the record is unmappable (dead-lettered with the reason).
        let mut partial = record.clone();
        partial.as_object_mut().unwrap().remove("entity_type");
        let err = try_event(aitronos, &partial.to_string()).unwrap_err();
        assert!(err.0.contains("/entity_type . /action_type"), "{err}");
        assert_eq!(deleted["actor"]["user"]["type_id"], 4);

        let configcat = def(
            "configcat-defined",
            "ConfigCat",
            mapping(
                r#"[ocsf]
action = "/auditLogTypeEnum"
message = "/auditLogType"
actor = { full_name = "/userName", email = "/userEmail" }
user = { name = "/actionTarget", email = "/actionTarget" }
resource = { name = "/actionTarget" }
[[ocsf.rules]]
exact = "twoFactorDisabledForMember"
class = "account_change"
activity = "mfa_factor_disable"
severity = "medium"
[[ocsf.rules]]
regex = 'Changed$'
class = "entity_management"
activity = "update"
"#,
            ),
            "/auditLogId",
            "/auditLogDateTime",
        );
        let changed = event(
            configcat,
            &json!({"auditLogId": 48_213_377, "auditLogDateTime": "2025-06-03T12:44:09.52Z",
                "auditLogTypeEnum": "settingValueChanged", "changeSetId": "5b9f4e1c-2a7d-4c1e-9f3b-8d6a0e2c7b14",
                "truncated": false, "auditLogType": "Changed feature flag value", "userEmail": "bob@example.com",
                "userName": "Bob Example", "where": "Mobile / Main config / Production", "why": "Roll out new checkout to 10%",
                "actionTarget": "isNewCheckoutEnabled",
                "details": "{\"rolloutPercentageItems\":[{\"percentage\":10,\"value\":true}]}"}),
        );
        assert_eq!(kind(&changed), (3004, 3, 1));
        assert_eq!(changed["entity"], json!({"name": "isNewCheckoutEnabled"}));
        assert_eq!(changed["metadata"]["original_event_uid"], "48213377");
        assert_eq!(changed["unmapped"]["truncated"], "false");
        let mfa = event(
            configcat,
            &json!({"auditLogId": 48_213_378, "auditLogDateTime": "2025-06-03T12:50:00Z",
                "auditLogTypeEnum": "twoFactorDisabledForMember", "auditLogType": "Two-factor authentication disabled",
                "userEmail": "bob@example.com", "userName": "Bob Example", "actionTarget": "carol@example.com"}),
        );
        assert_eq!(kind(&mfa), (3001, 11, 3));
        assert_eq!(mfa["user"]["email_addr"], "carol@example.com");
        // No address in ConfigCat's log: the default API Activity is Entity Management (rule 7).
        let unknown = event(configcat, &json!({"auditLogId": 1, "auditLogTypeEnum": "productAdded"}));
        assert_eq!(kind(&unknown), (3004, 99, 1));
    }

    // ---- every class, with most fields missing --------------------------------------------------

    #[test]
    fn test_every_class_and_activity_is_valid_with_a_full_or_a_bare_record() {
        let full = json!({"act": "x", "who": {"id": "u-1", "login": "ann", "mail": "ann@example.com", "kind": "admin"},
            "whom": {"id": "u-2", "login": "bo"}, "ip": "198.51.100.9, 10.0.0.1", "ua": "curl/8.5",
            "res": {"id": "r-1", "name": "Billing", "type": "team"}, "perm": ["read", "write"], "ok": "done",
            "why": "because", "msg": "something happened", "id": "e-1", "t": "2026-03-18T08:15:42+02:00"});
        for class in ClassName::ALL {
            for activity in class.activities() {
                let text = format!(
                    r#"[ocsf]
action = "/act"
message = "/msg"
actor = {{ uid = "/who/id", name = "/who/login", email = "/who/mail", type = "/who/kind" }}
user = {{ uid = "/whom/id", name = "/whom/login" }}
src_ip = "/ip"
user_agent = "/ua"
resource = {{ uid = "/res/id", name = "/res/name", type = "/res/type" }}
privileges = ["/perm"]
status = {{ path = "/ok", success = ["ok"], failure = ["failed"] }}
status_detail = "/why"
[[ocsf.rules]]
exact = "x"
class = "{}"
activity = "{activity}"
"#,
                    class.name()
                );
                let d = def("full", "Full", mapping(&text), "/id", "/t");
                let json = event(d, &full);
                let want = match class {
                    ClassName::ApiActivity => 6003,
                    ClassName::AccountChange => 3001,
                    ClassName::Authentication => 3002,
                    ClassName::EntityManagement => 3004,
                    ClassName::UserAccess => 3005,
                    ClassName::GroupManagement => 3006,
                };
                assert_eq!(json["class_uid"], want, "{class:?} {activity}: {json}");
                assert_eq!(json["status"], "done");
                assert_eq!(json["timezone_offset"], 120);
                // The same mapping on a record holding only the action: still an event, and valid.
                let bare = event(d, &json!({"act": "x"}));
                let expect = if class == ClassName::Authentication { 3002 } else { 3004 };
                assert_eq!(bare["class_uid"], expect, "{class:?} {activity}: {bare}");
            }
        }
    }

    #[test]
    fn test_absent_null_and_empty_values_give_nothing() {
        let d = okta();
        let record = okta_record(
            "user.session.start",
            json!({"actor": {"id": "", "alternateId": null, "displayName": "  "}, "client": {"ipAddress": "", "userAgent": null},
                   "displayMessage": null, "outcome": {}}),
        );
        let json = event(d, &record);
        assert_eq!(json["user"], json!({"name": "unknown", "type_id": 0, "type": "Unknown"}));
        for absent in ["actor", "src_endpoint", "http_request", "message", "status_id", "observables"] {
            assert!(json.get(absent).is_none(), "{absent}: {json}");
        }
    }

    #[test]
    fn test_a_record_without_its_action_is_unmappable() {
        let d = okta();
        for action in [Value::Null, json!(""), json!("   "), json!({"a": 1}), json!([1])] {
            let raw = okta_record("x", json!({})).as_object().cloned().map(|mut r| {
                r.insert("eventType".into(), action.clone());
                Value::Object(r).to_string()
            });
            let err = try_event(d, &raw.unwrap()).unwrap_err();
            assert!(err.0.contains("okta: record without its action at /eventType"), "{err}");
        }
        let mut raw = okta_record("x", json!({}));
        raw.as_object_mut().unwrap().remove("eventType");
        assert!(try_event(d, &raw.to_string()).is_err());
    }

    // ---- any JSON ----------------------------------------------------------------------------

    fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
        const KEYS: [&str; 10] = ["act", "id", "name", "type", "ip", "0", "1", "mail", "x~y", "a/b"];
        const WORDS: [&str; 12] = [
            "",
            " ",
            "x",
            "198.51.100.4",
            "2001:db8::1, 10.0.0.1",
            "ann@example.com",
            "not-an@email",
            "user",
            "AppUser",
            "system",
            "ünïcødé ☃",
            "{\"a\":1}",
        ];
        match rng.u8(0..if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(rng.bool()),
            2 => json!(rng.i64(..)),
            3 => json!(rng.f64() * 1e6),
            4 => {
                if rng.bool() {
                    json!(WORDS[rng.usize(..WORDS.len())])
                } else {
                    json!((0..rng.usize(0..12)).map(|_| rng.alphanumeric()).collect::<String>())
                }
            }
            5 => Value::Array((0..rng.usize(0..4)).map(|_| random_value(rng, depth - 1)).collect()),
            _ => Value::Object(
                (0..rng.usize(0..5))
                    .map(|_| (KEYS[rng.usize(..KEYS.len())].to_owned(), random_value(rng, depth - 1)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn test_random_records_never_panic_and_always_validate() {
        let mut rules = String::new();
        for (i, class) in ClassName::ALL.iter().enumerate() {
            for (j, activity) in class.activities().iter().enumerate() {
                rules.push_str(&format!(
                    "[[ocsf.rules]]\nexact = \"{i}{j}\"\nclass = \"{}\"\nactivity = \"{activity}\"\n",
                    class.name()
                ));
            }
        }
        let text = format!(
            r#"[ocsf]
action = "/act"
message = "/msg"
actor = {{ uid = "/who/id", name = "/who/name", full_name = "/who/0", email = "/who/mail", type = "/who/type" }}
user = {{ uid = "/whom/1/id", name = "/whom/1/name", email = "/whom/mail" }}
src_ip = "/ip"
user_agent = "/ua/x~0y"
resource = {{ uid = "/res/id", name = "/res/a~1b", type = "/res/type" }}
group = {{ name = "/grp/name" }}
privileges = ["/perm", "/res/name"]
status = {{ path = "/ok", success = ["x"] }}
status_detail = "/why"
{rules}"#
        );
        let d = def("fuzz", "Fuzz", mapping(&text), "/id", "/t");
        let fields = ["act", "msg", "who", "whom", "ip", "ua", "res", "grp", "perm", "ok", "why", "id", "t", "extra"];
        let mut rng = fastrand::Rng::with_seed(20);
        let (mut mapped, mut refused) = (0, 0);
        let mut events = Vec::new();
        for _ in 0..3000 {
            let mut record = Map::new();
            for field in fields {
                if rng.u8(0..3) > 0 {
                    record.insert(field.to_owned(), random_value(&mut rng, 3));
                }
            }
            if rng.u8(0..4) > 0 {
                let class = rng.usize(0..ClassName::ALL.len());
                let activity = rng.usize(0..ClassName::ALL[class].activities().len());
                record.insert("act".into(), json!(format!("{class}{activity}")));
            }
            let raw = Value::Object(record.clone()).to_string();
            match try_event(d, &raw) {
                Ok(json) => {
                    mapped += 1;
                    events.push(json);
                }
                Err(e) => {
                    assert!(record.get("act").and_then(scalar_text).is_none(), "{e}: {raw}");
                    refused += 1;
                }
            }
        }
        assert!(mapped > 2000 && refused > 100, "{mapped} mapped, {refused} refused");
        schema_check::assert_one_type_per_path(&events);
    }
}
