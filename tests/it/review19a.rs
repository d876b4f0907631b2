//! Review 19a of the Elasticsearch sink (issue 19): failing tests, one per finding. Each runs the
//! real binary over the simulator against the project's `_bulk` emulator (or a hand-made node).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::elasticsearch::{simulator, write_config};
use crate::es_emulator::{EsEmulator, EsOptions, ItemError};
use crate::harness;

use std::path::Path;
use std::time::Duration;

use auditrelay::sim::Sim;
use harness::agent::Agent;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn run_follow(sim: &Sim, config: &Path) -> Agent {
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    Agent::spawn(&["run", "--drain-timeout", "2s"], config, &config.with_file_name("agent.log"), &all)
}

/// A node that reads each whole request and answers it with `answer` (status line, headers and
/// body), as a node out of its cluster or a load balancer without a backend does.
async fn fixed_node(answer: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    // Headers, then the whole body by content-length, then the answer.
                    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
                    if let Some(end) = head_end {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
    (url, hits)
}

/// `hosts` lists two nodes; the first answers every request 503 (a node that left its cluster,
/// `master_not_discovered_exception`, or a load balancer in front of a dead pool), the second
/// is healthy. Issue 19 promises "several node URLs with failover"; the sink only fails over on
/// a connection error ("an HTTP answer is an answer and is never retried on another node"), so
/// it retries the 503 node forever and the healthy node never sees a request: a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_answering_503_holds_back_a_healthy_second_host() {
    let sim = simulator(20).await;
    let (bad, hits) = fixed_node(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 64\r\n\r\n\
         {\"error\":{\"type\":\"master_not_discovered_exception\"},\"status\":503}",
    )
    .await;
    let up = EsEmulator::start(EsOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path(), &format!("hosts = [{bad:?}, {:?}]\n", up.url()));
    let mut agent = run_follow(&sim, &config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline && up.document_count() < 20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed = up.document_count();
    let bad_hits = hits.load(std::sync::atomic::Ordering::SeqCst);
    let _ = agent.terminate(Duration::from_secs(20)).await;
    assert_eq!(
        indexed,
        20,
        "after 30 s the healthy second host holds {indexed} of 20 events; the 503 node was asked {bad_hits} times:\n{}",
        agent.tail()
    );
    sim.shutdown().await;
}

/// OpenSearch answers a document that would exceed `index.mapping.total_fields.limit` with an
/// item 400 `illegal_argument_exception` "Limit of total fields [..] has been exceeded" (the
/// emulator's own OpenSearch model, es_emulator rule 6; Elasticsearch wraps it in
/// `document_parsing_exception`). That is one document's fault, like an immense term (a keyword
/// over 32,766 bytes: `event.code`, `ocsf.metadata.*` and `ocsf.unmapped` have no `ignore_above`
/// in the shipped template) or an ingest pipeline failing on it, which Elasticsearch also answer
/// `illegal_argument_exception`. `classify_item` calls every 400 but the two parsing types an
/// operator error: the whole sink stops behind that one event, forever; every later event waits.
/// Against Elasticsearch the same document is dead-lettered alone and the rest delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_document_over_opensearchs_field_limit_stalls_the_whole_sink() {
    let sim = simulator(30).await;
    let poison = sim.aitronos_ids()[3].clone();
    let emu = EsEmulator::start(EsOptions::opensearch()).await;
    emu.refuse_items_containing(
        &poison,
        ItemError::new(
            400,
            "illegal_argument_exception",
            "Limit of total fields [2000] has been exceeded while adding new fields [3]",
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        &format!("hosts = [{:?}]\nindex = \"auditrelay\"\nbatch_max_events = 10\n", emu.url()),
    );
    let mut agent = run_follow(&sim, &config);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline && emu.document_count() < 29 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed = emu.document_count();
    let _ = agent.terminate(Duration::from_secs(20)).await;
    assert_eq!(
        indexed,
        29,
        "after 30 s OpenSearch holds {indexed} of the 29 events besides the one it refused: the sink stopped behind it:\n{}",
        agent.tail()
    );
    sim.shutdown().await;
}

/// `check --connect` says "index template auditrelay-ocsf present" by its name alone. An operator
/// who sets `dataset = "auditrelay.{vendor}"` and installs the template as the README's command
/// prints it (no `--dataset`) gets `ok`, while the template's `index_patterns`
/// (`logs-auditrelay.ocsf-*`) match none of the sink's streams: they take the built-in
/// `logs-*-*` template, the very ECS mappings the layout was chosen to avoid (`ocsf.unmapped`
/// explodes field by field, date detection on). `check` says what the cluster does not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_says_the_template_is_present_though_it_matches_none_of_the_sinks_streams() {
    let sim = simulator(10).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["elasticsearch", "template"])
        .output()
        .await
        .unwrap();
    let template: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    emu.install_template("auditrelay-ocsf", template);
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(&sim, dir.path(), &format!("hosts = [{:?}]\ndataset = \"auditrelay.{{vendor}}\"\n", emu.url()));
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "--connect", "-c"])
        .arg(&config)
        .env("TEST_AITRONOS_KEY", sim.aitronos_api_key())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    let mut agent = Agent::spawn(
        &["run", "--once"],
        &config,
        &config.with_file_name("agent.log"),
        &[("TEST_AITRONOS_KEY", sim.aitronos_api_key())],
    );
    let status = agent.exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", agent.tail());
    let stream = emu.documents()[0].target.clone();
    let unmapped = emu.field_type(&stream, "ocsf.unmapped");
    let fields = emu.field_count(&stream);
    assert!(
        result != "ok" || unmapped.as_deref() == Some("flattened"),
        "check --connect: {result} ({detail}); yet {stream} was made without the template: ocsf.unmapped is \
         {unmapped:?}, {fields} fields mapped"
    );
    sim.shutdown().await;
}

