//! The configuration's tests: every default, every mistake named by file, line and key.

use super::raw::{RawSink, RawSource};
use super::validate::Section;
use super::*;
use crate::ocsf::event::Severity;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
use crate::ocsf::summary::EventField;
use crate::sinks::hec::HecAcks;
use crate::sinks::otlp::{OtlpBody, OtlpProtocol};
use crate::sinks::syslog::{Oversize, SyslogFormat, SyslogFraming, SyslogSinkSettings, SyslogTransport};
use crate::vendors::aitronos::AitronosCredential;
use crate::vendors::configcat::ConfigCatApi;
use secrecy::ExposeSecret as _;

const SECRET: &str = "ak_SuperSecretValue0123456789abcdefghijklmn";
const FILE: &str = "/etc/auditrelay/auditrelay.toml";
const SINK: &str = "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"out.ndjson\"\n";

fn env(name: &str) -> Option<String> {
    [
        "AITRONOS_API_KEY",
        "ASTRONOMER_TOKEN",
        "CONFIGCAT_USERNAME",
        "CONFIGCAT_PASSWORD",
        "DATAFOLD_API_KEY",
        "SPLUNK_HEC_TOKEN",
    ]
    .contains(&name)
    .then(|| SECRET.to_owned())
}

fn parse_at(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    Config::parse_with_env(text, origin, &env)
}

/// A config with one aitronos source whose body is `source` (after name and vendor).
fn with_source(source: &str) -> String {
    format!("state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n{source}\n{SINK}")
}

const MINIMAL: &str = "organization_id = \"ORG_A\"\napi_key = \"${AITRONOS_API_KEY}\"";

/// Parsing `text` fails with a message containing every `expected` piece and no secret.
fn check_err(text: &str, expected: &[&str]) {
    let e = parse_at(text, Path::new(FILE)).expect_err("config must be rejected").to_string();
    for piece in expected {
        assert!(e.contains(piece), "{e:?} lacks {piece:?}");
    }
    assert!(!e.contains(SECRET), "{e:?} leaks the secret");
    assert!(!e.contains('\n'), "{e:?} is not one line");
}

/// The common keys the split keeps apart from a vendor's or sink's are exactly the fields
/// of the raw structs (serde names them when it meets an unknown one).
#[test]
fn split_common_keys_are_the_raw_structs_fields() {
    fn fields<T: serde::de::DeserializeOwned>() -> Vec<String> {
        let Err(e) = toml::from_str::<T>("zz_unknown = 1") else { panic!("accepted") };
        let msg = e.message().to_owned();
        let list = msg.split("expected one of").nth(1).unwrap_or_else(|| panic!("{msg}"));
        list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
    }
    for (section, raw) in [(Section::Sources, fields::<RawSource>()), (Section::Sinks, fields::<RawSink>())] {
        let common: Vec<String> =
            section.common_keys().iter().filter(|k| **k != section.tag()).map(|k| (*k).to_owned()).collect();
        assert_eq!(common, raw, "{section:?}");
    }
}

#[test]
fn example_config_parses_and_validates() {
    let text = include_str!("../../config/auditrelay.example.toml");
    let c = parse_at(text, Path::new("/etc/auditrelay/auditrelay.toml")).expect("example is valid");
    assert_eq!(c.state_dir, Path::new("/var/lib/auditrelay"));
    assert_eq!(c.queue.max_bytes, 1 << 30);
    assert_eq!(c.telemetry.listen, Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9464))));
    let s = &c.sources[0];
    assert_eq!((s.name.as_str(), s.vendor.vendor_name()), ("aitronos-acme", "aitronos"));
    assert_eq!(s.vendor.organization_id(), "ORG_7F3KQ9ZP2M4XW8RT");
    let VendorSettings::Aitronos(a) = &s.vendor else { panic!("not aitronos") };
    assert!(matches!(&a.credential, AitronosCredential::ApiKey(k) if k.expose_secret() == SECRET));
    assert_eq!(s.start, StartAt::Ago(Duration::from_secs(7 * 86_400)));
    assert_eq!(s.backoff, Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(300) });
    let vendors: Vec<_> = c.sources.iter().map(|s| s.vendor.vendor_name()).collect();
    assert_eq!(vendors, ["aitronos", "astronomer", "configcat", "datafold"]);
    let SinkKind::File(f) = &c.sinks[0].kind else { panic!("not a file sink") };
    assert_eq!(f.path, Path::new("/var/lib/auditrelay/events.ndjson"));
    assert_eq!((c.sinks[0].batch_max_events, c.sinks[0].batch_max_bytes), (500, 1 << 20));
    let SinkKind::Syslog(sl) = &c.sinks[1].kind else { panic!("not a syslog sink") };
    assert_eq!((sl.host.as_str(), sl.port, sl.facility), ("siem.example.com", 6514, 10));
    let SyslogTransport::Tls(tls) = &sl.transport else { panic!("not tls") };
    assert_eq!(tls.ca_file, None, "commented out: check refuses a CA file it cannot read");
    assert_eq!((tls.server_name.as_str(), tls.client_auth.is_none()), ("siem.example.com", true));
    assert_eq!(
        (sl.sd_id.as_deref(), sl.max_message_size, sl.oversize),
        (Some("ocsf@32473"), 65_536, Oversize::DeadLetter)
    );
    let SinkKind::Hec(h) = &c.sinks[2].kind else { panic!("not a hec sink") };
    assert_eq!((h.url.as_str(), h.index.as_deref(), h.acks), ("https://splunk.example.com:8088/", Some("audit"), None));
    let SinkKind::Otlp(o) = &c.sinks[3].kind else { panic!("not an otlp sink") };
    assert_eq!(
        (o.endpoint.as_str(), o.protocol),
        ("https://otel.example.com:4318/v1/logs", OtlpProtocol::HttpProtobuf)
    );
}

fn syslog_sink(body: &str) -> String {
    with_source(MINIMAL).replace(SINK, &format!("[[sinks]]\nname = \"s\"\ntype = \"syslog\"\n{body}\n"))
}

fn syslog_settings(body: &str) -> SyslogSinkSettings {
    let c = parse_at(&syslog_sink(body), Path::new(FILE)).expect("valid");
    let SinkKind::Syslog(sl) = &c.sinks[0].kind else { panic!("not a syslog sink") };
    sl.clone()
}

#[test]
fn syslog_sinks_get_defaults_per_transport() {
    let tls = syslog_settings("address = \"siem.example.com\"");
    assert_eq!((tls.port, tls.framing, tls.format), (6514, SyslogFraming::OctetCounting, SyslogFormat::Rfc5424));
    assert_eq!((tls.facility, tls.app_name.as_str(), tls.hostname.as_ref()), (10, "auditrelay", None));
    assert_eq!((tls.max_message_size, tls.oversize, tls.timeout), (65_536, Oversize::DeadLetter, 30 * SECOND));
    let SyslogTransport::Tls(t) = &tls.transport else { panic!("not tls") };
    assert_eq!((t.server_name.as_str(), t.ca_file.is_none()), ("siem.example.com", true));
    let udp = syslog_settings("address = \"10.0.0.1\"\ntransport = \"udp\"\nfacility = 16");
    assert_eq!((udp.port, udp.max_message_size, udp.facility), (514, 8192, 16));
    let v6 = syslog_settings("address = \"[::1]:1514\"\ntransport = \"tcp\"\nframing = \"lf\"\nfacility = \"local7\"");
    assert_eq!((v6.host.as_str(), v6.port, v6.framing, v6.facility), ("::1", 1514, SyslogFraming::Lf, 23));
    let mtls = syslog_settings(
        "address = \"127.0.0.1:6514\"\nserver_name = \"localhost\"\nca_file = \"ca.pem\"\n\
         client_cert_file = \"c.pem\"\nclient_key_file = \"c.key\"\noversize = \"truncate\"",
    );
    let SyslogTransport::Tls(t) = &mtls.transport else { panic!("not tls") };
    let auth = t.client_auth.as_ref().expect("client auth");
    assert_eq!((t.server_name.as_str(), auth.key_file.as_path()), ("localhost", Path::new("/etc/auditrelay/c.key")));
    assert_eq!(mtls.oversize, Oversize::Truncate);
    let render = parse_at(&syslog_sink("address = \"[::1]:1514\"\nsd_id = \"x@1\""), Path::new(FILE))
        .expect("valid")
        .render_redacted();
    assert!(render.contains("address = \"[::1]:1514\"") && render.contains("sd_id = \"x@1\""), "{render}");
}

