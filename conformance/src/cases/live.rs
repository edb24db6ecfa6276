//! Live delivery cases: pseq, fan-out to online devices only, replay on resume, gap notices,
//! publish validation.

use relaykit_protocol::client::{Publish, Resume, StreamPosition};
use relaykit_protocol::server::{Event as LiveEvent, Gap, GapReason};
use relaykit_protocol::{
    ClientFrame, DeviceType, E2eEnvelope, LiveKind, RawJson, ServerFrame, Target, encode,
};

use super::common::{
    barrier, desktops, e2e_capable, hello, invalid_text, quiet, refused, refused_text, short,
};
use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, Session, ensure, fail};

/// A publish of `kind` on `stream` with a raw JSON payload.
fn publish(kind: LiveKind, id: Option<&str>, stream: &str, to: Target, payload: &str) -> ClientFrame {
    ClientFrame::publish(
        kind,
        Publish {
            id: id.map(str::to_string),
            stream: stream.into(),
            to,
            payload: Some(RawJson::from_text(payload).expect("test payloads are JSON")),
            e2e: None,
        },
    )
}

/// A `tool_progress` without id.
fn progress(stream: &str, to: Target, payload: &str) -> ClientFrame {
    publish(LiveKind::ToolProgress, None, stream, to, payload)
}

/// The next frame, which must be a live event.
async fn event(s: &mut Session) -> Result<(LiveKind, LiveEvent), Miss> {
    let frame = s.next_frame().await?;
    frame.into_event().map_err(|other| fail("a live event", other))
}

/// The next frame, which must be a `gap`.
async fn gap(s: &mut Session) -> Result<Gap, Miss> {
    match s.next_frame().await? {
        ServerFrame::Gap(g) => Ok(g),
        other => Err(fail("gap", other)),
    }
}

/// Expects the events `pseqs` of `stream`, in that order, with `replayed`.
async fn events(
    s: &mut Session,
    stream: &str,
    pseqs: impl Iterator<Item = u64>,
    replayed: bool,
) -> CaseResult {
    for pseq in pseqs {
        let (_, e) = event(s).await?;
        ensure(
            e.stream == stream && e.pseq == pseq && e.replayed == replayed,
            format!("{stream} pseq {pseq} replayed {replayed}"),
            &e,
        )?;
    }
    Ok(())
}

/// `hello.resume` listing `streams` under `stream_epoch`.
fn resume(session_id: &str, stream_epoch: Option<&str>, streams: &[(&str, u64)]) -> Resume {
    Resume {
        session_id: session_id.into(),
        inbox_epoch: None,
        stream_epoch: stream_epoch.map(str::to_string),
        streams: streams
            .iter()
            .map(|(stream, last_pseq)| StreamPosition { stream: stream.to_string(), last_pseq: *last_pseq })
            .collect(),
    }
}

/// Publishes `count` events on `stream` (ids `p1`...) without tripping the rate limit. Each
/// chunk ends with a ping whose pong proves the chunk was processed without an answer; the pace
/// is derived from the advertised limits with a lower bound on the relay's bucket: full
/// (`rate_limit_burst`) when this starts (nothing was sent since `welcome`), minus every frame
/// sent, plus `rate_limit_per_sec` only for time waited after a pong (refill while the relay
/// still had a backlog may have been capped, so it is not counted).
async fn publish_all(s: &mut Session, ctx: &Ctx, stream: &str, to: &Target, count: u64) -> CaseResult {
    let (burst, rate) = (ctx.limits().rate_limit_burst as f64, ctx.limits().rate_limit_per_sec as f64);
    // Tokens kept for pongs to relay pings.
    const MARGIN: f64 = 4.0;
    let mut tokens = burst - MARGIN;
    let (mut next, mut nonce) = (1u64, 1_000_000u64);
    for _ in 0..100_000 {
        if next > count {
            return Ok(());
        }
        let chunk = ((tokens - 1.0).floor().max(0.0) as u64).min(count + 1 - next).min(64);
        if chunk == 0 {
            let wanted = ((count + 1 - next).min(64) + 1) as f64;
            let wait = ((wanted - tokens) / rate.max(0.001)).clamp(0.001, 1.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(wait)).await;
            tokens = (tokens + wait * rate).min(burst - MARGIN);
            continue;
        }
        for _ in 0..chunk {
            let frame = publish(LiveKind::ToolProgress, Some(&format!("p{next}")), stream, to.clone(), "{}");
            s.conn.send_text(&encode(&frame)).await;
            next += 1;
        }
        nonce += 1;
        barrier(s, nonce).await?;
        tokens -= (chunk + 1) as f64;
    }
    Err(fail(format!("{count} publishes within the rate limit"), "too many rounds"))
}

