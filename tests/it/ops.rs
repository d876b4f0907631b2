//! `auditrelay queue stats | dead-letters | replay | purge-dead-letters` run as an operator runs
//! them, over a state directory made with the queue's own API; and the one-agent-per-state-dir
//! lock as a second `auditrelay run` meets it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::lock::{LOCK_FILE, StateLock};
use auditrelay::queue::{
    DeadLetter, DeadLetterSelection, NewDeadLetter, NewEvent, PageWrite, Queue, QueueOptions, QueueView, RefusedEvent,
};
use auditrelay::sim::{RateLimitSetting, SimOptions};
use harness::sinks::{ocsf_events, uid};

const SOURCE: &str = "aitronos-test";
/// A source that was configured once and is no more: its dead letters are still there.
const OLD_SOURCE: &str = "datafold-old";
const SINK: &str = "file";

fn auditrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditrelay"))
}

/// `auditrelay queue <args> -c <config>`.
fn queue_cmd(config: &Path, args: &[&str]) -> Output {
    auditrelay().arg("queue").args(args).arg("-c").arg(config).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
    stdout(out)
}

/// Where the configured source fetches from: a simulator, or a port where nothing listens.
struct Vendor {
    base_url: String,
    organization: String,
    key: String,
}

impl Vendor {
    /// A loopback port nobody listens on (bound, then released).
    fn unreachable() -> Vendor {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Vendor {
            base_url: format!("http://127.0.0.1:{port}"),
            organization: "ORG_7F3KQ9ZP2M4XW8RT".into(),
            key: "ak_test".into(),
        }
    }

    fn sim(sim: &auditrelay::sim::Sim) -> Vendor {
        Vendor {
            base_url: sim.base_url().to_string(),
            organization: sim.aitronos_organization_id().to_owned(),
            key: sim.aitronos_api_key().to_owned(),
        }
    }
}

