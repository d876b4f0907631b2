//! OCSF mapping cost per vendor, without the network or the queue (not a test: it prints figures).
//!
//! Records come from the vendor simulator's own generators (`sim::sample_records`), as the exact
//! JSON text a page carries; the vendor definitions' (issue 20: `config/vendors.d/okta.toml` and
//! `github-enterprise.toml`) from their contract simulators' generators (`tests/it/okta_sim`,
//! `tests/it/github_sim`), read as the definition's source reads them
//! (`vendors::defined::runtime::read_record`). Two measurements per vendor, each over every record:
//!
//! - **map**: `vendors::map_record` alone over records already read (what `Source::events` does per
//!   record: parse the record, build the OCSF event, serialize it once); `(parse ns)` is its first
//!   step alone, the record's text parsed into a `serde_json` map, for scale;
//! - **read + map**: what a page costs after its body arrived: each record's text parsed to a
//!   `&RawValue` (the envelope parse), `sources::read_record` with the vendor's id and time fields
//!   (Astronomer: `vendors::astronomer::source::decode` over the plain NDJSON, which hashes each line's
//!   canonical form for its key), then `map_record`.
//!
//! After the vendors, one line for the sinks' summary at its worst (review 21g): an event whose
//! `metadata.event_code` is 1 MiB of `{`, read by `summarize` and by the whole parse.
//!
//! One warm-up round, then [`PASSES`] timed rounds, the three measurements interleaved in each
//! round; the table shows the **median** pass (the best is in the last column, to show the
//! spread). Severity overrides: none (the default when the
//! configuration has no `[severity]`). Every record must map: a failure means the bench is wrong.
//!
//! Run: `cargo bench --bench mapping` (add `-- 20000` for another record count per vendor).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

#[path = "common/machine.rs"]
mod machine;
use machine::machine;
// The Okta and GitHub contract simulators, for their generators: they name the others as
// `super::contract_sim`, `super::killable` and `super::oauth_sim`, so all sit at this crate's root.
#[path = "../tests/it/contract_sim/mod.rs"]
mod contract_sim;
#[path = "../tests/it/github_sim/mod.rs"]
mod github_sim;
#[path = "../tests/it/killable/mod.rs"]
mod killable;
#[path = "../tests/it/oauth_sim/mod.rs"]
mod oauth_sim;
#[path = "../tests/it/okta_sim/mod.rs"]
mod okta_sim;

use std::hint::black_box;
use std::time::{Duration, Instant};

use auditrelay::ocsf::{Context, Policy, summary};
use auditrelay::sim::{self, SimVendor};
use auditrelay::sources::{self, Record};
use auditrelay::vendors::defined::{model::Definition, registry, runtime};
use auditrelay::vendors::{self, VendorId};
use serde_json::value::RawValue;

/// Timed passes per measurement (after one warm-up round).
const PASSES: usize = 7;
/// Seed of the simulated records.
const SEED: u64 = 42;

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    println!("{}", machine());
    println!(
        "OCSF mapping of {records} simulated records per vendor; median of {PASSES} passes after a warm-up \
         (ns per event, events per second)"
    );
    println!(
        "{:<11} {:>8} {:>9} {:>11} {:>10} {:>10} {:>11} {:>10} {:>11} {:>12}",
        "vendor",
        "records",
        "map ns",
        "map ev/s",
        "(parse ns)",
        "read+map",
        "r+m ev/s",
        "record B",
        "event B",
        "best map/r+m"
    );
    for v in SimVendor::ALL {
        bench_vendor(Reader::builtin(v, records), records);
    }
    let (okta, github) = defined_records(records);
    bench_vendor(Reader::defined("okta.toml", okta), records);
    bench_vendor(Reader::defined("github-enterprise.toml", github), records);
    braces_in_metadata();
}

/// The summary's worst case found in review 21g: vendor text in `metadata` made of `{` (an
/// `event_code` of 1 MiB of them), where the `metadata` key is looked for from the end. Printed
/// beside the whole parse of the same body, the median of [`PASSES`] after a warm-up.
fn braces_in_metadata() {
    let raw = &sim::sample_records(SimVendor::Datafold, 1, SEED)[0];
    let ctx = Context {
        organization: "org",
        dedupe_key: "k",
        time: chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap(),
        raw,
        log_name: "saas-audit",
        processed_ms: 1_780_000_000_000,
    };
    let event = String::from_utf8(vendors::map_record(VendorId::Datafold, &ctx, &Policy::default()).unwrap()).unwrap();
    let from = event.rfind("\"event_code\":\"").unwrap() + "\"event_code\":\"".len();
    let to = from + event[from..].find('"').unwrap();
    let body = format!("{}{}{}", &event[..from], "{".repeat(1 << 20), &event[to..]).into_bytes();
    let mut shaped = || {
        black_box(summary::summarize(black_box(&body)).unwrap());
    };
    let mut parsed = || {
        black_box(summary::summarize_parsed(black_box(&body)).unwrap());
    };
    let [shaped, parsed] = timed([&mut shaped, &mut parsed]);
    println!(
        "an event whose metadata.event_code is 1 MiB of '{{': summarize {:.0} us, the whole parse {:.0} us",
        shaped[PASSES / 2].as_secs_f64() * 1e6,
        parsed[PASSES / 2].as_secs_f64() * 1e6
    );
}

