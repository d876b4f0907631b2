//! How an event's bytes are written: the one place that turns a mapping's [`EventParts`] into
//! the JSON the queue stores, straight into the caller's buffer.
//!
//! Owns: the event's member order (classification, time and status, `timezone_offset`, the
//! class's attributes, `observables`, `raw_data*`, `unmapped`, then `metadata` last with its
//! `loggers` last, where a sink stamps the send time, [`super::stamp_transmit_time`]), the
//! derived attributes (ids and captions from the class tables, `type_uid`/`type_name`,
//! `observables`, `timezone_offset`, `raw_data_size`) and `raw_data`'s policy. Must not: decide
//! anything a vendor mapping decides, parse the record, or allocate per attribute.
//!
//! Decisions, each measured on the mapping bench (BENCHMARKS.md "mapping"):
//! - The event's own strings (`raw_data`, the record as one string, above all) are escaped here
//!   with serde_json's escape table, byte for byte as serde_json writes them, each run without
//!   an escape copied at once (the bytes of every event are pinned by
//!   `tests/it/mapping_bytes.rs`); numbers go through serde_json's `CompactFormatter`;
//!   `metadata` and `unmapped` are written member by member as their derived `Serialize` would
//!   (a fifth of the writer's time was serde's struct serializer for `metadata`); the class's
//!   nested objects (`actor`, `user`, …) are still their derived `Serialize`, written by
//!   `serde_json::to_writer` into the same buffer.
//! - The class's attributes are flattened into the event by writing the class struct in place
//!   and turning its opening `{` into the separating `,` (no map serializer, no second buffer),
//!   instead of serde's `flatten`, which goes through a map serializer per attribute.
//! - `observables` are written from borrowed values, deduplicated on (attribute, value) among
//!   those already written, instead of built as owned objects first.

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter as _};

use super::event::{
    Class, EventParts, Fingerprint, Logger, Metadata, NetworkEndpoint, ObservableType, Product, RawData,
};

