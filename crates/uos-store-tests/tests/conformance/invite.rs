//! Conformance cases of invites.

use crate::support::after;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::OrgId;
use uos_store::{Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn invite_roundtrip_and_token_unique(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let creator = seed_user(&store).await;
    let mut inv = fixtures::invite(o.id);
    inv.created_by = Some(creator.id);
    inv.roles = vec![role("admin"), role("billing")];
    let mut tx = store.begin().await.unwrap();
    tx.insert_invite(&inv).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.get_invite(o.id, inv.id).await.unwrap(),
        Some(inv.clone())
    );
    assert_eq!(
        tx.get_invite(OrgId::new(), inv.id).await.unwrap(),
        None,
        "an invite is only found within its org"
    );
    assert_eq!(
        tx.get_invite_by_token_hash(&inv.token_hash).await.unwrap(),
        Some(inv.clone())
    );
    assert_eq!(tx.get_invite_by_token_hash("nope").await.unwrap(), None);
    let mut dup = fixtures::invite(o.id);
    dup.token_hash = inv.token_hash.clone();
    assert_err!(
        tx.insert_invite(&dup).await,
        StoreError::Conflict("invite_token_taken"),
        "two invites with one token hash"
    );
}

#[conformance]
async fn invite_update_is_optimistic(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let inv = fixtures::invite(o.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_invite(&inv).await.unwrap();
    tx.commit().await.unwrap();

    let mut accepted = inv.clone();
    accepted.accepted_at = Some(now());
    accepted.version = 2;
    let mut tx = store.begin().await.unwrap();
    tx.update_invite(&accepted, 1).await.unwrap();
    tx.commit().await.unwrap();

    let mut revoked = inv.clone();
    revoked.revoked_at = Some(now());
    revoked.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_invite(&revoked, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    assert_eq!(tx.get_invite(o.id, inv.id).await.unwrap(), Some(accepted));
    assert_err!(
        tx.update_invite(&fixtures::invite(o.id), 1).await,
        StoreError::NotFound,
        "update of an absent invite"
    );
}

#[conformance]
async fn invite_list_pages_per_org(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    let mut created = Vec::new();
    for i in 0..25 {
        let inv = fixtures::invite(o.id);
        tx.insert_invite(&inv).await.unwrap();
        created.push(inv);
        if i % 8 == 0 {
            tx.insert_invite(&fixtures::invite(other.id)).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_invites(o.id, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "invites in pages of 10/10/5");
        seen.extend(page.items);
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(seen, created, "one org's invites in creation order");
}
