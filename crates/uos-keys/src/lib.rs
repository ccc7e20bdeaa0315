//! Key-material port: Ed25519 signing keys (with rotation), their public halves, named symmetric
//! secrets and envelope encryption of secrets at rest, with local key files as the embedded
//! default (`LocalKeyStore`).
//!
//! The production adapter, `TransitKeyStore`, derives the same kinds of keys from Vault/OpenBao
//! Transit and writes nothing to disk.

mod envelope;
mod local;
pub mod testing;
mod transit;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use local::LocalKeyStore;
pub use transit::{TransitConfig, TransitKeyStore};

/// The algorithm name carried in [`PublicKey::algorithm`].
pub const ALGORITHM: &str = "Ed25519";

/// What a signing key is used for. Each purpose has its own key so that an audit key can be
/// published and rotated independently of the token key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPurpose {
    AccessToken,
    Audit,
    /// The decision point's signed decisions (`POST /v1/policy/evaluate`).
    Decision,
}

impl KeyPurpose {
    pub const ALL: [KeyPurpose; 3] = [Self::AccessToken, Self::Audit, Self::Decision];

    /// Stable lowercase name, used for key file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::AccessToken => "access-token",
            KeyPurpose::Audit => "audit",
            KeyPurpose::Decision => "decision",
        }
    }
}

/// Everything that can go wrong obtaining key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is accessible by group or others (mode {mode:o}); it must be 0600")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("invalid secret name {0:?}: use 1-64 chars of a-z, 0-9 and '-'")]
    InvalidSecretName(String),
    /// An empty context would bind a ciphertext to nothing, so it is refused.
    #[error("encryption context must not be empty")]
    EmptyContext,
    /// The text is not `uosenc:<version>:<key id>:<payload>`, or the payload is cut short.
    #[error("not a valid ciphertext: {0}")]
    MalformedCiphertext(&'static str),
    #[error("ciphertext version {0:?} is not supported")]
    UnsupportedCiphertextVersion(String),
    #[error("ciphertext was made with data key {0:?}, which this key store does not hold")]
    UnknownDataKey(String),
    /// Authentication failed: the context differs from the one used to encrypt, or the
    /// ciphertext was altered. The two cannot be told apart, by design.
    #[error("ciphertext does not decrypt: wrong context or altered ciphertext")]
    DecryptionFailed,
    #[error("encryption failed (plaintext too large)")]
    EncryptionFailed,
    /// Vault/OpenBao Transit refused or could not be reached; `setting` names the
    /// configuration key to check.
    #[error("{setting} ({address}): {reason}")]
    Vault {
        setting: &'static str,
        address: String,
        reason: String,
    },
}

/// An Ed25519 private key together with its key id.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    key_id: String,
}

impl SigningKey {
    /// A fresh key from the OS random number generator.
    pub fn generate() -> Self {
        Self::from_seed(&ed25519_dalek::SigningKey::generate(&mut OsRng).to_bytes())
    }

    /// The key whose 32-byte secret seed is `seed` (how key files store it).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let inner = ed25519_dalek::SigningKey::from_bytes(seed);
        let key_id = key_id_of(inner.verifying_key().as_bytes());
        Self { inner, key_id }
    }

    /// First 16 hex chars of sha256(public key bytes): derived, so it cannot drift from the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.inner.sign(msg).to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.to_owned(),
            public_key: STANDARD.encode(self.inner.verifying_key().as_bytes()),
        }
    }

    /// The secret seed; only the key store needs it, to persist the key.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.inner.to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

fn key_id_of(public_key: &[u8]) -> String {
    let mut id = hex::encode(Sha256::digest(public_key));
    id.truncate(16);
    id
}

/// The publishable half of a signing key, in the shape served by `GET /v1/audit/keys`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    /// Always `"Ed25519"`.
    pub algorithm: String,
    /// Standard base64 (with padding) of the 32 raw public key bytes.
    pub public_key: String,
}

impl PublicKey {
    /// Checks an Ed25519 signature. Returns `false` for any malformed key or signature instead of
    /// an error, because callers only ever need "valid or not". Uses strict verification, which
    /// rejects weak keys and malleable signatures.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        if self.algorithm != ALGORITHM {
            return false;
        }
        let Some(key) = self.verifying_key() else {
            return false;
        };
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        key.verify_strict(msg, &sig).is_ok()
    }

    /// The key as a JSON Web Key (RFC 8037 OKP), for JWKS endpoints.
    pub fn to_jwk(&self) -> serde_json::Value {
        // Re-encoding the raw bytes (rather than rewriting the base64 text) guarantees a
        // canonical `x`; a malformed key yields an empty `x`, which no JWK consumer accepts.
        let x = STANDARD
            .decode(&self.public_key)
            .map(|raw| URL_SAFE_NO_PAD.encode(raw))
            .unwrap_or_default();
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": x,
            "kid": self.key_id,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        let raw: [u8; 32] = STANDARD.decode(&self.public_key).ok()?.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw).ok()
    }
}

