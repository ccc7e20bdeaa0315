//! The conformance cases. Each takes a freshly migrated store and owns all of its data; each
//! assertion message says what the port promises.

use crate::fixtures::{self, *};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use uos_domain::{
    ApiKey, ApiKeyId, MembershipStatus, OrgId, RotationPolicy, ServiceAccount, ServiceAccountId,
    ServiceAccountStatus, SessionId, UserId, UserStatus,
};
use uos_store::{
    AuditFilter, AuditHead, ExternalIdentity, IdemClaim, LoginUser, MemberFilter, OrgFilter, Page,
    PageRequest, PasswordReset, ReadTx, RefreshToken, Store, StoreError, TokenUse, UserFilter,
};

/// `assert!(matches!(..))` with the value in the message.
macro_rules! assert_err {
    ($value:expr, $pattern:pat, $why:expr) => {
        match $value {
            Err($pattern) => {}
            other => panic!("{}: got {:?}", $why, other),
        }
    };
}

fn after(page_next: &Option<String>, limit: u32) -> PageRequest {
    PageRequest {
        after: page_next.clone(),
        limit,
    }
}

// ---------------------------------------------------------------------------------------------
// store

pub async fn ping_and_pool_stats(store: Arc<dyn Store>) {
    store.ping().await.expect("ping answers");
    assert!(
        ["sqlite", "postgres"].contains(&store.backend()),
        "backend() names the backend"
    );
    let mut tx = store.read().await.expect("read handle");
    assert_eq!(tx.count_users().await.expect("count"), 0);
    drop(tx);
    let stats = store.pool_stats();
    assert!(stats.max >= 1, "a pool has a maximum: {stats:?}");
    assert!(stats.size <= stats.max, "size within max: {stats:?}");
    assert!(stats.idle <= stats.size, "idle within size: {stats:?}");
}

// ---------------------------------------------------------------------------------------------
// orgs

