//! Test-only check that an event is valid OCSF 1.8.0, offline and without Python: the same
//! verdict as `../shared/ocsf/validate-ocsf`, so `cargo test` catches what CI's run of that
//! script would. One file for both kinds of test: the library's unit tests include it as
//! `crate::ocsf::schema_check` (its own tests are in `src/ocsf/schema_check_tests.rs`), the
//! end-to-end tests as `harness::ocsf_schema`, so every event any test produces can be checked.
//!
//! Two halves, both read from `tests/fixtures/ocsf-schema/` (see its README for provenance):
//! - the JSON Schema (draft 2020-12) that `validate-ocsf --dump-json-schema` prints for each
//!   class auditrelay emits, compiled once with the `jsonschema` crate. It checks required
//!   attributes, types, enums, the regex-typed scalars (`ip_t`, `email_t`, ...), the
//!   `at_least_one` constraints and unknown attributes;
//! - `attributes.json`, the facts those schemas cannot express, for the side checks
//!   `validate-ocsf` runs: `type_uid == class_uid * 100 + activity_id`, `category_uid ==
//!   class_uid / 1000`, `metadata.version`, known profile names, the `*_name` siblings equal to
//!   the captions of their `*_id`, deprecated attributes, and no `null`.
//!
//! Where it is stricter than `validate-ocsf`, on purpose: the sibling-caption and deprecation
//! *warnings* there are errors here (our captions come from tables, so a mismatch is a bug);
//! `metadata.version` must be exactly 1.8.0; the schemas are exported without profiles, so an
//! attribute only a profile allows is an unknown attribute (MAPPING.md §2.1: no profiles);
//! a `null` attribute value is an error even where the schema types it `json_t`. Nulls *inside*
//! a free-form value (`unmapped`, `json_t`) are allowed, as in `validate-ocsf` (MAPPING §2.5).
//! What it leaves out: missing *recommended* attributes (`--warn-recommended`), and classes
//! auditrelay does not emit (their `class_uid` is reported invalid).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

/// The exported JSON Schema of each class auditrelay emits.
pub(crate) const SCHEMAS: [(u64, &str); 6] = [
    (3001, include_str!("../fixtures/ocsf-schema/3001.json")),
    (3002, include_str!("../fixtures/ocsf-schema/3002.json")),
    (3004, include_str!("../fixtures/ocsf-schema/3004.json")),
    (3005, include_str!("../fixtures/ocsf-schema/3005.json")),
    (3006, include_str!("../fixtures/ocsf-schema/3006.json")),
    (6003, include_str!("../fixtures/ocsf-schema/6003.json")),
];

const ATTRIBUTES: &str = include_str!("../fixtures/ocsf-schema/attributes.json");

/// The draft every exported schema declares; a re-export that changes it must be looked at.
pub(crate) const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Panics with every error and the event itself unless `event` is valid OCSF 1.8.0.
#[track_caller]
pub fn assert_valid(event: &Value) {
    let errors = errors(event);
    if !errors.is_empty() {
        let pretty = serde_json::to_string_pretty(event).unwrap_or_else(|_| event.to_string());
        panic!("invalid OCSF event ({} errors):\n  - {}\nevent: {pretty}", errors.len(), errors.join("\n  - "));
    }
}

