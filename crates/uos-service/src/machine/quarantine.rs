//! API-key quarantine: a key whose request rate tripped the spike detector
//! ([`crate::machine::surge`]) is marked in the store, audited (`api_key.quarantined`),
//! announced by webhook (`api_key.quarantined`) and evicted from every replica's key cache, in
//! one unit of work; from then on every replica refuses it with `api_key_quarantined` until an
//! admin releases it (`api_key.released`).

use crate::kernel::precondition::{check_version, Precondition};
use crate::kernel::uow::{snapshot, UnitOfWork};
use crate::kernel::views::ApiKeyView;
use crate::machine::cache::KeyEntry;
use crate::machine::surge::Trip;
use crate::{Caller, Ctx, Done, Result, ServiceError, Services};
use std::sync::Arc;
use uos_audit::AuditAction;
use uos_authz::Action;
use uos_domain::{ApiKeyId, OrgSlug};
use uos_shared::Invalidation;

/// The webhook event type of a quarantine.
pub const QUARANTINED_EVENT: &str = "api_key.quarantined";

impl Services {
    /// Record the trip of `entry`'s key off the request path: the tripping request goes on
    /// at once (it is allowed), and the write takes a connection of its own rather than one
    /// the request would wait for. A trip that cannot be recorded re-arms the detector.
    pub(crate) fn spawn_quarantine(&self, ctx: Ctx, entry: Arc<KeyEntry>, trip: Trip) {
        let svc = self.clone();
        // The detector acts, not the request's caller; the request id ties the event to the
        // request that tripped it.
        let ctx = Ctx {
            caller: Caller::System,
            idem: None,
            ..ctx
        };
        tokio::spawn(async move {
            let key = &entry.key;
            match svc.record_quarantine(&ctx, &entry, trip).await {
                Ok(true) => tracing::warn!(
                    api_key = %key.id, prefix = %key.prefix, org = %key.org_id,
                    observed = trip.observed, baseline = trip.baseline,
                    "API key quarantined: its request rate spiked"
                ),
                // Another replica recorded it first; its invalidation reaches this one.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, api_key = %key.id, "could not quarantine an API key; detection re-armed");
                    if let Some(rate) = &entry.rate {
                        rate.rearm();
                    }
                }
            }
        });
    }

    /// Mark the key quarantined, audit it, queue the webhook and evict the key everywhere;
    /// `false` if it already was quarantined (or is gone).
    async fn record_quarantine(&self, ctx: &Ctx, entry: &KeyEntry, trip: Trip) -> Result<bool> {
        let inner = &*self.inner;
        let Some(surge) = &inner.machine.surge else {
            return Ok(false);
        };
        let q = &inner.cfg.quarantine;
        let reason = format!(
            "{} requests in one {}-second window on one replica, at least {}x its baseline of \
             {:.1} and at least {}",
            trip.observed,
            surge.window_secs(),
            surge.multiple(),
            trip.baseline,
            q.min_requests,
        );
        let now = uos_domain::now();
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let Some(key) = uow
            .tx()
            .quarantine_api_key(entry.key.id, now, &reason)
            .await?
        else {
            return Ok(false);
        };
        uow.invalidate(Invalidation::ApiKey(key.prefix.clone()));
        let view = ApiKeyView::new(&key, &entry.caller.account.rotation, now);
        let figures = serde_json::json!({
            "observed_requests": trip.observed,
            "window_secs": surge.window_secs(),
            "baseline": trip.baseline,
            "multiple": surge.multiple(),
            "min_requests": q.min_requests,
            "history_windows": trip.history_windows,
        });
        let mut after = figures.clone();
        after["key"] = snapshot(&view);
        uow.record(
            AuditAction::ApiKeyQuarantined,
            Some(key.org_id),
            key.id.to_string(),
            serde_json::Value::Null,
            after,
        )
        .await?;
        let mut data = figures;
        data["api_key"] = snapshot(&view);
        crate::notify::enqueue(inner, &mut uow, Some(key.org_id), QUARANTINED_EVENT, data).await?;
        // Not a caller's request: the service takes the credential away on its own, within
        // the key's org only.
        let cap = inner
            .authz
            .system_task_in_org(Action::ApiKeyRevoke, key.org_id.0);
        uow.commit_unanswered(&cap).await?;
        Ok(true)
    }

    /// Lift the quarantine of a key: it works again on every replica within the invalidation
    /// delay, and each replica's detector starts the key over (no history, armed). A key that
    /// is not quarantined is 409 `key_not_quarantined`.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn release_api_key(
        &self,
        ctx: &Ctx,
        slug: &OrgSlug,
        id: ApiKeyId,
        if_match: Precondition,
    ) -> Result<Done<ApiKeyView>> {
        let inner = &*self.inner;
        let mut uow = UnitOfWork::begin(inner, ctx).await?;
        let (org, before, sa, cap) = self
            .key_access(uow.tx(), ctx, slug, id, Action::ApiKeyRelease, false)
            .await?;
        check_version(before.version, &if_match)?;
        let mut key = before.clone();
        if !key.release() {
            return Err(ServiceError::conflict(
                "key_not_quarantined",
                "the API key is not quarantined",
            ));
        }
        uow.tx().update_api_key(&key, before.version).await?;
        uow.invalidate(Invalidation::ApiKey(key.prefix.clone()));
        let now = uos_domain::now();
        let view = ApiKeyView::new(&key, &sa.rotation, now);
        uow.record(
            AuditAction::ApiKeyReleased,
            Some(org.id),
            key.id.to_string(),
            snapshot(&ApiKeyView::new(&before, &sa.rotation, now)),
            snapshot(&view),
        )
        .await?;
        let done = Done::ok(view, Some(key.version));
        uow.commit(&cap, &done).await?;
        Ok(done)
    }
}
