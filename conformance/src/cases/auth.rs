//! Authentication cases, first part of the `auth` group: bearer tokens on REST, and access tokens
//! in `hello` that are malformed, forged (`alg: none`, HS256), tampered, of the wrong kind, or
//! carried anywhere but in `hello`. Token helpers live in `tokens`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::CloseCode;
use relaykit_protocol::schema::SchemaSet;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::common::rest_error;
use super::tokens::{
    Outcome, assemble, b64, claims_of, expect_refused, header_of, hello_with, int_claim, mint,
    rest_unauthorized, segments, str_claim,
};
use crate::case;
use crate::case::{Case, Ctx, Miss, check_rest_schema, ensure, fail};
use crate::conn::Dir;
use crate::http::Response;

/// A REST request with verbatim headers (the exchange is recorded).
async fn rest_raw(ctx: &Ctx, method: &str, path: &str, headers: &[(&str, &str)]) -> Result<Response, Miss> {
    ctx.evidence.record("rest", Dir::Sent, format!("{method} {path} headers={headers:?}"));
    let r = crate::http::request(ctx.addr, method, path, headers, None, ctx.prompt())
        .await
        .map_err(|e| fail(format!("an answer to {method} {path}"), e))?;
    ctx.evidence.record("rest", Dir::Received, format!("{} {}", r.status, r.body));
    Ok(r)
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
];
