//! Fuzz entry points: one function per parser that reads bytes from outside (vendor pages, the
//! Astronomer NDJSON/gzip stream, rate-limit headers, event times, the configuration file, the
//! OCSF mappers). Each one drives the production parser with arbitrary bytes and checks cheap
//! invariants (a page's records plus rejected records are its items, a re-read record keeps its
//! key and time, the decompression cap holds, no secret reaches an error, …); a violated
//! invariant or any panic is a finding.
//!
//! The same function serves the `cargo fuzz` target of that name (`fuzz/fuzz_targets/*.rs`,
//! one line each) and the regression test `tests/it/fuzz_regressions.rs`, which runs every input
//! kept under `tests/fixtures/fuzz/<target>/` and every seed under `fuzz/seeds/<target>/` on the
//! stable toolchain.
//!
//! Running the fuzzers (nightly toolchain, cargo-fuzz; the script installs it if missing):
//!
//! ```text
//! scripts/fuzz.sh              # every target, 60 s each
//! scripts/fuzz.sh 300 config   # one target, 5 minutes
//! ```
//!
//! A crash leaves its input under `fuzz/artifacts/<target>/`; copy it to
//! `tests/fixtures/fuzz/<target>/` (it becomes a regression test), fix the parser, and run
//! `cargo test --test it fuzz_regressions::`. See `fuzz/README.md`.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike as _, SecondsFormat, TimeZone as _, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;

use crate::config::{Config, SourceConfig};
use crate::ocsf::{self, Policy};
use crate::sources::{self, Page, Record, Rejected, Verdict};
use crate::vendors::{self, VendorId};

// Each vendor's own targets live in its folder (`vendors/<name>/fuzz.rs`); named here as the
// `cargo fuzz` targets and the corpora know them.
pub use crate::vendors::aitronos::fuzz::page as aitronos_page;
pub use crate::vendors::astronomer::fuzz::ndjson as astronomer_ndjson;
pub use crate::vendors::configcat::fuzz::page as configcat_page;
pub use crate::vendors::datafold::fuzz::page as datafold_page;

/// A fuzz target: takes any bytes; panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by name: the fuzz target, the seed directory and the regression directory
/// all use this name.
pub const TARGETS: &[(&str, Target)] = &[
    ("aitronos_page", aitronos_page),
    ("astronomer_ndjson", astronomer_ndjson),
    ("config", config),
    ("configcat_page", configcat_page),
    ("datafold_page", datafold_page),
    ("event_time", event_time),
    ("ocsf_map", ocsf_map),
    ("retry_headers", retry_headers),
];

// ---------------------------------------------------------------------------------------------
// Vendor pages: each vendor's own target is in its folder (`vendors/<name>/fuzz.rs`); here what
// every page must satisfy.

/// What every page read by a vendor file must satisfy.
pub(crate) fn check_page(page: &Page, items: usize, id_field: &str, time_field: &str) {
    assert_eq!(page.records.len() + page.rejected.len(), items, "records + rejected != items on the page");
    assert!(page.staged.is_none());
    for record in &page.records {
        check_record(record);
        // Reading a record again gives the same key and time (the queue dedupes on the key).
        match sources::read_record(&record.raw, id_field, time_field) {
            Ok(again) => assert_eq!((again.key.as_str(), again.time), (record.key.as_str(), record.time)),
            Err(r) => panic!("a record read once is rejected when read again: {}", r.reason),
        }
    }
    page.rejected.iter().for_each(check_rejected);
}

pub(crate) fn check_record(record: &Record) {
    assert!(!record.key.trim().is_empty(), "a record with an empty dedupe key");
    check_time(record.time);
}

pub(crate) fn check_rejected(rejected: &Rejected) {
    assert!(!rejected.key.is_empty(), "a dead letter without a key");
    assert!(!rejected.reason.is_empty(), "a dead letter without a reason");
}

/// A parsed event time can be shown (RFC 3339, as the OCSF mappers and logs do) and read back
/// to the same instant, within the years RFC 3339 can write.
fn check_time(time: DateTime<Utc>) {
    let _ = time.timestamp_millis();
    if (0..=9999).contains(&time.year()) {
        let shown = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        assert_eq!(sources::parse_event_time(&shown), Some(time), "{shown} does not read back");
    }
}

// ---------------------------------------------------------------------------------------------
// Rate-limit headers.

/// The headers the parts of the input become, in order.
const LIMIT_HEADER_NAMES: [&str; 7] = [
    "retry-after",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-rate-limit-remaining",
    "x-rate-limit-reset",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];

