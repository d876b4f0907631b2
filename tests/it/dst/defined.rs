//! The vendor definitions of issue 20 in the deterministic simulation: an Okta System Log source
//! and a GitHub Enterprise audit-log source, each `vendor = "<name>"` read from the shipped
//! `config/vendors.d/` and run by the same `sources::Source` loop as the built-in vendors,
//! against the contract simulators `okta_sim` and `github_sim` answering at the DST's vendor
//! clock (`SimTime::on_clock`: tokio's paused clock drives both sides, and their `Date` header is
//! the simulated time).
//!
//! Owns the draw of these sources (from a generator of its own, `seed ^ DEFINED_SALT`, so every
//! other draw of a seed is what it was before they existed), the record names the sims hold at
//! the stop, and the requests inside a wait one of them announced. It must not draw from the
//! scenario's generator, and must not decide a fault from anything but the seed (the sims decide
//! per request number from the knobs drawn here).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::contract_sim::{Faults, Served};
use super::super::github_sim::GithubOptions;
use super::super::okta_sim::OktaOptions;
use super::{Family, secs};

/// Salts the seed of every draw of the defined sources (their generator and their sims' faults).
pub const DEFINED_SALT: u64 = 0xDEF1_2020_DEF1_2020;

/// The defined vendors the simulation collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DefinedVendor {
    Okta,
    Github,
}

impl DefinedVendor {
    pub const ALL: [DefinedVendor; 2] = [DefinedVendor::Okta, DefinedVendor::Github];

    /// The definition's `[vendor] name`, also the source's name.
    pub fn name(self) -> &'static str {
        match self {
            DefinedVendor::Okta => "okta",
            DefinedVendor::Github => "github-enterprise",
        }
    }

    /// The definition's `product`: OCSF `metadata.product.name`.
    pub fn product(self) -> &'static str {
        match self {
            DefinedVendor::Okta => "Okta System Log",
            DefinedVendor::Github => "GitHub Enterprise Cloud",
        }
    }

    /// The record's id field (the definition's `answer.id`).
    fn id_field(self) -> &'static str {
        match self {
            DefinedVendor::Okta => "uuid",
            DefinedVendor::Github => "_document_id",
        }
    }

    /// The record name (`product:id`) of a source's dead letter (raw vendor bytes), if it is one.
    pub fn raw_key(self, raw: &[u8]) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
        Some(format!("{}:{}", self.product(), value[self.id_field()].as_str()?))
    }
}

/// One defined source and its simulated vendor.
#[derive(Clone, Debug)]
pub struct DefinedSpec {
    pub vendor: DefinedVendor,
    pub records: usize,
    /// The store is published over `span` ending `min_age` before the start, then `ahead` on past
    /// the start (records that arrive while the agent pages).
    pub span: Duration,
    pub min_age: Duration,
    pub ahead: Duration,
    pub late_permille: u32,
    pub max_lateness: Duration,
    /// Okta: requests per minute; GitHub: audit-log queries per hour.
    pub limit: u32,
    /// GitHub's primary limit per hour.
    pub primary_limit: u32,
    /// GitHub: 403 or 429 for a spent limit.
    pub spent_status: u16,
    /// GitHub: the `retry-after` of a secondary-limit storm, seconds.
    pub retry_after: u64,
    pub faults: Faults,
    pub lag: u64,
    pub overlap: u64,
    pub max_span: &'static str,
    pub poll: u64,
    pub page_size: u32,
    /// Requests per minute of the agent's own limiter, and its burst.
    pub quota: (u32, u32),
}

/// Whether seeds have defined sources: `AUDITRELAY_SIM_DEFINED=on` (every seed), `off` (none:
/// the scenarios exactly as before issue 20), else half the seeds, drawn from the seed.
pub fn defined_from_env() -> Option<bool> {
    match std::env::var("AUDITRELAY_SIM_DEFINED").as_deref().map(str::trim) {
        Ok("on") => Some(true),
        Ok("off") => Some(false),
        Ok("" | "seeded") | Err(_) => None,
        Ok(other) => panic!("AUDITRELAY_SIM_DEFINED={other:?}: on, off or seeded"),
    }
}

