//! Calibration: the generator must measure what really happens. A loopback proxy between the
//! generator and the relay holds every relay-to-client byte for exactly `DELAY`; the measured
//! command routing and update latencies must move by that much, and nothing else may change.

use std::net::SocketAddr;
use std::time::Duration;

use relaykit_loadgen::Scenario;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const DELAY: Duration = Duration::from_millis(100);

/// Forwards `from` to `to`, each chunk written `delay` after it was read (order kept).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((read_at, bytes)) = rx.recv().await {
        tokio::time::sleep_until(read_at + delay).await;
        if to.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// A proxy to `upstream` delaying the upstream-to-client direction by `DELAY`.
async fn delaying_proxy(upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else { continue };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, Duration::ZERO));
            tokio::spawn(pump(sr, cw, DELAY));
        }
    });
    addr
}

async fn relay() -> relaykit_server::Running {
    let config = relaykit_server::Config {
        ephemeral: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..relaykit_server::Config::default()
    };
    relaykit_server::spawn(config).await.expect("relay")
}

const SCENARIO: &str = r#"
name = "calibration"
seed = 5
drain_s = 2
[population]
users = 4
[[phases]]
name = "steady"
kind = "steady"
duration_s = 3
rate_per_mobile = 4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_delay_shows_up_in_the_measured_latencies() {
    let relay = relay().await;
    let upstream = relay.addr;
    let direct =
        relaykit_loadgen::run(Scenario::from_toml("c.toml", SCENARIO).unwrap(), upstream, "direct".into())
            .await
            .expect("direct run");
    let proxy = delaying_proxy(upstream).await;
    let delayed =
        relaykit_loadgen::run(Scenario::from_toml("c.toml", SCENARIO).unwrap(), proxy, "delayed".into())
            .await
            .expect("delayed run");
    relay.stop().await.expect("relay stops cleanly");
    let d = DELAY.as_secs_f64() * 1000.0;
    for (name, base, slow) in [
        ("command routing", &direct.stats.command_routing, &delayed.stats.command_routing),
        ("update", &direct.stats.update, &delayed.stats.update),
    ] {
        // Each path crosses the delayed direction once: the median moves by DELAY, within the
        // direct run's own spread plus a few ms of scheduling.
        let shift = slow.p50_ms - base.p50_ms;
        assert!(
            (shift - d).abs() < 15.0 + base.p90_ms,
            "{name}: p50 {:.2} -> {:.2} ms, shift {shift:.2} ms, want {d}",
            base.p50_ms,
            slow.p50_ms
        );
        assert!(slow.p50_ms >= d, "{name}: nothing can arrive faster than the delay: {:.2}", slow.p50_ms);
    }
    // End to end crosses it twice: command to the desktop, result back to the phone.
    let shift = delayed.stats.end_to_end.p50_ms - direct.stats.end_to_end.p50_ms;
    assert!(
        (shift - 2.0 * d).abs() < 30.0 + direct.stats.end_to_end.p90_ms,
        "end to end shift {shift:.2} ms"
    );
    // The delay changes timing only: the ledgers are identical and complete.
    assert_eq!(direct.stats.ledger, delayed.stats.ledger);
    assert_eq!((delayed.stats.ledger.sent, delayed.stats.ledger.lost), (48, 0));
}

/// A proxy that forwards both ways at once and cuts every connection open at `cut_after`.
async fn cutting_proxy(upstream: SocketAddr, cut_after: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let (cut_tx, cut) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(cut_after).await;
        let _ = cut_tx.send(true);
        // Keep the sender alive: connections made after the cut are forwarded normally.
        std::future::pending::<()>().await;
    });
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else { continue };
            let mut cut = cut.clone();
            let already_cut = *cut.borrow();
            tokio::spawn(async move {
                let (mut client, mut server) = (client, server);
                if already_cut {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cut.changed() => {} // both sockets drop here: an abrupt cut
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_cut_off_unexpectedly_reconnect_and_nothing_is_lost() {
    let relay = relay().await;
    let proxy = cutting_proxy(relay.addr, Duration::from_millis(2_500)).await;
    let report = relaykit_loadgen::run(Scenario::from_toml("c.toml", SCENARIO).unwrap(), proxy, "cut".into())
        .await
        .expect("run");
    relay.stop().await.expect("relay stops cleanly");
    let l = &report.stats.ledger;
    // Every device was cut once and came back; commands in flight at the cut were redelivered or
    // resent, none lost. (The cut happens during the schedule: the connect phase is shorter.)
    assert_eq!(report.stats.reconnect.count, 8, "{}", report.to_table());
    assert_eq!(l.lost, 0, "{}", report.to_table());
    assert!(l.delivered >= l.sent - l.unacknowledged, "{}", report.to_table());
    assert_eq!(report.stats.errors.get("transport"), Some(&8));
}
