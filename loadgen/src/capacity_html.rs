//! The capacity search as one self-contained HTML page: the level table and two inline SVG charts
//! drawn with the helpers of [`crate::html`] (latency p99 against the offered rate with the SLO
//! budgets, delivered against offered throughput), the knee marked in both. No script, font or
//! stylesheet from anywhere else.

use std::fmt::Write as _;

use crate::capacity::{CapacityReport, Level, Outcome, Stop};
use crate::html::{
    Axis, Budget, CSS, DELIVERED, Num, ROUTING, SENT, Series, UPDATE, chart, esc, short, utc, w,
};

const KNEE: &str = "#c92a2a";

/// Styles of this page on top of the load report's.
const EXTRA_CSS: &str = ".v-fail{background:#c92a2a}section{overflow-x:auto}tr.knee td{background:#e6f4ea;font-weight:600}td.note{min-width:18em}";

/// Renders the whole page.
pub(crate) fn render(r: &CapacityReport) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = format!("relaykit capacity: {}", esc(&r.scenario));
    w!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    w!(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(out, "<title>{title}</title>\n<style>{CSS}{EXTRA_CSS}</style>\n</head>\n<body>\n<main>\n");
    header(&mut out, r, &title);
    levels(&mut out, r);
    w!(out, "<h2>Charts</h2>\n<section>\n");
    out.push_str(&latency_chart(r));
    out.push_str(&throughput_chart(r));
    w!(out, "</section>\n</main>\n</body>\n</html>\n");
    out
}

fn header(out: &mut String, r: &CapacityReport, title: &str) {
    let meaning = match r.verdict {
        Outcome::Pass => "the search found the knee (at or above the gate, when one is set)",
        Outcome::Fail => "no level passed, or the knee is below the gate",
        Outcome::Invalid => "a level could not be measured: the knee is only a lower bound",
    };
    let v = r.verdict.as_str();
    w!(out, "<h1>{title}</h1>\n<p><span class=\"verdict v-{v}\">{v}</span> {meaning}</p>\n");
    let knee = match &r.knee {
        Some(k) => format!(
            "level {}: {} commands/s offered ({} per phone, {} users); routing p99 {} ms, update p99 {} ms",
            k.level,
            short(k.offered_commands_per_s),
            short(k.rate_per_mobile),
            k.users,
            Num(k.routing_p99_ms, 2),
            Num(k.update_p99_ms, 2)
        ),
        None => "none: the first level did not pass".into(),
    };
    let stopped = match r.stopped_because {
        Stop::SloBreached => "a level breached an SLO".to_string(),
        Stop::Invalid => "a level was invalid (the generator was the bottleneck)".into(),
        Stop::MaxSteps => "every level passed (the knee is a lower bound)".into(),
        Stop::Error => format!("error: {}", r.error.as_deref().unwrap_or("unknown")),
    };
    w!(out, "<section><dl>\n<dt>knee</dt><dd>{}</dd>\n", esc(&knee));
    w!(out, "<dt>stopped</dt><dd>{}</dd>\n", esc(&stopped));
    if let Some(g) = r.min_commands_per_s {
        w!(out, "<dt>gate</dt><dd>knee at least {} commands/s offered</dd>\n", short(g));
    }
    w!(out, "<dt>scenario</dt><dd>{}</dd>\n", esc(&r.scenario));
    w!(out, "<dt>target</dt><dd>{}</dd>\n", esc(&r.target));
    w!(out, "<dt>mode</dt><dd>{}, {} s per level</dd>\n", r.mode.as_str(), short(r.step_duration_s));
    w!(out, "<dt>started</dt><dd>{}</dd>\n", utc(r.started_at_ms));
    w!(out, "<dt>producer</dt><dd>{} {}</dd>\n</dl></section>\n", esc(&r.tool), esc(&r.version));
}

