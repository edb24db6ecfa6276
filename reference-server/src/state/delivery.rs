//! Durable delivery (PROTOCOL.md section 9): send, ack/nack/reject, the pump that hands
//! entries to the attached connection, receipts, expiry and dead-lettering.

use relaykit_protocol::client::Send;
use relaykit_protocol::server::{Accepted, Delivery, ErrorFrame, Receipt, ReceiptState, Recipient};
use relaykit_protocol::validate::body_size;
use relaykit_protocol::{DurableKind, ErrorCode, ServerFrame, Target, encode};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::{Duration, Instant};

use super::inbox::{Rules, Slot};
use super::records::{EntryBody, EntryRecord, IdempotencyRecord};
use super::{Idempotency, Relay, SessionCtx, World, now_ms};
use crate::mutant::Mutant;
use crate::store::{Mutation, StoreError, Table, entry_key, idempotency_key};

/// Answer to a frame that expects one.
pub type Outcome = Result<ServerFrame, ErrorFrame>;

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, message)
}

/// SHA-256 of everything that makes two sends "the same content" (PROTOCOL.md 9.4).
fn content_hash(kind: DurableKind, send: &Send, priority: u8, ttl_ms: u64, max_attempts: u64) -> String {
    let target = match &send.to {
        Target::Device(d) => format!("device:{d}"),
        Target::Role(r) => format!("role:{}", r.as_str()),
    };
    let body = match (&send.payload, &send.e2e) {
        (Some(p), _) => format!("p:{}", p.get()),
        (None, Some(e)) => format!("e:{}", encode(e)),
        (None, None) => String::new(),
    };
    let text = format!("{kind}\n{target}\n{priority}\n{ttl_ms}\n{max_attempts}\n{body}");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Entries created under the lock whose batch is still committing.
type Fresh = Vec<(String, u64)>;

impl Relay {
    /// A durable send from the session's device. Resolves after the batch is durable.
    pub async fn send(&self, ctx: &SessionCtx, kind: DurableKind, send: Send) -> Outcome {
        let with_ref = |mut e: ErrorFrame| {
            e.ref_id = Some(send.id.clone());
            e
        };
        loop {
            let step = {
                let mut world = self.lock();
                self.admit(&mut world, ctx, kind, &send)
            };
            match step {
                Admit::Done(outcome) => return outcome.map_err(with_ref),
                // A resend raced its original: wait until that one is durable, then look again.
                Admit::Wait(mut committed) => {
                    let _ = committed.wait_for(Option::is_some).await;
                }
                Admit::Commit { commit, fresh, accepted, key, done } => {
                    let result = commit.await.unwrap_or(Err(StoreError::Stopped));
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "store commit failed: send answered `internal`");
                    }
                    let ok = result.is_ok();
                    {
                        let mut world = self.lock();
                        if !ok {
                            world.idempotency.remove(&key);
                        }
                        self.settle(&mut world, &fresh, ok);
                    }
                    let _ = done.send(Some(ok));
                    return if ok {
                        self.metrics.messages_accepted_total.add(accepted.recipients.len() as u64);
                        Ok(ServerFrame::Accepted(accepted))
                    } else {
                        Err(with_ref(error(
                            ErrorCode::Internal,
                            "store failure: the message may not be accepted",
                        )))
                    };
                }
            }
        }
    }

    /// The locked part of a send: checks, idempotency, recipients, capacity, seqs, submit.
    fn admit(&self, world: &mut World, ctx: &SessionCtx, kind: DurableKind, send: &Send) -> Admit {
        let l = &self.limits;
        // Field validation (section 9.2 step 1, which includes the max_attempts_max bound) comes
        // before the ttl range (step 3).
        let max_attempts = send.max_attempts.unwrap_or(l.max_attempts_default);
        if max_attempts > l.max_attempts_max {
            let mut e = error(ErrorCode::InvalidField, format!("max_attempts above {}", l.max_attempts_max));
            e.field = Some("max_attempts".into());
            return Admit::Done(Err(e));
        }
        let ttl_ms = send.ttl_ms.unwrap_or(l.ttl_default_ms);
        if !(l.ttl_min_ms..=l.ttl_max_ms).contains(&ttl_ms) {
            let msg = format!("ttl_ms must be in [{}, {}]", l.ttl_min_ms, l.ttl_max_ms);
            return Admit::Done(Err(error(ErrorCode::TtlOutOfRange, msg)));
        }
        let priority = send.priority.unwrap_or(0);
        let hash = content_hash(kind, send, priority, ttl_ms, max_attempts);
        let key = idempotency_key(&ctx.device_id, &send.id);
        let dedupe = !self.mutated(Mutant::NoResendDedupe);
        if let Some(existing) = world.idempotency.get(&key).filter(|_| dedupe) {
            if existing.record.content_hash != hash {
                let msg = "this id was accepted with different content";
                return Admit::Done(Err(error(ErrorCode::IdempotencyConflict, msg)));
            }
            return match *existing.committed.borrow() {
                Some(true) => {
                    self.metrics.messages_duplicate_total.inc();
                    let accepted = Accepted { duplicate: true, ..existing.record.accepted.clone() };
                    Admit::Done(Ok(ServerFrame::Accepted(accepted)))
                }
                _ => Admit::Wait(existing.committed.clone()),
            };
        }
        let recipients = match resolve(world, ctx, &send.to, self.mutated(Mutant::CrossUserDelivery)) {
            Ok(r) => r,
            Err(e) => return Admit::Done(Err(e)),
        };
        let size = body_size(&send.payload, &send.e2e) as u64;
        for r in &recipients {
            let inbox = &world.devices[r].inbox;
            if !inbox.has_room(1, size, l.inbox_max_entries, l.inbox_max_bytes) {
                return Admit::Done(Err(error(ErrorCode::QueueFull, format!("inbox of {r} is full"))));
            }
        }
        let (now, now_wall) = (Instant::now(), now_ms());
        let mut batch = Vec::new();
        let mut fresh = Vec::new();
        let mut accepted = Accepted { id: send.id.clone(), duplicate: false, recipients: Vec::new() };
        for r in recipients {
            let device = world.devices.get_mut(&r).expect("resolved recipients exist");
            let seq = device.inbox.reserve_seq();
            let record = EntryRecord {
                device_id: r.clone(),
                seq,
                body: EntryBody::Message {
                    kind,
                    id: send.id.clone(),
                    from: ctx.device_id.clone(),
                    from_type: ctx.device_type,
                    payload: send.payload.clone(),
                    e2e: send.e2e.clone(),
                },
                priority,
                attempts: 0,
                max_attempts,
                accepted_at_ms: now_wall,
                expires_at_ms: now_wall + ttl_ms,
                size,
            };
            batch.push(Mutation::put(Table::Entries, entry_key(&r, seq), &record));
            batch.push(Mutation::put(Table::InboxSeqs, r.clone(), &device.inbox.next_seq()));
            device.inbox.insert(pending(record, now + Duration::from_millis(ttl_ms)));
            accepted.recipients.push(Recipient { device_id: r.clone(), seq });
            fresh.push((r, seq));
        }
        let record = IdempotencyRecord {
            content_hash: hash,
            accepted: accepted.clone(),
            expires_at_ms: now_wall + l.ttl_max_ms.max(ttl_ms),
        };
        batch.push(Mutation::put(Table::Idempotency, key.clone(), &record));
        let (done, committed) = watch::channel(None);
        world.idempotency.insert(key.clone(), Idempotency { record, committed });
        // Every depth change happens under the world lock, so get+set does not race.
        self.metrics.inbox_depth.set(self.metrics.inbox_depth.get() + fresh.len() as i64);
        // Submitted under the lock so the store sees batches in the order the state changed.
        let commit = self.store.submit(batch);
        Admit::Commit { commit, fresh, accepted, key, done }
    }

    /// After a batch: committed entries become deliverable (and their inboxes are pumped); on
    /// failure they disappear again.
    pub(crate) fn settle(&self, world: &mut World, fresh: &[(String, u64)], ok: bool) {
        for (device_id, seq) in fresh {
            let Some(device) = world.devices.get_mut(device_id) else { continue };
            if ok {
                if let Some(slot) = device.inbox.get_mut(*seq) {
                    slot.committed = true;
                }
            } else if device.inbox.remove(*seq).is_some() {
                self.metrics.inbox_depth.dec();
            }
        }
        let mut devices: Vec<&String> = fresh.iter().map(|(d, _)| d).collect();
        devices.dedup();
        for d in devices {
            self.pump(world, d);
        }
    }

    /// Hands deliverable entries to the device's connection up to `max_in_flight`,
    /// dead-lettering entries whose attempts are used up.
    pub(crate) fn pump(&self, world: &mut World, device_id: &str) {
        let now = Instant::now();
        loop {
            let Some(device) = world.devices.get_mut(device_id) else { return };
            let Some(session) = device.session.clone() else { return };
            if device.inbox.in_flight_count(session.conn_id) as u64 >= self.limits.max_in_flight {
                return;
            }
            let rules = Rules {
                priority: !self.mutated(Mutant::IgnorePriority),
                expiry: !self.mutated(Mutant::DeliverAfterExpiry),
            };
            let Some(seq) = device.inbox.next_deliverable_with(now, rules) else { return };
            let slot = device.inbox.get_mut(seq).expect("deliverable seq exists");
            if slot.record.attempts >= slot.record.max_attempts && !self.mutated(Mutant::NoDeliveryCap) {
                let slot = device.inbox.remove(seq).expect("present");
                self.finish(
                    world,
                    slot,
                    ReceiptState::Undeliverable,
                    false,
                    Some("delivery attempts exhausted"),
                );
                self.metrics.messages_dead_lettered_total.inc();
                continue;
            }
            slot.record.attempts += 1;
            slot.in_flight = Some((session.conn_id, now));
            let created = slot.created;
            let record = slot.record.clone();
            let ttl_remaining_ms = slot.expires_at.saturating_duration_since(now).as_millis().max(1) as u64;
            drop(self.store.submit(vec![Mutation::put(Table::Entries, entry_key(device_id, seq), &record)]));
            if record.attempts > 1 {
                self.metrics.messages_redelivered_total.inc();
            } else if matches!(record.body, EntryBody::Message { .. }) {
                // Accept (or load) -> handed to the recipient's connection: queueing, commit
                // and, for offline recipients, the whole offline period.
                self.metrics.routing_latency_seconds.observe(now.duration_since(created).as_secs_f64());
            }
            self.metrics.messages_delivered_total.inc();
            let mut frame = delivery_frame(&record, ttl_remaining_ms);
            self.mutate_delivery(&mut frame, device_id);
            session.push(encode(&frame));
            if let (1, EntryBody::Message { id, from, .. }) = (record.attempts, &record.body) {
                let notice = Receipt {
                    id: id.clone(),
                    recipient: device_id.to_string(),
                    recipient_seq: seq,
                    state: ReceiptState::Delivered,
                    definite: false,
                    at_ms: now_ms(),
                    reason: None,
                    seq: None,
                };
                if let Some(s) = world.devices.get(from).and_then(|d| d.session.as_ref()) {
                    s.push(encode(&ServerFrame::Receipt(notice)));
                }
            }
        }
    }

    /// An entry reached a terminal state: delete it and tell its sender with a durable receipt
    /// entry, which becomes deliverable once its commit is durable (settled in the background).
    pub(crate) fn finish(
        &self,
        world: &mut World,
        slot: Slot,
        state: ReceiptState,
        definite: bool,
        reason: Option<&str>,
    ) {
        self.metrics.inbox_depth.dec();
        let mut batch =
            vec![Mutation::delete(Table::Entries, entry_key(&slot.record.device_id, slot.record.seq))];
        let mut fresh: Fresh = Vec::new();
        if let EntryBody::Message { id, from, .. } = &slot.record.body
            && !self.mutated(Mutant::NoReceipts)
            && let Some(sender) = world.devices.get_mut(from)
            && sender.record.revoked_at_ms.is_none()
        {
            let seq = sender.inbox.reserve_seq();
            let receipt = Receipt {
                id: id.clone(),
                recipient: slot.record.device_id.clone(),
                recipient_seq: slot.record.seq,
                state,
                definite,
                at_ms: now_ms(),
                reason: reason.map(str::to_string),
                seq: Some(seq),
            };
            let (now, now_wall) = (Instant::now(), now_ms());
            let ttl = self.limits.ttl_max_ms;
            let record = EntryRecord {
                device_id: from.clone(),
                seq,
                body: EntryBody::Receipt(receipt),
                priority: slot.record.priority,
                attempts: 0,
                // Receipts are never dead-lettered (RCPT rules); they expire after ttl_max_ms.
                max_attempts: u64::MAX,
                accepted_at_ms: now_wall,
                expires_at_ms: now_wall + ttl,
                size: 0,
            };
            batch.push(Mutation::put(Table::Entries, entry_key(from, seq), &record));
            batch.push(Mutation::put(Table::InboxSeqs, from.clone(), &sender.inbox.next_seq()));
            sender.inbox.insert(pending(record, now + Duration::from_millis(ttl)));
            self.metrics.inbox_depth.inc();
            fresh.push((from.clone(), seq));
        }
        let commit = self.store.submit(batch);
        if fresh.is_empty() {
            return;
        }
        // Receipts are not awaited by anyone: settle them when durable, in the background.
        let relay = self.self_ref();
        tokio::spawn(async move {
            let ok = commit.await.unwrap_or(Err(StoreError::Stopped)).is_ok();
            if let Some(relay) = relay.upgrade() {
                let mut world = relay.lock();
                relay.settle(&mut world, &fresh, ok);
            }
        });
    }

    /// `ack`, `nack` or `reject` of `seq` on the session's inbox.
    pub fn settle_delivery(&self, ctx: &SessionCtx, seq: u64, action: Settle) -> Result<(), ErrorFrame> {
        let mut world = self.lock();
        let unknown = |world: &World| {
            let next = world.devices.get(&ctx.device_id).map_or(1, |d| d.inbox.next_seq());
            // seq 0 is never assigned (DLV-21); 1 up to the highest assigned is a no-op (DLV-20).
            if (1..next).contains(&seq) {
                Ok(()) // already terminal: acking again is a no-op (duplicates are expected)
            } else {
                let mut e =
                    error(ErrorCode::UnknownSeq, format!("seq {seq} was never assigned in this inbox"));
                e.ref_seq = Some(seq);
                Err(e)
            }
        };
        let Some(device) = world.devices.get_mut(&ctx.device_id) else { return unknown(&world) };
        let Some(slot) = device.inbox.get(seq) else { return unknown(&world) };
        if !slot.delivered() {
            let mut e = error(ErrorCode::UnknownSeq, format!("seq {seq} has not been delivered"));
            e.ref_seq = Some(seq);
            return Err(e);
        }
        match action {
            Settle::Ack if self.mutated(Mutant::RedeliverAcked) => {
                // The ack is "lost": the entry stays and goes out again.
                let slot = device.inbox.get_mut(seq).expect("present");
                slot.in_flight = None;
            }
            Settle::Ack => {
                let slot = device.inbox.remove(seq).expect("present");
                if let Some((_, since)) = slot.in_flight {
                    self.metrics.ack_latency_seconds.observe(since.elapsed().as_secs_f64());
                }
                self.metrics.messages_acked_total.inc();
                self.finish(&mut world, slot, ReceiptState::Acked, true, None);
            }
            Settle::Reject(reason) => {
                let slot = device.inbox.remove(seq).expect("present");
                self.metrics.messages_rejected_total.inc();
                self.finish(&mut world, slot, ReceiptState::Rejected, true, reason.as_deref());
            }
            Settle::Nack(delay_ms) => {
                let slot = device.inbox.get_mut(seq).expect("present");
                if slot.in_flight.is_some_and(|(c, _)| c == ctx.conn_id) {
                    slot.in_flight = None;
                    slot.not_before =
                        delay_ms.filter(|d| *d > 0).map(|d| Instant::now() + Duration::from_millis(d));
                }
            }
        }
        self.pump(&mut world, &ctx.device_id);
        Ok(())
    }

    /// Periodic work: expiry, ack timeouts, ended nack delays, forgotten idempotency records.
    pub fn tick(&self) {
        let now = Instant::now();
        let ack_wait = Duration::from_millis(self.limits.ack_wait_ms);
        let mut world = self.lock();
        let ids: Vec<String> = world
            .devices
            .iter()
            .filter(|(_, d)| d.session.is_some() || d.inbox.next_wakeup().is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let device = world.devices.get_mut(&id).expect("listed");
            let expired: Vec<_> = if self.mutated(Mutant::DeliverAfterExpiry) {
                Vec::new()
            } else {
                device.inbox.expired(now).into_iter().filter_map(|seq| device.inbox.remove(seq)).collect()
            };
            for slot in expired {
                let definite = !slot.delivered();
                self.metrics.messages_expired_total.inc();
                self.finish(&mut world, slot, ReceiptState::Expired, definite, Some("time to live ran out"));
            }
            let device = world.devices.get_mut(&id).expect("listed");
            if let Some(s) = &device.session
                && device.inbox.ack_overdue(s.conn_id, now, ack_wait)
            {
                s.close_with(relaykit_protocol::CloseCode::AckTimeout, "a delivery stayed unacknowledged");
            }
            self.pump(&mut world, &id);
        }
        let wall = now_ms();
        let stale: Vec<String> = world
            .idempotency
            .iter()
            .filter(|(_, i)| i.record.expires_at_ms <= wall)
            .map(|(k, _)| k.clone())
            .collect();
        if !stale.is_empty() {
            let batch = stale.iter().map(|k| Mutation::delete(Table::Idempotency, k.clone())).collect();
            for k in stale {
                world.idempotency.remove(&k);
            }
            drop(self.store.submit(batch));
        }
        // Expired credentials are forgotten (spent refresh tokens are kept until their own
        // expiry for reuse detection, TOK-3; after it they are plain invalid).
        let mut batch = Vec::new();
        world.refresh.retain(|hash, r| {
            let keep = r.expires_at_ms > wall;
            if !keep {
                batch.push(Mutation::delete(Table::RefreshTokens, hash.clone()));
            }
            keep
        });
        world.pairing.retain(|code, p| {
            let keep = p.expires_at_ms > wall;
            if !keep {
                batch.push(Mutation::delete(Table::PairingCodes, code.clone()));
            }
            keep
        });
        if !batch.is_empty() {
            drop(self.store.submit(batch));
        }
        self.tick_live(&mut world, now);
    }
}

