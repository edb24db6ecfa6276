//! Session cases: hello/welcome, version, auth timeout, first frame, takeover, resume, presence,
//! heartbeat, deliberate disconnect.

use std::time::{Duration, Instant};

use relaykit_protocol::client::{DeviceDisconnect, Heartbeat, Hello, Resume};
use relaykit_protocol::server::Presence;
use relaykit_protocol::{ClientFrame, PROTOCOL_V1, ServerFrame};

use super::common::{at_most, delivery, hello, ms, sent, task};
use crate::case;
use crate::case::{Case, CaseResult, Miss, Session, ensure, fail};
use crate::conn::Event;

pub(super) const CASES: &[Case] = &[
    case!(
        "ses-welcome",
        "session",
        Must,
        ["SES-3", "SES-6", "DISC-2"],
        "hello answered by welcome whose limits equal GET /v1/info",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let session = ctx.connect("desktop", &desktop).await?;
            let w = session.welcome();
            ensure(
                w.device_id == desktop.device_id && w.user_id == desktop.user_id,
                "welcome names the device and user",
                w,
            )?;
            ensure(!w.resumed, "resumed false without resume", w.resumed)?;
            ensure(
                w.limits == ctx.info.limits,
                "welcome.limits equal to info.limits",
                (&w.limits, &ctx.info.limits),
            )
        }
    ),
    case!(
        "ses-subprotocol-selected",
        "session",
        Must,
        ["VER-2"],
        "the relay selects relay.v1 when offered",
        |ctx| {
            let conn = ctx.open("probe", Some("relay.v1")).await?;
            ensure(
                conn.selected.as_deref() == Some(PROTOCOL_V1),
                "Sec-WebSocket-Protocol: relay.v1",
                &conn.selected,
            )
        }
    ),
    case!(
        "ses-unsupported-subprotocol",
        "session",
        Must,
        ["VER-3"],
        "an upgrade offering only relay.v9 is refused with 400",
        |ctx| {
            match crate::conn::Conn::open(ctx.addr, Some("relay.v9"), "probe", &ctx.evidence, ctx.prompt())
                .await
            {
                Ok(_) => Err(fail("HTTP 400 unsupported_version", "upgrade accepted")),
                Err(r) => ensure(
                    r.status == 400 && r.body.contains("unsupported_version"),
                    "HTTP 400 unsupported_version",
                    (r.status, r.body),
                ),
            }
        }
    ),
    case!(
        "ses-hello-version",
        "session",
        Must,
        ["VER-5", "VER-4", "SES-1"],
        "hello.protocol relay.v9 is closed with 4503",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut conn = ctx.open("desktop", None).await?;
            let hello = Hello {
                protocol: "relay.v9".into(),
                token: desktop.tokens.access_token.clone(),
                resume: None,
                client: None,
            };
            conn.send(&ClientFrame::Hello(hello)).await;
            expect_close_code(&mut conn, ctx.prompt(), 4503).await
        }
    ),
    case!(
        "ses-first-frame-not-hello",
        "session",
        Must,
        ["SES-1", "CLS-1"],
        "a first frame other than hello is closed with 4504",
        |ctx| {
            let mut conn = ctx.open("probe", Some(PROTOCOL_V1)).await?;
            conn.send(&ClientFrame::Ping(Heartbeat { nonce: 1 })).await;
            expect_close_code(&mut conn, ctx.prompt(), 4504).await
        }
    ),
    case!(
        "ses-auth-timeout",
        "session",
        Must,
        ["SES-2", "CLS-1"],
        "a silent connection is closed with 4005 after auth_timeout_ms",
        |ctx| {
            let mut conn = ctx.open("probe", Some(PROTOCOL_V1)).await?;
            let wait = ctx.scaled(Duration::from_millis(ctx.limits().auth_timeout_ms)) + ctx.prompt();
            expect_close_code(&mut conn, wait, 4005).await
        }
    ),
    case!(
        "ses-takeover",
        "session",
        Must,
        ["SES-10"],
        "a second connection of a device closes the first with 4003",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut first = ctx.connect("first", &desktop).await?;
            let _second = ctx.connect("second", &desktop).await?;
            let (code, _, _) = first.expect_close(ctx.prompt()).await?;
            ensure(code == 4003, "close 4003 session_replaced", code)
        }
    ),
    case!(
        "ses-ping-pong",
        "session",
        Must,
        ["HB-4"],
        "a client ping is answered by a pong with the same nonce",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            s.send(&ClientFrame::Ping(Heartbeat { nonce: 4242 })).await;
            match s.next_frame().await? {
                ServerFrame::Pong(p) => ensure(p.nonce == 4242, "pong nonce 4242", p.nonce),
                other => Err(fail("pong", other)),
            }
        }
    ),
    case!(
        "ses-second-hello",
        "session",
        Must,
        ["SES-4", "ERR-3"],
        "a second hello gets already_authenticated and the session continues",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let hello = Hello {
                protocol: PROTOCOL_V1.into(),
                token: desktop.tokens.access_token.clone(),
                resume: None,
                client: None,
            };
            s.send(&ClientFrame::Hello(hello)).await;
            match s.next_frame().await? {
                ServerFrame::Error(e) => ensure(
                    e.code.as_str() == "already_authenticated" && !e.fatal,
                    "non-fatal already_authenticated",
                    e,
                )?,
                other => return Err(fail("error already_authenticated", other)),
            }
            s.send(&ClientFrame::Ping(Heartbeat { nonce: 7 })).await;
            ensure(matches!(s.next_frame().await?, ServerFrame::Pong(_)), "pong after the error", "other")
        }
    ),
    case!(
        "ses-takeover-redelivers",
        "session",
        Must,
        ["SES-11", "SES-10"],
        "an entry in flight on a replaced connection is delivered again on the new one",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            sent(&mut phone, &ctx, &task("tk1", "{}", None)).await?;
            let mut first = ctx.connect("first", &desktop).await?;
            let (_, d) = delivery(&mut first).await?;
            let mut second = ctx.connect("second", &desktop).await?;
            let (code, _, _) = first.expect_close(ctx.prompt()).await?;
            ensure(code == 4003, "close 4003 session_replaced", code)?;
            let (_, again) = delivery(&mut second).await?;
            ensure(again.seq == d.seq && again.attempt == 2, "the same entry with attempt 2", &again)
        }
    ),
    case!(
        "ses-frames-after-hello",
        "session",
        Must,
        ["TRN-5", "SES-3"],
        "a ping sent right behind hello is answered after welcome",
        |ctx| {
            let (desktop, _) = ctx.pair().await?;
            let mut conn = ctx.open("desktop", Some(PROTOCOL_V1)).await?;
            conn.send(&ClientFrame::Hello(hello(&desktop, None))).await;
            conn.send(&ClientFrame::Ping(Heartbeat { nonce: 77 })).await;
            match conn.next(ctx.prompt()).await {
                Event::Frame(ServerFrame::Welcome(_)) => {}
                other => return Err(fail("welcome first", other)),
            }
            for _ in 0..16 {
                match conn.next(ctx.prompt()).await {
                    Event::Frame(ServerFrame::DeviceStatus(_)) => continue,
                    Event::Frame(ServerFrame::Pong(p)) => return ensure(p.nonce == 77, "pong 77", p.nonce),
                    other => return Err(fail("pong 77", other)),
                }
            }
            Err(fail("pong 77", "16 presence frames"))
        }
    ),
    case!(
        "ses-resume",
        "session",
        Must,
        ["SES-6", "SES-7"],
        "hello.resume naming the device's previous session gets resumed true and the same session_id",
        |ctx| {
            resumable_for_a_while(&ctx)?;
            let (desktop, _) = ctx.pair().await?;
            let id = ctx.connect("desktop", &desktop).await?.welcome().session_id.clone();
            let resume =
                Resume { session_id: id.clone(), inbox_epoch: None, stream_epoch: None, streams: vec![] };
            let s = ctx.connect_with("desktop-again", hello(&desktop, Some(resume))).await?;
            let w = s.welcome();
            ensure(w.resumed && w.session_id == id, format!("resumed true with session_id {id}"), w)
        }
    ),
    case!(
        "ses-resume-foreign-session",
        "session",
        Must,
        ["SES-6"],
        "resuming an unknown session or another device's session gets resumed false and a new session_id",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let phone = ctx.connect("mobile", &mobile).await?;
            let theirs = phone.welcome().session_id.clone();
            let mut seen = vec![theirs.clone()];
            for (label, id) in
                [("desktop", "ses-conformance-never-issued"), ("desktop-again", theirs.as_str())]
            {
                let resume =
                    Resume { session_id: id.into(), inbox_epoch: None, stream_epoch: None, streams: vec![] };
                let s = ctx.connect_with(label, hello(&desktop, Some(resume))).await?;
                let w = s.welcome();
                ensure(
                    !w.resumed && !seen.contains(&w.session_id) && w.session_id != id,
                    format!("resumed false and a session_id never assigned before (asked for {id})"),
                    w,
                )?;
                seen.push(w.session_id.clone());
            }
            Ok(())
        }
    ),
    case!(
        "ses-device-disconnect",
        "session",
        Must,
        ["SES-15", "SES-7"],
        "device_disconnect closes with 1000, the other device sees offline, and the session is not resumable",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let id = home.welcome().session_id.clone();
            presence(&mut phone, &desktop.device_id, Presence::Online, ctx.prompt()).await?;
            home.send(&ClientFrame::DeviceDisconnect(DeviceDisconnect { reason: Some("signed out".into()) }))
                .await;
            let (code, reason, _) = home.expect_close(ctx.prompt()).await?;
            ensure(code == 1000, "close 1000", (code, reason))?;
            presence(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await?;
            let resume =
                Resume { session_id: id.clone(), inbox_epoch: None, stream_epoch: None, streams: vec![] };
            let s = ctx.connect_with("desktop-again", hello(&desktop, Some(resume))).await?;
            ensure(!s.welcome().resumed && s.welcome().session_id != id, "resumed false", s.welcome())
        }
    ),
    case!(
        "ses-presence-snapshot",
        "session",
        Must,
        ["SES-8"],
        "right after welcome comes one device_status per other device, before any durable delivery",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let status = first_presence(&mut phone, &ctx).await?;
            ensure(
                status.0 == desktop.device_id && status.1 == Presence::Offline,
                "device_status of the (never connected) desktop: offline",
                &status,
            )?;
            sent(&mut phone, &ctx, &task("ps1", "{}", None)).await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let status = first_presence(&mut home, &ctx).await?;
            ensure(
                status.0 == mobile.device_id && status.1 == Presence::Online,
                "device_status of the phone: online",
                &status,
            )?;
            let (_, d) = delivery(&mut home).await?;
            ensure(d.id == "ps1", "then the queued delivery", &d)
        }
    ),
    case!(
        "ses-presence-changes",
        "session",
        Must,
        ["SES-9"],
        "a device coming online and going offline is announced to the other online devices",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let home = ctx.connect("desktop", &desktop).await?;
            presence(&mut phone, &desktop.device_id, Presence::Online, ctx.prompt()).await?;
            drop(home);
            presence(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await
        }
    ),
    case!(
        "ses-heartbeat-ping",
        "session",
        Must,
        ["HB-1"],
        "the relay pings an idle connection every heartbeat_ms, with a fresh nonce",
        |ctx| {
            let hb = ctx.limits().heartbeat_ms;
            at_most("heartbeat_ms", hb, 25_000)?;
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let slack = ms((hb / 10).min(2000) + 1000);
            let first = relay_ping(&mut s, ctx.scaled(ms(hb) + slack)).await?;
            if hb <= 6000 {
                let second = relay_ping(&mut s, ctx.scaled(ms(hb) + slack)).await?;
                ensure(second != first, "a fresh nonce in the next ping", (first, second))?;
            }
            Ok(())
        }
    ),
    case!(
        "ses-heartbeat-timeout",
        "session",
        Must,
        ["HB-3", "CLS-1"],
        "a client that sends nothing (not even pongs) for 2 x heartbeat_ms is closed with 4002",
        |ctx| {
            let hb = ctx.limits().heartbeat_ms;
            at_most("heartbeat_ms", hb, 10_000)?;
            let (desktop, _) = ctx.pair().await?;
            let mut s = ctx.connect("desktop", &desktop).await?;
            let started = Instant::now();
            let deadline =
                tokio::time::Instant::now() + ctx.scaled(ms(2 * hb + (hb / 2).max(1000))) + ctx.prompt();
            for _ in 0..256 {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match s.conn.next(left).await {
                    // Pings go unanswered on purpose.
                    Event::Frame(ServerFrame::Ping(_) | ServerFrame::DeviceStatus(_)) => continue,
                    Event::Frame(ServerFrame::Error(e)) if e.fatal => continue,
                    Event::Close(code, reason) => {
                        let waited = started.elapsed();
                        ensure(code == 4002, "close 4002 heartbeat_timeout", (code, reason))?;
                        return ensure(
                            waited + ctx.scaled(ms(150)) >= ms(2 * hb),
                            format!("not before 2 x heartbeat_ms ({} ms)", 2 * hb),
                            waited,
                        );
                    }
                    other => return Err(fail("close 4002", other)),
                }
            }
            Err(fail("close 4002", "256 frames"))
        }
    ),
];

