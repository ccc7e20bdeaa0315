//! Conformance cases of the audit chain.

use crate::backends::{run_upgraded, Backend};
use crate::support::{after, parsed};
use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::OrgId;
use uos_store::{AuditFilter, AuditHead, AuditRow, PageRequest, ReadTx, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn audit_append_moves_head(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let head = tx.lock_audit_head(AUDIT_CHAIN).await.unwrap();
    assert_eq!(head.seq, 0, "empty chain");
    assert_eq!(head.hash, genesis_hash(), "genesis hash");
    tx.commit().await.unwrap();

    let t = now();
    let mut rows = Vec::new();
    for seq in 1..=3 {
        let mut tx = store.begin().await.unwrap();
        let head = tx.lock_audit_head(AUDIT_CHAIN).await.unwrap();
        let mut row = fixtures::audit(head.seq + 1, t + Duration::seconds(seq));
        row.org_id = Some(OrgId::new());
        row.target_id = Some(format!("user:{seq}"));
        tx.append_audit(&head, &row).await.unwrap();
        tx.commit().await.unwrap();
        rows.push(row);
    }
    let mut tx = store.read().await.unwrap();
    let head = tx.audit_head(AUDIT_CHAIN).await.unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(
        head.hash, rows[2].hash,
        "the head is the last appended link"
    );
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    for (listed, row) in page.items.iter().zip(&rows) {
        assert_eq!(
            listed.payload.get(),
            row.payload.to_string(),
            "a listed payload is the text stored, as it was stored"
        );
    }
    assert_eq!(
        parsed(page.items),
        rows,
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
        chain: AUDIT_CHAIN.into(),
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
    let head = tx.audit_head(AUDIT_CHAIN).await.unwrap();
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
            assert!(!cursor.is_empty(), "a cursor to the next page");
        }
        got.extend(page.items.iter().map(|r| r.seq));
        next = page.next;
        if next.is_none() {
            return got;
        }
    }
}

/// Event `seq` of `chain`, with a hash of its own.
fn chained(chain: &str, seq: i64) -> AuditRow {
    let mut row = fixtures::audit(seq, now());
    row.chain = chain.into();
    row.hash = format!("{:064x}", seq * 1000 + chain.len() as i64);
    row
}

fn head_of(row: &AuditRow) -> AuditHead {
    AuditHead {
        chain: row.chain.clone(),
        seq: row.seq,
        hash: row.hash.clone(),
    }
}

