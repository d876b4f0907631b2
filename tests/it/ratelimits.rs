//! Issue 15 points 5 and 6: a vendor's rate limit survives restarts and belongs to the
//! credential, a transient refusal of a working credential is not final, records the vendor
//! publishes late are counted, and a step of the local wall clock loses nothing.
//!
//! The restart and reload tests run the real binary against a raw HTTP vendor in this process
//! (`harness/hostile.rs`); the others run in process against the simulator on tokio's paused
//! clock (waiting moves it; nothing sleeps for real).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::harness::hostile;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::daemon::{self, RunOptions, SourceOutcome};
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, SimOptions, SimVendor};
use auditrelay::sources::{Checkpoint, RunMode, Source, SourceExit, SourceStatsSnapshot};
use chrono::Utc;
use harness::agent::Agent;
use harness::*;
use hostile::{Hostile, aitronos_answer, aitronos_record, aitronos_source, status};
use tokio_util::sync::CancellationToken;

/// The longest any one agent run here may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// The test configuration's `start = "2d"` in one window (the default `max_span` is a day).
const ONE_WINDOW: &str = "max_span = \"3d\"";

/// Regression: after a 429 with `Retry-After: 120`, the agent is stopped and started again
/// (systemd's `Restart=` comes back in seconds). The restarted agent must not ask the vendor
/// before the 120 s are up; the old one asked at once and drew another 429. The same holds for
/// a 503 with `Retry-After` (a vendor in maintenance): a pause the vendor announced, which
/// review R1 found kept only in the source's memory.
#[tokio::test]
async fn test_a_restart_inside_a_retry_after_asks_nothing_until_it_ends() {
    for (code, seen) in [(429, "rate limited (429)"), (503, "vendor error; retrying the same page")] {
        let t0 = Utc::now() - chrono::Duration::minutes(60);
        let records: Vec<_> =
            (0..5).map(|i| aitronos_record(&format!("pause-{i}"), t0 + chrono::Duration::seconds(i))).collect();
        let vendor = Hostile::start(move |r| match r.n {
            0 => status(code, &[("Retry-After", "120".into())], "slow down"),
            _ => aitronos_answer(r, &records),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let config = hostile::write_config(dir.path(), "", &aitronos_source(&vendor, ""));

        let mut agent = Agent::start(&config, false);
        agent.until("the first answer", RUN_LIMIT, |a| a.count(seen) == 1).await;
        let exit = agent.terminate(RUN_LIMIT).await;
        assert!(exit.success(), "{code}: SIGTERM: exit {exit}:\n{}", agent.log());

        // Restarted inside the 120 s: it either honours the stored pause or asks the vendor.
        let mut agent = Agent::start(&config, false);
        agent
            .until("the restarted agent to honour the pause (or to ask the vendor)", RUN_LIMIT, |a| {
                a.count("honouring a stored rate-limit pause") == 1 || vendor.requests() > 1
            })
            .await;
        assert_eq!(
            vendor.requests(),
            1,
            "the restarted agent asked the vendor inside the {code}'s Retry-After: 120 window; its log:\n{}",
            agent.log()
        );
        let line = agent.lines_with(&["honouring a stored rate-limit pause", "source=hostile"]);
        assert_eq!(line.len(), 1, "{}", agent.log());
        assert!(!line[0].contains("ak_hostile_test"), "the credential leaked into the log: {}", line[0]);
        let exit = agent.terminate(RUN_LIMIT).await;
        assert!(exit.success(), "{code}: SIGTERM: exit {exit}:\n{}", agent.log());
        assert_eq!(vendor.requests(), 1);
    }
}

/// A reload (SIGHUP) inside a 429's `Retry-After` window sends nothing before the window ends:
/// neither one that changes the source (its `page_size`: its task is replaced by a new one)
/// nor one that changes nothing, and collection resumes once the window is over. The window
/// is 3 s, under `MIN_STORED_PAUSE`: only the credential's gate, which the daemon keeps
/// across reloads, holds it (a longer one is also stored, as the restart test proves).
#[tokio::test]
async fn test_a_reload_inside_a_retry_after_asks_nothing_until_it_ends() {
    const RETRY_AFTER: Duration = Duration::from_secs(3);
    let t0 = Utc::now() - chrono::Duration::minutes(60);
    let records: Vec<_> =
        (0..5).map(|i| aitronos_record(&format!("reload-{i}"), t0 + chrono::Duration::seconds(i))).collect();
    let vendor = Hostile::start(move |r| match r.n {
        0 => status(429, &[("Retry-After", RETRY_AFTER.as_secs().to_string())], "slow down"),
        _ => aitronos_answer(r, &records),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let config = hostile::write_config(dir.path(), "", &source);
    let hup = |agent: &Agent| {
        let sent = std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -HUP {}", agent.pid());
    };

    let mut agent = Agent::start(&config, false);
    agent.until("the 429", RUN_LIMIT, |a| a.count("rate limited (429)") == 1).await;
    // A changed source: stopped and started again, inside the window.
    hostile::write_config(dir.path(), "", &source.replace("page_size = 5", "page_size = 7"));
    hup(&agent);
    agent.until("the reload changing the source", RUN_LIMIT, |a| a.count("configuration reloaded") == 1).await;
    assert_eq!(agent.count("source stopped for the reload"), 1, "the source was replaced:\n{}", agent.log());
    // And a reload that changes nothing.
    hup(&agent);
    agent.until("the reload changing nothing", RUN_LIMIT, |a| a.count("configuration reloaded") == 2).await;
    let reloaded = Instant::now();
    let window_end = vendor.log()[0].head_sent.expect("the 429 was sent") + RETRY_AFTER;
    assert!(
        reloaded < window_end,
        "both reloads must land inside the Retry-After window for this test to prove anything"
    );

    // Collection resumes after the window: every record, each once, and nothing asked before.
    agent.until("the records after the window", RUN_LIMIT, |_| delivered(&out_path(dir.path())).len() == 5).await;
    let served = vendor.log();
    let early: Vec<String> = served[1..]
        .iter()
        .filter(|s| s.arrived < window_end)
        .map(|s| {
            format!("request {} {:.3} s before the window ended", s.request.n, (window_end - s.arrived).as_secs_f64())
        })
        .collect();
    assert!(
        early.is_empty(),
        "asked the vendor inside the Retry-After window after a reload: {early:?}\n{}",
        agent.log()
    );
    assert_eq!(served[1].status, 200, "the request after the window is answered");
    let exit = agent.terminate(RUN_LIMIT).await;
    assert!(exit.success(), "SIGTERM: exit {exit}:\n{}", agent.log());
    assert!(delivered(&out_path(dir.path())).values().all(|n| *n == 1), "every record once");
}

fn catch_up() -> RunOptions {
    RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() }
}

/// Regression: one spurious 401 (a vendor's auth layer during key rotation) on a credential
/// that had just been answered 200 made `run --once` abandon the source. It is asked again
/// after a back-off, and every record arrives once.
#[tokio::test(start_paused = true)]
async fn test_a_spurious_401_on_a_working_credential_is_retried() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 300;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.spurious_unauthorized = vec![2];
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ONE_WINDOW), &sim, dir.path());
    let report = daemon::run(&config, clock, catch_up(), CancellationToken::new()).await.unwrap();
    let source = &report.sources[0];
    assert_eq!(source.outcome, SourceOutcome::CaughtUp, "one spurious 401 abandoned the source");
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200, 200], "page 2 asked again after the 401");
    assert_eq!(source.stats.auth_retries, 1, "{:?}", source.stats);
    assert_exactly_once(&sim, &out_path(dir.path()));
}

