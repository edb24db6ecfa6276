//! Capacity finder: a scenario with a `[capacity]` table steps the command rate per phone (or the
//! number of users) from level to level. Each level is a run of its own (fresh devices, one
//! steady phase, the drain) judged by the scenario's SLOs exactly like `relaykit load`; the search
//! stops at the first level that does not pass. The knee is the last level that passed.
//!
//! Outcome (also the exit code):
//! - `pass` (0): the search ended on a level the relay could not sustain, or after `max_steps`
//!   passing levels, and the knee offers at least `min_commands_per_s` (when set).
//! - `fail` (1): not even the first level passed, or the knee is below `min_commands_per_s`.
//! - `invalid` (2): the search stopped on a level whose run says nothing about the relay (the
//!   generator fell behind its schedule or ran out of CPU), or a level could not be run at all
//!   (provisioning failed, too many devices for this process). The levels before it still stand.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::report::{Report, Verdict};
use crate::run::Options;
use crate::scenario::{Phase, PhaseKind, Scenario, ScenarioError, Slo};

/// What the levels step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Commands per second per phone, on the scenario's population.
    Rate,
    /// Users (each with the scenario's desktops and phones), at `rate_per_mobile`.
    Connections,
}

impl Mode {
    /// The name in the scenario and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Rate => "rate",
            Mode::Connections => "connections",
        }
    }
}

/// The `[capacity]` table of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// What is stepped.
    pub mode: Mode,
    /// First level: commands/s per phone (`rate`) or users (`connections`).
    pub start: f64,
    /// Each level is the previous one times this (> 1); exactly one of `factor` and `step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Each level is the previous one plus this (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Most levels run; the search stops earlier at the first level that does not pass.
    pub max_steps: u32,
    /// Length of each level's steady phase, seconds (the scenario's `drain_s` follows it).
    pub step_duration_s: f64,
    /// `connections` mode: commands/s per phone at every level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_mobile: Option<f64>,
    /// Gate: the knee must offer at least this many commands/s, or the outcome is `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_commands_per_s: Option<f64>,
}

/// Most levels a search may have.
const MAX_LEVELS: u32 = 100;

/// Largest user count a `connections` level may reach.
const MAX_USERS: f64 = 10_000_000.0;

/// One level of the plan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Commands/s per phone.
    pub rate_per_mobile: f64,
    /// Users.
    pub users: u32,
}

/// Checks `scenario.capacity` (called by [`Scenario::from_toml`]); keys are named
/// `capacity.KEY`.
pub(crate) fn validate(scenario: &Scenario, file: &str) -> Result<(), ScenarioError> {
    let Some(c) = &scenario.capacity else { return Ok(()) };
    let bad = |key: &str, message: &str| {
        Err(ScenarioError::Invalid { file: file.into(), key: key.into(), message: message.into() })
    };
    let positive = |v: f64| v > 0.0 && v.is_finite();
    let whole = |v: f64| v.fract() == 0.0;
    if !scenario.phases.is_empty() {
        return bad("phases", "a [capacity] scenario runs one steady phase per level: remove the phases");
    }
    if !scenario.faults.is_empty() || scenario.target.is_some() {
        return bad("capacity", "fault steps and a managed [target] are not supported in a capacity search");
    }
    if !positive(c.start) || (c.mode == Mode::Connections && !(whole(c.start) && c.start <= MAX_USERS)) {
        return bad(
            "capacity.start",
            "must be a positive number (a whole number of users in connections mode)",
        );
    }
    match (c.factor, c.step) {
        (Some(_), Some(_)) | (None, None) => return bad("capacity", "set exactly one of factor and step"),
        (Some(f), None) if !(f > 1.0 && f.is_finite()) => return bad("capacity.factor", "must be above 1"),
        (None, Some(s)) if !positive(s) || (c.mode == Mode::Connections && !whole(s)) => {
            return bad(
                "capacity.step",
                "must be a positive number (a whole number of users in connections mode)",
            );
        }
        _ => {}
    }
    if c.max_steps == 0 || c.max_steps > MAX_LEVELS {
        return bad("capacity.max_steps", &format!("must be between 1 and {MAX_LEVELS}"));
    }
    if !positive(c.step_duration_s) {
        return bad("capacity.step_duration_s", "must be a positive number of seconds");
    }
    match (c.mode, c.rate_per_mobile) {
        (Mode::Connections, Some(r)) if positive(r) => {}
        (Mode::Connections, _) => {
            return bad("capacity.rate_per_mobile", "connections mode needs a positive rate");
        }
        (Mode::Rate, Some(_)) => {
            return bad("capacity.rate_per_mobile", "only for connections mode (rate mode steps the rate)");
        }
        (Mode::Rate, None) => {}
    }
    if c.min_commands_per_s.is_some_and(|g| !(g >= 0.0 && g.is_finite())) {
        return bad("capacity.min_commands_per_s", "must be zero or positive");
    }
    if c.mode == Mode::Connections && c.value(c.max_steps - 1) > MAX_USERS {
        return bad("capacity.max_steps", "the last level would exceed 10,000,000 users");
    }
    Ok(())
}

