//! What each fault step cost: the ledger and the recovery times restricted to the step's window
//! (from `settle_s` before it was applied to `settle_s` after it ended). Computed from the per-command state,
//! so it must run before the ledger closes.

use serde::Serialize;

use super::{Aggregator, Latency, Micros, histogram, summarize};

/// A fault step's window on the run clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start: the step's start less its settle time (commands in flight when it hit count).
    pub from: Micros,
    /// End of its aftermath (end of the step + settle time).
    pub to: Micros,
    /// When devices could come back (network healed, pause over, killed relay started again
    /// after its planned downtime). A device that dropped before cannot reconnect earlier, so
    /// its recovery is timed from then; None (or a drop after it): from the drop.
    pub healed: Option<Micros>,
}

/// The commands and connections of one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowStats {
    /// Commands whose intended send time fell in the window.
    pub sent: u64,
    /// Of those, accepted.
    pub accepted: u64,
    /// Of those, delivered at least once.
    pub delivered: u64,
    /// Of those, accepted but never delivered.
    pub lost: u64,
    /// Extra deliveries of those.
    pub duplicated: u64,
    /// Of those, neither accepted nor delivered.
    pub unacknowledged: u64,
    /// Resends of those.
    pub resent: u64,
    /// Routing latency of the commands sent in the window (none unless the aggregator kept
    /// samples).
    pub routing: Latency,
    /// Latency of the live updates sent in the window.
    pub update: Latency,
    /// Dropped connections detected in the window -> new `welcome`, timed from the heal when the
    /// drop came before it (see [`Window::healed`]).
    pub recovery: Latency,
}

impl Window {
    fn contains(&self, t: Micros) -> bool {
        (self.from..self.to).contains(&t)
    }

    /// Recovery time of a reconnect that dropped at `dropped` and was welcomed at `at`.
    fn recovery(&self, dropped: Micros, at: Micros) -> Micros {
        let from = match self.healed {
            // Came back only after the heal: it could not have earlier.
            Some(healed) if dropped < healed && at > healed => healed,
            // Reconnected while the fault was still on (a lossy or slow network does not stop
            // reconnects), or dropped after the heal: from the drop.
            _ => dropped,
        };
        at.saturating_sub(from).max(1)
    }
}

/// A histogram of the `(start, end)` samples whose start passes `keep`.
fn latencies(samples: &[(Micros, Micros)], keep: impl Fn(Micros) -> bool) -> hdrhistogram::Histogram<u64> {
    let mut h = histogram();
    for &(from, to) in samples.iter().filter(|(from, _)| keep(*from)) {
        let _ = h.record(to.saturating_sub(from).max(1));
    }
    h
}

impl Aggregator {
    /// The figures of each window (call before the ledger closes).
    pub fn window_stats(&self, windows: &[Window]) -> Vec<WindowStats> {
        windows
            .iter()
            .map(|w| {
                let mut s = WindowStats {
                    sent: 0,
                    accepted: 0,
                    delivered: 0,
                    lost: 0,
                    duplicated: 0,
                    unacknowledged: 0,
                    resent: 0,
                    routing: summarize(&histogram()),
                    update: summarize(&histogram()),
                    recovery: summarize(&histogram()),
                };
                if let Some(samples) = &self.samples {
                    s.routing = summarize(&latencies(&samples.routing, |t| w.contains(t)));
                    s.update = summarize(&latencies(&samples.update, |t| w.contains(t)));
                }
                for (cid, intended) in &self.intended {
                    if !w.contains(*intended) {
                        continue;
                    }
                    let c = self.commands.get(cid).copied().unwrap_or_default();
                    s.sent += 1;
                    s.accepted += u64::from(c.accepted);
                    s.resent += u64::from(c.resends);
                    if c.deliveries > 0 {
                        s.delivered += 1;
                        s.duplicated += u64::from(c.deliveries - 1);
                    } else if c.accepted {
                        s.lost += 1;
                    } else {
                        s.unacknowledged += 1;
                    }
                }
                let mut h = histogram();
                for &(dropped, at) in self.reconnects.iter().filter(|(d, _)| w.contains(*d)) {
                    let _ = h.record(w.recovery(dropped, at));
                }
                s.recovery = summarize(&h);
                s
            })
            .collect()
    }

    /// Takes the routing and update samples that started in a fault window out of the run-wide
    /// figures (which the steady-state budgets judge); [`Aggregator::window_stats`] reports them
    /// with their fault. No-op unless the aggregator kept samples.
    pub fn exclude_windows(&mut self, windows: &[Window]) {
        let Some(samples) = &self.samples else { return };
        let outside = |t: Micros| !windows.iter().any(|w| w.contains(t));
        self.routing = latencies(&samples.routing, outside);
        self.update = latencies(&samples.update, outside);
    }

