//! Receivers at the edge (issue 15 point 3, found by its adversarial review): what a proxy, a
//! load balancer or a collector answers that is not the protocol's own "yes" or "no", a lone
//! poison event, and a queue filled by dead letters. Each test that was a finding failed on the
//! code under review and is its regression test. Each test runs the daemon's worker loop (`run_sink`) with the real HEC / OTLP / Elasticsearch sink over a real
//! loopback socket, against a scripted HTTP receiver defined here (axum), so the answer can be
//! anything a proxy, a load balancer or a collector sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use harness::sinks::{ocsf_events, queue_with, sink_config, start_worker, store, uid};

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// What the scripted receiver answers one request body: (status, content type, body).
type Script = dyn FnMut(&[u8]) -> (u16, &'static str, String) + Send;

struct Scripted {
    script: Mutex<Box<Script>>,
    requests: Mutex<Vec<Vec<u8>>>,
}

async fn answer(State(s): State<Arc<Scripted>>, body: Bytes) -> Response {
    s.requests.lock().unwrap().push(body.to_vec());
    let (status, content_type, text) = (s.script.lock().unwrap())(&body);
    (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// A receiver on 127.0.0.1 answering every POST (any path) as `script` says.
async fn receiver(
    script: impl FnMut(&[u8]) -> (u16, &'static str, String) + Send + 'static,
) -> (SocketAddr, Arc<Scripted>) {
    let state = Arc::new(Scripted { script: Mutex::new(Box::new(script)), requests: Mutex::new(Vec::new()) });
    let app = Router::new()
        .route("/{*path}", post(answer))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

const HEC_OK: (u16, &str, &str) = (200, "application/json", r#"{"text":"Success","code":0}"#);
const HEC_500: (u16, &str, &str) = (500, "application/json", r#"{"text":"Internal server error","code":8}"#);

fn hec_lines(addr: SocketAddr, extra: &str) -> String {
    format!("url = \"http://{addr}\"\ntoken = \"00000000-0000-0000-0000-000000000000\"\ngzip = false\n{extra}")
}

fn otlp_lines(addr: SocketAddr) -> String {
    format!("endpoint = \"http://{addr}/v1/logs\"\nprotocol = \"http_json\"\ngzip = false\n")
}

/// Point 3 / EDGES "a login page that answers 200 with HTML": a proxy in front of the OTLP
/// collector (an SSO gateway, a captive portal) answers 200 with an HTML page. HEC now requires
/// its `code 0`; the OTLP sink takes any 2xx as acceptance (`otlp.rs` `export_http`:
/// `if status.is_success() { … Answer::Accepted }` whatever the content type), so the whole
/// queue is acknowledged and exists nowhere.
#[test]
fn otlp_a_200_html_page_from_a_proxy_is_not_acceptance() {
    let events = &ocsf_events()[..60];
    run(async {
        let (addr, _rx) = receiver(|_| (200, "text/html", "<html><body>Please sign in</body></html>".into())).await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let worker = start_worker(sink_config(dir.path(), "otlp", &otlp_lines(addr)), &queue);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = worker.abort().await;
        assert_eq!(
            stats.events, 0,
            "a 200 text/html login page acknowledged {} events as delivered: {stats:?}",
            stats.events
        );
    });
}

/// Point 3 "a receiver outage of any length moves nothing to dead letters": a reverse proxy in
/// front of the collector that answers every request with its own 400 HTML page (nginx's "The
/// plain HTTP request was sent to HTTPS port", "Request Header Or Cookie Too Large", a WAF)
/// refuses the *request*, not the data. `verdict` maps every HTTP 400 to `Refused` without
/// looking at the body, and `Delivering::deliver` bisects refusals without any back-off and
/// dead-letters each event refused alone: the whole backlog goes to dead letters at full speed.
/// (HEC, by contrast, classifies a 400 without a HEC code as an operator error and keeps the data.)
#[test]
fn otlp_a_proxy_400_page_for_every_request_dead_letters_nothing() {
    let events = &ocsf_events()[..60];
    run(async {
        let page = "<html><head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\
                    <body><center><h1>400 Bad Request</h1></center><hr><center>nginx</center></body></html>";
        let (addr, _rx) = receiver(move |_| (400, "text/html", page.into())).await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let worker = start_worker(sink_config(dir.path(), "otlp", &otlp_lines(addr)), &queue);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = worker.abort().await;
        let letters = queue.dead_letters(1000).await.unwrap();
        assert_eq!(
            (stats.dead_lettered, letters.len()),
            (0, 0),
            "a proxy's 400 page for every request dead-lettered the backlog: {stats:?}"
        );
    });
}

/// Point 3 "a lone poison event: does it stall the sink forever?" — yes. An event that makes
/// HEC answer 500 (code 8) is dead-lettered only on proof that the receiver takes *other events
/// of the same batch*; when it was read alone (a daemon's trickle: one event stored, the worker
/// woke, read a batch of one), there is no such proof, the batch is resent forever, and every
/// event stored after it waits behind it. The batch is never re-read to take the later events in
/// (`Delivering::deliver`: `parts.push_back(part)` with `delivered_event == None`).
#[test]
fn hec_a_lone_poison_event_does_not_stall_the_sink_forever() {
    let events = &ocsf_events()[..10];
    let poison = uid(&events[0]);
    run(async {
        let p = poison.clone();
        let (addr, _rx) = receiver(move |body| {
            let text = String::from_utf8_lossy(body);
            let (s, c, b) = if text.contains(&p) { HEC_500 } else { HEC_OK };
            (s, c, b.into())
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        // The poison event arrives alone; nine more arrive a moment later.
        let queue = queue_with(dir.path(), &["hec"], &events[..1]).await;
        let worker = start_worker(sink_config(dir.path(), "hec", &hec_lines(addr, "")), &queue);
        tokio::time::sleep(Duration::from_millis(300)).await;
        store(&queue, &events[1..]).await;
        // Back-off is 20 ms .. 200 ms: 10 s is dozens of attempts.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let stats = worker.abort().await;
        assert_eq!(
            stats.events + stats.dead_lettered,
            10,
            "the sink is stuck on one poison event; the 9 good events behind it were never sent: {stats:?}"
        );
    });
}

/// Same stall without any timing: `batch_max_events = 1` (a valid setting) makes every batch a
/// lone event, so any event drawing a 500 blocks the sink for good.
#[test]
fn hec_a_poison_event_with_batch_max_events_1_does_not_stall_the_sink_forever() {
    let events = &ocsf_events()[..10];
    let poison = uid(&events[2]);
    run(async {
        let (addr, _rx) = receiver(move |body| {
            let (s, c, b) = if String::from_utf8_lossy(body).contains(&poison) { HEC_500 } else { HEC_OK };
            (s, c, b.into())
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["hec"], events).await;
        let mut cfg = sink_config(dir.path(), "hec", &hec_lines(addr, ""));
        cfg.batch_max_events = 1; // as `batch_max_events = 1` in the sink's table
        let worker = start_worker(cfg, &queue);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let stats = worker.abort().await;
        assert_eq!(stats.events + stats.dead_lettered, 10, "stuck on event 3 of 10: {stats:?}");
    });
}

/// Point 3 "receivers that fail at random" / DST invariant "nothing is dead-lettered that the
/// model did not mark as poison": two HEC indexers behind a load balancer, one of them broken
/// (every request it gets answers 500 code 8), i.e. half the requests fail at random whatever
/// they hold. Bisection isolates single good events; each needs only three unlucky draws
/// (`POISON_STRIKES`, with a liveness resend in between) to be dead-lettered, and after the
/// batch's first "yes" (`accepted == 1`) strikes are never forgotten again.
#[test]
fn hec_a_load_balancer_with_one_broken_indexer_dead_letters_nothing() {
    let events = &ocsf_events()[..240];
    run(async {
        let mut rng = fastrand::Rng::with_seed(15);
        let (addr, _rx) = receiver(move |_| {
            let (s, c, b) = if rng.bool() { HEC_500 } else { HEC_OK };
            (s, c, b.into())
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["hec"], events).await;
        let worker = start_worker(sink_config(dir.path(), "hec", &hec_lines(addr, "")), &queue);
        let stats = worker.drain().await;
        let letters = queue.dead_letters(1000).await.unwrap();
        assert_eq!(
            (stats.dead_lettered, letters.len()),
            (0, 0),
            "good events dead-lettered by a receiver failing half its requests at random: {stats:?}"
        );
    });
}

/// Point 11, "can dead letters now stall collection forever? is the operator told?": dead
/// letters count against `queue.max_bytes`, so once a sink has dead-lettered more than the cap
/// (one proxy answering 400, above, does it in seconds) every source stops fetching for good:
/// no sink will ever free that room, `run --once` never ends (reproduced on the binary: killed
/// after 15 s, log "queue is full: fetching paused … queued_bytes=1867270 max_bytes=102400"),
/// and the log says neither that dead letters fill it nor how to get out (stop the agent,
/// `queue purge-dead-letters` or `replay`). Worse, `auditrelay queue stats` — where an operator
/// looks — reports the queue empty: "0 B of 1.0 KiB cap (0.0%)" (`ops::render_stats` shows
/// only event bytes).
#[test]
fn queue_stats_shows_the_cap_taken_by_dead_letters() {
    use auditrelay::queue::{Queue, QueueOptions, RefusedEvent};
    let dir = tempfile::tempdir().unwrap();
    let events = &ocsf_events()[..20];
    run(async {
        let queue =
            Queue::open(&dir.path().join("state"), QueueOptions { max_bytes: 1024, sinks: vec!["file".into()] })
                .unwrap();
        store(&queue, events).await;
        let batch = queue.read_batch("file", 100, 1 << 20).await.unwrap();
        let refused = batch.iter().map(|e| RefusedEvent { id: e.id, reason: "refused (test)".into() }).collect();
        queue.ack_refusing("file", batch.last().unwrap().id, refused).await.unwrap();
        assert!(queue.is_full(), "dead letters over the cap: the agent's sources stop fetching");
        queue.close().await.unwrap();
    });
    let config = dir.path().join("a.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[queue]\nmax_bytes = \"1 KiB\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
             organization_id = \"ORG_A\"\napi_key = \"k\"\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {:?}\n",
            dir.path().join("state").display().to_string(),
            dir.path().join("out.ndjson").display().to_string()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["queue", "stats", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cap_line = stdout.lines().find(|l| l.contains("cap")).unwrap_or("");
    assert!(
        !cap_line.contains("(0.0%)"),
        "the agent is stalled on a full queue, but `queue stats` says: {cap_line:?}\n{stdout}"
    );
}

/// Issue 19 point 2, through the worker loop: a cluster that answers `_bulk` 200 with item
/// errors (every third new item 429 `es_rejected_execution_exception` once, one event 400
/// `document_parsing_exception` always), after a first whole-request 503. Every event but the
/// unmappable one is indexed exactly once; the unmappable one is dead-lettered with Elastic's
/// reason; no item Elasticsearch already took is sent again (no 409 at all).
#[test]
fn elasticsearch_item_errors_resend_only_those_items_and_dead_letter_the_unmappable_one() {
    run(async {
        let events = &ocsf_events()[..120];
        let poison = uid(&events[37]);
        let indexed: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let (sent_twice, conflicts) = (Arc::new(Mutex::new(0u32)), Arc::new(Mutex::new(0u32)));
        let (seen, twice, conflict, p) =
            (Arc::clone(&indexed), Arc::clone(&sent_twice), Arc::clone(&conflicts), poison.clone());
        let mut calls = 0;
        let mut rejected = std::collections::HashSet::new();
        let (addr, _state) = receiver(move |body| {
            calls += 1;
            if calls == 1 {
                return (503, "application/json", r#"{"error":"unavailable"}"#.to_owned());
            }
            let text = std::str::from_utf8(body).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let mut items = Vec::new();
            for (n, pair) in lines.chunks(2).enumerate() {
                let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
                let doc: serde_json::Value = serde_json::from_str(pair[1]).unwrap();
                assert_eq!(action["create"]["_index"], "logs-auditrelay.ocsf-default");
                let id = action["create"]["_id"].as_str().unwrap().to_owned();
                assert_eq!(doc["ocsf"]["metadata"]["uid"], id.as_str());
                let mut seen = seen.lock().unwrap();
                let item = if id == p {
                    r#"{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [ocsf.time]"}}}"#
                } else if seen.contains(&id) {
                    *conflict.lock().unwrap() += 1;
                    r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}"#
                } else if n % 3 == 0 && rejected.insert(id.clone()) {
                    r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}"#
                } else {
                    if rejected.contains(&id) {
                        *twice.lock().unwrap() += 1;
                    }
                    seen.insert(id);
                    r#"{"create":{"status":201}}"#
                };
                items.push(item);
            }
            (200, "application/json", format!("{{\"errors\":true,\"items\":[{}]}}", items.join(",")))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["elasticsearch"], events).await;
        let cfg = sink_config(dir.path(), "elasticsearch", &format!("hosts = [\"http://{addr}\"]\ngzip = false"));
        let stats = start_worker(cfg, &queue).drain().await;
        let indexed = indexed.lock().unwrap().clone();
        assert_eq!(indexed.len(), 119, "every event but the unmappable one");
        assert!(!indexed.contains(&poison));
        assert_eq!(*conflicts.lock().unwrap(), 0, "an item already taken was sent again");
        assert!(*sent_twice.lock().unwrap() > 0, "the 429 items were resent");
        let dead = queue.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(
            dead[0].reason.contains("document_parsing_exception") && dead[0].reason.contains("ocsf.time"),
            "{dead:?}"
        );
        assert_eq!((stats.events, stats.dead_lettered), (119, 1), "{stats:?}");
        assert_eq!(queue.backlog("elasticsearch").await.unwrap(), 0);
    });
}

/// Issue 19, item 5xx: one document the cluster fails on every time (an ingest pipeline that
/// throws on it answers its item 500) while it takes the rest. Resent as "busy" forever, it held
/// the whole sink back; it is now a server error the loop isolates, and dead-lettered alone once
/// the cluster has proved again and again that it takes other documents. Items answered 503
/// (`unavailable_shards_exception`, an outage) are still only waited for.
#[test]
fn elasticsearch_an_item_the_cluster_fails_on_every_time_is_isolated_not_a_stall() {
    run(async {
        let events = &ocsf_events()[..60];
        let poison = uid(&events[11]);
        let indexed: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let (seen, p) = (Arc::clone(&indexed), poison.clone());
        let mut calls = 0;
        let (addr, _state) = receiver(move |body| {
            calls += 1;
            let text = std::str::from_utf8(body).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let mut items = Vec::new();
            for pair in lines.chunks(2) {
                let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap();
                let id = action["create"]["_id"].as_str().unwrap().to_owned();
                let mut seen = seen.lock().unwrap();
                let item = if calls <= 2 {
                    r#"{"create":{"status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}}"#
                } else if id == p {
                    r#"{"create":{"status":500,"error":{"type":"illegal_state_exception","reason":"pipeline failed on this document"}}}"#
                } else if !seen.insert(id) {
                    r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"document already exists"}}}"#
                } else {
                    r#"{"create":{"status":201}}"#
                };
                items.push(item);
            }
            (200, "application/json", format!("{{\"errors\":true,\"items\":[{}]}}", items.join(",")))
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["elasticsearch"], events).await;
        let cfg = sink_config(dir.path(), "elasticsearch", &format!("hosts = [\"http://{addr}\"]\ngzip = false"));
        let stats = start_worker(cfg, &queue).drain().await;
        let indexed = indexed.lock().unwrap().clone();
        assert_eq!(indexed.len(), 59, "every event but the one the cluster fails on");
        let dead = queue.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        assert!(dead[0].reason.contains("illegal_state_exception"), "{dead:?}");
        assert_eq!((stats.events, stats.dead_lettered), (59, 1), "{stats:?}");
        assert_eq!(queue.backlog("elasticsearch").await.unwrap(), 0);
    });
}
