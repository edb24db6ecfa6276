//! `relaykit report --baseline OLD.json NEW.json`: two load reports -> the regressions of the
//! new one (table on stdout, optional JSON). Exit code 0 no regression beyond the thresholds,
//! 1 a regression, 2 unreadable or invalid input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_loadgen::baseline::{LoadReport, Percentile, Thresholds, compare};

/// Arguments of `relaykit report`.
#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Load report of the baseline (JSON written by `relaykit load --report-json` or
    /// `relaykit merge`), e.g. the last release's.
    #[arg(long, value_name = "OLD.json")]
    baseline: PathBuf,
    /// Load report of the candidate, compared with the baseline.
    #[arg(value_name = "NEW.json")]
    candidate: PathBuf,
    /// Write the comparison as JSON here (schema: schemas/tools/baseline-report.json).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare reports of different scenarios anyway (refused otherwise).
    #[arg(long)]
    allow_different_scenarios: bool,
    /// A gated latency percentile regresses when it grows by more than this percentage...
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    max_latency_increase_pct: f64,
    /// ...and by more than this many milliseconds (smaller changes are noise).
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    latency_floor_ms: f64,
    /// Latency percentiles that can regress, comma-separated (p50, p90, p99, p99.9, max); the
    /// others are shown only.
    #[arg(long, value_delimiter = ',', default_value = "p99,p99.9", value_name = "LIST")]
    latency_percentiles: Vec<Percentile>,
    /// Throughput (commands delivered per second of load) regresses when it drops by more than
    /// this percentage.
    #[arg(long, default_value_t = 5.0, value_name = "PCT")]
    max_throughput_drop_pct: f64,
    /// Duplicated deliveries and errors regress when they grow by more than this percentage...
    /// (any increase of lost, unacknowledged or expired deliveries is always a regression).
    #[arg(long, default_value_t = 10.0, value_name = "PCT")]
    max_count_increase_pct: f64,
    /// ...and by more than this many.
    #[arg(long, default_value_t = 1, value_name = "N")]
    count_floor: u64,
}

fn read(path: &Path) -> anyhow::Result<LoadReport> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {file}"))?;
    Ok(LoadReport::parse(&file, &text)?)
}

pub(crate) fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let old = read(&args.baseline)?;
    let new = read(&args.candidate)?;
    let thresholds = Thresholds {
        max_latency_increase_pct: args.max_latency_increase_pct,
        latency_floor_ms: args.latency_floor_ms,
        gated_percentiles: args.latency_percentiles,
        max_throughput_drop_pct: args.max_throughput_drop_pct,
        max_count_increase_pct: args.max_count_increase_pct,
        count_floor: args.count_floor,
    };
    let comparison = compare(&old, &new, &thresholds, args.allow_different_scenarios)?;
    print!("{}", comparison.to_table());
    if let Some(path) = &args.json {
        std::fs::write(path, comparison.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(comparison.exit_code()))
}
