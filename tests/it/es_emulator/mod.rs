//! An Elasticsearch / OpenSearch `_bulk` emulator for the Elasticsearch sink's tests.
//!
//! Neither Elasticsearch nor OpenSearch can be installed on the project's machines, so this is a
//! small axum app on 127.0.0.1 (plain HTTP, or HTTPS with a test certificate) that implements the
//! *documented* behaviour the sink relies on. It is an emulator of documented behaviour, not the
//! product: where the documentation is silent the choice made here is written down, below and
//! next to the code. It owns no assertion about the sink; tests read what it recorded.
//!
//! # Documented behaviour covered
//! Sources: Elastic's reference for the bulk API, data streams, index templates, mapping,
//! `filter_path` and security; OpenSearch's for the same and for `GET /`.
//! 1. `POST|PUT /_bulk` and `/{index}/_bulk` (the path's index is the default `_index`): an NDJSON
//!    body of action lines (`create`, `index`, `delete`; `update` is refused, see below) each
//!    followed by its document (none after `delete`). The body must end with a newline, and the
//!    `Content-Type` must be `application/json` or `application/x-ndjson` (406 otherwise).
//!    A malformed action line fails the whole request (400, `illegal_argument_exception`).
//! 2. The answer is 200 even when items failed: `{"took","errors","items":[{"<op>":{"_index",
//!    "_id","status",…}}]}`, items in request order; a failed item carries `"error":{"type",
//!    "reason",…}` and is not indexed, the others are ("the bulk API never fails as a whole
//!    because one item failed").
//! 3. `?filter_path=` keeps only the listed paths of the answer (comma-separated, `*` matches one
//!    key, arrays are traversed), e.g. `errors,items.*.status,items.*.error`.
//! 4. Data streams: a name matching the `index_patterns` of a template with a `data_stream`
//!    object is a data stream (Elasticsearch ships the built-in `logs-*-*` one; so the default
//!    [`EsOptions::data_stream_patterns`]). Only `create` is allowed on it: `index` and `delete`
//!    are item 400 `illegal_argument_exception` "only write ops with an op_type of create are
//!    allowed in data streams". Every document needs `@timestamp` (item 400, the parsing
//!    exception, "data stream timestamp field [@timestamp] is missing"). Documents go to the
//!    write (newest) backing index `.ds-<stream>-<yyyy.MM.dd>-<generation>`.
//!    `data_stream.type|dataset|namespace` are `constant_keyword` (the built-in `logs@mappings`):
//!    the first value fixes each, another value is an item 400.
//! 5. `_id`: `create` of an `_id` that exists in the *same backing index* is item 409
//!    `version_conflict_engine_exception` "[id]: version conflict, document already exists
//!    (current version [1])"; `index` overwrites (200 "updated"). Elastic documents that the
//!    `_id` is unique per backing index only: [`EsEmulator::roll_over`] starts a new backing
//!    index, after which the same `_id` is accepted again (a duplicate, as in the product).
//! 6. Mapping (per backing index, seeded from the matching template's `mappings`): a field's first
//!    type fixes it (dynamic mapping: boolean, long, float, date for strings that look like
//!    `strict_date_optional_time`, else text with a `.keyword` sub-field; objects are objects);
//!    a later value of an incompatible type is item 400 `document_parsing_exception`
//!    (Elasticsearch ≥ 8.8) or `mapper_parsing_exception` (OpenSearch, older Elasticsearch),
//!    "failed to parse field [x] of type [long] …" or "object mapping for [x] tried to parse
//!    field [x] as object, but found a concrete value". `flattened` (Elasticsearch),
//!    `flat_object` (OpenSearch) and `enabled: false` hold any value without new fields;
//!    `dynamic: false` ignores unknown sub-fields, `dynamic: strict` refuses them
//!    (`strict_dynamic_mapping_exception`). More than `index.mapping.total_fields.limit`
//!    mapped fields (default 1000; a sub-field counts) is an item 400 "Limit of total fields
//!    [1000] has been exceeded".
//! 7. Security (when [`EsOptions::api_keys`] or [`EsOptions::users`] is set): `Authorization:
//!    ApiKey <base64(id:key)>` or `Basic <base64(user:password)>`; none or an unknown one is 401
//!    `security_exception` with `WWW-Authenticate: Basic realm="security" charset="UTF-8"` and
//!    `WWW-Authenticate: ApiKey`; a known key without write privileges
//!    ([`EsOptions::read_only_api_keys`]) is 403 `security_exception` "action
//!    [indices:data/write/bulk] is unauthorized …" on writes.
//! 8. `http.max_content_length` (default 100mb): a body larger after gzip decoding is answered
//!    413 with an empty body (Netty's answer; the docs give no body).
//! 9. `GET /`: Elasticsearch's `{"version":{"number"},"tagline":"You Know, for Search"}` with
//!    the `X-Elastic-Product: Elasticsearch` header (sent on every answer of the emulated
//!    Elasticsearch, as 7.14 and later do); OpenSearch's `{"version":{"distribution":
//!    "opensearch","number"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`
//!    without that header.
//! 10. `PUT /_index_template/<name>` (composable templates; both products): the body must have
//!     `index_patterns`; unknown top-level keys are 400 `x_content_parse_exception`, an unknown
//!     field type 400 `mapper_parsing_exception` "No handler for type [x] declared on field
//!     [y]" (so `flattened`, `constant_keyword`, `match_only_text`, `wildcard` are refused by
//!     OpenSearch, `flat_object` by Elasticsearch), and OpenSearch refuses ILM's
//!     `index.lifecycle.*` settings ("unknown setting"). `GET /_index_template/<name>` answers
//!     `{"index_templates":[{"name","index_template"}]}` or 404 `resource_not_found_exception`.
//!     A template with `data_stream` makes its patterns data streams.
//!
//! # Faults a real installation meets, as knobs
//! [`Fault`]s are queued for the next `_bulk` requests, one per request: a whole-request error
//! in Elasticsearch's error shape (429 `es_rejected_execution_exception` with or without
//! `Retry-After`, 500, 502/503/504 from a proxy), per-item errors in a 200 answer with
//! `errors: true` ([`Fault::Items`], [`Fault::AllItems`]: 429 `es_rejected_execution_exception`,
//! 500, 503 `unavailable_shards_exception`, …), a cut connection, a redirect to a login page
//! that answers 200 HTML ([`LOGIN_PATH`]), any raw answer (a 200 with HTML).
//! [`EsEmulator::refuse_items_containing`] refuses every item whose document holds a marker
//! (a poison event) with a chosen status and error type, until cleared.
//! [`EsOptions::path_prefix`] publishes the cluster under a path, as a reverse proxy does.
//!
//! # Choices where the docs are silent
//! - `update` actions are answered item 400 (the sink never sends them; not emulated).
//! - Template priority is not modelled: a name matching several templates takes the mappings
//!   of the first installed; a `data_stream` template adds its patterns to the data streams.
//! - A `Fault` is taken before authentication and used up even if the request then fails.
//! - No ECS mappings of the built-in `logs-*-*` template beyond `@timestamp` (date) and
//!   `data_stream.*` (constant_keyword): the ECS dynamic templates are not emulated.
//! - Documents are kept as received (no ingest pipeline, no `event.ingested`).
//!
//! [`EsEmulator::stop`] closes the port and every open connection; [`EsEmulator::restart`]
//! serves again on the same port with everything kept.
#![allow(dead_code)] // each test module uses a different part of the emulator
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value, json};

use crate::harness::pki::Pki;

// The listener whose connections can be cut (Fault::Disconnect, stop), shared with the HEC
// emulator. `super::`: declared beside this emulator, at the `it` crate's root and in
// the benchmarks' `common` (hec_emulator) or crate root (es_emulator).
use super::killable::{Conn, Serving};

/// The login page a [`Fault::Redirect`] may point at: 200 with HTML for any method.
pub const LOGIN_PATH: &str = "/login";

/// Elasticsearch's default `http.max_content_length`: 100mb.
pub const DEFAULT_MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;

/// Elasticsearch's default `index.mapping.total_fields.limit`.
pub const DEFAULT_TOTAL_FIELDS_LIMIT: usize = 1000;

/// Which product the emulator answers as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch with this version number (`"8.15.0"`); from 8.8 on a parsing failure is a
    /// `document_parsing_exception`, before it a `mapper_parsing_exception`.
    Elasticsearch(String),
    /// OpenSearch with this version number (`"2.17.0"`).
    OpenSearch(String),
}

