//! The decision point for downstream services: signed decisions from the policy and the
//! budgets.

pub(crate) mod decide;

use std::sync::atomic::AtomicU64;

/// Decisions this replica gave, for the metrics (denials are also audited).
#[derive(Debug, Default)]
pub(crate) struct PolicyStats {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
}
