//! The durable queue alone: storing pages and acknowledging them (not a test: it prints figures).
//!
//! `Queue` is SQLite in WAL mode with `synchronous=FULL`, so every `store_page` and every `ack`
//! is in a transaction that is on disk (fsync) before it returns. Bodies are real OCSF events:
//! simulated records of the four vendors mapped by `vendors::map_record`, reused round-robin, each
//! event with its own dedupe key. Each page carries its source's checkpoint (a `Checkpoint` as
//! the sources serialize it) and a dedupe prune bound, as the sources send them. Scenarios, each
//! on a fresh queue in a temporary directory on the disk (`std::env::temp_dir()`):
//!
//! 1. **store, 1 source**: one `store_page` per page, one after the other;
//! 2. **store, 4 sources**: four tokio tasks, each its own source, the same total;
//! 3. **store + ack**: one source stores while 3 sinks each loop `read_batch(sink, 500, 1 MiB)`
//!    then `ack(sink, last id)` (waiting on `subscribe_new_events` when nothing is queued) until
//!    each has acked every event; the time is until the last sink acked the last event.
//!
//! "Commits" are the writes asked for: `store_page` and `ack` calls (`read_batch` is a read). A
//! page is on disk when `store_page` returns; an ack with the next page commit (BENCHMARKS.md
//! "How the code is made cheap"). The queue may group writes waiting together into one SQLite
//! transaction (one sync), so the table also counts the flush requests the queue's block device
//! completed meanwhile (/proc/diskstats; system-wide, so another process's syncs count too), and
//! each scenario's detail line gives the call-to-reply latencies. Tokio: multi-thread runtime with
//! 2 worker threads. The header names the filesystem holding the queue (on tmpfs fsync costs
//! nothing and the figures say nothing about a disk) and the disk's own fdatasync latency.
//!
//! Run: `cargo bench --bench queue` (add `-- 50000 200` for another event count and page size).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

#[path = "common/machine.rs"]
mod machine;
use machine::{filesystem, machine};

use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::ocsf::{Context, Policy};
use auditrelay::queue::{NewEvent, PageWrite, Queue, QueueOptions};
use auditrelay::sim::{self, SimVendor};
use auditrelay::sources::{Checkpoint, PageCursor, Sweep, Window};
use auditrelay::vendors::{self, VendorId};
use chrono::{DateTime, Utc};

/// Simulated records per vendor mapped into the body pool.
const POOL_PER_VENDOR: usize = 64;
/// Concurrent sources of scenario 2, sinks of scenario 3.
const SOURCES: usize = 4;
const SINKS: usize = 3;
/// What each sink asks per `read_batch`.
const BATCH_EVENTS: usize = 500;
const BATCH_BYTES: usize = 1024 * 1024;

fn main() {
    let mut args = std::env::args().skip(1).filter_map(|a| a.parse::<usize>().ok());
    let events = args.next().unwrap_or(200_000);
    let page = args.next().unwrap_or(100).max(1);
    let pool = body_pool();
    let mean_body = pool.iter().map(Vec::len).sum::<usize>() as f64 / pool.len() as f64;

    let probe = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let (fs, device) = filesystem(probe.path());
    println!("{}", machine());
    println!("queue dir: {} on {fs} ({})", std::env::temp_dir().display(), device.as_deref().unwrap_or("no device"));
    if fs == "tmpfs" || fs == "ramfs" {
        println!(
            "!!!!! WARNING: the queue directory is on {fs}: fsync is free there, these figures are NOT a disk's !!!!!"
        );
    }
    let ((append, append_p90), (overwrite, overwrite_p90)) =
        (fsync_floor(probe.path(), true), fsync_floor(probe.path(), false));
    println!(
        "disk: fdatasync after writing 4 KiB: appended median {append:.0} µs (p90 {append_p90:.0}), overwritten median \
         {overwrite:.0} µs (p90 {overwrite_p90:.0}): the floor of one durable commit"
    );
    drop(probe);
    println!(
        "{events} events in pages of {page} ({} pages); bodies: OCSF events of simulated records, mean {mean_body:.0} B",
        events.div_ceil(page)
    );
    println!(
        "commits = store_page + ack calls (a page is durable when store_page returns, an ack with the next page; \
         calls waiting together share a transaction); flushes = the device's completed flush requests meanwhile \
         (~ fsyncs, system-wide)"
    );
    println!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {:>10}",
        "scenario",
        "events",
        "commits",
        "flushes",
        "wall s",
        "events/s",
        "commits/s",
        "µs/commit",
        "db MiB",
        "CPU s/100k"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bench = Bench { runtime, device };
    let pool = std::sync::Arc::new(pool);
    bench.run("store, 1 source", |q| store_only(q, events, page, 1, pool.clone()));
    bench.run("store, 4 sources", |q| store_only(q, events, page, SOURCES, pool.clone()));
    bench.run("store + ack by 3 sinks", |q| store_and_ack(q, events, page, pool.clone()));
}

