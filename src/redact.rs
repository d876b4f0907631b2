//! Secret-free renderings of URLs for logs and error messages (DESIGN invariant 7).
//!
//! Vendor credentials travel in headers, never in URLs, but an operator may paste a base URL
//! with user-info or a token query parameter; whatever ends up in a message goes through here.

use url::Url;

/// Query parameter names whose values are never shown (compared case-insensitively, by substring).
const SECRET_PARAMS: &[&str] = &["token", "key", "secret", "password", "signature", "auth"];

/// The URL with any password, user name and secret-looking query values replaced by `REDACTED`.
pub fn url(u: &Url) -> String {
    let mut shown = u.clone();
    if !shown.username().is_empty() {
        let _ = shown.set_username("REDACTED");
    }
    if shown.password().is_some() {
        let _ = shown.set_password(Some("REDACTED"));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_PARAMS.iter().any(|s| lower.contains(s));
                (k.into_owned(), if secret { "REDACTED".to_owned() } else { v.into_owned() })
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// `text` with every occurrence of each secret replaced by `[redacted]`: for what a remote
/// party sends back (a vendor's 401 body that echoes the refused key), which the agent shows
/// in logs, on `/ready` and in `check --connect`. Secrets shorter than 4 bytes are left alone
/// (they would mangle the text and hide nothing worth hiding).
pub fn secrets_in(text: &str, secrets: &[&secrecy::SecretString]) -> String {
    use secrecy::ExposeSecret as _;
    let mut out = text.to_owned();
    for secret in secrets {
        let secret = secret.expose_secret().trim();
        if secret.len() < 4 {
            continue;
        }
        // As sent back: verbatim, JSON-escaped (with `/` as `\/` too, as PHP's json_encode
        // writes it) or percent-encoded.
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_owned();
        let forms = [
            secret.to_owned(),
            json.replace('/', "\\/"),
            json,
            url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
        ];
        for form in forms {
            if !form.is_empty() && out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_redacts_userinfo_and_secret_params_only() {
        let u = Url::parse("https://bob:hunter2@api.example.com/v1/x?api_key=abc&skip=100&accessToken=t0k").unwrap();
        let shown = url(&u);
        assert!(!shown.contains("hunter2") && !shown.contains("abc") && !shown.contains("t0k"));
        assert!(!shown.contains("bob"));
        assert!(shown.contains("skip=100"), "{shown}");
    }

    #[test]
    fn test_secrets_in_text_are_replaced() {
        let key = secrecy::SecretString::from("ak_live_123456");
        let short = secrecy::SecretString::from("ab");
        let text = "invalid API key 'ak_live_123456' (ab)";
        assert_eq!(secrets_in(text, &[&key, &short]), "invalid API key '[redacted]' (ab)");
        let slashed = secrecy::SecretString::from("ak/Zq9x/Secret\"1");
        let echoed = r#"{"error":"bad key ak\/Zq9x\/Secret\"1 or ak/Zq9x/Secret\"1 or ak%2FZq9x%2FSecret%221"}"#;
        assert_eq!(secrets_in(echoed, &[&slashed]), r#"{"error":"bad key [redacted] or [redacted] or [redacted]"}"#);
    }
}
