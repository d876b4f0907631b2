//! ConfigCat Public Management API, organization audit log — how to ask for a page and read it.
//!
//! Endpoint: `GET {base}/v2/organizations/{organizationId}/auditlogs` (vendors README §1.1), or
//! the deprecated v1 path (`api_version = "v1"`), which answers a bare array. Since 2026-06-01
//! v1 may redirect to v2 with default paging (§1.1 [assume]): reqwest follows the redirect,
//! either shape is read, and an envelope with `hasNext` is continued on v2 by page number.
//! Paging (v2): `pageNumber`/`pageSize` ≤ 100 until `paging.hasNext == false` (§1.4); newest
//! first, so the shared loop freezes the window for the whole sweep. A window may not exceed
//! 30 days (§1.3, else 400): config caps `max_span` at 30 days.
//! Auth: HTTP Basic with the Public API credentials (§1.2).
//! Rate-limit signals: `X-Rate-Limit-Remaining`/`X-Rate-Limit-Reset` on every answer, 429 with
//! `Retry-After` (§1.6) — read by the shared loop, not here.
//! Dedupe key: `auditLogId`; event time: `auditLogDateTime`. `auditLogTypeEnum` is an open set
//! (§1.7): never interpreted here. `truncated` records pass through verbatim.

use chrono::SecondsFormat;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::super::Vendor;
use super::{ConfigCat, ConfigCatApi};
use crate::sources::{BadPage, Items, MAX_ANSWER_ITEMS, Page, PageCursor, Window, page_items};

/// v2's page size when none is asked (a v1 request redirected to v2, §1.1).
const V2_DEFAULT_PAGE_SIZE: u32 = 100;

/// The v2 answer (§1.4). All six paging fields are documented as required; only `hasNext` is
/// needed to page, so the others are tolerated when missing.
#[derive(Deserialize)]
struct Envelope<'a> {
    paging: Paging,
    #[serde(borrow)]
    data: Items<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    has_next: bool,
}

impl ConfigCat {
    pub fn first_page(&self) -> PageCursor {
        match self.api_version {
            ConfigCatApi::V2 => PageCursor::Number { page: 1 },
            ConfigCatApi::V1 => PageCursor::Whole,
        }
    }

