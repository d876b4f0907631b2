//! The command line: what each subcommand takes and does. Parsing only; the work is elsewhere.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Collects SaaS vendors' audit logs under their rate limits, keeps every record in a durable
/// on-disk queue and forwards it to your SIEM — without losing any.
///
/// Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug, RUST_LOG=auditrelay=trace) for more.
#[derive(Debug, Parser)]
#[command(name = "auditrelay", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the daemon): poll every configured source and deliver to every sink until
    /// SIGTERM or SIGINT, then stop fetching, commit, let sinks finish their batch and exit 0.
    Run {
        /// The configuration file (TOML); see config/auditrelay.example.toml.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Catch up once and exit: every source fetches until less than one poll interval of
        /// data is left, every sink drains the queue, then exit (0, or 1 if a source failed).
        #[arg(long)]
        once: bool,
        /// After SIGTERM, how long sinks may keep trying to deliver the batch in hand; what is
        /// not delivered by then stays queued for the next start.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: std::time::Duration,
    },
    /// Validate a configuration file and print it resolved (defaults filled, secrets read from
    /// the environment and files, shown as [redacted]). Exits 1 naming the file, line and key
    /// of the first mistake.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also reach every sink: open the file sink's file, connect to syslog receivers (TCP
        /// connect and, for TLS, the whole handshake with certificate checks). Prints one line
        /// per sink and exits 1 if any fails. Sends no event.
        #[arg(long)]
        connect: bool,
    },
    /// Run the agent against its built-in vendor simulator on 127.0.0.1, writing events to
    /// ./auditrelay-demo/events.ndjson, and print a summary. Exits 0 once every simulated record
    /// was delivered.
    Demo {
        /// Records the simulator serves.
        #[arg(long, default_value_t = 5000)]
        records: usize,
        /// Where the output file (and a copy of the demo's configuration) go.
        #[arg(long, value_name = "DIR", default_value = "auditrelay-demo")]
        out: PathBuf,
    },
    /// Run the vendor simulator alone (for tests, benchmarks and trying configurations).
    Simulate(crate::sim::SimulateArgs),
}
