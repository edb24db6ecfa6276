//! Helpers shared by several case modules: time bounds, durable sends and the relay's answers
//! to them (accepted, errors, deliveries, receipts), quiet periods and barriers, session closes,
//! REST error bodies, random ids and the e2e capability check.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use relaykit_protocol::client::{Heartbeat, Hello, Resume, Send};
use relaykit_protocol::rest::{ErrorResponse, Registered, RestError};
use relaykit_protocol::server::{Accepted, Delivery, ErrorFrame, Receipt};
use relaykit_protocol::{
    ClientFrame, CloseCode, DeviceType, DurableKind, PROTOCOL_V1, RawJson, ServerFrame, Target, encode,
};

use crate::case::{CaseResult, Ctx, Miss, Session, check_rest_schema, ensure, fail};
use crate::conn::Event;
use crate::http::Response;

/// Milliseconds.
pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How long "nothing arrives" is watched for: deliveries and replays are sent right after
/// `welcome` or right after the frame that triggers them, so half a second is generous.
pub(super) fn short(ctx: &Ctx) -> Duration {
    ctx.scaled(ms(500))
}

/// The role target `{"role": "desktop"}`.
pub(super) fn desktops() -> Target {
    Target::Role(DeviceType::Desktop)
}

/// A durable send of `id` to `to` with a raw JSON payload and no options.
pub(super) fn send(id: &str, to: Target, payload: &str) -> Send {
    Send {
        id: id.into(),
        to,
        priority: None,
        ttl_ms: None,
        max_attempts: None,
        payload: Some(RawJson::from_text(payload).expect("test payloads are JSON")),
        e2e: None,
    }
}

/// A `new_task` to the user's desktops with a raw JSON payload.
pub(super) fn task(id: &str, payload: &str, priority: Option<u8>) -> ClientFrame {
    ClientFrame::NewTask(Send { priority, ..send(id, desktops(), payload) })
}

/// `hello` for `device`, optionally resuming.
pub(super) fn hello(device: &Registered, resume: Option<Resume>) -> Hello {
    Hello { protocol: PROTOCOL_V1.into(), token: device.tokens.access_token.clone(), resume, client: None }
}

/// Sends raw text and returns the relay's answer, skipping receipts (they arrive on their own)
/// and resending after `retry_after_ms` while the answer is `rate_limited`.
pub(super) async fn request_text(s: &mut Session, ctx: &Ctx, text: &str) -> Result<ServerFrame, Miss> {
    for _ in 0..64 {
        s.conn.send_text(text).await;
        let answer = next_skipping_receipts(s, 256, "an answer", "256 receipts").await?;
        match answer {
            ServerFrame::Error(e) if e.code.as_str() == "rate_limited" => {
                let wait = e.retry_after_ms.ok_or_else(|| fail("retry_after_ms with rate_limited", &e))?;
                ensure(ms(wait) <= ctx.prompt(), "a retry_after_ms within a few seconds", wait)?;
                tokio::time::sleep(ms(wait.max(1))).await;
            }
            other => return Ok(other),
        }
    }
    Err(fail("an answer other than rate_limited", "64 rate_limited answers"))
}

/// The next frame that is not a receipt, reading at most `max` frames; `expected` and `got`
/// describe the miss when only receipts came.
pub(super) async fn next_skipping_receipts(
    s: &mut Session,
    max: usize,
    expected: &str,
    got: &str,
) -> Result<ServerFrame, Miss> {
    for _ in 0..max {
        match s.next_frame().await? {
            ServerFrame::Receipt(_) => continue,
            other => return Ok(other),
        }
    }
    Err(fail(expected, got))
}

/// [`request_text`] for a typed frame.
pub(super) async fn request(s: &mut Session, ctx: &Ctx, frame: &ClientFrame) -> Result<ServerFrame, Miss> {
    request_text(s, ctx, &encode(frame)).await
}

/// Sends a durable send and expects `accepted` (not a duplicate) naming its id.
pub(super) async fn sent(s: &mut Session, ctx: &Ctx, frame: &ClientFrame) -> Result<Accepted, Miss> {
    let id = frame.as_send().map(|(_, s)| s.id.clone()).unwrap_or_default();
    match request(s, ctx, frame).await? {
        ServerFrame::Accepted(a) if a.id == id && !a.duplicate => Ok(a),
        other => Err(fail(format!("accepted {id} with duplicate false"), other)),
    }
}

/// Sends raw text and expects the non-fatal error `code`.
pub(super) async fn refused_text(
    s: &mut Session,
    ctx: &Ctx,
    text: &str,
    code: &str,
) -> Result<ErrorFrame, Miss> {
    match request_text(s, ctx, text).await? {
        ServerFrame::Error(e) if e.code.as_str() == code && !e.fatal => Ok(e),
        other => Err(fail(format!("non-fatal error {code} for {text}"), other)),
    }
}

