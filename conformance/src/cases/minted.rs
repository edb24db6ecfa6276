//! Authentication cases, second part of the `auth` group: signed tokens minted bad by the test
//! hook (typ, kid, crit, claim types, audience, issuer, validity window, lifetime, expiry, the
//! identity they name), reauth and expiry during a session, the hook itself, and secrets kept
//! out of error bodies.

use std::time::{Duration, Instant};

use relaykit_protocol::client::{Heartbeat, Reauth};
use relaykit_protocol::rest::Jwks;
use relaykit_protocol::{ClientFrame, CloseCode, ServerFrame};
use serde_json::{Value, json};

use super::common::{at_least, expect_session_close, random_u64, rest_error};
use super::tokens::{
    Outcome, claims_of, expect_refused, expiring_at, expiring_soon, header_of, hello, hello_with, int_claim,
    list_with, mint, needs_test_tokens, refresh, refreshed, relay_now_s, rest_unauthorized, segments,
    str_claim,
};
use crate::case;
use crate::case::{Case, CaseResult, Session, ensure, fail};
use crate::conn::Event;

/// Keeps `s` open for `quiet`, answering pings; fails on a close.
async fn stays_open(s: &mut Session, quiet: Duration) -> CaseResult {
    let deadline = Instant::now() + quiet;
    for _ in 0..1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match s.conn.next(left).await {
            Event::Timeout => return Ok(()),
            Event::Frame(ServerFrame::Ping(p)) => {
                s.conn.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            Event::Frame(_) => {}
            other => return Err(fail("the connection to stay open", other)),
        }
    }
    Err(fail("the connection to stay open quietly", "1024 frames"))
}

