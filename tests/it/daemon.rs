//! The daemon's operations, in process: SIGHUP reload (the file read again, the differences
//! applied without losing queued events or checkpoints; an invalid file keeps the old
//! configuration) and the telemetry endpoint. Time is tokio's paused clock: waiting moves it,
//! nothing sleeps for real.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::config::Config;
use auditrelay::daemon::{self, RunOptions, SourceOutcome};
use auditrelay::sim::{SimOptions, SimVendor};
use harness::*;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// A bound on the daemon handling one reload (paused time: reached at once if it never does).
const RELOAD_LIMIT: Duration = Duration::from_secs(60);

/// A configuration file with these sources and one file sink per `(name, file)`.
fn write_config(dir: &Path, sources: &[String], sinks: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = format!("state_dir = {:?}\n\n{}\n", dir.join("state").display().to_string(), sources.join("\n"));
    for (name, file) in sinks {
        text.push_str(&format!(
            "[[sinks]]\nname = {name:?}\ntype = \"file\"\npath = {:?}\n",
            dir.join(file).display().to_string()
        ));
    }
    let path = dir.join("auditrelay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits (in paused time) until `file` holds `n` events of `product`.
async fn wait_for(file: &Path, product: &str, n: usize) {
    for _ in 0..10_000 {
        let have = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&format!("\"name\":\"{product}\"")))
            .count();
        if have >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{} never held {n} {product} events", file.display());
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_removes_and_changes_sources_and_sinks_and_an_invalid_file_changes_nothing() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 300;
    opts.configcat.records = 200;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let aitronos_org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let configcat_org = sim.organizations(SimVendor::ConfigCat)[0].clone();
    let aitronos = source_block(&sim, SimVendor::Aitronos, &aitronos_org, "aitronos", "start = \"2d\"");
    let configcat = source_block(&sim, SimVendor::ConfigCat, &configcat_org, "configcat", "start = \"2d\"");

    let path = write_config(dir.path(), std::slice::from_ref(&aitronos), &[("first", "first.ndjson")]);
    let config = Config::load(&path).unwrap();
    let reload = Arc::new(Notify::new());
    // The daemon publishes the sources it runs at start and after every reload it handled,
    // applied or refused: the test's way to know a reload is over.
    let (running, mut published) = watch::channel(Vec::new());
    let running = Arc::new(running);
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn({
        let opts = RunOptions { reload: Some(Arc::clone(&reload)), observe: Some(running), ..RunOptions::default() };
        let (clock, shutdown) = (clock.clone(), shutdown.clone());
        async move { daemon::run(&config, clock, opts, shutdown).await.unwrap() }
    });
    wait_for(&dir.path().join("first.ndjson"), "Aitronos", 300).await;
    let aitronos_requests = sim.request_log().len();

    // An invalid file: refused, the running configuration stays (the sink keeps its file).
    published.mark_unchanged(); // the start's publication
    std::fs::write(&path, "state_dir = \"s\"\nsources = [").unwrap();
    reload.notify_one();
    // Waits for the daemon to have read the invalid file: a second notification before then
    // would be one reload, of the valid file, and the refusal would go untested.
    tokio::time::timeout(RELOAD_LIMIT, published.changed())
        .await
        .unwrap_or_else(|_| panic!("the daemon did not handle the reload of an invalid file within {RELOAD_LIMIT:?}"))
        .expect("the daemon is running");
    let sources: Vec<String> = published.borrow().iter().map(|(name, _)| name.clone()).collect();
    assert_eq!(sources, ["aitronos"], "the refused reload changed the running sources");

    // A source added, the sink replaced by another; the Aitronos source is unchanged.
    write_config(dir.path(), &[aitronos.clone(), configcat], &[("second", "second.ndjson")]);
    reload.notify_one();
    wait_for(&dir.path().join("second.ndjson"), "ConfigCat", 200).await;

    shutdown.cancel();
    let report = daemon.await.unwrap();
    let names: Vec<&str> = report.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["aitronos", "configcat"]);
    assert!(report.sources.iter().all(|s| s.outcome == SourceOutcome::Shutdown), "{report:?}");
    assert_eq!(report.sinks.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["second"]);
    assert_eq!(report.sinks[0].backlog, 0);

    // The first sink got every Aitronos record once and nothing after it was removed; the
    // Aitronos source kept running through the reloads (no sweep started over: the records
    // it had are not fetched again).
    let first = std::fs::read_to_string(dir.path().join("first.ndjson")).unwrap();
    assert_eq!(first.lines().count(), 300);
    let second = std::fs::read_to_string(dir.path().join("second.ndjson")).unwrap();
    assert!(!second.contains("\"name\":\"Aitronos\""), "no Aitronos record fetched twice");
    let aitronos_after: usize =
        sim.request_log()[aitronos_requests..].iter().filter(|r| r.query.contains("skip=0") && r.status == 200).count();
    assert!(aitronos_after <= 1, "only the next poll's first page, not a refetch from `start`");
}

