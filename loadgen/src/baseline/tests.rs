//! Unit tests of [`super`] (baseline.rs).

use super::*;
use serde_json::{Value, json};

fn latency(p99: f64) -> Value {
    json!({
        "count": 100, "p50_ms": p99 / 4.0, "p90_ms": p99 / 2.0, "p99_ms": p99, "p999_ms": p99 * 1.5,
        "max_ms": p99 * 2.0, "mean_ms": p99 / 3.0, "percentiles": []
    })
}

fn empty() -> Value {
    json!({
        "count": 0, "p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0,
        "mean_ms": 0.0, "percentiles": []
    })
}

/// A schema-valid load report: 10 s of load, 1,000 commands delivered, every latency p99 10 ms.
fn report() -> Value {
    let seconds: Vec<Value> = (0..12)
        .map(|t| {
            let sent = if t < 10 { 100 } else { 0 };
            json!({ "t_s": t, "sent": sent, "delivered": sent, "routing_p99_ms": 10.0, "update_p99_ms": 10.0 })
        })
        .collect();
    json!({
        "tool": "relaykit load", "version": "0.1.0", "scenario": "smoke", "target": "embedded",
        "started_at_ms": 1, "duration_ms": 14_000, "devices": 40, "verdict": "pass", "slo": [],
        "stats": {
            "command_routing": latency(10.0), "update": latency(10.0), "accept": latency(10.0),
            "end_to_end": latency(10.0), "connect": latency(10.0), "send_lag": latency(1.0),
            "reconnect": empty(), "backlog": empty(),
            "ledger": {
                "sent": 1000, "accepted": 1000, "delivered": 1000, "lost": 0, "duplicated": 0,
                "unacknowledged": 0, "completed": 1000, "updates": 4000, "out_of_order": 0,
                "delivered_after_reconnect": 0, "delivered_after_expiry": 0, "resent": 0
            },
            "errors": {}, "timeseries": seconds
        },
        "generator": { "cpu_percent": 10.0, "rss_kib": 1, "send_lag_p99_ms": 1.0, "valid": true, "reasons": [] }
    })
}

fn parse(file: &str, v: &Value) -> LoadReport {
    LoadReport::parse(file, &v.to_string()).unwrap_or_else(|e| panic!("{e}"))
}

fn compare_with(new: impl FnOnce(&mut Value)) -> Comparison {
    let old = report();
    let mut changed = report();
    new(&mut changed);
    compare(&parse("old", &old), &parse("new", &changed), &Thresholds::default(), false).unwrap()
}

fn set(v: &mut Value, pointer: &str, x: Value) {
    *v.pointer_mut(pointer).unwrap_or_else(|| panic!("no {pointer}")) = x;
}

fn verdict_of(c: &Comparison, metric: &str) -> RowVerdict {
    c.rows.iter().find(|r| r.metric == metric).unwrap_or_else(|| panic!("no row {metric}")).verdict
}

fn regressions(c: &Comparison) -> Vec<&str> {
    c.rows.iter().filter(|r| r.verdict == RowVerdict::Regression).map(|r| r.metric.as_str()).collect()
}

#[test]
fn identical_reports_have_no_regression_and_the_result_validates() {
    let c = compare_with(|_| {});
    assert_eq!((c.verdict, c.regressions, c.improvements), (Outcome::NoRegression, 0, 0), "{}", c.to_table());
    assert_eq!(c.exit_code(), 0);
    assert_eq!(c.skipped, ["reconnect", "backlog"]);
    assert!(
        !c.rows.iter().any(|r| r.metric.starts_with("send_lag")),
        "the generator's own lag is no target figure"
    );
    assert_eq!(c.baseline.load_s, 10.0);
    let json: Value = serde_json::from_str(&c.to_json()).unwrap();
    if let Err(e) = SchemaSet::global().validate_value(BASELINE_REPORT_SCHEMA, &json).unwrap() {
        panic!("comparison violates {BASELINE_REPORT_SCHEMA}: {e}");
    }
}

