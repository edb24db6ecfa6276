//! Results of a run and their three renderings: a terminal table, JSON (schema
//! `schemas/tools/check-report.json`) and JUnit XML.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use relaykit_protocol::requirements::{self, Level};
use serde::Serialize;

use crate::conn::Line;

/// Outcome of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Behaved as required.
    Pass,
    /// Broke a MUST (or sent a schema-invalid frame).
    Fail,
    /// Missed a SHOULD or MAY.
    Warn,
    /// Capability not offered.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
        }
    }
}

/// One case's result with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// Case id.
    pub id: String,
    /// Group.
    pub group: String,
    /// `MUST`, `SHOULD` or `MAY`.
    pub level: String,
    /// Requirement IDs exercised.
    pub requirements: Vec<String>,
    /// One line.
    pub description: String,
    /// Outcome.
    pub status: Status,
    /// Wall time.
    pub duration_ms: u64,
    /// What the protocol requires (non-pass only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What happened (non-pass only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub got: Option<String>,
    /// Relay frames that broke the JSON Schemas.
    pub schema_violations: Vec<String>,
    /// Frames exchanged (non-pass only).
    pub transcript: Vec<Line>,
}

/// Counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Cases run.
    pub total: u64,
    /// Passed.
    pub pass: u64,
    /// Failed.
    pub fail: u64,
    /// Warnings (SHOULD/MAY not met).
    pub warn: u64,
    /// Skipped.
    pub skip: u64,
}

/// Which requirement IDs the run exercised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Coverage {
    /// Requirements in docs/PROTOCOL.md.
    pub total: u64,
    /// IDs cited by at least one case that ran.
    pub exercised: Vec<String>,
    /// IDs no case that ran cites.
    pub untested: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `relaykit check`.
    pub tool: String,
    /// relaykit version.
    pub version: String,
    /// Target URL.
    pub target: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Time scale applied to waits.
    pub time_scale: f64,
    /// Counts.
    pub summary: Summary,
    /// Per case, in catalogue order.
    pub cases: Vec<CaseReport>,
    /// Requirement coverage.
    pub coverage: Coverage,
}

impl Report {
    /// Builds the summary and coverage from case results.
    pub fn new(
        target: String,
        started_at_ms: u64,
        duration_ms: u64,
        time_scale: f64,
        cases: Vec<CaseReport>,
    ) -> Report {
        let mut summary = Summary { total: cases.len() as u64, ..Summary::default() };
        for c in &cases {
            match c.status {
                Status::Pass => summary.pass += 1,
                Status::Fail => summary.fail += 1,
                Status::Warn => summary.warn += 1,
                Status::Skip => summary.skip += 1,
            }
        }
        let exercised: BTreeSet<String> = cases.iter().flat_map(|c| c.requirements.iter().cloned()).collect();
        let untested =
            requirements::ALL.iter().map(|r| r.id.to_string()).filter(|id| !exercised.contains(id)).collect();
        let coverage = Coverage {
            total: requirements::ALL.len() as u64,
            exercised: exercised.into_iter().collect(),
            untested,
        };
        Report {
            tool: "relaykit check".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            target,
            started_at_ms,
            duration_ms,
            time_scale,
            summary,
            cases,
            coverage,
        }
    }

