//! Tunables of the use cases (token lifetimes, retention windows, password hashing).

use serde::{Deserialize, Serialize};
use uos_authn::PasswordParams;

/// Service-level settings; the server's configuration embeds this under `[service]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// `iss` of access tokens.
    pub issuer: String,
    /// Lifetime of an access token in seconds. Short, because the session check makes
    /// revocation immediate anyway and a leaked token should die soon.
    pub access_token_ttl_secs: u64,
    /// Absolute lifetime of a login session in seconds: refreshing never extends it.
    pub session_ttl_secs: u64,
    /// Idle lifetime in seconds: a session not refreshed (or logged into) for this long ends.
    pub session_idle_secs: u64,
    /// Days a soft-deleted org or user can still be restored.
    pub retention_days: u32,
    /// How long an `Idempotency-Key` is remembered, in hours (the contract says 24).
    pub idempotency_ttl_hours: u32,
    /// An in-flight idempotency claim older than this (seconds) is taken as abandoned
    /// (the process died mid-request) and may be claimed again.
    pub idempotency_stale_secs: u32,
    /// Minimum password length in characters (maximum is always 128).
    pub password_min_length: usize,
    /// argon2id cost parameters; defaults are OWASP's recommendation.
    pub password_hashing: PasswordParams,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            issuer: "user-org-service".into(),
            access_token_ttl_secs: 900,
            session_ttl_secs: 7 * 24 * 3600,
            session_idle_secs: 24 * 3600,
            retention_days: 30,
            idempotency_ttl_hours: 24,
            idempotency_stale_secs: 60,
            password_min_length: 12,
            password_hashing: PasswordParams::default(),
        }
    }
}
