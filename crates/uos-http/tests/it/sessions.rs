//! Sessions: refresh-token rotation with reuse detection, idle expiry, the caller's devices,
//! and revoking sessions (one, all others, all of a user by an admin).

use super::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

async fn login_with(app: &TestApp, email: &str, password: &str, ua: &str) -> Value {
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .header("user-agent", ua)
                .json(json!({"email": email, "password": password})),
        )
        .await;
    assert_status(&r, 200);
    r.body
}

async fn refresh(app: &TestApp, token: &str) -> TestResponse {
    app.send(Req::post("/v1/auth/refresh").json(json!({"refresh_token": token})))
        .await
}

fn access(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_string()
}

/// Presenting the refresh token of `replayed`, an earlier answer of `latest`'s session, is a
/// replay: refused, and the whole session is revoked (`latest`'s tokens die too), audited
/// once. The reuse events.
async fn replay_revokes_the_session(app: &TestApp, replayed: &Value, latest: &Value) -> Vec<Value> {
    let r = refresh(app, &refresh_token(replayed)).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app.send(Req::get("/v1/me").token(&access(latest))).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = refresh(app, &refresh_token(latest)).await;
    assert_problem(&r, 401, "unauthenticated");
    let admin = app.admin_token().await;
    let events = all_pages(
        app,
        &admin,
        "/v1/audit/events?action=session.refresh_reuse_detected",
        50,
    )
    .await;
    assert_eq!(events.len(), 1, "the reuse is audited once: {events:?}");
    assert_eq!(events[0]["target"]["id"], replayed["session_id"]);
    events
}

backend_test!(
    refresh_rotates_and_reuse_revokes_the_session,
    |app| async move {
        let first = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
        assert!(refresh_token(&first).starts_with("uosrt_"), "{first}");

        let r = refresh(&app, &refresh_token(&first)).await;
        assert_status(&r, 200);
        let second = r.body.clone();
        assert_eq!(second["session_id"], first["session_id"], "same session");
        assert_ne!(refresh_token(&second), refresh_token(&first), "rotated");
        get_ok(&app, &access(&second), "/v1/me").await;

        // The first refresh token was used: presenting it again is a reuse.
        replay_revokes_the_session(&app, &first, &second).await;
        let text = serde_json::to_string(&all_audit(&app).await).unwrap();
        for secret in [
            refresh_token(&first),
            refresh_token(&second),
            access(&second),
        ] {
            assert!(!text.contains(&secret), "a token reached the audit trail");
        }
    }
);

backend_test!(
    reuse_of_a_token_two_generations_back_revokes_the_session,
    |app| async move {
        let first = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
        let r = refresh(&app, &refresh_token(&first)).await;
        assert_status(&r, 200);
        let r = refresh(&app, &refresh_token(&r.body)).await;
        assert_status(&r, 200);
        let third = r.body.clone();

        // Not the previous token but the one before it: still a replay.
        let events = replay_revokes_the_session(&app, &first, &third).await;
        assert_eq!(events[0]["changes"]["after"]["session_revoked"], true);
    }
);

backend_test!(
    a_forged_token_naming_a_real_session_revokes_nothing,
    |app| async move {
        let tokens = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
        let session: uuid::Uuid = tokens["session_id"].as_str().unwrap().parse().unwrap();
        // Right shape, real session id, an earlier or the current generation: but not signed
        // with the server's key, so not a token of ours, whatever it names.
        for (key, generation) in [([9u8; 32], 0), ([9u8; 32], 1), ([0u8; 32], 0)] {
            let forged = uos_authn::issue_refresh_token(&key, session, generation);
            let r = refresh(&app, &forged).await;
            assert_problem(&r, 401, "unauthenticated");
        }
        get_ok(&app, &access(&tokens), "/v1/me").await;
        let r = refresh(&app, &refresh_token(&tokens)).await;
        assert_status(&r, 200);
        // The session moved on once; a forged token of its old generation still revokes
        // nothing.
        let forged = uos_authn::issue_refresh_token(&[9u8; 32], session, 0);
        assert_problem(&refresh(&app, &forged).await, 401, "unauthenticated");
        let r = refresh(&app, &refresh_token(&r.body)).await;
        assert_status(&r, 200);
        let admin = app.admin_token().await;
        let events = all_pages(
            &app,
            &admin,
            "/v1/audit/events?action=session.refresh_reuse_detected",
            50,
        )
        .await;
        assert!(events.is_empty(), "no reuse was detected: {events:?}");
    }
);

