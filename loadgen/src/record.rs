//! What simulated devices report, and the one aggregator that turns it into statistics: every
//! device sends raw timestamps over a channel; histograms, the delivery ledger and the time
//! series are computed only here (constant memory per metric: HdrHistogram, microseconds).

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Microseconds since the start of the run (one clock for every device of the process).
pub type Micros = u64;

/// One observation, with raw times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A device finished `hello` -> `welcome`.
    Connected {
        /// Connect started.
        started: Micros,
        /// `welcome` received.
        at: Micros,
    },
    /// A phone sent command `cid`.
    Sent {
        /// Command id.
        cid: u64,
        /// When the schedule said to send (latencies are measured from here).
        intended: Micros,
        /// When it was written.
        actual: Micros,
        /// It fell due while the phone had no connection (an outage, not generator lateness:
        /// no send-lag sample).
        held: bool,
    },
    /// The relay accepted command `cid`.
    Accepted {
        /// Command id.
        cid: u64,
        /// Arrival of `accepted`.
        at: Micros,
    },
    /// A desktop received command `cid` (maybe again).
    Delivered {
        /// Command id.
        cid: u64,
        /// Intended send time carried in the payload.
        intended: Micros,
        /// Arrival.
        at: Micros,
    },
    /// A desktop received command `cid` that was sent while it was offline (the backlog
    /// drained after its reconnect): counted as delivered, timed apart from routing.
    Backlog {
        /// Command id.
        cid: u64,
        /// Intended send time carried in the payload.
        intended: Micros,
        /// Arrival.
        at: Micros,
    },
    /// A device came back after an offline step and got a new `welcome`.
    Reconnected {
        /// When it started reconnecting (the end of its offline window).
        dropped: Micros,
        /// `welcome` of the new connection.
        at: Micros,
    },
    /// A phone sent command `cid` again with the same id: its first send had no answer before the
    /// connection ended or within the resend timeout (PROTOCOL.md CLI-6).
    Resent {
        /// Command id.
        cid: u64,
    },
    /// A desktop received command `cid` later than its time to live after the send.
    Expired {
        /// Command id.
        cid: u64,
    },
    /// A phone received a live update for `cid`.
    Update {
        /// Command id.
        cid: u64,
        /// When the desktop sent it.
        sent: Micros,
        /// Arrival.
        at: Micros,
        /// Whether its pseq went backwards in its stream.
        out_of_order: bool,
    },
    /// A phone received the final `tool_complete` of `cid`.
    Completed {
        /// Command id.
        cid: u64,
        /// Arrival.
        at: Micros,
    },
    /// An `error` frame (code) or a transport failure ("transport").
    Error {
        /// Error code or kind.
        code: String,
    },
}

/// Latency summary of one metric, milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Percentile distribution: `[percentile, value_ms]` at each of [`PERCENTILES`] (empty when
    /// there is no sample). Percentile 0 is the smallest sample, 100 the largest.
    pub percentiles: Vec<[f64; 2]>,
}

/// The percentiles of [`Latency::percentiles`], with their quantiles (written out rather than
/// divided, so that 99.9 is exactly the quantile of `p999_ms`).
pub const PERCENTILES: [(f64, f64); 13] = [
    (0.0, 0.0),
    (10.0, 0.10),
    (25.0, 0.25),
    (50.0, 0.50),
    (75.0, 0.75),
    (90.0, 0.90),
    (95.0, 0.95),
    (99.0, 0.99),
    (99.5, 0.995),
    (99.9, 0.999),
    (99.95, 0.9995),
    (99.99, 0.9999),
    (100.0, 1.0),
];

fn histogram() -> Histogram<u64> {
    // 1 us .. 1 h at 3 significant digits: 23552 counters (184 KiB), whatever the sample count.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn summarize(h: &Histogram<u64>) -> Latency {
    let ms = |v: u64| v as f64 / 1000.0;
    Latency {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        mean_ms: h.mean() / 1000.0,
        percentiles: if h.is_empty() {
            Vec::new()
        } else {
            PERCENTILES.iter().map(|&(p, q)| [p, ms(h.value_at_quantile(q))]).collect()
        },
    }
}

