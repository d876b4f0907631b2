//! Astronomer (Astro API v1): organization audit logs, one gzipped NDJSON answer per window
//! (vendors README §2).

pub mod fuzz;
pub mod ocsf;
pub mod sim;
pub mod source;

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::{DAY, Defaults, MINUTE, Vendor};
use crate::config::{Res, SecretText, TableKeys};
use crate::ocsf::event::EventParts;
use crate::ocsf::{Context, Unmappable};
use crate::sources::{AnswerLimits, BadPage, DecodeError, Decoded, Page, PageCursor, Record, Rejected, Window};

/// One Astronomer organization.
#[derive(Debug, Clone)]
pub struct Astronomer {
    pub organization_id: String,
    /// An Organization API token with the Owner role, sent as `Authorization: Bearer` (2.2).
    pub token: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    organization_id: Option<Spanned<String>>,
    bearer_token: Option<Spanned<SecretText>>,
    bearer_token_file: Option<Spanned<String>>,
}

impl Vendor for Astronomer {
    const NAME: &'static str = "astronomer";
    // 2.6: 2 requests a minute; 2.8: poll every 5 minutes or more, windows of a day at most (the
    // whole window comes back in one answer); the export asks for 10 minutes of overlap.
    const DEFAULTS: Defaults = Defaults {
        base_url: "https://api.astronomer.io",
        max_span: DAY,
        span_limit: Some(DAY),
        overlap: Duration::from_secs(600),
        poll_interval: Duration::from_secs(300),
        requests: 2,
        per: MINUTE,
    };
    const KEYS: &'static [&'static str] = &["organization_id", "bearer_token", "bearer_token_file"];
    const RECORD_FIELDS: (&'static str, &'static str) = ("id", "timestamp");
    type Keys = Keys;

    fn from_keys(k: Keys, cx: &TableKeys<'_>) -> Res<Self> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let organization_id = cx.required_org(k.organization_id.as_ref());
        let token = cx.required_secret("bearer_token", &k.bearer_token, &k.bearer_token_file);
        Ok(Astronomer { organization_id: organization_id?, token: token? })
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn secrets(&self) -> Vec<&SecretString> {
        vec![&self.token]
    }

    fn render(&self, kv: &mut dyn FnMut(&str, String)) {
        kv("organization_id", format!("{:?}", self.organization_id));
        kv("bearer_token", "\"[redacted]\"".to_owned());
    }

    fn bare_429_wait(&self) -> Option<Duration> {
        Some(source::BARE_429_WAIT)
    }

    fn answer_limits(&self) -> AnswerLimits {
        Astronomer::answer_limits()
    }

    fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        _page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        Astronomer::request(self, http, base, window)
    }

    fn streams(&self) -> bool {
        true
    }

    fn read_page(&self, _body: &[u8], _page: &PageCursor) -> Result<Page, BadPage> {
        // Never called: `streams()` sends these answers through `decode`.
        Err(BadPage("Astronomer answers are decoded as a stream".into()))
    }

    fn decode(
        &self,
        body: &mut dyn std::io::Read,
        emit: &mut dyn FnMut(Vec<Record>, Vec<Rejected>) -> bool,
    ) -> Result<Decoded, DecodeError> {
        source::decode(body, emit)
    }

    fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
        ocsf::map(record, ctx)
    }
}
