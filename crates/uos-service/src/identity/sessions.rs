//! Sessions: refresh-token rotation with reuse detection, the caller's devices, and revoking
//! sessions (one, all others, or all of a user by a platform admin).

use crate::identity::auth::secs;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{DeviceView, SessionView, TokenView};
use crate::{Ctx, Done, Result, ServiceError, Services};
use chrono::{DateTime, Duration, Utc};
use uos_audit::AuditAction;
use uos_authn::PresentedRefreshToken;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{SessionId, UserId};
use uos_shared::Invalidation;
use uos_store::{Rotation, Session, TokenUse};

/// Most sessions listed at once; more live sessions than this means something is wrong anyway.
const MAX_LISTED_SESSIONS: u32 = 100;

/// The resource every session action is authorized on.
pub(crate) fn session_resource() -> Resource {
    Resource {
        kind: ResourceKind::Session,
        ..Default::default()
    }
}

impl Services {
    /// Neither revoked, nor past its absolute end, nor idle for too long.
    pub(crate) fn is_live(&self, s: &Session, now: DateTime<Utc>) -> bool {
        s.is_live(now, self.idle_since(now))
    }

    /// Sessions not seen since this are idle at `now`.
    fn idle_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - Duration::seconds(secs(self.inner.cfg.session_idle_secs))
    }

    /// Trade a refresh token for a new pair. A token works once: presenting a used one means
    /// it leaked, so the whole session (every access and refresh token of it) is revoked, the
    /// reuse is audited, and the answer is 401. A token this server did not issue is refused
    /// without touching any session (see `uos_authn::parse_refresh_token`).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn refresh(&self, ctx: &Ctx, token: &str) -> Result<Done<TokenView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthRefresh, session_resource())?;
        let key = self.refresh_token_key()?;
        let hash = uos_authn::hash_token(token);
        let now = uos_domain::now();
        let (session_id, generation) = match uos_authn::parse_refresh_token(&key, token) {
            PresentedRefreshToken::Signed {
                session,
                generation,
            } => (SessionId(session), generation),
            // Issued before the session row held the refresh state: its old row says whose
            // it is. A used one is a replay; an unused one is its session's generation 0.
            PresentedRefreshToken::Legacy => {
                match inner
                    .store
                    .read()
                    .await?
                    .get_legacy_refresh_token(&hash)
                    .await?
                {
                    Some(t) if t.used => {
                        return self.refresh_reused(ctx, &cap, t.session_id, now).await
                    }
                    Some(t) => (t.session_id, 0),
                    None => return Err(ServiceError::Unauthenticated),
                }
            }
            PresentedRefreshToken::Invalid => return Err(ServiceError::Unauthenticated),
        };
        let next_generation = generation
            .checked_add(1)
            .ok_or(ServiceError::Unauthenticated)?;
        let next = uos_authn::issue_refresh_token(&key, session_id.0, next_generation);
        let rotation = Rotation {
            session_id,
            generation,
            token_hash: hash,
            next_hash: uos_authn::hash_token(&next),
        };
        // Using the token is the one atomic step that decides: it checks the session is live
        // and its user may still log in, moves the session to the next token and records the
        // activity. No read comes first.
        let rotated = inner
            .store
            .refresh_session(&rotation, now, self.idle_since(now))
            .await?;
        match rotated {
            // A routine rotation is not audited (it would put every client's token schedule
            // into the chain and serialise all refreshes on its head): the session's
            // `last_seen_at` records the activity, and the security event — reuse — is
            // audited below.
            TokenUse::Fresh(session) => Ok(Done::ok(self.token_pair(&session, next, now), None)),
            TokenUse::Unknown | TokenUse::Dead => Err(ServiceError::Unauthenticated),
            TokenUse::Reused(id) => self.refresh_reused(ctx, &cap, id, now).await,
        }
    }

    /// A replayed refresh token of session `id`: revoke the session, audit the reuse, 401.
    async fn refresh_reused(
        &self,
        ctx: &Ctx,
        cap: &uos_authz::Capability,
        id: SessionId,
        now: DateTime<Utc>,
    ) -> Result<Done<TokenView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let owner = uow.tx().get_session(id).await?.map(|s| s.user_id);
        let revoked = uow.tx().revoke_session(id, now).await?;
        uow.invalidate(Invalidation::Session(id.0));
        uow.record(
            AuditAction::SessionRefreshReuseDetected,
            None,
            id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"user_id": owner, "session_revoked": revoked, "ip": ctx.ip, "user_agent": ctx.user_agent}),
        )
        .await?;
        uow.commit_unanswered(cap).await?;
        tracing::warn!(session = %id, "refresh token reused; session revoked");
        Err(ServiceError::Unauthenticated)
    }

    /// The key refresh tokens are signed with (see `uos_authn::issue_refresh_token`). A named
    /// secret of the key port: it never rotates, as rotating it would end every session's
    /// refresh at once.
    pub(crate) fn refresh_token_key(&self) -> Result<[u8; 32]> {
        self.inner
            .keys
            .secret("refresh-token-key")
            .map_err(|e| ServiceError::Internal(format!("refresh token key: {e}")))
    }

    /// The caller's live sessions, newest first.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_sessions(&self, ctx: &Ctx) -> Result<Vec<SessionView>> {
        let _cap = self
            .inner
            .authorize(ctx, Action::SessionList, session_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let now = uos_domain::now();
        let sessions = self
            .inner
            .store
            .read()
            .await?
            .list_live_sessions(me.user.id, now, MAX_LISTED_SESSIONS)
            .await?;
        Ok(sessions
            .iter()
            .filter(|s| self.is_live(s, now))
            .map(|s| SessionView {
                id: s.id.0,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                ip: s.ip.clone(),
                user_agent: s.user_agent.clone(),
                device: DeviceView::parse(s.user_agent.as_deref()),
                current: s.id == me.session_id,
            })
            .collect())
    }

    /// Revoke one of the caller's sessions. Another user's session id is "not found".
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_my_session(&self, ctx: &Ctx, id: SessionId) -> Result<Done<()>> {
        let cap = self
            .inner
            .authorize(ctx, Action::SessionRevoke, session_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let session = uow
            .tx()
            .get_session(id)
            .await?
            .filter(|s| s.user_id == me.user.id)
            .ok_or(ServiceError::NotFound)?;
        if uow
            .tx()
            .revoke_session(session.id, uos_domain::now())
            .await?
        {
            uow.invalidate(Invalidation::Session(session.id.0));
            uow.record(
                AuditAction::SessionRevoked,
                None,
                id.to_string(),
                serde_json::Value::Null,
                serde_json::json!({"reason": "revoked_by_user"}),
            )
            .await?;
        }
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Revoke every session of the caller but the current one.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_other_sessions(&self, ctx: &Ctx) -> Result<Done<()>> {
        let cap = self
            .inner
            .authorize(ctx, Action::SessionRevoke, session_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let n = uow
            .tx()
            .revoke_other_sessions(me.user.id, me.session_id, uos_domain::now())
            .await?;
        if n > 0 {
            uow.invalidate(Invalidation::User(me.user.id.0));
            uow.record(
                AuditAction::SessionRevokedOthers,
                None,
                me.user.id.to_string(),
                serde_json::Value::Null,
                serde_json::json!({"sessions_revoked": n, "kept": me.session_id}),
            )
            .await?;
        }
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// A platform admin ends every session of a user (lost device, suspected compromise).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_user_sessions(&self, ctx: &Ctx, user: UserId) -> Result<Done<()>> {
        let resource = Resource {
            kind: ResourceKind::User,
            id: Some(user.to_string()),
            ..Default::default()
        };
        let cap = self
            .inner
            .authorize(ctx, Action::UserRevokeSessions, resource)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        uow.tx()
            .get_user(user)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let n = uow
            .tx()
            .revoke_user_sessions(user, uos_domain::now())
            .await?;
        uow.invalidate(Invalidation::User(user.0));
        uow.record(
            AuditAction::SessionRevokedAll,
            None,
            user.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"sessions_revoked": n, "reason": "revoked_by_admin"}),
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