pub async fn org_insert_and_get(store: Arc<dyn Store>) {
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

pub async fn org_slug_taken(store: Arc<dyn Store>) {
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

pub async fn org_update_is_optimistic(store: Arc<dyn Store>) {
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

pub async fn org_list_pages_in_creation_order(store: Arc<dyn Store>) {
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

pub async fn org_list_filters_member_and_deleted(store: Arc<dyn Store>) {
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

// ---------------------------------------------------------------------------------------------
// users

pub async fn user_insert_and_get(store: Arc<dyn Store>) {
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

pub async fn user_email_taken(store: Arc<dyn Store>) {
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

pub async fn user_update_is_optimistic(store: Arc<dyn Store>) {
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

pub async fn user_list_filters_and_pages(store: Arc<dyn Store>) {
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

pub async fn user_email_prefix_is_literal(store: Arc<dyn Store>) {
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

pub async fn user_count_and_batch_get(store: Arc<dyn Store>) {
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 0, "empty store");
    drop(tx);
    let a = seed_user(&store).await;
    let b = seed_user(&store).await;
    let c = seed_user(&store).await;
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.count_users().await.unwrap(), 3);
    let mut got = tx.get_users(&[c.id, UserId::new(), a.id]).await.unwrap();
    got.sort_by_key(|u| u.id);
    assert_eq!(
        got,
        vec![a.clone(), c.clone()],
        "present ids only, absent skipped"
    );
    assert!(
        tx.get_users(&[]).await.unwrap().is_empty(),
        "no ids, no users"
    );
    let many: Vec<UserId> = (0..1200)
        .map(|i| if i == 700 { b.id } else { UserId::new() })
        .collect();
    assert_eq!(
        tx.get_users(&many).await.unwrap(),
        vec![b],
        "a long id list works"
    );
}

// ---------------------------------------------------------------------------------------------
// memberships

pub async fn membership_insert_get_and_unique(store: Arc<dyn Store>) {
    let o1 = seed_org(&store).await;
    let o2 = seed_org(&store).await;
    let u = seed_user(&store).await;
    let m1 = seed_member(&store, o1.id, u.id, &["owner", "billing"]).await;
    let m2 = seed_member(&store, o2.id, u.id, &["member"]).await;

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.get_membership(o1.id, u.id).await.unwrap(),
        Some(m1.clone())
    );
    assert_eq!(tx.get_membership(o1.id, UserId::new()).await.unwrap(), None);
    assert_err!(
        tx.insert_membership(&fixtures::membership(o1.id, u.id, &["member"]))
            .await,
        StoreError::Conflict("already_member"),
        "a second membership in the same org"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.list_memberships_of_user(u.id).await.unwrap(),
        vec![m1, m2],
        "every membership of the user, in creation order"
    );
    assert!(tx
        .list_memberships_of_user(UserId::new())
        .await
        .unwrap()
        .is_empty());
}

pub async fn membership_requires_org_and_user(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let u = seed_user(&store).await;
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_membership(&fixtures::membership(OrgId::new(), u.id, &["member"]))
            .await
            .is_err(),
        "a membership of an absent org is refused (foreign key)"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_membership(&fixtures::membership(o.id, UserId::new(), &["member"]))
            .await
            .is_err(),
        "a membership of an absent user is refused (foreign key)"
    );
}

pub async fn membership_update_and_delete(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let u = seed_user(&store).await;
    let original = seed_member(&store, o.id, u.id, &["member"]).await;
    let mut changed = original.clone();
    changed.set_roles(vec![role("admin"), role("auditor")], now());
    changed
        .set_status(MembershipStatus::Suspended, now())
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update_membership(&changed, 1).await.unwrap();
    tx.commit().await.unwrap();

    let mut stale = original.clone();
    stale.set_roles(vec![role("owner")], now());
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_membership(&stale, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    assert_eq!(
        tx.get_membership(o.id, u.id).await.unwrap(),
        Some(changed.clone()),
        "refused update changes nothing"
    );
    let ghost = fixtures::membership(o.id, UserId::new(), &["member"]);
    assert_err!(
        tx.update_membership(&ghost, 1).await,
        StoreError::NotFound,
        "update of an absent membership"
    );
    tx.delete_membership(o.id, u.id).await.expect("delete");
    assert_eq!(tx.get_membership(o.id, u.id).await.unwrap(), None);
    assert_err!(
        tx.delete_membership(o.id, u.id).await,
        StoreError::NotFound,
        "deleting an absent membership"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_membership(o.id, u.id).await.unwrap(),
        None,
        "delete committed"
    );
}

pub async fn membership_list_pages_and_status(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    let mut members = Vec::new();
    for i in 0..25 {
        let u = fixtures::user();
        tx.insert_user(&u).await.unwrap();
        let mut m = fixtures::membership(o.id, u.id, &["member"]);
        if i % 3 == 0 {
            m.status = MembershipStatus::Suspended;
        }
        tx.insert_membership(&m).await.unwrap();
        // Interleave another org's members: they must never show up.
        tx.insert_membership(&fixtures::membership(other.id, u.id, &["member"]))
            .await
            .unwrap();
        members.push(m);
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let all = MemberFilter {
        org: o.id,
        status: None,
    };
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_members(&all, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "members in pages of 10/10/5");
        seen.extend(page.items);
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(seen, members, "one org's members in creation order");

    let active = MemberFilter {
        org: o.id,
        status: Some(MembershipStatus::Active),
    };
    let wanted: Vec<_> = members
        .iter()
        .filter(|m| m.status == MembershipStatus::Active)
        .map(|m| m.id)
        .collect();
    assert_eq!(wanted.len(), 16, "fixture sanity");
    let mut seen = Vec::new();
    let mut next = None;
    for size in [7, 7, 2] {
        let page = tx.list_members(&active, &after(&next, 7)).await.unwrap();
        assert_eq!(page.items.len(), size, "active members in pages of 7/7/2");
        seen.extend(page.items.iter().map(|m| m.id));
        next = page.next;
    }
    assert_eq!(seen, wanted, "status filter with paging");
}

pub async fn lock_active_owners_returns_active_owners(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(seed_user(&store).await);
    }
    seed_member(&store, o.id, users[0].id, &["owner"]).await;
    let mut suspended = seed_member(&store, o.id, users[1].id, &["owner"]).await;
    seed_member(&store, o.id, users[2].id, &["admin", "owner-like"]).await;
    seed_member(&store, o.id, users[3].id, &["member", "owner"]).await;
    seed_member(&store, other.id, users[4].id, &["owner"]).await;
    suspended
        .set_status(MembershipStatus::Suspended, now())
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update_membership(&suspended, 1).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let owners: BTreeSet<UserId> = tx
        .lock_active_owners(o.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        owners,
        BTreeSet::from([users[0].id, users[3].id]),
        "active members holding exactly the owner role, in this org only"
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .lock_active_owners(OrgId::new())
        .await
        .unwrap()
        .is_empty());
}

pub async fn count_members_with_role_matches_whole_names(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(seed_user(&store).await);
    }
    seed_member(&store, o.id, users[0].id, &["viewer"]).await;
    seed_member(&store, o.id, users[1].id, &["member", "viewer"]).await;
    seed_member(&store, o.id, users[2].id, &["viewers", "member"]).await;
    seed_member(&store, other.id, users[3].id, &["viewer"]).await;
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.count_members_with_role(o.id, &role("viewer"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        tx.count_members_with_role(o.id, &role("view"))
            .await
            .unwrap(),
        0,
        "no substring match"
    );
    assert_eq!(
        tx.count_members_with_role(o.id, &role("member"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        tx.count_members_with_role(o.id, &role("owner"))
            .await
            .unwrap(),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// invites

pub async fn invite_roundtrip_and_token_unique(store: Arc<dyn Store>) {
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

pub async fn invite_update_is_optimistic(store: Arc<dyn Store>) {
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

pub async fn invite_list_pages_per_org(store: Arc<dyn Store>) {
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

// ---------------------------------------------------------------------------------------------
// custom roles

pub async fn role_roundtrip_and_unique(store: Arc<dyn Store>) {
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

pub async fn role_update_and_delete(store: Arc<dyn Store>) {
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

pub async fn role_list_pages_by_name(store: Arc<dyn Store>) {
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

// ---------------------------------------------------------------------------------------------
// sessions

pub async fn sessions_revoke_single_and_all(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let someone = seed_user(&store).await;
    let s1 = fixtures::session(u.id);
    let s2 = fixtures::session(u.id);
    let mut expired = fixtures::session(u.id);
    expired.expires_at = now() - Duration::minutes(1);
    let theirs = fixtures::session(someone.id);
    let mut tx = store.begin().await.unwrap();
    for s in [&s1, &s2, &expired, &theirs] {
        tx.insert_session(s).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.get_session(s1.id).await.unwrap(), Some(s1.clone()));
    assert_eq!(tx.get_session(SessionId::new()).await.unwrap(), None);
    let t1 = now();
    assert!(
        tx.revoke_session(s1.id, t1).await.unwrap(),
        "first revoke changes the session"
    );
    assert!(
        !tx.revoke_session(s1.id, t1 + Duration::seconds(5))
            .await
            .unwrap(),
        "second revoke changes nothing"
    );
    assert_eq!(
        tx.get_session(s1.id)
            .await
            .unwrap()
            .and_then(|s| s.revoked_at),
        Some(t1),
        "the first revocation time stays"
    );
    assert!(
        !tx.revoke_session(SessionId::new(), t1).await.unwrap(),
        "absent session"
    );
    let t2 = now() + Duration::seconds(1);
    assert_eq!(
        tx.revoke_user_sessions(u.id, t2).await.unwrap(),
        1,
        "only the live session (not the revoked or the expired one)"
    );
    assert_eq!(
        tx.revoke_user_sessions(u.id, t2).await.unwrap(),
        0,
        "nothing left to revoke"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_session(s2.id)
            .await
            .unwrap()
            .and_then(|s| s.revoked_at),
        Some(t2)
    );
    assert_eq!(
        tx.get_session(theirs.id)
            .await
            .unwrap()
            .and_then(|s| s.revoked_at),
        None,
        "another user's session is untouched"
    );
}

/// The `revoked_at` of a session that must exist.
async fn revoked_at(tx: &mut dyn ReadTx, id: SessionId) -> Option<DateTime<Utc>> {
    tx.get_session(id)
        .await
        .unwrap()
        .expect("session exists")
        .revoked_at
}

pub async fn session_touch_moves_last_seen(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let s = fixtures::session(u.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_session(&s).await.unwrap();
    assert_eq!(
        tx.get_session(s.id).await.unwrap().map(|g| g.last_seen_at),
        Some(s.created_at),
        "a new session was last seen when it was created"
    );
    let later = s.created_at + Duration::minutes(5);
    tx.touch_session(s.id, later).await.unwrap();
    tx.touch_session(SessionId::new(), later)
        .await
        .expect("touching an absent session is not an error");
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let mut expected = s.clone();
    expected.last_seen_at = later;
    assert_eq!(
        tx.get_session(s.id).await.unwrap(),
        Some(expected),
        "touch moves last_seen_at and nothing else"
    );
}

pub async fn revoke_other_sessions_keeps_one(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let someone = seed_user(&store).await;
    let t0 = now();
    let keep = fixtures::session(u.id);
    let other1 = fixtures::session(u.id);
    let other2 = fixtures::session(u.id);
    let mut expired = fixtures::session(u.id);
    expired.expires_at = t0 - Duration::minutes(1);
    let mut revoked = fixtures::session(u.id);
    revoked.revoked_at = Some(t0 - Duration::minutes(2));
    let theirs = fixtures::session(someone.id);
    let mut tx = store.begin().await.unwrap();
    for s in [&keep, &other1, &other2, &expired, &revoked, &theirs] {
        tx.insert_session(s).await.unwrap();
    }
    tx.commit().await.unwrap();

    let t = t0 + Duration::seconds(1);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.revoke_other_sessions(u.id, keep.id, t).await.unwrap(),
        2,
        "the user's other live sessions (not the kept, expired or already revoked ones)"
    );
    assert_eq!(
        tx.revoke_other_sessions(u.id, keep.id, t).await.unwrap(),
        0,
        "nothing left to revoke"
    );
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        revoked_at(&mut *tx, keep.id).await,
        None,
        "the kept session stays live"
    );
    assert_eq!(revoked_at(&mut *tx, other1.id).await, Some(t));
    assert_eq!(revoked_at(&mut *tx, other2.id).await, Some(t));
    assert_eq!(
        revoked_at(&mut *tx, expired.id).await,
        None,
        "expired is left alone"
    );
    assert_eq!(
        revoked_at(&mut *tx, revoked.id).await,
        revoked.revoked_at,
        "the first revocation time stays"
    );
    assert_eq!(
        revoked_at(&mut *tx, theirs.id).await,
        None,
        "another user's session is untouched"
    );
}

pub async fn list_live_sessions_skips_revoked_and_expired(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let someone = seed_user(&store).await;
    let t = now();
    let at = |user, created_ago: i64| {
        let mut s = fixtures::session(user);
        s.created_at = t - Duration::minutes(created_ago);
        s.last_seen_at = s.created_at;
        s.expires_at = t + Duration::hours(1);
        s
    };
    let oldest = at(u.id, 300);
    let middle = at(u.id, 200);
    // Two sessions created in the same instant: the id decides their order.
    let twin_a = at(u.id, 100);
    let twin_b = at(u.id, 100);
    let mut revoked = at(u.id, 50);
    revoked.revoked_at = Some(t - Duration::minutes(1));
    let mut expired = at(u.id, 60);
    expired.expires_at = t - Duration::minutes(1);
    let mut expiring_now = at(u.id, 70);
    expiring_now.expires_at = t;
    let theirs = at(someone.id, 10);
    let mut tx = store.begin().await.unwrap();
    for s in [
        &oldest,
        &middle,
        &twin_a,
        &twin_b,
        &revoked,
        &expired,
        &expiring_now,
        &theirs,
    ] {
        tx.insert_session(s).await.unwrap();
    }
    tx.commit().await.unwrap();

    let (first_twin, second_twin) = if twin_a.id.0 > twin_b.id.0 {
        (&twin_a, &twin_b)
    } else {
        (&twin_b, &twin_a)
    };
    let live = vec![
        first_twin.clone(),
        second_twin.clone(),
        middle.clone(),
        oldest.clone(),
    ];
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.list_live_sessions(u.id, t, 10).await.unwrap(),
        live,
        "live sessions only (expires_at > now), newest first, ties by id descending"
    );
    assert_eq!(
        tx.list_live_sessions(u.id, t, 2).await.unwrap(),
        live[..2].to_vec(),
        "at most limit, the newest ones"
    );
    assert_eq!(
        tx.list_live_sessions(u.id, t + Duration::hours(2), 10)
            .await
            .unwrap(),
        vec![],
        "none is live once all have expired"
    );
    assert_eq!(
        tx.list_live_sessions(UserId::new(), t, 10).await.unwrap(),
        vec![],
        "an absent user has no sessions"
    );
}

pub async fn refresh_token_roundtrip_and_unique(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let s = fixtures::session(u.id);
    let fresh = fixtures::refresh_token(s.id);
    let mut used = fixtures::refresh_token(s.id);
    used.used_at = Some(used.created_at + Duration::seconds(3));
    let mut tx = store.begin().await.unwrap();
    tx.insert_session(&s).await.unwrap();
    tx.insert_refresh_token(&fresh).await.unwrap();
    tx.insert_refresh_token(&used).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_refresh_token(&fresh.token_hash).await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        tx.get_refresh_token(&used.token_hash).await.unwrap(),
        Some(used.clone()),
        "used_at round-trips"
    );
    assert_eq!(
        tx.get_refresh_token(&format!("{:064x}", unique()))
            .await
            .unwrap(),
        None
    );
    drop(tx);

    let other = fixtures::session(u.id);
    let mut dup = fixtures::refresh_token(other.id);
    dup.token_hash = fresh.token_hash.clone();
    let mut tx = store.begin().await.unwrap();
    tx.insert_session(&other).await.unwrap();
    assert_err!(
        tx.insert_refresh_token(&dup).await,
        StoreError::Conflict("refresh_token_taken"),
        "a second token with the same hash, even of another session"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_refresh_token(&fixtures::refresh_token(SessionId::new()))
            .await
            .is_err(),
        "a token of an absent session is refused (foreign key)"
    );
}

pub async fn refresh_token_is_used_once(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let token = seed_refresh_token(&store, u.id).await;
    let t1 = now() + Duration::seconds(1);
    let mut tx = store.begin().await.unwrap();
    let next = format!("{:064x}", unique());
    match tx
        .rotate_refresh_token(&token.token_hash, &next, t1)
        .await
        .unwrap()
    {
        TokenUse::Fresh(s) => {
            assert_eq!(s.id, token.session_id);
            assert!(s.last_seen_at < t1, "answered as it was before the touch");
        }
        other => panic!("the first use wins: {other:?}"),
    }
    assert_eq!(
        tx.rotate_refresh_token(
            &token.token_hash,
            &format!("{:064x}", unique()),
            t1 + Duration::seconds(5)
        )
        .await
        .unwrap(),
        TokenUse::Reused(token.session_id),
        "a second use is a reuse"
    );
    assert_eq!(
        tx.rotate_refresh_token(
            &format!("{:064x}", unique()),
            &format!("{:064x}", unique()),
            t1
        )
        .await
        .unwrap(),
        TokenUse::Unknown,
        "an absent token is never used"
    );
    // The fresh use stored its successor, unused, and touched the session; the reuse did
    // neither.
    let successor = tx.get_refresh_token(&next).await.unwrap().unwrap();
    assert_eq!(
        (
            successor.session_id,
            successor.used_at,
            successor.created_at
        ),
        (token.session_id, None, t1)
    );
    let s = tx.get_session(token.session_id).await.unwrap().unwrap();
    assert_eq!(
        s.last_seen_at, t1,
        "a fresh use records activity on the session"
    );
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let mut expected = token.clone();
    expected.used_at = Some(t1);
    assert_eq!(
        tx.get_refresh_token(&token.token_hash).await.unwrap(),
        Some(expected),
        "the first use's time stays"
    );
}

/// One `refresh_session` of `token` at `at` (sessions idle since `idle_since` are dead), and
/// the hash of the successor it was asked to store.
async fn refresh_at(
    store: &Arc<dyn Store>,
    token: &str,
    at: DateTime<Utc>,
    idle_since: DateTime<Utc>,
) -> (TokenUse, String) {
    let next = fixtures::hash();
    let used = store
        .refresh_session(token, &next, at, idle_since)
        .await
        .unwrap();
    (used, next)
}

pub async fn refresh_session_uses_a_token_of_a_live_session_once(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let token = seed_refresh_token(&store, u.id).await;
    let t1 = now() + Duration::seconds(1);
    let idle_since = t1 - Duration::hours(1);
    let (used, next) = refresh_at(&store, &token.token_hash, t1, idle_since).await;
    match used {
        TokenUse::Fresh(s) => {
            assert_eq!(s.id, token.session_id);
            assert!(s.last_seen_at < t1, "answered as it was before the touch");
        }
        other => panic!("a live session's unused token is used: {other:?}"),
    }
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_refresh_token(&token.token_hash)
            .await
            .unwrap()
            .and_then(|t| t.used_at),
        Some(t1),
        "the token is used"
    );
    let successor = tx.get_refresh_token(&next).await.unwrap().unwrap();
    assert_eq!(
        (successor.session_id, successor.used_at),
        (token.session_id, None)
    );
    let s = tx.get_session(token.session_id).await.unwrap().unwrap();
    assert_eq!(s.last_seen_at, t1, "the session is touched");
    drop(tx);

    let (used, next) = refresh_at(&store, &token.token_hash, t1, idle_since).await;
    assert_eq!(used, TokenUse::Reused(token.session_id), "a second use");
    let (unknown, _) = refresh_at(&store, &fixtures::hash(), t1, idle_since).await;
    assert_eq!(unknown, TokenUse::Unknown, "an absent token");
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_refresh_token(&next).await.unwrap(),
        None,
        "a reuse stores no successor"
    );
}

/// A refresh token of a new user's new session; the user's status is then set to `status`.
async fn token_of_user_in(store: &Arc<dyn Store>, status: UserStatus) -> RefreshToken {
    let u = seed_user(store).await;
    let token = seed_refresh_token(store, u.id).await;
    if status != u.status {
        let mut changed = u.clone();
        changed.status = status;
        changed.version += 1;
        let mut tx = store.begin().await.unwrap();
        tx.update_user(&changed, u.version).await.unwrap();
        tx.commit().await.unwrap();
    }
    token
}

pub async fn refresh_session_refuses_a_dead_session_and_changes_nothing(store: Arc<dyn Store>) {
    let t1 = now() + Duration::seconds(1);
    let idle_since = t1 - Duration::hours(1);
    let late = t1 + Duration::hours(13);

    let revoked = token_of_user_in(&store, UserStatus::Active).await;
    let mut tx = store.begin().await.unwrap();
    assert!(tx.revoke_session(revoked.session_id, t1).await.unwrap());
    tx.commit().await.unwrap();
    let mut cases = vec![
        (revoked, t1, idle_since, "a revoked session"),
        (
            token_of_user_in(&store, UserStatus::Active).await,
            late,
            late - Duration::days(1),
            "an expired session",
        ),
        (
            token_of_user_in(&store, UserStatus::Active).await,
            t1,
            t1,
            "an idle session",
        ),
    ];
    for status in [UserStatus::Suspended, UserStatus::Deactivated] {
        let token = token_of_user_in(&store, status).await;
        cases.push((token, t1, idle_since, status.as_str()));
    }

    for (token, at, idle_since, why) in cases {
        let before = {
            let mut tx = store.read().await.unwrap();
            tx.get_session(token.session_id).await.unwrap()
        };
        let (used, next) = refresh_at(&store, &token.token_hash, at, idle_since).await;
        assert_eq!(used, TokenUse::Dead, "{why}");
        let mut tx = store.read().await.unwrap();
        assert_eq!(
            tx.get_refresh_token(&token.token_hash).await.unwrap(),
            Some(token.clone()),
            "{why}: the token stays unused"
        );
        assert_eq!(tx.get_refresh_token(&next).await.unwrap(), None, "{why}");
        assert_eq!(
            tx.get_session(token.session_id).await.unwrap(),
            before,
            "{why}: the session is not touched"
        );
    }

    // A user who must change the password may still refresh (the policy limits the rest).
    let token = token_of_user_in(&store, UserStatus::PasswordResetRequired).await;
    let (used, _) = refresh_at(&store, &token.token_hash, t1, idle_since).await;
    assert!(matches!(used, TokenUse::Fresh(_)), "{used:?}");
}

pub async fn concurrent_refresh_session_one_wins(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let token = seed_refresh_token(&store, u.id).await;
    let t = now() + Duration::seconds(1);
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let hash = token.token_hash.clone();
            tokio::spawn(
                async move { refresh_at(&store, &hash, t, t - Duration::hours(1)).await.0 },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for a in attempts {
        answers.push(a.await.unwrap());
    }
    let fresh = answers
        .iter()
        .filter(|a| matches!(a, TokenUse::Fresh(_)))
        .count();
    let reused = answers
        .iter()
        .filter(|a| **a == TokenUse::Reused(token.session_id))
        .count();
    assert_eq!((fresh, reused), (1, 1), "{answers:?}");
}

pub async fn open_session_audited_stores_all_three_or_nothing(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let t = now();
    let s = fixtures::session(u.id);
    let first = fixtures::refresh_token(s.id);
    let event = fixtures::audit(1, t);
    store
        .open_session_audited(&s, &first, &fixtures::audit_head(0), &event)
        .await
        .unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_session(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        tx.get_refresh_token(&first.token_hash).await.unwrap(),
        Some(first.clone())
    );
    let head = tx.audit_head().await.unwrap();
    assert_eq!((head.seq, &head.hash), (1, &event.hash), "the head moved");
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items, vec![event.clone()]);
    drop(tx);

    // From a head that is no longer the head; then with a taken token hash.
    let (stale, taken) = (fixtures::session(u.id), fixtures::session(u.id));
    let cases = [
        (
            &stale,
            fixtures::refresh_token(stale.id),
            fixtures::audit_head(0),
            "a stale head",
        ),
        (
            &taken,
            RefreshToken {
                session_id: taken.id,
                ..first.clone()
            },
            fixtures::audit_head(1),
            "a taken token hash",
        ),
    ];
    for (other, token, prev, why) in cases {
        let refused = store
            .open_session_audited(other, &token, &prev, &fixtures::audit(prev.seq + 1, t))
            .await;
        match refused {
            Err(StoreError::VersionConflict) if prev.seq == 0 => {}
            Err(StoreError::Conflict("refresh_token_taken")) if prev.seq == 1 => {}
            refused => panic!("{why}: got {refused:?}"),
        }
        let mut tx = store.read().await.unwrap();
        assert_eq!(tx.get_session(other.id).await.unwrap(), None, "{why}");
        assert_eq!(tx.audit_head().await.unwrap(), head, "{why}");
    }
}

// ---------------------------------------------------------------------------------------------
// credentials

pub async fn totp_put_get_confirm_delete(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let first = fixtures::totp(u.id);
    let mut tx = store.begin().await.unwrap();
    tx.put_totp(&first).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_totp(u.id).await.unwrap(),
        Some(first.clone()),
        "get_totp round-trips"
    );
    assert_eq!(
        tx.get_totp(UserId::new()).await.unwrap(),
        None,
        "absent user"
    );
    drop(tx);

    let t1 = now() + Duration::seconds(1);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.confirm_totp(u.id, t1).await.unwrap(),
        "the first confirmation sets confirmed_at"
    );
    assert!(
        !tx.confirm_totp(u.id, t1 + Duration::seconds(5))
            .await
            .unwrap(),
        "a second confirmation changes nothing"
    );
    assert!(
        !tx.confirm_totp(UserId::new(), t1).await.unwrap(),
        "nothing to confirm without an enrolment"
    );
    assert!(tx.use_totp_step(u.id, 7).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    let confirmed = tx.get_totp(u.id).await.unwrap().unwrap();
    assert_eq!(confirmed.confirmed_at, Some(t1), "the first time stays");
    assert_eq!(confirmed.last_used_step, 7);
    drop(tx);

    // Enrolling again starts over: new secret, unconfirmed, no step used.
    let second = fixtures::totp(u.id);
    let mut tx = store.begin().await.unwrap();
    tx.put_totp(&second).await.unwrap();
    tx.replace_recovery_codes(u.id, &[hash(), hash()], now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_totp(u.id).await.unwrap(),
        Some(second),
        "put_totp replaces an existing enrolment"
    );
    assert_eq!(tx.count_unused_recovery_codes(u.id).await.unwrap(), 2);
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.delete_totp(u.id).await.unwrap(),
        "there was an enrolment"
    );
    assert!(
        !tx.delete_totp(u.id).await.unwrap(),
        "nothing left to delete"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_totp(u.id).await.unwrap(), None, "enrolment gone");
    assert_eq!(
        tx.count_unused_recovery_codes(u.id).await.unwrap(),
        0,
        "delete_totp removes the recovery codes too"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.put_totp(&fixtures::totp(UserId::new())).await.is_err(),
        "an enrolment of an absent user is refused (foreign key)"
    );
}

pub async fn open_session_stores_the_session_with_its_first_token(store: Arc<dyn Store>) {
    let u = fixtures::user();
    let s = fixtures::session(u.id);
    let first = fixtures::refresh_token(s.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&u).await.unwrap();
    tx.open_session(&s, &first).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_session(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        tx.get_refresh_token(&first.token_hash).await.unwrap(),
        Some(first.clone())
    );
    drop(tx);

    // A taken token hash refuses the whole step: no session without its token.
    let again = fixtures::session(u.id);
    let taken = uos_store::RefreshToken {
        session_id: again.id,
        ..first
    };
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.open_session(&again, &taken).await,
        StoreError::Conflict("refresh_token_taken"),
        "a duplicate token hash"
    );
    drop(tx);
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_session(again.id).await.unwrap(), None);
}

pub async fn login_user_reads_the_second_factor_with_the_user(store: Arc<dyn Store>) {
    let (plain, pending, enrolled) = (fixtures::user(), fixtures::user(), fixtures::user());
    let mut tx = store.begin().await.unwrap();
    for u in [&plain, &pending, &enrolled] {
        tx.insert_user(u).await.unwrap();
    }
    tx.put_totp(&fixtures::totp(pending.id)).await.unwrap();
    tx.put_totp(&fixtures::totp(enrolled.id)).await.unwrap();
    assert!(tx.confirm_totp(enrolled.id, now()).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    for (user, second_factor, why) in [
        (&plain, false, "no enrolment"),
        (&pending, false, "an unconfirmed enrolment is inert"),
        (&enrolled, true, "a confirmed enrolment"),
    ] {
        let found = tx.get_login_user(&user.email).await.unwrap();
        assert_eq!(
            found,
            Some(LoginUser {
                user: user.clone(),
                second_factor
            }),
            "{why}"
        );
    }
    assert_eq!(
        tx.get_login_user(&fixtures::email("nobody@example.com"))
            .await
            .unwrap(),
        None
    );
}

pub async fn totp_step_is_used_once(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let mut enrolment = fixtures::totp(u.id);
    enrolment.last_used_step = 100;
    let mut tx = store.begin().await.unwrap();
    tx.put_totp(&enrolment).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.use_totp_step(u.id, 100).await.unwrap(),
        "the last accepted step is refused"
    );
    assert!(
        tx.use_totp_step(u.id, 101).await.unwrap(),
        "a newer step is accepted"
    );
    assert!(
        !tx.use_totp_step(u.id, 101).await.unwrap(),
        "the same step a second time is refused"
    );
    assert!(
        !tx.use_totp_step(u.id, 99).await.unwrap(),
        "an older step is refused"
    );
    assert!(
        tx.use_totp_step(u.id, 105).await.unwrap(),
        "steps may be skipped"
    );
    assert!(
        !tx.use_totp_step(UserId::new(), 1).await.unwrap(),
        "no step is accepted without an enrolment"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_totp(u.id).await.unwrap().unwrap().last_used_step,
        105
    );
    drop(tx);

    // Two logins presenting one code at once.
    let attempt = || {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let won = tx.use_totp_step(u.id, 106).await?;
            tokio::task::yield_now().await;
            tx.commit().await?;
            Ok::<_, StoreError>(won)
        })
    };
    let (a, b) = (attempt(), attempt());
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two uses of one step must not deadlock");
    assert!(
        matches!((&a, &b), (Ok(true), Ok(false)) | (Ok(false), Ok(true))),
        "exactly one true and one false, both Ok: got {a:?} and {b:?}"
    );
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_totp(u.id).await.unwrap().unwrap().last_used_step,
        106
    );
}

pub async fn recovery_codes_replace_and_use_once(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let v = seed_user(&store).await;
    let old: Vec<String> = (0..3).map(|_| hash()).collect();
    let t = now();
    let mut tx = store.begin().await.unwrap();
    tx.replace_recovery_codes(u.id, &old, t).await.unwrap();
    // The same hash for another user is another code.
    tx.replace_recovery_codes(v.id, &old[..1], t).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.count_unused_recovery_codes(u.id).await.unwrap(), 3);
    assert!(
        tx.use_recovery_code(u.id, &old[0], t).await.unwrap(),
        "the first use of a code wins"
    );
    assert!(
        !tx.use_recovery_code(u.id, &old[0], t + Duration::seconds(1))
            .await
            .unwrap(),
        "a code works once"
    );
    assert!(
        !tx.use_recovery_code(u.id, &hash(), t).await.unwrap(),
        "an unknown code never works"
    );
    assert!(
        !tx.use_recovery_code(v.id, &old[1], t).await.unwrap(),
        "another user's code does not work"
    );
    assert_eq!(tx.count_unused_recovery_codes(u.id).await.unwrap(), 2);
    assert_eq!(
        tx.count_unused_recovery_codes(v.id).await.unwrap(),
        1,
        "using u's code leaves v's code of the same hash unused"
    );
    tx.commit().await.unwrap();

    let new: Vec<String> = (0..2).map(|_| hash()).collect();
    let mut tx = store.begin().await.unwrap();
    tx.replace_recovery_codes(u.id, &new, now()).await.unwrap();
    assert_eq!(
        tx.count_unused_recovery_codes(u.id).await.unwrap(),
        2,
        "only the new set counts"
    );
    assert!(
        !tx.use_recovery_code(u.id, &old[1], now()).await.unwrap(),
        "an unused code of the old set is revoked"
    );
    assert!(tx.use_recovery_code(u.id, &new[1], now()).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.count_unused_recovery_codes(u.id).await.unwrap(), 1);
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    tx.replace_recovery_codes(u.id, &[], now()).await.unwrap();
    assert_eq!(
        tx.count_unused_recovery_codes(u.id).await.unwrap(),
        0,
        "an empty set clears the codes"
    );
    assert_eq!(tx.count_unused_recovery_codes(v.id).await.unwrap(), 1);
}

pub async fn password_history_newest_first_with_limit(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let v = seed_user(&store).await;
    let t = now();
    let mut tx = store.begin().await.unwrap();
    // Written out of time order: the order comes from created_at, not insertion.
    tx.push_password_history(u.id, "$argon2id$h2", t + Duration::seconds(1))
        .await
        .unwrap();
    tx.push_password_history(u.id, "$argon2id$h3", t + Duration::seconds(2))
        .await
        .unwrap();
    tx.push_password_history(u.id, "$argon2id$h1", t)
        .await
        .unwrap();
    tx.push_password_history(v.id, "$argon2id$other", t + Duration::seconds(3))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.password_history(u.id, 10).await.unwrap(),
        ["$argon2id$h3", "$argon2id$h2", "$argon2id$h1"],
        "newest first, only this user's"
    );
    assert_eq!(
        tx.password_history(u.id, 2).await.unwrap(),
        ["$argon2id$h3", "$argon2id$h2"],
        "the limit keeps the newest"
    );
    assert_eq!(
        tx.password_history(v.id, 10).await.unwrap(),
        ["$argon2id$other"]
    );
    assert!(tx.password_history(u.id, 0).await.unwrap().is_empty());
    assert!(tx
        .password_history(UserId::new(), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn password_reset_token_flow(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let r = fixtures::password_reset(u.id);
    let token = r.token_hash.clone().unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_password_reset(&r).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_password_reset(r.id).await.unwrap(),
        Some(r.clone()),
        "get_password_reset round-trips"
    );
    assert_eq!(
        tx.get_password_reset_by_token(&token).await.unwrap(),
        Some(r.clone()),
        "get_password_reset_by_token round-trips"
    );
    assert_eq!(
        tx.get_password_reset(uuid::Uuid::now_v7()).await.unwrap(),
        None
    );
    assert_eq!(tx.get_password_reset_by_token(&hash()).await.unwrap(), None);
    drop(tx);

    let t1 = now() + Duration::seconds(1);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.use_password_reset(&token, t1).await.unwrap(),
        "the first use wins"
    );
    assert!(
        !tx.use_password_reset(&token, t1 + Duration::seconds(5))
            .await
            .unwrap(),
        "a reset works once"
    );
    assert!(
        !tx.use_password_reset(&hash(), t1).await.unwrap(),
        "an absent token is never used"
    );
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_password_reset(r.id).await.unwrap().unwrap().used_at,
        Some(t1),
        "the first use's time stays"
    );
    drop(tx);

    let mut dup = fixtures::password_reset(u.id);
    dup.token_hash = Some(token.clone());
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.insert_password_reset(&dup).await,
        StoreError::Conflict("reset_token_taken"),
        "a second reset with the same token hash"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    tx.insert_password_reset(&fixtures::pending_reset(u.id, now()))
        .await
        .unwrap();
    tx.insert_password_reset(&fixtures::pending_reset(u.id, now()))
        .await
        .expect("any number of resets may wait without a token");
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_password_reset(&fixtures::password_reset(UserId::new()))
            .await
            .is_err(),
        "a reset of an absent user is refused (foreign key)"
    );
}

pub async fn password_reset_approval_once_and_pending_list(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let admin_a = seed_user(&store).await;
    let admin_b = seed_user(&store).await;
    let t = now();
    let first = fixtures::pending_reset(u.id, t - Duration::minutes(3));
    let second = fixtures::pending_reset(u.id, t - Duration::minutes(2));
    let mut expired = fixtures::pending_reset(u.id, t - Duration::minutes(4));
    expired.expires_at = t - Duration::seconds(1);
    let mut used = fixtures::pending_reset(u.id, t - Duration::minutes(5));
    used.used_at = Some(t - Duration::minutes(1));
    let ordinary = fixtures::password_reset(u.id);
    let mut tx = store.begin().await.unwrap();
    // Inserted newest first: the order comes from created_at, not insertion.
    for r in [&ordinary, &used, &second, &expired, &first] {
        tx.insert_password_reset(r).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let pending = tx.list_pending_password_resets(t, 10).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first.id, second.id],
        "waiting, unexpired and unused only, oldest first"
    );
    assert_eq!(pending[0], first, "listed resets round-trip");
    assert_eq!(
        tx.list_pending_password_resets(t, 1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [first.id],
        "the limit keeps the oldest"
    );
    drop(tx);

    let token = hash();
    let expires = t + Duration::minutes(30);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.approve_password_reset(first.id, admin_a.id, &token, expires, t)
            .await
            .unwrap(),
        "the first approval wins"
    );
    assert!(
        !tx.approve_password_reset(first.id, admin_b.id, &hash(), expires, t)
            .await
            .unwrap(),
        "a reset is approved once"
    );
    assert!(
        !tx.approve_password_reset(used.id, admin_a.id, &hash(), expires, t)
            .await
            .unwrap(),
        "a used reset cannot be approved"
    );
    assert!(
        !tx.approve_password_reset(ordinary.id, admin_a.id, &hash(), expires, t)
            .await
            .unwrap(),
        "a reset that needs no approval keeps its mailed token"
    );
    assert!(
        !tx.approve_password_reset(uuid::Uuid::now_v7(), admin_a.id, &hash(), expires, t)
            .await
            .unwrap(),
        "an absent reset cannot be approved"
    );
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let approved = PasswordReset {
        token_hash: Some(token.clone()),
        expires_at: expires,
        approved_by: Some(admin_a.id),
        approved_at: Some(t),
        ..first.clone()
    };
    assert_eq!(
        tx.get_password_reset(first.id).await.unwrap(),
        Some(approved.clone()),
        "approval sets the approver, its time, the token and the new expiry"
    );
    assert_eq!(
        tx.get_password_reset_by_token(&token).await.unwrap(),
        Some(approved),
        "the issued token finds the reset"
    );
    assert_eq!(
        tx.get_password_reset(ordinary.id).await.unwrap(),
        Some(ordinary.clone()),
        "a refused approval changes nothing"
    );
    assert_eq!(
        tx.list_pending_password_resets(t, 10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        [second.id],
        "an approved reset leaves the queue"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.approve_password_reset(second.id, admin_b.id, &token, expires, t)
            .await,
        StoreError::Conflict("reset_token_taken"),
        "approval cannot issue a token another reset holds"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert!(tx.use_password_reset(&token, t).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_password_reset(second.id).await.unwrap(),
        Some(second.clone()),
        "the refused approval was not applied"
    );
}

pub async fn external_identity_link_and_unique(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let v = seed_user(&store).await;
    let x = fixtures::external_identity(u.id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_external_identity(&x).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_external_identity(&x.issuer, &x.subject)
            .await
            .unwrap(),
        Some(x.clone()),
        "get_external_identity round-trips"
    );
    assert_eq!(
        tx.get_external_identity(&x.issuer, "another-subject")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        tx.get_external_identity("https://other-idp.example.test", &x.subject)
            .await
            .unwrap(),
        None,
        "a subject is scoped by its issuer"
    );
    drop(tx);

    let mut taken = fixtures::external_identity(v.id);
    taken.subject = x.subject.clone();
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.insert_external_identity(&taken).await,
        StoreError::Conflict("identity_linked"),
        "an upstream account links to one user"
    );
    drop(tx);

    let elsewhere = ExternalIdentity {
        issuer: "https://other-idp.example.test".into(),
        ..taken.clone()
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_external_identity(&elsewhere)
        .await
        .expect("the same subject at another issuer is another account");
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_external_identity(&elsewhere.issuer, &elsewhere.subject)
            .await
            .unwrap()
            .map(|found| found.user_id),
        Some(v.id)
    );
    assert_eq!(
        tx.get_external_identity(&x.issuer, &x.subject)
            .await
            .unwrap()
            .map(|found| found.user_id),
        Some(u.id),
        "the first link is untouched"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.insert_external_identity(&fixtures::external_identity(UserId::new()))
            .await
            .is_err(),
        "a link to an absent user is refused (foreign key)"
    );
}

// ---------------------------------------------------------------------------------------------
// idempotency

pub async fn idempotency_claim_complete_release(store: Arc<dyn Store>) {
    let t = now();
    let stale_before = t - Duration::hours(24);
    let first = fixtures::idem("user:1", "key-1", t);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.claim_idempotency(&first, stale_before).await.unwrap(),
        IdemClaim::Claimed
    );
    let again = fixtures::idem("user:1", "key-1", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        IdemClaim::Existing(first.clone()),
        "a second claim sees the in-flight record"
    );
    assert_eq!(
        tx.claim_idempotency(&fixtures::idem("user:2", "key-1", t), stale_before)
            .await
            .unwrap(),
        IdemClaim::Claimed,
        "keys are scoped per caller"
    );
    let body = json!({"id": "abc", "nested": {"z": 1, "a": [true, null]}});
    tx.complete_idempotency("user:1", "key-1", 201, &body)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let done = IdemClaim::Existing(uos_store::IdempotencyRecord {
        status: Some(201),
        response: Some(body.clone()),
        ..first.clone()
    });
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        done,
        "a completed record replays status and body"
    );
    tx.release_idempotency("user:1", "key-1").await.unwrap();
    assert_eq!(
        tx.claim_idempotency(&again, stale_before).await.unwrap(),
        done,
        "release never drops a completed response"
    );
    let inflight = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&inflight, stale_before).await.unwrap(),
        IdemClaim::Claimed
    );
    tx.release_idempotency("user:1", "key-2").await.unwrap();
    let retry = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&retry, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "a released key can be claimed again"
    );
    tx.release_idempotency("user:1", "never-claimed")
        .await
        .expect("releasing nothing is fine");
    assert_err!(
        tx.complete_idempotency("user:1", "never-claimed", 200, &json!({}))
            .await,
        StoreError::NotFound,
        "completing an unclaimed key"
    );
}

