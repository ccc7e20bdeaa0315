//! Conformance cases of the store itself: liveness and pool gauges.

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
