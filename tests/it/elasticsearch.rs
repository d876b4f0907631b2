//! The Elasticsearch sink against the project's `_bulk` emulator (`tests/it/es_emulator/`; no
//! Elasticsearch or OpenSearch server is installable here). The first tests exercise the
//! emulator itself with hand-made requests, so that a failing sink test can be told apart from
//! a broken emulator; the rest run the real binary (`harness::agent`) over the simulator, with
//! the emulator on 127.0.0.1, and read what it indexed, what it was asked, the agent's
//! `/metrics`, `check --connect` and `queue dead-letters`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::es_emulator::{self, EsEmulator, EsOptions, Fault, ItemError, base64};
use crate::harness;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, Sim, SimOptions, SimVendor};
use harness::agent::Agent;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const STREAM: &str = "logs-auditrelay.ocsf-default";
const NDJSON: &str = "application/x-ndjson";

// ---------------------------------------------------------------------------------------------
// The emulator itself

fn client() -> reqwest::Client {
    // Like the sink, the test client follows no redirect.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A request to the emulator: status, headers and JSON body (`Null` when not JSON).
async fn call(
    emu: &EsEmulator,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client().request(method, format!("{}{path}", emu.url())).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn bulk(emu: &EsEmulator, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let (status, _, answer) = call(emu, reqwest::Method::POST, "/_bulk", &[("content-type", NDJSON)], body).await;
    (status, answer)
}

/// `{"create":{"_index":index,"_id":id}}` and the document, as NDJSON lines.
fn create(index: &str, id: &str, doc: Value) -> String {
    format!("{}\n{doc}\n", json!({"create": {"_index": index, "_id": id}}))
}

fn statuses(answer: &Value) -> Vec<u64> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_object().unwrap().values().next().unwrap()["status"].as_u64().unwrap())
        .collect()
}

fn error_types(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_object().unwrap().values().next().unwrap()["error"]["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Bulk answers, data streams, `_id` conflicts per backing index, `filter_path`, gzip, the
/// NDJSON framing rules.
#[tokio::test]
async fn emulator_answers_items_by_the_documented_data_stream_and_id_rules() {
    let emu = EsEmulator::start(EsOptions::default()).await;
    let ts = json!({"@timestamp": "2026-03-18T12:00:00.000Z", "n": 1});
    let body = [
        create(STREAM, "a", ts.clone()),
        create(STREAM, "a", ts.clone()),
        format!("{}\n{ts}\n", json!({"index": {"_index": STREAM, "_id": "b"}})),
        create(STREAM, "c", json!({"n": 2})),
        create("plain-index", "d", json!({"n": 3})),
    ]
    .concat();
    let (status, answer) = bulk(&emu, body.clone()).await;
    assert_eq!(status, 200, "a bulk request with failed items is still 200: {answer}");
    assert_eq!(answer["errors"], json!(true));
    assert_eq!(statuses(&answer), [201, 409, 400, 400, 201], "{answer}");
    assert_eq!(
        error_types(&answer),
        ["", "version_conflict_engine_exception", "illegal_argument_exception", "document_parsing_exception", ""]
    );
    let reasons: Vec<&str> = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["error"]["reason"].as_str().or(i["index"]["error"]["reason"].as_str()).unwrap_or(""))
        .collect();
    assert!(reasons[1].contains("document already exists"), "{reasons:?}");
    assert!(reasons[2].contains("only write ops with an op_type of create are allowed in data streams"), "{reasons:?}");
    assert!(reasons[3].contains("data stream timestamp field [@timestamp] is missing"), "{reasons:?}");
    assert_eq!(emu.is_data_stream(STREAM), Some(true));
    assert_eq!(emu.is_data_stream("plain-index"), Some(false));
    let backing = emu.backing_indices(STREAM);
    assert_eq!(backing.len(), 1);
    assert!(
        backing[0].starts_with(".ds-logs-auditrelay.ocsf-default-") && backing[0].ends_with("-000001"),
        "{backing:?}"
    );
    let docs = emu.documents();
    assert_eq!(
        docs.iter().map(|d| (d.target.as_str(), d.id.as_str())).collect::<Vec<_>>(),
        [(STREAM, "a"), ("plain-index", "d")]
    );
    assert_eq!(docs[0].index, backing[0]);

    // After a rollover the same _id is a new document in the new write index (dedupe by _id
    // holds per backing index only).
    emu.roll_over(STREAM);
    let (_, answer) = bulk(&emu, create(STREAM, "a", ts.clone())).await;
    assert_eq!((statuses(&answer), answer["errors"].clone()), (vec![201], json!(false)));
    assert_eq!(emu.backing_indices(STREAM).len(), 2);
    assert_eq!(emu.documents().iter().filter(|d| d.id == "a").count(), 2);

    // filter_path, gzip and the /{index}/_bulk default index.
    let lines = format!("{}\n{ts}\n", json!({"create": {"_id": "e"}}));
    let (status, _, answer) = call(
        &emu,
        reqwest::Method::POST,
        &format!("/{STREAM}/_bulk?filter_path=errors,items.*.status,items.*.error"),
        &[("content-type", NDJSON), ("content-encoding", "gzip")],
        gzip(lines.as_bytes()),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"errors": false, "items": [{"create": {"status": 201}}]})));
    let last = emu.requests().pop().unwrap();
    assert_eq!((last.body, last.content_encoding.as_deref()), (lines.into_bytes(), Some("gzip")));

    // Framing: a final newline is required, the content type must be JSON or NDJSON.
    let (status, answer) = bulk(&emu, create(STREAM, "f", ts.clone()).trim_end().to_owned()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["reason"].as_str().unwrap().contains("terminated by a newline"));
    let (status, _, _) =
        call(&emu, reqwest::Method::POST, "/_bulk", &[("content-type", "text/plain")], create(STREAM, "f", ts)).await;
    assert_eq!(status, 406);
    assert_eq!(emu.document_count(), 4);
}