/// How the emulated cluster behaves.
#[derive(Clone, Debug)]
pub struct EsOptions {
    pub flavor: Flavor,
    /// Accepted `Authorization: ApiKey <value>` values (the base64 of `id:key`). With this and
    /// `users` both empty, security is off and `Authorization` is ignored.
    pub api_keys: Vec<String>,
    /// API keys that authenticate but may not write (403 on `_bulk` and template writes).
    pub read_only_api_keys: Vec<String>,
    /// Accepted basic-auth users: (name, password).
    pub users: Vec<(String, String)>,
    /// Index patterns that are data streams before any template is installed (Elasticsearch's
    /// built-in `logs-*-*`).
    pub data_stream_patterns: Vec<String>,
    /// `http.max_content_length`, on the decoded body.
    pub max_content_length: usize,
    /// Serve HTTPS with the server certificate of this PKI.
    pub tls: Option<Pki>,
    /// Keep each document's source (off for benchmarks: only `_index` and `_id` are kept).
    pub keep_sources: bool,
    /// The benchmarks' receiver ([`EsOptions::lean`]): a request with nothing scripted is only
    /// counted and its `_id`s checked, without keeping or parsing its documents.
    pub lean: bool,
    /// Serve under this path (`/es`), as a reverse proxy publishing the cluster at
    /// `https://proxy/es/` does; empty: at the root.
    pub path_prefix: String,
}

impl Default for EsOptions {
    fn default() -> Self {
        EsOptions {
            flavor: Flavor::Elasticsearch("8.15.0".to_owned()),
            api_keys: Vec::new(),
            read_only_api_keys: Vec::new(),
            users: Vec::new(),
            data_stream_patterns: vec!["logs-*-*".to_owned()],
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
            tls: None,
            keep_sources: true,
            lean: false,
            path_prefix: String::new(),
        }
    }
}

impl EsOptions {
    /// OpenSearch 2.17.0, otherwise the defaults. OpenSearch ships no `logs-*-*` data-stream
    /// template: names are data streams only once a template says so.
    pub fn opensearch() -> EsOptions {
        EsOptions {
            flavor: Flavor::OpenSearch("2.17.0".to_owned()),
            data_stream_patterns: Vec::new(),
            ..EsOptions::default()
        }
    }

    /// The receiver of `cargo bench --bench e2e`, cheap enough that the agent, not the emulator,
    /// is what the benchmark measures. A `_bulk` request with no [`Fault`] queued and no
    /// [`EsEmulator::refuse_items_containing`] in force is decompressed once and read line by
    /// line: each action line is parsed (its op, `_index`, `_id`), each document line is only
    /// checked to be a JSON object holding the text `"@timestamp"`; nothing of it is kept
    /// (`BulkRequest::body` stays empty, [`Doc`]s are not recorded: [`EsEmulator::document_count`]
    /// and [`EsEmulator::indexed_ids`] say what was indexed). `_id` conflicts (409) and data-stream
    /// rules (only `create`) hold as always; documents are not mapped, so field types and the
    /// field limit are not checked. Items carry `_index`, `_id`, `status` and `result` (`error`
    /// when failed), all that `filter_path=errors,items.*.status,items.*.error` keeps. Anything
    /// else (a failed check, another op, a document not an object) is handed to the full
    /// processing, which answers it as without `lean`.
    pub fn lean(api_keys: Vec<String>) -> EsOptions {
        EsOptions { api_keys, keep_sources: false, lean: true, ..EsOptions::default() }
    }

    fn is_opensearch(&self) -> bool {
        matches!(self.flavor, Flavor::OpenSearch(_))
    }

    fn security(&self) -> bool {
        !(self.api_keys.is_empty() && self.users.is_empty() && self.read_only_api_keys.is_empty())
    }

    /// The exception type of a document that does not fit the mapping.
    fn parsing_exception(&self) -> &'static str {
        match &self.flavor {
            Flavor::OpenSearch(_) => "mapper_parsing_exception",
            Flavor::Elasticsearch(v) => {
                let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
                let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
                if (major, minor) >= (8, 8) { "document_parsing_exception" } else { "mapper_parsing_exception" }
            }
        }
    }
}

/// The error of one bulk item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    pub status: u16,
    /// Elasticsearch's exception type, e.g. `es_rejected_execution_exception`.
    pub kind: String,
    pub reason: String,
}

impl ItemError {
    pub fn new(status: u16, kind: &str, reason: &str) -> ItemError {
        ItemError { status, kind: kind.to_owned(), reason: reason.to_owned() }
    }

    /// 429: the write thread pool's queue is full.
    pub fn rejected() -> ItemError {
        ItemError::new(
            429,
            "es_rejected_execution_exception",
            "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=0]",
        )
    }

    /// 503: the primary shard is not active.
    pub fn unavailable() -> ItemError {
        ItemError::new(
            503,
            "unavailable_shards_exception",
            "[.ds-emulated][0] primary shard is not active Timeout: [1m]",
        )
    }

    /// 500: an unexpected failure on the shard.
    pub fn internal() -> ItemError {
        ItemError::new(500, "exception", "emulated internal failure on the shard")
    }

    /// 400: the document does not fit the mapping (type as the flavor names it).
    pub fn parsing(opts: &EsOptions, reason: &str) -> ItemError {
        ItemError::new(400, opts.parsing_exception(), reason)
    }
}

/// A scripted answer for the next `_bulk` request(s), consumed in order, one per request, when
/// the request arrives, before anything else is checked.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Nothing scripted: processed normally (a place holder, so a later fault hits a later
    /// request).
    Pass,
    /// Answer this status with Elasticsearch's error body `{"error":{"root_cause":[…],"type",
    /// "reason"},"status"}`; `retry_after` adds `Retry-After: <seconds>`. Nothing is indexed.
    Status { status: u16, kind: String, reason: String, retry_after: Option<u64> },
    /// Process the request, but the items at these 0-based positions fail with these errors
    /// (not indexed); the answer is 200 with `errors: true`.
    Items(Vec<(usize, ItemError)>),
    /// Process the request, but every item fails with this error (200, `errors: true`).
    AllItems(ItemError),
    /// Drop the connection without answering. Recorded with status 0.
    Disconnect,
    /// Process the request (its documents are indexed), then drop the connection before the
    /// answer: the answer is lost on the way, so a client sends the same documents again.
    /// Recorded with status 0 and the item statuses it would have had.
    TakeThenDisconnect,
    /// Answer `status` (3xx) with `Location: location` and an empty body, as a proxy sending an
    /// unauthenticated client to its login page does.
    Redirect { status: u16, location: String },
    /// Answer `status` with this `Content-Type` and body (a proxy's page). No product header.
    Raw { status: u16, content_type: String, body: String },
}

impl Fault {
    /// A whole-request 429 `es_rejected_execution_exception`.
    pub fn too_many_requests(retry_after: Option<u64>) -> Fault {
        let e = ItemError::rejected();
        Fault::Status { status: 429, kind: e.kind, reason: e.reason, retry_after }
    }

    /// A whole-request status from a proxy in front of the cluster (502, 503, 504).
    pub fn gateway(status: u16) -> Fault {
        Fault::Raw {
            status,
            content_type: "text/html".to_owned(),
            body: format!("<html><body><h1>{status}</h1>upstream unavailable</body></html>"),
        }
    }
}

/// One document as indexed.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The `_index` the action named (a data stream, index or alias).
    pub target: String,
    /// The concrete index it went to (a data stream's backing index).
    pub index: String,
    pub id: String,
    /// The document as received (`Null` without [`EsOptions::keep_sources`]).
    pub source: Value,
}

/// One `_bulk` request as received.
#[derive(Clone, Debug)]
pub struct BulkRequest {
    /// The path as the client sent it, e.g. `/_bulk`, or `/es/_bulk` with a path prefix.
    pub path: String,
    /// The raw query string (`filter_path=…`), empty when none.
    pub query: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    /// The body's length on the wire (compressed, if it was).
    pub raw_len: usize,
    /// The decoded body (the raw bytes when decoding failed); empty when taken by
    /// [`EsOptions::lean`].
    pub body: Vec<u8>,
    /// The decoded body's length (also when taken by [`EsOptions::lean`]).
    pub decoded_len: usize,
    /// The HTTP status answered; 0 for a cut connection.
    pub status: u16,
    /// Each item's status, in order (empty when the request failed as a whole).
    pub items: Vec<u16>,
}

/// Any other request (`GET /`, templates), for header checks.
#[derive(Clone, Debug)]
pub struct OtherRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub status: u16,
}

