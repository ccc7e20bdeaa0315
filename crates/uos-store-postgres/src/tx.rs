//! The unit of work handed out by the store: a write transaction or a plain read connection.

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, Postgres, Transaction};
use std::fmt;
use uos_store::{Result, Tx};

use crate::error::db_err;

enum Handle {
    /// From `begin()`: rolls back when dropped without `commit`.
    Write(Transaction<'static, Postgres>),
    /// From `read()`: autocommit on a pooled connection.
    Read(PoolConnection<Postgres>),
}

/// Implements every repository trait; see the per-aggregate modules.
pub struct PgTx {
    handle: Handle,
}

impl fmt::Debug for PgTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.handle {
            Handle::Write(_) => "write",
            Handle::Read(_) => "read",
        };
        f.debug_struct("PgTx").field("kind", &kind).finish()
    }
}

impl PgTx {
    pub(crate) fn write(tx: Transaction<'static, Postgres>) -> Self {
        Self {
            handle: Handle::Write(tx),
        }
    }

    pub(crate) fn read(conn: PoolConnection<Postgres>) -> Self {
        Self {
            handle: Handle::Read(conn),
        }
    }

    pub(crate) fn conn(&mut self) -> &mut PgConnection {
        match &mut self.handle {
            Handle::Write(tx) => tx,
            Handle::Read(conn) => conn,
        }
    }

    /// Finish an optimistic `update … where <key> = $id and version = $expected`: one row is
    /// success; none means the row is gone (`NotFound`) or moved on (`VersionConflict`).
    pub(crate) async fn settle_update(
        &mut self,
        affected: u64,
        exists_sql: &'static str,
        id: uuid::Uuid,
    ) -> Result<()> {
        if affected > 0 {
            return Ok(());
        }
        let found = sqlx::query(exists_sql)
            .bind(id)
            .fetch_optional(self.conn())
            .await
            .map_err(db_err)?;
        Err(match found {
            Some(_) => uos_store::StoreError::VersionConflict,
            None => uos_store::StoreError::NotFound,
        })
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn commit(self: Box<Self>) -> Result<()> {
        match self.handle {
            Handle::Write(tx) => tx.commit().await.map_err(db_err),
            Handle::Read(_) => Ok(()),
        }
    }
}
