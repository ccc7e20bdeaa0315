//! Organization use cases: create, list, read, rename, suspend/resume, soft delete/restore.

use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::OrgView;
use crate::{Ctx, Done, Result, ServiceError, Services};
use chrono::Duration;
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::{DisplayName, Email, Membership, Org, OrgSlug, RoleName, User};
use uos_store::{OrgFilter, Page, PageRequest};

/// A new org with `owner` as its first member (an org always has an owner), audited.
pub(crate) async fn found_org(
    uow: &mut UnitOfWork<'_>,
    slug: OrgSlug,
    display_name: DisplayName,
    owner: &User,
) -> Result<Org> {
    let now = uos_domain::now();
    let org = Org::new(slug, display_name.into_string(), now);
    uow.tx().insert_org(&org).await?;
    uow.record(
        AuditAction::OrgCreated,
        Some(org.id),
        org.id.to_string(),
        serde_json::Value::Null,
        snapshot(&org),
    )
    .await?;
    uow.add_member(&Membership::new(
        org.id,
        owner.id,
        vec![RoleName::owner()],
        now,
    ))
    .await?;
    Ok(org)
}

/// The status moves of `POST /v1/orgs/{slug}/suspend|resume|restore` and `DELETE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrgMove {
    Suspend,
    Resume,
    Delete,
    Restore,
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_org(
        &self,
        ctx: &Ctx,
        slug: OrgSlug,
        display_name: DisplayName,
        owner_email: Option<Email>,
    ) -> Result<Done<OrgView>> {
        let inner = &*self.inner;
        let cap = inner.authorize(
            ctx,
            Action::OrgCreate,
            Resource {
                kind: ResourceKind::Org,
                ..Default::default()
            },
        )?;
        let caller = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        // Only a platform admin may name someone else as the owner.
        let owner = match owner_email {
            Some(email) if caller.user.platform_admin => {
                uow.tx().get_user_by_email(&email).await?.ok_or_else(|| {
                    ServiceError::field("owner_email", "unknown_user", "no user has this email")
                })?
            }
            Some(_) => {
                return Err(ServiceError::Forbidden {
                    rule: "platform_admin_required".into(),
                })
            }
            None => caller.user.clone(),
        };
        let org = found_org(&mut uow, slug, display_name, &owner).await?;
        let done = Done::created(OrgView::from(&org), Some(org.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_orgs(
        &self,
        ctx: &Ctx,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<OrgView>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(
            ctx,
            Action::OrgList,
            Resource {
                kind: ResourceKind::Org,
                ..Default::default()
            },
        )?;
        let caller = ctx.caller.user().ok_or(ServiceError::Unauthenticated)?;
        // Platform admins see every org; everybody else the orgs they belong to.
        let filter = OrgFilter {
            member: (!caller.user.platform_admin).then_some(caller.user.id),
            include_deleted,
        };
        let mut r = inner.store.read().await?;
        let page = r.list_orgs(&filter, page).await?;
        Ok(Page {
            items: page.items.iter().map(OrgView::from).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_org(&self, ctx: &Ctx, slug: &OrgSlug) -> Result<Done<OrgView>> {
        let inner = &*self.inner;
        let (org, _cap) = inner
            .org_read_access(
                &mut LazyRead::new(&*inner.store),
                ctx,
                slug,
                Action::OrgRead,
                |_| {},
            )
            .await?;
        Ok(Done::ok(OrgView::from(&*org), Some(org.version)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn update_org(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        display_name: Option<DisplayName>,
        api_key_max_days: Option<Option<u32>>,
        if_match: Precondition,
    ) -> Result<Done<OrgView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .update_org_in(&mut uow, slug, display_name, api_key_max_days, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn update_org_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        display_name: Option<DisplayName>,
        api_key_max_days: Option<Option<u32>>,
        if_match: Precondition,
    ) -> Result<(Capability, Done<OrgView>)> {
        let ctx = uow.ctx();
        if let Some(Some(d)) = api_key_max_days {
            if !(1..=uos_domain::API_KEY_MAX_DAYS).contains(&d) {
                return Err(ServiceError::field(
                    "api_key_max_days",
                    "invalid",
                    format!("must be between 1 and {}", uos_domain::API_KEY_MAX_DAYS),
                ));
            }
        }
        let inner = &*self.inner;
        let (org, cap) = inner
            .org_access(uow.tx(), ctx, slug, Action::OrgUpdate, |_| {})
            .await?;
        if display_name.is_some() {
            self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        }
        check_version(org.version, &if_match)?;
        let mut next = org.clone();
        if let Some(name) = display_name {
            next.display_name = name.into_string();
        }
        if let Some(max) = api_key_max_days {
            // Applies to keys issued from now on; existing keys keep their expiry.
            next.api_key_max_days = max;
        }
        next.updated_at = uos_domain::now();
        next.version += 1;
        uow.tx().update_org(&next, org.version).await?;
        // Replicas keep copies of the org row (the decision point's): drop them.
        uow.invalidate(uos_shared::Invalidation::Org(org.id.0));
        uow.record(
            AuditAction::OrgUpdated,
            Some(org.id),
            org.id.to_string(),
            snapshot(&org),
            snapshot(&next),
        )
        .await?;
        let done = Done::ok(OrgView::from(&next), Some(next.version));
        Ok((cap, done))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn move_org(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        mv: OrgMove,
        if_match: Precondition,
    ) -> Result<Done<OrgView>> {
        let inner = &*self.inner;
        let action = match mv {
            OrgMove::Suspend => Action::OrgSuspend,
            OrgMove::Resume => Action::OrgResume,
            OrgMove::Delete => Action::OrgDelete,
            OrgMove::Restore => Action::OrgRestore,
        };
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, cap) = inner
            .org_access(uow.tx(), ctx, slug, action, |_| {})
            .await?;
        check_version(org.version, &if_match)?;
        let now = uos_domain::now();
        let mut next = org.clone();
        match mv {
            OrgMove::Suspend => next.suspend(now)?,
            OrgMove::Resume => next.resume(now)?,
            OrgMove::Delete => next.delete(now)?,
            OrgMove::Restore => {
                next.restore(now, Duration::days(i64::from(inner.cfg.retention_days)))?
            }
        }
        uow.tx().update_org(&next, org.version).await?;
        // Machine credentials of the org are cached with its status, and replicas keep copies
        // of the org row (the decision point's): check them afresh.
        uow.invalidate(uos_shared::Invalidation::Org(org.id.0));
        let name = match mv {
            OrgMove::Suspend => AuditAction::OrgSuspended,
            OrgMove::Resume => AuditAction::OrgResumed,
            OrgMove::Delete => AuditAction::OrgDeleted,
            OrgMove::Restore => AuditAction::OrgRestored,
        };
        uow.record(
            name,
            Some(org.id),
            org.id.to_string(),
            snapshot(&org),
            snapshot(&next),
        )
        .await?;
        let done = Done::ok(OrgView::from(&next), Some(next.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
