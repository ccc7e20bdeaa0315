//! TOTP second factor (RFC 6238): enrolment, confirmation with recovery codes, disabling, and
//! completing a login that stopped at `mfa_required`.
//!
//! The shared secret is encrypted at rest through the key port, bound to the user, so a copied
//! ciphertext does not decrypt for anyone else. A code's time step is recorded when it is
//! accepted and no code of that step or an earlier one is accepted again.

use crate::identity::sessions::session_resource;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{RecoveryCodesView, TokenView, TotpEnrolmentView};
use crate::{Ctx, Done, Refusal, Result, ServiceError, Services};
use std::time::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Capability};
use uos_domain::{User, UserId};
use uos_store::{TotpEnrolment, Tx};

/// How many recovery codes a confirmed enrolment gets.
const RECOVERY_CODES: usize = 10;

fn secret_context(user: UserId) -> String {
    format!("totp-secret:{user}")
}

fn challenge_key(mfa_token: &str) -> String {
    format!("mfa:{}", uos_authn::hash_token(mfa_token))
}

fn bad_code() -> ServiceError {
    ServiceError::field(
        "code",
        "invalid_code",
        "the code is not a valid, unused authenticator or recovery code",
    )
}

/// Which second factor a code matched.
enum Factor {
    Totp,
    RecoveryCode,
}

impl Services {
    /// Whether a login of this user must show a second factor.
    pub(crate) async fn has_second_factor(&self, user: &User) -> Result<bool> {
        let t = self.inner.store.read().await?.get_totp(user.id).await?;
        Ok(t.is_some_and(|t| t.confirmed_at.is_some()))
    }

