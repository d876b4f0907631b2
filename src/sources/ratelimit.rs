//! Rate-limit signals and the credential gate: the one place that decides what a vendor's
//! answer means for *when* we may ask it again.
//!
//! Owns: the retry policy for vendor answers ([`classify`], pinned by a test table), the pause
//! before a spent budget runs dry ([`budget_pause`]), and the [`Gate`] of a credential: its
//! proactive limiter (governor) and its pause-until, shared by every source that uses the
//! credential and kept by [`Gates`] across reloads.
//!
//! Leaves to others: reading the headers themselves (`Retry-After`, the vendors' reset headers,
//! the answer's `Date`: [`crate::backoff`], shared with the sinks), storing a pause (the queue's
//! `rate_pauses` table, written and read by the source loop), back-off after errors that are not
//! rate limits (each source's own), and what a sink does with its wait (`sinks/`). Nothing here
//! does I/O or reads the wall clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use governor::{Quota, RateLimiter, middleware::NoOpMiddleware, state::InMemoryState, state::NotKeyed};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};

use crate::backoff::{self, LIMIT_HEADERS, MeasureFrom, parse_reset, reset_delay, retry_after};
use crate::clock::Clock;
use crate::config::{RateLimit, SourceConfig};

/// A rate-limit pause at least this long is stored in the queue database, so that a restart
/// (systemd's `Restart=` comes back in seconds) or a reload inside it still honours it.
pub const MIN_STORED_PAUSE: Duration = Duration::from_secs(5);

/// How to treat one HTTP answer. Decided by [`classify`] alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: read the page.
    Ok,
    /// The vendor's rate limit: wait this long (from `Retry-After` or a reset header), or
    /// back off when it said nothing. The same page is asked again.
    RateLimited(Option<Duration>),
    /// A passing fault (5xx, 408): back off (or wait what `Retry-After` said) and ask again.
    Retryable(Option<Duration>),
    /// The credential was refused (401, 403). Final for a credential that never worked; one
    /// that has worked may be in a vendor's key rotation or cache miss, and is asked again a
    /// few times ([`AUTH_RETRIES`]) before the source treats it as refused.
    Unauthorized,
    /// The request itself is wrong (no such organization, validation): an operator must act.
    Fatal,
}

/// How many times a refused (401/403) credential that has worked before is asked again, with
/// back-off, before the refusal is taken as final.
pub const AUTH_RETRIES: u32 = 3;

/// THE retry policy for vendor answers; a test pins its table. Transport errors (timeouts,
/// refused connections, truncated bodies) never reach here: they are always retryable. `now`
/// is the local wall clock, used only when the answer carries no `Date`.
pub fn classify(status: StatusCode, headers: &HeaderMap, now: DateTime<Utc>) -> Verdict {
    let retry_after = retry_after(headers, now);
    match status.as_u16() {
        200..=299 => Verdict::Ok,
        429 => Verdict::RateLimited(retry_after.or_else(|| reset_delay(headers, now))),
        408 | 500..=599 => Verdict::Retryable(retry_after),
        401 | 403 => Verdict::Unauthorized,
        _ => Verdict::Fatal,
    }
}

/// When an answer says the budget is spent (remaining = 0), how long to pause *before* the
/// next request so we never draw a 429 at all.
pub fn budget_pause(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let reference = backoff::reference(headers, now, MeasureFrom::AnswerDate);
    LIMIT_HEADERS.iter().find_map(|(remaining, reset)| {
        let left: i64 = headers.get(*remaining)?.to_str().ok()?.trim().parse().ok()?;
        if left > 0 {
            return None;
        }
        parse_reset(headers.get(*reset)?.to_str().ok()?, reference)
    })
}

/// A vendor's own rate-limit signals, beside today's table (a vendor definition's
/// `[rate_limit]`, docs/vendor-definitions.md). Built-in vendors have none: [`classify`] and
/// [`budget_pause`] are theirs, unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateSignals {
    /// Header names, lower case.
    pub remaining_header: Option<String>,
    pub reset_header: Option<String>,
    pub reset: Option<crate::vendors::defined::model::ResetKind>,
    pub retry_after_header: Option<String>,
    /// A 403 with a wait (`Retry-After`, `retry_after_header`) or a spent budget is a rate
    /// limit, not a refused credential (GitHub's secondary and primary limits).
    pub forbidden_is_rate_limit: bool,
}

