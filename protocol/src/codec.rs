//! Text frame <-> typed frame, with the limits of the protocol applied before any allocation
//! that grows with the input, and errors that name the offending field.
//!
//! Decoding is two-pass: a cheap peek reads `type` (and `id`, so errors can reference it), then
//! the frame text is parsed straight into the struct of that type. The second pass is a plain
//! struct parse, which is what lets bodies stay [`RawJson`] (serde cannot buffer a raw value
//! through an internally tagged enum).

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::client::ClientFrame;
use crate::codes::{CloseCode, ErrorCode};
#[cfg(test)]
use crate::common::Target;
use crate::common::{Limits, RawJson};
use crate::kind::{DurableKind, LiveKind};
use crate::server::ServerFrame;
use crate::validate::{Check, FieldError};

/// The limits the codec enforces on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest frame text, bytes.
    pub max_frame_bytes: usize,
    /// Largest body (`payload` text or `e2e` object), bytes.
    pub max_payload_bytes: usize,
    /// Deepest nesting of objects and arrays, the frame itself counting as 1.
    pub max_json_depth: usize,
}

impl DecodeLimits {
    /// No size limits; depth still bounded by serde_json's recursion guard.
    pub const UNBOUNDED: DecodeLimits =
        DecodeLimits { max_frame_bytes: usize::MAX, max_payload_bytes: usize::MAX, max_json_depth: 128 };
}

