//! The crash proof (DESIGN invariants 1–3) on the real binary: the agent collects every record
//! of all four simulated vendors into three receivers (the HEC emulator, the Elasticsearch
//! `_bulk` emulator with the index template `auditrelay elasticsearch template` prints, and a
//! file sink) while this test kills it with SIGKILL at random moments and starts it again;
//! two-thirds of the way through the kills, HEC and Elasticsearch go down for a while. In the end:
//! - the `metadata.uid` set each receiver got equals the set of seeded records' uids;
//! - a record arrived twice only from a batch in flight at a kill (at most one batch per sink
//!   per kill), never from the queue: the queue issued exactly one event id per record;
//! - Elasticsearch holds every uid exactly once: a batch resent after a kill is answered 409
//!   per document (`_id` = `metadata.uid`, one backing index), counted as delivered;
//! - while HEC and Elasticsearch were down the file sink received everything (a dead receiver
//!   stalls only its own sink), and once they were back their backlogs drained.
//!
//! Quick by default (4 000 records, 6 kills: part of `scripts/test.sh`). The long soak is
//! `scripts/soak.sh`: the release binary, `AUDITRELAY_SOAK_RECORDS` records per vendor
//! (12 500 → 50 000 in all) and `AUDITRELAY_SOAK_KILLS` kills (25). `AUDITRELAY_SOAK_SEED`
//! replays a run (the seed is printed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::es_emulator::{EsEmulator, EsOptions, base64};
use crate::harness;
use crate::hec_emulator;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, Sim, SimOptions, SimVendor};
use harness::agent::Agent;
use harness::*;
use hec_emulator::{HecEmulator, HecOptions};
use sha2::{Digest, Sha256};

/// Events per batch for both sinks: the bound on duplicates per kill and sink.
const BATCH: usize = 200;
/// A bound, not a wait: each phase normally takes well under a second.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a number")))
}

/// The uid every seeded record must arrive with: UUIDv5 over vendor, organization and dedupe key
/// (Astronomer's key is the SHA-256 of the record's canonical JSON).
fn expected_uids(sim: &Sim) -> HashSet<String> {
    let mut uids = HashSet::new();
    for v in SimVendor::ALL {
        for org in sim.organizations(v) {
            for key in sim.record_keys(v, &org) {
                let key = match v {
                    SimVendor::Astronomer => {
                        let digest = Sha256::digest(canonical(&key).as_bytes());
                        format!("sha256:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
                    }
                    _ => key,
                };
                uids.insert(auditrelay::ocsf::event_uid(v.name(), &org, &key).to_string());
            }
        }
    }
    uids
}

/// uid -> times received.
fn counts<'a>(uids: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for uid in uids {
        *out.entry(uid.to_owned()).or_insert(0) += 1;
    }
    out
}

fn file_uids(path: &Path) -> HashMap<String, usize> {
    let events = events(path);
    counts(events.iter().map(|e| e["metadata"]["uid"].as_str().expect("metadata.uid")))
}

fn hec_uids(hec: &HecEmulator) -> HashMap<String, usize> {
    let events = hec.indexed_events();
    counts(events.iter().map(|e| e["metadata"]["uid"].as_str().expect("metadata.uid")))
}

/// The data stream the Elasticsearch sink writes to by default.
const STREAM: &str = "logs-auditrelay.ocsf-default";

/// uid -> documents Elasticsearch indexed for it; each document's `_id` must be its uid.
fn es_uids(es: &EsEmulator) -> HashMap<String, usize> {
    let docs = es.documents();
    for d in &docs {
        assert_eq!(d.source["ocsf"]["metadata"]["uid"].as_str(), Some(d.id.as_str()), "_id is not metadata.uid: {d:?}");
        assert_eq!(d.target, STREAM, "{d:?}");
    }
    counts(docs.iter().map(|d| d.id.as_str()))
}

/// The index template the operator installs: `auditrelay elasticsearch template`, run as they would.
fn install_template(es: &EsEmulator) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["elasticsearch", "template"])
        .output()
        .unwrap();
    assert!(out.status.success(), "auditrelay elasticsearch template: {}", String::from_utf8_lossy(&out.stderr));
    let template: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the template is JSON");
    es.install_template(auditrelay::sinks::elasticsearch::TEMPLATE_NAME, template);
}

/// The receiver got exactly the seeded uids, and no more duplicates than one batch per kill.
fn assert_complete(receiver: &str, got: &HashMap<String, usize>, expected: &HashSet<String>, kills: usize) -> usize {
    let missing = expected.iter().filter(|u| !got.contains_key(*u)).count();
    let unknown: Vec<_> = got.keys().filter(|u| !expected.contains(*u)).take(3).collect();
    assert_eq!(missing, 0, "{receiver}: {missing} of {} seeded records never arrived", expected.len());
    assert!(unknown.is_empty(), "{receiver}: uids that were never seeded: {unknown:?}");
    let extra: usize = got.values().map(|n| n - 1).sum();
    assert!(
        extra <= kills * BATCH,
        "{receiver}: {extra} duplicate deliveries after {kills} kills: more than one batch ({BATCH}) in flight per kill"
    );
    extra
}

