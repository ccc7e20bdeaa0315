//! Service accounts: org-scoped machine principals with roles, a rotation policy for their API
//! keys, and an OAuth2 client secret. Every change is audited; every change that can narrow
//! what the account may do evicts its cached credentials on every replica.

use crate::kernel::access::role_grants;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::{ClientSecretView, ServiceAccountView};
use crate::orgs::roles::check_description;
use crate::orgs::roles::validate_roles;
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::{
    org::parse_display_name, OrgSlug, RoleName, RotationPolicy, ServiceAccount, ServiceAccountId,
    ServiceAccountStatus, API_KEY_MAX_DAYS,
};
use uos_shared::Invalidation;
use uos_store::{Page, PageRequest, ReadTx};

#[derive(Clone, Debug)]
pub struct NewServiceAccount {
    pub name: String,
    pub description: Option<String>,
    pub roles: Vec<RoleName>,
    pub rotation: RotationPolicy,
}

/// Fields to change; `None` leaves a field as it is (`description: Some(None)` clears it).
#[derive(Clone, Debug, Default)]
pub struct ServiceAccountPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub roles: Option<Vec<RoleName>>,
    pub status: Option<ServiceAccountStatus>,
    pub rotation: Option<RotationPolicy>,
}

pub(crate) fn account_resource(
    id: Option<ServiceAccountId>,
    grants: Vec<String>,
) -> impl FnOnce(&mut Resource) {
    move |r: &mut Resource| {
        r.kind = ResourceKind::ServiceAccount;
        r.id = id.map(|i| i.to_string());
        r.grants_permissions = grants;
    }
}

/// An account's or a key's name: a display name, reported on `name`.
pub(crate) fn check_name(name: &str) -> Result<String> {
    parse_display_name(name).map_err(|e| ServiceError::field("name", "invalid", e.to_string()))
}

fn check_rotation(p: &RotationPolicy) -> Result<()> {
    let bad = |field: &str| {
        ServiceError::field(
            field,
            "invalid",
            format!("must be between 1 and {API_KEY_MAX_DAYS} days"),
        )
    };
    let in_range = |d: u32| (1..=API_KEY_MAX_DAYS).contains(&d);
    if p.max_key_age_days.is_some_and(|d| !in_range(d)) {
        return Err(bad("rotation_policy.max_key_age_days"));
    }
    // A grace of zero days is allowed: refuse as soon as the key is overdue.
    if p.refuse_after_days.is_some_and(|d| d > API_KEY_MAX_DAYS) {
        return Err(bad("rotation_policy.refuse_after_days"));
    }
    if p.refuse_after_days.is_some() && p.max_key_age_days.is_none() {
        return Err(ServiceError::field(
            "rotation_policy.refuse_after_days",
            "requires_max_key_age",
            "refusing overdue keys needs max_key_age_days",
        ));
    }
    Ok(())
}

