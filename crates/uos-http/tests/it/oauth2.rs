//! OAuth2 for service accounts: the client-credentials grant (RFC 6749 §4.4) at
//! `/oauth2/token`, revocation (RFC 7009) at `/oauth2/revoke`, and how the tokens behave as
//! bearer credentials everywhere else. These endpoints answer with OAuth2 error bodies, not
//! problem+json.

use super::*;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

const FORM: &str = "application/x-www-form-urlencoded";
const SLUG: &str = "acme";

/// A service account with a client secret.
#[derive(Clone, Debug)]
struct Client {
    /// The account id.
    account: String,
    id: String,
    secret: String,
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

/// One value form-encoded, as RFC 6749 §2.3.1 wants `client_id` and `client_secret` before
/// they go into the Basic header.
fn form_value(v: &str) -> String {
    form(&[("x", v)])["x=".len()..].to_string()
}

/// `Authorization: Basic` for a client, per RFC 6749 §2.3.1.
fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_value(id), form_value(secret));
    format!("Basic {}", STANDARD.encode(raw))
}

async fn create_account(app: &TestApp, admin: &str, slug: &str, name: &str) -> String {
    let r = app
        .send(
            Req::post(format!("/v1/orgs/{slug}/service-accounts"))
                .token(admin)
                .json(json!({"name": name, "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);
    r.body["id"].as_str().unwrap().to_string()
}

async fn issue_secret(app: &TestApp, admin: &str, slug: &str, account: &str) -> Client {
    let r = app
        .send(
            Req::post(format!(
                "/v1/orgs/{slug}/service-accounts/{account}/client-secret"
            ))
            .token(admin),
        )
        .await;
    assert_status(&r, 201);
    let id = r.body["client_id"].as_str().unwrap().to_string();
    assert_eq!(id, account, "the client id is the account id");
    Client {
        account: account.to_string(),
        id,
        secret: r.body["client_secret"].as_str().unwrap().to_string(),
    }
}

/// An admin, the org `acme`, and a `member` service account of it with a client secret.
async fn setup(app: &TestApp) -> (String, Client) {
    let admin = app.admin_token().await;
    app.create_org(&admin, SLUG).await;
    let account = create_account(app, &admin, SLUG, "ci-deployer").await;
    let client = issue_secret(app, &admin, SLUG, &account).await;
    (admin, client)
}

/// POST a form to an OAuth2 endpoint, with an optional raw `Authorization` header.
async fn post_form(app: &TestApp, path: &str, auth: Option<&str>, body: &str) -> TestResponse {
    let mut req = Req::post(path).raw(body.to_string(), FORM);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    app.send(req).await
}

/// The token endpoint with HTTP Basic client authentication.
async fn grant_basic(app: &TestApp, c: &Client, scope: Option<&str>) -> TestResponse {
    let mut pairs = vec![("grant_type", "client_credentials")];
    if let Some(s) = scope {
        pairs.push(("scope", s));
    }
    post_form(
        app,
        "/oauth2/token",
        Some(&basic(&c.id, &c.secret)),
        &form(&pairs),
    )
    .await
}

/// A successful grant: the RFC 6749 §5.1 response; returns the access token.
#[track_caller]
fn assert_token(r: &TestResponse, scope: &str) -> String {
    assert_eq!(r.status, 200, "token response: {}", r.text);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.headers
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body["token_type"], "Bearer", "{}", r.text);
    assert!(r.body["expires_in"].as_u64().unwrap() > 0, "{}", r.text);
    assert_eq!(r.body["scope"], scope, "{}", r.text);
    assert!(
        r.body.get("refresh_token").is_none(),
        "no refresh token for client credentials (RFC 6749 §4.4.3): {}",
        r.text
    );
    r.body["access_token"].as_str().unwrap().to_string()
}

async fn token(app: &TestApp, c: &Client, scope: Option<&str>) -> String {
    let r = grant_basic(app, c, scope).await;
    assert_token(&r, scope.unwrap_or(ALL))
}

/// What `member` grants, space-separated in a stable order.
const ALL: &str = "org:read roles:read users:read";

/// An OAuth2 error body (RFC 6749 §5.2): JSON (not problem+json), exactly `error` and
/// `error_description`, never cached.
#[track_caller]
fn assert_oauth_error(r: &TestResponse, status: u16, error: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {error}, got: {}",
        r.text
    );
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "OAuth2 errors are application/json, got {ct:?}: {}",
        r.text
    );
    assert_eq!(r.body["error"], error, "{}", r.text);
    assert!(
        r.body["error_description"].is_string(),
        "error_description: {}",
        r.text
    );
    let keys: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys.len(),
        2,
        "only error and error_description: {}",
        r.text
    );
    assert_eq!(
        r.header("cache-control"),
        Some("no-store"),
        "{:?}",
        r.headers
    );
}

