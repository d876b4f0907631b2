//! Adversarial review of 3eca543 + 655b249 (issue 21): the OCSF writer's `metadata` and
//! `unmapped` written member by member (`ocsf::write`), and the summary's `metadata` key looked
//! for within the event's last 8 KiB (`summary::summarize_shaped`, `last_metadata_key`).
//!
//! The writer is compared with serde_json's derived `Serialize` on the same `EventParts`: the
//! real mappings' parts of every vendor and definition, the hostile corpus, and arbitrary
//! `Metadata` / `unmapped` values (proptest). One finding (the reach's edge), fixed; the rest
//! held.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::path::Path;

use auditrelay::ocsf::event::{EventParts, Logger, Metadata, Product, RawData, Unmapped};
use auditrelay::ocsf::{Context, summary, write};
use auditrelay::sim::{self, SimVendor};
use auditrelay::vendors::VendorId;
use auditrelay::vendors::defined::registry;
use serde_json::{Map, Value};

use crate::github_sim::{GithubOptions, GithubSim};
use crate::okta_sim::{OktaOptions, OktaSim};

const RECORDS: usize = 500;
const SEED: u64 = 42;
/// `summary::METADATA_REACH` (private there).
const REACH: usize = 8 << 10;
const KEY: &[u8] = b",\"metadata\":{";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn definition(file: &str) -> VendorId {
    VendorId::Defined(registry::load_file(&root().join("config/vendors.d").join(file)).unwrap())
}

/// What serde_json writes for the event's tail (`unmapped` when not empty, then `metadata`,
/// then the event's closing brace), as the writer wrote it before 3eca543.
fn serde_tail(parts: &EventParts) -> Vec<u8> {
    let mut s = Vec::new();
    if let Some(u) = parts.unmapped.as_ref().filter(|m| !m.is_empty()) {
        s.extend_from_slice(b",\"unmapped\":");
        serde_json::to_writer(&mut s, u).unwrap();
    }
    s.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut s, &parts.metadata).unwrap();
    s.push(b'}');
    s
}

/// The hand-written event ends with exactly serde's bytes for `unmapped` and `metadata`, right
/// after `raw_data_size` (the members before are the unchanged code). Returns the event.
fn check_parts(parts: &EventParts, what: &str) -> Vec<u8> {
    let mut first = Vec::new();
    for raw_data in [RawData::Full, RawData::Hash, RawData::Off] {
        let mut out = Vec::new();
        write::event(parts, raw_data, &mut out).unwrap();
        let want = serde_tail(parts);
        assert!(
            out.ends_with(&want),
            "{what} ({raw_data:?}):\n ours: {}\nserde: {}",
            String::from_utf8_lossy(&out[out.len().saturating_sub(want.len())..]),
            String::from_utf8_lossy(&want)
        );
        let before = std::str::from_utf8(&out[..out.len() - want.len()]).unwrap();
        let size = before.rsplit_once(",\"raw_data_size\":").expect("raw_data_size just before").1;
        assert_eq!(size, parts.raw_data.len().to_string(), "{what}");
        // and it is JSON
        serde_json::from_slice::<Value>(&out).unwrap_or_else(|e| panic!("{what}: {e}"));
        if first.is_empty() {
            first = out;
        }
    }
    first
}

fn ctx<'a>(raw: &'a str, key: &'a str, organization: &'a str, log_name: &'a str, processed_ms: i64) -> Context<'a> {
    Context {
        organization,
        dedupe_key: key,
        time: chrono::DateTime::from_timestamp(1_773_821_742, 0).unwrap(),
        raw,
        log_name,
        processed_ms,
    }
}

