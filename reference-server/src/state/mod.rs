//! The relay's logic, in memory: users, devices, inboxes, live streams and the sessions attached
//! to them. Durable changes go to the [`Store`] as ordered batches; anything a client is told is
//! durable (`accepted`, REST results) is said only after its batch committed.
//!
//! One mutex guards the whole [`World`]. Every critical section is short and never awaits, and
//! the store commit (the slow part) happens outside it. A single lock keeps the rules readable;
//! per-user sharding would be the next step for throughput (users never interact).
//!
//! Files: [`inbox`] (one inbox, pure), [`records`] (persisted rows), `delivery` (durable sends,
//! acks, receipts, expiry), `live` (streams and replay), `sessions` (attach/detach, presence,
//! takeover), `directory` (registration, pairing, tokens, revocation).

pub mod inbox;
pub mod records;

mod delivery;
mod directory;
mod live;
mod sessions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use relaykit_protocol::server::ErrorFrame;
use relaykit_protocol::{CloseCode, ErrorCode, Limits};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};

pub use delivery::{Outcome, Settle};
pub use directory::{DirectoryError, RegistrationInput};
pub use sessions::{AttachError, Attached, SessionCtx};

use crate::auth::TokenIssuer;
use crate::metrics::Metrics;
use crate::mutant::Mutant;
use crate::store::{Mutation, Store, StoreError, Table};
use inbox::{Inbox, Slot};
use records::*;

/// What a session task is asked to do by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// Write this text frame.
    Frame(String),
}

/// Ask a session to close: the code, and the `error` frame to send first (CLS-2).
pub type CloseRequest = Option<(CloseCode, Option<ErrorFrame>)>;

/// How the relay reaches one connection.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique per connection; in-flight entries remember it.
    pub conn_id: u64,
    /// Session id given in `welcome`.
    pub session_id: String,
    /// Frames to write, bounded: a consumer that falls this far behind is closed (4004).
    pub frames: mpsc::Sender<Outbound>,
    /// Close requests (takeover, revocation, ack timeout, overload, shutdown).
    pub close: Arc<watch::Sender<CloseRequest>>,
}

impl SessionHandle {
    /// Queues a frame; a full queue means a slow consumer, which is closed with 4004.
    fn push(&self, text: String) {
        if self.frames.try_send(Outbound::Frame(text)).is_err() {
            self.close_with(CloseCode::Overloaded, "slow consumer: outbound queue full");
        }
    }

    /// Asks the session to close with the error frame of `code` (first request wins).
    pub fn close_with(&self, code: CloseCode, message: &str) {
        self.request_close(code, error_code_of(code).map(|c| ErrorFrame::new(c, message)));
    }

    /// Asks the session to close, sending `error` first (first request wins).
    pub fn request_close(&self, code: CloseCode, error: Option<ErrorFrame>) {
        self.close.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some((code, error));
            true
        });
    }
}

fn error_code_of(close: CloseCode) -> Option<ErrorCode> {
    ErrorCode::ALL.iter().copied().find(|e| e.close_code() == Some(close))
}

/// A device and its live state.
#[derive(Debug)]
pub(crate) struct Device {
    pub(crate) record: DeviceRecord,
    pub(crate) inbox: Inbox,
    // The connection currently attached, if any.
    pub(crate) session: Option<SessionHandle>,
    // Last session id and when its connection ended (None while attached); None after a
    // deliberate disconnect, which makes it non-resumable.
    pub(crate) last_session: Option<(String, Option<Instant>)>,
}

/// An idempotency record and whether its batch has committed yet.
#[derive(Debug)]
pub(crate) struct Idempotency {
    pub(crate) record: IdempotencyRecord,
    // Resolves when the original send's batch is durable (true) or failed (false); a resend
    // arriving before that waits on it (an `accepted` is never early).
    pub(crate) committed: watch::Receiver<Option<bool>>,
}

/// Everything the relay knows.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) users: HashMap<String, UserRecord>,
    pub(crate) devices: HashMap<String, Device>,
    // Device ids per user, in registration order.
    pub(crate) user_devices: HashMap<String, Vec<String>>,
    pub(crate) pairing: HashMap<String, PairingRecord>,
    pub(crate) families: HashMap<String, FamilyRecord>,
    // Refresh tokens by hash.
    pub(crate) refresh: HashMap<String, RefreshRecord>,
    // Idempotency records by `<sender>/<id>`.
    pub(crate) idempotency: HashMap<String, Idempotency>,
    pub(crate) streams: live::Streams,
    pub(crate) next_conn_id: u64,
}

/// The relay: state, store, token issuer, limits.
pub struct Relay {
    // Handle to itself for background tasks (receipts settle after their commit).
    me: Weak<Relay>,
    world: Mutex<World>,
    store: Arc<dyn Store>,
    issuer: TokenIssuer,
    limits: Limits,
    policy: Policy,
    metrics: Arc<Metrics>,
    // Identity of the durable store; changes only if it was lost (new database).
    inbox_epoch: String,
    // New on every start: live state does not survive a restart.
    stream_epoch: String,
    // Set when shutdown began: new sessions are refused with 4000.
    shutting_down: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("inbox_epoch", &self.inbox_epoch).finish_non_exhaustive()
    }
}

/// Settings of the relay beyond the protocol limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether registration without a pairing code creates users.
    pub registration_open: bool,
    /// Pairing code lifetime.
    pub pairing_code_ttl_ms: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_ms: u64,
    /// Whether `POST /v1/test/tokens` is on.
    pub test_tokens: bool,
    /// A deliberate violation (always `None` outside the conformance self-test).
    pub mutant: Option<Mutant>,
}

