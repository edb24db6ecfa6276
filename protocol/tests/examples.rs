//! The example files of `schemas/examples/` against the schemas and the Rust types: valid
//! examples pass both and survive a decode/encode round trip unchanged; invalid ones are
//! refused by both, the decoder with the error code the file name announces.

use std::collections::{BTreeMap, BTreeSet};

use relaykit_protocol::schema::{CLIENT_FRAME, SERVER_FRAME, SchemaSet, schema_text};
use relaykit_protocol::{DecodeLimits, DurableKind, LiveKind, decode_client, decode_server};
use serde_json::Value;

use crate::util::{self, assert_schema_valid, key_paths, round_trip};

fn union_of(schema: &str) -> Option<&'static str> {
    if schema.starts_with("ws/client") {
        Some(CLIENT_FRAME)
    } else if schema.starts_with("ws/server") {
        Some(SERVER_FRAME)
    } else {
        None
    }
}

#[test]
fn every_schema_has_valid_and_invalid_examples() {
    let valid: BTreeSet<String> = util::load(false).into_iter().map(|e| e.schema).collect();
    let invalid: BTreeSet<String> = util::load(true).into_iter().map(|e| e.schema).collect();
    for name in SchemaSet::global().names().filter(|n| *n != "common") {
        let is_union = name == CLIENT_FRAME || name == SERVER_FRAME;
        assert!(is_union || valid.contains(name), "no valid example for {name}");
        assert!(invalid.contains(name), "no invalid example for {name}");
    }
}

#[test]
fn valid_examples_pass_their_schema_and_round_trip_unchanged() {
    let examples = util::load(false);
    assert!(examples.len() >= 50, "only {} valid examples", examples.len());
    for ex in examples {
        let value: Value = serde_json::from_str(&ex.text).unwrap_or_else(|e| panic!("{}: {e}", ex.file));
        assert_schema_valid(&ex.schema, &value, &ex.file);
        if let Some(union) = union_of(&ex.schema) {
            assert_schema_valid(union, &value, &ex.file);
        }
        let Some(result) = round_trip(&ex.schema, &ex.text) else { continue };
        let again = result.unwrap_or_else(|e| panic!("{}: the Rust types refuse it: {e}", ex.file));
        assert_eq!(again, value, "{}: decode+encode changed the message", ex.file);
        assert_schema_valid(&ex.schema, &again, &format!("{} (re-encoded)", ex.file));
    }
}

#[test]
fn invalid_examples_are_refused_by_schema_and_decoder() {
    let examples = util::load(true);
    assert!(examples.len() >= 50, "only {} invalid examples", examples.len());
    let limits = DecodeLimits::default();
    for ex in examples {
        let expect = ex.expect.as_deref().unwrap();
        let verdict = SchemaSet::global().validate_text(&ex.schema, &ex.text).unwrap();
        assert!(verdict.is_err(), "{}: the schema accepts an invalid example", ex.file);
        if let Some(union) = union_of(&ex.schema) {
            let verdict = SchemaSet::global().validate_text(union, &ex.text).unwrap();
            assert!(verdict.is_err(), "{}: the frame union accepts it", ex.file);
        }
        if ex.schema.starts_with("ws/client") {
            let err = decode_client(&ex.text, &limits)
                .err()
                .unwrap_or_else(|| panic!("{}: the decoder accepts an invalid frame", ex.file));
            assert_eq!(err.code().as_str(), expect, "{}: wrong error code ({err})", ex.file);
            if expect == "invalid_field" {
                let field = err.field().unwrap_or_else(|| panic!("{}: error names no field", ex.file));
                assert!(!field.is_empty() && field != ".", "{}: error names no field: {err}", ex.file);
            }
        } else {
            assert_eq!(expect, "invalid", "{}: only client frames announce a decoder code", ex.file);
            if ex.schema.starts_with("ws/server") {
                // Relay frames are policed by the schemas; the decoder must at least not panic.
                let _ = decode_server(&ex.text, &limits);
            }
        }
    }
}

#[test]
fn every_application_type_has_client_and_relay_examples() {
    let limits = DecodeLimits::UNBOUNDED;
    let mut sent = BTreeSet::new();
    let mut delivered = BTreeSet::new();
    for ex in util::load(false) {
        if ex.schema.starts_with("ws/client/") {
            sent.insert(decode_client(&ex.text, &limits).unwrap().type_name());
        } else if ex.schema.starts_with("ws/server/") {
            delivered.insert(decode_server(&ex.text, &limits).unwrap().type_name());
        }
    }
    let names = DurableKind::ALL.iter().map(|k| k.as_str()).chain(LiveKind::ALL.iter().map(|k| k.as_str()));
    for name in names {
        assert!(sent.contains(name), "no valid client example of type {name}");
        assert!(delivered.contains(name), "no valid relay example of type {name}");
    }
}

/// Schema -> types: every property a schema declares appears in some valid example, and those
/// examples round-trip unchanged through the Rust types (test above), so the types know it.
#[test]
fn every_schema_property_is_exercised_by_a_valid_example() {
    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ex in util::load(false) {
        let value: Value = serde_json::from_str(&ex.text).unwrap();
        key_paths(&value, "", used.entry(ex.schema.clone()).or_default());
    }
    for name in SchemaSet::global().names() {
        if name == "common" || name == CLIENT_FRAME || name == SERVER_FRAME {
            continue;
        }
        let mut declared = BTreeSet::new();
        declared_paths(name, &format!("{name}#"), "", &mut declared, 0);
        let seen = used.get(name).cloned().unwrap_or_default();
        let missing: Vec<_> = declared.difference(&seen).collect();
        assert!(missing.is_empty(), "{name}: properties no valid example uses: {missing:?}");
    }
}

/// Property paths a schema declares, following `$ref`s into other files.
fn declared_paths(doc: &str, at: &str, prefix: &str, out: &mut BTreeSet<String>, depth: usize) {
    assert!(depth < 20, "schema nesting too deep at {at}");
    let (file, pointer) = at.split_once('#').unwrap();
    let root: Value = serde_json::from_str(schema_text(file).unwrap()).unwrap();
    let Some(node) = root.pointer(pointer) else { panic!("{doc}: dangling $ref {at}") };
    if let Some(r) = node.get("$ref").and_then(Value::as_str) {
        declared_paths(doc, &resolve(file, r), prefix, out, depth + 1);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, _) in node.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            declared_paths(doc, &format!("{file}#{pointer}/{key}/{i}"), prefix, out, depth + 1);
        }
    }
    if node.get("items").is_some_and(Value::is_object) {
        declared_paths(doc, &format!("{file}#{pointer}/items"), prefix, out, depth + 1);
    }
    for (k, _) in node.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        out.insert(path.clone());
        if !matches!(k.as_str(), "payload" | "capabilities" | "claims" | "header") {
            declared_paths(doc, &format!("{file}#{pointer}/properties/{k}"), &path, out, depth + 1);
        }
    }
}

/// Resolves a `$ref` written in schema `file` to `name#pointer`.
fn resolve(file: &str, reference: &str) -> String {
    let (path, pointer) = reference.split_once('#').unwrap_or((reference, ""));
    if path.is_empty() {
        return format!("{file}#{pointer}");
    }
    let mut parts: Vec<&str> = file.split('/').collect();
    parts.pop();
    for seg in path.trim_end_matches(".json").split('/') {
        match seg {
            ".." => {
                parts.pop();
            }
            "." => {}
            s => parts.push(s),
        }
    }
    format!("{}#{pointer}", parts.join("/"))
}
