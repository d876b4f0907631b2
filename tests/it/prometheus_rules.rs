//! The shipped alert rules (`packaging/prometheus/`) and dashboard (`packaging/grafana/`) against
//! the real agent: the binary runs against the simulator with a file sink and a HEC sink (indexer
//! acks on), `/metrics` is scraped once, and then, with Debian's `promtool`:
//! - `promtool check rules` accepts the rules file;
//! - `promtool check metrics` finds nothing to lint in the scrape;
//! - every metric name of every alert expression, every dashboard `expr` and every input series
//!   of the rules' unit tests is in the scrape (a rule naming a metric the agent does not expose
//!   fails here, not silently in production);
//! - `promtool test rules` shows each alert firing when it should and not otherwise.
//!
//! `promtool` missing fails the test: it is never skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use auditrelay::clock::Clock;
use auditrelay::sim::{RateLimitSetting, SimOptions};

use crate::harness;
use crate::harness::agent::{Agent, sample};
use crate::hec_emulator::{HecEmulator, HecOptions};

const RULES: &str = "packaging/prometheus/auditrelay.rules.yml";
const RULE_TESTS: &str = "packaging/prometheus/auditrelay.rules.test.yml";
const DASHBOARD: &str = "packaging/grafana/auditrelay-dashboard.json";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs `promtool args` (stdin from `input`), returning its exit success and its output.
fn promtool(args: &[&str], input: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut cmd = Command::new("promtool");
    cmd.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    cmd.stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("promtool cannot be run ({e}): install Debian's prometheus package (scripts/test.sh does)"),
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.unwrap_or_default().as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The metric names a PromQL expression reads: identifiers outside label matchers (`{…}`),
/// range selectors (`[…]`), strings and the label lists of `by`, `without`, `on`, `ignoring`,
/// `group_left` and `group_right`, that are neither keywords nor functions (followed by `(`)
/// nor numbers, durations or Grafana variables (`$…`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 10] = ["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "start", "end"];
    const LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut braces, mut brackets, mut i) = (0i32, 0i32, 0usize);
    // 0: not in a label list; 1: a list keyword was read, its `(` comes next; 2: inside.
    let mut list = 0u8;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' if list == 1 => list = 2,
            ')' if list == 2 => list = 0,
            '$' => {
                while i + 1 < chars.len() && (word(chars[i + 1]) || "{}".contains(chars[i + 1])) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i + 1 < chars.len() && (word(chars[i + 1]) || chars[i + 1] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i + 1 < chars.len() && word(chars[i + 1]) {
                    i += 1;
                }
                let name: String = chars[start..=i].iter().collect();
                let next = chars[i + 1..].iter().find(|c| !c.is_whitespace()).copied();
                let next_word: String =
                    chars[i + 1..].iter().skip_while(|c| c.is_whitespace()).take_while(|c| word(**c)).collect();
                if braces > 0 || brackets > 0 || list == 2 {
                } else if LISTS.contains(&name.as_str()) {
                    if next == Some('(') {
                        list = 1;
                    }
                } else if !KEYWORDS.contains(&name.to_lowercase().as_str())
                    && next != Some('(')
                    // An aggregation with its label list first: `max without (l) (…)`.
                    && next_word != "by"
                    && next_word != "without"
                {
                    names.insert(name);
                }
            }
            _ => {}
        }
        i += 1;
    }
    names
}

/// Every `expr:` of a rules file, block (`expr: |` and the lines indented under it) or inline.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else { continue };
        let indent = line.len() - line.trim_start().len();
        let rest = rest.trim();
        if rest == "|" || rest == ">" {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(rest.trim_matches(['\'', '"']).to_owned());
        }
    }
    exprs
}

/// Every `expr` string anywhere in a dashboard's JSON.
fn dashboard_exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The names of a scrape's samples (`_bucket`, `_sum` and `_count` for histograms).
fn scraped_names(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_owned())
        .collect()
}

