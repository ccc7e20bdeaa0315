//! Password recovery and policy: forgot → mailed single-use token → reset; second-admin
//! approval for privileged accounts; strength and history rules; bad tokens.

use super::*;

const NEW: &str = "saffron glacier piano 88";

fn token_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("uosrst_"))
        .expect("a reset token in the mail")
        .to_string()
}

async fn forgot(app: &TestApp, email: &str) -> TestResponse {
    app.send(Req::post("/v1/auth/password/forgot").json(json!({"email": email})))
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> TestResponse {
    app.send(
        Req::post("/v1/auth/password/reset")
            .json(json!({"token": token, "new_password": password})),
    )
    .await
}

backend_test!(forgot_mail_reset_once, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let (_, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["member"])
        .await;
    // Unknown accounts get the same answer and no mail.
    let r = forgot(&app, "nobody@example.com").await;
    assert_status(&r, 202);
    let r = forgot(&app, "bob@example.com").await;
    assert_status(&r, 202);
    let mails = app.wait_for_mails(1).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].to, "bob@example.com");
    let token = token_in(&mails[0].text);

    // The policy applies to the new password; a refused one does not use the token.
    let r = reset(&app, &token, "password1234567").await;
    assert_invalid(&r, &["new_password"]);
    assert_eq!(
        r.body["errors"][0]["code"], "password_too_weak",
        "{}",
        r.text
    );
    let r = reset(&app, &token, PASSWORD).await;
    assert_invalid(&r, &["new_password"]);
    assert_eq!(r.body["errors"][0]["code"], "password_reused", "{}", r.text);

    let r = reset(&app, &token, NEW).await;
    assert_status(&r, 204);
    // Old sessions ended; the old password is gone; the token worked once.
    let r = app.send(Req::get("/v1/me").token(&bob)).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "bob@example.com", "password": PASSWORD})),
        )
        .await;
    assert_problem(&r, 401, "invalid_credentials");
    app.login("bob@example.com", NEW).await;
    let r = reset(&app, &token, "another saffron glacier 99").await;
    assert_invalid(&r, &["token"]);

    let audit = app
        .send(Req::get("/v1/audit/events?limit=100").token(&admin))
        .await;
    assert!(audit.text.contains("password_reset.requested"));
    assert!(audit.text.contains("password_reset.completed"));
    assert!(
        !audit.text.contains(&token),
        "reset token in the audit trail"
    );
});

backend_test!(privileged_resets_need_two_approvers, |app| async move {
    let admin = app.admin_token().await;
    // Two more platform admins.
    app.create_org(&admin, "acme").await;
    let (_, dana) = platform_admin(&app, "acme", "dana@example.com").await;
    let (_, fred) = platform_admin(&app, "acme", "fred@example.com").await;
    let r = forgot(&app, ADMIN_EMAIL).await;
    assert_status(&r, 202);
    let mails = app.wait_for_mails(1).await;
    assert!(
        !mails[0].text.contains("uosrst_"),
        "no token before approval: {}",
        mails[0].text
    );

    let r = app
        .send(Req::get("/v1/password-resets").token(&admin))
        .await;
    assert_status(&r, 200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", r.text);
    assert_eq!(items[0]["email"], ADMIN_EMAIL);
    let id = items[0]["id"].as_str().unwrap().to_string();

    // Nobody approves their own reset; members cannot approve at all.
    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&admin))
        .await;
    assert_problem(&r, 403, "forbidden");
    assert_eq!(r.body["rule"], "second_approver_required");
    let (_, eve) = app
        .add_member(&admin, "acme", "eve@example.com", &["owner"])
        .await;
    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&eve))
        .await;
    assert_problem(&r, 403, "forbidden");

    // One approval is not enough: no token yet, and nobody counts twice.
    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&dana))
        .await;
    assert_status(&r, 200);
    assert!(r.body["approved_at"].is_null(), "{}", r.text);
    assert_eq!(r.body["approval"]["status"], "pending");
    assert_eq!(r.body["approval"]["approvals"].as_array().unwrap().len(), 1);
    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&dana))
        .await;
    assert_conflict(&r, "already_approved");
    assert_eq!(app.mails().len(), 1, "no token before the second approval");

    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&fred))
        .await;
    assert_status(&r, 200);
    assert!(r.body["approved_at"].is_string());
    assert_eq!(r.body["approval"]["status"], "active");
    assert!(
        !r.text.contains("uosrst_"),
        "the approver never sees the token"
    );
    let r = app
        .send(Req::post(format!("/v1/password-resets/{id}/approve")).token(&dana))
        .await;
    assert_conflict(&r, "approval_closed");

    let mails = app.wait_for_mails(2).await;
    let token = token_in(&mails[1].text);
    assert_eq!(mails[1].to, ADMIN_EMAIL);
    let r = reset(&app, &token, NEW).await;
    assert_status(&r, 204);
    app.login(ADMIN_EMAIL, NEW).await;
    let audit = app
        .send(Req::get("/v1/audit/events?action=password_reset.approved").token(&dana))
        .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        audit.text
    );
});

