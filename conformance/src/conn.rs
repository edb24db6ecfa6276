//! One WebSocket connection of a case: every frame sent and received goes to the case's
//! transcript, and every received text frame is checked against the relay-frame schema (a
//! violation fails the case whatever else happens).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::schema::SchemaSet;
use relaykit_protocol::{ClientFrame, DecodeLimits, ServerFrame, decode_server, encode};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Direction of a transcript line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// Client to relay.
    Sent,
    /// Relay to client.
    Received,
}

/// One line of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    /// Milliseconds since the case started.
    pub at_ms: u64,
    /// Which connection of the case (`desktop`, `mobile`, ...).
    pub conn: String,
    /// Direction.
    pub dir: Dir,
    /// The frame text, or a description such as `close 4003 session_replaced`.
    pub text: String,
}

/// The shared evidence of one case: transcript and schema violations.
#[derive(Debug, Clone)]
pub struct Evidence {
    started: Instant,
    lines: Arc<Mutex<Vec<Line>>>,
    violations: Arc<Mutex<Vec<String>>>,
}

/// Most transcript lines kept per case (a flood case sends thousands).
const MAX_LINES: usize = 400;

impl Default for Evidence {
    fn default() -> Self {
        Evidence { started: Instant::now(), lines: Arc::default(), violations: Arc::default() }
    }
}

impl Evidence {
    /// Appends a line.
    pub fn record(&self, conn: &str, dir: Dir, text: impl Into<String>) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() < MAX_LINES {
            let at_ms = self.started.elapsed().as_millis() as u64;
            lines.push(Line { at_ms, conn: conn.to_string(), dir, text: text.into() });
        }
    }

    /// Notes a schema violation.
    pub fn violation(&self, what: String) {
        self.violations.lock().unwrap_or_else(|p| p.into_inner()).push(what);
    }

    /// The transcript so far.
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Schema violations so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What arrived on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, one at a time: boxing buys nothing
pub enum Event {
    /// A schema-valid relay frame.
    Frame(ServerFrame),
    /// A text frame that is not a valid relay frame (also recorded as a violation).
    Invalid(String),
    /// A binary message (never valid from a relay).
    Binary,
    /// A close frame.
    Close(u16, String),
    /// The connection ended without a close frame.
    Ended,
    /// Nothing within the wait.
    Timeout,
}

/// A WebSocket connection to the relay.
#[derive(Debug)]
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    label: String,
    evidence: Evidence,
    /// Subprotocol the relay selected.
    pub selected: Option<String>,
}

/// Upgrade refused: the HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Status code.
    pub status: u16,
    /// Body.
    pub body: String,
}

impl Conn {
    /// Opens `/v1/ws`, offering `subprotocol` (header omitted when `None`).
    pub async fn open(
        addr: SocketAddr,
        subprotocol: Option<&str>,
        label: &str,
        evidence: &Evidence,
        wait: Duration,
    ) -> Result<Conn, Refused> {
        let refused = |status, body: String| Refused { status, body };
        let stream = TcpStream::connect(addr).await.map_err(|e| refused(0, format!("connect: {e}")))?;
        let mut request =
            format!("ws://{addr}/v1/ws").into_client_request().map_err(|e| refused(0, e.to_string()))?;
        if let Some(p) = subprotocol {
            let value = HeaderValue::from_str(p).map_err(|e| refused(0, e.to_string()))?;
            request.headers_mut().insert("Sec-WebSocket-Protocol", value);
        }
        let mut config = WebSocketConfig::default();
        config.read_buffer_size = 8192;
        config.write_buffer_size = 8192;
        let upgrade = tokio_tungstenite::client_async_with_config(request, stream, Some(config));
        match tokio::time::timeout(wait, upgrade).await {
            Err(_) => Err(refused(0, "upgrade timed out".into())),
            Ok(Ok((ws, response))) => {
                let selected = response
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                evidence.record(label, Dir::Received, format!("upgrade 101 subprotocol={selected:?}"));
                Ok(Conn { ws, label: label.to_string(), evidence: evidence.clone(), selected })
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                evidence.record(label, Dir::Received, format!("upgrade refused {status} {body}"));
                Err(refused(status, body))
            }
            Ok(Err(e)) => Err(refused(0, e.to_string())),
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&encode(frame)).await;
    }

    /// Sends raw text (bad-input cases). A write error shows up as `Ended` on the next read.
    pub async fn send_text(&mut self, text: &str) {
        self.evidence.record(&self.label, Dir::Sent, shorten(text));
        let _ = self.ws.send(Message::text(text)).await;
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.evidence.record(&self.label, Dir::Sent, format!("binary {} bytes", bytes.len()));
        let _ = self.ws.send(Message::binary(bytes)).await;
    }

    /// The next event within `wait` (WebSocket control frames skipped).
    pub async fn next(&mut self, wait: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Event::Timeout,
                Ok(None | Some(Err(_))) => {
                    self.evidence.record(&self.label, Dir::Received, "connection ended");
                    return Event::Ended;
                }
                Ok(Some(Ok(m))) => m,
            };
            return match message {
                Message::Text(text) => self.received(text.as_str()),
                Message::Binary(_) => {
                    self.evidence.record(&self.label, Dir::Received, "binary message");
                    self.evidence.violation("relay sent a binary message".into());
                    Event::Binary
                }
                Message::Close(frame) => {
                    let (code, reason) =
                        frame.map_or((1005, String::new()), |f| (f.code.into(), f.reason.to_string()));
                    self.evidence.record(&self.label, Dir::Received, format!("close {code} {reason}"));
                    Event::Close(code, reason)
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
        }
    }

    fn received(&mut self, text: &str) -> Event {
        self.evidence.record(&self.label, Dir::Received, shorten(text));
        if let Err(e) = SchemaSet::global().check_server_frame(text) {
            self.evidence.violation(format!("{}: {e}: {}", self.label, shorten(text)));
            return Event::Invalid(text.to_string());
        }
        match decode_server(text, &DecodeLimits::UNBOUNDED) {
            Ok(frame) => Event::Frame(frame),
            Err(e) => {
                self.evidence.violation(format!("{}: undecodable ({e}): {}", self.label, shorten(text)));
                Event::Invalid(text.to_string())
            }
        }
    }
}

/// Long frames are cut in transcripts (bodies of flood and size cases).
fn shorten(text: &str) -> String {
    const MAX: usize = 600;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}
