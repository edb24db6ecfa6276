//! [`FaultHandle`]: the shared state between the control surfaces (library calls, HTTP API)
//! and the connection pumps: active faults, open connections, counters, upstream address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::fault::{Direction, Fault, FaultError, FaultSpec, Selector, fraction_key};
use crate::stats::{Counters, ProxyStats, bump};

/// A fault in force, as listed by [`FaultHandle::list`] and `GET /faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    /// Id returned when it was added.
    pub id: u64,
    /// The fault.
    pub spec: FaultSpec,
    /// Time left before it removes itself (`None`: until removed).
    pub remaining_ms: Option<u64>,
}

/// How a connection is to end when its pumps are told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// SO_LINGER 0 and close: the peers see a TCP RST.
    Reset,
    /// Ordinary close: the peers see FIN.
    Close,
}

/// A connection as the faults see it.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) number: u64,
    pub(crate) fraction_key: f64,
    /// `did` of the token in the connection's `hello`, once seen.
    pub(crate) device: OnceLock<String>,
    pub(crate) kill: watch::Sender<Option<Kill>>,
}

impl ConnInfo {
    pub(crate) fn new(seed: u64, number: u64) -> Self {
        let (kill, _) = watch::channel(None);
        ConnInfo { number, fraction_key: fraction_key(seed, number), device: OnceLock::new(), kill }
    }

    fn selected_by(&self, select: &Selector) -> bool {
        select.matches(self.number, self.device.get().map(String::as_str), self.fraction_key)
    }

    /// Tells both pumps to stop; the first kill wins. True if this call decided it.
    pub(crate) fn stop(&self, how: Kill) -> bool {
        self.kill.send_if_modified(|k| {
            let first = k.is_none();
            if first {
                *k = Some(how);
            }
            first
        })
    }
}

/// The faults in force for one connection and direction, combined.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Effective {
    /// Sums of the latency faults.
    pub(crate) latency_ms: u64,
    pub(crate) jitter_ms: u64,
    /// Chance of a retransmission delay, and the longest retransmission timeout in force.
    pub(crate) retransmit: f64,
    pub(crate) rto_ms: u64,
    /// Slowest bandwidth fault.
    pub(crate) bandwidth: Option<u64>,
    /// Independent faults of a kind combine as 1 - prod(1 - p).
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) reset: f64,
    /// Partition or half-open.
    pub(crate) black_hole: bool,
    /// Slowest slow-reader fault.
    pub(crate) slow_reader: Option<u64>,
    /// When the earliest of the contributing faults expires: recompute then.
    pub(crate) valid_until: Option<Instant>,
}

fn either(a: f64, b: f64) -> f64 {
    // Clamped because add() does not validate: a library caller may pass anything.
    let b = if b.is_nan() { 0.0 } else { b.clamp(0.0, 1.0) };
    1.0 - (1.0 - a) * (1.0 - b)
}

fn min_some(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[derive(Debug)]
struct Entry {
    id: u64,
    spec: FaultSpec,
    expires: Option<Instant>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    faults: Mutex<Vec<Entry>>,
    next_id: Mutex<u64>,
    /// Bumped on every change of the fault set; pumps wait on it to re-read their faults.
    pub(crate) generation: watch::Sender<u64>,
    upstream: Mutex<Option<SocketAddr>>,
    conns: Mutex<HashMap<u64, Arc<ConnInfo>>>,
    pub(crate) counters: Counters,
}

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Control of a running proxy: faults, statistics, connection resets, upstream address.
/// Cheap to clone; all clones control the same proxy.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    pub(crate) inner: Arc<Inner>,
}

impl Default for FaultHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultHandle {
    /// A handle with no faults, for [`crate::run`].
    pub fn new() -> Self {
        let inner = Inner {
            faults: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            generation: watch::channel(0).0,
            upstream: Mutex::new(None),
            conns: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        };
        FaultHandle { inner: Arc::new(inner) }
    }

