//! Elasticsearch / OpenSearch sink: `POST <host>/_bulk` with NDJSON `create` actions (gzip),
//! into the data stream `logs-<dataset>-<namespace>` or a plain index or alias.
//!
//! It owns the document layout ([`document`]: `@timestamp`, `data_stream.*`, a few ECS `event.*`
//! fields, and the OCSF event as queued under `ocsf`), the index template that layout needs
//! ([`template`], printed by `auditrelay elasticsearch template`), the two answer tables
//! ([`classify`] for the whole request, [`classify_item`] for each item of a bulk answer) and
//! what "delivered" means: the item answered 200/201, or 409 `version_conflict_engine_exception`
//! (`_id` = `metadata.uid`, so a resend of a document Elasticsearch already holds is a conflict,
//! not a second copy, within one backing index).
//!
//! `_bulk` answers 200 even when items failed, so each item is read: an item refused for its
//! content (400 `mapper_parsing_exception` / `document_parsing_exception`) is refused (the loop
//! dead-letters it with Elastic's reason); an item 429 or 503 makes the send a transient failure,
//! an item 500 (or another 5xx) a server error (the loop backs off and isolates the document:
//! dead-lettered alone only on repeated proof that the cluster takes others), and the items Elasticsearch took are kept in a memo (queue id → delivered or refused) so the
//! loop's resend of the same batch, or of a part of it, sends only the rest. The memo is an
//! optimisation, not a guarantee: were it lost, the resend is answered 409 (delivered) or the
//! same mapping error (refused again). Any other item error (403 security, 404 no such index, a
//! non-`create` op refused by a data stream) needs an operator: the data is kept.
//!
//! Its requests fit `batch_max_bytes` with each document's action line and head: it tells the
//! loop what they add ([`Protocol::wrapping`], the head made once an event and kept for the
//! sends), and the loop cuts the batch to fit, so a bound set to the cluster's
//! `http.max_content_length` is not overrun by them. Each document is written, its event
//! stamped with the send time, straight into the bulk body or the gzip encoder.
//!
//! It must not split a batch itself nor retry: a 413 goes back to the loop as
//! [`Failure::TooLarge`](super::Failure::TooLarge), a 500 as a server error (bisected), 429 /
//! 502 / 503 / 504 as transient with `Retry-After`, 400 / 401 / 403 / 3xx / a 2xx that is not a
//! bulk answer as operator errors. The one thing it repeats inside a send is the connection: a node
//! that cannot be reached (refused, TLS, timeout) or answers 502/503/504 (a node out of its
//! cluster, a dead pool behind a load balancer) hands the same request to the next host; any
//! other HTTP answer is the answer and is not retried on another node.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use flate2::Compression;
use flate2::write::GzEncoder;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Delivery, SendError};
use crate::backoff::{self, MeasureFrom};
use crate::clock::Clock;
use crate::config::{Res, SecretText, TableKeys, duration_text, path_text};
use crate::http::{BodyError, ClientError, ClientOptions, Overflow, Redirects};
use crate::ocsf::summary::summarize;
use crate::queue::{QueueError, QueuedEvent, RefusedEvent};
use crate::sinks::{Attach, Protocol, Stamped, StampedEvent};

/// The name of the index template `auditrelay elasticsearch template` prints and `check
/// --connect` looks for.
pub const TEMPLATE_NAME: &str = "auditrelay-ocsf";
/// The index template's `version`: bumped whenever [`template`] changes.
pub const TEMPLATE_VERSION: u64 = 2;
/// The default data-stream dataset and namespace.
pub const DEFAULT_DATASET: &str = "auditrelay.ocsf";
pub const DEFAULT_NAMESPACE: &str = "default";

/// A bulk answer is a few dozen bytes per item (`filter_path` keeps only status and error): a
/// batch of 10,000 items with long reasons stays well below this.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// Answers of `GET /` and the template look-up.
const MAX_PROBE_ANSWER: usize = 1024 * 1024;
/// An item's error reason, as kept in a dead letter or a message.
const MAX_REASON: usize = 1024;

/// What one whole `_bulk` answer means (before its items are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A 2xx: the items say what became of each event (if the body is a bulk answer).
    Bulk,
    /// 408, 429, 502, 503, 504: busy or a proxy in the way; resend after back-off.
    Retry,
    /// 500 and other 5xx: an outage or a document that breaks the node; backed off, bisected.
    ServerError,
    /// 413: larger than `http.max_content_length`; the loop halves the batch.
    TooLarge,
    /// 3xx (never followed), 400, 401, 403, 404, …: only an operator can fix it; the data is
    /// kept. A whole-request 400 is not about a document (Elasticsearch refuses documents per
    /// item): bisecting it would dead-letter every event alone for what a proxy or an
    /// incompatible cluster says.
    Operator,
}

/// The request table (module docs).
pub fn classify(status: u16) -> Answer {
    match status {
        200..=299 => Answer::Bulk,
        300..=399 => Answer::Operator,
        400 => Answer::Operator,
        401 | 403 => Answer::Operator,
        408 | 429 | 502..=504 => Answer::Retry,
        413 => Answer::TooLarge,
        500..=599 => Answer::ServerError,
        _ => Answer::Operator,
    }
}

/// What one item of a bulk answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// 200/201, or 409 `version_conflict_engine_exception` (the document is already there).
    Delivered,
    /// 429 `es_rejected_execution_exception`, 503 (`unavailable_shards_exception`, a node
    /// leaving): busy or an outage; send this item again after back-off.
    Retry,
    /// 500 and other 5xx: the cluster failed on this document (an ingest pipeline that throws
    /// on it) or on everything for now. A server error to the loop, which backs off and isolates
    /// it; dead-lettered alone only on repeated proof that the cluster takes other documents
    /// (`sinks::POISON_STRIKES`). As "busy", one such document held the whole sink back forever.
    ServerError,
    /// 400 `mapper_parsing_exception` / `document_parsing_exception` /
    /// `strict_dynamic_mapping_exception`, or an `illegal_argument_exception` about the
    /// document's own content (an immense term, the field-count, depth or nested limits, a
    /// value that fails to parse): this document can never be indexed as it is; dead-lettered
    /// with Elastic's reason.
    Refused,
    /// Another 400 (a mapping an operator made strict, an ingest pipeline failing on this
    /// document, a conflict worded otherwise): isolated as a server error, dead-lettered only
    /// after repeated proof that the cluster takes other documents. As an operator's error, one
    /// such document held the whole sink back for good (and a stream that never took a
    /// document could not tell them apart either).
    Suspect,
    /// Anything else (403 security, 404 `index_not_found_exception`, 400 `illegal_argument`…):
    /// the cluster or the configuration must change; the data is kept.
    Operator,
}

/// How Elasticsearch and OpenSearch begin the reason of an `illegal_argument_exception` about a
/// document that cannot be indexed for its own content. Matched at the start of the reason only:
/// a reason names the document's own fields further on, and a field may be called anything.
const DOCUMENT_FAULTS: &[&str] = &[
    "Document contains at least one immense term",
    "Limit of total fields",
    "Limit of mapping depth",
    "Limit of nested fields",
];

/// How they begin the reason of an `illegal_argument_exception` about the request or the index
/// rather than the document (the op, a data stream without its template, a pipeline that does
/// not exist): the same for every document sent there, an operator's to fix, never a dead letter.
const INDEX_FAULTS: &[&str] = &[
    "only write ops with an op_type of create are allowed in data streams",
    "no matching index template found for data stream",
    "pipeline with id [",
];

/// The item table (module docs). `error_type` and `reason` are the item's `error.type` and
/// `error.reason`.
pub fn classify_item(status: u16, error_type: Option<&str>, reason: &str) -> Item {
    let starts = |list: &[&str]| list.iter().any(|f| reason.starts_with(f));
    match (status, error_type) {
        (200 | 201, _) => Item::Delivered,
        (409, None | Some("version_conflict_engine_exception")) => Item::Delivered,
        (429 | 503, _) => Item::Retry,
        (500..=599, _) => Item::ServerError,
        // What the issue names: a document its mapping refuses, dead-lettered with the reason.
        (400, Some("mapper_parsing_exception" | "document_parsing_exception")) => Item::Refused,
        (400, Some("illegal_argument_exception")) if starts(DOCUMENT_FAULTS) => Item::Refused,
        (400, Some("illegal_argument_exception")) if starts(INDEX_FAULTS) => Item::Operator,
        // The index itself: closed, blocked, missing, badly named (never a document's fault).
        (
            400,
            Some(
                "index_closed_exception"
                | "cluster_block_exception"
                | "index_not_found_exception"
                | "invalid_index_name_exception"
                | "resource_already_exists_exception"
                | "security_exception",
            ),
        ) => Item::Operator,
        // A mapping an operator made strict, an ingest pipeline failing on some documents, a
        // mapping conflict worded otherwise: isolated like a 500, one suspect at a time, and
        // dead-lettered (kept, `queue replay` sends it again) only on repeated proof that the
        // cluster takes other documents.
        (400, _) => Item::Suspect,
        _ => Item::Operator,
    }
}

/// Where documents go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `logs-<dataset>-<namespace>`; the dataset may hold `{vendor}` and `{class_uid}`.
    DataStream { dataset: String, namespace: String },
    /// A plain index or alias.
    Index(String),
}

/// How the sink proves who it is.
#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// The encoded key (`id:key` base64-encoded), sent as `Authorization: ApiKey <key>`.
    ApiKey(SecretString),
    /// `encoded` = base64(`username:password`), the header's value: a receiver or proxy that
    /// echoes the header would otherwise show what decodes to the password.
    Basic {
        username: String,
        password: SecretString,
        encoded: SecretString,
    },
}

impl Auth {
    /// Basic auth with its encoded header value.
    pub fn basic(username: String, password: SecretString) -> Auth {
        let encoded = BASE64.encode(format!("{username}:{}", password.expose_secret()));
        Auth::Basic { username, password, encoded: SecretString::from(encoded) }
    }

    /// Every secret of these credentials (scrubbed from whatever the receiver says).
    pub fn secrets(&self) -> Vec<&SecretString> {
        match self {
            Auth::None => Vec::new(),
            Auth::ApiKey(k) => vec![k],
            Auth::Basic { password, encoded, .. } => vec![password, encoded],
        }
    }
}