/// The mapping: a field's first type fixes it; incompatible values are the flavor's parsing
/// exception; flattened subtrees and the field limit; templates checked per flavor.
#[tokio::test]
async fn emulator_maps_fields_refuses_conflicts_and_checks_templates_per_flavor() {
    for (opts, parsing) in
        [(EsOptions::default(), "document_parsing_exception"), (EsOptions::opensearch(), "mapper_parsing_exception")]
    {
        let emu = EsEmulator::start(opts).await;
        let doc = |v: Value| json!({"@timestamp": "2026-03-18T12:00:00Z", "x": v});
        let body = [
            create("idx", "1", doc(json!(5))),
            create("idx", "2", doc(json!("five"))),
            create("idx", "3", doc(json!("6"))),
            create("idx", "4", doc(json!({"a": 1}))),
            create("idx", "5", json!({"o": {"a": 1}})),
            create("idx", "6", json!({"o": "flat"})),
        ]
        .concat();
        let (_, answer) = bulk(&emu, body).await;
        assert_eq!(statuses(&answer), [201, 400, 201, 400, 201, 400], "{answer}");
        assert_eq!(error_types(&answer)[1], parsing);
        let reason = |i: usize| answer["items"][i]["create"]["error"]["reason"].as_str().unwrap().to_owned();
        assert!(reason(1).contains("failed to parse field [x] of type [long]"), "{}", reason(1));
        assert!(reason(5).contains("object mapping for [o]"), "{}", reason(5));
        assert_eq!(emu.field_type("idx", "x").as_deref(), Some("long"));
        assert_eq!(emu.field_type("idx", "@timestamp").as_deref(), Some("date"), "dynamic date detection");

        // A template's `flattened` (Elasticsearch) / `flat_object` (OpenSearch): anything goes,
        // one field; the other product's type is refused.
        let (mine, theirs) = if parsing == "mapper_parsing_exception" {
            ("flat_object", "flattened")
        } else {
            ("flattened", "flat_object")
        };
        let template = |kind: &str| json!({"index_patterns": ["flat-*"], "template": {"settings": {"index.mapping.total_fields.limit": 5}, "mappings": {"properties": {"u": {"type": kind}}}}});
        let put = |t: Value| {
            call(
                &emu,
                reqwest::Method::PUT,
                "/_index_template/t",
                &[("content-type", "application/json")],
                t.to_string(),
            )
        };
        let (status, _, answer) = put(template(theirs)).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"]["reason"].as_str().unwrap().contains(&format!("No handler for type [{theirs}]")),
            "{answer}"
        );
        assert_eq!(put(template(mine)).await.0, 200);
        let (status, _, answer) = call(&emu, reqwest::Method::GET, "/_index_template/t", &[], "").await;
        assert_eq!((status, answer["index_templates"][0]["name"].as_str()), (200, Some("t")));
        assert_eq!(call(&emu, reqwest::Method::GET, "/_index_template/none", &[], "").await.0, 404);
        let body = [
            create("flat-1", "1", json!({"u": {"a": 1, "b": {"c": "x"}}})),
            create("flat-1", "2", json!({"u": {"a": "text"}})),
            create("flat-1", "3", json!({"a": 1, "b": 2, "c": 3, "d": 4})),
            create("flat-1", "4", json!({"e": 1})),
        ]
        .concat();
        let (_, answer) = bulk(&emu, body).await;
        assert_eq!(statuses(&answer), [201, 201, 201, 400], "{answer}");
        let reason = answer["items"][3]["create"]["error"]["reason"].as_str().unwrap();
        assert!(reason.contains("Limit of total fields [5] has been exceeded"), "{reason}");
        assert_eq!(emu.field_count("flat-1"), 5);

        // dynamic_templates: the first matching rule types a new field; a date-looking string
        // is detected as `date`, not `string`, so a "string" rule does not apply to it.
        let t = json!({"index_patterns": ["dt-*"], "template": {"mappings": {"dynamic_templates": [
            {"strings": {"path_match": "d.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}}
        ]}}});
        assert_eq!(
            call(
                &emu,
                reqwest::Method::PUT,
                "/_index_template/dt",
                &[("content-type", "application/json")],
                t.to_string()
            )
            .await
            .0,
            200
        );
        let body = [
            create("dt-1", "1", json!({"d": {"k": "text", "when": "2026-03-18T12:00:00Z"}})),
            create("dt-1", "2", json!({"d": {"k": 5, "when": "yesterday"}})),
        ]
        .concat();
        let (_, answer) = bulk(&emu, body).await;
        assert_eq!(statuses(&answer), [201, 400], "{answer}");
        assert_eq!(emu.field_type("dt-1", "d.k").as_deref(), Some("keyword"));
        assert_eq!(emu.field_type("dt-1", "d.when").as_deref(), Some("date"));
    }
    // OpenSearch refuses ILM settings.
    let emu = EsEmulator::start(EsOptions::opensearch()).await;
    let t = json!({"index_patterns": ["x-*"], "template": {"settings": {"index.lifecycle.name": "p"}}});
    let (status, _, answer) =
        call(&emu, reqwest::Method::PUT, "/_index_template/x", &[("content-type", "application/json")], t.to_string())
            .await;
    assert_eq!(status, 400, "{answer}");
}

/// Security, `GET /` per flavor, and the scripted faults.
#[tokio::test]
async fn emulator_authenticates_reports_its_flavor_and_plays_faults() {
    let key = base64("id1:secret1");
    let opts = EsOptions {
        api_keys: vec![key.clone()],
        read_only_api_keys: vec![base64("ro:ro")],
        users: vec![("auditrelay".into(), "pw".into())],
        ..EsOptions::default()
    };
    let emu = EsEmulator::start(opts).await;
    let doc = create(STREAM, "1", json!({"@timestamp": "2026-03-18T12:00:00Z"}));
    let send = |auth: Option<String>| {
        let mut headers = vec![("content-type".to_owned(), NDJSON.to_owned())];
        if let Some(a) = auth {
            headers.push(("authorization".to_owned(), a));
        }
        let body = doc.clone();
        let emu = &emu;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            call(emu, reqwest::Method::POST, "/_bulk", &h, body).await
        }
    };
    let (status, headers, answer) = send(None).await;
    assert_eq!((status, answer["error"]["type"].as_str()), (401, Some("security_exception")));
    let challenges: Vec<&str> = headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(challenges, ["Basic realm=\"security\" charset=\"UTF-8\"", "ApiKey"]);
    assert_eq!(send(Some(format!("ApiKey {}", base64("id1:wrong")))).await.0, 401);
    assert_eq!(send(Some(format!("ApiKey {}", base64("ro:ro")))).await.0, 403);
    assert_eq!(send(Some(format!("ApiKey {key}"))).await.0, 200);
    assert_eq!(send(Some(format!("Basic {}", base64("auditrelay:pw")))).await.0, 200);
    assert_eq!(send(Some(format!("Basic {}", base64("auditrelay:no")))).await.0, 401);

    let (status, headers, info) =
        call(&emu, reqwest::Method::GET, "/", &[("authorization", &format!("ApiKey {key}"))], "").await;
    assert_eq!(
        (status, info["version"]["number"].as_str(), info["tagline"].as_str()),
        (200, Some("8.15.0"), Some("You Know, for Search"))
    );
    assert_eq!(headers["x-elastic-product"], "Elasticsearch");
    let os = EsEmulator::start(EsOptions::opensearch()).await;
    let (status, headers, info) = call(&os, reqwest::Method::GET, "/", &[], "").await;
    assert_eq!(
        (status, info["version"]["distribution"].as_str(), info["version"]["number"].as_str()),
        (200, Some("opensearch"), Some("2.17.0"))
    );
    assert!(headers.get("x-elastic-product").is_none());

    // Faults, one per request, in order.
    let emu = EsEmulator::start(EsOptions { max_content_length: 400, ..EsOptions::default() }).await;
    emu.push_fault(Fault::too_many_requests(Some(3)));
    emu.push_fault(Fault::gateway(503));
    emu.push_fault(Fault::Items(vec![(1, ItemError::rejected()), (2, ItemError::unavailable())]));
    emu.push_fault(Fault::Redirect { status: 302, location: format!("{}{}", emu.url(), es_emulator::LOGIN_PATH) });
    emu.push_fault(Fault::Disconnect);
    emu.push_fault(Fault::TakeThenDisconnect);
    let ts = json!({"@timestamp": "2026-03-18T12:00:00Z"});
    let three =
        [create(STREAM, "a", ts.clone()), create(STREAM, "b", ts.clone()), create(STREAM, "c", ts.clone())].concat();
    let (status, headers, answer) =
        call(&emu, reqwest::Method::POST, "/_bulk", &[("content-type", NDJSON)], three.clone()).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap(), answer["error"]["type"].as_str()),
        (429, "3", Some("es_rejected_execution_exception"))
    );
    assert_eq!(bulk(&emu, three.clone()).await.0, 503);
    let (status, answer) = bulk(&emu, three.clone()).await;
    assert_eq!((status, statuses(&answer)), (200, vec![201, 429, 503]));
    let (status, _, _) = call(&emu, reqwest::Method::POST, "/_bulk", &[("content-type", NDJSON)], three.clone()).await;
    assert_eq!(status, 302);
    assert!(
        client()
            .post(format!("{}/_bulk", emu.url()))
            .header("content-type", NDJSON)
            .body(three.clone())
            .send()
            .await
            .is_err()
    );
    assert!(
        client()
            .post(format!("{}/_bulk", emu.url()))
            .header("content-type", NDJSON)
            .body(create(STREAM, "d", ts.clone()))
            .send()
            .await
            .is_err()
    );
    assert_eq!(
        emu.documents().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["a", "d"],
        "taken, then the answer lost"
    );
    // A poison marker refuses its item with the chosen error, every time.
    emu.refuse_items_containing("\"poison\"", ItemError::parsing(&EsOptions::default(), "failed to parse field [x]"));
    let body = [
        create(STREAM, "e", json!({"@timestamp": "2026-03-18T12:00:00Z", "p": "poison"})),
        create(STREAM, "f", ts.clone()),
    ]
    .concat();
    let (_, answer) = bulk(&emu, body).await;
    assert_eq!((statuses(&answer), error_types(&answer)[0].as_str()), (vec![400, 201], "document_parsing_exception"));
    // 413 on the decoded size, however small the gzip.
    let big = create(STREAM, "g", json!({"@timestamp": "2026-03-18T12:00:00Z", "pad": "x".repeat(500)}));
    let (status, _, _) = call(
        &emu,
        reqwest::Method::POST,
        "/_bulk",
        &[("content-type", NDJSON), ("content-encoding", "gzip")],
        gzip(big.as_bytes()),
    )
    .await;
    assert_eq!(status, 413);
    let answered: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(answered, [429, 503, 200, 302, 0, 0, 200, 413]);
}

