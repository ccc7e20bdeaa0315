//! Authentication primitives: password hashing and strength checks, TOTP and recovery codes,
//! signed access and refresh tokens, opaque random tokens, API keys and OAuth2 client secrets.
//!
//! Password hashing is deliberately slow and CPU-bound: async callers must run
//! [`PasswordHasher`] methods off their runtime's workers (`uos-service` has hashing threads
//! of its own).

mod access;
mod apikey;
mod opaque;
mod password;
mod recovery;
mod refresh;
mod strength;
pub mod totp;

pub use access::{
    issue_access_token, issue_client_token, token_type, verify_access_token, verify_client_token,
    AccessClaims, ClientClaims, TokenError, TokenKind, IAT_LEEWAY_SECS, MAX_ACCESS_TOKEN_LEN,
};
pub use apikey::{
    generate_api_key, generate_client_secret, hash_api_key, looks_like_api_key, parse_api_key,
    parse_client_secret, verify_api_key, MalformedKey, NewApiKey, ParsedApiKey, API_KEY_LEN,
    API_KEY_PREFIX,
};
pub use opaque::{constant_time_eq, hash_token, random_token};
pub use password::{PasswordHasher, PasswordParams};
pub use recovery::{
    generate_recovery_codes, hash_recovery_code, normalize_recovery_code, RECOVERY_CODE_LEN,
};
pub use refresh::{
    issue_refresh_token, parse_refresh_token, PresentedRefreshToken, REFRESH_TOKEN_PREFIX,
};
pub use strength::{check_strength, WeakPassword, MAX_STRENGTH_SCORE};

/// Failures of password hashing setup and hashing itself (verification never errors: a bad
/// password or a malformed stored hash both just fail to verify).
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    #[error("invalid password hashing parameters: {0}")]
    InvalidParams(argon2::Error),
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}
