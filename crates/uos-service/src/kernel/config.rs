//! Tunables of the use cases (token lifetimes, retention windows, password hashing).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uos_authn::PasswordParams;

/// Service-level settings; the server's configuration embeds this under `[service]`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
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
    /// Days a soft-deleted org or user can still be restored; after that the purge job
    /// removes it (unless a legal hold stands).
    pub retention_days: u32,
    /// How often the purge job looks for users and orgs past `retention_days`, seconds.
    pub purge_sweep_secs: u64,
    /// How long an `Idempotency-Key` is remembered, in hours (the contract says 24).
    pub idempotency_ttl_hours: u32,
    /// An in-flight idempotency claim older than this (seconds) is taken as abandoned
    /// (the process died mid-request) and may be claimed again.
    pub idempotency_stale_secs: u32,
    /// Minimum password length in characters (maximum is always 128).
    pub password_min_length: usize,
    /// argon2id cost parameters; defaults are OWASP's recommendation.
    pub password_hashing: PasswordParams,
    /// Least zxcvbn strength score (0-4) a new password must reach.
    pub password_min_score: u8,
    /// A new password may not equal any of this many previous ones (the current one included).
    pub password_history: u32,
    /// Failed logins and second-factor attempts of one account, and of one client address.
    pub lockout: LockoutConfig,
    /// Lifetime of the `mfa_token` handed out between password and second factor, seconds.
    pub mfa_token_ttl_secs: u64,
    /// Issuer name shown by authenticator apps next to the account.
    pub totp_issuer: String,
    /// Lifetime of a mailed password-reset token, seconds.
    pub reset_token_ttl_secs: u64,
    /// How long a privileged account's reset request waits for a second admin, seconds.
    pub reset_approval_ttl_secs: u64,
    /// Seconds an authenticated session and user, and the copies of users, orgs, memberships
    /// and service accounts that admin reads answer from, stay cached per replica. Changes
    /// evict at once through the invalidation fan-out; this bounds staleness if a message is
    /// lost.
    pub auth_cache_secs: u64,
    /// Lifetime of a client-credentials access token, seconds.
    pub client_token_ttl_secs: u64,
    /// How often recorded API-key uses are written (`last_used_at`), seconds: one statement per
    /// interval instead of one write per request.
    pub api_key_usage_flush_secs: u64,
    /// How often keys past their account's maximum age are looked for and reported, seconds.
    pub rotation_sweep_secs: u64,
    /// Default overlap of a key rotation when the request names none, seconds.
    pub api_key_rotation_overlap_secs: u64,
    /// A signed checkpoint of every audit chain head is issued after this many events (on
    /// each replica)…
    pub audit_checkpoint_every_events: u64,
    /// …or after this many seconds, whichever comes first, and at shutdown; only when a head
    /// moved since the last checkpoint.
    pub audit_checkpoint_secs: u64,
    /// How long a signed decision of the decision point may be relied on (`expires_at`),
    /// seconds.
    pub decision_ttl_secs: u64,
    /// How long a replica may answer from its copy of a budget's spend, milliseconds. Usage
    /// recorded on this replica drops the copy at once; this bounds how late another
    /// replica's usage is seen (at most 1000: the PDP must see it within a second). The
    /// decision point's copies of orgs are kept as long, should an invalidation be lost.
    pub budget_cache_ms: u64,
    /// How long a budget override or break-glass request waits for its two approvers, hours.
    pub approval_ttl_hours: u64,
    /// Quarantine of API keys whose request rate jumps past a multiple of their own recent
    /// baseline (`[service.quarantine]`; see docs/runbooks/key-quarantine.md).
    pub quarantine: QuarantineConfig,
}

/// Throttling of password and second-factor guesses. Counting happens *before* the password is
/// checked, so parallel guesses cannot slip past the threshold.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LockoutConfig {
    /// Failed attempts per account within `window_secs` that lock it.
    pub threshold: u64,
    /// The counting window, seconds.
    pub window_secs: u64,
    /// First lockout period, seconds; each further lockout within a day doubles it.
    pub base_lock_secs: u64,
    /// The longest lockout period, seconds.
    pub max_lock_secs: u64,
    /// Attempts per client address within `window_secs` (any accounts) before it is throttled.
    pub ip_threshold: u64,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            window_secs: 15 * 60,
            base_lock_secs: 5 * 60,
            max_lock_secs: 24 * 3600,
            ip_threshold: 100,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            issuer: "user-org-service".into(),
            access_token_ttl_secs: 900,
            session_ttl_secs: 7 * 24 * 3600,
            session_idle_secs: 24 * 3600,
            retention_days: 30,
            purge_sweep_secs: 3600,
            idempotency_ttl_hours: 24,
            idempotency_stale_secs: 60,
            password_min_length: 12,
            password_hashing: PasswordParams::default(),
            password_min_score: 3,
            password_history: 5,
            lockout: LockoutConfig::default(),
            mfa_token_ttl_secs: 300,
            totp_issuer: "user-org-service".into(),
            reset_token_ttl_secs: 3600,
            reset_approval_ttl_secs: 24 * 3600,
            auth_cache_secs: 30,
            client_token_ttl_secs: 900,
            api_key_usage_flush_secs: 10,
            rotation_sweep_secs: 300,
            api_key_rotation_overlap_secs: 24 * 3600,
            audit_checkpoint_every_events: 1000,
            audit_checkpoint_secs: 60,
            decision_ttl_secs: 60,
            budget_cache_ms: 500,
            approval_ttl_hours: 24,
            quarantine: QuarantineConfig::default(),
        }
    }
}

/// When an API key is quarantined. Each replica counts the requests of every key it serves in
/// fixed windows and keeps a baseline (an exponentially weighted mean of the key's earlier
/// windows with traffic); a window whose count reaches `multiple` × baseline *and*
/// `min_requests`, after at least `min_history_windows` windows of history, trips the key.
/// Both thresholds are inclusive. Behind a load balancer every replica sees the same share of
/// the baseline and of the spike, so counting per replica needs no shared counter.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// Detect spikes at all. Off, keys already quarantined stay refused until released.
    pub enabled: bool,
    /// How many times its baseline a key's window count must reach to trip (more than 1).
    pub multiple: f64,
    /// The counting window, seconds (1 to 3600).
    pub window_secs: u64,
    /// The fewest requests in one window (on one replica) that can trip a key, so a quiet key
    /// going from 1 request to 20 never does.
    pub min_requests: u64,
    /// Windows with traffic a replica must have seen of a key before it can trip: a new key
    /// has no baseline. The window a replica first sees a key in is partial and not counted.
    pub min_history_windows: u32,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            multiple: 10.0,
            window_secs: 60,
            min_requests: 1000,
            min_history_windows: 3,
        }
    }
}

impl QuarantineConfig {
    /// The first setting that is out of range, as `(key under service.quarantine, why)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if !(self.multiple.is_finite() && self.multiple > 1.0 && self.multiple <= 1_000_000.0) {
            return Err(("multiple", "must be more than 1 and at most 1000000"));
        }
        if !(1..=3600).contains(&self.window_secs) {
            return Err(("window_secs", "must be between 1 and 3600"));
        }
        if !(1..=1_000_000_000).contains(&self.min_requests) {
            return Err(("min_requests", "must be between 1 and 1000000000"));
        }
        if !(1..=10_000).contains(&self.min_history_windows) {
            return Err(("min_history_windows", "must be between 1 and 10000"));
        }
        Ok(())
    }
}
