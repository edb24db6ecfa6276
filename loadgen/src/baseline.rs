//! `relaykit report --baseline OLD NEW`: compares two load reports (schema
//! `schemas/tools/load-report.json`) and names the regressions, for gating release candidates in
//! CI. The comparison has its own schema, `schemas/tools/baseline-report.json`.
//!
//! What is compared, and when a change counts:
//! - latency: p50, p90, p99, p99.9 and max of every metric that has samples in both reports
//!   (`send_lag` is left out: it measures the generator, not the target). Only the gated
//!   percentiles (p99 and p99.9 by default) can regress or improve, and only by more than both
//!   the relative threshold and the absolute floor: 0.2 ms -> 0.3 ms is noise.
//! - throughput: commands delivered per second of load, `ledger.delivered` over the seconds in
//!   which commands were sent (first to last second of the per-second series with `sent > 0`;
//!   the wall time when the series has none). The wall time alone would also count connecting
//!   and the drain.
//! - loss: `lost`, `delivered_after_expiry` and `unacknowledged` (each breaches the load verdict
//!   on its own) regress on any increase; `duplicated` and `errors` (summed over codes) by more
//!   than both a relative threshold and an absolute floor.
//!
//! Improvements are the same rules in the other direction.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use relaykit_protocol::schema::SchemaSet;
use serde::{Deserialize, Serialize};

/// Schema of the input reports.
pub const LOAD_REPORT_SCHEMA: &str = "tools/load-report";
/// Schema of [`Comparison::to_json`].
pub const BASELINE_REPORT_SCHEMA: &str = "tools/baseline-report";

/// Why two reports cannot be compared (exit code 2).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BaselineError {
    /// Not JSON, or JSON that is not a load report.
    #[error("{file}: not a load report (schema {LOAD_REPORT_SCHEMA}): {reason}")]
    NotAReport {
        /// File name, as given.
        file: String,
        /// Parser or schema message.
        reason: String,
    },
    /// The reports come from different scenarios.
    #[error(
        "the reports are of different scenarios ({old} vs {new}); pass --allow-different-scenarios to compare them anyway"
    )]
    DifferentScenarios {
        /// Scenario of the baseline.
        old: String,
        /// Scenario of the candidate.
        new: String,
    },
    /// A threshold is negative or not a number.
    #[error("invalid threshold {name} = {value}: must be a finite number >= 0")]
    Threshold {
        /// Flag name.
        name: &'static str,
        /// Value given.
        value: f64,
    },
}

/// A latency percentile of the load report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Percentile {
    /// Median (`p50_ms`).
    #[serde(rename = "p50")]
    P50,
    /// `p90_ms`.
    #[serde(rename = "p90")]
    P90,
    /// `p99_ms`.
    #[serde(rename = "p99")]
    P99,
    /// `p999_ms`.
    #[serde(rename = "p99.9")]
    P999,
    /// Largest sample (`max_ms`).
    #[serde(rename = "max")]
    Max,
}

impl Percentile {
    /// Every percentile, in report order.
    pub const ALL: [Percentile; 5] =
        [Percentile::P50, Percentile::P90, Percentile::P99, Percentile::P999, Percentile::Max];

    /// The name on the command line (`p50`, `p90`, `p99`, `p99.9`, `max`).
    pub fn as_str(self) -> &'static str {
        match self {
            Percentile::P50 => "p50",
            Percentile::P90 => "p90",
            Percentile::P99 => "p99",
            Percentile::P999 => "p99.9",
            Percentile::Max => "max",
        }
    }

    /// The field of the load report's latency object (`p999_ms`, ...).
    pub fn field(self) -> &'static str {
        match self {
            Percentile::P50 => "p50_ms",
            Percentile::P90 => "p90_ms",
            Percentile::P99 => "p99_ms",
            Percentile::P999 => "p999_ms",
            Percentile::Max => "max_ms",
        }
    }

    fn of(self, l: &InLatency) -> f64 {
        match self {
            Percentile::P50 => l.p50_ms,
            Percentile::P90 => l.p90_ms,
            Percentile::P99 => l.p99_ms,
            Percentile::P999 => l.p999_ms,
            Percentile::Max => l.max_ms,
        }
    }
}

impl std::str::FromStr for Percentile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Percentile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown percentile `{s}` (one of p50, p90, p99, p99.9, max)"))
    }
}

