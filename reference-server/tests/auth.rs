//! The first frame and tokens (PROTOCOL.md sections 4.2, 6.4 to 6.6, 7.1, 7.6): hello checks,
//! expiry, reauth, refresh rotation and reuse detection, revocation.

use std::time::Duration;

use relaykit_protocol::client::Reauth;
use relaykit_protocol::server::{ErrorFrame, Presence, Receipt, ReceiptState};
use relaykit_protocol::{ClientFrame, DeviceType, ServerFrame, Target};
use serde_json::json;
use tokio::time::Instant;

use crate::util::*;

/// Sends `first` as the first frame of a fresh connection and returns the close.
async fn first_frame_closes(relay: &Relay, subprotocol: Option<&str>, first: &str) -> Closed {
    let mut c = relay.open(subprotocol).await;
    c.send_text(first).await;
    c.expect_close().await
}

fn hello_text(protocol: &str, token: &str) -> String {
    json!({"type": "hello", "protocol": protocol, "token": token}).to_string()
}

/// SES-1 step 5, AUTH-6 (a token that fails steps 1 to 7 is invalid: 4500), CLS-2.
#[tokio::test]
async fn hello_with_an_invalid_token_closes_4500() {
    let relay = Relay::start(|_| {}).await;
    let elsewhere = Relay::start(|_| {}).await;
    // A well-formed token signed by another relay's key.
    let foreign = elsewhere.register(DeviceType::Desktop).await;
    for bad in ["garbage", "a.b.c", token(&foreign)] {
        let closed = first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", bad)).await;
        assert_eq!((closed.code, closed.reason.as_str()), (4500, "unauthorized"), "token {bad:?}");
    }
    elsewhere.stop().await;
    relay.stop().await;
}

/// SES-2 (no frame within auth_timeout_ms: 4005).
#[tokio::test]
async fn no_hello_within_auth_timeout_closes_4005() {
    let relay = Relay::start(|c| c.limits.auth_timeout_ms = 300).await;
    // Taken before the upgrade: the relay's auth timer starts after this instant.
    let started = Instant::now();
    let mut c = relay.open(Some("relay.v1")).await;
    let closed = c.expect_close_within(Duration::from_millis(300 + 1500)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4005, "auth_timeout"));
    assert!(started.elapsed() >= Duration::from_millis(300), "closed after {:?}", started.elapsed());
    relay.stop().await;
}

