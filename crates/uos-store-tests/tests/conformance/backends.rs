//! The backends every case runs on, each store created from the landed schema and migrated
//! forward.

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use uos_store::{AuditRow, Session, Store};
use uos_store_postgres::{testing, PgStore};
use uos_store_sqlite::SqliteStore;
use uos_store_tests::Fixture;

/// Where the migrations of the last landed schema are kept, one folder per backend.
const LANDED_SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/landed-6754f4d");

/// The backends of the suite (one test per case and backend, see `uos_conformance`).
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Run `case` against a fresh store of `backend`, then close and clean up.
pub async fn run<F, Fut>(backend: Backend, case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    run_upgraded(backend, &[], case).await;
}

/// [`run`], with `legacy` stored as the landed schema stored audit events (one global chain,
/// its head moved to the last) before the store migrates forward.
pub async fn run_upgraded<F, Fut>(backend: Backend, legacy: &[AuditRow], case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let landed = Landed {
        audit: legacy,
        ..Landed::default()
    };
    run_landed(backend, &landed, case).await;
}

/// Rows the landed schema stored, written through its own tables before the store migrates
/// forward.
#[derive(Debug, Default)]
pub struct Landed<'a> {
    /// Audit events of its one global chain, its head moved to the last.
    pub audit: &'a [AuditRow],
    /// Login sessions with their refresh tokens, each of a user of its own.
    pub sessions: &'a [LandedSession],
}

/// A session as the landed schema stored it: a row per refresh token, used or not.
#[derive(Debug, Clone)]
pub struct LandedSession {
    pub user_id: uuid::Uuid,
    pub session: Session,
    /// Hash, creation time and use time of each refresh token.
    pub tokens: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)>,
}

/// [`run`] on a store that holds `landed` from before its migrations.
pub async fn run_landed<F, Fut>(backend: Backend, landed: &Landed<'_>, case: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let fixture = match backend {
        Backend::Sqlite => sqlite(landed).await,
        Backend::Postgres => postgres(landed).await,
    };
    case(fixture.store.clone()).await;
    fixture.finish().await;
}

/// The landed schema's inserts of a user, a session and a refresh token, for
/// [`LandedSession`].
const LANDED_SESSION: [&str; 3] = [
    "insert into user_account (user_id, email, status, platform_admin, preferences, \
     created_at, updated_at, version) values ($1, $2, 'active', false, '{}', $3, $3, 1)",
    "insert into session (session_id, user_id, created_at, expires_at, revoked_at, \
     last_seen_at, user_agent, ip) values ($1, $2, $3, $4, $5, $6, $7, $8)",
    "insert into refresh_token (token_hash, session_id, created_at, used_at) \
     values ($1, $2, $3, $4)",
];

/// Store `landed`'s sessions on `conn` through the landed schema's tables.
async fn store_landed_sessions<DB: sqlx::Database>(
    conn: &mut DB::Connection,
    landed: &[LandedSession],
) where
    for<'q> uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<DateTime<Utc>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    for l in landed {
        let s = &l.session;
        sqlx::query::<DB>(LANDED_SESSION[0])
            .bind(l.user_id)
            .bind(format!("landed-{}@example.com", l.user_id))
            .bind(s.created_at)
            .execute(&mut *conn)
            .await
            .expect("a landed user");
        sqlx::query::<DB>(LANDED_SESSION[1])
            .bind(s.id.0)
            .bind(l.user_id)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(s.revoked_at)
            .bind(s.last_seen_at)
            .bind(s.user_agent.clone())
            .bind(s.ip.clone())
            .execute(&mut *conn)
            .await
            .expect("a landed session");
        for (hash, created_at, used_at) in &l.tokens {
            sqlx::query::<DB>(LANDED_SESSION[2])
                .bind(hash.clone())
                .bind(s.id.0)
                .bind(*created_at)
                .bind(*used_at)
                .execute(&mut *conn)
                .await
                .expect("a landed refresh token");
        }
    }
}

/// The landed schema's audit insert and head move, for each of `legacy`.
const LANDED_APPEND: [&str; 2] = [
    "insert into audit_event (seq, audit_event_id, occurred_at, org_id, actor_id, action, \
     target_id, hash, payload) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    "update audit_head set seq = $1, hash = $2 where audit_head_id = 1",
];

/// The landed schema's migrations for `backend` (`sqlite` or `postgres`).
async fn landed_schema(backend: &str) -> Migrator {
    Migrator::new(Path::new(LANDED_SCHEMA).join(backend))
        .await
        .expect("read the landed schema's migrations")
}

/// A SQLite file in its own temporary directory, removed when the case ends.
async fn sqlite(landed: &Landed<'_>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("uos.db").display());
    let options = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .expect("sqlite url")
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("create the database");
    landed_schema("sqlite")
        .await
        .run(&pool)
        .await
        .expect("the landed schema applies");
    for row in landed.audit {
        bind_landed(sqlx::query(LANDED_APPEND[0]), row)
            .execute(&pool)
            .await
            .expect("a landed audit event");
        sqlx::query(LANDED_APPEND[1])
            .bind(row.seq)
            .bind(&row.hash)
            .execute(&pool)
            .await
            .expect("the landed head moves");
    }
    let mut conn = pool.acquire().await.expect("connect");
    store_landed_sessions::<sqlx::Sqlite>(&mut conn, landed.sessions).await;
    drop(conn);
    pool.close().await;
    let store = SqliteStore::open(&url).await.expect("open");
    store
        .migrate()
        .await
        .expect("the landed schema migrates forward");
    Fixture::new(Arc::new(store)).keep(dir)
}

/// A fresh database on the server of `UOS_TEST_POSTGRES_URL`, dropped when the case passes.
async fn postgres(landed: &Landed<'_>) -> Fixture {
    let admin = testing::admin_url();
    let url = testing::fresh_database(&admin)
        .await
        .expect("create a test database (is PostgreSQL running?)");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    landed_schema("postgres")
        .await
        .run(&pool)
        .await
        .expect("the landed schema applies");
    let mut tx = pool.begin().await.expect("begin");
    // The landed audit table is under row-level security.
    sqlx::query("select set_config('uos.org', '*', true)")
        .execute(&mut *tx)
        .await
        .expect("scope every org");
    for row in landed.audit {
        bind_landed(sqlx::query(LANDED_APPEND[0]), row)
            .execute(&mut *tx)
            .await
            .expect("a landed audit event");
        sqlx::query(LANDED_APPEND[1])
            .bind(row.seq)
            .bind(&row.hash)
            .execute(&mut *tx)
            .await
            .expect("the landed head moves");
    }
    store_landed_sessions::<sqlx::Postgres>(&mut *tx, landed.sessions).await;
    tx.commit().await.expect("commit");
    pool.close().await;
    let store = PgStore::connect(&url, 5).await.expect("connect");
    store
        .migrate()
        .await
        .expect("the landed schema migrates forward");
    Fixture::new(Arc::new(store)).on_teardown(async move {
        testing::drop_database(&admin, &url)
            .await
            .expect("drop the test database");
    })
}

/// `query` with `row` bound to [`LANDED_APPEND`]'s insert.
fn bind_landed<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    row: &'q AuditRow,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<uuid::Uuid>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    chrono::DateTime<chrono::Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(row.seq)
        .bind(row.id)
        .bind(row.occurred_at)
        .bind(row.org_id.map(|o| o.0))
        .bind(row.actor_id.as_deref())
        .bind(row.action.as_str())
        .bind(row.target_id.as_deref())
        .bind(row.hash.as_str())
        .bind(row.payload.to_string())
}
