//! Passwords: argon2id hashing off the async runtime, and the policy a new password must meet
//! (length, estimated strength, no reuse of recent ones).

use crate::{Result, ServiceError, Services};
use uos_authn::PasswordHasher;
use uos_domain::User;
use uos_store::ReadTx;

/// Longest password accepted: argon2 cost (and the strength estimate's) must not be steerable
/// by the client.
pub const PASSWORD_MAX_LEN: usize = 128;

impl Services {
    /// Run argon2 work on the hashing threads: tens of milliseconds of CPU would stall every
    /// other request on an async runtime worker.
    async fn with_hasher<T: Send + 'static>(
        &self,
        work: impl FnOnce(&PasswordHasher) -> T + Send + 'static,
    ) -> Result<T> {
        self.inner.identity.hashes.run(work).await
    }

    pub(crate) async fn hash_password(&self, password: String) -> Result<String> {
        self.with_hasher(move |h| h.hash(&password))
            .await?
            .map_err(|e| ServiceError::Internal(format!("hash: {e}")))
    }

    /// Whether `password` matches `phc`; with no hash, the same work against a dummy so
    /// timing does not tell whether an account exists.
    pub(crate) async fn verify_password(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool> {
        self.with_hasher(move |h| match phc {
            Some(phc) => h.verify(&password, &phc),
            None => {
                h.verify_dummy(&password);
                false
            }
        })
        .await
    }

    /// Length and strength, without the store: usable before anything is read.
    pub(crate) fn check_password_policy(
        &self,
        password: &str,
        field: &str,
        user_inputs: &[&str],
    ) -> Result<()> {
        let n = password.chars().count();
        let min = self.inner.cfg.password_min_length;
        if n < min || n > PASSWORD_MAX_LEN {
            return Err(ServiceError::field(
                field,
                "password_length",
                format!("password must be {min} to {PASSWORD_MAX_LEN} characters"),
            ));
        }
        uos_authn::check_strength(password, user_inputs, self.inner.cfg.password_min_score).map_err(
            |weak| {
                ServiceError::field(
                    field,
                    "password_too_weak",
                    format!("password is too easy to guess: {}", weak.reason),
                )
            },
        )
    }

    /// The full policy for a user's new password: length, strength (the user's own email and
    /// name count as guessable) and none of the last `password_history` passwords.
    pub(crate) async fn check_new_password(
        &self,
        tx: &mut dyn ReadTx,
        user: &User,
        password: &str,
        field: &str,
    ) -> Result<()> {
        let mut inputs = vec![user.email.as_str()];
        if let Some(n) = user.display_name.as_deref() {
            inputs.push(n);
        }
        self.check_password_policy(password, field, &inputs)?;
        let keep = self.inner.cfg.password_history;
        if keep == 0 {
            return Ok(());
        }
        let mut recent: Vec<String> = user.password_hash.iter().cloned().collect();
        recent.extend(tx.password_history(user.id, keep.saturating_sub(1)).await?);
        let candidate = password.to_string();
        let reused = self
            .with_hasher(move |h| recent.iter().any(|phc| h.verify(&candidate, phc)))
            .await?;
        if reused {
            return Err(ServiceError::field(
                field,
                "password_reused",
                format!("password must differ from the last {keep} passwords"),
            ));
        }
        Ok(())
    }
}