backend_test!(refresh_rejects_bad_input, |app| async move {
    for (body, fields) in [
        (json!({}), vec!["refresh_token"]),
        (
            json!({"refresh_token": 5, "extra": true}),
            vec!["refresh_token", "extra"],
        ),
        (json!({"refresh_token": ""}), vec!["refresh_token"]),
        (
            json!({"refresh_token": "x".repeat(300)}),
            vec!["refresh_token"],
        ),
    ] {
        let r = app.send(Req::post("/v1/auth/refresh").json(body)).await;
        assert_invalid(&r, &fields);
    }
    let r = app
        .send(Req::post("/v1/auth/refresh").raw("{not json", "application/json"))
        .await;
    assert_problem(&r, 400, "validation_failed");
    // Well-formed but unknown: 401.
    let tokens = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
    let junk = "x".repeat(200);
    for bogus in [
        "uosrt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        junk.as_str(),
    ] {
        let r = refresh(&app, bogus).await;
        assert_problem(&r, 401, "unauthenticated");
    }
    // A failed refresh changes nothing: the real token still works once.
    let r = refresh(&app, &refresh_token(&tokens)).await;
    assert_status(&r, 200);
});

backend_test!(
    concurrent_refreshes_with_one_token_revoke_the_session,
    |app| async move {
        let tokens = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
        let t = refresh_token(&tokens);
        let (a, b) = tokio::join!(refresh(&app, &t), refresh(&app, &t));
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 401],
            "one wins, the other is a reuse: {} / {}",
            a.text,
            b.text
        );
        // The reuse revoked the session, including the winner's new tokens.
        let winner = if a.status == 200 { a.body } else { b.body };
        let r = app.send(Req::get("/v1/me").token(&access(&winner))).await;
        assert_problem(&r, 401, "unauthenticated");
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire() {
    let app = TestApp::spawn_with(
        uos_testkit::Backend::Sqlite,
        &[("service.session_idle_secs", json!(1))],
    )
    .await;
    let tokens = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
    get_ok(&app, &access(&tokens), "/v1/me").await;
    // Idle expiry is a matter of time passing; one second is the smallest setting.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = app.send(Req::get("/v1/me").token(&access(&tokens))).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = refresh(&app, &refresh_token(&tokens)).await;
    assert_problem(&r, 401, "unauthenticated");
}

