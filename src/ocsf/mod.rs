//! Turning a vendor record into the OCSF 1.8.0 event the queue stores. Pure: no I/O, no clock.
//!
//! `event.rs` holds the typed classes and objects; one file per vendor (`aitronos.rs`, …) maps
//! that vendor's record following the shared MAPPING.md tables; [`map_record`] dispatches,
//! applies the configured severity overrides and serializes each event once. Every event gets
//! a deterministic `metadata.uid` (UUIDv5 over vendor, organization and dedupe key, DESIGN
//! invariant 3), so a SIEM can drop the rare duplicate after a crash mid-send. A record that
//! cannot be mapped at all is an [`Unmappable`] error: the source dead-letters it.

pub mod event;
#[cfg(test)]
#[path = "../../tests/ocsf_schema/mod.rs"]
pub(crate) mod schema_check;
#[cfg(test)]
mod schema_check_tests;
pub mod summary;
pub mod write;

/// What the vendor mappings' tests check of every event besides the schema.
#[cfg(test)]
pub(crate) mod event_checks {
    use serde_json::Value;

    /// No `null` anywhere (not even inside `unmapped`); these `metadata` keys set and
    /// non-empty; `raw_data` set to the record.
    pub fn assert_complete(json: &Value, metadata_keys: &[&str]) {
        fn no_null(v: &Value, path: &str) {
            match v {
                Value::Null => panic!("null at {path}"),
                Value::Array(items) => items.iter().for_each(|i| no_null(i, path)),
                Value::Object(o) => o.iter().for_each(|(k, v)| no_null(v, &format!("{path}.{k}"))),
                _ => {}
            }
        }
        no_null(json, "");
        for key in metadata_keys {
            assert!(json["metadata"][key].as_str().is_some_and(|s| !s.is_empty()), "metadata.{key}: {json}");
        }
        assert!(json["raw_data"].as_str().is_some_and(|s| s.starts_with('{')), "raw_data: {json}");
    }
}

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use event::{EventParts, Logger, Metadata, OCSF_VERSION, Product, RawData, Severity, Status, Unmapped};

pub mod paths;

/// A record that cannot become an event at all; it is dead-lettered with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmappable(pub String);

/// What every vendor mapping gets besides the record itself (all decided before mapping).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The tenant: the configured organization id (Datafold: its label).
    pub organization: &'a str,
    /// The record's dedupe key (the vendor id, or Astronomer's content hash).
    pub dedupe_key: &'a str,
    /// The event time the source parsed from the record.
    pub time: DateTime<Utc>,
    /// The record exactly as the vendor sent it.
    pub raw: &'a str,
    /// `metadata.log_name`: the source's `log_name` (by default its name); empty for none.
    pub log_name: &'a str,
    /// When the record was mapped (the page was stored), epoch ms: `metadata.processed_time`
    /// and the logger's `logged_time`.
    pub processed_ms: i64,
}

impl<'a> Context<'a> {
    /// A context as the vendor mappings' tests use it: log name "saas-audit", mapped at a fixed
    /// moment, so snapshots stay the same.
    #[cfg(test)]
    pub(crate) fn fixed(organization: &'a str, dedupe_key: &'a str, time: DateTime<Utc>, raw: &'a str) -> Self {
        Context { organization, dedupe_key, time, raw, log_name: "saas-audit", processed_ms: 1_780_000_000_000 }
    }
}

impl Context<'_> {
    /// Event time in epoch milliseconds (OCSF `time`).
    pub fn time_ms(&self) -> i64 {
        self.time.timestamp_millis()
    }

    /// The metadata every event carries: version, product, the deterministic `uid`, tenant
    /// and the agent as logger. The vendor mapping adds its codes (`event_code`,
    /// `original_event_uid`, `original_time`, `correlation_uid`, `labels`).
    /// The product names and log provider are the vendor's (or its definition's) for the
    /// process's life: borrowed, not copied per event.
    pub fn metadata(
        &self,
        vendor: &str,
        product: &'static str,
        vendor_name: &'static str,
        log_provider: &'static str,
    ) -> Metadata {
        let log_name = Some(self.log_name.to_owned()).filter(|n| !n.is_empty());
        Metadata {
            version: OCSF_VERSION,
            product: Product { name: product.into(), vendor_name: vendor_name.into(), version: None },
            uid: event_uid(vendor, self.organization, self.dedupe_key)
                .hyphenated()
                .encode_lower(&mut [0; 36])
                .to_owned(),
            original_event_uid: None,
            correlation_uid: None,
            event_code: None,
            original_time: None,
            tenant_uid: Some(self.organization.to_owned()).filter(|o| !o.is_empty()),
            log_provider: Some(log_provider.into()),
            labels: None,
            log_name: log_name.clone(),
            processed_time: Some(self.processed_ms),
            loggers: vec![Logger::auditrelay(log_name, self.processed_ms)],
        }
    }
}

