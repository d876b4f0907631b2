//! Syslog sink: each OCSF event as one RFC 5424 message (or legacy RFC 3164), over TLS (RFC 5425),
//! plain TCP (RFC 6587) or UDP (RFC 5426).
//!
//! It owns the connection, the framing (octet counting, or LF for legacy receivers), the message
//! size cap (an event over it only by the send time stamped into it goes without that stamp),
//! its frame buffer (kept between the batches of a burst, shrunk after one and when the worker
//! is idle) and what "delivered" means here. Syslog has no application-level acknowledgement, so
//! a batch counts as delivered once `write_all` and `flush` returned on a connection that was
//! still open before the write; three checks keep that from acknowledging into the void:
//! - before each batch the connection is polled without blocking: a receiver that closed or
//!   reset it (restarted, crashed) is noticed and the batch goes over a new connection instead
//!   of into a half-closed socket;
//! - after a TLS 1.3 handshake the sink listens briefly before the first write, because TLS 1.3
//!   servers refuse a client certificate only after the client has finished its handshake;
//! - any error drops the connection, and the loop in `sinks/mod.rs` resends the whole batch.
//!
//! Bytes the receiver's kernel acknowledged but its process never read (a receiver killed with
//! data in its socket buffer) cannot be seen from here: that is the limit of plain syslog, and
//! why HEC and OTLP (acknowledged by the receiver) exist beside it.
//!
//! Formatting is `format.rs`, a pure function. Certificates and keys are read when the sink is
//! opened (an unreadable file stops the start); the connection is made lazily and kept open.
//! TLS is rustls only; the server is always verified, against `ca_file` or the system's roots.

mod config;
pub mod format;

pub use config::{Keys, Oversize, SyslogFormat, SyslogFraming, SyslogSinkSettings, SyslogTransport, TlsSettings};

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use self::format::Header;
use super::{Delivery, SendError, Stamped, StampedEvent};
use crate::clock::Clock;
use crate::queue::RefusedEvent;

/// How long a new TLS 1.3 connection is watched for the server refusing our certificate before
/// the first batch is written (the verdict comes one round trip after the handshake).
const TLS13_SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug)]
pub struct SyslogSink {
    /// `tls://host:port`, for messages.
    target: String,
    host: String,
    port: u16,
    transport: Transport,
    framing: SyslogFraming,
    header: Header,
    max_message_size: usize,
    oversize: Oversize,
    timeout: Duration,
    /// The timers of connecting, writing and closing: the system's until the worker gives its
    /// own (`set_clock`).
    clock: Clock,
    conn: Option<Conn>,
    /// The wire bytes of a batch (stream transports), reused between batches; shrunk after a
    /// burst ([`SyslogSink::release`]).
    wire: Vec<u8>,
    /// One message being formatted, reused (at most `max_message_size`, but shrunk alike).
    message: Vec<u8>,
}

/// What the frame and message buffers keep once a burst is over: a catch-up's batches grew
/// `wire` to the largest of them (1.13 MB held by an idle sink, heaptrack), which a sink sending
/// a few events at a time has no use for. A batch of up to this many wire bytes (about 40
/// typical events) never makes them grow again.
const KEEP_BUFFER: usize = 64 * 1024;

/// A buffer this many times larger than the batch it just carried is shrunk (to twice that
/// batch, at least [`KEEP_BUFFER`]): a burst has ended though the sink is not idle. Batches of
/// steady sizes never trigger it (a buffer grows by doubling, so it is at most twice the
/// largest of them), so there is no reallocation per batch.
const SHRINK_RATIO: usize = 8;

enum Transport {
    Tls { connector: TlsConnector, server_name: ServerName<'static> },
    Tcp,
    Udp,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tls { server_name, .. } => write!(f, "Tls({server_name:?})"),
            Transport::Tcp => f.write_str("Tcp"),
            Transport::Udp => f.write_str("Udp"),
        }
    }
}

#[derive(Debug)]
enum Conn {
    Tls(Box<TlsStream<TcpStream>>),
    Tcp(TcpStream),
    Udp(UdpSocket),
}

