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
    let mut paths = Vec::new();
    for (i, path, mut child) in children {
        let status = tokio::time::timeout(budget, child.wait())
            .await
            .map_err(|_| LoadError::Output(format!("worker {i} did not finish within {budget:?}")))?
            .map_err(|e| LoadError::Output(format!("worker {i}: {e}")))?;
        if !status.success() {
            return Err(LoadError::Output(format!("worker {i} failed ({status}); its stderr says why")));
        }
        paths.push(path);
    }
    let report = merge_files(scenario, target, now_ms, &paths, options.cpu_limit_percent);
    let _ = std::fs::remove_dir_all(&dir);
    report
}

/// Merges result bundle files (from `--workers`, or from workers elsewhere run with
/// `--shard I/N --bundle FILE`) into one report judged against `scenario`'s budgets. Every shard
/// of the run must be there exactly once.
pub fn merge_files(
    scenario: &Scenario,
    target: &str,
    started_at_ms: u64,
    paths: &[PathBuf],
    cpu_limit_percent: Option<f64>,
) -> Result<Report, LoadError> {
    let mut merged = Aggregator::default();
    let (mut cpu_s, mut rss_kib, mut wall_ms) = (0.0, 0, 0);
    let mut shards = std::collections::BTreeSet::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
        let bundle: Bundle =
            serde_json::from_str(&text).map_err(|e| LoadError::Output(format!("{}: {e}", path.display())))?;
        if !shards.insert(bundle.shard) {
            return Err(LoadError::Output(format!(
                "{}: shard {:?} given twice",
                path.display(),
                bundle.shard
            )));
        }
        merged.merge(&bundle).map_err(|e| LoadError::Output(e.to_string()))?;
        cpu_s += bundle.cpu_s;
        rss_kib += bundle.rss_kib;
        wall_ms = wall_ms.max(bundle.wall_ms);
    }
    let count = shards.iter().next().map_or(0, |s| s.1);
    if shards.len() != count as usize || shards.iter().any(|s| s.1 != count) {
        return Err(LoadError::Output(format!("incomplete set of shards {shards:?}: expected {count}")));
    }
    let stats = merged.finish();
    let wall = Duration::from_millis(wall_ms);
    let generator = Generator::from_figures(&stats, cpu_s, wall, rss_kib, cpu_limit_percent);
    Ok(Report::new(scenario, target.to_string(), started_at_ms, wall, stats, generator))
}