async fn whoami(app: &TestApp, token: &str) -> TestResponse {
    app.send(Req::get("/v1/auth/whoami").token(token)).await
}

/// The token authenticates right now.
async fn assert_works(app: &TestApp, token: &str) {
    let r = whoami(app, token).await;
    assert_status(&r, 200);
    assert_eq!(r.body["credential"], "client_credentials", "{}", r.text);
}

/// The token is refused right now.
async fn assert_dead(app: &TestApp, token: &str) {
    let r = whoami(app, token).await;
    assert_problem(&r, 401, "unauthenticated");
}

async fn revoke(app: &TestApp, c: &Client, token: &str) -> TestResponse {
    post_form(
        app,
        "/oauth2/revoke",
        Some(&basic(&c.id, &c.secret)),
        &form(&[("token", token)]),
    )
    .await
}

async fn introspect(app: &TestApp, caller: &str, token: &str) -> TestResponse {
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(caller)
                .json(json!({"token": token})),
        )
        .await;
    assert_status(&r, 200);
    r
}

backend_test!(grant_issues_a_scoped_bearer_token, |app| async move {
    let (admin, c) = setup(&app).await;
    let org = get_ok(&app, &admin, "/v1/orgs/acme").await;

    // HTTP Basic with a scope.
    let narrow = token(&app, &c, Some("users:read")).await;
    let r = whoami(&app, &narrow).await;
    assert_status(&r, 200);
    assert_eq!(r.body["kind"], "service_account", "{}", r.text);
    assert_eq!(r.body["id"], c.account.as_str(), "{}", r.text);
    assert_eq!(r.body["org_id"], org["id"], "{}", r.text);
    assert_eq!(r.body["credential"], "client_credentials", "{}", r.text);
    assert_eq!(r.body["permissions"], json!(["users:read"]), "{}", r.text);
    get_ok(&app, &narrow, "/v1/orgs/acme/users").await;
    // `member` allows roles:read, the scope does not.
    let r = app
        .send(Req::get("/v1/orgs/acme/roles").token(&narrow))
        .await;
    assert_problem(&r, 403, "forbidden");

    // No scope: everything the account's roles allow.
    let wide = token(&app, &c, None).await;
    let r = whoami(&app, &wide).await;
    assert_status(&r, 200);
    assert_eq!(
        r.body["permissions"],
        json!(["org:read", "roles:read", "users:read"]),
        "{}",
        r.text
    );
    get_ok(&app, &wide, "/v1/orgs/acme/roles").await;
    get_ok(&app, &wide, "/v1/orgs/acme/users").await;
    // Still nothing beyond the roles: writes are refused.
    let r = app
        .send(
            Req::post("/v1/orgs/acme/roles")
                .token(&wide)
                .json(json!({"name": "support", "permissions": ["invites:read"]})),
        )
        .await;
    assert_problem(&r, 403, "forbidden");

    // Several scopes, in any order and repeated: granted once each, in a stable order.
    let r = grant_basic(&app, &c, Some("users:read  org:read users:read")).await;
    assert_token(&r, "org:read users:read");

    // client_secret_post: credentials in the form instead of Basic.
    let r = post_form(
        &app,
        "/oauth2/token",
        None,
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
            ("scope", "org:read"),
        ]),
    )
    .await;
    let t = assert_token(&r, "org:read");
    get_ok(&app, &t, "/v1/orgs/acme").await;

    // The Basic header's parts are form-decoded (RFC 6749 §2.3.1): an over-encoded client id
    // is the same client.
    let encoded_id = c.id.replace('-', "%2D");
    let raw = format!("{encoded_id}:{}", c.secret);
    let r = post_form(
        &app,
        "/oauth2/token",
        Some(&format!("Basic {}", STANDARD.encode(raw))),
        &form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_token(&r, ALL);
    // A charset parameter on the content type is fine.
    let r = app
        .send(
            Req::post("/oauth2/token")
                .header("authorization", &basic(&c.id, &c.secret))
                .raw(
                    "grant_type=client_credentials",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                ),
        )
        .await;
    assert_token(&r, ALL);

    // Tokens are distinct and `at+jwt`.
    assert_ne!(narrow, wide);
    let header = URL_SAFE_NO_PAD
        .decode(narrow.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["typ"], "at+jwt");
});

