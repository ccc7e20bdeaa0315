//! Login, logout, sessions that end at once, the caller's own profile, preferences and
//! password, and the JWKS.

use super::*;

/// A user who belongs to org `home` as a member: (id, token).
async fn user(app: &TestApp, email: &str) -> (String, String) {
    let admin = app.admin_token().await;
    let r = app.send(Req::get("/v1/orgs/home").token(&admin)).await;
    if r.status == 404 {
        app.create_org(&admin, "home").await;
    }
    app.add_member(&admin, "home", email, &["member"]).await
}

fn login(email: &str, password: &str) -> Req {
    Req::post("/v1/auth/login").json(json!({"email": email, "password": password}))
}

backend_test!(
    login_returns_a_bearer_token_bound_to_a_session,
    |app| async move {
        let r = app.send(login(ADMIN_EMAIL, ADMIN_PASSWORD)).await;
        assert_status(&r, 200);
        assert_eq!(r.body["token_type"], "Bearer");
        assert!(
            r.body["access_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{}",
            r.text
        );
        assert!(
            r.body["expires_in"].as_u64().is_some_and(|n| n > 0),
            "{}",
            r.text
        );
        assert!(r.body["session_id"].as_str().is_some(), "{}", r.text);
        let token = r.body["access_token"].as_str().unwrap();
        let me = get_ok(&app, token, "/v1/me").await;
        assert_eq!(me["email"], ADMIN_EMAIL);
        assert_eq!(me["platform_admin"], true);

        // Emails are trimmed and compared case-insensitively.
        let r = app
            .send(login("  ADMIN@Example.COM ", ADMIN_PASSWORD))
            .await;
        assert_status(&r, 200);
    }
);

backend_test!(
    unknown_email_and_wrong_password_look_the_same,
    |app| async move {
        let unknown = app.send(login("nobody@example.com", ADMIN_PASSWORD)).await;
        let wrong = app.send(login(ADMIN_EMAIL, "not the admin password")).await;
        assert_problem(&unknown, 401, "invalid_credentials");
        assert_problem(&wrong, 401, "invalid_credentials");
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("request_id");
            v
        };
        assert_eq!(
            strip(&unknown.body),
            strip(&wrong.body),
            "the two failures must be indistinguishable"
        );
        assert_eq!(
            unknown.header("www-authenticate"),
            wrong.header("www-authenticate")
        );
    }
);

backend_test!(bad_credentials_headers_are_401, |app| async move {
    for value in [
        "Bearer not-a-token",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer",
        "Bearer eyJhbGciOiJFZERTQSJ9.e30.AAAA",
    ] {
        let r = app
            .send(Req::get("/v1/me").header("authorization", value))
            .await;
        assert_problem(&r, 401, "unauthenticated");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer"),
            "401 names the scheme"
        );
    }
    let r = app.send(Req::get("/v1/me")).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app.send(Req::post("/v1/auth/logout")).await;
    assert_problem(&r, 401, "unauthenticated");
});

backend_test!(logout_ends_the_session_at_once, |app| async move {
    let first = app.admin_token().await;
    let second = app.admin_token().await;
    let r = app.send(Req::post("/v1/auth/logout").token(&first)).await;
    assert_status(&r, 204);
    let r = app.send(Req::get("/v1/me").token(&first)).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app.send(Req::post("/v1/auth/logout").token(&first)).await;
    assert_problem(&r, 401, "unauthenticated");
    // Only that session ended.
    get_ok(&app, &second, "/v1/me").await;
});

