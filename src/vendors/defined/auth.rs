//! OAuth2 client credentials (RFC 6749 §4.4) for vendor definitions with `auth.kind = "oauth2"`:
//! the access token a source sends as `Authorization: Bearer …`, fetched from the token
//! endpoint and kept in memory until shortly before it expires.
//!
//! Owns: the token request (`grant_type=client_credentials`, the client's id and secret in HTTP
//! Basic, form-urlencoded first as §2.3.1 says, or as form fields), reading the answer (§5.1,
//! capped at [`MAX_TOKEN_ANSWER`]), sorting a refusal (§5.2: the operator must act) from an
//! outage (retried), and the cache. Never: a secret or a token in an error, a log line or a
//! `Debug` output; the source loop decides what a refusal or an outage does to the source
//! (`sources/mod.rs`), and when a 401 from the vendor drops the token ([`TokenCache::invalidate`]).
//!
//! Expiry is measured on the agent's monotonic clock from the moment the token was asked for
//! (so a slow answer shortens, never lengthens, its life). A token is used while more than
//! `refresh_before` of it is left, or half its lifetime for short-lived ones (a 60 s margin
//! on a 30 s token would fetch a token for every request). A token without `expires_in` is
//! kept for at most [`UNDATED_TOKEN_LIFE`]; a 401 drops it sooner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::model::ClientAuth;
use crate::clock::Clock;
use crate::http::{Overflow, read_capped};

/// The most of a token endpoint's answer that is read.
pub const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// How long a token request may take.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a token whose answer gave no `expires_in` is kept.
pub const UNDATED_TOKEN_LIFE: Duration = Duration::from_secs(3600);

/// One client-credentials grant to ask for.
pub struct TokenRequest<'a> {
    pub token_url: &'a url::Url,
    pub client_id: &'a str,
    pub client_secret: &'a SecretString,
    pub scopes: &'a [String],
    pub client_auth: ClientAuth,
    pub audience: Option<&'a str>,
    pub refresh_before: Duration,
}

/// Why no token was had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint refused the client (400 `invalid_client` / `unauthorized_client` /
    /// `invalid_scope` / `invalid_grant`, 401, 403, or any other 4xx or redirect): an operator
    /// error, like a refused key.
    #[error("token endpoint {url} answered {status}: {detail}")]
    Refused { url: String, status: u16, detail: String },
    /// 5xx, 429, 408, a transport error or an answer that is no token: retried with back-off.
    #[error("token endpoint {url}: {detail}")]
    Unavailable { url: String, detail: String, retry_after: Option<Duration> },
}

/// A token and when it stops being used.
struct Cached {
    token: SecretString,
    use_until: tokio::time::Instant,
}

/// One source's access token. Fetches are serialised, so requests waiting for a token share
/// one fetch.
#[derive(Default)]
pub struct TokenCache {
    cached: tokio::sync::Mutex<Option<Cached>>,
    fetched: AtomicU64,
}

/// Shows nothing of its state: a source's settings are compared by their `Debug` text on a
/// reload (`SourceConfig::fingerprint`), and a token fetched since must not make an unchanged
/// source look changed (nor may a token ever be shown).
impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").finish_non_exhaustive()
    }
}

/// §5.1's successful answer (only what is read).
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// §5.2's error answer.
#[derive(Deserialize, Default)]
struct Refusal {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenCache {
    pub fn new() -> TokenCache {
        TokenCache::default()
    }

    /// The cached token while it is still to be used, else a new one from the endpoint.
    pub async fn bearer(
        &self,
        http: &reqwest::Client,
        req: &TokenRequest<'_>,
        clock: &Clock,
    ) -> Result<SecretString, TokenError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| clock.now() < c.use_until) {
            return Ok(c.token.clone());
        }
        *cached = None;
        let asked_at = clock.now();
        let (token, life) = fetch(http, req, clock).await?;
        self.fetched.fetch_add(1, Ordering::Relaxed);
        let margin = req.refresh_before.min(life / 2);
        *cached = Some(Cached { token: token.clone(), use_until: asked_at + life.saturating_sub(margin) });
        Ok(token)
    }

    /// Drops the cached token (the vendor answered 401 with it): the next request asks for a
    /// new one.
    pub fn invalidate(&self) {
        // A fetch in progress holds the lock and sets a fresh token: nothing to drop then.
        if let Ok(mut cached) = self.cached.try_lock() {
            *cached = None;
        }
    }

    /// Tokens fetched so far.
    pub fn fetched(&self) -> u64 {
        self.fetched.load(Ordering::Relaxed)
    }
}

