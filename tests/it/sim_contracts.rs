//! The contract simulators (`okta_sim`, `github_sim`, `oauth_sim`) follow the contracts their
//! module docs cite: each test asks a simulator over its real loopback socket with reqwest, as
//! a client following the vendor's documentation would, and checks the answer against the
//! documentation (paging covers every record once, `Link` headers, polling, auth, rate limits,
//! every fault knob). No timing is asserted: the simulators' time is moved, never waited for.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::contract_sim::{Fault, Faults};
use crate::github_sim::{GithubAuth, GithubOptions, GithubSim};
use crate::oauth_sim::{OAuthOptions, OAuthSim, basic_header, form_escape};
use crate::okta_sim::{OktaOptions, OktaSim, PATH};

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn get(url: &str, authorization: &str) -> (u16, HeaderMap, String) {
    let response = client().get(url).header("authorization", authorization).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Every `Link` value of an answer as (rel, url), RFC 8288 `<url>; rel="x"`, over one header or many.
fn links(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all("link")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(", <").map(str::to_owned).collect::<Vec<_>>())
        .map(|part| {
            let (url, rel) = part.trim_start_matches('<').split_once(">; rel=\"").expect("a Link value");
            (rel.trim_end_matches('"').to_owned(), url.to_owned())
        })
        .collect()
}

fn rel(headers: &HeaderMap, rel: &str) -> Option<String> {
    links(headers).into_iter().find(|(r, _)| r == rel).map(|(_, u)| u)
}

fn ids(body: &str, field: &str) -> Vec<String> {
    let records: Vec<Value> = serde_json::from_str(body).unwrap();
    records.iter().map(|r| r[field].as_str().unwrap().to_owned()).collect()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
}

/// Follows `next` links from `url` to the end; the ids of every page, in order.
async fn follow(url: String, authorization: &str, field: &str) -> (Vec<String>, usize) {
    let (mut all, mut pages, mut url) = (Vec::new(), 0, Some(url));
    while let Some(at) = url {
        let (status, headers, body) = get(&at, authorization).await;
        assert_eq!(status, 200, "{at}: {body}");
        all.extend(ids(&body, field));
        pages += 1;
        assert!(pages < 1000, "paging never ends");
        url = rel(&headers, "next");
    }
    (all, pages)
}

fn okta_auth(sim: &OktaSim) -> String {
    format!("SSWS {}", sim.token())
}

