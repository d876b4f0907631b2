//! The syslog sink against a real rsyslogd (Debian's, started by each test on 127.0.0.1 with
//! certificates the test makes). The first tests exercise the receiver harness
//! (`tests/it/rsyslog/mod.rs`) with hand-made RFC 5424 frames, so a failure in a sink test can be
//! told apart from a broken receiver; the rest run the agent's sink worker against it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::rsyslog;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use auditrelay::sinks::{Failure, Sink};
use harness::sinks::{
    assert_nothing_acknowledged, connect_row, ocsf_events, queue_with, sink_config, start_worker, store, uid,
};
use rsyslog::Record;

use rsyslog::{Listener, Pki, Rsyslog, TlsDriver, make_pki};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const WAIT: Duration = Duration::from_secs(5);

/// RFC 5425 / RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
fn frame(msg: &str) -> Vec<u8> {
    format!("{} {msg}", msg.len()).into_bytes()
}

/// A rustls client trusting `ca`, optionally presenting the test client certificate.
fn tls_connector(pki: &Pki, ca: &Path, client_cert: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if client_cert {
        let chain = CertificateDer::pem_file_iter(&pki.client_cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&pki.client_key).unwrap()).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    TlsConnector::from(Arc::new(config))
}

/// Connects over TLS (server name "localhost"), writes `msg` as one frame and closes with
/// close_notify.
async fn send_tls(rsyslog: &Rsyslog, connector: &TlsConnector, msg: &str) {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, rsyslog.port())).await.unwrap();
    let mut tls = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    tls.write_all(&frame(msg)).await.unwrap();
    tls.flush().await.unwrap();
    tls.shutdown().await.unwrap();
}

#[test]
fn test_tcp_receives_two_octet_counted_frames() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path(), Listener::Tcp, None);
    let first = "<110>1 2026-11-21T12:00:00.123456Z agent-host auditrelay 4242 OCSF6003 \
                 [ocsf@32473 class_uid=\"6003\" vendor=\"okta\"] \u{feff}{\"class_uid\":6003}";
    let second = "<134>1 2026-11-21T12:00:01Z agent-host auditrelay - - - line one\nline two";

    let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, rsyslog.port())).unwrap();
    tcp.write_all(&[frame(first), frame(second)].concat()).unwrap();
    drop(tcp);

    let records = rsyslog.wait_for_records(2, WAIT);
    assert_eq!(records.len(), 2, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.pri(), 110);
    assert_eq!(r.version, "1");
    assert_eq!(r.timestamp, "2026-11-21T12:00:00.123456Z");
    assert_eq!(r.hostname, "agent-host");
    assert_eq!(r.app, "auditrelay");
    assert_eq!(r.procid, "4242");
    assert_eq!(r.msgid, "OCSF6003");
    assert_eq!(r.sd, "[ocsf@32473 class_uid=\"6003\" vendor=\"okta\"]");
    assert_eq!(r.msg, "\u{feff}{\"class_uid\":6003}", "rsyslog keeps the BOM");
    assert_eq!(r.msg_without_bom(), "{\"class_uid\":6003}");
    let r = &records[1];
    assert_eq!(r.pri(), 134);
    assert_eq!(r.timestamp, "2026-11-21T12:00:01Z");
    assert_eq!((r.procid.as_str(), r.msgid.as_str(), r.sd.as_str()), ("-", "-", "-"));
    assert_eq!(r.msg, "line one#012line two", "rsyslog escapes the LF");
}

#[test]
fn test_udp_receives_one_datagram() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(dir.path(), Listener::Udp, None);
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    socket
        .send_to(
            b"<14>1 2026-11-21T12:00:00Z agent-host auditrelay - UDPTEST - over udp",
            ("127.0.0.1", rsyslog.port()),
        )
        .unwrap();

    let records = rsyslog.wait_for_records(1, WAIT);
    assert_eq!(records.len(), 1, "probes are hidden: {records:#?}");
    assert_eq!((records[0].pri(), records[0].msgid.as_str()), (14, "UDPTEST"));
    assert_eq!(records[0].msg, "over udp");
}

