//! One run: provision the population over REST, connect every device, drive the phases, drain,
//! and fold the events into a [`Report`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use relaykit_client::http;
use relaykit_protocol::DeviceType;
use relaykit_protocol::rest::{PairingCode, Registered};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::device::{self, Shared};
use crate::faults::{self, Applied, Controls, DeviceRef};
use crate::harness::Harness;
use crate::record::{Aggregator, Micros, Window};
use crate::report::{Generator, Report};
use crate::scenario::Scenario;

/// Why a run could not happen (as opposed to a run that breached its SLOs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Registering or pairing devices failed.
    #[error("provisioning: {0}")]
    Provision(String),
    /// An output file could not be written.
    #[error("writing {0}")]
    Output(String),
    /// A machine limit would be hit: says which and what to do.
    #[error("{0}")]
    Limit(String),
    /// The relay relaykit starts itself, or the fault proxy, could not be set up.
    #[error("{0}")]
    Target(String),
}

/// File descriptors the process may open (soft `Max open files` of /proc/self/limits).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Fails early, naming the limit, when the population cannot fit: one descriptor per simulated
/// device, plus the relay's side when it runs in this process.
pub fn check_limits(
    scenario: &Scenario,
    embedded_relay: bool,
    shard: Option<(u32, u32)>,
) -> Result<(), LoadError> {
    let p = &scenario.population;
    let (i, n) = shard.unwrap_or((0, 1));
    let users = (0..p.users).filter(|u| u % n.max(1) == i).count() as u64;
    let devices = users * u64::from(p.desktops_per_user + p.mobiles_per_user);
    // The fault proxy holds two more sockets per device connection.
    let proxied = scenario.faults.iter().any(|f| f.action == crate::faults::Action::Proxy);
    let per_device = 1 + u64::from(embedded_relay) + if proxied { 2 } else { 0 };
    let needed = devices * per_device + 256;
    if let Some(limit) = open_files_limit()
        && needed > limit
    {
        let advice = if embedded_relay {
            "run the relay as its own process and pass --target, or simulate fewer devices"
        } else {
            "raise the limit (ulimit -n) or split the population"
        };
        return Err(LoadError::Limit(format!(
            "{devices} devices need about {needed} file descriptors but this process may open {limit} (Max open files): {advice}"
        )));
    }
    Ok(())
}

/// The simulated devices of one user.
#[derive(Debug, Clone)]
struct User {
    desktops: Vec<Registered>,
    mobiles: Vec<Registered>,
}

const WAIT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once (TCP + upgrade + hello/welcome).
const CONCURRENT_HANDSHAKES: usize = 128;

/// Longest the start barrier waits for connections.
const CONNECT_PHASE: Duration = Duration::from_secs(120);

async fn register(
    addr: SocketAddr,
    device_type: DeviceType,
    code: Option<&str>,
) -> Result<Registered, LoadError> {
    let mut body = json!({
        "device_name": format!("relaykit-load {}", device_type.as_str()),
        "device_type": device_type,
        "platform": "relaykit-load",
        "public_key": {"alg": "x25519", "key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"},
    });
    if let Some(code) = code {
        body["pairing_code"] = json!(code);
    }
    let text = body.to_string();
    let r = http::request(addr, "POST", "/v1/devices", &[], Some(text.as_bytes()), WAIT)
        .await
        .map_err(|e| LoadError::Provision(e.to_string()))?;
    if r.status != 201 {
        return Err(LoadError::Provision(format!("POST /v1/devices: {} {}", r.status, r.body)));
    }
    serde_json::from_str(&r.body).map_err(|e| LoadError::Provision(e.to_string()))
}

async fn pairing_code(addr: SocketAddr, device: &Registered) -> Result<String, LoadError> {
    let auth = format!("Bearer {}", device.tokens.access_token);
    let r = http::request(addr, "POST", "/v1/pairing-codes", &[("Authorization", &auth)], None, WAIT)
        .await
        .map_err(|e| LoadError::Provision(e.to_string()))?;
    if r.status != 201 {
        return Err(LoadError::Provision(format!("POST /v1/pairing-codes: {} {}", r.status, r.body)));
    }
    let code: PairingCode = serde_json::from_str(&r.body).map_err(|e| LoadError::Provision(e.to_string()))?;
    Ok(code.code)
}