// ---------------------------------------------------------------------------------------------
// The sink in the real binary, over the simulator

/// A simulator with `records` Aitronos records and no rate limit.
/// Shared with the review tests of the sink (review19a/b/c).
pub(crate) async fn simulator(records: usize) -> Sim {
    let mut opts = SimOptions::default();
    opts.aitronos.records = records;
    opts.faults.rate_limit = RateLimitSetting::Off;
    harness::start_sim(opts, &Clock::system()).await
}

/// The configuration: the harness's Aitronos source and file sink, and an `elasticsearch` sink
/// named "elastic" with `lines`, quick back-off.
pub(crate) fn write_config(sim: &Sim, dir: &Path, lines: &str) -> PathBuf {
    let config = dir.join("auditrelay.toml");
    let text = format!(
        "{}\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\nbackoff = {{ initial = \"50ms\", max = \"500ms\" }}\ntimeout = \"5s\"\n{lines}\n",
        harness::config_text(sim, dir, ""),
    );
    std::fs::write(&config, text).unwrap();
    config
}

fn hosts(emu: &EsEmulator) -> String {
    format!("hosts = [{:?}]\n", emu.url())
}

/// `run --once` to the end (it exits once every sink has everything, 0); returns the agent.
async fn run_once(sim: &Sim, config: &Path, env: &[(&str, &str)]) -> Agent {
    run_once_exiting(sim, config, env, 0).await
}

