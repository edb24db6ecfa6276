//! Assembling and running the relay: store, signing key, relay state, HTTP server, the timer
//! task, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::TcpListener;
use tokio::time::{Duration, Instant};

use crate::auth::{AuthError, SigningKey, TokenIssuer};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::rest::{AppState, router};
use crate::state::{Policy, Relay};
use crate::store::memory::MemoryStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{CommitObserver, Store, StoreError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration names no data directory and none could be derived.
    #[error("no data directory: pass --data-dir or --ephemeral")]
    NoDataDir,
    /// The store could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing key could not be loaded or created.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// How often expiry, ack timeouts and replay windows are checked. Expiry receipts are due
/// within about a second (PROTOCOL.md 9.10); a tenth of that keeps them prompt and cheap.
const TICK: Duration = Duration::from_millis(100);

/// Builds the relay described by `config` (store, key, metrics).
pub fn build(config: &Config) -> Result<Arc<Relay>, ServerError> {
    let metrics = Arc::new(Metrics::new());
    let (store, key): (Arc<dyn Store>, SigningKey) = if config.ephemeral {
        (Arc::new(MemoryStore::new()), SigningKey::generate())
    } else {
        let dir = config.resolved_data_dir().ok_or(ServerError::NoDataDir)?;
        let m = metrics.clone();
        let observer: CommitObserver = Box::new(move |took, batches| {
            m.store_commit_seconds.observe_duration(took);
            m.store_batch_size.observe(batches as f64);
        });
        let store = SqliteStore::open(&dir, config.group_commit_max_batch, Some(observer))?;
        (Arc::new(store), SigningKey::load_or_create(&dir)?)
    };
    let auth = &config.auth;
    let issuer =
        TokenIssuer::new(key, auth.issuer.clone(), auth.audience.clone(), auth.access_ttl_s, auth.leeway_s);
    let policy = Policy {
        registration_open: config.registration_open,
        pairing_code_ttl_ms: config.pairing_code_ttl_s * 1000,
        refresh_ttl_ms: auth.refresh_ttl_s * 1000,
        test_tokens: config.test_tokens,
        #[cfg(feature = "mutants")]
        mutant: config.mutant,
        #[cfg(not(feature = "mutants"))]
        mutant: None,
    };
    Ok(Relay::open(store, issuer, config.limits.clone(), policy, metrics)?)
}

/// Serves `relay` on `listener` until `shutdown` resolves, then closes every session with
/// `server_restarting` (4000), waits up to `shutdown_grace_ms` for them to go, and flushes the
/// store.
pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let ready = Arc::new(AtomicBool::new(true));
    let state = AppState {
        relay: relay.clone(),
        allowed_origins: Arc::new(config.allowed_origins.clone()),
        ready: ready.clone(),
    };
    let ticker = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                relay.tick();
            }
        })
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = {
        let relay = relay.clone();
        let grace = Duration::from_millis(config.shutdown_grace_ms);
        let retry_after = config.retry_after_restart_ms;
        async move {
            shutdown.await;
            ready.store(false, Ordering::Relaxed);
            relay.close_all_restarting(retry_after);
            let deadline = Instant::now() + grace;
            while relay.session_count() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop_tx.send(());
        }
    };
    tokio::spawn(drain);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Small frames must leave at once: with Nagle's algorithm a delivery can wait ~40 ms for the
    // peer's delayed ACK, which alone would eat a fifth of the 200 ms update budget.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
        })
        .await?;
    ticker.abort();
    relay.flush().await?;
    Ok(())
}

/// A relay running on a task of the current runtime (embedded use: `relaykit load` without a
/// target, tests).
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Shuts the relay down (as on SIGTERM) and waits for it.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.map_err(|e| ServerError::Io(std::io::Error::other(e.to_string())))?
    }
}

/// Builds the relay of `config`, binds `config.listen` and serves it on a new task.
pub async fn spawn(config: Config) -> Result<Running, ServerError> {
    let relay = build(&config)?;
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        run(listener, relay, &config, shutdown).await
    });
    Ok(Running { addr, stop: Some(stop), task })
}
