//! REST surface (PROTOCOL.md sections 4.3, 5, 6 and 13.4) and the operational endpoints.

use relaykit_protocol::{DeviceType, Target};
use serde_json::json;

use crate::util::*;

/// Section 4.3 and ERR-7 (unknown path or unsupported method: 404 `not_found` with a JSON
/// error body), ERR-10 step 1.
#[tokio::test]
async fn unknown_paths_and_methods_are_404_not_found() {
    let relay = Relay::start(|_| {}).await;
    for (method, path) in [
        ("GET", "/v1/nope"),
        ("GET", "/nope"),
        ("POST", "/v1/info"),
        ("DELETE", "/v1/devices"),
        ("GET", "/v1/tokens/refresh"),
        ("PUT", "/v1/pairing-codes"),
    ] {
        let response = relay.http(method, path, None, None).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.body);
        response.expect_error(404, "not_found");
    }
    // The test hook is off: 404 before anything else looks at the request (TEST-2, ERR-10).
    let response = relay.http("POST", "/v1/test/tokens", None, Some(b"{not json")).await;
    response.expect_error(404, "not_found");
    relay.stop().await;
}

/// ERR-8 (a body that is not a JSON object or violates the field table: 400
/// `invalid_request`, with `field` when one member is at fault), section 6.2.
#[tokio::test]
async fn bad_request_bodies_are_400_invalid_request() {
    let relay = Relay::start(|_| {}).await;
    for body in [&b"{not json"[..], b"[]", b"", b"null"] {
        let response = relay.http("POST", "/v1/devices", None, Some(body)).await;
        response.expect_error(400, "invalid_request");
    }
    let mut cases = Vec::new();
    let mut wrong_type = registration(DeviceType::Mobile, None);
    wrong_type["device_type"] = json!("fridge");
    cases.push((wrong_type, "device_type"));
    let mut bad_key = registration(DeviceType::Mobile, None);
    bad_key["public_key"]["key"] = json!("c2hvcnQ");
    cases.push((bad_key, "public_key.key"));
    let mut long_name = registration(DeviceType::Mobile, None);
    long_name["device_name"] = json!("n".repeat(201));
    cases.push((long_name, "device_name"));
    let mut bad_code = registration(DeviceType::Mobile, None);
    bad_code["pairing_code"] = json!("abcd-efgh");
    cases.push((bad_code, "pairing_code"));
    for (body, field) in cases {
        let error = relay.post("/v1/devices", None, &body).await.expect_error(400, "invalid_request");
        assert_eq!(error["field"], field, "{body}");
    }
    relay.stop().await;
}

/// TRN-6 (a body above max_frame_bytes: 413 `payload_too_large`; at the limit it is read),
/// ERR-10 (size before authentication and body checks).
#[tokio::test]
async fn body_over_max_frame_bytes_is_413() {
    let relay = Relay::start(|c| {
        c.limits.max_payload_bytes = 1024;
        c.limits.max_frame_bytes = 1024 + 4096;
    })
    .await;
    let max = relay.limits().max_frame_bytes as usize;
    // A valid registration padded (inside capabilities) to exactly `len` bytes.
    let padded = |len: usize| {
        let mut body = registration(DeviceType::Desktop, None);
        body["capabilities"] = json!({"pad": ""});
        let pad = len - body.to_string().len();
        body["capabilities"] = json!({"pad": "x".repeat(pad)});
        let text = body.to_string();
        assert_eq!(text.len(), len);
        text
    };
    let over = relay.http("POST", "/v1/devices", None, Some(padded(max + 1).as_bytes())).await;
    over.expect_error(413, "payload_too_large");
    let at_limit = relay.http("POST", "/v1/devices", None, Some(padded(max).as_bytes())).await;
    at_limit.expect_status(201);
    let garbage = vec![b'x'; max + 1];
    for (method, path) in [("POST", "/v1/tokens/refresh"), ("POST", "/v1/pairing-codes")] {
        let response = relay.http(method, path, None, Some(&garbage)).await;
        response.expect_error(413, "payload_too_large");
    }
    relay.stop().await;
}

/// DISC-1, DISC-3, DISC-4 (info and jwks without authentication; `e2e` announced,
/// `test_tokens` not).
#[tokio::test]
async fn info_and_jwks_are_public() {
    let relay = Relay::start(|_| {}).await;
    let info = relay.get("/v1/info", None).await;
    info.expect_status(200);
    info.check_schema("rest/server_info");
    let info = info.json();
    assert!(info["protocol_versions"].as_array().is_some_and(|v| v.contains(&json!("relay.v1"))));
    assert_eq!(info["jwks_uri"], "/v1/jwks");
    assert_eq!(info["capabilities"], json!(["e2e"]));
    assert_eq!(info["registration_open"], true);
    assert_eq!(info["issuer"], relay.config.auth.issuer.as_str());
    assert_eq!(info["audience"], relay.config.auth.audience.as_str());
    let jwks = relay.get("/v1/jwks", None).await;
    jwks.expect_status(200);
    jwks.check_schema("rest/jwks");
    assert!(!jwks.json()["keys"].as_array().expect("keys").is_empty());
    relay.stop().await;
}

