//! The `relay.v1` wire model shared by the reference server, the conformance suite and the
//! load generator. `docs/PROTOCOL.md` is normative; this crate is its executable form.
//!
//! # Layout
//!
//! - [`kind`]: the application vocabulary (`new_task`, `tool_progress`, ...) and delivery classes.
//! - [`common`]: targets, bodies ([`RawJson`] relayed byte-exact, [`E2eEnvelope`]), [`Limits`].
//! - [`client`] / [`server`]: every WebSocket frame, one enum per direction
//!   ([`ClientFrame`], [`ServerFrame`]) tagged by `type`.
//! - [`rest`]: REST bodies under `/v1/` and the access-token claim set.
//! - [`codes`]: `error` codes (WebSocket and REST) and close codes with their bands.
//! - [`codec`]: text <-> frame with size/depth limits and field-naming errors.
//! - [`validate`]: format and range rules serde cannot express.
//! - [`schema`]: JSON Schema validator over `schemas/` (compiled once).
//! - [`requirements`]: the requirement IDs of `docs/PROTOCOL.md` (generated from it).

pub mod client;
pub mod codec;
pub mod codes;
pub mod common;
pub mod kind;
pub mod requirements;
pub mod rest;
pub mod schema;
pub mod server;
pub mod validate;

pub use client::ClientFrame;
pub use codec::{DecodeError, DecodeErrorKind, DecodeLimits, decode_client, decode_server, encode};
pub use codes::{CloseAction, CloseCode, ErrorCode, RestErrorCode};
pub use common::{DeviceType, E2eEnvelope, Limits, MAX_SAFE_INTEGER, PROTOCOL_V1, RawJson, Target};
pub use kind::{DurableKind, LiveKind, MessageKind};
pub use server::ServerFrame;