impl Auth {
    fn name(&self) -> &'static str {
        match self {
            Auth::None => "no credentials (set api_key or username/password)",
            Auth::ApiKey(_) => "the API key (api_key / api_key_file)",
            Auth::Basic { .. } => "basic auth (username / password)",
        }
    }

    fn header(&self) -> Option<reqwest::header::HeaderValue> {
        let text = match self {
            Auth::None => return None,
            Auth::ApiKey(key) => format!("ApiKey {}", key.expose_secret()),
            Auth::Basic { encoded, .. } => format!("Basic {}", encoded.expose_secret()),
        };
        let mut value = reqwest::header::HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// `type = "elasticsearch"`: the `_bulk` API of Elasticsearch or OpenSearch.
#[derive(Debug, Clone)]
pub struct ElasticsearchSettings {
    /// Node base URLs (a path prefix allowed), tried in order on connection failures.
    pub hosts: Vec<url::Url>,
    /// Set when the hosts came from `cloud_id` (rendered instead of them).
    pub cloud_id: Option<String>,
    pub auth: Auth,
    /// PEM CA certificates to trust instead of the system's roots (https only).
    pub ca_file: Option<PathBuf>,
    pub target: Target,
    pub gzip: bool,
    /// Limit on one HTTP request (connect, send, answer).
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct ElasticsearchSink {
    hosts: Vec<url::Url>,
    /// The host that answered last: tried first.
    current: usize,
    http: reqwest::Client,
    auth: Auth,
    /// Every secret, scrubbed from reasons and messages.
    secrets: Vec<SecretString>,
    target: Target,
    gzip: bool,
    clock: Clock,
    stats: Arc<super::SinkStats>,
    /// Queue ids of the batch in flight that Elasticsearch already took (`None`) or refused
    /// (`Some(reason)`): a resend sends only the rest. Entries leave when a send covering them
    /// returns Ok; bounded by [`MEMO_CAP`].
    memo: HashMap<i64, Option<String>>,
    /// The document heads ([`document_head`]) that [`Protocol::wrapping`] measured, by queue id
    /// (never reused), so `send` and its resends do not parse the events again; dropped as the
    /// next measured batch starts past them, or the worker is idle.
    heads: std::collections::BTreeMap<i64, Result<DocHead, String>>,
}

/// Past this many entries the memo is dropped (module docs: losing it costs 409s, not data).
const MEMO_CAP: usize = 100_000;

/// The bulk answer, as `filter_path=errors,items.*.status,items.*.error` leaves it.
#[derive(Debug, Deserialize)]
struct BulkAnswer {
    items: Option<Vec<HashMap<String, ItemAnswer>>>,
}

#[derive(Debug, Deserialize)]
struct ItemAnswer {
    status: u16,
    error: Option<ItemError>,
}

#[derive(Debug, Deserialize)]
struct ItemError {
    #[serde(rename = "type")]
    kind: Option<String>,
    reason: Option<String>,
}

/// One document ready for the request: its two NDJSON lines and where it goes.
#[derive(Debug)]
pub struct Doc {
    pub index: String,
    pub lines: Vec<u8>,
}

/// `@timestamp`: RFC 3339 UTC with milliseconds.
fn timestamp(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Resolves `{vendor}` and `{class_uid}` in a dataset.
fn resolve_dataset(dataset: &str, vendor: Option<&str>, class_uid: Option<u64>) -> String {
    let class = class_uid.map_or_else(|| "0".to_owned(), |c| c.to_string());
    dataset.replace("{vendor}", &crate::ocsf::summary::vendor_slug(vendor)).replace("{class_uid}", &class)
}

/// `{"create":{"_index":…,"_id":…}}`, in that order.
#[derive(Serialize)]
struct Action<'a> {
    create: Create<'a>,
}

#[derive(Serialize)]
struct Create<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
}

/// The document without its `ocsf` (added as the queued bytes).
#[derive(Serialize)]
struct Head<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_stream: Option<DataStream<'a>>,
    event: Ecs<'a>,
}

#[derive(Serialize)]
struct DataStream<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dataset: String,
    namespace: &'a str,
}

/// The few ECS `event.*` fields Elastic's own Amazon Security Lake integration derives too.
#[derive(Serialize)]
struct Ecs<'a> {
    id: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    dataset: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
}

/// The two NDJSON lines of one event: the `create` action and the document (module docs), or
/// why the event cannot be one. An event without `time` takes the time it was queued; one
/// without `metadata.uid` is refused, since without a stable `_id` a resend would be a second
/// document (our mappers always set it: such a body is a bug to surface).
pub fn document(target: &Target, event: &QueuedEvent) -> Result<Doc, String> {
    Ok(document_head(target, event)?.document(&event.body))
}

/// A [`Doc`] up to the OCSF event: the action line and the document's head, ending in
/// `,"ocsf":`. Nothing in it depends on `transmit_time`, so it is made once an event.
#[derive(Debug, Clone)]
pub struct DocHead {
    pub index: String,
    pub lines: Vec<u8>,
}

impl DocHead {
    /// The whole document of `body` (the event as queued, or as sent with its `transmit_time`).
    pub fn document(&self, body: &[u8]) -> Doc {
        let mut lines = Vec::with_capacity(self.lines.len() + body.len() + 2);
        lines.extend_from_slice(&self.lines);
        // A queued body is one line (our writer never puts a raw newline in JSON); NDJSON needs it.
        lines.extend(body.iter().filter(|b| **b != b'\n' && **b != b'\r'));
        lines.extend_from_slice(b"}\n");
        Doc { index: self.index.clone(), lines }
    }

    /// What it adds to the event's bytes in a request: itself, the closing brace and newline.
    pub fn added(&self) -> usize {
        self.lines.len() + 2
    }

    /// Writes the whole document of `event` as sent (stamped as it is written) into `out`:
    /// [`DocHead::document`] of the stamped event, without a copy of either first.
    pub fn write_document<W: std::io::Write + ?Sized>(
        &self,
        out: &mut W,
        event: &StampedEvent<'_>,
    ) -> std::io::Result<()> {
        out.write_all(&self.lines)?;
        let (stored, stamp) = event.parts();
        // A queued body is one line (our writer never puts a raw newline in JSON); NDJSON needs
        // it, so any CR or LF is left out, as `document` does. The stamp has neither.
        let mut rest = stored;
        while let Some(at) = memchr::memchr2(b'\n', b'\r', rest) {
            out.write_all(&rest[..at])?;
            rest = &rest[at + 1..];
        }
        out.write_all(rest)?;
        if let Some(stamp) = stamp {
            stamp.write_to(out)?;
        }
        out.write_all(b"}\n")
    }
}