fn sink_of(kind: &str, body: &str) -> String {
    with_source(MINIMAL).replace(SINK, &format!("[[sinks]]\nname = \"s\"\ntype = \"{kind}\"\n{body}\n"))
}

fn sink_kind(kind: &str, body: &str) -> SinkKind {
    parse_at(&sink_of(kind, body), Path::new(FILE)).expect("valid").sinks.remove(0).kind
}

#[test]
fn hec_sinks_get_defaults_and_read_their_token() {
    let SinkKind::Hec(h) =
        sink_kind("hec", "url = \"https://splunk.example.com:8088\"\ntoken = \"${AITRONOS_API_KEY}\"")
    else {
        panic!("not hec")
    };
    assert_eq!((h.url.as_str(), h.token.expose_secret()), ("https://splunk.example.com:8088/", SECRET));
    assert_eq!((h.source.as_str(), h.sourcetype.template(), h.index.as_deref()), ("auditrelay", "ocsf:{vendor}", None));
    assert_eq!(h.fields, [EventField::ClassUid, EventField::Vendor, EventField::Tenant]);
    assert_eq!((h.gzip, h.acks, h.timeout, h.host.as_deref()), (true, None, 30 * SECOND, None));
    let body = "url = \"http://127.0.0.1:8088\"\ntoken = \"t\"\nindex = \"audit\"\nfields = [\"class_name\", \"event_code\"]\n\
                gzip = false\nindexer_ack = true\nack_poll_interval = \"500ms\"\nhostname = \"collector-1\"";
    let SinkKind::Hec(h) = sink_kind("hec", body) else { panic!("not hec") };
    assert_eq!((h.index.as_deref(), h.gzip, h.host.as_deref()), (Some("audit"), false, Some("collector-1")));
    assert_eq!(h.fields, [EventField::ClassName, EventField::EventCode]);
    assert_eq!(h.acks, Some(HecAcks { poll_interval: Duration::from_millis(500), timeout: 5 * MINUTE }));
    let render = parse_at(&sink_of("hec", body), Path::new(FILE)).expect("valid").render_redacted();
    assert!(render.contains("token = \"[redacted]\"") && !render.contains("\"t\""), "{render}");
}

#[test]
fn otlp_sinks_get_defaults_and_keep_header_values_secret() {
    let SinkKind::Otlp(o) = sink_kind("otlp", "endpoint = \"https://collector.example.com:4318\"") else {
        panic!("not otlp")
    };
    assert_eq!(
        (o.endpoint.as_str(), o.protocol),
        ("https://collector.example.com:4318/v1/logs", OtlpProtocol::HttpProtobuf)
    );
    assert_eq!((o.gzip, o.body, o.headers.len(), o.timeout), (true, OtlpBody::Structured, 0, 30 * SECOND));
    let body = "endpoint = \"http://127.0.0.1:4317\"\nprotocol = \"grpc\"\nbody = \"json_string\"\n\
                headers = { \"X-Api-Key\" = \"${AITRONOS_API_KEY}\" }";
    let SinkKind::Otlp(o) = sink_kind("otlp", body) else { panic!("not otlp") };
    assert_eq!(
        (o.endpoint.as_str(), o.protocol, o.body),
        ("http://127.0.0.1:4317/", OtlpProtocol::Grpc, OtlpBody::JsonString)
    );
    assert_eq!((o.headers[0].0.as_str(), o.headers[0].1.expose_secret()), ("x-api-key", SECRET));
    let custom = "endpoint = \"http://127.0.0.1:4318/custom/path\"\nprotocol = \"http_json\"";
    let SinkKind::Otlp(o) = sink_kind("otlp", custom) else { panic!("not otlp") };
    assert_eq!(o.endpoint.as_str(), "http://127.0.0.1:4318/custom/path");
    let render = parse_at(&sink_of("otlp", body), Path::new(FILE)).expect("valid").render_redacted();
    assert!(render.contains("\"x-api-key\" = \"[redacted]\"") && !render.contains(SECRET), "{render}");
}

#[test]
fn hec_and_otlp_mistakes_are_named() {
    check_err(&sink_of("hec", "token = \"t\""), &["sinks[0].url", "required"]);
    check_err(&sink_of("hec", "url = \"https://h:8088\""), &["sinks[0].token", "required"]);
    check_err(&sink_of("hec", "url = \"ftp://h\"\ntoken = \"t\""), &[":10: sinks[0].url:", "http"]);
    check_err(&sink_of("hec", "url = \"https://u:p@h\"\ntoken = \"t\""), &["sinks[0].url", "credentials"]);
    check_err(
        &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nfields = [\"nope\"]"),
        &["sinks[0].fields", "class_uid"],
    );
    check_err(
        &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nack_timeout = \"1m\""),
        &["sinks[0].ack_timeout", "indexer_ack"],
    );
    check_err(
        &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\nca_file = \"ca.pem\""),
        &["sinks[0].ca_file", "https"],
    );
    check_err(
        &sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\naddress = \"h:1\""),
        &["sinks[0].address", "not used"],
    );
    let slow_poll = "url = \"http://h\"\ntoken = \"t\"\nindexer_ack = true\nack_poll_interval = \"10m\"";
    check_err(&sink_of("hec", slow_poll), &["sinks[0].ack_timeout", "ack_poll_interval"]);
    check_err(&sink_of("otlp", ""), &["sinks[0].endpoint", "required"]);
    check_err(&sink_of("otlp", "endpoint = \"http://h\"\nprotocol = \"thrift\""), &["sinks[0].protocol", "thrift"]);
    check_err(
        &sink_of("otlp", "endpoint = \"http://h\"\nheaders = { \"a b\" = \"x\" }"),
        &["sinks[0].headers.a b", "header name"],
    );
    check_err(
        &sink_of("otlp", "endpoint = \"http://h\"\nheaders = { a = \"${NOPE_UNSET}\" }"),
        &["sinks[0].headers.a", "NOPE_UNSET"],
    );
    check_err(&sink_of("otlp", "endpoint = \"http://h\"\ntoken = \"t\""), &["sinks[0].token", "not used"]);
}

#[test]
fn syslog_mistakes_are_named() {
    check_err(&syslog_sink(""), &["sinks[0].address", "required"]);
    check_err(&syslog_sink("address = \"h:0\""), &[":10: sinks[0].address:", "port"]);
    check_err(&syslog_sink("address = \"::1:514\""), &["sinks[0].address", "brackets"]);
    check_err(&syslog_sink("address = \"h\"\ntransport = \"sctp\""), &["sinks[0].transport", "sctp"]);
    check_err(&syslog_sink("address = \"h\"\ntransport = \"udp\"\nca_file = \"x\""), &["sinks[0].ca_file", "not used"]);
    check_err(&syslog_sink("address = \"h\"\ntransport = \"udp\"\nframing = \"lf\""), &["sinks[0].framing", "udp"]);
    let big_udp = "address = \"h\"\ntransport = \"udp\"\nmax_message_size = \"64 KiB\"";
    check_err(&syslog_sink(big_udp), &["sinks[0].max_message_size", "65507"]);
    check_err(&syslog_sink("address = \"h\"\nmax_message_size = 100"), &["sinks[0].max_message_size", "480"]);
    check_err(&syslog_sink("address = \"h\"\nfacility = \"local9\""), &["sinks[0].facility", "local7"]);
    check_err(&syslog_sink("address = \"h\"\nfacility = 24"), &["sinks[0].facility"]);
    check_err(&syslog_sink("address = \"h\"\nhostname = \"a b\""), &["sinks[0].hostname", "printable"]);
    check_err(&syslog_sink("address = \"h\"\nsd_id = \"a=b\""), &["sinks[0].sd_id", "SD-ID"]);
    check_err(&syslog_sink("address = \"h\"\nclient_cert_file = \"c\""), &["sinks[0].client_key_file", "required"]);
    check_err(&syslog_sink("address = \"h\"\nserver_name = \"bad name\""), &["sinks[0].server_name"]);
    check_err(&syslog_sink("address = \"h\"\npath = \"x\""), &["sinks[0].path", "not used"]);
    check_err(&format!("{}\ntimeout = \"1s\"", with_source(MINIMAL)), &["sinks[0].timeout", "not used"]);
}

