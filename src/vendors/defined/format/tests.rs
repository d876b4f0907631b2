//! format.rs: a valid definition read whole, and each refusal with its line and key.

use std::path::Path;

use super::*;

/// docs/vendor-definitions.md's Okta example (its `[ocsf]` cut to what the mapping's fixed API
/// reads; mapping.rs's own tests cover the rest).
const OKTA: &str = r#"[vendor]
name = "okta"
title = "Okta System Log"
vendor_name = "Okta"
product = "Okta System Log"

[window]
max_span = "1d"
overlap = "5m"
poll_interval = "1m"

[request]
method = "GET"
path = "/api/v1/logs"
time_format = "rfc3339"
query = { since = "{from}", until = "{to}", limit = "{page_size}", sortOrder = "ASCENDING" }
headers = { Accept = "application/json" }

[paging]
kind = "link"
rel = "next"
stop_on_empty = true
page_size = 1000
max_page_size = 1000

[auth]
kind = "header"
header = "Authorization"
prefix = "SSWS "

[answer]
format = "json"
records = ""
id = "/uuid"
time = "/published"
time_format = "rfc3339"
order = "oldest_first"

[rate_limit]
requests = 20
per = "1m"
remaining_header = "X-Rate-Limit-Remaining"
reset_header = "X-Rate-Limit-Reset"
reset = "epoch"

[ocsf]
action = "/eventType"
"#;

fn errors(text: &str) -> Vec<Problem> {
    match parse(Path::new("/defs/x.toml"), text) {
        Ok(d) => panic!("accepted: {d:?}"),
        Err(e) => e.problems,
    }
}

/// The single problem of `key`, with its line.
fn problem(text: &str, key: &str) -> (Option<usize>, String) {
    let all = errors(text);
    let mine: Vec<_> = all.iter().filter(|p| p.key == key).collect();
    assert_eq!(mine.len(), 1, "one problem for {key}, got {all:?}");
    (mine[0].line, mine[0].message.clone())
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or_else(|| panic!("{needle} not in text"))
}

#[test]
fn the_documented_example_is_read_whole() {
    let d = parse(Path::new("/defs/okta.toml"), OKTA).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((d.name.as_str(), d.title.as_str(), d.uid_name.as_str()), ("okta", "Okta System Log", "okta"));
    assert_eq!((d.vendor_name.as_str(), d.product.as_str()), ("Okta", "Okta System Log"));
    assert_eq!(d.base_url, None);
    assert_eq!(d.path, Path::new("/defs/okta.toml"));
    assert_eq!(d.digest.len(), 64);
    assert_eq!(d.window.max_span, Duration::from_secs(86_400));
    assert_eq!(d.window.overlap, Duration::from_secs(300));
    assert_eq!(d.window.span_limit, None);
    assert_eq!(d.request.method, Method::Get);
    assert_eq!(d.request.path, Template(vec![Piece::Text("/api/v1/logs".into())]));
    let query: Vec<_> = d.request.query.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(query, ["since", "until", "limit", "sortOrder"], "file order");
    assert_eq!(d.request.query[0].1, Template(vec![Piece::Var(Var::From)]));
    assert_eq!(d.paging.kind, PagingKind::Link { rel: "next".into() });
    assert_eq!((d.paging.page_size, d.paging.max_page_size, d.paging.stop_on_empty), (1000, 1000, true));
    assert!(matches!(&d.auth, AuthDef::Header { header, prefix } if header == "authorization" && prefix == "SSWS "));
    assert_eq!(d.answer.id, RecordId::Pointer("/uuid".into()));
    assert_eq!(
        (d.answer.time.as_str(), d.answer.time_format, d.answer.order),
        ("/published", TimeFormat::Rfc3339, Order::OldestFirst)
    );
    assert_eq!((d.rate_limit.requests, d.rate_limit.per), (20, Duration::from_secs(60)));
    assert_eq!(d.rate_limit.remaining_header.as_deref(), Some("x-rate-limit-remaining"));
    assert_eq!(d.rate_limit.reset, ResetKind::Epoch);
    // The same text gives the same digest; another text another.
    let again = parse(Path::new("/elsewhere.toml"), OKTA).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.digest, d.digest);
    let other = parse(Path::new("/defs/okta.toml"), &OKTA.replace("20", "21")).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(other.digest, d.digest);
}

