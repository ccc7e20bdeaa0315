//! The audit chain: its head, appends that move it, and the filtered, seq-paged listing.

use crate::error::{bad_cursor, db_err};
use crate::rows::{self, overfetch, AUDIT_COLS};
use crate::tx::PgTx;
use async_trait::async_trait;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder, Row};
use uos_store::StoreError;
use uos_store::{AuditFilter, AuditHead, AuditRepo, AuditRow, Page, PageRequest, Result};

/// The common table expressions that append one event: `moved` advances the head, only from
/// the link the event extends, and `appended` inserts the event for each row of `moved`. A
/// statement continues it with its main part; [`bind_append`] binds `$1`..`$11`.
pub(crate) const APPEND_AUDIT: &str = "with moved as (update audit_head set seq = $1, hash = $8 \
     where audit_head_id = 1 and seq = $1 - 1 and seq = $10 and hash = $11 returning seq), \
     appended as (insert into audit_event (seq, audit_event_id, occurred_at, org_id, actor_id, \
     action, target_id, hash, payload) select $1, $2, $3, $4, $5, $6, $7, $8, $9 from moved)";

/// `query` with `row` and the head it extends bound to `$1`..`$11` of [`APPEND_AUDIT`].
pub(crate) fn bind_append<'q>(
    query: Query<'q, Postgres, PgArguments>,
    prev: &'q AuditHead,
    row: &'q AuditRow,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(row.seq)
        .bind(row.id)
        .bind(row.occurred_at)
        .bind(row.org_id.map(|o| o.0))
        .bind(&row.actor_id)
        .bind(&row.action)
        .bind(&row.target_id)
        .bind(&row.hash)
        .bind(row.payload.to_string())
        .bind(prev.seq)
        .bind(&prev.hash)
}

#[async_trait]
impl AuditRepo for PgTx {
    async fn lock_audit_head(&mut self) -> Result<AuditHead> {
        // `for update`: concurrent appenders queue here and each chains from the previous one.
        let row =
            sqlx::query("select seq, hash from audit_head where audit_head_id = 1 for update")
                .fetch_optional(self.conn())
                .await
                .map_err(db_err)?
                .ok_or_else(|| StoreError::Corrupt("audit_head row is missing".into()))?;
        Ok(AuditHead {
            seq: row.try_get("seq").map_err(db_err)?,
            hash: row.try_get("hash").map_err(db_err)?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn append_audit(&mut self, prev: &AuditHead, row: &AuditRow) -> Result<()> {
        // One statement moves the head, only from the link this row extends, and inserts the
        // row: a writer that did not chain from the current head inserts nothing and gets
        // VersionConflict instead of forking the chain. (One round trip per event: every
        // write of the service records at least one.) The update takes the head's row lock,
        // so a concurrent appender waits here and then finds the head moved.
        let sql = format!("{APPEND_AUDIT} select seq from moved");
        let moved = bind_append(sqlx::query(&sql), prev, row)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        if moved.is_none() {
            return Err(StoreError::VersionConflict);
        }
        Ok(())
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
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "select {AUDIT_COLS} from audit_event where true"
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
            q.push(" and seq > ").push_bind(after);
        }
        q.push(" order by seq limit ")
            .push_bind(overfetch(page.limit));
        let found = q.build().fetch_all(self.conn()).await.map_err(db_err)?;
        let events = found.iter().map(rows::audit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(events, page.limit, |e| {
            e.seq.to_string()
        }))
    }
}