/// Maps `texts` with `vendor` (as `map_record` does, without the severity override, which does
/// not touch `metadata`) and compares every event's tail with serde's. Returns the events.
fn compare_vendor(vendor: VendorId, texts: &[String], organization: &str) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let Ok(record) = serde_json::from_str::<Map<String, Value>>(text) else { continue };
        let key = format!("k{i}");
        for (log_name, ms) in [("saas-audit", 1_780_000_000_000), ("", i64::MIN), ("l\"\\\u{1}\u{2028}é", i64::MAX)] {
            let c = ctx(text, &key, organization, log_name, ms);
            let Ok(parts) = vendor.map(&record, &c) else { continue };
            let event = check_parts(&parts, &format!("{} #{i}", vendor.name()));
            if log_name == "saas-audit" {
                events.push(event);
            }
        }
    }
    events
}

/// Every key's distance from the end of the event (and of the stamped event a sink sends).
fn key_distance(event: &[u8]) -> (usize, usize) {
    let mut sent = Vec::new();
    auditrelay::ocsf::stamp_transmit_time(event, 1_790_000_000_000, &mut sent);
    let at = memchr::memmem::rfind(event, KEY).unwrap();
    let sent_at = memchr::memmem::rfind(&sent, KEY).unwrap();
    (event.len() - at, sent.len() - sent_at)
}

// ---------------------------------------------------------------------------------------------
// The writer: attacks that held

/// Every built-in vendor's simulated records, and the shipped Aitronos and ConfigCat
/// definitions: `metadata` and `unmapped` written as serde writes them (three log names, the
/// i64 extremes for `processed_time` / `logged_time`, each `raw_data` policy). Also prints the
/// largest `metadata` (distance of its key from the end) for the reach finding below.
#[test]
fn review21h_writer_matches_serde_for_every_builtin_vendor_and_definition() {
    let mut widest = Vec::new();
    for v in SimVendor::ALL {
        let vendor = VendorId::from_name(v.name()).unwrap();
        let texts = sim::sample_records(v, RECORDS, SEED);
        for org in ["org", "", "o\"\\\u{7f}"] {
            let events = compare_vendor(vendor, &texts, org);
            assert!(events.len() > RECORDS / 2, "{}", v.name());
            if org == "org" {
                let max = events.iter().map(|e| key_distance(e)).max().unwrap();
                widest.push((v.name().to_owned(), max));
            }
        }
    }
    for (file, v) in [("aitronos-defined.toml", SimVendor::Aitronos), ("configcat-defined.toml", SimVendor::ConfigCat)]
    {
        let events = compare_vendor(definition(file), &sim::sample_records(v, RECORDS, SEED), "org");
        assert!(events.len() > RECORDS / 2, "{file}");
        widest.push((file.to_owned(), events.iter().map(|e| key_distance(e)).max().unwrap()));
    }
    println!("largest metadata (bytes from its key to the end, stored / sent): {widest:?}");
    for (name, (stored, sent)) in &widest {
        assert!(*stored < 1024 && *sent < 1024, "{name}");
    }
}

/// The Okta and GitHub simulators' records through the shipped definitions.
#[tokio::test]
async fn review21h_writer_matches_serde_for_okta_and_github_definitions() {
    let okta = OktaSim::start(OktaOptions { records: RECORDS, ..OktaOptions::default() }).await;
    let texts: Vec<String> = okta.events().iter().map(|e| e.json.to_string()).collect();
    okta.stop().await;
    let events = compare_vendor(definition("okta.toml"), &texts, "acme");
    assert_eq!(events.len(), RECORDS);
    let okta_max = events.iter().map(|e| key_distance(e)).max().unwrap();

    let github = GithubSim::start(GithubOptions { records: RECORDS, ..GithubOptions::default() }).await;
    let texts: Vec<String> = github.events().iter().map(|e| e.json.to_string()).collect();
    github.stop().await;
    let events = compare_vendor(definition("github-enterprise.toml"), &texts, "acme");
    assert_eq!(events.len(), RECORDS);
    let github_max = events.iter().map(|e| key_distance(e)).max().unwrap();
    println!("largest metadata: okta {okta_max:?}, github {github_max:?}");
    assert!(okta_max.1 < 1024 && github_max.1 < 1024);
}