    pub fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        // Paging is v2's: a v1 answer redirected to v2 (page 1 of an envelope) is continued on v2.
        let version = match (self.api_version, page) {
            (ConfigCatApi::V1, PageCursor::Whole) => "v1",
            _ => "v2",
        };
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend([version, "organizations", &self.organization_id, "auditlogs"]);
        }
        {
            let mut query = url.query_pairs_mut();
            // RFC 3339 with `Z` (§1.3).
            query
                .append_pair("fromUtcDateTime", &window.from.to_rfc3339_opts(SecondsFormat::Secs, true))
                .append_pair("toUtcDateTime", &window.to.to_rfc3339_opts(SecondsFormat::Secs, true));
            if let PageCursor::Number { page } = page {
                query.append_pair("pageNumber", &page.to_string()).append_pair("pageSize", &self.page_size.to_string());
            }
        }
        http.get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .basic_auth(self.username.expose_secret(), Some(self.password.expose_secret()))
    }

    /// v1 redirected to v2 (§1.1, since 2026-06-01): ask v2 directly from now on, so the
    /// redirect does not spend a request of the rate budget on every window. A window in
    /// progress (`PageCursor::Whole`) goes on as the redirected answer began it: v2 with its
    /// default paging.
    pub fn redirected_to(&mut self, to: &url::Url) -> bool {
        let v2 = to.path_segments().is_some_and(|mut s| s.any(|part| part == "v2"));
        if self.api_version == ConfigCatApi::V1 && v2 {
            self.api_version = ConfigCatApi::V2;
            return true;
        }
        false
    }

    pub fn read_page(&self, body: &[u8], page: &PageCursor) -> Result<Page, BadPage> {
        // v1 answers a bare array; v2 (or v1 redirected to v2) the envelope. Told apart by the
        // first byte: serde's untagged enums cannot hold borrowed raw values.
        let bad = |e: serde_json::Error| BadPage(format!("not a ConfigCat audit-log answer ({e})"));
        let (items, has_next) = match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => {
                // v1's whole window: bounded by MAX_ANSWER_ITEMS only.
                let items: Items<'_> = serde_json::from_slice(body).map_err(bad)?;
                if items.overflow {
                    return Err(BadPage(format!("more than {MAX_ANSWER_ITEMS} items in one answer: not read")));
                }
                (items.list, false)
            }
            _ => {
                let e: Envelope<'_> = serde_json::from_slice(body).map_err(bad)?;
                // A page holds at most pageSize items (v2's default 100 on a redirected v1 answer).
                let size = match page {
                    PageCursor::Number { .. } => self.page_size,
                    _ => V2_DEFAULT_PAGE_SIZE,
                };
                (page_items(e.data, size)?, e.paging.has_next)
            }
        };
        let count = items.len();
        let mut out =
            Page::of_records(items, <ConfigCat as Vendor>::RECORD_FIELDS.0, <ConfigCat as Vendor>::RECORD_FIELDS.1);
        if has_next {
            // A v1 request redirected to v2 got page 1 with v2's default page size (100).
            let page = match page {
                PageCursor::Number { page } => *page,
                _ => 1,
            };
            if count == 0 {
                return Err(BadPage("hasNext is true but the page is empty; refusing to page forever".into()));
            }
            out.next = Some(PageCursor::Number { page: page + 1 });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn vendor(api: ConfigCatApi) -> ConfigCat {
        ConfigCat {
            organization_id: "08d86d63-2721-4da6-8c06-584521d516bc".into(),
            username: SecretString::from("user"),
            password: SecretString::from("pass"),
            page_size: 100,
            api_version: api,
        }
    }

    fn window() -> Window {
        let t = |s| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        Window { from: t("2026-03-01T00:00:00Z"), to: t("2026-03-31T00:00:00Z") }
    }

    #[test]
    fn test_request_shape_v2_and_v1() {
        let http = reqwest::Client::new();
        let base = url::Url::parse("https://api.configcat.com").unwrap();
        let v2 = vendor(ConfigCatApi::V2);
        let req = v2.request(&http, &base, &window(), &PageCursor::Number { page: 3 }).build().unwrap();
        assert_eq!(
            req.url().as_str(),
            "https://api.configcat.com/v2/organizations/08d86d63-2721-4da6-8c06-584521d516bc/auditlogs\
             ?fromUtcDateTime=2026-03-01T00%3A00%3A00Z&toUtcDateTime=2026-03-31T00%3A00%3A00Z&pageNumber=3&pageSize=100"
        );
        assert_eq!(req.headers()["authorization"], "Basic dXNlcjpwYXNz");
        let v1 = vendor(ConfigCatApi::V1);
        let req = v1.request(&http, &base, &window(), &v1.first_page()).build().unwrap();
        assert!(req.url().path().starts_with("/v1/organizations/"));
        assert!(!req.url().as_str().contains("pageNumber"));
    }

    /// DST seed 32: under a budget of one request per window, following v1's redirect to v2 on
    /// every window spent the budget on the redirect and drew a 429 on v2, for ever.
    #[test]
    fn test_a_redirect_from_v1_to_v2_is_learned_once() {
        let http = reqwest::Client::new();
        let base = url::Url::parse("https://api.configcat.com").unwrap();
        let mut v = vendor(ConfigCatApi::V1);
        let to = url::Url::parse("https://api.configcat.com/v2/organizations/o/auditlogs?a=1").unwrap();
        assert!(!v.redirected_to(&url::Url::parse("https://api.configcat.com/v1/other").unwrap()));
        assert!(v.redirected_to(&to));
        assert!(!v.redirected_to(&to), "learned once");
        assert_eq!(v.first_page(), PageCursor::Number { page: 1 });
        let req = v.request(&http, &base, &window(), &PageCursor::Whole).build().unwrap();
        assert!(req.url().path().starts_with("/v2/organizations/"), "{}", req.url());
        assert!(!vendor(ConfigCatApi::V2).redirected_to(&to));
    }

    #[test]
    fn test_reads_the_sample_records_in_both_shapes() {
        let items = include_str!("fixtures/records.json");
        let v = vendor(ConfigCatApi::V2);
        let paged = format!(
            r#"{{"paging":{{"currentPage":2,"totalPages":3,"pageSize":5,"totalCount":12,"hasPrevious":true,"hasNext":true}},"data":{items}}}"#
        );
        let page = v.read_page(paged.as_bytes(), &PageCursor::Number { page: 2 }).unwrap();
        assert_eq!(page.records.len(), 5, "{:?}", page.rejected);
        assert_eq!(page.next, Some(PageCursor::Number { page: 3 }));
        // Record 4 of the sample is cut for size: passed through verbatim (its OCSF event flags it).
        let cut: Vec<_> = page.records.iter().filter(|r| r.raw.get().contains("\"truncated\": true")).collect();
        assert_eq!(cut.len(), 1);
        // v1's bare array (or an unknown page shape of v1) is read too, with no next page.
        let bare = vendor(ConfigCatApi::V1).read_page(items.as_bytes(), &PageCursor::Whole).unwrap();
        assert_eq!((bare.records.len(), bare.next), (5, None));
        // v1 redirected to v2: page 1 of an envelope, continued on v2 by page number.
        let redirected = vendor(ConfigCatApi::V1).read_page(paged.as_bytes(), &PageCursor::Whole).unwrap();
        assert_eq!(redirected.next, Some(PageCursor::Number { page: 2 }));
        let http = reqwest::Client::new();
        let base = url::Url::parse("https://api.configcat.com").unwrap();
        let next = vendor(ConfigCatApi::V1).request(&http, &base, &window(), &PageCursor::Number { page: 2 });
        assert!(next.build().unwrap().url().path().starts_with("/v2/"));
    }

    #[test]
    fn test_unknown_type_enum_is_not_an_error_and_bad_records_are_rejected() {
        let body = br#"{"paging":{"hasNext":false},"data":[
            {"auditLogId":1,"auditLogDateTime":"2026-03-18T08:15:42.1Z","auditLogTypeEnum":"somethingNew2027"},
            {"auditLogDateTime":"2026-03-18T08:15:42Z"},
            {"auditLogId":3,"auditLogDateTime":null}]}"#;
        let page = vendor(ConfigCatApi::V2).read_page(body, &PageCursor::Number { page: 1 }).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].key, "1");
        assert_eq!(page.rejected.len(), 2);
        assert_eq!(page.rejected[1].key, "3");
    }

    #[test]
    fn test_malformed_answers_are_errors() {
        let v = vendor(ConfigCatApi::V2);
        let first = PageCursor::Number { page: 1 };
        for body in [&b"<html>Bad gateway</html>"[..], b"{\"data\":[]}", b"{\"paging\":{\"hasNext\":false}", b"\xff"] {
            assert!(v.read_page(body, &first).is_err(), "{body:?}");
        }
        let endless = br#"{"paging":{"hasNext":true},"data":[]}"#;
        assert!(v.read_page(endless, &first).is_err());
    }
}
