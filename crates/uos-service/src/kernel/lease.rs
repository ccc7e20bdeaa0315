//! A named lease in the store that lets one replica at a time do a job (relay the audit
//! outbox, consume the usage stream), and this replica's view of it.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::{Inner, Result};

/// How long a lease lasts unrenewed: a holder that dies is replaced after at most this long.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// Renewed when less than this is left, so a live holder never loses it between two rounds.
const LEASE_RENEW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub(crate) struct Lease {
    name: &'static str,
    held: AtomicBool,
    /// Expiry as Unix milliseconds, while held.
    until_ms: AtomicI64,
}

impl Lease {
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            held: AtomicBool::new(false),
            until_ms: AtomicI64::new(0),
        }
    }

    /// Whether this replica held the lease when it last asked.
    pub(crate) fn is_held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes or renews the lease when it is close to running out; true while held.
    pub(crate) async fn hold(&self, inner: &Inner) -> Result<bool> {
        let now = uos_domain::now();
        let renew_at = self.until_ms.load(Ordering::Relaxed)
            - i64::try_from(LEASE_RENEW.as_millis()).unwrap_or(i64::MAX);
        if self.is_held() && now.timestamp_millis() < renew_at {
            return Ok(true);
        }
        let until = now + chrono::Duration::from_std(LEASE_TTL).unwrap_or_default();
        let mut tx = inner.store.begin().await?;
        let held = tx
            .claim_lease(self.name, &inner.replica_id, now, until)
            .await?;
        tx.commit().await?;
        self.held.store(held, Ordering::Relaxed);
        self.until_ms.store(
            if held { until.timestamp_millis() } else { 0 },
            Ordering::Relaxed,
        );
        Ok(held)
    }
}
