//! One proxied connection: a task that connects upstream and runs two pumps (client -> upstream
//! and upstream -> client) side by side. Each pump reads into a 4 KiB buffer, cuts the stream
//! into units (the HTTP head, whole WebSocket frames, or raw chunks when the stream is not a
//! WebSocket), decides the fate of each unit from the faults in force, and writes the survivors
//! when they are due.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::fault::{Direction, Rng};
use crate::frame::FrameParser;
use crate::handle::{ConnInfo, Effective, Inner, Kill};
use crate::stats::bump;

mod cut;

use cut::{Mode, Stage};

const READ_BUF: usize = 4096;
/// Bytes a pump may hold for later (delays) before it stops reading and lets TCP push back.
const QUEUE_CAP: usize = 256 << 10;
/// A frame held back by reorder goes out after the next data frame, or after this long.
const HOLD_MAX: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What loss, duplication and reordering may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Data,
    Close,
    /// Ping, pong, HTTP heads, raw bytes.
    Other,
}

#[derive(Debug)]
enum End {
    /// The sender closed and everything was forwarded: close our side with FIN.
    Finished,
    Kill(Kill),
}

/// Serves an accepted connection until both directions end. `info` is already registered.
pub(crate) async fn serve(client: TcpStream, info: Arc<ConnInfo>, seed: u64, inner: Arc<Inner>) {
    let number = info.number;
    match connect(&info, &inner).await {
        Some(upstream) => {
            tracing::debug!(conn = number, "connected");
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            let (mode, _) = watch::channel(Mode::Unknown);
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            let up = Pump::new(Direction::Up, cr, uw, &info, &inner, seed, &mode);
            let down = Pump::new(Direction::Down, ur, cw, &info, &inner, seed, &mode);
            tokio::join!(up.run(), down.run());
            tracing::debug!(conn = number, "closed");
        }
        // Like a refused connection: the client sees a reset.
        None => drop(client.set_zero_linger()),
    }
    inner.unregister(number);
}

async fn connect(info: &ConnInfo, inner: &Inner) -> Option<TcpStream> {
    let Some(addr) = inner.upstream() else {
        tracing::warn!(conn = info.number, "no upstream address set");
        return None;
    };
    let mut kill = info.kill.subscribe();
    let result = tokio::select! {
        _ = killed(&mut kill) => return None,
        r = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)) => r,
    };
    match result {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::warn!(conn = info.number, %addr, "upstream connect failed: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(conn = info.number, %addr, "upstream connect timed out");
            None
        }
    }
}

async fn killed(rx: &mut watch::Receiver<Option<Kill>>) -> Kill {
    match rx.wait_for(Option::is_some).await {
        Ok(k) => k.unwrap_or(Kill::Close),
        Err(_) => Kill::Close,
    }
}

async fn resolved(rx: &mut watch::Receiver<Mode>) -> Mode {
    rx.wait_for(|m| *m != Mode::Unknown).await.map_or(Mode::Raw, |m| *m)
}

/// One direction of one connection.
struct Pump<'a> {
    flow: Direction,
    src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    info: &'a ConnInfo,
    inner: &'a Inner,
    mode: &'a watch::Sender<Mode>,
    mode_rx: watch::Receiver<Mode>,
    kill: watch::Receiver<Option<Kill>>,
    generation: watch::Receiver<u64>,
    cache: Option<(u64, bool, Effective)>,
    rng: Rng,
    stage: Stage,
    parser: FrameParser,
    hello_seen: bool,
    /// Units to write, with the instant each is due; `queued` counts their bytes.
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued: usize,
    /// Reorder: a frame held back (release deadline, bytes, copies).
    held: Option<(Instant, Vec<u8>, u8)>,
    last_due: Instant,
    /// Bandwidth: earliest start of the next write. Slow reader: earliest next read.
    bw_ready: Instant,
    read_ready: Instant,
}

