//! Attaching connections to devices (PROTOCOL.md section 7): hello checks against the device
//! and its token family, welcome, presence, takeover, resume, detach.

use std::sync::Arc;

use relaykit_protocol::client::Hello;
use relaykit_protocol::rest::AccessClaims;
use relaykit_protocol::server::{DeviceStatus, Presence, Welcome};
use relaykit_protocol::{CloseCode, DeviceType, ServerFrame, encode};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

use super::{CloseRequest, Outbound, Relay, SessionHandle, World, now_ms};
use crate::store::{Mutation, Table};

/// Who is on the other end of a connection, fixed at `welcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCtx {
    /// The device.
    pub device_id: String,
    /// Its user.
    pub user_id: String,
    /// Its type.
    pub device_type: DeviceType,
    /// This connection.
    pub conn_id: u64,
    /// Token family the session authenticated with (revocation closes it).
    pub family: String,
}

/// Why `hello` was refused; each maps to a close code (PROTOCOL.md 6.4 / 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachError {
    /// Token names no device or a device of another user (4500).
    Unauthorized,
    /// Device revoked (4501).
    DeviceRevoked,
    /// Token family revoked (4502).
    SessionRevoked,
    /// The relay is shutting down (4000).
    ShuttingDown,
}

impl AttachError {
    /// Close code.
    pub fn close_code(self) -> CloseCode {
        match self {
            AttachError::Unauthorized => CloseCode::Unauthorized,
            AttachError::DeviceRevoked => CloseCode::DeviceRevoked,
            AttachError::SessionRevoked => CloseCode::SessionRevoked,
            AttachError::ShuttingDown => CloseCode::ServerRestarting,
        }
    }
}

/// What a new session gets back from [`Relay::attach`].
#[derive(Debug)]
pub struct Attached {
    /// Identity of the session.
    pub ctx: SessionCtx,
    /// Frames for the socket (welcome first), fed by the relay from now on.
    pub frames: mpsc::Receiver<Outbound>,
    /// Close requests for this connection.
    pub close: watch::Receiver<CloseRequest>,
}

/// Frames that may wait for a slow socket before the relay calls it a slow consumer.
const OUTBOUND_QUEUE: usize = 256;

