//! docs/PROTOCOL.md against the crate: the requirement catalogue is well-formed and indexed, and
//! every code, close code, limit default and message type of the crate is specified in a table
//! row of the document (and vice versa for requirement IDs, which are generated from it).

use std::collections::{BTreeMap, BTreeSet};

use relaykit_protocol::requirements::{self, Level};
use relaykit_protocol::{CloseCode, DurableKind, ErrorCode, Limits, LiveKind, RestErrorCode};

const PREFIXES: &[&str] = &[
    "TRN", "VER", "DISC", "REG", "PAIR", "AUTH", "TOK", "REV", "DIR", "SES", "HB", "TGT", "ISO", "DLV",
    "RCPT", "LIVE", "E2E", "LIM", "ERR", "CLS", "CLI", "TEST",
];

fn spec() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md exists")
}

/// Table rows (lines starting with `|`) of the document.
fn rows(spec: &str) -> Vec<&str> {
    spec.lines().filter(|l| l.trim_start().starts_with('|')).collect()
}

/// Cells of a table row, trimmed.
fn cells(row: &str) -> Vec<&str> {
    row.trim().trim_matches('|').split('|').map(str::trim).collect()
}

fn has_row(spec: &str, needles: &[&str]) -> bool {
    rows(spec).iter().any(|r| needles.iter().all(|n| r.contains(n)))
}

#[test]
fn requirement_ids_are_unique_numbered_and_prefixed() {
    let all = requirements::ALL;
    assert!(all.len() >= 100, "only {} requirements parsed from PROTOCOL.md", all.len());
    let mut seen = BTreeSet::new();
    let mut numbers: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for r in all {
        assert!(seen.insert(r.id), "{} defined twice", r.id);
        let (prefix, n) = r.id.split_once('-').unwrap();
        assert!(PREFIXES.contains(&prefix), "{}: unknown prefix", r.id);
        numbers
            .entry(prefix)
            .or_default()
            .push(n.parse().unwrap_or_else(|_| panic!("{}: not numbered", r.id)));
        assert!(!r.summary.is_empty(), "{}: no text", r.id);
    }
    for (prefix, mut ns) in numbers {
        ns.sort_unstable();
        let expected: Vec<u32> = (1..=ns.len() as u32).collect();
        assert_eq!(ns, expected, "{prefix}-N must run 1..=n without gaps");
    }
    let musts = all.iter().filter(|r| r.level == Level::Must).count();
    assert!(musts * 2 > all.len(), "most rules should be MUST ({musts} of {})", all.len());
}

#[test]
fn requirement_index_lists_every_id_with_its_level() {
    let spec = spec();
    let mut index = BTreeMap::new();
    for row in rows(&spec) {
        let c = cells(row);
        if c.len() >= 3 && requirements::find(c[0].trim_matches('`')).is_some() {
            let level = c[1].trim_matches('*').trim_matches('`');
            if ["MUST", "SHOULD", "MAY"].contains(&level) {
                index.insert(c[0].trim_matches('`').to_string(), level.to_string());
            }
        }
    }
    for r in requirements::ALL {
        assert_eq!(
            index.get(r.id).map(String::as_str),
            Some(r.level.as_str()),
            "{} missing from the index or with another level",
            r.id
        );
    }
}

#[test]
fn every_ws_error_code_is_specified() {
    let spec = spec();
    for code in ErrorCode::ALL {
        assert!(
            has_row(&spec, &[&format!("`{code}`")]),
            "error code `{code}` has no table row in PROTOCOL.md"
        );
    }
}

#[test]
fn every_close_code_is_specified_with_its_name() {
    let spec = spec();
    for close in CloseCode::ALL {
        let number = close.code().to_string();
        let found = if close.code() >= 4000 {
            has_row(&spec, &[&number, &format!("`{}`", close.name())])
                || has_row(&spec, &[&number, close.name()])
        } else {
            has_row(&spec, &[&number])
        };
        assert!(found, "close code {number} ({}) has no table row in PROTOCOL.md", close.name());
    }
}

#[test]
fn every_rest_error_code_is_specified_with_its_status() {
    let spec = spec();
    for code in RestErrorCode::ALL {
        let status = code.http_status().to_string();
        assert!(
            has_row(&spec, &[&format!("`{code}`"), &status]),
            "REST error `{code}` ({status}) has no table row"
        );
    }
}

#[test]
fn every_limit_is_specified_with_its_default() {
    let spec = spec();
    let defaults = serde_json::to_value(Limits::default()).unwrap();
    for (name, value) in defaults.as_object().unwrap() {
        let plain = value.to_string();
        let grouped = group_thousands(&plain);
        let found = has_row(&spec, &[&format!("`{name}`"), &plain])
            || has_row(&spec, &[&format!("`{name}`"), &grouped]);
        assert!(found, "limit `{name}` (default {plain}) has no table row with its default");
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[test]
fn every_message_type_is_in_the_vocabulary() {
    let spec = spec();
    let control = [
        "hello",
        "welcome",
        "reauth",
        "reauthed",
        "ping",
        "pong",
        "ack",
        "nack",
        "reject",
        "accepted",
        "receipt",
        "gap",
        "error",
        "device_status",
        "device_disconnect",
        "device_register",
    ];
    let app = DurableKind::ALL.iter().map(|k| k.as_str()).chain(LiveKind::ALL.iter().map(|k| k.as_str()));
    for name in control.into_iter().chain(app) {
        assert!(has_row(&spec, &[&format!("`{name}`")]), "type `{name}` is not in a vocabulary table");
    }
}

#[test]
fn close_code_bands_match_the_table() {
    let spec = spec();
    for close in CloseCode::ALL.iter().filter(|c| c.code() >= 4000) {
        let number = close.code().to_string();
        let row = rows(&spec)
            .into_iter()
            .map(cells)
            .find(|c| c.first() == Some(&number.as_str()))
            .unwrap_or_else(|| panic!("no close-code row for {number}"));
        let band = row.get(2).copied().unwrap_or_default();
        let expected = match close.action() {
            relaykit_protocol::CloseAction::Reconnect => "reconnect",
            relaykit_protocol::CloseAction::Terminal => "terminal",
            relaykit_protocol::CloseAction::Done => "-",
        };
        assert_eq!(band, expected, "close {number}: band in PROTOCOL.md vs CloseCode::action");
    }
}
