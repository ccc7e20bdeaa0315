//! Counting requests against a limit shared by every replica without a round trip per
//! request: each replica *reserves* part of the allowance from the shared counter and spends it
//! in memory.
//!
//! A reservation adds `n` to the shared counter of the window ([`SharedState::add`]) and keeps
//! whatever part of those `n` still fits under the limit. Spending is a decrement under a
//! mutex. So:
//!
//! - **Never over the limit.** Every request admitted was reserved in the shared counter before
//!   it was admitted, and a reservation is granted only up to the limit; however the replicas
//!   interleave, at most `limit` requests are admitted per window (while the shared state
//!   answers; see fail-open below).
//! - **Refused early by at most a small, documented amount.** What a replica reserved and did
//!   not spend by the end of the window is lost to the others. A reservation is sized to about
//!   `reserve` (default 100 ms) of that replica's own recent traffic, at most 1% of the limit,
//!   and a replica holds at most two of them (the one it spends and the next, fetched in the
//!   background when half is spent). So with `R` replicas at least
//!   `limit − R × 2 × max(1, limit / 100)` requests are admitted before the first refusal.
//!   Limits under 200 reserve one request at a time: exact, one round trip per request
//!   (login and password-reset mail are limited like that).
//! - **Fail open.** If the shared state does not answer (within [`RESERVE_TIMEOUT`]), the
//!   request is admitted, the failure is counted, and for [`FAIL_OPEN_FOR`] no reservation is
//!   attempted at all, so a Redis outage neither fails requests nor slows every one of them by
//!   a timeout.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;
use uos_service::SharedState;

/// How long a reservation may take before the request is admitted without one.
pub const RESERVE_TIMEOUT: Duration = Duration::from_millis(250);
/// After a failed reservation, how long requests are admitted without trying again.
pub const FAIL_OPEN_FOR: Duration = Duration::from_secs(1);
/// Below this many buckets the map is never swept.
const MIN_SWEEP_AT: usize = 4096;

/// The verdict on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted; about `remaining` more fit in the window, which ends in `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Over the limit until the window ends in `reset`.
    Limited { reset: Duration },
}

/// One limit: how many per window.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    pub quota: u64,
    pub window: Duration,
}

impl Limit {
    /// The largest reservation: 1% of the limit (at least one request).
    fn max_chunk(self) -> u64 {
        (self.quota / 100).max(1)
    }
}

/// Buckets keyed by `K` (a rule and who is counted), each reserving from the shared counter
/// named by the key its caller gives.
#[derive(Debug)]
pub struct Leases<K> {
    shared: Arc<dyn SharedState>,
    reserve: Duration,
    buckets: Mutex<Buckets<K>>,
    /// Fail-open deadline, in milliseconds since `epoch` (0: not failing open).
    open_until_ms: AtomicU64,
    epoch: Instant,
    /// Reservations that failed (the request was admitted anyway).
    failures: AtomicU64,
}

#[derive(Debug)]
struct Buckets<K> {
    map: HashMap<K, Arc<Bucket>>,
    sweep_at: usize,
}

#[derive(Debug, Default)]
struct Bucket {
    state: Mutex<Lease>,
    /// Held while a reservation is in flight, so a bucket has one at a time.
    refill: tokio::sync::Mutex<()>,
}

impl Bucket {
    /// Every update of a lease is a few field assignments that cannot panic half-way, so a
    /// poisoned lock still holds a consistent lease.
    fn lease(&self) -> MutexGuard<'_, Lease> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// This replica's share of one shared counter in its current window.
#[derive(Debug, Default)]
struct Lease {
    /// Reserved here and not spent yet.
    tokens: u64,
    /// When the window the tokens belong to ends (`None`: nothing reserved yet).
    window_end: Option<Instant>,
    /// The shared counter reached the limit: when `tokens` is spent, refuse until
    /// `window_end` without asking again.
    full: bool,
    /// The limit minus the shared count at the last reservation (for `RateLimit`).
    shared_left: u64,
    /// Spent since `since` (the last reservation): sizes the next reservation.
    spent: u64,
    since: Option<Instant>,
    /// A background reservation is scheduled or running.
    prefetching: bool,
}

impl Lease {
    /// Forget a window that has ended: its tokens are void.
    fn roll(&mut self, now: Instant) {
        if self.window_end.is_some_and(|end| end <= now) {
            self.tokens = 0;
            self.window_end = None;
            self.full = false;
        }
    }

    fn reset(&self, now: Instant, limit: Limit) -> Duration {
        self.window_end
            .map_or(limit.window, |end| end.saturating_duration_since(now))
    }

