//! The pure pieces of running a definition: writing a window's bounds in the vendor's time
//! format, rendering templates (a parameter whose placeholder has no value on this page is
//! left out), reading the `Link` header (RFC 8288), the same-origin rule of next URLs, and
//! reading an answer's records (JSON at a pointer or NDJSON, optional gzip, id by pointer or
//! hash, time by pointer and format; records without id or time rejected, never dropped). A
//! JSON answer is read lazily: borrowed `&RawValue` levels down the pointers, the records item
//! by item under the cap; it must not be parsed whole into a `Value` (memory ~32× the body).
//!
//! Must not: do I/O, keep state, or trust the answer: every read is bounded (decoded size,
//! item count) and a malformed answer is a [`BadPage`], never a panic. The request and the
//! paging state machine built from these pieces are `source.rs`'s.

use std::io::Read as _;

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use serde_json::Value;
use serde_json::value::RawValue;

use super::model::{AnswerDef, AnswerFormat, BodyTemplate, Piece, RecordId, Template, TimeFormat, Var};
use crate::sources::{BadPage, Record, Rejected, Window};

/// The values placeholders take on one page; `None`: no value here (`{cursor}` on the first
/// page), and the parameter using it is left out.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub from: String,
    pub to: String,
    pub organization_id: &'a str,
    pub page_size: u32,
    pub offset: Option<u64>,
    pub page: Option<u32>,
    pub cursor: Option<&'a str>,
}

impl<'a> Values<'a> {
    /// The window written in `format` (a `date` window widened to whole days: the vendor
    /// cannot be asked for less, and dedupe removes what two windows share).
    pub fn new(window: &Window, format: TimeFormat, organization_id: &'a str, page_size: u32) -> Values<'a> {
        let (from, to) = match format {
            TimeFormat::Date => {
                let to_day = window.to.date_naive();
                // An end at midnight exactly needs no extra day.
                let to = if window.to == day_start(to_day) { to_day } else { to_day.succ_opt().unwrap_or(to_day) };
                (day_start(window.from.date_naive()), day_start(to))
            }
            _ => (window.from, window.to),
        };
        Values {
            from: format_time(from, format),
            to: format_time(to, format),
            organization_id,
            page_size,
            offset: None,
            page: None,
            cursor: None,
        }
    }

    fn get(&self, var: Var) -> Option<String> {
        match var {
            Var::From => Some(self.from.clone()),
            Var::To => Some(self.to.clone()),
            Var::OrganizationId => Some(self.organization_id.to_owned()),
            Var::PageSize => Some(self.page_size.to_string()),
            Var::Offset => self.offset.map(|o| o.to_string()),
            Var::Page => self.page.map(|p| p.to_string()),
            Var::Cursor => self.cursor.map(str::to_owned),
        }
    }
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).map_or(DateTime::<Utc>::MIN_UTC, |t| t.and_utc())
}

/// `t` as the vendor writes it.
pub fn format_time(t: DateTime<Utc>, format: TimeFormat) -> String {
    match format {
        TimeFormat::Rfc3339 => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        TimeFormat::Rfc3339Ms => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        TimeFormat::EpochS => t.timestamp().to_string(),
        TimeFormat::EpochMs => t.timestamp_millis().to_string(),
        TimeFormat::Date => t.format("%Y-%m-%d").to_string(),
    }
}

/// A record's time as the vendor wrote it: a string or a number (epoch formats take both).
pub fn parse_time(v: &Value, format: TimeFormat) -> Option<DateTime<Utc>> {
    let number = || match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match format {
        TimeFormat::Rfc3339 | TimeFormat::Rfc3339Ms => {
            v.as_str().and_then(crate::sources::parse_event_time).filter(|_| v.as_str().is_some_and(|s| s.len() > 10))
        }
        TimeFormat::Date => {
            v.as_str().and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()).map(day_start)
        }
        TimeFormat::EpochS => number().and_then(|s| Utc.timestamp_opt(s, 0).single()),
        TimeFormat::EpochMs => number().and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
    }
}

/// The template's text, `None` when one of its placeholders has no value on this page.
pub fn render(t: &Template, values: &Values<'_>) -> Option<String> {
    let mut out = String::new();
    for piece in &t.0 {
        match piece {
            Piece::Text(s) => out.push_str(s),
            Piece::Var(v) => out.push_str(&values.get(*v)?),
        }
    }
    Some(out)
}

