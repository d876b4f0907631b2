//! The few attributes of a serialized OCSF event that sinks put in their protocol's envelope
//! (syslog PRI and MSGID, HEC `time` and indexed fields, OTLP severity and attributes), read
//! back from the queued bytes.
//!
//! Sinks only ever see the queued body, so this reads it rather than keeping a second copy of
//! these values in the queue. Only these attributes are deserialized; the rest of the event is
//! skipped. A body that is not a JSON object, or has one of these attributes with the wrong type,
//! is an error: bodies are written by our own mappers, so that is a bug to surface, not vendor
//! data to tolerate.

use std::borrow::Cow;

use serde::Deserialize;

/// The longest [`vendor_slug`]: room for any vendor's name, short enough for the names it is put
/// in (an Elasticsearch data stream's 255 bytes, a Splunk sourcetype).
pub const MAX_VENDOR_SLUG: usize = 40;

/// A vendor name as the sinks put it in names (the HEC sourcetype's and the Elasticsearch
/// dataset's `{vendor}`): lower case, `[a-z0-9_]` only (anything else `_`), at most
/// [`MAX_VENDOR_SLUG`] bytes, `unknown` for none or a blank one. One function, so that a vendor's
/// sourcetype and data stream always agree.
pub fn vendor_slug(vendor: Option<&str>) -> String {
    let vendor = vendor.filter(|v| !v.trim().is_empty()).unwrap_or("unknown");
    let mut out: String = vendor
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    out.truncate(MAX_VENDOR_SLUG);
    out
}

/// The envelope-relevant attributes of one event; every one may be absent.
#[derive(Debug, Default, Deserialize)]
pub struct Summary<'a> {
    /// OCSF `timestamp_t`: milliseconds since the epoch.
    pub time: Option<i64>,
    pub severity_id: Option<u64>,
    pub class_uid: Option<u64>,
    #[serde(borrow)]
    pub class_name: Option<Cow<'a, str>>,
    pub category_uid: Option<u64>,
    pub activity_id: Option<u64>,
    #[serde(borrow)]
    pub metadata: Option<Metadata<'a>>,
}

// `Cow`, not `&str`: a JSON string with escapes cannot be borrowed from the body.
#[derive(Debug, Default, Deserialize)]
pub struct Metadata<'a> {
    #[serde(borrow)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub tenant_uid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub event_code: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub product: Option<Product<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Product<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub vendor_name: Option<Cow<'a, str>>,
}

/// One attribute's value, as the event has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'s> {
    Int(u64),
    Text(&'s str),
}

impl std::fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// Reads the summary of a queued event body.
pub fn summarize(body: &[u8]) -> Result<Summary<'_>, String> {
    // A derived struct also deserializes from a JSON array; an event is always an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

impl Summary<'_> {
    pub fn uid(&self) -> Option<&str> {
        self.metadata.as_ref()?.uid.as_deref()
    }

    pub fn tenant(&self) -> Option<&str> {
        self.metadata.as_ref()?.tenant_uid.as_deref()
    }

    pub fn vendor(&self) -> Option<&str> {
        self.metadata.as_ref()?.product.as_ref()?.vendor_name.as_deref()
    }

    /// [`vendor_slug`] of this event's vendor.
    pub fn vendor_slug(&self) -> String {
        vendor_slug(self.vendor())
    }

    pub fn product(&self) -> Option<&str> {
        self.metadata.as_ref()?.product.as_ref()?.name.as_deref()
    }

    pub fn event_code(&self) -> Option<&str> {
        self.metadata.as_ref()?.event_code.as_deref()
    }

    /// The value of `field`, if the event has it.
    pub fn field(&self, field: EventField) -> Option<Value<'_>> {
        match field {
            EventField::ClassUid => self.class_uid.map(Value::Int),
            EventField::ClassName => self.class_name.as_deref().map(Value::Text),
            EventField::CategoryUid => self.category_uid.map(Value::Int),
            EventField::ActivityId => self.activity_id.map(Value::Int),
            EventField::SeverityId => self.severity_id.map(Value::Int),
            EventField::Vendor => self.vendor().map(Value::Text),
            EventField::Product => self.product().map(Value::Text),
            EventField::Tenant => self.tenant().map(Value::Text),
            EventField::EventCode => self.event_code().map(Value::Text),
        }
    }
}

