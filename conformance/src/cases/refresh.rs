//! Refresh cases (the `refresh` group): refresh-token rotation, reuse detection and the family
//! revocation it causes, unknown tokens, bad bodies, opaque tokens.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use relaykit_protocol::CloseCode;
use serde_json::{Map, Value, json};

use super::common::{at_least, expect_session_close, random_u64, rest_error};
use super::tokens::{claims_of, expect_refused, list_with, refresh, refreshed, rest_unauthorized};
use crate::case;
use crate::case::{Case, ensure};

pub(super) const CASES: &[Case] = &[
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
