//! The WebSocket side of the test harness: a client that checks every relay frame against the
//! JSON Schemas and reads frames, closes and silences with bounded waits.

use super::*;

/// What the socket produced.
#[derive(Debug)]
pub(crate) enum Incoming {
    Text(String),
    Binary,
    Close(u16, String),
    /// The stream ended (EOF or error) without a close frame.
    Ended,
}

/// How a connection was closed by the relay.
#[derive(Debug)]
pub(crate) struct Closed {
    pub(crate) code: u16,
    pub(crate) reason: String,
    /// The `error` frame that preceded the close (CLS-2), if any.
    pub(crate) error: Option<ErrorFrame>,
}

pub(crate) struct Client {
    pub(super) ws: WebSocketStream<TcpStream>,
    pub(super) welcome: Option<Welcome>,
}

/// Decodes a relay frame after checking it against the server-frame schema (panics with the
/// text on a violation).
pub(crate) fn decode(text: &str) -> ServerFrame {
    if let Err(e) = SchemaSet::global().check_server_frame(text) {
        panic!("relay frame violates the schema ({e}): {text}");
    }
    decode_server(text, &DecodeLimits::UNBOUNDED)
        .unwrap_or_else(|e| panic!("undecodable frame ({e}): {text}"))
}

macro_rules! expect_variant {
    ($name:ident, $variant:ident, $ty:ty) => {
        /// The next frame other than `device_status`, which must be of this type.
        pub(crate) async fn $name(&mut self) -> $ty {
            match self.next_skipping_presence().await {
                ServerFrame::$variant(x) => x,
                other => panic!(concat!("expected ", stringify!($variant), ", got {:?}"), other),
            }
        }
    };
}

impl Client {
    /// The `welcome` of this connection.
    pub(crate) fn welcome(&self) -> &Welcome {
        self.welcome.as_ref().expect("connected with hello")
    }

