//! Review 21 C: the mapping's speed-ups (ea91f3b..e99f3b0) on hostile records, through every
//! built-in vendor and every shipped definition (`config/vendors.d`). Here, not in `ocsf/`,
//! because these tests reach vendors and the simulator's records (ARCHITECTURE.md's rules); the
//! speed-ups' functions against the code they replaced are in `src/ocsf/review21c_tests.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use serde_json::{Map, Value};

// ---- hostile records through every vendor -----------------------------------------------------

/// Values a hostile record puts in place of a vendor's own (as JSON text).
const HOSTILE_VALUES: &[&str] = &[
    r#""\u0000\u0001\u001f\u007f\u2028\u2029\ud83d\ude00\"\\\/""#,
    "\"\u{2028}\u{2029}\u{7f}\u{212A}\u{17F}\u{130}\"",
    r#""2025-06-03T12:00:00z""#,
    r#""2025-06-03T12:00:00-00:00""#,
    r#""2025-06-03T23:59:60Z""#,
    r#""+12025-06-03T12:00:00+18:00""#,
    r#""garbageZ""#,
    r#""fe80::1%eth0""#,
    r#""::ffff:192.0.2.1""#,
    r#""[2001:db8::7]:443""#,
    r#""203.0.113.7:8080, 10.0.0.1,::1""#,
    r#""o\u212a""#,
    r#""SUCCESS""#,
    r#""fAiLeD""#,
    r#""Super\u0041dmin""#,
    r#""ROOT""#,
    "-0",
    "1e308",
    "123456789012345678901234567890",
    "5e-324",
    "true",
    "null",
    "[]",
    "{}",
    r#"{"a":{"b":[1,{"c":"\u0000"}]}}"#,
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
];