async fn tls_receives_one_frame(driver: TlsDriver) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), Listener::Tls { driver, mutual: false }, Some(&pki));
    let msg = "<134>1 2026-11-21T12:00:00.5Z agent-host auditrelay - TLSTEST - \u{feff}over tls";

    send_tls(&rsyslog, &tls_connector(&pki, &pki.ca_pem, false), msg).await;

    let records = rsyslog.wait_for_records_async(1, WAIT).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].msgid, "TLSTEST");
    assert_eq!(records[0].msg_without_bom(), "over tls");
}

#[tokio::test]
async fn test_tls_gtls_receives_one_frame() {
    tls_receives_one_frame(TlsDriver::Gtls).await;
}

#[tokio::test]
async fn test_tls_ossl_receives_one_frame() {
    tls_receives_one_frame(TlsDriver::Ossl).await;
}

#[tokio::test]
async fn test_tls_client_trusting_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), Listener::Tls { driver: TlsDriver::Ossl, mutual: false }, Some(&pki));

    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, rsyslog.port())).await.unwrap();
    let connector = tls_connector(&pki, &pki.other_ca_pem, false);
    let err = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect_err("handshake fails");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
}

async fn mutual_tls_accepts_only_a_client_certificate(driver: TlsDriver) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), Listener::Tls { driver, mutual: true }, Some(&pki));

    // Without a client certificate: the TLS 1.3 client finishes its side of the handshake before
    // the server checks the certificate, so the write may succeed; the server then closes. Read
    // until that close so the rejection has happened before the good message is sent.
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, rsyslog.port())).await.unwrap();
    let connector = tls_connector(&pki, &pki.ca_pem, false);
    if let Ok(mut tls) = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await {
        let _ = tls.write_all(&frame("<134>1 - agent-host auditrelay - NOCERT - rejected")).await;
        let _ = tls.flush().await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(WAIT, tls.read(&mut buf)).await.expect("rsyslog closes the connection");
        assert!(!matches!(read, Ok(n) if n > 0), "rsyslog sent data to a client without a certificate");
    }

    send_tls(&rsyslog, &tls_connector(&pki, &pki.ca_pem, true), "<134>1 - agent-host auditrelay - WITHCERT - ok").await;

    let records = rsyslog.wait_for_records_async(1, WAIT).await;
    let msgids: Vec<_> = records.iter().map(|r| r.msgid.as_str()).collect();
    assert_eq!(msgids, ["WITHCERT"], "{}", rsyslog.diagnostics());
}

#[tokio::test]
async fn test_mutual_tls_ossl_accepts_only_a_client_certificate() {
    mutual_tls_accepts_only_a_client_certificate(TlsDriver::Ossl).await;
}

#[tokio::test]
async fn test_mutual_tls_gtls_accepts_only_a_client_certificate() {
    mutual_tls_accepts_only_a_client_certificate(TlsDriver::Gtls).await;
}

#[test]
fn test_kill_and_restart_keep_the_port_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut rsyslog = Rsyslog::start(dir.path(), Listener::Tcp, None);
    let port = rsyslog.port();
    let send = |msgid: &str| {
        let mut tcp = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        tcp.write_all(&frame(&format!("<134>1 - agent-host auditrelay - {msgid} - x"))).unwrap();
    };

    send("BEFORE");
    rsyslog.wait_for_records(1, WAIT);
    rsyslog.kill();
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(), "killed rsyslog still listens");
    rsyslog.restart();
    assert_eq!(rsyslog.port(), port);
    send("AFTER");

    let records = rsyslog.wait_for_records(2, WAIT);
    let msgids: Vec<_> = records.iter().map(|r| r.msgid.as_str()).collect();
    assert_eq!(msgids, ["BEFORE", "AFTER"]);
}

