//! The verdict of a run and its renderings: the JSON report (schema
//! `schemas/tools/load-report.json`), the terminal summary and the HTML page ([`crate::html`]).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::faults::FaultOutcome;
use crate::record::{Latency, Stats};
use crate::scenario::{Scenario, Slo};

/// Overall outcome; also the exit code (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every SLO held and the generator kept up.
    Pass,
    /// An SLO was breached.
    SloBreached,
    /// The generator, not the target, was the bottleneck: the figures say nothing.
    Invalid,
}

impl Verdict {
    /// The name used in the JSON report (`pass`, `slo_breached`, `invalid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::SloBreached => "slo_breached",
            Verdict::Invalid => "invalid",
        }
    }
}

/// One SLO check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloCheck {
    /// What is checked.
    pub name: String,
    /// Budget.
    pub threshold: f64,
    /// Measured.
    pub actual: f64,
    /// Within budget.
    pub pass: bool,
}

/// The generator's own health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generator {
    /// CPU time of this process over wall time, percent of one core (includes an embedded relay).
    pub cpu_percent: f64,
    /// Resident memory at the end, KiB.
    pub rss_kib: u64,
    /// p99 of actual minus intended send time, ms.
    pub send_lag_p99_ms: f64,
    /// False when the generator could not keep its schedule.
    pub valid: bool,
    /// Why it is not valid.
    pub reasons: Vec<String>,
}

/// Lateness beyond which the generator, not the target, shaped the latencies.
const MAX_SEND_LAG_P99_MS: f64 = 50.0;

/// CPU seconds this process used so far (Linux; 0 elsewhere).
pub fn process_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    ticks / 100.0 // USER_HZ is 100 on Linux
}

/// Resident memory of this process, KiB (Linux; 0 elsewhere).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

impl Generator {
    /// Health of this run.
    /// `cpu_limit_percent`: CPU use (percent of one core) above which the generator counts as
    /// saturated; `None` when the figure also includes an embedded relay and says nothing.
    pub fn measure(
        stats: &Stats,
        cpu_before_s: f64,
        wall: Duration,
        cpu_limit_percent: Option<f64>,
    ) -> Generator {
        Generator::from_figures(stats, process_cpu_s() - cpu_before_s, wall, rss_kib(), cpu_limit_percent)
    }

    /// Health from figures already taken: `cpu_s` CPU seconds over `wall` (for merged worker
    /// processes, whose CPU and memory add up).
    pub fn from_figures(
        stats: &Stats,
        cpu_s: f64,
        wall: Duration,
        rss_kib: u64,
        cpu_limit_percent: Option<f64>,
    ) -> Generator {
        let cpu_percent = cpu_s / wall.as_secs_f64().max(1e-9) * 100.0;
        let send_lag_p99_ms = stats.send_lag.p99_ms;
        let mut reasons = Vec::new();
        if send_lag_p99_ms > MAX_SEND_LAG_P99_MS {
            reasons.push(format!("send lag p99 {send_lag_p99_ms:.1} ms > {MAX_SEND_LAG_P99_MS} ms: the generator fell behind its schedule"));
        }
        if let Some(limit) = cpu_limit_percent
            && cpu_percent > limit
        {
            reasons.push(format!("generator CPU {cpu_percent:.0}% > {limit:.0}% of a core: the generator, not the target, was busy"));
        }
        Generator { cpu_percent, rss_kib, send_lag_p99_ms, valid: reasons.is_empty(), reasons }
    }
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `relaykit load`.
    pub tool: String,
    /// relaykit version.
    pub version: String,
    /// Scenario name.
    pub scenario: String,
    /// Target URL (`embedded` when relaykit started the relay itself).
    pub target: String,
    /// Start, Unix ms.
    pub started_at_ms: u64,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Devices simulated.
    pub devices: u64,
    /// Outcome.
    pub verdict: Verdict,
    /// SLO checks.
    pub slo: Vec<SloCheck>,
    /// Measurements and ledger.
    pub stats: Stats,
    /// Generator health.
    pub generator: Generator,
    /// The scenario's fault steps: when each happened and what it cost.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultOutcome>,
}

fn check(name: &str, threshold: f64, actual: f64) -> SloCheck {
    SloCheck { name: name.into(), threshold, actual, pass: actual <= threshold }
}

