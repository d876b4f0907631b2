//! Adversarial review ra of issue 20 (vendor definitions): each test reproduces one finding on
//! the real binary against a small hostile vendor on loopback. They fail on the code reviewed.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::harness::agent::{Agent, until};

/// A link-paged definition with a custom credential header (`X-Api-Key`).
const LINK_DEF: &str = r#"
[vendor]
name = "hostilelink"
vendor_name = "Hostile"
product = "Hostile Log"

[window]
max_span = "1d"
overlap = "5m"
poll_interval = "1s"

[request]
path = "/logs"
query = { since = "{from}", until = "{to}", limit = "{page_size}" }

[paging]
kind = "link"
page_size = 10

[auth]
kind = "header"
header = "X-Api-Key"

[answer]
id = "/id"
time = "/t"
order = "oldest_first"

[rate_limit]
requests = 600
per = "1m"

[ocsf]
action = "/a"
"#;

/// What a raw vendor answers to one request head: bytes to write, or `None` to hang.
type Handler = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// A raw HTTP/1.1 vendor on 127.0.0.1 that records every request head (headers included).
struct Raw {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Raw {
    async fn start(handler: Handler) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let seen = seen.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    seen.lock().unwrap().push(head.clone());
                    match handler(&head) {
                        Some(answer) => {
                            let _ = sock.write_all(&answer).await;
                            let _ = sock.shutdown().await;
                        }
                        None => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                });
            }
        });
        Raw { port, heads, task }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn answer(status: u16, extra: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nConnection: close\r\n");
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

fn write_config(dir: &Path, base: &str, token: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("defs")).unwrap();
    std::fs::write(dir.join("defs/hostile.toml"), LINK_DEF).unwrap();
    let text = format!(
        "state_dir = {state:?}\nvendors_dir = \"defs\"\n\n[[sources]]\nname = \"h\"\nvendor = \"hostilelink\"\n\
         organization_id = \"acme\"\ntoken = {token:?}\nbase_url = {base:?}\nstart = \"1h\"\n\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.join("state").display().to_string(),
        out = dir.join("events.ndjson").display().to_string(),
    );
    let path = dir.join("auditrelay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Finding 1 (leak): a `link`/`next_url` sweep's next URL is stored in the checkpoint and asked
/// again as stored after a restart, with no origin check against the source's *current*
/// `base_url`. An operator who moves a source to another origin (a mistyped tenant host fixed,
/// a vendor region move) and rotates the token has the NEW token sent to the OLD origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_next_url_is_not_asked_on_the_old_origin_after_base_url_moves() {
    let dir = tempfile::tempdir().unwrap();
    let old_port = Arc::new(Mutex::new(0u16));
    let port_for_handler = old_port.clone();
    // The old origin: page 1 of the window with a Link to page 2 (on the old origin, as it
    // must be), then page 2 hangs while the agent is stopped; afterwards it answers 503.
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hang_h = hang.clone();
    let old = Raw::start(Arc::new(move |head: &str| {
        let port = *port_for_handler.lock().unwrap();
        if head.contains("page=2") {
            if hang_h.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            return Some(answer(503, &[], b"{}"));
        }
        let t = chrono::Utc::now() - chrono::Duration::minutes(30);
        let body = serde_json::json!([{ "id": "r1", "t": t.to_rfc3339(), "a": "user.login" }]).to_string();
        let link = format!("<http://127.0.0.1:{port}/logs?page=2>; rel=\"next\"");
        Some(answer(200, &[("Link", link)], body.as_bytes()))
    }))
    .await;
    *old_port.lock().unwrap() = old.port;
    let new = Raw::start(Arc::new(|_head: &str| Some(answer(200, &[], b"[]")))).await;

    let config = write_config(dir.path(), &old.base(), "OLD-TOKEN");
    let mut agent = Agent::start(&config, false);
    // Page 1 stored (its event delivered) and page 2 asked: the checkpoint holds the next URL.
    agent
        .until("page 2 asked on the old origin", Duration::from_secs(30), |_| {
            old.heads().iter().any(|h| h.contains("page=2"))
        })
        .await;
    agent
        .until("page 1 delivered", Duration::from_secs(30), |_| {
            std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap_or_default().lines().count() == 1
        })
        .await;
    agent.kill().await;
    hang.store(false, std::sync::atomic::Ordering::SeqCst);

    // The operator moves the source to the new origin with a new token.
    let config = write_config(dir.path(), &new.base(), "NEW-TOKEN");
    let mut agent = Agent::start(&config, false);
    until("the restarted agent asks a vendor", Duration::from_secs(30), || {
        old.heads().iter().any(|h| h.contains("NEW-TOKEN")) || !new.heads().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaked: Vec<String> = old.heads().into_iter().filter(|h| h.contains("NEW-TOKEN")).collect();
    let log = agent.tail();
    agent.kill().await;
    assert!(
        leaked.is_empty(),
        "the new credential was sent to the old origin {} (not the source's base_url {}):\n{}\nagent log:\n{log}",
        old.base(),
        new.base(),
        leaked.join("\n---\n")
    );
}

/// Finding 2 (memory): a defined vendor's JSON answer is parsed whole into a `serde_json::Value`
/// before the item cap applies (`runtime::read_answer`), unlike the built-in vendors' streaming
/// `Items` (whose docs say "a 4 MB page of `[1,1,…]` is two million items"). A 16 MiB page of
/// `[1,1,…]` (8 million items, 32 bytes each as a `Value`) raises the agent's memory by
/// hundreds of MB; at the 64 MiB body cap, over a GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_millions_of_tiny_items_does_not_raise_memory_past_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut bomb = Vec::with_capacity(16 << 20);
    bomb.push(b'[');
    while bomb.len() < (16 << 20) - 2 {
        bomb.extend_from_slice(b"1,");
    }
    bomb.extend_from_slice(b"1]");
    let bomb = Arc::new(bomb);
    let served = bomb.clone();
    let vendor = Raw::start(Arc::new(move |_head: &str| Some(answer(200, &[], &served)))).await;
    let config = write_config(dir.path(), &vendor.base(), "T");
    let mut agent = Agent::start(&config, false);
    agent
        .until("the page refused as malformed", Duration::from_secs(60), |a| {
            a.log().contains("not a page") || a.log().contains("items on a page")
        })
        .await;
    let peak = agent.peak_rss();
    let log = agent.tail();
    agent.kill().await;
    // The body itself (16 MiB) plus a generous 64 MiB for everything else.
    let bound = (16 + 64) << 20;
    assert!(
        peak < bound,
        "a 16 MiB answer of tiny items raised the agent's peak RSS to {} MiB (bound {} MiB)\nagent log:\n{log}",
        peak >> 20,
        bound >> 20
    );
}

/// A cursor-paged definition that sends the cursor in a header (`X-Cursor: {cursor}`), as some
/// vendors want it.
fn cursor_def() -> String {
    LINK_DEF
        .replace("kind = \"link\"", "kind = \"cursor\"\ncursor = \"/next\"")
        .replace("path = \"/logs\"", "path = \"/logs\"\nheaders = { \"X-Cursor\" = \"{cursor}\" }")
        .replace("id = \"/id\"", "records = \"/items\"\nid = \"/id\"")
        .replace("name = \"hostilelink\"", "name = \"hostilecursor\"")
}

/// Finding 3 (misleading): `auditrelay vendors check` (and so `auditrelay check`) accepts a
/// header template whose literal text no HTTP header value can carry (CR/LF), though it refuses
/// the same characters in `auth.prefix`; the source then fails every request with "cannot
/// build the request" ("operator action needed") at run time.
#[test]
fn check_refuses_a_header_template_no_header_can_carry() {
    let dir = tempfile::tempdir().unwrap();
    let def =
        LINK_DEF.replace("path = \"/logs\"", "path = \"/logs\"\nheaders = { \"X-A\" = \"a\\r\\nX-Injected: 1\" }");
    let path = dir.path().join("crlf.toml");
    std::fs::write(&path, def).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["vendors", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "a header value holding CR/LF passed the check:\n{text}");
    assert!(text.contains("request.headers.X-A"), "the error does not name the key:\n{text}");
}

/// Finding 4 (stall): a vendor's cursor is stored in the checkpoint with its page before it is
/// known to be sendable. A cursor holding CR/LF, placed in a header by the definition, makes
/// every later request of the source fail to build (`Attempt::Fatal`, "operator action needed",
/// retried only after `backoff.max`); the stored cursor survives restarts, so even after the
/// vendor answers cleanly again the source never asks anything: no restart or vendor fix
/// unsticks it, only editing the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_cursor_no_header_can_carry_does_not_stall_the_source_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let bad_h = bad.clone();
    let vendor = Raw::start(Arc::new(move |head: &str| {
        let t = chrono::Utc::now() - chrono::Duration::minutes(30);
        if head.to_ascii_lowercase().contains("x-cursor:") {
            return Some(answer(200, &[], br#"{"items":[]}"#));
        }
        let cursor = if bad_h.load(std::sync::atomic::Ordering::SeqCst) { "c2\r\nX-Evil: 1" } else { "c2" };
        let body = serde_json::json!({ "items": [{ "id": "r1", "t": t.to_rfc3339(), "a": "x" }], "next": cursor });
        Some(answer(200, &[], body.to_string().as_bytes()))
    }))
    .await;
    std::fs::create_dir_all(dir.path().join("defs")).unwrap();
    let config = write_config(dir.path(), &vendor.base(), "T");
    std::fs::remove_file(dir.path().join("defs/hostile.toml")).unwrap();
    std::fs::write(dir.path().join("defs/cursor.toml"), cursor_def()).unwrap();
    let text = std::fs::read_to_string(&config).unwrap().replace("\"hostilelink\"", "\"hostilecursor\"");
    std::fs::write(&config, text).unwrap();

    let mut agent = Agent::start(&config, false);
    agent
        .until("the request with the vendor's cursor fails", Duration::from_secs(30), |a| {
            // Before the fix: the stored cursor's request failed to build; after it, the page
            // holding that cursor is malformed when read, so the cursor is never stored.
            a.log().contains("cannot build the request")
                || a.log().contains("holds characters an HTTP header value cannot")
        })
        .await;
    agent.kill().await;
    // The vendor is fixed (it would give a clean cursor now); the agent restarts.
    bad.store(false, std::sync::atomic::Ordering::SeqCst);
    let before = vendor.heads().len();
    let mut agent = Agent::start(&config, false);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = vendor.heads().len();
    let log = agent.tail();
    agent.kill().await;
    assert!(
        after > before,
        "after a restart the source asked the vendor nothing for 8 s: the stored cursor stalls it for ever\n\
         agent log:\n{log}"
    );
}

/// Finding 5 (misleading): a reload restarts every OAuth2 defined source even when nothing
/// changed: the source's fingerprint is its settings' `Debug` text, which holds
/// `TokenCache { fetched: N }`, a counter the running source raises with its first token. Every
/// SIGHUP (logrotate's postrotate) stops each such source mid-sweep and fetches a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_oauth2_source_is_not_restarted_by_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Raw::start(Arc::new(|head: &str| {
        if head.starts_with("POST /token") {
            let body = br#"{"access_token":"AT-1","token_type":"Bearer","expires_in":3600}"#;
            return Some(answer(200, &[], body));
        }
        Some(answer(200, &[], b"[]"))
    }))
    .await;
    std::fs::create_dir_all(dir.path().join("defs")).unwrap();
    let def = LINK_DEF
        .replace("kind = \"header\"\nheader = \"X-Api-Key\"", "kind = \"oauth2\"\ntoken_url = \"/token\"")
        .replace("name = \"hostilelink\"", "name = \"hostileoauth\"");
    std::fs::write(dir.path().join("defs/oauth.toml"), def).unwrap();
    let text = format!(
        "state_dir = {state:?}\nvendors_dir = \"defs\"\n\n[[sources]]\nname = \"o\"\nvendor = \"hostileoauth\"\n\
         organization_id = \"acme\"\nclient_id = \"cid\"\nclient_secret = \"csecret\"\nbase_url = {base:?}\n\
         start = \"1h\"\n\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.path().join("state").display().to_string(),
        base = vendor.base(),
        out = dir.path().join("events.ndjson").display().to_string(),
    );
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(&config, text).unwrap();
    let mut agent = Agent::start(&config, false);
    agent
        .until("the vendor asked with a token", Duration::from_secs(30), |_| {
            vendor.heads().iter().any(|h| h.starts_with("GET /logs"))
        })
        .await;
    let sent = std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
    assert!(sent.success());
    agent.until("the reload", Duration::from_secs(30), |a| a.log().contains("configuration reloaded")).await;
    let line = agent.lines_with(&["configuration reloaded"]).join("\n");
    let tokens = vendor.heads().iter().filter(|h| h.starts_with("POST /token")).count();
    agent.kill().await;
    assert!(
        line.contains("restarted_sources=0"),
        "an unchanged configuration's reload restarted the OAuth2 source: {line} ({tokens} token requests)"
    );
}

