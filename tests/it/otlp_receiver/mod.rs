//! A real OTLP logs receiver for the sink tests, built on the official protobuf definitions
//! (opentelemetry-proto's generated types, the same `.proto` files a Collector is built from):
//! - OTLP/gRPC: tonic's `LogsServiceServer`, gzip accepted;
//! - OTLP/HTTP: axum `POST /v1/logs`, binary protobuf and OTLP/JSON (`Content-Type`), gzip
//!   request bodies (`Content-Encoding`);
//!
//! both on 127.0.0.1:0, optionally over TLS with certificates made here (rcgen). It records every
//! request it decoded, with its headers (or gRPC metadata), and answers the way it is told
//! ([`Behaviour`]): accept, be busy (gRPC `UNAVAILABLE` + `RetryInfo`, HTTP 503 + `Retry-After` +
//! a `google.rpc.Status` body), report a partial success, refuse the credentials, refuse the
//! data. Answers follow the OTLP specification, including its JSON rules (a partial success's
//! `rejectedLogRecords` is an int64, so a JSON string), so the sink is tested against what a
//! Collector sends, not against its own serializer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// How requests arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// How the receiver answers the next requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Full success.
    Accept,
    /// The next `times` requests fail as "busy" and ask for `retry_after`: gRPC `UNAVAILABLE`
    /// with a `google.rpc.RetryInfo`, HTTP 503 with `Retry-After` (whole seconds, rounded up)
    /// and a `google.rpc.Status` body; then back to `Accept`.
    Busy { times: usize, retry_after: Duration },
    /// Success with `partial_success` set.
    PartialSuccess { rejected: i64, message: String },
    /// HTTP 401 / gRPC `UNAUTHENTICATED`.
    Unauthenticated,
    /// HTTP 403 / gRPC `PERMISSION_DENIED`.
    PermissionDenied,
    /// HTTP 400 / gRPC `INVALID_ARGUMENT`: the data is refused for good.
    BadData,
    /// A request of more than `max_records` log records is too large: HTTP 413 / gRPC
    /// `RESOURCE_EXHAUSTED` without `RetryInfo`; smaller ones are accepted.
    TooLarge { max_records: usize },
    /// As `TooLarge`, except that once `accepts` requests that fit were accepted, the next one
    /// that fits is answered busy (as [`Behaviour::Busy`]) and the receiver goes on as
    /// `TooLarge`: half of a split batch taken, the other half turned away for now.
    TooLargeThenBusy { max_records: usize, accepts: usize, retry_after: Duration },
    /// The next `times` requests fail with HTTP `http` / gRPC `grpc` (a `google.rpc.Status`
    /// body), then back to `Accept`: a collector crashing or restarting, or a proxy in front of
    /// it, answers 500, 408, `UNKNOWN` or `INTERNAL` during an outage (PROTOCOLS §1c).
    Failing { times: usize, http: u16, grpc: Code },
    /// Every request holding a log record whose `ocsf.uid` attribute is `uid` fails with HTTP
    /// `http` / gRPC `grpc`, as a whole (no partial success); the others are accepted: a
    /// "poison" event in a batch.
    Poison { uid: String, http: u16, grpc: Code },
}

/// What the receiver answered one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Accepted,
    Busy(Duration),
    PartialSuccess { rejected: i64, message: String },
    Unauthenticated,
    PermissionDenied,
    BadData,
    TooLarge,
    Failed { http: u16, grpc: Code },
}

/// One request the receiver decoded.
#[derive(Debug, Clone)]
pub struct Export {
    pub transport: Transport,
    /// The body (HTTP) or message (gRPC) came gzipped.
    pub gzip: bool,
    /// Request headers or gRPC metadata, names in lower case.
    pub headers: HashMap<String, String>,
    pub request: ExportLogsServiceRequest,
    pub at: Instant,
    pub reply: Reply,
}

#[derive(Debug)]
struct State {
    behaviour: Mutex<Behaviour>,
    exports: Mutex<Vec<Export>>,
}