/// `run --once` to the end, expecting exit `code` (2: done, with dead letters).
async fn run_once_exiting(sim: &Sim, config: &Path, env: &[(&str, &str)], code: i32) -> Agent {
    let mut all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    all.extend_from_slice(env);
    let mut agent = Agent::spawn(&["run", "--once"], config, &config.with_file_name("agent.log"), &all);
    let status = agent.exit(WAIT).await;
    assert_eq!(status.code(), Some(code), "exit {status}:\n{}", agent.tail());
    agent
}

/// `run` (following), for tests that watch it and stop it.
fn run_follow(sim: &Sim, config: &Path, env: &[(&str, &str)]) -> Agent {
    let mut all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    all.extend_from_slice(env);
    // A short drain: a stopped sink with data left would otherwise hold the exit for the default.
    Agent::spawn(&["run", "--drain-timeout", "2s"], config, &config.with_file_name("agent.log"), &all)
}

/// `_id` -> times indexed.
fn ids(emu: &EsEmulator) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for d in emu.documents() {
        *seen.entry(d.id).or_insert(0) += 1;
    }
    seen
}

/// Every event the file sink got (the same events, from the same queue) is indexed exactly
/// once, under its `metadata.uid` as `_id`.
fn assert_all_indexed_once(emu: &EsEmulator, dir: &Path, expected: usize) {
    let file_uids: Vec<String> = harness::events(&harness::out_path(dir))
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(file_uids.len(), expected, "the file sink's events");
    let seen = ids(emu);
    let missing: Vec<&String> = file_uids.iter().filter(|u| !seen.contains_key(*u)).collect();
    assert!(missing.is_empty(), "{} events never indexed: {missing:?}", missing.len());
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "indexed more than once: {twice:?}");
    assert_eq!(seen.len(), expected, "nothing else indexed");
}

/// `auditrelay queue dead-letters --json`.
async fn dead_letters(config: &Path) -> Vec<Value> {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["queue", "dead-letters", "--json", "--limit", "0", "-c"])
        .arg(config)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "queue dead-letters failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Every record once into `logs-auditrelay.ocsf-default`, in the contract's layout, with the
/// request the contract names (path, query, NDJSON, gzip, `create` actions, the API key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_once_in_the_default_data_stream_in_the_contract_layout() {
    let sim = simulator(60).await;
    let key = base64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw");
    let emu = EsEmulator::start(EsOptions { api_keys: vec![key.clone()], ..EsOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    // `id:key` as the operator copies it from Kibana: the sink encodes it.
    let config = write_config(&sim, dir.path(), &format!("{}api_key = \"${{ES_API_KEY}}\"\n", hosts(&emu)));
    run_once(&sim, &config, &[("ES_API_KEY", "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")]).await;
    assert_all_indexed_once(&emu, dir.path(), 60);

    for doc in emu.documents() {
        assert_eq!(doc.target, STREAM);
        assert!(doc.index.starts_with(".ds-logs-auditrelay.ocsf-default-"), "{}", doc.index);
        let source = &doc.source;
        let ocsf = &source["ocsf"];
        harness::ocsf_schema::assert_valid(ocsf);
        assert_eq!(ocsf["metadata"]["uid"].as_str(), Some(doc.id.as_str()), "_id = ocsf.metadata.uid");
        let ms = ocsf["time"].as_i64().unwrap();
        let expected =
            chrono::DateTime::from_timestamp_millis(ms).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(source["@timestamp"].as_str(), Some(expected.as_str()), "@timestamp is the event's time");
        assert_eq!(
            source["data_stream"],
            json!({"type": "logs", "dataset": "auditrelay.ocsf", "namespace": "default"})
        );
        assert_eq!(source["event"]["id"].as_str(), Some(doc.id.as_str()));
        assert_eq!(source["event"]["kind"], "event");
        assert_eq!(source["event"]["dataset"], "auditrelay.ocsf");
        assert_eq!(source["event"]["code"], ocsf["metadata"]["event_code"]);
    }
    let requests = emu.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.status, 200);
        assert_eq!(r.path, "/_bulk");
        assert_eq!(r.query, "filter_path=errors,items.*.status,items.*.error");
        assert_eq!(r.content_type.as_deref(), Some(NDJSON));
        assert_eq!(r.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(r.authorization.as_deref(), Some(format!("ApiKey {key}").as_str()), "the documented header");
        let text = String::from_utf8(r.body.clone()).unwrap();
        for action in text.lines().step_by(2) {
            let action: Value = serde_json::from_str(action).unwrap();
            assert_eq!(action.as_object().unwrap().keys().collect::<Vec<_>>(), ["create"], "{action}");
        }
    }
    sim.shutdown().await;
}