/// A vendor value as text, for `unmapped` and `*.data`: a string as it is, anything else as
/// its compact JSON (`true`, `12`, `{"a":1}`); `None` for `null`. Free-form vendor values
/// take this form so each attribute path has one JSON type whatever the vendor sends.
pub fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A non-empty string field of a record (numbers are given as their decimal text).
pub fn text(record: &Map<String, Value>, key: &str) -> Option<String> {
    match record.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An e-mail address OCSF's `email_t` accepts, else `None`. Its pattern is
/// `^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$` (1.8.0).
pub fn email(value: Option<String>) -> Option<String> {
    // `+-/` in the pattern is a range: + , - . /
    let local_ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+,-./=?^_`{|}~".contains(c);
    let domain_ok = |c: char| c.is_ascii_alphanumeric() || c == '-';
    value.filter(|v| {
        let Some((local, domain)) = v.split_once('@') else { return false };
        let Some((first, rest)) = domain.split_once('.') else { return false };
        !local.is_empty()
            && local.chars().all(local_ok)
            && !first.is_empty()
            && first.chars().all(domain_ok)
            && !rest.is_empty()
            && rest.chars().all(|c| domain_ok(c) || c == '.')
    })
}

/// An IP address OCSF's `ip_t` accepts (a parsed IPv4 or IPv6 address), else `None`.
pub fn ip(value: Option<String>) -> Option<String> {
    value.as_deref().and_then(ip_of)
}

/// [`ip`] of borrowed text (no copy of the text first).
fn ip_of(value: &str) -> Option<String> {
    value.trim().parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// `src_endpoint` from a record's client-address field ([`endpoint`]).
pub fn src_endpoint(record: &Map<String, Value>, key: &str) -> Option<event::NetworkEndpoint> {
    Some(endpoint(&text(record, key)?))
}

/// An endpoint from a client-address value: a forwarded-for list (`client, proxy1, proxy2`)
/// keeps its first address as `ip` and every other as `intermediate_ips`, so none is lost
/// (whichever a rule trusts) even without `raw_data`; a value that is no address is kept as
/// the endpoint's `name`, not dropped.
pub fn endpoint(raw: &str) -> event::NetworkEndpoint {
    let mut addresses = raw.split(',').filter_map(ip_of);
    match addresses.next() {
        Some(first) => {
            let rest: Vec<String> = addresses.collect();
            event::NetworkEndpoint {
                ip: Some(first),
                intermediate_ips: Some(rest).filter(|r| !r.is_empty()),
                ..Default::default()
            }
        }
        None => event::NetworkEndpoint { name: Some(raw.trim().to_owned()), ..Default::default() },
    }
}

/// An HTTP method as OCSF's `http_request.http_method` enum spells it (upper case, one of the
/// nine methods), else `None`.
pub fn http_method(value: Option<String>) -> Option<String> {
    const METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];
    value.map(|m| m.trim().to_ascii_uppercase()).filter(|m| METHODS.contains(&m.as_str()))
}

/// `status` from a vendor's word (MAPPING.md §2.6).
pub fn status_from_word(word: &str) -> Status {
    let is = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(word));
    if is(&["success", "succeeded", "ok"]) {
        Status::Success
    } else if is(&["failure", "failed", "fail", "error", "denied"]) {
        Status::Failure
    } else {
        Status::Other(word.to_owned())
    }
}

/// `status` from an HTTP status code: 2xx success, 4xx/5xx failure.
pub fn status_from_http(code: i64) -> Status {
    match code {
        200..=299 => Status::Success,
        400..=599 => Status::Failure,
        _ => Status::Other(code.to_string()),
    }
}

/// A record being mapped, remembering which fields found an OCSF home: every other field goes
/// to `unmapped` under its vendor name, and a placed one never does (MAPPING §5a rule 9).
pub struct Fields<'a> {
    pub(crate) record: &'a Map<String, Value>,
    pub(crate) placed: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// `action` is the field that chose the mapping: placed from the start.
    pub fn new(record: &'a Map<String, Value>, action: &'static str) -> Self {
        Fields { record, placed: vec![action] }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        text(self.record, key)
    }

    /// The field's text, now placed (it leaves `unmapped`).
    pub fn take(&mut self, key: &'static str) -> Option<String> {
        let value = self.get(key);
        if value.is_some() {
            self.placed.push(key);
        }
        value
    }

    /// Marks a field placed (its value went somewhere [`Fields::take`] does not see).
    pub fn place(&mut self, key: &'static str) {
        if self.record.contains_key(key) {
            self.placed.push(key);
        }
    }

    /// A value as text ([`as_text`]: an object or array as its JSON), for `*.data`; placed.
    pub fn take_value(&mut self, key: &'static str) -> Option<String> {
        let value = self.record.get(key).and_then(as_text).filter(|s| !s.trim().is_empty())?;
        self.placed.push(key);
        Some(value)
    }

    /// A stringified value that is a plain word or name, not JSON; not placed.
    pub fn plain(&self, key: &str) -> Option<String> {
        self.get(key).filter(|s| !s.trim_start().starts_with(['{', '[']))
    }

    /// Every field not placed, under its own name, as text; nulls left out. A field whose text
    /// is a placed field's (ConfigCat's `where` naming the organization its `actionTarget`
    /// already names) says nothing new and is left out too; short values (`true`, `2`) are
    /// kept, being equal by chance. Each value as text ([`as_text`]); `raw_data` keeps the
    /// record as sent.
    pub fn unmapped(&self) -> Unmapped {
        let placed: Vec<&str> = self
            .placed
            .iter()
            .filter_map(|k| self.record.get(*k)?.as_str())
            .filter(|v| v.len() >= 4 && v.chars().nth(3).is_some())
            .collect();
        // One pass over the record (in key order, as the map keeps it): no second look-up.
        self.record
            .iter()
            .filter(|(k, v)| !self.placed.contains(&k.as_str()) && !v.as_str().is_some_and(|v| placed.contains(&v)))
            .filter_map(|(k, v)| Some((k.clone(), as_text(v)?)))
            .collect()
    }
}

/// Namespace for event uids: UUIDv5(NAMESPACE_URL, "https://auditrelay.dev/event").
fn uid_namespace() -> uuid::Uuid {
    // Derived once (a SHA-1), not for every event.
    static NAMESPACE: std::sync::LazyLock<uuid::Uuid> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"https://auditrelay.dev/event"));
    *NAMESPACE
}

/// The deterministic id of one vendor record: the same record always gets the same uid.
/// UUIDv5 of `vendor \x1f organization \x1f dedupe key` in [`uid_namespace`]: exactly
/// `Uuid::new_v5`, with the SHA-1 of the `sha1` crate (the CPU's SHA instructions where it has
/// them) fed the parts in turn instead of a formatted name.
pub fn event_uid(vendor: &str, organization: &str, dedupe_key: &str) -> uuid::Uuid {
    use sha1::Digest as _;
    let mut sha = sha1::Sha1::new();
    sha.update(uid_namespace().as_bytes());
    sha.update(vendor.as_bytes());
    sha.update([0x1f]);
    sha.update(organization.as_bytes());
    sha.update([0x1f]);
    sha.update(dedupe_key.as_bytes());
    let digest = sha.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// `[severity]`: the severity of events by `"<vendor>:<event code>"` (the event's
/// `metadata.event_code`), overriding the mapping's default (MAPPING.md's suggested raised
/// severities: MFA disabled, SSO/SAML, API keys, admin grants, support-user access).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeverityPolicy {
    // Ordered, so that `Debug` (a source's fingerprint) is the same for the same overrides.
    overrides: BTreeMap<(String, String), Severity>,
}

impl SeverityPolicy {
    /// The configured severity for this vendor's event code, if any.
    pub fn get(&self, vendor: &str, event_code: &str) -> Option<Severity> {
        if self.overrides.is_empty() {
            return None; // the common case, without building a key for every event
        }
        self.overrides.get(&(vendor.to_owned(), event_code.to_owned())).copied()
    }

    pub fn from_overrides(overrides: impl IntoIterator<Item = ((String, String), Severity)>) -> SeverityPolicy {
        SeverityPolicy { overrides: overrides.into_iter().collect() }
    }

    /// Every override: `(vendor, event code)` and its severity.
    pub fn overrides(&self) -> impl Iterator<Item = (&(String, String), &Severity)> {
        self.overrides.iter()
    }

    pub fn len(&self) -> usize {
        self.overrides.len()
    }

    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }
}

/// Maps one record to the OCSF event the queue stores (serialized once, here) with `map`, the
/// mapping of `vendor`, applying the configured severity overrides. An error means the record
/// cannot become an event at all: the caller dead-letters it with the reason.
pub fn map_record(
    vendor: &str,
    map: impl FnOnce(&Map<String, Value>, &Context<'_>) -> Result<EventParts, Unmappable>,
    ctx: &Context<'_>,
    policy: &Policy,
) -> Result<Vec<u8>, Unmappable> {
    let record: Map<String, Value> =
        serde_json::from_str(ctx.raw).map_err(|e| Unmappable(format!("record is not a JSON object ({e})")))?;
    let mut parts = map(&record, ctx)?;
    if let Some(level) = parts.metadata.event_code.as_deref().and_then(|code| policy.severity.get(vendor, code)) {
        parts.severity = level;
    }
    // Room for the whole event at once: about the record (as `raw_data`, escaped), its values
    // again as attributes and `unmapped`, and a kilobyte of classification and metadata.
    let mut out = Vec::with_capacity(ctx.raw.len() * 3 + 1024);
    write::event(&parts, policy.raw_data, &mut out)
        .map_err(|e| Unmappable(format!("cannot serialize the event ({e})")))?;
    // The event is kept (a whole page of them) until stored: it must not hold more than it needs.
    // With `raw_data` "off" or "hash", or a record padded with whitespace, the estimate above is
    // far too much (a pretty-printed record: 388 times the event; review 21a), and a vendor's
    // formatting must not set the memory a page takes. Within twice its length, as the
    // doubling `serde_json::to_vec` left it, the spare room is kept (no copy).
    if out.capacity() > 2 * out.len() {
        out.shrink_to_fit();
    }
    Ok(out)
}

/// How events are shaped beyond the vendor's mapping (`[severity]`, `[ocsf]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub severity: SeverityPolicy,
    pub raw_data: RawData,
}

/// The kinds of security action every vendor names in its own words; the same kind gets the
/// same default severity whichever vendor logged it (MAPPING §2.6 and the vendor tables'
/// suggestions, made one table). `[severity]` overrides any of them per event code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// An API key, token or signing key created, connected or regenerated.
    CredentialCreated,
    /// An API key or token rotated (a new secret for an existing credential).
    CredentialRotated,
    /// An API key or token deleted or revoked.
    CredentialDeleted,
    /// A role or permission that makes the user an administrator (owner, admin) granted.
    AdminGranted,
    /// An administrator role or permission taken away.
    AdminRevoked,
    /// Any other role, permission or grant given.
    PrivilegeGranted,
    /// Any other role, permission or grant taken away.
    PrivilegeRevoked,
    /// MFA turned off for an account.
    MfaDisabled,
    /// MFA turned on for an account.
    MfaEnabled,
    /// SSO / SAML / identity-provider or provisioning (SCIM) configuration created, changed or removed.
    SsoChanged,
    /// The vendor's own staff acting in the tenant (support access).
    SupportAccess,
    /// A password reset (by an admin or a reset flow).
    PasswordReset,
    /// An account locked, disabled or deleted.
    AccountDisabled,
    /// A failed sign-in.
    LoginFailed,
    /// What a role or permission grants changed (every holder's privileges change with it).
    RoleChanged,
    /// An account's e-mail address changed (where password resets go: a takeover's step).
    EmailChanged,
    /// An organization, or a product holding its configuration, deleted; or its ownership moved.
    TenantDeleted,
}

