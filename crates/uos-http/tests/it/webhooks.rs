//! Webhooks: a budget reaching a state is posted, signed, to a real HTTP receiver once per
//! period and state; a failed attempt is retried with backoff; the delivery log shows it all.

use super::*;
use uos_testkit::Backend;

async fn scenario(backend: Backend) {
    let (url, got) = webhook_receiver(true).await;
    let app = TestApp::spawn_with(backend, &webhook_settings(&url)).await;
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let r = app
        .send(
            Req::put("/v1/orgs/acme/budget")
                .token(&admin)
                .json(json!({"period": "monthly", "limit_cents": 100})),
        )
        .await;
    assert_status(&r, 201);
    let report = |id: &str, cents: i64| {
        Req::post("/v1/usage").token(&admin).json(json!({
            "org": "acme", "amount_cents": cents, "source_event_id": id,
            "occurred_at": chrono::Utc::now().to_rfc3339(),
        }))
    };
    // 80 reaches warn; more spend within warn, and more again past blocked, then beyond:
    // one notification per state.
    for (id, cents) in [("a", 80), ("b", 5), ("c", 20), ("d", 7)] {
        assert_status(&app.send(report(id, cents)).await, 202);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let delivered = loop {
        let r = app
            .send(Req::get("/v1/webhooks/deliveries?org=acme").token(&admin))
            .await;
        assert_status(&r, 200);
        let items = r.body["items"].as_array().unwrap().clone();
        if items.len() == 2 && items.iter().all(|d| d["state"] == "delivered") {
            break items;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let states: Vec<_> = delivered
        .iter()
        .map(|d| d["payload"]["data"]["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["warn", "blocked"]);
    // The first attempt met a 500 and was retried; the log says so.
    let attempts: Vec<i64> = delivered
        .iter()
        .map(|d| d["attempts"].as_i64().unwrap())
        .collect();
    assert!(attempts.contains(&2), "{attempts:?}");
    assert!(delivered.iter().all(|d| d["last_status"] == 204));

    // Each request the receiver got is signed over its timestamp and body.
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "two deliveries, one of them twice: {got:?}");
    for r in &got {
        assert_eq!(r.event, "budget.state_changed");
        let (t, v1) = r
            .signature
            .strip_prefix("t=")
            .and_then(|s| s.split_once(",v1="))
            .unwrap();
        let t: i64 = t.parse().unwrap();
        assert_eq!(
            v1,
            uos_webhooks::sign(WEBHOOK_SECRET.as_bytes(), t, r.body.as_bytes())
        );
        assert_ne!(
            v1,
            uos_webhooks::sign(b"another secret", t, r.body.as_bytes())
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["type"], "budget.state_changed");
        assert_eq!(body["data"]["budget"]["scope"], "org");
    }
    // The retry carried the same delivery id.
    let first = &got[0].delivery;
    assert_eq!(got.iter().filter(|r| &r.delivery == first).count(), 2);

    // The log is for platform admins.
    let (_, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["owner"])
        .await;
    let r = app
        .send(Req::get("/v1/webhooks/deliveries").token(&bob))
        .await;
    assert_problem(&r, 403, "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_states_are_posted_signed_once_and_retried_sqlite() {
    scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn budget_states_are_posted_signed_once_and_retried_postgres() {
    scenario(Backend::Postgres).await;
}