impl From<&Limits> for DecodeLimits {
    fn from(l: &Limits) -> Self {
        let cap = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        DecodeLimits {
            max_frame_bytes: cap(l.max_frame_bytes),
            max_payload_bytes: cap(l.max_payload_bytes),
            max_json_depth: cap(l.max_json_depth),
        }
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::from(&Limits::default())
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Larger than `max_frame_bytes` (the relay closes with 1009).
    #[error("frame of {len} bytes exceeds max_frame_bytes ({max})")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Not JSON.
    #[error("frame is not valid JSON: {0}")]
    Malformed(String),
    /// JSON, but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// Nested too deep.
    #[error("JSON nesting deeper than max_json_depth ({max})")]
    TooDeep {
        /// Limit.
        max: usize,
    },
    /// `type` missing or not a string.
    #[error("field `type` is missing or not a string")]
    MissingType,
    /// `type` unknown.
    #[error("unknown type `{0}`")]
    UnknownType(String),
    /// A type only the other side may send.
    #[error("type `{0}` may not be sent in this direction")]
    NotAllowed(String),
    /// A field is missing, mistyped, out of range or malformed.
    #[error("field `{field}`: {reason}")]
    InvalidField {
        /// Dotted path, e.g. `to.device`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Body over `max_payload_bytes`.
    #[error("body of {len} bytes exceeds max_payload_bytes ({max})")]
    PayloadTooLarge {
        /// Body length.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// A refused frame, with the `id` it carried when one could be read (for `error.ref_id`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct DecodeError {
    /// What is wrong.
    pub kind: DecodeErrorKind,
    /// The frame's `id`, if readable.
    pub ref_id: Option<String>,
}

impl DecodeError {
    fn new(kind: DecodeErrorKind) -> Self {
        DecodeError { kind, ref_id: None }
    }

    /// The `error.code` a relay answers with. (For [`DecodeErrorKind::FrameTooLarge`] no error
    /// frame is sent: the relay closes with 1009, see [`DecodeError::close_code`].)
    pub fn code(&self) -> ErrorCode {
        match self.kind {
            DecodeErrorKind::FrameTooLarge { .. } | DecodeErrorKind::PayloadTooLarge { .. } => {
                ErrorCode::PayloadTooLarge
            }
            DecodeErrorKind::Malformed(_) | DecodeErrorKind::NotObject => ErrorCode::MalformedJson,
            DecodeErrorKind::TooDeep { .. } => ErrorCode::NestingTooDeep,
            DecodeErrorKind::MissingType | DecodeErrorKind::UnknownType(_) => ErrorCode::UnknownType,
            DecodeErrorKind::NotAllowed(_) => ErrorCode::NotAllowed,
            DecodeErrorKind::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }

    /// The close code when the error ends the connection regardless of state (oversize frame).
    pub fn close_code(&self) -> Option<CloseCode> {
        matches!(self.kind, DecodeErrorKind::FrameTooLarge { .. }).then_some(CloseCode::MessageTooBig)
    }

    /// The offending field, for `error.field`.
    pub fn field(&self) -> Option<&str> {
        match &self.kind {
            DecodeErrorKind::InvalidField { field, .. } => Some(field),
            DecodeErrorKind::MissingType | DecodeErrorKind::UnknownType(_) => Some("type"),
            _ => None,
        }
    }
}

impl From<FieldError> for DecodeErrorKind {
    fn from(e: FieldError) -> Self {
        DecodeErrorKind::InvalidField { field: e.field, reason: e.reason }
    }
}

/// Control types only the relay sends, and `device_register` (REST only).
const SERVER_ONLY: &[&str] =
    &["welcome", "reauthed", "accepted", "receipt", "device_status", "gap", "error", "device_register"];
/// Control types only clients send.
const CLIENT_ONLY: &[&str] = &["hello", "reauth", "ack", "nack", "reject", "device_disconnect"];

/// Decodes one client text frame, enforcing `limits` and the field rules of the protocol.
pub fn decode_client(text: &str, limits: &DecodeLimits) -> Result<ClientFrame, DecodeError> {
    let (ty, ref_id) = peek(text, limits)?;
    let with_ref = |kind: DecodeErrorKind| DecodeError { kind, ref_id: ref_id.clone() };
    let frame = match ty.as_ref() {
        "hello" => ClientFrame::Hello(parse(text).map_err(with_ref)?),
        "reauth" => ClientFrame::Reauth(parse(text).map_err(with_ref)?),
        "ping" => ClientFrame::Ping(parse(text).map_err(with_ref)?),
        "pong" => ClientFrame::Pong(parse(text).map_err(with_ref)?),
        "ack" => ClientFrame::Ack(parse(text).map_err(with_ref)?),
        "nack" => ClientFrame::Nack(parse(text).map_err(with_ref)?),
        "reject" => ClientFrame::Reject(parse(text).map_err(with_ref)?),
        "device_disconnect" => ClientFrame::DeviceDisconnect(parse(text).map_err(with_ref)?),
        t if SERVER_ONLY.contains(&t) => return Err(with_ref(DecodeErrorKind::NotAllowed(t.into()))),
        t => match (DurableKind::from_name(t), LiveKind::from_name(t)) {
            (Some(k), _) => ClientFrame::send(k, parse(text).map_err(with_ref)?),
            (_, Some(k)) => ClientFrame::publish(k, parse(text).map_err(with_ref)?),
            (None, None) => return Err(with_ref(DecodeErrorKind::UnknownType(t.into()))),
        },
    };
    frame.check().map_err(|e| with_ref(e.into()))?;
    let size = match (frame.as_send(), frame.as_publish()) {
        (Some((_, s)), _) => crate::validate::body_size(&s.payload, &s.e2e),
        (_, Some((_, p))) => crate::validate::body_size(&p.payload, &p.e2e),
        (None, None) => 0,
    };
    if size > limits.max_payload_bytes {
        return Err(with_ref(DecodeErrorKind::PayloadTooLarge { len: size, max: limits.max_payload_bytes }));
    }
    Ok(frame)
}

/// Decodes one relay text frame (used by clients, the conformance suite and the load
/// generator). Size limits apply; field formats are left to the JSON Schemas.
pub fn decode_server(text: &str, limits: &DecodeLimits) -> Result<ServerFrame, DecodeError> {
    let (ty, ref_id) = peek(text, limits)?;
    let with_ref = |kind: DecodeErrorKind| DecodeError { kind, ref_id: ref_id.clone() };
    let frame = match ty.as_ref() {
        "welcome" => ServerFrame::Welcome(parse(text).map_err(with_ref)?),
        "reauthed" => ServerFrame::Reauthed(parse(text).map_err(with_ref)?),
        "ping" => ServerFrame::Ping(parse(text).map_err(with_ref)?),
        "pong" => ServerFrame::Pong(parse(text).map_err(with_ref)?),
        "accepted" => ServerFrame::Accepted(parse(text).map_err(with_ref)?),
        "receipt" => ServerFrame::Receipt(parse(text).map_err(with_ref)?),
        "device_status" => ServerFrame::DeviceStatus(parse(text).map_err(with_ref)?),
        "gap" => ServerFrame::Gap(parse(text).map_err(with_ref)?),
        "error" => ServerFrame::Error(parse(text).map_err(with_ref)?),
        t if CLIENT_ONLY.contains(&t) => return Err(with_ref(DecodeErrorKind::NotAllowed(t.into()))),
        t => match (DurableKind::from_name(t), LiveKind::from_name(t)) {
            (Some(k), _) => ServerFrame::delivery(k, parse(text).map_err(with_ref)?),
            (_, Some(k)) => ServerFrame::event(k, parse(text).map_err(with_ref)?),
            (None, None) => return Err(with_ref(DecodeErrorKind::UnknownType(t.into()))),
        },
    };
    frame.check().map_err(|e| with_ref(e.into()))?;
    Ok(frame)
}

/// Encodes any frame (or REST body) as compact JSON text.
pub fn encode<T: Serialize + ?Sized>(frame: &T) -> String {
    // Every protocol type serializes: all map keys are strings and raw values are valid JSON.
    serde_json::to_string(frame).expect("protocol types always serialize to JSON")
}

/// The first pass: size, depth, object-ness, then `type` and `id`.
fn peek<'a>(text: &'a str, limits: &DecodeLimits) -> Result<(Cow<'a, str>, Option<String>), DecodeError> {
    if text.len() > limits.max_frame_bytes {
        return Err(DecodeError::new(DecodeErrorKind::FrameTooLarge {
            len: text.len(),
            max: limits.max_frame_bytes,
        }));
    }
    if exceeds_depth(text, limits.max_json_depth) {
        return Err(DecodeError::new(DecodeErrorKind::TooDeep { max: limits.max_json_depth }));
    }
    #[derive(Deserialize)]
    struct Peek<'a> {
        #[serde(rename = "type", borrow, default)]
        ty: Option<PeekStr<'a>>,
        #[serde(borrow, default)]
        id: Option<PeekStr<'a>>,
    }
    /// A string, or any other JSON value (then `None`).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum PeekStr<'a> {
        Str(#[serde(borrow)] Cow<'a, str>),
        Other(serde::de::IgnoredAny),
    }
    impl<'a> PeekStr<'a> {
        fn into_str(self) -> Option<Cow<'a, str>> {
            match self {
                PeekStr::Str(s) => Some(s),
                PeekStr::Other(_) => None,
            }
        }
    }
    let is_object = text.trim_start().starts_with('{');
    if !is_object {
        // Checked before the peek: serde would read a JSON array into the peek struct.
        return Err(DecodeError::new(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => DecodeErrorKind::NotObject,
            Err(e) => DecodeErrorKind::Malformed(e.to_string()),
        }));
    }
    let peeked: Peek<'a> = serde_json::from_str(text).map_err(|e| {
        DecodeError::new(match e.classify() {
            serde_json::error::Category::Data => {
                let reason = e.to_string();
                let field = named_member(&reason).unwrap_or("type").to_string();
                DecodeErrorKind::InvalidField { field, reason }
            }
            _ => DecodeErrorKind::Malformed(e.to_string()),
        })
    })?;
    // Only a well-formed id may be echoed as `ref_id` (ERR-1).
    let ref_id = peeked
        .id
        .and_then(PeekStr::into_str)
        .filter(|id| crate::validate::is_valid_id(id))
        .map(Cow::into_owned);
    match peeked.ty.and_then(PeekStr::into_str) {
        Some(ty) => Ok((ty, ref_id)),
        None => Err(DecodeError { kind: DecodeErrorKind::MissingType, ref_id }),
    }
}

