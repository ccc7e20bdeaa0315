//! Machine identities: service accounts, API keys (issue, rotate, revoke, use, quarantine),
//! OAuth2 client credentials, the per-replica key cache, usage recorder and spike detector, and
//! the rotation sweep.

pub(crate) mod api_keys;
pub(crate) mod auth;
pub(crate) mod cache;
pub(crate) mod oauth;
pub(crate) mod quarantine;
pub(crate) mod rotation;
pub(crate) mod service_accounts;
pub(crate) mod surge;

use auth::UsageRecorder;
use cache::MachineCache;
use std::sync::atomic::AtomicI64;

/// What machine identity keeps on each replica besides the ports.
#[derive(Debug)]
pub(crate) struct MachineState {
    /// Verified API keys and client-credentials tokens; every revocation evicts at once.
    pub(crate) cache: MachineCache,
    /// API-key uses waiting for the next periodic write of `last_used_at`.
    pub(crate) usage: UsageRecorder,
    /// HMAC key of API-key and client-secret hashes, from the key port: a stolen table of
    /// hashes is useless without it.
    pub(crate) api_key_pepper: [u8; 32],
    /// Keys overdue for rotation at the last sweep.
    pub(crate) overdue_keys: AtomicI64,
    /// Request rates of the keys this replica serves, against their baselines; `None` when
    /// quarantine detection is off.
    pub(crate) surge: Option<surge::Detector>,
}
