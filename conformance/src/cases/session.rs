//! Session cases: hello/welcome, version, auth timeout, first frame, takeover, heartbeat.

use std::time::Duration;

use relaykit_protocol::client::{Heartbeat, Hello};
use relaykit_protocol::{ClientFrame, PROTOCOL_V1, ServerFrame};

use crate::case;
use crate::case::{Case, ensure, fail};
use crate::conn::Event;

pub(super) const CASES: &[Case] = &[
    case!(
        "ses-welcome",
        "session",
        Must,
        ["SES-1", "DISC-2"],
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
        ["VER-5"],
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
        ["SES-2"],
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
        ["SES-3"],
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
        ["SES-9"],
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
        ["HB-2"],
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
        ["ERR-6"],
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
