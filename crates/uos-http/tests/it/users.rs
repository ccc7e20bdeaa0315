//! Platform user administration: list with filters, read, edit, the status table, soft delete
//! and restore.

use super::*;

/// Platform admin token, and bob and carol as members of org `home`.
async fn people(app: &TestApp) -> (String, (String, String), (String, String)) {
    let admin = app.admin_token().await;
    app.create_org(&admin, "home").await;
    let bob = app
        .add_member(&admin, "home", "bob@example.com", &["member"])
        .await;
    let carol = app
        .add_member(&admin, "home", "carol@example.com", &["member"])
        .await;
    (admin, bob, carol)
}

async fn set_status(app: &TestApp, admin: &str, id: &str, status: &str) -> TestResponse {
    app.send(
        Req::post(format!("/v1/users/{id}/status"))
            .token(admin)
            .json(json!({"status": status})),
    )
    .await
}

fn emails(items: &[Value]) -> Vec<&str> {
    items.iter().map(|u| u["email"].as_str().unwrap()).collect()
}

backend_test!(list_users_with_filters_and_pages, |app| async move {
    let (admin, (bob_id, _), _) = people(&app).await;
    let all = all_pages(&app, &admin, "/v1/users", 1).await;
    assert_eq!(
        emails(&all),
        [ADMIN_EMAIL, "bob@example.com", "carol@example.com"],
        "creation order"
    );
    let text = serde_json::to_string(&all).unwrap();
    assert!(
        !text.contains("argon2") && !text.contains("password_hash"),
        "no password material in user views"
    );

    let r = get_ok(&app, &admin, "/v1/users?q=CAR").await;
    assert_eq!(
        emails(r["items"].as_array().unwrap()),
        ["carol@example.com"],
        "q matches the start of the email, any case"
    );
    let r = get_ok(&app, &admin, "/v1/users?q=example").await;
    assert_eq!(r["items"], json!([]), "q is a prefix, not a substring");

    let r = set_status(&app, &admin, &bob_id, "suspended").await;
    assert_status(&r, 200);
    let r = get_ok(&app, &admin, "/v1/users?status=suspended").await;
    assert_eq!(emails(r["items"].as_array().unwrap()), ["bob@example.com"]);
    let r = get_ok(&app, &admin, "/v1/users?status=active&q=b").await;
    assert_eq!(r["items"], json!([]));
    let r = get_ok(&app, &admin, "/v1/users?status=active").await;
    assert_eq!(
        emails(r["items"].as_array().unwrap()),
        [ADMIN_EMAIL, "carol@example.com"]
    );
});

backend_test!(only_platform_admins_manage_users, |app| async move {
    let (_, (bob_id, bob), (carol_id, _)) = people(&app).await;
    let r = app.send(Req::get("/v1/users").token(&bob)).await;
    assert_forbidden(&r, "platform_admin_required");
    let r = app
        .send(Req::get(format!("/v1/users/{carol_id}")).token(&bob))
        .await;
    assert_forbidden(&r, "platform_admin_required");
    // Reading oneself is fine; changing oneself goes through /v1/me.
    let r = app
        .send(Req::get(format!("/v1/users/{bob_id}")).token(&bob))
        .await;
    assert_status(&r, 200);
    r.etag();
    for req in [
        Req::patch(format!("/v1/users/{carol_id}")).json(json!({"display_name": "x"})),
        Req::post(format!("/v1/users/{carol_id}/status")).json(json!({"status": "suspended"})),
        Req::delete(format!("/v1/users/{carol_id}")),
        Req::post(format!("/v1/users/{carol_id}/restore")),
        Req::patch(format!("/v1/users/{bob_id}")).json(json!({"display_name": "x"})),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req.token(&bob)).await;
        assert_eq!(r.status, 403, "{label}: {}", r.text);
        assert_forbidden(&r, "platform_admin_required");
    }
    let r = app.send(Req::get("/v1/users")).await;
    assert_problem(&r, 401, "unauthenticated");
});

