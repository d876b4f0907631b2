//! Layer two: validation. [`Validator`] turns the raw structs into the typed ones: durations,
//! byte sizes, URLs, paths resolved against the config file's directory, defaults filled in,
//! secrets resolved from `"${ENV}"`, `<key>_file` or a literal into [`SecretString`]. Each
//! `[[sources]]` (`[[sinks]]`) table is split by its `vendor` (`type`): the common keys are
//! checked here, the rest by the vendor's (protocol's) module through [`TableKeys`].
//!
//! Mistakes accumulate: a check that refuses a value records its problem (`Validator::err`)
//! and returns [`Reported`]; its caller goes on with the next key or table, so every mistake of
//! the file is found in one pass. A key refused for its type is dropped and its table read
//! again without it (`Validator::read_table`). A key with a problem gets no second one (a
//! value refused for its type is not also "missing"). Checks between tables (duplicate names,
//! `renamed_from`) run last, on the names of every table that has a readable `name`, whatever
//! else is wrong with it; all problems are then reported by line and column.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use toml::Spanned;
use toml::de::DeValue;

use super::raw::{
    RawBackoff, RawConfig, RawOcsf, RawRateLimit, RawSeverity, RawSink, RawSource, RawTelemetry, SecretText, Size,
};
use super::*;
use crate::ocsf::event::RawData;
use crate::ocsf::event::Severity;
use crate::ocsf::{Policy, SeverityPolicy};
use crate::vendors::VendorId;

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

pub(super) struct Validator<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
    /// Relative paths in the file (state_dir, sink paths, secret files) are relative to this.
    pub(super) dir: &'a Path,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// `false`: secrets are checked for shape (one of `key` / `key_file`) but not read.
    pub(super) read_secrets: bool,
    /// `true`: every other `*_file` key (`ca_file`, `client_cert_file`, `client_key_file`) must
    /// name a file that can be read now, not only when a sink or source connects.
    pub(super) check_files: bool,
    found: Found,
    /// The vendor definitions found (the definitions directory, then any a source names by
    /// path), read before the `[[sources]]` tables are split by vendor.
    defined: RefCell<crate::vendors::defined::registry::Registry>,
}

/// The mistakes found so far.
#[derive(Default)]
struct Found {
    /// In the order found.
    problems: RefCell<Vec<Problem>>,
    /// Key paths with a problem, or named by a "did you mean": a later problem on one of them
    /// follows from the first (a value refused for its type is then missing) and is not shown.
    keys: RefCell<BTreeSet<String>>,
    /// The byte offset of each line's start, made at the first problem: a file with thousands
    /// of mistakes must not be scanned again for each.
    line_starts: std::cell::OnceCell<Vec<usize>>,
}

/// A mistake was found and recorded by the [`Validator`] (which reports every one at the
/// end): the value checked is unusable, and the caller goes on with the next key or table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// A validation step's result.
pub type Res<T> = Result<T, Reported>;
/// An optional string key as written.
pub type Text = Option<Spanned<String>>;
/// An optional secret key as written.
pub type Secret = Option<Spanned<SecretText>>;

impl<'a> Validator<'a> {
    pub(super) fn new(
        text: &'a str,
        file: &'a Path,
        dir: &'a Path,
        env: &'a dyn Fn(&str) -> Option<String>,
        read_secrets: bool,
        check_files: bool,
    ) -> Self {
        Validator {
            text,
            file,
            dir,
            env,
            read_secrets,
            check_files,
            found: Found::default(),
            defined: RefCell::default(),
        }
    }
}

