//! Retention and erasure: personal data in audit events is ciphertext in storage and readable
//! through the API until its subject is purged, then shown as erased while every chain and
//! export still verifies; legal holds stop the purge until lifted; only platform admins
//! place them.

use super::exports::{checkpoint_every_event, export};
use super::*;
use chrono::Duration;
use uos_audit::{verify_chains, verify_export, AuditEvent};
use uos_domain::{OrgId, UserId};
use uos_store::AuditFilter;

/// Moves a soft deletion `days` further into the past, as if that much time had gone by.
async fn age_user_deletion(app: &TestApp, id: &str, days: i64) {
    let store = app.state.svc.store();
    let mut tx = store.begin().await.unwrap();
    let id = UserId(uuid::Uuid::parse_str(id).unwrap());
    let mut user = tx.get_user(id).await.unwrap().unwrap();
    let version = user.version;
    user.deleted_at = user.deleted_at.map(|at| at - Duration::days(days));
    user.version += 1;
    tx.update_user(&user, version).await.unwrap();
    tx.commit().await.unwrap();
}

pub(super) async fn age_org_deletion(app: &TestApp, id: &str, days: i64) {
    let store = app.state.svc.store();
    let mut tx = store.begin().await.unwrap();
    let id = OrgId(uuid::Uuid::parse_str(id).unwrap());
    let mut org = tx.get_org(id).await.unwrap().unwrap();
    let version = org.version;
    org.deleted_at = org.deleted_at.map(|at| at - Duration::days(days));
    org.version += 1;
    tx.update_org(&org, version).await.unwrap();
    tx.commit().await.unwrap();
}

async fn purge(app: &TestApp) -> (usize, usize) {
    let r = app.state.svc.purge_expired().await.unwrap();
    (r.users, r.orgs)
}

async fn delete_user(app: &TestApp, admin: &str, id: &str) {
    let r = app
        .send(Req::delete(format!("/v1/users/{id}")).token(admin))
        .await;
    assert_status(&r, 200);
}