/// The query parameter `name` of a request head's target, decoded.
fn param(head: &str, name: &str) -> Option<String> {
    let target = head.split_whitespace().nth(1)?;
    let url = url::Url::parse(&format!("http://x{target}")).ok()?;
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Finding 6 (loss, a documented trade-off worth naming): with `stop_on_empty = true` (the
/// shipped okta.toml sets it) an empty page that carries a next link ends the window wherever
/// it comes, and the checkpoint moves to the window's end: records on the pages after an empty
/// one in the middle of a window are never asked (the overlap is minutes, the window a day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_in_the_middle_of_a_window_does_not_lose_the_pages_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = chrono::Utc::now() - chrono::Duration::minutes(40);
    let t3 = chrono::Utc::now() - chrono::Duration::minutes(20);
    let port = Arc::new(Mutex::new(0u16));
    let port_h = port.clone();
    let vendor = Raw::start(Arc::new(move |head: &str| {
        let port = *port_h.lock().unwrap();
        let link = |p: u32| vec![("Link", format!("<http://127.0.0.1:{port}/logs?p={p}>; rel=\"next\""))];
        match param(head, "p").as_deref() {
            Some("2") => return Some(answer(200, &link(3), b"[]")),
            Some("3") => {
                let body = serde_json::json!([{ "id": "r3", "t": t3.to_rfc3339(), "a": "x" }]).to_string();
                return Some(answer(200, &[], body.as_bytes()));
            }
            _ => {}
        }
        let since = param(head, "since").and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok());
        let until = param(head, "until").and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok());
        match (since, until) {
            (Some(s), Some(u)) if s <= t1 && t1 < u => {
                let body = serde_json::json!([{ "id": "r1", "t": t1.to_rfc3339(), "a": "x" }]).to_string();
                Some(answer(200, &link(2), body.as_bytes()))
            }
            _ => Some(answer(200, &[], b"[]")),
        }
    }))
    .await;
    *port.lock().unwrap() = vendor.port;
    std::fs::create_dir_all(dir.path().join("defs")).unwrap();
    let config = write_config(dir.path(), &vendor.base(), "T");
    let def = LINK_DEF.replace("page_size = 10", "page_size = 10\nstop_on_empty = true");
    std::fs::write(dir.path().join("defs/hostile.toml"), def).unwrap();
    let mut agent = Agent::start(&config, false);
    let out = dir.path().join("events.ndjson");
    agent
        .until("r1 delivered", Duration::from_secs(30), |_| {
            std::fs::read_to_string(&out).unwrap_or_default().contains("r1")
        })
        .await;
    // Several more windows (poll_interval 1s): r3 is never asked again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let delivered = std::fs::read_to_string(&out).unwrap_or_default();
    let asked: Vec<String> = vendor.heads().iter().map(|h| h.lines().next().unwrap_or_default().to_owned()).collect();
    agent.kill().await;
    assert!(
        delivered.contains("\"r3\""),
        "r3 (page 3 of the window, after an empty page 2 with a next link) was never delivered; requests:\n{}",
        asked.join("\n")
    );
}