fn source_of(vendor: &str, body: &str) -> String {
    format!("state_dir = \"state\"\n[[sources]]\nname = \"a\"\nvendor = \"{vendor}\"\n{body}\n{SINK}")
}

const CONFIGCAT: &str =
    "organization_id = \"08d86d63\"\nusername = \"${CONFIGCAT_USERNAME}\"\npassword = \"${CONFIGCAT_PASSWORD}\"";

#[test]
fn configcat_and_datafold_get_their_vendor_defaults() {
    let c = parse_at(&source_of("configcat", CONFIGCAT), Path::new(FILE)).expect("valid");
    let s = &c.sources[0];
    assert_eq!(s.base_url.as_str(), "https://api.configcat.com/");
    assert_eq!(s.max_span, Duration::from_secs(30 * 86_400));
    assert_eq!((s.rate_limit.requests.get(), s.rate_limit.per), (60, Duration::from_secs(60)));
    let VendorSettings::ConfigCat(cc) = &s.vendor else { panic!("not configcat") };
    assert_eq!((cc.page_size, cc.api_version), (100, ConfigCatApi::V2));
    assert_eq!(cc.password.expose_secret(), SECRET);

    let df = "api_key = \"${DATAFOLD_API_KEY}\"\nbase_url = \"https://datafold.acme.example\"";
    let c = parse_at(&source_of("datafold", df), Path::new(FILE)).expect("valid");
    let s = &c.sources[0];
    assert_eq!(s.max_span, Duration::from_secs(3600));
    assert_eq!(s.vendor.organization_id(), "datafold.acme.example");
    let VendorSettings::Datafold(d) = &s.vendor else { panic!("not datafold") };
    assert_eq!((d.max_records, d.max_response_bytes), (10_000, 32 << 20));
}

#[test]
fn astronomer_gets_its_documented_limits() {
    let body = "organization_id = \"clq4n7x2a000008jz5b1c3e7f\"\nbearer_token = \"${DATAFOLD_API_KEY}\"";
    let c = parse_at(&source_of("astronomer", body), Path::new(FILE)).expect("valid");
    let s = &c.sources[0];
    assert_eq!(s.base_url.as_str(), "https://api.astronomer.io/");
    assert_eq!((s.rate_limit.requests.get(), s.rate_limit.per), (2, Duration::from_secs(60)));
    assert_eq!((s.max_span, s.poll_interval), (Duration::from_secs(86_400), Duration::from_secs(300)));
    // Regression (issue 15 point 6): §2.8 asks for a 10-minute overlap, not the generic 5.
    assert_eq!(s.overlap, 10 * MINUTE, "Astronomer's documented overlap");
    let set = parse_at(&source_of("astronomer", &format!("{body}\noverlap = \"15m\"")), Path::new(FILE));
    assert_eq!(set.expect("valid").sources[0].overlap, 15 * MINUTE, "a configured overlap wins");
    check_err(&source_of("astronomer", &format!("{body}\nmax_span = \"2d\"")), &["sources[0].max_span: 2d exceeds"]);
    check_err(&source_of("astronomer", "organization_id = \"o\""), &["sources[0].bearer_token: required"]);
    check_err(&source_of("astronomer", &format!("{body}\npage_size = 5")), &["not used by vendor astronomer"]);
}

#[test]
fn severity_overrides_are_read_and_checked() {
    let text = format!(
        "{}\n[severity]\noverrides = {{ \"configcat:apiKeyAdded\" = \"high\", \"aitronos:user.deleted\" = 3 }}\n",
        with_source(MINIMAL)
    );
    let c = parse_at(&text, Path::new(FILE)).expect("valid");
    assert_eq!(c.severity.get("configcat", "apiKeyAdded"), Some(Severity::High));
    assert_eq!(c.severity.get("aitronos", "user.deleted"), Some(Severity::Medium));
    assert_eq!(c.severity.get("aitronos", "user.created"), None);
    assert!(c.render_redacted().contains("\"configcat:apiKeyAdded\" = \"high\""));
    let bad = |o: &str| format!("{}\n[severity]\noverrides = {{ {o} }}\n", with_source(MINIMAL));
    check_err(&bad("\"okta:x\" = \"high\""), &[":13: severity.overrides.\"okta:x\":", "<vendor>:<event code>"]);
    check_err(
        &bad("\"datafold:login\" = \"severe\""),
        &[":13: severity.overrides.\"datafold:login\":", "informational"],
    );
    check_err(&bad("\"datafold:login\" = 9"), &["0 to 6"]);
}

#[test]
fn raw_data_and_log_name_are_read_checked_and_shown() {
    let c = parse_at(&with_source(MINIMAL), Path::new(FILE)).expect("valid");
    assert_eq!((c.raw_data, c.sources[0].ocsf.raw_data), (RawData::Full, RawData::Full));
    assert_eq!(c.sources[0].log_name, "a", "the source's name by default");
    let text = format!(
        "{}
[ocsf]
raw_data = \"hash\"\n",
        with_source(&format!("{MINIMAL}\nlog_name = \"splunk:saas\""))
    );
    let c = parse_at(&text, Path::new(FILE)).expect("valid");
    assert_eq!((c.raw_data, c.sources[0].ocsf.raw_data), (RawData::Hash, RawData::Hash));
    assert_eq!(c.sources[0].log_name, "splunk:saas");
    let shown = c.render_redacted();
    assert!(shown.contains("[ocsf]\nraw_data = \"hash\"") && shown.contains("log_name = \"splunk:saas\""), "{shown}");
    let bad = format!(
        "{}
[ocsf]
raw_data = \"sha1\"\n",
        with_source(MINIMAL)
    );
    check_err(&bad, &[":13: ocsf.raw_data:", "\"sha1\"", "full", "hash", "off"]);
    check_err(&with_source(&format!("{MINIMAL}\nlog_name = \" \"")), &[":7: sources[0].log_name: must not be empty"]);
    check_err(
        &format!(
            "{}
[ocsf]
raw = \"off\"\n",
            with_source(MINIMAL)
        ),
        &["ocsf", "raw"],
    );
}

/// A reload restarts a source whose events change shape: `[severity]` and `[ocsf]` are part of
/// its fingerprint. Before, they were not, so a reload kept mapping with the old overrides.
#[test]
fn a_sources_fingerprint_covers_severity_and_raw_data() {
    let parse = |extra: &str| {
        parse_at(
            &format!(
                "{}
{extra}",
                with_source(MINIMAL)
            ),
            Path::new(FILE),
        )
        .expect("valid")
    };
    let base = parse("").sources[0].fingerprint();
    let raised = parse("[severity]\noverrides = { \"aitronos:user.deleted\" = \"high\" }\n").sources[0].fingerprint();
    let hashed = parse("[ocsf]\nraw_data = \"hash\"\n").sources[0].fingerprint();
    assert!(base != raised && base != hashed && raised != hashed);
    // The same overrides, written in another order, are the same settings.
    let two = |a: &str, b: &str| parse(&format!("[severity]\noverrides = {{ {a}, {b} }}\n")).sources[0].fingerprint();
    let (x, y) = ("\"aitronos:user.deleted\" = \"high\"", "\"configcat:apiKeyAdded\" = 2");
    assert_eq!(two(x, y), two(y, x));
}

#[test]
fn vendor_specific_mistakes_are_named() {
    let cc = |extra: &str| source_of("configcat", &format!("{CONFIGCAT}\n{extra}"));
    check_err(&cc("max_span = \"31d\""), &[":8: sources[0].max_span: 31d exceeds", "(30d)"]);
    check_err(&cc("api_version = \"v3\""), &[":8: sources[0].api_version:", "v3"]);
    check_err(&cc("api_key = \"k\""), &[":8: sources[0].api_key: is not used by vendor configcat"]);
    check_err(&source_of("configcat", "organization_id = \"o\"\nusername = \"u\""), &["sources[0].password"]);
    let df = |extra: &str| source_of("datafold", &format!("api_key = \"k\"\n{extra}"));
    check_err(&df("max_span = \"2h\""), &[":6: sources[0].max_span:"]);
    check_err(&df("max_records = 0"), &[":6: sources[0].max_records:"]);
    check_err(&df("page_size = 10"), &["sources[0].page_size: is not used by vendor datafold"]);
    check_err(&with_source(&format!("{MINIMAL}\nusername = \"u\"")), &["sources[0].username", "aitronos"]);
}

