//! What machine a benchmark ran on, and on what filesystem: printed first by every benchmark.
#![allow(dead_code)] // not every benchmark prints both

use std::path::Path;

/// `machine: <CPU model>, <n> CPUs, <memory>, Linux <release>; load average <1 5 15 min>; <build>`.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    // The cheap variant for iteration overrides the release profile from the environment
    // (`CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16`): say so, its
    // figures compare only with each other.
    let overrides: Vec<String> = [
        ("lto", option_env!("CARGO_PROFILE_RELEASE_LTO")),
        ("codegen-units", option_env!("CARGO_PROFILE_RELEASE_CODEGEN_UNITS")),
    ]
    .into_iter()
    .filter_map(|(key, value)| Some(format!("{key} = {}", value?)))
    .collect();
    let build = if cfg!(debug_assertions) {
        "build: debug assertions ON (not an optimized build: figures are meaningless)".to_owned()
    } else if overrides.is_empty() {
        "build: bench profile (= release)".to_owned()
    } else {
        format!("build: bench profile (= release) with {} from the environment", overrides.join(", "))
    };
    let agent = match std::env::var("AUDITRELAY_BIN") {
        Ok(bin) => format!("; agent: AUDITRELAY_BIN={bin}"),
        Err(_) => String::new(),
    };
    format!(
        "machine: {model}, {cpus} CPUs, {mem_gib:.1} GiB, Linux {}; load average {}; {build}{agent}",
        kernel.trim(),
        load.join(" ")
    )
}

/// The filesystem type holding `path` (the longest mount point of /proc/self/mounts it is under)
/// and its block device as /proc/diskstats names it (`None` when there is none, as on tmpfs).
pub fn filesystem(path: &Path) -> (String, Option<String>) {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let unescape = |s: &str| s.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
    let (fstype, source) = mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (source, point, fstype) = (f.next()?, unescape(f.next()?), f.next()?);
            path.starts_with(&point).then(|| (point.len(), fstype.to_owned(), unescape(source)))
        })
        .max()
        .map_or_else(|| ("unknown".to_owned(), String::new()), |(_, fstype, source)| (fstype, source));
    let device = std::fs::canonicalize(source).ok().and_then(|p| Some(p.file_name()?.to_str()?.to_owned()));
    (fstype, device)
}
