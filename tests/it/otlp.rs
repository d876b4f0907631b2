//! The OTLP sink against a real OTLP receiver built on the official protobuf definitions
//! (`tests/it/otlp_receiver/mod.rs`: tonic gRPC and axum HTTP, on 127.0.0.1). The first test
//! exercises the receiver with hand-made requests, so a failure in a sink test can be told apart
//! from a broken receiver; the rest run the agent's sink, or the daemon's worker loop over a
//! queue of real OCSF events, against it, in real time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::otlp_receiver;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditrelay::config::{SinkConfig, SinkKind};
use auditrelay::queue::QueuedEvent;
use auditrelay::sinks::otlp::OtlpSink;
use auditrelay::sinks::{Failure, Sink, Stamped};
use harness::sinks::{assert_nothing_acknowledged, ocsf_events, queue_with, sink_config, start_worker, uid};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use otlp_receiver::{Behaviour, Export, Receiver, Reply, Transport, make_pki};
use prost::Message as _;
use serde_json::{Value, json};
use tonic_types::StatusExt as _;

const HOST: &str = "collector-1.example.test";
const API_KEY: &str = "test-key-123";

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The sink's TOML lines for `protocol` against `receiver`, with a custom header and a fixed
/// host name, plus `extra`.
fn lines(receiver: &Receiver, protocol: &str, extra: &str) -> String {
    let endpoint = if protocol == "grpc" { receiver.grpc_url() } else { receiver.http_url() };
    format!(
        "endpoint = {endpoint:?}\nprotocol = {protocol:?}\nhostname = \"{HOST}\"\n\
         headers = {{ x-api-key = \"{API_KEY}\" }}\n{extra}\n"
    )
}

fn transport(protocol: &str) -> Transport {
    match protocol {
        "grpc" => Transport::Grpc,
        "http_protobuf" => Transport::HttpProtobuf,
        "http_json" => Transport::HttpJson,
        other => panic!("{other}"),
    }
}

/// The agent's OTLP sink itself (not the worker loop), to look at one answer.
fn otlp_sink(cfg: &SinkConfig) -> OtlpSink {
    let SinkKind::Otlp(settings) = &cfg.kind else { panic!("not an OTLP sink: {cfg:?}") };
    OtlpSink::new(settings).unwrap()
}

fn queued(events: &[Vec<u8>]) -> Vec<QueuedEvent> {
    events.iter().zip(1..).map(|(body, id)| QueuedEvent { id, body: body.clone(), collected_ms: now_ms() }).collect()
}

/// An `AnyValue` back as JSON: kvlist → object, array → array, empty → null.
fn to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(to_json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, to_json))).collect(),
        ),
        Some(other) => panic!("unexpected AnyValue {other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, Value> {
    list.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, to_json))).collect()
}

