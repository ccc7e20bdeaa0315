//! Authentication use cases: bootstrap of the first platform admin, password login into a
//! stored session, bearer-token authentication bound to that session, logout, JWKS.

use crate::identity::sessions::session_resource;
use crate::kernel::uow::{open_session, snapshot, UnitOfWork};
use crate::kernel::views::{TokenView, WhoamiView};
use crate::{AuthUser, Caller, Ctx, Done, Result, ServiceError, Services};
use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use uos_audit::{AuditAction, TargetKind};
use uos_authn::{issue_access_token, verify_access_token, AccessClaims};
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{Email, SessionId, User, UserStatus};
use uos_keys::KeyPurpose;
use uos_store::Session;

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
                self.check_password_policy(
                    p.expose_secret(),
                    "UOS_BOOTSTRAP_ADMIN_PASSWORD",
                    &[e.as_str()],
                )?;
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
            AuditAction::UserBootstrapped,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            snapshot(&user),
        )
        .await?;
        uow.commit_unanswered(&cap).await?;
        Ok(if generated {
            Bootstrap::Generated { email, password }
        } else {
            Bootstrap::Created { email }
        })
    }

    /// Password login. Unknown email, wrong password and an account that may not log in all
    /// give the same `InvalidCredentials` after the same argon2 work, and count toward the
    /// same lockout. With a second factor enrolled, the answer is `MfaRequired` instead of a
    /// session.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn login(
        &self,
        ctx: &Ctx,
        email: &Email,
        password: String,
    ) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthLogin, session_resource())?;
        let attempt = self.begin_attempt(email, ctx.ip.as_deref()).await?;
        let found = inner.store.read().await?.get_login_user(email).await?;
        let (user, second_factor) = match found {
            Some(f) => (Some(f.user), f.second_factor),
            None => (None, false),
        };
        let phc = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = self.verify_password(password, phc).await?;
        let user = match user {
            Some(u) if ok && u.status.may_log_in() => u,
            other => {
                let reason = match &other {
                    None => "unknown_email",
                    Some(_) if !ok => "wrong_password",
                    Some(_) => "account_unavailable",
                };
                let locked = self.fail_attempt(&attempt).await?;
                self.record_login_failure(ctx, &cap, email, other.as_ref(), reason, locked)
                    .await?;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        if second_factor {
            // Not a success yet: the count goes on until the second factor is right, so
            // right passwords cannot reset the count of wrong codes.
            return Err(self.mfa_challenge(ctx, &cap, &user).await?);
        }
        // The count starting over (shared state) and the session's write (store) do not
        // depend on each other: sent together, a login waits for one round trip here, not two
        // in a row. Both have happened by the time the client has its tokens.
        let (cleared, started) = tokio::join!(
            self.succeed_attempt(&attempt),
            self.start_session(ctx, &cap, &user, "password")
        );
        cleared?;
        started
    }

    /// Audit a refused login, and the lockout it caused. The attempted email is recorded
    /// (admins investigating an attack need it); the password never is.
    pub(crate) async fn record_login_failure(
        &self,
        ctx: &Ctx,
        cap: &uos_authz::Capability,
        email: &Email,
        user: Option<&User>,
        reason: &str,
        locked_for_secs: Option<u64>,
    ) -> Result<()> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let target = match user {
            Some(u) => (TargetKind::User, u.id.to_string()),
            None => (TargetKind::Email, email.to_string()),
        };
        uow.record_on(
            AuditAction::LoginFailed,
            None,
            (target.0, target.1.clone()),
            serde_json::Value::Null,
            serde_json::json!({"email": email, "reason": reason, "ip": ctx.ip, "user_agent": ctx.user_agent}),
        )
        .await?;
        if let Some(secs) = locked_for_secs {
            uow.record_on(
                AuditAction::AccountLocked,
                None,
                target,
                serde_json::Value::Null,
                serde_json::json!({"email": email, "locked_for_secs": secs, "ip": ctx.ip}),
            )
            .await?;
        }
        uow.commit_unanswered(cap).await
    }

    /// A new session for a user who has proven who they are (`method`: password, mfa, oidc),
    /// with its first token pair. The `session.created` event is the "login succeeded" record.
    pub(crate) async fn start_session(
        &self,
        ctx: &Ctx,
        cap: &uos_authz::Capability,
        user: &User,
        method: &str,
    ) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
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
        let refresh = uos_authn::issue_refresh_token(&self.refresh_token_key()?, session.id.0, 0);
        let first = uos_authn::hash_token(&refresh);
        let after = serde_json::json!({"user_id": user.id, "method": method, "expires_at": session.expires_at, "ip": session.ip, "user_agent": session.user_agent});
        let done = Done::ok(self.token_pair(&session, refresh, now), None);
        open_session(inner, &ctx, cap, (&session, first.as_str()), after, &done).await?;
        Ok(done)
    }

    /// The token body for `session`: a new access token alongside `refresh` (already stored).
    pub(crate) fn token_pair(
        &self,
        session: &Session,
        refresh: String,
        now: DateTime<Utc>,
    ) -> TokenView {
        let inner = &*self.inner;
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
        TokenView {
            access_token: access,
            token_type: "Bearer".into(),
            expires_in: ttl,
            refresh_token: refresh,
            session_id: session.id.0,
        }
    }

    /// Resolve a bearer credential to a caller: an API key, a client-credentials token, or a
    /// user's access token. A user token must verify *and* its session must be live *and* its
    /// user must still be allowed in, so logout and suspension act at once. `ctx` builds the
    /// request so far (address, request id), only when a refused key must be audited: the
    /// hot path never pays for it.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn authenticate(&self, token: &str, ctx: impl FnOnce() -> Ctx) -> Result<Caller> {
        if uos_authn::looks_like_api_key(token) {
            return self.authenticate_api_key(token, ctx).await;
        }
        if uos_authn::token_type(token) == Some(uos_authn::TokenKind::Client) {
            return self.authenticate_client_token(token).await;
        }
        let now = uos_domain::now();
        let claims = self
            .verified_claims(token, now)
            .ok_or(ServiceError::Unauthenticated)?;
        let (session, user) = self
            .live_session(&claims, now)
            .await?
            .ok_or(ServiceError::Unauthenticated)?;
        Ok(Caller::User(Arc::new(AuthUser {
            user,
            session_id: session.id,
        })))
    }

    /// The claims of a well-signed, unexpired access token of ours. The signature is checked
    /// once per token and replica; expiry on every call.
    pub(crate) fn verified_claims(&self, token: &str, now: DateTime<Utc>) -> Option<AccessClaims> {
        let inner = &*self.inner;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let claims = match inner.identity.cache.claims(&digest) {
            Some(c) => c,
            None => {
                let c = inner
                    .verify_token(|keys| {
                        verify_access_token(token, keys, &inner.cfg.issuer, now.timestamp())
                    })
                    .ok()?;
                inner.identity.cache.put_claims(digest, c.clone());
                c
            }
        };
        (claims.exp > now.timestamp()).then_some(claims)
    }

    /// The session the claims are bound to and its user, if the session is live and the user
    /// may still act.
    pub(crate) async fn live_session(
        &self,
        claims: &AccessClaims,
        now: DateTime<Utc>,
    ) -> Result<Option<(Session, User)>> {
        let found = self.session_with_user(SessionId(claims.sid)).await?;
        Ok(found.filter(|(session, user)| {
            session.user_id.0 == claims.sub
                && self.is_live(session, now)
                && user.status.may_log_in()
        }))
    }

    /// A session and its user, from this replica's cache or the store (then cached). No
    /// liveness checks: callers decide.
    pub(crate) async fn session_with_user(
        &self,
        sid: SessionId,
    ) -> Result<Option<(Session, User)>> {
        if let Some(hit) = self.inner.identity.cache.session(sid) {
            return Ok(Some(hit));
        }
        let ticket = self.inner.identity.cache.fill_ticket();
        let mut r = self.inner.store.read().await?;
        let Some(session) = r.get_session(sid).await? else {
            return Ok(None);
        };
        let Some(user) = r.get_user(session.user_id).await? else {
            return Ok(None);
        };
        self.inner
            .identity
            .cache
            .put_session(ticket, session.clone(), user.clone());
        Ok(Some((session, user)))
    }

    /// End the caller's session: every token bound to it stops working now.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn logout(&self, ctx: &Ctx) -> Result<Done<()>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthLogout, session_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        if uow
            .tx()
            .revoke_session(me.session_id, uos_domain::now())
            .await?
        {
            uow.invalidate(uos_shared::Invalidation::Session(me.session_id.0));
            uow.record(
                AuditAction::SessionRevoked,
                None,
                me.session_id.to_string(),
                serde_json::Value::Null,
                serde_json::json!({"reason": "logout"}),
            )
            .await?;
        }
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Who the caller is and, for a service account, what it may do.
    pub fn whoami(&self, ctx: &Ctx) -> Result<WhoamiView> {
        let _cap = self.inner.authorize(
            ctx,
            Action::AuthWhoami,
            Resource {
                kind: ResourceKind::SelfUser,
                ..Default::default()
            },
        )?;
        match &ctx.caller {
            Caller::User(u) => Ok(WhoamiView {
                kind: "user".into(),
                id: u.user.id.0,
                org_id: None,
                email: Some(u.user.email.to_string()),
                roles: Vec::new(),
                permissions: Vec::new(),
                credential: "session".into(),
            }),
            Caller::Machine(m) => Ok(WhoamiView {
                kind: "service_account".into(),
                id: m.account.id.0,
                org_id: Some(m.account.org_id.0),
                email: None,
                roles: m.roles.clone(),
                permissions: m.permissions.clone(),
                credential: match m.credential {
                    crate::MachineCredential::ApiKey { .. } => "api_key".into(),
                    crate::MachineCredential::ClientToken { .. } => "client_credentials".into(),
                },
            }),
            Caller::Anonymous | Caller::System | Caller::Reconciler(_) => {
                Err(ServiceError::Unauthenticated)
            }
        }
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