/// The path template rendered, each placeholder's value percent-encoded as one path segment
/// (a value holding `/` or `?` cannot change the path's shape).
pub fn render_path(t: &Template, values: &Values<'_>) -> Option<String> {
    let mut out = String::new();
    for piece in &t.0 {
        match piece {
            Piece::Text(s) => out.push_str(s),
            Piece::Var(v) => {
                for b in values.get(*v)?.bytes() {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                        out.push(b as char);
                    } else {
                        out.push_str(&format!("%{b:02X}"));
                    }
                }
            }
        }
    }
    Some(out)
}

/// The JSON body: a string that is exactly one numeric placeholder becomes a number; an object
/// member whose placeholder has no value is left out.
pub fn render_body(b: &BodyTemplate, values: &Values<'_>) -> Option<Value> {
    Some(match b {
        BodyTemplate::Null => Value::Null,
        BodyTemplate::Bool(x) => Value::Bool(*x),
        BodyTemplate::Number(n) => Value::Number(n.clone()),
        BodyTemplate::String(t) => match t.0.as_slice() {
            [Piece::Var(v @ (Var::PageSize | Var::Offset | Var::Page))] => {
                let n: u64 = values.get(*v)?.parse().ok()?;
                Value::from(n)
            }
            _ => Value::String(render(t, values)?),
        },
        BodyTemplate::Array(items) => Value::Array(items.iter().filter_map(|i| render_body(i, values)).collect()),
        BodyTemplate::Object(fields) => {
            Value::Object(fields.iter().filter_map(|(k, v)| Some((k.clone(), render_body(v, values)?))).collect())
        }
    })
}

/// One link of a `Link` header: its target as written and its relation types (lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub target: String,
    pub rels: Vec<String>,
}

/// Parses `Link` header values (RFC 8288 §3): several links per value, parameters with quoted
/// strings (escapes, `;` and `,` inside), `rel` lists of several types, commas inside `<…>`.
/// A malformed link is skipped, the ones after it still read.
pub fn parse_links(values: &[&str]) -> Vec<Link> {
    let mut links = vec![];
    for value in values {
        let mut rest = *value;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            let Some(after_lt) = rest.strip_prefix('<') else {
                // Not a link: skip to the next top-level comma.
                rest = skip_to_comma(rest);
                continue;
            };
            let Some(end) = after_lt.find('>') else { break };
            let target = after_lt[..end].trim().to_owned();
            rest = &after_lt[end + 1..];
            let mut rels = vec![];
            // Parameters: `; name = value` until the next top-level comma.
            loop {
                rest = rest.trim_start();
                let Some(after_semi) = rest.strip_prefix(';') else { break };
                let after_semi = after_semi.trim_start();
                let name_end = after_semi.find(['=', ';', ',']).unwrap_or(after_semi.len());
                let name = after_semi[..name_end].trim().to_ascii_lowercase();
                rest = &after_semi[name_end..];
                let mut value = String::new();
                if let Some(after_eq) = rest.strip_prefix('=') {
                    let after_eq = after_eq.trim_start();
                    if let Some(quoted) = after_eq.strip_prefix('"') {
                        let mut chars = quoted.char_indices();
                        let mut used = quoted.len();
                        while let Some((i, c)) = chars.next() {
                            match c {
                                '\\' => {
                                    if let Some((_, escaped)) = chars.next() {
                                        value.push(escaped);
                                    }
                                }
                                '"' => {
                                    used = i + 1;
                                    break;
                                }
                                c => value.push(c),
                            }
                        }
                        rest = &quoted[used.min(quoted.len())..];
                    } else {
                        let end = after_eq.find([';', ',']).unwrap_or(after_eq.len());
                        value = after_eq[..end].trim().to_owned();
                        rest = &after_eq[end..];
                    }
                }
                // The first `rel` counts (RFC 8288 §3.3: later ones are ignored).
                if name == "rel" && rels.is_empty() {
                    rels = value.split_ascii_whitespace().map(str::to_ascii_lowercase).collect();
                }
            }
            links.push(Link { target, rels });
            rest = skip_to_comma(rest);
        }
    }
    links
}

/// What follows the next comma outside a quoted string.
fn skip_to_comma(s: &str) -> &str {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return &s[i + 1..],
            _ => {}
        }
    }
    ""
}