/// Every log record of the accepted exports.
fn records(exports: &[Export]) -> Vec<&LogRecord> {
    exports
        .iter()
        .filter(|e| e.reply == Reply::Accepted)
        .flat_map(|e| &e.request.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .collect()
}

/// OCSF severity_id → OTLP (number, text), as the sink documents it.
fn expected_severity(id: Option<u64>) -> (i32, &'static str) {
    match id {
        Some(0) => (0, "Unknown"),
        Some(1) => (9, "Informational"),
        Some(2) => (10, "Low"),
        Some(3) => (13, "Medium"),
        Some(4) => (17, "High"),
        Some(5) => (21, "Critical"),
        Some(6) => (23, "Fatal"),
        Some(99) => (0, "Other"),
        _ => (0, ""),
    }
}

#[test]
fn the_receiver_decodes_hand_made_requests_and_injects_faults() {
    run(async {
        let receiver = Receiver::start(None).await;
        let record = LogRecord {
            time_unix_nano: 1_795_292_810_597_000_000,
            severity_number: 9,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }),
            event_name: "ocsf.test".into(),
            ..LogRecord::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records: vec![record.clone()], ..ScopeLogs::default() }],
                ..ResourceLogs::default()
            }],
        };

        // gRPC, gzip, then busy: UNAVAILABLE with RetryInfo.
        let mut client = LogsServiceClient::connect(receiver.grpc_url())
            .await
            .unwrap()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip);
        client.export(request.clone()).await.unwrap();
        receiver.set(Behaviour::Busy { times: 1, retry_after: Duration::from_millis(1500) });
        let status = client.export(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        let retry = status.get_details_retry_info().expect("RetryInfo in the status details");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(1500)));

        // HTTP/JSON, gzip by hand, the OTLP/JSON text a non-Rust client would send.
        let text = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1795292810597000000",
            "severityNumber":9,"eventName":"ocsf.test","body":{"stringValue":"hello"},"unknownField":1}]}]}]}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
        let http = reqwest::Client::new();
        let url = format!("{}/v1/logs", receiver.http_url());
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");

        // HTTP/protobuf, busy: 503, Retry-After, a google.rpc.Status body.
        receiver.set(Behaviour::Busy { times: 1, retry_after: Duration::from_millis(1500) });
        let response = http
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2", "whole seconds, rounded up");
        let status = tonic_types::Status::decode(response.bytes().await.unwrap()).unwrap();
        assert_eq!((status.code, status.message.as_str()), (14, "receiver busy (injected)"));
        assert_eq!(status.details.len(), 1, "the RetryInfo");

        let exports = receiver.exports();
        let got: Vec<_> = exports.iter().map(|e| (e.transport, e.gzip, e.reply.clone())).collect();
        let busy = Reply::Busy(Duration::from_millis(1500));
        assert_eq!(
            got,
            [
                (Transport::Grpc, true, Reply::Accepted),
                (Transport::Grpc, true, busy.clone()),
                (Transport::HttpJson, true, Reply::Accepted),
                (Transport::HttpProtobuf, false, busy),
            ]
        );
        for e in &exports {
            assert_eq!(e.request, request, "{:?} decoded the same request", e.transport);
        }
    });
}

