//! Conformance cases of the store itself: liveness, pool gauges and leader locks.

use std::sync::Arc;
use uos_conformance::conformance;
use uos_store::Store;

#[conformance]
async fn ping_and_pool_stats(store: Arc<dyn Store>) {
    store.ping().await.expect("ping answers");
    assert!(
        ["sqlite", "postgres"].contains(&store.backend()),
        "backend() names the backend"
    );
    let mut tx = store.read().await.expect("read handle");
    assert_eq!(tx.count_users().await.expect("count"), 0);
    drop(tx);
    let stats = store.pool_stats();
    assert!(stats.max >= 1, "a pool has a maximum: {stats:?}");
    assert!(stats.size <= stats.max, "size within max: {stats:?}");
    assert!(stats.idle <= stats.size, "idle within size: {stats:?}");
}

#[conformance]
async fn one_holder_of_a_leader_lock_at_a_time(store: Arc<dyn Store>) {
    let mut first = store
        .try_lock_leader("reconciler")
        .await
        .unwrap()
        .expect("a free lock is taken");
    assert!(first.still_held().await);
    assert!(
        store.try_lock_leader("reconciler").await.unwrap().is_none(),
        "a held lock is not taken twice"
    );
    let other = store.try_lock_leader("another-job").await.unwrap();
    assert!(other.is_some(), "locks of other names are independent");
    drop(first);
    // Dropping a PostgreSQL lock closes its connection, and the server frees the lock once it
    // has seen the close: maybe not before the next statement on another connection.
    let mut again = None;
    for _ in 0..100 {
        again = store.try_lock_leader("reconciler").await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a released lock is free again within 5 s");
}
