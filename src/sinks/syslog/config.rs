//! `type = "syslog"`: the keys, defaults and checks of a syslog sink's table.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::SyslogSink;
use crate::config::{Res, TableKeys, duration_text, path_text, size_text};
use crate::queue::QueueError;
use crate::sinks::{Attach, Delivery, Protocol, SendError, Stamped};
use crate::tls::ClientAuth;

const SECOND: Duration = Duration::from_secs(1);

/// `type = "syslog"`: RFC 5424 (or legacy RFC 3164) messages over TLS, TCP or UDP.
#[derive(Debug, Clone)]
pub struct SyslogSinkSettings {
    /// The receiver's DNS name or IP address, and port (`address = "host:port"`).
    pub host: String,
    pub port: u16,
    pub transport: SyslogTransport,
    /// TCP and TLS only; UDP sends one message per datagram.
    pub framing: SyslogFraming,
    pub format: SyslogFormat,
    /// 0..=23 (RFC 5424 table 1).
    pub facility: u8,
    /// HOSTNAME; `None`: this machine's name, read when the sink starts.
    pub hostname: Option<String>,
    pub app_name: String,
    /// SD-ID of the structured-data element (`name@<PEN>`); `None` sends `-`.
    pub sd_id: Option<String>,
    /// Largest message (without framing); larger events follow `oversize`.
    pub max_message_size: usize,
    pub oversize: Oversize,
    /// Limit on connecting (TCP and TLS handshake) and on writing one batch.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SyslogTransport {
    /// RFC 5425.
    Tls(TlsSettings),
    Tcp,
    /// RFC 5426: best effort, never a proof of delivery.
    Udp,
}

/// Outbound TLS; the server is always verified.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of `address`).
    pub server_name: String,
    /// PEM client certificate chain and key, for mutual TLS.
    pub client_auth: Option<ClientAuth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFraming {
    /// RFC 5425 / RFC 6587 3.4.1: `MSG-LEN SP MSG`.
    OctetCounting,
    /// RFC 6587 3.4.2 (legacy): each message ends with LF.
    Lf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyslogFormat {
    Rfc5424,
    /// Legacy BSD format, for receivers that cannot parse RFC 5424.
    Rfc3164,
}

/// What happens to an event whose message exceeds `max_message_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Sent cut short, with a marker.
    Truncate,
    /// Kept whole in the dead-letter table instead of being sent.
    DeadLetter,
}

