//! SQLite implementation of the storage port: the embedded default, one file in the data dir.
//!
//! Two pools over one WAL-mode file. Writes go through a pool of exactly one connection, so
//! write transactions queue inside the process instead of racing for SQLite's single write
//! lock (and never fail with `SQLITE_BUSY` on a lock upgrade). Reads use a separate pool that
//! WAL lets run alongside the writer; those connections are `query_only`.

mod dialect;
mod error;

use async_trait::async_trait;
pub use dialect::SqliteDialect;
use error::db_err;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection as _;
use std::str::FromStr;
use std::time::Duration;
use uos_store::{Inventory, LeaderLock, PoolStats, ReadTx, Result, Store, StoreError, Tx};
use uos_store_sql::{SqlRead, SqlTx};

/// Connections of the read pool: WAL readers never block the writer or each other.
const READERS: u32 = 8;
/// How long a statement waits for a lock held by another process (e.g. the CLI).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `begin()` waits for the single writer connection before reporting `Unavailable`.
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The forward-only migrations in `migrations/sqlite/` (at the workspace root).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// An exclusive lock on a file; the operating system drops it with the file handle.
#[derive(Debug)]
struct FileLeaderLock {
    _file: std::fs::File,
}

#[async_trait]
impl LeaderLock for FileLeaderLock {
    async fn still_held(&mut self) -> bool {
        true
    }
}

/// The SQLite store. Cloning shares the pools.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// The database file: leader locks are files beside it.
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Open (creating it and its parent directory if missing) the database at `url`, e.g.
    /// `sqlite://data/uos.db`. In-memory URLs are refused: the two pools need one shared file.
    #[tracing::instrument(skip_all)]
    pub async fn open(url: &str) -> Result<Self> {
        let base = Self::options(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        if let Some(dir) = base.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        Self::connect(base.clone(), base).await
    }

    /// Open the existing database at `url` only to read it: nothing is created, migrated or
    /// written (every connection is `query_only`). Fails unless its schema is exactly this
    /// build's.
    #[tracing::instrument(skip_all)]
    pub async fn open_read_only(url: &str) -> Result<Self> {
        let base = Self::options(url)?;
        if !base.get_filename().is_file() {
            return Err(StoreError::Unavailable(format!(
                "no database at {}",
                base.get_filename().display()
            )));
        }
        let read_only = base.pragma("query_only", "true");
        let store = Self::connect(read_only.clone(), read_only).await?;
        let applied = sqlx::query_scalar(uos_store_sql::schema::APPLIED_VERSION_SQL)
            .fetch_one(&store.reader)
            .await;
        uos_store_sql::schema::check_schema(applied, &MIGRATOR)?;
        Ok(store)
    }

    /// The options every connection to `url` shares.
    fn options(url: &str) -> Result<SqliteConnectOptions> {
        // Two pools over one in-memory database would be two different databases.
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::Unavailable(
                "in-memory SQLite is not supported: use a file (e.g. in a temp dir)".into(),
            ));
        }
        Ok(SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad sqlite url: {e}")))?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT))
    }

    /// The store over a writer pool of one connection with `writer` options and a read pool
    /// with `reader` options (made `query_only` here).
    async fn connect(writer: SqliteConnectOptions, reader: SqliteConnectOptions) -> Result<Self> {
        let path = writer.get_filename().to_path_buf();
        // The writer connection lives as long as the store: it owns the WAL files and is the
        // one place writes happen, so recycling it buys nothing.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
            .connect_with(writer)
            .await
            .map_err(db_err)?;
        // `query_only` turns an accidental write through `read()` into an error instead of a
        // second writer competing with the first.
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(reader.pragma("query_only", "true"))
            .await
            .map_err(db_err)?;
        Ok(Self {
            writer,
            reader,
            path,
        })
    }

    /// Back the database up into the new file `dest` while the service runs, and take the
    /// inventory of the copy: exactly what a restore of `dest` must hold.
    #[tracing::instrument(skip_all)]
    pub async fn backup_into(&self, dest: &std::path::Path) -> Result<Inventory> {
        self.snapshot_into(dest).await?;
        let copy = Self::open_read_only(&format!("sqlite://{}", dest.display())).await?;
        let inventory = async { Inventory::read(&mut *copy.read().await?).await }.await;
        copy.close().await;
        inventory
    }

    /// Put the [`SqliteStore::backup_into`] file `src` where `url` keeps the database, which
    /// must not exist yet (nor its WAL files).
    #[tracing::instrument(skip_all)]
    pub async fn restore_from(url: &str, src: &std::path::Path) -> Result<()> {
        let path = Self::options(url)?.get_filename().to_path_buf();
        let unavailable = |e: std::io::Error| {
            StoreError::Unavailable(format!("restoring {}: {e}", path.display()))
        };
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.clone().into_os_string();
            p.push(suffix);
            if std::path::Path::new(&p).exists() {
                return Err(StoreError::Unavailable(format!(
                    "{} exists: restore into an empty store",
                    p.to_string_lossy()
                )));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(unavailable)?;
        }
        // Copied under a temporary name and renamed, so a crash leaves no half a database
        // where the service would open it.
        let mut partial = path.clone().into_os_string();
        partial.push(".restoring");
        let partial = std::path::PathBuf::from(partial);
        tokio::fs::copy(src, &partial).await.map_err(unavailable)?;
        tokio::fs::File::open(&partial)
            .await
            .map_err(unavailable)?
            .sync_all()
            .await
            .map_err(unavailable)?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(unavailable)
    }

    /// Write a consistent copy of the database into the new file `dest` (`VACUUM INTO`: one
    /// read transaction, so writers go on under WAL).
    async fn snapshot_into(&self, dest: &std::path::Path) -> Result<()> {
        let dest = dest
            .to_str()
            .ok_or_else(|| StoreError::Unavailable(format!("{} is not UTF-8", dest.display())))?;
        // A connection of its own: the pools' may be `query_only`, which refuses VACUUM of any
        // kind, and the writer's is the service's one way to write.
        let options = SqliteConnectOptions::new()
            .filename(&self.path)
            .busy_timeout(BUSY_TIMEOUT);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(db_err)?;
        let done = sqlx::query("vacuum into $1")
            .bind(dest)
            .execute(&mut conn)
            .await
            .map_err(db_err);
        conn.close().await.map_err(db_err)?;
        done.map(drop)
    }

    /// Apply the forward-only migrations in `migrations/sqlite/` (at the workspace root).
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))
    }
}

#[async_trait]
impl Store for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn begin(&self) -> Result<Box<dyn Tx>> {
        // IMMEDIATE takes the write lock up front: a deferred transaction that reads first
        // could otherwise fail to upgrade when another process wrote in between.
        let tx = self
            .writer
            .begin_with("begin immediate")
            .await
            .map_err(db_err)?;
        Ok(Box::new(SqlTx::<SqliteDialect>::write(tx)))
    }

    async fn read(&self) -> Result<Box<dyn ReadTx>> {
        let conn = self.reader.acquire().await.map_err(db_err)?;
        Ok(Box::new(SqlRead::<SqliteDialect>::read(conn)))
    }

    async fn try_lock_leader(&self, name: &str) -> Result<Option<Box<dyn LeaderLock>>> {
        let mut path = self.path.clone().into_os_string();
        path.push(format!(".{name}.lock"));
        let unavailable = |e: std::io::Error| StoreError::Unavailable(format!("leader lock: {e}"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(unavailable)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(FileLeaderLock { _file: file }))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(unavailable(e)),
        }
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("select 1")
            .execute(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: self.reader.options().get_max_connections(),
        }
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}