/// The defined sources of a seed, drawn from `seed ^ DEFINED_SALT` only; their faults follow the
/// vendor-side families the seed drew (`on`).
pub fn draw(seed: u64, forced: Option<bool>, on: &dyn Fn(Family) -> bool) -> Vec<DefinedSpec> {
    let mut rng = fastrand::Rng::with_seed(seed ^ DEFINED_SALT);
    let drawn = rng.bool();
    if !forced.unwrap_or(drawn) {
        return Vec::new();
    }
    let mut vendors: Vec<DefinedVendor> = DefinedVendor::ALL.into_iter().filter(|_| rng.bool()).collect();
    if vendors.is_empty() {
        vendors.push(DefinedVendor::ALL[rng.usize(..2)]);
    }
    let burst = on(Family::DenseBursts);
    vendors
        .into_iter()
        .map(|vendor| {
            let (max_span, span_secs) = [("1h", 3600), ("6h", 6 * 3600), ("1d", 86_400)][rng.usize(..3)];
            let lag = rng.u64(0..180);
            let overlap = rng.u64(0..600.min(span_secs / 2));
            let max_page = match vendor {
                DefinedVendor::Okta => 1000,
                DefinedVendor::Github => 100,
            };
            let mut s = DefinedSpec {
                vendor,
                // Fewer than a built-in vendor's: the default run's cost stays small (these seeds
                // have one or two more sources), while pages still split (page sizes from 5).
                records: if burst { rng.usize(40..150) } else { rng.usize(5..80) },
                span: if burst { secs(rng.u64(1..30)) } else { secs(rng.u64(3600..86_400)) },
                min_age: secs(rng.u64(0..900)),
                ahead: Duration::ZERO,
                late_permille: 0,
                max_lateness: Duration::ZERO,
                limit: match vendor {
                    DefinedVendor::Okta => 600,
                    DefinedVendor::Github => 1750,
                },
                primary_limit: 5000,
                spent_status: 403,
                retry_after: 60,
                faults: Faults { seed: seed ^ DEFINED_SALT ^ vendor as u64, ..Faults::default() },
                lag,
                overlap,
                max_span,
                poll: rng.u64(30..300),
                page_size: rng.u32(5..=max_page.min(100)),
                quota: match vendor {
                    DefinedVendor::Okta => (60, 1),
                    DefinedVendor::Github => (29, 1),
                },
            };
            let f = &mut s.faults;
            if on(Family::RateLimits) {
                // Budgets the agent's own limiter does not keep it under: the vendor's word decides.
                s.quota = (rng.u32(100..1000), rng.u32(1..10));
                f.rate_limited = rng.u32(0..100);
                match vendor {
                    DefinedVendor::Okta => s.limit = rng.u32(2..10),
                    DefinedVendor::Github => {
                        s.limit = rng.u32(5..60);
                        s.primary_limit = rng.u32(5..120);
                        s.spent_status = [403, 429][rng.usize(..2)];
                        s.retry_after = rng.u64(1..120);
                    }
                }
            }
            if on(Family::ServerErrors) {
                f.server_error = rng.u32(0..150);
                f.unavailable = rng.u32(0..100);
                f.slow = rng.u32(0..200);
                // Under the source's request_timeout (30 s): an answer the agent reads.
                f.slow_by = Duration::from_millis(rng.u64(100..20_000));
            }
            if on(Family::Malformed) {
                f.truncated = rng.u32(0..150);
                f.malformed = rng.u32(0..150);
                f.foreign_next = rng.u32(0..50);
            }
            if on(Family::InsertsWhilePaging) {
                s.ahead = secs(rng.u64(60..7200));
                f.duplicate = rng.u32(0..150);
                // An empty page with a next link: GitHub's pages are followed past it (an error,
                // the window retried). Okta's definition ends a window at an empty page
                // (`stop_on_empty`, its polling next link): a bounded Okta answer has no next link
                // once empty, so the fault is not Okta's contract.
                if vendor == DefinedVendor::Github {
                    f.empty_with_next = rng.u32(0..100);
                }
            }
            if on(Family::LateRecords) && lag + overlap > 0 {
                // Late, but within the source's lag + overlap: the contract the agent is built for.
                s.late_permille = rng.u32(1..500);
                s.max_lateness = secs(lag + overlap);
            }
            s
        })
        .collect()
}

