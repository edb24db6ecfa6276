//! The suite checks itself: the reference server passes every MUST and SHOULD case, every
//! deliberately broken variant of it ("mutant", `relaykit_server::mutant`) is caught by at least
//! one named MUST case, and the reports it writes validate.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use relaykit_conformance::cases::catalogue;
use relaykit_conformance::report::{Report, Status};
use relaykit_conformance::{CheckConfig, select};
use relaykit_protocol::requirements::Level;
use relaykit_protocol::schema::SchemaSet;
use relaykit_server::Config;
use relaykit_server::mutant::Mutant;

/// An in-process reference server with limits small enough for a fast suite.
struct Server {
    addr: SocketAddr,
    running: relaykit_server::Running,
}

impl Server {
    async fn start(mutant: Option<Mutant>) -> Server {
        let mut config = Config {
            ephemeral: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            test_tokens: true,
            mutant,
            ..Config::default()
        };
        let l = &mut config.limits;
        l.auth_timeout_ms = 1000;
        l.ttl_min_ms = 200;
        l.heartbeat_ms = 2000;
        l.inbox_max_entries = 50;
        config.validate().expect("valid test configuration");
        let running = relaykit_server::spawn(config).await.expect("relay");
        Server { addr: running.addr, running }
    }

    async fn check(&self, filters: &[&str]) -> Report {
        self.check_scaled(filters, 1.0).await
    }

    async fn check_scaled(&self, filters: &[&str], time_scale: f64) -> Report {
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let cases = select(&catalogue(), &filters);
        assert!(!cases.is_empty(), "no case matches {filters:?}");
        let config = CheckConfig::new(&format!("http://{}", self.addr), time_scale, 8).expect("config");
        relaykit_conformance::run(&config, &cases).await.expect("the suite runs")
    }

    async fn stop(self) {
        self.running.stop().await.expect("server stops cleanly");
    }
}

