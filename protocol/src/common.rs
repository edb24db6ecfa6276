//! Building blocks shared by several frames: targets, bodies, limits.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest integer every JSON implementation represents exactly (2^53 - 1). Every integer on the
/// wire (seq, pseq, times, counters) must stay at or below it.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The subprotocol name, and the value of `hello.protocol`, of this version.
pub const PROTOCOL_V1: &str = "relay.v1";

/// Kind of device. A user owns devices of both kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    /// A phone or tablet: usually sends commands, receives progress.
    Mobile,
    /// A desktop running the coding agent: receives commands, streams progress.
    Desktop,
}

impl DeviceType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Mobile => "mobile",
            DeviceType::Desktop => "desktop",
        }
    }
}

/// Where a send or publish goes: one device of the sender's user, or all of them with a role.
///
/// Deserialized by hand (through [`TargetRepr`]) so unknown members of `to` are ignored like
/// everywhere else (TRN-7), while exactly one of `device` and `role` is still required.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "TargetRepr")]
pub enum Target {
    /// `{"device": "<device_id>"}`
    Device(String),
    /// `{"role": "desktop"}`: every device of that type of the sender's user except the sender.
    Role(DeviceType),
}

/// The wire shape of `to` while it is checked.
#[derive(Deserialize)]
struct TargetRepr {
    #[serde(default, deserialize_with = "crate::codec::present")]
    device: Option<String>,
    #[serde(default, deserialize_with = "crate::codec::present")]
    role: Option<DeviceType>,
}

impl TryFrom<TargetRepr> for Target {
    type Error = &'static str;

    fn try_from(repr: TargetRepr) -> Result<Self, Self::Error> {
        match (repr.device, repr.role) {
            (Some(d), None) => Ok(Target::Device(d)),
            (None, Some(r)) => Ok(Target::Role(r)),
            (Some(_), Some(_)) => Err("exactly one of `device` and `role`, both given"),
            (None, None) => Err("exactly one of `device` and `role` is required"),
        }
    }
}

/// A JSON value kept as the exact text it arrived in, so the relay forwards it byte-exact
/// without building a tree (and huge numbers survive untouched).
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps JSON text after checking it is one valid JSON value.
    pub fn from_text(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        RawValue::from_string(text.into()).map(RawJson)
    }

    /// Serializes a value into raw JSON (compact).
    pub fn from_value<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(RawJson)
    }

    /// The exact text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.get())
    }
}

/// An end-to-end encrypted body. The relay relays it unchanged and never interprets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct E2eEnvelope {
    /// Algorithm name chosen by the devices, e.g. `x25519-xchacha20poly1305`.
    pub alg: String,
    /// Key id of the recipient key (from the device directory).
    pub kid: String,
    /// base64url nonce.
    pub nonce: String,
    /// base64url ciphertext.
    pub ciphertext: String,
}

/// Limits a relay enforces, advertised in `welcome` and `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest text frame accepted, in bytes; larger frames close the connection with 1009.
    pub max_frame_bytes: u64,
    /// Largest body (`payload` text or `e2e` object), in bytes.
    pub max_payload_bytes: u64,
    /// Deepest JSON nesting accepted in a frame.
    pub max_json_depth: u64,
    /// Most unacknowledged deliveries outstanding on one connection.
    pub max_in_flight: u64,
    /// How long a delivery may stay unacknowledged before the relay closes with 4001.
    pub ack_wait_ms: u64,
    /// Interval of the relay's `ping`; silence for twice this closes with 4002.
    pub heartbeat_ms: u64,
    /// Time allowed between connecting and sending `hello`.
    pub auth_timeout_ms: u64,
    /// Sustained frames per second a connection may send.
    pub rate_limit_per_sec: u64,
    /// Burst of frames above the sustained rate.
    pub rate_limit_burst: u64,
    /// Smallest `ttl_ms` accepted.
    pub ttl_min_ms: u64,
    /// Largest `ttl_ms` accepted; also the minimum idempotency window.
    pub ttl_max_ms: u64,
    /// `ttl_ms` applied when a send omits it.
    pub ttl_default_ms: u64,
    /// `max_attempts` applied when a send omits it.
    pub max_attempts_default: u64,
    /// Largest `max_attempts` accepted.
    pub max_attempts_max: u64,
    /// Most entries one inbox holds.
    pub inbox_max_entries: u64,
    /// Most body bytes one inbox holds.
    pub inbox_max_bytes: u64,
    /// Live events retained per stream for replay.
    pub replay_window_events: u64,
    /// Age after which a live event leaves the replay window.
    pub replay_window_ms: u64,
    /// How long a session can be resumed after its connection ends.
    pub session_expiry_ms: u64,
}

impl Default for Limits {
    /// The defaults of the protocol specification.
    fn default() -> Self {
        Limits {
            max_frame_bytes: 69_632,
            max_payload_bytes: 65_536,
            max_json_depth: 32,
            max_in_flight: 32,
            ack_wait_ms: 30_000,
            heartbeat_ms: 25_000,
            auth_timeout_ms: 10_000,
            rate_limit_per_sec: 100,
            rate_limit_burst: 200,
            ttl_min_ms: 1_000,
            ttl_max_ms: 604_800_000,
            ttl_default_ms: 86_400_000,
            max_attempts_default: 5,
            max_attempts_max: 100,
            inbox_max_entries: 1_000,
            inbox_max_bytes: 16_777_216,
            replay_window_events: 256,
            replay_window_ms: 300_000,
            session_expiry_ms: 120_000,
        }
    }
}
