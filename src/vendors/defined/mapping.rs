//! The declarative OCSF mapping of a vendor definition (`[ocsf]`, docs/vendor-definitions.md).
//! SKELETON written by the lead so that format.rs can be built against it; helper B owns this
//! file and replaces the body (keeping the public API: `MappingKeys`, `MappingError`,
//! `Mapping::from_keys`, `Mapping::map`, `Mapping::describe`).

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ocsf::event::EventParts;
use crate::ocsf::{Context, Unmappable};

use super::model::Definition;

/// `[ocsf]` as written (serde, `deny_unknown_fields`, `toml::Spanned` values for messages).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingKeys {
    pub action: Option<toml::Spanned<String>>,
}

/// One problem in `[ocsf]`: the span in the file (for the line), the key path under `ocsf`
/// (`"ocsf.rules[2].regex"`), and what is wrong.
#[derive(Debug, Clone)]
pub struct MappingError {
    pub span: Option<std::ops::Range<usize>>,
    pub key: String,
    pub message: String,
}

/// The validated mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub action: String,
}

impl Mapping {
    /// Validates `[ocsf]`; every problem is reported, not only the first.
    pub fn from_keys(keys: MappingKeys) -> Result<Mapping, Vec<MappingError>> {
        match keys.action {
            Some(a) => Ok(Mapping { action: a.into_inner() }),
            None => Err(vec![MappingError { span: None, key: "ocsf.action".into(), message: "is required".into() }]),
        }
    }

    /// The OCSF event of one record (pure: no I/O, no clock). `def` gives the product names and
    /// the uid name.
    pub fn map(&self, def: &Definition, _record: &Map<String, Value>, _ctx: &Context<'_>) -> Result<EventParts, Unmappable> {
        Err(Unmappable(format!("{}: the declarative mapping is not built yet", def.name)))
    }

    /// One line for `auditrelay vendors`: e.g. "api_activity by default, 12 rules".
    pub fn describe(&self) -> String {
        String::new()
    }
}
