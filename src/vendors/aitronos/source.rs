//! Aitronos (Freddy API) organization audit log — how to ask for a page and how to read it.
//!
//! Endpoint: `GET {base}/v1/organizations/{organization_id}/audit-log` (vendors README §4).
//! Paging: `skip`/`limit` (limit ≤ 100) until `has_more == false`; the answer is newest first,
//! so the shared loop freezes `to_date` for the whole sweep to keep offsets stable (§4.8).
//! Auth: `X-API-Key: ak_…` or `Authorization: Bearer <JWT>` (§4.2).
//! Rate-limit signals: 429 with `Retry-After`, `X-RateLimit-Remaining`/`X-RateLimit-Reset`
//! (epoch seconds) on answers (§4.6) — read by the shared loop, not here.
//! Dedupe key: the record's `id`; event time: `created_at`.

use chrono::SecondsFormat;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::super::Vendor;
use super::{Aitronos, AitronosCredential};
use crate::sources::{BadPage, Items, Page, PageCursor, Window, page_items};

/// The answer envelope (§4.4). Only `items` and `has_more` are needed to page; the counts are
/// informative and tolerated when missing.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    items: Items<'a>,
    has_more: bool,
}

impl Aitronos {
    pub fn first_page() -> PageCursor {
        PageCursor::Offset { skip: 0 }
    }

