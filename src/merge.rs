//! `relaykit merge`: result bundles of sharded workers (`relaykit load --shard I/N --bundle FILE`,
//! for example one per Kubernetes pod) -> one report with one verdict, as if one process had
//! simulated the whole population. Exit codes as `relaykit load`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_loadgen::Scenario;

/// Arguments of `relaykit merge`.
#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The scenario the workers ran (its budgets judge the merged result).
    #[arg(long)]
    scenario: PathBuf,
    /// Result bundles, one per shard; every shard of the run must be present exactly once.
    #[arg(required = true)]
    bundles: Vec<PathBuf>,
    /// Target named in the report.
    #[arg(long, default_value = "merged")]
    target: String,
    /// Write the JSON report here.
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    report_html: Option<PathBuf>,
}

pub(crate) fn merge(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let file = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario).with_context(|| format!("reading {file}"))?;
    let scenario = Scenario::from_toml(&file, &text)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let report =
        relaykit_loadgen::workers::merge_files(&scenario, &args.target, now_ms, &args.bundles, None)?;
    print!("{}", report.to_table());
    if let Some(path) = &args.report_json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report_html {
        std::fs::write(path, report.to_html()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
