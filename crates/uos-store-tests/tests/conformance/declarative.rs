//! Conformance cases of the reconciler's state: declared orgs with their status, the objects it
//! created, and the global switches.

use std::sync::Arc;
use uos_conformance::conformance;
use uos_store::{DeclaredAttempt, DeclaredKind, DriftCheck, PageRequest, Pause, Store};
use uos_store_tests::fixtures::*;

fn attempt(revision: &str, result: &str, error: Option<&str>) -> DeclaredAttempt {
    DeclaredAttempt {
        revision: revision.into(),
        at: now(),
        result: result.into(),
        error: error.map(Into::into),
    }
}

#[conformance]
async fn a_declared_org_keeps_its_status_across_notes_and_attempts(store: Arc<dyn Store>) {
    let org = seed_org(&store).await;
    let mut tx = store.begin().await.unwrap();
    tx.note_declared_org("acme", None, "orgs/acme.yaml")
        .await
        .unwrap();
    let drift = DriftCheck {
        checked_at: now(),
        differences: r#"[{"path":"display_name"}]"#.into(),
    };
    tx.record_drift("acme", &drift).await.unwrap();
    let applied = attempt("c1", "applied", None);
    tx.record_declared_attempt("acme", &applied, Some("slug: acme"))
        .await
        .unwrap();
    let in_sync = tx.get_declared_org("acme").await.unwrap().unwrap().drift;
    assert_eq!(
        in_sync,
        Some(DriftCheck {
            checked_at: applied.at,
            differences: "[]".into()
        }),
        "an applied file is in sync"
    );
    // The org exists now; a later commit that fails keeps the last applied one.
    tx.note_declared_org("acme", Some(org.id), "orgs/acme.yaml")
        .await
        .unwrap();
    let failed = attempt("c2", "failed", Some("boom"));
    tx.record_declared_attempt("acme", &failed, None)
        .await
        .unwrap();
    tx.note_declared_org("acme", None, "orgs/acme.yaml")
        .await
        .unwrap();
    tx.record_drift("acme", &drift).await.unwrap();
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    let got = r.get_declared_org("acme").await.unwrap().unwrap();
    assert_eq!(
        got.org_id,
        Some(org.id),
        "a note without an org keeps the one known"
    );
    assert_eq!(got.last_applied_revision.as_deref(), Some("c1"));
    assert_eq!(got.last_applied_at, Some(applied.at));
    assert_eq!(got.applied_text.as_deref(), Some("slug: acme"));
    assert_eq!(got.last_attempt, Some(failed));
    assert_eq!(got.drift, Some(drift));
    assert_eq!(got.paused, None);
    assert_eq!(
        r.declared_org_of(org.id).await.unwrap().map(|d| d.slug),
        Some("acme".into())
    );
    assert!(r.get_declared_org("other").await.unwrap().is_none());
}

#[conformance]
async fn declared_orgs_list_by_slug_pause_one_at_a_time_and_are_forgotten(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    for slug in ["c", "a", "b"] {
        tx.note_declared_org(slug, None, &format!("orgs/{slug}.yaml"))
            .await
            .unwrap();
    }
    let pause = Pause {
        at: now(),
        reason: "incident".into(),
        by: "someone".into(),
    };
    assert!(tx.set_declared_pause("b", Some(&pause)).await.unwrap());
    assert!(
        !tx.set_declared_pause("nope", Some(&pause)).await.unwrap(),
        "an undeclared slug is not paused"
    );
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    let first = r
        .list_declared_orgs(&PageRequest {
            limit: 2,
            after: None,
        })
        .await
        .unwrap();
    let slugs: Vec<_> = first.items.iter().map(|d| d.slug.as_str()).collect();
    assert_eq!(slugs, ["a", "b"]);
    assert_eq!(first.items[1].paused, Some(pause));
    let rest = r
        .list_declared_orgs(&PageRequest {
            limit: 2,
            after: first.next,
        })
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].slug, "c");
    assert!(rest.next.is_none());
    drop(r);

    let mut tx = store.begin().await.unwrap();
    assert!(tx.set_declared_pause("b", None).await.unwrap());
    tx.forget_declared_org("c").await.unwrap();
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    assert_eq!(r.get_declared_org("b").await.unwrap().unwrap().paused, None);
    assert!(
        r.get_declared_org("c").await.unwrap().is_none(),
        "forgotten"
    );
}

