//! Review 19c of the Elasticsearch sink's fixes after reviews 19a/19b (issue 19): failing tests,
//! one per finding. Each runs the real binary over the simulator against the project's `_bulk`
//! emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::elasticsearch::{simulator, write_config};
use crate::es_emulator::{EsEmulator, EsOptions, ItemError};
use crate::harness;

use std::time::Duration;

use auditrelay::sim::Sim;
use harness::agent::Agent;

/// The cluster refuses the items of `poison` with `error` while it takes every other event of
/// the same data stream; the operator then repairs the cluster (the refusal is lifted). Review C
/// asked that the event stay queued; the design is the refusals' one (DESIGN invariant 3, as for
/// HEC's invalid event): a document the cluster refuses alone is dead-lettered, kept with
/// Elastic's reason, and, for a 400 the item table does not know as the document's fault, only
/// after repeated proof that the cluster takes others (never at once). After the repair,
/// `queue replay` sends it again: every one of the 30 events arrives, none is lost.
async fn operator_change_keeps_the_event(error: ItemError, what: &str) {
    let sim = simulator(30).await;
    let poison = sim.aitronos_ids()[3].clone();
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.refuse_items_containing(&poison, error);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("hosts = [{:?}]\nbatch_max_events = 10\n", emu.url()));
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    let mut agent = Agent::spawn(&["run", "--once"], &config, &config.with_file_name("agent.log"), &all);
    let status = agent.exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(2), "{what}: done, with a dead letter:\n{}", agent.tail());
    assert_eq!(emu.document_count(), 29, "{what}: every other event delivered");
    let log = agent.log();
    let dead: Vec<&str> = log.lines().filter(|l| l.contains("failed alone")).collect();
    assert!(!dead.is_empty(), "{what}: dead-lettered only after the strikes, with the reason:\n{}", agent.tail());
    emu.clear_refusals();
    let replay = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["queue", "replay", "--sink", "elastic", "-c"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let mut agent = Agent::spawn(&["run", "--once"], &config, &config.with_file_name("agent2.log"), &all);
    let status = agent.exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", agent.tail());
    let indexed = emu.document_count();
    assert_eq!(
        indexed, 30,
        "{what}: once the operator repaired the cluster and replayed, it holds {indexed} of 30 events"
    );
    sim.shutdown().await;
}

/// An operator locks the data stream's mapping (`PUT logs-auditrelay.ocsf-default/_mapping
/// {"dynamic":"strict"}`, a common hardening step). Every event carrying a field not yet mapped
/// is answered 400 `strict_dynamic_mapping_exception`, which 35fcda9 made `Item::Refused`: the
/// event is dead-lettered at once, with no strike and no proof, and never reaches the SIEM once the
/// operator relaxes the mapping again. Before, it was kept as an operator's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_made_strict_by_the_operator_dead_letters_only_after_proofs_and_replay_recovers() {
    operator_change_keeps_the_event(
        ItemError::new(
            400,
            "strict_dynamic_mapping_exception",
            "[1:412] mapping set to strict, dynamic introduction of [aitronos_extra] within [ocsf.unmapped] is not allowed",
        ),
        "dynamic: strict",
    )
    .await;
}

/// An operator sets a default ingest pipeline on the data stream (`index.default_pipeline`
/// applies at once, no rollover) whose `rename` processor needs a field some vendor records lack.
/// Elasticsearch answers those items 400 `illegal_argument_exception` "field [..] doesn't exist"
/// (the processor's own words: neither DOCUMENT_FAULTS nor INDEX_FAULTS knows them), so the item
/// is `Suspect`; the data stream took documents, so it is isolated as a server error and
/// dead-lettered after POISON_STRIKES. An operator's ingest change has cost the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_ingest_pipeline_failing_on_some_records_is_recovered_by_replay() {
    operator_change_keeps_the_event(
        ItemError::new(400, "illegal_argument_exception", "field [actor.user.email_addr] doesn't exist"),
        "a default_pipeline's rename processor",
    )
    .await;
}