pub async fn idempotency_stale_claim_is_replaced(store: Arc<dyn Store>) {
    let t = now();
    let stale_before = t - Duration::hours(1);
    let abandoned = fixtures::idem("user:1", "key-1", t - Duration::hours(2));
    let finished = fixtures::idem("user:1", "key-2", t - Duration::hours(3));
    let mut tx = store.begin().await.unwrap();
    tx.claim_idempotency(&abandoned, stale_before)
        .await
        .unwrap();
    tx.claim_idempotency(&finished, stale_before).await.unwrap();
    tx.complete_idempotency("user:1", "key-2", 200, &json!({"old": true}))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let fresh1 = fixtures::idem("user:1", "key-1", t);
    let fresh2 = fixtures::idem("user:1", "key-2", t);
    assert_eq!(
        tx.claim_idempotency(&fresh1, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "an abandoned in-flight claim is taken over"
    );
    assert_eq!(
        tx.claim_idempotency(&fresh2, stale_before).await.unwrap(),
        IdemClaim::Claimed,
        "an expired completed record is taken over"
    );
    let probe = fixtures::idem("user:1", "key-2", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&probe, stale_before).await.unwrap(),
        IdemClaim::Existing(fresh2),
        "the replacement is the new in-flight claim (old response gone)"
    );
    let probe = fixtures::idem("user:1", "key-1", t + Duration::seconds(1));
    assert_eq!(
        tx.claim_idempotency(&probe, stale_before).await.unwrap(),
        IdemClaim::Existing(fresh1)
    );
}

