//! The caller's own account: profile, preferences, password.

use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::{MeView, MyOrgView, UserView};
use crate::{Ctx, Done, Result, ServiceError, Services};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::{DisplayName, Locale, StatusCause, Timezone, User, UserId, UserStatus};

/// `PATCH /v1/me`: absent fields stay as they are.
#[derive(Clone, Debug, Default)]
pub struct ProfilePatch {
    pub display_name: Option<DisplayName>,
    pub locale: Option<Locale>,
    pub timezone: Option<Timezone>,
}

/// Largest preferences document, serialised.
pub const PREFERENCES_MAX_BYTES: usize = 16 * 1024;

fn self_resource() -> Resource {
    Resource {
        kind: ResourceKind::SelfUser,
        ..Default::default()
    }
}

impl Services {
    pub(crate) fn me<'c>(&self, ctx: &'c Ctx, action: Action) -> Result<(&'c User, Capability)> {
        let cap = self.inner.authorize(ctx, action, self_resource())?;
        let me = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        Ok((&me.user, cap))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_me(&self, ctx: &Ctx) -> Result<Done<MeView>> {
        let (me, _cap) = self.me(ctx, Action::MeRead)?;
        let memberships = self
            .inner
            .store
            .read()
            .await?
            .list_memberships_of_user(me.id)
            .await?;
        let orgs = memberships
            .iter()
            .map(|m| MyOrgView {
                org_id: m.org_id.0,
                roles: m.roles.iter().map(|r| r.to_string()).collect(),
                status: m.status.as_str().into(),
            })
            .collect();
        Ok(Done::ok(
            MeView {
                user: UserView::from(me),
                orgs,
            },
            Some(me.version),
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn update_me(
        &self,
        ctx: &Ctx,
        patch: ProfilePatch,
        if_match: Precondition,
    ) -> Result<Done<UserView>> {
        let (me, cap) = self.me(ctx, Action::MeUpdate)?;
        self.update_profile(ctx, cap, me.id, patch, if_match).await
    }

    /// Apply a profile patch to one user: the body of `PATCH /v1/me` and of an admin's
    /// `PATCH /v1/users/{id}`, which differ only in who may ask.
    pub(crate) async fn update_profile(
        &self,
        ctx: &Ctx,
        cap: Capability,
        id: UserId,
        patch: ProfilePatch,
        if_match: Precondition,
    ) -> Result<Done<UserView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = uow.tx().get_user(id).await?.ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let mut after = before.clone();
        if let Some(v) = patch.display_name {
            after.display_name = Some(v.into_string());
        }
        if let Some(v) = patch.locale {
            after.locale = Some(v.into_string());
        }
        if let Some(v) = patch.timezone {
            after.timezone = Some(v.into_string());
        }
        after.touch(uos_domain::now());
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(uos_shared::Invalidation::User(after.id.0));
        uow.record(
            AuditAction::UserUpdated,
            None,
            id.to_string(),
            snapshot(&before),
            snapshot(&after),
        )
        .await?;
        let done = Done::ok(UserView::from(&after), Some(after.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_preferences(&self, ctx: &Ctx) -> Result<Done<serde_json::Value>> {
        let (me, _cap) = self.me(ctx, Action::MeRead)?;
        Ok(Done::ok(me.preferences.clone(), Some(me.version)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn put_preferences(
        &self,
        ctx: &Ctx,
        prefs: serde_json::Value,
        if_match: Precondition,
    ) -> Result<Done<serde_json::Value>> {
        if !prefs.is_object() {
            return Err(ServiceError::field(
                "body",
                "invalid_type",
                "preferences must be a JSON object",
            ));
        }
        if prefs.to_string().len() > PREFERENCES_MAX_BYTES {
            return Err(ServiceError::field(
                "body",
                "too_large",
                "preferences must be at most 16 KiB",
            ));
        }
        let (me, cap) = self.me(ctx, Action::MeUpdate)?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = uow
            .tx()
            .get_user(me.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let mut after = before.clone();
        after.preferences = prefs;
        after.touch(uos_domain::now());
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(uos_shared::Invalidation::User(after.id.0));
        uow.record(
            AuditAction::UserPreferencesChanged,
            None,
            me.id.to_string(),
            before.preferences.clone(),
            after.preferences.clone(),
        )
        .await?;
        let done = Done::ok(after.preferences.clone(), Some(after.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Change the caller's password. Every session of the user ends, this one included (a
    /// changed password usually means the old one is distrusted), so the client logs in again;
    /// a `password_reset_required` account becomes active.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn change_password(
        &self,
        ctx: &Ctx,
        current: String,
        new: String,
    ) -> Result<Done<()>> {
        let (me, cap) = self.me(ctx, Action::MePassword)?;
        let mut inputs = vec![me.email.as_str()];
        if let Some(n) = me.display_name.as_deref() {
            inputs.push(n);
        }
        self.check_password_policy(&new, "new_password", &inputs)?;
        if current == new {
            return Err(ServiceError::field(
                "new_password",
                "unchanged",
                "the new password must differ from the current one",
            ));
        }
        let ok = match me.password_hash.clone() {
            Some(phc) => self.verify_password(current, Some(phc)).await?,
            None => false,
        };
        if !ok {
            return Err(ServiceError::field(
                "current_password",
                "incorrect",
                "the current password is not correct",
            ));
        }
        {
            let mut r = self.inner.store.read().await?;
            self.check_new_password(&mut *r, me, &new, "new_password")
                .await?;
        }
        let hash = self.hash_password(new).await?;
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let before = uow
            .tx()
            .get_user(me.id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let mut after = before.clone();
        after.password_hash = Some(hash);
        let now = uos_domain::now();
        if let Some(old) = &before.password_hash {
            uow.tx().push_password_history(me.id, old, now).await?;
        }
        if after.status == UserStatus::PasswordResetRequired {
            after.set_status(UserStatus::Active, StatusCause::PasswordChanged, now)?;
        } else {
            after.touch(now);
        }
        uow.tx().update_user(&after, before.version).await?;
        uow.invalidate(uos_shared::Invalidation::User(after.id.0));
        let revoked = uow.tx().revoke_user_sessions(me.id, now).await?;
        uow.record(
            AuditAction::UserPasswordChanged,
            None,
            me.id.to_string(),
            serde_json::json!({"status": before.status}),
            serde_json::json!({"status": after.status, "sessions_revoked": revoked}),
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