/// Delivers every simulated OCSF event through the worker loop over `protocol` and checks each
/// LogRecord field against its event.
fn delivers_every_field(protocol: &str, gzip: bool, body: &str) {
    let events = ocsf_events();
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let receiver = Receiver::start(None).await;
        let before = now_ms();
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let after = now_ms();
        let cfg =
            sink_config(dir.path(), "otlp", &lines(&receiver, protocol, &format!("gzip = {gzip}\nbody = {body:?}")));
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!((stats.events, stats.retries, stats.dead_lettered), (events.len() as u64, 0, 0), "{stats:?}");
        assert_eq!(queue.backlog("otlp").await.unwrap(), 0);

        let exports = receiver.exports();
        assert_eq!(exports.len(), events.len().div_ceil(50), "one request per batch of 50");
        for e in &exports {
            assert_eq!((e.transport, e.gzip, &e.reply), (transport(protocol), gzip, &Reply::Accepted));
            assert_eq!(e.headers.get("x-api-key").map(String::as_str), Some(API_KEY), "the custom header");
            assert!(e.headers["user-agent"].starts_with("auditrelay/"), "{:?}", e.headers["user-agent"]);
            assert_eq!(e.request.resource_logs.len(), 1);
            let resource_logs = &e.request.resource_logs[0];
            let resource = attributes(&resource_logs.resource.as_ref().unwrap().attributes);
            let expected = HashMap::from([
                ("service.name".to_owned(), json!("auditrelay")),
                ("service.version".to_owned(), json!(env!("CARGO_PKG_VERSION"))),
                ("host.name".to_owned(), json!(HOST)),
            ]);
            assert_eq!(resource, expected);
            assert_eq!(resource_logs.scope_logs.len(), 1);
            let scope = resource_logs.scope_logs[0].scope.as_ref().unwrap();
            assert_eq!((scope.name.as_str(), scope.version.as_str()), ("auditrelay", env!("CARGO_PKG_VERSION")));
        }

        let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
        let records = records(&exports);
        assert_eq!(records.len(), events.len());
        let mut seen = HashMap::new();
        for r in records {
            let attrs = attributes(&r.attributes);
            let uid = attrs["ocsf.uid"].as_str().unwrap().to_owned();
            *seen.entry(uid.clone()).or_insert(0) += 1;
            let raw = by_uid[&uid];
            let event: Value = serde_json::from_slice(raw).unwrap();

            assert_eq!(r.time_unix_nano, event["time"].as_u64().unwrap() * 1_000_000, "time of {uid}");
            let observed_ms = (r.observed_time_unix_nano / 1_000_000) as i64;
            assert!((before..=after).contains(&observed_ms), "observed time {observed_ms} is when it was queued");
            assert_eq!(r.observed_time_unix_nano % 1_000_000, 0);
            let (number, text) = expected_severity(event["severity_id"].as_u64());
            assert_eq!((r.severity_number, r.severity_text.as_str()), (number, text), "severity of {uid}");
            let class_name = event["class_name"].as_str().unwrap();
            assert_eq!(r.event_name, format!("ocsf.{}", class_name.to_lowercase().replace(' ', "_")));
            assert!(r.event_name.starts_with("ocsf.") && !r.event_name.contains(' '), "{}", r.event_name);

            let mut expected = HashMap::from([
                ("ocsf.class_uid".to_owned(), event["class_uid"].clone()),
                ("ocsf.class_name".to_owned(), event["class_name"].clone()),
                ("ocsf.activity_id".to_owned(), event["activity_id"].clone()),
                ("ocsf.severity_id".to_owned(), event["severity_id"].clone()),
                ("ocsf.uid".to_owned(), json!(uid)),
                ("vendor".to_owned(), event["metadata"]["product"]["vendor_name"].clone()),
            ]);
            if let Some(tenant) = event["metadata"].get("tenant_uid") {
                expected.insert("tenant".to_owned(), tenant.clone());
            }
            assert_eq!(attrs, expected, "attributes of {uid}");
            assert!(r.attributes.iter().all(|kv| kv.value.is_some()));
            let class_uid = &r.attributes.iter().find(|kv| kv.key == "ocsf.class_uid").unwrap().value;
            assert!(matches!(class_uid.as_ref().unwrap().value, Some(any_value::Value::IntValue(_))), "an int");

            let body_value = r.body.as_ref().unwrap();
            match body {
                "structured" => {
                    assert!(matches!(body_value.value, Some(any_value::Value::KvlistValue(_))));
                    assert_eq!(to_json(body_value), event, "the kvlist body is the OCSF event of {uid}");
                }
                _ => {
                    let text = std::str::from_utf8(raw).unwrap();
                    assert_eq!(body_value.value, Some(any_value::Value::StringValue(text.to_owned())));
                }
            }
        }
        assert_eq!(seen.len(), events.len(), "every event");
        assert!(seen.values().all(|n| *n == 1), "once");
    });
}

#[test]
fn grpc_gzip_delivers_every_field() {
    delivers_every_field("grpc", true, "structured");
}

#[test]
fn grpc_plain_delivers_the_json_string_body() {
    delivers_every_field("grpc", false, "json_string");
}

#[test]
fn http_protobuf_plain_delivers_every_field() {
    delivers_every_field("http_protobuf", false, "structured");
}

#[test]
fn http_protobuf_gzip_delivers_the_json_string_body() {
    delivers_every_field("http_protobuf", true, "json_string");
}

#[test]
fn http_json_gzip_delivers_every_field() {
    delivers_every_field("http_json", true, "structured");
}

#[test]
fn http_json_plain_delivers_the_json_string_body() {
    delivers_every_field("http_json", false, "json_string");
}

