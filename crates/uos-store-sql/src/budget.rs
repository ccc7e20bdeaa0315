//! Budgets, usage events (deduplicated per org by source id) and spend per scope and day.

use crate::rows::get;
use crate::sql::{query, QueryBuilder, Row};
use crate::tx::{Mode, SqlTx};
use crate::Dialect;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uos_domain::{Budget, BudgetKey, BudgetScope, BudgetState, OrgId, Period};
use uos_store::{BudgetReads, BudgetRepo, Result, SpendDelta, StoreError, UsageEvent};

const BUDGET_COLS: &str = "org_id, scope, scope_id, period, limit_cents, warn_percent, \
     block_percent, created_at, updated_at, version";

/// Events per insert statement: 8 parameters each, well inside every backend's limit.
const USAGE_ROWS_PER_STATEMENT: usize = 100;

fn budget<D: Dialect>(r: &Row<D>) -> Result<Budget> {
    let corrupt = |e: uos_domain::DomainError| StoreError::Corrupt(format!("budget: {e}"));
    let percent = |column: &str| -> Result<i32> {
        i32::try_from(get::<_, i64>(r, column)?)
            .map_err(|_| StoreError::Corrupt(format!("budget: {column} out of range")))
    };
    Ok(Budget {
        key: BudgetKey {
            org_id: OrgId(get(r, "org_id")?),
            scope: BudgetScope::parse(&get::<_, String>(r, "scope")?).map_err(corrupt)?,
            scope_id: get(r, "scope_id")?,
        },
        period: Period::parse(&get::<_, String>(r, "period")?).map_err(corrupt)?,
        limit_cents: get(r, "limit_cents")?,
        warn_percent: percent("warn_percent")?,
        block_percent: percent("block_percent")?,
        created_at: get(r, "created_at")?,
        updated_at: get(r, "updated_at")?,
        version: get(r, "version")?,
    })
}

#[async_trait]
impl<D: Dialect, M: Mode<D::Db>> BudgetReads for SqlTx<D, M> {
    async fn get_budget(&mut self, key: &BudgetKey) -> Result<Option<Budget>> {
        let sql = format!(
            "select {BUDGET_COLS} from budget where org_id = $1 and scope = $2 and scope_id = $3"
        );
        let row = query::<D>(&sql)
            .bind(key.org_id.0)
            .bind(key.scope.as_str())
            .bind(key.scope_id)
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(budget).transpose()
    }

    async fn get_budgets(&mut self, keys: &[BudgetKey]) -> Result<Vec<Budget>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // A handful of keys (a decision's org, account and member): one statement, keyed
        // lookups joined by `or`.
        let mut q = QueryBuilder::<D>::new(format!("select {BUDGET_COLS} from budget where "));
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                q.push(" or ");
            }
            q.push("(org_id = ")
                .push_bind(key.org_id.0)
                .push(" and scope = ")
                .push_bind(key.scope.as_str())
                .push(" and scope_id = ")
                .push_bind(key.scope_id)
                .push(")");
        }
        q.fetch_all(self.conn()).await?.iter().map(budget).collect()
    }

    async fn spent(
        &mut self,
        key: &BudgetKey,
        from_day: i64,
        until_day: Option<i64>,
    ) -> Result<i64> {
        let row = query::<D>(
            "select cast(coalesce(sum(spent_cents), 0) as bigint) as spent from usage_spend \
             where org_id = $1 and scope = $2 and scope_id = $3 and day >= $4 \
             and ($5 is null or day < $5)",
        )
        .bind(key.org_id.0)
        .bind(key.scope.as_str())
        .bind(key.scope_id)
        .bind(from_day)
        .bind(until_day)
        .fetch_one(self.conn())
        .await?;
        get(&row, "spent")
    }
}

