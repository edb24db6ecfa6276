//! One WebSocket connection, from the first frame to the close (PROTOCOL.md sections 7 and 13).
//!
//! Written against a transport that is a `Stream` of [`Inbound`] and a `Sink` of [`Outgoing`],
//! so unit tests drive it with channels and the HTTP layer adapts axum's socket to it.

use std::sync::Arc;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use relaykit_protocol::client::{Heartbeat, Hello};
use relaykit_protocol::server::{ErrorFrame, Reauthed};
use relaykit_protocol::{
    ClientFrame, CloseCode, DecodeError, DecodeLimits, ErrorCode, PROTOCOL_V1, ServerFrame, decode_client,
    encode,
};
use tokio::time::{Duration, Instant, sleep_until};

use crate::auth::TokenError;
use crate::state::{Outbound, Relay, SessionCtx, Settle, now_ms};

/// What the transport hands the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A text message.
    Text(String),
    /// A binary message (refused with 1003).
    Binary,
    /// A message over the size limit (refused with 1009).
    TooBig,
    /// The peer closed, or the connection broke.
    Closed,
}

/// What the session hands the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message.
    Text(String),
    /// A close frame; nothing follows.
    Close(u16, String),
}

/// How a session ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Close code sent, if the relay closed.
    pub code: Option<CloseCode>,
}

/// Runs one connection to its end. `negotiated` is the subprotocol chosen at the upgrade.
pub async fn run<T>(relay: Arc<Relay>, mut io: T, negotiated: Option<String>) -> Ended
where
    T: Stream<Item = Inbound> + Sink<Outgoing> + Unpin,
{
    let limits = relay.limits().clone();
    let auth_deadline = Instant::now() + Duration::from_millis(limits.auth_timeout_ms);
    let first = tokio::select! {
        frame = io.next() => frame.unwrap_or(Inbound::Closed),
        () = sleep_until(auth_deadline) => {
            return close(&relay, &mut io, CloseCode::AuthTimeout, "no hello within auth_timeout_ms").await;
        }
    };
    let hello = match first {
        Inbound::Text(text) => match decode_client(&text, &DecodeLimits::from(&limits)) {
            Ok(ClientFrame::Hello(hello)) => hello,
            Ok(_) => {
                return close(&relay, &mut io, CloseCode::ProtocolViolation, "first frame must be hello")
                    .await;
            }
            Err(e) => {
                let message = format!("first frame must be a valid hello: {e}");
                return close(&relay, &mut io, CloseCode::ProtocolViolation, &message).await;
            }
        },
        Inbound::Binary => {
            return close(&relay, &mut io, CloseCode::UnsupportedData, "binary frames are not supported")
                .await;
        }
        Inbound::TooBig => {
            return close(&relay, &mut io, CloseCode::MessageTooBig, "frame exceeds max_frame_bytes").await;
        }
        Inbound::Closed => return Ended { code: None },
    };
    let mut session = match Session::start(relay.clone(), &hello, negotiated.as_deref()) {
        Ok(s) => s,
        Err((code, message)) => {
            tracing::info!(close = code.code(), reason = %code.name(), "hello refused");
            return close(&relay, &mut io, code, &message).await;
        }
    };
    tracing::debug!(device = %session.ctx.device_id, conn = session.ctx.conn_id, "session started");
    let ended = session.serve(&mut io).await;
    relay.detach(&session.ctx, session.deliberate);
    // Never log tokens or payloads: ids and codes only.
    tracing::debug!(
        device = %session.ctx.device_id,
        conn = session.ctx.conn_id,
        close = ended.code.map(CloseCode::code),
        deliberate = session.deliberate,
        "session ended"
    );
    ended
}

/// Longest one write may take: a peer that stops reading is a slow consumer, and its session
/// must keep reacting to close requests (revocation, takeover), heartbeats and shutdown.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One write, bounded by [`WRITE_TIMEOUT`]; false when it failed or timed out.
async fn send_out<T: Sink<Outgoing> + Unpin>(io: &mut T, out: Outgoing) -> bool {
    matches!(tokio::time::timeout(WRITE_TIMEOUT, io.send(out)).await, Ok(Ok(())))
}

