//! The configuration accepts, refuses and words what it did before the table split of issue 16
//! (found by its adversarial review: each test failed on the split as first written).

use std::path::Path;

use auditrelay::config::Config;

const SINK: &str = "[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"o\"\n";

fn parse(text: &str) -> Result<Config, String> {
    Config::parse_with_env(text, Path::new("/etc/auditrelay/c.toml"), &|_| None).map_err(|e| e.to_string())
}

/// serde's externally tagged form of a unit variant, `{ <variant> = {} }`, was accepted for
/// `vendor` and `type` (both were serde enums); the split by `vendor`/`type` reads only a string.
#[test]
fn the_table_form_of_vendor_and_type_is_still_accepted() {
    let source = "state_dir = \"s\"\n[[sources]]\nname = \"a\"\nvendor = { aitronos = {} }\n\
                  organization_id = \"O\"\napi_key = \"k\"\n";
    let c = parse(&format!("{source}{SINK}")).expect("a82f9b1 accepts vendor = { aitronos = {} }");
    assert_eq!(c.sources[0].vendor.vendor_name(), "aitronos");
    let source = "state_dir = \"s\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\n\
                  organization_id = \"O\"\napi_key = \"k\"\n";
    let sink = "[[sinks]]\nname = \"f\"\ntype = { file = {} }\npath = \"o\"\n";
    let c = parse(&format!("{source}{sink}")).expect("a82f9b1 accepts type = { file = {} }");
    assert_eq!(c.sinks[0].kind.type_name(), "file");
}

/// A table without `name` is named `sources[0]` / `sinks[0]`, not `sources[0].` (a82f9b1's key).
#[test]
fn a_missing_name_names_the_table_without_a_trailing_dot() {
    let source = "state_dir = \"s\"\n[[sources]]\nvendor = \"aitronos\"\norganization_id = \"O\"\napi_key = \"k\"\n";
    let err = parse(&format!("{source}{SINK}")).unwrap_err();
    assert_eq!(err, "/etc/auditrelay/c.toml:2: sources[0]: missing field `name`");
    let source = "state_dir = \"s\"\n[[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"O\"\napi_key = \"k\"\n";
    let err = parse(&format!("{source}[[sinks]]\ntype = \"file\"\npath = \"o\"\n")).unwrap_err();
    assert_eq!(err, "/etc/auditrelay/c.toml:7: sinks[0]: missing field `name`");
}

/// Of several mistakes, the one named is the one named before the split: serde read the sinks
/// before the sources (here the sink is also first in the file).
#[test]
fn a_sink_mistake_is_named_before_a_source_mistake() {
    let text = "state_dir = \"s\"\n[[sinks]]\nname = \"f\"\ntype = \"file\"\npath = \"o\"\nbatch_max_events = \"x\"\n\
                [[sources]]\nname = \"a\"\nvendor = \"aitronos\"\norganization_id = \"O\"\napi_key = \"k\"\nlag = 5\n";
    let err = parse(text).unwrap_err();
    assert!(err.starts_with("/etc/auditrelay/c.toml:6: sinks[0].batch_max_events:"), "{err}");
}

/// A misspelt array of tables still hears which tables there are.
#[test]
fn an_unknown_top_level_key_lists_sources_and_sinks() {
    let err = parse(&format!("state_dir = \"s\"\n[[source]]\nname = \"a\"\n{SINK}")).unwrap_err();
    assert!(err.contains("`sources`, `sinks`"), "{err}");
}
