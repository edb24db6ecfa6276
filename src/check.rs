//! `relaykit check`: flags -> [`CheckConfig`] -> the conformance suite -> table, JSON, JUnit.
//! Exit code 0 when no MUST case failed, 1 when one did, 2 on usage or target errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_conformance::cases::catalogue;
use relaykit_conformance::{CheckConfig, select};

/// Arguments of `relaykit check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Base URL of the relay, e.g. http://127.0.0.1:8787.
    #[arg(long, required_unless_present = "list")]
    target: Option<String>,
    /// Run only cases whose id starts with, or whose group is, this (repeatable).
    #[arg(long)]
    filter: Vec<String>,
    /// List the cases (id, level, requirements, description) and exit.
    #[arg(long)]
    list: bool,
    /// Write the JSON report here (schema: schemas/tools/check-report.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Multiply every wait by this (slow targets or machines).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Cases run at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Provision the device pairs of cases with this shell command instead of POST
    /// /v1/devices: it gets RELAYKIT_DEVICE_TYPE (mobile|desktop) and RELAYKIT_USER_ID (empty
    /// for a new user) and prints the POST /v1/devices answer as JSON.
    #[arg(long)]
    provision_cmd: Option<String>,
}

pub(crate) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cases = select(&catalogue(), &args.filter);
    if args.list {
        for c in &cases {
            println!(
                "{:<36} {:<6} {:<24} {}",
                c.id,
                c.level.as_str(),
                c.requirements.join(","),
                c.description
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(!cases.is_empty(), "no case matches the filters {:?}", args.filter);
    anyhow::ensure!(args.time_scale > 0.0, "--time-scale must be positive");
    let target = args.target.context("--target is required")?;
    let mut config = CheckConfig::new(&target, args.time_scale, args.concurrency)?;
    config.provision_cmd = args.provision_cmd;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let report = runtime.block_on(relaykit_conformance::run(&config, &cases))?;
    print!("{}", report.to_table());
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.to_junit()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.must_failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
