//! Splunk HTTP Event Collector sink: `POST /services/collector/event` with stacked JSON
//! envelopes (`time` in epoch seconds with milliseconds, `host`, `source`, `sourcetype`,
//! `index`, `event` = the OCSF object, flat indexed `fields`), `Authorization: Splunk <token>`,
//! gzip, and optional indexer acknowledgement. `sourcetype` is per event ([`Sourcetype`]:
//! default `ocsf:{vendor}`, the prefix Splunk's OCSF-CIM add-on recognises), filled from the
//! OCSF event's own attributes through `ocsf::summary`: the sink knows no vendor.
//!
//! It owns the envelope, the answer table of PROTOCOLS.md §1a (one function, [`classify`], and
//! a test pinning it) and what "delivered" means: the collector answered `code 0`, and with
//! `indexer_ack` on, `/services/collector/ack` has said the request's `ackId` was indexed. Until
//! then the batch is not delivered: after `ack_timeout` it is sent again (Splunk documents that
//! an unacknowledged batch may be resent; receivers deduplicate on `metadata.uid`). The ack
//! channel is a GUID kept in the queue database, so it survives restarts.
//!
//! Within one batch it repairs what the collector names: an invalid event (codes 6, 12, 13, 15
//! with `invalid-event-number`) is refused (dead-lettered by the loop) and the rest sent again.
//! Its requests fit `batch_max_bytes` as the collector counts them, envelopes and newlines
//! included: it tells the loop what each envelope adds ([`Protocol::wrapping`], the envelope's
//! head made once an event and kept for the sends), and the loop cuts the batch to fit (issue
//! 21: cut by the events' bytes alone, a batch at the default 1 MiB made a request over a
//! collector's 1 MB `max_content_length`, answered 413 and halved, batch after batch). Each
//! envelope is written, with its event stamped with the send time, straight into the request
//! body or the gzip encoder: neither the envelopes nor the uncompressed body are copied first.
//! It never splits a batch: a 413 (larger than the collector's `max_content_length`) goes back
//! to the loop as [`Failure::TooLarge`](super::Failure::TooLarge), which sends the part again in
//! halves and acknowledges each half the collector takes as it takes it (a single event still
//! too large is dead-lettered). Splitting here, a second half answered 503 after the first was
//! indexed failed the whole batch, and the loop indexed the first half twice.
//! Everything else goes back to the loop as a [`SendError`]: 429, 502, 503, 504 transient
//! (honouring `Retry-After`); 500 and other 5xx a server error (an outage or a poison event: the
//! loop backs off and bisects); an invalid-data 400 without an event number a refusal of the
//! whole request (the loop bisects it); 401, 403 and configuration-class 400s (codes 7, 10, 11,
//! 14, 16) as needing an operator, the data kept. Only the collector's own "yes" is acceptance
//! (PROTOCOLS §1a): a 2xx without HEC `code` 0 (a proxy's or login page's HTML, an empty body,
//! JSON of another shape) is not, and a redirect is never followed (the token would go along,
//! and reqwest would turn the POST into a GET of a page that answers 200): both are operator
//! errors that keep the data. A send is one request, repeated only without an event the
//! collector named invalid, so no failure follows an acceptance of part of the batch. Two
//! exceptions make a request indexed twice (at least once, never lost): an indexer
//! acknowledgement that never comes (the request is sent again after `ack_timeout`), and, if the
//! collector indexes the events before the one it names invalid (Vector's emulation does;
//! PROTOCOLS §1a asks to confirm on real Splunk), the repeat without it. The only waiting done
//! here is the ack poll; retries and back-off belong to the loop.

use std::path::PathBuf;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use toml::Spanned;

use super::{Delivery, SendError};
use crate::backoff::{self, MeasureFrom};
use crate::clock::Clock;
use crate::config::{Res, SecretText, TableKeys, Text, duration_text, path_text};

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
use crate::http::{BodyError, ClientError, ClientOptions, Overflow, Redirects};
use crate::ocsf::summary::EventField;
use crate::ocsf::summary::summarize;
use crate::queue::QueueError;
use crate::queue::{QueuedEvent, RefusedEvent};
use crate::sinks::{Attach, Protocol, Stamped, StampedEvent};

/// Answers longer than this are not read (an HEC answer is a few dozen bytes).
const MAX_ANSWER: usize = 64 * 1024;

#[derive(Debug)]
pub struct HecSink {
    /// The collector's base URL, for messages (no secret in it: config rejects credentials).
    target: String,
    event_url: url::Url,
    ack_url: url::Url,
    health_url: url::Url,
    http: reqwest::Client,
    token: SecretString,
    index: Option<String>,
    source: String,
    sourcetype: Sourcetype,
    host: String,
    fields: Vec<EventField>,
    gzip: bool,
    acks: Option<HecAcks>,
    /// The indexer-acknowledgement channel, from the queue database (`set_channel`).
    channel: Option<String>,
    /// The ack poll's waits and the "now" a `Retry-After` date is measured from: the system's
    /// until the worker gives its own (`set_clock`).
    clock: Clock,
    /// The worker's counters (`attach`): the ack waits are timed into them.
    stats: std::sync::Arc<super::SinkStats>,
    /// The envelope heads ([`HecSink::head`]) that [`Protocol::wrapping`] measured, by queue id
    /// (never reused), so `send` and its resends do not parse the events again; dropped as the
    /// next measured batch starts past them, or the worker is idle.
    heads: std::collections::BTreeMap<i64, Result<Vec<u8>, String>>,
}

