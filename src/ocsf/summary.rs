//! The few attributes of a serialized OCSF event that sinks put in their protocol's envelope
//! (syslog PRI and MSGID, HEC `time` and indexed fields, OTLP severity and attributes), read
//! back from the queued bytes.
//!
//! Sinks only ever see the queued body, so this reads it rather than keeping a second copy of
//! these values in the queue. Only these attributes are read: an event of the writer's shape
//! from its head and its `metadata` ([`summarize_shaped`]), anything else by parsing it whole
//! and skipping the rest ([`summarize_parsed`]). A body whose head or `metadata` is not JSON,
//! that is not a JSON object, or has one of these attributes with the wrong type, is an error:
//! bodies are written by our own mappers, so that is a bug to surface, not vendor data to
//! tolerate. The members between are not read, so a body damaged only there (a byte flipped on
//! disk) is no longer refused here: it goes to the receivers as it is (review 21g).

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
///
/// An event as [`super::write::event`] writes it is read where its attributes are: its head
/// (the members up to `time`, in the writer's order) and its last member, `metadata`
/// ([`summarize_shaped`]); the kilobytes between (`raw_data` above all, a record escaped into a string,
/// which a parser must walk an escape at a time) are not read. Anything else (an event stored
/// by an older version, a body that is not an event) is parsed whole, as before.
pub fn summarize(body: &[u8]) -> Result<Summary<'_>, String> {
    match summarize_shaped(body) {
        Some(summary) => Ok(summary),
        None => summarize_parsed(body),
    }
}

/// [`summarize`] by parsing the whole body: every member is walked, the summary's read.
pub fn summarize_parsed(body: &[u8]) -> Result<Summary<'_>, String> {
    // A derived struct also deserializes from a JSON array; an event is always an object.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

/// The key that opens `metadata`, the last member of an event the writer made.
const METADATA_KEY: &[u8] = b",\"metadata\":{";

/// Where the last [`METADATA_KEY`] of `body` starts, if it is in the body's last
/// [`METADATA_REACH`] bytes (`None` otherwise: the caller parses the body whole). Each key ends
/// with a `{`, so the last [`BRACES_LOOKED_AT`] `{`s are found from the end (`memrchr`:
/// `metadata` has four of its own) and the key looked for before each; a reverse substring
/// search read every byte back to the key, and cost as much as the rest of the summary. Past
/// them, that search over the rest of the reach. Vendor text in `metadata` can hold any number
/// of braces (review 21g: an `event_code` of 1 MiB of them, searched for one brace at a time,
/// cost 13 times the whole parse); the reach bounds what is searched before giving up.
fn last_metadata_key(body: &[u8]) -> Option<usize> {
    let reach = body.len().saturating_sub(METADATA_REACH);
    let mut rest = body.len();
    for brace in memchr::memrchr_iter(b'{', &body[reach..]).take(BRACES_LOOKED_AT) {
        let brace = reach + brace;
        // Within the reach, as the search below: a key across its start is not found either.
        if body[reach..=brace].ends_with(METADATA_KEY) {
            return Some(brace + 1 - METADATA_KEY.len());
        }
        rest = brace;
    }
    METADATA_FROM_END.rfind(&body[reach..rest]).map(|at| reach + at)
}

/// How many `{` [`last_metadata_key`] looks at before it searches for the key instead.
const BRACES_LOOKED_AT: usize = 16;

/// How far from an event's end [`last_metadata_key`] looks for its `metadata` key: 13 times
/// the largest `metadata` the shipped vendors write (about 600 bytes; more with long labels or
/// vendor codes).
const METADATA_REACH: usize = 8 << 10;

/// Searches an event from its end for [`METADATA_KEY`] (`memchr`'s searcher, built once).
static METADATA_FROM_END: std::sync::LazyLock<memchr::memmem::FinderRev<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::FinderRev::new(METADATA_KEY));

