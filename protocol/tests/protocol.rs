//! One integration-test binary for the protocol crate.

// Loading of example files and the schema -> Rust type table.
mod util;
// Example files against schemas and decoder.
mod examples;
// Property tests: generated frames against schemas and round trips.
mod roundtrip;
// docs/PROTOCOL.md against the crate (requirement IDs, code tables).
mod spec;
