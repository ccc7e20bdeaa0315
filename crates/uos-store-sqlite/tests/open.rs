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
