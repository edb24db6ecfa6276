//! Identity and sessions (PROTOCOL.md sections 6.2, 6.3, 6.7 and 7): registration, pairing,
//! directory, welcome, takeover, resume, heartbeat, shutdown.

use std::time::Duration;

use relaykit_protocol::client::{DeviceDisconnect, Resume};
use relaykit_protocol::server::Presence;
use relaykit_protocol::{ClientFrame, DeviceType, Limits, ServerFrame};
use serde_json::Value;
use tokio::time::Instant;

use crate::util::*;

fn is_pairing_code(code: &str) -> bool {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = code.as_bytes();
    bytes.len() == 9
        && bytes[4] == b'-'
        && code.chars().enumerate().all(|(i, c)| i == 4 || CROCKFORD.contains(c))
}

fn find<'a>(devices: &'a [Value], id: &str) -> &'a Value {
    devices.iter().find(|d| d["device_id"] == id).unwrap_or_else(|| panic!("{id} not listed: {devices:?}"))
}

/// REG-1, REG-3, REG-4, PAIR-1, PAIR-2, PAIR-3, PAIR-4, PAIR-5 (used and wrong codes answered
/// identically, field `pairing_code`), DIR-1, DIR-2, DIR-3.
#[tokio::test]
async fn pairing_joins_the_user_once_and_the_directory_shows_presence() {
    let relay = Relay::start(|_| {}).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let asked = now_ms();
    let response = relay.http("POST", "/v1/pairing-codes", Some(token(&desktop)), None).await;
    response.expect_status(201);
    response.check_schema("rest/pairing_code_response");
    let code = response.json()["code"].as_str().expect("code").to_string();
    assert!(is_pairing_code(&code), "{code}");
    let expires = response.json()["expires_at_ms"].as_u64().expect("expires_at_ms");
    assert!(expires > asked && expires <= now_ms() + 600_000, "PAIR-3: {expires}");
    let mobile_body = registration(DeviceType::Mobile, Some(&code));
    let response = relay.post("/v1/devices", None, &mobile_body).await;
    response.expect_status(201);
    response.check_schema("rest/register_device_response");
    let mobile: relaykit_protocol::rest::Registered = response.parse();
    assert_eq!(mobile.user_id, desktop.user_id);
    assert_ne!(mobile.device_id, desktop.device_id);

    // The code worked once; a used code and a never-issued one are indistinguishable.
    let used = relay.post("/v1/devices", None, &registration(DeviceType::Mobile, Some(&code))).await;
    let used = used.expect_error(400, "invalid_pairing_code");
    let wrong_code = if code == "0000-0000" { "0000-0001" } else { "0000-0000" };
    let wrong = relay.post("/v1/devices", None, &registration(DeviceType::Mobile, Some(wrong_code))).await;
    let wrong = wrong.expect_error(400, "invalid_pairing_code");
    assert_eq!(used, wrong);
    assert_eq!(used["field"], "pairing_code");

    // Another user exists but is not listed.
    let stranger = relay.register(DeviceType::Desktop).await;
    assert_ne!(stranger.user_id, desktop.user_id);

    let devices = relay.devices(token(&mobile)).await;
    assert_eq!(devices.len(), 2, "exactly the user's devices: {devices:?}");
    let listed = find(&devices, &mobile.device_id);
    for member in ["device_name", "device_type", "platform", "capabilities", "public_key"] {
        assert_eq!(listed[member], mobile_body[member], "{member} as registered");
    }
    for id in [&desktop.device_id, &mobile.device_id] {
        let d = find(&devices, id);
        assert_eq!(d["status"], "offline");
        assert!(d.get("last_seen_at_ms").is_none(), "never connected: {d}");
    }

    let _d = relay.connect(token(&desktop)).await;
    let devices = relay.devices(token(&mobile)).await;
    assert_eq!(find(&devices, &desktop.device_id)["status"], "online");
    assert!(find(&devices, &desktop.device_id)["last_seen_at_ms"].is_u64());
    assert_eq!(find(&devices, &mobile.device_id)["status"], "offline");
    relay.stop().await;
}

