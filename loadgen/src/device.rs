//! Simulated devices. A phone sends `new_task` commands on an open-model schedule (sends are due
//! at fixed times whether or not earlier ones were answered); a desktop answers each command with
//! `tool_start`, `tool_progress` updates and a durable `tool_complete`. Both only report raw
//! timestamps to the aggregator.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use relaykit_protocol::client::{Ack, Heartbeat, Hello, Publish, Reauth, Send};
use relaykit_protocol::rest::Registered;
use relaykit_protocol::{
    ClientFrame, DecodeLimits, DeviceType, DurableKind, LiveKind, PROTOCOL_V1, ServerFrame, Target,
    decode_server, encode,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::record::{Event, Micros};
use crate::scenario::Scenario;

mod body;
mod pending;
mod schedule;
mod tokens;

use body::{body, read_body, stamp};
use pending::Pending;
use schedule::offline_windows;
use tokens::Tokens;

/// What every device task shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Time zero of the run: every timestamp is microseconds since it.
    pub start: Instant,
    /// Seconds from time zero to the first scheduled send: set once every device connected
    /// (so connection storms at the start do not count as generator lateness).
    pub go: watch::Receiver<Option<f64>>,
    /// Counts devices that finished connecting (or gave up), for the start barrier.
    pub ready: Arc<std::sync::atomic::AtomicUsize>,
    /// Round-robin counter over the loopback source addresses.
    pub next_source: Arc<std::sync::atomic::AtomicUsize>,
    /// Bounds handshakes in progress: thousands of simultaneous SYNs overflow the listen backlog
    /// and turn into 1 s, 3 s, 7 s retransmissions.
    pub connect_slots: Arc<tokio::sync::Semaphore>,
    /// To the aggregator.
    pub events: mpsc::UnboundedSender<Event>,
    /// The scenario.
    pub scenario: Arc<Scenario>,
    /// Becomes true when the drain is over: devices close.
    pub stop: watch::Receiver<bool>,
    /// Where devices connect (the relay, or the fault proxy in front of it).
    pub addr: SocketAddr,
    /// The relay's REST address (token refreshes go there, never through the fault proxy).
    pub rest: SocketAddr,
    /// Silence after which a connection counts as dead, ms: 2 x the relay's `heartbeat_ms` (from
    /// the latest `welcome`) plus a second of slack, as PROTOCOL.md asks of clients. Without it
    /// a half-open or partitioned connection would never be noticed.
    pub idle_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped whenever a network fault heals: devices waiting to reconnect try at once, as a
    /// phone does when its OS reports the network back.
    pub network: watch::Receiver<u64>,
}

/// Longest wait for one reconnection attempt (TCP, upgrade, hello -> welcome).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dead-connection timeout before any `welcome` said otherwise (the default `heartbeat_ms` is 25 s).
pub const DEFAULT_IDLE_MS: u64 = 51_000;

/// A command without an answer is sent again (same id, PROTOCOL.md CLI-6) after this long...
const RESEND_AFTER: Duration = Duration::from_secs(3);

/// ... at most this many times on one connection (every reconnect sends it once more).
const MAX_RESENDS: u32 = 5;

impl Shared {
    fn now(&self) -> Micros {
        self.start.elapsed().as_micros() as Micros
    }

    fn report(&self, event: Event) {
        let _ = self.events.send(event);
    }

    /// When a connection that last received a frame at `last_rx` counts as dead.
    fn dead_at(&self, last_rx: Instant) -> Instant {
        last_rx + Duration::from_millis(self.idle_ms.load(std::sync::atomic::Ordering::Relaxed))
    }
}

type Ws = WebSocketStream<TcpStream>;

/// Loopback source addresses used in turn: one source address offers about 28,000 ephemeral
/// ports towards one destination, so large runs spread over 127.0.0.1-127.0.0.16.
const LOOPBACK_SOURCES: u8 = 16;

