//! SQLite's hooks into the one storage implementation. Write transactions run one after the
//! other on the single writer connection, so no statement needs a row lock.

use crate::error::db_err;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Sqlite, SqliteConnection};
use uos_store::StoreError;
use uos_store_sql::sql::{Done, QueryBuilder};
use uos_store_sql::{Dialect, SqlxResult};

/// The SQLite dialect.
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

impl Dialect for SqliteDialect {
    type Db = Sqlite;

    fn map_err(e: sqlx::Error) -> StoreError {
        db_err(e)
    }

    fn execute<'c, 's: 'c, 'q: 's>(
        conn: &'c mut SqliteConnection,
        sql: &'s str,
        args: SqliteArguments<'q>,
    ) -> BoxFuture<'c, SqlxResult<Done>> {
        Box::pin(async move {
            let done = sqlx::query_with(sql, args).execute(conn).await?;
            Ok(Done::new(done.rows_affected()))
        })
    }

    fn fetch_optional<'c, 's: 'c, 'q: 's>(
        conn: &'c mut SqliteConnection,
        sql: &'s str,
        args: SqliteArguments<'q>,
    ) -> BoxFuture<'c, SqlxResult<Option<SqliteRow>>> {
        Box::pin(sqlx::query_with(sql, args).fetch_optional(conn))
    }

    fn fetch_all<'c, 's: 'c, 'q: 's>(
        conn: &'c mut SqliteConnection,
        sql: &'s str,
        args: SqliteArguments<'q>,
    ) -> BoxFuture<'c, SqlxResult<Vec<SqliteRow>>> {
        Box::pin(sqlx::query_with(sql, args).fetch_all(conn))
    }

    fn json_array_contains(column: &str, value: &str) -> String {
        format!("exists (select 1 from json_each({column}) where json_each.value = {value})")
    }

    const LOCK_ROWS: &'static str = "";

    // No lateral joins here; seqs are dense within a chain, so the next `$2` events are a
    // range of the `(chain, seq)` key.
    const NEXT_EVENTS_OF_CHAIN: &'static str = "join audit_event e on e.chain = c.chain \
         and e.seq > coalesce(r.seq, 0) and e.seq <= coalesce(r.seq, 0) + $2";

    fn lock_rows_skip_locked(_table: &str) -> String {
        String::new()
    }

    /// Timestamps are UTC text with a fixed `+00:00` offset, so adding whole days moves only
    /// the date part: the shifted timestamp is the date of `created_at` plus the days, followed
    /// by its unchanged time of day, and compares with `now` as text, exactly (SQLite's own
    /// date arithmetic keeps only milliseconds). Only the date is handed to `date()`, because
    /// it would round a time within half a millisecond of midnight into the next day.
    fn push_key_age_reached(q: &mut QueryBuilder<'_, Self>, now: DateTime<Utc>) {
        q.push(
            "date(substr(api_key.created_at, 1, 10), \
             '+' || service_account.max_key_age_days || ' days') \
             || substr(api_key.created_at, 11) <= ",
        )
        .push_bind(now);
    }
}
