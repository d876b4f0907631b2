//! The documentation stays true: the README's configuration example is a valid configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::Path;

use auditrelay::config::Config;

#[test]
fn test_readme_config_example_is_valid() {
    let readme = include_str!("../../README.md");
    let start = readme.find("```toml\n").expect("a ```toml block in README.md") + "```toml\n".len();
    let len = readme[start..].find("```").expect("the block ends");
    let env = |name: &str| (name == "AITRONOS_API_KEY").then(|| "ak_readme".to_owned());
    let config =
        Config::parse_with_env(&readme[start..start + len], Path::new("/etc/auditrelay/auditrelay.toml"), &env)
            .unwrap_or_else(|e| panic!("README.md's configuration example: {e}"));
    assert_eq!(config.sources.len(), 1);
    assert_eq!(config.sinks.len(), 2);
}
