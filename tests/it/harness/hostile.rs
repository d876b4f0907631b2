//! A hostile vendor for `tests/it/hostile.rs` (and the rate-limit, reload and rotation tests).
//!
//! The vendor is raw HTTP/1.1 over tokio TCP on 127.0.0.1 (loopback only, ever), so every byte,
//! pause and close is the test's choice: one connection per request (`Connection: close`), the
//! answer chosen by the test's handler from the request's number, path and query. It records
//! when each request arrived, when its answer's head was sent, how many body bytes the agent took
//! and whether the agent hung up before the end.
//!
//! The agent run against it is `harness::agent::Agent`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Request {
    /// 0-based, in order of arrival.
    pub n: usize,
    pub path: String,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
}

impl Request {
    pub fn param(&self, name: &str) -> &str {
        self.query.get(name).map_or("", String::as_str)
    }

    /// A time parameter (RFC 3339).
    pub fn time(&self, name: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(self.param(name))
            .unwrap_or_else(|e| panic!("request {} has no RFC 3339 `{name}` ({e}): {:?}", self.n, self.query))
            .with_timezone(&Utc)
    }
}

/// A test's answer to one request.
pub enum Reply {
    /// Status, headers and body, the head sent at once.
    Answer { status: u16, headers: Vec<(String, String)>, body: Body },
    /// Waits until the gate opens, then answers.
    Gated(Gate, Box<Reply>),
    /// `head` at once, then `rest` one byte at a time, one every `every` (a slow drip).
    Drip { head: Vec<u8>, rest: Vec<u8>, every: Duration },
}

pub enum Body {
    /// Sent with its `Content-Length`.
    Full(Vec<u8>),
    /// `prefix`, then `piece` `times` times (`u64::MAX`: without end), with this
    /// `Content-Length` (which need not be true) or none (the body ends when the connection does).
    Repeat { prefix: Vec<u8>, piece: Bytes, times: u64, content_length: Option<u64> },
}

/// 200 with a JSON body.
pub fn json(body: Vec<u8>) -> Reply {
    Reply::Answer {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Body::Full(body),
    }
}

/// A status with headers and a short body.
pub fn status(status: u16, headers: &[(&str, String)], body: &str) -> Reply {
    let headers = headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
    Reply::Answer { status, headers, body: Body::Full(body.as_bytes().to_vec()) }
}