/// The emulator: one server on 127.0.0.1 and a port chosen at start, kept across
/// [`stop`](EsEmulator::stop) / [`restart`](EsEmulator::restart).
pub struct EsEmulator {
    shared: Arc<Shared>,
    server: Serving,
}

impl EsEmulator {
    /// Starts serving on 127.0.0.1 and a free port.
    pub async fn start(opts: EsOptions) -> EsEmulator {
        let acceptor = opts.tls.as_ref().map(tls_acceptor);
        let shared = Arc::new(Shared { opts, acceptor, state: Mutex::new(EmuState::default()) });
        let server = Serving::start("ES emulator", shared.acceptor.clone(), router(shared.clone())).await;
        EsEmulator { shared, server }
    }

    /// `http://127.0.0.1:PORT` (with TLS `https://localhost:PORT`, the certificate's name),
    /// without a trailing slash.
    pub fn url(&self) -> String {
        match self.shared.acceptor {
            Some(_) => format!("https://localhost:{}", self.server.addr().port()),
            None => format!("http://{}", self.server.addr()),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Queues a scripted answer for the next `_bulk` request (after those already queued).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.lock().faults.push_back(fault);
    }

    /// Forgets every scripted fault not yet used.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Scripted faults not yet used.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// From now on, every item whose document's JSON text contains `marker` fails with `error`.
    pub fn refuse_items_containing(&self, marker: &str, error: ItemError) {
        self.shared.lock().poison.push((marker.to_owned(), error));
    }

    /// Forgets every [`EsEmulator::refuse_items_containing`].
    pub fn clear_refusals(&self) {
        self.shared.lock().poison.clear();
    }

    /// Starts a new write index for `target` (a data stream's next generation): an `_id` in the
    /// older backing indices no longer conflicts. Creates the target if it does not exist.
    pub fn roll_over(&self, target: &str) {
        let mut guard = self.shared.lock();
        let state = &mut *guard;
        let t = target_named(&mut state.targets, &self.shared.opts, &state.templates, target);
        t.roll_over(target, &state.templates);
    }

    /// Every document indexed so far, in order.
    pub fn documents(&self) -> Vec<Doc> {
        self.shared.lock().documents.clone()
    }

    /// How many documents are indexed (cheaper than [`EsEmulator::documents`] in a poll loop),
    /// those taken by [`EsOptions::lean`] included.
    pub fn document_count(&self) -> usize {
        let state = self.shared.lock();
        state.documents.len() + state.lean_documents
    }

    /// The `_id` of every document indexed, over every target and backing index (a set: the
    /// same `_id` in two backing indices, after a rollover, is one entry). Also with
    /// [`EsOptions::lean`], which keeps no [`Doc`].
    pub fn indexed_ids(&self) -> HashSet<String> {
        let state = self.shared.lock();
        state.targets.values().flat_map(|t| t.backing.iter()).flat_map(|b| b.ids.iter().cloned()).collect()
    }

    /// The backing indices of `target`, oldest first (a plain index: itself, then its rollovers).
    pub fn backing_indices(&self, target: &str) -> Vec<String> {
        self.shared
            .lock()
            .targets
            .get(target)
            .map(|t| t.backing.iter().map(|b| b.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Whether `target` is a data stream (it exists and matched a data-stream pattern).
    pub fn is_data_stream(&self, target: &str) -> Option<bool> {
        self.shared.lock().targets.get(target).map(|t| t.data_stream)
    }

    /// The mapped type of a dotted field path in `target`'s write index (`None`: unmapped).
    pub fn field_type(&self, target: &str, path: &str) -> Option<String> {
        let state = self.shared.lock();
        let mapping = &state.targets.get(target)?.backing.last()?.mapping;
        mapping.type_of(path)
    }

    /// How many fields `target`'s write index maps (objects and sub-fields included).
    pub fn field_count(&self, target: &str) -> usize {
        let state = self.shared.lock();
        state.targets.get(target).and_then(|t| t.backing.last()).map_or(0, |b| b.mapping.count())
    }

    /// Every `_bulk` request, in arrival order.
    pub fn requests(&self) -> Vec<BulkRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every other request (`GET /`, templates, unknown paths), in arrival order.
    pub fn other_requests(&self) -> Vec<OtherRequest> {
        self.shared.lock().others.clone()
    }

    /// The installed index templates, by name.
    pub fn templates(&self) -> BTreeMap<String, Value> {
        self.shared.lock().templates.iter().map(|(n, t)| (n.clone(), t.clone())).collect()
    }

    /// Installs a template as `PUT /_index_template/<name>` would (unchecked).
    pub fn install_template(&self, name: &str, template: Value) {
        self.shared.lock().put_template(name, template);
    }

    /// How many requests reached the login page ([`LOGIN_PATH`]).
    pub fn login_hits(&self) -> usize {
        self.shared.lock().login_hits
    }

    /// Waits until at least `n` documents are indexed and returns them all; panics after
    /// `timeout` of wall-clock time, listing what the emulator answered.
    pub async fn wait_for_documents(&self, n: usize, timeout: Duration) -> Vec<Doc> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.document_count() >= n {
                return self.documents();
            }
            if Instant::now() >= deadline {
                let answered: Vec<(u16, usize)> = self.requests().iter().map(|r| (r.status, r.items.len())).collect();
                panic!(
                    "ES emulator: waited {timeout:?} for {n} documents, have {}; _bulk requests answered (status, items) {answered:?}",
                    self.document_count()
                );
            }
            // The observer's polling interval, not a wait for the condition.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving: the listening socket is closed (connections are refused) and every open
    /// connection is dropped. Nothing recorded is lost. Does nothing when stopped.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Serves again on the same port (stopping first if still serving), keeping everything.
    pub async fn restart(&self) {
        self.server.restart(router(self.shared.clone())).await;
    }
}

/// `base64(text)` (standard alphabet, padded): what `Authorization: Basic` and an API key's
/// `id:key` encoding carry.
pub fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

// ---------------------------------------------------------------------------------------------
// State

struct Shared {
    opts: EsOptions,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Mutex<EmuState>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, EmuState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct EmuState {
    faults: VecDeque<Fault>,
    poison: Vec<(String, ItemError)>,
    documents: Vec<Doc>,
    requests: Vec<BulkRequest>,
    others: Vec<OtherRequest>,
    /// Data streams and indices, by the name writes use.
    targets: HashMap<String, Target>,
    /// Installed templates in installation order (name, body).
    templates: Vec<(String, Value)>,
    login_hits: usize,
    auto_ids: u64,
    /// Documents indexed by [`EsOptions::lean`] (not in `documents`).
    lean_documents: usize,
}

impl EmuState {
    fn put_template(&mut self, name: &str, template: Value) {
        match self.templates.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = template,
            None => self.templates.push((name.to_owned(), template)),
        }
    }
}

/// The target `name`, created on first write (auto-create, as both products do by default): a
/// data stream when a data-stream pattern matches it.
fn target_named<'a>(
    targets: &'a mut HashMap<String, Target>,
    opts: &EsOptions,
    templates: &[(String, Value)],
    name: &str,
) -> &'a mut Target {
    targets.entry(name.to_owned()).or_insert_with(|| {
        let data_stream = opts.data_stream_patterns.iter().any(|p| wildcard_match(p, name))
            || templates
                .iter()
                .any(|(_, t)| t.get("data_stream").is_some() && patterns(t).iter().any(|p| wildcard_match(p, name)));
        let mut target = Target { data_stream, backing: Vec::new() };
        target.roll_over(name, templates);
        target
    })
}

/// A template's `index_patterns` (a string or an array of strings).
fn patterns(template: &Value) -> Vec<String> {
    match &template["index_patterns"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// `*` matches any run of characters (index patterns have no other wildcard).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

struct Target {
    data_stream: bool,
    /// Oldest first; the last is the write index.
    backing: Vec<Backing>,
}

impl Target {
    fn roll_over(&mut self, name: &str, templates: &[(String, Value)]) {
        let generation = self.backing.len() + 1;
        let index = if self.data_stream {
            format!(".ds-{name}-{}-{generation:06}", chrono::Utc::now().format("%Y.%m.%d"))
        } else if generation == 1 {
            name.to_owned()
        } else {
            // An alias with a write index rolls over to a new index; its name is the operator's
            // choice in the product, this one is the emulator's.
            format!("{name}-{generation:06}")
        };
        let template = templates.iter().find(|(_, t)| patterns(t).iter().any(|p| wildcard_match(p, name)));
        let mut mapping = Field::root();
        if self.data_stream {
            // The built-in logs@mappings: @timestamp a date, data_stream.* constant keywords.
            mapping.add_path("@timestamp", Field::leaf("date"));
            for key in ["type", "dataset", "namespace"] {
                mapping.add_path(&format!("data_stream.{key}"), Field::leaf("constant_keyword"));
            }
        }
        let mut limit = DEFAULT_TOTAL_FIELDS_LIMIT;
        let mut dynamic_templates = Vec::new();
        if let Some((_, t)) = template {
            if let Some(m) = t.pointer("/template/mappings") {
                mapping.merge_explicit(m);
                if let Some(Value::Array(list)) = m.get("dynamic_templates") {
                    dynamic_templates = list.clone();
                }
            }
            let settings = &t["template"]["settings"];
            let limit_value = settings
                .pointer("/index/mapping/total_fields/limit")
                .or_else(|| settings.get("index.mapping.total_fields.limit"))
                .or_else(|| settings.pointer("/mapping/total_fields/limit"));
            if let Some(n) = limit_value.and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))) {
                limit = n as usize;
            }
        }
        self.backing.push(Backing { name: index, ids: HashSet::new(), mapping, limit, dynamic_templates });
    }
}

struct Backing {
    /// The template's `dynamic_templates`, in order (`[{"name": {rule}}]`).
    dynamic_templates: Vec<Value>,
    name: String,
    ids: HashSet<String>,
    mapping: Field,
    limit: usize,
}

/// A mapping node: an object (with its sub-fields) or a leaf of a type.
#[derive(Clone, Debug)]
struct Field {
    /// `object`, `nested`, `flattened`, `flat_object` or a leaf type.
    kind: String,
    /// `false`: an object holding anything, unparsed (`enabled: false`).
    enabled: bool,
    /// `true`, `false` or `strict`.
    dynamic: String,
    props: BTreeMap<String, Field>,
    /// A `constant_keyword`'s value, fixed by the first document.
    constant: Option<String>,
    /// Multi-fields (`fields`), counted toward the limit.
    subfields: usize,
    /// A keyword's `ignore_above` (characters): a longer string is kept in `_source`, not indexed.
    ignore_above: Option<usize>,
}

impl Field {
    fn root() -> Field {
        Field {
            kind: "object".into(),
            enabled: true,
            dynamic: "true".into(),
            props: BTreeMap::new(),
            constant: None,
            subfields: 0,
            ignore_above: None,
        }
    }

