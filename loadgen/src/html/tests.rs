//! Unit tests of [`super`] (html.rs).

use super::*;
use crate::record::Aggregator;
use crate::report::{Generator, SloCheck};

fn report(stats: crate::record::Stats, verdict: Verdict) -> Report {
    let check =
        |(name, threshold): (&str, f64)| SloCheck { name: name.into(), threshold, actual: 0.0, pass: true };
    let slo = [
        ("command_routing_p99_ms", 500.0),
        ("update_p99_ms", 200.0),
        ("connect_p99_ms", 5000.0),
        ("lost", 0.0),
    ];
    let g = Generator { cpu_percent: 0.0, rss_kib: 0, send_lag_p99_ms: 0.0, valid: true, reasons: vec![] };
    Report {
        tool: "relaykit load".into(),
        version: "0.1.0".into(),
        scenario: "empty".into(),
        target: "embedded".into(),
        started_at_ms: 0,
        duration_ms: 0,
        devices: 0,
        verdict,
        slo: slo.map(check).to_vec(),
        stats,
        generator: g,
        faults: Vec::new(),
    }
}

#[test]
fn an_empty_report_renders_without_nan_or_infinity() {
    let html = render(&report(Aggregator::default().finish(), Verdict::Pass));
    assert!(!html.contains("NaN"), "{html}");
    assert!(!html.to_lowercase().contains("inf"), "{html}");
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("class=\"series\"").count(), 0, "nothing to plot");
    assert_eq!(html.matches(">no samples</text>").count(), 3);
    assert!(html.contains("1970-01-01 00:00:00 UTC"));
}

#[test]
fn report_text_is_escaped() {
    let mut r = report(Aggregator::default().finish(), Verdict::SloBreached);
    r.scenario = "<script>alert('x')</script>".into();
    r.target = "http://a/?b=1&c=\"2\"".into();
    r.generator.reasons = vec!["lag > 50 ms".into()];
    r.slo[0].actual = 900.0;
    r.slo[0].pass = false;
    let html = render(&r);
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(html.contains("http://a/?b=1&amp;c=&quot;2&quot;"));
    assert!(html.contains("lag &gt; 50 ms"));
    assert!(html.contains(">slo_breached<") && html.contains(">BREACHED<"));
}

#[test]
fn gaps_break_the_line_and_lone_points_stay_visible() {
    let x = Axis::linear(10.0, true, "x");
    let y = Axis::log(&[1.0, 100.0], "y");
    let d = path(&x, &y, &[Some((0.0, 1.0)), None, Some((2.0, 10.0)), Some((3.0, 0.0)), Some((4.0, 100.0))]);
    // 1 (lone), gap, 10 (lone: 0 cannot be placed on a log axis), 100 (lone).
    assert_eq!(d.matches('M').count(), 3, "{d}");
    assert_eq!(d.matches("l0 0").count(), 3, "{d}");
    let d = path(&x, &y, &[Some((0.0, 1.0)), Some((1.0, 2.0))]);
    assert!(d.starts_with("M66.0 ") && d.contains('L') && !d.contains('l'), "{d}");
}

#[test]
fn axes_have_round_ticks() {
    let a = Axis::linear(7.3, false, "");
    assert_eq!(a.ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0", "2", "4", "6", "8"]);
    let a = Axis::linear(0.37, false, "");
    assert_eq!((a.hi, a.ticks[1].1.as_str()), (0.4, "0.1"));
    let a = Axis::linear(2.0, true, "");
    assert!(a.ticks.iter().all(|t| !t.1.contains('.')), "{:?}", a.ticks);
    let a = Axis::log(&[0.8, 3.0, 500.0], "");
    assert_eq!((a.lo, a.hi), (-1.0, 3.0));
    assert_eq!(a.ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0.1", "1", "10", "100", "1000"]);
    let a = Axis::log(&[2.0, 3.0], "");
    assert_eq!(a.ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["1", "2", "5", "10"]);
    for a in [Axis::log(&[0.8, 3.0, 500.0], ""), Axis::log(&[2.0, 3.0], ""), Axis::linear(7.3, true, "")] {
        let at: Vec<f64> = a.ticks.iter().map(|t| a.frac(t.0).expect("tick on the axis")).collect();
        assert!(at[0] == 0.0 && at[at.len() - 1] == 1.0 && at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    }
    let a = Axis::log(&[0.0, f64::NAN], "");
    assert!(a.lo.is_finite() && a.hi > a.lo);
    // The percentile axis: 0% at 0, 90% at 1, 99.99% at 4, the maximum at 5.
    assert_eq!(percentile_x(0.0), 0.0);
    assert!((percentile_x(90.0) - 1.0).abs() < 1e-9);
    assert!((percentile_x(99.99) - 4.0).abs() < 1e-6);
    assert_eq!(percentile_x(100.0), 5.0);
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_795_698_662_137), "2026-11-26 13:11:02 UTC");
}

#[test]
fn fault_steps_get_a_table_row_each_with_their_cost() {
    use crate::faults::{Action, FaultOutcome};
    use crate::record::{Event, Window};
    let mut a = Aggregator::keeping_samples();
    a.record(Event::Sent { cid: 1, intended: 2_000_000, actual: 2_000_000, held: false });
    a.record(Event::Accepted { cid: 1, at: 2_001_000 });
    a.record(Event::Reconnected { dropped: 2_500_000, at: 3_000_000 });
    let window = a.window_stats(&[Window { from: 1_000_000, to: 9_000_000, healed: None }]).remove(0);
    let mut r = report(a.finish(), Verdict::SloBreached);
    assert!(!render(&r).contains("Fault steps"), "no section without fault steps");
    r.faults.push(FaultOutcome {
        name: "kill <-9>".into(),
        action: Action::Kill,
        at_s: 2.0,
        duration_s: 1.0,
        applied_at_s: 2.2,
        ended_at_s: 3.3,
        devices: 20,
        target_down_ms: Some(1100.0),
        error: Some("not ready".into()),
        window,
    });
    let html = render(&r);
    let row = html.split("<tr>").find(|row| row.contains("kill &lt;-9&gt;")).expect("a row for the step");
    // Step, action, applied, ended, devices, down, sent 1, lost 1 (accepted, never delivered).
    for cell in [">kill<", ">2.2<", ">3.3<", ">20<", ">1100<", ">not ready<", "class=\"bad\">1<", ">500<"] {
        assert!(row.contains(cell), "{cell} missing from {row}");
    }
    // Shaded on both time charts, named on hover.
    assert_eq!(html.matches("<rect class=\"band\"").count(), 2, "{html}");
    assert_eq!(html.matches("<title>kill &lt;-9&gt;</title>").count(), 2);
}
