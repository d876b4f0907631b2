//! Astronomer (Astro API v1) organization audit logs — how to ask for a window and read it.
//!
//! Endpoint: `GET {base}/v1/organizations/{organizationId}/audit-logs?startDate=&endDate=`
//! (vendors README §2.1, §2.3; both bounds always sent, RFC 3339).
//! Paging: none — one answer is the whole window as **gzipped NDJSON** (§2.4), so windows are
//! at most one day and the answer is decoded as a stream ([`decode`], on a blocking thread) and
//! staged in the queue chunk by chunk: never the whole export in memory, and nothing of it in
//! the queue until the stream ended cleanly (a truncated gzip stores nothing).
//! Quirks (§2.4): `Content-Encoding: gzip` is set, but the body may be a gzip file inside that
//! (double-compressed), or a gzip file without the header: we gunzip while the data starts with
//! gzip's magic bytes. Blank lines are skipped; a malformed line is dead-lettered, the rest kept.
//! Auth: `Authorization: Bearer <organization API token>` with the Owner role (§2.2).
//! Rate limit: 2 requests a minute (§2.6) — the config default; 429 + `Retry-After`, 60 s when
//! absent, handled by the shared loop.
//! Dedupe key: records have no id (§2.5), so the SHA-256 of the canonical line (keys sorted);
//! event time: `timestamp`.

use std::io::{BufRead, BufReader, Read};

use chrono::SecondsFormat;
use flate2::bufread::MultiGzDecoder;
use secrecy::ExposeSecret;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::Astronomer;
use crate::sources::{AnswerLimits, Record, Rejected, Window, content_key, parse_event_time};
pub use crate::sources::{DecodeError, Decoded};

/// A 429 without `Retry-After` means a minute (§2.6: "fall back to 60 s").
pub const BARE_429_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Records handed to the queue per chunk while a stream is decoded (or fewer: [`CHUNK_BYTES`]).
pub const CHUNK: usize = 500;

/// A chunk is handed over once its lines reach this many bytes, so the records in flight stay
/// bounded however large each line is.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;

/// An NDJSON line longer than this is no audit record: the answer is refused as broken (asked
/// again) instead of the line being buffered — a gzip bomb of one endless line (zeros) would
/// otherwise fill memory up to [`MAX_DECODED_BYTES`].
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Decoded NDJSON larger than this is not read further: the window is split instead (and a
/// decompression bomb stops here).
pub const MAX_DECODED_BYTES: usize = 512 * 1024 * 1024;

impl Astronomer {
    pub fn answer_limits() -> AnswerLimits {
        AnswerLimits { max_records: None, max_bytes: Some(MAX_DECODED_BYTES) }
    }

    pub fn request(&self, http: &reqwest::Client, base: &url::Url, window: &Window) -> reqwest::RequestBuilder {
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["v1", "organizations", &self.organization_id, "audit-logs"]);
        }
        url.query_pairs_mut()
            .append_pair("startDate", &window.from.to_rfc3339_opts(SecondsFormat::Secs, true))
            .append_pair("endDate", &window.to.to_rfc3339_opts(SecondsFormat::Secs, true));
        http.get(url).header(reqwest::header::ACCEPT, "application/x-ndjson").bearer_auth(self.token.expose_secret())
    }
}

fn is_gzip(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
}

/// Decodes an answer body: gunzips (at most twice) while it starts with gzip's magic, then
/// reads NDJSON lines, calling `emit` with every [`CHUNK`] records or [`CHUNK_BYTES`] of lines
/// (and the rejected lines). `emit` returns false to stop. Memory is bounded by the line and
/// chunk caps, never by the answer's size. Blocking: run it on a blocking thread.
pub fn decode(
    body: impl Read,
    mut emit: impl FnMut(Vec<Record>, Vec<Rejected>) -> bool,
) -> Result<Decoded, DecodeError> {
    let broken = |e: std::io::Error| DecodeError::Broken(format!("cannot read the gzipped NDJSON answer: {e}"));
    let mut outer = BufReader::new(body);
    let mut reader: Box<dyn BufRead> = if is_gzip(outer.fill_buf().map_err(broken)?) {
        Box::new(BufReader::new(MultiGzDecoder::new(outer)))
    } else {
        Box::new(outer)
    };
    if is_gzip(reader.fill_buf().map_err(broken)?) {
        reader = Box::new(BufReader::new(MultiGzDecoder::new(reader)));
    }
    // One byte more than the cap tells "exactly the cap" from "over it".
    let mut reader = reader.take(MAX_DECODED_BYTES as u64 + 1);
    let (mut records, mut rejected) = (Vec::new(), Vec::new());
    let mut seen = Decoded::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    let mut decoded = 0usize;
    let mut chunk_bytes = 0usize;
    loop {
        line.clear();
        // One byte more than the cap tells a line of exactly the cap from a longer one.
        let n = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line).map_err(broken)?;
        if n == 0 {
            break;
        }
        decoded += n;
        if decoded > MAX_DECODED_BYTES {
            return Err(DecodeError::TooLarge(MAX_DECODED_BYTES));
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            return Err(DecodeError::Broken(format!(
                "line {number} is longer than {MAX_LINE_BYTES} bytes: not an audit record (a decompression bomb?); \
                 stopped decoding"
            )));
        }
        chunk_bytes += n;
        let text = line.trim_ascii();
        if text.is_empty() {
            seen.blank += 1;
            continue;
        }
        // A proxy's HTML page served with 200 is no answer at all, not a window of one bad line.
        if records.is_empty() && rejected.is_empty() && seen.records + seen.rejected == 0 && text.starts_with(b"<") {
            return Err(DecodeError::Broken(format!(
                "line {number} starts with `<`: an HTML or XML page, not the NDJSON answer"
            )));
        }
        match read_line(text, number) {
            Ok(r) => records.push(r),
            // Every line ends with `\n` (the contract); a last line without it that is not even
            // JSON is a body cut short: the records after the cut were never received.
            Err(_) if line.last() != Some(&b'\n') && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err() => {
                return Err(DecodeError::Broken(format!("the answer ends inside line {number}: cut short")));
            }
            Err(r) => rejected.push(r),
        }
        if records.len() + rejected.len() >= CHUNK || chunk_bytes >= CHUNK_BYTES {
            chunk_bytes = 0;
            seen.records += records.len();
            seen.rejected += rejected.len();
            if !emit(std::mem::take(&mut records), std::mem::take(&mut rejected)) {
                return Err(DecodeError::Stopped);
            }
        }
    }
    seen.records += records.len();
    seen.rejected += rejected.len();
    if (!records.is_empty() || !rejected.is_empty()) && !emit(records, rejected) {
        return Err(DecodeError::Stopped);
    }
    Ok(seen)
}

