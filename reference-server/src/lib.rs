//! The reference relay server (`relaykit serve`). Not implemented yet: tracked by issue #3.
//!
//! The crate exists so the workspace layout and its dependency rules (see the workspace
//! `README.md`) are in place; it exports nothing yet.
