//! Bad input cases, second part of the `badinput` group: unknown members, the payload/e2e body
//! rules, malformed e2e objects, invalid ids, which check wins when several fail, and answers to
//! pipelined frames in order.

use relaykit_protocol::client::Send;
use relaykit_protocol::{ClientFrame, ServerFrame};

use super::common::{
    barrier, delivery, desktops, e2e_capable, invalid_text, refused_text, request_text, sent,
};
use crate::case;
use crate::case::{Case, ensure, fail};

/// A valid `e2e` object with one member replaced by raw JSON (`None` removes it).
fn e2e_with(member: &str, value: Option<&str>) -> String {
    let mut members = vec![
        ("alg", r#""a""#.to_string()),
        ("kid", r#""k""#.to_string()),
        ("nonce", r#""AA""#.to_string()),
        ("ciphertext", r#""AA""#.to_string()),
    ];
    members.retain(|(m, _)| *m != member);
    if let Some(v) = value {
        members.push((member, v.to_string()));
    }
    let inner: Vec<String> = members.iter().map(|(m, v)| format!(r#""{m}":{v}"#)).collect();
    format!("{{{}}}", inner.join(","))
}

pub(super) const CASES: &[Case] = &[
    case!(
        "bad-unknown-members",
        "badinput",
        Must,
        ["TRN-7", "TRN-8"],
        "unknown members (top level and nested) are ignored and never copied into deliveries",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            match request_text(&mut phone, &ctx, r#"{"type":"ping","nonce":5,"extra":{"a":[1,{"b":null}]}}"#)
                .await?
            {
                ServerFrame::Pong(p) if p.nonce == 5 => {}
                other => return Err(fail("pong 5", other)),
            }
            let raw = r#"{"type":"new_task","id":"u1","to":{"role":"desktop","zone":"eu"},"route":{"via":"x"},"x_extra":true,"payload":{"k":1}}"#;
            match request_text(&mut phone, &ctx, raw).await? {
                ServerFrame::Accepted(a) if a.id == "u1" => {}
                other => return Err(fail("accepted u1", other)),
            }
            // The delivery is checked against the schema, which has no room for extra members.
            let (_, d) = delivery(&mut home).await?;
            ensure(d.id == "u1", "u1", &d)?;
            home.conn.send_text(&format!(r#"{{"type":"ack","seq":{},"note":"thanks"}}"#, d.seq)).await;
            barrier(&mut home, 6).await
        }
    ),
    case!(
        "bad-body-both-or-neither",
        "badinput",
        Must,
        ["E2E-1"],
        "a send or publish with both payload and e2e, or neither, gets invalid_field payload",
        |ctx| {
            let with_e2e = ctx.info.capabilities.iter().any(|c| c == "e2e");
            // Without the capability, naming e2e for "both" is as right (E2E-6).
            let both: &[&str] = if with_e2e { &["payload"] } else { &["payload", "e2e"] };
            let e2e = e2e_with("alg", Some(r#""a""#));
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let cases: [(String, &[&str], &str); 4] = [
                (
                    format!(
                        r#"{{"type":"new_task","id":"b1","to":{{"role":"desktop"}},"payload":1,"e2e":{e2e}}}"#
                    ),
                    both,
                    "b1",
                ),
                (r#"{"type":"new_task","id":"b2","to":{"role":"desktop"}}"#.into(), &["payload"], "b2"),
                (
                    format!(
                        r#"{{"type":"tool_start","id":"b3","stream":"s","to":{{"role":"desktop"}},"payload":1,"e2e":{e2e}}}"#
                    ),
                    both,
                    "b3",
                ),
                (
                    r#"{"type":"tool_start","id":"b4","stream":"s","to":{"role":"desktop"}}"#.into(),
                    &["payload"],
                    "b4",
                ),
            ];
            for (text, fields, id) in &cases {
                invalid_text(&mut phone, &ctx, text, fields, Some(id)).await?;
            }
            Ok(())
        }
    ),
    case!(
        "bad-e2e-malformed",
        "badinput",
        Must,
        ["E2E-3"],
        "an e2e member of the wrong type, length or alphabet gets invalid_field naming it; limits count characters",
        |ctx| {
            e2e_capable(&ctx)?;
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let to = format!(r#"{{"device":"{}"}}"#, desktop.device_id);
            let frame = |id: &str, e2e: &str| {
                format!(r#"{{"type":"user_message","id":"{id}","to":{to},"e2e":{e2e}}}"#)
            };
            let long = |c: &str, n: usize| format!("\"{}\"", c.repeat(n));
            let bad: Vec<(&str, Option<String>)> = vec![
                ("alg", Some(r#""""#.into())),
                ("alg", Some(long("a", 65))),
                ("alg", Some("5".into())),
                ("kid", Some(r#""""#.into())),
                ("kid", Some(long("k", 129))),
                ("kid", None),
                ("nonce", Some(r#""not base64!""#.into())),
                ("nonce", Some(r#""AA=A""#.into())),
                ("ciphertext", Some("5".into())),
                ("ciphertext", Some(r#""a+b/""#.into())),
            ];
            for (i, (member, value)) in bad.iter().enumerate() {
                let id = format!("em{i}");
                let text = frame(&id, &e2e_with(member, value.as_deref()));
                invalid_text(&mut phone, &ctx, &text, &[&format!("e2e.{member}")], Some(&id)).await?;
            }
            invalid_text(&mut phone, &ctx, &frame("em-str", r#""sealed""#), &["e2e"], Some("em-str")).await?;
            // 64 and 128 characters (not bytes) are within the limits.
            let alg = long("\u{e9}", 64);
            let kid = long("\u{e9}", 128);
            let ok = format!(r#"{{"alg":{alg},"kid":{kid},"nonce":"AA","ciphertext":"AA"}}"#);
            match request_text(&mut phone, &ctx, &frame("em-ok", &ok)).await? {
                ServerFrame::Accepted(a) if a.id == "em-ok" => Ok(()),
                other => Err(fail("accepted: alg of 64 and kid of 128 characters", other)),
            }
        }
    ),
    case!(
        "bad-invalid-id",
        "badinput",
        Must,
        ["DLV-1", "ERR-1"],
        "a send whose id is missing or breaks the id rules gets invalid_field id and no ref_id",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let long = "i".repeat(65);
            for id in [r#""has space""#, r#""""#, &format!("\"{long}\""), "\"caf\u{e9}\"", r#""a/b""#, "5"] {
                let text =
                    format!(r#"{{"type":"new_task","id":{id},"to":{{"role":"desktop"}},"payload":1}}"#);
                invalid_text(&mut phone, &ctx, &text, &["id"], None).await?;
            }
            invalid_text(
                &mut phone,
                &ctx,
                r#"{"type":"new_task","to":{"role":"desktop"},"payload":1}"#,
                &["id"],
                None,
            )
            .await?;
            let max = "i".repeat(64);
            let frame =
                ClientFrame::NewTask(Send { id: max.clone(), ..super::common::send("x", desktops(), "1") });
            sent(&mut phone, &ctx, &frame).await.map(|_| ())
        }
    ),
    case!(
        "bad-check-order",
        "badinput",
        Must,
        ["ERR-6", "SES-4", "SES-5"],
        "frames failing several checks get the first one's error: unknown_type, not_allowed, already_authenticated",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let e = refused_text(
                &mut s,
                &ctx,
                r#"{"type":"teleport","id":"has space","seq":"x"}"#,
                "unknown_type",
            )
            .await?;
            ensure(e.ref_id.is_none(), "no ref_id for an invalid id", &e)?;
            refused_text(&mut s, &ctx, r#"{"type":"welcome","session_id":5}"#, "not_allowed").await?;
            refused_text(&mut s, &ctx, r#"{"type":"hello"}"#, "already_authenticated").await?;
            refused_text(
                &mut s,
                &ctx,
                r#"{"type":"hello","protocol":"relay.v9","token":5}"#,
                "already_authenticated",
            )
            .await?;
            barrier(&mut s, 2).await
        }
    ),
    case!(
        "bad-responses-in-order",
        "badinput",
        Must,
        ["TRN-5"],
        "answers to pipelined frames (pongs, errors, accepted) come in the order the frames were sent",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let texts = [
                r#"{"type":"ping","nonce":1}"#,
                "garbage",
                r#"{"type":"new_task","id":"o1","to":{"role":"desktop"},"payload":1}"#,
                r#"{"type":"ping","nonce":2}"#,
                r#"{"type":"ack","seq":0}"#,
                r#"{"type":"new_task","id":"o2","to":{"role":"desktop"},"priority":10,"payload":1}"#,
                r#"{"type":"ping","nonce":3}"#,
            ];
            for t in texts {
                phone.conn.send_text(t).await;
            }
            let mut got = Vec::new();
            for _ in 0..texts.len() {
                got.push(match phone.next_frame().await? {
                    ServerFrame::Pong(p) => format!("pong {}", p.nonce),
                    ServerFrame::Accepted(a) => format!("accepted {}", a.id),
                    ServerFrame::Error(e) => format!("error {}", e.code.as_str()),
                    other => format!("{} frame", other.type_name()),
                });
            }
            let expected = [
                "pong 1",
                "error malformed_json",
                "accepted o1",
                "pong 2",
                "error unknown_seq",
                "error invalid_field",
                "pong 3",
            ];
            ensure(got == expected, format!("{expected:?}"), got)
        }
    ),
];
