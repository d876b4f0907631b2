//! `auditrelay demo`: the agent against its built-in simulator, end to end, in one command.
//!
//! Starts the simulator on an ephemeral 127.0.0.1 port serving all four vendors, each with an
//! unannounced rate limit tighter than the agent's quota, a few 5xx and malformed answers and
//! some truncated Astronomer gzip streams — so 429 handling, back-off and refetching show. The
//! limits are per second rather than per minute so the demo takes seconds. It writes a real
//! configuration file, runs the agent in catch-up mode with its state in a temporary directory,
//! then checks the output file against the simulator's record stores and prints a summary. It
//! exits 0 only when every seeded record was delivered exactly once.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::daemon::{self, RunOptions, RunReport};
use crate::sim::{RateLimitSetting, RetryAfterMode, Sim, SimCredential, SimOptions, SimVendor};
use crate::sources::RunMode;

pub async fn run(records: usize, out_dir: &Path, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.set_records(records);
    // A budget the vendor does not announce (as when other integrations share it): the agent
    // meets real 429s and must wait out each Retry-After.
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 20, per: Duration::from_secs(1) };
    opts.faults.limit_headers = false;
    opts.faults.retry_after = RetryAfterMode::Seconds;
    opts.faults.error_rate = 0.05;
    opts.faults.malformed_rate = 0.05;
    opts.demo_faults();
    let sim = Sim::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts, clock.clone())
        .await
        .context("cannot start the simulator on 127.0.0.1")?;

    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let events_path = out_dir.join("events.ndjson");
    match std::fs::remove_file(&events_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove the previous {}", events_path.display()));
        }
        _ => {}
    }
    let state = tempfile::Builder::new()
        .prefix("auditrelay-demo-state")
        .tempdir()
        .context("cannot create a temporary state directory")?;
    let config_path = out_dir.join("demo-config.toml");
    let text = demo_config(&sim, state.path(), &std::path::absolute(&events_path)?);
    // It holds the simulator's keys as literals: private to the user, as a config with secrets
    // should be (and as `check` warns it otherwise).
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&config_path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())
    };
    write().with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;

    println!(
        "auditrelay demo: simulator at {} serving {records} records for each of {}",
        sim.base_url(),
        SimVendor::ALL.map(|v| v.name()).join(", ")
    );
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, clock, opts, shutdown).await?;
    let sim_stats = sim.stats();
    let expected: HashMap<String, HashSet<String>> =
        SimVendor::ALL.into_iter().map(|v| (source_name(v), expected_records(&sim, v))).collect();
    let tenants: HashMap<String, SimVendor> =
        SimVendor::ALL.into_iter().map(|v| (first_organization(&sim, v), v)).collect();
    sim.shutdown().await;

    let delivered = read_delivered(&events_path, &tenants)?;
    print!("{}", summary(&report, &delivered, &expected, &events_path));
    println!(
        "simulator: {} requests, {} answered 429, {} answered 5xx, {} malformed or truncated answers, \
         {} requests inside a Retry-After window",
        sim_stats.requests,
        sim_stats.rate_limited,
        sim_stats.server_errors,
        sim_stats.malformed,
        sim_stats.retry_after_violations
    );
    println!("config used: {}", config_path.display());
    let total: usize = expected.values().map(HashSet::len).sum();
    let complete = expected.iter().all(|(source, want)| delivered.records.get(source) == Some(want));
    if complete && delivered.lines == total as u64 && !report.failed() {
        println!("OK: all {total} seeded records delivered exactly once in {:.1?}", report.elapsed);
        Ok(ExitCode::SUCCESS)
    } else {
        let got: usize = delivered.records.values().map(HashSet::len).sum();
        println!("INCOMPLETE: {got} of {total} seeded records delivered ({} lines)", delivered.lines);
        Ok(ExitCode::FAILURE)
    }
}

fn source_name(v: SimVendor) -> String {
    format!("{}-demo", v.name())
}

/// The organization the demo reads of `v` (its first).
fn first_organization(sim: &Sim, v: SimVendor) -> String {
    sim.organizations(v).into_iter().next().unwrap_or_default()
}