/// The summary of an event of the writer's shape, read from its head and its `metadata` alone;
/// `None` when the body is not of that shape or anything read is not exactly what the writer
/// writes (the caller then parses it whole, [`summarize_parsed`]).
///
/// The same summary as [`summarize_parsed`] for every body that is JSON with each summary
/// attribute once (the tests below, `tests/it/mapping_bytes.rs` for every vendor's events, and
/// `tests/it/review21g.rs`): the head is walked member by member in the writer's order, each
/// value read as serde_json reads it or refused (a kept string with an escape, a number with a
/// fraction or a leading zero: left to the parser); `metadata` is the member that ends the
/// event, walked the same way ([`walk_metadata`]) or parsed alone. The last `,"metadata":{` is a
/// key (a `"` inside a string is escaped, so `,"` is never in one), and the object it opens
/// must end exactly at the event's closing brace: one nested deeper would leave its parents'
/// braces after it. Bodies the writer never writes may read otherwise, where the parser
/// refused them: one whose skipped middle is not JSON (a byte flipped on disk: it goes to the
/// receivers as it is), and one with a summary attribute twice (the head's, or the last
/// `metadata`, is read).
pub fn summarize_shaped(body: &[u8]) -> Option<Summary<'_>> {
    let mut head = Head { body, at: 0 };
    head.key(b"{\"class_uid\":")?;
    let class_uid = head.unsigned()?;
    head.key(b",\"class_name\":")?;
    let class_name = head.string()?;
    head.key(b",\"category_uid\":")?;
    let category_uid = head.unsigned()?;
    head.key(b",\"category_name\":")?;
    head.skip_string()?;
    head.key(b",\"activity_id\":")?;
    let activity_id = head.unsigned()?;
    head.key(b",\"activity_name\":")?;
    head.skip_string()?;
    head.key(b",\"type_uid\":")?;
    head.unsigned()?;
    head.key(b",\"type_name\":")?;
    head.skip_string()?;
    head.key(b",\"severity_id\":")?;
    let severity_id = head.unsigned()?;
    head.key(b",\"severity\":")?;
    head.skip_string()?;
    head.key(b",\"time\":")?;
    let time = head.signed()?;
    // Another member follows (the writer always writes `metadata` after `time`).
    if body.get(head.at) != Some(&b',') {
        return None;
    }
    let key = last_metadata_key(body)?;
    if key < head.at {
        return None;
    }
    let object = body.get(key + METADATA_KEY.len() - 1..body.len().checked_sub(1)?)?;
    if body.last() != Some(&b'}') {
        return None;
    }
    let metadata = match walk_metadata(object) {
        Some(metadata) => metadata,
        None => serde_json::from_slice(object).ok()?,
    };
    Some(Summary {
        time: Some(time),
        severity_id: Some(severity_id),
        class_uid: Some(class_uid),
        class_name: Some(Cow::Borrowed(class_name)),
        category_uid: Some(category_uid),
        activity_id: Some(activity_id),
        metadata: Some(metadata),
    })
}

/// `metadata` as the writer writes it (`event::Metadata`'s members in their order, the optional
/// ones where they are; a sink's stamp adds `transmit_time` to it and its last logger),
/// `object` being exactly the object; `None` for anything else, or a value kept that has an
/// escape (the parser reads those). The whole object is walked, not only up to the members
/// kept: what is read is what the parser would read only if no member comes again later.
fn walk_metadata(object: &[u8]) -> Option<Metadata<'_>> {
    let mut m = Head { body: object, at: 0 };
    m.key(b"{\"version\":")?;
    m.skip_string()?;
    m.key(b",\"product\":")?;
    let (name, vendor_name) = m.product()?;
    m.key(b",\"uid\":")?;
    let uid = m.string()?;
    m.skip_optional(b",\"original_event_uid\":")?;
    m.skip_optional(b",\"correlation_uid\":")?;
    let event_code = m.optional_string(b",\"event_code\":")?;
    m.skip_optional(b",\"original_time\":")?;
    let tenant_uid = m.optional_string(b",\"tenant_uid\":")?;
    m.skip_optional(b",\"log_provider\":")?;
    if m.key(b",\"labels\":[").is_some() && m.key(b"]").is_none() {
        m.skip_string()?;
        while m.key(b",").is_some() {
            m.skip_string()?;
        }
        m.key(b"]")?;
    }
    m.skip_optional(b",\"log_name\":")?;
    if m.key(b",\"processed_time\":").is_some() {
        m.signed()?;
    }
    m.key(b",\"loggers\":[")?;
    if m.key(b"]").is_none() {
        m.logger()?;
        while m.key(b",").is_some() {
            m.logger()?;
        }
        m.key(b"]")?;
    }
    if m.key(b",\"transmit_time\":").is_some() {
        m.signed()?;
    }
    m.key(b"}")?;
    if m.at != object.len() {
        return None;
    }
    fn text(s: &str) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(s))
    }
    Some(Metadata {
        uid: text(uid),
        tenant_uid: tenant_uid.and_then(text),
        event_code: event_code.and_then(text),
        product: Some(Product { name: text(name), vendor_name: text(vendor_name) }),
    })
}

