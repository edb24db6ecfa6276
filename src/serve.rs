//! `relaykit serve`: flags -> [`Config`] -> the reference relay until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use relaykit_server::Config;
use relaykit_server::config::ConfigError;

/// Arguments of `relaykit serve`. Precedence: defaults < `--config` file < `RELAYKIT_*`
/// environment < flags.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the SQLite database and signing key (default: platform data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep everything in memory (nothing survives a restart); for tests and demos.
    #[arg(long)]
    ephemeral: bool,
    /// TOML configuration file (keys as in docs; env RELAYKIT_* overrides it).
    #[arg(long, env = "RELAYKIT_CONFIG")]
    config: Option<PathBuf>,
    /// Refuse registration without a pairing code.
    #[arg(long)]
    closed_registration: bool,
    /// Enable POST /v1/test/tokens (conformance testing only; never in production).
    #[arg(long)]
    test_tokens: bool,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

impl ServeArgs {
    /// Raw flags -> validated configuration.
    fn config(self) -> Result<Config, ConfigError> {
        let mut config = Config::load(self.config.as_deref(), Config::process_env())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = self.data_dir {
            config.data_dir = Some(dir);
        }
        config.ephemeral |= self.ephemeral;
        config.registration_open &= !self.closed_registration;
        config.test_tokens |= self.test_tokens;
        config.log_json |= self.log_json;
        config.validate()?;
        Ok(config)
    }
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.config().context("configuration")?;
    init_logging(config.log_json);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let relay = relaykit_server::build(&config).context("opening the relay")?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // One machine-readable line on stdout: scripts and tests wait for it.
        println!("listening http://{addr}");
        tracing::info!(%addr, ephemeral = config.ephemeral, "relay started");
        relaykit_server::run(listener, relay, &config, shutdown_signal()).await.context("serving")?;
        tracing::info!("relay stopped");
        Ok(ExitCode::SUCCESS)
    })
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