fn slo_checks(slo: &Slo, stats: &Stats, devices: u64) -> Vec<SloCheck> {
    let l = &stats.ledger;
    // A relay that refuses sends or connections must not pass on empty latency histograms.
    let failed_connects = devices.saturating_sub(stats.connect.count) as f64;
    vec![
        check("command_routing_p99_ms", slo.command_routing_p99_ms, stats.command_routing.p99_ms),
        check("update_p99_ms", slo.update_p99_ms, stats.update.p99_ms),
        check("connect_p99_ms", slo.connect_p99_ms, stats.connect.p99_ms),
        check("reconnect_p99_ms", slo.reconnect_p99_ms, stats.reconnect.p99_ms),
        check("lost", slo.max_lost as f64, l.lost as f64),
        check("unacknowledged", 0.0, l.unacknowledged as f64),
        check("delivered_after_expiry", 0.0, l.delivered_after_expiry as f64),
        check("devices_not_connected", 0.0, failed_connects),
    ]
}

/// Invalid when the generator says so, else pass only when every check passed.
fn verdict(generator: &Generator, slo: &[SloCheck]) -> Verdict {
    if !generator.valid {
        Verdict::Invalid
    } else if slo.iter().all(|c| c.pass) {
        Verdict::Pass
    } else {
        Verdict::SloBreached
    }
}

impl Report {
    /// Judges the run.
    pub fn new(
        scenario: &Scenario,
        target: String,
        started_at_ms: u64,
        wall: Duration,
        stats: Stats,
        generator: Generator,
    ) -> Report {
        let p = &scenario.population;
        let devices = u64::from(p.users) * u64::from(p.desktops_per_user + p.mobiles_per_user);
        let slo = slo_checks(&scenario.slo, &stats, devices);
        let mut generator = generator;
        if stats.ledger.sent == 0 {
            generator.valid = false;
            generator.reasons.push("no command was sent: the run measured nothing".into());
        }
        let verdict = verdict(&generator, &slo);
        Report {
            tool: "relaykit load".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            scenario: scenario.name.clone(),
            target,
            started_at_ms,
            duration_ms: wall.as_millis() as u64,
            devices,
            verdict,
            slo,
            stats,
            generator,
            faults: Vec::new(),
        }
    }

    /// Adds the fault steps' outcomes: each step's window must lose nothing and its connections
    /// must recover within the reconnect budget; a step that could not be carried out makes the
    /// run invalid (it did not test what it claims).
    pub fn with_faults(mut self, scenario: &Scenario, faults: Vec<FaultOutcome>) -> Report {
        for f in &faults {
            let w = &f.window;
            self.slo.push(check(
                &format!("fault {}: lost", f.name),
                scenario.slo.max_lost as f64,
                w.lost as f64,
            ));
            if w.recovery.count > 0 {
                self.slo.push(check(
                    &format!("fault {}: recovery_p99_ms", f.name),
                    scenario.slo.reconnect_p99_ms,
                    w.recovery.p99_ms,
                ));
            }
            if let Some(error) = &f.error {
                self.generator.valid = false;
                self.generator.reasons.push(format!("fault step {} was not carried out: {error}", f.name));
            }
        }
        self.faults = faults;
        self.verdict = verdict(&self.generator, &self.slo);
        self
    }