/// p99 in ms of a per-second histogram, 0 when it has no sample.
fn p99_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 }
}

mod bundle;
mod windows;
pub use bundle::{Bundle, BundleError};
pub use windows::{Window, WindowStats};

/// Per-second histograms of a run, for an HdrHistogram interval log.
#[derive(Debug)]
pub struct Intervals {
    // (routing, update) per second since time zero.
    seconds: Vec<(Histogram<u64>, Histogram<u64>)>,
}

impl Intervals {
    /// Writes an HdrHistogram interval log (`.hlog`, V2 + DEFLATE, values in microseconds,
    /// tags `routing` and `update`), readable by HistogramLogAnalyzer and mergeable across
    /// processes.
    pub fn write_hlog(
        &self,
        out: &mut impl std::io::Write,
        started: std::time::SystemTime,
    ) -> std::io::Result<()> {
        use hdrhistogram::serialization::V2DeflateSerializer;
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        let mut serializer = V2DeflateSerializer::new();
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("relaykit load: per-second latency histograms, values in microseconds")
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(out, &mut serializer)?;
        let second = std::time::Duration::from_secs(1);
        for (t, (routing, update)) in self.seconds.iter().enumerate() {
            let at = std::time::Duration::from_secs(t as u64);
            for (tag, h) in [("routing", routing), ("update", update)] {
                if !h.is_empty() {
                    log.write_histogram(h, at, second, Tag::new(tag))
                        .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
                }
            }
        }
        Ok(())
    }
}

/// Per-command state of the ledger.
#[derive(Debug, Clone, Copy, Default)]
struct Command {
    accepted: bool,
    deliveries: u32,
    completed: bool,
    resends: u32,
}

/// Exact fate of every command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Ledger {
    /// Commands sent by phones.
    pub sent: u64,
    /// Answered `accepted`.
    pub accepted: u64,
    /// Delivered to their desktop at least once.
    pub delivered: u64,
    /// Accepted but never delivered by the end of the drain: at-least-once broken.
    pub lost: u64,
    /// Extra deliveries of already delivered commands (allowed by at-least-once, counted).
    pub duplicated: u64,
    /// Sent but neither accepted nor delivered (refused or unanswered).
    pub unacknowledged: u64,
    /// Commands first delivered from the backlog of a desktop that had been offline.
    pub delivered_after_reconnect: u64,
    /// Commands delivered after their time to live ran out (the relay must never do this).
    pub delivered_after_expiry: u64,
    /// Commands whose final `tool_complete` reached the phone.
    pub completed: u64,
    /// Live updates received.
    pub updates: u64,
    /// Live updates whose pseq went backwards within their stream.
    pub out_of_order: u64,
    /// Send frames repeated for commands (or their `tool_complete` results) that had no answer
    /// yet (same id; the relay must not deliver them twice because of it).
    pub resent: u64,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub t_s: u64,
    /// Commands sent in that second.
    pub sent: u64,
    /// Commands delivered in that second.
    pub delivered: u64,
    /// p99 command routing latency of that second's deliveries, ms (0 when none).
    pub routing_p99_ms: f64,
    /// p99 update latency of the live updates that arrived in that second, ms (0 when none).
    pub update_p99_ms: f64,
}

/// What the aggregator keeps per second of the run.
#[derive(Debug)]
struct SecondAcc {
    sent: u64,
    delivered: u64,
    routing: Histogram<u64>,
    update: Histogram<u64>,
}

impl SecondAcc {
    fn new() -> SecondAcc {
        // Same resolution as the run-wide histograms (same figures), but auto-resizing: a second
        // starts at 16 KiB per histogram and grows only with its largest latency (about 40 KiB
        // at 10 ms), never with the sample count.
        let h = || Histogram::new(3).expect("valid histogram precision");
        SecondAcc { sent: 0, delivered: 0, routing: h(), update: h() }
    }
}

