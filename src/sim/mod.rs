//! The vendor simulator: an HTTP server on loopback that serves the vendors' audit-log contracts
//! (`../shared/vendors/README.md`) from seeded, deterministic record stores, with fault knobs.
//!
//! This file owns what every vendor shares: starting and stopping the server, the knobs, the
//! organizations (tenants) each vendor serves and their credentials, the fixed-window rate limiter
//! (one window per vendor *and* organization or credential: several organizations of one vendor
//! are independent clients), fault injection (stalls, latency, 5xx, malformed bodies), the request
//! log and the counters. A vendor's simulator half is its `sim.rs` (`src/vendors/<name>/sim.rs`,
//! reachable here as `sim::<name>`): its routes, its record store, its authentication, its error
//! envelope, its own contract knobs and `simulate` flags. This file reaches a vendor only through
//! the [`SimContract`] trait, dispatched in one place: the [`sim_vendors!`] list below. Every wait
//! goes through [`Clock`], so tests that pause tokio's time are deterministic; every fault is
//! decided by hashing the seed with the request number, so a run with the same seed fails the
//! same requests.
//!
//! It deliberately does not bind anything but loopback from the command line (`run_simulate`), and
//! it never sleeps on the real clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::vendors::Vendor;

// The vendors' own types under their former names (`sim::AitronosSimOptions`, …); a new vendor's
// are reached through its module (`sim::<name>::…`) and need no line here.
pub use aitronos::{AitronosArgs, AitronosSimOptions};
pub use astronomer::{AstronomerArgs, AstronomerEncoding, AstronomerSimOptions};
pub use configcat::{ConfigCatArgs, ConfigCatSimOptions};
pub use datafold::{DatafoldArgs, DatafoldSimOptions};

/// One vendor's simulator: everything this file needs to serve it. Implemented in the vendor's
/// `sim.rs` on its [`Vendor`] type, and listed once in [`sim_vendors!`].
pub trait SimContract: Vendor {
    /// The vendor's own knobs: the field `SimOptions.<module>`.
    type Options: Clone + std::fmt::Debug + Default + Send + Sync + 'static;
    /// One organization's records (and what it needs to generate arrivals).
    type Store: Send + 'static;
    /// The vendor's `auditrelay simulate` flags, under its own help heading
    /// (`#[command(next_help_heading = "…")]`).
    type Args: clap::Args + clap::FromArgMatches + Clone + std::fmt::Debug + Send + Sync + 'static;

    /// The limit the simulator enforces unless told otherwise: `requests` per `period`.
    const RATE_LIMIT: (u32, Duration);
    /// The first organization keeps the plain seed (see [`org_seed`]).
    const FIRST_ORGANIZATION_KEEPS_SEED: bool = false;
    /// An answer's body is gzip: a malformed one is gzip-shaped junk, and its HTML page comes
    /// without `Content-Encoding`.
    const GZIP_BODY: bool = false;
    /// The records have no id: their keys ([`Sim::record_keys`]) are the records themselves.
    const KEYS_ARE_RECORDS: bool = false;

    /// Path of the organization's audit-log endpoint.
    fn audit_log_path(organization: &str) -> String;
    /// The vendor's routes; every one sits behind the shared gate (rate limit, faults, log).
    fn routes() -> Router<Arc<Shared>>;
    /// The organizations `opts` describes, with their credentials.
    fn tenants(opts: &Self::Options) -> Vec<Tenant>;
    /// The credential of an unknown organization: of the right kind, and accepted nowhere.
    fn no_credential() -> SimCredential;
    /// How `auditrelay simulate` shows a credential.
    fn describe_credential(credential: &SimCredential) -> String {
        credential.describe()
    }
    /// Lines `auditrelay simulate` prints before the organizations (`key=value\n` each).
    fn describe(_opts: &Self::Options) -> String {
        String::new()
    }
    /// The records of organization `index` (`organization` its id), seeded with `seed`, at `now`.
    fn generate(seed: u64, opts: &Self::Options, index: usize, organization: &str, now: DateTime<Utc>) -> Self::Store;
    /// Sets the records seeded per organization.
    fn set_records(opts: &mut Self::Options, records: usize);
    /// The dedupe key of every record in `store`, in the order the vendor serves them.
    fn record_keys(store: &Self::Store) -> Vec<String>;
    /// Every record in `store` as the exact JSON text an intact answer carries it, in the order
    /// the vendor serves them.
    fn records_json(store: &Self::Store) -> Vec<String>;
    /// The vendor's error answer for `status`, with the machine `code` (for the vendors that have
    /// one) and the text `message`.
    fn error(status: StatusCode, code: &str, message: &str, ctx: &RequestCtx) -> Response;
    /// Announces the budget on an answer, in the vendor's own headers; by default none.
    fn announce_limit(_headers: &mut HeaderMap, _max: u32, _remaining: u32, _end: DateTime<Utc>) {}
    /// Whose budget a request spends: by default the organization in the path.
    fn client_key(req: &Request) -> String {
        let mut segments = req.uri().path().split('/');
        segments.find(|s| *s == "organizations");
        segments.next().unwrap_or_default().to_owned()
    }
    /// The vendor's own faults `auditrelay demo` turns on, besides the shared ones.
    fn demo_faults(_opts: &mut Self::Options) {}
    /// The options `args` describe; `common` holds the flags every vendor shares
    /// (`--records-span`, `--records-min-age`).
    fn options(args: &Self::Args, common: &SimulateArgs) -> Self::Options;
    /// The vendor's `--<name>-rate-limit`, which overrides `--rate-limit`.
    fn rate_limit(args: &Self::Args) -> Option<RateLimitSetting>;
}

