//! Frames the relay sends to a device.

use serde::{Deserialize, Serialize};

use crate::client::{Heartbeat, kind_variants};
use crate::codes::ErrorCode;
use crate::common::{DeviceType, E2eEnvelope, Limits, RawJson};
use crate::kind::{DurableKind, LiveKind, wire_enum};

/// Every frame a relay may send. Durable deliveries and live events carry the application
/// `type` they were sent with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ServerFrame {
    Welcome(Welcome),
    Reauthed(Reauthed),
    Ping(Heartbeat),
    Pong(Heartbeat),
    Accepted(Accepted),
    Receipt(Receipt),
    DeviceStatus(DeviceStatus),
    Gap(Gap),
    Error(ErrorFrame),
    UserMessage(Delivery),
    NewTask(Delivery),
    AbortTask(Delivery),
    PauseTask(Delivery),
    ToolComplete(Delivery),
    ToolError(Delivery),
    FileChange(Delivery),
    FileCreate(Delivery),
    FileDelete(Delivery),
    ToolStart(Event),
    ToolProgress(Event),
    SyncStatus(Event),
    ConversationUpdate(Event),
}

kind_variants!(
    ServerFrame,
    DurableKind,
    Delivery,
    delivery,
    as_delivery,
    into_delivery,
    [UserMessage, NewTask, AbortTask, PauseTask, ToolComplete, ToolError, FileChange, FileCreate, FileDelete]
);
kind_variants!(
    ServerFrame,
    LiveKind,
    Event,
    event,
    as_event,
    into_event,
    [ToolStart, ToolProgress, SyncStatus, ConversationUpdate]
);

/// Answer to a valid `hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// New (or resumed) session id; present it in `hello.resume` next time.
    pub session_id: String,
    /// True when the previous session named in `hello.resume` was recognised.
    pub resumed: bool,
    /// The device's user.
    pub user_id: String,
    /// The authenticated device.
    pub device_id: String,
    /// Its type.
    pub device_type: DeviceType,
    /// Identity of the durable store; changes only when the relay lost it.
    pub inbox_epoch: String,
    /// Identity of the live state; new on every relay start.
    pub stream_epoch: String,
    /// Relay clock, Unix ms.
    pub server_time_ms: u64,
    /// When the access token expires (the relay closes with 4006 then unless `reauth`).
    pub token_expires_at_ms: u64,
    /// Limits enforced on this connection.
    pub limits: Limits,
}

/// Answer to a valid `reauth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reauthed {
    /// New expiry of the session's authentication.
    pub token_expires_at_ms: u64,
}

/// A durable send was persisted for every recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The send's id.
    pub id: String,
    /// True when this answers a resend of an already accepted message.
    pub duplicate: bool,
    /// One entry per recipient inbox.
    pub recipients: Vec<Recipient>,
}

/// One recipient entry created by a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// Recipient device.
    pub device_id: String,
    /// Sequence in that device's inbox.
    pub seq: u64,
}

/// A durable message delivered from the recipient's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The sender's message id.
    pub id: String,
    /// Inbox sequence, to acknowledge.
    pub seq: u64,
    /// Sender device, filled in by the relay.
    pub from: String,
    /// Sender device type.
    pub from_type: DeviceType,
    /// Priority 0-9.
    pub priority: u8,
    /// 1 on first delivery, +1 on each redelivery.
    pub attempt: u64,
    /// Time to live left at delivery.
    pub ttl_remaining_ms: u64,
    /// When the relay accepted the message, Unix ms.
    pub sent_at_ms: u64,
    /// Plain JSON body, byte-exact as sent.
    #[serde(default, deserialize_with = "crate::codec::some_raw", skip_serializing_if = "Option::is_none")]
    pub payload: Option<RawJson>,
    /// End-to-end encrypted body, as sent.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eEnvelope>,
}

