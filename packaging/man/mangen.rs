//! Writes auditrelay's man pages from its clap definitions (`auditrelay::cli::Cli`): `auditrelay.1`
//! and one page per subcommand (`auditrelay-run.1`, `auditrelay-queue-stats.1`, …) into the
//! directory given as the only argument (created if missing; every `*.1` already in it is
//! removed first, so a renamed subcommand leaves no stale page).
//!
//!   cargo run --example mangen -- target/man
//!
//! scripts/package-check.sh runs it before `cargo deb`; the Debian package installs the pages as
//! /usr/share/man/man1/*.1.gz (cargo-deb gzips them). No generated copy is kept in the repository.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::CommandFactory;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        bail!("usage: mangen <output directory>");
    };
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    clap_mangen::generate_to(auditrelay::cli::Cli::command(), &dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|name| name.ends_with(".1"))
        .collect();
    pages.sort();
    println!("{}: {}", dir.display(), pages.join(" "));
    Ok(())
}