/// §2.3.1: the id and the secret are form-urlencoded before they become Basic's user and password.
fn form_encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// One token request: the token and how long it may be used.
async fn fetch(
    http: &reqwest::Client,
    req: &TokenRequest<'_>,
    clock: &Clock,
) -> Result<(SecretString, Duration), TokenError> {
    let url = crate::redact::url(req.token_url);
    let secret = req.client_secret;
    // The client's secret in every form it was sent: as itself and inside the Basic header
    // (base64 of "id:secret", form-encoded or not), which a refusal may quote back.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let basic = [
        SecretString::from(b64.encode(format!(
            "{}:{}",
            form_encoded(req.client_id),
            form_encoded(secret.expose_secret())
        ))),
        SecretString::from(b64.encode(format!("{}:{}", req.client_id, secret.expose_secret()))),
    ];
    let scrub = |text: &str| {
        let text = crate::redact::secrets_in(text, &[secret, &basic[0], &basic[1]]);
        let clean: String = text.chars().take(300).map(|c| if c.is_control() { ' ' } else { c }).collect();
        clean.trim().to_owned()
    };
    let unavailable = |detail: String, retry_after| TokenError::Unavailable { url: url.clone(), detail, retry_after };
    // Built in a block: the serializer is not `Send` and must not live across the request.
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if !req.scopes.is_empty() {
            form.append_pair("scope", &req.scopes.join(" "));
        }
        if let Some(audience) = req.audience {
            form.append_pair("audience", audience);
        }
        if req.client_auth == ClientAuth::Body {
            form.append_pair("client_id", req.client_id).append_pair("client_secret", secret.expose_secret());
        }
        form.finish()
    };
    let mut request = http
        .post(req.token_url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .timeout(TOKEN_TIMEOUT)
        .body(form);
    if req.client_auth == ClientAuth::Basic {
        request = request.basic_auth(form_encoded(req.client_id), Some(form_encoded(secret.expose_secret())));
    }
    let response = request
        .send()
        .await
        .map_err(|e| unavailable(format!("request failed: {}", scrub(&e.without_url().to_string())), None))?;
    let status = response.status();
    let retry_after = crate::backoff::retry_after(response.headers(), clock.now_utc())
        .map(|d| crate::backoff::cap(d, crate::backoff::SINK_MAX_RETRY_AFTER).0);
    let body = read_capped(response, MAX_TOKEN_ANSWER, Overflow::Refuse).await.map_err(|e| {
        unavailable(format!("answered {status} but its body was not read: {}", scrub(&e.to_string())), None)
    })?;
    if status.is_success() {
        // Never the body, nor serde's message (which may quote a value): a 2xx answer may hold
        // a token even when it cannot be read.
        let granted: Granted = serde_json::from_slice(&body).map_err(|e| {
            let what = format!("{:?} at line {} column {}", e.classify(), e.line(), e.column());
            unavailable(format!("answered {status} with no usable token in it ({what}; the answer is not shown)"), None)
        })?;
        if granted.access_token.trim().is_empty() {
            return Err(unavailable(format!("answered {status} with an empty access_token"), None));
        }
        if let Some(kind) = granted.token_type.as_deref().filter(|t| !t.eq_ignore_ascii_case("bearer")) {
            return Err(TokenError::Refused {
                url,
                status: status.as_u16(),
                detail: format!("token_type {:?} is not Bearer: only bearer tokens are sent", scrub(kind)),
            });
        }
        let life = match granted.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_f64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(UNDATED_TOKEN_LIFE, |s| Duration::from_secs_f64(s.min(UNDATED_TOKEN_LIFE.as_secs_f64() * 24.0)));
        return Ok((SecretString::from(granted.access_token), life));
    }
    let refusal: Refusal = serde_json::from_slice(&body).unwrap_or_default();
    let detail = match (refusal.error, refusal.error_description) {
        (Some(e), Some(d)) => format!("{} ({})", scrub(&e), scrub(&d)),
        (Some(e), None) => scrub(&e),
        _ => {
            let text = scrub(&String::from_utf8_lossy(&body));
            if text.is_empty() { "(empty body)".to_owned() } else { text }
        }
    };
    match status.as_u16() {
        408 | 429 | 500..=599 => Err(unavailable(format!("answered {status}: {detail}"), retry_after)),
        _ => Err(TokenError::Refused {
            url,
            status: status.as_u16(),
            detail: format!("{detail}; the client is refused (check client_id, client_secret, scopes and token_url)"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    use super::*;

    /// What the test token endpoint saw and how it answers.
    #[derive(Default)]
    struct Endpoint {
        requests: Vec<(Option<String>, String)>,
        expires_in: Option<u64>,
        answer: Option<(u16, String)>,
        issued: u64,
    }

    async fn token(State(ep): State<Arc<Mutex<Endpoint>>>, headers: HeaderMap, body: String) -> impl IntoResponse {
        let mut ep = ep.lock().unwrap();
        let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
        ep.requests.push((auth, body));
        if let Some((status, body)) = ep.answer.clone() {
            return (StatusCode::from_u16(status).unwrap(), [("retry-after", "7")], body);
        }
        ep.issued += 1;
        let expires = ep.expires_in.map_or(String::new(), |s| format!(",\"expires_in\":{s}"));
        let body = format!("{{\"access_token\":\"tok-{}\",\"token_type\":\"Bearer\"{expires}}}", ep.issued);
        (StatusCode::OK, [("retry-after", "0")], body)
    }

    async fn endpoint(expires_in: Option<u64>) -> (url::Url, Arc<Mutex<Endpoint>>) {
        let state = Arc::new(Mutex::new(Endpoint { expires_in, ..Endpoint::default() }));
        let app = axum::Router::new().route("/oauth2/token", axum::routing::post(token)).with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/token", listener.local_addr().unwrap()).parse().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, state)
    }

    fn request<'a>(url: &'a url::Url, secret: &'a SecretString, auth: ClientAuth) -> TokenRequest<'a> {
        TokenRequest {
            token_url: url,
            client_id: "client:1",
            client_secret: secret,
            scopes: &[],
            client_auth: auth,
            audience: None,
            refresh_before: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_token_is_cached_until_shortly_before_it_expires_then_fetched_again() {
        let (url, ep) = endpoint(Some(3600)).await;
        let secret = SecretString::from("s3cr3t&x");
        let scopes = vec!["okta.logs.read".to_owned(), "b".to_owned()];
        let req =
            TokenRequest { scopes: &scopes, audience: Some("api://x"), ..request(&url, &secret, ClientAuth::Basic) };
        let clock = Clock::system();
        let cache = TokenCache::new();
        let http = reqwest::Client::new();
        tokio::time::pause();
        let first = cache.bearer(&http, &req, &clock).await.unwrap();
        assert_eq!(first.expose_secret(), "tok-1");
        tokio::time::advance(Duration::from_secs(3600 - 61)).await;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-2", "refreshed 60 s early");
        assert_eq!(cache.fetched(), 2);
        let ep = ep.lock().unwrap();
        let (auth, body) = &ep.requests[0];
        // §2.3.1: "client:1" and "s3cr3t&x" form-urlencoded before Basic.
        use base64::Engine as _;
        let expected = base64::engine::general_purpose::STANDARD.encode("client%3A1:s3cr3t%26x");
        assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
        assert_eq!(body, "grant_type=client_credentials&scope=okta.logs.read+b&audience=api%3A%2F%2Fx");
    }

    #[tokio::test]
    async fn body_client_auth_and_a_short_lived_token_keep_half_its_life() {
        let (url, ep) = endpoint(Some(30)).await;
        let secret = SecretString::from("s");
        let req = request(&url, &secret, ClientAuth::Body);
        let (clock, cache, http) = (Clock::system(), TokenCache::new(), reqwest::Client::new());
        tokio::time::pause();
        cache.bearer(&http, &req, &clock).await.unwrap();
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-1");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-2");
        let ep = ep.lock().unwrap();
        assert_eq!(ep.requests[0].0, None, "no Basic header with body auth");
        assert_eq!(ep.requests[0].1, "grant_type=client_credentials&client_id=client%3A1&client_secret=s");
    }

    #[tokio::test]
    async fn invalidate_fetches_a_new_token_and_an_undated_token_is_kept_an_hour_at_most() {
        let (url, _ep) = endpoint(None).await;
        let secret = SecretString::from("s");
        let req = request(&url, &secret, ClientAuth::Basic);
        let (clock, cache, http) = (Clock::system(), TokenCache::new(), reqwest::Client::new());
        tokio::time::pause();
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-1");
        cache.invalidate();
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-2");
        tokio::time::advance(UNDATED_TOKEN_LIFE).await;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-3");
    }

    #[tokio::test]
    async fn a_refused_client_is_an_operator_error_and_an_outage_is_retried_and_no_secret_is_shown() {
        let (url, ep) = endpoint(Some(3600)).await;
        let secret = SecretString::from("hunter22");
        let req = request(&url, &secret, ClientAuth::Body);
        let (clock, cache, http) = (Clock::system(), TokenCache::new(), reqwest::Client::new());
        let answer = |status: u16, body: &str| ep.lock().unwrap().answer = Some((status, body.to_owned()));
        answer(401, r#"{"error":"invalid_client","error_description":"client hunter22 revoked"}"#);
        let e = cache.bearer(&http, &req, &clock).await.unwrap_err();
        let TokenError::Refused { status: 401, ref detail, .. } = e else { panic!("{e:?}") };
        assert!(detail.starts_with("invalid_client (client [redacted] revoked)"), "{detail}");
        assert!(!e.to_string().contains("hunter22"), "{e}");
        answer(400, r#"{"error":"invalid_scope"}"#);
        assert!(matches!(cache.bearer(&http, &req, &clock).await, Err(TokenError::Refused { status: 400, .. })));
        answer(503, "<html>down</html>");
        let e = cache.bearer(&http, &req, &clock).await.unwrap_err();
        assert!(
            matches!(e, TokenError::Unavailable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
            "{e:?}"
        );
        answer(200, "<html>login page</html>");
        assert!(matches!(cache.bearer(&http, &req, &clock).await, Err(TokenError::Unavailable { .. })));
        answer(200, r#"{"access_token":"x","token_type":"mac"}"#);
        assert!(matches!(cache.bearer(&http, &req, &clock).await, Err(TokenError::Refused { status: 200, .. })));
        assert_eq!(cache.fetched(), 0);
        ep.lock().unwrap().answer = None;
        assert_eq!(cache.bearer(&http, &req, &clock).await.unwrap().expose_secret(), "tok-1");
    }

    /// A reload compares a source's settings by their `Debug` text: a token fetched by the
    /// running source must not make it differ from the same settings read again (it did:
    /// `fetched: 1` against `fetched: 0`, so every reload restarted every OAuth2 source).
    #[tokio::test]
    async fn a_fetched_token_does_not_change_the_debug_text() {
        let (url, _ep) = endpoint(Some(3600)).await;
        let secret = SecretString::from("s");
        let cache = TokenCache::new();
        let before = format!("{cache:?}");
        cache
            .bearer(&reqwest::Client::new(), &request(&url, &secret, ClientAuth::Basic), &Clock::system())
            .await
            .unwrap();
        assert_eq!(format!("{cache:?}"), before);
        assert!(!before.contains("tok-"));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: url::Url = format!("http://{}/token", listener.local_addr().unwrap()).parse().unwrap();
        drop(listener);
        let secret = SecretString::from("s");
        let e = TokenCache::new()
            .bearer(&reqwest::Client::new(), &request(&url, &secret, ClientAuth::Basic), &Clock::system())
            .await
            .unwrap_err();
        assert!(matches!(e, TokenError::Unavailable { .. }), "{e:?}");
    }
}
