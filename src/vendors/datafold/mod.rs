//! Datafold: audit logs of one deployment, the whole window in one answer (vendors README §3).

pub mod fuzz;
pub mod ocsf;
pub mod sim;
pub mod source;

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{Defaults, MINUTE, Vendor};
use crate::config::{Res, SecretText, Size, TableKeys};
use crate::ocsf::event::EventParts;
use crate::ocsf::{Context, Unmappable};
use crate::sources::{AnswerLimits, BadPage, Page, PageCursor, Window};

/// One Datafold deployment.
#[derive(Debug, Clone)]
pub struct Datafold {
    /// A label for the deployment (`organization_id`, default: the base URL's host).
    pub organization_id: String,
    /// Sent as `Authorization: Key <api_key>` (3.2).
    pub api_key: SecretString,
    /// A window whose answer holds more records than this is split in two and asked again
    /// (answers are unbounded, 3.4).
    pub max_records: usize,
    /// Likewise for an answer body larger than this many bytes.
    pub max_response_bytes: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    organization_id: Option<Spanned<String>>,
    api_key: Option<Spanned<SecretText>>,
    api_key_file: Option<Spanned<String>>,
    max_records: Option<Spanned<usize>>,
    max_response_bytes: Option<Spanned<Size>>,
}

impl Vendor for Datafold {
    const NAME: &'static str = "datafold";
    // 3.6: limits undocumented, 60 a minute assumed; 3.8: answers are unbounded, so windows of
    // at most one hour.
    const DEFAULTS: Defaults = Defaults {
        base_url: "https://app.datafold.com",
        max_span: Duration::from_secs(3600),
        span_limit: Some(Duration::from_secs(3600)),
        overlap: Duration::from_secs(300),
        poll_interval: MINUTE,
        requests: 60,
        per: MINUTE,
    };
    const KEYS: &'static [&'static str] =
        &["organization_id", "api_key", "api_key_file", "max_records", "max_response_bytes"];
    const RECORD_FIELDS: (&'static str, &'static str) = ("event_uuid", "timestamp");
    type Keys = Keys;

    fn from_keys(k: Keys, cx: &TableKeys<'_>) -> Res<Self> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let api_key = cx.required_secret("api_key", &k.api_key, &k.api_key_file);
        // Datafold's API names no organization: the deployment's host unless one is given.
        let organization_id = match k.organization_id.as_ref().filter(|o| !o.get_ref().is_empty()) {
            Some(org) => org.get_ref().clone(),
            None => cx.base_url().and_then(url::Url::host_str).unwrap_or("datafold").to_owned(),
        };
        let max_records = match &k.max_records {
            None => Ok(10_000),
            Some(n) if *n.get_ref() > 0 => Ok(*n.get_ref()),
            Some(n) => cx.fail(n.span(), "max_records", "must be at least 1"),
        };
        let bytes = cx.bytes(&k.max_response_bytes, "max_response_bytes", 32 * bytesize::MIB);
        let max_response_bytes = bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
        Ok(Datafold {
            organization_id,
            api_key: api_key?,
            max_records: max_records?,
            max_response_bytes: max_response_bytes?,
        })
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn secrets(&self) -> Vec<&SecretString> {
        vec![&self.api_key]
    }

    fn render(&self, kv: &mut dyn FnMut(&str, String)) {
        kv("organization_id", format!("{:?}", self.organization_id));
        kv("api_key", "\"[redacted]\"".to_owned());
        kv("max_records", self.max_records.to_string());
        kv("max_response_bytes", crate::config::size_text(self.max_response_bytes as u64));
    }

    fn answer_limits(&self) -> AnswerLimits {
        Datafold::answer_limits(self)
    }

    fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        _page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        Datafold::request(self, http, base, window)
    }

    fn read_page(&self, body: &[u8], _page: &PageCursor) -> Result<Page, BadPage> {
        Datafold::read_page(self, body)
    }

    fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
        ocsf::map(record, ctx)
    }
}
