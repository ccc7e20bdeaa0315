//! Row-level security (migration 0004) as the service meets it: running as a role that neither
//! owns the tables nor is a superuser, a transaction that names no org reads no org-scoped row,
//! and a unit of work confined to one org can neither see nor change another's. Ignored by
//! default; run with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sqlx::{Connection, PgConnection, Row};
use std::sync::Arc;
use uos_store::{Store, StoreError};
use uos_store_postgres::{testing, PgStore};
use uos_store_tests::fixtures;

/// Every table the policies cover.
const ORG_SCOPED: [&str; 7] = [
    "org",
    "membership",
    "invite",
    "custom_role",
    "service_account",
    "api_key",
    "audit_event",
];

#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn the_service_role_sees_only_the_orgs_its_transaction_is_confined_to() {
    let admin = testing::admin_url();
    let owner_url = testing::fresh_database(&admin)
        .await
        .expect("a test database");
    let service_url = testing::service_role_url(&owner_url).await.unwrap();
    let owner = PgStore::connect(&owner_url, 2).await.unwrap();
    owner.migrate().await.expect("migrations run as the owner");
    owner.close().await;

    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&service_url, 2).await.unwrap());
    let (a, b) = (
        fixtures::seed_org(&store).await,
        fixtures::seed_org(&store).await,
    );
    let user = fixtures::seed_user(&store).await;
    fixtures::seed_member(&store, a.id, user.id, &["owner"]).await;
    fixtures::seed_member(&store, b.id, user.id, &["owner"]).await;
    fixtures::seed_service_account(&store, b.id).await;

    // The service's own connections default to every org: reads span orgs.
    let mut read = store.read().await.unwrap();
    assert_eq!(
        read.list_memberships_of_user(user.id).await.unwrap().len(),
        2
    );
    drop(read);

    // Neither owner nor superuser, so the policies bind it.
    let mut raw = PgConnection::connect(&service_url).await.unwrap();
    let role = sqlx::query(
        "select r.rolsuper, r.rolbypassrls, \
         (select count(*) from pg_tables where schemaname = 'public' \
          and tableowner = current_user) as owned \
         from pg_roles r where r.rolname = current_user",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert!(
        !role.get::<bool, _>("rolsuper"),
        "the service role is no superuser"
    );
    assert!(
        !role.get::<bool, _>("rolbypassrls"),
        "nor does it bypass RLS"
    );
    assert_eq!(role.get::<i64, _>("owned"), 0, "and it owns no table");

    // A transaction that names no org reads no org-scoped row.
    let mut tx = raw.begin().await.unwrap();
    for table in ORG_SCOPED {
        let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table}: no org set, no row");
    }
    drop(tx);
    raw.close().await.unwrap();

    // Confined to org A, a unit of work neither reads nor writes org B.
    let stranger = fixtures::seed_user(&store).await;
    let mut tx = store.begin().await.unwrap();
    tx.confine_to_org(a.id).await.unwrap();
    assert!(tx.get_org(a.id).await.unwrap().is_some(), "its own org");
    assert_eq!(tx.get_org(b.id).await.unwrap(), None, "not another org");
    assert_eq!(tx.get_membership(b.id, user.id).await.unwrap(), None);
    assert_eq!(
        tx.list_memberships_of_user(user.id).await.unwrap().len(),
        1,
        "only the membership in its own org"
    );
    let err = tx
        .insert_membership(&fixtures::membership(b.id, stranger.id, &["member"]))
        .await
        .expect_err("a row of another org is refused");
    assert!(
        matches!(err, StoreError::Backend(ref m) if m.contains("row-level security")),
        "{err:?}"
    );
    drop(tx);

    let mut tx = store.begin().await.unwrap();
    tx.confine_to_org(a.id).await.unwrap();
    let mut renamed = b.clone();
    renamed.display_name = "taken over".into();
    renamed.version += 1;
    assert!(
        matches!(
            tx.update_org(&renamed, b.version).await,
            Err(StoreError::NotFound)
        ),
        "another org's row is not there to update"
    );
    tx.insert_membership(&fixtures::membership(a.id, stranger.id, &["member"]))
        .await
        .expect("its own org's rows can be written");
    tx.commit().await.unwrap();

    store.close().await;
    testing::drop_database(&admin, &owner_url).await.unwrap();
}

/// Audit exports (migration 0007) are org-scoped like the events they hold: a unit of work
/// confined to one org sees neither another org's exports nor the platform's whole-trail ones.
#[tokio::test]
#[ignore = "needs PostgreSQL"]
async fn a_unit_confined_to_one_org_sees_none_of_anothers_exports() {
    let admin = testing::admin_url();
    let owner_url = testing::fresh_database(&admin)
        .await
        .expect("a test database");
    let service_url = testing::service_role_url(&owner_url).await.unwrap();
    let owner = PgStore::connect(&owner_url, 2).await.unwrap();
    owner.migrate().await.expect("migrations run as the owner");
    owner.close().await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&service_url, 2).await.unwrap());
    let (a, b) = (
        fixtures::seed_org(&store).await,
        fixtures::seed_org(&store).await,
    );
    let export = |org: Option<uos_domain::OrgId>| uos_store::AuditExport {
        id: uuid::Uuid::now_v7(),
        org_id: org,
        requested_by: "someone".into(),
        since: None,
        until: None,
        status: uos_store::ExportStatus::Pending,
        events_written: 0,
        sha256: None,
        error: None,
        object_key: None,
        created_at: fixtures::now(),
        updated_at: fixtures::now(),
    };
    let (of_a, of_b, whole) = (export(Some(a.id)), export(Some(b.id)), export(None));
    let mut tx = store.begin().await.unwrap();
    for e in [&of_a, &of_b, &whole] {
        tx.insert_audit_export(e).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.confine_to_org(a.id).await.unwrap();
    assert!(tx.get_audit_export(of_a.id).await.unwrap().is_some());
    assert!(
        tx.get_audit_export(of_b.id).await.unwrap().is_none(),
        "another org's export is visible"
    );
    assert!(
        tx.get_audit_export(whole.id).await.unwrap().is_none(),
        "the whole-trail export is visible to an org"
    );
    // Nor can it record one for another org.
    assert!(tx.insert_audit_export(&export(Some(b.id))).await.is_err());
    drop(tx);
    let mut read = store.read().await.unwrap();
    assert!(read.get_audit_export(of_b.id).await.unwrap().is_some());
    drop(read);
    testing::drop_database(&admin, &owner_url).await.unwrap();
}