/// RFC 5424 table 1, by the names syslog.conf uses; `security` is an old alias of `auth`.
const FACILITIES: [(&str, u8); 25] = [
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("security", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("ntp", 12),
    ("audit", 13),
    ("alert", 14),
    ("clock", 15),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The largest UDP payload over IPv4 (65,535 − 8 − 20).
const MAX_UDP_PAYLOAD: u64 = 65_507;
/// RFC 5424 6.1: every receiver must accept 480 octets; smaller caps would cut every event.
const MIN_MESSAGE_SIZE: u64 = 480;

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawTransport {
    Tls,
    Tcp,
    Udp,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawFraming {
    OctetCounting,
    Lf,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawFormat {
    Rfc5424,
    Rfc3164,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawOversize {
    Truncate,
    DeadLetter,
}

/// The keys of a `type = "syslog"` table besides the common ones.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    address: Option<Spanned<String>>,
    transport: Option<Spanned<RawTransport>>,
    framing: Option<Spanned<RawFraming>>,
    format: Option<Spanned<RawFormat>>,
    facility: Option<Spanned<toml::Value>>,
    hostname: Option<Spanned<String>>,
    app_name: Option<Spanned<String>>,
    sd_id: Option<Spanned<String>>,
    max_message_size: Option<Spanned<crate::config::Size>>,
    oversize: Option<Spanned<RawOversize>>,
    timeout: Option<Spanned<String>>,
    ca_file: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    client_cert_file: Option<Spanned<String>>,
    client_key_file: Option<Spanned<String>>,
}

impl Protocol for SyslogSink {
    const TYPE: &'static str = "syslog";
    const KEYS: &'static [&'static str] = &[
        "address",
        "transport",
        "framing",
        "format",
        "facility",
        "hostname",
        "app_name",
        "sd_id",
        "max_message_size",
        "oversize",
        "timeout",
        "ca_file",
        "server_name",
        "client_cert_file",
        "client_key_file",
    ];
    type Keys = Keys;
    type Settings = SyslogSinkSettings;

    fn settings(r: Keys, cx: &TableKeys<'_>) -> Res<SyslogSinkSettings> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let transport = r.transport.as_ref().map_or(RawTransport::Tls, |t| *t.get_ref());
        let mut tls_keys_ok = Ok(());
        if !matches!(transport, RawTransport::Tls) {
            let tls_only = [
                ("ca_file", &r.ca_file),
                ("server_name", &r.server_name),
                ("client_cert_file", &r.client_cert_file),
                ("client_key_file", &r.client_key_file),
            ];
            for (key, value) in tls_only.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v))) {
                tls_keys_ok = cx.fail(value.span(), key, "not used by this transport");
            }
        }
        let default_port = match transport {
            RawTransport::Tls => 6514,
            RawTransport::Tcp | RawTransport::Udp => 514,
        };
        let host_port = match &r.address {
            None => cx.fail(cx.table(), "address", "required for type \"syslog\" (\"host:port\")"),
            Some(address) => host_port(cx, address, "address", default_port),
        };
        let transport = match transport {
            RawTransport::Tcp => Ok(SyslogTransport::Tcp),
            RawTransport::Udp => Ok(SyslogTransport::Udp),
            RawTransport::Tls => {
                let server_name = match (&r.server_name, &host_port) {
                    (Some(n), _) => Ok(n.get_ref().clone()),
                    (None, Ok((host, _))) => Ok(host.clone()),
                    (None, Err(reported)) => Err(*reported),
                };
                let server_name = server_name.and_then(|server_name| {
                    if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_ok() {
                        return Ok(server_name);
                    }
                    let span = r.server_name.as_ref().or(r.address.as_ref()).map(Spanned::span);
                    let msg = format!("{server_name:?} is not a valid TLS server name (a DNS name or IP address)");
                    cx.fail(span, "server_name", msg)
                });
                let ca_file = r.ca_file.as_ref().map(|p| cx.path(p, "ca_file")).transpose();
                let client_auth = match (&r.client_cert_file, &r.client_key_file) {
                    (None, None) => Ok(None),
                    (Some(cert), Some(key)) => {
                        let (cert_file, key_file) =
                            (cx.path(cert, "client_cert_file"), cx.path(key, "client_key_file"));
                        cert_file
                            .and_then(|cert_file| key_file.map(|key_file| Some(ClientAuth { cert_file, key_file })))
                    }
                    (Some(c), None) => cx.fail(c.span(), "client_key_file", "required with client_cert_file"),
                    (None, Some(k)) => cx.fail(k.span(), "client_cert_file", "required with client_key_file"),
                };
                // Not `?`: it would return before the keys below are checked.
                ca_file.and_then(|ca_file| {
                    server_name.and_then(|server_name| {
                        client_auth
                            .map(|client_auth| SyslogTransport::Tls(TlsSettings { ca_file, server_name, client_auth }))
                    })
                })
            }
        };
        let udp = matches!(r.transport.as_ref().map(|t| *t.get_ref()), Some(RawTransport::Udp));
        let framing = match (udp, &r.framing) {
            (true, Some(f)) => cx.fail(f.span(), "framing", "not used by transport \"udp\" (one message per datagram)"),
            _ => Ok(match r.framing.as_ref().map(|f| *f.get_ref()) {
                None | Some(RawFraming::OctetCounting) => SyslogFraming::OctetCounting,
                Some(RawFraming::Lf) => SyslogFraming::Lf,
            }),
        };
        let format = match r.format.as_ref().map(|f| *f.get_ref()) {
            None | Some(RawFormat::Rfc5424) => SyslogFormat::Rfc5424,
            Some(RawFormat::Rfc3164) => SyslogFormat::Rfc3164,
        };
        let facility = match &r.facility {
            None => Ok(10), // authpriv: security and authorization messages
            Some(v) => facility(cx, v, "facility"),
        };
        let hostname = r.hostname.as_ref().map(|h| header_field(cx, h, "hostname", 255)).transpose();
        let app_name = match &r.app_name {
            None => Ok("auditrelay".to_owned()),
            Some(a) => header_field(cx, a, "app_name", 48),
        };
        let sd_id = match &r.sd_id {
            None => Ok(None),
            Some(v) => {
                let s = v.get_ref();
                let ok = |c: char| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"');
                if s.is_empty() || s.len() > 32 || !s.chars().all(ok) {
                    let msg = format!(
                        "invalid SD-ID {s:?}: 1 to 32 printable ASCII characters without = ] \" or space, \
                         such as \"ocsf@32473\" (name@<your IANA Private Enterprise Number>)"
                    );
                    cx.fail(v.span(), "sd_id", msg)
                } else {
                    Ok(Some(s.clone()))
                }
            }
        };
        let (default_size, limit) = if udp { (8 * 1024, MAX_UDP_PAYLOAD) } else { (64 * 1024, u64::from(u32::MAX)) };
        let key = "max_message_size";
        let max_message_size = cx.bytes(&r.max_message_size, key, default_size).and_then(|max| {
            if (MIN_MESSAGE_SIZE..=limit).contains(&max) {
                return Ok(usize::try_from(max).unwrap_or(usize::MAX));
            }
            let span = r.max_message_size.as_ref().map(Spanned::span);
            let why = if udp { " (the largest UDP datagram)" } else { "" };
            cx.fail(span, key, format!("must be between {MIN_MESSAGE_SIZE} and {limit} bytes{why}"))
        });
        let oversize = match r.oversize.as_ref().map(|o| *o.get_ref()) {
            None | Some(RawOversize::DeadLetter) => Oversize::DeadLetter,
            Some(RawOversize::Truncate) => Oversize::Truncate,
        };
        let timeout = cx.duration(&r.timeout, "timeout", 30 * SECOND, true);
        tls_keys_ok?;
        let (host, port) = host_port?;
        Ok(SyslogSinkSettings {
            host,
            port,
            transport: transport?,
            framing: framing?,
            format,
            facility: facility?,
            hostname: hostname?,
            app_name: app_name?,
            sd_id: sd_id?,
            max_message_size: max_message_size?,
            oversize,
            timeout: timeout?,
        })
    }

    fn render(sl: &SyslogSinkSettings, kv: &mut dyn FnMut(&str, String)) {
        let (d, p, size) = (duration_text, path_text, size_text);
        kv("type", "\"syslog\"".to_owned());
        let host = if sl.host.contains(':') { format!("[{}]", sl.host) } else { sl.host.clone() };
        kv("address", format!("{:?}", format!("{host}:{}", sl.port)));
        let transport = match &sl.transport {
            SyslogTransport::Tls(_) => "tls",
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Udp => "udp",
        };
        kv("transport", format!("{transport:?}"));
        if let SyslogTransport::Tls(t) = &sl.transport {
            if let Some(ca) = &t.ca_file {
                kv("ca_file", p(ca));
            }
            kv("server_name", format!("{:?}", t.server_name));
            if let Some(c) = &t.client_auth {
                kv("client_cert_file", p(&c.cert_file));
                kv("client_key_file", p(&c.key_file));
            }
        }
        if !matches!(sl.transport, SyslogTransport::Udp) {
            let framing = match sl.framing {
                SyslogFraming::OctetCounting => "octet_counting",
                SyslogFraming::Lf => "lf",
            };
            kv("framing", format!("{framing:?}"));
        }
        let format = match sl.format {
            SyslogFormat::Rfc5424 => "rfc5424",
            SyslogFormat::Rfc3164 => "rfc3164",
        };
        kv("format", format!("{format:?}"));
        let facility = FACILITIES.iter().find(|f| f.1 == sl.facility).map_or("?", |f| f.0);
        kv("facility", format!("{facility:?}"));
        if let Some(h) = &sl.hostname {
            kv("hostname", format!("{h:?}"));
        }
        kv("app_name", format!("{:?}", sl.app_name));
        if let Some(id) = &sl.sd_id {
            kv("sd_id", format!("{id:?}"));
        }
        kv("max_message_size", size(sl.max_message_size as u64));
        let oversize = match sl.oversize {
            Oversize::Truncate => "truncate",
            Oversize::DeadLetter => "dead_letter",
        };
        kv("oversize", format!("{oversize:?}"));
        kv("timeout", d(sl.timeout));
    }

    fn open(s: &SyslogSinkSettings) -> Result<SyslogSink, String> {
        SyslogSink::new(s)
    }

    async fn attach(&mut self, a: Attach<'_>) -> Result<(), QueueError> {
        self.set_clock(a.clock.clone());
        Ok(())
    }

    async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        SyslogSink::send(self, batch).await
    }

    fn idle(&mut self) {
        self.release();
    }

    async fn probe(&mut self) -> Result<String, SendError> {
        SyslogSink::probe(self).await
    }

    async fn close(&mut self) {
        SyslogSink::close(self).await
    }
}

