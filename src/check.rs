//! `auditrelay check`: load a configuration file as the daemon would (refusing what it would
//! refuse), say what it resolved to, and with `--connect` reach every source and sink.
//!
//! Output contract. Text: without `--connect`, the resolved configuration (secrets shown as
//! `[redacted]`), then `# configuration OK: …` and `# note:` lines. With `--connect`, the table
//! of one row per source and sink comes first (what an operator at 3 a.m. looks for), then the
//! OK line and notes; the resolved configuration only with `--show-config`. `--json`: one JSON
//! object on stdout (keys documented in README "Checking a configuration"), also when the file
//! is refused (`"ok": false` and its `errors`), so that scripts never parse prose.
//! Both forms end with the proxy set-up ([`proxy_report`]): the proxy variables found
//! (credentials redacted) and, per source and sink, whether it goes through a proxy, direct, or
//! never uses one (syslog, OTLP/gRPC, a file).
//! Exit status: 0 everything held, 1 the file was refused or a probe failed.
//!
//! Must not: start sources or sinks for real, send an event, or write to the state database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::Config;

/// What `auditrelay check` was asked.
#[derive(Debug, Clone)]
pub struct CheckArgs {
    pub config: PathBuf,
    pub connect: bool,
    pub show_config: bool,
    pub json: bool,
}

/// One row of the `--connect` table.
#[derive(Debug, Clone)]
pub struct ConnectRow {
    /// `"source"` or `"sink"`.
    pub kind: &'static str,
    pub name: String,
    /// What was proven, or why it failed.
    pub outcome: Result<String, String>,
}

/// Runs `check`. A refused file is an error (exit 1 through `main`), after its JSON form when
/// `--json` was asked.
pub async fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    // With --json the load's warnings go into the object (`warnings`), not only to stderr.
    let (loaded, warnings) = if args.json {
        let (loaded, warnings) = capture_warnings(|| Config::load(&args.config));
        (loaded, warnings)
    } else {
        (Config::load(&args.config), Vec::new())
    };
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            if args.json {
                let mut report = refused_json(&args.config, &e);
                report["warnings"] = Value::Array(warnings);
                println!("{report}");
            }
            return Err(e.into());
        }
    };
    let mut notes = Vec::new();
    if let Some(note) = state_dir_note(&config.state_dir) {
        notes.push(format!("note: {note}"));
    }
    // Removed or renamed sinks against the queue's cursors (read-only; beside a running agent).
    match crate::ops::sink_changes(&config) {
        Ok(found) => notes.extend(found),
        Err(e) => notes
            .push(format!("note: cannot read the state database, so removed sinks' backlogs are not checked: {e:#}")),
    }
    let rows = if args.connect { connect(&config).await } else { Vec::new() };
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    let proxies = proxy_report(&config);
    if args.json {
        let mut report = report_json(&config, &args, &notes, &rows);
        report["warnings"] = Value::Array(warnings);
        report["proxy"] = proxy_json(&proxies);
        println!("{report}");
    } else {
        print!("{}{}", report_text(&config, &args, &notes, &rows), proxy_text(&proxies));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Reaches every source (its credential, with the cheapest request) and every sink, in
/// configuration order.
async fn connect(config: &Config) -> Vec<ConnectRow> {
    let clock = Clock::system();
    let mut rows = Vec::new();
    for source in &config.sources {
        let outcome = match crate::sources::http_client(source) {
            Ok(http) => crate::sources::probe(source, &http, &clock).await,
            Err(e) => Err(e),
        };
        rows.push(ConnectRow { kind: "source", name: source.name.clone(), outcome });
    }
    for probe in crate::sinks::probe_all(config).await {
        rows.push(ConnectRow { kind: "sink", name: probe.sink, outcome: probe.outcome });
    }
    rows
}

fn ok_line(config: &Config) -> String {
    format!(
        "# configuration OK: {} source(s), {} sink(s)\n{}",
        config.sources.len(),
        config.sinks.len(),
        definitions_line(config)
    )
}

/// The vendor definitions the configuration found (none: nothing, as before issue 20).
fn definitions_line(config: &Config) -> String {
    let defs = config.vendors.all();
    if defs.is_empty() {
        return String::new();
    }
    let list: Vec<String> = defs.iter().map(|d| format!("{} ({})", d.name, d.path.display())).collect();
    format!("# vendor definitions in {}: {}\n", config.vendors_dir.display(), list.join(", "))
}

/// The text report: see the module doc for what comes in which order.
pub fn report_text(config: &Config, args: &CheckArgs, notes: &[String], rows: &[ConnectRow]) -> String {
    let notes_text: String = notes.iter().map(|n| format!("# {n}\n")).collect();
    if !args.connect {
        return format!("{}{}{notes_text}", config.render_redacted(), ok_line(config));
    }
    let mut out = table(rows);
    out.push('\n');
    out.push_str(&ok_line(config));
    out.push_str(&notes_text);
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    if failed > 0 {
        out.push_str(&format!("# {failed} of {} checks FAILED\n", rows.len()));
    }
    if args.show_config {
        out.push('\n');
        out.push_str(&config.render_redacted());
    }
    out
}

/// The text form of the proxy set-up, for the end of `check`'s output.
pub fn proxy_text(report: &ProxyReport) -> String {
    let mut out = String::new();
    if report.variables.is_empty() {
        out.push_str("# proxy: no HTTPS_PROXY, HTTP_PROXY, ALL_PROXY or NO_PROXY set: every connection is direct\n");
    } else {
        let vars: Vec<String> = report.variables.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("# proxy: {}\n", vars.join(" ")));
    }
    for c in &report.connections {
        out.push_str(&format!("# proxy: {} {} ({}): {}\n", c.kind, c.name, c.target, c.route));
    }
    out.push_str(&format!("# proxy: {SYSTEMD_NOTE}\n"));
    out
}