    /// Re-times the run-wide reconnect figures: a device that lost its connection while a fault
    /// was on could not come back before the heal, so its reconnect counts from the heal (what
    /// the relay is answerable for), not from the drop.
    pub fn retime_reconnects(&mut self, windows: &[Window]) {
        let mut h = histogram();
        for &(dropped, at) in &self.reconnects {
            let w =
                windows.iter().find(|w| w.healed.is_some_and(|healed| (w.from..healed).contains(&dropped)));
            let value = match w {
                Some(w) => w.recovery(dropped, at),
                None => at.saturating_sub(dropped).max(1),
            };
            let _ = h.record(value);
        }
        self.reconnect = h;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;

    #[test]
    fn a_window_counts_the_fate_of_its_commands_and_its_recoveries() {
        let mut a = Aggregator::default();
        // Commands at 1 s (before), 2 s, 3 s and 4 s (inside [1.5 s, 5 s)).
        for (cid, t) in [(1, 1_000_000), (2, 2_000_000), (3, 3_000_000), (4, 4_000_000)] {
            a.record(Event::Sent { cid, intended: t, actual: t, held: false });
        }
        for cid in [1, 2, 3] {
            a.record(Event::Accepted { cid, at: 4_500_000 });
        }
        a.record(Event::Resent { cid: 4 });
        a.record(Event::Delivered { cid: 2, intended: 2_000_000, at: 4_600_000 });
        a.record(Event::Backlog { cid: 2, intended: 2_000_000, at: 4_700_000 });
        // Dropped at 2 s inside a network fault that healed at 3 s; welcomed at 3.2 s.
        a.record(Event::Reconnected { dropped: 2_000_000, at: 3_200_000 });
        // Dropped at 4 s, after the heal: timed from the drop.
        a.record(Event::Reconnected { dropped: 4_000_000, at: 4_100_000 });
        a.record(Event::Reconnected { dropped: 9_000_000, at: 9_500_000 });
        // Dropped at 1.6 s and back at 1.9 s, while the fault was still on: from the drop.
        a.record(Event::Reconnected { dropped: 1_600_000, at: 1_900_000 });
        let w = Window { from: 1_500_000, to: 5_000_000, healed: Some(3_000_000) };
        let s = &a.window_stats(&[w])[0];
        assert_eq!(s.routing.count, 0, "no samples kept by a default aggregator");
        assert_eq!(
            (s.sent, s.accepted, s.delivered, s.lost, s.duplicated, s.unacknowledged, s.resent),
            (3, 2, 1, 1, 1, 1, 1)
        );
        assert_eq!(s.recovery.count, 3);
        assert!((s.recovery.max_ms - 300.0).abs() < 1.0, "{:?}", s.recovery);
        assert!((s.recovery.p50_ms - 200.0).abs() < 1.0, "from the heal: {:?}", s.recovery);
        a.retime_reconnects(&[w]);
        let stats = a.finish();
        assert_eq!(stats.reconnect.count, 4);
        assert!((stats.reconnect.max_ms - 500.0).abs() < 1.0, "outside every fault: from the drop");
        let w = Window { healed: None, ..w };
        assert!((a_max(&w) - 1200.0).abs() < 1.0, "relay faults count from the drop");
    }

    #[test]
    fn samples_in_a_window_leave_the_steady_state_figures() {
        let mut a = Aggregator::keeping_samples();
        for (cid, t, latency) in [(1, 1_000_000, 5_000), (2, 2_000_000, 900_000), (3, 6_000_000, 7_000)] {
            a.record(Event::Sent { cid, intended: t, actual: t, held: false });
            a.record(Event::Delivered { cid, intended: t, at: t + latency });
        }
        a.record(Event::Update { cid: 2, sent: 2_100_000, at: 2_400_000, out_of_order: false });
        let w = Window { from: 1_500_000, to: 5_000_000, healed: None };
        let s = &a.window_stats(&[w])[0];
        assert_eq!((s.routing.count, s.update.count), (1, 1));
        assert!((s.routing.max_ms - 900.0).abs() < 1.0, "{:?}", s.routing);
        a.exclude_windows(&[w]);
        let stats = a.finish();
        assert_eq!((stats.command_routing.count, stats.update.count), (2, 0));
        assert!(stats.command_routing.max_ms < 8.0, "the fault's 900 ms left the steady state");
        assert_eq!(stats.ledger.delivered, 3, "the ledger still counts every command");
    }

    fn a_max(w: &Window) -> f64 {
        let mut a = Aggregator::default();
        a.record(Event::Reconnected { dropped: 2_000_000, at: 3_200_000 });
        a.window_stats(&[*w])[0].recovery.max_ms
    }
}