impl<'a> Pump<'a> {
    fn new(
        flow: Direction,
        src: OwnedReadHalf,
        dst: OwnedWriteHalf,
        info: &'a ConnInfo,
        inner: &'a Inner,
        seed: u64,
        mode: &'a watch::Sender<Mode>,
    ) -> Self {
        let now = Instant::now();
        Pump {
            flow,
            src,
            dst,
            info,
            inner,
            mode,
            mode_rx: mode.subscribe(),
            kill: info.kill.subscribe(),
            generation: inner.generation.subscribe(),
            cache: None,
            rng: Rng::new(seed, info.number, flow),
            stage: Stage::Head(Vec::new()),
            parser: FrameParser::default(),
            hello_seen: false,
            queue: VecDeque::new(),
            queued: 0,
            held: None,
            last_due: now,
            bw_ready: now,
            read_ready: now,
        }
    }

    async fn run(mut self) {
        match self.pump().await {
            // Dropping the write half sends FIN; the other direction carries on (half-close).
            End::Finished => {}
            End::Kill(Kill::Close) => {
                self.info.stop(Kill::Close);
            }
            End::Kill(Kill::Reset) => {
                self.info.stop(Kill::Reset);
                let _ = self.dst.as_ref().set_zero_linger();
                // No FIN first: the socket closes with an RST once the other pump drops its
                // read half.
                self.dst.forget();
            }
        }
    }

    /// The faults in force, recomputed only when the fault set changed, the device became
    /// known or a contributing fault expired.
    fn effective(&mut self, now: Instant) -> Effective {
        let generation = *self.generation.borrow_and_update();
        let known = self.info.device.get().is_some();
        if let Some((g, k, eff)) = self.cache
            && g == generation
            && k == known
            && eff.valid_until.is_none_or(|t| t > now)
        {
            return eff;
        }
        let eff = self.inner.effective(self.info, self.flow, now);
        self.cache = Some((generation, known, eff));
        eff
    }

