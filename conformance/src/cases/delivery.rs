//! Durable delivery cases, first part of the `delivery` group: accept and deliver byte-exact,
//! the acked receipt, priority order, redelivery after a reconnect, idempotent resends and
//! idempotency conflicts.
//!
//! The group goes on in `settlement` and `content`; shared helpers live in `common`.

use relaykit_protocol::server::ReceiptState;
use relaykit_protocol::{RawJson, ServerFrame};

use super::common::{accepted, task};
use crate::case;
use crate::case::{Case, ensure, fail};

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
];
