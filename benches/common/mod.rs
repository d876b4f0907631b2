//! Shared by the benchmarks that run the real agent (`e2e`, `idle`, `startup`): the machine
//! they ran on, a syslog TCP receiver that counts what arrives, and a configuration of the four
//! simulated vendors and three sinks, or the file sink alone (and the table of a fourth,
//! Elasticsearch, for `e2e`). `floor.rs` beside it is `e2e`'s alone (it includes it by path):
//! the cost of the work no design can avoid. The agent itself is the binary cargo builds for the bench profile (`CARGO_BIN_EXE_auditrelay`),
//! run through the tests' `Agent` wrapper.
#![allow(dead_code)]

#[path = "../../tests/it/harness/mod.rs"]
pub mod harness;
#[path = "../../tests/it/hec_emulator/mod.rs"]
pub mod hec_emulator;
/// The emulators' listener whose connections can be cut, named by them as `super::killable`.
#[path = "../../tests/it/killable/mod.rs"]
pub mod killable;
pub mod machine;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[allow(unused_imports)] // not every benchmark prints both
pub use machine::{filesystem, machine};

use auditrelay::sim::{RateLimitSetting, Sim, SimOptions, SimVendor};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

pub const MIB: f64 = 1024.0 * 1024.0;

/// A syslog receiver over TCP on 127.0.0.1 for octet-counted RFC 5424 messages (`LEN MSG`):
/// counts the messages and their bytes, checks each starts with a `<PRI>`. The stand-in for a
/// SIEM's collector, as cheap as possible so that the agent, not the receiver, is measured.
pub struct SyslogReceiver {
    pub addr: SocketAddr,
    messages: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
}

impl SyslogReceiver {
    pub async fn start() -> SyslogReceiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (messages, bytes, malformed) = (Arc::default(), Arc::default(), Arc::default());
        let counters = (Arc::clone(&messages), Arc::clone(&bytes), Arc::clone(&malformed));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (m, b, x) = (Arc::clone(&counters.0), Arc::clone(&counters.1), Arc::clone(&counters.2));
                tokio::spawn(read_frames(socket, m, b, x));
            }
        });
        SyslogReceiver { addr, messages, bytes, malformed }
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

async fn read_frames(
    mut socket: tokio::net::TcpStream,
    messages: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
    malformed: Arc<AtomicU64>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while let Some(space) = buf[at..].iter().position(|c| *c == b' ') {
            let Some(len) = std::str::from_utf8(&buf[at..at + space]).ok().and_then(|l| l.parse::<usize>().ok()) else {
                malformed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let start = at + space + 1;
            if buf.len() < start + len {
                break;
            }
            if buf.get(start) != Some(&b'<') {
                malformed.fetch_add(1, Ordering::Relaxed);
            }
            messages.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(len as u64, Ordering::Relaxed);
            at = start + len;
        }
        buf.drain(..at);
    }
}

/// Counts the lines of a growing file, reading only what was appended since the last call.
pub struct LineCounter {
    file: Option<std::fs::File>,
    lines: u64,
    chunk: Vec<u8>,
}

impl LineCounter {
    pub fn new() -> LineCounter {
        LineCounter { file: None, lines: 0, chunk: vec![0; 1 << 20] }
    }

    pub fn count(&mut self, path: &Path) -> u64 {
        use std::io::Read as _;
        if self.file.is_none() {
            self.file = std::fs::File::open(path).ok();
        }
        if let Some(file) = self.file.as_mut() {
            while let Ok(n) = file.read(&mut self.chunk) {
                if n == 0 {
                    break;
                }
                self.lines += self.chunk[..n].iter().filter(|c| **c == b'\n').count() as u64;
            }
        }
        self.lines
    }
}

/// The environment the packaged unit (packaging/systemd/auditrelay.service) gives the agent
/// beyond the configuration, so that the benchmarks measure the agent as it runs in production:
/// glibc's malloc limited to two arenas (its default, 8 per core, keeps freed memory of every
/// thread's arena resident).
pub const UNIT_ENV: &[(&str, &str)] = &[("MALLOC_ARENA_MAX", "2")];