/// A writer that counts the bytes written through it (a request's length before compression).
struct Counting<W> {
    inner: W,
    written: usize,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Counting<W> {
        Counting { inner, written: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// [`document`]'s head, or why the event cannot be one.
pub fn document_head(target: &Target, event: &QueuedEvent) -> Result<DocHead, String> {
    let body = &event.body;
    let summary = summarize(body).map_err(|e| format!("queued body is not an OCSF event: {e}"))?;
    std::str::from_utf8(body).map_err(|e| format!("queued body is not UTF-8: {e}"))?;
    let uid = summary.uid().filter(|u| !u.is_empty()).ok_or_else(|| {
        "the event has no metadata.uid: without it as _id a resend would index a second copy".to_owned()
    })?;
    let time = summary.time.unwrap_or(event.collected_ms);
    let at = timestamp(time).ok_or_else(|| format!("the event's time {time} is not a date"))?;
    let (index, dataset, stream) = match target {
        Target::DataStream { dataset, namespace } => {
            let dataset = resolve_dataset(dataset, summary.vendor(), summary.class_uid);
            let index = format!("logs-{dataset}-{namespace}");
            (index, dataset.clone(), Some(DataStream { kind: "logs", dataset, namespace }))
        }
        Target::Index(index) => (index.clone(), DEFAULT_DATASET.to_owned(), None),
    };
    let action = Action { create: Create { index: &index, id: uid } };
    let head = Head {
        timestamp: at,
        data_stream: stream,
        event: Ecs {
            id: uid,
            kind: "event",
            code: summary.event_code(),
            dataset: &dataset,
            provider: summary.vendor(),
        },
    };
    let mut lines = Vec::with_capacity(512);
    serde_json::to_writer(&mut lines, &action).map_err(|e| format!("cannot write the action: {e}"))?;
    lines.push(b'\n');
    serde_json::to_writer(&mut lines, &head).map_err(|e| format!("cannot write the document: {e}"))?;
    // The OCSF event goes in as the queued bytes (summarize just read its head and `metadata`;
    // bytes damaged between them would go as they are, refused by Elasticsearch for this item
    // alone): the head always has `@timestamp`, so a comma joins it.
    lines.pop();
    lines.extend_from_slice(b",\"ocsf\":");
    Ok(DocHead { index, lines })
}

/// Decodes an Elastic Cloud `cloud_id` (`name:base64("host[:port]$es_uuid$kibana_uuid")`) into
/// the Elasticsearch URL `https://es_uuid.host[:port]`.
pub fn decode_cloud_id(cloud_id: &str) -> Result<url::Url, String> {
    let encoded = cloud_id.rsplit_once(':').map_or(cloud_id, |(_, b)| b);
    let bytes =
        BASE64.decode(encoded.trim()).map_err(|e| format!("the part after the deployment name is not base64 ({e})"))?;
    let text = String::from_utf8(bytes).map_err(|_| "its decoded value is not text".to_owned())?;
    let mut parts = text.split('$');
    let (host, es) = match (parts.next(), parts.next()) {
        (Some(h), Some(e)) if !h.is_empty() && !e.is_empty() => (h, e),
        _ => return Err("its decoded value is not \"host$es_uuid$kibana_uuid\"".to_owned()),
    };
    let (host, port) = match host.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h, Some(p)),
        _ => (host, None),
    };
    let text = match port {
        Some(p) => format!("https://{es}.{host}:{p}"),
        None => format!("https://{es}.{host}"),
    };
    url::Url::parse(&text).map_err(|e| format!("it names no usable host ({e})"))
}

/// Elastic's data-stream naming rules for a dataset or namespace (placeholders allowed in the
/// dataset only).
pub fn check_name_part(what: &str, value: &str, placeholders: bool) -> Result<(), String> {
    let plain = match placeholders {
        true => value.replace("{vendor}", "v").replace("{class_uid}", "1"),
        false => value.to_owned(),
    };
    if plain.is_empty() {
        return Err(format!("the {what} must not be empty"));
    }
    if plain.contains(['{', '}']) {
        return Err(format!("the {what} may use only the placeholders {{vendor}} and {{class_uid}}"));
    }
    if plain.chars().any(|c| c.is_uppercase()) {
        return Err(format!("the {what} must be lower case (Elastic's data-stream naming)"));
    }
    if let Some(c) = plain.chars().find(|c| "\\/*?\"<>|,# :-".contains(*c)) {
        return Err(format!("the {what} must not contain {c:?} (Elastic's data-stream naming)"));
    }
    if plain.starts_with(['_', '+', '.']) {
        return Err(format!("the {what} must not start with '_', '+' or '.'"));
    }
    // The template's pattern puts `*` for a placeholder: `{vendor}` first would make it
    // `logs-*-*`, every data stream of the cluster (Elastic Agent's too), at our priority, and
    // `a{vendor}` would take in `logs-apache.access-*`: a placeholder follows a fixed name and
    // its `.` or `_`.
    if let Some(at) = value.find('{').filter(|_| placeholders) {
        let prefix = &value[..at];
        if prefix.len() < 2 || !prefix.ends_with(['.', '_']) {
            return Err(format!(
                "the {what} must begin with a fixed name and '.' or '_' before a placeholder (such as \
                 \"auditrelay.{{vendor}}\"): the index template's pattern would otherwise take in other \
                 data streams of the cluster (Elastic Agent's logs-*-*)"
            ));
        }
    }
    Ok(())
}

/// A plain index or alias name, by Elastic's index naming rules.
pub fn check_index(index: &str) -> Result<(), String> {
    if index.is_empty() || index == "." || index == ".." {
        return Err("must be an index or alias name".to_owned());
    }
    if index.chars().any(|c| c.is_uppercase()) {
        return Err("must be lower case".to_owned());
    }
    if let Some(c) = index.chars().find(|c| "\\/*?\"<>|,# :".contains(*c)) {
        return Err(format!("must not contain {c:?}"));
    }
    if index.starts_with(['-', '_', '+']) {
        return Err("must not start with '-', '_' or '+'".to_owned());
    }
    if index.len() > 255 {
        return Err("must be at most 255 bytes".to_owned());
    }
    Ok(())
}

/// The composable index template the document layout needs, to PUT at
/// `/_index_template/auditrelay-ocsf`: the data streams of `dataset` (placeholders match
/// anything), above the built-in `logs` template (priority 100) so its ECS mappings never apply
/// to our documents, no lifecycle policy, `ocsf.raw_data` stored but not indexed and
/// `ocsf.unmapped` one field (`flattened`; OpenSearch's `flat_object`), so neither explodes the
/// field count.
pub fn template(dataset: &str, opensearch: bool) -> serde_json::Value {
    let pattern = dataset.replace("{vendor}", "*").replace("{class_uid}", "*");
    // `ignore_above`: a value longer than that (a vendor's 40,000-character action name copied
    // into `event.code`) stays in `_source` unindexed; indexed, a term over Lucene's 32,766
    // bytes refuses the whole document.
    let keyword = serde_json::json!({"type": "keyword", "ignore_above": 1024});
    // OpenSearch has no constant_keyword.
    let constant = match opensearch {
        true => keyword.clone(),
        false => serde_json::json!({"type": "constant_keyword"}),
    };
    // Elasticsearch's `flattened` takes `ignore_above` (the immense-term limit again);
    // OpenSearch's `flat_object` has no such parameter.
    let flat = match opensearch {
        true => serde_json::json!({"type": "flat_object"}),
        false => serde_json::json!({"type": "flattened", "ignore_above": 1024}),
    };
    // `date`: a string dynamic mapping would detect as a date (ISO 8601) is a type of its own to
    // `match_mapping_type`; mapped `date` by the first vendor, another vendor's format in the
    // same field (RFC 2822) would be a mapping error, a dead letter.
    let dynamic: Vec<serde_json::Value> = ["string", "date", "long", "double", "boolean"]
        .iter()
        .map(|t| {
            let mut one = serde_json::Map::new();
            let rule = serde_json::json!({
                "path_match": "ocsf.*",
                "match_mapping_type": t,
                "mapping": {"type": "keyword", "ignore_above": 1024}
            });
            one.insert(format!("ocsf_{t}_as_keyword"), rule);
            serde_json::Value::Object(one)
        })
        .collect();
    serde_json::json!({
        "index_patterns": [format!("logs-{pattern}-*")],
        "data_stream": {},
        "priority": 200,
        // Bumped whenever the template changes: `check --connect` says when an older one is
        // installed.
        "version": TEMPLATE_VERSION,
        "_meta": {"description": "auditrelay: OCSF events under ocsf.*, a few ECS fields", "managed_by": "auditrelay"},
        "template": {
            "settings": {
                "index.mapping.total_fields.limit": 2000,
            },
            "mappings": {
                "dynamic": true,
                "date_detection": false,
                // Every OCSF value the template does not type is a keyword: vendors disagree on
                // types (a uid a number here, a string there), and a dynamic `long` mapped by
                // the first would refuse every later string as a mapping error (a dead letter).
                // `ignore_above` keeps a long string in `_source` without indexing it (a keyword
                // term over 32,766 bytes would refuse the document).
                "dynamic_templates": dynamic,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "data_stream": {"properties": {"type": constant, "dataset": constant, "namespace": constant}},
                    "event": {"properties": {
                        "id": keyword, "kind": keyword, "code": keyword, "dataset": keyword, "provider": keyword
                    }},
                    "ocsf": {"properties": {
                        "time": {"type": "date", "format": "epoch_millis"},
                        "class_uid": {"type": "long"},
                        "category_uid": {"type": "long"},
                        "activity_id": {"type": "long"},
                        "severity_id": {"type": "long"},
                        "type_uid": {"type": "long"},
                        "message": {"type": "text"},
                        "raw_data": {"type": "keyword", "index": false, "doc_values": false},
                        "unmapped": flat,
                        "metadata": {"properties": {
                            "uid": keyword, "event_code": keyword, "tenant_uid": keyword,
                            "product": {"properties": {"name": keyword, "vendor_name": keyword}}
                        }}
                    }}
                }
            }
        }
    })
}