// ---------------------------------------------------------------------------------------------
// audit

pub async fn audit_append_moves_head(store: Arc<dyn Store>) {
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

pub async fn audit_append_refuses_a_fork(store: Arc<dyn Store>) {
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

pub async fn audit_list_filters_and_pages(store: Arc<dyn Store>) {
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

// ---------------------------------------------------------------------------------------------
// machine identities

pub async fn org_api_key_max_days_roundtrips(store: Arc<dyn Store>) {
    let mut o = fixtures::org();
    o.api_key_max_days = Some(90);
    let unlimited = fixtures::org();
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o).await.unwrap();
    tx.insert_org(&unlimited).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_org(o.id).await.unwrap(),
        Some(o.clone()),
        "api_key_max_days is stored"
    );
    assert_eq!(
        tx.get_org(unlimited.id)
            .await
            .unwrap()
            .map(|x| x.api_key_max_days),
        Some(None),
        "no org limit"
    );
    drop(tx);

    for (expected, days) in [(1, Some(u32::MAX)), (2, None), (3, Some(1))] {
        let mut changed = o.clone();
        changed.api_key_max_days = days;
        changed.version = expected + 1;
        let mut tx = store.begin().await.unwrap();
        tx.update_org(&changed, expected).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.read().await.unwrap();
        assert_eq!(
            tx.get_org(o.id).await.unwrap(),
            Some(changed.clone()),
            "update_org writes api_key_max_days = {days:?}"
        );
        let listed = tx
            .list_orgs(&OrgFilter::default(), &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(
            listed
                .items
                .iter()
                .find(|x| x.id == o.id)
                .map(|x| x.api_key_max_days),
            Some(days),
            "list_orgs reads api_key_max_days"
        );
    }
}

pub async fn service_account_insert_get_and_find(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut sa = fixtures::service_account(o.id);
    sa.name = "Ünïcode robot — ci".into();
    sa.description = Some("deploys things".into());
    sa.roles = vec![role("admin"), role("billing")];
    sa.rotation = RotationPolicy {
        max_key_age_days: Some(90),
        refuse_after_days: Some(14),
    };
    sa.client_secret_hash = Some(fixtures::hash());
    sa.client_secret_created_at = Some(now());
    let mut disabled = fixtures::service_account(o.id);
    disabled.roles = vec![];
    disabled
        .set_status(ServiceAccountStatus::Disabled, now())
        .unwrap();
    let mut deleted = fixtures::service_account(o.id);
    deleted.rotation.max_key_age_days = Some(0);
    deleted.delete(now()).unwrap();
    let mut tx = store.begin().await.unwrap();
    for a in [&sa, &disabled, &deleted] {
        tx.insert_service_account(a).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_service_account(o.id, sa.id).await.unwrap(),
        Some(sa.clone()),
        "get_service_account round-trips every field"
    );
    assert_eq!(
        tx.get_service_account(other.id, sa.id).await.unwrap(),
        None,
        "an account is only found within its org"
    );
    assert_eq!(
        tx.get_service_account(o.id, ServiceAccountId::new())
            .await
            .unwrap(),
        None,
        "absent id"
    );
    assert_eq!(
        tx.get_service_account(o.id, deleted.id).await.unwrap(),
        Some(deleted.clone()),
        "deleted accounts are still found by id"
    );
    assert_eq!(
        tx.find_service_account(sa.id).await.unwrap(),
        Some(sa.clone()),
        "find_service_account needs no org"
    );
    assert_eq!(
        tx.find_service_account(disabled.id).await.unwrap(),
        Some(disabled.clone())
    );
    assert_eq!(
        tx.find_service_account(ServiceAccountId::new())
            .await
            .unwrap(),
        None,
        "absent id"
    );
}

pub async fn service_account_update_is_optimistic(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let original = seed_service_account(&store, o.id).await;
    let mut changed = original.clone();
    changed.name = "renamed".into();
    changed.description = Some("now described".into());
    changed.roles = vec![role("viewer"), role("billing")];
    changed.rotation = RotationPolicy {
        max_key_age_days: Some(30),
        refuse_after_days: None,
    };
    changed.client_secret_hash = Some(fixtures::hash());
    changed.client_secret_created_at = Some(now());
    changed.touch(now());
    let mut tx = store.begin().await.unwrap();
    tx.update_service_account(&changed, 1)
        .await
        .expect("update at the read version");
    tx.commit().await.unwrap();

    let mut stale = original.clone();
    stale.description = Some("stale".into());
    stale.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_service_account(&stale, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    assert_eq!(
        tx.get_service_account(o.id, original.id).await.unwrap(),
        Some(changed.clone()),
        "a refused update leaves the row unchanged"
    );
    let mut deleted = changed.clone();
    deleted.delete(now()).unwrap();
    tx.update_service_account(&deleted, changed.version)
        .await
        .expect("soft delete is an update");
    assert_eq!(
        tx.find_service_account(original.id).await.unwrap(),
        Some(deleted),
        "the deleted account keeps its row"
    );
    assert_err!(
        tx.update_service_account(&fixtures::service_account(o.id), 1)
            .await,
        StoreError::NotFound,
        "update of an absent account"
    );
}

pub async fn service_account_name_unique_until_deleted(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut first = seed_service_account(&store, o.id).await;
    let mut dup = fixtures::service_account(o.id);
    dup.name = first.name.clone();
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.insert_service_account(&dup).await,
        StoreError::Conflict("name_taken"),
        "a second account with the same name in the org"
    );
    drop(tx);

    let mut elsewhere = fixtures::service_account(other.id);
    elsewhere.name = first.name.clone();
    let mut tx = store.begin().await.unwrap();
    tx.insert_service_account(&elsewhere)
        .await
        .expect("the same name in another org");
    tx.commit().await.unwrap();

    let mut second = seed_service_account(&store, o.id).await;
    second.name = first.name.clone();
    second.version += 1;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_service_account(&second, 1).await,
        StoreError::Conflict("name_taken"),
        "renaming onto a taken name"
    );
    drop(tx);

    // Deleting the first account frees its name, any number of times.
    let v = first.version;
    first.delete(now()).unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.update_service_account(&first, v).await.unwrap();
    tx.insert_service_account(&dup)
        .await
        .expect("the name of a deleted account can be reused");
    let mut dup_deleted = dup.clone();
    dup_deleted.delete(now()).unwrap();
    tx.update_service_account(&dup_deleted, dup.version)
        .await
        .expect("two deleted accounts may share a name");
    let mut third = fixtures::service_account(o.id);
    third.name = first.name.clone();
    tx.insert_service_account(&third)
        .await
        .expect("reused again after the second deletion");
    tx.commit().await.unwrap();
}

/// Every account id of `org`, page by page.
async fn service_account_ids(
    tx: &mut dyn ReadTx,
    org: OrgId,
    include_deleted: bool,
    limit: u32,
) -> Vec<ServiceAccountId> {
    let mut got = Vec::new();
    let mut next = None;
    loop {
        let page = tx
            .list_service_accounts(org, include_deleted, &after(&next, limit))
            .await
            .unwrap();
        assert!(page.items.len() <= limit as usize, "at most `limit` items");
        if let Some(cursor) = &page.next {
            assert_eq!(
                cursor,
                &page.items.last().unwrap().id.to_string(),
                "the cursor is the last id"
            );
        }
        got.extend(page.items.iter().map(|a| a.id));
        next = page.next;
        if next.is_none() {
            return got;
        }
    }
}

pub async fn service_account_list_pages_and_deleted(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut all = Vec::new();
    let mut live = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for i in 0..25 {
        let mut sa = fixtures::service_account(o.id);
        if i % 4 == 1 {
            sa.delete(now()).unwrap();
        } else {
            live.push(sa.id);
        }
        if i % 3 == 0 {
            sa.set_status(ServiceAccountStatus::Disabled, now()).ok();
        }
        tx.insert_service_account(&sa).await.unwrap();
        all.push(sa);
        if i % 8 == 0 {
            tx.insert_service_account(&fixtures::service_account(other.id))
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx
            .list_service_accounts(o.id, true, &after(&next, 10))
            .await
            .unwrap();
        assert_eq!(page.items.len(), size, "accounts in pages of 10/10/5");
        seen.extend(page.items);
        next = page.next;
    }
    assert_eq!(next, None, "no cursor after the last page");
    assert_eq!(
        seen, all,
        "with deleted: every account of the org, in creation order"
    );
    assert_eq!(
        service_account_ids(&mut *tx, o.id, false, 7).await,
        live,
        "without deleted: the undeleted ones (disabled included), in creation order"
    );
    assert_eq!(
        service_account_ids(&mut *tx, o.id, false, 100).await,
        live,
        "one page"
    );
    assert_eq!(
        service_account_ids(&mut *tx, OrgId::new(), true, 10).await,
        vec![],
        "an org without accounts"
    );
}

pub async fn count_service_accounts_with_role_skips_deleted(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let with = |org: OrgId, roles: &[&str]| {
        let mut sa = fixtures::service_account(org);
        sa.roles = roles.iter().map(|r| role(r)).collect();
        sa
    };
    let mut deleted = with(o.id, &["viewer", "member"]);
    deleted.delete(now()).unwrap();
    let mut disabled = with(o.id, &["billing"]);
    disabled
        .set_status(ServiceAccountStatus::Disabled, now())
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    for sa in [
        with(o.id, &["viewer"]),
        with(o.id, &["member", "viewer"]),
        with(o.id, &["viewers", "member"]),
        with(o.id, &[]),
        deleted,
        disabled,
        with(other.id, &["viewer", "billing"]),
    ] {
        tx.insert_service_account(&sa).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    for (name, expected, why) in [
        ("viewer", 2, "deleted accounts and other orgs do not count"),
        ("view", 0, "no substring match"),
        ("member", 2, "any position in the list"),
        ("billing", 1, "disabled accounts still hold their roles"),
        ("owner", 0, "nobody"),
    ] {
        assert_eq!(
            tx.count_service_accounts_with_role(o.id, &role(name))
                .await
                .unwrap(),
            expected,
            "{name}: {why}"
        );
    }
}

pub async fn api_key_roundtrip_and_prefix_unique(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let mut old = fixtures::api_key(&sa);
    let mut key = fixtures::api_key(&sa);
    key.name = "Ünïcode key — deploy".into();
    key.scopes = vec![permission("org:read"), permission("service_accounts:write")];
    key.expires_at = Some(now() + Duration::days(30));
    key.last_used_at = Some(now());
    key.replaces = Some(old.id);
    key.overdue_reported_at = Some(now());
    old.replaced_by = Some(key.id);
    old.expires_at = Some(now() + Duration::hours(1));
    old.revoke(now());
    let mut unscoped = fixtures::api_key(&sa);
    unscoped.scopes = vec![];
    let mut tx = store.begin().await.unwrap();
    for k in [&key, &old, &unscoped] {
        tx.insert_api_key(k).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.get_api_key(o.id, key.id).await.unwrap(),
        Some(key.clone()),
        "get_api_key round-trips every field"
    );
    assert_eq!(
        tx.get_api_key(o.id, old.id).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        tx.get_api_key(o.id, unscoped.id).await.unwrap(),
        Some(unscoped.clone()),
        "no scopes"
    );
    assert_eq!(
        tx.get_api_key(other.id, key.id).await.unwrap(),
        None,
        "a key is only found within its org"
    );
    assert_eq!(
        tx.get_api_key(o.id, ApiKeyId::new()).await.unwrap(),
        None,
        "absent id"
    );
    assert_eq!(
        tx.get_api_key_by_prefix(&key.prefix).await.unwrap(),
        Some(key.clone()),
        "lookup by prefix"
    );
    assert_eq!(
        tx.get_api_key_by_prefix(&old.prefix).await.unwrap(),
        Some(old.clone()),
        "revoked keys are found too (the caller refuses them)"
    );
    assert_eq!(
        tx.get_api_key_by_prefix("uos_nothing").await.unwrap(),
        None,
        "absent prefix"
    );
    let mut dup = fixtures::api_key(&sa);
    dup.prefix = key.prefix.clone();
    assert_err!(
        tx.insert_api_key(&dup).await,
        StoreError::Conflict("prefix_taken"),
        "two keys with one prefix"
    );
}

pub async fn api_key_update_is_optimistic(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let key = seed_api_key(&store, &sa).await;
    let used_at = now();
    let mut tx = store.begin().await.unwrap();
    tx.touch_api_keys(&[(key.id, used_at)]).await.unwrap();
    tx.commit().await.unwrap();

    // A copy read before the use: its last_used_at is stale and must not be written back.
    let mut changed = key.clone();
    changed.name = "renamed".into();
    changed.scopes = vec![];
    changed.expires_at = Some(now() + Duration::days(1));
    changed.replaced_by = Some(ApiKeyId::new());
    changed.overdue_reported_at = Some(now());
    assert!(changed.revoke(now()));
    let mut tx = store.begin().await.unwrap();
    tx.update_api_key(&changed, 1)
        .await
        .expect("update at the read version");
    tx.commit().await.unwrap();
    let stored = ApiKey {
        last_used_at: Some(used_at),
        ..changed.clone()
    };

    let mut stale = key.clone();
    stale.name = "stale".into();
    stale.version = 2;
    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.update_api_key(&stale, 1).await,
        StoreError::VersionConflict,
        "stale expected_version"
    );
    assert_eq!(
        tx.get_api_key(o.id, key.id).await.unwrap(),
        Some(stored),
        "the update is stored; last_used_at is left to touch_api_keys"
    );
    assert_err!(
        tx.update_api_key(&fixtures::api_key(&sa), 1).await,
        StoreError::NotFound,
        "update of an absent key"
    );
}

pub async fn api_key_list_pages_per_account(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let sibling = seed_service_account(&store, o.id).await;
    let mut created = Vec::new();
    let mut sibling_keys = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for i in 0..25 {
        let mut key = fixtures::api_key(&sa);
        if i % 5 == 0 {
            key.revoke(now());
        }
        if i % 7 == 0 {
            key.expires_at = Some(now() - Duration::days(1));
        }
        tx.insert_api_key(&key).await.unwrap();
        created.push(key);
        if i % 8 == 0 {
            let k = fixtures::api_key(&sibling);
            tx.insert_api_key(&k).await.unwrap();
            sibling_keys.push(k);
        }
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [10, 10, 5] {
        let page = tx.list_api_keys(sa.id, &after(&next, 10)).await.unwrap();
        assert_eq!(page.items.len(), size, "keys in pages of 10/10/5");
        if let Some(cursor) = &page.next {
            assert_eq!(cursor, &page.items.last().unwrap().id.to_string());
        }
        seen.extend(page.items);
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(
        seen, created,
        "one account's keys in creation order, revoked and expired included"
    );
    let page = tx
        .list_api_keys(sibling.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items, sibling_keys, "the other account's keys");
    assert_eq!(page.next, None);
    let page = tx
        .list_api_keys(ServiceAccountId::new(), &PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none(), "no keys");
}

pub async fn revoke_service_account_keys_revokes_live_ones(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let sibling = seed_service_account(&store, o.id).await;
    let a = fixtures::api_key(&sa);
    let mut expired = fixtures::api_key(&sa);
    expired.expires_at = Some(now() - Duration::days(1));
    let mut revoked = fixtures::api_key(&sa);
    let revoked_at = now() - Duration::hours(1);
    revoked.revoke(revoked_at);
    let untouched = fixtures::api_key(&sibling);
    let mut tx = store.begin().await.unwrap();
    for k in [&a, &expired, &revoked, &untouched] {
        tx.insert_api_key(k).await.unwrap();
    }
    tx.commit().await.unwrap();

    let at = now();
    let mut tx = store.begin().await.unwrap();
    let mut expected = vec![a.id, expired.id];
    expected.sort();
    let mut got = tx.revoke_service_account_keys(sa.id, at).await.unwrap();
    got.sort();
    assert_eq!(got, expected, "every unrevoked key of the account");
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    for k in [&a, &expired] {
        let mut want = k.clone();
        assert!(want.revoke(at));
        assert_eq!(
            tx.get_api_key(o.id, k.id).await.unwrap(),
            Some(want),
            "revoked at `at`, version bumped"
        );
    }
    assert_eq!(
        tx.get_api_key(o.id, revoked.id).await.unwrap(),
        Some(revoked.clone()),
        "an already revoked key keeps its first revocation"
    );
    assert_eq!(
        tx.get_api_key(o.id, untouched.id).await.unwrap(),
        Some(untouched.clone()),
        "another account's keys are untouched"
    );
    assert_eq!(
        tx.revoke_service_account_keys(sa.id, now()).await.unwrap(),
        vec![],
        "nothing left to revoke"
    );
}

pub async fn touch_api_keys_keeps_the_latest_use(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let a = seed_api_key(&store, &sa).await;
    let b = seed_api_key(&store, &sa).await;
    let c = seed_api_key(&store, &sa).await;
    let base = DateTime::from_timestamp(1_950_000_000, 0).unwrap();
    let us = Duration::microseconds;
    let expect = |tx_key: Option<ApiKey>, key: &ApiKey, t| {
        assert_eq!(
            tx_key,
            Some(ApiKey {
                last_used_at: t,
                ..key.clone()
            }),
            "only last_used_at moves, the version stays"
        );
    };

    let mut tx = store.begin().await.unwrap();
    tx.touch_api_keys(&[]).await.expect("an empty batch");
    tx.touch_api_keys(&[
        (a.id, base + us(1)),
        (ApiKeyId::new(), base),
        (b.id, base + us(500_000)),
    ])
    .await
    .expect("unknown ids are skipped");
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    expect(
        tx.get_api_key(o.id, a.id).await.unwrap(),
        &a,
        Some(base + us(1)),
    );
    expect(
        tx.get_api_key(o.id, b.id).await.unwrap(),
        &b,
        Some(base + us(500_000)),
    );
    expect(tx.get_api_key(o.id, c.id).await.unwrap(), &c, None);
    drop(tx);

    // Earlier times never move last_used_at back (a whole second sorts before its fractions);
    // within one batch the latest use of a key wins whatever its position.
    let mut tx = store.begin().await.unwrap();
    tx.touch_api_keys(&[(a.id, base), (b.id, base + us(500_001))])
        .await
        .unwrap();
    tx.touch_api_keys(&[
        (c.id, base + Duration::seconds(3)),
        (c.id, base + Duration::seconds(10)),
        (c.id, base + us(9_999_999)),
    ])
    .await
    .unwrap();
    tx.touch_api_keys(&[]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    expect(
        tx.get_api_key(o.id, a.id).await.unwrap(),
        &a,
        Some(base + us(1)),
    );
    expect(
        tx.get_api_key(o.id, b.id).await.unwrap(),
        &b,
        Some(base + us(500_001)),
    );
    expect(
        tx.get_api_key(o.id, c.id).await.unwrap(),
        &c,
        Some(base + Duration::seconds(10)),
    );
}

pub async fn overdue_api_keys_list_claim_and_count(store: Arc<dyn Store>) {
    // Half a millisecond before midnight, on the day after February: day arithmetic must be
    // exact to the microsecond and across month ends.
    let at = DateTime::parse_from_rfc3339("2031-03-01T23:59:59.999600Z")
        .unwrap()
        .with_timezone(&Utc);
    let days = Duration::days;
    let us = Duration::microseconds;
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let account = |org: OrgId, max: Option<u32>| {
        let mut sa = fixtures::service_account(org);
        sa.rotation.max_key_age_days = max;
        sa.rotation.refuse_after_days = max.map(|_| 7);
        sa
    };
    let policy = account(o.id, Some(30));
    let short = account(o.id, Some(1));
    let none = account(o.id, None);
    let mut deleted = account(o.id, Some(30));
    deleted.delete(now()).unwrap();
    let elsewhere = account(other.id, Some(30));
    let key = |sa: &ServiceAccount, age: Duration| {
        let mut k = fixtures::api_key(sa);
        k.created_at = at - age;
        k
    };

    let old = key(&policy, days(40));
    let edge = key(&policy, days(30));
    let young = key(&policy, days(30) - us(1));
    let mut revoked = key(&policy, days(40));
    revoked.revoke(at - days(1));
    let mut replaced = key(&policy, days(40));
    replaced.replaced_by = Some(young.id);
    let mut expired = key(&policy, days(40));
    expired.expires_at = Some(at);
    let mut expiring = key(&policy, days(40));
    expiring.expires_at = Some(at + us(1));
    let mut reported = key(&policy, days(40));
    reported.overdue_reported_at = Some(at - days(1));
    let short_old = key(&short, days(1));
    let short_young = key(&short, days(1) - us(1));
    let no_policy = key(&none, days(4000));
    let of_deleted = key(&deleted, days(40));
    let other_org = key(&elsewhere, days(31));

    let mut tx = store.begin().await.unwrap();
    for sa in [&policy, &short, &none, &deleted, &elsewhere] {
        tx.insert_service_account(sa).await.unwrap();
    }
    let all = [
        &old,
        &edge,
        &young,
        &revoked,
        &replaced,
        &expired,
        &expiring,
        &reported,
        &short_old,
        &short_young,
        &no_policy,
        &of_deleted,
        &other_org,
    ];
    for k in all {
        tx.insert_api_key(k).await.unwrap();
    }
    tx.commit().await.unwrap();

    let ids = |keys: &[&ApiKey]| {
        let mut v: Vec<ApiKeyId> = keys.iter().map(|k| k.id).collect();
        v.sort();
        v
    };
    let in_org = ids(&[&old, &edge, &expiring, &reported, &short_old]);
    let mut tx = store.begin().await.unwrap();
    let mut seen = Vec::new();
    let mut next = None;
    for size in [2, 2, 1] {
        let page = tx
            .list_overdue_api_keys(o.id, at, &after(&next, 2))
            .await
            .unwrap();
        assert_eq!(page.items.len(), size, "overdue keys in pages of 2/2/1");
        seen.extend(page.items.iter().map(|k| k.id));
        next = page.next;
    }
    assert_eq!(next, None);
    assert_eq!(
        seen, in_org,
        "overdue: at or past the account's age, unrevoked, unreplaced, unexpired, account \
         not deleted; in creation order"
    );
    let page = tx
        .list_overdue_api_keys(o.id, at, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        page.items.iter().find(|k| k.id == old.id),
        Some(&old),
        "listed keys are whole"
    );
    assert_eq!(
        tx.list_overdue_api_keys(other.id, at, &PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![other_org.clone()],
        "one org at a time"
    );
    assert_eq!(
        tx.list_overdue_api_keys(o.id, at - days(11), &PageRequest::first(10))
            .await
            .unwrap()
            .items,
        vec![],
        "eleven days earlier nothing was overdue yet"
    );
    assert_eq!(
        tx.count_overdue_api_keys(at).await.unwrap(),
        6,
        "count: every org"
    );

    // Claims: the unreported overdue keys, at most `limit` at a time, each exactly once.
    let claimable = ids(&[&old, &edge, &expiring, &short_old, &other_org]);
    let first = tx.claim_overdue_api_keys(at, 3).await.unwrap();
    let second = tx.claim_overdue_api_keys(at, 3).await.unwrap();
    let third = tx.claim_overdue_api_keys(at, 3).await.unwrap();
    assert_eq!(first.len(), 3, "at most `limit`");
    assert_eq!(second.len(), 2, "the rest");
    assert!(third.is_empty(), "claimed once only: {third:?}");
    let mut claimed: Vec<ApiKeyId> = first.iter().chain(&second).map(|k| k.id).collect();
    claimed.sort();
    assert_eq!(
        claimed, claimable,
        "every unreported overdue key, across orgs"
    );
    for k in first.iter().chain(&second) {
        let before = all.iter().find(|x| x.id == k.id).unwrap();
        assert_eq!(
            k,
            &ApiKey {
                overdue_reported_at: Some(at),
                ..(*before).clone()
            },
            "a claimed key comes back with overdue_reported_at = now"
        );
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_api_key(o.id, reported.id).await.unwrap(),
        Some(reported.clone()),
        "an earlier report is kept"
    );
    assert_eq!(
        tx.get_api_key(o.id, young.id)
            .await
            .unwrap()
            .and_then(|k| k.overdue_reported_at),
        None,
        "keys that are not overdue are not marked"
    );
    assert_eq!(
        tx.count_overdue_api_keys(at).await.unwrap(),
        6,
        "reported keys are still overdue"
    );
    assert_eq!(
        tx.list_overdue_api_keys(o.id, at, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    assert_eq!(
        tx.count_overdue_api_keys(at - us(1)).await.unwrap(),
        5,
        "one microsecond earlier the edge key is not overdue yet"
    );
}

pub async fn revoked_access_tokens_idempotent_and_purged(store: Arc<dyn Store>) {
    let t = now();
    let gone = uuid::Uuid::now_v7();
    let edge = uuid::Uuid::now_v7();
    let live = uuid::Uuid::now_v7();
    let mut tx = store.begin().await.unwrap();
    assert!(tx
        .revoke_access_token(gone, t - Duration::seconds(1))
        .await
        .unwrap());
    assert!(tx.revoke_access_token(edge, t).await.unwrap());
    assert!(tx
        .revoke_access_token(live, t + Duration::hours(1))
        .await
        .unwrap());
    assert!(
        !tx.revoke_access_token(live, t + Duration::hours(1))
            .await
            .expect("revoking twice is fine"),
        "the second revocation added nothing"
    );
    tx.commit().await.unwrap();

    // Concurrent revocations of one token: exactly one of them adds the denial.
    let same = uuid::Uuid::now_v7();
    let racers = (0..4).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let added = tx
                .revoke_access_token(same, t + Duration::hours(1))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.commit().await.unwrap();
            added
        })
    });
    let mut added = 0;
    for r in racers.collect::<Vec<_>>() {
        added += usize::from(r.await.unwrap());
    }
    assert_eq!(
        added, 1,
        "exactly one concurrent revocation adds the denial"
    );

    let mut tx = store.read().await.unwrap();
    for jti in [gone, edge, live] {
        assert!(tx.is_access_token_revoked(jti).await.unwrap(), "revoked");
    }
    assert!(
        !tx.is_access_token_revoked(uuid::Uuid::now_v7())
            .await
            .unwrap(),
        "an unknown jti is not revoked"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.purge_revoked_access_tokens(t).await.unwrap(),
        2,
        "tokens expired by now (expiry at now included)"
    );
    assert_eq!(tx.purge_revoked_access_tokens(t).await.unwrap(), 0);
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert!(!tx.is_access_token_revoked(gone).await.unwrap());
    assert!(!tx.is_access_token_revoked(edge).await.unwrap());
    assert!(
        tx.is_access_token_revoked(live).await.unwrap(),
        "an unexpired token stays denied"
    );
}

// ---------------------------------------------------------------------------------------------
// transactions and paging edges

pub async fn rollback_discards_changes(store: Arc<dyn Store>) {
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
    assert_eq!(tx.audit_head().await.unwrap().seq, 0, "head rolled back");
    drop(tx);
    // The writer is free again after a rollback.
    let mut tx = store.begin().await.unwrap();
    tx.insert_org(&o)
        .await
        .expect("the rolled-back row can be written again");
    tx.commit().await.unwrap();
}

pub async fn commit_makes_changes_visible_to_read(store: Arc<dyn Store>) {
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

pub async fn page_boundary_is_exact(store: Arc<dyn Store>) {
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

pub async fn bad_cursor_is_corrupt(store: Arc<dyn Store>) {
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

// ---------------------------------------------------------------------------------------------
// concurrency

pub async fn concurrent_updates_one_wins(store: Arc<dyn Store>) {
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

pub async fn concurrent_idempotency_claims_one_wins(store: Arc<dyn Store>) {
    let t = now();
    let attempt = || {
        let store = store.clone();
        let rec = fixtures::idem("user:1", "same-key", t);
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let claim = tx.claim_idempotency(&rec, t - Duration::hours(1)).await?;
            tokio::task::yield_now().await;
            tx.commit().await?;
            Ok::<_, StoreError>(claim)
        })
    };
    let (a, b) = (attempt(), attempt());
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two claims must not deadlock");
    let claimed = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(IdemClaim::Claimed)))
        .count();
    let existing = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Ok(IdemClaim::Existing(_))))
        .count();
    assert_eq!(
        (claimed, existing),
        (1, 1),
        "exactly one Claimed: {a:?} / {b:?}"
    );
}

pub async fn concurrent_refresh_token_use_one_wins(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let token = seed_refresh_token(&store, u.id).await;
    let t = now();
    let attempt = |at| {
        let store = store.clone();
        let hash = token.token_hash.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let next = format!("{:064x}", unique());
            let won = matches!(
                tx.rotate_refresh_token(&hash, &next, at).await?,
                TokenUse::Fresh(_)
            );
            tokio::task::yield_now().await;
            tx.commit().await?;
            Ok::<_, StoreError>(won)
        })
    };
    let (a, b) = (attempt(t), attempt(t + Duration::seconds(1)));
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two uses of one token must not deadlock");
    let used_at = match (&a, &b) {
        (Ok(true), Ok(false)) => t,
        (Ok(false), Ok(true)) => t + Duration::seconds(1),
        _ => panic!("exactly one true and one false, both Ok: got {a:?} and {b:?}"),
    };
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_refresh_token(&token.token_hash)
            .await
            .unwrap()
            .and_then(|r| r.used_at),
        Some(used_at),
        "the winner's time is stored"
    );
}

