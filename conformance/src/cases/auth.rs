//! Authentication cases: bearer tokens on REST, access tokens in `hello` (malformed, forged,
//! tampered, of the wrong kind, or minted bad by the optional test hook), reauth and expiry
//! during a session; refresh-token rotation and reuse detection.
//!
//! Tokens a real issuer never signs (expired, wrong audience, wrong claim types, ...) come from
//! the test hook `POST /v1/test/tokens` (PROTOCOL.md appendix A); cases that need it are skipped
//! when the relay does not offer `test_tokens`. Tokens that need no valid signature (`alg:
//! none`, tampered segments) are built here from a real token.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::client::{Heartbeat, Hello, Reauth};
use relaykit_protocol::rest::{ErrorResponse, Jwks, Registered, RestError, TestTokenResponse, TokenPair};
use relaykit_protocol::schema::SchemaSet;
use relaykit_protocol::server::ErrorFrame;
use relaykit_protocol::{ClientFrame, CloseCode, PROTOCOL_V1, ServerFrame};
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, Session, check_rest_schema, ensure, fail};
use crate::conn::{Dir, Event};
use crate::http::Response;

// ---------------------------------------------------------------------------------------------
// Helpers shared with the identity cases.

/// 64 random bits (std's randomly keyed hasher; the suite has no RNG dependency).
pub(super) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

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
fn assemble(header: &str, claims: &str, signature: &str) -> String {
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

fn close_name(code: CloseCode) -> String {
    format!("close {} {}", code.code(), code.name())
}

/// `hello` with `token` is refused with `code`.
pub(super) async fn expect_refused(ctx: &Ctx, label: &str, token: &str, code: CloseCode) -> CaseResult {
    match hello_with(ctx, label, token).await? {
        Outcome::Welcomed => Err(fail(close_name(code), "welcome")),
        Outcome::Closed(c, e) => ensure(c == code.code(), close_name(code), (c, e)),
    }
}

/// Reads until the session closes (pings answered) and checks the close code.
pub(super) async fn expect_session_close(s: &mut Session, wait: Duration, code: CloseCode) -> CaseResult {
    let (c, reason, _) = s.expect_close(wait).await?;
    ensure(c == code.code(), close_name(code), (c, reason))
}

/// `d` scaled, but never below `d`: for bounds the protocol states in real time.
pub(super) fn at_least(ctx: &Ctx, d: Duration) -> Duration {
    d.max(ctx.scaled(d))
}

/// Keeps `s` open for `quiet`, answering pings; fails on a close.
pub(super) async fn stays_open(s: &mut Session, quiet: Duration) -> CaseResult {
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

/// A REST error answer: status, body schema and code; returns the error object.
pub(super) fn rest_error(r: &Response, status: u16, code: &str) -> Result<RestError, Miss> {
    let expected = format!("{status} {code}");
    ensure(r.status == status, expected.clone(), (r.status, &r.body))?;
    check_rest_schema("rest/error_response", &r.body)?;
    let e: ErrorResponse =
        serde_json::from_str(&r.body).map_err(|e| fail("a REST error body", e.to_string()))?;
    ensure(e.error.code.as_str() == code, expected, &r.body)?;
    Ok(e.error)
}

/// A REST request with verbatim headers (the exchange is recorded).
pub(super) async fn rest_raw(
    ctx: &Ctx,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, Miss> {
    ctx.evidence.record("rest", Dir::Sent, format!("{method} {path} headers={headers:?}"));
    let r = crate::http::request(ctx.addr, method, path, headers, None, ctx.prompt())
        .await
        .map_err(|e| fail(format!("an answer to {method} {path}"), e))?;
    ctx.evidence.record("rest", Dir::Received, format!("{} {}", r.status, r.body));
    Ok(r)
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
async fn expiring_at(ctx: &Ctx, device: &Registered, exp_s: u64) -> Result<String, Miss> {
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
async fn expiring_soon(ctx: &Ctx, device: &Registered, secs: i64) -> Result<(String, u64), Miss> {
    let k = accepted_past_expiry(ctx, device).await?;
    let now = relay_now_s(ctx, device).await? as i64;
    let exp = (now - k - 1 + secs).max(601) as u64;
    Ok((expiring_at(ctx, device, exp).await?, exp))
}

// ---------------------------------------------------------------------------------------------

/// GET /v1/devices with `token`: 401 `unauthorized`.
async fn rest_unauthorized(ctx: &Ctx, token: &str) -> CaseResult {
    rest_error(&list_with(ctx, token).await?, 401, "unauthorized").map(drop)
}

pub(super) const CASES: &[Case] = &[
    case!(
        "auth-rest-missing-bearer",
        "auth",
        Must,
        ["AUTH-9"],
        "GET /v1/devices without an Authorization Bearer header (none, Basic, token in the query) is 401 unauthorized",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let token = desktop.tokens.access_token.clone();
            let basic = format!("Basic {token}");
            let query = format!("/v1/devices?access_token={token}");
            for (path, header) in [
                ("/v1/devices", None),
                ("/v1/devices", Some(basic.as_str())),
                ("/v1/devices", Some("Bearer")),
                (query.as_str(), None),
            ] {
                let headers: Vec<(&str, &str)> = header.map(|h| ("Authorization", h)).into_iter().collect();
                rest_error(&rest_raw(&ctx, "GET", path, &headers).await?, 401, "unauthorized")?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-rest-bearer-case-insensitive",
        "auth",
        Must,
        ["AUTH-9", "DIR-1"],
        "the Bearer scheme name is matched case-insensitively: bearer and BEARER work",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            for scheme in ["bearer", "BEARER"] {
                let header = format!("{scheme} {}", desktop.tokens.access_token);
                let r = rest_raw(&ctx, "GET", "/v1/devices", &[("Authorization", header.as_str())]).await?;
                ensure(r.status == 200, format!("200 with scheme {scheme}"), (r.status, &r.body))?;
                check_rest_schema("rest/device_list", &r.body)?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-rest-invalid-token",
        "auth",
        Must,
        ["AUTH-9"],
        "a malformed bearer token, a tampered one and a refresh token are 401 unauthorized",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [h, c, _] = segments(&desktop.tokens.access_token)?;
            let unsigned = format!("{h}.{c}.");
            for token in ["garbage", "a.b.c", unsigned.as_str(), desktop.tokens.refresh_token.as_str()] {
                rest_unauthorized(&ctx, token).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-ws-malformed-token",
        "auth",
        Must,
        ["SES-1", "AUTH-6"],
        "hello with a token that is not three base64url JSON segments is closed with 4500 (an empty one 4504)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [h, c, s] = segments(&desktop.tokens.access_token)?;
            let two = format!("{h}.{c}");
            let four = format!("{h}.{c}.{s}.{s}");
            let not_json = format!("{}.{c}.{s}", b64(b"not json"));
            let array = format!("{}.{c}.{s}", b64(b"[1]"));
            for (i, token) in
                ["garbage", two.as_str(), four.as_str(), not_json.as_str(), array.as_str()].iter().enumerate()
            {
                expect_refused(&ctx, &format!("probe{i}"), token, CloseCode::Unauthorized).await?;
            }
            // An empty token violates the hello field table (1 to 8192 characters): step 4.
            expect_refused(&ctx, "empty", "", CloseCode::ProtocolViolation).await
        }
    ),
    case!(
        "auth-alg-none",
        "auth",
        Must,
        ["AUTH-4", "SES-1"],
        "an unsigned token (alg none, real claims, empty signature) is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [_, c, _] = segments(&desktop.tokens.access_token)?;
            let kid = str_claim(&header_of(&desktop.tokens.access_token)?, "kid")?;
            for (i, header) in [
                json!({"alg": "none", "typ": "at+jwt"}),
                json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
                json!({"alg": "NONE", "typ": "at+jwt", "kid": kid}),
            ]
            .iter()
            .enumerate()
            {
                let token = format!("{}.{c}.", b64(header.to_string().as_bytes()));
                expect_refused(&ctx, &format!("none{i}"), &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-alg-hs256-forged",
        "auth",
        Must,
        ["AUTH-4"],
        "header alg HS256 over the real claims and signature is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [_, c, s] = segments(&desktop.tokens.access_token)?;
            let kid = str_claim(&header_of(&desktop.tokens.access_token)?, "kid")?;
            let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}).to_string();
            let token = format!("{}.{c}.{s}", b64(header.as_bytes()));
            expect_refused(&ctx, "hs256", &token, CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-alg-not-eddsa",
        "auth",
        Must,
        ["AUTH-4", "TEST-4"],
        "correctly signed tokens whose header alg is HS256, none, ES256 or eddsa are closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            for alg in ["HS256", "none", "ES256", "eddsa", "EdDSA "] {
                let token = mint(&ctx, &desktop, json!({"alg": alg}), json!({})).await?;
                ensure(
                    header_of(&token)?.get("alg") == Some(&json!(alg)),
                    format!("the hook to set alg {alg}"),
                    header_of(&token)?,
                )?;
                expect_refused(&ctx, alg, &token, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-tampered-claims",
        "auth",
        Must,
        ["AUTH-6", "SES-1"],
        "a token whose claims were changed after signing (exp, did, one character) is closed with 4500",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let token = &desktop.tokens.access_token;
            let [h, c, s] = segments(token)?;
            let header =
                String::from_utf8(URL_SAFE_NO_PAD.decode(h).map_err(|e| fail("base64url", e.to_string()))?)
                    .map_err(|e| fail("UTF-8 header", e.to_string()))?;
            let mut claims = claims_of(token)?;
            let exp = int_claim(&claims, "exp")?;
            claims.insert("exp".into(), json!(exp + 60));
            let longer = assemble(&header, &Value::Object(claims.clone()).to_string(), s);
            claims.insert("exp".into(), json!(exp));
            claims.insert("did".into(), json!(mobile.device_id));
            claims.insert("dty".into(), json!("mobile"));
            let other = assemble(&header, &Value::Object(claims).to_string(), s);
            // One character of the claims segment changed (still base64url).
            let mut chars: Vec<char> = c.chars().collect();
            let i = chars.len() / 2;
            chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
            let flipped = format!("{h}.{}.{s}", chars.into_iter().collect::<String>());
            for (label, t) in [("exp", longer), ("did", other), ("flip", flipped)] {
                expect_refused(&ctx, label, &t, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-tampered-signature",
        "auth",
        Must,
        ["AUTH-6", "SES-1"],
        "a token with a changed, truncated or empty signature is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [h, c, s] = segments(&desktop.tokens.access_token)?;
            let mut sig: Vec<char> = s.chars().collect();
            sig[0] = if sig[0] == 'A' { 'B' } else { 'A' };
            let changed = format!("{h}.{c}.{}", sig.iter().collect::<String>());
            let truncated = format!("{h}.{c}.{}", &s[..s.len() / 2]);
            let empty = format!("{h}.{c}.");
            for (label, t) in [("changed", changed), ("truncated", truncated), ("empty", empty)] {
                expect_refused(&ctx, label, &t, CloseCode::Unauthorized).await?;
            }
            Ok(())
        }
    ),
    case!(
        "auth-refresh-token-as-access",
        "auth",
        Must,
        ["AUTH-6", "SES-1"],
        "hello carrying the refresh token instead of the access token is closed with 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            expect_refused(&ctx, "desktop", &desktop.tokens.refresh_token, CloseCode::Unauthorized).await
        }
    ),
    case!(
        "auth-fatal-error-frame",
        "auth",
        Should,
        ["CLS-2"],
        "a refused hello gets error unauthorized with fatal true before the 4500 close",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let [h, c, _] = segments(&desktop.tokens.access_token)?;
            match hello_with(&ctx, "desktop", &format!("{h}.{c}.")).await? {
                Outcome::Welcomed => Err(fail("close 4500", "welcome")),
                Outcome::Closed(code, error) => ensure(
                    code == 4500
                        && error.as_ref().is_some_and(|e| e.code.as_str() == "unauthorized" && e.fatal),
                    "error unauthorized (fatal) then close 4500",
                    (code, error),
                ),
            }
        }
    ),
    case!(
        "auth-ws-token-only-in-hello",
        "auth",
        Must,
        ["AUTH-8"],
        "a valid token in the upgrade URL, Authorization header and cookie does not authenticate: a bad hello.token is closed 4500",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let token = desktop.tokens.access_token.clone();
            let stream = tokio::net::TcpStream::connect(ctx.addr)
                .await
                .map_err(|e| fail("a TCP connection", e.to_string()))?;
            let url = format!("ws://{}/v1/ws?access_token={token}&token={token}", ctx.addr);
            let mut request = url.into_client_request().map_err(|e| fail("a request", e.to_string()))?;
            let value =
                |v: String| HeaderValue::from_str(&v).map_err(|e| fail("a header value", e.to_string()));
            let headers = request.headers_mut();
            headers.insert("Sec-WebSocket-Protocol", HeaderValue::from_static("relay.v1"));
            headers.insert("Authorization", value(format!("Bearer {token}"))?);
            headers.insert("Cookie", value(format!("access_token={token}; token={token}"))?);
            ctx.evidence.record(
                "raw",
                Dir::Sent,
                "upgrade with the token in query, Authorization and Cookie",
            );
            let (mut ws, _) =
                tokio::time::timeout(ctx.prompt(), tokio_tungstenite::client_async(request, stream))
                    .await
                    .map_err(|_| fail("a WebSocket upgrade", "timeout"))?
                    .map_err(|e| fail("a WebSocket upgrade", e.to_string()))?;
            let hello = r#"{"type":"hello","protocol":"relay.v1","token":"not-a-token"}"#;
            ctx.evidence.record("raw", Dir::Sent, hello);
            ws.send(Message::text(hello)).await.map_err(|e| fail("to send hello", e.to_string()))?;
            for _ in 0..8 {
                let message = tokio::time::timeout(ctx.prompt(), ws.next())
                    .await
                    .map_err(|_| fail("close 4500", "timeout"))?;
                match message {
                    Some(Ok(Message::Text(text))) => {
                        ctx.evidence.record("raw", Dir::Received, text.as_str());
                        if let Err(e) = SchemaSet::global().check_server_frame(text.as_str()) {
                            ctx.evidence.violation(format!("raw: {e}: {}", text.as_str()));
                        }
                        if text.as_str().contains(r#""type":"welcome""#) {
                            return Err(fail("close 4500", "welcome"));
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.map_or(1005, |f| u16::from(f.code));
                        ctx.evidence.record("raw", Dir::Received, format!("close {code}"));
                        return ensure(code == 4500, "close 4500 unauthorized", code);
                    }
                    Some(Ok(_)) => {}
                    other => return Err(fail("close 4500", format!("{other:?}"))),
                }
            }
            Err(fail("close 4500", "other messages"))
        }
    ),
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
            let code = super::identity::random_pairing_code();
            let mut body = super::identity::device_body("mobile");
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
    // --- refresh -------------------------------------------------------------------------------
    case!(
        "refresh-rotation",
        "refresh",
        Must,
        ["TOK-2"],
        "a refresh returns a new TokenPair for the same device and family; the new tokens work",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let pair = refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            ensure(
                pair.refresh_token != desktop.tokens.refresh_token && pair.token_type == "Bearer",
                "a new refresh token, token_type Bearer",
                &pair,
            )?;
            let (old, new) = (claims_of(&desktop.tokens.access_token)?, claims_of(&pair.access_token)?);
            for name in ["sub", "did", "dty", "fam"] {
                ensure(old.get(name) == new.get(name), format!("the same {name}"), (&old, &new))?;
            }
            let r = list_with(&ctx, &pair.access_token).await?;
            ensure(r.status == 200, "the new access token accepted", (r.status, &r.body))?;
            let next = refreshed(&ctx, &pair.refresh_token).await?;
            ensure(next.refresh_token != pair.refresh_token, "the new refresh token rotates again", &next)
        }
    ),
    case!(
        "refresh-reuse-revokes-family",
        "refresh",
        Must,
        ["TOK-3", "TOK-4", "TOK-6", "TOK-7"],
        "a spent refresh token is 401 refresh_token_reused, the family's sockets close 4502, its newer refresh token dies",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let pair = refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let r = refresh(&ctx, &desktop.tokens.refresh_token).await?;
            rest_error(&r, 401, "refresh_token_reused")?;
            let start = Instant::now();
            expect_session_close(&mut s, ctx.prompt(), CloseCode::SessionRevoked).await?;
            let bound = at_least(&ctx, Duration::from_millis(2000));
            ensure(start.elapsed() <= bound, format!("the close within {bound:?}"), start.elapsed())?;
            let r = refresh(&ctx, &pair.refresh_token).await?;
            rest_error(&r, 401, "invalid_refresh_token").map(drop)
        }
    ),
    case!(
        "refresh-reuse-rejects-access",
        "refresh",
        Must,
        ["TOK-5"],
        "after reuse detection the family's access tokens are refused: REST 401 unauthorized, hello 4502",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let pair = refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            let r = refresh(&ctx, &desktop.tokens.refresh_token).await?;
            rest_error(&r, 401, "refresh_token_reused")?;
            for (label, token) in [("old", &desktop.tokens.access_token), ("new", &pair.access_token)] {
                rest_unauthorized(&ctx, token).await?;
                expect_refused(&ctx, label, token, CloseCode::SessionRevoked).await?;
            }
            Ok(())
        }
    ),
    case!(
        "refresh-reuse-reported-again",
        "refresh",
        Must,
        ["TOK-3"],
        "a spent refresh token stays refresh_token_reused after its family was revoked",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            refreshed(&ctx, &desktop.tokens.refresh_token).await?;
            for _ in 0..2 {
                let r = refresh(&ctx, &desktop.tokens.refresh_token).await?;
                rest_error(&r, 401, "refresh_token_reused")?;
            }
            Ok(())
        }
    ),
    case!(
        "refresh-unknown-token",
        "refresh",
        Must,
        ["TOK-7"],
        "an unknown refresh token, or an access token presented as one, is 401 invalid_refresh_token",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let unknown = format!("rt-conformance-{:x}{:x}", random_u64(), random_u64());
            for token in [unknown.as_str(), desktop.tokens.access_token.as_str(), "x"] {
                rest_error(&refresh(&ctx, token).await?, 401, "invalid_refresh_token")?;
            }
            // The real token is untouched by those attempts.
            refreshed(&ctx, &desktop.tokens.refresh_token).await.map(drop)
        }
    ),
    case!(
        "refresh-bad-body",
        "refresh",
        Must,
        ["ERR-8"],
        "a refresh body without a non-empty string refresh_token is 400 invalid_request",
        |ctx| {
            for (body, field) in [
                (json!({}), Some("refresh_token")),
                (json!({"refresh_token": ""}), Some("refresh_token")),
                (json!({"refresh_token": 5}), Some("refresh_token")),
                (json!(["rt"]), None),
            ] {
                let r = ctx.rest("POST", "/v1/tokens/refresh", None, Some(&body)).await?;
                let e = rest_error(&r, 400, "invalid_request")?;
                if let Some(field) = field {
                    ensure(e.field.as_deref() == Some(field), format!("field {field}"), &e)?;
                }
            }
            Ok(())
        }
    ),
    case!(
        "refresh-token-opaque",
        "refresh",
        Must,
        ["TOK-1"],
        "refresh tokens are not JWTs, carry no readable ids and are long enough for 128 random bits",
        |ctx| {
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..3 {
                let (desktop, mobile) = ctx.pair().await?;
                for device in [&desktop, &mobile] {
                    let rt = device.tokens.refresh_token.as_str();
                    ensure(rt.chars().count() >= 22, "at least 22 characters (128 bits)", rt)?;
                    let parts: Vec<&str> = rt.split('.').collect();
                    let decodable: Vec<Vec<u8>> = parts
                        .iter()
                        .filter_map(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
                        .collect();
                    let readable = |bytes: &[u8]| {
                        let text = String::from_utf8_lossy(bytes);
                        text.contains(&device.device_id)
                            || text.contains(&device.user_id)
                            || serde_json::from_slice::<Map<String, Value>>(bytes).is_ok()
                    };
                    ensure(
                        !rt.contains(&device.device_id)
                            && !rt.contains(&device.user_id)
                            && !decodable.iter().any(|b| readable(b)),
                        "an opaque refresh token (no JWT, no ids)",
                        rt,
                    )?;
                    ensure(seen.insert(rt.to_string()), "distinct refresh tokens", rt)?;
                }
            }
            Ok(())
        }
    ),
];
