//! OAuth2 client credentials (RFC 6749 §4.4) for vendor definitions with `auth.kind = "oauth2"`.
//! SKELETON: the lead writes this file. Its public API is fixed (the core is built against it):
//!
//! ```ignore
//! pub struct TokenRequest<'a> {
//!     pub token_url: &'a url::Url,
//!     pub client_id: &'a str,
//!     pub client_secret: &'a secrecy::SecretString,
//!     pub scopes: &'a [String],
//!     pub client_auth: super::model::ClientAuth,
//!     pub audience: Option<&'a str>,
//!     pub refresh_before: std::time::Duration,
//! }
//! pub enum TokenError {
//!     /// The token endpoint refused the client (400 invalid_client / unauthorized_client /
//!     /// invalid_scope, 401, 403): an operator error, like a refused key.
//!     Refused { url: String, status: u16, detail: String },
//!     /// 5xx, 429, a transport error or an unreadable answer: retried with back-off.
//!     Unavailable { url: String, detail: String, retry_after: Option<std::time::Duration> },
//! }
//! impl std::fmt::Display for TokenError { /* names the redacted URL, never a secret */ }
//! #[derive(Debug, Default)] pub struct TokenCache { /* Mutex<Option<(SecretString, expires: Instant)>> */ }
//! impl TokenCache {
//!     pub fn new() -> TokenCache;
//!     /// The cached token while it is valid for more than `refresh_before`, else a new one.
//!     pub async fn bearer(&self, http: &reqwest::Client, req: &TokenRequest<'_>, clock: &crate::clock::Clock)
//!         -> Result<secrecy::SecretString, TokenError>;
//!     /// Drops the cached token (the vendor answered 401 with it).
//!     pub fn invalidate(&self);
//!     /// Tokens fetched so far (a metric).
//!     pub fn fetched(&self) -> u64;
//! }
//! ```
