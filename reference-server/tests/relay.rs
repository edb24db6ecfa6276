//! Integration tests of the reference relay (PROTOCOL.md is normative; requirement IDs are cited
//! at each test). One binary: every test starts its own ephemeral relay on 127.0.0.1:0 in its
//! own runtime, so the tests run concurrently and share nothing.

mod util;

mod auth;
mod badinput;
mod delivery;
mod live;
mod rest;
mod session;