/// CPU time this process used so far (user + system, every thread), from `/proc/self/stat`
/// (clock ticks of 10 ms, the kernel's USER_HZ on Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in its parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    Some((utime + stime) / 100.0)
}

/// What a scenario did: events, durable commits, wall time, and a detail line.
struct Outcome {
    events: usize,
    commits: usize,
    wall: Duration,
    detail: Option<String>,
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    /// The queue directory's block device, whose flushes are counted.
    device: Option<String>,
}

impl Bench {
    /// Runs `scenario` on a fresh queue (sinks `sink-1..3`) and prints its row.
    fn run<F: Future<Output = Outcome>>(&self, name: &str, scenario: impl FnOnce(Queue) -> F) {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let state = dir.path().join("state");
        let sinks = (1..=SINKS).map(|i| format!("sink-{i}")).collect();
        let queue = Queue::open(&state, QueueOptions { max_bytes: 1 << 40, sinks }).unwrap();
        let flushed = flushes(self.device.as_deref());
        let cpu = cpu_seconds();
        let outcome = self.runtime.block_on(scenario(queue.clone()));
        let cpu = cpu.zip(cpu_seconds()).map(|(before, after)| after - before);
        let flushed = flushed.zip(flushes(self.device.as_deref())).map(|(before, after)| after - before);
        self.runtime.block_on(queue.close()).unwrap();
        let db_bytes: u64 = std::fs::read_dir(&state)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum();
        let secs = outcome.wall.as_secs_f64();
        println!(
            "{:<24} {:>8} {:>8} {:>8} {:>8.2} {:>10.0} {:>10.0} {:>10.0} {:>8.1} {:>10}",
            name,
            outcome.events,
            outcome.commits,
            flushed.map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
            secs,
            outcome.events as f64 / secs,
            outcome.commits as f64 / secs,
            secs * 1e6 / outcome.commits as f64,
            db_bytes as f64 / (1024.0 * 1024.0),
            cpu.map_or_else(|| "n/a".to_owned(), |s| format!("{:.3}", s * 100_000.0 / outcome.events as f64)),
        );
        if let Some(detail) = outcome.detail {
            println!("  {detail}");
        }
    }
}

/// Scenario 1 and 2: `sources` tasks store `events` between them.
async fn store_only(queue: Queue, events: usize, page: usize, sources: usize, pool: Pool) -> Outcome {
    let start = Instant::now();
    let tasks: Vec<_> = (0..sources)
        .map(|s| {
            let share = events / sources + usize::from(s < events % sources);
            tokio::spawn(store_source(queue.clone(), format!("source-{}", s + 1), share, page, pool.clone()))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let wall = start.elapsed();
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.events as usize, events, "every event stored once");
    assert_eq!(stats.checkpoints.len(), sources);
    let commits = latencies.len();
    Outcome { events, commits, wall, detail: Some(format!("store_page call to reply: {}", spread(latencies))) }
}

/// Scenario 3: one source stores `events` while every sink reads and acks all of them.
async fn store_and_ack(queue: Queue, events: usize, page: usize, pool: Pool) -> Outcome {
    let start = Instant::now();
    let sinks: Vec<_> = (1..=SINKS).map(|i| tokio::spawn(drain(queue.clone(), format!("sink-{i}"), events))).collect();
    let source = tokio::spawn(store_source(queue.clone(), "source-1".into(), events, page, pool));
    let store_latencies = source.await.unwrap();
    let (pages, stored_in) = (store_latencies.len(), start.elapsed());
    let (mut ack_latencies, mut reads, mut last) = (Vec::new(), 0, start);
    for sink in sinks {
        let (a, r, done) = sink.await.unwrap();
        ack_latencies.extend(a);
        (reads, last) = (reads + r, last.max(done));
    }
    let acks = ack_latencies.len();
    let wall = last - start;
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.events, 0, "an event every sink acked is deleted");
    let detail = format!(
        "{pages} store_page + {acks} ack commits ({:.0} events per ack), {reads} read_batch calls; the source \
         had stored all after {:.2} s ({:.0} events/s)\n  store_page call to reply: {}\n  ack call to reply: {}",
        (SINKS * events) as f64 / acks as f64,
        stored_in.as_secs_f64(),
        events as f64 / stored_in.as_secs_f64(),
        spread(store_latencies),
        spread(ack_latencies),
    );
    Outcome { events, commits: pages + acks, wall, detail: Some(detail) }
}