/// SES-3 (welcome first, identity of the token, token_expires_at_ms), SES-6 (resumed false and
/// a new session id without resume), DISC-2 (welcome.limits equals GET /v1/info limits),
/// SES-8 (the presence snapshot follows), VER-2.
#[tokio::test]
async fn welcome_carries_the_token_identity_and_the_announced_limits() {
    let relay = Relay::start(|c| {
        c.limits.max_in_flight = 7;
        c.limits.heartbeat_ms = 20_000;
    })
    .await;
    let info = relay.get("/v1/info", None).await;
    info.expect_status(200);
    info.check_schema("rest/server_info");
    let info_limits: Limits = serde_json::from_value(info.json()["limits"].clone()).expect("limits");
    assert_eq!(&info_limits, relay.limits());

    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let _m = relay.connect(token(&mobile)).await;
    let before = now_ms();
    let mut d = relay.connect(token(&desktop)).await;
    let w = d.welcome().clone();
    assert_eq!(
        (w.user_id.as_str(), w.device_id.as_str()),
        (desktop.user_id.as_str(), desktop.device_id.as_str())
    );
    assert_eq!(w.device_type, DeviceType::Desktop);
    assert!(!w.resumed);
    assert_eq!(w.token_expires_at_ms, desktop.tokens.access_expires_at_ms);
    assert_eq!(w.limits, info_limits);
    assert!(w.server_time_ms + 1000 >= before && w.server_time_ms <= now_ms() + 1000);
    let status = d.next_presence().await;
    assert_eq!((status.device_id.as_str(), status.status), (mobile.device_id.as_str(), Presence::Online));
    assert_eq!(status.device_type, DeviceType::Mobile);
    d.expect_idle().await;

    let d2 = relay.connect(token(&desktop)).await;
    assert_ne!(d2.welcome().session_id, w.session_id, "a session id is never assigned twice");
    assert_eq!(d2.welcome().inbox_epoch, w.inbox_epoch);
    assert_eq!(d2.welcome().stream_epoch, w.stream_epoch);
    relay.stop().await;
}

/// SES-10 (a newer connection closes the older with 4003), SES-9 and section 7.4 (takeover is
/// not a presence change), SES-15 (device_disconnect: offline pushed, close 1000).
#[tokio::test]
async fn second_connection_of_a_device_takes_over_with_4003() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let snapshot = m.next_presence().await;
    assert_eq!(
        (snapshot.device_id.as_str(), snapshot.status),
        (desktop.device_id.as_str(), Presence::Offline)
    );
    let mut old = relay.connect(token(&desktop)).await;
    let online = m.next_presence().await;
    assert_eq!((online.device_id.as_str(), online.status), (desktop.device_id.as_str(), Presence::Online));

    // An entry in flight on the old connection ...
    m.send_frame(&new_task("taken-over", "1")).await;
    let seq = m.next_accepted().await.recipients[0].seq;
    let _delivered_notice = m.next_receipt().await;
    assert_eq!(old.next_delivery().await.1.seq, seq);

    let mut new = relay.connect(token(&desktop)).await;
    let closed = old.expect_close().await;
    assert_eq!((closed.code, closed.reason.as_str()), (4003, "session_replaced"));
    old.drain_to_end().await;
    assert_ne!(new.welcome().session_id, old.welcome().session_id);
    assert_eq!(new.next_presence().await.device_id, mobile.device_id);
    // ... is redelivered on the new one (SES-11, DLV-15).
    let (_, again) = match new.next().await.into_delivery() {
        Ok(x) => x,
        Err(other) => panic!("expected the redelivery, got {other:?}"),
    };
    assert_eq!((again.seq, again.attempt), (seq, 2));
    new.ack(seq).await;
    assert_eq!(m.next_receipt().await.state, relaykit_protocol::server::ReceiptState::Acked);
    new.expect_idle().await;
    // The device stayed online throughout: the mobile saw no presence change.
    m.expect_idle_strict().await;
    let devices = relay.devices(token(&mobile)).await;
    assert_eq!(find(&devices, &desktop.device_id)["status"], "online");

    new.send_frame(&ClientFrame::DeviceDisconnect(DeviceDisconnect { reason: Some("bye".into()) })).await;
    let closed = new.expect_close().await;
    assert_eq!(closed.code, 1000);
    assert!(closed.error.is_none(), "no error frame before a normal close");
    let offline = m.next_presence().await;
    assert_eq!((offline.device_id.as_str(), offline.status), (desktop.device_id.as_str(), Presence::Offline));
    m.expect_idle_strict().await;
    relay.stop().await;
}

