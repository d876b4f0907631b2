//! REST paths as event codes rules can name (MAPPING §5a rule 4): the ids in a path become
//! placeholders (`/organizations/{org}/api-tokens/{id}/rotate`) and are kept as the resources
//! they name (`{uid: <id>, type: "api_token"}`), so `metadata.event_code`, `api.operation` and
//! `[severity]` overrides are one value per endpoint, not one per object.

/// A path with its ids replaced, and what each id named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Templated {
    /// The path with `{org}` / `{id}` where the ids were, without a query string.
    pub path: String,
    /// Each id in order: (its value, the resource type the segment before it names).
    pub ids: Vec<(String, String)>,
}

/// Templates `path`: the segment after `organizations` is `{org}` whatever it looks like (a
/// slug or an id); any other segment that looks like an id ([`is_id`]) is `{id}`, its type the
/// singular of the segment before it (`api-tokens` → `api_token`), or `resource` when none.
pub fn template(path: &str) -> Templated {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    let mut ids = Vec::new();
    let mut previous: Option<&str> = None;
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let after_org = previous.is_some_and(|p| p.eq_ignore_ascii_case("organizations"));
        if !segment.is_empty() && (after_org || is_id(segment)) {
            out.push_str(if after_org { "{org}" } else { "{id}" });
            let kind = previous.filter(|p| !is_id(p)).map_or_else(|| "resource".to_owned(), singular);
            ids.push((segment.to_owned(), kind));
        } else {
            out.push_str(segment);
        }
        previous = Some(segment).filter(|s| !s.is_empty());
    }
    Templated { path: out, ids }
}

/// Whether a path segment is an id rather than a name of the API: all digits; a UUID; an
/// e-mail address, IP address or percent-encoded value; a date (`2024-06-01…`); a dotted
/// object name (`prod_db.public.orders`); a token of 16 or more of `[A-Za-z0-9_-]` with a digit
/// (invitation and reset tokens); or 8 or more letters and digits with two or more digits and no
/// word separators (cuids such as `clmh57jtm000008lb58fe2wmv`, `usr_…`-style ids with one `_`)
/// — but not an API word with a digit in it (`oauth2callback`).
pub fn is_id(segment: &str) -> bool {
    if segment.is_empty() || is_version(segment) {
        return false;
    }
    // Digits, a UUID, or a value no API names a route after: an e-mail address, a
    // percent-encoded value, an IP address.
    if segment.bytes().all(|b| b.is_ascii_digit())
        || uuid::Uuid::parse_str(segment).is_ok()
        || segment.contains(['@', '%'])
        || segment.parse::<std::net::IpAddr>().is_ok()
        || segment.get(..10).is_some_and(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
        || segment.matches('.').count() >= 2
    {
        return true;
    }
    let token_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if segment.len() >= 16 && segment.bytes().all(token_byte) && segment.bytes().any(|b| b.is_ascii_digit()) {
        return true;
    }
    let body = match segment.split_once('_') {
        Some((prefix, rest)) if prefix.len() <= 5 && prefix.bytes().all(|b| b.is_ascii_alphabetic()) => rest,
        _ => segment,
    };
    body.len() >= 8
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
        && body.bytes().filter(u8::is_ascii_digit).count() >= 2
        && body.bytes().any(|b| b.is_ascii_alphabetic())
}

/// An API version segment: `v1`, `v1beta1`, `v2alpha3`.
pub fn is_version(segment: &str) -> bool {
    let Some(rest) = segment.strip_prefix(['v', 'V']) else { return false };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let tail = &rest[digits..];
    digits > 0
        && ["", "alpha", "beta"].iter().any(|stage| {
            tail.strip_prefix(stage)
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()) && (stage.is_empty() == n.is_empty()))
        })
}

/// `api-tokens` → `api_token`, `data_sources` → `data_source`, `policies` → `policy`.
fn singular(collection: &str) -> String {
    let snake = collection.to_ascii_lowercase().replace('-', "_");
    if let Some(stem) = snake.strip_suffix("ies") {
        format!("{stem}y")
    } else if snake.ends_with("ss") {
        snake
    } else if let Some(stem) = snake.strip_suffix('s') {
        stem.to_owned()
    } else {
        snake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ids_become_placeholders_and_resources() {
        let t =
            template("/v1beta1/organizations/clmh57jtm000008lb58fe2wmv/api-tokens/cm1x2y3z4000108l5abcd9efg/rotate");
        assert_eq!(t.path, "/v1beta1/organizations/{org}/api-tokens/{id}/rotate");
        assert_eq!(
            t.ids,
            vec![
                ("clmh57jtm000008lb58fe2wmv".to_owned(), "organization".to_owned()),
                ("cm1x2y3z4000108l5abcd9efg".to_owned(), "api_token".to_owned()),
            ]
        );
        let t = template("/api/v1/data_sources/1432?expand=true");
        assert_eq!((t.path.as_str(), t.ids[0].1.as_str()), ("/api/v1/data_sources/{id}", "data_source"));
        // An organization's slug is still the organization; names of the API stay.
        let t = template("/v1alpha1/organizations/examplecorp/workspaces");
        assert_eq!(t.path, "/v1alpha1/organizations/{org}/workspaces");
        assert_eq!(template("/api/v1/monitors/list").path, "/api/v1/monitors/list");
        assert_eq!(template("/v1beta1/policies/9a7e2b1d-4c6e-4a3f-8e7d-6c5b4a21f0c9").ids[0].1, "policy");
    }

    #[test]
    fn test_what_counts_as_an_id() {
        for id in [
            "1432",
            "clmh57jtm000008lb58fe2wmv",
            "usr_6Tz1RcM8vN3kL9wQ",
            "9a7e2b1d-4c6e-4a3f-8e7d-6c5b4a21f0c9",
            "alice@example.com",
            "alice%40example.com",
            "198.51.100.7",
            "2024-06-01",
            "prod_db.public.orders",
            "Zx8-kL_pQ2mN7vR4tY6uW",
            "dzl9chy4",
        ] {
            assert!(is_id(id), "{id}");
        }
        for name in
            ["v1beta1", "v1alpha1", "v22", "api-tokens", "organizations", "rotate", "data_sources", "v2", "oauth2", ""]
                .into_iter()
                .chain(["oauth2callback", "openapi.json", "sso-connections", "dataSources", "taskInstances"])
        {
            assert!(!is_id(name), "{name}");
        }
    }
}