/// Sends the close's error frame (CLS-2) and the close frame; counts it.
async fn close<T: Sink<Outgoing> + Unpin>(
    relay: &Relay,
    io: &mut T,
    code: CloseCode,
    message: &str,
) -> Ended {
    if let Some(error) = ErrorCode::ALL.iter().copied().find(|e| e.close_code() == Some(code)) {
        let mut frame = ErrorFrame::new(error, message);
        if code == CloseCode::ServerRestarting {
            frame.retry_after_ms = Some(1000);
        }
        let _ = send_out(io, Outgoing::Text(encode(&ServerFrame::Error(frame)))).await;
    }
    let _ = send_out(io, Outgoing::Close(code.code(), code.name().to_string())).await;
    relay.metrics().closes_total.inc(&code.code().to_string());
    Ended { code: Some(code) }
}

/// An authenticated connection.
struct Session {
    relay: Arc<Relay>,
    ctx: SessionCtx,
    frames: tokio::sync::mpsc::Receiver<Outbound>,
    close: tokio::sync::watch::Receiver<crate::state::CloseRequest>,
    // When the access token (as extended by reauth) expires: close 4006 then.
    token_expires: Instant,
    // Last frame from the client: silence for 2 x heartbeat closes with 4002.
    last_heard: Instant,
    // Token bucket of the rate limit (LIM rules).
    bucket: Bucket,
    // Set by device_disconnect: the session is not resumable.
    deliberate: bool,
    next_nonce: u64,
}

/// Maps a token failure to its close code.
fn token_close(e: &TokenError) -> CloseCode {
    if e.is_expired() { CloseCode::TokenExpired } else { CloseCode::Unauthorized }
}

/// Instant at which a token expiring at `exp_s` (Unix seconds) is no longer accepted.
fn expiry_instant(exp_s: u64, leeway_s: u64) -> Instant {
    let deadline_ms = (exp_s + leeway_s) * 1000;
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms()))
}

impl Session {
    fn start(
        relay: Arc<Relay>,
        hello: &Hello,
        negotiated: Option<&str>,
    ) -> Result<Session, (CloseCode, String)> {
        if hello.protocol != PROTOCOL_V1 || negotiated.is_some_and(|n| n != hello.protocol) {
            return Err((CloseCode::UnsupportedVersion, format!("supported versions: {PROTOCOL_V1}")));
        }
        let now_s = now_ms() / 1000;
        let issuer = relay.issuer();
        let claims =
            issuer.verify_before_expiry(&hello.token, now_s).map_err(|e| (token_close(&e), e.to_string()))?;
        // Device and family revocation are checked before expiry (PROTOCOL.md 6.4).
        relay.check_device(&claims).map_err(|e| (e.close_code(), format!("{e:?}")))?;
        issuer.check_expiry(&claims, now_s).map_err(|e| (token_close(&e), e.to_string()))?;
        let attached = relay
            .attach(&claims, hello, claims.exp * 1000)
            .map_err(|e| (e.close_code(), format!("{e:?}")))?;
        let limits = relay.limits();
        let token_expires = expiry_instant(claims.exp, issuer.leeway_s());
        let bucket = Bucket::new(limits.rate_limit_per_sec, limits.rate_limit_burst);
        Ok(Session {
            ctx: attached.ctx,
            frames: attached.frames,
            close: attached.close,
            token_expires,
            last_heard: Instant::now(),
            bucket,
            deliberate: false,
            next_nonce: 1,
            relay,
        })
    }

