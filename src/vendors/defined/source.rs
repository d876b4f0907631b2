//! One configured organization of a defined vendor: [`DefinedSource`], what a `[[sources]]`
//! table using a definition resolves to, and its protocol: the first page of a window, the
//! request of a page, reading a page (records and the next page), the answer caps and the
//! bare-429 wait. Owns the paging state machine of every `paging.kind`; must not do I/O (the
//! source loop sends and reads) nor hold state between pages beyond the [`PageCursor`] it
//! returns (the checkpoint stores that with the page).
//!
//! Next URLs (from the body or `Link`) are checked against the source's origin when the page
//! is read, so a [`PageCursor::Url`] only ever holds a URL on it; one stored before the
//! source's `base_url` moved is replaced by the window's first page when asked: the request
//! never carries the credential elsewhere. Likewise a vendor cursor sent in a header is checked
//! when its page is read, so no stored cursor can make every later request fail to build.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::auth::{TokenCache, TokenError, TokenRequest};
use crate::config::{Res, SecretText, TableKeys};

use super::model::{AuthDef, Definition, Method, PagingKind};
use super::runtime::{self, Values};
use crate::sources::{AnswerLimits, BadPage, MAX_ANSWER_ITEMS, MAX_BODY_BYTES, PAGE_SLACK, Page, PageCursor, Window};

/// The credential of a defined source, by `auth.kind`.
#[derive(Debug, Clone)]
pub enum Credential {
    /// `header` and `bearer`: `token` / `token_file`.
    Token(SecretString),
    /// `basic`: `username`, `password` (or their `_file`s).
    Basic { username: SecretString, password: SecretString },
    /// `oauth2`: the client; the access token comes from the token cache before each request.
    OAuth2 { client_id: String, client_secret: SecretString, token_url: Option<url::Url> },
}

/// One `[[sources]]` table using a definition.
#[derive(Debug, Clone)]
pub struct DefinedSource {
    pub def: &'static Definition,
    pub organization_id: String,
    /// 1..=`paging.max_page_size`; default `paging.page_size`.
    pub page_size: u32,
    pub credential: Credential,
    /// `oauth2`: the access token, shared by the copies of this source's settings.
    pub tokens: Arc<TokenCache>,
}

/// The keys of a `[[sources]]` table a definition's vendor reads besides the common ones
/// (which of the credential keys apply depends on its `auth.kind`).
pub const KEYS: &[&str] = &[
    "organization_id",
    "page_size",
    "token",
    "token_file",
    "username",
    "username_file",
    "password",
    "password_file",
    "client_id",
    "client_secret",
    "client_secret_file",
    "token_url",
];

/// [`KEYS`] as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    organization_id: Option<Spanned<String>>,
    page_size: Option<Spanned<u32>>,
    token: Option<Spanned<SecretText>>,
    token_file: Option<Spanned<String>>,
    username: Option<Spanned<SecretText>>,
    username_file: Option<Spanned<String>>,
    password: Option<Spanned<SecretText>>,
    password_file: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<SecretText>>,
    client_secret_file: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
}

