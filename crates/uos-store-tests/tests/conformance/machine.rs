//! Conformance cases of service accounts, API keys and revoked client-credentials tokens.

use crate::support::after;
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeSet;
use std::sync::Arc;
use uos_conformance::conformance;
use uos_domain::{
    ApiKey, ApiKeyId, OrgId, RotationPolicy, ServiceAccount, ServiceAccountId, ServiceAccountStatus,
};
use uos_store::{OrgFilter, PageRequest, ReadTx, Store, StoreError};
use uos_store_tests::fixtures::{self, *};

#[conformance]
async fn org_api_key_max_days_roundtrips(store: Arc<dyn Store>) {
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

#[conformance]
async fn service_account_insert_get_and_find(store: Arc<dyn Store>) {
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

#[conformance]
async fn service_account_update_is_optimistic(store: Arc<dyn Store>) {
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

#[conformance]
async fn service_account_name_unique_until_deleted(store: Arc<dyn Store>) {
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

#[conformance]
async fn service_account_list_pages_and_deleted(store: Arc<dyn Store>) {
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

#[conformance]
async fn count_service_accounts_with_role_skips_deleted(store: Arc<dyn Store>) {
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

#[conformance]
async fn api_key_roundtrip_and_prefix_unique(store: Arc<dyn Store>) {
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
    key.quarantined_at = Some(now());
    key.quarantine_reason = Some("1200 requests in 60 s, 10× the baseline".into());
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

#[conformance]
async fn api_key_update_is_optimistic(store: Arc<dyn Store>) {
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

/// Quarantine marks a key once (of concurrent trips exactly one gets the row), and an
/// ordinary versioned update releases it.
#[conformance]
async fn api_key_quarantine_marks_once(store: Arc<dyn Store>) {
    let o = seed_org(&store).await;
    let sa = seed_service_account(&store, o.id).await;
    let key = seed_api_key(&store, &sa).await;
    let at = now();
    let mut tx = store.begin().await.unwrap();
    let marked = tx
        .quarantine_api_key(key.id, at, "spike")
        .await
        .unwrap()
        .expect("an unquarantined key is marked and returned");
    assert_eq!(
        marked,
        ApiKey {
            quarantined_at: Some(at),
            quarantine_reason: Some("spike".into()),
            version: key.version + 1,
            ..key.clone()
        },
        "marked with its time and reason, version bumped"
    );
    assert_eq!(
        tx.quarantine_api_key(key.id, now(), "again").await.unwrap(),
        None,
        "a quarantined key is not marked twice"
    );
    assert_eq!(
        tx.quarantine_api_key(ApiKeyId::new(), now(), "x")
            .await
            .unwrap(),
        None,
        "an unknown key"
    );
    tx.commit().await.unwrap();

    let mut released = marked.clone();
    assert!(released.release());
    let mut tx = store.begin().await.unwrap();
    tx.update_api_key(&released, marked.version).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.read().await.unwrap();
    assert_eq!(
        tx.get_api_key(o.id, key.id).await.unwrap(),
        Some(released.clone()),
        "the release is stored"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.quarantine_api_key(key.id, now(), "later")
            .await
            .unwrap()
            .is_some(),
        "a released key can be quarantined again"
    );
    tx.commit().await.unwrap();
}

#[conformance]
async fn api_key_list_pages_per_account(store: Arc<dyn Store>) {
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

#[conformance]
async fn revoke_service_account_keys_revokes_live_ones(store: Arc<dyn Store>) {
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

#[conformance]
async fn touch_api_keys_keeps_the_latest_use(store: Arc<dyn Store>) {
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

#[conformance]
async fn overdue_api_keys_list_claim_and_count(store: Arc<dyn Store>) {
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

#[conformance]
async fn revoked_access_tokens_idempotent_and_purged(store: Arc<dyn Store>) {
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

#[conformance]
async fn concurrent_overdue_claims_split_the_keys(store: Arc<dyn Store>) {
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

#[conformance]
async fn concurrent_touches_do_not_deadlock(store: Arc<dyn Store>) {
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