impl Capacity {
    /// The stepped value of level `k` (0-based).
    fn value(&self, k: u32) -> f64 {
        match (self.factor, self.step) {
            (Some(f), _) => self.start * f.powi(k as i32),
            (None, Some(s)) => self.start + s * f64::from(k),
            (None, None) => self.start,
        }
    }

    /// Every level the search may run, in order (`max_steps` of them).
    pub fn levels(&self, base: &Scenario) -> Vec<Plan> {
        (0..self.max_steps)
            .map(|k| match self.mode {
                Mode::Rate => Plan { rate_per_mobile: self.value(k), users: base.population.users },
                Mode::Connections => Plan {
                    rate_per_mobile: self.rate_per_mobile.unwrap_or(0.0),
                    users: self.value(k).round() as u32,
                },
            })
            .collect()
    }
}

/// The scenario run for one level: the base one (population shape, workload, SLOs, offline steps,
/// drain) with the level's users and one steady phase at the level's rate.
pub fn level_scenario(base: &Scenario, capacity: &Capacity, index: usize, plan: Plan) -> Scenario {
    let mut s = base.clone();
    s.capacity = None;
    s.population.users = plan.users;
    s.phases = vec![Phase {
        name: format!("level-{index}"),
        kind: PhaseKind::Steady,
        duration_s: capacity.step_duration_s,
        rate_per_mobile: plan.rate_per_mobile,
    }];
    s
}

/// Outcome of a level and of the search; the search's is also the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Level: every SLO held and the generator kept up. Search: see the module documentation.
    Pass,
    /// Level: an SLO was breached. Search: no knee, or the knee is below the gate.
    Fail,
    /// The generator, not the relay, was the bottleneck (or the level could not run).
    Invalid,
}

impl Outcome {
    /// The name in the JSON report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Invalid => "invalid",
        }
    }
}

/// Why the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// A level breached an SLO: the knee is the level before it.
    SloBreached,
    /// A level was invalid: the relay's knee is at least the last passing level.
    Invalid,
    /// Every level passed: the knee is the last one, a lower bound of the capacity.
    MaxSteps,
    /// A level could not be run (see `error`).
    Error,
}

/// One level's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// 0-based index.
    pub level: u32,
    /// Commands/s per phone.
    pub rate_per_mobile: f64,
    /// Users.
    pub users: u32,
    /// Devices connected (desktops and phones).
    pub devices: u64,
    /// Commands/s the schedule offered: rate per phone x phones.
    pub offered_commands_per_s: f64,
    /// Commands delivered per second while the load ran: mean over the whole seconds strictly
    /// inside the sending window (every delivery over the step's length when it has no such
    /// second).
    pub achieved_commands_per_s: f64,
    /// Commands sent.
    pub sent: u64,
    /// Commands delivered at least once.
    pub delivered: u64,
    /// Command routing p50, ms.
    pub routing_p50_ms: f64,
    /// Command routing p99, ms.
    pub routing_p99_ms: f64,
    /// Real-time update p99, ms.
    pub update_p99_ms: f64,
    /// Connect -> welcome p99, ms.
    pub connect_p99_ms: f64,
    /// Accepted but never delivered.
    pub lost: u64,
    /// Error frames and transport failures.
    pub errors: u64,
    /// Generator send lag p99, ms.
    pub send_lag_p99_ms: f64,
    /// Wall time of the level's run (provisioning to the end of the drain), ms.
    pub duration_ms: u64,
    /// Level outcome.
    pub verdict: Outcome,
    /// Names of the SLO checks breached (as in the load report).
    pub breaches: Vec<String>,
    /// Why the level is invalid (empty otherwise).
    pub invalid_reasons: Vec<String>,
}

/// Delivered commands per second over the whole seconds strictly inside the window in which
/// commands were sent (its first and last seconds are partial); when that leaves no second, every
/// delivery of the level over the step's length.
fn achieved(r: &Report, step_duration_s: f64) -> f64 {
    let ts = &r.stats.timeseries;
    let first = ts.iter().position(|s| s.sent > 0);
    let last = ts.iter().rposition(|s| s.sent > 0);
    match (first, last) {
        (Some(first), Some(last)) if last >= first + 2 => {
            let inside = &ts[first + 1..last];
            inside.iter().map(|s| s.delivered as f64).sum::<f64>() / inside.len() as f64
        }
        _ => r.stats.ledger.delivered as f64 / step_duration_s,
    }
}