/// What one answer of `/services/collector/event` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Code 0; `ack_id` when indexer acknowledgement is on.
    Accepted { ack_id: Option<u64> },
    /// The request's event number `index` is invalid; the others are not at fault.
    InvalidEvent { index: usize },
    /// 413: the request is larger than the collector's `max_content_length`; the loop sends it
    /// again in halves.
    TooLarge,
    /// Busy, unavailable, or a proxy in the way: send again later.
    Retry,
    /// 500 (code 8) and 5xx other than 502/503/504: an outage or an event the collector chokes
    /// on; the loop backs off and bisects.
    ServerError,
    /// Invalid data (codes 6, 12, 13, 15) without `invalid-event-number`: the request is
    /// refused, but not which event; the loop bisects it.
    Refused,
    /// Token, index or channel set-up: only an operator can fix it. The data is kept.
    Operator,
}

/// PROTOCOLS.md §1a, in one place. `invalid_event` is the answer's `invalid-event-number`.
pub fn classify(status: u16, code: Option<u64>, invalid_event: Option<usize>) -> Answer {
    match (status, code) {
        (200..=299, Some(0)) => Answer::Accepted { ack_id: None },
        // A 2xx without the collector's code 0 is a proxy, a load balancer or a login page
        // answering in its place (PROTOCOLS §1a): not acceptance.
        (200..=299, _) => Answer::Operator,
        // Never followed (the client has no redirect policy): an operator must fix the URL.
        (300..=399, _) => Answer::Operator,
        // Invalid data format, event field required or blank, bad indexed fields: that event.
        (400, Some(6 | 12 | 13 | 15)) => match invalid_event {
            Some(index) => Answer::InvalidEvent { index },
            // Without the event number nothing says which event: the loop bisects the request.
            None => Answer::Refused,
        },
        // 5 "No data" cannot happen for a non-empty request; treat it like the rest of the 400s:
        // incorrect index (7), channel missing or invalid (10, 11), ack disabled (14), query
        // string auth (16), and any 400 this table does not know.
        (400, _) => Answer::Operator,
        (401 | 403, _) => Answer::Operator,
        (413, _) => Answer::TooLarge,
        (408 | 429, _) => Answer::Retry,
        (502..=504, _) => Answer::Retry,
        (500..=599, _) => Answer::ServerError,
        // 404 (a wrong URL path), 405, … : the configuration points at something else.
        _ => Answer::Operator,
    }
}

/// The HEC answer body: `{"text": "...", "code": N, "ackId": N, "invalid-event-number": N}`.
#[derive(Debug, Default, Deserialize)]
struct AnswerBody {
    #[serde(default)]
    text: String,
    code: Option<u64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(rename = "invalid-event-number")]
    invalid_event: Option<usize>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<Box<RawValue>>,
    host: &'a str,
    source: &'a str,
    sourcetype: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<&'a str>,
    // `event` follows, added as the queued bytes (see `HecSink::envelope`).
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "fields_map")]
    fields: Vec<(&'static str, String)>,
}

