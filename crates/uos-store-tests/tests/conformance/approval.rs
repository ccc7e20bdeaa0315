//! Conformance cases of approvals: requests waiting for two approvers, and the grants in force.

use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{Approval, ApprovalKind, ApprovalRequest, ApprovalStatus, OrgId, UserId};
use uos_store::{PageRequest, Store, StoreError};
use uos_store_tests::fixtures::*;

fn request(kind: ApprovalKind, org: Option<OrgId>, by: UserId, pending_mins: i64) -> Approval {
    Approval::request(
        ApprovalRequest {
            kind,
            org_id: org,
            requested_by: by,
            subject_id: Some(uuid::Uuid::now_v7()),
            reason: "incident".into(),
            detail: serde_json::json!({"roles": ["auditor"]}),
            pending_for: Duration::minutes(pending_mins),
            grant_for: Duration::minutes(30),
        },
        now(),
    )
}

fn page(limit: u32) -> PageRequest {
    PageRequest { limit, after: None }
}

#[conformance]
async fn approvals_round_trip_and_list_by_status_as_of_now(store: Arc<dyn Store>) {
    let org = seed_org(&store).await;
    let (a, b, c) = (
        seed_user(&store).await,
        seed_user(&store).await,
        seed_user(&store).await,
    );
    let t = now();
    let pending = request(ApprovalKind::BreakGlass, Some(org.id), a.id, 60);
    let expired = request(ApprovalKind::BreakGlass, Some(org.id), a.id, -1);
    let platform = request(ApprovalKind::BreakGlass, None, a.id, 60);
    let other_kind = request(ApprovalKind::BudgetOverride, Some(org.id), a.id, 60);
    let mut tx = store.begin().await.unwrap();
    for x in [&pending, &expired, &platform, &other_kind] {
        tx.insert_approval(x).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_approval(pending.id).await.unwrap(),
        Some(pending.clone()),
        "round trip"
    );
    let subject = pending.subject_id.unwrap();
    assert_eq!(
        tx.get_approval_by_subject(ApprovalKind::BreakGlass, subject)
            .await
            .unwrap()
            .map(|x| x.id),
        Some(pending.id)
    );
    let ids = |p: uos_store::Page<Approval>| p.items.iter().map(|x| x.id).collect::<Vec<_>>();
    let all = tx
        .list_approvals(ApprovalKind::BreakGlass, None, None, t, &page(10))
        .await
        .unwrap();
    assert_eq!(
        ids(all),
        [platform.id, expired.id, pending.id],
        "newest first, one kind"
    );
    let in_org = tx
        .list_approvals(
            ApprovalKind::BreakGlass,
            Some(org.id),
            Some(ApprovalStatus::Pending),
            t,
            &page(10),
        )
        .await
        .unwrap();
    assert_eq!(ids(in_org), [pending.id], "pending as of now, in the org");
    let gone = tx
        .list_approvals(
            ApprovalKind::BreakGlass,
            None,
            Some(ApprovalStatus::Expired),
            t,
            &page(10),
        )
        .await
        .unwrap();
    assert_eq!(ids(gone), [expired.id]);
    let first = tx
        .list_approvals(ApprovalKind::BreakGlass, None, None, t, &page(1))
        .await
        .unwrap();
    let next = first.next.clone().expect("a second page");
    let second = tx
        .list_approvals(
            ApprovalKind::BreakGlass,
            None,
            None,
            t,
            &PageRequest {
                limit: 2,
                after: Some(next),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ids(second),
        [expired.id, pending.id],
        "pages continue after the cursor"
    );
    assert!(tx
        .active_approvals(ApprovalKind::BreakGlass, None, t)
        .await
        .unwrap()
        .is_empty());
    drop(tx);

    // Two approvals make it active; a stale version is refused and changes nothing.
    let mut next = pending.clone();
    next.approve(b.id, t).unwrap();
    let stale = next.clone();
    let mut tx = store.begin().await.unwrap();
    tx.update_approval(&next, pending.version).await.unwrap();
    assert_err!(
        tx.update_approval(&stale, pending.version).await,
        StoreError::VersionConflict,
        "an update on a version that moved"
    );
    let before = next.version;
    next.approve(c.id, t).unwrap();
    tx.update_approval(&next, before).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_approval(next.id).await.unwrap(), Some(next.clone()));
    let active = tx
        .active_approvals(ApprovalKind::BreakGlass, None, t)
        .await
        .unwrap();
    assert_eq!(active.iter().map(|x| x.id).collect::<Vec<_>>(), [next.id]);
    assert!(
        tx.active_approvals(
            ApprovalKind::BreakGlass,
            Some(OrgId(uuid::Uuid::now_v7())),
            t
        )
        .await
        .unwrap()
        .is_empty(),
        "another org has none"
    );
    let later = t + Duration::minutes(31);
    assert!(
        tx.active_approvals(ApprovalKind::BreakGlass, None, later)
            .await
            .unwrap()
            .is_empty(),
        "a grant past its time is not in force"
    );
}