impl Relay {
    /// Mutants that falsify a delivery frame (conformance self-test only).
    fn mutate_delivery(&self, frame: &mut ServerFrame, recipient: &str) {
        if let Some((kind, d)) = frame.as_delivery() {
            let mut d = d.clone();
            if self.mutated(Mutant::WrongSender) {
                d.from = recipient.to_string();
            }
            if self.mutated(Mutant::CorruptPayload)
                && let Some(p) = &d.payload
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(p.get())
            {
                d.payload = relaykit_protocol::RawJson::from_value(&value).ok();
            }
            *frame = ServerFrame::delivery(kind, d);
        }
    }
}

/// What a client did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// `ack`.
    Ack,
    /// `nack` with optional delay.
    Nack(Option<u64>),
    /// `reject` with optional reason.
    Reject(Option<String>),
}

enum Admit {
    Done(Outcome),
    Wait(watch::Receiver<Option<bool>>),
    Commit {
        commit: crate::store::Commit,
        fresh: Fresh,
        accepted: Accepted,
        key: String,
        done: watch::Sender<Option<bool>>,
    },
}

fn pending(record: EntryRecord, expires_at: Instant) -> Slot {
    Slot { record, committed: false, in_flight: None, not_before: None, expires_at, created: Instant::now() }
}

