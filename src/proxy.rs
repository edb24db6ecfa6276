//! `relaykit proxy`: the fault-injecting WebSocket proxy ([`relaykit_proxy`]) in front of a
//! relay, controlled over HTTP, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_proxy::ProxyConfig;

/// Arguments of `relaykit proxy`.
#[derive(Debug, Args)]
pub(crate) struct ProxyArgs {
    /// Address for clients (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    listen: SocketAddr,
    /// The relay behind the proxy: http://host:port, ws://host:port or host:port.
    #[arg(long)]
    upstream: String,
    /// Address of the HTTP control API (GET/POST/DELETE /faults, GET /stats,
    /// POST /connections/reset, PUT /upstream); without it the proxy injects no faults.
    #[arg(long)]
    control: Option<SocketAddr>,
    /// Seed of every random decision: the same seed and frames give the same drops.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn proxy(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let upstream = relaykit_proxy::parse_upstream(&args.upstream).context("--upstream")?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let config = ProxyConfig { listen: args.listen, upstream, seed: args.seed, control: args.control };
        let proxy = relaykit_proxy::spawn(config).await.context("binding the proxy's addresses")?;
        // Machine-readable lines on stdout, listening first, as `relaykit serve` prints.
        println!("listening http://{}", proxy.addr);
        if let Some(control) = proxy.control_addr {
            println!("control http://{control}");
        }
        stop_requested().await;
        proxy.stop().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C, or SIGTERM where there is one.
async fn stop_requested() {
    #[cfg(unix)]
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        return;
    }
    let _ = tokio::signal::ctrl_c().await;
}
