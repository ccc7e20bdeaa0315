//! OIDC federation end to end against a real provider (`oidc-provider` on loopback): start →
//! provider login → callback → a session; linking by verified email, auto-join, refusals.

use super::*;
use uos_oidc::testing::{login, TestProvider};

const CALLBACK: &str = "http://127.0.0.1/v1/auth/oidc/corp/callback";

fn provider_cfg(op: &TestProvider, extra: Value) -> Vec<(&'static str, Value)> {
    let mut cfg = json!({
        "issuer": op.issuer(),
        "client_id": op.client_id(),
        "client_secret": op.client_secret(),
        "redirect_uri": CALLBACK,
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    vec![("oidc_providers", json!({ "corp": cfg }))]
}

/// Run the browser part: our /start, the provider's pages, back to our /callback.
async fn federated_login(app: &TestApp, login_name: &str) -> TestResponse {
    let r = app.send(Req::get("/v1/auth/oidc/corp/start")).await;
    assert_eq!(r.status, 302, "{}", r.text);
    let to = r.header("location").unwrap().to_string();
    let cb = login(&to, login_name).await.unwrap();
    let mut query = vec![("code", cb.code), ("state", cb.state)];
    if let Some(iss) = cb.iss {
        query.push(("iss", iss));
    }
    let qs = serde_urlencoded::to_string(&query).unwrap();
    app.send(Req::get(format!("/v1/auth/oidc/corp/callback?{qs}")))
        .await
}

async fn spawn(backend: uos_testkit::Backend, op: &TestProvider, extra: Value) -> TestApp {
    TestApp::spawn_with(backend, &provider_cfg(op, extra)).await
}

async fn flow(backend: uos_testkit::Backend) {
    let op = TestProvider::start(CALLBACK).await.unwrap();
    let app = spawn(
        backend,
        &op,
        json!({"auto_join": {"org": "acme", "roles": ["member"]}}),
    )
    .await;
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let (bob_id, _) = app
        .add_member(&admin, "acme", "bob@example.com", &["admin"])
        .await;

    // A new person: an account is created, linked, and joins the configured org.
    let r = federated_login(&app, "alice").await;
    assert_status(&r, 200);
    let alice = r.body["access_token"].as_str().unwrap().to_string();
    let me = get_ok(&app, &alice, "/v1/me").await;
    assert_eq!(me["email"], "alice@example.com");
    let alice_id = me["id"].clone();
    let members = get_ok(&app, &admin, "/v1/orgs/acme/users").await;
    assert!(
        members.to_string().contains("alice@example.com"),
        "{members}"
    );

    // The same person again: the same account.
    let r = federated_login(&app, "alice").await;
    assert_status(&r, 200);
    let me = get_ok(&app, r.body["access_token"].as_str().unwrap(), "/v1/me").await;
    assert_eq!(me["id"], alice_id);

    // An existing local account links by its verified email and keeps its roles.
    let r = federated_login(&app, "bob@example.com").await;
    assert_status(&r, 200);
    let me = get_ok(&app, r.body["access_token"].as_str().unwrap(), "/v1/me").await;
    assert_eq!(me["id"], bob_id.as_str());
    let bob = get_ok(&app, &admin, &format!("/v1/orgs/acme/users/{bob_id}")).await;
    assert_eq!(bob["roles"], json!(["admin"]));

    // An unverified email links to nothing.
    let r = federated_login(&app, "unverified-mallory").await;
    assert_problem(&r, 401, "email_unverified");

    let audit = app
        .send(Req::get("/v1/audit/events?action=identity.linked").token(&admin))
        .await;
    assert_eq!(
        audit.body["items"].as_array().unwrap().len(),
        2,
        "{}",
        audit.text
    );
}

async fn refusals(backend: uos_testkit::Backend) {
    let op = TestProvider::start(CALLBACK).await.unwrap();
    let app = spawn(
        backend,
        &op,
        json!({"allowed_email_domains": ["corp.example"]}),
    )
    .await;
    // The allowlist refuses other domains.
    let r = federated_login(&app, "alice").await;
    assert_problem(&r, 401, "email_domain_not_allowed");
    let r = federated_login(&app, "carol@corp.example").await;
    assert_status(&r, 200);

    // A state works once; a forged one not at all; a code for another login fails.
    let r = app.send(Req::get("/v1/auth/oidc/corp/start")).await;
    let cb = login(r.header("location").unwrap(), "carol@corp.example")
        .await
        .unwrap();
    let iss = cb.iss.clone().unwrap_or_default();
    let url = |code: &str, state: &str| {
        let qs =
            serde_urlencoded::to_string([("code", code), ("state", state), ("iss", iss.as_str())])
                .unwrap();
        format!("/v1/auth/oidc/corp/callback?{qs}")
    };
    let r = app.send(Req::get(url(&cb.code, "forged-state"))).await;
    assert_problem(&r, 401, "invalid_state");
    let r = app.send(Req::get(url("tampered-code", &cb.state))).await;
    assert_problem(&r, 401, "federation_failed");
    // ... and the state was used up by that failed attempt.
    let r = app.send(Req::get(url(&cb.code, &cb.state))).await;
    assert_problem(&r, 401, "invalid_state");

    // Bad input.
    let r = app.send(Req::get("/v1/auth/oidc/corp/callback")).await;
    assert_invalid(&r, &["code", "state"]);
    let r = app.send(Req::get("/v1/auth/oidc/nope/start")).await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::get(
            "/v1/auth/oidc/corp/callback?error=access_denied&state=x",
        ))
        .await;
    assert_problem(&r, 401, "federation_failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs oidc-provider (node)"]
async fn federated_login_links_and_joins_sqlite() {
    flow(uos_testkit::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs oidc-provider (node) and PostgreSQL"]
async fn federated_login_links_and_joins_postgres() {
    flow(uos_testkit::Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs oidc-provider (node)"]
async fn federated_login_refusals_sqlite() {
    refusals(uos_testkit::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs oidc-provider (node) and PostgreSQL"]
async fn federated_login_refusals_postgres() {
    refusals(uos_testkit::Backend::Postgres).await;
}