/// A node (or a proxy before it) that refuses the request and echoes the `Authorization` it got,
/// as the project already expects of receivers ("Invalid token: Splunk …", sinks/mod.rs). With
/// basic auth the sink scrubs only the password itself (`secrets()` = [password]); the header
/// carries `base64(username:password)`, which nothing scrubs: it reaches the log (and every
/// other place the error goes), and decodes to the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_basic_auth_header_reaches_the_log_unredacted() {
    let sim = simulator(5).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                    .unwrap_or("none")
                    .to_owned();
                let body = format!("<html><body>401 Unauthorized: credentials [{auth}] rejected</body></html>");
                let answer = format!(
                    "HTTP/1.1 401 Unauthorized\r\ncontent-type: text/html\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        &format!("hosts = [{url:?}]\nusername = \"ingest\"\npassword = \"${{ES_PASSWORD}}\"\n"),
    );
    let all = vec![("TEST_AITRONOS_KEY", sim.aitronos_api_key()), ("ES_PASSWORD", "s3cret-pass-Word")];
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "2s"], &config, &config.with_file_name("agent.log"), &all);
    harness::agent::until("the refusal in the log", Duration::from_secs(30), || {
        std::fs::read_to_string(config.with_file_name("agent.log")).unwrap_or_default().contains("answered 401")
    })
    .await;
    let _ = agent.terminate(Duration::from_secs(20)).await;
    let log = agent.log();
    let encoded = crate::es_emulator::base64("ingest:s3cret-pass-Word");
    assert!(!log.contains("s3cret-pass-Word"), "the password itself is scrubbed");
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains(&encoded)).collect();
    assert!(
        leaked.is_empty(),
        "base64(username:password) in {} log lines, e.g.:\n{}",
        leaked.len(),
        leaked.first().unwrap_or(&"")
    );
    sim.shutdown().await;
}

/// An ingest-only API key, as Elastic recommends for shippers (index privileges `create_doc`,
/// `auto_configure` on `logs-*`, no cluster privilege): Elasticsearch answers its `GET /` with
/// 403 "action [cluster:monitor/main] is unauthorized …" (that action needs the `monitor`
/// cluster privilege) while its `_bulk` writes succeed. `check --connect` probes with `GET /` and
/// reports "the cluster refused the API key": the key that works is declared broken, and the
/// README names no privilege the key needs. This node answers as such a cluster does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_calls_a_working_ingest_only_api_key_refused() {
    let sim = simulator(10).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let indexed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = indexed.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                            let answer = if head.starts_with("post ") && head.contains("/_bulk") {
                                let n = body.lines().filter(|l| !l.trim().is_empty()).count() / 2;
                                counter.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                                let items: Vec<String> =
                                    (0..n).map(|_| "{\"create\":{\"status\":201}}".to_owned()).collect();
                                format!("{{\"errors\":false,\"items\":[{}]}}", items.join(","))
                            } else {
                                "{\"error\":{\"type\":\"security_exception\",\"reason\":\"action [cluster:monitor/main] is \
                                 unauthorized for API key id [ingest] of user [shipper], this action is granted by the \
                                 cluster privileges [monitor,manage,all]\"},\"status\":403}"
                                    .to_owned()
                            };
                            let status = if answer.contains("security_exception") { "403 Forbidden" } else { "200 OK" };
                            let out = format!(
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nx-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n{answer}",
                                answer.len()
                            );
                            let _ = stream.write_all(out.as_bytes()).await;
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
    let dir = tempfile::tempdir().unwrap();
    let config =
        write_config(&sim, dir.path(), &format!("hosts = [{url:?}]\napi_key = \"${{ES_KEY}}\"\ngzip = false\n"));
    let env = [("TEST_AITRONOS_KEY", sim.aitronos_api_key()), ("ES_KEY", "aW5nZXN0OnNlY3JldA==")];
    let mut agent = Agent::spawn(&["run", "--once"], &config, &config.with_file_name("agent.log"), &env);
    let status = agent.exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", agent.tail());
    let delivered = indexed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(delivered, 10, "the key writes every event");
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["check", "--connect", "-c"])
        .arg(&config)
        .envs(env)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    let (result, detail) = harness::sinks::connect_row(&stdout, "sink", "elastic");
    assert!(
        !detail.contains("refused"),
        "the key just wrote all {delivered} events, yet check --connect says: {result} {detail}"
    );
    sim.shutdown().await;
}