    async fn pump(&mut self) -> End {
        let mut buf = vec![0u8; READ_BUF];
        let (mut eof, mut failed) = (false, false);
        loop {
            let now = Instant::now();
            let eff = self.effective(now);
            if self.held.as_ref().is_some_and(|(t, ..)| *t <= now) {
                self.release_held(now);
            }
            let waiting = matches!(self.stage, Stage::WaitUpgrade(_));
            // Under a black hole even the end of the stream is not passed on until it heals.
            if eof && self.queue.is_empty() && self.held.is_none() && !eff.black_hole && !waiting {
                return if failed { End::Kill(Kill::Reset) } else { End::Finished };
            }
            let next_write = self.queue.front().map(|(due, _)| match eff.bandwidth {
                Some(_) => (*due).max(self.bw_ready),
                None => *due,
            });
            let (max_read, read_wake) = match eff.slow_reader {
                None => (READ_BUF, None),
                // Until the fault changes or expires (generation / valid_until below).
                Some(0) => (0, None),
                Some(_) if now < self.read_ready => (0, Some(self.read_ready)),
                // About 50 ms worth per read, so the rate is smooth.
                Some(bps) => ((bps / 20).clamp(1, READ_BUF as u64) as usize, None),
            };
            let can_read = !eof && !waiting && self.queued < QUEUE_CAP && max_read > 0;
            let wake =
                [read_wake, self.held.as_ref().map(|h| h.0), eff.valid_until].into_iter().flatten().min();
            tokio::select! {
                biased;
                k = killed(&mut self.kill) => return End::Kill(k),
                () = sleep_until(next_write.unwrap_or(now)), if next_write.is_some() => {
                    if let Some(end) = self.write_next(eff.bandwidth).await {
                        return end;
                    }
                }
                mode = resolved(&mut self.mode_rx), if waiting => {
                    if let Some(end) = self.upgraded(mode).await {
                        return end;
                    }
                }
                r = self.src.read(&mut buf[..max_read]), if can_read => match r {
                    Ok(0) => {
                        eof = true;
                        if let Some(end) = self.at_eof().await {
                            return end;
                        }
                    }
                    Ok(n) => {
                        if let Some(bps) = eff.slow_reader {
                            self.read_ready = Instant::now() + Duration::from_secs_f64(n as f64 / bps as f64);
                        }
                        if let Some(end) = self.ingest(&buf[..n]).await {
                            return end;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(conn = self.info.number, flow = ?self.flow, "read failed: {e}");
                        (eof, failed) = (true, true);
                        if let Some(end) = self.at_eof().await {
                            return end;
                        }
                    }
                },
                () = sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
                _ = self.generation.changed() => {}
            }
        }
    }

    /// Decides the fate of one unit: one random draw, then black hole, reset, loss,
    /// duplication, reorder, delay and retransmission delay in that order.
    async fn unit(&mut self, bytes: Vec<u8>, class: Class) -> Option<End> {
        let now = Instant::now();
        let eff = self.effective(now);
        let draw = self.rng.next();
        let counters = self.inner.counters.dir(self.flow);
        if eff.black_hole {
            bump(&counters.black_holed);
            return None;
        }
        if draw.uniform(0) < eff.reset {
            return Some(self.reset_mid_frame(&bytes).await);
        }
        let mut copies = 1;
        if class == Class::Data {
            if draw.uniform(1) < eff.loss {
                bump(&counters.dropped);
                return None;
            }
            if draw.uniform(2) < eff.duplicate {
                bump(&counters.duplicated);
                copies = 2;
            }
            if self.held.is_none() && draw.uniform(3) < eff.reorder {
                bump(&counters.reordered);
                self.held = Some((now + HOLD_MAX, bytes, copies));
                return None;
            }
        }
        let mut delay = 0;
        if eff.latency_ms > 0 {
            let jitter = eff.jitter_ms.min(eff.latency_ms);
            delay = eff.latency_ms - jitter + draw.bits(4) % (2 * jitter + 1);
        }
        if draw.uniform(5) < eff.retransmit {
            // The segment was lost and sent again one RTO later; the queue keeps the order, so
            // what follows waits behind it, as on a TCP connection.
            delay += eff.rto_ms;
        }
        if delay > 0 {
            bump(&counters.delayed);
        }
        // Never before an earlier unit: latency alone keeps the order.
        let due = (now + Duration::from_millis(delay)).max(self.last_due);
        if class == Class::Close {
            // Data after a close frame would be ignored: the held frame goes first.
            self.release_held(due);
        }
        for _ in 0..copies {
            self.push(due, bytes.clone());
        }
        if class == Class::Data {
            self.release_held(due);
        }
        None
    }

    fn push(&mut self, due: Instant, bytes: Vec<u8>) {
        self.last_due = due;
        self.queued += bytes.len();
        self.queue.push_back((due, bytes));
    }

    fn release_held(&mut self, at: Instant) {
        if let Some((_, bytes, copies)) = self.held.take() {
            let due = at.max(self.last_due);
            for _ in 0..copies {
                self.push(due, bytes.clone());
            }
        }
    }

    /// Writes unless told to stop first; a failed write breaks the connection.
    async fn write(&mut self, bytes: &[u8]) -> Option<End> {
        let result = tokio::select! {
            biased;
            k = killed(&mut self.kill) => return Some(End::Kill(k)),
            r = self.dst.write_all(bytes) => r,
        };
        result.err().map(|e| {
            tracing::debug!(conn = self.info.number, flow = ?self.flow, "write failed: {e}");
            End::Kill(Kill::Reset)
        })
    }

    async fn write_next(&mut self, bandwidth: Option<u64>) -> Option<End> {
        let (_, bytes) = self.queue.pop_front()?;
        self.queued -= bytes.len();
        let start = Instant::now().max(self.bw_ready);
        let end = self.write(&bytes).await;
        if let Some(bps) = bandwidth {
            self.bw_ready = start + Duration::from_secs_f64(bytes.len() as f64 / bps as f64);
        }
        end
    }

    /// Writes the first half of the unit, then resets the connection.
    async fn reset_mid_frame(&mut self, bytes: &[u8]) -> End {
        if let Some(end) = self.write(&bytes[..bytes.len() / 2]).await {
            return end;
        }
        if self.info.stop(Kill::Reset) {
            bump(&self.inner.counters.resets);
        }
        End::Kill(Kill::Reset)
    }
}
