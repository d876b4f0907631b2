//! Where definitions are found and how they live: every `*.toml` of a definitions directory
//! (`/etc/auditrelay/vendors.d/` by default, or the config's `vendors_dir`), or one file named
//! by path. Owns the process-wide interning of loaded definitions and the refusal of two
//! definitions with one name. Must not: parse a file itself (`format.rs` does) or know how a
//! definition is used.
//!
//! Interning: a [`crate::vendors::VendorId`] carries a `&'static Definition` so that it stays
//! `Copy`. Each definition is leaked once per (path, digest of its bytes): a reload that reads
//! the same file again gets the same reference back, so reloads do not leak again; only an
//! edited file (a new digest) costs one more, kept until the process ends: at most the 256 KiB
//! file's values plus its rules' regexes, compiled as one set capped at
//! `mapping::REGEX_SET_SIZE_LIMIT` (4 MiB) with a 1 MiB matching cache (review 20 A #7: 500
//! regexes compiled one by one were 150 MiB a version). A long-running agent whose definitions
//! are edited often is restarted now and then to give that back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::format::{self, DefinitionErrors, Problem};
use super::model::Definition;

/// The default definitions directory; its absence is no error.
pub const DEFAULT_DIR: &str = "/etc/auditrelay/vendors.d";

type Interned = HashMap<(PathBuf, String), &'static Definition>;

fn interned() -> &'static Mutex<Interned> {
    static INTERNED: OnceLock<Mutex<Interned>> = OnceLock::new();
    INTERNED.get_or_init(Default::default)
}

/// The one `&'static` copy of `def` for its path and digest (module docs).
pub fn intern(def: Definition) -> &'static Definition {
    let key = (def.path.clone(), def.digest.clone());
    // A poisoned lock still holds a consistent map: entries are only ever inserted whole.
    let mut map = interned().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key).or_insert_with(|| Box::leak(Box::new(def)))
}

/// Loads, validates and interns one definition file.
pub fn load_file(path: &Path) -> Result<&'static Definition, DefinitionErrors> {
    format::load(path).map(intern)
}

/// The definitions known to one configuration, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    /// Sorted by name.
    defs: Vec<&'static Definition>,
}

/// Every file refused while building a [`Registry`], each with every problem of its own.
#[derive(Debug, Clone, Default)]
pub struct RegistryErrors(pub Vec<DefinitionErrors>);

impl std::fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryErrors {}

fn whole(file: &Path, key: &str, message: String) -> DefinitionErrors {
    DefinitionErrors { file: file.to_path_buf(), problems: vec![Problem { line: None, key: key.to_owned(), message }] }
}

