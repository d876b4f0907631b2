//! A vendor definition as validated: what `format.rs` produces from a TOML file and what the
//! runtime (`runtime.rs`, `auth.rs`) and the mapping (`mapping.rs`) read. Pure data: no I/O.
//! Every value here has been checked (docs/vendor-definitions.md says what is allowed), so the
//! runtime never re-validates and never fails on the definition itself.

use std::path::PathBuf;
use std::time::Duration;

use super::mapping::Mapping;

/// One definition file, validated. Loaded definitions live for the process (interned by
/// `registry`), so a [`crate::vendors::VendorId`] can carry a `&'static Definition` and stay `Copy`.
#[derive(Debug)]
pub struct Definition {
    /// `[vendor] name`: the `vendor = "…"` value, `[severity]` key prefix, metrics label.
    pub name: String,
    pub title: String,
    /// OCSF `metadata.product.vendor_name` and `metadata.product.name`.
    pub vendor_name: String,
    pub product: String,
    /// The name hashed into `metadata.uid` (default: `name`).
    pub uid_name: String,
    pub base_url: Option<url::Url>,
    /// Where it was read from (shown by `auditrelay vendors`).
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex: a reload that reads the same file keeps its identity.
    pub digest: String,
    pub window: WindowDefaults,
    pub request: RequestDef,
    pub paging: PagingDef,
    pub auth: AuthDef,
    pub answer: AnswerDef,
    pub rate_limit: RateLimitDef,
    pub mapping: Mapping,
}

#[derive(Debug, Clone, Copy)]
pub struct WindowDefaults {
    pub max_span: Duration,
    pub span_limit: Option<Duration>,
    pub overlap: Duration,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// How `{from}` / `{to}` (and `answer.time`) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    Rfc3339Ms,
    EpochS,
    EpochMs,
    Date,
}

/// A template split into literal text and placeholders, checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    From,
    To,
    OrganizationId,
    PageSize,
    Offset,
    Page,
    Cursor,
}

/// A JSON body template: every string a template; a string that is exactly one numeric
/// placeholder becomes a number.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyTemplate {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(Template),
    Array(Vec<BodyTemplate>),
    Object(Vec<(String, BodyTemplate)>),
}

#[derive(Debug, Clone)]
pub struct RequestDef {
    pub method: Method,
    pub path: Template,
    pub time_format: TimeFormat,
    /// In file order.
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<BodyTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PagingKind {
    /// `has_more` or `total` pointer; neither: a short page is the last.
    Offset {
        has_more: Option<String>,
        total: Option<String>,
    },
    Page {
        first: u32,
        has_next: Option<String>,
        total_pages: Option<String>,
    },
    Cursor {
        cursor: String,
    },
    NextUrl {
        next_url: String,
    },
    Link {
        rel: String,
    },
    None,
}

#[derive(Debug, Clone)]
pub struct PagingDef {
    pub kind: PagingKind,
    pub page_size: u32,
    pub max_page_size: u32,
    pub stop_on_empty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Body,
}

#[derive(Debug, Clone)]
pub enum AuthDef {
    Header {
        header: String,
        prefix: String,
    },
    Bearer,
    Basic,
    OAuth2 {
        token_url: String,
        scopes: Vec<String>,
        client_auth: ClientAuth,
        audience: Option<String>,
        refresh_before: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFormat {
    Json,
    Ndjson,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordId {
    /// JSON Pointer to a string or number.
    Pointer(String),
    /// SHA-256 of the record's canonical JSON.
    Hash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

#[derive(Debug, Clone)]
pub struct AnswerDef {
    pub format: AnswerFormat,
    pub gzip: bool,
    /// JSON Pointer to the records array ("" = the body).
    pub records: String,
    pub id: RecordId,
    pub time: String,
    pub time_format: TimeFormat,
    pub order: Order,
    pub max_records: Option<usize>,
    pub max_bytes: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetKind {
    /// Any form the built-in vendors meet, told apart as [`crate::backoff::parse_reset`] does.
    Auto,
    Epoch,
    Delta,
    Date,
    Rfc3339,
}

#[derive(Debug, Clone)]
pub struct RateLimitDef {
    pub requests: u32,
    pub per: Duration,
    /// Header names, lower case.
    pub remaining_header: Option<String>,
    pub reset_header: Option<String>,
    pub reset: ResetKind,
    pub retry_after_header: Option<String>,
    pub forbidden_is_rate_limit: bool,
    pub bare_429_wait: Option<Duration>,
}
