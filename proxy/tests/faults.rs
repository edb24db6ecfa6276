//! Each fault against a WebSocket echo upstream, through the library handle.

mod util;

use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use util::*;

#[tokio::test]
async fn loss_p1_drops_data_frames_but_pings_and_close_pass() {
    let (mut echo, proxy, mut ws) =
        with_fault(r#"{"fault": {"kind": "loss", "probability": 1.0}, "direction": "up"}"#).await;
    let id = proxy.faults().list()[0].id;
    send(&mut ws, "lost").await;
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next_within(&mut ws, SOON).await, Some(Message::Pong(b"p".to_vec().into())));
    assert_eq!(seen_within(&mut echo, QUIET).await, None, "a data frame got through");
    assert!(proxy.faults().remove(id));
    send(&mut ws, "kept").await;
    assert_eq!(next_text(&mut ws).await, "kept");
    ws.send(Message::Close(None)).await.unwrap();
    assert!(matches!(next_within(&mut ws, SOON).await, Some(Message::Close(_))));
    let stats = proxy.faults().stats();
    assert_eq!((stats.up.dropped, stats.down.dropped), (1, 0));
    proxy.stop().await;
}

#[tokio::test]
async fn duplicate_p1_doubles_each_data_frame() {
    let (_echo, proxy, mut ws) =
        with_fault(r#"{"fault": {"kind": "duplicate", "probability": 1.0}, "direction": "up"}"#).await;
    send(&mut ws, "1").await;
    send(&mut ws, "2").await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_text(&mut ws).await);
    }
    assert_eq!(got, ["1", "1", "2", "2"]);
    assert_eq!(next_within(&mut ws, QUIET).await, None);
    assert_eq!(proxy.faults().stats().up.duplicated, 2);
}

#[tokio::test]
async fn reorder_p1_swaps_pairs() {
    let (_echo, proxy, mut ws) =
        with_fault(r#"{"fault": {"kind": "reorder", "probability": 1.0}, "direction": "up"}"#).await;
    for n in ["1", "2", "3", "4"] {
        send(&mut ws, n).await;
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_text(&mut ws).await);
    }
    assert_eq!(got, ["2", "1", "4", "3"]);
    assert_eq!(proxy.faults().stats().up.reordered, 2);
}

#[tokio::test]
async fn latency_delays_each_frame_by_at_least_ms() {
    let (_echo, proxy, mut ws) =
        with_fault(r#"{"fault": {"kind": "latency", "ms": 150, "jitter_ms": 50}, "direction": "down"}"#)
            .await;
    for n in 0..3 {
        let start = Instant::now();
        send(&mut ws, &n.to_string()).await;
        assert_eq!(next_text(&mut ws).await, n.to_string());
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(100), "only {elapsed:?}");
        assert!(elapsed < SOON, "{elapsed:?}");
    }
    assert_eq!(proxy.faults().stats().down.delayed, 3);
}

/// TCP-level loss: nothing is dropped, every frame arrives once and in order, but a retransmitted
/// one (all of them at probability 1) comes a retransmission timeout late.
#[tokio::test]
async fn retransmit_delays_frames_by_the_rto_without_losing_or_reordering_them() {
    let fault = r#"{"fault": {"kind": "retransmit", "probability": 1, "rto_ms": 150}, "direction": "down"}"#;
    let (_echo, _proxy, mut ws) = with_fault(fault).await;
    let start = Instant::now();
    for n in 0..3 {
        send(&mut ws, &n.to_string()).await;
    }
    for n in 0..3 {
        assert_eq!(next_text(&mut ws).await, n.to_string(), "in order, none lost");
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(150), "only {elapsed:?}");
    assert!(elapsed < SOON, "{elapsed:?}");
}

/// How long five 2,000-byte messages take to come back through `fault`.
async fn round_trip_of_10_kb(fault: &str) -> Duration {
    let (_echo, _proxy, mut ws) = with_fault(fault).await;
    let start = Instant::now();
    let payload = "x".repeat(2000);
    for _ in 0..5 {
        send(&mut ws, &payload).await;
    }
    for _ in 0..5 {
        assert_eq!(next_text(&mut ws).await.len(), 2000);
    }
    start.elapsed()
}

