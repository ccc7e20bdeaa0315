//! Authentication use cases: bootstrap of the first platform admin, password login into a
//! stored session, bearer-token authentication bound to that session, logout, JWKS.

use crate::uow::{snapshot, UnitOfWork};
use crate::views::TokenView;
use crate::{AuthUser, Caller, Ctx, Done, Result, ServiceError, Services};
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use uos_authn::{issue_access_token, verify_access_token, AccessClaims};
use uos_authz::{Action, Resource};
use uos_domain::{Email, SessionId, User, UserStatus};
use uos_keys::KeyPurpose;
use uos_store::{RefreshToken, Session};

/// Longest password accepted: argon2 cost must not be steerable by the client.
pub const PASSWORD_MAX_LEN: usize = 128;

/// What start-up bootstrap did.
#[derive(Debug)]
pub enum Bootstrap {
    /// The store already had users; nothing was done.
    AlreadyDone,
    /// The admin was created with the configured credentials.
    Created { email: Email },
    /// The admin was created with a random password the operator must see once.
    Generated {
        email: Email,
        password: SecretString,
    },
}

impl Services {
    /// Hash off the async runtime: argon2id with OWASP parameters costs tens of milliseconds
    /// of CPU and would stall every other request on this worker.
    pub(crate) async fn hash_password(&self, password: String) -> Result<String> {
        let hasher = self.inner.hasher.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .map_err(|e| ServiceError::Internal(format!("hash task: {e}")))?
            .map_err(|e| ServiceError::Internal(format!("hash: {e}")))
    }

