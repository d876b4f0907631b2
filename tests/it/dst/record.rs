//! How the harness names one vendor record wherever it meets it: in the vendor model's store, in
//! an OCSF event at a sink, in a dead letter. The name is `product:key`, the key being the
//! vendor's id (`metadata.original_event_uid`) or, for Astronomer, which has none, the record's
//! NDJSON line in canonical JSON (keys sorted).

use auditrelay::sim::SimVendor;
use serde_json::Value;

/// The OCSF `metadata.product.name` of each simulated vendor.
pub fn product(v: SimVendor) -> &'static str {
    match v {
        SimVendor::Aitronos => "Aitronos",
        SimVendor::Astronomer => "Astro",
        SimVendor::ConfigCat => "ConfigCat",
        SimVendor::Datafold => "Datafold",
    }
}

/// A JSON text in canonical form; the text itself when it is not JSON.
pub fn canonical(json: &str) -> String {
    serde_json::from_str::<Value>(json).map_or_else(|_| json.to_owned(), |v| v.to_string())
}

/// The name of the record an OCSF event carries.
pub fn record_key(event: &Value) -> String {
    let product = event["metadata"]["product"]["name"].as_str().unwrap_or("?");
    match event["metadata"]["original_event_uid"].as_str() {
        Some(id) => format!("{product}:{id}"),
        None => format!("{product}:{}", canonical(event["raw_data"].as_str().unwrap_or_default())),
    }
}

/// The name of a store record of `v`, from the key [`auditrelay::sim::Sim::record_keys`] gives.
pub fn store_key(v: SimVendor, key: &str) -> String {
    match v {
        SimVendor::Astronomer => format!("{}:{}", product(v), canonical(key)),
        _ => format!("{}:{key}", product(v)),
    }
}

/// The name of the record a source dead-lettered (its raw vendor bytes), if they are one.
pub fn raw_key(v: SimVendor, raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let id_field = match v {
        SimVendor::Astronomer => return Some(store_key(v, text)),
        SimVendor::Aitronos => "id",
        SimVendor::ConfigCat => "auditLogId",
        SimVendor::Datafold => "event_uuid",
    };
    let value: Value = serde_json::from_str(text).ok()?;
    match &value[id_field] {
        Value::String(s) => Some(store_key(v, s)),
        Value::Number(n) => Some(store_key(v, &n.to_string())),
        _ => None,
    }
}
