//! Outbound HTTP: the one reqwest client set-up for every HTTP connection the agent makes (a
//! source's vendor API, the HEC sink, the OTLP/HTTP sink), and the one size-capped reader of an
//! answer's body.
//!
//! Every client is the same in what matters for safety: the user agent ([`USER_AGENT`]), rustls
//! as [`crate::tls`] sets it up (the server always verified, against `ca_file` or the system's
//! roots; no option turns that off), and reqwest's own proxy handling, which nothing in the
//! agent configures: the environment's `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
//! What differs between callers is a field of [`ClientOptions`] each: the redirect policy
//! (sources follow a few on their own origin, sinks none), the timeouts, ALPN and default
//! headers.
//!
//! Proxies: reqwest reads those variables when a client is built (`Matcher::from_system`,
//! which on Linux is the environment alone); [`proxy_for`] asks hyper-util's `Matcher`, the
//! one reqwest uses, the same question for `check` and for messages, so what they say is what
//! the client does. Credentials in a proxy URL are sent as `Proxy-Authorization` by reqwest and
//! shown only through `redact::url`.
//!
//! Leaves to others: OTLP/gRPC, whose tonic channel has its own connector (it shares the rustls
//! verifier, `tls::server_verifier`, and [`USER_AGENT`]: `sinks::otlp::grpc_endpoint`); syslog's
//! TLS stream (`sinks::syslog`); building requests and saying what an answer means (each
//! caller's own).

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use rustls::client::danger::ServerCertVerifier;

/// `User-Agent` of every request (HTTP and gRPC).
pub const USER_AGENT: &str = concat!("auditrelay/", env!("CARGO_PKG_VERSION"));

/// Redirects followed in one request, at most (all on the request's own origin).
pub const MAX_REDIRECTS: usize = 5;

/// Which redirects a client follows. A 30x it does not follow is returned as the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redirects {
    /// Sources: only on the origin (scheme, host, port) of the request sent, at most
    /// [`MAX_REDIRECTS`] times (ConfigCat's documented v1 → v2 is one such). reqwest strips only
    /// `Authorization` and `Cookie` on a cross-origin hop, so `X-API-Key` would follow a 30x to
    /// any host, even over plain http: such a redirect is not followed at all (the source loop
    /// refuses it, naming both URLs).
    SameOrigin,
    /// Sinks: none. A redirect is an answer, not an instruction: the token or API keys must not
    /// follow it, and a followed POST becomes a GET of whatever page answers 200.
    Never,
}

impl Redirects {
    fn policy(self) -> reqwest::redirect::Policy {
        match self {
            Redirects::SameOrigin => reqwest::redirect::Policy::custom(|attempt| {
                let same = attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
                if same && attempt.previous().len() <= MAX_REDIRECTS { attempt.follow() } else { attempt.stop() }
            }),
            Redirects::Never => reqwest::redirect::Policy::none(),
        }
    }
}

/// What differs between the agent's HTTP clients (module docs).
pub struct ClientOptions {
    pub redirects: Redirects,
    /// How the server's certificate is checked (`tls::server_verifier`). `None`: no TLS set-up
    /// at all, for a sink whose URL is `http://` (as the sinks always did).
    pub verifier: Option<Arc<dyn ServerCertVerifier>>,
    /// Offer HTTP/2 by ALPN, then HTTP/1.1 (OTLP/HTTP). Otherwise no ALPN, so HTTP/1.1, as the
    /// sources and HEC have always spoken.
    pub offer_h2: bool,
    /// Limit on connecting (TCP and TLS).
    pub connect_timeout: Duration,
    /// Limit on a whole request, answer read included (HEC). `None`: the caller bounds it (a
    /// source's per-request `request_timeout`, the OTLP sink's own timer).
    pub timeout: Option<Duration>,
    /// Headers sent with every request (OTLP's operator headers, marked sensitive).
    pub headers: HeaderMap,
    /// Connections kept open while unused, per host. `None`: reqwest's default (no bound), for
    /// a sink's client, whose batches come one after another to one receiver. Sources bound it
    /// ([`SOURCE_IDLE_CONNECTIONS_PER_HOST`]).
    pub max_idle_per_host: Option<usize>,
}

