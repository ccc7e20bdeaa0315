//! Lockout and throttling: counted before checked (exact under parallel guesses), 429 with
//! Retry-After, identical for unknown emails, audited, lifted by an admin.

use super::*;

fn lockout_cfg(threshold: u64) -> Vec<(&'static str, Value)> {
    vec![(
        "service.lockout",
        json!({"threshold": threshold, "window_secs": 600, "base_lock_secs": 120, "max_lock_secs": 3600, "ip_threshold": 1000}),
    )]
}

async fn login_raw(app: &TestApp, email: &str, password: &str) -> TestResponse {
    app.send(Req::post("/v1/auth/login").json(json!({"email": email, "password": password})))
        .await
}

backend_test!(
    locks_at_threshold_and_admin_unlocks,
    config = lockout_cfg(3),
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let (bob, _) = app
            .add_member(&admin, "acme", "bob@example.com", &["member"])
            .await;
        for _ in 0..3 {
            let r = login_raw(&app, "bob@example.com", "wrong password here").await;
            assert_problem(&r, 401, "invalid_credentials");
        }
        // Locked: even the right password is refused now, with a Retry-After.
        let r = login_raw(&app, "bob@example.com", PASSWORD).await;
        assert_problem(&r, 429, "too_many_attempts");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=120).contains(&retry), "retry-after {retry}");

        // Only a platform admin may unlock.
        let (_, carol) = app
            .add_member(&admin, "acme", "carol@example.com", &["admin"])
            .await;
        let r = app
            .send(Req::post(format!("/v1/users/{bob}/unlock")).token(&carol))
            .await;
        assert_problem(&r, 403, "forbidden");
        let r = app
            .send(Req::post(format!("/v1/users/{bob}/unlock")).token(&admin))
            .await;
        assert_status(&r, 204);
        let r = login_raw(&app, "bob@example.com", PASSWORD).await;
        assert_status(&r, 200);

        let audit = app
            .send(Req::get("/v1/audit/events?limit=100").token(&admin))
            .await;
        for action in ["login.failed", "account.locked", "account.unlocked"] {
            assert!(audit.text.contains(action), "{action} not audited");
        }
        assert!(
            !audit.text.contains("wrong password here"),
            "password in the audit trail"
        );
    }
);

backend_test!(
    unknown_emails_lock_the_same_way,
    config = lockout_cfg(3),
    |app| async move {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..4 {
            known.push(login_raw(&app, ADMIN_EMAIL, "wrong password here").await);
            unknown.push(login_raw(&app, "nobody@example.com", "wrong password here").await);
        }
        for (k, u) in known.iter().zip(&unknown) {
            assert_eq!(k.status, u.status, "{} vs {}", k.text, u.text);
            assert_eq!(k.code(), u.code());
            assert_eq!(k.body["detail"], u.body["detail"]);
        }
        assert_problem(&unknown[3], 429, "too_many_attempts");
    }
);

backend_test!(
    a_right_password_starts_the_count_over,
    config = lockout_cfg(3),
    |app| async move {
        for _ in 0..2 {
            let r = login_raw(&app, ADMIN_EMAIL, "wrong password here").await;
            assert_problem(&r, 401, "invalid_credentials");
        }
        app.admin_token().await;
        for _ in 0..2 {
            let r = login_raw(&app, ADMIN_EMAIL, "wrong password here").await;
            assert_problem(&r, 401, "invalid_credentials");
        }
        app.admin_token().await;
    }
);

backend_test!(
    parallel_guesses_lock_at_exactly_the_threshold,
    config = lockout_cfg(5),
    |app| async move {
        let app = std::sync::Arc::new(app);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    login_raw(&app, ADMIN_EMAIL, "wrong password here")
                        .await
                        .status
                })
            })
            .collect();
        let mut checked = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap().as_u16() {
                401 => checked += 1,
                429 => refused += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        assert_eq!((checked, refused), (5, 95));
    }
);

backend_test!(
    wrong_second_factors_count_toward_the_lockout,
    config = lockout_cfg(3),
    |app| async move {
        let admin = app.admin_token().await;
        let r = app.send(Req::post("/v1/me/mfa/totp").token(&admin)).await;
        let secret = r.body["secret"].as_str().unwrap().to_string();
        let r = app
            .send(
                Req::post("/v1/me/mfa/totp/confirm")
                    .token(&admin)
                    .json(json!({"code": uos_testkit::totp_code(&secret, 0)})),
            )
            .await;
        assert_status(&r, 200);
        // Each password step and each code counts; only a complete login starts over. With a
        // threshold of 3: password (1), wrong code (2), password (3), and the next code is refused.
        for expect in ["invalid_code", "too_many_attempts"] {
            let r = login_raw(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
            assert_problem(&r, 401, "mfa_required");
            let t = r.body["mfa_token"].as_str().unwrap();
            let r = app
                .send(Req::post("/v1/auth/mfa").json(json!({"mfa_token": t, "code": "not-a-code"})))
                .await;
            assert_eq!(r.code(), expect, "{}", r.text);
        }
        let r = login_raw(&app, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_problem(&r, 429, "too_many_attempts");
    }
);
