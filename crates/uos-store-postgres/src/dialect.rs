//! PostgreSQL's hooks into the one storage implementation: row locks, `jsonb` containment,
//! array parameters, exact interval arithmetic, and the writes it makes one statement of.

use crate::error::db_err;
use crate::writes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgConnection, Postgres};
use uos_domain::ApiKeyId;
use uos_store::{AuditHead, AuditRow, Result, StoreError};
use uos_store_sql::sql::{Done, QueryBuilder};
use uos_store_sql::{Dialect, SqlTx, SqlxResult};

/// The PostgreSQL dialect.
#[derive(Debug, Clone, Copy)]
pub struct PgDialect;

impl Dialect for PgDialect {
    type Db = Postgres;

    fn map_err(e: sqlx::Error) -> StoreError {
        db_err(e)
    }

    fn execute<'c, 's: 'c, 'q: 's>(
        conn: &'c mut PgConnection,
        sql: &'s str,
        args: PgArguments,
    ) -> BoxFuture<'c, SqlxResult<Done>> {
        Box::pin(async move {
            let done = sqlx::query_with(sql, args).execute(conn).await?;
            Ok(Done::new(done.rows_affected()))
        })
    }

    fn fetch_optional<'c, 's: 'c, 'q: 's>(
        conn: &'c mut PgConnection,
        sql: &'s str,
        args: PgArguments,
    ) -> BoxFuture<'c, SqlxResult<Option<PgRow>>> {
        Box::pin(sqlx::query_with(sql, args).fetch_optional(conn))
    }

    fn fetch_all<'c, 's: 'c, 'q: 's>(
        conn: &'c mut PgConnection,
        sql: &'s str,
        args: PgArguments,
    ) -> BoxFuture<'c, SqlxResult<Vec<PgRow>>> {
        Box::pin(sqlx::query_with(sql, args).fetch_all(conn))
    }

    /// `@>` can use a GIN index on the column, and compares whole elements.
    fn json_array_contains(column: &str, value: &str) -> String {
        format!("{column} @> jsonb_build_array({value}::text)")
    }

    const LOCK_ROWS: &'static str = " for update";

    // A lateral subquery with its own limit: given the plain range join instead, the planner
    // may scan the key by seq alone for every chain (it cannot tell chains apart in its
    // statistics), which made a round cost seconds.
    const NEXT_EVENTS_OF_CHAIN: &'static str = "cross join lateral (select * from audit_event e \
         where e.chain = c.chain and e.seq > coalesce(r.seq, 0) order by e.seq limit $2) e";

    fn lock_rows_skip_locked(table: &str) -> String {
        format!(" for update of {table} skip locked")
    }

    /// The protocol's limit: a statement binds at most 65,535 parameters.
    const MAX_LIST_PARAMS: usize = 65_535;

    /// "The key's age in seconds reaches the days in seconds": a day is exactly 86,400 s as in
    /// the domain (`interval '1 day'` would follow the session time zone's DST), the epoch of
    /// an interval is exact numeric, and no day count, however large, can overflow an interval
    /// and fail the whole sweep.
    fn push_key_age_reached(q: &mut QueryBuilder<'_, Self>, now: DateTime<Utc>) {
        q.push("extract(epoch from ")
            .push_bind(now)
            .push(" - api_key.created_at) >= service_account.max_key_age_days * 86400");
    }

    /// The scope of the row-level security policies (`migrations/postgres/0004`), for the rest
    /// of this transaction only.
    const CONFINE_TO_ORG: Option<&'static str> = Some("set_config('uos.org', $1, true)");

    fn append_audit<'a>(
        tx: &'a mut SqlTx<Self>,
        prev: &'a AuditHead,
        row: &'a AuditRow,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(writes::append_audit(tx.conn(), prev, row))
    }

    fn touch_api_keys<'a>(
        tx: &'a mut SqlTx<Self>,
        used: &'a [(ApiKeyId, DateTime<Utc>)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(writes::touch_api_keys(tx.conn(), used))
    }
}