// ---------------------------------------------------------------------------------------------
// The agent's syslog sink against the real rsyslog: real OCSF events (made once per test process
// by the whole pipeline against the simulator, in paused time), stored in a fresh queue and
// delivered by the same worker loop the daemon runs, in real time (rsyslog is another process).

fn tls_lines(rsyslog: &Rsyslog, ca: &Path) -> String {
    format!(
        "address = \"127.0.0.1:{}\"\nserver_name = \"localhost\"\nca_file = {:?}\n",
        rsyslog.port(),
        ca.display().to_string()
    )
}

/// A temporary directory holding the test PKI and a TLS rsyslog.
fn tls_receiver(driver: TlsDriver, mutual: bool) -> (tempfile::TempDir, Pki, Rsyslog) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), Listener::Tls { driver, mutual }, Some(&pki));
    (dir, pki, rsyslog)
}

/// What rsyslog must have made of the event `body` sent with `facility` and the default header.
fn assert_parsed_right(record: &Record, body: &[u8], facility: u8, with_sd: bool) {
    let event: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(record.msg_without_bom(), std::str::from_utf8(body).unwrap(), "MSG is the OCSF JSON, unchanged");
    let severity = match event["severity_id"].as_u64().unwrap() {
        0 | 1 => 6,
        2 => 5,
        3 => 4,
        4 => 3,
        5 => 2,
        6 => 1,
        _ => 5,
    };
    assert_eq!(record.pri(), facility * 8 + severity, "PRI of {event}");
    assert_eq!(record.version, "1");
    let sent = chrono::DateTime::from_timestamp_millis(event["time"].as_i64().unwrap()).unwrap();
    let got = chrono::DateTime::parse_from_rfc3339(&record.timestamp).unwrap();
    assert_eq!(got, sent, "TIMESTAMP is the event's own time: {}", record.timestamp);
    assert_eq!(record.hostname, "collector-1.example.test");
    assert_eq!(record.app, "auditrelay");
    assert_eq!(record.procid, std::process::id().to_string());
    assert_eq!(record.msgid, format!("OCSF{}", event["class_uid"]));
    if with_sd {
        assert!(record.sd.starts_with("[ocsf@32473 "), "{}", record.sd);
        assert!(record.sd.contains(&format!("class_uid=\"{}\"", event["class_uid"])), "{}", record.sd);
        assert!(record.sd.contains(&format!("uid=\"{}\"", uid(body))), "{}", record.sd);
    } else {
        assert_eq!(record.sd, "-");
    }
}

/// metadata.uid -> times received.
fn received(records: &[Record]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in records {
        *seen.entry(uid(r.msg_without_bom().as_bytes())).or_insert(0) += 1;
    }
    seen
}

const HEADER: &str = "hostname = \"collector-1.example.test\"\nsd_id = \"ocsf@32473\"\nfacility = \"local4\"\n";

#[test]
fn tls_delivers_every_event_parsed_right_gnutls_receiver() {
    let events = ocsf_events();
    let (dir, pki, rsyslog) = tls_receiver(TlsDriver::Gtls, false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stats = rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], events).await;
        let cfg = sink_config(dir.path(), "syslog", &format!("{}{HEADER}", tls_lines(&rsyslog, &pki.ca_pem)));
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!(queue.backlog("syslog").await.unwrap(), 0);
        stats
    });
    assert_eq!((stats.events, stats.dead_lettered, stats.retries), (events.len() as u64, 0, 0), "{stats:?}");
    let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
    assert_eq!(records.len(), events.len());
    let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
    for r in &records {
        let body = by_uid[&uid(r.msg_without_bom().as_bytes())];
        assert_parsed_right(r, body, 20, true);
    }
    assert_eq!(received(&records).len(), events.len(), "every event once");
}

