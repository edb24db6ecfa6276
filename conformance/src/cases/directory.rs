//! Identity cases, second part: the device directory, revocation and tenant isolation
//! (PROTOCOL.md sections 6 and 8.2), with the directory, revocation and presence helpers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use relaykit_protocol::client::{Ack, Heartbeat, Reject};
use relaykit_protocol::rest::{DeviceList, Registered};
use relaykit_protocol::server::{DeviceStatus, Presence, ReceiptState};
use relaykit_protocol::{ClientFrame, CloseCode, DeviceType, ServerFrame, Target};
use serde_json::{Value, json};

use super::common::{at_least, expect_session_close, next_skipping_receipts, random_u64, rest_error, send};
use super::registration::{KEY, device_body, register_body};
use super::tokens::{expect_refused, refresh};
use crate::case;
use crate::case::{Case, CaseResult, Ctx, Miss, Session, check_rest_schema, ensure, fail};
use crate::conn::Event;
use crate::http::Response;

/// `GET /v1/devices` as `token`: 200 and a schema-valid list.
async fn directory(ctx: &Ctx, token: &str) -> Result<DeviceList, Miss> {
    let r = ctx.rest("GET", "/v1/devices", Some(token), None).await?;
    ensure(r.status == 200, "200 from GET /v1/devices", (r.status, &r.body))?;
    check_rest_schema("rest/device_list", &r.body)?;
    serde_json::from_str(&r.body).map_err(|e| fail("a device list", e.to_string()))
}

fn ids_of(list: &DeviceList) -> BTreeSet<String> {
    list.devices.iter().map(|d| d.device_id.clone()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The directory of `token` lists exactly `expected`.
pub(super) async fn lists_exactly(ctx: &Ctx, token: &str, expected: &[&str]) -> CaseResult {
    let list = directory(ctx, token).await?;
    ensure(ids_of(&list) == set(expected), format!("exactly the devices {expected:?}"), ids_of(&list))
}

/// `DELETE /v1/devices/{id}` as `by`.
async fn revoke(ctx: &Ctx, by: &Registered, device_id: &str) -> Result<Response, Miss> {
    ctx.rest("DELETE", &format!("/v1/devices/{device_id}"), Some(&by.tokens.access_token), None).await
}

/// A revocation that must succeed: 204 with an empty body.
pub(super) async fn revoked(ctx: &Ctx, by: &Registered, device_id: &str) -> CaseResult {
    let r = revoke(ctx, by, device_id).await?;
    ensure(r.status == 204 && r.body.is_empty(), "204 with an empty body", (r.status, &r.body))
}

/// A further device joining the user of `device` with a fresh code.
pub(super) async fn join(
    ctx: &Ctx,
    device: &Registered,
    device_type: DeviceType,
) -> Result<Registered, Miss> {
    let code = ctx.pairing_code(device).await?;
    ctx.register(device_type, Some(&code)).await
}

/// A `new_task` with an empty object payload.
fn task(id: &str, to: Target) -> ClientFrame {
    ClientFrame::NewTask(send(id, to, "{}"))
}

/// The answer to a send (`accepted` or `error`), skipping receipts.
async fn answer(s: &mut Session) -> Result<ServerFrame, Miss> {
    next_skipping_receipts(s, 16, "accepted or error", "receipts only").await
}

/// The error answering a send, with the expected code and `ref_id`.
async fn send_error(
    s: &mut Session,
    id: &str,
    code: &str,
) -> Result<relaykit_protocol::server::ErrorFrame, Miss> {
    match answer(s).await? {
        ServerFrame::Error(e) => {
            ensure(
                e.code.as_str() == code && e.ref_id.as_deref() == Some(id) && !e.fatal,
                format!("non-fatal error {code} with ref_id {id}"),
                &e,
            )?;
            Ok(e)
        }
        other => Err(fail(format!("error {code}"), other)),
    }
}

/// Sends a ping and collects every `device_status` until its pong.
async fn presence_until_pong(s: &mut Session, nonce: u64, wait: Duration) -> Result<Vec<DeviceStatus>, Miss> {
    s.send(&ClientFrame::Ping(Heartbeat { nonce })).await;
    let mut seen = Vec::new();
    for _ in 0..256 {
        match s.conn.next(wait).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) => seen.push(d),
            Event::Frame(ServerFrame::Pong(p)) if p.nonce == nonce => return Ok(seen),
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            Event::Frame(_) => {}
            other => return Err(fail(format!("pong {nonce}"), other)),
        }
    }
    Err(fail(format!("pong {nonce}"), "256 other frames"))
}