    fn leaf(kind: &str) -> Field {
        Field { kind: kind.into(), ..Field::root() }
    }

    fn is_object(&self) -> bool {
        matches!(self.kind.as_str(), "object" | "nested")
    }

    /// Holds any value without mapping it.
    fn is_opaque(&self) -> bool {
        !self.enabled || matches!(self.kind.as_str(), "flattened" | "flat_object")
    }

    fn add_path(&mut self, path: &str, leaf: Field) {
        let mut node = self;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node.props.entry((*part).to_owned()).or_insert_with(Field::root);
        }
        node.props.insert(parts[parts.len() - 1].to_owned(), leaf);
    }

    /// Merges a template's `mappings` (`properties`, `dynamic`, `enabled`, `type`, `fields`).
    fn merge_explicit(&mut self, mapping: &Value) {
        if let Some(d) = mapping.get("dynamic") {
            self.dynamic = match d {
                Value::Bool(b) => b.to_string(),
                Value::String(s) => s.clone(),
                _ => "true".into(),
            };
        }
        if let Some(Value::Bool(e)) = mapping.get("enabled") {
            self.enabled = *e;
        }
        if let Some(Value::Object(props)) = mapping.get("properties") {
            for (name, def) in props {
                let kind = def.get("type").and_then(Value::as_str).unwrap_or("object");
                let child = self.props.entry(name.clone()).or_insert_with(|| Field::leaf(kind));
                child.kind = kind.to_owned();
                if let Some(Value::Object(fields)) = def.get("fields") {
                    child.subfields = fields.len();
                }
                if let Some(v) = def.get("value").and_then(Value::as_str) {
                    child.constant = Some(v.to_owned());
                }
                if let Some(n) = def.get("ignore_above").and_then(Value::as_u64) {
                    child.ignore_above = Some(n as usize);
                }
                child.merge_explicit(def);
            }
        }
    }

    fn type_of(&self, path: &str) -> Option<String> {
        let mut node = self;
        for part in path.split('.') {
            node = node.props.get(part)?;
        }
        Some(node.kind.clone())
    }

    fn count(&self) -> usize {
        self.props.values().map(|f| 1 + f.subfields + f.count()).sum()
    }

    /// Maps `doc` into this (object) node: new fields are added, a value of an incompatible
    /// type is refused with the reason Elasticsearch gives. `prefix` is the dotted path so far.
    fn index(
        &mut self,
        prefix: &str,
        doc: &Map<String, Value>,
        id: &str,
        dts: &[Value],
    ) -> Result<(), (String, &'static str)> {
        for (key, value) in doc {
            let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
            if value.is_null() {
                continue;
            }
            match self.props.get_mut(key) {
                Some(field) => field.check(&path, value, id, dts)?,
                None => match self.dynamic.as_str() {
                    "false" => {}
                    "strict" => {
                        return Err((
                            format!(
                                "[1:2] mapping set to strict, dynamic introduction of [{key}] within [{}] is not allowed",
                                if prefix.is_empty() { "_doc" } else { prefix }
                            ),
                            "strict_dynamic_mapping_exception",
                        ));
                    }
                    _ => {
                        let Some(mut field) = dynamic_template(dts, key, &path, value).or_else(|| dynamic_field(value))
                        else {
                            continue;
                        };
                        field.check(&path, value, id, dts)?;
                        self.props.insert(key.clone(), field);
                    }
                },
            }
        }
        Ok(())
    }

    /// Checks (and for objects, maps) one value against this field.
    fn check(&mut self, path: &str, value: &Value, id: &str, dts: &[Value]) -> Result<(), (String, &'static str)> {
        if self.is_opaque() {
            return Ok(());
        }
        if let Value::Array(items) = value {
            for item in items.iter().filter(|v| !v.is_null()) {
                self.check(path, item, id, dts)?;
            }
            return Ok(());
        }
        if self.is_object() {
            return match value {
                Value::Object(map) => self.index(path, map, id, dts),
                _ => Err((
                    format!(
                        "object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value"
                    ),
                    "",
                )),
            };
        }
        // Lucene's term limit (review19a): a keyword term over 32,766 UTF-8 bytes refuses the
        // document with an item 400 `illegal_argument_exception` "Document contains at least one
        // immense term …", unless `ignore_above` leaves the value unindexed.
        if let ("keyword", Value::String(s)) = (self.kind.as_str(), value)
            && s.len() > 32_766
            && self.ignore_above.is_none_or(|n| s.chars().count() <= n)
        {
            let prefix: String = s.chars().take(30).collect();
            return Err((
                format!(
                    "Document contains at least one immense term in field=\"{path}\" (whose UTF8 encoding is longer than \
                     the max length 32766), all of which were skipped.  Please correct the analyzer to not produce such \
                     terms.  The prefix of the first immense term is: '{prefix}...', original message: bytes can be at \
                     most 32766 in length; got {}",
                    s.len()
                ),
                "illegal_argument_exception",
            ));
        }
        let fits = match (self.kind.as_str(), value) {
            (_, Value::Object(_)) => false,
            ("long" | "integer" | "short" | "byte" | "unsigned_long", Value::Number(_)) => true,
            ("long" | "integer" | "short" | "byte" | "unsigned_long", Value::String(s)) => {
                s.trim().parse::<f64>().is_ok()
            }
            ("double" | "float" | "half_float" | "scaled_float", Value::Number(_)) => true,
            ("double" | "float" | "half_float" | "scaled_float", Value::String(s)) => s.trim().parse::<f64>().is_ok(),
            ("boolean", Value::Bool(_)) => true,
            ("boolean", Value::String(s)) => s == "true" || s == "false" || s.is_empty(),
            ("date" | "date_nanos", Value::Number(_)) => true,
            ("date" | "date_nanos", Value::String(s)) => looks_like_date(s),
            ("ip", Value::String(s)) => s.parse::<std::net::IpAddr>().is_ok(),
            ("constant_keyword", v) => {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match &self.constant {
                    None => {
                        self.constant = Some(text);
                        true
                    }
                    Some(c) if *c == text => true,
                    Some(c) => {
                        return Err((
                            format!(
                                "[constant_keyword] field [{path}] only accepts values that are equal to the value defined in the mappings [{c}], but got [{text}]"
                            ),
                            "",
                        ));
                    }
                }
            }
            ("keyword" | "text" | "match_only_text" | "wildcard" | "version", _) => true,
            (_, Value::Bool(_) | Value::Number(_) | Value::String(_)) => false,
            _ => true,
        };
        if fits {
            Ok(())
        } else {
            let preview = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Err((
                format!(
                    "[1:2] failed to parse field [{path}] of type [{}] in document with id '{id}'. Preview of field's value: '{preview}'",
                    self.kind
                ),
                "",
            ))
        }
    }
}

