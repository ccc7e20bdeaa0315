//! The decision point for downstream services: signed decisions from the policy and the
//! budgets; and the policy bundle they come from, reloaded while the service runs.

pub(crate) mod bundle;
pub(crate) mod decide;
pub(crate) mod reuse;

use std::sync::atomic::AtomicU64;

/// Decisions this replica gave, for the metrics (denials are also audited).
#[derive(Debug, Default)]
pub(crate) struct PolicyStats {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    /// Denials with a budget among their reasons (also counted in `denied`): how often spend,
    /// not policy, stopped a caller.
    pub budget_denied: AtomicU64,
    /// Held for the whole of a reload (compile, audit, install), so two reloads never race
    /// to install and the audit trail records them in the order they took effect.
    pub reloading: tokio::sync::Mutex<()>,
}
