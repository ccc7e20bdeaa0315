//! People and their sessions: bootstrap and login, sessions and refresh, the per-replica
//! authentication cache, lockout, passwords and recovery, second factors, federation through
//! upstream OIDC providers, the user lifecycle, and token introspection and signing keys.

pub(crate) mod auth;
pub(crate) mod cache;
pub(crate) mod federation;
pub(crate) mod hashpool;
pub(crate) mod introspect;
pub(crate) mod lockout;
pub(crate) mod me;
pub(crate) mod mfa;
pub(crate) mod passwords;
pub(crate) mod recovery;
pub(crate) mod sessions;
pub(crate) mod signing_keys;
pub(crate) mod users;

use cache::AuthCache;
use federation::OidcProviders;
use hashpool::HashPool;
use std::sync::Mutex;
use std::time::Instant;

/// What identity keeps on each replica besides the ports.
#[derive(Debug)]
pub(crate) struct IdentityState {
    /// argon2 work, on threads of its own (one per core).
    pub(crate) hashes: HashPool,
    /// Verified access tokens and live sessions; every revocation evicts at once.
    pub(crate) cache: AuthCache,
    pub(crate) oidc: OidcProviders,
    /// When a token with an unknown key id last made this replica reload its keys.
    pub(crate) last_key_reload: Mutex<Option<Instant>>,
}