    /// Exit code: 0 pass, 1 SLO breached, 2 invalid.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Verdict::Pass => 0,
            Verdict::SloBreached => 1,
            Verdict::Invalid => 2,
        }
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// One self-contained HTML page (tables and inline SVG charts, no external resources).
    pub fn to_html(&self) -> String {
        crate::html::render(self)
    }

    /// The terminal summary.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {} against {}: {} devices, {:.1} s",
            self.scenario,
            self.target,
            self.devices,
            self.duration_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "\n{:<18} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        let s = &self.stats;
        let rows: [(&str, &Latency); 8] = [
            ("command routing", &s.command_routing),
            ("update", &s.update),
            ("accept", &s.accept),
            ("end to end", &s.end_to_end),
            ("connect", &s.connect),
            ("reconnect", &s.reconnect),
            ("backlog delivery", &s.backlog),
            ("send lag", &s.send_lag),
        ];
        for (name, l) in rows {
            let _ = writeln!(
                out,
                "{name:<18} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            );
        }
        let l = &s.ledger;
        let _ = writeln!(
            out,
            "\nledger: sent {} accepted {} delivered {} (after reconnect {}) lost {} duplicated {} unacknowledged {} resent {} completed {} updates {} out-of-order {}",
            l.sent,
            l.accepted,
            l.delivered,
            l.delivered_after_reconnect,
            l.lost,
            l.duplicated,
            l.unacknowledged,
            l.resent,
            l.completed,
            l.updates,
            l.out_of_order
        );
        if !s.errors.is_empty() {
            let _ = writeln!(out, "errors: {:?}", s.errors);
        }
        let _ = writeln!(out, "\n{:<24} {:>10} {:>12}  result", "slo", "budget", "measured");
        for c in &self.slo {
            let _ = writeln!(
                out,
                "{:<24} {:>10.1} {:>12.2}  {}",
                c.name,
                c.threshold,
                c.actual,
                if c.pass { "ok" } else { "BREACHED" }
            );
        }
        if !self.faults.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<28} {:>8} {:>8} {:>9} {:>6} {:>5} {:>5} {:>7} {:>11} {:>11}",
                "fault step",
                "applied",
                "ended",
                "down ms",
                "sent",
                "lost",
                "dup",
                "resent",
                "routing p99",
                "recover p99"
            );
            for f in &self.faults {
                let w = &f.window;
                let _ = writeln!(
                    out,
                    "{:<28} {:>8.1} {:>8.1} {:>9} {:>6} {:>5} {:>5} {:>7} {:>11.1} {:>11.1}{}",
                    f.name,
                    f.applied_at_s,
                    f.ended_at_s,
                    f.target_down_ms.map_or("-".into(), |d| format!("{d:.0}")),
                    w.sent,
                    w.lost,
                    w.duplicated,
                    w.resent,
                    w.routing.p99_ms,
                    w.recovery.p99_ms,
                    f.error.as_ref().map_or(String::new(), |e| format!("  NOT APPLIED: {e}"))
                );
            }
        }
        let g = &self.generator;
        let _ = writeln!(
            out,
            "\ngenerator: cpu {:.0}% of a core, rss {} KiB, send lag p99 {:.2} ms{}",
            g.cpu_percent,
            g.rss_kib,
            g.send_lag_p99_ms,
            if g.valid { String::new() } else { format!(" INVALID: {}", g.reasons.join("; ")) }
        );
        let _ = writeln!(out, "verdict: {:?}", self.verdict);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn verdict_names_match_the_json() {
        for v in [Verdict::Pass, Verdict::SloBreached, Verdict::Invalid] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
    }
}

#[cfg(test)]
mod cpu_tests {
    use super::*;
    use crate::record::Aggregator;

    #[test]
    fn a_busy_generator_makes_the_run_invalid() {
        let stats = Aggregator::default().finish();
        // A CPU budget of 0% of a core: any work at all exceeds it.
        let busy = Generator::measure(&stats, 0.0, Duration::from_millis(1), Some(0.0));
        assert!(!busy.valid && busy.reasons[0].contains("CPU"), "{busy:?}");
        let unlimited = Generator::measure(&stats, 0.0, Duration::from_secs(1), None);
        assert!(unlimited.valid, "{unlimited:?}");
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use crate::record::{Aggregator, Event};

    fn scenario() -> Scenario {
        let text = "name = \"v\"\n[population]\nusers = 1\n[[phases]]\nname = \"s\"\nkind = \"steady\"\nduration_s = 1\nrate_per_mobile = 1\n";
        Scenario::from_toml("v.toml", text).unwrap()
    }

    fn judge(events: Vec<Event>) -> Report {
        let mut a = Aggregator::default();
        for e in events {
            a.record(e);
        }
        let stats = a.finish();
        let generator = Generator::from_figures(&stats, 0.0, Duration::from_secs(1), 0, None);
        Report::new(&scenario(), "t".into(), 0, Duration::from_secs(1), stats, generator)
    }

    #[test]
    fn refused_commands_and_missing_devices_breach_even_with_empty_histograms() {
        let connected = |n| (0..n).map(|i| Event::Connected { started: i, at: i + 10 });
        // Two devices connected, one command sent, never accepted nor delivered.
        let mut events: Vec<Event> = connected(2).collect();
        events.push(Event::Sent { cid: 1, intended: 0, actual: 1, held: false });
        let r = judge(events);
        assert_eq!(r.verdict, Verdict::SloBreached);
        assert!(r.slo.iter().any(|c| c.name == "unacknowledged" && !c.pass));
        // Only one of the two devices connected.
        let mut events: Vec<Event> = connected(1).collect();
        events.extend([
            Event::Sent { cid: 1, intended: 0, actual: 1, held: false },
            Event::Accepted { cid: 1, at: 2 },
            Event::Delivered { cid: 1, intended: 0, at: 3 },
        ]);
        let r = judge(events);
        assert!(r.slo.iter().any(|c| c.name == "devices_not_connected" && !c.pass), "{:?}", r.slo);
    }

    #[test]
    fn a_run_that_sent_nothing_is_invalid() {
        let r = judge(vec![Event::Connected { started: 0, at: 1 }, Event::Connected { started: 0, at: 1 }]);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.generator.reasons.iter().any(|x| x.contains("no command")));
    }
}