/// The first desktop registers the user; every other device joins with a fresh pairing code.
async fn provision_user(addr: SocketAddr, desktops: u32, mobiles: u32) -> Result<User, LoadError> {
    let first = register(addr, DeviceType::Desktop, None).await?;
    let mut user = User { desktops: vec![first.clone()], mobiles: Vec::new() };
    for (device_type, n) in [(DeviceType::Desktop, desktops - 1), (DeviceType::Mobile, mobiles)] {
        for _ in 0..n {
            let code = pairing_code(addr, &first).await?;
            let device = register(addr, device_type, Some(&code)).await?;
            match device_type {
                DeviceType::Desktop => user.desktops.push(device),
                DeviceType::Mobile => user.mobiles.push(device),
            }
        }
    }
    Ok(user)
}

/// Deterministic per-phone start offset in [0, 1) s (splitmix64 of seed and index), so phones do
/// not all send on the same tick.
fn offset(seed: u64, index: u64) -> f64 {
    pick(seed, index)
}

/// A deterministic number in [0, 1) for (seed, index): splitmix64.
pub(crate) fn pick(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// How a run behaves (as opposed to what it simulates).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// Print one progress line per second on stderr.
    pub progress: bool,
    /// Write an HdrHistogram interval log (per-second routing and update histograms) here.
    pub hdr_log: Option<std::path::PathBuf>,
    /// Mark the run invalid when the generator process used more CPU than this (percent of one
    /// core). Leave `None` when the relay runs in the same process (its CPU would count).
    pub cpu_limit_percent: Option<f64>,
    /// Simulate only the users `u` with `u % count == index` (worker `index` of `count`).
    pub shard: Option<(u32, u32)>,
    /// Begin the schedule no earlier than this wall-clock instant (Unix ms), so the workers of a
    /// sharded run share one time line.
    pub start_at_ms: Option<u64>,
    /// The relaykit binary, for a scenario target command `relaykit ...` (default: `relaykit`
    /// on the PATH).
    pub relaykit: Option<std::path::PathBuf>,
}

/// What a simulation leaves: the aggregate and the process's own figures.
#[derive(Debug)]
pub struct Simulation {
    /// Every event, folded (ledger still open).
    pub aggregator: Aggregator,
    /// Time zero, Unix ms.
    pub started_at_ms: u64,
    /// Wall time.
    pub wall: Duration,
    /// CPU seconds this process used during the run.
    pub cpu_s: f64,
    /// The fault steps as carried out, in scenario order.
    pub applied: Vec<Applied>,
}

/// Runs `scenario` against the relay at `addr` (`target` names it in the report).
pub async fn run(scenario: Scenario, addr: SocketAddr, target: String) -> Result<Report, LoadError> {
    run_with(scenario, addr, target, Options::default()).await
}

/// [`run`] with options.
pub async fn run_with(
    scenario: Scenario,
    addr: SocketAddr,
    target: String,
    options: Options,
) -> Result<Report, LoadError> {
    run_harnessed(scenario, Some(addr), target, options).await
}

/// Runs a scenario that starts its own relay (`[target]`).
pub async fn run_managed(scenario: Scenario, options: Options) -> Result<Report, LoadError> {
    run_harnessed(scenario, None, String::new(), options).await
}

