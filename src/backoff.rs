//! Waiting before asking again, for sources and sinks alike: full-jitter exponential back-off
//! ([`full_jitter`]) and the one reader of what an answer says about *when* to ask again.
//!
//! Owns: every form of `Retry-After` (delta-seconds or an HTTP-date, RFC 9110 §10.2.3,
//! [`retry_after_value`]) and of the vendors' reset headers (`X-RateLimit-Reset`,
//! `X-Rate-Limit-Reset`, `x-ratelimit-reset-requests`, Aitronos' `X-RateLimit-Retry-After`:
//! [`parse_reset`]), what an absolute time in an answer is measured from ([`MeasureFrom`]), and
//! the cut of a wait to a maximum ([`cap`]), and a source's or sink's failing streak
//! ([`Trouble`]: since when, how many, why; `/ready` reads it, its end is logged). Two readings of an answer's headers, one per side:
//! - a vendor's answer (sources, [`retry_after`], [`reset_delay`]): `Retry-After` and Aitronos'
//!   header, the longer; absolute times measured against the answer's own `Date` (an agent whose
//!   clock runs ahead must not come back early); not capped here (the source caps with its
//!   `max_retry_after` and counts the cut);
//! - a sink's receiver (HEC, OTLP/HTTP, [`receiver_retry_after`]): `Retry-After` only, capped at
//!   [`SINK_MAX_RETRY_AFTER`], an HTTP-date measured from what the caller says.
//!
//! Leaves to others: what a vendor answer means (`sources::ratelimit::classify`), pausing a
//! credential (`sources::ratelimit::Gate`), a receiver's answer table (each sink's own) and the
//! waiting itself (the callers sleep on [`Clock`](crate::clock::Clock)). Nothing here does I/O
//! or reads a clock: "now" is always a parameter.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;

use crate::config::Backoff;

/// Exponential back-off with full jitter: uniform in `[0, min(max, initial · 2^attempt)]`.
pub fn full_jitter(backoff: &Backoff, attempt: u32, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = backoff.initial.saturating_mul(1u32 << attempt.min(20)).min(backoff.max);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.u64(0..=ms))
}

/// The longest wait a sink's receiver can impose with `Retry-After` (a wrong or hostile header
/// must not stall delivery for days); the same bound OTLP's `RetryInfo` has.
pub const SINK_MAX_RETRY_AFTER: Duration = Duration::from_secs(15 * 60);

/// A wait cut to `max`; `true` when it had to be cut (the caller counts and reports that).
pub fn cap(wait: Duration, max: Duration) -> (Duration, bool) {
    if wait > max { (max, true) } else { (wait, false) }
}

/// What an absolute time in an answer (an HTTP-date `Retry-After`) is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureFrom {
    /// The answer's `Date` header (the server's own clock) when it has one, else the caller's
    /// "now". What vendors' answers are read with.
    AnswerDate,
    /// The caller's "now" only, whatever `Date` says. What the HEC and OTLP/HTTP sinks have
    /// always done (PROTOCOLS §1a, §3a), kept as it is.
    Now,
}

/// The answer's `Date` header (RFC 9110 §6.6.1), the server's own clock.
pub fn answer_date(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let value = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    httpdate::parse_http_date(value.trim()).ok().map(DateTime::<Utc>::from)
}

/// The instant absolute times in an answer are measured from (see [`MeasureFrom`]).
pub fn reference(headers: &HeaderMap, now: DateTime<Utc>, from: MeasureFrom) -> DateTime<Utc> {
    match from {
        MeasureFrom::AnswerDate => answer_date(headers).unwrap_or(now),
        MeasureFrom::Now => now,
    }
}

/// One `Retry-After` value: delta-seconds or an HTTP-date measured from `reference`; a date in
/// the past is 0, anything else (a negative number, "soon") `None`. THE parser of the header,
/// for vendors and receivers alike.
pub fn retry_after_value(value: &str, reference: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
    Some((at - reference).to_std().unwrap_or(Duration::ZERO))
}

/// How long a vendor's answer asks us to wait: `Retry-After` and Aitronos'
/// `X-RateLimit-Retry-After` (§4.6); the longer when both are present. A date is measured
/// against the answer's `Date` (`now`, the local wall clock, only when it has none); one in the
/// past is 0. Not capped: the source cuts it to `max_retry_after` and counts that.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let reference = reference(headers, now, MeasureFrom::AnswerDate);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let standard = header("retry-after").and_then(|v| retry_after_value(v, reference));
    let vendor = header("x-ratelimit-retry-after").and_then(|v| parse_reset(v, reference));
    standard.max(vendor)
}

/// A sink receiver's `Retry-After` (HEC, OTLP/HTTP): the header alone (no vendor header),
/// an HTTP-date measured as `from` says, capped at [`SINK_MAX_RETRY_AFTER`].
pub fn receiver_retry_after(headers: &HeaderMap, now: DateTime<Utc>, from: MeasureFrom) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let wait = retry_after_value(value, reference(headers, now, from))?;
    Some(cap(wait, SINK_MAX_RETRY_AFTER).0)
}

/// Remaining-budget / reset header pairs the vendors use (ConfigCat, Aitronos' two spellings).
pub const LIMIT_HEADERS: &[(&str, &str)] = &[
    ("x-ratelimit-remaining", "x-ratelimit-reset"),
    ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
];

/// Time until the vendor's rate-limit period resets, from the first reset header present.
pub fn reset_delay(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let reference = reference(headers, now, MeasureFrom::AnswerDate);
    LIMIT_HEADERS.iter().find_map(|(_, reset)| parse_reset(headers.get(*reset)?.to_str().ok()?, reference))
}

