//! Bad input cases, first part of the `badinput` group: malformed JSON, unknown and relay-only
//! types, field violations, strict integers, null members, oversize frames and bodies, binary
//! frames, deep nesting and the rate limit. The group goes on in `badmembers`.

use std::time::Duration;

use relaykit_protocol::client::Heartbeat;
use relaykit_protocol::{ClientFrame, ServerFrame, encode};

use super::common::{barrier, delivery, invalid_text, ms, quiet, refused_text, request_text, short};
use crate::case;
use crate::case::{Case, CaseResult, Miss, ensure, fail};
use crate::conn::{Conn, Event};

/// A ping padded with an unknown member to exactly `len` bytes.
fn padded_ping(len: usize) -> String {
    let prefix = r#"{"type":"ping","nonce":1,"pad":""#;
    let suffix = r#""}"#;
    let pad = len.saturating_sub(prefix.len() + suffix.len());
    format!("{prefix}{}{suffix}", "x".repeat(pad))
}

/// Reads until the close; an `error` frame (or anything but presence and pings) fails.
async fn close_without_error(conn: &mut Conn, wait: Duration) -> Result<(u16, String), Miss> {
    for _ in 0..64 {
        match conn.next(wait).await {
            Event::Close(code, reason) => return Ok((code, reason)),
            Event::Frame(ServerFrame::Ping(_) | ServerFrame::DeviceStatus(_)) => continue,
            other => return Err(fail("a close frame with no error frame before it", other)),
        }
    }
    Err(fail("a close frame", "64 frames"))
}

