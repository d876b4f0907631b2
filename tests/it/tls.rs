//! TLS verification is on by default for every outbound connection (issue 8 point 8), on the
//! real binary. The servers here present a certificate signed by a CA the test just made
//! (rcgen), which no system trusts: without `ca_file` each connection is refused with the
//! reason and the hint to set `ca_file`; with it, the same connection is made.
//!
//! - A vendor source over https (a TLS front this test runs before the simulator): refused in
//!   `check --connect` and in a running agent (no request reaches the vendor, nothing is
//!   collected); trusted with `ca_file`, every record is collected; with an unrelated CA,
//!   refused again. Sources sharing one HTTP client (one per `ca_file`) keep their own trust:
//!   one without `ca_file` is refused while two with it collect from the same host.
//! - Every TLS sink (syslog over TLS, HEC over https, OTLP over https and over gRPC with TLS):
//!   refused by `check --connect` without `ca_file`, handshake made with it. (Delivery over
//!   those connections is proven in tests/it/syslog.rs, hec.rs and otlp.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, SimOptions, SimVendor};
use harness::agent::Agent;
use harness::pki::{Pki, make_pki};
use harness::sinks::connect_row;
use harness::*;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// A TLS server on 127.0.0.1 with the test PKI's server certificate. Each connection is
/// handshaken, counted, then forwarded to `upstream` (or read and dropped when there is none).
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

impl TlsFront {
    async fn start(pki: &Pki, upstream: Option<SocketAddr>) -> TlsFront {
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    counter.fetch_add(1, Ordering::SeqCst);
                    match upstream {
                        Some(upstream) => {
                            if let Ok(mut plain) = TcpStream::connect(upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                            }
                        }
                        // Kept open, reading and dropping, until the client closes.
                        None => {
                            let _ = tokio::io::copy(&mut tls, &mut tokio::io::sink()).await;
                        }
                    }
                });
            }
        });
        TlsFront { addr, handshakes }
    }

    fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

async fn auditrelay(args: &[&str], config: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(args)
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_vendor_over_https_is_refused_unless_its_ca_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 200;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &Clock::system()).await;
    let front = TlsFront::start(&pki, Some(sim.addr())).await;
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let config = dir.path().join("auditrelay.toml");
    let write = |ca: Option<&Path>| {
        let mut extra = "start = \"2d\"\nmax_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }\n\
                         backoff = { initial = \"50ms\", max = \"100ms\" }"
            .to_owned();
        if let Some(ca) = ca {
            extra.push_str(&format!("\nca_file = {:?}", ca.display().to_string()));
        }
        let block = source_block(&sim, SimVendor::Aitronos, &org, "vendor", &extra)
            .replace(&sim.base_url().to_string(), &format!("https://localhost:{}/", front.addr.port()));
        std::fs::write(&config, config_with_sources(dir.path(), &[block])).unwrap();
    };

    // Default: the vendor's certificate is checked against the system's roots, and refused.
    write(None);
    let out = auditrelay(&["check", "--connect"], &config).await;
    assert!(!out.status.success(), "check --connect passed an untrusted vendor certificate");
    let (result, detail) = connect_row(&stdout(&out), "source", "vendor");
    assert_eq!(result, "FAILED", "{detail}");
    assert!(detail.contains("UnknownIssuer") && detail.contains("set ca_file"), "no reason or hint: {detail}");

    // A running agent: refuses every connection, asks the vendor nothing, collects nothing.
    let mut agent = Agent::start(&config, false);
    let limit = Duration::from_secs(60);
    agent.until("three certificate errors logged", limit, |a| a.count("UnknownIssuer") >= 3).await;
    agent.kill().await;
    assert_eq!(front.handshakes(), 0, "a TLS session was established with an untrusted certificate");
    assert_eq!(sim.stats().requests, 0, "a request reached the vendor over an untrusted connection");
    assert!(events(&out_path(dir.path())).is_empty());

    // A CA that did not sign the vendor's certificate changes nothing.
    write(Some(&pki.other_ca_pem));
    let out = auditrelay(&["check", "--connect"], &config).await;
    let (result, detail) = connect_row(&stdout(&out), "source", "vendor");
    assert_eq!(result, "FAILED", "{detail}");
    assert!(detail.contains("UnknownIssuer"), "{detail}");

    // Its CA configured: the same vendor is reached and every record collected.
    write(Some(&pki.ca_pem));
    let out = auditrelay(&["check", "--connect"], &config).await;
    let (result, detail) = connect_row(&stdout(&out), "source", "vendor");
    assert_eq!(result, "ok", "{detail}");
    let out = auditrelay(&["run", "--once"], &config).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(front.handshakes() > 0);
    assert_eq!(delivered(&out_path(dir.path())).len(), 200);
    sim.shutdown().await;
}

