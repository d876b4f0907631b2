//! The fuzz target of this vendor's page reader (`cargo fuzz` target and regression corpus
//! `configcat_page`; the harness and what every page must satisfy: `crate::fuzzing`).

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ConfigCat, ConfigCatApi};
use crate::fuzzing::check_page;
use crate::sources::PageCursor;

/// ConfigCat: `read_page` as v2 (pages 1 and 7) and as v1 (the whole window; an envelope is a
/// v1 request redirected to v2).
pub fn page(data: &[u8]) {
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        data: Vec<&'a RawValue>,
    }
    let settings = |api_version| ConfigCat {
        organization_id: "08d86d63-2721-4da6-8c06-584521d516bc".into(),
        username: SecretString::from("user"),
        password: SecretString::from("pass"),
        page_size: 100,
        api_version,
    };
    let (v2, v1) = (settings(ConfigCatApi::V2), settings(ConfigCatApi::V1));
    let asks = [(&v2, PageCursor::Number { page: 1 }), (&v2, PageCursor::Number { page: 7 }), (&v1, PageCursor::Whole)];
    for (vendor, cursor) in asks {
        let Ok(page) = vendor.read_page(data, &cursor) else { continue };
        let bare = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
        let items = if bare {
            serde_json::from_slice::<Vec<&RawValue>>(data).map(|i| i.len())
        } else {
            serde_json::from_slice::<Data<'_>>(data).map(|d| d.data.len())
        };
        assert!(items.is_ok(), "a page was read but its records are not an array");
        let count = items.unwrap_or_default();
        check_page(&page, count, "auditLogId", "auditLogDateTime");
        if let Some(next) = &page.next {
            assert!(!bare, "a bare array (v1) has no next page");
            assert!(count > 0, "a next page after an empty one");
            let page = match cursor {
                PageCursor::Number { page } => page,
                _ => 1,
            };
            assert_eq!(*next, PageCursor::Number { page: page + 1 });
        }
    }
}
