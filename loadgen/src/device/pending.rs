//! A phone's commands that have no answer yet. PROTOCOL.md CLI-6: a send whose outcome is
//! indefinite (no `accepted` before the connection ended, or none within a timeout) is sent again
//! with the same id and content; the relay's idempotency keeps it from being delivered twice.

use std::collections::HashMap;

use tokio::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One unanswered command.
#[derive(Debug)]
struct Outstanding {
    /// The encoded `send` frame, resent byte for byte (shared with the first write: no copy).
    text: Utf8Bytes,
    /// When it was last written.
    last: Instant,
    /// Resends on the current connection.
    resends: u32,
}

/// Unanswered commands by command id.
#[derive(Debug, Default)]
pub(super) struct Pending {
    sends: HashMap<u64, Outstanding>,
}

impl Pending {
    /// A command was written (or was due while the connection was down).
    pub(super) fn add(&mut self, cid: u64, text: Utf8Bytes, now: Instant) {
        self.sends.insert(cid, Outstanding { text, last: now, resends: 0 });
    }

    /// The relay answered `cid`.
    pub(super) fn answered(&mut self, cid: u64) {
        self.sends.remove(&cid);
    }

    /// Commands unanswered for `after`, at most `max` resends each per connection; marks them
    /// written now.
    pub(super) fn overdue(&mut self, now: Instant, after: Duration, max: u32) -> Vec<(u64, Utf8Bytes)> {
        let mut due: Vec<(u64, Utf8Bytes)> = self
            .sends
            .iter_mut()
            .filter(|(_, o)| o.resends < max && now.duration_since(o.last) >= after)
            .map(|(cid, o)| {
                o.last = now;
                o.resends += 1;
                (*cid, o.text.clone())
            })
            .collect();
        due.sort_unstable_by_key(|(cid, _)| *cid);
        due
    }

    /// Every unanswered command, for a new connection (its resend budget starts again).
    pub(super) fn all(&mut self, now: Instant) -> Vec<(u64, Utf8Bytes)> {
        for o in self.sends.values_mut() {
            o.last = now;
            o.resends = 0;
        }
        let mut all: Vec<(u64, Utf8Bytes)> = self.sends.iter().map(|(c, o)| (*c, o.text.clone())).collect();
        all.sort_unstable_by_key(|(cid, _)| *cid);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswered_commands_come_back_after_the_timeout_a_bounded_number_of_times() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add(1, "one".into(), t0);
        p.add(2, "two".into(), t0);
        p.answered(2);
        let s = Duration::from_secs(1);
        assert!(p.overdue(t0 + s, 3 * s, 2).is_empty(), "not yet overdue");
        assert_eq!(p.overdue(t0 + 3 * s, 3 * s, 2), vec![(1, Utf8Bytes::from_static("one"))]);
        assert!(p.overdue(t0 + 4 * s, 3 * s, 2).is_empty(), "the timeout restarts at a resend");
        assert_eq!(p.overdue(t0 + 6 * s, 3 * s, 2).len(), 1);
        assert!(p.overdue(t0 + 60 * s, 3 * s, 2).is_empty(), "at most 2 resends per connection");
        assert_eq!(
            p.all(t0 + 61 * s),
            vec![(1, Utf8Bytes::from_static("one"))],
            "a new connection resends it"
        );
        assert_eq!(p.overdue(t0 + 64 * s, 3 * s, 2).len(), 1, "with a fresh budget");
    }
}