backend_test!(token_endpoint_errors_are_oauth2_bodies, |app| async move {
    let (admin, c) = setup(&app).await;
    let cc = form(&[("grant_type", "client_credentials")]);
    let mut wrong = c.secret.clone();
    // Still a well-formed secret shape is not needed: any other value must fail the same way.
    wrong.replace_range(10..11, if &wrong[10..11] == "A" { "B" } else { "A" });
    let other = issue_secret(
        &app,
        &admin,
        SLUG,
        &create_account(&app, &admin, SLUG, "other").await,
    )
    .await;

    // Wrong secret, with Basic: 401 and a Basic challenge.
    let mut invalid_client_bodies = Vec::new();
    for secret in [wrong.as_str(), other.secret.as_str(), "nope", ""] {
        let r = post_form(&app, "/oauth2/token", Some(&basic(&c.id, secret)), &cc).await;
        assert_oauth_error(&r, 401, "invalid_client");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "Basic challenge: {:?}",
            r.headers
        );
        invalid_client_bodies.push(r.body);
    }
    // Wrong secret in the form: 401 too.
    let r = post_form(
        &app,
        "/oauth2/token",
        None,
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.id),
            ("client_secret", &wrong),
        ]),
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(
        r.header("www-authenticate").is_none(),
        "no Basic challenge when Basic was not used: {:?}",
        r.headers
    );
    invalid_client_bodies.push(r.body);
    // Unknown clients: the same answer as a wrong secret.
    let random = uuid::Uuid::now_v7().to_string();
    for id in [random.as_str(), "ci-deployer", "", "🦀"] {
        let r = post_form(&app, "/oauth2/token", Some(&basic(id, &c.secret)), &cc).await;
        assert_oauth_error(&r, 401, "invalid_client");
        invalid_client_bodies.push(r.body);
    }
    assert!(
        invalid_client_bodies.windows(2).all(|w| w[0] == w[1]),
        "unknown client and wrong secret look the same: {invalid_client_bodies:?}"
    );

    // Scope beyond the roles, or unknown: invalid_scope, and nothing issued.
    for scope in [
        "org:delete",
        "roles:write",
        "users:read roles:write",
        "admin",
    ] {
        let r = grant_basic(&app, &c, Some(scope)).await;
        assert_oauth_error(&r, 400, "invalid_scope");
    }
    // Malformed scope (characters RFC 6749 §3.3 excludes), or none at all: invalid_scope.
    for scope in [
        "users:read\"",
        "users\\read",
        "users:read\u{7f}",
        "usérs:read",
        "users:read\torg:read",
        "",
        "   ",
    ] {
        let r = grant_basic(&app, &c, Some(scope)).await;
        assert_oauth_error(&r, 400, "invalid_scope");
    }

    // Grant types.
    let auth = basic(&c.id, &c.secret);
    for gt in [
        "password",
        "authorization_code",
        "refresh_token",
        "CLIENT_CREDENTIALS",
    ] {
        let r = post_form(
            &app,
            "/oauth2/token",
            Some(&auth),
            &form(&[("grant_type", gt)]),
        )
        .await;
        assert_oauth_error(&r, 400, "unsupported_grant_type");
    }
    let r = post_form(
        &app,
        "/oauth2/token",
        Some(&auth),
        &form(&[("scope", "org:read")]),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    let r = post_form(&app, "/oauth2/token", Some(&auth), "").await;
    assert_oauth_error(&r, 400, "invalid_request");

    // Client authentication more than once, or half of it.
    let r = post_form(
        &app,
        "/oauth2/token",
        Some(&auth),
        &form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ]),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    let r = post_form(
        &app,
        "/oauth2/token",
        None,
        &form(&[("grant_type", "client_credentials"), ("client_id", &c.id)]),
    )
    .await;
    assert!(
        r.status == 400 || r.status == 401,
        "client_id without a secret: {}",
        r.text
    );
    assert!(r.body["error"].is_string(), "{}", r.text);
    // No client authentication at all.
    let r = post_form(&app, "/oauth2/token", None, &cc).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    assert!(
        ["invalid_request", "invalid_client"].contains(&r.body["error"].as_str().unwrap_or("")),
        "{}",
        r.text
    );

    // Repeated parameters (RFC 6749 §3.2).
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=org:read&scope=users:read",
    ] {
        let r = post_form(&app, "/oauth2/token", Some(&auth), body).await;
        assert_oauth_error(&r, 400, "invalid_request");
    }

    // Not a form.
    let r = app
        .send(
            Req::post("/oauth2/token")
                .header("authorization", &auth)
                .json(json!({"grant_type": "client_credentials"})),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request");
    let r = app
        .send(
            Req::post("/oauth2/token")
                .header("authorization", &auth)
                .raw("grant_type=client_credentials", "text/plain"),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request");

    // Malformed Basic headers: invalid_client with a challenge.
    let no_colon = format!("Basic {}", STANDARD.encode(&c.id));
    let not_utf8 = format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x']));
    let bad_escape = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:%zz{}", c.id, c.secret))
    );
    let bad_utf8_escape = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:%ff{}", c.id, c.secret))
    );
    // The parts of a Basic header are single form values: `&` and `=` in them are data, so
    // this client id is not the client's.
    let smuggled = format!(
        "Basic {}",
        STANDARD.encode(format!("junk&x={}:{}", c.id, c.secret))
    );
    let smuggled_secret = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:junk&x={}", c.id, c.secret))
    );
    for header in [
        "Basic",
        "Basic ",
        "Basic !!!not-base64!!!",
        no_colon.as_str(),
        not_utf8.as_str(),
        bad_escape.as_str(),
        bad_utf8_escape.as_str(),
        smuggled.as_str(),
        smuggled_secret.as_str(),
        "Bearer abc",
        "Digest username=x",
    ] {
        let r = post_form(&app, "/oauth2/token", Some(header), &cc).await;
        assert_oauth_error(&r, 401, "invalid_client");
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Basic")),
            "{header:?}: {:?}",
            r.headers
        );
    }

    // Only POST.
    let r = app.send(Req::get("/oauth2/token")).await;
    assert!(r.status == 405 || r.status == 404, "{}", r.text);

    // Nothing above was ever issued, audited or a server error; the real client still works.
    token(&app, &c, Some("users:read")).await;
});

