//! One device's durable inbox in memory: which entry goes out next, what is in flight, what
//! expired. Pure data structure (no I/O, no locks): the delivery rules of PROTOCOL.md section 9
//! that can be decided from the inbox alone live here and are unit-tested here.

use std::collections::BTreeMap;

use tokio::time::{Duration, Instant};

use super::records::EntryRecord;

/// An entry plus the state that exists only while the relay runs.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The persisted part.
    pub record: EntryRecord,
    /// False until the store committed the entry: not deliverable, but counted for capacity.
    pub committed: bool,
    /// Connection it is in flight on, and since when (for `ack_wait_ms`).
    pub in_flight: Option<(u64, Instant)>,
    /// Earliest redelivery after a `nack` with `delay_ms`.
    pub not_before: Option<Instant>,
    /// Expiry on the monotonic clock.
    pub expires_at: Instant,
    /// When this process accepted (or loaded) it: start of the routing latency.
    pub created: Instant,
}

impl Slot {
    /// Delivered at least once (redeliveries go before new entries of equal priority).
    pub fn delivered(&self) -> bool {
        self.record.attempts > 0
    }
}

/// Which ordering rules [`Inbox::next_deliverable_with`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Higher priority first, redeliveries first (PROTOCOL.md 9.6).
    pub priority: bool,
    /// Never deliver after expiry.
    pub expiry: bool,
}

impl Rules {
    /// The protocol's rules.
    pub const PROTOCOL: Rules = Rules { priority: true, expiry: true };
}

/// Entries by seq, and the counters capacity checks need.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    // Ordered by seq: FIFO within a priority is ascending seq.
    entries: BTreeMap<u64, Slot>,
    // Next seq to assign; persisted so seqs are never reused (starts at 1).
    next_seq: u64,
    // Sum of entry sizes, for `inbox_max_bytes`.
    bytes: u64,
}

impl Inbox {
    /// An empty inbox whose next seq is `next_seq` (at least 1).
    pub fn new(next_seq: u64) -> Self {
        Inbox { entries: BTreeMap::new(), next_seq: next_seq.max(1), bytes: 0 }
    }

    /// Takes the next seq.
    pub fn reserve_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// The seq the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of entries (committed or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `count` more entries of `bytes` total fit under the caps.
    pub fn has_room(&self, count: u64, bytes: u64, max_entries: u64, max_bytes: u64) -> bool {
        self.entries.len() as u64 + count <= max_entries && self.bytes + bytes <= max_bytes
    }

    /// Adds an entry.
    pub fn insert(&mut self, slot: Slot) {
        self.bytes += slot.record.size;
        if let Some(old) = self.entries.insert(slot.record.seq, slot) {
            self.bytes -= old.record.size;
        }
    }

    /// Removes an entry.
    pub fn remove(&mut self, seq: u64) -> Option<Slot> {
        let slot = self.entries.remove(&seq)?;
        self.bytes -= slot.record.size;
        Some(slot)
    }

    /// An entry.
    pub fn get(&self, seq: u64) -> Option<&Slot> {
        self.entries.get(&seq)
    }

    /// An entry, mutably.
    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.entries.get_mut(&seq)
    }

    /// Entries in flight on connection `conn`.
    pub fn in_flight_count(&self, conn: u64) -> usize {
        self.entries.values().filter(|s| s.in_flight.is_some_and(|(c, _)| c == conn)).count()
    }

    /// The entry to deliver next: committed, not in flight, not delayed, not expired; highest
    /// priority first, then entries delivered before, then ascending seq (PROTOCOL.md 9.6).
    pub fn next_deliverable(&self, now: Instant) -> Option<u64> {
        self.next_deliverable_with(now, Rules::PROTOCOL)
    }

    /// [`Inbox::next_deliverable`] with rules switched off (mutants of the conformance self-test).
    pub fn next_deliverable_with(&self, now: Instant, rules: Rules) -> Option<u64> {
        self.entries
            .values()
            .filter(|s| s.committed && s.in_flight.is_none() && (!rules.expiry || s.expires_at > now))
            .filter(|s| s.not_before.is_none_or(|t| t <= now))
            .min_by_key(|s| {
                let priority = if rules.priority { s.record.priority } else { 0 };
                (std::cmp::Reverse(priority), rules.priority && !s.delivered(), s.record.seq)
            })
            .map(|s| s.record.seq)
    }

    /// Committed entries whose time is up.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        self.entries.values().filter(|s| s.committed && s.expires_at <= now).map(|s| s.record.seq).collect()
    }

    /// True when an entry has been in flight on `conn` longer than `ack_wait`.
    pub fn ack_overdue(&self, conn: u64, now: Instant, ack_wait: Duration) -> bool {
        self.entries
            .values()
            .any(|s| s.in_flight.is_some_and(|(c, since)| c == conn && now >= since + ack_wait))
    }

    /// Earliest instant at which something changes without outside input (an expiry or the end
    /// of a nack delay), for the timer.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter(|s| s.committed)
            .flat_map(|s| [Some(s.expires_at), s.not_before].into_iter().flatten())
            .min()
    }

    /// Connection `conn` ended: its in-flight entries become pending again (redelivered on the
    /// next connection, PROTOCOL.md 9.8). Nack delays do not carry over.
    pub fn release(&mut self, conn: u64) {
        for slot in self.entries.values_mut() {
            if slot.in_flight.is_some_and(|(c, _)| c == conn) {
                slot.in_flight = None;
                slot.not_before = None;
            }
        }
    }

    /// Every entry, by seq.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.entries.values()
    }
}

