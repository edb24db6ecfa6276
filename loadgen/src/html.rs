//! The report as one self-contained HTML page: inline CSS, charts as inline SVG drawn here, no
//! script, font or stylesheet from anywhere else, so the file can be archived as a CI artifact
//! and opened offline. Every text from the report is escaped; every coordinate is finite.

use std::fmt::{self, Display, Write as _};

use crate::record::Latency;
use crate::report::{Report, Verdict};

/// `write!` into a `String`, which cannot fail.
macro_rules! w {
    ($($t:tt)*) => {{
        let _ = write!($($t)*);
    }};
}
pub(crate) use w;

// Chart geometry (SVG user units; the SVG scales to the page width).
const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 66.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 46.0;

pub(crate) const ROUTING: &str = "#1f6fb4";
pub(crate) const UPDATE: &str = "#d9730d";
const END_TO_END: &str = "#2f9e44";
pub(crate) const SENT: &str = "#7048e8";
pub(crate) const DELIVERED: &str = "#2f9e44";

pub(crate) const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;\
background:#f6f7f9;color:#1d2430}main{max-width:960px;margin:0 auto;padding:24px}\
h1{font-size:1.5em;margin:0 0 8px}h2{font-size:1.15em;margin:28px 0 8px}\
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:4px 16px 12px;margin:12px 0}\
table{border-collapse:collapse;width:100%;font-size:.92em}\
th,td{padding:4px 8px;border-bottom:1px solid #eceff3;text-align:right}\
th:first-child,td:first-child,.text{text-align:left}th{background:#f1f3f5}\
td.note{text-align:left;color:#5c6570}dl{display:grid;grid-template-columns:max-content 1fr;\
gap:2px 16px;margin:8px 0}dt{color:#5c6570}dd{margin:0}\
.verdict{display:inline-block;padding:4px 14px;border-radius:4px;color:#fff;font-weight:700;\
text-transform:uppercase;letter-spacing:.04em}.v-pass{background:#2b8a3e}\
.v-slo_breached{background:#c92a2a}.v-invalid{background:#e8590c}\
.ok{color:#2b8a3e;font-weight:600}.bad{color:#c92a2a;font-weight:700}\
figure{margin:8px 0}figcaption{color:#5c6570;font-size:.9em;margin-top:4px}\
svg{width:100%;height:auto;font-size:12px}svg text{fill:#1d2430}";

mod faults;

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(32 * 1024);
    let title = format!("relaykit load: {}", esc(&report.scenario));
    w!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    w!(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(out, "<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n");
    header(&mut out, report, &title);
    slo_table(&mut out, report);
    latency_table(&mut out, report);
    ledger_table(&mut out, report);
    faults::fault_table(&mut out, report);
    generator(&mut out, report);
    w!(out, "<h2>Charts</h2>\n<section>\n");
    out.push_str(&latency_over_time(report));
    out.push_str(&percentile_distribution(report));
    out.push_str(&throughput(report));
    w!(out, "</section>\n</main>\n</body>\n</html>\n");
    out
}

/// Escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A number in a table: fixed decimals, a dash when not finite.
pub(crate) struct Num(pub(crate) f64, pub(crate) usize);

impl Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_finite() { write!(f, "{:.*}", self.1, self.0) } else { f.write_str("–") }
    }
}

/// A number as written in the scenario (shortest form: `500`, `0.000001`), a dash when not finite.
pub(crate) fn short(v: f64) -> String {
    if v.is_finite() { v.to_string() } else { "–".into() }
}

/// An SVG coordinate: one decimal, 0 when not finite (never `NaN` or `inf` in the markup).
struct C(f64);

impl Display for C {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", if self.0.is_finite() { self.0 } else { 0.0 })
    }
}

/// `YYYY-MM-DD hh:mm:ss UTC` of a Unix time in ms (civil-from-days, proleptic Gregorian).
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn header(out: &mut String, r: &Report, title: &str) {
    let meaning = match r.verdict {
        Verdict::Pass => "every SLO held and the generator kept its schedule",
        Verdict::SloBreached => "at least one SLO was breached",
        Verdict::Invalid => "the generator, not the target, was the bottleneck: the figures say nothing",
    };
    let v = r.verdict.as_str();
    w!(out, "<h1>{title}</h1>\n<p><span class=\"verdict v-{v}\">{v}</span> {meaning}</p>\n");
    w!(out, "<section><dl>\n<dt>scenario</dt><dd>{}</dd>\n", esc(&r.scenario));
    w!(out, "<dt>target</dt><dd>{}</dd>\n", esc(&r.target));
    w!(out, "<dt>devices</dt><dd>{}</dd>\n", r.devices);
    w!(out, "<dt>duration</dt><dd>{} s</dd>\n", Num(r.duration_ms as f64 / 1000.0, 1));
    w!(out, "<dt>started</dt><dd>{}</dd>\n", utc(r.started_at_ms));
    w!(out, "<dt>producer</dt><dd>{} {}</dd>\n</dl></section>\n", esc(&r.tool), esc(&r.version));
}

fn slo_table(out: &mut String, r: &Report) {
    w!(out, "<h2>SLOs</h2>\n<section><table>\n");
    w!(out, "<tr><th>SLO</th><th>budget</th><th>measured</th><th>result</th></tr>\n");
    for c in &r.slo {
        let (class, result) = if c.pass { ("ok", "ok") } else { ("bad", "BREACHED") };
        w!(out, "<tr><td>{}</td><td>{}</td><td>{}</td>", esc(&c.name), short(c.threshold), Num(c.actual, 2));
        w!(out, "<td class=\"{class}\">{result}</td></tr>\n");
    }
    w!(out, "</table></section>\n");
}

fn metrics(r: &Report) -> [(&'static str, &'static str, &Latency); 6] {
    let s = &r.stats;
    [
        ("command_routing", "phone intended send → desktop receive", &s.command_routing),
        ("update", "desktop send → phone receive of live updates", &s.update),
        ("accept", "phone intended send → accepted", &s.accept),
        ("end_to_end", "phone intended send → tool_complete at the phone", &s.end_to_end),
        ("connect", "connect → welcome", &s.connect),
        ("send_lag", "generator lateness: actual − intended send time", &s.send_lag),
    ]
}

fn latency_table(out: &mut String, r: &Report) {
    w!(out, "<h2>Latency (ms)</h2>\n<section><table>\n<tr><th>metric</th><th>count</th>");
    w!(out, "<th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>\n");
    let s = &r.stats;
    let offline: [(&str, &str, &Latency); 2] = [
        ("reconnect", "back from an offline step → new welcome", &s.reconnect),
        ("backlog", "queued while the desktop was offline → delivered", &s.backlog),
    ];
    for (name, meaning, l) in metrics(r).into_iter().chain(offline) {
        w!(out, "<tr><td title=\"{}\">{name}</td><td>{}</td>", esc(meaning), l.count);
        for v in [l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.mean_ms] {
            w!(out, "<td>{}</td>", Num(v, 2));
        }
        w!(out, "</tr>\n");
    }
    w!(out, "</table></section>\n");
}

fn ledger_table(out: &mut String, r: &Report) {
    let l = &r.stats.ledger;
    let rows = [
        ("sent", l.sent, "commands sent by phones"),
        ("accepted", l.accepted, "answered accepted"),
        ("delivered", l.delivered, "delivered to their desktop at least once"),
        (
            "delivered_after_reconnect",
            l.delivered_after_reconnect,
            "first delivered from the backlog of a desktop that had been offline",
        ),
        ("delivered_after_expiry", l.delivered_after_expiry, "delivered after their time to live ran out"),
        ("lost", l.lost, "accepted but never delivered: at-least-once broken"),
        ("duplicated", l.duplicated, "extra deliveries (allowed by at-least-once)"),
        ("unacknowledged", l.unacknowledged, "sent but neither accepted nor delivered"),
        ("resent", l.resent, "send frames repeated (same id) for commands or results without an answer yet"),
        ("completed", l.completed, "final tool_complete reached the phone"),
        ("updates", l.updates, "live updates received by phones"),
        ("out_of_order", l.out_of_order, "live updates whose pseq went backwards"),
    ];
    w!(out, "<h2>Delivery ledger</h2>\n<section><table>\n");
    w!(out, "<tr><th>outcome</th><th>commands</th><th class=\"text\">meaning</th></tr>\n");
    for (name, n, meaning) in rows {
        let class = if name == "lost" && n > 0 { " class=\"bad\"" } else { "" };
        w!(out, "<tr><td>{name}</td><td{class}>{n}</td><td class=\"note\">{meaning}</td></tr>\n");
    }
    w!(out, "</table>\n");
    if r.stats.errors.is_empty() {
        w!(out, "<p>errors: none</p>\n");
    } else {
        w!(out, "<table>\n<tr><th>error</th><th>count</th></tr>\n");
        for (code, n) in &r.stats.errors {
            w!(out, "<tr><td>{}</td><td>{n}</td></tr>\n", esc(code));
        }
        w!(out, "</table>\n");
    }
    w!(out, "</section>\n");
}

fn generator(out: &mut String, r: &Report) {
    let g = &r.generator;
    let (class, valid) = if g.valid { ("ok", "yes") } else { ("bad", "no: the run is invalid") };
    w!(out, "<h2>Generator health</h2>\n<section><dl>\n");
    w!(out, "<dt>CPU</dt><dd>{} % of one core</dd>\n", Num(g.cpu_percent, 0));
    w!(out, "<dt>memory (RSS)</dt><dd>{} MiB</dd>\n", Num(g.rss_kib as f64 / 1024.0, 1));
    w!(out, "<dt>send lag p99</dt><dd>{} ms</dd>\n", Num(g.send_lag_p99_ms, 2));
    w!(out, "<dt>valid</dt><dd class=\"{class}\">{valid}</dd>\n</dl>\n");
    if !g.reasons.is_empty() {
        let items: String = g.reasons.iter().map(|reason| format!("<li>{}</li>\n", esc(reason))).collect();
        w!(out, "<ul>\n{items}</ul>\n");
    }
    w!(out, "</section>\n");
}

/// One axis: its range (in data units, or log10 of them when `log`) and labelled ticks.
#[derive(Debug)]
pub(crate) struct Axis {
    pub(crate) lo: f64,
    pub(crate) hi: f64,
    pub(crate) log: bool,
    ticks: Vec<(f64, String)>,
    label: String,
}

impl Axis {
    /// Position in [0, 1] of `v`, `None` when it cannot be placed (log of 0, outside the range).
    fn frac(&self, v: f64) -> Option<f64> {
        let v = if self.log { v.log10() } else { v };
        let f = (v - self.lo) / (self.hi - self.lo);
        (f.is_finite() && (-1e-9..=1.0 + 1e-9).contains(&f)).then_some(f.clamp(0.0, 1.0))
    }

    /// From 0 to a round value at or above `max`, about five ticks of 1, 2 or 5 times 10^k.
    pub(crate) fn linear(max: f64, integer: bool, label: &str) -> Axis {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        let raw = max / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let mut step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
        if integer {
            step = step.max(1.0).round();
        }
        let n = (max / step - 1e-9).ceil().max(1.0) as u32;
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        let ticks = (0..=n).map(|i| (f64::from(i) * step, format!("{:.*}", decimals, f64::from(i) * step)));
        Axis { lo: 0.0, hi: f64::from(n) * step, log: false, ticks: ticks.collect(), label: label.into() }
    }

    /// Whole decades around the positive finite `values` (1 µs .. 10^7 ms), with 2 and 5 ticks
    /// when there are few decades.
    pub(crate) fn log(values: &[f64], label: &str) -> Axis {
        let positive = || values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
        let lo = positive().fold(f64::INFINITY, f64::min).log10().floor().clamp(-3.0, 6.0);
        let hi = positive().fold(0.0, f64::max).log10().ceil().clamp(lo + 1.0, 7.0);
        let (lo, hi) = if positive().next().is_none() { (0.0, 1.0) } else { (lo, hi) };
        let mut ticks = Vec::new();
        for k in lo as i32..=hi as i32 {
            let decimals = (-k).max(0) as usize;
            let mults: &[f64] = if hi - lo <= 2.0 && k < hi as i32 { &[1.0, 2.0, 5.0] } else { &[1.0] };
            for m in mults {
                let v = m * 10f64.powi(k);
                ticks.push((v, format!("{v:.decimals$}")));
            }
        }
        Axis { lo, hi, log: true, ticks, label: label.into() }
    }
}

/// One plotted line; `None` points are gaps (no sample in that second).
#[derive(Debug)]
pub(crate) struct Series {
    name: String,
    color: &'static str,
    /// Stroke width; a wide, translucent line stays visible under a thin one that coincides.
    pub(crate) width: f64,
    points: Vec<Option<(f64, f64)>>,
}

impl Series {
    pub(crate) fn new(name: &str, color: &'static str, points: Vec<Option<(f64, f64)>>) -> Series {
        Series { name: name.into(), color, width: 2.0, points }
    }

    /// Stroke attributes, for the line and its legend swatch.
    fn stroke(&self) -> String {
        let opacity = if self.width > 2.0 { " stroke-opacity=\"0.45\"" } else { "" };
        format!("stroke=\"{}\" stroke-width=\"{}\"{opacity}", self.color, self.width)
    }
}

/// A dashed horizontal reference line (an SLO budget).
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) label: String,
    pub(crate) color: &'static str,
    pub(crate) y: f64,
}

/// Plot area: left, top, width, height.
const PLOT: (f64, f64, f64, f64) = (LEFT, TOP, WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);

fn to_px(x: &Axis, y: &Axis, (vx, vy): (f64, f64)) -> Option<(f64, f64)> {
    let (l, t, w, h) = PLOT;
    Some((l + x.frac(vx)? * w, t + h - y.frac(vy)? * h))
}

/// A line chart with axes, grid, ticks, labels, a legend and optional budget lines.
pub(crate) fn chart(
    title: &str,
    caption: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    budgets: &[Budget],
) -> String {
    chart_with_bands(title, caption, x, y, series, budgets, &[])
}

/// A stretch of the x axis to shade (a fault step on a time axis), named on hover.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Band {
    pub(crate) from: f64,
    pub(crate) to: f64,
    pub(crate) label: String,
}

/// [`chart`] with shaded bands behind the series.
fn chart_with_bands(
    title: &str,
    caption: &str,
    x: &Axis,
    y: &Axis,
    series: &[Series],
    budgets: &[Budget],
    bands: &[Band],
) -> String {
    let (l, t, w, h) = PLOT;
    let mut s = String::new();
    w!(s, "<figure>\n<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">\n", esc(title));
    w!(s, "<title>{}</title>\n", esc(title));
    text(&mut s, (l, 14.0), "font-weight=\"700\" font-size=\"13\"", title);
    w!(s, "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"#fbfcfd\"/>\n", C(w), C(h));
    for (v, label) in &y.ticks {
        let Some(py) = y.frac(*v).map(|f| t + h - f * h) else { continue };
        line(&mut s, (l, py), (l + w, py), "stroke=\"#e3e7eb\"");
        text(&mut s, (l - 6.0, py + 4.0), "text-anchor=\"end\"", label);
    }
    for (v, label) in &x.ticks {
        let Some(px) = x.frac(*v).map(|f| l + f * w) else { continue };
        line(&mut s, (px, t + h), (px, t + h + 5.0), "stroke=\"#8a939c\"");
        text(&mut s, (px, t + h + 18.0), "text-anchor=\"middle\"", label);
    }
    w!(s, "<path d=\"M{l} {t}V{}H{}\" fill=\"none\" stroke=\"#5c6570\"/>\n", C(t + h), C(l + w));
    for b in bands {
        // Clamped to a linear axis: a step that outlasts the series still shows where it was.
        let at = |v: f64| x.frac(if x.log { v } else { v.clamp(x.lo, x.hi) }).map(|f| l + f * w);
        let (Some(x0), Some(x1)) = (at(b.from), at(b.to)) else { continue };
        w!(
            s,
            "<rect class=\"band\" x=\"{}\" y=\"{t}\" width=\"{}\" height=\"{}\" ",
            C(x0),
            C((x1 - x0).max(2.0)),
            C(h)
        );
        w!(s, "fill=\"#c92a2a\" fill-opacity=\"0.08\"><title>{}</title></rect>\n", esc(&b.label));
        text(&mut s, (x0 + 3.0, t + 12.0), "font-size=\"10\" fill=\"#c92a2a\"", &b.label);
    }
    text(&mut s, (l + w / 2.0, HEIGHT - 6.0), "text-anchor=\"middle\"", &x.label);
    let rotate = format!("text-anchor=\"middle\" transform=\"rotate(-90 16 {})\"", C(t + h / 2.0));
    text(&mut s, (16.0, t + h / 2.0), &rotate, &y.label);
    let mut legend = Vec::new();
    for b in budgets {
        let stroke = format!("stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"7 5\"", b.color);
        match y.frac(b.y).map(|f| t + h - f * h) {
            Some(py) => {
                line(&mut s, (l, py), (l + w, py), &format!("class=\"budget\" {stroke}"));
                legend.push((b.label.clone(), stroke));
            }
            None => legend.push((format!("{} (off scale)", b.label), stroke)),
        }
    }
    let mut plotted = 0;
    for series in series {
        let d = path(x, y, &series.points);
        if d.is_empty() {
            legend.push((format!("{} (no samples)", series.name), series.stroke()));
            continue;
        }
        plotted += 1;
        w!(s, "<path class=\"series\" d=\"{d}\" fill=\"none\" {} stroke-linecap=\"round\" ", series.stroke());
        w!(s, "stroke-linejoin=\"round\"><title>{}</title></path>\n", esc(&series.name));
        legend.push((series.name.clone(), series.stroke()));
    }
    if plotted == 0 {
        text(&mut s, (l + w / 2.0, t + h / 2.0), "text-anchor=\"middle\" fill=\"#5c6570\"", "no samples");
    }
    let mut lx = l;
    for (label, stroke) in legend {
        line(&mut s, (lx, 26.0), (lx + 22.0, 26.0), &stroke);
        text(&mut s, (lx + 27.0, 30.0), "", &label);
        lx += 40.0 + 6.5 * label.chars().count() as f64;
    }
    w!(s, "</svg>\n<figcaption>{}</figcaption>\n</figure>\n", esc(caption));
    s
}

fn line(s: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
    w!(s, "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {attrs}/>", C(x1), C(y1), C(x2), C(y2));
}

/// Escaped `label` at (x, y).
fn text(s: &mut String, (x, y): (f64, f64), attrs: &str, label: &str) {
    w!(s, "<text x=\"{}\" y=\"{}\" {attrs}>{}</text>\n", C(x), C(y), esc(label));
}

/// SVG path data: `M` after each gap, `L` within a run; a lone point is a zero-length segment
/// (drawn as a dot by the round line cap).
fn path(x: &Axis, y: &Axis, points: &[Option<(f64, f64)>]) -> String {
    let mut d = String::new();
    let mut run = 0;
    for p in points {
        match p.and_then(|p| to_px(x, y, p)) {
            Some((px, py)) => {
                w!(d, "{}{} {}", if run == 0 { "M" } else { "L" }, C(px), C(py));
                run += 1;
            }
            None => {
                if run == 1 {
                    d.push_str("l0 0");
                }
                run = 0;
            }
        }
    }
    if run == 1 {
        d.push_str("l0 0");
    }
    d
}

/// The fault steps on the run clock (the time series' seconds).
fn fault_bands(r: &Report) -> Vec<Band> {
    r.faults.iter().map(|f| Band { from: f.applied_at_s, to: f.ended_at_s, label: f.name.clone() }).collect()
}

fn time_axis(r: &Report) -> Axis {
    let last = r.stats.timeseries.last().map_or(0, |s| s.t_s);
    Axis::linear(last as f64, true, "seconds since start")
}

fn latency_over_time(r: &Report) -> String {
    let ts = &r.stats.timeseries;
    let point = |t: u64, v: f64| (v > 0.0).then_some((t as f64, v));
    let series = [
        Series::new(
            "command routing p99",
            ROUTING,
            ts.iter().map(|s| point(s.t_s, s.routing_p99_ms)).collect(),
        ),
        Series::new("update p99", UPDATE, ts.iter().map(|s| point(s.t_s, s.update_p99_ms)).collect()),
    ];
    let budgets: Vec<Budget> =
        [("command_routing_p99_ms", "routing budget", ROUTING), ("update_p99_ms", "update budget", UPDATE)]
            .into_iter()
            .filter_map(|(name, label, color)| {
                let c = r.slo.iter().find(|c| c.name == name)?;
                Some(Budget { label: format!("{label} {} ms", short(c.threshold)), color, y: c.threshold })
            })
            .collect();
    let values: Vec<f64> = ts
        .iter()
        .flat_map(|s| [s.routing_p99_ms, s.update_p99_ms])
        .chain(budgets.iter().map(|b| b.y))
        .collect();
    let y = Axis::log(&values, "ms (log scale)");
    chart_with_bands(
        "Latency over time",
        "p99 of each second (deliveries and updates that arrived in it); gaps are seconds without a sample; dashed: SLO budgets; shaded: fault steps.",
        &time_axis(r),
        &y,
        &series,
        &budgets,
        &fault_bands(r),
    )
}

/// x of a percentile on the 1/(1-p) log scale: 0% at 0, 90% at 1, 99% at 2 ...; the maximum
/// (100%, infinitely far) is drawn one decade right of 99.99%.
fn percentile_x(p: f64) -> f64 {
    if p >= 100.0 { 5.0 } else { (1.0 / (1.0 - p / 100.0)).log10() }
}

fn percentile_distribution(r: &Report) -> String {
    let s = &r.stats;
    let metrics = [
        ("command_routing", ROUTING, &s.command_routing),
        ("update", UPDATE, &s.update),
        ("end_to_end", END_TO_END, &s.end_to_end),
    ];
    let points = |l: &Latency| l.percentiles.iter().map(|[p, v]| Some((percentile_x(*p), *v))).collect();
    let series: Vec<Series> =
        metrics.iter().map(|&(name, color, l)| Series::new(name, color, points(l))).collect();
    let max = metrics.iter().flat_map(|(_, _, l)| l.percentiles.iter().map(|p| p[1])).fold(0.0, f64::max);
    let mut x = Axis::linear(5.0, false, "percentile (log scale of 1/(1-p))");
    let labels = [(0.0, "0%"), (50.0, "50%"), (90.0, "90%"), (99.0, "99%"), (99.9, "99.9%")];
    let labels = labels.into_iter().chain([(99.99, "99.99%"), (100.0, "max")]);
    x.ticks = labels.map(|(p, label)| (percentile_x(p), label.to_string())).collect();
    chart(
        "Percentile distribution",
        "Latency at each percentile (HdrHistogram); the tail is to the right.",
        &x,
        &Axis::linear(max, false, "ms"),
        &series,
        &[],
    )
}

fn throughput(r: &Report) -> String {
    let ts = &r.stats.timeseries;
    let per_second =
        |f: fn(&crate::record::Second) -> u64| ts.iter().map(|s| Some((s.t_s as f64, f(s) as f64))).collect();
    // Delivered usually equals sent: sent is drawn wide and pale underneath.
    let series = [
        Series { width: 6.0, ..Series::new("sent", SENT, per_second(|s| s.sent)) },
        Series::new("delivered", DELIVERED, per_second(|s| s.delivered)),
    ];
    let max = ts.iter().map(|s| s.sent.max(s.delivered)).max().unwrap_or(0);
    chart_with_bands(
        "Throughput",
        "Commands sent by phones and delivered (first delivery) to desktops, per second; shaded: fault steps.",
        &time_axis(r),
        &Axis::linear(max as f64, true, "commands per second"),
        &series,
        &[],
        &fault_bands(r),
    )
}

#[cfg(test)]
mod tests;