/// How many unused connections the sources' shared client keeps open to one vendor host. The
/// sources of a shared client poll in step (one interval, started together), so without a bound
/// a poll of 500 organizations leaves 500 connections open until the next one, each holding
/// about 30 KiB of buffers and channels (heaptrack; 14 MiB at 500 sources), while few of them
/// are needed at once. The price: past this many sources of one vendor, a poll may open a
/// connection (a TCP and TLS handshake) instead of reusing one; vendors' servers commonly close
/// an idle connection within a minute or so anyway. BENCHMARKS.md "sources".
pub const SOURCE_IDLE_CONNECTIONS_PER_HOST: usize = 16;

/// Why a client could not be made. Each caller words it as it always has.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The rustls set-up (client certificate, protocol versions); the text names the file.
    #[error("{0}")]
    Tls(String),
    /// reqwest refused the set-up.
    #[error("{0}")]
    Build(reqwest::Error),
}

/// THE HTTP client set-up (module docs).
pub fn client(opts: ClientOptions) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(opts.headers)
        .redirect(opts.redirects.policy())
        .connect_timeout(opts.connect_timeout);
    if let Some(idle) = opts.max_idle_per_host {
        builder = builder.pool_max_idle_per_host(idle);
    }
    if let Some(timeout) = opts.timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(verifier) = opts.verifier {
        let mut tls = crate::tls::client_config_with(verifier, None).map_err(ClientError::Tls)?;
        if opts.offer_h2 {
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        builder = builder.tls_backend_preconfigured(tls);
    }
    builder.build().map_err(ClientError::Build)
}

/// Clients shared between callers with the same settings: `build` runs once per distinct
/// `key(item)`, and every item with that key gets a clone of the same client. A
/// `reqwest::Client` is a handle: its clones share one connection pool, one TLS set-up and one
/// copy of the trusted roots, so 500 sources of one vendor keep a few connections and one root
/// store instead of 500 of each (`cargo bench --bench sources`). The key must hold every
/// setting `build` reads; a proxy is no such setting (the environment's, the same for all).
/// The first error is returned as `build` gave it.
pub fn share<T, K: Eq + std::hash::Hash, C: Clone, E>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
    build: impl Fn(&T) -> Result<C, E>,
) -> Result<Vec<C>, E> {
    let mut built: std::collections::HashMap<K, C> = std::collections::HashMap::new();
    items
        .into_iter()
        .map(|item| match built.entry(key(&item)) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.get().clone()),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(build(&item)?).clone()),
        })
        .collect()
}

/// The environment variables that choose a proxy, each in both spellings curl and reqwest read
/// (the upper-case one wins), in the order `check` shows them.
pub const PROXY_VARIABLES: [[&str; 2]; 4] = [
    ["HTTPS_PROXY", "https_proxy"],
    ["HTTP_PROXY", "http_proxy"],
    ["ALL_PROXY", "all_proxy"],
    ["NO_PROXY", "no_proxy"],
];

/// The proxy variables set in this process's environment, as `(name, value)` with any
/// credentials in a proxy URL redacted (`NO_PROXY` is a host list, shown as it is).
pub fn proxy_variables() -> Vec<(&'static str, String)> {
    let mut found = Vec::new();
    for names in PROXY_VARIABLES {
        let Some((name, value)) = names.iter().find_map(|n| std::env::var(n).ok().map(|v| (*n, v))) else {
            continue;
        };
        let shown = match name.eq_ignore_ascii_case("NO_PROXY") {
            true => value,
            false => redacted_proxy(&value),
        };
        found.push((name, shown));
    }
    found
}

/// A proxy URL from the environment, with its user and password redacted; a value that is no
/// URL is not shown at all (it may be a password pasted in the wrong place), nor one whose
/// password holds an unencoded `/`, `?` or `#` (a parser ends the host there, and would show
/// part of the password as host and port: [`ProxyParts`]).
fn redacted_proxy(value: &str) -> String {
    shown_proxy(value, true)
}

/// The proxy a connection goes through, without its credentials (a route says apart whether
/// it has some): as [`redacted_proxy`], with no user or password at all.
fn proxy_address(value: &str) -> String {
    shown_proxy(value, false)
}

/// A proxy value cut as RFC 3986 cuts a URL: the scheme (only if it looks like one: a password
/// may hold `://`), the authority up to the first `/`, `?` or `#`, and in it the credentials up
/// to its last `@`. `None`: an `@` after the authority while the authority has none, which is a
/// password with an unencoded `/`, `?` or `#` (`jdoe:2024#Summer!@proxy:3128`).
struct ProxyParts<'a> {
    scheme: &'a str,
    credentials: Option<&'a str>,
    host: &'a str,
}

