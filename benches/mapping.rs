//! OCSF mapping cost per vendor, without the network or the queue (not a test: it prints figures).
//!
//! Records come from the vendor simulator's own generators (`sim::sample_records`), as the exact
//! JSON text a page carries. Two measurements per vendor, each over every record:
//!
//! - **map**: `vendors::map_record` alone over records already read (what `Source::events` does per
//!   record: parse the record, build the OCSF event, serialize it once); `(parse ns)` is its first
//!   step alone, the record's text parsed into a `serde_json` map, for scale;
//! - **read + map**: what a page costs after its body arrived: each record's text parsed to a
//!   `&RawValue` (the envelope parse), `sources::read_record` with the vendor's id and time fields
//!   (Astronomer: `vendors::astronomer::source::decode` over the plain NDJSON, which hashes each line's
//!   canonical form for its key), then `map_record`.
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

use std::hint::black_box;
use std::time::{Duration, Instant};

use auditrelay::ocsf::{Context, Policy};
use auditrelay::sim::{self, SimVendor};
use auditrelay::sources::{self, Record};
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
        bench_vendor(v, records);
    }
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
    vendor: SimVendor,
    /// Each record's JSON text (JSON vendors).
    texts: Vec<String>,
    /// The NDJSON body, uncompressed (Astronomer).
    ndjson: Vec<u8>,
}

impl Reader {
    /// Reads every record, handing each to `each` (in chunks for Astronomer, as the source gets them).
    fn read(&self, mut each: impl FnMut(Record)) {
        if self.vendor == SimVendor::Astronomer {
            vendors::astronomer::source::decode(&self.ndjson[..], |records, rejected| {
                assert!(rejected.is_empty(), "rejected lines: {:?}", rejected.first().map(|r| &r.reason));
                records.into_iter().for_each(&mut each);
                true
            })
            .unwrap();
            return;
        }
        let (id, time) = fields(self.vendor);
        for text in &self.texts {
            let raw: &RawValue = serde_json::from_str(text).unwrap();
            match sources::read_record(raw, id, time) {
                Ok(record) => each(record),
                Err(rejected) => panic!("{:?}: record rejected: {}", self.vendor, rejected.reason),
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

fn bench_vendor(v: SimVendor, n: usize) {
    let texts = sim::sample_records(v, n, SEED);
    assert_eq!(texts.len(), n);
    let record_bytes = texts.iter().map(String::len).sum::<usize>() as f64 / n as f64;
    let ndjson = if v == SimVendor::Astronomer {
        texts.iter().flat_map(|line| line.bytes().chain([b'\n'])).collect()
    } else {
        Vec::new()
    };
    let reader = Reader { vendor: v, texts, ndjson };
    let mapper = VendorId::from_name(v.name()).unwrap();
    let (org, severity) = (organization(v), Policy::default());

    let mut records = Vec::with_capacity(n);
    reader.read(|r| records.push(r));
    assert_eq!(records.len(), n, "{v:?}: every record is read");
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
        v.name(),
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
}
