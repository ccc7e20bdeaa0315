//! Conformance cases of retention: per-subject keys, legal holds, and what purging a user or an
//! org finds and removes.

use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{OrgSlug, OrgStatus, User, UserStatus};
use uos_store::{HoldOn, LegalHold, Store, StoreError, SubjectKey};
use uos_store_tests::fixtures::*;

fn key(subject: &str) -> SubjectKey {
    SubjectKey {
        subject: subject.into(),
        wrapped_key: format!("wrapped-{subject}"),
        created_at: now(),
    }
}

fn hold(on: HoldOn) -> LegalHold {
    LegalHold {
        id: uuid::Uuid::now_v7(),
        on,
        reason: "litigation".into(),
        placed_by: "admin".into(),
        placed_at: now(),
        version: 1,
    }
}

/// A user soft-deleted `days_ago` days ago, committed.
async fn deleted_user(store: &Arc<dyn Store>, days_ago: i64) -> User {
    let mut u = user();
    u.status = UserStatus::Deleted;
    u.status_before_delete = Some(UserStatus::Active);
    u.deleted_at = Some(now() - Duration::days(days_ago));
    let mut tx = store.begin().await.unwrap();
    tx.insert_user(&u).await.unwrap();
    tx.commit().await.unwrap();
    u
}

#[conformance]
async fn a_subject_has_one_key_until_it_is_destroyed(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    assert!(tx.insert_subject_key(&key("user:a")).await.unwrap());
    assert!(tx.insert_subject_key(&key("email:b")).await.unwrap());
    let mut second = key("user:a");
    second.wrapped_key = "another".into();
    assert!(
        !tx.insert_subject_key(&second).await.unwrap(),
        "a second key for the same subject is not stored"
    );
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    let mut found = r
        .get_subject_keys(&["user:a".into(), "email:b".into(), "user:none".into()])
        .await
        .unwrap();
    found.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(
        found
            .iter()
            .map(|k| (k.subject.as_str(), k.wrapped_key.as_str()))
            .collect::<Vec<_>>(),
        [("email:b", "wrapped-email:b"), ("user:a", "wrapped-user:a")],
        "the first key of each subject, and nothing for an unknown one"
    );
    drop(r);

    let mut tx = store.begin().await.unwrap();
    let n = tx
        .destroy_subject_keys(&["user:a".into(), "email:b".into(), "user:none".into()])
        .await
        .unwrap();
    assert_eq!(n, 2, "the two existing keys are destroyed");
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    assert!(r
        .get_subject_keys(&["user:a".into()])
        .await
        .unwrap()
        .is_empty());
}

#[conformance]
async fn a_rolled_back_key_is_not_kept(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    tx.insert_subject_key(&key("user:rolled-back"))
        .await
        .unwrap();
    drop(tx);
    let mut r = store.read().await.unwrap();
    assert!(r
        .get_subject_keys(&["user:rolled-back".into()])
        .await
        .unwrap()
        .is_empty());
}

