//! An OAuth 2.0 authorization server's token endpoint for the client-credentials grant, served on
//! 127.0.0.1, and the check a protected resource makes of the tokens it issued ([`Issued`]), so
//! a vendor simulator (`github_sim`) can run behind OAuth2 in a test.
//!
//! Followed:
//! - RFC 6749 §4.4 (<https://www.rfc-editor.org/rfc/rfc6749#section-4.4>): `POST` with an
//!   `application/x-www-form-urlencoded` body, `grant_type=client_credentials`, optional `scope`
//!   (space-separated); §2.3.1: the client authenticates by HTTP Basic (id and secret each
//!   form-urlencoded before base64) or by `client_id`/`client_secret` in the body, never both
//!   (§2.3: "MUST NOT use more than one authentication method in each request"); §5.1: the
//!   answer `{access_token, token_type: "Bearer", expires_in, scope}` with `Cache-Control:
//!   no-store` and `Pragma: no-cache`; §5.2: errors `{error, error_description}`: 400
//!   `invalid_request`, `unsupported_grant_type`, `invalid_scope`, 401 `invalid_client` (with
//!   `WWW-Authenticate` when the client used the `Authorization` header).
//! - RFC 6750 §3 (<https://www.rfc-editor.org/rfc/rfc6750#section-3>): a resource refuses a
//!   missing token with `WWW-Authenticate: Bearer realm=…`, an unknown or expired one with 401
//!   and `error="invalid_token"`.
//!
//! Choices where the RFCs leave it to the server:
//! - Revoking a client ([`OAuthSim::revoke`]) refuses its next token requests (401
//!   `invalid_client`) and invalidates every token it was issued.
//! - Lifetimes are short and configurable ([`OAuthOptions::lifetime`]); time is [`SimTime`]: a
//!   test expires tokens by [`OAuthSim::advance`], nothing waits. [`OAuthSim::expire_all`]
//!   invalidates every token issued so far (a key rotation at the vendor: the next use is a 401).
//! - A `scope` outside the client's allowed scopes is `invalid_scope`; no `scope` grants all of
//!   them.
#![allow(dead_code)] // each test module uses a different part

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::contract_sim::{SimTime, mix, query_pairs};
use super::killable::Serving;

pub const TOKEN_PATH: &str = "/oauth2/token";
const REALM: &str = "auditrelay-sim";

/// One registered client.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
    pub scopes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct OAuthOptions {
    pub clients: Vec<OAuthClient>,
    /// `expires_in` of every token.
    pub lifetime: Duration,
    /// The server's time; `None`: the wall clock (moved by [`OAuthSim::advance`]).
    pub now: Option<DateTime<Utc>>,
}

impl Default for OAuthOptions {
    fn default() -> OAuthOptions {
        OAuthOptions {
            clients: vec![OAuthClient {
                id: "relay-client".into(),
                secret: "s3cr3t: with/odd+chars".into(),
                scopes: vec!["read:audit_log".into(), "okta.logs.read".into()],
            }],
            lifetime: Duration::from_secs(300),
            now: None,
        }
    }
}

/// One token request, as answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The client it named, if any.
    pub client_id: Option<String>,
    /// `basic` or `body` (or `none`, `both`).
    pub client_auth: &'static str,
    pub scope: Option<String>,
    pub status: u16,
    /// The `error` of a refusal.
    pub error: Option<&'static str>,
}

struct Token {
    client_id: String,
    expires_at: DateTime<Utc>,
}

struct OAuthState {
    opts: OAuthOptions,
    time: SimTime,
    revoked: Mutex<Vec<String>>,
    tokens: Mutex<HashMap<String, Token>>,
    issued_count: AtomicU64,
    requests: Mutex<Vec<TokenRequest>>,
    /// Statuses to answer the next token requests with (`temporarily_unavailable`), one each.
    failures: Mutex<VecDeque<u16>>,
    origin: OnceLock<String>,
}

/// The running token endpoint; stops when dropped.
pub struct OAuthSim {
    serving: Serving,
    state: Arc<OAuthState>,
}

/// The protected resource's side: which `Authorization: Bearer` tokens are good. Cheap to clone.
#[derive(Clone)]
pub struct Issued(Arc<OAuthState>);

impl OAuthSim {
    pub async fn start(opts: OAuthOptions) -> OAuthSim {
        let state = Arc::new(OAuthState {
            time: SimTime::new(opts.now),
            opts,
            revoked: Mutex::new(Vec::new()),
            tokens: Mutex::new(HashMap::new()),
            issued_count: AtomicU64::new(0),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
            origin: OnceLock::new(),
        });
        let app = Router::new().route(TOKEN_PATH, post(token)).with_state(state.clone());
        let serving = Serving::start("oauth_sim", None, app).await;
        state.origin.set(format!("http://{}", serving.addr())).unwrap();
        OAuthSim { serving, state }
    }

    /// The token endpoint's absolute URL.
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.state.origin.get().map_or("", String::as_str))
    }
    /// The check for the resource servers.
    pub fn issued(&self) -> Issued {
        Issued(self.state.clone())
    }
    /// Refuses the client from now on and invalidates its tokens.
    pub fn revoke(&self, client_id: &str) {
        self.state.revoked.lock().unwrap().push(client_id.to_owned());
        self.state.tokens.lock().unwrap().retain(|_, t| t.client_id != client_id);
    }
    /// Invalidates every token issued so far.
    pub fn expire_all(&self) {
        self.state.tokens.lock().unwrap().clear();
    }
    /// Moves the server's time on (tokens expire); nothing waits.
    pub fn advance(&self, by: Duration) {
        self.state.time.advance(by);
    }
    /// Answers the next token request with `status` (`temporarily_unavailable`).
    pub fn fail_next(&self, status: u16) {
        self.state.failures.lock().unwrap().push_back(status);
    }
    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }
    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> u64 {
        self.state.issued_count.load(Ordering::SeqCst)
    }
}

