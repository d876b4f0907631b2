//! Adversarial review of issue 21 (event writer; here, not in `ocsf`, which must not import
//! `vendors`): hostile records through the real mapping and
//! the new writer; the stored body's memory against what serde_json::to_vec kept.

use chrono::DateTime;
use serde_json::Value;

use crate::ocsf::event::RawData;
use crate::ocsf::{Context, Policy, schema_check, stamp_transmit_time, strip_transmit_time};

fn aitronos(raw: &str, raw_data: RawData) -> Vec<u8> {
    let time = DateTime::parse_from_rfc3339("2026-03-18T08:15:42Z").unwrap().to_utc();
    let ctx = Context {
        organization: "ORG_1",
        dedupe_key: "r1",
        time,
        raw,
        log_name: "aitronos-prod",
        processed_ms: time.timestamp_millis() + 5_000,
    };
    let policy = Policy { raw_data, ..Policy::default() };
    crate::vendors::map_record(crate::vendors::VendorId::Aitronos, &ctx, &policy).unwrap()
}

/// A vendor that pretty-prints its answer (legal JSON; the page decoder keeps each record's
/// bytes as sent) with `[ocsf] raw_data = "off"`: the stored body is a few hundred bytes but
/// `map_record` reserves `raw.len() * 3 + 1024` for it, and that capacity travels with the
/// body (NewEvent.body) through the page until the writer has stored it. serde_json::to_vec,
/// which it replaced, grew from 128 bytes by doubling: never more than twice the bytes.
#[test]
fn review21a_stored_body_capacity_is_bounded_by_its_length() {
    let pad = " ".repeat(64 * 1024);
    let raw = format!(
        "{{{pad}\"id\":\"r1\",{pad}\"entity_type\":\"user\",\"action_type\":\"deleted\",\"actor_id\":\"usr_1\",\
         \"actor_name\":\"Ann Admin\",\"actor_email\":\"ann@example.com\",\"target_id\":\"usr_2\",\
         \"target_name\":\"Bo\",\"created_at\":\"2026-03-18T08:15:42Z\",{pad}\"metadata\":{{\"ip_address\":\"198.51.100.7\"}}}}"
    );
    // The same record compact, for scale (not asserted).
    let compact: String = raw.split(&pad).collect();
    let small = aitronos(&compact, RawData::Off);
    let compact_note =
        format!("compact {} B record, raw_data=off: {} B event in {} B", compact.len(), small.len(), small.capacity());
    for raw_data in [RawData::Off, RawData::Hash] {
        let body = aitronos(&raw, raw_data);
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        schema_check::assert_valid(&parsed);
        assert!(
            body.capacity() <= 2 * body.len(),
            "{raw_data:?}: a {} byte event holds {} bytes ({}x); a page of 1,000 such records holds {} MiB \
             for {} KiB of events ({compact_note})",
            body.len(),
            body.capacity(),
            body.capacity() / body.len(),
            (body.capacity() * 1000) >> 20,
            (body.len() * 1000) >> 10,
        );
    }
}

/// Hostile strings and numbers: every output is valid JSON, valid OCSF, carries the record
/// verbatim (raw_data) and its values (unmapped) unchanged, and survives the sink's stamp.
#[test]
fn review21a_hostile_records_stay_valid_json_and_ocsf() {
    let controls: String = (0u8..0x20).map(char::from).collect();
    let nasty = format!("{controls}\u{2028}\u{2029}\"\\/\u{7f}\u{fffd}Zoë 😀</script>");
    let nasty_json = serde_json::to_string(&nasty).unwrap();
    let long = serde_json::to_string(&"\u{1}\"".repeat(100_000)).unwrap();
    let numbers = [
        "-0",
        "0.0",
        "-0.0",
        "1e308",
        "-1e-320",
        "18446744073709551616",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "1E+2",
        "5e-324",
    ];
    let mut records = vec![];
    for n in numbers {
        records.push(format!(
            r#"{{"id":"r1","entity_type":"user","action_type":"deleted","actor_id":{nasty_json},"actor_name":{nasty_json},
            "actor_email":{nasty_json},"target_id":"usr_2","target_name":{long},"created_at":"2026-03-18T08:15:42+18:00",
            "n":{n},"{controls_key}":{nasty_json},"\u2028k\"\\":{{}},"deep":[[[[{{}}]]]],"":[],
            "metadata":{{"ip_address":{nasty_json},"user_agent":{nasty_json}}}}}"#,
            controls_key = serde_json::to_string(&controls).unwrap().trim_matches('"'),
        ));
    }
    // Escaped surrogate pairs, and the lone-surrogate escape serde_json refuses (a dead letter, not a panic).
    records.push(r#"{"id":"r1","entity_type":"user","action_type":"deleted","actor_name":"\uD83D\uDE00","created_at":"2026-03-18T08:15:42Z"}"#.to_owned());
    for raw in &records {
        for raw_data in [RawData::Full, RawData::Hash, RawData::Off] {
            let body = aitronos(raw, raw_data);
            let event: Value =
                serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
            schema_check::assert_valid(&event);
            if raw_data == RawData::Full {
                assert_eq!(event["raw_data"].as_str(), Some(raw.as_str()));
            }
            let mut sent = Vec::new();
            stamp_transmit_time(&body, 1_773_821_800_000, &mut sent);
            assert_ne!(sent, body, "not stamped");
            let stamped: Value = serde_json::from_slice(&sent).unwrap();
            assert_eq!(stamped["metadata"]["transmit_time"], 1_773_821_800_000_i64);
            assert_eq!(strip_transmit_time(&sent).as_deref(), Some(&body[..]));
        }
    }
}