#[test]
fn mutual_tls_is_accepted_with_a_client_certificate_and_refused_without() {
    let events = &ocsf_events()[..40];
    let (dir, pki, rsyslog) = tls_receiver(TlsDriver::Ossl, true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], events).await;
        // Without a client certificate: refused, and not one event acknowledged.
        let cfg = sink_config(dir.path(), "syslog", &format!("{}{HEADER}", tls_lines(&rsyslog, &pki.ca_pem)));
        let mut probe = Sink::open(&cfg).unwrap();
        let err = probe.probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config, "{err}");
        assert!(err.message.contains("client certificate"), "{err}");
        assert_nothing_acknowledged(cfg, &queue, events.len()).await;
        assert!(rsyslog.records().is_empty(), "rsyslog let a client without certificate in");

        // With one: every event.
        let client = format!(
            "client_cert_file = {:?}\nclient_key_file = {:?}\n",
            pki.client_cert.display().to_string(),
            pki.client_key.display().to_string()
        );
        let cfg = sink_config(dir.path(), "syslog", &format!("{}{HEADER}{client}", tls_lines(&rsyslog, &pki.ca_pem)));
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!(stats.events, events.len() as u64);
    });
    let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
    assert_eq!(received(&records).len(), events.len());
}

#[test]
fn a_receiver_signed_by_another_ca_is_a_clear_tls_error_and_nothing_is_acknowledged() {
    let events = &ocsf_events()[..20];
    let (dir, pki, rsyslog) = tls_receiver(TlsDriver::Gtls, false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], events).await;
        let cfg = sink_config(dir.path(), "syslog", &format!("{}{HEADER}", tls_lines(&rsyslog, &pki.other_ca_pem)));
        let err = Sink::open(&cfg).unwrap().probe().await.unwrap_err();
        assert_eq!(err.class, Failure::Config);
        for piece in ["TLS handshake failed", "UnknownIssuer", "ca_file", &format!("127.0.0.1:{}", rsyslog.port())] {
            assert!(err.message.contains(piece), "{err} lacks {piece:?}");
        }
        assert_nothing_acknowledged(cfg, &queue, events.len()).await;
    });
    assert!(rsyslog.records().is_empty());
}

/// rsyslog is SIGKILLed with the agent's connection open, events are queued while it is down,
/// and it comes back on the same port: every event arrives. A killed receiver's kernel closes
/// the connection (FIN, or RST if unread data remained); writing into the half-closed socket
/// would "succeed" and lose the batch, so the sink must notice the close first.
fn killed_and_restarted_mid_stream_loses_nothing(tls: bool) {
    let events = ocsf_events();
    let (first, second) = events.split_at(events.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let listener = if tls { Listener::Tls { driver: TlsDriver::Gtls, mutual: false } } else { Listener::Tcp };
    let mut rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), listener, Some(&pki));
    let address = match tls {
        true => tls_lines(&rsyslog, &pki.ca_pem),
        false => format!("address = \"127.0.0.1:{}\"\ntransport = \"tcp\"\n", rsyslog.port()),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], first).await;
        let cfg = sink_config(dir.path(), "syslog", &format!("{address}{HEADER}"));
        let worker = start_worker(cfg, &queue);
        rsyslog.wait_for_records_async(first.len(), Duration::from_secs(30)).await;
        // The receiver dies with the agent's connection open; the next events are written
        // while it is down, and must not be acknowledged into the dead connection.
        rsyslog.kill();
        store(&queue, second).await;
        worker.wait_for_retries(2).await;
        assert!(queue.backlog("syslog").await.unwrap() > 0, "events acknowledged while the receiver was down");
        rsyslog.restart();
        let stats = worker.drain().await;
        assert_eq!(queue.backlog("syslog").await.unwrap(), 0);
        assert!(stats.retries >= 2, "{stats:?}");
    });
    let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
    let seen = received(&records);
    let missing: Vec<_> = events.iter().map(|e| uid(e)).filter(|u| !seen.contains_key(u)).collect();
    assert!(missing.is_empty(), "lost {} events: {missing:?}", missing.len());
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert!(duplicates <= 50, "duplicates beyond the batch in flight: {duplicates}");
}