impl State {
    /// Records the request and decides the answer (counting down `Busy`).
    fn record(
        &self,
        transport: Transport,
        gzip: bool,
        headers: &HeaderMap,
        request: ExportLogsServiceRequest,
    ) -> Reply {
        let reply = {
            let mut behaviour = self.behaviour.lock().unwrap();
            match &mut *behaviour {
                Behaviour::Accept => Reply::Accepted,
                Behaviour::Busy { times, retry_after } => {
                    let reply = Reply::Busy(*retry_after);
                    *times -= 1;
                    if *times == 0 {
                        *behaviour = Behaviour::Accept;
                    }
                    reply
                }
                Behaviour::PartialSuccess { rejected, message } => {
                    Reply::PartialSuccess { rejected: *rejected, message: message.clone() }
                }
                Behaviour::Unauthenticated => Reply::Unauthenticated,
                Behaviour::PermissionDenied => Reply::PermissionDenied,
                Behaviour::BadData => Reply::BadData,
                Behaviour::Failing { times, http, grpc } => {
                    let reply = Reply::Failed { http: *http, grpc: *grpc };
                    *times = times.saturating_sub(1);
                    if *times == 0 {
                        *behaviour = Behaviour::Accept;
                    }
                    reply
                }
                Behaviour::Poison { uid, http, grpc } => {
                    let poisoned = request
                        .resource_logs
                        .iter()
                        .flat_map(|r| &r.scope_logs)
                        .flat_map(|s| &s.log_records)
                        .flat_map(|r| &r.attributes)
                        .any(|kv| {
                            kv.key == "ocsf.uid"
                                && kv.value.as_ref().and_then(|v| v.value.as_ref())
                                    == Some(&opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                                        uid.clone(),
                                    ))
                        });
                    if poisoned { Reply::Failed { http: *http, grpc: *grpc } } else { Reply::Accepted }
                }
                Behaviour::TooLarge { max_records } => {
                    if records(&request) > *max_records {
                        Reply::TooLarge
                    } else {
                        Reply::Accepted
                    }
                }
                Behaviour::TooLargeThenBusy { max_records, accepts, retry_after } => {
                    let max_records = *max_records;
                    if records(&request) > max_records {
                        Reply::TooLarge
                    } else if *accepts > 0 {
                        *accepts -= 1;
                        Reply::Accepted
                    } else {
                        let reply = Reply::Busy(*retry_after);
                        *behaviour = Behaviour::TooLarge { max_records };
                        reply
                    }
                }
            }
        };
        let headers = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let export = Export { transport, gzip, headers, request, at: Instant::now(), reply: reply.clone() };
        self.exports.lock().unwrap().push(export);
        reply
    }
}

/// How many log records the request holds.
fn records(request: &ExportLogsServiceRequest) -> usize {
    request.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
}

pub use crate::harness::pki::{Pki, make_pki};

/// The running receiver; stops when dropped.
pub struct Receiver {
    grpc: SocketAddr,
    http: SocketAddr,
    tls: bool,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Receiver {
    /// Starts both listeners on 127.0.0.1; over TLS with `pki`'s server certificate if given.
    pub async fn start(pki: Option<&Pki>) -> Receiver {
        let state = Arc::new(State { behaviour: Mutex::new(Behaviour::Accept), exports: Mutex::new(Vec::new()) });

        let grpc_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let service = LogsServiceServer::new(GrpcLogs { state: Arc::clone(&state) })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip);
        let mut server = Server::builder();
        if let Some(pki) = pki {
            let identity = Identity::from_pem(read(&pki.server_cert), read(&pki.server_key));
            server = server.tls_config(ServerTlsConfig::new().identity(identity)).unwrap();
        }
        let router = server.add_service(service);
        let grpc_task = tokio::spawn(async move {
            router.serve_with_incoming(TcpIncoming::from(grpc_listener)).await.unwrap();
        });

        let http_listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/logs", post(http_logs))
            .layer(DefaultBodyLimit::max(64 << 20))
            .with_state(Arc::clone(&state));
        let http_task = match pki {
            None => tokio::spawn(async move { axum::serve(http_listener, app).await.unwrap() }),
            Some(pki) => {
                let acceptor = tls_acceptor(pki);
                let listener = TlsListener { tcp: http_listener, acceptor };
                tokio::spawn(async move { axum::serve(listener, app).await.unwrap() })
            }
        };
        Receiver { grpc, http, tls: pki.is_some(), state, tasks: vec![grpc_task, http_task] }
    }

    /// `http://127.0.0.1:port` (https with TLS: `https://localhost:port`, the certificate's name).
    pub fn grpc_url(&self) -> String {
        self.url(self.grpc)
    }

    /// The HTTP listener's base URL; the sink appends `/v1/logs`.
    pub fn http_url(&self) -> String {
        self.url(self.http)
    }

    fn url(&self, addr: SocketAddr) -> String {
        match self.tls {
            true => format!("https://localhost:{}", addr.port()),
            false => format!("http://127.0.0.1:{}", addr.port()),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Every request so far, in arrival order.
    pub fn exports(&self) -> Vec<Export> {
        self.state.exports.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.state.exports.lock().unwrap().clear();
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP/gRPC

struct GrpcLogs {
    state: Arc<State>,
}

#[tonic::async_trait]
impl LogsService for GrpcLogs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, Status> {
        let headers = request.metadata().clone().into_headers();
        let gzip = headers.get("grpc-encoding").is_some_and(|v| v == "gzip");
        let reply = self.state.record(Transport::Grpc, gzip, &headers, request.into_inner());
        match reply {
            Reply::Accepted => Ok(tonic::Response::new(ExportLogsServiceResponse::default())),
            Reply::PartialSuccess { rejected, message } => Ok(tonic::Response::new(partial(rejected, message))),
            Reply::Busy(delay) => Err(busy_status(delay)),
            Reply::Unauthenticated => Err(Status::unauthenticated("missing or wrong API key (injected)")),
            Reply::PermissionDenied => Err(Status::permission_denied("this key may not write logs (injected)")),
            Reply::BadData => Err(Status::invalid_argument("log record 0: invalid body (injected)")),
            Reply::TooLarge => Err(Status::resource_exhausted("request too large (injected)")),
            Reply::Failed { grpc, .. } => Err(Status::new(grpc, "receiver failure (injected)")),
        }
    }
}

fn partial(rejected: i64, message: String) -> ExportLogsServiceResponse {
    ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
    }
}

/// `UNAVAILABLE` with a `google.rpc.RetryInfo` in its details (`grpc-status-details-bin`).
fn busy_status(delay: Duration) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        "receiver busy (injected)",
        ErrorDetails::with_retry_info(Some(delay)),
    )
}

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