fn okta_window(sim: &OktaSim, since: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> String {
    format!("{}{PATH}?since={}&until={}&limit={limit}", sim.origin(), rfc3339(since), rfc3339(until))
}

#[tokio::test]
async fn okta_bounded_paging_covers_every_record_once_oldest_first() {
    let sim = OktaSim::start(OktaOptions::default()).await;
    let (start, end) = (sim.events()[0].published, sim.events().last().unwrap().published);
    let since = DateTime::from_timestamp_millis(start).unwrap() - chrono::Duration::seconds(1);
    let until = DateTime::from_timestamp_millis(end).unwrap() + chrono::Duration::seconds(1);
    let (got, pages) = follow(okta_window(&sim, since, until, 37), &okta_auth(&sim), "uuid").await;
    let expected = sim.uuids_between(since, until);
    assert_eq!(expected.len(), 300);
    assert_eq!(got, expected, "every event once, in (published, uuid) order");
    assert_eq!(pages, 300usize.div_ceil(37), "the last page has no next link");
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    let ties = sim.events().windows(2).filter(|w| w[0].published == w[1].published).count();
    assert!(ties >= 50, "the store has ties of `published` ({ties})");
    // `until` is exclusive: a window ending at an event's `published` leaves it out.
    let at = DateTime::from_timestamp_millis(sim.events()[10].published).unwrap();
    let until = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    let url = format!("{}{PATH}?since={}&until={until}&limit=1000", sim.origin(), rfc3339(since));
    let (_, _, body) = get(&url, &okta_auth(&sim)).await;
    let before: Vec<String> =
        sim.events().iter().take_while(|e| e.published < at.timestamp_millis()).map(|e| e.uuid.clone()).collect();
    assert_eq!(ids(&body, "uuid"), before, "`until` is exclusive (to the millisecond)");
}

#[tokio::test]
async fn okta_link_headers_are_self_and_next_on_the_same_origin() {
    let sim = OktaSim::start(OktaOptions::default()).await;
    let start = sim.now() - chrono::Duration::hours(7);
    let url = okta_window(&sim, start, start + chrono::Duration::hours(1), 10);
    let (status, headers, _) = get(&url, &okta_auth(&sim)).await;
    assert_eq!(status, 200);
    let raw: Vec<&str> = headers.get_all("link").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(raw.len(), 2, "one Link header for self, one for next: {raw:?}");
    assert_eq!(raw[0], format!("<{url}>; rel=\"self\""));
    let next = rel(&headers, "next").unwrap();
    let next = url::Url::parse(&next).unwrap();
    assert_eq!(next.origin().ascii_serialization(), sim.origin());
    assert_eq!(next.path(), PATH);
    let pairs: Vec<(String, String)> = next.query_pairs().into_owned().collect();
    for key in ["since", "until", "limit", "after"] {
        assert!(pairs.iter().any(|(k, _)| k == key), "{key} in {next}");
    }
}

#[tokio::test]
async fn okta_polling_without_until_always_has_a_next_link_and_brings_late_events() {
    let opts = OktaOptions { late_permille: 300, ..OktaOptions::default() };
    let start = opts.start;
    let sim = OktaSim::start(OktaOptions { now: Some(start + chrono::Duration::hours(3)), ..opts }).await;
    let auth = okta_auth(&sim);
    // A bounded request now misses the events not yet persisted.
    let first_half = sim.uuids_between(start, start + chrono::Duration::hours(3));
    let (_, _, body) = get(&okta_window(&sim, start, start + chrono::Duration::hours(3), 1000), &auth).await;
    let bounded = ids(&body, "uuid");
    assert!(bounded.len() < first_half.len(), "late events are not served before they arrive");

    let mut url = format!("{}{PATH}?since={}&limit=1000", sim.origin(), rfc3339(start));
    let mut seen = Vec::new();
    let mut empty_pages = 0;
    while empty_pages < 2 {
        let (status, headers, body) = get(&url, &auth).await;
        assert_eq!(status, 200, "{body}");
        let page = ids(&body, "uuid");
        empty_pages += usize::from(page.is_empty());
        seen.extend(page);
        url = rel(&headers, "next").expect("a polling request always has a next link, even when empty");
    }
    sim.advance(Duration::from_secs(4 * 3600));
    loop {
        let (_, headers, body) = get(&url, &auth).await;
        let page = ids(&body, "uuid");
        if page.is_empty() {
            break;
        }
        seen.extend(page);
        url = rel(&headers, "next").unwrap();
    }
    let all: HashSet<&String> = sim.events().iter().map(|e| &e.uuid).collect();
    assert_eq!(seen.len(), all.len(), "every event once, late ones included");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), all);
}

#[tokio::test]
async fn okta_refuses_bad_tokens_and_bad_parameters_in_its_error_shape() {
    let sim = OktaSim::start(OktaOptions::default()).await;
    let url = format!("{}{PATH}?limit=5", sim.origin());
    for auth in ["", "SSWS wrong", &format!("Bearer {}", sim.token())] {
        let (status, headers, body) = get(&url, auth).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, body["errorCode"].as_str()), (401, Some("E0000011")), "{auth}");
        assert_eq!(body["errorSummary"], "Invalid token provided");
        assert!(headers.contains_key("x-rate-limit-remaining"));
    }
    let old = rfc3339(sim.now() - chrono::Duration::days(91));
    for query in [
        "limit=1001",
        "limit=0",
        "since=yesterday",
        &format!("since={old}"),
        "after=notours",
        "sortOrder=DESCENDING",
        "filter=actor.id%20sw%20%2200u%22",
    ] {
        let (status, _, body) = get(&format!("{}{PATH}?{query}", sim.origin()), &okta_auth(&sim)).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, body["errorCode"].as_str()), (400, Some("E0000001")), "{query}: {body}");
    }
    let (status, _, body) = get(&format!("{}{PATH}?limit=1000", sim.origin()), &okta_auth(&sim)).await;
    assert_eq!((status, ids(&body, "uuid").len()), (200, 300));
    let filter = "filter=eventType%20eq%20%22user.session.start%22";
    let (_, _, body) = get(&format!("{}{PATH}?limit=1000&{filter}", sim.origin()), &okta_auth(&sim)).await;
    let records: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(!records.is_empty() && records.iter().all(|r| r["eventType"] == "user.session.start"));
    let (_, _, body) = get(
        &format!("{}{PATH}?limit=1000&until={}&sortOrder=DESCENDING", sim.origin(), rfc3339(sim.now())),
        &okta_auth(&sim),
    )
    .await;
    let mut descending = ids(&body, "uuid");
    descending.reverse();
    assert_eq!(descending, sim.events().iter().map(|e| e.uuid.clone()).collect::<Vec<_>>());
}