/// Writes the event of `parts`, carrying as much of the record as `raw_data` says, at the end
/// of `out`. An error (none is expected: every key is a string) leaves `out` partly written.
pub fn event(parts: &EventParts, raw_data: RawData, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let class = &parts.class;
    let (class_uid, activity_id) = (class.uid(), class.activity_id());
    out.extend_from_slice(b"{\"class_uid\":");
    number(out, class_uid);
    key(out, "class_name");
    string(out, class.name())?;
    key(out, "category_uid");
    number(out, class.category_uid());
    key(out, "category_name");
    string(out, class.category_name())?;
    key(out, "activity_id");
    number(out, activity_id);
    key(out, "activity_name");
    string(out, class.activity_name())?;
    key(out, "type_uid");
    number(out, u64::from(class_uid) * 100 + u64::from(activity_id));
    // The caption of the type_uid: "Other" for 99, whatever the vendor's verb. Both halves are
    // captions of ours (plain ASCII, nothing to escape), so the quotes go around them as they are.
    key(out, "type_name");
    out.push(b'"');
    out.extend_from_slice(class.name().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(class.activity_id_caption().as_bytes());
    out.push(b'"');
    key(out, "severity_id");
    number(out, parts.severity as u8);
    key(out, "severity");
    string(out, parts.severity.caption())?;
    key(out, "time");
    number(out, parts.time);
    if let Some(status) = &parts.status {
        key(out, "status_id");
        number(out, status.id());
        key(out, "status");
        string(out, status.caption())?;
    }
    optional(out, "status_code", &parts.status_code)?;
    optional(out, "status_detail", &parts.status_detail)?;
    optional(out, "message", &parts.message)?;
    key(out, "timezone_offset");
    number(out, parts.metadata.original_time.as_deref().map_or(0, timezone_offset));
    flattened(out, class)?;
    observables(out, class)?;
    let raw = parts.raw_data.as_str();
    match raw_data {
        RawData::Full => {
            key(out, "raw_data");
            string(out, raw)?;
        }
        RawData::Hash => {
            key(out, "raw_data_hash");
            serde_json::to_writer(&mut *out, &Fingerprint::sha256(raw.as_bytes()))?;
        }
        RawData::Off => {}
    }
    key(out, "raw_data_size");
    number(out, raw.len() as u64);
    if let Some(unmapped) = parts.unmapped.as_ref().filter(|m| !m.is_empty()) {
        key(out, "unmapped");
        let mut separator = b'{';
        for (name, value) in unmapped {
            out.push(separator);
            separator = b',';
            string(out, name)?;
            out.push(b':');
            string(out, value)?;
        }
        out.push(b'}');
    }
    key(out, "metadata");
    metadata(out, &parts.metadata)?;
    out.push(b'}');
    Ok(())
}

/// `metadata` as its derived `Serialize` writes it (members in declaration order, each `None`
/// left out), written member by member instead of through serde's struct serializer: a fifth
/// of the writer's time went there. Every member is named (no `..`), so a member added to
/// [`Metadata`] or [`Logger`] does not compile until it is written here;
/// `test_metadata_is_written_as_serde_writes_it` compares the bytes with serde's.
fn metadata(out: &mut Vec<u8>, m: &Metadata) -> serde_json::Result<()> {
    let Metadata {
        version,
        product: p,
        uid,
        original_event_uid,
        correlation_uid,
        event_code,
        original_time,
        tenant_uid,
        log_provider,
        labels,
        log_name,
        processed_time,
        loggers,
    } = m;
    out.extend_from_slice(b"{\"version\":");
    string(out, version)?;
    key(out, "product");
    product(out, p)?;
    key(out, "uid");
    string(out, uid)?;
    optional(out, "original_event_uid", original_event_uid)?;
    optional(out, "correlation_uid", correlation_uid)?;
    optional(out, "event_code", event_code)?;
    optional(out, "original_time", original_time)?;
    optional(out, "tenant_uid", tenant_uid)?;
    if let Some(provider) = log_provider {
        key(out, "log_provider");
        string(out, provider)?;
    }
    if let Some(labels) = labels {
        key(out, "labels");
        out.push(b'[');
        for (i, label) in labels.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, label)?;
        }
        out.push(b']');
    }
    optional(out, "log_name", log_name)?;
    if let Some(time) = processed_time {
        key(out, "processed_time");
        number(out, *time);
    }
    key(out, "loggers");
    out.push(b'[');
    for (i, Logger { name, product: p, log_name, logged_time }) in loggers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        string(out, name)?;
        key(out, "product");
        product(out, p)?;
        optional(out, "log_name", log_name)?;
        key(out, "logged_time");
        number(out, *logged_time);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// A [`Product`] as its derived `Serialize` writes it.
fn product(out: &mut Vec<u8>, Product { name, vendor_name, version }: &Product) -> serde_json::Result<()> {
    out.extend_from_slice(b"{\"name\":");
    string(out, name)?;
    key(out, "vendor_name");
    string(out, vendor_name)?;
    if let Some(version) = version {
        key(out, "version");
        string(out, version)?;
    }
    out.push(b'}');
    Ok(())
}

