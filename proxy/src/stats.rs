//! Counters: updated lock-free by the connection pumps, read as a [`ProxyStats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::fault::Direction;

/// Snapshot of the proxy's counters since it started (schema `schemas/tools/proxy-stats.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyStats {
    /// Connections accepted.
    pub connections_total: u64,
    /// Connections accepted and not yet finished.
    pub connections_open: u64,
    /// Client -> upstream.
    pub up: DirectionStats,
    /// Upstream -> client.
    pub down: DirectionStats,
    /// Connections the proxy reset abruptly (a reset fault or `reset_connections`).
    pub resets: u64,
}

/// Counters of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectionStats {
    /// WebSocket frames read from the sender (before any fault).
    pub frames: u64,
    /// Bytes read from the sender: HTTP heads, frames and raw (non-WebSocket) bytes.
    pub bytes: u64,
    /// Data frames dropped by a loss fault.
    pub dropped: u64,
    /// Data frames sent twice by a duplicate fault.
    pub duplicated: u64,
    /// Data frames held back by a reorder fault.
    pub reordered: u64,
    /// Units delayed by a latency fault.
    pub delayed: u64,
    /// Units swallowed by a partition or half-open fault.
    pub black_holed: u64,
}

#[derive(Debug, Default)]
pub(crate) struct DirCounters {
    pub(crate) frames: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) delayed: AtomicU64,
    pub(crate) black_holed: AtomicU64,
}

/// Adds one; the counters are statistics, so no ordering with other memory is needed.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

pub(crate) fn add(counter: &AtomicU64, n: usize) {
    counter.fetch_add(n as u64, Relaxed);
}

impl DirCounters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            frames: self.frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            reordered: self.reordered.load(Relaxed),
            delayed: self.delayed.load(Relaxed),
            black_holed: self.black_holed.load(Relaxed),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) resets: AtomicU64,
    up: DirCounters,
    down: DirCounters,
}

impl Counters {
    pub(crate) fn dir(&self, flow: Direction) -> &DirCounters {
        if flow == Direction::Up { &self.up } else { &self.down }
    }

    pub(crate) fn snapshot(&self) -> ProxyStats {
        ProxyStats {
            connections_total: self.connections_total.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            up: self.up.snapshot(),
            down: self.down.snapshot(),
            resets: self.resets.load(Relaxed),
        }
    }
}
