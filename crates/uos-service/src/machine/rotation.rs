//! The rotation policy at work: keys past their account's maximum age are reported once each
//! (an audit event), counted for the metric, and listed per org. Refusing them after the
//! grace period happens at verification time (see `ApiKey::refusal`), so it needs no sweep.

use crate::kernel::uow::UnitOfWork;
use crate::{Ctx, Result, Services};
use std::sync::atomic::Ordering;
use uos_audit::AuditAction;
use uos_authz::Action;

/// Keys reported per sweep and transaction; a backlog is worked off over several sweeps.
const SWEEP_BATCH: u32 = 500;

impl Services {
    /// Report newly overdue keys (one `api_key.rotation_overdue` event each, claimed atomically
    /// so replicas sweeping at once never report a key twice), refresh the overdue count, and
    /// forget revoked client tokens that have expired anyway. Returns how many were reported.
    pub async fn sweep_api_keys(&self) -> Result<usize> {
        let inner = &*self.inner;
        let now = uos_domain::now();
        let ctx = Ctx::system("rotation-sweep");
        let cap = inner.authz.system_task(Action::ApiKeyRead);
        let mut uow = UnitOfWork::begin(inner, &ctx).await?;
        let claimed = uow.tx().claim_overdue_api_keys(now, SWEEP_BATCH).await?;
        for key in &claimed {
            uow.record(
                AuditAction::ApiKeyRotationOverdue,
                Some(key.org_id),
                key.id.to_string(),
                serde_json::Value::Null,
                serde_json::json!({
                    "service_account_id": key.service_account_id,
                    "prefix": key.prefix,
                    "created_at": key.created_at,
                }),
            )
            .await?;
        }
        uow.tx().purge_revoked_access_tokens(now).await?;
        uow.commit_unanswered(&cap).await?;
        let overdue = inner
            .store
            .read()
            .await?
            .count_overdue_api_keys(now)
            .await?;
        inner.machine.overdue_keys.store(overdue, Ordering::Relaxed);
        Ok(claimed.len())
    }

    /// API keys past their account's maximum age at the last sweep (the metric's value).
    pub fn overdue_api_keys(&self) -> i64 {
        self.inner.machine.overdue_keys.load(Ordering::Relaxed)
    }
}