backend_test!(
    suspension_ends_sessions_and_blocks_login,
    |app| async move {
        let admin = app.admin_token().await;
        let (id, token) = user(&app, "sam@example.com").await;
        get_ok(&app, &token, "/v1/me").await;
        let r = app
            .send(
                Req::post(format!("/v1/users/{id}/status"))
                    .token(&admin)
                    .json(json!({"status": "suspended", "reason": "test"})),
            )
            .await;
        assert_status(&r, 200);
        assert_eq!(r.body["status"], "suspended");
        let r = app.send(Req::get("/v1/me").token(&token)).await;
        assert_problem(&r, 401, "unauthenticated");
        let r = app.send(login("sam@example.com", PASSWORD)).await;
        assert_problem(&r, 401, "invalid_credentials");
        // Back to active: they can log in again, but the old token stays dead.
        let r = app
            .send(
                Req::post(format!("/v1/users/{id}/status"))
                    .token(&admin)
                    .json(json!({"status": "active"})),
            )
            .await;
        assert_status(&r, 200);
        let r = app.send(Req::get("/v1/me").token(&token)).await;
        assert_problem(&r, 401, "unauthenticated");
        let fresh = app.login("sam@example.com", PASSWORD).await;
        get_ok(&app, &fresh, "/v1/me").await;
    }
);

backend_test!(
    password_reset_required_may_only_change_the_password,
    |app| async move {
        let admin = app.admin_token().await;
        let (id, _) = user(&app, "riley@example.com").await;
        let r = app
            .send(
                Req::post(format!("/v1/users/{id}/status"))
                    .token(&admin)
                    .json(json!({"status": "password_reset_required"})),
            )
            .await;
        assert_status(&r, 200);
        let token = app.login("riley@example.com", PASSWORD).await;
        let me = get_ok(&app, &token, "/v1/me").await;
        assert_eq!(me["status"], "password_reset_required");
        let r = app.send(Req::get("/v1/orgs").token(&token)).await;
        assert_forbidden(&r, "password_reset_required");
        let r = app
            .send(
                Req::patch("/v1/me")
                    .token(&token)
                    .json(json!({"display_name": "R"})),
            )
            .await;
        assert_forbidden(&r, "password_reset_required");

        let new_password = "a brand new password 42";
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .token(&token)
                    .json(json!({"current_password": PASSWORD, "new_password": new_password})),
            )
            .await;
        assert_status(&r, 204);
        // Changing the password ends every session, this one included.
        let r = app.send(Req::get("/v1/me").token(&token)).await;
        assert_problem(&r, 401, "unauthenticated");
        let r = app.send(login("riley@example.com", PASSWORD)).await;
        assert_problem(&r, 401, "invalid_credentials");
        let token = app.login("riley@example.com", new_password).await;
        let me = get_ok(&app, &token, "/v1/me").await;
        assert_eq!(me["status"], "active");
        get_ok(&app, &token, "/v1/orgs").await;
    }
);

backend_test!(
    change_password_checks_the_current_one_and_the_policy,
    |app| async move {
        let (_, token) = user(&app, "pat@example.com").await;
        let other_session = app.login("pat@example.com", PASSWORD).await;
        let audit = audit_changes(&app).await;
        let r = app.send(Req::post("/v1/me/password").token(&token).json(json!({"current_password": "wrong password!!", "new_password": "another long password"}))).await;
        assert_invalid(&r, &["current_password"]);
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .token(&token)
                    .json(json!({"current_password": PASSWORD, "new_password": "short"})),
            )
            .await;
        assert_invalid(&r, &["new_password"]);
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .token(&token)
                    .json(json!({"current_password": PASSWORD, "new_password": "x".repeat(129)})),
            )
            .await;
        assert_invalid(&r, &["new_password"]);
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .token(&token)
                    .json(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            )
            .await;
        assert_invalid(&r, &["new_password"]);
        assert_eq!(
            audit_changes(&app).await,
            audit,
            "failed password changes change nothing"
        );
        get_ok(&app, &token, "/v1/me").await;

        let r = app
            .send(Req::post("/v1/me/password").token(&token).json(
                json!({"current_password": PASSWORD, "new_password": "another long password"}),
            ))
            .await;
        assert_status(&r, 204);
        for t in [&token, &other_session] {
            let r = app.send(Req::get("/v1/me").token(t)).await;
            assert_problem(&r, 401, "unauthenticated");
        }
        app.login("pat@example.com", "another long password").await;
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .json(json!({"current_password": "a", "new_password": "b"})),
            )
            .await;
        assert_problem(&r, 401, "unauthenticated");
    }
);

