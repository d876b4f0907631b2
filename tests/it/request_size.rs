//! Issue 21: `batch_max_bytes` bounds a request as the receiver gets it (each event with what
//! the sink wraps it in), so a receiver whose documented limit is the bound never answers 413
//! for a batch filled to it. The HEC case (the default bound against the collector's default
//! limit) is in `hec.rs`; here the sinks whose receiver's limit an operator sets the bound to.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::es_emulator::{EsEmulator, EsOptions};
use crate::harness::sinks::{queue_with, start_worker, uid};
use crate::hec::events_of_about;

/// A sink `name` of `kind` from these TOML lines, with the default batch bounds unless the
/// lines set them, quick back-off and a 5 s timeout.
pub(crate) fn sink_with_defaults(dir: &std::path::Path, kind: &str, lines: &str) -> auditrelay::config::SinkConfig {
    let path = dir.join(format!("{kind}.toml"));
    let toml = format!(
        "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"ORG_A\"\n\
         api_key = \"k\"\n[[sinks]]\nname = \"{kind}\"\ntype = \"{kind}\"\n\
         backoff = {{ initial = \"20ms\", max = \"200ms\" }}\ntimeout = \"5s\"\n{lines}\n"
    );
    std::fs::write(&path, toml).unwrap();
    auditrelay::config::Config::load(&path).unwrap().sinks.remove(0)
}

/// An operator on a cluster whose `http.max_content_length` is 256 KiB (AWS OpenSearch's small
/// instances have 10 MiB, Elasticsearch's default is 100 MiB: the same shape, smaller) sets
/// `batch_max_bytes` to it. Each document is its `create` action line and a head (`@timestamp`,
/// `data_stream`, `event`) around the event, about a tenth more than the event: a batch of
/// queued bodies filled to the bound made a request over the limit, answered 413 and halved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elasticsearch_bulk_request_fits_a_bound_set_to_the_clusters_limit() {
    let limit = 256 * 1024;
    let events = events_of_about(600, 2_048);
    let es = EsEmulator::start(EsOptions { max_content_length: limit, ..EsOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["elasticsearch"], &events).await;
    let lines = format!("hosts = [{:?}]\nbatch_max_bytes = \"256 KiB\"\n", es.url());
    let cfg = sink_with_defaults(dir.path(), "elasticsearch", &lines);
    assert_eq!((cfg.batch_max_events, cfg.batch_max_bytes), (500, limit));
    let stats = start_worker(cfg, &queue).drain().await;
    assert_eq!((stats.events, stats.dead_lettered), (600, 0), "{stats:?}");
    let ids = es.indexed_ids();
    assert!(events.iter().all(|e| ids.contains(&uid(e))), "every event indexed");

    let requests = es.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    let sizes: Vec<usize> = requests.iter().map(|r| r.decoded_len).collect();
    assert!(statuses.iter().all(|s| *s == 200), "every request taken at once: {statuses:?}, sizes {sizes:?}");
    assert!(sizes.iter().all(|s| *s <= limit), "no request over the bound: {sizes:?}");
    let documents: usize = sizes.iter().sum();
    let implied = documents.div_ceil(limit);
    assert!(
        requests.len() <= implied + 1,
        "{} requests for {documents} bytes of documents, where the {limit}-byte bound implies {implied}: {sizes:?}",
        requests.len()
    );
    assert_eq!((stats.splits, stats.errors_refused, stats.errors_server), (0, 0, 0), "{stats:?}");
}

/// OTLP does not wrap the event in bytes the loop can add up: each event becomes a `LogRecord`
/// (the event as a kvlist, or its JSON text, with times, severity and `ocsf.*` attributes), so
/// the sink says nothing to the loop (`Protocol::wrapping`: nothing). At the default bound
/// (1 MiB of events) the protobuf request must stay well under the 4 MiB a gRPC server takes by
/// default (PROTOCOLS §3), the tightest documented limit; this pins the expansion (measured:
/// see the message) so a growth of the `LogRecord` shows here first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_otlp_request_at_the_default_bound_stays_under_grpcs_4_mib() {
    use prost::Message as _;
    let events = events_of_about(1_500, 2_048);
    let receiver = crate::otlp_receiver::Receiver::start(None).await;
    let dir = tempfile::tempdir().unwrap();
    let queue = queue_with(dir.path(), &["otlp"], &events).await;
    let lines = format!("endpoint = {:?}\nprotocol = \"grpc\"\n", receiver.grpc_url());
    let cfg = sink_with_defaults(dir.path(), "otlp", &lines);
    let bound = cfg.batch_max_bytes;
    let stats = start_worker(cfg, &queue).drain().await;
    assert_eq!((stats.events, stats.dead_lettered, stats.splits), (1_500, 0, 0), "{stats:?}");
    let exports = receiver.exports();
    let sizes: Vec<usize> = exports.iter().map(|e| e.request.encoded_len()).collect();
    let largest = sizes.iter().copied().max().unwrap();
    let records: usize = exports
        .iter()
        .flat_map(|e| &e.request.resource_logs)
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    assert_eq!(records, 1_500);
    let expansion = sizes.iter().sum::<usize>() as f64 / events.iter().map(Vec::len).sum::<usize>() as f64;
    eprintln!("otlp grpc at a {bound}-byte bound: exports of {sizes:?} bytes, {expansion:.3} bytes a queued byte");
    assert!(
        largest <= 3 * 1024 * 1024,
        "an export of {largest} bytes at a {bound}-byte bound (requests {sizes:?}; {expansion:.2} bytes a queued byte)"
    );
}
