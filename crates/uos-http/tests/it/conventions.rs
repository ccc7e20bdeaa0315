//! The conventions every endpoint follows: request ids, problem+json with every bad field, bad
//! bodies and queries changing nothing, ETags and `If-Match`, `Idempotency-Key`.

use super::*;

/// A small world to aim bad requests at: org `acme` (admin is owner), member bob, a custom
/// role `support` and a pending invite.
struct World {
    admin: String,
    bob_id: String,
    bob: String,
    invite_id: String,
}

async fn world(app: &TestApp) -> World {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let (bob_id, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["member"])
        .await;
    let r = app
        .send(
            Req::post("/v1/orgs/acme/roles")
                .token(&admin)
                .json(json!({"name": "support", "permissions": ["invites:read"]})),
        )
        .await;
    assert_status(&r, 201);
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&admin)
                .json(json!({"email": "carol@example.com", "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);
    let invite_id = r.body["id"].as_str().unwrap().to_string();
    World {
        admin,
        bob_id,
        bob,
        invite_id,
    }
}

/// What the bad requests must leave untouched.
async fn observable_state(app: &TestApp, w: &World) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/orgs/acme",
        "/v1/orgs/acme/roles/support",
        "/v1/orgs/acme/invites",
        "/v1/orgs/acme/users",
        "/v1/orgs",
        "/v1/users",
    ] {
        out.push(get_ok(app, &w.admin, path).await);
    }
    out.push(get_ok(app, &w.bob, "/v1/me").await);
    out.push(get_ok(app, &w.bob, "/v1/me/preferences").await);
    out
}

backend_test!(request_id_is_echoed_or_generated, |app| async move {
    let r = app
        .send(Req::get("/healthz").header("x-request-id", "client-chosen-id-42"))
        .await;
    assert_status(&r, 200);
    assert_eq!(
        r.header("x-request-id"),
        Some("client-chosen-id-42"),
        "a sent X-Request-Id is echoed"
    );

    let r = app.send(Req::get("/healthz")).await;
    let generated = r
        .header("x-request-id")
        .expect("an X-Request-Id is generated when none is sent");
    assert!(!generated.is_empty());
    let again = app.send(Req::get("/healthz")).await;
    assert_ne!(
        again.header("x-request-id"),
        Some(generated),
        "each request gets its own id"
    );

    // Error bodies carry the same id as the header, sent or generated.
    let r = app
        .send(Req::get("/v1/me").header("x-request-id", "err-id-1"))
        .await;
    assert_problem(&r, 401, "unauthenticated");
    assert_eq!(r.body["request_id"], "err-id-1");
    let r = app.send(Req::get("/v1/me")).await;
    assert_problem(&r, 401, "unauthenticated");

    // An id that is unfit for logs (too long) is replaced, not echoed.
    let long = "x".repeat(300);
    let r = app
        .send(Req::get("/healthz").header("x-request-id", &long))
        .await;
    assert_ne!(r.header("x-request-id"), Some(long.as_str()));
    assert!(r.header("x-request-id").is_some());
});

backend_test!(unknown_route_and_method_are_problems, |app| async move {
    let r = app.send(Req::get("/v1/nope")).await;
    assert_problem(&r, 404, "not_found");
    let admin = app.admin_token().await;
    let r = app
        .send(Req::put("/v1/orgs").token(&admin).json(json!({})))
        .await;
    assert_problem(&r, 405, "method_not_allowed");
});

backend_test!(
    every_problem_type_resolves_to_its_entry,
    config = [("public_url", json!("https://id.example.com/"))],
    |app| async move {
        // The `type` of a real answer is the deployment's page of its code...
        let r = app.send(Req::get("/v1/nope")).await;
        assert_problem(&r, 404, "not_found");
        assert_eq!(r.body["type"], "https://id.example.com/errors/not_found");
        // ...and every code's page is served, naming the code, its status and title.
        for code in uos_http::error_code::ErrorCode::ALL {
            let uri = code.type_uri("https://id.example.com");
            let path = uri.strip_prefix("https://id.example.com").unwrap();
            let r = app.send(Req::get(path)).await;
            assert_status(&r, 200);
            assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
            for part in [
                format!("<h1>{}</h1>", code.as_str()),
                format!("<p>{} ", code.status().as_u16()),
                code.title().to_string(),
            ] {
                assert!(r.text.contains(&part), "{path} lacks {part:?}: {}", r.text);
            }
        }
        let r = app.send(Req::get("/errors/no_such_code")).await;
        assert_problem(&r, 404, "not_found");
    }
);