#[test]
fn defaults_are_filled_in() {
    let c = parse_at(&with_source(MINIMAL), Path::new(FILE)).expect("valid");
    let s = &c.sources[0];
    assert_eq!(s.base_url.as_str(), "https://api.aitronos.com/");
    assert_eq!((s.lag, s.overlap, s.max_span), (2 * MINUTE, 5 * MINUTE, Duration::from_secs(86_400)));
    assert_eq!((s.poll_interval, s.request_timeout), (MINUTE, Duration::from_secs(30)));
    assert_eq!(s.max_retry_after, Duration::from_secs(3600));
    assert_eq!(s.max_pages, 10_000);
    let rl = RateLimit { requests: NonZeroU32::new(100).expect("nonzero"), per: MINUTE, burst: NonZeroU32::MIN };
    assert_eq!(s.rate_limit, rl);
    let VendorSettings::Aitronos(a) = &s.vendor else { panic!("not aitronos") };
    assert_eq!(a.page_size, 100);
    assert_eq!(c.queue.max_bytes, 1 << 30);
    assert_eq!(c.state_dir, Path::new("/etc/auditrelay/state"));
    assert_eq!(c.sinks[0].backoff, Backoff { initial: Duration::from_secs(1), max: MINUTE });
    let partial = with_source(&format!("{MINIMAL}\nrate_limit = {{ requests = 1000 }}"));
    let c = parse_at(&partial, Path::new(FILE)).expect("valid");
    assert_eq!((c.sources[0].rate_limit.requests.get(), c.sources[0].rate_limit.per), (1000, MINUTE));
}

#[test]
fn source_ca_file_is_resolved_and_only_taken_for_https() {
    let c = parse_at(&with_source(&format!("{MINIMAL}\nca_file = \"proxy-ca.pem\"")), Path::new(FILE)).expect("valid");
    assert_eq!(c.sources[0].ca_file.as_deref(), Some(Path::new("/etc/auditrelay/proxy-ca.pem")));
    assert!(c.render_redacted().contains("ca_file = \"/etc/auditrelay/proxy-ca.pem\""), "{}", c.render_redacted());
    let http = format!("{MINIMAL}\nbase_url = \"http://127.0.0.1:8089/\"\nca_file = \"x.pem\"");
    check_err(&with_source(&http), &[":8: sources[0].ca_file: only used with an https base_url"]);
}

#[test]
fn max_pages_is_read_checked_and_rendered() {
    let c = parse_at(&with_source(&format!("{MINIMAL}\nmax_pages = 5")), Path::new(FILE)).expect("valid");
    assert_eq!(c.sources[0].max_pages, 5);
    assert!(c.render_redacted().contains("\nmax_pages = 5\n"), "{}", c.render_redacted());
    let zero = with_source(&format!("{MINIMAL}\nmax_pages = 0"));
    check_err(&zero, &[":7: sources[0].max_pages: must be at least 1"]);
    check_err(&with_source(&format!("{MINIMAL}\nmax_pages = -1")), &[":7:", "sources[0].max_pages"]);
    // Vendor-neutral: accepted for an unpaged vendor too (where one answer is one page).
    let df = source_of("datafold", "api_key = \"k\"\nmax_pages = 3");
    assert_eq!(parse_at(&df, Path::new(FILE)).expect("valid").sources[0].max_pages, 3);
}

#[test]
fn unknown_keys_are_named_with_their_line() {
    let bogus = with_source(MINIMAL).replace("state_dir = \"state\"\n", "state_dir = \"s\"\n\nbogus = 1\n");
    check_err(&bogus, &[FILE, ":3:", "bogus"]);
    check_err(&with_source(&format!("{MINIMAL}\nlagg = \"1m\"")), &[FILE, ":7:", "sources[0]", "lagg"]);
    check_err(&with_source(&format!("{MINIMAL}\nbackoff = {{ inital = \"1s\" }}")), &[":7:", "inital"]);
}

#[test]
fn bad_values_name_file_line_and_key() {
    let bad_lag = with_source(&format!("{MINIMAL}\nlag = \"5x\""));
    check_err(&bad_lag, &[&format!("{FILE}:7: sources[0].lag: invalid duration \"5x\"")]);
    check_err(&with_source(&format!("{MINIMAL}\npage_size = 101")), &[":7: sources[0].page_size:", "101"]);
    check_err(&with_source(&format!("{MINIMAL}\npage_size = 0")), &[":7: sources[0].page_size:"]);
    check_err(&with_source(&format!("{MINIMAL}\npage_size = \"x\"")), &[":7:", "sources[0].page_size"]);
    check_err(&with_source(&format!("{MINIMAL}\noverlap = \"1d\"")), &[":7: sources[0].overlap:", "max_span"]);
    check_err(&with_source(&format!("{MINIMAL}\nmax_span = \"5m\"")), &["sources[0].overlap", "max_span"]);
    check_err(&with_source(&format!("{MINIMAL}\npoll_interval = \"0s\"")), &[":7: sources[0].poll_interval:"]);
    check_err(&with_source(&format!("{MINIMAL}\nstart = \"yesterday\"")), &[":7: sources[0].start:"]);
    check_err(&with_source(&format!("{MINIMAL}\nbase_url = \"ftp://x\"")), &[":7: sources[0].base_url:"]);
    check_err(&with_source(&format!("{MINIMAL}\nrate_limit = {{ requests = 0 }}")), &[":7:", "requests"]);
    let backoff = format!("{MINIMAL}\nbackoff = {{ initial = \"2m\", max = \"1m\" }}");
    check_err(&with_source(&backoff), &[":7: sources[0].backoff:", "initial"]);
    check_err(&with_source(&format!("{MINIMAL}\nvendor2 = 1")), &["sources[0]", "vendor2"]);
    check_err(&with_source("api_key = \"k\""), &[":2: sources[0].organization_id: required"]);
    check_err(&with_source("organization_id = \"ORG_A\""), &["sources[0].api_key", "exactly one"]);
    // Each file holds the one mistake (a source too: without one, that is a second mistake).
    let queue = |max_bytes: &str| {
        with_source(MINIMAL)
            .replace("state_dir = \"state\"\n", &format!("state_dir = \"s\"\n[queue]\nmax_bytes = {max_bytes}\n"))
    };
    check_err(&queue("0"), &[":3: queue.max_bytes:"]);
    check_err(&queue("\"1 XB\""), &[":3: queue.max_bytes: invalid size \"1 XB\""]);
    check_err("state_dir = \"s\"\nsources = [", &[FILE, ":2:"]);
    check_err(&format!("state_dir = \"s\"\n{SINK}"), &[": sources: at least one"]);
    let vendor = with_source(MINIMAL).replace("\"aitronos\"", "\"okta\"");
    check_err(&vendor, &[":4: sources[0].vendor:", "okta"]);
}

#[test]
fn duplicate_names_and_bad_names_are_rejected() {
    let two = format!("{}\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n{MINIMAL}", with_source(MINIMAL));
    check_err(&two, &["sources[1].name", "duplicate", "\"a\""]);
    check_err(&format!("{}{SINK}", with_source(MINIMAL)), &["sinks[1].name", "duplicate"]);
    check_err(&with_source(MINIMAL).replace("name = \"a\"", "name = \"a b\""), &[":3: sources[0].name:"]);
}

#[test]
fn renamed_from_names_a_former_sink_claimed_once() {
    let renamed = format!("{}renamed_from = \"old\"\n", with_source(MINIMAL));
    let c = parse_at(&renamed, Path::new(FILE)).expect("valid");
    assert_eq!(c.sinks[0].renamed_from.as_deref(), Some("old"));
    assert!(c.render_redacted().contains("renamed_from = \"old\""));
    // A current sink's cursor is never taken over.
    let current = format!("{}{SINK}", with_source(MINIMAL)).replacen("name = \"f\"", "name = \"g\"", 1);
    let current = format!("{current}renamed_from = \"g\"\n");
    check_err(&current, &["sinks[1].renamed_from", "\"g\" is a configured sink"]);
    let twice = format!("{renamed}{}renamed_from = \"old\"\n", SINK.replace("\"f\"", "\"h\""));
    check_err(&twice, &["sinks[1].renamed_from", "already renamed by sinks[0]"]);
    check_err(&format!("{}renamed_from = \"a b\"\n", with_source(MINIMAL)), &["sinks[0].renamed_from", "invalid name"]);
}

