//! One OCSF event in, one syslog message out: RFC 5424, or legacy RFC 3164 for receivers that
//! cannot parse 5424 (PROTOCOLS.md §1b).
//!
//! This module owns the wire text of a single message: PRI, timestamp, header field limits and
//! character sets, structured-data escaping, the UTF-8 BOM, and cutting an oversized message to
//! `max_message_size`. It is pure: no I/O, no clock (the timestamp is the event's own `time`, never
//! the send time) and no configuration parsing. Framing (octet counting or LF), transports,
//! batching, retries and the dead-letter table belong to `syslog.rs`; validating the facility range
//! and the SD-ID syntax belongs to `syslog/config.rs` (we still sanitise, so a bad value cannot produce an
//! unparseable message).

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{Oversize, SyslogFormat};
use crate::ocsf::summary::{Summary, summarize};

/// Ends each string value cut short in an oversized message (or, when cutting strings is not
/// enough, the message cut at its end) so a reader of the SIEM sees what is incomplete.
pub const TRUNCATION_MARKER: &str = "...[truncated by auditrelay]";

/// RFC 5424 NILVALUE: what an empty or unknown field is sent as.
const NILVALUE: &str = "-";
/// RFC 5424 §6: field limits, in PRINTUSASCII characters (= bytes).
const HOSTNAME_MAX: usize = 255;
const APP_NAME_MAX: usize = 48;
const PROCID_MAX: usize = 128;
const SD_NAME_MAX: usize = 32;
/// RFC 3164 §4.1.3: the TAG is at most 32 alphanumeric characters.
const TAG_MAX: usize = 32;
/// RFC 3164 TAG when the configured app name has no alphanumeric character left: a message
/// without a TAG makes receivers read the first word of the JSON as one.
const TAG_FALLBACK: &str = "auditrelay";

/// Everything in a message that does not come from the event; built once per sink.
#[derive(Debug, Clone)]
pub struct Header {
    pub format: SyslogFormat,
    /// 0..=23, validated by `syslog/config.rs`.
    pub facility: u8,
    pub hostname: String,
    pub app_name: String,
    /// `"-"` for none.
    pub procid: String,
    /// SD-ID like `ocsf@32473`, validated by `syslog/config.rs`; `None` sends `-` as STRUCTURED-DATA.
    pub sd_id: Option<String>,
}

impl Header {
    /// Sanitises every field to its RFC 5424 length limit and PRINTUSASCII ("-" when empty).
    ///
    /// Characters outside PRINTUSASCII (33..=126, so also spaces and all non-ASCII) are dropped
    /// rather than replaced: a hostname like `büro 1` becomes `bro1`, which is still one token
    /// a receiver can parse, and there is no replacement character that could not collide with a
    /// real name anyway. The SD-ID additionally loses `=`, `]` and `"` (RFC 5424 SD-NAME); if
    /// nothing is left, no structured-data element is sent.
    pub fn new(
        format: SyslogFormat,
        facility: u8,
        hostname: &str,
        app_name: &str,
        procid: &str,
        sd_id: Option<&str>,
    ) -> Header {
        Header {
            format,
            facility,
            hostname: printusascii_or_nil(hostname, HOSTNAME_MAX),
            app_name: printusascii_or_nil(app_name, APP_NAME_MAX),
            procid: printusascii_or_nil(procid, PROCID_MAX),
            sd_id: sd_id.map(sd_name).filter(|id| !id.is_empty()),
        }
    }
}

/// How an event fit into `max_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    Whole,
    /// `original_len` is the length the whole message would have had.
    Truncated {
        original_len: usize,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("message of {len} bytes exceeds max_message_size {max}")]
    TooLarge { len: usize, max: usize },
    #[error("queued body is not an OCSF event: {0}")]
    NotAnEvent(String),
}

/// Syslog severity (RFC 5424 table 2) for an OCSF `severity_id`.
///
/// OCSF's "Informational" and "Unknown" are routine audit records, so they map to syslog
/// informational; "Other" (99) and unknown ids map to notice, so they are not filtered out by a
/// receiver that drops info but are not raised to a warning either.
pub fn syslog_severity(severity_id: Option<u64>) -> u8 {
    match severity_id {
        Some(0 | 1) | None => 6, // Unknown, Informational -> info
        Some(2) => 5,            // Low -> notice
        Some(3) => 4,            // Medium -> warning
        Some(4) => 3,            // High -> err
        Some(5) => 2,            // Critical -> crit
        Some(6) => 1,            // Fatal -> alert
        Some(_) => 5,            // Other (99) and anything else -> notice
    }
}

/// Appends one message for the OCSF event `body` (no framing) to `out`.
///
/// If the whole message is longer than `max_len` bytes: with [`Oversize::Truncate`] the message
/// is cut to at most `max_len` bytes (returns [`Fit::Truncated`] with the untruncated length);
/// with [`Oversize::DeadLetter`] nothing is appended and `Err(TooLarge)` returned. A cut takes
/// the event's longest string values first (`raw_data`, a long `message` or vendor value), each
/// cut at a character boundary and ended with [`TRUNCATION_MARKER`], and never touches the
/// top-level `metadata` (serialized last: `uid`, `event_code`, product, tenant), keys, numbers
/// or the JSON's structure, so the event stays JSON a SIEM can parse and deduplicate. Only when
/// cutting those strings is not enough is the JSON cut at its end, the marker appended. If even
/// the header and the marker do not fit, `Err(TooLarge)` in both modes. On any `Err`, `out` is
/// left exactly as it was.
pub fn format_event(
    header: &Header,
    body: &[u8],
    max_len: usize,
    oversize: Oversize,
    out: &mut Vec<u8>,
) -> Result<Fit, FormatError> {
    // MSG is declared UTF-8 (the BOM) and is cut at character boundaries, so check it up front;
    // serde_json does not validate the strings it skips.
    let body = std::str::from_utf8(body).map_err(|e| FormatError::NotAnEvent(e.to_string()))?;
    let fields = summarize(body.as_bytes()).map_err(FormatError::NotAnEvent)?;
    let prefix = match header.format {
        SyslogFormat::Rfc5424 => prefix_5424(header, &fields),
        SyslogFormat::Rfc3164 => prefix_3164(header, &fields),
    };
    append_fitted(&prefix, body, max_len, oversize, out)
}