/// The receiver is busy once and asks for `delay`: the sink reports a transient error carrying
/// the delay, and the worker resends after waiting at least that long (its own back-off is
/// 20–200 ms, so only the receiver's request explains the wait).
fn busy_is_retried_after_the_asked_delay(protocol: &str, delay: Duration, asked: Duration, says: &str) {
    let events = &ocsf_events()[..30];
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let receiver = Receiver::start(None).await;
        let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));

        receiver.set(Behaviour::Busy { times: 1, retry_after: delay });
        let err = otlp_sink(&cfg).send(&Stamped::new(&queued(events), now_ms())).await.unwrap_err();
        assert_eq!((err.class, err.retry_after), (Failure::Transient, Some(asked)), "{err}");
        for piece in [says, "receiver busy (injected)", &format!("127.0.0.1:{}", cfg_port(&receiver, protocol))] {
            assert!(err.message.contains(piece), "{err} lacks {piece:?}");
        }
        receiver.clear();

        receiver.set(Behaviour::Busy { times: 1, retry_after: delay });
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!((stats.events, stats.retries, stats.dead_lettered), (events.len() as u64, 1, 0), "{stats:?}");
        let exports = receiver.exports();
        let replies: Vec<_> = exports.iter().map(|e| e.reply.clone()).collect();
        assert_eq!(replies, [Reply::Busy(delay), Reply::Accepted]);
        assert_eq!(exports[0].request, exports[1].request, "the same batch, resent");
        let waited = exports[1].at - exports[0].at;
        assert!(waited >= asked, "resent after {waited:?}, asked {asked:?}");
        assert!(waited < asked + Duration::from_secs(2), "resent after {waited:?}, asked {asked:?}");
    });
}

fn cfg_port(receiver: &Receiver, protocol: &str) -> String {
    let url = if protocol == "grpc" { receiver.grpc_url() } else { receiver.http_url() };
    url.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn grpc_unavailable_with_retry_info_is_resent_after_the_asked_delay() {
    let delay = Duration::from_millis(700);
    busy_is_retried_after_the_asked_delay("grpc", delay, delay, "gRPC status Unavailable");
}

#[test]
fn http_503_with_retry_after_is_resent_after_the_asked_delay() {
    let delay = Duration::from_millis(700);
    busy_is_retried_after_the_asked_delay(
        "http_protobuf",
        delay,
        Duration::from_secs(1),
        "HTTP 503 Service Unavailable",
    );
}

#[test]
fn a_partial_success_is_acknowledged_and_counted_never_resent() {
    let events = &ocsf_events()[..70];
    run(async {
        let receiver = Receiver::start(None).await;
        receiver.set(Behaviour::PartialSuccess { rejected: 3, message: "3 log records too old".into() });
        for protocol in ["grpc", "http_protobuf", "http_json"] {
            receiver.clear();
            let dir = tempfile::tempdir().unwrap();
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let delivery = otlp_sink(&cfg).send(&Stamped::new(&queued(&events[..10]), now_ms())).await.unwrap();
            assert_eq!((delivery.rejected, delivery.refused.len()), (3, 0), "{protocol}");

            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let stats = start_worker(cfg, &queue).drain().await;
            // 70 events: batches of 50 and 20, 3 rejected in each.
            assert_eq!((stats.events, stats.rejected, stats.retries), (70, 6, 0), "{protocol}: {stats:?}");
            assert_eq!(queue.backlog("otlp").await.unwrap(), 0);
            assert_eq!(receiver.exports().len(), 3, "{protocol}: the direct send and two batches, none resent");
        }
    });
}

/// Refused credentials: the sink pauses as a configuration failure and keeps every event; once
/// the receiver takes the key, everything is delivered.
fn refused_credentials_keep_the_data_until_fixed(protocol: &str, says: &str) {
    let events = &ocsf_events()[..60];
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let receiver = Receiver::start(None).await;
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));

        receiver.set(Behaviour::Unauthenticated);
        let err = Sink::open(&cfg).unwrap().probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config, "{err}");
        for piece in [says, "missing or wrong API key (injected)", "API key"] {
            assert!(err.message.contains(piece), "{err} lacks {piece:?}");
        }
        assert!(!err.message.contains(API_KEY), "{err}");
        assert_nothing_acknowledged(cfg.clone(), &queue, events.len()).await;

        receiver.set(Behaviour::PermissionDenied);
        let err = Sink::open(&cfg).unwrap().probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config, "{err}");
        assert_nothing_acknowledged(cfg.clone(), &queue, events.len()).await;
        assert!(queue.dead_letters(10).await.unwrap().is_empty());

        receiver.set(Behaviour::Accept);
        receiver.clear();
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!((stats.events, stats.dead_lettered), (events.len() as u64, 0), "{stats:?}");
        assert_eq!(records(&receiver.exports()).len(), events.len());
    });
}

