//! Envelope encryption of small secrets at rest (TOTP seeds) with a local 32-byte data key.
//!
//! Text format: `uosenc:v1:<key id>:<base64url(nonce || ciphertext || tag)>`, XChaCha20-Poly1305
//! with a random 24-byte nonce. The 192-bit nonce is what makes random nonces safe: collisions
//! stay negligible for far more messages than one key will ever see. The associated data is the
//! header (`uosenc:v1:<key id>:`) followed by the caller's context, so neither the context nor
//! the version/key id in front can be changed without decryption failing.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::KeyError;

/// What every ciphertext made by the local key store starts with.
const CIPHERTEXT_PREFIX: &str = "uosenc";
const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longest version text echoed back in an error, so hostile input cannot bloat logs.
const MAX_ECHO: usize = 16;

/// A symmetric key for [`crate::KeyProvider::encrypt`], with an id derived from it.
#[derive(Clone)]
pub(crate) struct DataKey {
    key: [u8; 32],
    key_id: String,
}

impl DataKey {
    pub(crate) fn from_bytes(key: [u8; 32]) -> Self {
        // Hashed with a label so the id reveals nothing usable about the key and cannot collide
        // with ids derived the same way for other key types.
        let mut hasher = Sha256::new();
        hasher.update(b"uos data key id\0");
        hasher.update(key);
        let mut key_id = hex::encode(hasher.finalize());
        key_id.truncate(16);
        Self { key, key_id }
    }

    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn encrypt(&self, context: &str, plaintext: &[u8]) -> Result<String, KeyError> {
        check_context(context)?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let header = header(&self.key_id);
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(&header, context),
                },
            )
            .map_err(|_| KeyError::EncryptionFailed)?;
        let mut payload = Vec::with_capacity(NONCE_LEN + sealed.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        let mut text = header;
        URL_SAFE_NO_PAD.encode_string(&payload, &mut text);
        Ok(text)
    }

    /// Decrypts an envelope already routed to this key by [`Envelope::parse`].
    pub(crate) fn decrypt(
        &self,
        context: &str,
        envelope: &Envelope<'_>,
    ) -> Result<Vec<u8>, KeyError> {
        check_context(context)?;
        if envelope.key_id != self.key_id {
            return Err(KeyError::UnknownDataKey(envelope.key_id.to_owned()));
        }
        let (nonce, sealed) = envelope.payload.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(&header(&self.key_id), context),
                },
            )
            .map_err(|_| KeyError::DecryptionFailed)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.key.into())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.key_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A ciphertext split into its parts; only the key with `key_id` can open it.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    pub(crate) key_id: &'a str,
    /// `nonce || ciphertext || tag`, at least nonce and tag long.
    payload: Vec<u8>,
}

impl<'a> Envelope<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, KeyError> {
        let mut parts = text.splitn(4, ':');
        if parts.next() != Some(CIPHERTEXT_PREFIX) {
            return Err(KeyError::MalformedCiphertext("missing the uosenc prefix"));
        }
        let version = parts
            .next()
            .ok_or(KeyError::MalformedCiphertext("missing version"))?;
        if version != VERSION {
            let shown: String = version.chars().take(MAX_ECHO).collect();
            return Err(KeyError::UnsupportedCiphertextVersion(shown));
        }
        let key_id = parts
            .next()
            .ok_or(KeyError::MalformedCiphertext("missing key id"))?;
        if key_id.is_empty() || key_id.len() > 64 || !key_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(KeyError::MalformedCiphertext("key id is not hex"));
        }
        let body = parts
            .next()
            .ok_or(KeyError::MalformedCiphertext("missing payload"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| KeyError::MalformedCiphertext("payload is not base64url"))?;
        if payload.len() < NONCE_LEN + TAG_LEN {
            return Err(KeyError::MalformedCiphertext("payload is too short"));
        }
        Ok(Self { key_id, payload })
    }
}

fn check_context(context: &str) -> Result<(), KeyError> {
    if context.is_empty() {
        Err(KeyError::EmptyContext)
    } else {
        Ok(())
    }
}

