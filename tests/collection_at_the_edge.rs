//! The collection side at the edge (issue 15, found by its adversarial review): a page shifted
//! by late inserts is not a repeat, a page cycle ends the sweep, a 503's `Retry-After` binds the
//! credential across a restart. Each failed on the change under review and is its regression
//! test. Each test runs the real binary against a raw HTTP vendor in this process (`harness/hostile.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod harness;
#[allow(dead_code)] // the vendors this file does not use
#[path = "harness/hostile.rs"]
mod hostile;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use harness::agent::Agent;
use harness::{delivered, out_path};
use hostile::*;

/// The longest any one agent run here may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn records(prefix: &str, n: usize) -> Vec<serde_json::Value> {
    let t0 = Utc::now() - chrono::Duration::minutes(60);
    (0..n).map(|i| aitronos_record(&format!("{prefix}-{i:02}"), t0 + chrono::Duration::seconds(i as i64))).collect()
}

fn assert_delivered_once(dir: &Path, records: &[serde_json::Value], agent_log: &str) {
    let got = delivered(&out_path(dir));
    let mut want: Vec<String> = records.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    want.sort();
    let mut keys: Vec<String> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, want, "the delivered records are not the vendor's; agent log:\n{agent_log}");
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records delivered more than once: {twice:?}");
}

/// Point 8 beyond "the same page twice": a paging bug that alternates two pages (A, B, A, B, …)
/// with `has_more` forever. When only a page identical to the one *just before* ended the sweep,
/// the cycle was followed to `max_pages`, and then the source failed with "too many pages"; in
/// the daemon the stored sweep already held `pages = max_pages`, so every later attempt failed
/// the same way before sending anything (a stall, across restarts too).
#[tokio::test]
async fn test_an_a_b_a_b_page_cycle_ends_the_sweep() {
    let records = records("cycle", 10);
    let served = records.clone();
    let vendor = Hostile::start(move |r| {
        let skip: usize = r.param("skip").parse().unwrap();
        // skip=0: A; then B, A, B, A … for ever, always "more".
        let at = if (skip / 5).is_multiple_of(2) { 0 } else { 5 };
        json(aitronos_page(&served[at..at + 5], skip, 5, true))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, "max_pages = 40"));
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(
        status.success(),
        "run --once failed ({status}) after {} requests of an A-B-A-B cycle:\n{log}",
        vendor.requests()
    );
    // A, B, A (a repeat: the window is asked again from its first page, in case inserts shifted
    // the pages), then A, B, A again: the sweep ends. Six requests, never `max_pages`.
    assert!(vendor.requests() <= 6, "the cycle was followed for {} pages", vendor.requests());
    assert_delivered_once(dir.path(), &records, &log);
}

/// Point 5, "never a request inside a vendor's back-off": a 503 with `Retry-After: 120` (a vendor
/// in maintenance, or Aitronos' gateway shedding load) is a pause the vendor announced exactly
/// like a 429's. It is held only in the source's memory (`pause_for`), not stored with the
/// credential (`pause_credential` is called for 429 and spent budgets only), so an agent
/// restarted inside it (systemd `Restart=`) asks at once.
#[tokio::test]
async fn test_a_restart_inside_a_503_retry_after_asks_nothing_until_it_ends() {
    let records = records("maint", 5);
    let vendor = Hostile::start(move |r| match r.n {
        0 => status(503, &[("Retry-After", "120".into())], "maintenance"),
        _ => aitronos_answer(r, &records),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));

    let mut agent = Agent::start(&config, false);
    agent.until("the 503", RUN_LIMIT, |a| a.count("vendor error; retrying the same page") == 1).await;
    let exit = agent.terminate(RUN_LIMIT).await;
    assert!(exit.success(), "SIGTERM: exit {exit}:\n{}", agent.log());

    let mut agent = Agent::start(&config, false);
    agent
        .until("the restarted agent to honour the pause (or to ask the vendor)", RUN_LIMIT, |a| {
            a.count("honouring a stored rate-limit pause") == 1 || vendor.requests() > 1
        })
        .await;
    assert_eq!(
        vendor.requests(),
        1,
        "the restarted agent asked the vendor inside the 503's Retry-After: 120 window; its log:\n{}",
        agent.log()
    );
    let _ = agent.terminate(RUN_LIMIT).await;
}

/// Point 8's rule ("a page with the same ids as the one before ends the sweep") against
/// EDGES' "records inserted while we page (offsets shift)": Aitronos pages newest first by
/// `skip`. Between the first and second page the vendor indexes exactly one page's worth of
/// late records (5, `page_size = 5`) dated inside the frozen window, so the page at `skip=5`
/// holds exactly the ids of the page at `skip=0`. That is not a paging bug, yet the sweep ends
/// there, the window is recorded complete and the checkpoint moves past it: the ten older
/// records (and the five late ones) are never asked for again (the next window re-asks only
/// the overlap at its end). Before the change, paging followed `has_more` and got them all.
#[tokio::test]
async fn test_a_page_shifted_by_exactly_one_page_of_late_inserts_is_not_a_repeat() {
    let t0 = Utc::now() - chrono::Duration::minutes(60);
    let at = |i: i64| t0 + chrono::Duration::seconds(i);
    // Newest first, as Aitronos orders.
    let original: Vec<_> = (0..15).rev().map(|i| aitronos_record(&format!("old-{i:02}"), at(i))).collect();
    // Indexed late, while the agent pages: dated 30 minutes ago, inside the window, newer than all.
    let late: Vec<_> = (0..5).rev().map(|i| aitronos_record(&format!("late-{i}"), at(1800 + i))).collect();
    let after: Vec<_> = late.iter().chain(original.iter()).cloned().collect();
    let (before_insert, after_insert) = (original.clone(), after.clone());
    let vendor = Hostile::start(move |r| {
        let all = if r.n == 0 { &before_insert } else { &after_insert };
        let (from, to) = (r.time("from_date"), r.time("to_date"));
        let in_window: Vec<_> = all
            .iter()
            .filter(|rec| {
                let t = chrono::DateTime::parse_from_rfc3339(rec["created_at"].as_str().unwrap()).unwrap();
                t >= from && t <= to
            })
            .cloned()
            .collect();
        aitronos_answer(r, &in_window)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    assert_delivered_once(dir.path(), &after, &log);
}