#[tokio::test]
async fn bandwidth_and_slow_reader_pace_the_traffic() {
    // The first frame goes at once, each later one waits for the previous at 10 kB/s (~0.2 s).
    let fault = r#"{"fault": {"kind": "bandwidth", "bytes_per_s": 10000}, "direction": "down"}"#;
    let elapsed = round_trip_of_10_kb(fault).await;
    assert!(elapsed >= Duration::from_millis(700), "bandwidth: only {elapsed:?}");
    // ~10 kB read at 20 kB/s: at least 0.4 s, however the reads fall.
    let fault = r#"{"fault": {"kind": "slow_reader", "bytes_per_s": 20000}, "direction": "up"}"#;
    let elapsed = round_trip_of_10_kb(fault).await;
    assert!(elapsed >= Duration::from_millis(400), "slow reader: only {elapsed:?}");
    assert!(elapsed < SOON, "slow reader: {elapsed:?}");
}

/// A client read that ends in a TCP reset: not a close frame, nor an end of stream (which
/// tungstenite also reports as an error, but not as an I/O `ConnectionReset`).
async fn expect_reset(ws: &mut Client) {
    use tokio_tungstenite::tungstenite::Error;
    for _ in 0..10 {
        match tokio::time::timeout(SOON, ws.next()).await.expect("no reset within 5 s") {
            Some(Err(Error::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Some(Err(e)) => panic!("{e} instead of a reset"),
            Some(Ok(Message::Close(c))) => panic!("clean close {c:?} instead of a reset"),
            Some(Ok(_)) => continue,
            None => panic!("clean end of stream instead of a reset"),
        }
    }
    panic!("no reset");
}

#[tokio::test]
async fn reset_with_probability_cuts_a_frame_and_resets_the_client() {
    let echo = echo_upstream().await;
    let proxy = proxy(echo.addr, 1).await;
    let mut ws = connect(&proxy).await;
    send(&mut ws, "before").await;
    assert_eq!(next_text(&mut ws).await, "before");
    proxy.faults().add(spec(r#"{"fault": {"kind": "reset", "probability": 1.0}, "direction": "down"}"#));
    send(&mut ws, &"y".repeat(300)).await;
    expect_reset(&mut ws).await;
    assert_eq!(proxy.faults().stats().resets, 1);
}

#[tokio::test]
async fn reset_now_and_reset_connections_hit_only_the_selected_connections() {
    let echo = echo_upstream().await;
    let proxy = proxy(echo.addr, 1).await;
    let mut first = connect_as(&proxy, "d1").await;
    let mut second = connect_as(&proxy, "d2").await;
    assert!(next_text(&mut first).await.contains("hello"));
    assert!(next_text(&mut second).await.contains("hello"));
    proxy.faults().add(spec(r#"{"fault": {"kind": "reset"}, "select": {"devices": ["d1"]}}"#));
    expect_reset(&mut first).await;
    assert!(proxy.faults().list().is_empty(), "a reset without probability is not kept");
    send(&mut second, "alive").await;
    assert_eq!(next_text(&mut second).await, "alive");
    let n = proxy.faults().reset_connections(&relaykit_proxy::Selector::Connections(vec![2]));
    assert_eq!(n, 1);
    expect_reset(&mut second).await;
    assert_eq!(proxy.faults().stats().resets, 2);
}

#[tokio::test]
async fn half_open_swallows_frames_but_keeps_the_socket_open() {
    let (mut echo, proxy, mut ws) =
        with_fault(r#"{"fault": {"kind": "half_open"}, "direction": "up"}"#).await;
    let id = proxy.faults().list()[0].id;
    send(&mut ws, "into the void").await;
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next_within(&mut ws, QUIET).await, None, "something came back");
    assert_eq!(seen_within(&mut echo, Duration::from_millis(50)).await, None);
    assert!(proxy.faults().remove(id));
    // Still the same open socket: traffic flows again once the fault is gone.
    send(&mut ws, "back").await;
    assert_eq!(next_text(&mut ws).await, "back");
    assert_eq!(proxy.faults().stats().up.black_holed, 2);
}

#[tokio::test]
async fn partition_black_holes_only_the_selected_device_until_removed() {
    let mut echo = echo_upstream().await;
    let proxy = proxy(echo.addr, 1).await;
    let mut d1 = connect_as(&proxy, "d1").await;
    let mut d2 = connect_as(&proxy, "d2").await;
    assert!(next_text(&mut d1).await.contains("hello"));
    assert!(next_text(&mut d2).await.contains("hello"));
    while seen_within(&mut echo, Duration::from_millis(50)).await.is_some() {}
    let id = proxy.faults().add(spec(r#"{"fault": {"kind": "partition"}, "select": {"devices": ["d1"]}}"#));
    send(&mut d1, "from d1").await;
    send(&mut d2, "from d2").await;
    assert_eq!(next_text(&mut d2).await, "from d2");
    assert_eq!(next_within(&mut d1, QUIET).await, None);
    // A connection d1 opens during the partition is cut off from its hello on.
    let mut d1_again = connect_as(&proxy, "d1").await;
    assert_eq!(next_within(&mut d1_again, QUIET).await, None);
    let seen: Vec<_> = std::iter::from_fn(|| echo.seen.try_recv().ok()).map(|(_, t)| t).collect();
    assert_eq!(seen, ["from d2"]);
    assert!(proxy.faults().remove(id));
    send(&mut d1, "healed").await;
    assert_eq!(next_text(&mut d1).await, "healed");
    send(&mut d1_again, "healed too").await;
    assert_eq!(next_text(&mut d1_again).await, "healed too");
}

#[tokio::test]
async fn faults_with_a_duration_remove_themselves() {
    let (_echo, proxy, mut ws) = with_fault(r#"{"fault": {"kind": "half_open"}, "duration_ms": 300}"#).await;
    let listed = proxy.faults().list();
    assert!(listed.len() == 1 && listed[0].remaining_ms.is_some_and(|ms| ms <= 300), "{listed:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proxy.faults().list().is_empty());
    send(&mut ws, "after").await;
    assert_eq!(next_text(&mut ws).await, "after");
}

/// The texts the upstream receives of 200 frames sent through loss p = 0.5 with `seed`.
async fn survivors(seed: u64) -> Vec<String> {
    let mut echo = echo_upstream().await;
    let proxy = proxy(echo.addr, seed).await;
    proxy.faults().add(spec(r#"{"fault": {"kind": "loss", "probability": 0.5}, "direction": "up"}"#));
    let mut ws = connect(&proxy).await;
    for n in 0..200 {
        send(&mut ws, &n.to_string()).await;
    }
    ws.send(Message::Close(None)).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..=200 {
        match seen_within(&mut echo, SOON).await.expect("upstream saw no close").1 {
            t if t == "<close>" => break,
            t => got.push(t),
        }
    }
    proxy.stop().await;
    got
}

#[tokio::test]
async fn the_same_seed_drops_the_same_frames() {
    let (a, b, other) = (survivors(42).await, survivors(42).await, survivors(43).await);
    assert!((60..=140).contains(&a.len()), "{} of 200 survived p = 0.5", a.len());
    assert_eq!(a, b);
    assert_ne!(a, other, "the seed makes no difference");
}

#[tokio::test]
async fn set_upstream_sends_new_connections_to_the_new_target() {
    let first = echo_upstream().await;
    let mut second = echo_upstream().await;
    let proxy = proxy(first.addr, 1).await;
    let mut old = connect(&proxy).await;
    proxy.faults().set_upstream(second.addr);
    let mut new = connect(&proxy).await;
    send(&mut new, "to second").await;
    assert_eq!(next_text(&mut new).await, "to second");
    assert_eq!(seen_within(&mut second, SOON).await.map(|s| s.1).as_deref(), Some("to second"));
    send(&mut old, "still first").await;
    assert_eq!(next_text(&mut old).await, "still first");
    let stats = proxy.faults().stats();
    assert_eq!((stats.connections_total, stats.connections_open), (2, 2));
}
