//! Fault steps of a scenario (`[[faults]]`) and the driver that applies them on the run's time
//! line: network faults through the in-process fault proxy ([`relaykit_proxy`]) that stands
//! between the simulated devices and the relay, and process faults on a relay that relaykit
//! started itself ([`crate::target`]): graceful restart, `kill -9` and restart, SIGSTOP/SIGCONT.
//!
//! What each step cost is measured over its window, from `settle_s` before it was applied (the
//! commands in flight when it hit) to `settle_s` after it ended: the fate of the commands sent in it (lost, duplicated, resent) and
//! the recovery time of the connections that dropped in it.

use std::sync::Arc;

use relaykit_protocol::DeviceType;
use relaykit_proxy::{Direction, Fault, FaultHandle, FaultSpec, Selector};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::record::{Micros, WindowStats};
use crate::scenario::Scenario;
use crate::target::ManagedTarget;

/// One fault step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultStep {
    /// Name in the report.
    pub name: String,
    /// When it starts, seconds after the load starts.
    pub at_s: f64,
    /// How long it lasts, seconds (kill: how long the relay stays down; restart: ignored).
    #[serde(default)]
    pub duration_s: f64,
    /// What happens.
    pub action: Action,
    /// The network fault, for `action = "proxy"` (the proxy's fault kinds).
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Which way the network fault acts: `up` (devices -> relay), `down` or `both` (default).
    #[serde(default)]
    pub direction: Direction,
    /// Which devices a network fault hits.
    #[serde(default)]
    pub select: Pick,
    /// Seconds before the step (commands in flight when it hits) and after its end
    /// (redeliveries, reconnects) counted as its window.
    #[serde(default = "settle_s")]
    pub settle_s: f64,
}

fn settle_s() -> f64 {
    5.0
}

/// What a fault step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A network fault in the proxy for `duration_s`.
    Proxy,
    /// SIGTERM (SIGKILL after 5 s), then start the relay again at once.
    Restart,
    /// SIGKILL, then start the relay again after `duration_s`.
    Kill,
    /// SIGSTOP for `duration_s`, then SIGCONT.
    Pause,
}

impl Action {
    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Proxy => "proxy",
            Action::Restart => "restart",
            Action::Kill => "kill",
            Action::Pause => "pause",
        }
    }
}

/// Devices a network fault hits: a share of them (chosen by the seed per device), optionally of
/// one role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pick {
    /// Share, 0 < fraction <= 1 (default every device).
    #[serde(default = "whole")]
    pub fraction: f64,
    /// Only phones or only desktops (default both).
    #[serde(default)]
    pub role: Option<DeviceType>,
}

impl Default for Pick {
    fn default() -> Self {
        Pick { fraction: 1.0, role: None }
    }
}

fn whole() -> f64 {
    1.0
}

impl FaultStep {
    /// Checks one step; `has_target` tells whether the scenario starts its relay itself.
    pub fn validate(&self, has_target: bool) -> Result<(), (String, String)> {
        let bad = |key: &str, message: &str| Err((key.to_string(), message.to_string()));
        let seconds = |v: f64| v >= 0.0 && v.is_finite();
        if !seconds(self.at_s) || !seconds(self.duration_s) || !seconds(self.settle_s) {
            return bad("at_s", "at_s, duration_s and settle_s must be zero or positive seconds");
        }
        if !(self.select.fraction > 0.0 && self.select.fraction <= 1.0) {
            return bad("select.fraction", "must be in (0, 1]");
        }
        match (self.action, &self.fault) {
            (Action::Proxy, None) => {
                bad("fault", "a proxy step needs a fault table, e.g. { kind = \"loss\", probability = 0.05 }")
            }
            (Action::Proxy, Some(fault)) => {
                let spec = FaultSpec {
                    fault: fault.clone(),
                    direction: self.direction,
                    select: Selector::All,
                    duration_ms: None,
                };
                spec.validate().or_else(|e| bad("fault", &e.to_string()))
            }
            (_, Some(_)) => bad("fault", "only proxy steps take a fault"),
            (_, None) if !has_target => bad(
                "action",
                "restart, kill and pause act on a relay relaykit starts itself: add a [target] table with its command",
            ),
            (_, None) => Ok(()),
        }
    }
}