backend_test!(password_policy_on_change, |app| async move {
    let admin = app.admin_token().await;
    let change = |current: &str, new: &str| {
        Req::post("/v1/me/password")
            .token(&admin)
            .json(json!({"current_password": current, "new_password": new}))
    };
    let r = app.send(change(ADMIN_PASSWORD, "aaaaaaaaaaaaaaaa")).await;
    assert_invalid(&r, &["new_password"]);
    assert_eq!(r.body["errors"][0]["code"], "password_too_weak");
    let r = app.send(change(ADMIN_PASSWORD, &"x".repeat(129))).await;
    assert_invalid(&r, &["new_password"]);
    // The user's own email is guessable.
    let r = app.send(change(ADMIN_PASSWORD, "admin@example.com1")).await;
    assert_invalid(&r, &["new_password"]);

    // Five passwords back may not come back.
    let pw = [
        NEW,
        "marble tundra 7 pixel fox",
        "quasar pickle 31 fjord",
        "nimbus walrus 5 tango",
    ];
    let mut current = ADMIN_PASSWORD.to_string();
    for p in pw {
        let token = app.login(ADMIN_EMAIL, &current).await;
        let r = app
            .send(
                Req::post("/v1/me/password")
                    .token(&token)
                    .json(json!({"current_password": current, "new_password": p})),
            )
            .await;
        assert_status(&r, 204);
        current = p.to_string();
    }
    let token = app.login(ADMIN_EMAIL, &current).await;
    let r = app
        .send(
            Req::post("/v1/me/password")
                .token(&token)
                .json(json!({"current_password": current, "new_password": ADMIN_PASSWORD})),
        )
        .await;
    assert_invalid(&r, &["new_password"]);
    assert_eq!(r.body["errors"][0]["code"], "password_reused");
});

backend_test!(recovery_bad_input, |app| async move {
    let r = app
        .send(Req::post("/v1/auth/password/forgot").json(json!({"email": "nope"})))
        .await;
    assert_invalid(&r, &["email"]);
    let r = app
        .send(Req::post("/v1/auth/password/reset").json(json!({})))
        .await;
    assert_invalid(&r, &["token", "new_password"]);
    let r = reset(&app, "uosrst_forged", NEW).await;
    assert_invalid(&r, &["token"]);
    let admin = app.admin_token().await;
    let r = app
        .send(Req::post("/v1/password-resets/not-a-uuid/approve").token(&admin))
        .await;
    assert_invalid(&r, &["id"]);
    let r = app
        .send(
            Req::post(format!(
                "/v1/password-resets/{}/approve",
                uuid::Uuid::now_v7()
            ))
            .token(&admin),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    // Anonymous callers cannot list approvals.
    let r = app.send(Req::get("/v1/password-resets")).await;
    assert_problem(&r, 401, "unauthenticated");
    assert!(app.mails().is_empty());
});

backend_test!(
    an_expired_reset_token_is_refused,
    config = [("service.reset_token_ttl_secs", json!(1))],
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        app.add_member(&admin, "acme", "bob@example.com", &["member"])
            .await;
        let r = forgot(&app, "bob@example.com").await;
        assert_status(&r, 202);
        let token = token_in(&app.wait_for_mails(1).await[0].text);
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let r = reset(&app, &token, NEW).await;
        assert_invalid(&r, &["token"]);
        app.login("bob@example.com", PASSWORD).await;
    }
);