/// A unit of work confined to an org (PostgreSQL reads the org's declared row with the
/// confinement) answers `declared_org_of` as the store holds it, also after it wrote the row.
#[conformance]
async fn a_confined_unit_of_work_sees_the_declared_org_as_stored(store: Arc<dyn Store>) {
    let (declared, plain) = (seed_org(&store).await, seed_org(&store).await);
    let pause = Pause {
        at: now(),
        reason: "incident".into(),
        by: "someone".into(),
    };
    let mut tx = store.begin().await.unwrap();
    tx.note_declared_org("confined", Some(declared.id), "orgs/confined.yaml")
        .await
        .unwrap();
    assert!(tx
        .set_declared_pause("confined", Some(&pause))
        .await
        .unwrap());
    tx.commit().await.unwrap();

    let mut tx = store.begin().await.unwrap();
    tx.confine_to_org(plain.id).await.unwrap();
    assert_eq!(tx.declared_org_of(plain.id).await.unwrap(), None);
    tx.confine_to_org(declared.id).await.unwrap();
    let first = tx.declared_org_of(declared.id).await.unwrap().unwrap();
    assert_eq!(
        (first.file.as_str(), first.paused.as_ref()),
        ("orgs/confined.yaml", Some(&pause))
    );
    assert_eq!(tx.declared_org_of(declared.id).await.unwrap(), Some(first));
    // Written after the confinement: the answer is the new row, not the one read with it.
    tx.confine_to_org(declared.id).await.unwrap();
    assert!(tx.set_declared_pause("confined", None).await.unwrap());
    let resumed = tx.declared_org_of(declared.id).await.unwrap().unwrap();
    assert_eq!(resumed.paused, None);
    tx.confine_to_org(declared.id).await.unwrap();
    tx.forget_declared_org("confined").await.unwrap();
    assert_eq!(tx.declared_org_of(declared.id).await.unwrap(), None);
    tx.commit().await.unwrap();
}

#[conformance]
async fn the_global_switches_start_off_and_keep_each_other(store: Arc<dyn Store>) {
    let mut r = store.read().await.unwrap();
    let control = r.declarative_control().await.unwrap();
    assert_eq!(control, Default::default());
    drop(r);

    let pause = Pause {
        at: now(),
        reason: "freeze".into(),
        by: "admin".into(),
    };
    let at = now();
    let mut tx = store.begin().await.unwrap();
    tx.set_global_pause(Some(&pause)).await.unwrap();
    tx.request_declarative_sync(at).await.unwrap();
    tx.record_seen_revision("c9").await.unwrap();
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    let control = r.declarative_control().await.unwrap();
    assert_eq!(control.paused, Some(pause));
    assert_eq!(control.sync_requested_at, Some(at));
    assert_eq!(control.revision.as_deref(), Some("c9"));
    drop(r);

    let mut tx = store.begin().await.unwrap();
    tx.set_global_pause(None).await.unwrap();
    tx.commit().await.unwrap();
    let mut r = store.read().await.unwrap();
    let control = r.declarative_control().await.unwrap();
    assert_eq!(control.paused, None);
    assert_eq!(
        control.sync_requested_at,
        Some(at),
        "resuming keeps the sync request"
    );
}

#[conformance]
async fn declared_objects_are_recorded_once_per_org(store: Arc<dyn Store>) {
    let (org, other) = (seed_org(&store).await, seed_org(&store).await);
    let mut tx = store.begin().await.unwrap();
    for (kind, name) in [
        (DeclaredKind::Role, "deployer"),
        (DeclaredKind::Role, "deployer"),
        (DeclaredKind::Member, "a@example.com"),
        (DeclaredKind::ServiceAccount, "ci"),
        (DeclaredKind::Member, "b@example.com"),
    ] {
        tx.add_declared_object(org.id, kind, name, now())
            .await
            .unwrap();
    }
    tx.add_declared_object(other.id, DeclaredKind::Role, "x", now())
        .await
        .unwrap();
    tx.remove_declared_object(org.id, DeclaredKind::Member, "b@example.com")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut r = store.read().await.unwrap();
    let mut got = r.declared_objects(org.id).await.unwrap();
    got.sort();
    assert_eq!(
        got,
        [
            (DeclaredKind::Role, "deployer".to_owned()),
            (DeclaredKind::Member, "a@example.com".to_owned()),
            (DeclaredKind::ServiceAccount, "ci".to_owned()),
        ]
    );
}