/// `host:port`, `[v6]:port`, or a bare host taking `default_port`.
fn host_port(cx: &TableKeys<'_>, v: &Spanned<String>, key: &str, default_port: u16) -> Res<(String, u16)> {
    let s = v.get_ref().as_str();
    // Called only on the path that refuses the value: each call records a problem.
    let bad = |why: &str| cx.err(v.span(), key, format!("invalid address {s:?}: {why}"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| bad("missing ]"))?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("expected :port after ]"))?)),
        }
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(bad("write an IPv6 address in brackets: \"[::1]:6514\""));
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad("expected \"host:port\""));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port must be 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

fn facility(cx: &TableKeys<'_>, v: &Spanned<toml::Value>, key: &str) -> Res<u8> {
    let found = match v.get_ref() {
        toml::Value::Integer(n) => u8::try_from(*n).ok().filter(|n| *n <= 23),
        toml::Value::String(s) => FACILITIES.iter().find(|(name, _)| name.eq_ignore_ascii_case(s)).map(|f| f.1),
        _ => None,
    };
    found.ok_or_else(|| {
        let names: Vec<&str> = FACILITIES.iter().map(|f| f.0).collect();
        cx.err(v.span(), key, format!("expected 0 to 23 or one of {}", names.join(", ")))
    })
}

/// A syslog header field: printable ASCII without spaces, at most `max` bytes (RFC 5424 6).
fn header_field(cx: &TableKeys<'_>, v: &Spanned<String>, key: &str, max: usize) -> Res<String> {
    let s = v.get_ref();
    if s.is_empty() || s.len() > max || !s.chars().all(|c| c.is_ascii_graphic()) {
        let msg = format!("invalid value {s:?}: 1 to {max} printable ASCII characters, no spaces");
        return cx.fail(v.span(), key, msg);
    }
    Ok(s.clone())
}
