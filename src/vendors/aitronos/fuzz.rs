//! The fuzz target of this vendor's page reader (`cargo fuzz` target and regression corpus
//! `aitronos_page`; the harness and what every page must satisfy: `crate::fuzzing`).

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Aitronos, AitronosCredential};
use crate::fuzzing::check_page;
use crate::sources::PageCursor;

/// Aitronos: `read_page` at the first offset and at a later one.
pub fn page(data: &[u8]) {
    // The envelope's shape again (serde also reads a struct from a JSON array of its fields).
    #[derive(Deserialize)]
    struct Items<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
        #[serde(rename = "has_more")]
        _has_more: bool,
    }
    let vendor = Aitronos {
        organization_id: "ORG_7F3KQ9ZP2M4XW8RT".into(),
        credential: AitronosCredential::ApiKey(SecretString::from("ak_fuzz")),
        page_size: 100,
    };
    for skip in [0, 200] {
        let Ok(page) = vendor.read_page(data, &PageCursor::Offset { skip }) else { continue };
        let items = serde_json::from_slice::<Items<'_>>(data).map(|i| i.items.len());
        assert!(items.is_ok(), "a page was read but its `items` are not an array");
        let count = items.unwrap_or_default();
        check_page(&page, count, "id", "created_at");
        if let Some(next) = &page.next {
            assert!(count > 0, "a next page after an empty one");
            assert_eq!(*next, PageCursor::Offset { skip: skip + count as u64 });
        }
    }
}
