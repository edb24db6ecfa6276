//! Scenario files (`scenarios/*.toml`, schema `schemas/tools/scenario.json`): who is simulated,
//! what they do over time, and which budgets the run must keep. Defaults are the seed's budgets.

use relaykit_protocol::DeviceType;
use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name, used in reports.
    pub name: String,
    /// What the scenario represents.
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice (send offsets), so runs are repeatable.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated users and devices.
    pub population: Population,
    /// Load over time, in order (none in a `[capacity]` scenario: each level has its own).
    #[serde(default)]
    pub phases: Vec<Phase>,
    /// What each command causes.
    #[serde(default)]
    pub workload: Workload,
    /// Budgets the verdict checks.
    #[serde(default)]
    pub slo: Slo,
    /// Desktops going away and coming back (a `duration_s` of 0 is a reconnect storm).
    #[serde(default)]
    pub offline: Vec<Offline>,
    /// Background connection churn of the desktops.
    #[serde(default)]
    pub churn: Option<Churn>,
    /// Seconds after the last phase during which deliveries are still awaited before the ledger
    /// is closed (undelivered commands then count as lost).
    #[serde(default = "default_drain")]
    pub drain_s: f64,
    /// The relay under test, when relaykit starts it itself (restart, kill and pause steps act
    /// on it).
    #[serde(default)]
    pub target: Option<crate::target::TargetSpec>,
    /// Fault steps: network faults through the fault proxy, process faults on the target.
    #[serde(default)]
    pub faults: Vec<crate::faults::FaultStep>,
    /// Capacity search: step the rate or the users level by level until an SLO breaks.
    #[serde(default)]
    pub capacity: Option<crate::capacity::Capacity>,
}

/// Users and their devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Users.
    pub users: u32,
    /// Desktops per user (each runs the agent and answers commands).
    #[serde(default = "one")]
    pub desktops_per_user: u32,
    /// Phones per user (each sends commands).
    #[serde(default = "one")]
    pub mobiles_per_user: u32,
}

/// How the command rate moves within a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseKind {
    /// From the previous phase's rate (0 for the first) linearly to `rate_per_mobile`.
    Ramp,
    /// `rate_per_mobile` throughout.
    Steady,
    /// `rate_per_mobile` throughout, typically far above the steady rate and short.
    Spike,
}

/// One phase of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name in the report.
    pub name: String,
    /// Rate shape.
    pub kind: PhaseKind,
    /// Length, seconds.
    pub duration_s: f64,
    /// Commands per second per phone (open model: sends are scheduled, not waited for).
    pub rate_per_mobile: f64,
}

/// An offline step: a share of the desktops drops its connection at `at_s` (seconds after the
/// load starts) and reconnects `duration_s` later; commands sent meanwhile queue in the relay and
/// must drain after the reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offline {
    /// When the desktops go, seconds after the load starts.
    pub at_s: f64,
    /// How long they stay away (0: reconnect at once, a reconnect storm).
    pub duration_s: f64,
    /// Share of the desktops that go, 0 < fraction <= 1 (chosen by the seed).
    pub fraction: f64,
    /// Drop the TCP connection without a WebSocket close (true, default) or close cleanly.
    #[serde(default = "yes")]
    pub abrupt: bool,
    /// Which devices go: `desktop` (default: their commands queue) or `mobile` (their results
    /// queue; sends that fall due while away are skipped).
    #[serde(default = "desktop")]
    pub role: DeviceType,
}

/// Churn: every minute of the load, each desktop drops its connection with probability
/// `per_minute` at a random moment of that minute and reconnects at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    /// Share of the desktops dropped per minute, 0 < per_minute <= 1.
    pub per_minute: f64,
    /// Abrupt TCP drops (true, default) or clean WebSocket closes.
    #[serde(default = "yes")]
    pub abrupt: bool,
    /// Which devices churn (default desktops).
    #[serde(default = "desktop")]
    pub role: DeviceType,
}

/// What a command causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// `tool_progress` updates the desktop streams back per command (after `tool_start`).
    pub progress_updates: u32,
    /// Padding added to each command's payload, bytes.
    pub payload_bytes: usize,
    /// Send every body as an end-to-end envelope (`e2e`) instead of plain `payload`: the relay
    /// must carry it opaque. The generator does not encrypt (the relay cannot tell); it measures
    /// the relay's cost of opaque bodies.
    pub e2e: bool,
    /// Time to live of every command (`ttl_ms` of the sends); the relay's default when absent.
    /// Commands delivered later than this after their send are counted as delivered after
    /// expiry (a relay fault).
    pub ttl_ms: Option<u64>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload { progress_updates: 3, payload_bytes: 256, e2e: false, ttl_ms: None }
    }
}