    async fn serve<T>(&mut self, io: &mut T) -> Ended
    where
        T: Stream<Item = Inbound> + Sink<Outgoing> + Unpin,
    {
        let heartbeat = Duration::from_millis(self.relay.limits().heartbeat_ms.max(1));
        let mut ping_at = Instant::now() + heartbeat;
        loop {
            tokio::select! {
                biased;
                changed = self.close.changed() => {
                    let request = if changed.is_ok() { self.close.borrow().clone() } else { None };
                    let (code, error) = request.unwrap_or((CloseCode::InternalError, None));
                    if let Some(e) = error {
                        let _ = send_out(io, Outgoing::Text(encode(&ServerFrame::Error(e)))).await;
                    }
                    let _ = send_out(io, Outgoing::Close(code.code(), code.name().to_string())).await;
                    self.relay.metrics().closes_total.inc(&code.code().to_string());
                    return Ended { code: Some(code) };
                }
                Some(Outbound::Frame(text)) = self.frames.recv() => {
                    if !send_out(io, Outgoing::Text(text)).await {
                        return Ended { code: None };
                    }
                }
                inbound = io.next() => {
                    let inbound = inbound.unwrap_or(Inbound::Closed);
                    self.last_heard = Instant::now();
                    match self.handle(io, inbound).await {
                        Step::Continue => {}
                        Step::Close(code, message) => return close(&self.relay, io, code, &message).await,
                        Step::Gone => return Ended { code: None },
                    }
                }
                () = sleep_until(self.last_heard + 2 * heartbeat) => {
                    // Silence is checked on its own deadline, not only at ping ticks (HB-3).
                    return close(&self.relay, io, CloseCode::HeartbeatTimeout, "no frame for twice heartbeat_ms").await;
                }
                () = sleep_until(ping_at) => {
                    let ping = ServerFrame::Ping(Heartbeat { nonce: self.next_nonce });
                    self.next_nonce += 1;
                    let _ = send_out(io, Outgoing::Text(encode(&ping))).await;
                    ping_at = Instant::now() + heartbeat;
                }
                () = sleep_until(self.token_expires) => {
                    return close(&self.relay, io, CloseCode::TokenExpired, "access token expired").await;
                }
            }
        }
    }

    /// One inbound message after `welcome` (check order of PROTOCOL.md 13.3).
    async fn handle<T: Sink<Outgoing> + Unpin>(&mut self, io: &mut T, inbound: Inbound) -> Step {
        let text = match inbound {
            Inbound::Text(text) => text,
            Inbound::Binary => {
                return Step::Close(CloseCode::UnsupportedData, "binary frames are not supported".into());
            }
            Inbound::TooBig => {
                return Step::Close(CloseCode::MessageTooBig, "frame exceeds max_frame_bytes".into());
            }
            Inbound::Closed => return Step::Gone,
        };
        let limits = self.relay.limits().clone();
        let decoded = decode_client(&text, &DecodeLimits::from(&limits));
        // LIM-4: every frame within the size limit takes a token if there is one, but only a
        // frame that passed step 2 (depth, JSON) is answered with `rate_limited`.
        let now = Instant::now();
        let token = self.bucket.take(now);
        if let Err(e) = &decoded
            && matches!(e.code(), ErrorCode::MalformedJson | ErrorCode::NestingTooDeep)
        {
            return self.reply(io, Err(decode_error(e))).await;
        }
        // ERR-1: every error names the frame's `id` and, for ack/nack/reject, its integer `seq`.
        let (ref_id, ref_seq) = refs(&text, &decoded);
        if let Err(wait) = token {
            self.bucket.reject(now);
            if self.bucket.abusive(limits.rate_limit_burst) {
                return Step::Close(CloseCode::RateLimitAbuse, "flooding after rate-limit errors".into());
            }
            let mut e = ErrorFrame::new(ErrorCode::RateLimited, "rate limit exceeded");
            e.retry_after_ms = Some((wait.as_micros().div_ceil(1000) as u64).max(1));
            e.ref_id = ref_id;
            e.ref_seq = ref_seq;
            return self.reply(io, Err(e)).await;
        }
        let frame = match decoded {
            Ok(frame) => frame,
            Err(e) => {
                // Section 13.3: a `hello` is refused as such (step 6) before its fields (step 7).
                let mut error =
                    if e.code() == ErrorCode::InvalidField && frame_type(&text).as_deref() == Some("hello") {
                        ErrorFrame::new(ErrorCode::AlreadyAuthenticated, "already authenticated")
                    } else {
                        decode_error(&e)
                    };
                error.ref_seq = ref_seq;
                return self.reply(io, Err(error)).await;
            }
        };
        let relay = self.relay.clone();
        let reply = match frame {
            ClientFrame::Hello(_) => {
                Err(ErrorFrame::new(ErrorCode::AlreadyAuthenticated, "already authenticated"))
            }
            ClientFrame::Ping(p) => Ok(Some(ServerFrame::Pong(p))),
            ClientFrame::Pong(_) => Ok(None),
            ClientFrame::Ack(a) => relay.settle_delivery(&self.ctx, a.seq, Settle::Ack).map(|()| None),
            ClientFrame::Nack(n) => {
                relay.settle_delivery(&self.ctx, n.seq, Settle::Nack(n.delay_ms)).map(|()| None)
            }
            ClientFrame::Reject(r) => {
                relay.settle_delivery(&self.ctx, r.seq, Settle::Reject(r.reason)).map(|()| None)
            }
            ClientFrame::DeviceDisconnect(_) => {
                self.deliberate = true;
                let _ =
                    send_out(io, Outgoing::Close(CloseCode::Normal.code(), CloseCode::Normal.name().into()))
                        .await;
                return Step::Gone;
            }
            ClientFrame::Reauth(r) => return self.reauth(io, &r.token).await,
            other => match other.into_send() {
                Ok((kind, send)) => relay.send(&self.ctx, kind, send).await.map(Some),
                Err(other) => match other.into_publish() {
                    Ok((kind, publish)) => relay.publish(&self.ctx, kind, publish).map(|()| None),
                    Err(_) => Ok(None),
                },
            },
        };
        match reply {
            Ok(None) => Step::Continue,
            Ok(Some(frame)) => self.reply(io, Ok(frame)).await,
            Err(e) => self.reply(io, Err(e)).await,
        }
    }

