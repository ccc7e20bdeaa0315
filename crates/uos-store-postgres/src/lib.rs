//! PostgreSQL implementation of the storage port: the production system of record.
//!
//! One pool; `begin()` opens a read-committed transaction, `read()` hands out a plain pooled
//! connection, and a login's write and a refresh are one autocommit statement each. The
//! repositories are `uos-store-sql`'s; this crate adds the pool, error mapping, its dialect
//! hooks (row locks, `jsonb`, arrays, exact intervals, row-level security scope) and the
//! one-statement writes (`writes`).

mod dialect;
mod error;
pub mod testing;
mod tools;
mod writes;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
pub use dialect::PgDialect;
use error::db_err;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Connection as _;
use std::str::FromStr;
use std::time::Duration;
use uos_store::Inventory;
use uos_store::{
    AuditHead, AuditRow, LeaderLock, PoolStats, ReadTx, Result, Rotation, Session, Store,
    StoreError, TokenUse, Tx,
};
use uos_store_sql::{SqlRead, SqlTx};

/// How long a caller waits for a pooled connection before the store reports `Unavailable`.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for longer than this is pinged before it is handed out (a
/// failover or a NAT timeout may have cut it). Busier ones are not: pinging on every acquire
/// adds a round trip to every request (two to a login), and a connection used moments ago
/// that has since died fails its query and is dropped like any broken one.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// A session advisory lock and the connection that holds it.
#[derive(Debug)]
struct PgLeaderLock {
    conn: sqlx::PgConnection,
}

#[async_trait]
impl LeaderLock for PgLeaderLock {
    async fn still_held(&mut self) -> bool {
        self.conn.ping().await.is_ok()
    }
}

/// The forward-only migrations in `migrations/postgres/` (at the workspace root).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The PostgreSQL store. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db`) with at most `max_connections`.
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(Self::options(url)?, max_connections).await
    }

    /// Connect to `url` only to read: every transaction is read-only, so PostgreSQL itself
    /// refuses any write. Fails unless the schema is exactly this build's (nothing migrates).
    #[tracing::instrument(skip_all)]
    pub async fn connect_read_only(url: &str, max_connections: u32) -> Result<Self> {
        let options = Self::options(url)?.options([("default_transaction_read_only", "on")]);
        let store = Self::connect_with(options, max_connections).await?;
        let applied = sqlx::query_scalar(uos_store_sql::schema::APPLIED_VERSION_SQL)
            .fetch_one(&store.pool)
            .await;
        uos_store_sql::schema::check_schema(applied, &MIGRATOR)?;
        Ok(store)
    }

    fn options(url: &str) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad postgres url: {e}")))?
            .application_name("user-org-service")
            // The row-level security scope of every session (migration 0004): all orgs, which
            // a unit of work narrows to one for its transaction (`confine_to_org`). Set in the
            // start-up packet, so it costs no round trip.
            .options([("uos.org", "*")])
            // Plan each prepared statement once. Left to choose, PostgreSQL plans a paged
            // list again on every execution: its generic plan cannot know the `limit` or how
            // many rows the org has, so it costs more on paper than a custom plan, and the
            // planning was half the database's time for a members page. Every statement is a
            // key lookup or an index walk whose generic plan is the right one for any org;
            // the plan check (`cargo xtask seed`) runs every list query at 1M users under
            // this setting and fails on a scan, a sort or a filter over 10,000 rows.
            .options([("plan_cache_mode", "force_generic_plan")])
            // No JIT compilation. A generic plan's costs assume a default share of rows for
            // every bound `limit`, so the relay's read of each chain's next events costs
            // millions on paper, past `jit_above_cost` and the inlining threshold: PostgreSQL
            // then spent 144 ms compiling each relay round that ran in 14 ms, and the relay
            // fell from 23,000 to 5,500 events/s. Every statement here reads a page of rows
            // through an index, where compiling never pays.
            .options([("jit", "off")]))
    }

    async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            // After a failover the pool may hold sessions on a server that refuses writes
            // (a standby, or sessions opened while the database was read-only). Once a write
            // was refused for that, a connection coming back is kept only if it can write, so
            // writes recover by themselves when the database takes them again; otherwise
            // this costs nothing.
            .after_release(|conn, _| {
                Box::pin(async move {
                    if !error::read_only_recently() {
                        return Ok(true);
                    }
                    let read_only: bool = sqlx::query_scalar(
                        "select current_setting('transaction_read_only') = 'on'",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok(!read_only)
                })
            })
            .connect_with(options)
            .await
            .map_err(db_err)?;
        Ok(Self { pool })
    }

    /// Back the database up into the new file `dest` with `pg_dump` (custom format) while the
    /// service runs, and take the inventory in the very snapshot the dump copies: exactly what
    /// a restore of `dest` must hold. `url` is the database as `pg_dump` should reach it (the
    /// owner's: row-level security would hide rows from the service's role).
    #[tracing::instrument(skip_all)]
    pub async fn backup_into(&self, url: &str, dest: &std::path::Path) -> Result<Inventory> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("set transaction isolation level repeatable read, read only")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let snapshot: String = sqlx::query_scalar("select pg_export_snapshot()")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut unit = SqlTx::<PgDialect>::write(tx);
        let inventory = Inventory::read(&mut unit).await?;
        // The snapshot lives as long as the transaction that exported it: until `unit` drops.
        let mut dump = tokio::process::Command::new("pg_dump");
        dump.args([
            "--format=custom",
            "--no-owner",
            "--snapshot",
            &snapshot,
            "--file",
        ])
        .arg(dest);
        tools::run(dump, url).await?;
        drop(unit);
        Ok(inventory)
    }

    /// Restore a [`PgStore::backup_into`] file into the empty database at `url` (the role
    /// that will own the tables) with `pg_restore`, in one transaction: on any error nothing
    /// is restored.
    #[tracing::instrument(skip_all)]
    pub async fn restore_from(url: &str, src: &std::path::Path) -> Result<()> {
        let mut restore = tokio::process::Command::new("pg_restore");
        restore
            .args(["--exit-on-error", "--single-transaction", "--no-owner"])
            .arg(src);
        tools::run(restore, url).await
    }

    /// Apply the forward-only migrations in `migrations/postgres/` (sqlx serialises concurrent runs
    /// with an advisory lock, so replicas may all call this at start-up).
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }
}