fn proxy_parts(value: &str) -> Option<ProxyParts<'_>> {
    let value = value.trim();
    let (scheme, rest) = match value.split_once("://") {
        Some((s, r))
            if s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            (s, r)
        }
        _ => ("http", value),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    if !authority.contains('@') && after.contains('@') {
        return None;
    }
    let (credentials, host) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    Some(ProxyParts { scheme, credentials, host })
}

fn shown_proxy(value: &str, mark_credentials: bool) -> String {
    let Some(parts) = proxy_parts(value) else {
        return String::from("(not shown: its user or password holds an unencoded '/', '?' or '#')");
    };
    let Ok(mut url) = url::Url::parse(&format!("{}://{}", parts.scheme, parts.host)) else {
        return String::from("(not a URL; not shown)");
    };
    if !url.has_host() {
        return String::from("(not a URL; not shown)");
    }
    if let Some(c) = parts.credentials.filter(|_| mark_credentials) {
        let _ = url.set_username("REDACTED");
        if c.contains(':') {
            let _ = url.set_password(Some("REDACTED"));
        }
    }
    crate::redact::url(&url)
}

/// How a request to `url` leaves this host under the current environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Through this proxy (its URL redacted); `credentials`: the proxy URL carries some, sent
    /// as `Proxy-Authorization`.
    Proxy { proxy: String, credentials: bool },
    /// Direct, because `NO_PROXY` names the host.
    NoProxy,
    /// Direct: no proxy variable applies to this scheme.
    Direct,
    /// A proxy variable applies but the client cannot use it as meant (`why`): a value it
    /// cannot parse (it then connects directly, without a word), a password whose `#`, `/` or
    /// `?` is not percent-encoded (it would connect to another host), a SOCKS proxy (not built
    /// in: every connection fails), a CGI environment (`REQUEST_METHOD`: ignored).
    Unusable { why: String },
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Proxy { proxy, credentials: true } => write!(f, "through proxy {proxy} (with credentials)"),
            Route::Proxy { proxy, credentials: false } => write!(f, "through proxy {proxy}"),
            Route::NoProxy => f.write_str("direct (NO_PROXY names the host)"),
            Route::Direct => f.write_str("direct (no proxy variable for this scheme)"),
            Route::Unusable { why } => f.write_str(why),
        }
    }
}