backend_test!(my_sessions_list_devices_and_revoke, |app| async move {
    let laptop = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, FIREFOX).await;
    let script = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8.5.0").await;
    let phone = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8.5.0").await;

    let r = app
        .send(Req::get("/v1/me/sessions").token(&access(&laptop)))
        .await;
    assert_status(&r, 200);
    let items = r.body["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 3, "{}", r.text);
    let mine = items
        .iter()
        .find(|s| s["id"] == laptop["session_id"])
        .expect("laptop listed");
    assert_eq!(mine["current"], true);
    assert_eq!(mine["device"]["browser"], "Firefox");
    assert_eq!(mine["device"]["os"], "Linux");
    assert_eq!(mine["device"]["category"], "pc");
    assert_eq!(mine["user_agent"], FIREFOX);
    assert!(
        mine["last_seen_at"].is_string() && mine["expires_at"].is_string(),
        "{mine}"
    );
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);

    // Revoke one other session: it dies, the others live.
    let sid = script["session_id"].as_str().unwrap();
    let r = app
        .send(Req::delete(format!("/v1/me/sessions/{sid}")).token(&access(&laptop)))
        .await;
    assert_status(&r, 204);
    assert_problem(
        &app.send(Req::get("/v1/me").token(&access(&script))).await,
        401,
        "unauthenticated",
    );
    get_ok(&app, &access(&phone), "/v1/me").await;

    // Revoke all others: only the current one stays.
    let r = app
        .send(Req::delete("/v1/me/sessions").token(&access(&laptop)))
        .await;
    assert_status(&r, 204);
    assert_problem(
        &app.send(Req::get("/v1/me").token(&access(&phone))).await,
        401,
        "unauthenticated",
    );
    let r = app
        .send(Req::get("/v1/me/sessions").token(&access(&laptop)))
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{}", r.text);

    // Bad ids, and other people's sessions, are not found / invalid; nothing changes.
    let r = app
        .send(Req::delete("/v1/me/sessions/not-a-uuid").token(&access(&laptop)))
        .await;
    assert_invalid(&r, &["id"]);
    app.create_org(&access(&laptop), "acme").await;
    let (_, bob) = app
        .add_member(&access(&laptop), "acme", "bob@example.com", &["member"])
        .await;
    let r = app.send(Req::get("/v1/me/sessions").token(&bob)).await;
    let bobs = r.body["items"][0]["id"].as_str().unwrap().to_string();
    let r = app
        .send(Req::delete(format!("/v1/me/sessions/{bobs}")).token(&access(&laptop)))
        .await;
    assert_problem(&r, 404, "not_found");
    get_ok(&app, &bob, "/v1/me").await;
    let r = app.send(Req::get("/v1/me/sessions")).await;
    assert_problem(&r, 401, "unauthenticated");
});

backend_test!(admins_revoke_every_session_of_a_user, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let (bob_id, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["owner"])
        .await;
    let bob2 = app.login("bob@example.com", PASSWORD).await;

    // Not for non-admins, even an org owner, and not about oneself either.
    let admin_id = my_id(&app, &admin).await;
    let r = app
        .send(Req::delete(format!("/v1/users/{admin_id}/sessions")).token(&bob))
        .await;
    assert_forbidden(&r, "platform_admin_required");
    get_ok(&app, &admin, "/v1/me").await;

    let r = app
        .send(Req::delete(format!("/v1/users/{bob_id}/sessions")).token(&admin))
        .await;
    assert_status(&r, 204);
    for t in [&bob, &bob2] {
        assert_problem(
            &app.send(Req::get("/v1/me").token(t)).await,
            401,
            "unauthenticated",
        );
    }
    let events = all_pages(
        &app,
        &admin,
        "/v1/audit/events?action=session.revoked_all",
        50,
    )
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["changes"]["after"]["sessions_revoked"], 2);

    let r = app
        .send(Req::delete("/v1/users/0190aaaa-0000-7000-8000-000000000009/sessions").token(&admin))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::delete("/v1/users/nope/sessions").token(&admin))
        .await;
    assert_invalid(&r, &["user_id"]);
    // Bob can log in again: revoking sessions is not a suspension.
    app.login("bob@example.com", PASSWORD).await;
});

backend_test!(
    parallel_refreshes_do_not_starve_a_small_pool,
    config = [("database_max_connections", json!(2))],
    |app| async move {
        // Each refresh holds a write connection; nothing in it may wait for a second pooled
        // connection, or a full pool deadlocks.
        let mut tokens = Vec::new();
        for _ in 0..12 {
            let body = login_with(&app, ADMIN_EMAIL, ADMIN_PASSWORD, "curl/8").await;
            tokens.push(refresh_token(&body));
        }
        // Fresh caches: every refresh reads its session from the store.
        let app = std::sync::Arc::new(app);
        let tasks: Vec<_> = tokens
            .into_iter()
            .map(|t| {
                let app = app.clone();
                tokio::spawn(async move { refresh(&app, &t).await.status })
            })
            .collect();
        let all = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap().as_u16());
            }
            out
        })
        .await
        .expect("refreshes finish");
        assert!(all.iter().all(|s| *s == 200), "{all:?}");
    }
);