pub(super) const CASES: &[Case] = &[
    case!(
        "auth-typ-not-at-jwt",
        "auth",
        Must,
        ["AUTH-6"],
        "signed tokens whose typ is JWT or absent are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            for (label, typ) in [("jwt", json!("JWT")), ("absent", Value::Null), ("lower", json!("AT+JWT"))] {
                let token = mint(&ctx, &desktop, json!({"typ": typ}), json!({})).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-kid-unknown",
        "auth",
        Must,
        ["AUTH-5", "AUTH-6"],
        "signed tokens whose kid is unknown (with an embedded jwk) or absent are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let jwks = ctx.rest("GET", "/v1/jwks", None, None).await?;
            let jwks: Jwks = serde_json::from_str(&jwks.body).map_err(|e| fail("a JWKS", e.to_string()))?;
            let jwk = jwks.keys.first().ok_or_else(|| fail("a key in /v1/jwks", "none"))?;
            let embedded = json!({"kty": "OKP", "crv": "Ed25519", "x": jwk.x, "kid": "conformance-kid"});
            for (label, header) in [
                ("unknown", json!({"kid": "conformance-kid", "jwk": embedded})),
                ("absent", json!({"kid": null})),
                ("number", json!({"kid": 7})),
            ] {
                let token = mint(&ctx, &desktop, header, json!({})).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-key-pointers-ignored",
        "auth",
        Must,
        ["AUTH-5"],
        "a valid token whose header also carries jku, x5u and jwk members is accepted (they are ignored)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let header = json!({
                "jku": "http://127.0.0.1:9/jwks.json",
                "x5u": "http://127.0.0.1:9/cert.pem",
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            });
            let token = mint(&ctx, &desktop, header, json!({})).await?;
            match hello_with(&ctx, "desktop", &token).await? {
                Outcome::Welcomed => Ok(()),
                Outcome::Closed(code, e) => Err(fail("welcome", (code, e))),
            }
        }
    ),
    case!(
        "auth-crit-header",
        "auth",
        Must,
        ["AUTH-6"],
        "a signed token with a crit header member is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let token = mint(&ctx, &desktop, json!({"crit": ["exp"]}), json!({})).await?;
            expect_refused(&ctx, "desktop", &token, CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-claim-types",
        "auth",
        Must,
        ["AUTH-6"],
        "signed tokens with a string exp, a fractional iat, an array aud or no jti are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let claims = claims_of(&desktop.tokens.access_token)?;
            let (iat, exp) = (int_claim(&claims, "iat")?, int_claim(&claims, "exp")?);
            let aud = str_claim(&claims, "aud")?;
            for (label, over) in [
                ("exp-string", json!({"exp": exp.to_string()})),
                ("iat-fraction", json!({"iat": iat as f64 + 0.5})),
                ("aud-array", json!({"aud": [aud]})),
                ("no-jti", json!({"jti": null})),
                ("sub-number", json!({"sub": 12})),
            ] {
                let token = mint(&ctx, &desktop, json!({}), over).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-wrong-audience",
        "auth",
        Must,
        ["AUTH-6"],
        "a signed token whose aud is not the info audience is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let aud = format!("{}-other", ctx.info.audience);
            let token = mint(&ctx, &desktop, json!({}), json!({"aud": aud})).await?;
            expect_refused(&ctx, "desktop", &token, CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-wrong-issuer",
        "auth",
        Must,
        ["AUTH-6"],
        "a signed token whose iss is not the info issuer is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let iss = format!("{}/other", ctx.info.issuer);
            let token = mint(&ctx, &desktop, json!({}), json!({"iss": iss})).await?;
            expect_refused(&ctx, "desktop", &token, CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-not-yet-valid",
        "auth",
        Must,
        ["AUTH-6"],
        "signed tokens whose nbf or iat is 10 minutes ahead are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            for (label, over) in [
                ("nbf", json!({"iat": now, "nbf": now + 600, "exp": now + 900})),
                ("iat", json!({"iat": now + 600, "nbf": now, "exp": now + 900})),
            ] {
                let token = mint(&ctx, &desktop, json!({}), over).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-lifetime-bounds",
        "auth",
        Must,
        ["AUTH-6"],
        "signed tokens with exp - iat above 3600 or not positive are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            for (label, over) in [
                ("long", json!({"iat": now, "nbf": now, "exp": now + 3601})),
                ("zero", json!({"iat": now, "nbf": now, "exp": now})),
                ("negative", json!({"iat": now, "nbf": now, "exp": now - 1})),
            ] {
                let token = mint(&ctx, &desktop, json!({}), over).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-expired-ws",
        "auth",
        Must,
        ["AUTH-7", "SES-1"],
        "hello with a signed token that expired 1000 s ago is closed with 4006, not 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            let token = expiring_at(&ctx, &desktop, now - 1000).await?;
            expect_refused(&ctx, "desktop", &token, CloseCode::TokenExpired).await
        }
    ),
    case!(
        "auth-expired-rest",
        "auth",
        Must,
        ["AUTH-9", "AUTH-7"],
        "a signed token that expired 1000 s ago is 401 token_expired on REST",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            let token = expiring_at(&ctx, &desktop, now - 1000).await?;
            rest_error(&list_with(&ctx, &token).await?, 401, "token_expired")?;
            let r = ctx.rest("POST", "/v1/pairing-codes", Some(&token), None).await?;
            rest_error(&r, 401, "token_expired").map(drop)
        }
    ),
    case!(
        "auth-identity-mismatch",
        "auth",
        Must,
        ["AUTH-6", "AUTH-9"],
        "signed tokens naming another user, another user's device or an unknown device are refused (4500, 401)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let (stranger, _) = ctx.pair().await?;
            for (label, over) in [
                ("sub", json!({"sub": stranger.user_id})),
                ("did", json!({"did": stranger.device_id})),
                ("both", json!({"sub": stranger.user_id, "did": stranger.device_id})),
                ("unknown", json!({"did": format!("dev-conformance-{:x}", random_u64())})),
            ] {
                let token = mint(&ctx, &desktop, json!({}), over).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
                rest_unauthorized(&ctx, &token).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-dty-mismatch",
        "auth",
        Must,
        ["AUTH-6", "AUTH-9"],
        "a signed token whose dty is not the device's type is refused (4500, 401)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let token = mint(&ctx, &desktop, json!({}), json!({"dty": "mobile"})).await?;
            expect_refused(&ctx, "desktop", &token, CloseCode::Unauthorized).await?;
            rest_unauthorized(&ctx, &token).await
        }
    ),
    case!(
        "auth-fam-mismatch",
        "auth",
        Must,
        ["AUTH-6", "AUTH-9"],
        "signed tokens whose fam is another device's family or unknown are invalid (4500, 401), not revoked",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let other = str_claim(&claims_of(&mobile.tokens.access_token)?, "fam")?;
            let unknown = format!("fam-conformance-{:x}", random_u64());
            for (label, fam) in [("other", other), ("unknown", unknown)] {
                let token = mint(&ctx, &desktop, json!({}), json!({"fam": fam})).await?;
                expect_refused(&ctx, label, &token, CloseCode::Unauthorized).await?;
                rest_unauthorized(&ctx, &token).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-revoked-before-expired",
        "auth",
        Must,
        ["AUTH-3"],
        "an expired token of a revoked device is reported as revoked (4501, REST 401 unauthorized), not expired",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            let token = expiring_at(&ctx, &desktop, now - 1000).await?;
            let path = format!("/v1/devices/{}", desktop.device_id);
            let r = ctx.rest("DELETE", &path, Some(&mobile.tokens.access_token), None).await?;
            ensure(r.status == 204, "204 from DELETE", (r.status, &r.body))?;
            expect_refused(&ctx, "desktop", &token, CloseCode::DeviceRevoked).await?;
            rest_unauthorized(&ctx, &token).await
        }
    ),
    case!(
        "auth-reauth-valid",
        "auth",
        Must,
        ["SES-13"],
        "reauth with a fresh token of the device is answered by reauthed carrying its exp x 1000",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let pair = refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            let exp = int_claim(&claims_of(&pair.access_token)?, "exp")?;
            s.send(&ClientFrame::Reauth(Reauth { token: pair.access_token.clone() })).await;
            match s.next_frame().await? {
                ServerFrame::Reauthed(r) => {
                    ensure(r.token_expires_at_ms == exp * 1000, "token_expires_at_ms = exp x 1000", (r, exp))?
                }
                other => return Err(fail("reauthed", other)),
            }
            s.send(&ClientFrame::Ping(Heartbeat { nonce: 31 })).await;
            ensure(matches!(s.next_frame().await?, ServerFrame::Pong(_)), "the session continues", "other")
        }
    ),
    case!(
        "auth-reauth-other-device",
        "auth",
        Must,
        ["SES-14"],
        "reauth with a valid token of another device of the user is closed with 4500",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            s.send(&ClientFrame::Reauth(Reauth { token: mobile.tokens.access_token.clone() })).await;
            expect_session_close(&mut s, ctx.prompt(), CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-reauth-invalid",
        "auth",
        Must,
        ["SES-14"],
        "reauth with a tampered token is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let [h, c, _] = segments(&desktop.tokens.access_token)?;
            s.send(&ClientFrame::Reauth(Reauth { token: format!("{h}.{c}.") })).await;
            expect_session_close(&mut s, ctx.prompt(), CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-reauth-expired",
        "auth",
        Must,
        ["SES-14", "AUTH-7"],
        "reauth with a signed token that expired 1000 s ago is closed with 4006",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let now = relay_now_s(&ctx, &desktop).await?;
            let token = expiring_at(&ctx, &desktop, now - 1000).await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            s.send(&ClientFrame::Reauth(Reauth { token })).await;
            expect_session_close(&mut s, ctx.prompt(), CloseCode::TokenExpired).await
        }
    ),
    case!(
        "auth-expiry-mid-session",
        "auth",
        Must,
        ["SES-12"],
        "a session whose token runs out (exp + leeway a few seconds ahead) is closed with 4006",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let (token, _) = expiring_soon(&ctx, &desktop, 3).await?;
            let mut s = ctx.connect_with("desktop", hello(&token)).await?;
            let start = Instant::now();
            let wait = at_least(&ctx, Duration::from_secs(6)) + ctx.prompt();
            expect_session_close(&mut s, wait, CloseCode::TokenExpired).await?;
            // SES-12: at most exp + L + 1 s; the token was made to stop at about now + 3 s (up to
            // 2 s more from whole-second clocks).
            let bound = at_least(&ctx, Duration::from_secs(6));
            ensure(start.elapsed() <= bound, format!("the close within {bound:?}"), start.elapsed())
        }
    ),
    case!(
        "auth-reauth-extends-session",
        "auth",
        Must,
        ["SES-13", "SES-12"],
        "reauth with a fresh token before expiry keeps the session open past the old token's end",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let (token, _) = expiring_soon(&ctx, &desktop, 3).await?;
            let mut s = ctx.connect_with("desktop", hello(&token)).await?;
            let fresh = mint(&ctx, &desktop, json!({}), json!({})).await?;
            let exp = int_claim(&claims_of(&fresh)?, "exp")?;
            s.send(&ClientFrame::Reauth(Reauth { token: fresh })).await;
            match s.next_frame().await? {
                ServerFrame::Reauthed(r) => {
                    ensure(r.token_expires_at_ms == exp * 1000, "token_expires_at_ms = exp x 1000", (r, exp))?
                }
                other => return Err(fail("reauthed", other)),
            }
            stays_open(&mut s, at_least(&ctx, Duration::from_secs(6))).await?;
            s.send(&ClientFrame::Ping(Heartbeat { nonce: 32 })).await;
            ensure(
                matches!(s.next_frame().await?, ServerFrame::Pong(_)),
                "pong: the session is alive",
                "other",
            )
        }
    ),
    case!(
        "auth-test-hook",
        "auth",
        Must,
        ["TEST-2", "TEST-3", "TEST-4"],
        "the test hook is 404 unless offered; when offered it needs a bearer token and merges header and claims",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let access = desktop.tokens.access_token.clone();
            let body =
                json!({"claims": {"jti": "conformance-jti-1", "nbf": null}, "header": {"x-conformance": 1}});
            if needs_test_tokens(&ctx).is_err() {
                let r = ctx.rest("POST", "/v1/test/tokens", Some(&access), Some(&body)).await?;
                return rest_error(&r, 404, "not_found").map(drop);
            }
            let r = ctx.rest("POST", "/v1/test/tokens", None, Some(&body)).await?;
            rest_error(&r, 401, "unauthorized")?;
            let r = ctx.rest("POST", "/v1/test/tokens", Some("garbage"), Some(&body)).await?;
            rest_error(&r, 401, "unauthorized")?;
            let token = mint(&ctx, &desktop, body["header"].clone(), body["claims"].clone()).await?;
            let (h, c, base) = (header_of(&token)?, claims_of(&token)?, claims_of(&access)?);
            ensure(
                h.get("x-conformance") == Some(&json!(1)) && h.get("alg") == Some(&json!("EdDSA")),
                "the header override merged over the EdDSA header",
                &h,
            )?;
            ensure(
                c.get("jti") == Some(&json!("conformance-jti-1")) && !c.contains_key("nbf"),
                "jti replaced and nbf removed",
                &c,
            )?;
            for name in ["iss", "aud", "sub", "did", "dty", "fam"] {
                ensure(
                    c.get(name) == base.get(name),
                    format!("{name} as issued to the caller"),
                    (&c, &base),
                )?;
            }
            // An unmodified minted token is an ordinary valid token.
            let plain = mint(&ctx, &desktop, json!({}), json!({})).await?;
            match hello_with(&ctx, "desktop", &plain).await? {
                Outcome::Welcomed => Ok(()),
                Outcome::Closed(code, e) => Err(fail("welcome with a default minted token", (code, e))),
            }
        }
    ),
    case!(
        "auth-errors-leak-no-secrets",
        "auth",
        Must,
        ["ERR-5", "AUTH-10"],
        "error messages and REST error bodies never echo the token, refresh token or pairing code presented",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [h, c, _] = segments(&desktop.tokens.access_token)?;
            let bad = format!("{h}.{c}.AAAA");
            let leaks = |text: &str, secret: &str| text.contains(secret);
            let r = list_with(&ctx, &bad).await?;
            rest_error(&r, 401, "unauthorized")?;
            ensure(!leaks(&r.body, c), "a 401 body without the token", &r.body)?;
            let secret = format!("rt-conformance-{:x}{:x}", random_u64(), random_u64());
            let r = refresh(&ctx, &secret).await?;
            rest_error(&r, 401, "invalid_refresh_token")?;
            ensure(!leaks(&r.body, &secret), "a 401 body without the refresh token", &r.body)?;
            let code = super::registration::random_pairing_code();
            let mut body = super::registration::device_body("mobile");
            body["pairing_code"] = json!(code);
            let r = ctx.rest("POST", "/v1/devices", None, Some(&body)).await?;
            rest_error(&r, 400, "invalid_pairing_code")?;
            ensure(!leaks(&r.body, &code), "a 400 body without the pairing code", &r.body)?;
            match hello_with(&ctx, "desktop", &bad).await? {
                Outcome::Welcomed => Err(fail("close 4500", "welcome")),
                Outcome::Closed(_, Some(e)) => {
                    ensure(!leaks(&e.message, c), "an error message without the token", &e.message)
                }
                Outcome::Closed(..) => Ok(()),
            }
        }
    ),
];