/// Reads until a close and checks its code (an error frame may precede it).
pub(super) async fn expect_close_code(
    conn: &mut crate::conn::Conn,
    wait: Duration,
    code: u16,
) -> crate::case::CaseResult {
    for _ in 0..64 {
        match conn.next(wait).await {
            Event::Close(c, reason) => return ensure(c == code, format!("close {code}"), (c, reason)),
            Event::Frame(ServerFrame::Error(e)) if e.fatal => continue,
            Event::Frame(ServerFrame::DeviceStatus(_) | ServerFrame::Ping(_)) => continue,
            other => return Err(fail(format!("close {code}"), other)),
        }
    }
    Err(fail(format!("close {code}"), "64 frames without a close"))
}

/// Reads until `device_id` is reported with `status` (other presence frames are skipped, pings
/// answered).
pub(super) async fn presence(
    s: &mut Session,
    device_id: &str,
    status: Presence,
    wait: Duration,
) -> CaseResult {
    for _ in 0..64 {
        match s.conn.next(wait).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) if d.device_id == device_id && d.status == status => {
                return Ok(());
            }
            Event::Frame(ServerFrame::DeviceStatus(_)) => continue,
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            other => return Err(fail(format!("device_status {device_id} {status:?}"), other)),
        }
    }
    Err(fail(format!("device_status {device_id} {status:?}"), "64 other frames"))
}