impl Issued {
    /// The client whose live token `headers` carry, or the RFC 6750 challenge to answer 401
    /// with (`WWW-Authenticate`).
    pub fn check(&self, headers: &HeaderMap) -> Result<String, HeaderValue> {
        let Some(token) =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(HeaderValue::from_str(&format!("Bearer realm=\"{REALM}\"")).unwrap());
        };
        let now = self.0.time.now();
        let tokens = self.0.tokens.lock().unwrap();
        match tokens.get(token) {
            Some(t) if t.expires_at > now => Ok(t.client_id.clone()),
            found => {
                let why = if found.is_some() { "The access token expired" } else { "The access token is invalid" };
                let value = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{why}\"");
                Err(HeaderValue::from_str(&value).unwrap())
            }
        }
    }
}

impl Issued {
    /// `router` behind OAuth2: every request needs a live token from this server, else 401 with
    /// the RFC 6750 challenge (and `{"error":"invalid_token"}`), before `router` sees it.
    pub fn protect(&self, router: Router) -> Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), require_bearer))
    }
}

async fn require_bearer(State(issued): State<Issued>, request: Request, next: Next) -> Response {
    match issued.check(request.headers()) {
        Ok(_) => next.run(request).await,
        Err(challenge) => {
            let body = json!({ "error": "invalid_token" }).to_string();
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], body).into_response()
        }
    }
}

/// `POST /oauth2/token`.
async fn token(State(s): State<Arc<OAuthState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = query_pairs(&String::from_utf8_lossy(&body));
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let basic = basic_credentials(&headers);
    let (client_auth, credentials) = match (basic, field("client_id"), field("client_secret")) {
        (Some(_), _, Some(_)) => ("both", None),
        (Some(pair), _, None) => ("basic", Some(pair)),
        (None, Some(id), Some(secret)) => ("body", Some((id, secret))),
        (None, _, _) => ("none", None),
    };
    let mut record = TokenRequest {
        client_id: credentials.as_ref().map(|(id, _)| id.clone()),
        client_auth,
        scope: field("scope"),
        status: 200,
        error: None,
    };
    let response = decide(&s, &headers, &form, client_auth, credentials, &mut record);
    s.requests.lock().unwrap().push(record);
    response
}

fn decide(
    s: &OAuthState,
    headers: &HeaderMap,
    form: &[(String, String)],
    client_auth: &'static str,
    credentials: Option<(String, String)>,
    record: &mut TokenRequest,
) -> Response {
    let mut refuse = |status: u16, error: &'static str, description: &str| {
        record.status = status;
        record.error = Some(error);
        let body = json!({ "error": error, "error_description": description }).to_string();
        let mut response =
            (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if status == 401 && client_auth == "basic" {
            let challenge = HeaderValue::from_str(&format!("Basic realm=\"{REALM}\"")).unwrap();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    };
    if let Some(status) = s.failures.lock().unwrap().pop_front() {
        return refuse(status, "temporarily_unavailable", "the authorization server is overloaded");
    }
    let form_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return refuse(400, "invalid_request", "the body must be application/x-www-form-urlencoded");
    }
    if client_auth == "both" {
        return refuse(400, "invalid_request", "more than one client authentication method");
    }
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    match field("grant_type") {
        None => return refuse(400, "invalid_request", "grant_type is missing"),
        Some("client_credentials") => {}
        Some(_) => return refuse(400, "unsupported_grant_type", "only client_credentials is supported"),
    }
    let Some((id, secret)) = credentials else {
        return refuse(401, "invalid_client", "client authentication failed");
    };
    let client = s.opts.clients.iter().find(|c| c.id == id && c.secret == secret);
    let revoked = s.revoked.lock().unwrap().contains(&id);
    let Some(client) = client.filter(|_| !revoked) else {
        return refuse(401, "invalid_client", "client authentication failed");
    };
    let scope = match field("scope") {
        None => client.scopes.join(" "),
        Some(asked) if asked.split(' ').all(|w| client.scopes.iter().any(|s| s == w)) => asked.to_owned(),
        Some(_) => return refuse(400, "invalid_scope", "the requested scope exceeds the client's"),
    };
    let n = s.issued_count.fetch_add(1, Ordering::SeqCst);
    let access_token = format!("sim-at-{n}-{:016x}", mix(n ^ 0x5eed));
    let expires_at = s.time.now() + chrono::Duration::from_std(s.opts.lifetime).unwrap();
    s.tokens.lock().unwrap().insert(access_token.clone(), Token { client_id: client.id.clone(), expires_at });
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": s.opts.lifetime.as_secs(),
        "scope": scope,
    });
    let no_store =
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")];
    (no_store, body.to_string()).into_response()
}

/// The client's id and secret from `Authorization: Basic`, each form-urlencoded inside
/// (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| query_pairs(&format!("v={s}")).pop().map(|(_, v)| v).unwrap_or_default();
    Some((unescape(id), unescape(secret)))
}

/// `value` form-urlencoded, as RFC 6749 §2.3.1 wants the id and secret before base64.
pub fn form_escape(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The `Authorization: Basic` value of a client (for the tests).
pub fn basic_header(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{}:{}", form_escape(id), form_escape(secret))))
}