pub(super) const CASES: &[Case] = &[
    case!(
        "bad-not-json",
        "badinput",
        Must,
        ["ERR-6", "ERR-2", "ERR-3"],
        "text that is not JSON gets the non-fatal malformed_json and the connection keeps working",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            for text in
                ["this is not json", r#"{"type":"ping","nonce":1"#, r#"{"type":"ping","nonce":1} x"#, ""]
            {
                refused_text(&mut s, &ctx, text, "malformed_json").await?;
            }
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-not-object",
        "badinput",
        Must,
        ["ERR-6", "ERR-3"],
        "JSON that is not an object (array, string, number, null) gets malformed_json",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            for text in [r#"[{"type":"ping","nonce":1}]"#, r#""ping""#, "42", "null"] {
                refused_text(&mut s, &ctx, text, "malformed_json").await?;
            }
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-unknown-type",
        "badinput",
        Must,
        ["ERR-6", "ERR-1"],
        "a missing, non-string or unknown type gets unknown_type (with ref_id for a valid id)",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            for text in [r#"{"nonce":1}"#, r#"{"type":7,"nonce":1}"#, r#"{"type":"PING","nonce":1}"#] {
                refused_text(&mut s, &ctx, text, "unknown_type").await?;
            }
            let e = refused_text(&mut s, &ctx, r#"{"type":"teleport","id":"m-1"}"#, "unknown_type").await?;
            ensure(e.ref_id.as_deref() == Some("m-1"), "ref_id m-1", &e)?;
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-relay-only-type",
        "badinput",
        Must,
        ["SES-5"],
        "every relay-only type sent by a client gets the non-fatal not_allowed",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            for t in [
                "welcome",
                "reauthed",
                "accepted",
                "receipt",
                "device_status",
                "gap",
                "error",
                "device_register",
            ] {
                refused_text(&mut s, &ctx, &format!(r#"{{"type":"{t}"}}"#), "not_allowed").await?;
            }
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-field-types",
        "badinput",
        Must,
        ["ERR-9", "DLV-1", "ERR-1"],
        "a member that is missing, of the wrong JSON type or out of range gets invalid_field naming it",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut s = ctx.connect("mobile", &mobile).await?;
            let long = "r".repeat(1025);
            let cases: Vec<(String, &str, Option<&str>)> = vec![
                (
                    r#"{"type":"new_task","id":"w1","to":{"role":"desktop"},"priority":"high","payload":1}"#
                        .into(),
                    "priority",
                    Some("w1"),
                ),
                (
                    r#"{"type":"new_task","id":"w2","to":{"role":"desktop"},"priority":10,"payload":1}"#
                        .into(),
                    "priority",
                    Some("w2"),
                ),
                (
                    r#"{"type":"new_task","id":"w3","to":{"role":"desktop"},"ttl_ms":"1000","payload":1}"#
                        .into(),
                    "ttl_ms",
                    Some("w3"),
                ),
                (r#"{"type":"ping","nonce":"x"}"#.into(), "nonce", None),
                (r#"{"type":"ack","seq":"1"}"#.into(), "seq", None),
                (r#"{"type":"nack"}"#.into(), "seq", None),
                (r#"{"type":"reject","seq":1,"reason":5}"#.into(), "reason", None),
                (format!(r#"{{"type":"reject","seq":1,"reason":"{long}"}}"#), "reason", None),
                (r#"{"type":"reauth"}"#.into(), "token", None),
            ];
            for (text, field, ref_id) in &cases {
                invalid_text(&mut s, &ctx, text, &[field], *ref_id).await?;
            }
            // An ack-family frame with an integer seq is named by ref_seq (ERR-1).
            let e = refused_text(&mut s, &ctx, r#"{"type":"reject","seq":3,"reason":7}"#, "invalid_field")
                .await?;
            ensure(
                e.field.as_deref() == Some("reason") && e.ref_seq == Some(3),
                "field reason, ref_seq 3",
                &e,
            )?;
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-integer-strict",
        "badinput",
        Must,
        ["TRN-9", "ERR-9"],
        "negative, fractional, exponent and too large integers get invalid_field naming the member",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut s = ctx.connect("mobile", &mobile).await?;
            let mut cases: Vec<(String, &str)> =
                ["-1", "1e400", "1.0", "1e0", "9007199254740992", "123456789012345678901234567890"]
                    .iter()
                    .map(|n| (format!(r#"{{"type":"ack","seq":{n}}}"#), "seq"))
                    .collect();
            cases.extend([
                (r#"{"type":"new_task","id":"i1","to":{"role":"desktop"},"priority":123456789012345678901234567890,"payload":1}"#.to_string(), "priority"),
                (r#"{"type":"new_task","id":"i2","to":{"role":"desktop"},"ttl_ms":1e3,"payload":1}"#.to_string(), "ttl_ms"),
                (r#"{"type":"new_task","id":"i3","to":{"role":"desktop"},"max_attempts":2.0,"payload":1}"#.to_string(), "max_attempts"),
                (r#"{"type":"nack","seq":1,"delay_ms":1.5}"#.to_string(), "delay_ms"),
                (r#"{"type":"ping","nonce":-5}"#.to_string(), "nonce"),
            ]);
            for (text, field) in &cases {
                let e = refused_text(&mut s, &ctx, text, "invalid_field").await?;
                ensure(e.field.as_deref() == Some(*field), format!("invalid_field {field} for {text}"), &e)?;
            }
            // 2^53 - 1 is still an integer: a well-formed ack of an unassigned seq.
            let e =
                refused_text(&mut s, &ctx, r#"{"type":"ack","seq":9007199254740991}"#, "unknown_seq").await?;
            ensure(e.ref_seq == Some(9_007_199_254_740_991), "unknown_seq with ref_seq 2^53-1", &e)
        }
    ),
    case!(
        "bad-null-member",
        "badinput",
        Must,
        ["ERR-9", "ERR-1"],
        "null for an optional member is a wrong type (invalid_field), while a null payload is a body",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut s = ctx.connect("mobile", &mobile).await?;
            let cases = [
                (
                    r#"{"type":"new_task","id":"n1","to":{"role":"desktop"},"priority":null,"payload":1}"#,
                    "priority",
                ),
                (
                    r#"{"type":"new_task","id":"n2","to":{"role":"desktop"},"ttl_ms":null,"payload":1}"#,
                    "ttl_ms",
                ),
                (
                    r#"{"type":"new_task","id":"n3","to":{"role":"desktop"},"max_attempts":null,"payload":1}"#,
                    "max_attempts",
                ),
                (r#"{"type":"new_task","id":"n4","to":{"role":"desktop"},"payload":1,"e2e":null}"#, "e2e"),
                (
                    r#"{"type":"tool_progress","id":null,"stream":"s","to":{"role":"desktop"},"payload":1}"#,
                    "id",
                ),
                (r#"{"type":"nack","seq":1,"delay_ms":null}"#, "delay_ms"),
                (r#"{"type":"reject","seq":1,"reason":null}"#, "reason"),
                (r#"{"type":"device_disconnect","reason":null}"#, "reason"),
            ];
            for (text, field) in cases {
                let e = refused_text(&mut s, &ctx, text, "invalid_field").await?;
                ensure(e.field.as_deref() == Some(field), format!("invalid_field {field} for {text}"), &e)?;
                if text.contains(r#""seq":1"#) {
                    ensure(e.ref_seq == Some(1), "ref_seq 1 (ERR-1)", &e)?;
                }
            }
            match request_text(
                &mut s,
                &ctx,
                r#"{"type":"new_task","id":"n9","to":{"role":"desktop"},"payload":null}"#,
            )
            .await?
            {
                ServerFrame::Accepted(a) if a.id == "n9" => Ok(()),
                other => Err(fail("accepted for a null payload", other)),
            }
        }
    ),
    case!(
        "bad-oversize-frame",
        "badinput",
        Must,
        ["TRN-4", "CLS-1"],
        "a frame above max_frame_bytes closes that connection with 1009 (no error frame); others keep working",
        |ctx| {
            let max = ctx.limits().max_frame_bytes as usize;
            if max > 8 << 20 {
                return Err(Miss::Skip(format!("max_frame_bytes is {max}; the case sends at most 8 MiB")));
            }
            let (a, _) = ctx.pair().await?;
            let (b, _) = ctx.pair().await?;
            let mut big = ctx.connect("user-a", &a).await?;
            let mut other = ctx.connect("user-b", &b).await?;
            // Exactly max_frame_bytes is allowed: the unknown member is ignored.
            big.conn.send_text(&padded_ping(max)).await;
            match big.next_frame().await? {
                ServerFrame::Pong(p) if p.nonce == 1 => {}
                other => return Err(fail("pong for a frame of exactly max_frame_bytes", other)),
            }
            big.conn.send_text(&padded_ping(max + 1)).await;
            let (code, reason) = close_without_error(&mut big.conn, ctx.prompt()).await?;
            ensure(code == 1009, "close 1009", (code, reason))?;
            barrier(&mut other, 3).await
        }
    ),
    case!(
        "bad-oversize-first-frame",
        "badinput",
        Must,
        ["TRN-4", "SES-1"],
        "an oversize first frame (before hello) closes with 1009 and no error frame",
        |ctx| {
            let max = ctx.limits().max_frame_bytes as usize;
            if max > 8 << 20 {
                return Err(Miss::Skip(format!("max_frame_bytes is {max}; the case sends at most 8 MiB")));
            }
            let mut conn = ctx.open("probe", Some(relaykit_protocol::PROTOCOL_V1)).await?;
            conn.send_text(&padded_ping(max + 1)).await;
            let (code, reason) = close_without_error(&mut conn, ctx.prompt()).await?;
            ensure(code == 1009, "close 1009", (code, reason))
        }
    ),
    case!(
        "bad-payload-too-large",
        "badinput",
        Must,
        ["LIM-2", "ERR-3", "DLV-5"],
        "a body over max_payload_bytes in a frame within max_frame_bytes gets payload_too_large, enqueues nothing",
        |ctx| {
            let l = ctx.limits().clone();
            let max = l.max_payload_bytes as usize;
            if max < 2 || l.inbox_max_bytes < l.max_payload_bytes {
                return Err(Miss::Skip("max_payload_bytes below 2 or above inbox_max_bytes".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let over = format!("\"{}\"", "x".repeat(max - 1));
            let raw =
                format!(r#"{{"type":"new_task","id":"big","to":{{"role":"desktop"}},"payload":{over}}}"#);
            let e = refused_text(&mut phone, &ctx, &raw, "payload_too_large").await?;
            ensure(e.ref_id.as_deref() == Some("big"), "ref_id big", &e)?;
            let exact = format!("\"{}\"", "x".repeat(max - 2));
            let raw =
                format!(r#"{{"type":"new_task","id":"fits","to":{{"role":"desktop"}},"payload":{exact}}}"#);
            match request_text(&mut phone, &ctx, &raw).await? {
                ServerFrame::Accepted(a) if a.id == "fits" => {}
                other => return Err(fail(format!("accepted for a body of exactly {max} bytes"), other)),
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            let (_, d) = delivery(&mut home).await?;
            ensure(d.id == "fits", "only the send that fits was enqueued", &d.id)?;
            home.ack(d.seq).await;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "bad-binary-after-welcome",
        "badinput",
        Must,
        ["TRN-3", "CLS-1"],
        "a binary message after welcome closes with 1003 and no error frame",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            s.conn.send_binary(encode(&ClientFrame::Ping(Heartbeat { nonce: 1 })).into_bytes()).await;
            let (code, reason) = close_without_error(&mut s.conn, ctx.prompt()).await?;
            ensure(code == 1003, "close 1003", (code, reason))
        }
    ),
    case!(
        "bad-binary-first-frame",
        "badinput",
        Must,
        ["TRN-3", "SES-1"],
        "a binary first message (a hello in binary) closes with 1003 and no error frame",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut conn = ctx.open("desktop", Some(relaykit_protocol::PROTOCOL_V1)).await?;
            let hello = super::common::hello(&desktop, None);
            conn.send_binary(encode(&ClientFrame::Hello(hello)).into_bytes()).await;
            let (code, reason) = close_without_error(&mut conn, ctx.prompt()).await?;
            ensure(code == 1003, "close 1003", (code, reason))
        }
    ),
    case!(
        "bad-deep-nesting",
        "badinput",
        Must,
        ["LIM-3", "ERR-3"],
        "a frame deeper than max_json_depth gets nesting_too_deep, even hugely deep; brackets in strings do not count",
        |ctx| {
            let l = ctx.limits().clone();
            let d = l.max_json_depth as usize;
            if d < 3 {
                return Err(Miss::Skip("max_json_depth below 3 leaves no room for a send".into()));
            }
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let frame = |id: &str, payload: &str| {
                format!(r#"{{"type":"new_task","id":"{id}","to":{{"role":"desktop"}},"payload":{payload}}}"#)
            };
            let nested = |k: usize| format!("{}{}", "[".repeat(k), "]".repeat(k));
            // The frame object is depth 1, so k nested arrays make depth k + 1.
            match request_text(&mut phone, &ctx, &frame("deep-ok", &nested(d - 1))).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail(format!("accepted at depth {d}"), other)),
            }
            refused_text(&mut phone, &ctx, &frame("deep-1", &nested(d)), "nesting_too_deep").await?;
            let huge = ((l.max_frame_bytes as usize).saturating_sub(200) / 2).min(100_000);
            refused_text(&mut phone, &ctx, &frame("deep-2", &nested(huge)), "nesting_too_deep").await?;
            let in_string = format!("\"{}\"", "[{".repeat(d + 5));
            match request_text(&mut phone, &ctx, &frame("deep-str", &in_string)).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail("accepted: brackets inside a string add no depth", other)),
            }
            barrier(&mut phone, 2).await
        }
    ),
    case!(
        "bad-depth-before-json",
        "badinput",
        Must,
        ["ERR-6", "LIM-3"],
        "depth is checked on the raw text first: too deep beats invalid JSON and unknown types",
        |ctx| {
            let d = ctx.limits().max_json_depth as usize;
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let unterminated = format!(r#"{{"type":"ping","x":{}"#, "[".repeat(d + 1));
            refused_text(&mut s, &ctx, &unterminated, "nesting_too_deep").await?;
            let unknown = format!(r#"{{"type":"teleport","x":{}{}}}"#, "[".repeat(d), "]".repeat(d));
            refused_text(&mut s, &ctx, &unknown, "nesting_too_deep").await?;
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-rate-limit",
        "badinput",
        Must,
        ["LIM-4", "LIM-5", "ERR-1"],
        "a burst beyond rate_limit_burst gets rate_limited with retry_after_ms; after that wait the connection works",
        |ctx| {
            let l = ctx.limits().clone();
            let burst = l.rate_limit_burst;
            if burst > 1000 {
                return Err(Miss::Skip(format!(
                    "rate_limit_burst is {burst}; the case floods at most 1000 + extra"
                )));
            }
            // Extra frames cover what refills while the burst is in transit, but stay at or below
            // the burst so that closing with 4007 is not allowed (LIM-5).
            let extra = (20 + l.rate_limit_per_sec / 5).min(2000).min(burst.saturating_sub(2));
            let n = burst + extra;
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let texts: Vec<String> =
                (1..=n).map(|nonce| encode(&ClientFrame::Ping(Heartbeat { nonce }))).collect();
            for t in &texts {
                s.conn.send_text(t).await;
            }
            // Two frames that name what they answer, whether refused by the bucket or not.
            s.conn.send_text(r#"{"type":"ack","seq":12345}"#).await;
            s.conn.send_text(r#"{"type":"new_task","id":"rl-1","to":{"role":"mobile"},"payload":1}"#).await;
            let (mut pongs, mut limited, mut wait) = (0u64, 0u64, 0u64);
            let mut limit = |e: &relaykit_protocol::server::ErrorFrame| -> CaseResult {
                let after = e.retry_after_ms.ok_or_else(|| fail("retry_after_ms with rate_limited", e))?;
                ensure(after >= 1 && ms(after) <= ctx.prompt(), "1 <= retry_after_ms <= a few seconds", e)?;
                limited += 1;
                wait = wait.max(after);
                Ok(())
            };
            for _ in 0..n {
                match s.next_frame().await? {
                    ServerFrame::Pong(_) => pongs += 1,
                    ServerFrame::Error(e) if e.code.as_str() == "rate_limited" && !e.fatal => limit(&e)?,
                    other => return Err(fail("pong or rate_limited", other)),
                }
            }
            match s.next_frame().await? {
                ServerFrame::Error(e) if e.code.as_str() == "rate_limited" && e.ref_seq == Some(12345) => {
                    limit(&e)?
                }
                ServerFrame::Error(e) if e.code.as_str() == "unknown_seq" && e.ref_seq == Some(12345) => {}
                other => {
                    return Err(fail("rate_limited or unknown_seq with ref_seq 12345 for the ack", other));
                }
            }
            match s.next_frame().await? {
                ServerFrame::Error(e)
                    if e.code.as_str() == "rate_limited" && e.ref_id.as_deref() == Some("rl-1") =>
                {
                    limit(&e)?
                }
                ServerFrame::Accepted(a) if a.id == "rl-1" => {}
                other => return Err(fail("rate_limited with ref_id rl-1, or accepted rl-1", other)),
            }
            ensure(
                pongs >= burst,
                format!("at least the burst of {burst} answered (the bucket starts full)"),
                pongs,
            )?;
            ensure(limited >= 1, format!("at least one rate_limited among {n} frames"), (pongs, limited))?;
            tokio::time::sleep(ms(wait)).await;
            barrier(&mut s, n + 1).await
        }
    ),
];
