//! Subcommands that inspect the protocol itself: `validate`, `schemas`, `requirements`.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use relaykit_protocol::requirements::{self, Level};
use relaykit_protocol::schema::{CLIENT_FRAME, Invalid, SERVER_FRAME, SchemaSet};

/// Arguments of `relaykit validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Files to check; `-` or nothing reads standard input.
    files: Vec<PathBuf>,
    /// Schema to check against, e.g. `ws/client/hello` or `rest/server_info` (see `relaykit
    /// schemas`). Default: a document passes if it is a valid client frame or a valid relay frame.
    #[arg(long)]
    schema: Option<String>,
    /// Treat each non-empty line as one document (a captured frame transcript).
    #[arg(long)]
    jsonl: bool,
}

/// Arguments of `relaykit schemas`.
#[derive(Debug, Args)]
pub(crate) struct SchemasArgs {
    /// Print this schema instead of listing names.
    #[arg(long)]
    print: Option<String>,
}

/// Arguments of `relaykit requirements`.
#[derive(Debug, Args)]
pub(crate) struct RequirementsArgs {
    /// Only IDs with this prefix, e.g. `DLV`.
    #[arg(long)]
    prefix: Option<String>,
    /// Only this level: must, should or may.
    #[arg(long, value_parser = ["must", "should", "may"])]
    level: Option<String>,
}

/// Exit 0 when every document is valid, 1 when one is not, 2 on usage or I/O errors.
pub(crate) fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let set = SchemaSet::global();
    if let Some(name) = &args.schema
        && !set.names().any(|n| n == name)
    {
        bail!("unknown schema `{name}` (run `relaykit schemas` for the list)");
    }
    let inputs = if args.files.is_empty() { vec![PathBuf::from("-")] } else { args.files };
    let mut failures = 0usize;
    let mut checked = 0usize;
    for path in &inputs {
        let text = read_input(path)?;
        let docs: Vec<(String, &str)> = if args.jsonl {
            text.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (format!("{}:{}", path.display(), i + 1), l))
                .collect()
        } else {
            vec![(path.display().to_string(), text.as_str())]
        };
        for (label, doc) in docs {
            checked += 1;
            if let Err(invalid) = check(set, args.schema.as_deref(), doc)? {
                failures += 1;
                println!("FAIL {label}: {invalid}");
            } else {
                println!("ok   {label}");
            }
        }
    }
    println!("{checked} checked, {failures} invalid");
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn check(set: &SchemaSet, schema: Option<&str>, doc: &str) -> anyhow::Result<Result<(), Invalid>> {
    if let Some(name) = schema {
        return Ok(set.validate_text(name, doc)?);
    }
    // Without a schema, a frame of either direction passes; report the closer miss.
    let client = set.validate_text(CLIENT_FRAME, doc)?;
    if client.is_ok() {
        return Ok(client);
    }
    let server = set.validate_text(SERVER_FRAME, doc)?;
    Ok(server.and(client))
}

fn read_input(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

pub(crate) fn schemas(args: SchemasArgs) -> anyhow::Result<ExitCode> {
    let set = SchemaSet::global();
    match args.print {
        Some(name) => {
            let text = relaykit_protocol::schema::schema_text(&name)
                .with_context(|| format!("unknown schema `{name}`"))?;
            println!("{text}");
        }
        None => set.names().for_each(|n| println!("{n}")),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn requirements(args: RequirementsArgs) -> anyhow::Result<ExitCode> {
    let level = args.level.as_deref().map(|l| match l {
        "must" => Level::Must,
        "should" => Level::Should,
        _ => Level::May,
    });
    for r in requirements::ALL {
        let prefix_ok = args.prefix.as_deref().is_none_or(|p| r.id.split('-').next() == Some(p));
        if prefix_ok && level.is_none_or(|l| l == r.level) {
            println!("{:<8} {:<6} {}", r.id, r.level.as_str(), r.summary);
        }
    }
    Ok(ExitCode::SUCCESS)
}