/// [`format_event`] of an event as sent, when its whole message fits `max_len`: `stored`, the
/// event as queued, written with its stamp `stamp` after its first `head` bytes
/// ([`crate::ocsf::splice`]), straight into `out` with no stamped copy of the event first.
/// The message is the one [`format_event`] makes of the stamped event: the header is read from
/// the stored event (the stamp changes none of the attributes it reads; a stored event that
/// reads whole reads the same stamped), and the stamp is ASCII with no CR or LF. `None`, with
/// `out` untouched, for anything else (a message too large, a body that is not an event): the
/// caller then formats a stamped copy with [`format_event`], for the same result as before.
pub fn format_whole_stamped(
    header: &Header,
    stored: &[u8],
    (head, stamp): (&[u8], Option<crate::ocsf::Stamp>),
    max_len: usize,
    out: &mut Vec<u8>,
) -> Option<Fit> {
    let head = std::str::from_utf8(head).ok()?;
    let fields = summarize(stored).ok()?;
    let prefix = match header.format {
        SyslogFormat::Rfc5424 => prefix_5424(header, &fields),
        SyslogFormat::Rfc3164 => prefix_3164(header, &fields),
    };
    let whole_len = prefix.len() + head.len() + stamp.map_or(0, crate::ocsf::Stamp::len);
    if whole_len > max_len {
        return None;
    }
    out.reserve(whole_len);
    out.extend_from_slice(prefix.as_bytes());
    push_one_line(head, out);
    if let Some(stamp) = stamp {
        use std::io::Write as _;
        // Writing into a `Vec` cannot fail.
        let _ = write!(out, "{stamp}");
    }
    Some(Fit::Whole)
}

/// Everything before the JSON: `HEADER SP STRUCTURED-DATA SP BOM`.
fn prefix_5424(header: &Header, fields: &Summary<'_>) -> String {
    let pri = pri(header.facility, fields.severity_id);
    let timestamp = event_time(fields.time).map_or_else(|| NILVALUE.to_owned(), |t| rfc3339_micros(&t));
    // A class uid is at most 20 digits, so MSGID stays within its 32-character limit.
    let msgid = fields.class_uid.map_or_else(|| NILVALUE.to_owned(), |uid| format!("OCSF{uid}"));
    let mut prefix = format!("<{pri}>1 {timestamp} {} {} {} {msgid} ", header.hostname, header.app_name, header.procid);
    push_structured_data(&mut prefix, header.sd_id.as_deref(), fields);
    prefix.push(' ');
    prefix.push('\u{FEFF}'); // RFC 5424 §6.4: MSG in UTF-8 starts with the BOM (EF BB BF).
    prefix
}

/// Everything before the JSON: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PROCID]: `.
///
/// RFC 3164 timestamps have no year and no zone; we send the event time in UTC, and receivers
/// must be told so. An event without a usable time gets neither TIMESTAMP nor HOSTNAME, the
/// form RFC 3164 §4.3.2 tells relays and collectors to complete with their own (inventing a
/// date would be worse). The MSG carries no BOM: 3164 receivers predate it.
fn prefix_3164(header: &Header, fields: &Summary<'_>) -> String {
    let pri = pri(header.facility, fields.severity_id);
    let tag: String = header.app_name.chars().filter(char::is_ascii_alphanumeric).take(TAG_MAX).collect();
    let tag = if tag.is_empty() { TAG_FALLBACK } else { tag.as_str() };
    // `[`, `]` and `:` would end `TAG[PROCID]:` early for every parser.
    let procid: String = header.procid.chars().filter(|c| !matches!(c, '[' | ']' | ':')).collect();
    let pid = if procid.is_empty() || procid == NILVALUE { String::new() } else { format!("[{procid}]") };
    match event_time(fields.time) {
        Some(t) => {
            // `%b` is the English month abbreviation, `%e` the day padded with a space (`Nov  1`).
            format!("<{pri}>{} {} {tag}{pid}: ", t.format("%b %e %H:%M:%S"), header.hostname)
        }
        None => format!("<{pri}>{tag}{pid}: "),
    }
}

/// `prefix` + `body`, or the cut-down version of it, appended to `out`; see [`format_event`].
fn append_fitted(
    prefix: &str,
    body: &str,
    max_len: usize,
    oversize: Oversize,
    out: &mut Vec<u8>,
) -> Result<Fit, FormatError> {
    let whole_len = prefix.len() + body.len();
    if whole_len <= max_len {
        out.reserve(whole_len);
        out.extend_from_slice(prefix.as_bytes());
        push_one_line(body, out);
        return Ok(Fit::Whole);
    }
    let too_large = FormatError::TooLarge { len: whole_len, max: max_len };
    match oversize {
        Oversize::DeadLetter => Err(too_large),
        Oversize::Truncate => {
            if let Some(cut) = cut_longest_strings(body, whole_len - max_len) {
                out.reserve(prefix.len() + cut.len());
                out.extend_from_slice(prefix.as_bytes());
                push_one_line(&cut, out);
                return Ok(Fit::Truncated { original_len: whole_len });
            }
            let Some(budget) = max_len.checked_sub(prefix.len() + TRUNCATION_MARKER.len()) else {
                return Err(too_large);
            };
            let kept = &body[..floor_char_boundary(body, budget)];
            out.reserve(max_len);
            out.extend_from_slice(prefix.as_bytes());
            push_one_line(kept, out);
            out.extend_from_slice(TRUNCATION_MARKER.as_bytes());
            Ok(Fit::Truncated { original_len: whole_len })
        }
    }
}

