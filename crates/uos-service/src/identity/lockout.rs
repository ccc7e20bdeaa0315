//! Lockout and throttling of credential guesses (passwords and second factors).
//!
//! Every guess is *counted before it is checked*, atomically in shared state (Redis across
//! replicas). So however many guesses arrive at once, on however many replicas, exactly
//! `threshold` of them are checked and the rest are refused with 429 — there is no window
//! between "check the count" and "record the failure" for a race to slip through.
//!
//! Accounts are keyed by a hash of the email, whether or not the account exists: an unknown
//! email locks exactly like a known one, so lockout does not reveal who has an account.

use crate::{Result, ServiceError, Services};
use std::time::Duration;
use uos_domain::Email;

/// A counted guess, to be resolved as a failure or a success.
#[derive(Debug)]
pub(crate) struct Attempt {
    key: String,
    count: u64,
}

fn account_key(email: &Email) -> String {
    format!("lockout:acct:{}", uos_authn::hash_token(email.as_str()))
}

fn locks_key(account_key: &str) -> String {
    format!("{account_key}:locks")
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Services {
    /// Count one guess for this account (and client address). Refused with
    /// `TooManyAttempts` once either is over its threshold.
    pub(crate) async fn begin_attempt(&self, email: &Email, ip: Option<&str>) -> Result<Attempt> {
        let cfg = &self.inner.cfg.lockout;
        let shared = &self.inner.shared;
        let window = Duration::from_secs(cfg.window_secs);
        let key = account_key(email);
        let hit = match ip {
            // One round trip for both; an address over its limit is refused without counting
            // against the account, so a throttled attacker cannot lock its victim out faster.
            Some(ip) => {
                let gate = format!("throttle:ip:{ip}");
                match shared
                    .hit_gated(&gate, cfg.ip_threshold, &key, window)
                    .await?
                {
                    (_, Some(hit)) => hit,
                    (address, None) => {
                        return Err(ServiceError::TooManyAttempts {
                            retry_after_secs: address.ttl.as_secs().max(1),
                        })
                    }
                }
            }
            None => shared.hit(&key, window).await?,
        };
        if hit.count > cfg.threshold {
            return Err(ServiceError::TooManyAttempts {
                retry_after_secs: hit.ttl.as_secs().max(1),
            });
        }
        Ok(Attempt {
            key,
            count: hit.count,
        })
    }

    /// A wrong guess. The one that reaches the threshold (later ones are refused before they
    /// get here) turns the counting window into a lockout period, doubling with each lockout
    /// of the account within a day. Returns the lockout period in seconds when this failure
    /// locked the account.
    pub(crate) async fn fail_attempt(&self, a: &Attempt) -> Result<Option<u64>> {
        let cfg = &self.inner.cfg.lockout;
        if a.count < cfg.threshold {
            return Ok(None);
        }
        // Counting the lockout and lengthening the window are one shared-state call.
        let period = self
            .inner
            .shared
            .lock_out(
                &a.key,
                &locks_key(&a.key),
                DAY,
                cfg.base_lock_secs,
                cfg.max_lock_secs,
            )
            .await?;
        Ok(Some(period.as_secs()))
    }

    /// A right guess starts the count over (earlier lockouts still count toward doubling).
    pub(crate) async fn succeed_attempt(&self, a: &Attempt) -> Result<()> {
        Ok(self.inner.shared.clear(&a.key).await?)
    }

    /// Lift a lockout (admin unlock, completed password reset).
    pub(crate) async fn clear_lockout(&self, email: &Email) -> Result<()> {
        let key = account_key(email);
        self.inner.shared.clear(&key).await?;
        Ok(self.inner.shared.clear(&locks_key(&key)).await?)
    }

    /// Seconds left of the account's lockout, if it is locked now.
    pub(crate) async fn locked_for(&self, email: &Email) -> Result<Option<u64>> {
        let hit = self.inner.shared.peek(&account_key(email)).await?;
        Ok(
            (hit.count >= self.inner.cfg.lockout.threshold && !hit.ttl.is_zero())
                .then(|| hit.ttl.as_secs().max(1)),
        )
    }
}