/// The hostile corpus (control characters, a lone surrogate, deep nesting, huge numbers) and
/// records whose every string carries text to escape, through every built-in vendor and every
/// definition.
#[test]
fn review21h_writer_matches_serde_for_hostile_records() {
    let dir = root().join("tests/fixtures/fuzz/ocsf_map");
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.unwrap().path()).unwrap()).trim().to_owned())
        .collect();
    texts.sort();
    // A lone surrogate in every string value: serde_json refuses it (no event), and written raw
    // into a definition's field it never reaches `metadata`; an escaped U+2028 and astral chars.
    let tricky = ["\\ud800", "\\udc00x", "\\u2028\\u2029", "\\ud83d\\ude00", "\\u0000\\u001f\\\"\\\\", "{\\\"a\\\":1}"];
    let mut mapped = 0;
    for v in SimVendor::ALL {
        for (i, base) in sim::sample_records(v, 60, SEED).into_iter().enumerate() {
            let t = tricky[i % tricky.len()];
            // into every string value (after its opening quote)
            let text = base.replace(":\"", &format!(":\"{t}"));
            texts.push(text);
        }
    }
    let vendors: Vec<VendorId> = SimVendor::ALL
        .iter()
        .map(|v| VendorId::from_name(v.name()).unwrap())
        .chain(
            ["okta.toml", "github-enterprise.toml", "aitronos-defined.toml", "configcat-defined.toml"].map(definition),
        )
        .collect();
    for vendor in vendors {
        mapped += compare_vendor(vendor, &texts, "org").len();
    }
    assert!(mapped > 100, "{mapped}");
}

fn text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}\u{2029}é😀{}\\[\\],:a]{0,12}",
        proptest::sample::select(vec![
            String::new(),
            " ".to_owned(),
            "\u{feff}".to_owned(),
            "\u{fffd}".to_owned(),
            "\u{10ffff}".to_owned(),
        ]),
    ]
}

fn cow() -> impl proptest::strategy::Strategy<Value = Cow<'static, str>> {
    use proptest::prelude::*;
    prop_oneof![
        text().prop_map(Cow::Owned),
        proptest::sample::select(vec!["", "a\"b", "\u{1}", "Okta"]).prop_map(Cow::Borrowed)
    ]
}

fn product() -> impl proptest::strategy::Strategy<Value = Product> {
    use proptest::prelude::*;
    (cow(), cow(), proptest::option::of(cow())).prop_map(|(name, vendor_name, version)| Product {
        name,
        vendor_name,
        version,
    })
}

fn logger() -> impl proptest::strategy::Strategy<Value = Logger> {
    use proptest::prelude::*;
    (cow(), product(), proptest::option::of(text()), any::<i64>())
        .prop_map(|(name, product, log_name, logged_time)| Logger { name, product, log_name, logged_time })
}

fn metadata() -> impl proptest::strategy::Strategy<Value = Metadata> {
    use proptest::option::of;
    use proptest::prelude::*;
    (
        (
            proptest::sample::select(vec!["1.8.0", "", "\"\\\u{1}\u{2028}"]),
            product(),
            text(),
            of(text()),
            of(text()),
            of(text()),
        ),
        (of(text()), of(text()), of(cow()), of(proptest::collection::vec(text(), 0..4)), of(text())),
        (of(any::<i64>()), proptest::collection::vec(logger(), 0..3)),
    )
        .prop_map(
            |(
                (version, product, uid, original_event_uid, correlation_uid, event_code),
                (original_time, tenant_uid, log_provider, labels, log_name),
                (processed_time, loggers),
            )| Metadata {
                version,
                product,
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
            },
        )
}

