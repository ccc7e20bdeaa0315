//! Test support shared with other crates' tests: a fresh, empty database per test, and the
//! unprivileged role the service runs as.

use crate::error::db_err;
use sqlx::{Connection, Executor, PgConnection};
use uos_store::{Result, StoreError};

/// The server tests create their databases on: `UOS_TEST_POSTGRES_URL`, by default the local
/// cluster's `postgres` superuser.
pub fn admin_url() -> String {
    std::env::var("UOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

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

/// The role the service runs as in tests, as in production: it owns no table and is no
/// superuser, so the row-level security policies bind it. The tables belong to the role that
/// runs the migrations.
pub const SERVICE_ROLE: &str = "uos_service";

/// Let [`SERVICE_ROLE`] use the database at `owner_url` (whose role owns it and will run the
/// migrations): schema usage, and the rows of every table the owner has created or creates
/// later (default privileges, so this may come before the migrations). Returns `owner_url`
/// with the service role as its user (the test server trusts local connections).
pub async fn service_role_url(owner_url: &str) -> Result<String> {
    let mut owner = PgConnection::connect(owner_url).await.map_err(db_err)?;
    // Roles are shared by every database of the server, and tests create them concurrently.
    let statements = [
        format!(
            "do $$ begin create role {SERVICE_ROLE} login nosuperuser nobypassrls; \
             exception when duplicate_object or unique_violation then null; end $$"
        ),
        format!("grant usage on schema public to {SERVICE_ROLE}"),
        format!(
            "grant select, insert, update, delete on all tables in schema public \
             to {SERVICE_ROLE}"
        ),
        format!(
            "alter default privileges in schema public \
             grant select, insert, update, delete on tables to {SERVICE_ROLE}"
        ),
    ];
    for sql in statements {
        owner.execute(sql.as_str()).await.map_err(db_err)?;
    }
    owner.close().await.map_err(db_err)?;
    with_user(owner_url, SERVICE_ROLE)
}

/// `url` with `user` (and no password) as its user.
fn with_user(url: &str, user: &str) -> Result<String> {
    let scheme_end = url
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| StoreError::Backend(format!("not a postgres url: {url}")))?;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    Ok(format!(
        "{}{user}@{host}{}",
        &url[..scheme_end],
        &rest[authority_end..]
    ))
}

/// Drop a database made by [`fresh_database`], disconnecting anyone still using it.
pub async fn drop_database(admin_url: &str, url: &str) -> Result<()> {
    let name = test_database_name(url)?;
    let mut admin = PgConnection::connect(admin_url).await.map_err(db_err)?;
    admin
        .execute(format!(r#"drop database if exists "{name}" with (force)"#).as_str())
        .await
        .map_err(db_err)?;
    admin.close().await.map_err(db_err)
}

/// A failover as the service meets it, on a database made by [`fresh_database`]: with
/// `read_only`, every session opened from now on gets read-only transactions (as on a hot
/// standby) and every current session is cut, as a failing primary cuts them; without it, new
/// sessions may write again while open ones stay as they are (the service must notice by
/// itself).
pub async fn set_read_only(admin_url: &str, url: &str, read_only: bool) -> Result<()> {
    let name = test_database_name(url)?;
    let mut admin = PgConnection::connect(admin_url).await.map_err(db_err)?;
    let setting = if read_only {
        "set default_transaction_read_only = on"
    } else {
        "reset default_transaction_read_only"
    };
    admin
        .execute(format!(r#"alter database "{name}" {setting}"#).as_str())
        .await
        .map_err(db_err)?;
    if read_only {
        sqlx::query(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = $1 and pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .map_err(db_err)?;
    }
    admin.close().await.map_err(db_err)
}

/// The database name of `url`, if [`fresh_database`] made it (so formatting it into DDL is
/// safe).
fn test_database_name(url: &str) -> Result<&str> {
    database_name(url)
        .filter(|n| {
            n.starts_with("uos_test_") && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .ok_or_else(|| StoreError::Backend(format!("not a test database url: {url}")))
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
            with_user("postgres://postgres@127.0.0.1:5432/db?a=b", "svc").unwrap(),
            "postgres://svc@127.0.0.1:5432/db?a=b"
        );
        assert_eq!(
            with_user("postgres://u:p@h/db", "svc").unwrap(),
            "postgres://svc@h/db"
        );
        assert_eq!(
            with_user("postgres://h/db", "svc").unwrap(),
            "postgres://svc@h/db"
        );
        assert_eq!(
            database_name("postgres://h/uos_test_1?a=b"),
            Some("uos_test_1")
        );
    }
}
