//! Budgets, usage and the decision point, held to the failures LiteLLM's users reported
//! (each named where it is checked), on both backends and across replicas.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

struct Setup {
    admin: String,
    /// The gateway's API key: asks for decisions and reports usage.
    gateway: String,
    /// The worker account and its key, whose spend the budgets limit.
    worker_sa: String,
    worker_key_id: String,
    worker_key: String,
    bob: String,
    bob_token: String,
}

async fn setup(app: &TestApp) -> Setup {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let account = |name: &'static str, roles: Value, scopes: Value| {
        let admin = admin.clone();
        async move {
            let r = app
                .send(
                    Req::post("/v1/orgs/acme/service-accounts")
                        .token(&admin)
                        .json(json!({"name": name, "roles": roles})),
                )
                .await;
            assert_status(&r, 201);
            let id = r.body["id"].as_str().unwrap().to_owned();
            let r = app
                .send(
                    Req::post(format!("/v1/orgs/acme/service-accounts/{id}/api-keys"))
                        .token(&admin)
                        .json(json!({"name": "k", "scopes": scopes})),
                )
                .await;
            assert_status(&r, 201);
            (
                id,
                r.body["id"].as_str().unwrap().to_owned(),
                r.body["secret"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (_, _, gateway) = account(
        "gateway",
        json!(["admin"]),
        json!(["policy:evaluate", "usage:write"]),
    )
    .await;
    let (worker_sa, worker_key_id, worker_key) =
        account("worker", json!(["member"]), json!(["org:read"])).await;
    let (bob, bob_token) = app
        .add_member(&admin, "acme", "bob@example.com", &["member"])
        .await;
    Setup {
        admin,
        gateway,
        worker_sa,
        worker_key_id,
        worker_key,
        bob,
        bob_token,
    }
}

fn ask(principal: Value, cost: Option<i64>) -> Value {
    let mut body = json!({
        "principal": principal,
        "action": "llm.invoke",
        "resource": {"type": "model", "id": "gpt", "org": "acme"},
    });
    if let Some(c) = cost {
        body["context"] = json!({"cost_cents": c});
    }
    body
}

async fn decide(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app
        .send(Req::post("/v1/policy/evaluate").token(token).json(body))
        .await;
    assert_status(&r, 200);
    r.body
}

async fn usage(app: &TestApp, token: &str, id: &str, cents: i64, extra: Value) -> Value {
    let mut body = json!({
        "org": "acme", "amount_cents": cents, "source_event_id": id,
        "occurred_at": chrono::Utc::now().to_rfc3339(),
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app
        .send(Req::post("/v1/usage").token(token).json(body))
        .await;
    assert_status(&r, 202);
    r.body
}

async fn set_budget(app: &TestApp, token: &str, path: &str, body: Value) {
    let r = app
        .send(
            Req::put(format!("/v1/orgs/acme/{path}"))
                .token(token)
                .json(body),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
}

/// The budget scopes a decision's reasons name.
fn blocking_scopes(d: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["code"] == "budget_exceeded")
        .map(|r| r["budget"]["scope"].as_str().unwrap().to_owned())
        .collect();
    scopes.sort();
    scopes
}

/// Checks a decision's signature against the served keys.
async fn assert_signed(app: &TestApp, d: &Value) {
    let r = app.send(Req::get("/v1/policy/keys")).await;
    assert_status(&r, 200);
    let keys: Vec<uos_keys::PublicKey> = serde_json::from_value(r.body["keys"].clone()).unwrap();
    let key = keys
        .iter()
        .find(|k| k.key_id == d["key_id"].as_str().unwrap())
        .expect("the signing key is published");
    let mut signed = d.clone();
    let sig = STANDARD
        .decode(
            signed
                .as_object_mut()
                .unwrap()
                .remove("signature")
                .unwrap()
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let msg = uos_audit::canonical_json(&signed);
    assert!(key.verify(msg.as_bytes(), &sig), "signature verifies");
    let mut forged = signed.clone();
    forged["allow"] = json!(!d["allow"].as_bool().unwrap());
    assert!(!key.verify(uos_audit::canonical_json(&forged).as_bytes(), &sig));
}

backend_test!(
    budgets_are_enforced_where_litellm_failed,
    |app| async move {
        let s = setup(&app).await;
        let key_principal = json!({"token": s.worker_key});

        // #22726: no budget set, no budget reason, whatever the cost.
        let d = decide(
            &app,
            &s.gateway,
            ask(key_principal.clone(), Some(1_000_000)),
        )
        .await;
        assert_eq!(d["allow"], true, "{d}");
        assert_eq!(d["reasons"], json!([]));
        assert_signed(&app, &d).await;

        // #19105: thresholds are inclusive, a cost may reach the limit but not pass it.
        set_budget(
            &app,
            &s.admin,
            &format!("service-accounts/{}/budget", s.worker_sa),
            json!({"period": "monthly", "limit_cents": 500}),
        )
        .await;
        usage(
            &app,
            &s.gateway,
            "e1",
            400,
            json!({"api_key_id": s.worker_key_id}),
        )
        .await;
        let d = decide(&app, &s.gateway, ask(key_principal.clone(), Some(100))).await;
        assert_eq!(d["allow"], true, "exactly to the limit: {d}");
        let d = decide(&app, &s.gateway, ask(key_principal.clone(), Some(101))).await;
        assert_eq!(d["allow"], false, "one cent past it: {d}");
        assert_eq!(blocking_scopes(&d), ["service_account"]);
        // A warning budget allows, with the obligation.
        let d = decide(&app, &s.gateway, ask(key_principal.clone(), Some(10))).await;
        assert_eq!(d["allow"], true);
        assert_eq!(
            d["obligations"]["budget_warning"][0]["scope"], "service_account",
            "{d}"
        );

        // #23714, through caches: the allow above was cached; spend reaching the limit blocks the
        // very next decision on this replica, by credential and by id.
        usage(
            &app,
            &s.gateway,
            "e2",
            100,
            json!({"service_account_id": s.worker_sa}),
        )
        .await;
        let by_id = json!({"type": "api_key", "id": s.worker_key_id});
        for p in [key_principal.clone(), by_id.clone()] {
            let d = decide(&app, &s.gateway, ask(p, Some(0))).await;
            assert_eq!(d["allow"], false, "{d}");
            let reason = &d["reasons"][0];
            // #4208, #14144: which budget blocked, with its numbers.
            assert_eq!(reason["code"], "budget_exceeded");
            assert_eq!(reason["budget"]["scope_id"], s.worker_sa.as_str());
            assert_eq!(reason["budget"]["spent_cents"], 500);
            assert_eq!(reason["budget"]["state"], "blocked");
        }
        let b = get_ok(
            &app,
            &s.admin,
            &format!("/v1/orgs/acme/service-accounts/{}/budget", s.worker_sa),
        )
        .await;
        assert_eq!(
            (b["spent_cents"].clone(), b["state"].clone()),
            (json!(500), json!("blocked"))
        );

        // A duplicate adds nothing.
        let r = usage(&app, &s.gateway, "e2", 100, json!({})).await;
        assert_eq!(r["duplicate"], true);

        // #17054 and #11962: the org budget holds for keys too, and every budget that applies is
        // checked and named.
        set_budget(
            &app,
            &s.admin,
            "budget",
            json!({"period": "daily", "limit_cents": 300}),
        )
        .await;
        let d = decide(&app, &s.gateway, ask(key_principal.clone(), Some(1))).await;
        assert_eq!(blocking_scopes(&d), ["org", "service_account"], "{d}");
        set_budget(
            &app,
            &s.admin,
            &format!("users/{}/budget", s.bob),
            json!({"period": "total", "limit_cents": 1000}),
        )
        .await;
        let bob = json!({"type": "user", "id": s.bob});
        let d = decide(&app, &s.gateway, ask(bob.clone(), Some(1))).await;
        assert_eq!(
            blocking_scopes(&d),
            ["org"],
            "bob's own budget is fine: {d}"
        );
        let d = decide(
            &app,
            &s.gateway,
            ask(json!({"token": s.bob_token}), Some(1)),
        )
        .await;
        assert_eq!(blocking_scopes(&d), ["org"], "by his access token: {d}");

        // #12794: the batch enforces exactly what the single evaluation does.
        let questions = vec![
            ask(key_principal.clone(), Some(1)),
            ask(bob.clone(), Some(1)),
            ask(bob.clone(), None),
            ask(json!({"type": "user", "id": uuid::Uuid::now_v7()}), None),
        ];
        let r = app
            .send(
                Req::post("/v1/policy/evaluate-batch")
                    .token(&s.gateway)
                    .json(json!({"requests": questions})),
            )
            .await;
        assert_status(&r, 200);
        for (q, batch) in questions
            .iter()
            .zip(r.body["decisions"].as_array().unwrap())
        {
            let single = decide(&app, &s.gateway, q.clone()).await;
            assert_eq!(batch["allow"], single["allow"], "{batch} vs {single}");
            let codes = |d: &Value| {
                d["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["code"].clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(codes(batch), codes(&single));
            assert_eq!(blocking_scopes(batch), blocking_scopes(&single));
            assert_signed(&app, batch).await;
        }
        assert_eq!(
            r.body["decisions"][2]["allow"], true,
            "no cost, no budget check"
        );
        assert_eq!(
            r.body["decisions"][3]["reasons"][0]["code"],
            "principal_unknown"
        );

        // Denials are audited with their reasons; state changes once per period and state.
        let denied = all_pages(&app, &s.admin, "/v1/audit/events?action=policy.denied", 100).await;
        assert!(denied.len() >= 5, "{}", denied.len());
        assert!(
            denied.iter().any(|e| e["changes"]["after"]["reasons"]
                .to_string()
                .contains("budget_exceeded")),
            "{denied:?}"
        );
        let changes = all_pages(
            &app,
            &s.admin,
            "/v1/audit/events?action=budget.state_changed",
            100,
        )
        .await;
        let states: Vec<String> = changes
            .iter()
            .map(|e| e["changes"]["after"]["state"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(states, ["warn", "blocked"], "once each: {changes:?}");

        // Allows and denials are counted.
        let r = app.send(Req::get("/metrics")).await;
        assert!(
            r.text
                .contains("uos_policy_decisions_total{result=\"deny\"}"),
            "{}",
            r.text
        );
        assert!(r
            .text
            .contains("uos_policy_decisions_total{result=\"allow\"}"));

        // A revoked key is inactive; a key of nobody is unknown.
        let r = app
            .send(
                Req::delete(format!("/v1/orgs/acme/api-keys/{}", s.worker_key_id)).token(&s.admin),
            )
            .await;
        assert!(r.status == 200 || r.status == 204, "{}", r.text);
        let d = decide(&app, &s.gateway, ask(by_id, None)).await;
        assert_eq!(d["reasons"][0]["code"], "principal_inactive", "{d}");
        let d = decide(
            &app,
            &s.gateway,
            ask(json!({"token": "uos_nothing_here"}), None),
        )
        .await;
        assert_eq!(d["reasons"][0]["code"], "principal_unknown", "{d}");
    }
);

backend_test!(
    a_repeated_allow_is_reused_until_what_it_says_changes,
    |app| async move {
        let s = setup(&app).await;
        set_budget(
            &app,
            &s.admin,
            &format!("service-accounts/{}/budget", s.worker_sa),
            json!({"period": "monthly", "limit_cents": 1000}),
        )
        .await;
        let q = ask(json!({"token": s.worker_key}), Some(10));
        let id = |d: &Value| d["decision_id"].as_str().unwrap().to_owned();

        // The same question within a second: the same signed allow.
        let first = decide(&app, &s.gateway, q.clone()).await;
        let again = decide(&app, &s.gateway, q.clone()).await;
        assert_eq!(first["allow"], true, "{first}");
        assert_eq!(again, first);
        assert_signed(&app, &again).await;
        // Another question is decided and signed on its own.
        let other = decide(
            &app,
            &s.gateway,
            ask(json!({"token": s.worker_key}), Some(11)),
        )
        .await;
        assert_ne!(id(&other), id(&first));
        // For a second at most.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let later = decide(&app, &s.gateway, q.clone()).await;
        assert_eq!(later["allow"], true);
        assert_ne!(id(&later), id(&first));

        // Spend that puts the budget at `warn` changes what the allow says: a fresh one.
        usage(
            &app,
            &s.gateway,
            "w1",
            790,
            json!({"service_account_id": s.worker_sa}),
        )
        .await;
        let warned = decide(&app, &s.gateway, q.clone()).await;
        assert_eq!(warned["allow"], true);
        assert_eq!(
            warned["obligations"]["budget_warning"][0]["spent_cents"],
            790
        );
        assert_ne!(id(&warned), id(&first));
        assert_signed(&app, &warned).await;

        // Spend that blocks it: the very next question is denied, and a denial is never
        // reused (each is decided, signed and audited).
        usage(
            &app,
            &s.gateway,
            "w2",
            210,
            json!({"service_account_id": s.worker_sa}),
        )
        .await;
        let denied = decide(&app, &s.gateway, q.clone()).await;
        assert_eq!(denied["allow"], false, "{denied}");
        let denied_again = decide(&app, &s.gateway, q.clone()).await;
        assert_eq!(denied_again["allow"], false);
        assert_ne!(id(&denied_again), id(&denied));
    }
);

backend_test!(
    bad_usage_and_questions_are_named_and_change_nothing,
    |app| async move {
        let s = setup(&app).await;
        let r = app
        .send(Req::post("/v1/usage/batch").token(&s.gateway).json(json!({"items": [
            {"org": "acme", "amount_cents": -1, "source_event_id": "a", "occurred_at": "2026-01-01T00:00:00Z"},
            {"org": "acme", "amount_cents": 5, "source_event_id": "", "occurred_at": "2026-01-01T00:00:00Z"},
        ]})))
        .await;
        assert_problem(&r, 400, "validation_failed");
        let r = app
        .send(Req::post("/v1/usage").token(&s.gateway).json(json!({"org": "acme", "amount_cents": "x", "source_event_id": "a\u{1}", "occurred_at": "no"})))
        .await;
        assert_invalid(&r, &["amount_cents", "source_event_id", "occurred_at"]);
        let r = app
            .send(
                Req::put("/v1/orgs/acme/budget")
                    .token(&s.admin)
                    .json(json!({"period": "yearly", "limit_cents": -5, "block_percent": 0})),
            )
            .await;
        assert_invalid(&r, &["period", "limit_cents", "block_percent"]);
        let r = app
        .send(Req::post("/v1/policy/evaluate").token(&s.gateway).json(json!({
            "principal": {"type": "robot", "id": "x"}, "action": "", "resource": {"type": "m", "org": "acme"},
            "context": {"cost_cents": -3}})))
        .await;
        assert_problem(&r, 400, "validation_failed");
        // Nothing was counted.
        let r = app
            .send(Req::get("/v1/orgs/acme/budget").token(&s.admin))
            .await;
        assert_problem(&r, 404, "not_found");
        // A member cannot evaluate or report usage; another org's principal is unknown here.
        let r = app
            .send(
                Req::post("/v1/policy/evaluate")
                    .token(&s.bob_token)
                    .json(ask(json!({"type": "user", "id": s.bob}), None)),
            )
            .await;
        assert_problem(&r, 403, "forbidden");
        app.create_org(&s.admin, "beta").await;
        let mut q = ask(json!({"type": "service_account", "id": s.worker_sa}), None);
        q["resource"]["org"] = json!("beta");
        let d = decide(&app, &s.admin, q).await;
        assert_eq!(d["reasons"][0]["code"], "principal_unknown", "{d}");
    }
);

backend_test!(parallel_usage_adds_up_exactly, |app| async move {
    let s = setup(&app).await;
    // A second replica on the same store takes half of the posts.
    let other = std::sync::Arc::new(app.replica(&[]).await);
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let target = if i % 2 == 1 {
            other.clone()
        } else {
            app.clone()
        };
        let token = s.gateway.clone();
        let sa = s.worker_sa.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"org": "acme", "amount_cents": 3, "source_event_id": format!("p{i}"),
                "occurred_at": chrono::Utc::now().to_rfc3339(), "service_account_id": sa});
            // A client retries a 503 (the store was saturated) with the same event id:
            // counted once whatever happened to the first try.
            loop {
                let r = target
                    .send(Req::post("/v1/usage").token(&token).json(body.clone()))
                    .await;
                if r.status != 503 {
                    break (r.status, r.text);
                }
            }
        }));
    }
    for t in tasks {
        let (status, text) = t.await.unwrap();
        assert_eq!(status, 202, "{text}");
    }
    set_budget(
        &app,
        &s.admin,
        "budget",
        json!({"period": "daily", "limit_cents": 3000}),
    )
    .await;
    let b = get_ok(&app, &s.admin, "/v1/orgs/acme/budget").await;
    assert_eq!(b["spent_cents"], 3000, "{b}");
    assert_eq!(b["state"], "blocked");
    // The other replica's decision point sees the spend within a second (its copies expire).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let d = decide(
        &other,
        &s.gateway,
        ask(json!({"token": s.worker_key}), Some(0)),
    )
    .await;
    assert_eq!(blocking_scopes(&d), ["org"], "{d}");
});

/// What a decision answers, without what differs between two asks (id, times, signature).
async fn verdict(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let r = app
        .send(
            Req::post("/v1/policy/evaluate")
                .token(token)
                .json(body.clone()),
        )
        .await;
    let gist = if r.status == 200 {
        json!({"allow": r.body["allow"], "reasons": r.body["reasons"]})
    } else {
        r.body["code"].clone()
    };
    (r.status.as_u16(), gist)
}

/// Polls `other` until it answers `want`; fails if that takes more than a second after
/// `since` (with a little slack for the scheduler).
async fn answers_within_a_second(
    other: &TestApp,
    token: &str,
    body: &Value,
    want: &(u16, Value),
    since: std::time::Instant,
) {
    loop {
        let got = verdict(other, token, body).await;
        if got == *want {
            return;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_millis(1200),
            "{:?} after the change the other replica still answers {got:?}, not {want:?}",
            since.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

backend_test!(
    org_changes_reach_the_other_replicas_decisions_within_a_second,
    |app| async move {
        let s = setup(&app).await;
        let other = app.replica(&[]).await;
        // Asked by the platform admin (a user, whose credential carries no org status) about
        // the worker's key by id: only the replicas' copies of the org can be stale. The
        // replicas share no fan-out here, so this is the bound when a message is lost.
        let q = ask(json!({"type": "api_key", "id": s.worker_key_id}), Some(1));
        let active = verdict(&app, &s.admin, &q).await;
        assert_eq!(active.0, 200, "{active:?}");
        assert_eq!(active.1["allow"], true, "{active:?}");
        // The other replica holds its copy of the active org.
        assert_eq!(verdict(&other, &s.admin, &q).await, active);
        let org_id = get_ok(&app, &s.admin, "/v1/orgs/acme").await["id"]
            .as_str()
            .unwrap()
            .to_owned();

        let change = |path: &'static str| {
            let admin = s.admin.clone();
            let app = &app;
            async move {
                let r = app
                    .send(Req::post(path).token(&admin).json(json!({})))
                    .await;
                assert_status(&r, 200);
            }
        };
        // Suspended: the replica that suspended answers for the suspended org at once, the
        // other the same within a second; resumed, both allow again.
        change("/v1/orgs/acme/suspend").await;
        let since = std::time::Instant::now();
        let suspended = verdict(&app, &s.admin, &q).await;
        // A signed denial naming why, not a refusal of the caller.
        assert_eq!(suspended.0, 200, "{suspended:?}");
        assert_eq!(suspended.1["allow"], false);
        assert_eq!(
            suspended.1["reasons"][0]["code"], "org_inactive",
            "{suspended:?}"
        );
        answers_within_a_second(&other, &s.admin, &q, &suspended, since).await;
        change("/v1/orgs/acme/resume").await;
        let since = std::time::Instant::now();
        assert_eq!(verdict(&app, &s.admin, &q).await, active);
        answers_within_a_second(&other, &s.admin, &q, &active, since).await;

        // Deleted, then purged (its slug renamed and freed), then the slug taken by a new
        // org: each seen by the other replica within a second.
        let r = app.send(Req::delete("/v1/orgs/acme").token(&s.admin)).await;
        assert_status(&r, 200);
        let since = std::time::Instant::now();
        let deleted = verdict(&app, &s.admin, &q).await;
        answers_within_a_second(&other, &s.admin, &q, &deleted, since).await;
        super::retention::age_org_deletion(&app, &org_id, 31).await;
        let report = app.state.svc.purge_expired().await.unwrap();
        assert_eq!(report.orgs, 1, "the org is purged");
        let since = std::time::Instant::now();
        let purged = verdict(&app, &s.admin, &q).await;
        assert_eq!(
            purged.0, 404,
            "the purged org's slug names no org: {purged:?}"
        );
        answers_within_a_second(&other, &s.admin, &q, &purged, since).await;
        app.create_org(&s.admin, "acme").await;
        let since = std::time::Instant::now();
        let taken = verdict(&app, &s.admin, &q).await;
        assert_eq!(
            taken.1["reasons"][0]["code"], "principal_unknown",
            "the new org has no such key: {taken:?}"
        );
        answers_within_a_second(&other, &s.admin, &q, &taken, since).await;
    }
);
