//! A real rsyslogd (Debian's 8.2302, with the gtls and ossl stream drivers) as a test receiver
//! for the syslog sink, plus the test PKI it needs (made with rcgen, written as PEM files).
//!
//! Each [`Rsyslog`] is one rsyslogd in the foreground, on 127.0.0.1 and a free port, with its own
//! config, work directory, pidfile and output files under the test's directory. It never reads
//! the system config and never touches system paths: no `/etc/rsyslog.conf` (we pass `-f`), no
//! imuxsock or imklog (only the listener's input module is loaded), and its own internal messages
//! are processed in-process (`processInternalMessages="on"`) instead of being sent to `/dev/log`
//! or the journal.
//!
//! Every received message is written twice: `out/parsed.jsonl` (one JSON object per message, the
//! header fields as rsyslog parsed them, read back as [`Record`]s) and `out/raw.log` (`%rawmsg%`,
//! the whole message without its framing, one per line). rsyslog's defaults stay on where they
//! show what a real receiver does: it escapes control characters on receive (LF becomes `#012`,
//! in `%rawmsg%` too, so raw.log is not byte-exact) and keeps the UTF-8 BOM at the start of MSG;
//! [`Record`] keeps both as rsyslog wrote them.
//!
//! This module owns starting, stopping and reading rsyslogd; it does not speak syslog itself.
//! The tests build their frames or use the crate's sink.
#![allow(dead_code)] // each test module uses a different part of the harness

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long rsyslogd gets to come up (or to exit after a signal) before the test fails.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(20);
/// The MSGID of the UDP readiness probe; rsyslog routes it to `out/probe.jsonl`, never to the
/// output files the tests read.
pub const PROBE_MSGID: &str = "HARNESS-PROBE";

pub use crate::harness::pki::{Pki, make_pki};

// ---------------------------------------------------------------------------------------------
// Listener kinds
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
pub enum Listener {
    /// RFC 5425 TLS with octet-counting; `mutual` requires a client certificate signed by the
    /// test CA (`x509/certvalid`: chain checked, no name check). Both drivers support it.
    Tls {
        driver: TlsDriver,
        mutual: bool,
    },
    /// Plain TCP (rsyslog imtcp auto-detects octet-counted and LF-framed messages).
    Tcp,
    Udp,
}

/// rsyslog's two TLS stream drivers. They differ in what they negotiate: in our runs gtls chose
/// TLS 1.2 and ossl TLS 1.3 (PROTOCOLS.md §2a), so testing both covers both protocol versions.
#[derive(Clone, Copy, Debug)]
pub enum TlsDriver {
    /// GnuTLS (`lmnsd_gtls`, package rsyslog-gnutls).
    Gtls,
    /// OpenSSL (`lmnsd_ossl`, package rsyslog-openssl).
    Ossl,
}