/// The type dynamic mapping detects for a value, as `match_mapping_type` names it: a string
/// that passes date detection is `date`, not `string`.
fn detected_type(value: &Value) -> Option<&'static str> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "double",
        Value::String(s) if looks_like_date(s) => "date",
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(items) => return items.iter().find_map(detected_type),
    })
}

/// The field the first matching dynamic template makes of a new field (`match_mapping_type`,
/// `match`/`unmatch` on the name, `path_match`/`path_unmatch` on the dotted path; each a
/// string or a list of patterns), or `None` when none matches.
fn dynamic_template(dts: &[Value], name: &str, path: &str, value: &Value) -> Option<Field> {
    let detected = detected_type(value)?;
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    };
    let any_match = |rule: &Value, key: &str, subject: &str| -> Option<bool> {
        rule.get(key).map(|p| list(p).iter().any(|p| p == "*" || wildcard_match(p, subject)))
    };
    for entry in dts {
        let Some((_, rule)) = entry.as_object().and_then(|o| o.iter().next()) else { continue };
        if any_match(rule, "match_mapping_type", detected) == Some(false)
            || any_match(rule, "match", name) == Some(false)
            || any_match(rule, "unmatch", name) == Some(true)
            || any_match(rule, "path_match", path) == Some(false)
            || any_match(rule, "path_unmatch", path) == Some(true)
        {
            continue;
        }
        let mapping = &rule["mapping"];
        let kind = match mapping.get("type").and_then(Value::as_str) {
            None | Some("{dynamic_type}") => match detected {
                "string" => "text",
                "double" => "float",
                other => other,
            },
            Some(kind) => kind,
        };
        let mut field = if kind == "object" { Field::root() } else { Field::leaf(kind) };
        field.ignore_above = mapping.get("ignore_above").and_then(Value::as_u64).map(|n| n as usize);
        if let Some(Value::Object(fields)) = mapping.get("fields") {
            field.subfields = fields.len();
        }
        if let Some(Value::Bool(e)) = mapping.get("enabled") {
            field.enabled = *e;
        }
        return Some(field);
    }
    None
}

/// The field dynamic mapping makes of a first value (`None` for an empty array or null).
fn dynamic_field(value: &Value) -> Option<Field> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => Field::leaf("boolean"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Field::leaf("long"),
        Value::Number(_) => Field::leaf("float"),
        Value::String(s) if looks_like_date(s) => Field::leaf("date"),
        // text with a `keyword` multi-field: two fields toward the limit.
        Value::String(_) => Field { subfields: 1, ..Field::leaf("text") },
        Value::Object(_) => Field::root(),
        Value::Array(items) => return items.iter().find_map(dynamic_field),
    })
}

/// `strict_date_optional_time` as dynamic date detection applies it: `yyyy-MM-dd`, optionally
/// followed by `T` and a time.
fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    let date = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    if !date {
        return false;
    }
    b.len() == 10
        || (b[10] == b'T'
            && (chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()))
}

// ---------------------------------------------------------------------------------------------
// Answers

/// An HTTP status and a JSON body.
type Answer = (u16, Value);

/// Elasticsearch's error body.
fn es_error(status: u16, kind: &str, reason: &str) -> Answer {
    let cause = json!({ "type": kind, "reason": reason });
    (status, json!({ "error": { "root_cause": [cause], "type": kind, "reason": reason }, "status": status }))
}

fn item_error_body(error: &ItemError, index: &str) -> Value {
    json!({ "type": error.kind, "reason": error.reason, "index_uuid": "emulated-uuid", "shard": "0", "index": index })
}

/// The answer, with `X-Elastic-Product` when emulating Elasticsearch, and the `WWW-Authenticate`
/// challenges on a 401.
fn reply(opts: &EsOptions, (status, body): Answer) -> Response {
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response();
    decorate(opts, &mut response, status);
    response
}

fn decorate(opts: &EsOptions, response: &mut Response, status: u16) {
    if !opts.is_opensearch() {
        response.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    }
    if status == 401 {
        let headers = response.headers_mut();
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"security\" charset=\"UTF-8\""));
        headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"));
    }
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// What the credential of a request may do.
#[derive(PartialEq, Eq)]
enum Access {
    Write,
    ReadOnly,
}

fn authenticate(opts: &EsOptions, headers: &HeaderMap, path: &str) -> Result<Access, Answer> {
    if !opts.security() {
        return Ok(Access::Write);
    }
    let Some(value) = header(headers, AUTHORIZATION) else {
        return Err(es_error(
            401,
            "security_exception",
            &format!("missing authentication credentials for REST request [{path}]"),
        ));
    };
    if let Some(key) = value.strip_prefix("ApiKey ") {
        if opts.api_keys.iter().any(|k| k == key) {
            return Ok(Access::Write);
        }
        if opts.read_only_api_keys.iter().any(|k| k == key) {
            return Ok(Access::ReadOnly);
        }
    }
    if let Some(basic) = value.strip_prefix("Basic ")
        && opts.users.iter().any(|(u, p)| base64(&format!("{u}:{p}")) == basic)
    {
        return Ok(Access::Write);
    }
    Err(es_error(
        401,
        "security_exception",
        &format!(
            "unable to authenticate with provided credentials and anonymous access is not allowed for this request [{path}]"
        ),
    ))
}

fn unauthorized(action: &str) -> Answer {
    es_error(
        403,
        "security_exception",
        &format!(
            "action [{action}] is unauthorized for API key id [emulated] of user [auditrelay], this action is granted by the index privileges [create_doc,create,index,write,all]"
        ),
    )
}