    /// True when a MUST case failed (exit code 1).
    pub fn must_failed(&self) -> bool {
        self.cases.iter().any(|c| c.status == Status::Fail)
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// The terminal rendering: one row per case, details of misses, summary, coverage.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let width = self.cases.iter().map(|c| c.id.len()).max().unwrap_or(4);
        for c in &self.cases {
            let reqs = c.requirements.join(",");
            let _ = writeln!(
                out,
                "{}  {:<width$}  {:<6}  {:<18}  {}",
                c.status.label(),
                c.id,
                c.level,
                reqs,
                c.description
            );
        }
        for c in self.cases.iter().filter(|c| matches!(c.status, Status::Fail | Status::Warn)) {
            let _ = writeln!(out, "\n{} {} ({})", c.status.label(), c.id, c.requirements.join(", "));
            if let Some(e) = &c.expected {
                let _ = writeln!(out, "  expected: {e}");
            }
            if let Some(g) = &c.got {
                let _ = writeln!(out, "  got:      {g}");
            }
            for v in &c.schema_violations {
                let _ = writeln!(out, "  schema:   {v}");
            }
            for line in c.transcript.iter().rev().take(12).rev() {
                let arrow = if line.dir == crate::conn::Dir::Sent { "->" } else { "<-" };
                let _ = writeln!(out, "  {:>6} ms {:<8} {arrow} {}", line.at_ms, line.conn, line.text);
            }
        }
        let s = &self.summary;
        let _ = writeln!(
            out,
            "\n{} cases: {} pass, {} fail, {} warn, {} skip in {:.1} s",
            s.total,
            s.pass,
            s.fail,
            s.warn,
            s.skip,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "requirements exercised: {} of {}",
            self.coverage.exercised.len(),
            self.coverage.total
        );
        let _ = writeln!(out, "  {:<6} {:>9}  untested", "prefix", "exercised");
        let mut prefixes: Vec<&str> = Vec::new();
        for r in requirements::ALL {
            let prefix = r.id.split('-').next().unwrap_or(r.id);
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
        let in_prefix = |prefix: &str, id: &&String| id.split('-').next() == Some(prefix);
        for prefix in prefixes {
            let exercised = self.coverage.exercised.iter().filter(|id| in_prefix(prefix, id)).count();
            let untested: Vec<&str> = self
                .coverage
                .untested
                .iter()
                .filter(|id| in_prefix(prefix, id))
                .map(String::as_str)
                .collect();
            let total = exercised + untested.len();
            let _ =
                writeln!(out, "  {prefix:<6} {:>9}  {}", format!("{exercised}/{total}"), untested.join(" "));
        }
        out
    }

    /// JUnit XML (one testsuite, one testcase per case; WARN as a passing case with output).
    pub fn to_junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let s = &self.summary;
        let _ = writeln!(
            out,
            "<testsuites name=\"relaykit check\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            s.total,
            s.fail,
            s.skip,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml(&self.target),
            s.total,
            s.fail,
            s.skip,
            self.duration_ms as f64 / 1000.0
        );
        for c in &self.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                xml(&c.group),
                xml(&c.id),
                c.duration_ms as f64 / 1000.0
            );
            let detail = || {
                let mut d = format!(
                    "{} ({})\nexpected: {}\ngot: {}\n",
                    c.description,
                    c.requirements.join(", "),
                    c.expected.as_deref().unwrap_or(""),
                    c.got.as_deref().unwrap_or("")
                );
                for v in &c.schema_violations {
                    d.push_str(&format!("schema: {v}\n"));
                }
                for l in &c.transcript {
                    d.push_str(&format!("{} ms {} {:?} {}\n", l.at_ms, l.conn, l.dir, l.text));
                }
                d
            };
            match c.status {
                Status::Pass => {}
                Status::Fail => {
                    let _ = write!(
                        out,
                        "<failure message=\"{}\">{}</failure>",
                        xml(c.expected.as_deref().unwrap_or("failed")),
                        xml(&detail())
                    );
                }
                Status::Warn => {
                    let _ = write!(out, "<system-out>WARN (SHOULD not met)\n{}</system-out>", xml(&detail()));
                }
                Status::Skip => {
                    let _ = write!(
                        out,
                        "<skipped message=\"{}\"/>",
                        xml(c.got.as_deref().unwrap_or("capability not offered"))
                    );
                }
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// XML text/attribute escaping (control characters other than tab/newline dropped).
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(ch),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Level name.
pub fn level_name(level: Level) -> &'static str {
    level.as_str()
}
