//! Users, devices and credentials (PROTOCOL.md section 6): registration, pairing codes, token
//! refresh with reuse detection, the device directory, revocation.

use relaykit_protocol::rest::{
    AccessClaims, DeviceInfo, DeviceList, PairingCode, PublicKey, Registered, TokenPair,
};
use relaykit_protocol::server::{Presence, ReceiptState};
use relaykit_protocol::validate::is_base64url;
use relaykit_protocol::{CloseCode, DeviceType, RestErrorCode};
use serde_json::{Map, Value};

use super::records::{DeviceRecord, FamilyRecord, PairingRecord, RefreshRecord, UserRecord};
use super::{Device, Relay, World, now_ms};
use crate::auth::{self, hash_secret, random_id};
use crate::store::{Mutation, StoreError, Table};

/// A REST failure: code (which fixes the HTTP status), message, offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DirectoryError {
    /// REST error code.
    pub code: RestErrorCode,
    /// Explanation (never contains secrets).
    pub message: String,
    /// Offending request field.
    pub field: Option<String>,
}

fn fail(code: RestErrorCode, message: impl Into<String>) -> DirectoryError {
    DirectoryError { code, message: message.into(), field: None }
}

fn invalid(field: &str, message: impl Into<String>) -> DirectoryError {
    DirectoryError { code: RestErrorCode::InvalidRequest, message: message.into(), field: Some(field.into()) }
}

impl From<StoreError> for DirectoryError {
    fn from(e: StoreError) -> Self {
        fail(RestErrorCode::Internal, format!("store failure: {e}"))
    }
}

/// A registration request after JSON parsing.
#[derive(Debug, Clone)]
pub struct RegistrationInput {
    /// Name, 1-200 characters.
    pub device_name: String,
    /// Type.
    pub device_type: DeviceType,
    /// Platform, 1-50 characters.
    pub platform: String,
    /// Free-form capabilities.
    pub capabilities: Map<String, Value>,
    /// E2E public key.
    pub public_key: PublicKey,
    /// Code to join an existing user.
    pub pairing_code: Option<String>,
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), DirectoryError> {
    let n = value.chars().count();
    if (1..=max).contains(&n) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be 1 to {max} characters")))
    }
}

impl Relay {
    /// `POST /v1/devices`.
    pub async fn register(&self, input: RegistrationInput) -> Result<Registered, DirectoryError> {
        check_len("device_name", &input.device_name, 200)?;
        check_len("platform", &input.platform, 50)?;
        if !matches!(input.public_key.alg.as_str(), "x25519" | "ed25519") {
            return Err(invalid("public_key.alg", "must be x25519 or ed25519"));
        }
        let key_ok = is_base64url(&input.public_key.key)
            && auth::b64url_decode(input.public_key.key.trim_end_matches('=')).is_some_and(|k| k.len() == 32);
        if !key_ok {
            return Err(invalid("public_key.key", "must be 32 bytes in base64url"));
        }
        if let Some(code) = &input.pairing_code
            && !auth::is_pairing_code(code)
        {
            return Err(invalid("pairing_code", "must have the form XXXX-XXXX (Crockford base32)"));
        }
        let now = now_ms();
        let (commit, registered) = {
            let mut world = self.lock();
            let mut batch = Vec::new();
            let user_id = match &input.pairing_code {
                Some(code) => {
                    let valid = world.pairing.get(code).filter(|p| p.expires_at_ms > now).filter(|p| {
                        world.devices.get(&p.created_by).is_some_and(|d| d.record.revoked_at_ms.is_none())
                    });
                    let Some(p) = valid else {
                        // Wrong, expired and used codes are answered identically (PAIR-5).
                        return Err(DirectoryError {
                            field: Some("pairing_code".into()),
                            ..fail(
                                RestErrorCode::InvalidPairingCode,
                                "pairing code is wrong, expired or used",
                            )
                        });
                    };
                    let user = p.user_id.clone();
                    world.pairing.remove(code);
                    batch.push(Mutation::delete(Table::PairingCodes, code.clone()));
                    user
                }
                None if !self.policy.registration_open => {
                    return Err(fail(RestErrorCode::RegistrationClosed, "registration needs a pairing code"));
                }
                None => {
                    let user = UserRecord { user_id: random_id("usr"), created_at_ms: now };
                    batch.push(Mutation::put(Table::Users, user.user_id.clone(), &user));
                    world.users.insert(user.user_id.clone(), user.clone());
                    user.user_id
                }
            };
            let record = DeviceRecord {
                device_id: random_id("dev"),
                user_id: user_id.clone(),
                device_name: input.device_name,
                device_type: input.device_type,
                platform: input.platform,
                capabilities: input.capabilities,
                public_key: input.public_key,
                family: random_id("fam"),
                created_at_ms: now,
                last_seen_at_ms: None,
                revoked_at_ms: None,
            };
            let family = FamilyRecord { device_id: record.device_id.clone(), revoked: false };
            batch.push(Mutation::put(Table::Devices, record.device_id.clone(), &record));
            batch.push(Mutation::put(Table::Families, record.family.clone(), &family));
            world.families.insert(record.family.clone(), family);
            let tokens = self.issue(&mut world, &record, &mut batch, now);
            world.user_devices.entry(user_id.clone()).or_default().push(record.device_id.clone());
            let registered = Registered { user_id, device_id: record.device_id.clone(), tokens };
            let device =
                Device { inbox: super::inbox::Inbox::new(1), record, session: None, last_session: None };
            world.devices.insert(device.record.device_id.clone(), device);
            (self.store.submit(batch), registered)
        };
        commit.await.unwrap_or(Err(StoreError::Stopped))?;
        Ok(registered)
    }