#[test]
fn every_paging_kind_and_auth_kind_is_read() {
    let offset = OKTA
        .replace("kind = \"link\"\nrel = \"next\"", "kind = \"offset\"\nhas_more = \"/more\"")
        .replace("limit = \"{page_size}\"", "limit = \"{page_size}\", skip = \"{offset}\"");
    let d = parse(Path::new("o.toml"), &offset).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.paging.kind, PagingKind::Offset { has_more: Some("/more".into()), total: None });
    let page =
        OKTA.replace("kind = \"link\"\nrel = \"next\"", "kind = \"page\"\nfirst = 0\ntotal_pages = \"/meta/pages\"");
    let d = parse(Path::new("p.toml"), &page).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.paging.kind, PagingKind::Page { first: 0, has_next: None, total_pages: Some("/meta/pages".into()) });
    let cursor = OKTA
        .replace("kind = \"link\"\nrel = \"next\"", "kind = \"cursor\"\ncursor = \"/next\"")
        .replace("limit = \"{page_size}\"", "limit = \"{page_size}\", after = \"{cursor}\"");
    let d = parse(Path::new("c.toml"), &cursor).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.paging.kind, PagingKind::Cursor { cursor: "/next".into() });
    let next = OKTA.replace("kind = \"link\"\nrel = \"next\"", "kind = \"next_url\"\nnext_url = \"/links/next\"");
    let d = parse(Path::new("n.toml"), &next).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.paging.kind, PagingKind::NextUrl { next_url: "/links/next".into() });
    let none = OKTA
        .replace("kind = \"link\"\nrel = \"next\"", "kind = \"none\"")
        .replace("order = \"oldest_first\"", "max_records = 5000\nmax_bytes = 1000000");
    let d = parse(Path::new("w.toml"), &none).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (d.paging.kind.clone(), d.answer.max_records, d.answer.max_bytes),
        (PagingKind::None, Some(5000), Some(1_000_000))
    );
    assert_eq!(d.answer.order, Order::NewestFirst, "the default");

    let oauth = OKTA.replace(
        "kind = \"header\"\nheader = \"Authorization\"\nprefix = \"SSWS \"",
        "kind = \"oauth2\"\ntoken_url = \"/oauth2/v1/token\"\nscopes = [\"okta.logs.read\"]\nclient_auth = \"body\"",
    );
    let d = parse(Path::new("a.toml"), &oauth).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&d.auth, AuthDef::OAuth2 { token_url, scopes, client_auth: ClientAuth::Body, audience: None, refresh_before }
        if token_url == "/oauth2/v1/token" && scopes == &["okta.logs.read"] && *refresh_before == Duration::from_secs(60))
    );
    for (kind, want) in [("bearer", "Bearer"), ("basic", "Basic")] {
        let text = OKTA.replace(
            "kind = \"header\"\nheader = \"Authorization\"\nprefix = \"SSWS \"",
            &format!("kind = \"{kind}\""),
        );
        let d = parse(Path::new("b.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{:?}", d.auth), want);
    }
}