/// The body after `Content-Encoding`, at most `max` bytes decoded.
fn decode(headers: &HeaderMap, raw: &[u8], max: usize) -> Result<Vec<u8>, Answer> {
    let encoding = header(headers, CONTENT_ENCODING).map(|e| e.trim().to_ascii_lowercase()).unwrap_or_default();
    let body = match encoding.as_str() {
        "" | "identity" => raw.to_vec(),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            if flate2::read::MultiGzDecoder::new(raw).take(limit).read_to_end(&mut out).is_err() {
                return Err(es_error(400, "parse_exception", "request body is not a valid gzip stream"));
            }
            out
        }
        // `http.compression` decodes gzip and deflate; anything else is not understood.
        other => {
            return Err(es_error(
                400,
                "illegal_argument_exception",
                &format!("unsupported content encoding [{other}]"),
            ));
        }
    };
    if body.len() > max {
        // Netty's HttpObjectAggregator answers an empty 413 (docs give no body).
        return Err((413, Value::Null));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Endpoints

type Params = Query<HashMap<String, String>>;

fn router(shared: Arc<Shared>) -> Router {
    // Under a prefix every route is spelled with it (the proxy's paths), the root both as
    // `/es` and `/es/`.
    let p = shared.opts.path_prefix.trim_end_matches('/').to_owned();
    let mut router = Router::new().route(&format!("{p}/"), get(info).head(info));
    if !p.is_empty() {
        router = router.route(&p, get(info).head(info));
    }
    router
        .route(&format!("{p}/_bulk"), post(bulk_default).put(bulk_default))
        .route(&format!("{p}/{{index}}/_bulk"), post(bulk_index).put(bulk_index))
        .route(&format!("{p}/_index_template/{{name}}"), get(get_template).put(put_template).post(put_template))
        .route(LOGIN_PATH, any(login_page))
        .fallback(unknown)
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

fn record_other(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap, status: u16) {
    shared.lock().others.push(OtherRequest {
        method: method.to_string(),
        path: path.to_owned(),
        authorization: header(headers, AUTHORIZATION),
        status,
    });
}

async fn info(State(shared): State<Arc<Shared>>, method: Method, headers: HeaderMap) -> Response {
    let opts = &shared.opts;
    let answer = match authenticate(opts, &headers, "/") {
        Err(answer) => answer,
        Ok(_) => match &opts.flavor {
            Flavor::Elasticsearch(number) => (
                200,
                json!({
                    "name": "es-emulator", "cluster_name": "auditrelay-test", "cluster_uuid": "emulated",
                    "version": { "number": number, "build_flavor": "default", "build_type": "docker",
                                 "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.17.0",
                                 "minimum_index_compatibility_version": "7.0.0" },
                    "tagline": "You Know, for Search"
                }),
            ),
            Flavor::OpenSearch(number) => (
                200,
                json!({
                    "name": "opensearch-emulator", "cluster_name": "auditrelay-test", "cluster_uuid": "emulated",
                    "version": { "distribution": "opensearch", "number": number, "build_type": "tar",
                                 "lucene_version": "9.11.1", "minimum_wire_compatibility_version": "7.10.0",
                                 "minimum_index_compatibility_version": "7.0.0" },
                    "tagline": "The OpenSearch Project: https://opensearch.org/"
                }),
            ),
        },
    };
    record_other(&shared, &method, "/", &headers, answer.0);
    reply(opts, answer)
}

async fn get_template(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let opts = &shared.opts;
    let path = format!("{}/_index_template/{name}", shared.opts.path_prefix.trim_end_matches('/'));
    let answer = match authenticate(opts, &headers, &path) {
        Err(answer) => answer,
        Ok(_) => {
            let state = shared.lock();
            match state.templates.iter().find(|(n, _)| *n == name) {
                Some((n, t)) => (200, json!({ "index_templates": [{ "name": n, "index_template": t }] })),
                None => es_error(
                    404,
                    "resource_not_found_exception",
                    &format!("index template matching [{name}] not found"),
                ),
            }
        }
    };
    record_other(&shared, &method, &path, &headers, answer.0);
    reply(opts, answer)
}

async fn put_template(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let opts = &shared.opts;
    let path = format!("{}/_index_template/{name}", shared.opts.path_prefix.trim_end_matches('/'));
    let run = || -> Result<Answer, Answer> {
        if authenticate(opts, &headers, &path)? == Access::ReadOnly {
            return Err(unauthorized("indices:admin/index_template/put"));
        }
        let body = decode(&headers, &raw, opts.max_content_length)?;
        let template: Value = serde_json::from_slice(&body).map_err(|e| {
            es_error(400, "x_content_parse_exception", &format!("[1:1] failed to parse the template: {e}"))
        })?;
        check_template(opts, &template)?;
        shared.lock().put_template(&name, template);
        Ok((200, json!({ "acknowledged": true })))
    };
    let answer = run().unwrap_or_else(|a| a);
    record_other(&shared, &method, &path, &headers, answer.0);
    reply(opts, answer)
}

/// The checks of a composable index template both products make, as far as the sink needs.
fn check_template(opts: &EsOptions, template: &Value) -> Result<(), Answer> {
    let Some(obj) = template.as_object() else {
        return Err(es_error(400, "x_content_parse_exception", "[1:1] [index_template] expected an object"));
    };
    const KNOWN: [&str; 10] = [
        "index_patterns",
        "template",
        "composed_of",
        "priority",
        "version",
        "_meta",
        "data_stream",
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    ];
    if let Some(key) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(es_error(
            400,
            "x_content_parse_exception",
            &format!("[1:2] [index_template] unknown field [{key}]"),
        ));
    }
    if patterns(template).is_empty() {
        return Err(es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: index patterns are missing;",
        ));
    }
    if let Some(inner) = obj.get("template") {
        if let Some(mappings) = inner.get("mappings") {
            check_mapping_types(opts, "", mappings)?;
        }
        if opts.is_opensearch()
            && let Some(settings) = inner.get("settings")
        {
            let flat = flatten_settings("", settings);
            if let Some(key) = flat.iter().find(|k| k.starts_with("index.lifecycle.") || k.starts_with("lifecycle.")) {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    &format!(
                        "unknown setting [{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn flatten_settings(prefix: &str, value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                let key = if key.starts_with("index.") || prefix.starts_with("index") || key == "index" {
                    key
                } else {
                    format!("index.{key}")
                };
                flatten_settings(&key, v)
            })
            .collect(),
        _ => vec![prefix.to_owned()],
    }
}

/// Every `type` in `properties` (recursively, and in `fields`) must be one the flavor knows.
fn check_mapping_types(opts: &EsOptions, prefix: &str, mapping: &Value) -> Result<(), Answer> {
    const COMMON: [&str; 22] = [
        "text",
        "keyword",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
        "date",
        "date_nanos",
        "boolean",
        "binary",
        "ip",
        "object",
        "nested",
        "geo_point",
        "alias",
        "token_count",
        "version",
    ];
    const ELASTIC_ONLY: [&str; 5] = ["flattened", "constant_keyword", "match_only_text", "wildcard", "semantic_text"];
    const OPENSEARCH_ONLY: [&str; 2] = ["flat_object", "match_only_text"];
    let Some(Value::Object(props)) = mapping.get("properties") else { return Ok(()) };
    for (name, def) in props {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if let Some(kind) = def.get("type").and_then(Value::as_str) {
            let known = COMMON.contains(&kind)
                || if opts.is_opensearch() { OPENSEARCH_ONLY.contains(&kind) } else { ELASTIC_ONLY.contains(&kind) };
            if !known {
                return Err(es_error(
                    400,
                    "mapper_parsing_exception",
                    &format!("Failed to parse mapping: No handler for type [{kind}] declared on field [{name}]"),
                ));
            }
        }
        check_mapping_types(opts, &path, def)?;
        if let Some(Value::Object(fields)) = def.get("fields") {
            check_mapping_types(opts, &path, &json!({ "properties": fields }))?;
        }
    }
    Ok(())
}

async fn login_page(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().login_hits += 1;
    ([(CONTENT_TYPE, "text/html; charset=utf-8")], "<!doctype html><html><body><form>Sign in</form></body></html>")
        .into_response()
}

async fn unknown(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    // Elasticsearch's answer to a path it has no handler for.
    let answer = (400, json!({ "error": format!("no handler found for uri [{path}] and method [{method}]") }));
    record_other(&shared, &method, &path, &headers, answer.0);
    reply(&shared.opts, answer)
}

async fn bulk_default(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    uri: Uri,
    Query(query): Params,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    bulk(shared, conn, uri, None, query, headers, raw)
}

async fn bulk_index(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Path(index): Path<String>,
    uri: Uri,
    Query(query): Params,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    bulk(shared, conn, uri, Some(index), query, headers, raw)
}

