//! Issue 15 point 6 (clock steps), found by its adversarial review: after a restart with the
//! local clock an hour ahead, a sweep longer than the overlap must not lose the records that
//! arrive while it pages (the checkpoint is kept at the vendor's clock of the sweep's first
//! page). In process against the simulator on tokio's paused clock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod harness;

use std::collections::HashSet;
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{RateLimitSetting, SimOptions};
use auditrelay::sources::{RunMode, Source, SourceExit};
use harness::*;
use tokio_util::sync::CancellationToken;

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

/// The agent (re)starts with its wall clock an hour ahead (a VM resumed, then the service
/// restarted). Its first window is cut by that clock (no vendor `Date` seen yet), so the frozen
/// window reaches past the vendor's now and records *arriving during the sweep* fall inside it.
/// Aitronos pages newest first: those arrivals land on page 1, already read, so the sweep
/// never sees them. At the end the checkpoint is clamped to the vendor's clock *at the end of
/// the sweep* (`bounded_by_vendor`), not at its start; the next window begins `overlap` (5 min)
/// before it. A sweep longer than the overlap (here `overlap = "30s"` and a few pages at 3/min; with the default 5 min, any sweep of a backlog longer than 5 min, as after a VM resumed hours later) leaves the
/// records that arrived in its first minutes behind the next window's start: never asked for,
/// even after the clock is corrected.
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
        let source = Source::new(
            config.sources[0].clone(),
            reqwest::Client::new(),
            queue.clone(),
            agent_clock.clone(),
            config.severity.clone(),
        );
        async move {
            let exit = source.run(RunMode::CatchUp, CancellationToken::new()).await;
            assert!(matches!(exit, SourceExit::CaughtUp), "{exit:?}");
        }
    };
    run().await;

    agent_clock.step_wall(chrono::Duration::hours(1));
    tokio::time::advance(Duration::from_secs(60)).await;
    run().await;

    // NTP corrects the step; time goes on; the agent runs twice more.
    agent_clock.step_wall(chrono::Duration::hours(-1));
    tokio::time::advance(Duration::from_secs(600)).await;
    run().await;
    tokio::time::advance(Duration::from_secs(600)).await;
    let before_last = sim.aitronos_ids();
    run().await;
    let stored = stored_keys(&queue).await;
    let missing: Vec<&String> = before_last.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records never asked for after the clock step, e.g. {:?}",
        missing.len(),
        before_last.len(),
        missing.first()
    );
    queue.close().await.unwrap();
}