#[test]
fn http_401_and_403_pause_the_sink_and_keep_the_data() {
    refused_credentials_keep_the_data_until_fixed("http_protobuf", "HTTP 401 Unauthorized");
}

#[test]
fn grpc_unauthenticated_and_permission_denied_pause_the_sink_and_keep_the_data() {
    refused_credentials_keep_the_data_until_fixed("grpc", "gRPC status Unauthenticated");
}

#[test]
fn refused_data_is_dead_lettered_with_the_receivers_reason() {
    let events = &ocsf_events()[..60];
    run(async {
        let receiver = Receiver::start(None).await;
        receiver.set(Behaviour::BadData);
        for (protocol, says) in [
            ("grpc", "gRPC status InvalidArgument: log record 0: invalid body (injected)"),
            ("http_protobuf", "HTTP 400 Bad Request: log record 0: invalid body (injected)"),
            ("http_json", "HTTP 400 Bad Request: log record 0: invalid body (injected)"),
        ] {
            receiver.clear();
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let stats = start_worker(cfg, &queue).drain().await;
            assert_eq!((stats.events, stats.dead_lettered, stats.retries), (0, 60, 0), "{protocol}: {stats:?}");
            // Refused whole, each batch is bisected down to single events, each refused once.
            let exports = receiver.exports();
            assert!(exports.iter().all(|e| e.reply == Reply::BadData), "{protocol}");
            let size = |e: &Export| -> usize {
                e.request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
            };
            let singles = exports.iter().filter(|e| size(e) == 1).count();
            assert_eq!(singles, 60, "{protocol}: each event refused alone, once");
            let letters = queue.dead_letters(100).await.unwrap();
            assert_eq!(letters.len(), events.len());
            let uids: std::collections::HashSet<String> = letters.iter().map(|l| uid(&l.raw)).collect();
            assert_eq!(uids.len(), events.len(), "every event, with its body");
            for l in &letters {
                assert_eq!(l.sink.as_deref(), Some("otlp"));
                assert!(l.reason.contains(says), "{protocol}: {}", l.reason);
                assert!(l.reason.contains(&format!("127.0.0.1:{}", cfg_port(&receiver, protocol))), "{}", l.reason);
            }
        }
    });
}

/// 413 / `RESOURCE_EXHAUSTED` without `RetryInfo`: the batch goes again in halves until each
/// fits; nothing is dead-lettered, nothing sent twice.
#[test]
fn a_request_too_large_is_sent_again_in_halves() {
    let events = &ocsf_events()[..50];
    run(async {
        let receiver = Receiver::start(None).await;
        receiver.set(Behaviour::TooLarge { max_records: 12 });
        for protocol in ["grpc", "http_protobuf", "http_json"] {
            receiver.clear();
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let stats = start_worker(cfg, &queue).drain().await;
            assert_eq!((stats.events, stats.dead_lettered), (50, 0), "{protocol}: {stats:?}");
            // Before the receiver took a first request a "too large" is not believed (a quota
            // answers it too): those halvings wait the back-off as server errors.
            assert_eq!(stats.retries, stats.errors_server, "{protocol}: {stats:?}");
            let exports = receiver.exports();
            let accepted: Vec<&Export> = exports.iter().filter(|e| e.reply == Reply::Accepted).collect();
            let delivered: Vec<&LogRecord> = accepted.iter().flat_map(|e| records(std::slice::from_ref(*e))).collect();
            assert_eq!(delivered.len(), 50, "{protocol}: every event once");
            assert!(exports.iter().any(|e| e.reply == Reply::TooLarge), "{protocol}");
        }
    });
}

