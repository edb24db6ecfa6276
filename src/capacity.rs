//! `relaykit load` of a scenario with a `[capacity]` table: runs the levels (against `--target`,
//! or a relay started in this process), prints one line per level as it ends and the knee, writes
//! the JSON and HTML reports. Exit code 0 pass, 1 fail (no knee, or below the gate), 2 invalid.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use relaykit_loadgen::Scenario;
use relaykit_loadgen::capacity::{self, Capacity};

/// What `relaykit load` passes on for a capacity search.
pub(crate) struct CapacityArgs<'a> {
    pub(crate) target: Option<&'a str>,
    pub(crate) quiet: bool,
    pub(crate) report_json: Option<&'a Path>,
    pub(crate) report_html: Option<&'a Path>,
}

pub(crate) fn load_capacity(scenario: &Scenario, args: CapacityArgs<'_>) -> anyhow::Result<ExitCode> {
    let c: &Capacity = scenario.capacity.as_ref().context("not a [capacity] scenario")?;
    // Against an external relay the process's CPU is the generator's own (as in `relaykit load`).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let options = relaykit_loadgen::Options {
        progress: !args.quiet,
        cpu_limit_percent: args.target.map(|_| 90.0 * cores),
        ..relaykit_loadgen::Options::default()
    };
    println!(
        "capacity search {}: mode {}, up to {} levels of {} s\n{}",
        scenario.name,
        c.mode.as_str(),
        c.max_steps,
        c.step_duration_s,
        capacity::table_header()
    );
    let print = |level: &capacity::Level| println!("{}", level.row());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let report = runtime.block_on(async {
        match args.target {
            Some(target) => {
                let addr = crate::load::resolve(target)?;
                let r = capacity::search(scenario, c, addr, target.into(), &options, false, print).await;
                Ok::<_, anyhow::Error>(r)
            }
            None => {
                let config = relaykit_server::Config {
                    ephemeral: true,
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    ..relaykit_server::Config::default()
                };
                let relay = relaykit_server::spawn(config).await.context("starting the embedded relay")?;
                let r =
                    capacity::search(scenario, c, relay.addr, "embedded".into(), &options, true, print).await;
                let _ = relay.stop().await;
                Ok(r)
            }
        }
    })?;
    print!("{}", report.summary());
    if let Some(path) = args.report_json {
        std::fs::write(path, report.to_json()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = args.report_html {
        std::fs::write(path, report.to_html()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::from(report.exit_code()))
}