/// `n` records of each defined vendor's simulator, as JSON text: Okta's, then GitHub's.
fn defined_records(n: usize) -> (Vec<String>, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let okta = okta_sim::OktaSim::start(okta_sim::OktaOptions { records: n, ..Default::default() }).await;
        let github = github_sim::GithubSim::start(github_sim::GithubOptions { records: n, ..Default::default() }).await;
        let texts = (
            okta.events().iter().map(|e| e.json.to_string()).collect(),
            github.events().iter().map(|e| e.json.to_string()).collect(),
        );
        okta.stop().await;
        github.stop().await;
        texts
    })
}

/// The organization the simulator serves first, as the source's `organization_id` (Datafold: the
/// label of its first key).
fn organization(v: SimVendor) -> &'static str {
    match v {
        SimVendor::Aitronos => sim::aitronos::DEFAULT_ORGANIZATION_ID,
        SimVendor::Astronomer => sim::astronomer::DEFAULT_ORGANIZATION_ID,
        SimVendor::ConfigCat => sim::configcat::DEFAULT_ORGANIZATION_ID,
        SimVendor::Datafold => sim::datafold::DEFAULT_ORGANIZATION,
    }
}

/// The id and time fields the vendor's source reads (`src/sources/<vendor>.rs`); Astronomer has
/// no id (its key is a content hash) and is read by `decode` instead.
fn fields(v: SimVendor) -> (&'static str, &'static str) {
    match v {
        SimVendor::Aitronos => ("id", "created_at"),
        SimVendor::ConfigCat => ("auditLogId", "auditLogDateTime"),
        SimVendor::Datafold => ("event_uuid", "timestamp"),
        SimVendor::Astronomer => ("", "timestamp"),
    }
}

/// What one page of records costs to read: the sources' own reading code.
struct Reader {
    /// The built-in vendor, or the definition.
    vendor: Result<SimVendor, &'static Definition>,
    /// Each record's JSON text (JSON vendors).
    texts: Vec<String>,
    /// The NDJSON body, uncompressed (Astronomer).
    ndjson: Vec<u8>,
}

impl Reader {
    fn builtin(v: SimVendor, n: usize) -> Reader {
        let texts = sim::sample_records(v, n, SEED);
        assert_eq!(texts.len(), n);
        let ndjson = if v == SimVendor::Astronomer {
            texts.iter().flat_map(|line| line.bytes().chain([b'\n'])).collect()
        } else {
            Vec::new()
        };
        Reader { vendor: Ok(v), texts, ndjson }
    }

    /// The shipped definition `config/vendors.d/<file>` and its records.
    fn defined(file: &str, texts: Vec<String>) -> Reader {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vendors.d").join(file);
        let def = registry::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        Reader { vendor: Err(def), texts, ndjson: Vec::new() }
    }

    fn name(&self) -> &str {
        match self.vendor {
            Ok(v) => v.name(),
            Err(def) => &def.name,
        }
    }

    fn mapper(&self) -> VendorId {
        match self.vendor {
            Ok(v) => VendorId::from_name(v.name()).unwrap(),
            Err(def) => VendorId::Defined(def),
        }
    }

    /// The organization the simulator serves first (a definition's: any).
    fn organization(&self) -> &'static str {
        self.vendor.map_or("acme", organization)
    }

    /// Reads every record, handing each to `each` (in chunks for Astronomer, as the source gets them).
    fn read(&self, mut each: impl FnMut(Record)) {
        let vendor = match self.vendor {
            Ok(v) => v,
            Err(def) => {
                for text in &self.texts {
                    let raw = RawValue::from_string(text.clone()).unwrap();
                    match runtime::read_record(raw, &def.answer) {
                        Ok(record) => each(record),
                        Err(rejected) => panic!("{}: record rejected: {}", def.name, rejected.reason),
                    }
                }
                return;
            }
        };
        if vendor == SimVendor::Astronomer {
            vendors::astronomer::source::decode(&self.ndjson[..], |records, rejected| {
                assert!(rejected.is_empty(), "rejected lines: {:?}", rejected.first().map(|r| &r.reason));
                records.into_iter().for_each(&mut each);
                true
            })
            .unwrap();
            return;
        }
        let (id, time) = fields(vendor);
        for text in &self.texts {
            let raw: &RawValue = serde_json::from_str(text).unwrap();
            match sources::read_record(raw, id, time) {
                Ok(record) => each(record),
                Err(rejected) => panic!("{vendor:?}: record rejected: {}", rejected.reason),
            }
        }
    }
}

