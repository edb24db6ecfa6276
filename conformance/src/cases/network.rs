//! Cases that need the network to misbehave: the target is reached through relaykit's fault
//! proxy (in process, on loopback), which cuts, drops or stalls frames on purpose.

use std::net::SocketAddr;

use relaykit_proxy::{Direction, Fault, FaultSpec, ProxyConfig, RunningProxy, Selector};

use super::common::{delivery, hello, quiet, sent, short, task};
use crate::case;
use crate::case::{Case, Ctx, Miss, ensure, fail};

/// A fault proxy in front of the target.
async fn proxy(ctx: &Ctx) -> Result<RunningProxy, Miss> {
    let config = ProxyConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        upstream: ctx.addr,
        seed: 7,
        control: None,
    };
    relaykit_proxy::spawn(config).await.map_err(|e| fail("the fault proxy to start", e.to_string()))
}

pub(super) const CASES: &[Case] = &[case!(
    "net-reset-mid-delivery",
    "delivery",
    Must,
    ["DLV-15", "DLV-13"],
    "a delivery cut in the middle of its frame by a TCP reset is delivered again on the next connection",
    |ctx| {
        let (desktop, mobile) = ctx.pair().await?;
        let proxy = proxy(&ctx).await?;
        let mut home = ctx.connect_at(proxy.addr, "desktop-via-proxy", hello(&desktop, None)).await?;
        let mut phone = ctx.connect("mobile", &mobile).await?;
        // Presence of the phone reaches the desktop before the fault is armed.
        quiet(&mut home, short(&ctx)).await?;
        // From now on the next frame towards the desktop is written half, then the connection
        // is reset (RST, no close).
        proxy.faults().add(FaultSpec {
            fault: Fault::Reset { probability: Some(1.0) },
            direction: Direction::Down,
            select: Selector::Devices(vec![desktop.device_id.clone()]),
            duration_ms: None,
        });
        sent(&mut phone, &ctx, &task("net-reset-1", r#"{"cut": true}"#, None)).await?;
        match home.next_frame().await {
            Err(_) => {}
            Ok(frame) => return Err(fail("the connection to end with the cut frame", frame)),
        }
        proxy.stop().await;
        let mut home = ctx.connect("desktop-again", &desktop).await?;
        let (_, d) = delivery(&mut home).await?;
        ensure(d.id == "net-reset-1", "the cut delivery, on the new connection", &d)
    }
)];
