//! Org membership use cases: list and read members, change roles, suspend/reactivate within
//! the org, remove — always keeping at least one active owner.

use crate::kernel::access::role_grants;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::MemberView;
use crate::orgs::roles::validate_roles;
use crate::{Ctx, Done, Result, ServiceError, Services};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::{Membership, MembershipStatus, Org, OrgSlug, RoleName, UserId};
use uos_store::{MemberFilter, Page, PageRequest, Tx};

/// At most this many roles per membership: enough for any real setup, small enough to keep
/// policy inputs and rows bounded.
pub const MAX_ROLES: usize = 20;

/// Shape the policy resource for a change to `target`'s membership.
fn member_resource(
    ctx: &Ctx,
    target: UserId,
    grants_owner: bool,
    grants: Vec<String>,
) -> impl FnOnce(&mut Resource) + '_ {
    move |r: &mut Resource| {
        r.kind = ResourceKind::Membership;
        r.id = Some(target.to_string());
        r.is_self = ctx.caller.user().is_some_and(|u| u.user.id == target);
        r.grants_owner = grants_owner;
        r.grants_permissions = grants;
    }
}

/// Refuse a change that would leave the org without an active owner. The owner rows are
/// locked first so two concurrent demotions cannot both see "someone else remains".
async fn keep_an_owner(
    tx: &mut dyn Tx,
    before: &Membership,
    after: Option<&Membership>,
) -> Result<()> {
    let was_owner = before.is_active_owner();
    let stays_owner = after.is_some_and(Membership::is_active_owner);
    if !was_owner || stays_owner {
        return Ok(());
    }
    let owners = tx.lock_active_owners(before.org_id).await?;
    if owners.iter().all(|o| *o == before.user_id) {
        return Err(ServiceError::conflict(
            "last_owner",
            "an organization must keep at least one active owner",
        ));
    }
    Ok(())
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_members(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        status: Option<MembershipStatus>,
        page: &PageRequest,
    ) -> Result<Page<MemberView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(&mut r, ctx, slug, Action::MemberList, |_| {})
            .await?;
        let members = r
            .get()
            .await?
            .list_members(
                &MemberFilter {
                    org: org.id,
                    status,
                },
                page,
            )
            .await?;
        Ok(members.map(|m| MemberView::from(&m)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_member(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        user_id: UserId,
    ) -> Result<Done<MemberView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(
                &mut r,
                ctx,
                slug,
                Action::MemberRead,
                member_resource(ctx, user_id, false, Vec::new()),
            )
            .await?;
        let m = inner
            .cached_membership(&mut r, org.id, user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let u = inner
            .cached_user(&mut r, user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(Done::ok(MemberView::new(&m, &u), Some(m.version)))
    }

    /// The opening every membership change shares: find the org and the membership, ask the
    /// policy, check `If-Match`. Whether the change touches `owner` decides which rule applies,
    /// so the membership is read before asking; its absence is answered only after the policy,
    /// so non-members of the org cannot probe user ids.
    #[allow(clippy::too_many_arguments)]
    async fn open_member_change(
        &self,
        uow: &mut UnitOfWork<'_>,
        ctx: &Ctx,
        slug: &OrgSlug,
        user_id: UserId,
        action: Action,
        touches_owner: impl FnOnce(Option<&Membership>) -> bool,
        granted: &[RoleName],
        if_match: Precondition,
    ) -> Result<(Org, Membership, Capability)> {
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let current = uow.tx().get_membership(org.id, user_id).await?;
        let grants_owner = touches_owner(current.as_ref());
        // Nobody hands out a permission they do not hold (owners hold all of them).
        let grants = role_grants(uow.tx(), org.id, granted).await?;
        let cap = self
            .inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                action,
                member_resource(ctx, user_id, grants_owner, grants),
            )
            .await?;
        let before = current.ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        Ok((org, before, cap))
    }

    /// The closing of a membership update: store it (keeping an owner) and audit it.
    async fn finish_member_update(
        &self,
        uow: &mut UnitOfWork<'_>,
        event: AuditAction,
        before: Membership,
        after: Membership,
    ) -> Result<Done<MemberView>> {
        keep_an_owner(uow.tx(), &before, Some(&after)).await?;
        uow.tx().update_membership(&after, before.version).await?;
        let user = uow
            .tx()
            .get_user(after.user_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        uow.record(
            event,
            Some(after.org_id),
            after.user_id.to_string(),
            snapshot(&before),
            snapshot(&after),
        )
        .await?;
        Ok(Done::ok(
            MemberView::new(&after, &user),
            Some(after.version),
        ))
    }

    /// An existing user joins `slug` with `roles` directly, as when an invite is accepted
    /// (the reconciler's way of adding a declared member who already has an account). Asked
    /// of the policy as setting that member's roles.
    pub(crate) async fn add_member_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        user_id: UserId,
        roles: Vec<RoleName>,
    ) -> Result<Capability> {
        let ctx = uow.ctx();
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let grants = role_grants(uow.tx(), org.id, &roles).await?;
        let grants_owner = roles.iter().any(RoleName::is_owner);
        let cap = self
            .inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::MemberSetRoles,
                member_resource(ctx, user_id, grants_owner, grants),
            )
            .await?;
        let roles = validate_roles(uow.tx(), &org, roles, "roles").await?;
        if uow.tx().get_membership(org.id, user_id).await?.is_some() {
            return Err(ServiceError::conflict(
                "already_member",
                "this user is already a member",
            ));
        }
        uow.add_member(&Membership::new(org.id, user_id, roles, uos_domain::now()))
            .await?;
        Ok(cap)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn set_member_roles(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        user_id: UserId,
        roles: Vec<RoleName>,
        if_match: Precondition,
    ) -> Result<Done<MemberView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .set_member_roles_in(&mut uow, slug, user_id, roles, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn set_member_roles_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        user_id: UserId,
        roles: Vec<RoleName>,
        if_match: Precondition,
    ) -> Result<(Capability, Done<MemberView>)> {
        let ctx = uow.ctx();
        let adds_owner = roles.iter().any(RoleName::is_owner);
        let (org, before, cap) = self
            .open_member_change(
                uow,
                ctx,
                slug,
                user_id,
                Action::MemberSetRoles,
                |m| adds_owner != m.is_some_and(Membership::is_owner),
                &roles,
                if_match,
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        let roles = validate_roles(uow.tx(), &org, roles, "roles").await?;
        let mut after = before.clone();
        after.set_roles(roles, uos_domain::now());
        let done = self
            .finish_member_update(uow, AuditAction::MemberRolesChanged, before, after)
            .await?;
        Ok((cap, done))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn set_member_status(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        user_id: UserId,
        to: MembershipStatus,
        if_match: Precondition,
    ) -> Result<Done<MemberView>> {
        let (action, event) = match to {
            MembershipStatus::Suspended => (Action::MemberSuspend, AuditAction::MemberSuspended),
            MembershipStatus::Active => (Action::MemberReactivate, AuditAction::MemberReactivated),
        };
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (_, before, cap) = self
            .open_member_change(
                &mut uow,
                ctx,
                slug,
                user_id,
                action,
                |m| m.is_some_and(Membership::is_owner),
                &[],
                if_match,
            )
            .await?;
        let mut after = before.clone();
        after.set_status(to, uos_domain::now())?;
        let done = self
            .finish_member_update(&mut uow, event, before, after)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn remove_member(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        user_id: UserId,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .remove_member_in(&mut uow, slug, user_id, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn remove_member_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        user_id: UserId,
        if_match: Precondition,
    ) -> Result<(Capability, Done<()>)> {
        let ctx = uow.ctx();
        let (org, before, cap) = self
            .open_member_change(
                uow,
                ctx,
                slug,
                user_id,
                Action::MemberRemove,
                |m| m.is_some_and(Membership::is_owner),
                &[],
                if_match,
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        keep_an_owner(uow.tx(), &before, None).await?;
        uow.tx().delete_membership(org.id, user_id).await?;
        uow.record(
            AuditAction::MemberRemoved,
            Some(org.id),
            user_id.to_string(),
            snapshot(&before),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        Ok((cap, done))
    }
}
