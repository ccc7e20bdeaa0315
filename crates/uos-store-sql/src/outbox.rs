//! The audit table read as an outbox: each chain's events past the relay's progress, and that
//! progress.

use crate::rows::{self, AUDIT_COLS};
use crate::sql::{get, query};
use crate::tx::SqlTx;
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_store::{AuditRow, OutboxRepo, Result};

/// The events past each chain's published seq: only chains whose head is past it are joined,
/// and each through the `(chain, seq)` key.
const UNPUBLISHED: &str = "from audit_chain c left join audit_relay r on r.chain = c.chain \
     join audit_event e on e.chain = c.chain and e.seq > coalesce(r.seq, 0) \
     where c.seq > coalesce(r.seq, 0)";

#[async_trait]
impl<D: Dialect> OutboxRepo for SqlTx<D> {
    async fn unpublished_audit(&mut self, limit: u32) -> Result<Vec<AuditRow>> {
        let cols: Vec<String> = AUDIT_COLS.split(", ").map(|c| format!("e.{c}")).collect();
        let sql = format!(
            "select {} {UNPUBLISHED} order by e.position limit $1",
            cols.join(", ")
        );
        query::<D>(&sql)
            .bind(i64::from(limit))
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(rows::audit)
            .collect()
    }

    async fn audit_backlog(&mut self) -> Result<(u64, Option<DateTime<Utc>>)> {
        let sql = format!("select count(*) as n, min(e.occurred_at) as oldest {UNPUBLISHED}");
        let row = query::<D>(&sql).fetch_optional(self.conn()).await?;
        let Some(row) = row else {
            return Ok((0, None));
        };
        let n: i64 = get(&row, "n")?;
        Ok((n.try_into().unwrap_or(0), get(&row, "oldest")?))
    }

    async fn mark_published(&mut self, progress: &[(String, i64)]) -> Result<()> {
        for (chain, seq) in progress {
            query::<D>(
                "insert into audit_relay (chain, seq) values ($1, $2) \
                 on conflict (chain) do update set seq = case \
                 when excluded.seq > audit_relay.seq then excluded.seq else audit_relay.seq end",
            )
            .bind(chain)
            .bind(*seq)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }
}
