//! The load generator end to end against an in-process reference relay, and the scenario files
//! shipped in `scenarios/`.

use std::net::SocketAddr;

use relaykit_loadgen::report::Verdict;
use relaykit_loadgen::{Report, Scenario};
use relaykit_protocol::schema::SchemaSet;

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
    let relay = relaykit_server::build(&config).expect("relay");
    let listener = tokio::net::TcpListener::bind(config.listen).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        relaykit_server::run(listener, relay, &config, shutdown).await
    });
    let report = relaykit_loadgen::run(scenario, addr, format!("http://{addr}")).await.expect("run");
    let _ = stop.send(());
    let _ = server.await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impossible_budget_is_breached() {
    let report = run_embedded(tiny(0.000_001)).await;
    assert_eq!(report.verdict, Verdict::SloBreached, "{}", report.to_table());
    assert_eq!(report.exit_code(), 1);
    let routing = report.slo.iter().find(|c| c.name == "command_routing_p99_ms").unwrap();
    assert!(!routing.pass);
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