/// A simulated device as the fault driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    /// Role.
    pub role: DeviceType,
    /// Index within its role (global across shards), which the seed's choices follow.
    pub index: u64,
    /// Relay-assigned id (what the proxy matches in `hello`).
    pub device_id: String,
}

/// The devices `pick` selects for step `step` (deterministic under the seed).
pub fn select(pick: &Pick, seed: u64, step: usize, devices: &[DeviceRef]) -> Vec<String> {
    let salt = seed ^ 0xFA17_0000 ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9);
    devices
        .iter()
        .filter(|d| pick.role.is_none_or(|r| r == d.role))
        .filter(|d| {
            let role_salt = if d.role == DeviceType::Mobile { 0x6D6F_6269 } else { 0 };
            pick.fraction >= 1.0 || crate::run::pick(salt ^ role_salt, d.index) < pick.fraction
        })
        .map(|d| d.device_id.clone())
        .collect()
}

/// What the driver controls.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    /// The proxy's faults, when the devices go through it.
    pub proxy: Option<FaultHandle>,
    /// The relay, when relaykit started it.
    pub target: Option<Arc<Mutex<ManagedTarget>>>,
    /// Tells the devices that a network fault healed (set by the run).
    pub network_back: Option<Arc<tokio::sync::watch::Sender<u64>>>,
}

/// When and how a step was carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Index into the scenario's steps.
    pub step: usize,
    /// Applied (run clock).
    pub from: Micros,
    /// Ended: network healed, relay ready again, or resumed (run clock).
    pub until: Micros,
    /// From when the devices could come back (run clock): the heal of a network fault, the
    /// resume of a pause, the new start of a killed relay after its planned downtime, the
    /// signal of a restart. Recovery is timed from here, so a planned outage is not blamed on
    /// the relay while its boot, the clients' backoff and the reconnect storm are.
    pub healed: Micros,
    /// Devices hit (network faults) or connected to the relay (process faults).
    pub devices: u64,
    /// Signal to ready again, ms (kill and restart).
    pub target_down_ms: Option<f64>,
    /// Why it could not be carried out (fully).
    pub error: Option<String>,
}

/// Carries out step `index` at `lead + at_s` after `start`.
pub async fn run_step(
    index: usize,
    step: FaultStep,
    controls: Controls,
    devices: Arc<Vec<DeviceRef>>,
    seed: u64,
    start: Instant,
    lead_s: f64,
) -> Applied {
    tokio::time::sleep_until(start + Duration::from_secs_f64(lead_s + step.at_s)).await;
    let now = || start.elapsed().as_micros() as Micros;
    let from = now();
    let duration = Duration::from_secs_f64(step.duration_s);
    let mut applied = Applied {
        step: index,
        from,
        until: from,
        healed: from,
        devices: devices.len() as u64,
        target_down_ms: None,
        error: None,
    };
    let result: Result<(), String> = match step.action {
        Action::Proxy => match (&controls.proxy, &step.fault) {
            (Some(proxy), Some(fault)) => {
                let chosen = select(&step.select, seed, index, &devices);
                applied.devices = chosen.len() as u64;
                let select =
                    if chosen.len() == devices.len() { Selector::All } else { Selector::Devices(chosen) };
                let spec =
                    FaultSpec { fault: fault.clone(), direction: step.direction, select, duration_ms: None };
                let id = proxy.add(spec);
                tokio::time::sleep(duration).await;
                proxy.remove(id);
                applied.healed = now();
                if let Some(back) = &controls.network_back {
                    back.send_modify(|generation| *generation += 1);
                }
                Ok(())
            }
            _ => Err("no fault proxy in the path".into()),
        },
        Action::Kill | Action::Restart | Action::Pause => match &controls.target {
            Some(target) => process_step(step.action, target, duration, start, &mut applied).await,
            None => Err("no managed target".into()),
        },
    };
    applied.until = now();
    applied.error = result.err();
    applied
}