#[test]
fn missing_env_var_names_variable_and_key_but_no_secret() {
    // The first source holds a literal secret; the error about the second must not show it.
    let text = with_source(&format!(
        "organization_id = \"ORG_A\"\napi_key = \"{SECRET}\"\n[[sources]]\nname = \"b\"\n\
         vendor = \"aitronos\"\norganization_id = \"ORG_B\"\nbearer_token = \"${{NOPE_TOKEN}}\""
    ));
    check_err(&text, &[FILE, ":11:", "sources[1].bearer_token", "NOPE_TOKEN"]);
    check_err(&with_source("organization_id = \"O\"\napi_key = \"${}\""), &["sources[0].api_key", "invalid"]);
}

#[test]
fn secret_files_are_read_trimmed_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = dir.path().join("auditrelay.toml");
    std::fs::write(dir.path().join("token"), format!("{SECRET}\r\n")).expect("write");
    let c = parse_at(&with_source("organization_id = \"O\"\nbearer_token_file = \"token\""), &origin).expect("valid");
    let VendorSettings::Aitronos(a) = &c.sources[0].vendor else { panic!("not aitronos") };
    assert!(matches!(&a.credential, AitronosCredential::Bearer(t) if t.expose_secret() == SECRET));

    let missing = dir.path().join("absent");
    let text = with_source(&format!("organization_id = \"O\"\napi_key_file = {:?}", missing.display().to_string()));
    let e = parse_at(&text, &origin).expect_err("unreadable").to_string();
    assert!(e.contains(":6: sources[0].api_key_file:") && e.contains(&missing.display().to_string()), "{e}");

    std::fs::write(dir.path().join("empty"), "\n").expect("write");
    let e = parse_at(&with_source("organization_id = \"O\"\napi_key_file = \"empty\""), &origin);
    assert!(e.expect_err("empty").to_string().contains("sources[0].api_key_file: the secret is empty"));

    let both = with_source("organization_id = \"O\"\napi_key = \"k\"\napi_key_file = \"token\"");
    check_err(&both, &[":7: sources[0].api_key_file:", "not both"]);
    let mixed = with_source("organization_id = \"O\"\napi_key = \"k\"\nbearer_token_file = \"token\"");
    check_err(&mixed, &[":7: sources[0].bearer_token:", "exactly one"]);
}

#[test]
fn fingerprints_change_with_settings_and_secrets_only() {
    let text = |key: &str, lag: &str| {
        with_source(&format!("organization_id = \"ORG_A\"\napi_key = \"{key}\"\nlag = \"{lag}\""))
    };
    let parse = |t: &str| parse_at(t, Path::new(FILE)).expect("valid");
    let (a, same) = (parse(&text("k1", "2m")), parse(&text("k1", "2m")));
    assert_eq!(a.sources[0].fingerprint(), same.sources[0].fingerprint());
    assert_eq!(a.sinks[0].fingerprint(), same.sinks[0].fingerprint());
    assert_ne!(a.sources[0].fingerprint(), parse(&text("k2", "2m")).sources[0].fingerprint(), "a rotated key");
    assert_ne!(a.sources[0].fingerprint(), parse(&text("k1", "3m")).sources[0].fingerprint());
}

#[test]
fn secrets_never_show_in_debug_or_render() {
    let text = include_str!("../../config/auditrelay.example.toml");
    let c = parse_at(text, Path::new(FILE)).expect("valid");
    assert!(!format!("{c:?}").contains(SECRET));
    let shown = c.render_redacted();
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("api_key = \"[redacted]\""), "{shown}");
    assert!(shown.contains("max_span = \"1day\"") && shown.contains("per = \"1m\""), "{shown}");
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.toml");
    let text = with_source("organization_id = \"O\"\napi_key = \"literal\"\nstart = 2025-01-01T02:00:00+02:00");
    std::fs::write(&path, text).expect("write");
    let c = Config::load(&path).expect("valid");
    assert_eq!(c.state_dir, dir.path().join("state"));
    let t0 = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z").expect("time").with_timezone(&Utc);
    assert_eq!(c.sources[0].start.resolve(Utc::now()), t0);
    assert_eq!(StartAt::Ago(MINUTE).resolve(t0), t0 - chrono::TimeDelta::minutes(1));
    let e = Config::load(&dir.path().join("nope.toml")).expect_err("missing").to_string();
    assert!(e.contains("nope.toml") && e.contains("cannot read"), "{e}");
}

/// A secret written as a number (unquoted) is refused without being quoted back: the type
/// error serde writes would show the value (found by issue 16's adversarial review).
#[test]
fn a_secret_of_the_wrong_type_is_not_shown_in_the_error() {
    let configcat = "[[sources]]\nname = \"c\"\nvendor = \"configcat\"\norganization_id = \"O\"\nusername = \"u\"\n\
                     password = 987654321\n";
    let e = parse_at(&format!("state_dir = \"s\"\n{configcat}{SINK}"), Path::new(FILE)).unwrap_err().to_string();
    assert!(e.contains("sources[0].password: expected a string") && !e.contains("987654321"), "{e}");
    let otlp =
        "[[sinks]]\nname = \"o\"\ntype = \"otlp\"\nendpoint = \"http://x\"\nheaders = { authorization = 55555 }\n";
    let e = parse_at(&with_source(MINIMAL).replace(SINK, otlp), Path::new(FILE)).unwrap_err().to_string();
    assert!(e.contains("sinks[0].headers.authorization: expected a string") && !e.contains("55555"), "{e}");
    let hec = "[[sinks]]\nname = \"h\"\ntype = \"hec\"\nurl = \"http://x\"\ntoken = 4242424242\n";
    let e = parse_at(&with_source(MINIMAL).replace(SINK, hec), Path::new(FILE)).unwrap_err().to_string();
    assert!(e.contains("sinks[0].token: expected a string") && !e.contains("4242424242"), "{e}");
}

/// A duration far beyond what its key needs is refused with its bound; "M" (months) is told
/// apart from "m" (minutes). Issue 18 point 3.
#[test]
fn durations_beyond_their_bound_are_refused() {
    let poll = with_source(&format!("{MINIMAL}\npoll_interval = \"5M\""));
    check_err(&poll, &[&format!("{FILE}:7: sources[0].poll_interval:"), "1d", "\"M\" means months"]);
    let lag = with_source(&format!("{MINIMAL}\nlag = \"2d\""));
    check_err(&lag, &[":7: sources[0].lag:", "1d"]);
    let timeout = with_source(&format!("{MINIMAL}\nrequest_timeout = \"11m\""));
    let e = parse_at(&timeout, Path::new(FILE)).expect_err("refused").to_string();
    assert!(e.contains(":7: sources[0].request_timeout:") && e.contains("10m") && !e.contains("months"), "{e}");
    let backoff = with_source(&format!("{MINIMAL}\nbackoff = {{ initial = \"1s\", max = \"2h\" }}"));
    check_err(&backoff, &[":7: sources[0].backoff.max:", "1h"]);
    check_err(&with_source(&format!("{MINIMAL}\nmax_retry_after = \"3M\"")), &["max_retry_after", "months"]);
    check_err(&with_source(&format!("{MINIMAL}\nrate_limit = {{ per = \"2d\" }}")), &["rate_limit.per", "1d"]);
    check_err(&with_source(&format!("{MINIMAL}\nmax_span = \"40d\"")), &["sources[0].max_span", "31d"]);
    // Within the bound but beyond the vendor's limit (ConfigCat: 30 days): the hint still shows.
    let configcat = source_of("configcat", &format!("{CONFIGCAT}\nmax_span = \"1M\""));
    check_err(&configcat, &["sources[0].max_span", "30d", "\"M\" means months"]);
    check_err(&sink_of("hec", "url = \"http://h\"\ntoken = \"t\"\ntimeout = \"1M\""), &["sinks[0].timeout", "months"]);
    let ack = "url = \"http://h\"\ntoken = \"t\"\nindexer_ack = true\nack_timeout = \"2h\"";
    check_err(&sink_of("hec", ack), &["sinks[0].ack_timeout", "1h"]);
    check_err(&sink_of("otlp", "endpoint = \"http://h\"\ntimeout = \"1h\""), &["sinks[0].timeout", "10m"]);
    let syslog = syslog_sink("address = \"h:514\"\ntransport = \"tcp\"\ntimeout = \"5M\"");
    check_err(&syslog, &["sinks[0].timeout", "months"]);
    // At the bound is accepted.
    let c = parse_at(&with_source(&format!("{MINIMAL}\npoll_interval = \"1d\"\nmax_span = \"2d\"")), Path::new(FILE));
    assert_eq!(c.expect("valid").sources[0].poll_interval, Duration::from_secs(86_400));
}

