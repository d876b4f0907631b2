//! OTLP logs sink: each OCSF event as one OpenTelemetry `LogRecord`, a batch as one
//! `ExportLogsServiceRequest`, over OTLP/HTTP (`POST /v1/logs`, binary protobuf or OTLP/JSON) or
//! OTLP/gRPC (`LogsService/Export`), optionally gzipped, over rustls.
//!
//! It owns three things:
//! - the mapping of an event to a `LogRecord` (`log_record`): the event's own time, the time we
//!   collected it, the severity (`severity`), the body (the event as a kvlist, or its JSON text),
//!   a few `ocsf.*` attributes and the event name; `stamped_log_record` makes it of the stored
//!   event and its send time without a stamped copy of the event;
//! - the transports: reqwest for HTTP (set up by `crate::http::client`, as every HTTP client of
//!   the agent) and tonic for gRPC (its own channel), both verifying the receiver against
//!   `ca_file` or the system's roots with one rustls verifier (`tls::server_verifier`), both sending
//!   the operator's headers (API keys: never logged, marked sensitive);
//! - what the receiver's answer means: `verdict` is the one place the retry policy of the OTLP
//!   specification lives, and its test pins it.
//!
//! The OpenTelemetry SDK's batch exporter is deliberately not used: it drops a failed batch and
//! reports only an opaque error, while the queue must know whether each batch was taken
//! (PROTOCOLS §3a). Like every sink it never sleeps, never retries and never touches the queue:
//! a refused batch is an `Err` for the loop in `sinks/mod.rs` to resend. A batch the receiver
//! refuses for what it holds (HTTP 400, gRPC `INVALID_ARGUMENT`) is an `Err` of class
//! `Refused`, and one it fails on without saying why (500, 408, `UNKNOWN`, `INTERNAL`, …) of
//! class `ServerError`: the loop bisects them, so that only the events at fault reach the
//! dead-letter table, where the specification would drop the whole batch, and an outage none.
//! A request too large (HTTP 413, `RESOURCE_EXHAUSTED` without `RetryInfo`) is an `Err` of class
//! `TooLarge`, halved by the loop too, never here: each batch is one export, so no failure
//! follows the receiver taking part of it (a half taken, then the other half answered busy,
//! would otherwise have the loop send the taken half again).

use std::error::Error as StdError;
use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION};
use rustls::client::danger::ServerCertVerifier;
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt as _;
use tracing::{debug, warn};

mod config;

pub use config::{Keys, OtlpBody, OtlpProtocol, OtlpSinkSettings};

use super::{Delivery, SendError, Stamped, StampedEvent};
use crate::backoff::MeasureFrom;
use crate::clock::Clock;
use crate::http::{ClientError, ClientOptions, Overflow, Redirects, USER_AGENT};
use crate::ocsf::summary::{Summary, summarize};
use crate::queue::{QueuedEvent, RefusedEvent};

/// The most of a response body read, and the largest gRPC response decoded: the specification's
/// advice ("limit response parsing to 4 MiB"); an answer is a status and a message.
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// The longest pause a receiver can impose with `Retry-After` or `RetryInfo`: a wrong header
/// ("wait a day") must not stall the sink for longer; a receiver still busy then just asks again.
/// Every sink's bound (`backoff::receiver_retry_after` applies it to `Retry-After`).
const MAX_RETRY_AFTER: Duration = crate::backoff::SINK_MAX_RETRY_AFTER;

/// The receiver's message is quoted up to this many characters in errors and dead letters.
const MAX_MESSAGE_CHARS: usize = 500;

/// `service.name` and the instrumentation scope's name.
const SERVICE_NAME: &str = "auditrelay";

pub struct OtlpSink {
    /// `otlp http_protobuf https://collector:4318/v1/logs` (secret query values redacted), for
    /// messages.
    target: String,
    transport: Transport,
    gzip: bool,
    body: OtlpBody,
    /// `service.*` and `host.name`, the same for every request.
    resource: Resource,
    scope: InstrumentationScope,
    /// Limit on one export: connecting, TLS, sending and reading the answer.
    timeout: Duration,
    /// The export's timer, and the "now" of `Retry-After` dates and of an observed time the
    /// queue did not record: the system's until the worker gives its own (`set_clock`).
    clock: Clock,
}

// By hand: the transports hold the operator's headers, which are secrets.
impl fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink").field("target", &self.target).finish_non_exhaustive()
    }
}

enum Transport {
    Http { client: reqwest::Client, url: url::Url, json: bool },
    Grpc(Box<Grpc>),
}

struct Grpc {
    endpoint: Endpoint,
    /// The operator's headers, sent as metadata on every call.
    metadata: MetadataMap,
    /// Made on the first export (a channel needs the runtime); it reconnects by itself.
    client: Option<LogsServiceClient<Channel>>,
}

/// The receiver's answer to one export, before [`verdict`] says what it means.
enum Answer {
    /// Taken (HTTP 2xx, gRPC OK), with what `partial_success` reported.
    Accepted { rejected: i64, message: String },
    /// Not taken: what decides the verdict, the details for the operator, and the pause the
    /// receiver asked for.
    Refused { refusal: Refusal, detail: String, retry_after: Option<Duration> },
}

/// What a failed export ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// An HTTP status other than 2xx.
    Http(u16),
    /// An HTTP answer that is not OTLP's: a 2xx or a 400/422 whose `Content-Type` is neither
    /// of OTLP's encodings (a proxy's or SSO gateway's HTML page). Neither acceptance nor a
    /// refusal of the data: an operator must look at what stands in front of the receiver.
    NotOtlp(u16),
    /// A gRPC status the receiver (or a proxy in front of it) sent; `retry_info`: the status
    /// details carry a `google.rpc.RetryInfo`.
    Grpc { code: tonic::Code, retry_info: bool },
    /// No answer: cannot connect, connection lost, timeout.
    NoAnswer,
    /// The TLS handshake failed on a certificate or an alert: the receiver is not who the
    /// configuration trusts, or refuses us.
    Untrusted,
}

/// What the loop must do with a batch that was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Back off (or wait what the receiver asked) and send it again.
    Resend,
    /// Only an operator can fix it (credentials, certificate, endpoint moved): keep the data,
    /// report an error, retry at the longest back-off.
    Pause,
    /// Too large for the receiver: the loop sends it again in halves (`Failure::TooLarge`); an
    /// event too large alone is dead-lettered.
    Split,
    /// The receiver refuses what the request holds: the loop bisects it (`Failure::Refused`).
    Refused,
    /// The receiver failed without blaming the request, as a crashing or restarting collector
    /// or a proxy in front of it does: back off and bisect; dead-letter an event only on proof
    /// that the receiver takes the others (`Failure::ServerError`).
    ServerError,
}