/// `dataset = "auditrelay.{vendor}"` puts each vendor's events in a data stream of its own,
/// the vendor name lower-cased with other characters as `_`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_placeholder_routes_each_vendor_to_its_own_data_stream() {
    let mut opts = SimOptions::default();
    opts.aitronos.records = 20;
    opts.configcat.records = 20;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = harness::start_sim(opts, &Clock::system()).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let sources: Vec<String> = [SimVendor::Aitronos, SimVendor::ConfigCat]
        .into_iter()
        .map(|v| {
            harness::source_block(
                &sim,
                v,
                &sim.organizations(v)[0],
                v.name(),
                "start = \"2d\"\nrate_limit = { requests = 100, per = \"1s\", burst = 10 }",
            )
        })
        .collect();
    let config = dir.path().join("auditrelay.toml");
    let text = format!(
        "{}\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\n{}dataset = \"auditrelay.{{vendor}}\"\nnamespace = \"prod\"\n",
        harness::config_with_sources(dir.path(), &sources),
        hosts(&emu)
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = Agent::spawn(&["run", "--once"], &config, &dir.path().join("agent.log"), &[]);
    let status = agent.exit(WAIT).await;
    assert!(status.success(), "{}", agent.tail());
    let docs = emu.documents();
    assert_eq!(docs.len(), 40, "every record of both vendors");
    let mut streams: HashMap<String, usize> = HashMap::new();
    for d in &docs {
        let vendor = d.source["ocsf"]["metadata"]["product"]["vendor_name"].as_str().unwrap();
        let part: String = vendor
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
            .collect();
        let expected = format!("logs-auditrelay.{part}-prod");
        assert_eq!(d.target, expected, "{vendor}");
        assert_eq!(d.source["data_stream"]["dataset"].as_str(), Some(format!("auditrelay.{part}").as_str()));
        assert_eq!(emu.is_data_stream(&d.target), Some(true));
        *streams.entry(d.target.clone()).or_insert(0) += 1;
    }
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert!(streams.values().all(|n| *n == 20), "{streams:?}");
    sim.shutdown().await;
}

/// Items answered 429 `es_rejected_execution_exception` or 503 in a 200 answer: only those are
/// sent again; every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_refused_429_or_503_are_resent_alone() {
    let sim = simulator(30).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.push_fault(Fault::Items(vec![
        (1, ItemError::rejected()),
        (4, ItemError::rejected()),
        (7, ItemError::unavailable()),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("{}batch_max_events = 10\n", hosts(&emu)));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 30);
    let requests = emu.requests();
    let items: usize = requests.iter().map(|r| r.items.len()).sum();
    assert_eq!(
        items,
        30 + 3,
        "only the 3 refused items were sent twice: {:?}",
        requests.iter().map(|r| r.items.clone()).collect::<Vec<_>>()
    );
    assert!(requests.iter().any(|r| r.items.len() == 3 && r.items.iter().all(|s| *s == 201)), "the three alone");
    assert!(dead_letters(&config).await.is_empty());
    sim.shutdown().await;
}

/// An item refused 400 `document_parsing_exception` is dead-lettered alone, with Elastic's
/// reason; its neighbours are indexed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_error_dead_letters_only_that_event_with_elastics_reason() {
    let sim = simulator(30).await;
    let poison = sim.aitronos_ids()[11].clone();
    let emu = EsEmulator::start(EsOptions::default()).await;
    let reason = "[1:422] failed to parse field [ocsf.actor.user.name] of type [long] in document with id 'x'";
    emu.refuse_items_containing(&poison, ItemError::parsing(&EsOptions::default(), reason));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    run_once_exiting(&sim, &config, &[], 2).await;
    let letters = dead_letters(&config).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["sink"].as_str(), Some("elastic"));
    assert!(letters[0]["raw"].as_str().unwrap().contains(&poison), "{}", letters[0]);
    let got = letters[0]["reason"].as_str().unwrap();
    assert!(
        got.contains("document_parsing_exception") && got.contains("failed to parse field [ocsf.actor.user.name]"),
        "{got}"
    );
    assert_eq!(emu.document_count(), 29);
    assert!(!emu.documents().iter().any(|d| d.source.to_string().contains(&poison)));
    assert_eq!(ids(&emu).values().max(), Some(&1));
    sim.shutdown().await;
}

/// The answer to a request is lost after Elasticsearch took it; the agent is killed and started
/// again: the resend is answered 409 for every document, which counts as delivered: no second
/// copy, nothing dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_answered_409_is_delivered_without_a_duplicate_across_a_restart() {
    let sim = simulator(30).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.push_fault(Fault::TakeThenDisconnect);
    // Then busy, so that the agent is still retrying when it is killed.
    for _ in 0..50 {
        emu.push_fault(Fault::gateway(503));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    let mut agent = run_follow(&sim, &config, &[]);
    agent
        .until("the first request was taken and its answer lost, then one 503", WAIT, |_| emu.requests().len() >= 2)
        .await;
    agent.kill().await;
    assert!(emu.document_count() > 0, "the first request was indexed");
    // The next run meets a healthy cluster.
    emu.clear_faults();
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 30);
    let conflicts: usize = emu.requests().iter().flat_map(|r| r.items.iter()).filter(|s| **s == 409).count();
    assert!(conflicts > 0, "the resend met the documents already there");
    assert!(dead_letters(&config).await.is_empty());
    sim.shutdown().await;
}

/// Whole-request 429 (with `Retry-After`), 502/503/504 and a cut connection: retried, nothing
/// lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_answers_and_cut_connections_are_retried_and_nothing_is_lost() {
    let sim = simulator(30).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.push_fault(Fault::too_many_requests(Some(1)));
    emu.push_fault(Fault::gateway(502));
    emu.push_fault(Fault::gateway(503));
    emu.push_fault(Fault::gateway(504));
    emu.push_fault(Fault::Disconnect);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 30);
    let answered: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(answered[..5], [429, 502, 503, 504, 0], "{answered:?}");
    assert!(dead_letters(&config).await.is_empty());
    sim.shutdown().await;
}

/// A request larger than `http.max_content_length` (decoded) is split; every record arrives
/// once and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_max_content_length_is_split() {
    let sim = simulator(40).await;
    // About a third of the 40 documents fit.
    let emu = EsEmulator::start(EsOptions { max_content_length: 16 * 1024, ..EsOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 40);
    let requests = emu.requests();
    assert!(
        requests.iter().any(|r| r.status == 413),
        "a request was too large: {:?}",
        requests.iter().map(|r| (r.status, r.body.len())).collect::<Vec<_>>()
    );
    assert!(requests.iter().filter(|r| r.status == 200).all(|r| r.body.len() <= 16 * 1024));
    assert!(dead_letters(&config).await.is_empty());
    sim.shutdown().await;
}