#[tokio::test(start_paused = true)]
async fn the_daemon_serves_metrics_health_and_ready_on_its_telemetry_address() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 250;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let source = source_block(&sim, SimVendor::Aitronos, &org, "aitronos", "start = \"2d\"");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let path = write_config(dir.path(), &[source], &[("out", "out.ndjson")]);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!("[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn({
        let (clock, shutdown) = (clock.clone(), shutdown.clone());
        async move { daemon::run(&config, clock, RunOptions::default(), shutdown).await.unwrap() }
    });
    wait_for(&dir.path().join("out.ndjson"), "Aitronos", 250).await;
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let response = reqwest::get(url).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(get("/ready").await, (200, r#"{"status":"ready","degraded":[]}"#.to_owned()));
    assert_eq!(get("/health").await.0, 200);
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "auditrelay_source_records_stored_total{source=\"aitronos\",vendor=\"aitronos\"} 250",
        "auditrelay_source_requests_total{source=\"aitronos\",vendor=\"aitronos\",status=\"200\"}",
        "auditrelay_sink_events_total{sink=\"out\",type=\"file\"} 250",
        "auditrelay_sink_backlog_events{sink=\"out\",type=\"file\"} 0",
        "auditrelay_queue_up 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    shutdown.cancel();
    daemon.await.unwrap();
    assert!(reqwest::get(format!("{base}/health")).await.is_err(), "the listener closes with the agent");
}

/// What the tracing subscriber of one test wrote.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }
}

/// Issue 18 point 1: every `PROGRESS_EVERY` while there is activity, one INFO line with what
/// each source stored and each sink delivered (and its backlog); none while idle.
#[tokio::test(start_paused = true)]
async fn the_daemon_logs_a_progress_line_at_a_steady_interval_while_active() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _log = tracing::subscriber::set_default(subscriber);
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 250;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let source = source_block(&sim, SimVendor::Aitronos, &org, "aitronos", "start = \"2d\"");
    let path = write_config(dir.path(), &[source], &[("out", "out.ndjson")]);
    let config = Config::load(&path).unwrap();
    let shutdown = CancellationToken::new();
    let daemon = tokio::spawn({
        let (clock, shutdown) = (clock.clone(), shutdown.clone());
        async move { daemon::run(&config, clock, RunOptions::default(), shutdown).await.unwrap() }
    });
    wait_for(&dir.path().join("out.ndjson"), "Aitronos", 250).await;
    // Paused time: the sleep moves the clock to the next progress tick at once.
    tokio::time::sleep(daemon::PROGRESS_EVERY + Duration::from_secs(1)).await;
    let lines = captured.lines_with("progress: ");
    let done = "progress: sources: aitronos stored 250";
    let last = lines.last().unwrap_or_else(|| panic!("no progress line"));
    assert!(last.contains(done) && last.contains("out delivered 250") && last.contains("backlog 0"), "{lines:#?}");
    assert!(last.contains(" INFO "), "{last}");
    // Idle: nothing stored or delivered, no more lines.
    tokio::time::sleep(daemon::PROGRESS_EVERY * 3).await;
    assert_eq!(captured.lines_with("progress: ").len(), lines.len(), "{:#?}", captured.lines_with("progress: "));
    shutdown.cancel();
    daemon.await.unwrap();
}