/// SES-1 steps 1, 2 and 4 (`protocol_violation` 4504 for a first frame that is not a valid
/// hello, including one that is not JSON or too deep).
#[tokio::test]
async fn first_frame_other_than_a_valid_hello_closes_4504() {
    let relay = Relay::start(|_| {}).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let cases = [
        r#"{"type":"ping","nonce":1}"#.to_string(),
        "not json".to_string(),
        r#"{"type":"hello","protocol":"relay.v1"}"#.to_string(),
        json!({"type": "hello", "protocol": 1, "token": token(&desktop)}).to_string(),
        json!({"type": "hello", "protocol": "relay.v1", "token": token(&desktop), "resume": {}}).to_string(),
        format!(r#"{{"type":"hello","protocol":"relay.v1","token":"{}","client":{deep}}}"#, token(&desktop)),
    ];
    for first in &cases {
        let closed = first_frame_closes(&relay, Some("relay.v1"), first).await;
        assert_eq!((closed.code, closed.reason.as_str()), (4504, "protocol_violation"), "{first}");
    }
    relay.stop().await;
}

/// VER-5 / SES-1 step 3 (unsupported hello.protocol: 4503, with or without a negotiated
/// subprotocol), VER-4 (no subprotocol header: accepted, version from hello), VER-3 (no
/// supported subprotocol offered: HTTP 400 unsupported_version).
#[tokio::test]
async fn unsupported_protocol_closes_4503_and_is_refused_at_the_upgrade() {
    let relay = Relay::start(|_| {}).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    for offered in [Some("relay.v1"), None] {
        let closed = first_frame_closes(&relay, offered, &hello_text("relay.v9", token(&desktop))).await;
        assert_eq!((closed.code, closed.reason.as_str()), (4503, "unsupported_version"), "{offered:?}");
    }
    let mut plain = relay.open(None).await;
    plain.send_text(&hello_text("relay.v1", token(&desktop))).await;
    match plain.next().await {
        ServerFrame::Welcome(w) => assert_eq!(w.device_id, desktop.device_id),
        other => panic!("expected welcome, got {other:?}"),
    }
    // VER-2: the first supported subprotocol of the client's list is selected.
    match relay.try_open(Some("relay.v9, relay.v1")).await {
        Ok((_, selected)) => assert_eq!(selected.as_deref(), Some("relay.v1")),
        Err(refused) => panic!("relay.v1 was offered: {refused:?}"),
    }
    match relay.try_open(Some("relay.v9")).await {
        Ok(_) => panic!("an upgrade offering only relay.v9 must be refused"),
        Err((status, body)) => {
            assert_eq!(status, 400, "{body}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
            assert_eq!(body["error"]["code"], "unsupported_version");
        }
    }
    relay.stop().await;
}

/// AUTH-1 (EdDSA, at+jwt, a kid of the JWKS, ten claims, exp - iat <= 3600), REG-4 (sub, did,
/// dty of the registered device), TOK-1 (refresh tokens are not JWTs), TOK-2 (a refresh keeps
/// the family), DISC-3.
#[tokio::test]
async fn issued_tokens_carry_the_device_identity_and_keep_their_family() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let info = relay.get("/v1/info", None).await.json();
    let jwks = relay.get("/v1/jwks", None).await.json();
    let kids: Vec<&str> =
        jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    let schemas = relaykit_protocol::schema::SchemaSet::global();
    let mut families = Vec::new();
    for (r, kind) in [(&desktop, "desktop"), (&mobile, "mobile")] {
        let (header, claims) = jwt_parts(&r.tokens.access_token);
        for (schema, value) in [("rest/access_token_header", &header), ("rest/access_token_claims", &claims)]
        {
            let verdict = schemas.validate_value(schema, value).expect("schema exists");
            assert!(verdict.is_ok(), "{schema}: {verdict:?} for {value}");
        }
        assert_eq!((header["alg"].as_str(), header["typ"].as_str()), (Some("EdDSA"), Some("at+jwt")));
        assert!(kids.contains(&header["kid"].as_str().expect("kid")), "kid {} in {kids:?}", header["kid"]);
        assert_eq!(claims["sub"], r.user_id.as_str());
        assert_eq!(claims["did"], r.device_id.as_str());
        assert_eq!(claims["dty"], kind);
        assert_eq!((&claims["iss"], &claims["aud"]), (&info["issuer"], &info["audience"]));
        let (iat, exp) = (claims["iat"].as_u64().expect("iat"), claims["exp"].as_u64().expect("exp"));
        assert!(exp > iat && exp - iat <= 3600, "iat {iat} exp {exp}");
        assert_eq!(exp * 1000, r.tokens.access_expires_at_ms);
        assert_eq!(r.tokens.token_type, "Bearer");
        let refresh = &r.tokens.refresh_token;
        assert!(refresh.len() >= 22, "at least 128 bits: {refresh}");
        let segments: Vec<&str> = refresh.split('.').collect();
        let readable = segments.len() == 3
            && segments.iter().take(2).all(|s| {
                b64url_decode(s).is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok())
            });
        assert!(!readable, "a refresh token is not a JWT: {refresh}");
        families.push(claims["fam"].clone());
    }
    assert_ne!(families[0], families[1], "one family per device");
    let rotated: relaykit_protocol::rest::TokenPair =
        relay.refresh(&desktop.tokens.refresh_token).await.parse();
    let (_, claims) = jwt_parts(&rotated.access_token);
    assert_eq!((&claims["fam"], &claims["did"]), (&families[0], &json!(desktop.device_id)));
    let (_, original) = jwt_parts(token(&desktop));
    assert_ne!(claims["jti"], original["jti"]);
    relay.stop().await;
}

/// SES-12 (close 4006 no earlier than token_expires_at_ms, no later than + L + 1000 ms),
/// AUTH-7 (an expired token in hello is token_expired, not unauthorized).
#[tokio::test]
async fn token_expiry_mid_session_closes_4006() {
    let relay = Relay::start(|c| {
        c.auth.access_ttl_s = 2;
        c.auth.leeway_s = 0;
    })
    .await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let mut c = relay.connect(token(&desktop)).await;
    let expires = c.welcome().token_expires_at_ms;
    let wait = Duration::from_millis(expires.saturating_sub(now_ms()) + 2000);
    let closed = c.expect_close_within(wait).await;
    let at = now_ms();
    assert_eq!((closed.code, closed.reason.as_str()), (4006, "token_expired"));
    assert!(at + 50 >= expires, "closed {} ms before expiry", expires - at);
    assert!(at <= expires + 1000 + 500, "closed {} ms after expiry", at - expires);
    let closed = first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", token(&desktop))).await;
    assert_eq!(closed.code, 4006, "an expired token is reported as expired");
    relay.stop().await;
}