impl Registry {
    /// Every `*.toml` in `dir` (not recursive), in name order. A missing `dir` is an empty
    /// registry when `required` is false (the default directory), else an error naming it.
    /// Every file is read, whatever is wrong with another.
    pub fn load_dir(dir: &Path, required: bool) -> Result<Registry, RegistryErrors> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Registry::default()),
            Err(e) => {
                return Err(RegistryErrors(vec![whole(
                    dir,
                    "vendors_dir",
                    format!("cannot read the definitions directory: {e}"),
                )]));
            }
        };
        let mut files = vec![];
        let mut errors = vec![];
        for entry in entries {
            match entry {
                Ok(entry) => {
                    let path = entry.path();
                    // Editors' and package managers' leftovers (`.toml~`, `.toml.dpkg-old`) do
                    // not end in `.toml`; hidden files are skipped like theirs.
                    let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
                    if path.extension().is_some_and(|x| x == "toml") && !hidden && path.is_file() {
                        files.push(path);
                    }
                }
                Err(e) => errors.push(whole(dir, "vendors_dir", format!("cannot list the definitions directory: {e}"))),
            }
        }
        files.sort();
        let mut registry = Registry::default();
        for path in files {
            match load_file(&path) {
                Ok(def) => {
                    if let Err(e) = registry.add(def) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() { Ok(registry) } else { Err(RegistryErrors(errors)) }
    }

    /// Adds a definition; one with the same name as another is refused, naming both files.
    /// The same file added twice (a source naming by path a file of the directory) is no
    /// duplicate.
    pub fn add(&mut self, def: &'static Definition) -> Result<(), DefinitionErrors> {
        match self.defs.binary_search_by(|d| d.name.as_str().cmp(&def.name)) {
            Ok(i) if std::ptr::eq(self.defs[i], def) => Ok(()),
            Ok(i) => {
                let other = self.defs[i].path.display();
                let message = format!("{:?} is defined twice: here and in {other}", def.name);
                Err(whole(&def.path, "vendor.name", message))
            }
            Err(i) => {
                self.defs.insert(i, def);
                Ok(())
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&'static Definition> {
        self.defs.binary_search_by(|d| d.name.as_str().cmp(name)).ok().map(|i| self.defs[i])
    }

    /// Every definition, by name.
    pub fn all(&self) -> &[&'static Definition] {
        &self.defs
    }
}

/// Whether a `vendor = "…"` value names a file rather than a vendor: it holds `/` or ends in
/// `.toml`.
pub fn is_path(vendor: &str) -> bool {
    vendor.contains('/') || vendor.ends_with(".toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(name: &str) -> String {
        format!(
            "[vendor]\nname = \"{name}\"\nvendor_name = \"V\"\nproduct = \"P\"\n\
             [request]\npath = \"/logs\"\nquery = {{ since = \"{{from}}\" }}\n\
             [paging]\nkind = \"none\"\n[auth]\nkind = \"bearer\"\n\
             [answer]\nid = \"/id\"\ntime = \"/at\"\n[rate_limit]\nrequests = 10\nper = \"1m\"\n\
             [ocsf]\naction = \"/action\"\n"
        )
    }

    fn write(dir: &Path, file: &str, text: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn a_directory_gives_every_toml_file_by_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "b.toml", &definition("beta"));
        write(dir.path(), "a.toml", &definition("alpha"));
        write(dir.path(), "c.toml~", &definition("gamma"));
        write(dir.path(), "README", "not a definition");
        let r = Registry::load_dir(dir.path(), true).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<_> = r.all().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(r.get("beta").map(|d| d.path.clone()), Some(dir.path().join("b.toml")));
        assert!(r.get("gamma").is_none());
    }

    #[test]
    fn a_missing_directory_is_an_error_only_when_set() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = dir.path().join("vendors.d");
        assert!(Registry::load_dir(&missing, false).is_ok_and(|r| r.all().is_empty()));
        let e = Registry::load_dir(&missing, true).unwrap_err().to_string();
        assert!(e.contains(&missing.display().to_string()) && e.contains("vendors_dir"), "{e}");
    }

    #[test]
    fn two_definitions_with_one_name_are_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let first = write(dir.path(), "a.toml", &definition("same"));
        let second = write(dir.path(), "b.toml", &definition("same"));
        write(dir.path(), "c.toml", &definition("other"));
        let e = Registry::load_dir(dir.path(), true).unwrap_err().to_string();
        assert!(e.contains(&first.display().to_string()) && e.contains(&second.display().to_string()), "{e}");
        assert!(e.contains("\"same\" is defined twice"), "{e}");
    }

    #[test]
    fn every_broken_file_is_reported() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write(dir.path(), "a.toml", &definition("a").replace("per = \"1m\"", "per = \"soon\""));
        write(dir.path(), "b.toml", &definition("b").replace("kind = \"none\"", "kind = \"nope\""));
        let e = Registry::load_dir(dir.path(), true).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        let text = e.to_string();
        assert!(text.contains("a.toml:") && text.contains("rate_limit.per"), "{text}");
        assert!(text.contains("b.toml:") && text.contains("paging.kind"), "{text}");
    }

    #[test]
    fn the_same_file_is_interned_once_and_an_edit_is_a_new_definition() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = write(dir.path(), "x.toml", &definition("x"));
        let one = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let two = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(std::ptr::eq(one, two), "a reload of the same file must not leak again");
        let mut r = Registry::default();
        r.add(one).unwrap_or_else(|e| panic!("{e}"));
        r.add(two).unwrap_or_else(|e| panic!("the same file twice is no duplicate: {e}"));
        write(dir.path(), "x.toml", &definition("x").replace("requests = 10", "requests = 11"));
        let three = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!std::ptr::eq(one, three));
        assert_eq!(three.rate_limit.requests, 11);
    }

    #[test]
    fn a_vendor_value_is_a_path_when_it_looks_like_one() {
        assert!(is_path("./vendors/okta.toml") && is_path("okta.toml") && is_path("/etc/x"));
        assert!(!is_path("okta") && !is_path("aitronos"));
    }
}
