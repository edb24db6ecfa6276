//! Random secrets and identifiers, all from the OS random generator: refresh tokens (TOK-1),
//! pairing codes (PAIR-2) and relay-assigned ids (section 2.4).

use rand::Rng as _;
use rand::RngCore as _;
use rand::distributions::Alphanumeric;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};

use super::b64url_encode;

/// Prefix of every refresh token, so a leaked one is recognisable (secret scanners, logs).
pub const REFRESH_TOKEN_PREFIX: &str = "rt_";

/// Crockford base32 alphabet (no I, L, O, U).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Number of random characters after `<prefix>_` in [`random_id`] (about 131 bits).
const ID_RANDOM_CHARS: usize = 22;

/// A new opaque refresh token: `rt_` followed by 32 random bytes in base64url without padding
/// (46 characters, 256 bits).
pub fn refresh_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{REFRESH_TOKEN_PREFIX}{}", b64url_encode(&bytes))
}

/// What the store keeps instead of a secret: base64url (no padding) of its SHA-256. Refresh
/// tokens carry 256 random bits, so an unsalted fast hash is enough to make a leaked table useless.
pub fn hash_secret(secret: &str) -> String {
    b64url_encode(&Sha256::digest(secret.as_bytes()))
}

/// A new pairing code: 8 Crockford base32 characters (40 random bits) shown as `XXXX-XXXX`.
pub fn pairing_code() -> String {
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes[3..]);
    let bits = u64::from_be_bytes(bytes);
    let mut code = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            code.push('-');
        }
        let index = (bits >> (35 - 5 * i)) & 0x1f;
        code.push(char::from(CROCKFORD[index as usize]));
    }
    code
}

/// Whether `code` is a pairing code in canonical form,
/// `^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$` (section 2.4).
pub fn is_pairing_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 9
        && bytes.iter().enumerate().all(|(i, b)| if i == 4 { *b == b'-' } else { CROCKFORD.contains(b) })
}

/// A new relay-assigned id: `prefix` + `_` + 22 random characters of `[A-Za-z0-9]`. With a
/// prefix of at most 41 characters from the identifier alphabet the result matches
/// `^[A-Za-z0-9._:-]{1,64}$`.
pub fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 1 + ID_RANDOM_CHARS);
    id.push_str(prefix);
    id.push('_');
    id.extend((0..ID_RANDOM_CHARS).map(|_| char::from(OsRng.sample(Alphanumeric))));
    id
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use relaykit_protocol::validate::is_valid_id;

    use super::*;
    use crate::auth::b64url_decode;

    #[test]
    fn refresh_tokens_are_prefixed_256_bit_and_distinct() {
        let a = refresh_token();
        let b = refresh_token();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), 46, "{t}");
            let rest = t.strip_prefix("rt_").unwrap();
            assert_eq!(b64url_decode(rest).map(|v| v.len()), Some(32));
            assert!(!t.contains('.'), "must not look like a JWT");
        }
    }

    #[test]
    fn hash_secret_is_base64url_sha256() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 b00361a3 96177a9c b410ff61 f20015ad
        assert_eq!(hash_secret("abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
        assert_eq!(hash_secret(""), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        let t = refresh_token();
        assert_eq!(hash_secret(&t), hash_secret(&t));
        assert_ne!(hash_secret(&t), hash_secret(&refresh_token()));
    }

    #[test]
    fn pairing_codes_are_canonical_and_use_the_whole_alphabet() {
        let mut seen = HashSet::new();
        let mut codes = HashSet::new();
        for _ in 0..400 {
            let code = pairing_code();
            assert!(is_pairing_code(&code), "{code}");
            seen.extend(code.bytes().filter(|b| *b != b'-'));
            codes.insert(code);
        }
        // 3200 characters: every one of the 32 symbols shows up unless the generator is broken.
        assert_eq!(seen.len(), 32, "{seen:?}");
        assert!(codes.len() >= 399, "codes repeat: {}", codes.len());
    }

    #[test]
    fn is_pairing_code_follows_the_regex() {
        for good in ["0000-0000", "ABCD-EFGH", "JKMN-PQRS", "TVWX-YZ19"] {
            assert!(is_pairing_code(good), "{good}");
        }
        for bad in [
            "",
            "ABCDEFGH",
            "ABCD-EFG",
            "ABCD-EFGHJ",
            "abcd-efgh",
            "ABCD_EFGH",
            "ABCI-EFGH",
            "ABCL-EFGH",
            "ABCO-EFGH",
            "ABCU-EFGH",
            "ABCD-EFGÉ",
            " ABC-EFGH",
        ] {
            assert!(!is_pairing_code(bad), "{bad}");
        }
    }

    #[test]
    fn random_ids_match_the_id_regex_and_differ() {
        let a = random_id("dev");
        let b = random_id("dev");
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert!(is_valid_id(id), "{id}");
            assert_eq!(id.len(), 26);
            let rest = id.strip_prefix("dev_").unwrap();
            assert!(rest.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
        assert!(is_valid_id(&random_id(&"p".repeat(41))));
        assert!(!is_valid_id(&random_id(&"p".repeat(42))));
    }
}
