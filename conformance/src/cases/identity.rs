//! Identity cases: registration, pairing codes, the device directory, revocation and tenant
//! isolation (PROTOCOL.md sections 6 and 8.2).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use relaykit_protocol::client::{Ack, Heartbeat, Reject, Send};
use relaykit_protocol::rest::{DeviceList, PairingCode, Registered};
use relaykit_protocol::server::{DeviceStatus, Presence, ReceiptState};
use relaykit_protocol::{ClientFrame, CloseCode, DeviceType, RawJson, ServerFrame, Target};
use serde_json::{Value, json};

use super::auth::{
    at_least, b64, claims_of, expect_refused, expect_session_close, header_of, int_claim, random_u64,
    refresh, rest_error, str_claim,
};
use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, Session, check_rest_schema, ensure, fail};
use crate::conn::Event;
use crate::http::Response;

/// 32 bytes in base64url (43 characters).
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
/// The Crockford base32 alphabet of pairing codes.
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A valid registration body without pairing code.
pub(super) fn device_body(device_type: &str) -> Value {
    json!({
        "device_name": format!("conformance {device_type}"),
        "device_type": device_type,
        "platform": "relaykit-check",
        "public_key": {"alg": "x25519", "key": KEY},
    })
}

/// A random code in canonical form (40 random bits: never one the relay issued, in practice).
pub(super) fn random_pairing_code() -> String {
    let mut n = random_u64();
    let mut code = String::new();
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        code.push(CROCKFORD[(n & 31) as usize] as char);
        n >>= 5;
    }
    code
}

fn is_canonical_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 9 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || CROCKFORD.contains(c))
}

async fn post_device(ctx: &Ctx, body: &Value) -> Result<Response, Miss> {
    ctx.rest("POST", "/v1/devices", None, Some(body)).await
}

/// A registration that must succeed: 201 and a schema-valid body.
async fn register_body(ctx: &Ctx, body: &Value) -> Result<Registered, Miss> {
    let r = post_device(ctx, body).await?;
    ensure(r.status == 201, "201 from POST /v1/devices", (r.status, &r.body))?;
    check_rest_schema("rest/register_device_response", &r.body)?;
    serde_json::from_str(&r.body).map_err(|e| fail("a registration body", e.to_string()))
}

/// `POST /v1/devices` with `body` is 400 `invalid_request` naming `field`.
async fn expect_invalid(ctx: &Ctx, body: &Value, field: &str) -> CaseResult {
    let e = rest_error(&post_device(ctx, body).await?, 400, "invalid_request")?;
    ensure(e.field.as_deref() == Some(field), format!("invalid_request with field {field}"), (&e, body))
}

/// `GET /v1/devices` as `token`: 200 and a schema-valid list.
async fn directory(ctx: &Ctx, token: &str) -> Result<DeviceList, Miss> {
    let r = ctx.rest("GET", "/v1/devices", Some(token), None).await?;
    ensure(r.status == 200, "200 from GET /v1/devices", (r.status, &r.body))?;
    check_rest_schema("rest/device_list", &r.body)?;
    serde_json::from_str(&r.body).map_err(|e| fail("a device list", e.to_string()))
}

