//! `type = "otlp"`: the keys, defaults and checks of an OTLP sink's table.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::OtlpSink;
use crate::config::{Res, SecretText, TableKeys, duration_text, path_text};
use crate::queue::QueueError;
use crate::sinks::{Attach, Delivery, Protocol, SendError, Stamped};

const SECOND: Duration = Duration::from_secs(1);

/// `type = "otlp"`: OpenTelemetry logs (`ExportLogsServiceRequest`).
#[derive(Debug, Clone)]
pub struct OtlpSinkSettings {
    /// HTTP: the full URL requests go to (`/v1/logs` appended when the URL has no path);
    /// gRPC: the server's URL (its path is not used).
    pub endpoint: url::Url,
    pub protocol: OtlpProtocol,
    /// Extra request headers (HTTP) or metadata (gRPC), e.g. a hosted backend's API key.
    pub headers: Vec<(String, SecretString)>,
    /// PEM CA certificates to trust instead of the system's roots (https only).
    pub ca_file: Option<PathBuf>,
    pub gzip: bool,
    pub body: OtlpBody,
    /// Resource `host.name`; `None`: this machine's name.
    pub host_name: Option<String>,
    /// Limit on one export (connect, send, answer).
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP, binary protobuf (the default).
    HttpProtobuf,
    /// OTLP/HTTP, JSON (OTLP's JSON mapping).
    HttpJson,
    /// OTLP/gRPC, `LogsService/Export`.
    Grpc,
}

/// How a LogRecord's body carries the OCSF event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpBody {
    /// An AnyValue kvlist mirroring the JSON object (the default).
    Structured,
    /// The JSON text as a string AnyValue.
    JsonString,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawProtocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawBody {
    Structured,
    JsonString,
}

/// The keys of a `type = "otlp"` table besides the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    endpoint: Option<Spanned<String>>,
    protocol: Option<Spanned<RawProtocol>>,
    headers: Option<Spanned<std::collections::BTreeMap<String, Spanned<SecretText>>>>,
    ca_file: Option<Spanned<String>>,
    gzip: Option<Spanned<bool>>,
    body: Option<Spanned<RawBody>>,
    hostname: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

impl Protocol for OtlpSink {
    const TYPE: &'static str = "otlp";
    const KEYS: &'static [&'static str] =
        &["endpoint", "protocol", "headers", "ca_file", "gzip", "body", "hostname", "timeout"];
    type Keys = Keys;
    type Settings = OtlpSinkSettings;

    fn settings(r: Keys, cx: &TableKeys<'_>) -> Res<OtlpSinkSettings> {
        let protocol = match r.protocol.as_ref().map(|p| *p.get_ref()) {
            None | Some(RawProtocol::HttpProtobuf) => OtlpProtocol::HttpProtobuf,
            Some(RawProtocol::HttpJson) => OtlpProtocol::HttpJson,
            Some(RawProtocol::Grpc) => OtlpProtocol::Grpc,
        };
        // Every key is checked before any refusal is returned (`config` module docs).
        let endpoint = if r.endpoint.is_none() {
            let msg = "required for type \"otlp\" (such as \"https://collector.example.com:4318\")";
            cx.fail(cx.table(), "endpoint", msg)
        } else {
            cx.url(&r.endpoint, "endpoint", "")
        };
        let endpoint = endpoint.map(|mut endpoint| {
            if protocol != OtlpProtocol::Grpc && matches!(endpoint.path(), "" | "/") {
                endpoint.set_path("/v1/logs");
            }
            endpoint
        });
        let mut headers = Ok(Vec::new());
        if let Some(map) = &r.headers {
            for (name, value) in map.get_ref() {
                let key = format!("headers.{name}");
                let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
                let header = if name.is_empty() || !name.chars().all(ok) {
                    let msg = format!("invalid header name {name:?}: use A-Z a-z 0-9 - _ .");
                    cx.fail(map.span(), &key, msg)
                } else {
                    // Values are secrets (API keys): "${ENV}" or a literal, never shown.
                    let value = Some(Spanned::new(map.span(), SecretText(value.get_ref().0.clone())));
                    cx.secret(&key, &value, &None).map(|secret| (name.to_ascii_lowercase(), secret))
                };
                match (&mut headers, header) {
                    (Ok(headers), Ok(header)) => headers.push(header),
                    (_, Err(reported)) => headers = Err(reported),
                    (Err(_), Ok(_)) => {}
                }
            }
        }
        let body = match r.body.as_ref().map(|b| *b.get_ref()) {
            None | Some(RawBody::Structured) => OtlpBody::Structured,
            Some(RawBody::JsonString) => OtlpBody::JsonString,
        };
        let host_name = match &r.hostname {
            Some(h) if h.get_ref().trim().is_empty() => cx.fail(h.span(), "hostname", "must not be empty"),
            h => Ok(h.as_ref().map(|h| h.get_ref().clone())),
        };
        let ca_file = match &endpoint {
            Ok(endpoint) => crate::sinks::https_ca_file(cx, &r.ca_file, endpoint),
            // Whether a CA is used depends on the refused URL; the file itself is still checked.
            Err(reported) => r.ca_file.as_ref().map(|p| cx.path(p, "ca_file")).transpose().and(Err(*reported)),
        };
        let timeout = cx.duration(&r.timeout, "timeout", 30 * SECOND, true);
        Ok(OtlpSinkSettings {
            ca_file: ca_file?,
            endpoint: endpoint?,
            protocol,
            headers: headers?,
            gzip: r.gzip.as_ref().is_none_or(|g| *g.get_ref()),
            body,
            host_name: host_name?,
            timeout: timeout?,
        })
    }

    fn secrets(s: &OtlpSinkSettings) -> Vec<&SecretString> {
        s.headers.iter().map(|(_, v)| v).collect()
    }

    fn render(o: &OtlpSinkSettings, kv: &mut dyn FnMut(&str, String)) {
        let (d, p) = (duration_text, path_text);
        kv("type", "\"otlp\"".to_owned());
        kv("endpoint", format!("{:?}", crate::redact::url(&o.endpoint)));
        let protocol = match o.protocol {
            OtlpProtocol::HttpProtobuf => "http_protobuf",
            OtlpProtocol::HttpJson => "http_json",
            OtlpProtocol::Grpc => "grpc",
        };
        kv("protocol", format!("{protocol:?}"));
        if !o.headers.is_empty() {
            let names: Vec<String> = o.headers.iter().map(|(n, _)| format!("{n:?} = \"[redacted]\"")).collect();
            kv("headers", format!("{{ {} }}", names.join(", ")));
        }
        if let Some(ca) = &o.ca_file {
            kv("ca_file", p(ca));
        }
        kv("gzip", o.gzip.to_string());
        let body = match o.body {
            OtlpBody::Structured => "structured",
            OtlpBody::JsonString => "json_string",
        };
        kv("body", format!("{body:?}"));
        if let Some(host) = &o.host_name {
            kv("hostname", format!("{host:?}"));
        }
        kv("timeout", d(o.timeout));
    }

    fn open(s: &OtlpSinkSettings) -> Result<OtlpSink, String> {
        OtlpSink::new(s)
    }

    async fn attach(&mut self, a: Attach<'_>) -> Result<(), QueueError> {
        self.set_clock(a.clock.clone());
        Ok(())
    }

    async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        OtlpSink::send(self, batch).await
    }

    async fn probe(&mut self) -> Result<String, SendError> {
        OtlpSink::probe(self).await
    }

    async fn close(&mut self) {
        OtlpSink::close(self).await
    }
}
