//! Token services: RFC 7662 introspection and rotation of the token-signing key.

use super::*;

async fn introspect_json(app: &TestApp, caller: &str, token: &str) -> TestResponse {
    app.send(
        Req::post("/v1/auth/introspect")
            .token(caller)
            .json(json!({"token": token})),
    )
    .await
}

backend_test!(introspection_reports_live_tokens_only, |app| async move {
    let admin = app.admin_token().await;
    let other = app.admin_token().await;
    let r = introspect_json(&app, &admin, &other).await;
    assert_status(&r, 200);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["username"], ADMIN_EMAIL);
    assert_eq!(r.body["token_type"], "access_token");
    assert!(r.body["exp"].as_i64().unwrap() > r.body["iat"].as_i64().unwrap());

    // The RFC's form encoding works too.
    let r = app
        .send(Req::post("/v1/auth/introspect").token(&admin).raw(
            format!("token={other}&token_type_hint=access_token"),
            "application/x-www-form-urlencoded",
        ))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["active"], true);

    // Revoked, forged, tampered: inactive, and nothing else said.
    let r = app.send(Req::post("/v1/auth/logout").token(&other)).await;
    assert_status(&r, 204);
    let mut tampered = admin.clone();
    tampered.pop();
    tampered.push(if admin.ends_with('A') { 'B' } else { 'A' });
    for t in [other.as_str(), "garbage", tampered.as_str()] {
        let r = introspect_json(&app, &admin, t).await;
        assert_status(&r, 200);
        assert_eq!(r.body, json!({"active": false}), "{t}");
    }
});

backend_test!(introspection_bad_input, |app| async move {
    let admin = app.admin_token().await;
    let r = introspect_json(&app, "not-a-token", &admin).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(Req::post("/v1/auth/introspect").json(json!({"token": admin})))
        .await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&admin)
                .json(json!({})),
        )
        .await;
    assert_invalid(&r, &["token"]);
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&admin)
                .json(json!({"token": 5})),
        )
        .await;
    assert_invalid(&r, &["token"]);
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&admin)
                .raw("{", "application/json"),
        )
        .await;
    assert_invalid(&r, &["body"]);
});

backend_test!(key_rotation_keeps_the_previous_key, |app| async move {
    let admin = app.admin_token().await;
    let jwks = app.send(Req::get("/.well-known/jwks.json")).await;
    let first_kid = jwks.body["keys"][0]["kid"].as_str().unwrap().to_string();

    let (_, member) = {
        app.create_org(&admin, "acme").await;
        app.add_member(&admin, "acme", "bob@example.com", &["owner"])
            .await
    };
    let r = app.send(Req::post("/v1/keys/rotate").token(&member)).await;
    assert_problem(&r, 403, "forbidden");

    let r = app.send(Req::post("/v1/keys/rotate").token(&admin)).await;
    assert_status(&r, 200);
    let second_kid = r.body["key_id"].as_str().unwrap().to_string();
    assert_ne!(second_kid, first_kid);
    assert_eq!(r.body["published"], json!([second_kid, first_kid]));
    let jwks = app.send(Req::get("/.well-known/jwks.json")).await;
    let kids: Vec<_> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert_eq!(kids, vec![json!(second_kid), json!(first_kid)]);

    // Tokens of the previous key still work; new tokens carry the new kid.
    get_ok(&app, &admin, "/v1/me").await;
    let fresh = app.admin_token().await;
    assert_eq!(kid_of(&fresh), second_kid);

    // A second rotation retires the first key: its tokens stop working.
    let r = app.send(Req::post("/v1/keys/rotate").token(&fresh)).await;
    assert_status(&r, 200);
    let r = app.send(Req::get("/v1/me").token(&admin)).await;
    assert_problem(&r, 401, "unauthenticated");
    get_ok(&app, &fresh, "/v1/me").await;
    let audit = app
        .send(Req::get("/v1/audit/events?action=keys.rotated").token(&fresh))
        .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        audit.text
    );
});

fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let v: Value = serde_json::from_slice(&raw).unwrap();
    v["kid"].as_str().unwrap().to_string()
}