impl Relay {
    /// Checks the token's device and family, then attaches a connection: takeover of an older
    /// connection, `welcome`, presence snapshot, live replay, inbox pump.
    pub fn attach(
        &self,
        claims: &AccessClaims,
        hello: &Hello,
        token_expires_at_ms: u64,
    ) -> Result<Attached, AttachError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(AttachError::ShuttingDown);
        }
        let mut world = self.lock();
        // Checked under the same lock as the attach: a revocation cannot slip in between.
        check_device_in(&world, claims)?;
        world.next_conn_id += 1;
        let conn_id = world.next_conn_id;
        let now = Instant::now();
        let expiry = Duration::from_millis(self.limits.session_expiry_ms);
        let devices = world.user_devices.get(&claims.sub).map_or(0, Vec::len);
        // Counted from what the relay holds, not from what the client lists: distinct streams of
        // this user, each at most its retained events plus a gap notice.
        let listed: std::collections::BTreeSet<&str> =
            hello.resume.iter().flat_map(|r| r.streams.iter().map(|p| p.stream.as_str())).collect();
        let replay: usize = listed.iter().map(|st| world.streams.retained(&claims.sub, st) + 1).sum();
        let device = world.devices.get_mut(&claims.did).expect("checked above");
        let resumed = match (&hello.resume, &device.last_session) {
            (Some(r), Some((id, ended))) => *id == r.session_id && ended.is_none_or(|t| now < t + expiry),
            _ => false,
        };
        let session_id = match (&hello.resume, resumed) {
            (Some(r), true) => r.session_id.clone(),
            _ => crate::auth::random_id("ses"),
        };
        // Room for everything this attach queues at once (welcome, presence snapshot, a full
        // replay window per listed stream, a full in-flight window) on top of the slow-consumer
        // allowance: a resume must not be mistaken for a slow consumer (LIVE-9, LIVE-7).
        let in_flight = usize::try_from(self.limits.max_in_flight).unwrap_or(usize::MAX);
        let burst = replay.saturating_add(in_flight).saturating_add(devices);
        let (tx, frames) =
            mpsc::channel(OUTBOUND_QUEUE.saturating_add(burst).min(tokio::sync::Semaphore::MAX_PERMITS));
        let (close_tx, close) = watch::channel(None);
        let handle =
            SessionHandle { conn_id, session_id: session_id.clone(), frames: tx, close: Arc::new(close_tx) };
        let previous = device.session.replace(handle.clone());
        device.last_session = Some((session_id.clone(), None));
        device.record.last_seen_at_ms = Some(now_ms());
        let ctx = SessionCtx {
            device_id: claims.did.clone(),
            user_id: claims.sub.clone(),
            device_type: claims.dty,
            conn_id,
            family: claims.fam.clone(),
        };
        if let Some(old) = &previous {
            // Takeover: the old connection stops before the new one gets deliveries; what was
            // in flight on it goes out again on the new one.
            old.close_with(CloseCode::SessionReplaced, "a newer connection of this device took over");
            device.inbox.release(old.conn_id);
        } else {
            self.metrics.connections(claims.dty).inc();
            self.metrics.connections_opened_total.inc();
        }
        let welcome = Welcome {
            session_id,
            resumed,
            user_id: ctx.user_id.clone(),
            device_id: ctx.device_id.clone(),
            device_type: ctx.device_type,
            inbox_epoch: self.inbox_epoch.clone(),
            stream_epoch: self.stream_epoch.clone(),
            server_time_ms: now_ms(),
            token_expires_at_ms,
            limits: self.limits.clone(),
        };
        handle.push(encode(&ServerFrame::Welcome(welcome)));
        for other in world.active_devices_of(&ctx.user_id).filter(|d| d.record.device_id != ctx.device_id) {
            handle.push(encode(&presence(
                other.record.device_id.clone(),
                other.record.device_type,
                other.session.is_some(),
            )));
        }
        if previous.is_none() {
            broadcast_presence(&world, &ctx, true);
        }
        if let Some(resume) = &hello.resume {
            self.replay(&world, &ctx, &handle, resume);
        }
        self.pump(&mut world, &ctx.device_id);
        Ok(Attached { ctx, frames, close })
    }

    /// Steps 7 to 9 of the validation table (PROTOCOL.md 6.4.1, before the expiry check):
    /// the device record (user, type and family: invalid), then device and family revocation.
    pub fn check_device(&self, claims: &AccessClaims) -> Result<(), AttachError> {
        check_device_in(&self.lock(), claims)
    }

    /// A connection ended. `deliberate`: after `device_disconnect` (not resumable).
    pub fn detach(&self, ctx: &SessionCtx, deliberate: bool) {
        let mut world = self.lock();
        let drop_in_flight = self.mutated(crate::mutant::Mutant::DropInboxOnReconnect);
        let Some(device) = world.devices.get_mut(&ctx.device_id) else { return };
        if drop_in_flight {
            // Mutant: what was in flight is forgotten instead of redelivered.
            let lost: Vec<u64> = device
                .inbox
                .slots()
                .filter(|s| s.in_flight.is_some_and(|(c, _)| c == ctx.conn_id))
                .map(|s| s.record.seq)
                .collect();
            for seq in lost {
                device.inbox.remove(seq);
            }
        }
        device.inbox.release(ctx.conn_id);
        if device.session.as_ref().is_none_or(|s| s.conn_id != ctx.conn_id) {
            return; // taken over: the device stays online through the newer connection
        }
        let handle = device.session.take().expect("checked");
        device.last_session = (!deliberate).then(|| (handle.session_id, Some(Instant::now())));
        device.record.last_seen_at_ms = Some(now_ms());
        let record = device.record.clone();
        drop(self.store.submit(vec![Mutation::put(Table::Devices, record.device_id.clone(), &record)]));
        self.metrics.connections(ctx.device_type).dec();
        broadcast_presence(&world, ctx, false);
    }

    /// Closes every connection of `device_id` with `code` (revocation, reuse detection).
    pub(crate) fn close_device(world: &World, device_id: &str, code: CloseCode, message: &str) {
        if let Some(s) = world.devices.get(device_id).and_then(|d| d.session.as_ref()) {
            s.close_with(code, message);
        }
    }

    /// True while `ctx` is still the attached connection of its device.
    pub fn is_current(&self, ctx: &SessionCtx) -> bool {
        self.lock()
            .devices
            .get(&ctx.device_id)
            .and_then(|d| d.session.as_ref())
            .is_some_and(|s| s.conn_id == ctx.conn_id)
    }
}

fn presence(device_id: String, device_type: DeviceType, online: bool) -> ServerFrame {
    ServerFrame::DeviceStatus(DeviceStatus {
        device_id,
        device_type,
        status: if online { Presence::Online } else { Presence::Offline },
        at_ms: now_ms(),
    })
}

/// Tells the user's other attached devices that `ctx`'s device came or went.
fn broadcast_presence(world: &World, ctx: &SessionCtx, online: bool) {
    let text = encode(&presence(ctx.device_id.clone(), ctx.device_type, online));
    for other in world.active_devices_of(&ctx.user_id).filter(|d| d.record.device_id != ctx.device_id) {
        if let Some(s) = &other.session {
            s.push(text.clone());
        }
    }
}

/// Steps 7-9 of token validation (PROTOCOL.md 6.4): the device exists, belongs to the token's
/// user with its type and family, and neither it nor the family is revoked.
fn check_device_in(world: &World, claims: &AccessClaims) -> Result<(), AttachError> {
    let device = world.devices.get(&claims.did).ok_or(AttachError::Unauthorized)?;
    if device.record.user_id != claims.sub
        || device.record.device_type != claims.dty
        || device.record.family != claims.fam
    {
        return Err(AttachError::Unauthorized);
    }
    if device.record.revoked_at_ms.is_some() {
        return Err(AttachError::DeviceRevoked);
    }
    if world.families.get(&claims.fam).is_none_or(|f| f.revoked) {
        return Err(AttachError::SessionRevoked);
    }
    Ok(())
}
