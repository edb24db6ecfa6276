//! The real `relaykit serve` binary against crashes: `kill -9` while a phone is sending, then a
//! restart on the same data directory, must lose no message the relay answered `accepted` for
//! (DLV-6); SIGTERM must stop it cleanly. Uses the reference server's test client
//! (`reference-server/tests/util.rs`).

#[allow(dead_code, unreachable_pub)]
#[path = "../reference-server/tests/util.rs"]
mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use relaykit_protocol::client::Ack;
use relaykit_protocol::{ClientFrame, ServerFrame};
use relaykit_server::Config;
use util::{Incoming, Relay, new_task};

/// A relay process we started; killed (by its pid) if the test ends early.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> (Process, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        // Inherited: a relay that fails to start says why in the test output.
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start relaykit serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let addr = line.trim().strip_prefix("listening http://").expect("`listening http://ADDR` line");
    (Process(child), addr.parse().expect("socket address"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaykit-{tag}-{}-{}", std::process::id(), util::now_ms()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_accepted_message() {
    let dir = temp_dir("kill9");
    let (mut process, addr) = start(&dir);
    let relay = Relay::external(addr, Config::default());
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut phone = relay.connect(&mobile.tokens.access_token).await;

    // 150 sends one after the other, then a burst of 50 in flight when the process dies.
    let mut accepted = BTreeSet::new();
    for i in 0..150 {
        phone.send_frame(&new_task(&format!("m{i:04}"), &format!("{{\"n\":{i}}}"))).await;
        match phone.next_skipping_presence().await {
            ServerFrame::Accepted(a) => assert!(accepted.insert(a.id)),
            other => panic!("expected accepted, got {other:?}"),
        }
    }
    let burst: Vec<String> = (150..200)
        .map(|i| relaykit_protocol::encode(&new_task(&format!("m{i:04}"), &format!("{{\"n\":{i}}}"))))
        .collect();
    phone.send_burst(&burst).await;
    process.0.kill().expect("kill -9 the relay");
    let _ = process.0.wait();
    // Whatever `accepted` made it out before the kill counts as a promise.
    while let Some(Incoming::Text(text)) = phone.recv_within(Duration::from_millis(500)).await {
        if let ServerFrame::Accepted(a) = util::decode(&text) {
            accepted.insert(a.id);
        }
    }
    assert!(accepted.len() >= 150, "{} accepted", accepted.len());

    let (process, addr) = start(&dir);
    let relay = Relay::external(addr, Config::default());
    let mut home = relay.connect(&desktop.tokens.access_token).await;
    let mut delivered = BTreeSet::new();
    // Bounded: at most 200 distinct messages exist; stop once every accepted one arrived or the
    // relay stays quiet for 3 s.
    for _ in 0..1000 {
        if accepted.is_subset(&delivered) {
            break;
        }
        match home.recv_within(Duration::from_secs(3)).await {
            Some(Incoming::Text(text)) => {
                let frame = util::decode(&text);
                if let Some((_, d)) = frame.as_delivery() {
                    assert!(d.id.starts_with('m'), "unexpected message {}", d.id);
                    delivered.insert(d.id.clone());
                    home.send_frame(&ClientFrame::Ack(Ack { seq: d.seq })).await;
                }
            }
            _ => break,
        }
    }
    let lost: Vec<_> = accepted.difference(&delivered).collect();
    assert!(lost.is_empty(), "accepted but never delivered after kill -9: {lost:?}");
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_4000_and_exits_cleanly() {
    let dir = temp_dir("sigterm");
    let (mut process, addr) = start(&dir);
    let relay = Relay::external(addr, Config::default());
    let (desktop, _) = relay.desktop_and_mobile().await;
    let mut home = relay.connect(&desktop.tokens.access_token).await;
    let status =
        Command::new("kill").args(["-TERM", &process.0.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let closed = home.expect_close().await;
    assert_eq!(closed.code, 4000, "{closed:?}");
    let error = closed.error.expect("server_restarting error frame before the close");
    assert!(error.retry_after_ms.is_some(), "{error:?}");
    let mut exit = None;
    for _ in 0..100 {
        if let Some(s) = process.0.try_wait().expect("wait") {
            exit = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exit = exit.expect("relay exits within 10 s of SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
