//! Test support shared with other crates' tests: a fresh, empty database per test.

use crate::error::db_err;
use sqlx::{Connection, Executor, PgConnection};
use uos_store::{Result, StoreError};

/// Create an empty database `uos_test_<uuid>` on the server of `admin_url` and return a URL
/// for it (same server and credentials). Not migrated: call [`crate::PgStore::migrate`].
pub async fn fresh_database(admin_url: &str) -> Result<String> {
    let name = format!("uos_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(admin_url).await.map_err(db_err)?;
    // The name is generated above (hex only), so formatting it into DDL is safe.
    admin
        .execute(format!(r#"create database "{name}""#).as_str())
        .await
        .map_err(db_err)?;
    admin.close().await.map_err(db_err)?;
    with_database(admin_url, &name)
}

/// Drop a database made by [`fresh_database`], disconnecting anyone still using it.
pub async fn drop_database(admin_url: &str, url: &str) -> Result<()> {
    let name = database_name(url)
        .filter(|n| {
            n.starts_with("uos_test_") && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .ok_or_else(|| StoreError::Backend(format!("not a test database url: {url}")))?;
    let mut admin = PgConnection::connect(admin_url).await.map_err(db_err)?;
    admin
        .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
        .await
        .map_err(db_err)?;
    admin.close().await.map_err(db_err)
}

/// `admin_url` with its database path replaced by `name` (query parameters kept).
fn with_database(admin_url: &str, name: &str) -> Result<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| StoreError::Backend(format!("not a postgres url: {admin_url}")))?;
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Ok(url)
}

fn database_name(url: &str) -> Option<&str> {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let after_scheme = &base[base.find("://")? + 3..];
    after_scheme.split_once('/').map(|(_, db)| db)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").unwrap(),
            "postgres://h:5432/x"
        );
        assert!(with_database("nonsense", "x").is_err());
        assert_eq!(
            database_name("postgres://h/uos_test_1?a=b"),
            Some("uos_test_1")
        );
    }
}
