//! The floor of `e2e` (issue 21 point 2): the CPU cost of the work no design can avoid for the
//! events a run delivered, measured in this process on the very bytes the file sink received,
//! so that the agent's CPU per event can be printed as a ratio of it.
//!
//! The parts, each timed with this thread's CPU clock (`/proc/thread-self/schedstat`, user +
//! system, nanoseconds), never with the wall clock:
//! - (a) serializing each event once: the file sink's lines are parsed into `serde_json::Value`
//!   beforehand (not timed), then `serde_json::to_writer` writes each into a reused buffer;
//! - (b) compressing the HEC bodies: the envelopes the HEC sink builds around those events
//!   (`time`, `host`, `source`, `sourcetype`, its default `fields`, then `event`), one body per
//!   batch of the sinks' default size (500 events, at most 1 MiB of events), gzipped with the
//!   agent's crate and level (`flate2` on `zlib-rs`, `Compression::fast()`);
//! - (c) writing the bytes each sink must receive, in those batches: the file sink's bytes with
//!   write(2) to a file beside the agent's state, the syslog volume (messages and their octet
//!   counts) and the gzipped HEC bodies each with write(2) to a loopback TCP connection whose
//!   other end a thread of this process reads and discards;
//! - (d) one `fdatasync` per durable commit: the CPU time of writing 4 KiB and syncing it,
//!   measured on this disk (its median), times the run's page commits (the caller counts them).
//!
//! It deliberately leaves out everything a design chooses (the queue's WAL and database, reading
//! the events back, HTTP, envelopes' building, syslog headers' formatting, the file sink's own
//! syncs per batch): that is the distance the ratio shows. The receiving threads' CPU is not
//! counted: it is the receivers' work, not the agent's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a failed run

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use auditrelay::ocsf::summary::{summarize, vendor_slug};
use flate2::Compression;
use flate2::write::GzEncoder;

/// The sinks' default batch: `batch_max_events` and `batch_max_bytes` (of queued event bytes).
pub const BATCH_EVENTS: usize = 500;
pub const BATCH_BYTES: usize = 1 << 20;
/// Events parsed and then timed together: the clock is read a few times per round, not per
/// event, and a round's parsed events stay a few tens of MiB.
const ROUND_BATCHES: usize = 10;
/// `fdatasync`s timed for (d).
const FSYNC_SAMPLES: usize = 200;

/// What the floor's parts cost over all the events of a run (CPU seconds) and the bytes they
/// handled.
pub struct Floor {
    pub events: u64,
    pub batches: u64,
    /// (a) `serde_json::to_writer` of every event.
    pub serialize: f64,
    pub json_bytes: u64,
    /// (b) gzip of every HEC body.
    pub gzip: f64,
    pub hec_plain_bytes: u64,
    pub hec_gzip_bytes: u64,
    /// (c) write(2) of the file sink's bytes to a file.
    pub file_write: f64,
    pub file_bytes: u64,
    /// (c) write(2) of the syslog volume to loopback TCP.
    pub syslog_write: f64,
    pub syslog_bytes: u64,
    /// (c) write(2) of the gzipped HEC bodies to loopback TCP.
    pub hec_write: f64,
    /// (d) the CPU of one 4 KiB write + `fdatasync` (median), and its wall time (median).
    pub fsync_cpu: Duration,
    pub fsync_wall: Duration,
}

impl Floor {
    /// The floor of a run with the three sinks (file, HEC gzip, syslog TCP) and `commits`
    /// durable commits, in CPU seconds.
    pub fn three_sinks(&self, commits: u64) -> f64 {
        self.serialize + self.gzip + self.file_write + self.syslog_write + self.hec_write + self.fsyncs(commits)
    }

    /// The floor of a run with the file sink alone and `commits` durable commits.
    pub fn file_only(&self, commits: u64) -> f64 {
        self.serialize + self.file_write + self.fsyncs(commits)
    }

    /// (d): `commits` fdatasyncs, in CPU seconds.
    pub fn fsyncs(&self, commits: u64) -> f64 {
        self.fsync_cpu.as_secs_f64() * commits as f64
    }
}

/// This thread's CPU time (user + system) so far. The file stays open: one pread per reading.
struct ThreadCpu(std::fs::File);

impl ThreadCpu {
    fn open() -> ThreadCpu {
        ThreadCpu(std::fs::File::open("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat"))
    }

