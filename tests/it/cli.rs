//! The binary's commands as a user runs them: `check`, `demo`, `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use crate::harness;

use std::process::Command;

fn auditrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_auditrelay"))
}

#[test]
fn test_check_prints_the_resolved_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("aitronos.key");
    std::fs::write(&key_file, "ak_supersecretvalue0000000000000000000000\n").unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        r#"state_dir = "state"
[[sources]]
name = "acme"
vendor = "aitronos"
organization_id = "ORG_7F3KQ9ZP2M4XW8RT"
api_key_file = "aitronos.key"
[[sinks]]
name = "out"
type = "file"
path = "out.ndjson"
"#,
    )
    .unwrap();
    let out = auditrelay().args(["check", "-c"]).arg(&config).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("acme") && stdout.contains("[redacted]"), "{stdout}");
    assert!(!stdout.contains("supersecret") && !stderr.contains("supersecret"));
}

#[test]
fn test_check_names_file_line_and_key_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"${AUDITRELAY_TEST_UNSET_VARIABLE}\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    let out =
        auditrelay().args(["check", "-c"]).arg(&config).env_remove("AUDITRELAY_TEST_UNSET_VARIABLE").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:6"), "{stderr}");
    assert!(stderr.contains("api_key") && stderr.contains("AUDITRELAY_TEST_UNSET_VARIABLE"), "{stderr}");
}

/// An override written for a request code with ids (as codes were before they were templated)
/// can never match: `check` says so and names the code to use (adversarial review F4).
#[test]
fn test_check_warns_of_a_severity_override_that_names_ids() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"k\"\n\
         [[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n[severity]\noverrides = { \
         \"astronomer:POST /v1beta1/organizations/examplecorp/api-tokens\" = \"high\", \"aitronos:user.deleted\" = \"high\" }\n",
    )
    .unwrap();
    let out = auditrelay().args(["check", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("never matches"), "{stderr}");
    assert!(stderr.contains("astronomer:POST /v1beta1/organizations/{org}/api-tokens"), "{stderr}");
    assert_eq!(stderr.matches("never matches").count(), 1, "only the code with ids: {stderr}");
}