fn config(sim: &Sim, dir: &Path, hec: &HecEmulator, es: &EsEmulator) -> String {
    // No vendor quota in the way (the simulator's limits are off): this proves crash safety,
    // tests/it/vendors.rs proves the rate limiting.
    let extra = "start = \"2d\"\nrate_limit = { requests = 200, per = \"1s\", burst = 20 }\n\
                 backoff = { initial = \"50ms\", max = \"500ms\" }";
    let sources: Vec<String> =
        SimVendor::ALL.into_iter().map(|v| source_block(sim, v, &sim.organizations(v)[0], v.name(), extra)).collect();
    format!(
        "state_dir = {state:?}\n\n{sources}\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\nbatch_max_events = {BATCH}\n\n\
         [[sinks]]\nname = \"splunk\"\ntype = \"hec\"\nurl = {url:?}\ntoken = \"hec-test-token\"\n\
         batch_max_events = {BATCH}\nbackoff = {{ initial = \"50ms\", max = \"500ms\" }}\n\n\
         [[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\nhosts = [{es_url:?}]\napi_key = \"soak:key\"\n\
         batch_max_events = {BATCH}\nbackoff = {{ initial = \"50ms\", max = \"500ms\" }}\n",
        state = dir.join("state").display().to_string(),
        sources = sources.join("\n"),
        out = out_path(dir).display().to_string(),
        url = hec.url(),
        es_url = es.url(),
    )
}

/// What moves while the agent works; a kill fires when one of them passed its random mark.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// After this many more vendor requests arrived.
    Requests(u64),
    /// After the HEC receiver indexed this many more events.
    Indexed(usize),
    /// After Elasticsearch indexed this many more documents.
    EsIndexed(usize),
    /// After the file sink's output grew by this many bytes.
    FileBytes(u64),
}

