//! Error codes (WebSocket and REST) and WebSocket close codes.

use serde::{Deserialize, Serialize};

use crate::kind::wire_enum;

wire_enum! {
    /// `error.code` values of WebSocket `error` frames.
    ErrorCode {
        /// Frame is not JSON, or not a JSON object.
        MalformedJson => "malformed_json",
        /// `type` missing, not a string, or unknown.
        UnknownType => "unknown_type",
        /// A field is missing, of the wrong JSON type, out of range or badly formed.
        InvalidField => "invalid_field",
        /// Body larger than `max_payload_bytes`.
        PayloadTooLarge => "payload_too_large",
        /// JSON nested deeper than `max_json_depth`.
        NestingTooDeep => "nesting_too_deep",
        /// A type clients may not send.
        NotAllowed => "not_allowed",
        /// Over the connection's rate limit; see `retry_after_ms`.
        RateLimited => "rate_limited",
        /// Target device unknown, revoked or another user's (indistinguishable).
        UnknownRecipient => "unknown_recipient",
        /// Role target matched no device.
        NoRecipient => "no_recipient",
        /// A recipient inbox is full.
        QueueFull => "queue_full",
        /// Same id as an accepted message, different content.
        IdempotencyConflict => "idempotency_conflict",
        /// `ttl_ms` outside the advertised bounds.
        TtlOutOfRange => "ttl_out_of_range",
        /// `ack`/`nack`/`reject` of a seq never delivered on this inbox.
        UnknownSeq => "unknown_seq",
        /// A second `hello` on an authenticated connection.
        AlreadyAuthenticated => "already_authenticated",
        /// Relay failure; the message may or may not have been accepted.
        Internal => "internal",
        /// Token invalid (close 4500).
        Unauthorized => "unauthorized",
        /// Token expired (close 4006).
        TokenExpired => "token_expired",
        /// Device revoked (close 4501).
        DeviceRevoked => "device_revoked",
        /// Refresh-token family revoked (close 4502).
        SessionRevoked => "session_revoked",
        /// Protocol version not supported (close 4503).
        UnsupportedVersion => "unsupported_version",
        /// Another connection of the same device took over (close 4003).
        SessionReplaced => "session_replaced",
        /// Relay going down (close 4000).
        ServerRestarting => "server_restarting",
        /// No frame from the client for twice the heartbeat (close 4002).
        HeartbeatTimeout => "heartbeat_timeout",
        /// A delivery stayed unacked for `ack_wait_ms` (close 4001).
        AckTimeout => "ack_timeout",
        /// No `hello` in time (close 4005).
        AuthTimeout => "auth_timeout",
        /// First frame not a valid `hello` (close 4504).
        ProtocolViolation => "protocol_violation",
        /// Relay at capacity (close 4004).
        Overloaded => "overloaded",
        /// Sustained flooding after rate-limit errors (close 4007).
        RateLimitAbuse => "rate_limit_abuse",
    }
}

impl ErrorCode {
    /// The close code that follows an error of this code, if it is fatal.
    pub fn close_code(self) -> Option<CloseCode> {
        Some(match self {
            ErrorCode::Unauthorized => CloseCode::Unauthorized,
            ErrorCode::TokenExpired => CloseCode::TokenExpired,
            ErrorCode::DeviceRevoked => CloseCode::DeviceRevoked,
            ErrorCode::SessionRevoked => CloseCode::SessionRevoked,
            ErrorCode::UnsupportedVersion => CloseCode::UnsupportedVersion,
            ErrorCode::SessionReplaced => CloseCode::SessionReplaced,
            ErrorCode::ServerRestarting => CloseCode::ServerRestarting,
            ErrorCode::HeartbeatTimeout => CloseCode::HeartbeatTimeout,
            ErrorCode::AckTimeout => CloseCode::AckTimeout,
            ErrorCode::AuthTimeout => CloseCode::AuthTimeout,
            ErrorCode::ProtocolViolation => CloseCode::ProtocolViolation,
            ErrorCode::Overloaded => CloseCode::Overloaded,
            ErrorCode::RateLimitAbuse => CloseCode::RateLimitAbuse,
            _ => return None,
        })
    }

    /// True when a close follows this error.
    pub fn is_fatal(self) -> bool {
        self.close_code().is_some()
    }
}

/// WebSocket close codes used by the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// 1000: after `device_disconnect`.
    Normal = 1000,
    /// 1003: a binary frame was received.
    UnsupportedData = 1003,
    /// 1009: frame larger than `max_frame_bytes`.
    MessageTooBig = 1009,
    /// 1011: unexpected relay failure.
    InternalError = 1011,
    /// 4000: relay restarting; reconnect after `retry_after_ms`.
    ServerRestarting = 4000,
    /// 4001: a delivery stayed unacked for `ack_wait_ms`.
    AckTimeout = 4001,
    /// 4002: no frame from the client for twice `heartbeat_ms`.
    HeartbeatTimeout = 4002,
    /// 4003: replaced by a newer connection of the same device.
    SessionReplaced = 4003,
    /// 4004: relay at capacity.
    Overloaded = 4004,
    /// 4005: no `hello` within `auth_timeout_ms`.
    AuthTimeout = 4005,
    /// 4006: access token expired; refresh, then reconnect.
    TokenExpired = 4006,
    /// 4007: sustained flooding.
    RateLimitAbuse = 4007,
    /// 4500: token invalid.
    Unauthorized = 4500,
    /// 4501: device revoked.
    DeviceRevoked = 4501,
    /// 4502: refresh-token family revoked (reuse detected).
    SessionRevoked = 4502,
    /// 4503: protocol version not supported.
    UnsupportedVersion = 4503,
    /// 4504: first frame was not a valid `hello`.
    ProtocolViolation = 4504,
}

