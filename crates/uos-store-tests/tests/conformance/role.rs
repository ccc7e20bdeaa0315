//! Conformance cases of custom roles.

use crate::support::after;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_store::{Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn role_roundtrip_and_unique(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let r = fixtures::custom_role(o.id, "viewer");
    let mut tx = store.begin().await.unwrap();
    tx.insert_role(&r).await.unwrap();
    tx.insert_role(&fixtures::custom_role(other.id, "viewer"))
        .await
        .expect("the same name in another org");
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.get_role(o.id, &role("viewer")).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(tx.get_role(o.id, &role("nobody")).await.unwrap(), None);
    assert_err!(
        tx.insert_role(&fixtures::custom_role(o.id, "viewer")).await,
        StoreError::Conflict("role_exists"),
        "a duplicate role name within the org"
    );
}

#[conformance]
async fn role_update_and_delete(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let r = fixtures::custom_role(o.id, "viewer");
    let mut tx = store.begin().await.unwrap();
    tx.insert_role(&r).await.unwrap();
    tx.insert_role(&fixtures::custom_role(o.id, "editor"))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut changed = r.clone();
    changed.description = None;
    changed.permissions = vec![];
    changed.inherits = vec![role("auditor"), role("editor")];
    changed.updated_at = now();
    changed.version = 2;
    let mut tx = store.begin().await.unwrap();
    tx.update_role(&changed, 1).await.unwrap();
    let mut stale = r.clone();
    stale.version = 2;
    assert_err!(
        tx.update_role(&stale, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    assert_eq!(
        tx.get_role(o.id, &role("viewer")).await.unwrap(),
        Some(changed)
    );
    let mut renamed = fixtures::custom_role(o.id, "editor");
    renamed.name = role("viewer");
    assert_err!(
        tx.update_role(&renamed, 1).await,
        StoreError::NotFound,
        "update of an absent role (by id)"
    );
    tx.delete_role(o.id, &role("viewer")).await.unwrap();
    assert_eq!(tx.get_role(o.id, &role("viewer")).await.unwrap(), None);
    assert_err!(
        tx.delete_role(o.id, &role("viewer")).await,
        StoreError::NotFound,
        "deleting an absent role"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.all_roles(o.id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.name.as_str().to_string())
            .collect::<Vec<_>>(),
        vec!["editor"]
    );
}

#[conformance]
async fn role_list_pages_by_name(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut names: Vec<String> = (0..25).map(|i| format!("r-{i:02}")).collect();
    // Insert in a scrambled order: the list is by name, not by creation.
    let mut tx = store.begin().await.unwrap();
    for i in 0..25 {
        let name = &names[(i * 7) % 25];
        tx.insert_role(&fixtures::custom_role(o.id, name))
            .await
            .unwrap();
    }
    tx.insert_role(&fixtures::custom_role(other.id, "r-05x"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    names.sort();

    let mut tx = store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_roles(o.id, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "roles in pages of 10/10/5");
        if let Some(cursor) = &page.next {
            assert_eq!(
                cursor,
                page.items.last().unwrap().name.as_str(),
                "the role cursor is the last name"
            );
        }
        seen.extend(page.items.iter().map(|r| r.name.as_str().to_string()));
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(seen, names, "by name, no overlap");
    let all: Vec<String> = tx
        .all_roles(o.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.name.as_str().to_string())
        .collect();
    assert_eq!(all, names, "all_roles: every role of the org, by name");
}