    async fn reauth<T: Sink<Outgoing> + Unpin>(&mut self, io: &mut T, token: &str) -> Step {
        let issuer = self.relay.issuer();
        // The order of `hello` (PROTOCOL.md 6.4): signature and claims, device and family,
        // expiry last, so a revoked device's expired token reads as revoked.
        let now_s = now_ms() / 1000;
        let claims = match issuer.verify_before_expiry(token, now_s) {
            Ok(c) => c,
            Err(e) => return Step::Close(token_close(&e), e.to_string()),
        };
        if claims.did != self.ctx.device_id || claims.sub != self.ctx.user_id {
            return Step::Close(CloseCode::Unauthorized, "reauth with a token of another device".into());
        }
        if let Err(e) = self.relay.check_device(&claims) {
            return Step::Close(e.close_code(), format!("{e:?}"));
        }
        if let Err(e) = issuer.check_expiry(&claims, now_s) {
            return Step::Close(token_close(&e), e.to_string());
        }
        self.ctx.family = claims.fam.clone();
        self.token_expires = expiry_instant(claims.exp, issuer.leeway_s());
        self.reply(io, Ok(ServerFrame::Reauthed(Reauthed { token_expires_at_ms: claims.exp * 1000 }))).await
    }

    async fn reply<T: Sink<Outgoing> + Unpin>(
        &mut self,
        io: &mut T,
        frame: Result<ServerFrame, ErrorFrame>,
    ) -> Step {
        let frame = frame.unwrap_or_else(|e| {
            self.relay.metrics().errors_total.inc(e.code.as_str());
            ServerFrame::Error(e)
        });
        if send_out(io, Outgoing::Text(encode(&frame))).await { Step::Continue } else { Step::Gone }
    }
}

enum Step {
    Continue,
    Close(CloseCode, String),
    Gone,
}

