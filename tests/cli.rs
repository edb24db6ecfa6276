//! The `relaykit` binary end to end: exit codes and output of the protocol subcommands.

use std::process::Command;

mod util;

use util::{relaykit, serve};

#[test]
fn validate_accepts_valid_frames_and_names_the_violation_of_invalid_ones() {
    let (code, out) = relaykit(&["validate", "schemas/examples/valid/ws.client.send.new_task_to_role.json"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = relaykit(&[
        "validate",
        "--schema",
        "ws/client/ack",
        "schemas/examples/invalid/ws.client.ack.invalid_field.seq_negative.json",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL") && out.contains("/seq"), "{out}");
}

#[test]
fn validate_reports_unknown_schema_as_usage_error() {
    let (code, out) = relaykit(&["validate", "--schema", "nope", "README.md"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown schema `nope`"), "{out}");
}

#[test]
fn schemas_lists_every_frame_schema() {
    let (code, out) = relaykit(&["schemas"]);
    assert_eq!(code, 0);
    for name in ["ws/client/hello", "ws/server/welcome", "ws/client-frame", "rest/server_info"] {
        assert!(out.lines().any(|l| l == name), "{name} missing from:\n{out}");
    }
}

/// `relaykit check` against `relaykit serve`, both as processes: exit 0, and the JSON and JUnit
/// files it writes validate.
#[test]
fn check_against_serve_writes_valid_json_and_junit() {
    let (_server, url) = serve(&["--test-tokens"]);
    let dir = std::env::temp_dir().join(format!("relaykit-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, junit) = (dir.join("report.json"), dir.join("report.xml"));
    let (code, out) = relaykit(&[
        "check",
        "--target",
        &url,
        "--filter",
        "delivery",
        "--filter",
        "ses-welcome",
        "--json",
        json.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 fail"), "{out}");
    let (code, out) = relaykit(&["validate", "--schema", "tools/check-report", json.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let total = report["summary"]["total"].as_u64().unwrap();
    assert!(total >= 20, "{total}");
    assert_eq!(xml.matches("<testcase ").count() as u64, total);
    let _ = std::fs::remove_dir_all(dir);
}

/// `relaykit load scenarios/smoke.toml` with the embedded relay: exit 0 (every SLO held, nothing
/// lost) and a JSON report that validates.
#[test]
fn load_smoke_scenario_passes_with_the_embedded_relay() {
    let json = std::env::temp_dir().join(format!("relaykit-cli-load-{}.json", std::process::id()));
    let html = json.with_extension("html");
    let hlog = json.with_extension("hlog");
    let (code, out) = relaykit(&[
        "load",
        "scenarios/smoke.toml",
        "--quiet",
        "--report-json",
        json.to_str().unwrap(),
        "--report-html",
        html.to_str().unwrap(),
        "--hdr-log",
        hlog.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verdict: Pass"), "{out}");
    let (code, out) = relaykit(&["validate", "--schema", "tools/load-report", json.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["stats"]["ledger"]["lost"], 0);
    assert_eq!(report["stats"]["ledger"]["sent"], report["stats"]["ledger"]["delivered"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("smoke"), "HTML report");
    let log = std::fs::read_to_string(&hlog).unwrap();
    assert!(log.lines().filter(|l| l.starts_with("Tag=routing,")).count() >= 5, "interval log:\n{log}");
    for f in [json, html, hlog] {
        let _ = std::fs::remove_file(f);
    }
}

/// A scenario mistake names the file, line and key, and exits 2.
#[test]
fn load_reports_scenario_mistakes_with_their_location() {
    let path = std::env::temp_dir().join(format!("relaykit-cli-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "name = \"x\"\n[population]\nusers = 1\nwho = 2\n").unwrap();
    let (code, out) = relaykit(&["load", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(&format!("{}:4:", path.display())) && out.contains("who"), "{out}");
    let _ = std::fs::remove_file(path);
}

/// Runs `relaykit load scenarios/smoke.toml --target URL` with `extra` flags; the JSON report.
fn smoke_report(url: &str, tag: &str, extra: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!("relaykit-cli-{tag}-{}.json", std::process::id()));
    let mut args = vec!["load", "scenarios/smoke.toml", "--target", url, "--quiet", "--report-json"];
    args.push(json.to_str().unwrap());
    args.extend_from_slice(extra);
    let (code, out) = relaykit(&args);
    assert_eq!(code, 0, "{out}");
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(json);
    report
}

/// Shard-merge equivalence: the smoke scenario run by one process and by three worker processes
/// (`--workers 3`: users never split, one clock per command) against the same relay, with the
/// same seed, gives the same exact ledger and the same sample counts. (That merging bundles gives
/// the same percentiles as one aggregator, within histogram precision, is proven on identical
/// samples by `merged_bundles_equal_a_single_process` in loadgen; two live runs cannot have
/// identical latencies, so here they are only checked to be of the same order.)
#[test]
fn three_worker_processes_give_the_same_ledger_as_one() {
    let (_server, url) = serve(&[]);
    let single = smoke_report(&url, "single", &[]);
    let merged = smoke_report(&url, "workers", &["--workers", "3"]);
    for field in
        ["sent", "accepted", "delivered", "lost", "duplicated", "unacknowledged", "completed", "updates"]
    {
        assert_eq!(
            single["stats"]["ledger"][field], merged["stats"]["ledger"][field],
            "ledger.{field}: {} vs {}",
            single["stats"]["ledger"], merged["stats"]["ledger"]
        );
    }
    assert_eq!(single["stats"]["ledger"]["sent"], 300, "the smoke schedule: 20 phones, 15 sends each");
    let count = |r: &serde_json::Value, metric: &str| r["stats"][metric]["count"].as_u64().unwrap();
    for metric in ["connect", "update", "end_to_end"] {
        assert_eq!(count(&single, metric), count(&merged, metric), "{metric} samples");
    }
    assert_eq!(count(&merged, "connect"), 40, "every worker's devices are in the report");
    assert_eq!(
        count(&single, "command_routing") + count(&single, "backlog"),
        count(&merged, "command_routing") + count(&merged, "backlog"),
        "one latency sample per delivered command"
    );
    for r in [&single, &merged] {
        let p50 = r["stats"]["command_routing"]["p50_ms"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 < 100.0, "routing p50 {p50} ms on loopback");
        assert_eq!(r["verdict"], "pass");
    }
}

/// `relaykit merge`: two shards run as separate commands (as on two machines), merged into one
/// report with the whole population's ledger; an incomplete set of shards is refused.
#[test]
fn merge_joins_separately_run_shards() {
    let (_server, url) = serve(&[]);
    let dir = std::env::temp_dir().join(format!("relaykit-cli-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start_at =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() + 3_000;
    let bundles: Vec<_> = (0..2).map(|i| dir.join(format!("shard-{i}.json"))).collect();
    let workers: Vec<_> = bundles
        .iter()
        .enumerate()
        .map(|(i, bundle)| {
            Command::new(env!("CARGO_BIN_EXE_relaykit"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "load",
                    "scenarios/smoke.toml",
                    "--target",
                    &url,
                    "--quiet",
                    "--shard",
                    &format!("{i}/2"),
                ])
                .args(["--start-at-ms", &start_at.to_string(), "--bundle", bundle.to_str().unwrap()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start worker")
        })
        .collect();
    // Both run at once, sharing the start instant, as pods of one Indexed Job would.
    for w in workers {
        let out = w.wait_with_output().expect("worker ran");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let json = dir.join("merged.json");
    let (code, out) = relaykit(&[
        "merge",
        "--scenario",
        "scenarios/smoke.toml",
        bundles[0].to_str().unwrap(),
        bundles[1].to_str().unwrap(),
        "--report-json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["stats"]["ledger"]["sent"], 300, "{out}");
    assert_eq!(report["stats"]["ledger"]["lost"], 0);
    let (code, out) =
        relaykit(&["merge", "--scenario", "scenarios/smoke.toml", bundles[0].to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("incomplete set of shards"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}
