//! The `relaykit` binary end to end: exit codes and output of the protocol subcommands.

use std::process::Command;

fn relaykit(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relaykit"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run relaykit");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

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