/// Every reason `event` is not valid OCSF 1.8.0; empty when it is valid. Each reason starts
/// with the attribute path it is about, like `validate-ocsf`'s.
pub fn errors(event: &Value) -> Vec<String> {
    let Some(item) = event.as_object() else {
        return vec![format!("event must be a JSON object, got {}", json_type(event))];
    };
    let class_uid = match item.get("class_uid") {
        None => return vec!["missing required attribute 'class_uid' (cannot pick an event class)".to_owned()],
        Some(v) => match v.as_u64() {
            Some(uid) => uid,
            None => return vec![format!("class_uid: wrong type, expected integer but got {}", short(v))],
        },
    };
    let Some(class) = CLASSES.get(&class_uid) else {
        let known: Vec<String> = SCHEMAS.iter().map(|(uid, _)| uid.to_string()).collect();
        return vec![format!(
            "class_uid: {class_uid} is not a class auditrelay emits (one of {}); no schema is checked in for it",
            known.join(", ")
        )];
    };

    let mut errors = Vec::new();
    let metadata = item.get("metadata").and_then(Value::as_object);
    check_profiles(metadata, &mut errors);
    // The arithmetic first: the schema only knows the *set* of valid ids, so its own error
    // for the same attribute would say less; it is dropped below.
    let mut reported = Vec::new();
    let int = |key: &str| item.get(key).and_then(Value::as_i64);
    if let (Some(cu), Some(ai), Some(tu)) = (int("class_uid"), int("activity_id"), int("type_uid"))
        && tu != cu * 100 + ai
    {
        errors
            .push(format!("type_uid: expected {} (class_uid {cu} * 100 + activity_id {ai}), got {tu}", cu * 100 + ai));
        reported.push("/type_uid");
    }
    if let (Some(cu), Some(cat)) = (int("class_uid"), int("category_uid"))
        && cat != cu / 1000
    {
        errors.push(format!("category_uid: expected {} (class_uid {cu} / 1000), got {cat}", cu / 1000));
        reported.push("/category_uid");
    }

    let mut schema_errors: Vec<(String, String)> = class
        .validator
        .iter_errors(event)
        .filter(|e| !reported.contains(&e.instance_path().as_str()))
        // A null gets one clearer message from `check_attributes`, which reports every null
        // outside free-form values (the only place the schema accepts one).
        .filter(|e| !e.instance().is_null())
        .map(|e| (e.instance_path().as_str().to_owned(), describe(&e)))
        .collect();
    schema_errors.sort();
    schema_errors.dedup();
    errors.extend(schema_errors.into_iter().map(|(_, message)| message));

    if let Some(version) = metadata.and_then(|m| m.get("version")).and_then(Value::as_str)
        && version != TABLE.version
    {
        errors.push(format!("metadata.version: expected \"{}\", got {}", TABLE.version, short(&Value::from(version))));
    }
    if class.table.deprecated {
        errors.push(format!("class '{}' is deprecated", class.table.name));
    }
    check_attributes(item, &class.table.attributes, "", &mut errors);
    errors
}

// ---- the side tables -----------------------------------------------------------------------

/// `attributes.json`: what `validate-ocsf` reads from the compiled schema beside the JSON Schema.
#[derive(Deserialize)]
pub(crate) struct Table {
    pub(crate) version: String,
    profiles: Vec<String>,
    /// Regex → the OCSF type that carries it, to name the type in an error.
    patterns: HashMap<String, String>,
    classes: HashMap<u64, ClassTable>,
    objects: HashMap<String, ObjectTable>,
}

#[derive(Deserialize)]
struct ClassTable {
    name: String,
    #[serde(default)]
    deprecated: bool,
    attributes: HashMap<String, Attribute>,
}

#[derive(Deserialize)]
struct ObjectTable {
    #[serde(default)]
    deprecated: bool,
    attributes: HashMap<String, Attribute>,
}

/// An attribute as far as the side checks care; plain scalars are not listed.
#[derive(Deserialize)]
struct Attribute {
    /// `json_t` or `unmapped`: any JSON inside.
    #[serde(default)]
    free: bool,
    /// The object type, when the attribute holds an object (or an array of them).
    object: Option<String>,
    /// The `*_name` attribute beside this `*_id`, with the caption of each id.
    sibling: Option<String>,
    captions: Option<HashMap<String, String>>,
    /// "since X: use Y instead".
    deprecated: Option<String>,
}

pub(crate) struct Class {
    pub(crate) validator: jsonschema::Validator,
    table: &'static ClassTable,
}

pub(crate) static TABLE: LazyLock<Table> = LazyLock::new(|| match serde_json::from_str(ATTRIBUTES) {
    Ok(table) => table,
    Err(e) => panic!("tests/fixtures/ocsf-schema/attributes.json: {e}"),
});

/// Each class's validator, compiled once per test binary (the unit tests' and the integration tests').
pub(crate) static CLASSES: LazyLock<HashMap<u64, Class>> = LazyLock::new(|| {
    SCHEMAS
        .iter()
        .map(|&(uid, text)| {
            let file = format!("tests/fixtures/ocsf-schema/{uid}.json");
            let schema: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            let declared = schema.get("$schema").and_then(Value::as_str);
            assert_eq!(declared, Some(DRAFT_2020_12), "{file}: the checks here assume draft 2020-12");
            let validator = jsonschema::draft202012::options()
                .build(&schema)
                .unwrap_or_else(|e| panic!("{file}: the jsonschema crate rejects it: {e}"));
            let table = TABLE.classes.get(&uid).unwrap_or_else(|| panic!("attributes.json has no class {uid}"));
            (uid, Class { validator, table })
        })
        .collect()
});