backend_test!(me_profile_read_and_update, |app| async move {
    let (id, token) = user(&app, "mia@example.com").await;
    let r = app.send(Req::get("/v1/me").token(&token)).await;
    assert_status(&r, 200);
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["email"], "mia@example.com");
    let orgs = r.body["orgs"].as_array().unwrap();
    assert_eq!(orgs.len(), 1, "{}", r.text);
    assert_eq!(orgs[0]["roles"], json!(["member"]));
    let v1 = r.etag();

    let r = app
        .send(Req::patch("/v1/me").token(&token).json(
            json!({"display_name": "  Mia  ", "locale": "de-CH", "timezone": "Europe/Zurich"}),
        ))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["display_name"], "Mia", "display names are trimmed");
    assert_eq!(r.body["locale"], "de-CH");
    assert_eq!(r.body["timezone"], "Europe/Zurich");
    assert_ne!(r.etag(), v1, "a write moves the ETag");
    // Absent fields stay as they are.
    let r = app
        .send(
            Req::patch("/v1/me")
                .token(&token)
                .json(json!({"locale": "fr"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["display_name"], "Mia");
    assert_eq!(r.body["locale"], "fr");
    let r = app.send(Req::get("/v1/me")).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(Req::patch("/v1/me").json(json!({"locale": "fr"})))
        .await;
    assert_problem(&r, 401, "unauthenticated");
});

backend_test!(preferences_are_a_free_form_object, |app| async move {
    let (_, token) = user(&app, "pia@example.com").await;
    let r = app.send(Req::get("/v1/me/preferences").token(&token)).await;
    assert_status(&r, 200);
    assert_eq!(r.body, json!({}), "preferences start empty");
    r.etag();
    let doc = json!({"theme": "dark", "nested": {"list": [1, 2, 3]}, "flag": true});
    let r = app
        .send(
            Req::put("/v1/me/preferences")
                .token(&token)
                .json(doc.clone()),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body, doc);
    let written = r.etag();
    let r = app.send(Req::get("/v1/me/preferences").token(&token)).await;
    assert_eq!(r.body, doc);
    assert_eq!(r.etag(), written);
    // Exactly at the limit is fine; a byte over is not.
    let filler = 16 * 1024 - json!({"k": ""}).to_string().len();
    let r = app
        .send(
            Req::put("/v1/me/preferences")
                .token(&token)
                .json(json!({"k": "x".repeat(filler)})),
        )
        .await;
    assert_status(&r, 200);
    let r = app
        .send(
            Req::put("/v1/me/preferences")
                .token(&token)
                .json(json!({"k": "x".repeat(filler + 1)})),
        )
        .await;
    assert_invalid(&r, &["body"]);
    for bad in [json!("text"), json!(42), json!(null), json!([{"a": 1}])] {
        let r = app
            .send(Req::put("/v1/me/preferences").token(&token).json(bad))
            .await;
        assert_invalid(&r, &["body"]);
    }
    let r = app.send(Req::get("/v1/me/preferences")).await;
    assert_problem(&r, 401, "unauthenticated");
});

backend_test!(jwks_lists_the_access_token_keys, |app| async move {
    let r = app.send(Req::get("/.well-known/jwks.json")).await;
    assert_status(&r, 200);
    let keys = r.body["keys"].as_array().expect("a JWK Set");
    assert!(!keys.is_empty(), "{}", r.text);
    for k in keys {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(k["x"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(k.get("d").is_none(), "no private part in a JWKS");
    }
    // The token's `kid` is in the set.
    let token = app.admin_token().await;
    let header = token.split('.').next().unwrap();
    let header =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header).unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert!(
        keys.iter().any(|k| k["kid"] == header["kid"]),
        "token kid {} is published",
        header["kid"]
    );
});
