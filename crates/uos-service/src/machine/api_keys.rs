//! API keys of service accounts: create (the secret is shown once), list, read, revoke, rotate
//! with an overlap window, and the list of keys overdue for rotation.

use crate::kernel::access::expand_roles;
use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::{ApiKeyView, NewApiKeyView};
use crate::machine::service_accounts::{account_resource, check_name, live_account};
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use uos_audit::AuditAction;
use uos_authz::{Action, Resource, ResourceKind};
use uos_domain::{
    key_lifetime_days, ApiKey, ApiKeyId, Org, OrgSlug, Permission, RotationPolicy, ServiceAccount,
    ServiceAccountId, ServiceAccountStatus,
};
use uos_shared::Invalidation;
use uos_store::{Page, PageRequest, ReadTx, Tx};

/// The longest overlap a rotation may ask for: the old key must not outlive a deploy cycle.
pub const MAX_ROTATION_OVERLAP_SECS: u64 = 30 * 24 * 3600;
/// Scopes per key; the permission catalogue is smaller anyway.
const MAX_SCOPES: usize = 32;

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Vec<Permission>,
    pub expires_in_days: Option<u32>,
}

fn key_resource(id: Option<ApiKeyId>, grants: Vec<String>) -> impl FnOnce(&mut Resource) {
    move |r: &mut Resource| {
        r.kind = ResourceKind::ApiKey;
        r.id = id.map(|i| i.to_string());
        r.grants_permissions = grants;
    }
}

/// Scopes deduplicated, non-empty, at most [`MAX_SCOPES`].
fn scope_list(scopes: Vec<Permission>) -> Result<Vec<Permission>> {
    let mut scopes = scopes;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(ServiceError::field(
            "scopes",
            "invalid_length",
            format!("give 1 to {MAX_SCOPES} permissions"),
        ));
    }
    Ok(scopes)
}