/// The second pass: the whole text into one struct, errors carrying the field path.
fn parse<T: DeserializeOwned>(text: &str) -> Result<T, DecodeErrorKind> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        // PROTOCOL.md 2.5 writes array indexes as `.N`; serde_path_to_error writes `[N]`.
        let path = e.path().to_string().replace('[', ".").replace(']', "");
        let inner = e.into_inner();
        let reason = inner.to_string();
        // serde reports a missing field at its parent; name the field itself.
        let field = match named_member(&reason) {
            Some(missing) if path == "." => missing.to_string(),
            Some(missing) => format!("{path}.{missing}"),
            None => path,
        };
        let reason = reason.split(" at line ").next().unwrap_or(&reason).to_string();
        DecodeErrorKind::InvalidField { field, reason }
    })
}

/// True when objects/arrays nest deeper than `max` (the frame itself is depth 1). Runs before
/// any parse so a hostile frame cannot make the parser recurse.
fn exceeds_depth(text: &str, max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `deserialize_with` for optional members: absent is `None` (via `#[serde(default)]`), but a
/// present `null` is a wrong JSON type, as PROTOCOL.md 2.3 says (serde would read it as `None`).
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The member named in serde's "missing field `x`" / "duplicate field `x`" messages.
fn named_member(reason: &str) -> Option<&str> {
    ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|p| reason.strip_prefix(p))
        .and_then(|r| r.split('`').next())
}

