//! REST bodies under `/v1/` and the access-token (JWT) claim set.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::codes::RestErrorCode;
use crate::common::{DeviceType, Limits};
use crate::server::Presence;

/// `GET /v1/info`: what a client must know before connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Supported subprotocols, e.g. `["relay.v1"]`.
    pub protocol_versions: Vec<String>,
    /// Implementation name and version.
    pub server: ServerSoftware,
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Path of the JWKS document.
    pub jwks_uri: String,
    /// Whether `POST /v1/devices` without a pairing code creates users.
    pub registration_open: bool,
    /// Optional features offered: `e2e`, `test_tokens`.
    pub capabilities: Vec<String>,
    /// Limits enforced on WebSocket sessions.
    pub limits: Limits,
}

/// Implementation identification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSoftware {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// `GET /v1/jwks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// Signing keys.
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// base64url public key.
    pub x: String,
    /// Key id, matches the JWT header `kid`.
    pub kid: String,
    /// `EdDSA`.
    pub alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// A device's public key, published in the directory for end-to-end encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    /// `x25519` or `ed25519`.
    pub alg: String,
    /// base64url key bytes.
    pub key: String,
}

/// `POST /v1/devices` body (the seed's `device_register`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterDevice {
    /// Human-readable name, 1-200 chars.
    pub device_name: String,
    /// Mobile or desktop.
    pub device_type: DeviceType,
    /// Platform, e.g. `ios`, `macos`; 1-50 chars.
    pub platform: String,
    /// Free-form capabilities object.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub capabilities: Map<String, Value>,
    /// Device public key.
    pub public_key: PublicKey,
    /// Pairing code from an already registered device of the user to join.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub pairing_code: Option<String>,
}

/// `201` answer to `POST /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// Owning user (new or the pairing code's).
    pub user_id: String,
    /// Relay-assigned device id.
    pub device_id: String,
    /// First token pair.
    pub tokens: TokenPair,
}

/// Access + refresh token pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenPair {
    /// Always `Bearer`.
    pub token_type: String,
    /// JWT access token.
    pub access_token: String,
    /// Its expiry, Unix ms.
    pub access_expires_at_ms: u64,
    /// Opaque, single-use refresh token.
    pub refresh_token: String,
    /// Its expiry, Unix ms.
    pub refresh_expires_at_ms: u64,
}

/// `201` answer to `POST /v1/pairing-codes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairingCode {
    /// `XXXX-XXXX`, Crockford base32, one-time.
    pub code: String,
    /// Expiry, Unix ms.
    pub expires_at_ms: u64,
}

/// `POST /v1/tokens/refresh` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    /// The current refresh token; spent by this call.
    pub refresh_token: String,
}

/// `GET /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    /// The caller's user's devices.
    pub devices: Vec<DeviceInfo>,
}

/// One device in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device id.
    pub device_id: String,
    /// Name.
    pub device_name: String,
    /// Type.
    pub device_type: DeviceType,
    /// Platform.
    pub platform: String,
    /// Capabilities as registered.
    pub capabilities: Map<String, Value>,
    /// Public key for end-to-end encryption.
    pub public_key: PublicKey,
    /// Presence.
    pub status: Presence,
    /// Last time it was connected, Unix ms.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub last_seen_at_ms: Option<u64>,
    /// Registration time, Unix ms.
    pub created_at_ms: u64,
}

/// Every REST error body: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: RestError,
}

/// REST error detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestError {
    /// Machine-readable code.
    pub code: RestErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Offending field.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Wait before retrying.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Claims of an access token; all are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (= `ServerInfo::issuer`).
    pub iss: String,
    /// Audience (= `ServerInfo::audience`).
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Device id.
    pub did: String,
    /// Device type.
    pub dty: DeviceType,
    /// Refresh-token family id.
    pub fam: String,
    /// Token id.
    pub jti: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Not before, Unix seconds.
    pub nbf: u64,
    /// Expires, Unix seconds.
    pub exp: u64,
}

/// `typ` header value of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The only signature algorithm accepted.
pub const ACCESS_TOKEN_ALG: &str = "EdDSA";

/// `POST /v1/test/tokens` body (optional test hook).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TestTokenRequest {
    /// Claims merged over a valid claim set for the caller; `null` removes a claim.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    /// Header fields merged over the valid header.
    #[serde(default, deserialize_with = "crate::codec::present", skip_serializing_if = "Option::is_none")]
    pub header: Option<Map<String, Value>>,
}

/// `POST /v1/test/tokens` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestTokenResponse {
    /// The signed token.
    pub token: String,
}

/// Protected header of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenHeader {
    /// Always [`ACCESS_TOKEN_ALG`].
    pub alg: String,
    /// Always [`ACCESS_TOKEN_TYP`].
    pub typ: String,
    /// Signing key id (in `GET /v1/jwks`).
    pub kid: String,
}