/// [`UNIT_ENV`] as `NAME=value` words, for the benchmarks' first line.
pub fn unit_env() -> String {
    UNIT_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The agent's configuration: one source per simulated vendor (first organization), all with a
/// proactive limit far above what the run needs, and the three sinks: a file, HEC and syslog
/// over TCP. `extra_top` goes before the tables.
pub fn agent_config(dir: &Path, sim: &Sim, hec_url: &str, syslog: SocketAddr, start: &str, extra_top: &str) -> String {
    sources_config(dir, &bench_sources(sim, start, extra_top), hec_url, syslog)
}

/// As [`agent_config`], with the file sink alone (`e2e`'s run of the file sink's cost).
pub fn agent_config_file_only(dir: &Path, sim: &Sim, start: &str, extra_top: &str) -> String {
    file_only_config(dir, &bench_sources(sim, start, extra_top))
}

/// `extra_top` (it goes after `state_dir` and before any table), then one source per simulated
/// vendor (first organization) with a proactive limit far above what the run needs.
fn bench_sources(sim: &Sim, start: &str, extra_top: &str) -> Vec<String> {
    std::iter::once(extra_top.to_owned())
        .chain(SimVendor::ALL.into_iter().map(|v| {
            let org = sim.organizations(v)[0].clone();
            harness::source_block(
                sim,
                v,
                &org,
                v.name(),
                &format!("start = {start:?}\nrate_limit = {{ requests = 100000, per = \"1s\", burst = 100 }}"),
            )
        }))
        .collect()
}

/// The agent's configuration with these `[[sources]]` tables and the three sinks of
/// [`agent_config`]: a file (`events.ndjson` in `dir`), HEC and syslog over TCP.
pub fn sources_config(dir: &Path, sources: &[String], hec_url: &str, syslog: SocketAddr) -> String {
    format!(
        "{}\n\
         [[sinks]]\nname = \"splunk\"\ntype = \"hec\"\nurl = {hec_url:?}\ntoken = \"hec-test-token\"\n\n\
         [[sinks]]\nname = \"syslog\"\ntype = \"syslog\"\naddress = \"{syslog}\"\ntransport = \"tcp\"\n",
        file_only_config(dir, sources)
    )
}

/// These `[[sources]]` tables and the file sink alone (`events.ndjson` in `dir`).
fn file_only_config(dir: &Path, sources: &[String]) -> String {
    format!(
        "state_dir = {state:?}\n{sources}\n\
         [[sinks]]\nname = \"file\"\ntype = \"file\"\npath = {out:?}\n",
        state = dir.join("state").display().to_string(),
        sources = sources.join("\n"),
        out = dir.join("events.ndjson").display().to_string(),
    )
}

/// A `[[sinks]]` table of an Elasticsearch sink named `elastic` into the default data stream at
/// `url` (the `_bulk` emulator), with the API key `api_key` (`id:key`); every other key at its
/// default (gzip on, `batch_max_events` 500), so `e2e` measures what an operator gets.
pub fn elasticsearch_sink(url: &str, api_key: &str) -> String {
    format!("\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\nhosts = [{url:?}]\napi_key = {api_key:?}\n")
}

/// The simulator's options for a benchmark: `records` per vendor, no rate limits (the agent's
/// speed is measured, not the vendors' quotas).
pub fn sim_options(records: usize) -> SimOptions {
    let mut opts = SimOptions::default();
    opts.faults.rate_limit = RateLimitSetting::Off;
    opts.aitronos.records = records;
    opts.astronomer.records = records;
    opts.configcat.records = records;
    opts.datafold.records = records;
    opts
}

/// A verdict against a target: "meets" or "MISSES".
pub fn verdict(ok: bool) -> &'static str {
    if ok { "meets" } else { "MISSES" }
}