/// The JSON object `body` made at least `excess` bytes shorter by cutting its longest string
/// values, longest first, each to a start of it (whole characters and escapes) followed by
/// [`TRUNCATION_MARKER`], and each only as far as needed; `None` if cutting every string value
/// outside the top-level `metadata` is not enough. Keys, numbers, `metadata` and the structure
/// are kept, so the result is still JSON. `body` is valid JSON (`format_event` parsed it).
fn cut_longest_strings(body: &str, excess: usize) -> Option<String> {
    let bytes = body.as_bytes();
    let mut strings = cuttable_strings(bytes)?;
    strings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    // (the string's content, how many of its bytes are kept)
    let mut cuts = Vec::new();
    let mut missing = excess;
    for string in strings {
        if missing == 0 {
            break;
        }
        // A string no longer than the marker saves nothing, nor do the shorter ones after it.
        let most = string.len().checked_sub(TRUNCATION_MARKER.len()).filter(|n| *n > 0)?;
        let keep = unit_floor(&bytes[string.clone()], most.saturating_sub(missing));
        missing = missing.saturating_sub(string.len() - keep - TRUNCATION_MARKER.len());
        cuts.push((string, keep));
    }
    if missing > 0 {
        return None;
    }
    cuts.sort_by_key(|(string, _)| string.start);
    let mut out = String::with_capacity(body.len());
    let mut at = 0;
    for (string, keep) in cuts {
        out.push_str(&body[at..string.start + keep]);
        out.push_str(TRUNCATION_MARKER);
        at = string.end;
    }
    out.push_str(&body[at..]);
    Some(out)
}

/// The content (between the quotes, escaped) of each string value of the JSON object `body`,
/// except object keys and the strings of its top-level `metadata`. `None` if `body` is not
/// well-formed JSON after all.
fn cuttable_strings(body: &[u8]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut strings = Vec::new();
    // The containers open around the current token, innermost last: true for an object.
    let mut open: Vec<bool> = Vec::new();
    let mut key_next = false;
    let mut in_metadata = false;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let start = i + 1;
                let mut end = start;
                while *body.get(end)? != b'"' {
                    end += if body[end] == b'\\' { 2 } else { 1 };
                }
                if key_next {
                    if open.len() == 1 {
                        in_metadata = &body[start..end] == b"metadata";
                    }
                    key_next = false;
                } else if !in_metadata {
                    strings.push(start..end);
                }
                i = end;
            }
            b'{' => {
                open.push(true);
                key_next = true;
            }
            b'[' => open.push(false),
            b'}' | b']' => {
                open.pop()?;
            }
            b',' => key_next = *open.last()?,
            _ => {}
        }
        i += 1;
    }
    Some(strings)
}

