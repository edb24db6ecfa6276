//! Fault steps end to end through the `relaykit` binary: `relaykit load` starts the reference
//! relay itself, puts its fault proxy in front of it, applies the steps on time, and reports
//! what each cost. Small populations; each run takes about 20 s.

use std::path::PathBuf;
use std::process::Command;

use relaykit_protocol::schema::SchemaSet;
use serde_json::Value;

/// Runs `relaykit load` on `scenario` (TOML text); returns the exit code, the output and the
/// JSON report.
fn load(tag: &str, scenario: &str) -> (i32, String, Value) {
    let dir = std::env::temp_dir().join(format!("relaykit-chaos-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("scenario.toml");
    std::fs::write(&file, scenario).unwrap();
    let json: PathBuf = dir.join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(["load", file.to_str().unwrap(), "--quiet", "--report-json", json.to_str().unwrap()])
        .output()
        .expect("run relaykit load");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let report = std::fs::read_to_string(&json).map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    if report != Value::Null
        && let Err(e) = SchemaSet::global().validate_value("tools/load-report", &report).unwrap()
    {
        panic!("the report does not match its schema: {e}\n{text}");
    }
    (out.status.code().unwrap_or(-1), text, report)
}

const BASE: &str = r#"
seed = 5
drain_s = 8
[population]
users = 10
[[phases]]
name = "steady"
kind = "steady"
duration_s = 14
rate_per_mobile = 2
[target]
command = ["relaykit", "serve", "--listen", "127.0.0.1:{port}", "--data-dir", "{data_dir}"]
env = { RELAYKIT_LIMITS__HEARTBEAT_MS = "1000", RELAYKIT_LIMITS__ACK_WAIT_MS = "2000" }
"#;

fn fault<'a>(report: &'a Value, name: &str) -> &'a Value {
    let faults = report["faults"].as_array().expect("a faults array");
    faults.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no fault step {name}: {report}"))
}

/// SIGKILL of the relay mid-run: it comes back on the same port and data directory, every
/// device reconnects, and every command the relay accepted is delivered. Then SIGSTOP for 4 s:
/// the devices see silence (no close), give the connection up after 2 x heartbeat_ms and are
/// back soon after SIGCONT.
#[test]
fn kill_9_and_pause_of_the_relay_lose_no_accepted_command_and_every_device_comes_back() {
    let scenario = format!(
        "name = \"kill\"{BASE}\n[[faults]]\nname = \"kill\"\nat_s = 3\nduration_s = 1\naction = \"kill\"\nsettle_s = 3\n\n[[faults]]\nname = \"pause\"\nat_s = 8\nduration_s = 4\naction = \"pause\"\nsettle_s = 1\n"
    );
    let (code, out, report) = load("kill", &scenario);
    assert_eq!(code, 0, "{out}");
    let kill = fault(&report, "kill");
    assert_eq!(kill["action"], "kill");
    assert!(kill["error"].is_null(), "{kill}");
    assert!(kill["target_down_ms"].as_f64().unwrap() >= 1000.0, "down for the step's second: {kill}");
    let window = &kill["window"];
    assert!(window["sent"].as_u64().unwrap() > 0, "{kill}");
    assert_eq!(window["lost"], 0, "{kill}");
    let recovered = window["recovery"]["count"].as_u64().unwrap();
    assert!(recovered >= 20, "all 20 devices lost the relay and came back: {kill}");
    let ledger = &report["stats"]["ledger"];
    assert_eq!(ledger["lost"], 0, "{out}");
    assert_eq!(ledger["sent"], ledger["delivered"], "{out}");
    assert_eq!(ledger["unacknowledged"], 0, "unanswered sends were resent after the restart: {out}");
    let pause = fault(&report, "pause");
    assert!(pause["error"].is_null() && pause["target_down_ms"].is_null(), "{pause}");
    let recovered = pause["window"]["recovery"]["count"].as_u64().unwrap();
    assert!(recovered >= 10, "silent for 4 s > 2 x 1 s heartbeat: devices gave up and came back: {pause}");
    assert_eq!(pause["window"]["lost"], 0, "{pause}");
}

/// Frame loss on the phones' uplink, then a partition of some devices: lost sends are resent
/// (same id, no duplicate delivery from that), partitioned devices notice the silence, come back
/// after the heal, and nothing accepted is lost.
#[test]
fn lost_frames_are_resent_and_a_partition_heals_without_loss() {
    let steps = r#"
[[faults]]
name = "uplink loss"
at_s = 1
duration_s = 3
action = "proxy"
fault = { kind = "loss", probability = 0.3 }
direction = "up"
select = { role = "mobile" }
settle_s = 2

[[faults]]
name = "partition"
at_s = 9
duration_s = 3
action = "proxy"
fault = { kind = "partition" }
select = { fraction = 0.5 }
settle_s = 2
"#;
    let (code, out, report) = load("proxy", &format!("name = \"proxy\"{BASE}{steps}"));
    assert_eq!(code, 0, "{out}");
    let loss = fault(&report, "uplink loss");
    assert!(loss["window"]["resent"].as_u64().unwrap() > 0, "30% of sends lost, none resent: {loss}");
    assert_eq!(loss["window"]["lost"], 0, "{loss}");
    assert_eq!(loss["window"]["unacknowledged"], 0, "{loss}");
    let partition = fault(&report, "partition");
    let hit = partition["devices"].as_u64().unwrap();
    assert!((3..=17).contains(&hit), "about half of 20 devices: {partition}");
    // Lost acks of the loss step also force reconnects (ack_timeout), so the partition's window
    // may hold a few of those too: at least one recovery, and every command delivered below.
    let recovered = partition["window"]["recovery"]["count"].as_u64().unwrap();
    assert!(recovered >= 1, "{recovered} recoveries for {hit} partitioned devices");
    assert_eq!(partition["window"]["lost"], 0, "{partition}");
    assert!(partition["window"]["recovery"]["p99_ms"].as_f64().unwrap() < 5000.0, "{partition}");
    assert_eq!(report["stats"]["ledger"]["lost"], 0, "{out}");
    assert_eq!(report["stats"]["ledger"]["sent"], report["stats"]["ledger"]["delivered"], "{out}");
}

/// Mistakes in fault steps are refused before anything runs, naming the key.
#[test]
fn a_process_fault_without_a_target_is_refused_naming_the_key() {
    let scenario = "name = \"x\"\n[population]\nusers = 1\n[[phases]]\nname = \"s\"\nkind = \"steady\"\nduration_s = 5\nrate_per_mobile = 1\n[[faults]]\nname = \"k\"\nat_s = 1\naction = \"kill\"\n";
    let (code, out, _) = load("refused", scenario);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("faults[0].action") && out.contains("[target]"), "{out}");
}
