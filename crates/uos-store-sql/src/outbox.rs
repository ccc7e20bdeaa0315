//! The audit table read as an outbox: each chain's events past the relay's progress, and that
//! progress.

use crate::rows::{self, AUDIT_COLS};
use crate::sql::{get, query, QueryBuilder};
use crate::tx::SqlTx;
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_store::{AuditRow, OutboxRepo, Result};

/// Every chain head `c` with the relay's progress `r` on it.
const CHAINS: &str = "from audit_chain c left join audit_relay r on r.chain = c.chain";
/// Of those, the chains whose head is past what the relay published.
const IS_BEHIND: &str = "where c.seq > coalesce(r.seq, 0)";

#[async_trait]
impl<D: Dialect> OutboxRepo for SqlTx<D> {
    /// At most `limit` events, the next ones of every chain behind (the same share of the
    /// limit each, rounded up), oldest first. Each chain is read through its `(chain, seq)`
    /// key from its own progress, so a round costs the chains behind plus the events returned,
    /// however many events were published before; ordering the whole backlog by position
    /// instead made every round as slow as the table was long.
    async fn unpublished_audit(&mut self, limit: u32) -> Result<Vec<AuditRow>> {
        let row = query::<D>(&format!("select count(*) as chains {CHAINS} {IS_BEHIND}"))
            .fetch_optional(self.conn())
            .await?;
        let chains: i64 = match row {
            Some(row) => get(&row, "chains")?,
            None => 0,
        };
        if chains == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let per_chain = (i64::from(limit) + chains - 1) / chains;
        let cols: Vec<String> = AUDIT_COLS.split(", ").map(|c| format!("e.{c}")).collect();
        let sql = format!(
            "select {} {CHAINS} {} {IS_BEHIND} order by e.position limit $1",
            cols.join(", "),
            D::NEXT_EVENTS_OF_CHAIN,
        );
        query::<D>(&sql)
            .bind(i64::from(limit))
            .bind(per_chain)
            .fetch_all(self.conn())
            .await?
            .iter()
            .map(rows::audit)
            .collect()
    }

    /// Seqs are dense within a chain, so the backlog is the sum of head minus progress, and
    /// the oldest unpublished event is among each chain's first unpublished one: both read
    /// from one row per chain behind, never from the events already published.
    async fn audit_backlog(&mut self) -> Result<(u64, Option<DateTime<Utc>>)> {
        let sql = format!(
            "select c.seq - coalesce(r.seq, 0) as n, \
             (select e.occurred_at from audit_event e \
              where e.chain = c.chain and e.seq = coalesce(r.seq, 0) + 1) as first_at \
             {CHAINS} {IS_BEHIND}"
        );
        let rows = query::<D>(&sql).fetch_all(self.conn()).await?;
        let mut behind = 0u64;
        let mut oldest: Option<DateTime<Utc>> = None;
        for row in &rows {
            let n: i64 = get(row, "n")?;
            behind += u64::try_from(n).unwrap_or(0);
            let first: Option<DateTime<Utc>> = get(row, "first_at")?;
            oldest = match (oldest, first) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok((behind, oldest))
    }

    /// One statement for every chain of the round (a relay round touches up to a batch's
    /// worth of chains), split only where a statement would bind too many values.
    async fn mark_published(&mut self, progress: &[(String, i64)]) -> Result<()> {
        for part in progress.chunks(D::MAX_LIST_PARAMS / 2) {
            let mut q = QueryBuilder::<D>::new("insert into audit_relay (chain, seq) values ");
            for (i, (chain, seq)) in part.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" })
                    .push_bind(chain)
                    .push(", ")
                    .push_bind(*seq)
                    .push(")");
            }
            q.push(
                " on conflict (chain) do update set seq = case \
                 when excluded.seq > audit_relay.seq then excluded.seq else audit_relay.seq end",
            );
            q.execute(self.conn()).await?;
        }
        Ok(())
    }
}