/// `Ok(Some(v))` for a value, `Ok(None)` after adding a validation failure to `errors` (so
/// that one answer lists every bad field), any other error as it is.
fn keep<T>(r: Result<T>, errors: &mut Vec<FieldError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ServiceError::Validation(e)) => {
            errors.extend(e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Roles a service account may hold: existing in the org, and never `owner` (an org's owners
/// are people; the last-owner rule counts only them). Every bad entry is reported.
async fn account_roles(
    tx: &mut dyn ReadTx,
    org: &uos_domain::Org,
    roles: Vec<RoleName>,
) -> Result<Vec<RoleName>> {
    let owners: Vec<FieldError> = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_owner())
        .map(|(i, _)| {
            FieldError::new(
                format!("roles[{i}]"),
                "owner_not_allowed",
                "a service account cannot be an owner",
            )
        })
        .collect();
    match validate_roles(tx, org, roles, "roles").await {
        Ok(roles) if owners.is_empty() => Ok(roles),
        Ok(_) => Err(ServiceError::Validation(owners)),
        Err(ServiceError::Validation(mut errors)) => {
            errors.extend(owners);
            Err(ServiceError::Validation(errors))
        }
        Err(e) => Err(e),
    }
}

/// The account `id` of `org` unless it was deleted: a deleted account is gone for every
/// endpoint but the list with `include_deleted`.
pub(crate) async fn live_account(
    tx: &mut dyn ReadTx,
    org: uos_domain::OrgId,
    id: ServiceAccountId,
) -> Result<Option<ServiceAccount>> {
    Ok(tx
        .get_service_account(org, id)
        .await?
        .filter(|sa| sa.status != ServiceAccountStatus::Deleted))
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_service_account(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        req: NewServiceAccount,
    ) -> Result<Done<ServiceAccountView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self.create_service_account_in(&mut uow, slug, req).await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn create_service_account_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        req: NewServiceAccount,
    ) -> Result<(Capability, Done<ServiceAccountView>)> {
        let ctx = uow.ctx();
        let mut errors = Vec::new();
        let name = keep(check_name(&req.name), &mut errors)?;
        keep(check_description(&req.description), &mut errors)?;
        keep(check_rotation(&req.rotation), &mut errors)?;
        let inner = &*self.inner;
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        // Roles are checked before the policy so that the escalation check sees real
        // permissions; the answer for an outsider is still the policy's 404 below.
        let checked = account_roles(uow.tx(), &org, req.roles.clone()).await;
        let grants = match &checked {
            Ok(roles) => role_grants(uow.tx(), org.id, roles).await?,
            Err(_) => Vec::new(),
        };
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::ServiceAccountCreate,
                account_resource(None, grants),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        let roles = keep(checked, &mut errors)?;
        let (Some(name), Some(roles), true) = (name, roles, errors.is_empty()) else {
            return Err(ServiceError::Validation(errors));
        };
        let mut sa = ServiceAccount::new(org.id, name, roles, uos_domain::now());
        sa.description = req.description;
        sa.rotation = req.rotation;
        uow.tx().insert_service_account(&sa).await?;
        let view = ServiceAccountView::from(&sa);
        uow.record(
            AuditAction::ServiceAccountCreated,
            Some(org.id),
            sa.id.to_string(),
            serde_json::Value::Null,
            snapshot(&view),
        )
        .await?;
        let done = Done::created(view, Some(sa.version));
        Ok((cap, done))
    }

    /// What `roles` would be told on a service account of `slug`, for a request whose other
    /// fields already failed to parse: the transport adds these so that one answer lists every
    /// bad field. Only callers allowed to create (or, with `update`, change) accounts there
    /// learn anything about the org's roles; for others this is the policy's refusal.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn service_account_role_errors(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        roles: Vec<RoleName>,
        update: bool,
    ) -> Result<Vec<FieldError>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let action = if update {
            Action::ServiceAccountUpdate
        } else {
            Action::ServiceAccountCreate
        };
        let (org, _cap) = inner
            .org_access(
                &mut *r,
                ctx,
                slug,
                action,
                account_resource(None, Vec::new()),
            )
            .await?;
        let mut errors = Vec::new();
        keep(account_roles(&mut *r, &org, roles).await, &mut errors)?;
        Ok(errors)
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_service_accounts(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        include_deleted: bool,
        page: &PageRequest,
    ) -> Result<Page<ServiceAccountView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(
                &mut r,
                ctx,
                slug,
                Action::ServiceAccountList,
                account_resource(None, Vec::new()),
            )
            .await?;
        let page = r
            .get()
            .await?
            .list_service_accounts(org.id, include_deleted, page)
            .await?;
        Ok(Page {
            items: page.items.iter().map(ServiceAccountView::from).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_service_account(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ServiceAccountId,
    ) -> Result<Done<ServiceAccountView>> {
        let inner = &*self.inner;
        let mut r = LazyRead::new(&*inner.store);
        let (org, _cap) = inner
            .org_read_access(
                &mut r,
                ctx,
                slug,
                Action::ServiceAccountRead,
                account_resource(Some(id), Vec::new()),
            )
            .await?;
        let sa = inner
            .cached_account(&mut r, Some(org.id), id)
            .await?
            .filter(|sa| sa.status != ServiceAccountStatus::Deleted)
            .ok_or(ServiceError::NotFound)?;
        Ok(Done::ok(ServiceAccountView::from(&*sa), Some(sa.version)))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn update_service_account(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ServiceAccountId,
        patch: ServiceAccountPatch,
        if_match: Precondition,
    ) -> Result<Done<ServiceAccountView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .update_service_account_in(&mut uow, slug, id, patch, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn update_service_account_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        id: ServiceAccountId,
        patch: ServiceAccountPatch,
        if_match: Precondition,
    ) -> Result<(Capability, Done<ServiceAccountView>)> {
        let ctx = uow.ctx();
        let mut errors = Vec::new();
        let name = match patch.name.as_deref() {
            Some(n) => keep(check_name(n), &mut errors)?,
            None => None,
        };
        if let Some(d) = &patch.description {
            keep(check_description(d), &mut errors)?;
        }
        if let Some(p) = &patch.rotation {
            keep(check_rotation(p), &mut errors)?;
        }
        let inner = &*self.inner;
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let checked = match patch.roles.clone() {
            Some(roles) => Some(account_roles(uow.tx(), &org, roles).await),
            None => None,
        };
        let grants = match &checked {
            Some(Ok(roles)) => role_grants(uow.tx(), org.id, roles).await?,
            _ => Vec::new(),
        };
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::ServiceAccountUpdate,
                account_resource(Some(id), grants),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        let roles = match checked {
            Some(c) => keep(c, &mut errors)?,
            None => None,
        };
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let before = live_account(uow.tx(), org.id, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        let mut sa = before.clone();
        if let Some(to) = patch.status {
            sa.set_status(to, now).map_err(|e| {
                ServiceError::Validation(vec![crate::FieldError::from_domain("status", &e)])
            })?;
        }
        if let Some(n) = name {
            sa.name = n;
        }
        if let Some(d) = patch.description {
            sa.description = d;
        }
        if let Some(r) = roles {
            sa.roles = r;
        }
        if let Some(p) = patch.rotation {
            sa.rotation = p;
        }
        if sa == before {
            return Ok((
                cap,
                Done::ok(ServiceAccountView::from(&sa), Some(sa.version)),
            ));
        }
        if sa.version == before.version {
            sa.touch(now);
        }
        uow.tx().update_service_account(&sa, before.version).await?;
        uow.invalidate(Invalidation::ServiceAccount(sa.id.0));
        let view = ServiceAccountView::from(&sa);
        uow.record(
            AuditAction::ServiceAccountUpdated,
            Some(org.id),
            sa.id.to_string(),
            snapshot(&ServiceAccountView::from(&before)),
            snapshot(&view),
        )
        .await?;
        let done = Done::ok(view, Some(sa.version));
        Ok((cap, done))
    }

    /// Soft-delete the account: its keys are revoked and its client secret dropped, so every
    /// credential of it stops working at once.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn delete_service_account(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ServiceAccountId,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done) = self
            .delete_service_account_in(&mut uow, slug, id, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    pub(crate) async fn delete_service_account_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        id: ServiceAccountId,
        if_match: Precondition,
    ) -> Result<(Capability, Done<()>)> {
        let ctx = uow.ctx();
        let inner = &*self.inner;
        let (org, cap) = inner
            .org_access(
                uow.tx(),
                ctx,
                slug,
                Action::ServiceAccountDelete,
                account_resource(Some(id), Vec::new()),
            )
            .await?;
        self.inner.refuse_if_declared(uow.tx(), ctx, org.id).await?;
        let before = live_account(uow.tx(), org.id, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        let mut sa = before.clone();
        sa.delete(now)
            .map_err(|e| ServiceError::conflict("invalid_transition", e.to_string()))?;
        uow.tx().update_service_account(&sa, before.version).await?;
        let revoked = uow.tx().revoke_service_account_keys(sa.id, now).await?;
        uow.invalidate(Invalidation::ServiceAccount(sa.id.0));
        uow.record(
            AuditAction::ServiceAccountDeleted,
            Some(org.id),
            sa.id.to_string(),
            snapshot(&ServiceAccountView::from(&before)),
            serde_json::json!({"status": "deleted", "revoked_api_keys": revoked}),
        )
        .await?;
        let done = Done::no_content();
        Ok((cap, done))
    }

    /// Issue a new OAuth2 client secret for the account; the previous one stops working.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn issue_client_secret(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ServiceAccountId,
    ) -> Result<Done<ClientSecretView>> {
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let org = uow
            .tx()
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        // The secret authenticates as the account with all its roles' permissions, so the
        // no-escalation rule sees them: only a caller holding them all may take it.
        let found = live_account(uow.tx(), org.id, id).await?;
        let grants = match &found {
            Some(sa) => role_grants(uow.tx(), org.id, &sa.roles).await?,
            None => Vec::new(),
        };
        let cap = inner
            .authorize_in_org(
                uow.tx(),
                ctx,
                &org,
                Action::ClientSecretIssue,
                account_resource(Some(id), grants),
            )
            .await?;
        let before = found.ok_or(ServiceError::NotFound)?;
        let now = uos_domain::now();
        let secret = uos_authn::generate_client_secret();
        let mut sa = before.clone();
        sa.client_secret_hash = Some(uos_authn::hash_api_key(
            &inner.machine.api_key_pepper,
            &secret,
        ));
        sa.client_secret_created_at = Some(now);
        sa.touch(now);
        uow.tx().update_service_account(&sa, before.version).await?;
        uow.invalidate(Invalidation::ServiceAccount(sa.id.0));
        uow.record(
            AuditAction::ClientSecretIssued,
            Some(org.id),
            sa.id.to_string(),
            serde_json::json!({"client_secret_created_at": before.client_secret_created_at}),
            serde_json::json!({"client_secret_created_at": now, "replaced": before.client_secret_hash.is_some()}),
        )
        .await?;
        let done = Done::created(
            ClientSecretView {
                client_id: sa.id.to_string(),
                client_secret: secret,
                created_at: now,
            },
            Some(sa.version),
        );
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