/// A web server that answers every request `answer` (no Elasticsearch behind it).
async fn fixed_node(answer: &'static str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let _ = stream.write_all(answer.as_bytes()).await;
                            buf.drain(..end + 4 + len);
                            continue;
                        }
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    url
}

/// The hosts entry names a web server that forbids everything (an nginx `deny all`, a WAF, an
/// AWS OpenSearch domain whose access policy does not name this role, a wrong port): no
/// Elasticsearch, no X-Elastic-Product header. Since 35fcda9 a 403 on `GET /` with any
/// credentials configured is "reachable, api key known but without the `monitor` cluster
/// privilege", and the template look-up's 403 "not verified": `check --connect` says ok for a
/// sink that can deliver nothing (its every `_bulk` is 403, an operator error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_says_ok_for_a_server_that_forbids_everything_when_a_key_is_set() {
    let sim = simulator(5).await;
    let forbidding = fixed_node(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/html\r\ncontent-length: 45\r\n\r\n\
         <html><body>403 Forbidden nginx</body></html>",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        &format!("hosts = [{forbidding:?}]\napi_key = \"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw\"\n"),
    );
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "--connect", "-c"])
        .arg(&config)
        .env("TEST_AITRONOS_KEY", sim.aitronos_api_key())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert_ne!(
        result,
        "ok",
        "check --connect calls a host that answers every request 403 (HTML, no Elasticsearch) fine: {detail}\n(exit {:?})",
        check.status.code()
    );
    sim.shutdown().await;
}

/// Which data stream each document went to, after one `run --once` of `sim` into a fresh
/// emulator with `dataset`.
async fn streams_of(sim: &Sim, dataset: &str) -> Vec<(String, String)> {
    let emu = EsEmulator::start(EsOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(sim, dir.path(), &format!("hosts = [{:?}]\ndataset = {dataset:?}\n", emu.url()));
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    let mut agent = Agent::spawn(&["run", "--once"], &config, &config.with_file_name("agent.log"), &all);
    let status = agent.exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", agent.tail());
    emu.documents().into_iter().map(|d| (d.target, d.id)).collect()
}

/// `dataset = "auditrelay.{class_uid}"` (a stream per OCSF class, as the README offers). The
/// documents of the least common class are refused for their own content with a 400 neither
/// list knows (Elasticsearch's "Can't merge a non object mapping" for a dynamic mapping
/// conflict: a vendor sending `actor.user` as a string). That stream has taken nothing from
/// this sink, so the item is `Suspect` -> `Operator`, a config error for the whole batch; the
/// other items of the batch are memoised, the resend carries only the refused ones, and the
/// stream never takes a document, so the sink stays stopped for every class and every later
/// event. 35fcda9 promised "a document problem no longer stalls the sink".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_class_streams_document_fault_stalls_the_whole_sink() {
    let dataset = "auditrelay.{class_uid}";
    let sim = simulator(60).await;
    let docs = streams_of(&sim, dataset).await;
    let mut per: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (target, id) in &docs {
        per.entry(target.clone()).or_default().push(id.clone());
    }
    assert!(per.len() >= 2, "one class only: {per:?}");
    let (rare, ids) = per.iter().min_by_key(|(_, ids)| ids.len()).unwrap();
    let others = docs.len() - ids.len();
    // The same records again (the uid is deterministic), into a cluster that refuses the rare
    // stream's documents.
    let emu = EsEmulator::start(EsOptions::default()).await;
    for id in ids {
        emu.refuse_items_containing(
            id,
            ItemError::new(
                400,
                "illegal_argument_exception",
                "Can't merge a non object mapping [ocsf.actor.user] with an object mapping",
            ),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        &format!("hosts = [{:?}]\ndataset = {dataset:?}\nbatch_max_events = 10\n", emu.url()),
    );
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "2s"], &config, &config.with_file_name("agent.log"), &all);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline && emu.document_count() < others {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed = emu.document_count();
    let _ = agent.terminate(Duration::from_secs(20)).await;
    let tail = agent.tail();
    let said: Vec<&str> = tail.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).take(3).collect();
    assert_eq!(
        indexed,
        others,
        "after 30 s the cluster holds {indexed} of the {others} events outside {rare} ({} refused there):\n{said:#?}",
        ids.len()
    );
    sim.shutdown().await;
}