impl TlsDriver {
    fn name(self) -> &'static str {
        match self {
            TlsDriver::Gtls => "gtls",
            TlsDriver::Ossl => "ossl",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The receiver
// ---------------------------------------------------------------------------------------------

/// One rsyslogd child process. Dropping it SIGKILLs the process; the files stay for the
/// tempdir to clean up.
pub struct Rsyslog {
    dir: PathBuf,
    port: u16,
    listener: Listener,
    child: Option<Child>,
}

impl Rsyslog {
    /// Starts rsyslogd in the foreground (`-n -f <conf> -i <pidfile>`, after validating the
    /// config with `-N1`) on 127.0.0.1 and a free port, and returns once the listener accepts:
    /// TCP/TLS when the port is in LISTEN state (no connection is made, so rsyslog logs no
    /// aborted handshake), UDP when a probe datagram (MSGID `HARNESS-PROBE`) has been written
    /// (to `out/probe.jsonl`, not to the files tests read). Panics with rsyslog's output if the
    /// config is invalid, and with its diagnostics if it does not come up within 20 s. `pki` is
    /// required for [`Listener::Tls`].
    pub fn start(dir: &Path, listener: Listener, pki: Option<&Pki>) -> Rsyslog {
        let rsyslogd = rsyslogd_path();
        let dir = dir.to_path_buf();
        // The config quotes paths in "..."; a quote or backslash in the test dir would break it.
        assert!(
            !dir.to_string_lossy().contains(['"', '\\', '\n']),
            "rsyslog config cannot quote the path {}",
            dir.display()
        );
        fs::create_dir_all(dir.join("work")).unwrap();
        fs::create_dir_all(dir.join("out")).unwrap();

        let port = free_port(listener);
        let conf = config(&dir, port, listener, pki);
        fs::write(dir.join("rsyslog.conf"), conf).unwrap();

        let check =
            Command::new(&rsyslogd).arg("-N1").arg("-f").arg(dir.join("rsyslog.conf")).env_clear().output().unwrap();
        assert!(
            check.status.success(),
            "rsyslogd -N1 rejected {}:\n{}{}\n--- config ---\n{}",
            dir.join("rsyslog.conf").display(),
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr),
            fs::read_to_string(dir.join("rsyslog.conf")).unwrap_or_default()
        );

        let mut rsyslog = Rsyslog { dir, port, listener, child: None };
        rsyslog.spawn();
        rsyslog
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory given to [`Rsyslog::start`]; the config is `rsyslog.conf` there.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/out/parsed.jsonl`: one JSON object per received message.
    pub fn parsed_path(&self) -> PathBuf {
        self.dir.join("out/parsed.jsonl")
    }

    /// `<dir>/out/raw.log`: each received message without its framing (`%rawmsg%`), one per
    /// line; control characters are already escaped (`#012`), the BOM is kept.
    pub fn raw_path(&self) -> PathBuf {
        self.dir.join("out/raw.log")
    }

    /// SIGKILL, wait for exit. Output files stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill sends SIGKILL; an already exited child is fine.
            let _ = child.kill();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, wait for exit (rsyslog flushes and closes its files). Panics if it does not exit
    /// within 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if child.try_wait().unwrap().is_none() {
            // std has no SIGTERM and the crate forbids unsafe (no libc::kill): use kill(1).
            let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
            assert!(status.success(), "kill -TERM {} failed", child.id());
            let deadline = Instant::now() + EXIT_TIMEOUT;
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("rsyslogd did not exit within {EXIT_TIMEOUT:?} of SIGTERM\n{}", self.diagnostics());
                }
                std::thread::sleep(POLL);
            }
        }
    }

    /// Starts again on the same port with the same config, appending to the same output files.
    /// A still running rsyslogd is stopped (SIGTERM) first.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every message received so far (parsed.jsonl), probes excluded, in arrival order. A line
    /// rsyslog has not finished writing (no trailing LF yet) is not returned.
    pub fn records(&self) -> Vec<Record> {
        let text = match fs::read(self.parsed_path()) {
            Ok(bytes) => String::from_utf8(bytes).expect("parsed.jsonl is UTF-8 (jsonf escapes the rest)"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => panic!("reading {}: {e}", self.parsed_path().display()),
        };
        // Only complete lines: omfile may write a long record in more than one write(2).
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => return Vec::new(),
        };
        complete
            .lines()
            .map(|line| {
                serde_json::from_str::<Record>(line)
                    .unwrap_or_else(|e| panic!("{}: unexpected line {line:?}: {e}", self.parsed_path().display()))
            })
            .filter(|record| record.msgid != PROBE_MSGID)
            .collect()
    }

    /// Waits (polling every 20 ms, up to `timeout`) until at least `n` records are there and
    /// returns them all. Panics with how many arrived and rsyslog's diagnostics on timeout.
    ///
    /// This blocks the thread. In a `#[tokio::test]` whose sender runs on the same current-thread
    /// runtime, use [`Rsyslog::wait_for_records_async`] instead, or the sender never runs.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(records) = self.records_by(n, deadline, timeout) {
                return records;
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Rsyslog::wait_for_records`] for async tests: yields to the runtime between polls. The
    /// deadline is wall-clock time, so it also holds under `tokio::time::pause()`.
    pub async fn wait_for_records_async(&self, n: usize, timeout: Duration) -> Vec<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(records) = self.records_by(n, deadline, timeout) {
                return records;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One poll of the wait: the records once there are `n`, `None` to poll again, a panic
    /// after the deadline.
    fn records_by(&self, n: usize, deadline: Instant, timeout: Duration) -> Option<Vec<Record>> {
        let records = self.records();
        if records.len() >= n {
            return Some(records);
        }
        if Instant::now() > deadline {
            self.panic_waiting(n, timeout, &records);
        }
        None
    }

    fn panic_waiting(&self, n: usize, timeout: Duration, records: &[Record]) -> ! {
        panic!(
            "rsyslog ({:?} on 127.0.0.1:{}) received {} of {n} expected messages within {timeout:?}: {records:#?}\n{}",
            self.listener,
            self.port,
            records.len(),
            self.diagnostics()
        )
    }

    /// rsyslog's own diagnostics: its internal messages (errors, TLS failures, start/stop) and
    /// the child's stderr and stdout, across restarts.
    pub fn diagnostics(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- rsyslogd internal messages ({}) ---\n{}--- rsyslogd stderr ---\n{}--- rsyslogd stdout ---\n{}",
            self.dir.join("rsyslogd-internal.log").display(),
            read("rsyslogd-internal.log"),
            read("rsyslogd.stderr"),
            read("rsyslogd.stdout"),
        )
    }

    fn spawn(&mut self) {
        let append = |name: &str| OpenOptions::new().create(true).append(true).open(self.dir.join(name)).unwrap();
        let child = Command::new(rsyslogd_path())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            // Nothing from the test runner's environment: in particular no NOTIFY_SOCKET (it
            // would sd_notify the runner's systemd) and no LISTEN_FDS (socket activation).
            .env_clear()
            .stdin(Stdio::null())
            .stdout(append("rsyslogd.stdout"))
            .stderr(append("rsyslogd.stderr"))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_until_listening();
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let probes_before = self.probe_count();
        let udp = matches!(self.listener, Listener::Udp).then(|| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap());
        let mut next_probe = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("rsyslogd exited during start-up ({status})\n{}", self.diagnostics());
            }
            match &udp {
                None => {
                    if tcp_listening(self.port) {
                        return;
                    }
                }
                // UDP has no handshake: send probes (every 200 ms; one sent before the socket is
                // bound is lost) until one has been written.
                Some(socket) => {
                    if self.probe_count() > probes_before {
                        return;
                    }
                    if Instant::now() >= next_probe {
                        let probe = format!("<14>1 - - harness - {PROBE_MSGID} - probe");
                        // ECONNREFUSED from an earlier probe's ICMP is expected before bind.
                        let _ = socket.send_to(probe.as_bytes(), addr);
                        next_probe = Instant::now() + Duration::from_millis(200);
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "rsyslogd ({:?}) did not listen on {addr} within {STARTUP_TIMEOUT:?}\n{}",
                    self.listener,
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    fn probe_count(&self) -> usize {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.dir.join("out/probe.jsonl")) {
            file.read_to_string(&mut text).unwrap();
        }
        text.matches('\n').count()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a socket listens on 127.0.0.1:`port`: an entry in `/proc/net/tcp` (Linux) with that
/// local address and state `0A` (LISTEN). A connect would tell the same (the kernel completes it
/// from the backlog once `listen(2)` ran), but for TLS it costs a handshake aborted without
/// close_notify, which rsyslog logs as an error ("unexpected eof" with ossl, "non-properly
/// terminated" with gtls): that noise would break tests asserting that diagnostics() is clean.
fn tcp_listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}"); // 127.0.0.1 as the kernel prints it on little-endian
    let table = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (the harness runs on Linux)");
    table.lines().skip(1).any(|line| {
        // sl local_address rem_address st ...
        let mut columns = line.split_whitespace().skip(1);
        columns.next() == Some(local.as_str()) && columns.nth(1) == Some("0A")
    })
}

/// The rsyslogd binary, or a panic saying how to install it (the test must not pass silently).
fn rsyslogd_path() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    for dir in candidates {
        let path = dir.join("rsyslogd");
        if path.is_file() {
            return path;
        }
    }
    panic!("rsyslogd not found: install rsyslog rsyslog-gnutls rsyslog-openssl (scripts/test.sh does)")
}

/// A port that was free a moment ago: bind port 0 with the listener's protocol, read it, drop
/// the socket. Another process could take it before rsyslog binds; then start-up times out with
/// rsyslog's bind error in the diagnostics.
fn free_port(listener: Listener) -> u16 {
    match listener {
        Listener::Udp => UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port(),
        Listener::Tcp | Listener::Tls { .. } => {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
        }
    }
}

/// The rsyslog config for one listener. Every path is absolute and under `dir`.
fn config(dir: &Path, port: u16, listener: Listener, pki: Option<&Pki>) -> String {
    let d = dir.display();
    let input = match listener {
        Listener::Udp => format!(
            r#"module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}" ruleset="in")"#
        ),
        Listener::Tcp => format!(
            r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="in")"#
        ),
        Listener::Tls { driver, mutual } => {
            let pki = pki.expect("Listener::Tls needs a Pki (make_pki)");
            // Everything TLS is set per input (verified on 8.2302 for both drivers), so nothing
            // depends on the global DefaultNetstreamDriver* settings. "anon" = the server
            // presents its certificate but asks nothing of the client; "x509/certvalid" =
            // the client must present a certificate that chains to CAFile (its name is not
            // checked, which is what an operator's "client certs from our CA" policy means).
            let auth_mode = if mutual { "x509/certvalid" } else { "anon" };
            format!(
                r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="in"
      streamDriver.name="{driver}" streamDriver.mode="1" streamDriver.authMode="{auth_mode}"
      streamDriver.CAFile="{ca}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")"#,
                driver = driver.name(),
                ca = pki.ca_pem.display(),
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
            )
        }
    };
    format!(
        r#"# Written by tests/it/rsyslog/mod.rs for one test. Only this file is read (-f): no system config.
global(
  workDirectory="{d}/work"
  # rsyslog's default is 8k and it truncates longer messages; the sink sends OCSF JSON that can be
  # larger. Operators need the same setting.
  maxMessageSize="64k"
  # Internal messages (errors, TLS failures) go through our own rulesets below, not to /dev/log
  # or the journal.
  processInternalMessages="on"
  # No reverse lookups of the peer: nothing here needs %fromhost% and DNS can stall start-up.
  net.enableDNS="off"
)

# Direct main queue: the thread that reads a socket runs the actions itself, so a batch of
# messages read from a connection is in the output files before the next read. Without it a
# message could sit in an in-memory queue, and a SIGKILL test would lose it on rsyslog's side,
# not ours. The "in" ruleset has no queue of its own, so it runs on this main queue too.
main_queue(queue.type="Direct")

{input}

template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="list" option.jsonf="on") {{
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="app" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}

# omfile buffers writes by default. flushOnTXEnd flushes at the end of every batch (with the
# Direct queue: every read from the socket) and asyncWriting="off" writes on the calling thread,
# so a test sees a message as soon as rsyslog has processed it. ioBufferSize above
# maxMessageSize (escaped JSON can be larger still) lets most records go out in one write(2);
# the reader ignores an unterminated last line anyway.
ruleset(name="in") {{
  if $msgid == "{PROBE_MSGID}" then {{
    action(type="omfile" file="{d}/out/probe.jsonl" template="parsed"
           flushOnTXEnd="on" asyncWriting="off")
    stop
  }}
  action(type="omfile" file="{d}/out/raw.log" template="raw"
         flushOnTXEnd="on" asyncWriting="off" ioBufferSize="256k")
  action(type="omfile" file="{d}/out/parsed.jsonl" template="parsed"
         flushOnTXEnd="on" asyncWriting="off" ioBufferSize="256k")
}}

# The default ruleset receives only rsyslog's internal messages (every input is bound to "in").
action(type="omfile" file="{d}/rsyslogd-internal.log" template="RSYSLOG_FileFormat"
       flushOnTXEnd="on" asyncWriting="off")
"#
    )
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// One received message as rsyslog parsed it (a line of parsed.jsonl). Every field is the string
/// rsyslog's jsonf wrote, unmodified: nil fields are `"-"`, control characters in `msg` are
/// escaped by rsyslog (`#012` for LF), and a leading BOM stays in `msg`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Record {
    /// PRI as a decimal string (jsonf writes it as a string); see [`Record::pri`].
    pub pri: String,
    pub version: String,
    /// `timereported` as RFC 3339. rsyslog writes a sent timestamp as it was sent (fraction digits
    /// and `Z` kept: `...00.5Z` stays `...00.5Z`); a nil one (`-`) becomes the reception time
    /// with the host's UTC offset (`...+00:00`).
    pub timestamp: String,
    pub hostname: String,
    pub app: String,
    pub procid: String,
    pub msgid: String,
    pub sd: String,
    pub msg: String,
}

impl Record {
    /// PRI as a number (facility * 8 + severity).
    pub fn pri(&self) -> u8 {
        self.pri.parse().unwrap_or_else(|e| panic!("PRI {:?} is not a number: {e}", self.pri))
    }

    /// MSG without the leading UTF-8 BOM that RFC 5424 puts before UTF-8 content (rsyslog keeps it).
    pub fn msg_without_bom(&self) -> &str {
        self.msg.strip_prefix('\u{feff}').unwrap_or(&self.msg)
    }
}
