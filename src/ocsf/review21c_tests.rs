//! Review 21 C: the mapping's speed-ups (ea91f3b..e99f3b0) against the code they replaced, on
//! hostile text. Each old function is copied here verbatim from 8f4b15c; the new one must give
//! the same answer for every input, not only for the pinned samples of
//! `tests/it/mapping_bytes.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::{string, timezone_offset};
use crate::ocsf::event::Status;
use crate::ocsf::{Fields, as_text, endpoint, ip, is_admin_privilege, status_from_word};

// ---- the code of 8f4b15c ----------------------------------------------------------------------

fn old_string(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    serde_json::to_writer(out, s)
}

fn old_timezone_offset(original_time: &str) -> i32 {
    chrono::DateTime::parse_from_rfc3339(original_time.trim())
        .map(|t| t.offset().local_minus_utc() / 60)
        .ok()
        .filter(|m| (-1080..=1080).contains(m))
        .unwrap_or(0)
}

fn old_status_from_word(word: &str) -> Status {
    match word.to_ascii_lowercase().as_str() {
        "success" | "succeeded" | "ok" => Status::Success,
        "failure" | "failed" | "fail" | "error" | "denied" => Status::Failure,
        _ => Status::Other(word.to_owned()),
    }
}

fn old_is_admin_privilege(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["admin", "owner", "superuser", "root"].iter().any(|w| lower.contains(w))
}

fn old_endpoint_addresses(raw: &str) -> Vec<String> {
    raw.split(',').filter_map(|part| ip(Some(part.to_owned()))).collect()
}

fn old_unmapped(record: &Map<String, Value>, placed_keys: &[&'static str]) -> crate::ocsf::event::Unmapped {
    let placed: Vec<&str> =
        placed_keys.iter().filter_map(|k| record.get(*k)?.as_str()).filter(|v| v.chars().count() >= 4).collect();
    let rest: Vec<&str> = record
        .iter()
        .filter(|(k, v)| !placed_keys.contains(&k.as_str()) && !v.as_str().is_some_and(|v| placed.contains(&v)))
        .map(|(k, _)| k.as_str())
        .collect();
    rest.iter().filter_map(|k| Some(((*k).to_owned(), as_text(record.get(*k)?)?))).collect()
}

// ---- hostile text -----------------------------------------------------------------------------

/// Characters that escaping, case folding, trimming and parsing treat specially.
const HOSTILE: &[char] = &[
    '\0',
    '\u{1}',
    '\u{8}',
    '\t',
    '\n',
    '\u{b}',
    '\u{c}',
    '\r',
    '\u{1b}',
    '\u{1f}',
    ' ',
    '"',
    '\\',
    '/',
    '\u{7f}',
    '\u{80}',
    '\u{85}',
    '\u{a0}',
    '\u{ad}',
    '\u{2028}',
    '\u{2029}',
    '\u{200b}',
    '\u{feff}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{10ffff}',
    '\u{1F600}',
    'é',
    '\u{212A}',
    '\u{17F}',
    '\u{130}',
    '\u{131}',
    '\u{3000}',
    'Z',
    'z',
    'T',
    't',
    ':',
    '-',
    '+',
    '.',
    ',',
    '[',
    ']',
    '%',
    '0',
    '1',
    '2',
    '9',
    'a',
    'd',
    'm',
    'i',
    'n',
    'o',
    'w',
    'e',
    'r',
    'k',
    'K',
    'O',
    'A',
    'D',
    'M',
    'I',
    'N',
    'S',
    's',
    'u',
    'c',
    'f',
    'l',
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HOSTILE), 0..40).prop_map(|cs| cs.into_iter().collect())
}

