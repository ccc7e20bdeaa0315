//! The audit chain: its head, appends that move it, and the filtered, seq-paged listing.

use crate::error::bad_cursor;
use crate::rows::{self, get, overfetch, AUDIT_COLS};
use crate::sql::{query, QueryBuilder};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use uos_store::StoreError;
use uos_store::{
    AuditFilter, AuditHead, AuditReads, AuditRepo, AuditRow, Page, PageRequest, Result,
};

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> AuditReads for SqlTx<D, M> {
    async fn audit_head(&mut self) -> Result<AuditHead> {
        read_head(self, "").await
    }

    async fn list_audit(
        &mut self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditRow>> {
        let after = page
            .after
            .as_deref()
            .map(|s| s.parse::<i64>().map_err(|_| bad_cursor()))
            .transpose()?;
        let mut q =
            QueryBuilder::<D>::new(format!("select {AUDIT_COLS} from audit_event where true"));
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
            q.push(" and seq > ").push_bind(after);
        }
        q.push(" order by seq limit ")
            .push_bind(overfetch(page.limit));
        let found = q.fetch_all(self.conn()).await?;
        let events = found.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| {
            e.seq.to_string()
        }))
    }
}

#[async_trait]
impl<D: Dialect> AuditRepo for SqlTx<D> {
    async fn lock_audit_head(&mut self) -> Result<AuditHead> {
        // Where the dialect locks rows, concurrent appenders queue here and each chains from
        // the previous one; SQLite's write transaction already holds the database lock.
        read_head(self, D::LOCK_ROWS).await
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&mut self, prev: &AuditHead, row: &AuditRow) -> Result<()> {
        D::append_audit(self, prev, row).await
    }
}

/// The head row, with `lock` appended to its `select`.
async fn read_head<D: Dialect, M: Mode<D::Db>>(
    tx: &mut SqlTx<D, M>,
    lock: &str,
) -> Result<AuditHead> {
    let sql = format!("select seq, hash from audit_head where audit_head_id = 1{lock}");
    let row = query::<D>(&sql)
        .fetch_optional(tx.conn())
        .await?
        .ok_or_else(|| StoreError::Corrupt("audit_head row is missing".into()))?;
    Ok(AuditHead {
        seq: get(&row, "seq")?,
        hash: get(&row, "hash")?,
    })
}

/// The portable append: move the head first, and only from the link `row` extends (a writer
/// that did not chain from the current head gets `VersionConflict` instead of forking the
/// chain), then insert the event.
pub(crate) async fn append_in_steps<D: Dialect>(
    tx: &mut SqlTx<D>,
    prev: &AuditHead,
    row: &AuditRow,
) -> Result<()> {
    let moved = query::<D>(
        "update audit_head set seq = $1, hash = $2 \
         where audit_head_id = 1 and seq = $1 - 1 and seq = $3 and hash = $4",
    )
    .bind(row.seq)
    .bind(&row.hash)
    .bind(prev.seq)
    .bind(&prev.hash)
    .execute(tx.conn())
    .await?;
    if moved.rows_affected() == 0 {
        return Err(StoreError::VersionConflict);
    }
    query::<D>(
        "insert into audit_event (seq, audit_event_id, occurred_at, org_id, actor_id, \
         action, target_id, hash, payload) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.seq)
    .bind(row.id)
    .bind(row.occurred_at)
    .bind(row.org_id.map(|o| o.0))
    .bind(&row.actor_id)
    .bind(&row.action)
    .bind(&row.target_id)
    .bind(&row.hash)
    .bind(row.payload.to_string())
    .execute(tx.conn())
    .await?;
    Ok(())
}
