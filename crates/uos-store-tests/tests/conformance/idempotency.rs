//! Conformance cases of idempotency keys.

use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_store::{IdemClaim, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn idempotency_claim_complete_release(store: Arc<dyn Store>) {
    let t = now();
    let stale_before = t - Duration::hours(24);
    let first = fixtures::idem("user:1", "key-1", t);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.claim_idempotency(&first, stale_before).await.unwrap(),
        IdemClaim::Claimed
    );
    let again = fixtures::idem("user:1", "key-1", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        IdemClaim::Existing(first.clone()),
        "a second claim sees the in-flight record"
    );
    assert_eq!(
        tx.claim_idempotency(&fixtures::idem("user:2", "key-1", t), stale_before)
            .await
            .unwrap(),
        IdemClaim::Claimed,
        "keys are scoped per caller"
    );
    let body = json!({"id": "abc", "nested": {"z": 1, "a": [true, null]}});
    tx.complete_idempotency("user:1", "key-1", 201, &body)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let done = IdemClaim::Existing(uos_store::IdempotencyRecord {
        status: Some(201),
        response: Some(body.clone()),
        ..first.clone()
    });
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        done,
        "a completed record replays status and body"
    );
    tx.release_idempotency("user:1", "key-1").await.unwrap();
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        done,
        "release never drops a completed response"
    );
    let inflight = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&inflight, stale_before).await.unwrap(),
        IdemClaim::Claimed
    );
    tx.release_idempotency("user:1", "key-2").await.unwrap();
    let retry = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&retry, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "a released key can be claimed again"
    );
    tx.release_idempotency("user:1", "never-claimed")
        .await
        .expect("releasing nothing is fine");
    assert_err!(
        tx.complete_idempotency("user:1", "never-claimed", 200, &json!({}))
            .await,
        StoreError::NotFound,
        "completing an unclaimed key"
    );
}

#[conformance]
async fn idempotency_stale_claim_is_replaced(store: Arc<dyn Store>) {
    let t = now();
    let stale_before = t - Duration::hours(1);
    let abandoned = fixtures::idem("user:1", "key-1", t - Duration::hours(2));
    let finished = fixtures::idem("user:1", "key-2", t - Duration::hours(3));
    let mut tx = store.begin().await.unwrap();
    tx.claim_idempotency(&abandoned, stale_before)
        .await
        .unwrap();
    tx.claim_idempotency(&finished, stale_before).await.unwrap();
    tx.complete_idempotency("user:1", "key-2", 200, &json!({"old": true}))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let fresh1 = fixtures::idem("user:1", "key-1", t);
    let fresh2 = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&fresh1, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "an abandoned in-flight claim is taken over"
    );
    assert_eq!(
        tx.claim_idempotency(&fresh2, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "an expired completed record is taken over"
    );
    let probe = fixtures::idem("user:1", "key-2", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&probe, stale_before).await.unwrap(),
        IdemClaim::Existing(fresh2),
        "the replacement is the new in-flight claim (old response gone)"
    );
    let probe = fixtures::idem("user:1", "key-1", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&probe, stale_before).await.unwrap(),
        IdemClaim::Existing(fresh1)
    );
}

#[conformance]
async fn concurrent_idempotency_claims_one_wins(store: Arc<dyn Store>) {
    let t = now();
    let attempt = || {
        let store = store.clone();
        let rec = fixtures::idem("user:1", "same-key", t);
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let claim = tx.claim_idempotency(&rec, t - Duration::hours(1)).await?;
            tokio::task::yield_now().await;
            tx.commit().await?;
            Ok::<_, StoreError>(claim)
        })
    };
    let (a, b) = (attempt(), attempt());
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two claims must not deadlock");
    let claimed = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(IdemClaim::Claimed)))
        .count();
    let existing = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(IdemClaim::Existing(_))))
        .count();
    assert_eq!(
        (claimed, existing),
        (1, 1),
        "exactly one Claimed: {a:?} / {b:?}"
    );
}
