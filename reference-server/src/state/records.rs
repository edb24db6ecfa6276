//! What the relay persists, one struct per table row (JSON text in the store). Kept apart from
//! the in-memory indexes built from them so the durable format is visible in one place.

use relaykit_protocol::rest::PublicKey;
use relaykit_protocol::server::{Accepted, Receipt};
use relaykit_protocol::{DeviceType, DurableKind, E2eEnvelope, RawJson};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `users` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// User id.
    pub user_id: String,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
}

/// `devices` row. Revoked devices stay (ids are never reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Device id.
    pub device_id: String,
    /// Owner.
    pub user_id: String,
    /// Registered name.
    pub device_name: String,
    /// Mobile or desktop.
    pub device_type: DeviceType,
    /// Registered platform.
    pub platform: String,
    /// Registered capabilities, returned unchanged by the directory.
    pub capabilities: Map<String, Value>,
    /// E2E public key.
    pub public_key: PublicKey,
    /// The device's one refresh-token family.
    pub family: String,
    /// Registration time, Unix ms.
    pub created_at_ms: u64,
    /// Last time a connection of it ended (or now, while connected), Unix ms.
    pub last_seen_at_ms: Option<u64>,
    /// Set when revoked.
    pub revoked_at_ms: Option<u64>,
}

/// `pairing_codes` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingRecord {
    /// User the code joins.
    pub user_id: String,
    /// Device that created it (voided if revoked).
    pub created_by: String,
    /// Expiry, Unix ms.
    pub expires_at_ms: u64,
}

/// `families` row: a refresh-token family (one per device).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyRecord {
    /// Device of the family.
    pub device_id: String,
    /// Set by reuse detection or revocation.
    pub revoked: bool,
}

/// `refresh_tokens` row, keyed by the token's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// Family.
    pub family: String,
    /// Expiry, Unix ms.
    pub expires_at_ms: u64,
    /// Spent by a rotation; presenting it again is reuse.
    pub spent: bool,
}

/// What an inbox entry carries.
///
/// Externally tagged (`{"message": {...}}`) on purpose: an internally tagged enum buffers its
/// content, and a buffered [`RawJson`] payload cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryBody {
    /// A durable message.
    Message {
        /// Its type.
        kind: DurableKind,
        /// Sender's id.
        id: String,
        /// Sender device.
        from: String,
        /// Sender device type.
        from_type: DeviceType,
        /// JSON body, byte-exact.
        payload: Option<RawJson>,
        /// E2E body.
        e2e: Option<E2eEnvelope>,
    },
    /// A terminal receipt for a message this device sent (its `seq` is the entry's).
    Receipt(Receipt),
}

/// `entries` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Inbox owner.
    pub device_id: String,
    /// Sequence in that inbox.
    pub seq: u64,
    /// Content.
    pub body: EntryBody,
    /// 0-9.
    pub priority: u8,
    /// Deliveries so far.
    pub attempts: u64,
    /// Cap on deliveries (`u64::MAX` for receipts: never dead-lettered).
    pub max_attempts: u64,
    /// Relay accept time, Unix ms (`sent_at_ms` of deliveries).
    pub accepted_at_ms: u64,
    /// Expiry, Unix ms (converted to the monotonic clock at load).
    pub expires_at_ms: u64,
    /// Body size counted against `inbox_max_bytes`.
    pub size: u64,
}

/// `idempotency` row, keyed by sender device and message id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// SHA-256 of the send's content (type, target, options after defaults, body).
    pub content_hash: String,
    /// The original answer.
    pub accepted: Accepted,
    /// When the record may be forgotten, Unix ms.
    pub expires_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use relaykit_protocol::server::ReceiptState;

    use super::*;

    /// Every entry shape survives the store's JSON text exactly (payload bytes included).
    #[test]
    fn entry_records_round_trip_through_json() {
        let message = EntryBody::Message {
            kind: DurableKind::NewTask,
            id: "m1".into(),
            from: "dev_a".into(),
            from_type: DeviceType::Mobile,
            payload: Some(RawJson::from_text(r#"{ "n" : 123456789012345678901234567890 }"#).unwrap()),
            e2e: None,
        };
        let receipt = EntryBody::Receipt(Receipt {
            id: "m1".into(),
            recipient: "dev_b".into(),
            recipient_seq: 4,
            state: ReceiptState::Acked,
            definite: true,
            at_ms: 5,
            reason: None,
            seq: Some(9),
        });
        for body in [message, receipt] {
            let record = EntryRecord {
                device_id: "dev_b".into(),
                seq: 4,
                body,
                priority: 3,
                attempts: 1,
                max_attempts: 5,
                accepted_at_ms: 1,
                expires_at_ms: 2,
                size: 40,
            };
            let text = relaykit_protocol::encode(&record);
            let back: EntryRecord = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert_eq!(back, record);
        }
    }
}