/// Wall clock, Unix ms.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Relay {
    /// Builds the relay from what the store holds.
    pub fn open(
        store: Arc<dyn Store>,
        issuer: TokenIssuer,
        limits: Limits,
        policy: Policy,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Relay>, StoreError> {
        let snapshot = store.load()?;
        let mut world = World::default();
        let parse = |table: Table, key: &str, value: &str| {
            StoreError::Sqlite(format!("corrupt row {}/{key}: {value}", table.name()))
        };
        macro_rules! rows {
            ($table:expr, $ty:ty) => {
                snapshot.rows($table).map(|(k, v)| {
                    serde_json::from_str::<$ty>(v).map(|r| (k.clone(), r)).map_err(|_| parse($table, k, v))
                })
            };
        }
        for row in rows!(Table::Users, UserRecord) {
            let (k, r) = row?;
            world.users.insert(k, r);
        }
        let seqs: HashMap<String, u64> = rows!(Table::InboxSeqs, u64).collect::<Result<_, _>>()?;
        for row in rows!(Table::Devices, DeviceRecord) {
            let (k, r) = row?;
            world.user_devices.entry(r.user_id.clone()).or_default().push(k.clone());
            let inbox = Inbox::new(seqs.get(&k).copied().unwrap_or(1));
            world.devices.insert(k, Device { record: r, inbox, session: None, last_session: None });
        }
        for devices in world.user_devices.values_mut() {
            devices.sort_by_key(|d| d.clone());
        }
        for row in rows!(Table::PairingCodes, PairingRecord) {
            let (k, r) = row?;
            world.pairing.insert(k, r);
        }
        for row in rows!(Table::Families, FamilyRecord) {
            let (k, r) = row?;
            world.families.insert(k, r);
        }
        for row in rows!(Table::RefreshTokens, RefreshRecord) {
            let (k, r) = row?;
            world.refresh.insert(k, r);
        }
        let (now, now_wall) = (Instant::now(), now_ms());
        for row in rows!(Table::Entries, EntryRecord) {
            let (_, record) = row?;
            let remaining = record.expires_at_ms.saturating_sub(now_wall);
            if let Some(device) = world.devices.get_mut(&record.device_id) {
                device.inbox.insert(Slot {
                    expires_at: now + Duration::from_millis(remaining),
                    record,
                    committed: true,
                    in_flight: None,
                    not_before: None,
                    created: now,
                });
            }
        }
        for row in rows!(Table::Idempotency, IdempotencyRecord) {
            let (k, record) = row?;
            let (_, committed) = watch::channel(Some(true));
            world.idempotency.insert(k, Idempotency { record, committed });
        }
        let epoch = snapshot.rows(Table::Meta).find(|(k, _)| *k == "inbox_epoch").map(|(_, v)| v.clone());
        let inbox_epoch = match epoch.and_then(|v| serde_json::from_str::<String>(&v).ok()) {
            Some(e) => e,
            None => {
                let e = crate::auth::random_id("inbox");
                // Written lazily: nothing was accepted into this store yet.
                drop(store.submit(vec![Mutation::put(Table::Meta, "inbox_epoch", &e)]));
                e
            }
        };
        let relay = Arc::new_cyclic(|me| Relay {
            me: me.clone(),
            world: Mutex::new(world),
            store,
            issuer,
            limits,
            policy,
            metrics,
            inbox_epoch,
            stream_epoch: crate::auth::random_id("streams"),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        });
        let depth: usize = relay.lock().devices.values().map(|d| d.inbox.len()).sum();
        relay.metrics.inbox_depth.set(depth as i64);
        Ok(relay)
    }

    /// True when running as the given mutant (conformance self-test only).
    pub(crate) fn mutated(&self, mutant: Mutant) -> bool {
        self.policy.mutant == Some(mutant)
    }

    pub(crate) fn self_ref(&self) -> Weak<Relay> {
        self.me.clone()
    }

    /// The limits advertised and enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Relay settings.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The token issuer.
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Inbox epoch (welcome).
    pub fn inbox_epoch(&self) -> &str {
        &self.inbox_epoch
    }

    /// Waits until everything submitted is durable (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await.unwrap_or(Err(StoreError::Stopped))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock would be a bug; keep serving rather than cascade.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every session with `server_restarting` (4000) and `retry_after_ms`.
    pub fn close_all_restarting(&self, retry_after_ms: u64) {
        // Sessions that say hello from now on are refused with 4000 as well.
        self.shutting_down.store(true, std::sync::atomic::Ordering::Relaxed);
        let world = self.lock();
        for device in world.devices.values() {
            if let Some(s) = &device.session {
                let mut error = ErrorFrame::new(ErrorCode::ServerRestarting, "relay restarting");
                error.retry_after_ms = Some(retry_after_ms);
                s.request_close(CloseCode::ServerRestarting, Some(error));
            }
        }
    }

    /// Number of attached sessions.
    pub fn session_count(&self) -> usize {
        self.lock().devices.values().filter(|d| d.session.is_some()).count()
    }
}

impl World {
    /// Active (not revoked) device of `user`.
    pub(crate) fn active_device(&self, user_id: &str, device_id: &str) -> Option<&Device> {
        self.devices
            .get(device_id)
            .filter(|d| d.record.user_id == user_id && d.record.revoked_at_ms.is_none())
    }

    /// Ids of the user's active devices.
    pub(crate) fn active_devices_of<'a>(&'a self, user_id: &str) -> impl Iterator<Item = &'a Device> + 'a {
        let ids = self.user_devices.get(user_id).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|id| self.devices.get(id)).filter(|d| d.record.revoked_at_ms.is_none())
    }
}
