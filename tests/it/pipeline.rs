//! The agent end to end, in process: simulator on 127.0.0.1 → source loop → SQLite queue →
//! file sink (and, for the four vendors at once, the Elasticsearch sink into the `_bulk`
//! emulator), with tokio's clock paused (time moves only when every task waits), so rate
//! limits, `Retry-After` and back-offs are exercised without sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::es_emulator::{EsEmulator, EsOptions, base64};
use crate::harness;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::daemon::{self, RunOptions, RunReport, SourceOutcome};
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, RetryAfterMode, Sim, SimOptions, SimVendor};
use auditrelay::sinks::elasticsearch;
use auditrelay::sources::{RunMode, Source, SourceExit, SourceState};
use harness::*;
use tokio_util::sync::CancellationToken;

async fn run_once(sim: &Sim, dir: &std::path::Path, clock: &Clock, extra: &str) -> RunReport {
    let config = parse_config(&config_text(sim, dir, extra), sim, dir);
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, clock.clone(), opts, CancellationToken::new()).await.unwrap();
    assert_eq!(report.sources[0].outcome, SourceOutcome::CaughtUp, "{report:?}");
    report
}

/// Every page answered 200 was asked once: nothing fetched twice.
fn assert_no_page_fetched_twice(sim: &Sim) {
    let mut seen = HashMap::new();
    for r in sim.request_log().iter().filter(|r| r.status == 200) {
        *seen.entry(r.query.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "pages fetched more than once: {twice:?}");
}

/// After every 429 the very same page is asked again (the sweep is not restarted).
fn assert_same_page_after_429(sim: &Sim) {
    let log = sim.request_log();
    for pair in log.windows(2) {
        if pair[0].status == 429 {
            assert_eq!(pair[0].query, pair[1].query, "after a 429 the agent asked another page");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn test_pages_over_1234_records_exact_count_no_duplicate() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1234;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let report = run_once(&sim, dir.path(), &clock, "").await;

    assert_exactly_once(&sim, &out_path(dir.path()));
    assert_no_page_fetched_twice(&sim);
    let stats = report.sources[0].stats;
    assert_eq!(stats.stored, 1234);
    assert_eq!(stats.duplicates, 0);
    assert_eq!(sim.stats().rate_limited, 0, "the default quota matches the vendor's documented limit");
    assert_eq!(report.sinks[0].stats.events, 1234);
    assert_eq!(report.sinks[0].backlog, 0);
}

async fn rate_limited_run(mode: RetryAfterMode) {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1500;
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 3, per: Duration::from_secs(20) };
    opts.faults.retry_after = mode;
    // The budget vanishes unannounced (shared with other integrations): 429s will come.
    opts.faults.limit_headers = false;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    // The agent's quota is far above the vendor's: only the 429 handling keeps it in line.
    let report = run_once(&sim, dir.path(), &clock, r#"rate_limit = { requests = 100, per = "1s", burst = 10 }"#).await;

    let stats = sim.stats();
    assert!(stats.rate_limited > 0, "the test must provoke 429s: {stats:?}");
    assert_eq!(stats.retry_after_violations, 0, "a request arrived inside a Retry-After window: {stats:?}");
    assert_eq!(report.sources[0].stats.rate_limited, stats.rate_limited);
    assert_same_page_after_429(&sim);
    assert_no_page_fetched_twice(&sim);
    assert_exactly_once(&sim, &out_path(dir.path()));
}

#[tokio::test(start_paused = true)]
async fn test_429_retry_after_seconds_is_honoured() {
    rate_limited_run(RetryAfterMode::Seconds).await;
}

#[tokio::test(start_paused = true)]
async fn test_429_retry_after_http_date_is_honoured() {
    rate_limited_run(RetryAfterMode::HttpDate).await;
}

#[tokio::test(start_paused = true)]
async fn test_429_without_retry_after_uses_the_reset_header() {
    rate_limited_run(RetryAfterMode::Omit).await;
}

#[tokio::test(start_paused = true)]
async fn test_remaining_zero_pauses_before_the_budget_is_spent() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1500;
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 3, per: Duration::from_secs(20) };
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    // Same over-generous quota as above, but the vendor announces its budget on every answer:
    // the agent pauses at `remaining = 0` and never draws a 429 at all.
    let report = run_once(&sim, dir.path(), &clock, r#"rate_limit = { requests = 100, per = "1s", burst = 10 }"#).await;
    let stats = sim.stats();
    assert_eq!(stats.rate_limited, 0, "{stats:?}");
    assert_eq!(stats.retry_after_violations, 0);
    assert!(stats.requests >= 15);
    assert_eq!(report.sources[0].stats.rate_limited, 0);
    assert_exactly_once(&sim, &out_path(dir.path()));
}

#[tokio::test(start_paused = true)]
async fn test_5xx_and_malformed_pages_are_retried_without_loss() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1000;
    opts.faults.error_rate = 0.25;
    opts.faults.malformed_rate = 0.25;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let report = run_once(&sim, dir.path(), &clock, "").await;

    let stats = sim.stats();
    assert!(stats.server_errors > 0 && stats.malformed > 0, "{stats:?}");
    assert!(report.sources[0].stats.retries >= stats.server_errors + stats.malformed);
    assert_exactly_once(&sim, &out_path(dir.path()));
}

#[tokio::test(start_paused = true)]
async fn test_records_arriving_during_a_sweep_are_collected_by_the_next_one() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 600;
    opts.faults.arrivals_per_page = 7;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), r#"lag = "0s""#), &sim, dir.path());
    let run = |clock: Clock| {
        let config = config.clone();
        async move {
            let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
            daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap()
        }
    };
    run(clock.clone()).await;
    let after_first_run = sim.aitronos_ids();
    assert!(after_first_run.len() > 600, "records must arrive during the sweep");
    // Newer records kept arriving while pages were served; the frozen window kept the offsets
    // stable. A run two poll intervals later picks up every record that existed by then
    // (those arriving during *its* sweep are newer than its window and wait for the next).
    tokio::time::advance(Duration::from_secs(180)).await;
    run(clock.clone()).await;
    let got = delivered(&out_path(dir.path()));
    assert!(got.values().all(|n| *n == 1), "a record was delivered twice");
    let missing: Vec<_> = after_first_run.iter().filter(|id| !got.contains_key(*id)).collect();
    assert!(missing.is_empty(), "missed {} records, e.g. {:?}", missing.len(), missing.first());
    assert_no_page_fetched_twice(&sim);
}