/// Generates, from the list of vendors the simulator serves, everything that names each of them:
/// the modules `sim::<name>`, the closed enum [`SimVendor`] and its dispatch to [`SimContract`],
/// the fields `SimOptions.<name>` and `VendorArgs.<name>`, each vendor's organizations and stores,
/// and its routes. Each entry is `module::Type = number`: the number orders [`SimVendor::ALL`] and
/// seeds the vendor's records ([`org_seed`]), so it never changes; a new vendor takes the next one.
macro_rules! sim_vendors {
    ($($module:ident :: $ty:ident = $number:literal),+ $(,)?) => {
        $(pub use crate::vendors::$module::sim as $module;)+

        /// The vendors the simulator serves. Each has its own routes, error envelope, rate-limit
        /// signals and default limit; its rate-limit windows are kept per organization (or, for a
        /// vendor whose path names no organization, per credential).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum SimVendor {
            $($ty = $number,)+
        }

        impl SimVendor {
            /// Every vendor, by number (the order they joined the simulator).
            pub const ALL: [SimVendor; [$(SimVendor::$ty),+].len()] = by_number([$(SimVendor::$ty),+]);

            /// Lower-case name, as in `/_sim/records/{name}` and the `simulate` output.
            pub fn name(self) -> &'static str {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as Vendor>::NAME,)+
                }
            }

            /// The limit the simulator enforces unless told otherwise ([`SimContract::RATE_LIMIT`]).
            pub fn default_rate_limit(self) -> (u32, Duration) {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::RATE_LIMIT,)+
                }
            }

            /// Path of the organization's audit-log endpoint (a vendor whose path names no
            /// organization ignores it: the credential decides).
            pub fn audit_log_path(self, organization: &str) -> String {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::audit_log_path(organization),)+
                }
            }

            /// Whether the vendor's record keys are the records themselves (they have no id).
            pub fn keys_are_records(self) -> bool {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::KEYS_ARE_RECORDS,)+
                }
            }

            fn first_organization_keeps_seed(self) -> bool {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::FIRST_ORGANIZATION_KEEPS_SEED,)+
                }
            }

            fn gzip_body(self) -> bool {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::GZIP_BODY,)+
                }
            }

            /// The vendor's error answer for `status` with its machine `code`.
            fn error(self, status: StatusCode, code: &str, ctx: &RequestCtx) -> Response {
                let message = status.canonical_reason().unwrap_or("Error");
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::error(status, code, message, ctx),)+
                }
            }

            /// Announces the budget on an answer, in the vendor's own headers.
            fn announce_limit(self, h: &mut HeaderMap, max: u32, remaining: u32, end: DateTime<Utc>) {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::announce_limit(h, max, remaining, end),)+
                }
            }

            /// Whose budget a request spends ([`SimContract::client_key`]).
            fn client_key(self, req: &Request) -> String {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::client_key(req),)+
                }
            }

            fn no_credential(self) -> SimCredential {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::no_credential(),)+
                }
            }

            fn describe_credential(self, credential: &SimCredential) -> String {
                match self {
                    $(SimVendor::$ty => <crate::vendors::$module::$ty as SimContract>::describe_credential(credential),)+
                }
            }

            /// See [`sample_records`]; `seed` is the organization's.
            fn sample_records(self, n: usize, seed: u64, now: DateTime<Utc>) -> Vec<String> {
                match self {
                    $(SimVendor::$ty => sample::<crate::vendors::$module::$ty>(n, seed, now),)+
                }
            }
        }

        /// Everything the simulator can be told; `Default` is every vendor well-behaved, one
        /// organization each, with its documented (or assumed) rate limit.
        #[derive(Clone, Debug)]
        pub struct SimOptions {
            /// Seeds the record stores and every fault decision.
            pub seed: u64,
            $(
                #[doc = concat!("The knobs of ", stringify!($ty), " (`sim::", stringify!($module), "`).")]
                pub $module: <crate::vendors::$module::$ty as SimContract>::Options,
            )+
            pub faults: Faults,
        }

        impl Default for SimOptions {
            fn default() -> Self {
                SimOptions {
                    seed: 42,
                    $($module: Default::default(),)+
                    faults: Faults::default(),
                }
            }
        }

        impl SimOptions {
            /// Seeds `records` records per organization of every vendor.
            pub fn set_records(&mut self, records: usize) {
                $(<crate::vendors::$module::$ty as SimContract>::set_records(&mut self.$module, records);)+
            }

            /// Turns on every vendor's own faults of `auditrelay demo`
            /// ([`SimContract::demo_faults`]).
            pub fn demo_faults(&mut self) {
                $(<crate::vendors::$module::$ty as SimContract>::demo_faults(&mut self.$module);)+
            }

            /// The vendors' lines of `auditrelay simulate` before the organizations.
            fn describe_vendors(&self) -> String {
                let mut out = String::new();
                $(out += &<crate::vendors::$module::$ty as SimContract>::describe(&self.$module);)+
                out
            }
        }

        /// The vendors' own `simulate` flags, one help heading each (boxed, so that the `Command`
        /// enum holding these stays small).
        #[derive(Clone, Debug, clap::Args)]
        pub struct VendorArgs {
            $(
                #[command(flatten)]
                pub $module: Box<<crate::vendors::$module::$ty as SimContract>::Args>,
            )+
        }

        impl VendorArgs {
            /// Sets each vendor's options and rate-limit override in `o` from its flags.
            fn apply(&self, common: &SimulateArgs, o: &mut SimOptions) {
                $(
                    o.$module = <crate::vendors::$module::$ty as SimContract>::options(&self.$module, common);
                    if let Some(limit) = <crate::vendors::$module::$ty as SimContract>::rate_limit(&self.$module) {
                        o.faults.vendor_rate_limits.insert(SimVendor::$ty, limit);
                    }
                )+
            }
        }

        /// Every vendor's organizations, index-aligned with its [`Stores`].
        pub(crate) struct Tenants {
            $($module: Vec<Tenant>,)+
        }

        impl Tenants {
            fn new(opts: &SimOptions) -> Tenants {
                Tenants {
                    $($module: <crate::vendors::$module::$ty as SimContract>::tenants(&opts.$module),)+
                }
            }

            pub(crate) fn of(&self, v: SimVendor) -> &[Tenant] {
                match v {
                    $(SimVendor::$ty => &self.$module,)+
                }
            }
        }

        /// Every vendor's record stores, one per organization, index-aligned with [`Tenants`].
        pub(crate) struct Stores {
            $(pub(crate) $module: Vec<<crate::vendors::$module::$ty as SimContract>::Store>,)+
        }

        impl Stores {
            /// Seeds every organization's store at `now`.
            fn generate(opts: &SimOptions, tenants: &Tenants, now: DateTime<Utc>) -> Stores {
                Stores {
                    $(
                        $module: (tenants.$module.iter().enumerate())
                            .map(|(i, t)| {
                                let seed = org_seed(opts.seed, SimVendor::$ty, i);
                                <crate::vendors::$module::$ty as SimContract>::generate(seed, &opts.$module, i, &t.id, now)
                            })
                            .collect(),
                    )+
                }
            }

            /// Record keys of store `i` of `v` (see [`Sim::record_keys`]).
            fn keys(&self, v: SimVendor, i: usize) -> Vec<String> {
                let keys = match v {
                    $(SimVendor::$ty => self.$module.get(i).map(<crate::vendors::$module::$ty as SimContract>::record_keys),)+
                };
                keys.unwrap_or_default()
            }
        }

        /// Every vendor's routes, each behind the [`gate`] of its vendor.
        fn vendor_routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
            let vendor = |v: SimVendor, routes: Router<Arc<Shared>>| {
                routes.route_layer(middleware::from_fn_with_state((shared.clone(), v), gate))
            };
            Router::new()
                $(.merge(vendor(SimVendor::$ty, <crate::vendors::$module::$ty as SimContract>::routes())))+
        }
    };
}

sim_vendors!(aitronos::Aitronos = 0, astronomer::Astronomer = 1, configcat::ConfigCat = 3, datafold::Datafold = 2);

/// `all` ordered by number (the vendors' discriminants), in a const context.
const fn by_number<const N: usize>(mut all: [SimVendor; N]) -> [SimVendor; N] {
    let mut i = 1;
    while i < N {
        let mut j = i;
        while j > 0 && (all[j - 1] as u8) > (all[j] as u8) {
            let swap = all[j];
            all[j] = all[j - 1];
            all[j - 1] = swap;
            j -= 1;
        }
        i += 1;
    }
    all
}

impl SimVendor {
    fn from_name(name: &str) -> Option<SimVendor> {
        SimVendor::ALL.into_iter().find(|v| v.name() == name)
    }
}

/// As its lower-case name (the request log, `GET /_sim/…` answers).
impl Serialize for SimVendor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit_variant("SimVendor", *self as u32, self.name())
    }
}

/// Its lower-case name, as a command-line value.
impl clap::ValueEnum for SimVendor {
    fn value_variants<'a>() -> &'a [Self] {
        &SimVendor::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// The instant [`sample_records`] seeds its stores at: 2026-03-18T12:00:00Z.
const SAMPLE_NOW_SECS: i64 = 1_773_835_200;

/// `n` records of `vendor`, each as the exact JSON text an intact answer carries it: the record
/// object of an Aitronos `items`, ConfigCat `data` or Datafold `logs` array, or an Astronomer
/// NDJSON line (without its `\n`). They are the records of the vendor's first organization
/// that [`Sim::start`] seeds with `SimOptions { seed, .. }`, default vendor knobs and `records = n`
/// on a clock at 2026-03-18T12:00:00Z, in the order the vendor serves them (the vendor's own
/// generator and serialization, no server). For benchmarks and tests of reading and mapping.
pub fn sample_records(vendor: SimVendor, n: usize, seed: u64) -> Vec<String> {
    let now = DateTime::from_timestamp(SAMPLE_NOW_SECS, 0).unwrap_or_default();
    vendor.sample_records(n, org_seed(seed, vendor, 0), now)
}

/// [`sample_records`] of `V`: the store of its first organization, default knobs but `n` records.
fn sample<V: SimContract>(n: usize, seed: u64, now: DateTime<Utc>) -> Vec<String> {
    let mut opts = V::Options::default();
    V::set_records(&mut opts, n);
    let tenants = V::tenants(&opts);
    tenants.first().map(|t| V::records_json(&V::generate(seed, &opts, 0, &t.id, now))).unwrap_or_default()
}

/// How a client authenticates to one simulated organization. Simulator credentials are made up
/// and printed by `auditrelay simulate`; they are not secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimCredential {
    /// Aitronos `X-API-Key: <key>` (or `Authorization: Bearer <key>`); Datafold
    /// `Authorization: Key <key>`.
    ApiKey(String),
    /// Astronomer `Authorization: Bearer <token>`.
    Bearer(String),
    /// ConfigCat `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: String },
}

impl SimCredential {
    /// How `auditrelay simulate` shows it, unless the vendor shows it its own way
    /// ([`SimContract::describe_credential`]).
    pub(crate) fn describe(&self) -> String {
        match self {
            SimCredential::ApiKey(k) => format!("X-API-Key: {k}"),
            SimCredential::Bearer(t) => format!("Authorization: Bearer {t}"),
            SimCredential::Basic { username, password } => format!("Basic {username}:{password}"),
        }
    }
}

/// One simulated organization of a vendor: its id and the credential that reaches it.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub(crate) id: String,
    pub(crate) credential: SimCredential,
}

/// `n` organizations with ids numbered from `organization` ([`nth_id`]), the `i`-th reached by
/// `credential(i)`.
pub(crate) fn numbered_tenants(
    n: usize,
    organization: &str,
    credential: impl Fn(usize) -> SimCredential,
) -> Vec<Tenant> {
    (0..n).map(|i| Tenant { id: nth_id(organization, i), credential: credential(i) }).collect()
}

/// The `i`-th (0-based) of a series of ids or credentials starting at `base`: `base` itself for
/// the first, then the trailing decimal number counted up with its width kept
/// (`ORG_DEMO000000000001` → `ORG_DEMO000000000002`), or `-2`, `-3`, … appended when `base` ends
/// in no number.
pub(crate) fn nth_id(base: &str, i: usize) -> String {
    if i == 0 {
        return base.to_owned();
    }
    let head = base.trim_end_matches(|c: char| c.is_ascii_digit());
    let digits = &base[head.len()..];
    match digits.parse::<u128>() {
        Ok(n) if !digits.is_empty() => format!("{head}{:0width$}", n + i as u128, width = digits.len()),
        _ => format!("{base}-{}", i + 1),
    }
}