/// A live message delivered to an online device (or replayed on resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The publisher's optional id.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Stream id.
    pub stream: String,
    /// Per-stream sequence, from 1.
    pub pseq: u64,
    /// Publisher device, filled in by the relay.
    pub from: String,
    /// Publisher device type.
    pub from_type: DeviceType,
    /// When the relay received it, Unix ms.
    pub sent_at_ms: u64,
    /// True when sent from the replay window on resume.
    pub replayed: bool,
    /// Plain JSON body, byte-exact as published.
    #[serde(default, deserialize_with = "crate::codec::some_raw", skip_serializing_if = "Option::is_none")]
    pub payload: Option<RawJson>,
    /// End-to-end encrypted body, as published.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub e2e: Option<E2eEnvelope>,
}

wire_enum! {
    /// Lifecycle state reported to a sender.
    ReceiptState {
        /// Delivered at least once (live notice, not acked).
        Delivered => "delivered",
        /// Acknowledged by the recipient.
        Acked => "acked",
        /// Refused by the recipient.
        Rejected => "rejected",
        /// Time to live ran out.
        Expired => "expired",
        /// Delivery cap reached; dead-lettered.
        Undeliverable => "undeliverable",
        /// Recipient device revoked.
        Revoked => "revoked",
    }
}

impl ReceiptState {
    /// Terminal states travel through the sender's inbox and must be acked.
    pub fn is_terminal(self) -> bool {
        !matches!(self, ReceiptState::Delivered)
    }
}

/// What happened to one recipient entry of a message the device sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The original message id.
    pub id: String,
    /// Recipient device of the entry.
    pub recipient: String,
    /// Sequence of the entry in the recipient's inbox.
    pub recipient_seq: u64,
    /// New state.
    pub state: ReceiptState,
    /// False when the recipient may or may not have processed the message.
    pub definite: bool,
    /// When the state was reached, Unix ms.
    pub at_ms: u64,
    /// Reason given with a reject, or other detail.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Sequence of this receipt in the sender's inbox (terminal states); ack it.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

wire_enum! {
    /// Presence of a device.
    Presence {
        /// Connected.
        Online => "online",
        /// Not connected.
        Offline => "offline",
    }
}

/// Presence of another device of the same user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// The device.
    pub device_id: String,
    /// Its type.
    pub device_type: DeviceType,
    /// Its presence.
    pub status: Presence,
    /// When it changed, Unix ms.
    pub at_ms: u64,
}

wire_enum! {
    /// Why live events are missing.
    GapReason {
        /// Older than the replay window.
        WindowExceeded => "window_exceeded",
        /// The relay restarted; live state is gone.
        EpochChanged => "epoch_changed",
        /// The relay has no such stream.
        UnknownStream => "unknown_stream",
    }
}

/// Live events after `after_pseq` (and before `resume_pseq`, if present) are lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Stream id.
    pub stream: String,
    /// Last position the client reported.
    pub after_pseq: u64,
    /// First retained pseq replayed after this notice, if any.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub resume_pseq: Option<u64>,
    /// Why.
    pub reason: GapReason,
}

/// The one error shape of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// True when the relay closes the connection right after.
    pub fatal: bool,
    /// Id of the frame this answers, when it had one.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub ref_id: Option<String>,
    /// Sequence this answers (ack, nack, reject).
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub ref_seq: Option<u64>,
    /// Offending field, as a dotted path.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Wait before retrying (rate limits, restarts).
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorFrame {
    /// An error with only code and message; fatal iff the code is.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorFrame {
            code,
            message: message.into(),
            fatal: code.is_fatal(),
            ref_id: None,
            ref_seq: None,
            field: None,
            retry_after_ms: None,
        }
    }
}

impl ServerFrame {
    /// The wire `type` of this frame.
    pub fn type_name(&self) -> &'static str {
        match self {
            ServerFrame::Welcome(_) => "welcome",
            ServerFrame::Reauthed(_) => "reauthed",
            ServerFrame::Ping(_) => "ping",
            ServerFrame::Pong(_) => "pong",
            ServerFrame::Accepted(_) => "accepted",
            ServerFrame::Receipt(_) => "receipt",
            ServerFrame::DeviceStatus(_) => "device_status",
            ServerFrame::Gap(_) => "gap",
            ServerFrame::Error(_) => "error",
            other => match (other.as_delivery(), other.as_event()) {
                (Some((k, _)), _) => k.as_str(),
                (_, Some((k, _))) => k.as_str(),
                (None, None) => "unknown",
            },
        }
    }
}