/// 401 (a wrong key) and 403 (a key without write privileges) pause the sink with the data
/// kept; with the key fixed every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_keeps_the_data_and_delivery_resumes_when_fixed() {
    let sim = simulator(20).await;
    let good = base64("good:key");
    let emu = EsEmulator::start(EsOptions {
        api_keys: vec![good.clone()],
        read_only_api_keys: vec![base64("ro:key")],
        ..EsOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    for (key, status) in [("wrong:key", 401), ("ro:key", 403)] {
        let config = write_config(&sim, dir.path(), &format!("{}api_key = {key:?}\n", hosts(&emu)));
        let before = emu.requests().len();
        let mut agent = run_follow(&sim, &config, &[]);
        agent.until(&format!("a request answered {status}"), WAIT, |_| emu.requests().len() > before).await;
        let status_now = agent.terminate(WAIT).await;
        assert!(status_now.success(), "{}", agent.tail());
        assert!(emu.requests()[before..].iter().all(|r| r.status == status), "{status}");
        assert_eq!(emu.document_count(), 0);
        // Nothing dead-lettered: proven below, every event arrives once the key is fixed.
    }
    let config = write_config(&sim, dir.path(), &format!("{}api_key = \"good:key\"\n", hosts(&emu)));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 20);
    assert_eq!(emu.requests().last().unwrap().authorization.as_deref(), Some(format!("ApiKey {good}").as_str()));
    sim.shutdown().await;
}

/// A redirect to a login page is not followed (the credentials would go along): the login page
/// is never reached, the data kept and delivered once the node answers itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_the_data_is_kept() {
    let sim = simulator(20).await;
    let emu = EsEmulator::start(EsOptions { api_keys: vec![base64("a:b")], ..EsOptions::default() }).await;
    for status in [302, 307] {
        emu.push_fault(Fault::Redirect {
            status,
            location: format!("{}{}?next=/_bulk", emu.url(), es_emulator::LOGIN_PATH),
        });
    }
    emu.push_fault(Fault::Raw { status: 200, content_type: "text/html".into(), body: "<html>Sign in</html>".into() });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("{}api_key = \"a:b\"\n", hosts(&emu)));
    run_once(&sim, &config, &[]).await;
    assert_eq!(emu.login_hits(), 0, "a redirect is never followed");
    assert_all_indexed_once(&emu, dir.path(), 20);
    assert_eq!(emu.requests().iter().map(|r| r.status).take(3).collect::<Vec<_>>(), [302, 307, 200]);
    sim.shutdown().await;
}

/// Basic auth (password from a file) and an API key from `api_key_file`, sent exactly as
/// documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_an_api_key_file_send_the_documented_headers() {
    let sim = simulator(10).await;
    let encoded = base64("kid:ksecret");
    let emu = EsEmulator::start(EsOptions {
        api_keys: vec![encoded.clone()],
        users: vec![("auditrelay".into(), "p4ss:word".into())],
        ..EsOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("es-password");
    std::fs::write(&password, "p4ss:word\n").unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        &format!("{}username = \"auditrelay\"\npassword_file = {:?}\n", hosts(&emu), password.display().to_string()),
    );
    run_once(&sim, &config, &[]).await;
    assert_eq!(emu.document_count(), 10);
    let basic = format!("Basic {}", base64("auditrelay:p4ss:word"));
    assert!(emu.requests().iter().all(|r| r.authorization.as_deref() == Some(basic.as_str())));

    // A fresh state: the same records through an already-encoded key read from a file.
    let emu2 = EsEmulator::start(EsOptions { api_keys: vec![encoded.clone()], ..EsOptions::default() }).await;
    let dir2 = tempfile::tempdir().unwrap();
    let key_file = dir2.path().join("es-api-key");
    std::fs::write(&key_file, format!("{encoded}\n")).unwrap();
    let config = write_config(
        &sim,
        dir2.path(),
        &format!("{}api_key_file = {:?}\n", hosts(&emu2), key_file.display().to_string()),
    );
    run_once(&sim, &config, &[]).await;
    assert_eq!(emu2.document_count(), 10);
    let header = format!("ApiKey {encoded}");
    assert!(emu2.requests().iter().all(|r| r.authorization.as_deref() == Some(header.as_str())));
    sim.shutdown().await;
}

/// Two hosts, the first refusing connections: every record arrives through the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_host_takes_over_when_the_first_refuses_connections() {
    let sim = simulator(20).await;
    let down = EsEmulator::start(EsOptions::default()).await;
    down.stop().await;
    let up = EsEmulator::start(EsOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("hosts = [{:?}, {:?}]\n", down.url(), up.url()));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&up, dir.path(), 20);
    assert_eq!(down.requests().len(), 0);
    sim.shutdown().await;
}

/// TLS with the test CA in `ca_file`: delivered; without it (system roots) the node is not
/// trusted and `check --connect` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_delivers_and_an_untrusted_node_is_refused() {
    let sim = simulator(10).await;
    let dir = tempfile::tempdir().unwrap();
    let pki = harness::pki::make_pki(dir.path());
    let emu = EsEmulator::start(EsOptions { tls: Some(pki.clone()), ..EsOptions::default() }).await;
    assert!(emu.url().starts_with("https://localhost:"));
    let config =
        write_config(&sim, dir.path(), &format!("{}ca_file = {:?}\n", hosts(&emu), pki.ca_pem.display().to_string()));
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 10);

    let other = write_config(
        &sim,
        dir.path(),
        &format!("{}ca_file = {:?}\n", hosts(&emu), pki.other_ca_pem.display().to_string()),
    );
    let (code, stdout) = check_connect(&other, &sim).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(harness::sinks::connect_row(&stdout, "sink", "elastic").0, "FAILED", "{stdout}");
    sim.shutdown().await;
}

