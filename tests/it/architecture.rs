//! The dependency directions of ARCHITECTURE.md ("Dependency rules"), checked against the code:
//! every "- `a` must not import `b`, `c`" line there is read, and every `crate::b` path in the
//! non-test code of module `a` (`src/a.rs` or `src/a/…`) is a failure naming the file and line.
//! A vendor's `sim.rs` belongs to the simulator (`sim`), not to `vendors`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `(module, forbidden modules)` from ARCHITECTURE.md.
fn rules() -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable");
    let mut rules = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("- `") else { continue };
        let Some((module, rest)) = rest.split_once("` must not import ") else { continue };
        // The names are the back-quoted words up to a parenthesis (which only explains).
        let names = rest.split('(').next().unwrap_or_default();
        let forbidden: Vec<String> = names.split('`').skip(1).step_by(2).map(str::to_owned).collect();
        assert!(!forbidden.is_empty(), "a rule names no module: {line:?}");
        rules.push((module.to_owned(), forbidden));
    }
    rules
}

/// The module a source file belongs to for these rules.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(root().join("src")).expect("under src/");
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.first().map(String::as_str) == Some("vendors") && parts.last().map(String::as_str) == Some("sim.rs") {
        return "sim".to_owned();
    }
    parts[0].trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::<module>` a file's non-test code names, with its line number. Test code (the
/// `#[cfg(test)]` module at the end of a file, or a file compiled only for tests) may reach
/// anything.
fn imports(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("a source file is readable");
    let mut found = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            if lines.peek().is_some_and(|(_, next)| next.trim_start().contains("mod ")) {
                break;
            }
            continue;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name.is_empty() {
                // `use crate::{a, b}`: every name in the braces (on this line).
                let inner = rest.trim_start_matches('{');
                for part in inner.split(['}', ',']) {
                    let name = part.trim().split("::").next().unwrap_or_default().trim().to_owned();
                    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        found.push((i + 1, name));
                    }
                }
            } else {
                found.push((i + 1, name));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_what_architecture_md_forbids() {
    let rules = rules();
    assert!(rules.len() >= 5, "ARCHITECTURE.md lists its dependency rules ({} found)", rules.len());
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f)).collect();
    for (module, forbidden) in &rules {
        for name in std::iter::once(module).chain(forbidden) {
            assert!(modules.contains(name), "ARCHITECTURE.md names a module that does not exist: {name}");
        }
    }
    let forbidden: BTreeMap<&str, &Vec<String>> = rules.iter().map(|(m, f)| (m.as_str(), f)).collect();
    let mut broken = Vec::new();
    for file in &files {
        let module = module_of(file);
        let Some(not) = forbidden.get(module.as_str()) else { continue };
        for (line, name) in imports(file) {
            if not.contains(&name) {
                let shown = file.strip_prefix(root()).unwrap_or(file).display().to_string();
                broken.push(format!("{shown}:{line}: `{module}` must not import `{name}`"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rules broken:\n{}", broken.join("\n"));
}

#[test]
fn the_import_reader_sees_plain_braced_and_nested_paths() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("x.rs");
    let text = "use crate::a::B;\nuse crate::{c, d::E};\n// crate::commented\nfn f() { crate::g::h(); }\n\
                #[cfg(test)]\nmod tests {\n    use crate::t;\n}\n";
    std::fs::write(&file, text).expect("written");
    let names: Vec<(usize, String)> = imports(&file);
    let want: Vec<(usize, String)> =
        [(1, "a"), (2, "c"), (2, "d"), (4, "g")].into_iter().map(|(l, n)| (l, n.to_owned())).collect();
    assert_eq!(names, want);
}
