//! The configuration file: TOML text → a validated [`Config`], in two layers (STYLE habit 6).
//!
//! Layer one is the `Raw*` serde structs (`deny_unknown_fields`, values kept as written and
//! wrapped in [`toml::Spanned`] so later checks can name the line). Layer two, `Validator`,
//! turns them into the typed structs: durations, byte sizes, URLs, paths resolved against the
//! config file's directory, vendor defaults filled in, and secrets resolved from `"${ENV}"`,
//! `<key>_file` or a literal into [`SecretString`]. Nothing outside this file sees a raw struct.
//!
//! Every mistake is one [`ConfigError`] naming the file, the line and the key path. Messages never
//! quote a secret, nor a TOML source line (the line might hold one). This module does no network
//! I/O and knows nothing of how sources or sinks use their settings.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;

use crate::ocsf::event::Severity;
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use crate::ocsf::SeverityPolicy;
use crate::vendors::VendorId;
use toml::de::DeValue;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from; relative paths inside it were resolved against its directory.
    pub origin: PathBuf,
    pub state_dir: PathBuf,
    pub queue: QueueSettings,
    pub sources: Vec<SourceConfig>,
    pub sinks: Vec<SinkConfig>,
    /// Severity overrides by vendor and event code, on top of the mappings' defaults.
    pub severity: SeverityPolicy,
    pub telemetry: TelemetrySettings,
}

/// `[telemetry]`: where `/metrics` (Prometheus text), `/health` and `/ready` are served.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// `None`: no listener (the section or its `listen` key is absent).
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Size cap of the queue database; when reached, sources pause (DESIGN invariant 4).
    pub max_bytes: u64,
}

/// One vendor organization to pull from. Window fields follow DESIGN "the loop owns windows".
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub vendor: VendorSettings,
    pub base_url: url::Url,
    /// Where the first sweep starts when there is no checkpoint yet.
    pub start: StartAt,
    /// Records newer than `now - lag` are not asked for yet (vendors index late).
    pub lag: Duration,
    /// Each window starts this much before the checkpoint; always `< max_span`.
    pub overlap: Duration,
    /// The longest window asked for in one sweep.
    pub max_span: Duration,
    pub poll_interval: Duration,
    pub request_timeout: Duration,
    pub rate_limit: RateLimit,
    pub backoff: Backoff,
    /// A longer `Retry-After` is capped to this (and logged).
    pub max_retry_after: Duration,
    /// Pages one sweep (one frozen window) may take; a vendor still paging after this many is
    /// refused (a fatal error naming the source and window), not followed forever.
    pub max_pages: u32,
    /// Trust this CA (PEM) for the vendor's certificate instead of the system's roots (an
    /// https `base_url` behind a TLS-inspecting proxy, a dedicated deployment's private CA).
    pub ca_file: Option<PathBuf>,
    /// Backfill only (`auditrelay backfill --until`): no window reaches past this, and the
    /// source is done once its checkpoint does. Never set from the file.
    pub until: Option<DateTime<Utc>>,
}

pub use crate::vendors::VendorSettings;

impl SourceConfig {
    /// Changes whenever anything in this source's configuration does, secrets included (a
    /// rotated token file), without keeping a secret: a SHA-256 over the settings and secrets.
    /// A reload restarts only the sources whose fingerprint changed.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint(&format!("{self:?}"), &self.vendor.secrets())
    }
}

impl SinkConfig {
    /// As [`SourceConfig::fingerprint`], for sinks.
    pub fn fingerprint(&self) -> [u8; 32] {
        let secrets = self.kind.secrets();
        fingerprint(&format!("{self:?}"), &secrets)
    }
}

fn fingerprint(debug: &str, secrets: &[&SecretString]) -> [u8; 32] {
    use secrecy::ExposeSecret as _;
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    hash.update(debug.as_bytes());
    for secret in secrets {
        hash.update([0u8]);
        hash.update(secret.expose_secret().as_bytes());
    }
    hash.finalize().into()
}

/// First-run start of a source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartAt {
    /// This long before the moment the source first runs.
    Ago(Duration),
    At(DateTime<Utc>),
}

impl StartAt {
    /// The start instant given the current time; an absurdly long `Ago` saturates.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartAt::At(t) => *t,
            StartAt::Ago(d) => chrono::TimeDelta::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// The proactive limit: `requests` per `per`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
}

/// Exponential retry back-off with full jitter; `0 < initial <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub kind: SinkKind,
    pub batch_max_events: usize,
    pub batch_max_bytes: usize,
    pub backoff: Backoff,
    /// The sink's former name (`renamed_from`): its queue cursor (and HEC channel) are carried
    /// over to this name at start and at reload, so a rename keeps its backlog.
    pub renamed_from: Option<String>,
}

pub use crate::sinks::SinkKind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config file: {io}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        io: std::io::Error,
    },
    /// `line` is 1-based; `key` is a path such as `sources[0].lag` (empty for a syntax error).
    #[error("{}", invalid_text(file, *line, key, message))]
    Invalid { file: PathBuf, line: Option<usize>, key: String, message: String },
}

fn invalid_text(file: &Path, line: Option<usize>, key: &str, message: &str) -> String {
    let mut s = file.display().to_string();
    if let Some(line) = line {
        let _ = write!(s, ":{line}");
    }
    if !key.is_empty() {
        let _ = write!(s, ": {key}");
    }
    let _ = write!(s, ": {message}");
    s
}

impl Config {
    /// Reads and validates `path`, taking `${NAME}` secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |io| ConfigError::Read { path: path.to_path_buf(), io };
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let origin = std::path::absolute(path).map_err(read_err)?;
        Config::parse_with_env(&text, &origin, &|name| std::env::var(name).ok())
    }

    /// Like [`Config::load`] but reads no secret (neither `${ENV}` nor `*_file`): every secret
    /// is left empty. For commands that only look at the state directory (`queue …`), which
    /// must work where the service's credentials are not available (systemd `LoadCredential=`
    /// exposes them only to the running service).
    pub fn load_without_secrets(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |io| ConfigError::Read { path: path.to_path_buf(), io };
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let origin = std::path::absolute(path).map_err(read_err)?;
        let env = |_: &str| None;
        let v = Validator {
            text: &text,
            file: &origin,
            dir: origin.parent().unwrap_or(Path::new("")),
            env: &env,
            read_secrets: false,
        };
        v.parse(&text)
    }

    /// Parses and validates `text` as if read from `origin`; `env` answers `${NAME}` lookups.
    pub fn parse_with_env(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let v =
            Validator { text, file: origin, dir: origin.parent().unwrap_or(Path::new("")), env, read_secrets: true };
        v.parse(text)
    }

    /// Human-readable resolved config for `auditrelay check`, every secret shown as
    /// "[redacted]" (a TOML-like listing with all defaults filled in).
    pub fn render_redacted(&self) -> String {
        let d = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        let b = |b: &Backoff| format!("{{ initial = {}, max = {} }}", d(b.initial), d(b.max));
        let p = |p: &Path| format!("{:?}", p.display().to_string());
        let size = size_text;
        let mut o = format!("# resolved from {}\n", self.origin.display());
        let mut kv = |k: &str, v: String| {
            let _ = writeln!(o, "{k} = {v}");
        };
        kv("state_dir", p(&self.state_dir));
        kv("\n[queue]\nmax_bytes", size(self.queue.max_bytes));
        if let Some(listen) = self.telemetry.listen {
            kv("\n[telemetry]\nlisten", format!("{:?}", listen.to_string()));
        }
        for s in &self.sources {
            kv("\n[[sources]]\nname", format!("{:?}", s.name));
            kv("vendor", format!("{:?}", s.vendor.vendor_name()));
            s.vendor.render(&mut kv);
            kv("base_url", format!("{:?}", crate::redact::url(&s.base_url)));
            kv(
                "start",
                match s.start {
                    StartAt::Ago(a) => d(a),
                    StartAt::At(t) => {
                        format!("{:?}", t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
                    }
                },
            );
            kv("lag", d(s.lag));
            kv("overlap", d(s.overlap));
            kv("max_span", d(s.max_span));
            kv("poll_interval", d(s.poll_interval));
            kv("request_timeout", d(s.request_timeout));
            let RateLimit { requests, per, burst } = s.rate_limit;
            let per = d(per);
            kv("rate_limit", format!("{{ requests = {requests}, per = {per}, burst = {burst} }}"));
            kv("backoff", b(&s.backoff));
            kv("max_retry_after", d(s.max_retry_after));
            kv("max_pages", s.max_pages.to_string());
            if let Some(ca) = &s.ca_file {
                kv("ca_file", p(ca));
            }
        }
        if !self.severity.is_empty() {
            let mut list: Vec<_> = self.severity.overrides().collect();
            list.sort_by(|a, b| a.0.cmp(b.0));
            let items: Vec<String> = list
                .iter()
                .map(|((v, c), s)| format!("{:?} = {:?}", format!("{v}:{c}"), s.caption().to_ascii_lowercase()))
                .collect();
            kv("\n[severity]\noverrides", format!("{{ {} }}", items.join(", ")));
        }
        for s in &self.sinks {
            kv("\n[[sinks]]\nname", format!("{:?}", s.name));
            if let Some(from) = &s.renamed_from {
                kv("renamed_from", format!("{from:?}"));
            }
            s.kind.render(&mut kv);
            kv("batch_max_events", s.batch_max_events.to_string());
            kv("batch_max_bytes", size(s.batch_max_bytes as u64));
            kv("backoff", b(&s.backoff));
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// Layer one: the file as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Spanned<String>,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    severity: RawSeverity,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSeverity {
    #[serde(default)]
    overrides: std::collections::BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_bytes: Option<Spanned<Size>>,
}

/// The keys common to every vendor's `[[sources]]` table; the vendor's own keys are split off
/// first and read by its module ([`crate::vendors::Vendor::Keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: Spanned<String>,
    base_url: Option<Spanned<String>>,
    /// A string, or an unquoted TOML offset date-time.
    start: Option<Spanned<toml::Value>>,
    lag: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    max_span: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    request_timeout: Option<Spanned<String>>,
    rate_limit: Option<RawRateLimit>,
    backoff: Option<Spanned<RawBackoff>>,
    max_retry_after: Option<Spanned<String>>,
    max_pages: Option<Spanned<u32>>,
    ca_file: Option<Spanned<String>>,
}

/// Integer bytes or a `bytesize` string such as "1 MiB", parsed in [`Validator::bytes`].
#[derive(Deserialize)]
#[serde(untagged, expecting = "expected integer bytes or a size such as \"1 MiB\"")]
pub enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { requests = 100, per = \"1m\" }")]
struct RawRateLimit {
    requests: Option<NonZeroU32>,
    per: Option<Spanned<String>>,
    burst: Option<NonZeroU32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { initial = \"1s\", max = \"5m\" }")]