/// A gate a [`Reply::Gated`] waits for; the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Gate {
    fn default() -> Self {
        Gate(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Gate {
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// How an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Still being sent (or waiting at a gate).
    Open,
    /// Every byte was written.
    Complete,
    /// The agent closed the connection before the end.
    ClientGone,
}

/// What the vendor saw of one request and its answer.
#[derive(Debug, Clone)]
pub struct Served {
    pub request: Request,
    pub arrived: Instant,
    pub arrived_wall: SystemTime,
    pub status: u16,
    /// Just before the answer's head was written (`None` until it was): the agent cannot have
    /// read it earlier, so a wait measured from here is never longer than the agent's own.
    pub head_sent: Option<Instant>,
    /// Body bytes written (the agent's socket took them).
    pub body_bytes: u64,
    pub end: End,
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

pub struct Hostile {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Served>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Serves on 127.0.0.1 (a free port), answering every request with `handler`.
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Served>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else { return };
                    tokio::spawn(serve(socket, Arc::clone(&handler), Arc::clone(&log)));
                }
            }
        });
        Hostile { addr, log, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn log(&self) -> Vec<Served> {
        self.log.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut socket: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Served>>>) {
    let Some(request) = read_request(&mut socket).await else { return };
    let (arrived, arrived_wall) = (Instant::now(), SystemTime::now());
    let path = request.0;
    let query = url::form_urlencoded::parse(request.1.as_bytes()).into_owned().collect();
    let index = {
        let mut log = log.lock().unwrap();
        let n = log.len();
        let request = Request { n, path, query };
        log.push(Served { request, arrived, arrived_wall, status: 0, head_sent: None, body_bytes: 0, end: End::Open });
        n
    };
    let request = log.lock().unwrap()[index].request.clone();
    let mut reply = handler(&request);
    while let Reply::Gated(gate, inner) = reply {
        gate.passed().await;
        reply = *inner;
    }
    let entry = Entry { log: Arc::clone(&log), index };
    let end = match reply {
        Reply::Gated(..) => unreachable!("gates are passed above"),
        Reply::Answer { status, headers, body } => {
            let length = match &body {
                Body::Full(b) => Some(b.len() as u64),
                Body::Repeat { content_length, .. } => *content_length,
            };
            let mut head = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Some(length) = length {
                head.push_str(&format!("Content-Length: {length}\r\n"));
            }
            head.push_str("\r\n");
            entry.update(|s| s.status = status);
            // Taken before the write: the agent may read the head (and start its wait) before
            // this task is scheduled again after `write_all`, so an instant taken after it can be
            // late by however long the machine kept this task waiting.
            let sent = Instant::now();
            if socket.write_all(head.as_bytes()).await.is_err() {
                End::ClientGone
            } else {
                entry.update(|s| s.head_sent = Some(sent));
                write_body(&mut socket, body, &entry).await
            }
        }
        Reply::Drip { head, rest, every } => {
            let status = std::str::from_utf8(&head).ok().and_then(|h| h.get(9..12)?.parse().ok()).unwrap_or(0);
            entry.update(|s| s.status = status);
            let mut end = End::Complete;
            if socket.write_all(&head).await.is_err() {
                end = End::ClientGone;
            }
            for byte in rest {
                if end != End::Complete {
                    break;
                }
                tokio::time::sleep(every).await;
                match socket.write_all(&[byte]).await.and(socket.flush().await) {
                    Ok(()) => entry.update(|s| s.body_bytes += 1),
                    Err(_) => end = End::ClientGone,
                }
            }
            end
        }
    };
    if end == End::Complete {
        let _ = socket.shutdown().await;
    }
    entry.update(|s| s.end = end);
}

/// One request's line in the log.
struct Entry {
    log: Arc<Mutex<Vec<Served>>>,
    index: usize,
}

impl Entry {
    fn update(&self, f: impl FnOnce(&mut Served)) {
        f(&mut self.log.lock().unwrap()[self.index]);
    }
}

async fn write_body(socket: &mut TcpStream, body: Body, entry: &Entry) -> End {
    let (prefix, piece, times) = match body {
        Body::Full(b) => (b, Bytes::new(), 0),
        Body::Repeat { prefix, piece, times, .. } => (prefix, piece, times),
    };
    if socket.write_all(&prefix).await.is_err() {
        return End::ClientGone;
    }
    let n = prefix.len() as u64;
    entry.update(|s| s.body_bytes += n);
    let mut i = 0u64;
    while i < times {
        if socket.write_all(&piece).await.is_err() {
            return End::ClientGone;
        }
        let n = piece.len() as u64;
        entry.update(|s| s.body_bytes += n);
        i += 1;
    }
    End::Complete
}

/// Reads a request head (and discards a body it announces): `(path, query)`.
async fn read_request(socket: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - end;
    while have < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    let target = head.split(' ').nth(1)?.to_owned();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    Some((path.to_owned(), query.to_owned()))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// RFC 3339 with `Z`, whole milliseconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An Aitronos record (vendors README §4.5) that maps cleanly to OCSF.
pub fn aitronos_record(id: &str, time: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "entity_type": "department",
        "entity_id": format!("DEPT_{id}"),
        "entity_name": "Data Platform",
        "action_type": "created",
        "actor_id": "usr_8Hq2LmN4pR7sT1vX",
        "actor_name": "Lena Fischer",
        "actor_email": "lena.fischer@example.ch",
        "target_id": null,
        "target_name": null,
        "previous_value": null,
        "new_value": null,
        "metadata": { "source": "web_ui" },
        "organization_id": ORG,
        "department_id": null,
        "created_at": rfc3339(time),
    })
}

/// An Aitronos page envelope (§4.4) around these items.
pub fn aitronos_page(items: &[serde_json::Value], skip: usize, limit: usize, has_more: bool) -> Vec<u8> {
    let body = serde_json::json!({
        "items": items,
        "total": skip + items.len() + usize::from(has_more),
        "skip": skip,
        "limit": limit,
        "has_more": has_more,
    });
    serde_json::to_vec(&body).unwrap()
}

