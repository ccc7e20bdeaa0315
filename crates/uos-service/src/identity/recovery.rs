//! Password recovery: a mailed, single-use, expiring token trades for a new password.
//!
//! Privileged accounts (platform admins, owners of an organization) are what an attacker with
//! access to someone's mailbox wants most, so their reset tokens are issued only after two
//! platform admins other than the account approve the request, on the approval mechanism
//! budget overrides and break-glass use. Every step is audited; the token itself is stored
//! only as a hash and never audited.

use crate::approvals::{file_request, take_step, ApprovalStep};
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::PasswordResetView;
use crate::{Ctx, Done, GoneReason, Result, ServiceError, Services};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{
    Approval, ApprovalKind, ApprovalRequest, ApprovalStatus, Email, RoleName, StatusCause, User,
    UserStatus,
};
use uos_mail::Mail;
use uos_shared::Invalidation;
use uos_store::{PageRequest, PasswordReset};

/// Reset mails per address per hour; beyond this requests are dropped silently (the answer
/// is 202 whatever happens, so a flood cannot be used to mail-bomb someone).
const MAILS_PER_HOUR: u64 = 3;
/// Most pending approvals listed at once.
const MAX_PENDING_LISTED: u32 = 100;

fn reset_resource() -> Resource {
    Resource {
        kind: ResourceKind::PasswordReset,
        ..Default::default()
    }
}

fn invalid_token() -> ServiceError {
    ServiceError::field(
        "token",
        "invalid_token",
        "the reset token is unknown, expired or already used",
    )
}

impl Services {
    /// Start a reset. Always 202: whether the email has an account is not revealed, and the
    /// mail goes out in the background so the response time does not tell either.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn forgot_password(&self, ctx: &Ctx, email: &Email) -> Result<Done<()>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthPasswordForgot, reset_resource())?;
        let done = Done::accepted();
        let flood_key = format!("forgot:{}", uos_authn::hash_token(email.as_str()));
        let hit = inner
            .shared
            .hit(&flood_key, Duration::from_secs(3600))
            .await?;
        if hit.count > MAILS_PER_HOUR {
            return Ok(done);
        }
        let mut r = inner.store.read().await?;
        let Some(user) = r
            .get_user_by_email(email)
            .await?
            .filter(|u| u.status.may_log_in())
        else {
            return Ok(done);
        };
        let privileged = user.platform_admin
            || r.list_memberships_of_user(user.id)
                .await?
                .iter()
                .any(|m| m.roles.iter().any(|role| role == &RoleName::owner()));
        drop(r);