pub(super) const CASES: &[Case] = &[
    case!(
        "live-pseq-in-order",
        "live",
        Must,
        ["LIVE-2", "LIVE-4", "LIVE-5", "LIVE-6"],
        "events published to an online device arrive live with pseq 1, 2, 3 and every field",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let before = phone.welcome().server_time_ms;
            let sent = [
                (LiveKind::ToolStart, Some("ev-1"), r#"{"tool" : "write_file"}"#),
                (LiveKind::ToolProgress, None, "[ 1 , 2.50 ]"),
                (LiveKind::SyncStatus, None, r#""done""#),
            ];
            for (kind, id, payload) in sent {
                phone.send(&publish(kind, id, "task:1", desktops(), payload)).await;
            }
            // A successful publish has no answer.
            barrier(&mut phone, 1).await?;
            for (i, (kind, id, payload)) in sent.iter().enumerate() {
                let (got, e) = event(&mut home).await?;
                ensure(
                    got == *kind
                        && e.pseq == i as u64 + 1
                        && !e.replayed
                        && e.stream == "task:1"
                        && e.id.as_deref() == *id
                        && e.from == mobile.device_id
                        && e.from_type == DeviceType::Mobile
                        && e.sent_at_ms >= before
                        && e.payload.as_ref().map(RawJson::get) == Some(*payload),
                    format!("{kind} pseq {} from the phone, id {id:?}, payload {payload} byte-exact", i + 1),
                    (got, &e),
                )?;
            }
            Ok(())
        }
    ),
    case!(
        "live-offline-not-delivered",
        "live",
        Must,
        ["LIVE-4"],
        "an event published while the recipient is offline is not delivered when it connects",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&progress("task:2", desktops(), "1")).await;
            barrier(&mut phone, 1).await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            quiet(&mut home, short(&ctx)).await?;
            phone.send(&progress("task:2", desktops(), "2")).await;
            let (_, e) = event(&mut home).await?;
            ensure(e.pseq == 2 && !e.replayed, "only the second event, live, pseq 2", &e)
        }
    ),
    case!(
        "live-resume-replays",
        "live",
        Must,
        ["LIVE-9", "LIVE-13", "SES-6"],
        "a resume within the window replays the missed events (replayed true) before new live ones",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let (session_id, epoch) = {
                let mut home = ctx.connect("desktop", &desktop).await?;
                phone.send(&progress("task:3", desktops(), "1")).await;
                events(&mut home, "task:3", 1..=1, false).await?;
                (home.welcome().session_id.clone(), home.welcome().stream_epoch.clone())
            };
            phone.send(&progress("task:3", desktops(), "2")).await;
            phone.send(&progress("task:3", desktops(), "3")).await;
            barrier(&mut phone, 1).await?;
            let hello = hello(&desktop, Some(resume(&session_id, Some(&epoch), &[("task:3", 1)])));
            let mut home = ctx.connect_with("desktop-again", hello).await?;
            if ctx.limits().session_expiry_ms >= 2000 {
                ensure(home.welcome().resumed, "resumed true for the previous session", home.welcome())?;
            }
            events(&mut home, "task:3", 2..=3, true).await?;
            phone.send(&progress("task:3", desktops(), "4")).await;
            events(&mut home, "task:3", 4..=4, false).await
        }
    ),
    case!(
        "live-resume-only-newer",
        "live",
        Must,
        ["LIVE-9"],
        "a resume replays only events after last_pseq that were addressed to the device; nothing when up to date",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let epoch = phone.welcome().stream_epoch.clone();
            let me = Target::Device(mobile.device_id.clone());
            phone.send(&progress("a", desktops(), "1")).await;
            phone.send(&progress("a", desktops(), "2")).await;
            phone.send(&progress("b", desktops(), "1")).await;
            phone.send(&progress("b", me, "2")).await; // addressed to the phone only
            phone.send(&progress("b", desktops(), "3")).await;
            // The phone gets its own event live (pseq 2 of b).
            let (_, own) = event(&mut phone).await?;
            ensure(own.stream == "b" && own.pseq == 2, "b pseq 2 on the phone", &own)?;
            barrier(&mut phone, 1).await?;
            let streams = [("a", 2), ("b", 0)];
            let hello = hello(&desktop, Some(resume("ses-conformance-none", Some(&epoch), &streams)));
            let mut home = ctx.connect_with("desktop", hello).await?;
            events(&mut home, "b", [1, 3].into_iter(), true).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "live-window-exceeded",
        "live",
        Must,
        ["LIVE-10", "LIVE-8", "LIVE-9"],
        "a resume from before the replay window gets gap window_exceeded, then the retained events",
        |ctx| {
            let l = ctx.limits().clone();
            let n = l.replay_window_events;
            if n > 512 {
                return Err(Miss::Skip(format!(
                    "replay_window_events is {n}; the case publishes at most 515"
                )));
            }
            if l.replay_window_ms < 10_000 {
                return Err(Miss::Skip(
                    "replay_window_ms below 10 s: events could age out while publishing".into(),
                ));
            }
            let count = n + 3;
            if count > l.rate_limit_burst + l.rate_limit_per_sec * 5 {
                return Err(Miss::Skip("the rate limit would make publishing take longer than 5 s".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let epoch = phone.welcome().stream_epoch.clone();
            publish_all(&mut phone, &ctx, "task:w", &desktops(), count).await?;
            let hello = hello(&desktop, Some(resume("ses-conformance-none", Some(&epoch), &[("task:w", 0)])));
            let mut home = ctx.connect_with("desktop", hello).await?;
            let g = gap(&mut home).await?;
            ensure(
                g.reason == GapReason::WindowExceeded
                    && g.stream == "task:w"
                    && g.after_pseq == 0
                    && g.resume_pseq == Some(4),
                format!("gap window_exceeded after 0, resume_pseq 4 (window of {n} of {count} events)"),
                &g,
            )?;
            events(&mut home, "task:w", 4..=count, true).await?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "live-epoch-changed",
        "live",
        Must,
        ["LIVE-11"],
        "a resume with another or no stream_epoch gets gap epoch_changed, then every retained event",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&progress("task:e", desktops(), "1")).await;
            phone.send(&progress("task:e", desktops(), "2")).await;
            barrier(&mut phone, 1).await?;
            for (label, epoch, last) in
                [("desktop", Some("se-conformance-old"), 7), ("desktop-again", None, 0)]
            {
                let hello = hello(&desktop, Some(resume("ses-conformance-none", epoch, &[("task:e", last)])));
                let mut home = ctx.connect_with(label, hello).await?;
                let g = gap(&mut home).await?;
                ensure(
                    g.reason == GapReason::EpochChanged
                        && g.stream == "task:e"
                        && g.after_pseq == last
                        && g.resume_pseq == Some(1),
                    format!("gap epoch_changed after {last}, resume_pseq 1 (stream_epoch {epoch:?})"),
                    &g,
                )?;
                events(&mut home, "task:e", 1..=2, true).await?;
            }
            Ok(())
        }
    ),
    case!(
        "live-unknown-stream",
        "live",
        Must,
        ["LIVE-12"],
        "a resume listing a stream never published in this epoch gets gap unknown_stream without resume_pseq",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let epoch = ctx.connect("mobile", &mobile).await?.welcome().stream_epoch.clone();
            let hello = hello(&desktop, Some(resume("ses-conformance-none", Some(&epoch), &[("never", 3)])));
            let mut home = ctx.connect_with("desktop", hello).await?;
            let g = gap(&mut home).await?;
            ensure(
                g.reason == GapReason::UnknownStream
                    && g.stream == "never"
                    && g.after_pseq == 3
                    && g.resume_pseq.is_none(),
                "gap unknown_stream after 3, no resume_pseq",
                &g,
            )?;
            quiet(&mut home, short(&ctx)).await
        }
    ),
    case!(
        "live-other-user-device",
        "live",
        Must,
        ["ISO-1", "TGT-2", "ISO-2"],
        "a publish to another user's device gets unknown_recipient, like an unknown device, and reaches nobody",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let (theirs, _) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mut other = ctx.connect("other-user", &theirs).await?;
            let to_other = publish(
                LiveKind::ToolProgress,
                Some("ev-x"),
                "task:x",
                Target::Device(theirs.device_id.clone()),
                "1",
            );
            let a = refused(&mut phone, &ctx, &to_other, "unknown_recipient").await?;
            let to_none = publish(
                LiveKind::ToolProgress,
                Some("ev-y"),
                "task:x",
                Target::Device("no-such-device".into()),
                "1",
            );
            let b = refused(&mut phone, &ctx, &to_none, "unknown_recipient").await?;
            ensure(
                a.ref_id.as_deref() == Some("ev-x")
                    && b.ref_id.as_deref() == Some("ev-y")
                    && a.message == b.message
                    && a.field == b.field,
                "the same error for another user's device and an unknown one, ref_id aside",
                (&a, &b),
            )?;
            quiet(&mut other, short(&ctx)).await
        }
    ),
    case!(
        "live-failed-publish-no-pseq",
        "live",
        Must,
        ["LIVE-14", "TGT-4", "TGT-2"],
        "publishes refused for their target get no pseq: the next good one is pseq 1",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mobiles = Target::Role(DeviceType::Mobile);
            let e = refused(
                &mut phone,
                &ctx,
                &publish(LiveKind::ToolProgress, Some("f1"), "task:f", mobiles, "1"),
                "no_recipient",
            )
            .await?;
            ensure(
                e.ref_id.as_deref() == Some("f1"),
                "no_recipient with ref_id f1 (the sender is excluded)",
                &e,
            )?;
            let unknown = Target::Device("no-such-device".into());
            refused(
                &mut phone,
                &ctx,
                &publish(LiveKind::ToolProgress, Some("f2"), "task:f", unknown, "1"),
                "unknown_recipient",
            )
            .await?;
            phone.send(&progress("task:f", desktops(), "3")).await;
            events(&mut home, "task:f", 1..=1, false).await
        }
    ),
    case!(
        "live-invalid-publish",
        "live",
        Must,
        ["LIVE-1", "ERR-9", "LIVE-14"],
        "a publish with a missing or invalid stream, to, body or id gets invalid_field and no pseq",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let long = "s".repeat(65);
            let cases: Vec<(String, &[&str], Option<&str>)> = vec![
                (r#"{"type":"tool_progress","id":"i1","to":{"role":"desktop"},"payload":1}"#.into(), &["stream"], Some("i1")),
                (
                    r#"{"type":"tool_progress","id":"i2","stream":"has space","to":{"role":"desktop"},"payload":1}"#.into(),
                    &["stream"],
                    Some("i2"),
                ),
                (
                    format!(r#"{{"type":"tool_progress","id":"i3","stream":"{long}","to":{{"role":"desktop"}},"payload":1}}"#),
                    &["stream"],
                    Some("i3"),
                ),
                (r#"{"type":"tool_progress","id":"i4","stream":"s","payload":1}"#.into(), &["to"], Some("i4")),
                (r#"{"type":"tool_progress","id":"i5","stream":"s","to":{"role":"desktop"}}"#.into(), &["payload"], Some("i5")),
                (
                    r#"{"type":"tool_progress","id":"bad id","stream":"s","to":{"role":"desktop"},"payload":1}"#.into(),
                    &["id"],
                    None,
                ),
            ];
            for (text, fields, ref_id) in &cases {
                invalid_text(&mut phone, &ctx, text, fields, *ref_id).await?;
            }
            phone.send(&progress("s", desktops(), "1")).await;
            events(&mut home, "s", 1..=1, false).await
        }
    ),
    case!(
        "live-stream-isolation",
        "live",
        Must,
        ["ISO-3", "LIVE-2"],
        "two users' streams with the same name have separate pseq sequences and no cross delivery",
        |ctx| {
            let (desk_a, phone_a) = ctx.pair().await?;
            let (desk_b, phone_b) = ctx.pair().await?;
            let mut home_a = ctx.connect("desktop-a", &desk_a).await?;
            let mut home_b = ctx.connect("desktop-b", &desk_b).await?;
            let mut pa = ctx.connect("mobile-a", &phone_a).await?;
            let mut pb = ctx.connect("mobile-b", &phone_b).await?;
            pa.send(&progress("shared", desktops(), r#""a1""#)).await;
            pa.send(&progress("shared", desktops(), r#""a2""#)).await;
            barrier(&mut pa, 1).await?;
            pb.send(&progress("shared", desktops(), r#""b1""#)).await;
            for (pseq, body) in [(1, r#""a1""#), (2, r#""a2""#)] {
                let (_, e) = event(&mut home_a).await?;
                ensure(
                    e.pseq == pseq
                        && e.from == phone_a.device_id
                        && e.payload.as_ref().map(RawJson::get) == Some(body),
                    format!("user A's event {body} with pseq {pseq}"),
                    &e,
                )?;
            }
            let (_, e) = event(&mut home_b).await?;
            ensure(
                e.pseq == 1 && e.from == phone_b.device_id,
                "user B's first event on the same stream name has pseq 1",
                &e,
            )?;
            quiet(&mut home_a, short(&ctx)).await?;
            quiet(&mut home_b, short(&ctx)).await
        }
    ),
    case!(
        "live-payload-too-large",
        "live",
        Must,
        ["LIM-2", "LIVE-1", "LIVE-14"],
        "a publish whose body exceeds max_payload_bytes gets payload_too_large; one of exactly that size passes",
        |ctx| {
            let max = ctx.limits().max_payload_bytes as usize;
            if max < 2 {
                return Err(Miss::Skip("max_payload_bytes below 2".into()));
            }
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let over = format!("\"{}\"", "x".repeat(max - 1)); // max + 1 bytes
            let e = refused(
                &mut phone,
                &ctx,
                &publish(LiveKind::ToolProgress, Some("big"), "task:b", desktops(), &over),
                "payload_too_large",
            )
            .await?;
            ensure(e.ref_id.as_deref() == Some("big"), "payload_too_large with ref_id big", &e)?;
            // Target resolution comes after the size check (LIVE-14).
            let unknown = Target::Device("no-such-device".into());
            refused(
                &mut phone,
                &ctx,
                &publish(LiveKind::ToolProgress, None, "task:b", unknown, &over),
                "payload_too_large",
            )
            .await?;
            let exact = format!("\"{}\"", "x".repeat(max - 2));
            phone.send(&progress("task:b", desktops(), &exact)).await;
            let (_, ev) = event(&mut home).await?;
            ensure(
                ev.pseq == 1 && ev.payload.as_ref().map(|p| p.get().len()) == Some(max),
                format!("the {max}-byte body delivered as pseq 1"),
                (ev.pseq, ev.payload.as_ref().map(|p| p.get().len())),
            )
        }
    ),
    case!(
        "live-publish-check-order",
        "live",
        Must,
        ["LIVE-14", "ERR-6"],
        "a publish with an invalid field and an unknown target gets invalid_field",
        |ctx| {
            let (_, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let raw = r#"{"type":"tool_progress","id":"c1","stream":"bad stream","to":{"device":"no-such-device"},"payload":1}"#;
            invalid_text(&mut phone, &ctx, raw, &["stream"], Some("c1")).await?;
            let raw = r#"{"type":"tool_progress","id":"c2","stream":"s","to":{"role":"mobile"},"payload":1,"e2e":{"alg":"a","kid":"k","nonce":"AA","ciphertext":"AA"}}"#;
            let e = refused_text(&mut phone, &ctx, raw, "invalid_field").await?;
            ensure(
                matches!(e.field.as_deref(), Some("payload" | "e2e")),
                "invalid_field for both bodies, before no_recipient",
                &e,
            )
        }
    ),
    case!(
        "live-e2e-unchanged",
        "live",
        Must,
        ["E2E-4", "E2E-5"],
        "a live e2e body is delivered with alg, kid, nonce and ciphertext unchanged",
        |ctx| {
            e2e_capable(&ctx)?;
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let e2e = E2eEnvelope {
                alg: "xchacha-conformance".into(),
                kid: desktop.device_id.clone(),
                nonce: "bm9uY2Utbm9uY2Utbm9uY2U=".into(),
                ciphertext: "".into(),
            };
            let frame = ClientFrame::ToolProgress(Publish {
                id: None,
                stream: "task:z".into(),
                to: Target::Device(desktop.device_id.clone()),
                payload: None,
                e2e: Some(e2e.clone()),
            });
            phone.send(&frame).await;
            let (_, e) = event(&mut home).await?;
            ensure(
                e.e2e.as_ref() == Some(&e2e) && e.payload.is_none(),
                "the e2e object unchanged, no payload",
                &e,
            )
        }
    ),
];