/// Finding 7 (loss): a JSON answer without the `answer.records` member (or with it `null`) is
/// read as an empty page (`runtime::read_answer`: "an empty result some vendors write as an
/// absent list"), so any 200 whose JSON is something else (`{"ok":false,"error":"…"}`, a
/// proxy's or gateway's JSON error, a maintenance notice) ends the window as complete and the
/// checkpoint moves past records the vendor never gave: they are never asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_json_error_without_the_records_member_does_not_complete_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let t1 = chrono::Utc::now() - chrono::Duration::minutes(40);
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let first_h = first.clone();
    let vendor = Raw::start(Arc::new(move |head: &str| {
        if first_h.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Some(answer(200, &[], br#"{"ok":false,"error":"internal_error"}"#));
        }
        let since = param(head, "since").and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok());
        let until = param(head, "until").and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok());
        let items = match (since, until) {
            (Some(s), Some(u)) if s <= t1 && t1 < u => {
                serde_json::json!([{ "id": "r1", "t": t1.to_rfc3339(), "a": "x" }])
            }
            _ => serde_json::json!([]),
        };
        Some(answer(200, &[], serde_json::json!({ "ok": true, "items": items }).to_string().as_bytes()))
    }))
    .await;
    std::fs::create_dir_all(dir.path().join("defs")).unwrap();
    let config = write_config(dir.path(), &vendor.base(), "T");
    let def = LINK_DEF.replace("id = \"/id\"", "records = \"/items\"\nid = \"/id\"");
    std::fs::write(dir.path().join("defs/hostile.toml"), def).unwrap();
    let mut agent = Agent::start(&config, false);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let delivered = std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap_or_default();
    let asked: Vec<String> = vendor.heads().iter().map(|h| h.lines().next().unwrap_or_default().to_owned()).collect();
    let log = agent.tail();
    agent.kill().await;
    assert!(
        delivered.contains("\"r1\""),
        "r1 was never delivered: the JSON error answer completed its window; requests:\n{}\nagent log:\n{log}",
        asked.join("\n")
    );
}

