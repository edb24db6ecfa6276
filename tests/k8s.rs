//! `ci/k8s/` stays in step with the CLI: every flag the load and merge Jobs pass is one that
//! `relaykit load --help` / `relaykit merge --help` offers, the load Job is Indexed with one pod
//! per shard, and run.sh fills in every placeholder the manifests use. The YAML is read as text
//! (the manifests are kept simple enough for that).

use std::path::Path;
use std::process::Command;

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The manifest without its comment lines.
fn manifest(rel: &str) -> String {
    read(rel).lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n")
}

fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_relaykit")).args([subcommand, "--help"]).output().unwrap();
    assert!(out.status.success(), "relaykit {subcommand} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The items of the first `args:` list of a manifest: `- item` lines (a folded `- >-` item
/// continues on the lines indented deeper than its dash), unquoted.
fn container_args(yaml: &str) -> Vec<String> {
    let lines = yaml.lines().skip_while(|l| l.trim() != "args:").skip(1);
    let mut items: Vec<String> = Vec::new();
    let mut dash_indent = None;
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if let Some(item) = text.strip_prefix("- ") {
            if dash_indent.is_some_and(|d| indent != d) {
                break;
            }
            dash_indent = Some(indent);
            items.push(item.trim_matches('"').to_string());
        } else if dash_indent.is_some_and(|d| indent > d) && items.last().is_some_and(|i| i.starts_with('>'))
        {
            let last = items.last_mut().unwrap();
            last.push(' ');
            last.push_str(text);
        } else {
            break;
        }
    }
    items.into_iter().map(|i| i.trim_start_matches(">-").trim().to_string()).collect()
}

/// The value of `key:` in the manifest (first occurrence).
fn field<'a>(yaml: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    yaml.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{key}:` in the manifest"))
        .trim()
}

/// Flags (`--x`) among `words` that `help` does not list.
fn unknown_flags<'a>(words: impl Iterator<Item = &'a str>, help: &str) -> Vec<String> {
    words
        .filter(|w| w.starts_with("--"))
        .filter(|f| ![" ", "\n", "="].iter().any(|end| help.contains(&format!("{f}{end}"))))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_load_job_is_indexed_with_one_pod_per_shard_and_uses_only_load_flags() {
    let yaml = manifest("ci/k8s/load-job.yaml");
    assert_eq!(field(&yaml, "kind"), "Job");
    assert_eq!(field(&yaml, "completionMode"), "Indexed");
    assert_eq!(field(&yaml, "completions"), field(&yaml, "parallelism"), "every shard must run at once");
    assert_eq!(field(&yaml, "completions"), "${SHARDS}");
    let args = container_args(&yaml);
    assert_eq!(args.first().map(String::as_str), Some("load"), "{args:?}");
    let unknown = unknown_flags(args.iter().map(String::as_str), &help("load"));
    assert!(unknown.is_empty(), "flags relaykit load does not offer: {unknown:?}");
    let value = |flag: &str| {
        let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("no {flag} in {args:?}"));
        args[at + 1].clone()
    };
    assert_eq!(value("--shard"), "$(JOB_COMPLETION_INDEX)/${SHARDS}");
    assert_eq!(value("--start-at-ms"), "${START_AT_MS}");
    assert_eq!(value("--target"), "${TARGET}");
    assert!(value("--bundle").starts_with("/results/shard-$(JOB_COMPLETION_INDEX)"), "{args:?}");
    // The scenario comes from the ConfigMap run.sh creates, mounted at /scenario.
    assert_eq!(args[1], "/scenario/scenario.toml");
    assert!(yaml.contains("mountPath: /scenario\n"), "{yaml}");
    assert!(read("ci/k8s/run.sh").contains("--from-file=\"scenario.toml=$scenario\""));
}

#[test]
fn the_merge_job_uses_only_merge_flags_and_reads_every_bundle() {
    let yaml = manifest("ci/k8s/merge-job.yaml");
    let args = container_args(&yaml);
    let script = args.join(" ");
    let words: Vec<&str> = script.split_whitespace().skip_while(|w| *w != "relaykit").collect();
    assert_eq!(words.get(1), Some(&"merge"), "{script}");
    let unknown = unknown_flags(words.iter().copied(), &help("merge"));
    assert!(unknown.is_empty(), "flags relaykit merge does not offer: {unknown:?}");
    for flag in ["--scenario", "--report-json", "--report-html"] {
        assert!(words.contains(&flag), "{flag} missing from {script}");
    }
    assert!(
        words.contains(&"/scenario/scenario.toml") && words.contains(&"/results/shard-*.json"),
        "{script}"
    );
}

#[test]
fn run_sh_fills_in_every_placeholder_of_the_manifests() {
    let run = read("ci/k8s/run.sh");
    for file in ["load-job.yaml", "merge-job.yaml"] {
        let yaml = manifest(&format!("ci/k8s/{file}"));
        assert!(run.contains(&format!("render {file}")), "run.sh does not apply {file}");
        for (i, _) in yaml.match_indices("${") {
            let name = &yaml[i + 2..i + 2 + yaml[i + 2..].find('}').unwrap()];
            assert!(
                run.contains(&format!("s|\\${{{name}}}|")),
                "run.sh does not substitute ${{{name}}} ({file})"
            );
        }
    }
    if let Ok(out) =
        Command::new("bash").args(["-n", "ci/k8s/run.sh"]).current_dir(env!("CARGO_MANIFEST_DIR")).output()
    {
        assert!(out.status.success(), "run.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
}
