//! Bad input after `welcome` (PROTOCOL.md sections 4.1, 12 and 13): non-fatal errors in the
//! order of section 13.3, fatal closes for binary and oversize messages, the rate limit.

use std::time::Duration;

use relaykit_protocol::client::Heartbeat;
use relaykit_protocol::{ClientFrame, DeviceType, ServerFrame};

use crate::util::*;

/// Sends `text` and returns the `error` it is answered with.
async fn error_for(c: &mut Client, text: &str) -> relaykit_protocol::server::ErrorFrame {
    c.send_text(text).await;
    match c.next_skipping_presence().await {
        ServerFrame::Error(e) => {
            assert!(!e.fatal, "a non-fatal error: {e:?}");
            e
        }
        other => panic!("expected an error for {text}, got {other:?}"),
    }
}

async fn pong_for(c: &mut Client, nonce: u64) {
    c.send_frame(&ClientFrame::Ping(Heartbeat { nonce })).await;
    match c.next_skipping_presence().await {
        ServerFrame::Pong(p) => assert_eq!(p.nonce, nonce),
        other => panic!("expected pong {nonce}, got {other:?}"),
    }
}

async fn one_device(relay: &Relay) -> (relaykit_protocol::rest::Registered, Client) {
    let desktop = relay.register(DeviceType::Desktop).await;
    let c = relay.connect(token(&desktop)).await;
    (desktop, c)
}

/// 13.2 `malformed_json` (not JSON, or not an object), ERR-3 (the connection stays usable),
/// HB-4 (ping answered with the same nonce).
#[tokio::test]
async fn malformed_json_is_a_non_fatal_error() {
    let relay = Relay::start(|_| {}).await;
    let (_, mut c) = one_device(&relay).await;
    for text in ["{not json", "[1,2]", "\"ping\"", r#"{"type":"ping","nonce":1} trailing"#] {
        let e = error_for(&mut c, text).await;
        assert_eq!(e.code.as_str(), "malformed_json", "{text}");
    }
    pong_for(&mut c, 42).await;
    relay.stop().await;
}

