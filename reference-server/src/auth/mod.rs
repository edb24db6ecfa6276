//! Credentials: the relay's Ed25519 signing key ([`keys`]), access tokens ([`jwt`], PROTOCOL.md
//! section 6.4) and the random secrets ([`secrets`]): refresh tokens, pairing codes and
//! relay-assigned identifiers.
//!
//! Nothing here touches the store. Steps 7 to 9 of the validation table (device record, device
//! and family revocation) are the caller's, between [`TokenIssuer::verify_before_expiry`] and
//! [`TokenIssuer::check_expiry`].

pub mod jwt;
pub mod keys;
pub mod secrets;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use jwt::{MAX_ACCESS_TTL_S, MAX_LEEWAY_S, TokenError, TokenIssuer};
pub use keys::{KEY_FILE_NAME, SigningKey};
pub use secrets::{hash_secret, is_pairing_code, pairing_code, random_id, refresh_token};

/// Failure to load or create the signing key file.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading, creating or renaming the key file failed (the message names the path).
    #[error("signing key: {0}")]
    Io(#[from] std::io::Error),
    /// The key file exists but is not a valid key file; it is left untouched.
    #[error("signing key file: {0}")]
    KeyFile(String),
}

/// base64url without padding (RFC 7515 section 2).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url decoding: only `A-Z a-z 0-9 - _`, no padding, no leftover bits, so that one
/// byte string has exactly one accepted spelling.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    if !text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64url_round_trips_every_length() {
        let data: Vec<u8> = (0u8..=255).collect();
        for n in 0..40 {
            let text = b64url_encode(&data[..n]);
            assert!(!text.contains('='), "{text}");
            assert_eq!(b64url_decode(&text).as_deref(), Some(&data[..n]));
        }
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn b64url_decode_is_strict() {
        for bad in ["QQ==", "QQ=", "Q", "a+b/", "ab c", "QR", "Zm9v\n", "Zm9v.", "Zg=="] {
            assert_eq!(b64url_decode(bad), None, "{bad:?} must be rejected");
        }
        // "QR" has non-zero leftover bits; "QQ" is the canonical spelling of the same byte.
        assert_eq!(b64url_decode("QQ"), Some(vec![b'A']));
        assert_eq!(b64url_decode(""), Some(vec![]));
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick(&mut self, alphabet: &[char]) -> char {
            alphabet[self.below(alphabet.len())]
        }
    }

    /// Garbage and mutated tokens never panic, and nothing but the exact minted token verifies.
    #[test]
    fn garbage_and_mutated_tokens_never_panic() {
        use relaykit_protocol::DeviceType;
        let t = TokenIssuer::new(SigningKey::generate(), "relaykit".into(), "relay".into(), 900, 30);
        let now = 1_732_610_000;
        let valid = t.mint(&t.claims("usr_1", "dev_1", DeviceType::Mobile, "fam_1", now));
        assert!(t.verify(&valid, now).is_ok());
        let alphabet: Vec<char> = "AZaz09-_.=+/ {}[]\":,\\\n\0\u{e9}\u{1f600}eyJQ".chars().collect();
        let b64: Vec<char> =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".chars().collect();
        let json_bits =
            ["{", "}", "[", "]", "\"alg\"", ":", ",", "\"EdDSA\"", "null", "1e999", "-0", "\"\\u"];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for round in 0..900 {
            let candidate: String = match round % 3 {
                // Random characters, dots included.
                0 => (0..rng.below(300)).map(|_| rng.pick(&alphabet)).collect(),
                // Three base64url segments of random JSON-ish text.
                1 => (0..3)
                    .map(|_| {
                        let text: String =
                            (0..rng.below(12)).map(|_| json_bits[rng.below(json_bits.len())]).collect();
                        b64url_encode(text.as_bytes())
                    })
                    .collect::<Vec<_>>()
                    .join("."),
                // The valid token with one to three edits.
                _ => {
                    let mut chars: Vec<char> = valid.chars().collect();
                    for _ in 0..1 + rng.below(3) {
                        let at = rng.below(chars.len() + 1);
                        match rng.below(4) {
                            0 if at < chars.len() => chars[at] = rng.pick(&b64),
                            1 if at < chars.len() => {
                                chars.remove(at);
                            }
                            2 => chars.insert(at, rng.pick(&alphabet)),
                            _ => chars.truncate(at),
                        }
                    }
                    chars.into_iter().collect()
                }
            };
            let result = t.verify(&candidate, now);
            if candidate != valid {
                assert!(result.is_err(), "{candidate:?} verified");
                checked += 1;
            }
        }
        assert!(checked > 800, "{checked}");
    }
}
