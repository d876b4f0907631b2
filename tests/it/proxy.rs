//! Corporate proxies (issue 19 point 4), on the real binary: every outbound HTTP connection
//! (a vendor's API, the HEC sink; OTLP/HTTP and Elasticsearch share the same client set-up,
//! `auditrelay::http::client`) honours `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`, set on the
//! agent's process only (never `std::env::set_var` here: the tests share one process).
//!
//! The proxy is written here: an HTTP/1.1 forward proxy on 127.0.0.1 that tunnels `CONNECT
//! host:port` (https targets) and forwards absolute-URI requests (plain-http targets, one
//! request per connection), recording each target and its `Proxy-Authorization`. It can
//! require credentials or refuse everything with 407.
//!
//! - A vendor and the collector are reached through it (plain-http forwarding).
//! - An https collector is reached through a CONNECT tunnel, with the proxy's credentials sent
//!   as `Proxy-Authorization` on every request and the password in no log line (at trace).
//! - A host `NO_PROXY` names is reached directly, the others through the proxy; `check` says
//!   which goes which way (text and `--json`), with the proxy's credentials redacted.
//! - A proxy answering 407: the error names the proxy (redacted) and says 407, for a plain-http
//!   and a CONNECT (https) collector and an https vendor; nothing is lost: without the proxy, every event arrives.
//! - OTLP over HTTP goes through the proxy; OTLP over gRPC (tonic's own connector) and syslog
//!   never do, and the agent's start-up log and `check` say so.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::hec_emulator;
use crate::otlp_receiver::{Receiver, Transport};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, Sim, SimOptions, SimVendor};
use harness::agent::Agent;
use harness::pki::{Pki, make_pki};
use harness::sinks::connect_row;
use harness::*;
use hec_emulator::{HecEmulator, HecOptions};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

const RECORDS: usize = 60;
const LIMIT: Duration = Duration::from_secs(60);
const PROXY_USER: &str = "proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-s3cret-pw";

/// One request the proxy received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// `host:port` of a CONNECT, the absolute URI of a forwarded request.
    target: String,
    proxy_authorization: Option<String>,
}

#[derive(Clone, Debug)]
enum Mode {
    /// Tunnel and forward everything.
    Open,
    /// Only requests with this `Proxy-Authorization`; 407 for the others.
    Credentials(String),
    /// 407 for everything.
    Refuse,
}

struct Proxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    async fn start(mode: Mode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, mode.clone(), log.clone()));
            }
        });
        Proxy { addr, seen }
    }

    /// `http://[user:password@]127.0.0.1:PORT`.
    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("http://{user}:{password}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether any request went to `host_port` (a CONNECT to it, or a forwarded URI on it).
    fn saw(&self, host_port: &str) -> bool {
        self.seen().iter().any(|s| s.target == host_port || s.target.starts_with(&format!("http://{host_port}/")))
    }
}