/// A refusal that persists is final after a few retries: `run --once` reports it.
#[tokio::test(start_paused = true)]
async fn test_a_persistent_401_still_stops_run_once_after_a_few_retries() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 300;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.spurious_unauthorized = (2..100).collect();
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ONE_WINDOW), &sim, dir.path());
    let report = daemon::run(&config, clock, catch_up(), CancellationToken::new()).await.unwrap();
    let SourceOutcome::Failed(msg) = &report.sources[0].outcome else { panic!("{:?}", report.sources[0]) };
    assert!(msg.contains("401") && msg.contains("aitronos-test"), "{msg}");
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 401, 401, 401], "three retries, then the refusal is final");
    assert_eq!(report.sources[0].stats.auth_retries, 3);
}

/// Regression: two sources on one ConfigCat credential (two organizations, or as here the same
/// one under two names) each paced themselves to the documented 60/min, so together they sent
/// 120/min and drew 429s. The limiter belongs to the credential: not one 429.
#[tokio::test(start_paused = true)]
async fn test_sources_sharing_a_credential_share_its_rate_limit() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.configcat.records = 5000;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::ConfigCat)[0].clone();
    let sources = ["cc-a", "cc-b"].map(|name| source_block(&sim, SimVendor::ConfigCat, &org, name, "start = \"2d\""));
    let text = config_with_sources(dir.path(), &sources);
    let config =
        auditrelay::config::Config::parse_with_env(&text, &dir.path().join("a.toml"), &|_: &str| None).unwrap();
    let report = daemon::run(&config, clock, catch_up(), CancellationToken::new()).await.unwrap();
    for source in &report.sources {
        assert_eq!(source.outcome, SourceOutcome::CaughtUp, "{}", source.name);
        assert_eq!(source.stats.stored, 5000, "{}: {:?}", source.name, source.stats);
    }
    let stats = sim.vendor_stats(SimVendor::ConfigCat);
    assert!(stats.requests >= 100, "{stats:?}");
    assert_eq!(stats.rate_limited, 0, "two sources on one credential exceeded its 60/min together: {stats:?}");
}