impl Level {
    /// The figures of level `index` from its run's report.
    pub fn from_report(
        index: usize,
        plan: Plan,
        capacity: &Capacity,
        mobiles_per_user: u32,
        r: &Report,
    ) -> Level {
        let s = &r.stats;
        Level {
            level: index as u32,
            rate_per_mobile: plan.rate_per_mobile,
            users: plan.users,
            devices: r.devices,
            offered_commands_per_s: plan.rate_per_mobile
                * f64::from(plan.users)
                * f64::from(mobiles_per_user),
            achieved_commands_per_s: achieved(r, capacity.step_duration_s),
            sent: s.ledger.sent,
            delivered: s.ledger.delivered,
            routing_p50_ms: s.command_routing.p50_ms,
            routing_p99_ms: s.command_routing.p99_ms,
            update_p99_ms: s.update.p99_ms,
            connect_p99_ms: s.connect.p99_ms,
            lost: s.ledger.lost,
            errors: s.errors.values().sum(),
            send_lag_p99_ms: s.send_lag.p99_ms,
            duration_ms: r.duration_ms,
            verdict: match r.verdict {
                Verdict::Pass => Outcome::Pass,
                Verdict::SloBreached => Outcome::Fail,
                Verdict::Invalid => Outcome::Invalid,
            },
            breaches: r.slo.iter().filter(|c| !c.pass).map(|c| c.name.clone()).collect(),
            invalid_reasons: if r.generator.valid { Vec::new() } else { r.generator.reasons.clone() },
        }
    }

    /// One line of the terminal table (see [`table_header`]).
    pub fn row(&self) -> String {
        format!(
            "{:>5} {:>10} {:>8} {:>10.1} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>6}  {}{}",
            self.level,
            self.rate_per_mobile,
            self.users,
            self.offered_commands_per_s,
            self.achieved_commands_per_s,
            self.routing_p50_ms,
            self.routing_p99_ms,
            self.update_p99_ms,
            self.connect_p99_ms,
            self.lost,
            self.errors,
            self.verdict.as_str(),
            if self.breaches.is_empty() && self.invalid_reasons.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    self.breaches.iter().chain(&self.invalid_reasons).cloned().collect::<Vec<_>>().join("; ")
                )
            }
        )
    }
}

/// Header of the terminal table, aligned with [`Level::row`]; latencies in ms.
pub fn table_header() -> String {
    format!(
        "{:>5} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>6}  verdict (latencies in ms)",
        "level",
        "rate/phone",
        "users",
        "offered/s",
        "achieved/s",
        "rout p50",
        "rout p99",
        "upd p99",
        "conn p99",
        "lost",
        "errors"
    )
}

/// The whole search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityReport {
    /// `relaykit load`.
    pub tool: String,
    /// relaykit version.
    pub version: String,
    /// Scenario name.
    pub scenario: String,
    /// Target URL (`embedded` when relaykit started the relay itself).
    pub target: String,
    /// Start of the search, Unix ms.
    pub started_at_ms: u64,
    /// What was stepped.
    pub mode: Mode,
    /// Length of each level's steady phase, seconds.
    pub step_duration_s: f64,
    /// The budgets every level was judged by.
    pub slo: Slo,
    /// Gate on the knee's offered commands/s (null: none).
    pub min_commands_per_s: Option<f64>,
    /// Levels run, in order.
    pub levels: Vec<Level>,
    /// The last passing level (null when the first level did not pass).
    pub knee: Option<Level>,
    /// Why the search ended.
    pub stopped_because: Stop,
    /// What went wrong when `stopped_because` is `error` (null otherwise).
    pub error: Option<String>,
    /// Outcome of the search: the exit code.
    pub verdict: Outcome,
}

/// Knee, reason to stop and outcome of the levels run so far; `error` when a level could not run.
pub fn conclude(
    levels: &[Level],
    max_steps: u32,
    gate: Option<f64>,
    error: bool,
) -> (Option<Level>, Stop, Outcome) {
    let knee = levels.iter().take_while(|l| l.verdict == Outcome::Pass).last().cloned();
    let stop = match levels.iter().find(|l| l.verdict != Outcome::Pass) {
        _ if error => Stop::Error,
        Some(l) if l.verdict == Outcome::Invalid => Stop::Invalid,
        Some(_) => Stop::SloBreached,
        None if levels.len() >= max_steps as usize => Stop::MaxSteps,
        None => Stop::Error, // the search ended before its last level without a reason
    };
    let outcome = match (&knee, stop) {
        (_, Stop::Invalid | Stop::Error) => Outcome::Invalid,
        (None, _) => Outcome::Fail,
        (Some(k), _) if gate.is_some_and(|g| k.offered_commands_per_s < g) => Outcome::Fail,
        (Some(_), _) => Outcome::Pass,
    };
    (knee, stop, outcome)
}

