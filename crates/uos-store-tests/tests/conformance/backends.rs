//! The backends every case runs on, each store created from the landed schema and migrated
//! forward.

use sqlx::migrate::Migrator;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use uos_store::{AuditRow, Store};
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
    let fixture = match backend {
        Backend::Sqlite => sqlite(legacy).await,
        Backend::Postgres => postgres(legacy).await,
    };
    case(fixture.store.clone()).await;
    fixture.finish().await;
}

/// The landed schema's audit insert and head move, for each of `legacy`.
const LANDED_APPEND: [&str; 2] = [
    "insert into audit_event (seq, audit_event_id, occurred_at, org_id, actor_id, action, \
     target_id, hash, payload) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    "update audit_head set seq = $1, hash = $2 where audit_head_id = 1",
];

/// The landed schema's migrations for `backend` (`sqlite` or `postgres`).
async fn landed(backend: &str) -> Migrator {
    Migrator::new(Path::new(LANDED_SCHEMA).join(backend))
        .await
        .expect("read the landed schema's migrations")
}

/// A SQLite file in its own temporary directory, removed when the case ends.
async fn sqlite(legacy: &[AuditRow]) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("uos.db").display());
    let options = url
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .expect("sqlite url")
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(options)
        .await
        .expect("create the database");
    landed("sqlite")
        .await
        .run(&pool)
        .await
        .expect("the landed schema applies");
    for row in legacy {
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
    pool.close().await;
    let store = SqliteStore::open(&url).await.expect("open");
    store
        .migrate()
        .await
        .expect("the landed schema migrates forward");
    Fixture::new(Arc::new(store)).keep(dir)
}

/// A fresh database on the server of `UOS_TEST_POSTGRES_URL`, dropped when the case passes.
async fn postgres(legacy: &[AuditRow]) -> Fixture {
    let admin = testing::admin_url();
    let url = testing::fresh_database(&admin)
        .await
        .expect("create a test database (is PostgreSQL running?)");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    landed("postgres")
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
    for row in legacy {
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