    /// Spend one token if there is one.
    fn take(&mut self, now: Instant, limit: Limit) -> Option<Verdict> {
        if self.tokens > 0 {
            self.tokens -= 1;
            self.spent += 1;
            return Some(Verdict::Allowed {
                remaining: self.shared_left + self.tokens,
                reset: self.reset(now, limit),
            });
        }
        self.full.then(|| Verdict::Limited {
            reset: self.reset(now, limit),
        })
    }

    /// How many to reserve next: about `reserve` of the traffic seen since the last
    /// reservation, within `1..=max_chunk`.
    fn chunk(&self, now: Instant, reserve: Duration, limit: Limit) -> u64 {
        let Some(since) = self.since else { return 1 };
        let elapsed = now
            .saturating_duration_since(since)
            .max(Duration::from_millis(1));
        let want = u128::from(self.spent) * reserve.as_micros() / elapsed.as_micros().max(1);
        u64::try_from(want)
            .unwrap_or(u64::MAX)
            .clamp(1, limit.max_chunk())
    }
}

impl<K: Eq + Hash + Clone + Send + Sync + 'static> Leases<K> {
    /// `reserve`: how much of its own traffic a replica reserves ahead.
    pub fn new(shared: Arc<dyn SharedState>, reserve: Duration) -> Self {
        Self {
            shared,
            reserve,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            failures: AtomicU64::new(0),
        }
    }

    /// Reservations that failed since start (each request then was admitted).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Count one request of `key` against `limit`; `shared_key` names its shared counter
    /// (built only when a reservation is needed).
    pub async fn acquire(
        self: &Arc<Self>,
        key: &K,
        limit: Limit,
        shared_key: impl FnOnce() -> String,
    ) -> Verdict {
        let bucket = self.bucket(key);
        let now = Instant::now();
        {
            let mut lease = bucket.lease();
            lease.roll(now);
            if let Some(verdict) = lease.take(now, limit) {
                // Fetch the next reservation before this one runs out, so busy routes never
                // wait for the shared state.
                let chunk = lease.chunk(now, self.reserve, limit);
                if matches!(verdict, Verdict::Allowed { .. })
                    && chunk > 1
                    && lease.tokens <= chunk / 2
                    && !lease.full
                    && !lease.prefetching
                    && !self.failing_open(now)
                {
                    lease.prefetching = true;
                    drop(lease);
                    let (leases, bucket) = (self.clone(), bucket.clone());
                    let shared_key = shared_key();
                    tokio::spawn(async move {
                        let _guard = bucket.refill.lock().await;
                        let _ = leases.reserve(&bucket, &shared_key, limit, false).await;
                        bucket.lease().prefetching = false;
                    });
                }
                return verdict;
            }
        }
        if self.failing_open(now) {
            return open(limit);
        }
        // Nothing reserved: wait for a reservation (one per bucket at a time; whoever waited
        // behind another looks again first, as that one may have reserved enough for both).
        let _guard = bucket.refill.lock().await;
        let now = Instant::now();
        {
            let mut lease = bucket.lease();
            lease.roll(now);
            if let Some(verdict) = lease.take(now, limit) {
                return verdict;
            }
        }
        if self.failing_open(now) {
            return open(limit);
        }
        let shared_key = shared_key();
        match self.reserve(&bucket, &shared_key, limit, true).await {
            Some(verdict) => verdict,
            None => open(limit),
        }
    }

    /// Reserve from the shared counter; with `take`, spend one of the reserved tokens for the
    /// request waiting on it and return its verdict. `None`: the shared state failed.
    async fn reserve(
        &self,
        bucket: &Bucket,
        shared_key: &str,
        limit: Limit,
        take: bool,
    ) -> Option<Verdict> {
        let sent = Instant::now();
        let want = {
            let lease = bucket.lease();
            // A prefetch that finds plenty left (a waiting request reserved meanwhile) skips.
            let chunk = lease.chunk(sent, self.reserve, limit);
            if !take && (lease.tokens > chunk / 2 || lease.full) {
                return None;
            }
            chunk
        };
        let reply = tokio::time::timeout(
            RESERVE_TIMEOUT,
            self.shared.add(shared_key, want, limit.window),
        )
        .await;
        let hit = match reply {
            Ok(Ok(hit)) => hit,
            Ok(Err(e)) => {
                self.fail_open(&e.to_string());
                return None;
            }
            Err(_) => {
                self.fail_open("timed out");
                return None;
            }
        };
        let now = Instant::now();
        let before = hit.count.saturating_sub(want);
        let granted = limit.quota.saturating_sub(before).min(want);
        let mut lease = bucket.lease();
        lease.roll(now);
        // Our add started the shared window: whatever is left here belongs to an old one.
        if before == 0 {
            lease.tokens = 0;
        }
        lease.tokens += granted;
        lease.full = granted < want || hit.count >= limit.quota;
        lease.shared_left = limit.quota.saturating_sub(hit.count);
        // The shared window ends `ttl` after the add ran, which was after `sent`: ending it
        // here from `sent` never outlives it.
        lease.window_end = Some(sent + hit.ttl.max(Duration::from_millis(1)));
        lease.spent = 0;
        lease.since = Some(sent);
        if take {
            return Some(lease.take(now, limit).unwrap_or(Verdict::Limited {
                reset: lease.reset(now, limit),
            }));
        }
        None
    }