/// When a change counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thresholds {
    /// A gated latency percentile regresses when it grows by more than this, percent...
    pub max_latency_increase_pct: f64,
    /// ... and by more than this, ms.
    pub latency_floor_ms: f64,
    /// The percentiles that can regress; the others are shown only.
    pub gated_percentiles: Vec<Percentile>,
    /// Throughput regresses when it drops by more than this, percent.
    pub max_throughput_drop_pct: f64,
    /// `duplicated` and `errors` regress when they grow by more than this, percent...
    pub max_count_increase_pct: f64,
    /// ... and by more than this many.
    pub count_floor: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_latency_increase_pct: 10.0,
            latency_floor_ms: 1.0,
            gated_percentiles: vec![Percentile::P99, Percentile::P999],
            max_throughput_drop_pct: 5.0,
            max_count_increase_pct: 10.0,
            count_floor: 1,
        }
    }
}

impl Thresholds {
    fn check(&self) -> Result<(), BaselineError> {
        for (name, value) in [
            ("--max-latency-increase-pct", self.max_latency_increase_pct),
            ("--latency-floor-ms", self.latency_floor_ms),
            ("--max-throughput-drop-pct", self.max_throughput_drop_pct),
            ("--max-count-increase-pct", self.max_count_increase_pct),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(BaselineError::Threshold { name, value });
            }
        }
        Ok(())
    }
}

/// The parts of a load report the comparison reads (the schema has been checked first).
#[derive(Debug, Clone, Deserialize)]
struct Input {
    scenario: String,
    version: String,
    target: String,
    started_at_ms: u64,
    duration_ms: u64,
    verdict: String,
    stats: InStats,
}

#[derive(Debug, Clone, Deserialize)]
struct InStats {
    command_routing: InLatency,
    update: InLatency,
    accept: InLatency,
    end_to_end: InLatency,
    connect: InLatency,
    reconnect: InLatency,
    backlog: InLatency,
    ledger: InLedger,
    errors: BTreeMap<String, u64>,
    timeseries: Vec<InSecond>,
}

#[derive(Debug, Clone, Deserialize)]
struct InLatency {
    count: u64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
struct InLedger {
    delivered: u64,
    lost: u64,
    duplicated: u64,
    unacknowledged: u64,
    delivered_after_expiry: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct InSecond {
    t_s: u64,
    sent: u64,
}

impl Input {
    /// Seconds of load: first to last second in which commands were sent; the wall time when the
    /// series has none.
    fn load_s(&self) -> f64 {
        let mut sending = self.stats.timeseries.iter().filter(|s| s.sent > 0).map(|s| s.t_s);
        match sending.next() {
            Some(first) => (sending.max().unwrap_or(first) - first + 1) as f64,
            None => self.duration_ms as f64 / 1000.0,
        }
    }

    fn throughput_per_s(&self) -> f64 {
        let s = self.load_s();
        if s > 0.0 { self.stats.ledger.delivered as f64 / s } else { 0.0 }
    }

    fn latencies(&self) -> [(&'static str, &InLatency); 7] {
        let s = &self.stats;
        [
            ("command_routing", &s.command_routing),
            ("update", &s.update),
            ("accept", &s.accept),
            ("end_to_end", &s.end_to_end),
            ("connect", &s.connect),
            ("reconnect", &s.reconnect),
            ("backlog", &s.backlog),
        ]
    }
}

/// A load report read and checked against its schema.
#[derive(Debug, Clone)]
pub struct LoadReport {
    file: String,
    report: Input,
}

impl LoadReport {
    /// Parses `text` (read from `file`, named in messages) and validates it against
    /// `schemas/tools/load-report.json`.
    pub fn parse(file: &str, text: &str) -> Result<LoadReport, BaselineError> {
        let not_a_report = |reason: String| BaselineError::NotAReport { file: file.to_string(), reason };
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| not_a_report(format!("not JSON: {e}")))?;
        SchemaSet::global()
            .validate_value(LOAD_REPORT_SCHEMA, &value)
            .expect("the load-report schema is embedded")
            .map_err(|e| not_a_report(e.to_string()))?;
        let report = serde_json::from_value(value).map_err(|e| not_a_report(e.to_string()))?;
        Ok(LoadReport { file: file.to_string(), report })
    }