/// `,"name":` (every member but the first follows another).
fn key(out: &mut Vec<u8>, name: &'static str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// How [`string`] escapes each byte: 0 not at all, `u` as `\u00XX`, else `\` and this byte.
/// serde_json's own table (`ser.rs`, `ESCAPE`): the quote, the backslash and the control
/// characters below 0x20, five of them by their short escapes; nothing else (not DEL, not
/// non-ASCII).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// A string as serde_json writes it, byte for byte (its escape table, lower-case `\u00XX`;
/// `test_strings_are_escaped_as_serde_json_does` holds it), but straight into `out`: each run
/// without an escape copied at once, instead of through serde_json's writer per fragment. Most
/// of an event's escaping is here: `raw_data` is the whole record as one string.
fn string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape = ESCAPE[usize::from(byte)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
    Ok(())
}

fn optional(out: &mut Vec<u8>, name: &'static str, value: &Option<String>) -> serde_json::Result<()> {
    match value {
        Some(v) => {
            key(out, name);
            string(out, v)
        }
        None => Ok(()),
    }
}

/// An integer as serde_json writes it (`itoa`).
fn number(out: &mut Vec<u8>, n: impl Into<i128>) {
    // Writing into a Vec cannot fail.
    let n: i128 = n.into();
    let _ = match i64::try_from(n) {
        Ok(n) => CompactFormatter.write_i64(out, n),
        Err(_) => CompactFormatter.write_i128(out, n),
    };
}

/// The class's own attributes as members of the event: the class struct written in place, its
/// `{` turned into the `,` that separates it from the member before, its `}` dropped.
fn flattened(out: &mut Vec<u8>, class: &Class) -> serde_json::Result<()> {
    fn write<T: Serialize>(out: &mut Vec<u8>, value: &T) -> serde_json::Result<()> {
        serde_json::to_writer(out, value)
    }
    let start = out.len();
    match class {
        Class::ApiActivity(c) => write(out, c)?,
        Class::AccountChange(c) => write(out, c)?,
        Class::Authentication(c) => write(out, c)?,
        Class::EntityManagement(c) => write(out, c)?,
        Class::UserAccess(c) => write(out, c)?,
        Class::GroupManagement(c) => write(out, c)?,
    }
    out.pop(); // its `}`
    if out.len() == start + 1 {
        out.truncate(start); // no attribute at all: nothing to separate
    } else {
        out[start] = b',';
    }
    Ok(())
}

/// The observables written so far: each one's attribute path (in two parts, as
/// [`observables`] names it) and value, to leave out a repeat.
struct Observables<'c> {
    written: Vec<(&'static str, &'static str, &'c str)>,
}

impl<'c> Observables<'c> {
    fn add(
        &mut self,
        out: &mut Vec<u8>,
        (path, leaf): (&'static str, &'static str),
        kind: ObservableType,
        value: Option<&'c str>,
    ) -> serde_json::Result<()> {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(()) };
        if self.written.iter().any(|(p, l, v)| *p == path && *l == leaf && *v == value) {
            return Ok(());
        }
        out.extend_from_slice(if self.written.is_empty() { b",\"observables\":[" } else { b"," });
        out.extend_from_slice(b"{\"name\":\"");
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(leaf.as_bytes());
        out.extend_from_slice(b"\",\"type_id\":");
        number(out, kind as u8);
        out.extend_from_slice(b",\"type\":");
        string(out, kind.caption())?;
        out.extend_from_slice(b",\"value\":");
        string(out, value)?;
        out.push(b'}');
        self.written.push((path, leaf, value));
        Ok(())
    }
}

/// `observables`: every IP address, user name, e-mail address, user agent and user uid the
/// class's attributes hold, once per (attribute, value), in attribute order; left out when none.
fn observables(out: &mut Vec<u8>, class: &Class) -> serde_json::Result<()> {
    let mut o = Observables { written: Vec::new() };
    // A user of type 0 is a placeholder for nobody named: nothing to pivot on. A System user
    // (3) is the vendor's automation: its name is a label ("ConfigCat", "Scheduler"), not an
    // account a rule pivots on; its uid, where the record has one, is kept.
    for (path, user) in class.users().into_iter().filter(|(_, u)| u.type_id != Some(0)) {
        o.add(out, (path, ".uid"), ObservableType::UserUid, user.uid.as_deref())?;
        if user.type_id != Some(3) {
            o.add(out, (path, ".name"), ObservableType::UserName, user.name.as_deref())?;
        }
        o.add(out, (path, ".email_addr"), ObservableType::EmailAddress, user.email_addr.as_deref())?;
    }
    let (src, http) = class.endpoint_and_request();
    if let Some(NetworkEndpoint { ip, intermediate_ips, .. }) = src {
        o.add(out, ("src_endpoint", ".ip"), ObservableType::IpAddress, ip.as_deref())?;
        for other in intermediate_ips.iter().flatten() {
            o.add(out, ("src_endpoint", ".intermediate_ips"), ObservableType::IpAddress, Some(other))?;
        }
    }
    if let Some(http) = http {
        o.add(out, ("http_request", ".user_agent"), ObservableType::UserAgent, http.user_agent.as_deref())?;
    }
    if !o.written.is_empty() {
        out.push(b']');
    }
    Ok(())
}

