//! Test harness: an in-process relay on 127.0.0.1:0, a minimal HTTP/1.1 client, registration
//! helpers and a WebSocket client that checks every relay frame against the JSON Schemas.
//!
//! Nothing here sleeps to synchronise: every wait is for a frame, a close or a response, bounded
//! by [`WAIT`] or by a deadline derived from a configured limit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::client::{Heartbeat, Hello, Publish, Resume, Send};
use relaykit_protocol::rest::{Registered, TokenPair};
use relaykit_protocol::schema::SchemaSet;
use relaykit_protocol::server::{Accepted, Delivery, DeviceStatus, ErrorFrame, Event, Gap, Receipt, Welcome};
use relaykit_protocol::{
    ClientFrame, DecodeLimits, DeviceType, DurableKind, LiveKind, PROTOCOL_V1, RawJson, ServerFrame, Target,
    decode_server, encode,
};
use relaykit_server::{Config, ServerError};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Upper bound of every wait for something that should happen promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// Wall clock, Unix ms (the relay's `*_at_ms` clock).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

/// A fresh identifier for messages and streams.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A valid x25519 public key: 43 base64url characters (32 bytes). The last character carries
/// two padding bits, which must be zero: `A` does.
pub(crate) fn public_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static N: AtomicU64 = AtomicU64::new(7);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut key: String =
        (0..42u64).map(|i| ALPHABET[((n * 31 + i * 7 + n * i) % 64) as usize] as char).collect();
    key.push('A');
    key
}

// ---------------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------------