struct RawBackoff {
    initial: Option<Spanned<String>>,
    max: Option<Spanned<String>>,
}

/// The keys common to every `[[sinks]]` table; the protocol's own keys are split off first and
/// read by its module ([`crate::sinks::Protocol::Keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: Spanned<String>,
    batch_max_events: Option<Spanned<usize>>,
    batch_max_bytes: Option<Spanned<Size>>,
    backoff: Option<Spanned<RawBackoff>>,
    renamed_from: Option<Spanned<String>>,
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
/// Default retry back-off `[initial, max]` of sources and sinks.
const SOURCE_BACKOFF: [Duration; 2] = [SECOND, Duration::from_secs(300)];
const SINK_BACKOFF: [Duration; 2] = [SECOND, MINUTE];
/// Default `max_pages`: 10,000 pages of at most 100 records (Aitronos' and ConfigCat's largest
/// page) is a million records in one window, far beyond any organization's audit log for a day
/// (ConfigCat: 30 days), and 100 minutes of requests at Aitronos' documented 100 a minute. A
/// vendor still saying "more" after that is broken or hostile: followed, it would never let
/// the window end.
const DEFAULT_MAX_PAGES: u32 = 10_000;

// ---------------------------------------------------------------------------------------------
// Layer two: validation.

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    /// Relative paths in the file (state_dir, sink paths, secret files) are relative to this.
    dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `false`: secrets are checked for shape (one of `key` / `key_file`) but not read.
    read_secrets: bool,
}

/// A validation step's result.
pub type Res<T> = Result<T, ConfigError>;
/// An optional string key as written.
pub type Text = Option<Spanned<String>>;