    fn bucket(&self, key: &K) -> Arc<Bucket> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = buckets.map.get(key) {
            return b.clone();
        }
        // Most keys (one per client address) are seen in one window only: drop buckets whose
        // window is over and that nobody is using, once the map has doubled since the last
        // sweep (amortised O(1), and the map stays within about twice its live buckets).
        if buckets.map.len() >= buckets.sweep_at {
            let now = Instant::now();
            buckets.map.retain(|_, b| {
                Arc::strong_count(b) > 1 || b.lease().window_end.is_some_and(|end| end > now)
            });
            buckets.sweep_at = (buckets.map.len() * 2).max(MIN_SWEEP_AT);
        }
        let b = Arc::new(Bucket::default());
        buckets.map.insert(key.clone(), b.clone());
        b
    }

    fn millis(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn failing_open(&self, now: Instant) -> bool {
        self.millis(now) < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn fail_open(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let until = self.millis(Instant::now() + FAIL_OPEN_FOR);
        // Logged once per fail-open period, not once per request.
        if self.open_until_ms.swap(until, Ordering::Relaxed) < self.millis(Instant::now()) {
            tracing::warn!(
                error = why,
                admit_for = ?FAIL_OPEN_FOR,
                "rate limit: shared state did not answer; admitting requests without counting"
            );
        }
    }
}

/// The verdict while the shared state is away: admitted, nothing known about the count.
fn open(limit: Limit) -> Verdict {
    Verdict::Allowed {
        remaining: limit.quota,
        reset: limit.window,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use uos_shared::MemoryState;

    fn limit(quota: u64) -> Limit {
        Limit {
            quota,
            window: Duration::from_secs(60),
        }
    }

    async fn admitted(leases: &Arc<Leases<u8>>, key: u8, limit: Limit, n: usize) -> u64 {
        let mut allowed = 0;
        for _ in 0..n {
            if let Verdict::Allowed { .. } = leases.acquire(&key, limit, || format!("k{key}")).await
            {
                allowed += 1;
            }
        }
        allowed
    }

    #[tokio::test]
    async fn a_small_limit_is_exact() {
        let leases = Arc::new(Leases::new(
            Arc::new(MemoryState::new()),
            Duration::from_millis(100),
        ));
        assert_eq!(admitted(&leases, 1, limit(30), 50).await, 30);
        // Another key has its own count.
        assert_eq!(admitted(&leases, 2, limit(30), 5).await, 5);
        match leases.acquire(&1, limit(30), || "k1".into()).await {
            Verdict::Limited { reset } => assert!(reset <= Duration::from_secs(60)),
            v => panic!("expected a refusal, got {v:?}"),
        }
    }

    #[tokio::test]
    async fn replicas_sharing_a_counter_never_admit_more_than_the_limit() {
        let shared: Arc<dyn SharedState> = Arc::new(MemoryState::new());
        let a = Arc::new(Leases::new(shared.clone(), Duration::from_millis(100)));
        let b = Arc::new(Leases::new(shared, Duration::from_millis(100)));
        let lim = limit(5000);
        let mut allowed = 0;
        for _ in 0..4000 {
            for leases in [&a, &b] {
                if let Verdict::Allowed { .. } = leases.acquire(&0, lim, || "k".into()).await {
                    allowed += 1;
                }
            }
        }
        let tolerance = 2 * 2 * lim.max_chunk();
        assert!(
            (lim.quota - tolerance..=lim.quota).contains(&allowed),
            "{allowed} admitted, expected {} to {}",
            lim.quota - tolerance,
            lim.quota
        );
    }

    #[tokio::test]
    async fn the_window_ends_and_the_count_starts_over() {
        let leases = Arc::new(Leases::new(
            Arc::new(MemoryState::new()),
            Duration::from_millis(100),
        ));
        let short = Limit {
            quota: 3,
            window: Duration::from_millis(200),
        };
        assert_eq!(admitted(&leases, 1, short, 5).await, 3);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(admitted(&leases, 1, short, 5).await, 3);
    }
}