#[test]
fn a_post_body_is_a_template_with_numbers() {
    let text = OKTA.replace(
        "method = \"GET\"",
        "method = \"POST\"\nbody = { size = \"{page_size}\", q = { since = \"{from}\" }, n = 3 }",
    );
    let d = parse(Path::new("b.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    let Some(BodyTemplate::Object(fields)) = d.request.body else { panic!("no body") };
    assert!(fields.contains(&("size".into(), BodyTemplate::String(Template(vec![Piece::Var(Var::PageSize)])))));
    assert!(fields.contains(&("n".into(), BodyTemplate::Number(3.into()))));
    let get = OKTA.replace("method = \"GET\"", "method = \"GET\"\nbody = { a = 1 }");
    let (line, message) = problem(&get, "request.body");
    assert_eq!(line, Some(line_of(&get, "body =")));
    assert!(message.contains("POST"), "{message}");
}

#[test]
fn templates_refuse_unknown_placeholders_and_take_doubled_braces() {
    assert_eq!(
        parse_template("a{{b}}{from}c").unwrap_or_else(|e| panic!("{e}")),
        Template(vec![Piece::Text("a{b}".into()), Piece::Var(Var::From), Piece::Text("c".into())])
    );
    assert!(parse_template("{since}").unwrap_err().contains("unknown placeholder {since}"));
    assert!(parse_template("{from").is_err());
    assert!(parse_template("x}").is_err());
    let text = OKTA.replace("until = \"{to}\"", "until = \"{until}\"");
    let (line, message) = problem(&text, "request.query.until");
    assert_eq!(line, Some(line_of(&text, "until = ")));
    assert!(message.contains("unknown placeholder {until}"), "{message}");
    // {cursor} without cursor paging would never have a value.
    let text = OKTA.replace("limit = \"{page_size}\"", "limit = \"{page_size}\", after = \"{cursor}\"");
    let (_, message) = problem(&text, "request.query.after");
    assert!(message.contains("paging.kind = \"cursor\""), "{message}");
}

#[test]
fn pointers_are_rfc_6901() {
    assert!(check_pointer("").is_ok());
    assert!(check_pointer("/a~0b/~1c/0").is_ok());
    assert!(check_pointer("a/b").is_err());
    assert!(check_pointer("/a~2").is_err());
    assert!(check_pointer("/a~").is_err());
    let text = OKTA.replace("id = \"/uuid\"", "id = \"uuid\"");
    let (line, message) = problem(&text, "answer.id");
    assert_eq!(line, Some(line_of(&text, "id = \"uuid\"")));
    assert!(message.contains("RFC 6901"), "{message}");
}

#[test]
fn each_refusal_names_its_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (replace, with, key, message part)
        ("name = \"okta\"", "name = \"Okta!\"", "vendor.name", "[a-z0-9]"),
        ("name = \"okta\"", "name = \"aitronos\"", "vendor.name", "built-in"),
        ("max_span = \"1d\"", "max_span = \"one day\"", "window.max_span", "not a duration"),
        ("overlap = \"5m\"", "overlap = \"2d\"", "window.overlap", "shorter than window.max_span"),
        ("page_size = 1000\n", "page_size = 0\n", "paging.page_size", "1..=10000"),
        ("max_page_size = 1000", "max_page_size = 10001", "paging.max_page_size", "1..=10000"),
        ("kind = \"link\"", "kind = \"links\"", "paging.kind", "must be one of"),
        ("rel = \"next\"", "rel = \"next\"\nhas_more = \"/m\"", "paging.has_more", "offset"),
        ("prefix = \"SSWS \"", "prefix = \"SSWS \"\nscopes = [\"a\"]", "auth.scopes", "oauth2"),
        (
            "headers = { Accept",
            "headers = { authorization = \"x\", Accept",
            "request.headers.authorization",
            "credential",
        ),
        ("method = \"GET\"", "method = \"PUT\"", "request.method", "\"GET\", \"POST\""),
        ("time_format = \"rfc3339\"\nquery", "time_format = \"iso\"\nquery", "request.time_format", "must be one of"),
        ("order = \"oldest_first\"", "order = \"oldest_first\"\nmax_records = 10", "answer.max_records", "none"),
        ("requests = 20", "requests = \"20\"", "rate_limit.requests", "expected i64"),
        ("reset = \"epoch\"", "reset = \"epoch\"\nburst = 3", "rate_limit.burst", "unknown field"),
        ("per = \"1m\"", "per = \"0s\"", "rate_limit.per", "longer than 0s"),
        (
            "remaining_header = \"X-Rate-Limit-Remaining\"",
            "remaining_header = \"X Rate\"",
            "rate_limit.remaining_header",
            "header name",
        ),
    ];
    for (from, to, key, part) in cases {
        assert!(OKTA.contains(from), "{from}");
        let text = OKTA.replacen(from, to, 1);
        let (line, message) = problem(&text, key);
        // The changed line: the replacement's last line but a trailing `query` one.
        let last = to.lines().rev().find(|l| !l.starts_with("query")).unwrap_or(to);
        let needle = last.split(['=', '{']).next().unwrap_or(last).trim();
        let want = text.lines().position(|l| l.contains(last) || l.trim_start().starts_with(needle)).map(|i| i + 1);
        assert_eq!(line, want, "{key}: {message}");
        assert!(message.contains(part), "{key}: {message:?} lacks {part:?}");
    }
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = OKTA
        .replace("name = \"okta\"", "name = \"OKTA\"")
        .replace("page_size = 1000\n", "page_size = 0\n")
        .replace("burst", "")
        .replace("reset = \"epoch\"", "reset = \"epoch\"\nburst = 3\nwhen = 4")
        .replace("id = \"/uuid\"", "id = \"uuid\"");
    let keys: Vec<String> = errors(&text).into_iter().map(|p| p.key).collect();
    for key in ["vendor.name", "paging.page_size", "rate_limit.burst", "rate_limit.when", "answer.id"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
    }
}

#[test]
fn missing_sections_and_keys_unknown_sections_and_syntax() {
    let text = OKTA.replace("[rate_limit]", "[rate_limits]");
    let all = errors(&text);
    assert!(all.iter().any(|p| p.key == "rate_limits" && p.line == Some(line_of(&text, "[rate_limits]"))), "{all:?}");
    assert!(all.iter().any(|p| p.key == "rate_limit" && p.message.contains("required")), "{all:?}");
    let text = OKTA.replace("vendor_name = \"Okta\"\n", "");
    let (_, message) = problem(&text, "vendor.vendor_name");
    assert!(message.contains("required"));
    let text = OKTA.replace("[paging]", "[paging");
    let all = errors(&text);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].line, Some(line_of(&text, "[paging")));
    // The mapping's own errors come through with their key.
    let text = OKTA.replace("action = \"/eventType\"", "");
    assert!(errors(&text).iter().any(|p| p.key == "ocsf.action"));
}