/// Finding 8 (leak risk / misleading): the format says `auth.token_url` is "an absolute https
/// URL" (and `vendor.base_url` https), yet a definition whose token endpoint is plain http on
/// another host passes `vendors check`: the OAuth2 client secret (HTTP Basic by default) would
/// then cross the network in clear text, by a definition file the operator only installed.
#[test]
fn check_refuses_a_plain_http_token_url_on_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let def = LINK_DEF.replace(
        "kind = \"header\"\nheader = \"X-Api-Key\"",
        "kind = \"oauth2\"\ntoken_url = \"http://collector.example.net/token\"",
    );
    let path = dir.path().join("plain.toml");
    std::fs::write(&path, def).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["vendors", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "a plain-http token_url on another host passed the check:\n{text}");
}

/// Finding 9 (memory leak): each edited definition file read by a reload is leaked for the
/// process's life (`registry::intern`, `Box::leak` per path+digest), its compiled regexes
/// included. The module docs call that leak "small, bounded by the 256 KiB file cap", but a
/// 43 KB definition of 500 rules like `(?i)^\w{5}x0$` (each under the 256 KiB compiled cap)
/// holds ~150 MB: every edit + SIGHUP adds that much again, without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_an_edited_definition_does_not_leak_its_compiled_rules() {
    let dir = tempfile::tempdir().unwrap();
    let vendor = Raw::start(Arc::new(|_head: &str| Some(answer(200, &[], b"[]")))).await;
    let config = write_config(dir.path(), &vendor.base(), "T");
    let rules_of = |n: usize| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "\n[[ocsf.rules]]\nregex = \"(?i)^\\\\w{{5}}x{i}$\"\nclass = \"api_activity\"\nactivity = \"other\"\n"
                )
            })
            .collect()
    };
    // 500 such rules (150 MiB compiled one by one before the fix) are refused by check now: the
    // regexes of a definition are one set with a cap. As many as fit are what a reload may cost.
    let heavy = dir.path().join("heavy.toml");
    std::fs::write(&heavy, format!("{}\n{}", LINK_DEF, rules_of(500))).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["vendors", "check"])
        .arg(&heavy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("ocsf.rules") && said.contains("together compile"), "{said}");
    let rules = rules_of(12);
    let def = |edit: usize| {
        format!(
            "{}\n{rules}",
            LINK_DEF
                .replace("product = \"Hostile Log\"", &format!("product = \"Hostile Log\"\ntitle = \"edit {edit}\""))
        )
    };
    std::fs::write(dir.path().join("defs/hostile.toml"), def(0)).unwrap();
    let mut agent = Agent::start(&config, false);
    agent.until("the vendor asked", Duration::from_secs(60), |_| !vendor.heads().is_empty()).await;
    let before = agent.rss();
    for edit in 1..=3 {
        std::fs::write(dir.path().join("defs/hostile.toml"), def(edit)).unwrap();
        let sent = std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
        assert!(sent.success());
        agent.until("the reload", Duration::from_secs(60), |a| a.count("configuration reloaded") >= edit).await;
    }
    let after = agent.rss();
    agent.kill().await;
    let grown = after.saturating_sub(before) >> 20;
    assert!(
        grown < 50,
        "three reloads of an edited 43 KB definition grew the agent's RSS by {grown} MiB ({} -> {} MiB)",
        before >> 20,
        after >> 20
    );
}

