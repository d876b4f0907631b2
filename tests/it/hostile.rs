//! Issue 8 point 5, "hostile vendor": the real binary against a vendor that misbehaves on
//! purpose — a 429 storm, a `Retry-After` a day or a year away, paging without end, an endless
//! body, a slow drip, invalid UTF-8, JSON nested a million deep, gzip bombs. Each time memory
//! stays bounded, the error says what happened, and nothing is lost: every record the vendor
//! finally serves arrives exactly once.
//!
//! The vendor is a raw HTTP server in this test process on 127.0.0.1 (`harness/hostile.rs`);
//! the agent is `auditrelay run` with a file sink. Waits are conditions polled with deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::harness::hostile;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use harness::agent::{Agent, until};
use harness::{canonical, delivered, out_path};
use hostile::*;

const MIB: u64 = 1024 * 1024;
/// The agent's cap on a whole answer body (`sources::MAX_BODY_BYTES`).
const MAX_BODY_BYTES: u64 = 64 * MIB;
/// The longest any one agent run here may take.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

/// `n` Aitronos records `prefix-00` … an hour ago, a second apart.
fn aitronos_records(prefix: &str, n: usize) -> Vec<serde_json::Value> {
    let t0 = Utc::now() - minutes(60);
    (0..n).map(|i| aitronos_record(&format!("{prefix}-{i:02}"), t0 + chrono::Duration::seconds(i as i64))).collect()
}

/// Asserts the file sink delivered exactly these Aitronos records, each once.
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

/// Complete lines in the file sink's output so far (a line being written is not counted).
fn delivered_lines(dir: &Path) -> usize {
    std::fs::read(out_path(dir)).map(|b| b.iter().filter(|c| **c == b'\n').count()).unwrap_or(0)
}

/// `auditrelay queue dead-letters --json`: one JSON object per dead letter.
async fn dead_letters(config: &Path) -> Vec<serde_json::Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["queue", "dead-letters", "--json", "--limit", "0", "-c"])
        .arg(config)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "queue dead-letters failed: {}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// 1. A 429 storm with `Retry-After: 1`: three in a row on the first page, one more in the
