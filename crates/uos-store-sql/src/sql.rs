//! The thin layer over sqlx that lets one implementation serve every backend: statements,
//! query builders and rows generic over a [`Dialect`], without `sqlx::Any` (which would lose
//! native uuid and timestamptz types).
//!
//! Generic code cannot name `Uuid: Encode<'q, D::Db>` as a bound that callers inherit (Rust
//! only carries bounds on `Self` and its associated types). So each value type the store binds
//! or reads is a supertrait of [`SqlDb`] ([`Binds`], [`Reads`]), which every sqlx database that
//! supports the type gets for free; a [`Param`] wrapper turns that back into `Encode`.

use crate::Dialect;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::types::Json;
use sqlx::{Arguments as _, ColumnIndex, Database, Decode, Encode, Row as _, Type};
use uos_store::{Result, StoreError};
use uuid::Uuid;

/// The connection a statement runs on (a transaction's or a pooled one).
pub type Conn<D> = <<D as Dialect>::Db as Database>::Connection;
/// A row as sqlx returns it.
pub type RawRow<D> = <<D as Dialect>::Db as Database>::Row;

/// Values of type `T` have a database type (independent of any borrow).
pub trait Typed<T: ?Sized>: Database {
    fn declared_type() -> Self::TypeInfo;
}

impl<DB: Database, T: Type<DB> + ?Sized> Typed<T> for DB {
    fn declared_type() -> DB::TypeInfo {
        T::type_info()
    }
}

/// A value of type `T` can be bound to a statement whose arguments live for `'q`.
pub trait Binds<'q, T>: Typed<T> {
    fn encode_value(value: &T, buf: &mut <Self as Database>::ArgumentBuffer<'q>) -> EncodeResult;
    fn value_type(value: &T) -> Option<Self::TypeInfo>;
    fn value_size(value: &T) -> usize;
}

type EncodeResult = std::result::Result<IsNull, BoxDynError>;

impl<'q, DB: Database, T: Encode<'q, DB> + Type<DB>> Binds<'q, T> for DB {
    fn encode_value(value: &T, buf: &mut <DB as Database>::ArgumentBuffer<'q>) -> EncodeResult {
        value.encode_by_ref(buf)
    }
    fn value_type(value: &T) -> Option<DB::TypeInfo> {
        value.produces()
    }
    fn value_size(value: &T) -> usize {
        value.size_hint()
    }
}

/// A column of type `T` can be read from a row borrowed for `'r`.
pub trait Reads<'r, T>: Database {
    fn read_column(row: &'r Self::Row, column: &str) -> std::result::Result<T, sqlx::Error>;
}

impl<'r, DB: Database, T: Decode<'r, DB> + Type<DB>> Reads<'r, T> for DB
where
    for<'c> &'c str: ColumnIndex<DB::Row>,
{
    fn read_column(row: &'r DB::Row, column: &str) -> std::result::Result<T, sqlx::Error> {
        row.try_get(column)
    }
}

/// Declares [`SqlDb`] and its blanket implementation from one list of value types, so the two
/// cannot drift apart. `'q` in a type is the lifetime of the statement's arguments (for
/// binds) or of the row (for reads).
macro_rules! sql_db {
    (binds: [$($bind:ty),* $(,)?], reads: [$($read:ty),* $(,)?] $(,)?) => {
        /// Every value type the store exchanges with its database. A sqlx database that
        /// supports them all is an `SqlDb` without further ado.
        pub trait SqlDb:
            Database $(+ for<'q> Binds<'q, $bind>)* $(+ for<'q> Reads<'q, $read>)*
        {
        }

        impl<DB> SqlDb for DB where
            DB: Database $(+ for<'q> Binds<'q, $bind>)* $(+ for<'q> Reads<'q, $read>)*
        {
        }
    };
}

sql_db! {
    binds: [
        Uuid,
        Option<Uuid>,
        i64,
        Option<i64>,
        i32,
        Option<i32>,
        bool,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        &'q str,
        Option<&'q str>,
        String,
        &'q String,
        &'q Option<String>,
        Vec<u8>,
        &'q [u8],
        Json<Box<serde_json::value::RawValue>>,
        Option<Json<Box<serde_json::value::RawValue>>>,
    ],
    reads: [
        Uuid,
        Option<Uuid>,
        i64,
        Option<i64>,
        Option<i32>,
        bool,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        &'q str,
        Option<&'q str>,
        String,
        Option<String>,
        Vec<u8>,
        Json<serde_json::Value>,
        Option<Json<serde_json::Value>>,
        Json<Vec<String>>,
    ],
}

/// A bound value: `Encode` for any database that [`Binds`] its type.
#[derive(Debug)]
pub struct Param<T>(pub T);

impl<'q, DB: Binds<'q, T>, T> Encode<'q, DB> for Param<T> {
    fn encode_by_ref(&self, buf: &mut <DB as Database>::ArgumentBuffer<'q>) -> EncodeResult {
        DB::encode_value(&self.0, buf)
    }
    fn produces(&self) -> Option<DB::TypeInfo> {
        DB::value_type(&self.0)
    }
    fn size_hint(&self) -> usize {
        DB::value_size(&self.0)
    }
}

impl<DB: Typed<T>, T> Type<DB> for Param<T> {
    fn type_info() -> DB::TypeInfo {
        <DB as Typed<T>>::declared_type()
    }
}

/// A JSON value as a parameter: `jsonb` on PostgreSQL, text on SQLite.
pub fn json<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<Json<Box<serde_json::value::RawValue>>> {
    serde_json::value::to_raw_value(value)
        .map(Json)
        .map_err(|e| StoreError::Backend(format!("encoding a JSON column: {e}")))
}

/// What an `execute` changed.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows: u64,
}