fn ids_of(list: &DeviceList) -> BTreeSet<String> {
    list.devices.iter().map(|d| d.device_id.clone()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The directory of `token` lists exactly `expected`.
async fn lists_exactly(ctx: &Ctx, token: &str, expected: &[&str]) -> CaseResult {
    let list = directory(ctx, token).await?;
    ensure(ids_of(&list) == set(expected), format!("exactly the devices {expected:?}"), ids_of(&list))
}

/// `DELETE /v1/devices/{id}` as `by`.
async fn revoke(ctx: &Ctx, by: &Registered, device_id: &str) -> Result<Response, Miss> {
    ctx.rest("DELETE", &format!("/v1/devices/{device_id}"), Some(&by.tokens.access_token), None).await
}

/// A revocation that must succeed: 204 with an empty body.
async fn revoked(ctx: &Ctx, by: &Registered, device_id: &str) -> CaseResult {
    let r = revoke(ctx, by, device_id).await?;
    ensure(r.status == 204 && r.body.is_empty(), "204 with an empty body", (r.status, &r.body))
}

/// A further device joining the user of `device` with a fresh code.
async fn join(ctx: &Ctx, device: &Registered, device_type: DeviceType) -> Result<Registered, Miss> {
    let code = ctx.pairing_code(device).await?;
    ctx.register(device_type, Some(&code)).await
}

/// A `new_task` with an empty object payload.
fn task(id: &str, to: Target) -> ClientFrame {
    ClientFrame::NewTask(Send {
        id: id.into(),
        to,
        priority: None,
        ttl_ms: None,
        max_attempts: None,
        payload: Some(RawJson::from_text("{}").expect("JSON")),
        e2e: None,
    })
}

/// The answer to a send (`accepted` or `error`), skipping receipts.
async fn answer(s: &mut Session) -> Result<ServerFrame, Miss> {
    for _ in 0..16 {
        match s.next_frame().await? {
            ServerFrame::Receipt(_) => continue,
            other => return Ok(other),
        }
    }
    Err(fail("accepted or error", "receipts only"))
}

/// The error answering a send, with the expected code and `ref_id`.
async fn send_error(
    s: &mut Session,
    id: &str,
    code: &str,
) -> Result<relaykit_protocol::server::ErrorFrame, Miss> {
    match answer(s).await? {
        ServerFrame::Error(e) => {
            ensure(
                e.code.as_str() == code && e.ref_id.as_deref() == Some(id) && !e.fatal,
                format!("non-fatal error {code} with ref_id {id}"),
                &e,
            )?;
            Ok(e)
        }
        other => Err(fail(format!("error {code}"), other)),
    }
}

/// Sends a ping and collects every `device_status` until its pong.
async fn presence_until_pong(s: &mut Session, nonce: u64, wait: Duration) -> Result<Vec<DeviceStatus>, Miss> {
    s.send(&ClientFrame::Ping(Heartbeat { nonce })).await;
    let mut seen = Vec::new();
    for _ in 0..256 {
        match s.conn.next(wait).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) => seen.push(d),
            Event::Frame(ServerFrame::Pong(p)) if p.nonce == nonce => return Ok(seen),
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            Event::Frame(_) => {}
            other => return Err(fail(format!("pong {nonce}"), other)),
        }
    }
    Err(fail(format!("pong {nonce}"), "256 other frames"))
}

/// Reads until `device_status` says `device_id` is `status`; returns every `device_status` seen.
async fn wait_status(
    s: &mut Session,
    device_id: &str,
    status: Presence,
    wait: Duration,
) -> Result<Vec<DeviceStatus>, Miss> {
    let mut seen = Vec::new();
    for _ in 0..256 {
        match s.conn.next(wait).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) => {
                let done = d.device_id == device_id && d.status == status;
                seen.push(d);
                if done {
                    return Ok(seen);
                }
            }
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            Event::Frame(_) => {}
            other => return Err(fail(format!("device_status {device_id} {}", status.as_str()), other)),
        }
    }
    Err(fail(format!("device_status {device_id}"), "256 other frames"))
}

fn status_in(list: &DeviceList, device_id: &str) -> Option<Presence> {
    list.devices.iter().find(|d| d.device_id == device_id).map(|d| d.status)
}

