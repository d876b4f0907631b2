//! Datafold audit logs — how to ask for a window and read the answer.
//!
//! Endpoint: `GET {base}/api/v1/audit_logs` (vendors README §3.1; `base` is the deployment's
//! login host, so it is configurable). Quirk: the time range travels as a JSON *body on a
//! GET* — `{"start_date","end_date"}` with `Content-Type: application/json` (§3.3).
//! Paging: none, and no limit — the answer is the whole window (§3.4). So windows are at most
//! one hour (config caps `max_span`), and the shared loop halves a window whose answer holds
//! more than `max_records` records or `max_response_bytes` bytes.
//! Auth: `Authorization: Key <api-key>` — the literal word `Key`, not `Bearer` (§3.2).
//! Rate-limit signals: none documented; 429 + `Retry-After` assumed (§3.6), read by the loop.
//! A 422 (FastAPI validation) is never retried: the shared `classify` makes it fatal, quoting
//! the validation detail.
//! Dedupe key: `event_uuid`; event time: `timestamp` (offset or naive = UTC, §3.5).

use chrono::SecondsFormat;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::super::Vendor;
use super::Datafold;
use crate::sources::{AnswerLimits, BadPage, Items, Page, Window};

/// The answer (§3.4): `logs` is required.
#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    logs: Items<'a>,
}

impl Datafold {
    pub fn answer_limits(&self) -> AnswerLimits {
        AnswerLimits { max_records: Some(self.max_records), max_bytes: Some(self.max_response_bytes) }
    }

    pub fn request(&self, http: &reqwest::Client, base: &url::Url, window: &Window) -> reqwest::RequestBuilder {
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "v1", "audit_logs"]);
        }
        let body = serde_json::json!({
            "start_date": window.from.to_rfc3339_opts(SecondsFormat::Secs, true),
            "end_date": window.to.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        http.get(url)
            .header(reqwest::header::AUTHORIZATION, format!("Key {}", self.api_key.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }

    pub fn read_page(&self, body: &[u8]) -> Result<Page, BadPage> {
        let answer: Answer<'_> =
            serde_json::from_slice(body).map_err(|e| BadPage(format!("not a Datafold audit-log answer ({e})")))?;
        // No page size: an answer past MAX_ANSWER_ITEMS is marked, and the loop splits the window.
        let oversized = answer.logs.overflow;
        Ok(Page {
            oversized,
            ..Page::of_records(
                answer.logs.list,
                <Datafold as Vendor>::RECORD_FIELDS.0,
                <Datafold as Vendor>::RECORD_FIELDS.1,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn vendor() -> Datafold {
        Datafold {
            organization_id: "datafold.example.com".into(),
            api_key: SecretString::from("dfk_1"),
            max_records: 10_000,
            max_response_bytes: 1 << 20,
        }
    }

    #[test]
    fn test_request_is_a_get_with_a_json_body_and_key_auth() {
        let t = |s| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        let window = Window { from: t("2026-04-02T00:00:00Z"), to: t("2026-04-02T01:00:00Z") };
        let base = url::Url::parse("https://datafold.example.com/").unwrap();
        let req = vendor().request(&reqwest::Client::new(), &base, &window).build().unwrap();
        assert_eq!(req.method(), reqwest::Method::GET);
        assert_eq!(req.url().as_str(), "https://datafold.example.com/api/v1/audit_logs");
        assert_eq!(req.headers()["authorization"], "Key dfk_1");
        assert_eq!(req.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"start_date": "2026-04-02T00:00:00Z", "end_date": "2026-04-02T01:00:00Z"}));
    }

    #[test]
    fn test_reads_the_sample_records() {
        let logs = include_str!("fixtures/records.json");
        let page = vendor().read_page(format!(r#"{{"logs":{logs}}}"#).as_bytes()).unwrap();
        assert_eq!(page.records.len(), 5, "{:?}", page.rejected);
        assert!(page.next.is_none());
        assert!(page.records.iter().all(|r| r.key.len() == 36));
    }

    #[test]
    fn test_naive_times_are_utc_and_bad_records_are_rejected() {
        let body = br#"{"logs":[{"event_uuid":"a","timestamp":"2026-04-02T14:07:51.204915"},
            {"event_uuid":"b","timestamp":"02/04/2026"},{"timestamp":"2026-04-02T14:07:51Z"}]}"#;
        let page = vendor().read_page(body).unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].time.to_rfc3339(), "2026-04-02T14:07:51.204915+00:00");
        assert_eq!(page.rejected.len(), 2);
    }

    #[test]
    fn test_malformed_answers_are_errors() {
        for body in [&b"<html></html>"[..], b"{\"detail\":\"x\"}", b"[]", b"{\"logs\":[", b"\xc3\x28"] {
            assert!(vendor().read_page(body).is_err(), "{body:?}");
        }
    }
}