/// The first of `names` set in the environment (even empty, as the matcher reads them).
fn first_env(names: [&'static str; 2]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| std::env::var(n).ok().map(|v| (*n, v)))
}

/// Whether the matcher can use `value` as a proxy URL.
fn usable(value: &str) -> bool {
    let probe = http::Uri::from_static("http://auditrelay.invalid/");
    hyper_util::client::proxy::matcher::Matcher::builder().all(value.to_owned()).build().intercept(&probe).is_some()
}

/// The host (and port) a proxy value names as written (lower case), or `None` when it cannot
/// be told ([`proxy_parts`]).
fn written_host(value: &str) -> Option<String> {
    proxy_parts(value).map(|p| p.host.to_ascii_lowercase())
}

/// Which way a request to `url` goes: the question reqwest's own matcher answers when it
/// connects (module docs), and whether the variable that decides it says what was meant.
pub fn route(url: &url::Url) -> Route {
    let Ok(uri) = url.as_str().parse::<http::Uri>() else { return Route::Direct };
    let scheme_names = match url.scheme() {
        "https" => ["HTTPS_PROXY", "https_proxy"],
        _ => ["HTTP_PROXY", "http_proxy"],
    };
    let scheme_var = first_env(scheme_names).filter(|(_, v)| !v.is_empty());
    let all_var = first_env(["ALL_PROXY", "all_proxy"]).filter(|(_, v)| !v.is_empty());
    if scheme_var.is_none() && all_var.is_none() {
        return Route::Direct;
    }
    if std::env::var_os("REQUEST_METHOD").is_some() {
        return Route::Unusable {
            why: "direct: REQUEST_METHOD is set (a CGI environment), so the proxy variables are ignored".to_owned(),
        };
    }
    // The variable the matcher takes: the scheme's when it can use it, else ALL_PROXY's.
    let applying = [&scheme_var, &all_var].into_iter().flatten().find(|(_, v)| usable(v));
    let matcher = hyper_util::client::proxy::matcher::Matcher::from_env();
    match (matcher.intercept(&uri), applying) {
        (Some(intercept), Some((name, value))) => {
            let scheme = intercept.uri().scheme_str().unwrap_or("http");
            if scheme.starts_with("socks") {
                return Route::Unusable {
                    why: format!(
                        "{name} names a {scheme} proxy: SOCKS is not supported by this build, every connection \
                         through it fails; use an HTTP proxy (http://host:port)"
                    ),
                };
            }
            let connects_to = intercept.uri().authority().map(|a| a.as_str().to_ascii_lowercase()).unwrap_or_default();
            let written = written_host(value);
            let same =
                written.as_deref().is_some_and(|w| w == connects_to || w.starts_with(&format!("{connects_to}:")));
            if !same {
                return Route::Unusable {
                    why: format!(
                        "{name} is unusable as written: its user or password holds a character to percent-encode \
                         ('#' %23, '/' %2F, '?' %3F, '@' %40, ' ' %20), so the client would connect to another host; \
                         connections through it fail"
                    ),
                };
            }
            let credentials = intercept.basic_auth().is_some() || intercept.raw_auth().is_some();
            Route::Proxy { proxy: proxy_address(value), credentials }
        }
        (Some(intercept), None) => {
            // Cannot happen (the matcher used a value `usable` refused); say what it uses.
            let credentials = intercept.basic_auth().is_some() || intercept.raw_auth().is_some();
            Route::Proxy { proxy: proxy_address(&intercept.uri().to_string()), credentials }
        }
        (None, Some(_)) => Route::NoProxy,
        (None, None) => {
            let (name, _) = scheme_var.or(all_var).unwrap_or(("HTTPS_PROXY", String::new()));
            Route::Unusable {
                why: format!(
                    "direct: {name} is set but is no proxy URL the client can use (a space, quotes, an unsupported \
                     scheme?), so it connects directly"
                ),
            }
        }
    }
}

/// The proxy a request to `url` goes through (redacted), if any: for messages about a failed
/// connection, so that an operator looks at the proxy and not the receiver.
pub fn proxy_for(url: &url::Url) -> Option<String> {
    match route(url) {
        Route::Proxy { proxy, .. } => Some(proxy),
        Route::NoProxy | Route::Direct | Route::Unusable { .. } => None,
    }
}

/// What to say of a 407 answer (a proxy refusing us) to a request for `url`: names the proxy,
/// redacted, and where its credentials come from.
pub fn proxy_refused(url: &url::Url) -> String {
    let proxy = match route(url) {
        Route::Proxy { proxy, credentials: true } => format!("{proxy} refused the credentials its variable gives"),
        Route::Proxy { proxy, credentials: false } => format!("{proxy} wants credentials, and its variable gives none"),
        Route::NoProxy | Route::Direct | Route::Unusable { .. } => {
            String::from("in the way (none is configured here) refused the request")
        }
    };
    format!(
        "answered 407 Proxy Authentication Required: the proxy {proxy}; set or correct them in the proxy \
         variable (http://user:password@proxy:port), in the agent's environment"
    )
}

/// What [`read_capped`] does with a body longer than its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Keep the first `cap` bytes and stop reading: a receiver's answer (HEC, OTLP), whose start
    /// says all we need.
    Truncate,
    /// Refuse it ([`BodyError::TooLarge`]), before reading anything when `Content-Length`
    /// announces more: a vendor's page cut short is no page (sources).
    Refuse,
}

/// Why a body was not read whole.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the cap ([`Overflow::Refuse`] only); `announced`: its `Content-Length`, when
    /// that said so before a byte was read.
    #[error("answer larger than the limit of {cap} bytes{}; not read further", announced.map_or_else(String::new, |len| format!(" (Content-Length: {len})")))]
    TooLarge { cap: usize, announced: Option<u64> },
    /// The body broke off (connection, timeout, decoding); `read`: what arrived before.
    #[error("{error}")]
    Broken { error: reqwest::Error, read: Vec<u8> },
}

impl BodyError {
    /// What was read before the body broke off (nothing of a body refused as too large).
    pub fn into_read(self) -> Vec<u8> {
        match self {
            BodyError::TooLarge { .. } => Vec::new(),
            BodyError::Broken { read, .. } => read,
        }
    }
}