backend_test!(
    a_new_secret_retires_the_old_and_disabling_stops_everything,
    |app| async move {
        let (admin, first) = setup(&app).await;
        let early = token(&app, &first, None).await;

        // A second secret: the first stops working at once, the second works.
        let second = issue_secret(&app, &admin, SLUG, &first.account).await;
        assert_ne!(first.secret, second.secret);
        let r = grant_basic(&app, &first, None).await;
        assert_oauth_error(&r, 401, "invalid_client");
        let r = post_form(
            &app,
            "/oauth2/token",
            None,
            &form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &first.id),
                ("client_secret", &first.secret),
            ]),
        )
        .await;
        assert_oauth_error(&r, 401, "invalid_client");
        let live = token(&app, &second, Some("users:read")).await;
        assert_works(&app, &live).await;
        // The old secret cannot revoke either.
        let r = revoke(&app, &first, &live).await;
        assert_oauth_error(&r, 401, "invalid_client");
        assert_works(&app, &live).await;

        // Disabled: no grant, and issued tokens stop at once.
        let path = format!("/v1/orgs/{SLUG}/service-accounts/{}", first.account);
        let r = app
            .send(
                Req::patch(&path)
                    .token(&admin)
                    .json(json!({"status": "disabled"})),
            )
            .await;
        assert_status(&r, 200);
        let r = grant_basic(&app, &second, None).await;
        assert_oauth_error(&r, 401, "invalid_client");
        assert_dead(&app, &live).await;
        assert_dead(&app, &early).await;
        let r = introspect(&app, &admin, &live).await;
        assert_eq!(r.body, json!({"active": false}));
        // A disabled client cannot revoke either.
        let r = revoke(&app, &second, &live).await;
        assert_oauth_error(&r, 401, "invalid_client");

        // Enabled again: the secret works again.
        let r = app
            .send(
                Req::patch(&path)
                    .token(&admin)
                    .json(json!({"status": "active"})),
            )
            .await;
        assert_status(&r, 200);
        let again = token(&app, &second, Some("users:read")).await;
        assert_works(&app, &again).await;

        // Deleted: the same, for good.
        let r = app.send(Req::delete(&path).token(&admin)).await;
        assert_status(&r, 204);
        let r = grant_basic(&app, &second, None).await;
        assert_oauth_error(&r, 401, "invalid_client");
        assert_dead(&app, &again).await;
        let r = revoke(&app, &second, &again).await;
        assert_oauth_error(&r, 401, "invalid_client");
        let r = app
            .send(Req::post(format!("{path}/client-secret")).token(&admin))
            .await;
        assert_problem(&r, 404, "not_found");
    }
);

