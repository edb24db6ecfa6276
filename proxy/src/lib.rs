//! `relaykit-proxy`: a fault-injecting WebSocket proxy between relay.v1 clients and a relay
//! (`relaykit proxy`), also usable in-process as a library (the load generator does).
//!
//! Every accepted TCP connection is connected to the upstream address. The HTTP upgrade
//! request and response pass through byte for byte; after a `101` the proxy cuts both
//! directions into RFC 6455 frames and forwards each as its raw bytes (client frames stay
//! masked). A stream that is not a WebSocket (plain HTTP such as `GET /health`, or anything
//! else) is passed through as raw chunks. The first client text frame is read as JSON: if it
//! is a `hello`, the `did` claim of its token (the JWT payload, signature not checked) names the
//! connection's device for [`Selector::Devices`].
//!
//! # Layout
//!
//! - `lib.rs`: [`spawn`], [`run`] (the accept loop), [`RunningProxy`], [`parse_upstream`].
//! - `fault.rs`: [`FaultSpec`] and friends (the JSON/TOML form), validation, seeded hashing.
//! - `handle.rs`: [`FaultHandle`]: active faults, open connections, upstream address; how
//!   the faults in force for one connection and direction combine.
//! - `conn.rs`: one connection: connect upstream, two pumps that apply the faults to units
//!   and write them when due; `conn/cut.rs`: how a pump cuts its stream into units.
//! - `frame.rs`: HTTP head detection, the incremental frame parser, `hello` device ids.
//! - `control.rs`: the HTTP control API.
//! - `stats.rs`: counters and [`ProxyStats`].
//!
//! # Faults
//!
//! A [`FaultSpec`] names a [`Fault`], a [`Direction`] (`up` = client -> upstream, `down`,
//! `both`), a [`Selector`] and an optional `duration_ms`. Loss, duplication and reorder act on
//! data frames only (text, binary, continuation); control frames (ping, pong, close), HTTP heads
//! and raw bytes are never dropped, doubled or reordered by them. Latency, bandwidth, reset,
//! half-open, slow reader and partition act on every unit. Half-open and partition swallow
//! frames and also hold back the end of the stream (FIN or RST from the sender) until they end;
//! the sockets stay open. Several faults of one kind on the same traffic combine: latencies
//! add, the slowest bandwidth and reader win, probabilities combine as independent events.
//! Frames larger than 16 MiB, or with a malformed length, end the connection with an ordinary
//! close. If the upstream cannot be reached, the client's connection is reset.
//!
//! # Determinism
//!
//! Connections are numbered 1, 2, ... in accept order. Each connection and direction has its
//! own random stream seeded from (seed, connection number, direction), advanced exactly once
//! per unit (the HTTP head, each frame, each raw chunk); every decision about that unit (reset,
//! loss, duplicate, reorder, jitter) is derived from that one draw. So with the same seed, the
//! same connection number and the same frame sequence, the same frames are dropped, doubled,
//! held back and delayed by the same amounts, whatever else is active. [`Selector::Fraction`]
//! hashes (seed, connection number) and is deterministic too.
//!
//! Not deterministic: timing (when a delayed frame actually leaves depends on the scheduler,
//! bandwidth pacing and TCP), the cut of raw (non-WebSocket) streams into chunks (it follows
//! TCP reads), which frames arrive while a fault added at run time is in force, the release of a
//! reordered frame when no next frame comes within one second, connection numbers when clients
//! connect concurrently, and how much a slow reader leaves in kernel buffers.
//!
//! # HTTP control API (`--control ADDR`)
//!
//! | request | answer |
//! |---|---|
//! | `GET /faults` | `200` array of `{"id", "spec", "remaining_ms"}` |
//! | `POST /faults` with a [`FaultSpec`] | `201 {"id": N}` |
//! | `DELETE /faults/{id}` | `204`, or `404` if unknown |
//! | `DELETE /faults` | `204`, every fault removed |
//! | `GET /stats` | `200` [`ProxyStats`] |
//! | `POST /connections/reset` with a [`Selector`] (`"all"`, `{"devices": [..]}`) | `200 {"reset": n}` |
//! | `PUT /upstream` with `{"upstream": "127.0.0.1:1234"}` | `200 {"upstream": ".."}` |
//!
//! Bad input is answered `400 {"error": "invalid_json" | "invalid_fault" | ..., "message": ".."}`.
//! Fault JSON: `{"fault": {"kind": "loss", "probability": 0.05}, "direction": "up",
//! "select": {"devices": ["d1"]}, "duration_ms": 5000}` (schema
//! `schemas/tools/proxy-fault.json`; stats: `schemas/tools/proxy-stats.json`).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use relaykit_proxy::{Direction, Fault, FaultSpec, ProxyConfig, Selector};
//! let proxy = relaykit_proxy::spawn(ProxyConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     upstream: "127.0.0.1:8787".parse().unwrap(),
//!     seed: 1,
//!     control: None,
//! })
//! .await?;
//! let id = proxy.faults().add(FaultSpec {
//!     fault: Fault::Loss { probability: 0.1 },
//!     direction: Direction::Down,
//!     select: Selector::Devices(vec!["desk-1".into()]),
//!     duration_ms: Some(5_000),
//! });
//! // ... clients connect to ws://{proxy.addr}/v1/ws ...
//! proxy.faults().remove(id);
//! proxy.stop().await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

