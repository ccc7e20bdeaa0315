//! API-key quarantine: a key whose request rate jumps past a multiple of its own baseline is
//! refused with 403 `api_key_quarantined` (on every replica), audited and announced by webhook,
//! while its account's other keys keep working; an admin of its org releases it.

use super::*;
use std::time::{Duration, Instant};
use uos_testkit::Backend;

/// Small thresholds: one-second windows, a spike is 5× the baseline and at least 40 requests,
/// after 2 windows of history.
fn thresholds() -> Vec<(&'static str, Value)> {
    vec![
        ("service.quarantine.window_secs", json!(1)),
        ("service.quarantine.multiple", json!(5.0)),
        ("service.quarantine.min_requests", json!(40)),
        ("service.quarantine.min_history_windows", json!(2)),
    ]
}

async fn whoami(app: &TestApp, key: &str) -> TestResponse {
    app.send(Req::get("/v1/auth/whoami").token(key)).await
}

/// Sleep into the next whole second (a window of one second), a little past its start.
async fn next_window() {
    let ms = u64::from(chrono::Utc::now().timestamp_subsec_millis());
    tokio::time::sleep(Duration::from_millis(1000 - ms + 30)).await;
}

/// Three windows with a handful of requests each: the key's baseline.
async fn steady_traffic(app: &TestApp, key: &str) {
    for _ in 0..3 {
        next_window().await;
        for _ in 0..4 {
            assert_status(&whoami(app, key).await, 200);
        }
    }
}

/// Requests with `key` as fast as they go until one is refused (at most 5 s); how many were
/// allowed, and the refusal.
async fn spike_until_refused(app: &TestApp, key: &str) -> (usize, TestResponse) {
    next_window().await;
    let start = Instant::now();
    let mut allowed = 0;
    loop {
        let r = whoami(app, key).await;
        if r.status != 200 {
            return (allowed, r);
        }
        allowed += 1;
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{allowed} requests in 5 s and the key is still accepted"
        );
    }
}

