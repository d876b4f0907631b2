//! source.rs: every paging kind, the origin rule, empty "more" pages, requests per auth kind.

use std::path::Path;

use chrono::{TimeZone as _, Utc};

use super::*;
use crate::vendors::defined::format;

/// A definition with `paging`, `auth` and `request` sections as given.
fn def(request: &str, paging: &str, auth: &str) -> &'static Definition {
    let text = format!(
        "[vendor]\nname = \"t\"\nvendor_name = \"V\"\nproduct = \"P\"\n[request]\n{request}\n[paging]\n{paging}\n\
         [auth]\n{auth}\n[answer]\nrecords = \"/data\"\nid = \"/id\"\ntime = \"/at\"\n\
         [rate_limit]\nrequests = 10\nper = \"1m\"\nbare_429_wait = \"30s\"\n[ocsf]\naction = \"/a\"\n"
    );
    let d = format::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    Box::leak(Box::new(d))
}

const GET: &str = "path = \"/v1/{organization_id}/logs\"\nquery = { since = \"{from}\", until = \"{to}\" }";

fn source(def: &'static Definition, credential: Credential) -> DefinedSource {
    DefinedSource { def, organization_id: "acme".into(), page_size: 2, credential, tokens: Default::default() }
}

fn token() -> Credential {
    Credential::Token(SecretString::from("s3cret"))
}

fn window() -> Window {
    Window {
        from: Utc.with_ymd_and_hms(2026, 3, 18, 0, 0, 0).unwrap(),
        to: Utc.with_ymd_and_hms(2026, 3, 18, 1, 0, 0).unwrap(),
    }
}

fn base() -> url::Url {
    url::Url::parse("https://api.test/prefix/").unwrap()
}

