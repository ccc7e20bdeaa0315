//! Conformance cases of second factors, recovery codes, password history and resets, federated identities.

use chrono::Duration;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::UserId;
use uos_store::{ExternalIdentity, LoginUser, PasswordReset, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn totp_put_get_confirm_delete(store: Arc<dyn Store>) {
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

#[conformance]
async fn login_user_reads_the_second_factor_with_the_user(store: Arc<dyn Store>) {
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

#[conformance]
async fn totp_step_is_used_once(store: Arc<dyn Store>) {
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

#[conformance]
async fn recovery_codes_replace_and_use_once(store: Arc<dyn Store>) {
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

#[conformance]
async fn password_history_newest_first_with_limit(store: Arc<dyn Store>) {
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

#[conformance]
async fn password_reset_token_flow(store: Arc<dyn Store>) {
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

#[conformance]
async fn password_reset_approval_once(store: Arc<dyn Store>) {
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
    // Waiting, expired, used and ordinary resets side by side.
    for r in [&ordinary, &used, &second, &expired, &first] {
        tx.insert_password_reset(r).await.unwrap();
    }
    tx.commit().await.unwrap();

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

#[conformance]
async fn external_identity_link_and_unique(store: Arc<dyn Store>) {
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