/// Writes `dir/auditrelay.toml`: state in `dir/state`, one Aitronos source, one file sink.
fn write_config(dir: &Path, vendor: &Vendor) -> PathBuf {
    let text = format!(
        r#"state_dir = {state:?}

[queue]
max_bytes = "1 MiB"

[[sources]]
name = {SOURCE:?}
vendor = "aitronos"
organization_id = {org:?}
api_key = {key:?}
base_url = {base:?}
start = "2d"
max_span = "3d"
rate_limit = {{ requests = 50, per = "1s" }}

[[sinks]]
name = {SINK:?}
type = "file"
path = {out:?}
"#,
        state = state_dir(dir).display().to_string(),
        org = vendor.organization,
        key = vendor.key,
        base = vendor.base_url,
        out = harness::out_path(dir).display().to_string(),
    );
    let path = dir.join("auditrelay.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn state_dir(dir: &Path) -> PathBuf {
    dir.join("state")
}

fn open_queue(dir: &Path) -> Queue {
    Queue::open(&state_dir(dir), QueueOptions { max_bytes: 1 << 20, sinks: vec![SINK.into()] }).unwrap()
}

/// What `make_state` stored.
struct Made {
    /// The event the file sink refused (dead letter `refused_id`), by its body.
    refused_body: Vec<u8>,
    refused_id: i64,
    /// Dead letters of records the sources could not map: a JSON one and one not UTF-8.
    unmappable_id: i64,
    binary_id: i64,
}

/// A state directory in `dir/state`: three events of which the file sink delivered the first
/// and third and refused the second (so the queue is empty and that event is a dead letter),
/// one more event still queued, a checkpoint, and two vendor records that could not be mapped
/// (one from a source no longer configured, with bytes that are not UTF-8).
async fn make_state(dir: &Path) -> Made {
    let q = open_queue(dir);
    let bodies = &ocsf_events()[..4];
    let event = |body: &Vec<u8>| NewEvent { dedupe_key: uid(body), event_time_ms: 0, body: body.clone() };
    let page = PageWrite {
        source: SOURCE.into(),
        events: bodies[..3].iter().map(event).collect(),
        dead_letters: vec![NewDeadLetter {
            key: "sha1:0123".into(),
            reason: "record has no usable `id`".into(),
            raw: b"{\"action\":\"user.login\",\"note\":\"line one\nline two\"}".to_vec(),
        }],
        checkpoint: Some(r#"{"done_until":"2026-03-18T12:00:00Z","sweep":null}"#.into()),
        prune_dedupe_before_ms: None,
        done_until_ms: None,
    };
    q.store_page(page).await.unwrap();
    let binary =
        NewDeadLetter { key: "sha1:4567".into(), reason: "line 3 is not JSON".into(), raw: vec![0xff, b'{', 0] };
    q.store_page(PageWrite { source: OLD_SOURCE.into(), dead_letters: vec![binary], ..PageWrite::default() })
        .await
        .unwrap();
    let batch = q.read_batch(SINK, 10, usize::MAX).await.unwrap();
    assert_eq!(batch.len(), 3);
    let refused = vec![RefusedEvent { id: batch[1].id, reason: "larger than max_message_size".into() }];
    q.ack_refusing(SINK, batch[2].id, refused).await.unwrap();
    q.store_page(PageWrite { source: SOURCE.into(), events: vec![event(&bodies[3])], ..PageWrite::default() })
        .await
        .unwrap();
    let letters = q.dead_letters(10).await.unwrap();
    q.close().await.unwrap();
    let id_of = |f: &dyn Fn(&DeadLetter) -> bool| letters.iter().find(|l| f(l)).unwrap().id;
    Made {
        refused_body: bodies[1].clone(),
        refused_id: id_of(&|l| l.sink.is_some()),
        unmappable_id: id_of(&|l| l.source == SOURCE && l.sink.is_none()),
        binary_id: id_of(&|l| l.source == OLD_SOURCE),
    }
}

fn dead_letter_ids(dir: &Path) -> Vec<i64> {
    let view = QueueView::open(&state_dir(dir)).unwrap();
    view.dead_letters(&DeadLetterSelection::default(), None).unwrap().iter().map(|l| l.id).collect()
}

#[tokio::test]
async fn test_stats_shows_events_cursors_checkpoints_and_dead_letters_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    make_state(dir.path()).await;
    // An agent is running: its writer holds the database open.
    let q = open_queue(dir.path());
    let body = &ocsf_events()[4];
    let page = PageWrite {
        source: SOURCE.into(),
        events: vec![NewEvent { dedupe_key: uid(body), event_time_ms: 0, body: body.clone() }],
        ..PageWrite::default()
    };
    q.store_page(page).await.unwrap();
    let db = state_dir(dir.path()).join("auditrelay.db");
    let wal = state_dir(dir.path()).join("auditrelay.db-wal");
    // The agent's checkpoint thread folds the WAL into the file when it likes: fold it all in
    // first (retried while that thread holds the checkpoint lock: busy = 1), so that only
    // `stats` could change either file afterwards.
    let settle = rusqlite::Connection::open(&db).unwrap();
    settle.busy_timeout(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (busy, log, done): (i64, i64, i64) =
            settle.query_row("PRAGMA wal_checkpoint(FULL)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        if busy == 0 && log == done {
            break;
        }
        assert!(Instant::now() < deadline, "the WAL was never checkpointed whole: busy {busy}, {done} of {log} frames");
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(settle);
    let before = (std::fs::read(&db).unwrap(), std::fs::read(&wal).unwrap());

    let text = assert_ok(&queue_cmd(&config, &["stats"]));
    let line = |start: &str| text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {text}"));
    assert!(line("database").ends_with(&db.display().to_string()), "{text}");
    assert!(line("events").contains("2 queued") && line("events").contains("of 1.0 MiB cap"), "{text}");
    assert!(line("events").ends_with("newest id 5"), "{text}");
    let sink: Vec<&str> = line("file ").split_whitespace().collect();
    assert_eq!(sink[..3], ["file", "3", "2"], "cursor after the third event, two pending: {text}");
    assert!(sink[3].starts_with("20"), "the oldest pending event's collection time: {text}");
    assert!(line("aitronos-test ").split_whitespace().nth(1).unwrap().starts_with("20"), "{text}");
    assert!(
        text.contains("checkpoint of aitronos-test:\n  {\n    \"done_until\": \"2026-03-18T12:00:00Z\",\n"),
        "{text}"
    );
    assert!(line("dead letters:").ends_with(": 3"), "{text}");
    let counts: Vec<Vec<&str>> = text
        .lines()
        .skip_while(|l| !l.starts_with("dead letters:"))
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        counts,
        [
            vec!["aitronos-test", "source", "1"],
            vec!["aitronos-test", "sink", "file", "1"],
            vec!["datafold-old", "source", "1"]
        ],
        "{text}"
    );

    // Read-only: the database and its WAL are as they were, and the agent's writer goes on.
    let after = (std::fs::read(&db).unwrap(), std::fs::read(&wal).unwrap());
    let first_change = |a: &[u8], b: &[u8]| a.iter().zip(b).position(|(x, y)| x != y).map(|i| (i, a.len(), b.len()));
    assert!(
        after == before,
        "`queue stats` changed the database (first changed byte, lengths): file {:?}, WAL {:?}",
        first_change(&before.0, &after.0),
        first_change(&before.1, &after.1)
    );
    assert_eq!(q.backlog(SINK).await.unwrap(), 2);
    q.close().await.unwrap();
}

#[tokio::test]
async fn test_dead_letters_lists_both_origins_with_previews_and_json_carries_the_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let made = make_state(dir.path()).await;

    let text = assert_ok(&queue_cmd(&config, &["dead-letters"]));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three dead letters: {text}");
    let header = lines[0];
    assert!(header.starts_with("ID  CREATED") && header.contains("SOURCE") && header.ends_with("RAW"), "{text}");
    let column = |name: &str| header.find(name).unwrap();
    let row =
        |id: i64| *lines.iter().find(|l| l.starts_with(&format!("{id} "))).unwrap_or_else(|| panic!("{id}: {text}"));
    let unmappable = row(made.unmappable_id);
    assert_eq!(&unmappable[column("ORIGIN")..column("REASON")].trim_end(), &"source", "{text}");
    assert!(
        unmappable[column("RAW")..].starts_with(r#"{"action":"user.login","note":"line one\nline two"}"#),
        "{text}"
    );
    let refused = row(made.refused_id);
    assert_eq!(&refused[column("ORIGIN")..column("REASON")].trim_end(), &"sink file", "{text}");
    assert!(refused[column("REASON")..].starts_with("larger than max_message_size"), "{text}");
    assert!(refused.ends_with('…'), "a 60-character preview of the event: {text}");
    assert!(row(made.binary_id).ends_with(r"\xff{\x00"), "{text}");
    assert!(refused[column("CREATED")..].starts_with("20") && refused.contains("Z  "), "RFC 3339: {text}");

    // Filters and the limit.
    let text = assert_ok(&queue_cmd(&config, &["dead-letters", "--sink", "file"]));
    assert_eq!(text.lines().count(), 2, "{text}");
    let text = assert_ok(&queue_cmd(&config, &["dead-letters", "--source", OLD_SOURCE]));
    assert!(text.lines().nth(1).unwrap().starts_with(&format!("{} ", made.binary_id)), "{text}");
    let text = assert_ok(&queue_cmd(&config, &["dead-letters", "--limit", "1"]));
    assert!(text.ends_with("(1 of 3 shown, oldest first: --limit N for more, 0 for all)\n"), "{text}");
    let text = assert_ok(&queue_cmd(&config, &["dead-letters", "--sink", "nobody"]));
    assert_eq!(text, "no dead letters\n");

    // --json: one object per line, the whole raw record.
    let text = assert_ok(&queue_cmd(&config, &["dead-letters", "--json"]));
    let objects: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objects.len(), 3);
    let by_id = |id: i64| objects.iter().find(|o| o["id"] == id).unwrap();
    let refused = by_id(made.refused_id);
    assert_eq!(refused["raw"].as_str().unwrap().as_bytes(), made.refused_body.as_slice());
    assert_eq!((refused["origin"].as_str(), refused["sink"].as_str()), (Some("sink"), Some("file")));
    assert_eq!(refused["key"].as_str(), Some("file#2"), "the second event's");
    let binary = by_id(made.binary_id);
    assert_eq!((binary["raw_hex"].as_str(), binary.get("raw")), (Some("ff7b00"), None));
    assert_eq!((binary["origin"].as_str(), binary["sink"].is_null()), (Some("source"), true));
    assert!(binary["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn test_replay_requeues_a_refused_event_that_the_next_run_delivers_and_keeps_unmappable_records() {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 20;
    // Not the seed `ocsf_events` used: none of the simulator's records is one of those events.
    opts.seed = 7;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = harness::start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::sim(&sim));
    let made = make_state(dir.path()).await;

    let out = queue_cmd(&config, &["replay", "--all"]);
    let text = assert_ok(&out);
    assert!(text.starts_with("replayed 1 dead letter(s) as new events: every configured sink receives them again"));
    let row: Vec<&str> = text.lines().nth(2).unwrap().split_whitespace().collect();
    assert_eq!(row, [made.refused_id.to_string().as_str(), SOURCE, "sink", "file", "5"], "a new id: {text}");
    let note = text.lines().last().unwrap();
    assert!(note.starts_with("not replayed: 2 selected dead letter(s)") && note.contains("could not map"), "{text}");
    assert_eq!(dead_letter_ids(dir.path()), [made.unmappable_id, made.binary_id], "the replayed one left");

    // The next run delivers it (after the event still queued), with the vendor's records.
    // Awaited, not blocking: the simulator answers on this test's runtime.
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["run", "--once", "-c"])
        .arg(&config)
        .kill_on_drop(true)
        .output();
    assert_ok(&tokio::time::timeout(Duration::from_secs(120), run).await.expect("run --once within 120 s").unwrap());
    let delivered: Vec<String> = harness::events(&harness::out_path(dir.path()))
        .iter()
        .map(|e| e["metadata"]["uid"].as_str().unwrap().to_owned())
        .collect();
    let replayed = uid(&made.refused_body);
    assert_eq!(delivered.iter().filter(|u| **u == replayed).count(), 1, "{delivered:?}");
    assert_eq!(delivered[..2], [uid(&ocsf_events()[3]), replayed]);
    assert_eq!(delivered.len(), 22, "the queued one, the replayed one, and the simulator's 20");
}