/// Each record with each of its top-level values replaced in turn by each hostile value,
/// written as text (so escapes and number shapes reach the mapping as sent), plus the record with
/// a duplicate of its first key.
fn hostile_variants(record: &str) -> Vec<String> {
    let Ok(map) = serde_json::from_str::<Map<String, Value>>(record) else { return vec![] };
    let mut out = vec![record.to_owned()];
    for key in map.keys() {
        for value in HOSTILE_VALUES {
            let text: String = map
                .iter()
                .map(|(k, v)| {
                    let v = if k == key { (*value).to_owned() } else { v.to_string() };
                    format!("{}:{v}", Value::from(k.as_str()))
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push(format!("{{{text}}}"));
        }
        let first = serde_json::to_string(key).unwrap();
        out.push(format!("{{{first}:\"dup\",{}", &record[1..]));
    }
    out
}

fn check_vendor(vendor: crate::vendors::VendorId, records: &[String]) -> usize {
    use serde_json::value::RawValue;
    let (id_field, time_field) = vendor.record_fields();
    let fallback = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
    let mut mapped = 0;
    for raw in records {
        let boxed = RawValue::from_string(raw.clone()).unwrap();
        let read = match vendor {
            crate::vendors::VendorId::Defined(def) => {
                crate::vendors::defined::runtime::read_record(boxed, &def.answer).map(|r| (r.key, r.time))
            }
            _ => crate::sources::read_record(&boxed, id_field, time_field).map(|r| (r.key, r.time)),
        };
        let (key, time) = read.unwrap_or_else(|_| (crate::sources::content_key(raw.as_bytes()), fallback));
        let ctx = crate::ocsf::Context {
            organization: "ORG",
            dedupe_key: &key,
            time,
            raw,
            log_name: "review",
            processed_ms: 0,
        };
        let Ok(body) = crate::vendors::map_record(vendor, &ctx, &crate::ocsf::Policy::default()) else { continue };
        mapped += 1;
        let json: Value =
            serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {raw}", vendor.name()));
        let errors = crate::ocsf::schema_check::errors(&json);
        assert!(errors.is_empty(), "{}: invalid OCSF {errors:?}\nrecord: {raw}\nevent: {json}", vendor.name());
        crate::ocsf::schema_check::assert_observables(&json);
        crate::ocsf::event_checks::assert_complete(&json, &["uid"]);
        assert_eq!(json["raw_data"].as_str(), Some(raw.as_str()), "raw_data is the record as sent");
    }
    mapped
}

/// Every built-in vendor's and every shipped definition's events from hostile records: no panic,
/// valid OCSF 1.8.0, complete, `raw_data` the record byte for byte.
#[test]
fn review21c_hostile_records_map_to_valid_events() {
    use crate::sim::{self, SimVendor};
    use crate::vendors::VendorId;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut by_vendor: Vec<(VendorId, Vec<String>)> = Vec::new();
    for v in SimVendor::ALL {
        let records: Vec<String> = sim::sample_records(v, 12, 7).iter().flat_map(|r| hostile_variants(r)).collect();
        by_vendor.push((VendorId::from_name(v.name()).unwrap(), records.clone()));
        for file in ["aitronos-defined.toml", "configcat-defined.toml"] {
            let def = crate::vendors::defined::registry::load_file(&root.join("config/vendors.d").join(file)).unwrap();
            if file.starts_with(v.name()) {
                by_vendor.push((VendorId::Defined(def), records.clone()));
            }
        }
    }
    let okta = r#"{"uuid":"u1","published":"2025-06-03T12:00:00.000Z","eventType":"user.session.start","displayMessage":"m","actor":{"id":"a1","displayName":"Ada","alternateId":"ada@example.com","type":"User"},"client":{"ipAddress":"203.0.113.7","userAgent":{"rawUserAgent":"curl"}},"target":[{"id":"t1","displayName":"Org Admin","type":"User"}],"outcome":{"result":"FAILURE","reason":"r"},"debugContext":{"debugData":{"privilegeGranted":"Super administrator"}}}"#;
    let github = r#"{"_document_id":"d1","@timestamp":1748952000000,"action":"org.update_member","actor":"mona","actor_id":1,"user":"jane","user_id":2,"actor_ip":"203.0.113.7","user_agent":"curl","repo":"acme/x","repo_id":3,"permission":"admin","role":"owner","old_permission":"read","created_at":1748952000000}"#;
    for (file, record) in [("okta.toml", okta), ("github-enterprise.toml", github)] {
        let def = crate::vendors::defined::registry::load_file(&root.join("config/vendors.d").join(file)).unwrap();
        let mut records = hostile_variants(record);
        for path in ["actor", "client", "target", "outcome"] {
            let Ok(mut map) = serde_json::from_str::<Map<String, Value>>(record) else { continue };
            let keys: Vec<String> = match map.get(path) {
                Some(Value::Object(inner)) => inner.keys().cloned().collect(),
                _ => continue,
            };
            for k in keys {
                for value in HOSTILE_VALUES {
                    if let Some(Value::Object(inner)) = map.get_mut(path) {
                        inner.insert(k.clone(), serde_json::from_str(value).unwrap_or_else(|e| panic!("{value}: {e}")));
                    }
                    records.push(Value::Object(map.clone()).to_string());
                }
            }
        }
        by_vendor.push((VendorId::Defined(def), records));
    }
    for (vendor, records) in &by_vendor {
        let mapped = check_vendor(*vendor, records);
        assert!(mapped > records.len() / 2, "{}: only {mapped} of {} mapped", vendor.name(), records.len());
    }
}

// ---- the shipped definitions' events, pinned from the old binary ------------------------------

/// Hostile pages (control characters, DEL, U+2028/2029, escaped surrogate pairs, times in `z`,
/// `-00:00`, `+18:00` and nanoseconds, IPv6 with zone ids, IPv4-mapped, ports, brackets, lists,
/// status words and admin types in mixed case and Unicode look-alikes, duplicate keys, numbers of
/// every shape, nesting to 119 levels) served to `/work/baseline-cheap-auditrelay` (8f4b15c,
/// before the speed-ups) as Okta's and GitHub's answers, through `config/vendors.d/okta.toml`
/// and `github-enterprise.toml`, into a file sink: 350 events. The digest is of its lines,
/// sorted, with `processed_time`, `logged_time` and `transmit_time` zeroed. The new mapping must
/// write the same bytes.
#[test]
fn review21c_definitions_write_what_the_old_binary_wrote() {
    use serde_json::value::RawValue;
    use sha2::Digest as _;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let times = regex::bytes::Regex::new(r#""(processed_time|logged_time|transmit_time)":\d+"#).unwrap();
    let pages = [
        ("okta.toml", "acme", "okta", include_str!("review21c_testdata/okta.json")),
        ("github-enterprise.toml", "acme-corp", "github", include_str!("review21c_testdata/github.json")),
    ];
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for (file, organization, source, page) in pages {
        let def = crate::vendors::defined::registry::load_file(&root.join("config/vendors.d").join(file)).unwrap();
        let records: Vec<Box<RawValue>> = serde_json::from_str(page).unwrap();
        for raw in records {
            let text = raw.get().to_owned();
            let record = crate::vendors::defined::runtime::read_record(raw, &def.answer).unwrap();
            let ctx = crate::ocsf::Context {
                organization,
                dedupe_key: &record.key,
                time: record.time,
                raw: &text,
                log_name: source,
                processed_ms: 0,
            };
            let body = crate::vendors::map_record(crate::vendors::VendorId::Defined(def), &ctx, &Default::default())
                .unwrap_or_else(|e| panic!("{file}: {e}: {text}"));
            let mut line = Vec::new();
            crate::ocsf::stamp_transmit_time(&body, 0, &mut line);
            lines.push(times.replace_all(&line, &b"\"$1\":0"[..]).into_owned());
        }
    }
    lines.sort();
    let mut hash = sha2::Sha256::new();
    for line in &lines {
        hash.update(line);
        hash.update(b"\n");
    }
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        (lines.len(), digest.as_str()),
        (350, "10332e599702507cd790f282a5e0befc47e1ce8e9f8295e4045c6afa54d593d1"),
        "the events differ from what 8f4b15c wrote"
    );
}
