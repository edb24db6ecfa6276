//! Test upstreams and clients: a WebSocket echo server that records what it receives, raw TCP
//! helpers and a minimal HTTP/1.1 client for the control API. Everything on loopback, port 0.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use relaykit_proxy::{FaultSpec, ProxyConfig, RunningProxy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous bound for anything that should happen "now".
pub const SOON: Duration = Duration::from_secs(5);
/// How long to wait to conclude that something does not arrive.
pub const QUIET: Duration = Duration::from_millis(300);

/// What the echo upstream saw: (connection index from 0, text) for each text message, and a
/// `("<close>")` entry when a connection got a close frame.
pub struct Echo {
    pub addr: SocketAddr,
    pub seen: mpsc::UnboundedReceiver<(usize, String)>,
}

/// A WebSocket server that echoes text and binary messages and reports texts on `seen`.
pub async fn echo_upstream() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for index in 0.. {
            let Ok((stream, _)) = listener.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else { return };
                while let Some(Ok(msg)) = ws.next().await {
                    match msg {
                        Message::Text(t) => {
                            let _ = tx.send((index, t.to_string()));
                            let _ = ws.send(Message::Text(t)).await;
                        }
                        Message::Binary(b) => {
                            let _ = ws.send(Message::Binary(b)).await;
                        }
                        Message::Close(_) => {
                            let _ = tx.send((index, "<close>".to_string()));
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    Echo { addr, seen }
}

pub async fn proxy(upstream: SocketAddr, seed: u64) -> RunningProxy {
    let config = ProxyConfig { listen: "127.0.0.1:0".parse().unwrap(), upstream, seed, control: None };
    relaykit_proxy::spawn(config).await.unwrap()
}

pub async fn connect(proxy: &RunningProxy) -> Client {
    let url = format!("ws://{}/v1/ws", proxy.addr);
    tokio::time::timeout(SOON, tokio_tungstenite::connect_async(url)).await.unwrap().unwrap().0
}

/// An unsigned token whose payload carries `did` (the proxy does not check signatures).
pub fn fake_token(device: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = b64.encode(format!(r#"{{"sub":"u1","did":"{device}"}}"#));
    format!("{}.{claims}.c2ln", b64.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#))
}

/// Connects and sends a `hello` for `device` (echoed back by the echo upstream).
pub async fn connect_as(proxy: &RunningProxy, device: &str) -> Client {
    let mut ws = connect(proxy).await;
    let hello = format!(r#"{{"type":"hello","protocol":"relay.v1","token":"{}"}}"#, fake_token(device));
    ws.send(Message::text(hello)).await.unwrap();
    ws
}

pub async fn send(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// The next message, or `None` if none comes within `wait`. Panics on a connection error.
pub async fn next_within(ws: &mut Client, wait: Duration) -> Option<Message> {
    match tokio::time::timeout(wait, ws.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(Some(Err(e))) => panic!("connection error: {e}"),
        Ok(None) => panic!("connection ended"),
        Err(_) => None,
    }
}

/// The next text message (skipping pongs), panicking if none comes soon.
pub async fn next_text(ws: &mut Client) -> String {
    for _ in 0..10 {
        match next_within(ws, SOON).await {
            Some(Message::Text(t)) => return t.to_string(),
            Some(Message::Pong(_)) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    panic!("only pongs");
}

/// An echo upstream, a proxy (seed 1) in front of it, a connected client, then the fault
/// `json` added (after the handshake, so it cannot hit the upgrade).
pub async fn with_fault(json: &str) -> (Echo, RunningProxy, Client) {
    let echo = echo_upstream().await;
    let proxy = proxy(echo.addr, 1).await;
    let ws = connect(&proxy).await;
    proxy.faults().add(spec(json));
    (echo, proxy, ws)
}

pub fn spec(json: &str) -> FaultSpec {
    let spec: FaultSpec = serde_json::from_str(json).unwrap();
    spec.validate().unwrap();
    spec
}

/// The next text the upstream reports, or `None` within `wait`.
pub async fn seen_within(echo: &mut Echo, wait: Duration) -> Option<(usize, String)> {
    tokio::time::timeout(wait, echo.seen.recv()).await.ok().flatten()
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(SOON, s.read_to_end(&mut out)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}