/// What the vendor holds, as the demo compares it: dedupe keys, or for a vendor whose records
/// have no id (Astronomer) the records themselves in canonical JSON.
fn expected_records(sim: &Sim, v: SimVendor) -> HashSet<String> {
    let keys = sim.record_keys(v, &first_organization(sim, v));
    match v.keys_are_records() {
        true => keys.iter().filter_map(|l| canonical(l)).collect(),
        false => keys.into_iter().collect(),
    }
}

fn canonical(json: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(json).ok().map(|v| v.to_string())
}

fn demo_config(sim: &Sim, state_dir: &Path, events: &Path) -> String {
    let mut text = format!(
        "# Written by `auditrelay demo`: the agent against its built-in simulator.\nstate_dir = {:?}\n\n\
         [queue]\nmax_bytes = \"256 MiB\"\n",
        state_dir.display().to_string()
    );
    for v in SimVendor::ALL {
        let org = first_organization(sim, v);
        let credential = match sim.credential(v, &org) {
            SimCredential::ApiKey(key) => format!("api_key = {key:?}"),
            SimCredential::Bearer(token) => format!("bearer_token = {token:?}"),
            SimCredential::Basic { username, password } => {
                format!("username = {username:?}\npassword = {password:?}")
            }
        };
        // The agent's quota (40/s) is deliberately above the simulator's limit (20/s) so that
        // the demo shows 429s being honoured; a real configuration keeps the vendor's limit.
        let _ = write!(
            text,
            "\n[[sources]]\nname = {name:?}\nvendor = {vendor:?}\norganization_id = {org:?}\n{credential}\n\
             base_url = {base:?}\nstart = \"2d\"\nrate_limit = {{ requests = 40, per = \"1s\" }}\n\
             backoff = {{ initial = \"100ms\", max = \"2s\" }}\n",
            name = source_name(v),
            vendor = v.name(),
            base = sim.base_url().to_string(),
        );
    }
    let _ =
        write!(text, "\n[[sinks]]\nname = \"demo-file\"\ntype = \"file\"\npath = {:?}\n", events.display().to_string());
    text
}

/// What the output file holds, per source: the records as [`expected_records`] spells them.
struct Delivered {
    records: HashMap<String, HashSet<String>>,
    lines: u64,
}

/// Reads the output file; an event belongs to the source of the vendor whose organization its
/// `metadata.tenant_uid` names (`tenants`: each vendor's demo organization).
fn read_delivered(path: &Path, tenants: &HashMap<String, SimVendor>) -> anyhow::Result<Delivered> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut out = Delivered { records: HashMap::new(), lines: 0 };
    for (n, line) in text.lines().enumerate() {
        let event: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON event", path.display(), n + 1))?;
        out.lines += 1;
        let metadata = &event["metadata"];
        let vendor = metadata["tenant_uid"].as_str().and_then(|t| tenants.get(t));
        let source = vendor.map_or_else(|| "?".to_owned(), |v| source_name(*v));
        // The vendor's id, or (Astronomer, which has none) the record itself.
        let record = match metadata["original_event_uid"].as_str() {
            Some(id) => Some(id.to_owned()),
            None => event["raw_data"].as_str().and_then(canonical),
        };
        out.records.entry(source).or_default().extend(record);
    }
    Ok(out)
}

fn summary(
    report: &RunReport,
    delivered: &Delivered,
    expected: &HashMap<String, HashSet<String>>,
    events: &Path,
) -> String {
    let mut s = String::new();
    let header = ["source", "seeded", "fetched", "stored", "delivered", "duplicates", "dead letters", "429s"];
    let _ = writeln!(
        s,
        "{:<18} {:>7} {:>8} {:>7} {:>10} {:>10} {:>12} {:>6}",
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7]
    );
    for src in &report.sources {
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>8} {:>7} {:>10} {:>10} {:>12} {:>6}",
            src.name,
            expected.get(&src.name).map_or(0, HashSet::len),
            src.stats.fetched,
            src.stats.stored,
            delivered.records.get(&src.name).map_or(0, HashSet::len),
            src.stats.duplicates,
            src.stats.dead_lettered,
            src.stats.rate_limited,
        );
    }
    for sink in &report.sinks {
        let _ = writeln!(
            s,
            "sink {}: {} events in {} batches -> {}",
            sink.name,
            sink.stats.events,
            sink.stats.batches,
            events.display()
        );
    }
    let _ = writeln!(s, "elapsed: {:.1?}", report.elapsed);
    s
}