/// Regression (the HEC 413 review, same hazard here): a batch answered 413 /
/// `RESOURCE_EXHAUSTED` was split inside `OtlpSink::send`; when the receiver took the first half
/// and then answered busy, `send` failed the whole batch and the loop sent all of it again, so
/// the first half arrived twice, silently. Each part taken is acknowledged as it is taken and
/// only the rest is sent again.
#[tokio::test(start_paused = true)]
async fn a_split_batch_whose_second_half_meets_a_busy_receiver_delivers_the_first_half_once() {
    let events = &ocsf_events()[..50];
    let receiver = Receiver::start(None).await;
    for protocol in ["grpc", "http_protobuf", "http_json"] {
        receiver.clear();
        let retry_after = Duration::from_secs(1);
        receiver.set(Behaviour::TooLargeThenBusy { max_records: 30, accepts: 1, retry_after });
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
        let stats = start_worker(cfg, &queue).drain().await;

        let replies: Vec<Reply> = receiver.exports().iter().map(|e| e.reply.clone()).collect();
        assert_eq!(replies[..3], [Reply::TooLarge, Reply::Accepted, Reply::Busy(retry_after)], "{protocol}");
        assert_eq!((stats.events, stats.dead_lettered), (50, 0), "{protocol}: {stats:?}");
        assert!(queue.dead_letters(10).await.unwrap().is_empty(), "{protocol}: nothing dead-lettered");
        let seen = delivered_uids(&receiver);
        let missing = events.iter().filter(|e| !seen.contains_key(&uid(e))).count();
        let twice = seen.values().filter(|n| **n > 1).count();
        assert_eq!((missing, twice), (0, 0), "{protocol}: (missing, delivered twice); replies {replies:?}");
        // Only the half not yet taken is sent again.
        assert_eq!(replies.len(), 4, "{protocol}: {replies:?}");
    }
}

#[test]
fn an_event_that_is_not_an_event_is_dead_lettered_and_the_rest_delivered() {
    let mut events = ocsf_events()[..10].to_vec();
    events.insert(4, br#"{"time":"yesterday","metadata":{"uid":"not-an-event"}}"#.to_vec());
    let dir = tempfile::tempdir().unwrap();
    run(async {
        let receiver = Receiver::start(None).await;
        let queue = queue_with(dir.path(), &["otlp"], &events).await;
        let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, "http_protobuf", ""));
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!((stats.events, stats.dead_lettered), (10, 1), "{stats:?}");
        let letters = queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(uid(&letters[0].raw), "not-an-event");
        assert!(letters[0].reason.starts_with("not an OCSF event: "), "{}", letters[0].reason);
        assert_eq!(records(&receiver.exports()).len(), 10);
    });
}

/// Over TLS: a `ca_file` naming the receiver's CA delivers (and the probe says the certificate
/// was verified); another CA is a clear configuration failure and nothing is acknowledged.
fn tls_with_ca_file(protocol: &str) {
    let events = &ocsf_events()[..60];
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    run(async {
        let receiver = Receiver::start(Some(&pki)).await;
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let ca = |path: &std::path::Path| format!("ca_file = {:?}", path.display().to_string());

        let wrong = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, &ca(&pki.other_ca_pem)));
        let err = Sink::open(&wrong).unwrap().probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config, "{err}");
        let endpoint = format!("https://localhost:{}", cfg_port(&receiver, protocol));
        for piece in ["TLS handshake failed", "UnknownIssuer", "set ca_file", &endpoint] {
            assert!(err.message.contains(piece), "{err} lacks {piece:?}");
        }
        assert_nothing_acknowledged(wrong, &queue, events.len()).await;
        assert!(receiver.exports().is_empty(), "nothing reached the receiver");

        let right = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, &ca(&pki.ca_pem)));
        let probe = Sink::open(&right).unwrap().probe().await.unwrap();
        assert!(probe.contains("TLS certificate verified"), "{probe}");
        let stats = start_worker(right, &queue).drain().await;
        assert_eq!((stats.events, stats.dead_lettered), (events.len() as u64, 0), "{stats:?}");
        assert_eq!(records(&receiver.exports()).len(), events.len());
    });
}

#[test]
fn https_with_ca_file_delivers_and_another_ca_is_refused() {
    tls_with_ca_file("http_protobuf");
}

#[test]
fn grpc_tls_with_ca_file_delivers_and_another_ca_is_refused() {
    tls_with_ca_file("grpc");
}

