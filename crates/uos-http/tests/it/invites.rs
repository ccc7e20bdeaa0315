//! Invites: create (token shown once), list, revoke, and accept — as a new user, as an existing
//! user joining a second org, and the refusals for expired, revoked and used invites.

use super::*;

async fn invite(app: &TestApp, token: &str, slug: &str, email: &str, roles: Value) -> TestResponse {
    app.send(
        Req::post(format!("/v1/orgs/{slug}/invites"))
            .token(token)
            .json(json!({"email": email, "roles": roles})),
    )
    .await
}

fn accept(token: &str, password: Option<&str>) -> Req {
    let mut body = json!({"token": token});
    if let Some(p) = password {
        body["password"] = json!(p);
    }
    Req::post("/v1/invites/accept").json(body)
}

/// Move an invite's expiry into the past through the store port: the service reads time from
/// the clock, and waiting an hour (the shortest lifetime) is not an option in a test.
async fn expire(app: &TestApp, invite_token: &str) {
    let store = app.state.svc.store();
    let mut tx = store.begin().await.unwrap();
    let mut inv = tx
        .get_invite_by_token_hash(&token_hash(invite_token))
        .await
        .unwrap()
        .expect("the invite exists");
    let version = inv.version;
    inv.expires_at = chrono::Utc::now() - chrono::Duration::minutes(1);
    inv.version += 1;
    tx.update_invite(&inv, version).await.unwrap();
    tx.commit().await.unwrap();
}

backend_test!(create_list_and_revoke, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = invite(
        &app,
        &alice,
        "acme",
        " Dan@Example.COM ",
        json!(["member", "billing"]),
    )
    .await;
    assert_status(&r, 201);
    assert_eq!(
        r.body["email"], "dan@example.com",
        "emails are trimmed and lower-cased"
    );
    assert_eq!(r.body["roles"], json!(["member", "billing"]));
    assert_eq!(r.body["status"], "pending");
    let token = r.body["token"]
        .as_str()
        .expect("the token is in the create response")
        .to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    let created =
        chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        (expires - created).num_hours(),
        168,
        "default lifetime is a week"
    );
    r.etag();

    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites").token(&alice).json(
                json!({"email": "eve@example.com", "roles": ["member"], "expires_in_hours": 1}),
            ),
        )
        .await;
    assert_status(&r, 201);
    let created =
        chrono::DateTime::parse_from_rfc3339(r.body["created_at"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_hours(), 1);

    // Alice's own (accepted) invite came first.
    let list = all_pages(&app, &alice, "/v1/orgs/acme/invites", 1).await;
    let emails: Vec<&str> = list.iter().map(|i| i["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        ["alice@example.com", "dan@example.com", "eve@example.com"],
        "creation order"
    );
    assert_eq!(list[1]["id"], id.as_str());
    let text = serde_json::to_string(&list).unwrap();
    assert!(
        !text.contains(&token) && !text.contains("\"token\""),
        "the token is never listed: {text}"
    );

    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/invites/{id}")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "revoked");
    assert!(r.body["revoked_at"].as_str().is_some());
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/invites/{id}")).token(&alice))
        .await;
    assert_conflict(&r, "invite_revoked");
    let r = app.send(accept(&token, Some(PASSWORD))).await;
    assert_problem(&r, 410, "invite_revoked");
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "dan@example.com", "password": PASSWORD})),
        )
        .await;
    assert_problem(&r, 401, "invalid_credentials");

    let r = app
        .send(
            Req::delete("/v1/orgs/acme/invites/0190aaaa-0000-7000-8000-000000000000").token(&alice),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::delete("/v1/orgs/acme/invites/nope").token(&alice))
        .await;
    assert_invalid(&r, &["id"]);
});