#[test]
fn a_file_over_256_kib_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("big.toml");
    let padding = format!("# {}\n", "x".repeat(1000)).repeat(300);
    std::fs::write(&path, format!("{OKTA}{padding}")).unwrap_or_else(|e| panic!("{e}"));
    let e = load(&path).unwrap_err();
    assert!(e.to_string().contains("larger than 256 KiB"), "{e}");
    assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
    std::fs::write(&path, OKTA).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(load(&path).map(|d| d.name).unwrap_or_else(|e| panic!("{e}")), "okta");
}

#[test]
fn errors_display_file_line_and_key() {
    let e = parse(Path::new("/defs/x.toml"), &OKTA.replacen("page_size = 1000\n", "page_size = 0\n", 1)).unwrap_err();
    let line = line_of(OKTA, "page_size = 1000");
    assert_eq!(e.to_string(), format!("/defs/x.toml:{line}: paging.page_size: must be 1..=10000, not 0"));
}

/// README's "Add a vendor" example definition, and the documented Okta example of
/// docs/vendor-definitions.md, are valid definitions, and the README's source of it a valid source.
#[test]
fn the_readme_example_definition_and_its_source_are_valid() {
    let readme = include_str!("../../../../README.md");
    let at = readme.find("### Add a vendor").expect("the section");
    let blocks: Vec<&str> =
        readme[at..].split("```toml\n").skip(1).take(2).map(|b| &b[..b.find("```").expect("closed")]).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("acme.toml");
    std::fs::write(&file, blocks[0]).expect("write");
    let def = super::load(&file).unwrap_or_else(|e| panic!("README's definition: {e}"));
    assert_eq!(def.name, "acme");
    let config = format!(
        "state_dir = \"s\"\nvendors_dir = {:?}\n{}\n[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"o\"\n",
        dir.path().display().to_string(),
        blocks[1].replace("${CREDENTIALS_DIRECTORY}/acme", "acme.secret")
    );
    std::fs::write(dir.path().join("acme.secret"), "s3cret").expect("secret");
    let c = crate::config::Config::parse_with_env(&config, &dir.path().join("a.toml"), &|_| None)
        .unwrap_or_else(|e| panic!("README's source: {e}"));
    assert_eq!(c.sources[0].vendor.vendor_name(), "acme");
}

#[test]
fn a_header_template_no_header_value_can_carry_is_refused_with_its_line() {
    for bad in ["a\\r\\nX-Evil: 1", "a\\u0000b", "a\\nb"] {
        let text = OKTA.replace(
            "headers = { Accept = \"application/json\" }",
            &format!("headers = {{ Accept = \"application/json\", X-Tag = \"{bad}\" }}"),
        );
        let (line, message) = problem(&text, "request.headers.X-Tag");
        assert_eq!(line, Some(line_of(&text, "X-Tag")), "{bad}");
        assert!(message.contains("HTTP header value"), "{message}");
    }
}

#[test]
fn a_credential_url_is_https_or_plain_http_on_loopback_only() {
    let oauth = |url: &str| {
        OKTA.replace(
            "kind = \"header\"\nheader = \"Authorization\"\nprefix = \"SSWS \"",
            &format!("kind = \"oauth2\"\ntoken_url = \"{url}\""),
        )
    };
    let (line, message) = problem(&oauth("http://collector.example.net/token"), "auth.token_url");
    assert_eq!(line, Some(line_of(&oauth("http://collector.example.net/token"), "token_url")));
    assert!(message.contains("https"), "{message}");
    for ok in [
        "https://login.example.net/token",
        "http://127.0.0.1:9/token",
        "http://localhost/token",
        "http://[::1]/t",
        "/oauth/token",
    ] {
        parse(Path::new("/defs/x.toml"), &oauth(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let base = |url: &str| {
        OKTA.replace("product = \"Okta System Log\"", &format!("product = \"Okta System Log\"\nbase_url = \"{url}\""))
    };
    assert!(problem(&base("http://acme.okta.com"), "vendor.base_url").1.contains("https"));
    parse(Path::new("/defs/x.toml"), &base("http://127.0.0.1:8080")).unwrap_or_else(|e| panic!("{e}"));
}
