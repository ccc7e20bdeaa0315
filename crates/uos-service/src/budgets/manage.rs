//! Setting, reading and removing budgets: one per org, service account and member.

use uos_audit::AuditAction;
use uos_authz::{Action, Capability, Resource, ResourceKind};
use uos_domain::{
    Budget, BudgetKey, BudgetScope, BudgetSettings, Org, OrgSlug, Period, ServiceAccountId, UserId,
};
use uos_store::ReadTx;

use super::book::BudgetStatus;
use crate::kernel::precondition::check_version;
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::BudgetView;
use crate::machine::service_accounts::live_account;
use crate::{Ctx, Done, FieldError, Precondition, Result, ServiceError, Services};

/// Whose budget a request is about, inside the org of its path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetTarget {
    Org,
    ServiceAccount(ServiceAccountId),
    Member(UserId),
}

/// A budget's settings as asked for; checked by the use case.
#[derive(Clone, Copy, Debug)]
pub struct NewBudget {
    pub period: Period,
    pub limit_cents: i64,
    pub warn_percent: Option<i32>,
    pub block_percent: Option<i32>,
}

impl Services {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn get_budget(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        target: BudgetTarget,
    ) -> Result<Done<BudgetView>> {
        let inner = &*self.inner;
        let mut r = inner.store.read().await?;
        let (key, _cap) = self
            .budget_access(&mut *r, ctx, slug, target, Action::BudgetRead)
            .await?;
        let budget = r.get_budget(&key).await?.ok_or(ServiceError::NotFound)?;
        let version = budget.version;
        let status = BudgetStatus::read(&mut *r, budget, uos_domain::now()).await?;
        Ok(Done::ok(status.view(), Some(version)))
    }

    /// Set the budget of `target`: created when it has none (201), replaced otherwise (200).
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn put_budget(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        target: BudgetTarget,
        new: NewBudget,
        if_match: Precondition,
    ) -> Result<Done<BudgetView>> {
        let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
        let (cap, done, key) = self
            .put_budget_in(&mut uow, slug, target, new, if_match)
            .await?;
        uow.commit(&cap, &done).await?;
        self.inner.budgets.forget([key]);
        Ok(done)
    }

