//! Live delivery (PROTOCOL.md section 10): pseq numbering, fan-out to online devices, replay
//! and gaps on resume.

use relaykit_protocol::client::{Resume, StreamPosition};
use relaykit_protocol::server::{Event, GapReason, Presence};
use relaykit_protocol::{ClientFrame, DeviceType, LiveKind, Target};

use crate::util::*;

fn to_mobile() -> Target {
    Target::Role(DeviceType::Mobile)
}

fn progress(stream: &str, percent: u64) -> ClientFrame {
    publish(LiveKind::ToolProgress, stream, to_mobile(), &format!("{{ \"percent\" : {percent} }}"))
}

fn positions(epoch: Option<&str>, session_id: &str, streams: &[(&str, u64)]) -> Resume {
    Resume {
        session_id: session_id.into(),
        inbox_epoch: None,
        stream_epoch: epoch.map(str::to_string),
        streams: streams.iter().map(|(s, p)| StreamPosition { stream: (*s).into(), last_pseq: *p }).collect(),
    }
}

/// Publishes three events on `stream` from `d` and returns them as `m` received them.
async fn three_events(d: &mut Client, m: &mut Client, stream: &str) -> Vec<Event> {
    for i in 1..=3 {
        d.send_frame(&progress(stream, i * 10)).await;
    }
    // A successful publish has no answer.
    d.expect_idle().await;
    let mut events = Vec::new();
    for _ in 0..3 {
        let (kind, event) = m.next_event().await;
        assert_eq!(kind, LiveKind::ToolProgress);
        events.push(event);
    }
    events
}

/// LIVE-2 (pseq 1, 2, 3), LIVE-5 (fields, byte-exact payload), LIVE-9 (replay after last_pseq,
/// replayed true), LIVE-12 (unknown stream: gap), LIVE-13 (replay before live events), SES-8.
#[tokio::test]
async fn live_events_are_numbered_and_replayed_after_last_pseq_on_resume() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    let stream = "task:42";
    let before = now_ms();
    let events = three_events(&mut d, &mut m, stream).await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.pseq, i as u64 + 1);
        assert_eq!((e.stream.as_str(), e.from.as_str()), (stream, desktop.device_id.as_str()));
        assert_eq!(e.from_type, DeviceType::Desktop);
        assert!(!e.replayed);
        assert_eq!(e.id, None, "no id when the publish had none");
        assert!((before..=now_ms()).contains(&e.sent_at_ms));
        let payload = format!("{{ \"percent\" : {} }}", (i + 1) * 10);
        assert_eq!(e.payload.as_ref().map(|p| p.get()), Some(payload.as_str()));
    }
    // An id is echoed when given.
    let mut with_id = progress("task:ids", 1);
    if let ClientFrame::ToolProgress(p) = &mut with_id {
        p.id = Some("ev-1".into());
    }
    d.send_frame(&with_id).await;
    let (_, e) = m.next_event().await;
    assert_eq!((e.id.as_deref(), e.pseq), (Some("ev-1"), 1));

    let epoch = m.welcome().stream_epoch.clone();
    let sid = m.welcome().session_id.clone();
    m.close().await;
    let resume = positions(Some(&epoch), &sid, &[(stream, 1), ("task:never", 0)]);
    let mut m = relay.connect_hello(hello(token(&mobile), Some(resume))).await;
    assert!(m.welcome().resumed);
    assert_eq!(m.welcome().stream_epoch, epoch);
    let snapshot = m.next_presence().await;
    assert_eq!(
        (snapshot.device_id.as_str(), snapshot.status),
        (desktop.device_id.as_str(), Presence::Online)
    );
    for original in &events[1..] {
        let (_, replayed) = match m.next().await.into_event() {
            Ok(x) => x,
            Err(other) => panic!("expected a replayed event, got {other:?}"),
        };
        assert!(replayed.replayed);
        assert_eq!(Event { replayed: false, ..replayed }, *original, "replay repeats the event");
    }
    let gap = m.next_gap().await;
    assert_eq!((gap.stream.as_str(), gap.after_pseq, gap.resume_pseq), ("task:never", 0, None));
    assert_eq!(gap.reason, GapReason::UnknownStream);
    // Published after welcome: live, never replayed.
    d.send_frame(&progress(stream, 40)).await;
    let (_, live) = m.next_event().await;
    assert_eq!((live.pseq, live.replayed), (4, false));
    m.expect_idle().await;
    relay.stop().await;
}

/// LIVE-11 (a resume with another or no stream_epoch: `gap` epoch_changed first, then every
/// retained event addressed to the device).
#[tokio::test]
async fn resume_with_another_stream_epoch_gets_an_epoch_changed_gap_first() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    let stream = "task:7";
    let events = three_events(&mut d, &mut m, stream).await;
    let sid = m.welcome().session_id.clone();
    m.close().await;
    for epoch in [Some("streams_of_another_run"), None] {
        let resume = positions(epoch, &sid, &[(stream, 2)]);
        let mut m = relay.connect_hello(hello(token(&mobile), Some(resume))).await;
        let gap = m.next_gap().await;
        assert_eq!(gap.reason, GapReason::EpochChanged, "epoch {epoch:?}");
        assert_eq!((gap.stream.as_str(), gap.after_pseq, gap.resume_pseq), (stream, 2, Some(1)));
        for original in &events {
            let (_, replayed) = m.next_event().await;
            assert!(replayed.replayed);
            assert_eq!(Event { replayed: false, ..replayed }, *original);
        }
        m.expect_idle().await;
        m.close().await;
    }
    relay.stop().await;
}

