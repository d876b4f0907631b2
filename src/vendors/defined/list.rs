//! `auditrelay vendors` and `auditrelay vendors check FILE`: what vendors this installation
//! knows (built in and defined) and whether one definition file is valid. Owns the words
//! these commands print; must not change anything (read-only, no network).

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;

use super::model::{AuthDef, Definition, PagingKind};
use super::registry::{self, Registry};
use crate::vendors::VendorId;

/// Exit code of a refused definition (as `auditrelay check` for a refused configuration).
const REFUSED: u8 = 2;

/// One line of `auditrelay vendors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub title: String,
    pub paging: String,
    pub auth: String,
    /// The documented default budget, e.g. "100 per 1m".
    pub rate_limit: String,
    /// The definition's file, or "built in".
    pub from: String,
}

pub fn paging_name(kind: &PagingKind) -> &'static str {
    match kind {
        PagingKind::Offset { .. } => "offset",
        PagingKind::Page { .. } => "page",
        PagingKind::Cursor { .. } => "cursor",
        PagingKind::NextUrl { .. } => "next_url",
        PagingKind::Link { .. } => "link",
        PagingKind::None => "none",
    }
}

pub fn auth_name(auth: &AuthDef) -> &'static str {
    match auth {
        AuthDef::Header { .. } => "header",
        AuthDef::Bearer => "bearer",
        AuthDef::Basic => "basic",
        AuthDef::OAuth2 { .. } => "oauth2",
    }
}

fn budget(requests: u32, per: std::time::Duration) -> String {
    format!("{requests} per {}", humantime::format_duration(per))
}

/// The built-in vendors' paging and auth, as their `source.rs` asks (vendors/README.md).
fn builtin_protocol(id: VendorId) -> (&'static str, &'static str) {
    match id.name() {
        "aitronos" => ("offset", "header X-API-Key or bearer"),
        "astronomer" => ("none (one NDJSON export per window)", "bearer"),
        "configcat" => ("page (v2) or none (v1)", "basic"),
        "datafold" => ("none", "header Authorization: Key"),
        _ => ("", ""),
    }
}

pub fn row(def: &Definition) -> Row {
    Row {
        name: def.name.clone(),
        title: def.title.clone(),
        paging: paging_name(&def.paging.kind).to_owned(),
        auth: auth_name(&def.auth).to_owned(),
        rate_limit: budget(def.rate_limit.requests, def.rate_limit.per),
        from: def.path.display().to_string(),
    }
}

/// Every built-in vendor, then every definition of `registry`, by name.
pub fn rows(registry: &Registry) -> Vec<Row> {
    let builtins = VendorId::ALL.iter().map(|id| {
        let d = id.defaults();
        let (paging, auth) = builtin_protocol(*id);
        Row {
            name: id.name().to_owned(),
            title: id.name().to_owned(),
            paging: paging.to_owned(),
            auth: auth.to_owned(),
            rate_limit: budget(d.requests, d.per),
            from: "built in".to_owned(),
        }
    });
    builtins.chain(registry.all().iter().map(|d| row(d))).collect()
}

/// `auditrelay vendors`: the built-in vendors and those defined in `dir`, else in the
/// `vendors_dir` of `config`, else in the default directory (whose absence is no error).
pub fn run_list(dir: Option<&Path>, config: Option<&Path>, json: bool) -> ExitCode {
    let loaded = match (dir, config) {
        (Some(d), _) => Registry::load_dir(d, true).map(|r| (r, d.to_path_buf())).map_err(|e| e.to_string()),
        (None, Some(c)) => crate::config::Config::load_without_secrets(c)
            .map(|c| (c.vendors, c.vendors_dir))
            .map_err(|e| e.to_string()),
        (None, None) => {
            let d = Path::new(registry::DEFAULT_DIR);
            Registry::load_dir(d, false).map(|r| (r, d.to_path_buf())).map_err(|e| e.to_string())
        }
    };
    let (registry, dir) = match loaded {
        Ok(found) => found,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(REFUSED);
        }
    };
    let rows = rows(&registry);
    if json {
        let list: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({"name": r.name, "title": r.title, "paging": r.paging, "auth": r.auth,
                       "rate_limit": r.rate_limit, "from": r.from})
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let header = Row {
            name: "NAME".into(),
            title: "TITLE".into(),
            paging: "PAGING".into(),
            auth: "AUTH".into(),
            rate_limit: "RATE LIMIT".into(),
            from: "FROM".into(),
        };
        let all: Vec<&Row> = std::iter::once(&header).chain(&rows).collect();
        let width = |f: fn(&Row) -> &str| all.iter().map(|r| f(r).chars().count()).max().unwrap_or(0);
        let w = [
            width(|r| &r.name),
            width(|r| &r.title),
            width(|r| &r.paging),
            width(|r| &r.auth),
            width(|r| &r.rate_limit),
        ];
        for r in all {
            println!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}",
                r.name,
                r.title,
                r.paging,
                r.auth,
                r.rate_limit,
                r.from,
                w0 = w[0],
                w1 = w[1],
                w2 = w[2],
                w3 = w[3],
                w4 = w[4]
            );
        }
        println!("definitions directory: {}", dir.display());
    }
    ExitCode::SUCCESS
}

/// `auditrelay vendors check FILE`: a summary and exit 0, or every problem (file:line: key:
/// message) on stderr and exit 2.
pub fn run_check(file: &Path) -> ExitCode {
    match super::format::load(file) {
        Ok(def) => {
            let r = row(&def);
            println!("{}: ok: vendor {:?} ({})", file.display(), r.name, r.title);
            println!("  paging {}, auth {}, default rate limit {}", r.paging, r.auth, r.rate_limit);
            let mapping = def.mapping.describe();
            if !mapping.is_empty() {
                println!("  mapping: {mapping}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(REFUSED)
        }
    }
}