impl DefinedSpec {
    fn start(&self, t0: DateTime<Utc>) -> DateTime<Utc> {
        t0 - chrono::Duration::from_std(self.span + self.min_age).unwrap()
    }

    pub fn okta(&self, t0: DateTime<Utc>) -> OktaOptions {
        OktaOptions {
            seed: self.faults.seed,
            records: self.records,
            start: self.start(t0),
            span: self.span + self.min_age + self.ahead,
            late_permille: self.late_permille,
            max_lateness: self.max_lateness,
            rate_limit: self.limit,
            now: None,
            faults: self.faults.clone(),
            ..OktaOptions::default()
        }
    }

    pub fn github(&self, t0: DateTime<Utc>) -> GithubOptions {
        GithubOptions {
            seed: self.faults.seed,
            records: self.records,
            start: self.start(t0),
            span: self.span + self.min_age + self.ahead,
            late_permille: self.late_permille,
            max_lateness: self.max_lateness,
            primary_limit: self.primary_limit,
            audit_log_limit: self.limit,
            spent_status: self.spent_status,
            secondary_retry_after: self.retry_after,
            now: None,
            faults: self.faults.clone(),
            ..GithubOptions::default()
        }
    }
}

/// Record names (`product:id`) of `ids` whose arrival is at or before `stop` (epoch ms).
pub fn held_at(vendor: DefinedVendor, ids: impl Iterator<Item = (String, i64)>, stop: i64) -> HashSet<String> {
    ids.filter(|(_, arrival)| *arrival <= stop).map(|(id, _)| format!("{}:{id}", vendor.product())).collect()
}

/// Requests that arrived inside a wait an earlier answer announced (`Served::until`), except a
/// wait announced to a process that crashed with that request in flight (never read).
pub fn early_requests(name: &str, served: &[Served], crashes_at: &[DateTime<Utc>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut windows: Vec<&Served> = Vec::new();
    for r in served {
        for p in &windows {
            let until = p.until.expect("a window has an end");
            if r.at > p.answered && r.at < until {
                let after = (r.at - p.answered).num_milliseconds() as f64 / 1000.0;
                let wait = (until - p.answered).num_milliseconds() as f64 / 1000.0;
                out.push(format!(
                    "{name} request {} at {} ({after:.3}s after its {} announced a {wait:.3}s wait; answered {})",
                    r.n, r.at, p.status, r.status
                ));
                break;
            }
        }
        let unread = crashes_at.iter().any(|c| *c >= r.at && *c <= r.answered + chrono::Duration::milliseconds(1));
        if r.until.is_some() && !unread {
            windows.push(r);
        }
    }
    out
}

/// Answers by status and faults served by kind, for the summary.
pub fn tally(served: &[Served], into: &mut BTreeMap<String, u64>) {
    for r in served {
        *into.entry(format!("status {}", r.status)).or_insert(0) += 1;
        if let Some(f) = &r.fault {
            let kind = format!("{f:?}");
            let kind = kind.split('(').next().unwrap_or_default().to_owned();
            *into.entry(format!("fault {kind}")).or_insert(0) += 1;
        }
        if r.until.is_some() {
            *into.entry("announced waits".to_owned()).or_insert(0) += 1;
        }
    }
}