/// A TCP connection to the target; towards 127.0.0.1 from a rotating 127.0.0.x source.
async fn open_tcp(shared: &Shared) -> std::io::Result<TcpStream> {
    if let SocketAddr::V4(target) = shared.addr
        && target.ip().is_loopback()
    {
        let n = shared.next_source.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let source = std::net::Ipv4Addr::new(127, 0, 0, 1 + (n % usize::from(LOOPBACK_SOURCES)) as u8);
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        return socket.connect(shared.addr).await;
    }
    TcpStream::connect(shared.addr).await
}

/// Error code for an I/O failure; names the descriptor limit when that is the cause.
fn io_code(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "too_many_open_files".into(), // EMFILE
        Some(99) => "no_ephemeral_ports".into(),  // EADDRNOTAVAIL
        _ => "connect".into(),
    }
}

/// Connects and authenticates; reports the connect time (first connections only: reconnects
/// are timed by [`reconnect`]).
async fn connect(shared: &Shared, token: &str) -> Option<Ws> {
    connect_as(shared, token, true).await
}

async fn connect_as(shared: &Shared, token: &str, first: bool) -> Option<Ws> {
    let _slot = shared.connect_slots.acquire().await.ok()?;
    let started = shared.now();
    let stream =
        open_tcp(shared).await.map_err(|e| shared.report(Event::Error { code: io_code(&e) })).ok()?;
    // Commands are small: send them now, not after the peer's delayed ACK (Nagle).
    stream.set_nodelay(true).ok()?;
    let mut request = format!("ws://{}/v1/ws", shared.addr).into_client_request().ok()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL_V1));
    let mut config = WebSocketConfig::default();
    // Thousands of connections per process: small buffers (the 128 KiB defaults cost ~260 KiB
    // per connection).
    config.read_buffer_size = 4096;
    config.write_buffer_size = 4096;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await.ok()?;
    let hello = Hello { protocol: PROTOCOL_V1.into(), token: token.into(), resume: None, client: None };
    ws.send(Message::text(encode(&ClientFrame::Hello(hello)))).await.ok()?;
    loop {
        match next_frame(&mut ws).await? {
            ServerFrame::Welcome(w) => {
                let idle = w.limits.heartbeat_ms.saturating_mul(2).saturating_add(1000);
                shared.idle_ms.store(idle, std::sync::atomic::Ordering::Relaxed);
                if first {
                    shared.report(Event::Connected { started, at: shared.now() });
                }
                return Some(ws);
            }
            ServerFrame::Error(e) => {
                shared.report(Event::Error { code: e.code.to_string() });
                return None;
            }
            _ => continue,
        }
    }
}

async fn next_frame(ws: &mut Ws) -> Option<ServerFrame> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return decode_server(&t, &DecodeLimits::UNBOUNDED).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Answers relay pings and acks receipts; other frames are the caller's.
async fn housekeeping(ws: &mut Ws, shared: &Shared, frame: &ServerFrame) -> bool {
    match frame {
        ServerFrame::Ping(p) => {
            let pong = ClientFrame::Pong(Heartbeat { nonce: p.nonce });
            let _ = ws.send(Message::text(encode(&pong))).await;
            true
        }
        ServerFrame::Receipt(r) => {
            if let Some(seq) = r.seq {
                let _ = ws.send(Message::text(encode(&ClientFrame::Ack(Ack { seq })))).await;
            }
            true
        }
        ServerFrame::Error(e) => {
            shared.report(Event::Error { code: e.code.to_string() });
            true
        }
        ServerFrame::DeviceStatus(_) | ServerFrame::Pong(_) | ServerFrame::Reauthed(_) => true,
        _ => false,
    }
}

