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

/// More entries than this in one map and it is emptied, so memory stays bounded. Known keys
/// and tokens exist only as fast as authorised callers create them; misses are anyone's to
/// make (the key checksum is public), so they have a map of their own and a flood of
/// made-up keys can only ever empty that one.
const MAX_ENTRIES: usize = 200_000;
const MAX_MISSES: usize = 100_000;

/// A known API key, with the caller it authenticates as.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub(crate) key: ApiKey,
    pub(crate) caller: Arc<AuthMachine>,
    /// Unix second of the last use handed to the usage recorder, so a hot key costs the
    /// recorder's lock about once a second rather than on every request.
    pub(crate) noted_at: AtomicI64,
    /// The key's request counter for quarantine detection (kept by the detector, so it
    /// outlives this entry); `None` when detection is off.
    pub(crate) rate: Option<Arc<crate::machine::surge::KeyRate>>,
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
    max_entries: usize,
    max_misses: usize,
    /// Known keys by prefix.
    keys: RwLock<HashMap<String, Stamped<Arc<KeyEntry>>>>,
    /// Prefixes no key has, so repeated made-up keys do not reach the store. A prefix is
    /// random and unguessable before its key exists, so no real key is shadowed by a miss.
    misses: RwLock<HashMap<String, Instant>>,
    tokens: RwLock<HashMap<[u8; 32], Stamped<Arc<TokenEntry>>>>,
    epoch: AtomicU64,
}

impl MachineCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self::with_bounds(ttl, MAX_ENTRIES, MAX_MISSES)
    }

    fn with_bounds(ttl: Duration, max_entries: usize, max_misses: usize) -> Self {
        Self {
            ttl,
            max_entries,
            max_misses,
            keys: RwLock::new(HashMap::new()),
            misses: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// `Some(None)` is a cached miss; `None` means ask the store.
    pub(crate) fn key(&self, prefix: &str) -> Option<Option<Arc<KeyEntry>>> {
        let fresh = |at: &Instant| at.elapsed() < self.ttl;
        let hit = {
            let map = self.keys.read().unwrap_or_else(|e| e.into_inner());
            map.get(prefix)
                .filter(|(_, at)| fresh(at))
                .map(|(e, _)| Arc::clone(e))
        };
        if hit.is_some() {
            return Some(hit);
        }
        let misses = self.misses.read().unwrap_or_else(|e| e.into_inner());
        misses.get(prefix).filter(|at| fresh(at)).map(|_| None)
    }

    /// Call before reading what a `put_*` will store.
    pub(crate) fn fill_ticket(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn put_key(&self, ticket: u64, prefix: &str, entry: Option<Arc<KeyEntry>>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        match entry {
            Some(entry) => {
                let mut map = self.keys.write().unwrap_or_else(|e| e.into_inner());
                // Under the write lock, which evictions also take: none can slip in between.
                if self.epoch.load(Ordering::Acquire) == ticket {
                    bounded_insert(&mut map, self.max_entries, prefix.to_string(), (entry, now));
                }
            }
            // A miss needs no epoch check: evictions concern keys that exist.
            None => {
                let mut misses = self.misses.write().unwrap_or_else(|e| e.into_inner());
                bounded_insert(&mut misses, self.max_misses, prefix.to_string(), now);
            }
        }
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
        if self.epoch.load(Ordering::Acquire) == ticket {
            bounded_insert(&mut map, self.max_entries, digest, (entry, Instant::now()));
        }
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
                keys.retain(|_, (e, _)| account_of(&e.caller) != id);
                tokens.retain(|_, (e, _)| account_of(&e.caller) != id);
            }
            Invalidation::Org(id) => {
                keys.retain(|_, (e, _)| e.key.org_id.0 != *id);
                tokens.retain(|_, (e, _)| e.claims.org != *id);
            }
            Invalidation::AccessToken(jti) => tokens.retain(|_, (e, _)| e.claims.jti != *jti),
            // Re-verify everything, e.g. after a signing-key rotation or lost messages.
            Invalidation::Everything => {
                keys.clear();
                tokens.clear();
                self.misses
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
            Invalidation::Session(_) | Invalidation::User(_) => {}
        }
    }
}

/// Insert, first emptying a map that has reached `max` (cheaper than tracking age order, and
/// the entries are all cheap to refetch).
fn bounded_insert<K: std::hash::Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    max: usize,
    key: K,
    value: V,
) {
    if map.len() >= max && !map.contains_key(&key) {
        map.clear();
    }
    map.insert(key, value);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::MachineCredential;
    use uos_domain::{OrgId, ServiceAccount};

    fn entry(prefix: &str) -> Arc<KeyEntry> {
        let account = ServiceAccount::new(OrgId::new(), "svc".into(), vec![], uos_domain::now());
        let key = ApiKey {
            prefix: prefix.into(),
            ..uos_store_tests::fixtures::api_key(&account)
        };
        let caller = Arc::new(AuthMachine {
            account,
            credential: MachineCredential::ApiKey {
                id: key.id,
                prefix: prefix.into(),
            },
            roles: vec![],
            permissions: vec![],
            scopes: vec![],
            org_active: true,
        });
        Arc::new(KeyEntry {
            key,
            caller,
            noted_at: AtomicI64::new(0),
            rate: None,
        })
    }

    /// Made-up keys fill and empty the miss map, never the map of known keys.
    #[test]
    fn a_flood_of_misses_keeps_known_keys() {
        let cache = MachineCache::with_bounds(Duration::from_secs(60), 10, 5);
        let t = cache.fill_ticket();
        cache.put_key(t, "known", Some(entry("known")));
        for i in 0..50 {
            cache.put_key(t, &format!("made-up-{i}"), None);
        }
        assert!(cache.key("known").unwrap().is_some());
        assert!(
            cache.key("made-up-49").unwrap().is_none(),
            "latest miss cached"
        );
        assert!(cache.key("made-up-0").is_none(), "old misses were dropped");
        assert!(cache.misses.read().unwrap().len() <= 5);
    }

    #[test]
    fn known_keys_are_bounded_too() {
        let cache = MachineCache::with_bounds(Duration::from_secs(60), 3, 3);
        let t = cache.fill_ticket();
        for i in 0..7 {
            let p = format!("k{i}");
            cache.put_key(t, &p, Some(entry(&p)));
        }
        assert!(cache.keys.read().unwrap().len() <= 3);
        assert!(cache.key("k6").unwrap().is_some());
    }

    /// A key evicted while its row was being read is not put back by that read.
    #[test]
    fn an_eviction_during_a_read_wins() {
        let cache = MachineCache::with_bounds(Duration::from_secs(60), 10, 10);
        let stale = cache.fill_ticket();
        cache.apply(&Invalidation::ApiKey("p".into()));
        cache.put_key(stale, "p", Some(entry("p")));
        assert!(cache.key("p").is_none());
        let fresh = cache.fill_ticket();
        cache.put_key(fresh, "p", Some(entry("p")));
        assert!(cache.key("p").unwrap().is_some());
        cache.apply(&Invalidation::ServiceAccount(
            cache.key("p").unwrap().unwrap().caller.account.id.0,
        ));
        assert!(cache.key("p").is_none());
    }

    #[test]
    fn session_messages_leave_keys_alone() {
        let cache = MachineCache::with_bounds(Duration::from_secs(60), 10, 10);
        let t = cache.fill_ticket();
        cache.apply(&Invalidation::Session(uuid::Uuid::now_v7()));
        cache.put_key(t, "p", Some(entry("p")));
        assert!(cache.key("p").unwrap().is_some());
    }
}
