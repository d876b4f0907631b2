//! ConfigCat (Public Management API): organization audit log, paged by page number
//! (vendors README §1).

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
use crate::sources::{BadPage, Page, PageCursor, Window};

/// One ConfigCat organization.
#[derive(Debug, Clone)]
pub struct ConfigCat {
    pub organization_id: String,
    /// Public API credentials, sent as HTTP Basic auth (vendors/README.md 1.2).
    pub username: SecretString,
    pub password: SecretString,
    /// `pageSize`, 1..=100 (1.3).
    pub page_size: u32,
    /// Which endpoint; a source's copy learns v2 when v1 redirects there.
    pub api_version: ConfigCatApi,
}

/// Which audit-log endpoint to call (1.1): v2 pages; the deprecated v1 answers a bare array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigCatApi {
    V1,
    V2,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    organization_id: Option<Spanned<String>>,
    username: Option<Spanned<SecretText>>,
    username_file: Option<Spanned<String>>,
    password: Option<Spanned<SecretText>>,
    password_file: Option<Spanned<String>>,
    page_size: Option<Spanned<u32>>,
    api_version: Option<Spanned<String>>,
}

impl Vendor for ConfigCat {
    const NAME: &'static str = "configcat";
    // 1.6: limits undocumented; 60 requests a minute per credential assumed. 1.3: a window may
    // not exceed 30 days.
    const DEFAULTS: Defaults = Defaults {
        base_url: "https://api.configcat.com",
        max_span: Duration::from_secs(30 * 86_400),
        span_limit: Some(Duration::from_secs(30 * DAY.as_secs())),
        overlap: Duration::from_secs(300),
        poll_interval: MINUTE,
        requests: 60,
        per: MINUTE,
    };
    const KEYS: &'static [&'static str] =
        &["organization_id", "username", "username_file", "password", "password_file", "page_size", "api_version"];
    const RECORD_FIELDS: (&'static str, &'static str) = ("auditLogId", "auditLogDateTime");
    type Keys = Keys;

    fn from_keys(k: Keys, cx: &TableKeys<'_>) -> Res<Self> {
        // Every key is checked before any refusal is returned (`config` module docs).
        let page_size = super::page_size(k.page_size.as_ref(), cx);
        let organization_id = cx.required_org(k.organization_id.as_ref());
        let username = cx.required_secret("username", &k.username, &k.username_file);
        let password = cx.required_secret("password", &k.password, &k.password_file);
        let api_version = match k.api_version.as_ref().map(|v| (v.get_ref().as_str(), v.span())) {
            None | Some(("v2", _)) => Ok(ConfigCatApi::V2),
            Some(("v1", _)) => Ok(ConfigCatApi::V1),
            Some((other, span)) => cx.fail(span, "api_version", format!("{other:?} is not \"v2\" or \"v1\"")),
        };
        Ok(ConfigCat {
            organization_id: organization_id?,
            username: username?,
            password: password?,
            page_size: page_size?,
            api_version: api_version?,
        })
    }

    fn organization_id(&self) -> &str {
        &self.organization_id
    }

    fn secrets(&self) -> Vec<&SecretString> {
        vec![&self.username, &self.password]
    }

    fn render(&self, kv: &mut dyn FnMut(&str, String)) {
        kv("organization_id", format!("{:?}", self.organization_id));
        kv("username", "\"[redacted]\"".to_owned());
        kv("password", "\"[redacted]\"".to_owned());
        kv("page_size", self.page_size.to_string());
        let v = match self.api_version {
            ConfigCatApi::V1 => "v1",
            ConfigCatApi::V2 => "v2",
        };
        kv("api_version", format!("{v:?}"));
    }

    fn first_page(&self) -> PageCursor {
        ConfigCat::first_page(self)
    }

    fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        ConfigCat::request(self, http, base, window, page)
    }

    fn redirected_to(&mut self, to: &url::Url) -> bool {
        ConfigCat::redirected_to(self, to)
    }

    fn read_page(&self, body: &[u8], page: &PageCursor) -> Result<Page, BadPage> {
        ConfigCat::read_page(self, body, page)
    }

    fn map(record: &Map<String, Value>, ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
        ocsf::map(record, ctx)
    }
}