#[test]
fn test_help_lists_every_command() {
    let out = auditrelay().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "demo", "simulate"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn test_demo_delivers_every_record_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = auditrelay().current_dir(dir.path()).args(["demo", "--records", "1000"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("OK: all 4000 seeded records delivered exactly once"), "{stdout}");
    // Every event is valid OCSF 1.8.0, and all four vendors are there.
    let events = harness::events(&dir.path().join("auditrelay-demo/events.ndjson"));
    assert_eq!(events.len(), 4000);
    let products: std::collections::BTreeSet<_> =
        events.iter().map(|e| e["metadata"]["product"]["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(products.into_iter().collect::<Vec<_>>(), ["Aitronos", "Astro", "ConfigCat", "Datafold"]);
    // What a detection engineer's index needs (issue 17): one JSON type per attribute path (an
    // Elasticsearch index with dynamic mapping takes every event), the observables, nothing
    // placed twice, and the times that measure ingest lag: vendor time ≤ processed ≤ sent.
    harness::ocsf_schema::assert_one_type_per_path(&events);
    for event in &events {
        harness::ocsf_schema::assert_observables(event);
        harness::ocsf_schema::assert_unmapped_not_placed(event);
        let metadata = &event["metadata"];
        let (processed, logger) = (metadata["processed_time"].as_i64().unwrap(), &metadata["loggers"][0]);
        assert_eq!(logger["logged_time"].as_i64(), Some(processed), "{event}");
        let sent = logger["transmit_time"].as_i64().unwrap();
        assert_eq!(metadata["transmit_time"].as_i64(), Some(sent), "{event}");
        assert!(event["time"].as_i64().unwrap() <= processed && processed <= sent, "{event}");
        assert_eq!(metadata["log_name"], logger["log_name"], "{event}");
        assert!(event["timezone_offset"].is_i64(), "{event}");
    }
    // The demo's vendor limit is tighter than the agent's quota: 429s come, and are honoured.
    let sim_line = stdout.lines().find(|l| l.starts_with("simulator:")).expect("the simulator's summary line");
    let count = |label: &str| -> u64 {
        let before = &sim_line[..sim_line.find(label).unwrap_or_else(|| panic!("{label} in {sim_line}"))];
        before.trim_end().rsplit([' ', ',']).next().unwrap().parse().unwrap()
    };
    assert!(count(" answered 429") > 0, "{sim_line}");
    assert_eq!(count(" requests inside a Retry-After window"), 0, "{sim_line}");
}

#[test]
fn test_run_refuses_to_start_with_an_unreadable_ca_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"k\"\n\
         [[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\nca_file = \"missing-ca.pem\"\n",
    )
    .unwrap();
    let out = auditrelay().args(["run", "--once", "-c"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let missing = dir.path().join("missing-ca.pem");
    // Refused with the configuration, by file, line and key (issue 18 point 3).
    let at = "auditrelay.toml:11: sinks[0].ca_file: cannot read";
    assert!(stderr.contains(at) && stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(!dir.path().join("state").exists(), "nothing started: {stderr}");
}

#[test]
fn test_check_connect_tries_each_vendor_credential_and_names_a_refused_one() {
    let (_rt, sim, source) = harness::sinks::simulated_source();
    let key = sim.aitronos_api_key().to_owned();
    let wrong = source.replace(&key, "ak_not_the_right_key_0000000000000000000000");
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.ndjson").display().to_string();
    let run = |block: &str| {
        let config = dir.path().join("auditrelay.toml");
        let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {out_file:?}\n");
        std::fs::write(&config, format!("state_dir = \"state\"\n{block}\n{sink}")).unwrap();
        let out = auditrelay().args(["check", "--connect", "-c"]).arg(&config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, stdout) = run(&source);
    assert_eq!(code, Some(0), "{stdout}");
    let row = |stdout: &str, kind: &str| stdout.lines().find(|l| l.starts_with(kind)).unwrap_or_default().to_owned();
    assert!(
        row(&stdout, "source").contains(" ok ") && row(&stdout, "source").contains("credential accepted"),
        "{stdout}"
    );
    assert!(row(&stdout, "sink").contains(" ok "), "{stdout}");
    let (code, stdout) = run(&wrong);
    assert_eq!(code, Some(1), "{stdout}");
    let source_row = row(&stdout, "source");
    assert!(
        source_row.contains("FAILED") && source_row.contains("401") && source_row.contains("credential is refused"),
        "{stdout}"
    );
    assert!(!stdout.contains("ak_not_the_right_key"), "the key is never shown: {stdout}");
}

/// Issue 18 point 6: `check --connect` prints its table first and the resolved configuration
/// only with `--show-config`; `--json` says the same as one object, also for a refused file.
#[test]
fn test_check_connect_table_first_config_on_request_and_json() {
    let (_rt, sim, source) = harness::sinks::simulated_source();
    let key = sim.aitronos_api_key().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.ndjson").display().to_string();
    let config = dir.path().join("auditrelay.toml");
    let write = |block: &str| {
        let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {out_file:?}\n");
        std::fs::write(&config, format!("state_dir = \"state\"\n{block}\n{sink}")).unwrap();
    };
    let check = |args: &[&str]| {
        let out = auditrelay().arg("check").args(args).arg("-c").arg(&config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    write(&source);
    let (code, stdout) = check(&["--connect"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.starts_with("KIND "), "the table comes first:\n{stdout}");
    assert!(!stdout.contains("[[sources]]") && !stdout.contains("# resolved from"), "no config: {stdout}");
    assert!(stdout.contains("# configuration OK: 1 source(s), 1 sink(s)"), "{stdout}");
    let (code, stdout) = check(&["--connect", "--show-config"]);
    assert_eq!(code, Some(0), "{stdout}");
    let (table, resolved) = (stdout.find("KIND ").unwrap(), stdout.find("# resolved from").unwrap());
    assert!(table < resolved && stdout.contains("[redacted]"), "table, then the config:\n{stdout}");
    assert!(!stdout.contains(&key), "{stdout}");

    let (code, stdout) = check(&["--connect", "--json"]);
    assert_eq!(code, Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(v["sources"][0]["name"], "a", "{v}");
    assert_eq!(v["sinks"][0], serde_json::json!({"name": "out", "type": "file"}), "{v}");
    let rows = v["connect"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert_eq!((rows[0]["kind"].as_str(), rows[0]["ok"].as_bool()), (Some("source"), Some(true)), "{v}");
    assert_eq!((rows[1]["kind"].as_str(), rows[1]["name"].as_str()), (Some("sink"), Some("out")), "{v}");
    assert!(v.get("resolved").is_none(), "config only with --show-config: {v}");

    // A refused credential: ok false, the row names why, exit 1, never the key.
    write(&source.replace(&key, "ak_not_the_right_key_0000000000000000000000"));
    let (code, stdout) = check(&["--connect", "--json", "--show-config"]);
    assert_eq!(code, Some(1), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["connect"][0]["ok"], false, "{v}");
    assert!(v["connect"][0]["detail"].as_str().unwrap().contains("401"), "{v}");
    assert!(v["resolved"].as_str().unwrap().contains("[redacted]"), "{v}");
    assert!(!stdout.contains("ak_not_the_right_key"), "{stdout}");

    // A refused file: still one JSON object on stdout, naming the line and key.
    std::fs::write(&config, "state_dir = \"state\"\npoll_intervall = \"1m\"\n").unwrap();
    let (code, stdout) = check(&["--json"]);
    assert_eq!(code, Some(1), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(
        (&v["errors"][0]["line"], &v["errors"][0]["key"]),
        (&serde_json::json!(2), &serde_json::json!("poll_intervall")),
        "{v}"
    );
    assert!(v["errors"][0]["message"].as_str().unwrap().contains("unknown field"), "{v}");

    // Warnings are in the object too (and the file still passes).
    write(&source.replace("name = \"a\"", "name = \"a\"\nlog_name = \"costs $5\""));
    let (code, stdout) = check(&["--json"]);
    assert_eq!(code, Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let warning = &v["warnings"][0];
    assert!(warning["message"].as_str().unwrap().contains("taken literally"), "{v}");
    assert!(warning["at"].as_str().unwrap().ends_with("log_name"), "{v}");
}

#[test]
fn test_backfill_collects_a_range_reports_progress_and_resumes_from_its_own_checkpoint() {
    let (_rt, sim, source) = harness::sinks::simulated_source();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ndjson");
    let config = dir.path().join("auditrelay.toml");
    let sink = format!("[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = {:?}\n", out.display().to_string());
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();
    let now = chrono::Utc::now();
    let backfill = |until: chrono::DateTime<chrono::Utc>| {
        let since = (now - chrono::Duration::days(2)).to_rfc3339();
        let out = auditrelay()
            .args(["backfill", "--source", "a", "--since", &since, "--until", &until.to_rfc3339(), "-c"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The simulator's 1000 records span the last day: half of them first…
    let (code, stdout, stderr) = backfill(now - chrono::Duration::hours(12));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("backfill a.backfill: done:"), "{stdout}");
    assert!(stderr.contains("backfill: ") && stderr.contains("windows "), "progress lines on a non-terminal: {stderr}");
    let first = harness::delivered(&out);
    assert!(first.len() > 300 && first.len() < 700, "about half: {}", first.len());
    // …then the same backfill to now resumes from its checkpoint: the rest, nothing twice.
    let (code, stdout, stderr) = backfill(now);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let all = harness::delivered(&out);
    assert_eq!(
        all.len(),
        sim.record_keys(
            auditrelay::sim::SimVendor::Aitronos,
            &sim.organizations(auditrelay::sim::SimVendor::Aitronos)[0]
        )
        .len()
    );
    assert!(all.values().all(|n| *n == 1), "every record once");
    // The live source's checkpoint was never written.
    let stats = auditrelay().args(["queue", "stats", "-c"]).arg(&config).output().unwrap();
    let stats = String::from_utf8_lossy(&stats.stdout);
    let live = stats.lines().find(|l| l.starts_with("a ")).unwrap_or_default();
    assert!(stats.contains("a.backfill") && live.contains("no checkpoint yet"), "{stats}");
}

/// A config whose line 6 names an unset variable: `check` and `run` refuse it at start.
fn bad_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"${AUDITRELAY_TEST_UNSET_VARIABLE}\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    config
}

/// Issue 18 point 1: the error that stops the service at start is printed in the chosen log
/// format, so under journald it carries the `<3>` (err) priority `journalctl -p warning` shows.
#[test]
fn test_a_fatal_error_honours_the_log_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = bad_config(dir.path());
    let run = |format: &str| {
        auditrelay()
            .args(["run", "--log-format", format, "-c"])
            .arg(&config)
            .env_remove("AUDITRELAY_TEST_UNSET_VARIABLE")
            .env_remove("AUDITRELAY_LOG_FORMAT")
            .output()
            .unwrap()
    };
    let out = run("journald");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("bad.toml:6")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.starts_with("<3>") && line.contains("api_key"), "{stderr}");
    assert!(stderr.lines().all(|l| l.starts_with('<')), "every line has its priority: {stderr}");

    let out = run("json");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.contains("bad.toml:6")).unwrap_or_else(|| panic!("{stderr}"));
    let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(value["level"], "ERROR", "{stderr}");
    assert!(value["message"].as_str().unwrap().contains("api_key"), "{stderr}");

    let out = run("text");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.starts_with("error: ") && l.contains("bad.toml:6")), "{stderr}");
}

/// Every command's `--help`, the top level's and each subcommand's (nested ones too).
fn every_help() -> Vec<(String, String)> {
    let mut helps = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let out = auditrelay().args(&path).arg("--help").output().unwrap();
        assert!(out.status.success(), "{path:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let commands = text.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1);
        for line in commands.take_while(|l| l.starts_with("  ")) {
            if let Some(name) = line.split_whitespace().next().filter(|n| *n != "help") {
                let mut sub = path.clone();
                sub.push(name.to_owned());
                todo.push(sub);
            }
        }
        helps.push((path.join(" "), text));
    }
    helps
}

/// Issue 18 point 6: a help text that sends the reader to a README section names one that is
/// there, and `check --help` says what `--connect` reaches (sources as well as sinks).
#[test]
fn test_every_readme_section_a_help_cites_exists() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let headings: Vec<&str> =
        readme.lines().filter(|l| l.starts_with('#')).map(|l| l.trim_start_matches('#').trim()).collect();
    let helps = every_help();
    assert!(helps.len() > 10, "{:?}", helps.iter().map(|h| &h.0).collect::<Vec<_>>());
    let mut cited = 0;
    for (command, text) in &helps {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        for (at, _) in flat.match_indices("README") {
            let after = &flat[at + "README".len()..];
            assert!(
                !after.starts_with(" §") && !after.starts_with(" section"),
                "`{command} --help` cites a README section by number: {flat}"
            );
            if let Some(rest) = after.strip_prefix(" \"") {
                let title = rest.split('"').next().unwrap();
                assert!(
                    headings.contains(&title),
                    "`{command} --help` cites README \"{title}\", not a heading: {headings:?}"
                );
                cited += 1;
            }
        }
    }
    assert!(cited > 0, "no help cites a README section");
    let check = &helps.iter().find(|h| h.0 == "check").unwrap().1;
    let connect = check.split("\n      --connect").nth(1).unwrap();
    assert!(connect.contains("source") && connect.contains("credential"), "{check}");
}

/// Issue 18 point 6: without `-c` every command reads `/etc/auditrelay/auditrelay.toml`.
#[test]
fn test_the_config_defaults_to_etc_auditrelay() {
    for args in [
        &["check"][..],
        &["run", "--once"],
        &["queue", "stats"],
        &["backfill", "--source", "a", "--since", "2025-01-01"],
    ] {
        let out = auditrelay().args(args).env_remove("AUDITRELAY_LOG_FORMAT").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("/etc/auditrelay/auditrelay.toml"), "{args:?}: {stderr}");
    }
    let help = auditrelay().args(["run", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: /etc/auditrelay/auditrelay.toml]"));
}

/// Issue 18 point 6: on a terminal text logs are coloured, unless `NO_COLOR` is set
/// (no-color.org). The terminal is `script`'s pseudo-terminal.
#[test]
fn test_no_color_turns_colours_off_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    // A config `check` accepts with a warning (a log line).
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\napi_key = \"k\"\n\
         [[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n[severity]\noverrides = { \"astronomer:POST /v1beta1/organizations/examplecorp/api-tokens\" = \"high\" }\n",
    )
    .unwrap();
    let command = format!("{} check --log-format text -c {}", env!("CARGO_BIN_EXE_auditrelay"), config.display());
    let on_a_terminal = |no_color: Option<&str>| {
        let mut script = Command::new("script");
        script.args(["-q", "-e", "-c", &command, "/dev/null"]).current_dir(dir.path()).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            script.env("NO_COLOR", v);
        }
        let out = script.output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_a_terminal(None);
    assert!(coloured.contains("WARN") && coloured.contains("\u{1b}["), "{coloured:?}");
    let plain = on_a_terminal(Some("1"));
    assert!(plain.contains("WARN") && !plain.contains("\u{1b}["), "{plain:?}");
}

/// The unit's `LoadCredential=` layout checked outside the unit (issue 18 point 2): a secret
/// file written `${CREDENTIALS_DIRECTORY}/NAME` is read from `--credentials-dir` or from
/// `$CREDENTIALS_DIRECTORY` (as systemd sets it), and without either `check` says which key
/// needs it, by file and line.
#[test]
fn test_check_reads_credentials_from_credentials_dir_or_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    let key = creds.join("aitronos");
    std::fs::write(&key, "ak_supersecretvalue0000000000000000000000\n").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key_file = \"${CREDENTIALS_DIRECTORY}/aitronos\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    let check = |args: &[&str], env: Option<&std::path::Path>| {
        let mut cmd = auditrelay();
        cmd.args(["check", "-c"]).arg(&config).args(args).env_remove("CREDENTIALS_DIRECTORY");
        if let Some(env) = env {
            cmd.env("CREDENTIALS_DIRECTORY", env);
        }
        let out = cmd.output().unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains("supersecret"), "{all}");
        (out.status.code(), all)
    };
    let (code, all) = check(&[], None);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("auditrelay.toml:6: sources[0].api_key_file: CREDENTIALS_DIRECTORY is not set"), "{all}");
    assert!(all.contains("--credentials-dir"), "{all}");

    let (code, all) = check(&["--credentials-dir", creds.to_str().unwrap()], None);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("configuration OK"), "{all}");
    let (code, all) = check(&[], Some(&creds));
    assert_eq!(code, Some(0), "$CREDENTIALS_DIRECTORY as systemd sets it: {all}");

    // The option wins over the variable; a credential not there is named by its path.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, all) = check(&["--credentials-dir", empty.to_str().unwrap()], Some(&creds));
    assert_eq!(code, Some(1), "{all}");
    let missing = empty.join("aitronos").display().to_string();
    assert!(all.contains("auditrelay.toml:6: sources[0].api_key_file:") && all.contains(&missing), "{all}");
}

