//! auditrelay: pulls SaaS vendors' audit logs under their rate limits, keeps every record in a
//! durable SQLite queue and forwards it to a SIEM. See ARCHITECTURE.md for the map.

pub mod backfill;
pub mod backoff;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod fuzzing;
pub mod http;
pub mod latency;
pub mod lock;
pub mod logging;
pub mod memory;
pub mod ocsf;
pub mod ops;
pub mod queue;
pub mod redact;
pub mod reload;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod tls;
pub mod vendors;
