//! Per-replica cache of what authenticating a bearer token needs: the verified claims of a
//! token, and its session with the user. Without it every request reads two rows and checks an
//! Ed25519 signature; with it a repeat token costs one hash and two map lookups.
//!
//! Staleness is bounded two ways: every change that cuts access (logout, revocation,
//! suspension, password change) publishes an [`Invalidation`] that evicts here on every
//! replica, and entries expire after `ttl` in case a message was lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use uos_authn::AccessClaims;
use uos_domain::{SessionId, User, UserId};
use uos_shared::Invalidation;
use uos_store::Session;

/// More entries than this and the map is emptied: a flood of distinct tokens must not grow
/// memory without bound, and refilling costs only the uncached path.
const MAX_ENTRIES: usize = 200_000;

#[derive(Debug)]
pub(crate) struct AuthCache {
    ttl: Duration,
    tokens: RwLock<HashMap<[u8; 32], (AccessClaims, Instant)>>,
    sessions: RwLock<HashMap<SessionId, (Session, User, Instant)>>,
    /// Bumped by every eviction. A fill that started before an eviction is dropped, so a read
    /// racing a revocation cannot put the pre-revocation row back.
    epoch: AtomicU64,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: RwLock::new(HashMap::new()),
            sessions: RwLock::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// Claims of a token whose signature was already checked (expiry is re-checked by the
    /// caller against the claims, so a cached token still dies on time).
    pub(crate) fn claims(&self, digest: &[u8; 32]) -> Option<AccessClaims> {
        let map = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(c, _)| c.clone())
    }

    pub(crate) fn put_claims(&self, digest: [u8; 32], claims: AccessClaims) {
        if !self.enabled() {
            return;
        }
        let mut map = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(digest, (claims, Instant::now()));
    }

    pub(crate) fn session(&self, id: SessionId) -> Option<(Session, User)> {
        let map = self.sessions.read().unwrap_or_else(|e| e.into_inner());
        map.get(&id)
            .filter(|(_, _, at)| at.elapsed() < self.ttl)
            .map(|(s, u, _)| (s.clone(), u.clone()))
    }

    /// Call before reading what [`AuthCache::put_session`] will store.
    pub(crate) fn fill_ticket(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn put_session(&self, ticket: u64, session: Session, user: User) {
        if !self.enabled() {
            return;
        }
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the write lock, which evictions also take: no eviction can slip
        // between this check and the insert.
        if self.epoch.load(Ordering::Acquire) != ticket {
            return;
        }
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(session.id, (session, user, Instant::now()));
    }

    pub(crate) fn apply(&self, msg: &Invalidation) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match msg {
            Invalidation::Session(id) => self.evict_session(SessionId(*id)),
            Invalidation::User(id) => self.evict_user(UserId(*id)),
            // Machine credentials are cached elsewhere; nothing of theirs lives here.
            Invalidation::ApiKey(_)
            | Invalidation::ServiceAccount(_)
            | Invalidation::Org(_)
            | Invalidation::AccessToken(_) => {}
            Invalidation::Everything => self.clear(),
        }
    }

    fn evict_session(&self, id: SessionId) {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.remove(&id);
    }

    fn evict_user(&self, id: UserId) {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (s, _, _)| s.user_id != id);
    }

    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