/// The dedupe keys (vendor ids) of every event in the queue.
async fn stored_keys(queue: &Queue) -> HashSet<String> {
    let batch = queue.read_batch("test", 1_000_000, usize::MAX).await.unwrap();
    batch
        .iter()
        .map(|e| {
            let event: serde_json::Value = serde_json::from_slice(&e.body).unwrap();
            event["metadata"]["original_event_uid"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// NTP corrects a step of an hour ahead; time goes on and the agent runs twice more: every record
/// the vendor held before the last run must be stored.
async fn corrected_then_nothing_missing<F, Fut>(agent_clock: &Clock, sim: &auditrelay::sim::Sim, queue: &Queue, run: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future,
{
    agent_clock.step_wall(chrono::Duration::hours(-1));
    tokio::time::advance(Duration::from_secs(600)).await;
    run().await;
    tokio::time::advance(Duration::from_secs(600)).await;
    let before_last = sim.aitronos_ids();
    run().await;
    let stored = stored_keys(queue).await;
    let missing: Vec<&String> = before_last.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records never asked for after the clock step, e.g. {:?}",
        missing.len(),
        before_last.len(),
        missing.first()
    );
}

async fn checkpoint(queue: &Queue, source: &str) -> Checkpoint {
    serde_json::from_str(&queue.checkpoint(source).await.unwrap().unwrap()).unwrap()
}

/// Regression: our wall clock steps an hour ahead (a VM resumed, an NTP step) while the
/// vendor's stays true, then back. The old loop cut its window by the stepped clock, stored a
/// checkpoint an hour in the vendor's future and, after the correction, never asked for the
/// records published in between. Windows now end at the vendor's clock (its `Date`), the
/// checkpoint never passes it, the difference is warned about, and every record is stored.
///
/// The vendor also indexes records late: 6 minutes after their event time, more than the
/// 5-minute overlap but less than lag + overlap (7), which is what `lag` is for. Regression
/// (simulation seeds 55 and 76): the clamped checkpoint was the vendor's clock itself, not that
/// clock less `lag`, so such records arriving after the stepped sweep fell before the next
/// window's start and were never asked for.
#[tokio::test(start_paused = true)]
async fn test_a_wall_clock_step_forward_then_back_loses_no_record() {
    let vendor_clock = Clock::starting_at(test_start());
    let agent_clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 120;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.arrivals_per_page = 2;
    opts.faults.arrivals_age = Duration::from_secs(360);
    let sim = start_sim(opts, &vendor_clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ONE_WINDOW), &sim, dir.path());
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["test".into()] })
        .unwrap();
    let run = || {
        let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), agent_clock.clone());
        let stats = source.stats();
        async move {
            let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
            assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
            stats.snapshot()
        }
    };
    run().await;

    agent_clock.step_wall(chrono::Duration::hours(1));
    tokio::time::advance(Duration::from_secs(600)).await;
    let stepped: SourceStatsSnapshot = run().await;
    let done = checkpoint(&queue, "aitronos-test").await.done_until.unwrap();
    let vendor_now = vendor_clock.now_utc();
    assert!(
        done <= vendor_now - chrono::Duration::minutes(2) + chrono::Duration::seconds(5),
        "checkpoint {done} stored beyond the vendor's clock {vendor_now} less lag (ours read {})",
        agent_clock.now_utc()
    );
    assert!(stepped.clock_skew_warnings >= 1, "{stepped:?}");
    assert!(stepped.checkpoints_clamped >= 1, "{stepped:?}");

    corrected_then_nothing_missing(&agent_clock, &sim, &queue, run).await;
    queue.close().await.unwrap();
}

/// Records the vendor publishes late (3 minutes after their event time, so before the
/// checkpoint the next window starts from) are stored thanks to the overlap, counted, and the
/// largest lateness is kept: an operator sees when the overlap is too small.
#[tokio::test(start_paused = true)]
async fn test_records_found_only_by_the_overlap_are_counted_as_late() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 50;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.arrivals_per_page = 2;
    opts.faults.arrivals_age = Duration::from_secs(180);
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_config(&config_text(&sim, dir.path(), ONE_WINDOW), &sim, dir.path());
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["test".into()] })
        .unwrap();
    let run = || {
        let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), clock.clone());
        let stats = source.stats();
        async move {
            let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
            assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
            stats.snapshot()
        }
    };
    let first = run().await;
    assert_eq!((first.stored, first.late_records), (50, 0), "{first:?}");
    let done = checkpoint(&queue, "aitronos-test").await.done_until.unwrap();
    assert_eq!(done, test_start() - chrono::Duration::minutes(2));

    tokio::time::advance(Duration::from_secs(600)).await;
    let second = run().await;
    // The one page of the first run brought 2 records dated 3 minutes before it, i.e. one
    // minute before the checkpoint: late by a minute, found by the 5-minute overlap.
    assert_eq!((second.stored, second.late_records), (2, 2), "{second:?}");
    assert_eq!(second.max_lateness_ms, 60_000, "{second:?}");
    assert_eq!(stored_keys(&queue).await.len(), 52);
    queue.close().await.unwrap();
}