    /// A new access token and refresh token for a device (refresh record queued in `batch`).
    fn issue(
        &self,
        world: &mut World,
        device: &DeviceRecord,
        batch: &mut Vec<Mutation>,
        now: u64,
    ) -> TokenPair {
        let claims = self.issuer.claims(
            &device.user_id,
            &device.device_id,
            device.device_type,
            &device.family,
            now / 1000,
        );
        let access_token = self.issuer.mint(&claims);
        let refresh_token = auth::refresh_token();
        let refresh = RefreshRecord {
            family: device.family.clone(),
            expires_at_ms: now + self.policy.refresh_ttl_ms,
            spent: false,
        };
        let hash = hash_secret(&refresh_token);
        batch.push(Mutation::put(Table::RefreshTokens, hash.clone(), &refresh));
        world.refresh.insert(hash, refresh.clone());
        TokenPair {
            token_type: "Bearer".into(),
            access_token,
            access_expires_at_ms: claims.exp * 1000,
            refresh_token,
            refresh_expires_at_ms: refresh.expires_at_ms,
        }
    }

    /// Checks a bearer token for REST: valid, device active, family not revoked.
    pub fn authenticate(&self, token: &str) -> Result<AccessClaims, DirectoryError> {
        // The order of PROTOCOL.md 6.4.1: steps 1 to 6, the device record and revocations
        // (7 to 9: all plain `unauthorized` on REST), then expiry (10), so that an expired token
        // of a revoked device or with a wrong `dty` or `fam` is `unauthorized` (AUTH-3).
        let now_s = now_ms() / 1000;
        let refused = |code| fail(code, "access token refused");
        let claims = self
            .issuer
            .verify_before_expiry(token, now_s)
            .map_err(|_| refused(RestErrorCode::Unauthorized))?;
        self.check_device(&claims).map_err(|_| refused(RestErrorCode::Unauthorized))?;
        self.issuer.check_expiry(&claims, now_s).map_err(|_| refused(RestErrorCode::TokenExpired))?;
        Ok(claims)
    }

    /// `POST /v1/pairing-codes`.
    pub async fn create_pairing_code(&self, claims: &AccessClaims) -> Result<PairingCode, DirectoryError> {
        let now = now_ms();
        let code = auth::pairing_code();
        let record = PairingRecord {
            user_id: claims.sub.clone(),
            created_by: claims.did.clone(),
            expires_at_ms: now + self.policy.pairing_code_ttl_ms,
        };
        let commit = {
            let mut world = self.lock();
            world.pairing.retain(|_, p| p.expires_at_ms > now);
            world.pairing.insert(code.clone(), record.clone());
            self.store.submit(vec![Mutation::put(Table::PairingCodes, code.clone(), &record)])
        };
        commit.await.unwrap_or(Err(StoreError::Stopped))?;
        Ok(PairingCode { code, expires_at_ms: record.expires_at_ms })
    }

