//! Adversarial review rb of issue 20 (vendor definitions: OAuth2 client credentials and rate
//! signals), against the real binary. Each test is a finding: it fails on dev-rb as reviewed.
//!
//! One small server on 127.0.0.1 serves both the token endpoint (`/oauth2/token`) and the
//! vendor's API (`/logs`); each test says how they answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::harness::agent::Agent;

/// How the server answers, and what it saw.
/// A canned answer: status, headers, body.
type Canned = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Plan {
    /// (status, extra headers, body) of every token answer; `None`: a good token.
    token: Option<Canned>,
    /// (status, extra headers, body) of every API answer; `None`: 200 `[]`.
    api: Option<Canned>,
    token_requests: u64,
    api_requests: u64,
    /// Authorization headers the API saw.
    api_auth: Vec<String>,
    /// Authorization headers the API refuses (401) whatever `api` says.
    refused_tokens: Vec<String>,
}

type Shared = Arc<Mutex<Plan>>;

fn answer(spec: &(u16, Vec<(&'static str, String)>, String)) -> Response {
    let mut r = (StatusCode::from_u16(spec.0).unwrap(), spec.2.clone()).into_response();
    for (k, v) in &spec.1 {
        r.headers_mut().insert(*k, v.parse().unwrap());
    }
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

async fn token(State(p): State<Shared>, headers: HeaderMap) -> Response {
    // Status 0: the endpoint never answers (the connection stays open).
    if p.lock().unwrap().token.as_ref().is_some_and(|t| t.0 == 0) {
        p.lock().unwrap().token_requests += 1;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let mut p = p.lock().unwrap();
    p.token_requests += 1;
    let n = p.token_requests;
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    match &p.token {
        // `{auth}` in a body: the Authorization header the request carried (a gateway's debug echo).
        Some(spec) => answer(&(spec.0, spec.1.clone(), spec.2.replace("{auth}", &auth))),
        None => answer(&(
            200,
            vec![],
            format!(r#"{{"access_token":"tok-ISSUED-{n}","token_type":"Bearer","expires_in":3600}}"#),
        )),
    }
}

async fn logs(State(p): State<Shared>, headers: HeaderMap) -> Response {
    let mut p = p.lock().unwrap();
    p.api_requests += 1;
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    p.api_auth.push(auth.clone());
    let bearer = auth.strip_prefix("Bearer ").unwrap_or("").to_owned();
    if p.refused_tokens.contains(&auth) {
        return answer(&(401, vec![], r#"{"error":"invalid_token"}"#.to_owned()));
    }
    match &p.api {
        // `{auth}` in a body: the token the request carried (a vendor quoting what it refused).
        Some(spec) => answer(&(spec.0, spec.1.clone(), spec.2.replace("{auth}", &bearer))),
        None => answer(&(200, vec![], "[]".to_owned())),
    }
}

async fn serve(plan: Plan) -> (String, Shared) {
    let shared = Arc::new(Mutex::new(plan));
    let app =
        Router::new().route("/oauth2/token", post(token)).route("/logs", get(logs)).with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

const SECRET: &str = "client-SECRET-xyz";

/// A definition `acme` (OAuth2, link paging) with `rate_limit` extra lines, and a follow-mode
/// configuration using it, in `dir`.
fn config(dir: &std::path::Path, base: &str, rate_extra: &str) -> std::path::PathBuf {
    let vendors = dir.join("vendors.d");
    std::fs::create_dir_all(&vendors).unwrap();
    std::fs::write(
        vendors.join("acme.toml"),
        format!(
            "[vendor]\nname = \"acme\"\ntitle = \"Acme\"\nvendor_name = \"V\"\nproduct = \"P\"\n\
             [window]\npoll_interval = \"1m\"\n\
             [request]\npath = \"/logs\"\nquery = {{ since = \"{{from}}\", until = \"{{to}}\" }}\n\
             [paging]\nkind = \"link\"\n[auth]\nkind = \"oauth2\"\ntoken_url = \"/oauth2/token\"\n\
             [answer]\nid = \"/id\"\ntime = \"/at\"\n[rate_limit]\nrequests = 600\nper = \"1m\"\n{rate_extra}\n\
             [ocsf]\naction = \"/action\"\n"
        ),
    )
    .unwrap();
    let path = dir.join("auditrelay.toml");
    std::fs::write(
        &path,
        format!(
            "state_dir = {state:?}\nvendors_dir = {vendors:?}\n\
             [[sources]]\nname = \"acme-prod\"\nvendor = \"acme\"\norganization_id = \"org1\"\n\
             client_id = \"relay\"\nclient_secret = {SECRET:?}\nbase_url = {base:?}\n\
             backoff = {{ initial = \"100ms\", max = \"1s\" }}\n\
             [[sinks]]\nname = \"f\"\ntype = \"file\"\npath = {out:?}\n",
            state = dir.join("state").display().to_string(),
            vendors = vendors.display().to_string(),
            out = dir.join("out.ndjson").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn check_config(path: &std::path::Path) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["check", "-c"]).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "config refused: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// LEAK: a token endpoint that answers 200 with a token under another key (a wrapper, camelCase,
/// a gateway's envelope) or with trailing bytes after the JSON: the agent logs the answer's body
/// (only the client secret is scrubbed), so the live access token lands in the journal.
#[tokio::test]
async fn an_unreadable_token_answer_does_not_log_the_access_token_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"data":{"access_token":"tok-LIVE-0123456789abcdef","token_type":"Bearer","expires_in":3600}}"#;
    let (base, _p) = serve(Plan { token: Some((200, vec![], body.to_owned())), ..Plan::default() }).await;
    let cfg = config(dir.path(), &base, "");
    check_config(&cfg);
    let mut agent = Agent::start(&cfg, false);
    agent
        .until("the token failure is logged", Duration::from_secs(20), |a| a.log().contains("no OAuth2 access token"))
        .await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    assert!(!log.contains("tok-LIVE-0123456789abcdef"), "the access token is in the log:\n{log}");
}

/// LEAK: `check --connect` prints the token endpoint's failure: the same body, token and all.
#[tokio::test]
async fn check_connect_does_not_print_the_access_token_of_an_unreadable_token_answer() {
    let dir = tempfile::tempdir().unwrap();
    // Trailing bytes after a valid answer (a proxy appending a banner): serde refuses it.
    let body =
        r#"{"access_token":"tok-LIVE-fedcba9876543210","token_type":"Bearer","expires_in":3600} <!-- cached -->"#;
    let (base, _p) = serve(Plan { token: Some((200, vec![], body.to_owned())), ..Plan::default() }).await;
    let cfg = config(dir.path(), &base, "");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "--connect", "-c"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("token"), "check --connect said nothing of the token: {text}");
    assert!(!text.contains("tok-LIVE-fedcba9876543210"), "the access token is in check's output:\n{text}");
}

/// LEAK: a vendor that quotes the refused bearer token in its 401 body ("token tok-… is
/// revoked"): the error excerpt scrubs only the client secret, so the access token is logged.
#[tokio::test]
async fn a_vendor_401_quoting_the_bearer_token_does_not_log_it() {
    let dir = tempfile::tempdir().unwrap();
    let (base, p) = serve(Plan::default()).await;
    let cfg = config(dir.path(), &base, "");
    check_config(&cfg);
    {
        // The API quotes the token it was sent (tok-ISSUED-<n>, issued by the token endpoint).
        let mut p = p.lock().unwrap();
        p.api =
            Some((401, vec![], r#"{"error":"invalid_token","error_description":"token {auth} is revoked"}"#.into()));
    }
    let mut agent = Agent::start(&cfg, false);
    agent.until("the refusal is logged", Duration::from_secs(20), |a| a.log().contains("operator action needed")).await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    assert!(!log.contains("tok-ISSUED-"), "an access token is in the log:\n{log}");
}

/// STALL (silent): with `forbidden_is_rate_limit`, a real permission refusal (403 "Resource not
/// accessible") that a gateway answers with `Retry-After` is taken for a rate limit forever:
/// no operator error, no trouble recorded, the source pauses and asks again without end.
#[tokio::test]
async fn a_permanent_403_with_retry_after_is_eventually_an_operator_error() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = r#"{"message":"Resource not accessible by integration"}"#;
    let (base, p) =
        serve(Plan { api: Some((403, vec![("retry-after", "1".to_owned())], refusal.to_owned())), ..Plan::default() })
            .await;
    let cfg = config(dir.path(), &base, "forbidden_is_rate_limit = true\n");
    check_config(&cfg);
    let mut agent = Agent::start(&cfg, false);
    // 403s with a 1 s wait: after AUTH_RETRIES (3) + a margin of them, a permission refusal
    // must be reported as one.
    agent.until("ten 403s", Duration::from_secs(40), |_| p.lock().unwrap().api_requests >= 10).await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    assert!(
        log.contains("operator action needed") || log.contains("refused"),
        "{} 403s, none reported as a refusal; the log:\n{log}",
        p.lock().unwrap().api_requests
    );
}

/// Reported as "rate limited (429)" although the vendor answered 403: misleading to an
/// operator reading the journal for the 403 GitHub documents.
#[tokio::test]
async fn a_403_rate_limit_is_logged_as_what_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (base, p) =
        serve(Plan { api: Some((403, vec![("retry-after", "1".to_owned())], "{}".to_owned())), ..Plan::default() })
            .await;
    let cfg = config(dir.path(), &base, "forbidden_is_rate_limit = true\n");
    let mut agent = Agent::start(&cfg, false);
    agent.until("two 403s", Duration::from_secs(20), |_| p.lock().unwrap().api_requests >= 2).await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("rate limited")).collect();
    assert!(!lines.is_empty(), "{log}");
    assert!(lines.iter().all(|l| !l.contains("(429)")), "a 403 logged as a 429: {lines:?}");
}

/// STALL: an access token the vendor keeps refusing after the one immediate refresh (a key
/// rotation at the vendor: the token fetched at once was still signed with the old key) is
/// used for every later retry until it expires (up to 24 h): `token_retried` is cleared only by
/// an answer other than 401, so no new token is ever asked for while the 401s last, though a
/// token fetched now would be accepted.
#[tokio::test]
async fn a_refused_token_is_not_reused_for_every_retry_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (base, p) = serve(Plan::default()).await;
    let cfg = config(dir.path(), &base, "");
    check_config(&cfg);
    // The vendor refuses tokens 1 and 2 (issued before its rotation), accepts 3 and later.
    p.lock().unwrap().api = Some((401, vec![], r#"{"error":"invalid_token"}"#.into()));
    let mut agent = Agent::start(&cfg, false);
    agent.until("two 401s", Duration::from_secs(20), |_| p.lock().unwrap().api_requests >= 2).await;
    // The rotation is over: from now on a new token works (the API answers 200 again to any
    // token but the refused ones).
    {
        let mut p = p.lock().unwrap();
        p.api = Some((200, vec![], "[]".into()));
        p.refused_tokens = vec!["Bearer tok-ISSUED-1".into(), "Bearer tok-ISSUED-2".into()];
    }
    let seen = std::time::Instant::now();
    while seen.elapsed() < Duration::from_secs(15) {
        if p.lock().unwrap().token_requests >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    let p = p.lock().unwrap();
    assert!(
        p.token_requests >= 3,
        "{} token requests, {} API requests all with a refused token ({:?}); the log:\n{log}",
        p.token_requests,
        p.api_requests,
        p.api_auth.iter().rev().take(3).collect::<Vec<_>>()
    );
}

/// A Retry-After a defined source's vendor gave is honoured across a restart (held: see the
/// report; kept as a guard).
#[tokio::test]
async fn a_defined_sources_retry_after_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (base, p) =
        serve(Plan { api: Some((429, vec![("retry-after", "120".to_owned())], "{}".to_owned())), ..Plan::default() })
            .await;
    let cfg = config(dir.path(), &base, "");
    let mut agent = Agent::start(&cfg, false);
    agent.until("a 429", Duration::from_secs(20), |a| a.log().contains("rate limited")).await;
    agent.terminate(Duration::from_secs(10)).await;
    let before = p.lock().unwrap().api_requests;
    let mut agent = Agent::start(&cfg, false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    assert_eq!(p.lock().unwrap().api_requests, before, "asked inside the stored pause:\n{log}");
}

/// LEAK (edge): a token endpoint or gateway whose refusal quotes the request's Authorization
/// header: the client secret is logged base64-encoded (`redact::secrets_in` knows the verbatim,
/// JSON and form-encoded forms, not HTTP Basic's), decodable by anyone reading the journal.
#[tokio::test]
async fn a_token_refusal_quoting_the_basic_header_does_not_log_the_client_secret() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let body = r#"{"error":"invalid_client","error_description":"bad client in header {auth}"}"#;
    let (base, _p) = serve(Plan { token: Some((401, vec![], body.to_owned())), ..Plan::default() }).await;
    let cfg = config(dir.path(), &base, "");
    let mut agent = Agent::start(&cfg, false);
    agent.until("the refusal is logged", Duration::from_secs(20), |a| a.log().contains("invalid_client")).await;
    let log = agent.log();
    agent.terminate(Duration::from_secs(10)).await;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("relay:{SECRET}"));
    assert!(!log.contains(&basic), "the client secret, base64 in a Basic header, is in the log:\n{log}");
}

/// A hanging token endpoint neither storms nor holds up a stop (held; kept as a guard).
#[tokio::test]
async fn a_hanging_token_endpoint_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (base, p) = serve(Plan { token: Some((0, vec![], String::new())), ..Plan::default() }).await;
    let cfg = config(dir.path(), &base, "");
    let mut agent = Agent::start(&cfg, false);
    agent.until("a token request", Duration::from_secs(20), |_| p.lock().unwrap().token_requests >= 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = std::time::Instant::now();
    let status = agent.terminate(Duration::from_secs(15)).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "stop took {:?}", asked.elapsed());
    assert!(status.success(), "{status:?}: {}", agent.log());
    assert_eq!(p.lock().unwrap().token_requests, 1);
}

/// The shipped definitions run by the real binary against their contract simulators, in many
/// small windows (`max_span = "7m"`): every record published before the run is delivered, once.
async fn shipped_definition_delivers_every_record_once(
    vendor: &str,
    origin: &str,
    org: &str,
    token: &str,
    expected: Vec<(String, i64)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let cfg = dir.path().join("auditrelay.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = {state:?}\nvendors_dir = {vendors:?}\n\
             [[sources]]\nname = \"s\"\nvendor = {vendor:?}\norganization_id = {org:?}\n\
             token = {token:?}\nbase_url = {origin:?}\nstart = \"4h\"\nmax_span = \"7m\"\noverlap = \"1m\"\nlag = \"1s\"\n\
             backoff = {{ initial = \"100ms\", max = \"1s\" }}\n\
             [[sinks]]\nname = \"f\"\ntype = \"file\"\npath = {out:?}\n",
            state = dir.path().join("state").display().to_string(),
            vendors = format!("{}/config/vendors.d", env!("CARGO_MANIFEST_DIR")),
            out = out.display().to_string(),
        ),
    )
    .unwrap();
    check_config(&cfg);
    let started = chrono::Utc::now().timestamp_millis();
    let mut agent = Agent::start(&cfg, true);
    let status = agent.exit(Duration::from_secs(300)).await;
    assert!(status.success(), "{status:?}: {}", agent.tail());
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut missing = vec![];
    let mut twice = vec![];
    for (id, at) in expected.iter().filter(|(_, at)| *at < started - 5_000) {
        match text.matches(id.as_str()).count() {
            0 => missing.push((id.clone(), *at)),
            1 => {}
            // An id appears in metadata.uid and raw_data at least: count lines instead.
            _ => {
                let lines = text.lines().filter(|l| l.contains(id.as_str())).count();
                if lines > 1 {
                    twice.push(id.clone())
                }
            }
        }
    }
    assert!(missing.is_empty() && twice.is_empty(), "missing {missing:?}, duplicated {twice:?}\n{}", agent.tail());
}

#[tokio::test]
async fn the_shipped_okta_definition_delivers_every_event_once_across_window_boundaries() {
    let opts = crate::okta_sim::OktaOptions {
        records: 2000,
        late_permille: 0,
        rate_limit: 100_000,
        ..crate::okta_sim::OktaOptions::live(Duration::from_secs(3 * 3600))
    };
    let sim = crate::okta_sim::OktaSim::start(opts).await;
    let expected = sim.events().iter().map(|e| (e.uuid.clone(), e.published)).collect();
    shipped_definition_delivers_every_record_once("okta", sim.origin(), "acme", sim.token(), expected).await;
}

#[tokio::test]
async fn the_shipped_github_definition_delivers_every_web_event_once_across_window_boundaries() {
    let opts = crate::github_sim::GithubOptions {
        records: 2000,
        late_permille: 0,
        ..crate::github_sim::GithubOptions::live(Duration::from_secs(3 * 3600))
    };
    let token = match &opts.auth {
        crate::github_sim::GithubAuth::Tokens(t) => t[0].clone(),
        crate::github_sim::GithubAuth::OAuth(_) => unreachable!(),
    };
    let enterprise = opts.enterprise.clone();
    let sim = crate::github_sim::GithubSim::start(opts).await;
    let expected = sim.events().iter().filter(|e| !e.git).map(|e| (e.document_id.clone(), e.at)).collect();
    shipped_definition_delivers_every_record_once("github-enterprise", sim.origin(), &enterprise, &token, expected)
        .await;
}
