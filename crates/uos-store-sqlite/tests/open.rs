//! The SQLite-specific promises of `SqliteStore::open` (the conformance suite of the port runs
//! in `uos-store-tests`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use uos_store::Store;
use uos_store_sqlite::SqliteStore;

#[tokio::test]
async fn open_creates_parent_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/uos.db");
    let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("open creates the missing directories and file");
    store.migrate().await.unwrap();
    store.migrate().await.expect("migrating twice is a no-op");
    assert!(path.exists(), "database file created");
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&uos_store_tests::fixtures::org())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(
        path.with_file_name("uos.db-wal").exists(),
        "WAL journal mode leaves a -wal file next to the database"
    );
    store.close().await;
}

#[tokio::test]
async fn in_memory_urls_are_refused() {
    let err = SqliteStore::open("sqlite::memory:").await.unwrap_err();
    assert!(
        matches!(err, uos_store::StoreError::Unavailable(_)),
        "two pools cannot share an in-memory database: {err:?}"
    );
}

#[tokio::test]
async fn a_read_only_open_creates_migrates_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uos.db");
    let url = format!("sqlite://{}", path.display());
    let err = SqliteStore::open_read_only(&url).await.unwrap_err();
    assert!(err.to_string().contains("no database at"), "{err}");
    assert!(!path.exists(), "nothing is created");

    // A database without the schema is refused, not migrated.
    SqliteStore::open(&url).await.unwrap().close().await;
    let err = SqliteStore::open_read_only(&url).await.unwrap_err();
    assert!(err.to_string().contains("uosctl migrate"), "{err}");

    let store = SqliteStore::open(&url).await.unwrap();
    store.migrate().await.unwrap();
    let org = uos_store_tests::fixtures::org();
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&org).await.unwrap();
    tx.commit().await.unwrap();
    store.close().await;

    let ro = SqliteStore::open_read_only(&url).await.unwrap();
    let mut read = ro.read().await.unwrap();
    assert!(read.get_org_by_slug(&org.slug).await.unwrap().is_some());
    drop(read);
    // Not even a write transaction starts.
    let err = ro.begin().await.err().expect("writes are refused");
    assert!(matches!(err, uos_store::StoreError::ReadOnly(_)), "{err:?}");
    ro.close().await;
}

#[tokio::test]
async fn the_inventory_counts_every_table_of_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&format!("sqlite://{}/uos.db", dir.path().display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&uos_store_tests::fixtures::org())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tables: Vec<String> = sqlx::query_scalar(
        "select name from sqlite_master where type = 'table' \
         and name not like 'sqlite_%' and name <> '_sqlx_migrations'",
    )
    .fetch_all(
        &sqlx::SqlitePool::connect(&format!("sqlite://{}/uos.db", dir.path().display()))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    tables.sort();
    assert_eq!(tables, uos_store_sql::inventory::TABLES);
    let inventory = uos_store::Inventory::read(&mut *store.read().await.unwrap())
        .await
        .unwrap();
    let names: Vec<_> = inventory
        .row_counts
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(names, uos_store_sql::inventory::TABLES);
    assert!(inventory.row_counts.contains(&("org".to_owned(), 1)));
    store.close().await;
}