#[async_trait]
impl<D: Dialect> BudgetRepo for SqlTx<D> {
    async fn insert_budget(&mut self, b: &Budget) -> Result<()> {
        let sql = format!(
            "insert into budget ({BUDGET_COLS}) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        query::<D>(&sql)
            .bind(b.key.org_id.0)
            .bind(b.key.scope.as_str())
            .bind(b.key.scope_id)
            .bind(b.period.as_str())
            .bind(b.limit_cents)
            .bind(i64::from(b.warn_percent))
            .bind(i64::from(b.block_percent))
            .bind(b.created_at)
            .bind(b.updated_at)
            .bind(b.version)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn update_budget(&mut self, b: &Budget, expected_version: i64) -> Result<()> {
        let done = query::<D>(
            "update budget set period = $5, limit_cents = $6, warn_percent = $7, \
             block_percent = $8, updated_at = $9, version = $10 \
             where org_id = $1 and scope = $2 and scope_id = $3 and version = $4",
        )
        .bind(b.key.org_id.0)
        .bind(b.key.scope.as_str())
        .bind(b.key.scope_id)
        .bind(expected_version)
        .bind(b.period.as_str())
        .bind(b.limit_cents)
        .bind(i64::from(b.warn_percent))
        .bind(i64::from(b.block_percent))
        .bind(b.updated_at)
        .bind(b.version)
        .execute(self.conn())
        .await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        Err(match self.get_budget(&b.key).await? {
            Some(_) => StoreError::VersionConflict,
            None => StoreError::NotFound,
        })
    }

    async fn delete_budget(&mut self, key: &BudgetKey) -> Result<bool> {
        let done =
            query::<D>("delete from budget where org_id = $1 and scope = $2 and scope_id = $3")
                .bind(key.org_id.0)
                .bind(key.scope.as_str())
                .bind(key.scope_id)
                .execute(self.conn())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_usage(&mut self, org: OrgId, events: &[UsageEvent]) -> Result<Vec<String>> {
        let mut recorded = Vec::with_capacity(events.len());
        for chunk in events.chunks(USAGE_ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<D>::new(
                "insert into usage_event (org_id, source_event_id, amount_cents, occurred_at, \
                 recorded_at, service_account_id, user_id, api_key_id) values ",
            );
            for (i, e) in chunk.iter().enumerate() {
                if e.org_id != org {
                    return Err(StoreError::Backend(
                        "insert_usage: an event of another org".into(),
                    ));
                }
                if i > 0 {
                    q.push(", ");
                }
                q.push("(")
                    .push_bind(org.0)
                    .push(", ")
                    .push_bind(e.source_event_id.as_str())
                    .push(", ")
                    .push_bind(e.amount_cents)
                    .push(", ")
                    .push_bind(e.occurred_at)
                    .push(", ")
                    .push_bind(e.recorded_at)
                    .push(", ")
                    .push_bind(e.service_account_id)
                    .push(", ")
                    .push_bind(e.user_id.map(|u| u.0))
                    .push(", ")
                    .push_bind(e.api_key_id)
                    .push(")");
            }
            // A conflicting row is an event counted before (or by a concurrent writer, whose
            // commit this statement waits for): it is skipped, and only new ones come back.
            q.push(" on conflict (org_id, source_event_id) do nothing returning source_event_id");
            for row in q.fetch_all(self.conn()).await? {
                recorded.push(get(&row, "source_event_id")?);
            }
        }
        Ok(recorded)
    }

    async fn add_spend(&mut self, deltas: &[SpendDelta]) -> Result<()> {
        // In key order, so two units of work adding to the same rows lock them in the same
        // order and cannot deadlock.
        let mut sorted = deltas.to_vec();
        sorted.sort_unstable();
        for d in &sorted {
            query::<D>(
                "insert into usage_spend (org_id, scope, scope_id, day, spent_cents) \
                 values ($1, $2, $3, $4, $5) on conflict (org_id, scope, scope_id, day) \
                 do update set spent_cents = usage_spend.spent_cents + excluded.spent_cents",
            )
            .bind(d.key.org_id.0)
            .bind(d.key.scope.as_str())
            .bind(d.key.scope_id)
            .bind(d.day)
            .bind(d.cents)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }

    async fn mark_budget_state(
        &mut self,
        key: &BudgetKey,
        period_start: DateTime<Utc>,
        state: BudgetState,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let done = query::<D>(
            "insert into budget_state (org_id, scope, scope_id, period_start, state, reached_at) \
             values ($1, $2, $3, $4, $5, $6) \
             on conflict (org_id, scope, scope_id, period_start, state) do nothing",
        )
        .bind(key.org_id.0)
        .bind(key.scope.as_str())
        .bind(key.scope_id)
        .bind(period_start)
        .bind(state.as_str())
        .bind(at)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