    /// Scenario name.
    pub fn scenario(&self) -> &str {
        &self.report.scenario
    }
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A latency percentile, ms.
    Latency,
    /// Commands delivered per second of load.
    Throughput,
    /// A count of the ledger or of errors.
    Loss,
}

/// The judgement of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowVerdict {
    /// Worse beyond the threshold.
    Regression,
    /// Better beyond the threshold.
    Improvement,
    /// Changed within the threshold, or not at all.
    WithinThreshold,
    /// Shown for information: no threshold applies (a latency percentile not gated).
    NotGated,
}

impl RowVerdict {
    fn label(self) -> &'static str {
        match self {
            RowVerdict::Regression => "REGRESSION",
            RowVerdict::Improvement => "improvement",
            RowVerdict::WithinThreshold => "ok",
            RowVerdict::NotGated => "-",
        }
    }
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Path into the load report, e.g. `command_routing.p99_ms`, `ledger.lost`, `throughput`.
    pub metric: String,
    /// What it measures.
    pub kind: Kind,
    /// Baseline value.
    pub old: f64,
    /// Candidate value.
    pub new: f64,
    /// `new - old`.
    pub change: f64,
    /// Change relative to the baseline, percent; `None` when the baseline is 0.
    pub change_pct: Option<f64>,
    /// The rule that judged it.
    pub rule: String,
    /// The judgement.
    pub verdict: RowVerdict,
}

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// File, as given.
    pub file: String,
    /// Scenario name.
    pub scenario: String,
    /// relaykit version that wrote the report.
    pub version: String,
    /// Target of the run.
    pub target: String,
    /// Start of the run, Unix ms.
    pub started_at_ms: u64,
    /// The load report's own verdict.
    pub verdict: String,
    /// Seconds of load the throughput is computed over.
    pub load_s: f64,
}

impl RunInfo {
    fn of(r: &LoadReport) -> RunInfo {
        let i = &r.report;
        RunInfo {
            file: r.file.clone(),
            scenario: i.scenario.clone(),
            version: i.version.clone(),
            target: i.target.clone(),
            started_at_ms: i.started_at_ms,
            verdict: i.verdict.clone(),
            load_s: i.load_s(),
        }
    }
}

/// The overall outcome; also the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No figure regressed beyond its threshold (exit 0).
    NoRegression,
    /// At least one did (exit 1).
    Regression,
}

/// The result of comparing a candidate report with its baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// `relaykit report`.
    pub tool: String,
    /// relaykit version.
    pub version: String,
    /// The old report.
    pub baseline: RunInfo,
    /// The new report.
    pub candidate: RunInfo,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// Outcome.
    pub verdict: Outcome,
    /// Rows judged a regression.
    pub regressions: u64,
    /// Rows judged an improvement.
    pub improvements: u64,
    /// Latency metrics left out because one report (or both) has no sample of them.
    pub skipped: Vec<String>,
    /// Things a reader should know: an invalid run, different scenarios or versions.
    pub warnings: Vec<String>,
    /// Every compared figure.
    pub rows: Vec<Row>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn row(metric: String, kind: Kind, old: f64, new: f64, rule: String, verdict: RowVerdict) -> Row {
    let change = new - old;
    let change_pct = (old > 0.0).then(|| round3(change / old * 100.0));
    Row {
        metric,
        kind,
        old: round3(old),
        new: round3(new),
        change: round3(change),
        change_pct,
        rule,
        verdict,
    }
}

/// `delta` (positive = worse) beyond both a relative threshold of `old` and an absolute floor.
fn beyond(delta: f64, old: f64, pct: f64, floor: f64) -> bool {
    delta > floor && (old <= 0.0 || delta / old * 100.0 > pct)
}

/// Judges a change where `worse` is the amount by which the candidate is worse.
fn judge(worse: f64, old: f64, pct: f64, floor: f64) -> RowVerdict {
    if beyond(worse, old, pct, floor) {
        RowVerdict::Regression
    } else if beyond(-worse, old, pct, floor) {
        RowVerdict::Improvement
    } else {
        RowVerdict::WithinThreshold
    }
}

