//! The fuzz targets' inputs as regression tests, on the stable toolchain: every file under
//! `tests/fixtures/fuzz/<target>/` (crashes the fuzzers found, hand-written hostile inputs) and
//! every seed under `fuzz/seeds/<target>/` goes through `auditrelay::fuzzing::<target>`, the
//! function the fuzz target calls. A target whose directory is missing or empty fails: nothing
//! passes in silence. See `fuzz/README.md` for running the fuzzers themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::path::{Path, PathBuf};

use auditrelay::fuzzing::TARGETS;
use auditrelay::sources::DecodeError;
use auditrelay::vendors::astronomer::source as astronomer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files of one directory, sorted; a missing or empty directory fails the test.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).filter(|p| p.is_file() && !is_hidden(p)).collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no input", dir.display());
    files
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// Runs every regression input and every seed of `name` through its fuzz function.
fn run(name: &str) {
    let target = TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).expect("a known target");
    let dirs = [root().join("tests/fixtures/fuzz").join(name), root().join("fuzz/seeds").join(name)];
    let mut failed = Vec::new();
    for file in dirs.iter().flat_map(|d| inputs(d)) {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{name} panicked on: {failed:#?}");
}

#[test]
fn aitronos_page() {
    run("aitronos_page");
}

#[test]
fn astronomer_ndjson() {
    run("astronomer_ndjson");
}

#[test]
fn config() {
    run("config");
}

#[test]
fn configcat_page() {
    run("configcat_page");
}

#[test]
fn datafold_page() {
    run("datafold_page");
}

#[test]
fn event_time() {
    run("event_time");
}

#[test]
fn ocsf_map() {
    run("ocsf_map");
}

#[test]
fn retry_headers() {
    run("retry_headers");
}

/// Every target has a test above, a fuzz target, seeds and regression inputs; every
/// regression or seed directory belongs to a target.
#[test]
fn every_target_is_wired() {
    let source = std::fs::read_to_string(root().join("tests/it/fuzz_regressions.rs")).unwrap();
    for (name, _) in TARGETS {
        assert!(source.contains(&format!("fn {name}() {{\n    run(\"{name}\");")), "no test runs {name}");
        let target = root().join("fuzz/fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert!(
            text.contains(&format!("auditrelay::fuzzing::{name}(data)")),
            "{} calls another function",
            target.display()
        );
    }
    for dir in ["tests/fixtures/fuzz", "fuzz/seeds", "fuzz/fuzz_targets"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            assert!(TARGETS.iter().any(|(n, _)| *n == name), "{} is no fuzz target", path.display());
        }
    }
}

/// The gzip bomb (a few KB gzipped twice, inflating past the cap) stops at the cap instead of
/// filling memory.
#[test]
fn gzip_bomb_stops_at_the_cap() {
    let bomb = std::fs::read(root().join("tests/fixtures/fuzz/astronomer_ndjson/gzip-bomb.gz.gz")).unwrap();
    assert!(bomb.len() < 100 * 1024, "the bomb is {} bytes", bomb.len());
    let mut emitted = 0usize;
    let outcome = astronomer::decode(&bomb[..], |records, rejected| {
        emitted += records.len() + rejected.len();
        true
    });
    assert!(matches!(outcome, Err(DecodeError::TooLarge(_))), "{outcome:?}");
    assert_eq!(emitted, 0, "the bomb's lines are blank");
}