/// SES-13 (reauth with a valid token: `reauthed` with the new expiry, which then governs the
/// session), SES-12, TOK-2 (refresh returns a new pair).
#[tokio::test]
async fn reauth_with_a_refreshed_token_extends_the_session() {
    let relay = Relay::start(|c| {
        c.auth.access_ttl_s = 3;
        c.auth.leeway_s = 0;
    })
    .await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let mut c = relay.connect(token(&desktop)).await;
    let first_expiry = c.welcome().token_expires_at_ms;
    // A token expiring at least 2 s later, so the session must outlive the first expiry + 1 s.
    let fresh = refresh_past(&relay, &desktop.tokens, first_expiry + 1000).await;
    assert!(now_ms() + 300 < first_expiry, "refreshed in time");
    c.send_frame(&ClientFrame::Reauth(Reauth { token: fresh.access_token.clone() })).await;
    match c.next().await {
        ServerFrame::Reauthed(r) => assert_eq!(r.token_expires_at_ms, fresh.access_expires_at_ms),
        other => panic!("expected reauthed, got {other:?}"),
    }
    // The old expiry (plus the 1000 ms the relay may take) passes without a close.
    let old_deadline = first_expiry + 1000;
    c.expect_silence(Duration::from_millis(old_deadline.saturating_sub(now_ms()))).await;
    c.expect_idle_strict().await;
    let new_expiry = fresh.access_expires_at_ms;
    let closed =
        c.expect_close_within(Duration::from_millis(new_expiry.saturating_sub(now_ms()) + 2000)).await;
    assert_eq!(closed.code, 4006);
    assert!(now_ms() + 50 >= new_expiry, "closed before the new expiry");
    relay.stop().await;
}

/// SES-14 (reauth with an invalid token or with another device's token closes 4500).
#[tokio::test]
async fn reauth_with_a_bad_or_foreign_token_closes_4500() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    for bad in ["garbage".to_string(), mobile.tokens.access_token.clone()] {
        let mut c = relay.connect(token(&desktop)).await;
        c.send_frame(&ClientFrame::Reauth(Reauth { token: bad })).await;
        let closed = c.expect_close().await;
        assert_eq!((closed.code, closed.reason.as_str()), (4500, "unauthorized"));
    }
    relay.stop().await;
}

/// TOK-2 (rotation), TOK-3 (a spent token: 401 refresh_token_reused), TOK-4 (the family is
/// revoked), TOK-5 (its access tokens are refused: REST 401, WebSocket 4502), TOK-6 (the
/// device's socket closes with 4502 within 2000 ms), TOK-7, ERR-8.
#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family_with_4502() {
    let relay = Relay::start(|_| {}).await;
    let desktop = relay.register(DeviceType::Desktop).await;
    let mut c = relay.connect(token(&desktop)).await;
    let spent = desktop.tokens.refresh_token.clone();

    let rotated = relay.refresh(&spent).await;
    rotated.expect_status(200);
    rotated.check_schema("rest/token_pair");
    let pair: relaykit_protocol::rest::TokenPair = rotated.parse();
    assert_ne!(pair.refresh_token, spent);
    assert_eq!(relay.devices(&pair.access_token).await.len(), 1, "the new access token works");

    let reused = relay.refresh(&spent).await;
    reused.expect_error(401, "refresh_token_reused");
    let revoked_at = Instant::now();
    let closed = c.expect_close_within(Duration::from_millis(2000 + 500)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4502, "session_revoked"));
    assert!(revoked_at.elapsed() <= Duration::from_millis(2000));

    relay.refresh(&pair.refresh_token).await.expect_error(401, "invalid_refresh_token");
    // A spent token stays "reused" (not merely invalid) after its family was revoked (TOK-3).
    relay.refresh(&spent).await.expect_error(401, "refresh_token_reused");
    relay.get("/v1/devices", Some(&pair.access_token)).await.expect_error(401, "unauthorized");
    relay.get("/v1/devices", Some(token(&desktop))).await.expect_error(401, "unauthorized");
    let closed =
        first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", &pair.access_token)).await;
    assert_eq!(closed.code, 4502);

    relay.refresh("rt1.never-issued").await.expect_error(401, "invalid_refresh_token");
    for body in [json!({}), json!({"refresh_token": ""}), json!({"refresh_token": 5})] {
        let response = relay.post("/v1/tokens/refresh", None, &body).await;
        let error = response.expect_error(400, "invalid_request");
        assert_eq!(error["field"], "refresh_token", "{body}");
    }
    relay.stop().await;
}

