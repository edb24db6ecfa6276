//! `relaykit`: one binary, one subcommand per tool. Each subcommand is a thin layer over a
//! library crate; this file only parses arguments and reports errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod capacity;
mod check;
mod inspect;
mod load;
mod merge;
mod proxy;
mod report;
mod serve;

/// Reference relay, conformance suite and load generator for the relay.v1 protocol.
#[derive(Debug, Parser)]
#[command(name = "relaykit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference relay server.
    Serve(serve::ServeArgs),
    /// Run the conformance suite against a relay.
    Check(check::CheckArgs),
    /// Simulate phones and desktops against a relay and check the latency budgets.
    Load(load::LoadArgs),
    /// Merge the result bundles of sharded load workers into one report.
    Merge(merge::MergeArgs),
    /// Run a fault-injecting WebSocket proxy in front of a relay.
    Proxy(proxy::ProxyArgs),
    /// Compare two load reports and print the regressions.
    Report(report::ReportArgs),
    /// Validate JSON messages against the relay.v1 JSON Schemas.
    Validate(inspect::ValidateArgs),
    /// List the embedded JSON Schemas, or print one.
    Schemas(inspect::SchemasArgs),
    /// List the requirement IDs of docs/PROTOCOL.md.
    Requirements(inspect::RequirementsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::Check(args) => check::check(args),
        Command::Load(args) => load::load(args),
        Command::Merge(args) => merge::merge(args),
        Command::Proxy(args) => proxy::proxy(args),
        Command::Report(args) => report::report(args),
        Command::Validate(args) => inspect::validate(args),
        Command::Schemas(args) => inspect::schemas(args),
        Command::Requirements(args) => inspect::requirements(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("relaykit: {err:#}");
            ExitCode::from(2)
        }
    }
}
