//! `/metrics` against the real thing: a source pulling from the simulator (which answers 429s),
//! the file sink delivering, the SQLite queue between them, scraped over HTTP. The numbers must
//! agree with what the simulator saw and the sink wrote, not just with the counters they read.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::sync::Arc;
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, RetryAfterMode, SimOptions};
use auditrelay::sinks::{Sink, SinkControl, SinkStats, run_sink};
use auditrelay::sources::{RunMode, Source, SourceExit};
use auditrelay::telemetry::{CONTENT_TYPE, SinkProbe, SourceProbe, Telemetry};
use harness::agent::sample;
use harness::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(start_paused = true)]
async fn test_metrics_agree_with_the_simulator_and_the_sink() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 1500;
    // The vendor's budget vanishes unannounced and our quota is far above it: 429s will come.
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 3, per: Duration::from_secs(20) };
    opts.faults.retry_after = RetryAfterMode::Seconds;
    opts.faults.limit_headers = false;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"rate_limit = { requests = 100, per = "1s", burst = 10 }"#;
    let config = parse_config(&config_text(&sim, dir.path(), extra), &sim, dir.path());
    let sink_cfg = config.sinks[0].clone();
    let batch_max_events = sink_cfg.batch_max_events as f64;
    let queue = Queue::open(
        &config.state_dir,
        QueueOptions { max_bytes: config.queue.max_bytes, sinks: vec![sink_cfg.name.clone()] },
    )
    .unwrap();

    let source_cfg = config.sources[0].clone();
    let source = Source::new(source_cfg.clone(), reqwest::Client::new(), queue.clone(), clock.clone());
    let sink_stats = Arc::new(SinkStats::default());
    let telemetry = Telemetry::new(queue.clone(), clock.clone());
    telemetry.set_sources(vec![SourceProbe {
        name: source_cfg.name.clone(),
        vendor: source_cfg.vendor.vendor_name(),
        stats: source.stats(),
        state: source.subscribe_state(),
    }]);
    telemetry.set_sinks(vec![SinkProbe { name: sink_cfg.name.clone(), kind: "file", stats: Arc::clone(&sink_stats) }]);
    telemetry.set_ready(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(telemetry.clone().serve(listener, shutdown.clone()));

    let control = SinkControl::default();
    let sink = Sink::open(&sink_cfg).unwrap();
    let worker =
        tokio::spawn(run_sink(sink_cfg, sink, queue.clone(), clock.clone(), Arc::clone(&sink_stats), control.clone()));
    let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
    assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
    control.drain.cancel();
    worker.await.unwrap();

    let answer = reqwest::get(&url).await.unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.headers()[reqwest::header::CONTENT_TYPE], CONTENT_TYPE);
    let text = answer.text().await.unwrap();
    let source = r#"source="aitronos-test",vendor="aitronos""#;
    let sink = r#"sink="file",type="file""#;
    let get = |series: String| sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"));

    // Requests by status: exactly what the simulator answered.
    let log = sim.request_log();
    let sim_stats = sim.stats();
    assert!(sim_stats.rate_limited > 0, "the test must provoke 429s: {sim_stats:?}");
    let answered = |status: u16| log.iter().filter(|r| r.status == status).count() as f64;
    assert_eq!(get(format!(r#"auditrelay_source_requests_total{{{source},status="200"}}"#)), answered(200));
    assert_eq!(get(format!(r#"auditrelay_source_requests_total{{{source},status="429"}}"#)), answered(429));
    assert_eq!(answered(200) + answered(429), log.len() as f64, "only 200s and 429s were expected");
    assert_eq!(get(format!("auditrelay_source_rate_limited_total{{{source}}}")), sim_stats.rate_limited as f64);
    assert_eq!(get(format!("auditrelay_source_records_fetched_total{{{source}}}")), 1500.0);
    assert_eq!(get(format!("auditrelay_source_records_stored_total{{{source}}}")), 1500.0);
    assert_eq!(get(format!("auditrelay_source_dead_lettered_total{{{source}}}")), 0.0);
    let now = clock.now_utc().timestamp_millis() as f64 / 1000.0;
    let last = get(format!("auditrelay_source_last_success_timestamp_seconds{{{source}}}"));
    assert!(last > test_start().timestamp() as f64 && last <= now, "{last} vs now {now}");
    let lag = get(format!("auditrelay_source_lag_seconds{{{source}}}"));
    assert!(lag > 0.0 && lag < 3600.0, "caught up, the checkpoint is recent: lag {lag}");
    let states: Vec<&str> =
        text.lines().filter(|l| l.starts_with("auditrelay_source_state{") && l.ends_with(" 1")).collect();
    assert_eq!(states.len(), 1, "one current state: {states:?}");

    // Delivered: every event, nothing left behind the cursor, the queue emptied.
    let delivered = harness::events(&out_path(dir.path())).len() as f64;
    assert_eq!(delivered, 1500.0);
    assert_eq!(get(format!("auditrelay_sink_events_total{{{sink}}}")), delivered);
    assert!(get(format!("auditrelay_sink_batches_total{{{sink}}}")) >= (delivered / batch_max_events).ceil());
    assert_eq!(get(format!(r#"auditrelay_sink_errors_total{{{sink},class="transient"}}"#)), 0.0);
    assert_eq!(get(format!("auditrelay_sink_backlog_events{{{sink}}}")), 0.0);
    assert_eq!(get("auditrelay_queue_up".into()), 1.0);
    assert_eq!(get("auditrelay_queue_events".into()), 0.0);
    assert_eq!(get("auditrelay_queue_max_bytes".into()), config.queue.max_bytes as f64);
    // No dead letter: the source's series is there at 0 from the start (issue 18 point 5), no other.
    let dead: Vec<&str> = text.lines().filter(|l| l.starts_with("auditrelay_dead_letters{")).collect();
    assert_eq!(
        dead,
        [r#"auditrelay_dead_letters{source="aitronos-test",origin="source"} 0"#],
        "no dead letter expected:\n{text}"
    );

    shutdown.cancel();
    server.await.unwrap();
    queue.close().await.unwrap();
}

/// Issue 18 point 5: vendor requests are timed on the agent's clock, so under paused time the
/// histogram is exact: a vendor answering every request after 700 ms puts each of them, and
/// only them, between the 0.5 s and 1 s bounds.
#[tokio::test(start_paused = true)]
async fn test_vendor_requests_are_timed_on_the_agents_clock() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 300;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.page_latency = Duration::from_millis(700);
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ""), &sim, dir.path());
    let queue = Queue::open(
        &config.state_dir,
        QueueOptions { max_bytes: config.queue.max_bytes, sinks: vec![config.sinks[0].name.clone()] },
    )
    .unwrap();
    let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), clock.clone());
    let stats = source.stats();
    let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
    assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");

    let requests = sim.request_log().len() as u64;
    assert!(requests >= 2, "{requests} requests");
    let timed = stats.request_seconds.snapshot();
    assert_eq!((timed.count(), timed.sum_us), (requests, requests * 700_000), "{timed:?}");
    let at = |le_ms: u64| timed.cumulative().find(|(bound, _)| *bound == le_ms).map(|(_, n)| n).unwrap();
    assert_eq!((at(500), at(1_000)), (0, requests), "{timed:?}");
    queue.close().await.unwrap();
}