#[tokio::test]
async fn test_replay_refuses_records_a_source_could_not_map_and_unknown_ids_changing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let made = make_state(dir.path()).await;
    let all = dead_letter_ids(dir.path());

    let out = queue_cmd(&config, &["replay", "--id", &made.unmappable_id.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("nothing replayed: 1 selected dead letter(s)") && err.contains("could not map"), "{err}");
    assert!(err.contains("cannot map them again"), "{err}");

    let out = queue_cmd(&config, &["replay", "--id", &made.refused_id.to_string(), "--id", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no dead letter with id 999; nothing changed"), "{}", stderr(&out));

    let out = queue_cmd(&config, &["replay", "--source", "nobody"]);
    assert_eq!(assert_ok(&out), "no dead letter matches: nothing replayed\n");
    assert_eq!(dead_letter_ids(dir.path()), all);

    // A selection is required: `replay` alone is a usage error.
    let out = queue_cmd(&config, &["replay"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--id") && stderr(&out).contains("--all"), "{}", stderr(&out));
}

#[tokio::test]
async fn test_purge_needs_yes_and_deletes_only_the_selection() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let made = make_state(dir.path()).await;
    let all = dead_letter_ids(dir.path());

    let out = queue_cmd(&config, &["purge-dead-letters", "--source", SOURCE]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("2 dead letter(s) match; nothing deleted: run again with --yes"), "{}", stderr(&out));
    assert_eq!(dead_letter_ids(dir.path()), all);
    let out = queue_cmd(&config, &["purge-dead-letters", "--id", "999", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no dead letter with id 999"), "{}", stderr(&out));

    let out = queue_cmd(&config, &["purge-dead-letters", "--source", SOURCE, "--sink", SINK, "--yes"]);
    assert_eq!(assert_ok(&out), "deleted 1 dead letter(s)\n");
    assert_eq!(dead_letter_ids(dir.path()), [made.unmappable_id, made.binary_id]);
    // Nothing recorded before 2000.
    let out = queue_cmd(&config, &["purge-dead-letters", "--all", "--before", "2000-01-01T00:00:00Z", "--yes"]);
    assert_eq!(assert_ok(&out), "deleted 0 dead letter(s)\n");
    let out = queue_cmd(&config, &["purge-dead-letters", "--all", "--before", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
    let out = queue_cmd(&config, &["purge-dead-letters", "--all", "--yes"]);
    assert_eq!(assert_ok(&out), "deleted 2 dead letter(s)\n");
    assert!(dead_letter_ids(dir.path()).is_empty());
    assert_eq!(assert_ok(&queue_cmd(&config, &["dead-letters"])), "no dead letters\n");
}

#[tokio::test]
async fn test_replay_and_purge_refuse_while_another_auditrelay_holds_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let made = make_state(dir.path()).await;
    let all = dead_letter_ids(dir.path());
    // This process plays the running agent.
    let held = StateLock::acquire(&state_dir(dir.path()), "run").unwrap();
    let lock = state_dir(dir.path()).join(LOCK_FILE);
    for args in [vec!["replay", "--all"], vec!["purge-dead-letters", "--all", "--yes"]] {
        let out = queue_cmd(&config, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("`auditrelay queue {}` cannot use state directory", args[0])), "{err}");
        assert!(err.contains(&lock.display().to_string()), "{err}");
        assert!(err.contains(&format!("pid {}, `auditrelay run`", std::process::id())), "{err}");
        assert!(err.contains("stop it first"), "{err}");
    }
    assert_eq!(dead_letter_ids(dir.path()), all, "nothing changed");
    // Looking needs no lock.
    assert_ok(&queue_cmd(&config, &["stats"]));
    assert_ok(&queue_cmd(&config, &["dead-letters"]));
    drop(held);
    assert_ok(&queue_cmd(&config, &["replay", "--id", &made.refused_id.to_string()]));
}

#[test]
fn test_queue_commands_on_a_state_dir_never_used_say_so_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    for args in
        [vec!["stats"], vec!["dead-letters"], vec!["replay", "--all"], vec!["purge-dead-letters", "--all", "--yes"]]
    {
        let out = queue_cmd(&config, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("no queue database at") && err.contains("no agent has run with this state_dir"), "{err}");
    }
    assert!(!state_dir(dir.path()).exists());
}

#[test]
fn test_queue_help_names_every_subcommand() {
    let out = auditrelay().args(["queue", "--help"]).output().unwrap();
    let text = assert_ok(&out);
    for cmd in ["stats", "dead-letters", "replay", "purge-dead-letters"] {
        assert!(text.contains(cmd), "{text}");
    }
}

// The one-agent lock as `auditrelay run` meets it (the daemon takes it as it starts).

/// Starts `auditrelay run -c config` (following: it stays up) and waits until it holds the lock.
fn start_agent(config: &Path, state: &Path) -> Child {
    let mut child = auditrelay()
        .args(["run", "-c"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let note = format!("pid={}\n", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(state.join(LOCK_FILE)).is_ok_and(|t| t.starts_with(&note)) {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the agent exited ({status}) before taking the lock");
        }
        assert!(Instant::now() < deadline, "the agent did not take the lock within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// SIGTERM, then the agent's clean exit.
fn stop_agent(mut child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the agent's exit after SIGTERM: {status}");
            return;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the agent did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_a_second_agent_on_the_same_state_dir_exits_naming_the_lock_and_pid() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let state = state_dir(dir.path());
    let first = start_agent(&config, &state);

    let second = auditrelay().args(["run", "-c"]).arg(&config).stdin(Stdio::null()).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    assert!(err.contains(&state.join(LOCK_FILE).display().to_string()), "{err}");
    assert!(err.contains(&format!("another auditrelay (pid {}, `auditrelay run`", first.id())), "{err}");
    assert!(err.contains("stop it first, or point this one at another state_dir"), "{err}");
    stop_agent(first);
}

#[test]
fn test_an_agent_killed_with_sigkill_does_not_block_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    let state = state_dir(dir.path());
    let mut first = start_agent(&config, &state);
    first.kill().unwrap(); // SIGKILL: nothing of the agent runs after it
    first.wait().unwrap();
    // Its pid is still written in the lock file, but the kernel released the lock.
    let second = start_agent(&config, &state);
    stop_agent(second);
}

/// Issue 18 point 6: `queue stats --json` is one JSON object with the same facts as the table,
/// under stable keys (README lists them).
#[tokio::test]
async fn test_stats_json_is_one_object_with_stable_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::unreachable());
    make_state(dir.path()).await;
    let text = assert_ok(&queue_cmd(&config, &["stats", "--json"]));
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let db = state_dir(dir.path()).join("auditrelay.db");
    assert_eq!(v["database"], db.display().to_string());
    let events = &v["events"];
    assert_eq!((events["queued"].as_u64(), events["newest_id"].as_i64()), (Some(1), Some(4)), "{v}");
    assert_eq!(events["max_bytes"].as_u64(), Some(1 << 20), "{v}");
    assert!(events["bytes"].as_u64().unwrap() > 0 && events["dead_letter_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(events["full"], false);
    let sinks = v["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 1, "{v}");
    assert_eq!((sinks[0]["name"].as_str(), sinks[0]["cursor"].as_i64()), (Some(SINK), Some(3)), "{v}");
    assert_eq!((sinks[0]["backlog"].as_u64(), sinks[0]["configured"].as_bool()), (Some(1), Some(true)), "{v}");
    assert!(sinks[0]["oldest_pending"].as_str().unwrap().starts_with("20"), "{v}");
    let sources = v["sources"].as_array().unwrap();
    let source = sources.iter().find(|s| s["name"] == SOURCE).unwrap();
    assert_eq!(source["checkpoint"]["done_until"], "2026-03-18T12:00:00Z", "{v}");
    assert!(source["checkpoint_updated"].as_str().unwrap().starts_with("20"), "{v}");
    let old = sources.iter().find(|s| s["name"] == OLD_SOURCE);
    assert!(old.is_none_or(|s| s["configured"] == false), "{v}");
    assert_eq!(v["dead_letters"]["total"].as_u64(), Some(3), "{v}");
    let by: Vec<(String, String)> = v["dead_letters"]["by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["source"].as_str().unwrap().to_owned(), d["sink"].as_str().unwrap_or("-").to_owned()))
        .collect();
    assert!(
        by.contains(&(SOURCE.to_owned(), SINK.to_owned())) && by.contains(&(OLD_SOURCE.to_owned(), "-".into())),
        "{v}"
    );
}

/// Issue 18 point 6: `run --once` that dead-letters an event exits non-zero (2) and says so in
/// its one-line summary (records stored per source, events delivered per sink, dead letters).
#[tokio::test]
async fn test_run_once_exits_non_zero_when_it_dead_lettered_events_and_prints_a_summary() {
    let clock = Clock::system();
    let mut opts = SimOptions::default();
    opts.aitronos.records = 5;
    opts.seed = 7;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = harness::start_sim(opts, &clock).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &Vendor::sim(&sim));
    // A syslog sink (UDP, to a socket this test holds) refuses an event over max_message_size.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        &format!("[[sinks]]\nname = {SINK:?}"),
        &format!(
            "[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"{}\"\ntransport = \"udp\"\nmax_message_size = 4096\n\n[[sinks]]\nname = {SINK:?}",
            receiver.local_addr().unwrap()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let q = Queue::open(
        &state_dir(dir.path()),
        QueueOptions { max_bytes: 1 << 20, sinks: vec![SINK.into(), "siem".into()] },
    )
    .unwrap();
    let mut big: serde_json::Value = serde_json::from_slice(&ocsf_events()[0]).unwrap();
    big["message"] = serde_json::Value::String("x".repeat(8192));
    let body = serde_json::to_vec(&big).unwrap();
    // Stored by a source no longer configured (one configured would need a checkpoint).
    let page = PageWrite {
        source: OLD_SOURCE.into(),
        events: vec![NewEvent { dedupe_key: uid(&body), event_time_ms: 0, body }],
        ..PageWrite::default()
    };
    q.store_page(page).await.unwrap();
    q.close().await.unwrap();

    let run = |config: &Path| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
            .args(["run", "--once", "--log-format", "text", "-c"])
            .arg(config)
            .kill_on_drop(true)
            .output()
    };
    let out = tokio::time::timeout(Duration::from_secs(120), run(&config)).await.expect("within 120 s").unwrap();
    let (out_text, err_text) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(2), "stdout: {out_text}\nstderr: {err_text}");
    let summary = out_text.lines().find(|l| l.starts_with("run --once:")).unwrap_or_else(|| panic!("{out_text}"));
    assert!(summary.contains(&format!("{SOURCE} stored 5")), "{summary}");
    assert!(summary.contains(&format!("{SINK} delivered 6")) && summary.contains("siem delivered 5"), "{summary}");
    assert!(summary.contains("1 dead-lettered"), "{summary}");

    // A run with nothing dead-lettered exits 0 and says so.
    let out = tokio::time::timeout(Duration::from_secs(120), run(&config)).await.expect("within 120 s").unwrap();
    let out_text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "stdout: {out_text}\nstderr: {}", stderr(&out));
    let summary = out_text.lines().find(|l| l.starts_with("run --once:")).unwrap_or_else(|| panic!("{out_text}"));
    assert!(summary.contains("0 dead-lettered"), "{summary}");
}