impl Signal {
    pub fn severity(self) -> Severity {
        match self {
            Signal::AdminGranted | Signal::MfaDisabled | Signal::SsoChanged | Signal::SupportAccess => Severity::Medium,
            Signal::CredentialCreated
            | Signal::CredentialRotated
            | Signal::AdminRevoked
            | Signal::PrivilegeGranted
            | Signal::PasswordReset
            | Signal::AccountDisabled
            | Signal::LoginFailed
            | Signal::EmailChanged
            | Signal::TenantDeleted
            | Signal::RoleChanged => Severity::Low,
            Signal::CredentialDeleted | Signal::PrivilegeRevoked | Signal::MfaEnabled => Severity::Informational,
        }
    }
}

/// Whether a role or permission name makes its holder an administrator (`Org Admin`,
/// `ORGANIZATION_OWNER`, `admin`, `Workspace Owner`, …).
pub fn is_admin_privilege(name: &str) -> bool {
    // Case-blind `contains` without a lower-cased copy.
    let name = name.as_bytes();
    ["admin", "owner", "superuser", "root"]
        .iter()
        .any(|w| name.windows(w.len()).any(|part| part.eq_ignore_ascii_case(w.as_bytes())))
}

/// The end of an event as [`event::Event`] serializes it: its last logger's `logged_time`, then the
/// end of `loggers`, of `metadata` and of the event.
const STORED_TAIL: &[u8] = b"}]}}";
/// What [`stamp_transmit_time`] writes before each of the two closing brackets it splices at.
const TRANSMIT_KEY: &[u8] = b",\"transmit_time\":";
/// The start of the logger [`event::Event`] writes (`Logger::auditrelay`), and a key every event of
/// this shape has before `metadata`: structural keys, never inside a string (whose quotes are
/// escaped), so the last of each in an event is the event's own.
const LOGGER_START: &[u8] = b"\"loggers\":[{\"name\":\"auditrelay\",\"product\":";
const RAW_DATA_SIZE_KEY: &[u8] = b"\"raw_data_size\":";