/// One sink: `read_batch` then `ack` up to the batch's last id until it acked `total` events,
/// waiting for new events when none is queued. Returns (each ack's latency, reads, when it acked
/// the last).
async fn drain(queue: Queue, sink: String, total: usize) -> (Vec<Duration>, usize, Instant) {
    let mut newest = queue.subscribe_new_events();
    let (mut acked, mut acks, mut reads) = (0, Vec::new(), 0);
    while acked < total {
        // Marked seen before reading: an event stored after this read wakes `changed` below.
        newest.borrow_and_update();
        let batch = queue.read_batch(&sink, BATCH_EVENTS, BATCH_BYTES).await.unwrap();
        reads += 1;
        let Some(last) = batch.last() else {
            newest.changed().await.unwrap();
            continue;
        };
        let start = Instant::now();
        queue.ack(&sink, last.id).await.unwrap();
        acks.push(start.elapsed());
        acked += std::hint::black_box(&batch).len();
    }
    assert_eq!(acked, total, "{sink}");
    (acks, reads, Instant::now())
}

type Pool = std::sync::Arc<Vec<Vec<u8>>>;

/// One source storing `events` in pages of `page`, each page with its checkpoint; returns each
/// `store_page`'s latency (one per page: one commit each).
async fn store_source(queue: Queue, source: String, events: usize, page: usize, pool: Pool) -> Vec<Duration> {
    let from = DateTime::from_timestamp(1_773_792_000, 0).unwrap(); // 2026-03-18T00:00:00Z
    let window = Window { from, to: from + chrono::Duration::days(1) };
    let base_ms = from.timestamp_millis();
    let prune = base_ms - chrono::Duration::days(2).num_milliseconds();
    let (mut done, mut pages, mut latencies) = (0, 0u32, Vec::new());
    while done < events {
        let n = page.min(events - done);
        let batch = (done..done + n)
            .map(|i| NewEvent {
                dedupe_key: format!("{source}:{i:09}"),
                event_time_ms: base_ms + i as i64,
                body: pool[i % pool.len()].clone(),
            })
            .collect();
        done += n;
        pages += 1;
        let sweep = Sweep { pages, ..Sweep::new(window, PageCursor::Offset { skip: done as u64 }) };
        let checkpoint = Checkpoint { done_until: Some(from), sweep: Some(sweep), ..Checkpoint::default() };
        let write = PageWrite {
            source: source.clone(),
            events: batch,
            dead_letters: Vec::new(),
            checkpoint: Some(serde_json::to_string(&checkpoint).unwrap()),
            prune_dedupe_before_ms: Some(prune),
            done_until_ms: Some(from.timestamp_millis()),
        };
        let start = Instant::now();
        let outcome = queue.store_page(write).await.unwrap();
        latencies.push(start.elapsed());
        assert_eq!((outcome.stored, outcome.duplicates), (n, 0), "{source}: page {pages}");
    }
    latencies
}

/// `p50 … ms, p90 … ms, max … ms` of `times`.
fn spread(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms (n = {})", at(0.5), at(0.9), at(1.0), times.len())
}

/// OCSF event bodies: `POOL_PER_VENDOR` simulated records of each vendor, mapped.
fn body_pool() -> Vec<Vec<u8>> {
    let time: DateTime<Utc> = DateTime::from_timestamp(1_773_835_200, 0).unwrap();
    let severity = Policy::default();
    let mut pool = Vec::new();
    for v in SimVendor::ALL {
        let mapper = VendorId::from_name(v.name()).unwrap();
        for (i, raw) in sim::sample_records(v, POOL_PER_VENDOR, 42).iter().enumerate() {
            let key = format!("pool-{i}");
            let ctx = Context {
                organization: "bench-org",
                dedupe_key: &key,
                time,
                raw,
                log_name: "saas-audit",
                processed_ms: 1_780_000_000_000,
            };
            pool.push(vendors::map_record(mapper, &ctx, &severity).unwrap());
        }
    }
    pool
}

/// Median and 90th percentile (µs) of `fdatasync` after writing 4 KiB, over 100 writes: appended
/// (the file grows, as a new WAL does) or overwriting a block of a file that exists (as a WAL
/// reused after a checkpoint does).
fn fsync_floor(dir: &Path, append: bool) -> (f64, f64) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let block = vec![0x5a_u8; 4096];
    if !append {
        (0..100).for_each(|_| file.write_all(&block).unwrap());
        file.sync_all().unwrap();
    }
    let mut times: Vec<f64> = (0..100u64)
        .map(|i| {
            if !append {
                file.seek(SeekFrom::Start(i * 4096)).unwrap();
            }
            file.write_all(&block).unwrap();
            let start = Instant::now();
            file.sync_data().unwrap();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[50], times[90])
}

/// Flush requests `device` completed since boot (the 16th counter of /proc/diskstats, Linux
/// 5.5+): one per fsync that reached the disk, plus the filesystem's own journal commits.
fn flushes(device: Option<&str>) -> Option<u64> {
    let device = device?;
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let line = stats.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.get(2) == Some(&device))?;
    line.get(18)?.parse().ok()
}