// ---- side checks ---------------------------------------------------------------------------

fn check_profiles(metadata: Option<&Map<String, Value>>, errors: &mut Vec<String>) {
    let profiles = metadata.and_then(|m| m.get("profiles")).and_then(Value::as_array).into_iter().flatten();
    for (i, profile) in profiles.enumerate() {
        if let Some(name) = profile.as_str()
            && !TABLE.profiles.iter().any(|p| p == name)
        {
            errors.push(format!("metadata.profiles[{i}]: unknown profile {}", short(profile)));
        }
    }
}

/// Walks `item` like `validate-ocsf`'s `_walk`: sibling captions and deprecations of known
/// attributes, objects by their own table; plus any `null` outside free-form values.
fn check_attributes(
    item: &Map<String, Value>,
    attributes: &HashMap<String, Attribute>,
    path: &str,
    errors: &mut Vec<String>,
) {
    for (name, value) in item {
        let here = if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
        if value.is_null() {
            errors.push(format!("{here}: null is not allowed (omit the attribute instead of sending null)"));
            continue;
        }
        let Some(attribute) = attributes.get(name) else {
            // A plain scalar or array of scalars (or an unknown attribute, which the schema
            // reports): only nulls to look for.
            check_nulls(value, &here, errors);
            continue;
        };
        if attribute.free {
            continue;
        }
        if let Some(since) = &attribute.deprecated {
            errors.push(format!("{here}: attribute is deprecated {since}"));
        }
        if let (Some(sibling), Some(captions)) = (&attribute.sibling, &attribute.captions) {
            check_caption(item, &here, value, path, sibling, captions, errors);
        }
        let Some(object) = attribute.object.as_deref() else {
            check_nulls(value, &here, errors);
            continue;
        };
        let Some(table) = TABLE.objects.get(object) else {
            check_nulls(value, &here, errors);
            continue;
        };
        if table.deprecated {
            errors.push(format!("{here}: object '{object}' is deprecated"));
        }
        match value {
            Value::Object(inner) => check_attributes(inner, &table.attributes, &here, errors),
            Value::Array(items) => {
                for (i, element) in items.iter().enumerate() {
                    let at = format!("{here}[{i}]");
                    match element {
                        Value::Object(inner) => check_attributes(inner, &table.attributes, &at, errors),
                        other => check_nulls(other, &at, errors),
                    }
                }
            }
            _ => {}
        }
    }
}

/// `*_name` must be the caption of `*_id`, except for 99 (Other), where it must carry the
/// source's own value instead of the caption "Other".
fn check_caption(
    item: &Map<String, Value>,
    here: &str,
    id: &Value,
    path: &str,
    sibling: &str,
    captions: &HashMap<String, String>,
    errors: &mut Vec<String>,
) {
    let (Some(id), Some(sibling_value)) = (id.as_i64(), item.get(sibling).filter(|v| !v.is_null())) else { return };
    let Some(caption) = captions.get(&id.to_string()) else { return };
    let sibling_path = if path.is_empty() { sibling.to_owned() } else { format!("{path}.{sibling}") };
    let matches = sibling_value.as_str() == Some(caption.as_str());
    if id == 99 && matches {
        errors.push(format!(
            "{sibling_path}: value \"{caption}\" for {here}=99 should carry the source's own value, not the caption"
        ));
    } else if id != 99 && !matches {
        errors
            .push(format!("{sibling_path}: expected \"{caption}\" to match {here}={id}, got {}", short(sibling_value)));
    }
}

fn check_nulls(value: &Value, path: &str, errors: &mut Vec<String>) {
    match value {
        Value::Null => errors.push(format!("{path}: null is not allowed (omit the attribute instead of sending null)")),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| check_nulls(v, &format!("{path}[{i}]"), errors))
        }
        Value::Object(map) => map.iter().for_each(|(k, v)| check_nulls(v, &format!("{path}.{k}"), errors)),
        _ => {}
    }
}

// ---- wording -------------------------------------------------------------------------------