impl RateSignals {
    /// The vendor's reset header, read as its `reset` kind says (measured from `reference`).
    fn reset_in(&self, headers: &HeaderMap, reference: DateTime<Utc>) -> Option<Duration> {
        use crate::vendors::defined::model::ResetKind;
        let value = headers.get(self.reset_header.as_deref()?)?.to_str().ok()?.trim();
        let until = |at: DateTime<Utc>| (at - reference).to_std().unwrap_or(Duration::ZERO);
        match self.reset.unwrap_or(ResetKind::Auto) {
            ResetKind::Auto => crate::backoff::parse_reset(value, reference),
            ResetKind::Rfc3339 => DateTime::parse_from_rfc3339(value).ok().map(|at| until(at.with_timezone(&Utc))),
            ResetKind::Epoch => {
                let secs: i64 = value.parse().ok()?;
                Some(until(chrono::TimeZone::timestamp_opt(&Utc, secs, 0).single()?))
            }
            ResetKind::Delta => value.parse::<u64>().ok().map(Duration::from_secs),
            ResetKind::Date => httpdate::parse_http_date(value).ok().map(|at| until(at.into())),
        }
    }

    /// Whether the vendor's remaining header says the budget is spent.
    fn spent(&self, headers: &HeaderMap) -> bool {
        let Some(name) = self.remaining_header.as_deref() else { return false };
        let left = headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
        left.is_some_and(|n| n <= 0)
    }
}

/// [`classify`] with a vendor's own signals (`None`: exactly [`classify`]). A 429 waits for the
/// longer of its `Retry-After` (or the vendor's retry header) and the budget's reset; with
/// `forbidden_is_rate_limit`, a 403 carrying a wait or a spent budget is a rate limit.
pub fn classify_for(
    status: StatusCode,
    headers: &HeaderMap,
    now: DateTime<Utc>,
    signals: Option<&RateSignals>,
) -> Verdict {
    let Some(signals) = signals else { return classify(status, headers, now) };
    let reference = backoff::reference(headers, now, MeasureFrom::AnswerDate);
    let vendor_retry = signals
        .retry_after_header
        .as_deref()
        .and_then(|name| headers.get(name)?.to_str().ok())
        .and_then(|v| backoff::retry_after_value(v, reference));
    let retry = retry_after(headers, now).max(vendor_retry);
    let reset = signals.reset_in(headers, reference).or_else(|| reset_delay(headers, now));
    match status.as_u16() {
        // As [`classify`]: the answer's own wait, else the reset; the loop then waits for the
        // longer of that and a spent budget's reset (`budget_pause_for`), as for built-ins.
        429 => Verdict::RateLimited(retry.or(reset)),
        403 if signals.forbidden_is_rate_limit && (retry.is_some() || signals.spent(headers)) => {
            Verdict::RateLimited(retry.max(if signals.spent(headers) { reset } else { None }))
        }
        408 | 500..=599 => Verdict::Retryable(retry),
        _ => classify(status, headers, now),
    }
}

/// [`budget_pause`] with a vendor's own signals (`None`: exactly [`budget_pause`]).
pub fn budget_pause_for(headers: &HeaderMap, now: DateTime<Utc>, signals: Option<&RateSignals>) -> Option<Duration> {
    match signals {
        Some(s) if s.spent(headers) => {
            let reference = backoff::reference(headers, now, MeasureFrom::AnswerDate);
            s.reset_in(headers, reference).or_else(|| budget_pause(headers, now))
        }
        _ => budget_pause(headers, now),
    }
}