/// The retry policy, from the OTLP specification ("Failures", "Throttling"), in one place.
///
/// - HTTP 429, 502, 503, 504 and gRPC `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
///   `OUT_OF_RANGE`, `UNAVAILABLE`, `DATA_LOSS` are retryable; `RESOURCE_EXHAUSTED` only with
///   `RetryInfo` (without it the request is too large and will never fit).
/// - Authentication refusals (HTTP 401, 403, gRPC `UNAUTHENTICATED`, `PERMISSION_DENIED`) are not
///   retryable by the specification, but they say nothing about the data: the sink pauses and
///   keeps it until an operator fixes the credentials.
/// - A redirect is not followed (our headers carry API keys, which must not travel to another
///   host); it means the endpoint moved, an operator's job too. So do 404, 405, 415 and gRPC
///   `UNIMPLEMENTED`: the endpoint, path or protocol is wrong, not the data.
/// - HTTP 413 and `RESOURCE_EXHAUSTED` without `RetryInfo` say the request is too large: the
///   loop sends it again in halves (the specification only says not to resend it unchanged).
/// - Everything else "MUST NOT be retried", and the specification drops the data. We do not
///   (PROTOCOLS §1c, "our policy is stricter"): a refusal of the request's content (HTTP 400,
///   422, gRPC `INVALID_ARGUMENT`) is bisected down to the events at fault; any other failure
///   (500, 408, `UNKNOWN`, `INTERNAL`, …), which a collector that is down or restarting, or a
///   proxy in front of it, answers just as well, is a server error: resent with back-off, and
///   an event is dead-lettered only once the receiver has proven it takes the others.
fn verdict(refusal: Refusal) -> Verdict {
    use tonic::Code as C;
    match refusal {
        Refusal::NoAnswer => Verdict::Resend,
        Refusal::Untrusted | Refusal::NotOtlp(_) => Verdict::Pause,
        Refusal::Http(429 | 502 | 503 | 504) => Verdict::Resend,
        // 407: a proxy in the way wants credentials; only an operator can give them.
        Refusal::Http(401 | 403 | 404 | 405 | 407 | 415 | 300..=399) => Verdict::Pause,
        Refusal::Http(413) => Verdict::Split,
        Refusal::Http(400 | 422) => Verdict::Refused,
        Refusal::Http(_) => Verdict::ServerError,
        Refusal::Grpc {
            code: C::Cancelled | C::DeadlineExceeded | C::Aborted | C::OutOfRange | C::Unavailable | C::DataLoss,
            ..
        } => Verdict::Resend,
        Refusal::Grpc { code: C::ResourceExhausted, retry_info: true } => Verdict::Resend,
        Refusal::Grpc { code: C::ResourceExhausted, retry_info: false } => Verdict::Split,
        Refusal::Grpc { code: C::Unauthenticated | C::PermissionDenied | C::Unimplemented, .. } => Verdict::Pause,
        Refusal::Grpc { code: C::InvalidArgument, .. } => Verdict::Refused,
        Refusal::Grpc { .. } => Verdict::ServerError,
    }
}

impl OtlpSink {
    /// Reads the CA file and checks the headers; connects lazily, on the first export. An error
    /// names the file or header at fault (never a header's value).
    pub fn new(cfg: &OtlpSinkSettings) -> Result<OtlpSink, String> {
        let https = cfg.endpoint.scheme() == "https";
        let verifier = if https { Some(crate::tls::server_verifier(cfg.ca_file.as_deref())?) } else { None };
        let (protocol, transport) = match cfg.protocol {
            OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                let json = cfg.protocol == OtlpProtocol::HttpJson;
                let client = http_client(cfg, verifier)?;
                let name = if json { "http_json" } else { "http_protobuf" };
                (name, Transport::Http { client, url: cfg.endpoint.clone(), json })
            }
            OtlpProtocol::Grpc => {
                // tonic's channel has its own connector, which knows no proxy: say so where an
                // operator looks when the proxy variables would otherwise apply (`check` too).
                if let crate::http::Route::Proxy { proxy, .. } = crate::http::route(&cfg.endpoint) {
                    tracing::warn!(
                        endpoint = %crate::redact::url(&cfg.endpoint),
                        %proxy,
                        "OTLP/gRPC connects directly, not through the proxy the environment names \
                         (HTTPS_PROXY/HTTP_PROXY/ALL_PROXY are used by HTTP connections only); \
                         set protocol = \"http_protobuf\" to go through it"
                    );
                }
                let endpoint = grpc_endpoint(cfg, verifier)?;
                ("grpc", Transport::Grpc(Box::new(Grpc { endpoint, metadata: grpc_metadata(cfg)?, client: None })))
            }
        };
        let host_name = match &cfg.host_name {
            Some(h) => h.clone(),
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let version = env!("CARGO_PKG_VERSION");
        let resource = Resource {
            attributes: vec![
                text_attribute("service.name", SERVICE_NAME),
                text_attribute("service.version", version),
                text_attribute("host.name", &host_name),
            ],
            ..Resource::default()
        };
        let scope =
            InstrumentationScope { name: SERVICE_NAME.to_owned(), version: version.to_owned(), ..Default::default() };
        Ok(OtlpSink {
            target: format!("otlp {protocol} {}", crate::redact::url(&cfg.endpoint)),
            transport,
            gzip: cfg.gzip,
            body: cfg.body,
            resource,
            scope,
            timeout: cfg.timeout,
            clock: Clock::system(),
        })
    }

    /// The agent's clock (see the field).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        let mut delivery = Delivery::default();
        let mut records = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        for event in batch.iter() {
            match stamped_log_record(&event, self.body, &self.clock) {
                Ok(record) => {
                    records.push(record);
                    sent.push(event.event);
                }
                Err(reason) => delivery.refused.push(RefusedEvent { id: event.id(), reason }),
            }
        }
        if sent.is_empty() {
            return Ok(delivery);
        }
        // One export, never split here: a part taken before another failed would be sent again by
        // the loop. Too large goes back to the loop (`Failure::TooLarge`), which halves it.
        let answer = match self.export(self.request(records)).await {
            Ok(answer) => answer,
            Err(unencodable) => {
                delivery.refused.extend(sent.iter().map(|e| RefusedEvent { id: e.id, reason: unencodable.clone() }));
                delivery.refused.sort_by_key(|r| r.id);
                return Ok(delivery);
            }
        };
        match answer {
            Answer::Accepted { rejected, message } => {
                if rejected > 0 {
                    // The specification forbids sending these again: count them and say why.
                    let rejected = u64::try_from(rejected).unwrap_or(0).min(sent.len() as u64);
                    delivery.rejected += rejected;
                    warn!(sink = %self.target, rejected, sent = sent.len(), receiver_message = %message,
                        "the receiver rejected part of the batch (OTLP partial success); it is not sent again");
                } else if !message.is_empty() {
                    warn!(sink = %self.target, receiver_message = %message, "the receiver took the batch with a warning");
                }
            }
            Answer::Refused { refusal, detail, retry_after } => match verdict(refusal) {
                Verdict::Resend => {
                    let mut e = SendError::transient(format!("{}: {detail}", self.target));
                    e.retry_after = retry_after;
                    return Err(e);
                }
                Verdict::Pause => return Err(SendError::config(format!("{}: {detail}", self.target))),
                Verdict::Split => {
                    // Also the dead-letter reason of an event too large alone.
                    let what = match sent.len() {
                        1 => String::from("the event"),
                        n => format!("a request of {n} events"),
                    };
                    return Err(SendError::too_large(format!(
                        "{}: {what} is too large for the receiver: {detail}",
                        self.target
                    )));
                }
                Verdict::Refused => {
                    return Err(SendError::refused(format!("{}: refused the request: {detail}", self.target)));
                }
                Verdict::ServerError => {
                    let mut e = SendError::server_error(format!("{}: {detail}", self.target));
                    e.retry_after = retry_after;
                    return Err(e);
                }
            },
        }
        delivery.refused.sort_by_key(|r| r.id);
        Ok(delivery)
    }

    /// Sends an empty export request: proves the receiver is reachable, its certificate
    /// trusted, our headers accepted and the endpoint an OTLP logs endpoint, without sending an
    /// event (the specification has servers answer an empty request with success).
    pub async fn probe(&mut self) -> Result<String, SendError> {
        let answer = match self.export(ExportLogsServiceRequest::default()).await {
            Ok(answer) => answer,
            Err(e) => return Err(SendError::config(format!("{}: {e}", self.target))),
        };
        match answer {
            Answer::Accepted { .. } => {
                let tls = match &self.transport {
                    Transport::Http { url, .. } if url.scheme() == "https" => "; TLS certificate verified",
                    Transport::Grpc(grpc) if grpc.endpoint.uri().scheme_str() == Some("https") => {
                        "; TLS certificate verified"
                    }
                    _ => "",
                };
                Ok(format!("{}: an empty export was accepted{tls}", self.target))
            }
            Answer::Refused { refusal, detail, retry_after } => {
                let message = format!("{}: {detail}", self.target);
                match verdict(refusal) {
                    Verdict::Resend | Verdict::ServerError => {
                        let mut e = SendError::transient(message);
                        e.retry_after = retry_after;
                        Err(e)
                    }
                    Verdict::Pause | Verdict::Split | Verdict::Refused => Err(SendError::config(message)),
                }
            }
        }
    }

    /// Drops the gRPC channel (HTTP connections close with the client's pool).
    pub async fn close(&mut self) {
        if let Transport::Grpc(grpc) = &mut self.transport {
            grpc.client = None;
        }
    }

    /// One resource, one scope, the batch's records.
    fn request(&self, log_records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs { scope: Some(self.scope.clone()), log_records, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        }
    }

    /// Sends one export request within `timeout`. `Err` only if the request cannot be encoded.
    async fn export(&mut self, request: ExportLogsServiceRequest) -> Result<Answer, String> {
        let timeout = self.timeout;
        let gzip = self.gzip;
        let clock = &self.clock;
        let exported = match &mut self.transport {
            Transport::Http { client, url, json } => {
                let body = encode_http(&request, *json, gzip)?;
                clock.timeout(timeout, post(client, url, *json, gzip, body, clock)).await
            }
            Transport::Grpc(grpc) => {
                let Grpc { endpoint, metadata, client } = grpc.as_mut();
                let client = client.get_or_insert_with(|| grpc_client(endpoint, gzip));
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = metadata.clone();
                // Tells the receiver our deadline (`grpc-timeout`).
                call.set_timeout(timeout);
                clock.timeout(timeout, grpc_export(client, call)).await
            }
        };
        Ok(exported.unwrap_or_else(|_| Answer::Refused {
            refusal: Refusal::NoAnswer,
            detail: format!("no answer within timeout {}", humantime::format_duration(timeout)),
            retry_after: None,
        }))
    }
}