impl Services {
    /// The org and the (undeleted) account a key request is about, with the capability.
    async fn account_access(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ServiceAccountId,
        action: Action,
        grants: Vec<String>,
    ) -> Result<(Org, ServiceAccount, uos_authz::Capability)> {
        let (org, cap) = self
            .inner
            .org_access(tx, ctx, slug, action, account_resource(Some(id), grants))
            .await?;
        let sa = live_account(tx, org.id, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok((org, sa, cap))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn create_api_key(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        account: ServiceAccountId,
        req: NewApiKey,
    ) -> Result<Done<NewApiKeyView>> {
        let name = check_name(&req.name)?;
        // Errors name scopes by their index as sent, so keep that order for them.
        let requested = req.scopes.clone();
        let scopes = scope_list(req.scopes)?;
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let grants = scopes.iter().map(|p| p.as_str().to_string()).collect();
        let (org, sa, cap) = self
            .account_access(uow.tx(), ctx, slug, account, Action::ApiKeyCreate, grants)
            .await?;
        // A key never exceeds its account: every scope must be granted by the account's roles.
        let (_, allowed) =
            expand_roles(&mut LazyRead::over(uow.tx()), sa.org_id, &sa.roles).await?;
        let mut errors: Vec<FieldError> = requested
            .iter()
            .enumerate()
            .filter(|(_, p)| !allowed.contains(p.as_str()))
            .map(|(i, p)| {
                FieldError::new(
                    format!("scopes[{i}]"),
                    "scope_exceeds_roles",
                    format!("the service account's roles do not grant {}", p.as_str()),
                )
            })
            .collect();
        let days = key_lifetime_days(req.expires_in_days, org.api_key_max_days);
        if let Err(e) = &days {
            errors.push(FieldError::from_domain("expires_in_days", e));
        }
        if !errors.is_empty() {
            return Err(ServiceError::Validation(errors));
        }
        let now = uos_domain::now();
        let expires_at = days
            .ok()
            .flatten()
            .map(|d| now + Duration::days(i64::from(d)));
        let (key, secret) = self
            .mint_key(uow.tx(), &sa, name, scopes, expires_at, None, now)
            .await?;
        let view = ApiKeyView::new(&key, &sa.rotation, now);
        uow.record(
            AuditAction::ApiKeyCreated,
            Some(org.id),
            key.id.to_string(),
            serde_json::Value::Null,
            snapshot(&view),
        )
        .await?;
        let done = Done::created(NewApiKeyView { key: view, secret }, Some(key.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Generate and store a new key for `sa` (replacing `replaces`, if any); returns it with
    /// its full text.
    #[allow(clippy::too_many_arguments)]
    async fn mint_key(
        &self,
        tx: &mut dyn Tx,
        sa: &ServiceAccount,
        name: String,
        scopes: Vec<Permission>,
        expires_at: Option<DateTime<Utc>>,
        replaces: Option<ApiKeyId>,
        now: DateTime<Utc>,
    ) -> Result<(ApiKey, String)> {
        let new = uos_authn::generate_api_key();
        let key = ApiKey {
            id: ApiKeyId::new(),
            org_id: sa.org_id,
            service_account_id: sa.id,
            name,
            secret_hash: uos_authn::hash_api_key(&self.inner.machine.api_key_pepper, &new.key),
            prefix: new.prefix,
            scopes,
            created_at: now,
            expires_at,
            revoked_at: None,
            last_used_at: None,
            replaced_by: None,
            replaces,
            overdue_reported_at: None,
            quarantined_at: None,
            quarantine_reason: None,
            version: 1,
        };
        tx.insert_api_key(&key).await?;
        Ok((key, new.key))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_api_keys(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        account: ServiceAccountId,
        page: &PageRequest,
    ) -> Result<Page<ApiKeyView>> {
        let mut r = self.inner.store.read().await?;
        let (_, sa, _cap) = self
            .account_access(&mut *r, ctx, slug, account, Action::ApiKeyList, Vec::new())
            .await?;
        let page = r.list_api_keys(sa.id, page).await?;
        let now = uos_domain::now();
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|k| ApiKeyView::new(k, &sa.rotation, now))
                .collect(),
            next: page.next,
        })
    }

    /// A key of the org and its account (the account may be deleted: its keys stay readable).
    /// With `grants_scopes` the action hands out the key's permissions anew (rotation shows a
    /// new secret with the same scopes), so the policy's no-escalation rule sees them: the
    /// caller must hold every scope itself.
    pub(super) async fn key_access(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ApiKeyId,
        action: Action,
        grants_scopes: bool,
    ) -> Result<(Org, ApiKey, ServiceAccount, uos_authz::Capability)> {
        let org = tx
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        // Read before the policy only to learn the scopes; whether the key exists is told only
        // to callers the policy lets in (an absent key is the same 404 after it).
        let found = tx.get_api_key(org.id, id).await?;
        let grants = match &found {
            Some(k) if grants_scopes => k.scopes.iter().map(|p| p.as_str().to_string()).collect(),
            _ => Vec::new(),
        };
        let cap = self
            .inner
            .authorize_in_org(tx, ctx, &org, action, key_resource(Some(id), grants))
            .await?;
        let key = found.ok_or(ServiceError::NotFound)?;
        let sa = tx
            .get_service_account(org.id, key.service_account_id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok((org, key, sa, cap))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_api_key(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ApiKeyId,
    ) -> Result<Done<ApiKeyView>> {
        let mut r = self.inner.store.read().await?;
        let (_, key, sa, _cap) = self
            .key_access(&mut *r, ctx, slug, id, Action::ApiKeyRead, false)
            .await?;
        let view = ApiKeyView::new(&key, &sa.rotation, uos_domain::now());
        Ok(Done::ok(view, Some(key.version)))
    }

    /// Revoke a key: it fails on every replica within the invalidation delay. Revoking a
    /// revoked key changes nothing and succeeds.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn revoke_api_key(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ApiKeyId,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, before, sa, cap) = self
            .key_access(uow.tx(), ctx, slug, id, Action::ApiKeyRevoke, false)
            .await?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        let mut key = before.clone();
        if key.revoke(now) {
            uow.tx().update_api_key(&key, before.version).await?;
            uow.invalidate(Invalidation::ApiKey(key.prefix.clone()));
            uow.record(
                AuditAction::ApiKeyRevoked,
                Some(org.id),
                key.id.to_string(),
                snapshot(&ApiKeyView::new(&before, &sa.rotation, now)),
                snapshot(&ApiKeyView::new(&key, &sa.rotation, now)),
            )
            .await?;
        }
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Replace a key with a new one (new prefix and secret, same account, name and scopes).
    /// The old key keeps working for `overlap_secs` (the configured default when `None`), so
    /// clients can switch without downtime; then it is refused everywhere.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn rotate_api_key(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ApiKeyId,
        overlap_secs: Option<u64>,
        if_match: Precondition,
    ) -> Result<Done<NewApiKeyView>> {
        let inner = &*self.inner;
        let overlap = overlap_secs.unwrap_or(inner.cfg.api_key_rotation_overlap_secs);
        if overlap > MAX_ROTATION_OVERLAP_SECS {
            return Err(ServiceError::field(
                "overlap_seconds",
                "invalid",
                format!("must be between 0 and {MAX_ROTATION_OVERLAP_SECS}"),
            ));
        }
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, before, sa, cap) = self
            .key_access(uow.tx(), ctx, slug, id, Action::ApiKeyRotate, true)
            .await?;
        check_version(before.version, &if_match)?;
        let now = uos_domain::now();
        if sa.status == ServiceAccountStatus::Deleted {
            return Err(ServiceError::NotFound);
        }
        if before.replaced_by.is_some() || before.refusal(&sa.rotation, now).is_some() {
            return Err(ServiceError::conflict(
                "key_not_active",
                "only an active key that was not rotated yet can be rotated",
            ));
        }
        // The new key lives as long as the old one was meant to, within the org's maximum.
        let lifetime = before.expires_at.map(|t| t - before.created_at);
        let org_max = org.api_key_max_days.map(|d| Duration::days(i64::from(d)));
        let lifetime = match (lifetime, org_max) {
            (Some(l), Some(m)) => Some(l.min(m)),
            (l, m) => l.or(m),
        };
        let (new, secret) = self
            .mint_key(
                uow.tx(),
                &sa,
                before.name.clone(),
                before.scopes.clone(),
                lifetime.map(|l| now + l),
                Some(before.id),
                now,
            )
            .await?;
        let mut old = before.clone();
        let overlap_end = now + Duration::seconds(i64::try_from(overlap).unwrap_or(0));
        old.expires_at = Some(old.expires_at.map_or(overlap_end, |t| t.min(overlap_end)));
        old.replaced_by = Some(new.id);
        old.version += 1;
        uow.tx().update_api_key(&old, before.version).await?;
        uow.invalidate(Invalidation::ApiKey(old.prefix.clone()));
        let view = ApiKeyView::new(&new, &sa.rotation, now);
        uow.record(
            AuditAction::ApiKeyRotated,
            Some(org.id),
            old.id.to_string(),
            snapshot(&ApiKeyView::new(&before, &sa.rotation, now)),
            serde_json::json!({"replaced_by": new.id, "old_key_expires_at": old.expires_at, "new_key": view}),
        )
        .await?;
        let done = Done::created(NewApiKeyView { key: view, secret }, Some(new.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }

    /// Keys of the org past their account's maximum age, oldest first.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_overdue_api_keys(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        page: &PageRequest,
    ) -> Result<Page<ApiKeyView>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let (org, _cap) = inner
            .org_access(
                &mut *r,
                ctx,
                slug,
                Action::ApiKeyList,
                key_resource(None, Vec::new()),
            )
            .await?;
        let now = uos_domain::now();
        let page = r.list_overdue_api_keys(org.id, now, page).await?;
        // A page's keys mostly belong to a few accounts: read each account once.
        let mut policies: HashMap<ServiceAccountId, RotationPolicy> = HashMap::new();
        let mut items = Vec::with_capacity(page.items.len());
        for k in &page.items {
            let id = k.service_account_id;
            let policy = match policies.get(&id) {
                Some(p) => *p,
                None => {
                    let p = r
                        .get_service_account(org.id, id)
                        .await?
                        .map(|sa| sa.rotation)
                        .unwrap_or_default();
                    *policies.entry(id).or_insert(p)
                }
            };
            items.push(ApiKeyView::new(k, &policy, now));
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }
}