/// What parsing `text` logs at WARN and above.
fn warnings_of(text: &str) -> String {
    crate::logging::capture_warnings(false, || {
        let _ = parse_at(text, Path::new(FILE));
    })
    .1
}

/// `"$VAR"` (no braces) is a literal dollar sign: a warning says so, naming file, line and key,
/// never the value. Issue 18 point 3.
#[test]
fn a_dollar_without_braces_is_warned_of() {
    let secret = with_source("organization_id = \"ORG_A\"\napi_key = \"$AITRONOS_API_KEY\"");
    let w = warnings_of(&secret);
    assert!(w.contains(&format!("{FILE}:6: sources[0].api_key")) && w.contains("${VAR}"), "{w}");
    assert!(!w.contains("$AITRONOS_API_KEY"), "the value is not shown: {w}");
    let header = sink_of("otlp", "endpoint = \"http://h\"\nheaders = { a = \"Bearer $TOKEN\" }");
    assert!(warnings_of(&header).contains(":11: sinks[0].headers.a"), "{}", warnings_of(&header));
    let braces = with_source("organization_id = \"ORG_A\"\napi_key = \"${AITRONOS_API_KEY}\"");
    assert!(!warnings_of(&braces).contains("taken literally"), "{}", warnings_of(&braces));
}

/// `"${NAME}"` reads the environment only as a secret key's whole value, and
/// `"${CREDENTIALS_DIRECTORY}"` only at the start of a `*_file` path: anywhere else it is taken
/// literally, and a warning names file, line and key, never the value (review of issue 18).
#[test]
fn an_env_reference_that_is_not_expanded_is_warned_of() {
    const NOT: &str = "is not expanded in this value";
    let org = with_source("organization_id = \"${ACME_ORG}\"\napi_key = \"${AITRONOS_API_KEY}\"");
    let w = warnings_of(&org);
    assert!(w.contains(&format!("{FILE}:5: sources[0].organization_id")) && w.contains(NOT), "{w}");
    assert!(!w.contains("sources[0].api_key"), "a whole \"${{NAME}}\" secret expands: {w}");
    let partial = with_source("organization_id = \"ORG_A\"\napi_key = \"Bearer ${KEY}\"");
    let w = warnings_of(&partial);
    assert!(w.contains(&format!("{FILE}:6: sources[0].api_key")) && w.contains(NOT), "{w}");
    assert!(!w.contains("Bearer"), "the value is not shown: {w}");
    let url = with_source(&format!("{MINIMAL}\nbase_url = \"https://${{HOST}}/\""));
    assert!(warnings_of(&url).contains("sources[0].base_url"), "{}", warnings_of(&url));
    let path = with_source(MINIMAL).replace("state_dir = \"state\"", "state_dir = \"${STATE}\"");
    assert!(warnings_of(&path).contains(":1: state_dir"), "{}", warnings_of(&path));
    let header = sink_of("otlp", "endpoint = \"http://h\"\nheaders = { a = \"${TOKEN}\", b = \"Key ${T}\" }");
    let w = warnings_of(&header);
    assert!(w.contains("sinks[0].headers.b") && !w.contains("sinks[0].headers.a"), "{w}");
    let creds = sink_of("syslog", "address = \"h:6514\"\nca_file = \"${CREDENTIALS_DIRECTORY}/ca\"");
    assert!(!warnings_of(&creds).contains(NOT), "{}", warnings_of(&creds));
    let elsewhere = sink_of("file", "path = \"${CREDENTIALS_DIRECTORY}/out\"");
    assert!(warnings_of(&elsewhere).contains("sinks[0].path"), "{}", warnings_of(&elsewhere));
}

/// A relative `start` far in the past (`"5000y"`) asked the vendor for year -2974, which
/// answered 422 and the source stopped: it is bounded like every duration (review of issue 18).
#[test]
fn a_relative_start_is_bounded() {
    let at = |start: &str| with_source(&format!("{MINIMAL}\nstart = \"{start}\""));
    check_err(
        &at("5000y"),
        &[&format!("{FILE}:7: sources[0].start: \"5000y\" is longer than the 3650d this key allows")],
    );
    check_err(&at("121M"), &["sources[0].start", "3650d", "\"M\" means months"]);
    for ok in ["3650d", "9y", "7d", "2025-01-01T00:00:00Z"] {
        parse_at(&at(ok), Path::new(FILE)).unwrap_or_else(|e| panic!("start = {ok:?}: {e}"));
    }
}

/// A path starting with `~` is refused: nothing expands it, it would name a directory "~"
/// beside the config file. Issue 18 point 3.
#[test]
fn a_path_starting_with_a_tilde_is_refused() {
    const TILDE: &str = "~ is not expanded; write the absolute path";
    let state = with_source(MINIMAL).replace("state_dir = \"state\"", "state_dir = \"~/auditrelay\"");
    check_err(&state, &[&format!("{FILE}:1: state_dir: {TILDE}")]);
    let key_file = with_source("organization_id = \"ORG_A\"\napi_key_file = \"~/.aitronos\"");
    check_err(&key_file, &[&format!("{FILE}:6: sources[0].api_key_file: {TILDE}")]);
    let ca = with_source(&format!("{MINIMAL}\nca_file = \"~/ca.pem\""));
    check_err(&ca, &[":7: sources[0].ca_file:", TILDE]);
    check_err(&sink_of("file", "path = \"~/events.ndjson\""), &[":10: sinks[0].path:", TILDE]);
    let client =
        "address = \"h:6514\"\ntransport = \"tls\"\nclient_cert_file = \"~/c.pem\"\nclient_key_file = \"/k.pem\"";
    check_err(&syslog_sink(client), &["sinks[0].client_cert_file", TILDE]);
    let token = "url = \"http://h\"\ntoken_file = \"~/hec\"";
    check_err(&sink_of("hec", token), &["sinks[0].token_file", TILDE]);
    // Not at the start: an ordinary file name.
    let c = parse_at(&sink_of("file", "path = \"out~1.ndjson\""), Path::new(FILE)).expect("valid");
    let SinkKind::File(f) = &c.sinks[0].kind else { panic!("not a file sink") };
    assert_eq!(f.path, Path::new("/etc/auditrelay/out~1.ndjson"));
}

/// A HEC URL that already holds /services/collector would get it twice (the sink appends
/// /services/collector/event): refused, naming the URL that would result, redacted. An OTLP
/// HTTP endpoint gets /v1/logs only when it has no path, so one ending in /v1/logs is kept as
/// written, never doubled. Issue 18 point 3.
#[test]
fn a_collector_path_is_not_appended_twice() {
    let hec = sink_of("hec", "url = \"https://splunk.example.com:8088/services/collector\"\ntoken = \"t\"");
    check_err(
        &hec,
        &[
            ":10: sinks[0].url: already holds /services/collector",
            "https://splunk.example.com:8088/services/collector/services/collector/event",
        ],
    );
    let event = "url = \"https://h:8088/services/collector/event?token=hunter2\"\ntoken = \"t\"";
    let e = parse_at(&sink_of("hec", event), Path::new(FILE)).expect_err("refused").to_string();
    assert!(e.contains("sinks[0].url") && e.contains("token=REDACTED") && !e.contains("hunter2"), "{e}");
    let prefix = "url = \"https://h/splunk/\"\ntoken = \"t\"";
    let SinkKind::Hec(h) = sink_kind("hec", prefix) else { panic!("not hec") };
    assert_eq!(h.url.as_str(), "https://h/splunk/");
    for protocol in ["http_protobuf", "http_json"] {
        let body = format!("endpoint = \"https://otel.example.com:4318/v1/logs\"\nprotocol = \"{protocol}\"");
        let SinkKind::Otlp(o) = sink_kind("otlp", &body) else { panic!("not otlp") };
        assert_eq!(o.endpoint.as_str(), "https://otel.example.com:4318/v1/logs");
    }
}