/// Caps a receiver's reason and scrubs the sink's secrets from it.
fn scrub(text: &str, secrets: &[SecretString]) -> String {
    let refs: Vec<&SecretString> = secrets.iter().collect();
    let mut out = crate::redact::secrets_in(text, &refs);
    if out.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

impl ElasticsearchSink {
    pub fn new(cfg: &ElasticsearchSettings) -> Result<ElasticsearchSink, String> {
        let https = cfg.hosts.iter().any(|h| h.scheme() == "https");
        let verifier = match https {
            true => Some(crate::tls::server_verifier(cfg.ca_file.as_deref())?),
            false => None,
        };
        let http = crate::http::client(ClientOptions {
            // A redirect is an answer, not an instruction: the credentials must not follow it.
            redirects: Redirects::Never,
            verifier,
            offer_h2: false,
            connect_timeout: cfg.timeout,
            timeout: Some(cfg.timeout),
            headers: reqwest::header::HeaderMap::new(),
            max_idle_per_host: None,
        })
        .map_err(|e| match e {
            ClientError::Tls(e) => e,
            ClientError::Build(e) => format!("cannot set up the HTTP client: {e}"),
        })?;
        let secrets = cfg.auth.secrets().into_iter().cloned().collect();
        Ok(ElasticsearchSink {
            hosts: cfg.hosts.clone(),
            current: 0,
            http,
            auth: cfg.auth.clone(),
            secrets,
            target: cfg.target.clone(),
            gzip: cfg.gzip,
            clock: Clock::system(),
            stats: Arc::default(),
            memo: HashMap::new(),
            heads: std::collections::BTreeMap::new(),
        })
    }

    fn name_of(host: &url::Url) -> String {
        format!("elasticsearch {}", crate::redact::url(host))
    }

    fn target(&self) -> String {
        Self::name_of(&self.hosts[self.current % self.hosts.len()])
    }

    /// `path` under a host's base URL (its path prefix kept).
    fn join(host: &url::Url, path: &str) -> url::Url {
        let mut url = host.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url.set_query(None);
        url
    }

    /// Sends one request to the host that answered last, or, when it cannot be reached, to
    /// the next ones in turn (module docs). Returns the answer and the host that gave it.
    async fn request(
        &mut self,
        make: impl Fn(&reqwest::Client, &url::Url) -> reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, SendError> {
        let n = self.hosts.len();
        let mut failures = Vec::new();
        for step in 0..n {
            let i = (self.current + step) % n;
            let mut request = make(&self.http, &self.hosts[i]);
            if let Some(auth) = self.auth.header() {
                request = request.header(reqwest::header::AUTHORIZATION, auth);
            }
            match request.send().await {
                // A node that answers 502/503/504 (left its cluster, a dead pool behind a load
                // balancer) is passed over like an unreachable one while another is left to ask;
                // the last node's answer is the answer.
                Ok(response) if step + 1 < n && matches!(response.status().as_u16(), 502..=504) => {
                    failures.push(format!(
                        "{}: answered {}",
                        Self::name_of(&self.hosts[i]),
                        response.status().as_u16()
                    ));
                }
                Ok(response) => {
                    if step > 0 {
                        self.stats.es_failovers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(sink = %Self::name_of(&self.hosts[i]), "failed over to this node");
                    }
                    self.current = i;
                    return Ok(response);
                }
                Err(e) => failures.push(format!("{}: {}", Self::name_of(&self.hosts[i]), crate::tls::http_error(e))),
            }
        }
        Err(SendError::transient(format!("{what} failed on every node: {}", failures.join("; "))))
    }

    pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        if self.memo.len() > MEMO_CAP {
            self.memo.clear();
        }
        // What is left to send: the memo holds what Elasticsearch already answered for.
        let mut sent: Vec<(i64, String)> = Vec::new();
        let mut docs = Vec::new();
        for event in batch.iter() {
            if self.memo.contains_key(&event.id()) {
                continue;
            }
            let head = match self.heads.get(&event.id()) {
                Some(head) => head.as_ref().map(std::borrow::Cow::Borrowed).map_err(String::clone),
                None => document_head(&self.target, event.event).map(std::borrow::Cow::Owned),
            };
            match head {
                Ok(head) => {
                    sent.push((event.id(), head.index.clone()));
                    docs.push((event, head));
                }
                Err(reason) => {
                    self.memo.insert(event.id(), Some(reason));
                }
            }
        }
        if !sent.is_empty() {
            let (body, raw_bytes) = self.encode(&docs)?;
            drop(docs);
            self.post(body, raw_bytes, &sent).await?;
        }
        Ok(self.settle(batch.events()))
    }

    /// The `_bulk` body of `docs` (gzipped if configured) and its length before compression.
    /// Each event is written stamped straight into the body, or into the gzip encoder: no
    /// document, nor the uncompressed body, is copied first.
    fn encode(
        &self,
        docs: &[(StampedEvent<'_>, std::borrow::Cow<'_, DocHead>)],
    ) -> Result<(Vec<u8>, usize), SendError> {
        let raw_len: usize = docs.iter().map(|(event, head)| head.added() + event.len()).sum();
        let written = match self.gzip {
            true => {
                // In chunks, as HEC's encoder is fed (a write into deflate has a fixed cost).
                let gz = GzEncoder::new(Vec::with_capacity(raw_len / 4), Compression::fast());
                let mut gz = Counting::new(std::io::BufWriter::with_capacity(super::GZIP_CHUNK, gz));
                docs.iter()
                    .try_for_each(|(event, head)| head.write_document(&mut gz, event))
                    .and_then(|()| gz.inner.into_inner().map_err(std::io::IntoInnerError::into_error))
                    .and_then(|encoder| Ok((gz.written, encoder.finish()?)))
            }
            false => {
                let mut body = Counting::new(Vec::with_capacity(raw_len));
                docs.iter()
                    .try_for_each(|(event, head)| head.write_document(&mut body, event))
                    .map(|()| (body.written, body.inner))
            }
        };
        match written {
            Ok((raw_bytes, body)) => Ok((body, raw_bytes)),
            Err(e) => Err(SendError::transient(format!("{}: gzip: {e}", self.target()))),
        }
    }

    /// [`Protocol::wrapping`]: each event's action line and document head, closing brace and
    /// newline; an event that cannot be a document (refused, not sent) adds nothing. The heads
    /// are kept for `send`.
    fn measure(&mut self, events: &[QueuedEvent], added: &mut Vec<usize>) {
        // The cursor is past what comes before this batch: those heads are not needed again.
        if let Some(first) = events.first() {
            self.heads = self.heads.split_off(&first.id);
        }
        for event in events {
            if !self.heads.contains_key(&event.id) {
                let head = document_head(&self.target, event);
                self.heads.insert(event.id, head);
            }
            added.push(match self.heads.get(&event.id) {
                Some(Ok(head)) => head.added(),
                _ => 0,
            });
        }
    }

    /// Every event of `batch` is answered for: their refusals, and they leave the memo.
    fn settle(&mut self, batch: &[QueuedEvent]) -> Delivery {
        let mut delivery = Delivery::default();
        for event in batch {
            if let Some(Some(reason)) = self.memo.remove(&event.id) {
                delivery.refused.push(RefusedEvent { id: event.id, reason });
            }
        }
        delivery
    }

    /// One `_bulk` request of `sent` (queue id, index); reads the answer into the memo, and
    /// fails unless every item was delivered or refused.
    /// `body` is already gzipped if configured; `raw_bytes` is its length before compression.
    async fn post(&mut self, body: Vec<u8>, raw_bytes: usize, sent: &[(i64, String)]) -> Result<(), SendError> {
        let gzip = self.gzip;
        let body = bytes::Bytes::from(body);
        let response = self
            .request(
                |http, host| {
                    let mut url = Self::join(host, "/_bulk");
                    url.set_query(Some("filter_path=errors,items.*.status,items.*.error"));
                    let mut post = http.post(url).header("content-type", "application/x-ndjson").body(body.clone());
                    if gzip {
                        post = post.header("content-encoding", "gzip");
                    }
                    post
                },
                "bulk request",
            )
            .await?;
        let target = self.target();
        let status = response.status().as_u16();
        let retry_after = backoff::receiver_retry_after(response.headers(), self.clock.now_utc(), MeasureFrom::Now);
        let location = redirect_target(&response);
        let answer = match crate::http::read_capped(response, MAX_ANSWER, Overflow::Refuse).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { cap, .. }) if classify(status) == Answer::Bulk => {
                return Err(SendError::config(format!(
                    "{target}: the bulk answer is larger than {cap} bytes: not read; the events stay queued \
                     (lower batch_max_events)"
                )));
            }
            Err(BodyError::Broken { error, .. }) if classify(status) == Answer::Bulk => {
                return Err(SendError::transient(format!("{target}: the bulk answer broke off: {error}")));
            }
            Err(e) => e.into_read(),
        };
        let said = || {
            let text = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
            format!("{target}: answered {status} ({})", scrub(&text, &self.secrets))
        };
        match classify(status) {
            Answer::Bulk => {}
            Answer::Retry => return Err(SendError { retry_after, ..SendError::transient(said()) }),
            Answer::ServerError => return Err(SendError { retry_after, ..SendError::server_error(said()) }),
            Answer::TooLarge => {
                let what = match sent.len() {
                    1 => String::from("a document"),
                    n => format!("a request of {n} documents"),
                };
                return Err(SendError::too_large(format!(
                    "{target}: answered 413: {what} of {raw_bytes} bytes exceeds the cluster's http.max_content_length"
                )));
            }
            Answer::Operator if status == 407 => {
                let host = self.hosts[self.current % self.hosts.len()].clone();
                return Err(SendError::config(format!(
                    "{target}: {}; the events stay queued",
                    crate::http::proxy_refused(&host)
                )));
            }
            Answer::Operator if status == 400 => {
                return Err(SendError::config(format!(
                    "{}: the bulk request was refused whole (documents are refused per item, so this is \
                     the cluster, a proxy or a version this sink does not speak); the events stay queued",
                    said()
                )));
            }
            Answer::Operator if (300..=399).contains(&status) => {
                return Err(SendError::config(format!(
                    "{target}: answered {status}, a redirect to {location}: not followed (the credentials \
                     would go along); set hosts to the node itself; the events stay queued"
                )));
            }
            Answer::Operator if status == 401 || status == 403 => {
                return Err(SendError::config(format!(
                    "{}: the cluster refused {}; the events stay queued",
                    said(),
                    self.auth.name()
                )));
            }
            Answer::Operator => {
                return Err(SendError::config(format!(
                    "{}: not a bulk endpoint (check hosts and its path prefix); the events stay queued",
                    said()
                )));
            }
        }
        let items = serde_json::from_slice::<BulkAnswer>(&answer).ok().and_then(|a| a.items);
        let Some(items) = items.filter(|items| items.len() == sent.len()) else {
            return Err(SendError::config(format!(
                "{}: a {status} that is not a bulk answer for {} documents (a proxy in the way?); the events stay queued",
                said(),
                sent.len()
            )));
        };
        let mut retry = 0usize;
        let mut server: Option<String> = None;
        let mut operator: Option<String> = None;
        let mut operators = 0usize;
        for ((id, index), item) in sent.iter().zip(items) {
            let Some(item) = item.into_values().next() else {
                operators += 1;
                operator.get_or_insert_with(|| format!("{target}: an item of the bulk answer is empty"));
                continue;
            };
            let (kind, reason) = match &item.error {
                Some(e) => (e.kind.as_deref(), e.reason.as_deref().unwrap_or("")),
                None => (None, ""),
            };
            match classify_item(item.status, kind, reason) {
                Item::Delivered => {
                    if item.status == 409 {
                        self.stats.es_conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    self.memo.insert(*id, None);
                }
                Item::Refused => {
                    let why = format!(
                        "{target}: index {index} refused the document: {} {}: {}",
                        item.status,
                        kind.unwrap_or("-"),
                        scrub(reason, &self.secrets)
                    );
                    self.memo.insert(*id, Some(why));
                }
                Item::Retry => retry += 1,
                Item::ServerError | Item::Suspect => {
                    retry += 1;
                    server.get_or_insert_with(|| {
                        format!(
                            "{target}: index {index} failed on a document: {} {}: {}",
                            item.status,
                            kind.unwrap_or("-"),
                            scrub(reason, &self.secrets)
                        )
                    });
                }
                Item::Operator => {
                    operators += 1;
                    operator.get_or_insert_with(|| {
                        format!(
                            "{target}: index {index} answered an item {} {}: {}",
                            item.status,
                            kind.unwrap_or("-"),
                            scrub(reason, &self.secrets)
                        )
                    });
                }
            }
        }
        if let Some(first) = operator {
            return Err(SendError::config(format!(
                "{first} ({operators} of {} items so; {retry} to resend); the events stay queued",
                sent.len()
            )));
        }
        if retry > 0 {
            self.stats.es_item_retries.fetch_add(retry as u64, Ordering::Relaxed);
            if let Some(first) = server {
                let msg = format!("{first} ({retry} of {} items to resend)", sent.len());
                return Err(SendError { retry_after, ..SendError::server_error(msg) });
            }
            let msg =
                format!("{target}: {retry} of {} items refused for now (429 / 5xx); resending only those", sent.len());
            return Err(SendError { retry_after, ..SendError::transient(msg) });
        }
        Ok(())
    }

    /// `GET /` (the flavour and version), then, for a data stream, the index template: present,
    /// covering the sink's data streams, and not older than this agent's. Credentials without
    /// the cluster privileges these two reads need (an ingest-only API key, as Elastic advises
    /// for shippers: `create_doc` and `auto_configure` on the streams) are not an error: what
    /// they could not read is said to be unverified.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        let response = self.request(|http, host| http.get(Self::join(host, "/")), "GET /").await?;
        let target = self.target();
        let status = response.status().as_u16();
        let elastic_header = response.headers().get("x-elastic-product").is_some();
        let location = redirect_target(&response);
        let body = read_probe(response).await;
        let mut flavour = "";
        let found = match status {
            200 => {
                #[derive(Deserialize)]
                struct Root {
                    version: Option<Version>,
                }
                #[derive(Deserialize)]
                struct Version {
                    number: Option<String>,
                    distribution: Option<String>,
                }
                let version = serde_json::from_slice::<Root>(&body).ok().and_then(|r| r.version);
                let Some(version) = version else {
                    return Err(SendError::config(format!(
                        "{target}: GET / answered 200 without a version: not Elasticsearch or OpenSearch"
                    )));
                };
                let number = version.number.unwrap_or_else(|| "?".to_owned());
                flavour = match version.distribution.as_deref() {
                    Some("opensearch") => "OpenSearch",
                    _ if elastic_header => "Elasticsearch",
                    _ => "Elasticsearch (no X-Elastic-Product header)",
                };
                format!("{target}: {flavour} {number}")
            }
            300..=399 => {
                return Err(SendError::config(format!(
                    "{target}: GET / answered {status}, a redirect to {location}: not followed; set hosts to the node itself"
                )));
            }
            407 => {
                let host = self.hosts[self.current % self.hosts.len()].clone();
                return Err(SendError::config(format!("{target}: GET / {}", crate::http::proxy_refused(&host))));
            }
            401 => {
                return Err(SendError::config(format!(
                    "{target}: GET / answered 401: the cluster does not know {}",
                    self.auth.name()
                )));
            }
            // The credentials are known; they lack `monitor` (cluster:monitor/main), which
            // shipping does not need.
            // Only as Elasticsearch or OpenSearch answers it (their product header, or their
            // `security_exception`): a proxy's or another server's 403 proves no cluster.
            403 if elastic_header || String::from_utf8_lossy(&body).contains("security_exception") => format!(
                "{target}: reachable, {} known but without the `monitor` cluster privilege (GET / answered 403; \
                 shipping needs only create_doc and auto_configure on the data streams): flavour and version not read",
                self.auth.name()
            ),
            403 => {
                return Err(SendError::config(format!(
                    "{target}: GET / answered 403 without Elasticsearch's security_exception (a proxy or another \
                     server in the way?); {}",
                    self.auth.name()
                )));
            }
            _ => return Err(SendError::transient(format!("{target}: GET / answered {status}"))),
        };
        let Target::DataStream { dataset, namespace } = self.target.clone() else {
            let Target::Index(index) = &self.target else { return Ok(found) };
            return Ok(format!("{found}; writing to index {index}"));
        };
        // A name the sink writes to: the placeholders filled with what any vendor could give.
        let stream = format!("logs-{}-{namespace}", resolve_dataset(&dataset, Some("vendor"), Some(1)));
        let path = format!("/_index_template/{TEMPLATE_NAME}");
        let response = self.request(|http, host| http.get(Self::join(host, &path)), "template look-up").await?;
        let status = response.status().as_u16();
        let body = read_probe(response).await;
        let flag = if flavour == "OpenSearch" { " --opensearch" } else { "" };
        let dataset_flag = if dataset == DEFAULT_DATASET { String::new() } else { format!(" --dataset {dataset:?}") };
        let install = format!(
            "run `auditrelay elasticsearch template{flag}{dataset_flag} | curl -H 'Content-Type: application/json' \
             -X PUT <host>/_index_template/{TEMPLATE_NAME} -d @-` (with your credentials)"
        );
        match status {
            200 => {}
            404 => {
                return Err(SendError::config(format!("{found}; index template {TEMPLATE_NAME} missing: {install}")));
            }
            401 | 403 => {
                return Ok(format!(
                    "{found}; index template {TEMPLATE_NAME} not verified (the credentials may not read index \
                     templates: manage_index_templates)"
                ));
            }
            other => {
                return Err(SendError::config(format!("{found}; template look-up answered {other}")));
            }
        }
        #[derive(Deserialize)]
        struct Templates {
            index_templates: Vec<Named>,
        }
        #[derive(Deserialize)]
        struct Named {
            index_template: Installed,
        }
        #[derive(Deserialize)]
        struct Installed {
            #[serde(default)]
            index_patterns: Vec<String>,
            version: Option<u64>,
        }
        let installed = serde_json::from_slice::<Templates>(&body)
            .ok()
            .and_then(|t| t.index_templates.into_iter().next())
            .map(|n| n.index_template);
        let Some(installed) = installed else {
            return Err(SendError::config(format!(
                "{found}; the template look-up answered 200 without an index template"
            )));
        };
        if !installed.index_patterns.iter().any(|p| glob(p, &stream)) {
            return Err(SendError::config(format!(
                "{found}; index template {TEMPLATE_NAME} is installed but its index_patterns {:?} do not cover \
                 this sink's data streams ({stream}): they would get the cluster's default mappings; {install}",
                installed.index_patterns
            )));
        }
        match installed.version {
            Some(v) if v >= TEMPLATE_VERSION => {
                Ok(format!("{found}; index template {TEMPLATE_NAME} present (version {v}, covers {stream})"))
            }
            v => Err(SendError::config(format!(
                "{found}; index template {TEMPLATE_NAME} is older ({}) than this agent's (version {TEMPLATE_VERSION}): \
                 {install} (data streams take a new template at their next rollover)",
                v.map_or("no version".to_owned(), |v| format!("version {v}"))
            ))),
        }
    }
}