/// An org `slug` with an owner, an account `ci` (member) and two keys of it: the owner's
/// token, the account id and both key bodies.
async fn account_with_two_keys(app: &TestApp, slug: &str, owner: &str) -> (String, Value, Value) {
    let (_, alice) = owned_org(app, slug, owner).await;
    let r = app
        .send(
            Req::post(format!("/v1/orgs/{slug}/service-accounts"))
                .token(&alice)
                .json(json!({"name": "ci", "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);
    let sa = r.body["id"].as_str().unwrap().to_owned();
    let mut keys = Vec::new();
    for name in ["hot", "cold"] {
        let r = app
            .send(
                Req::post(format!("/v1/orgs/{slug}/service-accounts/{sa}/api-keys"))
                    .token(&alice)
                    .json(json!({"name": name, "scopes": ["users:read"]})),
            )
            .await;
        assert_status(&r, 201);
        keys.push(r.body);
    }
    let cold = keys.pop().unwrap();
    (alice, keys.pop().unwrap(), cold)
}

fn secret(v: &Value) -> &str {
    v["secret"].as_str().unwrap()
}

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap()
}

/// Audit events with this action, as the platform admin reads them.
async fn events(app: &TestApp, action: &str) -> Vec<Value> {
    let admin = app.admin_token().await;
    all_pages(
        app,
        &admin,
        &format!("/v1/audit/events?action={action}"),
        100,
    )
    .await
}

async fn scenario(backend: Backend) {
    let (url, got) = webhook_receiver(false).await;
    let mut config = thresholds();
    config.extend(webhook_settings(&url));
    let app = TestApp::spawn_with(backend, &config).await;
    let (alice, hot, cold) = account_with_two_keys(&app, "acme", "alice@example.com").await;

    // A brand-new key flooding at once has no baseline: it is not quarantined.
    for _ in 0..60 {
        assert_status(&whoami(&app, secret(&hot)).await, 200);
    }
    steady_traffic(&app, secret(&hot)).await;
    let (allowed, refused) = spike_until_refused(&app, secret(&hot)).await;
    assert_problem(&refused, 403, "api_key_quarantined");
    assert!(
        allowed >= 40,
        "refused after {allowed} requests of the spike; min_requests is 40"
    );
    // Refused again, and the account's other key is untouched.
    assert_problem(
        &whoami(&app, secret(&hot)).await,
        403,
        "api_key_quarantined",
    );
    assert_status(&whoami(&app, secret(&cold)).await, 200);
    // Introspection says inactive, like for any key that may not be used.
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(secret(&cold))
                .json(json!({"token": secret(&hot)})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["active"], false, "{}", r.text);

    // The key's views say so.
    let path = format!("/v1/orgs/acme/api-keys/{}", id(&hot));
    let view = get_ok(&app, &alice, &path).await;
    assert_eq!(view["state"], "quarantined", "{view}");
    assert!(view["quarantined_at"].is_string(), "{view}");
    assert!(
        view["quarantine_reason"]
            .as_str()
            .is_some_and(|r| r.contains("requests")),
        "{view}"
    );
    let sa = hot["service_account_id"].as_str().unwrap();
    let listed = get_ok(
        &app,
        &alice,
        &format!("/v1/orgs/acme/service-accounts/{sa}/api-keys"),
    )
    .await;
    let states: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap(), k["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("hot", "quarantined"), ("cold", "active")]);

    // Audited once, with the figures and never the secret.
    let quarantined = events(&app, "api_key.quarantined").await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let e = &quarantined[0];
    assert_eq!(e["target"]["id"], hot["id"]);
    assert_eq!(e["actor"]["type"], "system");
    let after = &e["changes"]["after"];
    let observed = after["observed_requests"].as_u64().unwrap();
    let baseline = after["baseline"].as_f64().unwrap();
    assert!(observed >= 40, "{after}");
    assert!(
        baseline > 0.0 && observed as f64 >= 5.0 * baseline,
        "{after}"
    );
    assert_eq!(after["multiple"], 5.0);
    assert_eq!(after["window_secs"], 1);
    assert_eq!(after["key"]["state"], "quarantined");
    assert!(!e.to_string().contains(secret(&hot)), "{e}");

    // Announced by webhook.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hook = loop {
        let found = got
            .lock()
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null))
            .find(|b| b["type"] == "api_key.quarantined");
        if let Some(b) = found {
            break b;
        }
        assert!(Instant::now() < deadline, "no api_key.quarantined webhook");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(hook["data"]["api_key"]["id"], hot["id"]);
    assert_eq!(hook["data"]["observed_requests"], observed);
    assert_eq!(hook["org_id"], e["org_id"]);
    assert!(!hook.to_string().contains(secret(&hot)), "{hook}");

    // Who may release it: not a plain member (403), not another org (404), not an unknown
    // key (404).
    let admin = app.admin_token().await;
    let (_, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["member"])
        .await;
    let release = |token: &str, slug: &str, key: &str| {
        Req::post(format!("/v1/orgs/{slug}/api-keys/{key}/release")).token(token)
    };
    assert_forbidden(
        &app.send(release(&bob, "acme", id(&hot))).await,
        "missing_permission:service_accounts:write",
    );
    let (_, mallory) = owned_org(&app, "evil", "mallory@example.com").await;
    assert_problem(
        &app.send(release(&mallory, "acme", id(&hot))).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.send(release(&mallory, "evil", id(&hot))).await,
        404,
        "not_found",
    );
    assert_problem(
        &app.send(release(&alice, "acme", &uuid::Uuid::now_v7().to_string()))
            .await,
        404,
        "not_found",
    );
    // A stale If-Match changes nothing.
    let r = app
        .send(release(&alice, "acme", id(&hot)).header("if-match", &etag(1)))
        .await;
    assert_problem(&r, 412, "precondition_failed");
    assert_problem(
        &whoami(&app, secret(&hot)).await,
        403,
        "api_key_quarantined",
    );

    // The owner releases it: it works again, and the release is audited.
    let r = app.send(release(&alice, "acme", id(&hot))).await;
    assert_status(&r, 200);
    assert_eq!(r.body["state"], "active", "{}", r.text);
    assert!(r.body["quarantined_at"].is_null(), "{}", r.text);
    assert!(r.header("etag").is_some());
    assert_status(&whoami(&app, secret(&hot)).await, 200);
    let released = events(&app, "api_key.released").await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["target"]["id"], hot["id"]);
    assert_eq!(released[0]["changes"]["before"]["state"], "quarantined");
    assert_eq!(released[0]["changes"]["after"]["state"], "active");
    // Once released, it is not quarantined any more.
    assert_conflict(
        &app.send(release(&alice, "acme", id(&hot))).await,
        "key_not_quarantined",
    );
    // Its history started over: a flood right after the release is not a spike yet.
    for _ in 0..60 {
        assert_status(&whoami(&app, secret(&hot)).await, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spiking_key_is_quarantined_audited_notified_and_released_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn a_spiking_key_is_quarantined_audited_notified_and_released_postgres() {
    scenario(Backend::Postgres).await;
}

/// Switched off, the same spike is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_detection_off_a_spike_is_served() {
    let mut config = thresholds();
    config.push(("service.quarantine.enabled", json!(false)));
    let app = TestApp::spawn_with(Backend::Sqlite, &config).await;
    let (_, hot, _) = account_with_two_keys(&app, "acme", "alice@example.com").await;
    steady_traffic(&app, secret(&hot)).await;
    next_window().await;
    for _ in 0..200 {
        assert_status(&whoami(&app, secret(&hot)).await, 200);
    }
    assert!(events(&app, "api_key.quarantined").await.is_empty());
}

/// How long until `key` is answered `status` on `app`, polling; panics after 5 s.
async fn answered_after(app: &TestApp, key: &str, status: u16, since: Instant) -> Duration {
    loop {
        let r = whoami(app, key).await;
        if r.status == status {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still {} after 5 s: {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A key quarantined through one replica is refused by the other within a second (through the
/// invalidation fan-out), and released through the other it works on both again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_quarantine_reaches_every_replica() {
    let redis_url =
        std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let mut config = thresholds();
    config.extend([
        ("redis_url", json!(redis_url)),
        (
            "redis_prefix",
            json!(format!("uos-test-{}:", uos_domain::new_id())),
        ),
    ]);
    let a = TestApp::spawn_with(Backend::Postgres, &config).await;
    let b = a.replica(&config).await;
    let (alice, hot, cold) = account_with_two_keys(&a, "acme", "alice@example.com").await;
    // B has the key cached (the default cache TTL is far longer than the test).
    assert_status(&whoami(&b, secret(&hot)).await, 200);

    steady_traffic(&a, secret(&hot)).await;
    let (_, refused) = spike_until_refused(&a, secret(&hot)).await;
    assert_problem(&refused, 403, "api_key_quarantined");
    let t = Instant::now();
    let took = answered_after(&b, secret(&hot), 403, t).await;
    assert!(took < Duration::from_secs(1), "quarantine took {took:?}");
    assert_problem(&whoami(&b, secret(&hot)).await, 403, "api_key_quarantined");
    assert_status(&whoami(&b, secret(&cold)).await, 200);

    let r = b
        .send(Req::post(format!("/v1/orgs/acme/api-keys/{}/release", id(&hot))).token(&alice))
        .await;
    assert_status(&r, 200);
    let t = Instant::now();
    let took = answered_after(&a, secret(&hot), 200, t).await;
    assert!(took < Duration::from_secs(1), "release took {took:?}");
}