/// A relay running in this test's runtime. Dropping it also shuts it down (the shutdown
/// future resolves when the sender goes away); [`Relay::stop`] does it and checks the result.
pub(crate) struct Relay {
    pub(crate) addr: SocketAddr,
    pub(crate) config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Relay {
    /// Starts an ephemeral relay on a free port, after `tweak` adjusted the configuration.
    pub(crate) async fn start(tweak: impl FnOnce(&mut Config)) -> Relay {
        let mut config = Config {
            ephemeral: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shutdown_grace_ms: 2000,
            ..Config::default()
        };
        tweak(&mut config);
        config.validate().expect("the test configuration is valid");
        let relay = relaykit_server::build(&config).expect("relay builds");
        let listener = TcpListener::bind(config.listen).await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let (tx, rx) = oneshot::channel::<()>();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            relaykit_server::run(listener, relay, &run_config, shutdown).await
        });
        Relay { addr, config, shutdown: Some(tx), task: Some(task) }
    }

    /// A relay in another process (started by the caller) at `addr`; `config` describes it.
    /// Stopping it is the caller's business. (Used by the workspace's `tests/durability.rs`,
    /// which includes this file, not by the relay test binary itself.)
    #[allow(dead_code)]
    pub(crate) fn external(addr: SocketAddr, config: Config) -> Relay {
        Relay { addr, config, shutdown: None, task: None }
    }

    /// Resolves the shutdown future and waits for `run` to return `Ok`.
    pub(crate) async fn stop(mut self) {
        self.begin_shutdown();
        self.finish_shutdown().await;
    }

    /// Resolves the shutdown future without waiting.
    pub(crate) fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for `run` to return after [`Relay::begin_shutdown`], and checks it returned `Ok`.
    pub(crate) async fn finish_shutdown(&mut self) {
        let task = self.task.take().expect("not finished yet");
        let result = timeout(WAIT + Duration::from_millis(self.config.shutdown_grace_ms), task)
            .await
            .expect("run returns after shutdown")
            .expect("the server task did not panic");
        result.expect("run returns Ok");
    }

    pub(crate) fn limits(&self) -> &relaykit_protocol::Limits {
        &self.config.limits
    }

    // --- HTTP -------------------------------------------------------------------------------

    /// One HTTP/1.1 request with `Connection: close`; reads status, headers and body to EOF.
    pub(crate) async fn http(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.http_with_headers(method, path, &headers, body).await
    }

    /// Like [`Relay::http`], with arbitrary extra headers.
    pub(crate) async fn http_with_headers(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await.expect("connect for HTTP");
            let mut head =
                format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            let body = body.unwrap_or_default();
            if !body.is_empty() || method == "POST" {
                head.push_str("Content-Type: application/json\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            let mut request = head.into_bytes();
            request.extend_from_slice(body);
            stream.write_all(&request).await.expect("write the request");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.expect("read the response to EOF");
            raw
        };
        let raw =
            timeout(WAIT, exchange).await.unwrap_or_else(|_| panic!("no HTTP answer to {method} {path}"));
        HttpResponse::from_raw(&raw)
    }

    pub(crate) async fn get(&self, path: &str, bearer: Option<&str>) -> HttpResponse {
        self.http("GET", path, bearer, None).await
    }

    pub(crate) async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> HttpResponse {
        self.http("POST", path, bearer, Some(body.to_string().as_bytes())).await
    }

    // --- Identity -----------------------------------------------------------------------------

    /// `POST /v1/devices` without pairing code: a new user.
    pub(crate) async fn register(&self, kind: DeviceType) -> Registered {
        let response = self.post("/v1/devices", None, &registration(kind, None)).await;
        response.expect_status(201);
        response.check_schema("rest/register_device_response");
        response.parse()
    }

    /// `POST /v1/pairing-codes` with `existing`'s token: a fresh code.
    pub(crate) async fn pairing_code(&self, existing: &Registered) -> String {
        let response =
            self.http("POST", "/v1/pairing-codes", Some(&existing.tokens.access_token), None).await;
        response.expect_status(201);
        response.check_schema("rest/pairing_code_response");
        response.json()["code"].as_str().expect("code is a string").to_string()
    }

    /// A new device of `existing`'s user, through the pairing-code flow.
    pub(crate) async fn pair(&self, existing: &Registered, kind: DeviceType) -> Registered {
        let code = self.pairing_code(existing).await;
        let response = self.post("/v1/devices", None, &registration(kind, Some(&code))).await;
        response.expect_status(201);
        let registered: Registered = response.parse();
        assert_eq!(registered.user_id, existing.user_id, "a paired device joins the code creator's user");
        registered
    }

    /// A desktop and a paired mobile of one user.
    pub(crate) async fn desktop_and_mobile(&self) -> (Registered, Registered) {
        let desktop = self.register(DeviceType::Desktop).await;
        let mobile = self.pair(&desktop, DeviceType::Mobile).await;
        (desktop, mobile)
    }

    /// `POST /v1/tokens/refresh`.
    pub(crate) async fn refresh(&self, refresh_token: &str) -> HttpResponse {
        self.post("/v1/tokens/refresh", None, &json!({ "refresh_token": refresh_token })).await
    }

    /// `GET /v1/devices` as `who`, checked against the schema.
    pub(crate) async fn devices(&self, token: &str) -> Vec<Value> {
        let response = self.get("/v1/devices", Some(token)).await;
        response.expect_status(200);
        response.check_schema("rest/device_list");
        response.json()["devices"].as_array().expect("devices is an array").clone()
    }

    // --- WebSocket ----------------------------------------------------------------------------

    /// A WebSocket connection offering `subprotocol`, before `hello`.
    pub(crate) async fn open(&self, subprotocol: Option<&str>) -> Client {
        let (client, selected) = match self.try_open(subprotocol).await {
            Ok(x) => x,
            Err(response) => panic!("upgrade refused: {response:?}"),
        };
        if let Some(p) = subprotocol {
            // VER-2: the relay selects the offered supported subprotocol.
            assert_eq!(selected.as_deref(), Some(p), "selected subprotocol");
        }
        client
    }

    /// Attempts the upgrade; on success the client and the selected subprotocol, otherwise the
    /// HTTP response (status, body).
    pub(crate) async fn try_open(
        &self,
        subprotocol: Option<&str>,
    ) -> Result<(Client, Option<String>), (u16, String)> {
        self.try_open_with(subprotocol, None).await
    }

    /// Like [`Relay::try_open`], with an `Origin` header.
    pub(crate) async fn try_open_with(
        &self,
        subprotocol: Option<&str>,
        origin: Option<&str>,
    ) -> Result<(Client, Option<String>), (u16, String)> {
        let stream = TcpStream::connect(self.addr).await.expect("connect for WebSocket");
        let mut request = format!("ws://{}/v1/ws", self.addr).into_client_request().expect("request");
        if let Some(p) = subprotocol {
            request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(p).expect("header"));
        }
        if let Some(o) = origin {
            request.headers_mut().insert("Origin", HeaderValue::from_str(o).expect("header"));
        }
        match timeout(WAIT, tokio_tungstenite::client_async(request, stream)).await.expect("upgrade in time")
        {
            Ok((ws, response)) => {
                let selected = response
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                Ok((Client { ws, welcome: None }, selected))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                Err((response.status().as_u16(), body.to_string()))
            }
            Err(e) => panic!("upgrade failed: {e}"),
        }
    }

    /// Connects with `hello{token}` and reads `welcome`.
    pub(crate) async fn connect(&self, token: &str) -> Client {
        self.connect_hello(hello(token, None)).await
    }

    /// Connects with the given `hello` and reads `welcome` (SES-3: the first frame).
    pub(crate) async fn connect_hello(&self, hello: Hello) -> Client {
        let mut client = self.open(Some(PROTOCOL_V1)).await;
        client.send_frame(&ClientFrame::Hello(hello)).await;
        match client.next().await {
            ServerFrame::Welcome(w) => client.welcome = Some(w),
            other => panic!("expected welcome as the first frame, got {other:?}"),
        }
        client
    }
}

