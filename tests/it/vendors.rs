//! Every vendor end to end against its simulated contract, over 127.0.0.1, with tokio's clock
//! paused: thousands of records across many windows and pages, each fault knob, several
//! organizations of one vendor, and one vendor failing while the others go on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::collections::HashSet;
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::daemon::{self, RunOptions, RunReport, SourceOutcome};
use auditrelay::queue::{Queue, QueueOptions};
use auditrelay::sim::{AstronomerEncoding, RateLimitSetting, RetryAfterMode, Sim, SimOptions, SimVendor};
use auditrelay::sources::RunMode;
use harness::*;
use tokio_util::sync::CancellationToken;

async fn run_once(sim: &Sim, dir: &std::path::Path, sources: &[String]) -> RunReport {
    let config = parse_config(&config_with_sources(dir, sources), sim, dir);
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    daemon::run(&config, Clock::starting_at(test_start()), opts, CancellationToken::new()).await.unwrap()
}

fn options(v: SimVendor, records: usize) -> SimOptions {
    let mut opts = SimOptions::default();
    match v {
        SimVendor::Aitronos => opts.aitronos.records = records,
        SimVendor::Astronomer => opts.astronomer.records = records,
        SimVendor::ConfigCat => opts.configcat.records = records,
        SimVendor::Datafold => opts.datafold.records = records,
    }
    // Only the vendor under test serves records.
    for other in SimVendor::ALL.into_iter().filter(|o| *o != v) {
        match other {
            SimVendor::Aitronos => opts.aitronos.records = 0,
            SimVendor::Astronomer => opts.astronomer.records = 0,
            SimVendor::ConfigCat => opts.configcat.records = 0,
            SimVendor::Datafold => opts.datafold.records = 0,
        }
    }
    opts
}

/// Every record of `org` was delivered exactly once (ids compared as sets; Astronomer records,
/// which have no id, compared by content).
fn assert_org_delivered_once(sim: &Sim, v: SimVendor, org: &str, dir: &std::path::Path) {
    let got = delivered_for(&out_path(dir), v, org);
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "{v:?} {org}: delivered more than once: {:?}", &dups[..dups.len().min(3)]);
    let want: HashSet<String> = match v {
        SimVendor::Astronomer => sim.astronomer_lines(org).iter().map(|l| canonical(l)).collect(),
        _ => sim.record_keys(v, org).into_iter().collect(),
    };
    let have: HashSet<String> = got.into_keys().collect();
    let missing = want.difference(&have).count();
    let extra = have.difference(&want).count();
    assert!(missing == 0 && extra == 0, "{v:?} {org}: {missing} missing, {extra} unexpected of {}", want.len());
}