/// The first frame after `welcome` (pings skipped), which must be a `device_status`.
async fn first_presence(s: &mut Session, ctx: &crate::case::Ctx) -> Result<(String, Presence), Miss> {
    for _ in 0..16 {
        match s.conn.next(ctx.prompt()).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) => return Ok((d.device_id, d.status)),
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            other => return Err(fail("device_status right after welcome", other)),
        }
    }
    Err(fail("device_status right after welcome", "16 pings"))
}

/// Waits for a relay `ping` (nothing else may arrive but presence), answers it, returns its nonce.
async fn relay_ping(s: &mut Session, wait: Duration) -> Result<u64, Miss> {
    let deadline = tokio::time::Instant::now() + wait;
    for _ in 0..64 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match s.conn.next(left).await {
            Event::Frame(ServerFrame::DeviceStatus(_)) => continue,
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await;
                return Ok(p.nonce);
            }
            other => return Err(fail(format!("a relay ping within {wait:?}"), other)),
        }
    }
    Err(fail("a relay ping", "64 presence frames"))
}

/// Skips a case that reconnects and expects its session to be resumable when sessions expire
/// almost at once (SES-7 only promises `session_expiry_ms`).
pub(super) fn resumable_for_a_while(ctx: &crate::case::Ctx) -> CaseResult {
    let expiry = ctx.limits().session_expiry_ms;
    if expiry < 2000 {
        return Err(Miss::Skip(format!("session_expiry_ms is {expiry}; the case needs 2000 to reconnect")));
    }
    Ok(())
}