impl SyslogSink {
    /// Reads the CA, certificate and key files; an error names the file and what is wrong.
    pub fn new(cfg: &SyslogSinkSettings) -> Result<SyslogSink, String> {
        let (scheme, transport) = match &cfg.transport {
            SyslogTransport::Tls(tls) => {
                let config = crate::tls::client_config(tls.ca_file.as_deref(), tls.client_auth.as_ref())?;
                let connector = TlsConnector::from(Arc::new(config));
                let server_name = ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| format!("invalid TLS server name {:?}: {e}", tls.server_name))?;
                ("tls", Transport::Tls { connector, server_name })
            }
            SyslogTransport::Tcp => ("tcp", Transport::Tcp),
            SyslogTransport::Udp => ("udp", Transport::Udp),
        };
        let host_text = if cfg.host.contains(':') { format!("[{}]", cfg.host) } else { cfg.host.clone() };
        let hostname = match &cfg.hostname {
            Some(h) => h.clone(),
            None => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let procid = std::process::id().to_string();
        let header = Header::new(cfg.format, cfg.facility, &hostname, &cfg.app_name, &procid, cfg.sd_id.as_deref());
        Ok(SyslogSink {
            target: format!("{scheme}://{host_text}:{}", cfg.port),
            host: cfg.host.clone(),
            port: cfg.port,
            transport,
            framing: cfg.framing,
            header,
            max_message_size: cfg.max_message_size,
            oversize: cfg.oversize,
            timeout: cfg.timeout,
            clock: Clock::system(),
            conn: None,
            wire: Vec::new(),
            message: Vec::new(),
        })
    }