/// The target of the first link with relation `rel`, resolved against the URL asked.
pub fn next_link(values: &[&str], rel: &str, asked: &url::Url) -> Option<Result<url::Url, String>> {
    let link = parse_links(values).into_iter().find(|l| l.rels.iter().any(|r| r == rel))?;
    Some(asked.join(&link.target).map_err(|e| format!("the Link header's {rel:?} target is not a URL ({e})")))
}

/// Whether `next` may be asked with the source's credential: the same scheme, host and port
/// as the source's `base_url`. Else an error naming it (redacted).
pub fn same_origin(base: &url::Url, next: &url::Url) -> Result<(), String> {
    if base.scheme() == next.scheme()
        && base.host_str() == next.host_str()
        && base.port_or_known_default() == next.port_or_known_default()
    {
        Ok(())
    } else {
        Err(format!(
            "the next page's URL {} is not on the source's origin {}: not followed (credentials never leave it)",
            crate::redact::url(next),
            crate::redact::url(base)
        ))
    }
}

/// The decoded body: gzip when `gzip` is set and the body starts with its magic bytes
/// (whatever the headers say), at most `cap` bytes decoded.
pub fn decode_body(body: &[u8], gzip: bool, cap: usize) -> Result<std::borrow::Cow<'_, [u8]>, BadPage> {
    if !(gzip && body.starts_with(&[0x1f, 0x8b])) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BadPage(format!("the gzip answer cannot be decoded ({e})")))?;
    if out.len() > cap {
        return Err(BadPage(format!("the gzip answer decodes to more than {cap} bytes")));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// The records of an answer (after [`decode_body`]), at most `max_items` items (the rest
/// skipped unread, `overflow` set), and the whole document for the paging pointers
/// (`None` for NDJSON), borrowed from the body: read with [`pointer`], never parsed whole.
#[derive(Debug)]
pub struct Answer<'a> {
    pub items: Vec<Box<RawValue>>,
    pub document: Option<&'a RawValue>,
    /// More than `max_items` items: only the first were kept.
    pub overflow: bool,
}

/// Reads an answer lazily: the body is checked to be JSON without building it (`&RawValue`),
/// `answer.records` is followed level by level (only the member named at each level is kept,
/// the others skipped unread), and the array is read item by item, at most `max_items` kept.
/// Peak memory stays near the body's size however many tiny items it holds (a `Value` of
/// `[1,1,…]` takes 32 bytes an item). The records member absent, `null` or not an array is a
/// malformed page: a proxy's or vendor's JSON error must never read as an empty page (which
/// would end the window and move the checkpoint past records never given).
pub fn read_answer<'a>(body: &'a [u8], answer: &AnswerDef, max_items: usize) -> Result<Answer<'a>, BadPage> {
    match answer.format {
        AnswerFormat::Json => {
            let text = std::str::from_utf8(body).map_err(|e| BadPage(format!("the answer is not JSON ({e})")))?;
            let document: &RawValue =
                serde_json::from_str(text).map_err(|e| BadPage(format!("the answer is not JSON ({e})")))?;
            let at = if answer.records.is_empty() { "the body" } else { answer.records.as_str() };
            let records = locate(document, &answer.records)?
                .ok_or_else(|| BadPage(format!("{at} of the answer is missing: not a page of records")))?;
            if !records.get().starts_with('[') {
                return Err(BadPage(format!("{at} of the answer is not an array of records")));
            }
            let mut de = serde_json::Deserializer::from_str(records.get());
            let (items, overflow) = serde::de::DeserializeSeed::deserialize(CappedItems(max_items), &mut de)
                .map_err(|e| BadPage(format!("{at} of the answer cannot be read ({e})")))?;
            Ok(Answer { items, document: Some(document), overflow })
        }
        AnswerFormat::Ndjson => {
            let mut items = vec![];
            for (n, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if items.len() == max_items {
                    return Ok(Answer { items, document: None, overflow: true });
                }
                let raw: Box<RawValue> = serde_json::from_slice(line)
                    .map_err(|e| BadPage(format!("line {} of the NDJSON answer is not JSON ({e})", n + 1)))?;
                items.push(raw);
            }
            Ok(Answer { items, document: None, overflow: false })
        }
    }
}
/// The value at the RFC 6901 `pointer` of `doc`, followed through borrowed levels: at each
/// object only the member named is kept (the last of duplicates, as `Value` would), at each
/// array only the item at the index; `None` when a level lacks it or is not a container.
pub fn locate<'a>(doc: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, BadPage> {
    if pointer.is_empty() {
        return Ok(Some(doc));
    }
    let Some(rest) = pointer.strip_prefix('/') else { return Ok(None) };
    let mut at = doc;
    for token in rest.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        let text = at.get().trim_start();
        if !(text.starts_with('{') || text.starts_with('[')) {
            return Ok(None);
        }
        let mut de = serde_json::Deserializer::from_str(at.get());
        let found = serde::Deserializer::deserialize_any(&mut de, Member(&token))
            .map_err(|e| BadPage(format!("{pointer} of the answer cannot be read ({e})")))?;
        match found {
            Some(next) => at = next,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// The leaf at `pointer` as a `Value` for the paging readers (flags, counts, cursors, URLs),
/// `None` when absent. Only a scalar leaf is parsed: an object or array is read as an empty one
/// of its kind (its type is all a paging reader looks at), so a pointer naming a large member
/// costs nothing.
pub fn pointer(doc: Option<&RawValue>, pointer: &str) -> Result<Option<Value>, BadPage> {
    let Some(doc) = doc else { return Ok(None) };
    let Some(leaf) = locate(doc, pointer)? else { return Ok(None) };
    let text = leaf.get().trim_start();
    if text.starts_with('{') {
        return Ok(Some(Value::Object(serde_json::Map::new())));
    }
    if text.starts_with('[') {
        return Ok(Some(Value::Array(vec![])));
    }
    serde_json::from_str(text).map(Some).map_err(|e| BadPage(format!("{pointer} of the answer cannot be read ({e})")))
}

/// Visits one JSON container and keeps the member (object) or item (array) named by a pointer
/// token, skipping the rest unread (`IgnoredAny` allocates nothing).
struct Member<'t>(&'t str);