#[test]
fn probe_sends_an_empty_export_with_the_headers() {
    run(async {
        let receiver = Receiver::start(None).await;
        for protocol in ["grpc", "http_protobuf", "http_json"] {
            receiver.clear();
            let dir = tempfile::tempdir().unwrap();
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let said = Sink::open(&cfg).unwrap().probe().await.unwrap();
            assert!(said.starts_with(&format!("otlp {protocol} http://127.0.0.1:")), "{said}");
            assert!(said.contains("an empty export was accepted"), "{said}");
            let exports = receiver.exports();
            assert_eq!(exports.len(), 1, "{protocol}");
            assert_eq!(exports[0].transport, transport(protocol));
            assert!(exports[0].request.resource_logs.is_empty(), "no event sent");
            assert_eq!(exports[0].headers.get("x-api-key").map(String::as_str), Some(API_KEY));
        }
    });
}

// ---------------------------------------------------------------------------------------------
// An outage is never a refusal; a refusal is bisected (issue 15, point 3)

/// `metadata.uid` of every accepted record, with how often it arrived.
fn delivered_uids(receiver: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in records(&receiver.exports()) {
        if let Some(Value::String(uid)) = attributes(&r.attributes).get("ocsf.uid") {
            *seen.entry(uid.clone()).or_insert(0) += 1;
        }
    }
    seen
}

/// A collector answering 500, 408, gRPC `UNKNOWN` or `INTERNAL` for a long stretch (as one that
/// crashes, restarts or sits behind a proxy does): nothing is dead-lettered, everything is
/// delivered once it recovers.
#[test]
fn server_errors_during_an_outage_dead_letter_nothing() {
    use tonic::Code;
    let events = &ocsf_events()[..60];
    run(async {
        let receiver = Receiver::start(None).await;
        for (protocol, http, grpc) in [
            ("http_protobuf", 500, Code::Internal),
            ("http_json", 408, Code::Unknown),
            ("grpc", 500, Code::Internal),
            ("grpc", 500, Code::Unknown),
        ] {
            receiver.clear();
            receiver.set(Behaviour::Failing { times: 40, http, grpc });
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let worker = start_worker(cfg, &queue);
            let stats = tokio::time::timeout(Duration::from_secs(60), worker.drain()).await.expect("drained");
            let case = format!("{protocol} {http}/{grpc:?}");
            assert_eq!((stats.events, stats.dead_lettered), (60, 0), "{case}: {stats:?}");
            assert!(queue.dead_letters(100).await.unwrap().is_empty(), "{case}");
            let seen = delivered_uids(&receiver);
            assert!(events.iter().all(|e| seen.get(&uid(e)) == Some(&1)), "{case}: every event once: {seen:?}");
        }
    });
}

/// One event makes the receiver refuse its whole request (HTTP 400 / `INVALID_ARGUMENT`): it
/// alone is dead-lettered; the 49 others of its batch are delivered, each once.
#[test]
fn a_poison_event_refused_whole_is_isolated_and_its_neighbours_delivered() {
    use tonic::Code;
    let events = &ocsf_events()[..50];
    run(async {
        let receiver = Receiver::start(None).await;
        for protocol in ["grpc", "http_protobuf", "http_json"] {
            receiver.clear();
            receiver.set(Behaviour::Poison { uid: uid(&events[17]), http: 400, grpc: Code::InvalidArgument });
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let stats = tokio::time::timeout(Duration::from_secs(60), start_worker(cfg, &queue).drain())
                .await
                .expect("drained");
            assert_eq!((stats.events, stats.dead_lettered), (49, 1), "{protocol}: {stats:?}");
            let letters = queue.dead_letters(100).await.unwrap();
            assert_eq!(letters.len(), 1, "{protocol}");
            assert_eq!(letters[0].raw, events[17], "{protocol}");
            assert!(letters[0].reason.contains("receiver failure (injected)"), "{protocol}: {}", letters[0].reason);
            let seen = delivered_uids(&receiver);
            assert_eq!(seen.len(), 49, "{protocol}");
            assert!(seen.values().all(|n| *n == 1), "{protocol}: each once");
        }
    });
}