    /// The agent's clock (see the field).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub async fn send(&mut self, batch: &Stamped<'_>) -> Result<Delivery, SendError> {
        let mut delivery = Delivery::default();
        // UDP: (start, end) of each datagram in `wire`.
        let mut datagrams = Vec::new();
        self.wire.clear();
        for event in batch.iter() {
            self.message.clear();
            match format_sent(&self.header, &event, self.max_message_size, self.oversize, &mut self.message) {
                Ok(format::Fit::Whole) => {}
                Ok(format::Fit::Truncated { original_len }) => {
                    delivery.truncated += 1;
                    tracing::warn!(sink = %self.target, event_id = event.id(), original_len, max = self.max_message_size,
                        "event too large for max_message_size: sent truncated");
                }
                Err(e) => {
                    delivery.refused.push(RefusedEvent { id: event.id(), reason: e.to_string() });
                    continue;
                }
            }
            let start = self.wire.len();
            match (&self.transport, self.framing) {
                (Transport::Udp, _) => self.wire.extend_from_slice(&self.message),
                (_, SyslogFraming::OctetCounting) => {
                    self.wire.extend_from_slice(self.message.len().to_string().as_bytes());
                    self.wire.push(b' ');
                    self.wire.extend_from_slice(&self.message);
                }
                (_, SyslogFraming::Lf) => {
                    self.wire.extend_from_slice(&self.message);
                    self.wire.push(b'\n');
                }
            }
            datagrams.push((start, self.wire.len()));
        }
        if datagrams.is_empty() {
            return Ok(delivery);
        }
        let result = match self.write_wire(&datagrams).await {
            Ok(r) => r,
            Err(_) => Err(SendError::transient(format!(
                "syslog {}: writing {} bytes took longer than timeout {}",
                self.target,
                self.wire.len(),
                humantime::format_duration(self.timeout)
            ))),
        };
        if result.is_err() {
            // Never reuse a connection after an error: what it holds is unknown.
            self.conn = None;
        }
        // Much larger than this batch needed: the burst that grew it is over.
        let used = self.wire.len();
        if self.wire.capacity() > KEEP_BUFFER && self.wire.capacity() > SHRINK_RATIO.saturating_mul(used) {
            self.wire.clear();
            self.wire.shrink_to(KEEP_BUFFER.max(used.saturating_mul(2)));
        }
        result.map(|()| delivery)
    }

    /// The worker has been idle for a while (`super::IDLE_RELEASE`): the buffers keep at most
    /// [`KEEP_BUFFER`] each. Nothing is lost: a buffer holds nothing between two batches.
    pub fn release(&mut self) {
        for buffer in [&mut self.wire, &mut self.message] {
            if buffer.capacity() > KEEP_BUFFER {
                buffer.clear();
                buffer.shrink_to(KEEP_BUFFER);
            }
        }
    }

    /// Connects if needed and writes the batch, all within `timeout`.
    async fn write_wire(
        &mut self,
        datagrams: &[(usize, usize)],
    ) -> Result<Result<(), SendError>, tokio::time::error::Elapsed> {
        let (timeout, clock) = (self.timeout, self.clock.clone());
        let wire = std::mem::take(&mut self.wire);
        let result = clock
            .timeout(timeout, async {
                let conn = self.connected().await?;
                let written = match conn {
                    Conn::Tls(s) => s.write_all(&wire).await.and(s.flush().await),
                    Conn::Tcp(s) => s.write_all(&wire).await.and(s.flush().await),
                    Conn::Udp(s) => {
                        let mut sent = Ok(());
                        for &(start, end) in datagrams {
                            if let Err(e) = s.send(&wire[start..end]).await {
                                sent = Err(e);
                                break;
                            }
                        }
                        sent
                    }
                };
                written.map_err(|e| SendError::transient(format!("syslog {}: write failed: {e}", self.target)))
            })
            .await;
        self.wire = wire;
        result
    }

    /// The open connection, after checking the receiver has not closed it; else a new one.
    async fn connected(&mut self) -> Result<&mut Conn, SendError> {
        if let Some(conn) = &mut self.conn
            && let Some(why) = closed_by_peer(conn)
        {
            tracing::info!(sink = %self.target, reason = %why, "receiver closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            let conn = self.connect().await?;
            tracing::info!(sink = %self.target, "connected");
            self.conn = Some(conn);
        }
        match &mut self.conn {
            Some(conn) => Ok(conn),
            None => Err(SendError::transient(format!("syslog {}: not connected", self.target))),
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let target = &self.target;
        let refused = |e: io::Error| SendError::transient(format!("syslog {target}: cannot connect: {e}"));
        match &self.transport {
            Transport::Udp => {
                let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
                    .await
                    .map_err(refused)?
                    .next()
                    .ok_or_else(|| SendError::transient(format!("syslog {target}: {} has no address", self.host)))?;
                let local = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = UdpSocket::bind(local).await.map_err(refused)?;
                socket.connect(addr).await.map_err(refused)?;
                Ok(Conn::Udp(socket))
            }
            Transport::Tcp => {
                let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(refused)?;
                let _ = tcp.set_nodelay(true);
                Ok(Conn::Tcp(tcp))
            }
            Transport::Tls { connector, server_name } => {
                let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(refused)?;
                let _ = tcp.set_nodelay(true);
                let mut tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|e| tls_error(target, server_name, "TLS handshake failed", &e))?;
                if tls.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                    settle(&mut tls, &self.clock).await.map_err(|e| {
                        tls_error(target, server_name, "server closed the connection after the TLS handshake", &e)
                    })?;
                }
                Ok(Conn::Tls(Box::new(tls)))
            }
        }
    }

    /// Connects (and shakes hands) without sending an event, for `check --connect`.
    pub async fn probe(&mut self) -> Result<String, SendError> {
        self.conn = None;
        let conn = match self.clock.timeout(self.timeout, self.connect()).await {
            Ok(conn) => conn?,
            Err(_) => {
                let t = humantime::format_duration(self.timeout);
                return Err(SendError::transient(format!("syslog {}: no connection within timeout {t}", self.target)));
            }
        };
        let what = match &conn {
            Conn::Tls(tls) => {
                let c = tls.get_ref().1;
                let version = c.protocol_version().map_or_else(|| "TLS".to_owned(), |v| format!("{v:?}"));
                let suite = c.negotiated_cipher_suite().map_or_else(String::new, |s| format!(", {:?}", s.suite()));
                format!("syslog {}: TLS handshake done ({version}{suite}); server certificate verified", self.target)
            }
            Conn::Tcp(_) => format!("syslog {}: TCP connection accepted", self.target),
            Conn::Udp(_) => format!("syslog {}: UDP socket ready (UDP cannot prove a receiver listens)", self.target),
        };
        self.conn = Some(conn);
        self.close().await;
        Ok(what)
    }

    /// Ends the connection cleanly: TLS `close_notify`, then the TCP FIN.
    pub async fn close(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let closing = async {
            match conn {
                Conn::Tls(mut s) => s.shutdown().await,
                Conn::Tcp(mut s) => s.shutdown().await,
                Conn::Udp(_) => Ok(()),
            }
        };
        match self.clock.timeout(self.timeout, closing).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(sink = %self.target, error = %e, "closing the connection"),
            Err(_) => tracing::debug!(sink = %self.target, "closing the connection timed out"),
        }
    }
}

