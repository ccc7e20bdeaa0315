//! What every use case stands on: the caller context, errors, configuration, the unit of work
//! (one transaction with its audit events and idempotency record), authorization helpers,
//! idempotency claims, the password-hashing pool and the views the API returns.

pub(crate) mod access;
pub(crate) mod config;
pub(crate) mod ctx;
pub(crate) mod error;
pub(crate) mod idempotency;
pub(crate) mod precondition;
pub(crate) mod uow;
pub mod views;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use uos_store::AuditHead;

/// The audit chain head as of this replica's last commit: the next event chains from it
/// without reading the head first (the append checks it; see `UnitOfWork::record`).
#[derive(Debug, Default)]
pub(crate) struct ChainMemory {
    head: Mutex<Option<AuditHead>>,
    /// Appends that found the remembered head stale (another replica or a concurrent commit
    /// moved it) and had to lock the head and chain again.
    conflicts: AtomicU64,
}

impl ChainMemory {
    pub(crate) fn remembered(&self) -> Option<AuditHead> {
        self.head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remember a committed head, unless a later one is already remembered (commits of
    /// concurrent units of work may report out of order).
    pub(crate) fn remember(&self, head: AuditHead) {
        let mut slot = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_none_or(|h| h.seq < head.seq) {
            *slot = Some(head);
        }
    }

    /// An append found the remembered head stale.
    pub(crate) fn note_conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }
}
