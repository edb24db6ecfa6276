//! Prometheus metrics, hand-written: atomics, fixed histogram buckets, text exposition 0.0.4.
//!
//! Everything is lock-free except [`LabeledCounter`], whose few label values (close codes, error
//! codes, status classes) sit in a mutex-guarded map. [`Metrics::render`] produces the body of
//! `GET /metrics` (content type [`CONTENT_TYPE`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use relaykit_protocol::DeviceType;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency histograms.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Upper bounds of the store batch-size histogram (writes per group commit).
pub const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Most distinct label values one [`LabeledCounter`] keeps; later ones count as [`OVERFLOW_LABEL`].
pub const MAX_LABEL_VALUES: usize = 64;

/// Label value that absorbs increments beyond [`MAX_LABEL_VALUES`] distinct values.
pub const OVERFLOW_LABEL: &str = "other";

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero.
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (open connections, queued entries).
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// A gauge at zero.
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets (`le` is inclusive, as in Prometheus).
#[derive(Debug)]
pub struct Histogram {
    /// Ascending upper bounds; static because every histogram's buckets are fixed at build time.
    bounds: &'static [f64],
    /// Per-bucket (not cumulative) counts, one more than `bounds` for values above the last bound;
    /// render accumulates, so `+Inf` always equals `_count` even while observations race.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations as `f64` bits, updated with a CAS loop (there is no atomic f64).
    sum_bits: AtomicU64,
}

impl Histogram {
    /// An empty histogram with the given ascending upper bounds.
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0.0f64.to_bits()),
        }
    }

    /// Records one value (seconds for latencies, a count for sizes). NaN is ignored.
    pub fn observe(&self, v: f64) {
        if v.is_nan() {
            return;
        }
        let index = self.bounds.iter().position(|bound| v <= *bound).unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + v).to_bits())
        });
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    /// The upper bounds.
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }
}

/// A counter split by one label; meant for few distinct values (close codes, error codes).
#[derive(Debug)]
pub struct LabeledCounter {
    /// Prometheus label name (`code`, `class`): fixed per metric.
    label: &'static str,
    /// Count per label value; sorted so render output is stable. A mutex is fine: few values,
    /// short critical sections, and these events are rare next to message traffic.
    values: Mutex<BTreeMap<String, u64>>,
}

impl LabeledCounter {
    /// An empty counter whose samples carry the label `label`.
    pub fn new(label: &'static str) -> LabeledCounter {
        LabeledCounter { label, values: Mutex::new(BTreeMap::new()) }
    }

    /// Adds one to the count of `value`. Past [`MAX_LABEL_VALUES`] distinct values, new ones
    /// count as [`OVERFLOW_LABEL`] so a bug cannot grow the map without bound.
    pub fn inc(&self, value: &str) {
        let mut values = self.values.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = values.get_mut(value) {
            *count += 1;
            return;
        }
        let key = if values.len() < MAX_LABEL_VALUES { value } else { OVERFLOW_LABEL };
        *values.entry(key.to_owned()).or_insert(0) += 1;
    }

    /// Count of `value` (0 if never seen).
    pub fn get(&self, value: &str) -> u64 {
        self.values.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(value).copied().unwrap_or(0)
    }

    /// The label name.
    pub fn label(&self) -> &'static str {
        self.label
    }

    /// Every (value, count) pair, sorted by value.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let values = self.values.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        values.iter().map(|(value, count)| (value.clone(), *count)).collect()
    }
}

/// Status class label of an HTTP status for `rest_requests_total` (`"2xx"`, `"4xx"`, ...).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => OVERFLOW_LABEL,
    }
}

/// Every metric of the relay. Rendered under the names `relaykit_<field>`.
#[derive(Debug)]
pub struct Metrics {
    /// Open mobile connections (past `welcome`); rendered as `relaykit_connections{device_type="mobile"}`.
    pub connections_mobile: Gauge,
    /// Open desktop connections (past `welcome`); rendered with `device_type="desktop"`.
    pub connections_desktop: Gauge,
    /// Connections that completed the handshake (`welcome` sent).
    pub connections_opened_total: Counter,
    /// Durable sends accepted as new entries (duplicates are counted apart).
    pub messages_accepted_total: Counter,
    /// `deliver` frames written to a recipient, every attempt (redeliveries included).
    pub messages_delivered_total: Counter,
    /// The subset of deliveries that were not first attempts.
    pub messages_redelivered_total: Counter,
    /// Entries acknowledged by their recipient (`ack`).
    pub messages_acked_total: Counter,
    /// Entries refused by their recipient (`reject`).
    pub messages_rejected_total: Counter,
    /// Entries whose `ttl_ms` ran out before they were acknowledged.
    pub messages_expired_total: Counter,
    /// Entries dead-lettered after `max_attempts`.
    pub messages_dead_lettered_total: Counter,
    /// Sends answered as duplicates of an earlier one (idempotency).
    pub messages_duplicate_total: Counter,
    /// Live events published.
    pub live_events_total: Counter,
    /// Non-terminal entries over all inboxes.
    pub inbox_depth: Gauge,
    /// Seconds from delivery to ack.
    pub ack_latency_seconds: Histogram,
    /// Seconds from receiving a send to writing its delivery to the recipient socket.
    pub routing_latency_seconds: Histogram,
    /// Seconds per store commit (one group commit).
    pub store_commit_seconds: Histogram,
    /// Writes per group commit.
    pub store_batch_size: Histogram,
    /// WebSocket closes by close code (label `code`, e.g. `"4001"`).
    pub closes_total: LabeledCounter,
    /// Errors sent (WebSocket `error` frames and REST error bodies) by error code (label `code`).
    pub errors_total: LabeledCounter,
    /// REST responses by status class (label `class`, see [`status_class`]).
    pub rest_requests_total: LabeledCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Metrics {
        Metrics {
            connections_mobile: Gauge::new(),
            connections_desktop: Gauge::new(),
            connections_opened_total: Counter::new(),
            messages_accepted_total: Counter::new(),
            messages_delivered_total: Counter::new(),
            messages_redelivered_total: Counter::new(),
            messages_acked_total: Counter::new(),
            messages_rejected_total: Counter::new(),
            messages_expired_total: Counter::new(),
            messages_dead_lettered_total: Counter::new(),
            messages_duplicate_total: Counter::new(),
            live_events_total: Counter::new(),
            inbox_depth: Gauge::new(),
            ack_latency_seconds: Histogram::new(LATENCY_BUCKETS),
            routing_latency_seconds: Histogram::new(LATENCY_BUCKETS),
            store_commit_seconds: Histogram::new(LATENCY_BUCKETS),
            store_batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            closes_total: LabeledCounter::new("code"),
            errors_total: LabeledCounter::new("code"),
            rest_requests_total: LabeledCounter::new("class"),
        }
    }