fn bulk(
    shared: Arc<Shared>,
    conn: Conn,
    uri: Uri,
    default_index: Option<String>,
    query: HashMap<String, String>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let opts = &shared.opts;
    let fault = shared.lock().faults.pop_front();
    if opts.lean
        && fault.is_none()
        && let Some(response) = bulk_lean(&shared, &uri, default_index.as_deref(), &query, &headers, &raw)
    {
        return response;
    }
    let mut record = BulkRequest {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: header(&headers, AUTHORIZATION),
        content_type: header(&headers, CONTENT_TYPE),
        content_encoding: header(&headers, CONTENT_ENCODING),
        raw_len: raw.len(),
        body: decode(&headers, &raw, usize::MAX).unwrap_or_else(|_| raw.to_vec()),
        decoded_len: 0,
        status: 0,
        items: Vec::new(),
    };
    record.decoded_len = record.body.len();
    let response = match fault {
        Some(Fault::Disconnect) => {
            shared.lock().requests.push(record);
            conn.kill();
            // Never reaches the client: the connection fails on write.
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        Some(Fault::Status { status, kind, reason, retry_after }) => {
            record.status = status;
            let mut response = reply(opts, es_error(status, &kind, &reason));
            if let Some(secs) = retry_after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Some(Fault::Redirect { status, location }) => {
            record.status = status;
            let mut response = StatusCode::from_u16(status).unwrap().into_response();
            response.headers_mut().insert(LOCATION, HeaderValue::from_str(&location).unwrap());
            response
        }
        Some(Fault::Raw { status, content_type, body }) => {
            record.status = status;
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap());
            response
        }
        Some(Fault::TakeThenDisconnect) => {
            let (_, items) =
                process_bulk(&shared, &headers, &record.path, default_index.as_deref(), &raw, &ItemFaults::None);
            record.items = items;
            shared.lock().requests.push(record);
            conn.kill();
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        other => {
            let item_faults = match other {
                Some(Fault::Items(list)) => ItemFaults::Some(list),
                Some(Fault::AllItems(error)) => ItemFaults::All(error),
                _ => ItemFaults::None,
            };
            let (answer, items) =
                process_bulk(&shared, &headers, &record.path, default_index.as_deref(), &raw, &item_faults);
            record.status = answer.0;
            record.items = items;
            let answer = match (answer.0, query.get("filter_path")) {
                (200, Some(filter)) => (200, filter_path(&answer.1, filter)),
                _ => answer,
            };
            if answer.0 == 413 {
                let mut response = StatusCode::PAYLOAD_TOO_LARGE.into_response();
                decorate(opts, &mut response, 413);
                response
            } else {
                reply(opts, answer)
            }
        }
    };
    shared.lock().requests.push(record);
    response
}

/// The op and metadata of an action line, as [`EsOptions::lean`] reads it.
#[derive(serde::Deserialize)]
enum LeanAction {
    #[serde(rename = "create")]
    Create(LeanMeta),
    #[serde(rename = "index")]
    Index(LeanMeta),
}

#[derive(serde::Deserialize)]
struct LeanMeta {
    #[serde(rename = "_index")]
    index: Option<String>,
    #[serde(rename = "_id")]
    id: Option<String>,
}

/// A `_bulk` request as [`EsOptions::lean`] takes it, or `None` to hand it to the full
/// processing (which then answers and records it): a request refused as a whole, a poison
/// marker in force, an op other than `create`/`index`, a document line that is not an object
/// holding `"@timestamp"` where a data stream needs it, an item without a target, `index` on a
/// data stream. Nothing is changed before the request is known to be taken.
fn bulk_lean(
    shared: &Shared,
    uri: &Uri,
    default_index: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    raw: &[u8],
) -> Option<Response> {
    let opts = &shared.opts;
    if authenticate(opts, headers, uri.path()).ok()? != Access::Write {
        return None;
    }
    let mime = header(headers, CONTENT_TYPE).unwrap_or_default();
    let mime = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !matches!(mime.as_str(), "application/json" | "application/x-ndjson") {
        return None;
    }
    let body = decode(headers, raw, opts.max_content_length).ok()?;
    if body.last() != Some(&b'\n') {
        return None;
    }
    // (op is create, target, _id, document names @timestamp) per item, read without a document
    // being parsed.
    let mut items = Vec::new();
    let mut lines = body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace));
    while let Some(line) = lines.next() {
        let (create, meta) = match serde_json::from_slice::<LeanAction>(line).ok()? {
            LeanAction::Create(meta) => (true, meta),
            LeanAction::Index(meta) => (false, meta),
        };
        let doc = lines.next()?.trim_ascii();
        if doc.first() != Some(&b'{') || doc.last() != Some(&b'}') {
            return None;
        }
        let stamped = std::str::from_utf8(doc).ok()?.contains("\"@timestamp\"");
        let target = meta.index.or_else(|| default_index.map(str::to_owned))?;
        items.push((create, target, meta.id, stamped));
    }
    if items.is_empty() {
        return None;
    }
    let mut guard = shared.lock();
    let state = &mut *guard;
    if !state.poison.is_empty() {
        return None;
    }
    for (create, target, _, stamped) in &items {
        let t = target_named(&mut state.targets, opts, &state.templates, target);
        if t.data_stream && !(*create && *stamped) {
            return None;
        }
    }
    let mut answers = Vec::with_capacity(items.len());
    let mut statuses = Vec::with_capacity(items.len());
    for (create, target, id, _) in items {
        state.auto_ids += 1;
        let id = id.unwrap_or_else(|| format!("emulated-{:012}", state.auto_ids));
        let t = target_named(&mut state.targets, opts, &state.templates, &target);
        let backing = t.backing.last_mut().expect("a target has a write index");
        let op = if create { "create" } else { "index" };
        let (status, item) = if backing.ids.contains(&id) {
            if create {
                let e = ItemError::new(
                    409,
                    "version_conflict_engine_exception",
                    &format!("[{id}]: version conflict, document already exists (current version [1])"),
                );
                let error = item_error_body(&e, &backing.name);
                (409, json!({ "_index": backing.name, "_id": id, "status": 409, "error": error }))
            } else {
                (200, json!({ "_index": backing.name, "_id": id, "status": 200, "result": "updated" }))
            }
        } else {
            let item = json!({ "_index": backing.name, "_id": id, "status": 201, "result": "created" });
            backing.ids.insert(id);
            state.lean_documents += 1;
            (201, item)
        };
        statuses.push(status);
        answers.push(json!({ op: item }));
    }
    let errors = statuses.iter().any(|s| *s >= 300);
    let mut answer = json!({ "took": 3, "errors": errors, "items": answers });
    if let Some(filter) = query.get("filter_path") {
        answer = filter_path(&answer, filter);
    }
    state.requests.push(BulkRequest {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        authorization: header(headers, AUTHORIZATION),
        content_type: header(headers, CONTENT_TYPE),
        content_encoding: header(headers, CONTENT_ENCODING),
        raw_len: raw.len(),
        body: Vec::new(),
        decoded_len: body.len(),
        status: 200,
        items: statuses,
    });
    drop(guard);
    Some(reply(opts, (200, answer)))
}

enum ItemFaults {
    None,
    Some(Vec<(usize, ItemError)>),
    All(ItemError),
}

impl ItemFaults {
    fn at(&self, i: usize) -> Option<&ItemError> {
        match self {
            ItemFaults::None => None,
            ItemFaults::Some(list) => list.iter().find(|(n, _)| *n == i).map(|(_, e)| e),
            ItemFaults::All(e) => Some(e),
        }
    }
}

/// One parsed action: its op, `_index`, `_id` and document (none for `delete`).
struct Action {
    op: String,
    index: Option<String>,
    id: Option<String>,
    doc: Option<Value>,
}

/// The whole `_bulk` request: checks, then each item. Returns the answer and the item statuses.
fn process_bulk(
    shared: &Shared,
    headers: &HeaderMap,
    path: &str,
    default_index: Option<&str>,
    raw: &[u8],
    faults: &ItemFaults,
) -> (Answer, Vec<u16>) {
    let opts = &shared.opts;
    let run = || -> Result<(Answer, Vec<u16>), Answer> {
        if authenticate(opts, headers, path)? == Access::ReadOnly {
            return Err(unauthorized("indices:data/write/bulk"));
        }
        let content_type = header(headers, CONTENT_TYPE).unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(mime.as_str(), "application/json" | "application/x-ndjson") {
            return Err(es_error(
                406,
                "media_type_header_exception",
                &format!("Content-Type header [{content_type}] is not supported"),
            ));
        }
        let body = decode(headers, raw, opts.max_content_length)?;
        let actions = parse_ndjson(&body)?;
        let mut items = Vec::new();
        let mut statuses = Vec::new();
        let mut state = shared.lock();
        for (i, action) in actions.into_iter().enumerate() {
            let item = apply(opts, &mut state, i, action, default_index, faults);
            statuses.push(item.1);
            items.push(item.0);
        }
        let errors = statuses.iter().any(|s| *s >= 300);
        Ok(((200, json!({ "took": 3, "errors": errors, "items": items })), statuses))
    };
    run().unwrap_or_else(|answer| (answer, Vec::new()))
}

fn parse_ndjson(body: &[u8]) -> Result<Vec<Action>, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(es_error(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;"));
    }
    if body.last() != Some(&b'\n') {
        return Err(es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut lines = body.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    let mut actions = Vec::new();
    while let Some((n, line)) = lines.next() {
        let malformed = |what: &str| {
            es_error(400, "illegal_argument_exception", &format!("Malformed action/metadata line [{}], {what}", n + 1))
        };
        let Ok(Value::Object(action)) = serde_json::from_slice::<Value>(line) else {
            return Err(malformed("expected START_OBJECT"));
        };
        if action.len() != 1 {
            return Err(malformed("expected a simple value for field [_index] but found [START_OBJECT]"));
        }
        let (op, meta) = action.into_iter().next().unwrap();
        if !matches!(op.as_str(), "create" | "index" | "delete" | "update") {
            return Err(malformed(&format!("expected one of [create, delete, index, update] but found [{op}]")));
        }
        let meta = meta.as_object().cloned().unwrap_or_default();
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        let doc = if op == "delete" {
            None
        } else {
            let Some((dn, doc_line)) = lines.next() else {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    "The bulk request must be terminated by a newline [\\n]",
                ));
            };
            match serde_json::from_slice::<Value>(doc_line) {
                Ok(doc) => Some(doc),
                Err(e) => {
                    return Err(es_error(
                        400,
                        "x_content_parse_exception",
                        &format!("[{}:1] failed to parse the document: {e}", dn + 1),
                    ));
                }
            }
        };
        actions.push(Action { op, index: text("_index"), id: text("_id"), doc });
    }
    Ok(actions)
}

