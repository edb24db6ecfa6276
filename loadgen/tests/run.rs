//! The load generator end to end against an in-process reference relay, and the scenario files
//! shipped in `scenarios/`.

use std::net::SocketAddr;

use relaykit_loadgen::report::Verdict;
use relaykit_loadgen::{Report, Scenario};
use relaykit_protocol::schema::SchemaSet;

mod util;

use util::assert_self_contained_page;

fn tiny(slo_routing_ms: f64) -> Scenario {
    let text = format!(
        r#"
name = "tiny"
seed = 7
drain_s = 1
[population]
users = 4
[[phases]]
name = "ramp"
kind = "ramp"
duration_s = 1
rate_per_mobile = 4
[[phases]]
name = "steady"
kind = "steady"
duration_s = 1
rate_per_mobile = 4
[slo]
command_routing_p99_ms = {slo_routing_ms}
"#
    );
    Scenario::from_toml("tiny.toml", &text).expect("valid scenario")
}

async fn run_embedded(scenario: Scenario) -> Report {
    let config = relaykit_server::Config {
        ephemeral: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..relaykit_server::Config::default()
    };
    let relay = relaykit_server::spawn(config).await.expect("relay");
    let addr = relay.addr;
    let report = relaykit_loadgen::run(scenario, addr, format!("http://{addr}")).await.expect("run");
    relay.stop().await.expect("relay stops cleanly");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_delivers_everything_and_its_report_validates() {
    let report = run_embedded(tiny(500.0)).await;
    let l = &report.stats.ledger;
    // 4 phones, each 2 sends on the ramp (0 -> 4/s over 1 s) + 4 on the steady phase: the rate
    // integral is a whole number, so the per-phone offset in [0, 1) does not change the count.
    assert_eq!(l.sent, 24, "{}", report.to_table());
    assert_eq!((l.accepted, l.delivered, l.lost, l.completed), (24, 24, 0, 24), "{}", report.to_table());
    assert_eq!(l.updates, 24 * 4, "tool_start + 3 progress per command");
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_table());
    assert_eq!(report.exit_code(), 0);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    if let Err(e) = SchemaSet::global().validate_value("tools/load-report", &json).unwrap() {
        panic!("report violates tools/load-report: {e}");
    }
    let routing = &report.stats.command_routing;
    assert_eq!(routing.percentiles.len(), 13);
    assert_eq!(routing.percentiles.last().unwrap(), &[100.0, routing.max_ms]);
    assert!(report.stats.timeseries.iter().any(|s| s.update_p99_ms > 0.0), "{:?}", report.stats.timeseries);
    assert_self_contained_html(&report);
}