/// LIVE-4 (only devices online at publish time get an event; no replay without resume),
/// ISO-3 (the same stream name of another user is an independent stream), LIVE-14 (a failed
/// publish gets no pseq).
#[tokio::test]
async fn live_events_reach_only_online_devices_and_streams_are_per_user() {
    let relay = Relay::start(|_| {}).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut d = relay.connect(token(&desktop)).await;
    d.send_frame(&progress("shared", 1)).await; // pseq 1, mobile offline
    d.expect_idle().await;
    let mut m = relay.connect(token(&mobile)).await;
    m.expect_idle().await;
    // A publish refused for its target consumes no pseq.
    d.send_frame(&publish(LiveKind::ToolProgress, "shared", Target::Device("dev_nobody".into()), "0")).await;
    expect_error_code(d.next_skipping_presence().await, "unknown_recipient");
    d.send_frame(&progress("shared", 2)).await;
    let (_, e) = m.next_event().await;
    assert_eq!((e.pseq, e.replayed), (2, false));

    let (other_desktop, other_mobile) = relay.desktop_and_mobile().await;
    let mut om = relay.connect(token(&other_mobile)).await;
    let mut od = relay.connect(token(&other_desktop)).await;
    od.send_frame(&progress("shared", 9)).await;
    let (_, theirs) = om.next_event().await;
    assert_eq!((theirs.pseq, theirs.from.as_str()), (1, other_desktop.device_id.as_str()));
    m.expect_idle().await;
    om.expect_idle().await;
    relay.stop().await;
}

/// LIVE-8 (the window keeps the last replay_window_events events), LIVE-10 (`gap`
/// window_exceeded before the retained events), and nothing for a client that is up to date.
#[tokio::test]
async fn resume_beyond_the_replay_window_gets_a_window_exceeded_gap() {
    let relay = Relay::start(|c| c.limits.replay_window_events = 2).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    let stream = "task:w";
    let events = three_events(&mut d, &mut m, stream).await;
    let epoch = m.welcome().stream_epoch.clone();
    let sid = m.welcome().session_id.clone();
    m.close().await;

    let resume = positions(Some(&epoch), &sid, &[(stream, 0)]);
    let mut m = relay.connect_hello(hello(token(&mobile), Some(resume))).await;
    let gap = m.next_gap().await;
    assert_eq!(gap.reason, GapReason::WindowExceeded);
    assert_eq!((gap.stream.as_str(), gap.after_pseq, gap.resume_pseq), (stream, 0, Some(2)));
    for original in &events[1..] {
        let (_, replayed) = m.next_event().await;
        assert!(replayed.replayed);
        assert_eq!(Event { replayed: false, ..replayed }, *original);
    }
    m.expect_idle().await;
    let sid = m.welcome().session_id.clone();
    m.close().await;

    // Up to date: neither gap nor replay.
    let resume = positions(Some(&epoch), &sid, &[(stream, 3)]);
    let mut m = relay.connect_hello(hello(token(&mobile), Some(resume))).await;
    m.expect_idle().await;
    relay.stop().await;
}

/// LIVE-2 and LIVE-12 after the replay window emptied: the stream is still known, its pseq goes
/// on from where it was (not from 1), and a resume from an old position gets `window_exceeded`.
#[tokio::test]
async fn a_stream_whose_window_emptied_keeps_its_numbering() {
    let relay = Relay::start(|c| c.limits.replay_window_ms = 200).await;
    let (desktop, mobile) = relay.desktop_and_mobile().await;
    let mut m = relay.connect(token(&mobile)).await;
    let mut d = relay.connect(token(&desktop)).await;
    let stream = "task:window";
    let events = three_events(&mut d, &mut m, stream).await;
    assert_eq!(events[2].pseq, 3);
    // Nothing on the wire says the window emptied: wait out its age bound plus the relay's
    // 100 ms tick, derived from the configured limit.
    tokio::time::sleep(std::time::Duration::from_millis(200 + 300)).await;
    d.send_frame(&progress(stream, 99)).await;
    let (_, fourth) = m.next_event().await;
    assert_eq!(fourth.pseq, 4, "numbering must not restart");
    let epoch = m.welcome().stream_epoch.clone();
    let session = m.welcome().session_id.clone();
    drop(m);
    let mut again = relay
        .connect_hello(hello(token(&mobile), Some(positions(Some(&epoch), &session, &[(stream, 1)]))))
        .await;
    let gap = again.next_gap().await;
    assert_eq!((gap.reason, gap.after_pseq), (GapReason::WindowExceeded, 1), "{gap:?}");
    relay.stop().await;
}