backend_test!(revocation_follows_rfc_7009, |app| async move {
    let (admin, c) = setup(&app).await;
    let other = issue_secret(
        &app,
        &admin,
        SLUG,
        &create_account(&app, &admin, SLUG, "other").await,
    )
    .await;
    let t = token(&app, &c, Some("users:read")).await;
    let keep = token(&app, &c, Some("users:read")).await;
    let others = token(&app, &other, None).await;
    assert_works(&app, &t).await;

    // Revoked: refused at once; the client's other tokens live on.
    let r = revoke(&app, &c, &t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_dead(&app, &t).await;
    assert_works(&app, &keep).await;
    // Again: still 200, still dead.
    let r = revoke(&app, &c, &t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_dead(&app, &t).await;

    // Another client's token: 200, and it still works.
    let r = revoke(&app, &c, &others).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_works(&app, &others).await;

    // Garbage, a user's token, a hint: 200, nothing happens.
    let long = "x".repeat(5000);
    for junk in ["garbage", "", long.as_str(), admin.as_str()] {
        let r = revoke(&app, &c, junk).await;
        assert_eq!(r.status, 200, "{junk:.20}: {}", r.text);
    }
    get_ok(&app, &admin, "/v1/me").await;
    let r = post_form(
        &app,
        "/oauth2/revoke",
        Some(&basic(&c.id, &c.secret)),
        &form(&[("token", "garbage"), ("token_type_hint", "refresh_token")]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // Client authentication in the form works; wrong secret or none is invalid_client.
    let by_post = token(&app, &c, None).await;
    let r = post_form(
        &app,
        "/oauth2/revoke",
        None,
        &form(&[
            ("token", &by_post),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_dead(&app, &by_post).await;
    let r = post_form(
        &app,
        "/oauth2/revoke",
        Some(&basic(&c.id, &other.secret)),
        &form(&[("token", &keep)]),
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert!(r.header("www-authenticate").is_some(), "{:?}", r.headers);
    let r = post_form(&app, "/oauth2/revoke", None, &form(&[("token", &keep)])).await;
    assert_oauth_error(&r, 401, "invalid_client");
    let r = post_form(
        &app,
        "/oauth2/revoke",
        Some("Basic !!!"),
        &form(&[("token", &keep)]),
    )
    .await;
    assert_oauth_error(&r, 401, "invalid_client");
    assert_works(&app, &keep).await;
    // Both Basic and form credentials: invalid_request (one method per request).
    let r = post_form(
        &app,
        "/oauth2/revoke",
        Some(&basic(&c.id, &c.secret)),
        &form(&[
            ("token", &keep),
            ("client_id", &c.id),
            ("client_secret", &c.secret),
        ]),
    )
    .await;
    assert_oauth_error(&r, 400, "invalid_request");
    // Missing token, repeated token, not a form: invalid_request.
    for body in ["", "token_type_hint=access_token", "token=a&token=b"] {
        let r = post_form(&app, "/oauth2/revoke", Some(&basic(&c.id, &c.secret)), body).await;
        assert_oauth_error(&r, 400, "invalid_request");
    }
    let r = app
        .send(
            Req::post("/oauth2/revoke")
                .header("authorization", &basic(&c.id, &c.secret))
                .json(json!({"token": keep})),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request");
    assert_works(&app, &keep).await;

    // Audited once per revoked token, by the client; no secret or token in the trail.
    let events = all_pages(
        &app,
        &admin,
        "/v1/audit/events?action=access_token.revoked",
        50,
    )
    .await;
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["actor"]["type"], "service_account", "{e}");
        assert_eq!(e["actor"]["id"], c.account.as_str(), "{e}");
        assert_eq!(e["target"]["type"], "access_token", "{e}");
    }
    let text = serde_json::to_string(&all_audit(&app).await).unwrap();
    for secret in [&c.secret, &other.secret, &t, &keep, &others, &by_post] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret reached the audit trail"
        );
    }
});

backend_test!(introspection_reports_client_tokens, |app| async move {
    let (admin, c) = setup(&app).await;
    let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
    let t = token(&app, &c, Some("users:read")).await;
    let r = introspect(&app, &admin, &t).await;
    assert_eq!(r.body["active"], true, "{}", r.text);
    assert_eq!(r.body["client_id"], c.id.as_str(), "{}", r.text);
    assert_eq!(r.body["sub"], c.account.as_str(), "{}", r.text);
    assert_eq!(r.body["scope"], "users:read", "{}", r.text);
    assert_eq!(r.body["org_id"], org["id"], "{}", r.text);
    assert_eq!(r.body["token_type"], "access_token", "{}", r.text);
    assert!(
        r.body["exp"].as_i64().unwrap() > r.body["iat"].as_i64().unwrap(),
        "{}",
        r.text
    );
    assert!(r.body.get("username").is_none(), "{}", r.text);

    // A client may introspect with its own token too (any authenticated caller may).
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&t)
                .json(json!({"token": t})),
        )
        .await;
    assert!(r.status == 200 || r.status == 403, "{}", r.text);

    let r = revoke(&app, &c, &t).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = introspect(&app, &admin, &t).await;
    assert_eq!(r.body, json!({"active": false}));
    // A tampered client token: inactive.
    let fresh = token(&app, &c, None).await;
    let mut tampered = fresh.clone();
    tampered.pop();
    tampered.push(if fresh.ends_with('A') { 'B' } else { 'A' });
    let r = introspect(&app, &admin, &tampered).await;
    assert_eq!(r.body, json!({"active": false}));
    assert_dead(&app, &tampered).await;
});

backend_test!(
    other_credentials_are_never_client_credentials,
    |app| async move {
        let (admin, c) = setup(&app).await;
        let r = app
            .send(
                Req::post(format!(
                    "/v1/orgs/{SLUG}/service-accounts/{}/api-keys",
                    c.account
                ))
                .token(&admin)
                .json(json!({"name": "ci", "scopes": ["users:read"]})),
            )
            .await;
        assert_status(&r, 201);
        let api_key = r.body["secret"].as_str().unwrap().to_string();
        let client_token = token(&app, &c, None).await;

        // A user's token, an API key or a client token as the client secret.
        for secret in [admin.as_str(), api_key.as_str(), client_token.as_str()] {
            let r = post_form(
                &app,
                "/oauth2/token",
                Some(&basic(&c.id, secret)),
                &form(&[("grant_type", "client_credentials")]),
            )
            .await;
            assert_oauth_error(&r, 401, "invalid_client");
            let r = post_form(
                &app,
                "/oauth2/token",
                None,
                &form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &c.id),
                    ("client_secret", secret),
                ]),
            )
            .await;
            assert_oauth_error(&r, 401, "invalid_client");
            let r = post_form(
                &app,
                "/oauth2/revoke",
                Some(&basic(&c.id, secret)),
                &form(&[("token", &client_token)]),
            )
            .await;
            assert_oauth_error(&r, 401, "invalid_client");
        }
        // Bearer credentials are not client authentication at the token endpoint.
        for bearer in [admin.as_str(), api_key.as_str(), client_token.as_str()] {
            let r = app
                .send(
                    Req::post("/oauth2/token")
                        .token(bearer)
                        .raw("grant_type=client_credentials", FORM),
                )
                .await;
            assert_oauth_error(&r, 401, "invalid_client");
        }
        // The client secret is not a bearer credential.
        let r = app.send(Req::get("/v1/auth/whoami").token(&c.secret)).await;
        assert_problem(&r, 401, "unauthenticated");

        // A client token where a refresh token or a session is expected: refused, never a 5xx.
        let r = app
            .send(Req::post("/v1/auth/refresh").json(json!({"refresh_token": client_token})))
            .await;
        assert!(r.status == 400 || r.status == 401, "{}", r.text);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/problem+json")),
            "{}",
            r.text
        );
        let r = app
            .send(Req::post("/v1/auth/logout").token(&client_token))
            .await;
        assert!(r.status.as_u16() < 500, "logout: {}", r.text);
        let r = app.send(Req::get("/v1/me").token(&client_token)).await;
        assert!(r.status.as_u16() < 500, "/v1/me: {}", r.text);
        let r = app
            .send(Req::get("/v1/me/sessions").token(&client_token))
            .await;
        assert!(r.status.as_u16() < 500, "/v1/me/sessions: {}", r.text);
        assert_works(&app, &client_token).await;
        // And the admin's session is untouched by any of it.
        get_ok(&app, &admin, "/v1/me").await;
    }
);

