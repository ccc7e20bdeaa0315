//! Conformance cases of the audit chain.

use crate::support::after;
use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::OrgId;
use uos_store::{AuditFilter, AuditHead, PageRequest, ReadTx, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn audit_append_moves_head(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let head = tx.lock_audit_head().await.unwrap();
    assert_eq!(head.seq, 0, "empty chain");
    assert_eq!(head.hash, genesis_hash(), "genesis hash");
    tx.commit().await.unwrap();

    let t = now();
    let mut rows = Vec::new();
    for seq in 1..=3 {
        let mut tx = store.begin().await.unwrap();
        let head = tx.lock_audit_head().await.unwrap();
        let mut row = fixtures::audit(head.seq + 1, t + Duration::seconds(seq));
        row.org_id = Some(OrgId::new());
        row.target_id = Some(format!("user:{seq}"));
        tx.append_audit(&head, &row).await.unwrap();
        tx.commit().await.unwrap();
        rows.push(row);
    }
    let mut tx = store.read().await.unwrap();
    let head = tx.audit_head().await.unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(
        head.hash, rows[2].hash,
        "the head is the last appended link"
    );
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        page.items, rows,
        "rows (payload included) round-trip in seq order"
    );
}

#[conformance]
async fn audit_append_refuses_a_fork(store: Arc<dyn Store>) {
    let t = now();
    let genesis = fixtures::audit_head(0);
    let mut tx = store.begin().await.unwrap();
    tx.append_audit(&genesis, &fixtures::audit(1, t))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&genesis, &fixtures::audit(1, t)).await,
        StoreError::VersionConflict,
        "a second link with the same seq"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&fixtures::audit_head(2), &fixtures::audit(3, t))
            .await,
        StoreError::VersionConflict,
        "a link from a head that is not the current one"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&fixtures::audit_head(1), &fixtures::audit(3, t))
            .await,
        StoreError::VersionConflict,
        "a link that skips a seq"
    );
    drop(tx);
    // A head remembered with the right seq but another hash (say, from before a restore):
    // chaining from it would fork the chain.
    let forged = AuditHead {
        seq: 1,
        hash: "f".repeat(64),
    };
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&forged, &fixtures::audit(2, t)).await,
        StoreError::VersionConflict,
        "a link from a head with the right seq and the wrong hash"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    let head = tx.audit_head().await.unwrap();
    assert_eq!(head.seq, 1, "refused appends leave the head alone");
}

#[conformance]
async fn audit_list_filters_and_pages(store: Arc<dyn Store>) {
    let t0 = now();
    let orgs = [OrgId::new(), OrgId::new()];
    let mut rows = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for seq in 1..=25_i64 {
        let mut row = fixtures::audit(seq, t0 + Duration::minutes(seq));
        row.org_id = if seq % 5 == 0 {
            None
        } else {
            Some(orgs[(seq % 2) as usize])
        };
        row.actor_id = Some(format!("user:{}", seq % 3));
        row.action = if seq % 4 == 0 {
            "org.update"
        } else {
            "user.create"
        }
        .into();
        row.target_id = Some(format!("target:{}", seq % 2));
        tx.append_audit(&fixtures::audit_head(seq - 1), &row)
            .await
            .unwrap();
        rows.push(row);
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let seqs = |f: &dyn Fn(&uos_store::AuditRow) -> bool| {
        rows.iter()
            .filter(|r| f(r))
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &AuditFilter::default(), 10).await,
        seqs(&|_| true),
        "everything by seq"
    );
    let by_org = AuditFilter {
        org: Some(orgs[1]),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &by_org, 3).await,
        seqs(&|r| r.org_id == Some(orgs[1])),
        "org filter"
    );
    let by_actor = AuditFilter {
        actor: Some("user:2".into()),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &by_actor, 2).await,
        seqs(&|r| r.actor_id.as_deref() == Some("user:2")),
        "actor filter"
    );
    let by_action = AuditFilter {
        action: Some("org.update".into()),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &by_action, 4).await,
        seqs(&|r| r.action == "org.update"),
        "action filter"
    );
    let by_target = AuditFilter {
        target: Some("target:0".into()),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &by_target, 5).await,
        seqs(&|r| r.target_id.as_deref() == Some("target:0")),
        "target filter"
    );
    let since = t0 + Duration::minutes(5);
    let until = t0 + Duration::minutes(20);
    let window = AuditFilter {
        since: Some(since),
        until: Some(until),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &window, 4).await,
        (5..20).collect::<Vec<_>>(),
        "since is inclusive, until exclusive"
    );
    let combined = AuditFilter {
        org: Some(orgs[0]),
        action: Some("user.create".into()),
        since: Some(since),
        ..Default::default()
    };
    assert_eq!(
        audit_seqs(&mut *tx, &combined, 2).await,
        seqs(&|r| r.org_id == Some(orgs[0]) && r.action == "user.create" && r.occurred_at >= since),
        "filters combine"
    );
}

/// Every page of an audit listing, checking page sizes and cursors on the way.
async fn audit_seqs(tx: &mut dyn ReadTx, filter: &AuditFilter, limit: u32) -> Vec<i64> {
    let mut got = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = tx.list_audit(filter, &after(&next, limit)).await.unwrap();
        assert!(page.items.len() <= limit as usize, "at most `limit` rows");
        if let Some(cursor) = &page.next {
            assert_eq!(
                page.items.len(),
                limit as usize,
                "only full pages have a next page"
            );
            assert_eq!(
                cursor,
                &page.items.last().unwrap().seq.to_string(),
                "the audit cursor is the last seq"
            );
        }
        got.extend(page.items.iter().map(|r| r.seq));
        next = page.next;
        if next.is_none() {
            return got;
        }
    }
}
