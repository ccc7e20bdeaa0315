//! The outbox relay: every audit event, once committed, is published (to Kafka in production)
//! in chain order, at least once. Progress is kept per chain in the store, so a crash or a
//! broker outage only delays events; one replica at a time relays, under a lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use uos_events::AuditPublisher;
use uos_store::AuditRow;

use crate::kernel::lease::Lease;
use crate::{Result, ServiceError, Services};

/// Events published per round.
const BATCH: u32 = 1000;
/// How often a replica looks for events committed elsewhere (its own commits wake it at once).
const POLL: Duration = Duration::from_millis(100);
/// Pause after a failed round (broker or store unreachable) before trying again.
const BACKOFF: Duration = Duration::from_secs(1);
/// How often the backlog is counted: a count reads every unpublished event, so a relay
/// draining a large backlog must not pay it every round.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// This replica's relay: the publisher, and what it last saw (for `/metrics`).
#[derive(Debug)]
pub(crate) struct RelayState {
    publisher: Option<Arc<dyn AuditPublisher>>,
    /// Woken by this replica's commits.
    due: tokio::sync::Notify,
    /// The lease the relaying replica holds.
    lease: Lease,
    behind: AtomicU64,
    /// When the oldest unpublished event occurred, Unix seconds (0: none behind).
    oldest_unpublished: AtomicI64,
    /// When the backlog was last counted, Unix milliseconds.
    counted_at_ms: AtomicI64,
    published: AtomicU64,
}

impl RelayState {
    pub(crate) fn new(publisher: Option<Arc<dyn AuditPublisher>>) -> Self {
        Self {
            publisher,
            due: tokio::sync::Notify::new(),
            lease: Lease::new("audit-relay"),
            behind: AtomicU64::new(0),
            oldest_unpublished: AtomicI64::new(0),
            counted_at_ms: AtomicI64::new(0),
            published: AtomicU64::new(0),
        }
    }

    /// Events were committed on this replica.
    pub(crate) fn wake(&self) {
        if self.publisher.is_some() {
            self.due.notify_one();
        }
    }
}

/// What `/metrics` reports of the relay (only while one is configured).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayStats {
    /// Whether this replica holds the relay lease.
    pub leader: bool,
    /// Unpublished events, as this replica last counted them while it relayed.
    pub behind: u64,
    /// Age of the oldest unpublished event, seconds (0 when none).
    pub oldest_unpublished_secs: i64,
    /// Events this replica published since it started.
    pub published: u64,
}

impl Services {
    /// The relay's figures, or `None` when no event stream is configured.
    pub fn relay_stats(&self) -> Option<RelayStats> {
        let relay = &self.inner.relay;
        relay.publisher.as_ref()?;
        let oldest = relay.oldest_unpublished.load(Ordering::Relaxed);
        let age = if oldest == 0 {
            0
        } else {
            (uos_domain::now().timestamp() - oldest).max(0)
        };
        Some(RelayStats {
            leader: relay.lease.is_held(),
            behind: relay.behind.load(Ordering::Relaxed),
            oldest_unpublished_secs: age,
            published: relay.published.load(Ordering::Relaxed),
        })
    }

    /// Relays until the process ends, if a publisher is configured: whenever this replica
    /// commits, every [`POLL`] otherwise, and after [`BACKOFF`] when a round failed.
    pub(crate) fn spawn_relay(&self) {
        let Some(publisher) = self.inner.relay.publisher.clone() else {
            return;
        };
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                match svc.relay_round(publisher.as_ref()).await {
                    Ok(n) if n == BATCH as usize => continue,
                    Ok(_) => {
                        let _ = tokio::time::timeout(POLL, svc.inner.relay.due.notified()).await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "audit events not published; retrying");
                        tokio::time::sleep(BACKOFF).await;
                    }
                }
            }
        });
    }

    /// One round: hold the lease, publish the next batch, record how far each chain got.
    /// Returns how many events it published.
    async fn relay_round(&self, publisher: &dyn AuditPublisher) -> Result<usize> {
        let inner = &*self.inner;
        let relay = &inner.relay;
        if !relay.lease.hold(inner).await? {
            return Ok(0);
        }
        let batch = {
            let mut tx = inner.store.begin().await?;
            let batch = tx.unpublished_audit(BATCH).await?;
            let now_ms = uos_domain::now().timestamp_millis();
            let stale = now_ms - relay.counted_at_ms.load(Ordering::Relaxed)
                >= i64::try_from(COUNT_EVERY.as_millis()).unwrap_or(i64::MAX);
            // A batch that is not full is the whole backlog; otherwise count, at most so often.
            if batch.len() < BATCH as usize || stale {
                let (behind, oldest) = if batch.len() < BATCH as usize {
                    (batch.len() as u64, batch.first().map(|e| e.occurred_at))
                } else {
                    tx.audit_backlog().await?
                };
                relay.behind.store(behind, Ordering::Relaxed);
                relay
                    .oldest_unpublished
                    .store(oldest.map_or(0, |t| t.timestamp()), Ordering::Relaxed);
                relay.counted_at_ms.store(now_ms, Ordering::Relaxed);
            }
            tx.commit().await?;
            batch
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let results = publisher.publish(&batch).await;
        let (progress, published, failure) = progress(&batch, results);
        if !progress.is_empty() {
            let mut tx = inner.store.begin().await?;
            tx.mark_published(&progress).await?;
            tx.commit().await?;
        }
        relay.published.fetch_add(published, Ordering::Relaxed);
        let behind = relay.behind.load(Ordering::Relaxed);
        relay
            .behind
            .store(behind.saturating_sub(published), Ordering::Relaxed);
        if published == batch.len() as u64 && relay.behind.load(Ordering::Relaxed) == 0 {
            relay.oldest_unpublished.store(0, Ordering::Relaxed);
        }
        match failure {
            Some(e) => Err(ServiceError::Unavailable(format!(
                "{published} of {} events published: {e}",
                batch.len()
            ))),
            None => Ok(batch.len()),
        }
    }
}

/// How far each chain of `batch` was published: up to the event before its first failure
/// (later events of that chain are sent again next round). Also how many events that covers,
/// and the first failure.
fn progress(
    batch: &[AuditRow],
    results: Vec<std::result::Result<(), uos_events::PublishError>>,
) -> (Vec<(String, i64)>, u64, Option<uos_events::PublishError>) {
    // Per chain: the last seq published, and whether a failure stopped it.
    let mut reached: HashMap<&str, (i64, bool)> = HashMap::new();
    let mut published = 0;
    let mut failure = None;
    for (row, result) in batch.iter().zip(results) {
        let (seq, stopped) = reached.entry(row.chain.as_str()).or_insert((0, false));
        if *stopped {
            continue;
        }
        match result {
            Ok(()) => {
                *seq = row.seq;
                published += 1;
            }
            Err(e) => {
                *stopped = true;
                failure.get_or_insert(e);
            }
        }
    }
    let progress = reached
        .into_iter()
        .filter(|(_, (seq, _))| *seq > 0)
        .map(|(chain, (seq, _))| (chain.to_owned(), seq))
        .collect();
    (progress, published, failure)
}