async fn http_logs(AxumState(state): AxumState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (transport, json) = if content_type.starts_with("application/x-protobuf") {
        (Transport::HttpProtobuf, false)
    } else if content_type.starts_with("application/json") {
        (Transport::HttpJson, true)
    } else {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("unsupported content type {content_type:?}"))
            .into_response();
    };
    let gzip = headers.get(header::CONTENT_ENCODING).is_some_and(|v| v == "gzip");
    let raw = if gzip {
        let mut out = Vec::new();
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
            return status_response(
                StatusCode::BAD_REQUEST,
                json,
                Code::InvalidArgument,
                &format!("bad gzip: {e}"),
                None,
            );
        }
        out
    } else {
        body.to_vec()
    };
    let decoded = match json {
        // OTLP/JSON receivers must ignore unknown fields: serde's default.
        true => serde_json::from_slice::<ExportLogsServiceRequest>(&raw).map_err(|e| e.to_string()),
        false => ExportLogsServiceRequest::decode(&raw[..]).map_err(|e| e.to_string()),
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => {
            let message = format!("cannot decode the request: {e}");
            return status_response(StatusCode::BAD_REQUEST, json, Code::InvalidArgument, &message, None);
        }
    };
    match state.record(transport, gzip, &headers, request) {
        Reply::Accepted => success(json, None),
        Reply::PartialSuccess { rejected, message } => success(json, Some((rejected, message))),
        Reply::Busy(delay) => {
            let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
            let details = busy_status(delay).details().to_vec();
            let mut response = status_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json,
                Code::Unavailable,
                "receiver busy (injected)",
                Some(details),
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Reply::Unauthenticated => status_response(
            StatusCode::UNAUTHORIZED,
            json,
            Code::Unauthenticated,
            "missing or wrong API key (injected)",
            None,
        ),
        Reply::PermissionDenied => status_response(
            StatusCode::FORBIDDEN,
            json,
            Code::PermissionDenied,
            "this key may not write logs (injected)",
            None,
        ),
        Reply::BadData => status_response(
            StatusCode::BAD_REQUEST,
            json,
            Code::InvalidArgument,
            "log record 0: invalid body (injected)",
            None,
        ),
        Reply::TooLarge => status_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json,
            Code::ResourceExhausted,
            "request too large (injected)",
            None,
        ),
        Reply::Failed { http, grpc } => {
            status_response(StatusCode::from_u16(http).unwrap(), json, grpc, "receiver failure (injected)", None)
        }
    }
}

/// 200 with an `ExportLogsServiceResponse` in the request's encoding. The JSON is written by
/// hand as OTLP/JSON has it (int64 as a string), as a Collector sends it.
fn success(json: bool, partial_success: Option<(i64, String)>) -> Response {
    if json {
        let body = match partial_success {
            None => serde_json::json!({}),
            Some((rejected, message)) => serde_json::json!({
                "partialSuccess": {"rejectedLogRecords": rejected.to_string(), "errorMessage": message}
            }),
        };
        return ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    }
    let response = match partial_success {
        None => ExportLogsServiceResponse::default(),
        Some((rejected, message)) => partial(rejected, message),
    };
    ([(header::CONTENT_TYPE, "application/x-protobuf")], response.encode_to_vec()).into_response()
}

/// A failure answer whose body is a `google.rpc.Status` in the request's encoding;
/// `encoded`: the protobuf Status to send as is (with details).
fn status_response(status: StatusCode, json: bool, code: Code, message: &str, encoded: Option<Vec<u8>>) -> Response {
    if json {
        let body = serde_json::json!({"code": code as i32, "message": message});
        return (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    }
    let body = encoded.unwrap_or_else(|| {
        tonic_types::Status { code: code as i32, message: message.to_owned(), details: Vec::new() }.encode_to_vec()
    });
    (status, [(header::CONTENT_TYPE, "application/x-protobuf")], body).into_response()
}

// ---------------------------------------------------------------------------------------------
// TLS for the HTTP listener

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

/// A TCP listener whose connections are TLS, for `axum::serve`. A failed handshake (a client
/// that does not trust us) is skipped; the next connection is accepted.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            let handshake = tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp));
            if let Ok(Ok(tls)) = handshake.await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