/// `vendor` and sink `type` are matched ignoring case; an unknown one gets the nearest name.
/// Issue 18 point 3.
#[test]
fn vendor_and_sink_type_ignore_case_or_are_suggested() {
    let c = parse_at(&source_of("Aitronos", MINIMAL), Path::new(FILE)).expect("vendor = \"Aitronos\" is aitronos");
    assert_eq!(c.sources[0].vendor.vendor_name(), "aitronos");
    let c = parse_at(&sink_of("FILE", "path = \"o\""), Path::new(FILE)).expect("type = \"FILE\" is file");
    assert_eq!(c.sinks[0].kind.type_name(), "file");
    check_err(
        &source_of("aitronis", MINIMAL),
        &[&format!("{FILE}:4: sources[0].vendor: unknown variant `aitronis`"), "did you mean `aitronos`?"],
    );
    check_err(&sink_of("sislog", ""), &[":9: sinks[0].type: unknown variant `sislog`", "did you mean `syslog`?"]);
    let e = parse_at(&sink_of("kafka", ""), Path::new(FILE)).expect_err("refused").to_string();
    assert!(e.contains("unknown variant `kafka`") && !e.contains("did you mean"), "{e}");
}

/// An unknown key gets a "did you mean" from the keys of the table it is in: its vendor's (sink
/// type's) keys and the common ones, never another vendor's or sink type's. Issue 18 point 3.
#[test]
fn unknown_keys_get_a_suggestion_from_their_own_table() {
    let org = "organisation_id = \"ORG_A\"\napi_key = \"k\"";
    check_err(
        &source_of("aitronos", org),
        &[&format!("{FILE}:5: sources[0].organisation_id: unknown field"), "did you mean `organization_id`?"],
    );
    check_err(&with_source(&format!("{MINIMAL}\nlagg = \"1m\"")), &[":7: sources[0].lagg:", "did you mean `lag`?"]);
    let ack = "url = \"http://h\"\ntoken = \"t\"\nindexer_acks = true";
    check_err(&sink_of("hec", ack), &[":12: sinks[0].indexer_acks:", "did you mean `indexer_ack`?"]);
    check_err(
        &with_source(MINIMAL).replace("state_dir", "state_dri"),
        &[":1: state_dri:", "did you mean `state_dir`?"],
    );
    let backoff = with_source(&format!("{MINIMAL}\nbackoff = {{ inital = \"1s\" }}"));
    check_err(&backoff, &[":7:", "did you mean `initial`?"]);
    // Another vendor's (sink type's) key is not offered.
    let user = parse_at(&with_source(&format!("{MINIMAL}\nusernme = \"u\"")), Path::new(FILE));
    let e = user.expect_err("refused").to_string();
    assert!(e.contains("unknown field `usernme`") && !e.contains("did you mean"), "{e}");
    let e = parse_at(&sink_of("file", "path = \"o\"\nhostnme = \"h\""), Path::new(FILE)).expect_err("refused");
    assert!(!e.to_string().contains("did you mean"), "{e}");
}

/// Issue 18 point 3: mistakes in the global tables, in two sources (one a vendor's own key) and
/// in two sinks (one a protocol's own value), and a duplicate name across sources.
const MANY_MISTAKES: &str = include_str!("../../tests/fixtures/many-mistakes.toml");

/// The lines of the error `text` is refused with.
fn error_lines(text: &str) -> Vec<String> {
    let e = parse_at(text, Path::new(FILE)).expect_err("config must be rejected").to_string();
    assert!(!e.contains(SECRET), "{e:?} leaks the secret");
    e.lines().map(str::to_owned).collect()
}

/// Every mistake of the file, each on its line as a single one is shown, in file order, the
/// one that depends on two tables (a duplicate name) among them; then the count.
#[test]
fn every_mistake_of_the_file_is_reported_in_file_order() {
    let lines = error_lines(MANY_MISTAKES);
    let expected = [
        format!("{FILE}:3: queue.max_bytes: invalid size \"lots\""),
        format!("{FILE}:9: sources[0].page_size: 500 is out of range"),
        format!("{FILE}:10: sources[0].lag: invalid duration \"5 parsecs\""),
        format!("{FILE}:12: sources[1].name: duplicate name \"a\" (also sources[0])"),
        format!("{FILE}:15: sources[1].max_recrods: unknown field `max_recrods`"),
        format!("{FILE}:20: sinks[0].batch_max_events: must be at least 1"),
        format!("{FILE}:26: sinks[1].timeout: \"2h\" is longer than"),
        format!("{FILE}:28: telemetry.listen: invalid address \"nowhere\""),
        format!("8 errors in {FILE}"),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, start) in lines.iter().zip(&expected) {
        assert!(line.starts_with(start.as_str()), "{line:?} does not start with {start:?}\n{lines:#?}");
    }
    assert!(lines[4].ends_with("did you mean `max_records`?"), "{lines:#?}");
}

/// A bad value is reported and the next key of the same table is still read: common keys,
/// a vendor's own keys, a protocol's own keys; a one-mistake file shows one line and no count.
#[test]
fn a_bad_value_does_not_hide_the_next_key_of_its_table() {
    let source = "organization_id = \"\"\napi_key = \"k\"\npage_size = 0\nlag = \"x\"\npoll_interval = \"0s\"";
    let lines = error_lines(&with_source(source));
    let keys = ["sources[0].organization_id", "sources[0].page_size", "sources[0].lag", "sources[0].poll_interval"];
    assert_eq!(lines.len(), keys.len() + 1, "{lines:#?}");
    for (line, key) in lines.iter().zip(keys) {
        assert!(line.contains(key), "{line:?} lacks {key}\n{lines:#?}");
    }
    let lines =
        error_lines(&syslog_sink("address = \"h:0\"\nfacility = \"kernal\"\napp_name = \"a b\"\nsd_id = \"=\""));
    let keys = [":10: sinks[0].address", ":11: sinks[0].facility", ":12: sinks[0].app_name", ":13: sinks[0].sd_id"];
    assert_eq!(lines.len(), keys.len() + 1, "{lines:#?}");
    for (line, key) in lines.iter().zip(keys) {
        assert!(line.contains(key), "{line:?} lacks {key}\n{lines:#?}");
    }
    assert_eq!(lines[4], format!("4 errors in {FILE}"));
    let one = error_lines(&with_source(&format!("{MINIMAL}\nlag = \"5x\"")));
    assert_eq!(one.len(), 1, "{one:#?}");
    assert!(one[0].starts_with(&format!("{FILE}:7: sources[0].lag: invalid duration \"5x\"")), "{one:#?}");
}

/// A key refused for its type is not reported again as missing, nor a misspelt key's intended
/// name: one mistake, one line.
#[test]
fn a_key_at_fault_is_reported_once() {
    let one = error_lines(&sink_of("hec", "url = 5\ntoken = \"t\""));
    assert_eq!(one.len(), 1, "{one:#?}");
    assert!(one[0].starts_with(&format!("{FILE}:10: sinks[0].url: invalid type")), "{one:#?}");
    let one = error_lines(&with_source("organization_id = \"ORG_A\"\napi_key = 7"));
    assert_eq!(one.len(), 1, "{one:#?}");
    assert!(one[0].contains("sources[0].api_key") && !one[0].contains('7'), "{one:#?}");
    let one = error_lines(&with_source(MINIMAL).replace("state_dir", "state_dri"));
    assert_eq!(one.len(), 1, "{one:#?}");
    assert!(one[0].contains(":1: state_dri:") && one[0].contains("did you mean `state_dir`?"), "{one:#?}");
}

