//! Repository rules that no single crate can check: the CI script runs the README's test
//! command, and the crates keep the dependency directions the architecture needs.

use std::path::Path;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The line after `# test command` in `.ci/run`.
fn ci_test_command() -> String {
    let script = read(".ci/run");
    let mut lines = script.lines().skip_while(|l| !l.starts_with("# test command"));
    lines.next();
    lines.next().expect(".ci/run has a command after `# test command`").trim().to_string()
}

#[test]
fn ci_runs_exactly_the_readme_test_command() {
    let command = ci_test_command();
    assert!(command.contains("cargo test --workspace"), "unexpected CI command: {command}");
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("`{command}`")) || readme.contains(&format!("\n{command}\n")),
        "README.md does not give the CI test command verbatim: {command}"
    );
}

/// Names of the `relaykit-*` crates in the `[dependencies]` table of a manifest (not dev).
fn member_dependencies(manifest: &str) -> Vec<String> {
    let text = read(manifest);
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && line.starts_with("relaykit-") {
            deps.push(line.split(['.', ' ', '=']).next().unwrap().to_string());
        }
    }
    deps
}

#[test]
fn crates_depend_only_in_the_allowed_directions() {
    assert!(member_dependencies("protocol/Cargo.toml").is_empty(), "protocol must depend on no member");
    let client = member_dependencies("client/Cargo.toml");
    assert!(
        client.iter().all(|d| d == "relaykit-protocol"),
        "client may depend on protocol only: {client:?}"
    );
    // The proxy sits between any client and any relay: it must not pull in either side.
    let proxy = member_dependencies("proxy/Cargo.toml");
    assert!(proxy.iter().all(|d| d == "relaykit-protocol"), "proxy may depend on protocol only: {proxy:?}");
    for (manifest, forbidden) in [
        ("conformance/Cargo.toml", ["relaykit-server", "relaykit-loadgen"]),
        ("loadgen/Cargo.toml", ["relaykit-server", "relaykit-conformance"]),
        ("reference-server/Cargo.toml", ["relaykit-conformance", "relaykit-loadgen"]),
    ] {
        let deps = member_dependencies(manifest);
        for f in forbidden {
            assert!(
                !deps.iter().any(|d| d == f),
                "{manifest} must not depend on {f} (only as a dev-dependency)"
            );
        }
        assert!(deps.iter().any(|d| d == "relaykit-protocol"), "{manifest} must use the shared wire model");
    }
}