/// One client connection: its request head, then a tunnel, a forwarded request or a 407.
async fn serve(mut client: TcpStream, mode: Mode, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = client.read(&mut chunk).await else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let rest = buf[head_end..].to_vec();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (request_line.next().unwrap_or_default(), request_line.next().unwrap_or_default());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let proxy_authorization = headers.iter().find(|(k, _)| k == "proxy-authorization").map(|(_, v)| v.clone());
    log.lock().unwrap().push(Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        proxy_authorization: proxy_authorization.clone(),
    });
    let allowed = match &mode {
        Mode::Open => true,
        Mode::Credentials(expected) => proxy_authorization.as_deref() == Some(expected.as_str()),
        Mode::Refuse => false,
    };
    if !allowed {
        let refusal = "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n\
                       Content-Length: 0\r\nConnection: close\r\n\r\n";
        let _ = client.write_all(refusal.as_bytes()).await;
        return;
    }
    if method == "CONNECT" {
        let Ok(mut upstream) = TcpStream::connect(target).await else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n").await;
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
        let _ = upstream.write_all(&rest).await;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        return;
    }
    // A forwarded request: origin-form to the target, one request per connection.
    let Ok(url) = url::Url::parse(target) else { return };
    let host_port = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(80));
    let Ok(mut upstream) = TcpStream::connect(&host_port).await else { return };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut forwarded = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &headers {
        if !matches!(name.as_str(), "proxy-authorization" | "proxy-connection" | "connection") {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    forwarded.push_str("connection: close\r\n\r\n");
    let _ = upstream.write_all(forwarded.as_bytes()).await;
    let _ = upstream.write_all(&rest).await;
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// A TLS server on 127.0.0.1 with the test PKI's certificate (`localhost`), each connection
/// forwarded to `upstream` in the clear.
async fn tls_front(pki: &Pki, upstream: SocketAddr) -> SocketAddr {
    let chain = rustls::pki_types::CertificateDer::pem_file_iter(&pki.server_cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                if let Ok(mut plain) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    addr
}

/// `Basic base64(user:password)`, as RFC 7617 writes it.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn sim() -> Sim {
    let mut opts = SimOptions::default();
    opts.aitronos.records = RECORDS;
    opts.faults.rate_limit = RateLimitSetting::Off;
    start_sim(opts, &Clock::system()).await
}

/// A configuration: the simulated Aitronos organization at `vendor_host` (its port kept) and
/// one HEC sink at `hec_url` (plus `hec_extra` lines).
fn write_config(dir: &Path, sim: &Sim, vendor_host: &str, hec_url: &str, hec_extra: &str) -> std::path::PathBuf {
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let extra = "start = \"2d\"\nmax_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }\n\
                 backoff = { initial = \"50ms\", max = \"100ms\" }";
    let block = source_block(sim, SimVendor::Aitronos, &org, "vendor", extra)
        .replace(&sim.base_url().to_string(), &format!("http://{vendor_host}:{}/", sim.addr().port()));
    let text = format!(
        "state_dir = {state:?}\n{block}\n[[sinks]]\nname = \"splunk\"\ntype = \"hec\"\nurl = {hec_url:?}\n\
         token = \"hec-test-token\"\nhostname = \"collector-1\"\ntimeout = \"5s\"\n\
         backoff = {{ initial = \"50ms\", max = \"200ms\" }}\n{hec_extra}\n",
        state = dir.join("state").display().to_string(),
    );
    let path = dir.join("auditrelay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The proxy variables for the agent's process: these, and every other spelling emptied (the
/// test runner's own environment must not decide the route).
fn proxy_env<'a>(set: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> =
        ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
            .into_iter()
            .filter(|name| !set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
            .map(|name| (name, ""))
            .collect();
    env.extend_from_slice(set);
    env
}

/// `auditrelay <args> -c config` with `env`, to its end: (status, stdout, stderr).
async fn auditrelay(args: &[&str], config: &Path, env: &[(&str, &str)]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(args)
        .arg("-c")
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `run --once` with `env` and `RUST_LOG` at `level`; its log once it has exited successfully.
async fn run_once(config: &Path, env: &[(&str, &str)], level: &str) -> String {
    let log = config.with_file_name("agent.log");
    let _ = std::fs::remove_file(&log);
    let mut env = env.to_vec();
    env.push(("RUST_LOG", level));
    let mut agent = Agent::spawn(&["run", "--once"], config, &log, &env);
    let status = agent.exit(LIMIT).await;
    assert!(status.success(), "run --once failed ({status}); its log ends:\n{}", agent.tail());
    agent.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_and_the_collector_are_reached_through_http_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim().await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    let proxy = Proxy::start(Mode::Open).await;
    let config = write_config(dir.path(), &sim, "127.0.0.1", &hec.url(), "");
    let proxy_url = proxy.url(None);
    run_once(&config, &proxy_env(&[("HTTP_PROXY", &proxy_url)]), "info").await;
    assert_eq!(hec.indexed().len(), RECORDS, "every record indexed");
    let vendor = format!("127.0.0.1:{}", sim.addr().port());
    let collector = hec.addr().to_string();
    assert!(proxy.saw(&vendor), "the vendor was not asked through the proxy: {:?}", proxy.seen());
    assert!(proxy.saw(&collector), "the collector was not reached through the proxy: {:?}", proxy.seen());
    let forwarded = proxy.seen().iter().filter(|s| s.target.starts_with("http://")).count() as u64;
    assert!(
        forwarded >= sim.stats().requests,
        "{} vendor requests, {forwarded} through the proxy",
        sim.stats().requests
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_reached_through_connect_with_the_proxys_credentials_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let sim = sim().await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    let front = tls_front(&pki, hec.addr()).await;
    let expected = basic(PROXY_USER, PROXY_PASSWORD);
    let proxy = Proxy::start(Mode::Credentials(expected.clone())).await;
    let hec_url = format!("https://localhost:{}", front.port());
    let ca = format!("ca_file = {:?}", pki.ca_pem.display().to_string());
    let config = write_config(dir.path(), &sim, "127.0.0.1", &hec_url, &ca);
    let proxy_url = proxy.url(Some((PROXY_USER, PROXY_PASSWORD)));
    let env = proxy_env(&[("HTTPS_PROXY", &proxy_url), ("http_proxy", &proxy_url)]);

    let log = run_once(&config, &env, "trace").await;
    assert_eq!(hec.indexed().len(), RECORDS, "every record indexed");
    let tunnel = format!("localhost:{}", front.port());
    let connects: Vec<Seen> = proxy.seen().into_iter().filter(|s| s.method == "CONNECT").collect();
    assert!(connects.iter().any(|s| s.target == tunnel), "no CONNECT {tunnel}: {:?}", proxy.seen());
    assert!(proxy.saw(&format!("127.0.0.1:{}", sim.addr().port())), "vendor not proxied: {:?}", proxy.seen());
    let seen = proxy.seen();
    let unauthenticated: Vec<&Seen> =
        seen.iter().filter(|s| s.proxy_authorization.as_deref() != Some(expected.as_str())).collect();
    assert!(unauthenticated.is_empty(), "requests without the proxy's credentials: {unauthenticated:?}");
    for secret in [PROXY_PASSWORD, &expected["Basic ".len()..]] {
        assert!(!log.contains(secret), "the proxy's credentials are in the agent's log at trace");
    }

    // `check` names the proxy, redacted, for both connections, and says how each goes.
    let (ok, stdout, stderr) = auditrelay(&["check", "--connect"], &config, &env).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(!stdout.contains(PROXY_PASSWORD) && !stderr.contains(PROXY_PASSWORD), "{stdout}{stderr}");
    let shown = format!("http://{}/", proxy.addr);
    for line in [
        format!(
            "# proxy: source vendor (http://127.0.0.1:{}/): through proxy {shown} (with credentials)",
            sim.addr().port()
        ),
        format!("# proxy: sink splunk (https://localhost:{}/): through proxy {shown} (with credentials)", front.port()),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("HTTPS_PROXY=http://REDACTED:REDACTED@{}/", proxy.addr)),
        "the variable, redacted: {stdout}"
    );
    assert!(stdout.contains("systemctl edit auditrelay"), "{stdout}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_no_proxy_names_is_reached_directly_and_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim().await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    let proxy = Proxy::start(Mode::Open).await;
    // The vendor as 127.0.0.1 (named by NO_PROXY), the collector as localhost (proxied).
    let hec_url = format!("http://localhost:{}", hec.addr().port());
    let config = write_config(dir.path(), &sim, "127.0.0.1", &hec_url, "");
    let proxy_url = proxy.url(None);
    let env = proxy_env(&[("http_proxy", &proxy_url), ("no_proxy", "127.0.0.1,.example.internal")]);
    run_once(&config, &env, "info").await;
    assert_eq!(hec.indexed().len(), RECORDS, "every record indexed");
    assert!(sim.stats().requests > 0);
    assert!(!proxy.saw(&format!("127.0.0.1:{}", sim.addr().port())), "NO_PROXY not honoured: {:?}", proxy.seen());
    assert!(proxy.saw(&format!("localhost:{}", hec.addr().port())), "collector not proxied: {:?}", proxy.seen());

    let (ok, stdout, _) = auditrelay(&["check", "--json"], &config, &env).await;
    assert!(ok, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let proxy_json = &report["proxy"];
    assert_eq!(proxy_json["variables"]["http_proxy"], format!("http://{}/", proxy.addr), "{proxy_json}");
    assert_eq!(proxy_json["variables"]["no_proxy"], "127.0.0.1,.example.internal", "{proxy_json}");
    let ways: Vec<(String, String)> = proxy_json["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["way"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(ways, [("vendor".to_owned(), "direct".to_owned()), ("splunk".to_owned(), "proxy".to_owned())]);
    assert!(proxy_json["connections"][0]["detail"].as_str().unwrap().contains("NO_PROXY"), "{proxy_json}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_answering_407_is_named_redacted_and_the_events_stay_queued() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let sim = sim().await;
    let hec = HecEmulator::start(HecOptions::default()).await;
    let proxy = Proxy::start(Mode::Refuse).await;
    let wrong = "wr0ng-proxy-pw";
    let proxy_url = proxy.url(Some(("alice", wrong)));
    // The proxy is named (its credentials never are), and that it refused those it was given.
    let shown = format!("the proxy http://{}/ refused the credentials", proxy.addr);
    // The vendor direct (NO_PROXY), the collector (plain http, as localhost) through the proxy.
    let hec_url = format!("http://localhost:{}", hec.addr().port());
    let config = write_config(dir.path(), &sim, "127.0.0.1", &hec_url, "");
    let env = proxy_env(&[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")]);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &env);
    agent.until("the sink's 407 logged", LIMIT, |a| a.count("answered 407") > 0).await;
    // Every record is collected and waits in the queue for the sink.
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let (_, stdout, _) = auditrelay(&["queue", "stats", "--json"], &config, &[]).await;
        let stats: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        if stats["sinks"][0]["backlog"] == RECORDS {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the records never all waited for the sink: {stdout}");
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agent.kill().await;
    let text = agent.log();
    let line = text.lines().find(|l| l.contains("answered 407")).unwrap();
    assert!(line.contains("Proxy Authentication Required") && line.contains(&shown), "{line}");
    assert!(!text.contains(wrong), "the proxy's password is in the log");
    assert!(hec.indexed().is_empty());
    assert!(proxy.saw(&format!("localhost:{}", hec.addr().port())));

    // `check --connect` too, for the plain-http and (through CONNECT) the https collector.
    let (ok, stdout, _) = auditrelay(&["check", "--connect"], &config, &env).await;
    assert!(!ok);
    let (result, detail) = connect_row(&stdout, "sink", "splunk");
    assert_eq!(result, "FAILED", "{detail}");
    assert!(detail.contains("407") && detail.contains(&shown) && !detail.contains(wrong), "{detail}");
    let front = tls_front(&pki, hec.addr()).await;
    let https = dir.path().join("https");
    std::fs::create_dir_all(&https).unwrap();
    let ca = format!("ca_file = {:?}", pki.ca_pem.display().to_string());
    let https_config = write_config(&https, &sim, "127.0.0.1", &format!("https://localhost:{}", front.port()), &ca);
    let env_https = proxy_env(&[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")]);
    let (ok, stdout, _) = auditrelay(&["check", "--connect"], &https_config, &env_https).await;
    assert!(!ok);
    let (result, detail) = connect_row(&stdout, "sink", "splunk");
    assert_eq!(result, "FAILED", "{detail}");
    assert!(detail.contains("407") && detail.contains(&shown) && !detail.contains(wrong), "{detail}");
    assert!(proxy.seen().iter().any(|s| s.method == "CONNECT"), "{:?}", proxy.seen());

    // A vendor over https behind the same proxy: its source's probe says so too.
    let vendor_front = tls_front(&pki, sim.addr()).await;
    let vendor_dir = dir.path().join("vendor-https");
    std::fs::create_dir_all(&vendor_dir).unwrap();
    let vendor_config = write_config(&vendor_dir, &sim, "localhost", &hec.url(), "");
    let text = std::fs::read_to_string(&vendor_config)
        .unwrap()
        .replace(
            &format!("http://localhost:{}/", sim.addr().port()),
            &format!("https://localhost:{}/", vendor_front.port()),
        )
        .replacen("[[sinks]]", &format!("{ca}\n[[sinks]]"), 1);
    std::fs::write(&vendor_config, text).unwrap();
    let (ok, stdout, _) = auditrelay(&["check", "--connect"], &vendor_config, &env_https).await;
    assert!(!ok);
    let (result, detail) = connect_row(&stdout, "source", "vendor");
    assert_eq!(result, "FAILED", "{detail}");
    assert!(detail.contains("407") && detail.contains(&shown) && !detail.contains(wrong), "{detail}");

    // Nothing was lost: the same state, without the proxy, delivers every record.
    run_once(&config, &proxy_env(&[]), "info").await;
    assert_eq!(hec.indexed().len(), RECORDS, "every record indexed once the proxy is out of the way");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_http_uses_the_proxy_grpc_and_syslog_never_do_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim().await;
    let receiver = Receiver::start(None).await;
    let proxy = Proxy::start(Mode::Open).await;
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let extra = "start = \"2d\"\nmax_span = \"3d\"\nrate_limit = { requests = 50, per = \"1s\" }";
    let block = source_block(&sim, SimVendor::Aitronos, &org, "vendor", extra);
    let sinks = format!(
        "[[sinks]]\nname = \"otlp-http\"\ntype = \"otlp\"\nprotocol = \"http_protobuf\"\nendpoint = {http:?}\n\
         [[sinks]]\nname = \"otlp-grpc\"\ntype = \"otlp\"\nprotocol = \"grpc\"\nendpoint = {grpc:?}\n",
        http = receiver.http_url(),
        grpc = receiver.grpc_url(),
    );
    let state = dir.path().join("state").display().to_string();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, format!("state_dir = {state:?}\n{block}\n{sinks}")).unwrap();
    let proxy_url = proxy.url(None);
    // The vendor direct; both OTLP endpoints are http URLs on 127.0.0.1 a proxy would apply to.
    let env = proxy_env(&[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "localhost")]);
    let log = run_once(&config.clone(), &env, "info").await;

    let records = |transport: Transport| -> usize {
        let exports = receiver.exports();
        let requests = exports.iter().filter(|e| e.transport == transport);
        requests.flat_map(|e| &e.request.resource_logs).flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum()
    };
    assert_eq!((records(Transport::HttpProtobuf), records(Transport::Grpc)), (RECORDS, RECORDS));
    let http_addr = receiver.http_url().trim_start_matches("http://").to_owned();
    let grpc_addr = receiver.grpc_url().trim_start_matches("http://").to_owned();
    assert!(proxy.saw(&http_addr), "OTLP/HTTP did not go through the proxy: {:?}", proxy.seen());
    assert!(!proxy.saw(&grpc_addr), "gRPC went through the proxy: {:?}", proxy.seen());
    let warning = log.lines().find(|l| l.contains("OTLP/gRPC connects directly")).unwrap_or_else(|| panic!("{log}"));
    assert!(warning.contains("WARN") && warning.contains("http_protobuf"), "{warning}");

    // `check` says which connections never use a proxy, and why.
    let syslog = "[[sinks]]\nname = \"syslog\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\n";
    std::fs::write(&config, format!("state_dir = {state:?}\n{block}\n{sinks}{syslog}")).unwrap();
    let (ok, stdout, _) = auditrelay(&["check", "--json"], &config, &env).await;
    assert!(ok, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let connections = report["proxy"]["connections"].as_array().unwrap().clone();
    let way = |name: &str| {
        let c = connections.iter().find(|c| c["name"] == name).unwrap();
        (c["way"].as_str().unwrap().to_owned(), c["detail"].as_str().unwrap().to_owned())
    };
    assert_eq!(way("otlp-http").0, "proxy");
    let (grpc_way, grpc_detail) = way("otlp-grpc");
    assert_eq!(grpc_way, "never");
    assert!(grpc_detail.contains("OTLP/gRPC") && grpc_detail.contains("http_protobuf"), "{grpc_detail}");
    let (syslog_way, syslog_detail) = way("syslog");
    assert_eq!((syslog_way.as_str(), syslog_detail.contains("not HTTP")), ("never", true), "{syslog_detail}");
    sim.shutdown().await;
}
