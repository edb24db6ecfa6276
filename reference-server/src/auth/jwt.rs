//! Access tokens (PROTOCOL.md section 6.4): JWS compact serialization, EdDSA (Ed25519) only,
//! written by hand so that every check of the validation table is explicit and in order.

use std::fmt;

use relaykit_protocol::rest::{ACCESS_TOKEN_ALG, ACCESS_TOKEN_TYP, AccessClaims, Jwks};
use relaykit_protocol::validate::{MAX_TOKEN_LEN, is_valid_id};
use relaykit_protocol::{DeviceType, MAX_SAFE_INTEGER};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::keys::SigningKey;
use super::{b64url_decode, b64url_encode, secrets};

/// Longest accepted `exp - iat` (AUTH-1), and the cap applied to the configured access TTL.
pub const MAX_ACCESS_TTL_S: u64 = 3600;
/// Largest clock leeway L (AUTH-2), and the cap applied to the configured leeway.
pub const MAX_LEEWAY_S: u64 = 60;

/// Why a token is not accepted. Every variant but [`TokenError::Expired`] is "invalid" in the
/// validation table (WS 4500, REST 401 `unauthorized`). Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Step 1: not three base64url segments, or header/claims not JSON objects.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Step 2: `alg` absent or not exactly `EdDSA` (the offending value, quoted and shortened).
    #[error("algorithm not accepted: {0}")]
    Algorithm(String),
    /// Step 2: `typ` absent or not exactly `at+jwt`.
    #[error("typ is not at+jwt")]
    Type,
    /// Step 2: `kid` absent, not a string, or not a key of the relay.
    #[error("unknown signing key")]
    UnknownKey,
    /// Step 3: the signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Step 4: a claim is absent or has the wrong JSON type or format.
    #[error("claim {name}: {reason}")]
    Claim {
        /// The claim's name.
        name: &'static str,
        /// What is wrong with it (never its value).
        reason: String,
    },
    /// Step 5: `iss` is not the relay's issuer.
    #[error("wrong issuer")]
    Issuer,
    /// Step 5: `aud` is not the relay's audience.
    #[error("wrong audience")]
    Audience,
    /// Step 6: `nbf` is later than now + L.
    #[error("token not yet valid")]
    NotYetValid,
    /// Step 6: `iat` is later than now + L.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// Step 10: now >= `exp` + L.
    #[error("token expired")]
    Expired,
    /// Step 6: `exp - iat` is not in 1..=3600.
    #[error("token lifetime must be 1 to 3600 seconds")]
    Lifetime,
    /// Step 2: the header has a `crit` member.
    #[error("crit header is not supported")]
    Critical,
}

impl TokenError {
    /// Whether this is the "expired" result (WS 4006 / REST `token_expired`), not "invalid".
    pub fn is_expired(&self) -> bool {
        matches!(self, TokenError::Expired)
    }
}

/// Mints and verifies the relay's access tokens.
#[derive(Debug, Clone)]
pub struct TokenIssuer {
    /// Signs every token; its kid is the only one accepted (AUTH-5).
    key: SigningKey,
    /// `iss` of minted tokens and the only one accepted (= `/v1/info` `issuer`).
    issuer: String,
    /// `aud` of minted tokens and the only one accepted (= `/v1/info` `audience`).
    audience: String,
    /// `exp - iat` of minted tokens, 1..=3600.
    access_ttl_s: u64,
    /// Clock leeway L for nbf/iat/exp, 0..=60.
    leeway_s: u64,
}

impl TokenIssuer {
    /// An issuer signing with `key`. `access_ttl_s` is clamped to 1..=3600 and `leeway_s` to
    /// 0..=60 (the configuration rejects values outside these ranges before this point).
    pub fn new(key: SigningKey, issuer: String, audience: String, access_ttl_s: u64, leeway_s: u64) -> Self {
        TokenIssuer {
            key,
            issuer,
            audience,
            access_ttl_s: access_ttl_s.clamp(1, MAX_ACCESS_TTL_S),
            leeway_s: leeway_s.min(MAX_LEEWAY_S),
        }
    }

    /// `iss` of this relay's tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `aud` of this relay's tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Lifetime of minted access tokens, seconds.
    pub fn access_ttl_s(&self) -> u64 {
        self.access_ttl_s
    }

