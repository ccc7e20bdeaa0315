//! Conformance cases of sessions and their refresh state (current token hash and generation).

use crate::backends::{run_landed, Backend, Landed, LandedSession};
use crate::support::parsed;
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{SessionId, UserId, UserStatus};
use uos_store::{AuditFilter, PageRequest, ReadTx, Session, Store, StoreError, TokenUse};
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
        tx.insert_session(s, &fixtures::hash()).await.unwrap();
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
        tx.insert_session(s, &fixtures::hash()).await.unwrap();
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
        tx.insert_session(s, &fixtures::hash()).await.unwrap();
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

/// One `refresh_session` at `at` (sessions idle since `idle_since` are dead) of the token of
/// `generation` with hash `token_hash`; with the hash of the successor it was asked to store.
async fn refresh_at(
    store: &Arc<dyn Store>,
    session: SessionId,
    generation: i64,
    token_hash: &str,
    at: DateTime<Utc>,
    idle_since: DateTime<Utc>,
) -> (TokenUse, String) {
    let r = fixtures::rotation(session, generation, token_hash);
    let used = store.refresh_session(&r, at, idle_since).await.unwrap();
    (used, r.next_hash)
}

/// The session as it is stored now.
async fn stored(store: &Arc<dyn Store>, id: SessionId) -> Option<Session> {
    store.read().await.unwrap().get_session(id).await.unwrap()
}

#[conformance]
async fn refresh_moves_the_session_to_its_next_token(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let (s, first) = seed_session(&store, u.id).await;
    let t1 = now() + Duration::seconds(1);
    let idle_since = t1 - Duration::hours(1);
    let (used, second) = refresh_at(&store, s.id, 0, &first, t1, idle_since).await;
    let seen = Session {
        last_seen_at: t1,
        ..s.clone()
    };
    assert_eq!(
        used,
        TokenUse::Fresh(seen.clone()),
        "the current token is used; answered as the session is now"
    );
    assert_eq!(stored(&store, s.id).await, Some(seen.clone()), "touched");

    let t2 = t1 + Duration::seconds(1);
    let (used, third) = refresh_at(&store, s.id, 1, &second, t2, idle_since).await;
    assert!(
        matches!(used, TokenUse::Fresh(_)),
        "the successor: {used:?}"
    );

    // What is refused changes nothing: the current token still works afterwards.
    let t3 = t2 + Duration::seconds(1);
    let another = fixtures::hash();
    for (generation, hash, expected, why) in [
        (
            1,
            second.as_str(),
            TokenUse::Reused(s.id),
            "the previous token",
        ),
        (
            0,
            first.as_str(),
            TokenUse::Reused(s.id),
            "two generations back",
        ),
        (
            2,
            another.as_str(),
            TokenUse::Unknown,
            "the current generation, another hash",
        ),
        (
            3,
            third.as_str(),
            TokenUse::Unknown,
            "a generation not reached yet",
        ),
    ] {
        let (used, _) = refresh_at(&store, s.id, generation, hash, t3, idle_since).await;
        assert_eq!(used, expected, "{why}");
        assert_eq!(
            stored(&store, s.id).await.map(|s| s.last_seen_at),
            Some(t2),
            "{why}: nothing changes"
        );
    }
    let (unknown, _) = refresh_at(&store, SessionId::new(), 0, &first, t3, idle_since).await;
    assert_eq!(unknown, TokenUse::Unknown, "an absent session");
    let (used, _) = refresh_at(&store, s.id, 2, &third, t3, idle_since).await;
    assert!(
        matches!(used, TokenUse::Fresh(_)),
        "still current: {used:?}"
    );
}

#[conformance]
async fn rotate_refresh_in_a_transaction_commits_with_it(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let (s, first) = seed_session(&store, u.id).await;
    let t1 = now() + Duration::seconds(1);
    let idle_since = t1 - Duration::hours(1);
    let r = fixtures::rotation(s.id, 0, &first);
    let mut tx = store.begin().await.unwrap();
    let used = tx.rotate_refresh(&r, t1, idle_since).await.unwrap();
    assert!(matches!(used, TokenUse::Fresh(_)), "{used:?}");
    drop(tx);
    assert_eq!(
        stored(&store, s.id).await,
        Some(s.clone()),
        "rolled back with its transaction"
    );
    let mut tx = store.begin().await.unwrap();
    tx.rotate_refresh(&r, t1, idle_since).await.unwrap();
    tx.commit().await.unwrap();
    let (used, _) = refresh_at(&store, s.id, 0, &first, t1, idle_since).await;
    assert_eq!(used, TokenUse::Reused(s.id), "committed");
}