/// One real event's parts, to put arbitrary `metadata` / `unmapped` into.
fn real_parts() -> EventParts {
    let v = SimVendor::Datafold;
    let text = &sim::sample_records(v, 1, SEED)[0];
    let record: Map<String, Value> = serde_json::from_str(text).unwrap();
    VendorId::from_name(v.name()).unwrap().map(&record, &ctx(text, "k", "org", "saas-audit", 1)).unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]

    /// Arbitrary `Metadata` (any Unicode text, empty strings, borrowed and owned `Cow`s, empty
    /// and absent labels, no loggers, any i64) and arbitrary `unmapped` (empty, absent, any
    /// names and values): the event's tail is serde's, and the sinks read it by its shape as
    /// they read it parsed (whenever its `metadata` is within the reach).
    #[test]
    fn review21h_writer_matches_serde_for_arbitrary_metadata(
        m in metadata(),
        unmapped in proptest::option::of(proptest::collection::btree_map(text(), text(), 0..4)),
    ) {
        let mut parts = real_parts();
        parts.metadata = m;
        parts.unmapped = unmapped.map(|u| u.into_iter().collect::<Unmapped>());
        let event = check_parts(&parts, "arbitrary");
        let parsed = format!("{:?}", summary::summarize_parsed(&event));
        proptest::prop_assert_eq!(format!("{:?}", summary::summarize(&event)), parsed.clone());
        if let Some(shaped) = summary::summarize_shaped(&event) {
            proptest::prop_assert_eq!(format!("{:?}", Ok::<_, String>(shaped)), parsed);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The summary's reach

/// A real event whose `metadata.event_code` is `braces` `{` and then `pad` `a`s.
fn event_with_code(braces: usize, pad: usize) -> Vec<u8> {
    let mut parts = real_parts();
    parts.metadata.event_code = Some(format!("{}{}", "{".repeat(braces), "a".repeat(pad)));
    let mut out = Vec::new();
    write::event(&parts, RawData::Full, &mut out).unwrap();
    out
}

/// The finding (low: no summary changed): the reach's edge was not where `last_metadata_key`
/// said. The brace walk checked `body[..=brace].ends_with(KEY)`, reading up to 12 bytes before
/// the reach: a key across the reach's start was found when at most 12 vendor braces followed
/// in `metadata`, and not (the whole parse) when more did, unlike `memmem::rfind` over the
/// reach. Failed on 655b249; fixed: the walk looks within the reach only.
#[test]
fn review21h_the_reach_edge_is_the_same_whatever_the_braces_after_the_key() {
    let mut mismatches = Vec::new();
    for braces in [0, 12, 13, 40] {
        // Pad `event_code` until the key is 8185 ..= 8215 bytes from the end.
        let base = event_with_code(braces, 0);
        let d0 = base.len() - memchr::memmem::rfind(&base, KEY).unwrap();
        for d in REACH - 7..=REACH + 23 {
            let body = event_with_code(braces, d - d0);
            let key = memchr::memmem::rfind(&body, KEY).unwrap();
            assert_eq!(body.len() - key, d);
            let reach = body.len().saturating_sub(REACH);
            let want = memchr::memmem::rfind(&body[reach..], KEY).is_some();
            let got = summary::summarize_shaped(&body);
            // Whatever way it is read, the summary is the parser's.
            assert_eq!(format!("{:?}", summary::summarize(&body)), format!("{:?}", summary::summarize_parsed(&body)));
            if got.is_some() != want {
                mismatches.push((braces, d, got.is_some(), want));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "(vendor braces in event_code, key's distance from the end, read by shape, key within the reach): {mismatches:?}"
    );
}

/// Held: exactly at the reach (the key's `,` the first byte of the last 8 KiB) the key is
/// found whatever the braces; one byte further with more than 12 braces, not (whole parse, same
/// summary); a body of exactly 8 KiB, 8 KiB + 1 and shorter are searched whole.
#[test]
fn review21h_holds_the_reach_boundary() {
    for braces in [0, 1, 12, 13, 16, 17, 100, 4000] {
        let base = event_with_code(braces, 0);
        let d0 = base.len() - memchr::memmem::rfind(&base, KEY).unwrap();
        if d0 <= REACH {
            let body = event_with_code(braces, REACH - d0);
            assert!(summary::summarize_shaped(&body).is_some(), "{braces} at the reach");
        }
        let body = event_with_code(braces, (REACH + 13).saturating_sub(d0));
        if body.len() - memchr::memmem::rfind(&body, KEY).unwrap() == REACH + 13 {
            assert!(summary::summarize_shaped(&body).is_none(), "{braces} past the reach");
            assert!(summary::summarize(&body).is_ok());
        }
    }
    // whole bodies around 8 KiB: the head and a tail padded in `event_code`
    let base = event_with_code(0, 0);
    for len in [REACH - 1, REACH, REACH + 1] {
        let body = event_with_code(20, len - base.len() - 20);
        assert_eq!(body.len(), len);
        assert!(summary::summarize_shaped(&body).is_some(), "{len}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    /// Held: a real head followed by random fragments (keys, braces, quotes, padding runs that
    /// move keys across the reach) and a real `metadata`: whenever it is read by its shape, the
    /// summary is the parser's, and never a key further back than the last one.
    #[test]
    fn review21h_holds_random_tails_across_the_reach(
        parts in proptest::collection::vec(
            proptest::sample::select(vec![
                ",\"metadata\":{", ",\"metadata\":", "{", "}", ",", "\"", "a", "{{{{{{{{",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ]),
            0..200,
        ),
        pad in 0usize..9000,
    ) {
        let event = event_with_code(0, 0);
        let head_end = event.windows(8).position(|w| w == b",\"time\":").unwrap() + 8;
        let head_end = head_end + event[head_end..].iter().position(|&b| b == b',').unwrap();
        let key = memchr::memmem::rfind(&event, KEY).unwrap();
        let mut body = event[..head_end].to_vec();
        body.extend_from_slice(b",\"x\":\"");
        body.extend(std::iter::repeat_n(b'a', pad));
        body.extend_from_slice(parts.concat().as_bytes());
        body.push(b'"');
        body.extend_from_slice(&event[key..]);
        let parsed = summary::summarize_parsed(&body);
        if let Some(shaped) = summary::summarize_shaped(&body)
            && parsed.is_ok()
        {
            proptest::prop_assert_eq!(format!("{:?}", Ok::<_, String>(shaped)), format!("{:?}", parsed));
        }
    }
}

/// Held (what vendor records with a lone surrogate become): `\ud800` / `\udc00` cannot reach
/// `metadata` or `unmapped` as text (a Rust string cannot hold one): serde_json refuses the
/// record, so it is unmappable (dead-lettered with the reason) before the writer runs, for the
/// built-in vendors and the definitions alike; a correct pair is one character, written raw.
#[test]
fn review21h_holds_lone_surrogates_never_reach_the_writer() {
    let base = &sim::sample_records(SimVendor::Datafold, 1, SEED)[0];
    let vendors = [VendorId::from_name(SimVendor::Datafold.name()).unwrap(), definition("okta.toml")];
    for (escape, ok) in [("\\ud800", false), ("\\udc00", false), ("\\ud800\\u0041", false), ("\\ud83d\\ude00", true)] {
        let text = base.replacen(":\"", &format!(":\"{escape}"), 1);
        assert_eq!(serde_json::from_str::<Map<String, Value>>(&text).is_ok(), ok, "{escape}");
        for vendor in vendors {
            let c = ctx(&text, "k", "org", "saas-audit", 1);
            let got = auditrelay::vendors::map_record(vendor, &c, &auditrelay::ocsf::Policy::default());
            if !ok {
                let e = got.err().unwrap_or_else(|| panic!("{escape}: mapped"));
                assert!(format!("{e:?}").contains("not a JSON object"), "{escape}: {e:?}");
            }
        }
    }
}