/// Budgets (defaults: the seed's performance specification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Slo {
    /// Command routing (phone intended send -> desktop receive), p99, ms.
    pub command_routing_p99_ms: f64,
    /// Real-time update (desktop send -> phone receive), p99, ms.
    pub update_p99_ms: f64,
    /// Commands accepted but never delivered (at-least-once: 0).
    pub max_lost: u64,
    /// Connection setup (connect -> welcome), p99, ms.
    pub connect_p99_ms: f64,
    /// Connection recovery after an offline step (drop -> next welcome), p99, ms.
    pub reconnect_p99_ms: f64,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            command_routing_p99_ms: 500.0,
            update_p99_ms: 200.0,
            max_lost: 0,
            connect_p99_ms: 5000.0,
            reconnect_p99_ms: 5000.0,
        }
    }
}

fn default_seed() -> u64 {
    1
}

fn default_drain() -> f64 {
    5.0
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

fn desktop() -> DeviceType {
    DeviceType::Desktop
}

/// A scenario file that cannot be used, with its location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// TOML syntax or shape, at `file:line:column`.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// File name.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value out of range, naming the key.
    #[error("{file}: {key}: {message}")]
    Invalid {
        /// File name.
        file: String,
        /// Dotted key, e.g. `phases[1].duration_s`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Parses and validates a scenario; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |span| line_col(text, span.start));
            ScenarioError::Parse { file: file.into(), line, column, message: e.message().trim().to_string() }
        })?;
        scenario.validate(file)?;
        Ok(scenario)
    }

    fn validate(&self, file: &str) -> Result<(), ScenarioError> {
        let bad = |key: String, message: &str| {
            Err(ScenarioError::Invalid { file: file.into(), key, message: message.into() })
        };
        if self.population.users == 0 {
            return bad("population.users".into(), "must be at least 1");
        }
        if self.population.desktops_per_user == 0 || self.population.mobiles_per_user == 0 {
            return bad("population".into(), "every user needs at least one desktop and one mobile");
        }
        if self.phases.is_empty() && self.capacity.is_none() {
            return bad("phases".into(), "at least one phase is required");
        }
        for (i, p) in self.phases.iter().enumerate() {
            if !(p.duration_s > 0.0 && p.duration_s.is_finite()) {
                return bad(format!("phases[{i}].duration_s"), "must be a positive number of seconds");
            }
            if !(p.rate_per_mobile >= 0.0 && p.rate_per_mobile.is_finite()) {
                return bad(format!("phases[{i}].rate_per_mobile"), "must be zero or positive");
            }
        }
        for (i, o) in self.offline.iter().enumerate() {
            if !(o.at_s >= 0.0 && o.at_s.is_finite() && o.duration_s >= 0.0 && o.duration_s.is_finite()) {
                return bad(format!("offline[{i}]"), "at_s and duration_s must be zero or positive seconds");
            }
            if !(o.fraction > 0.0 && o.fraction <= 1.0) {
                return bad(format!("offline[{i}].fraction"), "must be in (0, 1]");
            }
        }
        if let Some(c) = &self.churn
            && !(c.per_minute > 0.0 && c.per_minute <= 1.0)
        {
            return bad("churn.per_minute".into(), "must be in (0, 1]");
        }
        if !(self.drain_s >= 0.0 && self.drain_s.is_finite()) {
            return bad("drain_s".into(), "must be zero or positive");
        }
        for (i, step) in self.faults.iter().enumerate() {
            if let Err((key, message)) = step.validate(self.target.is_some()) {
                return bad(format!("faults[{i}].{key}"), &message);
            }
            if step.at_s >= self.load_duration_s() && self.capacity.is_none() {
                return bad(format!("faults[{i}].at_s"), "must fall within the phases");
            }
        }
        if let Some(t) = &self.target
            && (t.command.is_empty() || !(t.ready_timeout_s > 0.0 && t.ready_timeout_s.is_finite()))
        {
            return bad("target".into(), "command must name a program; ready_timeout_s must be positive");
        }
        crate::capacity::validate(self, file)?;
        Ok(())
    }

    /// Total length of the phases, seconds.
    pub fn load_duration_s(&self) -> f64 {
        self.phases.iter().map(|p| p.duration_s).sum()
    }

    /// Command rate per phone at `t` seconds after the start (0 after the last phase).
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        let mut previous = 0.0;
        for p in &self.phases {
            if t < start + p.duration_s {
                return match p.kind {
                    PhaseKind::Ramp => {
                        previous + (p.rate_per_mobile - previous) * ((t - start) / p.duration_s)
                    }
                    PhaseKind::Steady | PhaseKind::Spike => p.rate_per_mobile,
                };
            }
            start += p.duration_s;
            previous = p.rate_per_mobile;
        }
        0.0
    }

    /// When the `n`-th send of a phone is due, in seconds since the start: the time at which the
    /// integral of [`Scenario::rate_at`] reaches `n` (None when that is after the last phase).
    /// Integrating the rate (rather than stepping by 1/rate) keeps ramps from near-zero rates
    /// exact.
    pub fn time_of_send(&self, n: f64) -> Option<f64> {
        let (mut start, mut before, mut previous) = (0.0, 0.0, 0.0);
        for p in &self.phases {
            let (r0, r1) = match p.kind {
                PhaseKind::Ramp => (previous, p.rate_per_mobile),
                PhaseKind::Steady | PhaseKind::Spike => (p.rate_per_mobile, p.rate_per_mobile),
            };
            let in_phase = (r0 + r1) / 2.0 * p.duration_s;
            if n < before + in_phase {
                let want = n - before;
                // rate(x) = r0 + (r1 - r0) x / d, so sends(x) = r0 x + (r1 - r0) x^2 / (2 d).
                let a = (r1 - r0) / (2.0 * p.duration_s);
                let x = if a.abs() < 1e-12 {
                    want / r0
                } else {
                    (-r0 + (r0 * r0 + 4.0 * a * want).sqrt()) / (2.0 * a)
                };
                return Some(start + x.clamp(0.0, p.duration_s));
            }
            before += in_phase;
            start += p.duration_s;
            previous = p.rate_per_mobile;
        }
        None
    }

    /// Index of the phase running at `t` seconds (None after the last).
    pub fn phase_at(&self, t: f64) -> Option<usize> {
        let mut end = 0.0;
        self.phases.iter().position(|p| {
            end += p.duration_s;
            t < end
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOKE: &str = r#"
name = "t"
[population]
users = 2
[[phases]]
name = "ramp"
kind = "ramp"
duration_s = 2
rate_per_mobile = 4
[[phases]]
name = "steady"
kind = "steady"
duration_s = 3
rate_per_mobile = 4
"#;

    #[test]
    fn defaults_are_the_seed_budgets() {
        let s = Scenario::from_toml("t.toml", SMOKE).unwrap();
        assert_eq!(s.slo.command_routing_p99_ms, 500.0);
        assert_eq!(s.slo.update_p99_ms, 200.0);
        assert_eq!(s.slo.max_lost, 0);
        assert_eq!(s.population.desktops_per_user, 1);
        assert_eq!(s.load_duration_s(), 5.0);
    }

    #[test]
    fn rate_follows_the_phases() {
        let s = Scenario::from_toml("t.toml", SMOKE).unwrap();
        assert_eq!(s.rate_at(0.0), 0.0);
        assert_eq!(s.rate_at(1.0), 2.0);
        assert_eq!(s.rate_at(3.0), 4.0);
        assert_eq!(s.rate_at(5.0), 0.0);
        assert_eq!(s.phase_at(1.9), Some(0));
        assert_eq!(s.phase_at(2.0), Some(1));
        assert_eq!(s.phase_at(5.0), None);
    }

    #[test]
    fn sends_follow_the_integral_of_the_rate() {
        let s = Scenario::from_toml("t.toml", SMOKE).unwrap();
        // Ramp 0 -> 4/s over 2 s carries 4 sends; steady 4/s over 3 s carries 12.
        assert_eq!(s.time_of_send(0.0), Some(0.0));
        let t1 = s.time_of_send(1.0).unwrap();
        assert!((t1 - 1.0).abs() < 1e-9, "{t1}"); // sends(x) = x^2 on the ramp
        assert!((s.time_of_send(4.0).unwrap() - 2.0).abs() < 1e-9);
        assert!((s.time_of_send(6.0).unwrap() - 2.5).abs() < 1e-9);
        assert!(s.time_of_send(15.9).is_some());
        assert_eq!(s.time_of_send(16.0), None);
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let err =
            Scenario::from_toml("x.toml", &SMOKE.replace("users = 2", "users = 2\nusres = 3")).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("x.toml:5:"), "{text}");
        assert!(text.contains("usres"), "{text}");
        let err =
            Scenario::from_toml("x.toml", &SMOKE.replace("duration_s = 3", "duration_s = -1")).unwrap_err();
        assert_eq!(err.to_string(), "x.toml: phases[1].duration_s: must be a positive number of seconds");
    }
}