/// A walk over an event's head: each step reads exactly what the writer writes there, or is
/// `None`.
struct Head<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Head<'a> {
    /// The member's key, with the punctuation around it, exactly.
    fn key(&mut self, key: &[u8]) -> Option<()> {
        let rest = self.body.get(self.at..)?;
        rest.starts_with(key).then(|| self.at += key.len())
    }

    /// An unsigned integer as serde_json reads one into a `u64`: digits, no leading zero, no
    /// fraction or exponent after them (the next step then fails), within `u64`.
    fn unsigned(&mut self) -> Option<u64> {
        let rest = self.body.get(self.at..)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && rest[0] == b'0') {
            return None;
        }
        if matches!(rest.get(digits), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let mut n: u64 = 0;
        for &d in &rest[..digits] {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.at += digits;
        Some(n)
    }

    /// A signed integer as serde_json reads one into an `i64` (a `-`, then as [`Head::unsigned`]).
    fn signed(&mut self) -> Option<i64> {
        let negative = self.body.get(self.at) == Some(&b'-');
        if negative {
            self.at += 1;
        }
        let n = self.unsigned()?;
        match (negative, n) {
            // serde_json reads `-0` as the float -0.0, which an `i64` refuses.
            (true, 0) => None,
            (true, n) => 0i64.checked_sub_unsigned(n),
            (false, n) => i64::try_from(n).ok(),
        }
    }

    /// An optional member kept: `Some(None)` when the next member is not `key`, `None` when it is
    /// and its value is not a string [`Head::string`] reads.
    fn optional_string(&mut self, key: &[u8]) -> Option<Option<&'a str>> {
        match self.key(key) {
            Some(()) => self.string().map(Some),
            None => Some(None),
        }
    }

    /// Past an optional member whose value is a string not kept.
    fn skip_optional(&mut self, key: &[u8]) -> Option<()> {
        match self.key(key) {
            Some(()) => self.skip_string(),
            None => Some(()),
        }
    }

    /// A product object (`event::Product`): its name and vendor name.
    fn product(&mut self) -> Option<(&'a str, &'a str)> {
        self.key(b"{\"name\":")?;
        let name = self.string()?;
        self.key(b",\"vendor_name\":")?;
        let vendor_name = self.string()?;
        self.skip_optional(b",\"version\":")?;
        self.key(b"}")?;
        Some((name, vendor_name))
    }

    /// Past one of `metadata.loggers` (`event::Logger`, and the stamp's `transmit_time`).
    fn logger(&mut self) -> Option<()> {
        self.key(b"{\"name\":")?;
        self.skip_string()?;
        self.key(b",\"product\":")?;
        self.product()?;
        self.skip_optional(b",\"log_name\":")?;
        self.key(b",\"logged_time\":")?;
        self.signed()?;
        if self.key(b",\"transmit_time\":").is_some() {
            self.signed()?;
        }
        self.key(b"}")
    }

    /// Past a string a caption the summary does not keep, as serde_json skips one: its escapes
    /// checked as serde_json checks a skipped string's (`\uXXXX` four hex digits, or one of
    /// `"\/bfnrt`), its bytes not (a skipped string's UTF-8 is not checked either); a control
    /// character in it, or no end, is `None`.
    fn skip_string(&mut self) -> Option<()> {
        let rest = self.body.get(self.at..)?.strip_prefix(b"\"")?;
        let mut i = 0;
        loop {
            match *rest.get(i)? {
                b'"' => break,
                b'\\' => match *rest.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' if rest.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => i += 6,
                    _ => return None,
                },
                b if b < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.at += i + 2;
        Some(())
    }

    /// A string kept borrowed: without escapes or control characters, and UTF-8 (anything else:
    /// `None`, for the parser to read or refuse).
    fn string(&mut self) -> Option<&'a str> {
        let rest = self.body.get(self.at..)?.strip_prefix(b"\"")?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        let text = std::str::from_utf8(&rest[..len]).ok()?;
        self.at += len + 2;
        Some(text)
    }
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

    /// An event as the writer writes it (class attributes abridged), whose `raw_data` and
    /// `unmapped` carry the text of a `metadata` key, escaped as any string's quotes are.
    const EVENT: &str = concat!(
        r#"{"class_uid":3001,"class_name":"Account Change","category_uid":3,"category_name":"Identity & Access Management","#,
        r#""activity_id":6,"activity_name":"Delete","type_uid":300106,"type_name":"Account Change: Delete","#,
        r#""severity_id":2,"severity":"Low","time":1773821742000,"status_id":1,"status":"Success","timezone_offset":0,"#,
        r#""actor":{"user":{"name":"ann@example.com","type_id":1}},"user":{"name":"Bo","metadata":{"x":1}},"#,
        r#""observables":[{"name":"actor.user.name","type_id":4,"type":"User Name","value":"ann@example.com"}],"#,
        r#""raw_data":"{\"id\":\"r1\",\"x\":\",\\\"metadata\\\":{\\\"uid\\\":\\\"forged\\\"}}\"}","raw_data_size":60,"#,
        r#""unmapped":{"note":",\"metadata\":{\"uid\":\"forged\"}}"},"#,
        r#""metadata":{"version":"1.8.0","product":{"name":"Aitronos","vendor_name":"Aitronos"},"#,
        r#""uid":"5e0c4c5e-0000-5000-8000-000000000001","event_code":"user.deleted","original_time":"2026-03-18T08:15:42Z","#,
        r#""tenant_uid":"ORG_1","log_provider":"Aitronos audit log","log_name":"aitronos-prod","processed_time":1773821747000,"#,
        r#""loggers":[{"name":"auditrelay","product":{"name":"auditrelay","vendor_name":"auditrelay","version":"0.1.0"},"#,
        r#""log_name":"aitronos-prod","logged_time":1773821747000}]}}"#
    );

    /// [`EVENT`] with every optional member of `metadata` (labels, the vendor's ids), as sent
    /// (stamped), its names with non-ASCII text; and [`EVENT`] stamped.
    fn events() -> [String; 3] {
        let full = EVENT
            .replace(
                r#""uid":"5e0c4c5e-0000-5000-8000-000000000001","#,
                r#""uid":"5e0c4c5e-0000-5000-8000-000000000001","original_event_uid":"r\"1","correlation_uid":"c1","#,
            )
            .replace(
                r#""log_name":"aitronos-prod","processed_time""#,
                r#""labels":["a","b\n"],"log_name":"é","processed_time""#,
            )
            .replace(r#""vendor_name":"Aitronos"}"#, r#""vendor_name":"Aitrönos"}"#);
        let stamped = |event: &str| {
            let mut sent = Vec::new();
            crate::ocsf::stamp_transmit_time(event.as_bytes(), 1_773_821_800_000, &mut sent);
            String::from_utf8(sent).unwrap()
        };
        [EVENT.to_owned(), stamped(&full), stamped(EVENT)]
    }

    /// The `metadata` object of an event of the writer's shape.
    fn metadata_of(body: &[u8]) -> &[u8] {
        let key = last_metadata_key(body).unwrap();
        &body[key + METADATA_KEY.len() - 1..body.len() - 1]
    }

    fn seen(summary: &Result<Summary<'_>, String>) -> String {
        format!("{summary:?}")
    }

    #[test]
    fn an_event_of_the_writers_shape_is_read_from_its_head_and_its_own_metadata() {
        let body = EVENT.as_bytes();
        serde_json::from_slice::<serde_json::Value>(body).unwrap();
        let shaped = summarize_shaped(body).expect("the writer's shape");
        assert_eq!(seen(&Ok(summarize_shaped(body).unwrap())), seen(&summarize_parsed(body)));
        assert_eq!(
            (shaped.time, shaped.severity_id, shaped.class_uid, shaped.category_uid, shaped.activity_id),
            (Some(1_773_821_742_000), Some(2), Some(3001), Some(3), Some(6))
        );
        assert_eq!(shaped.field(EventField::ClassName), Some(Value::Text("Account Change")));
        assert_eq!(
            (shaped.uid(), shaped.tenant(), shaped.event_code(), shaped.vendor(), shaped.product()),
            (
                Some("5e0c4c5e-0000-5000-8000-000000000001"),
                Some("ORG_1"),
                Some("user.deleted"),
                Some("Aitronos"),
                Some("Aitronos")
            )
        );
        // As a sink sends it: stamped with its send time, read the same.
        let mut sent = Vec::new();
        crate::ocsf::stamp_transmit_time(body, 1_773_821_800_000, &mut sent);
        assert_ne!(sent, body, "the event takes the stamp");
        assert_eq!(
            seen(&Ok(summarize_shaped(&sent).expect("stamped, still the shape"))),
            seen(&summarize_parsed(body))
        );
    }

    /// Every event the mappings write, stored and as sent, with each `raw_data` policy: read by
    /// its shape, `metadata` walked (not parsed), the summary the parser reads.
    #[test]
    fn every_vendors_events_are_read_by_shape_as_the_parser_reads_them() {
        use crate::ocsf::event::RawData;
        use crate::sim::{self, SimVendor};
        let time = chrono::DateTime::from_timestamp(1_773_821_742, 0).unwrap();
        let mut read = 0;
        for v in SimVendor::ALL {
            let vendor = crate::vendors::VendorId::from_name(v.name()).unwrap();
            for (i, raw) in sim::sample_records(v, 200, 7).iter().enumerate() {
                let raw_data = [RawData::Full, RawData::Hash, RawData::Off][i % 3];
                let policy = crate::ocsf::Policy { raw_data, ..Default::default() };
                let key = i.to_string();
                let log_name = if i % 2 == 0 { "saas-audit" } else { "" };
                let ctx = crate::ocsf::Context {
                    organization: "org",
                    dedupe_key: &key,
                    time,
                    raw,
                    log_name,
                    processed_ms: 1,
                };
                let stored = crate::vendors::map_record(vendor, &ctx, &policy).unwrap();
                let mut sent = Vec::new();
                crate::ocsf::stamp_transmit_time(&stored, 1_773_821_800_000, &mut sent);
                for body in [&stored[..], &sent[..]] {
                    let shaped = summarize_shaped(body).unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(body)));
                    assert!(walk_metadata(metadata_of(body)).is_some(), "{}", String::from_utf8_lossy(body));
                    assert_eq!(
                        seen(&Ok(shaped)),
                        seen(&summarize_parsed(&stored)),
                        "{}",
                        String::from_utf8_lossy(body)
                    );
                    read += 1;
                }
            }
        }
        assert_eq!(read, 4 * 200 * 2);
    }

    #[test]
    fn metadata_with_every_optional_member_is_walked() {
        for event in events() {
            let body = event.as_bytes();
            assert!(walk_metadata(metadata_of(body)).is_some(), "{event}");
            assert_eq!(seen(&Ok(summarize_shaped(body).unwrap())), seen(&summarize_parsed(body)), "{event}");
        }
        assert_eq!(summarize(events()[1].as_bytes()).unwrap().vendor(), Some("Aitrönos"));
        // And with none of them: the members kept that are missing are `None`, as parsed.
        let bare = EVENT
            .replace(r#""event_code":"user.deleted","#, "")
            .replace(r#","tenant_uid":"ORG_1""#, "")
            .replace(
                r#""log_provider":"Aitronos audit log","log_name":"aitronos-prod","processed_time":1773821747000,"#,
                "",
            )
            .replace(r#","version":"0.1.0""#, "");
        let body = bare.as_bytes();
        assert!(walk_metadata(metadata_of(body)).is_some(), "{bare}");
        let summary = summarize(body).unwrap();
        assert_eq!((summary.tenant(), summary.event_code()), (None, None));
        assert_eq!(seen(&Ok(summary)), seen(&summarize_parsed(body)));
    }

    /// A `metadata` longer than the reach (labels of 10 KiB): its key is not looked for further,
    /// and the event is parsed whole, to the same summary; a key straddling the reach's start
    /// is not found either.
    #[test]
    fn metadata_beyond_the_reach_is_parsed_whole() {
        let long = EVENT.replace(
            r#""log_name":"aitronos-prod","processed_time""#,
            &format!(r#""labels":["{}"],"log_name":"x","processed_time""#, "{".repeat(10 << 10)),
        );
        let body = long.as_bytes();
        assert!(summarize_shaped(body).is_none());
        assert_eq!(seen(&summarize(body)), seen(&summarize_parsed(body)));
        assert!(summarize(body).is_ok());
        // Cut so that the reach starts at the key, or one byte or more into it.
        let key = memchr::memmem::rfind(body, METADATA_KEY).unwrap();
        for into in [1, METADATA_KEY.len() - 1] {
            assert_eq!(last_metadata_key(&body[..key + into + METADATA_REACH]), None, "{into}");
        }
        let just = &body[..key + METADATA_REACH];
        assert_eq!(last_metadata_key(just), Some(key));
    }

    /// A `metadata` the walk does not read exactly as the writer writes it is parsed (the object
    /// alone): the same summary as parsing the event whole.
    #[test]
    fn metadata_not_exactly_the_writers_is_parsed() {
        let cases = [
            // A value kept that has an escape.
            EVENT.replace(r#""tenant_uid":"ORG_1""#, r#""tenant_uid":"ORG\u005f1""#),
            EVENT.replace(r#""uid":"5e0c"#, r#""uid":"\"5e0c"#),
            EVENT.replace(r#""event_code":"user.deleted""#, r#""event_code":"user\/deleted""#),
            EVENT.replace(r#"{"name":"Aitronos""#, r#"{"name":"Ai\ttronos""#),
            // Members in another order, unknown, missing, or of another type.
            EVENT.replace(
                r#""event_code":"user.deleted","original_time":"2026-03-18T08:15:42Z","tenant_uid":"ORG_1""#,
                r#""tenant_uid":"ORG_1","original_time":"2026-03-18T08:15:42Z","event_code":"user.deleted""#,
            ),
            EVENT.replace(r#""log_provider""#, r#""extra":{"tenant_uid":"X"},"log_provider""#),
            EVENT.replace(r#","log_provider":"Aitronos audit log""#, r#","tenant_uid":"ORG_2""#),
            EVENT.replace(r#""event_code":"user.deleted""#, r#""event_code":7"#),
            EVENT.replace(r#""tenant_uid":"ORG_1""#, r#""tenant_uid":null"#),
            EVENT.replace(r#""processed_time":1773821747000"#, r#""processed_time":1.5"#),
            EVENT.replace(r#""loggers":[{"#, r#""loggers":[{"extra":1,"#),
            EVENT.replace(r#"1773821747000}]"#, r#"1773821747000},{"name":"x"}]"#),
            EVENT.replace(
                r#""product":{"name":"Aitronos","vendor_name":"Aitronos"}"#,
                r#""product":{"vendor_name":"Aitronos","name":"Aitronos"}"#,
            ),
            EVENT.replace(
                r#""product":{"name":"Aitronos","vendor_name":"Aitronos"}"#,
                r#""product":{"name":"Aitronos"}"#,
            ),
        ];
        for case in &cases {
            assert_ne!(case, EVENT, "every case changes the event");
            let body = case.as_bytes();
            assert!(walk_metadata(metadata_of(body)).is_none(), "walked: {case}");
            assert_eq!(seen(&summarize(body)), seen(&summarize_parsed(body)), "{case}");
        }
    }

    /// What the head walk does not read exactly as the writer writes it goes to the parser, which
    /// reads it or refuses it as before: the same answer as parsing whole, always.
    #[test]
    fn anything_not_exactly_the_writers_head_or_tail_is_parsed_whole() {
        let cases = [
            // An escape in a caption (a vendor's own verb as the activity name).
            EVENT.replace(r#""activity_name":"Delete""#, r#""activity_name":"De\"lete\u00e9""#),
            EVENT.replace(r#""class_name":"Account Change""#, r#""class_name":"Account \"Change\"""#),
            // Numbers serde_json reads otherwise or refuses for these fields.
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":03001"#),
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":3001.0"#),
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":3e3"#),
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":-3001"#),
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":18446744073709551616"#),
            EVENT.replace(r#""class_uid":3001"#, r#""class_uid":18446744073709551615"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":-1773821742000"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":-0"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":9223372036854775808"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":-9223372036854775808"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":-9223372036854775809"#),
            EVENT.replace(r#""time":1773821742000"#, r#""time":"1773821742000""#),
            // Whitespace, or another order.
            EVENT.replace(r#""severity_id":2,"#, r#""severity_id": 2,"#),
            EVENT.replace(r#"{"class_uid":3001,"#, r#"{ "class_uid":3001,"#),
            EVENT.replace(r#"}]}}"#, "}]}}\n"),
            EVENT.replace(r#"}]}}"#, "}]} }"),
            EVENT.replace(r#","time":1773821742000,"#, ","),
            // `metadata` not last, twice, or not an object.
            EVENT.replace(r#"}]}}"#, r#"}]},"unmapped2":{}}"#),
            EVENT.replace(r#","metadata":{"version""#, r#","metadata":null,"m":{"version""#),
            // A control character in a caption; a caption that is not UTF-8 comes below.
            EVENT.replace(r#""severity":"Low""#, "\"severity\":\"L\u{1}ow\""),
        ];
        for case in &cases {
            assert_ne!(case, EVENT, "every case changes the event");
            let body = case.as_bytes();
            assert_eq!(seen(&summarize(body)), seen(&summarize_parsed(body)), "{case}");
        }
        let mut not_utf8 = EVENT.as_bytes().to_vec();
        let at = EVENT.find("Identity").unwrap();
        not_utf8[at] = 0xff;
        assert_eq!(seen(&summarize(&not_utf8)), seen(&summarize_parsed(&not_utf8)));
        // Two `metadata` members, which the writer never writes: the parser refuses the event,
        // the shape reads the last (the one a sink's stamp goes into). The only difference
        // besides a skipped member that is not JSON (`one_byte_changed_never_changes_what_is_read`).
        let twice = EVENT.replace(r#","unmapped":"#, r#","metadata":{"uid":"first"},"unmapped":"#);
        assert!(summarize_parsed(twice.as_bytes()).unwrap_err().contains("duplicate field `metadata`"));
        assert_eq!(summarize(twice.as_bytes()).unwrap().uid(), Some("5e0c4c5e-0000-5000-8000-000000000001"));
        // Where the head is not the writer's, nothing reads it by shape.
        assert!(summarize_shaped(cases[1].as_bytes()).is_none());
        assert!(summarize_shaped(cases[2].as_bytes()).is_none());
        // A caption with escapes serde_json accepts is skipped like any other.
        assert!(summarize_shaped(cases[0].as_bytes()).is_some());
    }

    proptest::proptest! {
        /// The key found by its braces is the last one a substring search finds, whether it is
        /// among the last [`BRACES_LOOKED_AT`] braces or not (within [`METADATA_REACH`]).
        #[test]
        fn the_last_metadata_key_is_the_substring_searchs_last(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![",\"metadata\":{", ",\"metadata\":", "{", "}", ",", "\"", "a", "metadata"]),
                0..120,
            ),
        ) {
            let body = parts.concat();
            proptest::prop_assert!(body.len() < METADATA_REACH);
            let want = memchr::memmem::rfind(body.as_bytes(), METADATA_KEY);
            proptest::prop_assert_eq!(last_metadata_key(body.as_bytes()), want, "{}", body);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4000, ..Default::default() })]

        /// Any one byte of the event replaced, removed or added: read by shape, the summary is
        /// the whole parse's; or the body is not JSON at all any more (the change broke what is
        /// skipped between `time` and `metadata`), which the parse refused and the sinks'
        /// receivers see as it is. Never a different value for a body that is JSON.
        #[test]
        fn one_byte_changed_never_changes_what_is_read(
            which in 0..3usize,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            edit in 0u8..3,
            byte in proptest::sample::select(b"\"\\{}[],:0123456789-.eE \x01\x7fatmu".to_vec()),
        ) {
            let mut body = events()[which].as_bytes().to_vec();
            let at = at.index(body.len());
            match edit {
                0 => body[at] = byte,
                1 => { body.remove(at); }
                _ => body.insert(at, byte),
            }
            match (summarize_shaped(&body), summarize_parsed(&body)) {
                (None, _) => {}
                (Some(shaped), Ok(parsed)) => proptest::prop_assert_eq!(seen(&Ok(shaped)), seen(&Ok(parsed))),
                // Refused by the parser, read by shape: only a body that is not JSON at all.
                (Some(_), Err(e)) => proptest::prop_assert!(
                    serde_json::from_slice::<serde_json::Value>(&body).is_err(),
                    "{at}: JSON, refused ({e}), yet read by shape"
                ),
            }
        }
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