impl Validator<'_> {
    fn err(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> ConfigError {
        let line = span.into().map(|s| {
            let upto = self.text.as_bytes().get(..s.start).unwrap_or(self.text.as_bytes());
            upto.iter().filter(|b| **b == b'\n').count() + 1
        });
        let (file, key, message) = (self.file.to_path_buf(), key.to_owned(), msg.into());
        ConfigError::Invalid { file, line, key, message }
    }

    fn fail<T>(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Res<T> {
        Err(self.err(span, key, msg))
    }

    /// Only the toml message and span: its Display would quote the source line, maybe a secret.
    fn toml_err(&self, key: &str, e: &toml::de::Error) -> ConfigError {
        self.err(e.span(), key, e.message().trim_end())
    }

    /// Layer one: the document, its `[[sources]]` and `[[sinks]]` tables split off (each is
    /// read in two parts, see [`Validator::split`]) and the rest read as [`RawConfig`].
    fn parse(&self, text: &str) -> Res<Config> {
        let mut root = toml::de::DeTable::parse(text).map_err(|e| self.toml_err("", &e))?;
        let sources = root.get_mut().remove("sources");
        let sinks = root.get_mut().remove("sinks");
        let raw: RawConfig = serde_path_to_error::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| self.toml_err(&key_path(e.path()), e.inner()))?;
        let sources = self.tables(sources, "sources")?.into_iter().enumerate();
        let sources = sources.map(|(i, t)| self.split(Section::Sources, i, t)).collect::<Res<_>>()?;
        let sinks = self.tables(sinks, "sinks")?.into_iter().enumerate();
        let sinks = sinks.map(|(i, t)| self.split(Section::Sinks, i, t)).collect::<Res<_>>()?;
        self.config(raw, sources, sinks)
    }

    /// The tables of an array of tables (`[[sources]]`), none when absent.
    fn tables<'i>(&self, list: Option<Spanned<DeValue<'i>>>, key: &str) -> Res<Vec<Spanned<DeValue<'i>>>> {
        match list.map(|s| (s.span(), s.into_inner())) {
            None => Ok(vec![]),
            Some((_, DeValue::Array(list))) => Ok(list.into_iter().collect()),
            Some((span, other)) => {
                self.fail(span, key, format!("expected [[{key}]] tables, found {}", other.type_str()))
            }
        }
    }

    /// Splits one `[[sources]]` (`[[sinks]]`) table by its `vendor` (`type`): the keys that
    /// vendor's (protocol's) module owns, kept for it, and the common rest, read as
    /// [`RawSource`] ([`RawSink`]). Another vendor's (protocol's) key is refused by name.
    fn split<'i, R: serde::de::DeserializeOwned>(
        &self,
        section: Section,
        i: usize,
        table: Spanned<DeValue<'i>>,
    ) -> Res<Split<'i, R>> {
        let what = section.name();
        let at = |k: &str| format!("{what}[{i}].{k}");
        let (span, table) = match (table.span(), table.into_inner()) {
            (span, DeValue::Table(t)) => (span, t),
            (span, other) => {
                return self.fail(
                    span,
                    &format!("{what}[{i}]"),
                    format!("expected a table, found {}", other.type_str()),
                );
            }
        };
        let tag = section.tag();
        let names = section.names();
        let owner = match table.get(tag).map(|v| (v.span(), v.get_ref())) {
            None => return self.fail(span, &format!("{what}[{i}]"), format!("missing field `{tag}`")),
            Some((vspan, DeValue::String(name))) => match names.iter().find(|n| **n == name.as_ref()) {
                Some(owner) => *owner,
                None => {
                    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                    let msg = format!("unknown variant `{name}`, expected one of {}", names.join(", "));
                    return self.fail(vspan, &at(tag), msg);
                }
            },
            Some((vspan, other)) => {
                return self.fail(vspan, &at(tag), format!("invalid type: {}, expected a string", other.type_str()));
            }
        };
        let own_keys = section.keys_of(owner);
        let (mut common, mut own) = (toml::de::DeTable::new(), toml::de::DeTable::new());
        for (key, value) in table {
            let name: &str = key.get_ref();
            if name == tag {
                continue; // read above
            } else if own_keys.contains(&name) {
                own.insert(key, value);
            } else if names.iter().any(|n| section.keys_of(n).contains(&name)) {
                return self.fail(value.span(), &at(name), section.not_used(owner));
            } else if !section.common_keys().contains(&name) {
                let known = section.common_keys().iter().chain(own_keys).map(|k| format!("`{k}`"));
                let msg = format!("unknown field `{name}`, expected one of {}", known.collect::<Vec<_>>().join(", "));
                return self.fail(key.span(), &at(name), msg);
            } else {
                common.insert(key, value);
            }
        }
        let raw: R = serde_path_to_error::deserialize(toml::de::Deserializer::from(Spanned::new(span.clone(), common)))
            .map_err(|e| self.toml_err(&at(&key_path(e.path())), e.inner()))?;
        Ok(Split { span: span.clone(), owner, raw, own: Spanned::new(span, own) })
    }

    fn config(
        &self,
        raw: RawConfig,
        sources: Vec<Split<'_, RawSource>>,
        sinks: Vec<Split<'_, RawSink>>,
    ) -> Res<Config> {
        let state_dir = self.path(&raw.state_dir, "state_dir")?;
        let max_bytes = self.bytes(&raw.queue.max_bytes, "queue.max_bytes", bytesize::GIB)?;
        if sources.is_empty() {
            return self.fail(None, "sources", "at least one [[sources]] table is required");
        }
        if sinks.is_empty() {
            return self.fail(None, "sinks", "at least one [[sinks]] table is required");
        }
        self.unique(sources.iter().map(|s| &s.raw.name), "sources")?;
        self.unique(sinks.iter().map(|s| &s.raw.name), "sinks")?;
        self.renames(&sinks)?;
        let sources = sources.into_iter().enumerate();
        let sources = sources.map(|(i, s)| self.source(i, s)).collect::<Res<_>>()?;
        let sinks = sinks.into_iter().enumerate();
        let sinks = sinks.map(|(i, s)| self.sink(i, s)).collect::<Res<_>>()?;
        let queue = QueueSettings { max_bytes };
        let severity = self.severity(&raw.severity)?;
        let telemetry = self.telemetry(&raw.telemetry)?;
        Ok(Config { origin: self.file.to_path_buf(), state_dir, queue, sources, sinks, severity, telemetry })
    }

    fn telemetry(&self, raw: &RawTelemetry) -> Res<TelemetrySettings> {
        let Some(listen) = &raw.listen else { return Ok(TelemetrySettings::default()) };
        let addr: std::net::SocketAddr = listen.get_ref().parse().map_err(|_| {
            self.err(
                listen.span(),
                "telemetry.listen",
                format!("invalid address {:?}: expected \"IP:port\" such as \"127.0.0.1:9464\"", listen.get_ref()),
            )
        })?;
        if !addr.ip().is_loopback() {
            // Metrics name sources, sinks and receivers: not for the network at large.
            tracing::warn!(listen = %addr, "telemetry.listen is not a loopback address: /metrics is reachable from other hosts");
        }
        Ok(TelemetrySettings { listen: Some(addr) })
    }

    fn source(&self, i: usize, t: Split<'_, RawSource>) -> Res<SourceConfig> {
        let (table, r) = (t.span, t.raw);
        let at = |k: &str| format!("sources[{i}].{k}");
        let dur = |v: &Text, k: &str, default, positive| self.duration(v, &at(k), default, positive);
        let Some(vendor) = VendorId::from_name(t.owner) else {
            return self.fail(table, &at("vendor"), format!("unknown vendor {:?}", t.owner));
        };
        let d = vendor.defaults();
        let base_url = self.url(&r.base_url, &at("base_url"), d.base_url)?;
        let section = Section::Sources;
        let (index, owner, own) = (i, t.owner, t.own);
        let keys = TableKeys { v: self, section, index, table: table.clone(), base_url: Some(&base_url), owner, own };
        let vendor = vendor.settings(&keys)?;
        let overlap = dur(&r.overlap, "overlap", d.overlap, false)?;
        let max_span = dur(&r.max_span, "max_span", d.max_span, true)?;
        if let Some(limit) = d.span_limit
            && max_span > limit
        {
            let span = r.max_span.as_ref().map(Spanned::span);
            let msg = format!(
                "{} exceeds what the vendor accepts in one request ({})",
                span_text(max_span),
                span_text(limit)
            );
            return self.fail(span, &at("max_span"), msg);
        }
        if overlap >= max_span {
            let span = r.overlap.as_ref().or(r.max_span.as_ref()).map(Spanned::span);
            let (o, m) = (humantime::format_duration(overlap), humantime::format_duration(max_span));
            let msg = format!("overlap ({o}) must be shorter than max_span ({m})");
            return self.fail(span, &at("overlap"), msg);
        }
        let rl = r.rate_limit.unwrap_or(RawRateLimit { requests: None, per: None, burst: None });
        let rate_limit = RateLimit {
            requests: rl.requests.or(NonZeroU32::new(d.requests)).unwrap_or(NonZeroU32::MIN),
            per: dur(&rl.per, "rate_limit.per", d.per, true)?,
            burst: rl.burst.unwrap_or(NonZeroU32::MIN),
        };
        let max_pages = match &r.max_pages {
            None => DEFAULT_MAX_PAGES,
            Some(n) if *n.get_ref() > 0 => *n.get_ref(),
            Some(n) => return self.fail(n.span(), &at("max_pages"), "must be at least 1"),
        };
        let ca_file = match &r.ca_file {
            None => None,
            Some(p) if base_url.scheme() == "https" => Some(self.path(p, &at("ca_file"))?),
            Some(p) => return self.fail(p.span(), &at("ca_file"), "only used with an https base_url"),
        };
        Ok(SourceConfig {
            name: self.name(&r.name, &at("name"))?,
            vendor,
            base_url,
            start: self.start(&r.start, &at("start"))?,
            lag: dur(&r.lag, "lag", 2 * MINUTE, false)?,
            overlap,
            max_span,
            poll_interval: dur(&r.poll_interval, "poll_interval", d.poll_interval, true)?,
            request_timeout: dur(&r.request_timeout, "request_timeout", 30 * SECOND, true)?,
            rate_limit,
            backoff: self.backoff(&r.backoff, &at("backoff"), SOURCE_BACKOFF)?,
            max_retry_after: dur(&r.max_retry_after, "max_retry_after", 60 * MINUTE, true)?,
            max_pages,
            ca_file,
            until: None,
        })
    }

    /// `[severity] overrides = { "vendor:event_code" = "high" | 4, … }`.
    fn severity(&self, raw: &RawSeverity) -> Res<SeverityPolicy> {
        let vendors: Vec<&str> = VendorId::ALL.iter().map(|v| v.name()).collect();
        const NAMES: [&str; 7] = ["unknown", "informational", "low", "medium", "high", "critical", "fatal"];
        let mut overrides = HashMap::new();
        for (key, value) in &raw.overrides {
            let at = format!("severity.overrides.{key:?}");
            let Some((vendor, code)) = key.split_once(':').filter(|(v, c)| vendors.contains(v) && !c.is_empty()) else {
                let msg = format!("keys are \"<vendor>:<event code>\" with vendor one of {}", vendors.join(", "));
                return self.fail(value.span(), &at, msg);
            };
            let severity = match value.get_ref() {
                toml::Value::String(name) => {
                    NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).and_then(|i| Severity::from_id(i as u8))
                }
                toml::Value::Integer(id) => u8::try_from(*id).ok().and_then(Severity::from_id),
                _ => None,
            };
            let Some(severity) = severity else {
                let msg = format!("must be one of {} or 0 to 6", NAMES.join(", "));
                return self.fail(value.span(), &at, msg);
            };
            overrides.insert((vendor.to_owned(), code.to_owned()), severity);
        }
        Ok(SeverityPolicy::from_overrides(overrides))
    }

    /// Like [`Validator::secret`], but a missing pair points at the source's table.
    fn required_secret(&self, key: &str, value: &Text, file: &Text, table: &Range<usize>) -> Res<SecretString> {
        if value.is_none() && file.is_none() {
            return self.fail(table.clone(), key, format!("required (or {key}_file)"));
        }
        self.secret(key, value, file)
    }

    fn sink(&self, i: usize, t: Split<'_, RawSink>) -> Res<SinkConfig> {
        let (table, r) = (t.span, t.raw);
        let at = |k: &str| format!("sinks[{i}].{k}");
        let keys =
            TableKeys { v: self, section: Section::Sinks, index: i, table, base_url: None, owner: t.owner, own: t.own };
        let Some(kind) = SinkKind::from_keys(t.owner, &keys) else {
            return self.fail(None, &at("type"), format!("unknown sink type {:?}", t.owner));
        };
        let kind = kind?;
        let batch_max_events = match &r.batch_max_events {
            None => 500,
            Some(n) if *n.get_ref() >= 1 => *n.get_ref(),
            Some(n) => return self.fail(n.span(), &at("batch_max_events"), "must be at least 1"),
        };
        let bytes = self.bytes(&r.batch_max_bytes, &at("batch_max_bytes"), bytesize::MIB)?;
        let Ok(batch_max_bytes) = usize::try_from(bytes) else {
            let span = r.batch_max_bytes.as_ref().map(Spanned::span);
            return self.fail(span, &at("batch_max_bytes"), "too large for this platform");
        };
        Ok(SinkConfig {
            name: self.name(&r.name, &at("name"))?,
            kind,
            batch_max_events,
            batch_max_bytes,
            backoff: self.backoff(&r.backoff, &at("backoff"), SINK_BACKOFF)?,
            renamed_from: r.renamed_from.as_ref().map(|n| self.name(n, &at("renamed_from"))).transpose()?,
        })
    }

    /// `renamed_from` names a sink that is no longer configured, and only one sink claims it:
    /// a current sink's cursor must never be taken over by another.
    fn renames(&self, sinks: &[Split<'_, RawSink>]) -> Res<()> {
        let mut claimed: HashMap<&str, usize> = HashMap::new();
        for (i, sink) in sinks.iter().enumerate() {
            let Some(from) = &sink.raw.renamed_from else { continue };
            let key = format!("sinks[{i}].renamed_from");
            if let Some(j) = sinks.iter().position(|s| s.raw.name.get_ref() == from.get_ref()) {
                let msg = format!(
                    "{:?} is a configured sink (sinks[{j}]); renamed_from names a sink's former name",
                    from.get_ref()
                );
                return self.fail(from.span(), &key, msg);
            }
            if let Some(first) = claimed.insert(from.get_ref(), i) {
                let msg = format!("{:?} is already renamed by sinks[{first}]", from.get_ref());
                return self.fail(from.span(), &key, msg);
            }
        }
        Ok(())
    }

    fn unique<'n>(&self, names: impl Iterator<Item = &'n Spanned<String>>, what: &str) -> Res<()> {
        let mut seen = HashMap::new();
        for (i, n) in names.enumerate() {
            if let Some(first) = seen.insert(n.get_ref(), i) {
                let msg = format!("duplicate name {:?} (also {what}[{first}])", n.get_ref());
                return self.fail(n.span(), &format!("{what}[{i}].name"), msg);
            }
        }
        Ok(())
    }

    fn name(&self, v: &Spanned<String>, key: &str) -> Res<String> {
        let s = v.get_ref();
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if s.is_empty() || s.len() > 64 || !s.chars().all(ok) {
            let msg = format!("invalid name {s:?}: use 1 to 64 of A-Z a-z 0-9 _ . -");
            return self.fail(v.span(), key, msg);
        }
        Ok(s.clone())
    }

    fn path(&self, v: &Spanned<String>, key: &str) -> Res<PathBuf> {
        if v.get_ref().is_empty() {
            return self.fail(v.span(), key, "must not be empty");
        }
        Ok(self.dir.join(v.get_ref()))
    }

    fn duration(&self, v: &Text, key: &str, default: Duration, positive: bool) -> Res<Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref())
            .map_err(|e| self.err(v.span(), key, format!("invalid duration {:?}: {e}", v.get_ref())))?;
        if positive && d.is_zero() {
            return self.fail(v.span(), key, "must be greater than zero");
        }
        Ok(d)
    }

    fn start(&self, v: &Option<Spanned<toml::Value>>, key: &str) -> Res<StartAt> {
        let Some(v) = v else {
            return Ok(StartAt::Ago(7 * 24 * 60 * MINUTE));
        };
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Datetime(t) => t.to_string(),
            other => {
                return self.fail(v.span(), key, format!("expected a string, found {}", other.type_str()));
            }
        };
        if let Ok(ago) = humantime::parse_duration(&text) {
            return Ok(StartAt::Ago(ago));
        }
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Ok(StartAt::At(t.with_timezone(&Utc))),
            Err(_) => self.fail(
                v.span(),
                key,
                format!(
                    "invalid start {text:?}: expected a duration ago such as \"7d\" or an RFC 3339 \
                 time with offset such as \"2025-01-01T00:00:00Z\""
                ),
            ),
        }
    }

    fn bytes(&self, v: &Option<Spanned<Size>>, key: &str, default: u64) -> Res<u64> {
        let Some(v) = v else { return Ok(default) };
        let n = match v.get_ref() {
            Size::Bytes(n) => *n,
            Size::Text(s) => match s.parse::<ByteSize>() {
                Ok(b) => b.as_u64(),
                Err(e) => return self.fail(v.span(), key, format!("invalid size {s:?}: {e}")),
            },
        };
        if n == 0 {
            return self.fail(v.span(), key, "must be greater than zero");
        }
        Ok(n)
    }

    fn backoff(&self, v: &Option<Spanned<RawBackoff>>, key: &str, default: [Duration; 2]) -> Res<Backoff> {
        let Some(raw) = v else {
            return Ok(Backoff { initial: default[0], max: default[1] });
        };
        let b = raw.get_ref();
        let initial = self.duration(&b.initial, &format!("{key}.initial"), default[0], true)?;
        let max = self.duration(&b.max, &format!("{key}.max"), default[1], true)?;
        if initial > max {
            let (i, m) = (humantime::format_duration(initial), humantime::format_duration(max));
            let msg = format!("initial ({i}) must not exceed max ({m})");
            return self.fail(raw.span(), key, msg);
        }
        Ok(Backoff { initial, max })
    }

    fn url(&self, v: &Text, key: &str, default: &str) -> Res<url::Url> {
        let (text, span) = v.as_ref().map_or((default, None), |v| (v.get_ref().as_str(), Some(v.span())));
        // Messages never echo the URL itself: a pasted one may carry credentials.
        let u = url::Url::parse(text).map_err(|e| self.err(span.clone(), key, format!("invalid URL: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") || !u.has_host() {
            let msg = format!("must be an http(s) URL with a host, not {:?}", u.scheme());
            return self.fail(span, key, msg);
        }
        if !u.username().is_empty() || u.password().is_some() {
            return self.fail(span, key, "must not hold credentials (user:password@); use the credential keys");
        }
        Ok(u)
    }

    /// Resolves `key` (a literal or `"${NAME}"`) or `key_file`; exactly one must be set.
    fn secret(&self, key: &str, value: &Text, file: &Text) -> Res<SecretString> {
        let file_key = format!("{key}_file");
        let (text, span, shown_key) = match (value, file) {
            (Some(_), Some(f)) => {
                let msg = format!("set either {key} or {file_key}, not both");
                return self.fail(f.span(), &file_key, msg);
            }
            (None, None) => return self.fail(None, key, "missing"),
            _ if !self.read_secrets => return Ok(SecretString::from(String::new())),
            (Some(v), None) => {
                let s = v.get_ref();
                let var_ok = |var: &str| !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let text = match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                    None => s.clone(),
                    Some(var) if !var_ok(var) => {
                        let msg = format!("invalid environment variable reference {s:?}");
                        return self.fail(v.span(), key, msg);
                    }
                    Some(var) => (self.env)(var)
                        .ok_or_else(|| self.err(v.span(), key, format!("environment variable {var} is not set")))?,
                };
                (text, v.span(), key)
            }
            (None, Some(f)) => {
                let path = self.dir.join(f.get_ref());
                let mut text = std::fs::read_to_string(&path).map_err(|e| {
                    let msg = format!("cannot read secret file {}: {e}", path.display());
                    self.err(f.span(), &file_key, msg)
                })?;
                warn_if_shared(&path);
                text.truncate(text.trim_end_matches(['\n', '\r']).len());
                (text, f.span(), file_key.as_str())
            }
        };
        if text.is_empty() {
            return self.fail(span, shown_key, "the secret is empty");
        }
        Ok(SecretString::from(text))
    }
}