/// `(where, names not in the scrape)` for each expression naming something the agent lacks.
fn unknown_names(exprs: &[(String, String)], scraped: &BTreeSet<String>) -> Vec<(String, BTreeSet<String>)> {
    exprs
        .iter()
        .filter_map(|(at, expr)| {
            let missing: BTreeSet<String> = metric_names(expr).into_iter().filter(|n| !scraped.contains(n)).collect();
            (!missing.is_empty()).then(|| (at.clone(), missing))
        })
        .collect()
}

#[test]
fn test_metric_names_reads_only_metric_names_out_of_promql() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<String>>();
    assert_eq!(
        names(r#"max without (state) (a_state{state=~"x|y",b="c}"}) == 1 and ignoring (state) b_total[5m] offset 1h"#),
        ["a_state", "b_total"]
    );
    assert_eq!(
        names(r#"histogram_quantile(0.95, sum by (source, le) (rate(c_bucket{i=~"$instance"}[$__rate_interval])))"#),
        ["c_bucket"]
    );
    assert_eq!(names("d / on (job) group_left e > 0.8 unless f"), ["d", "e", "f"]);
    assert_eq!(names("increase(g_total[30m]) == 0 or vector(1)"), ["g_total"]);
    // A rule naming a metric the agent does not expose is reported.
    let scraped = BTreeSet::from(["d".to_owned()]);
    let found = unknown_names(&[("rule X".into(), "d > 1 or auditrelay_made_up".into())], &scraped);
    assert_eq!(found, [("rule X".to_owned(), BTreeSet::from(["auditrelay_made_up".to_owned()]))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rules_and_dashboard_parse_and_name_only_what_the_agent_exposes() {
    // Before anything else: without promtool this test must fail, loudly.
    let (ok, version) = promtool(&["--version"], None);
    assert!(ok, "promtool --version failed: {version}\ninstall Debian's prometheus package (scripts/test.sh does)");

    let mut opts = SimOptions::default();
    opts.aitronos.records = 60;
    opts.faults.rate_limit = RateLimitSetting::Off;
    let sim = harness::start_sim(opts, &Clock::system()).await;
    let hec = HecEmulator::start(HecOptions { use_ack: true, ..HecOptions::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("auditrelay.toml");
    let text = format!(
        "{}\n[[sinks]]\nname = \"siem\"\ntype = \"hec\"\nurl = {:?}\ntoken = {:?}\nindexer_ack = true\n\
         ack_poll_interval = \"100ms\"\n\n[telemetry]\nlisten = \"127.0.0.1:0\"\n",
        harness::config_text(&sim, dir.path(), ""),
        hec.url(),
        HecOptions::default().token,
    );
    std::fs::write(&config, text).unwrap();
    let env = [("TEST_AITRONOS_KEY", sim.aitronos_api_key())];
    let mut agent = Agent::spawn(&["run"], &config, &dir.path().join("agent.log"), &env);

    // Everything collected and delivered, and the source's first sweep ended (its lag is the
    // one family that waits for it): then the one scrape every check below reads.
    agent.until("the HEC sink delivers every record", Duration::from_secs(60), |_| hec.indexed_count() >= 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let source = r#"{source="aitronos-test",vendor="aitronos"}"#;
    loop {
        let metrics = agent.metrics().await;
        let swept = sample(&metrics, &format!("auditrelay_source_lag_seconds{source}")).is_some();
        // The HEC sink's delivery counts once its indexer ack is seen, after the indexing.
        let delivered = sample(&metrics, r#"auditrelay_sink_events_total{sink="file",type="file"}"#) == Some(60.0)
            && sample(&metrics, r#"auditrelay_sink_events_total{sink="siem",type="hec"}"#) == Some(60.0);
        if swept && delivered {
            break;
        }
        assert!(Instant::now() < deadline, "no first sweep within 60 s:\n{metrics}\n{}", agent.tail());
        // The observer's polling interval, not a wait for the condition.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = agent.metrics().await;
    let status = agent.terminate(Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status}:\n{}", agent.tail());
    sim.shutdown().await;

    // The new families, measured by the real binary.
    let siem = r#"{sink="siem",type="hec"}"#;
    let value = |series: String| sample(&metrics, &series).unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    assert!(value(format!("auditrelay_source_request_duration_seconds_count{source}")) >= 1.0);
    assert!(value(format!("auditrelay_sink_send_duration_seconds_count{siem}")) >= 1.0);
    assert!(value(format!("auditrelay_sink_hec_ack_wait_seconds_count{siem}")) >= 1.0);
    assert!(value(format!("auditrelay_sink_sent_bytes_total{siem}")) > 0.0);
    assert_eq!(value(format!("auditrelay_sink_oldest_event_age_seconds{siem}")), 0.0, "caught up");
    assert_eq!(value(r#"auditrelay_sink_state{sink="siem",type="hec",state="idle"}"#.into()), 1.0);
    assert!(value("process_resident_memory_bytes".into()) > 0.0);
    assert!(value("process_open_fds".into()) > 0.0);

    // promtool: the rules parse, the scrape lints clean.
    let rules = repo(RULES);
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    assert!(ok, "promtool check rules {RULES}:\n{out}");
    let (ok, out) = promtool(&["check", "metrics"], Some(&metrics));
    assert!(ok && out.trim().is_empty(), "promtool check metrics on the scrape:\n{out}\n---\n{metrics}");

    // Every name every expression reads is in the scrape.
    let scraped = scraped_names(&metrics);
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let alerts = rules_text.lines().filter(|l| l.trim_start().starts_with("- alert:")).count();
    let mut exprs: Vec<(String, String)> =
        rule_exprs(&rules_text).into_iter().enumerate().map(|(i, e)| (format!("{RULES} expr {}", i + 1), e)).collect();
    assert_eq!(exprs.len(), alerts, "one expr per alert read from {RULES}: {exprs:?}");
    assert!(out_of_promtool_count(&rules) == alerts, "promtool and this test count the same rules");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    let mut panels = Vec::new();
    dashboard_exprs(&dashboard, &mut panels);
    assert!(panels.len() >= 15, "{DASHBOARD}: {} exprs", panels.len());
    exprs.extend(panels.into_iter().map(|e| (DASHBOARD.to_owned(), e)));
    let tests_text = std::fs::read_to_string(repo(RULE_TESTS)).unwrap();
    let series: Vec<(String, String)> = tests_text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- series:"))
        .map(|s| (RULE_TESTS.to_owned(), s.trim().trim_matches(['\'', '"']).to_owned()))
        .collect();
    assert!(series.len() >= 10, "{RULE_TESTS}: {series:?}");
    exprs.extend(series);
    let unknown = unknown_names(&exprs, &scraped);
    assert!(unknown.is_empty(), "names the agent does not expose: {unknown:?}\nthe scrape has: {scraped:?}");
    let read: BTreeSet<String> = exprs.iter().flat_map(|(_, e)| metric_names(e)).collect();
    for wanted in ["auditrelay_sink_oldest_event_age_seconds", "auditrelay_sink_state", "process_resident_memory_bytes"]
    {
        assert!(read.contains(wanted), "nothing reads {wanted}");
    }

    // The rules' unit tests: each alert fires when it should, and not otherwise.
    let (ok, out) = promtool(&["test", "rules", repo(RULE_TESTS).to_str().unwrap()], None);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{out}");
    let tested: BTreeSet<&str> = tests_text.lines().filter_map(|l| l.trim().strip_prefix("alertname: ")).collect();
    let defined: BTreeSet<&str> = rules_text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(tested, defined, "every alert has its unit test");
}

/// How many rules `promtool check rules` found ("SUCCESS: N rules found").
fn out_of_promtool_count(rules: &Path) -> usize {
    let (_, out) = promtool(&["check", "rules", rules.to_str().unwrap()], None);
    out.split("SUCCESS: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in promtool's output: {out}"))
}