/// Source of signing keys and symmetric secrets. Implementations are shared across request
/// handlers, hence `Send + Sync + 'static`.
#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug + 'static {
    /// The key new signatures are made with.
    fn signing_key(&self, purpose: KeyPurpose) -> Arc<SigningKey>;
    /// Keys signatures are accepted from: the current one first, then any retained previous
    /// ones, so a JWKS built from this list keeps verifying tokens signed before a rotation.
    fn public_keys(&self, purpose: KeyPurpose) -> Vec<PublicKey>;
    /// A named 32-byte symmetric secret (e.g. `"api-key-pepper"`), created on first use and
    /// kept from then on. Names are 1-64 chars of `a-z`, `0-9`, `-`.
    fn secret(&self, name: &str) -> Result<[u8; 32], KeyError>;
    /// Encrypts a secret for storage (e.g. a TOTP seed), bound to `context` (e.g.
    /// `"totp:<user id>"`): the result only decrypts with the same context, so a ciphertext
    /// copied onto another user's row or field is useless. Like Vault Transit's `encrypt` with a
    /// context, the output is self-describing text (version and key id included) that callers
    /// store as is and treat as opaque.
    fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<String, KeyError>;
    /// Reverses [`KeyProvider::encrypt`]. A wrong context, any alteration, or an unknown
    /// version or key id is an error, never a panic and never wrong plaintext.
    fn decrypt(&self, context: &str, ciphertext: &str) -> Result<Vec<u8>, KeyError>;
    /// Makes a fresh signing key current and keeps the old current key as the previous one (the
    /// key before that is dropped), returning the new key id. Rotate no more often than the
    /// longest lifetime of what the purpose signs, or still-valid signatures stop verifying.
    /// (Transit keeps every version it still allows instead of one previous key.)
    async fn rotate(&self, purpose: KeyPurpose) -> Result<String, KeyError>;
    /// Picks up signing keys another process rotated since they were loaded (replicas that
    /// share keys). Returns whether anything changed; on error the keys held stay in use.
    /// Never blocks on the network: a provider that must ask a server reports a change on the
    /// call after the one that started the refresh.
    fn reload(&self) -> Result<bool, KeyError>;
}

/// Secret names end up in file names, so they are restricted to a safe alphabet.
fn check_secret_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::InvalidSecretName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn sign_verify_roundtrip() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let sig = key.sign(b"hello");
        assert!(public.verify(b"hello", &sig));
    }

    #[test]
    fn tampered_message_or_signature_fails() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let mut sig = key.sign(b"hello");
        assert!(!public.verify(b"hellO", &sig), "changed message must fail");
        sig[10] ^= 1;
        assert!(
            !public.verify(b"hello", &sig),
            "changed signature must fail"
        );
    }

    #[test]
    fn other_key_or_malformed_input_fails_without_panic() {
        let key = SigningKey::generate();
        let sig = key.sign(b"m");
        let other = SigningKey::generate().public_key();
        assert!(!other.verify(b"m", &sig));

        let mut public = key.public_key();
        assert!(!public.verify(b"m", &sig[..63]), "short signature");
        assert!(!public.verify(b"m", &[]), "empty signature");
        public.public_key = "not base64!".into();
        assert!(!public.verify(b"m", &sig));
        public.public_key = STANDARD.encode([1u8; 31]);
        assert!(!public.verify(b"m", &sig));
        let mut wrong_alg = key.public_key();
        wrong_alg.algorithm = "RS256".into();
        assert!(!wrong_alg.verify(b"m", &sig));
    }

    #[test]
    fn key_id_is_sha256_prefix_of_public_key() {
        let key = SigningKey::generate();
        let raw = STANDARD.decode(key.public_key().public_key).unwrap();
        assert_eq!(raw.len(), 32);
        assert_eq!(key.key_id(), &hex::encode(Sha256::digest(&raw))[..16]);
        assert_eq!(key.public_key().key_id, key.key_id());
    }

    #[test]
    fn debug_does_not_print_secret() {
        let key = SigningKey::from_seed(&[7u8; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]"));
        assert!(!shown.contains(&hex::encode([7u8; 32])));
        assert!(
            !shown.contains("07, 07") && !shown.contains("7, 7"),
            "{shown}"
        );
    }

    #[test]
    fn jwk_shape() {
        let key = SigningKey::generate();
        let jwk = key.public_key().to_jwk();
        let obj = jwk.as_object().unwrap();
        assert_eq!(obj.len(), 6);
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.key_id());
        let x = jwk["x"].as_str().unwrap();
        assert!(!x.contains('=') && !x.contains('+') && !x.contains('/'));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(x).unwrap(),
            STANDARD.decode(key.public_key().public_key).unwrap()
        );
    }

    #[test]
    fn secret_names_are_restricted() {
        assert!(check_secret_name("api-key-pepper").is_ok());
        for bad in ["", "../x", "A", "a/b", "a.b", &"x".repeat(65)] {
            assert!(check_secret_name(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
