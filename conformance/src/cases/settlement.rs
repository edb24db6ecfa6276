//! Durable delivery cases, second part of the `delivery` group: settling entries (expiry,
//! dead-lettering, nack, reject, acks of unknown or settled seqs, acked entries removed),
//! receipts (delivered notices, accepted before receipts, redelivered until acked), and the
//! bounds around them: a full inbox, increasing seqs, ttl and max_attempts ranges, the in-flight
//! window.

use std::time::Instant;

use relaykit_protocol::client::{Ack, Nack, Reject, Send};
use relaykit_protocol::server::ReceiptState;
use relaykit_protocol::{ClientFrame, MAX_SAFE_INTEGER, ServerFrame, encode};

use super::common::{
    accepted, at_most, barrier, delivery, desktops, invalid_text, ms, only_seq, quiet, receipt, refused,
    send, sent, short, task,
};
use crate::case;
use crate::case::{Case, Miss, ensure, fail};

/// A durable send with a ttl, or a failure.
fn with_ttl(id: &str, ttl_ms: u64) -> ClientFrame {
    ClientFrame::NewTask(Send { ttl_ms: Some(ttl_ms), ..send(id, desktops(), "{}") })
}

pub(super) const CASES: &[Case] = &[
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
];