/// The seed of organization `org` of `vendor`. The first organization of a vendor that asks for
/// it ([`SimContract::FIRST_ORGANIZATION_KEEPS_SEED`]: the first vendor) keeps the plain seed, so
/// its ids are those it had when it was the only one.
fn org_seed(seed: u64, vendor: SimVendor, org: usize) -> u64 {
    if vendor.first_organization_keeps_seed() && org == 0 {
        return seed;
    }
    seed ^ ((vendor as u64 + 1) << 56) ^ (org as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Seeded records lie in `[now - span, now - min_age]`.
pub(crate) fn seeded_range(now: DateTime<Utc>, span: Duration, min_age: Duration) -> (DateTime<Utc>, DateTime<Utc>) {
    (now - chrono_duration(span), now - chrono_duration(min_age))
}

/// The random stream of record `i` of a store seeded with `seed`, for a `purpose` (1: its time,
/// 2: its content).
pub(crate) fn record_rng(seed: u64, i: u64, purpose: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed.rotate_left(17) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ purpose)
}

/// `count` instants in `[start, end]` drawn from the records' time streams, truncated to
/// `precision_us` (1000 for millisecond timestamps), in record order.
pub(crate) fn seeded_times(
    seed: u64,
    count: usize,
    (start, end): (DateTime<Utc>, DateTime<Utc>),
    precision_us: i64,
) -> Vec<DateTime<Utc>> {
    let span_us = (end - start).num_microseconds().unwrap_or(0).max(0) as u64;
    (0..count as u64)
        .map(|i| {
            let t = start + chrono::Duration::microseconds(record_rng(seed, i, 1).u64(..=span_us) as i64);
            truncate_to(t, precision_us)
        })
        .collect()
}

/// `t` rounded down to a multiple of `precision_us` microseconds.
pub(crate) fn truncate_to(t: DateTime<Utc>, precision_us: i64) -> DateTime<Utc> {
    let us = t.timestamp_micros();
    DateTime::from_timestamp_micros(us - us.rem_euclid(precision_us.max(1))).unwrap_or(t)
}

/// A rate limit: the vendor's own, none, or a fixed window of `requests` per `per`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RateLimitSetting {
    /// [`SimVendor::default_rate_limit`].
    #[default]
    VendorDefault,
    Off,
    Fixed {
        requests: u32,
        per: Duration,
    },
}

/// Fault knobs, applied to every vendor endpoint (not to `/_sim/*`).
#[derive(Clone, Debug)]
pub struct Faults {
    /// Each answer waits this long on the clock before it is sent.
    pub page_latency: Duration,
    /// Fixed window per vendor and organization (or credential); by default each vendor's own
    /// limit ([`SimVendor::default_rate_limit`]).
    pub rate_limit: RateLimitSetting,
    /// Overrides `rate_limit` for one vendor.
    pub vendor_rate_limits: HashMap<SimVendor, RateLimitSetting>,
    /// How a 429 says when to come back.
    pub retry_after: RetryAfterMode,
    /// Share (0..=1) of requests answered 500, 502 or 503.
    pub error_rate: f64,
    /// Share (0..=1) of 200 answers whose whole body is replaced by a malformed one.
    pub malformed_rate: f64,
    /// After each answer served (each page, for paged vendors), this many new records arrive in
    /// the organization's store with event time = now.
    pub arrivals_per_page: usize,
    /// Aitronos' arrivals carry an event time this long before the moment they arrive: late
    /// records, indexed after their event time (found only by a window's overlap).
    pub arrivals_age: Duration,
    /// The N-th vendor request (1-based, over all vendors) is never answered (until the server
    /// shuts down).
    pub stall_at_request: Option<u64>,
    /// Budget headers on every answer (default), for the vendors that document some (Aitronos
    /// `X-RateLimit-*`, ConfigCat `X-Rate-Limit-*`). When false the budget vanishes unannounced
    /// (as when the limit is shared with other integrations) and a 429 says when to return only
    /// through `Retry-After` — or, with `RetryAfterMode::Omit`, through the reset header.
    pub limit_headers: bool,
    /// Arrivals (`arrivals_per_page`) are stamped up to this long before "now" (a vendor that
    /// indexes records late): each arrival's event time is drawn from `[now - lateness, now]`.
    pub arrival_lateness: Duration,
    /// Share (0..=1) of requests answered 401 although the credential is valid (a key rotation
    /// at the vendor, an authentication backend hiccup).
    pub spurious_unauthorized_rate: f64,
    /// These vendor requests (1-based numbers, over all vendors) are answered 401 although the
    /// credential is valid: a vendor's auth layer during key rotation or a cache miss.
    pub spurious_unauthorized: Vec<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            page_latency: Duration::ZERO,
            rate_limit: RateLimitSetting::VendorDefault,
            vendor_rate_limits: HashMap::new(),
            retry_after: RetryAfterMode::Seconds,
            error_rate: 0.0,
            malformed_rate: 0.0,
            arrivals_per_page: 0,
            arrivals_age: Duration::ZERO,
            stall_at_request: None,
            limit_headers: true,
            arrival_lateness: Duration::ZERO,
            spurious_unauthorized_rate: 0.0,
            spurious_unauthorized: Vec::new(),
        }
    }
}

impl Faults {
    /// The window in force for `vendor`: `(requests, period)`, or `None` when there is no limit.
    pub fn rate_limit_for(&self, vendor: SimVendor) -> Option<(u32, Duration)> {
        match self.vendor_rate_limits.get(&vendor).copied().unwrap_or(self.rate_limit) {
            RateLimitSetting::VendorDefault => Some(vendor.default_rate_limit()),
            RateLimitSetting::Off => None,
            RateLimitSetting::Fixed { requests, per } => Some((requests, per)),
        }
    }
}

/// The form of `Retry-After` on a 429.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryAfterMode {
    /// Whole seconds until the window ends, rounded up.
    #[default]
    Seconds,
    /// The window end as an HTTP-date, rounded up to the next whole second.
    HttpDate,
    /// No `Retry-After`; only the vendor's reset header (if it has one) says when. Astronomer and
    /// Datafold have none: clients fall back to their own wait (60 s).
    Omit,
}

/// Counters, readable in-process ([`Sim::stats`], [`Sim::vendor_stats`]) or as JSON at
/// `GET /_sim/stats` and `GET /_sim/stats/{vendor}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SimStats {
    /// Vendor requests received (stalled ones included).
    pub requests: u64,
    /// 200 answers with an intact body.
    pub ok: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// 5xx answers (injected faults).
    pub server_errors: u64,
    /// 200 answers whose body was replaced by a malformed one, or (Astronomer) cut short.
    pub malformed: u64,
    /// 401 and 403 answers.
    pub unauthorized: u64,
    /// Requests that arrived before the instant the previous 429 (to the same vendor and
    /// organization) announced.
    pub retry_after_violations: u64,
    /// Records in intact 200 answers (Astronomer: lines that are records, not injected garbage).
    pub served_records: u64,
}

/// One vendor request, as it arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestRecord {
    pub vendor: SimVendor,
    /// `GET`, `POST`…: which method asked (a vendor definition must ask as the built-in does).
    pub method: String,
    pub at: DateTime<Utc>,
    pub path: String,
    pub query: String,
    /// The request body (Datafold sends its window as JSON on a GET), lossily as UTF-8.
    pub body: String,
    /// The status sent; 0 while (or if) the request is never answered.
    pub status: u16,
    /// It arrived before the instant the previous 429 (to the same vendor and organization)
    /// announced: one of [`SimStats::retry_after_violations`].
    pub early: bool,
    /// Whose rate-limit window it counts in: the organization id of the path, or (Datafold, one
    /// organization per API key) the `Authorization` header. Tells the sources apart (`bench
    /// sources` times each one's first request); never serialized, as it may hold the credential.
    #[serde(skip)]
    pub client: String,
}

/// The command line of `auditrelay simulate`: one flag per knob. The vendors' own flags sit in
/// one group each ([`VendorArgs`], after the shared ones).
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to serve on; loopback only.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: SocketAddr,
    /// Seed of the record stores and of every fault decision.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The oldest seeded record (of every vendor) is at most this old at start.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub records_span: Duration,
    /// The newest seeded record is this old at start.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub records_min_age: Duration,
    /// Delay of every answer, e.g. `250ms`.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub page_latency: Duration,
    /// Fixed-window limit of every vendor, per organization: `vendor` (each vendor's own: Aitronos
    /// 100/1m, Astronomer 2/1m, ConfigCat and Datafold 60/1m), `off`, or `REQUESTS/PERIOD`.
    #[arg(long, default_value = "vendor", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimitSetting,
    #[arg(long, value_enum, default_value_t = RetryAfterMode::Seconds)]
    pub retry_after: RetryAfterMode,
    /// Share (0..=1) of requests answered 500/502/503.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub error_rate: f64,
    /// Share (0..=1) of 200 answers with a malformed body.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub malformed_rate: f64,
    /// New records added after each answer served.
    #[arg(long, default_value_t = 0)]
    pub arrivals_per_page: usize,
    /// The N-th request (1-based) is never answered.
    #[arg(long)]
    pub stall_at_request: Option<u64>,
    /// No budget headers (the budget vanishes unannounced); a 429 then says when to return only
    /// by `Retry-After`, or by the reset header with `--retry-after omit`.
    #[arg(long)]
    pub no_limit_headers: bool,
    /// These requests (1-based, comma-separated) are answered 401 although the credential is
    /// valid (a transient refusal during key rotation).
    #[arg(long, value_delimiter = ',')]
    pub spurious_unauthorized: Vec<u64>,
    #[command(flatten)]
    pub vendors: VendorArgs,
}

