//! The audit chains: their heads, appends that move one, the filtered listing in storage order,
//! and signed checkpoints.

use crate::error::bad_cursor;
use crate::rows::{self, get, overfetch, uuid_cursor, AUDIT_COLS};
use crate::sql::{query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_store::{
    AuditFilter, AuditHead, AuditReads, AuditRepo, AuditRow, CheckpointRow, ListedAudit, Page,
    PageRequest, Result, StoreError,
};

/// The `prev_hash` of a chain's first event: 64 zeros (`uos_audit::GENESIS_HASH`).
const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> AuditReads for SqlTx<D, M> {
    async fn audit_head(&mut self, chain: &str) -> Result<AuditHead> {
        let row = query::<D>("select chain, seq, hash from audit_chain where chain = $1")
            .bind(chain)
            .fetch_optional(self.conn())
            .await?;
        match row {
            Some(row) => head(&row),
            None => Ok(genesis(chain)),
        }
    }

    async fn audit_heads(&mut self) -> Result<Vec<AuditHead>> {
        query::<D>("select chain, seq, hash from audit_chain order by chain")
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(head)
            .collect()
    }

    async fn list_audit(
        &mut self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<ListedAudit>> {
        let after = page
            .after
            .as_deref()
            .map(|s| s.parse::<i64>().map_err(|_| bad_cursor()))
            .transpose()?;
        let mut q = QueryBuilder::<D>::new(format!(
            "select position, {AUDIT_COLS} from audit_event where true"
        ));
        if let Some(org) = filter.org {
            q.push(" and org_id = ").push_bind(org.0);
        }
        if let Some(actor) = &filter.actor {
            q.push(" and actor_id = ").push_bind(actor.clone());
        }
        if let Some(action) = &filter.action {
            q.push(" and action = ").push_bind(action.clone());
        }
        if let Some(target) = &filter.target {
            q.push(" and target_id = ").push_bind(target.clone());
        }
        if let Some(since) = filter.since {
            q.push(" and occurred_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" and occurred_at < ").push_bind(until);
        }
        if let Some(after) = after {
            q.push(" and position > ").push_bind(after);
        }
        q.push(" order by position limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let events = found
            .iter()
            .map(|r| Ok((get::<_, i64>(r, "position")?, rows::listed_audit(r)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(
            Page::from_overfetch(events, page.limit, |(position, _)| position.to_string())
                .map(|(_, row)| row),
        )
    }

    async fn list_checkpoints(
        &mut self,
        since: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<Page<CheckpointRow>> {
        let after = uuid_cursor(page.after.as_deref())?;
        let mut q = QueryBuilder::<D>::new(
            "select checkpoint_id, issued_at, payload from audit_checkpoint where true",
        );
        if let Some(since) = since {
            q.push(" and issued_at >= ").push_bind(since);
        }
        if let Some(after) = after {
            q.push(" and checkpoint_id > ").push_bind(after);
        }
        q.push(" order by checkpoint_id limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let items = found
            .iter()
            .map(rows::checkpoint)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |c| {
            c.id.to_string()
        }))
    }

    async fn latest_checkpoint_before(
        &mut self,
        at: DateTime<Utc>,
    ) -> Result<Option<CheckpointRow>> {
        query::<D>(
            "select checkpoint_id, issued_at, payload from audit_checkpoint \
             where issued_at <= $1 order by checkpoint_id desc limit 1",
        )
        .bind(at)
        .fetch_optional(self.conn())
        .await?
        .as_ref()
        .map(rows::checkpoint)
        .transpose()
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<CheckpointRow>> {
        query::<D>(
            "select checkpoint_id, issued_at, payload from audit_checkpoint \
             order by checkpoint_id desc limit 1",
        )
        .fetch_optional(self.conn())
        .await?
        .as_ref()
        .map(rows::checkpoint)
        .transpose()
    }
}

#[async_trait]
impl<D: Dialect> AuditRepo for SqlTx<D> {
    async fn lock_audit_head(&mut self, chain: &str) -> Result<AuditHead> {
        // Creating the genesis head and locking an existing one in one statement: the no-op
        // update takes the row lock (PostgreSQL), so concurrent appenders to this chain queue
        // here and each chains from the previous one.
        let row = query::<D>(
            "insert into audit_chain (chain, seq, hash) values ($1, 0, $2) \
             on conflict (chain) do update set chain = excluded.chain \
             returning chain, seq, hash",
        )
        .bind(chain)
        .bind(GENESIS_HASH)
        .fetch_optional(self.conn())
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("audit chain {chain}: no head")))?;
        head(&row)
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&mut self, prev: &AuditHead, row: &AuditRow) -> Result<()> {
        if prev.chain != row.chain {
            return Err(StoreError::VersionConflict);
        }
        if prev.seq == 0 {
            start_chain(self, &row.chain).await?;
        }
        D::append_audit(self, prev, row).await
    }

    async fn insert_checkpoint(&mut self, row: &CheckpointRow) -> Result<()> {
        query::<D>(
            "insert into audit_checkpoint (checkpoint_id, issued_at, payload) \
             values ($1, $2, $3)",
        )
        .bind(row.id)
        .bind(row.issued_at)
        .bind(row.payload.to_string())
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

fn head<D: Dialect>(row: &crate::sql::Row<D>) -> Result<AuditHead> {
    Ok(AuditHead {
        chain: get(row, "chain")?,
        seq: get(row, "seq")?,
        hash: get(row, "hash")?,
    })
}

fn genesis(chain: &str) -> AuditHead {
    AuditHead {
        chain: chain.to_owned(),
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    }
}

/// The genesis head of `chain`, if it has none yet: the first append then moves it like any
/// other (and of two racing first appends, one finds it moved).
async fn start_chain<D: Dialect>(tx: &mut SqlTx<D>, chain: &str) -> Result<()> {
    query::<D>(
        "insert into audit_chain (chain, seq, hash) values ($1, 0, $2) \
         on conflict (chain) do nothing",
    )
    .bind(chain)
    .bind(GENESIS_HASH)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The portable append: move the chain's head first, and only from the link `row` extends (a
/// writer that did not chain from the current head gets `VersionConflict` instead of forking
/// the chain), then insert the event.
pub(crate) async fn append_in_steps<D: Dialect>(
    tx: &mut SqlTx<D>,
    prev: &AuditHead,
    row: &AuditRow,
) -> Result<()> {
    let moved = query::<D>(
        "update audit_chain set seq = $1, hash = $2 \
         where chain = $5 and seq = $1 - 1 and seq = $3 and hash = $4",
    )
    .bind(row.seq)
    .bind(&row.hash)
    .bind(prev.seq)
    .bind(&prev.hash)
    .bind(&row.chain)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::VersionConflict);
    }
    query::<D>(
        "insert into audit_event (chain, seq, audit_event_id, occurred_at, org_id, actor_id, \
         action, target_id, hash, payload, trace_parent) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.chain)
    .bind(row.seq)
    .bind(row.id)
    .bind(row.occurred_at)
    .bind(row.org_id.map(|o| o.0))
    .bind(&row.actor_id)
    .bind(&row.action)
    .bind(&row.target_id)
    .bind(&row.hash)
    .bind(row.payload.to_string())
    .bind(&row.trace_parent)
    .execute(tx.conn())
    .await?;
    Ok(())
}
