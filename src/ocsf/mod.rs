//! Turning a vendor record into the event the queue stores. Pure: no I/O, no clock.
//!
//! Until the OCSF issue lands, the event is a plain **envelope** around the raw record (not yet
//! OCSF): `{"envelope":"auditrelay/1","uid",...,"raw":{...}}`. What is already final is the
//! deterministic `uid` (UUIDv5 over vendor, organization and dedupe key, DESIGN invariant 3), so
//! a SIEM can drop the rare duplicate after a crash mid-send.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

/// Namespace for event uids: UUIDv5(NAMESPACE_URL, "https://auditrelay.dev/event").
fn uid_namespace() -> uuid::Uuid {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"https://auditrelay.dev/event")
}

/// The deterministic id of one vendor record: the same record always gets the same uid.
pub fn event_uid(vendor: &str, organization: &str, dedupe_key: &str) -> uuid::Uuid {
    let name = format!("{vendor}\u{1f}{organization}\u{1f}{dedupe_key}");
    uuid::Uuid::new_v5(&uid_namespace(), name.as_bytes())
}

/// What the mapping needs to know about one record.
pub struct RecordRef<'a> {
    pub vendor: &'a str,
    pub organization: &'a str,
    pub source: &'a str,
    pub dedupe_key: &'a str,
    pub time: DateTime<Utc>,
    pub raw: &'a RawValue,
    /// The vendor cut the record for size; the envelope says so.
    pub truncated: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    envelope: &'static str,
    uid: String,
    vendor: &'a str,
    organization: &'a str,
    source: &'a str,
    dedupe_key: &'a str,
    time: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
    raw: &'a RawValue,
}

/// Serializes the stored event for one record (the placeholder envelope, see module doc).
pub fn map_record(r: &RecordRef<'_>) -> Vec<u8> {
    let env = Envelope {
        envelope: "auditrelay/1",
        uid: event_uid(r.vendor, r.organization, r.dedupe_key).to_string(),
        vendor: r.vendor,
        organization: r.organization,
        source: r.source,
        dedupe_key: r.dedupe_key,
        time: r.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        truncated: r.truncated,
        raw: r.raw,
    };
    // Serializing strings and an already-valid RawValue cannot fail.
    serde_json::to_vec(&env).unwrap_or_default()
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
    fn test_envelope_keeps_raw_record_verbatim() {
        let raw = RawValue::from_string(r#"{"id":"x","n":1.50}"#.to_owned()).unwrap();
        let time = DateTime::parse_from_rfc3339("2026-03-18T08:15:42.118Z").unwrap().with_timezone(&Utc);
        let out = map_record(&RecordRef {
            vendor: "aitronos",
            organization: "ORG_A",
            source: "s",
            dedupe_key: "x",
            time,
            raw: &raw,
            truncated: false,
        });
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""raw":{"id":"x","n":1.50}"#), "{text}");
        assert!(text.contains(r#""time":"2026-03-18T08:15:42.118000Z""#), "{text}");
    }
}
