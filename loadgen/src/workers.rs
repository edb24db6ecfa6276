//! Several worker processes for one run: each simulates the users `u % N == i` (so a command's
//! phone and desktop always live in the same process and one clock times it), all start their
//! schedules at the same wall-clock instant, and each hands back a result bundle; merging the
//! bundles gives the same ledger and percentiles as one process simulating everyone.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{Aggregator, Bundle};
use crate::report::{Generator, Report};
use crate::run::{LoadError, Options};
use crate::scenario::Scenario;

/// How to start one worker: the program and the arguments before the worker flags (e.g. the
/// `relaykit` binary and `load SCENARIO --target URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// Program.
    pub program: PathBuf,
    /// Arguments before `--shard`, `--bundle`, `--start-at-ms`, `--quiet`.
    pub args: Vec<String>,
}

/// Runs `workers` processes and merges what they report.
pub async fn run_workers(
    scenario: &Scenario,
    target: &str,
    workers: u32,
    command: &WorkerCommand,
    options: &Options,
) -> Result<Report, LoadError> {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let p = &scenario.population;
    let devices = u64::from(p.users) * u64::from(p.desktops_per_user + p.mobiles_per_user);
    // Time for every worker to register and connect its share before the common start.
    let start_at_ms = now_ms + 5_000 + devices;
    let dir = std::env::temp_dir().join(format!("relaykit-workers-{}-{now_ms}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| LoadError::Output(format!("{}: {e}", dir.display())))?;
    let mut children = Vec::new();
    for i in 0..workers {
        let bundle = dir.join(format!("worker-{i}.json"));
        let child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .args([
                "--shard",
                &format!("{i}/{workers}"),
                "--start-at-ms",
                &start_at_ms.to_string(),
                "--quiet",
            ])
            .arg("--bundle")
            .arg(&bundle)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| LoadError::Output(format!("starting worker {i}: {e}")))?;
        children.push((i, bundle, child));
    }
    let budget = Duration::from_secs_f64(scenario.load_duration_s() + scenario.drain_s + 300.0)
        + Duration::from_millis(start_at_ms - now_ms);
    let mut merged = Aggregator::default();
    let (mut cpu_s, mut rss_kib, mut wall_ms) = (0.0, 0, 0);
    for (i, path, mut child) in children {
        let status = tokio::time::timeout(budget, child.wait())
            .await
            .map_err(|_| LoadError::Output(format!("worker {i} did not finish within {budget:?}")))?
            .map_err(|e| LoadError::Output(format!("worker {i}: {e}")))?;
        if !status.success() {
            return Err(LoadError::Output(format!("worker {i} failed ({status}); its stderr says why")));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
        let bundle: Bundle =
            serde_json::from_str(&text).map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
        merged.merge(&bundle).map_err(|e| LoadError::Output(e.to_string()))?;
        cpu_s += bundle.cpu_s;
        rss_kib += bundle.rss_kib;
        wall_ms = wall_ms.max(bundle.wall_ms);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let stats = merged.finish();
    let wall = Duration::from_millis(wall_ms);
    let generator = Generator::from_figures(&stats, cpu_s, wall, rss_kib, options.cpu_limit_percent);
    Ok(Report::new(scenario, target.to_string(), now_ms, wall, stats, generator))
}
