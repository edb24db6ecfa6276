//! Durable delivery cases, last part of the `delivery` group: what a delivery carries (defaults,
//! every field, each durable type, payloads byte for byte, e2e bodies with and without the
//! capability), the ack timeout, and the order of the send checks.

use std::time::Instant;

use relaykit_protocol::client::Send;
use relaykit_protocol::server::ReceiptState;
use relaykit_protocol::{
    ClientFrame, DeviceType, DurableKind, E2eEnvelope, RawJson, ServerFrame, Target, encode,
};

use super::common::{
    at_most, delivery, desktops, invalid_text, ms, only_seq, quiet, receipt, refused_text, request_text,
    send, sent, short, task,
};
use crate::case;
use crate::case::{Case, Miss, ensure, fail};

pub(super) const CASES: &[Case] = &[
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