// ---------------------------------------------------------------------------------------------
// Events to LogRecords

/// The event as sent (stamped with its send time, [`Stamped`]) as a `LogRecord`; `Err`: the
/// reason it can never be sent (it is not an event). The same record as [`log_record`] of a
/// stamped copy, made without that copy: the attributes are read from the stored event (the
/// stamp changes none of them), the JSON text is stamped straight into the body's `String`,
/// and the structured body is the stored event's with the stamp's two `transmit_time` entries
/// added where its JSON puts them (the last key of the last logger and of `metadata`). Anything
/// else (not an event) is made from a stamped copy, as it always was.
fn stamped_log_record(event: &StampedEvent<'_>, mode: OtlpBody, clock: &Clock) -> Result<LogRecord, String> {
    if let Some(record) = stamped_record(event, mode, clock) {
        return Ok(record);
    }
    let sent = QueuedEvent { id: event.id(), body: event.to_vec(), collected_ms: event.event.collected_ms };
    log_record(&sent, mode, clock)
}

/// [`stamped_log_record`] of an event; `None` if it is not one.
fn stamped_record(event: &StampedEvent<'_>, mode: OtlpBody, clock: &Clock) -> Option<LogRecord> {
    let summary = summarize(event.stored()).ok()?;
    let json_string = || {
        let mut text = String::new();
        event.push_to(&mut text).ok()?;
        Some(AnyValue { value: Some(any_value::Value::StringValue(text)) })
    };
    let body = match mode {
        // The stored event and the stamped one are the same JSON but for the stamp's entries:
        // both parse, or neither does (too deep), and the stamp ends the event as its own
        // closing brackets did (`ocsf::stampable`), so its entries' places are known.
        OtlpBody::Structured => match serde_json::from_slice::<JsonAnyValue>(event.stored()) {
            Ok(JsonAnyValue(mut value)) => {
                if let (_, Some(stamp)) = event.parts() {
                    add_stamp(&mut value, stamp.0)?;
                }
                value
            }
            Err(_) => json_string()?,
        },
        OtlpBody::JsonString => json_string()?,
    };
    Some(record(&summary, body, event.event.collected_ms, clock))
}

/// Adds what [`crate::ocsf::stamp_transmit_time`] writes into an event's JSON to its kvlist:
/// `transmit_time` as the last entry of the last element of the array that is the last entry of
/// the object that is the event's last entry (`metadata.loggers[-1]`), then of that object
/// (`metadata`). `None`, nothing changed, if the value is not of that shape.
fn add_stamp(event: &mut AnyValue, transmit_ms: i64) -> Option<()> {
    fn kvlist(value: Option<&mut AnyValue>) -> Option<&mut Vec<KeyValue>> {
        match &mut value?.value {
            Some(any_value::Value::KvlistValue(list)) => Some(&mut list.values),
            _ => None,
        }
    }
    let stamp = || KeyValue {
        key: "transmit_time".to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(transmit_ms)) }),
        ..KeyValue::default()
    };
    let metadata = kvlist(kvlist(Some(event))?.last_mut()?.value.as_mut())?;
    let loggers = match &mut metadata.last_mut()?.value.as_mut()?.value {
        Some(any_value::Value::ArrayValue(array)) => &mut array.values,
        _ => return None,
    };
    kvlist(loggers.last_mut())?.push(stamp());
    metadata.push(stamp());
    Some(())
}

/// The event as a `LogRecord`, its body as sent; `Err`: the reason it can never be sent (it is
/// not an event).
fn log_record(event: &QueuedEvent, mode: OtlpBody, clock: &Clock) -> Result<LogRecord, String> {
    let not_an_event = |e: String| format!("not an OCSF event: {e}");
    let summary = summarize(&event.body).map_err(not_an_event)?;
    let json_string = || {
        let text = std::str::from_utf8(&event.body).map_err(|e| not_an_event(e.to_string()))?;
        Ok::<_, String>(AnyValue { value: Some(any_value::Value::StringValue(text.to_owned())) })
    };
    let body = match mode {
        // An event that does not parse here (one nested deeper than serde_json's recursion
        // limit, a vendor record nested ~127 levels; or damaged between the head and `metadata`
        // that `summarize` read) still goes out, as its text.
        OtlpBody::Structured => match serde_json::from_slice::<JsonAnyValue>(&event.body) {
            Ok(value) => value.0,
            Err(_) => json_string()?,
        },
        OtlpBody::JsonString => json_string()?,
    };
    Ok(record(&summary, body, event.collected_ms, clock))
}

/// A `LogRecord` of an event's summary and body.
fn record(summary: &Summary<'_>, body: AnyValue, collected_ms: i64, clock: &Clock) -> LogRecord {
    let (severity_number, severity_text) = severity(summary.severity_id);
    // Queued before the queue recorded it (version < 4): our send time is when OpenTelemetry
    // "observed" it, and the field must be set.
    let observed_ms = if collected_ms > 0 { collected_ms } else { clock.now_utc().timestamp_millis() };
    LogRecord {
        time_unix_nano: unix_nanos(summary.time),
        observed_time_unix_nano: unix_nanos(Some(observed_ms)),
        severity_number: severity_number as i32,
        severity_text: severity_text.to_owned(),
        body: Some(body),
        attributes: attributes(summary),
        event_name: event_name(summary),
        ..LogRecord::default()
    }
}