    pub fn request(
        &self,
        http: &reqwest::Client,
        base: &url::Url,
        window: &Window,
        page: &PageCursor,
    ) -> reqwest::RequestBuilder {
        let skip = match page {
            PageCursor::Offset { skip } => *skip,
            _ => 0,
        };
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["v1", "organizations", &self.organization_id, "audit-log"]);
        }
        // Full RFC 3339 times, not the date-only form of the docs' examples (§4.8).
        url.query_pairs_mut()
            .append_pair("skip", &skip.to_string())
            .append_pair("limit", &self.page_size.to_string())
            .append_pair("from_date", &window.from.to_rfc3339_opts(SecondsFormat::Secs, true))
            .append_pair("to_date", &window.to.to_rfc3339_opts(SecondsFormat::Secs, true));
        let request = http.get(url).header(reqwest::header::ACCEPT, "application/json");
        match &self.credential {
            AitronosCredential::ApiKey(key) => request.header("X-API-Key", key.expose_secret()),
            AitronosCredential::Bearer(token) => request.bearer_auth(token.expose_secret()),
        }
    }

    pub fn read_page(&self, body: &[u8], page: &PageCursor) -> Result<Page, BadPage> {
        let skip = match page {
            PageCursor::Offset { skip } => *skip,
            _ => 0,
        };
        let envelope: Envelope<'_> =
            serde_json::from_slice(body).map_err(|e| BadPage(format!("not an Aitronos audit-log page ({e})")))?;
        // At most `limit` items were asked for (plus slack): more is not a page of this API.
        let items = page_items(envelope.items, self.page_size)?;
        let count = items.len() as u64;
        let mut out =
            Page::of_records(items, <Aitronos as Vendor>::RECORD_FIELDS.0, <Aitronos as Vendor>::RECORD_FIELDS.1);
        if envelope.has_more {
            if count == 0 {
                return Err(BadPage("has_more is true but the page is empty; refusing to page forever".into()));
            }
            out.next = Some(PageCursor::Offset { skip: skip + count });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn vendor(credential: AitronosCredential) -> Aitronos {
        Aitronos { organization_id: "ORG_7F3KQ9ZP2M4XW8RT".into(), credential, page_size: 100 }
    }

    fn window() -> Window {
        let t = |s| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        Window { from: t("2026-03-18T00:00:00Z"), to: t("2026-03-19T00:00:00Z") }
    }

    #[test]
    fn test_request_shape_api_key_and_bearer() {
        let http = reqwest::Client::new();
        let base = url::Url::parse("https://api.aitronos.com").unwrap();
        let key = AitronosCredential::ApiKey(SecretString::from("ak_x"));
        let req = vendor(key).request(&http, &base, &window(), &PageCursor::Offset { skip: 200 }).build().unwrap();
        assert_eq!(
            req.url().as_str(),
            "https://api.aitronos.com/v1/organizations/ORG_7F3KQ9ZP2M4XW8RT/audit-log?skip=200&limit=100\
             &from_date=2026-03-18T00%3A00%3A00Z&to_date=2026-03-19T00%3A00%3A00Z"
        );
        assert_eq!(req.headers()["x-api-key"], "ak_x");
        assert!(req.headers().get("authorization").is_none());
        let bearer = AitronosCredential::Bearer(SecretString::from("jwt"));
        let req = vendor(bearer).request(&http, &base, &window(), &Aitronos::first_page()).build().unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer jwt");
    }

    #[test]
    fn test_reads_the_sample_records_and_pages_on() {
        let items = include_str!("fixtures/records.json");
        let body = format!(r#"{{"items":{items},"total":12,"skip":5,"limit":5,"has_more":true}}"#);
        let v = vendor(AitronosCredential::ApiKey(SecretString::from("k")));
        let page = v.read_page(body.as_bytes(), &PageCursor::Offset { skip: 5 }).unwrap();
        assert_eq!(page.records.len(), 5);
        assert!(page.rejected.is_empty());
        assert_eq!(page.records[0].key, "0f6d3c2a-8b1e-4f7a-9c5d-2e4b6a8c0d13");
        assert_eq!(page.next, Some(PageCursor::Offset { skip: 10 }));
        // Unknown fields survive: the raw bytes are the vendor's.
        assert!(page.records[0].raw.get().contains("\"ip_address\""));
    }

    #[test]
    fn test_bad_records_are_rejected_not_fatal() {
        let body = br#"{"items":[{"id":"a","created_at":"2026-03-18T08:15:42Z"},{"created_at":"2026-03-18T08:15:42Z"},
            {"id":"c","created_at":"last tuesday"},{"id":"d"}],"total":4,"skip":0,"limit":100,"has_more":false}"#;
        let v = vendor(AitronosCredential::ApiKey(SecretString::from("k")));
        let page = v.read_page(body, &Aitronos::first_page()).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.rejected.len(), 3);
        assert_eq!(page.rejected[1].key, "c");
        assert!(page.rejected[1].reason.contains("last tuesday"));
        assert_eq!(page.next, None);
    }

    /// Issue 15 point 9: an item that is not an object, or more items than the page size plus
    /// slack, make the page malformed (retried) instead of one dead letter per item.
    #[test]
    fn test_non_objects_and_overfull_pages_are_malformed() {
        let v = vendor(AitronosCredential::ApiKey(SecretString::from("k")));
        let body = br#"{"items":[{"id":"a","created_at":"2026-03-18T08:15:42Z"},[1,2]],"has_more":false}"#;
        let err = v.read_page(body, &Aitronos::first_page()).unwrap_err().0;
        assert!(err.contains("item 2 is not a JSON object: [1,2]"), "{err}");
        let item = r#"{"id":"a","created_at":"2026-03-18T08:15:42Z"}"#;
        let page = |n: usize| format!(r#"{{"items":[{}],"has_more":false}}"#, vec![item; n].join(","));
        assert!(v.read_page(page(200).as_bytes(), &Aitronos::first_page()).is_ok());
        let err = v.read_page(page(201).as_bytes(), &Aitronos::first_page()).unwrap_err().0;
        assert!(err.contains("201 items on a page of 100"), "{err}");
    }

    #[test]
    fn test_malformed_pages_are_errors() {
        let v = vendor(AitronosCredential::ApiKey(SecretString::from("k")));
        for body in [&b"<html>502</html>"[..], b"{\"items\":[", b"{\"data\":[]}", b"[]", b"\xff\xfe"] {
            assert!(v.read_page(body, &Aitronos::first_page()).is_err(), "{body:?}");
        }
        let endless = br#"{"items":[],"total":9,"skip":0,"limit":100,"has_more":true}"#;
        assert!(v.read_page(endless, &Aitronos::first_page()).is_err());
    }
}