fn lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Runs the agent until the trigger fires (then SIGKILL: `true`) or it exits by itself
/// (`false`, asserting it exited 0).
async fn run_until(sim: &Sim, hec: &HecEmulator, es: &EsEmulator, config: &Path, log: &Path, trigger: Trigger) -> bool {
    let out = out_path(config.parent().unwrap());
    let (requests0, indexed0, bytes0) = (sim.stats().requests, hec.indexed_count(), file_len(&out));
    let es0 = es.document_count();
    // One log over all runs (appended): the history of every kill.
    let mut agent = Agent::spawn(&["run", "--once"], config, log, &[]);
    let deadline = Instant::now() + PHASE_LIMIT;
    loop {
        let fired = match trigger {
            Trigger::Requests(n) => sim.stats().requests >= requests0 + n,
            Trigger::Indexed(n) => hec.indexed_count() >= indexed0 + n,
            Trigger::EsIndexed(n) => es.document_count() >= es0 + n,
            Trigger::FileBytes(n) => file_len(&out) >= bytes0 + n,
        };
        if fired {
            let status = agent.kill().await; // SIGKILL
            // It may have finished in the same instant; a kill is a kill only if it landed.
            return !status.success();
        }
        if let Some(status) = agent.exited() {
            assert!(status.success(), "the agent failed on its own ({status}); last log lines:\n{}", agent.tail());
            return false;
        }
        assert!(Instant::now() < deadline, "no progress within {PHASE_LIMIT:?} under {trigger:?}");
        // Polling interval of the observer, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sigkill_at_random_moments_loses_nothing_and_duplicates_only_in_flight_batches() {
    let per_vendor = env_usize("AUDITRELAY_SOAK_RECORDS", 1000);
    let target_kills = env_usize("AUDITRELAY_SOAK_KILLS", 6);
    let seed =
        std::env::var("AUDITRELAY_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    eprintln!("soak: {per_vendor} records per vendor, {target_kills} kills, AUDITRELAY_SOAK_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let clock = Clock::system();
    let mut opts = SimOptions { seed, ..SimOptions::default() };
    opts.aitronos.records = per_vendor;
    opts.astronomer.records = per_vendor;
    opts.configcat.records = per_vendor;
    opts.datafold.records = per_vendor;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &clock).await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    let es = EsEmulator::start(EsOptions { api_keys: vec![base64("soak:key")], ..EsOptions::default() }).await;
    install_template(&es);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("auditrelay.toml");
    std::fs::write(&config_path, config(&sim, dir.path(), &hec, &es)).unwrap();
    let log = dir.path().join("agent.log");
    let out = out_path(dir.path());
    let expected = expected_uids(&sim);
    assert_eq!(expected.len(), 4 * per_vendor, "the simulator seeded what was asked");

    let started = Instant::now();
    let (mut kills, mut runs, mut outage_checked) = (0usize, 0usize, false);
    // Scale the marks to the work: about twice as many kill chances as kills asked for.
    let requests_per_kill = (4 * per_vendor / 100 / (2 * target_kills)).max(2) as u64;
    let events_per_kill = (4 * per_vendor / (4 * target_kills)).max(BATCH);
    loop {
        // Two-thirds of the way: HEC and Elasticsearch go down; the file sink must get everything
        // meanwhile.
        if kills >= target_kills * 2 / 3 && !outage_checked {
            hec.stop().await;
            es.stop().await;
            let (indexed_before, es_before) = (hec.indexed_count(), es.document_count());
            // One kill during the outage, then a run that the file sink completes.
            let mark = Trigger::FileBytes(rng.u64(1..=200_000));
            if run_until(&sim, &hec, &es, &config_path, &log, mark).await {
                kills += 1;
            }
            runs += 1;
            let mut agent = Agent::spawn(&["run", "--once"], &config_path, &log, &[]);
            runs += 1;
            // Cheap test first (lines), then the full uid check.
            let all = |_: &Agent| lines(&out) >= expected.len() && file_uids(&out).len() == expected.len();
            agent.until("the file sink to receive every record while HEC is down", PHASE_LIMIT, all).await;
            assert_eq!(hec.indexed_count(), indexed_before, "HEC was down, yet indexed events");
            assert_eq!(es.document_count(), es_before, "Elasticsearch was down, yet indexed documents");
            agent.kill().await;
            kills += 1;
            hec.restart().await;
            es.restart().await;
            outage_checked = true;
            eprintln!(
                "soak: HEC and Elasticsearch down: the file sink received all {} records meanwhile",
                expected.len()
            );
            continue;
        }
        // Only marks that can still be passed: no more vendor requests once every record was
        // served, no more HEC events once it has them all, and so on.
        let mut marks = Vec::new();
        if sim.stats().served_records < expected.len() as u64 {
            marks.push(Trigger::Requests(rng.u64(1..=requests_per_kill)));
        }
        if hec.indexed_count() < expected.len() {
            marks.push(Trigger::Indexed(rng.usize(1..=events_per_kill)));
        }
        if es.document_count() < expected.len() {
            marks.push(Trigger::EsIndexed(rng.usize(1..=events_per_kill)));
        }
        if lines(&out) < expected.len() {
            marks.push(Trigger::FileBytes(rng.u64(1..=events_per_kill as u64 * 1500)));
        }
        let Some(trigger) = rng.choice(marks) else {
            // Everything was received; one last run confirms the agent has nothing left to do.
            let mut last = Agent::spawn(&["run", "--once"], &config_path, &log, &[]);
            let status = last.exit(PHASE_LIMIT).await;
            assert!(status.success(), "the final run failed ({status}):\n{}", last.tail());
            runs += 1;
            break;
        };
        runs += 1;
        if run_until(&sim, &hec, &es, &config_path, &log, trigger).await {
            kills += 1;
            continue;
        }
        // The agent finished on its own: everything was collected and delivered.
        break;
    }
    let elapsed = started.elapsed();
    assert!(outage_checked, "the run finished before the HEC outage was staged ({kills} kills): seed more records");
    assert!(
        kills >= target_kills,
        "only {kills} kills landed before the agent finished (asked {target_kills}): seed more records"
    );

    let file_dups = assert_complete("file sink", &file_uids(&out), &expected, kills);
    let hec_dups = assert_complete("HEC", &hec_uids(&hec), &expected, kills);
    // `_id` = metadata.uid: a resend after a kill is a 409 per document, never a second copy
    // (Elastic's deduplication holds within one backing index, and nothing rolled over here).
    let es_dups = assert_complete("Elasticsearch", &es_uids(&es), &expected, kills);
    assert_eq!(es_dups, 0, "Elasticsearch indexed {es_dups} documents twice under one _id");
    assert_eq!(es.backing_indices(STREAM).len(), 1, "the data stream rolled over");
    let conflicts = es.requests().iter().flat_map(|r| r.items.clone()).filter(|s| *s == 409).count();
    // None from the queue: it issued exactly one event id per record, across every restart.
    let db = rusqlite::Connection::open(dir.path().join("state/auditrelay.db")).unwrap();
    let issued: i64 = db.query_row("SELECT issued FROM event_ids", [], |r| r.get(0)).unwrap();
    assert_eq!(issued as usize, expected.len(), "the queue stored some record twice (or missed one)");
    // Rows may still hold events every sink passed (below the purge mark): those are gone.
    let left: i64 = db
        .query_row(
            "SELECT COALESCE(SUM(last_id - MAX(first_id, purged + 1) + 1), 0) FROM pages, event_ids WHERE last_id > purged",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "events still queued after the final run");
    eprintln!(
        "soak: {} records, {kills} SIGKILLs over {runs} runs in {:.1} s; duplicates: file {file_dups}, HEC {hec_dups}, \
         Elasticsearch {es_dups} (resent documents answered 409: {conflicts}); vendor requests {}; queue ids issued {issued}",
        expected.len(),
        elapsed.as_secs_f64(),
        sim.stats().requests,
    );
    sim.shutdown().await;
}