#[test]
fn rsyslog_killed_and_restarted_mid_stream_loses_nothing_over_tls() {
    killed_and_restarted_mid_stream_loses_nothing(true);
}

#[test]
fn rsyslog_killed_and_restarted_mid_stream_loses_nothing_over_tcp() {
    killed_and_restarted_mid_stream_loses_nothing(false);
}

#[test]
fn plain_tcp_with_octet_counting_lf_framing_and_rfc3164() {
    let events = &ocsf_events()[..60];
    let (a, rest) = events.split_at(20);
    let (b, c) = rest.split_at(20);
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), Listener::Tcp, None);
    let address = format!("address = \"127.0.0.1:{}\"\ntransport = \"tcp\"\n", rsyslog.port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for (part, extra) in [(a, ""), (b, "framing = \"lf\"\n"), (c, "framing = \"lf\"\nformat = \"rfc3164\"\n")] {
            let sub = tempfile::tempdir().unwrap();
            let queue = queue_with(sub.path(), &["syslog"], part).await;
            let cfg = sink_config(sub.path(), "syslog", &format!("{address}{HEADER}{extra}"));
            assert_eq!(start_worker(cfg, &queue).drain().await.events, part.len() as u64);
        }
    });
    let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
    let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
    for r in &records[..40] {
        assert_parsed_right(r, by_uid[&uid(r.msg_without_bom().as_bytes())], 20, true);
    }
    for r in &records[40..] {
        // RFC 3164: no version, structured data or sub-second time; the JSON, tag and host arrive.
        let body = by_uid[&uid(r.msg_without_bom().trim_start().as_bytes())];
        assert_eq!(r.msg_without_bom().trim_start(), std::str::from_utf8(body).unwrap());
        assert_eq!((r.hostname.as_str(), r.app.as_str()), ("collector-1.example.test", "auditrelay"));
    }
    assert_eq!(received(&records).len(), events.len());
}

#[test]
fn udp_delivers_one_message_per_datagram() {
    let events = &ocsf_events()[..30];
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), Listener::Udp, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], events).await;
        let lines = format!("address = \"127.0.0.1:{}\"\ntransport = \"udp\"\n{HEADER}", rsyslog.port());
        let cfg = sink_config(dir.path(), "syslog", &lines);
        assert_eq!(start_worker(cfg, &queue).drain().await.events, events.len() as u64);
    });
    let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
    let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
    for r in &records {
        assert_parsed_right(r, by_uid[&uid(r.msg_without_bom().as_bytes())], 20, true);
    }
}