/// Adds the send time to a stored event: `metadata.loggers[-1].transmit_time` and
/// `metadata.transmit_time`, written into `out` with the event. The event must end as
/// [`event::Event`] serializes it (`…"logged_time":N}]}}`, with `metadata` after `raw_data_size`);
/// anything else (an event stored by an older version, which put `metadata` first and
/// `unmapped` last) is written unchanged. No parse: a splice at the event's end.
pub fn stamp_transmit_time(event: &[u8], transmit_ms: i64, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail.
    let _ = write_stamped(event, transmit_ms, out);
}

/// [`stamp_transmit_time`] into any writer: `event` as sent at `transmit_ms`, written straight
/// into `out` (a request body, a gzip encoder, a file's buffer) with no stamped copy of the
/// event first. The same bytes as [`stamp_transmit_time`], in the same order.
pub fn write_stamped<W: std::io::Write + ?Sized>(event: &[u8], transmit_ms: i64, out: &mut W) -> std::io::Result<()> {
    let (head, stamp) = splice(event, stampable(event), transmit_ms);
    out.write_all(head)?;
    match stamp {
        Some(stamp) => stamp.write_to(out),
        None => Ok(()),
    }
}

/// `event` as sent at `transmit_ms` ([`stamp_transmit_time`]), in two pieces: the stored bytes
/// written as they are (all of them for an event the stamp does not go into), then the
/// [`Stamp`] that ends the event after them, if it takes one. `stampable` is what
/// [`stampable`] says of `event`: a sink that writes an event more than once (resends, a
/// request's size measured before it is built) asks once and keeps the answer. A `true` for an
/// event that does not end as a stored event does is taken as `false`.
pub fn splice(event: &[u8], stampable: bool, transmit_ms: i64) -> (&[u8], Option<Stamp>) {
    match event.strip_suffix(STORED_TAIL) {
        Some(head) if stampable => (head, Some(Stamp(transmit_ms))),
        _ => (event, None),
    }
}

