//! A definition file's text → a validated [`Definition`] (docs/vendor-definitions.md is the
//! contract: every key, placeholder, paging and auth kind).
//!
//! Owns: the `Raw*` serde structs (`deny_unknown_fields`, values in [`toml::Spanned`] so that
//! every error names its line), the checks of every key, template and JSON Pointer parsing,
//! and the size cap of a file. Must not: do network I/O, read anything but the one file, or
//! know how the runtime uses a definition. `[ocsf]` is the mapping's (`mapping.rs`): read here
//! as [`MappingKeys`] and validated by [`Mapping::from_keys`], its errors converted to ours.
//!
//! Errors accumulate like the configuration's: each section is read on its own, a key serde
//! refuses is recorded, dropped and its section read again without it, and every later check
//! runs on what could be read, so one `check` shows every mistake. A TOML syntax error is the
//! exception (the parser stops at the first). Messages never quote a line of the file.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::mapping::{Mapping, MappingKeys};
use super::model::*;

/// The largest definition file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// `paging.page_size` / `max_page_size` bounds.
pub const MAX_PAGE_SIZE: i64 = 10_000;

/// One problem of a definition file: the 1-based line (none for the file as a whole), the key
/// path (`paging.page_size`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// A definition file refused, with every problem found in it.
#[derive(Debug, Clone)]
pub struct DefinitionErrors {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for DefinitionErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let file = self.file.display();
            match (p.line, p.key.is_empty()) {
                (Some(line), false) => write!(f, "{file}:{line}: {}: {}", p.key, p.message)?,
                (Some(line), true) => write!(f, "{file}:{line}: {}", p.message)?,
                (None, false) => write!(f, "{file}: {}: {}", p.key, p.message)?,
                (None, true) => write!(f, "{file}: {}", p.message)?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for DefinitionErrors {}

/// Reads and validates the definition file at `path` (at most [`MAX_FILE_BYTES`]).
pub fn load(path: &Path) -> Result<Definition, DefinitionErrors> {
    use std::io::Read as _;
    let whole = |message: String| DefinitionErrors {
        file: path.to_path_buf(),
        problems: vec![Problem { line: None, key: String::new(), message }],
    };
    let file = std::fs::File::open(path).map_err(|e| whole(format!("cannot open the definition file: {e}")))?;
    let mut bytes = Vec::new();
    // One byte past the cap tells an oversized file from one exactly at it, without reading
    // the rest of a huge or endless file.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read the definition file: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole(format!("is larger than {} KiB, the largest definition file read", MAX_FILE_BYTES / 1024)));
    }
    let text = String::from_utf8(bytes).map_err(|_| whole("is not UTF-8 text".to_owned()))?;
    parse(path, &text)
}

/// Validates the text of a definition file; `path` is where it came from (for messages and
/// `Definition::path`).
pub fn parse(path: &Path, text: &str) -> Result<Definition, DefinitionErrors> {
    let cx = Cx { text, problems: Default::default(), keys: Default::default(), line_starts: Default::default() };
    let def = if text.len() as u64 > MAX_FILE_BYTES {
        cx.err(None, "", format!("is larger than {} KiB, the largest definition file read", MAX_FILE_BYTES / 1024));
        None
    } else {
        cx.read(path, text)
    };
    let mut problems = cx.problems.take();
    match def {
        Some(def) if problems.is_empty() => Ok(def),
        _ => {
            if problems.is_empty() {
                problems.push(Problem { line: None, key: String::new(), message: "invalid definition".into() });
            }
            problems.sort_by_key(|p| (p.line.is_none(), p.line));
            Err(DefinitionErrors { file: path.to_path_buf(), problems })
        }
    }
}

type Text = Option<Spanned<String>>;
type Int = Option<Spanned<i64>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVendor {
    name: Text,
    title: Text,
    vendor_name: Text,
    product: Text,
    base_url: Text,
    uid_name: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    max_span: Text,
    overlap: Text,
    poll_interval: Text,
    span_limit: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Text,
    path: Text,
    time_format: Text,
    query: Option<BTreeMap<String, Spanned<String>>>,
    headers: Option<BTreeMap<String, Spanned<String>>>,
    body: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaging {
    kind: Text,
    has_more: Text,
    total: Text,
    first: Int,
    has_next: Text,
    total_pages: Text,
    cursor: Text,
    next_url: Text,
    rel: Text,
    page_size: Int,
    max_page_size: Int,
    stop_on_empty: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    kind: Text,
    header: Text,
    prefix: Text,
    token_url: Text,
    scopes: Option<Spanned<Vec<String>>>,
    client_auth: Text,
    audience: Text,
    refresh_before: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer {
    format: Text,
    gzip: Option<bool>,
    records: Text,
    id: Text,
    time: Text,
    time_format: Text,
    order: Text,
    max_records: Int,
    max_bytes: Int,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests: Int,
    per: Text,
    remaining_header: Text,
    reset_header: Text,
    reset: Text,
    retry_after_header: Text,
    forbidden_is_rate_limit: Option<bool>,
    bare_429_wait: Text,
}

const SECTIONS: &[&str] = &["vendor", "window", "request", "paging", "auth", "answer", "rate_limit", "ocsf"];

/// The problems found so far, and the text for lines.
struct Cx<'t> {
    text: &'t str,
    problems: std::cell::RefCell<Vec<Problem>>,
    /// Keys with a problem: a key refused for its type is dropped, and must not then be
    /// reported "required" too.
    keys: std::cell::RefCell<std::collections::BTreeSet<String>>,
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

/// A problem was recorded; the value is unusable.
#[derive(Debug)]
struct Reported;
type Res<T> = Result<T, Reported>;

impl Cx<'_> {
    fn line(&self, at: usize) -> usize {
        let starts = self.line_starts.get_or_init(|| {
            let newlines = self.text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1);
            std::iter::once(0).chain(newlines).collect()
        });
        starts.partition_point(|s| *s <= at).max(1)
    }

    fn err(&self, span: impl Into<Option<Range<usize>>>, key: &str, message: impl Into<String>) -> Reported {
        if !key.is_empty() && !self.keys.borrow_mut().insert(key.to_owned()) {
            return Reported;
        }
        let line = span.into().map(|s| self.line(s.start));
        self.problems.borrow_mut().push(Problem { line, key: key.to_owned(), message: message.into() });
        Reported
    }

    fn fail<T>(&self, span: impl Into<Option<Range<usize>>>, key: &str, message: impl Into<String>) -> Res<T> {
        Err(self.err(span, key, message))
    }

    fn read(&self, path: &Path, text: &str) -> Option<Definition> {
        // Only the parser's message and span: its Display would quote the line.
        let root = match DeTable::parse(text) {
            Ok(root) => root,
            Err(e) => {
                self.err(e.span(), "", e.message().trim_end().to_owned());
                return None;
            }
        };
        let root_span = root.span();
        let mut sections: BTreeMap<String, Spanned<DeTable<'_>>> = BTreeMap::new();
        for (key, value) in root.into_inner() {
            let name = key.get_ref().to_string();
            if !SECTIONS.contains(&name.as_str()) {
                self.err(key.span(), &name, format!("unknown section, expected one of: {}", SECTIONS.join(", ")));
                continue;
            }
            let span = value.span();
            match value.into_inner() {
                DeValue::Table(t) => {
                    sections.insert(name, Spanned::new(span, t));
                }
                other => {
                    self.err(span, &name, format!("must be a table [{name}], not {}", other.type_str()));
                }
            }
        }
        let mut section = |name: &str, required: bool| match sections.remove(name) {
            Some(t) => Some(t),
            None => {
                if required {
                    self.err(root_span.start..root_span.start, name, format!("the section [{name}] is required"));
                }
                None
            }
        };
        let vendor = section("vendor", true).and_then(|t| self.table::<RawVendor>(t, "vendor"));
        let window = match section("window", false) {
            Some(t) => self.table::<RawWindow>(t, "window"),
            None => Some(RawWindow::default()),
        };
        let request = section("request", true).map(|t| (t.span(), self.table::<RawRequest>(t, "request")));
        let paging = section("paging", true).and_then(|t| self.table::<RawPaging>(t, "paging"));
        let auth = section("auth", true).and_then(|t| self.table::<RawAuth>(t, "auth"));
        let answer = section("answer", true).and_then(|t| self.table::<RawAnswer>(t, "answer"));
        let rate_limit = section("rate_limit", true).map(|t| (t.span(), self.table::<RawRateLimit>(t, "rate_limit")));
        let ocsf = section("ocsf", true).and_then(|t| self.table::<MappingKeys>(t, "ocsf"));

        let vendor = vendor.and_then(|v| self.vendor(v).ok());
        let window = window.and_then(|w| self.window(w).ok());
        let paging = paging.and_then(|p| self.paging(p).ok());
        let auth = auth.and_then(|a| self.auth(a).ok());
        let request = match request {
            Some((span, Some(r))) => self.request(r, span, paging.as_ref().map(|p| &p.kind), auth.as_ref()).ok(),
            _ => None,
        };
        let answer = answer.and_then(|a| self.answer(a, paging.as_ref().map(|p| &p.kind)).ok());
        let rate_limit = match rate_limit {
            Some((span, Some(r))) => self.rate_limit(r, span).ok(),
            _ => None,
        };
        let mapping = ocsf.and_then(|keys| match Mapping::from_keys(keys) {
            Ok(m) => Some(m),
            Err(errors) => {
                for e in errors {
                    self.err(e.span, &e.key, e.message);
                }
                None
            }
        });
        let (vendor, window, request, paging, auth, answer, rate_limit, mapping) =
            (vendor?, window?, request?, paging?, auth?, answer?, rate_limit?, mapping?);
        let digest = {
            use sha2::Digest as _;
            let hash = sha2::Sha256::digest(text.as_bytes());
            hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        Some(Definition {
            name: vendor.name,
            title: vendor.title,
            vendor_name: vendor.vendor_name,
            product: vendor.product,
            uid_name: vendor.uid_name,
            base_url: vendor.base_url,
            path: path.to_path_buf(),
            digest,
            window,
            request,
            paging,
            auth,
            answer,
            rate_limit,
            mapping,
        })
    }

    /// Reads one section as `R`: a key serde refuses is recorded, dropped and the section read
    /// again without it (so one bad key does not hide the next); `None` when it cannot be read.
    fn table<R: DeserializeOwned>(&self, table: Spanned<DeTable<'_>>, section: &str) -> Option<R> {
        let (span, mut table) = (table.span(), table.into_inner());
        // Bounded: each round removes one key, or ends.
        loop {
            let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
            let e = match serde_path_to_error::deserialize::<_, R>(de) {
                Ok(raw) => return Some(raw),
                Err(e) => e,
            };
            let culprit = crate::config::key_at_fault(&e, &table);
            // A `Spanned` value's inner field is no key the file has.
            let path = e.path().to_string().replace(".$__serde_spanned_private_value", "");
            let key = match (&culprit, path.as_str()) {
                (_, p) if !p.is_empty() && p != "?" => format!("{section}.{p}"),
                (Some(k), _) => format!("{section}.{k}"),
                (None, _) => section.to_owned(),
            };
            // An unknown key's error names the section's path: name the key itself.
            let key = match &culprit {
                Some(k) if e.inner().message().starts_with("unknown field") => format!("{section}.{k}"),
                _ => key,
            };
            let span = e.inner().span().unwrap_or(span.clone());
            self.err(span, &key, e.inner().message().trim_end().to_owned());
            match culprit {
                Some(k) => {
                    table.remove(k.as_str());
                }
                None => return None,
            }
        }
    }

    fn required(&self, v: Text, section: Range<usize>, key: &str) -> Res<Spanned<String>> {
        match v {
            Some(v) => Ok(v),
            None => self.fail(section, key, "is required"),
        }
    }

    fn vendor(&self, v: RawVendor) -> Res<Vendor> {
        let start = 0..0;
        let name = self.required(v.name, start.clone(), "vendor.name").and_then(|n| {
            let s = n.get_ref();
            if !valid_name(s) {
                return self.fail(n.span(), "vendor.name", "must match [a-z0-9][a-z0-9_-]{0,62}");
            }
            if let Some(builtin) = crate::vendors::VendorId::from_name(s) {
                let msg = format!("{:?} is a built-in vendor's name; choose another", builtin.name());
                return self.fail(n.span(), "vendor.name", msg);
            }
            Ok(n.into_inner())
        });
        let vendor_name = self
            .required(v.vendor_name, start.clone(), "vendor.vendor_name")
            .and_then(|s| self.text(s, "vendor.vendor_name"));
        let product = self.required(v.product, start, "vendor.product").and_then(|s| self.text(s, "vendor.product"));
        let title = v.title.map(|t| self.text(t, "vendor.title")).transpose();
        let uid_name = v
            .uid_name
            .map(|u| {
                if valid_name(u.get_ref()) {
                    Ok(u.into_inner())
                } else {
                    self.fail(u.span(), "vendor.uid_name", "must match [a-z0-9][a-z0-9_-]{0,62}")
                }
            })
            .transpose();
        let base_url = v.base_url.map(|u| self.secure_url(&u, "vendor.base_url")).transpose();
        let name = name?;
        Ok(Vendor {
            title: title?.unwrap_or_else(|| name.clone()),
            uid_name: uid_name?.unwrap_or_else(|| name.clone()),
            vendor_name: vendor_name?,
            product: product?,
            base_url: base_url?,
            name,
        })
    }

    fn text(&self, v: Spanned<String>, key: &str) -> Res<String> {
        if v.get_ref().trim().is_empty() {
            return self.fail(v.span(), key, "must not be empty");
        }
        Ok(v.into_inner())
    }

    fn url(&self, v: &Spanned<String>, key: &str) -> Res<url::Url> {
        // Never echo the URL: a pasted one may hold credentials.
        let u = url::Url::parse(v.get_ref()).map_err(|e| self.err(v.span(), key, format!("invalid URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") || !u.has_host() {
            return self.fail(v.span(), key, format!("must be an http(s) URL with a host, not {:?}", u.scheme()));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return self.fail(v.span(), key, "must not hold credentials (user:password@)");
        }
        Ok(u)
    }

    /// [`Self::url`] that a credential may be sent to: https, plain http only on a loopback
    /// host (the tests' simulators). A definition file the operator only installed must not
    /// make a token or client secret cross the network in clear text.
    fn secure_url(&self, v: &Spanned<String>, key: &str) -> Res<url::Url> {
        let u = self.url(v, key)?;
        if !credential_may_go_to(&u) {
            return self.fail(v.span(), key, "must be https (plain http only on a loopback host)");
        }
        Ok(u)
    }

    fn duration(&self, v: &Spanned<String>, key: &str) -> Res<Duration> {
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d.is_zero() => self.fail(v.span(), key, "must be longer than 0s"),
            Ok(d) => Ok(d),
            Err(e) => self.fail(v.span(), key, format!("not a duration ({e}); write e.g. \"90s\", \"5m\", \"1d\"")),
        }
    }

    fn duration_or(&self, v: &Text, key: &str, default: Duration) -> Res<Duration> {
        v.as_ref().map_or(Ok(default), |v| self.duration(v, key))
    }

    fn window(&self, w: RawWindow) -> Res<WindowDefaults> {
        let max_span = self.duration_or(&w.max_span, "window.max_span", crate::vendors::DAY);
        let overlap = self.duration_or(&w.overlap, "window.overlap", Duration::from_secs(300));
        let poll_interval = self.duration_or(&w.poll_interval, "window.poll_interval", crate::vendors::MINUTE);
        let span_limit = w.span_limit.as_ref().map(|v| self.duration(v, "window.span_limit")).transpose();
        let (max_span, overlap, poll_interval, span_limit) = (max_span?, overlap?, poll_interval?, span_limit?);
        let span = |t: &Text| t.as_ref().map(Spanned::span);
        if let Some(limit) = span_limit
            && max_span > limit
        {
            let at = span(&w.max_span).or(span(&w.span_limit));
            return self.fail(at, "window.max_span", "must not exceed window.span_limit");
        }
        if overlap >= max_span {
            let at = span(&w.overlap).or(span(&w.max_span));
            return self.fail(at, "window.overlap", "must be shorter than window.max_span");
        }
        Ok(WindowDefaults { max_span, span_limit, overlap, poll_interval })
    }

    fn choice<T: Copy>(
        &self,
        v: &Text,
        key: &str,
        default: Option<T>,
        table: &[(&str, T)],
        section: Range<usize>,
    ) -> Res<T> {
        match (v, default) {
            (None, Some(d)) => Ok(d),
            (None, None) => self.fail(section, key, format!("is required: one of {}", names(table))),
            (Some(v), _) => match table.iter().find(|(n, _)| *n == v.get_ref()) {
                Some((_, t)) => Ok(*t),
                None => self.fail(v.span(), key, format!("must be one of {}, not {:?}", names(table), v.get_ref())),
            },
        }
    }

    fn paging(&self, p: RawPaging) -> Res<PagingDef> {
        const KINDS: &[(&str, u8)] =
            &[("offset", 0), ("page", 1), ("cursor", 2), ("next_url", 3), ("link", 4), ("none", 5)];
        let kind = self.choice(&p.kind, "paging.kind", None, KINDS, 0..0);
        let page_size = self.page_size(&p.page_size, "paging.page_size", 100);
        let max_page_size = match &p.max_page_size {
            Some(_) => self.page_size(&p.max_page_size, "paging.max_page_size", 100).map(Some),
            None => Ok(None),
        };
        // Keys of another kind are refused: a definition means exactly what it says.
        let owners: [(&str, &Text, u8); 7] = [
            ("has_more", &p.has_more, 0),
            ("total", &p.total, 0),
            ("has_next", &p.has_next, 1),
            ("total_pages", &p.total_pages, 1),
            ("cursor", &p.cursor, 2),
            ("next_url", &p.next_url, 3),
            ("rel", &p.rel, 4),
        ];
        let kind = kind?;
        let mut bad = false;
        for (key, value, owner) in owners {
            if let Some(v) = value
                && owner != kind
            {
                let msg = format!("is for paging.kind = {:?} only", KINDS[owner as usize].0);
                self.err(v.span(), &format!("paging.{key}"), msg);
                bad = true;
            }
        }
        if let Some(first) = &p.first
            && kind != 1
        {
            self.err(first.span(), "paging.first", "is for paging.kind = \"page\" only");
            bad = true;
        }
        let pointer = |v: &Text, key: &str| v.as_ref().map(|v| self.pointer(v, key)).transpose();
        let kind = match kind {
            0 => {
                let (has_more, total) = (pointer(&p.has_more, "paging.has_more"), pointer(&p.total, "paging.total"));
                if let (Some(_), Some(t)) = (&p.has_more, &p.total) {
                    self.err(t.span(), "paging.total", "set has_more or total, not both");
                    bad = true;
                }
                PagingKind::Offset { has_more: has_more?, total: total? }
            }
            1 => {
                let (has_next, total_pages) =
                    (pointer(&p.has_next, "paging.has_next"), pointer(&p.total_pages, "paging.total_pages"));
                if let (Some(_), Some(t)) = (&p.has_next, &p.total_pages) {
                    self.err(t.span(), "paging.total_pages", "set has_next or total_pages, not both");
                    bad = true;
                }
                let first = match &p.first {
                    Some(f) if !(0..=i64::from(u32::MAX)).contains(f.get_ref()) => {
                        self.fail(f.span(), "paging.first", "must be 0 or more")
                    }
                    Some(f) => Ok(*f.get_ref() as u32),
                    None => Ok(1),
                };
                PagingKind::Page { first: first?, has_next: has_next?, total_pages: total_pages? }
            }
            2 => match &p.cursor {
                Some(c) => PagingKind::Cursor { cursor: self.pointer(c, "paging.cursor")? },
                None => {
                    return self.fail(
                        p.kind.as_ref().map(Spanned::span),
                        "paging.cursor",
                        "is required for paging.kind = \"cursor\"",
                    );
                }
            },
            3 => match &p.next_url {
                Some(c) => PagingKind::NextUrl { next_url: self.pointer(c, "paging.next_url")? },
                None => {
                    return self.fail(
                        p.kind.as_ref().map(Spanned::span),
                        "paging.next_url",
                        "is required for paging.kind = \"next_url\"",
                    );
                }
            },
            4 => {
                let rel = match &p.rel {
                    Some(r) if r.get_ref().trim().is_empty() || r.get_ref().contains(char::is_whitespace) => {
                        return self.fail(r.span(), "paging.rel", "must be one relation type, without spaces");
                    }
                    Some(r) => r.get_ref().to_ascii_lowercase(),
                    None => "next".to_owned(),
                };
                PagingKind::Link { rel }
            }
            _ => PagingKind::None,
        };
        let (page_size, max_page_size) = (page_size?, max_page_size?);
        let max_page_size = max_page_size.unwrap_or(page_size);
        if page_size > max_page_size {
            let at = p.page_size.as_ref().map(Spanned::span);
            return self.fail(
                at,
                "paging.page_size",
                format!("must not exceed paging.max_page_size ({max_page_size})"),
            );
        }
        if bad {
            return Err(Reported);
        }
        Ok(PagingDef { kind, page_size, max_page_size, stop_on_empty: p.stop_on_empty.unwrap_or(false) })
    }

    fn page_size(&self, v: &Int, key: &str, default: u32) -> Res<u32> {
        match v {
            None => Ok(default),
            Some(n) if (1..=MAX_PAGE_SIZE).contains(n.get_ref()) => Ok(*n.get_ref() as u32),
            Some(n) => self.fail(n.span(), key, format!("must be 1..={MAX_PAGE_SIZE}, not {}", n.get_ref())),
        }
    }

    fn pointer(&self, v: &Spanned<String>, key: &str) -> Res<String> {
        match check_pointer(v.get_ref()) {
            Ok(()) => Ok(v.get_ref().clone()),
            Err(why) => self.fail(v.span(), key, why),
        }
    }

    fn auth(&self, a: RawAuth) -> Res<AuthDef> {
        const KINDS: &[(&str, u8)] = &[("header", 0), ("bearer", 1), ("basic", 2), ("oauth2", 3)];
        let kind = self.choice(&a.kind, "auth.kind", None, KINDS, 0..0)?;
        let mut bad = false;
        let mut only = |key: &str, span: Option<Range<usize>>, owner: u8| {
            if let Some(span) = span
                && owner != kind
            {
                self.err(
                    span,
                    &format!("auth.{key}"),
                    format!("is for auth.kind = {:?} only", KINDS[owner as usize].0),
                );
                bad = true;
            }
        };
        let sp = |t: &Text| t.as_ref().map(Spanned::span);
        only("header", sp(&a.header), 0);
        only("prefix", sp(&a.prefix), 0);
        only("token_url", sp(&a.token_url), 3);
        only("scopes", a.scopes.as_ref().map(Spanned::span), 3);
        only("client_auth", sp(&a.client_auth), 3);
        only("audience", sp(&a.audience), 3);
        only("refresh_before", sp(&a.refresh_before), 3);
        if bad {
            return Err(Reported);
        }
        match kind {
            0 => {
                let header = match &a.header {
                    Some(h) => match http::HeaderName::from_bytes(h.get_ref().as_bytes()) {
                        Ok(n) => Ok(n.as_str().to_owned()),
                        Err(_) => self.fail(h.span(), "auth.header", "is not a valid HTTP header name"),
                    },
                    None => Ok("authorization".to_owned()),
                };
                let prefix = match &a.prefix {
                    Some(p) if http::HeaderValue::from_str(p.get_ref()).is_err() => {
                        self.fail(p.span(), "auth.prefix", "holds characters an HTTP header value cannot")
                    }
                    Some(p) => Ok(p.get_ref().clone()),
                    None => Ok(String::new()),
                };
                Ok(AuthDef::Header { header: header?, prefix: prefix? })
            }
            1 => Ok(AuthDef::Bearer),
            2 => Ok(AuthDef::Basic),
            _ => {
                let token_url = match &a.token_url {
                    None => self.fail(sp(&a.kind), "auth.token_url", "is required for auth.kind = \"oauth2\""),
                    Some(u) if u.get_ref().starts_with('/') => Ok(u.get_ref().clone()),
                    Some(u) => self.secure_url(u, "auth.token_url").map(|_| u.get_ref().clone()),
                };
                let client_auth = self.choice(
                    &a.client_auth,
                    "auth.client_auth",
                    Some(ClientAuth::Basic),
                    &[("basic", ClientAuth::Basic), ("body", ClientAuth::Body)],
                    0..0,
                );
                let refresh_before =
                    self.duration_or(&a.refresh_before, "auth.refresh_before", Duration::from_secs(60));
                let scopes = match a.scopes {
                    Some(s) if s.get_ref().iter().any(|x| x.is_empty() || x.contains(char::is_whitespace)) => {
                        self.fail(s.span(), "auth.scopes", "each scope must be one word, without spaces")
                    }
                    Some(s) => Ok(s.into_inner()),
                    None => Ok(vec![]),
                };
                Ok(AuthDef::OAuth2 {
                    token_url: token_url?,
                    scopes: scopes?,
                    client_auth: client_auth?,
                    audience: a.audience.map(Spanned::into_inner),
                    refresh_before: refresh_before?,
                })
            }
        }
    }

    fn request(
        &self,
        r: RawRequest,
        section: Range<usize>,
        kind: Option<&PagingKind>,
        auth: Option<&AuthDef>,
    ) -> Res<RequestDef> {
        let method = self.choice(
            &r.method,
            "request.method",
            Some(Method::Get),
            &[("GET", Method::Get), ("POST", Method::Post)],
            0..0,
        );
        let time_format =
            self.choice(&r.time_format, "request.time_format", Some(TimeFormat::Rfc3339), REQUEST_TIMES, 0..0);
        let path = self
            .required(r.path, section, "request.path")
            .and_then(|p| {
                if !p.get_ref().starts_with('/') {
                    return self.fail(p.span(), "request.path", "must start with \"/\"");
                }
                Ok(p)
            })
            .and_then(|p| self.template(&p, "request.path", kind));
        let mut ok = true;
        let mut pairs = |table: Option<BTreeMap<String, Spanned<String>>>, section: &str| -> Vec<(String, Template)> {
            let mut list: Vec<_> = table.unwrap_or_default().into_iter().collect();
            // In file order: the values' spans are.
            list.sort_by_key(|(_, v)| v.span().start);
            let mut out = vec![];
            for (k, v) in list {
                let key = format!("{section}.{k}");
                if section == "request.headers" {
                    let credential = match auth {
                        Some(AuthDef::Header { header, .. }) => header.eq_ignore_ascii_case(&k),
                        _ => k.eq_ignore_ascii_case("authorization"),
                    };
                    if http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        self.err(v.span(), &key, "is not a valid HTTP header name");
                        ok = false;
                        continue;
                    }
                    if credential {
                        self.err(
                            v.span(),
                            &key,
                            "is the credential's header: [auth] sends it, a secret never sits in a definition",
                        );
                        ok = false;
                        continue;
                    }
                }
                let template = self.template(&v, &key, kind).and_then(|t| {
                    // The literal text must be sendable as it stands: CR, LF, NUL and other
                    // control bytes would make every request of the source fail to build.
                    let bad = section == "request.headers"
                        && t.0.iter().any(|p| matches!(p, Piece::Text(s) if http::HeaderValue::from_str(s).is_err()));
                    if bad {
                        return self.fail(
                            v.span(),
                            &key,
                            "holds characters an HTTP header value cannot (CR, LF, NUL, …)",
                        );
                    }
                    Ok(t)
                });
                match template {
                    Ok(t) => out.push((k, t)),
                    Err(Reported) => ok = false,
                }
            }
            out
        };
        let query = pairs(r.query, "request.query");
        let headers = pairs(r.headers, "request.headers");
        let method = method?;
        let body = match r.body {
            Some(b) if method == Method::Get => {
                return self.fail(b.span(), "request.body", "is for request.method = \"POST\" only");
            }
            Some(b) => Some(self.body(b.get_ref(), b.span(), "request.body", kind)?),
            None => None,
        };
        let (path, time_format) = (path?, time_format?);
        if !ok {
            return Err(Reported);
        }
        Ok(RequestDef { method, path, time_format, query, headers, body })
    }

    fn template(&self, v: &Spanned<String>, key: &str, kind: Option<&PagingKind>) -> Res<Template> {
        let t = parse_template(v.get_ref()).map_err(|why| self.err(v.span(), key, why))?;
        self.vars_fit(&t, v.span(), key, kind)?;
        Ok(t)
    }

    /// A paging placeholder needs its paging kind: `{cursor}` with offset paging would never
    /// have a value.
    fn vars_fit(&self, t: &Template, span: Range<usize>, key: &str, kind: Option<&PagingKind>) -> Res<()> {
        let Some(kind) = kind else { return Ok(()) };
        for piece in &t.0 {
            let need = match piece {
                Piece::Var(Var::Offset) => ("offset", matches!(kind, PagingKind::Offset { .. })),
                Piece::Var(Var::Page) => ("page", matches!(kind, PagingKind::Page { .. })),
                Piece::Var(Var::Cursor) => ("cursor", matches!(kind, PagingKind::Cursor { .. })),
                _ => continue,
            };
            if !need.1 {
                return self.fail(span, key, format!("{{{0}}} is only given with paging.kind = \"{0}\"", need.0));
            }
        }
        Ok(())
    }

    fn body(&self, v: &toml::Value, span: Range<usize>, key: &str, kind: Option<&PagingKind>) -> Res<BodyTemplate> {
        Ok(match v {
            toml::Value::String(s) => {
                let t = parse_template(s).map_err(|why| self.err(span.clone(), key, why))?;
                self.vars_fit(&t, span, key, kind)?;
                BodyTemplate::String(t)
            }
            toml::Value::Integer(i) => BodyTemplate::Number((*i).into()),
            toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => BodyTemplate::Number(n),
                None => return self.fail(span, key, "a number JSON cannot hold (NaN or infinite)"),
            },
            toml::Value::Boolean(b) => BodyTemplate::Bool(*b),
            toml::Value::Datetime(d) => BodyTemplate::String(Template(vec![Piece::Text(d.to_string())])),
            toml::Value::Array(list) => {
                let mut out = vec![];
                for (i, item) in list.iter().enumerate() {
                    out.push(self.body(item, span.clone(), &format!("{key}[{i}]"), kind)?);
                }
                BodyTemplate::Array(out)
            }
            toml::Value::Table(t) => {
                let mut out = vec![];
                for (k, item) in t {
                    out.push((k.clone(), self.body(item, span.clone(), &format!("{key}.{k}"), kind)?));
                }
                BodyTemplate::Object(out)
            }
        })
    }

    fn answer(&self, a: RawAnswer, kind: Option<&PagingKind>) -> Res<AnswerDef> {
        let format = self.choice(
            &a.format,
            "answer.format",
            Some(AnswerFormat::Json),
            &[("json", AnswerFormat::Json), ("ndjson", AnswerFormat::Ndjson)],
            0..0,
        );
        let records = match (&a.records, &format) {
            (Some(r), Ok(AnswerFormat::Ndjson)) if !r.get_ref().is_empty() => self.fail(
                r.span(),
                "answer.records",
                "is for answer.format = \"json\" only (an NDJSON line is a record)",
            ),
            (Some(r), _) => self.pointer(r, "answer.records"),
            (None, _) => Ok(String::new()),
        };
        let id = match &a.id {
            None => self.fail(0..0, "answer.id", "is required: a JSON Pointer to the record's id, or \"hash\""),
            Some(v) if v.get_ref() == "hash" => Ok(RecordId::Hash),
            Some(v) => match self.pointer(v, "answer.id")? {
                p if p.is_empty() => self.fail(v.span(), "answer.id", "must point into the record, not be \"\""),
                p => Ok(RecordId::Pointer(p)),
            },
        };
        let time = match &a.time {
            None => self.fail(0..0, "answer.time", "is required: a JSON Pointer to the record's event time"),
            Some(v) => match self.pointer(v, "answer.time")? {
                p if p.is_empty() => self.fail(v.span(), "answer.time", "must point into the record, not be \"\""),
                p => Ok(p),
            },
        };
        let time_format =
            self.choice(&a.time_format, "answer.time_format", Some(TimeFormat::Rfc3339), ANSWER_TIMES, 0..0);
        let order = self.choice(
            &a.order,
            "answer.order",
            Some(Order::NewestFirst),
            &[("newest_first", Order::NewestFirst), ("oldest_first", Order::OldestFirst)],
            0..0,
        );
        let whole = matches!(kind, Some(PagingKind::None));
        let cap = |v: &Int, key: &str| -> Res<Option<usize>> {
            match v {
                None => Ok(None),
                Some(n) if kind.is_some() && !whole => self.fail(n.span(), key, "is for paging.kind = \"none\" only"),
                Some(n) if *n.get_ref() < 1 => self.fail(n.span(), key, "must be 1 or more"),
                Some(n) => Ok(Some(*n.get_ref() as usize)),
            }
        };
        let max_records = cap(&a.max_records, "answer.max_records");
        let max_bytes = cap(&a.max_bytes, "answer.max_bytes");
        Ok(AnswerDef {
            format: format?,
            gzip: a.gzip.unwrap_or(false),
            records: records?,
            id: id?,
            time: time?,
            time_format: time_format?,
            order: order?,
            max_records: max_records?,
            max_bytes: max_bytes?,
        })
    }

    fn rate_limit(&self, r: RawRateLimit, section: Range<usize>) -> Res<RateLimitDef> {
        let requests = match &r.requests {
            None => self.fail(section.clone(), "rate_limit.requests", "is required: the vendor's documented budget"),
            Some(n) if (1..=i64::from(u32::MAX)).contains(n.get_ref()) => Ok(*n.get_ref() as u32),
            Some(n) => self.fail(n.span(), "rate_limit.requests", "must be 1 or more"),
        };
        let per = match &r.per {
            None => self.fail(section, "rate_limit.per", "is required: the period of the documented budget"),
            Some(p) => self.duration(p, "rate_limit.per"),
        };
        let header = |v: &Text, key: &str| -> Res<Option<String>> {
            match v {
                None => Ok(None),
                Some(h) => match http::HeaderName::from_bytes(h.get_ref().as_bytes()) {
                    Ok(n) => Ok(Some(n.as_str().to_owned())),
                    Err(_) => self.fail(h.span(), key, "is not a valid HTTP header name"),
                },
            }
        };
        let remaining_header = header(&r.remaining_header, "rate_limit.remaining_header");
        let reset_header = header(&r.reset_header, "rate_limit.reset_header");
        let retry_after_header = header(&r.retry_after_header, "rate_limit.retry_after_header");
        let reset = self.choice(
            &r.reset,
            "rate_limit.reset",
            Some(ResetKind::Auto),
            &[
                ("auto", ResetKind::Auto),
                ("epoch", ResetKind::Epoch),
                ("delta", ResetKind::Delta),
                ("date", ResetKind::Date),
                ("rfc3339", ResetKind::Rfc3339),
            ],
            0..0,
        );
        let bare_429_wait = r.bare_429_wait.as_ref().map(|v| self.duration(v, "rate_limit.bare_429_wait")).transpose();
        Ok(RateLimitDef {
            requests: requests?,
            per: per?,
            remaining_header: remaining_header?,
            reset_header: reset_header?,
            reset: reset?,
            retry_after_header: retry_after_header?,
            forbidden_is_rate_limit: r.forbidden_is_rate_limit.unwrap_or(false),
            bare_429_wait: bare_429_wait?,
        })
    }
}

struct Vendor {
    name: String,
    title: String,
    vendor_name: String,
    product: String,
    uid_name: String,
    base_url: Option<url::Url>,
}

const REQUEST_TIMES: &[(&str, TimeFormat)] = &[
    ("rfc3339", TimeFormat::Rfc3339),
    ("rfc3339_ms", TimeFormat::Rfc3339Ms),
    ("epoch_s", TimeFormat::EpochS),
    ("epoch_ms", TimeFormat::EpochMs),
    ("date", TimeFormat::Date),
];
const ANSWER_TIMES: &[(&str, TimeFormat)] = &[
    ("rfc3339", TimeFormat::Rfc3339),
    ("epoch_s", TimeFormat::EpochS),
    ("epoch_ms", TimeFormat::EpochMs),
    ("date", TimeFormat::Date),
];

fn names<T>(table: &[(&str, T)]) -> String {
    table.iter().map(|(n, _)| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    let Some(first) = bytes.next() else { return false };
    s.len() <= 63
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// An RFC 6901 JSON Pointer: `""`, or `/`-separated tokens in which `~` is only `~0` or `~1`.
pub fn check_pointer(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Ok(());
    }
    if !p.starts_with('/') {
        return Err(format!("is not a JSON Pointer (RFC 6901): it must be \"\" or start with \"/\", as in \"/{p}\""));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(
                "is not a JSON Pointer (RFC 6901): \"~\" must be written \"~0\" and \"/\" in a name \"~1\"".into()
            );
        }
    }
    Ok(())
}

/// Splits a template into text and placeholders: `{name}` is a placeholder (one of the
/// documented ones), `{{` and `}}` are literal braces, any other brace is refused.
pub fn parse_template(s: &str) -> Result<Template, String> {
    let mut pieces = vec![];
    let mut text = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if c == '{' {
            let Some(end) = rest.find('}') else {
                return Err("has a \"{\" without its \"}\" (write \"{{\" for a literal brace)".into());
            };
            let name = &rest[1..end];
            let var = match name {
                "from" => Var::From,
                "to" => Var::To,
                "organization_id" => Var::OrganizationId,
                "page_size" => Var::PageSize,
                "offset" => Var::Offset,
                "page" => Var::Page,
                "cursor" => Var::Cursor,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}: the placeholders are {{from}}, {{to}}, {{organization_id}}, \
                         {{page_size}}, {{offset}}, {{page}}, {{cursor}} (write \"{{{{\" and \"}}}}\" for literal braces)"
                    ));
                }
            };
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(var));
            rest = &rest[end + 1..];
        } else if c == '}' {
            return Err("has a \"}\" without its \"{\" (write \"}}\" for a literal brace)".into());
        } else {
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(Template(pieces))
}

#[cfg(test)]
mod tests;

/// Whether a credential may be sent to `u`: https, or plain http on a loopback host
/// (`localhost`, 127.0.0.0/8, `::1`), which the tests' simulators use and which never crosses
/// the network.
pub fn credential_may_go_to(u: &url::Url) -> bool {
    match (u.scheme(), u.host()) {
        ("https", _) => true,
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}