/// [`format::format_event`] for an event as the worker sends it, stamped with its send time
/// ([`crate::ocsf::stamp_transmit_time`], about 60 bytes). An event whose message fits
/// `max_len` as stored but not with the stamp goes without the stamp: the send time must not
/// cost an event its delivery (dead-lettered, and again at each `queue replay`, where it is
/// stamped anew) nor a cut. Larger still, the stamped event is dead-lettered or cut as configured.
/// A message that fits whole (nearly every one) is written with the stamp straight from the
/// stored event ([`format::format_whole_stamped`]); only the others are formatted from a stamped
/// copy, as they always were.
fn format_sent(
    header: &Header,
    event: &StampedEvent<'_>,
    max_len: usize,
    oversize: Oversize,
    out: &mut Vec<u8>,
) -> Result<format::Fit, format::FormatError> {
    if let Some(fit) = format::format_whole_stamped(header, event.stored(), event.parts(), max_len, out) {
        return Ok(fit);
    }
    format_copy(header, &event.to_vec(), max_len, oversize, out)
}

/// The message of an event as sent (`sent`: stamped, a copy): whole if it fits; else the stored
/// event without its stamp if that fits; else cut or refused as `oversize` says. What
/// [`format_sent`] falls back to when the event does not fit whole, and what it was before
/// issue 21 for every event (the tests' reference for the messages written from the stored
/// event).
fn format_copy(
    header: &Header,
    sent: &[u8],
    max_len: usize,
    oversize: Oversize,
    out: &mut Vec<u8>,
) -> Result<format::Fit, format::FormatError> {
    match format::format_event(header, sent, max_len, Oversize::DeadLetter, out) {
        Err(format::FormatError::TooLarge { .. }) => {}
        fit => return fit,
    }
    if let Some(stored) = crate::ocsf::strip_transmit_time(sent)
        && let Ok(fit) = format::format_event(header, &stored, max_len, Oversize::DeadLetter, out)
    {
        return Ok(fit);
    }
    format::format_event(header, sent, max_len, oversize, out)
}

/// Polls the connection once without waiting: `Some(reason)` if the receiver closed or reset it.
/// A syslog receiver never sends anything, so readable data is a close, an alert or an error.
fn closed_by_peer(conn: &mut Conn) -> Option<String> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut byte = [0u8; 512];
    let mut buf = ReadBuf::new(&mut byte);
    let polled = match conn {
        Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
        Conn::Tcp(s) => Pin::new(s).poll_read(&mut cx, &mut buf),
        // A connected UDP socket reports an ICMP "port unreachable" on the next send instead.
        Conn::Udp(_) => return None,
    };
    match polled {
        Poll::Pending => None,
        Poll::Ready(Ok(())) if buf.filled().is_empty() => Some("end of stream".to_owned()),
        Poll::Ready(Ok(())) => Some(format!("unexpected {} bytes from the receiver", buf.filled().len())),
        Poll::Ready(Err(e)) => Some(e.to_string()),
    }
}

/// Waits [`TLS13_SETTLE`] for the server to refuse the handshake it just finished (TLS 1.3 sends
/// the verdict on our client certificate after our Finished). Session tickets are consumed by
/// rustls and yield no data, so a healthy server leaves the read pending until the timer ends it.
async fn settle(tls: &mut TlsStream<TcpStream>, clock: &Clock) -> io::Result<()> {
    let mut byte = [0u8; 1];
    match clock.timeout(TLS13_SETTLE, tls.read(&mut byte)).await {
        Err(_) => Ok(()),
        Ok(Ok(0)) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of stream")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
    }
}