#[tokio::test(start_paused = true)]
async fn test_full_queue_stops_fetching_and_resumes_when_room_returns() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 500;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ""), &sim, dir.path());
    // Room for less than one page of events: after one page the queue is full.
    let queue =
        Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 20_000, sinks: vec!["test".into()] }).unwrap();
    let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), clock.clone());
    let mut state = source.subscribe_state();
    let stats = source.stats();
    let task = tokio::spawn(source.run(RunMode::CatchUp, CancellationToken::new()));

    state.wait_for(|s| *s == SourceState::QueueFull).await.unwrap();
    let requests_when_full = sim.stats().requests;
    // An hour passes: not one request while the queue is full.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(sim.stats().requests, requests_when_full);
    assert!(queue.is_full());
    let stored_when_full = stats.snapshot().stored;
    assert!(stored_when_full > 0 && stored_when_full < 500);

    // Drain like a sink would; fetching resumes and nothing is dropped.
    let mut drained = 0;
    while !task.is_finished() || queue.backlog("test").await.unwrap() > 0 {
        let batch = queue.read_batch("test", 50, usize::MAX).await.unwrap();
        if let Some(last) = batch.last() {
            drained += batch.len();
            queue.ack("test", last.id).await.unwrap();
        } else {
            tokio::task::yield_now().await;
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }
    assert!(matches!(task.await.unwrap(), SourceExit::CaughtUp));
    assert_eq!(drained, 500);
    assert!(stats.snapshot().queue_full_waits > 1);
    queue.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn test_bad_credentials_fail_clearly_in_catch_up_mode() {
    let clock = Clock::starting_at(test_start());
    let sim = start_sim(SimOptions::default(), &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&sim, dir.path(), "").replace("${TEST_AITRONOS_KEY}", "ak_wrong_secret_value");
    let config = parse_config(&text, &sim, dir.path());
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap();
    let SourceOutcome::Failed(msg) = &report.sources[0].outcome else { panic!("{report:?}") };
    assert!(msg.contains("aitronos-test") && msg.contains("401") && msg.contains("/audit-log"), "{msg}");
    assert!(msg.contains("INVALID_API_KEY"), "{msg}");
    assert!(!msg.contains("ak_wrong_secret_value"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn test_shutdown_stops_sources_and_sinks_and_keeps_progress() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 800;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ""), &sim, dir.path());
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn({
        let (config, clock, shutdown) = (config.clone(), clock.clone(), shutdown.clone());
        async move { daemon::run(&config, clock, RunOptions::default(), shutdown).await.unwrap() }
    });
    sim.wait_for_requests(3).await;
    shutdown.cancel();
    let report = daemon.await.unwrap();
    assert_eq!(report.sources[0].outcome, SourceOutcome::Shutdown);
    let first = delivered(&out_path(dir.path())).len();
    assert!(first < 800);

    // The follow-up run resumes where the first stopped.
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap();
    // A page answered while the shutdown came may be asked again (it was never committed);
    // what matters is that every record arrives exactly once.
    assert_exactly_once(&sim, &out_path(dir.path()));
}

/// The four vendors through the agent into Elasticsearch (the `_bulk` emulator, with the index
/// template `auditrelay elasticsearch template` prints installed, as the README tells the
/// operator): every seeded record is indexed exactly once into the default data stream, under
/// `_id` = `metadata.uid`; every document's `ocsf` is a valid OCSF 1.8.0 event (the check every
/// end-to-end test uses), one JSON type per attribute path across vendors; `@timestamp` is the
/// OCSF `time`; `data_stream.*` and `event.id` are set; no item was refused by the mapping.
#[tokio::test(start_paused = true)]
async fn test_four_vendors_into_elasticsearch_every_document_valid_and_timestamped() {
    const STREAM: &str = "logs-auditrelay.ocsf-default";
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    (opts.aitronos.records, opts.astronomer.records, opts.configcat.records, opts.datafold.records) =
        (240, 180, 210, 150);
    let sim = start_sim(opts, &clock).await;
    let es = EsEmulator::start(EsOptions { api_keys: vec![base64("pipeline:secret")], ..EsOptions::default() }).await;
    es.install_template(elasticsearch::TEMPLATE_NAME, elasticsearch::template(elasticsearch::DEFAULT_DATASET, false));
    let dir = tempfile::tempdir().unwrap();
    let sources: Vec<String> = SimVendor::ALL
        .into_iter()
        .map(|v| source_block(&sim, v, &sim.organizations(v)[0], v.name(), "start = \"2d\""))
        .collect();
    let text = format!(
        "state_dir = {state:?}\n\n{sources}\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\n\
         hosts = [{url:?}]\napi_key = \"pipeline:secret\"\nbatch_max_events = 97\n",
        state = dir.path().join("state").display().to_string(),
        sources = sources.join("\n"),
        url = es.url(),
    );
    let config = Config::parse_with_env(&text, &dir.path().join("auditrelay.toml"), &|_: &str| None).unwrap();
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap();
    for s in &report.sources {
        assert_eq!(s.outcome, SourceOutcome::CaughtUp, "{report:?}");
    }
    assert_eq!(report.sinks[0].backlog, 0, "{report:?}");

    // Every record of every vendor, exactly once, by its vendor key.
    let mut expected = HashSet::new();
    for v in SimVendor::ALL {
        let org = sim.organizations(v)[0].clone();
        for key in sim.record_keys(v, &org) {
            let key = if v == SimVendor::Astronomer { canonical(&key) } else { key };
            expected.insert((product(v).to_owned(), key));
        }
    }
    assert_eq!(expected.len(), 240 + 180 + 210 + 150);
    let docs = es.documents();
    let events: Vec<&serde_json::Value> = docs.iter().map(|d| &d.source["ocsf"]).collect();
    let got: Vec<(String, String)> =
        events.iter().map(|e| (e["metadata"]["product"]["name"].as_str().unwrap().to_owned(), record_key(e))).collect();
    assert_eq!(got.len(), expected.len(), "{} documents indexed for {} records", got.len(), expected.len());
    assert_eq!(got.into_iter().collect::<HashSet<_>>(), expected, "the indexed records are not the seeded ones");

    for (doc, event) in docs.iter().zip(&events) {
        harness::ocsf_schema::assert_valid(event);
        let uid = event["metadata"]["uid"].as_str().unwrap();
        assert_eq!((doc.target.as_str(), doc.id.as_str()), (STREAM, uid), "{doc:?}");
        let time = chrono::DateTime::from_timestamp_millis(event["time"].as_i64().unwrap()).unwrap();
        let stamp = time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(doc.source["@timestamp"], stamp.as_str(), "@timestamp of {uid}");
        assert_eq!(
            doc.source["data_stream"],
            serde_json::json!({"type": "logs", "dataset": "auditrelay.ocsf", "namespace": "default"}),
            "{uid}"
        );
        assert_eq!(doc.source["event"]["id"], uid);
    }
    harness::ocsf_schema::assert_one_type_per_path(events.iter().copied());
    assert_eq!(es.is_data_stream(STREAM), Some(true));
    // Not one item refused (a mapping conflict would be a 400), nothing resent (no 409).
    let items: Vec<u16> = es.requests().iter().flat_map(|r| r.items.clone()).collect();
    assert!(items.iter().all(|s| *s == 201), "item statuses other than 201: {:?}", {
        let mut other: Vec<u16> = items.iter().copied().filter(|s| *s != 201).collect();
        other.dedup();
        other
    });
    assert!(es.requests().iter().all(|r| r.content_encoding.as_deref() == Some("gzip")), "gzip is the default");
}
