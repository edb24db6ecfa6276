//! Token helpers shared by the auth, refresh and identity cases: reading a token (segments,
//! header, claims), the pieces for building tokens that need no valid signature (`alg: none`,
//! tampered segments) from a real one, minting tokens a real issuer never signs through the test hook
//! `POST /v1/test/tokens` (PROTOCOL.md appendix A; skipped when the relay does not offer
//! `test_tokens`), presenting a token in `hello` or as a REST bearer, and the refresh endpoint.

use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use relaykit_protocol::client::Hello;
use relaykit_protocol::rest::{Registered, TestTokenResponse, TokenPair};
use relaykit_protocol::server::ErrorFrame;
use relaykit_protocol::{ClientFrame, CloseCode, PROTOCOL_V1, ServerFrame};
use serde_json::{Map, Value, json};

use super::common::{close_name, rest_error};
use crate::case::{CaseResult, Ctx, Miss, check_rest_schema, ensure, fail};
use crate::conn::Event;
use crate::http::Response;

/// base64url without padding.
pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The three segments of a compact JWS.
pub(super) fn segments(token: &str) -> Result<[&str; 3], Miss> {
    let parts: Vec<&str> = token.split('.').collect();
    match parts[..] {
        [h, c, s] => Ok([h, c, s]),
        _ => Err(fail("a compact JWS of three segments", token)),
    }
}

fn segment_object(segment: &str) -> Result<Map<String, Value>, Miss> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .map_err(|e| fail("a base64url JWS segment", e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| fail("a JSON object in the JWS segment", e.to_string()))
}

/// The decoded JOSE header of a token.
pub(super) fn header_of(token: &str) -> Result<Map<String, Value>, Miss> {
    segment_object(segments(token)?[0])
}

/// The decoded claims of a token.
pub(super) fn claims_of(token: &str) -> Result<Map<String, Value>, Miss> {
    segment_object(segments(token)?[1])
}

/// An integer claim.
pub(super) fn int_claim(claims: &Map<String, Value>, name: &str) -> Result<u64, Miss> {
    claims.get(name).and_then(Value::as_u64).ok_or_else(|| fail(format!("integer claim {name}"), claims))
}

/// A string claim.
pub(super) fn str_claim(claims: &Map<String, Value>, name: &str) -> Result<String, Miss> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| fail(format!("string claim {name}"), claims))
}

/// A token made of the given header and claims JSON texts and a signature segment.
pub(super) fn assemble(header: &str, claims: &str, signature: &str) -> String {
    format!("{}.{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()), signature)
}

/// Skips unless the relay offers the test hook.
pub(super) fn needs_test_tokens(ctx: &Ctx) -> CaseResult {
    if ctx.info.capabilities.iter().any(|c| c == "test_tokens") {
        Ok(())
    } else {
        Err(Miss::Skip("test_tokens capability not offered".into()))
    }
}

/// `POST /v1/test/tokens` as `device`: its default token with `header` and `claims` merged over.
pub(super) async fn mint(
    ctx: &Ctx,
    device: &Registered,
    header: Value,
    claims: Value,
) -> Result<String, Miss> {
    needs_test_tokens(ctx)?;
    let body = json!({"header": header, "claims": claims});
    let r = ctx.rest("POST", "/v1/test/tokens", Some(&device.tokens.access_token), Some(&body)).await?;
    ensure(r.status == 200, "200 from POST /v1/test/tokens", (r.status, &r.body))?;
    check_rest_schema("rest/test_token_response", &r.body)?;
    let t: TestTokenResponse =
        serde_json::from_str(&r.body).map_err(|e| fail("a test token body", e.to_string()))?;
    Ok(t.token)
}

/// The relay's clock (Unix seconds): the `iat` of a token the hook mints now.
pub(super) async fn relay_now_s(ctx: &Ctx, device: &Registered) -> Result<u64, Miss> {
    let token = mint(ctx, device, json!({}), json!({})).await?;
    int_claim(&claims_of(&token)?, "iat")
}

/// A `hello` carrying `token`.
pub(super) fn hello(token: &str) -> Hello {
    Hello { protocol: PROTOCOL_V1.into(), token: token.into(), resume: None, client: None }
}

/// How a `hello` ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// `welcome` arrived (the connection is then dropped).
    Welcomed,
    /// The relay closed: code and the fatal `error` frame before the close, if any.
    Closed(u16, Option<ErrorFrame>),
}