/// Who a vendor counts requests against: vendor, base URL and a SHA-256 of the credential
/// material, as `<vendor>:<hex>`. Never the secret itself: the key is stored in the database
/// (`rate_pauses`) and may be logged.
pub fn credential_key(cfg: &SourceConfig) -> String {
    let secrets = cfg.vendor.credential_parts();
    let vendor = cfg.vendor.vendor_name();
    let mut hash = Sha256::new();
    for part in [vendor, cfg.base_url.as_str()].into_iter().chain(secrets) {
        hash.update(part.as_bytes());
        hash.update([0u8]);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{vendor}:{hex}")
}

pub type Limiter = RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<std::time::Instant>>;

/// The quota a source's `rate_limit` means: one request every `per / requests`, at most `burst`
/// back to back; with the default burst of 1 a fixed-window vendor never sees more than its
/// limit in any window.
fn quota(rl: RateLimit) -> Quota {
    let interval = rl.per / rl.requests.get();
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(rl.burst)
}

/// One credential's rate state, shared by every source using it: the proactive limiter and
/// the pause a 429 or a spent budget set. A std `Mutex` because no lock is held across an
/// `.await` (each critical section copies or replaces one value).
pub struct Gate {
    key: String,
    limiter: Mutex<(Quota, Arc<Limiter>)>,
    paused_until: Mutex<tokio::time::Instant>,
    /// The vendor has answered 2xx to this credential in this process.
    worked: AtomicBool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("key", &self.key).field("paused_until", &self.paused_until()).finish()
    }
}

impl Gate {
    /// A gate of its own for `cfg` (not shared with any other source).
    pub fn new(cfg: &SourceConfig, clock: &Clock) -> Gate {
        let quota = quota(cfg.rate_limit);
        Gate {
            key: credential_key(cfg),
            limiter: Mutex::new((quota, Arc::new(RateLimiter::direct_with_clock(quota, clock.clone())))),
            paused_until: Mutex::new(clock.now()),
            worked: AtomicBool::new(false),
        }
    }

