//! runtime.rs: templates, time formats, the Link parser, the origin rule, answers and ids.

use chrono::TimeZone as _;
use serde_json::json;

use super::*;
use crate::vendors::defined::format::parse_template;
use crate::vendors::defined::model::Order;

fn t(s: &str) -> Template {
    parse_template(s).unwrap_or_else(|e| panic!("{e}"))
}

fn window() -> Window {
    Window {
        from: Utc.with_ymd_and_hms(2026, 3, 18, 8, 15, 42).unwrap(),
        to: Utc.with_ymd_and_hms(2026, 3, 19, 9, 0, 0).unwrap(),
    }
}

fn answer(format: AnswerFormat, id: RecordId, time_format: TimeFormat) -> AnswerDef {
    AnswerDef {
        format,
        gzip: true,
        records: "/data".into(),
        id,
        time: "/at".into(),
        time_format,
        order: Order::NewestFirst,
        max_records: None,
        max_bytes: None,
    }
}

#[test]
fn the_window_in_every_time_format() {
    let w = window();
    let cases = [
        (TimeFormat::Rfc3339, "2026-03-18T08:15:42Z", "2026-03-19T09:00:00Z"),
        (TimeFormat::Rfc3339Ms, "2026-03-18T08:15:42.000Z", "2026-03-19T09:00:00.000Z"),
        (TimeFormat::EpochS, "1773821742", "1773910800"),
        (TimeFormat::EpochMs, "1773821742000", "1773910800000"),
        // Widened to whole days.
        (TimeFormat::Date, "2026-03-18", "2026-03-20"),
    ];
    for (format, from, to) in cases {
        let v = Values::new(&w, format, "acme", 50);
        assert_eq!((v.from.as_str(), v.to.as_str()), (from, to), "{format:?}");
    }
    // A window ending at midnight needs no extra day.
    let midnight = Window { from: w.from, to: Utc.with_ymd_and_hms(2026, 3, 19, 0, 0, 0).unwrap() };
    assert_eq!(Values::new(&midnight, TimeFormat::Date, "a", 1).to, "2026-03-19");
}

#[test]
fn a_record_time_in_every_format() {
    let at = Utc.with_ymd_and_hms(2026, 3, 18, 8, 15, 42).unwrap();
    assert_eq!(parse_time(&json!("2026-03-18T09:15:42+01:00"), TimeFormat::Rfc3339), Some(at));
    assert_eq!(parse_time(&json!("2026-03-18T08:15:42.000Z"), TimeFormat::Rfc3339), Some(at));
    assert_eq!(parse_time(&json!("2026-03-18T08:15:42"), TimeFormat::Rfc3339), Some(at), "naive is UTC");
    assert_eq!(parse_time(&json!(1773821742), TimeFormat::EpochS), Some(at));
    assert_eq!(parse_time(&json!("1773821742"), TimeFormat::EpochS), Some(at));
    assert_eq!(parse_time(&json!(1773821742000i64), TimeFormat::EpochMs), Some(at));
    assert_eq!(parse_time(&json!("2026-03-18"), TimeFormat::Date), Utc.with_ymd_and_hms(2026, 3, 18, 0, 0, 0).single());
    assert_eq!(parse_time(&json!("yesterday"), TimeFormat::Rfc3339), None);
    assert_eq!(parse_time(&json!(true), TimeFormat::EpochS), None);
    assert_eq!(parse_time(&json!(i64::MAX), TimeFormat::EpochS), None, "out of range is no time, no panic");
}

#[test]
fn a_template_without_a_value_on_this_page_is_left_out() {
    let mut v = Values::new(&window(), TimeFormat::Rfc3339, "acme corp", 50);
    assert_eq!(
        render(&t("since={from}&n={page_size}{{x}}"), &v).as_deref(),
        Some("since=2026-03-18T08:15:42Z&n=50{x}")
    );
    assert_eq!(render(&t("{cursor}"), &v), None);
    v.cursor = Some("abc");
    assert_eq!(render(&t("{cursor}"), &v).as_deref(), Some("abc"));
    assert_eq!(render_path(&t("/orgs/{organization_id}/logs"), &v).as_deref(), Some("/orgs/acme%20corp/logs"));
    v.organization_id = "a/../b?c";
    assert_eq!(render_path(&t("/orgs/{organization_id}"), &v).as_deref(), Some("/orgs/a%2F..%2Fb%3Fc"));
}

#[test]
fn a_body_template_turns_numeric_placeholders_into_numbers() {
    let body = BodyTemplate::Object(vec![
        ("size".into(), BodyTemplate::String(t("{page_size}"))),
        ("from".into(), BodyTemplate::String(t("{from}"))),
        ("after".into(), BodyTemplate::String(t("{cursor}"))),
        ("label".into(), BodyTemplate::String(t("n={page_size}"))),
        ("on".into(), BodyTemplate::Bool(true)),
    ]);
    let v = Values::new(&window(), TimeFormat::EpochS, "acme", 25);
    let got = render_body(&body, &v);
    assert_eq!(got, Some(json!({"size": 25, "from": "1773821742", "label": "n=25", "on": true})));
}

