//! Conformance cases of audit export jobs: stored as given, claimed by exactly one replica,
//! moved along only under the claim that holds them, taken over once their replica went quiet.

use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::OrgId;
use uos_store::{AuditExport, ExportOutcome, ExportStatus, Store};
use uos_store_tests::fixtures::*;
use uuid::Uuid;

fn pending(org: Option<OrgId>) -> AuditExport {
    let at = now();
    AuditExport {
        id: Uuid::now_v7(),
        org_id: org,
        requested_by: Uuid::now_v7().to_string(),
        since: Some(at - Duration::days(1)),
        until: None,
        status: ExportStatus::Pending,
        events_written: 0,
        sha256: None,
        error: None,
        object_key: None,
        created_at: at,
        updated_at: at,
    }
}

async fn insert(store: &Arc<dyn Store>, e: &AuditExport) {
    let mut tx = store.begin().await.unwrap();
    tx.insert_audit_export(e).await.unwrap();
    tx.commit().await.unwrap();
}

async fn get(store: &Arc<dyn Store>, id: Uuid) -> AuditExport {
    let mut r = store.read().await.unwrap();
    r.get_audit_export(id).await.unwrap().expect("stored")
}

async fn claimable(
    store: &Arc<dyn Store>,
    stale_before: chrono::DateTime<chrono::Utc>,
) -> Vec<Uuid> {
    let mut r = store.read().await.unwrap();
    r.claimable_audit_exports(stale_before, 10).await.unwrap()
}

async fn claim(
    store: &Arc<dyn Store>,
    id: Uuid,
    claim: Uuid,
    stale_before: chrono::DateTime<chrono::Utc>,
) -> bool {
    let mut tx = store.begin().await.unwrap();
    let won = tx
        .claim_audit_export(id, claim, stale_before, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    won
}

async fn progress(store: &Arc<dyn Store>, id: Uuid, claim: Uuid, n: i64) -> bool {
    let mut tx = store.begin().await.unwrap();
    let ok = tx.audit_export_progress(id, claim, n, now()).await.unwrap();
    tx.commit().await.unwrap();
    ok
}

async fn finish(store: &Arc<dyn Store>, id: Uuid, claim: Uuid, outcome: &ExportOutcome) -> bool {
    let mut tx = store.begin().await.unwrap();
    let ok = tx
        .finish_audit_export(id, claim, outcome, now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    ok
}

#[conformance]
async fn an_export_reads_back_as_stored(store: Arc<dyn Store>) {
    let org = seed_org(&store).await;
    let mut of_org = pending(Some(org.id));
    of_org.until = Some(now());
    let whole = pending(None);
    insert(&store, &of_org).await;
    insert(&store, &whole).await;
    assert_eq!(get(&store, of_org.id).await, of_org);
    assert_eq!(get(&store, whole.id).await, whole);
    let mut r = store.read().await.unwrap();
    assert_eq!(r.get_audit_export(Uuid::now_v7()).await.unwrap(), None);
}

#[conformance]
async fn exactly_one_replica_claims_a_job_and_only_it_moves_it(store: Arc<dyn Store>) {
    let e = pending(None);
    insert(&store, &e).await;
    let fresh = now() - Duration::minutes(5);
    assert_eq!(
        claimable(&store, fresh).await,
        [e.id],
        "a pending job is claimable"
    );

    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let (won_a, won_b) = tokio::join!(claim(&store, e.id, a, fresh), claim(&store, e.id, b, fresh));
    assert!(won_a ^ won_b, "exactly one claim wins: {won_a} {won_b}");
    let (winner, loser) = if won_a { (a, b) } else { (b, a) };
    assert_eq!(get(&store, e.id).await.status, ExportStatus::Running);
    assert!(
        claimable(&store, fresh).await.is_empty(),
        "a live running job is not claimable"
    );

    assert!(
        !progress(&store, e.id, loser, 7).await,
        "the losing claim records nothing"
    );
    assert!(progress(&store, e.id, winner, 1000).await);
    assert_eq!(get(&store, e.id).await.events_written, 1000);

    let failed = ExportOutcome::Failed {
        events_written: 1,
        error: "nope".into(),
    };
    assert!(!finish(&store, e.id, loser, &failed).await);
    let done = ExportOutcome::Done {
        events_written: 1500,
        sha256: "ab".repeat(32),
        object_key: "audit-exports/x/y.ndjson".into(),
    };
    assert!(finish(&store, e.id, winner, &done).await);
    let stored = get(&store, e.id).await;
    assert_eq!(stored.status, ExportStatus::Done);
    assert_eq!(stored.events_written, 1500);
    assert_eq!(stored.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(
        stored.object_key.as_deref(),
        Some("audit-exports/x/y.ndjson")
    );
    assert_eq!(stored.error, None);
    assert!(
        !finish(&store, e.id, winner, &failed).await,
        "a finished job stays finished"
    );
    assert!(claimable(&store, now() + Duration::hours(1))
        .await
        .is_empty());
}

#[conformance]
async fn a_job_whose_replica_went_quiet_is_taken_over(store: Arc<dyn Store>) {
    let e = pending(None);
    insert(&store, &e).await;
    let old = Uuid::now_v7();
    assert!(claim(&store, e.id, old, now() - Duration::minutes(5)).await);
    assert!(progress(&store, e.id, old, 3000).await);
    // Nothing moved it since before this bound: its replica is presumed dead.
    let stale_before = now() + Duration::seconds(1);
    assert_eq!(claimable(&store, stale_before).await, [e.id]);
    let new = Uuid::now_v7();
    assert!(claim(&store, e.id, new, stale_before).await);
    assert_eq!(
        get(&store, e.id).await.events_written,
        0,
        "the new attempt starts over"
    );
    assert!(
        !progress(&store, e.id, old, 4000).await,
        "the old attempt is shut out"
    );
    let failed = ExportOutcome::Failed {
        events_written: 2,
        error: "object store unreachable".into(),
    };
    assert!(finish(&store, e.id, new, &failed).await);
    let stored = get(&store, e.id).await;
    assert_eq!(stored.status, ExportStatus::Failed);
    assert_eq!(stored.error.as_deref(), Some("object store unreachable"));
    assert_eq!(stored.sha256, None);
}

#[conformance]
async fn the_checkpoint_an_export_is_held_to_is_the_last_issued_by_its_end(store: Arc<dyn Store>) {
    let t0 = now() - Duration::hours(2);
    let rows: Vec<uos_store::CheckpointRow> = (0..3)
        .map(|i| uos_store::CheckpointRow {
            id: Uuid::now_v7(),
            issued_at: t0 + Duration::hours(i),
            payload: serde_json::json!({ "n": i }),
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    for row in &rows {
        tx.insert_checkpoint(row).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    assert_eq!(
        r.latest_checkpoint_before(t0 - Duration::seconds(1))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        r.latest_checkpoint_before(t0).await.unwrap().as_ref(),
        Some(&rows[0]),
        "inclusive"
    );
    assert_eq!(
        r.latest_checkpoint_before(t0 + Duration::minutes(90))
            .await
            .unwrap()
            .as_ref(),
        Some(&rows[1])
    );
    assert_eq!(
        r.latest_checkpoint_before(now()).await.unwrap().as_ref(),
        Some(&rows[2])
    );
}