/// Body of `POST /v1/devices`.
pub(crate) fn registration(kind: DeviceType, pairing_code: Option<&str>) -> Value {
    let mut body = json!({
        "device_name": format!("{} under test", kind.as_str()),
        "device_type": kind.as_str(),
        "platform": "linux",
        "capabilities": {"notifications": true, "depth": {"n": 1}},
        "public_key": {"alg": "x25519", "key": public_key()},
    });
    if let Some(code) = pairing_code {
        body["pairing_code"] = json!(code);
    }
    body
}

/// A `hello` for `token`.
pub(crate) fn hello(token: &str, resume: Option<Resume>) -> Hello {
    Hello { protocol: PROTOCOL_V1.into(), token: token.into(), resume, client: None }
}

/// A durable send with the given raw payload text.
pub(crate) fn send(id: &str, to: Target, payload: &str) -> Send {
    Send {
        id: id.into(),
        to,
        priority: None,
        ttl_ms: None,
        max_attempts: None,
        payload: Some(RawJson::from_text(payload).expect("payload is JSON")),
        e2e: None,
    }
}

/// A `new_task` frame to role desktop.
pub(crate) fn new_task(id: &str, payload: &str) -> ClientFrame {
    ClientFrame::NewTask(send(id, Target::Role(DeviceType::Desktop), payload))
}

/// A live publish frame with the given raw payload text.
pub(crate) fn publish(kind: LiveKind, stream: &str, to: Target, payload: &str) -> ClientFrame {
    ClientFrame::publish(
        kind,
        Publish {
            id: None,
            stream: stream.into(),
            to,
            payload: Some(RawJson::from_text(payload).expect("payload is JSON")),
            e2e: None,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// HTTP responses
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpResponse {
    fn from_raw(raw: &[u8]) -> HttpResponse {
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response has a header block");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        if chunked {
            body = dechunk(&body);
        }
        HttpResponse { status, headers, body: String::from_utf8(body).expect("UTF-8 body") }
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub(crate) fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("unexpected body ({e}): {}", self.body))
    }

    pub(crate) fn expect_status(&self, status: u16) {
        assert_eq!(self.status, status, "HTTP status; body: {}", self.body);
    }

    /// Validates the body against the named REST schema.
    pub(crate) fn check_schema(&self, schema: &str) {
        match SchemaSet::global().validate_text(schema, &self.body) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{schema} violated ({e}): {}", self.body),
            Err(e) => panic!("schema {schema}: {e}"),
        }
    }

    /// Checks an error response (ERR-7): the status, the schema, and the `error.code`; returns
    /// the `error` object.
    pub(crate) fn expect_error(&self, status: u16, code: &str) -> Value {
        self.expect_status(status);
        self.check_schema("rest/error_response");
        let error = self.json()["error"].clone();
        assert_eq!(error["code"], code, "error code; body: {}", self.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {}", self.body);
        error
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else { break };
        let size_text = String::from_utf8_lossy(&body[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        body = &body[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
    out
}

// The WebSocket client lives in its own file (`util_ws.rs`, next to this one).
#[path = "util_ws.rs"]
mod ws;
pub(crate) use ws::*;
