//! Whether a store's schema is the one this build was written for: tools that open a store
//! without migrating it (`uosctl declarative plan`) refuse any other, since reading a schema
//! they do not know could quietly answer wrong.

use crate::SqlxResult;
use sqlx::migrate::Migrator;
use uos_store::{Result, StoreError};

/// The newest migration a store records as applied, as read from sqlx's `_sqlx_migrations`.
pub const APPLIED_VERSION_SQL: &str = "select max(version) from _sqlx_migrations where success";

/// `applied`: the result of [`APPLIED_VERSION_SQL`]; `migrations`: this build's.
pub fn check_schema(applied: SqlxResult<Option<i64>>, migrations: &Migrator) -> Result<()> {
    let expected = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let unavailable = |m: String| Err(StoreError::Unavailable(m));
    match applied {
        Ok(Some(v)) if v == expected => Ok(()),
        Ok(None) => unavailable("the store has no schema yet: run `uosctl migrate` first".into()),
        Ok(Some(v)) if v < expected => unavailable(format!(
            "the store's schema is at migration {v}, older than this build's {expected}: run \
             `uosctl migrate` first"
        )),
        Ok(Some(v)) => unavailable(format!(
            "the store's schema is at migration {v}, newer than this build's {expected}: use \
             the release that migrated it"
        )),
        Err(e) => unavailable(format!(
            "cannot read which migrations the store has ({e}); a new store needs `uosctl \
             migrate` first"
        )),
    }
}
