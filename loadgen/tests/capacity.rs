//! The capacity finder end to end against an in-process reference relay behind the fault proxy,
//! whose bandwidth limit puts the knee at a known level; its JSON report against the schema; its
//! HTML page.

use std::net::SocketAddr;

use relaykit_loadgen::Scenario;
use relaykit_loadgen::capacity::{self, CapacityReport, Outcome, Stop};
use relaykit_protocol::schema::SchemaSet;
use relaykit_proxy::{Direction, Fault, FaultSpec, ProxyConfig, Selector};

mod util;

use util::assert_self_contained_page;

/// 3 users, 1, 4, 16, 64 commands/s per phone, 2 s per level; each command carries 2,000 bytes
/// of padding (about 2.2 KB on the wire).
fn tiny(extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "tiny-capacity"
seed = 5
drain_s = 1
[population]
users = 3
[workload]
progress_updates = 0
payload_bytes = 2000
[capacity]
mode = "rate"
start = 1
factor = 4
max_steps = 4
step_duration_s = 2
{extra}
"#
    );
    Scenario::from_toml("tiny-capacity.toml", &text).expect("valid scenario")
}

/// Runs the search against a reference relay; with `up_bytes_per_s`, through the fault proxy
/// pacing every connection's client -> relay direction to that rate.
async fn search(scenario: &Scenario, up_bytes_per_s: Option<u64>) -> CapacityReport {
    let config = relaykit_server::Config {
        ephemeral: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..relaykit_server::Config::default()
    };
    let relay = relaykit_server::spawn(config).await.expect("relay");
    let mut proxy = None;
    let mut addr = relay.addr;
    if let Some(bytes_per_s) = up_bytes_per_s {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let p = relaykit_proxy::spawn(ProxyConfig { listen, upstream: relay.addr, seed: 1, control: None })
            .await
            .expect("proxy");
        p.faults().add(FaultSpec {
            fault: Fault::Bandwidth { bytes_per_s },
            direction: Direction::Up,
            select: Selector::All,
            duration_ms: None,
        });
        addr = p.addr;
        proxy = Some(p);
    }
    let c = scenario.capacity.as_ref().unwrap();
    let options = relaykit_loadgen::Options::default();
    let mut seen = Vec::new();
    let report =
        capacity::search(scenario, c, addr, format!("http://{addr}"), &options, true, |l| seen.push(l.level))
            .await;
    if let Some(p) = proxy {
        p.stop().await;
    }
    relay.stop().await.expect("relay stops cleanly");
    assert_eq!(seen, report.levels.iter().map(|l| l.level).collect::<Vec<_>>(), "every level reported once");
    report
}

fn assert_valid_json(report: &CapacityReport, file: &str) {
    let text = report.to_json();
    std::fs::write(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(file), &text).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    if let Err(e) = SchemaSet::global().validate_value("tools/capacity-report", &json).unwrap() {
        panic!("report violates tools/capacity-report: {e}\n{json:#}");
    }
}

/// The report as one self-contained page with its charts.
fn assert_self_contained_html(report: &CapacityReport, file: &str) -> String {
    let html = report.to_html();
    let at = assert_self_contained_page(&html, file, report.verdict.as_str());
    assert_eq!(html.matches("<svg").count(), 2, "{at}");
    html
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_stops_at_the_first_level_the_relay_cannot_sustain() {
    // 20,000 bytes/s from each phone to the relay: 4 commands/s per phone (about 8.8 KB/s) fit,
    // 16 (35 KB/s) do not: the sends queue in front of the link and routing latency grows by
    // about 0.75 s per second of the level, past the 500 ms budget.
    let scenario = tiny("min_commands_per_s = 10");
    let report = search(&scenario, Some(20_000)).await;
    let table = report.to_table();
    let levels: Vec<(u32, f64, Outcome)> =
        report.levels.iter().map(|l| (l.level, l.rate_per_mobile, l.verdict)).collect();
    assert_eq!(levels[..2], [(0, 1.0, Outcome::Pass), (1, 4.0, Outcome::Pass)], "{table}");
    assert_eq!(
        (levels.len(), levels.get(2).map(|l| l.1)),
        (3, Some(16.0)),
        "stops at the third level\n{table}"
    );
    let knee = report.knee.as_ref().expect("a knee");
    assert_eq!((knee.level, knee.users, knee.offered_commands_per_s), (1, 3, 12.0), "{table}");
    // The link cannot carry 16 commands/s: the level fails. On a busy machine the generator
    // itself may also fall behind (send lag p99 > 50 ms over these few sends): then the level is
    // invalid and so is the search, the knee a lower bound.
    let expected = match levels[2].2 {
        Outcome::Fail => (Stop::SloBreached, Outcome::Pass, 0),
        Outcome::Invalid => (Stop::Invalid, Outcome::Invalid, 2),
        Outcome::Pass => panic!("16 commands/s per phone passed\n{table}"),
    };
    assert_eq!((report.stopped_because, report.verdict, report.exit_code()), expected, "{table}");
    assert!(!report.levels[2].breaches.is_empty() && report.levels[1].breaches.is_empty(), "{table}");
    for l in &report.levels[..2] {
        // Each phone sends rate x 2 s commands; all delivered, at about the offered rate.
        assert_eq!((l.sent, l.delivered, l.lost), (6 * l.rate_per_mobile as u64, l.sent, 0), "{table}");
        assert!(l.achieved_commands_per_s > 0.0 && l.routing_p99_ms > 0.0, "{table}");
    }
    assert!(
        table.contains("knee: level 1: 4 commands/s per phone x 3 users = 12 commands/s offered"),
        "{table}"
    );
    assert_eq!(table.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 3, "{table}");
    assert_valid_json(&report, "tiny-capacity.json");
    let html = assert_self_contained_html(&report, "tiny-capacity.html");
    // Latency chart: routing p99, update p99, knee; throughput chart: offered, delivered, knee.
    assert_eq!(html.matches("<path class=\"series\"").count(), 6, "{html}");
    assert_eq!(html.matches(" class=\"budget\"").count(), 2);
    assert_eq!(html.matches("<tr class=\"knee\">").count(), 1);
    assert!(html.contains("knee (level 1)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_level_that_breaches_leaves_no_knee() {
    // A budget no relay meets: the first level fails, the search ends there with exit code 1.
    let scenario = tiny("[slo]\ncommand_routing_p99_ms = 0.000001");
    let report = search(&scenario, None).await;
    let table = report.to_table();
    assert_eq!(report.levels.len(), 1, "{table}");
    assert_eq!(report.levels[0].breaches, ["command_routing_p99_ms"], "{table}");
    assert_eq!((report.knee.is_none(), report.stopped_because), (true, Stop::SloBreached), "{table}");
    assert_eq!((report.verdict, report.exit_code()), (Outcome::Fail, 1));
    assert!(table.contains("knee: none"), "{table}");
    assert_valid_json(&report, "tiny-capacity-no-knee.json");
    let html = assert_self_contained_html(&report, "tiny-capacity-no-knee.html");
    assert!(!html.contains("knee (level"), "no knee line without a knee");
}