/// Which array of tables: sources are told apart by `vendor`, sinks by `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Sources,
    Sinks,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Sources => "sources",
            Section::Sinks => "sinks",
        }
    }

    /// The key that names the module owning the rest of the table.
    fn tag(self) -> &'static str {
        match self {
            Section::Sources => "vendor",
            Section::Sinks => "type",
        }
    }

    fn names(self) -> Vec<&'static str> {
        match self {
            Section::Sources => VendorId::ALL.iter().map(|v| v.name()).collect(),
            Section::Sinks => SinkKind::TYPES.to_vec(),
        }
    }

    fn keys_of(self, owner: &str) -> &'static [&'static str] {
        match self {
            Section::Sources => VendorId::from_name(owner).map_or(&[], |v| v.keys()),
            Section::Sinks => SinkKind::keys_of(owner).unwrap_or(&[]),
        }
    }

    /// The keys every table of the section has (the fields of [`RawSource`], [`RawSink`]),
    /// its tag included.
    fn common_keys(self) -> &'static [&'static str] {
        match self {
            Section::Sources => &[
                "name",
                "vendor",
                "base_url",
                "start",
                "lag",
                "overlap",
                "max_span",
                "poll_interval",
                "request_timeout",
                "rate_limit",
                "backoff",
                "max_retry_after",
                "max_pages",
                "ca_file",
            ],
            Section::Sinks => &["name", "type", "batch_max_events", "batch_max_bytes", "backoff", "renamed_from"],
        }
    }

    fn not_used(self, owner: &str) -> String {
        match self {
            Section::Sources => format!("is not used by vendor {owner}"),
            Section::Sinks => "not used by this sink type".to_owned(),
        }
    }
}

/// One `[[sources]]` or `[[sinks]]` table split by [`Validator::split`].
struct Split<'i, R> {
    span: Range<usize>,
    /// The vendor (sink type) named by the table.
    owner: &'static str,
    raw: R,
    own: Spanned<toml::de::DeTable<'i>>,
}

/// What a vendor's (sink protocol's) module sees of its table: its own keys, and the checks
/// that name file, line and key (`sources[<i>].<key>`) in what they report.
pub struct TableKeys<'a> {
    v: &'a Validator<'a>,
    section: Section,
    index: usize,
    table: Range<usize>,
    /// A source's `base_url`.
    base_url: Option<&'a url::Url>,
    owner: &'static str,
    own: Spanned<toml::de::DeTable<'a>>,
}