async fn check_connect(config: &Path, sim: &Sim) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "--connect", "-c"])
        .arg(config)
        .env("TEST_AITRONOS_KEY", sim.aitronos_api_key())
        .output()
        .await
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `auditrelay elasticsearch template [--opensearch]`: valid JSON the emulated product's
/// `PUT /_index_template` accepts, whose pattern matches the default data stream.
async fn put_cli_template(emu: &EsEmulator, opensearch: bool) -> Value {
    let mut args = vec!["elasticsearch", "template"];
    if opensearch {
        args.push("--opensearch");
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(&args).output().await.unwrap();
    assert!(out.status.success(), "auditrelay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let template: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    let (status, _, answer) = call(
        emu,
        reqwest::Method::PUT,
        "/_index_template/auditrelay-ocsf",
        &[("content-type", "application/json")],
        template.to_string(),
    )
    .await;
    assert_eq!(status, 200, "the emulator refused the template: {answer}");
    template
}

/// `check --connect` names the flavour and version and says whether the template is
/// installed; the printed template is accepted and matches the default data stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reports_the_flavour_and_the_template_and_the_printed_template_is_accepted() {
    let sim = simulator(5).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    let (code, stdout) = check_connect(&config, &sim).await;
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert_eq!((code, result.as_str()), (Some(1), "FAILED"), "{stdout}");
    assert!(detail.contains("Elasticsearch 8.15.0") && detail.contains("auditrelay-ocsf missing"), "{detail}");

    let template = put_cli_template(&emu, false).await;
    let patterns: Vec<&str> =
        template["index_patterns"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(patterns.iter().any(|p| wildcard(p, STREAM)), "{patterns:?} must match {STREAM}");
    assert!(template.get("data_stream").is_some());
    let (code, stdout) = check_connect(&config, &sim).await;
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert_eq!((code, result.as_str()), (Some(0), "ok"), "{stdout}");
    assert!(detail.contains("auditrelay-ocsf present"), "{detail}");
    sim.shutdown().await;
}

fn wildcard(pattern: &str, name: &str) -> bool {
    let (head, tail) = pattern.split_once('*').unwrap_or((pattern, ""));
    if !pattern.contains('*') {
        return pattern == name;
    }
    name.starts_with(head) && name.len() >= head.len() && wildcard_rest(tail, &name[head.len()..])
}

fn wildcard_rest(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => name.ends_with(pattern),
        Some((part, rest)) => (0..=name.len())
            .filter(|i| name.is_char_boundary(*i))
            .any(|i| name[i..].starts_with(part) && wildcard_rest(rest, &name[i + part.len()..])),
    }
}

/// OpenSearch: `check --connect` reports it, its template (`--opensearch`) is accepted, and
/// delivery works into the data stream it makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_is_reported_and_delivery_works() {
    let sim = simulator(20).await;
    let emu = EsEmulator::start(EsOptions::opensearch()).await;
    put_cli_template(&emu, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    let (code, stdout) = check_connect(&config, &sim).await;
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert_eq!((code, result.as_str()), (Some(0), "ok"), "{stdout}");
    assert!(detail.contains("OpenSearch 2.17.0"), "{detail}");
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 20);
    assert_eq!(emu.is_data_stream(STREAM), Some(true), "the template made it a data stream");
    sim.shutdown().await;
}

/// The layout against the mapping: events of all four vendors, with the shipped template
/// installed, index without a single item error, and stay far below the field limit. (Measured
/// without the template too, for the report: the dynamic mapping of the same events.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_every_vendor_fit_the_shipped_template_without_an_item_error() {
    let mut opts = SimOptions::default();
    for v in [
        &mut opts.aitronos.records,
        &mut opts.astronomer.records,
        &mut opts.configcat.records,
        &mut opts.datafold.records,
    ] {
        *v = 25;
    }
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = harness::start_sim(opts, &Clock::system()).await;
    let mut fields = Vec::new();
    for with_template in [true, false] {
        let emu = EsEmulator::start(EsOptions::default()).await;
        if with_template {
            put_cli_template(&emu, false).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let sources: Vec<String> = SimVendor::ALL
            .into_iter()
            .map(|v| {
                harness::source_block(
                    &sim,
                    v,
                    &sim.organizations(v)[0],
                    v.name(),
                    "start = \"2d\"\nrate_limit = { requests = 100, per = \"1s\", burst = 10 }",
                )
            })
            .collect();
        let config = dir.path().join("auditrelay.toml");
        let text = format!(
            "{}\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\n{}",
            harness::config_with_sources(dir.path(), &sources),
            hosts(&emu)
        );
        std::fs::write(&config, text).unwrap();
        let mut agent = Agent::spawn(&["run", "--once"], &config, &dir.path().join("agent.log"), &[]);
        let status = agent.exit(WAIT).await;
        assert!(status.success(), "{}", agent.tail());
        let failed: Vec<u16> = emu.requests().iter().flat_map(|r| r.items.clone()).filter(|s| *s >= 300).collect();
        if with_template {
            assert_eq!(emu.document_count(), 100, "every event of the four vendors");
            assert!(
                failed.is_empty(),
                "item errors with the shipped template: {failed:?}; dead letters {:?}",
                dead_letters(&config).await
            );
        }
        fields.push((with_template, emu.document_count(), emu.field_count(STREAM), failed.len()));
    }
    eprintln!("(template installed, documents, mapped fields, failed items): {fields:?}");
    assert!(fields[0].2 < 1000, "{fields:?}");
    sim.shutdown().await;
}

/// An item refused for a reason only an operator can fix (400 `illegal_argument_exception`, as
/// a data stream answers an op it does not allow): the event is kept, not dead-lettered; once
/// the cluster takes it, a restarted agent delivers it, and what was taken before is not
/// indexed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_refused_for_an_operator_reason_is_kept_and_delivered_once_fixed() {
    let sim = simulator(20).await;
    let held = sim.aitronos_ids()[7].clone();
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.refuse_items_containing(
        &held,
        ItemError::new(
            400,
            "illegal_argument_exception",
            "only write ops with an op_type of create are allowed in data streams",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &hosts(&emu));
    let mut agent = run_follow(&sim, &config, &[]);
    agent.until("the refused item", WAIT, |_| emu.requests().iter().any(|r| r.items.contains(&400))).await;
    let status = agent.terminate(WAIT).await;
    assert!(status.success(), "{}", agent.tail());
    assert!(dead_letters(&config).await.is_empty(), "an operator's error dead-letters nothing");
    assert!(!emu.documents().iter().any(|d| d.source.to_string().contains(&held)));

    emu.clear_refusals();
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 20);
    sim.shutdown().await;
}