/// Every mutant and the MUST cases that must catch it.
fn killers() -> BTreeMap<&'static str, (Mutant, &'static [&'static str])> {
    BTreeMap::from([
        ("ignore-priority", (Mutant::IgnorePriority, &["dlv-offline-priority-order"][..])),
        (
            "drop-inbox-on-reconnect",
            (Mutant::DropInboxOnReconnect, &["dlv-redelivery-after-reconnect", "net-reset-mid-delivery"][..]),
        ),
        ("deliver-after-expiry", (Mutant::DeliverAfterExpiry, &["dlv-expiry-before-delivery"][..])),
        ("no-delivery-cap", (Mutant::NoDeliveryCap, &["dlv-dead-letter-after-cap"][..])),
        ("wrong-sender", (Mutant::WrongSender, &["dlv-online-byte-exact"][..])),
        ("cross-user-delivery", (Mutant::CrossUserDelivery, &["iso-other-user-device-is-unknown"][..])),
        (
            "no-refresh-reuse-detection",
            (Mutant::NoRefreshReuseDetection, &["refresh-reuse-revokes-family"][..]),
        ),
        ("no-resend-dedupe", (Mutant::NoResendDedupe, &["dlv-idempotent-resend"][..])),
        ("corrupt-payload", (Mutant::CorruptPayload, &["dlv-online-byte-exact"][..])),
        ("redeliver-acked", (Mutant::RedeliverAcked, &["dlv-acked-not-redelivered"][..])),
        ("no-receipts", (Mutant::NoReceipts, &["dlv-ack-receipt"][..])),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_server_passes_every_must_and_should_case_and_reports_validate() {
    let server = Server::start(None).await;
    let report = server.check(&[]).await;
    server.stop().await;
    let misses: Vec<String> = report
        .cases
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Warn))
        .map(|c| format!("{} {:?}: expected {:?}, got {:?}", c.id, c.status, c.expected, c.got))
        .collect();
    assert!(misses.is_empty(), "the reference server misses:\n{}\n{}", misses.join("\n"), report.to_table());
    assert!(report.cases.len() >= 80, "only {} cases", report.cases.len());
    // The JSON report validates against its schema.
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    if let Err(e) = SchemaSet::global().validate_value("tools/check-report", &json).expect("schema exists") {
        panic!("report violates tools/check-report: {e}");
    }
    // JUnit: one testcase per case, failures and skips counted.
    let junit = report.to_junit();
    assert!(junit.starts_with("<?xml"));
    assert_eq!(junit.matches("<testcase ").count(), report.cases.len());
    assert_eq!(junit.matches("<failure ").count() as u64, report.summary.fail);
    assert_eq!(junit.matches("<skipped ").count() as u64, report.summary.skip);
    assert_eq!(junit.matches("<testsuite ").count(), junit.matches("</testsuite>").count());
}

/// Waits in the mutant runs: short, so a mutant that makes a case wait for something that never
/// comes is caught in seconds. The same scale is applied to a control run on the clean server,
/// which must pass the killer cases, so a "catch" is never just an impatient wait.
const MUTANT_TIME_SCALE: f64 = 0.4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutant_is_caught_by_a_named_must_case() {
    let all = catalogue();
    let table = killers();
    assert!(table.len() >= 10, "at least ten mutants");
    assert_eq!(table.len(), Mutant::ALL.len(), "every mutant has killers");
    let mut killer_ids: Vec<&str> = Vec::new();
    for (name, (_, cases)) in &table {
        for id in *cases {
            let case = all.iter().find(|c| c.id == *id).unwrap_or_else(|| panic!("{name}: no case {id}"));
            assert_eq!(case.level, Level::Must, "{name}: killer {id} must be a MUST case");
            killer_ids.push(id);
        }
    }
    // Control: the clean server passes every killer at the mutant time scale.
    let clean = Server::start(None).await;
    let control = clean.check_scaled(&killer_ids, MUTANT_TIME_SCALE).await;
    clean.stop().await;
    let control_misses: Vec<&str> =
        control.cases.iter().filter(|c| c.status != Status::Pass).map(|c| c.id.as_str()).collect();
    assert!(control_misses.is_empty(), "killers miss on the clean server: {control_misses:?}");
    // Each mutant against its killers, all at once.
    let runs = table.iter().map(|(name, (mutant, cases))| async move {
        let server = Server::start(Some(*mutant)).await;
        let report = server.check_scaled(cases, MUTANT_TIME_SCALE).await;
        server.stop().await;
        let caught: Vec<String> =
            report.cases.iter().filter(|c| c.status == Status::Fail).map(|c| c.id.clone()).collect();
        (name, mutant, cases, caught)
    });
    let mut escaped = Vec::new();
    for (name, mutant, cases, caught) in futures_util::future::join_all(runs).await {
        eprintln!("mutant {name} caught by {caught:?}");
        if caught.is_empty() {
            escaped.push(format!("{name} ({mutant:?}) passed {cases:?}"));
        }
    }
    assert!(escaped.is_empty(), "mutants not caught:\n{}", escaped.join("\n"));
}

/// `--provision-cmd`: the pair a case needs comes from the command, which gets the device type
/// and, for the second device, the first one's user id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provision_cmd_supplies_the_device_pair() {
    let server = Server::start(None).await;
    let config = CheckConfig::new(&format!("http://{}", server.addr), 1.0, 1).expect("config");
    let info = relaykit_conformance::runner::fetch_info(&config).await.expect("info");
    let ctx = relaykit_conformance::case::Ctx {
        addr: server.addr,
        info,
        time_scale: 1.0,
        evidence: Default::default(),
        provision_cmd: None,
    };
    let (desktop, mobile) = ctx.pair().await.expect("pair over REST");
    let to_json = |r: &relaykit_protocol::rest::Registered| relaykit_protocol::encode(r);
    // Logs each call, prints the desktop for a new user and the phone only when asked for the
    // desktop's user.
    let log = std::env::temp_dir().join(format!("relaykit-provision-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let cmd = format!(
        "echo \"$RELAYKIT_DEVICE_TYPE\" >> '{}'; if [ \"$RELAYKIT_DEVICE_TYPE\" = desktop ] && [ -z \"$RELAYKIT_USER_ID\" ]; then printf '%s' '{}'; \
         elif [ \"$RELAYKIT_DEVICE_TYPE\" = mobile ] && [ \"$RELAYKIT_USER_ID\" = '{}' ]; then printf '%s' '{}'; \
         else exit 3; fi",
        log.display(),
        to_json(&desktop),
        desktop.user_id,
        to_json(&mobile)
    );
    let mut config = config;
    config.provision_cmd = Some(cmd);
    let cases = select(&catalogue(), &["dlv-online-byte-exact".to_string()]);
    let report = relaykit_conformance::run(&config, &cases).await.expect("run");
    server.stop().await;
    assert_eq!(report.cases[0].status, Status::Pass, "{}", report.to_table());
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "desktop\nmobile\n", "command calls");
    let _ = std::fs::remove_file(&log);
    // A command that fails makes the case fail, with the exit code as evidence.
    let server = Server::start(None).await;
    let mut config = CheckConfig::new(&format!("http://{}", server.addr), 1.0, 1).expect("config");
    config.provision_cmd = Some("echo nope >&2; exit 7".into());
    let report = relaykit_conformance::run(&config, &cases).await.expect("run");
    server.stop().await;
    assert_eq!(report.cases[0].status, Status::Fail);
    assert!(report.cases[0].got.as_deref().unwrap_or("").contains('7'), "{:?}", report.cases[0].got);
}