/// `check` reads what the agent will read: a CA, client certificate or key file that is not
/// there is refused by file, line and key with its path, not first met when connecting
/// (issue 18 point 3); a `*_file` secret likewise.
#[test]
fn test_check_refuses_a_missing_ca_client_cert_key_or_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("present.pem");
    std::fs::write(&present, "not read by check").unwrap();
    let source =
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n";
    let syslog = "[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\n";
    let cases = [
        // (the file's text, the key named, its line, the missing file)
        (
            format!("{source}api_key = \"k\"\nbase_url = \"https://h\"\nca_file = \"gone-ca.pem\"\n{syslog}"),
            "sources[0].ca_file",
            8,
            "gone-ca.pem",
        ),
        (
            format!("{source}api_key = \"k\"\n{syslog}ca_file = \"gone-ca.pem\"\n"),
            "sinks[0].ca_file",
            11,
            "gone-ca.pem",
        ),
        (
            format!(
                "{source}api_key = \"k\"\n{syslog}client_cert_file = \"gone.crt\"\nclient_key_file = \"present.pem\"\n"
            ),
            "sinks[0].client_cert_file",
            11,
            "gone.crt",
        ),
        (
            format!(
                "{source}api_key = \"k\"\n{syslog}client_cert_file = \"present.pem\"\nclient_key_file = \"gone.key\"\n"
            ),
            "sinks[0].client_key_file",
            12,
            "gone.key",
        ),
        (
            format!(
                "{source}api_key = \"k\"\n[[sinks]]\nname = \"hec\"\ntype = \"hec\"\nurl = \"https://h:8088\"\ntoken = \"t\"\nca_file = \"gone-ca.pem\"\n"
            ),
            "sinks[0].ca_file",
            12,
            "gone-ca.pem",
        ),
        (format!("{source}api_key_file = \"gone.key\"\n{syslog}"), "sources[0].api_key_file", 6, "gone.key"),
    ];
    for (text, key, line, file) in cases {
        let config = dir.path().join("auditrelay.toml");
        std::fs::write(&config, &text).unwrap();
        let out = auditrelay().args(["check", "-c"]).arg(&config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text}\n{stderr}");
        let path = dir.path().join(file).display().to_string();
        let at = format!("auditrelay.toml:{line}: {key}: ");
        assert!(stderr.contains(&at) && stderr.contains(&path), "{at} {path}:\n{text}\n{stderr}");
    }
}