/// Whether an index pattern (`*` for any run of characters) matches `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == name;
    }
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
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

/// A redirect's `Location`, redacted for messages ("nowhere" without one).
fn redirect_target(response: &reqwest::Response) -> String {
    let location = response.headers().get("location").and_then(|v| v.to_str().ok());
    match location.map(|l| response.url().join(l)) {
        Some(Ok(to)) => crate::redact::url(&to),
        Some(Err(_)) => String::from("an unreadable Location"),
        None => String::from("nowhere (no Location)"),
    }
}

async fn read_probe(response: reqwest::Response) -> Vec<u8> {
    crate::http::read_capped(response, MAX_PROBE_ANSWER, Overflow::Truncate).await.unwrap_or_else(BodyError::into_read)
}

// ---------------------------------------------------------------------------------------------
// Configuration: `type = "elasticsearch"` keys, defaults and checks.

type Text = Option<Spanned<String>>;

/// The keys of a `type = "elasticsearch"` table besides the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    hosts: Option<Spanned<Vec<String>>>,
    cloud_id: Text,
    api_key: Option<Spanned<SecretText>>,
    api_key_file: Text,
    username: Text,
    password: Option<Spanned<SecretText>>,
    password_file: Text,
    ca_file: Text,
    dataset: Text,
    namespace: Text,
    index: Text,
    gzip: Option<Spanned<bool>>,
    timeout: Text,
}