/// One schema error in `validate-ocsf`'s words.
fn describe(error: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let at = dotted(error.instance_path());
    let instance = error.instance();
    match error.kind() {
        Kind::Required { property } => {
            let name = property.as_str().map_or_else(|| property.to_string(), str::to_owned);
            let prefix = if at == "<event>" { String::new() } else { format!("{at}.") };
            format!("missing required attribute '{prefix}{name}'")
        }
        Kind::AdditionalProperties { unexpected } => {
            let names: Vec<String> = unexpected.iter().map(|k| format!("'{k}'")).collect();
            let scope = if at == "<event>" { "event".to_owned() } else { format!("object at '{at}'") };
            format!(
                "unknown attribute(s) {} in {scope} (not defined by the schema for this class without profiles; \
                 put source-specific fields under 'unmapped')",
                names.join(", ")
            )
        }
        Kind::Constant { expected_value } => format!("{at}: expected {expected_value}, got {}", short(instance)),
        Kind::Enum { options } => {
            let allowed: Vec<String> = options.as_array().into_iter().flatten().map(Value::to_string).collect();
            let more = if allowed.len() > 20 { ", ..." } else { "" };
            let shown = allowed.iter().take(20).cloned().collect::<Vec<_>>().join(", ");
            format!("{at}: value {} is not an allowed enum value (allowed: {shown}{more})", short(instance))
        }
        Kind::Type { kind: jsonschema::error::TypeKind::Single(expected) } => {
            format!("{at}: wrong type, expected {expected} but got {} {}", json_type(instance), short(instance))
        }
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => {
            let any = matches!(error.kind(), Kind::AnyOf { .. });
            let scope = if at == "<event>" { "event".to_owned() } else { format!("'{at}'") };
            // OCSF's at_least_one / just_one: every branch is one `required`.
            let fields: Option<Vec<String>> = context
                .iter()
                .map(|branch| match branch.as_slice() {
                    [only] => match only.kind() {
                        Kind::Required { property } => property.as_str().map(str::to_owned),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            match fields {
                Some(fields) if any => format!("{scope}: at least one of [{}] is required", fields.join(", ")),
                Some(fields) => format!("{scope}: exactly one of [{}] is required", fields.join(", ")),
                None => format!("{at}: {error}"),
            }
        }
        Kind::Pattern { pattern } => {
            let type_name = TABLE.patterns.get(pattern).map_or("its OCSF type", String::as_str);
            format!("{at}: value {} is not a valid {type_name}", short(instance))
        }
        Kind::MaxLength { .. } | Kind::Minimum { .. } | Kind::Maximum { .. } => {
            format!("{at}: value {} is out of range ({error})", short(instance))
        }
        _ => format!("{at}: {error}"),
    }
}

/// `/src_endpoint/ip` → `src_endpoint.ip`, `/resources/0/uid` → `resources[0].uid`.
fn dotted(location: &jsonschema::paths::Location) -> String {
    let mut out = String::new();
    for segment in location.segments() {
        match segment {
            jsonschema::paths::LocationSegment::Index(i) => out.push_str(&format!("[{i}]")),
            jsonschema::paths::LocationSegment::Property(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&name);
            }
        }
    }
    if out.is_empty() { "<event>".to_owned() } else { out }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 { text } else { format!("{}...", text.chars().take(77).collect::<String>()) }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON types seen at each attribute path over many events (`resources[].uid`: arrays
/// collapse to `[]`), for [`assert_one_type_per_path`]. Integers and floats are one type
/// (`number`), as Elasticsearch's dynamic mapping takes either into one numeric field.
#[derive(Debug, Default)]
pub struct PathTypes {
    seen: std::collections::BTreeMap<String, std::collections::BTreeMap<&'static str, usize>>,
}

impl PathTypes {
    pub fn add(&mut self, event: &Value) {
        self.walk(event, String::new());
    }

    fn walk(&mut self, value: &Value, path: String) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        *self.seen.entry(path.clone()).or_default().entry(kind).or_default() += 1;
        match value {
            Value::Object(o) => {
                for (k, v) in o {
                    self.walk(v, if path.is_empty() { k.clone() } else { format!("{path}.{k}") });
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.walk(v, format!("{path}[]"))),
            _ => {}
        }
    }

    /// Every path with more than one type, with the count of each.
    pub fn conflicts(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(_, kinds)| kinds.len() > 1)
            .map(|(path, kinds)| format!("{path}: {kinds:?}"))
            .collect()
    }
}

/// Panics naming each attribute path whose JSON type differs between `events` (what
/// Elasticsearch's dynamic mapping would refuse: the second type's document is rejected).
#[track_caller]
pub fn assert_one_type_per_path<'a>(events: impl IntoIterator<Item = &'a Value>) {
    let mut types = PathTypes::default();
    events.into_iter().for_each(|e| types.add(e));
    let conflicts = types.conflicts();
    assert!(conflicts.is_empty(), "attribute paths with more than one JSON type:\n{}", conflicts.join("\n"));
}

/// Panics unless `observables` lists every IP address, user name, e-mail address, user agent
/// and user uid the event holds at the places auditrelay fills (MAPPING §5a rule 6), each with
/// its OCSF type id, and nothing that is not in the event.
#[track_caller]
pub fn assert_observables(event: &Value) {
    const USERS: [&str; 5] = ["actor.user", "user", "user_result", "entity.user", "entity_result.user"];
    let at = |path: &str| path.split('.').try_fold(event, |v, k| v.get(k)).and_then(Value::as_str).map(str::to_owned);
    let mut want: Vec<(String, u64, String)> = Vec::new();
    for user in USERS {
        // Type 0 (Unknown): a placeholder for nobody the record names, no observable; type 3
        // (System): the vendor's own automation, whose name is a label, not an account.
        let kind = user.split('.').try_fold(event, |v, k| v.get(k)).and_then(|u| u["type_id"].as_u64());
        if kind == Some(0) {
            continue;
        }
        for (field, type_id) in [("uid", 31), ("name", 4), ("email_addr", 5)] {
            if kind == Some(3) && field == "name" {
                continue;
            }
            let path = format!("{user}.{field}");
            want.extend(at(&path).map(|v| (path, type_id, v)));
        }
    }
    want.extend(at("src_endpoint.ip").map(|v| ("src_endpoint.ip".to_owned(), 2, v)));
    let intermediate: Vec<String> = event["src_endpoint"]["intermediate_ips"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    want.extend(intermediate.iter().map(|v| ("src_endpoint.intermediate_ips".to_owned(), 2, v.clone())));
    want.extend(at("http_request.user_agent").map(|v| ("http_request.user_agent".to_owned(), 16, v)));
    let empty = Vec::new();
    let got: Vec<(String, u64, String)> = event
        .get("observables")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
        .iter()
        .map(|o| {
            let name = o["name"].as_str().unwrap_or_default().to_owned();
            (name, o["type_id"].as_u64().unwrap_or_default(), o["value"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    for w in &want {
        assert!(got.contains(w), "observable {w:?} missing in {event}");
    }
    for g in &got {
        if g.0 == "src_endpoint.intermediate_ips" {
            assert!(intermediate.contains(&g.2), "observable {g:?} is not the event's value: {event}");
            continue;
        }
        assert_eq!(at(&g.0).as_deref(), Some(g.2.as_str()), "observable {g:?} is not the event's value: {event}");
    }
}

/// Panics when a value in `unmapped` is also an attribute value elsewhere in the event
/// (MAPPING §5a rule 9: `unmapped` holds only vendor fields placed nowhere else). `raw_data`
/// and `observables` (copies by design) are not looked at; values shorter than 4 characters
/// (`true`, `0`, `ui`) are too common to tell.
#[track_caller]
pub fn assert_unmapped_not_placed(event: &Value) {
    fn leaves<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
            Value::Object(o) => o.values().for_each(|v| leaves(v, out)),
            _ => {}
        }
    }
    let Some(unmapped) = event.get("unmapped").and_then(Value::as_object) else { return };
    let mut placed = Vec::new();
    for (key, value) in event.as_object().into_iter().flatten() {
        if !["raw_data", "unmapped", "observables"].contains(&key.as_str()) {
            leaves(value, &mut placed);
        }
    }
    for (key, value) in unmapped {
        let Some(text) = value.as_str() else { panic!("unmapped.{key} is not text: {event}") };
        assert!(
            text.chars().count() < 4 || !placed.contains(&text),
            "unmapped.{key} = {text:?} is also placed elsewhere in the event: {event}"
        );
    }
}