/// REV-1 (204), REV-2 (404 alike for revoked, unknown and foreign), REV-3 (4501 within 2 s),
/// REV-4 (pending entries become `revoked` receipts, definite iff never delivered, RCPT-3),
/// REV-5 (gone from the directory, presence snapshots and targets), REV-6 (its earlier sends
/// stay deliverable), ISO-1 (a revoked device target looks like an unknown one), SES-9.
#[tokio::test]
async fn revocation_closes_4501_and_pending_entries_become_revoked_receipts() {
    let relay = Relay::start(|c| c.limits.max_in_flight = 1).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let desktop2 = relay.pair(&desktop, DeviceType::Desktop).await;

    // The mobile leaves a message for the offline second desktop (REV-6 later).
    let mut m = relay.connect(token(&mobile)).await;
    let early = send("from-mobile", Target::Device(desktop2.device_id.clone()), r#""still mine""#);
    m.send_frame(&ClientFrame::NewTask(early)).await;
    m.next_accepted().await;

    let mut d = relay.connect(token(&desktop)).await;
    let mut seqs = Vec::new();
    for id in ["rv-a", "rv-b"] {
        let s = send(id, Target::Device(mobile.device_id.clone()), "1");
        d.send_frame(&ClientFrame::ToolComplete(s)).await;
        seqs.push(d.next_accepted().await.recipients[0].seq);
        if id == "rv-a" {
            assert_eq!(d.next_receipt().await.state, ReceiptState::Delivered);
        }
    }
    let (_, a) = m.next_delivery().await;
    assert_eq!(a.seq, seqs[0]);
    m.expect_idle().await; // window of 1: rv-b is pending, never delivered
    d.expect_idle().await;

    let path = format!("/v1/devices/{}", mobile.device_id);
    let response = relay.http("DELETE", &path, Some(token(&desktop)), None).await;
    response.expect_status(204);
    assert!(response.body.is_empty());
    let revoked_at = Instant::now();
    let closed = m.expect_close_within(Duration::from_millis(2000 + 500)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4501, "device_revoked"));
    assert!(revoked_at.elapsed() <= Duration::from_millis(2000));

    // Offline notice and one revoked receipt per pending entry, in any order (the window of
    // one means each receipt is acked before the next one comes).
    let mut receipts: Vec<Receipt> = Vec::new();
    let mut offline = false;
    for _ in 0..3 {
        match d.next().await {
            ServerFrame::DeviceStatus(s) => {
                assert_eq!((s.device_id.as_str(), s.status), (mobile.device_id.as_str(), Presence::Offline));
                assert!(!offline, "one offline notice");
                offline = true;
            }
            ServerFrame::Receipt(r) => {
                d.ack(r.seq.expect("terminal receipt seq")).await;
                receipts.push(r);
            }
            other => panic!("unexpected frame after revocation: {other:?}"),
        }
    }
    receipts.sort_by_key(|r| r.recipient_seq);
    let summary: Vec<_> =
        receipts.iter().map(|r| (r.id.as_str(), r.recipient_seq, r.state, r.definite)).collect();
    assert_eq!(
        summary,
        [("rv-a", seqs[0], ReceiptState::Revoked, false), ("rv-b", seqs[1], ReceiptState::Revoked, true)]
    );
    d.expect_idle_strict().await;

    // REV-5: gone from the directory and from targets.
    let devices = relay.devices(token(&desktop)).await;
    let mut listed: Vec<&str> = devices.iter().filter_map(|d| d["device_id"].as_str()).collect();
    listed.sort_unstable();
    let mut expected = [desktop.device_id.as_str(), desktop2.device_id.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    d.send_frame(&ClientFrame::NewTask(send("rv-c", Target::Device(mobile.device_id.clone()), "1"))).await;
    let revoked_target = expect_error_code(d.next().await, "unknown_recipient");
    d.send_frame(&ClientFrame::NewTask(send("rv-d", Target::Device("dev_nobody".into()), "1"))).await;
    let unknown_target = expect_error_code(d.next().await, "unknown_recipient");
    let strip = |e: ErrorFrame| ErrorFrame { ref_id: None, ..e };
    assert_eq!(strip(revoked_target), strip(unknown_target));
    d.send_frame(&ClientFrame::NewTask(send("rv-e", Target::Role(DeviceType::Mobile), "1"))).await;
    expect_error_code(d.next().await, "no_recipient");

    // REV-2: the same 404 for revoked, unknown and another user's device.
    let stranger = relay.register(DeviceType::Mobile).await;
    let mut bodies = Vec::new();
    for id in [mobile.device_id.as_str(), "dev_nobody", stranger.device_id.as_str()] {
        let r = relay.http("DELETE", &format!("/v1/devices/{id}"), Some(token(&desktop)), None).await;
        bodies.push(r.expect_error(404, "not_found"));
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // The revoked device's credentials are dead.
    let closed = first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", token(&mobile))).await;
    assert_eq!(closed.code, 4501);
    relay.refresh(&mobile.tokens.refresh_token).await.expect_error(401, "invalid_refresh_token");
    relay.get("/v1/devices", Some(token(&mobile))).await.expect_error(401, "unauthorized");

    // REV-5 and REV-6: the second desktop's snapshot omits the revoked device, and what that
    // device sent earlier is still delivered (its receipt is discarded).
    let mut d2 = relay.connect(token(&desktop2)).await;
    let snapshot = d2.next_presence().await;
    assert_eq!(
        (snapshot.device_id.as_str(), snapshot.status),
        (desktop.device_id.as_str(), Presence::Online)
    );
    let (_, kept) = match d2.next().await.into_delivery() {
        Ok(x) => x,
        Err(other) => panic!("expected the revoked device's earlier message, got {other:?}"),
    };
    assert_eq!((kept.id.as_str(), kept.from.as_str()), ("from-mobile", mobile.device_id.as_str()));
    d2.ack(kept.seq).await;
    d2.expect_idle_strict().await;
    d.expect_idle().await;
    relay.stop().await;
}

/// TEST-2 (the hook is served iff `test_tokens` is announced), TEST-3 and ERR-10 (size, then
/// the bearer token, then the body), TEST-4 (merged claims and header, `null` removes), AUTH-4,
/// AUTH-6, AUTH-7 (minted tokens are validated like any other).
#[tokio::test]
async fn test_hook_mints_tokens_that_are_validated_like_any_other() {
    let relay = Relay::start(|c| c.test_tokens = true).await;
    let info = relay.get("/v1/info", None).await.json();
    assert_eq!(info["capabilities"], json!(["e2e", "test_tokens"]));
    let desktop = relay.register(DeviceType::Desktop).await;
    let hook = "/v1/test/tokens";
    relay.http("POST", hook, None, Some(b"{not json")).await.expect_error(401, "unauthorized");
    relay
        .http("POST", hook, Some(token(&desktop)), Some(b"{not json"))
        .await
        .expect_error(400, "invalid_request");
    let big = vec![b' '; relay.limits().max_frame_bytes as usize + 1];
    relay.http("POST", hook, None, Some(&big)).await.expect_error(413, "payload_too_large");

    let mint = |body: serde_json::Value| {
        let relay = &relay;
        let bearer = token(&desktop).to_string();
        async move {
            let response = relay.post(hook, Some(&bearer), &body).await;
            response.expect_status(200);
            response.check_schema("rest/test_token_response");
            response.json()["token"].as_str().expect("token").to_string()
        }
    };
    let now_s = now_ms() / 1000;
    let plain = mint(json!({})).await;
    let (header, claims) = jwt_parts(&plain);
    assert_eq!(
        (header["typ"].as_str(), claims["did"].as_str()),
        (Some("at+jwt"), Some(desktop.device_id.as_str()))
    );
    let c = relay.connect(&plain).await;
    assert_eq!(c.welcome().device_id, desktop.device_id);

    let expired = mint(json!({"claims": {"iat": now_s - 100, "nbf": now_s - 100, "exp": now_s - 40}})).await;
    let closed = first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", &expired)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4006, "token_expired"));
    for (body, what) in [
        (json!({"header": {"typ": "JWT"}}), "typ JWT"),
        (json!({"header": {"alg": "none"}}), "alg none"),
        (json!({"claims": {"jti": null}}), "no jti"),
        (json!({"claims": {"aud": ["relay"]}}), "array aud"),
        (json!({"claims": {"nbf": now_s + 3600}}), "not yet valid"),
    ] {
        let bad = mint(body).await;
        if what == "no jti" {
            assert!(jwt_parts(&bad).1.get("jti").is_none(), "null removes the claim");
        }
        let closed = first_frame_closes(&relay, Some("relay.v1"), &hello_text("relay.v1", &bad)).await;
        assert_eq!(closed.code, 4500, "{what}");
        relay.get("/v1/devices", Some(&bad)).await.expect_error(401, "unauthorized");
    }
    relay.get("/v1/devices", Some(&expired)).await.expect_error(401, "token_expired");
    relay.stop().await;
}