/// Reads an answer's body, at most `cap` bytes of it; what happens to a longer one is `overflow`.
/// Memory never holds more than `cap` bytes of it, whatever the server sends.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    overflow: Overflow,
) -> Result<Vec<u8>, BodyError> {
    if overflow == Overflow::Refuse
        && let Some(len) = response.content_length().filter(|len| *len > cap as u64)
    {
        return Err(BodyError::TooLarge { cap, announced: Some(len) });
    }
    let mut body = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(body),
            Err(error) => return Err(BodyError::Broken { error, read: body }),
        };
        let room = cap.saturating_sub(body.len());
        if chunk.len() > room {
            return match overflow {
                Overflow::Refuse => Err(BodyError::TooLarge { cap, announced: None }),
                Overflow::Truncate => {
                    body.extend_from_slice(&chunk[..room]);
                    Ok(body)
                }
            };
        }
        body.extend_from_slice(&chunk);
        if overflow == Overflow::Truncate && body.len() == cap {
            return Ok(body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_share_builds_one_client_per_distinct_setting() {
        use std::cell::Cell;
        let builds = Cell::new(0);
        let items = [("a", None), ("b", Some("ca.pem")), ("c", None), ("d", Some("ca.pem")), ("e", Some("other.pem"))];
        let built = share(
            items,
            |(_, ca)| *ca,
            |(name, ca)| {
                builds.set(builds.get() + 1);
                Ok::<_, String>(format!("client of {name} for {ca:?}"))
            },
        )
        .unwrap();
        assert_eq!(builds.get(), 3, "one build per distinct setting: {built:?}");
        // Each item's client is the one built for its own setting (a CA file is never another's).
        assert_eq!(
            built,
            [
                "client of a for None",
                "client of b for Some(\"ca.pem\")",
                "client of a for None",
                "client of b for Some(\"ca.pem\")",
                "client of e for Some(\"other.pem\")",
            ]
        );
        let failed = share(
            items,
            |(_, ca)| *ca,
            |(name, ca)| match ca {
                Some("other.pem") => Err(format!("source {name}: ca_file other.pem unreadable")),
                _ => Ok(()),
            },
        );
        assert_eq!(failed, Err("source e: ca_file other.pem unreadable".to_owned()));
    }

    /// A server on 127.0.0.1 answering every request with a 200 of `body`, sent in `chunks`
    /// writes, announcing its length or not.
    async fn serve(body: Vec<u8>, chunks: usize, announce: bool) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let _ = conn.read(&mut buf).await;
            let head = match announce {
                true => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()),
                false => String::from("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
            };
            let _ = conn.write_all(head.as_bytes()).await;
            for part in body.chunks(body.len().div_ceil(chunks).max(1)) {
                let _ = conn.write_all(part).await;
                let _ = conn.flush().await;
            }
            let _ = conn.shutdown().await;
        });
        url
    }

    async fn read(
        body: &[u8],
        chunks: usize,
        announce: bool,
        cap: usize,
        overflow: Overflow,
    ) -> Result<Vec<u8>, BodyError> {
        let url = serve(body.to_vec(), chunks, announce).await;
        let response = reqwest::get(url).await.unwrap();
        read_capped(response, cap, overflow).await
    }

    /// A proxy URL is shown without its credentials; a value that is no URL is not shown.
    #[test]
    fn proxy_values_are_shown_redacted() {
        assert_eq!(redacted_proxy("http://bob:hunter22@proxy.corp:3128"), "http://REDACTED:REDACTED@proxy.corp:3128/");
        assert_eq!(redacted_proxy("proxy.corp:3128"), "http://proxy.corp:3128/");
        assert_eq!(redacted_proxy("http://[not a url"), "(not a URL; not shown)");
    }

    /// Pins the two behaviours: a receiver's answer is cut to its first `cap` bytes, a vendor's
    /// page longer than `cap` is refused (at once when its `Content-Length` says so).
    #[tokio::test]
    async fn bodies_are_cut_or_refused_at_the_cap() {
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        for chunks in [1, 7] {
            let whole = read(&body, chunks, false, 10_000, Overflow::Refuse).await.unwrap();
            assert_eq!(whole, body);
            let cut = read(&body, chunks, false, 4_000, Overflow::Truncate).await.unwrap();
            assert_eq!(cut, body[..4_000]);
            let refused = read(&body, chunks, false, 4_000, Overflow::Refuse).await.unwrap_err();
            assert!(matches!(refused, BodyError::TooLarge { cap: 4_000, announced: None }), "{refused}");
        }
        let announced = read(&body, 1, true, 4_000, Overflow::Refuse).await.unwrap_err();
        assert_eq!(
            announced.to_string(),
            "answer larger than the limit of 4000 bytes (Content-Length: 10000); not read further"
        );
        assert_eq!(read(&body, 1, true, 4_000, Overflow::Truncate).await.unwrap(), body[..4_000]);
    }
}