backend_test!(
    bad_bodies_name_every_bad_field_and_change_nothing,
    |app| async move {
        let w = world(&app).await;
        let before = observable_state(&app, &w).await;
        let audit_before = audit_changes(&app).await;
        let bob_id = w.bob_id.clone();

        // (request, token, fields that must be named)
        let cases: Vec<(Req, Option<&str>, Vec<&str>)> = vec![
        (Req::post("/v1/auth/login").json(json!({"email": "nope", "password": 5, "extra": 1})), None, vec!["email", "password", "extra"]),
        (Req::post("/v1/auth/login").json(json!({})), None, vec!["email", "password"]),
        (Req::patch("/v1/me").json(json!({"display_name": "", "locale": 5, "timezone": "Not A Zone", "extra": true})), Some(w.bob.as_str()), vec!["display_name", "locale", "timezone", "extra"]),
        (Req::post("/v1/me/password").json(json!({"current_password": 1, "new_password": [], "extra": 1})), Some(w.bob.as_str()), vec!["current_password", "new_password", "extra"]),
        (Req::post("/v1/me/password").json(json!({})), Some(w.bob.as_str()), vec!["current_password", "new_password"]),
        (Req::post("/v1/orgs").json(json!({"slug": "Bad Slug!", "display_name": 7, "owner_email": "not-an-email", "extra": 1})), Some(w.admin.as_str()), vec!["slug", "display_name", "owner_email", "extra"]),
        (Req::post("/v1/orgs").json(json!({"slug": "-x", "display_name": ""})), Some(w.admin.as_str()), vec!["slug", "display_name"]),
        (Req::patch("/v1/orgs/acme").json(json!({"display_name": "", "extra": 1})), Some(w.admin.as_str()), vec!["display_name", "extra"]),
        (Req::patch(format!("/v1/users/{bob_id}")).json(json!({"display_name": 3, "locale": "??", "timezone": "", "extra": 1})), Some(w.admin.as_str()), vec!["display_name", "locale", "timezone", "extra"]),
        (Req::post(format!("/v1/users/{bob_id}/status")).json(json!({"status": "frozen", "reason": 5, "extra": 1})), Some(w.admin.as_str()), vec!["status", "reason", "extra"]),
        (Req::post(format!("/v1/users/{bob_id}/status")).json(json!({"status": "suspended", "reason": "r".repeat(501)})), Some(w.admin.as_str()), vec!["reason"]),
        (Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles")).json(json!({"roles": "admin", "extra": 1})), Some(w.admin.as_str()), vec!["roles", "extra"]),
        (Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles")).json(json!({"roles": []})), Some(w.admin.as_str()), vec!["roles"]),
        (Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles")).json(json!({"roles": ["member", "no-such-role"]})), Some(w.admin.as_str()), vec!["roles[1]"]),
        (Req::post("/v1/orgs/acme/invites").json(json!({"email": "bad", "roles": [1], "expires_in_hours": "soon", "extra": 1})), Some(w.admin.as_str()), vec!["email", "roles", "expires_in_hours", "extra"]),
        (Req::post("/v1/orgs/acme/invites").json(json!({"email": "dave@example.com", "roles": ["member"], "expires_in_hours": 0})), Some(w.admin.as_str()), vec!["expires_in_hours"]),
        (Req::post("/v1/orgs/acme/invites").json(json!({"email": "dave@example.com", "roles": ["member"], "expires_in_hours": 721})), Some(w.admin.as_str()), vec!["expires_in_hours"]),
        (Req::post("/v1/invites/accept").json(json!({"token": 5, "display_name": "", "password": 7, "extra": 1})), None, vec!["token", "display_name", "password", "extra"]),
        (Req::post("/v1/invites/accept").json(json!({"token": ""})), None, vec!["token"]),
        (Req::post("/v1/orgs/acme/roles").json(json!({"name": "Bad Name", "permissions": ["nope:nope"], "inherits": "member", "description": 5, "extra": 1})), Some(w.admin.as_str()), vec!["name", "permissions", "inherits", "description", "extra"]),
        (Req::post("/v1/orgs/acme/roles").json(json!({"name": "fresh"})), Some(w.admin.as_str()), vec!["permissions"]),
        (Req::patch("/v1/orgs/acme/roles/support").json(json!({"permissions": ["nope"], "inherits": [5], "description": [], "extra": 1})), Some(w.admin.as_str()), vec!["permissions", "inherits", "description", "extra"]),
        // Failures that need no lookup are reported together with the parse failures.
        (Req::post(format!("/v1/users/{bob_id}/status")).json(json!({"status": "frozen", "reason": "r".repeat(501)})), Some(w.admin.as_str()), vec!["status", "reason"]),
        (Req::post("/v1/orgs/acme/invites").json(json!({"email": "bad", "roles": [], "expires_in_hours": 0})), Some(w.admin.as_str()), vec!["email", "roles", "expires_in_hours"]),
        (Req::post("/v1/orgs/acme/invites").json(json!({"email": "dave@example.com", "roles": vec!["member"; 21], "expires_in_hours": 721})), Some(w.admin.as_str()), vec!["roles", "expires_in_hours"]),
        (Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles")).json(json!({"roles": [], "extra": 1})), Some(w.admin.as_str()), vec!["roles", "extra"]),
        (Req::post("/v1/invites/accept").json(json!({"token": "", "display_name": ""})), None, vec!["token", "display_name"]),
        (Req::post("/v1/orgs/acme/roles").json(json!({"name": "Bad Name", "permissions": [], "description": "d".repeat(501)})), Some(w.admin.as_str()), vec!["name", "description"]),
        (Req::patch("/v1/orgs/acme/roles/support").json(json!({"permissions": ["nope"], "description": "bell\u{7}"})), Some(w.admin.as_str()), vec!["permissions", "description"]),
        (Req::put("/v1/me/preferences").json(json!([1, 2])), Some(w.bob.as_str()), vec!["body"]),
        (Req::put("/v1/me/preferences").json(json!({"blob": "x".repeat(17 * 1024)})), Some(w.bob.as_str()), vec!["body"]),
    ];
        for (req, token, fields) in cases {
            let label = format!("{req:?}");
            let req = match token {
                Some(t) => req.token(t),
                None => req,
            };
            let r = app.send(req).await;
            assert!(
                !r.status.is_server_error(),
                "never 5xx ({label}): {}",
                r.text
            );
            assert_eq!(r.status, 400, "{label}: {}", r.text);
            assert_invalid(&r, &fields);
        }

        // Malformed JSON, a non-object and a non-JSON content type, on every endpoint with a body.
        let body_endpoints: Vec<(&str, String, Option<&str>)> = vec![
            ("POST", "/v1/auth/login".into(), None),
            ("PATCH", "/v1/me".into(), Some(w.bob.as_str())),
            ("PUT", "/v1/me/preferences".into(), Some(w.bob.as_str())),
            ("POST", "/v1/me/password".into(), Some(w.bob.as_str())),
            ("POST", "/v1/orgs".into(), Some(w.admin.as_str())),
            ("PATCH", "/v1/orgs/acme".into(), Some(w.admin.as_str())),
            (
                "PATCH",
                format!("/v1/users/{bob_id}"),
                Some(w.admin.as_str()),
            ),
            (
                "POST",
                format!("/v1/users/{bob_id}/status"),
                Some(w.admin.as_str()),
            ),
            (
                "PUT",
                format!("/v1/orgs/acme/users/{bob_id}/roles"),
                Some(w.admin.as_str()),
            ),
            (
                "POST",
                "/v1/orgs/acme/invites".into(),
                Some(w.admin.as_str()),
            ),
            ("POST", "/v1/invites/accept".into(), None),
            ("POST", "/v1/orgs/acme/roles".into(), Some(w.admin.as_str())),
            (
                "PATCH",
                "/v1/orgs/acme/roles/support".into(),
                Some(w.admin.as_str()),
            ),
        ];
        let huge = format!("{{\"display_name\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
        for (method, path, token) in &body_endpoints {
            let with = |body: Vec<u8>, ct: &str| {
                let req = Req::new(method.parse().unwrap(), path.clone()).raw(body, ct);
                match token {
                    Some(t) => req.token(t),
                    None => req,
                }
            };
            let r = app
                .send(with(b"{\"slug\": ".to_vec(), "application/json"))
                .await;
            assert_invalid(&r, &["body"]);
            assert_eq!(
                r.body["errors"][0]["code"], "malformed_json",
                "{method} {path}: {}",
                r.text
            );
            if *path != "/v1/me/preferences" {
                let r = app.send(with(b"[1, 2]".to_vec(), "application/json")).await;
                assert_invalid(&r, &["body"]);
            }
            let r = app.send(with(b"{}".to_vec(), "text/plain")).await;
            assert_invalid(&r, &["Content-Type"]);
            // Over 1 MiB without a declared length (read with a limit) ...
            let r = app
                .send(with(huge.clone().into_bytes(), "application/json"))
                .await;
            assert_problem(&r, 413, "payload_too_large");
            // ... and with one (refused before reading).
            let len = huge.len().to_string();
            let r = app
                .send(
                    with(huge.clone().into_bytes(), "application/json")
                        .header("content-length", &len),
                )
                .await;
            assert_problem(&r, 413, "payload_too_large");
            // With an Idempotency-Key the body is read by the idempotency layer first.
            if *method == "POST" && token.is_some() {
                let r = app
                    .send(
                        with(huge.clone().into_bytes(), "application/json")
                            .header("idempotency-key", "big-body"),
                    )
                    .await;
                assert_problem(&r, 413, "payload_too_large");
            }
        }

        assert_eq!(
            audit_changes(&app).await,
            audit_before,
            "bad requests must not write audit events"
        );
        assert_eq!(
            observable_state(&app, &w).await,
            before,
            "bad requests must change nothing"
        );
    }
);

backend_test!(bad_queries_name_every_bad_parameter, |app| async move {
    let w = world(&app).await;
    let before = observable_state(&app, &w).await;
    let lists = [
        "/v1/orgs",
        "/v1/users",
        "/v1/orgs/acme/users",
        "/v1/orgs/acme/invites",
        "/v1/orgs/acme/roles",
        "/v1/audit/events",
    ];
    for list in lists {
        let r = app
            .send(Req::get(format!("{list}?limit=1000&page_token=bogus&nope=1")).token(&w.admin))
            .await;
        assert_invalid(&r, &["limit", "page_token", "nope"]);
        for limit in ["0", "101", "-1", "abc", "1.5"] {
            let r = app
                .send(Req::get(format!("{list}?limit={limit}")).token(&w.admin))
                .await;
            assert_invalid(&r, &["limit"]);
        }
        let r = app
            .send(Req::get(format!("{list}?limit=1&limit=2")).token(&w.admin))
            .await;
        assert_invalid(&r, &["limit"]);
        // Limits at both ends of the range are fine.
        for limit in ["1", "100"] {
            let r = app
                .send(Req::get(format!("{list}?limit={limit}")).token(&w.admin))
                .await;
            assert_eq!(r.status, 200, "{list}?limit={limit}: {}", r.text);
        }
    }

    // A page token is only valid for the list that issued it.
    let r = app
        .send(Req::get("/v1/users?limit=1").token(&w.admin))
        .await;
    let users_token = r.body["next_page_token"]
        .as_str()
        .expect("two users, so a next page")
        .to_string();
    let r = app
        .send(Req::get(format!("/v1/orgs?page_token={users_token}")).token(&w.admin))
        .await;
    assert_invalid(&r, &["page_token"]);
    let r = app
        .send(Req::get(format!("/v1/users?page_token={users_token}")).token(&w.admin))
        .await;
    assert_status(&r, 200);

    // Filters are checked as well, all at once.
    let r = app
        .send(Req::get("/v1/users?status=frozen&q=".to_string() + &"a".repeat(300)).token(&w.admin))
        .await;
    assert_invalid(&r, &["status", "q"]);
    let r = app
        .send(Req::get("/v1/orgs?include_deleted=maybe").token(&w.admin))
        .await;
    assert_invalid(&r, &["include_deleted"]);
    let r = app
        .send(Req::get("/v1/orgs/acme/users?status=gone&limit=0").token(&w.admin))
        .await;
    assert_invalid(&r, &["status", "limit"]);
    let r = app
        .send(
            Req::get("/v1/audit/events?since=yesterday&until=later&org=Bad!&actor=&limit=1000")
                .token(&w.admin),
        )
        .await;
    assert_invalid(&r, &["since", "until", "org", "actor", "limit"]);

    assert_eq!(
        observable_state(&app, &w).await,
        before,
        "bad queries must change nothing"
    );
});

backend_test!(etag_on_single_get_and_every_write, |app| async move {
    let w = world(&app).await;
    let bob_id = &w.bob_id;
    // (write, the GET that must then show the same ETag)
    let writes: Vec<(Req, String, &str)> = vec![
        (
            Req::post("/v1/orgs").json(json!({"slug": "beta", "display_name": "Beta"})),
            "/v1/orgs/beta".into(),
            w.admin.as_str(),
        ),
        (
            Req::patch("/v1/orgs/acme").json(json!({"display_name": "Acme 2"})),
            "/v1/orgs/acme".into(),
            w.admin.as_str(),
        ),
        (
            Req::post("/v1/orgs/beta/suspend"),
            "/v1/orgs/beta".into(),
            w.admin.as_str(),
        ),
        (
            Req::post("/v1/orgs/beta/resume"),
            "/v1/orgs/beta".into(),
            w.admin.as_str(),
        ),
        (
            Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                .json(json!({"roles": ["member", "support"]})),
            format!("/v1/orgs/acme/users/{bob_id}"),
            w.admin.as_str(),
        ),
        (
            Req::post(format!("/v1/orgs/acme/users/{bob_id}/suspend")),
            format!("/v1/orgs/acme/users/{bob_id}"),
            w.admin.as_str(),
        ),
        (
            Req::post(format!("/v1/orgs/acme/users/{bob_id}/reactivate")),
            format!("/v1/orgs/acme/users/{bob_id}"),
            w.admin.as_str(),
        ),
        (
            Req::patch("/v1/orgs/acme/roles/support").json(json!({"description": "helps"})),
            "/v1/orgs/acme/roles/support".into(),
            w.admin.as_str(),
        ),
        (
            Req::patch("/v1/me").json(json!({"display_name": "Bob"})),
            "/v1/me".into(),
            w.bob.as_str(),
        ),
        (
            Req::put("/v1/me/preferences").json(json!({"theme": "dark"})),
            "/v1/me/preferences".into(),
            w.bob.as_str(),
        ),
        (
            Req::patch(format!("/v1/users/{bob_id}")).json(json!({"timezone": "Europe/Zurich"})),
            format!("/v1/users/{bob_id}"),
            w.admin.as_str(),
        ),
    ];
    for (req, get_path, token) in writes {
        let label = format!("{req:?}");
        let r = app.send(req.token(token)).await;
        assert!(r.status.is_success(), "{label}: {}", r.text);
        let written = r
            .header("etag")
            .unwrap_or_else(|| panic!("write response has an ETag: {label}"))
            .to_string();
        let g = app.send(Req::get(get_path.clone()).token(token)).await;
        assert_status(&g, 200);
        assert_eq!(
            g.etag(),
            written,
            "GET {get_path} shows the ETag of the last write ({label})"
        );
    }
});

backend_test!(
    stale_if_match_is_412_and_changes_nothing,
    |app| async move {
        let w = world(&app).await;
        let bob_id = w.bob_id.clone();
        // Bump every resource once so that "1" is stale everywhere.
        for req in [
            Req::patch("/v1/orgs/acme")
                .json(json!({"display_name": "Acme v2"}))
                .token(&w.admin),
            Req::patch("/v1/orgs/acme/roles/support")
                .json(json!({"description": "v2"}))
                .token(&w.admin),
            Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                .json(json!({"roles": ["member", "support"]}))
                .token(&w.admin),
            Req::patch("/v1/me")
                .json(json!({"display_name": "Bob v2"}))
                .token(&w.bob),
        ] {
            let r = app.send(req).await;
            assert_status(&r, 200);
        }
        let before = observable_state(&app, &w).await;
        let audit_before = audit_changes(&app).await;
        let stale = etag(1);
        let invite = format!("/v1/orgs/acme/invites/{}", w.invite_id);
        let cases: Vec<(Req, &str)> = vec![
            (
                Req::patch("/v1/orgs/acme").json(json!({"display_name": "lost update"})),
                w.admin.as_str(),
            ),
            (Req::delete("/v1/orgs/acme"), w.admin.as_str()),
            (Req::post("/v1/orgs/acme/suspend"), w.admin.as_str()),
            (
                Req::patch("/v1/orgs/acme/roles/support").json(json!({"description": "lost"})),
                w.admin.as_str(),
            ),
            (Req::delete("/v1/orgs/acme/roles/support"), w.admin.as_str()),
            (
                Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                    .json(json!({"roles": ["admin"]})),
                w.admin.as_str(),
            ),
            (
                Req::post(format!("/v1/orgs/acme/users/{bob_id}/suspend")),
                w.admin.as_str(),
            ),
            (
                Req::delete(format!("/v1/orgs/acme/users/{bob_id}")),
                w.admin.as_str(),
            ),
            (
                Req::patch("/v1/me").json(json!({"display_name": "lost"})),
                w.bob.as_str(),
            ),
            (
                Req::put("/v1/me/preferences").json(json!({"lost": true})),
                w.bob.as_str(),
            ),
            (
                Req::patch(format!("/v1/users/{bob_id}")).json(json!({"display_name": "lost"})),
                w.admin.as_str(),
            ),
            (
                Req::post(format!("/v1/users/{bob_id}/status"))
                    .json(json!({"status": "suspended"})),
                w.admin.as_str(),
            ),
            (Req::delete(format!("/v1/users/{bob_id}")), w.admin.as_str()),
        ];
        for (req, token) in cases {
            let label = format!("{req:?}");
            let r = app.send(req.token(token).header("if-match", &stale)).await;
            assert_eq!(r.status, 412, "stale If-Match on {label}: {}", r.text);
            assert_problem(&r, 412, "precondition_failed");
        }
        // The invite is at version 1, so "2" is the stale one there.
        let r = app
            .send(
                Req::delete(invite.clone())
                    .token(&w.admin)
                    .header("if-match", &etag(2)),
            )
            .await;
        assert_problem(&r, 412, "precondition_failed");

        assert_eq!(
            audit_changes(&app).await,
            audit_before,
            "a 412 writes nothing"
        );
        assert_eq!(
            observable_state(&app, &w).await,
            before,
            "a 412 changes nothing"
        );

        // The current ETag (and `*`) succeed; a malformed If-Match is a 400.
        let current = app
            .send(Req::get("/v1/orgs/acme").token(&w.admin))
            .await
            .etag();
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&w.admin)
                    .header("if-match", &current)
                    .json(json!({"display_name": "Acme v3"})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&w.admin)
                    .header("if-match", "*")
                    .json(json!({"display_name": "Acme v4"})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&w.admin)
                    .header("if-match", "W/nonsense")
                    .json(json!({"display_name": "x"})),
            )
            .await;
        assert_invalid(&r, &["If-Match"]);
    }
);

// RFC 9110 §13.1.1: a well-formed entity tag that is not the current one fails the
// precondition (412), whatever it looks like; only broken syntax is a bad request (400).
backend_test!(
    if_match_compares_entity_tags_as_rfc_9110_says,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let patch = |if_match: &str, name: &str| {
            Req::patch("/v1/orgs/acme")
                .token(&admin)
                .header("if-match", if_match)
                .json(json!({"display_name": name}))
        };
        let current = app
            .send(Req::get("/v1/orgs/acme").token(&admin))
            .await
            .etag();
        let version: i64 = current.trim_matches('"').parse().unwrap();
        let weak = format!("W/{current}");
        let padded = format!("\"0{version}\"");
        let unknown_list = format!("\"abc\", W/{current}, {}", etag(version + 1));
        for stale in [
            "\"abc\"",
            "\"\"",
            weak.as_str(),
            padded.as_str(),
            unknown_list.as_str(),
        ] {
            let r = app.send(patch(stale, "lost update")).await;
            assert_problem(&r, 412, "precondition_failed");
            assert_eq!(
                r.header("etag"),
                None,
                "a 412 for If-Match {stale} carries no ETag"
            );
        }
        let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_ne!(org["display_name"], "lost update", "a 412 changes nothing");

        // A list matches when any member does, in any position, with or without spaces.
        let list = format!("\"abc\",{current} , W/\"1\"");
        let r = app.send(patch(&list, "Acme v2")).await;
        assert_status(&r, 200);
        let current = r.etag();
        let r = app.send(patch("*", "Acme v3")).await;
        assert_status(&r, 200);
        assert_ne!(r.etag(), current, "the write went through");

        // `*` matches any existing resource, and no missing one.
        let r = app
            .send(
                Req::patch("/v1/orgs/nosuch")
                    .token(&admin)
                    .header("if-match", "*")
                    .json(json!({"display_name": "x"})),
            )
            .await;
        assert_problem(&r, 404, "not_found");

        for malformed in [
            "abc",
            "\"3",
            "3\"",
            "w/\"3\"",
            "\"3\" \"4\"",
            "*, \"3\"",
            "*, *",
            ",",
            "\"a\"b\"",
        ] {
            let r = app.send(patch(malformed, "x")).await;
            assert_eq!(
                r.status, 400,
                "If-Match {malformed} is malformed: {}",
                r.text
            );
            assert_invalid(&r, &["If-Match"]);
        }
    }
);

backend_test!(
    idempotent_replay_returns_first_response_and_does_nothing,
    |app| async move {
        let admin = app.admin_token().await;
        let body = json!({"slug": "idem", "display_name": "Idem"});
        let first = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "create-idem-1")
                    .json(body.clone()),
            )
            .await;
        assert_status(&first, 201);
        assert_eq!(
            first.header("idempotent-replayed"),
            None,
            "the first response is not a replay"
        );
        let audit = audit_changes(&app).await;

        for _ in 0..2 {
            let again = app
                .send(
                    Req::post("/v1/orgs")
                        .token(&admin)
                        .header("idempotency-key", "create-idem-1")
                        .json(body.clone()),
                )
                .await;
            assert_status(&again, 201);
            assert_eq!(
                again.header("idempotent-replayed"),
                Some("true"),
                "a replay says so"
            );
            assert_eq!(again.body, first.body, "a replay returns the first body");
        }
        assert_eq!(
            audit_changes(&app).await,
            audit,
            "a replay performs nothing"
        );
        let orgs = all_pages(&app, &admin, "/v1/orgs", 100).await;
        assert_eq!(orgs.len(), 1, "only one org created: {orgs:?}");

        // Same key, different body: 422, and nothing is created.
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "create-idem-1")
                    .json(json!({"slug": "other", "display_name": "Other"})),
            )
            .await;
        assert_problem(&r, 422, "idempotency_key_reused");
        // The same body on another path is another request too.
        let r = app
            .send(
                Req::post("/v1/orgs/idem/suspend")
                    .token(&admin)
                    .header("idempotency-key", "create-idem-1")
                    .json(body.clone()),
            )
            .await;
        assert_problem(&r, 422, "idempotency_key_reused");
        let r = app.send(Req::get("/v1/orgs/other").token(&admin)).await;
        assert_problem(&r, 404, "not_found");
        assert_eq!(audit_changes(&app).await, audit);

        // A state-change POST without a body replays too.
        let s1 = app
            .send(
                Req::post("/v1/orgs/idem/suspend")
                    .token(&admin)
                    .header("idempotency-key", "suspend-1"),
            )
            .await;
        assert_status(&s1, 200);
        let audit = audit_changes(&app).await;
        let s2 = app
            .send(
                Req::post("/v1/orgs/idem/suspend")
                    .token(&admin)
                    .header("idempotency-key", "suspend-1"),
            )
            .await;
        assert_status(&s2, 200);
        assert_eq!(s2.header("idempotent-replayed"), Some("true"));
        assert_eq!(s2.body, s1.body);
        assert_eq!(audit_changes(&app).await, audit);
    }
);

