//! Organizations: create (for oneself or, as platform admin, for someone else), list, read,
//! rename, and the suspend/resume/delete/restore lifecycle.

use super::*;

backend_test!(create_read_list_and_rename, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = app
        .send(
            Req::post("/v1/orgs")
                .token(&alice)
                .json(json!({"slug": "alice-co", "display_name": " Alice Co "})),
        )
        .await;
    assert_status(&r, 201);
    assert_eq!(r.body["slug"], "alice-co");
    assert_eq!(r.body["display_name"], "Alice Co");
    assert_eq!(r.body["status"], "active");
    assert!(r.body["id"].as_str().is_some());
    assert_eq!(r.body["deleted_at"], Value::Null);
    let created = r.etag();

    let r = app.send(Req::get("/v1/orgs/alice-co").token(&alice)).await;
    assert_status(&r, 200);
    assert_eq!(r.etag(), created);
    assert_eq!(r.body["slug"], "alice-co");

    // The creator became owner.
    let me = my_id(&app, &alice).await;
    let m = get_ok(&app, &alice, &format!("/v1/orgs/alice-co/users/{me}")).await;
    assert_eq!(m["roles"], json!(["owner"]));

    let orgs = all_pages(&app, &alice, "/v1/orgs", 1).await;
    let slugs: Vec<&str> = orgs.iter().map(|o| o["slug"].as_str().unwrap()).collect();
    assert_eq!(
        slugs,
        ["acme", "alice-co"],
        "creation order, paged one by one"
    );

    let r = app
        .send(
            Req::patch("/v1/orgs/alice-co")
                .token(&alice)
                .json(json!({"display_name": "Alice & Co"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["display_name"], "Alice & Co");
    assert_ne!(r.etag(), created);
    // An empty patch changes nothing but is still a valid write.
    let r = app
        .send(
            Req::patch("/v1/orgs/alice-co")
                .token(&alice)
                .json(json!({})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["display_name"], "Alice & Co");

    // The platform admin sees every org.
    let admin = app.admin_token().await;
    let all = all_pages(&app, &admin, "/v1/orgs", 100).await;
    assert_eq!(all.len(), 2);
});

backend_test!(slug_is_unique_and_validated, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let audit = audit_changes(&app).await;
    let r = app
        .send(
            Req::post("/v1/orgs")
                .token(&admin)
                .json(json!({"slug": "acme", "display_name": "Again"})),
        )
        .await;
    assert_conflict(&r, "slug_taken");
    for bad in [
        "ab",
        "-abc",
        "abc-",
        "ABC",
        "a_b_c",
        "a b c",
        &"a".repeat(64),
    ] {
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .json(json!({"slug": bad, "display_name": "x"})),
            )
            .await;
        assert_invalid(&r, &["slug"]);
    }
    // Both ends of the length range are fine.
    for good in ["abc".to_string(), "a".repeat(63)] {
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .json(json!({"slug": good, "display_name": "x"})),
            )
            .await;
        assert_status(&r, 201);
    }
    assert_eq!(
        audit_changes(&app).await,
        audit + 4,
        "two orgs, each with its owner"
    );
    // A bad slug in the path is a 400 naming it.
    let r = app
        .send(Req::get("/v1/orgs/NOT_A_SLUG").token(&admin))
        .await;
    assert_invalid(&r, &["slug"]);
    let r = app.send(Req::get("/v1/orgs/absent").token(&admin)).await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(
    platform_admin_creates_on_behalf_of_a_user,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "base").await;
        let (bob_id, bob) = app
            .add_member(&admin, "base", "bob@example.com", &["member"])
            .await;
        let r = app
            .send(Req::post("/v1/orgs").token(&admin).json(
                json!({"slug": "bobs", "display_name": "Bob's", "owner_email": "BOB@example.com"}),
            ))
            .await;
        assert_status(&r, 201);
        let m = get_ok(&app, &bob, &format!("/v1/orgs/bobs/users/{bob_id}")).await;
        assert_eq!(m["roles"], json!(["owner"]));
        let admin_id = my_id(&app, &admin).await;
        let r = app
            .send(Req::get(format!("/v1/orgs/bobs/users/{admin_id}")).token(&admin))
            .await;
        assert_problem(&r, 404, "not_found");

        let r = app
            .send(Req::post("/v1/orgs").token(&admin).json(
                json!({"slug": "ghost", "display_name": "x", "owner_email": "nobody@example.com"}),
            ))
            .await;
        assert_invalid(&r, &["owner_email"]);
        let r = app
            .send(
                Req::post("/v1/orgs").token(&bob).json(
                    json!({"slug": "sneaky", "display_name": "x", "owner_email": ADMIN_EMAIL}),
                ),
            )
            .await;
        assert_forbidden(&r, "platform_admin_required");
        let r = app.send(Req::get("/v1/orgs/sneaky").token(&admin)).await;
        assert_problem(&r, 404, "not_found");
    }
);

backend_test!(anonymous_callers_are_401, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    for req in [
        Req::get("/v1/orgs"),
        Req::post("/v1/orgs").json(json!({"slug": "anon", "display_name": "x"})),
        Req::get("/v1/orgs/acme"),
        Req::patch("/v1/orgs/acme").json(json!({"display_name": "x"})),
        Req::delete("/v1/orgs/acme"),
        Req::post("/v1/orgs/acme/suspend"),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req).await;
        assert_eq!(r.status, 401, "{label}: {}", r.text);
        assert_problem(&r, 401, "unauthenticated");
    }
});