/// `ref_id` and `ref_seq` for an error about the frame `text` (ERR-1): its valid `id`, and the
/// integer `seq` of an `ack`, `nack` or `reject`, read from the text when decoding failed.
fn refs(text: &str, decoded: &Result<ClientFrame, DecodeError>) -> (Option<String>, Option<u64>) {
    match decoded {
        Ok(frame) => {
            let id = match (frame.as_send(), frame.as_publish()) {
                (Some((_, s)), _) => Some(s.id.clone()),
                (_, Some((_, p))) => p.id.clone(),
                (None, None) => None,
            };
            let seq = match frame {
                ClientFrame::Ack(a) => Some(a.seq),
                ClientFrame::Nack(n) => Some(n.seq),
                ClientFrame::Reject(r) => Some(r.seq),
                _ => None,
            };
            (id, seq)
        }
        Err(e) => {
            let seq = match e.code() {
                ErrorCode::MalformedJson | ErrorCode::NestingTooDeep | ErrorCode::PayloadTooLarge => None,
                _ => peek(text).and_then(|v| {
                    let acking = matches!(v.get("type")?.as_str()?, "ack" | "nack" | "reject");
                    let seq = v.get("seq")?;
                    // Only a plain integer (no fraction or exponent) within 2^53-1 (TRN-9).
                    let plain = seq.as_u64().filter(|n| *n <= relaykit_protocol::MAX_SAFE_INTEGER);
                    plain.filter(|_| acking && seq.to_string().bytes().all(|b| b.is_ascii_digit()))
                }),
            };
            (e.ref_id.clone(), seq)
        }
    }
}

/// The frame as a JSON value, for the error path only (depth was checked before).
fn peek(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text).ok()
}

/// The `type` of a frame that failed decoding, if it is a string.
fn frame_type(text: &str) -> Option<String> {
    peek(text)?.get("type")?.as_str().map(str::to_string)
}

fn decode_error(e: &DecodeError) -> ErrorFrame {
    let mut frame = ErrorFrame::new(e.code(), e.to_string());
    frame.field = e.field().map(str::to_string);
    frame.ref_id = e.ref_id.clone();
    frame
}

/// Token bucket: starts full, refills at `rate` per second up to `burst`.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    // Rejections in the current 10 s window, for 4007 (PROTOCOL.md LIM rules).
    rejected: u64,
    window_start: Instant,
}

impl Bucket {
    fn new(rate: u64, burst: u64) -> Self {
        let now = Instant::now();
        Bucket {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: now,
            rejected: 0,
            window_start: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = if self.rate > 0.0 { (1.0 - self.tokens) / self.rate } else { 60.0 };
        Err(Duration::from_secs_f64(wait))
    }

    /// Counts a frame answered with `rate_limited` (LIM-5 counts only those).
    fn reject(&mut self, now: Instant) {
        if now.duration_since(self.window_start) > Duration::from_secs(10) {
            self.window_start = now;
            self.rejected = 0;
        }
        self.rejected += 1;
    }

    /// More than `burst` rejections within 10 s.
    fn abusive(&self, burst: u64) -> bool {
        self.rejected > burst
    }
}

/// Joins a sink and a stream into one transport value (the axum socket halves in production,
/// channels in tests).
pub struct Duplex<S, R> {
    sink: std::pin::Pin<Box<S>>,
    stream: std::pin::Pin<Box<R>>,
}

impl<S, R> Duplex<S, R> {
    /// Pins both halves.
    pub fn new(sink: S, stream: R) -> Self {
        Duplex { sink: Box::pin(sink), stream: Box::pin(stream) }
    }
}

impl<S, R> std::fmt::Debug for Duplex<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Duplex")
    }
}