/// A `state_dir` that does not exist yet is not passed over in silence: `check` says it will be
/// created, by whom and owned by whom (issue 18 point 3), and creates nothing itself.
#[test]
fn test_check_says_a_missing_state_dir_will_be_created_and_by_whom() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    let text = |state: &str| {
        format!(
            "state_dir = {state:?}\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
             api_key = \"k\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n"
        )
    };
    let check = |state: &str| {
        std::fs::write(&config, text(state)).unwrap();
        let out = auditrelay().args(["check", "-c"]).arg(&config).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let state = dir.path().join("state");
    let stdout = check("state");
    let note = format!("# note: state_dir {} does not exist yet: `auditrelay run` creates it", state.display());
    assert!(stdout.contains(&note) && stdout.contains("owned by the user running it (here: "), "{stdout}");
    assert!(stdout.contains("ReadWritePaths="), "what the packaged unit needs for it: {stdout}");
    assert!(!state.exists(), "check creates nothing");
    std::fs::create_dir(&state).unwrap();
    assert!(!check("state").contains("does not exist"), "an existing state_dir is not noted");
    if !std::path::Path::new("/var/lib/auditrelay").exists() {
        let stdout = check("/var/lib/auditrelay");
        assert!(stdout.contains("systemd creates it") && stdout.contains("StateDirectory=auditrelay"), "{stdout}");
    }
}