async fn process_step(
    action: Action,
    target: &Mutex<ManagedTarget>,
    duration: Duration,
    start: Instant,
    applied: &mut Applied,
) -> Result<(), String> {
    let now = || start.elapsed().as_micros() as Micros;
    let mut target = target.lock().await;
    let began = Instant::now();
    match action {
        Action::Pause => {
            target.pause().map_err(|e| e.to_string())?;
            tokio::time::sleep(duration).await;
            applied.healed = now();
            return target.resume().map_err(|e| e.to_string());
        }
        Action::Kill => {
            target.kill().await.map_err(|e| e.to_string())?;
            tokio::time::sleep(duration).await;
            applied.healed = now();
        }
        Action::Restart => target.terminate(Duration::from_secs(5)).await.map_err(|e| e.to_string())?,
        Action::Proxy => unreachable!("network steps are not process steps"),
    }
    target.launch().await.map_err(|e| e.to_string())?;
    applied.target_down_ms = Some(began.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

/// What one fault step did and cost (the report's `faults`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultOutcome {
    /// Step name.
    pub name: String,
    /// Step action.
    pub action: Action,
    /// Planned start, seconds after the load started.
    pub at_s: f64,
    /// Planned length, seconds.
    pub duration_s: f64,
    /// Applied, seconds on the run clock (the time series' clock).
    pub applied_at_s: f64,
    /// Ended (healed, resumed, relay ready again), seconds on the run clock.
    pub ended_at_s: f64,
    /// Devices hit (network faults) or simulated (relay faults).
    pub devices: u64,
    /// Signal to ready again, ms (kill and restart).
    pub target_down_ms: Option<f64>,
    /// Why the step could not be carried out; the run is then invalid.
    pub error: Option<String>,
    /// Commands sent from `settle_s` before the step (in flight when it hit) to `settle_s` after
    /// its end, and connections that dropped meanwhile.
    pub window: WindowStats,
}

/// Joins the steps, what the driver did and what the windows measured.
pub fn outcomes(scenario: &Scenario, applied: &[Applied], windows: Vec<WindowStats>) -> Vec<FaultOutcome> {
    applied
        .iter()
        .zip(windows)
        .map(|(a, window)| {
            let step = &scenario.faults[a.step];
            FaultOutcome {
                name: step.name.clone(),
                action: step.action,
                at_s: step.at_s,
                duration_s: step.duration_s,
                applied_at_s: a.from as f64 / 1e6,
                ended_at_s: a.until as f64 / 1e6,
                devices: a.devices,
                target_down_ms: a.target_down_ms,
                error: a.error.clone(),
                window,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(n: u64) -> Vec<DeviceRef> {
        (0..n)
            .flat_map(|i| {
                [DeviceType::Desktop, DeviceType::Mobile].map(|role| DeviceRef {
                    role,
                    index: i,
                    device_id: format!("{}{i}", role.as_str()),
                })
            })
            .collect()
    }

    #[test]
    fn a_pick_takes_its_share_of_its_role_deterministically() {
        let all = devices(1000);
        let pick = Pick { fraction: 0.1, role: Some(DeviceType::Desktop) };
        let chosen = select(&pick, 7, 0, &all);
        assert!((60..140).contains(&chosen.len()), "{} of 1000 for 10%", chosen.len());
        assert!(chosen.iter().all(|id| id.starts_with("desktop")));
        assert_eq!(chosen, select(&pick, 7, 0, &all), "same seed, same devices");
        assert_ne!(chosen, select(&pick, 7, 1, &all), "another step draws anew");
        assert_eq!(select(&Pick::default(), 7, 0, &all).len(), 2000);
    }

    #[test]
    fn steps_are_checked_against_what_the_scenario_provides() {
        let step = |action: Action, fault: Option<Fault>| FaultStep {
            name: "s".into(),
            at_s: 1.0,
            duration_s: 1.0,
            action,
            fault,
            direction: Direction::Both,
            select: Pick::default(),
            settle_s: 5.0,
        };
        assert_eq!(step(Action::Proxy, None).validate(false).unwrap_err().0, "fault");
        assert!(step(Action::Proxy, Some(Fault::Loss { probability: 0.05 })).validate(false).is_ok());
        assert_eq!(
            step(Action::Proxy, Some(Fault::Loss { probability: 1.5 })).validate(false).unwrap_err().0,
            "fault"
        );
        assert_eq!(step(Action::Kill, None).validate(false).unwrap_err().0, "action");
        assert!(step(Action::Kill, None).validate(true).is_ok());
        assert_eq!(step(Action::Pause, Some(Fault::HalfOpen)).validate(true).unwrap_err().0, "fault");
    }
}