/// What [`stamp_transmit_time`] writes in place of a stored event's closing `}]}}`:
/// `,"transmit_time":N}],"transmit_time":N}}` (its [`std::fmt::Display`]). ASCII, with no
/// newline nor anything a sink escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub i64);

impl Stamp {
    /// The length of what it writes.
    pub fn len(self) -> usize {
        let ms = self.0;
        let digits = ms.unsigned_abs().checked_ilog10().map_or(1, |l| l as usize + 1) + usize::from(ms < 0);
        2 * (TRANSMIT_KEY.len() + digits) + b"}]".len() + b"}}".len()
    }

    /// Never: it always writes the closing brackets. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(self) -> bool {
        false
    }

    /// Writes it into `out` in one `write_all` (a gzip encoder or a socket is called once for
    /// it, not once per piece of its format).
    pub fn write_to<W: std::io::Write + ?Sized>(self, out: &mut W) -> std::io::Result<()> {
        // At most 2 × (17 + 20) + 4 = 78 bytes (`i64::MIN` has 20 characters).
        let mut buf = [0u8; 96];
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        std::io::Write::write_fmt(&mut cursor, format_args!("{self}"))?;
        let written = usize::try_from(cursor.position()).unwrap_or(0);
        out.write_all(buf.get(..written).unwrap_or_default())
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0;
        write!(f, ",\"transmit_time\":{ms}}}],\"transmit_time\":{ms}}}}}")
    }
}

/// The length of what [`stamp_transmit_time`] writes for `event` at `transmit_ms`, without
/// writing it: for a sink that must know a request's size before it builds it.
pub fn stamped_len(event: &[u8], transmit_ms: i64) -> usize {
    stamped_len_of(event, stampable(event), transmit_ms)
}

/// [`stamped_len`], `stampable` being what [`stampable`] says of `event` (see [`splice`]).
pub fn stamped_len_of(event: &[u8], stampable: bool, transmit_ms: i64) -> usize {
    match splice(event, stampable, transmit_ms) {
        (head, Some(stamp)) => head.len() + stamp.len(),
        (whole, None) => whole.len(),
    }
}

/// The stored event `sent` was made from by [`stamp_transmit_time`], or `None` if `sent` is not
/// a stamped event (it then went out as stored). Removes exactly the splice: stamping the result
/// again with the same time gives `sent` back. For a sink whose size limit the stamp would
/// push an event over.
pub fn strip_transmit_time(sent: &[u8]) -> Option<Vec<u8>> {
    fn trailing_number(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
        let digits = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
        (digits > 0).then(|| bytes.split_at(bytes.len() - digits))
    }
    let (rest, outer) = trailing_number(sent.strip_suffix(b"}}")?)?;
    let (rest, inner) = trailing_number(rest.strip_suffix(TRANSMIT_KEY)?.strip_suffix(b"}]")?)?;
    let head = rest.strip_suffix(TRANSMIT_KEY)?;
    let transmit_ms: i64 = std::str::from_utf8(inner).ok()?.parse().ok()?;
    if inner != outer {
        return None;
    }
    let mut stored = Vec::with_capacity(head.len() + STORED_TAIL.len());
    stored.extend_from_slice(head);
    stored.extend_from_slice(STORED_TAIL);
    let mut again = Vec::with_capacity(sent.len());
    stamp_transmit_time(&stored, transmit_ms, &mut again);
    (again == sent).then_some(stored)
}

/// Whether `event` ends as [`event::Event`] serializes it: `"logged_time":<digits>}]}}` closing the
/// logger [`event::Event`] writes, which comes after the event's `raw_data_size` (an older version's
/// event has `metadata` first, so its last `raw_data_size` comes after its logger; whatever
/// follows it there is `unmapped`, vendor values that may end in anything). Such an event takes
/// the stamp ([`stamp_transmit_time`]); any other goes out as stored.
pub fn stampable(event: &[u8]) -> bool {
    let Some(head) = event.strip_suffix(STORED_TAIL) else { return false };
    let digits = head.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || !head[..head.len() - digits].ends_with(b"\"logged_time\":") {
        return false;
    }
    // Searched from the end: for an event of this shape, only its `metadata` (and `unmapped`).
    // The last logger, searched from the end (vendor values in `unmapped` may hold its text);
    // `raw_data_size` is only asked whether it is there, which a forward search tells as well.
    let Some(logger) = LOGGER_FROM_END.rfind(event) else { return false };
    RAW_DATA_SIZE.find(&event[logger..]).is_none() && RAW_DATA_SIZE.find(&event[..logger]).is_some()
}

