//! `relaykit load`: simulates phones and desktops against any relay.v1 server and checks the
//! seed's budgets (command routing, real-time updates, connection) and at-least-once delivery.
//!
//! # Layout
//!
//! The data path (after hatoo/oha): [`device`] tasks (one per simulated device) report raw
//! timestamps over a channel -> one [`record::Aggregator`] (HdrHistograms, the delivery ledger,
//! the per-second series) -> [`report`] (SLO verdict, JSON, terminal table) -> [`html`] (the
//! same report as one self-contained page with inline SVG charts).
//!
//! - [`scenario`]: scenario files (`scenarios/*.toml`).
//! - [`run`]: provisioning, connecting, driving the phases, draining.

pub mod baseline;
pub mod capacity;
mod capacity_html;
pub mod device;
pub mod faults;
pub mod harness;
pub mod html;
pub mod record;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod workers;

pub use report::Report;
pub use run::{
    LoadError, Options, Simulation, check_limits, run, run_managed, run_with, simulate, simulate_with,
};
pub use scenario::Scenario;
