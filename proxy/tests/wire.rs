//! The proxy at the byte level: raw TCP peers on both sides, so every byte can be compared.

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use util::*;

const REQUEST: &[u8] = b"GET /v1/ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nX-Odd:  spacing \r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

/// A frame, encoded by tungstenite (independent of the proxy's parser); `mask` for client frames.
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let header = FrameHeader { opcode: OpCode::from(opcode), mask, ..FrameHeader::default() };
    let mut out = Vec::new();
    Frame::from_payload(header, payload.to_vec().into()).format(&mut out).unwrap();
    out
}

/// A server that answers anything with `reply` once it has seen `\r\n\r\n` (or at once if
/// `reply_first`), then reports every byte it received until the client's end of stream.
async fn raw_upstream(reply: Vec<u8>, reply_first: bool) -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let mut replied = false;
        loop {
            if !replied && (reply_first || got.windows(4).any(|w| w == b"\r\n\r\n")) {
                s.write_all(&reply).await.unwrap();
                replied = true;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
    });
    (addr, rx)
}

async fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    tokio::time::timeout(SOON, s.read_exact(&mut out)).await.expect("bytes within 5 s").unwrap();
    out
}

#[tokio::test]
async fn a_clean_websocket_session_passes_byte_exact_both_ways() {
    let mut down = RESPONSE.to_vec();
    for (op, len) in [(1, 5), (2, 200), (2, 70_000), (9, 4), (1, 0)] {
        down.extend(frame(op, &vec![b'd'; len], None));
    }
    let (addr, received) = raw_upstream(down.clone(), false).await;
    let proxy = proxy(addr, 1).await;
    let mut up = REQUEST.to_vec();
    for (i, len) in [3usize, 125, 126, 65_536, 100_000].into_iter().enumerate() {
        up.extend(frame(if i % 2 == 0 { 1 } else { 2 }, &vec![b'u'; len], Some([i as u8, 7, 0x55, 0xaa])));
    }
    up.extend(frame(8, &[0x03, 0xe8], Some([1, 2, 3, 4])));
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    // Odd write sizes, so heads and frames straddle reads.
    for chunk in up.chunks(777) {
        client.write_all(chunk).await.unwrap();
    }
    assert_eq!(read_exactly(&mut client, down.len()).await, down);
    client.shutdown().await.unwrap();
    let got = tokio::time::timeout(SOON, received).await.unwrap().unwrap();
    assert_eq!(got.len(), up.len());
    assert!(got == up, "the upstream received different bytes");
    let stats = proxy.faults().stats();
    assert_eq!((stats.up.frames, stats.down.frames), (6, 5));
    assert_eq!((stats.up.bytes, stats.down.bytes), (up.len() as u64, down.len() as u64));
}

#[tokio::test]
async fn bytes_that_are_not_http_pass_through_raw() {
    let reply = b"\x00\xffserver speaks first, not HTTP".to_vec();
    let (addr, received) = raw_upstream(reply.clone(), true).await;
    let proxy = proxy(addr, 1).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    assert_eq!(read_exactly(&mut client, reply.len()).await, reply);
    let garbage: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    client.write_all(&garbage).await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(tokio::time::timeout(SOON, received).await.unwrap().unwrap(), garbage);
}

#[tokio::test]
async fn broken_framing_closes_both_sides_cleanly() {
    let (addr, received) = raw_upstream(RESPONSE.to_vec(), false).await;
    let proxy = proxy(addr, 1).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    let mut sent = REQUEST.to_vec();
    sent.extend(frame(1, b"fine", Some([1, 1, 1, 1])));
    client.write_all(&sent).await.unwrap();
    assert_eq!(read_exactly(&mut client, RESPONSE.len()).await, RESPONSE);
    // A 64-bit length with the top bit set.
    client.write_all(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]).await.unwrap();
    let mut rest = Vec::new();
    let end = tokio::time::timeout(SOON, client.read_to_end(&mut rest)).await.unwrap();
    assert!(end.is_ok() && rest.is_empty(), "expected a clean end of stream, got {end:?} {rest:?}");
    assert_eq!(tokio::time::timeout(SOON, received).await.unwrap().unwrap(), sent);
    for _ in 0..100 {
        if proxy.faults().stats().connections_open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the connection is still open");
}

#[tokio::test]
async fn a_stopped_reader_pushes_back_on_the_sender_until_it_resumes() {
    let (addr, received) = raw_upstream(Vec::new(), true).await;
    let proxy = proxy(addr, 1).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = proxy
        .faults()
        .add(spec(r#"{"fault": {"kind": "slow_reader", "bytes_per_s": 0}, "direction": "up"}"#));
    let chunk = vec![7u8; 256 << 10];
    let mut written = 0usize;
    let mut blocked = false;
    // Kernel buffers on loopback hold a few MiB at most; 256 MiB means no backpressure.
    while written < 256 << 20 {
        match tokio::time::timeout(Duration::from_millis(500), client.write_all(&chunk)).await {
            Ok(r) => {
                r.unwrap();
                written += chunk.len();
            }
            Err(_) => {
                blocked = true;
                break;
            }
        }
    }
    assert!(blocked, "{written} bytes written without backpressure");
    assert!(proxy.faults().stats().up.bytes < written as u64, "the proxy kept reading");
    assert!(proxy.faults().remove(id));
    // The interrupted write_all may have sent part of its chunk: the upstream gets at least
    // everything that completed.
    tokio::time::timeout(SOON, client.shutdown()).await.unwrap().unwrap();
    let got = tokio::time::timeout(SOON, received).await.unwrap().unwrap();
    assert!(got.len() >= written, "{} of {written} bytes arrived", got.len());
}

#[tokio::test]
async fn a_half_closed_client_still_gets_the_answer() {
    // An upstream that answers only once the client has finished sending.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        s.read_to_end(&mut request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&[b"answer to ", &request[..]].concat()).await.unwrap();
    });
    let proxy = proxy(addr, 1).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(b"GET /once HTTP/1.0\r\n\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(SOON, client.read_to_end(&mut answer)).await.unwrap().unwrap();
    assert_eq!(answer, b"answer to GET /once HTTP/1.0\r\n\r\n");
}

#[tokio::test]
async fn a_reset_fault_writes_half_a_frame_then_resets() {
    let echo = echo_upstream().await;
    let proxy = proxy(echo.addr, 1).await;
    let mut client = TcpStream::connect(proxy.addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.extend(read_exactly(&mut client, 1).await);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    proxy.faults().add(spec(r#"{"fault": {"kind": "reset", "probability": 1.0}, "direction": "down"}"#));
    client.write_all(&frame(1, &[b'r'; 200], Some([5, 6, 7, 8]))).await.unwrap();
    // The echo is 204 bytes (2 header + 2 length + 200); half of it arrives, then the reset.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let error = loop {
        match tokio::time::timeout(SOON, client.read(&mut buf)).await.expect("no reset within 5 s") {
            Ok(0) => panic!("clean end of stream after {} bytes", got.len()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(got, frame(1, &[b'r'; 200], None)[..102]);
}