async fn status_of(app: &TestApp, admin: &str, id: &str) -> String {
    get_ok(app, admin, &format!("/v1/users/{id}")).await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn keys(app: &TestApp, admin: &str) -> Vec<uos_keys::PublicKey> {
    let r = app.send(Req::get("/v1/audit/keys").token(admin)).await;
    assert_status(&r, 200);
    uos_audit::parse_keys(&r.text).unwrap()
}

/// Every stored audit payload, as the store holds it (what Kafka is sent).
async fn stored_payloads(app: &TestApp) -> String {
    let mut r = app.state.svc.store().read().await.unwrap();
    let page = r
        .list_audit(
            &AuditFilter::default(),
            &uos_store::PageRequest::first(1000),
        )
        .await
        .unwrap();
    page.items
        .iter()
        .map(|row| row.payload.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

backend_test!(
    personal_data_is_encrypted_readable_and_erased_by_the_purge,
    config = checkpoint_every_event(),
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let (bob, _) = app
            .add_member(&admin, "acme", "bob@example.com", &["member"])
            .await;
        let r = app
            .send(
                Req::post("/v1/auth/login")
                    .json(json!({"email": "nobody@example.com", "password": "wrong-password-1"})),
            )
            .await;
        assert_status(&r, 401);

        // In storage (and so on the stream) the addresses are ciphertext only.
        let stored = stored_payloads(&app).await;
        assert!(
            !stored.contains("bob@example.com"),
            "bob's email in clear: {stored}"
        );
        assert!(
            !stored.contains("nobody@example.com"),
            "a failed login's email in clear"
        );
        assert!(
            stored.contains("uos-pd:1:user:"),
            "encrypted under a user's key"
        );
        assert!(
            stored.contains("uos-pd:1:email:"),
            "encrypted under an email's key"
        );

        // Through the API they read back, beside the sealed ciphertext.
        let events = all_audit(&app).await;
        let invite = events
            .iter()
            .find(|e| e["action"] == "invite.created")
            .unwrap();
        assert_eq!(
            invite["personal"]["/changes/after/email"], "bob@example.com",
            "{invite}"
        );
        assert!(invite["changes"]["after"]["email"]
            .as_str()
            .unwrap()
            .starts_with("uos-pd:1:"));
        let created = events
            .iter()
            .find(|e| e["action"] == "user.created" && e["target"]["id"] == bob.as_str())
            .unwrap();
        assert_eq!(
            created["personal"]["/changes/after/email"],
            "bob@example.com"
        );
        let failed = events
            .iter()
            .find(|e| e["action"] == "login.failed")
            .unwrap();
        assert_eq!(
            failed["personal"]["/changes/after/email"],
            "nobody@example.com"
        );
        assert!(
            failed["target"]["id"]
                .as_str()
                .unwrap()
                .starts_with("email:"),
            "{failed}"
        );
        let by_email = get_ok(&app, &admin, "/v1/audit/events?target=nobody@example.com").await;
        assert_eq!(
            by_email["items"].as_array().unwrap().len(),
            1,
            "filter by an address"
        );

        // A deletion inside the window is left alone and can be restored.
        delete_user(&app, &admin, &bob).await;
        assert_eq!(purge(&app).await, (0, 0), "not yet past the window");
        let r = app
            .send(Req::post(format!("/v1/users/{bob}/restore")).token(&admin))
            .await;
        assert_status(&r, 200);
        assert_eq!(status_of(&app, &admin, &bob).await, "active");

        // Past it, the purge anonymises the row and destroys bob's keys.
        delete_user(&app, &admin, &bob).await;
        age_user_deletion(&app, &bob, 31).await;
        assert_eq!(purge(&app).await, (1, 0));
        assert_eq!(purge(&app).await, (0, 0), "idempotent");
        let user = get_ok(&app, &admin, &format!("/v1/users/{bob}")).await;
        assert_eq!(user["status"], "purged");
        assert!(!user.to_string().contains("bob@example.com"), "{user}");
        let r = app
            .send(Req::get("/v1/orgs/acme/users").token(&admin))
            .await;
        assert!(!r.text.contains(&bob), "memberships removed: {}", r.text);

        let events = all_audit(&app).await;
        let text = serde_json::to_string(&events).unwrap();
        assert!(
            !text.contains("bob@example.com"),
            "bob's email still readable"
        );
        let invite = events
            .iter()
            .find(|e| e["action"] == "invite.created")
            .unwrap();
        assert_eq!(
            invite["erased"],
            json!(["/changes/after/email"]),
            "{invite}"
        );
        assert!(invite.get("personal").is_none());
        let failed = events
            .iter()
            .find(|e| e["action"] == "login.failed")
            .unwrap();
        assert_eq!(
            failed["personal"]["/changes/after/email"], "nobody@example.com",
            "others stay"
        );
        let purged = events
            .iter()
            .find(|e| e["action"] == "user.purged")
            .unwrap();
        assert_eq!(purged["actor"]["type"], "system");
        assert_eq!(purged["target"]["id"], bob.as_str());
        assert!(
            purged.get("erased").is_none() && purged.get("personal").is_none(),
            "{purged}"
        );

        // Every chain still verifies, as served and as exported.
        let parsed: Vec<AuditEvent> = events
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect();
        verify_chains(&parsed, &keys(&app, &admin).await)
            .expect("the trail verifies after the purge");
        let (_, text, file) = export(&app, &admin, json!({})).await;
        assert!(!text.contains("bob@example.com"));
        assert!(text.contains(r#""erased":["/changes/after/email"]"#));
        let manifest_keys = file.manifest.as_ref().unwrap().1.keys.clone();
        verify_export(&file, &manifest_keys, None)
            .expect("the export verifies (uosctl audit verify)");
    }
);

backend_test!(legal_holds_stop_the_purge_until_lifted, |app| async move {
    let admin = app.admin_token().await;
    let held_org = app.create_org(&admin, "held").await;
    let org_id = held_org["id"].as_str().unwrap().to_owned();
    let (bob, _) = app
        .add_member(&admin, "held", "bob@example.com", &["member"])
        .await;
    let (carol, _) = app
        .add_member(&admin, "held", "carol@example.com", &["member"])
        .await;
    // Carol leaves the org: only her own hold covers her.
    let r = app
        .send(Req::delete(format!("/v1/orgs/held/users/{carol}")).token(&admin))
        .await;
    assert_status(&r, 204);

    let r = app
        .send(
            Req::put(format!("/v1/users/{carol}/legal-hold"))
                .token(&admin)
                .json(json!({"reason": "litigation"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["reason"], "litigation");
    assert_eq!(r.body["on"], "user");
    assert_eq!(r.body["id"], carol.as_str());
    assert_eq!(r.etag(), etag(1));
    // Changing the reason needs the current version when If-Match is given.
    let r = app
        .send(
            Req::put(format!("/v1/users/{carol}/legal-hold"))
                .token(&admin)
                .header("if-match", &etag(7))
                .json(json!({"reason": "regulator"})),
        )
        .await;
    assert_problem(&r, 412, "precondition_failed");
    let r = app
        .send(
            Req::put(format!("/v1/users/{carol}/legal-hold"))
                .token(&admin)
                .header("if-match", &etag(1))
                .json(json!({"reason": "regulator"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.etag(), etag(2));
    let r = app
        .send(
            Req::put("/v1/orgs/held/legal-hold")
                .token(&admin)
                .json(json!({"reason": "audit"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["on"], "org");

    for id in [&bob, &carol] {
        delete_user(&app, &admin, id).await;
        age_user_deletion(&app, id, 40).await;
    }
    let r = app.send(Req::delete("/v1/orgs/held").token(&admin)).await;
    assert_status(&r, 200);
    age_org_deletion(&app, &org_id, 40).await;

    assert_eq!(purge(&app).await, (0, 0), "everything is held");
    assert_eq!(
        status_of(&app, &admin, &bob).await,
        "deleted",
        "held through its org"
    );
    assert_eq!(status_of(&app, &admin, &carol).await, "deleted");

    let r = app
        .send(Req::delete(format!("/v1/users/{carol}/legal-hold")).token(&admin))
        .await;
    assert_status(&r, 204);
    let r = app
        .send(Req::delete(format!("/v1/users/{carol}/legal-hold")).token(&admin))
        .await;
    assert_problem(&r, 404, "not_found");
    assert_eq!(purge(&app).await, (1, 0), "carol, once her hold is lifted");
    assert_eq!(status_of(&app, &admin, &carol).await, "purged");
    assert_eq!(status_of(&app, &admin, &bob).await, "deleted");

    let r = app
        .send(Req::delete("/v1/orgs/held/legal-hold").token(&admin))
        .await;
    assert_status(&r, 204);
    assert_eq!(purge(&app).await, (1, 1), "bob and the org");
    assert_eq!(status_of(&app, &admin, &bob).await, "purged");
    let r = app.send(Req::get("/v1/orgs/held").token(&admin)).await;
    assert_problem(&r, 404, "not_found");

    let events = all_audit(&app).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.legal_hold_placed",
        "user.legal_hold_lifted",
        "org.legal_hold_placed",
        "org.legal_hold_lifted",
        "user.purged",
        "org.purged",
    ] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {actions:?}"
        );
    }
    let org_purged = events.iter().find(|e| e["action"] == "org.purged").unwrap();
    assert_eq!(
        org_purged["org_id"],
        org_id.as_str(),
        "on the org's own chain"
    );
    let parsed: Vec<AuditEvent> = events
        .iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    verify_chains(&parsed, &keys(&app, &admin).await).expect("every chain verifies");
});

backend_test!(
    only_platform_admins_place_holds_and_bad_input_is_named,
    |app| async move {
        let (owner_id, owner) = owned_org(&app, "own", "owner@example.com").await;
        let admin = app.admin_token().await;
        let body = json!({"reason": "litigation"});
        let r = app
            .send(
                Req::put(format!("/v1/users/{owner_id}/legal-hold"))
                    .token(&owner)
                    .json(body.clone()),
            )
            .await;
        assert_forbidden(&r, "platform_admin_required");
        let r = app
            .send(
                Req::put("/v1/orgs/own/legal-hold")
                    .token(&owner)
                    .json(body.clone()),
            )
            .await;
        assert_forbidden(&r, "platform_admin_required");
        let r = app
            .send(Req::delete("/v1/orgs/own/legal-hold").token(&owner))
            .await;
        assert_forbidden(&r, "platform_admin_required");

        let put = |path: String, body: Value| Req::put(path).token(&admin).json(body);
        let r = app
            .send(put(format!("/v1/users/{owner_id}/legal-hold"), json!({})))
            .await;
        assert_invalid(&r, &["reason"]);
        let r = app
            .send(put(
                format!("/v1/users/{owner_id}/legal-hold"),
                json!({"reason": "  "}),
            ))
            .await;
        assert_invalid(&r, &["reason"]);
        let r = app
            .send(put(
                "/v1/orgs/own/legal-hold".into(),
                json!({"reason": "x".repeat(501), "until": 1}),
            ))
            .await;
        assert_invalid(&r, &["reason", "until"]);
        let r = app
            .send(put("/v1/users/not-a-uuid/legal-hold".into(), body.clone()))
            .await;
        assert_invalid(&r, &["user_id"]);
        let r = app
            .send(put(
                format!("/v1/users/{}/legal-hold", uuid::Uuid::now_v7()),
                body.clone(),
            ))
            .await;
        assert_problem(&r, 404, "not_found");
        let r = app
            .send(put("/v1/orgs/nope-nope/legal-hold".into(), body))
            .await;
        assert_problem(&r, 404, "not_found");
    }
);
