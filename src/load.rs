//! `relaykit load`: scenario file -> run (against `--target`, or a relay started in this process)
//! -> summary, JSON report, HTML report. Exit code 0 pass, 1 SLO breached, 2 invalid run or error.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_loadgen::Scenario;

/// Arguments of `relaykit load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Scenario file (TOML), e.g. scenarios/smoke.toml.
    scenario: PathBuf,
    /// Base URL of the relay (http://host:port). Without it, a reference relay is started in
    /// this process on a free loopback port (in memory).
    #[arg(long)]
    target: Option<String>,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Write an HdrHistogram interval log here (per-second routing and update histograms,
    /// V2+DEFLATE, microseconds; readable by HistogramLogAnalyzer).
    #[arg(long)]
    hdr_log: Option<PathBuf>,
    /// Write the JSON report here (schema: schemas/tools/load-report.json).
    #[arg(long)]
    report_json: Option<PathBuf>,
    /// Write the HTML report here: one self-contained page (tables, latency over time,
    /// percentile distribution and throughput charts; no external resources).
    #[arg(long)]
    report_html: Option<PathBuf>,
    /// Split the population over this many worker processes (needs --target); their results
    /// are merged into one report.
    #[arg(long, default_value_t = 1, requires = "target")]
    workers: u32,
    /// Worker mode: simulate shard I of N (users u with u % N == I).
    #[arg(long, value_name = "I/N", requires = "bundle")]
    shard: Option<String>,
    /// Worker mode: write the result bundle here instead of a report.
    #[arg(long, requires = "target")]
    bundle: Option<PathBuf>,
    /// Worker mode: start the schedule at this wall-clock instant (Unix ms).
    #[arg(long)]
    start_at_ms: Option<u64>,
}

fn parse_shard(text: &str) -> anyhow::Result<(u32, u32)> {
    let (i, n) = text.split_once('/').context("--shard must look like I/N")?;
    let (i, n): (u32, u32) = (i.parse()?, n.parse()?);
    anyhow::ensure!(n >= 1 && i < n, "--shard {text}: need 0 <= I < N");
    Ok((i, n))
}

pub(crate) fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    let host_port = target.strip_prefix("http://").context("--target must look like http://host:port")?;
    host_port.trim_end_matches('/').to_socket_addrs()?.next().context("--target does not resolve")
}

pub(crate) fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let file = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario).with_context(|| format!("reading {file}"))?;
    let scenario = Scenario::from_toml(&file, &text)?;
    if scenario.capacity.is_some() {
        anyhow::ensure!(
            args.workers == 1 && args.shard.is_none() && args.bundle.is_none() && args.hdr_log.is_none(),
            "{file}: a [capacity] scenario runs in one process: --workers, --shard, --bundle and --hdr-log do not apply"
        );
        let args = crate::capacity::CapacityArgs {
            target: args.target.as_deref(),
            quiet: args.quiet,
            report_json: args.report_json.as_deref(),
            report_html: args.report_html.as_deref(),
        };
        return crate::capacity::load_capacity(&scenario, args);
    }
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    anyhow::ensure!(args.workers >= 1, "--workers must be at least 1");
    if !scenario.faults.is_empty() || scenario.target.is_some() {
        anyhow::ensure!(
            args.workers == 1 && shard.is_none() && args.bundle.is_none(),
            "{file}: fault steps and a [target] need one process that sees every device and controls the relay: --workers, --shard and --bundle do not apply"
        );
        anyhow::ensure!(
            scenario.target.is_none() || args.target.is_none(),
            "{file} starts its own relay ([target]): do not pass --target"
        );
    }
    let embedded = args.target.is_none() && scenario.target.is_none();
    if args.workers == 1 {
        // With --workers N the parent simulates nothing; each worker checks its own share.
        relaykit_loadgen::check_limits(&scenario, embedded, shard)?;
    }
    // Against an external relay the process's CPU is the generator's own: 90% of every core
    // means it, not the target, was the bottleneck.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu_limit_percent = (!embedded).then_some(90.0 * cores);
    let options = relaykit_loadgen::Options {
        progress: !args.quiet,
        hdr_log: args.hdr_log.clone(),
        cpu_limit_percent,
        shard,
        start_at_ms: args.start_at_ms,
        relaykit: Some(std::env::current_exe().context("locating relaykit")?),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let report = runtime.block_on(async {
        if scenario.target.is_some() {
            return Ok(Some(relaykit_loadgen::run_managed(scenario.clone(), options.clone()).await?));
        }
        match &args.target {
            Some(target) if args.bundle.is_some() => {
                let addr = resolve(target)?;
                let sim = relaykit_loadgen::simulate(&scenario, addr, &options).await?;
                let wall_ms = sim.wall.as_millis() as u64;
                let rss = relaykit_loadgen::report::rss_kib();
                let bundle = sim.aggregator.into_bundle(shard.unwrap_or((0, 1)), sim.cpu_s, wall_ms, rss)?;
                let path = args.bundle.as_ref().expect("checked by the match guard");
                let text = serde_json::to_string(&bundle)?;
                std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
                Ok(None)
            }
            Some(target) if args.workers > 1 => {
                let command = relaykit_loadgen::workers::WorkerCommand {
                    program: std::env::current_exe().context("locating relaykit for the workers")?,
                    args: vec![
                        "load".into(),
                        args.scenario.display().to_string(),
                        "--target".into(),
                        target.clone(),
                    ],
                };
                let report = relaykit_loadgen::workers::run_workers(
                    &scenario,
                    target,
                    args.workers,
                    &command,
                    &options,
                )
                .await?;
                Ok(Some(report))
            }
            Some(target) => {
                let addr = resolve(target)?;
                Ok::<_, anyhow::Error>(Some(
                    relaykit_loadgen::run_with(scenario.clone(), addr, target.clone(), options.clone())
                        .await?,
                ))
            }
            None => {
                let config = relaykit_server::Config {
                    ephemeral: true,
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..relaykit_server::Config::default()
                };
                let relay = relaykit_server::spawn(config).await.context("starting the embedded relay")?;
                let report = relaykit_loadgen::run_with(
                    scenario.clone(),
                    relay.addr,
                    "embedded".into(),
                    options.clone(),
                )
                .await;
                let _ = relay.stop().await;
                Ok(Some(report?))
            }
        }
    })?;
    let Some(report) = report else {
        return Ok(ExitCode::SUCCESS); // a worker: its bundle is written, the parent judges
    };
    print!("{}", report.to_table());
    if let Some(path) = &args.report_json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report_html {
        std::fs::write(path, report.to_html()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
