//! Conformance cases of sessions and their refresh tokens.

use crate::support::parsed;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{SessionId, UserId, UserStatus};
use uos_store::{AuditFilter, PageRequest, ReadTx, RefreshToken, Store, StoreError, TokenUse};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn sessions_revoke_single_and_all(store: Arc<dyn Store>) {
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

#[conformance]
async fn session_touch_moves_last_seen(store: Arc<dyn Store>) {
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

#[conformance]
async fn revoke_other_sessions_keeps_one(store: Arc<dyn Store>) {
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

#[conformance]
async fn list_live_sessions_skips_revoked_and_expired(store: Arc<dyn Store>) {
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

#[conformance]
async fn refresh_token_roundtrip_and_unique(store: Arc<dyn Store>) {
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

#[conformance]
async fn refresh_token_is_used_once(store: Arc<dyn Store>) {
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

#[conformance]
async fn refresh_session_uses_a_token_of_a_live_session_once(store: Arc<dyn Store>) {
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

#[conformance]
async fn refresh_session_refuses_a_dead_session_and_changes_nothing(store: Arc<dyn Store>) {
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

#[conformance]
async fn concurrent_refresh_session_one_wins(store: Arc<dyn Store>) {
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

#[conformance]
async fn open_session_audited_stores_all_three_or_nothing(store: Arc<dyn Store>) {
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
    let head = tx.audit_head(AUDIT_CHAIN).await.unwrap();
    assert_eq!((head.seq, &head.hash), (1, &event.hash), "the head moved");
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(parsed(page.items), vec![event.clone()]);
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
        assert_eq!(tx.audit_head(AUDIT_CHAIN).await.unwrap(), head, "{why}");
    }
}

#[conformance]
async fn concurrent_refresh_token_use_one_wins(store: Arc<dyn Store>) {
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