    async fn verify_password(&self, password: String, phc: Option<String>) -> Result<bool> {
        let hasher = self.inner.hasher.clone();
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => hasher.verify(&password, &phc),
            None => {
                // Same work for unknown accounts, so timing does not tell who exists.
                hasher.verify_dummy(&password);
                false
            }
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("verify task: {e}")))
    }

    pub(crate) fn check_password_policy(&self, password: &str, field: &str) -> Result<()> {
        let n = password.chars().count();
        let min = self.inner.cfg.password_min_length;
        if n < min || n > PASSWORD_MAX_LEN {
            return Err(ServiceError::field(
                field,
                "password_length",
                format!("password must be {min} to {PASSWORD_MAX_LEN} characters"),
            ));
        }
        Ok(())
    }

    /// Create the first platform admin when the store has no users (idempotent across
    /// restarts and replicas: a lost race on the unique email counts as done).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn bootstrap(
        &self,
        email: Option<Email>,
        password: Option<SecretString>,
    ) -> Result<Bootstrap> {
        let inner = &*self.inner;
        if inner.store.read().await?.count_users().await? > 0 {
            return Ok(Bootstrap::AlreadyDone);
        }
        let (email, password, generated) = match (email, password) {
            (Some(e), Some(p)) => {
                self.check_password_policy(p.expose_secret(), "UOS_BOOTSTRAP_ADMIN_PASSWORD")?;
                (e, p, false)
            }
            _ => {
                let email = Email::parse("admin@localhost")
                    .map_err(|e| ServiceError::Internal(e.to_string()))?;
                (
                    email,
                    SecretString::from(uos_authn::random_token("", 18)),
                    true,
                )
            }
        };
        let hash = self
            .hash_password(password.expose_secret().to_string())
            .await?;
        let now = uos_domain::now();
        let status = if generated {
            UserStatus::PasswordResetRequired
        } else {
            UserStatus::Active
        };
        let mut user = User::new(email.clone(), status, now);
        user.platform_admin = true;
        user.password_hash = Some(hash);
        let ctx = Ctx::system("bootstrap");
        let cap = inner.authz.system_task(Action::UserUpdate);
        let mut uow = UnitOfWork::begin(inner, &ctx).await?;
        match uow.tx().insert_user(&user).await {
            Err(uos_store::StoreError::Conflict(_)) => return Ok(Bootstrap::AlreadyDone),
            other => other?,
        }
        uow.record(
            "user.bootstrapped",
            None,
            ("user", user.id.to_string()),
            serde_json::Value::Null,
            snapshot(&user),
        )
        .await?;
        uow.commit(&cap, &Done::<()>::no_content()).await?;
        Ok(if generated {
            Bootstrap::Generated { email, password }
        } else {
            Bootstrap::Created { email }
        })
    }

    /// Password login. Unknown email, wrong password and an account that may not log in all
    /// give the same `InvalidCredentials` after the same argon2 work.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn login(
        &self,
        ctx: &Ctx,
        email: &Email,
        password: String,
    ) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(
            ctx,
            Action::AuthLogin,
            Resource {
                kind: "session".into(),
                ..Default::default()
            },
        )?;
        let user = inner.store.read().await?.get_user_by_email(email).await?;
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = self.verify_password(password, phc).await?;
        let user = match user {
            Some(u) if ok && u.status.may_log_in() => u,
            _ => return Err(ServiceError::InvalidCredentials),
        };
        let now = uos_domain::now();
        let session = Session {
            id: SessionId::new(),
            user_id: user.id,
            created_at: now,
            expires_at: now + Duration::seconds(secs(inner.cfg.session_ttl_secs)),
            revoked_at: None,
            last_seen_at: now,
            user_agent: ctx.user_agent.clone(),
            ip: ctx.ip.clone(),
        };
        let ctx = ctx.acting_as(user.clone(), session.id);
        let mut uow = UnitOfWork::begin(inner, &ctx).await?;
        uow.tx().insert_session(&session).await?;
        uow.record(
            "session.created",
            None,
            ("session", session.id.to_string()),
            serde_json::Value::Null,
            serde_json::json!({"user_id": user.id, "expires_at": session.expires_at, "ip": session.ip, "user_agent": session.user_agent}),
        )
        .await?;
        let tokens = self.issue_tokens(&mut uow, &session, now).await?;
        let done = Done::ok(tokens, None);
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// A fresh access token and a fresh single-use refresh token for `session` (the refresh
    /// token's hash is stored in the caller's unit of work).
    pub(crate) async fn issue_tokens(
        &self,
        uow: &mut UnitOfWork<'_>,
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<TokenView> {
        let inner = &*self.inner;
        let refresh = uos_authn::random_token("uosrt_", 32);
        uow.tx()
            .insert_refresh_token(&RefreshToken {
                token_hash: uos_authn::hash_token(&refresh),
                session_id: session.id,
                created_at: now,
                used_at: None,
            })
            .await?;
        // Never past the session's own end: such a token would be refused anyway, and its
        // expires_in would mislead the client.
        let left = u64::try_from((session.expires_at - now).num_seconds()).unwrap_or(0);
        let ttl = inner.cfg.access_token_ttl_secs.min(left).max(1);
        let claims = AccessClaims {
            iss: inner.cfg.issuer.clone(),
            sub: session.user_id.0,
            sid: session.id.0,
            iat: now.timestamp(),
            exp: now.timestamp() + secs(ttl),
            jti: uos_domain::new_id(),
        };
        let access = issue_access_token(&inner.keys.signing_key(KeyPurpose::AccessToken), &claims);
        Ok(TokenView {
            access_token: access,
            token_type: "Bearer".into(),
            expires_in: ttl,
            refresh_token: refresh,
            session_id: session.id.0,
        })
    }

    /// Resolve a bearer token to a caller. The token must verify *and* its session must be
    /// live *and* its user must still be allowed in, so logout and suspension act at once.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let inner = &*self.inner;
        let keys = inner.keys.public_keys(KeyPurpose::AccessToken);
        let now = uos_domain::now();
        let claims = verify_access_token(token, &keys, &inner.cfg.issuer, now.timestamp())
            .map_err(|_| ServiceError::Unauthenticated)?;
        let mut r = inner.store.read().await?;
        let session = r
            .get_session(SessionId(claims.sid))
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        if session.user_id.0 != claims.sub || !self.is_live(&session, now) {
            return Err(ServiceError::Unauthenticated);
        }
        let user = r
            .get_user(session.user_id)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        if !user.status.may_log_in() {
            return Err(ServiceError::Unauthenticated);
        }
        Ok(Caller::User(Arc::new(AuthUser {
            user,
            session_id: session.id,
        })))
    }

    /// End the caller's session: every token bound to it stops working now.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn logout(&self, ctx: &Ctx) -> Result<Done<()>> {
        let inner = &*self.inner;
        let cap = inner.authorize(
            ctx,
            Action::AuthLogout,
            Resource {
                kind: "session".into(),
                ..Default::default()
            },
        )?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        if uow
            .tx()
            .revoke_session(me.session_id, uos_domain::now())
            .await?
        {
            uow.record(
                "session.revoked",
                None,
                ("session", me.session_id.to_string()),
                serde_json::Value::Null,
                serde_json::json!({"reason": "logout"}),
            )
            .await?;
        }
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Public keys that verify access tokens, as a JWK Set.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = self
            .inner
            .keys
            .public_keys(KeyPurpose::AccessToken)
            .iter()
            .map(|k| k.to_jwk())
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Public keys that verify audit signatures.
    pub fn audit_public_keys(&self) -> Vec<uos_keys::PublicKey> {
        self.inner.keys.public_keys(KeyPurpose::Audit)
    }
}

pub(crate) fn secs(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX / 2)
}