impl TableKeys<'_> {
    /// The module's keys as its raw struct.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Res<T> {
        let de = toml::de::Deserializer::from(self.own.clone());
        serde_path_to_error::deserialize(de).map_err(|e| self.v.toml_err(&self.key(&key_path(e.path())), e.inner()))
    }

    /// `sources[<i>].<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("{}[{}].{key}", self.section.name(), self.index)
    }

    /// The span of the whole table, for a missing key.
    pub fn table(&self) -> Range<usize> {
        self.table.clone()
    }

    /// A source's `base_url` (none for a sink).
    pub fn base_url(&self) -> Option<&url::Url> {
        self.base_url
    }

    pub fn err(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> ConfigError {
        self.v.err(span, &self.key(key), msg)
    }

    pub fn fail<T>(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Res<T> {
        self.v.fail(span, &self.key(key), msg)
    }

    /// A secret from `key` (a literal or `"${NAME}"`) or `<key>_file`: exactly one must be set.
    pub fn secret(&self, key: &str, value: &Text, file: &Text) -> Res<SecretString> {
        self.v.secret(&self.key(key), value, file)
    }

    /// Like [`TableKeys::secret`], but a missing pair points at the table.
    pub fn required_secret(&self, key: &str, value: &Text, file: &Text) -> Res<SecretString> {
        self.v.required_secret(&self.key(key), value, file, &self.table)
    }

    /// A non-empty `organization_id`, required.
    pub fn required_org(&self, org: Option<&Spanned<String>>) -> Res<String> {
        match org.filter(|o| !o.get_ref().is_empty()) {
            Some(org) => Ok(org.get_ref().clone()),
            None => {
                let span = org.map_or(self.table.clone(), Spanned::span);
                self.v.fail(span, &self.key("organization_id"), format!("required for {}", self.owner))
            }
        }
    }

    /// A byte size (integer or "1 MiB"), `default` when absent; never zero.
    pub fn bytes(&self, value: &Option<Spanned<Size>>, key: &str, default: u64) -> Res<u64> {
        self.v.bytes(value, &self.key(key), default)
    }

    /// A duration ("30s"), `default` when absent; `positive`: never zero.
    pub fn duration(&self, value: &Text, key: &str, default: Duration, positive: bool) -> Res<Duration> {
        self.v.duration(value, &self.key(key), default, positive)
    }

    /// A path, relative to the config file's directory.
    pub fn path(&self, value: &Spanned<String>, key: &str) -> Res<PathBuf> {
        self.v.path(value, &self.key(key))
    }

    /// An http(s) URL with a host and no credentials (`default` when absent).
    pub fn url(&self, value: &Text, key: &str, default: &str) -> Res<url::Url> {
        self.v.url(value, &self.key(key), default)
    }
}

/// A duration as `check` shows it (quoted humantime).
pub(crate) fn duration_text(d: Duration) -> String {
    format!("{:?}", humantime::format_duration(d).to_string())
}

/// A path as `check` shows it (quoted).
pub(crate) fn path_text(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A byte count as `check` shows it: `1048576  # 1 MiB`.
pub(crate) fn size_text(n: u64) -> String {
    format!("{n}  # {}", ByteSize(n).display().iec())
}

/// A span as an operator wrote it: whole days or hours plainly ("31d"), else humantime's form
/// (which would print 31 days as "1month 13h 26m 24s").
fn span_text(d: Duration) -> String {
    match d.as_secs() {
        s if s > 0 && s % 86_400 == 0 && d.subsec_nanos() == 0 => format!("{}d", s / 86_400),
        s if s > 0 && s % 3600 == 0 && d.subsec_nanos() == 0 => format!("{}h", s / 3600),
        _ => humantime::format_duration(d).to_string(),
    }
}

/// `sources[0].lag` from serde_path_to_error's path, without the segments `Spanned` adds.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => {
                let _ = write!(key, "[{index}]");
            }
            Segment::Map { key: k } if k.starts_with("$__serde_spanned") => {}
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                key.push_str(if key.is_empty() { "" } else { "." });
                key.push_str(k);
            }
            Segment::Unknown => {}
        }
    }
    key
}