/// What a client should do after a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAction {
    /// Reconnect with backoff (4000-4499, 1003, 1009, 1011; CLS-3).
    Reconnect,
    /// Do not reconnect automatically with the same credentials (4500-4999; CLS-4).
    Terminal,
    /// Normal close after the client said goodbye.
    Done,
}

impl CloseCode {
    /// Every code, ascending.
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::Normal,
        CloseCode::UnsupportedData,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::ServerRestarting,
        CloseCode::AckTimeout,
        CloseCode::HeartbeatTimeout,
        CloseCode::SessionReplaced,
        CloseCode::Overloaded,
        CloseCode::AuthTimeout,
        CloseCode::TokenExpired,
        CloseCode::RateLimitAbuse,
        CloseCode::Unauthorized,
        CloseCode::DeviceRevoked,
        CloseCode::SessionRevoked,
        CloseCode::UnsupportedVersion,
        CloseCode::ProtocolViolation,
    ];

    /// Numeric value.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// Parses a numeric close code.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// Short name, used as the close reason.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::Normal => "normal",
            CloseCode::UnsupportedData => "unsupported_data",
            CloseCode::MessageTooBig => "message_too_big",
            CloseCode::InternalError => "internal_error",
            CloseCode::ServerRestarting => "server_restarting",
            CloseCode::AckTimeout => "ack_timeout",
            CloseCode::HeartbeatTimeout => "heartbeat_timeout",
            CloseCode::SessionReplaced => "session_replaced",
            CloseCode::Overloaded => "overloaded",
            CloseCode::AuthTimeout => "auth_timeout",
            CloseCode::TokenExpired => "token_expired",
            CloseCode::RateLimitAbuse => "rate_limit_abuse",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::DeviceRevoked => "device_revoked",
            CloseCode::SessionRevoked => "session_revoked",
            CloseCode::UnsupportedVersion => "unsupported_version",
            CloseCode::ProtocolViolation => "protocol_violation",
        }
    }

    /// Client action, from the band the code is in.
    pub fn action(self) -> CloseAction {
        match self.code() {
            1000 => CloseAction::Done,
            1003 | 1009 | 1011 | 4000..=4499 => CloseAction::Reconnect,
            _ => CloseAction::Terminal,
        }
    }
}

wire_enum! {
    /// `error.code` values of REST error bodies.
    RestErrorCode {
        /// Body or parameters invalid (400).
        InvalidRequest => "invalid_request",
        /// Requested protocol version not supported (400).
        UnsupportedVersion => "unsupported_version",
        /// Pairing code wrong, expired or used: indistinguishable (400).
        InvalidPairingCode => "invalid_pairing_code",
        /// Missing or invalid access token (401).
        Unauthorized => "unauthorized",
        /// Access token expired (401).
        TokenExpired => "token_expired",
        /// Refresh token unknown, expired or revoked (401).
        InvalidRefreshToken => "invalid_refresh_token",
        /// A spent refresh token was presented; the family is revoked (401).
        RefreshTokenReused => "refresh_token_reused",
        /// Open registration is off and no pairing code was given (403).
        RegistrationClosed => "registration_closed",
        /// Not allowed (403).
        Forbidden => "forbidden",
        /// No such resource, including another user's device (404).
        NotFound => "not_found",
        /// Body too large (413).
        PayloadTooLarge => "payload_too_large",
        /// Too many requests; see `Retry-After` (429).
        RateLimited => "rate_limited",
        /// Relay failure (500).
        Internal => "internal",
    }
}

impl RestErrorCode {
    /// HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            RestErrorCode::InvalidRequest
            | RestErrorCode::UnsupportedVersion
            | RestErrorCode::InvalidPairingCode => 400,
            RestErrorCode::Unauthorized
            | RestErrorCode::TokenExpired
            | RestErrorCode::InvalidRefreshToken
            | RestErrorCode::RefreshTokenReused => 401,
            RestErrorCode::RegistrationClosed | RestErrorCode::Forbidden => 403,
            RestErrorCode::NotFound => 404,
            RestErrorCode::PayloadTooLarge => 413,
            RestErrorCode::RateLimited => 429,
            RestErrorCode::Internal => 500,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip_and_follow_their_band() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(c.code()), Some(*c));
        }
        assert_eq!(CloseCode::from_code(4999), None);
        assert_eq!(CloseCode::Normal.action(), CloseAction::Done);
        assert_eq!(CloseCode::ServerRestarting.action(), CloseAction::Reconnect);
        assert_eq!(CloseCode::TokenExpired.action(), CloseAction::Reconnect);
        assert_eq!(CloseCode::MessageTooBig.action(), CloseAction::Reconnect);
        assert_eq!(CloseCode::Unauthorized.action(), CloseAction::Terminal);
        assert_eq!(CloseCode::SessionRevoked.action(), CloseAction::Terminal);
    }

    #[test]
    fn fatal_errors_name_their_close_code() {
        for code in ErrorCode::ALL {
            if let Some(close) = code.close_code() {
                assert_eq!(close.name(), code.as_str(), "error and close share a name");
                assert!(code.is_fatal());
            }
        }
        assert!(!ErrorCode::QueueFull.is_fatal());
    }
}