/// OCSF `severity_id` as an OTLP severity number, and the OCSF caption as the severity text.
///
/// | OCSF | caption       | OTLP                |
/// |------|---------------|---------------------|
/// | 1    | Informational | 9 INFO              |
/// | 2    | Low           | 10 INFO2            |
/// | 3    | Medium        | 13 WARN             |
/// | 4    | High          | 17 ERROR            |
/// | 5    | Critical      | 21 FATAL            |
/// | 6    | Fatal         | 23 FATAL3           |
/// | 0    | Unknown       | 0 UNSPECIFIED       |
/// | 99   | Other         | 0 UNSPECIFIED       |
/// | none or another id | "" | 0 UNSPECIFIED   |
///
/// "Low" stays in the INFO range (a notice, not a warning); "Fatal" sits above "Critical"
/// within FATAL. Unknown and Other have no level, so they are UNSPECIFIED, as OTLP intends for
/// "not known" (the text still says which).
fn severity(severity_id: Option<u64>) -> (SeverityNumber, &'static str) {
    match severity_id {
        Some(1) => (SeverityNumber::Info, "Informational"),
        Some(2) => (SeverityNumber::Info2, "Low"),
        Some(3) => (SeverityNumber::Warn, "Medium"),
        Some(4) => (SeverityNumber::Error, "High"),
        Some(5) => (SeverityNumber::Fatal, "Critical"),
        Some(6) => (SeverityNumber::Fatal3, "Fatal"),
        Some(0) => (SeverityNumber::Unspecified, "Unknown"),
        Some(99) => (SeverityNumber::Unspecified, "Other"),
        _ => (SeverityNumber::Unspecified, ""),
    }
}

/// `ocsf.<class name, lower case, spaces as underscores>` (`ocsf.api_activity`); without a
/// class name, `ocsf.<class_uid>`; without either, none.
fn event_name(s: &Summary<'_>) -> String {
    match (&s.class_name, s.class_uid) {
        (Some(name), _) => format!("ocsf.{}", name.trim().to_lowercase().replace(' ', "_")),
        (None, Some(uid)) => format!("ocsf.{uid}"),
        (None, None) => String::new(),
    }
}

/// The attributes a backend indexes or filters on; an attribute the event lacks is left out.
/// `ocsf.uid` (`metadata.uid`) identifies the event, for de-duplicating resent batches.
fn attributes(s: &Summary<'_>) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(7);
    let mut int = |key: &str, v: Option<u64>| {
        if let Some(v) = v.and_then(|v| i64::try_from(v).ok()) {
            out.push(KeyValue {
                key: key.to_owned(),
                value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
                ..KeyValue::default()
            });
        }
    };
    int("ocsf.class_uid", s.class_uid);
    int("ocsf.activity_id", s.activity_id);
    int("ocsf.severity_id", s.severity_id);
    let texts = [
        ("ocsf.class_name", s.class_name.as_deref()),
        ("ocsf.uid", s.uid()),
        ("vendor", s.vendor()),
        ("tenant", s.tenant()),
    ];
    out.extend(texts.into_iter().filter_map(|(key, v)| v.map(|v| text_attribute(key, v))));
    out
}

fn text_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.to_owned())) }),
        ..KeyValue::default()
    }
}

/// Milliseconds since the epoch as nanoseconds; absent or negative is 0, "unknown" in OTLP.
fn unix_nanos(ms: Option<i64>) -> u64 {
    ms.and_then(|ms| u64::try_from(ms).ok()).and_then(|ms| ms.checked_mul(1_000_000)).unwrap_or(0)
}

/// A JSON value read straight into an OTLP `AnyValue`, keeping the object's key order:
/// object → kvlist, array → array, string → string, true/false → bool, integer → int (an
/// unsigned one above `i64::MAX` → its decimal string, to stay exact), other number → double,
/// null → the empty `AnyValue` (OTLP's "no value"; the key is kept, and array positions too).
struct JsonAnyValue(AnyValue);

impl<'de> Deserialize<'de> for JsonAnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonAnyValueVisitor)
    }
}

struct JsonAnyValueVisitor;

fn any(value: any_value::Value) -> JsonAnyValue {
    JsonAnyValue(AnyValue { value: Some(value) })
}

