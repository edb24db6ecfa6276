//! Identity cases, first part: registration (new users, issued tokens, ids, body validation,
//! closed registration) and pairing codes (format, joining a user, single use, refusals)
//! (PROTOCOL.md section 6). Also the registration helpers the other identity and auth cases use.

use std::collections::BTreeSet;
use std::time::Instant;

use relaykit_protocol::DeviceType;
use relaykit_protocol::rest::{PairingCode, Registered};
use serde_json::{Value, json};

use super::common::{random_u64, rest_error};
use super::directory::{join, lists_exactly, revoked};
use super::tokens::{b64, claims_of, header_of, int_claim, str_claim};
use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, check_rest_schema, ensure, fail};
use crate::http::Response;

/// 32 bytes in base64url (43 characters).
pub(super) const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
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
pub(super) async fn register_body(ctx: &Ctx, body: &Value) -> Result<Registered, Miss> {
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
            let pair = super::tokens::refreshed(&ctx, &desktop.tokens.refresh_token).await?;
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
];