impl<S, R: futures_util::Stream> futures_util::Stream for Duplex<S, R> {
    type Item = R::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<R::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl<S: futures_util::Sink<Outgoing>, R> futures_util::Sink<Outgoing> for Duplex<S, R> {
    type Error = S::Error;
    fn poll_ready(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.sink.as_mut().poll_ready(cx)
    }
    fn start_send(mut self: std::pin::Pin<&mut Self>, item: Outgoing) -> Result<(), S::Error> {
        self.sink.as_mut().start_send(item)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.sink.as_mut().poll_flush(cx)
    }
    fn poll_close(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.sink.as_mut().poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use relaykit_protocol::rest::PublicKey;
    use tokio::sync::mpsc;

    use super::*;
    use crate::Config;
    use crate::state::RegistrationInput;

    /// A session transport made of channels: what the test sends in, what the session sends out.
    fn channel_transport()
    -> (mpsc::Sender<Inbound>, mpsc::Receiver<Outgoing>, impl Stream<Item = Inbound> + Sink<Outgoing> + Unpin)
    {
        let (in_tx, in_rx) = mpsc::channel::<Inbound>(16);
        let (out_tx, out_rx) = mpsc::channel::<Outgoing>(64);
        let stream = futures_util::stream::unfold(in_rx, |mut rx| async { rx.recv().await.map(|m| (m, rx)) });
        let sink = futures_util::sink::unfold(out_tx, |tx, item: Outgoing| async move {
            tx.send(item).await.map(|()| tx).map_err(|_| "closed")
        });
        (in_tx, out_rx, Duplex::new(sink, stream))
    }

    fn relay(auth_timeout_ms: u64) -> Arc<Relay> {
        let mut config = Config { ephemeral: true, ..Config::default() };
        config.limits.auth_timeout_ms = auth_timeout_ms;
        crate::build(&config).expect("relay")
    }

    async fn out(rx: &mut mpsc::Receiver<Outgoing>) -> Outgoing {
        tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("in time").expect("open")
    }

    #[tokio::test]
    async fn a_binary_first_frame_closes_with_1003_and_no_error_frame() {
        let (tx, mut rx, io) = channel_transport();
        let task = tokio::spawn(run(relay(10_000), io, None));
        tx.send(Inbound::Binary).await.unwrap();
        assert_eq!(out(&mut rx).await, Outgoing::Close(1003, "unsupported_data".into()));
        assert_eq!(task.await.unwrap().code, Some(CloseCode::UnsupportedData));
    }

    #[tokio::test]
    async fn silence_closes_with_4005_after_an_auth_timeout_error() {
        let (_tx, mut rx, io) = channel_transport();
        let task = tokio::spawn(run(relay(50), io, None));
        let Outgoing::Text(text) = out(&mut rx).await else { panic!("error frame first") };
        assert!(text.contains(r#""code":"auth_timeout""#) && text.contains(r#""fatal":true"#), "{text}");
        assert_eq!(out(&mut rx).await, Outgoing::Close(4005, "auth_timeout".into()));
        assert_eq!(task.await.unwrap().code, Some(CloseCode::AuthTimeout));
    }

    #[tokio::test]
    async fn a_valid_hello_gets_welcome_and_a_ping_gets_its_pong() {
        let relay = relay(10_000);
        let registered = relay
            .register(RegistrationInput {
                device_name: "unit".into(),
                device_type: relaykit_protocol::DeviceType::Desktop,
                platform: "linux".into(),
                capabilities: Default::default(),
                public_key: PublicKey { alg: "x25519".into(), key: "A".repeat(43) },
                pairing_code: None,
            })
            .await
            .unwrap();
        let (tx, mut rx, io) = channel_transport();
        let task = tokio::spawn(run(relay, io, Some(PROTOCOL_V1.into())));
        let hello = format!(
            r#"{{"type":"hello","protocol":"relay.v1","token":"{}"}}"#,
            registered.tokens.access_token
        );
        tx.send(Inbound::Text(hello)).await.unwrap();
        let Outgoing::Text(welcome) = out(&mut rx).await else { panic!("welcome expected") };
        assert!(welcome.starts_with(r#"{"type":"welcome""#), "{welcome}");
        tx.send(Inbound::Text(r#"{"type":"ping","nonce":77}"#.into())).await.unwrap();
        assert_eq!(out(&mut rx).await, Outgoing::Text(r#"{"type":"pong","nonce":77}"#.into()));
        tx.send(Inbound::Closed).await.unwrap();
        assert_eq!(task.await.unwrap().code, None);
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = Bucket::new(10, 3);
        for _ in 0..3 {
            assert!(b.take(start).is_ok());
        }
        let wait = b.take(start).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        b.reject(start);
        assert!(b.take(start + Duration::from_millis(100)).is_ok());
        assert!(!b.abusive(3));
        for _ in 0..3 {
            if b.take(start + Duration::from_millis(100)).is_err() {
                b.reject(start + Duration::from_millis(100));
            }
        }
        assert!(b.abusive(3));
    }
}
