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
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    let host_port = target.strip_prefix("http://").context("--target must look like http://host:port")?;
    host_port.trim_end_matches('/').to_socket_addrs()?.next().context("--target does not resolve")
}

pub(crate) fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let file = args.scenario.display().to_string();
    let text = std::fs::read_to_string(&args.scenario).with_context(|| format!("reading {file}"))?;
    let scenario = Scenario::from_toml(&file, &text)?;
    relaykit_loadgen::check_limits(&scenario, args.target.is_none())?;
    // Against an external relay the process's CPU is the generator's own: 90% of every core
    // means it, not the target, was the bottleneck.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu_limit_percent = args.target.as_ref().map(|_| 90.0 * cores);
    let options =
        relaykit_loadgen::Options { progress: !args.quiet, hdr_log: args.hdr_log.clone(), cpu_limit_percent };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let report = runtime.block_on(async {
        match &args.target {
            Some(target) => {
                let addr = resolve(target)?;
                Ok::<_, anyhow::Error>(
                    relaykit_loadgen::run_with(scenario, addr, target.clone(), options.clone()).await?,
                )
            }
            None => {
                let config = relaykit_server::Config {
                    ephemeral: true,
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..relaykit_server::Config::default()
                };
                let relay = relaykit_server::build(&config).context("starting the embedded relay")?;
                let listener =
                    tokio::net::TcpListener::bind(config.listen).await.context("binding loopback")?;
                let addr = listener.local_addr()?;
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(async move {
                    let shutdown = async move {
                        let _ = stopped.await;
                    };
                    relaykit_server::run(listener, relay, &config, shutdown).await
                });
                let report =
                    relaykit_loadgen::run_with(scenario, addr, "embedded".into(), options.clone()).await;
                let _ = stop.send(());
                let _ = server.await;
                Ok(report?)
            }
        }
    })?;
    print!("{}", report.to_table());
    if let Some(path) = &args.report_json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.report_html {
        std::fs::write(path, report.to_html()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