/// Regression (found by review R1): the agent (re)starts with its wall clock an hour ahead (a VM
/// resumed, then the service restarted). Its first window is cut by that clock (no vendor
/// `Date` seen yet), so the frozen window reaches past the vendor's now and records *arriving
/// during the sweep* land on page 1 (Aitronos pages newest first), already read. The checkpoint
/// was clamped to the vendor's clock at the *end* of the sweep, so with a sweep longer than the
/// overlap (here `overlap = "30s"` and a few pages at 3/min) those arrivals fell behind the next
/// window's start for good. It is now kept at the vendor's clock of the sweep's first page.
#[tokio::test(start_paused = true)]
async fn test_arrivals_during_a_sweep_cut_by_a_clock_ahead_are_not_lost() {
    let vendor_clock = Clock::starting_at(test_start());
    let agent_clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 30;
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.faults.arrivals_per_page = 2;
    let sim = start_sim(opts, &vendor_clock).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "max_span = \"3d\"\noverlap = \"30s\"\npage_size = 5\nrate_limit = { requests = 3, per = \"1m\" }";
    let config = parse_config(&config_text(&sim, dir.path(), extra), &sim, dir.path());
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["test".into()] })
        .unwrap();
    let run = || {
        let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), agent_clock.clone());
        async move {
            let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
            assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
        }
    };
    run().await;

    agent_clock.step_wall(chrono::Duration::hours(1));
    tokio::time::advance(Duration::from_secs(60)).await;
    run().await;

    corrected_then_nothing_missing(&agent_clock, &sim, &queue, run).await;
    queue.close().await.unwrap();
}

/// Regression (simulation seeds 21 and 66): a rate-limit pause was stored as wall-clock time, so
/// an agent restarted inside it with its clock stepped forward (a VM resumed, an NTP step)
/// found it over and asked at once, drawing another 429. It is stored against time since boot
/// too (with the boot's id), which no clock step moves: the restart waits out the vendor's
/// `Retry-After` to the second, then collects everything.
#[tokio::test(start_paused = true)]
async fn test_a_stored_pause_holds_across_a_restart_with_the_clock_stepped_forward() {
    let vendor_clock = Clock::starting_at(test_start());
    let agent_clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 30;
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 1, per: Duration::from_secs(300) };
    // No budget headers: the vendor's 429 and its `Retry-After` are the only word on the limit.
    opts.faults.limit_headers = false;
    let sim = start_sim(opts, &vendor_clock).await;
    let dir = tempfile::tempdir().unwrap();
    // Each page waits out the vendor's window: a poll interval longer than the sweep lets the
    // catch-up run end once the window is done.
    let extra =
        "max_span = \"3d\"\npage_size = 10\npoll_interval = \"1h\"\nrate_limit = { requests = 100, per = \"1m\" }";
    let config = parse_config(&config_text(&sim, dir.path(), extra), &sim, dir.path());
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["test".into()] })
        .unwrap();
    let run = |clock: Clock, stop: CancellationToken| {
        let source = Source::new(config.sources[0].clone(), reqwest::Client::new(), queue.clone(), clock);
        source.run(RunMode::CatchUp, stop)
    };

    // The first run reads a page, draws a 429 for the rest of the vendor's 5-minute window, and
    // is stopped 30 s into that pause (systemd restarts it).
    let stop = CancellationToken::new();
    let first = tokio::spawn(run(agent_clock.clone(), stop.clone()));
    for _ in 0..600 {
        if sim.request_log().iter().any(|r| r.status == 429) || first.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 429], "a page, then the 429");
    tokio::time::sleep(Duration::from_secs(30)).await;
    stop.cancel();
    assert!(matches!(first.await.unwrap(), SourceExit::Shutdown));

    let restarted = agent_clock.restarted_at(agent_clock.now_utc() + chrono::Duration::hours(1));
    let exit = run(restarted, CancellationToken::new()).await;
    assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
    let early: Vec<_> = sim.request_log().into_iter().filter(|r| r.early).collect();
    assert!(early.is_empty(), "asked inside the vendor's Retry-After after the restart: {early:?}");
    assert_eq!(stored_keys(&queue).await, sim.aitronos_ids().into_iter().collect::<HashSet<_>>());
    queue.close().await.unwrap();
}