/// One item: (its answer object, its status).
fn apply(
    opts: &EsOptions,
    state: &mut EmuState,
    i: usize,
    action: Action,
    default_index: Option<&str>,
    faults: &ItemFaults,
) -> (Value, u16) {
    let Action { op, index, id, doc } = action;
    let target = index.or_else(|| default_index.map(str::to_owned));
    let fail = |error: &ItemError, index: &str, id: &Option<String>| {
        let mut item = json!({ "_index": index, "status": error.status, "error": item_error_body(error, index) });
        if let Some(id) = id {
            item["_id"] = json!(id);
        }
        (json!({ op.clone(): item }), error.status)
    };
    let Some(target) = target else {
        let e = ItemError::new(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;");
        return fail(&e, "", &id);
    };
    if let Some(error) = faults.at(i) {
        return fail(error, &target, &id);
    }
    let doc_text = doc.as_ref().map(Value::to_string).unwrap_or_default();
    if let Some((_, error)) = state.poison.iter().find(|(marker, _)| doc_text.contains(marker.as_str())) {
        let error = error.clone();
        return fail(&error, &target, &id);
    }
    if op == "update" {
        let e = ItemError::new(400, "illegal_argument_exception", "update actions are not emulated");
        return fail(&e, &target, &id);
    }
    state.auto_ids += 1;
    let auto_id = format!("emulated-{:012}", state.auto_ids);
    let t = target_named(&mut state.targets, opts, &state.templates, &target);
    if t.data_stream && op != "create" {
        let e = ItemError::new(
            400,
            "illegal_argument_exception",
            "only write ops with an op_type of create are allowed in data streams",
        );
        return fail(&e, &target, &id);
    }
    let backing = t.backing.last_mut().expect("a target has a write index");
    let concrete = backing.name.clone();
    if op == "delete" {
        let Some(id) = id else {
            let e = ItemError::new(400, "action_request_validation_exception", "Validation Failed: 1: id is missing;");
            return fail(&e, &target, &None);
        };
        let existed = backing.ids.remove(&id);
        if existed {
            state.documents.retain(|d| !(d.index == concrete && d.id == id));
        }
        let (status, result) = if existed { (200, "deleted") } else { (404, "not_found") };
        return (json!({ "delete": { "_index": concrete, "_id": id, "status": status, "result": result } }), status);
    }
    let doc = doc.unwrap_or(Value::Null);
    let Some(map) = doc.as_object() else {
        let e = ItemError::parsing(opts, "failed to parse, document is empty");
        return fail(&e, &concrete, &id);
    };
    if t.data_stream && map.get("@timestamp").is_none_or(Value::is_null) {
        let e = ItemError::parsing(opts, "[1:2] failed to parse: data stream timestamp field [@timestamp] is missing");
        return fail(&e, &concrete, &id);
    }
    let id_value = id.clone().unwrap_or(auto_id);
    let exists = backing.ids.contains(&id_value);
    if exists && op == "create" {
        let e = ItemError::new(
            409,
            "version_conflict_engine_exception",
            &format!("[{id_value}]: version conflict, document already exists (current version [1])"),
        );
        return fail(&e, &concrete, &Some(id_value));
    }
    // Map the document on a copy: a refused document adds no field.
    let mut mapping = backing.mapping.clone();
    if let Err((reason, kind)) = mapping.index("", map, &id_value, &backing.dynamic_templates) {
        let kind = if kind.is_empty() { opts.parsing_exception() } else { kind };
        return fail(&ItemError::new(400, kind, &reason), &concrete, &Some(id_value));
    }
    let total = mapping.count();
    if total > backing.limit {
        let added = total - backing.mapping.count();
        let reason =
            format!("Limit of total fields [{}] has been exceeded while adding new fields [{added}]", backing.limit);
        // Elasticsearch 8 wraps it in the parsing exception; OpenSearch answers it bare.
        let kind = if opts.is_opensearch() { "illegal_argument_exception" } else { opts.parsing_exception() };
        return fail(&ItemError::new(400, kind, &reason), &concrete, &Some(id_value));
    }
    backing.mapping = mapping;
    backing.ids.insert(id_value.clone());
    let (status, result) = if exists { (200, "updated") } else { (201, "created") };
    if exists {
        state.documents.retain(|d| !(d.index == concrete && d.id == id_value));
    }
    let source = if opts.keep_sources { doc } else { Value::Null };
    state.documents.push(Doc { target, index: concrete.clone(), id: id_value.clone(), source });
    let item = json!({
        "_index": concrete, "_id": id_value, "_version": 1, "result": result,
        "_shards": { "total": 2, "successful": 1, "failed": 0 }, "_seq_no": 0, "_primary_term": 1, "status": status
    });
    (json!({ op: item }), status)
}

/// Keeps only the paths `filter` lists (comma-separated, `.`-separated keys, `*` one key,
/// arrays traversed), as `?filter_path=` does. An answer with nothing left is `{}`.
pub fn filter_path(value: &Value, filter: &str) -> Value {
    let patterns: Vec<Vec<&str>> = filter.split(',').map(|p| p.trim().split('.').collect()).collect();
    keep(value, &patterns).unwrap_or_else(|| json!({}))
}

fn keep(value: &Value, patterns: &[Vec<&str>]) -> Option<Value> {
    match value {
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(|v| keep(v, patterns)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                let matching: Vec<&Vec<&str>> =
                    patterns.iter().filter(|p| !p.is_empty() && (p[0] == "*" || p[0] == key)).collect();
                if matching.is_empty() {
                    continue;
                }
                if matching.iter().any(|p| p.len() == 1) {
                    out.insert(key.clone(), v.clone());
                    continue;
                }
                let rest: Vec<Vec<&str>> = matching.iter().map(|p| p[1..].to_vec()).collect();
                if let Some(kept) = keep(v, &rest) {
                    out.insert(key.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// TLS: the acceptor `killable::Server` hands each connection to (serving itself, with
// connections that can be cut, is `killable`, shared with the HEC emulator)

fn tls_acceptor(pki: &Pki) -> tokio_rustls::TlsAcceptor {
    let certs = CertificateDer::pem_file_iter(&pki.server_cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[cfg(test)]
mod lean_tests {
    use super::*;

    /// `POST /_bulk?filter_path=…` (as the sink asks) of `body`; the answer's status and text.
    async fn post(emu: &EsEmulator, body: &str) -> (u16, String) {
        let url = format!("{}/_bulk?filter_path=errors,items.*.status,items.*.error", emu.url());
        let response = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    fn create(id: &str, stamped: bool) -> String {
        let stamp = if stamped { "\"@timestamp\":\"2026-03-18T12:00:00Z\"," } else { "" };
        format!(
            "{{\"create\":{{\"_index\":\"logs-ocsf-default\",\"_id\":\"{id}\"}}}}\n{{{stamp}\"metadata\":{{\"uid\":\"{id}\"}}}}\n"
        )
    }

    /// The benchmarks' lean receiver answers what the sink reads exactly as the full emulator
    /// does (created, a second `create` of an `_id` 409, `index` on a data stream and a document
    /// without `@timestamp` refused by the full path), and counts the same documents under the
    /// same `_id`s without keeping any body.
    #[tokio::test]
    async fn lean_mode_answers_and_counts_as_the_full_emulator() {
        let bodies = [
            create("a", true) + &create("b", true),
            create("b", true) + &create("c", true),
            "{\"index\":{\"_index\":\"logs-ocsf-default\",\"_id\":\"d\"}}\n{\"@timestamp\":\"2026-03-18T12:00:00Z\"}\n"
                .to_owned(),
            create("e", false),
        ];
        let full = EsEmulator::start(EsOptions::default()).await;
        let lean = EsEmulator::start(EsOptions::lean(Vec::new())).await;
        for body in &bodies {
            let (want, got) = (post(&full, body).await, post(&lean, body).await);
            assert_eq!(got, want, "lean and full answers differ for {body:?}");
        }
        assert_eq!((lean.document_count(), full.document_count()), (3, 3));
        let ids: HashSet<String> = ["a", "b", "c"].into_iter().map(str::to_owned).collect();
        assert_eq!((lean.indexed_ids(), full.indexed_ids()), (ids.clone(), ids));
        let requests = lean.requests();
        assert_eq!(requests.len(), bodies.len());
        // The first two were taken lean: counted, not kept.
        assert!(requests[..2].iter().all(|r| r.body.is_empty() && r.decoded_len > 0), "lean requests keep no body");
        assert_eq!(requests[0].decoded_len, bodies[0].len());
        assert_eq!(
            requests.iter().map(|r| r.items.clone()).collect::<Vec<_>>(),
            [vec![201, 201], vec![409, 201], vec![400], vec![400]]
        );
    }
}
