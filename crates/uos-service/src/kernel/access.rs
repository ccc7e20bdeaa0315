//! Building the policy input (principal with expanded org roles, resource) and asking the
//! authorizer. Every use case goes through here; the returned capability gates its commit.

use crate::approvals::break_glass::Grant;
use crate::kernel::reads::LazyRead;
use crate::orgs::cache::OrgRef;
use crate::{AuthMachine, Caller, Ctx, Inner, Result};
use std::collections::BTreeSet;
use std::sync::Arc;
use uos_authz::{Action, Capability, OrgContext, Principal, Resource, ResourceKind};
use uos_domain::{expand_permissions, Org, OrgId, OrgSlug, RoleName};
use uos_store::ReadTx;

impl Inner {
    /// The caller without org context (platform-level and self actions).
    pub(crate) fn principal(&self, ctx: &Ctx) -> Principal {
        match &ctx.caller {
            Caller::Anonymous | Caller::System => Principal::anonymous(),
            Caller::Reconciler(_) => Principal::reconciler(),
            Caller::Machine(m) => Principal::service_account(m.account.id.0, machine_org(m)),
            Caller::User(u) => {
                let mut p = Principal::user(u.user.id.0, u.user.status.as_str());
                p.platform_admin = u.user.platform_admin;
                p
            }
        }
    }

    /// Authorize an action that is not about one org.
    pub(crate) fn authorize(
        &self,
        ctx: &Ctx,
        action: Action,
        resource: Resource,
    ) -> Result<Capability> {
        Ok(self
            .authz
            .authorize(&self.principal(ctx), action, &resource)?)
    }

    /// The caller's standing in `org`: direct roles, and those of break-glass grants it
    /// holds there, expanded through custom-role inheritance. The grants it relied on come
    /// back with it. `copies`: the membership may come from the replica's copies (reads);
    /// a write reads it in its own transaction.
    async fn org_context(
        &self,
        r: &mut LazyRead<'_>,
        ctx: &Ctx,
        org: &Org,
        copies: bool,
    ) -> Result<(Option<OrgContext>, Vec<Grant>)> {
        let user = match &ctx.caller {
            Caller::User(u) => u,
            // A service account's standing was resolved with its credential; the policy
            // compares its org with the resource's.
            Caller::Machine(m) => return Ok((Some(machine_org(m)), Vec::new())),
            Caller::Anonymous | Caller::System | Caller::Reconciler(_) => {
                return Ok((None, Vec::new()))
            }
        };
        let membership = if copies {
            self.cached_membership(r, org.id, user.user.id).await?
        } else {
            r.get()
                .await?
                .get_membership(org.id, user.user.id)
                .await?
                .map(Arc::new)
        };
        let grants = self
            .grants
            .held(r, user.user.id, org.id, uos_domain::now())
            .await?;
        let (mut roles, status) = match &membership {
            Some(m) => (m.roles.clone(), m.status.as_str()),
            // A grant makes its holder an active member for as long as it lasts.
            None if !grants.is_empty() => (Vec::new(), "active"),
            None => return Ok((None, grants)),
        };
        roles.extend(grants.iter().flat_map(|g| g.roles.iter().cloned()));
        let (roles, permissions) = expand_roles(r, org.id, &roles).await?;
        let context = OrgContext {
            org_id: org.id.0,
            membership_status: status.to_string(),
            roles: roles.into_iter().collect(),
            permissions: permissions.into_iter().collect(),
        };
        Ok((Some(context), grants))
    }

    /// Authorize an action on (something inside) `org`. `shape` fills in resource details
    /// such as the target id, `is_self` or `grants_owner`.
    pub(crate) async fn authorize_in_org(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        org: &Org,
        action: Action,
        shape: impl FnOnce(&mut Resource),
    ) -> Result<Capability> {
        let (standing, grants) = self
            .org_context(&mut LazyRead::over(&mut *tx), ctx, org, false)
            .await?;
        let cap = self.authorize_with_standing(ctx, org, action, shape, standing, &grants)?;
        // Holding a capability for this org, the unit of work touches no other org's rows:
        // the store enforces it from here on (row-level security on PostgreSQL).
        tx.confine_to_org(org.id).await?;
        Ok(cap)
    }

