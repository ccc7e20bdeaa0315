//! Per-replica cache of what authenticating a machine credential needs: an API key's row with
//! its ready-built caller, and client-credentials tokens whose signature was checked.
//!
//! A hit costs one map lookup; the caller still compares the key's keyed hash and its expiry
//! on every request, so a cached entry never lets a wrong secret or a late key through.
//! Revocation, rotation, account and role changes evict through the same invalidation fan-out
//! as sessions (at once here, on other replicas within the pub/sub delay); `ttl` bounds
//! staleness if a message is lost. The epoch guard of [`crate::authcache`] applies here too.

use crate::AuthMachine;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uos_authn::ClientClaims;
use uos_domain::{ApiKey, ServiceAccountId};
use uos_shared::Invalidation;

/// More entries than this in one map and it is emptied: a flood of distinct (well-formed,
/// unknown) keys must not grow memory without bound.
const MAX_ENTRIES: usize = 200_000;

/// A known API key, with the caller it authenticates as.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) key: ApiKey,
    pub(crate) caller: Arc<AuthMachine>,
    /// Unix second of the last use handed to the usage recorder, so a hot key costs the
    /// recorder's lock about once a second rather than on every request.
    pub(crate) noted_at: AtomicI64,
}

/// A client token's claims and the caller they authenticate as.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub(crate) claims: ClientClaims,
    pub(crate) caller: Arc<AuthMachine>,
}

type Stamped<T> = (T, Instant);

#[derive(Debug)]
pub(crate) struct MachineCache {
    ttl: Duration,
    /// By key prefix. `None` remembers that no key has this prefix, so a flood of made-up
    /// keys does not reach the store. A prefix is random and unguessable before its key
    /// exists, so no real key can be shadowed by an earlier miss.
    keys: RwLock<HashMap<String, Stamped<Option<Arc<KeyEntry>>>>>,
    tokens: RwLock<HashMap<[u8; 32], Stamped<Arc<TokenEntry>>>>,
    epoch: AtomicU64,
}

impl MachineCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// `Some(None)` is a cached miss; `None` means ask the store.
    pub(crate) fn key(&self, prefix: &str) -> Option<Option<Arc<KeyEntry>>> {
        let map = self.keys.read().unwrap_or_else(|e| e.into_inner());
        map.get(prefix)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(e, _)| e.clone())
    }

    /// Call before reading what a `put_*` will store.
    pub(crate) fn fill_ticket(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn put_key(&self, ticket: u64, prefix: &str, entry: Option<Arc<KeyEntry>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.keys.write().unwrap_or_else(|e| e.into_inner());
        // Under the write lock, which evictions also take: none can slip in between.
        if self.epoch.load(Ordering::Acquire) != ticket {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(prefix.to_string(), (entry, Instant::now()));
    }

    pub(crate) fn token(&self, digest: &[u8; 32]) -> Option<Arc<TokenEntry>> {
        let map = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(e, _)| Arc::clone(e))
    }

    pub(crate) fn put_token(&self, ticket: u64, digest: [u8; 32], entry: Arc<TokenEntry>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        if self.epoch.load(Ordering::Acquire) != ticket {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(digest, (entry, Instant::now()));
    }

    pub(crate) fn apply(&self, msg: &Invalidation) {
        // Sessions and users live in the other cache: their messages must not bump the epoch
        // here, or every logout would throw away key lookups in flight.
        if matches!(msg, Invalidation::Session(_) | Invalidation::User(_)) {
            return;
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let account_of = |c: &AuthMachine| c.account.id;
        match msg {
            Invalidation::ApiKey(prefix) => {
                keys.remove(prefix);
            }
            Invalidation::ServiceAccount(id) => {
                let id = ServiceAccountId(*id);
                keys.retain(|_, (e, _)| e.as_ref().is_none_or(|e| account_of(&e.caller) != id));
                tokens.retain(|_, (e, _)| account_of(&e.caller) != id);
            }
            Invalidation::Org(id) => {
                keys.retain(|_, (e, _)| e.as_ref().is_none_or(|e| e.key.org_id.0 != *id));
                tokens.retain(|_, (e, _)| e.claims.org != *id);
            }
            Invalidation::AccessToken(jti) => tokens.retain(|_, (e, _)| e.claims.jti != *jti),
            // Re-verify everything, e.g. after a signing-key rotation or lost messages.
            Invalidation::Everything => {
                keys.clear();
                tokens.clear();
            }
            Invalidation::Session(_) | Invalidation::User(_) => {}
        }
    }
}
