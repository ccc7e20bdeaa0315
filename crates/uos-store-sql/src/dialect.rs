//! What differs between the backends, and nothing else: error mapping, how a statement runs on
//! the backend's connection type, a handful of SQL fragments (JSON-array membership, row locks,
//! date arithmetic), how many values one statement may bind, and the writes PostgreSQL makes
//! one statement of, as overrides of portable defaults.

use crate::sql::{Args, Conn, Done, QueryBuilder, RawRow, SqlDb};
use crate::tx::SqlTx;
use crate::{audit, machine};
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use std::fmt::Debug;
use uos_domain::ApiKeyId;
use uos_store::{AuditHead, AuditRow, Result, StoreError};

/// The raw result of running a statement, before [`Dialect::map_err`].
pub type SqlxResult<T> = std::result::Result<T, sqlx::Error>;

/// A backend's hooks into the one storage implementation ([`SqlTx`]).
pub trait Dialect: Debug + Send + Sync + Sized + 'static {
    /// The sqlx database.
    type Db: SqlDb;

    /// Translate a sqlx error into the port's error (unique indexes to conflict codes,
    /// connection trouble to `Unavailable`).
    fn map_err(e: sqlx::Error) -> StoreError;

    /// Run `sql` with `args` on `conn`, returning what it changed.
    fn execute<'c, 's: 'c, 'q: 's>(
        conn: &'c mut Conn<Self>,
        sql: &'s str,
        args: Args<'q, Self>,
    ) -> BoxFuture<'c, SqlxResult<Done>>;

    /// Run `sql` with `args` on `conn`, returning its first row if any.
    fn fetch_optional<'c, 's: 'c, 'q: 's>(
        conn: &'c mut Conn<Self>,
        sql: &'s str,
        args: Args<'q, Self>,
    ) -> BoxFuture<'c, SqlxResult<Option<RawRow<Self>>>>;

    /// Run `sql` with `args` on `conn`, returning every row.
    fn fetch_all<'c, 's: 'c, 'q: 's>(
        conn: &'c mut Conn<Self>,
        sql: &'s str,
        args: Args<'q, Self>,
    ) -> BoxFuture<'c, SqlxResult<Vec<RawRow<Self>>>>;

    /// A condition that holds when the JSON array in `column` has the string `value` (an SQL
    /// expression: a placeholder or a quoted literal) as one of its elements.
    fn json_array_contains(column: &str, value: &str) -> String;

    /// Appended to a `select` whose rows must stay locked until the transaction ends. Empty
    /// where write transactions are already serialised (SQLite).
    const LOCK_ROWS: &'static str;

    /// Appended to the `select` of a claim: lock the rows of `table`, skipping rows another
    /// transaction holds (so concurrent claimers split the work). Empty on SQLite.
    fn lock_rows_skip_locked(table: &str) -> String;

    /// Joined after `audit_chain c left join audit_relay r`: the next events of chain `c`
    /// after its progress `r.seq`, at most `$2` of them, read through the `(chain, seq)` key.
    const NEXT_EVENTS_OF_CHAIN: &'static str;

    /// The most values one statement binds; longer lists are split into several statements.
    const MAX_LIST_PARAMS: usize = 500;

    /// A condition that holds when an API key (`api_key.created_at`) has reached its account's
    /// maximum key age (`service_account.max_key_age_days`, not null) at `now`: exactly, in
    /// whole days of 86,400 s.
    fn push_key_age_reached(q: &mut QueryBuilder<'_, Self>, now: DateTime<Utc>);

    /// [`ReadTx::confine_to_org`](uos_store::ReadTx::confine_to_org) in a write transaction:
    /// an expression of a select list that confines the rest of the transaction to the org
    /// `$1` (its id as text). `None`, the default, confines nothing (no row-level security).
    const CONFINE_TO_ORG: Option<&'static str> = None;

    /// [`AuditRepo::append_audit`](uos_store::AuditRepo::append_audit); the default moves
    /// the head, then inserts the event.
    fn append_audit<'a>(
        tx: &'a mut SqlTx<Self>,
        prev: &'a AuditHead,
        row: &'a AuditRow,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(audit::append_in_steps(tx, prev, row))
    }

    /// [`MachineRepo::touch_api_keys`](uos_store::MachineRepo::touch_api_keys); the default
    /// writes one statement per key (in id order, so concurrent batches cannot deadlock).
    fn touch_api_keys<'a>(
        tx: &'a mut SqlTx<Self>,
        used: &'a [(ApiKeyId, DateTime<Utc>)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(machine::touch_api_keys_in_steps(tx, used))
    }
}
