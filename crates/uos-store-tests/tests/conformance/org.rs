//! Conformance cases of organizations.

use crate::support::after;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{MembershipStatus, OrgId};
use uos_store::{OrgFilter, Page, PageRequest, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn org_insert_and_get(store: Arc<dyn Store>) {
    let mut o = fixtures::org();
    o.display_name = "Ünïcode Org — ok".into();
    o.delete(now())
        .expect("delete for round-tripping every field");
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_org(o.id).await.unwrap().as_ref(),
        Some(&o),
        "get_org round-trips"
    );
    assert_eq!(
        tx.get_org_by_slug(&o.slug).await.unwrap().as_ref(),
        Some(&o),
        "get_org_by_slug round-trips"
    );
    assert_eq!(tx.get_org(OrgId::new()).await.unwrap(), None, "absent id");
    let other = fixtures::org();
    assert_eq!(
        tx.get_org_by_slug(&other.slug).await.unwrap(),
        None,
        "absent slug"
    );
}

#[conformance]
async fn org_slug_taken(store: Arc<dyn Store>) {
    let mut first = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    let mut dup = fixtures::org();
    dup.slug = first.slug.clone();
    assert_err!(
        tx.insert_org(&dup).await,
        StoreError::Conflict("slug_taken"),
        "a second org with the same slug"
    );
    drop(tx);

    // Still taken while the first org is soft-deleted.
    let v = first.version;
    first.delete(now()).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update_org(&first, v).await.unwrap();
    assert_err!(
        tx.insert_org(&dup).await,
        StoreError::Conflict("slug_taken"),
        "the slug of a deleted org"
    );
    drop(tx);

    // Renaming another org onto the slug is refused the same way.
    let mut second = seed_org(&store).await;
    let v = second.version;
    second.slug = first.slug.clone();
    second.version += 1;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_org(&second, v).await,
        StoreError::Conflict("slug_taken"),
        "update to a taken slug"
    );
}

#[conformance]
async fn org_update_is_optimistic(store: Arc<dyn Store>) {
    let original = seed_org(&store).await;
    let mut renamed = original.clone();
    renamed.display_name = "Renamed".into();
    renamed.updated_at = now();
    renamed.version = 2;
    let mut tx = store.begin().await.unwrap();
    tx.update_org(&renamed, 1)
        .await
        .expect("update at the read version");
    tx.commit().await.unwrap();

    let mut stale = original.clone();
    stale.display_name = "Stale".into();
    stale.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_org(&stale, 1).await,
        StoreError::VersionConflict,
        "update with a stale expected_version"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_org(original.id).await.unwrap().as_ref(),
        Some(&renamed),
        "a refused update leaves the row unchanged"
    );

    let ghost = fixtures::org();
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_org(&ghost, 1).await,
        StoreError::NotFound,
        "update of an absent org"
    );
}

#[conformance]
async fn org_list_pages_in_creation_order(store: Arc<dyn Store>) {
    let mut created = Vec::new();
    for _ in 0..25 {
        created.push(seed_org(&store).await.id);
    }
    let mut tx = store.read().await.unwrap();
    let filter = OrgFilter::default();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_orgs(&filter, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "pages of 10/10/5");
        seen.extend(page.items.iter().map(|o| o.id));
        next = page.next;
    }
    assert_eq!(next, None, "no cursor after the last page");
    assert_eq!(seen, created, "creation order, no overlap, nothing missing");
}

#[conformance]
async fn org_list_filters_member_and_deleted(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let mut orgs = Vec::new();
    for _ in 0..5 {
        orgs.push(seed_org(&store).await);
    }
    // Member of 0, 2 (suspended membership still counts) and 4; 3 and 4 are deleted.
    seed_member(&store, orgs[0].id, u.id, &["member"]).await;
    seed_member(&store, orgs[4].id, u.id, &["member"]).await;
    let mut m2 = seed_member(&store, orgs[2].id, u.id, &["member"]).await;
    m2.set_status(MembershipStatus::Suspended, now()).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update_membership(&m2, 1).await.unwrap();
    for i in [3, 4] {
        let v = orgs[i].version;
        orgs[i].delete(now()).unwrap();
        tx.update_org(&orgs[i], v).await.unwrap();
    }
    seed_extra_member(&mut *tx, orgs[1].id).await;
    tx.commit().await.unwrap();

    let ids = |page: Page<uos_domain::Org>| page.items.iter().map(|o| o.id).collect::<Vec<_>>();
    let mut tx = store.read().await.unwrap();
    let member = |include_deleted| OrgFilter {
        member: Some(u.id),
        include_deleted,
    };
    let all = |include_deleted| OrgFilter {
        member: None,
        include_deleted,
    };
    let first = PageRequest::first(50);
    assert_eq!(
        ids(tx.list_orgs(&member(false), &first).await.unwrap()),
        vec![orgs[0].id, orgs[2].id],
        "member filter hides deleted orgs"
    );
    assert_eq!(
        ids(tx.list_orgs(&member(true), &first).await.unwrap()),
        vec![orgs[0].id, orgs[2].id, orgs[4].id],
        "member filter with deleted orgs"
    );
    assert_eq!(
        ids(tx.list_orgs(&all(false), &first).await.unwrap()),
        vec![orgs[0].id, orgs[1].id, orgs[2].id],
        "all orgs without deleted"
    );
    assert_eq!(
        ids(tx.list_orgs(&all(true), &first).await.unwrap()).len(),
        5,
        "all orgs with deleted"
    );
    let p1 = tx
        .list_orgs(&member(true), &PageRequest::first(2))
        .await
        .unwrap();
    assert!(p1.next.is_some(), "a second page follows");
    let p2 = tx
        .list_orgs(&member(true), &after(&p1.next, 2))
        .await
        .unwrap();
    assert_eq!(ids(p1), vec![orgs[0].id, orgs[2].id], "filtered page 1");
    assert_eq!(p2.next, None, "filtered last page");
    assert_eq!(ids(p2), vec![orgs[4].id], "filtered page 2");
}

/// Another user in `org`, so the member filter has rows to exclude.
async fn seed_extra_member(tx: &mut dyn uos_store::Tx, org: OrgId) {
    let other = fixtures::user();
    tx.insert_user(&other).await.unwrap();
    tx.insert_membership(&fixtures::membership(org, other.id, &["owner"]))
        .await
        .unwrap();
}

#[conformance]
async fn concurrent_updates_one_wins(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let attempt = |name: &'static str| {
        let store = store.clone();
        let mut next = o.clone();
        next.display_name = name.into();
        next.version = 2;
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            // Read inside the transaction first, like a real use case does.
            let _ = tx.get_org(next.id).await?;
            tx.update_org(&next, 1).await?;
            tokio::task::yield_now().await;
            tx.commit().await
        })
    };
    let (a, b) = (attempt("A"), attempt("B"));
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two writers of one row must not deadlock");
    let (winner, loser) = match (&a, &b) {
        (Ok(()), Err(StoreError::VersionConflict)) => ("A", &b),
        (Err(StoreError::VersionConflict), Ok(())) => ("B", &a),
        _ => panic!("exactly one Ok and one VersionConflict, got {a:?} and {b:?}"),
    };
    assert!(loser.is_err());
    let mut tx = store.read().await.unwrap();
    let stored = tx.get_org(o.id).await.unwrap().unwrap();
    assert_eq!(stored.display_name, winner, "the winner's write is stored");
    assert_eq!(stored.version, 2);
}