/// A reset value in any form vendors use: delta-seconds, epoch seconds, an HTTP-date,
/// RFC 3339, or a Go-style duration ("6m0s"). Absolute forms are measured from `reference`.
pub fn parse_reset(value: &str, reference: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let until = |at: DateTime<Utc>| (at - reference).to_std().unwrap_or(Duration::ZERO);
    if let Ok(n) = value.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        // Anything past 2001-09-09 as epoch seconds cannot be a sane delta.
        return if n >= 1e9 {
            Some(until(Utc.timestamp_opt(n as i64, 0).single()?))
        } else {
            Some(Duration::from_secs_f64(n))
        };
    }
    if let Ok(at) = httpdate::parse_http_date(value) {
        return Some(until(at.into()));
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(until(at.with_timezone(&Utc)));
    }
    humantime::parse_duration(value).ok()
}

/// Whether a source or sink is failing now: set by each failed request or send, cleared by the
/// next success. `/ready` reports a failing one as degraded (which, since when, why), and its
/// recovery is logged with how many failures and how long it took.
#[derive(Debug, Default)]
pub struct Trouble {
    now: std::sync::Mutex<Option<Failing>>,
}

/// One failing streak.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failing {
    /// Failed attempts in a row.
    pub failures: u64,
    /// Wall time (ms since the epoch) of the first of them.
    pub since_ms: i64,
    /// The last failure's message (secrets are never in it).
    pub error: String,
    /// An operator must act (a refused credential, a configuration error): it will not mend
    /// by itself.
    pub operator: bool,
}

impl Trouble {
    /// One more failure, at `now_ms`; returns the streak's length.
    pub fn failed(&self, now_ms: i64, error: String, operator: bool) -> u64 {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let streak = now.get_or_insert(Failing { failures: 0, since_ms: now_ms, error: String::new(), operator });
        streak.failures = streak.failures.saturating_add(1);
        streak.error = error;
        streak.operator = operator;
        streak.failures
    }

    /// A success at `now_ms`: the streak it ended (failures, how long it lasted), if any.
    pub fn succeeded(&self, now_ms: i64) -> Option<(u64, std::time::Duration)> {
        let ended = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
        let lasted = u64::try_from(now_ms.saturating_sub(ended.since_ms)).unwrap_or(0);
        Some((ended.failures, std::time::Duration::from_millis(lasted)))
    }

    /// The streak under way, if any.
    pub fn current(&self) -> Option<Failing> {
        self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A sink's `Retry-After` is read against the answer's `Date` and capped like a vendor's.
    #[test]
    fn test_sink_retry_after_uses_date_and_the_cap() {
        let ahead = at("2026-03-18T08:10:00Z");
        let hec =
            headers(&[("date", "Wed, 18 Mar 2026 08:00:00 GMT"), ("retry-after", "Wed, 18 Mar 2026 08:00:30 GMT")]);
        let sink_retry_after = |h: &HeaderMap, now| receiver_retry_after(h, now, MeasureFrom::AnswerDate);
        assert_eq!(sink_retry_after(&hec, ahead), Some(secs(30)));
        assert_eq!(sink_retry_after(&headers(&[("retry-after", "86400")]), ahead), Some(SINK_MAX_RETRY_AFTER));
        assert_eq!(sink_retry_after(&headers(&[("retry-after", "soon")]), ahead), None);
    }

    /// Pins the readings' differences: a vendor's answer is measured against its `Date`, takes
    /// Aitronos' header too and is not capped here; a receiver's (HEC, OTLP/HTTP) is measured
    /// from our "now", reads `Retry-After` alone and is capped at 15 minutes.
    #[test]
    fn test_vendor_and_receiver_readings() {
        let now = at("2026-03-18T08:10:00Z");
        let dated =
            headers(&[("date", "Wed, 18 Mar 2026 08:00:00 GMT"), ("retry-after", "Wed, 18 Mar 2026 08:10:30 GMT")]);
        assert_eq!(retry_after(&dated, now), Some(secs(630)), "vendor: from the answer's Date");
        assert_eq!(receiver_retry_after(&dated, now, MeasureFrom::Now), Some(secs(30)), "receiver: from now");
        let aitronos = headers(&[("x-ratelimit-retry-after", "42")]);
        assert_eq!(retry_after(&aitronos, now), Some(secs(42)));
        assert_eq!(receiver_retry_after(&aitronos, now, MeasureFrom::Now), None);
        let day = headers(&[("retry-after", "86400")]);
        assert_eq!(retry_after(&day, now), Some(secs(86_400)), "a source caps with its own max_retry_after");
        assert_eq!(receiver_retry_after(&day, now, MeasureFrom::Now), Some(SINK_MAX_RETRY_AFTER));
        let past = headers(&[("retry-after", "Wed, 18 Mar 2026 08:00:00 GMT")]);
        assert_eq!(receiver_retry_after(&past, now, MeasureFrom::Now), Some(Duration::ZERO));
        assert_eq!(receiver_retry_after(&headers(&[("retry-after", "-1")]), now, MeasureFrom::Now), None);
    }

    #[test]
    fn test_cap() {
        assert_eq!(cap(secs(10), secs(60)), (secs(10), false));
        assert_eq!(cap(secs(3600), secs(60)), (secs(60), true));
    }

    #[test]
    fn test_full_jitter_stays_under_the_exponential_ceiling() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(100).saturating_mul(1 << attempt.min(20)).min(b.max);
            assert!(full_jitter(&b, attempt, &mut rng) <= ceiling);
        }
    }
}