#[test]
fn a_p99_increase_beyond_pct_and_floor_is_a_regression() {
    let c = compare_with(|r| set(r, "/stats/command_routing/p99_ms", json!(12.0)));
    assert_eq!(regressions(&c), ["command_routing.p99_ms"], "{}", c.to_table());
    assert_eq!(c.exit_code(), 1);
    assert!(c.to_table().contains("REGRESSION: command_routing.p99_ms"), "{}", c.to_table());
    let c = compare_with(|r| set(r, "/stats/update/p999_ms", json!(30.0)));
    assert_eq!(regressions(&c), ["update.p999_ms"]);
}

#[test]
fn small_absolute_or_relative_changes_are_noise() {
    // +50% but only +0.1 ms: under the 1 ms floor.
    let old = report();
    let mut fast = report();
    set(&mut fast, "/stats/connect/p99_ms", json!(0.2));
    let mut slower = fast.clone();
    set(&mut slower, "/stats/connect/p99_ms", json!(0.3));
    let c = compare(&parse("a", &fast), &parse("b", &slower), &Thresholds::default(), false).unwrap();
    assert_eq!(verdict_of(&c, "connect.p99_ms"), RowVerdict::WithinThreshold, "{}", c.to_table());
    // +1.5 ms but only +7.5%: under the 10% threshold.
    let mut r = old.clone();
    set(&mut r, "/stats/command_routing/p99_ms", json!(20.0));
    let mut s = r.clone();
    set(&mut s, "/stats/command_routing/p99_ms", json!(21.5));
    let c = compare(&parse("a", &r), &parse("b", &s), &Thresholds::default(), false).unwrap();
    assert_eq!(c.verdict, Outcome::NoRegression, "{}", c.to_table());
    // p50 and max are shown, not gated: tripling them is no regression by default.
    let c = compare_with(|r| {
        set(r, "/stats/accept/p50_ms", json!(30.0));
        set(r, "/stats/accept/max_ms", json!(200.0));
    });
    assert_eq!(verdict_of(&c, "accept.p50_ms"), RowVerdict::NotGated);
    assert_eq!(c.verdict, Outcome::NoRegression, "{}", c.to_table());
}

#[test]
fn gated_percentiles_can_be_chosen() {
    let t = Thresholds { gated_percentiles: vec![Percentile::P50], ..Thresholds::default() };
    let mut new = report();
    set(&mut new, "/stats/accept/p50_ms", json!(30.0));
    set(&mut new, "/stats/accept/p99_ms", json!(30.0));
    let c = compare(&parse("a", &report()), &parse("b", &new), &t, false).unwrap();
    assert_eq!(regressions(&c), ["accept.p50_ms"], "{}", c.to_table());
    assert_eq!("p99.9".parse::<Percentile>(), Ok(Percentile::P999));
    assert!("p95".parse::<Percentile>().is_err());
}

#[test]
fn a_throughput_drop_beyond_the_threshold_is_a_regression() {
    // 1,000 -> 940 delivered over the same 10 s: -6%.
    let c = compare_with(|r| set(r, "/stats/ledger/delivered", json!(940)));
    assert_eq!(regressions(&c), ["throughput"], "{}", c.to_table());
    // -3%: within the 5% threshold.
    let c = compare_with(|r| set(r, "/stats/ledger/delivered", json!(970)));
    assert_eq!(c.verdict, Outcome::NoRegression, "{}", c.to_table());
    // The same deliveries over a longer load: fewer per second.
    let c = compare_with(|r| {
        let t = r.pointer_mut("/stats/timeseries").unwrap().as_array_mut().unwrap();
        t[11]["sent"] = json!(1);
    });
    assert_eq!(c.candidate.load_s, 12.0);
    assert_eq!(regressions(&c), ["throughput"], "{}", c.to_table());
}

