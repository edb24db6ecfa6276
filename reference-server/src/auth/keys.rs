//! The relay's Ed25519 signing key for access tokens, and its on-disk form
//! `<data_dir>/signing-key.json`: `{"kid": "...", "seed": "<base64url of the 32-byte seed>"}`.

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use ed25519_dalek::Signer as _;
use rand::rngs::OsRng;
use relaykit_protocol::rest::{ACCESS_TOKEN_ALG, Jwk};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{AuthError, b64url_decode, b64url_encode};

/// Name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "signing-key.json";

/// Longest `kid` (PROTOCOL.md section 6.4 header table).
const MAX_KID_LEN: usize = 128;

/// A key file is a few dozen bytes; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The Ed25519 key that signs access tokens, with the `kid` published in the JWKS.
#[derive(Clone)]
pub struct SigningKey {
    /// The key pair; ed25519-dalek zeroizes the secret half on drop.
    key: ed25519_dalek::SigningKey,
    /// Put in every token header and in the JWKS so that verification selects the key by it
    /// (AUTH-5). New keys use the RFC 7638 thumbprint, so the kid changes whenever the key does.
    kid: String,
}

/// On-disk form of the key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Kept so that tokens minted before a restart keep their kid.
    kid: String,
    /// base64url (no padding) of the 32-byte Ed25519 seed.
    seed: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the seed.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("x", &b64url_encode(self.key.verifying_key().as_bytes()))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the OS random generator, not persisted (in-memory runs, tests).
    pub fn generate() -> SigningKey {
        let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
        let kid = thumbprint(&key.verifying_key());
        SigningKey { key, kid }
    }

    /// Loads `<dir>/signing-key.json` or, when it does not exist, creates `dir` if needed and
    /// writes a new key there (file mode 0600 on unix, written to a temporary file then renamed, so
    /// a crash never leaves a half-written key file). A file that exists but cannot be parsed is
    /// an error and is never overwritten.
    pub fn load_or_create(dir: &Path) -> Result<SigningKey, AuthError> {
        let path = dir.join(KEY_FILE_NAME);
        match read_small(&path) {
            Ok(bytes) => {
                warn_if_shared(&path);
                return parse_key_file(&bytes)
                    .map_err(|e| AuthError::KeyFile(format!("{}: {e}", path.display())));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(&path, e)),
        }
        fs::create_dir_all(dir).map_err(|e| with_path(dir, e))?;
        let key = SigningKey::generate();
        write_key_file(dir, &path, &key)?;
        tracing::info!(path = %path.display(), kid = %key.kid, "created a new access-token signing key");
        Ok(key)
    }

    /// Builds a key from its 32-byte seed and kid.
    pub(crate) fn from_seed(seed: &[u8; 32], kid: String) -> SigningKey {
        SigningKey { key: ed25519_dalek::SigningKey::from_bytes(seed), kid }
    }

    /// The key id of token headers and of the JWKS entry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS entry (RFC 8037): kty `OKP`, crv `Ed25519`, alg `EdDSA`, use `sig`.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_string(),
            crv: "Ed25519".to_string(),
            x: b64url_encode(self.key.verifying_key().as_bytes()),
            kid: self.kid.clone(),
            alg: ACCESS_TOKEN_ALG.to_string(),
            use_: "sig".to_string(),
        }
    }

    /// Ed25519 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by this key. Uses strict
    /// verification (canonical `S`, no small-order `R`), so a signature has a single spelling.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match ed25519_dalek::Signature::from_slice(signature) {
            Ok(sig) => self.key.verifying_key().verify_strict(message, &sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 section 2): 43 base64url characters.
fn thumbprint(key: &ed25519_dalek::VerifyingKey) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url_encode(key.as_bytes()));
    b64url_encode(&Sha256::digest(canonical.as_bytes()))
}

fn parse_key_file(bytes: &[u8]) -> Result<SigningKey, String> {
    let file: KeyFile = serde_json::from_slice(bytes).map_err(|e| format!("not a key file: {e}"))?;
    let kid_len = file.kid.chars().count();
    if kid_len == 0 || kid_len > MAX_KID_LEN || file.kid.chars().any(char::is_control) {
        return Err(format!("kid must be 1 to {MAX_KID_LEN} characters without control characters"));
    }
    let seed = b64url_decode(&file.seed).ok_or("seed is not base64url without padding")?;
    let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| "seed must be 32 bytes".to_string())?;
    Ok(SigningKey::from_seed(&seed, file.kid))
}

fn write_key_file(dir: &Path, path: &Path, key: &SigningKey) -> Result<(), AuthError> {
    let file = KeyFile { kid: key.kid.clone(), seed: b64url_encode(key.key.as_bytes()) };
    let mut text = serde_json::to_string_pretty(&file).map_err(|e| AuthError::KeyFile(e.to_string()))?;
    text.push('\n');
    let suffix = crate::auth::secrets::random_id("tmp");
    let tmp = dir.join(format!(".{KEY_FILE_NAME}.{suffix}"));
    let written = write_private(&tmp, text.as_bytes()).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(path, e));
    }
    sync_dir(dir);
    Ok(())
}

/// Creates `path` (which must not exist) readable by the owner only, writes `bytes` and syncs.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the rename durable; best effort (not every platform can open a directory).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "larger than 64 KiB"));
    }
    Ok(bytes)
}