/// A TLS failure, classified: a certificate or alert problem needs an operator (wrong CA, wrong
/// name, client certificate refused); anything else is the network.
fn tls_error(target: &str, server_name: &ServerName<'_>, what: &str, e: &io::Error) -> SendError {
    let name = server_name.to_str();
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => {
            let hint = crate::tls::handshake_hint(tls);
            SendError::config(format!("syslog {target} (server name {name}): {what}: {tls}{hint}"))
        }
        None => SendError::transient(format!("syslog {target} (server name {name}): {what}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::{SyslogFormat, SyslogFraming, TlsSettings};
    use crate::queue::QueuedEvent;
    use crate::sinks::Protocol;
    use tokio::net::TcpListener;

    fn settings(port: u16) -> SyslogSinkSettings {
        SyslogSinkSettings {
            host: "127.0.0.1".into(),
            port,
            transport: SyslogTransport::Tcp,
            framing: SyslogFraming::Lf,
            format: SyslogFormat::Rfc5424,
            facility: 10,
            hostname: Some("h".into()),
            app_name: "auditrelay".into(),
            sd_id: None,
            max_message_size: 4096,
            oversize: Oversize::DeadLetter,
            timeout: Duration::from_secs(10),
        }
    }

    fn batch(ids: std::ops::Range<i64>) -> Vec<QueuedEvent> {
        ids.map(|id| QueuedEvent {
            id,
            body: format!(r#"{{"class_uid":6003,"severity_id":1,"time":1795292810597,"metadata":{{"uid":"u{id}"}}}}"#)
                .into_bytes(),
            collected_ms: 0,
        })
        .collect()
    }

    /// Reads one connection until the client's batch of `n` lines arrived.
    async fn read_lines(conn: &mut TcpStream, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.iter().filter(|b| **b == b'\n').count() < n {
            let read = conn.read(&mut buf).await.unwrap();
            assert!(read > 0, "the client closed early");
            got.extend_from_slice(&buf[..read]);
        }
        String::from_utf8(got).unwrap().lines().map(str::to_owned).collect()
    }

    #[tokio::test]
    async fn a_connection_the_receiver_closed_is_replaced_before_the_next_batch() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut sink = SyslogSink::new(&settings(listener.local_addr().unwrap().port())).unwrap();
        let first = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let lines = read_lines(&mut conn, 2).await;
            drop(conn); // the receiver restarts: its end of the connection closes
            (listener, lines)
        });
        assert_eq!(sink.send(&Stamped::new(&batch(1..3), 0)).await.unwrap(), Delivery::default());
        let (listener, lines) = first.await.unwrap();
        assert!(lines[0].contains("\"u1\"") && lines[1].contains("\"u2\""), "{lines:?}");

        // Writing into the half-closed socket would "succeed" and lose the batch: the sink must
        // notice the close and use a new connection. The FIN is in before the next batch here.
        let second = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            read_lines(&mut conn, 2).await
        });
        sink.send(&Stamped::new(&batch(3..5), 0)).await.unwrap();
        let lines = tokio::time::timeout(Duration::from_secs(10), second).await.expect("a new connection").unwrap();
        assert!(lines[0].contains("\"u3\"") && lines[1].contains("\"u4\""), "{lines:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_error_naming_the_receiver() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let mut sink = SyslogSink::new(&settings(port)).unwrap();
        let err = sink.send(&Stamped::new(&batch(1..2), 0)).await.unwrap_err();
        assert_eq!(err.class, super::super::Failure::Transient);
        assert!(err.message.contains(&format!("syslog tcp://127.0.0.1:{port}: cannot connect")), "{err}");
    }

    #[tokio::test]
    async fn events_too_large_or_not_events_are_refused_without_connecting() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let mut sink = SyslogSink::new(&settings(port)).unwrap();
        let mut events = batch(1..2);
        events[0].body = format!(r#"{{"class_uid":6003,"message":"{}"}}"#, "x".repeat(5000)).into_bytes();
        events.push(QueuedEvent { id: 2, body: b"not json".to_vec(), collected_ms: 0 });
        let delivery = sink.send(&Stamped::new(&events, 0)).await.expect("nothing to send, so no connection needed");
        let ids: Vec<i64> = delivery.refused.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2]);
        assert!(delivery.refused[0].reason.contains("exceeds max_message_size 4096"), "{:?}", delivery.refused);
    }

    /// Adversarial review of issue 17 (F7): the worker stamps `transmit_time` (about 60 bytes)
    /// into each event it sends. An event that fits `max_message_size` as stored must not be
    /// dead-lettered for the stamp (nor again at each `queue replay`): it goes without it.
    #[tokio::test]
    async fn an_event_that_fits_only_without_its_send_time_is_sent_without_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stored = concat!(
            r#"{"class_uid":6003,"severity_id":1,"time":1795292810597,"raw_data":"{}","raw_data_size":2,"#,
            r#""metadata":{"version":"1.8.0","uid":"u1","loggers":[{"name":"auditrelay","#,
            r#""product":{"name":"auditrelay","vendor_name":"auditrelay"},"logged_time":1795292815597}]}}"#
        );
        let mut sent = Vec::new();
        crate::ocsf::stamp_transmit_time(stored.as_bytes(), 1_795_292_820_000, &mut sent);
        assert!(sent.len() > stored.len(), "stamped");
        let mut cfg = settings(listener.local_addr().unwrap().port());
        let mut message = Vec::new();
        let header = Header::new(cfg.format, cfg.facility, "h", &cfg.app_name, &std::process::id().to_string(), None);
        format::format_event(&header, stored.as_bytes(), usize::MAX, Oversize::DeadLetter, &mut message).unwrap();
        let fits_stored = message.len();
        let receiver = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            read_lines(&mut conn, 2).await
        });
        cfg.max_message_size = fits_stored;
        let mut sink = SyslogSink::new(&cfg).unwrap();
        for oversize in [Oversize::DeadLetter, Oversize::Truncate] {
            sink.oversize = oversize;
            // The worker hands the sink the stored event and the send time it stamps.
            let events = [QueuedEvent { id: 1, body: stored.as_bytes().to_vec(), collected_ms: 0 }];
            let batch = Stamped::new(&events, 1_795_292_820_000);
            assert_eq!(sink.send(&batch).await.unwrap(), Delivery::default(), "{oversize:?}: sent whole");
        }
        let lines = receiver.await.unwrap();
        assert_eq!(lines.len(), 2);
        for line in lines {
            assert_eq!(line.len(), fits_stored);
            assert!(line.ends_with(stored), "the stored event, whole: {line}");
        }
    }

    /// Issue 21: the message written from the stored event with its stamp is byte for byte the
    /// one made of the stamped copy the loop used to hand the sink, and fits, is cut, goes
    /// without its stamp or is refused exactly as it was: every shape of event and send time,
    /// both formats, with and without structured data, both `oversize` rules, and limits around
    /// each event's own sizes (with and without its stamp).
    #[test]
    fn a_message_is_byte_identical_to_the_one_made_of_a_stamped_copy() {
        use crate::sinks::tests::{TRANSMIT_TIMES, shaped_events};
        let events = shaped_events();
        let whole = |header: &Header, body: &[u8]| {
            let mut message = Vec::new();
            format::format_event(header, body, usize::MAX, Oversize::DeadLetter, &mut message)
                .ok()
                .map(|_| message.len())
        };
        let mut compared = 0;
        for format in [SyslogFormat::Rfc5424, SyslogFormat::Rfc3164] {
            for sd_id in [None, Some("ocsf@32473")] {
                let header = Header::new(format, 10, "h", "auditrelay", "4242", sd_id);
                for ms in TRANSMIT_TIMES {
                    let stamped = Stamped::new(&events, ms);
                    for event in stamped.iter() {
                        let sent = event.to_vec();
                        let mut limits = vec![usize::MAX, 64 * 1024, 480];
                        for len in [whole(&header, &sent), whole(&header, event.stored())].into_iter().flatten() {
                            limits.extend([len + 1, len, len - 1]);
                        }
                        for max in limits {
                            for oversize in [Oversize::DeadLetter, Oversize::Truncate] {
                                let (mut new, mut old) = (b"<earlier>".to_vec(), b"<earlier>".to_vec());
                                let fit = format_sent(&header, &event, max, oversize, &mut new);
                                let fit_before = format_copy(&header, &sent, max, oversize, &mut old);
                                let case = format!(
                                    "{format:?} {sd_id:?} at {ms}, event {}, max {max}, {oversize:?}",
                                    event.id()
                                );
                                assert_eq!(fit, fit_before, "{case}");
                                assert!(new == old, "{case}: the message differs");
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(compared > 2_000, "{compared}");
    }

    /// Issue 21 (heaptrack: an idle syslog sink held 1.13 MB, its frame buffer at the largest
    /// batch of a catch-up; failed before: "frame buffer after a burst, with a batch of two
    /// events: 2146304 bytes (was 2146304)"): after a burst of large batches, the buffer does
    /// not stay at their size once the batches are small again, nor once the sink is idle; a
    /// steady run of batches of one size keeps its buffer (no reallocation per batch).
    #[tokio::test]
    async fn the_frame_buffer_shrinks_after_a_burst() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut cfg = settings(listener.local_addr().unwrap().port());
        cfg.max_message_size = 64 * 1024;
        let mut sink = SyslogSink::new(&cfg).unwrap();
        let receiver = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut sink = tokio::io::sink();
            tokio::io::copy(&mut conn, &mut sink).await.unwrap()
        });
        let pad = "x".repeat(2_000);
        let burst: Vec<QueuedEvent> = batch(1..601)
            .into_iter()
            .map(|mut e| {
                e.body =
                    format!(r#"{{"class_uid":6003,"message":"{pad}","metadata":{{"uid":"u{}"}}}}"#, e.id).into_bytes();
                e
            })
            .collect();
        // A steady run of large batches: the buffer grows once and is kept.
        sink.send(&Stamped::new(&burst, 0)).await.unwrap();
        let grown = (sink.wire.capacity(), sink.wire.as_ptr());
        assert!(grown.0 > 1_000_000, "the burst's frame: {grown:?}");
        for _ in 0..3 {
            sink.send(&Stamped::new(&burst[..500], 0)).await.unwrap();
            assert_eq!((sink.wire.capacity(), sink.wire.as_ptr()), grown, "kept between batches of a burst");
        }
        // Then small batches: the burst is over.
        sink.send(&Stamped::new(&batch(601..603), 0)).await.unwrap();
        let after = sink.wire.capacity();
        assert!(
            after <= KEEP_BUFFER,
            "frame buffer after a burst, with a batch of two events: {after} bytes (was {})",
            grown.0
        );
        // Or none at all: the worker tells the sink it is idle.
        sink.send(&Stamped::new(&burst, 0)).await.unwrap();
        assert!(sink.wire.capacity() > 1_000_000);
        Protocol::idle(&mut sink);
        assert!(sink.wire.capacity() <= KEEP_BUFFER && sink.message.capacity() <= KEEP_BUFFER, "idle");
        // The next batch goes out whole.
        sink.send(&Stamped::new(&burst[..10], 0)).await.unwrap();
        sink.close().await;
        let received = receiver.await.unwrap() as usize;
        assert!(received > 3 * 1_000_000, "{received} bytes received");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = settings(6514);
        let missing = dir.path().join("missing-ca.pem");
        let tls = TlsSettings { ca_file: Some(missing.clone()), server_name: "localhost".into(), client_auth: None };
        cfg.transport = SyslogTransport::Tls(tls);
        let err = SyslogSink::new(&cfg).unwrap_err();
        assert!(err.contains("ca_file") && err.contains(&missing.display().to_string()), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let tls = TlsSettings { ca_file: Some(empty), server_name: "localhost".into(), client_auth: None };
        cfg.transport = SyslogTransport::Tls(tls);
        assert!(SyslogSink::new(&cfg).unwrap_err().contains("no usable CA certificate"));
    }
}

#[cfg(test)]
#[path = "syslog/review21d_tests.rs"]
pub(crate) mod review21d_tests;
