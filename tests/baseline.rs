//! `relaykit report --baseline` end to end: a real `relaykit load` report compared with itself
//! (exit 0), with a copy whose figures were made worse (exit 1, naming the metric), and with
//! input that is not a load report (exit 2). The JSON result validates against
//! `schemas/tools/baseline-report.json`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use relaykit_protocol::schema::SchemaSet;
use serde_json::{Value, json};

mod util;

use util::relaykit;

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("relaykit-baseline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One real report of `scenarios/smoke.toml` (embedded relay), shared by the tests.
fn smoke_report() -> &'static Path {
    static REPORT: OnceLock<PathBuf> = OnceLock::new();
    REPORT.get_or_init(|| {
        let path = dir().join("smoke.json");
        let (code, out) =
            relaykit(&["load", "scenarios/smoke.toml", "--quiet", "--report-json", path.to_str().unwrap()]);
        assert_eq!(code, 0, "the smoke run must pass to serve as a baseline:\n{out}");
        path
    })
}

/// A copy of the smoke report changed by `edit`.
fn derived(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(smoke_report()).unwrap()).unwrap();
    edit(&mut report);
    let path = dir().join(name);
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    path
}

/// `relaykit report --baseline OLD NEW --json FILE`: exit code, output, and the JSON written,
/// checked against its schema.
fn compare(old: &Path, new: &Path, extra: &[&str]) -> (i32, String, Value) {
    let json = dir().join(format!("{}.result.json", new.file_stem().unwrap().to_string_lossy()));
    let mut args = vec!["report", "--baseline", old.to_str().unwrap(), new.to_str().unwrap()];
    args.extend(["--json", json.to_str().unwrap()]);
    args.extend(extra);
    let (code, out) = relaykit(&args);
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("no --json output ({e}):\n{out}"));
    let value: Value = serde_json::from_str(&text).unwrap();
    if let Err(e) = SchemaSet::global().validate_value("tools/baseline-report", &value).unwrap() {
        panic!("--json output violates tools/baseline-report: {e}\n{text}");
    }
    (code, out, value)
}

#[test]
fn a_report_compared_with_itself_has_no_regression() {
    let a = smoke_report();
    let (code, out, json) = compare(a, a, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no regression beyond the thresholds"), "{out}");
    assert!(out.contains("command_routing.p99_ms") && out.contains("throughput"), "{out}");
    assert_eq!(json["verdict"], "no_regression");
    assert_eq!(json["regressions"], 0);
}

#[test]
fn a_slower_candidate_with_a_lost_command_regresses_and_names_the_metrics() {
    let a = smoke_report();
    let slow = derived("regressed.json", |r| {
        let routing = &mut r["stats"]["command_routing"];
        for field in ["p99_ms", "p999_ms", "max_ms"] {
            routing[field] = json!(routing[field].as_f64().unwrap() * 2.0 + 5.0);
        }
        r["stats"]["ledger"]["lost"] = json!(1);
    });
    let (code, out, json) = compare(a, &slow, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("REGRESSION: command_routing.p99_ms, command_routing.p999_ms, ledger.lost"),
        "{out}"
    );
    assert_eq!(json["verdict"], "regression");
    assert_eq!(json["regressions"], 3);
    let row =
        json["rows"].as_array().unwrap().iter().find(|r| r["metric"] == "command_routing.p99_ms").unwrap();
    assert_eq!(row["verdict"], "regression");
    // The other way round the same changes are improvements (lost going down is one too).
    let (code, out, json) = compare(&slow, a, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json["improvements"], 3, "{out}");
}

#[test]
fn input_that_is_no_load_report_is_a_usage_error() {
    let a = smoke_report().to_str().unwrap();
    let garbage = dir().join("garbage.json");
    std::fs::write(&garbage, "this is not a report").unwrap();
    let (code, out) = relaykit(&["report", "--baseline", a, garbage.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("garbage.json") && out.contains("not a load report"), "{out}");
    // JSON, but a conformance report.
    let check = "schemas/examples/valid/tools.check-report.one_failure.json";
    let (code, out) = relaykit(&["report", "--baseline", check, a]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = relaykit(&["report", "--baseline", "/nonexistent/old.json", a]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("reading /nonexistent/old.json"), "{out}");
    let (code, out) = relaykit(&["report", "--baseline", a, a, "--latency-percentiles", "p95"]);
    assert_eq!(code, 2, "{out}");
}

#[test]
fn reports_of_different_scenarios_are_refused_unless_allowed() {
    let a = smoke_report();
    let other = derived("other-scenario.json", |r| r["scenario"] = json!("soak"));
    let (code, out) = relaykit(&["report", "--baseline", a.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("different scenarios") && out.contains("--allow-different-scenarios"), "{out}");
    let (code, out, json) = compare(a, &other, &["--allow-different-scenarios"]);
    assert_eq!(code, 0, "{out}");
    assert!(json["warnings"][0].as_str().unwrap().contains("different scenarios"), "{json}");
}