#[tokio::test]
async fn okta_rate_limit_headers_count_down_then_429_until_the_reset() {
    let sim = OktaSim::start(OktaOptions { rate_limit: 3, ..OktaOptions::default() }).await;
    let url = format!("{}{PATH}?limit=1", sim.origin());
    let reset = (sim.now().timestamp() / 60 + 1) * 60;
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = get(&url, &okta_auth(&sim)).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-rate-limit-limit"), "3");
        assert_eq!(header(&headers, "x-rate-limit-remaining"), remaining);
        assert_eq!(header(&headers, "x-rate-limit-reset"), reset.to_string(), "epoch seconds of the window's end");
    }
    let (status, headers, body) = get(&url, &okta_auth(&sim)).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, body["errorCode"].as_str()), (429, Some("E0000047")));
    assert_eq!(header(&headers, "x-rate-limit-remaining"), "0");
    assert_eq!(header(&headers, "x-rate-limit-reset"), reset.to_string());
    sim.advance(Duration::from_secs(60));
    let (status, headers, _) = get(&url, &okta_auth(&sim)).await;
    assert_eq!((status, header(&headers, "x-rate-limit-remaining")), (200, "2"));
}

/// Asks the first page, then one request per fault knob (queued just before it), and checks
/// each answer is that fault as documented in `contract_sim::Fault`. `limited` is the status
/// of the vendor's rate-limit answer.
async fn check_fault_knobs(first: &str, auth: &str, field: &str, limited: u16, push: impl Fn(Fault)) {
    let (status, headers, body) = get(first, auth).await;
    assert_eq!(status, 200);
    let page = ids(&body, field);
    let next = rel(&headers, "next").unwrap();
    let expect_status = |fault: Fault, status: u16| {
        push(fault.clone());
        async move {
            let (got, _, body) = get(first, auth).await;
            assert_eq!(got, status, "{fault:?}: {body}");
            body
        }
    };
    expect_status(Fault::RateLimited, limited).await;
    expect_status(Fault::ServerError, 500).await;
    let html = expect_status(Fault::Unavailable, 503).await;
    assert!(html.starts_with("<html>"));
    let cut = expect_status(Fault::Truncated, 200).await;
    assert!(serde_json::from_str::<Value>(&cut).is_err() && cut.starts_with('['), "truncated JSON: {cut:.40}");
    let junk = expect_status(Fault::Malformed, 200).await;
    assert!(serde_json::from_str::<Value>(&junk).is_err());
    push(Fault::EmptyWithNext);
    let (status, headers, body) = get(&next, auth).await;
    assert_eq!((status, ids(&body, field).len()), (200, 0), "an empty page");
    assert!(rel(&headers, "next").is_some(), "… with a next link");
    push(Fault::Slow(Duration::from_millis(20)));
    let (status, _, body) = get(&next, auth).await;
    assert_eq!(status, 200);
    let second = ids(&body, field);
    assert!(!second.is_empty());
    push(Fault::ForeignNext);
    let (_, headers, _) = get(first, auth).await;
    assert!(rel(&headers, "next").unwrap().starts_with(crate::contract_sim::FOREIGN_ORIGIN));
    push(Fault::Duplicate);
    let (_, _, body) = get(&next, auth).await;
    let repeated = ids(&body, field);
    assert_eq!(repeated[0], *page.last().unwrap(), "the previous page's last record again");
    assert_eq!(repeated[1..], second[..repeated.len() - 1]);
}

