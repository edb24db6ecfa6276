//! The relay.v1 reference relay server (`relaykit serve`).
//!
//! # Layout
//!
//! The data path of a message, in module order:
//! socket -> [`rest`] (HTTP upgrade, axum adapter) -> [`session`] (one task per connection:
//! hello/welcome, heartbeat, rate limit, dispatch) -> [`state`] (users, devices, inboxes, live
//! streams: the relay's rules, in memory) -> [`store`] (durable tables, group commit) -> back
//! through [`state`] to the recipient's session.
//!
//! - [`server`]: builds the relay from a [`config::Config`] and runs it on a bound listener
//!   until a shutdown future resolves.
//! - [`config`]: every setting, from defaults, TOML and environment.
//! - [`auth`]: access tokens (EdDSA JWT), signing keys, refresh tokens, pairing codes.
//! - [`metrics`]: Prometheus counters and histograms.

pub mod auth;
pub mod config;
pub mod metrics;
pub mod mutant;
pub mod rest;
pub mod server;
pub mod session;
pub mod state;
pub mod store;

pub use config::Config;
pub use server::{Running, ServerError, build, run, spawn};
