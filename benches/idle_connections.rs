//! Memory of idle authenticated connections on the reference relay.
//!
//! Starts `relaykit serve --ephemeral` as its own process, registers N devices over REST, opens
//! N WebSocket connections (hello -> welcome) and holds them, then reads the server's resident
//! memory from /proc. The figure is (RSS with N sessions - RSS before connecting) / N.
//!
//! Run: `cargo bench --bench idle_connections` (N from `RELAYKIT_IDLE_N`, default 10000; the
//! client side needs one file descriptor per connection, this machine allows 20000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

/// Kills the server (by its pid, which we started) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

fn http_post(addr: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and criterion listing: nothing to run
    }
    let n: usize = std::env::var("RELAYKIT_IDLE_N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(["serve", "--ephemeral", "--listen", "127.0.0.1:0"])
        // Idle means idle: no heartbeat closes during the measurement.
        .env("RELAYKIT_LIMITS__HEARTBEAT_MS", "600000")
        .env("RELAYKIT_LIMITS__RATE_LIMIT_PER_SEC", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relaykit serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("listening line");
    let addr = line.trim().strip_prefix("listening http://").expect("listening line format").to_string();
    let pid = server.0.id();

    let started = Instant::now();
    let body = r#"{"device_name":"idle","device_type":"desktop","platform":"linux","public_key":{"alg":"x25519","key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}}"#;
    let tokens: Vec<String> = (0..n)
        .map(|_| {
            let reply: serde_json::Value =
                serde_json::from_str(&http_post(&addr, "/v1/devices", body)).expect("json");
            reply["tokens"]["access_token"].as_str().expect("token").to_string()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let held = rt.block_on(async {
        let mut sockets = Vec::with_capacity(n);
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = 4096;
        config.write_buffer_size = 4096;
        for token in tokens {
            let mut request = format!("ws://{addr}/v1/ws").into_client_request().expect("request");
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("relay.v1"));
            let (mut ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .expect("websocket connect");
            let hello = format!(r#"{{"type":"hello","protocol":"relay.v1","token":"{token}"}}"#);
            ws.send(Message::text(hello)).await.expect("send hello");
            let welcome =
                tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("welcome in time");
            let text = welcome.expect("frame").expect("ok frame").into_text().expect("text");
            assert!(text.contains(r#""type":"welcome""#), "{text}");
            sockets.push(ws);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        sockets
    });
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!("idle_connections: n={n} server_rss_before={before} KiB server_rss_after={after} KiB");
    println!(
        "idle_connections: {:.1} KiB per idle authenticated connection (server side)",
        per_conn / 1024.0
    );
    println!("idle_connections: setup took {:.1} s", started.elapsed().as_secs_f64());
    drop(held);
    drop(rt);
    drop(server);
}