/// The serializer the writer replaced (b6c52a2:src/ocsf/event.rs `Event`), verbatim but for
/// names: the reference the new writer's bytes must equal.
mod old {
    use serde::Serialize;

    use crate::ocsf::event::{Class, EventParts, Fingerprint, Metadata, ObservableType, RawData, Status, Unmapped};

    #[derive(Serialize)]
    pub struct Observable {
        pub name: String,
        pub type_id: u8,
        #[serde(rename = "type")]
        pub kind: &'static str,
        pub value: String,
    }

    #[derive(Serialize)]
    pub struct Event {
        class_uid: u32,
        class_name: &'static str,
        category_uid: u32,
        category_name: &'static str,
        activity_id: u8,
        activity_name: String,
        type_uid: u64,
        type_name: String,
        severity_id: u8,
        severity: &'static str,
        time: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_id: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_code: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status_detail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        timezone_offset: i32,
        #[serde(flatten)]
        class: Class,
        #[serde(skip_serializing_if = "Option::is_none")]
        observables: Option<Vec<Observable>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        raw_data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        raw_data_hash: Option<Fingerprint>,
        raw_data_size: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        unmapped: Option<Unmapped>,
        metadata: Metadata,
    }

    pub fn with_raw_data(parts: EventParts, raw_data: RawData) -> Event {
        let observables = observables(&parts.class);
        let timezone_offset = parts.metadata.original_time.as_deref().map_or(0, timezone_offset);
        let raw_data_size = parts.raw_data.len() as u64;
        let (raw_data, raw_data_hash) = match raw_data {
            RawData::Full => (Some(parts.raw_data), None),
            RawData::Hash => (None, Some(Fingerprint::sha256(parts.raw_data.as_bytes()))),
            RawData::Off => (None, None),
        };
        let class = &parts.class;
        let (class_uid, activity_id) = (class.uid(), class.activity_id());
        let activity_name = class.activity_name().to_owned();
        Event {
            class_uid,
            class_name: class.name(),
            category_uid: class.category_uid(),
            category_name: class.category_name(),
            activity_id,
            type_uid: u64::from(class_uid) * 100 + u64::from(activity_id),
            type_name: format!("{}: {}", class.name(), class.activity_id_caption()),
            activity_name,
            severity_id: parts.severity as u8,
            severity: parts.severity.caption(),
            time: parts.time,
            status_id: parts.status.as_ref().map(Status::id),
            status: parts.status.as_ref().map(|s| s.caption().to_owned()),
            status_code: parts.status_code,
            status_detail: parts.status_detail,
            message: parts.message,
            timezone_offset,
            observables: Some(observables).filter(|o| !o.is_empty()),
            metadata: parts.metadata,
            raw_data_size,
            raw_data,
            raw_data_hash,
            unmapped: parts.unmapped.filter(|m| !m.is_empty()),
            class: parts.class,
        }
    }

    fn observables(class: &Class) -> Vec<Observable> {
        let mut out: Vec<Observable> = Vec::new();
        let mut add = |name: String, kind: ObservableType, value: &Option<String>| {
            let Some(value) = value.as_ref().filter(|v| !v.is_empty()) else { return };
            if !out.iter().any(|o| o.name == name && o.value == *value) {
                out.push(Observable { name, type_id: kind as u8, kind: kind.caption(), value: value.clone() });
            }
        };
        for (path, user) in class.users().into_iter().filter(|(_, u)| u.type_id != Some(0)) {
            add(format!("{path}.uid"), ObservableType::UserUid, &user.uid);
            if user.type_id != Some(3) {
                add(format!("{path}.name"), ObservableType::UserName, &user.name);
            }
            add(format!("{path}.email_addr"), ObservableType::EmailAddress, &user.email_addr);
        }
        let (src, http) = class.endpoint_and_request();
        if let Some(src) = src {
            add("src_endpoint.ip".into(), ObservableType::IpAddress, &src.ip);
            for other in src.intermediate_ips.iter().flatten() {
                add("src_endpoint.intermediate_ips".into(), ObservableType::IpAddress, &Some(other.clone()));
            }
        }
        if let Some(http) = http {
            add("http_request.user_agent".into(), ObservableType::UserAgent, &http.user_agent);
        }
        out
    }

    fn timezone_offset(original_time: &str) -> i32 {
        chrono::DateTime::parse_from_rfc3339(original_time.trim())
            .map(|t| t.offset().local_minus_utc() / 60)
            .ok()
            .filter(|m| (-1080..=1080).contains(m))
            .unwrap_or(0)
    }
}

