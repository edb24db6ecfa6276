//! Cost of the protocol codec on the relay's per-message path: decoding a client `new_task`
//! (peek + typed parse + field checks) and encoding the matching delivery, for a small JSON
//! payload, a 4 KiB payload and an E2E envelope. Run: `cargo bench --bench codec`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relaykit_protocol::server::Delivery;
use relaykit_protocol::{DecodeLimits, DeviceType, ServerFrame, decode_client, encode};

fn frames() -> Vec<(&'static str, String)> {
    let small = r#"{"type":"new_task","id":"0190b3c2-7d7e-7a1b-9f00-1c2d3e4f5a6b","to":{"role":"desktop"},"priority":5,"ttl_ms":60000,"payload":{"task":"Create a React component","mode":"code"}}"#.to_string();
    let text = "a".repeat(4096);
    let large = format!(
        r#"{{"type":"user_message","id":"0190b3c2-7d7e-7a1b-9f00-1c2d3e4f5a6c","to":{{"device":"dev_desktop_1"}},"payload":{{"text":"{text}"}}}}"#
    );
    let e2e = format!(
        r#"{{"type":"new_task","id":"0190b3c2-7d7e-7a1b-9f00-1c2d3e4f5a6d","to":{{"role":"desktop"}},"e2e":{{"alg":"x25519-xchacha20poly1305","kid":"k1","nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYX","ciphertext":"{}"}}}}"#,
        "Q".repeat(1024)
    );
    vec![("new_task_small", small), ("user_message_4k", large), ("new_task_e2e_1k", e2e)]
}

fn codec(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("codec");
    for (name, text) in frames() {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("decode_client/{name}"), |b| {
            b.iter(|| decode_client(black_box(&text), &limits).expect("valid frame"))
        });
        let (kind, send) = decode_client(&text, &limits).unwrap().into_send().unwrap();
        let delivery = ServerFrame::delivery(
            kind,
            Delivery {
                id: send.id,
                seq: 42,
                from: "dev_mobile_1".into(),
                from_type: DeviceType::Mobile,
                priority: send.priority.unwrap_or(0),
                attempt: 1,
                ttl_remaining_ms: 59_000,
                sent_at_ms: 1_764_000_000_000,
                payload: send.payload,
                e2e: send.e2e,
            },
        );
        group.bench_function(format!("encode_delivery/{name}"), |b| b.iter(|| encode(black_box(&delivery))));
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