/// The mistakes are also a list (for a caller rendering them otherwise, as JSON): line and
/// column of the value at fault, key path, message; a mistake of the file as a whole has no
/// line and comes last.
#[test]
fn the_mistakes_are_a_list_with_line_column_key_and_message() {
    let e = parse_at(MANY_MISTAKES, Path::new(FILE)).expect_err("invalid");
    assert_eq!(e.problems().len(), 8);
    let page_size = Problem {
        line: Some(9),
        column: Some(13),
        key: "sources[0].page_size".to_owned(),
        message: "500 is out of range 1..=100 (the API's maximum)".to_owned(),
    };
    assert_eq!(e.problems()[1], page_size);
    let json = serde_json::to_value(&e.problems()[1]).expect("serializable");
    assert_eq!((json["line"].as_u64(), json["column"].as_u64()), (Some(9), Some(13)), "{json}");
    let ConfigError::Invalid(errors) = &e else { panic!("{e}") };
    assert_eq!(errors.file, Path::new(FILE));

    let no_source = format!("state_dir = \"s\"\n[queue]\nmax_bytes = 0\n{SINK}");
    let e = parse_at(&no_source, Path::new(FILE)).expect_err("invalid");
    let at: Vec<_> = e.problems().iter().map(|p| (p.line, p.column, p.key.as_str())).collect();
    assert_eq!(at, [(Some(3), Some(13), "queue.max_bytes"), (None, None, "sources")]);
    assert_eq!(e.to_string().lines().last(), Some(format!("2 errors in {FILE}").as_str()));
}

/// A refused URL does not hide the other keys of an HTTP sink, its `ca_file` included.
#[test]
fn a_refused_url_does_not_hide_the_ca_file() {
    for (kind, url) in [("hec", "url"), ("otlp", "endpoint")] {
        let body = format!("{url} = \"ftp://h\"\ntoken = \"t\"\nca_file = \"~/ca.pem\"\ntimeout = \"0s\"");
        let body = if kind == "otlp" { body.replace("token = \"t\"\n", "") } else { body };
        let lines = error_lines(&sink_of(kind, &body));
        let keys = [format!("sinks[0].{url}"), "sinks[0].ca_file".to_owned(), "sinks[0].timeout".to_owned()];
        assert_eq!(lines.len(), keys.len() + 1, "{lines:#?}");
        for (line, key) in lines.iter().zip(&keys) {
            assert!(line.contains(key.as_str()), "{line:?} lacks {key}\n{lines:#?}");
        }
    }
}

/// Several unknown keys of one table are each reported at their own line, and an unknown key of
/// a table inside it (`backoff`) is named with that table.
#[test]
fn every_unknown_key_of_a_table_is_reported() {
    let text = with_source(&format!("{MINIMAL}\nbackoff = {{ inital = \"1s\" }}"))
        .replace("state_dir = \"state\"\n", "state_dir = \"state\"\nbogus = 1\n[queue]\nmax_bytes = 5\nmax_byte = 6\n");
    let lines = error_lines(&format!("tail = 1\n{text}"));
    let starts = [
        ":1: tail: unknown field `tail`",
        ":3: bogus: unknown field `bogus`",
        ":6: queue.max_byte:",
        ":12: sources[0].backoff.inital",
    ];
    assert_eq!(lines.len(), starts.len() + 1, "{lines:#?}");
    for (line, start) in lines.iter().zip(starts) {
        assert!(line.starts_with(&format!("{FILE}{start}")), "{line:?} does not start with {start:?}\n{lines:#?}");
    }
    assert!(
        lines[2].ends_with("did you mean `max_bytes`?") && lines[3].contains("did you mean `initial`?"),
        "{lines:#?}"
    );
}

/// Issue 20: `vendors_dir`, relative to the configuration file, must exist when set; every
/// definition in it is read, a broken one refused with its own file, line and key.
#[test]
fn vendors_dir_is_read_relative_to_the_file_and_its_definitions_checked() {
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("vendors.d");
    std::fs::create_dir(&defs).unwrap();
    let definition = "[vendor]\nname = \"acme\"\nvendor_name = \"V\"\nproduct = \"P\"\n[request]\npath = \"/logs\"\n\
                      [paging]\nkind = \"none\"\n[auth]\nkind = \"bearer\"\n[answer]\nid = \"/id\"\ntime = \"/at\"\n\
                      [rate_limit]\nrequests = 10\nper = \"1m\"\n[ocsf]\naction = \"/a\"\n";
    std::fs::write(defs.join("acme.toml"), definition).unwrap();
    let origin = dir.path().join("auditrelay.toml");
    let text = format!("vendors_dir = \"vendors.d\"\n{}", with_source(MINIMAL));
    let config = parse_at(&text, &origin).unwrap();
    assert_eq!(config.vendors_dir, defs);
    let names: Vec<_> = config.vendors.all().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["acme"]);

    // Unset: the default directory, whose absence is no error (none on a build machine).
    let config = parse_at(&with_source(MINIMAL), &origin).unwrap();
    assert_eq!(config.vendors_dir, Path::new("/etc/auditrelay/vendors.d"));

    let missing = format!("vendors_dir = \"nope.d\"\n{}", with_source(MINIMAL));
    check_err(&missing, &["auditrelay.toml:1", "vendors_dir", "nope.d"]);

    std::fs::write(
        defs.join("broken.toml"),
        definition.replace("acme", "other").replace("kind = \"none\"", "kind = \"nne\""),
    )
    .unwrap();
    let e = parse_at(&text, &origin).unwrap_err().to_string();
    let broken = defs.join("broken.toml");
    assert!(e.contains(&format!("{}:8: paging.kind", broken.display())), "{e}");
    assert!(!e.contains('\n'), "{e:?}");
}

/// Issue 20: `[severity] overrides` take a defined vendor's name, from the definitions found.
#[test]
fn severity_overrides_accept_defined_vendors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("defs")).unwrap();
    let definition = "[vendor]\nname = \"acme\"\nvendor_name = \"V\"\nproduct = \"P\"\n[request]\npath = \"/logs\"\n\
                      [paging]\nkind = \"none\"\n[auth]\nkind = \"bearer\"\n[answer]\nid = \"/id\"\ntime = \"/at\"\n\
                      [rate_limit]\nrequests = 10\nper = \"1m\"\n[ocsf]\naction = \"/a\"\n";
    std::fs::write(dir.path().join("defs/acme.toml"), definition).unwrap();
    let origin = dir.path().join("auditrelay.toml");
    let with =
        |o: &str| format!("vendors_dir = \"defs\"\n{}\n[severity]\noverrides = {{ {o} }}\n", with_source(MINIMAL));
    let c = parse_at(&with("\"acme:user.login\" = \"high\""), &origin).unwrap();
    assert_eq!(c.severity.get("acme", "user.login"), Some(Severity::High));
    let e = parse_at(&with("\"other:user.login\" = \"high\""), &origin).unwrap_err().to_string();
    assert!(e.contains("severity.overrides.\"other:user.login\"") && e.contains("acme"), "{e}");
    // Without the definition, its name is no vendor.
    let without = format!("{}\n[severity]\noverrides = {{ \"acme:x\" = \"high\" }}\n", with_source(MINIMAL));
    assert!(parse_at(&without, &origin).is_err());
}

/// The example's commented defined source (an Okta System Log source of the shipped
/// definition), uncommented, is a valid source of the definition found in vendors_dir.
#[test]
fn the_example_config_shows_a_valid_defined_source() {
    let example = include_str!("../../config/auditrelay.example.toml");
    let start = example.find("# [[sources]]\n# name = \"okta-acme\"").expect("the example's defined source");
    let block: Vec<&str> = example[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .collect();
    let vendors = concat!(env!("CARGO_MANIFEST_DIR"), "/config/vendors.d");
    let text = format!(
        "state_dir = \"s\"\nvendors_dir = {vendors:?}\n{}\n{SINK}",
        block.join("\n").replace("${CREDENTIALS_DIRECTORY}/okta", "okta.token")
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("okta.token"), "00abc").expect("token");
    let c = Config::parse_with_env(&text, &dir.path().join("a.toml"), &env).expect("the defined source is valid");
    let s = &c.sources[0];
    assert_eq!((s.name.as_str(), s.vendor.vendor_name()), ("okta-acme", "okta"));
    assert_eq!(s.base_url.as_str(), "https://acme.okta.com/");
    let VendorSettings::Defined(d) = &s.vendor else { panic!("not a defined vendor") };
    assert_eq!((d.organization_id.as_str(), d.page_size), ("acme", 1000));
}