#[tokio::test]
async fn okta_every_fault_knob_answers_as_documented() {
    let sim = OktaSim::start(OktaOptions::default()).await;
    let start = sim.now() - chrono::Duration::hours(7);
    let first = okta_window(&sim, start, sim.now(), 20);
    check_fault_knobs(&first, &okta_auth(&sim), "uuid", 429, |f| sim.push_fault(f)).await;
    let faults: Vec<_> = sim.served().into_iter().filter_map(|s| s.fault).collect();
    assert_eq!(faults.len(), 9, "every answer logged with its fault: {faults:?}");
}

#[tokio::test]
async fn seeded_faults_fail_the_same_requests_for_the_same_seed() {
    let faults = |seed| Faults {
        seed,
        rate_limited: 150,
        server_error: 150,
        truncated: 150,
        duplicate: 150,
        ..Faults::default()
    };
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let sim = OktaSim::start(OktaOptions { faults: faults(seed), ..OktaOptions::default() }).await;
        for _ in 0..40 {
            get(&format!("{}{PATH}?limit=1", sim.origin()), &okta_auth(&sim)).await;
        }
        runs.push(sim.served().into_iter().map(|s| (s.status, s.fault)).collect::<Vec<_>>());
    }
    assert_eq!(runs[0], runs[1]);
    assert_ne!(runs[0], runs[2]);
    assert!(runs[0].iter().filter(|(_, f)| f.is_some()).count() >= 10, "{:?}", runs[0]);
}

fn github_token(opts: &GithubOptions) -> String {
    match &opts.auth {
        GithubAuth::Tokens(tokens) => tokens[0].clone(),
        GithubAuth::OAuth(_) => unreachable!(),
    }
}

#[tokio::test]
async fn github_link_paging_ascending_covers_every_record_once() {
    let opts = GithubOptions::default();
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let (from, to) = (sim.now() - chrono::Duration::hours(8), sim.now());
    let first = format!(
        "{}{}?phrase=created:{}..{}&include=all&order=asc&per_page=500",
        sim.origin(),
        sim.path(),
        rfc3339(from),
        rfc3339(to)
    );
    let (got, pages) = follow(first, &auth, "_document_id").await;
    let expected: Vec<String> = sim.events().iter().map(|e| e.document_id.clone()).collect();
    assert_eq!(got, expected, "every record once, oldest first, ties by _document_id");
    assert_eq!(pages, 3, "per_page is capped at 100");
    assert!(sim.events().iter().any(|e| e.git) && sim.events().iter().any(|e| !e.git));
    let (_, _, body) = get(&format!("{}{}?per_page=100", sim.origin(), sim.path()), &auth).await;
    let records: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert!(records.iter().all(|r| !r["action"].as_str().unwrap().starts_with("git.")), "web events by default");
    let stamps: Vec<i64> = records.iter().map(|r| r["@timestamp"].as_i64().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "newest first by default");
}

