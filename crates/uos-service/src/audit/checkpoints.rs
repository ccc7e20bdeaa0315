//! Signed checkpoints of every audit chain head: issued by each replica after a number of
//! events, after a time and at shutdown, and read by platform auditors, whose verifier then
//! detects a truncated tail that no chain shows by itself.

use super::whole_trail;
use crate::{Ctx, Result, ServiceError, Services};
use chrono::{DateTime, Utc};
use uos_audit::{sign_checkpoint, ChainHead, Checkpoint};
use uos_authz::Action;
use uos_keys::KeyPurpose;
use uos_store::{CheckpointRow, Page, PageRequest};

impl Services {
    /// Signs and stores a checkpoint of every chain head, unless none moved since the last
    /// checkpoint (a quiet system issues none). Replicas issue on their own; two checkpoints of
    /// the same heads from two replicas are both true statements.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn issue_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let inner = &*self.inner;
        let (heads, latest) = {
            let mut r = inner.store.read().await?;
            (r.audit_heads().await?, r.latest_checkpoint().await?)
        };
        let mut heads: Vec<ChainHead> = heads
            .into_iter()
            .map(|h| ChainHead {
                chain: h.chain,
                seq: h.seq,
                hash: h.hash,
            })
            .filter(|h| h.seq > 0)
            .collect();
        // The order checkpoints keep, whatever the database's collation.
        heads.sort_by(|a, b| a.chain.cmp(&b.chain));
        let unchanged = latest
            .and_then(|row| serde_json::from_value::<Checkpoint>(row.payload).ok())
            .is_some_and(|last| last.heads == heads);
        if heads.is_empty() || unchanged {
            return Ok(None);
        }
        let key = inner.keys.signing_key(KeyPurpose::Audit);
        let checkpoint = sign_checkpoint(uos_domain::new_id(), uos_domain::now(), heads, &key);
        let row = CheckpointRow {
            id: checkpoint.checkpoint_id,
            issued_at: checkpoint.issued_at,
            payload: serde_json::to_value(&checkpoint)
                .map_err(|e| ServiceError::Internal(format!("checkpoint encode: {e}")))?,
        };
        let mut tx = inner.store.begin().await?;
        tx.insert_checkpoint(&row).await?;
        tx.commit().await?;
        Ok(Some(checkpoint))
    }

    /// Checkpoints in the order they were issued, from `since` on. They name every org's chain,
    /// so only platform auditors may read them.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn list_checkpoints(
        &self,
        ctx: &Ctx,
        since: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<Page<serde_json::Value>> {
        let inner = &*self.inner;
        let _cap = inner.authorize(ctx, Action::AuditRead, whole_trail())?;
        let mut r = inner.store.read().await?;
        let page = r.list_checkpoints(since, page).await?;
        Ok(page.map(|row| row.payload))
    }

    /// Issues checkpoints every `audit_checkpoint_secs` and whenever this replica committed
    /// another `audit_checkpoint_every_events` events, until the process ends. The first is
    /// issued at once, which closes the legacy chain of an upgraded store.
    pub(crate) fn spawn_checkpoint_issuer(&self) {
        let svc = self.clone();
        let every = std::time::Duration::from_secs(self.inner.cfg.audit_checkpoint_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = svc.inner.chain.checkpoint_due.notified() => {}
                }
                if let Err(e) = svc.issue_checkpoint().await {
                    tracing::warn!(error = %e, "audit checkpoint not issued; retrying");
                }
            }
        });
    }
}