    /// `POST /v1/tokens/refresh`: rotation; a spent token revokes its family (PROTOCOL.md 6.5).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, DirectoryError> {
        let now = now_ms();
        let hash = hash_secret(refresh_token);
        let (commit, outcome) = {
            let mut world = self.lock();
            let Some(record) = world.refresh.get(&hash).cloned() else {
                return Err(fail(RestErrorCode::InvalidRefreshToken, "refresh token refused"));
            };
            let family = world.families.get(&record.family).cloned();
            let device =
                family.as_ref().and_then(|f| world.devices.get(&f.device_id)).map(|d| d.record.clone());
            let (Some(family), Some(device)) = (family, device) else {
                return Err(fail(RestErrorCode::InvalidRefreshToken, "refresh token refused"));
            };
            if record.expires_at_ms <= now {
                return Err(fail(RestErrorCode::InvalidRefreshToken, "refresh token refused"));
            }
            if record.spent && !self.mutated(crate::mutant::Mutant::NoRefreshReuseDetection) {
                // Reuse: someone holds a copy. Revoke the family and drop the device's sockets.
                // A spent token is reported as reused until it expires, also when its family or
                // device was revoked since (TOK-3).
                let mut batch = Vec::new();
                if !family.revoked {
                    let revoked = FamilyRecord { revoked: true, ..family };
                    world.families.insert(record.family.clone(), revoked.clone());
                    Relay::close_device(
                        &world,
                        &device.device_id,
                        CloseCode::SessionRevoked,
                        "refresh token reused",
                    );
                    batch.push(Mutation::put(Table::Families, record.family.clone(), &revoked));
                }
                (
                    self.store.submit(batch),
                    Err(fail(RestErrorCode::RefreshTokenReused, "refresh token reused; sessions revoked")),
                )
            } else if family.revoked || device.revoked_at_ms.is_some() {
                return Err(fail(RestErrorCode::InvalidRefreshToken, "refresh token refused"));
            } else {
                let spent = RefreshRecord { spent: true, ..record };
                world.refresh.insert(hash.clone(), spent.clone());
                let mut batch = vec![Mutation::put(Table::RefreshTokens, hash, &spent)];
                let pair = self.issue(&mut world, &device, &mut batch, now);
                (self.store.submit(batch), Ok(pair))
            }
        };
        commit.await.unwrap_or(Err(StoreError::Stopped))?;
        outcome
    }

    /// `GET /v1/devices`.
    pub fn list_devices(&self, claims: &AccessClaims) -> DeviceList {
        let world = self.lock();
        let devices = world
            .active_devices_of(&claims.sub)
            .map(|d| DeviceInfo {
                device_id: d.record.device_id.clone(),
                device_name: d.record.device_name.clone(),
                device_type: d.record.device_type,
                platform: d.record.platform.clone(),
                capabilities: d.record.capabilities.clone(),
                public_key: d.record.public_key.clone(),
                status: if d.session.is_some() { Presence::Online } else { Presence::Offline },
                last_seen_at_ms: d.record.last_seen_at_ms,
                created_at_ms: d.record.created_at_ms,
            })
            .collect();
        DeviceList { devices }
    }

    /// `DELETE /v1/devices/{id}`: revoke; its inbox entries become `revoked` receipts.
    pub async fn revoke(&self, claims: &AccessClaims, device_id: &str) -> Result<(), DirectoryError> {
        let commit = {
            let mut world = self.lock();
            if world.active_device(&claims.sub, device_id).is_none() {
                return Err(fail(RestErrorCode::NotFound, "no such device"));
            }
            let now = now_ms();
            let device = world.devices.get_mut(device_id).expect("checked");
            device.record.revoked_at_ms = Some(now);
            let record = device.record.clone();
            let slots: Vec<_> = device.inbox.slots().map(|s| s.record.seq).collect();
            let slots: Vec<_> = slots.into_iter().filter_map(|seq| device.inbox.remove(seq)).collect();
            let mut batch = vec![Mutation::put(Table::Devices, device_id.to_string(), &record)];
            if let Some(f) = world.families.get_mut(&record.family) {
                f.revoked = true;
                batch.push(Mutation::put(Table::Families, record.family.clone(), &f.clone()));
            }
            let voided: Vec<String> = world
                .pairing
                .iter()
                .filter(|(_, p)| p.created_by == device_id)
                .map(|(c, _)| c.clone())
                .collect();
            for code in voided {
                world.pairing.remove(&code);
                batch.push(Mutation::delete(Table::PairingCodes, code));
            }
            Relay::close_device(&world, device_id, CloseCode::DeviceRevoked, "device revoked");
            let commit = self.store.submit(batch);
            for slot in slots {
                let definite = !slot.delivered();
                self.finish(
                    &mut world,
                    slot,
                    ReceiptState::Revoked,
                    definite,
                    Some("recipient device revoked"),
                );
            }
            commit
        };
        commit.await.unwrap_or(Err(StoreError::Stopped))?;
        Ok(())
    }
}