/// Finding 10 (stall): a definition need not send `{page_size}` anywhere (check accepts a
/// `link`/`cursor`/`next_url` definition that never does), yet every page is refused as "not a
/// page" when it holds more than `paging.page_size` + 100 items. A vendor with its own fixed
/// page size (here 150, with `page_size` left at its default 100 and no limit parameter) is
/// asked the same page for ever; nothing is ever delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_with_a_fixed_page_size_the_definition_never_asks_is_not_refused_for_ever() {
    let dir = tempfile::tempdir().unwrap();
    let t = chrono::Utc::now() - chrono::Duration::minutes(30);
    let items: Vec<serde_json::Value> =
        (0..250).map(|i| serde_json::json!({ "id": format!("r{i}"), "t": t.to_rfc3339(), "a": "x" })).collect();
    let page = serde_json::Value::Array(items).to_string();
    let vendor = Raw::start(Arc::new(move |_head: &str| Some(answer(200, &[], page.as_bytes())))).await;
    let config = write_config(dir.path(), &vendor.base(), "T");
    let def = LINK_DEF
        .replace(
            "query = { since = \"{from}\", until = \"{to}\", limit = \"{page_size}\" }",
            "query = { since = \"{from}\", until = \"{to}\" }",
        )
        .replace("page_size = 10\n", "");
    std::fs::write(dir.path().join("defs/hostile.toml"), &def).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["vendors", "check"])
        .arg(dir.path().join("defs/hostile.toml"))
        .output()
        .unwrap();
    let mut agent = Agent::start(&config, false);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let delivered = std::fs::read_to_string(dir.path().join("events.ndjson")).unwrap_or_default().lines().count();
    let log = agent.tail();
    agent.kill().await;
    assert!(
        delivered == 250 || check.status.code() == Some(2),
        "the definition passed `vendors check` (exit {:?}) yet {delivered} of 250 records were delivered after {} \
         requests:\n{log}",
        check.status.code(),
        vendor.heads().len()
    );
}