async fn run_harnessed(
    scenario: Scenario,
    relay: Option<SocketAddr>,
    target: String,
    options: Options,
) -> Result<Report, LoadError> {
    if !scenario.faults.is_empty() && options.shard.is_some() {
        return Err(LoadError::Limit(
            "fault steps need one process that sees every device and controls the relay: run without --shard/--workers".into(),
        ));
    }
    let relaykit = options.relaykit.clone().unwrap_or_else(|| "relaykit".into());
    let harness = Harness::prepare(&scenario, relay, &relaykit).await?;
    let target = match &scenario.target {
        Some(t) => format!("http://{} (started by relaykit: {})", harness.relay, t.command.join(" ")),
        None => target,
    };
    let sim = simulate_with(&scenario, harness.relay, harness.ws_addr(), harness.controls(), &options).await;
    harness.shutdown().await;
    let mut sim = sim?;
    let windows: Vec<Window> = sim
        .applied
        .iter()
        .map(|a| {
            let step = &scenario.faults[a.step];
            let settle = (step.settle_s * 1_000_000.0) as Micros;
            // From settle_s before the step: the commands in flight when it hit are its cost too.
            Window { from: a.from.saturating_sub(settle), to: a.until + settle, healed: Some(a.healed) }
        })
        .collect();
    let window_stats = sim.aggregator.window_stats(&windows);
    if !windows.is_empty() {
        sim.aggregator.retime_reconnects(&windows);
        sim.aggregator.exclude_windows(&windows);
    }
    let (stats, intervals) = sim.aggregator.finish_with_intervals();
    if let Some(path) = &options.hdr_log {
        let started = UNIX_EPOCH + Duration::from_millis(sim.started_at_ms);
        let mut file =
            std::fs::File::create(path).map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
        intervals
            .write_hlog(&mut file, started)
            .map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
    }
    let rss = crate::report::rss_kib();
    let generator = Generator::from_figures(&stats, sim.cpu_s, sim.wall, rss, options.cpu_limit_percent);
    let faults = crate::faults::outcomes(&scenario, &sim.applied, window_stats);
    Ok(Report::new(&scenario, target, sim.started_at_ms, sim.wall, stats, generator)
        .with_faults(&scenario, faults))
}

/// Provisions (this shard of) the population, connects it, drives the phases and drains.
pub async fn simulate(
    scenario: &Scenario,
    addr: SocketAddr,
    options: &Options,
) -> Result<Simulation, LoadError> {
    simulate_with(scenario, addr, addr, Controls::default(), options).await
}