/// Issue 18 point 3: mistakes in the global tables, two sources (one a vendor's own key) and two
/// sinks (one a protocol's own value), and a duplicate name across tables.
pub const MANY_MISTAKES: &str = include_str!("../fixtures/many-mistakes.toml");

/// What each of [`MANY_MISTAKES`]' mistakes is reported as after the file's name, in order.
pub const MANY_MISTAKES_REPORTED: [&str; 8] = [
    ":3: queue.max_bytes: invalid size",
    ":9: sources[0].page_size: 500 is out of range",
    ":10: sources[0].lag: invalid duration",
    ":12: sources[1].name: duplicate name \"a\"",
    ":15: sources[1].max_recrods: unknown field `max_recrods`",
    ":20: sinks[0].batch_max_events: must be at least 1",
    ":26: sinks[1].timeout: \"2h\" is longer than",
    ":28: telemetry.listen: invalid address",
];

/// `check` of a file with eight mistakes prints all eight, in the order of the file (the one
/// between two tables at its line), then their count, and fails as for one mistake.
#[test]
fn test_check_reports_every_mistake_of_the_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("many.toml");
    std::fs::write(&config, MANY_MISTAKES).unwrap();
    // Private, as a file with literal secrets should be: no warning lines among the errors.
    let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&config, private).unwrap();
    let out = auditrelay().args(["check", "--log-format", "text", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let file = config.display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), MANY_MISTAKES_REPORTED.len() + 1, "{stderr}");
    for (i, (line, reported)) in lines.iter().zip(MANY_MISTAKES_REPORTED).enumerate() {
        let start = if i == 0 { format!("error: {file}{reported}") } else { format!("{file}{reported}") };
        assert!(line.starts_with(&start), "{line:?} does not start with {start:?}\n{stderr}");
    }
    assert_eq!(lines[8], format!("8 errors in {file}"), "{stderr}");
}