    /// Clock leeway L, seconds.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    /// The signing key (for its kid and JWK).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Claims for a fresh token: iat = nbf = `now_s`, exp = `now_s` + TTL, a new random `jti`.
    pub fn claims(
        &self,
        user_id: &str,
        device_id: &str,
        device_type: DeviceType,
        family: &str,
        now_s: u64,
    ) -> AccessClaims {
        AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            did: device_id.to_string(),
            dty: device_type,
            fam: family.to_string(),
            jti: secrets::random_id("at"),
            iat: now_s,
            nbf: now_s,
            exp: now_s.saturating_add(self.access_ttl_s),
        }
    }

    /// Signs `claims` with header `{"alg":"EdDSA","typ":"at+jwt","kid":...}`.
    pub fn mint(&self, claims: &AccessClaims) -> String {
        self.sign_objects(&self.header_object(), &claims_object(claims))
    }

    /// Test hook (PROTOCOL.md appendix A, TEST-4): each member of `header` and `claims` replaces
    /// the same top-level member of the valid header and of `base`; a `null` value removes it.
    /// The result is always signed with the real key with Ed25519, whatever `alg` says.
    pub fn mint_with_overrides(
        &self,
        base: &AccessClaims,
        header: &Map<String, Value>,
        claims: &Map<String, Value>,
    ) -> String {
        let mut h = self.header_object();
        let mut c = claims_object(base);
        merge(&mut h, header);
        merge(&mut c, claims);
        self.sign_objects(&h, &c)
    }

    /// Steps 1 to 6 and 10 of the validation table, in order; the first failure is returned.
    /// A caller that checks the device record and revocations (steps 7 to 9) must use
    /// [`Self::verify_before_expiry`], then its own checks, then [`Self::check_expiry`], so that
    /// a revoked device's expired token is reported as revoked (AUTH-3).
    pub fn verify(&self, token: &str, now_s: u64) -> Result<AccessClaims, TokenError> {
        let claims = self.verify_before_expiry(token, now_s)?;
        self.check_expiry(&claims, now_s)?;
        Ok(claims)
    }

    /// Steps 1 to 6 of the validation table, in order. Never panics on any input.
    pub fn verify_before_expiry(&self, token: &str, now_s: u64) -> Result<AccessClaims, TokenError> {
        // Step 1: three base64url segments, header and claims JSON objects.
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("longer than 8192 bytes"));
        }
        let mut segments = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(malformed("not three segments"));
        };
        let header = decode_object(h64, "header")?;
        let claims = decode_object(c64, "claims")?;
        let signature = b64url_decode(s64).ok_or_else(|| malformed("signature is not base64url"))?;

        // Step 2: header.
        match header.get("alg") {
            Some(Value::String(alg)) if alg == ACCESS_TOKEN_ALG => {}
            other => return Err(TokenError::Algorithm(describe(other))),
        }
        if header.get("typ").and_then(Value::as_str) != Some(ACCESS_TOKEN_TYP) {
            return Err(TokenError::Type);
        }
        if header.get("kid").and_then(Value::as_str) != Some(self.key.kid()) {
            return Err(TokenError::UnknownKey);
        }
        if header.contains_key("crit") {
            return Err(TokenError::Critical);
        }

        // Step 3: signature over the segments exactly as received.
        let signing_input = &token[..h64.len() + 1 + c64.len()];
        if !self.key.verify(signing_input.as_bytes(), &signature) {
            return Err(TokenError::Signature);
        }

        // Step 4: every claim present with its JSON type.
        let claims = parse_claims(&claims)?;

        // Step 5: issuer and audience.
        if claims.iss != self.issuer {
            return Err(TokenError::Issuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::Audience);
        }

        // Step 6: times.
        let horizon = now_s.saturating_add(self.leeway_s);
        if claims.nbf > horizon {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > horizon {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.exp <= claims.iat || claims.exp - claims.iat > MAX_ACCESS_TTL_S {
            return Err(TokenError::Lifetime);
        }
        Ok(claims)
    }

    /// Step 10 of the validation table: [`TokenError::Expired`] when now >= `exp` + L.
    pub fn check_expiry(&self, claims: &AccessClaims, now_s: u64) -> Result<(), TokenError> {
        if now_s >= claims.exp.saturating_add(self.leeway_s) { Err(TokenError::Expired) } else { Ok(()) }
    }

    /// The key set published at `GET /v1/jwks`: the one signing key.
    pub fn jwks(&self) -> Jwks {
        Jwks { keys: vec![self.key.jwk()] }
    }

    fn header_object(&self) -> Map<String, Value> {
        let mut h = Map::new();
        h.insert("alg".into(), ACCESS_TOKEN_ALG.into());
        h.insert("typ".into(), ACCESS_TOKEN_TYP.into());
        h.insert("kid".into(), self.key.kid().into());
        h
    }

    fn sign_objects(&self, header: &Map<String, Value>, claims: &Map<String, Value>) -> String {
        let mut token = b64url_encode(Value::Object(header.clone()).to_string().as_bytes());
        token.push('.');
        token.push_str(&b64url_encode(Value::Object(claims.clone()).to_string().as_bytes()));
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&b64url_encode(&signature));
        token
    }
}

