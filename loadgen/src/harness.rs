//! The set-up a scenario with fault steps needs around the relay: the relay itself when the
//! scenario starts it (`[target]`), and the fault proxy between the devices and the relay when a
//! step is a network fault. Registration and pairing go straight to the relay (faults are about
//! the device connections, not about provisioning); device WebSockets go through the proxy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use relaykit_proxy::{ProxyConfig, RunningProxy};
use tokio::sync::Mutex;

use crate::faults::{Action, Controls};
use crate::run::LoadError;
use crate::scenario::Scenario;
use crate::target::ManagedTarget;

/// Target and proxy of one run.
#[derive(Debug)]
pub struct Harness {
    /// The relay relaykit started (None: an external or embedded relay).
    pub target: Option<Arc<Mutex<ManagedTarget>>>,
    /// The fault proxy (None when no step is a network fault).
    pub proxy: Option<RunningProxy>,
    /// The relay's address (REST, and WebSockets when there is no proxy).
    pub relay: SocketAddr,
}

impl Harness {
    /// Starts what `scenario` needs. `relay` is the relay to use when the scenario does not start
    /// its own; `relaykit` is this binary (for a target command `relaykit ...`).
    pub async fn prepare(
        scenario: &Scenario,
        relay: Option<SocketAddr>,
        relaykit: &Path,
    ) -> Result<Harness, LoadError> {
        let (target, relay) = match (&scenario.target, relay) {
            (Some(_), Some(addr)) => {
                return Err(LoadError::Limit(format!(
                    "the scenario starts its own relay ([target]); do not also give one ({addr})"
                )));
            }
            (Some(spec), None) => {
                let t = ManagedTarget::start(spec, relaykit)
                    .await
                    .map_err(|e| LoadError::Target(e.to_string()))?;
                let addr = t.addr();
                (Some(Arc::new(Mutex::new(t))), addr)
            }
            (None, Some(addr)) => (None, addr),
            (None, None) => return Err(LoadError::Target("no relay to run against".into())),
        };
        let proxy = if scenario.faults.iter().any(|f| f.action == Action::Proxy) {
            let config = ProxyConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                upstream: relay,
                seed: scenario.seed,
                control: None,
            };
            let proxy = relaykit_proxy::spawn(config)
                .await
                .map_err(|e| LoadError::Target(format!("fault proxy: {e}")))?;
            Some(proxy)
        } else {
            None
        };
        Ok(Harness { target, proxy, relay })
    }

    /// Where the devices connect.
    pub fn ws_addr(&self) -> SocketAddr {
        self.proxy.as_ref().map_or(self.relay, |p| p.addr)
    }

    /// What the fault steps act on.
    pub fn controls(&self) -> Controls {
        Controls {
            proxy: self.proxy.as_ref().map(RunningProxy::faults),
            target: self.target.clone(),
            network_back: None,
        }
    }

    /// Stops the proxy and the target (by the pid relaykit started).
    pub async fn shutdown(self) {
        if let Some(proxy) = self.proxy {
            proxy.stop().await;
        }
        if let Some(target) = self.target
            && let Ok(target) = Arc::try_unwrap(target)
        {
            target.into_inner().stop().await;
        }
    }
}