/// `--rate-limit`: `vendor`, `off` or `REQUESTS/PERIOD`.
pub(crate) fn parse_rate_limit(s: &str) -> Result<RateLimitSetting, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(RateLimitSetting::Off);
    }
    if s.eq_ignore_ascii_case("vendor") {
        return Ok(RateLimitSetting::VendorDefault);
    }
    let (n, per) = s.split_once('/').ok_or("expected REQUESTS/PERIOD (e.g. 100/1m), vendor or off")?;
    let n: u32 = n.trim().parse().map_err(|e| format!("bad request count {n:?}: {e}"))?;
    let per = humantime::parse_duration(per.trim()).map_err(|e| format!("bad period {per:?}: {e}"))?;
    if n == 0 || per.is_zero() {
        return Err("requests and period must be positive".into());
    }
    Ok(RateLimitSetting::Fixed { requests: n, per })
}

pub(crate) fn parse_share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a share between 0 and 1")),
    }
}

impl SimulateArgs {
    /// The options these flags describe.
    pub fn options(&self) -> SimOptions {
        let mut o = SimOptions {
            seed: self.seed,
            faults: Faults {
                page_latency: self.page_latency,
                rate_limit: self.rate_limit,
                vendor_rate_limits: HashMap::new(),
                retry_after: self.retry_after,
                error_rate: self.error_rate,
                malformed_rate: self.malformed_rate,
                arrivals_per_page: self.arrivals_per_page,
                arrivals_age: Duration::ZERO,
                stall_at_request: self.stall_at_request,
                limit_headers: !self.no_limit_headers,
                spurious_unauthorized: self.spurious_unauthorized.clone(),
                ..Faults::default()
            },
            ..SimOptions::default()
        };
        self.vendors.apply(self, &mut o);
        o
    }
}

/// `auditrelay simulate`: serve on loopback until Ctrl-C or SIGTERM, on the system clock.
pub async fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        anyhow::bail!("--listen {}: the simulator serves loopback only (127.0.0.1 or ::1)", args.listen);
    }
    let sim = Sim::start(args.listen, args.options(), Clock::system())
        .await
        .map_err(|e| anyhow::anyhow!("simulator: cannot listen on {}: {e}", args.listen))?;
    print!("{}", sim.describe());
    let stopped = shutdown_signal().await;
    sim.shutdown().await;
    stopped.map_err(|e| anyhow::anyhow!("simulator: waiting for a signal: {e}"))
}

async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await
}

