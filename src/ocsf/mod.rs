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

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use event::{Event, EventParts, Logger, Metadata, OCSF_VERSION, Product, Severity, Status};

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
}

impl Context<'_> {
    /// Event time in epoch milliseconds (OCSF `time`).
    pub fn time_ms(&self) -> i64 {
        self.time.timestamp_millis()
    }

    /// The metadata every event carries: version, product, the deterministic `uid`, tenant
    /// and the agent as logger. The vendor mapping adds its codes (`event_code`,
    /// `original_event_uid`, `original_time`, `correlation_uid`, `labels`).
    pub fn metadata(&self, vendor: &str, product: &str, vendor_name: &str, log_provider: &str) -> Metadata {
        Metadata {
            version: OCSF_VERSION,
            product: Product { name: product.into(), vendor_name: vendor_name.into(), version: None },
            uid: event_uid(vendor, self.organization, self.dedupe_key).to_string(),
            original_event_uid: None,
            correlation_uid: None,
            event_code: None,
            original_time: None,
            tenant_uid: Some(self.organization.to_owned()).filter(|o| !o.is_empty()),
            log_provider: Some(log_provider.to_owned()),
            labels: None,
            loggers: vec![Logger::auditrelay()],
        }
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
    value.and_then(|v| v.trim().parse::<std::net::IpAddr>().ok()).map(|a| a.to_string())
}

/// `src_endpoint` from a record's client-address field: the first valid address (a proxy may
/// list several); a value that is no address is kept as the endpoint's `name`, not dropped.
pub fn src_endpoint(record: &Map<String, Value>, key: &str) -> Option<event::NetworkEndpoint> {
    let raw = text(record, key)?;
    let endpoint = match raw.split(',').find_map(|part| ip(Some(part.to_owned()))) {
        Some(addr) => event::NetworkEndpoint { ip: Some(addr), ..Default::default() },
        None => event::NetworkEndpoint { name: Some(raw.trim().to_owned()), ..Default::default() },
    };
    Some(endpoint)
}

/// An HTTP method as OCSF's `http_request.http_method` enum spells it (upper case, one of the
/// nine methods), else `None`.
pub fn http_method(value: Option<String>) -> Option<String> {
    const METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];
    value.map(|m| m.trim().to_ascii_uppercase()).filter(|m| METHODS.contains(&m.as_str()))
}

/// `status` from a vendor's word (MAPPING.md §2.6).
pub fn status_from_word(word: &str) -> Status {
    match word.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "ok" => Status::Success,
        "failure" | "failed" | "fail" | "error" | "denied" => Status::Failure,
        _ => Status::Other(word.to_owned()),
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
/// to `unmapped` under its vendor name (Aitronos, ConfigCat, whose records are flat).
pub struct Fields<'a> {
    pub(crate) record: &'a Map<String, Value>,
    pub(crate) placed: Vec<&'static str>,
    /// Fields kept in `unmapped` even when also placed (the vendor's own vocabulary).
    pub(crate) always_unmapped: &'static [&'static str],
}

