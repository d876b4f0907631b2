//! Issue 21 point 3: the OCSF mapping's exact bytes, pinned. Each case maps a broad sample of
//! records with one vendor (2,000 of the simulator's records per built-in vendor, the Okta and
//! GitHub simulators' records through the shipped definitions, the built-in simulator's records
//! through the shipped Aitronos and ConfigCat definitions, and the fuzz corpus of hostile records
//! through every vendor) and hashes every outcome (the event's bytes, or the reason a record
//! cannot be mapped) into one SHA-256. The expected digests were computed on the mapping before
//! it was rewritten for speed (commit b6c52a2): any byte of any event that differs fails here.
//! Besides the default policy, a slice of each sample is mapped with `raw_data = "hash"` and
//! `"off"`, a severity override, and an empty `log_name`, so each branch of the writer is pinned.
//! Every event mapped here is also read as the sinks read it (`ocsf::summary`), stored and
//! stamped: by its shape, with the same summary as parsing it whole.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::Path;

use auditrelay::ocsf::event::{RawData, Severity};
use auditrelay::ocsf::{Context, Policy, SeverityPolicy, summary};
use auditrelay::sim::{self, SimVendor};
use auditrelay::sources::{self, Record};
use auditrelay::vendors::defined::{registry, runtime};
use auditrelay::vendors::{self, VendorId};
use serde_json::value::RawValue;
use sha2::Digest as _;

use crate::github_sim::{GithubOptions, GithubSim};
use crate::okta_sim::{OktaOptions, OktaSim};

/// Records per vendor.
const RECORDS: usize = 2000;
/// How many of them are mapped again with each other policy.
const OTHER_POLICIES: usize = 300;
const SEED: u64 = 42;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The built-in simulator's records of `v`, read as its source reads them.
fn builtin_records(v: SimVendor) -> Vec<Record> {
    let texts = sim::sample_records(v, RECORDS, SEED);
    if v == SimVendor::Astronomer {
        let ndjson: Vec<u8> = texts.iter().flat_map(|line| line.bytes().chain([b'\n'])).collect();
        let mut out = Vec::new();
        vendors::astronomer::source::decode(&ndjson[..], |records, rejected| {
            assert!(rejected.is_empty());
            out.extend(records);
            true
        })
        .unwrap();
        return out;
    }
    let (id, time) = VendorId::from_name(v.name()).unwrap().record_fields();
    texts
        .iter()
        .map(|t| {
            let raw: &RawValue = serde_json::from_str(t).unwrap();
            sources::read_record(raw, id, time).unwrap_or_else(|r| panic!("{v:?}: {}", r.reason))
        })
        .collect()
}

/// A shipped definition of `config/vendors.d/`.
fn definition(file: &str) -> VendorId {
    let def = registry::load_file(&root().join("config/vendors.d").join(file)).unwrap_or_else(|e| panic!("{e}"));
    VendorId::Defined(def)
}

/// Records as the definition's source reads them.
fn defined_records(vendor: VendorId, texts: impl IntoIterator<Item = String>) -> Vec<Record> {
    let VendorId::Defined(def) = vendor else { panic!("not a definition") };
    texts
        .into_iter()
        .map(|t| {
            let raw = RawValue::from_string(t).unwrap();
            runtime::read_record(raw, &def.answer).unwrap_or_else(|r| panic!("{}: {}", def.name, r.reason))
        })
        .collect()
}

/// The policies each record is mapped with: the default for all, the others for the first
/// [`OTHER_POLICIES`].
fn policies(vendor: VendorId, raised: &str) -> Vec<(Policy, &'static str)> {
    let severity = SeverityPolicy::from_overrides([((vendor.name().to_owned(), raised.to_owned()), Severity::High)]);
    vec![
        (Policy::default(), "saas-audit"),
        (Policy { raw_data: RawData::Hash, ..Policy::default() }, "saas-audit"),
        (Policy { raw_data: RawData::Off, ..Policy::default() }, ""),
        (Policy { severity, ..Policy::default() }, "prod-log"),
    ]
}

/// How many of `records` map under the default policy, of how many, and the SHA-256 of every
/// outcome of mapping them with `vendor` (each length-prefixed): `"mapped/total sha256"`.
fn digest(vendor: VendorId, organization: &str, records: &[Record], raised: &str) -> String {
    let mut hash = sha2::Sha256::new();
    let mut mapped = 0;
    let mut feed = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    for (i, (policy, log_name)) in policies(vendor, raised).into_iter().enumerate() {
        let take = if i == 0 { records.len() } else { OTHER_POLICIES.min(records.len()) };
        for r in &records[..take] {
            let ctx = Context {
                organization,
                dedupe_key: &r.key,
                time: r.time,
                raw: r.raw.get(),
                log_name,
                processed_ms: 1_780_000_000_000 + i as i64,
            };
            match vendors::map_record(vendor, &ctx, &policy) {
                Ok(event) => {
                    read_by_shape(&event);
                    mapped += usize::from(i == 0);
                    feed(&event)
                }
                Err(e) => feed(format!("unmappable: {e}").as_bytes()),
            }
        }
    }
    let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{mapped}/{} {hex}", records.len())
}

