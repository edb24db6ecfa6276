//! Unit tests of [`super`] (record.rs).

use super::*;

#[test]
fn the_ledger_classifies_every_command_exactly() {
    let mut a = Aggregator::default();
    for cid in 0..5 {
        a.record(Event::Sent { cid, intended: 1000, actual: 1100, held: false });
    }
    for cid in 0..4 {
        a.record(Event::Accepted { cid, at: 2000 });
    }
    // 0 delivered once, 1 delivered twice (duplicate), 2 and 3 accepted but never delivered
    // (lost), 4 never accepted nor delivered.
    a.record(Event::Delivered { cid: 0, intended: 1000, at: 3000 });
    a.record(Event::Delivered { cid: 1, intended: 1000, at: 3000 });
    a.record(Event::Delivered { cid: 1, intended: 1000, at: 9000 });
    a.record(Event::Completed { cid: 0, at: 5000 });
    let s = a.finish();
    let l = &s.ledger;
    assert_eq!((l.sent, l.accepted, l.delivered, l.lost, l.duplicated, l.unacknowledged), (5, 4, 2, 2, 1, 1));
    assert_eq!(l.completed, 1);
    assert_eq!(s.command_routing.count, 2, "a duplicate is not a second latency sample");
    assert_eq!(s.command_routing.max_ms, 2.0);
    assert_eq!(s.send_lag.p50_ms, 0.1);
    assert_eq!(s.end_to_end.count, 1);
}

#[test]
fn backlog_deliveries_count_as_delivered_but_not_as_routing() {
    let mut a = Aggregator::default();
    a.record(Event::Sent { cid: 1, intended: 0, actual: 10, held: false });
    a.record(Event::Accepted { cid: 1, at: 20 });
    a.record(Event::Backlog { cid: 1, intended: 0, at: 5_000_000 });
    a.record(Event::Reconnected { dropped: 1_000_000, at: 1_250_000 });
    a.record(Event::Expired { cid: 1 });
    let s = a.finish();
    assert_eq!((s.ledger.delivered, s.ledger.lost, s.ledger.delivered_after_reconnect), (1, 0, 1));
    assert_eq!(s.ledger.delivered_after_expiry, 1);
    assert_eq!(s.command_routing.count, 0);
    assert_eq!(s.backlog.count, 1);
    assert!((s.reconnect.p50_ms - 250.0).abs() < 1.0, "{:?}", s.reconnect);
}

#[test]
fn the_interval_log_holds_one_histogram_per_second_and_tag() {
    let mut a = Aggregator::default();
    for i in 0..3u64 {
        a.record(Event::Sent { cid: i, intended: i * 1_000_000, actual: i * 1_000_000, held: false });
        a.record(Event::Delivered { cid: i, intended: i * 1_000_000, at: i * 1_000_000 + 2_000 });
    }
    a.record(Event::Update { cid: 0, sent: 100, at: 600, out_of_order: false });
    let (_, intervals) = a.finish_with_intervals();
    let mut out = Vec::new();
    intervals.write_hlog(&mut out, std::time::UNIX_EPOCH).unwrap();
    let text = String::from_utf8(out).unwrap();
    let tagged = |tag: &str| text.lines().filter(|l| l.starts_with(&format!("Tag={tag},"))).count();
    assert_eq!((tagged("routing"), tagged("update")), (3, 1), "{text}");
    assert!(text.contains("#[StartTime: 0.000"), "{text}");
    // Round trip: the log reads back with the same counts.
    let mut histograms = 0;
    for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(text.as_bytes()) {
        if let Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(i)) = entry {
            let bytes = base64_decode(i.encoded_histogram());
            let h: Histogram<u64> =
                hdrhistogram::serialization::Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            assert_eq!(h.len(), 1);
            histograms += 1;
        }
    }
    assert_eq!(histograms, 4);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