/// Everything the aggregator learned.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Phone intended send -> desktop receive.
    pub command_routing: Latency,
    /// Desktop send -> phone receive of live updates.
    pub update: Latency,
    /// Phone intended send -> `accepted`.
    pub accept: Latency,
    /// Phone intended send -> `tool_complete` at the phone.
    pub end_to_end: Latency,
    /// Connect -> `welcome`.
    pub connect: Latency,
    /// Generator lateness: actual minus intended send time.
    pub send_lag: Latency,
    /// Back from an offline step -> `welcome` of the new connection.
    pub reconnect: Latency,
    /// Intended send -> delivery for commands queued while their desktop was offline.
    pub backlog: Latency,
    /// The ledger.
    pub ledger: Ledger,
    /// Errors by code.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Per-second series.
    pub timeseries: Vec<Second>,
}

/// The one consumer of [`Event`]s.
#[derive(Debug)]
pub struct Aggregator {
    routing: Histogram<u64>,
    update: Histogram<u64>,
    accept: Histogram<u64>,
    end_to_end: Histogram<u64>,
    connect: Histogram<u64>,
    send_lag: Histogram<u64>,
    reconnect: Histogram<u64>,
    backlog: Histogram<u64>,
    // Intended send time per command, for accept and end-to-end latency.
    intended: HashMap<u64, Micros>,
    commands: HashMap<u64, Command>,
    ledger: Ledger,
    errors: std::collections::BTreeMap<String, u64>,
    seconds: Vec<SecondAcc>,
    // Every reconnect as (drop detected, welcome), so fault windows can be judged afterwards
    // (a few per device at most).
    reconnects: Vec<(Micros, Micros)>,
    // Raw (start, end) of every routing and update sample, kept only for runs with fault steps:
    // samples that start in a fault window are judged with the fault, not by the steady-state
    // budgets (16 bytes a sample).
    samples: Option<Samples>,
}

/// Raw latency samples of a run with fault steps.
#[derive(Debug, Default)]
struct Samples {
    routing: Vec<(Micros, Micros)>,
    update: Vec<(Micros, Micros)>,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator {
            routing: histogram(),
            update: histogram(),
            accept: histogram(),
            end_to_end: histogram(),
            connect: histogram(),
            send_lag: histogram(),
            reconnect: histogram(),
            backlog: histogram(),
            intended: HashMap::new(),
            commands: HashMap::new(),
            ledger: Ledger::default(),
            errors: Default::default(),
            seconds: Vec::new(),
            reconnects: Vec::new(),
            samples: None,
        }
    }
}

impl Aggregator {
    /// An aggregator that also keeps raw routing and update samples, for runs with fault steps
    /// (see [`Aggregator::exclude_windows`]).
    pub fn keeping_samples() -> Aggregator {
        Aggregator { samples: Some(Samples::default()), ..Aggregator::default() }
    }

    fn second(&mut self, at: Micros) -> &mut SecondAcc {
        let s = (at / 1_000_000) as usize;
        while self.seconds.len() <= s {
            self.seconds.push(SecondAcc::new());
        }
        &mut self.seconds[s]
    }

    /// One line of live progress about second `s` (complete once `s + 1` has begun): rates,
    /// that second's p99s, connections so far, errors so far.
    pub fn progress_line(&self, s: u64) -> String {
        let p99 =
            |h: &Histogram<u64>| if h.is_empty() { 0.0 } else { h.value_at_quantile(0.99) as f64 / 1000.0 };
        let errors: u64 = self.errors.values().sum();
        match self.seconds.get(s as usize) {
            Some(sec) => format!(
                "t={s:>4}s  connected={:<6} sent/s={:<6} delivered/s={:<6} routing p99={:>8.2} ms  update p99={:>8.2} ms  errors={errors}",
                self.connect.len(),
                sec.sent,
                sec.delivered,
                p99(&sec.routing),
                p99(&sec.update)
            ),
            None => format!("t={s:>4}s  connected={:<6} (no traffic)  errors={errors}", self.connect.len()),
        }
    }

