//! TOTP second factor: enrolment, confirmation with recovery codes, login with `mfa_required`,
//! single use of codes, mfa_tokens and recovery codes, disabling, secrets at rest.

use super::*;
use uos_testkit::totp_code;

async fn login_raw(app: &TestApp, email: &str, password: &str) -> TestResponse {
    app.send(Req::post("/v1/auth/login").json(json!({"email": email, "password": password})))
        .await
}

async fn mfa(app: &TestApp, mfa_token: &str, code: &str) -> TestResponse {
    app.send(Req::post("/v1/auth/mfa").json(json!({"mfa_token": mfa_token, "code": code})))
        .await
}

/// A six-digit code that is valid for none of the accepted steps.
fn wrong_code(secret: &str) -> String {
    let valid: Vec<String> = (-1..=1).map(|s| totp_code(secret, s)).collect();
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// Password step of a login of an MFA user: the mfa_token.
async fn password_step(app: &TestApp) -> String {
    let r = login_raw(app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_problem(&r, 401, "mfa_required");
    let t = r.body["mfa_token"].as_str().expect("mfa_token").to_string();
    assert!(t.starts_with("uosmfa_"), "{t}");
    t
}

/// Enrol and confirm TOTP for the admin: (base32 secret, recovery codes).
async fn enable_totp(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let r = app.send(Req::post("/v1/me/mfa/totp").token(token)).await;
    assert_status(&r, 200);
    let secret = r.body["secret"].as_str().unwrap().to_string();
    let uri = r.body["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    let r = app
        .send(
            Req::post("/v1/me/mfa/totp/confirm")
                .token(token)
                .json(json!({"code": totp_code(&secret, 0)})),
        )
        .await;
    assert_status(&r, 200);
    let codes: Vec<String> = r.body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

backend_test!(totp_login_flow_and_single_use, |app| async move {
    let admin = app.admin_token().await;
    // An unconfirmed enrolment does not change logins.
    let r = app.send(Req::post("/v1/me/mfa/totp").token(&admin)).await;
    assert_status(&r, 200);
    let pending = r.body["secret"].as_str().unwrap().to_string();
    let r = login_raw(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_status(&r, 200);
    let r = app
        .send(
            Req::post("/v1/me/mfa/totp/confirm")
                .token(&admin)
                .json(json!({"code": wrong_code(&pending)})),
        )
        .await;
    assert_invalid(&r, &["code"]);

    let (secret, codes) = enable_totp(&app, &admin).await;

    // The confirming code's step is used up: the same code cannot log in.
    let t = password_step(&app).await;
    let r = mfa(&app, &t, &totp_code(&secret, 0)).await;
    assert_problem(&r, 401, "invalid_code");
    // ... and that consumed the mfa_token.
    let r = mfa(&app, &t, &totp_code(&secret, 1)).await;
    assert_problem(&r, 401, "invalid_mfa_token");

    // The next step's code works once.
    let t = password_step(&app).await;
    let r = mfa(&app, &t, &totp_code(&secret, 1)).await;
    assert_status(&r, 200);
    assert!(r.body["access_token"].is_string() && r.body["refresh_token"].is_string());
    get_ok(&app, r.body["access_token"].as_str().unwrap(), "/v1/me").await;
    let t2 = password_step(&app).await;
    let r = mfa(&app, &t2, &totp_code(&secret, 1)).await;
    assert_problem(&r, 401, "invalid_code");

    // A recovery code works once, in any case and with spaces.
    let t = password_step(&app).await;
    let shouted = codes[0].to_uppercase().replace('-', " ");
    let r = mfa(&app, &t, &shouted).await;
    assert_status(&r, 200);
    let t = password_step(&app).await;
    let r = mfa(&app, &t, &codes[0]).await;
    assert_problem(&r, 401, "invalid_code");

    // A forged mfa_token is refused like a used one.
    let r = mfa(&app, "uosmfa_forged", &codes[1]).await;
    assert_problem(&r, 401, "invalid_mfa_token");

    // Enrolling again while enabled is a conflict; disabling needs a right code.
    let r = app.send(Req::post("/v1/me/mfa/totp").token(&admin)).await;
    assert_problem(&r, 409, "conflict");
    let r = app
        .send(
            Req::delete("/v1/me/mfa/totp")
                .token(&admin)
                .json(json!({"code": "12345678"})),
        )
        .await;
    assert_invalid(&r, &["code"]);
    let r = app
        .send(
            Req::delete("/v1/me/mfa/totp")
                .token(&admin)
                .json(json!({"code": codes[1]})),
        )
        .await;
    assert_status(&r, 204);
    let r = login_raw(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_status(&r, 200);
});

backend_test!(
    totp_secrets_are_encrypted_and_never_audited,
    |app| async move {
        let admin = app.admin_token().await;
        let (secret, codes) = enable_totp(&app, &admin).await;
        let store = app.state.svc.store().clone();
        let mut r = store.read().await.unwrap();
        let me = r
            .get_user_by_email(&uos_domain::Email::parse(ADMIN_EMAIL).unwrap())
            .await
            .unwrap()
            .unwrap();
        let stored = r.get_totp(me.id).await.unwrap().unwrap();
        assert!(
            stored.secret_enc.starts_with("uosenc:"),
            "{}",
            stored.secret_enc
        );
        assert!(!stored.secret_enc.contains(&secret));
        drop(r);
        let audit = app
            .send(Req::get("/v1/audit/events?limit=100").token(&admin))
            .await;
        assert_status(&audit, 200);
        assert!(audit.text.contains("mfa.totp_enabled"), "{}", audit.text);
        assert!(!audit.text.contains(&secret), "secret in the audit trail");
        for c in &codes {
            assert!(
                !audit.text.contains(c.as_str()),
                "recovery code in the audit trail"
            );
        }
    }
);

backend_test!(mfa_bad_input_changes_nothing, |app| async move {
    let r = app.send(Req::post("/v1/auth/mfa").json(json!({}))).await;
    assert_invalid(&r, &["mfa_token", "code"]);
    let r = app
        .send(Req::post("/v1/auth/mfa").json(json!({"mfa_token": "", "code": "x".repeat(40)})))
        .await;
    assert_invalid(&r, &["mfa_token", "code"]);
    let r = app.send(Req::post("/v1/me/mfa/totp")).await;
    assert_problem(&r, 401, "unauthenticated");
    let admin = app.admin_token().await;
    let r = app
        .send(
            Req::post("/v1/me/mfa/totp/confirm")
                .token(&admin)
                .json(json!({"code": "123456"})),
        )
        .await;
    assert_problem(&r, 409, "conflict");
    let r = app
        .send(
            Req::delete("/v1/me/mfa/totp")
                .token(&admin)
                .json(json!({"code": "123456"})),
        )
        .await;
    assert_problem(&r, 409, "conflict");
    let r = app
        .send(
            Req::post("/v1/me/mfa/totp/confirm")
                .token(&admin)
                .json(json!({"code": 5, "extra": 1})),
        )
        .await;
    assert_invalid(&r, &["code", "extra"]);
    // Nothing above enabled a second factor.
    let r = login_raw(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_status(&r, 200);
});

backend_test!(
    an_expired_mfa_token_is_refused,
    config = [("service.mfa_token_ttl_secs", json!(1))],
    |app| async move {
        let admin = app.admin_token().await;
        let (secret, _) = enable_totp(&app, &admin).await;
        let t = password_step(&app).await;
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let r = mfa(&app, &t, &totp_code(&secret, 1)).await;
        assert_problem(&r, 401, "invalid_mfa_token");
    }
);
