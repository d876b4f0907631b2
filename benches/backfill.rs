//! Rate-limit efficiency of a backfill, per vendor (not a test: it prints figures).
//!
//! The agent (default quota = the vendor's documented or assumed limit) backfills a week of
//! records from the simulator, which enforces that same limit. Time is tokio's paused clock,
//! so "vendor time" is exact and a backfill that takes minutes at the vendor's pace runs in
//! seconds. Reported per vendor: requests made, how many were answered 200 and 429, vendor time
//! taken, and the theoretical minimum for the 200s at the vendor's rate, `(n - 1) · per / limit`;
//! how many requests came inside a `Retry-After` window (the simulator counts them); and the
//! verdict against issue 9's targets: within 5 % of the minimum, none inside a `Retry-After`
//! window, under 1 % of requests answered 429.
//!
//! Run: `cargo bench --bench backfill` (add `-- 50000` for another record count).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::daemon::{self, RunOptions};
use auditrelay::sim::{Sim, SimCredential, SimOptions, SimVendor};
use auditrelay::sources::RunMode;
use tokio_util::sync::CancellationToken;

fn main() {
    let records: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    println!("backfill of {records} records spread over 7 days, per vendor, at the vendor's limit");
    println!(
        "{:<11} {:>8} {:>6} {:>6} {:>7} {:>12} {:>12} {:>7} {:>9} {:>8} {:>8}",
        "vendor", "requests", "200", "429", "429 %", "vendor time", "minimum", "ratio", "inside RA", "wall", ""
    );
    for v in SimVendor::ALL {
        runtime.block_on(backfill(v, records));
    }
}

async fn backfill(v: SimVendor, records: usize) {
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-18T12:00:00Z").unwrap().to_utc();
    let clock = Clock::starting_at(start);
    let mut opts = SimOptions::default();
    let week = Duration::from_secs(7 * 86_400);
    opts.aitronos.records = 0;
    opts.astronomer.records = 0;
    opts.configcat.records = 0;
    opts.datafold.records = 0;
    match v {
        SimVendor::Aitronos => (opts.aitronos.records, opts.aitronos.records_span) = (records, week),
        SimVendor::Astronomer => (opts.astronomer.records, opts.astronomer.records_span) = (records, week),
        SimVendor::ConfigCat => (opts.configcat.records, opts.configcat.records_span) = (records, week),
        SimVendor::Datafold => (opts.datafold.records, opts.datafold.records_span) = (records, week),
    }
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, clock.clone()).await.unwrap();
    let org = sim.organizations(v)[0].clone();
    let credential = match sim.credential(v, &org) {
        SimCredential::ApiKey(key) => format!("api_key = {key:?}"),
        SimCredential::Bearer(token) => format!("bearer_token = {token:?}"),
        SimCredential::Basic { username, password } => format!("username = {username:?}\npassword = {password:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "state_dir = {state:?}\n[[sources]]\nname = \"bench\"\nvendor = {vendor:?}\norganization_id = {org:?}\n\
         {credential}\nbase_url = {base:?}\nstart = \"8d\"\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.path().join("state").display().to_string(),
        vendor = v.name(),
        base = sim.base_url().to_string(),
        out = dir.path().join("events.ndjson").display().to_string(),
    );
    let config = Config::parse_with_env(&text, &dir.path().join("bench.toml"), &|_| None).unwrap();
    let (vendor_start, wall_start) = (clock.now(), Instant::now());
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, clock.clone(), opts, CancellationToken::new()).await.unwrap();
    let (vendor_time, wall) = (clock.now() - vendor_start, wall_start.elapsed());
    assert_eq!(report.sources[0].stats.stored as usize, records, "{report:?}");
    let stats = sim.vendor_stats(v);
    let (limit, per) = v.default_rate_limit();
    let minimum = per.mul_f64(stats.ok.saturating_sub(1) as f64 / f64::from(limit));
    let share_429 = 100.0 * stats.rate_limited as f64 / stats.requests.max(1) as f64;
    let ratio = vendor_time.as_secs_f64() / minimum.as_secs_f64().max(f64::MIN_POSITIVE);
    let meets = ratio <= 1.05 && stats.retry_after_violations == 0 && share_429 < 1.0;
    println!(
        "{:<11} {:>8} {:>6} {:>6} {:>6.2}% {:>11.1}s {:>11.1}s {:>7.3} {:>9} {:>7.2}s {:>8}",
        v.name(),
        stats.requests,
        stats.ok,
        stats.rate_limited,
        share_429,
        vendor_time.as_secs_f64(),
        minimum.as_secs_f64(),
        ratio,
        stats.retry_after_violations,
        wall.as_secs_f64(),
        if meets { "meets" } else { "MISSES" },
    );
    sim.shutdown().await;
}