#[async_trait]
impl Store for PgStore {
    #[tracing::instrument(skip_all)]
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok(Box::new(SqlTx::<PgDialect>::write(tx)))
    }

    async fn read(&self) -> Result<Box<dyn ReadTx>> {
        let conn = self.pool.acquire().await.map_err(db_err)?;
        Ok(Box::new(SqlRead::<PgDialect>::read(conn)))
    }

    async fn try_lock_leader(&self, name: &str) -> Result<Option<Box<dyn LeaderLock>>> {
        // A connection of its own, out of the pool: the lock lives exactly as long as it.
        let mut conn = self.pool.acquire().await.map_err(db_err)?.detach();
        let held: bool = sqlx::query_scalar("select pg_try_advisory_lock(hashtext($1))")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        Ok(held.then(|| Box::new(PgLeaderLock { conn }) as Box<dyn LeaderLock>))
    }

    #[tracing::instrument(skip_all)]
    async fn open_session_audited(
        &self,
        s: &Session,
        refresh_hash: &str,
        prev: &AuditHead,
        event: &AuditRow,
    ) -> Result<()> {
        if prev.seq == 0 {
            // The chain's first event: its head row is created in the same transaction.
            let mut tx = self.begin().await?;
            tx.insert_session(s, refresh_hash).await?;
            tx.append_audit(prev, event).await?;
            return tx.commit().await;
        }
        self.open_session_audited_in_one(s, refresh_hash, prev, event)
            .await
    }

    /// The portable refresh statement on a pooled connection, without a transaction around
    /// it: one round trip (it is one statement, so it is as atomic on its own).
    #[tracing::instrument(skip_all)]
    async fn refresh_session(
        &self,
        r: &Rotation,
        at: DateTime<Utc>,
        idle_since: DateTime<Utc>,
    ) -> Result<TokenUse> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        uos_store_sql::rotate_refresh::<PgDialect>(&mut conn, r, at, idle_since).await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::Row as _;

    /// The settings the statements' plans were measured under reach every pooled session.
    #[tokio::test]
    #[ignore = "needs PostgreSQL"]
    async fn sessions_plan_each_statement_once_and_never_compile_it() {
        let store = PgStore::connect(&testing::admin_url(), 1).await.unwrap();
        let row = sqlx::query(
            "select current_setting('plan_cache_mode') as plans, current_setting('jit') as jit",
        )
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("plans"), "force_generic_plan");
        assert_eq!(row.get::<String, _>("jit"), "off");
        store.close().await;
    }
}
