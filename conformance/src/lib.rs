//! `relaykit check`: the relay.v1 conformance suite. It talks to a server only over the
//! protocol (REST + WebSocket), so it validates implementations in any language.
//!
//! # Layout
//!
//! - [`http`] (from `relaykit-client`) and [`conn`]: the REST client and the WebSocket connection; every relay frame is
//!   checked against the JSON Schemas and recorded in the case's transcript.
//! - [`case`]: what a case is ([`case::Case`]), what it can do ([`case::Ctx`], [`case::Session`]).
//! - [`cases`]: the catalogue, one module per group.
//! - [`runner`]: concurrent, isolated, time-bounded execution.
//! - [`report`]: PASS/FAIL/WARN/SKIP with evidence; table, JSON, JUnit; requirement coverage.

pub mod case;
pub mod cases;
pub mod conn;
pub use relaykit_client::http;
pub mod report;
pub mod runner;

pub use case::Case;
pub use report::Report;
pub use runner::{CheckConfig, CheckError, run};

/// Cases whose id starts with, or whose group equals, one of `filters`; all when empty.
pub fn select(cases: &[Case], filters: &[String]) -> Vec<Case> {
    cases
        .iter()
        .filter(|c| {
            filters.is_empty() || filters.iter().any(|f| c.id.starts_with(f.as_str()) || c.group == f)
        })
        .copied()
        .collect()
}