/// An event made larger than `size` bytes by a long message.
fn oversized(body: &[u8], size: usize) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["message"] = serde_json::Value::String("é".repeat(size / 2));
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn oversized_events_are_dead_lettered_or_truncated_as_configured() {
    let mut events = ocsf_events()[..10].to_vec();
    events[3] = oversized(&events[3], 8192);
    events[7] = oversized(&events[7], 8192);
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), Listener::Tcp, None);
    let address =
        format!("address = \"127.0.0.1:{}\"\ntransport = \"tcp\"\nmax_message_size = 4096\n{HEADER}", rsyslog.port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Dead-lettered: kept whole, with the sink and the reason, and counted.
        let sub = tempfile::tempdir().unwrap();
        let queue = queue_with(sub.path(), &["syslog"], &events).await;
        let stats = start_worker(sink_config(sub.path(), "syslog", &address), &queue).drain().await;
        assert_eq!((stats.events, stats.dead_lettered, stats.truncated), (8, 2, 0), "{stats:?}");
        let letters = queue.dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 2);
        for (letter, big) in letters.iter().zip([&events[3], &events[7]]) {
            assert_eq!((&letter.raw, letter.sink.as_deref()), (big, Some("syslog")));
            assert!(letter.reason.contains("exceeds max_message_size 4096"), "{}", letter.reason);
        }
        // Truncated: sent, cut to the cap, marked, counted.
        let sub = tempfile::tempdir().unwrap();
        let queue = queue_with(sub.path(), &["syslog"], &events).await;
        let cfg = sink_config(sub.path(), "syslog", &format!("{address}oversize = \"truncate\"\n"));
        let stats = start_worker(cfg, &queue).drain().await;
        assert_eq!((stats.events, stats.dead_lettered, stats.truncated), (10, 0, 2), "{stats:?}");
        assert!(queue.dead_letters(10).await.unwrap().is_empty());
    });
    let records = rsyslog.wait_for_records(18, Duration::from_secs(30));
    let raw = std::fs::read_to_string(rsyslog.raw_path()).unwrap();
    let cut: Vec<&str> = raw.lines().filter(|l| l.contains("...[truncated by auditrelay]")).collect();
    assert_eq!(cut.len(), 2, "two truncated messages");
    assert!(cut.iter().all(|l| l.len() <= 4096), "within max_message_size");
    assert_eq!(records.len(), 18);
    // A truncated event keeps its metadata (uid, event_code, product, tenant), serialized last:
    // its long message is cut, the JSON stays whole.
    let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
    let truncated: Vec<&Record> = records.iter().filter(|r| r.msg.contains("...[truncated by auditrelay]")).collect();
    assert_eq!(truncated.len(), 2);
    for r in truncated {
        let got: serde_json::Value = serde_json::from_str(r.msg_without_bom()).expect("still JSON");
        let original: serde_json::Value = serde_json::from_slice(by_uid[&uid(r.msg_without_bom().as_bytes())]).unwrap();
        assert_eq!(got["metadata"], original["metadata"]);
        assert!(got["message"].as_str().unwrap().ends_with("...[truncated by auditrelay]"), "{got}");
    }
}

/// The event as the queue stores it: the file sink's output (which `ocsf_events` is) without the
/// send time the worker stamped into it (`metadata.transmit_time`, `loggers[-1].transmit_time`).
fn as_stored(sent: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(sent).unwrap();
    let time = text.rsplit_once(",\"transmit_time\":").unwrap().1.trim_end_matches('}');
    let stamp = format!(",\"transmit_time\":{time}");
    assert!(text.ends_with(&format!("{stamp}}}]{stamp}}}}}")), "{text}");
    text.replace(&stamp, "").into_bytes()
}

/// Adversarial review of issue 17 (F7): an event whose message fits `max_message_size` as
/// stored, but not with the ~60 bytes of its send time, is delivered (without the send time),
/// not dead-lettered.
#[test]
fn an_event_that_fits_max_message_size_only_without_its_send_time_is_delivered() {
    use auditrelay::sinks::syslog::format::{Header, format_event};
    use auditrelay::sinks::syslog::{Oversize, SyslogFormat};
    let events: Vec<Vec<u8>> = ocsf_events()[..10].iter().map(|e| as_stored(e)).collect();
    let procid = std::process::id().to_string();
    let header =
        Header::new(SyslogFormat::Rfc5424, 20, "collector-1.example.test", "auditrelay", &procid, Some("ocsf@32473"));
    let size = |body: &[u8]| {
        let mut message = Vec::new();
        format_event(&header, body, usize::MAX, Oversize::DeadLetter, &mut message).unwrap();
        message.len()
    };
    let max = events.iter().map(|e| size(e)).max().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(&dir.path().join("rsyslog"), Listener::Tcp, None);
    let lines =
        format!("address = \"127.0.0.1:{}\"\ntransport = \"tcp\"\nmax_message_size = {max}\n{HEADER}", rsyslog.port());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stats = rt.block_on(async {
        let queue = queue_with(dir.path(), &["syslog"], &events).await;
        let stats = start_worker(sink_config(dir.path(), "syslog", &lines), &queue).drain().await;
        assert!(queue.dead_letters(10).await.unwrap().is_empty());
        stats
    });
    assert_eq!((stats.events, stats.dead_lettered, stats.truncated), (10, 0, 0), "{stats:?}");
    let records = rsyslog.wait_for_records(10, Duration::from_secs(30));
    // Stamped, an event is as long as the file sink wrote it (a send time of as many digits).
    let stamped_size: HashMap<String, usize> = ocsf_events()[..10].iter().map(|e| (uid(e), size(e))).collect();
    assert!(stamped_size.values().any(|len| *len > max), "one event at least fits only as stored");
    let by_uid: HashMap<String, &Vec<u8>> = events.iter().map(|e| (uid(e), e)).collect();
    for r in &records {
        let id = uid(r.msg_without_bom().as_bytes());
        if stamped_size[&id] > max {
            assert_parsed_right(r, by_uid[&id], 20, true);
        } else {
            let sent: serde_json::Value = serde_json::from_str(r.msg_without_bom()).unwrap();
            assert!(sent["metadata"]["transmit_time"].is_i64(), "the others carry their send time: {sent}");
        }
    }
    assert_eq!(received(&records).len(), 10, "every event once");
}