/// Maps one record as `Source::events` does; returns the serialized event's length.
fn map(mapper: VendorId, organization: &str, severity: &Policy, r: &Record) -> usize {
    let ctx = Context {
        organization,
        dedupe_key: &r.key,
        time: r.time,
        raw: r.raw.get(),
        log_name: "saas-audit",
        processed_ms: 1_780_000_000_000,
    };
    match vendors::map_record(mapper, &ctx, severity) {
        Ok(body) => black_box(body).len(),
        Err(e) => panic!("{}: record {} does not map: {e}", mapper.name(), r.key),
    }
}

/// Runs the `passes` in turn, one round as a warm-up and then `PASSES` timed rounds: interleaved,
/// so that a burst of load from elsewhere slows every measurement alike. Each pass's times, sorted.
fn timed<const N: usize>(mut passes: [&mut dyn FnMut(); N]) -> [Vec<Duration>; N] {
    let mut times: [Vec<Duration>; N] = std::array::from_fn(|_| Vec::with_capacity(PASSES));
    for round in 0..=PASSES {
        for (pass, times) in passes.iter_mut().zip(&mut times) {
            let start = Instant::now();
            pass();
            if round > 0 {
                times.push(start.elapsed());
            }
        }
    }
    times.iter_mut().for_each(|t| t.sort());
    times
}

fn bench_vendor(reader: Reader, n: usize) {
    assert_eq!(reader.texts.len(), n, "{}: the simulator made every record", reader.name());
    let record_bytes = reader.texts.iter().map(String::len).sum::<usize>() as f64 / n as f64;
    let mapper = reader.mapper();
    let (org, severity) = (reader.organization(), Policy::default());

    let mut records = Vec::with_capacity(n);
    reader.read(|r| records.push(r));
    assert_eq!(records.len(), n, "{}: every record is read", reader.name());
    let event_bytes = records.iter().map(|r| map(mapper, org, &severity, r)).sum::<usize>() as f64 / n as f64;

    // The first step of `map_record`: the record's text into a `serde_json` map.
    let mut parse_pass = || {
        for r in &records {
            let record: serde_json::Map<String, serde_json::Value> = serde_json::from_str(r.raw.get()).unwrap();
            black_box(record);
        }
    };
    let mut map_pass = || {
        for r in &records {
            black_box(map(mapper, org, &severity, black_box(r)));
        }
    };
    let mut read_map_pass = || {
        let mut count = 0;
        reader.read(|r| {
            black_box(map(mapper, org, &severity, &r));
            count += 1;
        });
        assert_eq!(count, n);
    };
    let [parse_only, map_only, read_map] = timed([&mut parse_pass, &mut map_pass, &mut read_map_pass]);

    let per_event = |d: Duration| d.as_nanos() as f64 / n as f64;
    let (p, m, rm) =
        (per_event(parse_only[PASSES / 2]), per_event(map_only[PASSES / 2]), per_event(read_map[PASSES / 2]));
    let best = format!("{:.0}/{:.0}", per_event(map_only[0]), per_event(read_map[0]));
    println!(
        "{:<11} {:>8} {:>9.0} {:>11.0} {:>10.0} {:>10.0} {:>11.0} {:>10.0} {:>11.0} {:>12}",
        reader.name(),
        n,
        m,
        1e9 / m,
        p,
        rm,
        1e9 / rm,
        record_bytes,
        event_bytes,
        best
    );

    // What each sink then reads back from every event (`ocsf::summary::summarize`: serde_json
    // deserializing the few attributes of its envelope, stepping over the rest).
    let events: Vec<Vec<u8>> = records
        .iter()
        .map(|r| {
            let ctx = Context {
                organization: org,
                dedupe_key: &r.key,
                time: r.time,
                raw: r.raw.get(),
                log_name: "saas-audit",
                processed_ms: 1_780_000_000_000,
            };
            vendors::map_record(mapper, &ctx, &severity).unwrap()
        })
        .collect();
    let mut summarize = || {
        for e in &events {
            black_box(summary::summarize(black_box(e)).unwrap());
        }
    };
    let [summarized] = timed([&mut summarize]);
    println!(
        "{:<11} a sink's summary of each event (ocsf::summary::summarize): {:.0} ns",
        "",
        per_event(summarized[PASSES / 2])
    );
}