/// One event draws a 500 / `INTERNAL` while other requests pass: after proof that the receiver
/// takes the others, it alone is dead-lettered; its neighbours are delivered.
#[test]
fn a_poison_event_drawing_500_is_isolated_while_others_pass() {
    use tonic::Code;
    let events = &ocsf_events()[..50];
    run(async {
        let receiver = Receiver::start(None).await;
        for protocol in ["grpc", "http_protobuf"] {
            receiver.clear();
            receiver.set(Behaviour::Poison { uid: uid(&events[3]), http: 500, grpc: Code::Internal });
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let stats = tokio::time::timeout(Duration::from_secs(60), start_worker(cfg, &queue).drain())
                .await
                .expect("drained");
            assert_eq!((stats.events, stats.dead_lettered), (49, 1), "{protocol}: {stats:?}");
            let letters = queue.dead_letters(100).await.unwrap();
            assert_eq!(letters[0].raw, events[3], "{protocol}");
            assert!(letters[0].reason.contains("failed alone 6 times"), "{protocol}: {}", letters[0].reason);
            let seen = delivered_uids(&receiver);
            assert_eq!(seen.len(), 49, "{protocol}");
        }
    });
}

/// Adversarial review (dev-review2): a gRPC receiver that throttles for a moment answers
/// `RESOURCE_EXHAUSTED` without `RetryInfo` (go-grpc-middleware's ratelimit interceptor, Envoy's
/// `rate_limited_as_resource_exhausted`, a cloud quota), which says nothing about the size of
/// the events: a 20-request burst of it must not move events the receiver took in far larger
/// requests moments before to the dead-letter table. Halving is done at once (no back-off), so
/// 20 refusals are spent in milliseconds, down to single events, each dead-lettered as "too
/// large alone".
#[test]
fn review2_a_short_throttle_answered_resource_exhausted_dead_letters_nothing() {
    use tonic::Code;
    let events = &ocsf_events()[..60];
    run(async {
        let receiver = Receiver::start(None).await;
        let mut lost = Vec::new();
        for protocol in ["grpc", "http_protobuf"] {
            receiver.clear();
            receiver.set(Behaviour::Failing { times: 20, http: 413, grpc: Code::ResourceExhausted });
            let dir = tempfile::tempdir().unwrap();
            let queue = queue_with(dir.path(), &["otlp"], events).await;
            let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, protocol, ""));
            let started = std::time::Instant::now();
            let stats = tokio::time::timeout(Duration::from_secs(60), start_worker(cfg, &queue).drain())
                .await
                .expect("drained");
            let letters = queue.dead_letters(100).await.unwrap();
            eprintln!(
                "{protocol}: {stats:?} in {:?}; {} dead letters, first reason: {:?}",
                started.elapsed(),
                letters.len(),
                letters.first().map(|l| l.reason.clone())
            );
            lost.push((protocol, stats.events, stats.dead_lettered));
        }
        assert_eq!(lost, [("grpc", 60, 0), ("http_protobuf", 60, 0)], "(protocol, delivered, dead-lettered)");
    });
}

/// Adversarial review (dev-review2): a receiver over quota for good (every request answered
/// `RESOURCE_EXHAUSTED` without `RetryInfo`) dead-lettered the whole backlog in 0.6 s, 475
/// requests without back-off. It is an outage: the sink backs off and dead-letters nothing.
#[test]
fn review2_a_receiver_over_quota_dead_letters_nothing_and_backs_off() {
    use tonic::Code;
    let events = ocsf_events();
    let events = &events[..events.len().min(500)];
    run(async {
        let receiver = Receiver::start(None).await;
        receiver.set(Behaviour::Failing { times: usize::MAX, http: 413, grpc: Code::ResourceExhausted });
        let dir = tempfile::tempdir().unwrap();
        let queue = queue_with(dir.path(), &["otlp"], events).await;
        let cfg = sink_config(dir.path(), "otlp", &lines(&receiver, "grpc", ""));
        let worker = start_worker(cfg, &queue);
        worker.wait_for_retries(12).await;
        let stats = worker.abort().await;
        assert_eq!(stats.dead_lettered, 0, "{stats:?}");
        assert_eq!(queue.backlog("otlp").await.unwrap(), events.len() as u64, "{stats:?}");
        let requests = receiver.exports().len() as u64;
        assert!(
            requests <= stats.retries + 1,
            "{requests} requests for {} retries: no back-off between them",
            stats.retries
        );
    });
}