    /// The connection gauge of a device type.
    pub fn connections(&self, device_type: DeviceType) -> &Gauge {
        match device_type {
            DeviceType::Mobile => &self.connections_mobile,
            DeviceType::Desktop => &self.connections_desktop,
        }
    }

    /// Prometheus text exposition (0.0.4) of every metric, each with `# HELP` and `# TYPE`.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let name = "relaykit_connections";
        header(&mut out, name, "Open WebSocket connections past welcome, by device type.", "gauge");
        for device_type in [DeviceType::Desktop, DeviceType::Mobile] {
            let gauge = self.connections(device_type);
            sample(&mut out, name, &[("device_type", device_type.as_str())], gauge.get());
        }
        // Metric name = "relaykit_" + field name, so the two cannot drift apart.
        macro_rules! single {
            ($kind:literal: $($field:ident => $help:literal,)*) => {$(
                let name = concat!("relaykit_", stringify!($field));
                header(&mut out, name, $help, $kind);
                sample(&mut out, name, &[], self.$field.get());
            )*};
        }
        single!("counter":
            connections_opened_total => "Connections that completed the handshake.",
            messages_accepted_total => "Durable sends accepted as new entries.",
            messages_delivered_total => "Deliveries written, redeliveries included.",
            messages_redelivered_total => "Deliveries that were not first attempts.",
            messages_acked_total => "Entries acknowledged by their recipient.",
            messages_rejected_total => "Entries rejected by their recipient.",
            messages_expired_total => "Entries expired before acknowledgement.",
            messages_dead_lettered_total => "Entries dead-lettered after max_attempts.",
            messages_duplicate_total => "Sends answered as duplicates (idempotency).",
            live_events_total => "Live events published.",
        );
        single!("gauge": inbox_depth => "Non-terminal entries over all inboxes.",);
        macro_rules! families {
            ($render:ident: $($field:ident => $help:literal,)*) => {$(
                $render(&mut out, concat!("relaykit_", stringify!($field)), $help, &self.$field);
            )*};
        }
        families!(render_histogram:
            ack_latency_seconds => "Seconds from delivery to ack.",
            routing_latency_seconds => "Seconds from acceptance (or load at start) to the first delivery being queued for the recipient connection.",
            store_commit_seconds => "Seconds per store group commit.",
            store_batch_size => "Writes per store group commit.",
        );
        families!(render_labeled:
            closes_total => "WebSocket connections closed, by close code.",
            errors_total => "Errors sent, by error code.",
            rest_requests_total => "REST requests answered, by status class.",
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{label}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn render_labeled(out: &mut String, name: &str, help: &str, counter: &LabeledCounter) {
    header(out, name, help, "counter");
    for (value, count) in counter.snapshot() {
        sample(out, name, &[(counter.label(), &value)], count);
    }
}

fn render_histogram(out: &mut String, name: &str, help: &str, histogram: &Histogram) {
    header(out, name, help, "histogram");
    // Read every bucket once and derive +Inf and _count from the same reads.
    let counts: Vec<u64> = histogram.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
    let bucket_name = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (bound, count) in histogram.bounds.iter().zip(&counts) {
        cumulative += count;
        sample(out, &bucket_name, &[("le", &format_float(*bound))], cumulative);
    }
    let total: u64 = counts.iter().sum();
    sample(out, &bucket_name, &[("le", "+Inf")], total);
    sample(out, &format!("{name}_sum"), &[], format_float(histogram.sum()));
    sample(out, &format!("{name}_count"), &[], total);
}

/// Float in the exposition format: `+Inf`, `-Inf`, `NaN`, otherwise Rust's shortest round-trip form.
fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
