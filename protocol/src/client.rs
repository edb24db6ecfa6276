//! Frames a device sends to the relay.

use serde::{Deserialize, Serialize};

use crate::common::{E2eEnvelope, RawJson, Target};
use crate::kind::{DurableKind, LiveKind};

/// Every frame a client may send. The `type` field selects the variant; durable and live
/// application types share one shape per class ([`Send`], [`Publish`]).
///
/// Decoding goes through [`crate::codec::decode_client`] (the `Deserialize` impl calls it), which
/// enforces size and depth limits and names the offending field in errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ClientFrame {
    Hello(Hello),
    Reauth(Reauth),
    Ping(Heartbeat),
    Pong(Heartbeat),
    Ack(Ack),
    Nack(Nack),
    Reject(Reject),
    DeviceDisconnect(DeviceDisconnect),
    UserMessage(Send),
    NewTask(Send),
    AbortTask(Send),
    PauseTask(Send),
    ToolComplete(Send),
    ToolError(Send),
    FileChange(Send),
    FileCreate(Send),
    FileDelete(Send),
    ToolStart(Publish),
    ToolProgress(Publish),
    SyncStatus(Publish),
    ConversationUpdate(Publish),
}

/// Maps the per-kind variants of a frame enum to and from a kind enum.
macro_rules! kind_variants {
    ($frame:ident, $kind:ident, $inner:ty, $make:ident, $get:ident, $into:ident,
     [$($variant:ident),+]) => {
        impl $frame {
            /// Builds the variant of this kind.
            pub fn $make(kind: $kind, inner: $inner) -> Self {
                match kind { $($kind::$variant => $frame::$variant(inner),)+ }
            }

            /// The kind and shape, if this is a frame of that class.
            pub fn $get(&self) -> Option<($kind, &$inner)> {
                match self { $($frame::$variant(x) => Some(($kind::$variant, x)),)+ _ => None }
            }

            /// Owned variant of the accessor above; a frame of another class comes back unchanged
            /// so callers can dispatch without cloning (hence the large `Err`).
            #[allow(clippy::result_large_err)]
            pub fn $into(self) -> Result<($kind, $inner), Self> {
                match self { $($frame::$variant(x) => Ok(($kind::$variant, x)),)+ other => Err(other) }
            }
        }
    };
}
pub(crate) use kind_variants;

kind_variants!(
    ClientFrame,
    DurableKind,
    Send,
    send,
    as_send,
    into_send,
    [UserMessage, NewTask, AbortTask, PauseTask, ToolComplete, ToolError, FileChange, FileCreate, FileDelete]
);
kind_variants!(
    ClientFrame,
    LiveKind,
    Publish,
    publish,
    as_publish,
    into_publish,
    [ToolStart, ToolProgress, SyncStatus, ConversationUpdate]
);

/// First frame of every connection: authenticates and optionally resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version, `relay.v1`.
    pub protocol: String,
    /// Access token (JWT). Carried here because browsers cannot set WebSocket headers.
    pub token: String,
    /// Resume information from an earlier connection.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Client software, for logs.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientInfo>,
}

/// What the client remembers of its previous session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Session id from the last `welcome`.
    pub session_id: String,
    /// Inbox epoch from the last `welcome`.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub inbox_epoch: Option<String>,
    /// Stream epoch from the last `welcome`; live positions are only meaningful within it.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub stream_epoch: Option<String>,
    /// Last live event seen per stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamPosition>,
}

/// Position in one live stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Stream id.
    pub stream: String,
    /// Highest `pseq` received.
    pub last_pseq: u64,
}

/// Client software identification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Program name.
    pub name: String,
    /// Program version.
    pub version: String,
}

/// A fresh access token for the running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reauth {
    /// Access token of the same device.
    pub token: String,
}

/// `ping` or `pong` (either direction): a pong echoes the nonce of the ping it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Opaque number chosen by the pinging side.
    pub nonce: u64,
}

/// Positive acknowledgement of one delivery: the entry is durably received by the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Inbox sequence of the delivery.
    pub seq: u64,
}

/// Negative acknowledgement: redeliver later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// Inbox sequence of the delivery.
    pub seq: u64,
    /// Wait before redelivery (default 0).
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
}

/// Terminal refusal of one delivery: never redelivered, the sender is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// Inbox sequence of the delivery.
    pub seq: u64,
    /// Human-readable reason passed on to the sender.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The device leaves on purpose: offline at once, session not resumable.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceDisconnect {
    /// Why, for logs.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A durable message sent to the relay (the `type` is carried by the [`ClientFrame`] variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Send {
    /// Sender-chosen id; idempotency key together with the sender device.
    pub id: String,
    /// Recipient device or role.
    pub to: Target,
    /// 0 (default) to 9; higher is delivered first.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Time to live from acceptance.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Cap on deliveries, counting the first.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u64>,
    /// Plain JSON body, relayed byte-exact.
    #[serde(default, deserialize_with = "crate::codec::some_raw", skip_serializing_if = "Option::is_none")]
    pub payload: Option<RawJson>,
    /// End-to-end encrypted body.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eEnvelope>,
}

/// A live message published to the relay (the `type` is carried by the [`ClientFrame`] variant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Optional sender-chosen id, echoed in errors and events.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Stream id; `pseq` is assigned per (user, stream).
    pub stream: String,
    /// Recipient device or role.
    pub to: Target,
    /// Plain JSON body, relayed byte-exact.
    #[serde(default, deserialize_with = "crate::codec::some_raw", skip_serializing_if = "Option::is_none")]
    pub payload: Option<RawJson>,
    /// End-to-end encrypted body.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eEnvelope>,
}

impl ClientFrame {
    /// The wire `type` of this frame.
    pub fn type_name(&self) -> &'static str {
        match self {
            ClientFrame::Hello(_) => "hello",
            ClientFrame::Reauth(_) => "reauth",
            ClientFrame::Ping(_) => "ping",
            ClientFrame::Pong(_) => "pong",
            ClientFrame::Ack(_) => "ack",
            ClientFrame::Nack(_) => "nack",
            ClientFrame::Reject(_) => "reject",
            ClientFrame::DeviceDisconnect(_) => "device_disconnect",
            other => match (other.as_send(), other.as_publish()) {
                (Some((k, _)), _) => k.as_str(),
                (_, Some((k, _))) => k.as_str(),
                (None, None) => "unknown",
            },
        }
    }
}