/// Review of issue 18 point 6 (misleads scripts): README says `check --json`'s `errors` carry
/// `line`, `column` and `key` where known; for a duration past its bound both are known (the
/// text form names them) but the JSON error has only `message`.
#[test]
fn test_check_json_error_names_line_and_key_as_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key = \"${AUDITRELAY_TEST_KEY}\"\npoll_interval = \"5M\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    let out =
        auditrelay().args(["check", "--json", "-c"]).arg(&config).env("AUDITRELAY_TEST_KEY", "k").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = &json["errors"][0];
    assert_eq!(error["line"], 7, "{json}");
    assert_eq!(error["key"], "sources[0].poll_interval", "{json}");
}

/// Review of issue 18 point 2 (misleads): the unit says a TOML `*_file` key names a systemd
/// credential as "${CREDENTIALS_DIRECTORY}/NAME"; a syslog sink's client key (a secret) and
/// certificate written so are refused as "cannot read …/${CREDENTIALS_DIRECTORY}/…" even with
/// `--credentials-dir`: only the secret `*_file` keys expand the variable.
#[test]
fn test_credentials_directory_expands_in_tls_file_keys_too() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir(&creds).unwrap();
    for name in ["aitronos", "client.crt", "client.key"] {
        std::fs::write(creds.join(name), "placeholder\n").unwrap();
    }
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key_file = \"${CREDENTIALS_DIRECTORY}/aitronos\"\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\n\
         address = \"127.0.0.1:6514\"\nclient_cert_file = \"${CREDENTIALS_DIRECTORY}/client.crt\"\n\
         client_key_file = \"${CREDENTIALS_DIRECTORY}/client.key\"\n",
    )
    .unwrap();
    let out = auditrelay().args(["check", "--credentials-dir"]).arg(&creds).arg("-c").arg(&config).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
}

