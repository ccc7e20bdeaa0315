//! The cross-replica state port: what every `admin-api` replica must agree on, and nothing else.
//!
//! - **Counters in fixed windows** (login lockout, rate limits): [`SharedState::hit`],
//!   [`SharedState::add`], [`SharedState::peek`], [`SharedState::extend`],
//!   [`SharedState::clear`].
//! - **One-time values** (single-use markers, an MFA challenge or an OIDC login in flight):
//!   [`SharedState::put_once`], [`SharedState::take`].
//! - **Cache invalidation fan-out** (a revoked session must stop working on every replica):
//!   [`SharedState::publish`], [`SharedState::subscribe`].
//!
//! The embedded default is [`MemoryState`] (one process, nothing to run); the production adapter
//! is [`RedisState`]. [`connect`] picks one from configuration. The system of record stays the
//! store: everything here is either short-lived or a hint to drop a cache, so losing it (a Redis
//! restart) costs at most a reset counter or a login started again.

mod memory;
mod redis;

pub use crate::memory::MemoryState;
pub use crate::redis::RedisState;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How many invalidations a slow subscriber may fall behind before it sees
/// [`tokio::sync::broadcast::error::RecvError::Lagged`].
pub const INVALIDATION_BUFFER: usize = 1024;

/// The longest lifetime a key is given. Longer durations are cut to this: Redis rejects expiry
/// times past its clock range, and nothing here should outlive a deployment anyway.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// State shared by every replica of the service.
///
/// Keys are arbitrary strings (any bytes a `str` can hold); each backend keeps them apart from
/// other deployments' keys by its own namespace. Counters and one-time values share one key
/// space, so callers give them distinct keys (e.g. `lockout:<hash>`, `mfa:<id>`).
///
/// Durations have millisecond precision: they are rounded down to whole milliseconds, at least
/// 1 ms and at most [`MAX_TTL`].
///
/// Every call may fail with [`SharedError::Unavailable`] while a remote backend is unreachable;
/// the caller decides whether that fails open or closed.
#[async_trait]
pub trait SharedState: Send + Sync + std::fmt::Debug + 'static {
    /// `"memory"` or `"redis"`, for logs and health output.
    fn backend(&self) -> &'static str;

    /// Check that the backend answers.
    async fn ping(&self) -> Result<(), SharedError>;

    /// Count one attempt in a fixed window: atomically increments `key`; the window starts with
    /// the first hit (its lifetime is set only then, so later hits do not slide it). Returns the
    /// count after this hit and the time left in the window.
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit, SharedError>;

    /// [`SharedState::hit`] counting `n` at once (`n` may be 0: the count is read, and a window
    /// is started if none is running). Rate limits reserve a batch of their allowance with
    /// this, so a busy route costs one round trip per batch rather than one per request.
    async fn add(&self, key: &str, n: u64, window: Duration) -> Result<Hit, SharedError>;

    /// Count one attempt against `gate` (say, a client address) and, only if that leaves it
    /// within `gate_limit`, against `key` too, each as [`SharedState::hit`] does. Returns the
    /// gate's hit, and the key's (`None` when the gate is over its limit, so attempts the gate
    /// refuses never use up the key's budget). Backends may do both in one round trip.
    async fn hit_gated(
        &self,
        gate: &str,
        gate_limit: u64,
        key: &str,
        window: Duration,
    ) -> Result<(Hit, Option<Hit>), SharedError> {
        let gate_hit = self.hit(gate, window).await?;
        if gate_hit.count > gate_limit {
            return Ok((gate_hit, None));
        }
        Ok((gate_hit, Some(self.hit(key, window).await?)))
    }

    /// Current count and time left; count 0 and ttl zero if the key is absent or expired.
    async fn peek(&self, key: &str) -> Result<Hit, SharedError>;

    /// Give an existing counter a new remaining lifetime (turns a window into a lockout
    /// period). Does nothing if the key is absent.
    async fn extend(&self, key: &str, ttl: Duration) -> Result<(), SharedError>;

    /// Turn `key`'s counting window into a lockout: count one lockout in `history` (as
    /// [`SharedState::hit`] does, over `history_window`), then give `key`, if it exists, the
    /// remaining lifetime [`lock_secs`] says for that many lockouts. Returns that lifetime.
    /// Backends may do both in one round trip.
    async fn lock_out(
        &self,
        key: &str,
        history: &str,
        history_window: Duration,
        base_secs: u64,
        max_secs: u64,
    ) -> Result<Duration, SharedError> {
        let locks = self.hit(history, history_window).await?.count;
        let period = Duration::from_secs(lock_secs(locks, base_secs, max_secs));
        self.extend(key, period).await?;
        Ok(period)
    }

    /// Remove `key` (a counter or a value); absent keys are fine.
    async fn clear(&self, key: &str) -> Result<(), SharedError>;

    /// Set `key` to `value` for `ttl` only if it is absent; true if this call set it
    /// (single-use markers: exactly one of any number of racing callers gets true).
    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, SharedError>;

    /// Read and delete `key` in one atomic step (one-time state, e.g. an MFA challenge or an
    /// OIDC login in flight): of any number of racing callers at most one gets the value.
    /// Expired is absent.
    async fn take(&self, key: &str) -> Result<Option<String>, SharedError>;

    /// Tell every replica (this one included) to drop cached state. Delivery is at most once;
    /// a replica that may have missed messages receives [`Invalidation::Everything`] instead.
    async fn publish(&self, msg: &Invalidation) -> Result<(), SharedError>;

    /// Receive invalidations published by any replica (including this one) from now on.
    ///
    /// A receiver that falls more than [`INVALIDATION_BUFFER`] messages behind gets
    /// `RecvError::Lagged`: treat that like [`Invalidation::Everything`].
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Invalidation>;
}