#[conformance]
async fn legal_holds_are_one_per_user_or_org(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let o = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    let on_user = hold(HoldOn::User(u.id));
    tx.insert_legal_hold(&on_user).await.unwrap();
    tx.insert_legal_hold(&hold(HoldOn::Org(o.id)))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.insert_legal_hold(&hold(HoldOn::User(u.id))).await,
        StoreError::Conflict("legal_hold_exists"),
        "a second hold on the same user"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    let got = tx
        .get_legal_hold(HoldOn::User(u.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, on_user);
    let mut next = got.clone();
    next.reason = "regulator".into();
    next.version = 2;
    tx.update_legal_hold(&next, 1).await.unwrap();
    assert_err!(
        tx.update_legal_hold(&next, 1).await,
        StoreError::VersionConflict,
        "a stale version"
    );
    assert_eq!(
        tx.get_legal_hold(HoldOn::User(u.id))
            .await
            .unwrap()
            .unwrap()
            .reason,
        "regulator"
    );
    assert!(tx.delete_legal_hold(HoldOn::User(u.id)).await.unwrap());
    assert!(
        !tx.delete_legal_hold(HoldOn::User(u.id)).await.unwrap(),
        "already lifted"
    );
    assert!(tx
        .get_legal_hold(HoldOn::User(u.id))
        .await
        .unwrap()
        .is_none());
    assert!(
        tx.get_legal_hold(HoldOn::Org(o.id))
            .await
            .unwrap()
            .is_some(),
        "the org's stays"
    );
    tx.commit().await.unwrap();
}

#[conformance]
async fn purgeable_users_are_deleted_past_the_window_and_not_held(store: Arc<dyn Store>) {
    let cutoff = now() - Duration::days(30);
    let old = deleted_user(&store, 40).await;
    let older = deleted_user(&store, 50).await;
    let recent = deleted_user(&store, 10).await;
    let held = deleted_user(&store, 40).await;
    let in_held_org = deleted_user(&store, 40).await;
    let _active = seed_user(&store).await;
    let org = seed_org(&store).await;
    seed_member(&store, org.id, in_held_org.id, &["member"]).await;
    let mut tx = store.begin().await.unwrap();
    tx.insert_legal_hold(&hold(HoldOn::User(held.id)))
        .await
        .unwrap();
    tx.insert_legal_hold(&hold(HoldOn::Org(org.id)))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    assert!(r.user_is_held(held.id).await.unwrap());
    assert!(
        r.user_is_held(in_held_org.id).await.unwrap(),
        "held through its org"
    );
    assert!(!r.user_is_held(old.id).await.unwrap());
    let found = r.purgeable_users(cutoff, 100).await.unwrap();
    // Other cases may share the database; only this case's users are looked at.
    let mine: Vec<_> = found
        .into_iter()
        .filter(|id| [old.id, older.id, recent.id, held.id, in_held_org.id].contains(id))
        .collect();
    assert_eq!(
        mine,
        [older.id, old.id],
        "oldest deletion first, none held or recent"
    );
}

#[conformance]
async fn erasing_a_user_removes_its_credentials_and_keeps_the_row(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let other = seed_user(&store).await;
    seed_session(&store, u.id).await;
    seed_session(&store, u.id).await;
    seed_session(&store, other.id).await;
    let mut tx = store.begin().await.unwrap();
    tx.put_totp(&totp(u.id)).await.unwrap();
    tx.insert_password_reset(&password_reset(u.id))
        .await
        .unwrap();
    tx.insert_external_identity(&external_identity(u.id))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let locked = tx.lock_user(u.id).await.unwrap().unwrap();
    assert_eq!(locked, u);
    assert_eq!(
        tx.erase_user_credentials(u.id).await.unwrap(),
        2,
        "its two sessions"
    );
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    assert!(r.get_totp(u.id).await.unwrap().is_none());
    assert!(r
        .list_live_sessions(u.id, now(), 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        r.list_live_sessions(other.id, now(), 10)
            .await
            .unwrap()
            .len(),
        1,
        "others keep theirs"
    );
    assert!(r.get_user(u.id).await.unwrap().is_some(), "the row stays");
}

#[conformance]
async fn purging_an_org_removes_its_data_and_keeps_the_row(store: Arc<dyn Store>) {
    let mut org = seed_org(&store).await;
    let keep = seed_org(&store).await;
    let u = seed_user(&store).await;
    seed_member(&store, org.id, u.id, &["owner"]).await;
    seed_member(&store, keep.id, u.id, &["owner"]).await;
    let sa = seed_service_account(&store, org.id).await;
    seed_api_key(&store, &sa).await;
    let joined = invite(org.id);
    let mut never = invite(org.id);
    never.email = email("never-joined@example.test");
    let mut tx = store.begin().await.unwrap();
    let mut member_invite = joined.clone();
    member_invite.email = u.email.clone();
    tx.insert_invite(&member_invite).await.unwrap();
    tx.insert_invite(&never).await.unwrap();
    tx.insert_role(&custom_role(org.id, "auditor-x"))
        .await
        .unwrap();
    org.status = OrgStatus::Deleted;
    org.deleted_at = Some(now() - Duration::days(40));
    org.version += 1;
    tx.update_org(&org, 1).await.unwrap();
    tx.commit().await.unwrap();

    let cutoff = now() - Duration::days(30);
    let mut r = store.read().await.unwrap();
    assert!(r
        .purgeable_orgs(cutoff, 100)
        .await
        .unwrap()
        .contains(&org.id));
    assert!(!r
        .purgeable_orgs(cutoff, 100)
        .await
        .unwrap()
        .contains(&keep.id));
    assert_eq!(
        r.org_invitees_without_account(org.id).await.unwrap(),
        [never.email.clone()],
        "only the invitee who has no account"
    );
    drop(r);

    let slug = OrgSlug::parse(&format!("purged-{}", org.id.0.simple())).unwrap();
    let at = now();
    let mut tx = store.begin().await.unwrap();
    assert!(tx.lock_org(org.id).await.unwrap().is_some());
    let done = tx.purge_org(org.id, &slug, at).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        (
            done.members_removed,
            done.invites_removed,
            done.roles_removed,
            done.service_accounts_removed
        ),
        (1, 2, 1, 1)
    );

    let mut tx = store.begin().await.unwrap();
    assert_err!(
        tx.purge_org(org.id, &slug, at).await,
        StoreError::NotFound,
        "an org is purged once"
    );
    drop(tx);
    let mut r = store.read().await.unwrap();
    let after = r.get_org(org.id).await.unwrap().expect("the row stays");
    assert_eq!((after.slug, after.display_name.as_str()), (slug, ""));
    assert_eq!(after.version, org.version + 1);
    assert!(r.org_purged_at(org.id).await.unwrap().is_some());
    assert!(r.org_purged_at(keep.id).await.unwrap().is_none());
    assert!(
        !r.purgeable_orgs(cutoff, 100)
            .await
            .unwrap()
            .contains(&org.id),
        "not found twice"
    );
    assert!(
        r.get_org_by_slug(&org.slug).await.unwrap().is_none(),
        "its old slug is free"
    );
    assert_eq!(
        r.list_memberships_of_user(u.id).await.unwrap().len(),
        1,
        "the other org's membership stays"
    );
}

#[conformance]
async fn a_held_org_is_not_purgeable(store: Arc<dyn Store>) {
    let mut org = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    org.status = OrgStatus::Deleted;
    org.deleted_at = Some(now() - Duration::days(40));
    org.version += 1;
    tx.update_org(&org, 1).await.unwrap();
    tx.insert_legal_hold(&hold(HoldOn::Org(org.id)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let cutoff = now() - Duration::days(30);
    let mut r = store.read().await.unwrap();
    assert!(!r
        .purgeable_orgs(cutoff, 100)
        .await
        .unwrap()
        .contains(&org.id));
}