/// `dataset = "{vendor}"` is accepted by the config, and `auditrelay elasticsearch template
/// --dataset "{vendor}"` prints `index_patterns: ["logs-*-*"]` at priority 200: installed as told,
/// it takes over every `logs-*-*` data stream of the cluster (Elastic Agent's, Filebeat's), above
/// the built-in `logs` template (100), and Elasticsearch then refuses an integration's own
/// priority-200 `logs-<dataset>-*` template as overlapping ours at the same priority. The
/// printed template must cover the sink's streams only (e.g. a fixed prefix, or refuse a dataset
/// that starts with a placeholder).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_for_a_vendor_dataset_captures_every_logs_data_stream_of_the_cluster() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["elasticsearch", "template", "--dataset", "{vendor}"])
        .output()
        .await
        .unwrap();
    // Refusing such a dataset is a fix too (the config refuses it as well).
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("must begin with a fixed name"), "{said}");
        return;
    }
    let template: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let patterns = template["index_patterns"].clone();
    let foreign = "logs-system.syslog-default";
    let captures = patterns.as_array().unwrap().iter().any(|p| {
        let p = p.as_str().unwrap();
        let (head, tail) = p.split_once('*').unwrap_or((p, ""));
        let tail = tail.rsplit('*').next().unwrap_or("");
        p.contains('*') && foreign.starts_with(head) && foreign.ends_with(tail)
    });
    assert!(
        !captures,
        "index_patterns {patterns} at priority {} capture Elastic Agent's {foreign}",
        template["priority"]
    );
}

/// One vendor record whose action is 40,000 characters long (a buggy or hostile vendor; the
/// mapper bounds nothing) becomes `metadata.event_code` = "department.<that>", which the sink
/// copies to `event.code`. The shipped template maps both as `keyword` without `ignore_above`
/// (only the dynamic `ocsf.*` rules have it), so Elasticsearch refuses the document: item 400
/// `illegal_argument_exception` "Document contains at least one immense term …" (Lucene's
/// 32,766-byte term limit; the emulator now models it, es_emulator `check`). The item table
/// calls that an operator error: every later event of every vendor waits behind it, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_vendor_record_with_a_long_action_stalls_the_elasticsearch_sink_for_good() {
    use crate::harness::hostile::{Hostile, aitronos_answer, aitronos_record, aitronos_source, write_config};
    let now = chrono::Utc::now();
    let mut records: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            aitronos_record(&format!("evt_{i:04}"), now - chrono::Duration::hours(20) + chrono::Duration::minutes(i))
        })
        .collect();
    records[2]["action_type"] = serde_json::Value::String("x".repeat(40_000));
    let served = records.clone();
    let vendor = Hostile::start(move |r| aitronos_answer(r, &served)).await;
    let emu = EsEmulator::start(EsOptions::default()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_auditrelay"))
        .args(["elasticsearch", "template"])
        .output()
        .await
        .unwrap();
    emu.install_template("auditrelay-ocsf", serde_json::from_slice(&out.stdout).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &aitronos_source(&vendor, ""));
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\nbackoff = {{ initial = \"50ms\", max = \"500ms\" }}\n\
         batch_max_events = 5\nhosts = [{:?}]\n",
        emu.url()
    ));
    std::fs::write(&config, text).unwrap();
    let mut agent = Agent::spawn(&["run", "--drain-timeout", "2s"], &config, &config.with_file_name("agent.log"), &[]);
    let file_events = || harness::events(&harness::out_path(dir.path())).len();
    harness::agent::until("the file sink's 12 events", Duration::from_secs(30), || file_events() == 12).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline && emu.document_count() < 11 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let indexed = emu.document_count();
    let _ = agent.terminate(Duration::from_secs(20)).await;
    let refusals: Vec<String> = agent.lines_with(&["immense term"]).into_iter().take(1).collect();
    // The shipped template now keeps the long value unindexed (`ignore_above`): all 12 may
    // arrive; what must not happen is the sink stopping behind it.
    assert!(
        indexed >= 11,
        "Elasticsearch holds {indexed} of the 11 events besides the long one, 20 s after the file sink had all 12:\n{}",
        refusals.first().map_or("", |l| &l[..l.len().min(600)])
    );
}