pub async fn concurrent_overdue_claims_split_the_keys(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let mut sa = fixtures::service_account(o.id);
    sa.rotation.max_key_age_days = Some(1);
    let at = now();
    let mut expected = Vec::new();
    let mut tx = store.begin().await.unwrap();
    tx.insert_service_account(&sa).await.unwrap();
    for _ in 0..20 {
        let mut k = fixtures::api_key(&sa);
        k.created_at = at - Duration::days(2);
        tx.insert_api_key(&k).await.unwrap();
        expected.push(k.id);
    }
    tx.commit().await.unwrap();

    // Two sweepers, each claiming small batches until nothing is left.
    let sweeper = || {
        let store = store.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let mut tx = store.begin().await?;
                let batch = tx.claim_overdue_api_keys(at, 3).await?;
                tokio::task::yield_now().await;
                tx.commit().await?;
                if batch.is_empty() {
                    return Ok::<_, StoreError>(got);
                }
                got.extend(batch.into_iter().map(|k| k.id));
            }
        })
    };
    let (a, b) = (sweeper(), sweeper());
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await
    .expect("two sweeps must not deadlock");
    let (a, b) = (a.unwrap(), b.unwrap());
    let sa_set: BTreeSet<_> = a.iter().collect();
    assert!(
        b.iter().all(|id| !sa_set.contains(id)),
        "no key is claimed by both sweeps: {a:?} / {b:?}"
    );
    let mut all: Vec<ApiKeyId> = a.into_iter().chain(b).collect();
    all.sort();
    assert_eq!(all, expected, "together they claim every overdue key once");
}