    pub(crate) async fn put_budget_in(
        &self,
        uow: &mut UnitOfWork<'_>,
        slug: &OrgSlug,
        target: BudgetTarget,
        new: NewBudget,
        if_match: Precondition,
    ) -> Result<(Capability, Done<BudgetView>, BudgetKey)> {
        let ctx = uow.ctx();
        let settings = BudgetSettings::check(
            new.period,
            new.limit_cents,
            new.warn_percent,
            new.block_percent,
        )
        .map_err(|bad| {
            ServiceError::Validation(
                bad.into_iter()
                    .map(|(field, msg)| FieldError::new(field, "invalid", msg))
                    .collect(),
            )
        })?;
        let (key, cap) = self
            .budget_access(uow.tx(), ctx, slug, target, Action::BudgetWrite)
            .await?;
        if target == BudgetTarget::Org {
            self.inner
                .refuse_if_declared(uow.tx(), ctx, key.org_id)
                .await?;
        }
        let now = uos_domain::now();
        let current = uow.tx().get_budget(&key).await?;
        let (before, budget, status) = match current {
            Some(old) => {
                check_version(old.version, &if_match)?;
                let next = Budget {
                    period: settings.period,
                    limit_cents: settings.limit_cents,
                    warn_percent: settings.warn_percent,
                    block_percent: settings.block_percent,
                    updated_at: now,
                    version: old.version + 1,
                    ..old.clone()
                };
                uow.tx().update_budget(&next, old.version).await?;
                (budget_snapshot(&old), next, 200)
            }
            None => {
                // `If-Match` names a version; a budget that does not exist has none.
                if if_match != Precondition::None {
                    return Err(ServiceError::PreconditionFailed);
                }
                let budget = Budget {
                    key,
                    period: settings.period,
                    limit_cents: settings.limit_cents,
                    warn_percent: settings.warn_percent,
                    block_percent: settings.block_percent,
                    created_at: now,
                    updated_at: now,
                    version: 1,
                };
                uow.tx().insert_budget(&budget).await?;
                (serde_json::Value::Null, budget, 201)
            }
        };
        uow.record(
            AuditAction::BudgetSet,
            Some(key.org_id),
            target_id(&key),
            before,
            budget_snapshot(&budget),
        )
        .await?;
        let version = budget.version;
        let view = BudgetStatus::read(uow.tx(), budget, now).await?.view();
        let done = Done {
            status,
            body: Some(view),
            version: Some(version),
        };
        Ok((cap, done, key))
    }

    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn delete_budget(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        target: BudgetTarget,
        if_match: Precondition,
    ) -> Result<Done<()>> {
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (key, cap) = self
            .budget_access(uow.tx(), ctx, slug, target, Action::BudgetWrite)
            .await?;
        if target == BudgetTarget::Org {
            self.inner
                .refuse_if_declared(uow.tx(), ctx, key.org_id)
                .await?;
        }
        let old = uow
            .tx()
            .get_budget(&key)
            .await?
            .ok_or(ServiceError::NotFound)?;
        check_version(old.version, &if_match)?;
        uow.tx().delete_budget(&key).await?;
        uow.record(
            AuditAction::BudgetDeleted,
            Some(key.org_id),
            target_id(&key),
            budget_snapshot(&old),
            serde_json::Value::Null,
        )
        .await?;
        let done = Done::no_content();
        uow.commit(&cap, &done).await?;
        inner.budgets.forget([key]);
        Ok(done)
    }

    /// The budget key of `target` in the org of `slug`, and the capability for `action` on
    /// it. A service account or member the org does not have is not found, like an org the
    /// caller may not see.
    async fn budget_access(
        &self,
        tx: &mut dyn ReadTx,
        ctx: &Ctx,
        slug: &OrgSlug,
        target: BudgetTarget,
        action: Action,
    ) -> Result<(BudgetKey, Capability)> {
        let org = tx
            .get_org_by_slug(slug)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let key = budget_key(&org, target);
        let cap = self
            .inner
            .authorize_in_org(tx, ctx, &org, action, |r: &mut Resource| {
                r.kind = ResourceKind::Budget;
                r.id = Some(target_id(&key));
            })
            .await?;
        let exists = match target {
            BudgetTarget::Org => true,
            BudgetTarget::ServiceAccount(id) => live_account(tx, org.id, id).await?.is_some(),
            BudgetTarget::Member(user) => tx.get_membership(org.id, user).await?.is_some(),
        };
        if !exists {
            return Err(ServiceError::NotFound);
        }
        Ok((key, cap))
    }
}

pub(crate) fn budget_key(org: &Org, target: BudgetTarget) -> BudgetKey {
    let (scope, scope_id) = match target {
        BudgetTarget::Org => (BudgetScope::Org, org.id.0),
        BudgetTarget::ServiceAccount(id) => (BudgetScope::ServiceAccount, id.0),
        BudgetTarget::Member(user) => (BudgetScope::Member, user.0),
    };
    BudgetKey {
        org_id: org.id,
        scope,
        scope_id,
    }
}

/// A budget's audit target id: `<scope>:<id>`.
pub(crate) fn target_id(key: &BudgetKey) -> String {
    format!("{}:{}", key.scope, key.scope_id)
}

fn budget_snapshot(b: &Budget) -> serde_json::Value {
    snapshot(&serde_json::json!({
        "period": b.period.as_str(),
        "limit_cents": b.limit_cents,
        "warn_percent": b.warn_percent,
        "block_percent": b.block_percent,
        "version": b.version,
    }))
}