/// The sinks' summary of `event`, as stored and as sent: read from its head and `metadata`
/// (`summarize_shaped`), and the same as parsing the event whole.
fn read_by_shape(event: &[u8]) {
    let mut sent = Vec::new();
    auditrelay::ocsf::stamp_transmit_time(event, 1_790_000_000_000, &mut sent);
    let whole = format!("{:?}", summary::summarize_parsed(event));
    for body in [event, &sent[..]] {
        let shaped = summary::summarize_shaped(body)
            .unwrap_or_else(|| panic!("not read by its shape: {}", String::from_utf8_lossy(body)));
        assert_eq!(format!("{:?}", Ok::<_, String>(shaped)), whole, "{}", String::from_utf8_lossy(body));
    }
}

/// The digests of one vendor, as `(case, digest)`, compared together so a failure shows them all.
fn check(got: Vec<(&str, String)>, want: &[(&str, &str)]) {
    let got: Vec<(String, String)> = got.into_iter().map(|(c, d)| (c.to_owned(), d)).collect();
    let want: Vec<(String, String)> = want.iter().map(|(c, d)| ((*c).to_owned(), (*d).to_owned())).collect();
    assert_eq!(got, want, "the mapped events' bytes changed");
}

#[test]
fn builtin_vendors_map_to_the_same_bytes() {
    let mut got = Vec::new();
    for (v, org, raised) in [
        (SimVendor::Aitronos, sim::aitronos::DEFAULT_ORGANIZATION_ID, "user.deleted"),
        (SimVendor::Astronomer, sim::astronomer::DEFAULT_ORGANIZATION_ID, "deleteDeployment"),
        (SimVendor::Datafold, sim::datafold::DEFAULT_ORGANIZATION, "login"),
        (SimVendor::ConfigCat, sim::configcat::DEFAULT_ORGANIZATION_ID, "productDeleted"),
    ] {
        got.push((v.name(), digest(VendorId::from_name(v.name()).unwrap(), org, &builtin_records(v), raised)));
    }
    check(
        got,
        &[
            ("aitronos", "2000/2000 a78fd625d56f4ba32de7a9e4cfd49918fab950caddd722d9c9ea6587659caf48"),
            ("astronomer", "2000/2000 584c7bce1af219e88ae713c04d38bb4634667b9105e1038b9b15c33a99b8eed4"),
            ("datafold", "2000/2000 26535c9e3f28d2b708febf7842590a46de5aa7a47843242053771111f19bf897"),
            ("configcat", "2000/2000 a9527d8f74549f97c224ae36a732ee8f744bcc7cef7bf5a99e5dfd4fc4ad67b9"),
        ],
    );
}

#[tokio::test]
async fn shipped_definitions_map_to_the_same_bytes() {
    let mut got = Vec::new();
    let okta = OktaSim::start(OktaOptions { records: RECORDS, ..OktaOptions::default() }).await;
    let vendor = definition("okta.toml");
    let records = defined_records(vendor, okta.events().iter().map(|e| e.json.to_string()));
    got.push(("okta", digest(vendor, "acme", &records, "user.session.start")));
    okta.stop().await;

    let github = GithubSim::start(GithubOptions { records: RECORDS, ..GithubOptions::default() }).await;
    let vendor = definition("github-enterprise.toml");
    let records = defined_records(vendor, github.events().iter().map(|e| e.json.to_string()));
    got.push(("github-enterprise", digest(vendor, "acme", &records, "repo.create")));
    github.stop().await;

    for (file, v, org) in [
        ("aitronos-defined.toml", SimVendor::Aitronos, sim::aitronos::DEFAULT_ORGANIZATION_ID),
        ("configcat-defined.toml", SimVendor::ConfigCat, sim::configcat::DEFAULT_ORGANIZATION_ID),
    ] {
        let vendor = definition(file);
        let records = defined_records(vendor, sim::sample_records(v, RECORDS, SEED));
        got.push((file, digest(vendor, org, &records, "user.deleted")));
    }
    check(
        got,
        &[
            ("okta", "2000/2000 acd0a58cd87b12dcb736fcef11f3d6df1e92d4c0acd310c5d8a79b823c085fee"),
            ("github-enterprise", "2000/2000 ef163aba2bcbe3f63f973791e751a83f6bcc0a53ec76a08f7ff047e4a71ac7d0"),
            ("aitronos-defined.toml", "2000/2000 664b8a420a518faf3afee13c6ebf4208d427e8838a29aff9d7375439c814a559"),
            ("configcat-defined.toml", "2000/2000 0719601dd35fd9f6aa3ab0de551c1de79b373a0b7b73de6388663dcf9e3a599d"),
        ],
    );
}

