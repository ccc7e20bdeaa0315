//! Refresh tokens that name their session and generation, authenticated with a server key.
//!
//! A session keeps one refresh state: the hash of its current token and a generation counter
//! that a refresh moves on by one. A token carries the session id and the generation it was
//! issued at, 32 random bytes, and an HMAC-SHA-256 over all of them keyed with a server secret
//! (`KeyProvider::secret("refresh-token-key")`). That makes a refresh one update of one row,
//! found by primary key, and still tells every earlier token of a session from a made-up one:
//!
//! - the current token matches the session's generation *and* its stored hash;
//! - an earlier token has a smaller generation and a valid MAC: only the server can have issued
//!   it, so presenting it is a replay (reuse detection revokes the session), however many
//!   generations back it is, without keeping a row per spent token;
//! - anything else (a bad MAC, say a token forged by someone who knows a session id) is
//!   refused as unknown, before the store is asked, and revokes nothing.
//!
//! The MAC is checked in constant time. The random part is what the stored hash commits to:
//! the key alone (e.g. leaked with a backup) still cannot produce a session's *current* token,
//! only replays of earlier ones.
//!
//! Tokens issued before the session row held the refresh state ("legacy" tokens, 32 random
//! bytes and nothing else) are recognised by their shape so that they keep working once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::Sha256;
use uuid::Uuid;

/// What every refresh token starts with (secret scanners recognise it).
pub const REFRESH_TOKEN_PREFIX: &str = "uosrt_";

/// Domain separation: this key signs nothing else, but a MAC that names its purpose and
/// version cannot be mistaken for another one's.
const MAC_CONTEXT: &[u8] = b"uos refresh token v1\0";
const NONCE_LEN: usize = 32;
const TAG_LEN: usize = 32;
/// Session id, generation, random part, MAC.
const SIGNED_LEN: usize = 16 + 8 + NONCE_LEN + TAG_LEN;
/// A legacy token's body: 32 random bytes.
const LEGACY_LEN: usize = 32;

/// What a presented refresh token says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresentedRefreshToken {
    /// Issued by this server for `session` at `generation` (the MAC verified).
    Signed { session: Uuid, generation: i64 },
    /// Shaped like a token from before signed tokens; only its stored hash can tell more.
    Legacy,
    /// Not a token this server issued.
    Invalid,
}

/// A new refresh token for `session` at `generation` (≥ 0), signed with `key`.
pub fn issue_refresh_token(key: &[u8; 32], session: Uuid, generation: i64) -> String {
    let mut body = [0u8; SIGNED_LEN];
    body[..16].copy_from_slice(session.as_bytes());
    body[16..24].copy_from_slice(&generation.to_be_bytes());
    OsRng.fill_bytes(&mut body[24..24 + NONCE_LEN]);
    let tag = mac(key, &body[..24 + NONCE_LEN]).finalize().into_bytes();
    body[24 + NONCE_LEN..].copy_from_slice(&tag);
    let mut token = String::with_capacity(REFRESH_TOKEN_PREFIX.len() + SIGNED_LEN.div_ceil(3) * 4);
    token.push_str(REFRESH_TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(body, &mut token);
    token
}

/// Read a presented token: its session and generation if `key` signed it.
pub fn parse_refresh_token(key: &[u8; 32], token: &str) -> PresentedRefreshToken {
    let Some(body) = token
        .strip_prefix(REFRESH_TOKEN_PREFIX)
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
    else {
        return PresentedRefreshToken::Invalid;
    };
    match body.len() {
        LEGACY_LEN => PresentedRefreshToken::Legacy,
        SIGNED_LEN => {
            let (signed, tag) = body.split_at(24 + NONCE_LEN);
            // `verify_slice` compares in constant time.
            if mac(key, signed).verify_slice(tag).is_err() {
                return PresentedRefreshToken::Invalid;
            }
            let (Ok(session), Ok(generation)) = (
                Uuid::from_slice(&signed[..16]),
                <[u8; 8]>::try_from(&signed[16..24]).map(i64::from_be_bytes),
            ) else {
                return PresentedRefreshToken::Invalid;
            };
            if generation < 0 {
                return PresentedRefreshToken::Invalid;
            }
            PresentedRefreshToken::Signed {
                session,
                generation,
            }
        }
        _ => PresentedRefreshToken::Invalid,
    }
}

fn mac(key: &[u8; 32], signed: &[u8]) -> Hmac<Sha256> {
    // Keyed with the zero-padded block, which is HMAC keyed with `key` itself (RFC 2104) and,
    // unlike `new_from_slice`, infallible (as in `hash_api_key`).
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
    mac.update(MAC_CONTEXT);
    mac.update(signed);
    mac
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn issued_tokens_parse_back_and_differ() {
        let session = Uuid::now_v7();
        let a = issue_refresh_token(&KEY, session, 41);
        let b = issue_refresh_token(&KEY, session, 41);
        assert_ne!(a, b, "the random part makes each token unique");
        assert!(a.starts_with(REFRESH_TOKEN_PREFIX));
        assert!(
            a.len() <= 256,
            "fits the API's opaque-token limit: {}",
            a.len()
        );
        for t in [&a, &b] {
            assert_eq!(
                parse_refresh_token(&KEY, t),
                PresentedRefreshToken::Signed {
                    session,
                    generation: 41
                }
            );
        }
    }

    #[test]
    fn another_key_or_any_changed_byte_is_invalid() {
        let session = Uuid::now_v7();
        let token = issue_refresh_token(&KEY, session, 0);
        assert_eq!(
            parse_refresh_token(&[8; 32], &token),
            PresentedRefreshToken::Invalid,
            "signed with another key"
        );
        let body = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(REFRESH_TOKEN_PREFIX).unwrap())
            .unwrap();
        for i in 0..body.len() {
            let mut changed = body.clone();
            changed[i] ^= 1;
            let forged = format!("{REFRESH_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&changed));
            assert_eq!(
                parse_refresh_token(&KEY, &forged),
                PresentedRefreshToken::Invalid,
                "byte {i} changed"
            );
        }
    }

    #[test]
    fn legacy_and_malformed_tokens_are_told_apart() {
        let legacy = crate::random_token(REFRESH_TOKEN_PREFIX, 32);
        assert_eq!(
            parse_refresh_token(&KEY, &legacy),
            PresentedRefreshToken::Legacy
        );
        for bad in [
            "",
            "uosrt_",
            "uosrt_!!!",
            "uosinv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "uosrt_AAAA",
        ] {
            assert_eq!(
                parse_refresh_token(&KEY, bad),
                PresentedRefreshToken::Invalid,
                "{bad:?}"
            );
        }
    }
}
