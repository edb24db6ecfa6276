//! Client-side pieces of relay.v1 that more than one tool needs and that carry I/O (so they do
//! not belong in `relaykit-protocol`): the REST client for now.
//!
//! # Layout
//!
//! - [`http`]: a minimal HTTP/1.1 client that shows exactly what the server sent.

pub mod http;