impl<'de> serde::de::Visitor<'de> for Member<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // RFC 6901: an index is `0` or digits without a leading zero.
        let index = match self.0.parse::<usize>() {
            Ok(i) if self.0 == "0" || !self.0.starts_with('0') => Some(i),
            _ => None,
        };
        let mut found = None;
        let mut n = 0usize;
        loop {
            if Some(n) == index {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<serde::de::IgnoredAny>()?.is_none() {
                break;
            }
            n += 1;
        }
        Ok(found)
    }
}

/// Reads a JSON array item by item: the first `.0` items kept (each its own small copy), the
/// rest skipped unread; the flag says whether any was skipped.
struct CappedItems(usize);

impl<'de> serde::de::DeserializeSeed<'de> for CappedItems {
    type Value = (Vec<Box<RawValue>>, bool);

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CappedItems {
    type Value = (Vec<Box<RawValue>>, bool);

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while items.len() < self.0 {
            match seq.next_element::<&'de RawValue>()? {
                Some(v) => items.push(v.to_owned()),
                None => return Ok((items, false)),
            }
        }
        let mut overflow = false;
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            overflow = true;
        }
        Ok((items, overflow))
    }
}

/// One record: its dedupe key (the id at the pointer, or the SHA-256 of its canonical JSON)
/// and its time; a record without either is rejected with the reason.
pub fn read_record(raw: Box<RawValue>, answer: &AnswerDef) -> Result<Record, Rejected> {
    let text = raw.get().as_bytes();
    let reject = |key: String, reason: String| Rejected { key, reason, raw: text.to_vec() };
    let value: Value = match serde_json::from_str(raw.get()) {
        Ok(v @ Value::Object(_)) => v,
        _ => return Err(reject(crate::sources::content_key(text), "record is not a JSON object".into())),
    };
    let key = match &answer.id {
        RecordId::Hash => hash_key(&value),
        RecordId::Pointer(p) => match value.pointer(p) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(reject(crate::sources::content_key(text), format!("record has no usable id at {p:?}"))),
        },
    };
    let time = match value.pointer(&answer.time).and_then(|v| parse_time(v, answer.time_format)) {
        Some(t) => t,
        None => return Err(reject(key, format!("record has no usable time at {:?}", answer.time))),
    };
    Ok(Record { key, time, raw })
}

/// `sha256:` and the hex SHA-256 of the record's canonical JSON (object keys sorted, no
/// spaces): the same record gives the same key however the vendor ordered its fields.
pub fn hash_key(value: &Value) -> String {
    use sha2::Digest as _;
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    let hash = sha2::Sha256::digest(canonical.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(item) = map.get(k) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests;
