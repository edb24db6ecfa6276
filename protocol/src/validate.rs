//! Field rules the serde types cannot express (formats, ranges, "exactly one of"). The JSON
//! Schemas state the same rules; the schema-agreement tests keep the two in step.

use crate::client::{ClientFrame, Hello, Publish, Send};
use crate::common::{E2eEnvelope, MAX_SAFE_INTEGER, RawJson, Target};
use crate::server::ServerFrame;

/// A field that breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn err(field: &str, reason: impl Into<String>) -> Result<(), FieldError> {
    Err(FieldError { field: field.to_string(), reason: reason.into() })
}

/// Frames (and parts of frames) whose fields can be checked.
pub(crate) trait Check {
    /// First rule broken, if any.
    fn check(&self) -> Result<(), FieldError>;
}

/// Longest identifier (message id, device id, stream, session id, epoch).
pub const MAX_ID_LEN: usize = 64;
/// Longest access token accepted in `hello`/`reauth`.
pub const MAX_TOKEN_LEN: usize = 8192;
/// Longest free-text field (reasons, client name/version).
pub const MAX_TEXT_LEN: usize = 1024;

/// `^[A-Za-z0-9._:-]{1,64}$`
pub fn is_valid_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// `^[A-Za-z0-9_-]*={0,2}$`
pub fn is_base64url(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2 && body.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

fn id(field: &str, v: &str) -> Result<(), FieldError> {
    if is_valid_id(v) { Ok(()) } else { err(field, "must match ^[A-Za-z0-9._:-]{1,64}$") }
}

fn uint(field: &str, v: u64) -> Result<(), FieldError> {
    if v <= MAX_SAFE_INTEGER { Ok(()) } else { err(field, "must be at most 9007199254740991") }
}

fn text(field: &str, v: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let n = v.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        err(field, format!("length must be {min}..={max} characters"))
    }
}

fn target(to: &Target) -> Result<(), FieldError> {
    match to {
        Target::Device(d) => id("to.device", d),
        Target::Role(_) => Ok(()),
    }
}

fn e2e(e: &E2eEnvelope) -> Result<(), FieldError> {
    text("e2e.alg", &e.alg, 1, 64)?;
    text("e2e.kid", &e.kid, 1, 128)?;
    if !is_base64url(&e.nonce) {
        return err("e2e.nonce", "must be base64url");
    }
    if !is_base64url(&e.ciphertext) {
        return err("e2e.ciphertext", "must be base64url");
    }
    Ok(())
}

/// Exactly one of `payload` and `e2e`.
fn body(payload: &Option<RawJson>, envelope: &Option<E2eEnvelope>) -> Result<(), FieldError> {
    match (payload, envelope) {
        (Some(_), None) => Ok(()),
        (None, Some(e)) => e2e(e),
        (Some(_), Some(_)) => err("payload", "exactly one of `payload` and `e2e` is allowed, both given"),
        (None, None) => err("payload", "one of `payload` or `e2e` is required"),
    }
}

/// Size counted against `max_payload_bytes`: the payload text as received, or the compact JSON
/// text of the e2e object.
pub fn body_size(payload: &Option<RawJson>, envelope: &Option<E2eEnvelope>) -> usize {
    match (payload, envelope) {
        (Some(p), _) => p.get().len(),
        (None, Some(e)) => crate::codec::encode(e).len(),
        (None, None) => 0,
    }
}

impl Check for Hello {
    fn check(&self) -> Result<(), FieldError> {
        text("protocol", &self.protocol, 1, 64)?;
        text("token", &self.token, 1, MAX_TOKEN_LEN)?;
        if let Some(r) = &self.resume {
            id("resume.session_id", &r.session_id)?;
            if let Some(e) = &r.inbox_epoch {
                id("resume.inbox_epoch", e)?;
            }
            if let Some(e) = &r.stream_epoch {
                id("resume.stream_epoch", e)?;
            }
            for (i, s) in r.streams.iter().enumerate() {
                id(&format!("resume.streams.{i}.stream"), &s.stream)?;
                uint(&format!("resume.streams.{i}.last_pseq"), s.last_pseq)?;
            }
        }
        if let Some(c) = &self.client {
            text("client.name", &c.name, 1, 128)?;
            text("client.version", &c.version, 1, 128)?;
        }
        Ok(())
    }
}

impl Check for Send {
    fn check(&self) -> Result<(), FieldError> {
        id("id", &self.id)?;
        target(&self.to)?;
        if self.priority.is_some_and(|p| p > 9) {
            return err("priority", "must be 0..=9");
        }
        if let Some(t) = self.ttl_ms {
            uint("ttl_ms", t)?;
        }
        if let Some(m) = self.max_attempts {
            if m == 0 {
                return err("max_attempts", "must be at least 1");
            }
            uint("max_attempts", m)?;
        }
        body(&self.payload, &self.e2e)
    }
}

impl Check for Publish {
    fn check(&self) -> Result<(), FieldError> {
        if let Some(i) = &self.id {
            id("id", i)?;
        }
        id("stream", &self.stream)?;
        target(&self.to)?;
        body(&self.payload, &self.e2e)
    }
}

impl Check for ClientFrame {
    fn check(&self) -> Result<(), FieldError> {
        match self {
            ClientFrame::Hello(h) => h.check(),
            ClientFrame::Reauth(r) => text("token", &r.token, 1, MAX_TOKEN_LEN),
            ClientFrame::Ping(h) | ClientFrame::Pong(h) => uint("nonce", h.nonce),
            ClientFrame::Ack(a) => uint("seq", a.seq),
            ClientFrame::Nack(n) => {
                uint("seq", n.seq)?;
                n.delay_ms.map_or(Ok(()), |d| uint("delay_ms", d))
            }
            ClientFrame::Reject(r) => {
                uint("seq", r.seq)?;
                r.reason.as_deref().map_or(Ok(()), |t| text("reason", t, 0, MAX_TEXT_LEN))
            }
            ClientFrame::DeviceDisconnect(d) => {
                d.reason.as_deref().map_or(Ok(()), |t| text("reason", t, 0, MAX_TEXT_LEN))
            }
            other => match (other.as_send(), other.as_publish()) {
                (Some((_, s)), _) => s.check(),
                (_, Some((_, p))) => p.check(),
                (None, None) => Ok(()),
            },
        }
    }
}

impl Check for ServerFrame {
    /// Relay frames get the body rule only; their other formats are checked by the schemas.
    fn check(&self) -> Result<(), FieldError> {
        match (self.as_delivery(), self.as_event()) {
            (Some((_, d)), _) => body(&d.payload, &d.e2e),
            (_, Some((_, e))) => body(&e.payload, &e.e2e),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_pattern() {
        assert!(is_valid_id("0190b3c2-7d7e-7a1b-9f00-1c2d3e4f5a6b"));
        assert!(is_valid_id("dev_a.b:c"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("ünï"));
    }

    #[test]
    fn base64url_allows_padding_only_at_the_end() {
        assert!(is_base64url("AAECAw"));
        assert!(is_base64url("AAECAw=="));
        assert!(!is_base64url("AAECAw==="));
        assert!(!is_base64url("AA+/"));
        assert!(!is_base64url("A=A"));
    }
}