/// The page of `records` the request asks for (`skip`/`limit`), as Aitronos pages.
pub fn aitronos_answer(request: &Request, records: &[serde_json::Value]) -> Reply {
    let skip: usize = request.param("skip").parse().unwrap_or(0);
    let limit: usize = request.param("limit").parse().unwrap_or(100);
    let items: Vec<_> = records.iter().skip(skip).take(limit).cloned().collect();
    json(aitronos_page(&items, skip, limit, skip + items.len() < records.len()))
}

/// An Astronomer record line (§2.5) at `time`, told apart by `n`.
pub fn astronomer_line(n: usize, time: DateTime<Utc>) -> String {
    serde_json::json!({
        "subjectId": format!("clr8k2m9f{n:016}"),
        "subjectType": "USER",
        "organizationId": ORG,
        "timestamp": rfc3339(time),
        "sourceIp": "198.51.100.37",
        "userAgent": "astro-cli/1.29.0",
        "method": "POST",
        "path": format!("/v1alpha1/organizations/{ORG}/invites/{n}"),
        "requestId": format!("4f0c9a7e-2b1d-4c6e-9a3f-{n:012}"),
        "responseStatus": 200,
    })
    .to_string()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// Astronomer's answer for the request's window: the lines whose time is inside it, gzipped.
pub fn astronomer_answer(request: &Request, lines: &[(DateTime<Utc>, String)]) -> Reply {
    let (from, to) = (request.time("startDate"), request.time("endDate"));
    let body: String = lines.iter().filter(|(t, _)| *t >= from && *t < to).map(|(_, l)| format!("{l}\n")).collect();
    gzipped(gzip(body.as_bytes()))
}

/// 200, `Content-Type: application/x-ndjson`, `Content-Encoding: gzip`, this body.
pub fn gzipped(body: Vec<u8>) -> Reply {
    Reply::Answer {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/x-ndjson".into()),
            ("Content-Encoding".into(), "gzip".into()),
        ],
        body: Body::Full(body),
    }
}

/// The organization every test uses.
pub const ORG: &str = "ORG_HOSTILE0000000001";

/// The name of the one source of every test.
pub const SOURCE: &str = "hostile";

/// A configuration: `top` lines (tables such as `[telemetry]`), one source named [`SOURCE`]
/// with these lines, a file sink into `dir`.
pub fn write_config(dir: &Path, top: &str, source_lines: &str) -> PathBuf {
    let text = format!(
        "state_dir = {state:?}\n{top}\n\n[[sources]]\nname = {SOURCE:?}\n{source_lines}\n\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.join("state").display().to_string(),
        out = super::out_path(dir).display().to_string(),
    );
    let path = dir.join("auditrelay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An Aitronos source table's lines against `vendor`: one window (2 days, `max_span` 3 days),
/// pages of 5, no proactive limit in the way, quick back-off; `extra` lines last.
pub fn aitronos_source(vendor: &Hostile, extra: &str) -> String {
    format!(
        "vendor = \"aitronos\"\norganization_id = {ORG:?}\napi_key = \"ak_hostile_test\"\nbase_url = {base:?}\n\
         start = \"2d\"\nmax_span = \"3d\"\npage_size = 5\nrate_limit = {{ requests = 1000, per = \"1s\" }}\n\
         backoff = {{ initial = \"10ms\", max = \"100ms\" }}\n{extra}",
        base = vendor.base_url(),
    )
}

/// An Astronomer source table's lines against `vendor`: one window of the last 2 hours, no
/// proactive limit in the way, quick back-off; `extra` lines last.
pub fn astronomer_source(vendor: &Hostile, extra: &str) -> String {
    format!(
        "vendor = \"astronomer\"\norganization_id = {ORG:?}\nbearer_token = \"astro_hostile_test\"\n\
         base_url = {base:?}\nstart = \"2h\"\nrate_limit = {{ requests = 1000, per = \"1s\" }}\n\
         backoff = {{ initial = \"10ms\", max = \"100ms\" }}\n{extra}",
        base = vendor.base_url(),
    )
}