impl<'a> Fields<'a> {
    /// `action` is the field that chose the mapping: placed from the start.
    pub fn new(record: &'a Map<String, Value>, always_unmapped: &'static [&'static str], action: &'static str) -> Self {
        Fields { record, placed: vec![action], always_unmapped }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        text(self.record, key)
    }

    /// The field's text, now placed (it leaves `unmapped`).
    pub fn take(&mut self, key: &'static str) -> Option<String> {
        let value = self.get(key);
        if value.is_some() && !self.always_unmapped.contains(&key) {
            self.placed.push(key);
        }
        value
    }

    /// A stringified value (e.g. `previous_value`/`new_value`), as JSON when it holds an object
    /// or array, else as the string; placed.
    pub fn take_value(&mut self, key: &'static str) -> Option<Value> {
        self.take(key).map(|s| {
            if s.trim_start().starts_with(['{', '[']) {
                serde_json::from_str(&s).unwrap_or(Value::String(s))
            } else {
                Value::String(s)
            }
        })
    }

    /// A stringified value that is a plain word or name, not JSON; not placed.
    pub fn plain(&self, key: &str) -> Option<String> {
        self.get(key).filter(|s| !s.trim_start().starts_with(['{', '[']))
    }

    /// Every field not placed, under its own name, without nulls.
    pub fn unmapped(&self) -> Map<String, Value> {
        let rest: Vec<&str> = self.record.keys().map(String::as_str).filter(|k| !self.placed.contains(k)).collect();
        unmapped(self.record, &rest)
    }
}

/// The listed fields of a record, under their vendor names (OCSF `unmapped`), without nulls
/// at any depth: events never carry `null`, and `raw_data` keeps the record as sent.
pub fn unmapped(record: &Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    fn strip(value: Value) -> Option<Value> {
        match value {
            Value::Null => None,
            Value::Array(items) => Some(Value::Array(items.into_iter().filter_map(strip).collect())),
            Value::Object(map) => {
                Some(Value::Object(map.into_iter().filter_map(|(k, v)| Some((k, strip(v)?))).collect()))
            }
            other => Some(other),
        }
    }
    keys.iter().filter_map(|k| Some(((*k).to_owned(), strip(record.get(*k)?.clone())?))).collect()
}

/// Namespace for event uids: UUIDv5(NAMESPACE_URL, "https://auditrelay.dev/event").
fn uid_namespace() -> uuid::Uuid {
    // Derived once (a SHA-1), not for every event.
    static NAMESPACE: std::sync::LazyLock<uuid::Uuid> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"https://auditrelay.dev/event"));
    *NAMESPACE
}

/// The deterministic id of one vendor record: the same record always gets the same uid.
pub fn event_uid(vendor: &str, organization: &str, dedupe_key: &str) -> uuid::Uuid {
    let name = format!("{vendor}\u{1f}{organization}\u{1f}{dedupe_key}");
    uuid::Uuid::new_v5(&uid_namespace(), name.as_bytes())
}

/// `[severity]`: the severity of events by `"<vendor>:<event code>"` (the event's
/// `metadata.event_code`), overriding the mapping's default (MAPPING.md's suggested raised
/// severities: MFA disabled, SSO/SAML, API keys, admin grants, support-user access).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeverityPolicy {
    overrides: HashMap<(String, String), Severity>,
}

impl SeverityPolicy {
    /// The configured severity for this vendor's event code, if any.
    pub fn get(&self, vendor: &str, event_code: &str) -> Option<Severity> {
        if self.overrides.is_empty() {
            return None; // the common case, without building a key for every event
        }
        self.overrides.get(&(vendor.to_owned(), event_code.to_owned())).copied()
    }

    pub fn from_overrides(overrides: HashMap<(String, String), Severity>) -> SeverityPolicy {
        SeverityPolicy { overrides }
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
    severity: &SeverityPolicy,
) -> Result<Vec<u8>, Unmappable> {
    let record: Map<String, Value> =
        serde_json::from_str(ctx.raw).map_err(|e| Unmappable(format!("record is not a JSON object ({e})")))?;
    let mut parts = map(&record, ctx)?;
    if let Some(level) = parts.metadata.event_code.as_deref().and_then(|code| severity.get(vendor, code)) {
        parts.severity = level;
    }
    serde_json::to_vec(&Event::new(parts)).map_err(|e| Unmappable(format!("cannot serialize the event ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uid_is_deterministic_and_separates_orgs() {
        let a = event_uid("aitronos", "ORG_A", "k1");
        assert_eq!(a, event_uid("aitronos", "ORG_A", "k1"));
        assert_ne!(a, event_uid("aitronos", "ORG_B", "k1"));
        assert_eq!(a.get_version_num(), 5);
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