backend_test!(
    failed_request_does_not_burn_its_idempotency_key,
    |app| async move {
        let admin = app.admin_token().await;
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "retry-me")
                    .json(json!({"slug": "Bad!", "display_name": "x"})),
            )
            .await;
        assert_invalid(&r, &["slug"]);
        // The corrected request with the same key runs (it is not a "different request" replay).
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "retry-me")
                    .json(json!({"slug": "good", "display_name": "x"})),
            )
            .await;
        assert_status(&r, 201);
        assert_eq!(r.header("idempotent-replayed"), None);
    }
);

backend_test!(
    idempotency_keys_are_scoped_to_the_caller,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "base").await;
        let (_, bob) = app
            .add_member(&admin, "base", "bob@example.com", &["member"])
            .await;

        let a = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "shared-key")
                    .json(json!({"slug": "one", "display_name": "One"})),
            )
            .await;
        assert_status(&a, 201);
        // Bob's same key is his own: a different body runs instead of being refused or replayed.
        let b = app
            .send(
                Req::post("/v1/orgs")
                    .token(&bob)
                    .header("idempotency-key", "shared-key")
                    .json(json!({"slug": "two", "display_name": "Two"})),
            )
            .await;
        assert_status(&b, 201);
        assert_eq!(
            b.header("idempotent-replayed"),
            None,
            "another caller's key does not replay: {}",
            b.text
        );
        assert_eq!(b.body["slug"], "two");
        // And the same body as the admin's under bob's key is bob's request, not the admin's replay.
        let b2 = app
            .send(
                Req::post("/v1/orgs")
                    .token(&bob)
                    .header("idempotency-key", "shared-key")
                    .json(json!({"slug": "two", "display_name": "Two"})),
            )
            .await;
        assert_eq!(b2.header("idempotent-replayed"), Some("true"));
        assert_eq!(b2.body, b.body);
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "shared-key")
                    .json(json!({"slug": "two", "display_name": "Two"})),
            )
            .await;
        assert_problem(&r, 422, "idempotency_key_reused");
    }
);

backend_test!(invalid_idempotency_key_is_400, |app| async move {
    let admin = app.admin_token().await;
    let audit = audit_changes(&app).await;
    for key in ["k".repeat(256), "k".repeat(300), String::new()] {
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", &key)
                    .json(json!({"slug": "never", "display_name": "Never"})),
            )
            .await;
        assert_invalid(&r, &["Idempotency-Key"]);
    }
    // 255 printable characters are fine.
    let r = app
        .send(
            Req::post("/v1/orgs")
                .token(&admin)
                .header("idempotency-key", &"k".repeat(255))
                .json(json!({"slug": "ok-key", "display_name": "Ok"})),
        )
        .await;
    assert_status(&r, 201);
    let r = app.send(Req::get("/v1/orgs/never").token(&admin)).await;
    assert_problem(&r, 404, "not_found");
    assert!(audit_changes(&app).await > audit);
});