    /// The password was right and a second factor is enrolled: hand out a short-lived,
    /// single-use token that `POST /v1/auth/mfa` trades (with a code) for a session.
    pub(crate) async fn mfa_challenge(
        &self,
        ctx: &Ctx,
        cap: &Capability,
        user: &User,
    ) -> Result<ServiceError> {
        let token = uos_authn::random_token("uosmfa_", 32);
        let ttl = Duration::from_secs(self.inner.cfg.mfa_token_ttl_secs.max(1));
        self.inner
            .shared
            .put_once(&challenge_key(&token), &user.id.to_string(), ttl)
            .await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        uow.record(
            AuditAction::LoginMfaRequired,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"ip": ctx.ip}),
        )
        .await?;
        uow.commit_unanswered(cap).await?;
        Ok(ServiceError::MfaRequired { mfa_token: token })
    }

    /// Second step of a login: the `mfa_token` is used up by this call whatever the outcome
    /// (a wrong code means logging in again), and the code counts toward the account lockout.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn complete_mfa(
        &self,
        ctx: &Ctx,
        mfa_token: &str,
        code: &str,
    ) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthMfa, session_resource())?;
        let invalid = || {
            ServiceError::refused(
                Refusal::InvalidMfaToken,
                "the mfa_token is unknown, expired or already used; log in again",
            )
        };
        let user_id = inner
            .shared
            .take(&challenge_key(mfa_token))
            .await?
            .and_then(|s| s.parse::<uuid::Uuid>().ok())
            .ok_or_else(invalid)?;
        let user = inner
            .store
            .read()
            .await?
            .get_user(UserId(user_id))
            .await?
            .filter(|u| u.status.may_log_in())
            .ok_or_else(invalid)?;
        let attempt = self.begin_attempt(&user.email, ctx.ip.as_deref()).await?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        match self.use_second_factor(uow.tx(), &user, code).await? {
            Some(factor) => {
                if matches!(factor, Factor::RecoveryCode) {
                    let left = uow.tx().count_unused_recovery_codes(user.id).await?;
                    uow.record(
                        AuditAction::MfaRecoveryCodeUsed,
                        None,
                        user.id.to_string(),
                        serde_json::Value::Null,
                        serde_json::json!({"codes_left": left}),
                    )
                    .await?;
                }
                uow.commit_unanswered(&cap).await?;
                // As for a password login: the count's reset and the session's write together.
                let (cleared, started) = tokio::join!(
                    self.succeed_attempt(&attempt),
                    self.start_session(ctx, &cap, &user, "password+totp")
                );
                cleared?;
                started
            }
            None => {
                drop(uow);
                let locked = self.fail_attempt(&attempt).await?;
                self.record_login_failure(
                    ctx,
                    &cap,
                    &user.email,
                    Some(&user),
                    "wrong_mfa_code",
                    locked,
                )
                .await?;
                Err(ServiceError::refused(
                    Refusal::InvalidCode,
                    "the code is not a valid, unused authenticator or recovery code",
                ))
            }
        }
    }

    /// Accept `code` as the user's current TOTP code or one of their recovery codes, marking
    /// it used in `tx`. `None` when it is neither (or already used).
    async fn use_second_factor(
        &self,
        tx: &mut dyn Tx,
        user: &User,
        code: &str,
    ) -> Result<Option<Factor>> {
        let Some(enrolment) = tx.get_totp(user.id).await? else {
            return Ok(None);
        };
        let secret = self.totp_secret(&enrolment)?;
        let now = u64::try_from(uos_domain::now().timestamp()).unwrap_or(0);
        if let Some(step) = uos_authn::totp::verify(&secret, code, now) {
            return Ok(tx
                .use_totp_step(user.id, step)
                .await?
                .then_some(Factor::Totp));
        }
        if enrolment.confirmed_at.is_none() {
            return Ok(None);
        }
        let Some(hash) = uos_authn::hash_recovery_code(&self.recovery_pepper()?, code) else {
            return Ok(None);
        };
        Ok(tx
            .use_recovery_code(user.id, &hash, uos_domain::now())
            .await?
            .then_some(Factor::RecoveryCode))
    }

    /// Recovery codes carry 50 bits: an unkeyed hash of them would fall to a brute force of
    /// a database dump, so they are hashed with a server-side pepper from the key port.
    fn recovery_pepper(&self) -> Result<[u8; 32]> {
        self.inner
            .keys
            .secret("recovery-code-pepper")
            .map_err(|e| ServiceError::Internal(format!("recovery pepper: {e}")))
    }

    fn totp_secret(&self, e: &TotpEnrolment) -> Result<Vec<u8>> {
        self.inner
            .keys
            .decrypt(&secret_context(e.user_id), &e.secret_enc)
            .map_err(|err| ServiceError::Internal(format!("totp secret: {err}")))
    }

    /// Start (or restart) a TOTP enrolment for the caller. Refused while one is confirmed:
    /// replacing a working factor needs disabling it with a code first.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn enrol_totp(&self, ctx: &Ctx) -> Result<Done<TotpEnrolmentView>> {
        let (me, cap) = self.me(ctx, Action::MeMfa)?;
        let secret = uos_authn::totp::generate_secret();
        let secret_enc = self
            .inner
            .keys
            .encrypt(&secret_context(me.id), &secret)
            .map_err(|e| ServiceError::Internal(format!("totp secret: {e}")))?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        if uow
            .tx()
            .get_totp(me.id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some())
        {
            return Err(ServiceError::conflict(
                "mfa_already_enabled",
                "TOTP is already enabled; disable it first",
            ));
        }
        uow.tx()
            .put_totp(&TotpEnrolment {
                user_id: me.id,
                secret_enc,
                created_at: uos_domain::now(),
                confirmed_at: None,
                last_used_step: 0,
            })
            .await?;
        uow.record(
            AuditAction::MfaTotpEnrolmentStarted,
            None,
            me.id.to_string(),
            serde_json::Value::Null,
            serde_json::Value::Null,
        )
        .await?;
        let view = TotpEnrolmentView {
            secret: uos_authn::totp::secret_base32(&secret),
            otpauth_uri: uos_authn::totp::otpauth_uri(
                &secret,
                &self.inner.cfg.totp_issuer,
                me.email.as_str(),
            ),
        };
        let done = Done::ok(view, None);
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Confirm a pending enrolment with a first code; from now on logins need a second factor.
    /// Answers the recovery codes, which are shown this once and stored only hashed.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn confirm_totp(&self, ctx: &Ctx, code: &str) -> Result<Done<RecoveryCodesView>> {
        let (me, cap) = self.me(ctx, Action::MeMfa)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let enrolment = match uow.tx().get_totp(me.id).await? {
            Some(e) if e.confirmed_at.is_none() => e,
            Some(_) => {
                return Err(ServiceError::conflict(
                    "mfa_already_enabled",
                    "TOTP is already enabled",
                ))
            }
            None => {
                return Err(ServiceError::conflict(
                    "mfa_not_enrolled",
                    "start an enrolment with POST /v1/me/mfa/totp first",
                ))
            }
        };
        let secret = self.totp_secret(&enrolment)?;
        let now = uos_domain::now();
        let step =
            uos_authn::totp::verify(&secret, code, u64::try_from(now.timestamp()).unwrap_or(0))
                .ok_or_else(bad_code)?;
        if !uow.tx().use_totp_step(me.id, step).await? {
            return Err(bad_code());
        }
        uow.tx().confirm_totp(me.id, now).await?;
        let codes = uos_authn::generate_recovery_codes(RECOVERY_CODES);
        let pepper = self.recovery_pepper()?;
        let hashes: Vec<String> = codes
            .iter()
            .filter_map(|c| uos_authn::hash_recovery_code(&pepper, c))
            .collect();
        uow.tx().replace_recovery_codes(me.id, &hashes, now).await?;
        uow.record(
            AuditAction::MfaTotpEnabled,
            None,
            me.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"recovery_codes_issued": codes.len()}),
        )
        .await?;
        let done = Done::ok(
            RecoveryCodesView {
                recovery_codes: codes,
            },
            None,
        );
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Turn TOTP off, proven with a current code or a recovery code. Guesses count toward the
    /// account lockout: a stolen session must not be able to brute-force the factor away.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn disable_totp(&self, ctx: &Ctx, code: &str) -> Result<Done<()>> {
        let (me, cap) = self.me(ctx, Action::MeMfa)?;
        let attempt = self.begin_attempt(&me.email, ctx.ip.as_deref()).await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let enabled = uow
            .tx()
            .get_totp(me.id)
            .await?
            .and_then(|t| t.confirmed_at)
            .is_some();
        if !enabled {
            return Err(ServiceError::conflict(
                "mfa_not_enabled",
                "TOTP is not enabled",
            ));
        }
        if self.use_second_factor(uow.tx(), me, code).await?.is_none() {
            drop(uow);
            self.fail_attempt(&attempt).await?;
            return Err(bad_code());
        }
        uow.tx().delete_totp(me.id).await?;
        uow.record(
            AuditAction::MfaTotpDisabled,
            None,
            me.id.to_string(),
            serde_json::Value::Null,
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        self.succeed_attempt(&attempt).await?;
        Ok(done)
    }
}
