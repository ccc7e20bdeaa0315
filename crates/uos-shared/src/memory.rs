//! In-process shared state: the embedded default for a single replica. Same semantics as the
//! Redis adapter (values are strings, counters are decimal strings in the same key space), so
//! the conformance suite holds for both.

use crate::{
    count_of, ttl_millis, Hit, Invalidation, SharedError, SharedState, INVALIDATION_BUFFER,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Below this many entries the map is never swept: sweeping a small map buys nothing.
const MIN_SWEEP_AT: usize = 1024;

/// Shared state held in this process: correct for one replica only.
#[derive(Debug)]
pub struct MemoryState {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Invalidation>,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Sweep expired entries when the map reaches this size. Expiry is otherwise only noticed
    /// when a key is touched again, and most keys (one per login attempt source) never are.
    sweep_at: usize,
}

#[derive(Debug)]
struct Entry {
    value: String,
    expires_at: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryState {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(INVALIDATION_BUFFER);
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                sweep_at: MIN_SWEEP_AT,
            }),
            tx,
        }
    }

    /// A panic while holding the lock cannot leave an entry half-written (every update is a
    /// single insert or remove), so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    /// The live entry under `key`, dropping it if it has expired.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| !e.live(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// Insert, first sweeping expired entries once the map has doubled since the last sweep:
    /// amortised O(1), and the map stays within about twice its live entries.
    fn insert(&mut self, key: &str, value: String, expires_at: Instant, now: Instant) {
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|_, e| e.live(now));
            self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP_AT);
        }
        self.entries
            .insert(key.to_owned(), Entry { value, expires_at });
    }
}

fn deadline(now: Instant, ttl: Duration) -> Instant {
    let ttl = Duration::from_millis(ttl_millis(ttl));
    // MAX_TTL keeps this far from overflow; the fallback only guards a clock near its end.
    now.checked_add(ttl).unwrap_or(now)
}

/// Time left until `expires_at`, in whole milliseconds like Redis reports it.
fn left(expires_at: Instant, now: Instant) -> Duration {
    let ms = expires_at.saturating_duration_since(now).as_millis();
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

#[async_trait]
impl SharedState for MemoryState {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), SharedError> {
        Ok(())
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, SharedError> {
        self.add(key, 1, window).await
    }

    async fn add(&self, key: &str, n: u64, window: Duration) -> Result<Hit, SharedError> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(entry) = inner.live(key, now) {
            let count = count_of(&entry.value)?
                .checked_add(n)
                .ok_or_else(|| SharedError::Backend("increment would overflow".into()))?;
            entry.value = count.to_string();
            return Ok(Hit {
                count,
                ttl: left(entry.expires_at, now),
            });
        }
        let expires_at = deadline(now, window);
        inner.insert(key, n.to_string(), expires_at, now);
        Ok(Hit {
            count: n,
            ttl: left(expires_at, now),
        })
    }

    async fn peek(&self, key: &str) -> Result<Hit, SharedError> {
        let now = Instant::now();
        match self.lock().live(key, now) {
            Some(entry) => Ok(Hit {
                count: count_of(&entry.value)?,
                ttl: left(entry.expires_at, now),
            }),
            None => Ok(Hit {
                count: 0,
                ttl: Duration::ZERO,
            }),
        }
    }

    async fn extend(&self, key: &str, ttl: Duration) -> Result<(), SharedError> {
        let now = Instant::now();
        if let Some(entry) = self.lock().live(key, now) {
            entry.expires_at = deadline(now, ttl);
        }
        Ok(())
    }

    async fn clear(&self, key: &str) -> Result<(), SharedError> {
        self.lock().entries.remove(key);
        Ok(())
    }

    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, SharedError> {
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.live(key, now).is_some() {
            return Ok(false);
        }
        inner.insert(key, value.to_owned(), deadline(now, ttl), now);
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<String>, SharedError> {
        let now = Instant::now();
        let entry = self.lock().entries.remove(key);
        Ok(entry.filter(|e| e.live(now)).map(|e| e.value))
    }

    async fn publish(&self, msg: &Invalidation) -> Result<(), SharedError> {
        // No receivers is not an error: nothing is cached anywhere yet.
        let _ = self.tx.send(msg.clone());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Invalidation> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn expired_entries_are_swept_as_the_map_grows() {
        let state = MemoryState::new();
        for i in 0..MIN_SWEEP_AT {
            state
                .hit(&format!("old{i}"), Duration::from_millis(1))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The next insert finds the map full of expired keys and sweeps them all.
        for i in 0..10 {
            state
                .put_once(&format!("new{i}"), "v", Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(state.len(), 10);
    }

    #[tokio::test]
    async fn live_entries_are_kept_and_the_threshold_grows() {
        let state = MemoryState::new();
        let n = MIN_SWEEP_AT * 3;
        for i in 0..n {
            state
                .hit(&format!("k{i}"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(state.len(), n);
        assert_eq!(state.peek("k0").await.unwrap().count, 1);
    }
}