/// The fuzz corpus of hostile records (control characters, lone surrogates, deep nesting, huge
/// numbers, far times) through every built-in vendor: the escaping's corners.
#[test]
fn hostile_records_map_to_the_same_bytes() {
    let dir = root().join("tests/fixtures/fuzz/ocsf_map");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "{}: the corpus", dir.display());
    let mut got = Vec::new();
    for v in SimVendor::ALL {
        let vendor = VendorId::from_name(v.name()).unwrap();
        let mut records = Vec::new();
        for file in &files {
            let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
            // The records that are JSON at all, as a source would have read them: an id and
            // time from the record if it has them, else fixed ones (mapping takes them as given).
            let Ok(raw) = RawValue::from_string(text.trim().to_owned()) else { continue };
            let key = file.file_name().unwrap().to_string_lossy().into_owned();
            let time = chrono::DateTime::from_timestamp(1_773_821_742, 0).unwrap();
            records.push(Record { key, time, raw });
        }
        got.push((v.name(), digest(vendor, "org", &records, "x")));
    }
    check(
        got,
        &[
            ("aitronos", "1/10 d5447e70e4e81cda86b1d0afb0ccd648e34009e9d0d3686335dd1425edf07461"),
            ("astronomer", "6/10 040383b092eccfb304be89b522448b3a2ac58e581c3aa395a5b9f87666b8525c"),
            ("datafold", "6/10 9e977ad0820f9e2285f1db1901e1e3b27fa0085139b1ba183f59bfda887360b9"),
            ("configcat", "0/10 8f4f83eb0559bbf01e0ef44b5bc65ea71a04685e34b671862c3854ce31a1c747"),
        ],
    );
}

/// Strings that each escape differently: quotes, backslashes, control characters, escaped
/// and raw non-ASCII, U+2028, an astral character, an e-mail and an address. Each record of
/// the sample gets one of them in place of each of its string values (by position).
const TRICKY: [&str; 8] = [
    "a\"b\\c/d",
    "\u{1}\u{8}\t\n\r\u{c}\u{1f}\u{7f}",
    "Zoë Çelik — “ops” \u{2028}\u{2029}",
    "😀 emoji \u{10ffff}",
    "ann.o'neil+ops@example.com",
    "2001:db8::7, 198.51.100.9",
    "   ",
    "{\"nested\":\"json\"}",
];

fn tricky(value: &mut serde_json::Value, n: &mut usize) {
    match value {
        serde_json::Value::String(s) => {
            *n += 1;
            // Leave ids and times alone half the time, so most records still map.
            if (*n).is_multiple_of(2) {
                *s = format!("{s}{}", TRICKY[*n / 2 % TRICKY.len()]);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| tricky(i, n)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|v| tricky(v, n)),
        _ => {}
    }
}

/// Records whose string values carry [`TRICKY`] texts, through every built-in vendor, written
/// back with escaped non-ASCII in every other record (as some vendors send it).
#[test]
fn records_with_escapes_map_to_the_same_bytes() {
    let mut got = Vec::new();
    for v in SimVendor::ALL {
        let vendor = VendorId::from_name(v.name()).unwrap();
        let mut records = Vec::new();
        for (i, text) in sim::sample_records(v, OTHER_POLICIES, SEED).into_iter().enumerate() {
            let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut n = i;
            tricky(&mut value, &mut n);
            let mut text = value.to_string();
            if i % 2 == 1 {
                text = text.chars().map(|c| if c.is_ascii() { c.to_string() } else { escape_utf16(c) }).collect();
            }
            let raw = RawValue::from_string(text).unwrap();
            let time = chrono::DateTime::from_timestamp(1_773_821_742 + i as i64, 0).unwrap();
            records.push(Record { key: format!("k{i}"), time, raw });
        }
        got.push((v.name(), digest(vendor, "org", &records, "x")));
    }
    check(
        got,
        &[
            ("aitronos", "300/300 6fbf2a75a58f1beabad1a947668363a3b1611ce52a343d046a132783cb6ecad8"),
            ("astronomer", "300/300 99fa4d4cf2dbdecd9579072aa6530085e4a1e4c825c217111cbffcfebdc5a350"),
            ("datafold", "300/300 cc6b709190385e4f75cd0cba5c8c1a164fa94688e7ed8185da2edd98a40809b4"),
            ("configcat", "300/300 3e4dcbb32fb7ef700a11883f7068010bf214d2e78509988b7de3927bcd0db039"),
        ],
    );
}

/// `c` as JSON's `\uXXXX` escape(s).
fn escape_utf16(c: char) -> String {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units).iter().map(|u| format!("\\u{u:04x}")).collect()
}