backend_test!(accepting_creates_a_new_user, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = invite(&app, &alice, "acme", "nina@example.com", json!(["admin"])).await;
    let token = r.body["token"].as_str().unwrap().to_string();

    // A new account needs an acceptable password; failures leave the invite usable.
    let r = app.send(accept(&token, None)).await;
    assert_invalid(&r, &["password"]);
    let r = app.send(accept(&token, Some("short"))).await;
    assert_invalid(&r, &["password"]);

    let r = app
        .send(
            Req::post("/v1/invites/accept")
                .json(json!({"token": token, "password": PASSWORD, "display_name": "Nina"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["user"]["email"], "nina@example.com");
    assert_eq!(r.body["user"]["display_name"], "Nina");
    assert_eq!(r.body["user"]["status"], "active");
    assert_eq!(r.body["membership"]["roles"], json!(["admin"]));
    let nina = app.login("nina@example.com", PASSWORD).await;
    let org = get_ok(&app, &nina, "/v1/orgs/acme").await;
    assert_eq!(org["slug"], "acme");
    let list = get_ok(&app, &alice, "/v1/orgs/acme/invites").await;
    let nina_invite = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == "nina@example.com")
        .unwrap()
        .clone();
    assert_eq!(nina_invite["status"], "accepted");

    // Used once: a second accept is a conflict, and nothing changes.
    let audit = audit_changes(&app).await;
    let r = app.send(accept(&token, Some(PASSWORD))).await;
    assert_conflict(&r, "invite_accepted");
    assert_eq!(audit_changes(&app).await, audit);
    // An accepted invite cannot be revoked either.
    let id = nina_invite["id"].as_str().unwrap();
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/invites/{id}")).token(&alice))
        .await;
    assert_conflict(&r, "invite_accepted");

    let r = app
        .send(accept("uosinv_not-a-real-token", Some(PASSWORD)))
        .await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(existing_user_joins_a_second_org, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["member"])
        .await;
    let (_, olga) = owned_org(&app, "other", "olga@example.com").await;

    let r = invite(&app, &olga, "other", "bob@example.com", json!(["auditor"])).await;
    assert_status(&r, 201);
    let token = r.body["token"].as_str().unwrap().to_string();
    // No password needed (and none set): the account exists.
    let r = app.send(accept(&token, None)).await;
    assert_status(&r, 200);
    assert_eq!(r.body["user"]["id"], bob_id.as_str());
    assert_eq!(r.body["membership"]["roles"], json!(["auditor"]));

    let me = get_ok(&app, &bob, "/v1/me").await;
    assert_eq!(me["orgs"].as_array().unwrap().len(), 2, "{me}");
    let orgs = all_pages(&app, &bob, "/v1/orgs", 50).await;
    let slugs: Vec<&str> = orgs.iter().map(|o| o["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme", "other"]);
    // His password did not change.
    app.login("bob@example.com", PASSWORD).await;

    // Inviting someone who is already a member is a conflict.
    let r = invite(&app, &olga, "other", "bob@example.com", json!(["member"])).await;
    assert_conflict(&r, "already_member");
});

backend_test!(expired_invite_is_gone, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = invite(&app, &alice, "acme", "late@example.com", json!(["member"])).await;
    let token = r.body["token"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    expire(&app, &token).await;
    let audit = audit_changes(&app).await;
    let r = app.send(accept(&token, Some(PASSWORD))).await;
    assert_problem(&r, 410, "invite_expired");
    assert_eq!(audit_changes(&app).await, audit);
    let list = get_ok(&app, &alice, "/v1/orgs/acme/invites").await;
    let late = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(late["status"], "expired");
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "late@example.com", "password": PASSWORD})),
        )
        .await;
    assert_problem(&r, 401, "invalid_credentials");
    // An expired invite may still be revoked (to tidy up), and then says so.
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/invites/{id}")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "revoked");
});

backend_test!(
    invites_into_an_inactive_org_cannot_be_accepted,
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let r = invite(&app, &alice, "acme", "sue@example.com", json!(["member"])).await;
        let token = r.body["token"].as_str().unwrap().to_string();
        let r = app
            .send(Req::post("/v1/orgs/acme/suspend").token(&alice))
            .await;
        assert_status(&r, 200);
        let r = app.send(accept(&token, Some(PASSWORD))).await;
        assert_conflict(&r, "org_inactive");
        let r = app
            .send(Req::post("/v1/orgs/acme/resume").token(&alice))
            .await;
        assert_status(&r, 200);
        let r = app.send(accept(&token, Some(PASSWORD))).await;
        assert_status(&r, 200);
    }
);

backend_test!(invite_permissions_and_roles, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (_, max) = app
        .add_member(&alice, "acme", "max@example.com", &["member"])
        .await;
    let (_, carl) = app
        .add_member(&alice, "acme", "carl@example.com", &["auditor"])
        .await;
    let r = invite(&app, &max, "acme", "x@example.com", json!(["member"])).await;
    assert_forbidden(&r, "missing_permission:invites:write");
    let r = app
        .send(Req::get("/v1/orgs/acme/invites").token(&max))
        .await;
    assert_forbidden(&r, "missing_permission:invites:read");
    // Auditors read invites but do not create them.
    get_ok(&app, &carl, "/v1/orgs/acme/invites").await;
    let r = invite(&app, &carl, "acme", "x@example.com", json!(["member"])).await;
    assert_forbidden(&r, "missing_permission:invites:write");

    let r = invite(
        &app,
        &alice,
        "acme",
        "x@example.com",
        json!(["member", "no-such-role"]),
    )
    .await;
    assert_invalid(&r, &["roles[1]"]);
    let r = invite(&app, &alice, "acme", "x@example.com", json!([])).await;
    assert_invalid(&r, &["roles"]);
    // Owners may invite owners.
    let r = invite(
        &app,
        &alice,
        "acme",
        "co-owner@example.com",
        json!(["owner"]),
    )
    .await;
    assert_status(&r, 201);
});