pub async fn concurrent_touches_do_not_deadlock(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let mut keys = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for _ in 0..50 {
        let k = fixtures::api_key(&sa);
        tx.insert_api_key(&k).await.unwrap();
        keys.push(k);
    }
    tx.commit().await.unwrap();
    let base = now();

    // Four flushes of overlapping batches in different orders, each holding its row locks
    // until commit.
    let flush = |n: usize| {
        let store = store.clone();
        let mut batch: Vec<(ApiKeyId, DateTime<Utc>)> = keys
            .iter()
            .map(|k| (k.id, base + Duration::seconds(n as i64)))
            .collect();
        batch.rotate_left(n * 13);
        if n % 2 == 1 {
            batch.reverse();
        }
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            tx.touch_api_keys(&batch).await?;
            tokio::task::yield_now().await;
            tx.commit().await
        })
    };
    let flushes: Vec<_> = (0..4).map(flush).collect();
    let results = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let mut out = Vec::new();
        for f in flushes {
            out.push(f.await.unwrap());
        }
        out
    })
    .await
    .expect("concurrent flushes must not hang");
    for r in &results {
        assert!(r.is_ok(), "every flush succeeds: {results:?}");
    }
    let mut tx = store.read().await.unwrap();
    for k in &keys {
        let stored = tx.get_api_key(o.id, k.id).await.unwrap().unwrap();
        assert_eq!(
            stored.last_used_at,
            Some(base + Duration::seconds(3)),
            "the latest use wins whatever the commit order"
        );
        assert_eq!(stored.version, 1, "usage does not bump the version");
    }
}