#[tokio::test]
async fn github_prev_first_and_before_cursors_lead_back() {
    let opts = GithubOptions::default();
    let auth = format!("token {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let first = format!("{}{}?per_page=10&order=asc", sim.origin(), sim.path());
    let (status, headers, body) = get(&first, &auth).await;
    assert_eq!(status, 200, "`token <t>` is accepted");
    assert_eq!(links(&headers).iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["next"]);
    let (_, headers, _) = get(&rel(&headers, "next").unwrap(), &auth).await;
    assert_eq!(links(&headers).iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["next", "prev", "first"]);
    let prev = rel(&headers, "prev").unwrap();
    assert!(prev.contains("before="), "{prev}");
    let (_, _, again) = get(&prev, &auth).await;
    assert_eq!(ids(&again, "_document_id"), ids(&body, "_document_id"));
    let (_, _, from_first) = get(&rel(&headers, "first").unwrap(), &auth).await;
    assert_eq!(ids(&from_first, "_document_id"), ids(&body, "_document_id"));
}

#[tokio::test]
async fn github_phrase_created_ranges_dates_and_times() {
    let opts = GithubOptions::default();
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let count = |phrase: &str| {
        let url = format!("{}{}?include=all&per_page=100&phrase={}", sim.origin(), sim.path(), form_escape(phrase));
        let auth = auth.clone();
        async move { follow(url, &auth, "_document_id").await.0.len() }
    };
    let total = sim.events().len();
    assert_eq!(count("created:2026-03-18").await, total);
    assert_eq!(count("created:2026-03-17..2026-03-18").await, total, "a date range includes its last day");
    assert_eq!(count("created:2026-03-19..*").await, 0);
    let middle = DateTime::from_timestamp_millis(sim.events()[100].at).unwrap();
    let at = middle.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let (below, at_or_above) = (count(&format!("created:<{at}")).await, count(&format!("created:>={at}")).await);
    assert_eq!(below + at_or_above, total);
    assert_eq!(below, sim.events().iter().filter(|e| e.at < middle.timestamp_millis()).count());
    let action = sim.events()[0].json["action"].as_str().unwrap().to_owned();
    let expected = sim.events().iter().filter(|e| e.json["action"] == action.as_str()).count();
    assert_eq!(count(&format!("action:{action} created:>=2026-03-01")).await, expected);
    let (status, _, body) = get(&format!("{}{}?phrase=colour:blue", sim.origin(), sim.path()), &auth).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn github_bad_credentials_and_primary_limit_spent() {
    let opts = GithubOptions { primary_limit: 2, ..GithubOptions::default() };
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let url = format!("{}{}?per_page=1", sim.origin(), sim.path());
    let (status, _, body) = get(&url, "Bearer ghp_wrong").await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, body["message"].as_str()), (401, Some("Bad credentials")));
    let reset = ((sim.now().timestamp() / 3600) + 1) * 3600;
    for (used, remaining) in [("1", "1"), ("2", "0")] {
        let (status, headers, _) = get(&url, &auth).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-ratelimit-used"), used);
        assert_eq!(header(&headers, "x-ratelimit-remaining"), remaining);
        assert_eq!(header(&headers, "x-ratelimit-reset"), reset.to_string());
        assert_eq!(header(&headers, "x-ratelimit-resource"), "core");
    }
    let (status, headers, body) = get(&url, &auth).await;
    assert_eq!((status, header(&headers, "x-ratelimit-remaining")), (403, "0"), "{body}");
    assert!(body.contains("API rate limit exceeded"));
    assert!(!headers.contains_key("retry-after"), "a primary limit says its reset, not retry-after");
    sim.advance(Duration::from_secs(3600));
    assert_eq!(get(&url, &auth).await.0, 200);
}

#[tokio::test]
async fn github_secondary_limits_answer_with_retry_after() {
    let opts = GithubOptions { audit_log_limit: 1, spent_status: 429, ..GithubOptions::default() };
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let url = format!("{}{}?per_page=1", sim.origin(), sim.path());
    assert_eq!(get(&url, &auth).await.0, 200);
    let (status, headers, body) = get(&url, &auth).await;
    assert_eq!(status, 429, "spent_status chooses 429");
    assert!(body.contains("secondary rate limit"));
    let left = ((sim.now().timestamp() / 3600) + 1) * 3600 - sim.now().timestamp();
    assert_eq!(header(&headers, "retry-after"), left.to_string(), "the audit log's hour ends");

    let opts = GithubOptions::default();
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    sim.push_fault(Fault::RateLimited);
    let (status, headers, body) = get(&format!("{}{}", sim.origin(), sim.path()), &auth).await;
    assert_eq!((status, header(&headers, "retry-after")), (403, "60"), "{body}");
    assert_ne!(header(&headers, "x-ratelimit-remaining"), "0", "a secondary limit with primary budget left");
}

#[tokio::test]
async fn github_every_fault_knob_answers_as_documented() {
    let opts = GithubOptions::default();
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(opts).await;
    let first = format!("{}{}?order=asc&per_page=20", sim.origin(), sim.path());
    check_fault_knobs(&first, &auth, "_document_id", 403, |f| sim.push_fault(f)).await;
}