fn levels(out: &mut String, r: &CapacityReport) {
    w!(out, "<h2>Levels</h2>\n<section><table>\n<tr><th>level</th><th>rate/phone</th>");
    w!(out, "<th>users</th><th>offered/s</th><th>delivered/s</th><th>routing p50</th>");
    w!(out, "<th>routing p99</th><th>update p99</th><th>connect p99</th><th>lost</th>");
    w!(out, "<th>errors</th><th>verdict</th><th class=\"text\">why</th></tr>\n");
    let knee = r.knee.as_ref().map(|k| k.level);
    for l in &r.levels {
        let row = if knee == Some(l.level) { " class=\"knee\"" } else { "" };
        w!(out, "<tr{row}><td>{}</td><td>{}</td><td>{}</td>", l.level, short(l.rate_per_mobile), l.users);
        w!(
            out,
            "<td>{}</td><td>{}</td>",
            Num(l.offered_commands_per_s, 1),
            Num(l.achieved_commands_per_s, 1)
        );
        for v in [l.routing_p50_ms, l.routing_p99_ms, l.update_p99_ms, l.connect_p99_ms] {
            w!(out, "<td>{}</td>", Num(v, 2));
        }
        let class = if l.verdict == Outcome::Pass { "ok" } else { "bad" };
        let why: Vec<&str> = l.breaches.iter().chain(&l.invalid_reasons).map(String::as_str).collect();
        w!(out, "<td>{}</td><td>{}</td><td class=\"{class}\">{}</td>", l.lost, l.errors, l.verdict.as_str());
        w!(out, "<td class=\"note\">{}</td></tr>\n", esc(&why.join("; ")));
    }
    w!(
        out,
        "</table>\n<p>Latencies in ms over the whole level; delivered/s: mean over the whole seconds of the sending window.</p></section>\n"
    );
}

/// The x axis: offered commands/s, log scale when the levels multiply (they spread over decades).
fn offered_axis(r: &CapacityReport) -> Axis {
    let offered: Vec<f64> = r.levels.iter().map(|l| l.offered_commands_per_s).collect();
    let spread =
        offered.iter().copied().fold(0.0, f64::max) / offered.iter().copied().fold(f64::INFINITY, f64::min);
    if spread > 4.0 {
        Axis::log(&offered, "offered commands/s (log scale)")
    } else {
        Axis::linear(offered.iter().copied().fold(0.0, f64::max), false, "offered commands/s")
    }
}

/// A vertical line through the knee across the whole height of `y`.
fn knee_line(knee: Option<&Level>, y: &Axis) -> Option<Series> {
    let k = knee?;
    let (lo, hi) = if y.log { (10f64.powf(y.lo), 10f64.powf(y.hi)) } else { (y.lo, y.hi) };
    let x = k.offered_commands_per_s;
    Some(Series::new(&format!("knee (level {})", k.level), KNEE, vec![Some((x, lo)), Some((x, hi))]))
}

fn latency_chart(r: &CapacityReport) -> String {
    let point = |l: &Level, v: f64| Some((l.offered_commands_per_s, v));
    let mut series = vec![
        Series::new(
            "command routing p99",
            ROUTING,
            r.levels.iter().map(|l| point(l, l.routing_p99_ms)).collect(),
        ),
        Series::new("update p99", UPDATE, r.levels.iter().map(|l| point(l, l.update_p99_ms)).collect()),
    ];
    let budgets = [
        Budget {
            label: format!("routing budget {} ms", short(r.slo.command_routing_p99_ms)),
            color: ROUTING,
            y: r.slo.command_routing_p99_ms,
        },
        Budget {
            label: format!("update budget {} ms", short(r.slo.update_p99_ms)),
            color: UPDATE,
            y: r.slo.update_p99_ms,
        },
    ];
    let values: Vec<f64> = r
        .levels
        .iter()
        .flat_map(|l| [l.routing_p99_ms, l.update_p99_ms])
        .chain(budgets.iter().map(|b| b.y))
        .collect();
    let y = Axis::log(&values, "p99 over the level, ms (log scale)");
    series.extend(knee_line(r.knee.as_ref(), &y));
    chart(
        "Latency against offered load",
        "p99 of each level against the commands/s it offered; dashed: SLO budgets; red: the knee (last passing level).",
        &offered_axis(r),
        &y,
        &series,
        &budgets,
    )
}

fn throughput_chart(r: &CapacityReport) -> String {
    let x = offered_axis(r);
    let max =
        r.levels.iter().map(|l| l.offered_commands_per_s.max(l.achieved_commands_per_s)).fold(0.0, f64::max);
    let y = Axis::linear(max, false, "commands per second");
    // Offered is drawn wide and pale underneath: delivered covers it while the relay keeps up.
    let mut offered = Series::new(
        "offered",
        SENT,
        r.levels.iter().map(|l| Some((l.offered_commands_per_s, l.offered_commands_per_s))).collect(),
    );
    offered.width = 6.0;
    let mut series = vec![
        offered,
        Series::new(
            "delivered",
            DELIVERED,
            r.levels.iter().map(|l| Some((l.offered_commands_per_s, l.achieved_commands_per_s))).collect(),
        ),
    ];
    series.extend(knee_line(r.knee.as_ref(), &y));
    chart(
        "Throughput against offered load",
        "Commands delivered per second (mean of the level's sending window) against the commands/s offered.",
        &x,
        &y,
        &series,
        &[],
    )
}