/// 10,000 records over a day, collected from a start several windows back.
async fn ten_thousand(v: SimVendor, extra: &str) -> RunReport {
    let clock = Clock::starting_at(test_start());
    let sim = start_sim(options(v, 10_000), &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(v)[0].clone();
    let report = run_once(&sim, dir.path(), &[source_block(&sim, v, &org, "src", extra)]).await;
    assert_eq!(report.sources[0].outcome, SourceOutcome::CaughtUp, "{report:?}");
    assert_org_delivered_once(&sim, v, &org, dir.path());
    let stats = sim.vendor_stats(v);
    assert_eq!(stats.retry_after_violations, 0, "{stats:?}");
    report
}

#[tokio::test(start_paused = true)]
async fn test_aitronos_10000_records_no_duplicate_no_gap() {
    let report = ten_thousand(SimVendor::Aitronos, r#"start = "3d""#).await;
    assert!(report.sources[0].stats.pages >= 100);
}

#[tokio::test(start_paused = true)]
async fn test_configcat_10000_records_across_30_day_windows_and_pages() {
    // 45 days back: two windows of at most 30 days, each paged by pageNumber.
    let report = ten_thousand(SimVendor::ConfigCat, r#"start = "45d""#).await;
    assert!(report.sources[0].stats.pages >= 100, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_configcat_v1_bare_array_and_v1_redirected_to_v2() {
    for redirects in [false, true] {
        let clock = Clock::starting_at(test_start());
        let mut opts = options(SimVendor::ConfigCat, 700);
        opts.configcat.v1_redirects = redirects;
        let sim = start_sim(opts, &clock).await;
        let dir = tempfile::tempdir().unwrap();
        let org = sim.organizations(SimVendor::ConfigCat)[0].clone();
        let block = source_block(&sim, SimVendor::ConfigCat, &org, "src", "api_version = \"v1\"\nstart = \"2d\"");
        let report = run_once(&sim, dir.path(), &[block]).await;
        assert_eq!(report.sources[0].outcome, SourceOutcome::CaughtUp, "{report:?}");
        // Either way every record arrives: redirected answers are continued on v2 by page.
        assert_org_delivered_once(&sim, SimVendor::ConfigCat, &org, dir.path());
    }
}

#[tokio::test(start_paused = true)]
async fn test_datafold_10000_records_in_hour_windows() {
    let report = ten_thousand(SimVendor::Datafold, r#"start = "2d""#).await;
    assert!(report.sources[0].stats.requests >= 48, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_datafold_windows_split_when_answers_exceed_the_caps() {
    let report = ten_thousand(SimVendor::Datafold, "start = \"2d\"\nmax_records = 150").await;
    assert!(report.sources[0].stats.window_splits > 0, "{report:?}");
    let report = ten_thousand(SimVendor::Datafold, "start = \"2d\"\nmax_response_bytes = \"40 KiB\"").await;
    assert!(report.sources[0].stats.window_splits > 0, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_astronomer_10000_records_streamed_in_day_windows() {
    let report = ten_thousand(SimVendor::Astronomer, r#"start = "3d""#).await;
    // At 2 requests a minute, a few day-long windows.
    assert!(report.sources[0].stats.requests >= 3, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_astronomer_every_encoding() {
    for encoding in [AstronomerEncoding::DoubleCompressed, AstronomerEncoding::PlainGzipFile] {
        let clock = Clock::starting_at(test_start());
        let mut opts = options(SimVendor::Astronomer, 2000);
        opts.astronomer.encoding = encoding;
        let sim = start_sim(opts, &clock).await;
        let dir = tempfile::tempdir().unwrap();
        let org = sim.organizations(SimVendor::Astronomer)[0].clone();
        run_once(&sim, dir.path(), &[source_block(&sim, SimVendor::Astronomer, &org, "src", "start = \"2d\"")]).await;
        assert_org_delivered_once(&sim, SimVendor::Astronomer, &org, dir.path());
    }
}

#[tokio::test(start_paused = true)]
async fn test_astronomer_truncated_gzip_refetches_the_window_and_stores_nothing_half() {
    let clock = Clock::starting_at(test_start());
    let mut opts = options(SimVendor::Astronomer, 3000);
    opts.astronomer.truncated_rate = 0.5;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::Astronomer)[0].clone();
    // The overlap pinned to 5 minutes, where the seeded records leave it empty (Astronomer's
    // default is 10): every duplicate below could then only come from a half-stored answer.
    let extra = "start = \"2d\"\noverlap = \"5m\"\nbackoff = { initial = \"1s\", max = \"5s\" }";
    let report = run_once(&sim, dir.path(), &[source_block(&sim, SimVendor::Astronomer, &org, "src", extra)]).await;
    assert!(sim.vendor_stats(SimVendor::Astronomer).malformed > 0, "some answers must be cut");
    assert_org_delivered_once(&sim, SimVendor::Astronomer, &org, dir.path());
    // Had a cut answer been half-stored, its refetch would have met those records again.
    assert_eq!(report.sources[0].stats.duplicates, 0, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_astronomer_malformed_line_is_dead_lettered_and_the_rest_stored() {
    let clock = Clock::starting_at(test_start());
    let mut opts = options(SimVendor::Astronomer, 2000);
    opts.astronomer.malformed_lines_rate = 0.02;
    opts.astronomer.blank_lines_rate = 0.02;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::Astronomer)[0].clone();
    let report =
        run_once(&sim, dir.path(), &[source_block(&sim, SimVendor::Astronomer, &org, "src", "start = \"2d\"")]).await;
    let stats = report.sources[0].stats;
    assert!(stats.dead_lettered > 0, "{stats:?}");
    let lines: HashSet<String> = sim.astronomer_lines(&org).iter().map(|l| canonical(l)).collect();
    let delivered: Vec<String> =
        delivered_for(&out_path(dir.path()), SimVendor::Astronomer, &org).into_keys().collect();
    assert!(delivered.iter().all(|r| lines.contains(r)), "a delivered record is not the vendor's");
    // Each line the vendor sent is either delivered or dead-lettered with its raw text.
    assert_eq!(delivered.len() as u64 + stats.dead_lettered, lines.len() as u64, "{stats:?}");
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] })
        .unwrap();
    let dead = queue.dead_letters(10_000).await.unwrap();
    assert_eq!(dead.len() as u64, stats.dead_lettered);
    assert!(dead.iter().all(|d| d.reason.contains("is not JSON") && !d.raw.is_empty()), "{:?}", dead[0]);
    queue.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn test_429s_are_honoured_for_every_vendor() {
    for mode in [RetryAfterMode::Seconds, RetryAfterMode::HttpDate, RetryAfterMode::Omit] {
        let clock = Clock::starting_at(test_start());
        let mut opts = SimOptions::default();
        opts.aitronos.records = 1500;
        opts.configcat.records = 1500;
        opts.datafold.records = 1500;
        opts.astronomer.records = 1500;
        opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 2, per: Duration::from_secs(30) };
        opts.faults.retry_after = mode;
        opts.faults.limit_headers = false;
        let sim = start_sim(opts, &clock).await;
        let dir = tempfile::tempdir().unwrap();
        let quota = "start = \"5d\"\nrate_limit = { requests = 100, per = \"1s\", burst = 10 }";
        let sources: Vec<String> = SimVendor::ALL
            .into_iter()
            .map(|v| source_block(&sim, v, &sim.organizations(v)[0], v.name(), quota))
            .collect();
        let report = run_once(&sim, dir.path(), &sources).await;
        for v in SimVendor::ALL {
            let stats = sim.vendor_stats(v);
            assert!(stats.rate_limited > 0, "{mode:?} {v:?}: {stats:?}");
            if mode == RetryAfterMode::Omit && v == SimVendor::Datafold {
                // Datafold has no reset header and documents no fallback: a bare 429 says
                // nothing, so the agent backs off exponentially (invariant 5). Its 429s stay
                // bounded: a handful per window, not a storm.
                assert!(stats.rate_limited < 8 * stats.ok, "{stats:?}");
            } else {
                assert_eq!(stats.retry_after_violations, 0, "{mode:?} {v:?}: a request inside a Retry-After window");
            }
            assert_org_delivered_once(&sim, v, &sim.organizations(v)[0], dir.path());
        }
        assert!(report.sources.iter().all(|s| s.outcome == SourceOutcome::CaughtUp), "{report:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn test_5xx_and_malformed_answers_are_retried_for_every_vendor() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    for v in SimVendor::ALL {
        match v {
            SimVendor::Aitronos => opts.aitronos.records = 800,
            SimVendor::Astronomer => opts.astronomer.records = 800,
            SimVendor::ConfigCat => opts.configcat.records = 800,
            SimVendor::Datafold => opts.datafold.records = 800,
        }
    }
    opts.faults.error_rate = 0.2;
    opts.faults.malformed_rate = 0.2;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "start = \"2d\"\nbackoff = { initial = \"1s\", max = \"10s\" }";
    let sources: Vec<String> =
        SimVendor::ALL.into_iter().map(|v| source_block(&sim, v, &sim.organizations(v)[0], v.name(), extra)).collect();
    let report = run_once(&sim, dir.path(), &sources).await;
    let stats = sim.stats();
    assert!(stats.server_errors > 0 && stats.malformed > 0, "{stats:?}");
    for v in SimVendor::ALL {
        assert_org_delivered_once(&sim, v, &sim.organizations(v)[0], dir.path());
    }
    // Every unreadable answer was counted.
    let bad: u64 = report.sources.iter().map(|s| s.stats.bad_answers).sum();
    assert_eq!(bad, stats.malformed, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn test_configcat_budget_headers_pause_before_the_budget_is_spent() {
    let clock = Clock::starting_at(test_start());
    let mut opts = options(SimVendor::ConfigCat, 3000);
    opts.faults.rate_limit = RateLimitSetting::Fixed { requests: 3, per: Duration::from_secs(20) };
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::ConfigCat)[0].clone();
    // A quota far above the vendor's: only X-Rate-Limit-Remaining/-Reset keep the agent in line.
    let extra = "start = \"2d\"\nrate_limit = { requests = 100, per = \"1s\", burst = 10 }";
    run_once(&sim, dir.path(), &[source_block(&sim, SimVendor::ConfigCat, &org, "src", extra)]).await;
    let stats = sim.vendor_stats(SimVendor::ConfigCat);
    assert!(stats.requests >= 30, "{stats:?}");
    assert_eq!((stats.rate_limited, stats.retry_after_violations), (0, 0), "{stats:?}");
    assert_org_delivered_once(&sim, SimVendor::ConfigCat, &org, dir.path());
}

#[tokio::test(start_paused = true)]
async fn test_several_organizations_of_one_vendor_each_with_own_limiter_and_checkpoint() {
    let clock = Clock::starting_at(test_start());
    let mut opts = options(SimVendor::ConfigCat, 1200);
    opts.configcat.organizations = 3;
    opts.aitronos.organizations = 2;
    opts.aitronos.records = 900;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let mut sources = Vec::new();
    for v in [SimVendor::ConfigCat, SimVendor::Aitronos] {
        for (i, org) in sim.organizations(v).iter().enumerate() {
            sources.push(source_block(&sim, v, org, &format!("{}-{i}", v.name()), "start = \"2d\""));
        }
    }
    assert_eq!(sources.len(), 5);
    let report = run_once(&sim, dir.path(), &sources).await;
    assert!(report.sources.iter().all(|s| s.outcome == SourceOutcome::CaughtUp), "{report:?}");
    for v in [SimVendor::ConfigCat, SimVendor::Aitronos] {
        for org in &sim.organizations(v) {
            assert_org_delivered_once(&sim, v, org, dir.path());
        }
        assert_eq!(sim.vendor_stats(v).retry_after_violations, 0);
    }
    // Each source has its own checkpoint.
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] })
        .unwrap();
    assert_eq!(queue.stats().await.unwrap().checkpoints.len(), 5);
    queue.close().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn test_401_and_403_stop_that_source_with_a_clear_error_while_the_others_go_on() {
    let clock = Clock::starting_at(test_start());
    let mut opts = SimOptions::default();
    opts.datafold.non_admin_keys = true;
    opts.astronomer.tokens_lack_owner_role = true;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = |v| sim.organizations(v)[0].clone();
    let good = source_block(&sim, SimVendor::Aitronos, &org(SimVendor::Aitronos), "good", "start = \"2d\"");
    let wrong_password = source_block(&sim, SimVendor::ConfigCat, &org(SimVendor::ConfigCat), "cc", "start = \"2d\"")
        .replace("password = \"", "password = \"wrong-secret-");
    let not_admin = source_block(&sim, SimVendor::Datafold, &org(SimVendor::Datafold), "df", "start = \"2d\"");
    let not_owner = source_block(&sim, SimVendor::Astronomer, &org(SimVendor::Astronomer), "astro", "start = \"2d\"");
    let report = run_once(&sim, dir.path(), &[good, wrong_password, not_admin, not_owner]).await;
    assert_eq!(report.sources[0].outcome, SourceOutcome::CaughtUp);
    assert_org_delivered_once(&sim, SimVendor::Aitronos, &org(SimVendor::Aitronos), dir.path());
    for (i, name, status) in [(1, "cc", "401"), (2, "df", "403"), (3, "astro", "403")] {
        let SourceOutcome::Failed(msg) = &report.sources[i].outcome else { panic!("{report:?}") };
        assert!(msg.contains(&format!("source {name}:")) && msg.contains(status), "{msg}");
        assert!(!msg.contains("wrong-secret"), "{msg}");
    }
}

#[tokio::test(start_paused = true)]
async fn test_records_arriving_mid_sweep_are_collected_by_the_next_sweep() {
    for v in SimVendor::ALL {
        let clock = Clock::starting_at(test_start());
        let mut opts = options(v, 400);
        opts.faults.arrivals_per_page = 3;
        let sim = start_sim(opts, &clock).await;
        let dir = tempfile::tempdir().unwrap();
        let org = sim.organizations(v)[0].clone();
        let sources = [source_block(&sim, v, &org, "src", "start = \"2d\"\nlag = \"0s\"\npoll_interval = \"1m\"")];
        let config = parse_config(&config_with_sources(dir.path(), &sources), &sim, dir.path());
        let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
        daemon::run(&config, clock.clone(), opts.clone(), CancellationToken::new()).await.unwrap();
        let existing = sim.record_keys(v, &org).len();
        assert!(existing > 400, "{v:?}: records must arrive during the sweep");
        let snapshot: Vec<String> = if v == SimVendor::Astronomer {
            sim.astronomer_lines(&org).iter().map(|l| canonical(l)).collect()
        } else {
            sim.record_keys(v, &org)
        };
        tokio::time::advance(Duration::from_secs(600)).await;
        daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap();
        let have: HashSet<String> = delivered_for(&out_path(dir.path()), v, &org).into_keys().collect();
        let missing = snapshot.iter().filter(|k| !have.contains(*k)).count();
        assert_eq!(missing, 0, "{v:?}: {missing} records that existed after the first run were not collected");
    }
}

/// A Datafold validation error (422) is never retried, and the error quotes its detail.
#[tokio::test(start_paused = true)]
async fn test_datafold_422_is_not_retried_and_quotes_the_validation_detail() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/api/v1/audit_logs",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                let body = r#"{"detail":[{"loc":["body","start_date"],"msg":"invalid datetime format","type":"value_error.datetime"}]}"#;
                (axum::http::StatusCode::UNPROCESSABLE_ENTITY, [("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let block = format!(
        "[[sources]]\nname = \"df\"\nvendor = \"datafold\"\napi_key = \"k\"\nbase_url = \"http://{addr}/\"\nstart = \"2d\"\n"
    );
    let text = config_with_sources(dir.path(), &[block]);
    let config = auditrelay::config::Config::parse_with_env(&text, &dir.path().join("a.toml"), &|_| None).unwrap();
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, Clock::starting_at(test_start()), opts, CancellationToken::new()).await.unwrap();
    let SourceOutcome::Failed(msg) = &report.sources[0].outcome else { panic!("{report:?}") };
    assert!(msg.contains("422") && msg.contains("invalid datetime format"), "{msg}");
    assert_eq!(hits.load(Ordering::SeqCst), 1, "a 422 must not be retried");
}

/// A record that reaches the mapping but cannot become an OCSF event (here an Aitronos entry
/// without `action_type`) is dead-lettered with its reason and counted; the rest are stored.
#[tokio::test(start_paused = true)]
async fn test_unmappable_record_is_dead_lettered_with_its_reason() {
    let page = r#"{"items":[
        {"id":"a1","entity_type":"user","action_type":"created","actor_id":"usr_1","actor_name":"A",
         "actor_email":"a@example.com","target_id":"usr_2","target_name":"B","organization_id":"ORG_X",
         "created_at":"2026-03-18T08:00:00Z"},
        {"id":"a2","entity_type":"user","organization_id":"ORG_X","created_at":"2026-03-18T08:01:00Z"}
    ],"total":2,"skip":0,"limit":100,"has_more":false}"#;
    let app = axum::Router::new().route(
        "/v1/organizations/ORG_X/audit-log",
        axum::routing::get(move || async move { ([("content-type", "application/json")], page) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let block = format!(
        "[[sources]]\nname = \"ait\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"k\"\n\
         base_url = \"http://{addr}/\"\nstart = \"2026-03-18T00:00:00Z\"\nmax_span = \"3d\"\n"
    );
    let text = config_with_sources(dir.path(), &[block]);
    let config = auditrelay::config::Config::parse_with_env(&text, &dir.path().join("a.toml"), &|_| None).unwrap();
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let report = daemon::run(&config, Clock::starting_at(test_start()), opts, CancellationToken::new()).await.unwrap();
    assert_eq!((report.sources[0].stats.stored, report.sources[0].stats.dead_lettered), (1, 1), "{report:?}");
    assert_eq!(events(&out_path(dir.path())).len(), 1);
    let queue = Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1 << 30, sinks: vec!["file".into()] })
        .unwrap();
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, "a2");
    assert!(dead[0].reason.starts_with("cannot map to OCSF:"), "{}", dead[0].reason);
    assert!(String::from_utf8_lossy(&dead[0].raw).contains("\"id\":\"a2\""));
    queue.close().await.unwrap();
}

/// Issue 15 point 1: a dense burst — 1,200 Datafold records within 4 minutes, `max_records =
/// 1000` — is collected whole. Every split makes progress (a piece of the overlap moves
/// `rechecked_until`, anything else the checkpoint), so the checkpoint only moves forward and
/// `run --once` catches up in a bounded number of requests (the old code asked the same window
/// for ever: 410 requests, nothing stored, when this test cut it). The run is cut after 400
/// requests, so a stall fails the test instead of hanging it. Then the same 1,200 records all
/// in one instant: no window can hold fewer, so the one-second window is taken whole (an error
/// and a counter) rather than asked for ever — each time an overlap holding that instant is
/// asked again (the overlap is always asked again whole, for records indexed late into it).
#[tokio::test(start_paused = true)]
async fn test_dense_burst_in_one_overlap_is_split_past_the_checkpoint_and_collected() {
    let within_4_minutes = dense_burst(Duration::from_secs(14 * 60)).await;
    assert_eq!(within_4_minutes.oversized_taken, 0, "{within_4_minutes:?}");
    let one_instant = dense_burst(Duration::from_secs(10 * 60)).await;
    assert!(one_instant.oversized_taken >= 1, "{one_instant:?}");
}

/// 1,200 Datafold records between `span` and 10 minutes ago, collected with `max_records =
/// 1000`; returns the source's counters.
async fn dense_burst(span: Duration) -> auditrelay::sources::SourceStatsSnapshot {
    let clock = Clock::starting_at(test_start());
    let mut opts = options(SimVendor::Datafold, 1200);
    opts.datafold.records_span = span;
    opts.datafold.records_min_age = Duration::from_secs(10 * 60);
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let org = sim.organizations(SimVendor::Datafold)[0].clone();
    let extra = "start = \"3h\"\nmax_records = 1000\nrate_limit = { requests = 100, per = \"1s\" }";
    let config = parse_config(
        &config_with_sources(dir.path(), &[source_block(&sim, SimVendor::Datafold, &org, "src", extra)]),
        &sim,
        dir.path(),
    );
    let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
    let cut = CancellationToken::new();
    let run = daemon::run(&config, clock.clone(), opts, cut.clone());
    tokio::pin!(run);
    let report = loop {
        tokio::select! {
            report = &mut run => break report.unwrap(),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if sim.vendor_stats(SimVendor::Datafold).requests > 400 {
                    cut.cancel();
                }
            }
        }
    };
    let requests = sim.vendor_stats(SimVendor::Datafold).requests;
    assert!(!cut.is_cancelled(), "stalled: still asking after {requests} requests; {report:?}");
    assert_eq!(report.sources[0].outcome, SourceOutcome::CaughtUp, "{report:?}");
    assert_org_delivered_once(&sim, SimVendor::Datafold, &org, dir.path());
    let stats = report.sources[0].stats;
    assert!(stats.window_splits > 0, "the burst must have been split: {stats:?}");
    println!("dense burst over {span:?}: {requests} requests, {stats:?}");
    stats
}

/// Issue 20 point 4: `auditrelay vendors` and `auditrelay vendors check FILE`, on the binary.
mod definitions_cli {
    use std::path::Path;
    use std::process::{Command, Output};

    /// A small valid definition named `name`.
    fn definition(name: &str) -> String {
        format!(
            "[vendor]\nname = \"{name}\"\ntitle = \"The {name} log\"\nvendor_name = \"V\"\nproduct = \"P\"\n\
             [request]\npath = \"/logs\"\nquery = {{ since = \"{{from}}\", until = \"{{to}}\" }}\n\
             [paging]\nkind = \"link\"\n[auth]\nkind = \"bearer\"\n\
             [answer]\nid = \"/id\"\ntime = \"/at\"\n[rate_limit]\nrequests = 30\nper = \"1m\"\n\
             [ocsf]\naction = \"/action\"\n"
        )
    }

    fn vendors(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_auditrelay")).arg("vendors").args(args).output().unwrap()
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    fn dir_arg(dir: &Path) -> String {
        dir.display().to_string()
    }

    #[test]
    fn vendors_lists_built_in_and_defined_vendors_with_where_each_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("acme.toml");
        std::fs::write(&file, definition("acme")).unwrap();
        let out = vendors(&["--dir", &dir_arg(dir.path())]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        for builtin in ["aitronos", "astronomer", "configcat", "datafold"] {
            let line = stdout.lines().find(|l| l.starts_with(builtin)).unwrap_or_else(|| panic!("{stdout}"));
            assert!(line.ends_with("built in"), "{line}");
        }
        let line = stdout.lines().find(|l| l.starts_with("acme ")).unwrap_or_else(|| panic!("{stdout}"));
        for part in ["The acme log", "link", "bearer", "30 per 1m", &file.display().to_string()] {
            assert!(line.contains(part), "{part:?} missing: {line}");
        }

        let out = vendors(&["--dir", &dir_arg(dir.path()), "--json"]);
        assert!(out.status.success());
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let acme = list.as_array().unwrap().iter().find(|v| v["name"] == "acme").unwrap();
        assert_eq!(acme["from"], file.display().to_string());
        assert_eq!((acme["paging"].as_str(), acme["auth"].as_str()), (Some("link"), Some("bearer")));
        assert_eq!(list.as_array().unwrap().iter().filter(|v| v["from"] == "built in").count(), 4);
    }

    #[test]
    fn a_missing_dir_given_and_two_definitions_of_one_name_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let out = vendors(&["--dir", &dir_arg(&missing)]);
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains(&missing.display().to_string()), "{}", text(&out.stderr));

        let a = dir.path().join("a.toml");
        let b = dir.path().join("b.toml");
        std::fs::write(&a, definition("same")).unwrap();
        std::fs::write(&b, definition("same")).unwrap();
        let out = vendors(&["--dir", &dir_arg(dir.path())]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&a.display().to_string()) && stderr.contains(&b.display().to_string()), "{stderr}");
    }

    #[test]
    fn vendors_check_says_ok_or_every_error_with_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, definition("good")).unwrap();
        let out = vendors(&["check", &good.display().to_string()]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains("ok") && stdout.contains("\"good\"") && stdout.contains("paging link"), "{stdout}");

        let bad = dir.path().join("bad.toml");
        let broken = definition("Bad!").replace("kind = \"link\"", "kind = \"links\"").replace("{to}", "{until}");
        std::fs::write(&bad, &broken).unwrap();
        let out = vendors(&["check", &bad.display().to_string()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
        for (needle, key) in [("Bad!", "vendor.name"), ("links", "paging.kind"), ("{until}", "request.query.until")] {
            let want = format!("{}:{}: {key}: ", bad.display(), line_of(needle));
            assert!(stderr.lines().any(|l| l.starts_with(&want)), "{want:?} missing from {stderr}");
        }
    }

    #[test]
    fn vendors_and_check_read_the_configurations_vendors_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("defs")).unwrap();
        let file = dir.path().join("defs/acme.toml");
        std::fs::write(&file, definition("acme")).unwrap();
        let config = dir.path().join("auditrelay.toml");
        std::fs::write(
            &config,
            "state_dir = \"state\"\nvendors_dir = \"defs\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
             organization_id = \"ORG\"\napi_key = \"ak_test\"\n[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"out.ndjson\"\n",
        )
        .unwrap();
        let out = vendors(&["--config", &config.display().to_string()]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(stdout.lines().any(|l| l.starts_with("acme ") && l.ends_with(&file.display().to_string())), "{stdout}");

        let out = Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["check", "-c"]).arg(&config).output().unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
        assert!(stdout.contains(&format!("acme ({})", file.display())), "{stdout}");
    }
}