/// Every built-in vendor's fixture records, each string value (and key) replaced in turn by a
/// hostile one, plus numbers of every shape, through every vendor's mapping: the new writer's
/// bytes equal the old derived serializer's, under every `raw_data` policy.
#[test]
fn review21a_writer_bytes_equal_the_old_serializer_on_hostile_records() {
    use serde_json::Map;
    let controls: String = (0u8..0x20).map(char::from).collect();
    let hostile: Vec<Value> = vec![
        Value::String(format!("{controls}\u{2028}\u{2029}\"\\/\u{7f}\u{fffd}Zoë 😀")),
        Value::String(String::new()),
        Value::String("198.51.100.7, 2001:db8::1 ,\u{0}".into()),
        Value::String("2026-03-18T08:15:42+18:00".into()),
        Value::String("x".repeat(70_000)),
        serde_json::from_str("-0").unwrap(),
        serde_json::from_str("-0.0").unwrap(),
        serde_json::from_str("18446744073709551616").unwrap(),
        serde_json::from_str("1e308").unwrap(),
        serde_json::from_str("5e-324").unwrap(),
        serde_json::json!({"\u{1}k\"": [[], {}], "": null}),
        serde_json::json!([]),
        Value::Bool(true),
        Value::Null,
    ];
    let fixtures = [
        include_str!("../vendors/aitronos/fixtures/records.json"),
        include_str!("../vendors/configcat/fixtures/records.json"),
        include_str!("../vendors/datafold/fixtures/records.json"),
    ];
    let mut records: Vec<Map<String, Value>> =
        fixtures.iter().flat_map(|f| serde_json::from_str::<Vec<Map<String, Value>>>(f).unwrap()).collect();
    records.extend(
        include_str!("../vendors/astronomer/fixtures/records.ndjson")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str::<Map<String, Value>>(l).unwrap()),
    );
    let mut variants: Vec<Map<String, Value>> = records.clone();
    for r in &records {
        for key in r.keys() {
            for h in &hostile {
                let mut v = r.clone();
                v.insert(key.clone(), h.clone());
                variants.push(v);
            }
        }
        let mut v = r.clone();
        v.insert(format!("{controls}\u{2028}"), hostile[0].clone());
        variants.push(v);
    }
    let time = DateTime::parse_from_rfc3339("2026-03-18T08:15:42Z").unwrap().to_utc();
    let (mut compared, mut differ) = (0, Vec::new());
    for record in &variants {
        let raw = serde_json::to_string(record).unwrap();
        let ctx = Context {
            organization: "ORG_\u{1f}\"",
            dedupe_key: "k\u{2028}",
            time,
            raw: &raw,
            log_name: "log\u{0}",
            processed_ms: 1,
        };
        for vendor in crate::vendors::VendorId::ALL {
            let Ok(parts) = vendor.map(record, &ctx) else { continue };
            for raw_data in [RawData::Full, RawData::Hash, RawData::Off] {
                let mut new = Vec::new();
                crate::ocsf::write::event(&parts, raw_data, &mut new).unwrap();
                let old = serde_json::to_vec(&old::with_raw_data(parts.clone(), raw_data)).unwrap();
                compared += 1;
                if new != old && differ.len() < 3 {
                    differ.push(format!(
                        "{} {raw_data:?}\n new: {}\n old: {}",
                        vendor.name(),
                        String::from_utf8_lossy(&new),
                        String::from_utf8_lossy(&old)
                    ));
                }
                serde_json::from_slice::<serde::de::IgnoredAny>(&new).unwrap();
            }
        }
    }
    assert!(compared > 1000, "compared {compared}");
    assert!(differ.is_empty(), "{} of {compared} differ:\n{}", differ.len(), differ.join("\n"));
}

/// The same without any whitespace: a vendor whose JSON escapes every non-ASCII character
/// (Python's `json.dumps` default, `ensure_ascii`): `\u4e2d` is 6 bytes of record for 3 of event.
#[test]
fn review21a_stored_body_capacity_with_ascii_escaped_text() {
    let name: String = "\\u4e2d\\u6587".repeat(2000);
    let raw = format!(
        "{{\"id\":\"r1\",\"entity_type\":\"user\",\"action_type\":\"deleted\",\"actor_id\":\"usr_1\",\
         \"actor_name\":\"Ann Admin\",\"actor_email\":\"ann@example.com\",\"target_id\":\"usr_2\",\
         \"target_name\":\"{name}\",\"created_at\":\"2026-03-18T08:15:42Z\",\"note\":\"{name}\"}}"
    );
    let body = aitronos(&raw, RawData::Off);
    serde_json::from_slice::<Value>(&body).unwrap();
    assert!(
        body.capacity() <= 2 * body.len(),
        "compact {} B record, raw_data=off: a {} byte event holds {} bytes ({:.1}x)",
        raw.len(),
        body.len(),
        body.capacity(),
        body.capacity() as f64 / body.len() as f64
    );
}