/// A counter's value and the time left in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    pub count: u64,
    pub ttl: Duration,
}

/// A message telling replicas to drop cached state. On the wire (Redis pub/sub) it is JSON:
/// `{"kind":"session","id":"…"}`, `{"kind":"everything"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Invalidation {
    /// One session was revoked or changed.
    Session(Uuid),
    /// A user changed (disabled, deleted, roles, sessions revoked).
    User(Uuid),
    /// An API key changed (revoked, rotated); the id is the key's public prefix.
    ApiKey(String),
    /// A service account changed (disabled, deleted, roles, client secret): every credential
    /// of it must be checked afresh.
    ServiceAccount(Uuid),
    /// An org's custom roles changed: expanded permissions of its machine credentials are stale.
    Org(Uuid),
    /// A client-credentials access token was revoked (RFC 7009); the id is its `jti`.
    AccessToken(Uuid),
    /// Drop every cache: sent locally after messages may have been lost.
    Everything,
}

/// Why a shared-state call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The configuration cannot work (e.g. a malformed Redis URL).
    #[error("shared state configuration: {0}")]
    Config(String),
    /// The backend cannot be reached right now (refused, dropped, timed out).
    #[error("shared state unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error or something unexpected (e.g. a counter operation
    /// on a key that holds a non-numeric value).
    #[error("shared state backend: {0}")]
    Backend(String),
}

/// The state port for this configuration: Redis at `url`, with every key and the invalidation
/// channel under `prefix` (e.g. `uos:`), or in-process state when `url` is `None`. `ca_pem`
/// (PEM) is the CA a `rediss://` server's certificate must chain to; `None` trusts the
/// system's store.
pub async fn connect(
    url: Option<&str>,
    prefix: &str,
    ca_pem: Option<&[u8]>,
) -> Result<Arc<dyn SharedState>, SharedError> {
    match url {
        None => Ok(Arc::new(MemoryState::new())),
        Some(url) => Ok(Arc::new(
            RedisState::connect_with_ca(url, prefix, ca_pem).await?,
        )),
    }
}

/// The lockout period after `locks` lockouts (this one included): `base_secs`, doubled for
/// each earlier one (at most 20 times), at most `max_secs` and at least one second.
pub fn lock_secs(locks: u64, base_secs: u64, max_secs: u64) -> u64 {
    let doublings = u32::try_from(locks.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    base_secs
        .saturating_mul(1u64 << doublings)
        .min(max_secs)
        .max(1)
}

/// `d` in whole milliseconds, within `1..=MAX_TTL`: a zero lifetime would delete at once in one
/// backend and be rejected by another.
pub(crate) fn ttl_millis(d: Duration) -> u64 {
    let ms = d.min(MAX_TTL).as_millis().max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// A counter's stored value as a count. The message is Redis's own, which is what a caller
/// mixing up a counter key with a value key sees in production.
pub(crate) fn count_of(value: &str) -> Result<u64, SharedError> {
    value
        .parse()
        .map_err(|_| SharedError::Backend("value is not an integer or out of range".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn invalidation_wire_format() {
        let id = Uuid::nil();
        let cases = [
            (
                Invalidation::Session(id),
                r#"{"kind":"session","id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            (
                Invalidation::User(id),
                r#"{"kind":"user","id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            (
                Invalidation::ApiKey("k_1".into()),
                r#"{"kind":"api_key","id":"k_1"}"#,
            ),
            (
                Invalidation::ServiceAccount(id),
                r#"{"kind":"service_account","id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            (
                Invalidation::Org(id),
                r#"{"kind":"org","id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            (
                Invalidation::AccessToken(id),
                r#"{"kind":"access_token","id":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            (Invalidation::Everything, r#"{"kind":"everything"}"#),
        ];
        for (msg, json) in cases {
            assert_eq!(serde_json::to_string(&msg).unwrap(), json);
            assert_eq!(serde_json::from_str::<Invalidation>(json).unwrap(), msg);
        }
    }

    #[test]
    fn ttl_is_whole_millis_within_bounds() {
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::from_micros(2_999)), 2);
        assert_eq!(ttl_millis(Duration::from_millis(300)), 300);
        assert_eq!(ttl_millis(Duration::MAX), ttl_millis(MAX_TTL));
    }

    #[tokio::test]
    async fn no_url_means_memory() {
        let state = connect(None, "uos:", None).await.unwrap();
        assert_eq!(state.backend(), "memory");
        state.ping().await.unwrap();
    }
}
