//! Fault specifications: the JSON (and TOML) form the HTTP API and scenario files use, their
//! validation, and the seeded hashing that makes decisions reproducible.

use serde::{Deserialize, Serialize};

/// One fault to inject: what, in which direction, on which connections, for how long.
///
/// JSON: `{"fault": {"kind": "loss", "probability": 0.05}, "direction": "up",
/// "select": {"devices": ["d1"]}, "duration_ms": 5000}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The fault and its parameters.
    pub fault: Fault,
    /// `up` (client -> upstream), `down` (upstream -> client) or `both` (default).
    #[serde(default)]
    pub direction: Direction,
    /// Which connections (default: all).
    #[serde(default)]
    pub select: Selector,
    /// Removed by itself this long after it was added; `None`: until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// What a fault does to the frames of a selected connection and direction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Every unit is delayed by a uniform draw from `[ms - jitter_ms, ms + jitter_ms]`; the
    /// order is kept (a frame never overtakes an earlier one) unless reorder is active too.
    Latency {
        /// Mean delay.
        ms: u64,
        /// Half-width of the uniform jitter; at most `ms`.
        #[serde(default)]
        jitter_ms: u64,
    },
    /// Writes are paced to this rate (per connection and direction, a whole frame at a time).
    Bandwidth {
        /// Bytes per second, at least 1.
        bytes_per_s: u64,
    },
    /// Packet loss as TCP experiences it (netem `loss` under a TCP connection): nothing is
    /// lost, but with this probability a unit (any frame) waits one retransmission timeout
    /// more, and everything behind it waits too (head-of-line blocking, order kept).
    Retransmit {
        /// In [0, 1].
        probability: f64,
        /// Extra delay of a retransmitted unit (Linux's minimum RTO is 200 ms; on a 600 ms
        /// round trip it is about 1 s).
        rto_ms: u64,
    },
    /// Each data frame is dropped with this probability.
    Loss {
        /// In [0, 1].
        probability: f64,
    },
    /// Each data frame is sent twice with this probability.
    Duplicate {
        /// In [0, 1].
        probability: f64,
    },
    /// Each data frame is, with this probability, held back and sent after the next one.
    Reorder {
        /// In [0, 1].
        probability: f64,
    },
    /// Abrupt TCP reset (RST, SO_LINGER 0) of both sockets of the connection.
    Reset {
        /// `None`: every selected open connection at once when the fault is added (the fault
        /// is then done and not listed). `Some(p)`: per frame with probability p, after writing
        /// part of that frame, so the peer sees a truncated frame and then the reset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probability: Option<f64>,
    },
    /// Nothing is forwarded (frames and end of stream alike), but both sockets stay open.
    HalfOpen,
    /// The proxy reads from the sender at this rate at most (0: not at all), so TCP
    /// backpressure builds up at the sender.
    SlowReader {
        /// Bytes per second; 0 stops reading.
        bytes_per_s: u64,
    },
    /// Black hole for the selected devices: like `half_open`, in both directions by default,
    /// also for connections the devices open while the partition lasts.
    Partition,
}

/// Direction of traffic a fault applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client -> upstream.
    Up,
    /// Upstream -> client.
    Down,
    /// Both.
    #[default]
    Both,
}

impl Direction {
    /// Whether a fault in direction `self` applies to traffic flowing in `flow` (`Up` or `Down`).
    pub fn covers(self, flow: Direction) -> bool {
        self == Direction::Both || self == flow
    }
}

/// Which connections a fault applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selector {
    /// Every connection (JSON `"all"`).
    #[default]
    All,
    /// Connections whose first text frame was a `hello` whose token carries one of these `did`s.
    Devices(Vec<String>),
    /// Connections by number (1 for the first one the proxy accepted, in accept order).
    Connections(Vec<u64>),
    /// Connections whose seeded hash of their number is below this fraction in [0, 1].
    Fraction(f64),
}