/// Runs the levels of `capacity` against the relay at `addr`, one after the other, until one does
/// not pass; `on_level` sees each level as it ends. `embedded_relay`: the relay runs in this
/// process (its descriptors count too). `options.hdr_log`, `shard` and `start_at_ms` do not
/// apply and are ignored.
pub async fn search(
    base: &Scenario,
    capacity: &Capacity,
    addr: SocketAddr,
    target: String,
    options: &Options,
    embedded_relay: bool,
    mut on_level: impl FnMut(&Level),
) -> CapacityReport {
    let options = Options { hdr_log: None, shard: None, start_at_ms: None, ..options.clone() };
    let started_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut levels = Vec::new();
    let mut error = None;
    for (index, plan) in capacity.levels(base).into_iter().enumerate() {
        let scenario = level_scenario(base, capacity, index, plan);
        let run = async {
            crate::run::check_limits(&scenario, embedded_relay, None)?;
            crate::run::run_with(scenario, addr, target.clone(), options.clone()).await
        };
        match run.await {
            Ok(report) => {
                let level =
                    Level::from_report(index, plan, capacity, base.population.mobiles_per_user, &report);
                on_level(&level);
                let pass = level.verdict == Outcome::Pass;
                levels.push(level);
                if !pass {
                    break;
                }
            }
            Err(e) => {
                error = Some(format!("level {index}: {e}"));
                break;
            }
        }
    }
    let (knee, stopped_because, verdict) =
        conclude(&levels, capacity.max_steps, capacity.min_commands_per_s, error.is_some());
    CapacityReport {
        tool: "relaykit load".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        scenario: base.name.clone(),
        target,
        started_at_ms,
        mode: capacity.mode,
        step_duration_s: capacity.step_duration_s,
        slo: base.slo.clone(),
        min_commands_per_s: capacity.min_commands_per_s,
        levels,
        knee,
        stopped_because,
        error,
        verdict,
    }
}

impl CapacityReport {
    /// Exit code: 0 pass, 1 fail, 2 invalid.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Outcome::Pass => 0,
            Outcome::Fail => 1,
            Outcome::Invalid => 2,
        }
    }

    /// JSON text (schema `schemas/tools/capacity-report.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialize")
    }

    /// One self-contained HTML page with the knee plot.
    pub fn to_html(&self) -> String {
        crate::capacity_html::render(self)
    }

    /// The lines after the level table: knee, why the search stopped, outcome.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        match &self.knee {
            Some(k) => {
                let _ = writeln!(
                    out,
                    "knee: level {}: {} commands/s per phone x {} users = {} commands/s offered, {:.1} delivered/s; routing p99 {:.2} ms, update p99 {:.2} ms",
                    k.level,
                    k.rate_per_mobile,
                    k.users,
                    k.offered_commands_per_s,
                    k.achieved_commands_per_s,
                    k.routing_p99_ms,
                    k.update_p99_ms
                );
            }
            None => out.push_str("knee: none (the first level did not pass)\n"),
        }
        let why = match self.stopped_because {
            Stop::SloBreached => "a level breached an SLO".to_string(),
            Stop::Invalid if self.knee.is_none() => {
                "the first level was invalid (the generator was the bottleneck): nothing is known of the relay"
                    .into()
            }
            Stop::Invalid => {
                "a level was invalid (the generator was the bottleneck): the knee is a lower bound".into()
            }
            Stop::MaxSteps => "every level passed: the knee is a lower bound".into(),
            Stop::Error => format!("error: {}", self.error.as_deref().unwrap_or("unknown")),
        };
        let _ = writeln!(out, "stopped: {why}");
        if let Some(g) = self.min_commands_per_s {
            let _ = writeln!(out, "gate: knee at least {g} commands/s offered");
        }
        let _ = writeln!(out, "verdict: {}", self.verdict.as_str());
        out
    }

    /// The terminal table: one line per level, then the summary.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "capacity search {} against {}: mode {}, {} s per level\n{}\n",
            self.scenario,
            self.target,
            self.mode.as_str(),
            self.step_duration_s,
            table_header()
        );
        for l in &self.levels {
            out.push_str(&l.row());
            out.push('\n');
        }
        out.push_str(&self.summary());
        out
    }
}

#[cfg(test)]
mod tests;