impl<'de> Visitor<'de> for JsonAnyValueVisitor {
    type Value = JsonAnyValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonAnyValue, E> {
        Ok(any(any_value::Value::BoolValue(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonAnyValue, E> {
        Ok(any(any_value::Value::IntValue(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonAnyValue, E> {
        Ok(any(match i64::try_from(v) {
            Ok(i) => any_value::Value::IntValue(i),
            Err(_) => any_value::Value::StringValue(v.to_string()),
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<JsonAnyValue, E> {
        Ok(any(any_value::Value::DoubleValue(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonAnyValue, E> {
        Ok(any(any_value::Value::StringValue(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonAnyValue, E> {
        Ok(any(any_value::Value::StringValue(v)))
    }

    fn visit_unit<E>(self) -> Result<JsonAnyValue, E> {
        Ok(JsonAnyValue(AnyValue { value: None }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonAnyValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(JsonAnyValue(v)) = seq.next_element()? {
            values.push(v);
        }
        Ok(any(any_value::Value::ArrayValue(ArrayValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonAnyValue, A::Error> {
        let mut values = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((key, JsonAnyValue(v))) = map.next_entry::<String, JsonAnyValue>()? {
            values.push(KeyValue { key, value: Some(v), ..KeyValue::default() });
        }
        Ok(any(any_value::Value::KvlistValue(KeyValueList { values })))
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

/// The OTLP/HTTP client ([`crate::http::client`]): the operator's headers on every request
/// (marked sensitive: never logged), HTTP/2 offered by ALPN, no redirect followed (our headers
/// must not travel to another host), the whole export bounded by the sink's own timer.
fn http_client(
    cfg: &OtlpSinkSettings,
    verifier: Option<Arc<dyn ServerCertVerifier>>,
) -> Result<reqwest::Client, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in &cfg.headers {
        let key = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers.{name}: not a valid HTTP header name"))?;
        let mut value = HeaderValue::from_str(value.expose_secret())
            .map_err(|_| format!("headers.{name}: the value is not a valid HTTP header value (visible ASCII only)"))?;
        value.set_sensitive(true);
        headers.insert(key, value);
    }
    let opts = ClientOptions {
        redirects: Redirects::Never,
        verifier,
        offer_h2: true,
        connect_timeout: cfg.timeout,
        timeout: None,
        headers,
        max_idle_per_host: None,
    };
    crate::http::client(opts).map_err(|e| match e {
        ClientError::Tls(e) => e,
        ClientError::Build(e) => format!("HTTP client set-up: {e}"),
    })
}

/// The request body: binary protobuf or OTLP/JSON, gzipped if configured.
fn encode_http(request: &ExportLogsServiceRequest, json: bool, gzip: bool) -> Result<Vec<u8>, String> {
    // opentelemetry-proto's serde follows the OTLP/JSON rules for requests: lowerCamelCase
    // keys, 64-bit integers as strings, enums as integers, ids as hex (a unit test pins it).
    let body = match json {
        true => serde_json::to_vec(request).map_err(|e| format!("cannot encode the batch as OTLP/JSON: {e}"))?,
        false => request.encode_to_vec(),
    };
    if !gzip {
        return Ok(body);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::default());
    encoder.write_all(&body).and_then(|()| encoder.finish()).map_err(|e| format!("cannot gzip the batch: {e}"))
}

async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    json: bool,
    gzip: bool,
    body: Vec<u8>,
    clock: &Clock,
) -> Answer {
    let content_type = if json { "application/json" } else { "application/x-protobuf" };
    let mut request = client.post(url.clone()).header(CONTENT_TYPE, content_type).body(body);
    if gzip {
        request = request.header(CONTENT_ENCODING, "gzip");
    }
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut answer = unanswered(&e.without_url());
            // A connection through a proxy that failed is the proxy's to explain first.
            if let (Answer::Refused { detail, .. }, Some(proxy)) = (&mut answer, crate::http::proxy_for(url)) {
                match detail.contains("proxy authorization required") {
                    true => detail.push_str(&format!(" ({})", crate::http::proxy_refused(url))),
                    false => detail.push_str(&format!(" (through proxy {proxy})")),
                }
            }
            return answer;
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let body = crate::http::read_capped(response, MAX_RESPONSE_BYTES, Overflow::Truncate).await;
    // The answer is in the encoding it says it is in (the specification has it match ours).
    let declared = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let answer_type = declared.unwrap_or(content_type);
    let answer_json = answer_type.starts_with("application/json");
    let answer_protobuf = answer_type.starts_with("application/x-protobuf");
    // Only the receiver's own answer counts (invariant 3): a success comes in one of OTLP's
    // encodings (the specification has the server set `Content-Type`), or as an empty body
    // without a type; a proxy's or login page's 200 is no acceptance. A refusal of the data as
    // an HTML page is a proxy's too (nginx's "plain HTTP request sent to HTTPS port"): bisecting
    // it would dead-letter the whole backlog, event by event.
    let empty_untyped = declared.is_none() && body.as_ref().is_ok_and(Vec::is_empty);
    let otlp_shaped = answer_json || answer_protobuf || empty_untyped;
    let html = answer_type.starts_with("text/html");
    if (status.is_success() && !otlp_shaped) || (matches!(status.as_u16(), 400 | 422) && html) {
        let shown_type = declared.unwrap_or("none");
        let detail = format!(
            "HTTP {status} with Content-Type {shown_type}: not an OTLP answer (a proxy or login page in front of the \
             receiver?); the events are kept until it answers as OTLP"
        );
        return Answer::Refused { refusal: Refusal::NotOtlp(status.as_u16()), detail, retry_after: None };
    }
    if status.is_success() {
        // The status is the answer: a body cut short or unreadable does not undo it.
        let body = body.unwrap_or_else(|e| {
            debug!(error = %e, "cannot read the body of a success answer");
            Vec::new()
        });
        let (rejected, message) = match (answer_json, answer_protobuf) {
            (true, _) => json_partial_success(&body),
            (false, true) => protobuf_partial_success(&body),
            (false, false) => (0, String::new()),
        };
        return Answer::Accepted { rejected, message };
    }
    let body = body.unwrap_or_default();
    let message = receiver_message(&body, answer_json, answer_protobuf);
    let code = status.as_u16();
    let mut detail = format!("HTTP {status}");
    if !message.is_empty() {
        detail = format!("{detail}: {message}");
    }
    // Measured from our clock, not the answer's `Date`, as this sink always has.
    let retry_after = crate::backoff::receiver_retry_after(&headers, clock.now_utc(), MeasureFrom::Now);
    match code {
        401 | 403 => detail.push_str("; check the headers (API key, token) this receiver requires"),
        407 => detail.push_str(&format!("; {}", crate::http::proxy_refused(url))),
        300..=399 => {
            let to = headers.get(LOCATION).and_then(|v| v.to_str().ok()).and_then(|v| url::Url::parse(v).ok());
            match to {
                Some(to) => detail.push_str(&format!(" to {}; set endpoint to it", crate::redact::url(&to))),
                None => detail.push_str("; check endpoint"),
            }
        }
        _ => {}
    }
    Answer::Refused { refusal: Refusal::Http(code), detail, retry_after }
}

fn protobuf_partial_success(body: &[u8]) -> (i64, String) {
    match ExportLogsServiceResponse::decode(body) {
        Ok(r) => r.partial_success.map_or((0, String::new()), |p| (p.rejected_log_records, shown(&p.error_message))),
        Err(e) => {
            debug!(error = %e, "the success answer is not an ExportLogsServiceResponse; taken as full success");
            (0, String::new())
        }
    }
}

/// Read by hand, not with opentelemetry-proto's serde: that one wants `rejectedLogRecords` as a
/// JSON number, but OTLP/JSON (proto3 JSON) encodes int64 as a string, as collectors send it.
fn json_partial_success(body: &[u8]) -> (i64, String) {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Response {
        partial_success: Option<Partial>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase", default)]
    struct Partial {
        rejected_log_records: Option<Int64>,
        error_message: Option<String>,
    }
    /// proto3 JSON accepts both.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return (0, String::new());
    }
    match serde_json::from_slice::<Response>(body) {
        Ok(Response { partial_success: Some(p) }) => {
            let rejected = match p.rejected_log_records {
                Some(Int64::Number(n)) => n,
                Some(Int64::Text(t)) => t.trim().parse().unwrap_or(0),
                None => 0,
            };
            (rejected, shown(p.error_message.as_deref().unwrap_or("")))
        }
        Ok(Response { partial_success: None }) => (0, String::new()),
        Err(e) => {
            debug!(error = %e, "the success answer is not an ExportLogsServiceResponse; taken as full success");
            (0, String::new())
        }
    }
}

/// The receiver's explanation of a refusal: the `message` of the `google.rpc.Status` the
/// specification has as the body of 4xx/5xx answers, else the body's text (a proxy's page).
fn receiver_message(body: &[u8], json: bool, protobuf: bool) -> String {
    #[derive(Deserialize)]
    struct JsonStatus {
        #[serde(default)]
        message: String,
    }
    let message = if json {
        serde_json::from_slice::<JsonStatus>(body).ok().map(|s| s.message)
    } else if protobuf {
        tonic_types::Status::decode(body).ok().map(|s| s.message)
    } else {
        None
    };
    match message {
        Some(m) => shown(&m),
        None => shown(&String::from_utf8_lossy(body)),
    }
}

/// Text from the receiver, made safe to quote: one line, at most [`MAX_MESSAGE_CHARS`].
fn shown(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text.chars().take(MAX_MESSAGE_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().nth(MAX_MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

// ---------------------------------------------------------------------------------------------
// OTLP/gRPC

/// The OTLP/gRPC endpoint. Not [`crate::http::client`]: tonic's channel has its own connector
/// (HTTP/2 only, its own TLS set-up), so it shares what can be shared: the rustls verifier
/// (`tls::server_verifier`, the same one the HTTP transport would use) and [`USER_AGENT`].
fn grpc_endpoint(cfg: &OtlpSinkSettings, verifier: Option<Arc<dyn ServerCertVerifier>>) -> Result<Endpoint, String> {
    let url = &cfg.endpoint;
    let host = url.host_str().ok_or_else(|| "endpoint: has no host".to_owned())?;
    let port = url.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
    let endpoint = Endpoint::from_shared(format!("{}://{host}{port}", url.scheme()))
        .map_err(|e| format!("endpoint: not usable for gRPC: {e}"))?
        .connect_timeout(cfg.timeout)
        .user_agent(USER_AGENT)
        .map_err(|e| format!("gRPC set-up: {e}"))?;
    match verifier {
        None => Ok(endpoint),
        Some(verifier) => {
            // `host_str` keeps an IPv6 address's brackets; the certificate names it without.
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let tls = ClientTlsConfig::new().domain_name(name).timeout(cfg.timeout);
            endpoint.tls_config_with_verifier(tls, verifier).map_err(|e| format!("gRPC TLS set-up: {e}"))
        }
    }
}

fn grpc_metadata(cfg: &OtlpSinkSettings) -> Result<MetadataMap, String> {
    let mut metadata = MetadataMap::new();
    for (name, value) in &cfg.headers {
        let key = MetadataKey::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers.{name}: not a valid gRPC metadata name"))?;
        let mut value = MetadataValue::try_from(value.expose_secret())
            .map_err(|_| format!("headers.{name}: the value is not valid gRPC metadata (visible ASCII only)"))?;
        value.set_sensitive(true);
        metadata.insert(key, value);
    }
    Ok(metadata)
}

fn grpc_client(endpoint: &Endpoint, gzip: bool) -> LogsServiceClient<Channel> {
    let client = LogsServiceClient::new(endpoint.connect_lazy())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_RESPONSE_BYTES);
    if gzip { client.send_compressed(CompressionEncoding::Gzip) } else { client }
}

async fn grpc_export(
    client: &mut LogsServiceClient<Channel>,
    call: tonic::Request<ExportLogsServiceRequest>,
) -> Answer {
    let status = match client.export(call).await {
        Ok(response) => {
            let (rejected, message) = response
                .into_inner()
                .partial_success
                .map_or((0, String::new()), |p| (p.rejected_log_records, shown(&p.error_message)));
            return Answer::Accepted { rejected, message };
        }
        Err(status) => status,
    };
    // tonic keeps the error it made a status from (connect, TLS, reset, …) as the source; a
    // status the receiver sent has none.
    if let Some(cause) = status.source() {
        return unanswered(cause);
    }
    let code = status.code();
    let retry_info = status.get_details_retry_info();
    let retry_after = retry_info.as_ref().and_then(|r| r.retry_delay).map(|d| d.min(MAX_RETRY_AFTER));
    let mut detail = format!("gRPC status {code:?}");
    let message = shown(status.message());
    if !message.is_empty() {
        detail = format!("{detail}: {message}");
    }
    if matches!(code, tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) {
        detail.push_str("; check the headers (API key, token) this receiver requires");
    }
    Answer::Refused { refusal: Refusal::Grpc { code, retry_info: retry_info.is_some() }, detail, retry_after }
}

// ---------------------------------------------------------------------------------------------
// TLS and transport failures

/// An export that got no answer: a TLS refusal (certificate, alert) needs an operator, anything
/// else is the network.
fn unanswered(error: &(dyn StdError + 'static)) -> Answer {
    let chain = error_chain(error);
    let (refusal, detail) = match find_tls_error(error) {
        Some(tls) => {
            let hint = crate::tls::handshake_hint(tls);
            (Refusal::Untrusted, format!("TLS handshake failed: {chain}{hint}"))
        }
        None => (Refusal::NoAnswer, format!("no answer: {chain}")),
    };
    Answer::Refused { refusal, detail, retry_after: None }
}

/// The rustls error somewhere in `error`'s chain. `io::Error::source` skips the error it wraps,
/// so each `io::Error` is opened by hand.
fn find_tls_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// `error: its cause: its cause`, each text once.
fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::OtlpBody;
    use super::*;
    use reqwest::header::RETRY_AFTER;
    use serde_json::{Value, json};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// An event's `LogRecord` as `send` makes it, on the system clock.
    fn log_record(event: &QueuedEvent, mode: OtlpBody) -> Result<LogRecord, String> {
        super::log_record(event, mode, &Clock::system())
    }

    /// A receiver's `Retry-After` value as `post` reads it, measured from `now`.
    fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().ok()?);
        crate::backoff::receiver_retry_after(&headers, now.into(), MeasureFrom::Now)
    }

    /// The OCSF JSON back from an `AnyValue`, to compare with the event.
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
            Some(other) => panic!("unexpected {other:?}"),
        }
    }

    const EVENT: &str = r#"{"time":1795292810597,"class_uid":6003,"class_name":"API Activity","activity_id":2,
        "severity_id":3,"category_uid":6,"message":"a \"quoted\" line\n","count":-4,"ratio":0.25,"big":18446744073709551615,
        "ok":true,"missing":null,"list":[1,"two",null,{"x":[]}],
        "metadata":{"uid":"u-1","tenant_uid":"org-1","product":{"name":"Astro","vendor_name":"Astronomer"}}}"#;

    fn event(body: &str) -> QueuedEvent {
        QueuedEvent { id: 7, body: body.as_bytes().to_vec(), collected_ms: 1_795_292_811_000 }
    }

    fn attribute<'a>(r: &'a LogRecord, key: &str) -> Option<&'a any_value::Value> {
        r.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn an_event_becomes_a_log_record_with_its_times_severity_attributes_and_name() {
        let r = log_record(&event(EVENT), OtlpBody::Structured).unwrap();
        assert_eq!(r.time_unix_nano, 1_795_292_810_597_000_000);
        assert_eq!(r.observed_time_unix_nano, 1_795_292_811_000_000_000);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (SeverityNumber::Warn as i32, "Medium"));
        assert_eq!(r.event_name, "ocsf.api_activity");
        use any_value::Value::{IntValue, StringValue};
        assert_eq!(attribute(&r, "ocsf.class_uid"), Some(&IntValue(6003)));
        assert_eq!(attribute(&r, "ocsf.activity_id"), Some(&IntValue(2)));
        assert_eq!(attribute(&r, "ocsf.severity_id"), Some(&IntValue(3)));
        assert_eq!(attribute(&r, "ocsf.class_name"), Some(&StringValue("API Activity".into())));
        assert_eq!(attribute(&r, "ocsf.uid"), Some(&StringValue("u-1".into())));
        assert_eq!(attribute(&r, "vendor"), Some(&StringValue("Astronomer".into())));
        assert_eq!(attribute(&r, "tenant"), Some(&StringValue("org-1".into())));
        assert_eq!(r.attributes.len(), 7);
    }

    #[test]
    fn the_structured_body_mirrors_the_json_in_order_with_nulls_kept() {
        let r = log_record(&event(EVENT), OtlpBody::Structured).unwrap();
        let body = r.body.unwrap();
        let mut expected: Value = serde_json::from_str(EVENT).unwrap();
        // u64 above i64::MAX travels as its decimal string, exactly.
        expected["big"] = json!("18446744073709551615");
        assert_eq!(to_json(&body), expected);
        let Some(any_value::Value::KvlistValue(kv)) = &body.value else { panic!("{body:?}") };
        let keys: Vec<&str> = kv.values.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(&keys[..4], ["time", "class_uid", "class_name", "activity_id"], "the event's key order");
        let missing = kv.values.iter().find(|kv| kv.key == "missing").unwrap();
        assert_eq!(missing.value, Some(AnyValue { value: None }), "null is the empty AnyValue");
        assert!(matches!(kv.values.iter().find(|kv| kv.key == "ratio").unwrap().value.as_ref().unwrap().value,
            Some(any_value::Value::DoubleValue(d)) if d == 0.25));
    }

    #[test]
    fn the_json_string_body_is_the_event_text_unchanged() {
        let r = log_record(&event(EVENT), OtlpBody::JsonString).unwrap();
        assert_eq!(r.body.unwrap().value, Some(any_value::Value::StringValue(EVENT.to_owned())));
    }

    #[test]
    fn missing_attributes_are_left_out_and_non_events_refused() {
        let r =
            log_record(&QueuedEvent { id: 1, body: b"{}".to_vec(), collected_ms: 5 }, OtlpBody::Structured).unwrap();
        assert!(r.attributes.is_empty());
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (0, 5_000_000));
        assert_eq!((r.severity_number, r.severity_text.as_str(), r.event_name.as_str()), (0, "", ""));
        let r = log_record(&event(r#"{"class_uid":3002}"#), OtlpBody::Structured).unwrap();
        assert_eq!(r.event_name, "ocsf.3002");
        for body in ["not json", "[1,2]", r#"{"time":"yesterday"}"#, r#"{"class_uid":1} trailing"#] {
            let err = log_record(&event(body), OtlpBody::Structured).unwrap_err();
            assert!(err.starts_with("not an OCSF event: "), "{body}: {err}");
        }
    }

    /// An event nested deeper than serde_json's recursion limit (a vendor record ~127 levels
    /// deep) is still sent, as its JSON text, rather than refused (found by `cargo fuzz`).
    #[test]
    fn an_event_too_deep_for_a_kvlist_goes_as_its_json_text() {
        let deep = format!(r#"{{"class_uid":3002,"unmapped":{{"x":{}1{}}}}}"#, "[".repeat(130), "]".repeat(130));
        let r = log_record(&event(&deep), OtlpBody::Structured).unwrap();
        assert_eq!(r.body.unwrap().value, Some(any_value::Value::StringValue(deep.clone())));
        assert_eq!(r.event_name, "ocsf.3002");
    }

    /// Issue 21: the `LogRecord` made from the stored event with its stamp (the JSON text
    /// stamped into the body's `String`, the stamp's entries added to the structured body) is
    /// the one made of the stamped copy the loop used to hand the sink, field for field and
    /// byte for byte as encoded, or refused with the same reason: every shape of event and
    /// send time, both body modes; and one record as queued before the queue kept its
    /// collection time still gets the clock's.
    #[tokio::test(start_paused = true)]
    async fn a_log_record_is_the_one_made_of_a_stamped_copy() {
        use crate::sinks::tests::{TRANSMIT_TIMES, shaped_events};
        let mut events = shaped_events();
        events[1].collected_ms = 0;
        // Paused: the clock's time (for the record without a collection time) does not move.
        let clock = Clock::starting_at(chrono::DateTime::from_timestamp_millis(1_795_292_812_000).unwrap());
        let mut records = 0;
        for mode in [OtlpBody::Structured, OtlpBody::JsonString] {
            for ms in TRANSMIT_TIMES {
                let stamped = Stamped::new(&events, ms);
                for event in stamped.iter() {
                    let sent =
                        QueuedEvent { id: event.id(), body: event.to_vec(), collected_ms: event.event.collected_ms };
                    let new = stamped_log_record(&event, mode, &clock);
                    let old = super::log_record(&sent, mode, &clock);
                    assert_eq!(new, old, "{mode:?} at {ms}, event {}", event.id());
                    if let (Ok(new), Ok(old)) = (new, old) {
                        assert!(new.encode_to_vec() == old.encode_to_vec(), "{mode:?} at {ms}, event {}", event.id());
                        records += 1;
                    }
                }
            }
        }
        assert!(records >= 2 * 6 * 8, "{records}");
    }

    #[test]
    fn severity_table() {
        use SeverityNumber as S;
        let table = [
            (Some(0), S::Unspecified, "Unknown"),
            (Some(1), S::Info, "Informational"),
            (Some(2), S::Info2, "Low"),
            (Some(3), S::Warn, "Medium"),
            (Some(4), S::Error, "High"),
            (Some(5), S::Fatal, "Critical"),
            (Some(6), S::Fatal3, "Fatal"),
            (Some(99), S::Unspecified, "Other"),
            (Some(7), S::Unspecified, ""),
            (None, S::Unspecified, ""),
        ];
        for (id, number, text) in table {
            assert_eq!(severity(id), (number, text), "severity_id {id:?}");
        }
        assert_eq!(
            (S::Info as i32, S::Info2 as i32, S::Warn as i32, S::Error as i32, S::Fatal as i32, S::Fatal3 as i32),
            (9, 10, 13, 17, 21, 23)
        );
    }

    /// The OTLP retry policy (specification "Failures" and "Throttling"), pinned.
    #[test]
    fn retry_policy() {
        use Verdict::{Pause, Refused, Resend, ServerError, Split};
        use tonic::Code as C;
        let grpc = [
            (C::Cancelled, Resend, Resend),
            (C::Unknown, ServerError, ServerError),
            (C::InvalidArgument, Refused, Refused),
            (C::DeadlineExceeded, Resend, Resend),
            (C::NotFound, ServerError, ServerError),
            (C::AlreadyExists, ServerError, ServerError),
            (C::PermissionDenied, Pause, Pause),
            (C::ResourceExhausted, Split, Resend),
            (C::FailedPrecondition, ServerError, ServerError),
            (C::Aborted, Resend, Resend),
            (C::OutOfRange, Resend, Resend),
            (C::Unimplemented, Pause, Pause),
            (C::Internal, ServerError, ServerError),
            (C::Unavailable, Resend, Resend),
            (C::DataLoss, Resend, Resend),
            (C::Unauthenticated, Pause, Pause),
        ];
        for (code, without, with) in grpc {
            assert_eq!(verdict(Refusal::Grpc { code, retry_info: false }), without, "{code:?}");
            assert_eq!(verdict(Refusal::Grpc { code, retry_info: true }), with, "{code:?} with RetryInfo");
        }
        let http = [
            (301, Pause),
            (307, Pause),
            (308, Pause),
            (400, Refused),
            (401, Pause),
            (403, Pause),
            (404, Pause),
            (405, Pause),
            (408, ServerError),
            (413, Split),
            (415, Pause),
            (429, Resend),
            (422, Refused),
            (500, ServerError),
            (501, ServerError),
            (502, Resend),
            (503, Resend),
            (504, Resend),
            (507, ServerError),
        ];
        for (status, expected) in http {
            assert_eq!(verdict(Refusal::Http(status)), expected, "HTTP {status}");
        }
        assert_eq!(verdict(Refusal::NoAnswer), Resend);
        assert_eq!(verdict(Refusal::Untrusted), Pause);
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_capped() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        let in_30s = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&in_30s, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    /// opentelemetry-proto's serde against the OTLP/JSON rules (PROTOCOLS §1c).
    #[test]
    fn otlp_json_follows_the_specification() {
        let cfg = OtlpSinkSettings {
            endpoint: url::Url::parse("http://127.0.0.1:4318/v1/logs").unwrap(),
            protocol: OtlpProtocol::HttpJson,
            headers: Vec::new(),
            ca_file: None,
            gzip: false,
            body: OtlpBody::Structured,
            host_name: Some("h".into()),
            timeout: Duration::from_secs(5),
        };
        let sink = OtlpSink::new(&cfg).unwrap();
        let request = sink.request(vec![log_record(&event(EVENT), OtlpBody::Structured).unwrap()]);
        let text = String::from_utf8(encode_http(&request, true, false).unwrap()).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let record = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(record["timeUnixNano"], json!("1795292810597000000"), "64-bit integers are strings");
        assert_eq!(record["observedTimeUnixNano"], json!("1795292811000000000"));
        assert_eq!(record["severityNumber"], json!(13), "enums are integers");
        assert_eq!(record["severityText"], json!("Medium"));
        assert_eq!(record["eventName"], json!("ocsf.api_activity"), "lowerCamelCase keys");
        assert_eq!(record["traceId"], json!(""), "ids are hex (empty: none)");
        assert_eq!(record["attributes"][0], json!({"key": "ocsf.class_uid", "value": {"intValue": "6003"}}));
        let body = &record["body"]["kvlistValue"]["values"];
        assert_eq!(body[0], json!({"key": "time", "value": {"intValue": "1795292810597"}}));
        let by_key = |k: &str| body.as_array().unwrap().iter().find(|kv| kv["key"] == k).unwrap()["value"].clone();
        assert_eq!(by_key("missing"), json!({}), "an empty AnyValue is an empty object");
        assert_eq!(by_key("ratio"), json!({"doubleValue": 0.25}));
        assert_eq!(by_key("ok"), json!({"boolValue": true}));
        assert_eq!(by_key("list")["arrayValue"]["values"][2], json!({}));
        assert_eq!(v["resourceLogs"][0]["scopeLogs"][0]["scope"]["name"], json!("auditrelay"));
        for snake in ["time_unix_nano", "severity_number", "event_name", "resource_logs", "kvlist_value"] {
            assert!(!text.contains(snake), "{snake} in {text}");
        }
        // And it reads back as the same request.
        let back: ExportLogsServiceRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn partial_success_answers_are_read_in_both_encodings() {
        let spec = br#"{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"bad\nrecords"}}"#;
        assert_eq!(json_partial_success(spec), (3, "bad records".to_owned()));
        assert_eq!(json_partial_success(br#"{"partialSuccess":{"rejectedLogRecords":2}}"#), (2, String::new()));
        assert_eq!(json_partial_success(br#"{"partialSuccess":{"errorMessage":"w"},"x":1}"#), (0, "w".to_owned()));
        assert_eq!(json_partial_success(b"{}"), (0, String::new()));
        assert_eq!(json_partial_success(b""), (0, String::new()));
        let response = ExportLogsServiceResponse {
            partial_success: Some(opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                rejected_log_records: 4,
                error_message: "too old".into(),
            }),
        };
        assert_eq!(protobuf_partial_success(&response.encode_to_vec()), (4, "too old".to_owned()));
        assert_eq!(protobuf_partial_success(b""), (0, String::new()));
    }

    #[test]
    fn the_receivers_message_is_read_from_a_status_or_the_text() {
        let status = tonic_types::Status { code: 3, message: "field x: bad".into(), details: Vec::new() };
        assert_eq!(receiver_message(&status.encode_to_vec(), false, true), "field x: bad");
        assert_eq!(receiver_message(br#"{"code":3,"message":"bad json"}"#, true, false), "bad json");
        assert_eq!(receiver_message(b"404 page not found\n", false, false), "404 page not found");
        let long = "x".repeat(2 * MAX_MESSAGE_CHARS);
        assert_eq!(receiver_message(long.as_bytes(), false, false).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn bad_headers_and_ca_files_are_named_without_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = OtlpSinkSettings {
            endpoint: url::Url::parse("https://collector.example.test:4318/v1/logs").unwrap(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: vec![("x-api-key".into(), "s3cret\nvalue".into())],
            ca_file: None,
            gzip: true,
            body: OtlpBody::Structured,
            host_name: None,
            timeout: Duration::from_secs(5),
        };
        for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
            cfg.protocol = protocol;
            let err = OtlpSink::new(&cfg).unwrap_err();
            assert!(err.contains("headers.x-api-key") && !err.contains("s3cret"), "{err}");
        }
        cfg.headers = vec![("x-api-key".into(), "s3cret".into())];
        let sink = OtlpSink::new(&cfg).unwrap();
        assert!(!format!("{sink:?}").contains("s3cret"));
        let missing = dir.path().join("missing.pem");
        cfg.ca_file = Some(missing.clone());
        let err = OtlpSink::new(&cfg).unwrap_err();
        assert!(err.contains("ca_file") && err.contains(&missing.display().to_string()), "{err}");
    }

    fn settings(protocol: OtlpProtocol, endpoint: &str, timeout: Duration) -> OtlpSinkSettings {
        OtlpSinkSettings {
            endpoint: url::Url::parse(endpoint).unwrap(),
            protocol,
            headers: Vec::new(),
            ca_file: None,
            gzip: false,
            body: OtlpBody::Structured,
            host_name: None,
            timeout,
        }
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_a_transient_error_naming_it() {
        let port = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        for (protocol, name, path) in
            [(OtlpProtocol::HttpProtobuf, "http_protobuf", "/v1/logs"), (OtlpProtocol::Grpc, "grpc", "/")]
        {
            let endpoint = format!("http://127.0.0.1:{port}{path}");
            let mut sink = OtlpSink::new(&settings(protocol, &endpoint, Duration::from_secs(5))).unwrap();
            let err = sink.send(&Stamped::new(&[event(EVENT)], 0)).await.unwrap_err();
            assert_eq!(err.class, super::super::Failure::Transient, "{err}");
            assert!(err.message.starts_with(&format!("otlp {name} http://127.0.0.1:{port}")), "{err}");
            assert!(err.message.contains("no answer") && err.message.contains("refused"), "{err}");
            let err = sink.probe().await.unwrap_err();
            assert_eq!(err.class, super::super::Failure::Transient, "{err}");
        }
    }

    /// A server on 127.0.0.1 that answers every connection with `response` (raw HTTP/1.1),
    /// or holds it without a word.
    async fn raw_http(response: Option<String>) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let response = response.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1 << 16];
                    let _ = conn.read(&mut buf).await;
                    match response {
                        Some(r) => {
                            let _ = conn.write_all(r.as_bytes()).await;
                            let _ = conn.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        base
    }

    #[tokio::test]
    async fn a_silent_receiver_times_out_as_a_transient_error() {
        let base = raw_http(None).await;
        for (protocol, path) in [(OtlpProtocol::HttpJson, "/v1/logs"), (OtlpProtocol::Grpc, "")] {
            let cfg = settings(protocol, &format!("{base}{path}"), Duration::from_millis(300));
            let started = std::time::Instant::now();
            let err = OtlpSink::new(&cfg).unwrap().send(&Stamped::new(&[event(EVENT)], 0)).await.unwrap_err();
            assert_eq!(err.class, super::super::Failure::Transient, "{err}");
            // Our timer or tonic's own (the same length) ends it, whichever fires first.
            assert!(err.message.contains("no answer"), "{err}");
            assert!(started.elapsed() < Duration::from_secs(3));
        }
    }

    #[tokio::test]
    async fn http_answers_outside_the_otlp_table() {
        let send = |response: String| async move {
            let base = raw_http(Some(response)).await;
            let cfg = settings(OtlpProtocol::HttpProtobuf, &format!("{base}/v1/logs"), Duration::from_secs(5));
            OtlpSink::new(&cfg).unwrap().send(&Stamped::new(&[event(EVENT), event(EVENT)], 0)).await
        };
        // A redirect is not followed (our headers would go along): the operator must move the
        // endpoint; the data stays queued.
        let err = send(
            "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://elsewhere.example.test/v1/logs?token=abc\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
                .into(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class, super::super::Failure::Config, "{err}");
        assert!(
            err.message.contains(
                "HTTP 308 Permanent Redirect to https://elsewhere.example.test/v1/logs?token=REDACTED; set endpoint"
            ),
            "{err}"
        );

        // A plain-text 404 (a web server, not a collector): the endpoint is wrong, not the data.
        let err = send(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\n\
             404 page not found\n"
                .into(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class, super::super::Failure::Config, "{err}");
        assert!(err.message.contains("HTTP 404 Not Found: 404 page not found"), "{err}");

        // A plain-text 422: the request refused with its text; the loop bisects it.
        let err = send(
            "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\n\
             bad record\n"
                .into(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class, super::super::Failure::Refused, "{err}");
        assert!(err.message.contains("refused the request: HTTP 422 Unprocessable Entity: bad record"), "{err}");

        // A plain-text 500 (a collector restarting, a proxy): a server error, never a refusal.
        let err = send("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into())
            .await
            .unwrap_err();
        assert_eq!(err.class, super::super::Failure::ServerError, "{err}");

        // 429 with an HTTP-date: the pause until then.
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let err = send(format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await
        .unwrap_err();
        assert_eq!(err.class, super::super::Failure::Transient, "{err}");
        let wait = err.retry_after.unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");

        // A 200 in neither of OTLP's encodings (a proxy's "ok", a login page) is no acceptance
        // (issue 15 point 3): an operator error, the events kept.
        let err = send(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".into(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.class, super::super::Failure::Config, "{err}");
        assert!(err.message.contains("not an OTLP answer"), "{err}");
        // An empty 200 without a type, and a protobuf body that does not decode, are the
        // receiver's own success.
        let delivery = send("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()).await.unwrap();
        assert_eq!(delivery, Delivery::default());
    }
}

#[cfg(test)]
#[path = "otlp/review21d_tests.rs"]
mod review21d_tests;