/// ERR-6 step 4 (`unknown_type` for a missing, non-string or unknown type, with ref_id for a
/// valid id), SES-4 (`already_authenticated`), SES-5 (`not_allowed` for relay-only types).
#[tokio::test]
async fn unknown_relay_only_and_repeated_hello_types_are_refused() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mut c) = one_device(&relay).await;
    let e = error_for(&mut c, r#"{"type":"teleport","id":"t-1"}"#).await;
    assert_eq!((e.code.as_str(), e.ref_id.as_deref()), ("unknown_type", Some("t-1")));
    assert!(e.field.is_none() || e.field.as_deref() == Some("type"), "{e:?}");
    for text in [r#"{"nonce":1}"#, r#"{"type":7}"#] {
        assert_eq!(error_for(&mut c, text).await.code.as_str(), "unknown_type", "{text}");
    }
    for t in
        ["welcome", "accepted", "receipt", "device_status", "gap", "error", "reauthed", "device_register"]
    {
        let e = error_for(&mut c, &format!(r#"{{"type":"{t}"}}"#)).await;
        assert_eq!(e.code.as_str(), "not_allowed", "{t}");
    }
    let again = serde_json::json!({"type": "hello", "protocol": "relay.v1", "token": token(&desktop)});
    assert_eq!(error_for(&mut c, &again.to_string()).await.code.as_str(), "already_authenticated");
    pong_for(&mut c, 7).await;
    relay.stop().await;
}

/// ERR-9 / DLV-1 / LIVE-1 (`invalid_field` naming the member, ref_id when the id is valid,
/// ref_seq only for an integer seq), TRN-9 (strict integers), DLV-3 (`ttl_out_of_range`),
/// E2E-1 (both bodies).
#[tokio::test]
async fn wrong_field_types_are_invalid_field_naming_the_member() {
    let relay = Relay::start(|_| {}).await;
    let (_, mut c) = one_device(&relay).await;
    let cases: &[(&str, &str, &str)] = &[
        (
            r#"{"type":"new_task","id":"f-1","to":{"role":"desktop"},"priority":"high","payload":1}"#,
            "priority",
            "f-1",
        ),
        (
            r#"{"type":"new_task","id":"f-2","to":{"role":"desktop"},"priority":null,"payload":1}"#,
            "priority",
            "f-2",
        ),
        (r#"{"type":"new_task","id":"f-3","to":{"device":5},"payload":1}"#, "to.device", "f-3"),
        (r#"{"type":"new_task","id":"f-4","to":{"role":"fridge"},"payload":1}"#, "to.role", "f-4"),
        (r#"{"type":"new_task","id":"f-5","to":{"role":"desktop"}}"#, "payload", "f-5"),
        (
            r#"{"type":"new_task","id":"f-6","to":{"role":"desktop"},"payload":1,"e2e":{"alg":"a","kid":"k","nonce":"n","ciphertext":"c"}}"#,
            "payload",
            "f-6",
        ),
        (
            r#"{"type":"new_task","id":"f-7","to":{"role":"desktop"},"max_attempts":101,"payload":1}"#,
            "max_attempts",
            "f-7",
        ),
        (
            r#"{"type":"new_task","id":"f-8","to":{"role":"desktop"},"ttl_ms":1.0,"payload":1}"#,
            "ttl_ms",
            "f-8",
        ),
        (r#"{"type":"user_message","id":"f-9","to":{"role":"mobile"},"payload":1,"e2e":null}"#, "e2e", "f-9"),
        (r#"{"type":"tool_progress","id":"f-10","to":{"role":"mobile"},"payload":1}"#, "stream", "f-10"),
    ];
    for (text, field, id) in cases {
        let e = error_for(&mut c, text).await;
        assert_eq!(e.code.as_str(), "invalid_field", "{text}");
        assert_eq!((e.field.as_deref(), e.ref_id.as_deref()), (Some(*field), Some(*id)), "{text}");
    }
    // A bad id is not echoed.
    let e = error_for(&mut c, r#"{"type":"new_task","id":"no spaces","to":{"role":"desktop"},"payload":1}"#)
        .await;
    assert_eq!(
        (e.code.as_str(), e.field.as_deref(), e.ref_id.as_deref()),
        ("invalid_field", Some("id"), None)
    );
    for text in [r#"{"type":"ack","seq":"7"}"#, r#"{"type":"ack","seq":7.0}"#, r#"{"type":"ack","seq":-1}"#] {
        let e = error_for(&mut c, text).await;
        assert_eq!(
            (e.code.as_str(), e.field.as_deref(), e.ref_seq),
            ("invalid_field", Some("seq"), None),
            "{text}"
        );
    }
    let e = error_for(&mut c, r#"{"type":"nack","seq":1,"delay_ms":-5}"#).await;
    assert_eq!((e.code.as_str(), e.field.as_deref()), ("invalid_field", Some("delay_ms")));
    let e = error_for(
        &mut c,
        r#"{"type":"new_task","id":"f-11","to":{"role":"desktop"},"ttl_ms":1,"payload":1}"#,
    )
    .await;
    assert_eq!((e.code.as_str(), e.ref_id.as_deref()), ("ttl_out_of_range", Some("f-11")));
    pong_for(&mut c, 3).await;
    relay.stop().await;
}

/// TRN-4 (a message above max_frame_bytes closes with 1009, no `error` frame; as the first
/// frame too), LIM-2 (a body above max_payload_bytes within a legal frame is a non-fatal
/// `payload_too_large`); other connections are unaffected.
#[tokio::test]
async fn oversize_frame_closes_1009_and_other_clients_are_unaffected() {
    let relay = Relay::start(|c| {
        c.limits.max_payload_bytes = 1024;
        c.limits.max_frame_bytes = 1024 + 4096;
    })
    .await;
    let max_frame = relay.limits().max_frame_bytes as usize;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;

    let big_body = format!("\"{}\"", "x".repeat(2000));
    let text =
        format!(r#"{{"type":"new_task","id":"big-1","to":{{"role":"desktop"}},"payload":{big_body}}}"#);
    assert!(text.len() < max_frame);
    let e = error_for(&mut m, &text).await;
    assert_eq!((e.code.as_str(), e.ref_id.as_deref()), ("payload_too_large", Some("big-1")));

    let padding = "p".repeat(max_frame);
    m.send_text(&format!(r#"{{"type":"ping","nonce":1,"pad":"{padding}"}}"#)).await;
    let closed = m.expect_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (1009, "message_too_big"));
    assert!(closed.error.is_none(), "no error frame before 1009 (TRN-4)");

    // The relay and the other connection carry on.
    pong_for(&mut d, 11).await;
    let mut m = relay.connect(token(&mobile)).await;
    m.send_frame(&new_task("after-1009", "1")).await;
    m.next_accepted().await;
    assert_eq!(d.next_delivery().await.1.id, "after-1009");

    let mut first = relay.open(Some("relay.v1")).await;
    first.send_text(&"x".repeat(max_frame + 1)).await;
    let closed = first.expect_close().await;
    assert_eq!((closed.code, closed.error.is_none()), (1009, true));
    relay.stop().await;
}

/// TRN-3 (a binary message closes with 1003 without an `error` frame, before and after hello).
#[tokio::test]
async fn binary_frame_closes_1003() {
    let relay = Relay::start(|_| {}).await;
    let (_, mut c) = one_device(&relay).await;
    c.send_binary(br#"{"type":"ping","nonce":1}"#.to_vec()).await;
    let closed = c.expect_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (1003, "unsupported_data"));
    assert!(closed.error.is_none());
    let mut first = relay.open(Some("relay.v1")).await;
    first.send_binary(vec![0, 1, 2]).await;
    let closed = first.expect_close().await;
    assert_eq!((closed.code, closed.error.is_none()), (1003, true));
    relay.stop().await;
}

/// LIM-3 (depth above max_json_depth: `nesting_too_deep`, non-fatal, also for hostile depths;
/// depth exactly max_json_depth is accepted), section 2.2 (brackets in strings do not count).
#[tokio::test]
async fn deep_nesting_is_nesting_too_deep() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mut c) = one_device(&relay).await;
    let max = relay.limits().max_json_depth as usize;
    let frame = |payload_depth: usize| {
        let payload = format!("{}{}", "[".repeat(payload_depth), "]".repeat(payload_depth));
        format!(
            r#"{{"type":"new_task","id":"deep-{payload_depth}","to":{{"device":"{}"}},"payload":{payload}}}"#,
            desktop.device_id
        )
    };
    for depth in [max, 10_000] {
        let e = error_for(&mut c, &frame(depth)).await;
        assert_eq!(e.code.as_str(), "nesting_too_deep", "payload depth {depth}");
    }
    // The frame object is depth 1: a payload of depth max - 1 is exactly at the limit.
    c.send_text(&frame(max - 1)).await;
    let accepted = c.next_accepted().await;
    assert_eq!(accepted.id, format!("deep-{}", max - 1));
    let text = format!(
        r#"{{"type":"new_task","id":"brackets","to":{{"device":"{}"}},"payload":"{}"}}"#,
        desktop.device_id,
        "[{".repeat(100)
    );
    c.send_text(&text).await;
    // Deliveries to itself and the delivered notices may interleave with the answers.
    let mut accepted_brackets = false;
    for _ in 0..8 {
        match c.next().await {
            ServerFrame::Accepted(a) => {
                assert_eq!(a.id, "brackets");
                accepted_brackets = true;
                break;
            }
            ServerFrame::Receipt(_) | ServerFrame::NewTask(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(accepted_brackets);
    relay.stop().await;
}

/// LIM-4 (token bucket: after the burst, `rate_limited` with retry_after_ms; the bucket refills
/// at rate_limit_per_sec), LIM-5 (no 4007 for a short flood).
#[tokio::test]
async fn flood_beyond_the_burst_is_rate_limited_with_retry_after() {
    let relay = Relay::start(|c| {
        c.limits.rate_limit_per_sec = 5;
        c.limits.rate_limit_burst = 5;
    })
    .await;
    let (_, mut c) = one_device(&relay).await;
    let burst: Vec<String> = (1..=8).map(|n| format!(r#"{{"type":"ping","nonce":{n}}}"#)).collect();
    c.send_burst(&burst).await;
    for n in 1..=5 {
        match c.next().await {
            ServerFrame::Pong(p) => assert_eq!(p.nonce, n),
            other => panic!("expected pong {n}, got {other:?}"),
        }
    }
    let mut retry = 0;
    for _ in 6..=8 {
        let e = expect_error_code(c.next().await, "rate_limited");
        assert!(!e.fatal);
        retry = e.retry_after_ms.expect("rate_limited carries retry_after_ms");
        assert!((1..=200).contains(&retry), "one token per 200 ms: {retry}");
    }
    // Waiting as told refills a token.
    tokio::time::sleep(Duration::from_millis(retry)).await;
    pong_for(&mut c, 99).await;
    relay.stop().await;
}

/// LIM-4 (every frame that passes the size check takes a token, even one answered with
/// `malformed_json`), section 13.3 (the bucket is checked after JSON parsing).
#[tokio::test]
async fn malformed_frames_take_rate_limit_tokens_too() {
    let relay = Relay::start(|c| {
        c.limits.rate_limit_per_sec = 1;
        c.limits.rate_limit_burst = 3;
    })
    .await;
    let (_, mut c) = one_device(&relay).await;
    let mut burst: Vec<String> = (0..3).map(|_| "{oops".to_string()).collect();
    burst.push(r#"{"type":"ping","nonce":5}"#.into());
    burst.push("{oops".into());
    c.send_burst(&burst).await;
    for _ in 0..3 {
        expect_error_code(c.next().await, "malformed_json");
    }
    // The bucket is empty now: the ping is refused; a malformed frame still reports its JSON
    // problem first.
    let e = expect_error_code(c.next().await, "rate_limited");
    assert!(e.retry_after_ms.is_some());
    expect_error_code(c.next().await, "malformed_json");
    relay.stop().await;
}
