//! Conformance cases of users.

use crate::support::after;
use serde_json::json;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{UserId, UserStatus};
use uos_store::{PageRequest, ReadTx, Store, StoreError, UserFilter};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn user_insert_and_get(store: Arc<dyn Store>) {
    let mut u = fixtures::user_with_email("Ann.Lee@Example.TEST");
    u.display_name = Some("Ann Lee".into());
    u.locale = Some("de-CH".into());
    u.timezone = Some("Europe/Zurich".into());
    u.platform_admin = true;
    u.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    u.preferences = json!({"theme": "dark", "nested": {"b": [1, 2], "a": null}, "n": 1.5});
    u.set_status(UserStatus::Deleted, uos_domain::StatusCause::Admin, now())
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&u).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_user(u.id).await.unwrap().as_ref(),
        Some(&u),
        "get_user round-trips"
    );
    assert_eq!(
        tx.get_user_by_email(&email("  ANN.LEE@example.test "))
            .await
            .unwrap()
            .as_ref(),
        Some(&u),
        "lookup by a differently written but equal email"
    );
    assert_eq!(tx.get_user(UserId::new()).await.unwrap(), None, "absent id");
    assert_eq!(
        tx.get_user_by_email(&email("nobody@example.test"))
            .await
            .unwrap(),
        None,
        "absent email"
    );
}

#[conformance]
async fn user_email_taken(store: Arc<dyn Store>) {
    let first = fixtures::user_with_email("taken@example.test");
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&first).await.unwrap();
    tx.commit().await.unwrap();

    let dup = fixtures::user_with_email("  TAKEN@Example.Test ");
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.insert_user(&dup).await,
        StoreError::Conflict("email_taken"),
        "the same email in another case"
    );
    drop(tx);

    let mut second = seed_user(&store).await;
    let before = second.clone();
    second.email = email("taken@example.test");
    second.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_user(&second, 1).await,
        StoreError::Conflict("email_taken"),
        "changing the email to a taken one"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_user(before.id).await.unwrap(),
        Some(before),
        "refused update leaves the user unchanged"
    );
}

#[conformance]
async fn user_update_is_optimistic(store: Arc<dyn Store>) {
    let original = seed_user(&store).await;
    let mut changed = original.clone();
    changed.email = email("changed@example.test");
    changed.display_name = Some("Changed".into());
    changed.preferences = json!({"k": "v"});
    changed.touch(now());
    let mut tx = store.begin().await.unwrap();
    tx.update_user(&changed, 1)
        .await
        .expect("update at the read version");
    tx.commit().await.unwrap();

    let mut stale = original.clone();
    stale.display_name = Some("Stale".into());
    stale.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_user(&stale, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_user(original.id).await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        tx.get_user_by_email(&changed.email)
            .await
            .unwrap()
            .map(|u| u.id),
        Some(original.id),
        "the new email finds the user"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_user(&fixtures::user(), 1).await,
        StoreError::NotFound,
        "update of an absent user"
    );
}

#[conformance]
async fn user_list_filters_and_pages(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let mut users = Vec::new();
    for i in 0..25 {
        let domain = if i % 5 == 0 { "beta" } else { "alpha" };
        let mut u = fixtures::user_with_email(&format!("{domain}-{i:02}@example.test"));
        if i % 2 == 1 {
            u.status = UserStatus::Suspended;
        }
        tx.insert_user(&u).await.unwrap();
        users.push(u);
    }
    tx.commit().await.unwrap();
    let expect = |f: &dyn Fn(&uos_domain::User) -> bool| {
        users
            .iter()
            .filter(|u| f(u))
            .map(|u| u.id)
            .collect::<Vec<_>>()
    };

    let mut tx = store.read().await.unwrap();
    let all = UserFilter::default();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_users(&all, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "users in pages of 10/10/5");
        seen.extend(page.items.iter().map(|u| u.id));
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(seen, expect(&|_| true), "creation order");

    // status + prefix, paged by 4: alpha users that are suspended.
    let filter = UserFilter {
        status: Some(UserStatus::Suspended),
        email_prefix: Some("alpha-".into()),
    };
    let wanted =
        expect(&|u| u.status == UserStatus::Suspended && u.email.as_str().starts_with("alpha-"));
    assert_eq!(wanted.len(), 10, "fixture sanity");
    let mut seen = Vec::new();
    let mut next = None;
    for size in [4, 4, 2] {
        let page = tx.list_users(&filter, &after(&next, 4)).await.unwrap();
        assert_eq!(page.items.len(), size, "filtered pages of 4/4/2");
        seen.extend(page.items.iter().map(|u| u.id));
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(
        seen, wanted,
        "status and prefix combined, in creation order"
    );

    let beta = UserFilter {
        status: None,
        email_prefix: Some("beta-".into()),
    };
    let page = tx.list_users(&beta, &PageRequest::first(50)).await.unwrap();
    assert_eq!(
        page.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        expect(&|u| u.email.as_str().starts_with("beta-")),
        "prefix alone"
    );
    let active = UserFilter {
        status: Some(UserStatus::Active),
        email_prefix: None,
    };
    let page = tx
        .list_users(&active, &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        expect(&|u| u.status == UserStatus::Active),
        "status alone"
    );
    let none = UserFilter {
        status: None,
        email_prefix: Some("gamma".into()),
    };
    let page = tx.list_users(&none, &PageRequest::first(50)).await.unwrap();
    assert!(page.items.is_empty() && page.next.is_none(), "no match");
}

#[conformance]
async fn user_email_prefix_is_literal(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    let mut ids = Vec::new();
    for raw in [
        "a_b@example.test",
        "axb@example.test",
        "a%c@example.test",
        "a@example.test",
        "ab@example.test",
        "zoë@example.test",
    ] {
        let u = fixtures::user_with_email(raw);
        tx.insert_user(&u).await.unwrap();
        ids.push(u.id);
    }
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    let (p, got) = ("a_", emails_with_prefix(&mut *tx, "a_").await);
    assert_eq!(got, vec!["a_b@example.test"], "{p}: '_' is not a wildcard");
    let (p, got) = ("a%", emails_with_prefix(&mut *tx, "a%").await);
    assert_eq!(got, vec!["a%c@example.test"], "{p}: '%' is not a wildcard");
    let (p, got) = ("a@", emails_with_prefix(&mut *tx, "a@").await);
    assert_eq!(got, vec!["a@example.test"], "{p}");
    let (p, got) = ("zo", emails_with_prefix(&mut *tx, "zo").await);
    assert_eq!(
        got,
        vec!["zoë@example.test"],
        "{p}: non-ASCII after the prefix"
    );
    let (p, got) = ("zoë@", emails_with_prefix(&mut *tx, "zoë@").await);
    assert_eq!(got, vec!["zoë@example.test"], "{p}: non-ASCII prefix");
    let (p, got) = ("a", emails_with_prefix(&mut *tx, "a").await);
    assert_eq!(got.len(), 5, "{p}: every address starting with a");
}

async fn emails_with_prefix(tx: &mut dyn ReadTx, prefix: &str) -> Vec<String> {
    let filter = UserFilter {
        status: None,
        email_prefix: Some(prefix.into()),
    };
    let page = tx
        .list_users(&filter, &PageRequest::first(50))
        .await
        .unwrap();
    assert_eq!(page.next, None);
    page.items.iter().map(|u| u.email.to_string()).collect()
}

#[conformance]
async fn user_count(store: Arc<dyn Store>) {
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 0, "empty store");
    drop(tx);
    for _ in 0..3 {
        seed_user(&store).await;
    }
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 3);
}