#[test]
fn check_connect_reports_a_failed_tls_handshake() {
    let (dir, pki, rsyslog) = tls_receiver(TlsDriver::Gtls, false);
    let (_rt, _sim, source) = harness::sinks::simulated_source();
    let config = |ca: &Path| {
        let path = dir.path().join("auditrelay.toml");
        let text = format!(
            "state_dir = \"state\"\n{source}\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\n{}",
            tls_lines(&rsyslog, ca)
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |path: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
            .args(["check", "--connect", "-c"])
            .arg(path)
            .output()
            .unwrap()
    };
    let bad = run(&config(&pki.other_ca_pem));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    let (result, detail) = connect_row(&stdout, "sink", "siem");
    assert!(result == "FAILED" && detail.contains("UnknownIssuer"), "{stdout}");
    assert!(stdout.contains("set ca_file to the CA that signed it"), "{stdout}");
    let good = run(&config(&pki.ca_pem));
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert_eq!(good.status.code(), Some(0), "{stdout}");
    let (result, detail) = connect_row(&stdout, "sink", "siem");
    assert!(result == "ok" && detail.starts_with("syslog tls://127.0.0.1") && detail.contains("verified"), "{stdout}");
    let (result, detail) = connect_row(&stdout, "source", "a");
    assert!(result == "ok" && detail.contains("credential accepted"), "{stdout}");
}

/// rsyslog's GnuTLS driver settles on TLS 1.2 with rustls, its OpenSSL driver on TLS 1.3: the
/// sink speaks both (RFC 9662) and delivers over each.
#[test]
fn tls_1_2_and_1_3_both_deliver() {
    let events = &ocsf_events()[..20];
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    for (driver, version) in [(TlsDriver::Gtls, "TLSv1_2"), (TlsDriver::Ossl, "TLSv1_3")] {
        let sub = tempfile::tempdir().unwrap();
        let rsyslog = Rsyslog::start(&sub.path().join("rsyslog"), Listener::Tls { driver, mutual: false }, Some(&pki));
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let cfg = sink_config(sub.path(), "syslog", &format!("{}{HEADER}", tls_lines(&rsyslog, &pki.ca_pem)));
            let probe = Sink::open(&cfg).unwrap().probe().await.unwrap();
            assert!(probe.contains(&format!("TLS handshake done ({version}")), "{driver:?}: {probe}");
            let queue = queue_with(sub.path(), &["syslog"], events).await;
            assert_eq!(start_worker(cfg, &queue).drain().await.events, events.len() as u64);
        });
        let records = rsyslog.wait_for_records(events.len(), Duration::from_secs(30));
        assert_eq!(received(&records).len(), events.len(), "{driver:?}");
        // The probe's and the worker's connections both ended with close_notify: rsyslog's
        // OpenSSL driver reports a connection closed without it as "unexpected eof".
        let diagnostics = rsyslog.diagnostics();
        assert!(!diagnostics.to_lowercase().contains("unexpected eof"), "{driver:?}: {diagnostics}");
    }
}
