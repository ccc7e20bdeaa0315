//! The replica's read path: a store handle taken only when a read needs one, and bounded
//! copies of the entities admin reads ask for most (users, memberships, service accounts;
//! orgs live in [`OrgBook`](crate::orgs::cache::OrgBook)), so a repeated read costs map
//! lookups instead of round trips.
//!
//! Staleness is bounded the way the auth cache's is: every committed change evicts its
//! entities at once on its own replica and, through the invalidation fan-out, on every other
//! one (the unit of work derives the messages from the audit events it records, so no change
//! can forget to); entries also expire after the TTL in case a message was lost. Writes never
//! read from here: they read their rows inside their transaction, so a stale copy can at
//! worst serve an old ETag, never let a stale `If-Match` through.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use uos_domain::{Membership, Org, OrgId, ServiceAccount, ServiceAccountId, User, UserId};
use uos_shared::Invalidation;
use uos_store::{ReadTx, Store};
use uuid::Uuid;

use crate::orgs::cache::OrgRef;
use crate::{Inner, Result, ServiceError};

/// A store read handle taken at the first read that needs it, so a request answered from the
/// replica's copies holds no connection (and never waits for one); or a handle the caller
/// already has (a transaction), lent for the reads.
pub(crate) enum LazyRead<'a> {
    Lazy {
        store: &'a dyn Store,
        handle: Option<Box<dyn ReadTx>>,
    },
    Open(&'a mut (dyn ReadTx + 'a)),
}

impl<'a> LazyRead<'a> {
    pub(crate) fn new(store: &'a dyn Store) -> Self {
        Self::Lazy {
            store,
            handle: None,
        }
    }

    /// Reads through `tx` (a unit of work's transaction: its reads see its own writes).
    pub(crate) fn over(tx: &'a mut (dyn ReadTx + 'a)) -> Self {
        Self::Open(tx)
    }

    pub(crate) async fn get(&mut self) -> Result<&mut (dyn ReadTx + 'a)> {
        match self {
            Self::Open(tx) => Ok(&mut **tx),
            Self::Lazy { store, handle } => {
                if handle.is_none() {
                    *handle = Some(store.read().await?);
                }
                match handle.as_deref_mut() {
                    Some(h) => Ok(h),
                    None => Err(ServiceError::Internal("no store read handle".into())),
                }
            }
        }
    }
}

/// Copies of one kind of entity, each trusted for `ttl`; more than `max` and it starts over
/// (a miss costs one keyed read). Ordered, so everything of one user can be dropped as a
/// range.
#[derive(Debug)]
pub(crate) struct Book<K, V> {
    ttl: Duration,
    max: usize,
    entries: RwLock<BTreeMap<K, (Instant, V)>>,
    /// Bumped by every drop: a read that started before a drop must not store what it read,
    /// or a copy older than the change would outlive it.
    generation: AtomicU64,
}

impl<K: Ord + Clone, V: Clone> Book<K, V> {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// A ticket to [`put`](Self::put) what is read after this call.
    pub(crate) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn put(&self, ticket: u64, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that drops bump under, so no drop slips in between.
        if self.generation.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.len() >= self.max {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Drop the copies whose keys fall in `range`.
    fn forget_range(&self, range: impl RangeBounds<K>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        // Cloned out first: the map stays borrowed while the range is walked.
        let keys: Vec<K> = entries.range(range).map(|(k, _)| k.clone()).collect();
        for k in keys {
            entries.remove(&k);
        }
    }

    /// Drop the copies `stale` picks (a scan: for the rare changes that cut across keys).
    fn forget_where(&self, stale: impl Fn(&K) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|k, _| !stale(k));
    }

    fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

/// Most copies of each kind a replica keeps.
const USERS_MAX: usize = 100_000;
const MEMBERS_MAX: usize = 100_000;
const ACCOUNTS_MAX: usize = 20_000;

/// The replica's copies of users, memberships and service accounts.
#[derive(Debug)]
pub(crate) struct ReadCache {
    users: Book<UserId, Arc<User>>,
    /// By user first, so a change of a user drops its memberships as one range. `None`: the
    /// user is no member of the org (the usual answer for a platform admin's own standing).
    members: Book<(UserId, OrgId), Option<Arc<Membership>>>,
    accounts: Book<ServiceAccountId, Arc<ServiceAccount>>,
}

impl ReadCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            users: Book::new(ttl, USERS_MAX),
            members: Book::new(ttl, MEMBERS_MAX),
            accounts: Book::new(ttl, ACCOUNTS_MAX),
        }
    }

    /// Drop what `msg` says changed. A user's change drops their memberships too (a member
    /// view carries the user), an org's drops every membership in it.
    pub(crate) fn apply(&self, msg: &Invalidation) {
        match msg {
            Invalidation::User(id) => {
                let user = UserId(*id);
                self.users.forget_range(user..=user);
                self.members
                    .forget_range((user, OrgId(Uuid::nil()))..=(user, OrgId(Uuid::max())));
            }
            Invalidation::Org(id) => self.members.forget_where(|(_, org)| org.0 == *id),
            Invalidation::ServiceAccount(id) => {
                let account = ServiceAccountId(*id);
                self.accounts.forget_range(account..=account);
            }
            Invalidation::Everything => {
                self.users.clear();
                self.members.clear();
                self.accounts.clear();
            }
            Invalidation::Session(_) | Invalidation::ApiKey(_) | Invalidation::AccessToken(_) => {}
        }
    }
}

