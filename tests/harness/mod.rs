//! Shared set-up for the integration tests: a simulator on 127.0.0.1, a configuration written
//! for it, and readers for what the file sink delivered.
#![allow(dead_code)]

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

/// dedupe key -> how many times it was delivered.
pub fn delivered(path: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = event["dedupe_key"].as_str().unwrap().to_owned();
        *counts.entry(key).or_insert(0) += 1;
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

/// For each source: dedupe key -> times delivered.
pub fn delivered_by_source(path: &Path) -> HashMap<String, HashMap<String, usize>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let source = event["source"].as_str().unwrap().to_owned();
        let key = event["dedupe_key"].as_str().unwrap().to_owned();
        *out.entry(source).or_default().entry(key).or_insert(0) += 1;
    }
    out
}

/// The vendor records a source delivered, each in canonical JSON (keys sorted).
pub fn delivered_raw(path: &Path, source: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["source"] == source)
        .map(|e| serde_json::to_string(&e["raw"]).unwrap())
        .collect()
}

/// A JSON text in canonical form (keys sorted), to compare records however they were spelled.
pub fn canonical(json: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(json).unwrap()).unwrap()
}
