//! What every use case stands on: the caller context, errors, configuration, the unit of work
//! (one transaction with its audit events and idempotency record), authorization helpers,
//! idempotency claims, the password-hashing pool and the views the API returns.

pub(crate) mod access;
pub(crate) mod config;
pub(crate) mod ctx;
pub(crate) mod error;
pub(crate) mod idempotency;
pub(crate) mod lease;
pub(crate) mod precondition;
pub(crate) mod rate_limit;
pub(crate) mod reads;
pub(crate) mod uow;
pub mod views;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use uos_store::AuditHead;

/// Most chain heads a replica remembers; past it, the memory starts over (a chain whose head
/// is forgotten only costs its next append one locked read).
const REMEMBERED_CHAINS: usize = 100_000;

/// Each audit chain's head as of this replica's last commit to it: the next event of that
/// chain links to it without reading the head first (the append checks it; see
/// `UnitOfWork::record`).
#[derive(Debug, Default)]
pub(crate) struct ChainMemory {
    heads: Mutex<HashMap<String, AuditHead>>,
    /// Appends that found the remembered head stale (another replica or a concurrent commit
    /// moved it) and had to lock the head and chain again.
    conflicts: AtomicU64,
    /// Events committed by this replica since it started.
    appended: AtomicU64,
    /// Woken when another `checkpoint_every_events` of them were committed.
    pub(crate) checkpoint_due: tokio::sync::Notify,
}

impl ChainMemory {
    pub(crate) fn remembered(&self, chain: &str) -> Option<AuditHead> {
        self.heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(chain)
            .cloned()
    }

    /// Remember committed heads, each unless a later one of its chain is already remembered
    /// (commits of concurrent units of work may report out of order).
    pub(crate) fn remember(&self, heads: impl IntoIterator<Item = AuditHead>) {
        let mut slot = self.heads.lock().unwrap_or_else(PoisonError::into_inner);
        for head in heads {
            if slot.len() >= REMEMBERED_CHAINS && !slot.contains_key(&head.chain) {
                slot.clear();
            }
            match slot.get_mut(&head.chain) {
                Some(known) if known.seq >= head.seq => {}
                Some(known) => *known = head,
                None => {
                    slot.insert(head.chain.clone(), head);
                }
            }
        }
    }

    /// An append found the remembered head stale.
    pub(crate) fn note_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// `n` events were committed; wakes the checkpoint issuer each time the total passes a
    /// multiple of `every`.
    pub(crate) fn note_appended(&self, n: u64, every: u64) {
        let before = self.appended.fetch_add(n, Ordering::Relaxed);
        let every = every.max(1);
        if (before + n) / every != before / every {
            self.checkpoint_due.notify_one();
        }
    }
}
