//! Shared set-up for the integration tests: a simulator on 127.0.0.1, a configuration written
//! for it, and readers for what the file sink delivered.
#![allow(dead_code)]

pub mod agent;
/// A hostile vendor (raw HTTP on 127.0.0.1) for the hostile, rate-limit, reload and rotation tests.
pub mod hostile;
/// The OCSF 1.8.0 check the unit tests use too: every event an end-to-end test reads is valid.
#[path = "../../ocsf_schema/mod.rs"]
pub mod ocsf_schema;
pub mod pki;
pub mod sinks;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::sim::{Sim, SimCredential, SimOptions, SimVendor};
use chrono::{DateTime, Utc};

/// The fixed wall time tests start at.
pub fn test_start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-18T12:00:00Z").unwrap().with_timezone(&Utc)
}

pub async fn start_sim(opts: SimOptions, clock: &Clock) -> Sim {
    Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, clock.clone()).await.unwrap()
}

/// A configuration with one Aitronos source against `sim` and one file sink, plus `extra`
/// lines appended to the source table.
pub fn config_text(sim: &Sim, dir: &Path, extra_source: &str) -> String {
    format!(
        r#"state_dir = {state:?}

[[sources]]
name = "aitronos-test"
vendor = "aitronos"
organization_id = {org:?}
api_key = "${{TEST_AITRONOS_KEY}}"
base_url = {base:?}
start = "2d"
{extra_source}

[[sinks]]
name = "file"
type = "file"
path = {out:?}
"#,
        state = dir.join("state").display().to_string(),
        org = sim.aitronos_organization_id(),
        base = sim.base_url().to_string(),
        out = out_path(dir).display().to_string(),
    )
}

pub fn out_path(dir: &Path) -> PathBuf {
    dir.join("events.ndjson")
}

pub fn parse_config(text: &str, sim: &Sim, dir: &Path) -> Config {
    let key = sim.aitronos_api_key().to_owned();
    let env = move |name: &str| (name == "TEST_AITRONOS_KEY").then(|| key.clone());
    Config::parse_with_env(text, &dir.join("auditrelay.toml"), &env).unwrap()
}

/// Every OCSF event in the file sink's output, each checked against the OCSF 1.8.0 schema of
/// its class (a test that reads the output thereby proves every event it produced is valid).
pub fn events(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: a test polling the file may read it while the sink is appending a batch
    // (the sink ends every event with `\n`, so a line without one is still being written).
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let events: Vec<serde_json::Value> = whole.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    for event in &events {
        ocsf_schema::assert_valid(event);
    }
    events
}

/// The vendor's id of an event (`metadata.original_event_uid`), or for records without one
/// (Astronomer) the record itself in canonical JSON, from `raw_data`.
pub fn record_key(event: &serde_json::Value) -> String {
    match event["metadata"]["original_event_uid"].as_str() {
        Some(id) => id.to_owned(),
        None => canonical(event["raw_data"].as_str().unwrap()),
    }
}

/// Vendor record id -> how many times it was delivered.
pub fn delivered(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in events(path) {
        *counts.entry(record_key(&event)).or_insert(0) += 1;
    }
    counts
}

/// Asserts every seeded record arrived exactly once.
pub fn assert_exactly_once(sim: &Sim, path: &Path) {
    let got = delivered(path);
    let mut ids = sim.aitronos_ids();
    ids.sort();
    let mut keys: Vec<_> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys.len(), ids.len(), "delivered {} distinct records, seeded {}", keys.len(), ids.len());
    assert_eq!(keys, ids);
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
}

/// A `[[sources]]` table for organization `org` of vendor `v` on `sim`, with `extra` lines.
pub fn source_block(sim: &Sim, v: SimVendor, org: &str, name: &str, extra: &str) -> String {
    let credential = match sim.credential(v, org) {
        SimCredential::ApiKey(key) => format!("api_key = {key:?}"),
        SimCredential::Bearer(token) => format!("bearer_token = {token:?}"),
        SimCredential::Basic { username, password } => format!("username = {username:?}\npassword = {password:?}"),
    };
    format!(
        "[[sources]]\nname = {name:?}\nvendor = {vendor:?}\norganization_id = {org:?}\n{credential}\nbase_url = {base:?}\n{extra}\n",
        vendor = v.name(),
        base = sim.base_url().to_string(),
    )
}

/// A whole configuration: these source tables and one file sink.
pub fn config_with_sources(dir: &Path, sources: &[String]) -> String {
    format!(
        "state_dir = {state:?}\n\n{sources}\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.join("state").display().to_string(),
        sources = sources.join("\n"),
        out = out_path(dir).display().to_string(),
    )
}

/// The OCSF `metadata.product.name` of each simulated vendor.
pub fn product(v: SimVendor) -> &'static str {
    match v {
        SimVendor::Aitronos => "Aitronos",
        SimVendor::Astronomer => "Astro",
        SimVendor::ConfigCat => "ConfigCat",
        SimVendor::Datafold => "Datafold",
    }
}

/// For one vendor organization (product and `metadata.tenant_uid`): record key -> times delivered.
pub fn delivered_for(path: &Path, v: SimVendor, org: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for event in events(path) {
        if event["metadata"]["product"]["name"] == product(v) && event["metadata"]["tenant_uid"] == org {
            *out.entry(record_key(&event)).or_insert(0) += 1;
        }
    }
    out
}

/// A JSON text in canonical form (keys sorted), to compare records however they were spelled.
pub fn canonical(json: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap()
}