/// Review of issue 18 point 3 (misleads): the package installs the configuration root:auditrelay
/// 0640 (postinst), the only layout under which the service user can read it; a literal secret in
/// it draws "chmod 600 the file", advice that, followed, locks the agent (and the reload's check)
/// out of its own configuration.
#[test]
fn test_literal_secret_warning_does_not_advise_a_mode_that_locks_the_service_out() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key = \"ak_literal_in_the_file\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = auditrelay().args(["check", "-c"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("chmod 600"), "{stderr}");
}

/// Review of issue 18 point 3 (misleads): only a secret key's whole value "${NAME}" reads the
/// environment; `organization_id = "${ACME_ORG}"` (or `api_key = "Bearer ${KEY}"`) is taken
/// literally, and `check` says nothing: the bare-dollar warning skips "${", the very form an
/// operator expects to expand.
#[test]
fn test_check_warns_of_an_env_reference_that_is_not_expanded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"${ACME_ORG}\"\n\
         api_key = \"${AUDITRELAY_REVIEW_KEY}\"\n[[sinks]]\nname = \"out\"\ntype = \"file\"\npath = \"o\"\n",
    )
    .unwrap();
    let out = auditrelay()
        .args(["check", "-c"])
        .arg(&config)
        .env("AUDITRELAY_REVIEW_KEY", "k")
        .env("ACME_ORG", "ORG_7F3KQ9ZP2M4XW8RT")
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = all.lines().any(|l| l.contains("organization_id") && (l.contains("WARN") || l.starts_with("error")));
    assert!(said, "organization_id = \"${{ACME_ORG}}\" passes silently as a literal:\n{all}");
}

/// Review of issue 18 (hangs): a certificate, key or secret file path naming a FIFO made
/// `check` (and a reload, which runs the same checks) block forever in open(2). Anything that is
/// not a regular file (after symlinks) is refused before it is opened, naming file:line and key.
#[test]
fn test_check_refuses_a_fifo_as_a_certificate_or_secret_file_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo failed");
    std::os::unix::fs::symlink(&fifo, dir.path().join("link")).unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key_file = \"fifo\"\n[[sinks]]\nname = \"siem\"\ntype = \"syslog\"\naddress = \"127.0.0.1:6514\"\n\
         ca_file = \"link\"\n",
    )
    .unwrap();
    let mut child = auditrelay()
        .args(["check", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`auditrelay check` still running after 20 s: it hangs on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    let file = config.display();
    assert!(stderr.contains(&format!("{file}:6: sources[0].api_key_file")), "{stderr}");
    assert!(stderr.contains(&format!("{file}:11: sinks[0].ca_file")), "{stderr}");
    assert_eq!(stderr.matches("not a regular file").count(), 2, "{stderr}");
}

/// Review of issue 18 (misleads): a literal value in an OTLP sink's `headers` table, in a config
/// file others can read, drew "use \"${NAME}\" or x-api-key_file": no such key exists, a header
/// value is a literal or "${NAME}" only (`sinks/otlp/config.rs`). The advice names what exists.
#[test]
fn test_literal_header_warning_names_only_what_headers_take() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[[sources]]\nname = \"acme\"\nvendor = \"aitronos\"\norganization_id = \"ORG_X\"\n\
         api_key = \"${AUDITRELAY_REVIEW_KEY}\"\n[[sinks]]\nname = \"otel\"\ntype = \"otlp\"\n\
         endpoint = \"http://127.0.0.1:4318\"\nheaders = { \"x-api-key\" = \"literal-header-value\" }\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = auditrelay().args(["check", "-c"]).arg(&config).env("AUDITRELAY_REVIEW_KEY", "k").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr.lines().find(|l| l.contains("literal secret") && l.contains("sinks[0].headers.x-api-key"));
    let warning = warning.unwrap_or_else(|| panic!("no literal-secret warning for the header:\n{stderr}"));
    assert!(!warning.contains("_file"), "advises a key that does not exist: {warning}");
    assert!(warning.contains("\"${NAME}\""), "{warning}");
    assert!(!stderr.contains("literal-header-value"), "{stderr}");
}

