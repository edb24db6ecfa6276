//! Cutting a byte stream into units: the HTTP head, then WebSocket frames or raw chunks,
//! depending on what the upgrade turned the connection into.

use super::{Class, End, Pump};
use crate::fault::Direction;
use crate::frame::{self, Frame, Head};
use crate::handle::Kill;
use crate::stats::{add, bump};
use tokio::time::Instant;

/// What the upgrade turned the connection into; decided by the upstream's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Unknown,
    WebSocket,
    Raw,
}

#[derive(Debug)]
pub(super) enum Stage {
    /// Collecting the HTTP head.
    Head(Vec<u8>),
    /// Client side after an upgrade request: bytes wait until the response says what follows.
    WaitUpgrade(Vec<u8>),
    Frames,
    Raw,
}

impl Pump<'_> {
    /// New bytes from the sender.
    pub(super) async fn ingest(&mut self, input: &[u8]) -> Option<End> {
        add(&self.inner.counters.dir(self.flow).bytes, input.len());
        if let Stage::Head(head) = &mut self.stage {
            head.extend_from_slice(input);
            return self.advance_head().await;
        }
        self.feed(input).await
    }

    /// Bytes after the HTTP head, in the current stage.
    async fn feed(&mut self, input: &[u8]) -> Option<End> {
        match &mut self.stage {
            Stage::Head(_) => unreachable!("the head stage is handled by advance_head"),
            Stage::WaitUpgrade(pending) => {
                pending.extend_from_slice(input);
                None
            }
            Stage::Frames => self.frames(input).await,
            Stage::Raw if input.is_empty() => None,
            Stage::Raw => self.unit(input.to_vec(), Class::Other).await,
        }
    }

    /// Passes the HTTP head on once complete and picks what follows it.
    async fn advance_head(&mut self) -> Option<End> {
        let Stage::Head(head) = &mut self.stage else { return None };
        let up = self.flow == Direction::Up;
        let verdict = if up { frame::request_head(head) } else { frame::response_head(head) };
        let (mut bytes, next) = match verdict {
            Head::Incomplete => return None,
            Head::NotHttp => (std::mem::take(head), Stage::Raw),
            Head::Complete(n) => {
                let bytes = std::mem::take(head);
                let next = match (up, &bytes[..n]) {
                    (true, h) if frame::is_websocket_upgrade(h) => Stage::WaitUpgrade(Vec::new()),
                    (false, h) if frame::is_websocket_accept(h) => Stage::Frames,
                    _ => Stage::Raw,
                };
                (bytes, next)
            }
        };
        let rest = match verdict {
            Head::Complete(n) => bytes.split_off(n),
            _ => Vec::new(),
        };
        if !up {
            self.set_mode(if matches!(next, Stage::Frames) { Mode::WebSocket } else { Mode::Raw });
        }
        self.stage = next;
        if let Some(end) = self.unit(bytes, Class::Other).await {
            return Some(end);
        }
        self.feed(&rest).await
    }

    fn set_mode(&self, mode: Mode) {
        // The first answer counts: an end of stream after an upgrade does not undo it.
        self.mode.send_if_modified(|m| {
            let first = *m == Mode::Unknown;
            if first {
                *m = mode;
            }
            first
        });
    }

    /// The upstream answered the upgrade: frames or raw bytes from here on.
    pub(super) async fn upgraded(&mut self, mode: Mode) -> Option<End> {
        let next = if mode == Mode::WebSocket { Stage::Frames } else { Stage::Raw };
        let Stage::WaitUpgrade(pending) = std::mem::replace(&mut self.stage, next) else { return None };
        self.feed(&pending).await
    }

    /// The sender closed: a partial head or frame is passed on as it is, so the receiver sees the
    /// same truncation; a held frame goes out.
    pub(super) async fn at_eof(&mut self) -> Option<End> {
        if self.flow == Direction::Down {
            // Releases a client side that waits for an upgrade answer that will not come.
            self.set_mode(Mode::Raw);
        }
        let rest = match &mut self.stage {
            Stage::Head(head) => std::mem::take(head),
            Stage::Frames => self.parser.take_partial(),
            Stage::WaitUpgrade(_) | Stage::Raw => Vec::new(),
        };
        if matches!(self.stage, Stage::Head(_)) {
            self.stage = Stage::Raw;
        }
        self.release_held(Instant::now());
        if rest.is_empty() { None } else { self.unit(rest, Class::Other).await }
    }

    async fn frames(&mut self, mut input: &[u8]) -> Option<End> {
        while !input.is_empty() {
            match self.parser.next(&mut input) {
                Ok(Some(frame)) => {
                    if let Some(end) = self.frame(frame).await {
                        return Some(end);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(conn = self.info.number, flow = ?self.flow, "broken WebSocket framing, closing: {e}");
                    return Some(End::Kill(Kill::Close));
                }
            }
        }
        None
    }

    async fn frame(&mut self, frame: Frame) -> Option<End> {
        bump(&self.inner.counters.dir(self.flow).frames);
        if self.flow == Direction::Up && !self.hello_seen && frame.is_data() {
            self.hello_seen = true;
            if let Some(device) = frame::hello_device(&frame) {
                tracing::debug!(conn = self.info.number, device, "hello");
                let _ = self.info.device.set(device);
            }
        }
        let class = if frame.is_data() {
            Class::Data
        } else if frame.is_close() {
            Class::Close
        } else {
            Class::Other
        };
        self.unit(frame.bytes, class).await
    }
}