/// `retry_after`, `parse_reset`, `budget_pause` and `classify`: the input is split on `\n` into
/// header values (`Retry-After`, then the remaining/reset pairs in [`LIMIT_HEADER_NAMES`]
/// order); bytes a header value cannot hold leave that header out. Every part also goes through
/// `parse_reset` as text.
pub fn retry_headers(data: &[u8]) {
    let parts: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let mut headers = HeaderMap::new();
    for (name, part) in LIMIT_HEADER_NAMES.iter().zip(&parts) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    // Parts past the known headers: further `Retry-After` values (only the first counts).
    for part in parts.iter().skip(LIMIT_HEADER_NAMES.len()) {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(reqwest::header::RETRY_AFTER, value);
        }
    }
    let derived = 100 + data.iter().fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(u16::from(*b))) % 900;
    let nows = [Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single(), DateTime::from_timestamp(0, 0)];
    for now in nows.into_iter().flatten() {
        for part in &parts {
            let _ = crate::backoff::parse_reset(&String::from_utf8_lossy(part), now);
        }
        let retry = crate::backoff::retry_after(&headers, now);
        if let Some(secs) = headers.get("retry-after").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok()) {
            assert_eq!(retry, Some(std::time::Duration::from_secs(secs)));
        }
        if sources::budget_pause(&headers, now).is_some() {
            let spent = LIMIT_HEADER_NAMES.iter().skip(1).step_by(2).any(|name| {
                headers.get(*name).and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok()).is_some_and(|n| n <= 0)
            });
            assert!(spent, "a budget pause without a spent budget");
        }
        for code in [200, 204, 400, 401, 403, 404, 408, 422, 429, 500, 502, 503, 504, derived] {
            let Ok(status) = StatusCode::from_u16(code) else { continue };
            let verdict = sources::classify(status, &headers, now);
            match code {
                200..=299 => assert_eq!(verdict, Verdict::Ok),
                429 => match verdict {
                    // Aitronos' `X-RateLimit-Retry-After` may ask for longer: the longer wins.
                    Verdict::RateLimited(wait) => assert!(retry.is_none() || wait >= retry),
                    other => panic!("429 classified {other:?}"),
                },
                408 | 500..=599 => assert_eq!(verdict, Verdict::Retryable(retry)),
                401 | 403 => assert_eq!(verdict, Verdict::Unauthorized),
                _ => assert_eq!(verdict, Verdict::Fatal),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Event times and records.

/// `parse_event_time` on the input as text, and `read_record` with every vendor's fields on a
/// record holding that text (as id and time) and on the input itself when it is JSON.
pub fn event_time(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(time) = sources::parse_event_time(&text) {
        check_time(time);
    }
    for (id, time) in VendorId::ALL.iter().map(|v| v.record_fields()) {
        let record = serde_json::json!({ id: text, time: text });
        if let Ok(raw) = serde_json::value::to_raw_value(&record) {
            read_one(&raw, id, time);
        }
        if let Ok(raw) = serde_json::from_slice::<&RawValue>(data) {
            read_one(raw, id, time);
        }
    }
}

fn read_one(raw: &RawValue, id_field: &str, time_field: &str) {
    match sources::read_record(raw, id_field, time_field) {
        Ok(record) => {
            check_record(&record);
            assert_eq!(record.raw.get(), raw.get(), "a record's bytes changed");
        }
        Err(rejected) => {
            check_rejected(&rejected);
            assert_eq!(rejected.raw, raw.get().as_bytes(), "a dead letter's bytes changed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration.

/// Where the fuzzed configuration claims to live: a directory that does not exist, so a
/// relative `*_file` secret can never be read.
const CONFIG_ORIGIN: &str = "/nonexistent-auditrelay-fuzz/auditrelay.toml";

/// What every `${NAME}` secret resolves to (see [`fuzz_env`]).
const SECRET_MARK: &str = "Zq9SECRETx7";

/// `${NAME}` lookups: `UNSET…` is not set, `EMPTY…` is empty, any other name is a secret
/// holding [`SECRET_MARK`].
fn fuzz_env(name: &str) -> Option<String> {
    if name.starts_with("UNSET") {
        None
    } else if name.starts_with("EMPTY") {
        Some(String::new())
    } else {
        Some(format!("{SECRET_MARK}-{name}"))
    }
}

/// The keys whose file the validator reads (the other `*_file` keys are paths kept for later).
const SECRET_FILE_KEYS: [&str; 5] =
    ["api_key_file", "bearer_token_file", "username_file", "password_file", "token_file"];

/// Whether the document names a secret file by an absolute path (`api_key_file = "/dev/zero"`
/// would make the fuzzer read the machine's files).
fn names_absolute_file(table: &toml::Table) -> bool {
    fn inside(value: &toml::Value) -> bool {
        match value {
            toml::Value::Table(table) => names_absolute_file(table),
            toml::Value::Array(items) => items.iter().any(inside),
            _ => false,
        }
    }
    table.iter().any(|(key, value)| {
        let absolute =
            SECRET_FILE_KEYS.contains(&key.as_str()) && value.as_str().is_some_and(|p| Path::new(p).is_absolute());
        absolute || inside(value)
    })
}

/// `Config::parse_with_env` on the input as TOML text (invalid UTF-8 replaced). Neither an
/// error nor a valid configuration's `Debug` or redacted rendering may show a secret.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let table = toml::from_str::<toml::Table>(&text);
    if table.as_ref().is_ok_and(names_absolute_file) {
        return;
    }
    let parsed = Config::parse_with_env(&text, Path::new(CONFIG_ORIGIN), &fuzz_env);
    if table.is_err() {
        assert!(parsed.is_err(), "a document that is not TOML was accepted");
    }
    // A secret is only "leaked" when the text did not hold the mark itself.
    let check = !text.contains(SECRET_MARK);
    match parsed {
        Ok(config) => {
            let shown = format!("{config:?}\n{}", config.render_redacted());
            assert!(!check || !shown.contains(SECRET_MARK), "a secret is shown: {shown}");
            for source in &config.sources {
                let _ = source.fingerprint();
                first_request(source);
            }
        }
        Err(e) => {
            let shown = format!("{e}\n{e:?}");
            assert!(!check || !shown.contains(SECRET_MARK), "an error shows a secret: {shown}");
        }
    }
}

/// A valid source's first request is built as the loop builds it (URL from `base_url` and the
/// organization, query times from `start`, credentials as headers). Building may fail (a secret
/// a header cannot hold: the loop reports it as fatal), never panic.
fn first_request(source: &SourceConfig) {
    static HTTP: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    let Some(http) = HTTP.get_or_init(|| reqwest::Client::builder().build().ok()) else { return };
    let Some(now) = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).single() else { return };
    let window = sources::Window { from: source.start.resolve(now).min(now), to: now };
    let base = &source.base_url;
    if let Ok(request) = source.vendor.request(http, base, &window, &source.vendor.first_page(), None) {
        let _ = request.build();
    }
}

// ---------------------------------------------------------------------------------------------
// OCSF mapping.

/// `ocsf::map_record` with every vendor's mapper, the input being the raw record (JSON text;
/// anything else never reaches a mapper). The dedupe key and time come from `read_record` as in
/// production, or a content key and a fixed time when the record has none (the mapper must
/// still not panic). A mapped event must be readable back by the sinks' summary.
pub fn ocsf_map(data: &[u8]) {
    let Ok(raw) = serde_json::from_slice::<&RawValue>(data) else { return };
    let mappers = VendorId::ALL.iter().map(|v| (*v, v.record_fields().0, v.record_fields().1));
    let fallback = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
    for (mapper, id_field, time_field) in mappers {
        let (key, time) = match sources::read_record(raw, id_field, time_field) {
            Ok(record) => (record.key, record.time),
            Err(_) => (sources::content_key(raw.get().as_bytes()), fallback),
        };
        let ctx = ocsf::Context {
            organization: "ORG_FUZZ",
            dedupe_key: &key,
            time,
            raw: raw.get(),
            log_name: "fuzz",
            processed_ms: 0,
        };
        let Ok(body) = vendors::map_record(mapper, &ctx, &Policy::default()) else { continue };
        let summary = ocsf::summary::summarize(&body);
        assert!(summary.is_ok(), "a mapped event cannot be summarized: {summary:?}");
        if let Ok(summary) = summary {
            assert_eq!(summary.time, Some(time.timestamp_millis()));
            let uid = ocsf::event_uid(mapper.name(), "ORG_FUZZ", &key).to_string();
            assert_eq!(summary.uid(), Some(uid.as_str()));
            let class = summary.class_uid.unwrap_or_default();
            assert!([6003, 3001, 3002, 3004, 3005, 3006].contains(&class), "class_uid {class}");
        }
        // Valid JSON at any depth (as the HEC sink reads it). Not `serde_json::Value`: a record
        // nested close to serde_json's recursion limit (127) maps to an event one level deeper,
        // which that limit refuses (see tests/fixtures/fuzz/ocsf_map/deep-field-127).
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(&body);
        assert!(json.is_ok(), "a mapped event is not JSON: {json:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_every_target_accepts_empty_and_garbage_input() {
        for (_, target) in TARGETS {
            for input in [&b""[..], b"\x00\xff\n{", b"[]", b"{}", b"\x1f\x8b"] {
                target(input);
            }
        }
    }

    #[test]
    fn test_an_absolute_secret_file_is_not_read() {
        let table: toml::Table = toml::from_str("[[sources]]\napi_key_file = \"/dev/zero\"\n").unwrap();
        assert!(names_absolute_file(&table));
        let table: toml::Table = toml::from_str("[[sources]]\napi_key_file = \"token\"\n").unwrap();
        assert!(!names_absolute_file(&table));
    }
}