/// A session of a new user, and its current token's hash; the user's status is then set to
/// `status`.
async fn session_of_user_in(store: &Arc<dyn Store>, status: UserStatus) -> (Session, String) {
    let u = seed_user(store).await;
    let seeded = seed_session(store, u.id).await;
    if status != u.status {
        let mut changed = u.clone();
        changed.status = status;
        changed.version += 1;
        let mut tx = store.begin().await.unwrap();
        tx.update_user(&changed, u.version).await.unwrap();
        tx.commit().await.unwrap();
    }
    seeded
}

#[conformance]
async fn refresh_session_refuses_a_dead_session_and_changes_nothing(store: Arc<dyn Store>) {
    let t1 = now() + Duration::seconds(1);
    let idle_since = t1 - Duration::hours(1);
    let late = t1 + Duration::hours(13);

    let revoked = session_of_user_in(&store, UserStatus::Active).await;
    let mut tx = store.begin().await.unwrap();
    assert!(tx.revoke_session(revoked.0.id, t1).await.unwrap());
    tx.commit().await.unwrap();
    let mut cases = vec![
        (revoked, t1, idle_since, "a revoked session"),
        (
            session_of_user_in(&store, UserStatus::Active).await,
            late,
            late - Duration::days(1),
            "an expired session",
        ),
        (
            session_of_user_in(&store, UserStatus::Active).await,
            t1,
            t1,
            "an idle session",
        ),
    ];
    for status in [UserStatus::Suspended, UserStatus::Deactivated] {
        let seeded = session_of_user_in(&store, status).await;
        cases.push((seeded, t1, idle_since, status.as_str()));
    }

    for ((s, hash), at, idle_since, why) in cases {
        let before = stored(&store, s.id).await;
        for _ in 0..2 {
            let (used, _) = refresh_at(&store, s.id, 0, &hash, at, idle_since).await;
            assert_eq!(
                used,
                TokenUse::Dead,
                "{why}: and again, as nothing moved on"
            );
        }
        assert_eq!(
            stored(&store, s.id).await,
            before,
            "{why}: the session is not touched"
        );
    }

    // A user who must change the password may still refresh (the policy limits the rest).
    let (s, hash) = session_of_user_in(&store, UserStatus::PasswordResetRequired).await;
    let (used, _) = refresh_at(&store, s.id, 0, &hash, t1, idle_since).await;
    assert!(matches!(used, TokenUse::Fresh(_)), "{used:?}");
}

#[conformance]
async fn concurrent_refresh_session_one_wins(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let (s, first) = seed_session(&store, u.id).await;
    let t = now() + Duration::seconds(1);
    let attempts: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let first = first.clone();
            tokio::spawn(async move {
                refresh_at(&store, s.id, 0, &first, t, t - Duration::hours(1))
                    .await
                    .0
            })
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
        .filter(|a| **a == TokenUse::Reused(s.id))
        .count();
    assert_eq!((fresh, reused), (1, 1), "{answers:?}");
}