impl Done {
    pub fn new(rows: u64) -> Self {
        Self { rows }
    }
    pub fn rows_affected(&self) -> u64 {
        self.rows
    }
}

/// A row of dialect `D`; read its columns with [`get`].
pub struct Row<D: Dialect>(RawRow<D>);

impl<D: Dialect> std::fmt::Debug for Row<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row").finish_non_exhaustive()
    }
}

impl<D: Dialect> Row<D> {
    pub fn new(row: RawRow<D>) -> Self {
        Self(row)
    }
}

/// Column `column` of `row` as a `T`.
pub fn get<'r, D: Dialect, T>(row: &'r Row<D>, column: &str) -> Result<T>
where
    D::Db: Reads<'r, T>,
{
    <D::Db as Reads<'r, T>>::read_column(&row.0, column).map_err(D::map_err)
}

/// The arguments of a statement of dialect `D`.
pub type Args<'q, D> = <<D as Dialect>::Db as Database>::Arguments<'q>;

/// Parameters as they are bound; an encoding error is kept for the execution to report, as
/// sqlx does.
struct Params<'q, D: Dialect> {
    args: Args<'q, D>,
    error: Option<BoxDynError>,
}

impl<'q, D: Dialect> Params<'q, D> {
    fn new() -> Self {
        Self {
            args: Default::default(),
            error: None,
        }
    }

    fn add<T: Send + 'q>(&mut self, value: T)
    where
        D::Db: Binds<'q, T>,
    {
        if self.error.is_none() {
            if let Err(e) = self.args.add(Param(value)) {
                self.error = Some(e);
            }
        }
    }

    fn ready(self) -> Result<Args<'q, D>> {
        match self.error {
            Some(e) => Err(StoreError::Backend(format!("binding a parameter: {e}"))),
            None => Ok(self.args),
        }
    }
}

/// One statement with its bound parameters (`$1`, `$2`… placeholders on every backend).
pub struct Query<'q, D: Dialect> {
    sql: &'q str,
    params: Params<'q, D>,
}

/// Start a statement of dialect `D`.
pub fn query<D: Dialect>(sql: &str) -> Query<'_, D> {
    Query {
        sql,
        params: Params::new(),
    }
}

impl<'q, D: Dialect> Query<'q, D> {
    /// Bind the next `$n`.
    pub fn bind<T: Send + 'q>(mut self, value: T) -> Self
    where
        D::Db: Binds<'q, T>,
    {
        self.params.add(value);
        self
    }

    pub async fn execute(self, conn: &mut Conn<D>) -> Result<Done> {
        let args = self.params.ready()?;
        D::execute(conn, self.sql, args).await.map_err(D::map_err)
    }

    pub async fn fetch_optional(self, conn: &mut Conn<D>) -> Result<Option<Row<D>>> {
        let args = self.params.ready()?;
        let row = D::fetch_optional(conn, self.sql, args)
            .await
            .map_err(D::map_err)?;
        Ok(row.map(Row))
    }

    pub async fn fetch_one(self, conn: &mut Conn<D>) -> Result<Row<D>> {
        self.fetch_optional(conn)
            .await?
            .ok_or_else(|| StoreError::Backend("statement returned no row".into()))
    }

    pub async fn fetch_all(self, conn: &mut Conn<D>) -> Result<Vec<Row<D>>> {
        let args = self.params.ready()?;
        let rows = D::fetch_all(conn, self.sql, args)
            .await
            .map_err(D::map_err)?;
        Ok(rows.into_iter().map(Row).collect())
    }
}

impl<D: Dialect> std::fmt::Debug for Query<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

/// A statement assembled from pieces (filters, keyset cursors, id lists). Each bound value's
/// placeholder is written by the backend (`$n` on PostgreSQL, `?` on SQLite).
pub struct QueryBuilder<'q, D: Dialect> {
    sql: String,
    params: Params<'q, D>,
}

impl<D: Dialect> std::fmt::Debug for QueryBuilder<'_, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryBuilder")
            .field("sql", &self.sql)
            .finish_non_exhaustive()
    }
}

impl<'q, D: Dialect> QueryBuilder<'q, D> {
    pub fn new(init: impl Into<String>) -> Self {
        Self {
            sql: init.into(),
            params: Params::new(),
        }
    }

    pub fn push(&mut self, sql: impl std::fmt::Display) -> &mut Self {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = write!(self.sql, "{sql}");
        self
    }

    /// Append the next parameter's placeholder and bind it.
    pub fn push_bind<T: Send + 'q>(&mut self, value: T) -> &mut Self
    where
        D::Db: Binds<'q, T>,
    {
        self.params.add(value);
        // Writing into a String cannot fail.
        let _ = self.params.args.format_placeholder(&mut self.sql);
        self
    }

    /// Push `values` as a comma-separated list of parameters.
    pub fn push_list<T: Send + 'q>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        D::Db: Binds<'q, T>,
    {
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(value);
        }
        self
    }

    pub async fn execute(self, conn: &mut Conn<D>) -> Result<Done> {
        let args = self.params.ready()?;
        D::execute(conn, &self.sql, args).await.map_err(D::map_err)
    }

    pub async fn fetch_optional(self, conn: &mut Conn<D>) -> Result<Option<Row<D>>> {
        let args = self.params.ready()?;
        let row = D::fetch_optional(conn, &self.sql, args)
            .await
            .map_err(D::map_err)?;
        Ok(row.map(Row))
    }

    pub async fn fetch_all(self, conn: &mut Conn<D>) -> Result<Vec<Row<D>>> {
        let args = self.params.ready()?;
        let rows = D::fetch_all(conn, &self.sql, args)
            .await
            .map_err(D::map_err)?;
        Ok(rows.into_iter().map(Row).collect())
    }
}