/// One NDJSON line: a JSON object with a `timestamp`, keyed by the hash of its canonical form.
fn read_line(text: &[u8], number: usize) -> Result<Record, Rejected> {
    let reject = |key: String, reason: String| Rejected { key, reason, raw: text.to_vec() };
    let value: serde_json::Value = match serde_json::from_slice(text) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => return Err(reject(content_key(text), format!("line {number} is not a JSON object"))),
        Err(e) => return Err(reject(content_key(text), format!("line {number} is not JSON ({e})"))),
    };
    // serde_json's map is sorted by key: re-serializing gives the canonical form, so the same
    // record with its keys in another order (or other spacing) gets the same key.
    let canonical = serde_json::to_vec(&value).unwrap_or_default();
    let key = format!("sha256:{}", hex(&Sha256::digest(&canonical)));
    let time = value.get("timestamp").and_then(|t| t.as_str()).and_then(parse_event_time);
    let Some(time) = time else {
        let shown = value.get("timestamp").map_or_else(|| "missing".to_owned(), |t| t.to_string());
        return Err(reject(key, format!("line {number}: `timestamp` is not a date-time: {shown}")));
    };
    // The line parsed as JSON, so it is valid UTF-8 and a valid raw value.
    let raw = std::str::from_utf8(text)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_owned()).ok())
        .ok_or_else(|| reject(key.clone(), format!("line {number} is not UTF-8")))?;
    Ok(Record { key, time, raw })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    const SAMPLE: &str = include_str!("fixtures/records.ndjson");

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn collect(body: &[u8]) -> Result<(Vec<Record>, Vec<Rejected>, Decoded), DecodeError> {
        let (mut records, mut rejected) = (Vec::new(), Vec::new());
        let seen = decode(body, |r, j| {
            records.extend(r);
            rejected.extend(j);
            true
        })?;
        Ok((records, rejected, seen))
    }

    #[test]
    fn test_every_encoding_decodes_to_the_same_records() {
        let plain = collect(SAMPLE.as_bytes()).unwrap();
        assert_eq!(plain.0.len(), 5);
        assert!(plain.1.is_empty());
        for body in [gzip(SAMPLE.as_bytes()), gzip(&gzip(SAMPLE.as_bytes()))] {
            let (records, rejected, _) = collect(&body).unwrap();
            assert!(rejected.is_empty());
            let keys: Vec<_> = records.iter().map(|r| &r.key).collect();
            assert_eq!(keys, plain.0.iter().map(|r| &r.key).collect::<Vec<_>>());
        }
        // An empty window: an empty body, or a gzip of zero bytes.
        assert_eq!(collect(b"").unwrap().2, Decoded::default());
        assert_eq!(collect(&gzip(b"")).unwrap().2, Decoded::default());
    }

    #[test]
    fn test_blank_and_malformed_lines() {
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        lines.insert(2, "");
        lines.insert(3, "   ");
        lines.insert(4, "{\"timestamp\": \"2026-06-03T14:22:08Z\", broken");
        lines.insert(5, "[1,2]");
        lines.push("{\"subjectId\":\"u\",\"timestamp\":\"not a time\"}");
        let body = gzip(lines.join("\n").as_bytes());
        let (records, rejected, seen) = collect(&body).unwrap();
        assert_eq!((records.len(), rejected.len(), seen.blank), (5, 3, 2));
        assert!(rejected[0].reason.contains("line 5 is not JSON"), "{}", rejected[0].reason);
        assert_eq!(rejected[0].raw, lines[4].as_bytes());
        assert!(rejected[2].reason.contains("not a time"));
    }

    #[test]
    fn test_truncated_gzip_is_an_error() {
        let body = gzip(SAMPLE.repeat(50).as_bytes());
        let cut = &body[..body.len() * 2 / 3];
        assert!(matches!(collect(cut), Err(DecodeError::Broken(_))));
        // Cut inside the trailer: still not a clean end.
        assert!(matches!(collect(&body[..body.len() - 3]), Err(DecodeError::Broken(_))));
    }

    #[test]
    fn test_a_body_cut_inside_its_last_line_is_an_error() {
        // A proxy or a dropped connection that cuts a plain (not gzipped) body: the last line
        // ends without its `\n` and is not JSON. Taking the rest as the whole window would lose
        // every record after the cut (found by the deterministic simulation, seed 12).
        let body = SAMPLE.repeat(3);
        let cut = &body.as_bytes()[..body.len() / 2];
        assert!(matches!(collect(cut), Err(DecodeError::Broken(_))), "{:?}", collect(cut).map(|r| r.2));
        // A last line that is whole JSON without its newline is still a record.
        let unterminated = SAMPLE.trim_end();
        assert_eq!(collect(unterminated.as_bytes()).unwrap().0.len(), 5);
    }

    #[test]
    fn test_an_html_page_is_not_an_answer() {
        // A proxy's error page served with 200 (and without gzip): not NDJSON at all, so not an
        // empty window with one bad line.
        for page in ["<html><body>Service temporarily unavailable</body></html>", "\n<!DOCTYPE html>\n<html>\n"] {
            assert!(matches!(collect(page.as_bytes()), Err(DecodeError::Broken(_))), "{page}");
            assert!(matches!(collect(&gzip(page.as_bytes())), Err(DecodeError::Broken(_))), "{page}");
        }
    }

    #[test]
    fn test_key_is_the_hash_of_the_canonical_line() {
        let a = r#"{"b":1,"a":"x","timestamp":"2026-06-03T14:22:08.417Z"}"#;
        let b = r#"{ "timestamp":"2026-06-03T14:22:08.417Z", "a":"x",  "b":1 }"#;
        let c = r#"{"b":2,"a":"x","timestamp":"2026-06-03T14:22:08.417Z"}"#;
        let key = |s: &str| collect(s.as_bytes()).unwrap().0[0].key.clone();
        assert_eq!(key(a), key(b));
        assert_ne!(key(a), key(c));
        assert!(key(a).starts_with("sha256:") && key(a).len() == 7 + 64);
    }

    #[test]
    fn test_an_endless_line_stops_at_the_line_cap_and_big_lines_come_in_small_chunks() {
        // A gzip bomb of zeros: one line, never ended. Stops after the cap, not at the decoded cap.
        let zeros = std::io::repeat(0).take(MAX_DECODED_BYTES as u64);
        let mut emitted = 0;
        let err = decode(zeros, |r, j| {
            emitted += r.len() + j.len();
            true
        })
        .unwrap_err();
        assert!(matches!(&err, DecodeError::Broken(m) if m.contains("line 1 is longer than 16777216 bytes")), "{err}");
        assert_eq!(emitted, 0);
        // A line of exactly the cap (newline aside) is still read.
        let pad = MAX_LINE_BYTES - r#"{"timestamp":"2026-06-03T14:22:08Z","p":""}"#.len();
        let line = format!(r#"{{"timestamp":"2026-06-03T14:22:08Z","p":"{}"}}"#, "x".repeat(pad));
        assert_eq!(line.len(), MAX_LINE_BYTES);
        let (records, _, _) = collect(format!("{line}\n").as_bytes()).unwrap();
        assert_eq!(records.len(), 1);
        // Lines of 1 MiB: handed over 8 at a time (CHUNK_BYTES), not 500.
        let big = format!(r#"{{"timestamp":"2026-06-03T14:22:08Z","n":N,"p":"{}"}}"#, "y".repeat(1 << 20));
        let body: String = (0..20).map(|i| big.replace('N', &i.to_string()) + "\n").collect();
        let mut chunks = Vec::new();
        decode(body.as_bytes(), |r, _| {
            chunks.push(r.len());
            true
        })
        .unwrap();
        assert_eq!(chunks, [8, 8, 4]);
    }

    #[test]
    fn test_records_come_in_chunks_and_the_receiver_can_stop() {
        let line = r#"{"subjectId":"u","timestamp":"2026-06-03T14:22:08.417Z","n":N}"#;
        let body: String = (0..1200).map(|i| line.replace('N', &i.to_string()) + "\n").collect();
        let mut chunks = Vec::new();
        let seen = decode(body.as_bytes(), |r, _| {
            chunks.push(r.len());
            true
        })
        .unwrap();
        assert_eq!((chunks, seen.records), (vec![500, 500, 200], 1200));
        assert!(matches!(decode(body.as_bytes(), |_, _| false), Err(DecodeError::Stopped)));
    }
}