/// `deserialize_with` for bodies: a present `payload` is always `Some`, even when it is `null`.
pub(crate) fn some_raw<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawJson>, D::Error> {
    RawJson::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for ClientFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        decode_client(raw.get(), &DecodeLimits::UNBOUNDED).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for ServerFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawJson::deserialize(d)?;
        decode_server(raw.get(), &DecodeLimits::UNBOUNDED).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(text: &str) -> Result<ClientFrame, DecodeError> {
        decode_client(text, &DecodeLimits::default())
    }

    fn field_of(text: &str) -> String {
        let err = client(text).expect_err("must be refused");
        assert_eq!(err.code(), ErrorCode::InvalidField, "{err}");
        err.field().expect("names a field").to_string()
    }

    #[test]
    fn oversize_frame_closes_with_1009_before_parsing() {
        let limits = DecodeLimits { max_frame_bytes: 16, ..DecodeLimits::default() };
        let err = decode_client(r#"{"type":"ping","nonce":12345}"#, &limits).unwrap_err();
        assert_eq!(err.close_code(), Some(CloseCode::MessageTooBig));
        assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn oversize_body_is_a_non_fatal_error_that_names_the_message() {
        let body = "x".repeat(70_000);
        let text =
            format!(r#"{{"type":"new_task","id":"m-7","to":{{"role":"desktop"}},"payload":"{body}"}}"#);
        let limits = DecodeLimits { max_frame_bytes: 100_000, ..DecodeLimits::default() };
        let err = decode_client(&text, &limits).unwrap_err();
        assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
        assert_eq!(err.close_code(), None);
        assert_eq!(err.ref_id.as_deref(), Some("m-7"));
    }

    #[test]
    fn deep_nesting_is_refused_before_the_parser_recurses() {
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        let text = format!(r#"{{"type":"new_task","id":"m","to":{{"role":"desktop"}},"payload":{deep}}}"#);
        let limits = DecodeLimits { max_frame_bytes: usize::MAX, ..DecodeLimits::default() };
        assert_eq!(decode_client(&text, &limits).unwrap_err().code(), ErrorCode::NestingTooDeep);
        // Brackets inside strings do not count.
        let text = format!(
            r#"{{"type":"new_task","id":"m","to":{{"role":"desktop"}},"payload":"{}"}}"#,
            "[".repeat(100)
        );
        assert!(client(&text).is_ok());
    }

    #[test]
    fn not_json_and_not_objects_are_malformed() {
        for text in
            ["", "hello", "{\"type\":", "[1,2]", "\"ping\"", "42", "{\"type\":\"ping\",\"nonce\":1} x"]
        {
            assert_eq!(client(text).unwrap_err().code(), ErrorCode::MalformedJson, "{text:?}");
        }
    }

    #[test]
    fn type_problems_are_unknown_type_or_not_allowed() {
        assert_eq!(client(r#"{"nonce":1}"#).unwrap_err().code(), ErrorCode::UnknownType);
        assert_eq!(client(r#"{"type":7}"#).unwrap_err().code(), ErrorCode::UnknownType);
        let err = client(r#"{"type":"teleport","id":"m-1"}"#).unwrap_err();
        assert_eq!((err.code(), err.ref_id.as_deref()), (ErrorCode::UnknownType, Some("m-1")));
        for t in ["welcome", "device_status", "device_register", "error", "receipt"] {
            let text = format!(r#"{{"type":"{t}"}}"#);
            assert_eq!(client(&text).unwrap_err().code(), ErrorCode::NotAllowed, "{t}");
        }
    }

    #[test]
    fn field_errors_name_the_field() {
        assert_eq!(field_of(r#"{"type":"new_task","id":"m","payload":1}"#), "to");
        assert_eq!(field_of(r#"{"type":"new_task","id":"m","to":{"device":5},"payload":1}"#), "to.device");
        assert_eq!(field_of(r#"{"type":"new_task","id":"m","to":{"role":"fridge"},"payload":1}"#), "to.role");
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop"},"priority":10,"payload":1}"#),
            "priority"
        );
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop"},"priority":"high","payload":1}"#),
            "priority"
        );
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"has space","to":{"role":"desktop"},"payload":1}"#),
            "id"
        );
        assert_eq!(field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop"}}"#), "payload");
        assert_eq!(field_of(r#"{"type":"ack","seq":123456789012345678901234567890}"#), "seq");
        assert_eq!(field_of(r#"{"type":"ack","seq":9007199254740992}"#), "seq");
        assert_eq!(field_of(r#"{"type":"ack","seq":1e400}"#), "seq");
        assert_eq!(
            field_of(
                r#"{"type":"hello","protocol":"relay.v1","token":"t","resume":{"session_id":"s","streams":[{"stream":"a","last_pseq":-1}]}}"#
            ),
            "resume.streams.0.last_pseq"
        );
    }

    #[test]
    fn repeated_member_names_are_invalid_fields() {
        let err = client(r#"{"type":"ack","type":"ping","seq":1}"#).unwrap_err();
        assert_eq!((err.code(), err.field()), (ErrorCode::InvalidField, Some("type")));
        let err = client(r#"{"type":"ack","seq":1,"seq":2}"#).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidField, "{err}");
    }

    #[test]
    fn null_is_a_wrong_type_not_an_absent_member() {
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop"},"priority":null,"payload":1}"#),
            "priority"
        );
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop"},"payload":1,"e2e":null}"#),
            "e2e"
        );
        assert_eq!(field_of(r#"{"type":"nack","seq":1,"delay_ms":null}"#), "delay_ms");
    }

    #[test]
    fn duplicates_name_the_member_and_bad_ids_are_not_echoed() {
        let err = client(r#"{"type":"ack","id":"a","id":"b","seq":1}"#).unwrap_err();
        assert_eq!(err.field(), Some("id"), "{err}");
        let err = client(r#"{"type":"teleport","id":"not valid!"}"#).unwrap_err();
        assert_eq!(err.ref_id, None);
    }

    #[test]
    fn unknown_members_of_to_are_ignored_but_one_target_is_required() {
        let frame = client(r#"{"type":"new_task","id":"m","to":{"role":"desktop","zone":"eu"},"payload":1}"#)
            .unwrap();
        assert_eq!(frame.as_send().unwrap().1.to, Target::Role(crate::DeviceType::Desktop));
        assert_eq!(
            field_of(r#"{"type":"new_task","id":"m","to":{"role":"desktop","device":"d"},"payload":1}"#),
            "to"
        );
        assert_eq!(field_of(r#"{"type":"new_task","id":"m","to":{},"payload":1}"#), "to");
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let frame = client(r#"{"type":"ack","seq":4,"future_field":{"x":1}}"#).unwrap();
        assert_eq!(frame, ClientFrame::Ack(crate::client::Ack { seq: 4 }));
    }

    #[test]
    fn payload_null_is_a_present_body() {
        let frame =
            client(r#"{"type":"tool_progress","stream":"s","to":{"role":"mobile"},"payload":null}"#).unwrap();
        let (_, p) = frame.as_publish().unwrap();
        assert_eq!(p.payload.as_ref().map(RawJson::get), Some("null"));
    }
}
