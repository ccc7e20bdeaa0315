//! Opaque random tokens (invites, MFA challenges, password resets) and how they are stored and
//! compared.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// `prefix` followed by base64url (no padding) of `bytes` bytes from the OS RNG, e.g.
/// `random_token("uosinv_", 32)`. The prefix makes leaked tokens recognisable to secret scanners.
pub fn random_token(prefix: &str, bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    OsRng.fill_bytes(&mut raw);
    let mut token = String::with_capacity(prefix.len() + bytes.div_ceil(3) * 4);
    token.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(&raw, &mut token);
    token
}

/// Lowercase hex SHA-256 of the token: what the store keeps instead of the token. A fast
/// unsalted hash is enough only because these tokens carry ≥128 bits of randomness; never use it
/// for passwords.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equality whose time does not depend on where the inputs differ (the length may still leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn random_token_has_prefix_and_entropy() {
        let a = random_token("uosinv_", 32);
        let b = random_token("uosinv_", 32);
        assert_ne!(a, b);
        let body = a.strip_prefix("uosinv_").unwrap();
        assert_eq!(
            body.len(),
            43,
            "32 bytes are 43 base64url chars without padding"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_eq!(random_token("", 0), "");
    }

    #[test]
    fn hash_token_is_lowercase_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