/// Review 18b (misleads): `check` promises every mistake of the file, in file order. A
/// duplicated sink name (line 21) is listed after a `[telemetry]` mistake (line 24), and a
/// duplicated source name is not listed at all while the first of the two has an unknown
/// vendor: the operator fixes the vendor and is refused again for a mistake that was there.
#[test]
fn test_check_lists_every_mistake_in_file_order_duplicates_included() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n\
         [[sources]]\nname = \"a\"\nvendor = \"nope\"\n\
         [[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"o\"\napi_key = \"k\"\n\
         [[sinks]]\nname = \"s\"\ntype = \"file\"\npath = \"one.ndjson\"\n\
         [[sinks]]\nname = \"s\"\ntype = \"file\"\npath = \"two.ndjson\"\n\
         [telemetry]\nlisten = \"nonsense\"\n",
    )
    .unwrap();
    let out = auditrelay().args(["check", "--log-format", "text", "-c"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<u32> = err
        .lines()
        .filter(|l| !l.contains(" WARN "))
        .filter_map(|l| l.split("auditrelay.toml:").nth(1)?.split(':').next()?.parse().ok())
        .collect();
    assert!(err.contains("duplicate name \"a\""), "the duplicated source name is missing:\n{err}");
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "not in file order:\n{err}");
}

/// `auditrelay elasticsearch template` prints the index template (valid JSON, the dataset's
/// pattern, OpenSearch's types with --opensearch), refuses a dataset Elastic would refuse; and
/// `check --connect` names the flavour and version a cluster on loopback answers `GET /` with,
/// and fails with the install command while the template is missing.
#[test]
fn test_elasticsearch_template_and_check_connect() {
    let out = auditrelay().args(["elasticsearch", "template", "--dataset", "auditrelay.{vendor}"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["index_patterns"], serde_json::json!(["logs-auditrelay.*-*"]));
    assert_eq!(t["template"]["mappings"]["properties"]["ocsf"]["properties"]["unmapped"]["type"], "flattened");
    let out = auditrelay().args(["elasticsearch", "template", "--opensearch"]).output().unwrap();
    let t: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["template"]["mappings"]["properties"]["ocsf"]["properties"]["unmapped"]["type"], "flat_object");
    let out = auditrelay().args(["elasticsearch", "template", "--dataset", "Bad-Name"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dataset"));

    // A cluster: GET / answers as OpenSearch 2.17.0, the template is installed only after the
    // first check.
    let (rt, _sim, source) = harness::sinks::simulated_source();
    let installed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&installed);
    // As `GET _index_template/<name>` lists it: the template the command prints for OpenSearch.
    let listed = serde_json::json!({"index_templates": [{"name": "auditrelay-ocsf", "index_template": t}]}).to_string();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                r#"{"version":{"distribution":"opensearch","number":"2.17.0"},"tagline":"The OpenSearch Project"}"#
            }),
        )
        .route(
            "/_index_template/auditrelay-ocsf",
            axum::routing::get(move || {
                let ok = seen.load(std::sync::atomic::Ordering::SeqCst);
                let listed = listed.clone();
                async move {
                    if ok {
                        (axum::http::StatusCode::OK, listed)
                    } else {
                        (axum::http::StatusCode::NOT_FOUND, "{}".to_owned())
                    }
                }
            }),
        );
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    let sink = format!(
        "[[sinks]]\nname = \"elastic\"\ntype = \"elasticsearch\"\nhosts = [\"http://{addr}\"]\nusername = \"u\"\npassword = \"es-pass-0123\"\n"
    );
    std::fs::write(&config, format!("state_dir = \"state\"\n{source}\n{sink}")).unwrap();
    let check = || {
        let out = auditrelay().args(["check", "--connect", "-c"]).arg(&config).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("es-pass-0123"), "{text}");
        (out.status.code(), text)
    };
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("OpenSearch 2.17.0") && text.contains("auditrelay elasticsearch template --opensearch"),
        "{text}"
    );
    installed.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("index template auditrelay-ocsf present"), "{text}");
}