async fn token_request(sim: &OAuthSim, basic: Option<&str>, form: &str) -> (u16, HeaderMap, Value) {
    let mut request = client()
        .post(sim.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(basic) = basic {
        request = request.header("authorization", basic);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, serde_json::from_str(&response.text().await.unwrap()).unwrap())
}

#[tokio::test]
async fn oauth_client_credentials_by_basic_and_by_body() {
    let opts = OAuthOptions::default();
    let c = opts.clients[0].clone();
    let sim = OAuthSim::start(opts).await;
    let (status, headers, body) = token_request(
        &sim,
        Some(&basic_header(&c.id, &c.secret)),
        "grant_type=client_credentials&scope=read%3Aaudit_log",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_u64(), body["scope"].as_str()),
        (Some("Bearer"), Some(300), Some("read:audit_log"))
    );
    assert_eq!(header(&headers, "cache-control"), "no-store");
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_escape(&c.id),
        form_escape(&c.secret)
    );
    let (status, _, body) = token_request(&sim, None, &form).await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("read:audit_log okta.logs.read")));
    assert_eq!(sim.tokens_issued(), 2);
    assert_eq!(sim.requests().iter().map(|r| r.client_auth).collect::<Vec<_>>(), ["basic", "body"]);
}

#[tokio::test]
async fn oauth_refusals_follow_rfc_6749() {
    let opts = OAuthOptions::default();
    let c = opts.clients[0].clone();
    let sim = OAuthSim::start(opts).await;
    let basic = basic_header(&c.id, &c.secret);
    let (status, headers, body) =
        token_request(&sim, Some(&basic_header(&c.id, "wrong")), "grant_type=client_credentials").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    assert!(header(&headers, "www-authenticate").starts_with("Basic realm="));
    let both = format!("grant_type=client_credentials&client_id={}&client_secret=x", c.id);
    let cases = [
        (both.as_str(), 400, "invalid_request"),
        ("grant_type=password", 400, "unsupported_grant_type"),
        ("scope=read%3Aaudit_log", 400, "invalid_request"),
        ("grant_type=client_credentials&scope=admin%3Aenterprise", 400, "invalid_scope"),
    ];
    for (form, status, error) in cases {
        let (got, _, body) = token_request(&sim, Some(&basic), form).await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{form}");
    }
    sim.fail_next(503);
    let (status, _, body) = token_request(&sim, Some(&basic), "grant_type=client_credentials").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("temporarily_unavailable")));
    sim.revoke(&c.id);
    let (status, _, body) = token_request(&sim, Some(&basic), "grant_type=client_credentials").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "a revoked client");
    assert_eq!(sim.tokens_issued(), 0);
    assert_eq!(sim.requests().len(), 7);
}

#[tokio::test]
async fn github_behind_oauth_accepts_issued_tokens_until_expiry_or_revocation() {
    let oauth_opts = OAuthOptions::default();
    let c = oauth_opts.clients[0].clone();
    let oauth = OAuthSim::start(oauth_opts).await;
    let sim =
        GithubSim::start(GithubOptions { auth: GithubAuth::OAuth(oauth.issued()), ..GithubOptions::default() }).await;
    let url = format!("{}{}?per_page=5", sim.origin(), sim.path());
    let basic = basic_header(&c.id, &c.secret);
    let (_, _, body) = token_request(&oauth, Some(&basic), "grant_type=client_credentials").await;
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(get(&url, &bearer).await.0, 200);
    let (status, headers, _) = get(&url, "").await;
    assert_eq!((status, header(&headers, "www-authenticate")), (401, "Bearer realm=\"auditrelay-sim\""));
    oauth.advance(Duration::from_secs(301));
    let (status, headers, _) = get(&url, &bearer).await;
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate").contains("error=\"invalid_token\""));
    assert!(header(&headers, "www-authenticate").contains("expired"));
    let (_, _, body) = token_request(&oauth, Some(&basic), "grant_type=client_credentials").await;
    let bearer = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(get(&url, &bearer).await.0, 200, "a new token after expiry");
    oauth.revoke(&c.id);
    assert_eq!(get(&url, &bearer).await.0, 401, "a revoked client's tokens are refused");
    assert_eq!(oauth.tokens_issued(), 2);
}