#[conformance]
async fn concurrent_rotations_in_transactions_one_wins(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let (s, first) = seed_session(&store, u.id).await;
    let t = now();
    let attempt = |at| {
        let store = store.clone();
        let r = fixtures::rotation(s.id, 0, &first);
        tokio::spawn(async move {
            let mut tx = store.begin().await?;
            let won = matches!(
                tx.rotate_refresh(&r, at, at - Duration::hours(1)).await?,
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
    let seen = match (&a, &b) {
        (Ok(true), Ok(false)) => t,
        (Ok(false), Ok(true)) => t + Duration::seconds(1),
        _ => panic!("exactly one true and one false, both Ok: got {a:?} and {b:?}"),
    };
    assert_eq!(
        stored(&store, s.id).await.map(|s| s.last_seen_at),
        Some(seen),
        "the winner's time is stored"
    );
}

#[conformance]
async fn open_session_audited_stores_all_three_or_nothing(store: Arc<dyn Store>) {
    let u = seed_user(&store).await;
    let t = now();
    let s = fixtures::session(u.id);
    let first = fixtures::hash();
    let event = fixtures::audit(1, t);
    store
        .open_session_audited(&s, &first, &fixtures::audit_head(0), &event)
        .await
        .unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(tx.get_session(s.id).await.unwrap(), Some(s.clone()));
    let head = tx.audit_head(AUDIT_CHAIN).await.unwrap();
    assert_eq!((head.seq, &head.hash), (1, &event.hash), "the head moved");
    let page = tx
        .list_audit(&AuditFilter::default(), &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(parsed(page.items), vec![event.clone()]);
    drop(tx);

    // From a head that is no longer the head (the transaction of a chain's first event); then
    // a session id that is taken, from the current head (PostgreSQL's one statement).
    let stale = fixtures::session(u.id);
    let taken = Session {
        user_agent: Some("another device".into()),
        ..s.clone()
    };
    for (other, prev, why) in [
        (&stale, fixtures::audit_head(0), "a stale head"),
        (&taken, head.clone(), "a taken session id"),
    ] {
        let refused = store
            .open_session_audited(
                other,
                &fixtures::hash(),
                &prev,
                &fixtures::audit(prev.seq + 1, t),
            )
            .await;
        match refused {
            Err(StoreError::VersionConflict) if prev.seq == 0 => {}
            Err(_) if prev.seq == 1 => {}
            refused => panic!("{why}: got {refused:?}"),
        }
        let mut tx = store.read().await.unwrap();
        let kept = if prev.seq == 0 { None } else { Some(s.clone()) };
        assert_eq!(tx.get_session(other.id).await.unwrap(), kept, "{why}");
        assert_eq!(tx.audit_head(AUDIT_CHAIN).await.unwrap(), head, "{why}");
    }

    // The first token was stored with the session: it refreshes.
    let (used, _) = refresh_at(&store, s.id, 0, &first, t, t - Duration::hours(1)).await;
    assert!(matches!(used, TokenUse::Fresh(_)), "{used:?}");
}

/// A landed session (user `user`) with tokens created at `t` and used as `used` says.
fn landed_session(t: DateTime<Utc>, used: &[bool]) -> LandedSession {
    let session = Session {
        last_seen_at: t,
        created_at: t,
        ..fixtures::session(UserId::new())
    };
    LandedSession {
        user_id: session.user_id.0,
        tokens: used
            .iter()
            .enumerate()
            .map(|(i, used)| {
                let created = t + Duration::seconds(i as i64);
                (fixtures::hash(), created, used.then_some(created))
            })
            .collect(),
        session,
    }
}

/// Sessions with refresh tokens from before the session row held the refresh state: each
/// session's unused token becomes its current token at generation 0 and refreshes once; a
/// used one, and the unused one once it has been refreshed, are replays.
async fn landed_refresh_tokens_keep_working(store: Arc<dyn Store>, landed: Vec<LandedSession>) {
    let at = now() + Duration::seconds(5);
    let idle_since = at - Duration::hours(1);
    let (rotated, spent) = (&landed[0], &landed[1]);
    let legacy = |hash: String| {
        let store = store.clone();
        async move {
            let mut r = store.read().await.unwrap();
            r.get_legacy_refresh_token(&hash).await.unwrap()
        }
    };
    let [(old, _, _), (current, _, _)] = &rotated.tokens[..] else {
        panic!("two tokens");
    };
    let found = legacy(old.clone()).await.expect("the used token is known");
    assert_eq!((found.session_id, found.used), (rotated.session.id, true));
    let found = legacy(current.clone())
        .await
        .expect("the unused token is known");
    assert_eq!((found.session_id, found.used), (rotated.session.id, false));
    assert_eq!(legacy(fixtures::hash()).await, None, "any other hash");

    let (used, next) = refresh_at(&store, rotated.session.id, 0, current, at, idle_since).await;
    assert!(
        matches!(used, TokenUse::Fresh(_)),
        "the unused token: {used:?}"
    );
    let (used, _) = refresh_at(&store, rotated.session.id, 0, current, at, idle_since).await;
    assert_eq!(
        used,
        TokenUse::Reused(rotated.session.id),
        "the same token again"
    );
    let (used, _) = refresh_at(&store, rotated.session.id, 1, &next, at, idle_since).await;
    assert!(
        matches!(used, TokenUse::Fresh(_)),
        "its successor: {used:?}"
    );

    // A session whose every token was used has no current one.
    let (used, _) = refresh_at(
        &store,
        spent.session.id,
        0,
        &spent.tokens[0].0,
        at,
        idle_since,
    )
    .await;
    assert_eq!(used, TokenUse::Unknown, "{used:?}");
}

fn landed_sessions() -> Vec<LandedSession> {
    let t = now();
    vec![
        landed_session(t, &[true, false]),
        landed_session(t, &[true]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landed_refresh_tokens_upgrade_sqlite() {
    let sessions = landed_sessions();
    let landed = Landed {
        sessions: &sessions,
        ..Landed::default()
    };
    run_landed(Backend::Sqlite, &landed, |store| {
        landed_refresh_tokens_keep_working(store, sessions.clone())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn landed_refresh_tokens_upgrade_postgres() {
    let sessions = landed_sessions();
    let landed = Landed {
        sessions: &sessions,
        ..Landed::default()
    };
    run_landed(Backend::Postgres, &landed, |store| {
        landed_refresh_tokens_keep_working(store, sessions.clone())
    })
    .await;
}
