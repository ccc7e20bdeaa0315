//! The unit of work handed out by a store: a write transaction ([`SqlTx`]) or a read handle
//! over a pooled connection ([`SqlRead`]), which implements only the read half of the port.

use crate::sql::Conn;
use crate::Dialect;
use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Transaction};
use std::fmt;
use std::marker::PhantomData;
use std::ops::DerefMut;
use uos_domain::OrgId;
use uos_store::{DeclaredOrg, ReadTx, Result, StoreError, Tx};

/// What a handle holds: a transaction for writes, a pooled connection for reads.
pub trait Mode<DB: Database>: Send + 'static {
    type Handle: DerefMut<Target = DB::Connection> + Send;
    const NAME: &'static str;
}

/// The write mode: a transaction that rolls back when dropped without `commit`.
#[derive(Debug)]
pub struct Write;

/// The read mode: autocommit statements on a pooled connection.
#[derive(Debug)]
pub struct Read;

impl<DB: Database> Mode<DB> for Write {
    type Handle = Transaction<'static, DB>;
    const NAME: &'static str = "write";
}

impl<DB: Database> Mode<DB> for Read {
    type Handle = PoolConnection<DB>;
    const NAME: &'static str = "read";
}

/// The storage port implemented once for every [`Dialect`]; see the per-aggregate modules.
pub struct SqlTx<D: Dialect, M: Mode<D::Db> = Write> {
    handle: M::Handle,
    /// The declared-config row of the org this transaction was confined to, read in the
    /// confining statement, for the next [`declared_org_of`] of that org: the guard against
    /// editing declared orgs asks right after the policy allows, and this saves that change
    /// a round trip. Good only until the next statement, which drops it (see [`conn`]), so no
    /// write can leave it stale; that call takes it.
    ///
    /// [`conn`]: SqlTx::conn
    /// [`declared_org_of`]: uos_store::DeclarativeReads::declared_org_of
    pub(crate) confined_declared: Option<(OrgId, Option<DeclaredOrg>)>,
    dialect: PhantomData<D>,
}

/// A read handle: the port's [`ReadTx`] and nothing that writes.
pub type SqlRead<D> = SqlTx<D, Read>;

impl<D: Dialect, M: Mode<D::Db>> fmt::Debug for SqlTx<D, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlTx")
            .field("dialect", &std::any::type_name::<D>())
            .field("mode", &M::NAME)
            .finish()
    }
}

impl<D: Dialect> SqlTx<D> {
    /// A write unit over an open transaction.
    pub fn write(tx: Transaction<'static, D::Db>) -> Self {
        Self {
            handle: tx,
            confined_declared: None,
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> SqlRead<D> {
    /// A read handle over a pooled connection.
    pub fn read(conn: PoolConnection<D::Db>) -> Self {
        Self {
            handle: conn,
            confined_declared: None,
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect, M: Mode<D::Db>> SqlTx<D, M> {
    /// The connection statements of this unit run on. Every statement goes through here, so
    /// this is where a row kept from the last one stops being current.
    pub fn conn(&mut self) -> &mut Conn<D> {
        self.confined_declared = None;
        &mut self.handle
    }

    /// Finish an optimistic `update … where <key> = $1 and version = $2`: one row is success;
    /// none means the row is gone (`NotFound`) or moved on (`VersionConflict`).
    pub(crate) async fn settle_update(
        &mut self,
        affected: u64,
        exists_sql: &'static str,
        id: uuid::Uuid,
    ) -> Result<()> {
        if affected > 0 {
            return Ok(());
        }
        let found = crate::sql::query::<D>(exists_sql)
            .bind(id)
            .fetch_optional(self.conn())
            .await?;
        Err(match found {
            Some(_) => StoreError::VersionConflict,
            None => StoreError::NotFound,
        })
    }
}

#[async_trait]
impl<D: Dialect> ReadTx for SqlTx<D, Read> {
    async fn confine_to_org(&mut self, _org: OrgId) -> Result<()> {
        Ok(())
    }
}

#[async_trait]
impl<D: Dialect> ReadTx for SqlTx<D, Write> {
    async fn confine_to_org(&mut self, org: OrgId) -> Result<()> {
        match D::CONFINE_TO_ORG {
            Some(confine) => crate::declarative::confine_reading_declared(self, confine, org).await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<D: Dialect> Tx for SqlTx<D> {
    async fn commit(self: Box<Self>) -> Result<()> {
        self.handle.commit().await.map_err(D::map_err)
    }
}
