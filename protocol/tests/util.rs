//! Loading of `schemas/examples/` and the mapping from schema names to Rust types.

use std::path::{Path, PathBuf};

use relaykit_protocol::rest::*;
use relaykit_protocol::schema::SchemaSet;
use relaykit_protocol::{DecodeLimits, decode_client, decode_server, encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One example file.
#[derive(Debug)]
pub(crate) struct Example {
    /// File name, for messages.
    pub file: String,
    /// Schema it targets, e.g. `ws/client/send`.
    pub schema: String,
    /// For invalid examples: the expected error code (`invalid` = schema-only).
    pub expect: Option<String>,
    /// Raw text.
    pub text: String,
}

pub(crate) fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples")
}

/// Splits `ws.client.send.new_task.json` into the longest known schema name and the rest.
fn split_name(set: &SchemaSet, stem: &str) -> Option<(String, Vec<String>)> {
    let parts: Vec<&str> = stem.split('.').collect();
    (1..=parts.len()).rev().find_map(|n| {
        let name = parts[..n].join("/");
        set.names().any(|s| s == name).then(|| (name, parts[n..].iter().map(|s| s.to_string()).collect()))
    })
}

/// Every example in `valid/` (false) or `invalid/` (true).
pub(crate) fn load(invalid: bool) -> Vec<Example> {
    let set = SchemaSet::global();
    let dir = examples_dir().join(if invalid { "invalid" } else { "valid" });
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let stem = file.strip_suffix(".json").unwrap_or_else(|| panic!("{file}: not .json"));
        let (schema, rest) = split_name(set, stem).unwrap_or_else(|| panic!("{file}: names no known schema"));
        assert!(!rest.is_empty(), "{file}: needs a slug after the schema name");
        let expect = invalid.then(|| rest[0].clone());
        let text = std::fs::read_to_string(&path).unwrap();
        out.push(Example { file, schema, expect, text });
    }
    out
}

fn rest_round_trip<T: Serialize + DeserializeOwned>(text: &str) -> Result<Value, String> {
    let value: T = serde_json::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(&value).map_err(|e| e.to_string())
}

/// Decodes `text` with the Rust type of `schema` and encodes it again.
/// `None` when the schema has no single Rust type (`common`).
pub(crate) fn round_trip(schema: &str, text: &str) -> Option<Result<Value, String>> {
    let limits = DecodeLimits::UNBOUNDED;
    let reencode = |s: String| serde_json::from_str::<Value>(&s).map_err(|e| e.to_string());
    Some(match schema {
        s if s.starts_with("ws/client") => {
            decode_client(text, &limits).map_err(|e| e.to_string()).map(|f| encode(&f)).and_then(reencode)
        }
        s if s.starts_with("ws/server") => {
            decode_server(text, &limits).map_err(|e| e.to_string()).map(|f| encode(&f)).and_then(reencode)
        }
        "rest/server_info" => rest_round_trip::<ServerInfo>(text),
        "rest/jwks" => rest_round_trip::<Jwks>(text),
        "rest/register_device_request" => rest_round_trip::<RegisterDevice>(text),
        "rest/register_device_response" => rest_round_trip::<Registered>(text),
        "rest/token_pair" => rest_round_trip::<TokenPair>(text),
        "rest/pairing_code_response" => rest_round_trip::<PairingCode>(text),
        "rest/refresh_request" => rest_round_trip::<RefreshRequest>(text),
        "rest/device_list" => rest_round_trip::<DeviceList>(text),
        "rest/error_response" => rest_round_trip::<ErrorResponse>(text),
        "rest/test_token_request" => rest_round_trip::<TestTokenRequest>(text),
        "rest/test_token_response" => rest_round_trip::<TestTokenResponse>(text),
        "rest/access_token_claims" => rest_round_trip::<AccessClaims>(text),
        "rest/access_token_header" => rest_round_trip::<AccessTokenHeader>(text),
        _ => return None,
    })
}

/// Schema-validates a value, panicking with the violations and `context` if it fails.
pub(crate) fn assert_schema_valid(schema: &str, value: &Value, context: &str) {
    let result = SchemaSet::global().validate_value(schema, value).expect("known schema");
    if let Err(e) = result {
        panic!("{context}: not valid against {schema}: {e}\nvalue: {value}");
    }
}

/// Every key used anywhere under objects of `value`, as dotted paths without array indices.
pub(crate) fn key_paths(value: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.insert(path.clone());
                // Free-form objects: their keys are data, not fields.
                if !matches!(k.as_str(), "payload" | "capabilities" | "claims" | "header") {
                    key_paths(v, &path, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| key_paths(v, prefix, out)),
        _ => {}
    }
}