/// A cluster published under a path by a reverse proxy (`hosts = ["http://proxy/es/"]`): the
/// sink's requests keep the prefix, and `check --connect` finds the node and the template there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_a_path_prefix_keeps_it() {
    let sim = simulator(10).await;
    let emu = EsEmulator::start(EsOptions { path_prefix: "/es".into(), ..EsOptions::default() }).await;
    emu.install_template("auditrelay-ocsf", auditrelay::sinks::elasticsearch::template("auditrelay.ocsf", false));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("hosts = [\"{}/es/\"]\n", emu.url()));
    let (code, stdout) = check_connect(&config, &sim).await;
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert_eq!((code, result.as_str()), (Some(0), "ok"), "{stdout}");
    assert!(detail.contains("auditrelay-ocsf present"), "{detail}");
    run_once(&sim, &config, &[]).await;
    assert_all_indexed_once(&emu, dir.path(), 10);
    assert!(
        emu.requests().iter().all(|r| r.path == "/es/_bulk"),
        "{:?}",
        emu.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
    let others: Vec<String> =
        emu.other_requests().iter().map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect();
    assert!(others.iter().all(|o| o.ends_with(" 200")), "{others:?}");
    sim.shutdown().await;
}

/// A genuine mapping conflict (no scripted fault): with the shipped template `ocsf.message`
/// is `text`, and an event whose `message` is an object is refused by the cluster: that event
/// alone is dead-lettered with the cluster's reason, the others are indexed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_the_mapping_refuses_is_dead_lettered_alone() {
    use harness::sinks::{ocsf_events, queue_with, sink_config, start_worker, uid};
    let emu = EsEmulator::start(EsOptions::default()).await;
    put_cli_template(&emu, false).await;
    let mut events: Vec<Vec<u8>> = ocsf_events()[..20].to_vec();
    let mut odd: Value = serde_json::from_slice(&events[12]).unwrap();
    odd["message"] = json!({"text": "an object where the mapping has text"});
    events[12] = serde_json::to_vec(&odd).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["elasticsearch"], &events).await;
    let cfg = sink_config(dir.path(), "elasticsearch", &hosts(&emu));
    let stats = tokio::time::timeout(WAIT, start_worker(cfg, &queue).drain()).await.expect("drained");
    assert_eq!((stats.events, stats.dead_lettered), (19, 1), "{stats:?}");
    let letters = queue.dead_letters(10).await.unwrap();
    assert_eq!(letters[0].raw, events[12]);
    assert!(
        letters[0].reason.contains("document_parsing_exception")
            && letters[0].reason.contains("failed to parse field [ocsf.message] of type [text]"),
        "{}",
        letters[0].reason
    );
    let seen = ids(&emu);
    assert_eq!(seen.len(), 19);
    assert!(seen.values().all(|n| *n == 1));
    assert!(!seen.contains_key(&uid(&events[12])));
}

/// Vendors disagree on value types, and the shipped template's promise is that no such
/// disagreement under `ocsf.*` is a mapping error (a dead letter). A string field that looks
/// like a date in one event is detected as `date` by Elasticsearch's default
/// `date_detection` (documented: a `match_mapping_type: string` dynamic template does not apply
/// to it); the same field in another vendor's format in a later event must still be indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_looking_string_then_another_format_is_no_mapping_error_under_the_shipped_template() {
    use harness::sinks::{ocsf_events, queue_with, sink_config, start_worker, uid};
    let emu = EsEmulator::start(EsOptions::default()).await;
    put_cli_template(&emu, false).await;
    let mut events: Vec<Vec<u8>> = ocsf_events()[..20].to_vec();
    for (i, body) in events.iter_mut().enumerate() {
        let mut event: Value = serde_json::from_slice(body).unwrap();
        // The vendor's own time, as Aitronos (RFC 3339) and as a vendor writing RFC 2822.
        event["metadata"]["original_time"] =
            json!(if i == 10 { "Wed, 18 Mar 2026 11:00:00 +0000" } else { "2026-03-18T11:00:00Z" });
        *body = serde_json::to_vec(&event).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["elasticsearch"], &events).await;
    let cfg = sink_config(dir.path(), "elasticsearch", &hosts(&emu));
    let stats = tokio::time::timeout(WAIT, start_worker(cfg, &queue).drain()).await.expect("drained");
    let letters = queue.dead_letters(10).await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(
        (stats.events, stats.dead_lettered),
        (20, 0),
        "ocsf.metadata.original_time is mapped as {:?}; dead letters: {reasons:?}",
        emu.field_type(STREAM, "ocsf.metadata.original_time")
    );
    let seen = ids(&emu);
    assert!(events.iter().all(|e| seen.get(&uid(e)) == Some(&1)));
}

/// The operator commands read the configuration the agent runs with: `auditrelay queue
/// dead-letters` must accept a file whose Elasticsearch sink has an `api_key` (as it accepts a
/// HEC token), whether or not the key's variable is set where the operator runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_dead_letters_reads_a_config_with_an_elasticsearch_api_key() {
    let sim = simulator(5).await;
    let emu = EsEmulator::start(EsOptions { api_keys: vec![base64("id:key")], ..EsOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("{}api_key = \"id:key\"\n", hosts(&emu)));
    run_once(&sim, &config, &[]).await;
    assert_eq!(emu.document_count(), 5);
    assert!(dead_letters(&config).await.is_empty());
    sim.shutdown().await;
}