    fn changed(&self) {
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// Adds a fault and returns its id. Does not validate (call [`FaultSpec::validate`] or use
    /// [`FaultHandle::try_add`]); out-of-range probabilities are clamped. A spec with
    /// `duration_ms` removes itself when that elapses. `reset` without a probability resets
    /// the selected open connections now and is not kept.
    pub fn add(&self, spec: FaultSpec) -> u64 {
        let id = {
            let mut next = lock(&self.inner.next_id);
            *next += 1;
            *next
        };
        if spec.fault == (Fault::Reset { probability: None }) {
            self.reset_connections(&spec.select);
            return id;
        }
        let duration = spec.duration_ms.map(Duration::from_millis);
        let expires = duration.map(|d| Instant::now() + d);
        lock(&self.inner.faults).push(Entry { id, spec, expires });
        self.changed();
        // Expiry is also checked lazily on every read; the timer only wakes pumps that wait
        // for the fault to end (a stopped reader, an end of stream held by a black hole).
        if let (Some(d), Ok(rt)) = (duration, tokio::runtime::Handle::try_current()) {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            rt.spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(inner) = weak.upgrade() {
                    FaultHandle { inner }.remove(id);
                }
            });
        }
        id
    }

    /// Validates, then adds.
    pub fn try_add(&self, spec: FaultSpec) -> Result<u64, FaultError> {
        spec.validate()?;
        Ok(self.add(spec))
    }

    /// Removes a fault; false if no fault has that id (or it expired).
    pub fn remove(&self, id: u64) -> bool {
        let removed = {
            let mut faults = lock(&self.inner.faults);
            let before = faults.len();
            faults.retain(|e| e.id != id);
            faults.len() != before
        };
        if removed {
            self.changed();
        }
        removed
    }

    /// Removes every fault.
    pub fn clear(&self) {
        lock(&self.inner.faults).clear();
        self.changed();
    }

    /// The faults in force, oldest first.
    pub fn list(&self) -> Vec<ActiveFault> {
        let now = Instant::now();
        let mut faults = lock(&self.inner.faults);
        faults.retain(|e| e.expires.is_none_or(|t| t > now));
        faults
            .iter()
            .map(|e| ActiveFault {
                id: e.id,
                spec: e.spec.clone(),
                remaining_ms: e.expires.map(|t| (t - now).as_millis() as u64),
            })
            .collect()
    }

    /// Counters since the proxy started.
    pub fn stats(&self) -> ProxyStats {
        self.inner.counters.snapshot()
    }

    /// Resets (TCP RST to both peers) every open connection the selector matches; returns how
    /// many.
    pub fn reset_connections(&self, select: &Selector) -> usize {
        let conns = lock(&self.inner.conns);
        let mut n = 0;
        for conn in conns.values().filter(|c| c.selected_by(select)) {
            if conn.stop(Kill::Reset) {
                bump(&self.inner.counters.resets);
                n += 1;
            }
        }
        n
    }

    /// New connections go to this address from now on (open ones stay where they are).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *lock(&self.inner.upstream) = Some(upstream);
    }

    /// The address new connections go to.
    pub fn upstream(&self) -> Option<SocketAddr> {
        *lock(&self.inner.upstream)
    }
}

impl Inner {
    pub(crate) fn register(&self, conn: Arc<ConnInfo>) {
        lock(&self.conns).insert(conn.number, conn);
        bump(&self.counters.connections_total);
        bump(&self.counters.connections_open);
    }

    pub(crate) fn unregister(&self, number: u64) {
        lock(&self.conns).remove(&number);
        self.counters.connections_open.fetch_sub(1, Relaxed);
    }

    /// Stops every connection (proxy shutdown).
    pub(crate) fn stop_all(&self, how: Kill) {
        lock(&self.conns).values().for_each(|c| {
            c.stop(how);
        });
    }

    pub(crate) fn upstream(&self) -> Option<SocketAddr> {
        *lock(&self.upstream)
    }

    /// The faults in force for traffic of `conn` flowing in `flow`, combined.
    pub(crate) fn effective(&self, conn: &ConnInfo, flow: Direction, now: Instant) -> Effective {
        let mut eff = Effective::default();
        for e in lock(&self.faults).iter() {
            if e.expires.is_some_and(|t| t <= now) || !e.spec.direction.covers(flow) {
                continue;
            }
            if !conn.selected_by(&e.spec.select) {
                continue;
            }
            if let Some(t) = e.expires {
                eff.valid_until = Some(eff.valid_until.map_or(t, |v| v.min(t)));
            }
            match e.spec.fault {
                Fault::Latency { ms, jitter_ms } => {
                    eff.latency_ms = eff.latency_ms.saturating_add(ms);
                    eff.jitter_ms = eff.jitter_ms.saturating_add(jitter_ms.min(ms));
                }
                Fault::Bandwidth { bytes_per_s } => {
                    eff.bandwidth = min_some(eff.bandwidth, bytes_per_s.max(1))
                }
                Fault::Retransmit { probability, rto_ms } => {
                    eff.retransmit = either(eff.retransmit, probability);
                    eff.rto_ms = eff.rto_ms.max(rto_ms);
                }
                Fault::Loss { probability } => eff.loss = either(eff.loss, probability),
                Fault::Duplicate { probability } => eff.duplicate = either(eff.duplicate, probability),
                Fault::Reorder { probability } => eff.reorder = either(eff.reorder, probability),
                Fault::Reset { probability } => eff.reset = either(eff.reset, probability.unwrap_or(0.0)),
                Fault::HalfOpen | Fault::Partition => eff.black_hole = true,
                Fault::SlowReader { bytes_per_s } => eff.slow_reader = min_some(eff.slow_reader, bytes_per_s),
            }
        }
        eff
    }
}
