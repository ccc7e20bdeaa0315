//! `PgStore::connect_read_only`, for tools that must change nothing: it migrates nothing,
//! refuses a schema other than this build's, and PostgreSQL itself refuses its writes.
//! Ignored by default; run with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use uos_store::Store;
use uos_store_postgres::{testing, PgStore};
use uos_store_tests::fixtures;

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_read_only_connection_migrates_and_writes_nothing() {
    let url = testing::fresh_database(&testing::admin_url())
        .await
        .expect("a test database");
    let err = PgStore::connect_read_only(&url, 1).await.unwrap_err();
    assert!(err.to_string().contains("uosctl migrate"), "{err}");

    let owner = PgStore::connect(&url, 1).await.unwrap();
    owner.migrate().await.unwrap();
    let org = fixtures::org();
    let mut tx = owner.begin().await.unwrap();
    tx.insert_org(&org).await.unwrap();
    tx.commit().await.unwrap();
    owner.close().await;

    let ro = PgStore::connect_read_only(&url, 1).await.unwrap();
    let mut read = ro.read().await.unwrap();
    assert!(read.get_org_by_slug(&org.slug).await.unwrap().is_some());
    drop(read);
    let mut tx = ro.begin().await.unwrap();
    let err = tx.insert_org(&fixtures::org()).await.unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    drop(tx);
    ro.close().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn the_inventory_counts_every_table_of_the_schema() {
    use sqlx::Connection as _;
    let url = testing::fresh_database(&testing::admin_url())
        .await
        .expect("a test database");
    let store = PgStore::connect(&url, 1).await.unwrap();
    store.migrate().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables \
         where table_schema = 'public' and table_type = 'BASE TABLE' \
         and table_name <> '_sqlx_migrations' order by 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, uos_store_sql::inventory::TABLES);
    let inventory = uos_store::Inventory::read(&mut *store.read().await.unwrap())
        .await
        .unwrap();
    assert_eq!(inventory.row_counts.len(), tables.len());
    store.close().await;
    testing::drop_database(&testing::admin_url(), &url)
        .await
        .unwrap();
}