mod conn;
mod control;
mod fault;
mod frame;
mod handle;
mod stats;

pub use control::router as control_router;
pub use fault::{Direction, Fault, FaultError, FaultSpec, Selector};
pub use handle::{ActiveFault, FaultHandle};
pub use stats::{DirectionStats, ProxyStats};

use handle::{ConnInfo, Kill};

/// Where the proxy listens and what it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// Address for clients (port 0 picks a free port; see [`RunningProxy::addr`]).
    pub listen: SocketAddr,
    /// The relay (or any TCP server) behind the proxy.
    pub upstream: SocketAddr,
    /// Seed of every random decision.
    pub seed: u64,
    /// Address of the HTTP control API; `None`: no API (use [`RunningProxy::faults`]).
    pub control: Option<SocketAddr>,
}

/// A proxy started by [`spawn`]. Dropping it stops the proxy too, without waiting.
#[derive(Debug)]
pub struct RunningProxy {
    /// Bound address for clients.
    pub addr: SocketAddr,
    /// Bound address of the control API.
    pub control_addr: Option<SocketAddr>,
    faults: FaultHandle,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningProxy {
    /// Control of this proxy's faults, counters, connections and upstream.
    pub fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }

    /// Stops accepting, closes every connection (FIN to both peers) and the control API, and
    /// waits until they are gone.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the RunningProxy was dropped: stop as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Binds `listen` (and `control`) and runs the proxy on the current tokio runtime.
pub async fn spawn(config: ProxyConfig) -> std::io::Result<RunningProxy> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let faults = FaultHandle::new();
    let (stop, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut control_addr = None;
    if let Some(control) = config.control {
        let control = TcpListener::bind(control).await?;
        control_addr = Some(control.local_addr()?);
        tasks.push(tokio::spawn(control::serve(control, faults.clone(), stopped(rx.clone()))));
    }
    let accept = run(listener, config.upstream, config.seed, faults.clone(), stopped(rx));
    tasks.push(tokio::spawn(accept));
    tracing::info!(%addr, upstream = %config.upstream, seed = config.seed, "proxy started");
    Ok(RunningProxy { addr, control_addr, faults, stop, tasks })
}

/// Accepts connections on `listener` and proxies each to the current upstream (initially
/// `upstream`, see [`FaultHandle::set_upstream`]) until `shutdown` completes; then closes every
/// connection and returns once they are gone.
pub async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    seed: u64,
    faults: FaultHandle,
    shutdown: impl Future<Output = ()>,
) {
    faults.set_upstream(upstream);
    let inner = faults.inner.clone();
    let mut conns = JoinSet::new();
    let mut number = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reaps finished connections so the set does not grow without bound.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    number += 1;
                    // Registered before connecting upstream, so resets and shutdown reach it.
                    let info = Arc::new(ConnInfo::new(seed, number));
                    inner.register(info.clone());
                    conns.spawn(conn::serve(stream, info, seed, inner.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    inner.stop_all(Kill::Close);
    while conns.join_next().await.is_some() {}
    tracing::info!("proxy stopped");
}

/// Why an upstream address was refused.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TLS schemes: the proxy speaks plain TCP only.
    #[error("unsupported scheme in {0:?}: use host:port, http://host:port or ws://host:port")]
    Scheme(String),
    /// Does not resolve.
    #[error("cannot resolve {0:?}: {1}")]
    Resolve(String, std::io::Error),
}

/// `http://host:port`, `ws://host:port` or `host:port` (a path after the port is ignored) ->
/// the first address it resolves to. Resolving a host name blocks.
pub fn parse_upstream(text: &str) -> Result<SocketAddr, UpstreamError> {
    let rest = match text.split_once("://") {
        None => text,
        Some(("http" | "ws", rest)) => rest,
        Some(_) => return Err(UpstreamError::Scheme(text.to_string())),
    };
    let host_port = rest.split('/').next().unwrap_or_default();
    let mut addrs = host_port.to_socket_addrs().map_err(|e| UpstreamError::Resolve(text.to_string(), e))?;
    addrs.next().ok_or_else(|| UpstreamError::Resolve(text.to_string(), std::io::Error::other("no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let want: SocketAddr = "127.0.0.1:8787".parse().unwrap();
        for ok in
            ["127.0.0.1:8787", "http://127.0.0.1:8787", "ws://127.0.0.1:8787/v1/ws", "http://127.0.0.1:8787/"]
        {
            assert_eq!(parse_upstream(ok).unwrap(), want, "{ok}");
        }
        assert!(matches!(parse_upstream("https://127.0.0.1:1"), Err(UpstreamError::Scheme(_))));
        assert!(parse_upstream("127.0.0.1").is_err());
    }
}