    /// The caller's standing in `org` when it needs no store read: a service account's was
    /// resolved with its credential, and anonymous or system callers have none. `None` for a
    /// user, whose membership and grants must be read.
    pub(crate) fn standing_without_store(&self, ctx: &Ctx) -> Option<Option<OrgContext>> {
        match &ctx.caller {
            Caller::User(_) => None,
            Caller::Machine(m) => Some(Some(machine_org(m))),
            Caller::Anonymous | Caller::System | Caller::Reconciler(_) => Some(None),
        }
    }

    /// [`authorize_in_org`](Self::authorize_in_org) once the caller's standing in `org` and
    /// the grants it relied on are known.
    pub(crate) fn authorize_with_standing(
        &self,
        ctx: &Ctx,
        org: &Org,
        action: Action,
        shape: impl FnOnce(&mut Resource),
        standing: Option<OrgContext>,
        grants: &[Grant],
    ) -> Result<Capability> {
        let mut principal = self.principal(ctx);
        principal.org = standing;
        let mut resource = Resource {
            kind: ResourceKind::Org,
            id: Some(org.id.to_string()),
            org_id: Some(org.id.0),
            org_status: Some(org.status.as_str().into()),
            ..Resource::default()
        };
        shape(&mut resource);
        let cap = self.authz.authorize(&principal, action, &resource)?;
        if !grants.is_empty() {
            self.note_grant_use(ctx, grants, org.id, action);
        }
        Ok(cap)
    }

    /// [`org_access`](Self::org_access) for a read: the org and the caller's membership may
    /// come from the replica's copies, and the store is only asked for what they lack.
    pub(crate) async fn org_read_access(
        &self,
        r: &mut LazyRead<'_>,
        ctx: &Ctx,
        slug: &OrgSlug,
        action: Action,
        shape: impl FnOnce(&mut Resource),
    ) -> Result<(Arc<Org>, Capability)> {
        let max_age = std::time::Duration::from_secs(self.cfg.auth_cache_secs);
        let org = self
            .cached_org(r, &OrgRef::Slug(slug.clone()), max_age)
            .await?;
        let (standing, grants) = self.org_context(r, ctx, &org, true).await?;
        let cap = self.authorize_with_standing(ctx, &org, action, shape, standing, &grants)?;
        // A read handle runs each statement on its own, with no org to confine it to: the
        // reads that follow name the org themselves.
        Ok((org, cap))
    }

    /// Load an org by slug and authorize `action` on it. An absent org and an org the caller
    /// may not see give the same `NotFound`, so existence never leaks across orgs.
    pub(crate) async fn org_access(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        slug: &OrgSlug,
        action: Action,
        shape: impl FnOnce(&mut Resource),
    ) -> Result<(Org, Capability)> {
        let org = tx
            .get_org_by_slug(slug)
            .await?
            .ok_or(crate::ServiceError::NotFound)?;
        let cap = self.authorize_in_org(tx, ctx, &org, action, shape).await?;
        Ok((org, cap))
    }
}

/// A service account is always an active "member" of its own org, with its expanded roles and
/// credential-narrowed permissions.
fn machine_org(m: &AuthMachine) -> OrgContext {
    OrgContext {
        org_id: m.account.org_id.0,
        membership_status: "active".into(),
        roles: m.roles.clone(),
        permissions: m.permissions.clone(),
    }
}

/// `roles` with every role they inherit, and every permission those grant in `org`. Custom
/// roles are only read when one is named: most members and accounts hold built-in roles only.
/// A lazy handle takes no connection for built-in roles.
pub(crate) async fn expand_roles(
    r: &mut LazyRead<'_>,
    org: OrgId,
    roles: &[RoleName],
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let custom = if roles.iter().all(RoleName::is_builtin) {
        Vec::new()
    } else {
        r.get().await?.all_roles(org).await?
    };
    Ok(expand_permissions(roles, &custom))
}

/// The permissions `roles` grant in `org`, for the policy's no-escalation check
/// (`Resource::grants_permissions`).
pub(crate) async fn role_grants(
    tx: &mut dyn ReadTx,
    org: OrgId,
    roles: &[RoleName],
) -> Result<Vec<String>> {
    let (_, permissions) = expand_roles(&mut LazyRead::over(tx), org, roles).await?;
    Ok(permissions.into_iter().collect())
}

/// Whether `org` exists and is active: machines of a suspended or deleted org do not act.
pub(crate) async fn org_is_active(tx: &mut dyn ReadTx, org: OrgId) -> Result<bool> {
    Ok(tx
        .get_org(org)
        .await?
        .is_some_and(|o| o.status == uos_domain::OrgStatus::Active))
}
