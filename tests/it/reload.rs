//! Issue 15 points 7 and 11 (reload part), on the real binary: a reloaded source's old task has
//! ended before its replacement starts; renaming a sink keeps its backlog; a removed sink's
//! discarded backlog is logged with counts and counted on /metrics; a SIGTERM during a reload that waits on a sink is
//! honoured at once.
//!
//! The vendor is `harness/hostile.rs` on 127.0.0.1; the agent is `auditrelay run` with its log
//! in a file. Waits are conditions polled under deadlines.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;
use crate::harness::hostile;

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use harness::agent::{Agent, sample};
use harness::{delivered, out_path};
use hostile::*;

const RUN_LIMIT: Duration = Duration::from_secs(30);

fn records(prefix: &str, n: usize) -> Vec<serde_json::Value> {
    let t0 = Utc::now() - chrono::Duration::minutes(60);
    (0..n).map(|i| aitronos_record(&format!("{prefix}-{i:03}"), t0 + chrono::Duration::seconds(i as i64))).collect()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap_or_default().lines().count()
}

fn hup(agent: &Agent) {
    let sent = std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()]).status().unwrap();
    assert!(sent.success());
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A syslog sink table (plain TCP) for `port`, quick back-off.
fn syslog_sink(name: &str, port: u16, extra: &str) -> String {
    format!(
        "\n[[sinks]]\nname = {name:?}\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\n\
         backoff = {{ initial = \"10ms\", max = \"50ms\" }}\n{extra}\n"
    )
}

#[tokio::test]
async fn test_a_reloaded_source_has_ended_before_its_replacement_starts() {
    let served = records("order", 40);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "poll_interval = \"1s\"");
    let config = write_config(dir.path(), "", &source);
    let mut agent = Agent::start(&config, false);
    agent.until("the first records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 40).await;

    // A changed setting restarts the source.
    write_config(dir.path(), "", &source.replace("page_size = 5", "page_size = 7"));
    hup(&agent);
    agent.until("the reload", RUN_LIMIT, |a| a.count("configuration reloaded") >= 1).await;
    let log = agent.log();
    let stopped = log.find("source stopped for the reload");
    let reloaded = log.find("configuration reloaded");
    assert!(
        stopped.is_some_and(|s| reloaded.is_some_and(|r| s < r)),
        "the old source task must have ended before the reload started its replacement:\n{log}"
    );
    let status = agent.terminate(RUN_LIMIT).await;
    assert!(status.success(), "{}", agent.log());
    assert_eq!(delivered(&out_path(dir.path())).len(), 40);
}

#[tokio::test]
async fn test_sigterm_during_a_reload_waiting_on_a_sink_is_honoured_at_once() {
    let served = records("term", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    // A collector that takes the connection and never answers: the sink being removed is inside
    // a send, which a stop lets finish, up to the drain timeout (10 min). (A sink merely backing
    // off is left at once: test_a_reload_replacing_a_sink_in_back_off_….)
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let top = "";
    let config = write_config(dir.path(), top, &source);
    let text = std::fs::read_to_string(&config).unwrap();
    let hec = format!(
        "\n[[sinks]]\nname = \"down\"\ntype = \"hec\"\nurl = \"http://127.0.0.1:{port}\"\ntoken = \"t\"\ntimeout = \"10m\"\n"
    );
    std::fs::write(&config, format!("{text}{hec}")).unwrap();
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "10m"], &config, &log, &[]);
    agent.until("the file sink's records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 20).await;
    // The HEC sink's request is on the silent connection.
    let (_held, _) = silent.accept().unwrap();

    write_config(dir.path(), top, &source);
    hup(&agent);
    // The reload under way (not only the signal heard: a SIGTERM right after could be taken first).
    agent.until("the reload to begin", RUN_LIMIT, |a| a.count("reload: reading the configuration file") >= 1).await;
    // SIGTERM while the reload waits for the removed sink: the agent stops now, not after
    // the drain timeout.
    let status = agent.terminate(RUN_LIMIT).await;
    assert!(status.success(), "{}", agent.log());
    assert!(agent.log().contains("reload interrupted by a shutdown"), "{}", agent.log());
}

/// A configuration of the hostile Aitronos source, the file sink `out` (events.ndjson) and
/// `extra` sink tables.
fn config_with(dir: &Path, source: &str, extra: &str) -> std::path::PathBuf {
    let config = write_config(dir, "", source);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}{extra}")).unwrap();
    config
}

fn file_sink(dir: &Path, name: &str, file: &str, extra: &str) -> String {
    format!(
        "\n[[sinks]]\nname = {name:?}\ntype = \"file\"\npath = {:?}\n{extra}\n",
        dir.join(file).display().to_string()
    )
}

fn check(config: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "-c"])
        .arg(config)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[tokio::test]