/// `uosenc:v1:<key id>:` — also the start of the associated data.
fn header(key_id: &str) -> String {
    format!("{CIPHERTEXT_PREFIX}:{VERSION}:{key_id}:")
}

/// The header is fixed-shape and ends in `:`, so `header || context` cannot be read two ways.
fn aad(header: &str, context: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + context.len());
    aad.extend_from_slice(header.as_bytes());
    aad.extend_from_slice(context.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn open(key: &DataKey, context: &str, text: &str) -> Result<Vec<u8>, KeyError> {
        key.decrypt(context, &Envelope::parse(text)?)
    }

    #[test]
    fn format_is_prefix_version_key_id_payload() {
        let key = DataKey::from_bytes([3u8; 32]);
        let text = key.encrypt("ctx", b"secret").unwrap();
        let parts: Vec<_> = text.split(':').collect();
        assert_eq!(parts.len(), 4, "{text}");
        assert_eq!(parts[0], "uosenc");
        assert_eq!(parts[1], "v1");
        assert_eq!(parts[2], key.key_id());
        assert_eq!(parts[2].len(), 16);
        let payload = URL_SAFE_NO_PAD.decode(parts[3]).unwrap();
        assert_eq!(payload.len(), NONCE_LEN + b"secret".len() + TAG_LEN);
        assert_ne!(
            key.encrypt("ctx", b"secret").unwrap(),
            text,
            "a fresh nonce every time"
        );
        assert_eq!(open(&key, "ctx", &text).unwrap(), b"secret");
    }

    #[test]
    fn key_id_is_not_a_plain_hash_of_the_key() {
        let key = DataKey::from_bytes([3u8; 32]);
        assert!(!hex::encode(Sha256::digest([3u8; 32])).starts_with(key.key_id()));
    }

    #[test]
    fn another_key_cannot_open_it_even_under_its_id() {
        let key = DataKey::from_bytes([3u8; 32]);
        let text = key.encrypt("ctx", b"secret").unwrap();
        let other = DataKey::from_bytes([4u8; 32]);
        assert!(matches!(
            open(&other, "ctx", &text),
            Err(KeyError::UnknownDataKey(id)) if id == key.key_id()
        ));
        let relabelled = text.replace(key.key_id(), other.key_id());
        assert!(matches!(
            open(&other, "ctx", &relabelled),
            Err(KeyError::DecryptionFailed)
        ));
    }

    #[test]
    fn malformed_texts_are_errors() {
        let key = DataKey::from_bytes([3u8; 32]);
        let id = key.key_id().to_owned();
        let cases = [
            String::new(),
            "uosenc".into(),
            "vault:v1:abc".into(),
            "uosenc:v1".into(),
            format!("uosenc:v1:{id}"),
            "uosenc:v1::AAAA".into(),
            "uosenc:v1:zz:AAAA".into(),
            format!("uosenc:v1:{id}:not base64!"),
            format!("uosenc:v1:{id}:AAAA"),
            format!("uosenc:v1:{id}:{}", URL_SAFE_NO_PAD.encode([0u8; 39])),
        ];
        for text in cases {
            assert!(
                matches!(
                    open(&key, "ctx", &text),
                    Err(KeyError::MalformedCiphertext(_))
                ),
                "{text:?} must be malformed"
            );
        }
        assert!(matches!(
            open(&key, "ctx", "uosenc:v9:00:AAAA"),
            Err(KeyError::UnsupportedCiphertextVersion(v)) if v == "v9"
        ));
        let long = format!("uosenc:{}:00:AAAA", "v".repeat(1000));
        assert!(matches!(
            open(&key, "ctx", &long),
            Err(KeyError::UnsupportedCiphertextVersion(v)) if v.len() == MAX_ECHO
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DataKey::from_bytes([9u8; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]"));
        assert!(!shown.contains("9, 9"));
        assert!(!shown.contains(&hex::encode([9u8; 32])));
    }
}