/// [`simulate`] with the fault steps: provisioning at `addr`, device connections to `ws_addr`
/// (the fault proxy when there is one), steps acting on `controls`.
pub async fn simulate_with(
    scenario: &Scenario,
    addr: SocketAddr,
    ws_addr: SocketAddr,
    controls: Controls,
    options: &Options,
) -> Result<Simulation, LoadError> {
    let p = &scenario.population;
    let (shard, shards) = options.shard.unwrap_or((0, 1));
    let mine = (0..p.users).filter(|u| u % shards.max(1) == shard);
    let mut users: Vec<(u32, User)> = futures_util::stream::iter(mine)
        .map(|u| async move {
            provision_user(addr, p.desktops_per_user, p.mobiles_per_user).await.map(|user| (u, user))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    // Device indexes (send offsets, offline choices) follow the global user index, so a shard
    // simulates exactly what the whole run would for its users.
    users.sort_by_key(|(u, _)| *u);

    let scenario = Arc::new(scenario.clone());
    let (events, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let started_at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let cpu_before = crate::report::process_cpu_s();
    let wall = Instant::now();
    let start = tokio::time::Instant::now();
    let (go_tx, go) = watch::channel(None);
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let connect_slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HANDSHAKES));
    let (network_back, network) = watch::channel(0u64);
    let controls = Controls { network_back: Some(Arc::new(network_back)), ..controls };
    let shared = Shared {
        start,
        go,
        ready: ready.clone(),
        next_source: Arc::default(),
        connect_slots,
        events,
        scenario: scenario.clone(),
        stop,
        addr: ws_addr,
        rest: addr,
        idle_ms: Arc::new(std::sync::atomic::AtomicU64::new(device::DEFAULT_IDLE_MS)),
        network,
    };
    let progress = options.progress;
    let keep_samples = !scenario.faults.is_empty();
    let aggregator = tokio::spawn(async move {
        let mut agg = if keep_samples { Aggregator::keeping_samples() } else { Aggregator::default() };
        // Live progress: one plain line per second on stderr (no terminal control codes, so logs
        // of CI runs stay readable).
        let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
        let mut second = 0u64;
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => agg.record(event),
                    None => break,
                },
                _ = tick.tick(), if progress => {
                    eprintln!("{}", agg.progress_line(second));
                    second += 1;
                }
            }
        }
        agg
    });
    let mut tasks = Vec::new();
    let mut catalog = Vec::new();
    for (u, user) in users {
        for (j, d) in user.desktops.into_iter().enumerate() {
            let index = u64::from(u) * u64::from(p.desktops_per_user) + j as u64;
            catalog.push(DeviceRef { role: DeviceType::Desktop, index, device_id: d.device_id.clone() });
            tasks.push(tokio::spawn(device::desktop(shared.clone(), d, index)));
        }
        for (j, m) in user.mobiles.into_iter().enumerate() {
            let index = u64::from(u) * u64::from(p.mobiles_per_user) + j as u64;
            catalog.push(DeviceRef { role: DeviceType::Mobile, index, device_id: m.device_id.clone() });
            tasks.push(tokio::spawn(device::mobile(shared.clone(), m, index, offset(scenario.seed, index))));
        }
    }
    let catalog = Arc::new(catalog);
    drop(shared);
    // Start barrier: the schedule begins once every device connected (or failed to), bounded by
    // CONNECT_PHASE, then a short lead so the first sends are not due in the past.
    let devices = tasks.len();
    let connect_deadline = tokio::time::Instant::now() + CONNECT_PHASE;
    while ready.load(std::sync::atomic::Ordering::Relaxed) < devices
        && tokio::time::Instant::now() < connect_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut lead_s = start.elapsed().as_secs_f64() + 0.2;
    if let Some(at) = options.start_at_ms {
        lead_s = lead_s.max(at.saturating_sub(started_at_ms) as f64 / 1000.0);
    }
    let _ = go_tx.send(Some(lead_s));
    let steps: Vec<_> = scenario
        .faults
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let run = faults::run_step(
                i,
                step.clone(),
                controls.clone(),
                catalog.clone(),
                scenario.seed,
                start,
                lead_s,
            );
            tokio::spawn(run)
        })
        .collect();
    let end = start + Duration::from_secs_f64(lead_s + scenario.load_duration_s() + scenario.drain_s);
    tokio::time::sleep_until(end).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(WAIT, t).await;
    }
    let mut applied = Vec::new();
    for step in steps {
        // Steps end with the load; a restart that outlives it still waits for its readiness.
        match step.await {
            Ok(a) => applied.push(a),
            Err(e) => return Err(LoadError::Target(format!("fault step: {e}"))),
        }
    }
    let aggregator = aggregator.await.map_err(|e| LoadError::Provision(format!("aggregator: {e}")))?;
    Ok(Simulation {
        aggregator,
        started_at_ms,
        wall: wall.elapsed(),
        cpu_s: crate::report::process_cpu_s() - cpu_before,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_population_beyond_the_descriptor_limit_is_refused_naming_it() {
        let Some(limit) = open_files_limit() else { return }; // not Linux: nothing to read
        let users = (limit / 2 + 1) as u32;
        let text = format!(
            "name = \"big\"\n[population]\nusers = {users}\n[[phases]]\nname = \"s\"\nkind = \"steady\"\nduration_s = 1\nrate_per_mobile = 1\n"
        );
        let scenario = Scenario::from_toml("big.toml", &text).unwrap();
        let err = check_limits(&scenario, false, None).unwrap_err().to_string();
        assert!(err.contains("Max open files") && err.contains(&limit.to_string()), "{err}");
        let small =
            Scenario::from_toml("s.toml", &text.replace(&format!("users = {users}"), "users = 2")).unwrap();
        assert!(check_limits(&small, true, None).is_ok());
        assert!(check_limits(&scenario, false, Some((0, 4))).is_ok(), "a quarter of the population fits");
    }

    #[test]
    fn offsets_are_deterministic_and_spread() {
        assert_eq!(offset(1, 7), offset(1, 7));
        let v: Vec<f64> = (0..1000).map(|i| offset(42, i)).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let low = v.iter().filter(|x| **x < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }
}
