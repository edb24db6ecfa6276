//! Types -> schemas: every frame the Rust types can express (generated with proptest, within the
//! protocol's rules) encodes to JSON its schema accepts, and decodes back to the same value.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use relaykit_protocol::client::*;
use relaykit_protocol::schema::{CLIENT_FRAME, SERVER_FRAME};
use relaykit_protocol::server::*;
use relaykit_protocol::*;
use serde_json::Value;

use crate::util::assert_schema_valid;

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,64}"
}

fn uint() -> impl Strategy<Value = u64> {
    prop_oneof![0..1000u64, 0..=MAX_SAFE_INTEGER]
}

fn positive() -> impl Strategy<Value = u64> {
    prop_oneof![1..1000u64, 1..=MAX_SAFE_INTEGER]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~\u{e9}\u{4e2d}]{{0,{max}}}")).unwrap()
}

fn device_type() -> impl Strategy<Value = DeviceType> {
    prop_oneof![Just(DeviceType::Mobile), Just(DeviceType::Desktop)]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![id().prop_map(Target::Device), device_type().prop_map(Target::Role)]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        text(20).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(text(8), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn b64() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{0,80}={0,2}"
}

fn e2e() -> impl Strategy<Value = E2eEnvelope> {
    ("[a-z0-9-]{1,40}", "[A-Za-z0-9._:-]{1,128}", b64(), b64())
        .prop_map(|(alg, kid, nonce, ciphertext)| E2eEnvelope { alg, kid, nonce, ciphertext })
}

/// Exactly one of payload / e2e.
fn body() -> impl Strategy<Value = (Option<RawJson>, Option<E2eEnvelope>)> {
    prop_oneof![
        json().prop_map(|v| (Some(RawJson::from_value(&v).unwrap()), None)),
        e2e().prop_map(|e| (None, Some(e))),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    vec(uint(), 19).prop_map(|v| Limits {
        max_frame_bytes: v[0],
        max_payload_bytes: v[1],
        max_json_depth: v[2],
        max_in_flight: v[3],
        ack_wait_ms: v[4],
        heartbeat_ms: v[5],
        auth_timeout_ms: v[6],
        rate_limit_per_sec: v[7],
        rate_limit_burst: v[8],
        ttl_min_ms: v[9],
        ttl_max_ms: v[10],
        ttl_default_ms: v[11],
        max_attempts_default: v[12],
        max_attempts_max: v[13],
        inbox_max_entries: v[14],
        inbox_max_bytes: v[15],
        replay_window_events: v[16],
        replay_window_ms: v[17],
        session_expiry_ms: v[18],
    })
}

fn durable_kind() -> impl Strategy<Value = DurableKind> {
    proptest::sample::select(DurableKind::ALL)
}

fn live_kind() -> impl Strategy<Value = LiveKind> {
    proptest::sample::select(LiveKind::ALL)
}

fn hello() -> impl Strategy<Value = Hello> {
    let resume = (id(), option::of(id()), option::of(id()), vec((id(), uint()), 0..4)).prop_map(
        |(session_id, inbox_epoch, stream_epoch, streams)| Resume {
            session_id,
            inbox_epoch,
            stream_epoch,
            streams: streams
                .into_iter()
                .map(|(stream, last_pseq)| StreamPosition { stream, last_pseq })
                .collect(),
        },
    );
    let client = ("[ -~]{1,40}", "[ -~]{1,20}").prop_map(|(name, version)| ClientInfo { name, version });
    ("relay\\.v[0-9]", "[A-Za-z0-9._-]{1,300}", option::of(resume), option::of(client))
        .prop_map(|(protocol, token, resume, client)| Hello { protocol, token, resume, client })
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    let send = (
        durable_kind(),
        id(),
        target(),
        option::of(0u8..=9),
        option::of(uint()),
        option::of(positive()),
        body(),
    )
        .prop_map(|(kind, id, to, priority, ttl_ms, max_attempts, (payload, e2e))| {
            ClientFrame::send(kind, Send { id, to, priority, ttl_ms, max_attempts, payload, e2e })
        });
    let publish = (live_kind(), option::of(id()), id(), target(), body()).prop_map(
        |(kind, id, stream, to, (payload, e2e))| {
            ClientFrame::publish(kind, Publish { id, stream, to, payload, e2e })
        },
    );
    prop_oneof![
        hello().prop_map(ClientFrame::Hello),
        "[A-Za-z0-9._-]{1,300}".prop_map(|token| ClientFrame::Reauth(Reauth { token })),
        uint().prop_map(|nonce| ClientFrame::Ping(Heartbeat { nonce })),
        uint().prop_map(|nonce| ClientFrame::Pong(Heartbeat { nonce })),
        uint().prop_map(|seq| ClientFrame::Ack(Ack { seq })),
        (uint(), option::of(uint())).prop_map(|(seq, delay_ms)| ClientFrame::Nack(Nack { seq, delay_ms })),
        (uint(), option::of(text(100))).prop_map(|(seq, reason)| ClientFrame::Reject(Reject { seq, reason })),
        option::of(text(100)).prop_map(|reason| ClientFrame::DeviceDisconnect(DeviceDisconnect { reason })),
        send,
        publish,
    ]
}

fn receipt() -> impl Strategy<Value = Receipt> {
    let state = proptest::sample::select(ReceiptState::ALL);
    (id(), id(), positive(), state, any::<bool>(), uint(), option::of(text(60)), positive()).prop_map(
        |(id, recipient, recipient_seq, state, definite, at_ms, reason, seq)| {
            // The protocol fixes `definite` for some states and `seq` for all terminal ones.
            let definite = match state {
                ReceiptState::Acked | ReceiptState::Rejected => true,
                ReceiptState::Undeliverable => false,
                _ => definite,
            };
            let seq = state.is_terminal().then_some(seq);
            Receipt { id, recipient, recipient_seq, state, definite, at_ms, reason, seq }
        },
    )
}

fn error_frame() -> impl Strategy<Value = ErrorFrame> {
    let code = proptest::sample::select(ErrorCode::ALL);
    (code, text(80), option::of(id()), option::of(uint()), option::of("[a-z_.0-9]{1,30}"), uint()).prop_map(
        |(code, message, ref_id, ref_seq, field, retry)| {
            let field = match code {
                ErrorCode::InvalidField => Some(field.unwrap_or_else(|| "to.device".into())),
                _ => field,
            };
            let needs_retry = matches!(code, ErrorCode::RateLimited | ErrorCode::ServerRestarting);
            ErrorFrame {
                code,
                message,
                fatal: code.is_fatal(),
                ref_id,
                ref_seq,
                field,
                retry_after_ms: needs_retry.then_some(retry),
            }
        },
    )
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    let welcome = (id(), any::<bool>(), id(), id(), device_type(), id(), id(), uint(), uint(), limits())
        .prop_map(
            |(
                session_id,
                resumed,
                user_id,
                device_id,
                device_type,
                inbox_epoch,
                stream_epoch,
                now,
                exp,
                limits,
            )| {
                ServerFrame::Welcome(Welcome {
                    session_id,
                    resumed,
                    user_id,
                    device_id,
                    device_type,
                    inbox_epoch,
                    stream_epoch,
                    server_time_ms: now,
                    token_expires_at_ms: exp,
                    limits,
                })
            },
        );
    let accepted = (id(), any::<bool>(), vec((id(), positive()), 1..4)).prop_map(|(id, duplicate, r)| {
        let recipients = r.into_iter().map(|(device_id, seq)| Recipient { device_id, seq }).collect();
        ServerFrame::Accepted(Accepted { id, duplicate, recipients })
    });
    let delivery =
        (durable_kind(), id(), uint(), id(), device_type(), 0u8..=9, positive(), positive(), uint(), body())
            .prop_map(|(kind, id, seq, from, from_type, priority, attempt, ttl, sent, (payload, e2e))| {
                ServerFrame::delivery(
                    kind,
                    Delivery {
                        id,
                        seq,
                        from,
                        from_type,
                        priority,
                        attempt,
                        ttl_remaining_ms: ttl,
                        sent_at_ms: sent,
                        payload,
                        e2e,
                    },
                )
            });
    let event =
        (live_kind(), option::of(id()), id(), positive(), id(), device_type(), uint(), any::<bool>(), body())
            .prop_map(|(kind, id, stream, pseq, from, from_type, sent, replayed, (payload, e2e))| {
                ServerFrame::event(
                    kind,
                    Event { id, stream, pseq, from, from_type, sent_at_ms: sent, replayed, payload, e2e },
                )
            });
    let status = (id(), device_type(), proptest::sample::select(Presence::ALL), uint()).prop_map(
        |(device_id, device_type, status, at_ms)| {
            ServerFrame::DeviceStatus(DeviceStatus { device_id, device_type, status, at_ms })
        },
    );
    let gap = (id(), 0..1000u64, option::of(1..1000u64), proptest::sample::select(GapReason::ALL)).prop_map(
        |(stream, after_pseq, resume, reason)| {
            // A resume point lies after the last position held.
            let resume_pseq = resume.map(|r| after_pseq + r);
            ServerFrame::Gap(Gap { stream, after_pseq, resume_pseq, reason })
        },
    );
    prop_oneof![
        welcome,
        uint().prop_map(|t| ServerFrame::Reauthed(Reauthed { token_expires_at_ms: t })),
        uint().prop_map(|nonce| ServerFrame::Ping(Heartbeat { nonce })),
        uint().prop_map(|nonce| ServerFrame::Pong(Heartbeat { nonce })),
        accepted,
        receipt().prop_map(ServerFrame::Receipt),
        status,
        gap,
        error_frame().prop_map(ServerFrame::Error),
        delivery,
        event,
    ]
}

/// The per-message schema of a frame, e.g. `ws/client/send` for a `new_task`.
fn client_schema(frame: &ClientFrame) -> String {
    match (frame.as_send(), frame.as_publish()) {
        (Some(_), _) => "ws/client/send".into(),
        (_, Some(_)) => "ws/client/publish".into(),
        _ => format!("ws/client/{}", frame.type_name()),
    }
}

fn server_schema(frame: &ServerFrame) -> String {
    match (frame.as_delivery(), frame.as_event()) {
        (Some(_), _) => "ws/server/delivery".into(),
        (_, Some(_)) => "ws/server/event".into(),
        _ => format!("ws/server/{}", frame.type_name()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_frames_satisfy_their_schema_and_round_trip(frame in client_frame()) {
        let text = encode(&frame);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_schema_valid(&client_schema(&frame), &value, &text);
        assert_schema_valid(CLIENT_FRAME, &value, &text);
        let back = decode_client(&text, &DecodeLimits::UNBOUNDED);
        prop_assert_eq!(back, Ok(frame));
    }

    #[test]
    fn server_frames_satisfy_their_schema_and_round_trip(frame in server_frame()) {
        let text = encode(&frame);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_schema_valid(&server_schema(&frame), &value, &text);
        assert_schema_valid(SERVER_FRAME, &value, &text);
        let back = decode_server(&text, &DecodeLimits::UNBOUNDED);
        prop_assert_eq!(back, Ok(frame));
    }

    /// Bodies are relayed byte-exact: whatever JSON text a client puts in `payload` (spacing,
    /// key order, number spelling) comes out of a decode/encode unchanged.
    #[test]
    fn payload_text_survives_byte_exact(value in json(), pad in "[ \t\n]{0,3}") {
        let payload = serde_json::to_string_pretty(&value).unwrap();
        let frame = format!(r#"{{"type":"new_task","id":"m1","to":{{"role":"desktop"}},"payload":{pad}{payload}{pad}}}"#);
        let decoded = decode_client(&frame, &DecodeLimits::UNBOUNDED).unwrap();
        let (_, send) = decoded.as_send().unwrap();
        prop_assert_eq!(send.payload.as_ref().unwrap().get(), payload.as_str());
        prop_assert!(encode(&decoded).contains(&payload));
    }

    /// The decoder never panics, whatever the text.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = decode_client(&text, &DecodeLimits::default());
        let _ = decode_server(&text, &DecodeLimits::default());
    }
}