/// A running simulator. Dropping it leaves the server running until the runtime ends; call
/// [`Sim::shutdown`] to stop it (stalled requests are released then).
pub struct Sim {
    addr: SocketAddr,
    base_url: url::Url,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Sim {
    /// Binds `listen` (use `127.0.0.1:0` in tests), seeds the stores at `clock.now_utc()` and serves.
    pub async fn start(listen: SocketAddr, opts: SimOptions, clock: Clock) -> std::io::Result<Sim> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let base_url = url::Url::parse(&format!("http://{addr}/")).map_err(std::io::Error::other)?;
        let now = clock.now_utc();
        let tenants = Tenants::new(&opts);
        let state = Mutable {
            stats: SimStats::default(),
            vendor_stats: HashMap::new(),
            log: Vec::new(),
            gates: HashMap::new(),
            malformed_turn: 0,
            stores: Stores::generate(&opts, &tenants, now),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            clock,
            opts,
            tenants,
            shutdown: CancellationToken::new(),
            arrived: watch::Sender::new(0),
            arrivals: AtomicU64::new(0),
            arrivals_closed: AtomicBool::new(false),
        });
        let app = vendor_routes(&shared)
            .route(
                "/_sim/stats",
                get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.state().stats.clone()) }),
            )
            .route("/_sim/stats/{vendor}", get(vendor_stats))
            .route("/_sim/records/{vendor}", get(first_org_keys))
            .route("/_sim/records/{vendor}/{organization}", get(org_keys))
            .with_state(shared.clone());
        let stop = shared.shutdown.clone();
        let server =
            tokio::spawn(
                async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await },
            );
        tracing::info!(%addr, "simulator listening");
        Ok(Sim { addr, base_url, shared, server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/`, the base of every vendor's API.
    pub fn base_url(&self) -> url::Url {
        self.base_url.clone()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// `base_url` joined with [`SimVendor::audit_log_path`].
    pub fn audit_log_url(&self, v: SimVendor, organization: &str) -> url::Url {
        let mut url = self.base_url.clone();
        url.set_path(&v.audit_log_path(organization));
        url
    }

    /// Counters over every vendor.
    pub fn stats(&self) -> SimStats {
        self.shared.state().stats.clone()
    }

    /// Counters of one vendor's requests.
    pub fn vendor_stats(&self, v: SimVendor) -> SimStats {
        self.shared.state().vendor_stats.get(&v).cloned().unwrap_or_default()
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.state().log.clone()
    }

    /// The vendor's organization ids, first one first (Datafold: labels, one per API key).
    pub fn organizations(&self, v: SimVendor) -> Vec<String> {
        self.shared.tenants.of(v).iter().map(|t| t.id.clone()).collect()
    }

    /// How to authenticate to `organization`; for an unknown one a credential of the right kind
    /// that every request fails with.
    pub fn credential(&self, v: SimVendor, organization: &str) -> SimCredential {
        let tenant = self.shared.tenants.of(v).iter().find(|t| t.id == organization);
        tenant.map_or_else(|| v.no_credential(), |t| t.credential.clone())
    }

    /// The dedupe key of every record in the organization's store, arrivals included, in the
    /// order the vendor serves them: Aitronos `id`, ConfigCat `auditLogId` (decimal), Datafold
    /// `event_uuid`; Astronomer has no id, so its raw NDJSON lines ([`Sim::astronomer_lines`]).
    /// Empty for an unknown organization.
    pub fn record_keys(&self, v: SimVendor, organization: &str) -> Vec<String> {
        let Some(i) = self.shared.tenant_index(v, organization) else { return Vec::new() };
        self.shared.state().stores.keys(v, i)
    }

    /// No more records arrive (`arrivals_per_page` ends): a test's stop, after which a vendor
    /// that adds records on every answer would otherwise outrun any client its limits allow.
    pub fn close_arrivals(&self) {
        self.shared.arrivals_closed.store(true, Ordering::Relaxed);
    }

    /// Returns once at least `n` vendor requests have arrived (answered or not).
    pub async fn wait_for_requests(&self, n: u64) {
        let mut rx = self.shared.arrived.subscribe();
        // The sender lives in `shared`, which `self` keeps alive: the channel cannot close.
        let _ = rx.wait_for(|&seen| seen >= n).await;
    }

    /// Stops accepting, releases stalled requests and waits for open connections to finish.
    pub async fn shutdown(self) {
        self.shared.shutdown.cancel();
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "simulator server task failed"),
        }
    }

    /// What `auditrelay simulate` prints: the base URL, then per vendor and organization the
    /// endpoint and the credential, one `key=value` line each.
    fn describe(&self) -> String {
        let mut out = format!("base_url={}\n", self.base_url);
        out += &self.shared.opts.describe_vendors();
        for v in SimVendor::ALL {
            for org in self.organizations(v) {
                let auth = v.describe_credential(&self.credential(v, &org));
                out += &format!(
                    "vendor={} organization={org} url={} auth={auth:?}\n",
                    v.name(),
                    self.audit_log_url(v, &org)
                );
            }
        }
        out
    }
}

async fn vendor_stats(State(s): State<Arc<Shared>>, Path(vendor): Path<String>) -> Response {
    match SimVendor::from_name(&vendor) {
        Some(v) => axum::Json(s.state().vendor_stats.get(&v).cloned().unwrap_or_default()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn first_org_keys(State(s): State<Arc<Shared>>, Path(vendor): Path<String>) -> Response {
    match SimVendor::from_name(&vendor).filter(|v| !s.tenants.of(*v).is_empty()) {
        Some(v) => axum::Json(s.state().stores.keys(v, 0)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn org_keys(State(s): State<Arc<Shared>>, Path((vendor, org)): Path<(String, String)>) -> Response {
    match SimVendor::from_name(&vendor).and_then(|v| Some((v, s.tenant_index(v, &org)?))) {
        Some((v, i)) => axum::Json(s.state().stores.keys(v, i)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// State shared by all handlers. Knobs and tenants are immutable; what changes sits behind a std
/// `Mutex`, which is never held across an `.await` (every critical section is a few field updates
/// or one store scan).
pub struct Shared {
    pub(crate) clock: Clock,
    /// The seed, every vendor's knobs (`opts.<vendor>`) and the faults.
    pub(crate) opts: SimOptions,
    pub(crate) tenants: Tenants,
    /// Cancelled by [`Sim::shutdown`]: stops the server and releases a stalled request.
    pub(crate) shutdown: CancellationToken,
    /// Number of vendor requests arrived so far, for [`Sim::wait_for_requests`].
    pub(crate) arrived: watch::Sender<u64>,
    /// Arrivals so far, over all vendors: seeds each arrival's lateness.
    pub(crate) arrivals: AtomicU64,
    /// Set by [`Sim::close_arrivals`]: no more records arrive.
    pub(crate) arrivals_closed: AtomicBool,
    pub(crate) state: Mutex<Mutable>,
}

impl Shared {
    /// A poisoned lock only means a test panicked elsewhere; the counters are still usable.
    pub(crate) fn state(&self) -> MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many records arrive after this answer (`arrivals_per_page`, 0 once closed).
    pub(crate) fn arrivals_per_answer(&self) -> usize {
        match self.arrivals_closed.load(Ordering::Relaxed) {
            true => 0,
            false => self.opts.faults.arrivals_per_page,
        }
    }

    /// The event time of the next arrival: `now`, or up to `arrival_lateness` before it.
    pub(crate) fn arrival_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let late = self.opts.faults.arrival_lateness;
        if late.is_zero() {
            return now;
        }
        let n = self.arrivals.fetch_add(1, Ordering::Relaxed);
        now - chrono_duration(late.mul_f64(roll(self.opts.seed, n, 0x1A7E)))
    }

    /// Index of the organization `id` of `v` (and of its store).
    pub(crate) fn tenant_index(&self, v: SimVendor, id: &str) -> Option<usize> {
        self.tenants.of(v).iter().position(|t| t.id == id)
    }

    /// Index of the organization `credential` belongs to.
    pub(crate) fn tenant_of(&self, v: SimVendor, credential: &SimCredential) -> Option<usize> {
        self.tenants.of(v).iter().position(|t| &t.credential == credential)
    }
}

/// What requests change.
pub(crate) struct Mutable {
    stats: SimStats,
    vendor_stats: HashMap<SimVendor, SimStats>,
    log: Vec<RequestRecord>,
    /// Keyed by vendor and [`SimVendor::client_key`].
    gates: HashMap<(SimVendor, String), Gate>,
    /// Which kind of malformed body comes next (they alternate).
    malformed_turn: u64,
    /// One store per organization of each vendor (`stores.<vendor>`), index-aligned with
    /// [`Tenants`].
    pub(crate) stores: Stores,
}

impl Mutable {
    /// Applies `f` to the global counters and to `v`'s.
    fn count(&mut self, v: SimVendor, f: impl Fn(&mut SimStats)) {
        f(&mut self.stats);
        f(self.vendor_stats.entry(v).or_default());
    }
}

/// Rate-limit window of one vendor and organization, and the back-off the last 429 announced.
#[derive(Default)]
struct Gate {
    window: Option<Window>,
    not_before: Option<DateTime<Utc>>,
}

struct Window {
    end: DateTime<Utc>,
    used: u32,
}

/// What the handler of one request knows about it.
#[derive(Clone, Debug)]
pub struct RequestCtx {
    /// 1-based over all vendor requests; seeds a handler's own fault decisions.
    pub(crate) number: u64,
    pub(crate) request_id: String,
    /// Arrival time: the vendors' "now" and the error envelopes' `timestamp`.
    pub(crate) now: DateTime<Utc>,
}

/// Set by a vendor handler on an answer: how many records it carries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServedRecords(pub(crate) usize);

/// Set by a vendor handler on a 200 answer it corrupted itself (a cut gzip stream): counted as
/// malformed, not ok.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CorruptBody;

pub(crate) fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Seconds since the epoch, rounded up: a client that waits until then is never early.
pub(crate) fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// A reproducible number in `[0, 1)` for request `n` and a purpose `salt`.
pub(crate) fn roll(seed: u64, n: u64, salt: u64) -> f64 {
    fastrand::Rng::with_seed(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).f64()
}

/// A request body larger than this is read as empty (no vendor request carries more than a few
/// hundred bytes).
const MAX_REQUEST_BODY: usize = 1 << 20;

/// Middleware in front of every vendor route: counts and logs the request, then applies the rate
/// limit and the fault knobs, and lets the vendor handler answer only what is left.
async fn gate(State((shared, vendor)): State<(Arc<Shared>, SimVendor)>, req: Request, next: Next) -> Response {
    let faults = &shared.opts.faults;
    let now = shared.clock.now_utc();
    // Datafold's GET carries its window as a JSON body (§3.3): read it here for the request log,
    // then hand the same bytes on to the handler.
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, MAX_REQUEST_BODY).await.unwrap_or_default();
    let mut req = Request::from_parts(parts, Body::from(body.clone()));
    let client = vendor.client_key(&req);
    let record = RequestRecord {
        vendor,
        method: req.method().as_str().to_owned(),
        at: now,
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or_default().to_owned(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        early: false,
        client: client.clone(),
    };
    let (number, log_index, limit) = {
        let mut st = shared.state();
        st.count(vendor, |s| s.requests += 1);
        let number = st.stats.requests;
        st.log.push(record);
        let log_index = st.log.len() - 1;
        let g = st.gates.entry((vendor, client.clone())).or_default();
        let early = g.not_before.is_some_and(|nb| now < nb);
        let limit = faults.rate_limit_for(vendor).map(|(max, period)| {
            let w = match &mut g.window {
                Some(w) if now < w.end => w,
                // The first request after a window ended opens the next one.
                slot => slot.insert(Window { end: now + chrono_duration(period), used: 0 }),
            };
            let admitted = w.used < max;
            w.used += u32::from(admitted);
            (max, max - w.used, w.end, admitted)
        });
        if early {
            st.count(vendor, |s| s.retry_after_violations += 1);
            if let Some(rec) = st.log.get_mut(log_index) {
                rec.early = true;
            }
        }
        // Sent under the lock, so the count seen by `wait_for_requests` never goes backwards.
        shared.arrived.send_replace(number);
        (number, log_index, limit)
    };
    let ctx = RequestCtx { number, request_id: request_id(shared.opts.seed, number), now };

    if faults.stall_at_request == Some(number) {
        tracing::debug!(number, "simulator stalls this request until shutdown");
        shared.shutdown.cancelled().await;
    }
    if !faults.page_latency.is_zero() {
        shared.clock.sleep(faults.page_latency).await;
    }

    let mut retry_at = None;
    let mut resp = if let Some((_, _, end, false)) = limit {
        let mut resp = vendor.error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMIT_EXCEEDED", &ctx);
        let announced = match faults.retry_after {
            RetryAfterMode::Seconds => {
                let wait_us = (end - now).num_microseconds().unwrap_or(i64::MAX);
                let secs = (wait_us.saturating_add(999_999) / 1_000_000).max(1);
                put(resp.headers_mut(), "retry-after", &secs.to_string());
                now + chrono::Duration::seconds(secs)
            }
            RetryAfterMode::HttpDate => {
                let at = DateTime::from_timestamp(ceil_secs(end), 0).unwrap_or(end);
                put(resp.headers_mut(), "retry-after", &httpdate::fmt_http_date(at.into()));
                at
            }
            // The reset header says when (for the vendors that have one); the others leave the
            // client to its own fallback, which is early only if it returns inside the window.
            RetryAfterMode::Omit => DateTime::from_timestamp(ceil_secs(end), 0).unwrap_or(end),
        };
        retry_at = Some(announced);
        resp
    } else if shared.shutdown.is_cancelled() {
        vendor.error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", &ctx)
    } else if faults.spurious_unauthorized.contains(&number) {
        vendor.error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", &ctx)
    } else if roll(shared.opts.seed, number, 0x5E5E) < faults.error_rate {
        match roll(shared.opts.seed, number, 0xC0DE) {
            r if r < 1.0 / 3.0 => vendor.error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", &ctx),
            // A 502 comes from the load balancer, not the API: HTML, no envelope.
            r if r < 2.0 / 3.0 => (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response(),
            _ => vendor.error(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", &ctx),
        }
    } else if roll(shared.opts.seed, number, 0x0401) < faults.spurious_unauthorized_rate {
        vendor.error(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", &ctx)
    } else {
        req.extensions_mut().insert(ctx.clone());
        next.run(req).await
    };

    let served = resp.extensions().get::<ServedRecords>().map_or(0, |s| s.0);
    let corrupt = resp.extensions().get::<CorruptBody>().is_some();
    let inject =
        resp.status() == StatusCode::OK && !corrupt && roll(shared.opts.seed, number, 0xBAD) < faults.malformed_rate;
    if inject {
        let turn = {
            let mut st = shared.state();
            st.malformed_turn += 1;
            st.malformed_turn
        };
        resp = malform(resp, vendor, turn).await;
    }
    let malformed = resp.status() == StatusCode::OK && (corrupt || inject);
    // Without `limit_headers`, only a 429 whose Retry-After is omitted says when to return, so
    // each Retry-After form is the sole signal a client can honour.
    let announce = |admitted: bool| faults.limit_headers || (!admitted && faults.retry_after == RetryAfterMode::Omit);
    if let Some((max, remaining, end, _)) = limit.filter(|(.., admitted)| announce(*admitted)) {
        vendor.announce_limit(resp.headers_mut(), max, remaining, end);
    }
    put(resp.headers_mut(), "x-request-id", &ctx.request_id);
    // The vendor's own clock (hyper would stamp the host's, which a test clock does not move):
    // clients measure `Retry-After` dates and resets against it, and cut windows by it.
    put(resp.headers_mut(), "date", &httpdate::fmt_http_date(shared.clock.now_utc().into()));

    let status = resp.status();
    let mut st = shared.state();
    if let Some(rec) = st.log.get_mut(log_index) {
        rec.status = status.as_u16();
    }
    match status.as_u16() {
        200 if malformed => st.count(vendor, |s| s.malformed += 1),
        200 => st.count(vendor, |s| {
            s.ok += 1;
            s.served_records += served as u64;
        }),
        401 | 403 => st.count(vendor, |s| s.unauthorized += 1),
        429 => st.count(vendor, |s| s.rate_limited += 1),
        500..=599 => st.count(vendor, |s| s.server_errors += 1),
        _ => {}
    }
    if let Some(at) = retry_at {
        st.gates.entry((vendor, client)).or_default().not_before = Some(at);
    }
    resp
}

pub(crate) fn put(h: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        h.insert(n, v);
    }
}

/// Deterministic `x-request-id` (also the error envelopes' `trace_id` / `requestId`).
fn request_id(seed: u64, number: u64) -> String {
    let name = format!("auditrelay-sim/{seed}/{number}");
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
}

/// Replaces a 200 body by one of three malformations, in turn: an HTML page, a body of the wrong
/// kind, the real body cut in half. For JSON vendors the wrong kind is JSON of the wrong shape;
/// for a vendor whose body is gzip (Astronomer), it is a gzip header followed by junk (a JSON line
/// would be a valid NDJSON record), and the HTML page comes without `Content-Encoding`, as a
/// proxy's would.
async fn malform(resp: Response, vendor: SimVendor, turn: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    let body: Vec<u8> = match turn % 3 {
        1 => {
            if vendor.gzip_body() {
                parts.headers.remove(header::CONTENT_ENCODING);
                parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            }
            b"<html><body>Service temporarily unavailable</body></html>".to_vec()
        }
        2 if vendor.gzip_body() => b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xffnot a deflate stream".to_vec(),
        2 => br#"{"data":[{"unexpected":true}],"next":null}"#.to_vec(),
        _ => {
            let full = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            full[..full.len() / 2].to_vec()
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// 2026-03-18T08:00:00Z, the fixed start of every test clock.
    pub(crate) fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_773_820_800, 0).unwrap()
    }

    /// Options with `records` records per organization of every vendor and no rate limit (tests
    /// that want one set it).
    pub(crate) fn opts(records: usize) -> SimOptions {
        let mut o = SimOptions::default();
        o.set_records(records);
        o.faults.rate_limit = RateLimitSetting::Off;
        o
    }

    pub(crate) fn fixed(requests: u32, secs: u64) -> RateLimitSetting {
        RateLimitSetting::Fixed { requests, per: Duration::from_secs(secs) }
    }

    pub(crate) async fn start(opts: SimOptions, clock: Clock) -> Sim {
        Sim::start("127.0.0.1:0".parse().unwrap(), opts, clock).await.unwrap()
    }

    pub(crate) struct Answer {
        pub status: u16,
        pub headers: reqwest::header::HeaderMap,
        pub body: Vec<u8>,
        /// `Null` when the body is not JSON.
        pub json: serde_json::Value,
    }

    impl Answer {
        /// Number of `items` in a page (0 if none).
        pub(crate) fn items(&self) -> usize {
            self.json["items"].as_array().map_or(0, Vec::len)
        }

        /// `total` of a page (0 if none).
        pub(crate) fn total(&self) -> usize {
            self.json["total"].as_u64().unwrap_or(0) as usize
        }

        /// `(status, error.code)` of an error envelope.
        pub(crate) fn error(&self) -> (u16, &str) {
            (self.status, self.json["error"]["code"].as_str().unwrap_or(""))
        }
    }

    /// GET `path_and_query` with `X-API-Key: key` (none if `None`).
    pub(crate) async fn get(sim: &Sim, path_and_query: &str, key: Option<&str>) -> Answer {
        call(sim, path_and_query, |req| match key {
            Some(key) => req.header("x-api-key", key),
            None => req,
        })
        .await
    }

    /// GET `path_and_query` as `build` shapes the request, following redirects; the body is not
    /// decompressed (reqwest is built without gzip).
    pub(crate) async fn call(
        sim: &Sim,
        path_and_query: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Answer {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        send(build(client.get(sim.base_url().join(path_and_query).unwrap()))).await
    }

    pub(crate) async fn send(req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.bytes().await.unwrap().to_vec();
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Answer { status, headers, body, json }
    }

    /// Adds `credential` the way vendor `v` expects it.
    pub(crate) fn authed(
        v: SimVendor,
        credential: SimCredential,
        req: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        match credential {
            SimCredential::ApiKey(key) if v == SimVendor::Datafold => req.header("authorization", format!("Key {key}")),
            SimCredential::ApiKey(key) => req.header("x-api-key", key),
            SimCredential::Bearer(token) => req.bearer_auth(token),
            SimCredential::Basic { username, password } => req.basic_auth(username, Some(password)),
        }
    }

    /// GET the audit log of `org` of `v` with its own credential and `query`.
    pub(crate) async fn fetch(sim: &Sim, v: SimVendor, org: &str, query: &str) -> Answer {
        let path = format!("{}?{query}", v.audit_log_path(org));
        call(sim, &path[1..], |req| authed(v, sim.credential(v, org), req)).await
    }

    /// One page of the default organization's audit log.
    pub(crate) async fn page(sim: &Sim, query: &str) -> Answer {
        let path = format!("v1/organizations/{}/audit-log?{query}", sim.aitronos_organization_id());
        get(sim, &path, Some(sim.aitronos_api_key())).await
    }

    pub(crate) fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
        a.headers.get(name).map_or("", |v| v.to_str().unwrap())
    }

    /// Arrivals are stamped within `arrival_lateness` before now; a share of requests is
    /// answered 401 although the key is valid, and the same seed answers the same ones.
    #[tokio::test(start_paused = true)]
    async fn test_late_arrivals_and_spurious_401() {
        let mut o = opts(0);
        o.faults.arrivals_per_page = 5;
        o.faults.arrival_lateness = Duration::from_secs(600);
        let sim = start(o, Clock::starting_at(t0())).await;
        assert_eq!(page(&sim, "").await.items(), 0);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let a = page(&sim, "").await;
        let times: Vec<DateTime<Utc>> = a.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| DateTime::parse_from_rfc3339(i["created_at"].as_str().unwrap()).unwrap().with_timezone(&Utc))
            .collect();
        assert_eq!(times.len(), 5);
        assert!(times.iter().all(|t| *t <= t0() && *t >= t0() - chrono::Duration::seconds(600)), "{times:?}");
        assert!(times.iter().any(|t| *t < t0()), "no arrival was late: {times:?}");
        sim.shutdown().await;

        let statuses = |seed| async move {
            let mut o = opts(3);
            o.seed = seed;
            o.faults.spurious_unauthorized_rate = 0.5;
            let sim = start(o, Clock::starting_at(t0())).await;
            let mut out = Vec::new();
            for _ in 0..20 {
                out.push(page(&sim, "").await.status);
            }
            assert_eq!(sim.stats().unauthorized, out.iter().filter(|s| **s == 401).count() as u64);
            sim.shutdown().await;
            out
        };
        let first = statuses(9).await;
        assert!(first.contains(&401) && first.contains(&200), "{first:?}");
        assert_eq!(first, statuses(9).await);
    }

    #[tokio::test(start_paused = true)]
    async fn test_rate_limit_429_and_retry_after_violation() {
        let mut o = opts(10);
        o.faults.rate_limit = fixed(2, 60);
        let sim = start(o, Clock::starting_at(t0())).await;
        let reset = (t0().timestamp() + 60).to_string();
        for remaining in ["1", "0"] {
            let a = page(&sim, "").await;
            assert_eq!(a.status, 200);
            assert_eq!(header(&a, "x-ratelimit-limit"), "2");
            assert_eq!(header(&a, "x-ratelimit-remaining"), remaining);
            assert_eq!(header(&a, "x-ratelimit-reset"), reset);
        }
        let limited = page(&sim, "").await;
        assert_eq!(limited.status, 429);
        assert_eq!(header(&limited, "retry-after"), "60");
        assert_eq!(limited.json["error"]["code"], "RATE_LIMIT_EXCEEDED");
        assert_eq!(sim.stats().retry_after_violations, 0);

        tokio::time::advance(Duration::from_secs(30)).await;
        let early = page(&sim, "").await;
        assert_eq!((early.status, header(&early, "retry-after")), (429, "30"));
        assert_eq!(sim.stats().retry_after_violations, 1);

        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(page(&sim, "").await.status, 200);
        let s = sim.stats();
        assert_eq!((s.requests, s.ok, s.rate_limited, s.retry_after_violations), (5, 3, 2, 1));
        let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 200, 429, 429, 200]);
        let early: Vec<bool> = sim.request_log().iter().map(|r| r.early).collect();
        assert_eq!(early, [false, false, false, true, false]);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_retry_after_http_date_is_rounded_up() {
        let mut o = opts(10);
        o.faults.rate_limit = fixed(1, 60);
        o.faults.retry_after = RetryAfterMode::HttpDate;
        let sim = start(o, Clock::starting_at(t0() + chrono::Duration::milliseconds(250))).await;
        assert_eq!(page(&sim, "").await.status, 200);
        let limited = page(&sim, "").await;
        assert_eq!(limited.status, 429);
        // The window ends at 08:01:00.250; the announced instant is the next whole second.
        assert_eq!(header(&limited, "retry-after"), "Wed, 18 Mar 2026 08:01:01 GMT");
        tokio::time::advance(Duration::from_millis(60_500)).await; // 08:01:00.750: window over, but early
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(sim.stats().retry_after_violations, 1);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_retry_after_omitted_uses_reset_header() {
        let mut o = opts(10);
        o.faults.rate_limit = fixed(1, 10);
        o.faults.retry_after = RetryAfterMode::Omit;
        let sim = start(o, Clock::starting_at(t0())).await;
        page(&sim, "").await;
        let limited = page(&sim, "").await;
        assert_eq!((limited.status, limited.headers.get("retry-after")), (429, None));
        assert_eq!(header(&limited, "x-ratelimit-reset"), (t0().timestamp() + 10).to_string());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(sim.stats().retry_after_violations, 0);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_error_rate_is_reproducible() {
        let mut o = opts(10);
        o.faults.error_rate = 1.0;
        let sim = start(o.clone(), Clock::starting_at(t0())).await;
        for _ in 0..6 {
            let a = page(&sim, "").await;
            assert!([500, 502, 503].contains(&a.status), "{}", a.status);
            assert!(!header(&a, "x-request-id").is_empty());
        }
        assert_eq!(sim.stats().server_errors, 6);
        sim.shutdown().await;

        o.faults.error_rate = 0.5;
        let mut runs = Vec::new();
        for _ in 0..2 {
            let sim = start(o.clone(), Clock::starting_at(t0())).await;
            let mut statuses = Vec::new();
            for _ in 0..20 {
                statuses.push(page(&sim, "").await.status);
            }
            sim.shutdown().await;
            runs.push(statuses);
        }
        assert_eq!(runs[0], runs[1]);
        assert!(runs[0].contains(&200) && runs[0].iter().any(|s| *s >= 500));
    }

    #[tokio::test(start_paused = true)]
    async fn test_malformed_bodies_alternate() {
        let mut o = opts(10);
        o.faults.malformed_rate = 1.0;
        let sim = start(o, Clock::starting_at(t0())).await;
        let mut bodies = Vec::new();
        for _ in 0..3 {
            bodies.push(page(&sim, "").await);
        }
        assert!(bodies.iter().all(|a| a.status == 200));
        assert!(bodies[0].json.is_null() && bodies[0].body.starts_with(b"<html>"));
        assert!(bodies[1].json.is_object() && bodies[1].json.get("items").is_none());
        assert!(bodies[2].json.is_null() && bodies[2].body.starts_with(b"{\"items\":["));
        let s = sim.stats();
        assert_eq!((s.ok, s.malformed, s.served_records), (0, 3, 0));
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_stall_at_request_stalls_only_that_request() {
        let mut o = opts(10);
        o.faults.stall_at_request = Some(2);
        o.faults.page_latency = Duration::from_secs(2);
        let clock = Clock::starting_at(t0());
        let sim = start(o, clock.clone()).await;
        assert_eq!(page(&sim, "").await.status, 200);
        assert_eq!(clock.now_utc() - t0(), chrono::Duration::seconds(2), "page_latency on the clock");
        let stalled = tokio::time::timeout(Duration::from_secs(3600), page(&sim, ""));
        let (stalled, ()) = tokio::join!(stalled, sim.wait_for_requests(2));
        assert!(stalled.is_err(), "request 2 must never be answered");
        assert_eq!(page(&sim, "").await.status, 200);
        let statuses: Vec<u16> = sim.request_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 0, 200]);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_stats_endpoint_serves_counters() {
        let sim = start(opts(10), Clock::starting_at(t0())).await;
        page(&sim, "limit=4").await;
        let stats = get(&sim, "_sim/stats", None).await.json;
        assert_eq!((stats["requests"].as_u64(), stats["served_records"].as_u64()), (Some(1), Some(4)));
        let ids = get(&sim, "_sim/records/aitronos", None).await.json;
        assert_eq!(ids.as_array().map(Vec::len), Some(10));
        sim.shutdown().await;
    }

    /// Parses `flags` as the CLI does (`#[command(flatten)]`).
    fn parse(flags: &str) -> Result<SimulateArgs, clap::Error> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let argv = std::iter::once("simulate").chain(flags.split_whitespace());
        <Cli as clap::Parser>::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn test_simulate_args_parse_every_knob() {
        let flags = "--rate-limit 5/10s --retry-after http-date --error-rate 0.25 \
            --page-latency 250ms --stall-at-request 3 --clamp-limit --astronomer-rate-limit vendor \
            --configcat-organizations 3 --configcat-v1-redirects --configcat-legacy-schema \
            --astronomer-encoding double-compressed --astronomer-truncated-rate 0.5 \
            --astronomer-malformed-lines-rate 0.1 --datafold-naive-times 0.3 --datafold-records 7 \
            --datafold-default-all-history --aitronos-organizations 2";
        let o = parse(flags).unwrap().options();
        assert_eq!(o.faults.rate_limit, fixed(5, 10));
        assert_eq!(o.faults.rate_limit_for(SimVendor::ConfigCat), Some((5, Duration::from_secs(10))));
        assert_eq!(o.faults.rate_limit_for(SimVendor::Astronomer), Some((2, Duration::from_secs(60))));
        assert!(o.configcat.v1_redirects && o.configcat.legacy_schema && o.configcat.organizations == 3);
        assert_eq!(o.astronomer.encoding, AstronomerEncoding::DoubleCompressed);
        assert_eq!((o.astronomer.truncated_rate, o.astronomer.malformed_lines_rate), (0.5, 0.1));
        assert_eq!((o.datafold.naive_times, o.datafold.records), (0.3, 7));
        assert!(o.datafold.default_all_history && o.aitronos.organizations == 2);
        assert_eq!(o.faults.retry_after, RetryAfterMode::HttpDate);
        assert_eq!((o.faults.error_rate, o.faults.stall_at_request), (0.25, Some(3)));
        assert!(o.aitronos.clamp_limit && o.faults.page_latency == Duration::from_millis(250));
        let default = parse("").unwrap();
        assert_eq!(default.listen.to_string(), "127.0.0.1:8089");
        assert_eq!(default.options().faults.rate_limit, Faults::default().rate_limit);
        assert_eq!(default.options().faults.rate_limit_for(SimVendor::Aitronos), Some((100, Duration::from_secs(60))));
        assert_eq!(parse("--rate-limit off").unwrap().rate_limit, RateLimitSetting::Off);
        assert!(parse("--error-rate 1.5").is_err());
    }

    #[tokio::test]
    async fn test_run_simulate_refuses_non_loopback() {
        let args = parse("--listen 0.0.0.0:0").unwrap();
        let err = run_simulate(args).await.unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn test_sample_records_are_the_records_the_simulator_serves() {
        let n = 40;
        let mut o = opts(n);
        o.seed = 7;
        let sim = start(o, Clock::starting_at(DateTime::from_timestamp(SAMPLE_NOW_SECS, 0).unwrap())).await;
        for v in SimVendor::ALL {
            let samples = sample_records(v, n, 7);
            assert_eq!(samples.len(), n, "{v:?}");
            let parsed: Vec<serde_json::Value> = samples.iter().map(|s| serde_json::from_str(s).unwrap()).collect();
            assert!(parsed.iter().all(serde_json::Value::is_object), "{v:?}");
            let id = |field: &str| -> Vec<String> {
                parsed.iter().map(|r| r[field].as_str().map_or_else(|| r[field].to_string(), str::to_owned)).collect()
            };
            let keys = match v {
                SimVendor::Aitronos => id("id"),
                SimVendor::ConfigCat => id("auditLogId"),
                SimVendor::Datafold => id("event_uuid"),
                SimVendor::Astronomer => samples.clone(),
            };
            let org = sim.organizations(v)[0].clone();
            assert_eq!(keys.iter().collect::<std::collections::HashSet<_>>().len(), n, "{v:?}: keys are distinct");
            assert_eq!(keys, sim.record_keys(v, &org), "{v:?}");
            if v != SimVendor::Astronomer {
                // A page carries each record's text verbatim (Astronomer's lines are its keys).
                let page = fetch(&sim, v, &org, "").await;
                let body = String::from_utf8(page.body).unwrap();
                assert!(samples.iter().all(|s| body.contains(s.as_str())), "{v:?}: {body}");
            }
        }
        assert_eq!(sample_records(SimVendor::ConfigCat, 3, 1), sample_records(SimVendor::ConfigCat, 3, 1));
        assert_ne!(sample_records(SimVendor::ConfigCat, 3, 1), sample_records(SimVendor::ConfigCat, 3, 2));
        sim.shutdown().await;
    }

    #[test]
    fn test_nth_id_counts_the_trailing_number_up() {
        assert_eq!(nth_id("ORG_DEMO000000000001", 0), "ORG_DEMO000000000001");
        assert_eq!(nth_id("ORG_DEMO000000000001", 1), "ORG_DEMO000000000002");
        assert_eq!(
            nth_id("ak_demo000000000000000000000000000000000000", 11),
            "ak_demo000000000000000000000000000000000011"
        );
        assert_eq!(nth_id("examplecorp", 2), "examplecorp-3");
        assert_eq!(nth_id("key9", 1), "key10");
    }

    #[tokio::test(start_paused = true)]
    async fn test_organizations_and_credentials_of_every_vendor() {
        let mut o = opts(3);
        o.aitronos.organizations = 2;
        o.astronomer.organizations = 2;
        o.configcat.organizations = 2;
        o.datafold.organizations = 2;
        let sim = start(o, Clock::starting_at(t0())).await;
        assert_eq!(sim.organizations(SimVendor::Aitronos), ["ORG_DEMO000000000001", "ORG_DEMO000000000002"]);
        assert_eq!(sim.organizations(SimVendor::Aitronos)[0], sim.aitronos_organization_id());
        assert_eq!(
            sim.credential(SimVendor::Aitronos, "ORG_DEMO000000000001"),
            SimCredential::ApiKey(sim.aitronos_api_key().into())
        );
        assert_eq!(sim.record_keys(SimVendor::Aitronos, "ORG_DEMO000000000001"), sim.aitronos_ids());
        let description = sim.describe();
        for v in SimVendor::ALL {
            let orgs = sim.organizations(v);
            assert_eq!(orgs.len(), 2, "{v:?}");
            assert_ne!(orgs[0], orgs[1]);
            assert_ne!(sim.credential(v, &orgs[0]), sim.credential(v, &orgs[1]));
            let (a, b) = (sim.record_keys(v, &orgs[0]), sim.record_keys(v, &orgs[1]));
            assert_eq!((a.len(), b.len()), (3, 3), "{v:?}");
            assert!(a.iter().all(|k| !b.contains(k)), "{v:?}: organizations share records");
            for org in &orgs {
                assert_eq!(fetch(&sim, v, org, "").await.status, 200, "{v:?} {org}");
                assert!(description.contains(&format!("vendor={} organization={org} ", v.name())), "{description}");
            }
            // Another organization's credential does not reach this one.
            let other =
                call(&sim, &v.audit_log_path(&orgs[1])[1..], |r| authed(v, sim.credential(v, &orgs[0]), r)).await;
            if v != SimVendor::Datafold {
                assert!([403, 404].contains(&other.status), "{v:?}: {}", other.status);
            }
            assert_eq!(sim.vendor_stats(v).ok, if v == SimVendor::Datafold { 3 } else { 2 }, "{v:?}");
        }
        assert_eq!(
            sim.credential(SimVendor::ConfigCat, "nope"),
            SimCredential::Basic { username: String::new(), password: String::new() }
        );
        assert!(sim.record_keys(SimVendor::Datafold, "nope").is_empty());
        let keys =
            get(&sim, &format!("_sim/records/configcat/{}", sim.organizations(SimVendor::ConfigCat)[1]), None).await;
        assert_eq!(keys.json.as_array().map(Vec::len), Some(3));
        let stats = get(&sim, "_sim/stats/astronomer", None).await.json;
        assert_eq!(stats["ok"], 2);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_each_vendor_and_organization_has_its_own_window() {
        let mut o = opts(3);
        o.faults.rate_limit = RateLimitSetting::VendorDefault;
        o.astronomer.organizations = 2;
        o.configcat.organizations = 2;
        o.datafold.organizations = 2;
        o.faults.vendor_rate_limits.insert(SimVendor::ConfigCat, fixed(3, 60));
        let sim = start(o, Clock::starting_at(t0())).await;
        // Astronomer's documented 2/min, per organization.
        let astro = sim.organizations(SimVendor::Astronomer);
        for org in [&astro[0], &astro[0], &astro[1], &astro[1]] {
            assert_eq!(fetch(&sim, SimVendor::Astronomer, org, "").await.status, 200);
        }
        let limited = fetch(&sim, SimVendor::Astronomer, &astro[0], "").await;
        assert_eq!((limited.status, header(&limited, "retry-after")), (429, "60"));
        assert_eq!(limited.json["statusCode"], 429);
        // ConfigCat's override, per organization; Aitronos and Datafold untouched.
        let cc = sim.organizations(SimVendor::ConfigCat);
        for _ in 0..3 {
            assert_eq!(fetch(&sim, SimVendor::ConfigCat, &cc[0], "").await.status, 200);
        }
        assert_eq!(fetch(&sim, SimVendor::ConfigCat, &cc[0], "").await.status, 429);
        assert_eq!(fetch(&sim, SimVendor::ConfigCat, &cc[1], "").await.status, 200);
        let page = fetch(&sim, SimVendor::Aitronos, sim.aitronos_organization_id(), "").await;
        assert_eq!((page.status, header(&page, "x-ratelimit-limit")), (200, "100"));
        // Datafold: 60/min per key.
        let df = sim.organizations(SimVendor::Datafold);
        for _ in 0..60 {
            assert_eq!(fetch(&sim, SimVendor::Datafold, &df[0], "").await.status, 200);
        }
        let limited = fetch(&sim, SimVendor::Datafold, &df[0], "").await;
        assert_eq!((limited.status, &limited.json), (429, &serde_json::json!({"detail": "Too Many Requests"})));
        assert!(!header(&limited, "retry-after").is_empty());
        assert_eq!(fetch(&sim, SimVendor::Datafold, &df[1], "").await.status, 200);
        // After the window, Astronomer serves again.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(fetch(&sim, SimVendor::Astronomer, &astro[0], "").await.status, 200);
        let s = sim.vendor_stats(SimVendor::Astronomer);
        assert_eq!((s.requests, s.ok, s.rate_limited, s.retry_after_violations), (6, 5, 1, 0));
        assert_eq!(sim.stats().rate_limited, 3);
        let log = sim.request_log();
        assert!(log.iter().filter(|r| r.vendor == SimVendor::Datafold).count() == 62);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_retry_after_omitted_without_reset_header_counts_the_window() {
        // Astronomer has no budget headers: with Retry-After omitted, nothing says when; a client
        // that falls back to 60 s is never early.
        let mut o = opts(3);
        o.faults.rate_limit = RateLimitSetting::VendorDefault;
        o.faults.retry_after = RetryAfterMode::Omit;
        let sim = start(o, Clock::starting_at(t0())).await;
        let org = sim.organizations(SimVendor::Astronomer)[0].clone();
        fetch(&sim, SimVendor::Astronomer, &org, "").await;
        fetch(&sim, SimVendor::Astronomer, &org, "").await;
        let limited = fetch(&sim, SimVendor::Astronomer, &org, "").await;
        assert_eq!(limited.status, 429);
        assert!(limited.headers.get("retry-after").is_none() && limited.headers.get("x-ratelimit-reset").is_none());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(fetch(&sim, SimVendor::Astronomer, &org, "").await.status, 200);
        assert_eq!(sim.stats().retry_after_violations, 0);
        sim.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn test_faults_apply_to_every_vendor() {
        let mut o = opts(5);
        o.faults.error_rate = 1.0;
        let sim = start(o, Clock::starting_at(t0())).await;
        for v in SimVendor::ALL {
            let org = sim.organizations(v)[0].clone();
            let a = fetch(&sim, v, &org, "").await;
            assert!([500, 502, 503].contains(&a.status), "{v:?}: {}", a.status);
            assert_eq!(sim.vendor_stats(v).server_errors, 1);
        }
        sim.shutdown().await;

        let mut o = opts(5);
        o.faults.malformed_rate = 1.0;
        let sim = start(o, Clock::starting_at(t0())).await;
        for v in [SimVendor::ConfigCat, SimVendor::Datafold] {
            let org = sim.organizations(v)[0].clone();
            for _ in 0..3 {
                let a = fetch(&sim, v, &org, "").await;
                assert_eq!(a.status, 200);
                let intact = a.json.get("logs").or_else(|| a.json.get("paging")).is_some();
                assert!(!intact, "{v:?}: {}", String::from_utf8_lossy(&a.body));
            }
            assert_eq!(sim.vendor_stats(v).malformed, 3);
        }
        sim.shutdown().await;
    }
}

#[cfg(test)]
#[path = "review21c_tests.rs"]
mod review21c_tests;
