//! Target cases: role fan-out, the sender's exclusion, device targets (the sender itself
//! included), empty roles and invalid targets. (Device targets of another user: the `isolation`
//! cases and `live-other-user-device`.)

use relaykit_protocol::client::Publish;
use relaykit_protocol::rest::Registered;
use relaykit_protocol::{ClientFrame, DeviceType, RawJson, ServerFrame, Target};

use super::common::{delivery, desktops, invalid_text, quiet, refused, send, sent, short};
use crate::case;
use crate::case::{Case, Ctx, Miss, ensure, fail};

/// A user with two desktops and a phone: (first desktop, phone, second desktop).
async fn trio(ctx: &Ctx) -> Result<(Registered, Registered, Registered), Miss> {
    let (desktop, mobile) = ctx.pair().await?;
    let code = ctx.pairing_code(&desktop).await?;
    let second = ctx.register(DeviceType::Desktop, Some(&code)).await?;
    Ok((desktop, mobile, second))
}

pub(super) const CASES: &[Case] = &[
    case!(
        "tgt-role-fan-out",
        "targets",
        Must,
        ["TGT-3", "DLV-7"],
        "a role target reaches every desktop of the user, online or offline, each with its own seq",
        |ctx| {
            let (d1, mobile, d2) = trio(&ctx).await?;
            let mut one = ctx.connect("desktop-1", &d1).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let a = sent(&mut phone, &ctx, &ClientFrame::NewTask(send("fan", desktops(), "{}"))).await?;
            let mut got: Vec<(String, u64)> =
                a.recipients.iter().map(|r| (r.device_id.clone(), r.seq)).collect();
            got.sort();
            let mut ids = vec![d1.device_id.clone(), d2.device_id.clone()];
            ids.sort();
            ensure(
                got.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>() == ids,
                "recipients: exactly the two desktops",
                &a,
            )?;
            let seq_of = |id: &str| got.iter().find(|(d, _)| d == id).map(|(_, s)| *s).unwrap_or_default();
            let (_, first) = delivery(&mut one).await?;
            ensure(
                first.seq == seq_of(&d1.device_id) && first.id == "fan",
                "desktop 1 gets its own seq",
                &first,
            )?;
            let mut two = ctx.connect("desktop-2", &d2).await?;
            let (_, second) = delivery(&mut two).await?;
            ensure(
                second.seq == seq_of(&d2.device_id) && second.id == "fan",
                "desktop 2 gets its own seq",
                &second,
            )
        }
    ),
    case!(
        "tgt-role-excludes-sender",
        "targets",
        Must,
        ["TGT-3"],
        "a desktop sending to the desktop role reaches the other desktop but not itself",
        |ctx| {
            let (d1, _, d2) = trio(&ctx).await?;
            let mut one = ctx.connect("desktop-1", &d1).await?;
            let a =
                sent(&mut one, &ctx, &ClientFrame::ToolComplete(send("self-role", desktops(), "{}"))).await?;
            ensure(
                a.recipients.len() == 1 && a.recipients[0].device_id == d2.device_id,
                "the other desktop only",
                &a,
            )?;
            quiet(&mut one, short(&ctx)).await
        }
    ),
    case!(
        "tgt-role-no-recipient",
        "targets",
        Must,
        ["TGT-4", "DLV-4"],
        "a role that resolves to no device (or only to the sender) gets no_recipient",
        |ctx| {
            let lone = ctx.register(DeviceType::Desktop, None).await?;
            let mut s = ctx.connect("lone-desktop", &lone).await?;
            let mobiles = Target::Role(DeviceType::Mobile);
            for (id, to) in [("nr-1", mobiles), ("nr-2", desktops())] {
                let e =
                    refused(&mut s, &ctx, &ClientFrame::NewTask(send(id, to, "{}")), "no_recipient").await?;
                ensure(e.ref_id.as_deref() == Some(id), format!("no_recipient with ref_id {id}"), &e)?;
            }
            Ok(())
        }
    ),
    case!(
        "tgt-device-self",
        "targets",
        Must,
        ["TGT-2"],
        "a device target may name the sender itself, which then receives its own message",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let me = Target::Device(mobile.device_id.clone());
            phone.send(&ClientFrame::UserMessage(send("note", me, r#"{"memo":1}"#))).await;
            let mut seq = None;
            let mut got = None;
            for _ in 0..4 {
                match phone.next_frame().await? {
                    ServerFrame::Accepted(a) => {
                        ensure(
                            a.recipients.len() == 1 && a.recipients[0].device_id == mobile.device_id,
                            "the sender as the one recipient",
                            &a,
                        )?;
                        seq = Some(a.recipients[0].seq);
                    }
                    ServerFrame::Receipt(_) => continue,
                    other => match other.into_delivery() {
                        Ok((_, d)) => got = Some(d),
                        Err(other) => return Err(fail("accepted and the delivery", other)),
                    },
                }
                if let (Some(seq), Some(d)) = (seq, &got) {
                    return ensure(
                        d.seq == seq && d.from == mobile.device_id && d.id == "note",
                        "its own message, from itself, with the accepted seq",
                        d,
                    );
                }
            }
            Err(fail("accepted and the delivery", (seq, got)))
        }
    ),
    case!(
        "tgt-invalid-target",
        "targets",
        Must,
        ["TGT-1", "DLV-1"],
        "a to that is not an object with exactly one valid device or role gets invalid_field naming to",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let cases: [(&str, &[&str]); 8] = [
                (r#""desktop""#, &["to"]),
                ("{}", &["to"]),
                ("null", &["to"]),
                (r#"{"device":"d1","role":"desktop"}"#, &["to"]),
                (r#"{"role":"fridge"}"#, &["to", "to.role"]),
                (r#"{"role":["desktop"]}"#, &["to", "to.role"]),
                (r#"{"device":5}"#, &["to", "to.device"]),
                (r#"{"device":"has space"}"#, &["to", "to.device"]),
            ];
            for (i, (to, fields)) in cases.iter().enumerate() {
                let raw = format!(r#"{{"type":"new_task","id":"to{i}","to":{to},"payload":1}}"#);
                invalid_text(&mut phone, &ctx, &raw, fields, Some(&format!("to{i}"))).await?;
            }
            let raw = r#"{"type":"new_task","id":"to-missing","payload":1}"#;
            invalid_text(&mut phone, &ctx, raw, &["to"], Some("to-missing")).await
        }
    ),
    case!(
        "tgt-live-role-fan-out",
        "targets",
        Must,
        ["TGT-3", "LIVE-4"],
        "a live event to the desktop role reaches both online desktops with the same pseq",
        |ctx| {
            let (d1, mobile, d2) = trio(&ctx).await?;
            let mut one = ctx.connect("desktop-1", &d1).await?;
            let mut two = ctx.connect("desktop-2", &d2).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone
                .send(&ClientFrame::ToolStart(Publish {
                    id: Some("ls1".into()),
                    stream: "fan".into(),
                    to: desktops(),
                    payload: Some(RawJson::from_text("1").expect("JSON")),
                    e2e: None,
                }))
                .await;
            for s in [&mut one, &mut two] {
                match s.next_frame().await?.into_event() {
                    Ok((_, e)) => ensure(e.pseq == 1 && e.stream == "fan", "fan pseq 1", &e)?,
                    Err(other) => return Err(fail("the live event", other)),
                }
            }
            quiet(&mut phone, short(&ctx)).await
        }
    ),
];