    pub(crate) async fn send_frame(&mut self, frame: &ClientFrame) {
        self.send_text(&encode(frame)).await;
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send a text frame");
    }

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::binary(bytes)).await.expect("send a binary frame");
    }

    /// Queues several text frames and flushes them together (one burst on the wire).
    pub(crate) async fn send_burst(&mut self, texts: &[String]) {
        for t in texts {
            self.ws.feed(Message::text(t.as_str())).await.expect("queue a frame");
        }
        self.ws.flush().await.expect("flush the burst");
    }

    /// The next message, or `None` if nothing arrives within `wait`.
    pub(crate) async fn recv_within(&mut self, wait: Duration) -> Option<Incoming> {
        let deadline = Instant::now() + wait;
        // Control frames (RFC 6455 ping/pong) are not relay.v1 frames; skip a bounded number.
        for _ in 0..64 {
            let message = match timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None | Some(Err(_))) => return Some(Incoming::Ended),
                Ok(Some(Ok(m))) => m,
            };
            return Some(match message {
                Message::Text(t) => Incoming::Text(t.to_string()),
                Message::Binary(_) => Incoming::Binary,
                Message::Close(Some(f)) => Incoming::Close(f.code.into(), f.reason.to_string()),
                Message::Close(None) => Incoming::Close(1005, String::new()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            });
        }
        panic!("too many control frames");
    }

    async fn recv(&mut self) -> Incoming {
        self.recv_within(WAIT).await.unwrap_or_else(|| panic!("nothing received within {WAIT:?}"))
    }

    /// The next text frame, schema-checked.
    pub(crate) async fn next_text(&mut self) -> String {
        match self.recv().await {
            Incoming::Text(t) => {
                decode(&t);
                t
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next relay frame (schema-checked, decoded).
    pub(crate) async fn next(&mut self) -> ServerFrame {
        decode(&self.next_text().await)
    }

    /// The next relay frame other than `device_status` (presence is asynchronous to the rest).
    pub(crate) async fn next_skipping_presence(&mut self) -> ServerFrame {
        for _ in 0..32 {
            match self.next().await {
                ServerFrame::DeviceStatus(_) => continue,
                other => return other,
            }
        }
        panic!("more than 32 device_status frames in a row");
    }

    expect_variant!(next_accepted, Accepted, Accepted);
    expect_variant!(next_receipt, Receipt, Receipt);
    expect_variant!(next_gap, Gap, Gap);

    /// The next `device_status` (nothing else may come first).
    pub(crate) async fn next_presence(&mut self) -> DeviceStatus {
        match self.next().await {
            ServerFrame::DeviceStatus(s) => s,
            other => panic!("expected device_status, got {other:?}"),
        }
    }

    /// The next durable delivery (skipping presence).
    pub(crate) async fn next_delivery(&mut self) -> (DurableKind, Delivery) {
        match self.next_skipping_presence().await.into_delivery() {
            Ok(d) => d,
            Err(other) => panic!("expected a durable delivery, got {other:?}"),
        }
    }

    /// The next live event (skipping presence).
    pub(crate) async fn next_event(&mut self) -> (LiveKind, Event) {
        match self.next_skipping_presence().await.into_event() {
            Ok(e) => e,
            Err(other) => panic!("expected a live event, got {other:?}"),
        }
    }

    /// Asserts that nothing but `device_status` is pending: a `ping` is answered by the very
    /// next other frame. Every frame the relay queued for this connection before the `ping` is
    /// written before the `pong` (TRN-5 and the session's write order), so this is a barrier.
    pub(crate) async fn expect_idle(&mut self) {
        self.ping_barrier(true).await;
    }

    /// Like [`Client::expect_idle`], but a `device_status` fails the test too.
    pub(crate) async fn expect_idle_strict(&mut self) {
        self.ping_barrier(false).await;
    }

    async fn ping_barrier(&mut self, skip_presence: bool) {
        static NONCE: AtomicU64 = AtomicU64::new(1_000_000);
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
        self.send_frame(&ClientFrame::Ping(Heartbeat { nonce })).await;
        let frame = if skip_presence { self.next_skipping_presence().await } else { self.next().await };
        match frame {
            ServerFrame::Pong(p) => assert_eq!(p.nonce, nonce, "pong echoes the nonce"),
            other => panic!("expected nothing pending before the pong, got {other:?}"),
        }
    }

    /// Asserts that no message at all arrives for `wait`.
    pub(crate) async fn expect_silence(&mut self, wait: Duration) {
        if let Some(m) = self.recv_within(wait).await {
            panic!("expected silence for {wait:?}, got {m:?}");
        }
    }

    /// Acks `seq`.
    pub(crate) async fn ack(&mut self, seq: u64) {
        self.send_frame(&ClientFrame::Ack(relaykit_protocol::client::Ack { seq })).await;
    }

    /// Waits up to [`WAIT`] for the relay to close the connection.
    pub(crate) async fn expect_close(&mut self) -> Closed {
        self.expect_close_within(WAIT).await
    }

    /// Waits up to `wait` for the relay's close: at most one fatal `error` frame (CLS-2, whose
    /// code must be the close reason), then the close frame. Presence frames are skipped; any
    /// other frame fails the test.
    pub(crate) async fn expect_close_within(&mut self, wait: Duration) -> Closed {
        let deadline = Instant::now() + wait;
        let mut error: Option<ErrorFrame> = None;
        for _ in 0..32 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                None => panic!("no close within {wait:?}"),
                Some(Incoming::Text(text)) => match decode(&text) {
                    ServerFrame::DeviceStatus(_) => {}
                    ServerFrame::Error(e) if error.is_none() => {
                        assert!(e.fatal, "an error before a close is fatal (ERR-2): {text}");
                        error = Some(e);
                    }
                    _ => panic!("expected a close, got {text}"),
                },
                Some(Incoming::Close(code, reason)) => {
                    if let Some(e) = &error {
                        assert_eq!(e.code.as_str(), reason, "error code is the close code's name (CLS-2)");
                    }
                    return Closed { code, reason, error };
                }
                Some(other) => panic!("expected a close frame, got {other:?}"),
            }
        }
        panic!("no close after 32 frames");
    }

    /// Closes from the client side and waits until the relay dropped the connection (which it
    /// does after detaching the session).
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
        self.drain_to_end().await;
    }

    /// Reads until the stream ends.
    pub(crate) async fn drain_to_end(&mut self) {
        let deadline = Instant::now() + WAIT;
        for _ in 0..64 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_within(left).await {
                None => panic!("connection still open after {WAIT:?}"),
                Some(Incoming::Ended) => return,
                Some(_) => {}
            }
        }
        panic!("connection did not end");
    }
}

/// Asserts `frame` is an `error` with `code` and returns it.
pub(crate) fn expect_error_code(frame: ServerFrame, code: &str) -> ErrorFrame {
    match frame {
        ServerFrame::Error(e) => {
            assert_eq!(e.code.as_str(), code, "error code of {e:?}");
            e
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// Refreshes until the relay issues an access token expiring after `after_ms` (the relay's
/// clock has second resolution, so a token minted within the same second expires at the same
/// instant). Bounded: the expiry grows by at least one second per clock second.
pub(crate) async fn refresh_past(relay: &Relay, tokens: &TokenPair, after_ms: u64) -> TokenPair {
    let mut current = tokens.clone();
    for _ in 0..5 {
        // Wait for the relay's next second; the token's `iat` is taken from it.
        let into_second = now_ms() % 1000;
        tokio::time::sleep(Duration::from_millis(1000 - into_second + 20)).await;
        let response = relay.refresh(&current.refresh_token).await;
        response.expect_status(200);
        response.check_schema("rest/token_pair");
        current = response.parse();
        if current.access_expires_at_ms > after_ms {
            return current;
        }
    }
    panic!("no later access token after 5 refreshes");
}

/// Registered tokens of a device, for convenience.
pub(crate) fn token(r: &Registered) -> &str {
    &r.tokens.access_token
}

/// Strict base64url (no padding) decoding, for reading token segments.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6 && acc == 0).then_some(out)
}

/// The header and claims of a compact JWS, as JSON.
pub(crate) fn jwt_parts(token: &str) -> (Value, Value) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "three segments: {token}");
    let json = |segment: &str| -> Value {
        let bytes = b64url_decode(segment).unwrap_or_else(|| panic!("base64url segment: {segment}"));
        serde_json::from_slice(&bytes).expect("JSON segment")
    };
    (json(segments[0]), json(segments[1]))
}