/// middle of the sweep. The agent never comes back before the second is up, asks the same page
/// again every time, and delivers every record once.
#[tokio::test]
async fn test_429_storm_with_retry_after_is_waited_out_and_loses_nothing() {
    let records = aitronos_records("storm", 12);
    let served = records.clone();
    let vendor = Hostile::start(move |r| {
        if [0, 1, 2, 4].contains(&r.n) {
            let body = r#"{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED","message":"Too many requests"}}"#;
            return status(429, &[("Retry-After", "1".into())], body);
        }
        aitronos_answer(r, &served)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");

    let served = vendor.log();
    let statuses: Vec<u16> = served.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [429, 429, 429, 200, 429, 200, 200], "the storm, then three pages:\n{log}");
    let path = format!("/v1/organizations/{ORG}/audit-log");
    assert!(served.iter().all(|s| s.request.path == path), "not all requests went to {path}");
    for pair in served.windows(2).filter(|p| p[0].status == 429) {
        let (limited, next) = (&pair[0], &pair[1]);
        let waited = next.arrived - limited.head_sent.unwrap();
        assert!(
            waited >= Duration::from_secs(1),
            "request {} came {:.3} s after the 429 that said Retry-After: 1",
            next.request.n,
            secs(waited)
        );
        assert!(waited < Duration::from_secs(4), "request {} came only after {:.3} s", next.request.n, secs(waited));
        assert_eq!(next.request.query, limited.request.query, "after a 429 the same page is asked again");
    }
    assert_eq!(agent.lines_with(&["rate limited (429)", "source=hostile"]).len(), 4, "one line per 429:\n{log}");
    assert_delivered_once(dir.path(), &records, &log);
}

/// 1b. The same storm said only by Aitronos' budget headers (`X-RateLimit-Remaining: 0`,
/// `X-RateLimit-Reset` in epoch seconds, no `Retry-After`): no request before the reset.
#[tokio::test]
async fn test_429_storm_with_only_reset_headers_waits_for_the_reset() {
    let records = aitronos_records("reset", 8);
    let served = records.clone();
    let resets: std::sync::Arc<std::sync::Mutex<HashMap<usize, u64>>> = std::sync::Arc::default();
    let told = std::sync::Arc::clone(&resets);
    let vendor = Hostile::start(move |r| {
        if r.n < 2 {
            let reset = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 2;
            told.lock().unwrap().insert(r.n, reset);
            let headers = [
                ("X-RateLimit-Limit", "100".to_owned()),
                ("X-RateLimit-Remaining", "0".to_owned()),
                ("X-RateLimit-Reset", reset.to_string()),
            ];
            return status(429, &headers, r#"{"success":false,"error":{"code":"RATE_LIMIT_EXCEEDED"}}"#);
        }
        aitronos_answer(r, &served)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    let served = vendor.log();
    let statuses: Vec<u16> = served.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [429, 429, 200, 200], "two 429s, then two pages:\n{log}");
    let resets = resets.lock().unwrap().clone();
    for n in 0..2 {
        let reset = UNIX_EPOCH + Duration::from_secs(resets[&n]);
        let next = &served[n + 1];
        assert!(
            next.arrived_wall >= reset,
            "request {} arrived {:?} before the reset the 429 named",
            n + 1,
            reset.duration_since(next.arrived_wall).unwrap()
        );
        assert_eq!(next.request.query, served[n].request.query, "the same page again");
    }
    assert_delivered_once(dir.path(), &records, &log);
}

/// 2. `Retry-After: 86400`, then an HTTP-date a year ahead, then a spent budget whose reset is
/// a day away (`X-RateLimit-Remaining: 0` beside `Retry-After: 2`), with `max_retry_after =
/// "1s"`: the daemon comes back after about a second each time, says so in one warning per
/// answer naming the source, counts each on /metrics, and delivers everything.
#[tokio::test]
async fn test_far_future_retry_after_is_capped_reported_and_counted() {
    let records = aitronos_records("far", 8);
    let served = records.clone();
    let vendor = Hostile::start(move |r| match r.n {
        0 => status(429, &[("Retry-After", "86400".into())], "slow down"),
        1 => {
            let year = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(365 * 86_400));
            status(429, &[("Retry-After", year)], "slow down")
        }
        2 => {
            let day = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 86_400;
            let headers = [
                ("Retry-After", "2".to_owned()),
                ("X-RateLimit-Remaining", "0".to_owned()),
                ("X-RateLimit-Reset", day.to_string()),
            ];
            status(429, &headers, "slow down")
        }
        _ => aitronos_answer(r, &served),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let telemetry = "[telemetry]\nlisten = \"127.0.0.1:0\"";
    let config = write_config(dir.path(), telemetry, &aitronos_source(&vendor, "max_retry_after = \"1s\""));

    let mut agent = Agent::start(&config, false);
    until("the 8 records in the file sink", RUN_LIMIT, || delivered_lines(dir.path()) >= 8).await;
    let served = vendor.log();
    assert_eq!(served.iter().map(|s| s.status).collect::<Vec<_>>(), [429, 429, 429, 200, 200]);
    for n in 0..3 {
        let waited = served[n + 1].arrived - served[n].head_sent.unwrap();
        assert!(
            waited >= Duration::from_secs(1) && waited < Duration::from_secs(4),
            "after the {} 429 the agent came back after {:.3} s, not about max_retry_after (1 s)",
            ["day-long", "year-long", "budget-reset-in-a-day"][n],
            secs(waited)
        );
    }
    let capped = agent.lines_with(&["capping it", "source=hostile"]);
    assert_eq!(capped.len(), 3, "one capping warning per 429:\n{}", agent.log());
    assert!(capped[0].contains("WARN") && capped[0].contains("86400s"), "{}", capped[0]);
    assert!(capped[1].contains("capped=1s"), "{}", capped[1]);

    // The metrics endpoint (port 0: the log names the one it got).
    let metrics = agent.metrics().await;
    let sample = |name: &str| {
        let prefix = format!("{name}{{source=\"hostile\",vendor=\"aitronos\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
    };
    assert_eq!(sample("auditrelay_source_retry_after_capped_total"), "3", "capped waits on /metrics");
    assert_eq!(sample("auditrelay_source_rate_limited_total"), "3");

    let status = agent.terminate(RUN_LIMIT).await;
    assert!(status.success(), "SIGTERM: exit {status}:\n{}", agent.log());
    assert_delivered_once(dir.path(), &records, &agent.log());
}

/// 3. A vendor that pages forever (every page full, new ids, `has_more` always true), with
/// `max_pages = 5`: exactly five pages are asked, their 25 records delivered, and the run fails
/// with an error naming the source, the window, the next URL and the cap. The checkpoint stays
/// on the window: a second run asks nothing; the daemon repeats the error after `backoff.max`
/// without asking either.
#[tokio::test]
async fn test_endless_pagination_stops_at_max_pages_with_a_clear_error_and_keeps_the_pages() {
    let t = Utc::now() - minutes(30);
    let vendor = Hostile::start(move |r| {
        let skip: usize = r.param("skip").parse().unwrap();
        let limit: usize = r.param("limit").parse().unwrap();
        let items: Vec<_> = (skip..skip + limit).map(|i| aitronos_record(&format!("endless-{i:06}"), t)).collect();
        json(aitronos_page(&items, skip, limit, true))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, "max_pages = 5"));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(!status.success(), "run --once must fail when paging does not end:\n{log}");
    let skips: Vec<String> = vendor.log().iter().map(|s| s.request.param("skip").to_owned()).collect();
    assert_eq!(skips, ["0", "5", "10", "15", "20"], "exactly max_pages pages asked:\n{log}");
    let error = agent.lines_with(&["paging did not end after 5 pages (max_pages)"]);
    assert!(!error.is_empty(), "no page-cap error in the log:\n{log}");
    for piece in ["ERROR", "source hostile", "of the window ", "skip=25", "raise max_pages if the vendor really holds"]
    {
        assert!(error[0].contains(piece), "the page-cap error lacks {piece:?}: {}", error[0]);
    }
    assert!(!error[0].contains("ak_hostile_test"), "the API key leaked: {}", error[0]);
    let fetched: Vec<_> = (0..25).map(|i| aitronos_record(&format!("endless-{i:06}"), t)).collect();
    assert_delivered_once(dir.path(), &fetched, &log);

    // The checkpoint did not move past the window: a second run asks nothing and fails alike.
    let mut again = Agent::start(&config, true);
    let status = again.exit(RUN_LIMIT).await;
    assert!(!status.success(), "the second run must fail too:\n{}", again.log());
    assert!(!again.lines_with(&["paging did not end after 5 pages"]).is_empty(), "{}", again.log());
    assert_eq!(vendor.requests(), 5, "the second run asked the vendor again");

    // The daemon logs the error, waits backoff.max (100 ms), checks again: still no request.
    let mut daemon = Agent::start(&config, false);
    until("the page-cap error twice", RUN_LIMIT, || {
        daemon.lines_with(&["paging did not end after 5 pages", "operator action needed"]).len() >= 2
    })
    .await;
    assert_eq!(vendor.requests(), 5, "the daemon asked past max_pages");
    let status = daemon.terminate(RUN_LIMIT).await;
    assert!(status.success(), "SIGTERM: exit {status}:\n{}", daemon.log());
    assert_delivered_once(dir.path(), &fetched, &daemon.log());
}

/// 4. Huge bodies: first a `Content-Length` of 100 MB (refused from the head, before any body
/// is read), then a body without end (read up to the 64 MiB cap, then dropped). The agent's
/// peak memory stays far below what it was sent, each refusal is logged, and the good answer
/// that follows is delivered.
#[tokio::test]
async fn test_huge_bodies_are_cut_at_the_cap_with_bounded_memory() {
    let records = aitronos_records("huge", 7);
    let served = records.clone();
    let (endless_gate, good_gate) = (Gate::default(), Gate::default());
    let (g1, g2) = (endless_gate.clone(), good_gate.clone());
    let piece = Bytes::from(vec![b' '; 64 * 1024]);
    let vendor = Hostile::start(move |r| {
        let prefix = br#"{"items":["#.to_vec();
        match r.n {
            0 => {
                let times = 100_000_000 / piece.len() as u64;
                let length = prefix.len() as u64 + times * piece.len() as u64;
                let body = Body::Repeat { prefix, piece: piece.clone(), times, content_length: Some(length) };
                Reply::Answer { status: 200, headers: vec![], body }
            }
            1 => {
                let body = Body::Repeat { prefix, piece: piece.clone(), times: u64::MAX, content_length: None };
                Reply::Gated(g1.clone(), Box::new(Reply::Answer { status: 200, headers: vec![], body }))
            }
            2 => Reply::Gated(g2.clone(), Box::new(aitronos_answer(r, &served))),
            _ => aitronos_answer(r, &served),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut agent = Agent::start(&config, true);

    // The announced 100 MB: refused at the head; the retry waits at the gate.
    until("the retry after the 100 MB answer", RUN_LIMIT, || vendor.requests() >= 2).await;
    let before_endless = agent.peak_rss();
    until("the vendor to see the agent hang up", RUN_LIMIT, || vendor.log()[0].end == End::ClientGone).await;
    let declared = vendor.log()[0].body_bytes;
    assert!(declared < 32 * MIB, "the agent took {declared} bytes of an answer it could refuse from its head");

    // The endless body: cut at the cap.
    endless_gate.open();
    until("the agent to stop reading the endless body", RUN_LIMIT, || {
        let log = vendor.log();
        log[1].end == End::ClientGone && log.len() >= 3
    })
    .await;
    let peak = agent.peak_rss();
    let taken = vendor.log()[1].body_bytes;
    assert!(taken >= MAX_BODY_BYTES, "the agent stopped at {taken} bytes, below its cap");
    assert!(taken < MAX_BODY_BYTES + 32 * MIB, "the agent read {taken} bytes, far past its cap");
    assert!(peak < 160 * MIB, "peak RSS {} MiB while cutting an endless body at 64 MiB", peak / MIB);
    println!(
        "huge body: peak RSS {} MiB after refusing the 100 MB head (server wrote {} KiB), {} MiB after \
         cutting the endless body at {} MiB",
        before_endless / MIB,
        declared / 1024,
        peak / MIB,
        taken / MIB
    );

    good_gate.open();
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    let refused = agent.lines_with(&["answer not read; retrying the same page", "source=hostile"]);
    assert_eq!(refused.len(), 2, "one warning per huge answer:\n{log}");
    let announced = format!("limit of 67108864 bytes (Content-Length: {})", 10 + 100_000_000 / (64 * 1024) * 64 * 1024);
    assert!(refused[0].contains(&announced), "{}", refused[0]);
    assert!(refused[1].contains("larger than the limit of 67108864 bytes; not read further"), "{}", refused[1]);
    assert_delivered_once(dir.path(), &records, &log);
}

/// 5. A slow drip, one byte every 200 ms, with `request_timeout = "1s"`: first in the head,
/// then in the body. Each request is abandoned after the timeout with an error that says so,
/// asked again, and the good answer is delivered.
#[tokio::test]
async fn test_slow_drip_is_abandoned_at_request_timeout_and_retried() {
    let records = aitronos_records("drip", 6);
    let served = records.clone();
    let every = Duration::from_millis(200);
    let vendor = Hostile::start(move |r| {
        let body = aitronos_page(&served[..5], 0, 5, true);
        let head =
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
        match r.n {
            0 => Reply::Drip { head: vec![], rest: [head.as_bytes(), &body].concat(), every },
            1 => Reply::Drip { head: head.into_bytes(), rest: body, every },
            _ => aitronos_answer(r, &served),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, "request_timeout = \"1s\""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    until("the vendor to see both drips abandoned", RUN_LIMIT, || {
        vendor.log()[..2].iter().all(|s| s.end == End::ClientGone)
    })
    .await;
    let served = vendor.log();
    for n in 0..2 {
        // The agent's timeout starts before the vendor has read the request (connecting, sending
        // the head), so the next request may come a little under 1 s after this one arrived.
        let gap = served[n + 1].arrived - served[n].arrived;
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_secs(5),
            "drip {n}: the next request came after {:.3} s, not after the 1 s request_timeout",
            secs(gap)
        );
        assert_eq!(served[n + 1].request.query, served[n].request.query, "the same page again");
    }
    let head = agent.lines_with(&["request failed; retrying the same page", "source=hostile"]);
    assert_eq!(head.len(), 1, "one warning for the dripped head:\n{log}");
    assert!(head[0].contains("timed out") && head[0].contains("request_timeout"), "{}", head[0]);
    let body = agent.lines_with(&["answer not read; retrying the same page", "source=hostile"]);
    assert_eq!(body.len(), 1, "one warning for the dripped body:\n{log}");
    assert!(body[0].contains("timed out") && body[0].contains("request_timeout"), "{}", body[0]);
    assert_delivered_once(dir.path(), &records, &log);
}

/// 6a. Invalid UTF-8 inside a JSON string of a page: a "malformed page" warning naming the
/// source and URL, the page asked again, and the good page delivered.
#[tokio::test]
async fn test_invalid_utf8_in_a_page_is_a_malformed_page_retried() {
    let records = aitronos_records("utf8", 4);
    let served = records.clone();
    let vendor = Hostile::start(move |r| {
        if r.n == 0 {
            let mut bad = served.clone();
            bad[1]["actor_name"] = "Lena @@BAD@@ Fischer".into();
            let text = aitronos_page(&bad, 0, 5, false);
            let at = text.windows(7).position(|w| w == b"@@BAD@@").unwrap();
            let body = [&text[..at], b"\xff\xfe\xc3", &text[at + 7..]].concat();
            return json(body);
        }
        aitronos_answer(r, &served)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    let bad = agent.lines_with(&["malformed page; retrying the same page", "source=hostile"]);
    assert_eq!(bad.len(), 1, "one malformed-page warning:\n{log}");
    assert!(bad[0].contains("/audit-log?skip=0"), "the warning names the URL: {}", bad[0]);
    assert!(bad[0].contains("not an Aitronos audit-log page") && bad[0].contains("unicode"), "{}", bad[0]);
    let served = vendor.log();
    assert_eq!(served.len(), 2);
    assert_eq!(served[1].request.query, served[0].request.query, "the same page again");
    assert_delivered_once(dir.path(), &records, &log);
}

/// Six Astronomer lines spread over the last two hours, and the gzipped answers for a window.
fn astronomer_lines() -> Vec<(DateTime<Utc>, String)> {
    let now = Utc::now();
    [110, 90, 70, 50, 30, 10]
        .iter()
        .enumerate()
        .map(|(i, m)| (now - minutes(*m), astronomer_line(i, now - minutes(*m))))
        .collect()
}

/// Asserts the file sink delivered exactly these Astronomer lines, each once.
fn assert_lines_delivered_once(dir: &Path, lines: &[(DateTime<Utc>, String)], agent_log: &str) {
    let got = delivered(&out_path(dir));
    let mut want: Vec<String> = lines.iter().map(|(_, l)| canonical(l)).collect();
    want.sort();
    let mut keys: Vec<String> = got.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, want, "the delivered records are not the vendor's lines; agent log:\n{agent_log}");
    assert!(got.values().all(|n| *n == 1), "a line delivered more than once: {got:?}");
}

/// 6b. In Astronomer's gzipped NDJSON a line with invalid UTF-8 becomes a dead letter with its
/// exact bytes and the reason; the other lines are delivered.
#[tokio::test]
async fn test_invalid_utf8_ndjson_line_is_a_dead_letter_and_the_rest_arrive() {
    let lines = astronomer_lines();
    let good = lines.clone();
    let time = rfc3339(Utc::now() - minutes(20));
    let bad_line =
        [r#"{"subjectId":"clr8","timestamp":""#.as_bytes(), time.as_bytes(), b"\",\"userAgent\":\"\xff\xfe\"}"]
            .concat();
    let bad = bad_line.clone();
    let vendor = Hostile::start(move |r| {
        let _ = r;
        let mut ndjson: Vec<u8> = Vec::new();
        for (i, (_, line)) in good.iter().enumerate() {
            if i == 3 {
                ndjson.extend_from_slice(&bad);
                ndjson.push(b'\n');
            }
            ndjson.extend_from_slice(line.as_bytes());
            ndjson.push(b'\n');
        }
        gzipped(gzip(&ndjson))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &astronomer_source(&vendor, ""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    // 2: the run dead-lettered (issue 18: `run --once` says so in its exit status).
    assert_eq!(status.code(), Some(2), "run --once: exit 2 for its dead letter ({status}):\n{log}");
    assert_eq!(vendor.requests(), 1, "one answer, taken:\n{log}");
    assert_lines_delivered_once(dir.path(), &lines, &log);
    let letters = dead_letters(&config).await;
    assert_eq!(letters.len(), 1, "one dead letter: {letters:?}");
    let letter = &letters[0];
    assert_eq!((letter["source"].as_str(), letter["origin"].as_str()), (Some(SOURCE), Some("source")), "{letter}");
    let reason = letter["reason"].as_str().unwrap();
    assert!(reason.contains("line 4 is not JSON") && reason.contains("unicode"), "reason: {reason}");
    let hex: String = bad_line.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(letter["raw_hex"].as_str(), Some(hex.as_str()), "the dead letter keeps the line's exact bytes");
}

/// 7. JSON nested a million deep: a page of a million unclosed `[` is a malformed page, asked
/// again; a record holding a million-deep (closed) array is dead-lettered while the records
/// beside it arrive. No stack overflow anywhere: the agent exits 0.
#[tokio::test]
async fn test_deeply_nested_json_does_not_crash_and_is_refused_clearly() {
    const DEPTH: usize = 1_000_000;
    let records = aitronos_records("deep", 6);
    // Third on the first page: a record whose metadata is a million arrays deep.
    let mut served = records.clone();
    let marker = "@@DEEP@@";
    let mut deep = aitronos_record("deep-nested", Utc::now() - minutes(60));
    deep["metadata"] = marker.into();
    served.insert(2, deep);
    let nested = format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    let vendor = Hostile::start(move |r| {
        if r.n == 0 {
            return json([&br#"{"items":["#[..], &vec![b'['; DEPTH]].concat());
        }
        let Reply::Answer { body: Body::Full(page), .. } = aitronos_answer(r, &served) else { unreachable!() };
        json(String::from_utf8(page).unwrap().replace(&format!("{marker:?}"), &nested).into_bytes())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));

    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    // 2: neither a crash nor a failure, only the dead letter of this run (issue 18).
    assert_eq!(
        status.code(),
        Some(2),
        "the agent must neither crash nor fail, and exits 2 for its dead letter ({status}):\n{}",
        &log[..log.len().min(5000)]
    );
    let bad = agent.lines_with(&["malformed page; retrying the same page", "source=hostile"]);
    assert_eq!(bad.len(), 1, "one malformed-page warning:\n{log}");
    assert!(bad[0].contains("not an Aitronos audit-log page") && bad[0].contains("EOF"), "{}", bad[0]);
    assert_delivered_once(dir.path(), &records, &log);
    let letters = dead_letters(&config).await;
    assert_eq!(letters.len(), 1, "the deep record is a dead letter");
    assert_eq!(letters[0]["key"].as_str(), Some("deep-nested"));
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("recursion limit"), "reason: {reason}");
    let raw = letters[0]["raw"].as_str().unwrap_or_default();
    assert!(raw.len() > 2 * DEPTH && raw.contains("deep-nested"), "the dead letter keeps the whole record");
}

/// 8. Gzip bombs on Astronomer's export: 1 GiB of zeros without a newline (one endless line),
/// then 1 GiB of blank lines, each about a megabyte on the wire. Decoding stops at the line
/// cap and at the decoded-size cap, memory stays bounded, the window is asked again or split,
/// and every record arrives once when good answers come.
#[tokio::test]
async fn test_gzip_bombs_stop_at_the_decompression_caps_with_bounded_memory() {
    let lines = astronomer_lines();
    let good = lines.clone();
    // A gzip member of 16 MiB, sent 64 times: 1 GiB decoded (MultiGzDecoder reads them all).
    let zeros = Bytes::from(gzip(&vec![0u8; 16 * MIB as usize]));
    let blank_line = [vec![b' '; 4095], vec![b'\n']].concat();
    let blanks = Bytes::from(gzip(&blank_line.repeat(4096)));
    let (blank_gate, good_gate) = (Gate::default(), Gate::default());
    let (g1, g2) = (blank_gate.clone(), good_gate.clone());
    let bomb = |piece: &Bytes| {
        let headers =
            vec![("Content-Type".into(), "application/x-ndjson".into()), ("Content-Encoding".into(), "gzip".into())];
        Reply::Answer {
            status: 200,
            headers,
            body: Body::Repeat { prefix: vec![], piece: piece.clone(), times: 64, content_length: None },
        }
    };
    let (zeros_wire, blanks_wire) = (zeros.len() * 64, blanks.len() * 64);
    let vendor = Hostile::start(move |r| match r.n {
        0 => bomb(&zeros),
        1 => Reply::Gated(g1.clone(), Box::new(bomb(&blanks))),
        2 => Reply::Gated(g2.clone(), Box::new(astronomer_answer(r, &good))),
        _ => astronomer_answer(r, &good),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &astronomer_source(&vendor, ""));
    let mut agent = Agent::start(&config, true);

    until("the agent to give up on the zeros bomb", RUN_LIMIT, || vendor.requests() >= 2).await;
    let after_zeros = agent.peak_rss();
    blank_gate.open();
    until("the agent to give up on the blank-lines bomb", RUN_LIMIT, || vendor.requests() >= 3).await;
    let after_blanks = agent.peak_rss();
    println!(
        "gzip bombs: peak RSS {} MiB after 1 GiB of zeros ({} KiB on the wire), {} MiB after 1 GiB of blank \
         lines ({} KiB on the wire)",
        after_zeros / MIB,
        zeros_wire / 1024,
        after_blanks / MIB,
        blanks_wire / 1024
    );
    good_gate.open();
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    assert!(after_zeros < 128 * MIB, "peak RSS {} MiB decoding a bomb of one endless line", after_zeros / MIB);
    assert!(after_blanks < 128 * MIB, "peak RSS {} MiB decoding a bomb of blank lines", after_blanks / MIB);

    let served = vendor.log();
    let window = |n: usize| (served[n].request.time("startDate"), served[n].request.time("endDate"));
    // The endless line: a broken answer, the same window asked again.
    let broken = agent.lines_with(&["broken answer; nothing of it stored", "source=hostile"]);
    assert_eq!(broken.len(), 1, "one broken-answer warning for the zeros:\n{log}");
    assert!(broken[0].contains("line 1 is longer than"), "{}", broken[0]);
    assert_eq!(window(1), window(0), "after the endless line the same window is asked again");
    // 512 MiB decoded: the window is split.
    let split = agent.lines_with(&["answer too large: asking half the window", "source=hostile"]);
    assert_eq!(split.len(), 1, "one split for the blank lines:\n{log}");
    assert!(split[0].contains("decoded answer too large"), "{}", split[0]);
    assert_eq!(window(2).0, window(1).0);
    assert!(window(2).1 < window(1).1, "the window after the blank lines is not split: {:?}", window(2));
    assert_lines_delivered_once(dir.path(), &lines, &log);
}

/// Issue 15 point 1: an Astronomer export that never finishes within `request_timeout`, twice
/// for the same window: the third request asks half of it (a timeout counts toward splitting a
/// whole-window vendor), the rest follows in later windows, and every line arrives once.
#[tokio::test]
async fn test_whole_window_timing_out_twice_is_split() {
    let lines = astronomer_lines();
    let good = lines.clone();
    let never = Gate::default();
    let vendor = Hostile::start(move |r| match r.n {
        0 | 1 => Reply::Gated(never.clone(), Box::new(astronomer_answer(r, &good))),
        _ => astronomer_answer(r, &good),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &astronomer_source(&vendor, "request_timeout = \"1s\""));
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    let served = vendor.log();
    let window = |n: usize| (served[n].request.time("startDate"), served[n].request.time("endDate"));
    assert_eq!(window(1), window(0), "after one timeout the same window is asked again:\n{log}");
    assert_eq!(window(2).0, window(0).0);
    assert!(
        window(2).1 < window(0).1,
        "after two timeouts the window is not split: {:?} then {:?}",
        window(0),
        window(2)
    );
    let split =
        agent.lines_with(&["asking half the window", "no complete answer within request_timeout", "source=hostile"]);
    assert_eq!(split.len(), 1, "one split for the two timeouts:\n{log}");
    assert_lines_delivered_once(dir.path(), &lines, &log);
}

/// Issue 15 point 8: a vendor whose `has_more` never turns false and repeats its last page.
/// The first repeat asks the window again from its first page (late inserts shift pages, so a
/// repeat may be a shifted page); the second ends the sweep with a warning: six requests, not
/// `max_pages`; the run succeeds (the window is complete and the checkpoint moved on) and each
/// record arrives once.
#[tokio::test]
async fn test_a_repeated_page_ends_the_sweep() {
    let records = aitronos_records("repeat", 10);
    let served = records.clone();
    let vendor = Hostile::start(move |r| {
        // skip=0: the first five; skip=5 and every later skip: the same second page, "more".
        let skip: usize = r.param("skip").parse().unwrap();
        let at = skip.min(5);
        json(aitronos_page(&served[at..at + 5], at, 5, true))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, "max_pages = 40"));
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert!(status.success(), "run --once failed ({status}):\n{log}");
    let skips: Vec<String> = vendor.log().iter().map(|s| s.request.param("skip").to_owned()).collect();
    assert_eq!(skips, ["0", "5", "10", "0", "5", "10"], "the repeated page must end the sweep:\n{log}");
    let warned = agent.lines_with(&["WARN", "the vendor sent a page it had sent before", "source=hostile"]);
    assert_eq!(warned.len(), 2, "one warning for each repeat:\n{log}");
    assert_eq!(agent.lines_with(&["ending this window's sweep", "source=hostile"]).len(), 1, "{log}");
    assert_delivered_once(dir.path(), &records, &log);
}

/// Issue 15 point 9: bounded work per answer. A 4 MB Aitronos page of `[1,1,…]` (two million
/// items that are not objects) and a page of 500 records when 5 were asked are malformed pages
/// (one warning each, asked again); a page whose three records have no id writes one log line
/// for its three dead letters. The agent's peak memory stays under 100 MiB.
#[tokio::test]
async fn test_a_page_of_millions_of_items_is_malformed_with_bounded_memory_and_logs() {
    let records = aitronos_records("bounded", 12);
    let mut served = records.clone();
    for i in 0..3 {
        let mut bad = aitronos_record(&format!("noid-{i}"), Utc::now() - minutes(61));
        bad.as_object_mut().unwrap().remove("id");
        served.insert(0, bad);
    }
    let many: Vec<_> = (0..500).map(|i| aitronos_record(&format!("many-{i:03}"), Utc::now() - minutes(50))).collect();
    let good_gate = Gate::default();
    let gate = good_gate.clone();
    let vendor = Hostile::start(move |r| match r.n {
        0 => {
            let ones = vec!["1"; 2_000_000].join(",");
            json(format!(r#"{{"items":[{ones}],"total":2000000,"skip":0,"limit":5,"has_more":false}}"#).into_bytes())
        }
        1 => json(aitronos_page(&many, 0, 5, false)),
        2 => Reply::Gated(gate.clone(), Box::new(aitronos_answer(r, &served))),
        _ => aitronos_answer(r, &served),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut agent = Agent::start(&config, true);
    until("the agent to give up on both hostile pages", RUN_LIMIT, || vendor.requests() >= 3).await;
    let peak = agent.peak_rss();
    println!("4 MB page of [1,1,…]: peak RSS {} MiB", peak / MIB);
    good_gate.open();
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    // 2: the run dead-lettered (issue 18: `run --once` says so in its exit status).
    assert_eq!(
        status.code(),
        Some(2),
        "run --once: exit 2 for its dead letters ({status}):\n{}",
        &log[..log.len().min(5000)]
    );
    assert!(peak < 100 * MIB, "peak RSS {} MiB reading a 4 MB page of two million items", peak / MIB);
    assert!(log.lines().count() < 100, "{} log lines for a few pages", log.lines().count());
    let bad = agent.lines_with(&["malformed page; retrying the same page", "source=hostile"]);
    assert_eq!(bad.len(), 2, "one malformed-page warning per hostile page:\n{log}");
    assert!(bad[0].contains("item 1 is not a JSON object: 1"), "{}", bad[0]);
    assert!(bad[1].contains("500 items on a page of 5"), "{}", bad[1]);
    let dead = agent.lines_with(&["dead-lettered", "source=hostile"]);
    assert_eq!(dead.len(), 1, "one line for a page's three dead letters:\n{log}");
    assert!(dead[0].contains("count=3") && dead[0].contains("no usable `id`"), "{}", dead[0]);
    assert_delivered_once(dir.path(), &records, &log);
    assert_eq!(dead_letters(&config).await.len(), 3, "each dead letter is kept");
}

/// Issue 15 point 10: a vendor that redirects to another origin (another port of 127.0.0.1)
/// is not followed: the other listener never sees a request (nor the `X-API-Key`), the run
/// fails with an error naming the source and both URLs, and the redirect is counted.
#[tokio::test]
async fn test_a_cross_origin_redirect_is_not_followed() {
    let thief = Hostile::start(|r| aitronos_answer(r, &[])).await;
    let target = thief.base_url();
    let vendor = Hostile::start(move |r| {
        let location = format!("{target}v1/organizations/{ORG}/audit-log?skip={}", r.param("skip"));
        status(302, &[("Location", location)], "")
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    let log = agent.log();
    assert_eq!(thief.requests(), 0, "the credential followed a redirect to another origin:\n{log}");
    assert!(!status.success(), "run --once must fail on a cross-origin redirect:\n{log}");
    let error = agent.lines_with(&["is not followed", "source hostile"]);
    assert!(!error.is_empty(), "no refused-redirect error:\n{log}");
    assert!(error[0].contains(&vendor.base_url()) && error[0].contains(&thief.base_url()), "{}", error[0]);
    assert!(error[0].contains("302"), "{}", error[0]);
    assert!(!log.contains("ak_hostile_test"), "the API key leaked into the log");
}

// The collection side at the edge, found by issue 15's adversarial review: each test failed on
// the change under review and is its regression test.

/// Point 8 beyond "the same page twice": a paging bug that alternates two pages (A, B, A, B, …)
/// with `has_more` forever. When only a page identical to the one *just before* ended the sweep,
/// the cycle was followed to `max_pages`, and then the source failed with "too many pages"; in
/// the daemon the stored sweep already held `pages = max_pages`, so every later attempt failed
/// the same way before sending anything (a stall, across restarts too).
#[tokio::test]
async fn test_an_a_b_a_b_page_cycle_ends_the_sweep() {
    let records = aitronos_records("cycle", 10);
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