/// Opens a connection and sends `hello` with `token`.
pub(super) async fn hello_with(ctx: &Ctx, label: &str, token: &str) -> Result<Outcome, Miss> {
    let mut conn = ctx.open(label, Some(PROTOCOL_V1)).await?;
    conn.send(&ClientFrame::Hello(hello(token))).await;
    let mut error = None;
    for _ in 0..8 {
        match conn.next(ctx.prompt()).await {
            Event::Frame(ServerFrame::Welcome(_)) => return Ok(Outcome::Welcomed),
            Event::Frame(ServerFrame::Error(e)) if e.fatal && error.is_none() => error = Some(e),
            Event::Close(code, _) => return Ok(Outcome::Closed(code, error)),
            other => return Err(fail("welcome, or a fatal error and a close", other)),
        }
    }
    Err(fail("welcome or a close", "other frames"))
}

/// `hello` with `token` is refused with `code`.
pub(super) async fn expect_refused(ctx: &Ctx, label: &str, token: &str, code: CloseCode) -> CaseResult {
    match hello_with(ctx, label, token).await? {
        Outcome::Welcomed => Err(fail(close_name(code), "welcome")),
        Outcome::Closed(c, e) => ensure(c == code.code(), close_name(code), (c, e)),
    }
}

/// `GET /v1/devices` with `token` as bearer.
pub(super) async fn list_with(ctx: &Ctx, token: &str) -> Result<Response, Miss> {
    ctx.rest("GET", "/v1/devices", Some(token), None).await
}

/// `POST /v1/tokens/refresh`.
pub(super) async fn refresh(ctx: &Ctx, refresh_token: &str) -> Result<Response, Miss> {
    ctx.rest("POST", "/v1/tokens/refresh", None, Some(&json!({"refresh_token": refresh_token}))).await
}

/// A successful refresh: 200 and a schema-valid TokenPair.
pub(super) async fn refreshed(ctx: &Ctx, refresh_token: &str) -> Result<TokenPair, Miss> {
    let r = refresh(ctx, refresh_token).await?;
    ensure(r.status == 200, "200 from POST /v1/tokens/refresh", (r.status, &r.body))?;
    check_rest_schema("rest/token_pair", &r.body)?;
    serde_json::from_str(&r.body).map_err(|e| fail("a TokenPair", e.to_string()))
}

/// A token that expires at `exp_s` (iat = nbf = exp - 600).
pub(super) async fn expiring_at(ctx: &Ctx, device: &Registered, exp_s: u64) -> Result<String, Miss> {
    let iat = exp_s.saturating_sub(600);
    mint(ctx, device, json!({}), json!({"iat": iat, "nbf": iat, "exp": exp_s})).await
}

/// The largest `k` (seconds, -1..=61) such that a token with `exp = now - k` still gets
/// `welcome`: about L - 1 for a relay with leeway L (AUTH-2 bounds L by 60). Binary search,
/// at most seven `hello`s.
async fn accepted_past_expiry(ctx: &Ctx, device: &Registered) -> Result<i64, Miss> {
    let now0 = relay_now_s(ctx, device).await? as i64;
    let start = Instant::now();
    let (mut lo, mut hi) = (-1i64, 62i64); // exp = now + 1 is accepted; now - 62 is expired
    for _ in 0..8 {
        if hi - lo <= 1 {
            break;
        }
        let mid = (lo + hi) / 2;
        let now = now0 + start.elapsed().as_secs() as i64;
        let token = expiring_at(ctx, device, (now - mid).max(601) as u64).await?;
        match hello_with(ctx, "probe", &token).await? {
            Outcome::Welcomed => lo = mid,
            Outcome::Closed(c, _) if c == CloseCode::TokenExpired.code() => hi = mid,
            Outcome::Closed(c, e) => return Err(fail("welcome or close 4006 for a probe token", (c, e))),
        }
    }
    Ok(lo)
}

/// A token of `device` that the relay accepts now and that stops being accepted (exp + L)
/// about `secs` seconds from now; with the `exp` it carries.
pub(super) async fn expiring_soon(ctx: &Ctx, device: &Registered, secs: i64) -> Result<(String, u64), Miss> {
    let k = accepted_past_expiry(ctx, device).await?;
    let now = relay_now_s(ctx, device).await? as i64;
    let exp = (now - k - 1 + secs).max(601) as u64;
    Ok((expiring_at(ctx, device, exp).await?, exp))
}

/// GET /v1/devices with `token`: 401 `unauthorized`.
pub(super) async fn rest_unauthorized(ctx: &Ctx, token: &str) -> CaseResult {
    rest_error(&list_with(ctx, token).await?, 401, "unauthorized").map(drop)
}
