//! `relaykit proxy` end to end: in front of `relaykit serve`, plain HTTP passes through, the
//! control API answers, and SIGTERM stops it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod util;

use util::start;

/// `GET path` over HTTP/1.1 with `Connection: close`: status line and body.
fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

#[test]
fn proxy_in_front_of_serve_passes_http_and_answers_its_control_api() {
    let (_relay, relay) = start(&["serve", "--ephemeral", "--listen", "127.0.0.1:0"], 1);
    let upstream = format!("http://{}", relay[0].1);
    let args = ["proxy", "--listen", "127.0.0.1:0", "--upstream", &upstream, "--control", "127.0.0.1:0"];
    let (mut proxy, lines) = start(&[&args[..], &["--seed", "3"]].concat(), 2);
    assert_eq!((lines[0].0.as_str(), lines[1].0.as_str()), ("listening", "control"));
    let (addr, control) = (&lines[0].1, &lines[1].1);

    let (status, body) = get(addr, "/health");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!((status, body), get(&relay[0].1, "/health"), "the proxy changed the answer");

    let (status, stats) = get(control, "/stats");
    assert!(status.contains(" 200 "), "{status}");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let schemas = relaykit_protocol::schema::SchemaSet::global();
    assert!(schemas.validate_value("tools/proxy-stats", &stats).unwrap().is_ok(), "{stats}");
    assert_eq!(stats["connections_total"], 1);

    let pid = proxy.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = proxy.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "relaykit proxy did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn proxy_refuses_a_tls_upstream() {
    let out = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", "https://127.0.0.1:1"])
        .output()
        .expect("run relaykit");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported scheme"));
}