/// The searchers [`stampable`] uses (`memchr`'s), built once: a window compare was one `memcmp`
/// call per position, and searchers built per call, searching backwards over `unmapped` for
/// `raw_data_size`, cost about as much (3.8 % and 3.6 % of the agent's CPU end to end).
static LOGGER_FROM_END: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(LOGGER_START));
static RAW_DATA_SIZE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(RAW_DATA_SIZE_KEY));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uid_is_deterministic_and_separates_orgs() {
        let a = event_uid("aitronos", "ORG_A", "k1");
        assert_eq!(a, event_uid("aitronos", "ORG_A", "k1"));
        assert_ne!(a, event_uid("aitronos", "ORG_B", "k1"));
        assert_eq!(a.get_version_num(), 5);
        // Exactly uuid's own UUIDv5 of the joined name, whatever the parts hold.
        for (v, o, k) in [("aitronos", "ORG_A", "k1"), ("okta", "", "sha256:ab"), ("d", "Zoë \u{1f}", &"x".repeat(300))]
        {
            let name = format!("{v}\u{1f}{o}\u{1f}{k}");
            assert_eq!(event_uid(v, o, k), uuid::Uuid::new_v5(&uid_namespace(), name.as_bytes()), "{name}");
        }
    }

    /// A whole event as the pipeline stores it, from a small Aitronos record.
    fn stored(policy: &Policy, created_at: &str) -> Vec<u8> {
        let raw = format!(
            r#"{{"id":"r1","entity_type":"user","action_type":"deleted","actor_id":"usr_1","actor_name":"Ann Admin",
            "actor_email":"ann@example.com","target_id":"usr_2","target_name":"Bo","created_at":"{created_at}",
            "metadata":{{"ip_address":"198.51.100.7","user_agent":"curl/8.5"}}}}"#
        );
        let time = DateTime::parse_from_rfc3339(created_at).unwrap().to_utc();
        let ctx = Context {
            organization: "ORG_1",
            dedupe_key: "r1",
            time,
            raw: &raw,
            log_name: "aitronos-prod",
            processed_ms: time.timestamp_millis() + 5_000,
        };
        crate::vendors::map_record(crate::vendors::VendorId::Aitronos, &ctx, policy).unwrap()
    }

    #[test]
    fn test_a_sink_stamps_the_send_time_into_a_stored_event_and_nothing_else() {
        let body = stored(&Policy::default(), "2026-03-18T08:15:42Z");
        let mut sent = Vec::new();
        stamp_transmit_time(&body, 1_773_821_800_000, &mut sent);
        let event: Value = serde_json::from_slice(&sent).unwrap();
        schema_check::assert_valid(&event);
        let metadata = &event["metadata"];
        assert_eq!(metadata["transmit_time"], 1_773_821_800_000_i64);
        assert_eq!(metadata["loggers"][0]["transmit_time"], 1_773_821_800_000_i64);
        assert_eq!(metadata["loggers"][0]["logged_time"], metadata["processed_time"]);
        assert_eq!(
            (metadata["log_name"].as_str(), metadata["loggers"][0]["log_name"].as_str()),
            (Some("aitronos-prod"), Some("aitronos-prod"))
        );
        // Everything else is the stored event, byte for byte.
        let mut unstamped: Value = serde_json::from_slice(&sent).unwrap();
        unstamped["metadata"].as_object_mut().unwrap().remove("transmit_time");
        unstamped["metadata"]["loggers"][0].as_object_mut().unwrap().remove("transmit_time");
        assert_eq!(unstamped, serde_json::from_slice::<Value>(&body).unwrap());
        // A body of another shape (an older version's event, a test's) goes out unchanged.
        for other in [&br#"{"n":1}"#[..], br#"{"metadata":{"loggers":[{"name":"x"}]}}"#, b"", b"}]}}"] {
            let mut out = Vec::new();
            stamp_transmit_time(other, 1, &mut out);
            assert_eq!(out, other);
        }
    }

    /// `stamped_len` is what the splice writes, for every time's width and sign, for a
    /// stampable event and for bodies that go out unchanged.
    #[test]
    fn test_stamped_len_is_the_length_the_stamp_writes() {
        let body = stored(&Policy::default(), "2026-03-18T08:15:42Z");
        let old = br#"{"class_uid":6003,"metadata":{"version":"1.8.0","uid":"u","loggers":[{"name":"auditrelay"}]},"raw_data":"{}","raw_data_size":2,"unmapped":{"payload":[{"logged_time":1}]}}"#;
        for event in [&body[..], &old[..], br#"{"n":1}"#, b"", b"}]}}"] {
            for ms in [0, 1, 9, 10, 99, 100, 1_773_821_800_000, -1, -10, i64::MAX, i64::MIN] {
                let mut out = Vec::new();
                stamp_transmit_time(event, ms, &mut out);
                assert_eq!(stamped_len(event, ms), out.len(), "{ms} {}", String::from_utf8_lossy(event));
            }
        }
    }

    /// Issue 21: `write_stamped` writes into any writer exactly what `stamp_transmit_time`
    /// writes into a `Vec` (one that takes a byte at a time too), and passes a writer's error
    /// on; `splice` and `stamped_len_of` with `stampable`'s answer say the same, and a wrong
    /// "stampable" for an event not ending as ours is not believed.
    #[test]
    fn test_write_stamped_writes_what_stamp_transmit_time_writes() {
        /// Takes one byte per write, as a slow socket might.
        struct Trickle(Vec<u8>);
        impl std::io::Write for Trickle {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.extend(buf.first());
                Ok(buf.len().min(1))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        /// Fails after `.0` bytes.
        struct Full(usize);
        impl std::io::Write for Full {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                match self.0 {
                    0 => Err(std::io::Error::other("disk full")),
                    n => {
                        let took = n.min(buf.len());
                        self.0 -= took;
                        Ok(took)
                    }
                }
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let body = stored(&Policy::default(), "2026-03-18T08:15:42Z");
        let old = br#"{"class_uid":6003,"metadata":{"version":"1.8.0","uid":"u","loggers":[{"name":"auditrelay"}]},"raw_data":"{}","raw_data_size":2,"unmapped":{"payload":[{"logged_time":1}]}}"#;
        for event in [&body[..], &old[..], br#"{"n":1}"#, b"", b"}]}}", "ünï\u{1f600}".as_bytes()] {
            for ms in [0, 7, 1_773_821_800_000, -42, i64::MAX, i64::MIN] {
                let mut want = Vec::new();
                stamp_transmit_time(event, ms, &mut want);
                let mut vec = b"kept".to_vec();
                write_stamped(event, ms, &mut vec).unwrap();
                assert_eq!(&vec[..4], b"kept");
                assert_eq!(&vec[4..], &want[..], "{ms}");
                let mut trickle = Trickle(Vec::new());
                write_stamped(event, ms, &mut trickle).unwrap();
                assert_eq!(trickle.0, want);
                let (head, stamp) = splice(event, stampable(event), ms);
                assert_eq!([head, stamp.map(|s| s.to_string()).unwrap_or_default().as_bytes()].concat(), want);
                assert_eq!(stamp.map_or(0, Stamp::len) + head.len(), want.len());
                assert_eq!(stamped_len_of(event, stampable(event), ms), want.len());
                if !stampable(event) && !event.ends_with(STORED_TAIL) {
                    assert_eq!(splice(event, true, ms), (event, None), "not believed");
                }
                if want.len() > 1 {
                    let e = write_stamped(event, ms, &mut Full(want.len() - 1)).unwrap_err();
                    assert_eq!(e.to_string(), "disk full");
                }
            }
        }
    }

    /// Adversarial review of issue 17: an event queued by the previous version (metadata first,
    /// `unmapped` last, vendor values kept as raw JSON there) whose last unmapped field is an
    /// array of objects ending in a numeric `logged_time` ends exactly like a stampable event:
    /// the splice writes `transmit_time` into the vendor's data. The docs promise such an event
    /// goes out unchanged.
    #[test]
    fn test_an_older_versions_event_is_never_spliced() {
        let old = br#"{"class_uid":6003,"metadata":{"version":"1.8.0","uid":"u","loggers":[{"name":"auditrelay"}]},"raw_data":"{}","raw_data_size":2,"unmapped":{"payload":[{"logged_time":1}]}}"#;
        let mut out = Vec::new();
        stamp_transmit_time(old, 1_773_821_800_000, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(old.to_vec()).unwrap());
    }

    #[test]
    fn test_stripping_the_send_time_gives_back_exactly_the_stored_event() {
        let body = stored(&Policy::default(), "2026-03-18T08:15:42Z");
        let mut sent = Vec::new();
        stamp_transmit_time(&body, 1_773_821_800_000, &mut sent);
        assert_eq!(strip_transmit_time(&sent).as_deref(), Some(&body[..]));
        // Only a stamp as the splice writes it: not a stored event, not one stamped twice over,
        // not two different times, not an older version's event that happens to end alike.
        let old = br#"{"metadata":{"loggers":[{"name":"auditrelay"}]},"raw_data_size":2,"unmapped":{"p":[{"logged_time":1,"transmit_time":5}],"transmit_time":5}}"#;
        let other_times = String::from_utf8(sent.clone()).unwrap().replacen("1773821800000", "1773821800001", 1);
        for not_stamped in
            [&body[..], old, other_times.as_bytes(), b"", b"}}", b",\"transmit_time\":1}],\"transmit_time\":1}}"]
        {
            assert_eq!(strip_transmit_time(not_stamped), None, "{}", String::from_utf8_lossy(not_stamped));
        }
    }

    #[test]
    fn test_raw_data_is_kept_hashed_or_left_out_as_configured() {
        let full: Value = serde_json::from_slice(&stored(&Policy::default(), "2026-03-18T08:15:42Z")).unwrap();
        let raw = full["raw_data"].as_str().unwrap().to_owned();
        let size = full["raw_data_size"].clone();
        assert_eq!(size, raw.len());
        let hashed = Policy { raw_data: RawData::Hash, ..Policy::default() };
        let hashed: Value = serde_json::from_slice(&stored(&hashed, "2026-03-18T08:15:42Z")).unwrap();
        schema_check::assert_valid(&hashed);
        assert!(hashed.get("raw_data").is_none());
        use sha2::Digest as _;
        let want: String = sha2::Sha256::digest(raw.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hashed["raw_data_hash"],
            serde_json::json!({"algorithm_id": 3, "algorithm": "SHA-256", "value": want})
        );
        assert_eq!(hashed["raw_data_size"], size);
        let off: Value = serde_json::from_slice(&stored(
            &Policy { raw_data: RawData::Off, ..Policy::default() },
            "2026-03-18T08:15:42Z",
        ))
        .unwrap();
        schema_check::assert_valid(&off);
        assert!(off.get("raw_data").is_none() && off.get("raw_data_hash").is_none());
        assert_eq!(off["raw_data_size"], size);
    }

    #[test]
    fn test_timezone_offset_is_the_vendor_timestamps_own() {
        let offset = |t: &str| -> Value {
            serde_json::from_slice::<Value>(&stored(&Policy::default(), t)).unwrap()["timezone_offset"].clone()
        };
        assert_eq!(offset("2026-03-18T08:15:42Z"), 0);
        assert_eq!(offset("2026-03-18T10:15:42+02:00"), 120);
        assert_eq!(offset("2026-03-18T02:45:42-05:30"), -330);
    }

    #[test]
    fn test_observables_name_each_ip_user_and_agent() {
        let event: Value = serde_json::from_slice(&stored(&Policy::default(), "2026-03-18T08:15:42Z")).unwrap();
        schema_check::assert_observables(&event);
        let values: Vec<(&str, u64)> = event["observables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["value"].as_str().unwrap(), o["type_id"].as_u64().unwrap()))
            .collect();
        for want in [("198.51.100.7", 2), ("curl/8.5", 16), ("ann@example.com", 5), ("usr_1", 31), ("usr_2", 31)] {
            assert!(values.contains(&want), "{want:?} in {values:?}");
        }
    }

    #[test]
    fn test_the_same_kind_of_action_has_the_same_severity_and_admins_are_told_apart() {
        assert_eq!(Signal::MfaDisabled.severity(), Signal::AdminGranted.severity());
        assert!(Signal::AdminGranted.severity() > Signal::PrivilegeGranted.severity());
        assert!(Signal::PrivilegeGranted.severity() > Signal::PrivilegeRevoked.severity());
        assert!(Signal::CredentialCreated.severity() > Signal::CredentialDeleted.severity());
        for admin in ["Org Admin", "ORGANIZATION_OWNER", "workspace-admin", "Superuser"] {
            assert!(is_admin_privilege(admin), "{admin}");
        }
        for plain in ["Member", "read", "Billing Viewer", "knowledge.write"] {
            assert!(!is_admin_privilege(plain), "{plain}");
        }
    }

    /// Found by the demo test: ConfigCat's `where` named the organization its `actionTarget`
    /// (placed as the entity's name) already named, and stayed in `unmapped`.
    #[test]
    fn test_a_field_repeating_a_placed_fields_value_is_not_unmapped() {
        let record: Map<String, Value> = serde_json::from_str(
            r#"{"kind":"x","actionTarget":"Example Org","where":"Example Org","other":"Example Org 2","truncated":false,"flag":false}"#,
        )
        .unwrap();
        let mut f = Fields::new(&record, "kind");
        f.take("actionTarget");
        f.place("truncated");
        let unmapped = f.unmapped();
        let keys: Vec<&str> = unmapped.keys().map(String::as_str).collect();
        assert_eq!(keys, ["flag", "other"], "{unmapped:?}");
    }

    /// A forwarded-for list keeps every address: the first as `ip`, the others as
    /// `intermediate_ips`, each an observable (adversarial review F9: the others were dropped,
    /// and with `raw_data = "hash"` gone for good).
    #[test]
    fn test_a_forwarded_for_list_keeps_every_address() {
        let e = endpoint(" 203.0.113.9, 10.0.0.1 ,not-an-ip, 2001:db8::1");
        assert_eq!(e.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(e.intermediate_ips, Some(vec!["10.0.0.1".to_owned(), "2001:db8::1".to_owned()]));
        assert_eq!(endpoint("198.51.100.7").intermediate_ips, None);
        assert_eq!(endpoint("gateway").name.as_deref(), Some("gateway"));
    }

    #[test]
    fn test_email_and_ip_follow_the_ocsf_patterns() {
        let e = |v: &str| email(Some(v.to_owned()));
        assert!(e("lena.fischer@example.ch").is_some() && e("a+b@x-y.example.com").is_some());
        for bad in ["no-at.example.com", "a@b", "a@.b", "a b@example.com", "@example.com", "a@b@example.com"] {
            assert_eq!(e(bad), None, "{bad}");
        }
        assert_eq!(ip(Some(" 198.51.100.61 ".into())).as_deref(), Some("198.51.100.61"));
        assert_eq!(ip(Some("2001:db8::1".into())).as_deref(), Some("2001:db8::1"));
        assert_eq!(ip(Some("10.0.0.999".into())), None);
    }
}