/// A definition file of config/vendors.d/, read as plain TOML (the engine that runs definitions
/// is not on this branch; this reads only what docs/vendor-definitions.md says a key means).
fn definition(file: &str) -> toml::Table {
    let path = format!("{}/config/vendors.d/{file}", env!("CARGO_MANIFEST_DIR"));
    toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Asks one window as the definition describes it (its path, query and header templates, its
/// auth, `Link` paging with `stop_on_empty`, the records, id and time pointers), and returns the
/// ids in order. Checks the rate-limit headers it names are on every answer.
async fn collect_by_definition(
    def: &toml::Table,
    base: &str,
    org: &str,
    token: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Vec<String> {
    let str_of = |table: &str, key: &str| def[table].get(key).and_then(|v| v.as_str()).map(str::to_owned);
    assert_eq!(str_of("request", "time_format").as_deref(), Some("rfc3339"));
    assert_eq!(str_of("paging", "kind").as_deref(), Some("link"));
    let page_size = def["paging"]["page_size"].as_integer().unwrap().to_string();
    let render = |template: &str| {
        template
            .replace("{from}", &rfc3339(window.0))
            .replace("{to}", &rfc3339(window.1))
            .replace("{page_size}", &page_size)
            .replace("{organization_id}", org)
    };
    let query: Vec<(String, String)> = def["request"]["query"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), render(v.as_str().unwrap())))
        .collect();
    let authorization = match str_of("auth", "kind").as_deref() {
        Some("header") => format!("{}{token}", str_of("auth", "prefix").unwrap_or_default()),
        Some("bearer") => format!("Bearer {token}"),
        other => panic!("auth kind {other:?}"),
    };
    let headers: Vec<(String, String)> = def["request"]["headers"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), render(v.as_str().unwrap())))
        .collect();
    let (id, time) = (str_of("answer", "id").unwrap(), str_of("answer", "time").unwrap());
    let records_at = str_of("answer", "records").unwrap_or_default();
    let stop_on_empty = def["paging"].get("stop_on_empty").and_then(|v| v.as_bool()).unwrap_or(false);
    let mut url = Some(crate::contract_sim::url_with(base, &render(&str_of("request", "path").unwrap()), &query));
    let mut ids = Vec::new();
    while let Some(at) = url.take() {
        let mut request = client().get(&at).header("authorization", &authorization);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{at}");
        for key in ["remaining_header", "reset_header"] {
            let name = str_of("rate_limit", key).unwrap();
            assert!(response.headers().contains_key(name.to_lowercase().as_str()), "{name} on every answer");
        }
        let next = rel(response.headers(), &str_of("paging", "rel").unwrap_or("next".into()));
        let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let records = body.pointer(&records_at).unwrap().as_array().unwrap();
        for record in records {
            assert!(record.pointer(&time).is_some_and(|t| !t.is_null()), "{time} in {record}");
            ids.push(record.pointer(&id).and_then(Value::as_str).unwrap().to_owned());
        }
        if !(records.is_empty() && stop_on_empty) {
            url = next;
        }
    }
    ids
}

#[tokio::test]
async fn the_okta_definition_collects_every_event_of_a_window_from_the_simulator_once() {
    let def = definition("okta.toml");
    let sim = OktaSim::start(OktaOptions::default()).await;
    let window = (sim.now() - chrono::Duration::hours(8), sim.now());
    let got = collect_by_definition(&def, sim.origin(), "acme", sim.token(), window).await;
    assert_eq!(got, sim.uuids_between(window.0, window.1));
    let limit = def["paging"]["max_page_size"].as_integer().unwrap() as usize;
    assert_eq!(limit, crate::okta_sim::MAX_LIMIT);
}

#[tokio::test]
async fn the_github_definition_collects_every_web_event_of_a_window_from_the_simulator_once() {
    let def = definition("github-enterprise.toml");
    let opts = GithubOptions { records: 450, ..GithubOptions::default() };
    let token = github_token(&opts);
    let enterprise = opts.enterprise.clone();
    let sim = GithubSim::start(opts).await;
    let window = (sim.now() - chrono::Duration::hours(8), sim.now());
    let got = collect_by_definition(&def, sim.origin(), &enterprise, &token, window).await;
    let expected: Vec<String> = sim.events().iter().filter(|e| !e.git).map(|e| e.document_id.clone()).collect();
    assert_eq!(got, expected);
    assert!(sim.served().len() >= 4, "several pages of 100");
    assert!(sim.served().iter().all(|s| s.query.contains("order=asc")));
}