/// What [`FaultSpec::validate`] refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultError {
    /// A probability or fraction outside [0, 1] (or not a number).
    #[error("{field} must be in [0, 1], got {value}")]
    OutOfRange {
        /// Dotted path of the field.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A value that must be positive is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A value above the largest the proxy accepts.
    #[error("{field} must be at most {max}, got {value}")]
    TooLarge {
        /// Dotted path of the field.
        field: &'static str,
        /// The largest accepted value.
        max: u64,
        /// The value given.
        value: u64,
    },
    /// Jitter larger than the latency it varies.
    #[error("fault.jitter_ms ({jitter_ms}) must not exceed fault.ms ({ms})")]
    Jitter {
        /// Mean latency.
        ms: u64,
        /// Jitter given.
        jitter_ms: u64,
    },
    /// A device or connection list that selects nothing.
    #[error("select.{0} must not be empty")]
    EmptySelector(&'static str),
}

/// One hour: longer delays or durations are mistakes, and the bound keeps `Instant` math safe.
const MAX_MS: u64 = 3_600_000;

fn probability(field: &'static str, value: f64) -> Result<(), FaultError> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(FaultError::OutOfRange { field, value }) }
}

fn at_most(field: &'static str, value: u64, max: u64) -> Result<(), FaultError> {
    if value <= max { Ok(()) } else { Err(FaultError::TooLarge { field, max, value }) }
}

impl FaultSpec {
    /// Checks ranges: probabilities and fractions in [0, 1], jitter <= latency, bandwidth and
    /// duration at least 1, delays and durations at most an hour, non-empty selector lists.
    pub fn validate(&self) -> Result<(), FaultError> {
        match self.fault {
            Fault::Latency { ms, jitter_ms } => {
                at_most("fault.ms", ms, MAX_MS)?;
                if jitter_ms > ms {
                    return Err(FaultError::Jitter { ms, jitter_ms });
                }
            }
            Fault::Bandwidth { bytes_per_s: 0 } => return Err(FaultError::Zero("fault.bytes_per_s")),
            Fault::Retransmit { probability: p, rto_ms } => {
                probability("fault.probability", p)?;
                at_most("fault.rto_ms", rto_ms, MAX_MS)?;
            }
            Fault::Loss { probability: p }
            | Fault::Duplicate { probability: p }
            | Fault::Reorder { probability: p }
            | Fault::Reset { probability: Some(p) } => probability("fault.probability", p)?,
            Fault::Bandwidth { .. }
            | Fault::Reset { probability: None }
            | Fault::HalfOpen
            | Fault::SlowReader { .. }
            | Fault::Partition => {}
        }
        match self.duration_ms {
            Some(0) => return Err(FaultError::Zero("duration_ms")),
            Some(ms) => at_most("duration_ms", ms, MAX_MS)?,
            None => {}
        }
        self.select.validate()
    }
}

impl Selector {
    /// Checks the fraction range and that lists are not empty.
    pub fn validate(&self) -> Result<(), FaultError> {
        match self {
            Selector::All => Ok(()),
            Selector::Devices(d) if d.is_empty() => Err(FaultError::EmptySelector("devices")),
            Selector::Connections(c) if c.is_empty() => Err(FaultError::EmptySelector("connections")),
            Selector::Devices(_) | Selector::Connections(_) => Ok(()),
            Selector::Fraction(f) => probability("select.fraction", *f),
        }
    }

    /// Whether the connection `number` (with its `device` id once known and its fraction key,
    /// see [`fraction_key`]) is selected.
    pub(crate) fn matches(&self, number: u64, device: Option<&str>, fraction_key: f64) -> bool {
        match self {
            Selector::All => true,
            Selector::Devices(ids) => device.is_some_and(|d| ids.iter().any(|id| id == d)),
            Selector::Connections(numbers) => numbers.contains(&number),
            Selector::Fraction(f) => fraction_key < *f,
        }
    }
}

/// SplitMix64 finalizer: a fast, well-mixing bijection on u64, so nearby inputs (connection 1,
/// 2, 3 ...) give unrelated outputs.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a u64 to [0, 1) using its top 53 bits (the precision of an f64).
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The seeded hash of a connection number that [`Selector::Fraction`] compares.
pub(crate) fn fraction_key(seed: u64, number: u64) -> f64 {
    unit(mix64(mix64(seed) ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// Per-connection, per-direction random stream: one draw per forwarded unit, from which every
/// decision about that unit is derived, so the decisions for the n-th frame do not depend on
/// which other faults happen to be active.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64, number: u64, flow: Direction) -> Self {
        let dir = if flow == Direction::Up { 1 } else { 2 };
        Rng(mix64(seed) ^ mix64(number.wrapping_mul(4).wrapping_add(dir)))
    }

    pub(crate) fn next(&mut self) -> Draw {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        Draw(mix64(self.0))
    }
}

/// The random value of one unit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Draw(u64);

impl Draw {
    /// Independent uniform [0, 1) value for decision number `k` about this unit.
    pub(crate) fn uniform(self, k: u64) -> f64 {
        unit(self.bits(k))
    }

    pub(crate) fn bits(self, k: u64) -> u64 {
        mix64(self.0 ^ k.wrapping_mul(0xd6e8_feb8_6659_fd93))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn json_form_round_trips_and_defaults_apply() {
        let s = spec(
            r#"{"fault": {"kind": "loss", "probability": 0.05}, "direction": "up",
            "select": {"devices": ["d1"]}, "duration_ms": 5000}"#,
        );
        assert_eq!(s.fault, Fault::Loss { probability: 0.05 });
        assert_eq!(s.direction, Direction::Up);
        assert_eq!(s.select, Selector::Devices(vec!["d1".into()]));
        assert_eq!(serde_json::from_value::<FaultSpec>(serde_json::to_value(&s).unwrap()).unwrap(), s);
        let s = spec(r#"{"fault": {"kind": "half_open"}, "select": "all"}"#);
        assert_eq!((s.direction, s.select, s.duration_ms), (Direction::Both, Selector::All, None));
        assert_eq!(
            spec(r#"{"fault": {"kind": "latency", "ms": 5}}"#).fault,
            Fault::Latency { ms: 5, jitter_ms: 0 }
        );
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        for bad in [
            r#"{"fault": {"kind": "loss", "probability": 0.5, "extra": 1}}"#,
            r#"{"fault": {"kind": "loss", "probability": 0.5}, "extra": 1}"#,
            r#"{"fault": {"kind": "meteor"}}"#,
            r#"{"fault": {"kind": "loss"}}"#,
            r#"{"fault": {"kind": "loss", "probability": 0.5}, "select": {"fraction": 0.5, "devices": []}}"#,
        ] {
            assert!(serde_json::from_str::<FaultSpec>(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn validate_checks_ranges() {
        let ok = |j: &str| spec(j).validate();
        assert_eq!(ok(r#"{"fault": {"kind": "loss", "probability": 1.0}}"#), Ok(()));
        assert!(ok(r#"{"fault": {"kind": "loss", "probability": 1.5}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "reset", "probability": -0.1}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "bandwidth", "bytes_per_s": 0}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "latency", "ms": 5, "jitter_ms": 6}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "partition"}, "select": {"devices": []}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "partition"}, "select": {"fraction": 2.0}}"#).is_err());
        assert!(ok(r#"{"fault": {"kind": "partition"}, "duration_ms": 0}"#).is_err());
        assert_eq!(ok(r#"{"fault": {"kind": "slow_reader", "bytes_per_s": 0}}"#), Ok(()));
    }

    #[test]
    fn fraction_selects_about_that_share_and_depends_on_the_seed() {
        let picked = |seed| (1..=10_000).filter(|n| fraction_key(seed, *n) < 0.3).count();
        let (a, b) = (picked(1), picked(2));
        assert!((2_700..3_300).contains(&a) && (2_700..3_300).contains(&b), "{a} {b}");
        let set = |seed| (1..=100).filter(|n| fraction_key(seed, *n) < 0.5).collect::<Vec<_>>();
        assert_eq!(set(7), set(7));
        assert_ne!(set(7), set(8));
    }

    #[test]
    fn rng_streams_differ_by_connection_and_direction() {
        let first = |n, d| Rng::new(1, n, d).next().bits(0);
        assert_ne!(first(1, Direction::Up), first(1, Direction::Down));
        assert_ne!(first(1, Direction::Up), first(2, Direction::Up));
        assert_eq!(first(3, Direction::Down), first(3, Direction::Down));
    }
}
