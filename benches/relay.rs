//! The reference relay's per-message cost and its store's group commit, measured in process.
//!
//! - `routing/round_trip/{memory,sqlite}`: one durable message through the relay's state:
//!   `send` (decode already done) -> persist -> delivery written to the desktop's session
//!   queue -> `ack` -> durable `acked` receipt to the phone -> receipt acked. Sequential, so the
//!   sqlite figure is dominated by one fsync'd commit per step.
//! - `store/group_commit/{batch_1,batch_256}`: 64 concurrent submitters of one-entry batches
//!   against SQLite with `synchronous=FULL`; the writer may group up to N batches per commit.
//!   Measured side by side in one run.
//!
//! Run: `cargo bench --bench relay`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use relaykit_protocol::client::{Hello, Send};
use relaykit_protocol::rest::PublicKey;
use relaykit_protocol::{DeviceType, DurableKind, RawJson, ServerFrame, Target, decode_server};
use relaykit_server::Config;
use relaykit_server::state::{Outbound, RegistrationInput, Relay, Settle};
use relaykit_server::store::sqlite::SqliteStore;
use relaykit_server::store::{Mutation, Store, Table, entry_key};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("relaykit-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

struct Pair {
    relay: Arc<Relay>,
    phone: relaykit_server::state::Attached,
    desktop: relaykit_server::state::Attached,
}

async fn pair(config: &Config) -> Pair {
    let relay = relaykit_server::build(config).expect("relay");
    let mut attached = Vec::new();
    let mut code = None;
    // The desktop registers first and shows a pairing code; the phone joins its user with it.
    for device_type in [DeviceType::Desktop, DeviceType::Mobile] {
        let reg = relay
            .register(RegistrationInput {
                device_name: "bench".into(),
                device_type,
                platform: "linux".into(),
                capabilities: Default::default(),
                public_key: PublicKey { alg: "x25519".into(), key: "A".repeat(43) },
                pairing_code: code.take(),
            })
            .await
            .expect("register");
        let claims = relay.authenticate(&reg.tokens.access_token).expect("token");
        code = Some(relay.create_pairing_code(&claims).await.expect("pairing code").code);
        let hello =
            Hello { protocol: "relay.v1".into(), token: reg.tokens.access_token, resume: None, client: None };
        attached.push(relay.attach(&claims, &hello, claims.exp * 1000).expect("attach"));
    }
    let phone = attached.pop().unwrap();
    let desktop = attached.pop().unwrap();
    Pair { relay, phone, desktop }
}

/// Receives frames until one satisfies `pick`.
async fn until(
    att: &mut relaykit_server::state::Attached,
    mut pick: impl FnMut(&ServerFrame) -> Option<u64>,
) -> u64 {
    loop {
        let Some(Outbound::Frame(text)) = att.frames.recv().await else { panic!("session queue closed") };
        let frame = decode_server(&text, &Default::default()).expect("valid frame");
        if let Some(v) = pick(&frame) {
            return v;
        }
    }
}

/// Message ids unique across criterion's repeated calls (the relay dedupes by id).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn round_trips(p: &mut Pair, n: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let send = Send {
            id: format!("m-{}", NEXT_ID.load(std::sync::atomic::Ordering::Relaxed)),
            to: Target::Role(DeviceType::Desktop),
            priority: None,
            ttl_ms: None,
            max_attempts: None,
            payload: Some(RawJson::from_text(r#"{"task":"Create a React component"}"#).unwrap()),
            e2e: None,
        };
        p.relay.send(&p.phone.ctx, DurableKind::NewTask, send).await.expect("accepted");
        let seq = until(&mut p.desktop, |f| f.as_delivery().map(|(_, d)| d.seq)).await;
        p.relay.settle_delivery(&p.desktop.ctx, seq, Settle::Ack).expect("ack");
        let receipt = until(&mut p.phone, |f| match f {
            ServerFrame::Receipt(r) => r.seq,
            _ => None,
        })
        .await;
        p.relay.settle_delivery(&p.phone.ctx, receipt, Settle::Ack).expect("receipt ack");
    }
    start.elapsed()
}

fn routing(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(1));
    let memory = Config { ephemeral: true, ..Config::default() };
    let mut p = rt.block_on(pair(&memory));
    group.bench_function("round_trip/memory", |b| b.iter_custom(|n| rt.block_on(round_trips(&mut p, n))));
    let dir = temp_dir("routing");
    let sqlite = Config { data_dir: Some(dir.clone()), ..Config::default() };
    let mut p = rt.block_on(pair(&sqlite));
    group.sample_size(20);
    group.bench_function("round_trip/sqlite", |b| b.iter_custom(|n| rt.block_on(round_trips(&mut p, n))));
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

fn group_commit(c: &mut Criterion) {
    const SUBMITTERS: u64 = 64;
    let rt = runtime();
    let mut group = c.benchmark_group("store");
    group.sample_size(10);
    group.throughput(Throughput::Elements(SUBMITTERS));
    for max_batch in [1usize, 256] {
        let dir = temp_dir(&format!("store-{max_batch}"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir, max_batch, None).expect("store"));
        let value = format!("{{\"payload\":\"{}\"}}", "x".repeat(256));
        let mut key = 0u64;
        group.bench_function(format!("group_commit/batch_{max_batch}"), |b| {
            b.iter_custom(|rounds| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..rounds {
                        let commits: Vec<_> = (0..SUBMITTERS)
                            .map(|_| {
                                key += 1;
                                let m = Mutation::Put {
                                    table: Table::Entries,
                                    key: entry_key("bench", key),
                                    value: value.clone(),
                                };
                                store.submit(vec![m])
                            })
                            .collect();
                        for commit in commits {
                            commit.await.expect("resolved").expect("committed");
                        }
                    }
                    start.elapsed()
                })
            })
        });
        let _ = std::fs::remove_dir_all(dir);
    }
    group.finish();
}

criterion_group!(benches, routing, group_commit);
criterion_main!(benches);