/// Times near the forms vendors send, with one part bent.
fn hostile_time() -> impl Strategy<Value = String> {
    let date = prop::sample::select(vec![
        "2025-06-03",
        "0000-01-01",
        "9999-12-31",
        "2016-12-31",
        "2025-02-30",
        "+12025-06-03",
        "2025-6-3",
    ]);
    let time = prop::sample::select(vec![
        "T12:00:00",
        "t12:00:00",
        " 12:00:00",
        "T23:59:60",
        "T23:59:60.999999999",
        "T12:00:00.5",
        "T24:00:00",
        "T12:00",
        "T12:00:00.",
    ]);
    let zone = prop::sample::select(vec![
        "Z",
        "z",
        "+00:00",
        "-00:00",
        "+02:00",
        "-18:00",
        "+18:00",
        "+18:01",
        "-23:59",
        "+23:59",
        "+0200",
        "+02",
        "",
        " Z",
        "Zz",
        "ZZ",
        "+02:00Z",
        "garbageZ",
        "\u{2028}Z",
        "Z\n",
        "\tZ ",
        "+02:00 ",
    ]);
    (date, time, zone, hostile_string(), any::<bool>()).prop_map(|(d, t, z, noise, noisy)| {
        let base = format!("{d}{t}{z}");
        if noisy { format!("{noise}{base}") } else { base }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// `raw_data` and every other string of an event: the bytes serde_json wrote.
    #[test]
    fn review21c_strings_escape_as_before(s in any::<String>(), h in hostile_string()) {
        for case in [s, h] {
            let (mut ours, mut old) = (Vec::new(), Vec::new());
            string(&mut ours, &case).unwrap();
            old_string(&mut old, &case).unwrap();
            prop_assert_eq!(ours, old, "{:?}", case);
        }
    }

    /// `timezone_offset`: the shortcut for a time ending in Z gives what the parse gave.
    #[test]
    fn review21c_timezone_offset_as_before(t in hostile_time(), s in hostile_string()) {
        for case in [t.clone(), s, format!("{t}z"), format!("{t}Z")] {
            prop_assert_eq!(timezone_offset(&case), old_timezone_offset(&case), "{:?}", case);
        }
    }

    /// Status words and admin privileges: case-blind exactly as before (ASCII only, both).
    #[test]
    fn review21c_words_as_before(s in hostile_string(), pick in 0usize..14) {
        let words = ["success", "SUCCEEDED", "Ok", "oK", "o\u{212A}", "FAILURE", "Fail", "ERROR", "Denied",
                     "Admin", "OWNER", "SuperUser", "rOOt", "ſuperuser"];
        for case in [s.clone(), words[pick].to_owned(), format!("{s}{}", words[pick]), format!("{}{s}", words[pick])] {
            prop_assert_eq!(status_from_word(&case), old_status_from_word(&case), "{:?}", case);
            prop_assert_eq!(is_admin_privilege(&case), old_is_admin_privilege(&case), "{:?}", case);
        }
    }

    /// Endpoint addresses from borrowed text: the same addresses as before.
    #[test]
    fn review21c_endpoint_as_before(parts in prop::collection::vec(prop::sample::select(vec![
        "203.0.113.7", " 203.0.113.7 ", "::1", "[::1]", "fe80::1%eth0", "::ffff:192.0.2.1", "2001:db8::7",
        "203.0.113.7:443", "[2001:db8::7]:443", "\u{a0}10.0.0.1", "10.0.0.1\u{2028}", "", "unknown", "001.2.3.4",
        "2001:DB8::1", "0:0:0:0:0:0:0:1", "::", "1.2.3", "\u{3000}::1",
    ]), 0..5)) {
        let raw = parts.join(",");
        let ours = endpoint(&raw);
        let old = old_endpoint_addresses(&raw);
        let ours_addresses: Vec<String> = ours.ip.iter().cloned().chain(ours.intermediate_ips.iter().flatten().cloned()).collect();
        prop_assert_eq!(ours_addresses, old, "{:?}", raw);
    }
}

/// `unmapped` in one pass: the same fields as the two-pass code, whatever the values.
#[test]
fn review21c_unmapped_as_before() {
    const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    let values = [
        Value::Null,
        Value::from("abcd"),
        Value::from("abc"),
        Value::from("ab\u{1F600}"),
        Value::from("é\u{1F600}xy"),
        Value::from("\u{2028}\u{2028}\u{2028}\u{2028}"),
        Value::from(1234),
        Value::from(-0.0),
        Value::from(1e300),
        serde_json::json!({"x": "abcd"}),
        serde_json::json!(["abcd"]),
        Value::Bool(true),
    ];
    let mut seed = 7u64;
    let mut next = |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) as usize) % n
    };
    for _ in 0..20_000 {
        let mut record = Map::new();
        for k in KEYS {
            if next(4) > 0 {
                record.insert(k.to_owned(), values[next(values.len())].clone());
            }
        }
        let placed: Vec<&'static str> = KEYS.iter().copied().filter(|_| next(2) == 0).collect();
        let fields = Fields { record: &record, placed: placed.clone() };
        assert_eq!(fields.unmapped(), old_unmapped(&record, &placed), "{record:?} placed {placed:?}");
    }
}
