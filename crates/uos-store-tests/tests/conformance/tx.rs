//! Conformance cases of units of work and paging: rollback, visibility after commit, page boundaries, bad cursors.

use crate::support::after;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::ServiceAccountId;
use uos_store::{AuditFilter, MemberFilter, OrgFilter, PageRequest, Store, StoreError, UserFilter};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn rollback_discards_changes(store: Arc<dyn Store>) {
    let kept = seed_org(&store).await;
    let o = fixtures::org();
    let u = fixtures::user();
    let mut renamed = kept.clone();
    renamed.display_name = "Rolled back".into();
    renamed.version = 2;
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o).await.unwrap();
    tx.insert_user(&u).await.unwrap();
    tx.update_org(&renamed, 1).await.unwrap();
    tx.append_audit(&fixtures::audit_head(0), &fixtures::audit(1, now()))
        .await
        .unwrap();
    assert!(
        tx.get_org(o.id).await.unwrap().is_some(),
        "visible inside the transaction"
    );
    drop(tx);

    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_org(o.id).await.unwrap(), None, "insert rolled back");
    assert_eq!(tx.get_user(u.id).await.unwrap(), None, "insert rolled back");
    assert_eq!(
        tx.get_org(kept.id).await.unwrap(),
        Some(kept.clone()),
        "update rolled back"
    );
    assert_eq!(
        tx.audit_head(AUDIT_CHAIN).await.unwrap().seq,
        0,
        "head rolled back"
    );
    drop(tx);
    // The writer is free again after a rollback.
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o)
        .await
        .expect("the rolled-back row can be written again");
    tx.commit().await.unwrap();
}

#[conformance]
async fn commit_makes_changes_visible_to_read(store: Arc<dyn Store>) {
    let o = fixtures::org();
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o).await.unwrap();
    let mut reader = store.read().await.unwrap();
    assert_eq!(
        reader.get_org(o.id).await.unwrap(),
        None,
        "uncommitted rows are invisible to readers"
    );
    drop(reader);
    tx.commit().await.unwrap();
    let mut reader = store.read().await.unwrap();
    assert_eq!(
        reader.get_org(o.id).await.unwrap(),
        Some(o),
        "committed rows are visible"
    );
}

#[conformance]
async fn page_boundary_is_exact(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(seed_org(&store).await.id);
    }
    let filter = OrgFilter::default();
    let mut tx = store.read().await.unwrap();
    let page = tx
        .list_orgs(&filter, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 10);
    assert_eq!(page.next, None, "exactly `limit` rows: no next page");
    let p1 = tx.list_orgs(&filter, &PageRequest::first(5)).await.unwrap();
    let p2 = tx.list_orgs(&filter, &after(&p1.next, 5)).await.unwrap();
    assert_eq!(
        p1.next,
        Some(ids[4].to_string()),
        "the id cursor is the last id, hyphenated"
    );
    assert_eq!(p2.items.len(), 5);
    assert_eq!(
        p2.next, None,
        "the second half ends the list, no empty third page"
    );
    drop(tx);
    ids.push(seed_org(&store).await.id);
    let mut tx = store.read().await.unwrap();
    let page = tx
        .list_orgs(&filter, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        page.next,
        Some(ids[9].to_string()),
        "`limit + 1` rows: a next page"
    );
    let last = tx.list_orgs(&filter, &after(&page.next, 10)).await.unwrap();
    assert_eq!(
        last.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        vec![ids[10]]
    );
    assert_eq!(last.next, None);
}

#[conformance]
async fn bad_cursor_is_corrupt(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let bad = PageRequest {
        after: Some("not a cursor!".into()),
        limit: 10,
    };
    let mut tx = store.read().await.unwrap();
    assert_err!(
        tx.list_orgs(&OrgFilter::default(), &bad).await,
        StoreError::Corrupt(_),
        "orgs"
    );
    assert_err!(
        tx.list_users(&UserFilter::default(), &bad).await,
        StoreError::Corrupt(_),
        "users"
    );
    let members = MemberFilter {
        org: o.id,
        status: None,
    };
    assert_err!(
        tx.list_members(&members, &bad).await,
        StoreError::Corrupt(_),
        "members"
    );
    assert_err!(
        tx.list_invites(o.id, &bad).await,
        StoreError::Corrupt(_),
        "invites"
    );
    assert_err!(
        tx.list_roles(o.id, &bad).await,
        StoreError::Corrupt(_),
        "roles"
    );
    assert_err!(
        tx.list_audit(&AuditFilter::default(), &bad).await,
        StoreError::Corrupt(_),
        "audit"
    );
    assert_err!(
        tx.list_service_accounts(o.id, true, &bad).await,
        StoreError::Corrupt(_),
        "service accounts"
    );
    assert_err!(
        tx.list_api_keys(ServiceAccountId::new(), &bad).await,
        StoreError::Corrupt(_),
        "api keys"
    );
    assert_err!(
        tx.list_overdue_api_keys(o.id, now(), &bad).await,
        StoreError::Corrupt(_),
        "overdue api keys"
    );
}