#[cfg(test)]
mod tests {
    use relaykit_protocol::{DeviceType, DurableKind};

    use super::*;
    use crate::state::records::EntryBody;

    fn slot(seq: u64, priority: u8, attempts: u64, now: Instant) -> Slot {
        Slot {
            record: EntryRecord {
                device_id: "d".into(),
                seq,
                body: EntryBody::Message {
                    kind: DurableKind::NewTask,
                    id: format!("m{seq}"),
                    from: "s".into(),
                    from_type: DeviceType::Mobile,
                    payload: None,
                    e2e: None,
                },
                priority,
                attempts,
                max_attempts: 5,
                accepted_at_ms: 0,
                expires_at_ms: 0,
                size: 10,
            },
            committed: true,
            in_flight: None,
            not_before: None,
            expires_at: now + Duration::from_secs(60),
            created: now,
        }
    }

    fn drain_order(inbox: &mut Inbox, now: Instant) -> Vec<u64> {
        let mut order = Vec::new();
        while let Some(seq) = inbox.next_deliverable(now) {
            inbox.get_mut(seq).unwrap().in_flight = Some((1, now));
            order.push(seq);
        }
        order
    }

    #[test]
    fn priority_first_then_redeliveries_then_fifo() {
        let now = Instant::now();
        let mut inbox = Inbox::new(1);
        inbox.insert(slot(1, 0, 0, now));
        inbox.insert(slot(2, 5, 0, now));
        inbox.insert(slot(3, 0, 1, now)); // delivered before: ahead of seq 1 at equal priority
        inbox.insert(slot(4, 5, 0, now));
        inbox.insert(slot(5, 9, 0, now));
        assert_eq!(drain_order(&mut inbox, now), vec![5, 2, 4, 3, 1]);
    }

    #[test]
    fn uncommitted_delayed_and_expired_entries_are_not_deliverable() {
        let now = Instant::now();
        let mut inbox = Inbox::new(1);
        let mut pending = slot(1, 9, 0, now);
        pending.committed = false;
        let mut delayed = slot(2, 9, 0, now);
        delayed.not_before = Some(now + Duration::from_secs(1));
        let mut expired = slot(3, 9, 0, now);
        expired.expires_at = now;
        inbox.insert(pending);
        inbox.insert(delayed);
        inbox.insert(expired);
        inbox.insert(slot(4, 0, 0, now));
        assert_eq!(inbox.next_deliverable(now), Some(4));
        assert_eq!(inbox.expired(now), vec![3]);
        assert_eq!(inbox.next_deliverable(now + Duration::from_secs(1)), Some(2));
    }

    #[test]
    fn capacity_counts_entries_and_bytes() {
        let now = Instant::now();
        let mut inbox = Inbox::new(1);
        inbox.insert(slot(1, 0, 0, now));
        assert!(inbox.has_room(1, 10, 2, 20));
        assert!(!inbox.has_room(2, 10, 2, 100));
        assert!(!inbox.has_room(1, 11, 10, 20));
        inbox.remove(1);
        assert!(inbox.has_room(2, 20, 2, 20));
    }

    #[test]
    fn releasing_a_connection_makes_its_entries_pending_again() {
        let now = Instant::now();
        let mut inbox = Inbox::new(1);
        inbox.insert(slot(1, 0, 1, now));
        inbox.insert(slot(2, 0, 1, now));
        inbox.get_mut(1).unwrap().in_flight = Some((7, now));
        inbox.get_mut(2).unwrap().in_flight = Some((8, now));
        inbox.get_mut(1).unwrap().not_before = Some(now + Duration::from_secs(5));
        assert!(inbox.ack_overdue(7, now + Duration::from_secs(30), Duration::from_secs(30)));
        assert!(!inbox.ack_overdue(7, now + Duration::from_secs(29), Duration::from_secs(30)));
        inbox.release(7);
        assert_eq!(inbox.in_flight_count(7), 0);
        assert_eq!(inbox.in_flight_count(8), 1);
        assert_eq!(inbox.next_deliverable(now), Some(1));
    }

    #[test]
    fn seqs_are_never_reused() {
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.reserve_seq(), 1);
        assert_eq!(inbox.reserve_seq(), 2);
        let mut reloaded = Inbox::new(inbox.next_seq());
        assert_eq!(reloaded.reserve_seq(), 3);
    }
}