/// Recipients of a target: same user, active, device target may be the sender itself, role
/// target excludes the sender (PROTOCOL.md section 8).
pub(crate) fn resolve(
    world: &World,
    ctx: &SessionCtx,
    to: &Target,
    cross_user: bool,
) -> Result<Vec<String>, ErrorFrame> {
    match to {
        Target::Device(d) if cross_user && world.devices.contains_key(d) => Ok(vec![d.clone()]),
        Target::Device(d) => match world.active_device(&ctx.user_id, d) {
            Some(_) => Ok(vec![d.clone()]),
            // Unknown, revoked and another user's device answer identically (ISO rules).
            None => Err(error(ErrorCode::UnknownRecipient, "unknown recipient")),
        },
        Target::Role(role) => {
            let ids: Vec<String> = world
                .active_devices_of(&ctx.user_id)
                .filter(|d| d.record.device_type == *role && d.record.device_id != ctx.device_id)
                .map(|d| d.record.device_id.clone())
                .collect();
            if ids.is_empty() {
                Err(error(ErrorCode::NoRecipient, format!("no {} device to deliver to", role.as_str())))
            } else {
                Ok(ids)
            }
        }
    }
}

/// The frame for a delivery of an entry (a message or a terminal receipt).
fn delivery_frame(record: &EntryRecord, ttl_remaining_ms: u64) -> ServerFrame {
    match &record.body {
        EntryBody::Message { kind, id, from, from_type, payload, e2e } => ServerFrame::delivery(
            *kind,
            Delivery {
                id: id.clone(),
                seq: record.seq,
                from: from.clone(),
                from_type: *from_type,
                priority: record.priority,
                attempt: record.attempts,
                ttl_remaining_ms,
                sent_at_ms: record.accepted_at_ms,
                payload: payload.clone(),
                e2e: e2e.clone(),
            },
        ),
        EntryBody::Receipt(receipt) => ServerFrame::Receipt(receipt.clone()),
    }
}