/// A phone: sends commands on schedule until the load ends, receives until stopped.
pub async fn mobile(shared: Shared, creds: Registered, index: u64, offset_s: f64) {
    let connected = connect(&shared, &creds.tokens.access_token).await;
    shared.ready.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(mut ws) = connected else {
        shared.report(Event::Error { code: "connect".into() });
        return;
    };
    let mut tokens = Tokens::new(&creds.tokens);
    let mut go = shared.go.clone();
    let Ok(lead) = go.wait_for(Option::is_some).await.map(|v| v.unwrap_or(0.0)) else { return };
    let mut windows = offline_windows(&shared.scenario, DeviceType::Mobile, index);
    let scenario = shared.scenario.clone();
    let pad = scenario.workload.payload_bytes;
    let mut stop = shared.stop.clone();
    // The k-th send is due when the rate integral reaches k + offset (open model).
    let mut seq: u64 = 0;
    let mut next = scenario.time_of_send(offset_s);
    // Last pseq seen per stream, for order checks.
    let mut last_pseq: HashMap<String, u64> = HashMap::new();
    let mut pending = Pending::default();
    let mut resend_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_rx = Instant::now();
    // Set when the connection must be replaced (a write failed, or it went silent).
    let mut broken = false;
    // When the latest reconnect completed: sends that fell due before it waited for the
    // connection, not for the generator.
    let mut back_at: Micros = 0;
    loop {
        if broken {
            let Some(again) = recover(&shared, &tokens.access, &mut stop).await else { return };
            ws = again;
            (last_rx, back_at, broken) = start_over(&mut ws, &shared, &mut pending).await;
            continue;
        }
        let t = next.unwrap_or(0.0);
        let due = shared.start + Duration::from_secs_f64(lead + t);
        let drop_at = windows.front().map(|w| shared.start + Duration::from_secs_f64(lead + w.0));
        tokio::select! {
            () = tokio::time::sleep_until(drop_at.unwrap_or_else(tokio::time::Instant::now)), if drop_at.is_some() => {
                let window = windows.pop_front().expect("a window is due");
                let token = &tokens.access;
                let Some(again) = offline(&shared, ws, token, window, lead, &mut stop).await else { return };
                ws = again;
                (last_rx, back_at, broken) = start_over(&mut ws, &shared, &mut pending).await;
                // A phone without a connection sends nothing: what fell due meanwhile is skipped.
                while next.is_some_and(|n| n < window.1) {
                    seq += 1;
                    next = scenario.time_of_send(seq as f64 + offset_s);
                }
            }
            () = tokio::time::sleep_until(due), if next.is_some() => {
                let cid = (index << 32) | seq;
                seq += 1;
                next = scenario.time_of_send(seq as f64 + offset_s);
                let intended = ((lead + t) * 1_000_000.0) as Micros;
                let (payload, e2e) = body(stamp(cid, intended, pad), scenario.workload.e2e);
                let send = Send {
                    id: format!("c{cid}"),
                    to: Target::Role(DeviceType::Desktop),
                    priority: None,
                    ttl_ms: scenario.workload.ttl_ms,
                    max_attempts: None,
                    payload,
                    e2e,
                };
                let text = Utf8Bytes::from(encode(&ClientFrame::send(DurableKind::NewTask, send)));
                pending.add(cid, text.clone(), Instant::now());
                // Counted as sent even when the write fails: the command is the user's intent,
                // it stays pending and goes out again on the next connection.
                broken = ws.send(Message::text(text)).await.is_err();
                // Due before the latest reconnect completed (so while it was under way).
                let held = intended < back_at;
                shared.report(Event::Sent { cid, intended, actual: shared.now(), held });
            }
            () = tokio::time::sleep_until(tokens.due()) => {
                broken = !refresh(&mut ws, &shared, &mut tokens).await;
            }
            _ = resend_tick.tick() => {
                broken = !resend(&mut ws, &shared, pending.overdue(Instant::now(), RESEND_AFTER, MAX_RESENDS)).await;
            }
            () = tokio::time::sleep_until(shared.dead_at(last_rx)) => broken = true,
            frame = next_frame(&mut ws) => {
                let Some(frame) = frame else {
                    broken = true;
                    continue;
                };
                last_rx = Instant::now();
                if housekeeping(&mut ws, &shared, &frame).await {
                    continue;
                }
                let at = shared.now();
                match &frame {
                    ServerFrame::Accepted(a) => {
                        if let Some(cid) = a.id.strip_prefix('c').and_then(|c| c.parse().ok()) {
                            pending.answered(cid);
                            shared.report(Event::Accepted { cid, at });
                        }
                    }
                    f if f.as_event().is_some() => {
                        let (_, e) = f.as_event().expect("checked");
                        if let Some((cid, sent)) = read_body(e.payload.as_ref(), e.e2e.as_ref()) {
                            let last = last_pseq.entry(e.stream.clone()).or_insert(0);
                            let out_of_order = e.pseq <= *last;
                            *last = e.pseq.max(*last);
                            shared.report(Event::Update { cid, sent, at, out_of_order });
                        }
                    }
                    f if f.as_delivery().is_some() => {
                        let (_, d) = f.as_delivery().expect("checked");
                        if let Some((cid, _)) = read_body(d.payload.as_ref(), d.e2e.as_ref()) {
                            last_pseq.remove(&format!("s{cid}"));
                            shared.report(Event::Completed { cid, at });
                        }
                        let _ = ws.send(Message::text(encode(&ClientFrame::Ack(Ack { seq: d.seq })))).await;
                    }
                    _ => {}
                }
            }
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

/// A desktop: answers every command with a progress stream and a durable result; goes offline
/// and comes back as the scenario's offline steps say.
pub async fn desktop(shared: Shared, creds: Registered, index: u64) {
    let connected = connect(&shared, &creds.tokens.access_token).await;
    shared.ready.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(mut ws) = connected else {
        shared.report(Event::Error { code: "connect".into() });
        return;
    };
    let mut tokens = Tokens::new(&creds.tokens);
    let updates = shared.scenario.workload.progress_updates;
    let mut windows = offline_windows(&shared.scenario, DeviceType::Desktop, index);
    let mut go = shared.go.clone();
    let mut lead: Option<f64> = *go.borrow();
    // `welcome` of the latest reconnect: commands due before it were queued while this desktop
    // was away (or were in flight when it dropped) and count as backlog deliveries.
    let mut back_at: Micros = 0;
    // Commands already answered, so redeliveries are not executed twice.
    let mut handled: std::collections::HashSet<u64> = std::collections::HashSet::new();
    // Results (`tool_complete`) the relay has not accepted yet, resent like a phone's commands.
    let mut pending = Pending::default();
    let mut resend_tick = tokio::time::interval(Duration::from_secs(1));
    let mut stop = shared.stop.clone();
    let mut last_rx = Instant::now();
    // Set when the connection must be replaced (it failed, or went silent for 2 x heartbeat_ms:
    // half-open, partitioned, or a paused relay).
    let mut broken = false;
    loop {
        if broken {
            let Some(again) = recover(&shared, &tokens.access, &mut stop).await else { return };
            ws = again;
            // Redeliveries of what was in flight count as backlog, like after an offline step.
            (last_rx, back_at, broken) = start_over(&mut ws, &shared, &mut pending).await;
            continue;
        }
        let drop_at =
            lead.and_then(|l| windows.front().map(|w| shared.start + Duration::from_secs_f64(l + w.0)));
        tokio::select! {
            () = tokio::time::sleep_until(shared.dead_at(last_rx)) => broken = true,
            changed = go.changed(), if lead.is_none() => {
                if changed.is_err() {
                    return;
                }
                lead = *go.borrow();
            }
            () = tokio::time::sleep_until(drop_at.unwrap_or_else(tokio::time::Instant::now)), if drop_at.is_some() => {
                let window = windows.pop_front().expect("a window is due");
                let token = &tokens.access;
                let Some(again) = offline(&shared, ws, token, window, lead.unwrap_or(0.0), &mut stop).await else { return };
                ws = again;
                (last_rx, back_at, broken) = start_over(&mut ws, &shared, &mut pending).await;
            }
            () = tokio::time::sleep_until(tokens.due()) => {
                broken = !refresh(&mut ws, &shared, &mut tokens).await;
            }
            _ = resend_tick.tick() => {
                broken = !resend(&mut ws, &shared, pending.overdue(Instant::now(), RESEND_AFTER, MAX_RESENDS)).await;
            }
            frame = next_frame(&mut ws) => {
                let Some(frame) = frame else {
                    broken = true;
                    continue;
                };
                last_rx = Instant::now();
                if housekeeping(&mut ws, &shared, &frame).await {
                    continue;
                }
                if let ServerFrame::Accepted(a) = &frame {
                    if let Some(cid) = a.id.strip_prefix('d').and_then(|c| c.parse().ok()) {
                        pending.answered(cid);
                    }
                    continue;
                }
                let Some((DurableKind::NewTask, d)) = frame.as_delivery() else { continue };
                let at = shared.now();
                let _ = ws.send(Message::text(encode(&ClientFrame::Ack(Ack { seq: d.seq })))).await;
                let Some((cid, intended)) = read_body(d.payload.as_ref(), d.e2e.as_ref()) else { continue };
                if intended < back_at {
                    shared.report(Event::Backlog { cid, intended, at });
                } else {
                    shared.report(Event::Delivered { cid, intended, at });
                }
                if let Some(ttl) = shared.scenario.workload.ttl_ms
                    && at.saturating_sub(intended) > ttl * 1000
                {
                    shared.report(Event::Expired { cid });
                }
                // A redelivery is acked again but not executed again (CLI-1); the aggregator
                // counts it as a duplicate.
                if handled.insert(cid) {
                    let done = answer(&mut ws, &shared, cid, &d.from, updates).await;
                    pending.add(cid, done, Instant::now());
                }
            }
            _ = stop.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

/// Takes `ws` down for one offline window (abruptly or cleanly) and brings a new connection up
/// when it ends; `None` when the run stops meanwhile or the reconnect fails.
async fn offline(
    shared: &Shared,
    ws: Ws,
    token: &str,
    window: (f64, f64, bool),
    lead: f64,
    stop: &mut watch::Receiver<bool>,
) -> Option<Ws> {
    let (_, end, abrupt) = window;
    let mut ws = ws;
    if !abrupt {
        let _ = ws.close(None).await;
    }
    drop(ws); // abrupt: the TCP connection goes away without a WebSocket close
    let back = shared.start + Duration::from_secs_f64(lead + end);
    tokio::select! {
        () = tokio::time::sleep_until(back) => {}
        _ = stop.changed() => return None,
    }
    reconnect(shared, token).await
}

/// Refreshes the tokens (CLI-8) and hands the new access token to the open connection with
/// `reauth`; false when the connection failed meanwhile. A failed refresh is reported and tried
/// again later.
async fn refresh(ws: &mut Ws, shared: &Shared, tokens: &mut Tokens) -> bool {
    if tokens.refresh(shared.rest).await.is_err() {
        shared.report(Event::Error { code: "refresh".into() });
        return true;
    }
    let reauth = ClientFrame::Reauth(Reauth { token: tokens.access.clone() });
    ws.send(Message::text(encode(&reauth))).await.is_ok()
}

/// Starts over on a new connection (after a drop or an offline window): every unanswered send
/// goes out again. Returns when the connection came, as the loop's last-heard instant and
/// `back_at` (what fell due before it waited for the connection), and whether it failed again.
async fn start_over(ws: &mut Ws, shared: &Shared, pending: &mut Pending) -> (Instant, Micros, bool) {
    let now = Instant::now();
    let back_at = shared.now();
    (now, back_at, !resend(ws, shared, pending.all(now)).await)
}

/// Writes unanswered sends again; false when the connection failed meanwhile.
async fn resend(ws: &mut Ws, shared: &Shared, sends: Vec<(u64, Utf8Bytes)>) -> bool {
    for (cid, text) in sends {
        if ws.feed(Message::text(text)).await.is_err() {
            return false;
        }
        shared.report(Event::Resent { cid });
    }
    ws.flush().await.is_ok()
}

/// The connection ended. At the end of the run that is expected (`None`). Otherwise it is an
/// unplanned drop (relay restart, ack timeout, network): reported, then reconnected like a real
/// client would, with exponential backoff and full jitter (base 250 ms, cap 5 s, at most 10
/// attempts, PROTOCOL.md CLI-4), timing the drop to the new `welcome`. `None` when the run stops
/// or every attempt failed.
async fn recover(shared: &Shared, token: &str, stop: &mut watch::Receiver<bool>) -> Option<Ws> {
    if *stop.borrow() {
        return None;
    }
    shared.report(Event::Error { code: "transport".into() });
    let dropped = shared.now();
    let mut network = shared.network.clone();
    network.mark_unchanged();
    let mut at_once = false;
    for attempt in 0..10u32 {
        let ceiling = (250u64 << attempt.min(5)).min(5_000);
        let jitter = crate::run::pick(shared.scenario.seed ^ dropped, u64::from(attempt));
        let wait =
            if at_once { Duration::ZERO } else { Duration::from_millis((ceiling as f64 * jitter) as u64) };
        at_once = false;
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            // The network came back (a mobile OS says so): no reason to sit out the backoff.
            _ = network.changed() => {}
            _ = stop.changed() => return None,
        }
        tokio::select! {
            attempt = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect_as(shared, token, false)) => {
                if let Ok(Some(ws)) = attempt {
                    shared.report(Event::Reconnected { dropped, at: shared.now() });
                    return Some(ws);
                }
            }
            // An attempt begun while the network was down may hang on a lost frame: start over.
            _ = network.changed() => at_once = true,
            _ = stop.changed() => return None,
        }
    }
    shared.report(Event::Error { code: "reconnect_failed".into() });
    None
}

/// Connects again when an offline window ends; reports the recovery time, from the moment the
/// device is back (what a user waits for) to its new `welcome`.
async fn reconnect(shared: &Shared, token: &str) -> Option<Ws> {
    let back = shared.now();
    let ws = connect_as(shared, token, false).await;
    match &ws {
        Some(_) => shared.report(Event::Reconnected { dropped: back, at: shared.now() }),
        None => shared.report(Event::Error { code: "reconnect".into() }),
    }
    ws
}

/// The desktop's answer to command `cid`: `tool_start`, progress updates, durable `tool_complete`
/// (whose frame it returns, to resend until the relay accepts it).
async fn answer(ws: &mut Ws, shared: &Shared, cid: u64, phone: &str, updates: u32) -> Utf8Bytes {
    let to = Target::Device(phone.to_string());
    let stream = format!("s{cid}");
    let kinds = std::iter::once(LiveKind::ToolStart)
        .chain(std::iter::repeat_n(LiveKind::ToolProgress, updates as usize));
    let e2e = shared.scenario.workload.e2e;
    for kind in kinds {
        let (payload, e2e) = body(stamp(cid, shared.now(), 0), e2e);
        let publish = Publish { id: None, stream: stream.clone(), to: to.clone(), payload, e2e };
        let _ = ws.feed(Message::text(encode(&ClientFrame::publish(kind, publish)))).await;
    }
    let (payload, e2e) = body(stamp(cid, shared.now(), 0), e2e);
    let done =
        Send { id: format!("d{cid}"), to, priority: None, ttl_ms: None, max_attempts: None, payload, e2e };
    let text = Utf8Bytes::from(encode(&ClientFrame::send(DurableKind::ToolComplete, done)));
    let _ = ws.send(Message::text(text.clone())).await;
    text
}
