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

/// Cached sessions, and which of them each user has: a change of a user (any change of their
/// row or memberships evicts them) drops their sessions without a scan of everyone's.
#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<SessionId, (Session, User, Instant)>,
    by_user: HashMap<UserId, Vec<SessionId>>,
}

impl Sessions {
    fn remove(&mut self, id: SessionId) {
        if let Some((s, _, _)) = self.by_id.remove(&id) {
            if let Some(ids) = self.by_user.get_mut(&s.user_id) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_user.remove(&s.user_id);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.by_user.clear();
    }
}

#[derive(Debug)]
pub(crate) struct AuthCache {
    ttl: Duration,
    tokens: RwLock<HashMap<[u8; 32], (AccessClaims, Instant)>>,
    sessions: RwLock<Sessions>,
    /// Bumped by every eviction. A fill that started before an eviction is dropped, so a read
    /// racing a revocation cannot put the pre-revocation row back.
    epoch: AtomicU64,
}

impl AuthCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            tokens: RwLock::new(HashMap::new()),
            sessions: RwLock::default(),
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
        map.by_id
            .get(&id)
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
        if map.by_id.len() >= MAX_ENTRIES {
            map.clear();
        }
        let (id, user_id) = (session.id, session.user_id);
        if map
            .by_id
            .insert(id, (session, user, Instant::now()))
            .is_none()
        {
            map.by_user.entry(user_id).or_default().push(id);
        }
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
        map.remove(id);
    }

    fn evict_user(&self, id: UserId) {
        let mut map = self.sessions.write().unwrap_or_else(|e| e.into_inner());
        for session in map.by_user.remove(&id).unwrap_or_default() {
            map.by_id.remove(&session);
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use uos_domain::{Email, UserStatus};

    fn session_of(user: &User) -> Session {
        let now = uos_domain::now();
        Session {
            id: SessionId(uuid::Uuid::now_v7()),
            user_id: user.id,
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            revoked_at: None,
            last_seen_at: now,
            user_agent: None,
            ip: None,
        }
    }

    #[test]
    fn a_change_of_a_user_drops_their_sessions_only() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let now = uos_domain::now();
        let ann = User::new(
            Email::parse("ann@example.com").unwrap(),
            UserStatus::Active,
            now,
        );
        let bob = User::new(
            Email::parse("bob@example.com").unwrap(),
            UserStatus::Active,
            now,
        );
        let sessions = [session_of(&ann), session_of(&ann), session_of(&bob)];
        for (s, u) in sessions.iter().zip([&ann, &ann, &bob]) {
            cache.put_session(cache.fill_ticket(), s.clone(), u.clone());
        }
        cache.apply(&Invalidation::Session(sessions[0].id.0));
        assert!(cache.session(sessions[0].id).is_none());
        assert!(cache.session(sessions[1].id).is_some());
        cache.apply(&Invalidation::User(ann.id.0));
        assert!(cache.session(sessions[1].id).is_none());
        assert!(cache.session(sessions[2].id).is_some());
        let map = cache.sessions.read().unwrap();
        assert_eq!(map.by_user.len(), 1, "no index entry outlives its sessions");
    }
}
