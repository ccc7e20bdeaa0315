//! Budget overrides: more spend on one budget for a while, active once two holders of
//! `billing:approve` other than the requester approve. While active, the override's
//! `extra_cents` raise the budget's effective limit (the thresholds apply to the raised limit).

use chrono::{DateTime, Duration, Utc};
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::budget::MAX_LIMIT_CENTS;
use uos_domain::{
    Approval, ApprovalKind, ApprovalRequest, ApprovalStatus, BudgetKey, BudgetScope, Org, OrgSlug,
};
use uos_store::{Page, PageRequest, ReadTx};

use super::{answer_request, approval_window, check_reason, take_step, view, ApprovalStep};
use crate::budgets::manage::{budget_key, BudgetTarget};
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::ApprovalView;
use crate::{Ctx, Done, FieldError, Result, ServiceError, Services};

/// The longest an override may last once active: a month. Anything longer is a new budget.
pub const MAX_OVERRIDE_HOURS: i64 = 720;

/// An override as asked for.
#[derive(Clone, Debug)]
pub struct NewOverride {
    pub reason: String,
    pub extra_cents: i64,
    pub expires_in_hours: i64,
    /// The budget raised; the org's own when `None`.
    pub scope: Option<BudgetTarget>,
}

impl Services {
    /// Ask for an override of a budget of the org; it waits for two approvers.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn request_budget_override(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        new: NewOverride,
    ) -> Result<Done<ApprovalView>> {
        let mut bad = Vec::new();
        check_reason(&new.reason, &mut bad);
        if !(1..=MAX_LIMIT_CENTS).contains(&new.extra_cents) {
            bad.push(FieldError::new(
                "extra_cents",
                "invalid",
                format!("must be between 1 and {MAX_LIMIT_CENTS}"),
            ));
        }
        if !(1..=MAX_OVERRIDE_HOURS).contains(&new.expires_in_hours) {
            bad.push(FieldError::new(
                "expires_in_hours",
                "invalid",
                format!("must be between 1 and {MAX_OVERRIDE_HOURS}"),
            ));
        }
        if !bad.is_empty() {
            return Err(ServiceError::Validation(bad));
        }
        let inner = &*self.inner;
        let me = ctx.caller.user().ok_or(ServiceError::Forbidden {
            rule: "user_required".into(),
        })?;
        let target = new.scope.unwrap_or(BudgetTarget::Org);
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, cap) = override_access(
            uow.tx(),
            ctx,
            inner,
            slug,
            Action::BudgetOverrideRequest,
            None,
        )
        .await?;
        let key = budget_key(&org, target);
        // An override raises a budget; with no budget there is nothing to raise.
        uow.tx()
            .get_budget(&key)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let now = uos_domain::now();
        let approval = Approval::request(
            ApprovalRequest {
                kind: ApprovalKind::BudgetOverride,
                org_id: Some(org.id),
                requested_by: me.user.id,
                subject_id: Some(key.scope_id),
                reason: new.reason,
                detail: serde_json::json!({
                    "scope": {"type": key.scope.as_str(), "id": key.scope_id},
                    "extra_cents": new.extra_cents,
                }),
                pending_for: approval_window(inner),
                grant_for: Duration::hours(new.expires_in_hours),
            },
            now,
        );
        answer_request(inner, uow, &cap, &approval).await
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_budget_overrides(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        status: Option<ApprovalStatus>,
        page: &PageRequest,
    ) -> Result<Page<ApprovalView>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let (org, _cap) =
            override_access(&mut *r, ctx, inner, slug, Action::BudgetOverrideList, None).await?;
        let now = uos_domain::now();
        let page = r
            .list_approvals(
                ApprovalKind::BudgetOverride,
                Some(org.id),
                status,
                now,
                page,
            )
            .await?;
        Ok(Page {
            items: page.items.iter().map(|a| view(a, now)).collect(),
            next: page.next,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_budget_override(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: uuid::Uuid,
    ) -> Result<Done<ApprovalView>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let (org, _cap) = override_access(
            &mut *r,
            ctx,
            inner,
            slug,
            Action::BudgetOverrideList,
            Some(id),
        )
        .await?;
        let a = org_override(&mut *r, &org, id).await?;
        Ok(Done::ok(view(&a, uos_domain::now()), Some(a.version)))
    }

    /// Approve, reject or revoke an override (holders of `billing:approve`).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn step_budget_override(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: uuid::Uuid,
        step: ApprovalStep,
    ) -> Result<Done<ApprovalView>> {
        let inner = &*self.inner;
        let me = ctx.caller.user().ok_or(ServiceError::Forbidden {
            rule: "user_required".into(),
        })?;
        let action = match step {
            ApprovalStep::Approve | ApprovalStep::Reject => Action::BudgetOverrideApprove,
            ApprovalStep::Revoke => Action::BudgetOverrideRevoke,
        };
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, cap) = override_access(uow.tx(), ctx, inner, slug, action, Some(id)).await?;
        let current = org_override(uow.tx(), &org, id).await?;
        let now = uos_domain::now();
        let stepped = take_step(inner, &mut uow, current, me.user.id, step, now).await?;
        let key = override_key(&stepped.after);
        let done = Done::ok(view(&stepped.after, now), Some(stepped.after.version));
        uow.commit(&cap, &done).await?;
        // This replica's decisions see the new limit at once; others within
        // `service.budget_cache_ms`.
        inner.budgets.forget(key);
        Ok(done)
    }
}

/// The org of `slug` and a capability for `action` on its overrides (on override `id`).
async fn override_access(
    tx: &mut dyn ReadTx,
    ctx: &Ctx,
    inner: &crate::Inner,
    slug: &OrgSlug,
    action: Action,
    id: Option<uuid::Uuid>,
) -> Result<(Org, Capability)> {
    inner
        .org_access(tx, ctx, slug, action, |r: &mut Resource| {
            r.kind = ResourceKind::BudgetOverride;
            r.id = id.map(|i| i.to_string());
        })
        .await
}

/// Override `id` of `org`; another org's or another kind's is not found.
async fn org_override(tx: &mut dyn ReadTx, org: &Org, id: uuid::Uuid) -> Result<Approval> {
    tx.get_approval(id)
        .await?
        .filter(|a| a.kind == ApprovalKind::BudgetOverride && a.org_id == Some(org.id))
        .ok_or(ServiceError::NotFound)
}

/// The budget an override raises.
fn override_key(a: &Approval) -> Option<BudgetKey> {
    let scope = a.detail.get("scope")?;
    Some(BudgetKey {
        org_id: a.org_id?,
        scope: BudgetScope::parse(scope.get("type")?.as_str()?).ok()?,
        scope_id: uuid::Uuid::parse_str(scope.get("id")?.as_str()?).ok()?,
    })
}

/// The extra spend active overrides allow `key` at `now`.
pub(crate) async fn extra_cents(
    tx: &mut dyn ReadTx,
    key: &BudgetKey,
    now: DateTime<Utc>,
) -> Result<i64> {
    let active = tx
        .active_approvals(ApprovalKind::BudgetOverride, Some(key.org_id), now)
        .await?;
    Ok(active
        .iter()
        .filter(|a| override_key(a).as_ref() == Some(key))
        .filter_map(|a| a.detail.get("extra_cents")?.as_i64())
        .fold(0i64, |sum, c| sum.saturating_add(c))
        .min(MAX_LIMIT_CENTS))
}