    /// The credential key (see [`credential_key`]), safe to store and log.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// No request on this credential leaves before this instant.
    pub fn paused_until(&self) -> tokio::time::Instant {
        *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Extends the pause to at least `until` (a pause never shortens: the longest word wins).
    pub fn pause_until(&self, until: tokio::time::Instant) -> tokio::time::Instant {
        let mut paused = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        *paused = (*paused).max(until);
        *paused
    }

    pub fn limiter(&self) -> Arc<Limiter> {
        Arc::clone(&self.limiter.lock().unwrap_or_else(PoisonError::into_inner).1)
    }

    /// A reload may change `rate_limit`: the newest configuration's quota applies (sources that
    /// share a credential should configure the same one). The pause is kept.
    fn set_quota(&self, rl: RateLimit, clock: &Clock) {
        let quota = quota(rl);
        let mut limiter = self.limiter.lock().unwrap_or_else(PoisonError::into_inner);
        if limiter.0 != quota {
            *limiter = (quota, Arc::new(RateLimiter::direct_with_clock(quota, clock.clone())));
        }
    }

    pub fn mark_worked(&self) {
        self.worked.store(true, Ordering::Relaxed);
    }

    pub fn has_worked(&self) -> bool {
        self.worked.load(Ordering::Relaxed)
    }
}

/// Every credential's [`Gate`], created once by the daemon and kept across reloads, so that a
/// reload neither resets a pause nor gives a restarted source a fresh budget.
#[derive(Debug, Default)]
pub struct Gates {
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

impl Gates {
    /// The gate of `cfg`'s credential, made on first use.
    pub fn gate(&self, cfg: &SourceConfig, clock: &Clock) -> Arc<Gate> {
        let key = credential_key(cfg);
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        match gates.get(&key) {
            Some(gate) => {
                gate.set_quota(cfg.rate_limit, clock);
                Arc::clone(gate)
            }
            None => {
                let gate = Arc::new(Gate::new(cfg, clock));
                gates.insert(key, Arc::clone(&gate));
                gate
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::tests::at;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn source(name: &str, key: &str, base: &str, per: &str) -> SourceConfig {
        let text = format!(
            "state_dir = \"/tmp/x\"\n[[sources]]\nname = {name:?}\nvendor = \"aitronos\"\norganization_id = \"ORG\"\n\
             api_key = {key:?}\nbase_url = {base:?}\nrate_limit = {{ requests = 1, per = {per:?} }}\n\
             [[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"/tmp/x/out\"\n"
        );
        let path = std::path::Path::new("/etc/auditrelay/auditrelay.toml");
        crate::config::Config::parse_with_env(&text, path, &|_: &str| None).unwrap().sources.remove(0)
    }

    /// One gate per credential (vendor, base URL, secret): shared by the sources on it, kept
    /// with its pause when a reload brings a new quota; the key never holds the secret.
    #[tokio::test(start_paused = true)]
    async fn test_gates_are_per_credential_and_keep_their_pause() {
        let clock = Clock::starting_at(at("2026-03-18T08:00:00Z"));
        let gates = Gates::default();
        let a = gates.gate(&source("a", "ak_secret_one", "https://api.aitronos.com", "1s"), &clock);
        let b = gates.gate(&source("b", "ak_secret_one", "https://api.aitronos.com", "1s"), &clock);
        let other_key = gates.gate(&source("c", "ak_secret_two", "https://api.aitronos.com", "1s"), &clock);
        let other_url = gates.gate(&source("d", "ak_secret_one", "https://eu.aitronos.com", "1s"), &clock);
        assert!(Arc::ptr_eq(&a, &b), "two sources on one credential share its gate");
        assert!(!Arc::ptr_eq(&a, &other_key) && !Arc::ptr_eq(&a, &other_url));
        assert!(a.key().starts_with("aitronos:") && !a.key().contains("secret"), "{}", a.key());

        // One's 429 pauses the other; the shared limiter lets one request through per second.
        let until = clock.now() + secs(120);
        a.pause_until(until);
        assert_eq!(b.paused_until(), until);
        assert!(a.limiter().check().is_ok());
        assert!(b.limiter().check().is_err(), "the second request in the same second waits");

        // A reload with another rate_limit: a new quota, the same pause.
        let reloaded = gates.gate(&source("a", "ak_secret_one", "https://api.aitronos.com", "2s"), &clock);
        assert!(Arc::ptr_eq(&a, &reloaded));
        assert_eq!(reloaded.paused_until(), until);
        assert!(!a.has_worked());
        b.mark_worked();
        assert!(a.has_worked(), "a 2xx on the credential counts for every source on it");
    }
}

/// A definition's own signals (issue 20): what they change, and that `None` is today's table.
#[cfg(test)]
mod signals_tests {
    use super::*;
    use crate::vendors::defined::model::ResetKind;
    use chrono::TimeZone as _;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 18, 12, 0, 0).unwrap()
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn github() -> RateSignals {
        RateSignals {
            remaining_header: Some("x-ratelimit-remaining".into()),
            reset_header: Some("x-ratelimit-reset".into()),
            reset: Some(ResetKind::Epoch),
            retry_after_header: None,
            forbidden_is_rate_limit: true,
        }
    }

    #[test]
    fn none_is_exactly_todays_table() {
        let cases =
            [(200, vec![]), (429, vec![("retry-after", "7".to_owned())]), (403, vec![]), (503, vec![]), (404, vec![])];
        for (status, pairs) in cases {
            let (s, h) = (StatusCode::from_u16(status).unwrap(), headers(&pairs));
            assert_eq!(classify_for(s, &h, now(), None), classify(s, &h, now()), "{status}");
        }
    }

    #[test]
    fn a_403_is_a_rate_limit_only_with_a_wait_or_a_spent_budget() {
        let reset = (now().timestamp() + 60).to_string();
        let s = github();
        let forbidden = StatusCode::FORBIDDEN;
        let wait = headers(&[("retry-after", "30".into())]);
        assert_eq!(
            classify_for(forbidden, &wait, now(), Some(&s)),
            Verdict::RateLimited(Some(Duration::from_secs(30)))
        );
        let spent = headers(&[("x-ratelimit-remaining", "0".into()), ("x-ratelimit-reset", reset.clone())]);
        assert_eq!(
            classify_for(forbidden, &spent, now(), Some(&s)),
            Verdict::RateLimited(Some(Duration::from_secs(60)))
        );
        let plain = headers(&[("x-ratelimit-remaining", "12".into()), ("x-ratelimit-reset", reset)]);
        assert_eq!(classify_for(forbidden, &plain, now(), Some(&s)), Verdict::Unauthorized);
        let off = RateSignals { forbidden_is_rate_limit: false, ..github() };
        assert_eq!(classify_for(forbidden, &wait, now(), Some(&off)), Verdict::Unauthorized);
    }

    #[test]
    fn a_429_waits_retry_after_else_the_reset_in_its_kind_and_a_spent_budget_its_reset() {
        let okta = RateSignals {
            remaining_header: Some("x-rate-limit-remaining".into()),
            reset_header: Some("x-rate-limit-reset".into()),
            reset: Some(ResetKind::Epoch),
            ..RateSignals::default()
        };
        // As for built-in vendors: the 429's own wait; the loop waits for the longer of it and
        // a spent budget's reset (`budget_pause_for`).
        let reset = (now().timestamp() + 40).to_string();
        let h = headers(&[("retry-after", "5".into()), ("x-rate-limit-reset", reset.clone())]);
        assert_eq!(
            classify_for(StatusCode::TOO_MANY_REQUESTS, &h, now(), Some(&okta)),
            Verdict::RateLimited(Some(Duration::from_secs(5)))
        );
        assert_eq!(budget_pause_for(&h, now(), Some(&okta)), None, "remaining not 0");
        let spent = headers(&[
            ("retry-after", "5".into()),
            ("x-rate-limit-reset", reset),
            ("x-rate-limit-remaining", "0".into()),
        ]);
        assert_eq!(budget_pause_for(&spent, now(), Some(&okta)), Some(Duration::from_secs(40)));
        let bare = headers(&[("x-rate-limit-reset", (now().timestamp() + 40).to_string())]);
        assert_eq!(
            classify_for(StatusCode::TOO_MANY_REQUESTS, &bare, now(), Some(&okta)),
            Verdict::RateLimited(Some(Duration::from_secs(40)))
        );
        let delta = RateSignals {
            reset_header: Some("x-reset-in".into()),
            reset: Some(ResetKind::Delta),
            ..RateSignals::default()
        };
        let h = headers(&[("x-reset-in", "90".into())]);
        assert_eq!(
            classify_for(StatusCode::TOO_MANY_REQUESTS, &h, now(), Some(&delta)),
            Verdict::RateLimited(Some(Duration::from_secs(90)))
        );
        let date = RateSignals {
            reset_header: Some("x-reset-at".into()),
            reset: Some(ResetKind::Date),
            ..RateSignals::default()
        };
        let h = headers(&[("x-reset-at", "Wed, 18 Mar 2026 12:02:00 GMT".into())]);
        assert_eq!(
            classify_for(StatusCode::TOO_MANY_REQUESTS, &h, now(), Some(&date)),
            Verdict::RateLimited(Some(Duration::from_secs(120)))
        );
        let own = RateSignals { retry_after_header: Some("x-wait".into()), ..RateSignals::default() };
        let h = headers(&[("x-wait", "17".into())]);
        assert_eq!(
            classify_for(StatusCode::SERVICE_UNAVAILABLE, &h, now(), Some(&own)),
            Verdict::Retryable(Some(Duration::from_secs(17)))
        );
    }

    #[test]
    fn a_spent_budget_in_the_vendors_own_headers_pauses_before_the_next_request() {
        let s = RateSignals {
            remaining_header: Some("x-left".into()),
            reset_header: Some("x-left-reset".into()),
            reset: Some(ResetKind::Delta),
            ..RateSignals::default()
        };
        let spent = headers(&[("x-left", "0".into()), ("x-left-reset", "25".into())]);
        assert_eq!(budget_pause_for(&spent, now(), Some(&s)), Some(Duration::from_secs(25)));
        assert_eq!(budget_pause(&spent, now()), None, "today's table does not know these headers");
        let left = headers(&[("x-left", "3".into()), ("x-left-reset", "25".into())]);
        assert_eq!(budget_pause_for(&left, now(), Some(&s)), None);
    }
}
