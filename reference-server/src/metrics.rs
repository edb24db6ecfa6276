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
            routing_latency_seconds => "Seconds from send received to delivery written.",
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// One parsed sample line: `name{labels} value`.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    fn valid_name(name: &str) -> bool {
        name.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || "_:".contains(c) || i > 0 && c.is_ascii_digit())
            && !name.is_empty()
    }

    /// `a="x",b="y\"z"` -> pairs, undoing the escapes of the exposition format.
    fn parse_labels(mut rest: &str) -> Result<Vec<(String, String)>, String> {
        let mut labels = Vec::new();
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").ok_or(format!("bad labels {rest:?}"))?;
            let (mut value, mut chars) = (String::new(), after.char_indices());
            let end = loop {
                match chars.next().ok_or("unterminated label value")? {
                    (_, '\\') => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        _ => return Err(format!("bad escape in {after:?}")),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            if !valid_name(label) {
                return Err(format!("bad label name {label:?}"));
            }
            labels.push((label.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        Ok(labels)
    }

    /// A small exposition-format checker: every sample belongs to a family declared by HELP then
    /// TYPE, names and labels are well-formed, values parse. Returns the samples and family types.
    fn parse(text: &str) -> Result<(Vec<Sample>, HashMap<String, String>), String> {
        let (mut types, mut helped, mut samples) = (HashMap::new(), Vec::new(), Vec::new());
        if !text.ends_with('\n') {
            return Err("output must end with a newline".into());
        }
        for line in text.lines() {
            if let Some((name, help)) = line.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')) {
                if help.is_empty() || helped.contains(&name) {
                    return Err(format!("empty or repeated HELP {line:?}"));
                }
                helped.push(name);
            } else if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
                let known = ["counter", "gauge", "histogram"].contains(&kind);
                if helped.last() != Some(&name)
                    || !known
                    || types.insert(name.to_owned(), kind.into()).is_some()
                {
                    return Err(format!("TYPE without HELP, bad or repeated {line:?}"));
                }
            } else {
                let (series, value) = line.rsplit_once(' ').ok_or(format!("bad sample {line:?}"))?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').ok_or("no }")?)?),
                    None => (series, Vec::new()),
                };
                let histogram = |f: &&str| types.get(*f).is_some_and(|t| t == "histogram");
                let family =
                    ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(histogram));
                if !valid_name(name) || !types.contains_key(family.unwrap_or(name)) {
                    return Err(format!("sample of an undeclared family {line:?}"));
                }
                let value = match value {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    "NaN" => f64::NAN,
                    v => v.parse().map_err(|_| format!("bad value {line:?}"))?,
                };
                samples.push(Sample { name: name.to_owned(), labels, value });
            }
        }
        Ok((samples, types))
    }

    /// (first label value, value) of every sample named `name`, in output order.
    fn series<'a>(samples: &'a [Sample], name: &str) -> Vec<(&'a str, f64)> {
        let label = |s: &'a Sample| s.labels.first().map_or("", |(_, v)| v.as_str());
        samples.iter().filter(|s| s.name == name).map(|s| (label(s), s.value)).collect()
    }

    fn value(samples: &[Sample], name: &str) -> f64 {
        samples.iter().find(|s| s.name == name).map_or(f64::NAN, |s| s.value)
    }

    #[test]
    fn counters_and_gauges() {
        let m = Metrics::new();
        m.messages_accepted_total.inc();
        m.messages_accepted_total.add(4);
        assert_eq!(m.messages_accepted_total.get(), 5);
        (0..2).for_each(|_| m.connections(DeviceType::Mobile).inc());
        m.connections(DeviceType::Mobile).dec();
        m.connections(DeviceType::Desktop).set(7);
        m.inbox_depth.dec();
        assert_eq!(
            (m.connections_mobile.get(), m.connections_desktop.get(), m.inbox_depth.get()),
            (1, 7, -1)
        );
        let (samples, _) = parse(&m.render()).unwrap();
        assert_eq!(value(&samples, "relaykit_messages_accepted_total"), 5.0);
        assert_eq!(value(&samples, "relaykit_inbox_depth"), -1.0);
        assert_eq!(series(&samples, "relaykit_connections"), [("desktop", 7.0), ("mobile", 1.0)]);
        assert!(
            samples
                .iter()
                .filter(|s| s.name == "relaykit_connections")
                .all(|s| s.labels[0].0 == "device_type")
        );
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let (_, types) = parse(&Metrics::new().render()).unwrap();
        let expected = "connections gauge, connections_opened_total counter, \
            messages_accepted_total counter, messages_delivered_total counter, \
            messages_redelivered_total counter, messages_acked_total counter, \
            messages_rejected_total counter, messages_expired_total counter, \
            messages_dead_lettered_total counter, messages_duplicate_total counter, \
            live_events_total counter, inbox_depth gauge, ack_latency_seconds histogram, \
            routing_latency_seconds histogram, store_commit_seconds histogram, \
            store_batch_size histogram, closes_total counter, errors_total counter, \
            rest_requests_total counter";
        let expected: HashMap<String, String> = expected
            .split(", ")
            .filter_map(|pair| pair.split_once(' '))
            .map(|(name, kind)| (format!("relaykit_{name}"), kind.to_owned()))
            .collect();
        assert_eq!((types.len(), types), (19, expected));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new();
        let values = [0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.9, 1.0, 7.0, 11.0, 1e9];
        values.iter().for_each(|v| m.ack_latency_seconds.observe(*v));
        m.ack_latency_seconds.observe(f64::NAN);
        m.store_batch_size.observe(3.0);
        m.store_batch_size.observe_duration(Duration::from_secs(2000));
        assert_eq!(m.ack_latency_seconds.count(), values.len() as u64);
        let (samples, _) = parse(&m.render()).unwrap();
        let ack = series(&samples, "relaykit_ack_latency_seconds_bucket");
        assert_eq!(ack.len(), LATENCY_BUCKETS.len() + 1);
        assert!(ack.windows(2).all(|w| w[0].1 <= w[1].1), "{ack:?}");
        // `le` is inclusive: 0.0005 lands in the 0.0005 bucket, 1.0 in the 1 bucket.
        let at = |le: &str| ack.iter().find(|(l, _)| *l == le).map_or(-1.0, |(_, v)| *v);
        let got = ["0.0005", "0.001", "0.0025", "0.005", "1", "10", "+Inf"].map(at);
        assert_eq!(got, [2.0, 3.0, 3.0, 5.0, 7.0, 8.0, 10.0]);
        assert_eq!(value(&samples, "relaykit_ack_latency_seconds_count"), 10.0);
        let sum: f64 = values.iter().sum();
        assert!((value(&samples, "relaykit_ack_latency_seconds_sum") - sum).abs() < 1e-3);
        let batch = series(&samples, "relaykit_store_batch_size_bucket");
        assert_eq!((batch[0], batch[2], batch[11]), (("1", 0.0), ("4", 1.0), ("+Inf", 2.0)));
        assert_eq!(value(&samples, "relaykit_store_batch_size_count"), 2.0);
        // An empty histogram still renders every bucket.
        assert_eq!(
            series(&samples, "relaykit_routing_latency_seconds_bucket").len(),
            LATENCY_BUCKETS.len() + 1
        );
    }

    #[test]
    fn bucket_bounds_are_strictly_increasing() {
        for bounds in [LATENCY_BUCKETS, BATCH_SIZE_BUCKETS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite()));
        }
    }

    #[test]
    fn labeled_counters_render_sorted() {
        let m = Metrics::new();
        ["4001", "1000", "4001", "4502"].iter().for_each(|code| m.closes_total.inc(code));
        m.errors_total.inc("rate_limited");
        m.errors_total.inc("bad \"quoted\"\\ code\n");
        [404, 200, 201, 503, 999].iter().for_each(|s| m.rest_requests_total.inc(status_class(*s)));
        assert_eq!((m.closes_total.get("4001"), m.closes_total.get("9999")), (2, 0));
        let (samples, _) = parse(&m.render()).unwrap();
        assert_eq!(series(&samples, "relaykit_closes_total"), [("1000", 1.0), ("4001", 2.0), ("4502", 1.0)]);
        let errors = series(&samples, "relaykit_errors_total");
        assert_eq!(errors, [("bad \"quoted\"\\ code\n", 1.0), ("rate_limited", 1.0)]);
        let classes = [("2xx", 2.0), ("4xx", 1.0), ("5xx", 1.0), ("other", 1.0)];
        assert_eq!(series(&samples, "relaykit_rest_requests_total"), classes);
        let label_names = |name: &str| -> Vec<String> {
            samples.iter().filter(|s| s.name == name).map(|s| s.labels[0].0.clone()).collect()
        };
        assert!(label_names("relaykit_errors_total").iter().all(|l| l == "code"));
        assert!(label_names("relaykit_rest_requests_total").iter().all(|l| l == "class"));
    }

    #[test]
    fn labeled_counter_cardinality_is_bounded() {
        let counter = LabeledCounter::new("code");
        (0..MAX_LABEL_VALUES + 10).for_each(|i| counter.inc(&format!("c{i:03}")));
        counter.inc("c000");
        assert_eq!(counter.snapshot().len(), MAX_LABEL_VALUES + 1);
        assert_eq!((counter.get(OVERFLOW_LABEL), counter.get("c000")), (10, 2));
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let m = Metrics::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..1000 {
                        m.messages_delivered_total.inc();
                        m.routing_latency_seconds.observe(f64::from(i % 10) * 0.001);
                        m.closes_total.inc("4001");
                    }
                });
            }
        });
        assert_eq!(m.messages_delivered_total.get(), 4000);
        assert_eq!(m.routing_latency_seconds.count(), 4000);
        assert!((m.routing_latency_seconds.sum() - 4.0 * 4.5).abs() < 1e-9);
        assert_eq!(m.closes_total.get("4001"), 4000);
    }

    #[test]
    fn float_formatting_and_checker_self_test() {
        let floats = [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0005, 1.0, 2.5].map(format_float);
        assert_eq!(floats, ["+Inf", "-Inf", "NaN", "0.0005", "1", "2.5"]);
        assert!(parse("# HELP x y\n# TYPE x counter\nx 1\n").is_ok());
        assert!(parse("# HELP x y\nx 1\n").is_err(), "sample without TYPE");
        assert!(parse("# HELP x y\n# TYPE x counter\nx{a=\"1} 1\n").is_err(), "unterminated label");
        assert!(parse("# HELP x y\n# TYPE x counter\nx one\n").is_err(), "bad value");
    }
}
