//! The backends every case runs on, each store created from the landed schema and migrated
//! forward.

use sqlx::migrate::Migrator;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use uos_store::Store;
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
    let fixture = match backend {
        Backend::Sqlite => sqlite().await,
        Backend::Postgres => postgres().await,
    };
    case(fixture.store.clone()).await;
    fixture.finish().await;
}

/// The landed schema's migrations for `backend` (`sqlite` or `postgres`).
async fn landed(backend: &str) -> Migrator {
    Migrator::new(Path::new(LANDED_SCHEMA).join(backend))
        .await
        .expect("read the landed schema's migrations")
}

/// A SQLite file in its own temporary directory, removed when the case ends.
async fn sqlite() -> Fixture {
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
    pool.close().await;
    let store = SqliteStore::open(&url).await.expect("open");
    store
        .migrate()
        .await
        .expect("the landed schema migrates forward");
    Fixture::new(Arc::new(store)).keep(dir)
}

/// A fresh database on the server of `UOS_TEST_POSTGRES_URL`, dropped when the case passes.
async fn postgres() -> Fixture {
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