#[conformance]
async fn audit_chains_move_independently(store: Arc<dyn Store>) {
    let (a, b) = ("org:a", "org:b");
    let mut stored = Vec::new();
    let mut heads = vec![fixtures::audit_head(0), fixtures::audit_head(0)];
    heads[0].chain = a.into();
    heads[1].chain = b.into();
    // Interleaved appends, each chain from its own genesis.
    for (i, chain) in [a, b, b, a, b].into_iter().enumerate() {
        let k = usize::from(chain == b);
        let row = chained(chain, heads[k].seq + 1);
        let mut tx = store.begin().await.unwrap();
        tx.append_audit(&heads[k], &row).await.unwrap();
        tx.commit().await.unwrap();
        heads[k] = head_of(&row);
        stored.push(row);
        assert_eq!(stored.len(), i + 1);
    }
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.audit_head(a).await.unwrap(), heads[0]);
    assert_eq!(tx.audit_head(b).await.unwrap(), heads[1]);
    assert_eq!(
        tx.audit_head("org:c").await.unwrap(),
        AuditHead {
            chain: "org:c".into(),
            seq: 0,
            hash: genesis_hash()
        },
        "a chain without events is at genesis"
    );
    assert_eq!(tx.audit_heads().await.unwrap(), heads, "every head");
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(parsed(page.items), stored, "listed in the order stored");
    drop(tx);

    // A head of one chain does not extend another, even at the same seq.
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&heads[0], &chained(b, heads[0].seq + 1))
            .await,
        StoreError::VersionConflict,
        "a link from another chain's head"
    );
    drop(tx);
    // Two first appends to a new chain: one wins.
    let genesis = AuditHead {
        chain: "org:c".into(),
        seq: 0,
        hash: genesis_hash(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.append_audit(&genesis, &chained("org:c", 1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.append_audit(&genesis, &chained("org:c", 1)).await,
        StoreError::VersionConflict,
        "a second first event"
    );
}

#[conformance]
async fn lock_audit_head_starts_a_chain_and_finds_its_head(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let head = tx.lock_audit_head("org:new").await.unwrap();
    assert_eq!(
        (head.chain.as_str(), head.seq, head.hash.clone()),
        ("org:new", 0, genesis_hash())
    );
    let row = chained("org:new", 1);
    tx.append_audit(&head, &row).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.lock_audit_head("org:new").await.unwrap(), head_of(&row));
    drop(tx);
    let mut r = store.read().await.unwrap();
    let heads = r.audit_heads().await.unwrap();
    assert_eq!(heads, vec![head_of(&row)]);
}

#[conformance]
async fn checkpoints_are_kept_in_the_order_issued(store: Arc<dyn Store>) {
    let mut r = store.read().await.unwrap();
    assert_eq!(r.latest_checkpoint().await.unwrap(), None);
    drop(r);
    let t0 = now();
    let mut issued = Vec::new();
    for i in 0..5_i64 {
        let row = uos_store::CheckpointRow {
            id: uuid::Uuid::now_v7(),
            issued_at: t0 + Duration::minutes(i),
            // Keys out of order: the payload is kept as text, not re-encoded.
            payload: serde_json::json!({"z": i, "heads": [{"chain": "platform", "seq": i}]}),
        };
        let mut tx = store.begin().await.unwrap();
        tx.insert_checkpoint(&row).await.unwrap();
        tx.commit().await.unwrap();
        issued.push(row);
    }
    let mut r = store.read().await.unwrap();
    assert_eq!(r.latest_checkpoint().await.unwrap().as_ref(), issued.last());
    let mut got = Vec::new();
    let mut next = None;
    loop {
        let page = r.list_checkpoints(None, &after(&next, 2)).await.unwrap();
        got.extend(page.items);
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    assert_eq!(got, issued, "every checkpoint, in order, over pages");
    let since = r
        .list_checkpoints(Some(t0 + Duration::minutes(3)), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(since.items, issued[3..], "since is inclusive");
    assert_err!(
        r.list_checkpoints(None, &after(&Some("not-a-uuid".into()), 2))
            .await,
        StoreError::Corrupt(_),
        "a bad cursor"
    );
}

/// Three events on the landed schema's one chain.
fn landed_events() -> Vec<AuditRow> {
    (1..=3)
        .map(|seq| {
            let mut row = fixtures::audit(seq, now() + Duration::seconds(seq));
            row.chain = "legacy".into();
            row.payload = serde_json::json!({"seq": seq, "hash": row.hash});
            // That schema kept no trace context.
            row.trace_parent = None;
            row
        })
        .collect()
}

/// After the upgrade the landed events are the `legacy` chain, unchanged but for being served
/// with its name; new chains start at genesis and list after them.
async fn landed_events_become_the_legacy_chain(store: Arc<dyn Store>, landed: Vec<AuditRow>) {
    let mut r = store.read().await.unwrap();
    let legacy = head_of(landed.last().unwrap());
    assert_eq!(r.audit_heads().await.unwrap(), vec![legacy.clone()]);
    assert_eq!(
        r.audit_head(AUDIT_CHAIN).await.unwrap().seq,
        0,
        "the platform chain starts at genesis"
    );
    drop(r);
    let mut tx = store.begin().await.unwrap();
    let head = tx.lock_audit_head(AUDIT_CHAIN).await.unwrap();
    let next = fixtures::audit(1, now());
    tx.append_audit(&head, &next).await.unwrap();
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    let page = r
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    let mut expected: Vec<_> = landed
        .into_iter()
        .map(|mut row| {
            row.payload["chain"] = "legacy".into();
            row
        })
        .collect();
    expected.push(next);
    assert_eq!(parsed(page.items), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landed_events_upgrade_sqlite() {
    let landed = landed_events();
    run_upgraded(Backend::Sqlite, &landed, |store| {
        landed_events_become_the_legacy_chain(store, landed.clone())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn landed_events_upgrade_postgres() {
    let landed = landed_events();
    run_upgraded(Backend::Postgres, &landed, |store| {
        landed_events_become_the_legacy_chain(store, landed.clone())
    })
    .await;
}