#[test]
fn any_lost_expired_or_unacknowledged_command_is_a_regression() {
    for field in ["lost", "delivered_after_expiry", "unacknowledged"] {
        let c = compare_with(|r| set(r, &format!("/stats/ledger/{field}"), json!(1)));
        assert_eq!(regressions(&c), [format!("ledger.{field}").as_str()], "{}", c.to_table());
    }
}

#[test]
fn duplicates_and_errors_regress_beyond_pct_and_floor() {
    let c = compare_with(|r| set(r, "/stats/ledger/duplicated", json!(1)));
    assert_eq!(c.verdict, Outcome::NoRegression, "one duplicate is at the floor: {}", c.to_table());
    let c = compare_with(|r| set(r, "/stats/ledger/duplicated", json!(5)));
    assert_eq!(regressions(&c), ["ledger.duplicated"], "{}", c.to_table());
    let c = compare_with(|r| set(r, "/stats/errors", json!({ "transport": 3, "rate_limited": 4 })));
    assert_eq!(regressions(&c), ["errors"], "{}", c.to_table());
    let row = c.rows.iter().find(|r| r.metric == "errors").unwrap();
    assert_eq!((row.old, row.new, row.change_pct), (0.0, 7.0, None));
}

#[test]
fn improvements_are_noted() {
    let c = compare_with(|r| {
        set(r, "/stats/command_routing/p99_ms", json!(5.0));
        set(r, "/stats/ledger/delivered", json!(1100));
    });
    assert_eq!(c.verdict, Outcome::NoRegression);
    assert_eq!(c.improvements, 2, "{}", c.to_table());
    assert_eq!(verdict_of(&c, "command_routing.p99_ms"), RowVerdict::Improvement);
    assert_eq!(verdict_of(&c, "throughput"), RowVerdict::Improvement);
    assert!(c.to_table().contains("improvements: command_routing.p99_ms, throughput"), "{}", c.to_table());
}

#[test]
fn a_metric_without_samples_on_one_side_is_skipped() {
    let c = compare_with(|r| set(r, "/stats/reconnect", latency(4000.0)));
    assert_eq!(c.skipped, ["reconnect", "backlog"]);
    assert!(!c.rows.iter().any(|r| r.metric.starts_with("reconnect")));
}

#[test]
fn inputs_that_are_not_load_reports_or_differ_in_scenario_are_refused() {
    let err = LoadReport::parse("x.json", "not json").unwrap_err();
    assert!(err.to_string().contains("x.json") && err.to_string().contains("not JSON"), "{err}");
    let mut r = report();
    set(&mut r, "/verdict", json!("fine"));
    let err = LoadReport::parse("y.json", &r.to_string()).unwrap_err();
    assert!(err.to_string().contains("/verdict"), "{err}");
    let err = LoadReport::parse("c.json", r#"{"tool": "relaykit check"}"#).unwrap_err();
    assert!(matches!(err, BaselineError::NotAReport { .. }), "{err}");

    let mut other = report();
    set(&mut other, "/scenario", json!("soak"));
    let (a, b) = (parse("a", &report()), parse("b", &other));
    let err = compare(&a, &b, &Thresholds::default(), false).unwrap_err();
    assert!(matches!(err, BaselineError::DifferentScenarios { .. }), "{err}");
    let c = compare(&a, &b, &Thresholds::default(), true).unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("different scenarios")), "{:?}", c.warnings);

    let t = Thresholds { latency_floor_ms: -1.0, ..Thresholds::default() };
    assert!(matches!(compare(&a, &a, &t, false), Err(BaselineError::Threshold { .. })));
}

#[test]
fn an_invalid_run_is_flagged() {
    let c = compare_with(|r| set(r, "/verdict", json!("invalid")));
    assert!(c.warnings.iter().any(|w| w.contains("candidate run is invalid")), "{:?}", c.warnings);
}
