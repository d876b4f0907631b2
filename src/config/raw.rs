//! Layer one: the file as written. `serde` structs with `deny_unknown_fields`, every value kept
//! as written and wrapped in [`toml::Spanned`] so later checks can name its line. A source's
//! (sink's) own keys are not here: its vendor's (protocol's) module reads them.

use std::num::NonZeroU32;

use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Required; optional here so that its absence is one problem among the others.
    pub(super) state_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) queue: RawQueue,
    /// Split off before the rest is read (`Validator::split`); named here so that serde's
    /// "expected one of" lists them for a misspelt table such as `[[source]]`.
    #[serde(default, rename = "sources")]
    pub(super) _sources: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "sinks")]
    pub(super) _sinks: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) severity: RawSeverity,
    #[serde(default)]
    pub(super) ocsf: RawOcsf,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
    /// The vendor definitions directory (issue 20); relative to the file.
    pub(super) vendors_dir: Option<Spanned<String>>,
}

/// `[ocsf]`: how much of the vendor record every event carries.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOcsf {
    pub(super) raw_data: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSeverity {
    #[serde(default)]
    pub(super) overrides: std::collections::BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) max_bytes: Option<Spanned<Size>>,
}

/// The keys common to every vendor's `[[sources]]` table; the vendor's own keys are split off
/// first and read by its module ([`crate::vendors::Vendor::Keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    /// Required (checked in validation, so the table's other keys are read without it).
    pub(super) name: Option<Spanned<String>>,
    pub(super) log_name: Option<Spanned<String>>,
    pub(super) base_url: Option<Spanned<String>>,
    /// A string, or an unquoted TOML offset date-time.
    pub(super) start: Option<Spanned<toml::Value>>,
    pub(super) lag: Option<Spanned<String>>,
    pub(super) overlap: Option<Spanned<String>>,
    pub(super) max_span: Option<Spanned<String>>,
    pub(super) poll_interval: Option<Spanned<String>>,
    pub(super) request_timeout: Option<Spanned<String>>,
    pub(super) rate_limit: Option<RawRateLimit>,
    pub(super) backoff: Option<Spanned<RawBackoff>>,
    pub(super) max_retry_after: Option<Spanned<String>>,
    pub(super) max_pages: Option<Spanned<u32>>,
    pub(super) ca_file: Option<Spanned<String>>,
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
pub(super) struct RawRateLimit {
    pub(super) requests: Option<NonZeroU32>,
    pub(super) per: Option<Spanned<String>>,
    pub(super) burst: Option<NonZeroU32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table such as { initial = \"1s\", max = \"5m\" }")]
pub(super) struct RawBackoff {
    pub(super) initial: Option<Spanned<String>>,
    pub(super) max: Option<Spanned<String>>,
}

/// The keys common to every `[[sinks]]` table; the protocol's own keys are split off first and
/// read by its module ([`crate::sinks::Protocol::Keys`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    /// Required (checked in validation, so the table's other keys are read without it).
    pub(super) name: Option<Spanned<String>>,
    pub(super) batch_max_events: Option<Spanned<usize>>,
    pub(super) batch_max_bytes: Option<Spanned<Size>>,
    pub(super) backoff: Option<Spanned<RawBackoff>>,
    pub(super) renamed_from: Option<Spanned<String>>,
}

/// A secret as written (`api_key`, `token`, an OTLP header's value, …): a string, a literal or
/// `"${NAME}"`. A value of another type is refused without being shown, as a secret written
/// unquoted (`password = 12345678`) would be by serde's type error. A vendor's or sink's keys
/// take secrets as this type, since [`crate::config::TableKeys::secret`] reads only it.
pub struct SecretText(pub(crate) String);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<SecretText, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = SecretText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretText, E> {
                Ok(SecretText(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretText, E> {
                Ok(SecretText(v))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretText, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretText, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretText, E> {
                Err(E::custom(NOT_A_STRING))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretText, E> {
                Err(E::custom(NOT_A_STRING))
            }
        }
        de.deserialize_string(Text)
    }
}

const NOT_A_STRING: &str = "expected a string (in quotes; the value is not shown)";
