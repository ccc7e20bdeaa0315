//! Conformance cases of the audit outbox (what the relay has not published, per chain) and of
//! leases.

use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_store::{AuditHead, AuditRow, Store};
use uos_store_tests::fixtures::{self, *};

/// Appends event `seq` to `chain`, in a transaction of its own.
async fn append(store: &Arc<dyn Store>, chain: &str, seq: i64) -> AuditRow {
    let mut row = fixtures::audit(seq, now() + Duration::milliseconds(seq));
    row.chain = chain.into();
    row.hash = format!("{:064x}", seq * 1000 + chain.len() as i64);
    let mut tx = store.begin().await.unwrap();
    let head: AuditHead = tx.lock_audit_head(chain).await.unwrap();
    assert_eq!(head.seq, seq - 1);
    tx.append_audit(&head, &row).await.unwrap();
    tx.commit().await.unwrap();
    row
}

async fn unpublished(store: &Arc<dyn Store>, limit: u32) -> Vec<(String, i64)> {
    let mut tx = store.begin().await.unwrap();
    let rows = tx.unpublished_audit(limit).await.unwrap();
    rows.into_iter().map(|r| (r.chain, r.seq)).collect()
}

#[conformance]
async fn the_outbox_holds_what_each_chain_has_not_published(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.audit_backlog().await.unwrap(), (0, None), "nothing yet");
    drop(tx);
    let mut stored = Vec::new();
    for (chain, seq) in [
        ("org:a", 1),
        ("org:b", 1),
        ("org:a", 2),
        ("platform", 1),
        ("org:a", 3),
    ] {
        stored.push(append(&store, chain, seq).await);
    }
    let all: Vec<(String, i64)> = stored.iter().map(|r| (r.chain.clone(), r.seq)).collect();
    assert_eq!(unpublished(&store, 10).await, all, "in the order stored");
    assert_eq!(unpublished(&store, 2).await, all[..2], "at most the limit");
    let mut tx = store.begin().await.unwrap();
    let (behind, oldest) = tx.audit_backlog().await.unwrap();
    assert_eq!(behind, 5);
    assert_eq!(
        oldest,
        Some(stored[0].occurred_at),
        "the oldest unpublished"
    );

    tx.mark_published(&[("org:a".into(), 2), ("org:b".into(), 1)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        unpublished(&store, 10).await,
        [("platform".into(), 1), ("org:a".into(), 3)],
        "each chain from its own progress"
    );
    // Progress never moves back (a relay that lost its lease reports late).
    let mut tx = store.begin().await.unwrap();
    tx.mark_published(&[("org:a".into(), 1)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(unpublished(&store, 10).await.len(), 2);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.audit_backlog().await.unwrap(),
        (2, Some(stored[3].occurred_at))
    );
    tx.mark_published(&[("platform".into(), 1), ("org:a".into(), 3)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(unpublished(&store, 10).await.is_empty());
    append(&store, "org:b", 2).await;
    assert_eq!(unpublished(&store, 10).await, [("org:b".into(), 2)]);
}

#[conformance]
async fn each_round_takes_every_chain_forward_in_seq_order_within_the_limit(store: Arc<dyn Store>) {
    // Three chains with four events each, stored interleaved.
    let mut first_platform = None;
    for seq in 1..=4 {
        for chain in ["org:a", "org:b", "platform"] {
            let row = append(&store, chain, seq).await;
            if chain == "platform" && seq == 1 {
                first_platform = Some(row);
            }
        }
    }
    let first_platform = first_platform.unwrap();
    // A limit shorter than the backlog: each chain's share (rounded up) from its progress.
    assert_eq!(
        unpublished(&store, 3).await,
        [
            ("org:a".into(), 1),
            ("org:b".into(), 1),
            ("platform".into(), 1)
        ]
    );
    let five = unpublished(&store, 5).await;
    assert_eq!(five.len(), 5, "{five:?}");
    for chain in ["org:a", "org:b", "platform"] {
        let seqs: Vec<i64> = five
            .iter()
            .filter(|(c, _)| c == chain)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{chain} from its start"
        );
    }
    // One chain published far ahead: the others keep their place, and the backlog is exact.
    let mut tx = store.begin().await.unwrap();
    tx.mark_published(&[("org:a".into(), 4), ("org:b".into(), 2)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        unpublished(&store, 100).await,
        [
            ("platform".into(), 1),
            ("platform".into(), 2),
            ("org:b".into(), 3),
            ("platform".into(), 3),
            ("org:b".into(), 4),
            ("platform".into(), 4)
        ],
        "in the order stored"
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.audit_backlog().await.unwrap(),
        (6, Some(first_platform.occurred_at))
    );
}

#[conformance]
async fn a_lease_has_one_holder_until_it_expires(store: Arc<dyn Store>) {
    let t = now();
    let claim = |holder: &'static str, at: chrono::DateTime<chrono::Utc>| {
        let store = store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let held = tx
                .claim_lease("relay", holder, at, at + Duration::seconds(15))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            held
        }
    };
    assert!(claim("a", t).await, "a free lease is taken");
    assert!(!claim("b", t + Duration::seconds(5)).await, "held by a");
    assert!(claim("a", t + Duration::seconds(10)).await, "a renews");
    assert!(
        !claim("b", t + Duration::seconds(20)).await,
        "renewed until t+25"
    );
    assert!(
        claim("b", t + Duration::seconds(26)).await,
        "expired: b takes it"
    );
    assert!(!claim("a", t + Duration::seconds(27)).await, "now b's");
    // Another lease is another name.
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .claim_lease("other", "a", t, t + Duration::seconds(1))
        .await
        .unwrap());
}