/// Reads until `device_status` says `device_id` is `status`; returns every `device_status` seen.
async fn wait_status(
    s: &mut Session,
    device_id: &str,
    status: Presence,
    wait: Duration,
) -> Result<Vec<DeviceStatus>, Miss> {
    let mut seen = Vec::new();
    for _ in 0..256 {
        match s.conn.next(wait).await {
            Event::Frame(ServerFrame::DeviceStatus(d)) => {
                let done = d.device_id == device_id && d.status == status;
                seen.push(d);
                if done {
                    return Ok(seen);
                }
            }
            Event::Frame(ServerFrame::Ping(p)) => {
                s.send(&ClientFrame::Pong(Heartbeat { nonce: p.nonce })).await
            }
            Event::Frame(_) => {}
            other => return Err(fail(format!("device_status {device_id} {}", status.as_str()), other)),
        }
    }
    Err(fail(format!("device_status {device_id}"), "256 other frames"))
}

fn status_in(list: &DeviceList, device_id: &str) -> Option<Presence> {
    list.devices.iter().find(|d| d.device_id == device_id).map(|d| d.status)
}

pub(super) const CASES: &[Case] = &[
    // --- directory -----------------------------------------------------------------------------
    case!(
        "dir-lists-own-devices",
        "directory",
        Must,
        ["DIR-1", "ISO-2"],
        "GET /v1/devices lists exactly the caller's user's devices, never another user's",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let b_third = join(&ctx, &b_desk, DeviceType::Mobile).await?;
            let _online = ctx.connect("b-desktop", &b_desk).await?;
            lists_exactly(&ctx, &a_mob.tokens.access_token, &[&a_desk.device_id, &a_mob.device_id]).await?;
            lists_exactly(
                &ctx,
                &b_mob.tokens.access_token,
                &[&b_desk.device_id, &b_mob.device_id, &b_third.device_id],
            )
            .await
        }
    ),
    case!(
        "dir-registered-fields",
        "directory",
        Must,
        ["DIR-2"],
        "directory entries return device_name, device_type, platform, capabilities and public_key as registered",
        |ctx| {
            let mut body = device_body("desktop");
            body["device_name"] = json!("Ana's Mac \u{2713} \u{65e5}\u{672c} \"q\"");
            body["platform"] = json!("macos");
            body["capabilities"] = json!({"notifications": true, "nested": {"list": [1, "two", null]}});
            body["public_key"] = json!({"alg": "ed25519", "key": format!("{KEY}=")});
            let desktop = register_body(&ctx, &body).await?;
            let code = ctx.pairing_code(&desktop).await?;
            let mobile = ctx.register(DeviceType::Mobile, Some(&code)).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            let entry = |id: &str| {
                list.devices
                    .iter()
                    .find(|d| d.device_id == id)
                    .ok_or_else(|| fail(format!("device {id} listed"), &list))
            };
            let d = entry(&desktop.device_id)?;
            ensure(
                d.device_name == body["device_name"]
                    && d.device_type == DeviceType::Desktop
                    && d.platform == "macos"
                    && Value::Object(d.capabilities.clone()) == body["capabilities"]
                    && d.public_key.alg == "ed25519"
                    && d.public_key.key == format!("{KEY}="),
                "the desktop's fields as registered",
                (d, &body),
            )?;
            let m = entry(&mobile.device_id)?;
            ensure(
                m.device_name == "conformance mobile"
                    && m.device_type == DeviceType::Mobile
                    && m.platform == "relaykit-check"
                    && m.capabilities.is_empty()
                    && m.public_key.alg == "x25519"
                    && m.public_key.key == KEY,
                "the mobile's fields as registered, capabilities {}",
                m,
            )
        }
    ),
    case!(
        "dir-presence-status",
        "directory",
        Must,
        ["DIR-3"],
        "directory status is online exactly while a device has an authenticated connection",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &mobile.device_id) == Some(Presence::Online)
                    && status_in(&list, &desktop.device_id) == Some(Presence::Offline),
                "mobile online, desktop offline",
                &list,
            )?;
            let home = ctx.connect("desktop", &desktop).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &desktop.device_id) == Some(Presence::Online),
                "desktop online after its welcome",
                &list,
            )?;
            // The phone's snapshot already said "desktop offline": consume the change to online
            // first, so the offline awaited below is the one caused by the close.
            wait_status(&mut phone, &desktop.device_id, Presence::Online, ctx.prompt()).await?;
            drop(home);
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await?;
            let list = directory(&ctx, &mobile.tokens.access_token).await?;
            ensure(
                status_in(&list, &desktop.device_id) == Some(Presence::Offline)
                    && status_in(&list, &mobile.device_id) == Some(Presence::Online),
                "desktop offline after its connection closed",
                &list,
            )
        }
    ),
    // --- revocation ----------------------------------------------------------------------------
    case!(
        "rev-delete-204",
        "revocation",
        Must,
        ["REV-1", "REV-5"],
        "DELETE of a same-user device is 204; it leaves the directory, the presence snapshot and both kinds of target",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            lists_exactly(&ctx, &mobile.tokens.access_token, &[&mobile.device_id]).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            let snapshot = presence_until_pong(&mut phone, 5, ctx.prompt()).await?;
            ensure(
                snapshot.iter().all(|d| d.device_id != desktop.device_id),
                "no device_status for the revoked device",
                &snapshot,
            )?;
            phone.send(&task("to-device", Target::Device(desktop.device_id.clone()))).await;
            send_error(&mut phone, "to-device", "unknown_recipient").await?;
            phone.send(&task("to-role", Target::Role(DeviceType::Desktop))).await;
            send_error(&mut phone, "to-role", "no_recipient").await.map(drop)
        }
    ),
    case!(
        "rev-closes-socket-4501",
        "revocation",
        Must,
        ["REV-3", "SES-9"],
        "revocation closes the device's connection with 4501 within 2000 ms; the user's other device sees it offline",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut home = ctx.connect("desktop", &desktop).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let start = Instant::now();
            expect_session_close(&mut home, ctx.prompt(), CloseCode::DeviceRevoked).await?;
            let bound = at_least(&ctx, Duration::from_millis(2000));
            ensure(start.elapsed() <= bound, format!("the close within {bound:?}"), start.elapsed())?;
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await.map(drop)
        }
    ),
    case!(
        "rev-self",
        "revocation",
        Must,
        ["REV-1", "AUTH-9"],
        "a device can revoke itself (204); its access token is then 401 unauthorized",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &desktop, &desktop.device_id).await?;
            let r = ctx.rest("GET", "/v1/devices", Some(&desktop.tokens.access_token), None).await?;
            rest_error(&r, 401, "unauthorized")?;
            lists_exactly(&ctx, &mobile.tokens.access_token, &[&mobile.device_id]).await
        }
    ),
    case!(
        "rev-revoked-token-ws",
        "revocation",
        Must,
        ["SES-1", "AUTH-3"],
        "hello with an unexpired token of a revoked device is closed with 4501 device_revoked",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            expect_refused(&ctx, "desktop", &desktop.tokens.access_token, CloseCode::DeviceRevoked).await
        }
    ),
    case!(
        "rev-refresh-refused",
        "revocation",
        Must,
        ["TOK-7"],
        "the unspent refresh token of a revoked device is 401 invalid_refresh_token",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            rest_error(&refresh(&ctx, &desktop.tokens.refresh_token).await?, 401, "invalid_refresh_token")
                .map(drop)
        }
    ),
    case!(
        "rev-other-user-404",
        "revocation",
        Must,
        ["REV-2"],
        "DELETE of another user's, an unknown or a revoked device is the same 404 not_found; nothing changes",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let a_gone = join(&ctx, &a_desk, DeviceType::Mobile).await?;
            revoked(&ctx, &a_mob, &a_gone.device_id).await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let unknown = format!("dev-conformance-{:x}", random_u64());
            let mut answers = Vec::new();
            for id in [&b_desk.device_id, &unknown, &a_gone.device_id] {
                answers.push(rest_error(&revoke(&ctx, &a_mob, id).await?, 404, "not_found")?);
            }
            ensure(
                answers[0] == answers[1] && answers[1] == answers[2],
                "identical 404 bodies for another user's, unknown and revoked devices",
                &answers,
            )?;
            lists_exactly(&ctx, &b_desk.tokens.access_token, &[&b_desk.device_id, &b_mob.device_id]).await
        }
    ),
    case!(
        "rev-pending-revoked-receipts",
        "revocation",
        Must,
        ["REV-4", "RCPT-3"],
        "revocation turns the device's pending entries into revoked receipts: definite false if delivered, true if not",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            phone.send(&task("seen", Target::Role(DeviceType::Desktop))).await;
            let seen = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            {
                let mut home = ctx.connect("desktop", &desktop).await?;
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) if d.id == "seen" => {}
                    other => return Err(fail("new_task seen", other)),
                }
            }
            wait_status(&mut phone, &desktop.device_id, Presence::Offline, ctx.prompt()).await?;
            phone.send(&task("unseen", Target::Role(DeviceType::Desktop))).await;
            let unseen = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let mut got = Vec::new();
            for _ in 0..16 {
                if got.len() == 2 {
                    break;
                }
                match phone.next_frame().await? {
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Revoked => {
                        if let Some(seq) = r.seq {
                            phone.send(&ClientFrame::Ack(Ack { seq })).await;
                        }
                        got.push(r);
                    }
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Delivered => {}
                    other => return Err(fail("receipt revoked", other)),
                }
            }
            for (id, seq, definite) in [("seen", seen, false), ("unseen", unseen, true)] {
                let r = got
                    .iter()
                    .find(|r| r.id == id)
                    .ok_or_else(|| fail(format!("a revoked receipt for {id}"), &got))?;
                ensure(
                    r.recipient == desktop.device_id
                        && r.recipient_seq == seq
                        && r.definite == definite
                        && r.seq.is_some(),
                    format!("{id}: recipient, recipient_seq {seq}, definite {definite}, own seq"),
                    r,
                )?;
            }
            Ok(())
        }
    ),
    case!(
        "rev-sent-entries-survive",
        "revocation",
        Must,
        ["REV-6"],
        "messages a device sent before its revocation are still delivered",
        |ctx| {
            let (desktop, mobile) = ctx.pair().await?;
            {
                let mut home = ctx.connect("desktop", &desktop).await?;
                home.send(&task("before", Target::Role(DeviceType::Mobile))).await;
                match answer(&mut home).await? {
                    ServerFrame::Accepted(_) => {}
                    other => return Err(fail("accepted", other)),
                }
            }
            revoked(&ctx, &mobile, &desktop.device_id).await?;
            let mut phone = ctx.connect("mobile", &mobile).await?;
            match phone.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(
                        d.id == "before" && d.from == desktop.device_id,
                        "the revoked device's message",
                        &d,
                    )?;
                    phone.ack(d.seq).await;
                }
                other => return Err(fail("new_task before", other)),
            }
            phone.expect_nothing(ctx.scaled(Duration::from_millis(300))).await
        }
    ),
    // --- isolation -----------------------------------------------------------------------------
    case!(
        "iso-other-user-device-is-unknown",
        "isolation",
        Must,
        ["ISO-1", "TGT-2", "REV-5"],
        "a device target of another user, an unknown id and a revoked device get the same unknown_recipient",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let a_gone = join(&ctx, &a_desk, DeviceType::Desktop).await?;
            revoked(&ctx, &a_mob, &a_gone.device_id).await?;
            let (b_desk, _) = ctx.pair().await?;
            let mut b_home = ctx.connect("b-desktop", &b_desk).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            let unknown = format!("dev-conformance-{:x}", random_u64());
            let mut errors = Vec::new();
            for (id, target) in
                [("foreign", &b_desk.device_id), ("unknown", &unknown), ("revoked", &a_gone.device_id)]
            {
                phone.send(&task(id, Target::Device(target.clone()))).await;
                errors.push(send_error(&mut phone, id, "unknown_recipient").await?);
            }
            let shape = |e: &relaykit_protocol::server::ErrorFrame| (e.message.clone(), e.field.clone());
            ensure(
                shape(&errors[0]) == shape(&errors[1]) && shape(&errors[1]) == shape(&errors[2]),
                "the same message and field for all three",
                &errors,
            )?;
            phone.send(&task("own", Target::Device(a_desk.device_id.clone()))).await;
            match answer(&mut phone).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail("accepted for the user's own device", other)),
            }
            b_home.expect_nothing(ctx.scaled(Duration::from_millis(300))).await
        }
    ),
    case!(
        "iso-presence-own-user-only",
        "isolation",
        Must,
        ["ISO-2"],
        "presence snapshots and changes never mention another user's devices",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, b_mob) = ctx.pair().await?;
            let mut a_home = ctx.connect("a-desktop", &a_desk).await?;
            let mut seen = presence_until_pong(&mut a_home, 1, ctx.prompt()).await?;
            {
                let _b_home = ctx.connect("b-desktop", &b_desk).await?;
                let mut b_phone = ctx.connect("b-mobile", &b_mob).await?;
                wait_status(&mut b_phone, &b_desk.device_id, Presence::Online, ctx.prompt()).await?;
            }
            let a_phone = ctx.connect("a-mobile", &a_mob).await?;
            seen.extend(wait_status(&mut a_home, &a_mob.device_id, Presence::Online, ctx.prompt()).await?);
            drop(a_phone);
            seen.extend(wait_status(&mut a_home, &a_mob.device_id, Presence::Offline, ctx.prompt()).await?);
            seen.extend(presence_until_pong(&mut a_home, 2, ctx.prompt()).await?);
            ensure(
                seen.iter().all(|d| d.device_id == a_mob.device_id),
                "device_status only for the user's own other device",
                &seen,
            )
        }
    ),
    case!(
        "iso-spoofed-from",
        "isolation",
        Must,
        ["DLV-14", "ISO-2"],
        "a from member naming another user's device is ignored: the delivery's from is the sender",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let (b_desk, _) = ctx.pair().await?;
            let mut home = ctx.connect("a-desktop", &a_desk).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            let raw = format!(
                r#"{{"type":"new_task","id":"spoof","to":{{"role":"desktop"}},"from":"{}","from_type":"desktop","payload":{{}}}}"#,
                b_desk.device_id
            );
            phone.conn.send_text(&raw).await;
            match answer(&mut phone).await? {
                ServerFrame::Accepted(_) => {}
                other => return Err(fail("accepted", other)),
            }
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => ensure(
                    d.from == a_mob.device_id && d.from_type == DeviceType::Mobile,
                    "from = the sending phone, from_type mobile",
                    &d,
                ),
                other => Err(fail("new_task delivery", other)),
            }
        }
    ),
    case!(
        "iso-foreign-ack-no-effect",
        "isolation",
        Must,
        ["DLV-13", "DLV-21"],
        "another user's ack or reject of a seq in flight in this inbox is unknown_seq there and leaves the entry",
        |ctx| {
            let (a_desk, a_mob) = ctx.pair().await?;
            let b_desk = ctx.register(DeviceType::Desktop, None).await?;
            let mut phone = ctx.connect("a-mobile", &a_mob).await?;
            phone.send(&task("mine", Target::Role(DeviceType::Desktop))).await;
            let seq = match answer(&mut phone).await? {
                ServerFrame::Accepted(a) => a.recipients.first().map(|r| r.seq).unwrap_or_default(),
                other => return Err(fail("accepted", other)),
            };
            {
                let mut home = ctx.connect("a-desktop", &a_desk).await?;
                match home.next_frame().await? {
                    ServerFrame::NewTask(d) if d.seq == seq => {}
                    other => return Err(fail(format!("new_task seq {seq}"), other)),
                }
                let mut b_home = ctx.connect("b-desktop", &b_desk).await?;
                b_home.send(&ClientFrame::Ack(Ack { seq })).await;
                b_home.send(&ClientFrame::Reject(Reject { seq, reason: Some("not yours".into()) })).await;
                for _ in 0..2 {
                    match b_home.next_frame().await? {
                        ServerFrame::Error(e) => ensure(
                            e.code.as_str() == "unknown_seq" && e.ref_seq == Some(seq) && !e.fatal,
                            format!("unknown_seq with ref_seq {seq}"),
                            &e,
                        )?,
                        other => return Err(fail("error unknown_seq", other)),
                    }
                }
            }
            let mut home = ctx.connect("a-desktop-again", &a_desk).await?;
            match home.next_frame().await? {
                ServerFrame::NewTask(d) => {
                    ensure(d.seq == seq && d.attempt == 2, "the entry redelivered, attempt 2", &d)?;
                    home.ack(d.seq).await;
                }
                other => return Err(fail("the entry redelivered", other)),
            }
            for _ in 0..8 {
                match phone.next_frame().await? {
                    ServerFrame::Receipt(r) if r.state == ReceiptState::Delivered => {}
                    ServerFrame::Receipt(r) => {
                        return ensure(
                            r.state == ReceiptState::Acked,
                            "the first terminal receipt is acked",
                            &r,
                        );
                    }
                    other => return Err(fail("receipt acked", other)),
                }
            }
            Err(fail("receipt acked", "delivered receipts only"))
        }
    ),
];