/// REG-2 (registration closed: 403 `registration_closed`), REG-3 (a pairing code still works).
#[tokio::test]
async fn closed_registration_needs_a_pairing_code() {
    let relay = Relay::start(|c| c.registration_open = false).await;
    let response = relay.post("/v1/devices", None, &registration(DeviceType::Desktop, None)).await;
    response.expect_error(403, "registration_closed");
    let info = relay.get("/v1/info", None).await.json();
    assert_eq!(info["registration_open"], false);
    relay.stop().await;
}

/// AUTH-9 (missing, malformed or invalid bearer: 401 `unauthorized`; the scheme is
/// case-insensitive), PAIR-1 (unauthenticated pairing-code request: 401).
#[tokio::test]
async fn bearer_endpoints_require_a_valid_token() {
    let relay = Relay::start(|_| {}).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    relay.get("/v1/devices", None).await.expect_error(401, "unauthorized");
    relay.get("/v1/devices", Some("not-a-token")).await.expect_error(401, "unauthorized");
    relay.http("POST", "/v1/pairing-codes", None, None).await.expect_error(401, "unauthorized");
    let path = format!("/v1/devices/{}", desktop.device_id);
    relay.http("DELETE", &path, None, None).await.expect_error(401, "unauthorized");
    let lower = format!("bearer {}", token(&desktop));
    let response = relay.http_with_headers("GET", "/v1/devices", &[("Authorization", &lower)], None).await;
    response.expect_status(200);
    let basic = [("Authorization", "Basic dXNlcjpwYXNz")];
    relay.http_with_headers("GET", "/v1/devices", &basic, None).await.expect_error(401, "unauthorized");
    relay.stop().await;
}

/// Operational endpoints: `/health`, `/ready`, `/metrics` (Prometheus text with the
/// accepted-messages counter).
#[tokio::test]
async fn health_ready_and_metrics_are_served() {
    let relay = Relay::start(|_| {}).await;
    let health = relay.get("/health", None).await;
    health.expect_status(200);
    assert_eq!(health.body.trim(), "ok");
    relay.get("/ready", None).await.expect_status(200);

    let desktop = relay.register(DeviceType::Desktop).await;
    let mut d = relay.connect(token(&desktop)).await;
    d.send_frame(&relaykit_protocol::ClientFrame::NewTask(send(
        "metric-1",
        Target::Device(desktop.device_id.clone()),
        "1",
    )))
    .await;
    d.next_accepted().await;
    // The device targeted itself: its own delivery is the routing-latency sample.
    assert!(d.next_skipping_presence().await.as_delivery().is_some());

    let metrics = relay.get("/metrics", None).await;
    metrics.expect_status(200);
    assert!(metrics.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
    let accepted: Vec<&str> =
        metrics.body.lines().filter(|l| l.starts_with("relaykit_messages_accepted_total")).collect();
    assert_eq!(accepted, ["relaykit_messages_accepted_total 1"], "{}", metrics.body);
    assert!(metrics.body.contains("# TYPE relaykit_messages_accepted_total counter"));
    let line = |name: &str| metrics.body.lines().find(|l| l.starts_with(name)).map(str::to_string);
    assert_eq!(
        line("relaykit_routing_latency_seconds_count").as_deref(),
        Some("relaykit_routing_latency_seconds_count 1")
    );
    // health, ready, register: answered before this scrape, all 2xx.
    let rest = line("relaykit_rest_requests_total{class=\"2xx\"}").expect("2xx requests counted");
    let n: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3, "{rest}");
    relay.stop().await;
}

/// TRN-1 (a plain GET of /v1/ws is 400 `invalid_request`), TRN-10 (an Origin outside the
/// allow-list is 403 `forbidden`; no Origin or an allowed one is upgraded).
#[tokio::test]
async fn websocket_upgrades_check_the_request_and_the_origin() {
    let relay = Relay::start(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    relay.get("/v1/ws", None).await.expect_error(400, "invalid_request");
    match relay.try_open_with(Some("relay.v1"), Some("https://evil.example")).await {
        Ok(_) => panic!("a foreign origin must be refused"),
        Err((status, body)) => {
            assert_eq!(status, 403, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
            assert_eq!(body["error"]["code"], "forbidden");
        }
    }
    for origin in [Some("https://app.example"), None] {
        let opened = relay.try_open_with(Some("relay.v1"), origin).await;
        assert!(opened.is_ok(), "{origin:?}: {:?}", opened.err());
    }
    relay.stop().await;
}