/// `timezone_offset` of a vendor timestamp: the minutes of its RFC 3339 offset, within OCSF's
/// ±1080; 0 when it has none (naive times are read as UTC) or is not RFC 3339.
fn timezone_offset(original_time: &str) -> i32 {
    let time = original_time.trim();
    // A time in UTC (`…Z`, the vendors' usual form) is 0 whether or not it parses: no parse.
    if time.ends_with(['Z', 'z']) {
        return 0;
    }
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| t.offset().local_minus_utc() / 60)
        .ok()
        .filter(|m| (-1080..=1080).contains(m))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{metadata, string};
    use crate::ocsf::event::{Logger, Metadata, Product};

    /// Every member of `metadata` set (with text to escape) and every optional one left out:
    /// the same bytes as its derived `Serialize`.
    #[test]
    fn test_metadata_is_written_as_serde_writes_it() {
        let hostile = "q\"b\\c\u{1}\u{1f}é\u{2028}😀";
        let product = |version: Option<&str>| Product {
            name: format!("name {hostile}").into(),
            vendor_name: hostile.to_owned().into(),
            version: version.map(|v| v.to_owned().into()),
        };
        let full = Metadata {
            version: "1.8.0",
            product: product(Some(hostile)),
            uid: hostile.into(),
            original_event_uid: Some(format!("o{hostile}")),
            correlation_uid: Some(format!("c{hostile}")),
            event_code: Some(format!("e{hostile}")),
            original_time: Some("2026-03-18T08:15:42+01:00".into()),
            tenant_uid: Some(format!("t{hostile}")),
            log_provider: Some(hostile.to_owned().into()),
            labels: Some(vec!["a".into(), hostile.into(), String::new()]),
            log_name: Some(format!("l{hostile}")),
            processed_time: Some(-1),
            loggers: vec![
                Logger::auditrelay(Some(hostile.into()), i64::MAX),
                Logger {
                    name: hostile.to_owned().into(),
                    product: product(None),
                    log_name: None,
                    logged_time: i64::MIN,
                },
            ],
        };
        let bare = Metadata {
            product: product(None),
            original_event_uid: None,
            correlation_uid: None,
            event_code: None,
            original_time: None,
            tenant_uid: None,
            log_provider: None,
            labels: None,
            log_name: None,
            processed_time: None,
            loggers: Vec::new(),
            ..full.clone()
        };
        let empty_labels = Metadata { labels: Some(Vec::new()), ..bare.clone() };
        for m in [full, bare, empty_labels] {
            let mut ours = Vec::new();
            metadata(&mut ours, &m).unwrap();
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&m).unwrap());
        }
    }

    /// Every ASCII character, alone and between others, a run of each control character, and
    /// non-ASCII text: written exactly as serde_json writes them.
    #[test]
    fn test_strings_are_escaped_as_serde_json_does() {
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| char::from(b).to_string()).collect();
        cases.extend((0u8..=0x7f).map(|b| format!("ab{}cd", char::from(b))));
        cases.push((0u8..0x20).map(char::from).collect());
        cases.push((0u8..=0x7f).rev().map(char::from).collect());
        cases.extend(
            ["", "é\u{2028}\u{1F600}\"x\"\\\u{7f}\u{80}", "{\"a\":\"b\\\"c\"}\n", "\\\\\"\"\t"].map(String::from),
        );
        for case in cases {
            let mut ours = b"[".to_vec();
            string(&mut ours, &case).unwrap();
            let theirs = [b"[".to_vec(), serde_json::to_vec(&case).unwrap()].concat();
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{case:?}");
        }
    }
}

#[cfg(test)]
#[path = "review21c_tests.rs"]
mod review21c_tests;
