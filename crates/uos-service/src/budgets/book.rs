//! Where a budget's spend stands, and the replica's short-lived copy of it that the decision
//! point answers from.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uos_domain::{Budget, BudgetKey, BudgetState};
use uos_store::ReadTx;

use crate::approvals::overrides::extra_cents;
use crate::kernel::views::BudgetView;
use crate::Result;

/// A budget and its current period's spend, as of `at`.
#[derive(Clone, Debug)]
pub(crate) struct BudgetStatus {
    pub budget: Budget,
    pub spent_cents: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: Option<DateTime<Utc>>,
    pub effective_limit_cents: i64,
}

impl BudgetStatus {
    /// Reads the spend of `budget`'s period that `at` falls in.
    pub(crate) async fn read(
        tx: &mut dyn ReadTx,
        budget: Budget,
        at: DateTime<Utc>,
    ) -> Result<Self> {
        let (from, until) = budget.period.day_range(at);
        let spent_cents = tx.spent(&budget.key, from, until).await?;
        let (period_start, period_end) = budget.period.bounds(at);
        // Overrides count while they are active, whatever period the spend is in.
        let extra = extra_cents(tx, &budget.key, uos_domain::now()).await?;
        Ok(Self {
            effective_limit_cents: budget.limit_cents.saturating_add(extra),
            budget,
            spent_cents,
            period_start,
            period_end,
        })
    }

    pub(crate) fn state(&self) -> BudgetState {
        self.budget
            .state(self.spent_cents, self.effective_limit_cents)
    }

    /// The status `cost_cents` more would leave.
    pub(crate) fn after(&self, cost_cents: i64) -> Self {
        Self {
            spent_cents: self.spent_cents.saturating_add(cost_cents.max(0)),
            ..self.clone()
        }
    }

    pub(crate) fn view(&self) -> BudgetView {
        let b = &self.budget;
        BudgetView {
            scope: b.key.scope.as_str().to_owned(),
            scope_id: b.key.scope_id,
            period: b.period.as_str().to_owned(),
            limit_cents: b.limit_cents,
            warn_percent: b.warn_percent,
            block_percent: b.block_percent,
            spent_cents: self.spent_cents,
            period_start: self.period_start,
            period_end: self.period_end,
            effective_limit_cents: self.effective_limit_cents,
            state: self.state().as_str().to_owned(),
            created_at: b.created_at,
            updated_at: b.updated_at,
        }
    }
}

/// More budgets than this and the copy starts over: a miss costs two keyed reads.
const BOOK_MAX: usize = 100_000;

/// A replica's copies of budget statuses (`None`: the scope has no budget), each trusted for
/// `ttl` and never past the end of the period it was read in. Usage and budget changes on
/// this replica drop the copies they make stale at once; other replicas' changes are seen
/// when the copy expires, which is what bounds `service.budget_cache_ms`.
#[derive(Debug)]
pub(crate) struct BudgetBook {
    ttl: Duration,
    entries: Mutex<HashMap<BudgetKey, Entry>>,
    /// Bumped by every drop: a read that started before a drop must not store what it read,
    /// or a copy older than the change would outlive it.
    generation: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    read_at: Instant,
    status: Option<Arc<BudgetStatus>>,
}

impl BudgetBook {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The copy for `key`, if it is fresh: `Some(None)` means "no budget".
    pub(crate) fn get(
        &self,
        key: &BudgetKey,
        now: DateTime<Utc>,
    ) -> Option<Option<Arc<BudgetStatus>>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        if entry.read_at.elapsed() >= self.ttl {
            return None;
        }
        match &entry.status {
            Some(s) if s.period_end.is_some_and(|end| now >= end) => None,
            other => Some(other.clone()),
        }
    }

    /// A ticket to [`put`](Self::put) what is read after this call.
    pub(crate) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn put(&self, ticket: u64, key: BudgetKey, status: Option<Arc<BudgetStatus>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `forget` bumps under, so no drop slips in between.
        if self.generation.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.len() >= BOOK_MAX {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                read_at: Instant::now(),
                status,
            },
        );
    }

    /// Drop the copies of `keys` (their spend or settings changed).
    pub(crate) fn forget(&self, keys: impl IntoIterator<Item = BudgetKey>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        for key in keys {
            entries.remove(&key);
        }
    }
}