/// The report as one self-contained page with its charts.
fn assert_self_contained_html(report: &Report) {
    let html = report.to_html();
    let at = assert_self_contained_page(&html, "tiny-load-report.html", report.verdict.as_str());
    assert!(html.contains("<svg"), "{at}");
    for check in &report.slo {
        assert!(html.contains(&check.name), "{at}: no SLO {}", check.name);
    }
    // Latency over time: routing and update p99; percentiles: routing, update, end to end;
    // throughput: sent and delivered. One path each, and a dashed line per latency budget.
    assert_eq!(html.matches("<path class=\"series\"").count(), 7, "{at}");
    assert_eq!(html.matches(" class=\"budget\"").count(), 2, "{at}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bodies_are_relayed_and_measured_like_plain_ones() {
    let mut scenario = tiny(500.0);
    scenario.workload.e2e = true;
    scenario.workload.ttl_ms = Some(60_000);
    let report = run_embedded(scenario).await;
    let l = &report.stats.ledger;
    assert_eq!(
        (l.sent, l.delivered, l.completed, l.updates, l.lost),
        (24, 24, 24, 96, 0),
        "{}",
        report.to_table()
    );
    assert_eq!(report.stats.command_routing.count, 24);
    assert_eq!(l.delivered_after_expiry, 0, "a conforming relay never delivers after expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_budget_is_breached() {
    let report = run_embedded(tiny(0.000_001)).await;
    assert_eq!(report.verdict, Verdict::SloBreached, "{}", report.to_table());
    assert_eq!(report.exit_code(), 1);
    let routing = report.slo.iter().find(|c| c.name == "command_routing_p99_ms").unwrap();
    assert!(!routing.pass);
    let html = report.to_html();
    assert!(html.contains(">slo_breached<") && html.contains(">BREACHED<"));
    // The budget (1 ns) is below the chart's 1 µs floor: listed in the legend, not drawn.
    assert!(html.contains("routing budget 0.000001 ms (off scale)"), "{html}");
}

#[test]
fn shipped_scenarios_parse_and_match_the_schema() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.display().to_string();
        Scenario::from_toml(&name, &text).unwrap_or_else(|e| panic!("{e}"));
        let value: toml::Value = toml::from_str(&text).unwrap();
        let json = serde_json::to_value(value).unwrap();
        if let Err(e) = SchemaSet::global().validate_value("tools/scenario", &json).unwrap() {
            panic!("{name} violates tools/scenario: {e}");
        }
        n += 1;
    }
    assert!(n >= 1, "no scenario files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_while_desktops_are_offline_all_drain() {
    let text = r#"
name = "offline"
seed = 3
drain_s = 2
[population]
users = 6
[[phases]]
name = "steady"
kind = "steady"
duration_s = 3
rate_per_mobile = 4
[[offline]]
at_s = 0.5
duration_s = 1.5
fraction = 1.0
"#;
    let report = run_embedded(Scenario::from_toml("offline.toml", text).unwrap()).await;
    let l = &report.stats.ledger;
    assert_eq!((l.sent, l.delivered, l.lost), (72, 72, 0), "{}", report.to_table());
    assert!(
        l.delivered_after_reconnect >= 6 * 4,
        "a 1.5 s outage at 4/s queues commands: {}",
        report.to_table()
    );
    assert_eq!(report.stats.reconnect.count, 6, "every desktop came back once");
    assert_eq!(report.stats.command_routing.count + l.delivered_after_reconnect, l.delivered);
    assert_eq!(report.verdict, Verdict::Pass, "{}", report.to_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_queued_for_offline_phones_drain_when_they_return() {
    let text = r#"
name = "phones-away"
seed = 4
drain_s = 2
[population]
users = 4
[[phases]]
name = "steady"
kind = "steady"
duration_s = 3
rate_per_mobile = 4
[[offline]]
at_s = 1
duration_s = 1
fraction = 1.0
role = "mobile"
"#;
    let report = run_embedded(Scenario::from_toml("phones.toml", text).unwrap()).await;
    let l = &report.stats.ledger;
    // Sends due while a phone is away are skipped; everything sent is delivered and every result
    // reaches its phone, part of them after the phone came back.
    assert!(l.sent < 48 && l.sent >= 24, "{}", report.to_table());
    assert_eq!((l.delivered, l.completed, l.lost), (l.sent, l.sent, 0), "{}", report.to_table());
    assert_eq!(report.stats.reconnect.count, 4, "every phone came back once");
}

/// A run longer than the access-token lifetime: devices refresh their tokens at 80% of it and
/// `reauth` on their open connections (CLI-8), so the relay never closes them with
/// `token_expired` and nothing is lost. (Without the refresh every device is closed after 3 s
/// and cannot reconnect: its token has expired.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_refresh_their_tokens_and_outlive_the_access_token_lifetime() {
    let mut config = relaykit_server::Config {
        ephemeral: true,
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..relaykit_server::Config::default()
    };
    config.auth.access_ttl_s = 3;
    config.auth.leeway_s = 0;
    let relay = relaykit_server::spawn(config).await.expect("relay");
    let mut scenario = tiny(500.0);
    scenario.phases[1].duration_s = 7.0;
    let report = relaykit_loadgen::run(scenario, relay.addr, "refresh".into()).await.expect("run");
    relay.stop().await.expect("relay stops cleanly");
    let s = &report.stats;
    assert_eq!(s.errors.get("transport"), None, "no connection was closed: {:?}", s.errors);
    assert_eq!(s.errors.get("refresh"), None, "{:?}", s.errors);
    assert_eq!(s.reconnect.count, 0);
    assert!(s.ledger.sent > 0 && s.ledger.delivered == s.ledger.sent, "{:?}", s.ledger);
}
