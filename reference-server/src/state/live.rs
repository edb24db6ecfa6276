//! Live delivery (PROTOCOL.md section 10): per-stream sequence, fan-out to attached devices,
//! a bounded replay window, and gap notices on resume.

use std::collections::{HashMap, VecDeque};

use relaykit_protocol::client::{Publish, Resume};
use relaykit_protocol::server::{ErrorFrame, Event, Gap, GapReason};
use relaykit_protocol::{LiveKind, ServerFrame, encode};
use tokio::time::{Duration, Instant};

use super::delivery::resolve;
use super::{Relay, SessionCtx, SessionHandle, World, now_ms};

/// One retained event.
#[derive(Debug, Clone)]
struct Retained {
    // Devices it was addressed to; replay goes only to them.
    recipients: Vec<String>,
    // When it was published, for the age bound of the window.
    at: Instant,
    // The event as first sent (replays set `replayed`).
    kind: LiveKind,
    event: Event,
}

/// A stream: its last pseq and its replay window.
#[derive(Debug, Default)]
struct Stream {
    last_pseq: u64,
    window: VecDeque<Retained>,
}

/// Streams by (user, stream id).
#[derive(Debug, Default)]
pub(crate) struct Streams(HashMap<(String, String), Stream>);

impl Streams {
    /// Events retained for replay in one stream of `user` (0 if unknown).
    pub(crate) fn retained(&self, user: &str, stream: &str) -> usize {
        self.0.get(&(user.to_string(), stream.to_string())).map_or(0, |s| s.window.len())
    }
}

impl Relay {
    /// A live publish: assigns the pseq, sends to attached recipients, retains for replay.
    pub fn publish(&self, ctx: &SessionCtx, kind: LiveKind, publish: Publish) -> Result<(), ErrorFrame> {
        let mut world = self.lock();
        let cross_user = self.mutated(crate::mutant::Mutant::CrossUserDelivery);
        let recipients = resolve(&world, ctx, &publish.to, cross_user).map_err(|mut e| {
            e.ref_id = publish.id.clone();
            e
        })?;
        let key = (ctx.user_id.clone(), publish.stream.clone());
        let stream = world.streams.0.entry(key).or_default();
        stream.last_pseq += 1;
        let event = Event {
            id: publish.id,
            stream: publish.stream,
            pseq: stream.last_pseq,
            from: ctx.device_id.clone(),
            from_type: ctx.device_type,
            sent_at_ms: now_ms(),
            replayed: false,
            payload: publish.payload,
            e2e: publish.e2e,
        };
        let text = encode(&ServerFrame::event(kind, event.clone()));
        stream.window.push_back(Retained { recipients: recipients.clone(), at: Instant::now(), kind, event });
        let cap = self.limits.replay_window_events as usize;
        while stream.window.len() > cap {
            stream.window.pop_front();
        }
        for r in &recipients {
            if let Some(s) = world.devices.get(r).and_then(|d| d.session.as_ref()) {
                s.push(text.clone());
            }
        }
        self.metrics.live_events_total.inc();
        Ok(())
    }

    /// Resume of live streams after `welcome`: gap notices and replays, in request order.
    pub(crate) fn replay(&self, world: &World, ctx: &SessionCtx, handle: &SessionHandle, resume: &Resume) {
        let same_epoch = resume.stream_epoch.as_deref() == Some(self.stream_epoch.as_str());
        let mut seen = std::collections::HashSet::new();
        for pos in &resume.streams {
            if !seen.insert(pos.stream.as_str()) {
                continue; // listed twice: the first entry wins
            }
            let stream = world.streams.0.get(&(ctx.user_id.clone(), pos.stream.clone()));
            let mine: Vec<&Retained> = stream
                .map(|s| s.window.iter().filter(|r| r.recipients.contains(&ctx.device_id)).collect())
                .unwrap_or_default();
            let first = stream.and_then(|s| s.window.front()).map(|r| r.event.pseq);
            let gap = |reason| Gap {
                stream: pos.stream.clone(),
                after_pseq: pos.last_pseq,
                resume_pseq: first,
                reason,
            };
            let from = if !same_epoch {
                handle.push(encode(&ServerFrame::Gap(gap(GapReason::EpochChanged))));
                0
            } else {
                match stream {
                    None => {
                        handle.push(encode(&ServerFrame::Gap(gap(GapReason::UnknownStream))));
                        continue;
                    }
                    Some(s) if pos.last_pseq >= s.last_pseq => continue,
                    Some(_) => {
                        if first.is_none_or(|f| f > pos.last_pseq + 1) {
                            handle.push(encode(&ServerFrame::Gap(gap(GapReason::WindowExceeded))));
                        }
                        pos.last_pseq
                    }
                }
            };
            for r in mine.into_iter().filter(|r| r.event.pseq > from) {
                let event = Event { replayed: true, ..r.event.clone() };
                handle.push(encode(&ServerFrame::event(r.kind, event)));
            }
        }
    }

    /// Drops events older than the window's age bound, and empty streams.
    pub(crate) fn tick_live(&self, world: &mut World, now: Instant) {
        let max_age = Duration::from_millis(self.limits.replay_window_ms);
        for stream in world.streams.0.values_mut() {
            while stream.window.front().is_some_and(|r| now.duration_since(r.at) > max_age) {
                stream.window.pop_front();
            }
        }
        // Streams are kept for the whole epoch (only their windows are pruned): their pseq must
        // never restart (LIVE-2), and a resume of a known stream must get `window_exceeded`, not
        // `unknown_stream` (LIVE-12). Cost: one small entry per stream until the relay restarts.
        for stream in world.streams.0.values_mut() {
            if stream.window.is_empty() {
                stream.window.shrink_to_fit();
            }
        }
    }
}