backend_test!(
    idempotency_key_is_ignored_at_the_token_endpoint,
    |app| async move {
        let (_, c) = setup(&app).await;
        let send = || {
            app.send(
                Req::post("/oauth2/token")
                    .header("authorization", &basic(&c.id, &c.secret))
                    .header("idempotency-key", "same-key")
                    .raw("grant_type=client_credentials&scope=users:read", FORM),
            )
        };
        let first = send().await;
        let second = send().await;
        let a = assert_token(&first, "users:read");
        let b = assert_token(&second, "users:read");
        assert_ne!(a, b, "two requests, two tokens");
        for r in [&first, &second] {
            assert!(r.header("idempotent-replayed").is_none(), "{:?}", r.headers);
        }
        // An invalid key is not even looked at.
        let r = app
            .send(
                Req::post("/oauth2/token")
                    .header("authorization", &basic(&c.id, &c.secret))
                    .header("idempotency-key", "")
                    .raw("grant_type=client_credentials", FORM),
            )
            .await;
        assert_token(&r, ALL);
        // Same for revocation.
        for _ in 0..2 {
            let r = app
                .send(
                    Req::post("/oauth2/revoke")
                        .header("authorization", &basic(&c.id, &c.secret))
                        .header("idempotency-key", "revoke-key")
                        .raw(form(&[("token", &a)]), FORM),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(r.header("idempotent-replayed").is_none(), "{:?}", r.headers);
        }
        assert_dead(&app, &a).await;
        assert_works(&app, &b).await;
    }
);

// Errors the router and the body limit produce are OAuth2-shaped on these endpoints too: a
// client library parses `error`, not problem+json.
backend_test!(
    other_methods_and_oversized_bodies_get_oauth2_errors,
    |app| async move {
        for path in ["/oauth2/token", "/oauth2/revoke"] {
            for req in [Req::get(path), Req::put(path), Req::delete(path)] {
                let r = app.send(req).await;
                assert_oauth_error(&r, 405, "invalid_request");
                assert_eq!(r.header("allow"), Some("POST"), "{path}: {:?}", r.headers);
            }
            let huge = format!(
                "grant_type=client_credentials&scope={}",
                "a".repeat(1 << 21)
            );
            // Read with a limit ...
            let r = post_form(&app, path, None, &huge).await;
            assert_oauth_error(&r, 413, "invalid_request");
            // ... and refused before reading, by its declared length.
            let r = app
                .send(
                    Req::post(path)
                        .raw(huge.clone(), FORM)
                        .header("content-length", &huge.len().to_string()),
                )
                .await;
            assert_oauth_error(&r, 413, "invalid_request");
        }
    }
);