/// Logs a warning when group or others may read the key file.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "signing key file is accessible to other users; expected mode 0600");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn with_path(path: &Path, e: io::Error) -> AuthError {
    AuthError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let name = format!("relaykit-auth-{tag}-{}-{}", std::process::id(), super::super::random_id("t"));
            TempDir(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn seed_from_b64(text: &str) -> [u8; 32] {
        b64url_decode(text).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc8037_vectors_public_key_thumbprint_and_signature() {
        // RFC 8037 appendix A.1 to A.4.
        let key = SigningKey::from_seed(
            &seed_from_b64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"),
            "test".to_string(),
        );
        assert_eq!(key.jwk().x, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(thumbprint(&key.key.verifying_key()), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        let input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let sig = key.sign(input.as_bytes());
        assert_eq!(
            b64url_encode(&sig),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        assert!(key.verify(input.as_bytes(), &sig));
    }

    #[test]
    fn generate_gives_distinct_keys_with_thumbprint_kids() {
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        assert_ne!(a.kid(), b.kid());
        assert_ne!(a.jwk().x, b.jwk().x);
        assert_eq!(a.kid(), thumbprint(&a.key.verifying_key()));
        assert_eq!(a.kid().len(), 43);
    }

    #[test]
    fn jwk_has_the_rfc8037_members() {
        let key = SigningKey::generate();
        let jwk = key.jwk();
        assert_eq!((jwk.kty.as_str(), jwk.crv.as_str()), ("OKP", "Ed25519"));
        assert_eq!((jwk.alg.as_str(), jwk.use_.as_str()), ("EdDSA", "sig"));
        assert_eq!(jwk.kid, key.kid());
        assert_eq!(b64url_decode(&jwk.x).unwrap(), key.key.verifying_key().as_bytes());
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["use"], "sig");
    }

    #[test]
    fn verify_rejects_other_messages_keys_and_lengths() {
        let key = SigningKey::generate();
        let other = SigningKey::generate();
        let sig = key.sign(b"hello");
        assert!(key.verify(b"hello", &sig));
        assert!(!key.verify(b"hellp", &sig));
        assert!(!other.verify(b"hello", &sig));
        assert!(!key.verify(b"hello", &sig[..63]));
        assert!(!key.verify(b"hello", &[]));
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert!(!key.verify(b"hello", &flipped));
    }

    #[test]
    fn debug_does_not_print_the_seed() {
        let key = SigningKey::generate();
        let text = format!("{key:?}");
        assert!(text.contains(key.kid()));
        assert!(!text.contains(&b64url_encode(key.key.as_bytes())));
    }

    #[test]
    fn load_or_create_creates_then_reloads_the_same_key() {
        let tmp = TempDir::new("reload");
        let dir = tmp.0.join("nested").join("data");
        let first = SigningKey::load_or_create(&dir).unwrap();
        let path = dir.join(KEY_FILE_NAME);
        let stored: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(stored["kid"], first.kid());
        assert_eq!(stored["seed"].as_str().map(str::len), Some(43));

        let second = SigningKey::load_or_create(&dir).unwrap();
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.jwk(), second.jwk());
        assert!(second.verify(b"m", &first.sign(b"m")));
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(KEY_FILE_NAME)]);
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_on_unix() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = TempDir::new("mode");
        SigningKey::load_or_create(&tmp.0).unwrap();
        let mode = fs::metadata(tmp.0.join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn load_or_create_keeps_a_given_kid() {
        let tmp = TempDir::new("kid");
        fs::create_dir_all(&tmp.0).unwrap();
        let text = r#"{"kid": "relay-key-2024", "seed": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
        fs::write(tmp.0.join(KEY_FILE_NAME), text).unwrap();
        let key = SigningKey::load_or_create(&tmp.0).unwrap();
        assert_eq!(key.kid(), "relay-key-2024");
        assert_eq!(key.jwk().x, "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    }

    #[test]
    fn invalid_key_files_are_errors_and_left_untouched() {
        let long_kid = "k".repeat(129);
        let cases = [
            "not json".to_string(),
            "{}".to_string(),
            r#"{"kid": "k"}"#.to_string(),
            r#"{"kid": "k", "seed": "AAAA"}"#.to_string(),
            r#"{"kid": "k", "seed": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="}"#.to_string(),
            r#"{"kid": "k", "seed": "nWGxne+9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#.to_string(),
            r#"{"kid": "", "seed": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#.to_string(),
            format!(r#"{{"kid": "{long_kid}", "seed": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}}"#),
            r#"{"kid": "a\nb", "seed": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#.to_string(),
        ];
        for text in cases {
            let tmp = TempDir::new("bad");
            fs::create_dir_all(&tmp.0).unwrap();
            let path = tmp.0.join(KEY_FILE_NAME);
            fs::write(&path, &text).unwrap();
            match SigningKey::load_or_create(&tmp.0) {
                Err(AuthError::KeyFile(msg)) => assert!(msg.contains(KEY_FILE_NAME), "{msg}"),
                other => panic!("{text}: expected KeyFile error, got {other:?}"),
            }
            assert_eq!(fs::read_to_string(&path).unwrap(), text);
        }
    }

    #[test]
    fn unreadable_key_path_is_an_io_error() {
        let tmp = TempDir::new("io");
        // The key "file" is a directory: reading it fails with something other than NotFound.
        fs::create_dir_all(tmp.0.join(KEY_FILE_NAME)).unwrap();
        assert!(matches!(SigningKey::load_or_create(&tmp.0), Err(AuthError::Io(_))));
    }
}