/// Where the agent's proxy variables come from when systemd runs it.
const SYSTEMD_NOTE: &str = "this is the environment of this command; the service reads its own from the unit, not \
     your shell: `systemctl edit auditrelay`, then [Service] Environment=HTTPS_PROXY=http://proxy:3128 \
     Environment=NO_PROXY=localhost,127.0.0.1";

/// The proxy variables and each connection's way out (module docs).
#[derive(Debug, Clone)]
pub struct ProxyReport {
    /// `(name, value)`, credentials redacted (`http::proxy_variables`).
    pub variables: Vec<(&'static str, String)>,
    pub connections: Vec<ProxyRoute>,
}

/// One source's or sink's way out.
#[derive(Debug, Clone)]
pub struct ProxyRoute {
    /// `"source"` or `"sink"`.
    pub kind: &'static str,
    pub name: String,
    /// Its URL (redacted) or address.
    pub target: String,
    /// `"proxy"`, `"direct"` or `"never"`.
    pub way: &'static str,
    /// The proxy (redacted) or why not.
    pub route: String,
}

/// Which way each source and sink of `config` leaves this host under this process's
/// environment, asked of the matcher reqwest uses (`http::route`).
pub fn proxy_report(config: &Config) -> ProxyReport {
    use crate::http::Route;
    use crate::sinks::SinkKind;
    let http = |kind, name: &str, url: &url::Url| {
        let route = crate::http::route(url);
        let way = match route {
            Route::Proxy { .. } => "proxy",
            Route::NoProxy | Route::Direct => "direct",
            Route::Unusable { .. } => "unusable",
        };
        ProxyRoute { kind, name: name.to_owned(), target: crate::redact::url(url), way, route: route.to_string() }
    };
    let never = |name: &str, target: String, why: &str| ProxyRoute {
        kind: "sink",
        name: name.to_owned(),
        target,
        way: "never",
        route: why.to_owned(),
    };
    let mut connections: Vec<ProxyRoute> =
        config.sources.iter().map(|s| http("source", &s.name, &s.base_url)).collect();
    for sink in &config.sinks {
        let one = match &sink.kind {
            // One row per node: NO_PROXY may name some of them.
            SinkKind::Elasticsearch(e) => {
                connections.extend(e.hosts.iter().map(|h| http("sink", &sink.name, h)));
                continue;
            }
            SinkKind::Hec(h) => http("sink", &sink.name, &h.url),
            SinkKind::Otlp(o) if o.protocol == crate::sinks::otlp::OtlpProtocol::Grpc => {
                let mut why = String::from("direct always: OTLP/gRPC does not use the proxy variables");
                if matches!(crate::http::route(&o.endpoint), Route::Proxy { .. }) {
                    why.push_str(" (they name a proxy for this endpoint: set protocol = \"http_protobuf\" to use it)");
                }
                never(&sink.name, crate::redact::url(&o.endpoint), &why)
            }
            SinkKind::Otlp(o) => http("sink", &sink.name, &o.endpoint),
            SinkKind::Syslog(s) => {
                never(&sink.name, format!("{}:{}", s.host, s.port), "direct always: syslog is not HTTP")
            }
            SinkKind::File(f) => never(&sink.name, f.path.display().to_string(), "a local file, no connection"),
        };
        connections.push(one);
    }
    // reqwest checks an https:// proxy's certificate with the client's own trust: a sink's
    // `ca_file` replaces the system's roots for the proxy too.
    for sink in &config.sinks {
        let has_ca_file = match &sink.kind {
            SinkKind::Hec(h) => h.ca_file.is_some(),
            SinkKind::Elasticsearch(e) => e.ca_file.is_some(),
            SinkKind::Otlp(o) => o.ca_file.is_some(),
            _ => false,
        };
        for row in connections.iter_mut().filter(|r| r.kind == "sink" && r.name == sink.name) {
            if has_ca_file && row.way == "proxy" && row.route.starts_with("through proxy https://") {
                row.route.push_str(
                    "; an https:// proxy is verified against this sink's ca_file too: put the proxy's CA in that \
                     file as well (one PEM bundle)",
                );
            }
        }
    }
    ProxyReport { variables: crate::http::proxy_variables(), connections }
}

/// The JSON form of [`proxy_report`] (`check --json`'s `proxy`).
pub fn proxy_json(report: &ProxyReport) -> Value {
    let variables: serde_json::Map<String, Value> =
        report.variables.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect();
    let connections: Vec<Value> = report
        .connections
        .iter()
        .map(|c| json!({"kind": c.kind, "name": c.name, "target": c.target, "way": c.way, "detail": c.route}))
        .collect();
    json!({"variables": variables, "connections": connections, "systemd": SYSTEMD_NOTE})
}

/// `KIND NAME RESULT DETAIL`, aligned.
fn table(rows: &[ConnectRow]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:<6}  {:<width$}  {:<6}  DETAIL\n", "KIND", "NAME", "RESULT");
    for row in rows {
        let (result, detail) = match &row.outcome {
            Ok(what) => ("ok", what.as_str()),
            Err(why) => ("FAILED", why.as_str()),
        };
        out.push_str(&format!("{:<6}  {:<width$}  {result:<6}  {detail}\n", row.kind, row.name));
    }
    out
}