    fn now(&self) -> Duration {
        let mut buf = [0u8; 128];
        let n = self.0.read_at(&mut buf, 0).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
    }

    /// The CPU seconds `work` took on this thread.
    fn time<T>(&self, work: impl FnOnce() -> T) -> (f64, T) {
        let start = self.now();
        let out = work();
        ((self.now() - start).as_secs_f64(), out)
    }
}

/// A loopback TCP connection whose far end a thread reads and discards; the thread ends when
/// the connection is dropped.
fn loopback_sink() -> (TcpStream, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut receiver, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        while let Ok(n) = receiver.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    });
    (sender, reader)
}

/// The HEC sink's envelope of one queued event (`HecSink::envelope` with the default `source`,
/// `sourcetype` and `fields`), appended to `out` with its newline.
fn hec_envelope(out: &mut Vec<u8>, host: &str, event: &[u8]) {
    let summary = summarize(event).unwrap();
    out.push(b'{');
    if let Some(ms) = summary.time.filter(|ms| *ms >= 0) {
        write!(out, "\"time\":{}.{:03},", ms / 1000, ms % 1000).unwrap();
    }
    let text = |s: &str| serde_json::to_string(s).unwrap();
    let vendor = summary.metadata.as_ref().and_then(|m| m.product.as_ref()).and_then(|p| p.vendor_name.as_deref());
    let tenant = summary.metadata.as_ref().and_then(|m| m.tenant_uid.as_deref());
    write!(
        out,
        "\"host\":{},\"source\":\"auditrelay\",\"sourcetype\":{}",
        text(host),
        text(&format!("ocsf:{}", vendor_slug(vendor)))
    )
    .unwrap();
    let mut fields = Vec::new();
    if let Some(class) = summary.class_uid {
        fields.push(format!("\"class_uid\":{}", text(&class.to_string())));
    }
    if let Some(v) = vendor {
        fields.push(format!("\"vendor\":{}", text(v)));
    }
    if let Some(t) = tenant {
        fields.push(format!("\"tenant\":{}", text(t)));
    }
    if !fields.is_empty() {
        write!(out, ",\"fields\":{{{}}}", fields.join(",")).unwrap();
    }
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(event);
    out.extend_from_slice(b"}\n");
}