/// Compares `new` with its baseline `old`.
pub fn compare(
    old: &LoadReport,
    new: &LoadReport,
    t: &Thresholds,
    allow_different_scenarios: bool,
) -> Result<Comparison, BaselineError> {
    t.check()?;
    let (o, n) = (&old.report, &new.report);
    let mut warnings = Vec::new();
    if o.scenario != n.scenario {
        if !allow_different_scenarios {
            return Err(BaselineError::DifferentScenarios {
                old: o.scenario.clone(),
                new: n.scenario.clone(),
            });
        }
        warnings.push(format!("different scenarios: {} vs {}", o.scenario, n.scenario));
    }
    for (side, r) in [("baseline", o), ("candidate", n)] {
        if r.verdict == "invalid" {
            warnings.push(format!("the {side} run is invalid (the generator was the bottleneck): its figures say little about the relay"));
        }
    }
    if o.version != n.version {
        warnings.push(format!("written by different relaykit versions: {} vs {}", o.version, n.version));
    }

    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let latency_rule = format!("+{}% and +{} ms", t.max_latency_increase_pct, t.latency_floor_ms);
    for ((name, lo), (_, ln)) in o.latencies().into_iter().zip(n.latencies()) {
        if lo.count == 0 || ln.count == 0 {
            skipped.push(name.to_string());
            continue;
        }
        for p in Percentile::ALL {
            let (a, b) = (p.of(lo), p.of(ln));
            let (rule, verdict) = if t.gated_percentiles.contains(&p) {
                (latency_rule.clone(), judge(b - a, a, t.max_latency_increase_pct, t.latency_floor_ms))
            } else {
                ("not gated".to_string(), RowVerdict::NotGated)
            };
            rows.push(row(format!("{name}.{}", p.field()), Kind::Latency, a, b, rule, verdict));
        }
    }

    let (a, b) = (o.throughput_per_s(), n.throughput_per_s());
    rows.push(row(
        "throughput".into(),
        Kind::Throughput,
        a,
        b,
        format!("-{}%", t.max_throughput_drop_pct),
        judge(a - b, a, t.max_throughput_drop_pct, 0.0),
    ));

    let (lo, ln) = (&o.stats.ledger, &n.stats.ledger);
    let errors = |r: &Input| r.stats.errors.values().sum::<u64>() as f64;
    let strict = [
        ("ledger.lost", lo.lost, ln.lost),
        ("ledger.delivered_after_expiry", lo.delivered_after_expiry, ln.delivered_after_expiry),
        ("ledger.unacknowledged", lo.unacknowledged, ln.unacknowledged),
    ];
    for (metric, a, b) in strict {
        let verdict = match b.cmp(&a) {
            std::cmp::Ordering::Greater => RowVerdict::Regression,
            std::cmp::Ordering::Less => RowVerdict::Improvement,
            std::cmp::Ordering::Equal => RowVerdict::WithinThreshold,
        };
        rows.push(row(metric.into(), Kind::Loss, a as f64, b as f64, "any increase".into(), verdict));
    }
    let count_rule = format!("+{}% and +{}", t.max_count_increase_pct, t.count_floor);
    let counted =
        [("ledger.duplicated", lo.duplicated as f64, ln.duplicated as f64), ("errors", errors(o), errors(n))];
    for (metric, a, b) in counted {
        let verdict = judge(b - a, a, t.max_count_increase_pct, t.count_floor as f64);
        rows.push(row(metric.into(), Kind::Loss, a, b, count_rule.clone(), verdict));
    }

    let count = |v: RowVerdict| rows.iter().filter(|r| r.verdict == v).count() as u64;
    let (regressions, improvements) = (count(RowVerdict::Regression), count(RowVerdict::Improvement));
    Ok(Comparison {
        tool: "relaykit report".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        baseline: RunInfo::of(old),
        candidate: RunInfo::of(new),
        thresholds: t.clone(),
        verdict: if regressions > 0 { Outcome::Regression } else { Outcome::NoRegression },
        regressions,
        improvements,
        skipped,
        warnings,
        rows,
    })
}

impl Comparison {
    /// Exit code: 0 no regression, 1 a regression.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Outcome::NoRegression => 0,
            Outcome::Regression => 1,
        }
    }

    /// JSON text (schema `schemas/tools/baseline-report.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("comparisons serialize")
    }

    /// The terminal table: metric, old, new, change, verdict.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        for (side, r) in [("baseline ", &self.baseline), ("candidate", &self.candidate)] {
            let _ = writeln!(
                out,
                "{side} {}: scenario {}, relaykit {}, {}, {:.0} s of load",
                r.file, r.scenario, r.version, r.verdict, r.load_s
            );
        }
        let _ = writeln!(out, "\n{:<32} {:>12} {:>12} {:>22}  verdict", "metric", "old", "new", "change");
        for r in &self.rows {
            let pct = r.change_pct.map_or(String::new(), |p| format!(" ({p:+.1}%)"));
            let digits = if r.kind == Kind::Loss { 0 } else { 3 };
            let _ = writeln!(
                out,
                "{:<32} {:>12.digits$} {:>12.digits$} {:>22}  {}",
                r.metric,
                r.old,
                r.new,
                format!("{:+.digits$}{pct}", r.change),
                r.verdict.label()
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(out, "\nnot compared (no samples in both): {}", self.skipped.join(", "));
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        let names = |v: RowVerdict| {
            self.rows
                .iter()
                .filter(|r| r.verdict == v)
                .map(|r| r.metric.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = match self.verdict {
            Outcome::Regression => writeln!(
                out,
                "\nREGRESSION: {} ({} improvement(s))",
                names(RowVerdict::Regression),
                self.improvements
            ),
            Outcome::NoRegression => writeln!(
                out,
                "\nno regression beyond the thresholds; improvements: {}",
                if self.improvements == 0 { "none".into() } else { names(RowVerdict::Improvement) }
            ),
        };
        out
    }
}

#[cfg(test)]
mod tests;