impl Validator<'_> {
    /// Records a problem with the value at `span` (the table's for a missing key; none for the
    /// file as a whole), unless `key` already has one.
    fn err(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Reported {
        if !self.found.keys.borrow_mut().insert(key.to_owned()) && !key.is_empty() {
            return Reported;
        }
        let (line, column) = match span.into().map(|s| s.start) {
            Some(at) => {
                let (line, column) = self.position(at);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        let problem = Problem { line, column, key: key.to_owned(), message: msg.into() };
        self.found.problems.borrow_mut().push(problem);
        Reported
    }

    /// Marks `key` as having a problem already (the name a misspelt key was meant to be).
    fn covered(&self, key: String) {
        self.found.keys.borrow_mut().insert(key);
    }

    /// Whether `key` has a problem already.
    fn has_problem(&self, key: &str) -> bool {
        self.found.keys.borrow().contains(key)
    }

    /// The 1-based line and column (in characters) of byte `at`.
    fn position(&self, at: usize) -> (usize, usize) {
        let starts = self.found.line_starts.get_or_init(|| {
            let newlines = self.text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1);
            std::iter::once(0).chain(newlines).collect()
        });
        let line = starts.partition_point(|start| *start <= at).max(1);
        let line_start = starts.get(line - 1).copied().unwrap_or(0);
        let column = self.text.get(line_start..at.min(self.text.len())).map_or(0, |s| s.chars().count());
        (line, column + 1)
    }

    /// Every problem recorded, in report order (module docs of `config`).
    fn problems(&self) -> Vec<Problem> {
        let mut all = self.found.problems.take();
        // By line and column, those between tables too, the unlocated last. Stable: problems at
        // one position keep the order they were found in.
        all.sort_by_key(|p| (p.line.is_none(), p.line, p.column));
        all
    }

    /// The 1-based line a span starts on.
    fn line(&self, span: &Range<usize>) -> usize {
        self.position(span.start).0
    }

    /// Warns of every string value (secrets included, never shown) holding a `$` not followed
    /// by `{`: `"$VAR"` is taken literally, only `"${VAR}"` reads the environment.
    /// Warns too of a `"${"` where nothing expands it ([`expands_references`]).
    fn warn_bare_dollars(&self, key: &str, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::String(s) => {
                let at = || format!("{}:{}: {key}", self.file.display(), self.line(&value.span()));
                if s.split('$').skip(1).any(|after| !after.starts_with('{')) {
                    tracing::warn!(
                        at = %at(),
                        "a \"$\" not followed by \"{{\" is taken literally: write \"${{VAR}}\" to read environment variable VAR"
                    );
                }
                if s.contains("${") && !expands_references(key, s) {
                    tracing::warn!(
                        at = %at(),
                        "\"${{\" is not expanded in this value, it is taken literally: only a secret key's whole value \
                         \"${{NAME}}\" reads the environment, and a *_file path's leading \"${{CREDENTIALS_DIRECTORY}}\""
                    );
                }
            }
            DeValue::Table(t) => {
                for (k, v) in t {
                    let name: &str = k.get_ref();
                    let key = if key.is_empty() { name.to_owned() } else { format!("{key}.{name}") };
                    self.warn_bare_dollars(&key, v);
                }
            }
            DeValue::Array(list) => {
                for (i, v) in list.iter().enumerate() {
                    self.warn_bare_dollars(&format!("{key}[{i}]"), v);
                }
            }
            _ => {}
        }
    }

    fn fail<T>(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Res<T> {
        Err(self.err(span, key, msg))
    }

    /// Only the toml message and span: its Display would quote the source line, maybe a secret.
    fn toml_err(&self, key: &str, e: &toml::de::Error) -> Reported {
        let message = suggest(e.message().trim_end());
        self.cover_suggestion(key, &message);
        self.err(e.span(), key, message)
    }

    /// A misspelt key's intended name (`state_dir` for `state_dri`) is covered by the problem
    /// of the misspelt one: not reported again as missing.
    fn cover_suggestion(&self, key: &str, message: &str) {
        if let Some(rest) = message.rsplit_once("did you mean `").map(|(_, r)| r)
            && let Some((name, _)) = rest.split_once('`')
        {
            let parent = key.rsplit_once('.').map_or("", |(p, _)| p);
            self.covered(if parent.is_empty() { name.to_owned() } else { format!("{parent}.{name}") });
        }
    }

    /// Reads `table` as `R`. A key serde refuses is recorded, dropped, and the table read again
    /// without it, so one bad key does not hide the next; `Err` only when the table cannot be
    /// read at all. `at` turns a key into its path (`sources[0].lag`).
    fn read_table<R: serde::de::DeserializeOwned>(
        &self,
        table: Spanned<toml::de::DeTable<'_>>,
        at: &dyn Fn(&str) -> String,
    ) -> Res<R> {
        let (span, mut table) = (table.span(), table.into_inner());
        loop {
            let de = toml::de::Deserializer::from(Spanned::new(span.clone(), table.clone()));
            match serde_path_to_error::deserialize::<_, R>(de) {
                Ok(raw) => return Ok(raw),
                Err(e)
                    if e.inner().message().starts_with("unknown field `")
                        && e.inner().span().is_some_and(|at| table.keys().any(|k| k.span().contains(&at.start))) =>
                {
                    // An unknown key of this table (not of a table inside it): every unknown key
                    // of it at once, not one read per key.
                    let message = e.inner().message().trim_end();
                    let expected = message.split_once("`, ").map_or("", |(_, rest)| rest);
                    let known: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
                    let unknown: Vec<_> = table
                        .keys()
                        .filter(|k| !known.contains(&k.get_ref().as_ref()))
                        .map(|k| (k.get_ref().to_string(), k.span()))
                        .collect();
                    if unknown.is_empty() {
                        return Err(self.toml_err(&at(""), e.inner()));
                    }
                    for (key, span) in unknown {
                        let message = suggest(&format!("unknown field `{key}`, {expected}"));
                        self.cover_suggestion(&at(&key), &message);
                        self.err(span, &at(&key), message);
                        table.remove(key.as_str());
                    }
                }
                Err(e) => {
                    let reported = self.toml_err(&at(&key_path(e.path())), e.inner());
                    let culprit = key_at_fault(&e, &table);
                    match culprit {
                        Some(key) => {
                            table.remove(key.as_str());
                        }
                        None => return Err(reported),
                    }
                }
            }
        }
    }

    /// Layer one and two: the whole file, every mistake of it in the error (module docs).
    pub(super) fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        let config = self.read(text);
        let mut problems = self.problems();
        if let Ok(config) = config
            && problems.is_empty()
        {
            return Ok(config);
        }
        if problems.is_empty() {
            // Every refusal records its problem first; should one not, the file is still refused.
            let message = "invalid configuration".to_owned();
            problems.push(Problem { line: None, column: None, key: String::new(), message });
        }
        Err(ConfigError::Invalid(ConfigErrors { file: self.file.to_path_buf(), problems }))
    }

    /// The document, its `[[sources]]` and `[[sinks]]` tables split off (each is read in two
    /// parts, see [`Validator::split`]) and the rest read as [`RawConfig`].
    fn read(&self, text: &str) -> Res<Config> {
        // toml stops at the first syntax error: nothing after it can be read, so that one
        // mistake is all the file is refused with.
        let mut root = toml::de::DeTable::parse(text).map_err(|e| self.toml_err("", &e))?;
        for (key, value) in root.get_ref() {
            self.warn_bare_dollars(key.get_ref(), value);
        }
        let sources = root.get_mut().remove("sources");
        let sinks = root.get_mut().remove("sinks");
        let raw = self.read_table::<RawConfig>(root, &|k| k.to_owned());
        // The definitions before the sources: a source's `vendor` may name one.
        let vendors = raw.as_ref().map_or(Err(Reported), |r| self.vendor_definitions(&r.vendors_dir));
        if let Ok((registry, _)) = &vendors {
            *self.defined.borrow_mut() = registry.clone();
        }
        let sinks = self.tables(sinks, "sinks").unwrap_or_default();
        let sources = self.tables(sources, "sources").unwrap_or_default();
        // The names compared between tables, read as written before the tables are split: a
        // table refused whole (an unknown vendor) must not hide a duplicate of its name.
        let names = Names {
            sources: sources.iter().map(|t| written_string(t, "name")).collect(),
            sinks: sinks.iter().map(|t| (written_string(t, "name"), written_string(t, "renamed_from"))).collect(),
        };
        // A table that cannot be split is left out (`None`), its problems recorded; the others
        // keep their index, which their keys name.
        let sinks = sinks.into_iter().enumerate();
        let sinks = sinks.map(|(i, t)| self.split(Section::Sinks, i, t).ok()).collect();
        let sources = sources.into_iter().enumerate();
        let sources = sources.map(|(i, t)| self.split(Section::Sources, i, t).ok()).collect();
        self.config(raw, vendors, sources, sinks, &names)
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
    /// [`RawSource`] ([`RawSink`]). Another vendor's (protocol's) key and an unknown key are
    /// refused by name and left out; the rest of the table is still read.
    fn split<'i, R: serde::de::DeserializeOwned>(
        &self,
        section: Section,
        i: usize,
        table: Spanned<DeValue<'i>>,
    ) -> Res<Split<'i, R>> {
        let what = section.name();
        let at = |k: &str| if k.is_empty() { format!("{what}[{i}]") } else { format!("{what}[{i}].{k}") };
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
            Some((vspan, value)) if tag_name(value).is_some() => {
                let name = tag_name(value).unwrap_or_default();
                match names.iter().find(|n| n.eq_ignore_ascii_case(name)) {
                    Some(owner) => *owner,
                    None if section == Section::Sources
                        && self.defined_vendor(name, vspan.clone(), &at(tag)).is_some() =>
                    {
                        self.defined_vendor(name, vspan.clone(), &at(tag)).map_or("", |d| d.name.as_str())
                    }
                    None if section == Section::Sources && crate::vendors::defined::registry::is_path(name) => {
                        return Err(Reported);
                    }
                    None => {
                        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                        let msg = format!("unknown variant `{name}`, expected one of {}", names.join(", "));
                        return self.fail(vspan, &at(tag), suggest(&msg));
                    }
                }
            }
            Some((vspan, other)) => {
                return self.fail(vspan, &at(tag), format!("invalid type: {}, expected a string", other.type_str()));
            }
        };
        let own_keys = match self.defined.borrow().get(owner) {
            Some(_) if section == Section::Sources => crate::vendors::defined::source::KEYS,
            _ => section.keys_of(owner),
        };
        let (mut common, mut own) = (toml::de::DeTable::new(), toml::de::DeTable::new());
        for (key, value) in table {
            let name: &str = key.get_ref();
            if name == tag {
                continue; // read above
            } else if own_keys.contains(&name) {
                own.insert(key, value);
            } else if names.iter().any(|n| section.keys_of(n).contains(&name)) {
                let mut msg = section.not_used(owner);
                if let Some(close) = closest(name, section.common_keys().iter().chain(own_keys).copied()) {
                    let _ = write!(msg, "; did you mean `{close}`?");
                }
                self.cover_suggestion(&at(name), &msg);
                self.err(value.span(), &at(name), msg);
            } else if !section.common_keys().contains(&name) {
                let known = section.common_keys().iter().chain(own_keys).map(|k| format!("`{k}`"));
                let msg = format!("unknown field `{name}`, expected one of {}", known.collect::<Vec<_>>().join(", "));
                let msg = suggest(&msg);
                self.cover_suggestion(&at(name), &msg);
                self.err(key.span(), &at(name), msg);
            } else {
                common.insert(key, value);
            }
        }
        let raw: R = self.read_table(Spanned::new(span.clone(), common), &at)?;
        Ok(Split { span: span.clone(), owner, raw, own: Spanned::new(span, own) })
    }

    fn config(
        &self,
        raw: Res<RawConfig>,
        vendors: Res<(crate::vendors::defined::registry::Registry, PathBuf)>,
        sources: Vec<Option<Split<'_, RawSource>>>,
        sinks: Vec<Option<Split<'_, RawSink>>>,
        names: &Names,
    ) -> Res<Config> {
        let raw = raw.ok();
        let state_dir = match raw.as_ref().map(|r| &r.state_dir) {
            Some(Some(dir)) => self.path(dir, "state_dir"),
            Some(None) if !self.has_problem("state_dir") => self.fail(0..0, "", "missing field `state_dir`"),
            _ => Err(Reported),
        };
        let max_bytes =
            raw.as_ref().map_or(Err(Reported), |r| self.bytes(&r.queue.max_bytes, "queue.max_bytes", bytesize::GIB));
        if sources.is_empty() {
            self.err(None, "sources", "at least one [[sources]] table is required");
        }
        if sinks.is_empty() {
            self.err(None, "sinks", "at least one [[sinks]] table is required");
        }
        // With the definitions sources named by path.
        let vendors = vendors.map(|(_, dir)| (self.defined.borrow().clone(), dir));
        // Overrides of defined vendors' actions too (`"<definition name>:<action>"`).
        let defined: Vec<&str> =
            vendors.as_ref().map(|(r, _)| r.all().iter().map(|d| d.name.as_str()).collect()).unwrap_or_default();
        let severity = raw.as_ref().map_or(Err(Reported), |r| self.severity(&r.severity, &defined));
        let raw_data = raw.as_ref().map_or(Err(Reported), |r| self.raw_data(&r.ocsf));
        let telemetry = raw.as_ref().map_or(Err(Reported), |r| self.telemetry(&r.telemetry));
        // Sources are checked with the defaults where `[severity]` or `[ocsf]` was refused.
        let policy =
            Policy { severity: severity.clone().unwrap_or_default(), raw_data: raw_data.unwrap_or(RawData::Full) };
        let sources: Vec<Res<SourceConfig>> = (sources.into_iter().enumerate())
            .map(|(i, s)| s.map_or(Err(Reported), |s| self.source(i, s, &policy)))
            .collect();
        let sinks: Vec<Res<SinkConfig>> =
            sinks.into_iter().enumerate().map(|(i, s)| s.map_or(Err(Reported), |s| self.sink(i, s))).collect();
        // Between tables: their problems are sorted among the others (`problems`).
        self.unique(&names.sources, "sources");
        let sink_names: Vec<_> = names.sinks.iter().map(|(name, _)| name.clone()).collect();
        self.unique(&sink_names, "sinks");
        self.renames(&names.sinks);
        let (vendors_found, vendors_dir) = vendors?;
        Ok(Config {
            origin: self.file.to_path_buf(),
            state_dir: state_dir?,
            queue: QueueSettings { max_bytes: max_bytes? },
            sources: sources.into_iter().collect::<Res<_>>()?,
            sinks: sinks.into_iter().collect::<Res<_>>()?,
            severity: severity?,
            raw_data: raw_data?,
            telemetry: telemetry?,
            vendors: vendors_found,
            vendors_dir,
        })
    }

    /// A vendor by `vendor = "…"` as split: a built-in one, or a definition found.
    fn vendor_id(&self, owner: &str) -> Option<VendorId> {
        VendorId::from_name(owner).or_else(|| self.defined.borrow().get(owner).map(VendorId::Defined))
    }

    /// The definition `vendor = "…"` names: one of the definitions directory by its name, or a
    /// file by its path (relative to this file; `docs/vendor-definitions.md`), loaded and
    /// added (a name another file already defines is refused, naming both). `None`: not a
    /// definition (a path that cannot be read or is refused is reported here, once).
    fn defined_vendor(
        &self,
        name: &str,
        span: Range<usize>,
        key: &str,
    ) -> Option<&'static crate::vendors::defined::model::Definition> {
        use crate::vendors::defined::registry;
        if let Some(d) = self.defined.borrow().get(name) {
            return Some(d);
        }
        if !registry::is_path(name) {
            return None;
        }
        let path = self.dir.join(name);
        if let Some(d) = self.defined.borrow().all().iter().find(|d| d.path == path) {
            return Some(d);
        }
        if self.has_problem(key) {
            return None;
        }
        match registry::load_file(&path) {
            Ok(def) => match self.defined.borrow_mut().add(def) {
                Ok(()) => Some(def),
                Err(e) => {
                    self.err(span, key, e.to_string().replace('\n', "; "));
                    None
                }
            },
            Err(e) => {
                self.err(span, key, format!("{}: {}", path.display(), e.to_string().replace('\n', "; ")));
                None
            }
        }
    }

    /// `vendors_dir` (must exist when set) or the default directory (may be missing): every
    /// definition in it, each refused file reported under `vendors_dir` with its own file,
    /// line and key.
    fn vendor_definitions(
        &self,
        dir: &Option<Spanned<String>>,
    ) -> Res<(crate::vendors::defined::registry::Registry, PathBuf)> {
        use crate::vendors::defined::registry::{DEFAULT_DIR, Registry};
        let (path, span, required) = match dir {
            Some(d) => (self.path(d, "vendors_dir")?, Some(d.span()), true),
            None => (PathBuf::from(DEFAULT_DIR), None, false),
        };
        match Registry::load_dir(&path, required) {
            Ok(registry) => Ok((registry, path)),
            Err(errors) => {
                for e in errors.0 {
                    // One problem per refused file, each of its own (file:line: key: message)
                    // in the one-line message.
                    let key = format!("vendors_dir ({})", e.file.display());
                    self.err(span.clone(), &key, e.to_string().replace('\n', "; "));
                }
                Err(Reported)
            }
        }
    }

    /// `[ocsf] raw_data = "full" | "hash" | "off"`.
    fn raw_data(&self, raw: &RawOcsf) -> Res<RawData> {
        let Some(value) = &raw.raw_data else { return Ok(RawData::Full) };
        match value.get_ref().to_ascii_lowercase().as_str() {
            "full" => Ok(RawData::Full),
            "hash" => Ok(RawData::Hash),
            "off" => Ok(RawData::Off),
            other => self.fail(
                value.span(),
                "ocsf.raw_data",
                format!("{other:?} is not one of \"full\" (the record verbatim), \"hash\" (its SHA-256) or \"off\""),
            ),
        }
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

    fn source(&self, i: usize, t: Split<'_, RawSource>, policy: &Policy) -> Res<SourceConfig> {
        let (table, r) = (t.span, t.raw);
        let at = |k: &str| format!("sources[{i}].{k}");
        let dur = |v: &Text, k: &str, default, positive| self.duration(v, &at(k), default, positive);
        let Some(vendor) = self.vendor_id(t.owner) else {
            return self.fail(table, &at("vendor"), format!("unknown vendor {:?}", t.owner));
        };
        let d = vendor.defaults();
        let base_url = match (&r.base_url, d.base_url) {
            // A definition without a default base_url: each source names its tenant's.
            (None, "") => self.fail(
                table.clone(),
                &at("base_url"),
                format!("required for vendor {} (its definition has no base_url)", vendor.name()),
            ),
            _ => self.url(&r.base_url, &at("base_url"), d.base_url),
        };
        let section = Section::Sources;
        let (index, owner, own) = (i, t.owner, t.own);
        let keys =
            TableKeys { v: self, section, index, table: table.clone(), base_url: base_url.as_ref().ok(), owner, own };
        let vendor = vendor.settings(&keys);
        let overlap = dur(&r.overlap, "overlap", d.overlap, false);
        let max_span = dur(&r.max_span, "max_span", d.max_span, true).and_then(|max_span| match d.span_limit {
            Some(limit) if max_span > limit => {
                let span = r.max_span.as_ref().map(Spanned::span);
                let mut msg = format!(
                    "{} exceeds what the vendor accepts in one request ({})",
                    span_text(max_span),
                    span_text(limit)
                );
                msg.push_str(months_hint(r.max_span.as_ref().map_or("", |t| t.get_ref())));
                self.fail(span, &at("max_span"), msg)
            }
            _ => Ok(max_span),
        });
        let overlap = match (overlap, &max_span) {
            (Ok(overlap), Ok(max_span)) if overlap >= *max_span => {
                let span = r.overlap.as_ref().or(r.max_span.as_ref()).map(Spanned::span);
                let (o, m) = (humantime::format_duration(overlap), humantime::format_duration(*max_span));
                let msg = format!("overlap ({o}) must be shorter than max_span ({m})");
                self.fail(span, &at("overlap"), msg)
            }
            (overlap, _) => overlap,
        };
        let rl = r.rate_limit.unwrap_or(RawRateLimit { requests: None, per: None, burst: None });
        let per = dur(&rl.per, "rate_limit.per", d.per, true);
        let max_pages = match &r.max_pages {
            None => Ok(DEFAULT_MAX_PAGES),
            Some(n) if *n.get_ref() > 0 => Ok(*n.get_ref()),
            Some(n) => self.fail(n.span(), &at("max_pages"), "must be at least 1"),
        };
        let ca_file = match (&r.ca_file, &base_url) {
            (None, _) => Ok(None),
            (Some(p), Ok(url)) if url.scheme() == "https" => self.path(p, &at("ca_file")).map(Some),
            (Some(p), Ok(_)) => self.fail(p.span(), &at("ca_file"), "only used with an https base_url"),
            (Some(_), Err(_)) => Err(Reported),
        };
        let name = self.required_name(&r.name, table, "sources", i);
        let log_name = match &r.log_name {
            None => name.clone(),
            Some(n) if !n.get_ref().trim().is_empty() => Ok(n.get_ref().trim().to_owned()),
            Some(n) => self.fail(n.span(), &at("log_name"), "must not be empty"),
        };
        let start = self.start(&r.start, &at("start"));
        let lag = dur(&r.lag, "lag", 2 * MINUTE, false);
        let poll_interval = dur(&r.poll_interval, "poll_interval", d.poll_interval, true);
        let request_timeout = dur(&r.request_timeout, "request_timeout", 30 * SECOND, true);
        let backoff = self.backoff(&r.backoff, &at("backoff"), SOURCE_BACKOFF);
        let max_retry_after = dur(&r.max_retry_after, "max_retry_after", 60 * MINUTE, true);
        Ok(SourceConfig {
            name: name?,
            log_name: log_name?,
            ocsf: policy.clone(),
            vendor: vendor?,
            base_url: base_url?,
            start: start?,
            lag: lag?,
            overlap: overlap?,
            max_span: max_span?,
            poll_interval: poll_interval?,
            request_timeout: request_timeout?,
            rate_limit: RateLimit {
                requests: rl.requests.or(NonZeroU32::new(d.requests)).unwrap_or(NonZeroU32::MIN),
                per: per?,
                burst: rl.burst.unwrap_or(NonZeroU32::MIN),
            },
            backoff: backoff?,
            max_retry_after: max_retry_after?,
            max_pages: max_pages?,
            ca_file: ca_file?,
            until: None,
        })
    }

    /// A table's `name`: required, and valid.
    fn required_name(&self, name: &Option<Spanned<String>>, table: Range<usize>, what: &str, i: usize) -> Res<String> {
        let key = format!("{what}[{i}].name");
        match name {
            Some(name) => self.name(name, &key),
            None if self.has_problem(&key) => Err(Reported),
            None => self.fail(table, &format!("{what}[{i}]"), "missing field `name`"),
        }
    }

    /// `[severity] overrides = { "vendor:event_code" = "high" | 4, … }`.
    fn severity(&self, raw: &RawSeverity, defined: &[&str]) -> Res<SeverityPolicy> {
        let mut vendors: Vec<&str> = VendorId::ALL.iter().map(|v| v.name()).collect();
        vendors.extend_from_slice(defined);
        const NAMES: [&str; 7] = ["unknown", "informational", "low", "medium", "high", "critical", "fatal"];
        let mut overrides = HashMap::new();
        let mut refused = false;
        for (key, value) in &raw.overrides {
            let at = format!("severity.overrides.{key:?}");
            let Some((vendor, code)) = key.split_once(':').filter(|(v, c)| vendors.contains(v) && !c.is_empty()) else {
                let msg = format!("keys are \"<vendor>:<event code>\" with vendor one of {}", vendors.join(", "));
                refused = self.fail::<()>(value.span(), &at, msg).is_err();
                continue;
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
                refused = self.fail::<()>(value.span(), &at, msg).is_err();
                continue;
            };
            if let Some(templated) = Self::templated_code(code) {
                // Event codes of REST requests name the endpoint, never one object's ids: this
                // key can never match (an override written before codes were templated).
                tracing::warn!(
                    key = %at,
                    "this override names a request with ids and never matches: event codes are templated; use {:?}",
                    format!("{vendor}:{templated}")
                );
            }
            overrides.insert((vendor.to_owned(), code.to_owned()), severity);
        }
        if refused {
            return Err(Reported);
        }
        Ok(SeverityPolicy::from_overrides(overrides))
    }

    /// The event code a `"METHOD /path"` code becomes once its ids are templated
    /// ([`crate::ocsf::paths::template`]), when that differs from the code as written.
    fn templated_code(code: &str) -> Option<String> {
        let (method, path) = code.split_once(' ')?;
        if !path.starts_with('/') || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let templated = crate::ocsf::paths::template(path).path;
        (templated != path).then(|| format!("{method} {templated}"))
    }

    /// Like [`Validator::secret`], but a missing pair points at the source's table.
    fn required_secret(&self, key: &str, value: &Secret, file: &Text, table: &Range<usize>) -> Res<SecretString> {
        if value.is_none() && file.is_none() {
            return self.fail(table.clone(), key, format!("required (or {key}_file)"));
        }
        self.secret(key, value, file)
    }

    fn sink(&self, i: usize, t: Split<'_, RawSink>) -> Res<SinkConfig> {
        let (table, r) = (t.span, t.raw);
        let at = |k: &str| format!("sinks[{i}].{k}");
        let url_span = t.own.get_ref().get("url").map(Spanned::span);
        let name = self.required_name(&r.name, table.clone(), "sinks", i);
        let keys =
            TableKeys { v: self, section: Section::Sinks, index: i, table, base_url: None, owner: t.owner, own: t.own };
        let kind = match SinkKind::from_keys(t.owner, &keys) {
            Some(kind) => kind,
            None => self.fail(None, &at("type"), format!("unknown sink type {:?}", t.owner)),
        };
        let kind = match kind {
            Ok(SinkKind::Hec(h)) if h.url.path().contains("/services/collector") => {
                // The sink appends /services/collector/event to whatever path the URL has.
                let mut event_url = h.url.clone();
                event_url.set_path(&format!("{}/services/collector/event", h.url.path().trim_end_matches('/')));
                let msg = format!(
                    "already holds /services/collector: events would go to {}; write the URL up to the port, \
                     such as \"https://splunk.example.com:8088\" (/services/collector/event is appended)",
                    crate::redact::url(&event_url)
                );
                self.fail(url_span, &at("url"), msg)
            }
            kind => kind,
        };
        let batch_max_events = match &r.batch_max_events {
            None => Ok(500),
            Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref()),
            Some(n) => self.fail(n.span(), &at("batch_max_events"), "must be at least 1"),
        };
        let batch_max_bytes = self.bytes(&r.batch_max_bytes, &at("batch_max_bytes"), bytesize::MIB).and_then(|bytes| {
            usize::try_from(bytes).or_else(|_| {
                let span = r.batch_max_bytes.as_ref().map(Spanned::span);
                self.fail(span, &at("batch_max_bytes"), "too large for this platform")
            })
        });
        let backoff = self.backoff(&r.backoff, &at("backoff"), SINK_BACKOFF);
        let renamed_from = r.renamed_from.as_ref().map(|n| self.name(n, &at("renamed_from"))).transpose();
        Ok(SinkConfig {
            name: name?,
            kind: kind?,
            batch_max_events: batch_max_events?,
            batch_max_bytes: batch_max_bytes?,
            backoff: backoff?,
            renamed_from: renamed_from?,
        })
    }

    /// `renamed_from` names a sink that is no longer configured, and only one sink claims it:
    /// a current sink's cursor must never be taken over by another. `sinks`: each sink's
    /// `name` and `renamed_from`, by index.
    fn renames(&self, sinks: &[SinkNames]) {
        let mut claimed: HashMap<&str, usize> = HashMap::new();
        for (i, (_, from)) in sinks.iter().enumerate() {
            let Some(from) = from else { continue };
            let key = format!("sinks[{i}].renamed_from");
            if let Some(j) =
                sinks.iter().position(|(name, _)| name.as_ref().is_some_and(|n| n.get_ref() == from.get_ref()))
            {
                let msg = format!(
                    "{:?} is a configured sink (sinks[{j}]); renamed_from names a sink's former name",
                    from.get_ref()
                );
                self.err(from.span(), &key, msg);
            } else if let Some(first) = claimed.insert(from.get_ref(), i) {
                let msg = format!("{:?} is already renamed by sinks[{first}]", from.get_ref());
                self.err(from.span(), &key, msg);
            }
        }
    }

    /// Each name once among `names` (by index; `None`: missing or not a string).
    fn unique(&self, names: &[Option<Spanned<String>>], what: &str) {
        let mut seen = HashMap::new();
        for (i, n) in names.iter().enumerate() {
            let Some(n) = n else { continue };
            if let Some(first) = seen.insert(n.get_ref(), i) {
                // The first of a name stays the one others are compared with.
                seen.insert(n.get_ref(), first);
                let msg = format!("duplicate name {:?} (also {what}[{first}])", n.get_ref());
                self.err(n.span(), &format!("{what}[{i}].name"), msg);
            }
        }
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
        if v.get_ref().starts_with('~') {
            return self.fail(v.span(), key, TILDE);
        }
        let file_key = key.rsplit('.').next().is_some_and(|k| k.ends_with("_file"));
        // Every `*_file` key names a systemd credential as secret `*_file` keys do; without
        // secrets read (`queue …`), `CREDENTIALS_DIRECTORY` is not asked for.
        let path = if file_key && self.read_secrets { self.secret_path(v, key)? } else { self.dir.join(v.get_ref()) };
        if self.check_files && file_key {
            if let Some(msg) = not_regular(&path) {
                return self.fail(v.span(), key, msg);
            }
            if let Err(e) = std::fs::File::open(&path) {
                return self.fail(v.span(), key, format!("cannot read {}: {e}", path.display()));
            }
        }
        Ok(path)
    }

    fn duration(&self, v: &Text, key: &str, default: Duration, positive: bool) -> Res<Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref())
            .map_err(|e| self.err(v.span(), key, format!("invalid duration {:?}: {e}", v.get_ref())))?;
        if positive && d.is_zero() {
            return self.fail(v.span(), key, "must be greater than zero");
        }
        let max = duration_max(key);
        if d > max {
            let mut msg = format!("{:?} is longer than the {} this key allows", v.get_ref(), span_text(max));
            msg.push_str(months_hint(v.get_ref()));
            return self.fail(v.span(), key, msg);
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
            let max = duration_max(key);
            if ago > max {
                let mut msg = format!("{text:?} is longer than the {} this key allows", span_text(max));
                msg.push_str(months_hint(&text));
                return self.fail(v.span(), key, msg);
            }
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
        let initial = self.duration(&b.initial, &format!("{key}.initial"), default[0], true);
        let (initial, max) = (initial, self.duration(&b.max, &format!("{key}.max"), default[1], true));
        let (initial, max) = (initial?, max?);
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

    /// A literal secret (not `"${NAME}"`, not `<key>_file`) in a config file readable by others,
    /// or by a group other than auditrelay, is accepted, but the operator should know, as for
    /// secret files ([`exposure`]).
    fn warn_literal_if_shared(&self, span: &Range<usize>, key: &str) {
        if let Some(advice) = exposure(self.file) {
            let at = format!("{}:{}: {key}", self.file.display(), self.line(span));
            // An OTLP header value is a literal or "${NAME}": there is no `<header>_file`.
            let instead = if key.contains(".headers.") {
                "\"${NAME}\"".to_owned()
            } else {
                format!("\"${{NAME}}\" or {}_file", key.rsplit('.').next().unwrap_or(key))
            };
            tracing::warn!(
                at = %at,
                "a literal secret in a config file readable by group or others: {advice}; or use {instead}"
            );
        }
    }

    /// A `*_file` path (a secret's, a CA's, a client certificate's or key's):
    /// `${CREDENTIALS_DIRECTORY}/NAME` is NAME in systemd's credentials
    /// directory (`LoadCredential=`; `check --credentials-dir` sets it outside the unit), any
    /// other path is relative to the config file's directory, as every path in the file.
    fn secret_path(&self, f: &Spanned<String>, key: &str) -> Res<PathBuf> {
        let Some(rest) = f.get_ref().strip_prefix("${CREDENTIALS_DIRECTORY}") else {
            return Ok(self.dir.join(f.get_ref()));
        };
        match (self.env)("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
            Some(dir) => Ok(Path::new(&dir).join(rest.trim_start_matches('/'))),
            None => self.fail(
                f.span(),
                key,
                "CREDENTIALS_DIRECTORY is not set: systemd sets it for a unit with LoadCredential=; \
                 outside the unit give --credentials-dir DIR",
            ),
        }
    }

    /// Resolves `key` (a literal or `"${NAME}"`) or `key_file`; exactly one must be set.
    fn secret(&self, key: &str, value: &Secret, file: &Text) -> Res<SecretString> {
        let file_key = format!("{key}_file");
        if let Some(f) = file
            && f.get_ref().starts_with('~')
        {
            return self.fail(f.span(), &file_key, TILDE);
        }
        let (text, span, shown_key) = match (value, file) {
            (Some(_), Some(f)) => {
                let msg = format!("set either {key} or {file_key}, not both");
                return self.fail(f.span(), &file_key, msg);
            }
            (None, None) => return self.fail(None, key, "missing"),
            _ if !self.read_secrets => return Ok(SecretString::from(String::new())),
            (Some(v), None) => {
                let s = &v.get_ref().0;
                let var_ok = |var: &str| !var.is_empty() && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                let text = match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                    None => {
                        self.warn_literal_if_shared(&v.span(), key);
                        s.clone()
                    }
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
                let path = self.secret_path(f, &file_key)?;
                if let Some(msg) = not_regular(&path) {
                    return self.fail(f.span(), &file_key, msg);
                }
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

/// Why `path` must not be opened, when it exists and is not a regular file after symlinks: a
/// directory, or a FIFO, socket or device, whose open(2) or read may block forever (`check` and
/// a reload would hang). A path that cannot be looked at is left to the open's own error.
fn not_regular(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(format!("{} is a directory", path.display())),
        Ok(meta) if !meta.is_file() => Some(format!("{} is not a regular file", path.display())),
        _ => None,
    }
}

/// The secret keys of sources and sinks (every `TableKeys::secret` / `required_secret` call):
/// their whole value `"${NAME}"` reads the environment. An OTLP sink's `headers.*` values too.
const SECRET_KEYS: &[&str] = &["api_key", "bearer_token", "username", "password", "token"];

/// Whether the `"${"` in string value `s` of `key` (`sources[0].api_key`) is expanded: a secret
/// key's whole value `"${NAME}"` ([`Validator::secret`]), a `*_file` path starting with
/// `"${CREDENTIALS_DIRECTORY}"` and holding no other ([`Validator::secret_path`]). Nothing else
/// reads the environment.
fn expands_references(key: &str, s: &str) -> bool {
    let Some((owner, last)) = key.rsplit_once('.') else { return false };
    let table = (owner.starts_with("sources[") || owner.starts_with("sinks[")) && !owner.contains('.');
    let header = key.split_once(".headers.").is_some_and(|(sink, _)| sink.starts_with("sinks[") && !sink.contains('.'));
    let secret = (table && SECRET_KEYS.contains(&last)) || header;
    if secret && s.starts_with("${") && s.ends_with('}') {
        return true;
    }
    last.ends_with("_file") && s.strip_prefix("${CREDENTIALS_DIRECTORY}").is_some_and(|rest| !rest.contains("${"))
}

/// The name a `vendor` or `type` value gives: a string, or serde's table form of an enum's
/// unit variant (`{ aitronos = {} }`), which the file was read as before the table split.
fn tag_name<'v>(value: &'v DeValue<'_>) -> Option<&'v str> {
    match value {
        DeValue::String(name) => Some(name.as_ref()),
        DeValue::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((name, inner)) if matches!(inner.get_ref(), DeValue::Table(t) if t.is_empty()) => Some(name.get_ref()),
            _ => None,
        },
        _ => None,
    }
}

/// Which array of tables: sources are told apart by `vendor`, sinks by `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Sources,
    Sinks,
}

impl Section {
    pub(super) fn name(self) -> &'static str {
        match self {
            Section::Sources => "sources",
            Section::Sinks => "sinks",
        }
    }

    /// The key that names the module owning the rest of the table.
    pub(super) fn tag(self) -> &'static str {
        match self {
            Section::Sources => "vendor",
            Section::Sinks => "type",
        }
    }

    pub(super) fn names(self) -> Vec<&'static str> {
        match self {
            Section::Sources => VendorId::ALL.iter().map(|v| v.name()).collect(),
            Section::Sinks => SinkKind::TYPES.to_vec(),
        }
    }

    pub(super) fn keys_of(self, owner: &str) -> &'static [&'static str] {
        match self {
            Section::Sources => VendorId::from_name(owner).map_or(&[], |v| v.keys()),
            Section::Sinks => SinkKind::keys_of(owner).unwrap_or(&[]),
        }
    }

    /// The keys every table of the section has (the fields of [`RawSource`], [`RawSink`]),
    /// its tag included.
    pub(super) fn common_keys(self) -> &'static [&'static str] {
        match self {
            Section::Sources => &[
                "name",
                "log_name",
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

    pub(super) fn not_used(self, owner: &str) -> String {
        match self {
            Section::Sources => format!("is not used by vendor {owner}"),
            Section::Sinks => "not used by this sink type".to_owned(),
        }
    }
}

/// A sink's `name` and `renamed_from` as written (`None`: absent, or not a string).
type SinkNames = (Option<Spanned<String>>, Option<Spanned<String>>);

/// The names of every `[[sources]]` and `[[sinks]]` table as written, by index: those the
/// checks between tables compare, whatever else is wrong with their tables.
struct Names {
    sources: Vec<Option<Spanned<String>>>,
    sinks: Vec<SinkNames>,
}

/// The string value of `key` in `table` as written; `None` when absent, not a string, or
/// `table` is not a table.
fn written_string(table: &Spanned<DeValue<'_>>, key: &str) -> Option<Spanned<String>> {
    let DeValue::Table(t) = table.get_ref() else { return None };
    let value = t.get(key)?;
    match value.get_ref() {
        DeValue::String(s) => Some(Spanned::new(value.span(), s.to_string())),
        _ => None,
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
    /// A key refused for its type is recorded and left out (`None` in `T`), so the module's
    /// checks of the other keys still run.
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Res<T> {
        self.v.read_table(self.own.clone(), &|k| self.key(k))
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

    /// Records a problem with `key` (module docs): the caller goes on with its next key.
    pub fn err(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Reported {
        self.v.err(span, &self.key(key), msg)
    }

    /// [`TableKeys::err`] as a refused result.
    pub fn fail<T>(&self, span: impl Into<Option<Range<usize>>>, key: &str, msg: impl Into<String>) -> Res<T> {
        self.v.fail(span, &self.key(key), msg)
    }

    /// A secret from `key` (a literal or `"${NAME}"`) or `<key>_file`: exactly one must be set.
    pub fn secret(&self, key: &str, value: &Secret, file: &Text) -> Res<SecretString> {
        self.v.secret(&self.key(key), value, file)
    }

    /// Like [`TableKeys::secret`], but a missing pair points at the table.
    pub fn required_secret(&self, key: &str, value: &Secret, file: &Text) -> Res<SecretString> {
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

/// A note for a duration written with an upper-case `M`: humantime's months, not minutes.
fn months_hint(text: &str) -> &'static str {
    if text.contains('M') { " (\"M\" means months; minutes are \"m\")" } else { "" }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant …", "expected `a`
/// or `b`") with "; did you mean `a`?" when one of the names it lists, the keys of the table
/// the mistake is in, is close to `x`. Any other message as it is.
fn suggest(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `").or_else(|| msg.strip_prefix("unknown variant `")) else {
        return msg.to_owned();
    };
    let Some((name, listed)) = rest.split_once('`') else { return msg.to_owned() };
    let Some((_, expected)) = listed.split_once("expected") else { return msg.to_owned() };
    match closest(name, expected.split('`').skip(1).step_by(2)) {
        Some(close) => format!("{msg}; did you mean `{close}`?"),
        None => msg.to_owned(),
    }
}

/// The candidate nearest to `name` ignoring case, if near enough to be a slip: at most one
/// edit in four characters (at least one edit).
fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let limit = (name.len() / 4).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&name, &c.to_lowercase().chars().collect::<Vec<_>>()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb)).min(row[j] + 1).min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A path starting with `~` would be taken as a directory named "~" beside the config file.
const TILDE: &str = "~ is not expanded; write the absolute path";

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The longest value of each duration key, by the key's last segments: far beyond what any
/// installation needs, so that a slip (`"5M"` is five months in humantime, `"5m"` five
/// minutes) is refused instead of stalling a source or sink for months. A key not listed here
/// (none today) is bounded by [`DURATION_MAX_OTHER`]. The example config documents these.
const DURATION_MAX: &[(&str, Duration)] = &[
    // Sources.
    ("poll_interval", DAY),
    ("request_timeout", Duration::from_secs(600)),
    ("lag", DAY),
    ("overlap", DAY),
    // ConfigCat's own limit is 30 days; no vendor takes more in one request.
    ("max_span", Duration::from_secs(31 * 86_400)),
    ("max_retry_after", DAY),
    // A relative start ("7d"): how far back a new source begins. Vendors keep months, not
    // centuries; "5000y" asked for year -2974 and the vendor refused the source for good.
    ("start", Duration::from_secs(3650 * 86_400)),
    ("rate_limit.per", DAY),
    // Sources and sinks.
    ("backoff.initial", HOUR),
    ("backoff.max", HOUR),
    // Sinks (HEC, OTLP, syslog).
    ("timeout", Duration::from_secs(600)),
    ("ack_poll_interval", Duration::from_secs(600)),
    ("ack_timeout", HOUR),
];
const DURATION_MAX_OTHER: Duration = DAY;

/// The bound of duration key `key` (`sources[0].backoff.max`), from [`DURATION_MAX`].
pub(super) fn duration_max(key: &str) -> Duration {
    DURATION_MAX
        .iter()
        .find(|(name, _)| key == *name || key.ends_with(&format!(".{name}")))
        .map_or(DURATION_MAX_OTHER, |(_, max)| *max)
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

/// A secret file readable by group or others is accepted, but the operator should know; the
/// packaged layout (root:auditrelay 0640, the service reading through its group) is fine.
pub(crate) fn warn_if_shared(path: &Path) {
    if let Some(advice) = exposure(path) {
        tracing::warn!(path = %path.display(), "secret file is readable by group or others: {advice}");
    }
}

/// The group the service reads its files through (the package's root:auditrelay 0640).
const SERVICE_GROUP: &str = "auditrelay";

/// Why and how to fix it, when `path` exists and others, or a group other than
/// [`SERVICE_GROUP`], may read (or write or search) it; `None` when it is private.
fn exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.mode();
        if mode & 0o007 != 0 {
            return Some(format!(
                "others can read it; chmod o-rwx it (the package's root:{SERVICE_GROUP} 0640 keeps the service reading it)"
            ));
        }
        if mode & 0o070 != 0 {
            let group = match group_name(meta.gid()) {
                Some(name) if name == SERVICE_GROUP => return None,
                Some(name) => format!("group {name:?}"),
                None => format!("group id {} (not in /etc/group)", meta.gid()),
            };
            return Some(format!(
                "{group} can read it; chgrp {SERVICE_GROUP} it (root:{SERVICE_GROUP} 0640, the package's layout) \
                 or chmod g-rwx it"
            ));
        }
        None
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The name of group `gid` in /etc/group (`name:password:gid:members` lines).
#[cfg(unix)]
fn group_name(gid: u32) -> Option<String> {
    group_name_in(&std::fs::read_to_string("/etc/group").ok()?, gid)
}

fn group_name_in(text: &str, gid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.trim().parse::<u32>().ok()?;
        (id == gid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(all(test, unix))]
mod exposure_tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    #[test]
    fn group_names_come_from_etc_group_lines() {
        let text = "root:x:0:\nauditrelay:x:998:\nbroken\nssl-cert:x:110:postgres\n";
        assert_eq!(group_name_in(text, 998).as_deref(), Some("auditrelay"));
        assert_eq!(group_name_in(text, 110).as_deref(), Some("ssl-cert"));
        assert_eq!(group_name_in(text, 7), None);
    }

    /// Others: always advised `chmod o-rwx` (never `chmod 600`, which would lock the service
    /// out of the packaged root:auditrelay 0640); a group: named, unless it is auditrelay.
    #[test]
    fn exposure_advises_what_keeps_the_service_reading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "x").expect("write");
        let at = |mode: u32| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
            exposure(&file)
        };
        assert_eq!(at(0o600), None);
        let others = at(0o644).expect("others can read");
        assert!(others.contains("chmod o-rwx") && !others.contains("600"), "{others}");
        let gid = std::fs::metadata(&file).expect("meta").gid();
        let group = at(0o640);
        match group_name(gid) {
            Some(name) if name == SERVICE_GROUP => assert_eq!(group, None),
            Some(name) => {
                let group = group.expect("a group other than auditrelay");
                assert!(group.contains(&format!("group {name:?}")) && group.contains("chgrp auditrelay"), "{group}");
            }
            None => assert!(group.expect("an unknown group").contains(&format!("group id {gid}"))),
        }
    }
}

/// The key of `table` a deserialization error is about: the first of the error's path, else
/// (an unknown key, which serde names before entering it) the key the error points at. Shared by
/// the configuration and vendor definitions, which both drop that key and read the table again.
pub(crate) fn key_at_fault(
    e: &serde_path_to_error::Error<toml::de::Error>,
    table: &toml::de::DeTable<'_>,
) -> Option<String> {
    let first = e.path().iter().find_map(|seg| match seg {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    });
    let by_span = || {
        let start = e.inner().span()?.start;
        table.keys().find(|k| k.span().contains(&start)).map(|k| k.get_ref().to_string())
    };
    first.filter(|k| table.contains_key(k.as_str())).or_else(by_span)
}