/// An attribute of the OCSF event a sink can copy out of it (HEC indexed fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    ClassUid,
    ClassName,
    CategoryUid,
    ActivityId,
    SeverityId,
    /// `metadata.product.vendor_name`.
    Vendor,
    /// `metadata.product.name`.
    Product,
    /// `metadata.tenant_uid`.
    Tenant,
    /// `metadata.event_code`.
    EventCode,
}

impl EventField {
    /// The name used in the configuration and as the HEC field name.
    pub fn name(self) -> &'static str {
        match self {
            EventField::ClassUid => "class_uid",
            EventField::ClassName => "class_name",
            EventField::CategoryUid => "category_uid",
            EventField::ActivityId => "activity_id",
            EventField::SeverityId => "severity_id",
            EventField::Vendor => "vendor",
            EventField::Product => "product",
            EventField::Tenant => "tenant",
            EventField::EventCode => "event_code",
        }
    }

    pub const ALL: [EventField; 9] = [
        EventField::ClassUid,
        EventField::ClassName,
        EventField::CategoryUid,
        EventField::ActivityId,
        EventField::SeverityId,
        EventField::Vendor,
        EventField::Product,
        EventField::Tenant,
        EventField::EventCode,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vendor_slug_is_lower_case_safe_bounded_and_never_empty() {
        assert_eq!(vendor_slug(Some("ConfigCat")), "configcat");
        assert_eq!(vendor_slug(Some("ACME Corp (EU)")), "acme_corp__eu_");
        assert_eq!(vendor_slug(Some("Zürich-1")), "z_rich_1");
        assert_eq!(vendor_slug(None), "unknown");
        assert_eq!(vendor_slug(Some("  ")), "unknown");
        assert_eq!(vendor_slug(Some(&"x".repeat(500))).len(), MAX_VENDOR_SLUG);
    }

    #[test]
    fn reads_the_envelope_attributes_and_nothing_else() {
        let body = br#"{"class_uid":6003,"class_name":"API \"Activity\"","category_uid":6,"activity_id":2,
            "severity_id":3,"time":1795292810597,"unmapped":{"deep":[1,2,{"x":null}]},
            "metadata":{"uid":"u-1","tenant_uid":"org","event_code":"user.login",
                        "product":{"name":"Astro","vendor_name":"Astronomer"}}}"#;
        let s = summarize(body).unwrap();
        assert_eq!(
            (s.time, s.severity_id, s.class_uid, s.activity_id),
            (Some(1_795_292_810_597), Some(3), Some(6003), Some(2))
        );
        assert_eq!(s.field(EventField::ClassName), Some(Value::Text("API \"Activity\"")));
        let texts: Vec<String> = [EventField::Vendor, EventField::Product, EventField::Tenant, EventField::EventCode]
            .into_iter()
            .map(|f| s.field(f).map(|v| v.to_string()).unwrap_or_default())
            .collect();
        assert_eq!(texts, ["Astronomer", "Astro", "org", "user.login"]);
        assert_eq!((s.uid(), s.field(EventField::CategoryUid)), (Some("u-1"), Some(Value::Int(6))));
    }

    #[test]
    fn missing_attributes_are_none_and_non_events_are_errors() {
        let s = summarize(b"{}").unwrap();
        assert!(EventField::ALL.iter().all(|f| s.field(*f).is_none()));
        assert!(summarize(b"[1,2]").is_err());
        assert!(summarize(b"not json").is_err());
        assert!(summarize(br#"{"time":"yesterday"}"#).is_err());
    }
}