impl DefinedSource {
    /// Validates a source's own keys against its definition; every key is checked before a
    /// refusal is returned (`config` module docs). A credential key of another `auth.kind` is
    /// refused by name, so a token meant for one definition is not silently ignored.
    pub fn from_keys(def: &'static Definition, k: Keys, cx: &TableKeys<'_>) -> Res<DefinedSource> {
        let organization_id = cx.required_org(k.organization_id.as_ref());
        let page_size = match &k.page_size {
            None => Ok(def.paging.page_size),
            Some(p) if (1..=def.paging.max_page_size).contains(p.get_ref()) => Ok(*p.get_ref()),
            Some(p) => cx.fail(
                p.span(),
                "page_size",
                format!(
                    "{} is out of range 1..={} (paging.max_page_size of {})",
                    p.get_ref(),
                    def.paging.max_page_size,
                    def.name
                ),
            ),
        };
        let kind = match def.auth {
            AuthDef::Header { .. } => "header",
            AuthDef::Bearer => "bearer",
            AuthDef::Basic => "basic",
            AuthDef::OAuth2 { .. } => "oauth2",
        };
        // Keys of another auth kind: refused, naming the kind that uses them.
        type Misplaced<'k> = (&'k str, Option<std::ops::Range<usize>>, &'k [&'k str]);
        let spans: [Misplaced<'_>; 9] = [
            ("token", k.token.as_ref().map(Spanned::span), &["header", "bearer"]),
            ("token_file", k.token_file.as_ref().map(Spanned::span), &["header", "bearer"]),
            ("username", k.username.as_ref().map(Spanned::span), &["basic"]),
            ("username_file", k.username_file.as_ref().map(Spanned::span), &["basic"]),
            ("password", k.password.as_ref().map(Spanned::span), &["basic"]),
            ("password_file", k.password_file.as_ref().map(Spanned::span), &["basic"]),
            ("client_id", k.client_id.as_ref().map(Spanned::span), &["oauth2"]),
            ("client_secret", k.client_secret.as_ref().map(Spanned::span), &["oauth2"]),
            ("client_secret_file", k.client_secret_file.as_ref().map(Spanned::span), &["oauth2"]),
        ];
        let mut misplaced = false;
        for (key, span, kinds) in spans {
            if let Some(span) = span.filter(|_| !kinds.contains(&kind)) {
                misplaced = true;
                cx.err(span, key, format!("is not used by vendor {} (its auth.kind is {kind:?})", def.name));
            }
        }
        if let Some(t) = k.token_url.as_ref().filter(|_| kind != "oauth2") {
            misplaced = true;
            cx.err(t.span(), "token_url", format!("is not used by vendor {} (its auth.kind is {kind:?})", def.name));
        }
        let credential = match &def.auth {
            AuthDef::Header { .. } | AuthDef::Bearer => {
                cx.required_secret("token", &k.token, &k.token_file).map(Credential::Token)
            }
            AuthDef::Basic => {
                let username = cx.required_secret("username", &k.username, &k.username_file);
                let password = cx.required_secret("password", &k.password, &k.password_file);
                username.and_then(|username| Ok(Credential::Basic { username, password: password? }))
            }
            AuthDef::OAuth2 { token_url, .. } => {
                let client_id = match k.client_id.as_ref().filter(|c| !c.get_ref().trim().is_empty()) {
                    Some(c) => Ok(c.get_ref().trim().to_owned()),
                    None => cx.fail(
                        k.client_id.as_ref().map_or(cx.table(), Spanned::span),
                        "client_id",
                        format!("required for vendor {} (auth.kind \"oauth2\")", def.name),
                    ),
                };
                let secret = cx.required_secret("client_secret", &k.client_secret, &k.client_secret_file);
                // The source's token_url, else the definition's: absolute, or joined to base_url.
                let url = match (&k.token_url, cx.base_url()) {
                    (Some(t), _) => cx.url(&Some(t.clone()), "token_url", "").map(Some),
                    (None, Some(base)) => match base.join(token_url) {
                        Ok(u) => Ok(Some(u)),
                        Err(e) => cx.fail(
                            cx.table(),
                            "token_url",
                            format!("auth.token_url of {} does not join base_url ({e})", def.name),
                        ),
                    },
                    (None, None) => Ok(None),
                };
                // The client secret goes there: https only (plain http on loopback, for tests).
                let url = match url {
                    Ok(Some(u)) if !super::format::credential_may_go_to(&u) => cx.fail(
                        k.token_url.as_ref().map_or(cx.table(), Spanned::span),
                        "token_url",
                        format!(
                            "the token URL {} of vendor {} must be https (plain http only on a loopback host)",
                            crate::redact::url(&u),
                            def.name
                        ),
                    ),
                    other => other,
                };
                match (client_id, secret, url) {
                    (Ok(client_id), Ok(client_secret), Ok(token_url)) => {
                        Ok(Credential::OAuth2 { client_id, client_secret, token_url })
                    }
                    _ => Err(crate::config::Reported),
                }
            }
        };
        let source = DefinedSource {
            def,
            organization_id: organization_id?,
            page_size: page_size?,
            credential: credential?,
            tokens: Arc::new(TokenCache::new()),
        };
        if misplaced {
            return Err(crate::config::Reported);
        }
        Ok(source)
    }

    pub fn secrets(&self) -> Vec<&SecretString> {
        match &self.credential {
            Credential::Token(t) => vec![t],
            Credential::Basic { username, password } => vec![username, password],
            Credential::OAuth2 { client_secret, .. } => vec![client_secret],
        }
    }

    /// The rate-limit key's credential material: the auth kind, then the credential (the
    /// client id and secret for OAuth2: every token of one client counts against one budget).
    pub fn credential_parts(&self) -> Vec<&str> {
        match &self.credential {
            Credential::Token(t) => vec!["token", t.expose_secret()],
            Credential::Basic { username, password } => {
                vec!["basic", username.expose_secret(), password.expose_secret()]
            }
            Credential::OAuth2 { client_id, client_secret, .. } => {
                vec!["oauth2", client_id.as_str(), client_secret.expose_secret()]
            }
        }
    }

    /// The source's own keys for `auditrelay check`, secrets redacted.
    pub fn render(&self, kv: &mut dyn FnMut(&str, String)) {
        kv("organization_id", format!("{:?}", self.organization_id));
        kv("page_size", self.page_size.to_string());
        let redacted = || "\"[redacted]\"".to_owned();
        match &self.credential {
            Credential::Token(_) => kv("token", redacted()),
            Credential::Basic { .. } => {
                kv("username", redacted());
                kv("password", redacted());
            }
            Credential::OAuth2 { client_id, token_url, .. } => {
                kv("client_id", format!("{client_id:?}"));
                kv("client_secret", redacted());
                if let Some(url) = token_url {
                    kv("token_url", format!("{:?}", crate::redact::url(url)));
                }
            }
        }
        kv("# definition", format!("{:?}", self.def.path.display().to_string()));
    }

    /// The OAuth2 access token for the next request (`None` for other auth kinds).
    pub async fn bearer(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        clock: &crate::clock::Clock,
    ) -> Result<Option<SecretString>, TokenError> {
        let (
            AuthDef::OAuth2 { token_url, scopes, client_auth, audience, refresh_before },
            Credential::OAuth2 { client_id, client_secret, token_url: own },
        ) = (&self.def.auth, &self.credential)
        else {
            return Ok(None);
        };
        let url = match own {
            Some(u) => u.clone(),
            None => base.join(token_url).map_err(|e| TokenError::Refused {
                url: token_url.clone(),
                status: 0,
                detail: format!("auth.token_url does not join base_url ({e})"),
            })?,
        };
        let req = TokenRequest {
            token_url: &url,
            client_id,
            client_secret,
            scopes,
            client_auth: *client_auth,
            audience: audience.as_deref(),
            refresh_before: *refresh_before,
        };
        self.tokens.bearer(http, &req, clock).await.map(Some)
    }

    /// Drops the OAuth2 access token after the vendor refused it; true for an OAuth2 source.
    pub fn invalidate_token(&self) -> bool {
        if matches!(self.def.auth, AuthDef::OAuth2 { .. }) {
            self.tokens.invalidate();
            return true;
        }
        false
    }

    pub fn first_page(&self) -> PageCursor {
        match &self.def.paging.kind {
            PagingKind::Offset { .. } => PageCursor::Offset { skip: 0 },
            PagingKind::Page { first, .. } => PageCursor::Number { page: *first },
            PagingKind::Cursor { .. } | PagingKind::NextUrl { .. } | PagingKind::Link { .. } => PageCursor::First,
            PagingKind::None => PageCursor::Whole,
        }
    }

    pub fn bare_429_wait(&self) -> Option<Duration> {
        self.def.rate_limit.bare_429_wait
    }

    /// The definition's rate-limit signals, the per-vendor input of
    /// [`crate::sources::ratelimit::classify_for`] and `budget_pause_for`.
    pub fn rate_signals(&self) -> crate::sources::ratelimit::RateSignals {
        let r = &self.def.rate_limit;
        crate::sources::ratelimit::RateSignals {
            remaining_header: r.remaining_header.clone(),
            reset_header: r.reset_header.clone(),
            reset: Some(r.reset),
            retry_after_header: r.retry_after_header.clone(),
            forbidden_is_rate_limit: r.forbidden_is_rate_limit,
        }
    }

    /// `answer.max_records` / `max_bytes` (only with `paging.kind = "none"`, checked at load).
    pub fn answer_limits(&self) -> AnswerLimits {
        AnswerLimits { max_records: self.def.answer.max_records, max_bytes: self.def.answer.max_bytes }
    }

    /// The placeholders' values on `page` of `window`.
    fn values<'a>(&'a self, window: &Window, page: &'a PageCursor) -> Values<'a> {
        let mut v = Values::new(window, self.def.request.time_format, &self.organization_id, self.page_size);
        match page {
            PageCursor::Offset { skip } => v.offset = Some(*skip),
            PageCursor::Number { page } => v.page = Some(*page),
            PageCursor::Cursor { cursor } => v.cursor = Some(cursor),
            PageCursor::First | PageCursor::Whole | PageCursor::Url { .. } => {}
        }
        v
    }

    /// The URL of `page`: a next URL as given, else `base` + the path with the query.
    pub fn url(&self, base: &url::Url, window: &Window, page: &PageCursor) -> Result<url::Url, String> {
        let page = &*self.on_origin(base, page);
        if let PageCursor::Url { url } = page {
            return url::Url::parse(url).map_err(|e| format!("the stored next URL is not a URL ({e})"));
        }
        let values = self.values(window, page);
        let path = runtime::render_path(&self.def.request.path, &values)
            .ok_or_else(|| "request.path uses a placeholder with no value on this page".to_owned())?;
        let mut url = base.clone();
        // The definition's path goes under the base URL's own path (a deployment behind a
        // prefix), never replaces it.
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url.set_query(None);
        let pairs: Vec<(String, String)> = self
            .def
            .request
            .query
            .iter()
            .filter_map(|(k, t)| runtime::render(t, &values).map(|v| (k.clone(), v)))
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// The request of `page`. `bearer`: the OAuth2 access token (the caller's async step gets
    /// it from the token cache), unused by the other auth kinds.
    pub fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        page: &PageCursor,
        bearer: Option<&SecretString>,
    ) -> Result<reqwest::RequestBuilder, String> {
        let page = &*self.on_origin(base, page);
        let url = self.url(base, window, page)?;
        let next_url = matches!(page, PageCursor::Url { .. });
        let values = self.values(window, page);
        let mut request = match self.def.request.method {
            // A next URL is asked as given: with GET, whatever the first request's method.
            Method::Post if !next_url => {
                let body = self.def.request.body.as_ref().and_then(|b| runtime::render_body(b, &values));
                let request = http.post(url);
                match body {
                    // reqwest's `json` feature is off: the body written here.
                    Some(body) => {
                        request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string())
                    }
                    None => request,
                }
            }
            _ => http.get(url),
        };
        for (name, template) in &self.def.request.headers {
            if let Some(value) = runtime::render(template, &values) {
                request = request.header(name.as_str(), value);
            }
        }
        request = match (&self.def.auth, &self.credential) {
            (AuthDef::Header { header, prefix }, Credential::Token(token)) => {
                let mut value = http::HeaderValue::from_str(&format!("{prefix}{}", token.expose_secret()))
                    .map_err(|_| "the token holds characters an HTTP header cannot".to_owned())?;
                value.set_sensitive(true);
                request.header(header.as_str(), value)
            }
            (AuthDef::Bearer, Credential::Token(token)) => request.bearer_auth(token.expose_secret()),
            (AuthDef::Basic, Credential::Basic { username, password }) => {
                request.basic_auth(username.expose_secret(), Some(password.expose_secret()))
            }
            (AuthDef::OAuth2 { .. }, Credential::OAuth2 { .. }) => match bearer {
                Some(token) => request.bearer_auth(token.expose_secret()),
                None => return Err("no OAuth2 access token for this request".to_owned()),
            },
            _ => return Err(format!("the credential does not fit auth.kind of {}", self.def.name)),
        };
        Ok(request)
    }

    /// Reads one answer: its records (rejected ones dead-lettered, never dropped) and the next
    /// page, from the body or the `Link` headers. `asked` is the URL of this request (a
    /// relative next URL is resolved against it), `base` the source's (the origin rule).
    pub fn read_page(
        &self,
        body: &[u8],
        link_headers: &[&str],
        asked: &url::Url,
        base: &url::Url,
        page: &PageCursor,
    ) -> Result<Page, BadPage> {
        let def = self.def;
        let body = runtime::decode_body(body, def.answer.gzip, MAX_BODY_BYTES)?;
        let whole = matches!(def.paging.kind, PagingKind::None);
        // A definition that never sends `{page_size}` cannot know the vendor's page size: its
        // pages are bounded by the answer cap only, never refused for being "too large".
        let cap = if whole || !self.asks_page_size() { MAX_ANSWER_ITEMS } else { self.page_size as usize + PAGE_SLACK };
        let answer = runtime::read_answer(&body, &def.answer, cap)?;
        if answer.overflow {
            if whole {
                return Ok(Page { oversized: true, ..Page::default() });
            }
            let n = format!("more than {cap}");
            return Err(BadPage(format!(
                "{n} items on a page of {} (at most {cap} taken): not a page",
                self.page_size
            )));
        }
        let n = answer.items.len();
        let mut out = Page::default();
        for raw in answer.items {
            match runtime::read_record(raw, &def.answer) {
                Ok(r) => out.records.push(r),
                Err(r) => out.rejected.push(r),
            }
        }
        // An empty page that names another is followed (bounded by `max_pages` and the
        // repeated-target rule): ending the window there would lose the pages after it.
        // `paging.stop_on_empty` no longer ends a window anywhere (see the docs).
        out.next = self.next(answer.document, link_headers, asked, base, page, n)?;
        if let Some(PageCursor::Cursor { cursor }) = &out.next {
            self.cursor_sendable(cursor)?;
        }
        Ok(out)
    }

    /// Whether a request of this definition sends `{page_size}` (path, query, headers, body).
    fn asks_page_size(&self) -> bool {
        let r = &self.def.request;
        let uses = |t: &super::model::Template| t.0.contains(&super::model::Piece::Var(super::model::Var::PageSize));
        fn body_uses(b: &super::model::BodyTemplate, uses: &dyn Fn(&super::model::Template) -> bool) -> bool {
            use super::model::BodyTemplate as B;
            match b {
                B::String(t) => uses(t),
                B::Array(items) => items.iter().any(|i| body_uses(i, uses)),
                B::Object(fields) => fields.iter().any(|(_, v)| body_uses(v, uses)),
                B::Null | B::Bool(_) | B::Number(_) => false,
            }
        }
        uses(&r.path)
            || r.query.iter().any(|(_, t)| uses(t))
            || r.headers.iter().any(|(_, t)| uses(t))
            || r.body.as_ref().is_some_and(|b| body_uses(b, &uses))
    }

    /// A vendor's cursor the definition sends in a header must make a valid header value: else
    /// the page is malformed (retried, and never stored with the checkpoint, where it would
    /// make every later request fail to build). Query and path values are percent-encoded.
    fn cursor_sendable(&self, cursor: &str) -> Result<(), BadPage> {
        let in_header = self
            .def
            .request
            .headers
            .iter()
            .find(|(_, t)| t.0.contains(&super::model::Piece::Var(super::model::Var::Cursor)));
        match in_header {
            Some((name, _)) if http::HeaderValue::from_str(cursor).is_err() => Err(BadPage(format!(
                "the answer's cursor holds characters an HTTP header value cannot (request.headers.{name} sends it): \
                 not a page of {}",
                self.def.name
            ))),
            _ => Ok(()),
        }
    }

    /// `page`, unless it is a stored next URL not on `base`'s origin (the source's `base_url`
    /// moved since it was stored, or it is not a URL): then the window's first page, with a
    /// warning. The credential is never sent off the current origin, and the window is swept
    /// again from its start rather than stalled (dedupe drops what was already taken).
    fn on_origin<'p>(&self, base: &url::Url, page: &'p PageCursor) -> std::borrow::Cow<'p, PageCursor> {
        let PageCursor::Url { url } = page else { return std::borrow::Cow::Borrowed(page) };
        let why = match url::Url::parse(url) {
            Ok(u) => match runtime::same_origin(base, &u) {
                Ok(()) => return std::borrow::Cow::Borrowed(page),
                Err(why) => why,
            },
            Err(e) => format!("the stored next URL is not a URL ({e})"),
        };
        tracing::warn!(
            vendor = %self.def.name,
            organization_id = %self.organization_id,
            "{why}; the window is asked again from its first page on {}",
            crate::redact::url(base)
        );
        std::borrow::Cow::Owned(self.first_page())
    }

    fn next(
        &self,
        doc: Option<&serde_json::value::RawValue>,
        link_headers: &[&str],
        asked: &url::Url,
        base: &url::Url,
        page: &PageCursor,
        n: usize,
    ) -> Result<Option<PageCursor>, BadPage> {
        let full = n >= self.page_size as usize;
        // A next target that repeats the one just asked is an error even on an empty page
        // (`stop_on_empty` included): asked again, a vendor's transient empty page gives its
        // records; ending the window there would move the checkpoint past them.
        let repeated = |what: String| -> Result<Option<PageCursor>, BadPage> {
            Err(BadPage(format!("{what}: paging would never end; the window is asked again")))
        };
        // A named flag must be in the answer: without it the answer is of another shape (a
        // proxy's JSON, an error envelope), and reading it as "no more" would end the window
        // early and move the checkpoint past pages never asked. `null` is "no more".
        let flag = |p: &str| match runtime::pointer(doc, p)? {
            None => Err(BadPage(format!("{p} of the answer is missing: not a page of {}", self.def.name))),
            Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(BadPage(format!("{p} of the answer is not a boolean"))),
        };
        let count = |p: &str| match runtime::pointer(doc, p)? {
            Some(Value::Number(x)) => x.as_u64().ok_or_else(|| BadPage(format!("{p} of the answer is not a count"))),
            Some(Value::String(s)) => {
                s.trim().parse().map_err(|_| BadPage(format!("{p} of the answer is not a count")))
            }
            _ => Err(BadPage(format!("{p} of the answer is missing or not a count"))),
        };
        let text = |p: &str| match runtime::pointer(doc, p)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(x)) => Ok(Some(x.to_string())),
            Some(_) => Err(BadPage(format!("{p} of the answer is not a string"))),
        };
        let follow = |target: Result<url::Url, String>| -> Result<Option<PageCursor>, BadPage> {
            let url = target.map_err(BadPage)?;
            runtime::same_origin(base, &url).map_err(BadPage)?;
            Ok(Some(PageCursor::Url { url: url.to_string() }))
        };
        match &self.def.paging.kind {
            PagingKind::Offset { has_more, total } => {
                let skip = match page {
                    PageCursor::Offset { skip } => *skip,
                    _ => 0,
                };
                let next = skip + n as u64;
                let more = match (has_more, total) {
                    (Some(p), _) => flag(p)?,
                    (None, Some(p)) => next < count(p)?,
                    (None, None) => full,
                };
                if more && n == 0 {
                    return repeated(format!(
                        "{}: a page with no records says there is another at the same offset",
                        self.def.name
                    ));
                }
                Ok(more.then_some(PageCursor::Offset { skip: next }))
            }
            PagingKind::Page { first, has_next, total_pages } => {
                let number = match page {
                    PageCursor::Number { page } => *page,
                    _ => *first,
                };
                let more = match (has_next, total_pages) {
                    (Some(p), _) => flag(p)?,
                    // Pages first..first+total: this one is number - first + 1 of them.
                    (None, Some(p)) => u64::from(number - first.min(&number)) + 1 < count(p)?,
                    (None, None) => full,
                };
                match number.checked_add(1) {
                    Some(next) => Ok(more.then_some(PageCursor::Number { page: next })),
                    None => Err(BadPage("the page number overflows".into())),
                }
            }
            PagingKind::Cursor { cursor } => match text(cursor)? {
                Some(c) if matches!(page, PageCursor::Cursor { cursor } if *cursor == c) => {
                    repeated(format!("{cursor} of the answer repeats the cursor just asked"))
                }
                Some(c) => Ok(Some(PageCursor::Cursor { cursor: c })),
                None => Ok(None),
            },
            PagingKind::NextUrl { next_url } => match text(next_url)? {
                Some(target) => {
                    let next = follow(
                        asked.join(&target).map_err(|e| format!("{next_url} of the answer is not a URL ({e})")),
                    )?;
                    if next == Some(PageCursor::Url { url: asked.to_string() }) {
                        return repeated(format!("{next_url} of the answer is the page just asked"));
                    }
                    Ok(next)
                }
                None => Ok(None),
            },
            PagingKind::Link { rel } => match runtime::next_link(link_headers, rel, asked) {
                Some(target) => {
                    let next = follow(target)?;
                    if next == Some(PageCursor::Url { url: asked.to_string() }) {
                        return repeated(format!("the Link header's {rel:?} target is the page just asked"));
                    }
                    Ok(next)
                }
                None => Ok(None),
            },
            PagingKind::None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