/// A secret file readable by group or others is accepted, but the operator should know.
pub(crate) fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "secret file is readable by group or others; chmod 600 it");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocsf::summary::EventField;
    use crate::sinks::hec::HecAcks;
    use crate::sinks::otlp::{OtlpBody, OtlpProtocol};
    use crate::sinks::syslog::{Oversize, SyslogFormat, SyslogFraming, SyslogSinkSettings, SyslogTransport};
    use crate::vendors::aitronos::AitronosCredential;
    use crate::vendors::configcat::ConfigCatApi;
    use secrecy::ExposeSecret as _;

    const SECRET: &str = "ak_SuperSecretValue0123456789abcdefghijklmn";
    const FILE: &str = "/etc/auditrelay/auditrelay.toml";
    const SINK: &str = "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"out.ndjson\"\n";

    fn env(name: &str) -> Option<String> {
        [
            "AITRONOS_API_KEY",
            "ASTRONOMER_TOKEN",
            "CONFIGCAT_USERNAME",
            "CONFIGCAT_PASSWORD",
            "DATAFOLD_API_KEY",
            "SPLUNK_HEC_TOKEN",
        ]
        .contains(&name)
        .then(|| SECRET.to_owned())
    }

    fn parse_at(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, origin, &env)
    }

    /// A config with one aitronos source whose body is `source` (after name and vendor).
    fn with_source(source: &str) -> String {
        format!("state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n{source}\n{SINK}")
    }

    const MINIMAL: &str = "organization_id = \"ORG_A\"\napi_key = \"${AITRONOS_API_KEY}\"";

    /// Parsing `text` fails with a message containing every `expected` piece and no secret.
    fn check_err(text: &str, expected: &[&str]) {
        let e = parse_at(text, Path::new(FILE)).expect_err("config must be rejected").to_string();
        for piece in expected {
            assert!(e.contains(piece), "{e:?} lacks {piece:?}");
        }
        assert!(!e.contains(SECRET), "{e:?} leaks the secret");
        assert!(!e.contains('\n'), "{e:?} is not one line");
    }

    /// The common keys the split keeps apart from a vendor's or sink's are exactly the fields
    /// of the raw structs (serde names them when it meets an unknown one).
    #[test]
    fn split_common_keys_are_the_raw_structs_fields() {
        fn fields<T: serde::de::DeserializeOwned>() -> Vec<String> {
            let Err(e) = toml::from_str::<T>("zz_unknown = 1") else { panic!("accepted") };
            let msg = e.message().to_owned();
            let list = msg.split("expected one of").nth(1).unwrap_or_else(|| panic!("{msg}"));
            list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
        }
        for (section, raw) in [(Section::Sources, fields::<RawSource>()), (Section::Sinks, fields::<RawSink>())] {
            let common: Vec<String> =
                section.common_keys().iter().filter(|k| **k != section.tag()).map(|k| (*k).to_owned()).collect();
            assert_eq!(common, raw, "{section:?}");
        }
    }

    #[test]
    fn example_config_parses_and_validates() {
        let text = include_str!("../config/auditrelay.example.toml");
        let c = parse_at(text, Path::new("/etc/auditrelay/auditrelay.toml")).expect("example is valid");
        assert_eq!(c.state_dir, Path::new("/var/lib/auditrelay"));
        assert_eq!(c.queue.max_bytes, 1 << 30);
        assert_eq!(c.telemetry.listen, Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))));
        let s = &c.sources[0];
        assert_eq!((s.name.as_str(), s.vendor.vendor_name()), ("aitronos-acme", "aitronos"));
        assert_eq!(s.vendor.organization_id(), "ORG_7F3KQ9ZP2M4XW8RT");
        let VendorSettings::Aitronos(a) = &s.vendor else { panic!("not aitronos") };
        assert!(matches!(&a.credential, AitronosCredential::ApiKey(k) if k.expose_secret() == SECRET));
        assert_eq!(s.start, StartAt::Ago(Duration::from_secs(7 * 86_400)));
        assert_eq!(s.backoff, Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(300) });
        let vendors: Vec<_> = c.sources.iter().map(|s| s.vendor.vendor_name()).collect();
        assert_eq!(vendors, ["aitronos", "astronomer", "configcat", "datafold"]);
        let SinkKind::File(f) = &c.sinks[0].kind else { panic!("not a file sink") };
        assert_eq!(f.path, Path::new("/var/lib/auditrelay/events.ndjson"));
        assert_eq!((c.sinks[0].batch_max_events, c.sinks[0].batch_max_bytes), (500, 1 << 20));
        let SinkKind::Syslog(sl) = &c.sinks[1].kind else { panic!("not a syslog sink") };
        assert_eq!((sl.host.as_str(), sl.port, sl.facility), ("siem.example.com", 6514, 10));
        let SyslogTransport::Tls(tls) = &sl.transport else { panic!("not tls") };
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/auditrelay/siem-ca.pem")));
        assert_eq!((tls.server_name.as_str(), tls.client_auth.is_none()), ("siem.example.com", true));
        assert_eq!(
            (sl.sd_id.as_deref(), sl.max_message_size, sl.oversize),
            (Some("ocsf@32473"), 65_536, Oversize::DeadLetter)
        );
        let SinkKind::Hec(h) = &c.sinks[2].kind else { panic!("not a hec sink") };
        assert_eq!(
            (h.url.as_str(), h.index.as_deref(), h.acks),
            ("https://splunk.example.com:8088/", Some("audit"), None)
        );
        let SinkKind::Otlp(o) = &c.sinks[3].kind else { panic!("not an otlp sink") };
        assert_eq!(
            (o.endpoint.as_str(), o.protocol),
            ("https://otel.example.com:4318/v1/logs", OtlpProtocol::HttpProtobuf)
        );
    }

    fn syslog_sink(body: &str) -> String {
        with_source(MINIMAL).replace(SINK, &format!("[[sinks]]\nname = \"s\"\ntype = \"syslog\"\n{body}\n"))
    }

    fn syslog_settings(body: &str) -> SyslogSinkSettings {
        let c = parse_at(&syslog_sink(body), Path::new(FILE)).expect("valid");
        let SinkKind::Syslog(sl) = &c.sinks[0].kind else { panic!("not a syslog sink") };
        sl.clone()
    }

    #[test]
    fn syslog_sinks_get_defaults_per_transport() {
        let tls = syslog_settings("address = \"siem.example.com\"");
        assert_eq!((tls.port, tls.framing, tls.format), (6514, SyslogFraming::OctetCounting, SyslogFormat::Rfc5424));
        assert_eq!((tls.facility, tls.app_name.as_str(), tls.hostname.as_ref()), (10, "auditrelay", None));
        assert_eq!((tls.max_message_size, tls.oversize, tls.timeout), (65_536, Oversize::DeadLetter, 30 * SECOND));
        let SyslogTransport::Tls(t) = &tls.transport else { panic!("not tls") };
        assert_eq!((t.server_name.as_str(), t.ca_file.is_none()), ("siem.example.com", true));
        let udp = syslog_settings("address = \"10.0.0.1\"\ntransport = \"udp\"\nfacility = 16");
        assert_eq!((udp.port, udp.max_message_size, udp.facility), (514, 8192, 16));
        let v6 =
            syslog_settings("address = \"[::1]:1514\"\ntransport = \"tcp\"\nframing = \"lf\"\nfacility = \"local7\"");
        assert_eq!((v6.host.as_str(), v6.port, v6.framing, v6.facility), ("::1", 1514, SyslogFraming::Lf, 23));
        let mtls = syslog_settings(
            "address = \"127.0.0.1:6514\"\nserver_name = \"localhost\"\nca_file = \"ca.pem\"\n\
             client_cert_file = \"c.pem\"\nclient_key_file = \"c.key\"\noversize = \"truncate\"",
        );
        let SyslogTransport::Tls(t) = &mtls.transport else { panic!("not tls") };
        let auth = t.client_auth.as_ref().expect("client auth");
        assert_eq!(
            (t.server_name.as_str(), auth.key_file.as_path()),
            ("localhost", Path::new("/etc/auditrelay/c.key"))
        );
        assert_eq!(mtls.oversize, Oversize::Truncate);
        let render = parse_at(&syslog_sink("address = \"[::1]:1514\"\nsd_id = \"x@1\""), Path::new(FILE))
            .expect("valid")
            .render_redacted();
        assert!(render.contains("address = \"[::1]:1514\"") && render.contains("sd_id = \"x@1\""), "{render}");
    }

    fn sink_of(kind: &str, body: &str) -> String {
        with_source(MINIMAL).replace(SINK, &format!("[[sinks]]\nname = \"s\"\ntype = \"{kind}\"\n{body}\n"))
    }

    fn sink_kind(kind: &str, body: &str) -> SinkKind {
        parse_at(&sink_of(kind, body), Path::new(FILE)).expect("valid").sinks.remove(0).kind
    }

    #[test]
    fn hec_sinks_get_defaults_and_read_their_token() {
        let SinkKind::Hec(h) =
            sink_kind("hec", "url = \"https://splunk.example.com:8088\"\ntoken = \"${AITRONOS_API_KEY}\"")
        else {
            panic!("not hec")
        };
        assert_eq!((h.url.as_str(), h.token.expose_secret()), ("https://splunk.example.com:8088/", SECRET));
        assert_eq!((h.source.as_str(), h.sourcetype.as_str(), h.index.as_deref()), ("auditrelay", "ocsf", None));
        assert_eq!(h.fields, [EventField::ClassUid, EventField::Vendor, EventField::Tenant]);
        assert_eq!((h.gzip, h.acks, h.timeout, h.host.as_deref()), (true, None, 30 * SECOND, None));
        let body = "url = \"http://127.0.0.1:8088\"\ntoken = \"t\"\nindex = \"audit\"\nfields = [\"class_name\", \"event_code\"]\n\
                    gzip = false\nindexer_ack = true\nack_poll_interval = \"500ms\"\nhostname = \"collector-1\"";
        let SinkKind::Hec(h) = sink_kind("hec", body) else { panic!("not hec") };
        assert_eq!((h.index.as_deref(), h.gzip, h.host.as_deref()), (Some("audit"), false, Some("collector-1")));
        assert_eq!(h.fields, [EventField::ClassName, EventField::EventCode]);
        assert_eq!(h.acks, Some(HecAcks { poll_interval: Duration::from_millis(500), timeout: 5 * MINUTE }));
        let render = parse_at(&sink_of("hec", body), Path::new(FILE)).expect("valid").render_redacted();
        assert!(render.contains("token = \"[redacted]\"") && !render.contains("\"t\""), "{render}");
    }

    #[test]
    fn otlp_sinks_get_defaults_and_keep_header_values_secret() {
        let SinkKind::Otlp(o) = sink_kind("otlp", "endpoint = \"https://collector.example.com:4318\"") else {
            panic!("not otlp")
        };
        assert_eq!(
            (o.endpoint.as_str(), o.protocol),
            ("https://collector.example.com:4318/v1/logs", OtlpProtocol::HttpProtobuf)
        );
        assert_eq!((o.gzip, o.body, o.headers.len(), o.timeout), (true, OtlpBody::Structured, 0, 30 * SECOND));
        let body = "endpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\nbody = \"json_string\"\n\
                    headers = { \"X-Api-Key\" = \"${AITRONOS_API_KEY}\" }";
        let SinkKind::Otlp(o) = sink_kind("otlp", body) else { panic!("not otlp") };
        assert_eq!(
            (o.endpoint.as_str(), o.protocol, o.body),
            ("http://127.0.0.1:4317/", OtlpProtocol::Grpc, OtlpBody::JsonString)
        );
        assert_eq!((o.headers[0].0.as_str(), o.headers[0].1.expose_secret()), ("x-api-key", SECRET));
        let custom = "endpoint = \"http://127.0.0.1:4318/custom/path\"\nprotocol = \"http_json\"";
        let SinkKind::Otlp(o) = sink_kind("otlp", custom) else { panic!("not otlp") };
        assert_eq!(o.endpoint.as_str(), "http://127.0.0.1:4318/custom/path");
        let render = parse_at(&sink_of("otlp", body), Path::new(FILE)).expect("valid").render_redacted();
        assert!(render.contains("\"x-api-key\" = \"[redacted]\"") && !render.contains(SECRET), "{render}");
    }

    #[test]
    fn hec_and_otlp_mistakes_are_named() {
        check_err(&sink_of("hec", "token = \"t\""), &["sinks[0].url", "required"]);
        check_err(&sink_of("hec", "url = \"https://h:8088\""), &["sinks[0].token", "required"]);
        check_err(&sink_of("hec", "url = \"ftp://h\"\ntoken = \"t\""), &[":10: sinks[0].url:", "http"]);
        check_err(&sink_of("hec", "url = \"https://u:p@h\"\ntoken = \"t\""), &["sinks[0].url", "credentials"]);
        check_err(
            &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nfields = [\"nope\"]"),
            &["sinks[0].fields", "class_uid"],
        );
        check_err(
            &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nack_timeout = \"1m\""),
            &["sinks[0].ack_timeout", "indexer_ack"],
        );
        check_err(
            &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nca_file = \"ca.pem\""),
            &["sinks[0].ca_file", "https"],
        );
        check_err(
            &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\naddress = \"h:1\""),
            &["sinks[0].address", "not used"],
        );
        let slow_poll = "url = \"http://h\"\ntoken = \"t\"\nindexer_ack = true\nack_poll_interval = \"10m\"";
        check_err(&sink_of("hec", slow_poll), &["sinks[0].ack_timeout", "ack_poll_interval"]);
        check_err(&sink_of("otlp", ""), &["sinks[0].endpoint", "required"]);
        check_err(&sink_of("otlp", "endpoint = \"http://h\"\nprotocol = \"thrift\""), &["sinks[0].protocol", "thrift"]);
        check_err(
            &sink_of("otlp", "endpoint = \"http://h\"\nheaders = { \"a b\" = \"x\" }"),
            &["sinks[0].headers.a b", "header name"],
        );
        check_err(
            &sink_of("otlp", "endpoint = \"http://h\"\nheaders = { a = \"${NOPE_UNSET}\" }"),
            &["sinks[0].headers.a", "NOPE_UNSET"],
        );
        check_err(&sink_of("otlp", "endpoint = \"http://h\"\ntoken = \"t\""), &["sinks[0].token", "not used"]);
    }

    #[test]
    fn syslog_mistakes_are_named() {
        check_err(&syslog_sink(""), &["sinks[0].address", "required"]);
        check_err(&syslog_sink("address = \"h:0\""), &[":10: sinks[0].address:", "port"]);
        check_err(&syslog_sink("address = \"::1:514\""), &["sinks[0].address", "brackets"]);
        check_err(&syslog_sink("address = \"h\"\ntransport = \"sctp\""), &["sinks[0].transport", "sctp"]);
        check_err(
            &syslog_sink("address = \"h\"\ntransport = \"udp\"\nca_file = \"x\""),
            &["sinks[0].ca_file", "not used"],
        );
        check_err(&syslog_sink("address = \"h\"\ntransport = \"udp\"\nframing = \"lf\""), &["sinks[0].framing", "udp"]);
        let big_udp = "address = \"h\"\ntransport = \"udp\"\nmax_message_size = \"64 KiB\"";
        check_err(&syslog_sink(big_udp), &["sinks[0].max_message_size", "65507"]);
        check_err(&syslog_sink("address = \"h\"\nmax_message_size = 100"), &["sinks[0].max_message_size", "480"]);
        check_err(&syslog_sink("address = \"h\"\nfacility = \"local9\""), &["sinks[0].facility", "local7"]);
        check_err(&syslog_sink("address = \"h\"\nfacility = 24"), &["sinks[0].facility"]);
        check_err(&syslog_sink("address = \"h\"\nhostname = \"a b\""), &["sinks[0].hostname", "printable"]);
        check_err(&syslog_sink("address = \"h\"\nsd_id = \"a=b\""), &["sinks[0].sd_id", "SD-ID"]);
        check_err(&syslog_sink("address = \"h\"\nclient_cert_file = \"c\""), &["sinks[0].client_key_file", "required"]);
        check_err(&syslog_sink("address = \"h\"\nserver_name = \"bad name\""), &["sinks[0].server_name"]);
        check_err(&syslog_sink("address = \"h\"\npath = \"x\""), &["sinks[0].path", "not used"]);
        check_err(&format!("{}\ntimeout = \"1s\"", with_source(MINIMAL)), &["sinks[0].timeout", "not used"]);
    }

    fn source_of(vendor: &str, body: &str) -> String {
        format!("state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"{vendor}\"\n{body}\n{SINK}")
    }

    const CONFIGCAT: &str =
        "organization_id = \"08d86d63\"\nusername = \"${CONFIGCAT_USERNAME}\"\npassword = \"${CONFIGCAT_PASSWORD}\"";

    #[test]
    fn configcat_and_datafold_get_their_vendor_defaults() {
        let c = parse_at(&source_of("configcat", CONFIGCAT), Path::new(FILE)).expect("valid");
        let s = &c.sources[0];
        assert_eq!(s.base_url.as_str(), "https://api.configcat.com/");
        assert_eq!(s.max_span, Duration::from_secs(30 * 86_400));
        assert_eq!((s.rate_limit.requests.get(), s.rate_limit.per), (60, Duration::from_secs(60)));
        let VendorSettings::ConfigCat(cc) = &s.vendor else { panic!("not configcat") };
        assert_eq!((cc.page_size, cc.api_version), (100, ConfigCatApi::V2));
        assert_eq!(cc.password.expose_secret(), SECRET);

        let df = "api_key = \"${DATAFOLD_API_KEY}\"\nbase_url = \"https://datafold.acme.example\"";
        let c = parse_at(&source_of("datafold", df), Path::new(FILE)).expect("valid");
        let s = &c.sources[0];
        assert_eq!(s.max_span, Duration::from_secs(3600));
        assert_eq!(s.vendor.organization_id(), "datafold.acme.example");
        let VendorSettings::Datafold(d) = &s.vendor else { panic!("not datafold") };
        assert_eq!((d.max_records, d.max_response_bytes), (10_000, 32 << 20));
    }

    #[test]
    fn astronomer_gets_its_documented_limits() {
        let body = "organization_id = \"clq4n7x2a000008jz5b1c3e7f\"\nbearer_token = \"${DATAFOLD_API_KEY}\"";
        let c = parse_at(&source_of("astronomer", body), Path::new(FILE)).expect("valid");
        let s = &c.sources[0];
        assert_eq!(s.base_url.as_str(), "https://api.astronomer.io/");
        assert_eq!((s.rate_limit.requests.get(), s.rate_limit.per), (2, Duration::from_secs(60)));
        assert_eq!((s.max_span, s.poll_interval), (Duration::from_secs(86_400), Duration::from_secs(300)));
        // Regression (issue 15 point 6): §2.8 asks for a 10-minute overlap, not the generic 5.
        assert_eq!(s.overlap, 10 * MINUTE, "Astronomer's documented overlap");
        let set = parse_at(&source_of("astronomer", &format!("{body}\noverlap = \"15m\"")), Path::new(FILE));
        assert_eq!(set.expect("valid").sources[0].overlap, 15 * MINUTE, "a configured overlap wins");
        check_err(
            &source_of("astronomer", &format!("{body}\nmax_span = \"2d\"")),
            &["sources[0].max_span: 2d exceeds"],
        );
        check_err(&source_of("astronomer", "organization_id = \"o\""), &["sources[0].bearer_token: required"]);
        check_err(&source_of("astronomer", &format!("{body}\npage_size = 5")), &["not used by vendor astronomer"]);
    }

    #[test]
    fn severity_overrides_are_read_and_checked() {
        let text = format!(
            "{}\n[severity]\noverrides = {{ \"configcat:apiKeyAdded\" = \"high\", \"aitronos:user.deleted\" = 3 }}\n",
            with_source(MINIMAL)
        );
        let c = parse_at(&text, Path::new(FILE)).expect("valid");
        assert_eq!(c.severity.get("configcat", "apiKeyAdded"), Some(Severity::High));
        assert_eq!(c.severity.get("aitronos", "user.deleted"), Some(Severity::Medium));
        assert_eq!(c.severity.get("aitronos", "user.created"), None);
        assert!(c.render_redacted().contains("\"configcat:apiKeyAdded\" = \"high\""));
        let bad = |o: &str| format!("{}\n[severity]\noverrides = {{ {o} }}\n", with_source(MINIMAL));
        check_err(&bad("\"okta:x\" = \"high\""), &[":13: severity.overrides.\"okta:x\":", "<vendor>:<event code>"]);
        check_err(
            &bad("\"datafold:login\" = \"severe\""),
            &[":13: severity.overrides.\"datafold:login\":", "informational"],
        );
        check_err(&bad("\"datafold:login\" = 9"), &["0 to 6"]);
    }

    #[test]
    fn vendor_specific_mistakes_are_named() {
        let cc = |extra: &str| source_of("configcat", &format!("{CONFIGCAT}\n{extra}"));
        check_err(&cc("max_span = \"31d\""), &[":8: sources[0].max_span: 31d exceeds", "(30d)"]);
        check_err(&cc("api_version = \"v3\""), &[":8: sources[0].api_version:", "v3"]);
        check_err(&cc("api_key = \"k\""), &[":8: sources[0].api_key: is not used by vendor configcat"]);
        check_err(&source_of("configcat", "organization_id = \"o\"\nusername = \"u\""), &["sources[0].password"]);
        let df = |extra: &str| source_of("datafold", &format!("api_key = \"k\"\n{extra}"));
        check_err(&df("max_span = \"2h\""), &[":6: sources[0].max_span:"]);
        check_err(&df("max_records = 0"), &[":6: sources[0].max_records:"]);
        check_err(&df("page_size = 10"), &["sources[0].page_size: is not used by vendor datafold"]);
        check_err(&with_source(&format!("{MINIMAL}\nusername = \"u\"")), &["sources[0].username", "aitronos"]);
    }

    #[test]
    fn defaults_are_filled_in() {
        let c = parse_at(&with_source(MINIMAL), Path::new(FILE)).expect("valid");
        let s = &c.sources[0];
        assert_eq!(s.base_url.as_str(), "https://api.aitronos.com/");
        assert_eq!((s.lag, s.overlap, s.max_span), (2 * MINUTE, 5 * MINUTE, Duration::from_secs(86_400)));
        assert_eq!((s.poll_interval, s.request_timeout), (MINUTE, Duration::from_secs(30)));
        assert_eq!(s.max_retry_after, Duration::from_secs(3600));
        assert_eq!(s.max_pages, 10_000);
        let rl = RateLimit { requests: NonZeroU32::new(100).expect("nonzero"), per: MINUTE, burst: NonZeroU32::MIN };
        assert_eq!(s.rate_limit, rl);
        let VendorSettings::Aitronos(a) = &s.vendor else { panic!("not aitronos") };
        assert_eq!(a.page_size, 100);
        assert_eq!(c.queue.max_bytes, 1 << 30);
        assert_eq!(c.state_dir, Path::new("/etc/auditrelay/state"));
        assert_eq!(c.sinks[0].backoff, Backoff { initial: Duration::from_secs(1), max: MINUTE });
        let partial = with_source(&format!("{MINIMAL}\nrate_limit = {{ requests = 1000 }}"));
        let c = parse_at(&partial, Path::new(FILE)).expect("valid");
        assert_eq!((c.sources[0].rate_limit.requests.get(), c.sources[0].rate_limit.per), (1000, MINUTE));
    }

    #[test]
    fn source_ca_file_is_resolved_and_only_taken_for_https() {
        let c =
            parse_at(&with_source(&format!("{MINIMAL}\nca_file = \"proxy-ca.pem\"")), Path::new(FILE)).expect("valid");
        assert_eq!(c.sources[0].ca_file.as_deref(), Some(Path::new("/etc/auditrelay/proxy-ca.pem")));
        assert!(c.render_redacted().contains("ca_file = \"/etc/auditrelay/proxy-ca.pem\""), "{}", c.render_redacted());
        let http = format!("{MINIMAL}\nbase_url = \"http://127.0.0.1:8089/\"\nca_file = \"x.pem\"");
        check_err(&with_source(&http), &[":8: sources[0].ca_file: only used with an https base_url"]);
    }

    #[test]
    fn max_pages_is_read_checked_and_rendered() {
        let c = parse_at(&with_source(&format!("{MINIMAL}\nmax_pages = 5")), Path::new(FILE)).expect("valid");
        assert_eq!(c.sources[0].max_pages, 5);
        assert!(c.render_redacted().contains("\nmax_pages = 5\n"), "{}", c.render_redacted());
        let zero = with_source(&format!("{MINIMAL}\nmax_pages = 0"));
        check_err(&zero, &[":7: sources[0].max_pages: must be at least 1"]);
        check_err(&with_source(&format!("{MINIMAL}\nmax_pages = -1")), &[":7:", "sources[0].max_pages"]);
        // Vendor-neutral: accepted for an unpaged vendor too (where one answer is one page).
        let df = source_of("datafold", "api_key = \"k\"\nmax_pages = 3");
        assert_eq!(parse_at(&df, Path::new(FILE)).expect("valid").sources[0].max_pages, 3);
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        check_err(&format!("state_dir = \"s\"\n\nbogus = 1\n{SINK}"), &[FILE, ":3:", "bogus"]);
        check_err(&with_source(&format!("{MINIMAL}\nlagg = \"1m\"")), &[FILE, ":7:", "sources[0]", "lagg"]);
        check_err(&with_source(&format!("{MINIMAL}\nbackoff = {{ inital = \"1s\" }}")), &[":7:", "inital"]);
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let bad_lag = with_source(&format!("{MINIMAL}\nlag = \"5x\""));
        check_err(&bad_lag, &[&format!("{FILE}:7: sources[0].lag: invalid duration \"5x\"")]);
        check_err(&with_source(&format!("{MINIMAL}\npage_size = 101")), &[":7: sources[0].page_size:", "101"]);
        check_err(&with_source(&format!("{MINIMAL}\npage_size = 0")), &[":7: sources[0].page_size:"]);
        check_err(&with_source(&format!("{MINIMAL}\npage_size = \"x\"")), &[":7:", "sources[0].page_size"]);
        check_err(&with_source(&format!("{MINIMAL}\noverlap = \"1d\"")), &[":7: sources[0].overlap:", "max_span"]);
        check_err(&with_source(&format!("{MINIMAL}\nmax_span = \"5m\"")), &["sources[0].overlap", "max_span"]);
        check_err(&with_source(&format!("{MINIMAL}\npoll_interval = \"0s\"")), &[":7: sources[0].poll_interval:"]);
        check_err(&with_source(&format!("{MINIMAL}\nstart = \"yesterday\"")), &[":7: sources[0].start:"]);
        check_err(&with_source(&format!("{MINIMAL}\nbase_url = \"ftp://x\"")), &[":7: sources[0].base_url:"]);
        check_err(&with_source(&format!("{MINIMAL}\nrate_limit = {{ requests = 0 }}")), &[":7:", "requests"]);
        let backoff = format!("{MINIMAL}\nbackoff = {{ initial = \"2m\", max = \"1m\" }}");
        check_err(&with_source(&backoff), &[":7: sources[0].backoff:", "initial"]);
        check_err(&with_source("vendor2 = 1"), &["sources[0]", "vendor2"]);
        check_err(&with_source("api_key = \"k\""), &[":2: sources[0].organization_id: required"]);
        check_err(&with_source("organization_id = \"ORG_A\""), &["sources[0].api_key", "exactly one"]);
        check_err(&format!("state_dir = \"s\"\n[queue]\nmax_bytes = 0\n{SINK}"), &[":3: queue.max_bytes:"]);
        check_err(
            &format!("state_dir = \"s\"\n[queue]\nmax_bytes = \"1 XB\"\n{SINK}"),
            &[":3: queue.max_bytes: invalid size \"1 XB\""],
        );
        check_err("state_dir = \"s\"\nsources = [", &[FILE, ":2:"]);
        check_err(&format!("state_dir = \"s\"\n{SINK}"), &[": sources: at least one"]);
        let vendor = with_source(MINIMAL).replace("\"aitronos\"", "\"okta\"");
        check_err(&vendor, &[":4: sources[0].vendor:", "okta"]);
    }

    #[test]
    fn duplicate_names_and_bad_names_are_rejected() {
        let two = format!("{}\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n{MINIMAL}", with_source(MINIMAL));
        check_err(&two, &["sources[1].name", "duplicate", "\"a\""]);
        check_err(&format!("{}{SINK}", with_source(MINIMAL)), &["sinks[1].name", "duplicate"]);
        check_err(&with_source(MINIMAL).replace("name = \"a\"", "name = \"a b\""), &[":3: sources[0].name:"]);
    }

    #[test]
    fn renamed_from_names_a_former_sink_claimed_once() {
        let renamed = format!("{}renamed_from = \"old\"\n", with_source(MINIMAL));
        let c = parse_at(&renamed, Path::new(FILE)).expect("valid");
        assert_eq!(c.sinks[0].renamed_from.as_deref(), Some("old"));
        assert!(c.render_redacted().contains("renamed_from = \"old\""));
        // A current sink's cursor is never taken over.
        let current = format!("{}{SINK}", with_source(MINIMAL)).replacen("name = \"f\"", "name = \"g\"", 1);
        let current = format!("{current}renamed_from = \"g\"\n");
        check_err(&current, &["sinks[1].renamed_from", "\"g\" is a configured sink"]);
        let twice = format!("{renamed}{}renamed_from = \"old\"\n", SINK.replace("\"f\"", "\"h\""));
        check_err(&twice, &["sinks[1].renamed_from", "already renamed by sinks[0]"]);
        check_err(
            &format!("{}renamed_from = \"a b\"\n", with_source(MINIMAL)),
            &["sinks[0].renamed_from", "invalid name"],
        );
    }

    #[test]
    fn missing_env_var_names_variable_and_key_but_no_secret() {
        // The first source holds a literal secret; the error about the second must not show it.
        let text = with_source(&format!(
            "organization_id = \"ORG_A\"\napi_key = \"{SECRET}\"\n[[sources]]\nname = \"b\"\n\
             vendor = \"aitronos\"\norganization_id = \"ORG_B\"\nbearer_token = \"${{NOPE_TOKEN}}\""
        ));
        check_err(&text, &[FILE, ":11:", "sources[1].bearer_token", "NOPE_TOKEN"]);
        check_err(&with_source("organization_id = \"O\"\napi_key = \"${}\""), &["sources[0].api_key", "invalid"]);
    }

    #[test]
    fn secret_files_are_read_trimmed_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let origin = dir.path().join("auditrelay.toml");
        std::fs::write(dir.path().join("token"), format!("{SECRET}\r\n")).expect("write");
        let c =
            parse_at(&with_source("organization_id = \"O\"\nbearer_token_file = \"token\""), &origin).expect("valid");
        let VendorSettings::Aitronos(a) = &c.sources[0].vendor else { panic!("not aitronos") };
        assert!(matches!(&a.credential, AitronosCredential::Bearer(t) if t.expose_secret() == SECRET));

        let missing = dir.path().join("absent");
        let text = with_source(&format!("organization_id = \"O\"\napi_key_file = {:?}", missing.display().to_string()));
        let e = parse_at(&text, &origin).expect_err("unreadable").to_string();
        assert!(e.contains(":6: sources[0].api_key_file:") && e.contains(&missing.display().to_string()), "{e}");

        std::fs::write(dir.path().join("empty"), "\n").expect("write");
        let e = parse_at(&with_source("organization_id = \"O\"\napi_key_file = \"empty\""), &origin);
        assert!(e.expect_err("empty").to_string().contains("sources[0].api_key_file: the secret is empty"));

        let both = with_source("organization_id = \"O\"\napi_key = \"k\"\napi_key_file = \"token\"");
        check_err(&both, &[":7: sources[0].api_key_file:", "not both"]);
        let mixed = with_source("organization_id = \"O\"\napi_key = \"k\"\nbearer_token_file = \"token\"");
        check_err(&mixed, &[":7: sources[0].bearer_token:", "exactly one"]);
    }

    #[test]
    fn fingerprints_change_with_settings_and_secrets_only() {
        let text = |key: &str, lag: &str| {
            with_source(&format!("organization_id = \"ORG_A\"\napi_key = \"{key}\"\nlag = \"{lag}\""))
        };
        let parse = |t: &str| parse_at(t, Path::new(FILE)).expect("valid");
        let (a, same) = (parse(&text("k1", "2m")), parse(&text("k1", "2m")));
        assert_eq!(a.sources[0].fingerprint(), same.sources[0].fingerprint());
        assert_eq!(a.sinks[0].fingerprint(), same.sinks[0].fingerprint());
        assert_ne!(a.sources[0].fingerprint(), parse(&text("k2", "2m")).sources[0].fingerprint(), "a rotated key");
        assert_ne!(a.sources[0].fingerprint(), parse(&text("k1", "3m")).sources[0].fingerprint());
    }

    #[test]
    fn secrets_never_show_in_debug_or_render() {
        let text = include_str!("../config/auditrelay.example.toml");
        let c = parse_at(text, Path::new(FILE)).expect("valid");
        assert!(!format!("{c:?}").contains(SECRET));
        let shown = c.render_redacted();
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("api_key = \"[redacted]\""), "{shown}");
        assert!(shown.contains("max_span = \"1day\"") && shown.contains("per = \"1m\""), "{shown}");
    }

    #[test]
    fn load_reads_a_file_and_reports_a_missing_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.toml");
        let text = with_source("organization_id = \"O\"\napi_key = \"literal\"\nstart = 2025-01-01T02:00:00+02:00");
        std::fs::write(&path, text).expect("write");
        let c = Config::load(&path).expect("valid");
        assert_eq!(c.state_dir, dir.path().join("state"));
        let t0 = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("time").with_timezone(&Utc);
        assert_eq!(c.sources[0].start.resolve(Utc::now()), t0);
        assert_eq!(StartAt::Ago(MINUTE).resolve(t0), t0 - chrono::TimeDelta::minutes(1));
        let e = Config::load(&dir.path().join("nope.toml")).expect_err("missing").to_string();
        assert!(e.contains("nope.toml") && e.contains("cannot read"), "{e}");
    }
}