backend_test!(lifecycle_suspend_resume_delete_restore, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let post = |path: &str| Req::post(path.to_string()).token(&alice);

    let r = app.send(post("/v1/orgs/acme/suspend")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "suspended");
    // Lifecycle moves reach the state machine: suspending twice is an invalid transition.
    let r = app.send(post("/v1/orgs/acme/suspend")).await;
    assert_conflict(&r, "invalid_transition");
    // Reads still work in a suspended org, changes do not.
    get_ok(&app, &alice, "/v1/orgs/acme").await;
    get_ok(&app, &alice, "/v1/orgs/acme/users").await;
    let r = app
        .send(
            Req::patch("/v1/orgs/acme")
                .token(&alice)
                .json(json!({"display_name": "x"})),
        )
        .await;
    assert_forbidden(&r, "org_suspended");
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&alice)
                .json(json!({"email": "x@example.com", "roles": ["member"]})),
        )
        .await;
    assert_forbidden(&r, "org_suspended");

    let r = app.send(post("/v1/orgs/acme/resume")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");
    let r = app.send(post("/v1/orgs/acme/resume")).await;
    assert_conflict(&r, "invalid_transition");
    let r = app.send(post("/v1/orgs/acme/restore")).await;
    assert_conflict(&r, "invalid_transition");

    let r = app.send(Req::delete("/v1/orgs/acme").token(&alice)).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "deleted");
    assert!(r.body["deleted_at"].as_str().is_some(), "{}", r.text);
    // Soft: still readable, listed only on request.
    let g = get_ok(&app, &alice, "/v1/orgs/acme").await;
    assert_eq!(g["status"], "deleted");
    let listed = all_pages(&app, &alice, "/v1/orgs", 50).await;
    assert!(
        listed.iter().all(|o| o["slug"] != "acme"),
        "deleted orgs are not listed by default: {listed:?}"
    );
    let listed = all_pages(&app, &alice, "/v1/orgs?include_deleted=true", 50).await;
    assert!(
        listed.iter().any(|o| o["slug"] == "acme"),
        "include_deleted lists it: {listed:?}"
    );
    let r = app
        .send(
            Req::patch("/v1/orgs/acme")
                .token(&alice)
                .json(json!({"display_name": "x"})),
        )
        .await;
    assert_forbidden(&r, "org_deleted");
    let r = app.send(post("/v1/orgs/acme/suspend")).await;
    assert_conflict(&r, "invalid_transition");
    let r = app.send(Req::delete("/v1/orgs/acme").token(&alice)).await;
    assert_conflict(&r, "invalid_transition");

    let r = app.send(post("/v1/orgs/acme/restore")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["deleted_at"], Value::Null);

    // A suspended org can be deleted, and restoring it brings it back suspended.
    let r = app.send(post("/v1/orgs/acme/suspend")).await;
    assert_status(&r, 200);
    let r = app.send(Req::delete("/v1/orgs/acme").token(&alice)).await;
    assert_status(&r, 200);
    let r = app.send(post("/v1/orgs/acme/restore")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "suspended");

    let r = app.send(post("/v1/orgs/absent/suspend")).await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(
    restore_is_refused_after_the_retention_window,
    |app| async move {
        let app = TestApp::spawn_with(app.backend, &[("service.retention_days", json!(0))]).await;
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let r = app.send(Req::delete("/v1/orgs/acme").token(&admin)).await;
        assert_status(&r, 200);
        let r = app
            .send(Req::post("/v1/orgs/acme/restore").token(&admin))
            .await;
        assert_problem(&r, 409, "conflict");
        let g = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_eq!(g["status"], "deleted");
    }
);

backend_test!(
    only_owners_delete_and_only_permitted_roles_change,
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let (_, adam) = app
            .add_member(&alice, "acme", "adam@example.com", &["admin"])
            .await;
        let (_, max) = app
            .add_member(&alice, "acme", "max@example.com", &["member"])
            .await;
        let (_, bill) = app
            .add_member(&alice, "acme", "bill@example.com", &["billing"])
            .await;

        let r = app.send(Req::delete("/v1/orgs/acme").token(&adam)).await;
        assert_forbidden(&r, "missing_permission:org:delete");
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&adam)
                    .json(json!({"display_name": "By admin"})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(Req::post("/v1/orgs/acme/suspend").token(&adam))
            .await;
        assert_status(&r, 200);
        let r = app
            .send(Req::post("/v1/orgs/acme/resume").token(&adam))
            .await;
        assert_status(&r, 200);

        for token in [&max, &bill] {
            get_ok(&app, token, "/v1/orgs/acme").await;
            let r = app
                .send(
                    Req::patch("/v1/orgs/acme")
                        .token(token)
                        .json(json!({"display_name": "x"})),
                )
                .await;
            assert_forbidden(&r, "missing_permission:org:update");
            let r = app
                .send(Req::post("/v1/orgs/acme/suspend").token(token))
                .await;
            assert_forbidden(&r, "missing_permission:org:suspend");
            let r = app.send(Req::delete("/v1/orgs/acme").token(token)).await;
            assert_forbidden(&r, "missing_permission:org:delete");
        }
        let r = app
            .send(Req::post("/v1/orgs/acme/restore").token(&adam))
            .await;
        assert_forbidden(&r, "missing_permission:org:delete");
    }
);
