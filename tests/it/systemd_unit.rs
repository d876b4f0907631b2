//! The shipped systemd unit agrees with the agent: systemd gives a stopping agent more time
//! than the agent gives its sinks (`TimeoutStopSec` above the default `--drain-timeout`), and
//! the agent starts once the clock is synchronised (`time-sync.target`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::time::Duration;

const UNIT: &str = include_str!("../../packaging/systemd/auditrelay.service");

/// Every value of `key=` in the unit (comments skipped), in order.
fn values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .collect()
}

/// The default of `run --drain-timeout`, as the binary's own help states it.
fn default_drain_timeout() -> Duration {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay")).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let option = &help[help.find("--drain-timeout").expect("run --help lists --drain-timeout")..];
    let default = &option[option.find("[default: ").expect("a default") + "[default: ".len()..];
    humantime::parse_duration(&default[..default.find(']').unwrap()]).unwrap()
}

#[test]
fn stop_timeout_leaves_room_for_the_drain_and_the_shutdown_after_it() {
    let stop = values("TimeoutStopSec");
    assert_eq!(stop.len(), 1, "{stop:?}");
    let stop = humantime::parse_duration(stop[0]).unwrap();
    let drain = default_drain_timeout();
    // After the drain deadline the agent still stops its sources' requests, commits and closes
    // the database: at least 10 s more before systemd's SIGKILL.
    assert!(stop >= drain + Duration::from_secs(10), "TimeoutStopSec {stop:?} vs --drain-timeout {drain:?}");
}

#[test]
fn the_agent_starts_after_the_clock_is_synchronised() {
    let wants: Vec<&str> = values("Wants").into_iter().flat_map(str::split_whitespace).collect();
    let after: Vec<&str> = values("After").into_iter().flat_map(str::split_whitespace).collect();
    assert!(wants.contains(&"time-sync.target"), "Wants= {wants:?}");
    assert!(after.contains(&"time-sync.target"), "After= {after:?}");
    assert!(after.contains(&"network-online.target"), "After= {after:?}");
}

/// Issue 18 point 1: `systemctl reload` fails on a file the agent would refuse. Debian 12's
/// systemd (252) has no `Type=notify-reload`, so `auditrelay reload` checks the file, sends the
/// SIGHUP and waits for the agent's answer in the runtime directory.
#[test]
fn a_reload_checks_the_file_signals_the_agent_and_waits_for_its_answer() {
    assert_eq!(values("Type"), ["notify"]);
    let reload = values("ExecReload");
    assert_eq!(reload.len(), 1, "{reload:?}");
    let words: Vec<&str> = reload[0].split_whitespace().collect();
    let run: Vec<&str> = values("ExecStart")[0].split_whitespace().collect();
    assert_eq!(words[..2], ["/usr/bin/auditrelay", "reload"], "{reload:?}");
    // The file the running agent reads, and the agent's pid.
    assert_eq!(words[2..4], run[2..], "ExecReload= {reload:?} vs ExecStart= {run:?}");
    assert_eq!(words[4..], ["--pid", "$MAINPID"], "{reload:?}");
    assert_eq!(values("RuntimeDirectory"), ["auditrelay"]);
}

/// Issue 18 point 2: an optional environment file for `${ENV}` secrets (no file, no error).
#[test]
fn an_optional_environment_file_holds_env_secrets() {
    assert_eq!(values("EnvironmentFile"), ["-/etc/auditrelay/env"]);
}
