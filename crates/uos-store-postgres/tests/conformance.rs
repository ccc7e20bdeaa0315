//! The storage conformance suite against PostgreSQL: every case gets its own database on the
//! server named by `UOS_TEST_POSTGRES_URL`. Ignored by default; run with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use uos_store_postgres::{testing, PgStore};
use uos_store_tests::Fixture;

fn admin_url() -> String {
    std::env::var("UOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A migrated store in a fresh database, dropped again when the case passes.
async fn fresh_store() -> Fixture {
    let admin = admin_url();
    let url = testing::fresh_database(&admin)
        .await
        .expect("create a test database (is PostgreSQL running?)");
    let store = PgStore::connect(&url, 5).await.expect("connect");
    store.migrate().await.expect("migrate");
    Fixture::new(Arc::new(store)).on_teardown(async move {
        testing::drop_database(&admin, &url)
            .await
            .expect("drop the test database");
    })
}

uos_store_tests::conformance!(fresh_store(), #[ignore = "needs PostgreSQL"]);