impl Inner {
    /// The org `name` names (`NotFound` if none), from the replica's copy if it is younger
    /// than `max_age`, from the store otherwise.
    pub(crate) async fn cached_org(
        &self,
        r: &mut LazyRead<'_>,
        name: &OrgRef,
        max_age: Duration,
    ) -> Result<Arc<Org>> {
        let book = &self.orgs;
        if let Some(org) = book.get(name, max_age) {
            return Ok(org);
        }
        // Taken before the read: a change committed meanwhile keeps this copy out of the book.
        let ticket = book.ticket();
        let org = match name {
            OrgRef::Id(id) => r.get().await?.get_org(*id).await?,
            OrgRef::Slug(slug) => r.get().await?.get_org_by_slug(slug).await?,
            OrgRef::Invalid => None,
        };
        let org = Arc::new(org.ok_or(ServiceError::NotFound)?);
        book.put(ticket, Arc::clone(&org));
        Ok(org)
    }

    /// User `id`, from the replica's copy while it is fresh, from the store otherwise.
    pub(crate) async fn cached_user(
        &self,
        r: &mut LazyRead<'_>,
        id: UserId,
    ) -> Result<Option<Arc<User>>> {
        let book = &self.reads.users;
        if let Some(user) = book.get(&id) {
            return Ok(Some(user));
        }
        let ticket = book.ticket();
        let Some(user) = r.get().await?.get_user(id).await? else {
            return Ok(None);
        };
        let user = Arc::new(user);
        book.put(ticket, id, Arc::clone(&user));
        Ok(Some(user))
    }

    /// `user`'s membership of `org` (absent ones are remembered too).
    pub(crate) async fn cached_membership(
        &self,
        r: &mut LazyRead<'_>,
        org: OrgId,
        user: UserId,
    ) -> Result<Option<Arc<Membership>>> {
        let book = &self.reads.members;
        if let Some(m) = book.get(&(user, org)) {
            return Ok(m);
        }
        let ticket = book.ticket();
        let m = r
            .get()
            .await?
            .get_membership(org, user)
            .await?
            .map(Arc::new);
        book.put(ticket, (user, org), m.clone());
        Ok(m)
    }

    /// Service account `id` (of `org` when given: a copy of another org's account is never
    /// served for it), deleted ones included, as the store answers.
    pub(crate) async fn cached_account(
        &self,
        r: &mut LazyRead<'_>,
        org: Option<OrgId>,
        id: ServiceAccountId,
    ) -> Result<Option<Arc<ServiceAccount>>> {
        let book = &self.reads.accounts;
        let in_org = |sa: &Arc<ServiceAccount>| org.is_none_or(|o| sa.org_id == o);
        if let Some(sa) = book.get(&id) {
            return Ok(Some(sa).filter(in_org));
        }
        let ticket = book.ticket();
        let tx = r.get().await?;
        let found = match org {
            Some(org) => tx.get_service_account(org, id).await?,
            None => tx.find_service_account(id).await?,
        };
        let Some(sa) = found else {
            return Ok(None);
        };
        let sa = Arc::new(sa);
        book.put(ticket, id, Arc::clone(&sa));
        Ok(Some(sa).filter(in_org))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_copy_is_served_until_its_user_changes() {
        let book: Book<(UserId, OrgId), u32> = Book::new(Duration::from_secs(60), 10);
        let (a, b) = (UserId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let org = OrgId(Uuid::now_v7());
        book.put(book.ticket(), (a, org), 1);
        book.put(book.ticket(), (b, org), 2);
        assert_eq!(book.get(&(a, org)), Some(1));
        book.forget_range((a, OrgId(Uuid::nil()))..=(a, OrgId(Uuid::max())));
        assert_eq!(book.get(&(a, org)), None);
        assert_eq!(book.get(&(b, org)), Some(2));
    }

    #[test]
    fn a_read_older_than_a_drop_is_not_stored() {
        let book: Book<u32, u32> = Book::new(Duration::from_secs(60), 10);
        let ticket = book.ticket();
        book.forget_where(|k| *k == 7);
        book.put(ticket, 1, 1);
        assert_eq!(book.get(&1), None);
        book.put(book.ticket(), 1, 1);
        assert_eq!(book.get(&1), Some(1));
    }

    #[test]
    fn copies_expire_and_a_zero_ttl_keeps_nothing() {
        let book: Book<u32, u32> = Book::new(Duration::ZERO, 10);
        book.put(book.ticket(), 1, 1);
        assert_eq!(book.get(&1), None);
    }

    #[test]
    fn a_full_book_starts_over() {
        let book: Book<u32, u32> = Book::new(Duration::from_secs(60), 2);
        for k in 0..3 {
            book.put(book.ticket(), k, k);
        }
        assert_eq!(book.get(&0), None);
        assert_eq!(book.get(&2), Some(2));
    }

    #[test]
    fn an_org_change_drops_its_memberships_only() {
        let cache = ReadCache::new(Duration::from_secs(60));
        let user = UserId(Uuid::now_v7());
        let (one, two) = (OrgId(Uuid::now_v7()), OrgId(Uuid::now_v7()));
        let members = &cache.members;
        members.put(members.ticket(), (user, one), None);
        members.put(members.ticket(), (user, two), None);
        cache.apply(&Invalidation::Org(one.0));
        assert_eq!(members.get(&(user, one)), None);
        assert_eq!(members.get(&(user, two)), Some(None));
        cache.apply(&Invalidation::User(user.0));
        assert_eq!(members.get(&(user, two)), None);
    }
}