/// [`refused_text`] for a typed frame.
pub(super) async fn refused(
    s: &mut Session,
    ctx: &Ctx,
    frame: &ClientFrame,
    code: &str,
) -> Result<ErrorFrame, Miss> {
    refused_text(s, ctx, &encode(frame), code).await
}

/// Expects `invalid_field` naming one of `fields` (and `ref_id` when given).
pub(super) async fn invalid_text(
    s: &mut Session,
    ctx: &Ctx,
    text: &str,
    fields: &[&str],
    ref_id: Option<&str>,
) -> CaseResult {
    let e = refused_text(s, ctx, text, "invalid_field").await?;
    ensure(
        e.field.as_deref().is_some_and(|f| fields.contains(&f)) && e.ref_id.as_deref() == ref_id,
        format!("invalid_field with field in {fields:?} and ref_id {ref_id:?} for {text}"),
        &e,
    )
}

/// The `accepted` for a send, or a failure.
pub(super) async fn accepted(s: &mut Session) -> Result<Accepted, Miss> {
    match s.next_frame().await? {
        ServerFrame::Accepted(a) => Ok(a),
        other => Err(fail("accepted", other)),
    }
}

/// The next frame, which must be a durable delivery.
pub(super) async fn delivery(s: &mut Session) -> Result<(DurableKind, Delivery), Miss> {
    let frame = s.next_frame().await?;
    frame.into_delivery().map_err(|other| fail("a durable delivery", other))
}

/// The next terminal receipt (`delivered` notices are skipped), each frame awaited up to `wait`.
pub(super) async fn receipt(s: &mut Session, wait: Duration) -> Result<Receipt, Miss> {
    for _ in 0..64 {
        match s.next_frame_within(wait).await? {
            ServerFrame::Receipt(r) if r.state.is_terminal() => return Ok(r),
            ServerFrame::Receipt(_) => continue,
            other => return Err(fail("a terminal receipt", other)),
        }
    }
    Err(fail("a terminal receipt", "64 delivered notices"))
}

/// Nothing but presence and relay pings (answered) arrives for `quiet`.
pub(super) async fn quiet(s: &mut Session, quiet: Duration) -> CaseResult {
    let deadline = tokio::time::Instant::now() + quiet;
    for _ in 0..256 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match s.conn.next(left).await {
            Event::Timeout => return Ok(()),
            Event::Frame(ServerFrame::DeviceStatus(_)) => continue,
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            other => return Err(fail("no frame", other)),
        }
    }
    Ok(())
}

/// Pings and expects the matching pong as the very next frame: everything sent before was
/// processed (TRN-5) without an answer.
pub(super) async fn barrier(s: &mut Session, nonce: u64) -> CaseResult {
    s.send(&ClientFrame::Ping(Heartbeat { nonce })).await;
    match s.next_frame().await? {
        ServerFrame::Pong(p) if p.nonce == nonce => Ok(()),
        other => Err(fail(format!("pong {nonce}, and nothing before it"), other)),
    }
}

/// Skips a case that would wait longer than `max_ms` of relay time.
pub(super) fn at_most(what: &str, value: u64, max_ms: u64) -> CaseResult {
    if value > max_ms {
        return Err(Miss::Skip(format!(
            "{what} is {value} ms; the case waits for it and allows at most {max_ms}"
        )));
    }
    Ok(())
}

/// One seq of a one-recipient `accepted`.
pub(super) fn only_seq(a: &Accepted) -> Result<u64, Miss> {
    match a.recipients.as_slice() {
        [r] => Ok(r.seq),
        other => Err(fail("exactly one recipient", other)),
    }
}

/// `d` scaled, but never below `d`: for bounds the protocol states in real time.
pub(super) fn at_least(ctx: &Ctx, d: Duration) -> Duration {
    d.max(ctx.scaled(d))
}

pub(super) fn close_name(code: CloseCode) -> String {
    format!("close {} {}", code.code(), code.name())
}

/// Reads until the session closes (pings answered) and checks the close code.
pub(super) async fn expect_session_close(s: &mut Session, wait: Duration, code: CloseCode) -> CaseResult {
    let (c, reason, _) = s.expect_close(wait).await?;
    ensure(c == code.code(), close_name(code), (c, reason))
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

/// 64 random bits (std's randomly keyed hasher; the suite has no RNG dependency).
pub(super) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// Skips unless the relay lists the `e2e` capability.
pub(super) fn e2e_capable(ctx: &Ctx) -> CaseResult {
    if ctx.info.capabilities.iter().any(|c| c == "e2e") {
        Ok(())
    } else {
        Err(Miss::Skip("the relay does not list the e2e capability".into()))
    }
}