/// Measures the floor over the events of `events_file` (the file sink's output: one event per
/// line), writing its scratch file in `scratch` (the agent's filesystem). `syslog_bytes` is
/// what the syslog receiver got in the run (messages with their octet counts); it is written in
/// the same batches, in proportion to each batch's event bytes.
pub fn measure(events_file: &Path, scratch: &Path, syslog_bytes: u64) -> Floor {
    let cpu = ThreadCpu::open();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let file_total = std::fs::metadata(events_file).unwrap().len();
    let syslog_per_byte = syslog_bytes as f64 / file_total.max(1) as f64;

    let (fsync_cpu, fsync_wall) = fsync_cost(&scratch.join("floor-fsync"));

    let mut lines = BufReader::with_capacity(1 << 20, std::fs::File::open(events_file).unwrap());
    let scratch_file = scratch.join("floor-file-sink.ndjson");
    let mut file = std::fs::File::create(&scratch_file).unwrap();
    let (mut syslog, syslog_reader) = loopback_sink();
    let (mut hec, hec_reader) = loopback_sink();
    let filler = vec![b'x'; 2 * BATCH_BYTES];

    let mut floor = Floor {
        events: 0,
        batches: 0,
        serialize: 0.0,
        json_bytes: 0,
        gzip: 0.0,
        hec_plain_bytes: 0,
        hec_gzip_bytes: 0,
        file_write: 0.0,
        file_bytes: 0,
        syslog_write: 0.0,
        syslog_bytes: 0,
        hec_write: 0.0,
        fsync_cpu,
        fsync_wall,
    };
    let mut json = Vec::with_capacity(64 * 1024);
    let mut line = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    loop {
        // A round: up to ROUND_BATCHES batches as the sinks would read them (untimed).
        let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
        while batches.len() < ROUND_BATCHES {
            let mut batch: Vec<Vec<u8>> = Vec::new();
            let mut bytes = 0usize;
            loop {
                let event = match pending.take() {
                    Some(event) => event,
                    None => {
                        line.clear();
                        if lines.read_until(b'\n', &mut line).unwrap() == 0 {
                            break;
                        }
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        line.clone()
                    }
                };
                if !batch.is_empty() && (batch.len() == BATCH_EVENTS || bytes + event.len() > BATCH_BYTES) {
                    pending = Some(event);
                    break;
                }
                bytes += event.len();
                batch.push(event);
            }
            if batch.is_empty() {
                break;
            }
            batches.push(batch);
        }
        if batches.is_empty() {
            break;
        }
        let values: Vec<serde_json::Value> =
            batches.iter().flatten().map(|e| serde_json::from_slice(e).unwrap()).collect();
        let file_bodies: Vec<Vec<u8>> = batches
            .iter()
            .map(|b| {
                let mut body = Vec::with_capacity(b.iter().map(|e| e.len() + 1).sum());
                for e in b {
                    body.extend_from_slice(e);
                    body.push(b'\n');
                }
                body
            })
            .collect();
        let hec_bodies: Vec<Vec<u8>> = batches
            .iter()
            .map(|b| {
                let mut body = Vec::with_capacity(b.iter().map(|e| e.len() + 256).sum());
                for e in b {
                    hec_envelope(&mut body, &host, e);
                }
                body
            })
            .collect();
        floor.events += values.len() as u64;
        floor.batches += batches.len() as u64;

        // (a)
        let (s, bytes) = cpu.time(|| {
            let mut bytes = 0;
            for v in &values {
                json.clear();
                serde_json::to_writer(&mut json, v).unwrap();
                bytes += json.len() as u64;
            }
            bytes
        });
        floor.serialize += s;
        floor.json_bytes += bytes;
        drop(values);

        // (b)
        let (s, gzipped) = cpu.time(|| {
            hec_bodies
                .iter()
                .map(|body| {
                    let mut gz = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::fast());
                    gz.write_all(body).unwrap();
                    gz.finish().unwrap()
                })
                .collect::<Vec<_>>()
        });
        floor.gzip += s;
        floor.hec_plain_bytes += hec_bodies.iter().map(|b| b.len() as u64).sum::<u64>();
        floor.hec_gzip_bytes += gzipped.iter().map(|b| b.len() as u64).sum::<u64>();

        // (c) the file sink's bytes
        let (s, ()) = cpu.time(|| {
            for body in &file_bodies {
                file.write_all(body).unwrap();
            }
        });
        floor.file_write += s;
        floor.file_bytes += file_bodies.iter().map(|b| b.len() as u64).sum::<u64>();

        // (c) the syslog volume: each batch's share of it, from a filler buffer
        let sizes: Vec<usize> =
            file_bodies.iter().map(|b| (b.len() as f64 * syslog_per_byte).round() as usize).collect();
        let (s, ()) = cpu.time(|| {
            for size in &sizes {
                let mut left = *size;
                while left > 0 {
                    let n = left.min(filler.len());
                    syslog.write_all(&filler[..n]).unwrap();
                    left -= n;
                }
            }
        });
        floor.syslog_write += s;
        floor.syslog_bytes += sizes.iter().map(|n| *n as u64).sum::<u64>();

        // (c) the HEC bodies as sent
        let (s, ()) = cpu.time(|| {
            for body in &gzipped {
                hec.write_all(body).unwrap();
            }
        });
        floor.hec_write += s;
    }
    drop((syslog, hec));
    let (syslog_got, hec_got) = (syslog_reader.join().unwrap(), hec_reader.join().unwrap());
    assert_eq!((syslog_got, hec_got), (floor.syslog_bytes, floor.hec_gzip_bytes), "loopback bytes lost");
    drop(file);
    std::fs::remove_file(&scratch_file).unwrap();
    floor
}

/// The median CPU time and the median wall time of writing 4 KiB at the end of a file and
/// `fdatasync`ing it, over [`FSYNC_SAMPLES`] rounds on the filesystem of `path`.
fn fsync_cost(path: &Path) -> (Duration, Duration) {
    let cpu = ThreadCpu::open();
    let mut file = std::fs::File::create(path).unwrap();
    let page = [0x5au8; 4096];
    let (mut cpus, mut walls) = (Vec::new(), Vec::new());
    for _ in 0..FSYNC_SAMPLES {
        let (c0, w0) = (cpu.now(), Instant::now());
        file.write_all(&page).unwrap();
        file.sync_data().unwrap();
        cpus.push(cpu.now() - c0);
        walls.push(w0.elapsed());
    }
    drop(file);
    std::fs::remove_file(path).unwrap();
    cpus.sort();
    walls.sort();
    (cpus[cpus.len() / 2], walls[walls.len() / 2])
}
