//! Embeds the JSON Schemas of `../schemas/` and turns the requirement bullets of
//! `../docs/PROTOCOL.md` into constants, so the crate, the schemas and the specification cannot
//! drift apart silently: an ID removed from the spec breaks every crate that cites it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("protocol/ lives in the workspace root").to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let schemas = root.join("schemas");
    println!("cargo:rerun-if-changed={}", schemas.display());
    let mut files = Vec::new();
    collect_schemas(&schemas, &schemas, &mut files);
    files.sort();
    let mut code =
        String::from("/// (name, text) of every schema file, name = path under schemas/ without `.json`.\n");
    code.push_str("pub(crate) const SCHEMA_FILES: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    fs::write(out.join("schema_files.rs"), code).expect("write schema_files.rs");

    let spec = root.join("docs").join("PROTOCOL.md");
    println!("cargo:rerun-if-changed={}", spec.display());
    let text = fs::read_to_string(&spec).unwrap_or_default();
    fs::write(out.join("requirements.rs"), requirements_code(&text)).expect("write requirements.rs");
}

fn collect_schemas(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            // Examples are test data, not schemas.
            if path.file_name().is_some_and(|n| n != "examples") {
                collect_schemas(base, &path, out);
            }
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path.strip_prefix(base).expect("under base").with_extension("");
            let name =
                rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push((name, path));
        }
    }
}

/// Parses bullets of the form `- **DLV-3** (MUST) text...`.
fn requirements_code(spec: &str) -> String {
    let mut consts = String::new();
    let mut all = String::from(
        "/// Every requirement of docs/PROTOCOL.md, in document order.\npub const ALL: &[Requirement] = &[\n",
    );
    for line in spec.lines() {
        let Some(rest) = line.strip_prefix("- **") else { continue };
        let Some((id, rest)) = rest.split_once("** (") else { continue };
        let Some((level, summary)) = rest.split_once(") ") else { continue };
        let level = match level {
            "MUST" => "Must",
            "SHOULD" => "Should",
            "MAY" => "May",
            _ => continue,
        };
        if !id.contains('-') || !id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        {
            continue;
        }
        let summary: String = summary.trim().chars().take(200).collect();
        let ident = id.replace('-', "_");
        writeln!(consts, "/// {id} ({level}): {}", summary.replace('\n', " ")).unwrap();
        writeln!(
            consts,
            "pub const {ident}: Requirement = Requirement {{ id: {id:?}, level: Level::{level}, summary: {summary:?} }};"
        )
        .unwrap();
        writeln!(all, "    {ident},").unwrap();
    }
    all.push_str("];\n");
    consts + &all
}
