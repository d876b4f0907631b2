//! Every integration test, in one binary (`autotests = false`, one `[[test]]` in `Cargo.toml`):
//! the crate is linked once for all of them instead of once per file. Each module is what was
//! a test file of its own; `cargo test --test it <module>::` runs one of them, `cargo test
//! --test it <module>::<test>` one test.
//!
//! The shared set-up is declared here once: `harness` (simulator, configurations, the agent as
//! a child process, certificates, the hostile vendor), the receivers (`hec_emulator`,
//! `otlp_receiver`, `rsyslog`) and, through `harness`, the OCSF check `tests/ocsf_schema/`
//! (which stays there: the unit tests include it by path too).
//! The HEC and Elasticsearch emulators serve through one listener whose connections can be cut,
//! `killable`, which they name as `super::killable` (the benchmarks that include an emulator
//! declare it beside it too).
//!
//! One process runs every module's tests side by side, so none may change process-wide state
//! (environment variables, the working directory, the umask, a global tracing subscriber that
//! a test reads) or measure the whole process: the agent's memory, CPU and threads are read from
//! its own child process (`harness::agent::Agent`), and in-process agents get a directory,
//! a clock and ports of their own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

// Shared set-up.
mod contract_sim;
mod es_emulator;
mod github_sim;
mod harness;
mod hec_emulator;
mod killable;
mod oauth_sim;
mod okta_sim;
mod otlp_receiver;
mod rsyslog;

// The tests, one module per area.
mod architecture;
mod backfill;
mod backfill_live;
mod cli;
mod config_regressions;
mod crash;
mod daemon;
mod damaged;
mod defined_e2e;
mod defined_equivalence;
mod docs;
mod dst;
mod elasticsearch;
mod full_disk;
mod fuzz_regressions;
mod hec;
mod hostile;
mod mapping_bytes;
mod ops;
mod otlp;
mod pipeline;
mod prometheus_rules;
mod proxy;
mod ratelimits;
mod receivers_at_the_edge;
mod reload;
mod request_size;
mod review19a;
mod review19b;
mod review19c;
mod review20ra;
mod review20rb;
mod review21a;
mod review21b;
mod review21g;
mod review21h;
mod rotation;
mod secrets;
mod sim_contracts;
mod soak;
mod syslog;
mod systemd_unit;
mod telemetry;
mod tls;
mod vendors;