impl Protocol for ElasticsearchSink {
    const TYPE: &'static str = "elasticsearch";
    const KEYS: &'static [&'static str] = &[
        "hosts",
        "cloud_id",
        "api_key",
        "api_key_file",
        "username",
        "password",
        "password_file",
        "ca_file",
        "dataset",
        "namespace",
        "index",
        "gzip",
        "timeout",
    ];
    type Keys = Keys;
    type Settings = ElasticsearchSettings;

    fn settings(r: Keys, cx: &TableKeys<'_>) -> Res<ElasticsearchSettings> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let hosts: Res<Vec<url::Url>> = match (&r.hosts, &r.cloud_id) {
            (Some(_), Some(c)) => cx.fail(c.span(), "cloud_id", "set either hosts or cloud_id, not both"),
            (None, None) => cx.fail(
                cx.table(),
                "hosts",
                "required for type \"elasticsearch\" (such as [\"https://127.0.0.1:9200\"]), or cloud_id",
            ),
            (Some(list), None) if list.get_ref().is_empty() => cx.fail(list.span(), "hosts", "must name a node"),
            (Some(list), None) => {
                let mut out = Ok(Vec::new());
                for (i, host) in list.get_ref().iter().enumerate() {
                    // `hosts[1]`: which node URL is wrong (the span is the list's).
                    let one = cx.url(&Some(Spanned::new(list.span(), host.clone())), &format!("hosts[{i}]"), "");
                    out = match (out, one) {
                        (Ok(mut v), Ok(u)) => {
                            v.push(u);
                            Ok(v)
                        }
                        (Err(e), _) | (_, Err(e)) => Err(e),
                    };
                }
                out
            }
            (None, Some(c)) => match decode_cloud_id(c.get_ref()) {
                Ok(url) => Ok(vec![url]),
                Err(why) => cx.fail(c.span(), "cloud_id", format!("not an Elastic Cloud ID: {why}")),
            },
        };
        let basic = r.username.is_some() || r.password.is_some() || r.password_file.is_some();
        let key = r.api_key.is_some() || r.api_key_file.is_some();
        let auth = match (key, basic) {
            (true, true) => {
                let span = r.username.as_ref().map(Spanned::span);
                cx.fail(span, "username", "set either api_key(_file) or username/password, not both")
            }
            (true, false) => cx.secret("api_key", &r.api_key, &r.api_key_file).and_then(|k| {
                // "id:key" as the API gives it is base64-encoded here; an encoded key is sent as is.
                let k = k.expose_secret();
                // Empty only when secrets are not read (`queue …` commands): a read secret never is.
                if !k.bytes().all(|b| b.is_ascii_graphic()) {
                    // Never sent without it: a key that cannot be a header would go out as none.
                    let span = r.api_key.as_ref().map(Spanned::span).or(r.api_key_file.as_ref().map(Spanned::span));
                    return cx.fail(span, "api_key", "must be printable ASCII without spaces (the key or \"id:key\")");
                }
                Ok(match k.contains(':') {
                    true => Auth::ApiKey(SecretString::from(BASE64.encode(k))),
                    false => Auth::ApiKey(SecretString::from(k.to_owned())),
                })
            }),
            (false, true) => {
                let password = cx.required_secret("password", &r.password, &r.password_file);
                let username = match &r.username {
                    Some(u) if !u.get_ref().is_empty() && !u.get_ref().contains(':') => Ok(u.get_ref().clone()),
                    Some(u) => cx.fail(u.span(), "username", "must be a non-empty name without ':'"),
                    None => cx.fail(cx.table(), "username", "required with password / password_file"),
                };
                username.and_then(|username| password.map(|password| Auth::basic(username, password)))
            }
            (false, false) => Ok(Auth::None),
        };
        let ca_file = match (&r.ca_file, &hosts) {
            (None, _) => Ok(None),
            (Some(p), Ok(hosts)) if hosts.iter().all(|h| h.scheme() == "https") => cx.path(p, "ca_file").map(Some),
            (Some(p), Ok(_)) => cx.fail(p.span(), "ca_file", "only used with https hosts"),
            (Some(p), Err(reported)) => cx.path(p, "ca_file").and(Err(*reported)),
        };
        let name = |v: &Text, key: &str, default: &str, placeholders: bool| -> Res<String> {
            match v {
                None => Ok(default.to_owned()),
                Some(t) => match check_name_part(key, t.get_ref(), placeholders) {
                    Ok(()) => Ok(t.get_ref().clone()),
                    Err(why) => cx.fail(t.span(), key, why),
                },
            }
        };
        let target = match &r.index {
            Some(index) => {
                let mut out = match check_index(index.get_ref()) {
                    Ok(()) => Ok(Target::Index(index.get_ref().clone())),
                    Err(why) => cx.fail(index.span(), "index", why),
                };
                for (key, v) in [("dataset", &r.dataset), ("namespace", &r.namespace)] {
                    if let Some(v) = v {
                        out = cx.fail(v.span(), key, "a data-stream key: not used with index");
                    }
                }
                out
            }
            None => {
                let dataset = name(&r.dataset, "dataset", DEFAULT_DATASET, true);
                let namespace = name(&r.namespace, "namespace", DEFAULT_NAMESPACE, false);
                match (dataset, namespace) {
                    (Ok(dataset), Ok(namespace)) => {
                        let full = format!("logs-{dataset}-{namespace}");
                        if full.len() > 100 {
                            let span = r.dataset.as_ref().or(r.namespace.as_ref()).map(Spanned::span);
                            cx.fail(span, "dataset", format!("the data stream name {full:?} is longer than 100 bytes"))
                        } else {
                            Ok(Target::DataStream { dataset, namespace })
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        };
        let timeout = cx.duration(&r.timeout, "timeout", Duration::from_secs(30), true);
        let cloud_id = r.cloud_id.as_ref().map(|c| c.get_ref().clone());
        Ok(ElasticsearchSettings {
            hosts: hosts?,
            cloud_id,
            auth: auth?,
            ca_file: ca_file?,
            target: target?,
            gzip: r.gzip.as_ref().is_none_or(|g| *g.get_ref()),
            timeout: timeout?,
        })
    }

    fn secrets(s: &ElasticsearchSettings) -> Vec<&SecretString> {
        s.auth.secrets()
    }

    fn render(s: &ElasticsearchSettings, kv: &mut dyn FnMut(&str, String)) {
        kv("type", "\"elasticsearch\"".to_owned());
        match &s.cloud_id {
            Some(c) => kv("cloud_id", format!("{c:?}")),
            None => {
                let hosts: Vec<String> = s.hosts.iter().map(|h| format!("{:?}", crate::redact::url(h))).collect();
                kv("hosts", format!("[{}]", hosts.join(", ")));
            }
        }
        match &s.auth {
            Auth::None => {}
            Auth::ApiKey(_) => kv("api_key", "\"[redacted]\"".to_owned()),
            Auth::Basic { username, .. } => {
                kv("username", format!("{username:?}"));
                kv("password", "\"[redacted]\"".to_owned());
            }
        }
        if let Some(ca) = &s.ca_file {
            kv("ca_file", path_text(ca));
        }
        match &s.target {
            Target::DataStream { dataset, namespace } => {
                kv("dataset", format!("{dataset:?}"));
                kv("namespace", format!("{namespace:?}"));
            }
            Target::Index(index) => kv("index", format!("{index:?}")),
        }
        kv("gzip", s.gzip.to_string());
        kv("timeout", duration_text(s.timeout));
    }

    fn open(s: &ElasticsearchSettings) -> Result<ElasticsearchSink, String> {
        ElasticsearchSink::new(s)
    }

    async fn attach(&mut self, a: Attach<'_>) -> Result<(), QueueError> {
        self.clock = a.clock.clone();
        self.stats = Arc::clone(a.stats);
        Ok(())
    }

    fn wrapping(&mut self, events: &[QueuedEvent], added: &mut Vec<usize>) {
        self.measure(events, added);
    }

    /// Caught up: the heads measured for the last batch are not needed again (the next batch
    /// is measured anew), so an idle sink does not keep them.
    fn idle(&mut self) {
        self.heads = std::collections::BTreeMap::new();
    }

    async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        ElasticsearchSink::send(self, batch).await
    }

    async fn probe(&mut self) -> Result<String, SendError> {
        ElasticsearchSink::probe(self).await
    }

    async fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::Mutex;

    use axum::http::{HeaderMap, StatusCode};

    use crate::sinks::Failure;

    fn event(id: i64, uid: &str) -> QueuedEvent {
        let body = format!(
            "{{\"time\":1778578887513,\"class_uid\":6003,\"metadata\":{{\"uid\":\"{uid}\",\"event_code\":\"user.login\",\
             \"product\":{{\"vendor_name\":\"Data Fold\"}}}},\"message\":\"a \\\"quoted\\\" line\"}}"
        );
        QueuedEvent { id, body: body.into_bytes(), collected_ms: 1_700_000_000_000 }
    }

    fn stream() -> Target {
        Target::DataStream { dataset: DEFAULT_DATASET.into(), namespace: DEFAULT_NAMESPACE.into() }
    }

    /// Issue 21: what `wrapping` says a document adds (action line, head, closing brace,
    /// newline) is exactly what the request carries beyond the event; an event that cannot be a
    /// document adds nothing; heads before the next measured batch are dropped.
    #[test]
    fn what_a_document_adds_is_measured_exactly() {
        let mut es = sink(vec!["http://127.0.0.1:1".parse().unwrap()]);
        let mut events = vec![event(1, "u1"), event(2, "a-longer-uid-2"), event(3, "u3")];
        events[2].body = b"not json".to_vec();
        let mut added = Vec::new();
        es.measure(&events, &mut added);
        assert_eq!(added[2], 0, "not an event: refused, not sent");
        for (event, added) in events[..2].iter().zip(&added) {
            let doc = document(&es.target, event).unwrap();
            assert_eq!(doc.lines.len(), event.body.len() + added);
        }
        es.measure(&events[1..], &mut Vec::new());
        assert_eq!(es.heads.keys().copied().collect::<Vec<_>>(), [2, 3], "heads the cursor passed dropped");
        Protocol::idle(&mut es);
        assert!(es.heads.is_empty(), "an idle sink keeps no heads");
    }

    /// Issue 21: a bulk body written from the stored events, each stamped as it is written (into
    /// the gzip encoder when gzip is on), is byte for byte the body the sink made of the stamped
    /// copies the loop used to hand it (documents joined; gzipped, the same once decompressed,
    /// and no larger than the whole body gzipped at once, give or take 2 %), with the same length
    /// before compression, for every shape of event and send time; the documents made of the
    /// stored events are those made of the copies.
    #[test]
    fn a_bulk_body_is_byte_identical_to_the_one_made_of_stamped_copies() {
        use crate::sinks::tests::{TRANSMIT_TIMES, shaped_events};
        let events = shaped_events();
        for gzip in [false, true] {
            let mut es = sink(vec!["http://127.0.0.1:1".parse().unwrap()]);
            es.gzip = gzip;
            for measured in [false, true] {
                if measured {
                    es.measure(&events, &mut Vec::new());
                }
                for ms in TRANSMIT_TIMES {
                    let stamped = Stamped::new(&events, ms);
                    let (mut docs, mut refused) = (Vec::new(), Vec::new());
                    for event in stamped.iter() {
                        let head = match es.heads.get(&event.id()) {
                            Some(head) => head.as_ref().map(std::borrow::Cow::Borrowed).map_err(String::clone),
                            None => document_head(&es.target, event.event).map(std::borrow::Cow::Owned),
                        };
                        match head {
                            Ok(head) => docs.push((event, head)),
                            Err(reason) => refused.push((event.id(), reason)),
                        }
                    }
                    let (mut body, raw_bytes) = es.encode(&docs).unwrap();
                    // Before: each document made of a stamped copy, the body of the documents.
                    let (mut old, mut old_refused) = (Vec::new(), Vec::new());
                    for event in &events {
                        let mut sent = event.clone();
                        sent.body.clear();
                        crate::ocsf::stamp_transmit_time(&event.body, ms, &mut sent.body);
                        match document_head(&es.target, event) {
                            Ok(head) => {
                                let doc = head.document(&sent.body);
                                // The head read from the stamped copy is the same.
                                let of_copy = document(&es.target, &sent).unwrap();
                                assert_eq!((&of_copy.index, &of_copy.lines), (&doc.index, &doc.lines));
                                old.extend_from_slice(&doc.lines);
                            }
                            Err(reason) => old_refused.push((event.id, reason)),
                        }
                    }
                    assert_eq!(raw_bytes, old.len(), "at {ms}");
                    if gzip {
                        // What the cluster reads: deflate's bytes depend on how its input came
                        // (whole, or an event at a time), the data does not.
                        let mut whole = GzEncoder::new(Vec::new(), Compression::fast());
                        whole.write_all(&old).unwrap();
                        let whole = whole.finish().unwrap().len();
                        assert!(
                            body.len() <= whole + whole / 50 + 64,
                            "gzip of {} bytes: {} against {whole}",
                            old.len(),
                            body.len()
                        );
                        body = gunzip(&body);
                    }
                    assert!(body == old, "gzip {gzip}, measured {measured}, at {ms}: the body differs");
                    assert_eq!(refused, old_refused, "at {ms}");
                    assert!(refused.len() >= 4 && docs.len() >= 8, "{refused:?}");
                }
            }
        }
    }

    #[test]
    fn the_request_answer_table() {
        use Answer::*;
        let cases: &[(u16, Answer)] = &[
            (200, Bulk),
            (201, Bulk),
            (301, Operator),
            (302, Operator),
            (307, Operator),
            (308, Operator),
            (400, Operator),
            (401, Operator),
            (403, Operator),
            (404, Operator),
            (405, Operator),
            (408, Retry),
            (413, TooLarge),
            (429, Retry),
            (500, ServerError),
            (501, ServerError),
            (502, Retry),
            (503, Retry),
            (504, Retry),
        ];
        for (status, expected) in cases {
            assert_eq!(classify(*status), *expected, "{status}");
        }
    }

    #[test]
    fn the_item_answer_table() {
        use Item::*;
        let cases: &[(u16, Option<&str>, &str, Item)] = &[
            (201, None, "", Delivered),
            (200, None, "", Delivered),
            (409, Some("version_conflict_engine_exception"), "", Delivered),
            (409, None, "", Delivered),
            (409, Some("resource_already_exists_exception"), "", Operator),
            (429, Some("es_rejected_execution_exception"), "", Retry),
            (429, Some("circuit_breaking_exception"), "", Retry),
            (429, Some("cluster_block_exception"), "disk usage exceeded flood-stage watermark", Retry),
            (500, Some("exception"), "", ServerError),
            (502, Some("exception"), "", ServerError),
            (503, Some("unavailable_shards_exception"), "", Retry),
            (400, Some("mapper_parsing_exception"), "", Refused),
            (400, Some("document_parsing_exception"), "", Refused),
            (400, Some("strict_dynamic_mapping_exception"), "mapping set to strict", Suspect),
            (
                400,
                Some("illegal_argument_exception"),
                "Can't merge a non object mapping [ocsf.resources.closed] with an object mapping",
                Suspect,
            ),
            (400, Some("illegal_argument_exception"), "field [actor.user.email_addr] doesn't exist", Suspect),
            (400, Some("illegal_argument_exception"), "Document contains at least one immense term in field", Refused),
            (400, Some("illegal_argument_exception"), "Limit of total fields [2000] has been exceeded", Refused),
            (
                400,
                Some("illegal_argument_exception"),
                "only write ops with an op_type of create are allowed in data streams",
                Operator,
            ),
            (400, Some("illegal_argument_exception"), "pipeline with id [x] does not exist", Operator),
            (400, Some("illegal_argument_exception"), "something this table does not know", Suspect),
            (400, Some("index_closed_exception"), "closed", Operator),
            (400, None, "", Suspect),
            (403, Some("security_exception"), "", Operator),
            (404, Some("index_not_found_exception"), "", Operator),
        ];
        for (status, kind, reason, expected) in cases {
            assert_eq!(classify_item(*status, *kind, reason), *expected, "{status} {kind:?} {reason}");
        }
    }

    #[test]
    fn a_document_has_the_event_time_data_stream_ecs_fields_and_the_event_under_ocsf() {
        let ev = event(1, "u-1");
        let doc = document(&stream(), &ev).unwrap();
        assert_eq!(doc.index, "logs-auditrelay.ocsf-default");
        let text = String::from_utf8(doc.lines.clone()).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], r#"{"create":{"_index":"logs-auditrelay.ocsf-default","_id":"u-1"}}"#);
        let d: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(d["@timestamp"], "2026-05-12T09:41:27.513Z");
        assert_eq!(
            d["data_stream"],
            serde_json::json!({"type":"logs","dataset":"auditrelay.ocsf","namespace":"default"})
        );
        assert_eq!(d["event"]["id"], "u-1");
        assert_eq!(d["event"]["kind"], "event");
        assert_eq!(d["event"]["code"], "user.login");
        assert_eq!(d["event"]["dataset"], "auditrelay.ocsf");
        let queued: serde_json::Value = serde_json::from_slice(&ev.body).unwrap();
        assert_eq!(d["ocsf"], queued, "the OCSF event exactly as queued, escapes kept");
    }

    #[test]
    fn placeholders_an_index_and_an_event_without_time_or_uid() {
        let target = Target::DataStream { dataset: "auditrelay.{vendor}.{class_uid}".into(), namespace: "prod".into() };
        assert_eq!(document(&target, &event(1, "u")).unwrap().index, "logs-auditrelay.data_fold.6003-prod");
        let doc = document(&Target::Index("audit".into()), &event(1, "u")).unwrap();
        let text = String::from_utf8(doc.lines).unwrap();
        assert!(text.starts_with(r#"{"create":{"_index":"audit","_id":"u"}}"#), "{text}");
        assert!(!text.contains("data_stream"), "{text}");
        // No `time`: the queued time.
        let no_time =
            QueuedEvent { id: 2, body: br#"{"metadata":{"uid":"x"}}"#.to_vec(), collected_ms: 1_700_000_000_000 };
        let text = String::from_utf8(document(&stream(), &no_time).unwrap().lines).unwrap();
        assert!(text.contains(r#""@timestamp":"2023-11-14T22:13:20.000Z""#), "{text}");
        // No `metadata.uid`: refused with the reason.
        let no_uid = QueuedEvent { id: 3, body: br#"{"time":1}"#.to_vec(), collected_ms: 0 };
        assert!(document(&stream(), &no_uid).unwrap_err().contains("no metadata.uid"));
        let not_json = QueuedEvent { id: 4, body: b"[1]".to_vec(), collected_ms: 0 };
        assert!(document(&stream(), &not_json).unwrap_err().contains("not an OCSF event"));
    }

    #[test]
    fn cloud_id_decoding() {
        let id = format!("my-deployment:{}", BASE64.encode("eu-west-1.aws.found.io$abc123$def456"));
        assert_eq!(decode_cloud_id(&id).unwrap().as_str(), "https://abc123.eu-west-1.aws.found.io/");
        let id = format!("dep:{}", BASE64.encode("example.com:9243$es$kb"));
        assert_eq!(decode_cloud_id(&id).unwrap().as_str(), "https://es.example.com:9243/");
        assert!(decode_cloud_id("dep:!!!").unwrap_err().contains("not base64"));
        let id = format!("dep:{}", BASE64.encode("nohostparts"));
        assert!(decode_cloud_id(&id).unwrap_err().contains("host$es_uuid"));
    }

    #[test]
    fn the_template_matches_the_dataset_and_keeps_raw_data_and_unmapped_out_of_the_field_count() {
        let t = template(DEFAULT_DATASET, false);
        assert_eq!(t["index_patterns"], serde_json::json!(["logs-auditrelay.ocsf-*"]));
        assert!(t["priority"].as_u64().unwrap() > 100);
        let ocsf = &t["template"]["mappings"]["properties"]["ocsf"]["properties"];
        assert_eq!(ocsf["raw_data"]["index"], false);
        assert_eq!(ocsf["unmapped"]["type"], "flattened");
        assert_eq!(ocsf["unmapped"]["ignore_above"], 1024, "an immense value would refuse the document");
        let event = &t["template"]["mappings"]["properties"]["event"]["properties"];
        assert_eq!(event["code"]["ignore_above"], 1024, "an immense event code would refuse the document");
        assert_eq!(ocsf["time"]["format"], "epoch_millis");
        let t = template("auditrelay.{vendor}", true);
        assert_eq!(t["index_patterns"], serde_json::json!(["logs-auditrelay.*-*"]));
        assert_eq!(t["template"]["mappings"]["properties"]["ocsf"]["properties"]["unmapped"]["type"], "flat_object");
        assert!(!t.to_string().contains("constant_keyword"));
        let dynamic = t["template"]["mappings"]["dynamic_templates"].as_array().unwrap();
        assert_eq!(
            dynamic.len(),
            5,
            "strings, date-looking strings, longs, doubles and booleans of ocsf.* as keywords"
        );
        assert_eq!(t["version"], TEMPLATE_VERSION);
    }

    fn parse(sink: &str) -> Result<ElasticsearchSettings, String> {
        let text = format!(
            "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"O\"\n\
             api_key = \"k\"\n[[sinks]]\nname = \"es\"\ntype = \"elasticsearch\"\n{sink}"
        );
        let env = |name: &str| (name == "ES_API_KEY").then(|| "id1:secret1".to_owned());
        let mut cfg = crate::config::Config::parse_with_env(&text, std::path::Path::new("/etc/a.toml"), &env)
            .map_err(|e| e.to_string())?;
        match cfg.sinks.remove(0).kind {
            crate::sinks::SinkKind::Elasticsearch(s) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn settings_defaults_and_refusals_name_the_key() {
        let s = parse("hosts = [\"https://127.0.0.1:9200\", \"https://10.0.0.2/es/\"]\napi_key = \"${ES_API_KEY}\"\n")
            .unwrap();
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(s.target, stream());
        assert!(s.gzip);
        let Auth::ApiKey(k) = &s.auth else { panic!("{:?}", s.auth) };
        assert_eq!(k.expose_secret(), BASE64.encode("id1:secret1"), "id:key is base64-encoded");
        let mut shown = Vec::new();
        ElasticsearchSink::render(&s, &mut |k, v| shown.push(format!("{k} = {v}")));
        let shown = shown.join("\n");
        assert!(shown.contains("api_key = \"[redacted]\"") && !shown.contains("secret1"), "{shown}");

        let refusals: &[(&str, &str)] = &[
            ("", "sinks[0].hosts: required"),
            ("hosts = []", "sinks[0].hosts: must name a node"),
            ("hosts = [\"https://a\", \"ftp://x\"]", "sinks[0].hosts[1]: must be an http(s) URL"),
            ("hosts = [\"https://a:9200\"]\ncloud_id = \"x:eA==\"", "sinks[0].cloud_id: set either"),
            ("cloud_id = \"dep:!!\"", "sinks[0].cloud_id: not an Elastic Cloud ID"),
            (
                "hosts = [\"https://a\"]\napi_key = \"k\"\nusername = \"u\"\npassword = \"p\"",
                "sinks[0].username: set either",
            ),
            ("hosts = [\"https://a\"]\nusername = \"u\"", "sinks[0].password"),
            ("hosts = [\"https://a\"]\napi_key = \"two words\"", "sinks[0].api_key: must be printable ASCII"),
            ("hosts = [\"https://a\"]\npassword = \"p\"", "sinks[0].username: required"),
            ("hosts = [\"http://a\"]\nca_file = \"ca.pem\"", "sinks[0].ca_file: only used with https"),
            ("hosts = [\"https://a\"]\ndataset = \"Audit\"", "sinks[0].dataset: the dataset must be lower case"),
            ("hosts = [\"https://a\"]\ndataset = \"a-b\"", "sinks[0].dataset: the dataset must not contain '-'"),
            ("hosts = [\"https://a\"]\ndataset = \"a.{tenant}\"", "only the placeholders"),
            ("hosts = [\"https://a\"]\nnamespace = \"a*\"", "sinks[0].namespace: the namespace must not contain '*'"),
            ("hosts = [\"https://a\"]\nindex = \"audit\"\ndataset = \"x\"", "sinks[0].dataset: a data-stream key"),
            ("hosts = [\"https://a\"]\nindex = \"Audit\"", "sinks[0].index: must be lower case"),
            (
                "hosts = [\"https://a\"]\nnamespace = \"n\"\ndataset = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                "longer than 100 bytes",
            ),
        ];
        for (keys, expected) in refusals {
            let err = parse(keys).expect_err(keys);
            assert!(err.contains(expected), "{keys:?}: {err}");
        }
    }

    /// One scripted answer: status, headers, body.
    type Scripted = (u16, Vec<(&'static str, &'static str)>, String);

    /// A scripted cluster on loopback: each request's body is logged and answered in turn.
    #[derive(Default)]
    struct Cluster {
        bodies: Mutex<Vec<String>>,
        answers: Mutex<Vec<Scripted>>,
    }

    async fn serve(cluster: Arc<Cluster>) -> url::Url {
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
            let cluster = Arc::clone(&cluster);
            async move {
                assert_eq!(headers["content-type"], "application/x-ndjson");
                assert_eq!(headers["authorization"], "ApiKey a2V5");
                cluster.bodies.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                let (status, extra, text) = cluster.answers.lock().unwrap().remove(0);
                let mut out = axum::http::Response::builder().status(StatusCode::from_u16(status).unwrap());
                for (k, v) in extra {
                    out = out.header(k, v);
                }
                out.body(axum::body::Body::from(text)).unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        url::Url::parse(&format!("http://{addr}")).unwrap()
    }

    fn sink(hosts: Vec<url::Url>) -> ElasticsearchSink {
        ElasticsearchSink::new(&ElasticsearchSettings {
            hosts,
            cloud_id: None,
            auth: Auth::ApiKey(SecretString::from("a2V5")),
            ca_file: None,
            target: stream(),
            gzip: false,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out).unwrap();
        out
    }

    fn items(statuses: &[&str]) -> String {
        format!("{{\"errors\":true,\"items\":[{}]}}", statuses.join(","))
    }

    /// A mixed answer (201, 409, 429, 400 mapper): the send fails transient and the resend sends
    /// only the 429 item; the final Ok carries the refused one with Elastic's reason.
    #[tokio::test]
    async fn a_mixed_answer_resends_only_the_rejected_item_and_refuses_the_unmappable_one() {
        let cluster = Arc::new(Cluster::default());
        let mixed = items(&[
            r#"{"create":{"status":201}}"#,
            r#"{"create":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[u2]: version conflict, document already exists"}}}"#,
            r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}"#,
            r#"{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:15] failed to parse field [ocsf.time] of type [date]"}}}"#,
        ]);
        cluster.answers.lock().unwrap().extend([
            (200, vec![("retry-after", "3")], mixed),
            (200, vec![], items(&[r#"{"create":{"status":201}}"#])),
        ]);
        let url = serve(Arc::clone(&cluster)).await;
        let mut es = sink(vec![url]);
        let batch: Vec<QueuedEvent> = (1..=4).map(|i| event(i, &format!("u{i}"))).collect();
        let err = es.send(&Stamped::new(&batch, 0)).await.unwrap_err();
        assert_eq!(err.class, Failure::Transient, "{}", err.message);
        assert_eq!(err.retry_after, Some(Duration::from_secs(3)));
        assert!(err.message.contains("1 of 4 items"), "{}", err.message);
        let delivery = es.send(&Stamped::new(&batch, 0)).await.unwrap();
        let bodies = cluster.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0].lines().count(), 8);
        assert_eq!(bodies[1].lines().count(), 2, "only the 429 item again: {}", bodies[1]);
        assert!(bodies[1].contains(r#""_id":"u3""#), "{}", bodies[1]);
        assert_eq!(delivery.refused.len(), 1);
        assert_eq!(delivery.refused[0].id, 4);
        let reason = &delivery.refused[0].reason;
        assert!(reason.contains("document_parsing_exception") && reason.contains("ocsf.time"), "{reason}");
        assert!(es.memo.is_empty(), "the memo is cleared by the Ok");
        assert_eq!(es.stats.es_conflicts.load(Ordering::Relaxed), 1);
        assert_eq!(es.stats.es_item_retries.load(Ordering::Relaxed), 1);
    }

    /// `_bulk` answers 200 whatever became of the items: what is not a bulk answer, or an item
    /// error only an operator can fix, keeps the data; whole-request answers map to the loop's
    /// classes.
    #[tokio::test]
    async fn whole_request_answers_and_answers_that_are_not_acceptance() {
        let cluster = Arc::new(Cluster::default());
        cluster.answers.lock().unwrap().extend([
            (200, vec![], "<html>login</html>".to_owned()),
            (200, vec![], items(&[r#"{"create":{"status":201}}"#])),
            (
                200,
                vec![],
                items(&[
                    r#"{"create":{"status":201}}"#,
                    r#"{"create":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index [a2V5]"}}}"#,
                ]),
            ),
            (429, vec![("retry-after", "7")], "{}".to_owned()),
            (413, vec![], String::new()),
            (500, vec![], "{}".to_owned()),
            (401, vec![], "{\"error\":\"unauthorized\"}".to_owned()),
            (302, vec![("location", "https://login.example/")], String::new()),
        ]);
        let url = serve(Arc::clone(&cluster)).await;
        let mut es = sink(vec![url]);
        let batch = [event(1, "u1"), event(2, "u2")];
        let mut classes = Vec::new();
        let mut messages = Vec::new();
        for _ in 0..8 {
            let err = es.send(&Stamped::new(&batch, 0)).await.unwrap_err();
            classes.push((err.class, err.retry_after));
            messages.push(err.message);
        }
        let seven = Some(Duration::from_secs(7));
        assert_eq!(
            classes,
            [
                (Failure::Config, None),
                (Failure::Config, None),
                (Failure::Config, None),
                (Failure::Transient, seven),
                (Failure::TooLarge, None),
                (Failure::ServerError, None),
                (Failure::Config, None),
                (Failure::Config, None),
            ]
        );
        assert!(messages[0].contains("not a bulk answer"), "{}", messages[0]);
        assert!(messages[1].contains("not a bulk answer for 2"), "{}", messages[1]);
        let m = &messages[2];
        assert!(m.contains("index_not_found_exception") && m.contains("logs-auditrelay.ocsf-default"), "{m}");
        assert!(!m.contains("a2V5"), "the API key is scrubbed from Elastic's reason: {m}");
        assert!(messages[6].contains("API key"), "{}", messages[6]);
        assert!(messages[7].contains("not followed"), "{}", messages[7]);
        // The item taken by the third answer (u1) is not sent again.
        let bodies = cluster.bodies.lock().unwrap().clone();
        assert!(!bodies[3].contains(r#""_id":"u1""#), "{}", bodies[3]);
        assert_eq!(bodies.len(), 8, "the redirect was not followed");
    }

    /// A node that cannot be reached hands the request to the next; the node that answered is
    /// tried first next time.
    #[tokio::test]
    async fn an_unreachable_node_fails_over_to_the_next() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            url::Url::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap()
        };
        let cluster = Arc::new(Cluster::default());
        for _ in 0..2 {
            cluster.answers.lock().unwrap().push((200, vec![], items(&[r#"{"create":{"status":201}}"#])));
        }
        let live = serve(Arc::clone(&cluster)).await;
        let mut es = sink(vec![dead, live]);
        es.send(&Stamped::new(&[event(1, "u1")], 0)).await.unwrap();
        assert_eq!(es.current, 1);
        es.send(&Stamped::new(&[event(2, "u2")], 0)).await.unwrap();
        assert_eq!(es.stats.es_failovers.load(Ordering::Relaxed), 1, "the second send went to the live node first");
    }

    /// The example configuration's commented table names every key and, uncommented (the
    /// mutually exclusive keys left out), is a valid sink.
    #[test]
    fn the_example_config_documents_every_key() {
        let example = include_str!("../../config/auditrelay.example.toml");
        let start = example.find("# type = \"elasticsearch\"").expect("the example table");
        let block = &example[start..];
        for key in ElasticsearchSink::KEYS {
            assert!(block.contains(&format!("\n# {key} = ")), "{key} is not in the example");
        }
        let skip = ["cloud_id", "api_key_file", "username", "password", "password_file", "ca_file", "index"];
        let keys: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| ElasticsearchSink::KEYS.contains(&k) && !skip.contains(&k))
            })
            .collect();
        let s = parse(&keys.join("\n").replace("${ES_API_KEY}", "id1:secret1")).unwrap();
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(s.target, stream());
    }

    /// `check --connect`: the flavour and version from `GET /`, then the template's presence.
    #[tokio::test]
    async fn the_probe_names_the_flavour_and_whether_the_template_is_installed() {
        async fn cluster(root: &'static str, elastic: bool, template: u16) -> url::Url {
            cluster_with(root, elastic, template, super::template(DEFAULT_DATASET, false)).await
        }
        async fn cluster_with(
            root: &'static str,
            elastic: bool,
            template: u16,
            installed: serde_json::Value,
        ) -> url::Url {
            let listed = serde_json::json!({"index_templates": [{"name": TEMPLATE_NAME, "index_template": installed}]});
            let listed = listed.to_string();
            let app = axum::Router::new()
                .route(
                    "/",
                    axum::routing::get(move |headers: HeaderMap| async move {
                        let status = match headers.get("authorization").map(|v| v.as_bytes()) {
                            Some(b"ApiKey a2V5") => StatusCode::OK,
                            _ => StatusCode::UNAUTHORIZED,
                        };
                        let mut out = axum::http::Response::builder().status(status);
                        if elastic {
                            out = out.header("x-elastic-product", "Elasticsearch");
                        }
                        out.body(axum::body::Body::from(root)).unwrap()
                    }),
                )
                .route(
                    "/_index_template/auditrelay-ocsf",
                    axum::routing::get(move || {
                        let listed = listed.clone();
                        async move { (StatusCode::from_u16(template).unwrap(), listed) }
                    }),
                );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            url::Url::parse(&format!("http://{addr}")).unwrap()
        }
        let es = r#"{"version":{"number":"8.15.0"},"tagline":"You Know, for Search"}"#;
        let os = r#"{"version":{"distribution":"opensearch","number":"2.17.0"},"tagline":"The OpenSearch Project"}"#;
        let said = sink(vec![cluster(es, true, 200).await]).probe().await.unwrap();
        assert!(said.contains("Elasticsearch 8.15.0") && said.contains("template auditrelay-ocsf present"), "{said}");
        // Installed, but older than this agent's, or for another dataset: said, with the fix.
        let mut old = super::template(DEFAULT_DATASET, false);
        old["version"] = serde_json::json!(1);
        let err = sink(vec![cluster_with(es, true, 200, old).await]).probe().await.unwrap_err();
        assert!(
            err.message.contains("older (version 1)") && err.message.contains("elasticsearch template"),
            "{}",
            err.message
        );
        let other = super::template("other.set", false);
        let err = sink(vec![cluster_with(es, true, 200, other).await]).probe().await.unwrap_err();
        assert!(
            err.message.contains("do not cover") && err.message.contains("logs-auditrelay.ocsf-default"),
            "{}",
            err.message
        );
        let err = sink(vec![cluster(os, false, 404).await]).probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config);
        let m = &err.message;
        assert!(m.contains("OpenSearch 2.17.0") && m.contains("elasticsearch template --opensearch"), "{m}");
        let mut wrong = sink(vec![cluster(es, true, 200).await]);
        wrong.auth = Auth::ApiKey(SecretString::from("bm9wZQ=="));
        let err = wrong.probe().await.unwrap_err();
        assert!(err.message.contains("401") && err.message.contains("API key"), "{}", err.message);
        assert!(!err.message.contains("bm9wZQ=="), "{}", err.message);
    }

    /// The request as the contract has it: `POST <prefix>/_bulk?filter_path=…`, NDJSON,
    /// gzip-encoded by default, the API key header.
    #[tokio::test]
    async fn the_request_is_gzipped_ndjson_to_bulk_under_the_path_prefix() {
        type Seen = (String, HeaderMap, Vec<u8>);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = Arc::clone(&seen);
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let log = Arc::clone(&log);
                async move {
                    log.lock().unwrap().push((uri.to_string(), headers, body.to_vec()));
                    r#"{"errors":false,"items":[{"create":{"status":201}}]}"#
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut es = sink(vec![url::Url::parse(&format!("http://{addr}/es/")).unwrap()]);
        es.gzip = true;
        es.send(&Stamped::new(&[event(1, "u1")], 0)).await.unwrap();
        let (uri, headers, body) = seen.lock().unwrap().remove(0);
        assert_eq!(uri, "/es/_bulk?filter_path=errors,items.*.status,items.*.error");
        assert_eq!(headers["content-encoding"], "gzip");
        assert_eq!(headers["content-type"], "application/x-ndjson");
        assert_eq!(headers["authorization"], "ApiKey a2V5");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.ends_with('\n'), "NDJSON ends with a newline: {text}");
    }
}
