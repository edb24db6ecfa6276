//! The HTTP control API, and the JSON forms against `schemas/tools/proxy-*.json`.

mod util;

use std::path::Path;

use relaykit_protocol::schema::SchemaSet;
use relaykit_proxy::{Direction, Fault, FaultSpec, ProxyConfig, Selector};
use serde_json::{Value, json};
use util::*;

fn assert_valid(schema: &str, value: &Value) {
    if let Err(e) = SchemaSet::global().validate_value(schema, value).expect("schema exists") {
        panic!("not valid against {schema}: {e}\n{value}");
    }
}

#[tokio::test]
async fn http_api_adds_lists_deletes_and_refuses_bad_specs() {
    let mut echo = echo_upstream().await;
    let config = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: echo.addr,
        seed: 7,
        control: Some("127.0.0.1:0".parse().unwrap()),
    };
    let proxy = relaykit_proxy::spawn(config).await.unwrap();
    let api = proxy.control_addr.unwrap();
    let mut ws = connect_as(&proxy, "d1").await;
    assert!(next_text(&mut ws).await.contains("hello"));

    let body = r#"{"fault": {"kind": "partition"}, "select": {"devices": ["d1"]}, "duration_ms": 60000}"#;
    let (status, created) = http(api, "POST", "/faults", body).await;
    assert_eq!((status, created.as_str()), (201, r#"{"id":1}"#));
    let (status, list) = http(api, "GET", "/faults", "").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], 1);
    assert_eq!(list[0]["spec"]["select"], json!({"devices": ["d1"]}));
    assert!(list[0]["remaining_ms"].as_u64().is_some_and(|ms| ms <= 60_000));
    assert_valid("tools/proxy-fault", &list[0]["spec"]);
    send(&mut ws, "swallowed").await;
    assert_eq!(next_within(&mut ws, QUIET).await, None);

    let (status, stats) = http(api, "GET", "/stats", "").await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_valid("tools/proxy-stats", &stats);
    assert_eq!((stats["connections_open"].as_u64(), stats["up"]["black_holed"].as_u64()), (Some(1), Some(1)));

    assert_eq!(http(api, "DELETE", "/faults/1", "").await.0, 204);
    assert_eq!(http(api, "DELETE", "/faults/1", "").await.0, 404);
    send(&mut ws, "heard").await;
    assert_eq!(next_text(&mut ws).await, "heard");

    for (bad, code) in [
        (r#"{"fault": {"kind": "loss", "probability": 2}}"#, "invalid_fault"),
        (r#"{"fault": {"kind": "meteor"}}"#, "invalid_json"),
        ("not json", "invalid_json"),
    ] {
        let (status, answer) = http(api, "POST", "/faults", bad).await;
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((status, answer["error"].as_str()), (400, Some(code)), "{bad}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(http(api, "DELETE", "/faults/x", "").await.0, 400);
    assert!(http(api, "GET", "/faults", "").await.1 == "[]");

    http(api, "POST", "/faults", r#"{"fault": {"kind": "half_open"}}"#).await;
    assert_eq!(http(api, "DELETE", "/faults", "").await.0, 204);
    assert_eq!(proxy.faults().list(), []);

    let (status, reset) = http(api, "POST", "/connections/reset", r#"{"devices": ["nobody"]}"#).await;
    assert_eq!((status, reset.as_str()), (200, r#"{"reset":0}"#));
    let (status, reset) = http(api, "POST", "/connections/reset", r#""all""#).await;
    assert_eq!((status, reset.as_str()), (200, r#"{"reset":1}"#));
    assert_eq!(http(api, "POST", "/connections/reset", r#"{"fraction": 3}"#).await.0, 400);

    let other = echo_upstream().await;
    let (status, _) =
        http(api, "PUT", "/upstream", &format!(r#"{{"upstream": "ws://{}"}}"#, other.addr)).await;
    assert_eq!(status, 200);
    assert_eq!(proxy.faults().upstream(), Some(other.addr));
    assert_eq!(http(api, "PUT", "/upstream", r#"{"upstream": "https://x:1"}"#).await.0, 400);
    while echo.seen.try_recv().is_ok() {}
    proxy.stop().await;
}

#[test]
fn every_fault_kind_serializes_to_schema_valid_json() {
    let kinds = [
        Fault::Latency { ms: 100, jitter_ms: 10 },
        Fault::Bandwidth { bytes_per_s: 1000 },
        Fault::Loss { probability: 0.5 },
        Fault::Duplicate { probability: 0.5 },
        Fault::Reorder { probability: 0.5 },
        Fault::Reset { probability: None },
        Fault::Reset { probability: Some(0.1) },
        Fault::HalfOpen,
        Fault::SlowReader { bytes_per_s: 0 },
        Fault::Partition,
    ];
    let selectors = [
        Selector::All,
        Selector::Devices(vec!["d".into()]),
        Selector::Connections(vec![1]),
        Selector::Fraction(0.5),
    ];
    for (i, fault) in kinds.into_iter().enumerate() {
        let spec = FaultSpec {
            fault,
            direction: [Direction::Up, Direction::Down, Direction::Both][i % 3],
            select: selectors[i % 4].clone(),
            duration_ms: (i % 2 == 0).then_some(1000),
        };
        spec.validate().unwrap();
        let value = serde_json::to_value(&spec).unwrap();
        assert_valid("tools/proxy-fault", &value);
        assert_eq!(serde_json::from_value::<FaultSpec>(value).unwrap(), spec);
    }
    assert_valid("tools/proxy-stats", &serde_json::to_value(relaykit_proxy::ProxyStats::default()).unwrap());
}

/// The schema examples are what the Rust types accept: valid ones parse and validate, invalid
/// ones are refused by serde or by `validate()`.
#[test]
fn schema_examples_agree_with_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/examples");
    let mut seen = 0;
    for (sub, valid) in [("valid", true), ("invalid", false)] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let accepted = if name.starts_with("tools.proxy-fault.") {
                serde_json::from_str::<FaultSpec>(&text).is_ok_and(|s| s.validate().is_ok())
            } else if name.starts_with("tools.proxy-stats.") {
                serde_json::from_str::<relaykit_proxy::ProxyStats>(&text).is_ok()
            } else {
                continue;
            };
            assert_eq!(accepted, valid, "{sub}/{name}");
            seen += 1;
        }
    }
    assert!(seen >= 6, "only {seen} proxy examples");
}