/// SES-6 (resumed iff an unexpired session of the same device, same session id), SES-7 (not
/// resumable after device_disconnect).
#[tokio::test]
async fn a_session_resumes_after_a_drop_but_not_after_device_disconnect() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let resume = |session_id: &str| {
        Some(Resume { session_id: session_id.into(), inbox_epoch: None, stream_epoch: None, streams: vec![] })
    };
    let first = relay.connect(token(&desktop)).await;
    let sid = first.welcome().session_id.clone();
    first.close().await;

    let mut again = relay.connect_hello(hello(token(&desktop), resume(&sid))).await;
    assert!(again.welcome().resumed);
    assert_eq!(again.welcome().session_id, sid);

    // Another device cannot resume it.
    let other = relay.connect_hello(hello(token(&mobile), resume(&sid))).await;
    assert!(!other.welcome().resumed);
    assert_ne!(other.welcome().session_id, sid);

    again.send_frame(&ClientFrame::DeviceDisconnect(DeviceDisconnect { reason: None })).await;
    assert_eq!(again.expect_close().await.code, 1000);
    again.drain_to_end().await;
    let after = relay.connect_hello(hello(token(&desktop), resume(&sid))).await;
    assert!(!after.welcome().resumed, "a deliberately ended session is not resumable");
    assert_ne!(after.welcome().session_id, sid);

    let unknown = relay.connect_hello(hello(token(&desktop), resume("ses_never_issued"))).await;
    assert!(!unknown.welcome().resumed);
    relay.stop().await;
}

/// HB-1 (ping every heartbeat_ms), HB-3 (silence for 2 x heartbeat_ms closes with 4002).
#[tokio::test]
async fn silent_client_is_pinged_then_closed_with_4002() {
    let hb = 200;
    let relay = Relay::start(|c| c.limits.heartbeat_ms = hb).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    // Taken before hello: the relay's heartbeat clock starts after this instant.
    let started = Instant::now();
    let mut c = relay.connect(token(&desktop)).await;
    match c.next().await {
        ServerFrame::Ping(_) => {}
        other => panic!("expected a ping, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(hb), "pinged after {:?}", started.elapsed());
    let closed = c.expect_close_within(Duration::from_millis(4 * hb + 1000)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4002, "heartbeat_timeout"));
    let silent_for = started.elapsed();
    assert!(silent_for >= Duration::from_millis(2 * hb), "closed after {silent_for:?}");
    relay.stop().await;
}

/// HB-2/HB-3 (a client that answers every ping stays connected), HB-4, HB-1 (fresh nonces).
#[tokio::test]
async fn client_answering_pings_stays_connected() {
    let hb = 200;
    let relay = Relay::start(|c| c.limits.heartbeat_ms = hb).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let mut c = relay.connect(token(&desktop)).await;
    let start = Instant::now();
    let mut nonces = Vec::new();
    // Five heartbeats, more than twice the timeout.
    while nonces.len() < 5 {
        match c.next().await {
            ServerFrame::Ping(p) => {
                nonces.push(p.nonce);
                c.send_frame(&ClientFrame::Pong(p)).await;
            }
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(start.elapsed() >= Duration::from_millis(4 * hb), "{:?}", start.elapsed());
    let mut unique_nonces = nonces.clone();
    unique_nonces.sort_unstable();
    unique_nonces.dedup();
    assert_eq!(unique_nonces.len(), nonces.len(), "fresh nonce per ping: {nonces:?}");
    c.expect_idle().await;
    relay.stop().await;
}

/// SES-16 (graceful shutdown: `server_restarting` with retry_after_ms, then 4000), and `run`
/// returns Ok.
#[tokio::test]
async fn graceful_shutdown_closes_clients_with_4000_and_retry_after() {
    let mut relay = Relay::start(|c| c.retry_after_restart_ms = 1234).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;
    d.expect_idle().await;
    m.expect_idle().await;
    relay.begin_shutdown();
    for client in [&mut d, &mut m] {
        let closed = client.expect_close().await;
        assert_eq!((closed.code, closed.reason.as_str()), (4000, "server_restarting"));
        let error = closed.error.expect("server_restarting error frame before the close");
        assert_eq!(error.retry_after_ms, Some(1234));
    }
    relay.finish_shutdown().await;
}