#[test]
fn the_link_header_is_read_as_rfc_8288_says() {
    let links = parse_links(&[
        r#"<https://x.test/a?b=1,2>; rel="prev first", <https://x.test/next?after=q%2C>; title="a; b, c"; rel="next""#,
        r#"<https://x.test/last>; REL=last; rel=ignored"#,
    ]);
    let targets: Vec<(&str, Vec<&str>)> =
        links.iter().map(|l| (l.target.as_str(), l.rels.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        targets,
        [
            ("https://x.test/a?b=1,2", vec!["prev", "first"]),
            ("https://x.test/next?after=q%2C", vec!["next"]),
            ("https://x.test/last", vec!["last"]),
        ]
    );
    let asked = url::Url::parse("https://x.test/api/v1/logs?since=1").unwrap();
    let next = next_link(&[r#"<https://x.test/self>; rel="self", </api/v1/logs?after=9>; rel="next""#], "next", &asked);
    assert_eq!(next.map(|r| r.map(|u| u.to_string())), Some(Ok("https://x.test/api/v1/logs?after=9".into())));
    assert!(next_link(&[r#"<https://x.test/self>; rel="self""#], "next", &asked).is_none());
    // Garbage is skipped, never a panic.
    assert!(
        parse_links(&["nonsense, <unclosed; rel=next", "; rel=next", "<>", ""]).iter().all(|l| l.target.is_empty())
    );
    let after_garbage = parse_links(&[r#"junk; rel="x,y", <https://x.test/n>; rel=next"#]);
    assert_eq!(after_garbage.len(), 1);
    assert_eq!(after_garbage[0].target, "https://x.test/n");
}

#[test]
fn a_next_url_is_followed_only_on_the_sources_origin() {
    let base = url::Url::parse("https://acme.okta.com/").unwrap();
    for same in ["https://acme.okta.com/api?x=1", "https://acme.okta.com:443/other"] {
        assert!(same_origin(&base, &url::Url::parse(same).unwrap()).is_ok(), "{same}");
    }
    for other in ["http://acme.okta.com/api", "https://evil.test/api", "https://acme.okta.com:8443/api"] {
        let e = same_origin(&base, &url::Url::parse(other).unwrap()).unwrap_err();
        assert!(e.contains("not on the source's origin"), "{e}");
    }
    let e = same_origin(&base, &url::Url::parse("https://u:secret@evil.test/?token=abc").unwrap()).unwrap_err();
    assert!(!e.contains("secret"), "{e}");
}

#[test]
fn json_records_at_a_pointer_and_ndjson_lines_gzip_or_not() {
    let def = answer(AnswerFormat::Json, RecordId::Pointer("/id".into()), TimeFormat::Rfc3339);
    let body = br#"{"data":[{"id":"a","at":"2026-03-18T08:15:42Z"},{"id":7,"at":"2026-03-18T08:15:43Z"}],"more":true}"#;
    let got = read_answer(body, &def, 10).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(got.items.len(), 2);
    assert_eq!(pointer(got.document, "/more").unwrap(), Some(json!(true)));
    let capped = read_answer(body, &def, 1).unwrap_or_else(|e| panic!("{}", e.0));
    assert!(capped.overflow && capped.items.len() == 1, "over the item cap");
    assert!(read_answer(br#"{"data":{}}"#, &def, 10).is_err());
    assert!(read_answer(br#"{"other":1}"#, &def, 10).is_err(), "no records member: not an empty page");

    let nd = answer(AnswerFormat::Ndjson, RecordId::Hash, TimeFormat::EpochMs);
    let lines = b"{\"at\":1773821742000}\n\n{\"at\":1773821743000}\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, lines).unwrap();
    let zipped = gz.finish().unwrap();
    let decoded = decode_body(&zipped, true, 1 << 20).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(&decoded[..], lines);
    assert!(decode_body(&zipped, true, 10).is_err(), "the decoded size is capped");
    assert_eq!(&decode_body(lines, true, 10).unwrap_or_else(|e| panic!("{}", e.0))[..], lines, "not gzip: as is");
    let got = read_answer(&decoded, &nd, 10).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(got.items.len(), 2, "the blank line is skipped");
    assert!(read_answer(b"{\"a\":1}\nnot json\n", &nd, 10).unwrap_err().0.contains("line 2"));
}

#[test]
fn ids_by_pointer_or_hash_and_records_without_id_or_time_are_rejected() {
    let def = answer(AnswerFormat::Json, RecordId::Pointer("/meta/id".into()), TimeFormat::Rfc3339);
    let raw = |s: &str| RawValue::from_string(s.to_owned()).unwrap();
    let r = read_record(raw(r#"{"meta":{"id":42},"at":"2026-03-18T08:15:42Z"}"#), &def).unwrap();
    assert_eq!(r.key, "42");
    let e = read_record(raw(r#"{"meta":{},"at":"2026-03-18T08:15:42Z"}"#), &def).unwrap_err();
    assert!(e.reason.contains("no usable id"), "{}", e.reason);
    let e = read_record(raw(r#"{"meta":{"id":"x"},"at":"soon"}"#), &def).unwrap_err();
    assert!(e.reason.contains("no usable time") && e.key == "x", "{e:?}");
    assert!(read_record(raw("[1]"), &def).is_err());

    let hashed = answer(AnswerFormat::Json, RecordId::Hash, TimeFormat::Rfc3339);
    let a = read_record(raw(r#"{"b":{"y":1,"x":[2]},"at":"2026-03-18T08:15:42Z"}"#), &hashed).unwrap();
    let b = read_record(raw(r#"{ "at":"2026-03-18T08:15:42Z", "b":{"x":[2],"y":1}}"#), &hashed).unwrap();
    assert_eq!(a.key, b.key, "field order does not change the hash");
    assert!(a.key.starts_with("sha256:") && a.key.len() == 7 + 64);
    let c = read_record(raw(r#"{"b":{"y":2,"x":[2]},"at":"2026-03-18T08:15:42Z"}"#), &hashed).unwrap();
    assert_ne!(a.key, c.key);
}

proptest::proptest! {
    /// Whatever a vendor puts in its `Link` headers, reading them never panics, and every
    /// target read is text of the header with no `>` in it.
    #[test]
    fn the_link_parser_never_panics(values in proptest::collection::vec(".{0,80}", 0..4)) {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        for link in parse_links(&refs) {
            let target = link.target.as_str();
            proptest::prop_assert!(!target.contains('>'), "{:?}", target);
            proptest::prop_assert!(values.iter().any(|v| v.contains(target)), "{:?}", target);
        }
    }

    /// Any template text is parsed or refused, never a panic; a parsed one renders back to
    /// its text with the braces undoubled when it has no placeholder.
    #[test]
    fn the_template_parser_never_panics(text in ".{0,60}") {
        if let Ok(t) = parse_template(&text)
            && t.0.iter().all(|p| matches!(p, Piece::Text(_)))
        {
            let v = Values::default();
            proptest::prop_assert_eq!(render(&t, &v), Some(text.replace("{{", "{").replace("}}", "}")));
        }
    }
}

#[test]
fn records_are_read_lazily_as_the_vendor_wrote_them() {
    let def = answer(AnswerFormat::Json, RecordId::Pointer("/id".into()), TimeFormat::Rfc3339);
    // Only the records member and the paging leaves are read; items are kept byte for byte.
    let body = br#"{"skip":{"x":[1,2,{"y":3}]},"data" : [ {"id" : "a", "n": 1.0e2} , {"id":"b"} ],"next":{"c":"z~/"}}"#;
    let got = read_answer(body, &def, 10).unwrap_or_else(|e| panic!("{}", e.0));
    let raw: Vec<&str> = got.items.iter().map(|i| i.get()).collect();
    assert_eq!(raw, [r#"{"id" : "a", "n": 1.0e2}"#, r#"{"id":"b"}"#]);
    assert_eq!(pointer(got.document, "/next/c").unwrap(), Some(json!("z~/")));
    assert_eq!(pointer(got.document, "/skip/x/2/y").unwrap(), Some(json!(3)));
    assert_eq!(pointer(got.document, "/skip/x/01").unwrap(), None, "RFC 6901: no leading zero");
    assert_eq!(pointer(got.document, "/skip").unwrap(), Some(json!({})), "a container leaf: its kind only");
    assert_eq!(pointer(got.document, "/absent/x").unwrap(), None);
    let escaped = br#"{"a/b":{"m~n":[[]]},"data":[]}"#;
    let got = read_answer(escaped, &def, 10).unwrap_or_else(|e| panic!("{}", e.0));
    assert_eq!(pointer(got.document, "/a~1b/m~0n/0").unwrap(), Some(json!([])));
    let nested = answer(AnswerFormat::Json, RecordId::Hash, TimeFormat::Rfc3339);
    let nested = AnswerDef { records: "/r/0/items".into(), ..nested };
    let got = read_answer(br#"{"r":[{"items":[{"a":1},{"a":2},{"a":3}]}]}"#, &nested, 2)
        .unwrap_or_else(|e| panic!("{}", e.0));
    assert!(got.overflow && got.items.len() == 2);
    assert!(read_answer(b"[1,2", &nested, 2).is_err(), "not JSON");
}
