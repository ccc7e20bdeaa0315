//! The replica's short-lived copies of orgs, by id and by slug, that the decision point reads
//! instead of asking the store for the same org on every question.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use uos_domain::{Org, OrgId, OrgSlug};
use uuid::Uuid;

/// More orgs than this and the copy starts over: a miss costs one keyed read.
const BOOK_MAX: usize = 10_000;

/// How a request names an org: by id or by slug. Anything else names no org.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum OrgRef {
    Id(OrgId),
    Slug(OrgSlug),
    Invalid,
}

impl OrgRef {
    /// Parsed as [`org_by_ref`](crate::budgets::usage::org_by_ref) reads it: an id if it is
    /// one, a slug otherwise.
    pub(crate) fn parse(raw: &str) -> Self {
        match Uuid::parse_str(raw) {
            Ok(id) => Self::Id(OrgId(id)),
            Err(_) => OrgSlug::parse(raw).map_or(Self::Invalid, Self::Slug),
        }
    }
}

/// A replica's copies of orgs, kept for `ttl`. Every org change on this replica drops its copy
/// at once (the unit of work's `Invalidation::Org`), other replicas' changes arrive through
/// the invalidation fan-out; the age a reader accepts bounds how late a change is seen if a
/// message is lost: the decision point's is the budget copies' (`service.budget_cache_ms`, at
/// most a second), admin reads accept the auth cache's.
#[derive(Debug)]
pub(crate) struct OrgBook {
    ttl: Duration,
    entries: RwLock<Entries>,
    /// Bumped by every drop: a read that started before a drop must not store what it read,
    /// or a copy older than the change would outlive it.
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct Entries {
    by_id: HashMap<OrgId, (Instant, Arc<Org>)>,
    /// Only a pointer to `by_id`: a slug whose org is gone or now has another slug misses.
    by_slug: HashMap<OrgSlug, OrgId>,
}

impl OrgBook {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The copy of the org `r` names, if there is one younger than `max_age`.
    pub(crate) fn get(&self, r: &OrgRef, max_age: Duration) -> Option<Arc<Org>> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let id = match r {
            OrgRef::Id(id) => *id,
            OrgRef::Slug(slug) => *entries.by_slug.get(slug)?,
            OrgRef::Invalid => return None,
        };
        let (read_at, org) = entries.by_id.get(&id)?;
        if read_at.elapsed() >= max_age.min(self.ttl) {
            return None;
        }
        if let OrgRef::Slug(slug) = r {
            if org.slug != *slug {
                return None;
            }
        }
        Some(Arc::clone(org))
    }

    /// A ticket to [`put`](Self::put) what is read after this call.
    pub(crate) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn put(&self, ticket: u64, org: Arc<Org>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `forget` bumps under, so no drop slips in between.
        if self.generation.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.by_id.len() >= BOOK_MAX {
            entries.by_id.clear();
            entries.by_slug.clear();
        }
        entries.by_slug.insert(org.slug.clone(), org.id);
        entries.by_id.insert(org.id, (Instant::now(), org));
    }

    /// Drop the copy of org `id` (it changed, or went).
    pub(crate) fn forget(&self, id: OrgId) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some((_, org)) = entries.by_id.remove(&id) {
            if entries.by_slug.get(&org.slug) == Some(&id) {
                entries.by_slug.remove(&org.slug);
            }
        }
    }

    /// Drop every copy (messages may have been lost).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.by_id.clear();
        entries.by_slug.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const AGE: Duration = Duration::from_secs(60);

    fn org(slug: &str) -> Arc<Org> {
        Arc::new(Org::new(
            OrgSlug::parse(slug).unwrap(),
            "Org".into(),
            uos_domain::now(),
        ))
    }

    fn slug(s: &str) -> OrgRef {
        OrgRef::Slug(OrgSlug::parse(s).unwrap())
    }

    #[test]
    fn a_copy_is_found_by_id_and_by_slug_until_forgotten() {
        let book = OrgBook::new(Duration::from_secs(60));
        let acme = org("acme");
        book.put(book.ticket(), Arc::clone(&acme));
        assert_eq!(book.get(&OrgRef::Id(acme.id), AGE).unwrap().id, acme.id);
        assert_eq!(
            book.get(&OrgRef::parse(&acme.id.0.to_string()), AGE)
                .unwrap()
                .id,
            acme.id
        );
        assert_eq!(book.get(&slug("acme"), AGE).unwrap().id, acme.id);
        assert!(book.get(&slug("other"), AGE).is_none());
        assert!(book.get(&OrgRef::parse("Not A Slug"), AGE).is_none());
        book.forget(acme.id);
        assert!(book.get(&OrgRef::Id(acme.id), AGE).is_none());
        assert!(book.get(&slug("acme"), AGE).is_none());
    }

    #[test]
    fn a_read_from_before_a_drop_is_not_kept() {
        let book = OrgBook::new(Duration::from_secs(60));
        let acme = org("acme");
        let ticket = book.ticket();
        book.forget(acme.id);
        book.put(ticket, Arc::clone(&acme));
        assert!(book.get(&OrgRef::Id(acme.id), AGE).is_none());
        book.put(book.ticket(), Arc::clone(&acme));
        assert!(book.get(&OrgRef::Id(acme.id), AGE).is_some());
        book.clear();
        assert!(book.get(&slug("acme"), AGE).is_none());
    }

    #[test]
    fn a_slug_taken_over_by_another_org_finds_the_new_one() {
        let book = OrgBook::new(Duration::from_secs(60));
        let old = org("acme");
        book.put(book.ticket(), Arc::clone(&old));
        let mut renamed = (*old).clone();
        renamed.slug = OrgSlug::parse("purged-acme").unwrap();
        book.forget(old.id);
        book.put(book.ticket(), Arc::new(renamed));
        assert!(
            book.get(&slug("acme"), AGE).is_none(),
            "the old slug is free"
        );
        let new = org("acme");
        book.put(book.ticket(), Arc::clone(&new));
        assert_eq!(book.get(&slug("acme"), AGE).unwrap().id, new.id);
        assert_eq!(book.get(&slug("purged-acme"), AGE).unwrap().id, old.id);
    }

    #[test]
    fn copies_expire_and_a_zero_ttl_keeps_none() {
        let book = OrgBook::new(Duration::from_millis(1));
        let acme = org("acme");
        book.put(book.ticket(), Arc::clone(&acme));
        std::thread::sleep(Duration::from_millis(5));
        assert!(book.get(&OrgRef::Id(acme.id), AGE).is_none());
        let book = OrgBook::new(Duration::ZERO);
        book.put(book.ticket(), Arc::clone(&acme));
        assert!(book.get(&OrgRef::Id(acme.id), AGE).is_none());
    }
}