    /// Folds one event in.
    pub fn record(&mut self, event: Event) {
        let lat = |h: &mut Histogram<u64>, from: Micros, to: Micros| {
            let _ = h.record(to.saturating_sub(from).max(1));
        };
        match event {
            Event::Connected { started, at } => lat(&mut self.connect, started, at),
            Event::Sent { cid, intended, actual, held } => {
                if !held {
                    lat(&mut self.send_lag, intended, actual);
                }
                self.intended.insert(cid, intended);
                self.commands.entry(cid).or_default();
                self.ledger.sent += 1;
                self.second(actual).sent += 1;
            }
            Event::Accepted { cid, at } => {
                if let Some(&i) = self.intended.get(&cid) {
                    lat(&mut self.accept, i, at);
                }
                self.commands.entry(cid).or_default().accepted = true;
            }
            Event::Delivered { cid, intended, at } => {
                let c = self.commands.entry(cid).or_default();
                c.deliveries += 1;
                if c.deliveries == 1 {
                    lat(&mut self.routing, intended, at);
                    if let Some(samples) = &mut self.samples {
                        samples.routing.push((intended, at));
                    }
                    let sec = self.second(at);
                    sec.delivered += 1;
                    lat(&mut sec.routing, intended, at);
                }
            }
            Event::Backlog { cid, intended, at } => {
                let c = self.commands.entry(cid).or_default();
                c.deliveries += 1;
                if c.deliveries == 1 {
                    lat(&mut self.backlog, intended, at);
                    self.ledger.delivered_after_reconnect += 1;
                    self.second(at).delivered += 1;
                }
            }
            Event::Expired { .. } => self.ledger.delivered_after_expiry += 1,
            Event::Resent { cid } => {
                self.ledger.resent += 1;
                self.commands.entry(cid).or_default().resends += 1;
            }
            Event::Reconnected { dropped, at } => {
                lat(&mut self.reconnect, dropped, at);
                self.reconnects.push((dropped, at));
            }
            Event::Update { sent, at, out_of_order, .. } => {
                lat(&mut self.update, sent, at);
                if let Some(samples) = &mut self.samples {
                    samples.update.push((sent, at));
                }
                lat(&mut self.second(at).update, sent, at);
                self.ledger.updates += 1;
                self.ledger.out_of_order += u64::from(out_of_order);
            }
            Event::Completed { cid, at } => {
                let c = self.commands.entry(cid).or_default();
                if !c.completed {
                    c.completed = true;
                    self.ledger.completed += 1;
                    // One end-to-end sample per command: a redelivered result is not another.
                    if let Some(&i) = self.intended.get(&cid) {
                        lat(&mut self.end_to_end, i, at);
                    }
                }
            }
            Event::Error { code } => *self.errors.entry(code).or_default() += 1,
        }
    }

    /// Classifies every command of the ledger (delivered, lost, ...) and forgets the per-command
    /// state; after this the aggregator holds only counts and histograms, which merge across
    /// processes. Idempotent.
    pub fn close_ledger(&mut self) {
        for c in std::mem::take(&mut self.commands).values() {
            if c.accepted {
                self.ledger.accepted += 1;
            }
            if c.deliveries > 0 {
                self.ledger.delivered += 1;
                self.ledger.duplicated += u64::from(c.deliveries - 1);
            } else if c.accepted {
                self.ledger.lost += 1;
            } else {
                self.ledger.unacknowledged += 1;
            }
        }
        self.intended.clear();
    }

    /// Closes the ledger and summarizes.
    pub fn finish(self) -> Stats {
        self.finish_with_intervals().0
    }

    /// [`Aggregator::finish`], also handing back the per-second histograms for an interval log.
    pub fn finish_with_intervals(mut self) -> (Stats, Intervals) {
        self.close_ledger();
        let timeseries = self
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| Second {
                t_s: t as u64,
                sent: s.sent,
                delivered: s.delivered,
                routing_p99_ms: p99_ms(&s.routing),
                update_p99_ms: p99_ms(&s.update),
            })
            .collect();
        let stats = Stats {
            command_routing: summarize(&self.routing),
            update: summarize(&self.update),
            accept: summarize(&self.accept),
            end_to_end: summarize(&self.end_to_end),
            connect: summarize(&self.connect),
            send_lag: summarize(&self.send_lag),
            reconnect: summarize(&self.reconnect),
            backlog: summarize(&self.backlog),
            ledger: self.ledger,
            errors: self.errors,
            timeseries,
        };
        let intervals =
            Intervals { seconds: self.seconds.into_iter().map(|s| (s.routing, s.update)).collect() };
        (stats, intervals)
    }
}

#[cfg(test)]
mod tests;