/// Sources share one HTTP client per `ca_file` (`http::share`): a shared client must never lend
/// its trust to a source configured without it. Three organizations behind one TLS front: two
/// sources trust its CA (`ca_file`, one client for both), one trusts only the system's roots and
/// must be refused every time, although the others' connections to the same host are pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sources_sharing_a_client_keep_their_own_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut opts = SimOptions::default();
    opts.aitronos.records = 30;
    opts.aitronos.organizations = 3;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = start_sim(opts, &Clock::system()).await;
    let front = TlsFront::start(&pki, Some(sim.addr())).await;
    let orgs = sim.organizations(SimVendor::Aitronos);
    let extra = "start = \"2d\"\nmax_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }\n\
                 backoff = { initial = \"50ms\", max = \"100ms\" }";
    let trusted = format!("{extra}\nca_file = {:?}", pki.ca_pem.display().to_string());
    // The trusted sources first: a client shared by every source would be theirs.
    let blocks: Vec<String> = [
        ("trusted-1", &orgs[0], &trusted),
        ("trusted-2", &orgs[1], &trusted),
        ("system-roots", &orgs[2], &extra.to_owned()),
    ]
    .into_iter()
    .map(|(name, org, extra)| {
        source_block(&sim, SimVendor::Aitronos, org, name, extra)
            .replace(&sim.base_url().to_string(), &format!("https://localhost:{}/", front.addr.port()))
    })
    .collect();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, config_with_sources(dir.path(), &blocks)).unwrap();

    let out = out_path(dir.path());
    let mut agent = Agent::start(&config, false);
    agent
        .until("both trusted organizations collected and three certificate errors", Duration::from_secs(60), |a| {
            a.count("UnknownIssuer") >= 3
                && delivered_for(&out, SimVendor::Aitronos, &orgs[0]).len() == 30
                && delivered_for(&out, SimVendor::Aitronos, &orgs[1]).len() == 30
        })
        .await;
    agent.kill().await;
    let untrusted: Vec<_> = sim.request_log().into_iter().filter(|r| r.client == orgs[2]).collect();
    assert!(untrusted.is_empty(), "the source without ca_file reached the vendor: {} requests", untrusted.len());
    assert!(delivered_for(&out, SimVendor::Aitronos, &orgs[2]).is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_every_tls_sink_refuses_an_untrusted_receiver_unless_its_ca_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    // A TLS endpoint that only completes handshakes.
    let front = TlsFront::start(&pki, None).await;
    let port = front.addr.port();
    let config = dir.path().join("auditrelay.toml");
    let sinks = [("syslog", "syslog-tls"), ("hec", "hec-https"), ("otlp", "otlp-https"), ("otlp", "otlp-grpc")];
    let write = |ca: Option<&Path>| {
        let ca = ca.map_or(String::new(), |p| format!("ca_file = {:?}\n", p.display().to_string()));
        let text = format!(
            "state_dir = {state:?}\n\
             [[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"ORG\"\napi_key = \"k\"\n\
             base_url = \"http://127.0.0.1:9/\"\n\
             [[sinks]]\nname = \"syslog-tls\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\n\
             server_name = \"localhost\"\n{ca}\
             [[sinks]]\nname = \"hec-https\"\ntype = \"hec\"\nurl = \"https://localhost:{port}\"\ntoken = \"t\"\ntimeout = \"2s\"\n{ca}\
             [[sinks]]\nname = \"otlp-https\"\ntype = \"otlp\"\nendpoint = \"https://localhost:{port}\"\ntimeout = \"2s\"\n{ca}\
             [[sinks]]\nname = \"otlp-grpc\"\ntype = \"otlp\"\nprotocol = \"grpc\"\n\
             endpoint = \"https://localhost:{port}\"\ntimeout = \"2s\"\n{ca}",
            state = dir.path().join("state").display().to_string(),
        );
        std::fs::write(&config, text).unwrap();
    };

    write(None);
    let out = auditrelay(&["check", "--connect"], &config).await;
    assert!(!out.status.success());
    for (kind, name) in sinks {
        let (result, detail) = connect_row(&stdout(&out), "sink", name);
        assert_eq!(result, "FAILED", "{kind} {name}: {detail}");
        assert!(detail.contains("UnknownIssuer"), "{kind} {name} does not say why: {detail}");
    }
    assert_eq!(front.handshakes(), 0, "a sink completed a handshake with an untrusted receiver");

    write(Some(&pki.ca_pem));
    let out = auditrelay(&["check", "--connect"], &config).await;
    for (kind, name) in sinks {
        let (_, detail) = connect_row(&stdout(&out), "sink", name);
        assert!(!detail.contains("UnknownIssuer") && !detail.contains("trusted CA"), "{kind} {name}: {detail}");
    }
    // The syslog row proves the handshake itself; the HTTP ones get further (no HTTP answer).
    let (result, detail) = connect_row(&stdout(&out), "sink", "syslog-tls");
    assert_eq!(result, "ok", "{detail}");
    assert!(front.handshakes() >= sinks.len(), "{} handshakes", front.handshakes());
}
