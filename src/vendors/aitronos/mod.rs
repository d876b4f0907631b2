//! Aitronos (Freddy API): organization audit log, paged by `skip`/`limit` (vendors README §4).

pub mod fuzz;
pub mod ocsf;
pub mod sim;
pub mod source;

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use toml::Spanned;

use super::{Defaults, MINUTE, Vendor};
use crate::config::{Res, SecretText, TableKeys};
use crate::sources::{AnswerLimits, BadPage, Page, PageCursor, Window};

/// One Aitronos organization.
#[derive(Debug, Clone)]
pub struct Aitronos {
    pub organization_id: String,
    pub credential: AitronosCredential,
    /// The `limit` query parameter, 1..=100 (vendors/README.md 4.3).
    pub page_size: u32,
}

/// Aitronos accepts either header (vendors/README.md 4.2).
#[derive(Debug, Clone)]
pub enum AitronosCredential {
    /// Sent as `X-API-Key`.
    ApiKey(SecretString),
    /// Sent as `Authorization: Bearer`.
    Bearer(SecretString),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    organization_id: Option<Spanned<String>>,
    api_key: Option<Spanned<SecretText>>,
    api_key_file: Option<Spanned<String>>,
    bearer_token: Option<Spanned<SecretText>>,
    bearer_token_file: Option<Spanned<String>>,
    page_size: Option<Spanned<u32>>,
}

impl Vendor for Aitronos {
    const NAME: &'static str = "aitronos";
    // 4.6: standard tier 100 requests per minute.
    const DEFAULTS: Defaults = Defaults {
        base_url: "https://api.aitronos.com",
        max_span: super::DAY,
        span_limit: None,
        overlap: Duration::from_secs(300),
        poll_interval: MINUTE,
        requests: 100,
        per: MINUTE,
    };
    const KEYS: &'static [&'static str] =
        &["organization_id", "api_key", "api_key_file", "bearer_token", "bearer_token_file", "page_size"];
    const RECORD_FIELDS: (&'static str, &'static str) = ("id", "created_at");
    type Keys = Keys;

    fn from_keys(k: Keys, cx: &TableKeys<'_>) -> Res<Self> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let page_size = super::page_size(k.page_size.as_ref(), cx);
        let organization_id = cx.required_org(k.organization_id.as_ref());
        let one_of = "api_key / api_key_file / bearer_token / bearer_token_file";
        let api = k.api_key.is_some() || k.api_key_file.is_some();
        let bearer = k.bearer_token.as_ref().map(Spanned::span).or(k.bearer_token_file.as_ref().map(Spanned::span));
        let credential = match (api, bearer) {
            (true, None) => cx.secret("api_key", &k.api_key, &k.api_key_file).map(AitronosCredential::ApiKey),
            (false, Some(_)) => {
                cx.secret("bearer_token", &k.bearer_token, &k.bearer_token_file).map(AitronosCredential::Bearer)
            }
            (true, Some(span)) => cx.fail(span, "bearer_token", format!("set exactly one of {one_of}")),
            (false, None) => cx.fail(cx.table(), "api_key", format!("exactly one of {one_of} is required")),
        };
        Ok(Aitronos { organization_id: organization_id?, credential: credential?, page_size: page_size? })
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn secrets(&self) -> Vec<&SecretString> {
        match &self.credential {
            AitronosCredential::ApiKey(k) | AitronosCredential::Bearer(k) => vec![k],
        }
    }

    /// The kind of credential is part of the key (a key and a token are counted apart).
    fn credential_parts(&self) -> Vec<&str> {
        use secrecy::ExposeSecret as _;
        match &self.credential {
            AitronosCredential::ApiKey(k) => vec!["api_key", k.expose_secret()],
            AitronosCredential::Bearer(t) => vec!["bearer", t.expose_secret()],
        }
    }

    fn render(&self, kv: &mut dyn FnMut(&str, String)) {
        kv("organization_id", format!("{:?}", self.organization_id));
        let key = match self.credential {
            AitronosCredential::ApiKey(_) => "api_key",
            AitronosCredential::Bearer(_) => "bearer_token",
        };
        kv(key, "\"[redacted]\"".to_owned());
        kv("page_size", self.page_size.to_string());
    }

    fn first_page(&self) -> PageCursor {
        Aitronos::first_page()
    }

    fn answer_limits(&self) -> AnswerLimits {
        AnswerLimits::default()
    }

    fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        Aitronos::request(self, http, base, window, page)
    }

    fn read_page(&self, body: &[u8], page: &PageCursor) -> Result<Page, BadPage> {
        Aitronos::read_page(self, body, page)
    }

    fn map(
        record: &serde_json::Map<String, serde_json::Value>,
        ctx: &crate::ocsf::Context<'_>,
    ) -> Result<crate::ocsf::event::EventParts, crate::ocsf::Unmappable> {
        ocsf::map(record, ctx)
    }
}