#[test]
fn latencies_are_measured_from_the_intended_time() {
    let mut a = Aggregator::default();
    // The generator was 400 ms late sending: the routing latency includes those 400 ms.
    a.record(Event::Sent { cid: 7, intended: 1_000_000, actual: 1_400_000, held: false });
    a.record(Event::Delivered { cid: 7, intended: 1_000_000, at: 1_450_000 });
    let s = a.finish();
    assert!((s.command_routing.p50_ms - 450.0).abs() < 1.0, "{:?}", s.command_routing);
    assert_eq!(s.timeseries.len(), 2);
    assert_eq!((s.timeseries[1].sent, s.timeseries[1].delivered), (1, 1));
}

#[test]
fn percentiles_follow_the_fixed_distribution_and_agree_with_the_summary() {
    let mut a = Aggregator::default();
    // Routing latencies 1 ms .. 1000 ms, one sample per ms.
    for cid in 0..1000u64 {
        a.record(Event::Delivered { cid, intended: 0, at: (cid + 1) * 1000 });
    }
    let r = a.finish().command_routing;
    let pct: Vec<f64> = r.percentiles.iter().map(|p| p[0]).collect();
    assert_eq!(pct, PERCENTILES.map(|(p, _)| p));
    assert!(r.percentiles.windows(2).all(|w| w[0][1] <= w[1][1]), "{:?}", r.percentiles);
    let at = |p: f64| r.percentiles.iter().find(|x| x[0] == p).unwrap()[1];
    assert_eq!((at(50.0), at(90.0), at(99.0), at(99.9)), (r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms));
    assert_eq!(at(100.0), r.max_ms);
    assert_eq!(at(0.0), 1.0, "percentile 0 is the smallest sample");
    assert!((at(25.0) - 250.0).abs() < 1.0, "{}", at(25.0));
}

#[test]
fn a_metric_without_samples_has_no_percentiles() {
    let s = Aggregator::default().finish();
    assert_eq!(s.update.count, 0);
    assert!(s.update.percentiles.is_empty());
    assert!(s.timeseries.is_empty());
    let json = serde_json::to_value(&s.update).unwrap();
    assert_eq!(json["percentiles"], serde_json::json!([]));
}

#[test]
fn each_second_has_its_own_update_p99() {
    let mut a = Aggregator::default();
    // Second 0: 100 updates of 2 ms; second 1: none; second 2: 99 of 1 ms and 2 of 50 ms
    // (p99 = the 100th of 101 samples = 50 ms).
    for i in 0..100 {
        a.record(Event::Update { cid: i, sent: 100_000, at: 102_000, out_of_order: false });
    }
    for i in 0..99 {
        a.record(Event::Update { cid: i, sent: 2_000_000, at: 2_001_000, out_of_order: false });
    }
    for i in 0..2 {
        a.record(Event::Update { cid: i, sent: 2_100_000, at: 2_150_000, out_of_order: false });
    }
    let s = a.finish();
    let p99: Vec<f64> = s.timeseries.iter().map(|x| x.update_p99_ms).collect();
    assert_eq!(p99.len(), 3);
    assert!((p99[0] - 2.0).abs() < 0.01 && p99[1] == 0.0 && (p99[2] - 50.0).abs() < 0.1, "{p99:?}");
    assert!(s.timeseries.iter().all(|x| x.routing_p99_ms == 0.0), "updates are not routing samples");
    assert_eq!(s.update.count, 201);
}

#[test]
fn per_second_memory_does_not_grow_with_samples() {
    let mut a = Aggregator::default();
    a.record(Event::Update { cid: 0, sent: 0, at: 5_000, out_of_order: false });
    let before = a.seconds[0].update.distinct_values();
    for i in 0..100_000u64 {
        a.record(Event::Update { cid: i, sent: 0, at: 1 + i % 5_000, out_of_order: false });
        a.record(Event::Delivered { cid: i, intended: 0, at: 1 + i % 5_000 });
    }
    assert_eq!(a.seconds[0].update.distinct_values(), before);
    // Both per-second histograms stay well below a run-wide one (23552 counters).
    assert!(a.seconds[0].routing.distinct_values() <= 5120, "{}", a.seconds[0].routing.distinct_values());
    assert!(before <= 5120, "{before}");
}
