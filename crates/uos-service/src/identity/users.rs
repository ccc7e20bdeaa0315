//! Platform-level user administration: list, read, edit, lifecycle status, soft delete and
//! restore. Moves that cut off access revoke every session in the same transaction.

use crate::identity::me::ProfilePatch;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::UserView;
use crate::{Ctx, Done, Result, ServiceError, Services};
use chrono::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{StatusCause, UserId, UserStatus};
use uos_store::{Page, PageRequest, UserFilter};

fn user_resource(ctx: &Ctx, id: UserId) -> Resource {
    Resource {
        kind: ResourceKind::User,
        id: Some(id.to_string()),
        is_self: ctx.caller.user().is_some_and(|u| u.user.id == id),
        ..Default::default()
    }
}

/// Reasons are free text for the audit trail; bounded so they cannot bloat it.
pub const REASON_MAX_CHARS: usize = 500;

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_users(
        &self,
        ctx: &Ctx,
        filter: &UserFilter,
        page: &PageRequest,
    ) -> Result<Page<UserView>> {
        let _cap = self.inner.authorize(
            ctx,
            Action::UserList,
            Resource {
                kind: ResourceKind::User,
                ..Default::default()
            },
        )?;
        let page = self
            .inner
            .store
            .read()
            .await?
            .list_users(filter, page)
            .await?;
        Ok(Page {
            items: page.items.iter().map(UserView::from).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_user(&self, ctx: &Ctx, id: UserId) -> Result<Done<UserView>> {
        let _cap = self
            .inner
            .authorize(ctx, Action::UserRead, user_resource(ctx, id))?;
        let inner = &*self.inner;
        let u = inner
            .cached_user(&mut LazyRead::new(&*inner.store), id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(Done::ok(UserView::from(&*u), Some(u.version)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn update_user(
        &self,
        ctx: &Ctx,
        id: UserId,
        patch: ProfilePatch,
        if_match: Precondition,
    ) -> Result<Done<UserView>> {
        let cap = self
            .inner
            .authorize(ctx, Action::UserUpdate, user_resource(ctx, id))?;
        self.update_profile(ctx, cap, id, patch, if_match).await
    }

    /// Move a user through the lifecycle table (admin cause). Deleting is the same as
    /// `DELETE /v1/users/{id}`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn set_user_status(
        &self,
        ctx: &Ctx,
        id: UserId,
        to: UserStatus,
        reason: Option<String>,
        if_match: Precondition,
    ) -> Result<Done<UserView>> {
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > REASON_MAX_CHARS)
        {
            return Err(ServiceError::field(
                "reason",
                "too_long",
                format!("at most {REASON_MAX_CHARS} characters"),
            ));
        }
        let action = if to == UserStatus::Deleted {
            Action::UserDelete
        } else {
            Action::UserSetStatus
        };
        let cap = self.inner.authorize(ctx, action, user_resource(ctx, id))?;
        if ctx.caller.user().is_some_and(|u| u.user.id == id) {
            // An admin locking themselves out is never what they meant, and it can remove
            // the last platform admin.
            return Err(ServiceError::conflict(
                "own_status",
                "you cannot change your own status",
            ));
        }
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = uow.tx().get_user(id).await?.ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        let mut after = before.clone();
        after.set_status(to, StatusCause::Admin, now)?;
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(uos_shared::Invalidation::User(after.id.0));
        let revoked = if to.cuts_off_access() {
            uow.tx().revoke_user_sessions(id, now).await?
        } else {
            0
        };
        uow.record(
            if to == UserStatus::Deleted { AuditAction::UserDeleted } else { AuditAction::UserStatusChanged },
            None,
            id.to_string(),
            serde_json::json!({"status": before.status}),
            serde_json::json!({"status": after.status, "reason": reason, "sessions_revoked": revoked}),
        )
        .await?;
        let done = Done::ok(UserView::from(&after), Some(after.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn restore_user(
        &self,
        ctx: &Ctx,
        id: UserId,
        if_match: Precondition,
    ) -> Result<Done<UserView>> {
        let cap = self
            .inner
            .authorize(ctx, Action::UserRestore, user_resource(ctx, id))?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = uow.tx().get_user(id).await?.ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let mut after = before.clone();
        after.restore(
            uos_domain::now(),
            Duration::days(i64::from(self.inner.cfg.retention_days)),
        )?;
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(uos_shared::Invalidation::User(after.id.0));
        uow.record(
            AuditAction::UserRestored,
            None,
            id.to_string(),
            serde_json::json!({"status": before.status}),
            serde_json::json!({"status": after.status}),
        )
        .await?;
        let done = Done::ok(UserView::from(&after), Some(after.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Lift a lockout now (the user called the help desk). Audited with the lockout that was
    /// lifted, if any.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn unlock_user(&self, ctx: &Ctx, id: UserId) -> Result<Done<()>> {
        let cap = self
            .inner
            .authorize(ctx, Action::UserUnlock, user_resource(ctx, id))?;
        let user = self
            .inner
            .store
            .read()
            .await?
            .get_user(id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let locked_for = self.locked_for(&user.email).await?;
        self.clear_lockout(&user.email).await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        uow.record(
            AuditAction::AccountUnlocked,
            None,
            id.to_string(),
            serde_json::json!({"locked_for_secs": locked_for}),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