/// `fields` as a flat JSON object of strings (HEC rejects nested values, code 15).
fn fields_map<S: serde::Serializer>(fields: &[(&'static str, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = s.serialize_map(Some(fields.len()))?;
    for (k, v) in fields {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

/// Epoch seconds with exactly three decimals, written as digits (no float rounding). A time
/// before 1970 is left out: the collector then stamps the event with its arrival.
fn hec_time(ms: i64) -> Option<Box<RawValue>> {
    if ms < 0 {
        return None;
    }
    let text = format!("{}.{:03}", ms / 1000, ms % 1000);
    RawValue::from_string(text).ok()
}

impl HecSink {
    pub fn new(cfg: &HecSinkSettings) -> Result<HecSink, String> {
        let join = |path: &str| {
            let mut url = cfg.url.clone();
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}{path}"));
            url
        };
        let verifier = match cfg.url.scheme() {
            "https" => Some(crate::tls::server_verifier(cfg.ca_file.as_deref())?),
            _ => None,
        };
        let http = crate::http::client(ClientOptions {
            // A redirect is an answer, not an instruction: the token must not follow it.
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
        Ok(HecSink {
            target: format!("hec {}", crate::redact::url(&cfg.url)),
            event_url: join("/services/collector/event"),
            ack_url: join("/services/collector/ack"),
            health_url: join("/services/collector/health"),
            http,
            token: cfg.token.clone(),
            index: cfg.index.clone(),
            source: cfg.source.clone(),
            sourcetype: cfg.sourcetype.clone(),
            host: cfg.host.clone().unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            fields: cfg.fields.clone(),
            gzip: cfg.gzip,
            acks: cfg.acks,
            channel: None,
            clock: Clock::system(),
            stats: std::sync::Arc::default(),
            heads: std::collections::BTreeMap::new(),
        })
    }

    /// The indexer-acknowledgement channel this sink keeps across restarts.
    pub fn set_channel(&mut self, channel: String) {
        self.channel = Some(channel);
    }

    /// The agent's clock, for the ack poll's waits and `Retry-After` dates.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        let mut delivery = Delivery::default();
        let mut request = Vec::with_capacity(batch.len());
        for event in batch.iter() {
            match self.head_of(&event) {
                Ok(head) => request.push((event, head)),
                Err(reason) => delivery.refused.push(RefusedEvent { id: event.id(), reason }),
            }
        }
        // One request, sent again without each event the collector names as invalid. Never split
        // here (module docs): a 413 goes back to the loop.
        while !request.is_empty() {
            match self.post(&request).await? {
                Answer::Accepted { ack_id } => {
                    if let (Some(acks), Some(id)) = (self.acks, ack_id) {
                        let accepted_at = self.clock.now();
                        self.wait_for_ack(id, acks).await?;
                        let waited = self.clock.now().saturating_duration_since(accepted_at);
                        self.stats.ack_wait_seconds.observe(waited);
                    }
                    break;
                }
                Answer::InvalidEvent { index } => {
                    if index >= request.len() {
                        let msg = format!(
                            "{}: the collector names event {index} of a request of {} as invalid",
                            self.target,
                            request.len()
                        );
                        return Err(SendError::config(msg));
                    }
                    let (event, _) = request.remove(index);
                    let id = event.id();
                    let reason =
                        format!("{}: the collector refused the event as invalid (HEC codes 6/12/13/15)", self.target);
                    tracing::warn!(sink = %self.target, event_id = id, "collector refused an event as invalid; sending the rest again");
                    delivery.refused.push(RefusedEvent { id, reason });
                }
                Answer::TooLarge => {
                    // Also the dead-letter reason of an event too large alone.
                    let bytes = request_len(&request);
                    let what = match request.len() {
                        1 => String::from("an envelope"),
                        n => format!("a request of {n} envelopes"),
                    };
                    return Err(SendError::too_large(format!(
                        "{}: answered 413: {what} of {bytes} bytes exceeds the collector's max_content_length",
                        self.target
                    )));
                }
                Answer::Retry | Answer::Operator | Answer::ServerError | Answer::Refused => {
                    // `post` turns these into errors; kept for exhaustiveness.
                    return Err(SendError::transient(format!("{}: request not accepted", self.target)));
                }
            }
        }
        Ok(delivery)
    }

    /// The head of an event's envelope ([`HecSink::head`]: measured before, or made now from the
    /// stored event), or why this event cannot be one.
    fn head_of(&self, event: &StampedEvent<'_>) -> Result<std::borrow::Cow<'_, [u8]>, String> {
        match self.heads.get(&event.id()) {
            Some(Ok(head)) => Ok(std::borrow::Cow::Borrowed(head.as_slice())),
            Some(Err(reason)) => Err(reason.clone()),
            None => self.head(event.stored()).map(std::borrow::Cow::Owned),
        }
    }

    /// An envelope up to its `event` (`{"time":…,"fields":{…},"event":`), or why this body
    /// cannot be one. Nothing in it depends on `transmit_time`, so it is made once an event.
    fn head(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let summary = summarize(body).map_err(|e| format!("queued body is not an OCSF event: {e}"))?;
        std::str::from_utf8(body).map_err(|e| format!("queued body is not UTF-8: {e}"))?;
        let fields = self.fields.iter().filter_map(|f| summary.field(*f).map(|v| (f.name(), v.to_string()))).collect();
        let envelope = Envelope {
            time: summary.time.and_then(hec_time),
            host: &self.host,
            source: &self.source,
            sourcetype: self.sourcetype.fill(&summary),
            index: self.index.as_deref(),
            fields,
        };
        let mut out = Vec::with_capacity(256);
        serde_json::to_writer(&mut out, &envelope).map_err(|e| format!("cannot write the envelope: {e}"))?;
        // The envelope always has `host`, so a comma joins `event` to it.
        out.pop(); // its closing brace
        out.extend_from_slice(b",\"event\":");
        Ok(out)
    }

    /// [`Protocol::wrapping`]: each event's envelope head, its closing brace and the newline
    /// between envelopes; an event that cannot be one (refused, not sent) adds nothing. The heads
    /// are kept for `send`.
    fn measure(&mut self, events: &[QueuedEvent], added: &mut Vec<usize>) {
        // The cursor is past what comes before this batch: those heads are not needed again.
        if let Some(first) = events.first() {
            self.heads = self.heads.split_off(&first.id);
        }
        for event in events {
            if !self.heads.contains_key(&event.id) {
                let head = self.head(&event.body);
                self.heads.insert(event.id, head);
            }
            added.push(match self.heads.get(&event.id) {
                Some(Ok(head)) => head.len() + 2,
                _ => 0,
            });
        }
    }

    /// Posts one request of envelopes and reads what the collector said. Retry and
    /// operator-class answers come back as errors, with the collector's text.
    async fn post(&self, request: &[(StampedEvent<'_>, std::borrow::Cow<'_, [u8]>)]) -> Result<Answer, SendError> {
        let body = self.encode(request)?;
        let mut post = self.http.post(self.event_url.clone()).header("authorization", self.authorization());
        if self.gzip {
            post = post.header("content-encoding", "gzip");
        }
        if self.acks.is_some() {
            post = post.header("x-splunk-request-channel", self.channel());
        }
        let response = post.header("content-type", "application/json").body(body).send().await.map_err(|e| {
            SendError::transient(format!("{}: request failed: {}", self.target, crate::tls::http_error(e)))
        })?;
        let status = response.status().as_u16();
        // Measured from our clock, not the answer's `Date`, as this sink always has.
        let retry_after = backoff::receiver_retry_after(response.headers(), self.clock.now_utc(), MeasureFrom::Now);
        let location = redirect_target(&response);
        let answer_body = read_answer(response).await;
        let mut answer = classify(status, answer_body.code, answer_body.invalid_event);
        if let Answer::Accepted { ack_id } = &mut answer {
            *ack_id = answer_body.ack_id;
            if self.acks.is_some() && ack_id.is_none() {
                let msg = format!(
                    "{}: indexer_ack is on but the answer has no ackId: is useACK enabled on the token?",
                    self.target
                );
                return Err(SendError::config(msg));
            }
        }
        let said = format!(
            "{}: answered {status} (code {}, {:?})",
            self.target,
            answer_body.code.map_or("-".to_owned(), |c| c.to_string()),
            answer_body.text
        );
        match answer {
            Answer::Retry => Err(SendError { retry_after, ..SendError::transient(said) }),
            Answer::ServerError => Err(SendError { retry_after, ..SendError::server_error(said) }),
            Answer::Refused => Err(SendError::refused(format!(
                "{said}: the collector refused the request as invalid without naming the event"
            ))),
            // Not the collector: a proxy between us refused us (plain-HTTP forward proxy; through
            // a CONNECT tunnel the refusal is a connection error, `tls::http_error`).
            Answer::Operator if status == 407 => Err(SendError::config(format!(
                "{}: {}; the events stay queued",
                self.target,
                crate::http::proxy_refused(&self.event_url)
            ))),
            Answer::Operator if (300..=399).contains(&status) => Err(SendError::config(format!(
                "{}: answered {status}, a redirect to {location}: not followed (the token would go along); \
                 set url to the collector itself; the events stay queued",
                self.target
            ))),
            Answer::Operator if (200..=299).contains(&status) => Err(SendError::config(format!(
                "{said}: a {status} without HEC's code 0 is not the collector's acceptance (a proxy, load \
                 balancer or login page in the way?); the events stay queued"
            ))),
            Answer::Operator => Err(SendError::config(format!("{said}{}", hint(status, answer_body.code)))),
            other => Ok(other),
        }
    }

    /// The body of a request of envelopes, gzipped if configured. Each event is written stamped
    /// straight into the body, or into the gzip encoder: no envelope, nor the uncompressed
    /// body, is copied first.
    fn encode(&self, request: &[(StampedEvent<'_>, std::borrow::Cow<'_, [u8]>)]) -> Result<Vec<u8>, SendError> {
        let raw_len = request_len(request);
        match self.gzip {
            true => {
                // The small writes (a head, the event's parts, a brace) reach the encoder in
                // chunks: each write into deflate has a fixed cost (2,000 envelopes: 4.7 ms
                // written one by one, 2.7-3.1 ms in 32 KiB chunks).
                let gz = GzEncoder::new(Vec::with_capacity(raw_len / 4), Compression::fast());
                let mut chunks = std::io::BufWriter::with_capacity(super::GZIP_CHUNK, gz);
                write_envelopes(&mut chunks, request)
                    .and_then(|()| chunks.into_inner().map_err(std::io::IntoInnerError::into_error))
                    .and_then(GzEncoder::finish)
                    .map_err(|e| SendError::transient(format!("{}: gzip: {e}", self.target)))
            }
            false => {
                let mut body = Vec::with_capacity(raw_len);
                write_envelopes(&mut body, request)
                    .map_err(|e| SendError::transient(format!("{}: request body: {e}", self.target)))?;
                Ok(body)
            }
        }
    }

    /// Polls `/services/collector/ack` until `ack_id` is indexed, or fails after the timeout
    /// (the loop then sends the batch again).
    async fn wait_for_ack(&self, ack_id: u64, acks: HecAcks) -> Result<(), SendError> {
        let deadline = self.clock.now() + acks.timeout;
        loop {
            self.clock.sleep(acks.poll_interval).await;
            let last_problem = match self.poll_ack(ack_id).await {
                Ok(true) => return Ok(()),
                Ok(false) => String::from("not yet indexed"),
                Err(e) if e.class == super::Failure::Config => return Err(e),
                Err(e) => e.message,
            };
            if self.clock.now() >= deadline {
                let t = humantime::format_duration(acks.timeout);
                let msg = format!(
                    "{}: ackId {ack_id} not acknowledged as indexed within ack_timeout {t} ({last_problem}); sending the batch again",
                    self.target
                );
                return Err(SendError::transient(msg));
            }
        }
    }

    async fn poll_ack(&self, ack_id: u64) -> Result<bool, SendError> {
        let mut url = self.ack_url.clone();
        url.query_pairs_mut().append_pair("channel", &self.channel());
        let response = self
            .http
            .post(url)
            .header("authorization", self.authorization())
            .header("x-splunk-request-channel", self.channel())
            .header("content-type", "application/json")
            .body(format!("{{\"acks\":[{ack_id}]}}"))
            .send()
            .await
            .map_err(|e| {
                SendError::transient(format!("{}: ack poll failed: {}", self.target, crate::tls::http_error(e)))
            })?;
        let status = response.status().as_u16();
        let bytes = read_limited(response).await;
        if status != 200 {
            let answer: AnswerBody = serde_json::from_slice(&bytes).unwrap_or_default();
            let said = format!(
                "{}: ack poll answered {status} (code {}, {:?})",
                self.target,
                answer.code.map_or("-".to_owned(), |c| c.to_string()),
                answer.text
            );
            return Err(match classify(status, answer.code, None) {
                Answer::Operator => SendError::config(format!("{said}{}", hint(status, answer.code))),
                _ => SendError::transient(said),
            });
        }
        #[derive(Deserialize)]
        struct Acks {
            acks: std::collections::HashMap<String, bool>,
        }
        let acks: Acks = serde_json::from_slice(&bytes)
            .map_err(|e| SendError::transient(format!("{}: unreadable ack answer: {e}", self.target)))?;
        Ok(acks.acks.get(&ack_id.to_string()).copied().unwrap_or(false))
    }

    /// `GET /services/collector/health`, then an empty `POST` that a valid token answers with
    /// code 5 ("No data") and a refused one with 401/403: proves reachability, TLS and the token
    /// without sending an event.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        let mut health = self.health_url.clone();
        if self.acks.is_some() {
            health.query_pairs_mut().append_pair("ack", "true");
        }
        let response =
            self.http.get(health).header("authorization", self.authorization()).send().await.map_err(|e| {
                SendError::transient(format!("{}: health check failed: {}", self.target, crate::tls::http_error(e)))
            })?;
        let status = response.status().as_u16();
        let location = redirect_target(&response);
        let answer = read_answer(response).await;
        match status {
            200 => {}
            300..=399 => {
                return Err(SendError::config(format!(
                    "{}: health answered {status}, a redirect to {location}: not followed; set url to the collector itself",
                    self.target
                )));
            }
            407 => {
                let refused = crate::http::proxy_refused(&self.health_url);
                return Err(SendError::config(format!("{}: health check {refused}", self.target)));
            }
            // Splunk answers a health check with a wrong token "400 Invalid HEC token".
            400 | 401 | 403 => {
                let said = format!("{}: health answered {status} ({:?})", self.target, answer.text);
                return Err(SendError::config(format!("{said}{}", hint(401, None))));
            }
            _ => {
                return Err(SendError::transient(format!(
                    "{}: health answered {status} ({:?})",
                    self.target, answer.text
                )));
            }
        }
        let mut post = self.http.post(self.event_url.clone()).header("authorization", self.authorization());
        if self.acks.is_some() {
            post = post.header("x-splunk-request-channel", self.channel());
        }
        let response = post.body(Vec::new()).send().await.map_err(|e| {
            SendError::transient(format!("{}: token check failed: {}", self.target, crate::tls::http_error(e)))
        })?;
        let status = response.status().as_u16();
        let token = read_answer(response).await;
        match (status, token.code) {
            (400, Some(5)) | (200, Some(0)) => {
                Ok(format!("{}: healthy ({:?}); token accepted", self.target, answer.text))
            }
            _ => Err(SendError::config(format!(
                "{}: token check answered {status} (code {}, {:?}){}",
                self.target,
                token.code.map_or("-".to_owned(), |c| c.to_string()),
                token.text,
                hint(status, token.code)
            ))),
        }
    }

    pub async fn close(&mut self) {}

    fn authorization(&self) -> String {
        format!("Splunk {}", self.token.expose_secret())
    }

    fn channel(&self) -> String {
        // Set by the loop before the first batch; a probe without one uses a fresh GUID.
        self.channel.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    }
}

/// One envelope of `/services/collector/event` and the newline after it: its head (up to
/// `"event":`), the event as sent (stamped as it is written: the head was read from the stored
/// event, whose attributes the stamp does not change), the closing brace.
fn write_envelope<W: std::io::Write + ?Sized>(
    out: &mut W,
    head: &[u8],
    event: &StampedEvent<'_>,
) -> std::io::Result<()> {
    out.write_all(head)?;
    // The event goes in as the queued bytes, not parsed again (`transmit_time` is a splice
    // inside it). `summarize` read its head and `metadata`; bytes damaged between them on disk
    // would go as they are, and the collector names such an event invalid (code 6).
    event.write_to(out)?;
    out.write_all(b"}\n")
}

/// A request's envelopes, each followed by a newline.
fn write_envelopes<W: std::io::Write + ?Sized>(
    out: &mut W,
    request: &[(StampedEvent<'_>, std::borrow::Cow<'_, [u8]>)],
) -> std::io::Result<()> {
    request.iter().try_for_each(|(event, head)| write_envelope(out, head, event))
}

/// The bytes of a request's envelopes and newlines, before compression.
fn request_len(request: &[(StampedEvent<'_>, std::borrow::Cow<'_, [u8]>)]) -> usize {
    request.iter().map(|(event, head)| head.len() + event.len() + b"}\n".len()).sum()
}

/// What an operator should look at for a configuration-class answer.
fn hint(status: u16, code: Option<u64>) -> &'static str {
    match (status, code) {
        (401, _) | (403, _) => ": the token is missing, disabled or wrong (check token / token_file)",
        (400, Some(7)) => ": the token may not write to this index (check index)",
        (400, Some(10 | 11)) => ": the collector wants an indexer-ack channel (set indexer_ack = true?)",
        (400, Some(14)) => ": indexer acknowledgement is off for this token (set indexer_ack = false)",
        (404, _) => ": no collector at this URL (url should be the HEC base, e.g. https://host:8088)",
        _ => "",
    }
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

async fn read_answer(response: reqwest::Response) -> AnswerBody {
    serde_json::from_slice(&read_limited(response).await).unwrap_or_default()
}

/// At most [`MAX_ANSWER`] bytes of the answer; of a broken answer, what arrived before it broke.
async fn read_limited(response: reqwest::Response) -> Vec<u8> {
    crate::http::read_capped(response, MAX_ANSWER, Overflow::Truncate).await.unwrap_or_else(BodyError::into_read)
}

// ---------------------------------------------------------------------------------------------
// Configuration: `type = "hec"` keys, defaults and checks.

/// `type = "hec"`: Splunk HTTP Event Collector, `/services/collector/event`.
#[derive(Debug, Clone)]
pub struct HecSinkSettings {
    /// The collector's base URL (`https://splunk.example.com:8088`); paths are appended.
    pub url: url::Url,
    /// Sent as `Authorization: Splunk <token>`.
    pub token: SecretString,
    /// PEM CA certificates to trust instead of the system's roots (https only).
    pub ca_file: Option<PathBuf>,
    /// Envelope metadata; `index` `None` leaves it to the token's default index.
    pub index: Option<String>,
    pub source: String,
    /// Fixed, or filled per event from its `{vendor}` and `{class_uid}`.
    pub sourcetype: Sourcetype,
    /// `host`; `None`: this machine's name.
    pub host: Option<String>,
    /// Indexed fields sent in each envelope's flat `fields` object.
    pub fields: Vec<EventField>,
    /// `Content-Encoding: gzip` request bodies.
    pub gzip: bool,
    /// Indexer acknowledgement (the token has `useACK` on); `None`: a 200 is delivery.
    pub acks: Option<HecAcks>,
    /// Limit on one HTTP request (connect, send, answer).
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HecAcks {
    /// Pause between two `/services/collector/ack` polls for a batch.
    pub poll_interval: Duration,
    /// A batch not acknowledged as indexed within this is sent again.
    pub timeout: Duration,
}

/// The keys of a `type = "hec"` table besides the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    url: Option<Spanned<String>>,
    token: Option<Spanned<SecretText>>,
    token_file: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    index: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    sourcetype: Option<Spanned<String>>,
    hostname: Option<Spanned<String>>,
    fields: Option<Spanned<Vec<String>>>,
    gzip: Option<Spanned<bool>>,
    indexer_ack: Option<Spanned<bool>>,
    ack_poll_interval: Option<Spanned<String>>,
    ack_timeout: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

/// The default `sourcetype`: Splunk's OCSF-CIM add-on picks OCSF data up by sourcetypes
/// prefixed `ocsf:`, one per vendor (README "Shipping to Splunk").
pub const DEFAULT_SOURCETYPE: &str = "ocsf:{vendor}";

/// The `sourcetype` key: a fixed text, or a template filled per event from the OCSF event
/// alone (the sink knows no vendor): `{vendor}` is `metadata.product.vendor_name` lower-cased,
/// each character outside `[a-z0-9_]` made `_`; `{class_uid}` the class number. An event
/// without the attribute gets `unknown` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourcetype {
    template: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Vendor,
    ClassUid,
}

/// What a placeholder the event lacks becomes.
const UNKNOWN: &str = "unknown";

impl Sourcetype {
    /// Reads a template; the error names the unknown placeholder or the unclosed brace.
    pub fn parse(template: &str) -> Result<Sourcetype, String> {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let Some(len) = rest[open..].find('}') else {
                return Err(format!("unclosed '{{' in {template:?}; placeholders are {{vendor}} and {{class_uid}}"));
            };
            pieces.push(match &rest[open..open + len + 1] {
                "{vendor}" => Piece::Vendor,
                "{class_uid}" => Piece::ClassUid,
                other => {
                    return Err(format!(
                        "unknown placeholder {other} in {template:?}; use {{vendor}} or {{class_uid}}"
                    ));
                }
            });
            rest = &rest[open + len + 1..];
        }
        if rest.contains('}') {
            return Err(format!("unmatched '}}' in {template:?}; placeholders are {{vendor}} and {{class_uid}}"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Sourcetype { template: template.to_owned(), pieces })
    }

    /// The text as configured (for `check`).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// This event's sourcetype; a fixed one is borrowed.
    pub fn fill(&self, event: &crate::ocsf::summary::Summary<'_>) -> std::borrow::Cow<'_, str> {
        match self.pieces.as_slice() {
            [] => return std::borrow::Cow::Borrowed(""),
            [Piece::Text(fixed)] => return std::borrow::Cow::Borrowed(fixed),
            _ => {}
        }
        let mut out = String::with_capacity(self.template.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Vendor => out.push_str(&event.vendor_slug()),
                Piece::ClassUid => match event.class_uid {
                    Some(class) => out.push_str(&class.to_string()),
                    None => out.push_str(UNKNOWN),
                },
            }
        }
        std::borrow::Cow::Owned(out)
    }
}

impl Protocol for HecSink {
    const TYPE: &'static str = "hec";
    const KEYS: &'static [&'static str] = &[
        "url",
        "token",
        "token_file",
        "ca_file",
        "index",
        "source",
        "sourcetype",
        "hostname",
        "fields",
        "gzip",
        "indexer_ack",
        "ack_poll_interval",
        "ack_timeout",
        "timeout",
    ];
    type Keys = Keys;
    type Settings = HecSinkSettings;

    fn settings(r: Keys, cx: &TableKeys<'_>) -> Res<HecSinkSettings> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let url = if r.url.is_none() {
            let msg = "required for type \"hec\" (such as \"https://splunk.example.com:8088\")";
            cx.fail(cx.table(), "url", msg)
        } else {
            cx.url(&r.url, "url", "")
        };
        let token = cx.required_secret("token", &r.token, &r.token_file);
        let text = |v: &Text, key: &str, default: Option<&str>| -> Res<Option<String>> {
            match v {
                None => Ok(default.map(str::to_owned)),
                Some(t) if t.get_ref().trim().is_empty() => cx.fail(t.span(), key, "must not be empty"),
                Some(t) => Ok(Some(t.get_ref().clone())),
            }
        };
        let index = text(&r.index, "index", None);
        let source = text(&r.source, "source", Some("auditrelay")).map(Option::unwrap_or_default);
        let sourcetype = text(&r.sourcetype, "sourcetype", Some(DEFAULT_SOURCETYPE)).and_then(|t| {
            let t = t.unwrap_or_default();
            Sourcetype::parse(&t).or_else(|why| cx.fail(r.sourcetype.as_ref().map(Spanned::span), "sourcetype", why))
        });
        let host = text(&r.hostname, "hostname", None);
        let fields = match &r.fields {
            None => Ok(vec![EventField::ClassUid, EventField::Vendor, EventField::Tenant]),
            Some(list) => {
                let mut fields = Ok(Vec::new());
                for name in list.get_ref() {
                    let Some(f) = EventField::ALL.into_iter().find(|f| f.name() == name) else {
                        let names: Vec<&str> = EventField::ALL.iter().map(|f| f.name()).collect();
                        let msg = format!("unknown field {name:?}; choose from {}", names.join(", "));
                        fields = cx.fail(list.span(), "fields", msg);
                        break;
                    };
                    if let Ok(fields) = &mut fields
                        && !fields.contains(&f)
                    {
                        fields.push(f);
                    }
                }
                fields
            }
        };
        let ack_on = r.indexer_ack.as_ref().is_some_and(|a| *a.get_ref());
        let acks = if ack_on {
            let poll_interval = cx.duration(&r.ack_poll_interval, "ack_poll_interval", 2 * SECOND, true);
            let timeout = cx.duration(&r.ack_timeout, "ack_timeout", 5 * MINUTE, true);
            match (poll_interval, timeout) {
                (Ok(poll_interval), Ok(timeout)) if poll_interval >= timeout => {
                    let span = r.ack_timeout.as_ref().map(Spanned::span);
                    cx.fail(span, "ack_timeout", "must be longer than ack_poll_interval")
                }
                // Not `?`: it would return before the keys below are checked.
                (poll_interval, timeout) => poll_interval
                    .and_then(|poll_interval| timeout.map(|timeout| Some(HecAcks { poll_interval, timeout }))),
            }
        } else {
            let mut acks = Ok(None);
            for (key, v) in [("ack_poll_interval", &r.ack_poll_interval), ("ack_timeout", &r.ack_timeout)] {
                if let Some(v) = v {
                    acks = cx.fail(v.span(), key, "only used with indexer_ack = true");
                }
            }
            acks
        };
        let ca_file = match &url {
            Ok(url) => crate::sinks::https_ca_file(cx, &r.ca_file, url),
            // Whether a CA is used depends on the refused URL; the file itself is still checked.
            Err(reported) => r.ca_file.as_ref().map(|p| cx.path(p, "ca_file")).transpose().and(Err(*reported)),
        };
        let timeout = cx.duration(&r.timeout, "timeout", 30 * SECOND, true);
        Ok(HecSinkSettings {
            ca_file: ca_file?,
            url: url?,
            token: token?,
            index: index?,
            source: source?,
            sourcetype: sourcetype?,
            host: host?,
            fields: fields?,
            gzip: r.gzip.as_ref().is_none_or(|g| *g.get_ref()),
            acks: acks?,
            timeout: timeout?,
        })
    }

    fn secrets(s: &HecSinkSettings) -> Vec<&SecretString> {
        vec![&s.token]
    }

    fn render(h: &HecSinkSettings, kv: &mut dyn FnMut(&str, String)) {
        let (d, p) = (duration_text, path_text);
        kv("type", "\"hec\"".to_owned());
        kv("url", format!("{:?}", crate::redact::url(&h.url)));
        kv("token", "\"[redacted]\"".to_owned());
        if let Some(ca) = &h.ca_file {
            kv("ca_file", p(ca));
        }
        if let Some(index) = &h.index {
            kv("index", format!("{index:?}"));
        }
        kv("source", format!("{:?}", h.source));
        kv("sourcetype", format!("{:?}", h.sourcetype.template()));
        if let Some(host) = &h.host {
            kv("hostname", format!("{host:?}"));
        }
        let fields: Vec<String> = h.fields.iter().map(|f| format!("{:?}", f.name())).collect();
        kv("fields", format!("[{}]", fields.join(", ")));
        kv("gzip", h.gzip.to_string());
        kv("indexer_ack", h.acks.is_some().to_string());
        if let Some(acks) = &h.acks {
            kv("ack_poll_interval", d(acks.poll_interval));
            kv("ack_timeout", d(acks.timeout));
        }
        kv("timeout", d(h.timeout));
    }

    fn open(s: &HecSinkSettings) -> Result<HecSink, String> {
        HecSink::new(s)
    }

    async fn attach(&mut self, a: Attach<'_>) -> Result<(), QueueError> {
        self.set_clock(a.clock.clone());
        self.stats = std::sync::Arc::clone(a.stats);
        self.set_channel(a.queue.sink_channel(a.name).await?);
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
        HecSink::send(self, batch).await
    }

    async fn probe(&mut self) -> Result<String, SendError> {
        HecSink::probe(self).await
    }

    async fn close(&mut self) {
        HecSink::close(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::Duration;

    /// A collector's `Retry-After` value as `post` reads it, against the system clock now.
    fn parse_retry_after(value: &str) -> Option<Duration> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, value.parse().ok()?);
        backoff::receiver_retry_after(&headers, Clock::system().now_utc(), MeasureFrom::Now)
    }

    #[test]
    fn the_answer_table_of_protocols_1a() {
        use Answer::*;
        let cases: &[(u16, Option<u64>, Option<usize>, Answer)] = &[
            (200, Some(0), None, Accepted { ack_id: None }),
            (200, None, None, Operator),
            (200, Some(5), None, Operator),
            (204, None, None, Operator),
            (302, None, None, Operator),
            (303, None, None, Operator),
            (307, None, None, Operator),
            (400, Some(5), None, Operator),
            (400, Some(6), Some(3), InvalidEvent { index: 3 }),
            (400, Some(12), Some(0), InvalidEvent { index: 0 }),
            (400, Some(13), Some(1), InvalidEvent { index: 1 }),
            (400, Some(15), Some(2), InvalidEvent { index: 2 }),
            (400, Some(6), None, Refused),
            (400, Some(12), None, Refused),
            (400, Some(7), None, Operator),
            (400, Some(10), None, Operator),
            (400, Some(11), None, Operator),
            (400, Some(14), None, Operator),
            (400, Some(16), None, Operator),
            (401, Some(2), None, Operator),
            (401, Some(3), None, Operator),
            (403, Some(1), None, Operator),
            (403, Some(4), None, Operator),
            (404, None, None, Operator),
            (408, None, None, Retry),
            (413, None, None, TooLarge),
            (429, None, None, Retry),
            (500, Some(8), None, ServerError),
            (500, None, None, ServerError),
            (501, None, None, ServerError),
            (502, None, None, Retry),
            (503, Some(9), None, Retry),
            (504, None, None, Retry),
        ];
        for (status, code, invalid, expected) in cases {
            assert_eq!(classify(*status, *code, *invalid), *expected, "{status} code {code:?}");
        }
    }

    #[test]
    fn a_sourcetype_template_takes_vendor_and_class_uid_only() {
        let t = Sourcetype::parse("ocsf:{vendor}/{class_uid}").unwrap();
        let body = br#"{"class_uid":3005,"metadata":{"product":{"vendor_name":"Config Cat"}}}"#;
        assert_eq!(t.fill(&summarize(body).unwrap()), "ocsf:config_cat/3005");
        assert_eq!(t.fill(&summarize(b"{}").unwrap()), "ocsf:unknown/unknown");
        assert_eq!(Sourcetype::parse("ocsf").unwrap().fill(&summarize(body).unwrap()), "ocsf");
        for (bad, says) in
            [("ocsf:{tenant}", "unknown placeholder {tenant}"), ("{vendor", "unclosed"), ("a}", "unmatched")]
        {
            let e = Sourcetype::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn time_is_epoch_seconds_with_three_decimals() {
        assert_eq!(hec_time(1_795_292_810_597).unwrap().get(), "1795292810.597");
        assert_eq!(hec_time(1_795_292_810_007).unwrap().get(), "1795292810.007");
        assert!(hec_time(-1).is_none());
    }

    /// A sink with an index, host and fields (a head with every part), never connected.
    fn measuring_settings(gzip: bool) -> HecSinkSettings {
        HecSinkSettings {
            url: "http://127.0.0.1:1".parse().unwrap(),
            token: SecretString::from("t"),
            ca_file: None,
            index: Some("main".into()),
            source: "auditrelay".into(),
            sourcetype: Sourcetype::parse("ocsf:{vendor}/{class_uid}").unwrap(),
            host: Some("collector-1".into()),
            fields: vec![EventField::ClassUid, EventField::Vendor, EventField::Tenant],
            gzip,
            acks: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Issue 21: what `wrapping` says an envelope adds is exactly what the request carries
    /// beyond the event (envelope, closing brace, newline), whatever the event's metadata; an
    /// event that cannot be one adds nothing; heads before the next measured batch are dropped.
    #[test]
    fn what_an_envelope_adds_is_measured_exactly() {
        let mut sink = HecSink::new(&measuring_settings(true)).unwrap();
        let bodies = [
            r#"{"time":1778578887513,"class_uid":6003,"metadata":{"uid":"u1","tenant_uid":"t","product":{"vendor_name":"Data Fold"}}}"#,
            r#"{"class_uid":3002,"message":"no time, \"quoted\""}"#,
            "not json",
            r#"{"time":1,"metadata":{"product":{"vendor_name":"Config Cat"}},"raw_data":"x"}"#,
        ];
        let events: Vec<QueuedEvent> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| QueuedEvent { id: i as i64 + 10, body: b.as_bytes().to_vec(), collected_ms: 0 })
            .collect();
        let mut added = Vec::new();
        sink.measure(&events, &mut added);
        assert_eq!(added.len(), events.len());
        assert_eq!(added[2], 0, "not an event: refused, not sent");
        let stamped = Stamped::new(&events, 0);
        for (event, added) in stamped.iter().zip(&added) {
            match sink.head_of(&event) {
                Ok(head) => {
                    let mut envelope = Vec::new();
                    write_envelope(&mut envelope, &head, &event).unwrap();
                    assert_eq!(envelope.len(), event.stored().len() + added, "{envelope:?}");
                }
                Err(e) => assert!(e.contains("not an OCSF event"), "{e}"),
            }
        }
        assert_eq!(sink.heads.len(), 4);
        sink.measure(&events[2..], &mut Vec::new());
        assert_eq!(sink.heads.keys().copied().collect::<Vec<_>>(), [12, 13], "heads the cursor passed dropped");
        Protocol::idle(&mut sink);
        assert!(sink.heads.is_empty(), "an idle sink keeps no heads");
    }

    /// Issue 21: a request written from the stored events, each stamped as it is written (into
    /// the gzip encoder when gzip is on), is byte for byte the request the sink made of the
    /// stamped copies the loop used to hand it (envelopes joined; gzipped, the same once
    /// decompressed, and no larger than the whole body gzipped at once, give or take 2 %), for
    /// every shape of event and send time; the events it cannot send are the same.
    #[test]
    fn a_request_is_byte_identical_to_the_one_made_of_stamped_copies() {
        use crate::sinks::tests::{TRANSMIT_TIMES, shaped_events};
        let events = shaped_events();
        for gzip in [false, true] {
            let mut sink = HecSink::new(&measuring_settings(gzip)).unwrap();
            // Measured as the loop does (heads read from the stored events), and not (made in
            // the send): the same either way.
            for measured in [false, true] {
                if measured {
                    sink.measure(&events, &mut Vec::new());
                }
                for ms in TRANSMIT_TIMES {
                    let stamped = Stamped::new(&events, ms);
                    let (mut request, mut refused) = (Vec::new(), Vec::new());
                    for event in stamped.iter() {
                        match sink.head_of(&event) {
                            Ok(head) => request.push((event, head)),
                            Err(reason) => refused.push((event.id(), reason)),
                        }
                    }
                    let body = sink.encode(&request).unwrap();
                    // Before: each envelope made of a stamped copy, the body of the envelopes.
                    let mut old = Vec::new();
                    let mut old_refused = Vec::new();
                    for event in &events {
                        let mut sent = Vec::new();
                        crate::ocsf::stamp_transmit_time(&event.body, ms, &mut sent);
                        match sink.head(&event.body) {
                            Ok(head) => {
                                old.extend_from_slice(&head);
                                old.extend_from_slice(&sent);
                                old.push(b'}');
                                old.push(b'\n');
                            }
                            Err(reason) => old_refused.push((event.id, reason)),
                        }
                    }
                    assert_eq!(request_len(&request), old.len(), "at {ms}");
                    let body = match gzip {
                        // What the collector reads: deflate's bytes depend on how its input came
                        // (whole, or an event at a time), the data does not.
                        true => {
                            let mut whole = GzEncoder::new(Vec::new(), Compression::fast());
                            whole.write_all(&old).unwrap();
                            let whole = whole.finish().unwrap().len();
                            let (sent, n) = (body.len(), old.len());
                            assert!(sent <= whole + whole / 50 + 64, "gzip of {n} bytes: {sent} against {whole}");
                            let mut text = Vec::new();
                            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
                                .unwrap();
                            text
                        }
                        false => body,
                    };
                    assert!(body == old, "gzip {gzip}, measured {measured}, at {ms}: the request differs");
                    assert_eq!(refused, old_refused, "at {ms}");
                    assert!(refused.len() >= 4 && request.len() >= 8, "{refused:?}");
                }
            }
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    /// Regression (issue 15 point 5): a HEC `Retry-After` a day away stalled delivery for a day;
    /// it is capped like every other wait.
    #[test]
    fn retry_after_is_capped() {
        let day = parse_retry_after("86400").expect("a wait");
        assert!(day <= Duration::from_secs(15 * 60), "HEC's Retry-After: 86400 was taken as {day:?}");
    }
}