fn body(n: usize, extra: &str) -> Vec<u8> {
    let records: Vec<String> = (0..n).map(|i| format!(r#"{{"id":"r{i}","at":"2026-03-18T00:30:00Z"}}"#)).collect();
    format!(r#"{{"data":[{}]{extra}}}"#, records.join(",")).into_bytes()
}

fn read(s: &DefinedSource, body: &[u8], links: &[&str], page: &PageCursor) -> Result<Page, BadPage> {
    let asked = s.url(&base(), &window(), page).unwrap();
    s.read_page(body, links, &asked, &base(), page)
}

#[test]
fn offset_paging_by_has_more_total_or_a_short_page() {
    let q = "path = \"/logs\"\nquery = { skip = \"{offset}\", limit = \"{page_size}\" }";
    let s = source(def(q, "kind = \"offset\"\nhas_more = \"/more\"", "kind = \"bearer\""), token());
    let first = s.first_page();
    assert_eq!(first, PageCursor::Offset { skip: 0 });
    assert_eq!(s.url(&base(), &window(), &first).unwrap().as_str(), "https://api.test/prefix/logs?skip=0&limit=2");
    let p = read(&s, &body(2, r#","more":true"#), &[], &first).unwrap();
    assert_eq!((p.records.len(), p.next.clone()), (2, Some(PageCursor::Offset { skip: 2 })));
    assert_eq!(read(&s, &body(2, r#","more":false"#), &[], &p.next.unwrap()).unwrap().next, None);
    assert!(read(&s, &body(1, r#","more":"yes""#), &[], &first).is_err(), "not a boolean");

    let s = source(def(q, "kind = \"offset\"\ntotal = \"/total\"", "kind = \"bearer\""), token());
    let at2 = PageCursor::Offset { skip: 2 };
    assert_eq!(read(&s, &body(2, r#","total":5"#), &[], &at2).unwrap().next, Some(PageCursor::Offset { skip: 4 }));
    assert_eq!(read(&s, &body(1, r#","total":5"#), &[], &PageCursor::Offset { skip: 4 }).unwrap().next, None);

    let s = source(def(q, "kind = \"offset\"", "kind = \"bearer\""), token());
    assert_eq!(read(&s, &body(2, ""), &[], &first).unwrap().next, Some(PageCursor::Offset { skip: 2 }));
    assert_eq!(read(&s, &body(1, ""), &[], &at2).unwrap().next, None, "a short page is the last");
}

#[test]
fn page_paging_by_has_next_total_pages_or_a_short_page() {
    let q = "path = \"/logs\"\nquery = { page = \"{page}\" }";
    let s = source(def(q, "kind = \"page\"\ntotal_pages = \"/pages\"", "kind = \"bearer\""), token());
    assert_eq!(s.first_page(), PageCursor::Number { page: 1 });
    let p1 = PageCursor::Number { page: 1 };
    assert_eq!(read(&s, &body(2, r#","pages":2"#), &[], &p1).unwrap().next, Some(PageCursor::Number { page: 2 }));
    assert_eq!(read(&s, &body(2, r#","pages":2"#), &[], &PageCursor::Number { page: 2 }).unwrap().next, None);
    let s = source(def(q, "kind = \"page\"\nfirst = 0\ntotal_pages = \"/pages\"", "kind = \"bearer\""), token());
    let p0 = s.first_page();
    assert_eq!(p0, PageCursor::Number { page: 0 });
    assert_eq!(read(&s, &body(2, r#","pages":2"#), &[], &p0).unwrap().next, Some(PageCursor::Number { page: 1 }));
    assert_eq!(read(&s, &body(2, r#","pages":2"#), &[], &PageCursor::Number { page: 1 }).unwrap().next, None);
    let s = source(def(q, "kind = \"page\"\nhas_next = \"/next\"", "kind = \"bearer\""), token());
    assert_eq!(read(&s, &body(1, r#","next":true"#), &[], &p1).unwrap().next, Some(PageCursor::Number { page: 2 }));
    let s = source(def(q, "kind = \"page\"", "kind = \"bearer\""), token());
    assert_eq!(read(&s, &body(1, ""), &[], &p1).unwrap().next, None);
}

#[test]
fn cursor_paging_leaves_the_parameter_out_on_the_first_page() {
    let q = "path = \"/logs\"\nquery = { after = \"{cursor}\", since = \"{from}\" }";
    let s = source(def(q, "kind = \"cursor\"\ncursor = \"/meta/next\"", "kind = \"bearer\""), token());
    let first = s.first_page();
    assert_eq!(first, PageCursor::First);
    assert_eq!(s.url(&base(), &window(), &first).unwrap().query(), Some("since=2026-03-18T00%3A00%3A00Z"));
    let p = read(&s, &body(2, r#","meta":{"next":"c1"}"#), &[], &first).unwrap();
    let next = p.next.unwrap();
    assert_eq!(next, PageCursor::Cursor { cursor: "c1".into() });
    assert_eq!(s.url(&base(), &window(), &next).unwrap().query(), Some("after=c1&since=2026-03-18T00%3A00%3A00Z"));
    for end in ["", r#","meta":{"next":null}"#, r#","meta":{"next":""}"#] {
        assert_eq!(read(&s, &body(1, end), &[], &next).unwrap().next, None, "{end}");
    }
    let e = read(&s, &body(2, r#","meta":{"next":"c1"}"#), &[], &next).unwrap_err();
    assert!(e.0.contains("repeats the cursor"), "{}", e.0);
}

#[test]
fn next_urls_from_the_body_or_link_are_followed_only_on_the_origin() {
    let s = source(def(GET, "kind = \"next_url\"\nnext_url = \"/links/next\"", "kind = \"bearer\""), token());
    let first = s.first_page();
    let p = read(&s, &body(2, r#","links":{"next":"/prefix/v1/acme/logs?page=abc"}"#), &[], &first).unwrap();
    let next = p.next.unwrap();
    assert_eq!(next, PageCursor::Url { url: "https://api.test/prefix/v1/acme/logs?page=abc".into() });
    assert_eq!(s.url(&base(), &window(), &next).unwrap().as_str(), "https://api.test/prefix/v1/acme/logs?page=abc");
    let e = read(&s, &body(2, r#","links":{"next":"https://evil.test/x?token=t"}"#), &[], &first).unwrap_err();
    assert!(e.0.contains("evil.test") && e.0.contains("not on the source's origin"), "{}", e.0);

    let s = source(def(GET, "kind = \"link\"", "kind = \"bearer\""), token());
    let link = r#"<https://api.test/prefix/v1/acme/logs?after=9>; rel="next", <https://api.test/self>; rel="self""#;
    let p = read(&s, &body(2, ""), &[link], &first).unwrap();
    assert_eq!(p.next, Some(PageCursor::Url { url: "https://api.test/prefix/v1/acme/logs?after=9".into() }));
    assert_eq!(read(&s, &body(2, ""), &[r#"<https://api.test/self>; rel="self""#], &first).unwrap().next, None);
    let e = read(&s, &body(2, ""), &[r#"<http://api.test/x>; rel="next""#], &first).unwrap_err();
    assert!(e.0.contains("not on the source's origin"), "{}", e.0);
}

#[test]
fn an_empty_page_naming_the_page_just_asked_is_an_error_even_with_stop_on_empty() {
    // Paged for ever otherwise; and ending the window there would skip what the page holds
    // when asked again (a vendor's transient empty page).
    for paging in ["kind = \"link\"", "kind = \"link\"\nstop_on_empty = true"] {
        let s = source(def(GET, paging, "kind = \"bearer\""), token());
        let link = format!("<{}>; rel=\"next\"", s.url(&base(), &window(), &PageCursor::First).unwrap());
        let e = read(&s, &body(0, ""), &[&link], &PageCursor::First).unwrap_err();
        assert!(e.0.contains("paging would never end"), "{paging}: {}", e.0);
    }
}

#[test]
fn a_whole_window_answer_over_the_item_cap_is_oversized_and_a_page_over_it_is_bad() {
    let s = source(def(GET, "kind = \"none\"", "kind = \"bearer\""), token());
    assert_eq!(s.first_page(), PageCursor::Whole);
    let many = body(MAX_ANSWER_ITEMS + 1, "");
    assert!(read(&s, &many, &[], &PageCursor::Whole).unwrap().oversized);
    let sized = "path = \"/logs\"\nquery = { limit = \"{page_size}\" }";
    let s = source(def(sized, "kind = \"link\"", "kind = \"bearer\""), token());
    assert!(read(&s, &body(2 + PAGE_SLACK + 1, ""), &[], &PageCursor::First).is_err());
}

#[test]
fn records_without_id_or_time_are_rejected_not_dropped() {
    let s = source(def(GET, "kind = \"none\"", "kind = \"bearer\""), token());
    let b = br#"{"data":[{"id":"a","at":"2026-03-18T00:30:00Z"},{"at":"2026-03-18T00:30:00Z"},{"id":"c"}]}"#;
    let p = read(&s, b, &[], &PageCursor::Whole).unwrap();
    assert_eq!((p.records.len(), p.rejected.len()), (1, 2));
}

#[test]
fn the_credential_is_sent_as_the_auth_kind_says() {
    let http = reqwest::Client::new();
    let header = |s: &DefinedSource, bearer: Option<&SecretString>, name: &str| {
        let r = s.request(&http, &base(), &window(), &s.first_page(), bearer).unwrap().build().unwrap();
        r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
    };
    let s =
        source(def(GET, "kind = \"none\"", "kind = \"header\"\nheader = \"X-Api-Key\"\nprefix = \"Key \""), token());
    assert_eq!(header(&s, None, "x-api-key").as_deref(), Some("Key s3cret"));
    let s = source(def(GET, "kind = \"none\"", "kind = \"bearer\""), token());
    assert_eq!(header(&s, None, "authorization").as_deref(), Some("Bearer s3cret"));
    let basic = Credential::Basic { username: "u".to_owned().into(), password: "p".to_owned().into() };
    let s = source(def(GET, "kind = \"none\"", "kind = \"basic\""), basic);
    assert_eq!(header(&s, None, "authorization").as_deref(), Some("Basic dTpw"));
    let oauth = Credential::OAuth2 { client_id: "c".into(), client_secret: "x".to_owned().into(), token_url: None };
    let s = source(def(GET, "kind = \"none\"", "kind = \"oauth2\"\ntoken_url = \"/token\""), oauth);
    let access = SecretString::from("at-1");
    assert_eq!(header(&s, Some(&access), "authorization").as_deref(), Some("Bearer at-1"));
    assert!(s.request(&http, &base(), &window(), &PageCursor::Whole, None).is_err(), "no token, no request");
    let s = source(def(GET, "kind = \"none\"", "kind = \"basic\""), token());
    assert!(s.request(&http, &base(), &window(), &PageCursor::Whole, None).is_err(), "a mismatched credential");
}

#[test]
fn a_post_request_carries_its_json_body_and_template_headers() {
    let post = "method = \"POST\"\npath = \"/search\"\nheaders = { X-Org = \"{organization_id}\" }\n\
                body = { limit = \"{page_size}\", range = { from = \"{from}\" } }";
    let s = source(def(post, "kind = \"offset\"", "kind = \"bearer\""), token());
    let http = reqwest::Client::new();
    let r = s.request(&http, &base(), &window(), &s.first_page(), None).unwrap().build().unwrap();
    assert_eq!(r.method(), reqwest::Method::POST);
    assert_eq!(r.headers().get("x-org").unwrap(), "acme");
    let sent: Value = serde_json::from_slice(r.body().unwrap().as_bytes().unwrap()).unwrap();
    assert_eq!(sent, serde_json::json!({"limit": 2, "range": {"from": "2026-03-18T00:00:00Z"}}));
    assert_eq!(s.bare_429_wait(), Some(Duration::from_secs(30)));
}

#[test]
fn the_rate_signals_are_the_definitions() {
    let text = "[vendor]\nname = \"gh\"\nvendor_name = \"V\"\nproduct = \"P\"\n[request]\npath = \"/a\"\n[paging]\nkind = \"link\"\n\
                [auth]\nkind = \"bearer\"\n[answer]\nid = \"/id\"\ntime = \"/at\"\n[rate_limit]\nrequests = 10\nper = \"1m\"\n\
                remaining_header = \"X-RateLimit-Remaining\"\nreset_header = \"X-RateLimit-Reset\"\nreset = \"delta\"\n\
                forbidden_is_rate_limit = true\n[ocsf]\naction = \"/a\"\n";
    let d: &'static Definition =
        Box::leak(Box::new(format::parse(Path::new("gh.toml"), text).unwrap_or_else(|e| panic!("{e}"))));
    let s = source(d, token()).rate_signals();
    assert_eq!(s.remaining_header.as_deref(), Some("x-ratelimit-remaining"));
    assert_eq!(s.reset, Some(crate::vendors::defined::model::ResetKind::Delta));
    assert!(s.forbidden_is_rate_limit);
}

/// Issue 20 point 2 (tests/it/defined_equivalence.rs): an answer of another shape (a proxy's
/// JSON, the simulator's `{"data":[…],"next":null}`) lacks the paging flag the definition
/// names. Read as "no more", it ended the window early and the checkpoint moved past the pages
/// never asked; the built-in Aitronos and ConfigCat refuse such an answer, which is retried.
#[test]
fn an_answer_without_its_paging_flag_is_malformed_not_the_last_page() {
    let q = "path = \"/logs\"\nquery = { skip = \"{offset}\" }";
    let s = source(def(q, "kind = \"offset\"\nhas_more = \"/more\"", "kind = \"bearer\""), token());
    let e = read(&s, &body(2, r#","next":null"#), &[], &PageCursor::Offset { skip: 4 }).unwrap_err();
    assert!(e.0.contains("/more") && e.0.contains("missing"), "{}", e.0);
    let q = "path = \"/logs\"\nquery = { page = \"{page}\" }";
    let s = source(def(q, "kind = \"page\"\nhas_next = \"/paging/hasNext\"", "kind = \"bearer\""), token());
    let e = read(&s, &body(1, r#","next":null"#), &[], &PageCursor::Number { page: 3 }).unwrap_err();
    assert!(e.0.contains("/paging/hasNext") && e.0.contains("missing"), "{}", e.0);
    // `null` stays "no more" (a vendor may write its last page so).
    assert_eq!(
        read(&s, &body(1, r#","paging":{"hasNext":null}"#), &[], &PageCursor::Number { page: 3 }).unwrap().next,
        None
    );
}

#[test]
fn a_stored_next_url_off_the_current_origin_is_asked_as_the_first_page() {
    let s = source(def(GET, "kind = \"link\"", "kind = \"bearer\""), token());
    let first = s.url(&base(), &window(), &PageCursor::First).unwrap();
    // Stored when base_url was another origin: never asked with this source's credential.
    let stored = PageCursor::Url { url: "https://old.test/prefix/v1/acme/logs?page=2".into() };
    let asked = s.url(&base(), &window(), &stored).unwrap();
    assert_eq!(asked, first, "a next URL off the current origin must be asked as the window's first page");
    let request = s.request(&reqwest::Client::new(), &base(), &window(), &stored, None).unwrap().build().unwrap();
    assert_eq!(request.url(), &first);
    let broken = PageCursor::Url { url: "not a url".into() };
    assert_eq!(s.url(&base(), &window(), &broken).unwrap(), first, "a stored next URL that is not one: no stall");
    let on_origin = PageCursor::Url { url: "https://api.test/prefix/logs?page=2".into() };
    assert_eq!(s.url(&base(), &window(), &on_origin).unwrap().as_str(), "https://api.test/prefix/logs?page=2");
}

#[test]
fn an_answer_without_its_records_array_is_a_bad_page_never_an_empty_one() {
    let s = source(def(GET, "kind = \"link\"", "kind = \"bearer\""), token());
    for answer in [&br#"{"ok":false,"error":"internal_error"}"#[..], br#"{"data":null}"#, br#"{"data":{}}"#, b"<html>"]
    {
        let got = read(&s, answer, &[], &PageCursor::First);
        assert!(got.is_err(), "{} read as a page: {got:?}", String::from_utf8_lossy(answer));
    }
    assert!(read(&s, br#"{"data":[]}"#, &[], &PageCursor::First).unwrap().records.is_empty());
}

#[test]
fn an_empty_page_naming_another_is_followed() {
    let link = r#"<https://api.test/prefix/p3>; rel="next""#;
    for paging in ["kind = \"link\"", "kind = \"link\"\nstop_on_empty = true"] {
        let s = source(def(GET, paging, "kind = \"bearer\""), token());
        let p = read(&s, &body(0, ""), &[link], &PageCursor::First).unwrap_or_else(|e| panic!("{paging}: {}", e.0));
        assert_eq!(p.next, Some(PageCursor::Url { url: "https://api.test/prefix/p3".into() }), "{paging}");
    }
    let q = "path = \"/logs\"\nquery = { page = \"{page}\" }";
    let s = source(def(q, "kind = \"page\"\nhas_next = \"/more\"", "kind = \"bearer\""), token());
    let p = read(&s, &body(0, r#","more":true"#), &[], &PageCursor::Number { page: 1 }).unwrap();
    assert_eq!(p.next, Some(PageCursor::Number { page: 2 }));
}

#[test]
fn a_cursor_no_header_can_carry_is_a_bad_page_when_read() {
    let q = "path = \"/logs\"\nheaders = { X-Cursor = \"{cursor}\" }";
    let s = source(def(q, "kind = \"cursor\"\ncursor = \"/next\"", "kind = \"bearer\""), token());
    let e = read(&s, &body(2, r#","next":"a\r\nX-Evil: 1""#), &[], &PageCursor::First);
    assert!(e.is_err(), "a cursor holding CR/LF sent in a header was taken: {e:?}");
    assert!(read(&s, &body(2, r#","next":"abc==""#), &[], &PageCursor::First).is_ok());
    let q = "path = \"/logs\"\nquery = { after = \"{cursor}\" }";
    let s = source(def(q, "kind = \"cursor\"\ncursor = \"/next\"", "kind = \"bearer\""), token());
    let p = read(&s, &body(2, r#","next":"a\r\nb""#), &[], &PageCursor::First).unwrap();
    let url = s.url(&base(), &window(), &p.next.unwrap()).unwrap();
    assert_eq!(url.query(), Some("after=a%0D%0Ab"), "in the query it is percent-encoded");
}

#[test]
fn a_page_over_page_size_is_taken_when_the_request_never_sends_page_size() {
    let s = source(def(GET, "kind = \"link\"", "kind = \"bearer\""), token());
    let p = read(&s, &body(150, ""), &[], &PageCursor::First).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(p.records.len(), 150);
    assert!(read(&s, &body(MAX_ANSWER_ITEMS + 1, ""), &[], &PageCursor::First).is_err(), "still bounded");
}
