//! The configuration file: TOML text → a validated [`Config`], in layers (STYLE habit 6):
//!
//! 1. `raw.rs`: the `Raw*` serde structs (`deny_unknown_fields`, values kept as written in
//!    [`toml::Spanned`] so later checks can name the line);
//! 2. `validate.rs`: the typed settings. Each `[[sources]]` (`[[sinks]]`) table is split by its
//!    `vendor` (`type`); the common keys are checked there, the rest by the vendor's module
//!    (`vendors/<name>/mod.rs`) or the sink's (`sinks/<type>.rs`) through [`TableKeys`];
//! 3. `render.rs`: the resolved configuration for `auditrelay check`.
//!
//! A file is refused with every mistake it holds ([`ConfigError::Invalid`], a [`ConfigErrors`]
//! list): each check records its [`Problem`] (file, line, column, key path, message) and
//! validation goes on with the next key or table, so forty mistakes take one `check`, not forty.
//! A TOML syntax error is the one exception: the `toml` parser stops at the first, and nothing
//! after it can be read. Messages never quote a secret, nor a TOML source line (the line might
//! hold one). This module does no network I/O and knows nothing of how sources or sinks use
//! their settings.

use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::ocsf::event::RawData;
use crate::ocsf::{Policy, SeverityPolicy};

mod raw;
mod render;
#[cfg(test)]
mod tests;
mod validate;

pub use raw::{SecretText, Size};
pub(crate) use render::{duration_text, path_text, size_text};
use validate::Validator;
pub(crate) use validate::key_at_fault;
pub(crate) use validate::warn_if_shared;
pub use validate::{Reported, Res, Secret, TableKeys, Text};

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
    /// `[ocsf] raw_data`: how much of the vendor record each event carries.
    pub raw_data: RawData,
    pub telemetry: TelemetrySettings,
    /// The vendor definitions found (docs/vendor-definitions.md): every `*.toml` of
    /// `vendors_dir` (relative to this file), else of the default directory when it exists.
    pub vendors: crate::vendors::defined::registry::Registry,
    /// The directory they were read from.
    pub vendors_dir: PathBuf,
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
    /// `metadata.log_name` of its events: the `log_name` key, by default the source's name.
    pub log_name: String,
    /// `[severity]` and `[ocsf]`, as its events are shaped (here so that a reload changing
    /// them restarts the source: they are part of its fingerprint).
    pub ocsf: Policy,
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
    /// Every mistake of the file, in file order.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl ConfigError {
    /// The mistakes of an invalid file (none for a file that could not be read).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(errors) => &errors.problems,
        }
    }
}

/// One mistake in the file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// 1-based line of the value, key or table at fault; `None` when the file as a whole is
    /// (no `[[sources]]` table).
    pub line: Option<usize>,
    /// 1-based column (in characters) on that line.
    pub column: Option<usize>,
    /// A path such as `sources[0].lag` (empty for a syntax error).
    pub key: String,
    pub message: String,
}

/// Every mistake of one file ordered by line and column, those between tables (duplicate
/// names, `renamed_from`) among the others, then any without a line. Shown one per line as `file:line: key: message`, as a single
/// mistake always was, then `N errors in file` when there are several.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&invalid_text(&self.file, p.line, &p.key, &p.message))?;
        }
        if self.problems.len() > 1 {
            write!(f, "\n{} errors in {}", self.problems.len(), self.file.display())?;
        }
        Ok(())
    }
}

/// Set by [`Config::set_credentials_dir`].
static CREDENTIALS_DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

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
    /// Reads and validates `path`, taking `${NAME}` secrets from the process environment
    /// (`CREDENTIALS_DIRECTORY` from [`Config::set_credentials_dir`] when that was called).
    /// An invalid file is refused with every mistake it holds ([`ConfigError::Invalid`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let read_err = |io| ConfigError::Read { path: path.to_path_buf(), io };
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        let origin = std::path::absolute(path).map_err(read_err)?;
        let env = |name: &str| match CREDENTIALS_DIR.get() {
            Some(dir) if name == "CREDENTIALS_DIRECTORY" => Some(dir.clone()),
            _ => std::env::var(name).ok(),
        };
        let dir = origin.parent().unwrap_or(Path::new(""));
        let v = Validator::new(&text, &origin, dir, &env, true, true);
        v.parse(&text)
    }

    /// `--credentials-dir DIR`: every later [`Config::load`] (a reload's too) takes DIR as
    /// `$CREDENTIALS_DIRECTORY`, so `${CREDENTIALS_DIRECTORY}/NAME` secret files of the unit's
    /// `LoadCredential=` layout can be checked outside the unit. The first call wins.
    pub fn set_credentials_dir(dir: String) {
        let _ = CREDENTIALS_DIR.set(dir);
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
        let v = Validator::new(&text, &origin, origin.parent().unwrap_or(Path::new("")), &env, false, false);
        v.parse(&text)
    }

    /// Parses and validates `text` as if read from `origin`; `env` answers `${NAME}` lookups.
    /// Secret files are read; other `*_file` paths (CA, client certificate and key) are not
    /// looked at ([`Config::load`] checks that they can be read).
    pub fn parse_with_env(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let v = Validator::new(text, origin, origin.parent().unwrap_or(Path::new("")), env, true, false);
        v.parse(text)
    }
}