/// The largest length at most `at` of a start of the escaped JSON string content `content` that
/// ends between whole characters and whole escapes (a `\uD83D\uDE00` surrogate pair is one).
fn unit_floor(content: &[u8], at: usize) -> usize {
    let hex = |from: usize| {
        let digits = content.get(from..from + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut len = 0;
    while len < content.len() {
        let unit = match content[len] {
            b'\\' if content.get(len + 1) == Some(&b'u') => {
                let pair = matches!(hex(len + 2), Some(0xD800..=0xDBFF))
                    && content.get(len + 6..len + 8) == Some(&b"\\u"[..])
                    && matches!(hex(len + 8), Some(0xDC00..=0xDFFF));
                if pair { 12 } else { 6 }
            }
            b'\\' => 2,
            b if b < 0x80 => 1,
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            _ => 2,
        };
        if len + unit > at {
            break;
        }
        len += unit;
    }
    len
}

/// Appends the JSON with any raw CR or LF turned into a space, so the message stays one line for
/// LF framing and line-based receivers. Compact serde_json output has none, and inside JSON they
/// can only be whitespace between tokens, so the JSON stays valid and the same length.
fn push_one_line(body: &str, out: &mut Vec<u8>) {
    out.extend(body.bytes().map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
}

/// The STRUCTURED-DATA field: `-`, or one element with the event's identifying fields (each
/// param only when the event has it), so a SIEM can route and filter without parsing the JSON.
fn push_structured_data(out: &mut String, sd_id: Option<&str>, fields: &Summary<'_>) {
    let Some(sd_id) = sd_id else {
        out.push_str(NILVALUE);
        return;
    };
    out.push('[');
    out.push_str(sd_id);
    let numbers =
        [("class_uid", fields.class_uid), ("activity_id", fields.activity_id), ("severity_id", fields.severity_id)];
    for (name, value) in numbers {
        if let Some(value) = value {
            out.push_str(&format!(" {name}=\"{value}\""));
        }
    }
    let texts = [("vendor", fields.vendor()), ("tenant", fields.tenant()), ("uid", fields.uid())];
    for (name, value) in texts {
        if let Some(value) = value {
            out.push(' ');
            out.push_str(name);
            out.push_str("=\"");
            push_param_value(out, value);
            out.push('"');
        }
    }
    out.push(']');
}

/// RFC 5424 §6.3.3 PARAM-VALUE: UTF-8 with `"`, `\` and `]` escaped by a backslash. Control
/// characters (a decoded `\n` in a tenant name, say) become spaces: the RFC has no escape for
/// them and they would break LF framing and line-based receivers.
fn push_param_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
}

/// PRI value; at most 191 for a validated facility. `u16` so a bad facility cannot overflow.
fn pri(facility: u8, severity_id: Option<u64>) -> u16 {
    u16::from(facility) * 8 + u16::from(syslog_severity(severity_id))
}

/// The event time, if it has one that RFC 3339 can write (a four-digit year).
fn event_time(millis: Option<i64>) -> Option<DateTime<Utc>> {
    let time = DateTime::<Utc>::from_timestamp_millis(millis?)?;
    (0..=9999).contains(&time.year()).then_some(time)
}

/// RFC 3339 in UTC with exactly six fractional digits, the most RFC 5424 allows:
/// `2026-11-21T20:26:50.597000Z`.
fn rfc3339_micros(t: &DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_micros()
    )
}

/// `value` with everything outside PRINTUSASCII dropped, cut to `max` characters; `-` if empty.
fn printusascii_or_nil(value: &str, max: usize) -> String {
    let kept: String = value.chars().filter(|c| matches!(c, '!'..='~')).take(max).collect();
    if kept.is_empty() { NILVALUE.to_owned() } else { kept }
}

/// `value` reduced to an RFC 5424 SD-NAME: PRINTUSASCII without `=`, `]`, `"`, at most 32.
fn sd_name(value: &str) -> String {
    value.chars().filter(|c| matches!(c, '!'..='~') && !matches!(c, '=' | ']' | '"')).take(SD_NAME_MAX).collect()
}

/// The largest char boundary of `s` at or below `index` (`str::floor_char_boundary` is newer
/// than our MSRV).
fn floor_char_boundary(s: &str, index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    // Terminates: 0 is always a boundary.
    (0..=index).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, TimeZone};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};
    use syslog_loose::{Message, ProcId, Variant};

    use super::*;

    /// A ConfigCat event as the mapper writes it (shortened), with a `"` and a `]` in the tenant.
    const EVENT: &str = concat!(
        r#"{"class_uid":6003,"class_name":"API Activity","category_uid":6,"activity_id":1,"#,
        r#""activity_name":"Create","severity_id":2,"severity":"Low","time":1795292810597,"#,
        r#""message":"Feature flag created","metadata":{"version":"1.8.0","#,
        r#""product":{"name":"ConfigCat","vendor_name":"ConfigCat"},"#,
        r#""uid":"a7b95de6-6895-5b23-8e16-e27dde821a6a","tenant_uid":"org \"main\" [eu]\\1"},"#,
        r#""actor":{"user":{"name":"Amara Osei","email_addr":"amara.osei@example.com"}}}"#
    );

    fn header(format: SyslogFormat, sd_id: Option<&str>) -> Header {
        Header::new(format, 13, "relay-01.example.com", "auditrelay", "4242", sd_id)
    }

    fn format(header: &Header, body: &str, max_len: usize, oversize: Oversize) -> Result<(String, Fit), FormatError> {
        let mut out = Vec::new();
        let fit = format_event(header, body.as_bytes(), max_len, oversize, &mut out)?;
        Ok((String::from_utf8(out).unwrap(), fit))
    }

    fn whole(header: &Header, body: &str) -> String {
        let (text, fit) = format(header, body, usize::MAX, Oversize::Truncate).unwrap();
        assert_eq!(fit, Fit::Whole);
        text
    }

    #[test]
    fn golden_5424_with_structured_data() {
        let header = header(SyslogFormat::Rfc5424, Some("ocsf@32473"));
        // facility 13 (log audit) * 8 + severity 5 (Low -> notice) = 109.
        let expected = format!(
            "<109>1 2026-11-21T20:26:50.597000Z relay-01.example.com auditrelay 4242 OCSF6003 \
             [ocsf@32473 class_uid=\"6003\" activity_id=\"1\" severity_id=\"2\" vendor=\"ConfigCat\" \
             tenant=\"org \\\"main\\\" [eu\\]\\\\1\" uid=\"a7b95de6-6895-5b23-8e16-e27dde821a6a\"] \u{FEFF}{EVENT}"
        );
        assert_eq!(whole(&header, EVENT), expected);
    }

    #[test]
    fn golden_5424_without_structured_data() {
        let header = header(SyslogFormat::Rfc5424, None);
        let expected = format!(
            "<109>1 2026-11-21T20:26:50.597000Z relay-01.example.com auditrelay 4242 OCSF6003 - \u{FEFF}{EVENT}"
        );
        assert_eq!(whole(&header, EVENT), expected);
        // The BOM is the three bytes EF BB BF right before the JSON.
        let bytes = whole(&header, EVENT).into_bytes();
        let at = bytes.len() - EVENT.len();
        assert_eq!(&bytes[at - 4..at], b" \xEF\xBB\xBF");
    }

    #[test]
    fn golden_3164() {
        let header = header(SyslogFormat::Rfc3164, Some("ocsf@32473"));
        assert_eq!(
            whole(&header, EVENT),
            format!("<109>Nov 21 20:26:50 relay-01.example.com auditrelay[4242]: {EVENT}")
        );
    }

    #[test]
    fn rfc3164_pads_the_day_with_a_space_and_drops_a_nil_procid() {
        // 2026-11-01T03:04:05Z; app name loses its non-alphanumeric characters.
        let header = Header::new(SyslogFormat::Rfc3164, 16, "h", "audit-relay.v2", "-", None);
        let body = r#"{"time":1793502245000,"severity_id":5}"#;
        assert_eq!(whole(&header, body), format!("<130>Nov  1 03:04:05 h auditrelayv2: {body}"));
    }

    #[test]
    fn rfc3164_without_a_time_leaves_timestamp_and_hostname_to_the_receiver() {
        let header = Header::new(SyslogFormat::Rfc3164, 1, "h", "--", "7", None);
        let body = r#"{"class_uid":1}"#;
        assert_eq!(whole(&header, body), format!("<14>auditrelay[7]: {body}"));
    }

    #[test]
    fn severity_table() {
        let table = [
            (None, 6),
            (Some(0), 6),
            (Some(1), 6),
            (Some(2), 5),
            (Some(3), 4),
            (Some(4), 3),
            (Some(5), 2),
            (Some(6), 1),
            (Some(7), 5),
            (Some(99), 5),
            (Some(u64::MAX), 5),
        ];
        for (severity_id, severity) in table {
            assert_eq!(syslog_severity(severity_id), severity, "severity_id {severity_id:?}");
        }
    }

    #[test]
    fn sd_values_escape_quote_backslash_and_bracket() {
        let header = Header::new(SyslogFormat::Rfc5424, 1, "h", "a", "-", Some("x@32473"));
        let body = json!({"metadata": {"uid": r#"a"b\c]d[e"#, "tenant_uid": "line\nbreak"}}).to_string();
        let text = whole(&header, &body);
        assert!(text.contains(r#"[x@32473 tenant="line break" uid="a\"b\\c\]d[e"]"#), "{text}");
    }

    #[test]
    fn missing_fields_are_nil_and_params_are_omitted() {
        let header = Header::new(SyslogFormat::Rfc5424, 0, "", "", "", Some("x@1"));
        assert_eq!(whole(&header, "{}"), "<6>1 - - - - - [x@1] \u{FEFF}{}");
    }

    #[test]
    fn times_rfc3339_cannot_write_are_nil() {
        let header = header(SyslogFormat::Rfc5424, None);
        for time in
            [i64::MAX, i64::MIN, 253_402_300_800_000 /* year 10000 */, -62_167_219_200_001 /* year -1 */]
        {
            let text = whole(&header, &format!(r#"{{"time":{time}}}"#));
            assert!(text.starts_with("<110>1 - "), "{time}: {text}");
        }
        assert!(whole(&header, r#"{"time":-1}"#).starts_with("<110>1 1969-12-31T23:59:59.999000Z "));
    }

    #[test]
    fn header_fields_are_sanitised() {
        let long = "a".repeat(300);
        let header =
            Header::new(SyslogFormat::Rfc5424, 3, &format!("büro 1\n{long}"), &long, "p i d", Some("my id=\"x\"]@1"));
        assert_eq!(header.hostname, format!("bro1{}", &long[..251]));
        assert_eq!(header.app_name, long[..48]);
        assert_eq!(header.procid, "pid");
        assert_eq!(header.sd_id.as_deref(), Some("myidx@1"));
        assert_eq!(Header::new(SyslogFormat::Rfc5424, 3, "é", " ", "\t", Some("é")).sd_id, None);
    }

    #[test]
    fn raw_line_breaks_in_the_body_become_spaces() {
        let header = header(SyslogFormat::Rfc5424, None);
        let text = whole(&header, "{\n\"time\":0,\r\n\"x\":1}");
        assert!(text.ends_with("\u{FEFF}{ \"time\":0,  \"x\":1}"), "{text}");
    }

    #[test]
    fn bodies_that_are_not_events_are_rejected() {
        let header = header(SyslogFormat::Rfc5424, None);
        for body in [&b"[1,2,3,4,5]"[..], b"\"x\"", b"{", b"{\"time\":\"yesterday\"}", b"{\"a\":\"\xff\"}", b""] {
            let mut out = b"kept".to_vec();
            let result = format_event(&header, body, usize::MAX, Oversize::Truncate, &mut out);
            assert!(matches!(result, Err(FormatError::NotAnEvent(_))), "{body:?}: {result:?}");
            assert_eq!(out, b"kept");
        }
    }

    #[test]
    fn truncation_cuts_at_a_char_boundary_and_marks_the_cut() {
        let header = header(SyslogFormat::Rfc5424, Some("ocsf@32473"));
        let body = json!({"time": 1795292810597_i64, "message": "ünïcödé €😀 ".repeat(40)}).to_string();
        let full = whole(&header, &body);
        let prefix_len = full.len() - body.len();
        let message = json!("ünïcödé €😀 ".repeat(40));
        for max_len in (full.len() - 200)..full.len() {
            let (text, fit) = format(&header, &body, max_len, Oversize::Truncate).unwrap();
            assert_eq!(fit, Fit::Truncated { original_len: full.len() });
            assert!(text.len() <= max_len && text.len() + 4 > max_len, "{max_len}: {}", text.len());
            let cut: Value = serde_json::from_str(&text[prefix_len..]).unwrap();
            let kept = cut["message"].as_str().unwrap().strip_suffix(TRUNCATION_MARKER).unwrap();
            assert!(message.as_str().unwrap().starts_with(kept));
            assert_eq!(cut["time"], 1795292810597_i64);
        }
        // Strings too short to be worth a cut: the JSON's end is cut, and marked.
        let body = json!({"time": 1795292810597_i64, "n": (0..200).collect::<Vec<u32>>(), "s": "short"}).to_string();
        let full = whole(&header, &body);
        for max_len in (full.len() - 200)..full.len() {
            let (text, fit) = format(&header, &body, max_len, Oversize::Truncate).unwrap();
            assert_eq!(fit, Fit::Truncated { original_len: full.len() });
            assert!(text.len() <= max_len && text.len() + 4 > max_len, "{max_len}: {}", text.len());
            assert!(full.starts_with(text.strip_suffix(TRUNCATION_MARKER).unwrap()));
        }
        let body = json!({"time": 1795292810597_i64, "message": "ünïcödé €😀 ".repeat(40)}).to_string();
        let full = whole(&header, &body);
        // Appends after what `out` already holds.
        let mut out = b"before|".to_vec();
        let fit = format_event(&header, body.as_bytes(), 300, Oversize::Truncate, &mut out).unwrap();
        assert_eq!(fit, Fit::Truncated { original_len: full.len() });
        assert!(out.starts_with(b"before|<110>1 ") && out.len() <= 7 + 300);
    }

    /// A stored event of the current shape (`metadata` last, after the record in `raw_data` and
    /// the vendor's leftovers in `unmapped`), sent as the sink worker sends it: stamped.
    fn sent_event() -> String {
        let record = json!({"id": "r1", "note": "ünï \"quoted\" \\ back\nline 😀 ".repeat(60)}).to_string();
        let stored = format!(
            concat!(
                r#"{{"class_uid":6003,"class_name":"API Activity","category_uid":6,"activity_id":1,"#,
                r#""severity_id":2,"severity":"Low","time":1795292810597,"message":{message},"#,
                r#""raw_data":{raw},"raw_data_size":{size},"unmapped":{{"payload":{payload},"tag":"t"}},"#,
                r#""metadata":{{"version":"1.8.0","product":{{"name":"ConfigCat","vendor_name":"ConfigCat"}},"#,
                r#""uid":"a7b95de6-6895-5b23-8e16-e27dde821a6a","event_code":"flagCreated","#,
                r#""tenant_uid":"org-1","processed_time":1795292815597,"loggers":[{{"name":"auditrelay","#,
                r#""product":{{"name":"auditrelay","vendor_name":"auditrelay","version":"0.1.0"}},"#,
                r#""logged_time":1795292815597}}]}}}}"#
            ),
            message = Value::from("Feature flag created ".repeat(15)),
            raw = Value::from(record.as_str()),
            size = record.len(),
            payload = Value::from("{\"a\":\"\u{1}ü\"}".repeat(40)),
        );
        let mut sent = Vec::new();
        crate::ocsf::stamp_transmit_time(stored.as_bytes(), 1_795_292_820_000, &mut sent);
        assert_ne!(sent, stored.as_bytes(), "stamped");
        String::from_utf8(sent).unwrap()
    }

    /// Each string of `cut` is the same in `full`, or a start of it followed by the marker.
    fn assert_cut_from(cut: &Value, full: &Value, path: &str) {
        match (cut, full) {
            (Value::String(c), Value::String(f)) if c != f => {
                let kept = c.strip_suffix(TRUNCATION_MARKER).unwrap_or_else(|| panic!("{path}: changed, unmarked"));
                assert!(f.starts_with(kept), "{path}: not a start of the original");
            }
            (Value::Object(c), Value::Object(f)) => {
                assert!(c.keys().eq(f.keys()), "{path}: keys");
                for (k, v) in c {
                    assert_cut_from(v, &f[k], &format!("{path}.{k}"));
                }
            }
            (Value::Array(c), Value::Array(f)) => {
                assert_eq!(c.len(), f.len(), "{path}");
                for (i, (c, f)) in c.iter().zip(f).enumerate() {
                    assert_cut_from(c, f, &format!("{path}[{i}]"));
                }
            }
            (c, f) => assert_eq!(c, f, "{path}"),
        }
    }

    /// Adversarial review of issue 17 (F7): `metadata` is serialized last (the sink stamps the
    /// send time there), so cutting the JSON's end took `uid`, `event_code`, `tenant_uid` and the
    /// product first. A truncated event keeps them: its longest strings are cut instead, and the
    /// JSON stays whole.
    #[test]
    fn truncation_keeps_metadata_and_cuts_the_longest_strings_first() {
        let header = header(SyslogFormat::Rfc3164, None);
        let sent = sent_event();
        let full = whole(&header, &sent);
        let prefix_len = full.len() - sent.len();
        let event: Value = serde_json::from_str(&sent).unwrap();
        let raw_len = event["raw_data"].as_str().unwrap().len();
        for max_len in [full.len() - 1, full.len() - 61, full.len() - raw_len / 2, full.len() - raw_len - 200, 900] {
            let (text, fit) = format(&header, &sent, max_len, Oversize::Truncate).unwrap();
            assert_eq!(fit, Fit::Truncated { original_len: full.len() });
            assert!(text.len() <= max_len, "{max_len}: {}", text.len());
            assert_eq!(text[..prefix_len], full[..prefix_len]);
            let got: Value = serde_json::from_str(&text[prefix_len..]).expect("the cut event is still JSON");
            assert_eq!(got["metadata"], event["metadata"], "{max_len}: metadata kept whole");
            assert_cut_from(&got, &event, "");
            let raw = got["raw_data"].as_str().unwrap();
            assert!(raw.ends_with(TRUNCATION_MARKER), "{max_len}: raw_data, the longest, is cut first");
            if max_len > full.len() - raw_len / 2 {
                assert_eq!(got["message"], event["message"], "{max_len}: only as much as needed is cut");
            }
        }
    }

    #[test]
    fn dead_letter_mode_and_hopeless_sizes_leave_out_unchanged() {
        let header = header(SyslogFormat::Rfc5424, Some("ocsf@32473"));
        let full = whole(&header, EVENT);
        let too_large = Err(FormatError::TooLarge { len: full.len(), max: full.len() - 1 });
        let mut out = b"kept".to_vec();
        let result = format_event(&header, EVENT.as_bytes(), full.len() - 1, Oversize::DeadLetter, &mut out);
        assert_eq!(result, too_large);
        assert_eq!(out, b"kept");
        // Header + marker alone exceed 100 bytes: too large even when truncating.
        let result = format_event(&header, EVENT.as_bytes(), 100, Oversize::Truncate, &mut out);
        assert_eq!(result, Err(FormatError::TooLarge { len: full.len(), max: 100 }));
        assert_eq!(out, b"kept");
        // Exactly fitting is whole, in both modes.
        for mode in [Oversize::DeadLetter, Oversize::Truncate] {
            assert_eq!(format(&header, EVENT, full.len(), mode).unwrap(), (full.clone(), Fit::Whole));
        }
    }

    // ---- properties ----

    /// Any Unicode (controls, spaces, astral planes), or mostly-ASCII text with the characters
    /// that need escaping or confuse parsers, so both get exercised.
    fn text(max: usize) -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter),
            proptest::string::string_regex(&format!("[ -~é€😀\\n\\t]{{0,{max}}}")).unwrap(),
        ]
    }

    fn time() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            1 => Just(None),
            // Years 1 to 9999: what RFC 3339 can write.
            4 => (-62_135_596_800_000_i64..253_402_300_800_000).prop_map(Some),
            1 => any::<i64>().prop_map(Some),
        ]
    }

    #[derive(Debug, Clone)]
    struct Event {
        time: Option<i64>,
        severity_id: Option<u64>,
        class_uid: Option<u64>,
        activity_id: Option<u64>,
        vendor: Option<String>,
        tenant: Option<String>,
        uid: Option<String>,
        message: String,
    }

    impl Event {
        fn body(&self) -> String {
            let mut event = Map::new();
            let mut meta = Map::new();
            let numbers =
                [("severity_id", self.severity_id), ("class_uid", self.class_uid), ("activity_id", self.activity_id)];
            for (name, value) in numbers {
                if let Some(value) = value {
                    event.insert(name.into(), value.into());
                }
            }
            if let Some(time) = self.time {
                event.insert("time".into(), time.into());
            }
            event.insert("message".into(), self.message.clone().into());
            if let Some(vendor) = &self.vendor {
                meta.insert("product".into(), json!({"name": "x", "vendor_name": vendor}));
            }
            if let Some(tenant) = &self.tenant {
                meta.insert("tenant_uid".into(), tenant.clone().into());
            }
            if let Some(uid) = &self.uid {
                meta.insert("uid".into(), uid.clone().into());
            }
            event.insert("metadata".into(), Value::Object(meta));
            Value::Object(event).to_string()
        }

        /// The SD params we expect, unescaped.
        fn params(&self) -> Vec<(String, String)> {
            let mut params = Vec::new();
            let numbers =
                [("class_uid", self.class_uid), ("activity_id", self.activity_id), ("severity_id", self.severity_id)];
            for (name, value) in numbers {
                if let Some(value) = value {
                    params.push((name.to_owned(), value.to_string()));
                }
            }
            let texts = [("vendor", &self.vendor), ("tenant", &self.tenant), ("uid", &self.uid)];
            for (name, value) in texts {
                if let Some(value) = value {
                    let value = value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                    params.push((name.to_owned(), value));
                }
            }
            params
        }
    }

    fn event() -> impl Strategy<Value = Event> {
        let id = || prop_oneof![Just(None), (0_u64..10).prop_map(Some), any::<u64>().prop_map(Some)];
        (
            time(),
            id(),
            id(),
            id(),
            proptest::option::of(text(40)),
            proptest::option::of(text(40)),
            proptest::option::of(text(40)),
            text(200),
        )
            .prop_map(|(time, severity_id, class_uid, activity_id, vendor, tenant, uid, message)| Event {
                time,
                severity_id,
                class_uid,
                activity_id,
                vendor,
                tenant,
                uid,
                message,
            })
    }

    fn header_strategy(format: SyslogFormat) -> impl Strategy<Value = Header> {
        let sd_id = proptest::option::of(prop_oneof![Just("ocsf@32473".to_owned()), text(40)]);
        (0_u8..=23, text(300), text(60), text(150), sd_id).prop_map(move |(facility, host, app, procid, sd_id)| {
            Header::new(format, facility, &host, &app, &procid, sd_id.as_deref())
        })
    }

    fn printusascii(value: &str) -> bool {
        !value.is_empty() && value.bytes().all(|b| (33..=126).contains(&b))
    }

    /// syslog_loose quirks, not RFC rules: it cannot parse a HOSTNAME ending in `:` (it takes
    /// the colon for a 3164 tag separator) nor an APP-NAME or PROCID that is just `:`.
    fn syslog_loose_can_parse(header: &Header) -> bool {
        !header.hostname.ends_with(':') && header.app_name != ":" && header.procid != ":"
    }

    fn nil_to_none(value: &str) -> Option<&str> {
        (value != NILVALUE).then_some(value)
    }

    fn expected_time(time: Option<i64>) -> Option<DateTime<FixedOffset>> {
        event_time(time).map(|t| t.fixed_offset())
    }

    fn check_procid(parsed: Option<&ProcId<&str>>, procid: Option<&str>) {
        match (parsed, procid) {
            (Some(ProcId::PID(pid)), Some(procid)) => assert_eq!(procid.parse::<i32>().ok(), Some(*pid)),
            (Some(ProcId::Name(name)), Some(procid)) => assert_eq!(*name, procid),
            (None, None) => {}
            (parsed, procid) => panic!("procid {parsed:?} != {procid:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn rfc5424_round_trips_through_syslog_loose(header in header_strategy(SyslogFormat::Rfc5424), event in event()) {
            // (b) header fields within their limits and PRINTUSASCII.
            prop_assert!(printusascii(&header.hostname) && header.hostname.len() <= 255);
            prop_assert!(printusascii(&header.app_name) && header.app_name.len() <= 48);
            prop_assert!(printusascii(&header.procid) && header.procid.len() <= 128);
            if let Some(sd_id) = &header.sd_id {
                prop_assert!(printusascii(sd_id) && sd_id.len() <= 32 && !sd_id.contains(['=', ']', '"']));
            }

            let body = event.body();
            let text = whole(&header, &body);
            prop_assert!(!text.contains(['\n', '\r']));
            if !syslog_loose_can_parse(&header) {
                return Ok(());
            }

            // (a) a real parser reads back every field.
            let message: Message<&str> = syslog_loose::parse_message_with_year_exact(&text, |_| 0, Variant::RFC5424).unwrap();
            prop_assert_eq!(message.protocol, syslog_loose::Protocol::RFC5424(1));
            prop_assert_eq!(message.facility.map(|f| f as u8), Some(header.facility));
            prop_assert_eq!(message.severity.map(|s| s as u8), Some(syslog_severity(event.severity_id)));
            prop_assert_eq!(message.timestamp, expected_time(event.time));
            prop_assert_eq!(message.hostname, nil_to_none(&header.hostname));
            prop_assert_eq!(message.appname, nil_to_none(&header.app_name));
            check_procid(message.procid.as_ref(), nil_to_none(&header.procid));
            let msgid = event.class_uid.map(|uid| format!("OCSF{uid}"));
            prop_assert_eq!(message.msgid, msgid.as_deref());
            match &header.sd_id {
                None => prop_assert!(message.structured_data.is_empty()),
                Some(sd_id) => {
                    prop_assert_eq!(message.structured_data.len(), 1);
                    let element = &message.structured_data[0];
                    prop_assert_eq!(element.id, sd_id.as_str());
                    let params: Vec<(String, String)> = element.params().map(|(k, v)| ((*k).to_owned(), v)).collect();
                    prop_assert_eq!(params, event.params());
                }
            }
            prop_assert_eq!(message.msg.strip_prefix('\u{FEFF}'), Some(body.as_str()));
        }

        #[test]
        fn rfc3164_round_trips_through_syslog_loose(header in header_strategy(SyslogFormat::Rfc3164), event in event()) {
            let body = event.body();
            let text = whole(&header, &body);
            prop_assert!(!text.contains(['\n', '\r']));
            let Some(time) = event_time(event.time) else {
                // Checked by an example test; no parser accepts the time-less form as 3164.
                return Ok(());
            };
            if !syslog_loose_can_parse(&header) {
                return Ok(());
            }

            let year = time.year();
            let message = syslog_loose::parse_message_with_year_tz(&text, |_| year, Some(Utc), Variant::RFC3164);
            prop_assert_eq!(message.protocol, syslog_loose::Protocol::RFC3164);
            prop_assert_eq!(message.facility.map(|f| f as u8), Some(header.facility));
            prop_assert_eq!(message.severity.map(|s| s as u8), Some(syslog_severity(event.severity_id)));
            // Whole seconds: 3164 has no fraction.
            let seconds = Utc.timestamp_opt(time.timestamp(), 0).single().map(|t| t.fixed_offset());
            prop_assert_eq!(message.timestamp, seconds);
            prop_assert_eq!(message.hostname, nil_to_none(&header.hostname));
            let tag: String = header.app_name.chars().filter(char::is_ascii_alphanumeric).take(32).collect();
            let tag = if tag.is_empty() { TAG_FALLBACK.to_owned() } else { tag };
            prop_assert_eq!(message.appname, Some(tag.as_str()));
            let procid: String = header.procid.chars().filter(|c| !matches!(c, '[' | ']' | ':')).collect();
            check_procid(message.procid.as_ref(), nil_to_none(&procid).filter(|p| !p.is_empty()));
            prop_assert_eq!(message.msg, body.as_str());
        }

        #[test]
        fn output_never_exceeds_max_len(
            header in prop_oneof![header_strategy(SyslogFormat::Rfc5424), header_strategy(SyslogFormat::Rfc3164)],
            event in event(),
            max_len in 0_usize..700,
            dead_letter in any::<bool>(),
        ) {
            // (c) at most max_len bytes, or an error that leaves `out` alone.
            let body = event.body();
            let full = whole(&header, &body);
            let oversize = if dead_letter { Oversize::DeadLetter } else { Oversize::Truncate };
            let mut out = b"kept".to_vec();
            match format_event(&header, body.as_bytes(), max_len, oversize, &mut out) {
                Ok(Fit::Whole) => prop_assert_eq!(&out[4..], full.as_bytes()),
                Ok(Fit::Truncated { original_len }) => {
                    prop_assert!(!dead_letter);
                    prop_assert_eq!(original_len, full.len());
                    prop_assert!(out.len() - 4 <= max_len);
                    let text = std::str::from_utf8(&out[4..]).unwrap();
                    let prefix_len = full.len() - body.len();
                    prop_assert_eq!(&text[..prefix_len], &full[..prefix_len]);
                    match serde_json::from_str::<Value>(&text[prefix_len..]) {
                        // Its strings cut: metadata whole, the rest kept or cut and marked.
                        Ok(cut) => {
                            let event: Value = serde_json::from_str(&body).unwrap();
                            prop_assert_eq!(&cut["metadata"], &event["metadata"]);
                            assert_cut_from(&cut, &event, "");
                        }
                        // Not enough to cut there: the end is cut.
                        Err(_) => prop_assert!(full.starts_with(text.strip_suffix(TRUNCATION_MARKER).unwrap())),
                    }
                }
                Err(FormatError::TooLarge { len, max }) => {
                    prop_assert_eq!((len, max), (full.len(), max_len));
                    prop_assert!(full.len() > max_len);
                    prop_assert_eq!(out, b"kept".to_vec());
                }
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