pub(super) const CASES: &[Case] = &[
    // --- registration --------------------------------------------------------------------------
    case!(
        "reg-new-user",
        "registration",
        Must,
        ["REG-1", "REG-4"],
        "registration without a code creates a new user: 201 {user_id, device_id, tokens} matching the token claims",
        |ctx| {
            let a = ctx.register(DeviceType::Desktop, None).await?;
            let b = ctx.register(DeviceType::Mobile, None).await?;
            ensure(
                a.user_id != b.user_id,
                "two registrations without a code: two users",
                (&a.user_id, &b.user_id),
            )?;
            for (r, dty) in [(&a, "desktop"), (&b, "mobile")] {
                let c = claims_of(&r.tokens.access_token)?;
                ensure(
                    str_claim(&c, "sub")? == r.user_id
                        && str_claim(&c, "did")? == r.device_id
                        && str_claim(&c, "dty")? == dty,
                    "sub = user_id, did = device_id, dty = device_type",
                    (&c, r),
                )?;
                ensure(
                    r.tokens.token_type == "Bearer"
                        && r.tokens.access_expires_at_ms == int_claim(&c, "exp")? * 1000,
                    "token_type Bearer, access_expires_at_ms = exp x 1000",
                    &r.tokens,
                )?;
            }
            lists_exactly(&ctx, &a.tokens.access_token, &[&a.device_id]).await
        }
    ),
    case!(
        "reg-access-token-claims",
        "registration",
        Must,
        ["AUTH-1", "DISC-3"],
        "issued access tokens: EdDSA, at+jwt, a kid of /v1/jwks, ten claims of the right types, lifetime <= 3600 s",
        |ctx| {
            let desktop = ctx.register(DeviceType::Desktop, None).await?;
            ensure(ctx.info.jwks_uri == "/v1/jwks", "jwks_uri /v1/jwks", &ctx.info.jwks_uri)?;
            let r = ctx.rest("GET", "/v1/jwks", None, None).await?;
            ensure(r.status == 200, "200 from GET /v1/jwks", (r.status, &r.body))?;
            check_rest_schema("rest/jwks", &r.body)?;
            let jwks: relaykit_protocol::rest::Jwks =
                serde_json::from_str(&r.body).map_err(|e| fail("a JWKS", e.to_string()))?;
            let pair = super::auth::refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            for token in [&desktop.tokens.access_token, &pair.access_token] {
                let h = header_of(token)?;
                let kid = str_claim(&h, "kid")?;
                ensure(
                    h.get("alg") == Some(&json!("EdDSA")) && h.get("typ") == Some(&json!("at+jwt")),
                    "header alg EdDSA, typ at+jwt",
                    &h,
                )?;
                ensure(
                    jwks.keys
                        .iter()
                        .any(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519" && k.alg == "EdDSA"),
                    format!("an Ed25519 key {kid} in /v1/jwks"),
                    &jwks,
                )?;
                let c = claims_of(token)?;
                for name in ["iss", "aud", "sub", "did", "dty", "fam", "jti"] {
                    str_claim(&c, name)?;
                }
                let (iat, nbf, exp) = (int_claim(&c, "iat")?, int_claim(&c, "nbf")?, int_claim(&c, "exp")?);
                ensure(nbf <= exp && exp > iat && exp - iat <= 3600, "0 < exp - iat <= 3600", &c)?;
                ensure(
                    str_claim(&c, "iss")? == ctx.info.issuer && str_claim(&c, "aud")? == ctx.info.audience,
                    "iss and aud equal to the info values",
                    (&c, &ctx.info.issuer, &ctx.info.audience),
                )?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-ids-unique",
        "registration",
        Must,
        ["REG-5"],
        "user and device ids are never reused, also after a revocation",
        |ctx| {
            let (mut users, mut devices) = (BTreeSet::new(), BTreeSet::new());
            for _ in 0..3 {
                let r = ctx.register(DeviceType::Desktop, None).await?;
                ensure(users.insert(r.user_id.clone()), "a new user_id", &r.user_id)?;
                ensure(devices.insert(r.device_id.clone()), "a new device_id", &r.device_id)?;
            }
            let (desktop, mobile) = ctx.pair().await?;
            ensure(users.insert(desktop.user_id.clone()), "a new user_id", &desktop.user_id)?;
            for d in [&desktop, &mobile] {
                ensure(devices.insert(d.device_id.clone()), "a new device_id", &d.device_id)?;
            }
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let again = join(&ctx, &mobile, DeviceType::Desktop).await?;
            ensure(
                devices.insert(again.device_id.clone()),
                "a new device_id after revocation",
                &again.device_id,
            )?;
            let fresh = ctx.register(DeviceType::Desktop, None).await?;
            ensure(users.insert(fresh.user_id.clone()), "a new user_id", &fresh.user_id)?;
            ensure(devices.insert(fresh.device_id.clone()), "a new device_id", &fresh.device_id)
        }
    ),
    case!(
        "reg-invalid-device-type",
        "registration",
        Must,
        ["ERR-8", "ERR-7"],
        "device_type tablet, a number or null is 400 invalid_request with field device_type",
        |ctx| {
            for value in [json!("tablet"), json!(1), Value::Null, json!("Desktop")] {
                let mut body = device_body("desktop");
                body["device_type"] = value;
                expect_invalid(&ctx, &body, "device_type").await?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-name-and-platform-length",
        "registration",
        Must,
        ["ERR-8", "REG-1"],
        "device_name 1-200 and platform 1-50 characters (code points): outside is 400 naming the field",
        |ctx| {
            let mut body = device_body("desktop");
            body["device_name"] = json!("\u{e9}".repeat(200));
            body["platform"] = json!("\u{e9}".repeat(50));
            register_body(&ctx, &body).await?;
            for (field, value) in [
                ("device_name", String::new()),
                ("device_name", "\u{e9}".repeat(201)),
                ("platform", String::new()),
                ("platform", "p".repeat(51)),
            ] {
                let mut body = device_body("desktop");
                body[field] = json!(value);
                expect_invalid(&ctx, &body, field).await?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-public-key-invalid",
        "registration",
        Must,
        ["ERR-8"],
        "a public key of 31 or 33 bytes, not base64url, or of an unknown alg is 400 naming the member",
        |ctx| {
            for (field, key) in [
                ("public_key.key", json!({"alg": "x25519", "key": b64(&[7u8; 31])})),
                ("public_key.key", json!({"alg": "x25519", "key": b64(&[7u8; 33])})),
                ("public_key.key", json!({"alg": "x25519", "key": format!("{}+/", &KEY[..41])})),
                ("public_key.key", json!({"alg": "x25519", "key": ""})),
                ("public_key.alg", json!({"alg": "rsa", "key": KEY})),
            ] {
                let mut body = device_body("desktop");
                body["public_key"] = key;
                expect_invalid(&ctx, &body, field).await?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-missing-member",
        "registration",
        Must,
        ["ERR-8"],
        "a registration without platform, device_name or public_key.alg is 400 naming the missing member's path",
        |ctx| {
            for path in ["platform", "device_name", "public_key.alg"] {
                let mut body = device_body("desktop");
                match path.split_once('.') {
                    Some((outer, inner)) => body[outer].as_object_mut().map(|o| o.remove(inner)),
                    None => body.as_object_mut().map(|o| o.remove(path)),
                };
                expect_invalid(&ctx, &body, path).await?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-malformed-pairing-code",
        "registration",
        Must,
        ["ERR-8"],
        "a pairing_code not in canonical XXXX-XXXX form is 400 invalid_request (not invalid_pairing_code)",
        |ctx| {
            for code in [json!("abcd-efgh"), json!("ABCDEFGH"), json!("ABCD-EFGU"), json!(12345678)] {
                let mut body = device_body("mobile");
                body["pairing_code"] = code;
                expect_invalid(&ctx, &body, "pairing_code").await?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-body-not-object",
        "registration",
        Must,
        ["ERR-8"],
        "a registration body that is not a JSON object is 400 invalid_request",
        |ctx| {
            for body in [json!([device_body("desktop")]), json!("desktop"), Value::Null] {
                rest_error(&post_device(&ctx, &body).await?, 400, "invalid_request")?;
            }
            Ok(())
        }
    ),
    case!(
        "reg-closed",
        "registration",
        Must,
        ["REG-2"],
        "with registration closed, a registration without code is 403 registration_closed",
        |ctx| {
            if ctx.info.registration_open {
                return Err(Miss::Skip(
                    "registration is open: registration_closed cannot be provoked".into(),
                ));
            }
            rest_error(&post_device(&ctx, &device_body("desktop")).await?, 403, "registration_closed")
                .map(drop)
        }
    ),
    // --- pairing -------------------------------------------------------------------------------
    case!(
        "pair-code-format",
        "pairing",
        Must,
        ["PAIR-1", "PAIR-2", "PAIR-3"],
        "pairing codes: 201, XXXX-XXXX Crockford base32, distinct, expiring within 10 minutes",
        |ctx| {
            let start = Instant::now();
            let desktop = ctx.register(DeviceType::Desktop, None).await?;
            let iat_ms = int_claim(&claims_of(&desktop.tokens.access_token)?, "iat")? * 1000;
            let mut codes = BTreeSet::new();
            for _ in 0..5 {
                let r =
                    ctx.rest("POST", "/v1/pairing-codes", Some(&desktop.tokens.access_token), None).await?;
                ensure(r.status == 201, "201 from POST /v1/pairing-codes", (r.status, &r.body))?;
                check_rest_schema("rest/pairing_code_response", &r.body)?;
                let code: PairingCode =
                    serde_json::from_str(&r.body).map_err(|e| fail("a pairing code", e.to_string()))?;
                ensure(is_canonical_code(&code.code), "XXXX-XXXX in Crockford base32", &code.code)?;
                ensure(codes.insert(code.code.clone()), "distinct codes", &code.code)?;
                // Created after the registration (iat, relay clock) and at most `start.elapsed()`
                // plus one second of iat rounding later.
                let latest = iat_ms + 1000 + start.elapsed().as_millis() as u64;
                ensure(
                    code.expires_at_ms > iat_ms && code.expires_at_ms <= latest + 600_000,
                    "expires_at_ms in the future and at most 600000 ms after creation",
                    (code.expires_at_ms, iat_ms, latest),
                )?;
            }
            Ok(())
        }
    ),
    case!(
        "pair-joins-user",
        "pairing",
        Must,
        ["REG-3", "DIR-1"],
        "a device registered with a code joins the code creator's user; both directories list both",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            ensure(
                mobile.user_id == desktop.user_id,
                "the same user_id",
                (&desktop.user_id, &mobile.user_id),
            )?;
            let c = claims_of(&mobile.tokens.access_token)?;
            ensure(str_claim(&c, "sub")? == desktop.user_id, "sub = the creator's user", &c)?;
            for d in [&desktop, &mobile] {
                lists_exactly(&ctx, &d.tokens.access_token, &[&desktop.device_id, &mobile.device_id]).await?;
            }
            Ok(())
        }
    ),
    case!(
        "pair-code-single-use",
        "pairing",
        Must,
        ["PAIR-4", "PAIR-5"],
        "a consumed code is refused with 400 invalid_pairing_code and creates nothing",
        |ctx| {
            let desktop = ctx.register(DeviceType::Desktop, None).await?;
            let code = ctx.pairing_code(&desktop).await?;
            let mobile = ctx.register(DeviceType::Mobile, Some(&code)).await?;
            let mut body = device_body("mobile");
            body["pairing_code"] = json!(code);
            let e = rest_error(&post_device(&ctx, &body).await?, 400, "invalid_pairing_code")?;
            ensure(e.field.as_deref() == Some("pairing_code"), "field pairing_code", &e)?;
            lists_exactly(&ctx, &desktop.tokens.access_token, &[&desktop.device_id, &mobile.device_id]).await
        }
    ),
    case!(
        "pair-wrong-code-identical",
        "pairing",
        Must,
        ["PAIR-5"],
        "a wrong code and a used code get identical 400 invalid_pairing_code answers (message, field)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let used = ctx.pairing_code(&desktop).await?;
            ctx.register(DeviceType::Mobile, Some(&used)).await?;
            let mut answers = Vec::new();
            for code in [random_pairing_code(), used] {
                let mut body = device_body("mobile");
                body["pairing_code"] = json!(code);
                let e = rest_error(&post_device(&ctx, &body).await?, 400, "invalid_pairing_code")?;
                ensure(e.field.as_deref() == Some("pairing_code"), "field pairing_code", &e)?;
                answers.push(e);
            }
            ensure(answers[0] == answers[1], "identical error bodies for wrong and used codes", &answers)
        }
    ),
    case!(
        "pair-needs-auth",
        "pairing",
        Must,
        ["PAIR-1", "AUTH-9"],
        "POST /v1/pairing-codes without a bearer token, or with a bad one, is 401 unauthorized",
        |ctx| {
            let r = ctx.rest("POST", "/v1/pairing-codes", None, None).await?;
            rest_error(&r, 401, "unauthorized")?;
            let r = ctx.rest("POST", "/v1/pairing-codes", Some("not-a-token"), None).await?;
            rest_error(&r, 401, "unauthorized").map(drop)
        }
    ),
    case!(
        "pair-failed-registration-keeps-code",
        "pairing",
        Must,
        ["PAIR-4", "ERR-10"],
        "a registration refused for its body does not consume the code; the next valid one joins the user",
        |ctx| {
            let desktop = ctx.register(DeviceType::Desktop, None).await?;
            let code = ctx.pairing_code(&desktop).await?;
            let mut body = device_body("mobile");
            body["pairing_code"] = json!(code);
            body["public_key"]["key"] = json!(b64(&[1u8; 16]));
            expect_invalid(&ctx, &body, "public_key.key").await?;
            let mobile = ctx.register(DeviceType::Mobile, Some(&code)).await?;
            ensure(
                mobile.user_id == desktop.user_id,
                "the code still joins the creator's user",
                &mobile.user_id,
            )
        }
    ),
    // --- directory -----------------------------------------------------------------------------
    case!(
        "dir-lists-own-devices",
        "directory",
        Must,
        ["DIR-1", "ISO-2"],
        "GET /v1/devices lists exactly the caller's user's devices, never another user's",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let b_third = join(&ctx, &b_desk, DeviceType::Mobile).await?;
            let _online = ctx.connect("b-desktop", &b_desk).await?;
            lists_exactly(&ctx, &a_mob.tokens.access_token, &[&a_desk.device_id, &a_mob.device_id]).await?;
            lists_exactly(
                &ctx,
                &b_mob.tokens.access_token,
                &[&b_desk.device_id, &b_mob.device_id, &b_third.device_id],
            )
            .await
        }
    ),
    case!(
        "dir-registered-fields",
        "directory",
        Must,
        ["DIR-2"],
        "directory entries return device_name, device_type, platform, capabilities and public_key as registered",
        |ctx| {
            let mut body = device_body("desktop");
            body["device_name"] = json!("Ana's Mac \u{2713} \u{65e5}\u{672c} \"q\"");
            body["platform"] = json!("macos");
            body["capabilities"] = json!({"notifications": true, "nested": {"list": [1, "two", null]}});
            body["public_key"] = json!({"alg": "ed25519", "key": format!("{KEY}=")});
            let desktop = register_body(&ctx, &body).await?;
            let code = ctx.pairing_code(&desktop).await?;
            let mobile = ctx.register(DeviceType::Mobile, Some(&code)).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            let entry = |id: &str| {
                list.devices
                    .iter()
                    .find(|d| d.device_id == id)
                    .ok_or_else(|| fail(format!("device {id} listed"), &list))
            };
            let d = entry(&desktop.device_id)?;
            ensure(
                d.device_name == body["device_name"]
                    && d.device_type == DeviceType::Desktop
                    && d.platform == "macos"
                    && Value::Object(d.capabilities.clone()) == body["capabilities"]
                    && d.public_key.alg == "ed25519"
                    && d.public_key.key == format!("{KEY}="),
                "the desktop's fields as registered",
                (d, &body),
            )?;
            let m = entry(&mobile.device_id)?;
            ensure(
                m.device_name == "conformance mobile"
                    && m.device_type == DeviceType::Mobile
                    && m.platform == "relaykit-check"
                    && m.capabilities.is_empty()
                    && m.public_key.alg == "x25519"
                    && m.public_key.key == KEY,
                "the mobile's fields as registered, capabilities {}",
                m,
            )
        }
    ),
    case!(
        "dir-presence-status",
        "directory",
        Must,
        ["DIR-3"],
        "directory status is online exactly while a device has an authenticated connection",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &mobile.device_id) == Some(Presence::Online)
                    && status_in(&list, &desktop.device_id) == Some(Presence::Offline),
                "mobile online, desktop offline",
                &list,
            )?;
            let home = ctx.connect("desktop", &desktop).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &desktop.device_id) == Some(Presence::Online),
                "desktop online after its welcome",
                &list,
            )?;
            // The phone's snapshot already said "desktop offline": consume the change to online
            // first, so the offline awaited below is the one caused by the close.
            wait_status(&mut phone, &desktop.device_id, Presence::Online, ctx.prompt()).await?;
            drop(home);
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &desktop.device_id) == Some(Presence::Offline)
                    && status_in(&list, &mobile.device_id) == Some(Presence::Online),
                "desktop offline after its connection closed",
                &list,
            )
        }
    ),
    // --- revocation ----------------------------------------------------------------------------
    case!(
        "rev-delete-204",
        "revocation",
        Must,
        ["REV-1", "REV-5"],
        "DELETE of a same-user device is 204; it leaves the directory, the presence snapshot and both kinds of target",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            lists_exactly(&ctx, &mobile.tokens.access_token, &[&mobile.device_id]).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let snapshot = presence_until_pong(&mut phone, 5, ctx.prompt()).await?;
            ensure(
                snapshot.iter().all(|d| d.device_id != desktop.device_id),
                "no device_status for the revoked device",
                &snapshot,
            )?;
            phone.send(&task("to-device", Target::Device(desktop.device_id.clone()))).await;
            send_error(&mut phone, "to-device", "unknown_recipient").await?;
            phone.send(&task("to-role", Target::Role(DeviceType::Desktop))).await;
            send_error(&mut phone, "to-role", "no_recipient").await.map(drop)
        }
    ),
    case!(
        "rev-closes-socket-4501",
        "revocation",
        Must,
        ["REV-3", "SES-9"],
        "revocation closes the device's connection with 4501 within 2000 ms; the user's other device sees it offline",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let start = Instant::now();
            expect_session_close(&mut home, ctx.prompt(), CloseCode::DeviceRevoked).await?;
            let bound = at_least(&ctx, Duration::from_millis(2000));
            ensure(start.elapsed() <= bound, format!("the close within {bound:?}"), start.elapsed())?;
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await.map(drop)
        }
    ),
    case!(
        "rev-self",
        "revocation",
        Must,
        ["REV-1", "AUTH-9"],
        "a device can revoke itself (204); its access token is then 401 unauthorized",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &desktop, &desktop.device_id).await?;
            let r = ctx.rest("GET", "/v1/devices", Some(&desktop.tokens.access_token), None).await?;
            rest_error(&r, 401, "unauthorized")?;
            lists_exactly(&ctx, &mobile.tokens.access_token, &[&mobile.device_id]).await
        }
    ),
    case!(
        "rev-revoked-token-ws",
        "revocation",
        Must,
        ["SES-1", "AUTH-3"],
        "hello with an unexpired token of a revoked device is closed with 4501 device_revoked",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            expect_refused(&ctx, "desktop", &desktop.tokens.access_token, CloseCode::DeviceRevoked).await
        }
    ),
    case!(
        "rev-refresh-refused",
        "revocation",
        Must,
        ["TOK-7"],
        "the unspent refresh token of a revoked device is 401 invalid_refresh_token",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            rest_error(&refresh(&ctx, &desktop.tokens.refresh_token).await?, 401, "invalid_refresh_token")
                .map(drop)
        }
    ),
    case!(
        "rev-other-user-404",
        "revocation",
        Must,
        ["REV-2"],
        "DELETE of another user's, an unknown or a revoked device is the same 404 not_found; nothing changes",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let a_gone = join(&ctx, &a_desk, DeviceType::Mobile).await?;
            revoked(&ctx, &a_mob, &a_gone.device_id).await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let unknown = format!("dev-conformance-{:x}", random_u64());
            let mut answers = Vec::new();
            for id in [&b_desk.device_id, &unknown, &a_gone.device_id] {
                answers.push(rest_error(&revoke(&ctx, &a_mob, id).await?, 404, "not_found")?);
            }
            ensure(
                answers[0] == answers[1] && answers[1] == answers[2],
                "identical 404 bodies for another user's, unknown and revoked devices",
                &answers,
            )?;
            lists_exactly(&ctx, &b_desk.tokens.access_token, &[&b_desk.device_id, &b_mob.device_id]).await
        }
    ),
    case!(
        "rev-pending-revoked-receipts",
        "revocation",
        Must,
        ["REV-4", "RCPT-3"],
        "revocation turns the device's pending entries into revoked receipts: definite false if delivered, true if not",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("seen", Target::Role(DeviceType::Desktop))).await;
            let seen = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            {
                let mut home = ctx.connect("desktop", &desktop).await?;
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) if d.id == "seen" => {}
                    other => return Err(fail("new_task seen", other)),
                }
            }
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await?;
            phone.send(&task("unseen", Target::Role(DeviceType::Desktop))).await;
            let unseen = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let mut got = Vec::new();
            for _ in 0..16 {
                if got.len() == 2 {
                    break;
                }
                match phone.next_frame().await? {
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Revoked => {
                        if let Some(seq) = r.seq {
                            phone.send(&ClientFrame::Ack(Ack { seq })).await;
                        }
                        got.push(r);
                    }
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Delivered => {}
                    other => return Err(fail("receipt revoked", other)),
                }
            }
            for (id, seq, definite) in [("seen", seen, false), ("unseen", unseen, true)] {
                let r = got
                    .iter()
                    .find(|r| r.id == id)
                    .ok_or_else(|| fail(format!("a revoked receipt for {id}"), &got))?;
                ensure(
                    r.recipient == desktop.device_id
                        && r.recipient_seq == seq
                        && r.definite == definite
                        && r.seq.is_some(),
                    format!("{id}: recipient, recipient_seq {seq}, definite {definite}, own seq"),
                    r,
                )?;
            }
            Ok(())
        }
    ),
    case!(
        "rev-sent-entries-survive",
        "revocation",
        Must,
        ["REV-6"],
        "messages a device sent before its revocation are still delivered",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            {
                let mut home = ctx.connect("desktop", &desktop).await?;
                home.send(&task("before", Target::Role(DeviceType::Mobile))).await;
                match answer(&mut home).await? {
                    ServerFrame::Accepted(_) => {}
                    other => return Err(fail("accepted", other)),
                }
            }
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            match phone.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(
                        d.id == "before" && d.from == desktop.device_id,
                        "the revoked device's message",
                        &d,
                    )?;
                    phone.ack(d.seq).await;
                }
                other => return Err(fail("new_task before", other)),
            }
            phone.expect_nothing(ctx.scaled(Duration::from_millis(300))).await
        }
    ),
    // --- isolation -----------------------------------------------------------------------------
    case!(
        "iso-other-user-device-is-unknown",
        "isolation",
        Must,
        ["ISO-1", "TGT-2", "REV-5"],
        "a device target of another user, an unknown id and a revoked device get the same unknown_recipient",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let a_gone = join(&ctx, &a_desk, DeviceType::Desktop).await?;
            revoked(&ctx, &a_mob, &a_gone.device_id).await?;
            let (b_desk, _) = ctx.pair().await?;
            let mut b_home = ctx.connect("b-desktop", &b_desk).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            let unknown = format!("dev-conformance-{:x}", random_u64());
            let mut errors = Vec::new();
            for (id, target) in
                [("foreign", &b_desk.device_id), ("unknown", &unknown), ("revoked", &a_gone.device_id)]
            {
                phone.send(&task(id, Target::Device(target.clone()))).await;
                errors.push(send_error(&mut phone, id, "unknown_recipient").await?);
            }
            let shape = |e: &relaykit_protocol::server::ErrorFrame| (e.message.clone(), e.field.clone());
            ensure(
                shape(&errors[0]) == shape(&errors[1]) && shape(&errors[1]) == shape(&errors[2]),
                "the same message and field for all three",
                &errors,
            )?;
            phone.send(&task("own", Target::Device(a_desk.device_id.clone()))).await;
            match answer(&mut phone).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail("accepted for the user's own device", other)),
            }
            b_home.expect_nothing(ctx.scaled(Duration::from_millis(300))).await
        }
    ),
    case!(
        "iso-presence-own-user-only",
        "isolation",
        Must,
        ["ISO-2"],
        "presence snapshots and changes never mention another user's devices",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let mut a_home = ctx.connect("a-desktop", &a_desk).await?;
            let mut seen = presence_until_pong(&mut a_home, 1, ctx.prompt()).await?;
            {
                let _b_home = ctx.connect("b-desktop", &b_desk).await?;
                let mut b_phone = ctx.connect("b-mobile", &b_mob).await?;
                wait_status(&mut b_phone, &b_desk.device_id, Presence::Online, ctx.prompt()).await?;
            }
            let a_phone = ctx.connect("a-mobile", &a_mob).await?;
            seen.extend(wait_status(&mut a_home, &a_mob.device_id, Presence::Online, ctx.prompt()).await?);
            drop(a_phone);
            seen.extend(wait_status(&mut a_home, &a_mob.device_id, Presence::Offline, ctx.prompt()).await?);
            seen.extend(presence_until_pong(&mut a_home, 2, ctx.prompt()).await?);
            ensure(
                seen.iter().all(|d| d.device_id == a_mob.device_id),
                "device_status only for the user's own other device",
                &seen,
            )
        }
    ),
    case!(
        "iso-spoofed-from",
        "isolation",
        Must,
        ["DLV-14", "ISO-2"],
        "a from member naming another user's device is ignored: the delivery's from is the sender",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, _) = ctx.pair().await?;
            let mut home = ctx.connect("a-desktop", &a_desk).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            let raw = format!(
                r#"{{"type":"new_task","id":"spoof","to":{{"role":"desktop"}},"from":"{}","from_type":"desktop","payload":{{}}}}"#,
                b_desk.device_id
            );
            phone.conn.send_text(&raw).await;
            match answer(&mut phone).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail("accepted", other)),
            }
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => ensure(
                    d.from == a_mob.device_id && d.from_type == DeviceType::Mobile,
                    "from = the sending phone, from_type mobile",
                    &d,
                ),
                other => Err(fail("new_task delivery", other)),
            }
        }
    ),
    case!(
        "iso-foreign-ack-no-effect",
        "isolation",
        Must,
        ["DLV-13", "DLV-21"],
        "another user's ack or reject of a seq in flight in this inbox is unknown_seq there and leaves the entry",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let b_desk = ctx.register(DeviceType::Desktop, None).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            phone.send(&task("mine", Target::Role(DeviceType::Desktop))).await;
            let seq = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            {
                let mut home = ctx.connect("a-desktop", &a_desk).await?;
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) if d.seq == seq => {}
                    other => return Err(fail(format!("new_task seq {seq}"), other)),
                }
                let mut b_home = ctx.connect("b-desktop", &b_desk).await?;
                b_home.send(&ClientFrame::Ack(Ack { seq })).await;
                b_home.send(&ClientFrame::Reject(Reject { seq, reason: Some("not yours".into()) })).await;
                for _ in 0..2 {
                    match b_home.next_frame().await? {
                        ServerFrame::Error(e) => ensure(
                            e.code.as_str() == "unknown_seq" && e.ref_seq == Some(seq) && !e.fatal,
                            format!("unknown_seq with ref_seq {seq}"),
                            &e,
                        )?,
                        other => return Err(fail("error unknown_seq", other)),
                    }
                }
            }
            let mut home = ctx.connect("a-desktop-again", &a_desk).await?;
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(d.seq == seq && d.attempt == 2, "the entry redelivered, attempt 2", &d)?;
                    home.ack(d.seq).await;
                }
                other => return Err(fail("the entry redelivered", other)),
            }
            for _ in 0..8 {
                match phone.next_frame().await? {
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Delivered => {}
                    ServerFrame::Receipt(r) => {
                        return ensure(
                            r.state == ReceiptState::Acked,
                            "the first terminal receipt is acked",
                            &r,
                        );
                    }
                    other => return Err(fail("receipt acked", other)),
                }
            }
            Err(fail("receipt acked", "delivered receipts only"))
        }
    ),
];
