//! Conformance cases of memberships.

use crate::support::after;
use std::collections::BTreeSet;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{MembershipStatus, OrgId, UserId, UserStatus};
use uos_store::{ListedMember, MemberFilter, ReadTx, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn membership_insert_get_and_unique(store: Arc<dyn Store>) {
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

#[conformance]
async fn membership_requires_org_and_user(store: Arc<dyn Store>) {
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

#[conformance]
async fn membership_update_and_delete(store: Arc<dyn Store>) {
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

/// Every page of a member listing, checking page sizes and cursors on the way.
async fn listed(
    tx: &mut dyn ReadTx,
    filter: &MemberFilter,
    sizes: &[usize],
    limit: u32,
) -> Vec<ListedMember> {
    let mut seen = Vec::new();
    let mut next = None;
    for (i, &size) in sizes.iter().enumerate() {
        let page = tx.list_members(filter, &after(&next, limit)).await.unwrap();
        assert_eq!(page.items.len(), size, "page {i} of {sizes:?}");
        next = page.next;
        let last = page.items.last().map(|m| m.membership.id.to_string());
        if i + 1 < sizes.len() {
            assert_eq!(next, last, "a full page's cursor is its last membership");
        }
        seen.extend(page.items);
    }
    assert_eq!(next, None, "the last page has no cursor");
    seen
}

#[conformance]
async fn membership_list_pages_and_status(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let other = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    let mut members = Vec::new();
    for i in 0..25 {
        let mut u = fixtures::user();
        if i % 4 == 0 {
            u.display_name = Some(format!("Member {i}"));
        }
        if i % 5 == 0 {
            u.status = UserStatus::Suspended;
        }
        tx.insert_user(&u).await.unwrap();
        let mut m = fixtures::membership(o.id, u.id, &["member"]);
        if i % 3 == 0 {
            m.status = MembershipStatus::Suspended;
        }
        tx.insert_membership(&m).await.unwrap();
        // Interleave another org's members, some of them the same users with other roles and
        // another status: they must never show up.
        let mut elsewhere = fixtures::membership(other.id, u.id, &["admin"]);
        if i % 3 != 0 {
            elsewhere.status = MembershipStatus::Suspended;
        }
        tx.insert_membership(&elsewhere).await.unwrap();
        let stranger = fixtures::user();
        tx.insert_user(&stranger).await.unwrap();
        tx.insert_membership(&fixtures::membership(other.id, stranger.id, &["owner"]))
            .await
            .unwrap();
        members.push(ListedMember {
            membership: m,
            email: u.email.clone(),
            display_name: u.display_name.clone(),
            user_status: u.status,
        });
    }
    tx.commit().await.unwrap();

    let mut tx = store.read().await.unwrap();
    let all = MemberFilter {
        org: o.id,
        status: None,
    };
    assert_eq!(
        listed(&mut *tx, &all, &[10, 10, 5], 10).await,
        members,
        "one org's members in creation order, each with its own user's email, name and status"
    );

    let by_status: [(_, &[usize]); 2] = [
        (MembershipStatus::Active, &[7, 7, 2]),
        (MembershipStatus::Suspended, &[7, 2]),
    ];
    for (status, sizes) in by_status {
        let filter = MemberFilter {
            org: o.id,
            status: Some(status),
        };
        let wanted: Vec<_> = members
            .iter()
            .filter(|m| m.membership.status == status)
            .cloned()
            .collect();
        assert_eq!(
            listed(&mut *tx, &filter, sizes, 7).await,
            wanted,
            "the membership's status (not the user's) filters, with paging"
        );
    }

    let nobody = MemberFilter {
        org: OrgId::new(),
        status: None,
    };
    assert!(
        listed(&mut *tx, &nobody, &[0], 10).await.is_empty(),
        "an org without members"
    );
    let theirs = listed(
        &mut *tx,
        &MemberFilter {
            org: other.id,
            status: None,
        },
        &[50],
        100,
    )
    .await;
    assert!(
        theirs.iter().all(|m| m.membership.org_id == other.id),
        "the other org lists its own members only"
    );
    assert_eq!(theirs.len(), 50);
}

#[conformance]
async fn lock_active_owners_returns_active_owners(store: Arc<dyn Store>) {
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

#[conformance]
async fn count_members_with_role_matches_whole_names(store: Arc<dyn Store>) {
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