#[tokio::test]
async fn github_late_records_are_searchable_only_once_indexed() {
    let opts = GithubOptions { late_permille: 400, ..GithubOptions::default() };
    let start = opts.start;
    let auth = format!("Bearer {}", github_token(&opts));
    let sim = GithubSim::start(GithubOptions { now: Some(start + chrono::Duration::hours(3)), ..opts }).await;
    let url = format!(
        "{}{}?include=all&order=asc&per_page=100&phrase=created:{}..{}",
        sim.origin(),
        sim.path(),
        rfc3339(start),
        rfc3339(start + chrono::Duration::hours(3))
    );
    let now_ms = sim.now().timestamp_millis();
    let published: Vec<&crate::github_sim::AuditEvent> = sim.events().iter().filter(|e| e.at <= now_ms).collect();
    let indexed: Vec<String> =
        published.iter().filter(|e| e.arrival <= now_ms).map(|e| e.document_id.clone()).collect();
    assert!(indexed.len() < published.len(), "some records of the window are not indexed yet");
    assert_eq!(follow(url.clone(), &auth, "_document_id").await.0, indexed);
    sim.advance(Duration::from_secs(3600));
    let all: Vec<String> = published.iter().map(|e| e.document_id.clone()).collect();
    assert_eq!(follow(url, &auth, "_document_id").await.0, all, "the same window asked again brings the late ones");
}

#[tokio::test]
async fn live_options_follow_the_wall_clock() {
    let okta = OktaSim::start(OktaOptions::live(Duration::from_secs(3600))).await;
    let now = Utc::now().timestamp_millis();
    assert!(okta.events().iter().all(|e| e.published <= now && e.published >= now - 3_700_000));
    let since = rfc3339(Utc::now() - chrono::Duration::hours(2));
    let (status, _, body) = get(&format!("{}{PATH}?since={since}&limit=1000", okta.origin()), &okta_auth(&okta)).await;
    let served = ids(&body, "uuid").len();
    assert_eq!(status, 200);
    assert!(served > 0 && served <= okta.events().len());
    let github = GithubSim::start(GithubOptions::live(Duration::from_secs(3600))).await;
    assert!(github.events().iter().all(|e| e.at <= Utc::now().timestamp_millis()));
}

#[tokio::test]
async fn oauth_protect_puts_any_router_behind_issued_tokens() {
    let opts = OAuthOptions { lifetime: Duration::from_secs(30), ..OAuthOptions::default() };
    let c = opts.clients[0].clone();
    let oauth = OAuthSim::start(opts).await;
    let app = axum::Router::new().route("/data", axum::routing::get(|| async { "[]" }));
    let resource = crate::killable::Serving::start("protected", None, oauth.issued().protect(app)).await;
    let url = format!("http://{}/data", resource.addr());
    let (status, headers, body) = get(&url, "Bearer unknown").await;
    assert_eq!((status, body.as_str()), (401, "{\"error\":\"invalid_token\"}"));
    assert!(header(&headers, "www-authenticate").contains("invalid"));
    let (_, _, token) =
        token_request(&oauth, Some(&basic_header(&c.id, &c.secret)), "grant_type=client_credentials").await;
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    assert_eq!(get(&url, &bearer).await.0, 200);
    oauth.expire_all();
    assert_eq!(get(&url, &bearer).await.0, 401, "a token invalidated at the server (rotation)");
}

#[tokio::test]
async fn github_keeps_git_events_seven_days_and_the_others_180() {
    let opts = GithubOptions::default();
    let (start, auth) = (opts.start, format!("Bearer {}", github_token(&opts)));
    let sim = GithubSim::start(GithubOptions { now: Some(start + chrono::Duration::days(8)), ..opts }).await;
    let count = |include: &'static str| {
        let url = format!("{}{}?include={include}&per_page=100", sim.origin(), sim.path());
        let auth = auth.clone();
        async move { follow(url, &auth, "_document_id").await.0.len() }
    };
    assert_eq!(count("git").await, 0, "Git events older than 7 days are gone");
    assert_eq!(count("web").await, sim.events().iter().filter(|e| !e.git).count());
    sim.advance(Duration::from_secs(173 * 86_400));
    assert_eq!(count("all").await, 0, "nothing older than 180 days");
}
