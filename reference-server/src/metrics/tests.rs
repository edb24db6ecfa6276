//! Tests of the parent module.

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
            if helped.last() != Some(&name) || !known || types.insert(name.to_owned(), kind.into()).is_some()
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
    assert_eq!((m.connections_mobile.get(), m.connections_desktop.get(), m.inbox_depth.get()), (1, 7, -1));
    let (samples, _) = parse(&m.render()).unwrap();
    assert_eq!(value(&samples, "relaykit_messages_accepted_total"), 5.0);
    assert_eq!(value(&samples, "relaykit_inbox_depth"), -1.0);
    assert_eq!(series(&samples, "relaykit_connections"), [("desktop", 7.0), ("mobile", 1.0)]);
    assert!(
        samples.iter().filter(|s| s.name == "relaykit_connections").all(|s| s.labels[0].0 == "device_type")
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
    assert_eq!(series(&samples, "relaykit_routing_latency_seconds_bucket").len(), LATENCY_BUCKETS.len() + 1);
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