async fn test_a_renamed_sink_keeps_its_backlog_and_check_flags_a_removed_one() {
    let served = records("ren", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let port = closed_port();
    // 1. `down` cannot deliver: its 20 events stay queued for it.
    let config = config_with(dir.path(), &source, &syslog_sink("down", port, ""));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    agent.until("the file sink's records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 20).await;
    agent.until("the syslog sink's failures", RUN_LIMIT, |a| a.count("batch not delivered") >= 2).await;
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());

    // 2. `check` of a configuration without it: the backlog it would discard, with counts.
    let removed = config_with(dir.path(), &source, "");
    let said = check(&removed);
    assert!(said.contains("sink \"down\" was removed from the configuration and still has 20 queued events"), "{said}");

    // 3. Renamed (and moved to a file): `check` says where its backlog goes, the agent delivers it.
    let renamed =
        config_with(dir.path(), &source, &file_sink(dir.path(), "moved", "moved.ndjson", "renamed_from = \"down\""));
    let said = check(&renamed);
    assert!(said.contains("sink \"down\" is renamed \"moved\""), "{said}");
    let mut agent = Agent::start(&renamed, true);
    let status = agent.exit(RUN_LIMIT).await;
    assert!(status.success(), "{}", agent.log());
    let moved = delivered(&dir.path().join("moved.ndjson"));
    assert_eq!(moved.len(), 20, "the renamed sink delivers its whole backlog:\n{}", agent.log());
    assert!(moved.values().all(|n| *n == 1));
    assert!(agent.log().contains("sink renamed"), "{}", agent.log());
    // Its former name is gone for good: nothing left to discard.
    assert!(!check(&renamed).contains("was removed"));
}

#[tokio::test]
async fn test_a_reload_renaming_a_sink_keeps_its_backlog_and_logs_a_removed_ones_discard() {
    let served = records("rel", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let port = closed_port();
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let stuck = format!("{}{}{telemetry}", syslog_sink("down", port, ""), syslog_sink("gone", port, ""));
    let config = config_with(dir.path(), &source, &stuck);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    agent.until("the file sink's records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 20).await;
    agent.until("both syslog sinks' failures", RUN_LIMIT, |a| a.count("batch not delivered") >= 4).await;

    // `down` becomes the file sink `moved`; `gone` is removed with its 20 events.
    let moved_sink = file_sink(dir.path(), "moved", "moved.ndjson", "renamed_from = \"down\"");
    config_with(dir.path(), &source, &format!("{moved_sink}{telemetry}"));
    hup(&agent);
    let moved = dir.path().join("moved.ndjson");
    agent.until("the renamed sink's backlog", RUN_LIMIT, |_| lines(&moved) >= 20).await;
    let discarded = agent.lines_with(&["\"gone\"", "no longer configured"]);
    let discarded = if discarded.is_empty() { agent.lines_with(&["gone", "no longer configured"]) } else { discarded };
    assert!(
        discarded.iter().any(|l| l.contains("discarded_events=20")),
        "the discard is logged with its count:\n{}",
        agent.log()
    );
    // And counted on /metrics: the removed sink's 20, nothing for the renamed one.
    let metrics = agent.metrics().await;
    assert_eq!(sample(&metrics, r#"auditrelay_sink_discarded_events_total{sink="gone"}"#), Some(20.0), "{metrics}");
    assert!(!metrics.contains(r#"auditrelay_sink_discarded_events_total{sink="down"}"#), "{metrics}");
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
    assert_eq!(delivered(&moved).len(), 20);
    assert!(delivered(&moved).values().all(|n| *n == 1));
}

#[tokio::test]
async fn test_queue_rename_sink_gives_the_backlog_to_the_new_name() {
    let served = records("cmd", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let config = config_with(dir.path(), &source, &syslog_sink("down", closed_port(), ""));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    agent.until("the syslog sink's failures", RUN_LIMIT, |a| a.count("batch not delivered") >= 2).await;
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());

    let renamed = config_with(dir.path(), &source, &file_sink(dir.path(), "moved", "moved.ndjson", ""));
    let rename = |from: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
            .args(["queue", "rename-sink", "--from", from, "--to", "moved", "-c"])
            .arg(&renamed)
            .output()
            .unwrap()
    };
    let out = rename("down");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sink down is now moved"));
    // Again: nothing left under the old name, and it says so.
    let again = rename("down");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("has no cursor"));
    let mut agent = Agent::start(&renamed, true);
    assert!(agent.exit(RUN_LIMIT).await.success(), "{}", agent.log());
    assert_eq!(delivered(&dir.path().join("moved.ndjson")).len(), 20, "{}", agent.log());
}

/// A reload that changes `[severity]` applies it to the events mapped afterwards. Before, a
/// source's fingerprint left the overrides out: the reload said "configuration reloaded" and
/// the running source went on with the old ones until the agent was restarted.
#[tokio::test]
async fn test_a_reload_changing_severity_overrides_applies_them_to_new_events() {
    let served = std::sync::Arc::new(std::sync::Mutex::new(records("plain", 10)));
    let serving = served.clone();
    let vendor = Hostile::start(move |r| aitronos_answer(r, &serving.lock().unwrap())).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "poll_interval = \"1s\"");
    let config = write_config(dir.path(), "", &source);
    let mut agent = Agent::start(&config, false);
    let out = out_path(dir.path());
    agent.until("the first records", RUN_LIMIT, |_| lines(&out) >= 10).await;

    let raise = "[severity]\noverrides = { \"aitronos:department.created\" = \"critical\" }";
    write_config(dir.path(), raise, &source);
    hup(&agent);
    agent.until("the reload", RUN_LIMIT, |a| a.count("configuration reloaded") >= 1).await;
    // Records the vendor has only now: inside the next window (past the lag, within the overlap).
    let t = Utc::now() - chrono::Duration::seconds(150);
    let later = (0..10).map(|i| aitronos_record(&format!("raised-{i:03}"), t + chrono::Duration::milliseconds(i)));
    served.lock().unwrap().extend(later);
    agent.until("the records after the reload", RUN_LIMIT, |_| lines(&out) >= 20).await;
    let status = agent.terminate(RUN_LIMIT).await;
    assert!(status.success(), "{}", agent.log());

    let events = harness::events(&out);
    assert_eq!(events.len(), 20);
    for event in &events {
        let id = event["metadata"]["original_event_uid"].as_str().unwrap();
        let want = if id.starts_with("raised-") { 5 } else { 1 };
        assert_eq!(event["severity_id"], want, "{id}: {event}");
    }
}

/// Issue 18 point 1: `auditrelay_config_last_reload_successful` is 1 at start, 0 after a
/// refused reload (the running configuration stays), 1 again after a good one; the timestamp
/// moves with each.
#[tokio::test]
async fn test_the_reload_metrics_say_whether_the_last_reload_was_refused() {
    let served = records("met", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "poll_interval = \"1s\"");
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, telemetry);
    let good = std::fs::read_to_string(&config).unwrap();
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the first records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;
    let reload_metrics = |metrics: &str| {
        (
            sample(metrics, "auditrelay_config_last_reload_successful"),
            sample(metrics, "auditrelay_config_last_reload_timestamp_seconds"),
        )
    };
    let (ok, started) = reload_metrics(&agent.metrics().await);
    assert_eq!(ok, Some(1.0), "{}", agent.metrics().await);
    let started = started.unwrap();
    // The unit's ExecReload= runs `check` on the file while the agent runs: it must not need
    // the agent's lock.
    check(&config);

    // Refused: not TOML.
    std::fs::write(&config, format!("{good}\n[[sinks\n")).unwrap();
    hup(&agent);
    agent.until("the refused reload", RUN_LIMIT, |a| a.count("reload refused") >= 1).await;
    let refused = poll_metrics(&agent, |m| reload_metrics(m).0 == Some(0.0)).await;
    let refused_at = reload_metrics(&refused).1.unwrap();
    assert!(refused_at >= started, "{refused_at} < {started}");

    // Good again: 1.
    std::fs::write(&config, &good).unwrap();
    hup(&agent);
    agent.until("the reload", RUN_LIMIT, |a| a.count("configuration reloaded") >= 1).await;
    let applied = poll_metrics(&agent, |m| reload_metrics(m).0 == Some(1.0)).await;
    assert!(reload_metrics(&applied).1.unwrap() >= refused_at);
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Issue 18 point 1: `auditrelay reload` (the unit's ExecReload=) exits 0 only once the agent
/// applied the file: 1 for a file `check` refuses (the agent is then not even signalled) and 1
/// for one only the running agent refuses (a changed state_dir), naming why.
#[tokio::test]
async fn test_reload_command_fails_whenever_the_agent_refuses_the_file() {
    let served = records("rel", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "poll_interval = \"1s\"");
    let config = config_with(dir.path(), &source, "");
    let good = std::fs::read_to_string(&config).unwrap();
    let log = config.with_file_name("agent.log");
    // As under the unit (RuntimeDirectory=): the agent and the command share $RUNTIME_DIRECTORY.
    let run_dir = runtime_dir(dir.path());
    let mut agent = Agent::spawn(&["run"], &config, &log, &[("RUNTIME_DIRECTORY", &run_dir)]);
    agent.until("the first records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;
    let reload = |config: &Path| reload_agent(config, agent.pid(), &[("RUNTIME_DIRECTORY", Some(&run_dir))]);

    // Applied.
    let (code, stdout, stderr) = reload(&config);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", agent.tail());
    assert!(stdout.contains("applied"), "{stdout}");
    assert_eq!(agent.count("configuration reloaded"), 1, "{}", agent.tail());

    // Refused by the agent alone: `check` accepts another state_dir, the running agent cannot move.
    let state = dir.path().join("state").display().to_string();
    let moved = good.replace(&format!("{state:?}"), &format!("{:?}", format!("{state}-elsewhere")));
    assert_ne!(moved, good);
    std::fs::write(&config, &moved).unwrap();
    let (code, stdout, stderr) = reload(&config);
    assert_eq!(code, Some(1), "{stdout}{stderr}\n{}", agent.tail());
    assert!(stderr.contains("refused") && stderr.contains("state_dir changed"), "{stderr}");
    assert_eq!(agent.count("reload refused: state_dir changed"), 1, "{}", agent.tail());

    // Refused by the check: the agent hears nothing.
    std::fs::write(&config, format!("{good}\n[[sinks\n")).unwrap();
    let hups = agent.count("SIGHUP");
    let (code, stdout, stderr) = reload(&config);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("auditrelay.toml"), "{stderr}");
    assert_eq!(agent.count("SIGHUP"), hups, "not signalled: {}", agent.tail());

    // Good again: applied.
    std::fs::write(&config, &good).unwrap();
    let (code, stdout, stderr) = reload(&config);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{}", agent.tail());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Adversarial review of issue 18 (misleads): the unit's reload runs with systemd's fresh
/// reading of `EnvironmentFile=`, the agent with the environment it started with. A `${NAME}`
/// added or changed in the env file since the start is not seen by the agent: `auditrelay
/// reload` must fail saying a restart is needed, not report success (a rotated key the agent
/// never took) nor a bare refusal.
#[tokio::test]
async fn test_reload_fails_and_says_restart_when_the_env_file_changed_since_the_start() {
    let served = records("env", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "").replace("\"ak_hostile_test\"", "\"${AUDITRELAY_TEST_ROTATED}\"");
    let config = config_with(dir.path(), &source, "");
    let log = config.with_file_name("agent.log");
    let run_dir = runtime_dir(dir.path());
    let env = [("RUNTIME_DIRECTORY", run_dir.as_str()), ("AUDITRELAY_TEST_ROTATED", "ak_first_key")];
    let mut agent = Agent::spawn(&["run"], &config, &log, &env);
    agent.until("the records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;
    let reload = |vars: &[(&str, &str)]| {
        let mut env = vec![("RUNTIME_DIRECTORY", Some(run_dir.as_str())), ("AUDITRELAY_TEST_NEW_KEY", None)];
        env.extend(vars.iter().map(|(k, v)| (*k, Some(*v))));
        let (code, _, stderr) = reload_agent(&config, agent.pid(), &env);
        (code, stderr)
    };

    // The same environment: applied.
    let (code, stderr) = reload(&[("AUDITRELAY_TEST_ROTATED", "ak_first_key")]);
    assert_eq!(code, Some(0), "{stderr}\n{}", agent.tail());

    // The key rotated in the env file: the agent would keep the old one.
    let (code, stderr) = reload(&[("AUDITRELAY_TEST_ROTATED", "ak_second_key")]);
    assert_eq!(code, Some(1), "{stderr}\n{}", agent.tail());
    assert!(stderr.contains("resolved it differently") && stderr.contains("systemctl restart"), "{stderr}");
    assert!(!stderr.contains("ak_second_key") && !stderr.contains("ak_first_key"), "{stderr}");

    // A source added with a variable only the env file has: the agent refuses it.
    let second = format!(
        "\n[[sources]]\nname = \"second\"\nvendor = \"aitronos\"\norganization_id = \"ORG_HOSTILE0000000002\"\n\
         api_key = \"${{AUDITRELAY_TEST_NEW_KEY}}\"\nbase_url = {base:?}\nstart = \"2d\"\n",
        base = vendor.base_url()
    );
    config_with(dir.path(), &format!("{source}{second}"), "");
    let (code, stderr) =
        reload(&[("AUDITRELAY_TEST_ROTATED", "ak_first_key"), ("AUDITRELAY_TEST_NEW_KEY", "ak_new_key")]);
    assert_eq!(code, Some(1), "{stderr}\n{}", agent.tail());
    assert!(stderr.contains("refused") && stderr.contains("systemctl restart"), "{stderr}");
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// systemd 252 gives ExecReload= no credentials directory: `auditrelay reload` that cannot read
/// a `${CREDENTIALS_DIRECTORY}` secret still checks the rest of the file, signals, and takes the
/// agent's answer (which can read it).
#[tokio::test]
async fn test_reload_without_the_credentials_directory_leaves_the_secrets_to_the_agent() {
    let served = records("cred", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("aitronos"), "ak_hostile_test\n").unwrap();
    let source = aitronos_source(&vendor, "")
        .replace("api_key = \"ak_hostile_test\"", "api_key_file = \"${CREDENTIALS_DIRECTORY}/aitronos\"");
    let config = config_with(dir.path(), &source, "");
    let log = config.with_file_name("agent.log");
    let (run_dir, creds) = (runtime_dir(dir.path()), creds.display().to_string());
    let env = [("RUNTIME_DIRECTORY", run_dir.as_str()), ("CREDENTIALS_DIRECTORY", creds.as_str())];
    let mut agent = Agent::spawn(&["run"], &config, &log, &env);
    agent.until("the records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;
    let env = [("RUNTIME_DIRECTORY", Some(run_dir.as_str())), ("CREDENTIALS_DIRECTORY", None)];
    let (code, _, stderr) = reload_agent(&config, agent.pid(), &env);
    assert_eq!(code, Some(0), "{stderr}\n{}", agent.tail());
    assert!(stderr.contains("the agent, which can, decides"), "{stderr}");
    assert_eq!(agent.count("configuration reloaded"), 1, "{}", agent.tail());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Adversarial review of issue 18: a reload that changes a sink waiting out a back-off (its
/// receiver down) waited the whole drain deadline with the agent's main loop blocked (no other
/// reload, a stale reload metric). The batch is left queued for the replacement at once.
#[tokio::test]
async fn test_a_reload_replacing_a_sink_in_back_off_does_not_wait_for_the_drain_deadline() {
    let served = records("bo", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let port = closed_port();
    let slow = "backoff = { initial = \"1h\", max = \"1h\" }";
    let down = format!(
        "\n[[sinks]]\nname = \"down\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\n{slow}\n"
    );
    let config = config_with(dir.path(), &source, &down);
    let log = config.with_file_name("agent.log");
    let run_dir = runtime_dir(dir.path());
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "10m"], &config, &log, &[("RUNTIME_DIRECTORY", &run_dir)]);
    agent.until("the sink failing", RUN_LIMIT, |a| a.count("batch not delivered") >= 1).await;
    // The sink changes (to a file); the reload must not wait the 10 minutes.
    config_with(dir.path(), &source, &file_sink(dir.path(), "down", "down.ndjson", ""));
    let (code, _, stderr) = reload_agent(&config, agent.pid(), &[("RUNTIME_DIRECTORY", Some(&run_dir))]);
    assert_eq!(code, Some(0), "{stderr}\n{}", agent.tail());
    assert_eq!(agent.count("replaced by a reload while backing off"), 1, "{}", agent.tail());
    assert_eq!(agent.count("drain deadline reached"), 0, "{}", agent.tail());
    // Its replacement delivers what the failing sink had.
    agent.until("the replacement's delivery", RUN_LIMIT, |_| lines(&dir.path().join("down.ndjson")) >= 10).await;
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// A reload status left by an agent that exited names its pid; once the system gives that pid to
/// another process, `auditrelay reload --pid` must not signal it (the status also names the
/// process's start, which the new process does not share).
#[tokio::test]
async fn test_reload_never_signals_a_process_that_reused_a_dead_agents_pid() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut bystander = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    // What an agent with the bystander's pid, started at another moment, left behind.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let status = serde_json::json!({"pid": bystander.id(), "seq": 0, "config_sha256": null, "ok": true,
        "why": null, "at": "2026-01-01T00:00:00Z", "proc_start": 1});
    std::fs::write(state.join("reload-status.json"), status.to_string()).unwrap();
    let (code, _, stderr) = reload_agent(&config, bystander.id(), &[("RUNTIME_DIRECTORY", None)]);
    assert!(code == Some(1) && stderr.contains("Not signalled"), "{stderr}");
    let mut exited = None;
    for _ in 0..20 {
        exited = bystander.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = bystander.kill();
    assert!(exited.is_none(), "reload signalled a process that is not the agent: {exited:?}");
}

/// A runtime directory for an agent and `auditrelay reload`, as the unit's RuntimeDirectory=.
fn runtime_dir(dir: &Path) -> String {
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    run.display().to_string()
}

/// `auditrelay reload -c config --pid pid` (waiting at most 60 s) with `env` set (`None`:
/// removed): its exit code, stdout and stderr.
fn reload_agent(config: &Path, pid: u32, env: &[(&str, Option<&str>)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"));
    for (name, value) in env {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = cmd.args(["reload", "--timeout", "60s", "--pid", &pid.to_string(), "-c"]).arg(config).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Scrapes the agent every 10 ms until `done` holds for the text (at most `RUN_LIMIT`).
async fn poll_metrics(agent: &Agent, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    loop {
        let metrics = agent.metrics().await;
        if done(&metrics) {
            return metrics;
        }
        assert!(std::time::Instant::now() < deadline, "timed out; last scrape:\n{metrics}\nlog:\n{}", agent.tail());
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// GET `path` on the agent's telemetry listener: (status, body).
async fn telemetry_get(agent: &Agent, path: &str) -> (u16, String) {
    let log = agent.log();
    let at = log.find("Some(127.0.0.1:").expect("a telemetry listen address in the log") + "Some(".len();
    let addr: String = log[at..].chars().take_while(|c| *c != ')').collect();
    let answer = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// Issue 18 point 1 (health): a sink its receiver refuses makes `/ready` say degraded (503,
/// JSON naming the sink, since when and why) while `/health` stays 200; once the receiver takes
/// the events, `/ready` is 200 again and the recovery is logged at INFO with its count.
#[tokio::test]
async fn test_a_failing_sink_shows_as_degraded_on_ready_and_its_recovery_is_logged() {
    let served = records("deg", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let port = closed_port();
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, &format!("{}{telemetry}", syslog_sink("down", port, "")));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    agent.until("the syslog sink's failures", RUN_LIMIT, |a| a.count("batch not delivered") >= 2).await;
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    let degraded = body["degraded"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "only the failing sink: {body}");
    assert_eq!((degraded[0]["kind"].as_str(), degraded[0]["name"].as_str()), (Some("sink"), Some("down")), "{body}");
    assert!(degraded[0]["failures"].as_u64().unwrap() >= 2, "{body}");
    assert!(!degraded[0]["error"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(telemetry_get(&agent, "/health").await.0, 200, "degraded, not dead");

    // The receiver comes up: the sink delivers, /ready is 200 again, the recovery is logged.
    let receiver = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let received = std::thread::spawn(move || {
        let (mut conn, _) = receiver.accept().unwrap();
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut conn, &mut sink);
    });
    agent.until("the sink's recovery", RUN_LIMIT, |a| a.count("sink down recovered after") >= 1).await;
    let recovered = agent.lines_with(&["sink down recovered after"]);
    assert!(recovered[0].contains("INFO"), "{recovered:?}");
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready","degraded":[]}"#));
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
    received.join().unwrap();
}

/// Issue 18 point 1 (health): a source whose credential the vendor refuses shows as degraded on
/// `/ready` (which, why, `operator`: someone must act); once the vendor takes it, the source's
/// recovery is logged and `/ready` is 200 again.
#[tokio::test]
async fn test_a_source_with_a_refused_credential_shows_as_degraded_and_recovers() {
    let served = records("cred", 10);
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let refusing = refuse.clone();
    let vendor = Hostile::start(move |r| {
        if refusing.load(std::sync::atomic::Ordering::SeqCst) {
            status(401, &[], r#"{"error":"invalid api key"}"#)
        } else {
            aitronos_answer(r, &served)
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, telemetry);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the refusal", RUN_LIMIT, |a| a.count("operator action needed") >= 1).await;
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_eq!(status, 503, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let degraded = &body["degraded"][0];
    assert_eq!((degraded["kind"].as_str(), degraded["name"].as_str()), (Some("source"), Some(SOURCE)), "{body}");
    assert_eq!(degraded["operator"], true, "{body}");
    assert!(degraded["error"].as_str().unwrap().contains("401"), "{body}");
    assert_eq!(telemetry_get(&agent, "/health").await.0, 200);

    refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    let recovered = format!("source {SOURCE} recovered after");
    agent.until("the source's recovery", RUN_LIMIT, |a| a.count(&recovered) >= 1).await;
    agent.until("the records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;
    assert_eq!(telemetry_get(&agent, "/ready").await.0, 200);
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review of issue 18 (leaks): a vendor that echoes the refused key in its 401 body (some do:
/// "invalid API key 'ak_…'") must not put that key on `/ready` (an unauthenticated endpoint
/// that monitoring scrapes) nor in the log: the agent knows its secrets and must scrub them.
#[tokio::test]
async fn test_ready_and_log_never_show_a_key_the_vendor_echoes_in_its_refusal() {
    let vendor =
        Hostile::start(|_| status(401, &[], r#"{"error":"invalid API key 'ak_hostile_test' for this organization"}"#))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, telemetry);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the refusal", RUN_LIMIT, |a| a.count("operator action needed") >= 1).await;
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("ak_hostile_test"), "/ready shows the API key: {body}");
    assert!(!agent.log().contains("ak_hostile_test"), "the log shows the API key:\n{}", agent.log());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review of issue 18 (misleads): dead letters fill `[queue] max_bytes`, so every source stops
/// fetching ("queue is full: fetching paused") until an operator purges them; `/ready` must not
/// answer 200 `ready` meanwhile: collection has stopped and will not resume by itself.
#[tokio::test]
async fn test_ready_is_not_ready_while_a_full_queue_stops_every_source() {
    // Records without an event time cannot be mapped: each becomes a dead letter.
    let served: Vec<serde_json::Value> =
        (0..400).map(|i| serde_json::json!({"id": format!("bad-{i:04}"), "note": "x".repeat(600)})).collect();
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let extra = "\n[queue]\nmax_bytes = \"64 KiB\"\n\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, extra);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the full queue", RUN_LIMIT, |a| a.count("queue is full: fetching paused") >= 1).await;
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_ne!((status, body.as_str()), (200, r#"{"status":"ready","degraded":[]}"#), "collection stopped");
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review of issue 18 point 6 (misleads): `run --once` whose only sink is unreachable never
/// drains; stopped (SIGTERM, as a scheduler's timeout does), it printed "1000 still queued" and
/// exited 0 ("all went well"). Undelivered events must not exit 0.
#[tokio::test]
async fn test_run_once_that_leaves_events_undelivered_does_not_exit_0() {
    let served = records("undelivered", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let config = config_with(dir.path(), &source, &syslog_sink("down", closed_port(), ""));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--once", "--drain-timeout", "1s"], &config, &log, &[]);
    agent
        .until("the source caught up and the sink failing", RUN_LIMIT, |a| {
            a.count("caught up") >= 1 && a.count("batch not delivered") >= 2
        })
        .await;
    let status = agent.terminate(RUN_LIMIT).await;
    assert!(!status.success(), "run --once exited 0 with every event undelivered:\n{}", agent.log());
}

/// Review of issue 18 (duplicates; misleads): a reload that renames a sink while the queue
/// database is busy (another writer, a slow disk: over the 5 s busy timeout) logs "cannot carry
/// renamed sinks' cursors over" yet reports the reload applied (metric 1, "configuration
/// reloaded"); the renamed sink starts as a new one at the oldest queued event and delivers the
/// backlog, and at the next start the deferred rename puts the old cursor over the new one, so
/// the whole backlog is delivered a second time, silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_sink_rename_deferred_by_a_busy_database_delivers_nothing_twice() {
    let served = records("busy", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    // `a` cannot deliver: its 20 events stay queued for it.
    let config = config_with(dir.path(), &source, &syslog_sink("a", closed_port(), ""));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    agent.until("the file sink's records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 20).await;
    agent.until("a's failures", RUN_LIMIT, |a| a.count("batch not delivered") >= 2).await;

    // Renamed to `b` (a file) while another connection holds the database for 8 s.
    config_with(dir.path(), &source, &file_sink(dir.path(), "b", "b.ndjson", "renamed_from = \"a\""));
    let holder = hold_database(&dir.path().join("state").join("auditrelay.db"));
    hup(&agent);
    // Not applied for `b`: it stays stopped (and the reload says so) rather than start fresh.
    agent.until("the reload", RUN_LIMIT, |a| a.count("configuration reloaded except renamed sinks") >= 1).await;
    holder.release();
    let b = dir.path().join("b.ndjson");
    assert_eq!(lines(&b), 0, "{}", agent.tail());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());

    // The next start (catch up and drain): nothing may reach `b` twice.
    let mut agent = Agent::start(&config, true);
    let status = agent.exit(RUN_LIMIT).await;
    assert!(status.success(), "{}", agent.log());
    let twice: Vec<_> = delivered(&b).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "{} records reached b twice:\n{}", twice.len(), agent.log());
    assert_eq!(delivered(&b).len(), 20, "a's backlog reaches b once the rename is done: {}", agent.log());
}

/// Issue 18 point 3: a reload of a file with many mistakes is refused, each mistake logged on
/// its own line (its own journal priority) in the order `check` prints them, and the agent goes
/// on with the running configuration.
#[tokio::test]
async fn test_a_reload_of_a_file_with_many_mistakes_logs_each_and_is_refused() {
    let served = records("many", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "poll_interval = \"1s\"");
    let config = config_with(dir.path(), &source, "");
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--log-format", "text"], &config, &log, &[]);
    agent.until("the first records", RUN_LIMIT, |_| lines(&out_path(dir.path())) >= 10).await;

    std::fs::write(&config, crate::cli::MANY_MISTAKES).unwrap();
    hup(&agent);
    agent.until("the refused reload", RUN_LIMIT, |a| a.count("reload refused") >= 1).await;
    let text = agent.log();
    let file = config.display().to_string();
    let mut previous = None;
    for reported in crate::cli::MANY_MISTAKES_REPORTED {
        let wanted = format!("{file}{reported}");
        let at =
            text.lines().position(|l| l.contains(&wanted)).unwrap_or_else(|| panic!("{wanted:?} not logged:\n{text}"));
        let line = text.lines().nth(at).unwrap_or_default();
        assert!(line.contains("ERROR"), "{line:?} is not an error line\n{text}");
        assert!(previous < Some(at), "{wanted:?} logged out of order\n{text}");
        previous = Some(at);
    }
    assert!(text.contains("8 errors"), "{text}");
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review 18b (stalls/misleads): `auditrelay reload --pid` signals whatever process has that
/// id. A wrong pid (a stale one reused, a typo, the shell's) gets SIGHUP, whose default action
/// kills it. The agent writes its pid in the status file at start: a pid that is not the one
/// there must be refused before any signal is sent.
#[tokio::test]
async fn test_reload_with_the_pid_of_another_process_does_not_kill_it() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut bystander = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["reload", "--timeout", "1s", "--pid", &bystander.id().to_string(), "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Not signalled"), "{stderr}");
    // A signal sent is delivered before kill(2) returns; give the bystander a moment to die of
    // it on the old code (the observer's bound, not a wait for a condition that must come).
    let mut exited = None;
    for _ in 0..20 {
        exited = bystander.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = bystander.kill();
    assert!(exited.is_none(), "reload killed a process that is not the agent: {exited:?}");
}

/// Review 18b (misleads): a source the daemon stopped for good (here its checkpoint is damaged,
/// "refusing to start over silently") is missing from `/ready`, which answers 200 `ready` while
/// the other sources work; and the shipped `AuditrelaySourceStalled` alert excludes a stopped
/// source, so nothing ever tells the operator that one source collects nothing any more.
#[tokio::test]
async fn test_a_source_stopped_for_good_is_not_ready_and_not_hidden_from_the_alerts() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[telemetry]\nlisten = \"127.0.0.1:0\"", &aitronos_source(&vendor, ""));
    let text = std::fs::read_to_string(&config).unwrap();
    let second = format!("\n[[sources]]\nname = \"second\"\n{}\n", aitronos_source(&vendor, ""));
    std::fs::write(&config, format!("{text}{second}")).unwrap();
    let mut agent = Agent::start(&config, false);
    let db = dir.path().join("state").join("auditrelay.db");
    let stored = |db: &Path| {
        rusqlite::Connection::open(db)
            .and_then(|c| {
                c.query_row("SELECT COUNT(*) FROM checkpoints WHERE source = 'second'", [], |r| r.get::<_, i64>(0))
            })
            .unwrap_or(0)
    };
    agent.until("the second source's checkpoint", RUN_LIMIT, |_| stored(&db) == 1).await;
    agent.terminate(RUN_LIMIT).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n = conn.execute("UPDATE checkpoints SET state = '{\"done_until\":12' WHERE source = 'second'", []).unwrap();
    assert_eq!(n, 1, "the second source stored a checkpoint");
    drop(conn);

    let mut agent = Agent::start(&config, false);
    agent.until("the damaged source to stop", RUN_LIMIT, |a| a.count("source stopped") >= 1).await;
    // Published right after the log line: polled under the deadline.
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    let (status, body) = loop {
        let (status, body) = telemetry_get(&agent, "/ready").await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let metrics = agent.metrics().await;
    assert!(
        metrics.contains("auditrelay_source_state{source=\"second\",vendor=\"aitronos\",state=\"stopped\"} 1"),
        "{metrics}"
    );
    agent.terminate(RUN_LIMIT).await;
    assert!(
        status == 503 && body.contains("second"),
        "/ready must name the source that stopped for good, not answer {status} {body}\n{metrics}"
    );
    let rules =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/prometheus/auditrelay.rules.yml"))
            .unwrap();
    // SourceStalled leaves a stopped source to an alert of its own.
    assert!(
        rules.contains("expr: auditrelay_source_state{state=\"stopped\"} == 1"),
        "no alert fires for a stopped source: nothing else alerts on it"
    );
}

/// Review 18b (misleads): the packaged unit runs the agent with `ProcSubset=pid` (a procfs
/// mounted with `subset=pid`: `/proc/self` is there, `/proc/stat` is not). The `process_*`
/// families read `/proc/stat` for the boot time and, that read failing, every one of them is
/// left out: under the shipped unit `/metrics` has no process_* at all (the dashboard's
/// memory, CPU and file-descriptor panels stay empty). Run here under the same mount.
#[tokio::test]
async fn test_process_metrics_are_exposed_under_the_units_proc_subset_pid() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[telemetry]\nlisten = \"127.0.0.1:0\"", &aitronos_source(&vendor, ""));
    let log = config.with_file_name("agent.log");
    let script = format!(
        "mount -t proc -o subset=pid,hidepid=invisible proc /proc || exit 97; test ! -e /proc/stat || exit 98; \
         exec {} run -c {}",
        env!("CARGO_BIN_EXE_auditrelay"),
        config.display()
    );
    let mut agent =
        Agent::spawn_command("unshare", &["--mount", "--pid", "--fork", "--kill-child", "sh", "-c", &script], &log);
    agent.until("the telemetry listener", RUN_LIMIT, |a| a.log().contains("Some(127.0.0.1:")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let metrics = agent.metrics().await;
    let _ = agent.kill().await;
    assert!(
        metrics.contains("process_resident_memory_bytes") && metrics.contains("process_cpu_seconds_total"),
        "no process_* family under ProcSubset=pid:\n{}",
        metrics.lines().filter(|l| !l.starts_with('#')).take(5).collect::<Vec<_>>().join("\n")
    );
}

/// Review 18b (misleads): under the unit the agent has `RUNTIME_DIRECTORY` and writes its
/// reload status to /run/auditrelay; an operator who runs `auditrelay reload -c FILE --pid PID`
/// by hand (a shell has no `RUNTIME_DIRECTORY`) is told after `--timeout` (5 minutes by
/// default) that the agent gave "no answer", though it applied the file at once: the command
/// looked in the state directory only.
#[tokio::test]
async fn test_reload_by_hand_finds_the_answer_of_an_agent_run_by_the_unit() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let log = config.with_file_name("agent.log");
    let runtime_env = runtime.display().to_string();
    let mut agent = Agent::spawn(&["run"], &config, &log, &[("RUNTIME_DIRECTORY", &runtime_env)]);
    agent.until("the start status", RUN_LIMIT, |_| runtime.join("reload-status.json").exists()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["reload", "--timeout", "5s", "--pid", &agent.pid().to_string(), "-c"])
        .arg(&config)
        .env_remove("RUNTIME_DIRECTORY")
        .output()
        .unwrap();
    let applied = agent.count("configuration reloaded");
    agent.terminate(RUN_LIMIT).await;
    assert_eq!(applied, 1, "the agent applied the file");
    assert!(out.status.success(), "the agent applied it, yet: {}", String::from_utf8_lossy(&out.stderr));
}

/// Review 18c (duplicates): a rename deferred by a busy database still gives the new name a
/// cursor at 0 (`set_sinks` gets both names), so when the rename is done at the next reload the
/// new name keeps the lower cursor (0) and delivers again everything the old name had
/// delivered, as long as another sink still holds those events in the queue.
#[tokio::test]
async fn test_a_deferred_rename_then_done_redelivers_nothing_the_old_name_delivered() {
    let served = records("defer", 20);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    // `a` delivers all 20 to a.ndjson; `stuck` cannot deliver, so the 20 stay in the queue.
    let stuck = syslog_sink("stuck", closed_port(), "");
    let config = config_with(dir.path(), &source, &format!("{}{stuck}", file_sink(dir.path(), "a", "a.ndjson", "")));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "1s"], &config, &log, &[]);
    let a = dir.path().join("a.ndjson");
    agent.until("a's records", RUN_LIMIT, |_| lines(&a) >= 20).await;

    // Renamed to `b` (same file) while another connection holds the database for 7 s: the
    // rename fails (busy timeout 5 s), the cursor update right after succeeds.
    config_with(
        dir.path(),
        &source,
        &format!("{}{stuck}", file_sink(dir.path(), "b", "a.ndjson", "renamed_from = \"a\"")),
    );
    let holder = hold_database(&dir.path().join("state").join("auditrelay.db"));
    hup(&agent);
    agent
        .until("the deferred reload", RUN_LIMIT, |a| a.count("configuration reloaded except renamed sinks") >= 1)
        .await;
    holder.release();

    // The operator does what the log says: reload again. The rename is done now.
    hup(&agent);
    agent.until("the rename", RUN_LIMIT, |a| a.count("sink renamed") >= 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let twice: Vec<_> = delivered(&a).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "{} records delivered twice to the renamed sink's file:\n{}", twice.len(), agent.log());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review 18c (leaks): the scrub looks for the key's exact text only. A vendor whose JSON
/// encoder escapes `/` (PHP's json_encode does by default) echoes a base64-style key
/// `ak/Zq9x/Secret` as `ak\/Zq9x\/Secret`, which reaches `/ready` and the log unscrubbed.
#[tokio::test]
async fn test_ready_and_log_never_show_a_key_the_vendor_echoes_json_escaped() {
    let vendor =
        Hostile::start(|_| status(401, &[], r#"{"error":"invalid API key 'ak\/Zq9x\/Secret' for this organization"}"#))
            .await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "").replace("ak_hostile_test", "ak/Zq9x/Secret");
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config = config_with(dir.path(), &source, telemetry);
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the refusal", RUN_LIMIT, |a| a.count("operator action needed") >= 1).await;
    let (status, body) = telemetry_get(&agent, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("Zq9x"), "/ready shows the API key: {body}");
    assert!(!agent.log().contains("Zq9x"), "the log shows the API key:\n{}", agent.log());
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
}

/// Review 18c (misleads, stalls): a renamed sink the reload left stopped (rename deferred by a
/// busy database) is on neither `/ready` nor `/metrics`: `/ready` answers 200 `ready` and no
/// alert (no sink lag, no reload-failure rule) ever says the SIEM receives nothing, while the
/// backlog grows under the old name until someone reads the log and reloads again.
#[tokio::test]
async fn test_a_renamed_sink_left_stopped_by_a_deferred_rename_is_not_ready() {
    let served = records("hidden", 10);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let telemetry = "\n[telemetry]\nlisten = \"127.0.0.1:0\"\n";
    let config =
        config_with(dir.path(), &source, &format!("{telemetry}{}", file_sink(dir.path(), "a", "a.ndjson", "")));
    let log = config.with_file_name("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    let a = dir.path().join("a.ndjson");
    agent.until("a's records", RUN_LIMIT, |_| lines(&a) >= 10).await;
    // Both sinks' acks committed before the database is held. A sink writes its file first and
    // moves its cursor after: a lock taken in between catches the ack (CI, 2026-12-07), and the
    // reload then waits the drain deadline (30 s, this test's limit) for the sink to give up.
    let acked = |m: &str| {
        ["a", "file"]
            .iter()
            .all(|s| m.contains(&format!("auditrelay_sink_backlog_events{{sink=\"{s}\",type=\"file\"}} 0\n")))
    };
    let deadline = std::time::Instant::now() + RUN_LIMIT;
    loop {
        let metrics = agent.metrics().await;
        if acked(&metrics) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the sinks' cursors never reached the end:\n{metrics}");
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    config_with(
        dir.path(),
        &source,
        &format!("{telemetry}{}", file_sink(dir.path(), "b", "a.ndjson", "renamed_from = \"a\"")),
    );
    let holder = hold_database(&dir.path().join("state").join("auditrelay.db"));
    hup(&agent);
    agent
        .until("the deferred reload", RUN_LIMIT, |a| a.count("configuration reloaded except renamed sinks") >= 1)
        .await;
    holder.release();
    let (status, body) = telemetry_get(&agent, "/ready").await;
    let (_, metrics) = telemetry_get(&agent, "/metrics").await;
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
    assert_ne!((status, body.as_str()), (200, r#"{"status":"ready","degraded":[]}"#), "sink b delivers nothing");
    assert!(metrics.contains("sink=\"b\""), "sink b is missing from /metrics:\n{metrics}");
}

/// Review 18c (stalls): the fix that lets a replaced sink leave its back-off at once covers the
/// whole-batch back-off only. A batch of one event that the receiver fails with a server error
/// (an HEC collector answering 500: an outage on a quiet source) waits in the "failed alone"
/// back-off, which hears only the shutdown deadline: the reload waits out the drain deadline.
#[tokio::test]
async fn test_a_reload_replacing_a_sink_whose_single_event_failed_alone_does_not_wait() {
    let served = records("alone", 1);
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let receiver = Hostile::start(|_| status(500, &[], r#"{"text":"Internal server error","code":8}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let source = aitronos_source(&vendor, "");
    let down = format!(
        "\n[[sinks]]\nname = \"down\"\ntype = \"hec\"\nurl = {:?}\ntoken = \"hec-test-token\"\n\
         backoff = {{ initial = \"1h\", max = \"1h\" }}\n",
        receiver.base_url()
    );
    let config = config_with(dir.path(), &source, &down);
    let log = config.with_file_name("agent.log");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let run_dir = run_dir.display().to_string();
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "10m"], &config, &log, &[("RUNTIME_DIRECTORY", &run_dir)]);
    agent.until("the event failing alone", RUN_LIMIT, |a| a.count("event failed alone") >= 1).await;
    config_with(dir.path(), &source, &file_sink(dir.path(), "down", "down.ndjson", ""));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .env("RUNTIME_DIRECTORY", &run_dir)
        .args(["reload", "--timeout", "20s", "--pid", &agent.pid().to_string(), "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let tail = agent.tail();
    let _ = agent.kill().await;
    assert_eq!(out.status.code(), Some(0), "{}\n{tail}", String::from_utf8_lossy(&out.stderr));
}

/// Review 18c (misleads): the digest of "the configuration as resolved" hashes relative paths
/// made absolute from the path the file was named by. `auditrelay reload -c` naming the same
/// file by another path (a symlinked directory) than the agent's `-c` fails every reload the
/// agent applied, telling the operator a `${NAME}` changed and a restart is needed.
#[tokio::test]
async fn test_reload_naming_the_file_through_a_symlink_is_not_told_to_restart() {
    let vendor = Hostile::start(move |r| aitronos_answer(r, &[])).await;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let text = format!(
        "state_dir = \"state\"\n\n[[sources]]\nname = \"hostile\"\n{}\n\n[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"events.ndjson\"\n",
        aitronos_source(&vendor, "")
    );
    let config = etc.join("auditrelay.toml");
    std::fs::write(&config, text).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&etc, &link).unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = Agent::spawn(&["run"], &config, &log, &[]);
    agent.until("the start", RUN_LIMIT, |_| etc.join("state").join("reload-status.json").exists()).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .env_remove("RUNTIME_DIRECTORY")
        .args(["reload", "--timeout", "20s", "--pid", &agent.pid().to_string(), "-c"])
        .arg(link.join("auditrelay.toml"))
        .output()
        .unwrap();
    let tail = agent.tail();
    assert!(agent.terminate(RUN_LIMIT).await.success(), "{}", agent.log());
    assert_eq!(out.status.code(), Some(0), "{}\n{tail}", String::from_utf8_lossy(&out.stderr));
}

/// Another connection holding the agent's database (`BEGIN EXCLUSIVE`) until [`Held::release`]:
/// a reload's rename, waiting its 5 s busy timeout, fails while the test watches for it. A
/// fixed hold (7 s) raced the agent: a SIGHUP taken over 2 s late under CI load found the
/// database free again and renamed, and the test waited for a deferral that never came.
struct Held {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn hold_database(db: &std::path::Path) -> Held {
    let db = db.to_path_buf();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        // Bounded: a test that fails before releasing must not hold the database for ever.
        let _ = release_rx.recv_timeout(RUN_LIMIT);
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    Held { release, thread }
}

impl Held {
    fn release(self) {
        let _ = self.release.send(());
        self.thread.join().unwrap();
    }
}
