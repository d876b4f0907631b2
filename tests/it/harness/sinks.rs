//! Sink tests' shared set-up: real OCSF events, a queue holding them, a sink configuration from
//! TOML lines, and the daemon's worker loop run over them in real time (the receivers are real
//! servers: rsyslog, the HEC emulator, the OTLP receiver).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use auditrelay::clock::Clock;
use auditrelay::config::{Config, SinkConfig};
use auditrelay::daemon::{self, RunOptions};
use auditrelay::queue::{NewEvent, PageWrite, Queue, QueueOptions};
use auditrelay::sim::{SimOptions, SimVendor};
use auditrelay::sinks::{Sink, SinkControl, SinkStats, SinkStatsSnapshot, run_sink};
use auditrelay::sources::RunMode;
use tokio_util::sync::CancellationToken;

use super::{config_with_sources, out_path, parse_config, source_block, start_sim, test_start};

/// Real OCSF events of all four vendors: the pipeline's output over the simulator.
pub fn ocsf_events() -> &'static [Vec<u8>] {
    static EVENTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    // On a thread of its own: the caller may be inside a runtime, and this one runs paused.
    EVENTS.get_or_init(|| std::thread::spawn(make_ocsf_events).join().unwrap())
}

fn make_ocsf_events() -> Vec<Vec<u8>> {
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            let clock = Clock::starting_at(test_start());
            let mut opts = SimOptions::default();
            opts.aitronos.records = 60;
            opts.astronomer.records = 60;
            opts.configcat.records = 60;
            opts.datafold.records = 60;
            let sim = start_sim(opts, &clock).await;
            let dir = tempfile::tempdir().unwrap();
            let sources: Vec<String> = SimVendor::ALL
                .into_iter()
                .map(|v| {
                    let org = sim.organizations(v)[0].clone();
                    source_block(&sim, v, &org, v.name(), "start = \"2d\"")
                })
                .collect();
            let config = parse_config(&config_with_sources(dir.path(), &sources), &sim, dir.path());
            let opts = RunOptions { mode: RunMode::CatchUp, ..RunOptions::default() };
            daemon::run(&config, clock, opts, CancellationToken::new()).await.unwrap();
            let text = std::fs::read_to_string(out_path(dir.path())).unwrap();
            let events: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
            assert_eq!(events.len(), 240, "the simulator's records, mapped");
            events
        })
    }
}

/// The event's `metadata.uid`.
pub fn uid(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["metadata"]["uid"].as_str().unwrap().to_owned()
}

/// A queue in `dir` for these sinks, holding `events`.
pub async fn queue_with(dir: &Path, sinks: &[&str], events: &[Vec<u8>]) -> Queue {
    let sinks = sinks.iter().map(|s| s.to_string()).collect();
    let queue = Queue::open(&dir.join("state"), QueueOptions { max_bytes: 1 << 30, sinks }).unwrap();
    store(&queue, events).await;
    queue
}

/// Stores `events` as one page of source "test".
pub async fn store(queue: &Queue, events: &[Vec<u8>]) {
    let events =
        events.iter().map(|body| NewEvent { dedupe_key: uid(body), event_time_ms: 0, body: body.clone() }).collect();
    queue.store_page(PageWrite { source: "test".into(), events, ..PageWrite::default() }).await.unwrap();
}

/// A sink named and typed `kind` ("syslog", "hec", "otlp") from these TOML lines (address and
/// the rest), with batches of 50, quick back-off and a 5 s timeout.
pub fn sink_config(dir: &Path, kind: &str, lines: &str) -> SinkConfig {
    let text = format!(
        "state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"ORG_A\"\n\
         api_key = \"k\"\n[[sinks]]\nname = \"{kind}\"\ntype = \"{kind}\"\nbatch_max_events = 50\n\
         backoff = {{ initial = \"20ms\", max = \"200ms\" }}\ntimeout = \"5s\"\n{lines}\n"
    );
    let path = dir.join(format!("{kind}.toml"));
    std::fs::write(&path, &text).unwrap();
    Config::load(&path).unwrap().sinks.remove(0)
}

/// A running sink worker and the handles to watch and stop it.
pub struct Worker {
    pub stats: Arc<SinkStats>,
    pub control: SinkControl,
    pub task: tokio::task::JoinHandle<()>,
}

/// Runs the daemon's worker loop for `cfg` over `queue`, in real time.
pub fn start_worker(cfg: SinkConfig, queue: &Queue) -> Worker {
    let stats = Arc::new(SinkStats::default());
    let control = SinkControl::default();
    let sink = Sink::open(&cfg).unwrap();
    let task = tokio::spawn(run_sink(cfg, sink, queue.clone(), Clock::system(), Arc::clone(&stats), control.clone()));
    Worker { stats, control, task }
}

impl Worker {
    /// Drains what is queued, then stops.
    pub async fn drain(self) -> SinkStatsSnapshot {
        self.control.drain.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.task).await.expect("sink drained in time").unwrap();
        self.stats.snapshot()
    }

    pub async fn abort(self) -> SinkStatsSnapshot {
        self.control.stop.cancel();
        self.control.abort.cancel();
        self.task.await.unwrap();
        self.stats.snapshot()
    }

    /// Waits until the worker has failed `n` sends.
    pub async fn wait_for_retries(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.stats.snapshot().retries < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sink never failed {n} times: {:?}",
                self.stats.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The worker fails at least twice against its receiver and acknowledges none of the `queued`.
pub async fn assert_nothing_acknowledged(cfg: SinkConfig, queue: &Queue, queued: usize) {
    let cfg_name = cfg.name.clone();
    let worker = start_worker(cfg, queue);
    worker.wait_for_retries(2).await;
    let stats = worker.abort().await;
    assert_eq!(stats.events, 0, "{stats:?}");
    let backlog = queue.backlog(&cfg_name).await.unwrap();
    assert_eq!(backlog, queued as u64, "nothing acknowledged");
}

/// A running simulator (on its own runtime, for synchronous tests) and a `[[sources]]` table
/// named "a" for its Aitronos organization: `check --connect` then probes a loopback vendor.
pub fn simulated_source() -> (tokio::runtime::Runtime, auditrelay::sim::Sim, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(start_sim(SimOptions::default(), &Clock::system()));
    let org = sim.organizations(SimVendor::Aitronos)[0].clone();
    let block = source_block(&sim, SimVendor::Aitronos, &org, "a", "");
    (rt, sim, block)
}

/// The `check --connect` table row for `kind` `name`: (result, detail).
pub fn connect_row(stdout: &str, kind: &str, name: &str) -> (String, String) {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().take(2).eq([kind, name]))
        .unwrap_or_else(|| panic!("no {kind} {name} row in {stdout}"));
    let mut words = line.split_whitespace().skip(2);
    let result = words.next().unwrap_or_default().to_owned();
    (result, words.collect::<Vec<_>>().join(" "))
}