/// `check --json` for a loaded file.
pub fn report_json(config: &Config, args: &CheckArgs, notes: &[String], rows: &[ConnectRow]) -> Value {
    let failed = rows.iter().filter(|r| r.outcome.is_err()).count();
    let sources: Vec<Value> =
        config.sources.iter().map(|s| json!({"name": s.name, "vendor": s.vendor.vendor_name()})).collect();
    let sinks: Vec<Value> = config.sinks.iter().map(|s| json!({"name": s.name, "type": s.kind.type_name()})).collect();
    let mut report = json!({
        "config": config.origin.display().to_string(),
        "ok": failed == 0,
        "errors": [],
        "sources": sources,
        "sinks": sinks,
        "notes": notes,
    });
    if !config.vendors.all().is_empty() {
        report["vendor_definitions"] = config
            .vendors
            .all()
            .iter()
            .map(|d| json!({"name": d.name, "file": d.path.display().to_string()}))
            .collect();
    }
    if args.connect {
        report["connect"] = rows
            .iter()
            .map(|r| {
                let (ok, detail) = match &r.outcome {
                    Ok(what) => (true, what),
                    Err(why) => (false, why),
                };
                json!({"kind": r.kind, "name": r.name, "ok": ok, "detail": detail})
            })
            .collect();
    }
    if args.show_config || !args.connect {
        report["resolved"] = Value::String(config.render_redacted());
    }
    report
}

/// `check --json` for a refused file: `"ok": false` and the error(s), each with its `line`,
/// `column` and `key` where known.
fn refused_json(path: &Path, e: &crate::config::ConfigError) -> Value {
    if !e.problems().is_empty() {
        let errors: Vec<Value> = e
            .problems()
            .iter()
            .map(|p| json!({"line": p.line, "column": p.column, "key": p.key, "message": p.message}))
            .collect();
        return json!({"config": path.display().to_string(), "ok": false, "errors": errors});
    }
    refused_json_text(path, e)
}

/// The loading's WARN lines, while `load` runs on this thread, as JSON objects (`message`,
/// and `at`, `path` or `key` where the warning names one); they are not printed.
fn capture_warnings<T>(load: impl FnOnce() -> T) -> (T, Vec<Value>) {
    let (out, text) = crate::logging::capture_warnings(true, load);
    let warnings = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|v| v["level"] == "WARN")
        .map(|mut v| {
            if let Some(fields) = v.as_object_mut() {
                for noise in ["timestamp", "level", "target", "threadName", "threadId"] {
                    fields.remove(noise);
                }
            }
            v
        })
        .collect();
    (out, warnings)
}

fn refused_json_text(path: &Path, e: &(dyn std::error::Error + 'static)) -> Value {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    json!({
        "config": path.display().to_string(),
        "ok": false,
        "errors": [{"message": message}],
    })
}

/// What `check` says of a `state_dir` that does not exist yet: who will create it, and as whom.
pub fn state_dir_note(dir: &Path) -> Option<String> {
    if std::fs::symlink_metadata(dir).is_ok() {
        return None;
    }
    let me = match (std::env::var("USER"), current_uid()) {
        (Ok(name), Some(uid)) if !name.is_empty() => format!("{name}, uid {uid}"),
        (_, Some(uid)) => format!("uid {uid}"),
        (Ok(name), None) => name,
        (Err(_), None) => "this user".to_owned(),
    };
    let d = dir.display();
    Some(if dir == Path::new("/var/lib/auditrelay") {
        format!(
            "state_dir {d} does not exist yet: under the packaged unit systemd creates it when the service starts \
             (StateDirectory=auditrelay: owner auditrelay, mode 0750); `auditrelay run` started by hand creates it, \
             owned by the user running it (here: {me})"
        )
    } else {
        format!(
            "state_dir {d} does not exist yet: `auditrelay run` creates it when it starts, owned by the user running it \
             (here: {me}); under the packaged unit (User=auditrelay, ProtectSystem=strict) only /var/lib/auditrelay \
             is created and writable: create {d} for auditrelay and add it to ReadWritePaths="
        )
    })
}

/// This process's user id (the owner of `/proc/self`).
fn current_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    None
}