fn claims_object(c: &AccessClaims) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, value) in [
        ("iss", &c.iss),
        ("aud", &c.aud),
        ("sub", &c.sub),
        ("did", &c.did),
        ("dty", &c.dty.as_str().to_string()),
        ("fam", &c.fam),
        ("jti", &c.jti),
    ] {
        m.insert(name.into(), Value::String(value.clone()));
    }
    for (name, value) in [("iat", c.iat), ("nbf", c.nbf), ("exp", c.exp)] {
        m.insert(name.into(), value.into());
    }
    m
}

fn merge(target: &mut Map<String, Value>, overrides: &Map<String, Value>) {
    for (name, value) in overrides {
        if value.is_null() {
            target.remove(name);
        } else {
            target.insert(name.clone(), value.clone());
        }
    }
}

fn malformed(reason: &str) -> TokenError {
    TokenError::Malformed(reason.to_string())
}

/// Decodes one segment to a JSON object whose member names are all distinct (RFC 7515 section
/// 5.2 allows rejecting duplicates; accepting them would let two parsers read different values).
fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = b64url_decode(segment).ok_or_else(|| malformed(&format!("{what} is not base64url")))?;
    serde_json::from_slice::<UniqueObject>(&bytes)
        .map(|o| o.0)
        .map_err(|_| malformed(&format!("{what} is not a JSON object with distinct member names")))
}

/// A JSON object, rejected when a member name repeats at the top level.
struct UniqueObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.contains_key(&name) {
                return Err(de::Error::custom("duplicate member name"));
            }
            map.insert(name, value);
        }
        Ok(UniqueObject(map))
    }
}

/// Short printable description of a header value for [`TokenError::Algorithm`].
fn describe(value: Option<&Value>) -> String {
    match value {
        None => "missing".to_string(),
        Some(Value::String(s)) => {
            let mut text: String = s.chars().take(32).flat_map(char::escape_debug).collect();
            if s.chars().count() > 32 {
                text.push_str("...");
            }
            format!("\"{text}\"")
        }
        Some(_) => "not a string".to_string(),
    }
}

fn claim_error(name: &'static str, reason: &str) -> TokenError {
    TokenError::Claim { name, reason: reason.to_string() }
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, TokenError> {
    match claims.get(name) {
        None => Err(claim_error(name, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(claim_error(name, "must be a string")),
    }
}

fn id_claim(claims: &Map<String, Value>, name: &'static str) -> Result<String, TokenError> {
    let s = string_claim(claims, name)?;
    if is_valid_id(s) { Ok(s.to_string()) } else { Err(claim_error(name, "must match the identifier regex")) }
}

/// An integer as section 2.3 defines it: no fraction or exponent, 0..=2^53-1.
fn int_claim(claims: &Map<String, Value>, name: &'static str) -> Result<u64, TokenError> {
    // serde_json keeps `1.0`, `1e0` and `-0` as floats and `-1` as a negative integer, so
    // `as_u64` accepts exactly the integer spellings of section 2.3 (before the range check).
    match claims.get(name) {
        None => Err(claim_error(name, "missing")),
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_SAFE_INTEGER => Ok(n),
            _ => Err(claim_error(name, "must be an integer from 0 to 2^53-1")),
        },
    }
}

/// Step 4, in the order of the claims table.
fn parse_claims(c: &Map<String, Value>) -> Result<AccessClaims, TokenError> {
    let iss = string_claim(c, "iss")?.to_string();
    let aud = string_claim(c, "aud")?.to_string();
    let sub = id_claim(c, "sub")?;
    let did = id_claim(c, "did")?;
    let dty = match string_claim(c, "dty")? {
        "mobile" => DeviceType::Mobile,
        "desktop" => DeviceType::Desktop,
        _ => return Err(claim_error("dty", "must be mobile or desktop")),
    };
    let fam = id_claim(c, "fam")?;
    let jti = id_claim(c, "jti")?;
    let iat = int_claim(c, "iat")?;
    let nbf = int_claim(c, "nbf")?;
    let exp = int_claim(c, "exp")?;
    Ok(AccessClaims { iss, aud, sub, did, dty, fam, jti, iat, nbf, exp })
}

#[cfg(test)]
mod tests;
