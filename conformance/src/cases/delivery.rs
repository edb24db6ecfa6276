//! Durable delivery cases: accept, deliver, ack/nack/reject, receipts, ordering, redelivery,
//! expiry, dead-lettering, capacity, the in-flight window, send validation.
//!
//! The helpers at the top are shared by the other groups (`super::delivery::...`).

use std::time::{Duration, Instant};

use relaykit_protocol::client::{Ack, Heartbeat, Hello, Nack, Reject, Resume, Send};
use relaykit_protocol::rest::Registered;
use relaykit_protocol::server::{Accepted, Delivery, ErrorFrame, Receipt, ReceiptState};
use relaykit_protocol::{
    ClientFrame, DeviceType, DurableKind, E2eEnvelope, MAX_SAFE_INTEGER, PROTOCOL_V1, RawJson, ServerFrame,
    Target, encode,
};

use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, Session, ensure, fail};
use crate::conn::Event;

// ---------------------------------------------------------------------------------------------
// Helpers shared by the case modules.

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
        let answer = loop_skipping_receipts(s).await?;
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

async fn loop_skipping_receipts(s: &mut Session) -> Result<ServerFrame, Miss> {
    for _ in 0..256 {
        match s.next_frame().await? {
            ServerFrame::Receipt(_) => continue,
            other => return Ok(other),
        }
    }
    Err(fail("an answer", "256 receipts"))
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

/// A durable send with a ttl, or a failure.
fn with_ttl(id: &str, ttl_ms: u64) -> ClientFrame {
    ClientFrame::NewTask(Send { ttl_ms: Some(ttl_ms), ..send(id, desktops(), "{}") })
}

/// One seq of a one-recipient `accepted`.
fn only_seq(a: &Accepted) -> Result<u64, Miss> {
    match a.recipients.as_slice() {
        [r] => Ok(r.seq),
        other => Err(fail("exactly one recipient", other)),
    }
}

// ---------------------------------------------------------------------------------------------

pub(super) const CASES: &[Case] = &[
    case!(
        "dlv-online-byte-exact",
        "delivery",
        Must,
        ["DLV-7", "DLV-14", "DLV-18", "E2E-2", "TRN-7"],
        "a send to an online desktop is accepted and delivered byte-exact, from filled by the relay",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let payload = r#"{ "n" : 123456789012345678901234567890, "s":"\u00e9" }"#;
            let raw = format!(
                r#"{{"type":"new_task","id":"t1","to":{{"role":"desktop"}},"from":"spoofed","payload":{payload}}}"#
            );
            phone.conn.send_text(&raw).await;
            let a = accepted(&mut phone).await?;
            ensure(
                a.recipients.len() == 1
                    && a.recipients[0].device_id == desktop.device_id
                    && a.recipients[0].seq >= 1,
                "one recipient, the desktop, seq >= 1",
                &a,
            )?;
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(d.from == mobile.device_id, "from = the phone's device id", &d.from)?;
                    ensure(
                        d.payload.as_ref().map(RawJson::get) == Some(payload),
                        "payload byte-exact",
                        &d.payload,
                    )?;
                    ensure(
                        d.attempt == 1 && d.seq == a.recipients[0].seq,
                        "attempt 1 with the accepted seq",
                        (d.attempt, d.seq),
                    )
                }
                other => Err(fail("new_task delivery", other)),
            }
        }
    ),
    case!(
        "dlv-ack-receipt",
        "delivery",
        Must,
        ["RCPT-1", "RCPT-2", "RCPT-3", "DLV-19"],
        "an ack reaches the sender as a definite acked receipt",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("t1", "{}", None)).await;
            let a = accepted(&mut phone).await?;
            let seq = match home.next_frame().await? {
                ServerFrame::NewTask(d) => d.seq,
                other => return Err(fail("new_task delivery", other)),
            };
            home.ack(seq).await;
            for _ in 0..4 {
                match phone.next_frame().await? {
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Acked => {
                        ensure(
                            r.id == a.id
                                && r.definite
                                && r.seq.is_some()
                                && r.recipient == desktop.device_id
                                && r.recipient_seq == seq,
                            "acked receipt: same id, recipient and recipient_seq, definite, own seq",
                            &r,
                        )?;
                        return Ok(());
                    }
                    ServerFrame::Receipt(_) => continue, // `delivered` may come first
                    other => return Err(fail("receipt acked", other)),
                }
            }
            Err(fail("receipt acked", "other receipts only"))
        }
    ),
    case!(
        "dlv-offline-priority-order",
        "delivery",
        Must,
        ["DLV-17", "DLV-15"],
        "queued messages drain by priority, then FIFO",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            for (i, p) in [0u8, 5, 0, 9, 5].iter().enumerate() {
                phone.send(&task(&format!("t{i}"), "{}", Some(*p))).await;
                accepted(&mut phone).await?;
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut order = Vec::new();
            for _ in 0..5 {
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) => {
                        order.push(d.id.clone());
                        home.ack(d.seq).await;
                    }
                    other => return Err(fail("new_task delivery", other)),
                }
            }
            ensure(order == ["t3", "t1", "t4", "t0", "t2"], "t3 (9), t1, t4 (5), t0, t2 (0)", order)
        }
    ),
    case!(
        "dlv-redelivery-after-reconnect",
        "delivery",
        Must,
        ["DLV-15", "DLV-18"],
        "an unacked delivery comes again on the next connection with attempt 2",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("t1", "{}", None)).await;
            accepted(&mut phone).await?;
            let first_seq = {
                let mut home = ctx.connect("desktop", &desktop).await?;
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) => d.seq,
                    other => return Err(fail("new_task delivery", other)),
                }
            };
            let mut home = ctx.connect("desktop-again", &desktop).await?;
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(d.seq == first_seq && d.attempt == 2, "same seq, attempt 2", (d.seq, d.attempt))
                }
                other => Err(fail("redelivered new_task", other)),
            }
        }
    ),
    case!(
        "dlv-idempotent-resend",
        "delivery",
        Must,
        ["DLV-9"],
        "a resend with the same id and content gets the original accepted, delivered once",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("same", r#"{"x":1}"#, None)).await;
            let first = accepted(&mut phone).await?;
            phone.send(&task("same", r#"{"x":1}"#, None)).await;
            let second = accepted(&mut phone).await?;
            ensure(
                second.duplicate && second.recipients == first.recipients,
                "duplicate true, same recipients and seq",
                (&first, &second),
            )?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => home.ack(d.seq).await,
                other => return Err(fail("one new_task", other)),
            }
            home.expect_nothing(ctx.scaled(std::time::Duration::from_millis(500))).await
        }
    ),
    case!(
        "dlv-idempotency-conflict",
        "delivery",
        Must,
        ["DLV-10", "DLV-4"],
        "the same id with another payload gets idempotency_conflict",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("same", r#"{"x":1}"#, None)).await;
            accepted(&mut phone).await?;
            phone.send(&task("same", r#"{"x":2}"#, None)).await;
            match phone.next_frame().await? {
                ServerFrame::Error(e) => ensure(
                    e.code.as_str() == "idempotency_conflict" && e.ref_id.as_deref() == Some("same"),
                    "idempotency_conflict with ref_id",
                    e,
                ),
                other => Err(fail("error idempotency_conflict", other)),
            }
        }
    ),
    case!(
        "dlv-expiry-before-delivery",
        "delivery",
        Must,
        ["DLV-28", "DLV-27", "RCPT-3", "RCPT-2"],
        "an entry that expires offline gives the sender expired (definite true) and is never delivered",
        |ctx| {
            let ttl = ctx.limits().ttl_min_ms;
            at_most("ttl_min_ms", ttl, 15_000)?;
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let a = sent(&mut phone, &ctx, &with_ttl("exp-1", ttl)).await?;
            let seq = only_seq(&a)?;
            let started = Instant::now();
            // The receipt is due about a second after the expiry (PROTOCOL.md 9.10).
            let r = receipt(&mut phone, ctx.scaled(ms(ttl + 1000)) + ctx.prompt()).await?;
            ensure(
                r.state == ReceiptState::Expired
                    && r.definite
                    && r.id == "exp-1"
                    && r.recipient == desktop.device_id
                    && r.recipient_seq == seq
                    && r.seq.is_some(),
                "receipt expired, definite true, naming the entry, with its own seq",
                &r,
            )?;
            let waited = started.elapsed();
            ensure(
                waited + ctx.scaled(ms(100)) >= ms(ttl),
                format!("no expiry before ttl_ms {ttl}"),
                waited,
            )?;
            if let Some(s) = r.seq {
                phone.ack(s).await;
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-expiry-after-delivery",
        "delivery",
        Must,
        ["DLV-28", "DLV-27", "RCPT-3", "DLV-20"],
        "an unacked delivered entry expires with definite false, is not delivered again, and its ack is a no-op",
        |ctx| {
            let ttl = ctx.limits().ttl_min_ms;
            at_most("ttl_min_ms", ttl, 15_000)?;
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let a = sent(&mut phone, &ctx, &with_ttl("exp-2", ttl)).await?;
            let (_, d) = delivery(&mut home).await?;
            ensure(
                d.seq == only_seq(&a)? && (1..=ttl).contains(&d.ttl_remaining_ms),
                format!("the delivery with 1 <= ttl_remaining_ms <= {ttl}"),
                &d,
            )?;
            let r = receipt(&mut phone, ctx.scaled(ms(ttl + 1000)) + ctx.prompt()).await?;
            ensure(
                r.state == ReceiptState::Expired && !r.definite && r.recipient_seq == d.seq,
                "receipt expired with definite false (the entry was delivered)",
                &r,
            )?;
            drop(home);
            let mut home = ctx.connect("desktop-again", &desktop).await?;
            quiet(&mut home, short(&ctx)).await?;
            home.ack(d.seq).await;
            barrier(&mut home, 31).await
        }
    ),
    case!(
        "dlv-dead-letter-after-cap",
        "delivery",
        Must,
        ["DLV-26", "DLV-18", "RCPT-3"],
        "after max_attempts unacked deliveries the entry is dropped and the sender gets undeliverable",
        |ctx| {
            let n = ctx.limits().max_attempts_max.min(2);
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let frame =
                ClientFrame::NewTask(Send { max_attempts: Some(n), ..send("cap-1", desktops(), "{}") });
            let seq = only_seq(&sent(&mut phone, &ctx, &frame).await?)?;
            for attempt in 1..=n {
                let mut home = ctx.connect(&format!("desktop-{attempt}"), &desktop).await?;
                let (_, d) = delivery(&mut home).await?;
                ensure(d.seq == seq && d.attempt == attempt, format!("seq {seq} attempt {attempt}"), &d)?;
                // Dropped without an ack: the next connection decides again.
            }
            let mut home = ctx.connect("desktop-last", &desktop).await?;
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(
                r.state == ReceiptState::Undeliverable && !r.definite && r.recipient_seq == seq,
                "receipt undeliverable, definite false",
                &r,
            )?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-nack-redelivers",
        "delivery",
        Must,
        ["DLV-22", "DLV-24", "DLV-18"],
        "an unacked delivery is not resent on its connection until a nack, then comes with attempt 2",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("n1", "{}", None)).await?;
            let (_, d) = delivery(&mut home).await?;
            ensure(d.attempt == 1, "attempt 1", d.attempt)?;
            quiet(&mut home, short(&ctx)).await?;
            home.send(&ClientFrame::Nack(Nack { seq: d.seq, delay_ms: None })).await;
            let (_, again) = delivery(&mut home).await?;
            ensure(again.seq == d.seq && again.attempt == 2, "the same seq with attempt 2", &again)
        }
    ),
    case!(
        "dlv-nack-delay",
        "delivery",
        Must,
        ["DLV-22"],
        "a nack with delay_ms is redelivered on the same connection, not before delay_ms",
        |ctx| {
            const DELAY: u64 = 800;
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("n2", "{}", None)).await?;
            let (_, d) = delivery(&mut home).await?;
            home.send(&ClientFrame::Nack(Nack { seq: d.seq, delay_ms: Some(DELAY) })).await;
            let nacked = Instant::now();
            let frame = home.next_frame_within(ctx.scaled(ms(DELAY)) + ctx.prompt()).await?;
            let waited = nacked.elapsed();
            let (_, again) = frame.into_delivery().map_err(|f| fail("the redelivery", f))?;
            ensure(again.seq == d.seq && again.attempt == 2, "the same seq with attempt 2", &again)?;
            ensure(waited >= ms(DELAY - 20), format!("redelivery at least {DELAY} ms after the nack"), waited)
        }
    ),
    case!(
        "dlv-reject-receipt",
        "delivery",
        Must,
        ["DLV-23", "RCPT-2", "RCPT-3"],
        "a reject removes the entry and gives the sender rejected, definite, with the exact reason",
        |ctx| {
            const REASON: &str = "workspace \"web\" not found \u{e9}";
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let seq = only_seq(&sent(&mut phone, &ctx, &task("r1", "{}", None)).await?)?;
            let (_, d) = delivery(&mut home).await?;
            home.send(&ClientFrame::Reject(Reject { seq: d.seq, reason: Some(REASON.into()) })).await;
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(
                r.state == ReceiptState::Rejected
                    && r.definite
                    && r.reason.as_deref() == Some(REASON)
                    && r.id == "r1"
                    && r.recipient_seq == seq,
                "receipt rejected, definite true, reason as given",
                &r,
            )?;
            drop(home);
            let mut home = ctx.connect("desktop-again", &desktop).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-queue-full",
        "delivery",
        Must,
        ["DLV-12", "DLV-11", "DLV-4"],
        "a send beyond inbox_max_entries gets queue_full, is not remembered, and succeeds once there is room",
        |ctx| {
            let l = ctx.limits();
            let n = l.inbox_max_entries;
            if n > 200 {
                return Err(Miss::Skip(format!(
                    "inbox_max_entries is {n}; filling more than 200 is too slow"
                )));
            }
            if l.inbox_max_bytes < n {
                return Err(Miss::Skip("inbox_max_bytes is below inbox_max_entries".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mut last = 0;
            for i in 0..n {
                last = only_seq(&sent(&mut phone, &ctx, &task(&format!("q{i}"), "0", None)).await?)?;
            }
            let e = refused(&mut phone, &ctx, &task("q-over", "0", None), "queue_full").await?;
            ensure(e.ref_id.as_deref() == Some("q-over"), "queue_full with ref_id q-over", &e)?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let (_, d) = delivery(&mut home).await?;
            home.ack(d.seq).await;
            // The ack has been processed once its receipt reaches the sender.
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(r.state == ReceiptState::Acked && r.recipient_seq == d.seq, "the acked receipt", &r)?;
            let a = sent(&mut phone, &ctx, &task("q-over", "0", None)).await?;
            let seq = only_seq(&a)?;
            ensure(seq > last, "a fresh entry with a higher seq (the refused send was not remembered)", &a)
        }
    ),
    case!(
        "dlv-delivered-notice",
        "delivery",
        Should,
        ["RCPT-6"],
        "the first delivery to an online recipient gives the online sender a delivered notice without seq",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("dn1", "{}", None)).await;
            let seq = only_seq(&accepted(&mut phone).await?)?;
            delivery(&mut home).await?;
            match phone.next_frame().await? {
                ServerFrame::Receipt(r) => ensure(
                    r.state == ReceiptState::Delivered
                        && !r.definite
                        && r.seq.is_none()
                        && r.id == "dn1"
                        && r.recipient == desktop.device_id
                        && r.recipient_seq == seq,
                    "receipt delivered, definite false, no seq",
                    &r,
                ),
                other => Err(fail("receipt delivered", other)),
            }
        }
    ),
    case!(
        "dlv-seq-increasing",
        "delivery",
        Must,
        ["DLV-8", "TRN-5"],
        "pipelined sends are answered in order with strictly increasing seqs, delivered with those seqs",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            for i in 0..5 {
                phone.send(&task(&format!("s{i}"), "{}", None)).await;
            }
            let mut seqs = Vec::new();
            for i in 0..5 {
                let a = accepted(&mut phone).await?;
                ensure(a.id == format!("s{i}"), format!("accepted s{i} (answers in order)"), &a)?;
                let seq = only_seq(&a)?;
                ensure(
                    seq >= 1 && seqs.last().is_none_or(|l| seq > *l),
                    "seq >= 1 above the previous",
                    (&seqs, seq),
                )?;
                seqs.push(seq);
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            for (i, seq) in seqs.iter().enumerate() {
                let (_, d) = delivery(&mut home).await?;
                ensure(d.seq == *seq && d.id == format!("s{i}"), format!("s{i} with seq {seq}"), &d)?;
                home.ack(d.seq).await;
            }
            Ok(())
        }
    ),
    case!(
        "dlv-ack-unknown-seq",
        "delivery",
        Must,
        ["DLV-21", "ERR-1", "ERR-3"],
        "ack/nack/reject of seq 0 or above the highest assigned get unknown_seq with ref_seq",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let frames = [
                (ClientFrame::Ack(Ack { seq: 0 }), 0),
                (ClientFrame::Ack(Ack { seq: 1_000_000 }), 1_000_000),
                (ClientFrame::Nack(Nack { seq: 999_999, delay_ms: None }), 999_999),
                (ClientFrame::Reject(Reject { seq: 0, reason: None }), 0),
            ];
            for (frame, seq) in &frames {
                let e = refused(&mut home, &ctx, frame, "unknown_seq").await?;
                ensure(e.ref_seq == Some(*seq), format!("ref_seq {seq}"), &e)?;
            }
            barrier(&mut home, 7).await
        }
    ),
    case!(
        "dlv-ack-twice",
        "delivery",
        Must,
        ["DLV-20", "RCPT-1"],
        "acking, nacking or rejecting an acked entry again has no effect, no error, and no second receipt",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("a2", "{}", None)).await?;
            let (_, d) = delivery(&mut home).await?;
            home.ack(d.seq).await;
            home.ack(d.seq).await;
            home.send(&ClientFrame::Nack(Nack { seq: d.seq, delay_ms: None })).await;
            home.send(&ClientFrame::Reject(Reject { seq: d.seq, reason: Some("late".into()) })).await;
            barrier(&mut home, 9).await?;
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(r.state == ReceiptState::Acked, "one receipt: acked", &r)?;
            if let Some(s) = r.seq {
                phone.ack(s).await;
            }
            quiet(&mut phone, short(&ctx)).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-ttl-out-of-range",
        "delivery",
        Must,
        ["DLV-3", "DLV-4", "DLV-5"],
        "ttl_ms below ttl_min_ms or above ttl_max_ms gets ttl_out_of_range and enqueues nothing",
        |ctx| {
            let l = ctx.limits().clone();
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mut bad = vec![l.ttl_min_ms - 1];
            if l.ttl_max_ms < MAX_SAFE_INTEGER {
                bad.push(l.ttl_max_ms + 1);
            }
            for (i, ttl) in bad.iter().enumerate() {
                let id = format!("ttl-bad-{i}");
                let e = refused(&mut phone, &ctx, &with_ttl(&id, *ttl), "ttl_out_of_range").await?;
                ensure(e.ref_id.as_deref() == Some(id.as_str()), format!("ref_id {id}"), &e)?;
            }
            sent(&mut phone, &ctx, &with_ttl("ttl-max", l.ttl_max_ms)).await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let (_, d) = delivery(&mut home).await?;
            ensure(d.id == "ttl-max", "only the send with ttl_ms = ttl_max_ms was enqueued", &d)?;
            home.ack(d.seq).await;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-max-attempts-out-of-range",
        "delivery",
        Must,
        ["DLV-1", "ERR-9"],
        "max_attempts 0 or above max_attempts_max gets invalid_field naming max_attempts",
        |ctx| {
            let max = ctx.limits().max_attempts_max;
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            for (id, n) in [("ma-0", 0), ("ma-over", max + 1)] {
                let frame =
                    ClientFrame::NewTask(Send { max_attempts: Some(n), ..send(id, desktops(), "{}") });
                invalid_text(&mut phone, &ctx, &encode(&frame), &["max_attempts"], Some(id)).await?;
            }
            let frame =
                ClientFrame::NewTask(Send { max_attempts: Some(max), ..send("ma-max", desktops(), "{}") });
            sent(&mut phone, &ctx, &frame).await.map(|_| ())
        }
    ),
    case!(
        "dlv-in-flight-window",
        "delivery",
        Must,
        ["DLV-16", "DLV-15", "DLV-21"],
        "at most max_in_flight deliveries are outstanding; an ack frees exactly one slot",
        |ctx| {
            let l = ctx.limits();
            let w = l.max_in_flight;
            if w > 64 {
                return Err(Miss::Skip(format!("max_in_flight is {w}; the case fills at most 64")));
            }
            if w + 2 > l.inbox_max_entries {
                return Err(Miss::Skip("inbox_max_entries below max_in_flight + 2".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mut seqs = Vec::new();
            for i in 0..w + 2 {
                seqs.push(only_seq(&sent(&mut phone, &ctx, &task(&format!("w{i}"), "{}", None)).await?)?);
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut delivered = Vec::new();
            for _ in 0..w {
                delivered.push(delivery(&mut home).await?.1.seq);
            }
            quiet(&mut home, short(&ctx)).await?;
            let waiting: Vec<u64> = seqs.iter().copied().filter(|s| !delivered.contains(s)).collect();
            ensure(waiting.len() == 2, "two entries not delivered yet", &waiting)?;
            // A non-terminal entry never delivered to the device: unknown_seq (DLV-21).
            let e =
                refused(&mut home, &ctx, &ClientFrame::Ack(Ack { seq: waiting[0] }), "unknown_seq").await?;
            ensure(e.ref_seq == Some(waiting[0]), "ref_seq of the undelivered entry", &e)?;
            home.ack(delivered[0]).await;
            let (_, next) = delivery(&mut home).await?;
            ensure(waiting.contains(&next.seq), "one of the waiting entries", &next)?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-acked-not-redelivered",
        "delivery",
        Must,
        ["DLV-19"],
        "an acked entry is removed: it is not delivered again on the next connection",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("ack-1", "{}", None)).await?;
            let (_, d) = delivery(&mut home).await?;
            home.ack(d.seq).await;
            barrier(&mut home, 3).await?;
            drop(home);
            let mut home = ctx.connect("desktop-again", &desktop).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-accepted-before-receipts",
        "delivery",
        Must,
        ["DLV-30"],
        "on the sending connection, accepted comes before any receipt for the send",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("ab1", "{}", None)).await;
            let (_, d) = delivery(&mut home).await?;
            home.ack(d.seq).await;
            match phone.next_frame().await? {
                ServerFrame::Accepted(a) if a.id == "ab1" => {}
                other => return Err(fail("accepted before any receipt", other)),
            }
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(r.state == ReceiptState::Acked && r.id == "ab1", "then the acked receipt", &r)
        }
    ),
    case!(
        "dlv-receipt-redelivered",
        "delivery",
        Must,
        ["RCPT-4", "RCPT-5", "RCPT-1"],
        "a terminal receipt waits in the sender's inbox, is redelivered until acked, and its ack produces nothing",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            {
                let mut phone = ctx.connect("mobile", &mobile).await?;
                sent(&mut phone, &ctx, &task("rr1", "{}", None)).await?;
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            let (_, d) = delivery(&mut home).await?;
            home.ack(d.seq).await;
            barrier(&mut home, 5).await?;
            let first = {
                let mut phone = ctx.connect("mobile-2", &mobile).await?;
                receipt(&mut phone, ctx.prompt()).await?
            };
            ensure(
                first.state == ReceiptState::Acked && first.id == "rr1" && first.seq.is_some(),
                "the acked receipt on the next connection",
                &first,
            )?;
            let mut phone = ctx.connect("mobile-3", &mobile).await?;
            let again = receipt(&mut phone, ctx.prompt()).await?;
            ensure(
                again.seq == first.seq && again.state == first.state,
                "the same receipt again (not acked)",
                &again,
            )?;
            phone.ack(again.seq.unwrap_or_default()).await;
            barrier(&mut phone, 6).await?;
            drop(phone);
            let mut phone = ctx.connect("mobile-4", &mobile).await?;
            quiet(&mut phone, short(&ctx)).await?;
            // Acking a receipt produces no receipt for the desktop.
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-defaults",
        "delivery",
        Must,
        ["DLV-2", "DLV-26"],
        "absent priority, ttl_ms and max_attempts default to 0, ttl_default_ms and max_attempts_default",
        |ctx| {
            let l = ctx.limits().clone();
            if l.max_attempts_default > 10 {
                return Err(Miss::Skip(format!(
                    "max_attempts_default is {}; the case reconnects that many times (at most 10)",
                    l.max_attempts_default
                )));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let seq = only_seq(&sent(&mut phone, &ctx, &task("def-1", "{}", None)).await?)?;
            for attempt in 1..=l.max_attempts_default {
                let mut home = ctx.connect(&format!("desktop-{attempt}"), &desktop).await?;
                let (_, d) = delivery(&mut home).await?;
                ensure(d.seq == seq && d.attempt == attempt, format!("attempt {attempt}"), &d)?;
                if attempt == 1 {
                    let floor = l.ttl_default_ms.saturating_sub(ctx.scaled(ms(10_000)).as_millis() as u64);
                    ensure(
                        d.priority == 0 && (floor..=l.ttl_default_ms).contains(&d.ttl_remaining_ms),
                        format!(
                            "priority 0 and ttl_remaining_ms close to ttl_default_ms {}",
                            l.ttl_default_ms
                        ),
                        &d,
                    )?;
                }
            }
            let mut home = ctx.connect("desktop-last", &desktop).await?;
            let r = receipt(&mut phone, ctx.prompt()).await?;
            ensure(
                r.state == ReceiptState::Undeliverable,
                format!("undeliverable after max_attempts_default {} deliveries", l.max_attempts_default),
                &r,
            )?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "dlv-delivery-fields",
        "delivery",
        Must,
        ["DLV-14", "DLV-27"],
        "a delivery carries type, id, seq, from, from_type, priority, attempt, ttl_remaining_ms and sent_at_ms",
        |ctx| {
            let l = ctx.limits().clone();
            let ttl = 600_000u64.clamp(l.ttl_min_ms, l.ttl_max_ms);
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let before = phone.welcome().server_time_ms;
            let frame = ClientFrame::FileChange(Send {
                priority: Some(7),
                ttl_ms: Some(ttl),
                ..send("f1", desktops(), r#"{"path":"src/a.rs"}"#)
            });
            let seq = only_seq(&sent(&mut phone, &ctx, &frame).await?)?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let after = home.welcome().server_time_ms;
            let (kind, d) = delivery(&mut home).await?;
            ensure(
                kind == DurableKind::FileChange
                    && d.id == "f1"
                    && d.seq == seq
                    && d.from == mobile.device_id
                    && d.from_type == DeviceType::Mobile
                    && d.priority == 7
                    && d.attempt == 1
                    && (1..=ttl).contains(&d.ttl_remaining_ms),
                format!(
                    "file_change f1, seq {seq}, from the phone (mobile), priority 7, attempt 1, ttl <= {ttl}"
                ),
                (kind, &d),
            )?;
            ensure(
                (before..=after).contains(&d.sent_at_ms),
                "sent_at_ms between the sender's and the recipient's welcome.server_time_ms",
                (before, d.sent_at_ms, after),
            )
        }
    ),
    case!(
        "dlv-every-durable-type",
        "delivery",
        Must,
        ["DLV-14"],
        "each of the nine durable types is delivered with the type it was sent with",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            for kind in DurableKind::ALL {
                let frame = ClientFrame::send(*kind, send(kind.as_str(), desktops(), "{}"));
                sent(&mut phone, &ctx, &frame).await?;
            }
            let mut home = ctx.connect("desktop", &desktop).await?;
            for kind in DurableKind::ALL {
                let (got, d) = delivery(&mut home).await?;
                ensure(
                    got == *kind && d.id == kind.as_str(),
                    format!("{kind} delivered as {kind}"),
                    (got, &d),
                )?;
                home.ack(d.seq).await;
            }
            Ok(())
        }
    ),
    case!(
        "dlv-payload-any-json",
        "delivery",
        Must,
        ["E2E-2"],
        "payloads that are null, strings, arrays, numbers and spaced objects are relayed byte for byte",
        |ctx| {
            let payloads = [
                "null",
                r#""caf\u00e9 \"q\" \n \ud83d\ude00""#,
                "[1, 2.50, -0, 1E+2, 1.0e-7]",
                "true",
                r#"{ "a" : { } , "b":[ ] ,"a":1}"#,
                "123456789012345678901234567890.000",
            ];
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            for (i, p) in payloads.iter().enumerate() {
                let raw = format!(
                    r#"{{"type":"user_message","id":"p{i}","to":{{"role":"desktop"}},"payload":{p}}}"#
                );
                match request_text(&mut phone, &ctx, &raw).await? {
                    ServerFrame::Accepted(_) => {}
                    other => return Err(fail(format!("accepted for payload {p}"), other)),
                }
                let (_, d) = delivery(&mut home).await?;
                ensure(
                    d.payload.as_ref().map(RawJson::get) == Some(*p),
                    format!("payload {p} byte-exact"),
                    &d,
                )?;
                home.ack(d.seq).await;
            }
            Ok(())
        }
    ),
    case!(
        "dlv-e2e-unchanged",
        "delivery",
        Must,
        ["E2E-4", "E2E-5"],
        "an e2e body with an unknown alg is accepted and delivered with alg, kid, nonce, ciphertext unchanged",
        |ctx| {
            if !ctx.info.capabilities.iter().any(|c| c == "e2e") {
                return Err(Miss::Skip("the relay does not list the e2e capability".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let e2e = E2eEnvelope {
                alg: "x-conformance-unknown-alg \u{e9}".into(),
                kid: desktop.device_id.clone(),
                nonce: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX".into(),
                ciphertext: "_-8AAQIDBAUGBwgJ-_==".into(),
            };
            let frame = ClientFrame::UserMessage(Send {
                payload: None,
                e2e: Some(e2e.clone()),
                ..send("e1", Target::Device(desktop.device_id.clone()), "{}")
            });
            sent(&mut phone, &ctx, &frame).await?;
            let (_, d) = delivery(&mut home).await?;
            ensure(
                d.e2e.as_ref() == Some(&e2e) && d.payload.is_none(),
                "the e2e object unchanged, no payload",
                &d,
            )
        }
    ),
    case!(
        "dlv-e2e-without-capability",
        "delivery",
        Must,
        ["E2E-6"],
        "a relay without the e2e capability answers an e2e send with invalid_field e2e",
        |ctx| {
            if ctx.info.capabilities.iter().any(|c| c == "e2e") {
                return Err(Miss::Skip("the relay lists the e2e capability".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let frame = ClientFrame::UserMessage(Send {
                payload: None,
                e2e: Some(E2eEnvelope {
                    alg: "x25519-xchacha20poly1305".into(),
                    kid: desktop.device_id.clone(),
                    nonce: "AAEC".into(),
                    ciphertext: "AAEC".into(),
                }),
                ..send("e1", Target::Device(desktop.device_id.clone()), "{}")
            });
            invalid_text(&mut phone, &ctx, &encode(&frame), &["e2e"], Some("e1")).await
        }
    ),
    case!(
        "dlv-ack-timeout",
        "delivery",
        Must,
        ["DLV-25", "CLS-1", "DLV-15"],
        "an entry unacked for ack_wait_ms closes the connection with 4001; it comes again on the next one",
        |ctx| {
            let wait = ctx.limits().ack_wait_ms;
            at_most("ack_wait_ms", wait, 10_000)?;
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("at1", "{}", None)).await?;
            let (_, d) = delivery(&mut home).await?;
            let started = Instant::now();
            let (code, reason, _) = home.expect_close(ctx.scaled(ms(wait + 1500)) + ctx.prompt()).await?;
            let waited = started.elapsed();
            ensure(code == 4001, "close 4001 ack_timeout", (code, reason))?;
            ensure(
                waited + ctx.scaled(ms(100)) >= ms(wait),
                format!("not before ack_wait_ms {wait}"),
                waited,
            )?;
            let mut home = ctx.connect("desktop-again", &desktop).await?;
            let (_, again) = delivery(&mut home).await?;
            ensure(again.seq == d.seq && again.attempt == 2, "the entry again with attempt 2", &again)
        }
    ),
    case!(
        "dlv-send-check-order",
        "delivery",
        Must,
        ["ERR-6", "DLV-1", "DLV-3", "DLV-10", "LIM-2"],
        "a send failing several steps of section 9.2 gets the error of the first one",
        |ctx| {
            let l = ctx.limits().clone();
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let big = format!("\"{}\"", "x".repeat(l.max_payload_bytes as usize)); // body size max + 2
            let bad_ttl = l.ttl_min_ms - 1;
            // Field validation (step 1) before body size (step 2).
            let raw = format!(
                r#"{{"type":"new_task","id":"o1","to":{{"role":"desktop"}},"priority":10,"payload":{big}}}"#
            );
            invalid_text(&mut phone, &ctx, &raw, &["priority"], Some("o1")).await?;
            // Body size (step 2) before the ttl range (step 3).
            let raw = format!(
                r#"{{"type":"new_task","id":"o2","to":{{"role":"desktop"}},"ttl_ms":{bad_ttl},"payload":{big}}}"#
            );
            refused_text(&mut phone, &ctx, &raw, "payload_too_large").await?;
            // max_attempts above the maximum is field validation (step 1), before the ttl (step 3).
            let raw = format!(
                r#"{{"type":"new_task","id":"o3","to":{{"role":"desktop"}},"ttl_ms":{bad_ttl},"max_attempts":{},"payload":1}}"#,
                l.max_attempts_max + 1
            );
            invalid_text(&mut phone, &ctx, &raw, &["max_attempts"], Some("o3")).await?;
            // The ttl range (step 3) before resolving the target (step 5).
            let raw = format!(
                r#"{{"type":"new_task","id":"o4","to":{{"device":"no-such-device"}},"ttl_ms":{bad_ttl},"payload":1}}"#
            );
            refused_text(&mut phone, &ctx, &raw, "ttl_out_of_range").await?;
            // Idempotency (step 4) before resolving the target (step 5).
            sent(&mut phone, &ctx, &task("o5", "1", None)).await?;
            let raw = r#"{"type":"new_task","id":"o5","to":{"device":"no-such-device"},"payload":1}"#;
            refused_text(&mut phone, &ctx, raw, "idempotency_conflict").await.map(|_| ())
        }
    ),
];