/// `auditrelay check -c <minimal config>` with `HTTPS_PROXY` set to `proxy`; its stdout and stderr.
async fn check_with_proxy(proxy: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    let text = format!(
        "state_dir = {:?}\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"ORG_7F3KQ9ZP2M4XW8RT\"\n\
         api_key = \"${{AITRONOS_API_KEY}}\"\n[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = {:?}\n",
        dir.path().join("state"),
        dir.path().join("out.jsonl"),
    );
    std::fs::write(&config, text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "-c"])
        .arg(&config)
        .env("AITRONOS_API_KEY", "k")
        .env("HTTPS_PROXY", proxy)
        .env_remove("https_proxy")
        .output()
        .await
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A proxy value without a scheme (curl and reqwest both take `user:pass@host:port`) whose
/// password holds `://`: `shown_proxy` splits the scheme at the first `://`, so the user and
/// the start of the password become a "scheme" and a path of a URL with no host, which
/// `set_username` cannot redact: `check` prints `jdoe:S3cr://proxy.corp:3128`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_the_proxy_user_and_part_of_its_password_when_the_value_has_no_scheme() {
    let said = check_with_proxy("jdoe:S3cr://et@proxy.corp:3128").await;
    let shown: Vec<&str> = said.lines().filter(|l| l.contains("HTTPS_PROXY=")).collect();
    assert!(!said.contains("jdoe") && !said.contains("S3cr"), "check shows the proxy's credentials: {shown:#?}");
}

/// A well-formed proxy URL with a path holding `@` (`http://jdoe:pw@proxy.corp:3128/x@y`): the
/// client connects to proxy.corp:3128 with jdoe's credentials (the authority ends at the first
/// `/`), but `check` cuts the credentials at the text's last `@`: it shows the proxy as `y`
/// and calls the variable unusable ("connections through it fail"), which the client does not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_calls_a_proxy_url_with_an_at_sign_in_its_path_unusable() {
    let said = check_with_proxy("http://jdoe:pw@proxy.corp:3128/x@y").await;
    let shown: Vec<&str> = said.lines().filter(|l| l.contains("proxy")).take(2).collect();
    assert!(
        said.contains("proxy.corp:3128") && !said.contains("unusable"),
        "check does not say what the client does (through proxy.corp:3128): {shown:#?}"
    );
}

/// The reason tables match substrings of Elastic's reason, which names the document's own
/// fields: a mapping conflict on a field whose name holds "closed" (`Can't merge a non object
/// mapping [ocsf.resources.closed] with an object mapping`, one vendor sending `closed` as a
/// flag where another sends an object) is matched by INDEX_FAULTS' "closed" and taken for an
/// operator's error, in a data stream that takes every other document: the whole sink stops
/// behind that one event, for good. The same reason on `[ocsf.resources.state]` is isolated and
/// dead-lettered alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_fault_naming_a_field_called_closed_stalls_the_whole_sink() {
    let sim = simulator(30).await;
    let poison = sim.aitronos_ids()[3].clone();
    let emu = EsEmulator::start(EsOptions::default()).await;
    emu.refuse_items_containing(
        &poison,
        ItemError::new(
            400,
            "illegal_argument_exception",
            "Can't merge a non object mapping [ocsf.resources.closed] with an object mapping",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("hosts = [{:?}]\nbatch_max_events = 10\n", emu.url()));
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "2s"], &config, &config.with_file_name("agent.log"), &all);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline && emu.document_count() < 29 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed = emu.document_count();
    let _ = agent.terminate(Duration::from_secs(20)).await;
    let tail = agent.tail();
    let said: Vec<&str> = tail.lines().filter(|l| l.contains("ERROR")).take(2).collect();
    assert_eq!(
        indexed, 29,
        "after 30 s the cluster holds {indexed} of the 29 events besides the refused one:\n{said:#?}"
    );
    sim.shutdown().await;
}
