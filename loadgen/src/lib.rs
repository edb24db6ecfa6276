//! The load generator (`relaykit load`). Not implemented yet: tracked by issue #5. Talks to a server only over the protocol; the server is at most a dev-dependency.
//!
//! The crate exists so the workspace layout and its dependency rules (see the workspace
//! `README.md`) are in place; it exports nothing yet.
