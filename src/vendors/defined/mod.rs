//! Vendors described by a definition file (docs/vendor-definitions.md): any SaaS audit-log API
//! by data, not code. Owns turning a file into a validated [`model::Definition`] (`format.rs`),
//! the declarative OCSF mapping (`mapping.rs`) and the OAuth2 token cache (`auth.rs`). A
//! definition is data: nothing here executes anything a file says, and every value is bounded
//! at load, so the runtime never re-validates one.
//!
//! `registry.rs` finds and interns definitions; `runtime.rs` holds the pure pieces of running
//! one (templates, time formats, the `Link` parser, answers); `source.rs` is one configured
//! organization ([`source::DefinedSource`]: request, paging, rate signals); `list.rs` the
//! `auditrelay vendors` commands. Wired in `vendors/mod.rs` (`VendorId::Defined`,
//! `VendorSettings::Defined`), `config` (a source's `vendor` names a definition of the
//! definitions directory or a file) and the source loop (`sources/mod.rs`: the OAuth2 step,
//! the answer's headers for `Link` paging, the definition's rate signals).

pub mod auth;
pub mod format;
pub mod list;
pub mod mapping;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod source;
