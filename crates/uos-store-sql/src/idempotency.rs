//! Idempotency keys: claim (insert or report the existing use), complete and release.

use crate::rows::{self, IDEMPOTENCY_COLS};
use crate::sql::{json, query};
use crate::tx::SqlTx;
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_store::{IdemClaim, IdempotencyRecord, IdempotencyRepo, Result, StoreError};

/// Insert, look, maybe replace: each round either decides or observed a concurrent change
/// (a release or a replacement between our statements), so a few rounds always suffice.
const CLAIM_ROUNDS: usize = 4;

#[async_trait]
impl<D: Dialect> IdempotencyRepo for SqlTx<D> {
    #[tracing::instrument(skip_all)]
    async fn claim_idempotency(
        &mut self,
        rec: &IdempotencyRecord,
        stale_before: DateTime<Utc>,
    ) -> Result<IdemClaim> {
        let status = rec.status.map(i32::from);
        let response = rec.response.as_ref().map(json).transpose()?;
        for _ in 0..CLAIM_ROUNDS {
            let inserted = query::<D>(
                "insert into idempotency (scope, idem_key, request_hash, status, response, \
                 created_at) values ($1, $2, $3, $4, $5, $6) \
                 on conflict (scope, idem_key) do nothing",
            )
            .bind(&rec.scope)
            .bind(&rec.key)
            .bind(&rec.request_hash)
            .bind(status)
            .bind(response.clone())
            .bind(rec.created_at)
            .execute(self.conn())
            .await?;
            if inserted.rows_affected() > 0 {
                return Ok(IdemClaim::Claimed);
            }
            let sql = format!(
                "select {IDEMPOTENCY_COLS} from idempotency where scope = $1 and idem_key = $2"
            );
            let row = query::<D>(&sql)
                .bind(&rec.scope)
                .bind(&rec.key)
                .fetch_optional(self.conn())
                .await?;
            let Some(existing) = row.as_ref().map(rows::idempotency).transpose()? else {
                continue; // released in between: insert again
            };
            if existing.created_at >= stale_before {
                return Ok(IdemClaim::Existing(existing));
            }
            // Stale: take it over, but only if it is still the stale row we looked at.
            let replaced = query::<D>(
                "update idempotency set request_hash = $3, status = $4, response = $5, \
                 created_at = $6 where scope = $1 and idem_key = $2 and created_at < $7",
            )
            .bind(&rec.scope)
            .bind(&rec.key)
            .bind(&rec.request_hash)
            .bind(status)
            .bind(response.clone())
            .bind(rec.created_at)
            .bind(stale_before)
            .execute(self.conn())
            .await?;
            if replaced.rows_affected() > 0 {
                return Ok(IdemClaim::Claimed);
            }
        }
        Err(StoreError::Backend(
            "idempotency claim did not settle under contention".into(),
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn complete_idempotency(
        &mut self,
        scope: &str,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<()> {
        let done = query::<D>(
            "update idempotency set status = $3, response = $4 where scope = $1 and idem_key = $2",
        )
        .bind(scope)
        .bind(key)
        .bind(i32::from(status))
        .bind(json(body)?)
        .execute(self.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn release_idempotency(&mut self, scope: &str, key: &str) -> Result<()> {
        // Only an in-flight claim is released: a completed response stays replayable.
        query::<D>("delete from idempotency where scope = $1 and idem_key = $2 and status is null")
            .bind(scope)
            .bind(key)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
