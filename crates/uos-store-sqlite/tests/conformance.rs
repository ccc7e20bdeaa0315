//! The storage conformance suite against SQLite (a fresh temp file per test), plus the
//! SQLite-specific promises of `SqliteStore::open`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use uos_store::Store;
use uos_store_sqlite::SqliteStore;
use uos_store_tests::Fixture;

/// A migrated store in its own temporary directory, removed when the case ends.
async fn fresh_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("uos.db").display());
    let store = SqliteStore::open(&url).await.expect("open");
    store.migrate().await.expect("migrate");
    Fixture::new(Arc::new(store)).keep(dir)
}

uos_store_tests::conformance!(fresh_store());

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
