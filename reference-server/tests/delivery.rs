//! Durable delivery (PROTOCOL.md section 9), targets and isolation (section 8).

use std::time::Duration;

use relaykit_protocol::client::{Nack, Reject};
use relaykit_protocol::server::ReceiptState;
use relaykit_protocol::{ClientFrame, DeviceType, DurableKind, ServerFrame, Target};
use tokio::time::Instant;

use crate::util::*;

fn to_desktop() -> Target {
    Target::Role(DeviceType::Desktop)
}

/// DLV-14 (from set by the relay, never by the client), E2E-2 (byte-exact payload), DLV-7,
/// DLV-8, DLV-30 (accepted before receipts), RCPT-6 (delivered notice), DLV-19, RCPT-2, RCPT-3
/// (acked is definite), CLI-3 (the receipt is acked like an entry).
#[tokio::test]
async fn online_delivery_is_byte_exact_and_the_ack_reaches_the_sender() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;

    let payload = "{ \"task\" :  \"Banner\",\t\"n\": 123456789012345678901234567890, \"f\": 1.50e+3, \
                   \"s\": \"\\u00e9\\n\" , \"a\":[ ] }";
    let id = unique("m");
    // A client-supplied `from` is an unknown member of a send: ignored.
    let text = format!(
        r#"{{"type":"new_task","id":"{id}","to":{{"role":"desktop"}},"from":"{}","priority":3,"payload":{payload}}}"#,
        "dev_spoofed"
    );
    let before = now_ms();
    m.send_text(&text).await;
    let accepted = m.next_accepted().await;
    assert_eq!(accepted.id, id);
    assert!(!accepted.duplicate);
    assert_eq!(accepted.recipients.len(), 1);
    assert_eq!(accepted.recipients[0].device_id, desktop.device_id);
    let seq = accepted.recipients[0].seq;
    assert!(seq >= 1);
    // The first delivery is announced to the online sender, after `accepted`.
    let notice = m.next_receipt().await;
    assert_eq!((notice.state, notice.definite, notice.seq), (ReceiptState::Delivered, false, None));
    assert_eq!(
        (notice.id.as_str(), notice.recipient.as_str(), notice.recipient_seq),
        (id.as_str(), desktop.device_id.as_str(), seq)
    );

    let (kind, delivery) = d.next_delivery().await;
    assert_eq!(kind, DurableKind::NewTask);
    assert_eq!(delivery.id, id);
    assert_eq!(delivery.seq, seq);
    assert_eq!(delivery.from, mobile.device_id, "from is the relay's idea of the sender");
    assert_eq!(delivery.from_type, DeviceType::Mobile);
    assert_eq!((delivery.priority, delivery.attempt), (3, 1));
    let ttl_default = relay.limits().ttl_default_ms;
    assert!((1..=ttl_default).contains(&delivery.ttl_remaining_ms), "{}", delivery.ttl_remaining_ms);
    assert!(delivery.ttl_remaining_ms > ttl_default - 5000);
    assert!((before..=now_ms()).contains(&delivery.sent_at_ms));
    assert_eq!(delivery.payload.as_ref().map(|p| p.get()), Some(payload), "payload relayed byte for byte");
    assert!(delivery.e2e.is_none());

    d.ack(seq).await;
    let receipt = m.next_receipt().await;
    assert_eq!(receipt.state, ReceiptState::Acked);
    assert!(receipt.definite);
    assert_eq!((receipt.id.as_str(), receipt.recipient.as_str()), (id.as_str(), desktop.device_id.as_str()));
    assert_eq!(receipt.recipient_seq, seq);
    assert_eq!(receipt.reason, None);
    assert!(receipt.at_ms >= delivery.sent_at_ms);
    let receipt_seq = receipt.seq.expect("a terminal receipt has its own seq");
    assert!(receipt_seq >= 1);
    m.ack(receipt_seq).await;
    // Nothing else: no error for the receipt ack, no redelivery of either entry.
    m.expect_idle().await;
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-15 (inbox delivered after the presence snapshot, SES-8), DLV-17 (priority, then
/// ascending seq), DLV-8 (seqs increase).
#[tokio::test]
async fn offline_inbox_drains_by_priority_then_fifo() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let priorities = [0u8, 5, 0, 9, 5];
    let mut seqs = Vec::new();
    for (i, p) in priorities.iter().enumerate() {
        let mut s = send(&format!("p{i}"), to_desktop(), &format!("{{\"i\":{i}}}"));
        s.priority = Some(*p);
        m.send_frame(&ClientFrame::NewTask(s)).await;
        let accepted = m.next_accepted().await;
        assert_eq!(accepted.id, format!("p{i}"));
        seqs.push(accepted.recipients[0].seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs increase: {seqs:?}");

    let mut d = relay.connect(token(&desktop)).await;
    // SES-8: the presence snapshot comes first, before any delivery.
    let status = d.next_presence().await;
    assert_eq!(status.device_id, mobile.device_id);
    let mut order = Vec::new();
    for _ in 0..priorities.len() {
        let (_, delivery) = match d.next().await.into_delivery() {
            Ok(x) => x,
            Err(other) => panic!("expected a delivery, got {other:?}"),
        };
        assert_eq!(delivery.attempt, 1);
        order.push((delivery.id, delivery.priority, delivery.seq));
    }
    let ids: Vec<&str> = order.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, ["p3", "p1", "p4", "p0", "p2"]);
    let got: Vec<(u8, u64)> = order.iter().map(|(_, p, s)| (*p, *s)).collect();
    let expected = vec![(9, seqs[3]), (5, seqs[1]), (5, seqs[4]), (0, seqs[0]), (0, seqs[2])];
    assert_eq!(got, expected);
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-15 (entries in flight on an ended connection are redelivered on the next one),
/// DLV-18 (attempt + 1, same seq), RCPT-6 (the delivered notice is for the first delivery only).
#[tokio::test]
async fn unacked_delivery_is_redelivered_after_reconnect_with_the_next_attempt() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    m.send_frame(&new_task("r1", r#"{"x": [1, 2]}"#)).await;
    let seq = m.next_accepted().await.recipients[0].seq;
    assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    let (_, first) = d.next_delivery().await;
    assert_eq!((first.seq, first.attempt), (seq, 1));
    d.close().await;

    let mut d = relay.connect(token(&desktop)).await;
    let (kind, again) = d.next_delivery().await;
    assert_eq!(kind, DurableKind::NewTask);
    assert_eq!((again.id.as_str(), again.seq, again.attempt), ("r1", seq, 2));
    assert_eq!(again.payload.as_ref().map(|p| p.get()), Some(r#"{"x": [1, 2]}"#));
    assert_eq!(again.sent_at_ms, first.sent_at_ms);
    d.expect_idle().await;
    // No second `delivered` notice for the redelivery.
    m.expect_idle().await;
    relay.stop().await;
}

/// DLV-26 (dead-lettered when the next delivery would exceed max_attempts), RCPT-3
/// (undeliverable is not definite), RCPT-2.
#[tokio::test]
async fn exhausted_attempts_dead_letter_the_entry_as_undeliverable() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut s = send("cap", to_desktop(), "1");
    s.max_attempts = Some(2);
    m.send_frame(&ClientFrame::NewTask(s)).await;
    let seq = m.next_accepted().await.recipients[0].seq;
    for attempt in 1..=2 {
        let mut d = relay.connect(token(&desktop)).await;
        let (_, delivery) = d.next_delivery().await;
        assert_eq!((delivery.seq, delivery.attempt), (seq, attempt));
        d.close().await;
    }
    assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    // The third connection would be attempt 3 > max_attempts: nothing is delivered.
    let mut d = relay.connect(token(&desktop)).await;
    d.expect_idle().await;
    let receipt = m.next_receipt().await;
    assert_eq!(receipt.state, ReceiptState::Undeliverable);
    assert!(!receipt.definite);
    assert_eq!(
        (receipt.id.as_str(), receipt.recipient.as_str(), receipt.recipient_seq),
        ("cap", desktop.device_id.as_str(), seq)
    );
    m.ack(receipt.seq.expect("terminal receipt seq")).await;
    m.expect_idle().await;
    d.close().await;
    // Dead-lettered for good: a fourth connection gets nothing either.
    let mut d = relay.connect(token(&desktop)).await;
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-28 (expired entries are removed with an `expired` receipt, definite when never
/// delivered, RCPT-3), DLV-27 (never delivered after expiry).
#[tokio::test]
async fn expired_entry_gets_an_expired_receipt_and_is_never_delivered() {
    let relay = Relay::start(|c| c.limits.ttl_min_ms = 100).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let ttl_ms = 150;
    let mut s = send("short", to_desktop(), r#""soon gone""#);
    s.ttl_ms = Some(ttl_ms);
    let sent = now_ms();
    m.send_frame(&ClientFrame::NewTask(s)).await;
    let seq = m.next_accepted().await.recipients[0].seq;
    // Expected within about 1000 ms after the expiry (PROTOCOL.md 9.10).
    let receipt = match m.recv_within(Duration::from_millis(ttl_ms + 1500)).await {
        Some(Incoming::Text(t)) => match decode(&t) {
            ServerFrame::Receipt(r) => r,
            other => panic!("expected the expired receipt, got {other:?}"),
        },
        other => panic!("expected the expired receipt, got {other:?}"),
    };
    assert_eq!(receipt.state, ReceiptState::Expired);
    assert!(receipt.definite, "never delivered: the outcome is certain");
    assert_eq!((receipt.recipient.as_str(), receipt.recipient_seq), (desktop.device_id.as_str(), seq));
    assert!(receipt.at_ms + 20 >= sent + ttl_ms, "expired no earlier than ttl_ms after acceptance");
    m.ack(receipt.seq.expect("terminal receipt seq")).await;
    m.expect_idle().await;

    let mut d = relay.connect(token(&desktop)).await;
    d.expect_idle().await;

    // An entry in flight expires too; the outcome is then uncertain, and the late ack is a
    // silent no-op (DLV-20).
    let mut s = send("in-flight", to_desktop(), "0");
    s.ttl_ms = Some(ttl_ms);
    m.send_frame(&ClientFrame::NewTask(s)).await;
    let seq = m.next_accepted().await.recipients[0].seq;
    assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    let (_, delivery) = d.next_delivery().await;
    assert!(delivery.ttl_remaining_ms <= ttl_ms && delivery.ttl_remaining_ms >= 1);
    let expired = m.next_receipt().await;
    assert_eq!((expired.state, expired.definite, expired.recipient_seq), (ReceiptState::Expired, false, seq));
    d.ack(seq).await;
    d.expect_idle().await;
    m.ack(expired.seq.expect("terminal receipt seq")).await;
    m.expect_idle().await;
    relay.stop().await;
}

/// E2E-4 (an `e2e` body is delivered with identical members), section 2.3 (a `null` payload
/// is a present body), DLV-2 (priority 0 by default).
#[tokio::test]
async fn e2e_and_null_bodies_are_relayed_unchanged() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;
    let text = format!(
        r#"{{"type":"user_message","id":"e2e-1","to":{{"device":"{}"}},"e2e":{{ "ciphertext" : "_DkF0vRy-TW82uAPMYQApA==", "nonce":"O34cWp0vTmuKDB0-X3qbLE1u", "kid":"{}", "alg":"x25519-xchacha20poly1305" }}}}"#,
        desktop.device_id, desktop.device_id
    );
    m.send_text(&text).await;
    m.next_accepted().await;
    let (kind, delivery) = d.next_delivery().await;
    assert_eq!(kind, DurableKind::UserMessage);
    assert!(delivery.payload.is_none());
    let e2e = delivery.e2e.expect("e2e body");
    assert_eq!(e2e.alg, "x25519-xchacha20poly1305");
    assert_eq!(e2e.kid, desktop.device_id);
    assert_eq!(e2e.nonce, "O34cWp0vTmuKDB0-X3qbLE1u");
    assert_eq!(e2e.ciphertext, "_DkF0vRy-TW82uAPMYQApA==");
    assert_eq!(delivery.priority, 0);
    d.ack(delivery.seq).await;

    m.send_text(r#"{"type":"file_delete","id":"null-1","to":{"role":"desktop"},"payload":null}"#).await;
    let (kind, delivery) = d.next_delivery().await;
    assert_eq!(kind, DurableKind::FileDelete);
    assert_eq!(delivery.payload.as_ref().map(|p| p.get()), Some("null"));
    relay.stop().await;
}

/// DLV-9 (same key and content: `accepted` duplicate with the original seqs, nothing enqueued),
/// DLV-10 (different content: `idempotency_conflict`), DLV-11 (refused sends leave no key).
#[tokio::test]
async fn resend_with_same_id_is_a_duplicate_and_changed_content_conflicts() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;

    let first = new_task("idem-1", r#"{"v":1}"#);
    m.send_frame(&first).await;
    let original = m.next_accepted().await;
    assert!(!original.duplicate);
    assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    let (_, delivery) = d.next_delivery().await;
    assert_eq!(delivery.seq, original.recipients[0].seq);

    m.send_frame(&first).await;
    let again = m.next_accepted().await;
    assert!(again.duplicate);
    assert_eq!((again.id.as_str(), &again.recipients), ("idem-1", &original.recipients));
    // Nothing was enqueued: the recipient has nothing new.
    d.expect_idle().await;

    m.send_frame(&new_task("idem-1", r#"{"v":2}"#)).await;
    let conflict = expect_error_code(m.next_skipping_presence().await, "idempotency_conflict");
    assert_eq!((conflict.ref_id.as_deref(), conflict.fatal), (Some("idem-1"), false));
    // A different priority is different content too.
    let mut changed = send("idem-1", to_desktop(), r#"{"v":1}"#);
    changed.priority = Some(1);
    m.send_frame(&ClientFrame::NewTask(changed)).await;
    expect_error_code(m.next_skipping_presence().await, "idempotency_conflict");
    d.expect_idle().await;

    // A refused send is not remembered: the same id is processed afresh later.
    let unknown = ClientFrame::NewTask(send("idem-2", Target::Device("dev_nobody".into()), "1"));
    m.send_frame(&unknown).await;
    expect_error_code(m.next_skipping_presence().await, "unknown_recipient");
    m.send_frame(&new_task("idem-2", "2")).await;
    let fresh = m.next_accepted().await;
    assert!(!fresh.duplicate);
    let (_, delivery) = d.next_delivery().await;
    assert_eq!((delivery.id.as_str(), delivery.seq), ("idem-2", fresh.recipients[0].seq));
    relay.stop().await;
}

/// DLV-22 (nack: redelivered on the same connection with attempt + 1, after delay_ms),
/// DLV-23 (reject: removed, `rejected` receipt with the exact reason, definite).
#[tokio::test]
async fn nack_redelivers_on_the_same_connection_and_reject_reaches_the_sender() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut seqs = Vec::new();
    for id in ["nk-a", "nk-b"] {
        m.send_frame(&new_task(id, "{}")).await;
        seqs.push(m.next_accepted().await.recipients[0].seq);
        assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    }
    let (a, b) = (seqs[0], seqs[1]);
    assert_eq!(d.next_delivery().await.1.seq, a);
    assert_eq!(d.next_delivery().await.1.seq, b);

    // nack without delay: at once, same seq, next attempt.
    d.send_frame(&ClientFrame::Nack(Nack { seq: a, delay_ms: None })).await;
    let (_, again) = d.next_delivery().await;
    assert_eq!((again.id.as_str(), again.seq, again.attempt), ("nk-a", a, 2));

    // nack with a delay: not before it has passed.
    let delay = 300;
    let nacked = Instant::now();
    d.send_frame(&ClientFrame::Nack(Nack { seq: a, delay_ms: Some(delay) })).await;
    d.expect_idle().await;
    let (_, third) = d.next_delivery().await;
    assert!(nacked.elapsed() >= Duration::from_millis(delay), "redelivered after {:?}", nacked.elapsed());
    assert_eq!((third.seq, third.attempt), (a, 3));

    let reason = "workspace not found: \"web\" ✗";
    d.send_frame(&ClientFrame::Reject(Reject { seq: b, reason: Some(reason.into()) })).await;
    let rejected = m.next_receipt().await;
    assert_eq!(
        (rejected.id.as_str(), rejected.state, rejected.definite),
        ("nk-b", ReceiptState::Rejected, true)
    );
    assert_eq!((rejected.recipient_seq, rejected.reason.as_deref()), (b, Some(reason)));
    d.ack(a).await;
    let acked = m.next_receipt().await;
    assert_eq!((acked.id.as_str(), acked.state, acked.recipient_seq), ("nk-a", ReceiptState::Acked, a));
    // A rejected entry is gone: acking it now is a silent no-op (DLV-20).
    d.ack(b).await;
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-21 (seq 0, above the highest assigned, or never delivered: `unknown_seq` with
/// `ref_seq`), DLV-20 (a terminal entry: no effect, no error).
#[tokio::test]
async fn ack_of_unassigned_seq_is_unknown_seq_and_a_repeated_ack_is_silent() {
    let relay = Relay::start(|c| c.limits.max_in_flight = 1).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    let mut m = relay.connect(token(&mobile)).await;
    m.send_frame(&new_task("u-1", "1")).await;
    let first = m.next_accepted().await.recipients[0].seq;
    assert_eq!(m.next_receipt().await.state, ReceiptState::Delivered);
    m.send_frame(&new_task("u-2", "2")).await;
    let second = m.next_accepted().await.recipients[0].seq;
    assert_eq!(d.next_delivery().await.1.seq, first);
    d.expect_idle().await; // the window of 1 holds the second back

    for (frame, seq) in [
        (ClientFrame::Ack(relaykit_protocol::client::Ack { seq: second + 1000 }), second + 1000),
        (ClientFrame::Ack(relaykit_protocol::client::Ack { seq: 0 }), 0),
        (ClientFrame::Reject(Reject { seq: 0, reason: None }), 0),
        (ClientFrame::Nack(Nack { seq: second + 1, delay_ms: None }), second + 1),
        // Non-terminal but never delivered to the device.
        (ClientFrame::Ack(relaykit_protocol::client::Ack { seq: second }), second),
    ] {
        d.send_frame(&frame).await;
        let e = expect_error_code(d.next_skipping_presence().await, "unknown_seq");
        assert_eq!((e.ref_seq, e.fatal), (Some(seq), false), "{frame:?}");
    }
    d.ack(first).await;
    let (_, next) = d.next_delivery().await;
    assert_eq!(next.seq, second);
    // The acked entry is terminal: acking it again has no effect and no error.
    d.ack(first).await;
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-12 (`queue_full` when an inbox would exceed inbox_max_entries), DLV-5 (nothing enqueued
/// for the refused send), DLV-13 (accepted entries are never evicted).
#[tokio::test]
async fn full_inbox_refuses_with_queue_full_and_keeps_its_entries() {
    let relay = Relay::start(|c| c.limits.inbox_max_entries = 2).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut seqs = Vec::new();
    for id in ["q-1", "q-2"] {
        m.send_frame(&new_task(id, r#""kept""#)).await;
        seqs.push(m.next_accepted().await.recipients[0].seq);
    }
    m.send_frame(&new_task("q-3", r#""refused""#)).await;
    let e = expect_error_code(m.next_skipping_presence().await, "queue_full");
    assert_eq!((e.ref_id.as_deref(), e.fatal), (Some("q-3"), false));

    let mut d = relay.connect(token(&desktop)).await;
    for (id, seq) in ["q-1", "q-2"].iter().zip(&seqs) {
        let (_, delivery) = d.next_delivery().await;
        assert_eq!((delivery.id.as_str(), delivery.seq), (*id, *seq));
    }
    d.expect_idle().await;
    relay.stop().await;
}

/// ISO-1 (another user's device and an unknown device get the same error frame, differing only
/// in ref_id), TGT-2, ISO-2 (the message names neither).
#[tokio::test]
async fn another_users_device_looks_exactly_like_an_unknown_one() {
    let relay = Relay::start(|_| {}).await;
    let (_, mobile) = relay.desktop_and_mobile().await;
    let stranger = relay.register(DeviceType::Desktop).await;
    assert_ne!(stranger.user_id, mobile.user_id);
    let mut m = relay.connect(token(&mobile)).await;

    m.send_frame(&ClientFrame::NewTask(send("iso-1", Target::Device(stranger.device_id.clone()), "1"))).await;
    let foreign = expect_error_code(m.next_skipping_presence().await, "unknown_recipient");
    m.send_frame(&ClientFrame::NewTask(send("iso-2", Target::Device("dev_does_not_exist".into()), "1")))
        .await;
    let unknown = expect_error_code(m.next_skipping_presence().await, "unknown_recipient");
    assert_eq!(foreign.ref_id.as_deref(), Some("iso-1"));
    assert_eq!(unknown.ref_id.as_deref(), Some("iso-2"));
    let strip = |mut e: relaykit_protocol::server::ErrorFrame| {
        e.ref_id = None;
        e
    };
    assert_eq!(strip(foreign.clone()), strip(unknown));
    assert!(!foreign.message.contains(&stranger.device_id) && !foreign.message.contains(&stranger.user_id));
    // The same holds for live publishes (LIVE-14).
    let to = Target::Device(stranger.device_id.clone());
    m.send_frame(&publish(relaykit_protocol::LiveKind::ToolProgress, "s1", to, "1")).await;
    let live = expect_error_code(m.next_skipping_presence().await, "unknown_recipient");
    assert_eq!(live.message, foreign.message);
    relay.stop().await;
}

/// TGT-4 (a role matching no device: `no_recipient`), TGT-3 (a role excludes the sender),
/// TGT-2 (a device target may name the sender itself).
#[tokio::test]
async fn role_without_devices_is_no_recipient_but_self_is_a_valid_device_target() {
    let relay = Relay::start(|_| {}).await;
    let lonely = relay.register(DeviceType::Desktop).await;
    let mut d = relay.connect(token(&lonely)).await;
    for (id, role) in [("nr-1", DeviceType::Desktop), ("nr-2", DeviceType::Mobile)] {
        d.send_frame(&ClientFrame::NewTask(send(id, Target::Role(role), "1"))).await;
        let e = expect_error_code(d.next().await, "no_recipient");
        assert_eq!(e.ref_id.as_deref(), Some(id));
    }
    d.send_frame(&ClientFrame::UserMessage(send("self-1", Target::Device(lonely.device_id.clone()), "[]")))
        .await;
    let accepted = d.next_accepted().await;
    assert_eq!(accepted.recipients[0].device_id, lonely.device_id);
    let (kind, delivery) = match d.next().await.into_delivery() {
        Ok(x) => x,
        Err(other) => panic!("expected the delivery to itself, got {other:?}"),
    };
    assert_eq!((kind, delivery.from.as_str()), (DurableKind::UserMessage, lonely.device_id.as_str()));
    assert_eq!(d.next_receipt().await.state, ReceiptState::Delivered);
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-16 (at most max_in_flight entries in flight), DLV-15 (a freed slot is filled at once).
#[tokio::test]
async fn in_flight_window_is_bounded_by_max_in_flight() {
    let relay = Relay::start(|c| c.limits.max_in_flight = 2).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    for id in ["w-1", "w-2", "w-3"] {
        m.send_frame(&new_task(id, "0")).await;
        m.next_accepted().await;
    }
    let mut d = relay.connect(token(&desktop)).await;
    let (_, one) = d.next_delivery().await;
    let (_, two) = d.next_delivery().await;
    assert_eq!((one.id.as_str(), two.id.as_str()), ("w-1", "w-2"));
    d.expect_idle().await;
    d.ack(two.seq).await;
    let (_, three) = d.next_delivery().await;
    assert_eq!(three.id, "w-3");
    d.expect_idle().await;
    relay.stop().await;
}

/// DLV-25 (an entry in flight for ack_wait_ms closes the connection with 4001), CLS-2.
#[tokio::test]
async fn unacked_delivery_closes_with_4001_after_ack_wait() {
    let relay = Relay::start(|c| c.limits.ack_wait_ms = 500).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    // Taken before the send: the entry goes in flight after this instant.
    let sent = Instant::now();
    m.send_frame(&new_task("slow", "0")).await;
    m.next_accepted().await;
    d.next_delivery().await;
    let closed = d.expect_close_within(Duration::from_millis(500 + 1500)).await;
    assert_eq!((closed.code, closed.reason.as_str()), (4001, "ack_timeout"));
    assert!(sent.elapsed() >= Duration::from_millis(500), "closed after {:?}", sent.elapsed());
    // The entry survives the connection: redelivered on the next one.
    let mut d = relay.connect(token(&desktop)).await;
    let (_, again) = d.next_delivery().await;
    assert_eq!((again.id.as_str(), again.attempt), ("slow", 2));
    relay.stop().await;
}
