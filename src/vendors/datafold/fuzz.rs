//! The fuzz target of this vendor's page reader (`cargo fuzz` target and regression corpus
//! `datafold_page`; the harness and what every page must satisfy: `crate::fuzzing`).

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Datafold;
use crate::fuzzing::check_page;

/// Datafold: `read_page` (one unpaged answer).
pub fn page(data: &[u8]) {
    #[derive(Deserialize)]
    struct Logs<'a> {
        #[serde(borrow)]
        logs: Vec<&'a RawValue>,
    }
    let vendor = Datafold {
        organization_id: "app.datafold.com".into(),
        api_key: SecretString::from("dfk_fuzz"),
        max_records: 10_000,
        max_response_bytes: 1 << 20,
    };
    let Ok(page) = vendor.read_page(data) else { return };
    let items = serde_json::from_slice::<Logs<'_>>(data).map(|l| l.logs.len());
    assert!(items.is_ok(), "an answer was read but its `logs` are not an array");
    check_page(&page, items.unwrap_or_default(), "event_uuid", "timestamp");
    assert!(page.next.is_none(), "Datafold answers are not paged");
}