backend_test!(read_and_edit_a_user, |app| async move {
    let (admin, (bob_id, bob), _) = people(&app).await;
    let r = app
        .send(Req::get(format!("/v1/users/{bob_id}")).token(&admin))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["email"], "bob@example.com");
    assert_eq!(r.body["platform_admin"], false);
    let v = r.etag();
    let r = app
        .send(
            Req::patch(format!("/v1/users/{bob_id}"))
                .token(&admin)
                .header("if-match", &v)
                .json(json!({"display_name": "Robert", "locale": "en-GB"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["display_name"], "Robert");
    assert_eq!(r.body["locale"], "en-GB");
    let me = get_ok(&app, &bob, "/v1/me").await;
    assert_eq!(me["display_name"], "Robert");

    let r = app
        .send(Req::get("/v1/users/0190aaaa-0000-7000-8000-000000000000").token(&admin))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(
            Req::patch("/v1/users/0190aaaa-0000-7000-8000-000000000000")
                .token(&admin)
                .json(json!({"display_name": "x"})),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app.send(Req::get("/v1/users/42").token(&admin)).await;
    assert_invalid(&r, &["user_id"]);
});

backend_test!(status_moves_follow_the_table, |app| async move {
    let (admin, (bob_id, _), (carol_id, carol)) = people(&app).await;
    // active -> suspended -> active -> deactivated -> deleted; deactivated is permanent.
    for (to, ok) in [
        ("suspended", true),
        ("suspended", false),
        ("password_reset_required", false),
        ("active", true),
        ("deactivated", true),
        ("active", false),
        ("suspended", false),
        ("deleted", true),
    ] {
        let r = set_status(&app, &admin, &bob_id, to).await;
        if ok {
            assert_eq!(r.status, 200, "bob -> {to}: {}", r.text);
            assert_eq!(r.body["status"], to);
        } else {
            assert_eq!(r.status, 409, "bob -> {to} must be refused: {}", r.text);
            assert_conflict(&r, "invalid_transition");
        }
    }
    // Only the user may leave password_reset_required for active.
    let r = set_status(&app, &admin, &carol_id, "password_reset_required").await;
    assert_status(&r, 200);
    let r = set_status(&app, &admin, &carol_id, "active").await;
    assert_conflict(&r, "invalid_transition");
    let r = set_status(&app, &admin, &carol_id, "pending_verification").await;
    assert_conflict(&r, "invalid_transition");
    // Deactivating ends sessions like suspending does.
    let r = set_status(&app, &admin, &carol_id, "deactivated").await;
    assert_status(&r, 200);
    let r = app.send(Req::get("/v1/me").token(&carol)).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "carol@example.com", "password": PASSWORD})),
        )
        .await;
    assert_problem(&r, 401, "invalid_credentials");

    // Admins cannot change their own status.
    let admin_id = my_id(&app, &admin).await;
    let r = set_status(&app, &admin, &admin_id, "suspended").await;
    assert_conflict(&r, "own_status");
    let r = set_status(
        &app,
        &admin,
        "0190aaaa-0000-7000-8000-000000000000",
        "suspended",
    )
    .await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(soft_delete_and_restore, |app| async move {
    let (admin, (bob_id, bob), (carol_id, _)) = people(&app).await;
    let r = set_status(&app, &admin, &bob_id, "suspended").await;
    assert_status(&r, 200);
    let r = app
        .send(Req::delete(format!("/v1/users/{bob_id}")).token(&admin))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "deleted");
    assert!(r.body["deleted_at"].as_str().is_some());
    let r = app.send(Req::get("/v1/me").token(&bob)).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(Req::delete(format!("/v1/users/{bob_id}")).token(&admin))
        .await;
    assert_conflict(&r, "invalid_transition");
    // Restore returns to the status before the delete.
    let r = app
        .send(Req::post(format!("/v1/users/{bob_id}/restore")).token(&admin))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "suspended");
    assert_eq!(r.body["deleted_at"], Value::Null);
    let r = app
        .send(Req::post(format!("/v1/users/{bob_id}/restore")).token(&admin))
        .await;
    assert_conflict(&r, "invalid_transition");

    // An active user deleted and restored can log in again.
    let r = app
        .send(Req::delete(format!("/v1/users/{carol_id}")).token(&admin))
        .await;
    assert_status(&r, 200);
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "carol@example.com", "password": PASSWORD})),
        )
        .await;
    assert_problem(&r, 401, "invalid_credentials");
    let r = app
        .send(Req::post(format!("/v1/users/{carol_id}/restore")).token(&admin))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");
    app.login("carol@example.com", PASSWORD).await;
    let r = app
        .send(Req::post("/v1/users/0190aaaa-0000-7000-8000-000000000000/restore").token(&admin))
        .await;
    assert_problem(&r, 404, "not_found");
});