        let now = uos_domain::now();
        let token = (!privileged).then(|| uos_authn::random_token("uosrst_", 32));
        let ttl = if privileged {
            inner.cfg.reset_approval_ttl_secs
        } else {
            inner.cfg.reset_token_ttl_secs
        };
        let reset = PasswordReset {
            id: uos_domain::new_id(),
            user_id: user.id,
            token_hash: token.as_deref().map(uos_authn::hash_token),
            created_at: now,
            expires_at: now + ChronoDuration::seconds(crate::identity::auth::secs(ttl)),
            used_at: None,
            requires_approval: privileged,
            approved_by: None,
            approved_at: None,
            requested_ip: ctx.ip.clone(),
        };
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        uow.tx().insert_password_reset(&reset).await?;
        if privileged {
            let approval = Approval::request(
                ApprovalRequest {
                    kind: ApprovalKind::PasswordReset,
                    org_id: None,
                    requested_by: user.id,
                    subject_id: Some(reset.id),
                    reason: "password reset requested".into(),
                    detail: serde_json::json!({}),
                    pending_for: ChronoDuration::seconds(crate::identity::auth::secs(ttl)),
                    grant_for: ChronoDuration::seconds(crate::identity::auth::secs(
                        inner.cfg.reset_token_ttl_secs,
                    )),
                },
                now,
            );
            file_request(inner, &mut uow, &approval).await?;
        }
        uow.record(
            AuditAction::PasswordResetRequested,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"reset_id": reset.id, "requires_approval": privileged, "ip": ctx.ip}),
        )
        .await?;
        uow.commit(&cap, &done).await?;
        let mail = match token {
            Some(token) => self.reset_mail(&user, &token),
            None => Mail {
                to: user.email.to_string(),
                subject: "Password reset requested".into(),
                text: "A password reset was requested for your account. Because the account \
                       holds administrative rights, a second administrator must approve it; \
                       you will receive the reset token once they do.\n\nIf you did not ask \
                       for this, tell your administrators.\n"
                    .into(),
            },
        };
        self.send_in_background(mail);
        Ok(done)
    }

    fn reset_mail(&self, user: &User, token: &str) -> Mail {
        let minutes = self.inner.cfg.reset_token_ttl_secs / 60;
        Mail {
            to: user.email.to_string(),
            subject: "Your password reset token".into(),
            text: format!(
                "Use this token to set a new password (POST /v1/auth/password/reset with \
                 {{\"token\": \"...\", \"new_password\": \"...\"}}):\n\n{token}\n\nIt works \
                 once and expires in {minutes} minutes. If you did not ask for this, ignore \
                 this mail.\n"
            ),
        }
    }

    fn send_in_background(&self, mail: Mail) {
        let mailer = self.inner.mailer.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&mail).await {
                tracing::error!(error = %e, "could not send mail");
            }
        });
    }

    /// Set a new password with a reset token. The token works once; every session of the
    /// account ends and its lockout is lifted.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn reset_password(
        &self,
        ctx: &Ctx,
        token: &str,
        new_password: String,
    ) -> Result<Done<()>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::AuthPasswordReset, reset_resource())?;
        let hash = uos_authn::hash_token(token);
        let now = uos_domain::now();
        let mut r = inner.store.read().await?;
        let reset = r
            .get_password_reset_by_token(&hash)
            .await?
            .filter(|x| {
                x.used_at.is_none()
                    && x.expires_at > now
                    && (!x.requires_approval || x.approved_by.is_some())
            })
            .ok_or_else(invalid_token)?;
        let user = r
            .get_user(reset.user_id)
            .await?
            .filter(|u| u.status.may_log_in())
            .ok_or_else(invalid_token)?;
        self.check_new_password(&mut *r, &user, &new_password, "new_password")
            .await?;
        drop(r);
        let new_hash = self.hash_password(new_password).await?;

        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        if !uow.tx().use_password_reset(&hash, now).await? {
            return Err(invalid_token());
        }
        let before = uow
            .tx()
            .get_user(user.id)
            .await?
            .ok_or_else(invalid_token)?;
        let mut after = before.clone();
        after.password_hash = Some(new_hash);
        if let Some(old) = &before.password_hash {
            uow.tx().push_password_history(user.id, old, now).await?;
        }
        if after.status == UserStatus::PasswordResetRequired {
            after.set_status(UserStatus::Active, StatusCause::PasswordChanged, now)?;
        } else {
            after.touch(now);
        }
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(Invalidation::User(after.id.0));
        let revoked = uow.tx().revoke_user_sessions(user.id, now).await?;
        uow.record(
            AuditAction::PasswordResetCompleted,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"reset_id": reset.id, "sessions_revoked": revoked, "ip": ctx.ip}),
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        self.clear_lockout(&user.email).await?;
        Ok(done)
    }

    /// Reset requests of privileged accounts waiting for approvers.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_pending_resets(&self, ctx: &Ctx) -> Result<Vec<PasswordResetView>> {
        let _cap = self
            .inner
            .authorize(ctx, Action::PasswordResetList, reset_resource())?;
        let now = uos_domain::now();
        let mut r = self.inner.store.read().await?;
        let page = PageRequest {
            limit: MAX_PENDING_LISTED,
            after: None,
        };
        let pending = r
            .list_approvals(
                ApprovalKind::PasswordReset,
                None,
                Some(ApprovalStatus::Pending),
                now,
                &page,
            )
            .await?;
        let mut views = Vec::with_capacity(pending.items.len());
        // Oldest first: the queue is worked from its front.
        for approval in pending.items.iter().rev() {
            let Some(reset) = approval.subject_id else {
                continue;
            };
            let Some(reset) = r.get_password_reset(reset).await? else {
                continue;
            };
            if let Some(user) = r.get_user(reset.user_id).await? {
                views.push(reset_view(&reset, &user, approval, now));
            }
        }
        Ok(views)
    }

    /// An admin approves a privileged account's reset; the second distinct approval (never
    /// the account's own) issues the token and mails it to the account.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn approve_reset(
        &self,
        ctx: &Ctx,
        id: uuid::Uuid,
    ) -> Result<Done<PasswordResetView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(ctx, Action::PasswordResetApprove, reset_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let now = uos_domain::now();
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let reset = uow
            .tx()
            .get_password_reset(id)
            .await?
            .filter(|x| x.requires_approval)
            .ok_or(ServiceError::NotFound)?;
        let approval = uow
            .tx()
            .get_approval_by_subject(ApprovalKind::PasswordReset, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if reset.used_at.is_some() {
            return Err(ServiceError::Gone {
                code: GoneReason::ResetExpired,
                detail: "the reset request was used".into(),
            });
        }
        let user = uow
            .tx()
            .get_user(reset.user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let stepped = take_step(
            inner,
            &mut uow,
            approval,
            me.user.id,
            ApprovalStep::Approve,
            now,
        )
        .await?;
        if !stepped.activated {
            let done = Done::ok(reset_view(&reset, &user, &stepped.after, now), None);
            uow.commit(&cap, &done).await?;
            return Ok(done);
        }
        let token = uos_authn::random_token("uosrst_", 32);
        let expires_at = now
            + ChronoDuration::seconds(crate::identity::auth::secs(inner.cfg.reset_token_ttl_secs));
        if !uow
            .tx()
            .approve_password_reset(
                id,
                me.user.id,
                &uos_authn::hash_token(&token),
                expires_at,
                now,
            )
            .await?
        {
            return Err(ServiceError::conflict(
                "already_approved",
                "the reset request was already approved",
            ));
        }
        uow.record(
            AuditAction::PasswordResetApproved,
            None,
            user.id.to_string(),
            serde_json::Value::Null,
            serde_json::json!({"reset_id": id, "approval_id": stepped.after.id}),
        )
        .await?;
        let approved = PasswordReset {
            approved_by: Some(me.user.id),
            approved_at: Some(now),
            expires_at,
            ..reset
        };
        let done = Done::ok(reset_view(&approved, &user, &stepped.after, now), None);
        uow.commit(&cap, &done).await?;
        self.send_in_background(self.reset_mail(&user, &token));
        Ok(done)
    }
}

fn reset_view(
    r: &PasswordReset,
    u: &User,
    approval: &Approval,
    now: DateTime<Utc>,
) -> PasswordResetView {
    PasswordResetView {
        id: r.id,
        user_id: r.user_id.0,
        email: u.email.to_string(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        approved_by: r.approved_by.map(|a| a.0),
        approved_at: r.approved_at,
        approval: crate::approvals::view(approval, now),
    }
}
