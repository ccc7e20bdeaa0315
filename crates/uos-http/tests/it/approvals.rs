//! The one approval mechanism through the API: budget overrides and break-glass access each
//! need two distinct approvers other than the requester, expire, can be rejected and revoked,
//! and every step is audited and notified. (Privileged password resets use it too: see
//! `recovery.rs`.)

use super::*;
use uos_testkit::Backend;

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> TestResponse {
    app.send(Req::post(path).token(token).json(body)).await
}

async fn step(app: &TestApp, token: &str, path: &str) -> TestResponse {
    app.send(Req::post(path).token(token)).await
}

/// A decision with `cost` for the gateway key itself.
async fn allowed(app: &TestApp, gateway: &str, cost: i64) -> bool {
    let r = post(
        app,
        gateway,
        "/v1/policy/evaluate",
        json!({
            "principal": {"token": gateway},
            "action": "llm.invoke",
            "resource": {"type": "model", "org": "acme"},
            "context": {"cost_cents": cost},
        }),
    )
    .await;
    assert_status(&r, 200);
    r.body["allow"].as_bool().unwrap()
}

/// The audit actions recorded about `target`, oldest first.
async fn audited(app: &TestApp, target: &str) -> Vec<String> {
    all_audit(app)
        .await
        .iter()
        .filter(|e| e["target"]["id"] == target)
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Org `acme` with a total budget of 1000 cents, all spent, and a gateway key that asks for
/// decisions: the gateway's service account id and key.
async fn spent_budget(app: &TestApp, admin: &str) -> (String, String) {
    let r = post(
        app,
        admin,
        "/v1/orgs/acme/service-accounts",
        json!({"name": "gw", "roles": ["admin"]}),
    )
    .await;
    assert_status(&r, 201);
    let sa = r.body["id"].as_str().unwrap().to_owned();
    let r = post(
        app,
        admin,
        &format!("/v1/orgs/acme/service-accounts/{sa}/api-keys"),
        json!({"name": "k", "scopes": ["policy:evaluate", "usage:write"]}),
    )
    .await;
    assert_status(&r, 201);
    let gateway = r.body["secret"].as_str().unwrap().to_owned();
    let r = app
        .send(
            Req::put("/v1/orgs/acme/budget")
                .token(admin)
                .json(json!({"period": "total", "limit_cents": 1000})),
        )
        .await;
    assert_status(&r, 201);
    let r = post(
        app,
        &gateway,
        "/v1/usage",
        json!({"org": "acme", "amount_cents": 1000, "source_event_id": "e1",
               "occurred_at": chrono::Utc::now().to_rfc3339()}),
    )
    .await;
    assert_status(&r, 202);
    (sa, gateway)
}

backend_test!(
    concurrent_approvals_on_two_replicas_activate_once,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let (_, ann) = app
            .add_member(&admin, "acme", "ann@example.com", &["admin"])
            .await;
        let (_, al) = app
            .add_member(&admin, "acme", "al@example.com", &["admin"])
            .await;
        let (_, gateway) = spent_budget(&app, &admin).await;
        let other = app.replica(&[]).await;
        assert!(!allowed(&other, &gateway, 1).await, "the budget is spent");
        let r = post(
            &app,
            &ann,
            "/v1/orgs/acme/budget/overrides",
            json!({"reason": "launch", "extra_cents": 100, "expires_in_hours": 1}),
        )
        .await;
        assert_status(&r, 201);
        let path = format!(
            "/v1/orgs/acme/budget/overrides/{}/approve",
            r.body["id"].as_str().unwrap()
        );
        // Both approvals at once, one on each replica: both count, the grant activates once.
        let (a, b) = tokio::join!(step(&app, &al, &path), step(&other, &admin, &path));
        assert_status(&a, 200);
        assert_status(&b, 200);
        let mut statuses = [a.body["status"].clone(), b.body["status"].clone()];
        statuses.sort_by_key(|v| v.to_string());
        assert_eq!(statuses, [json!("active"), json!("pending")]);
        let got = get_ok(&app, &ann, path.trim_end_matches("/approve")).await;
        assert_eq!(got["approvals"].as_array().unwrap().len(), 2, "{got}");
        // The replica that did not take the activating step sees the override within a second.
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert!(allowed(&other, &gateway, 100).await);
        assert!(allowed(&app, &gateway, 100).await);
    }
);

backend_test!(
    budget_overrides_need_two_approvers_and_raise_the_limit,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let (_, ann) = app
            .add_member(&admin, "acme", "ann@example.com", &["admin"])
            .await;
        let (_, al) = app
            .add_member(&admin, "acme", "al@example.com", &["admin"])
            .await;
        let (_, bill) = app
            .add_member(&admin, "acme", "bill@example.com", &["billing"])
            .await;
        let (_, mo) = app
            .add_member(&admin, "acme", "mo@example.com", &["member"])
            .await;
        let (sa, gateway) = spent_budget(&app, &admin).await;
        assert!(!allowed(&app, &gateway, 1).await, "the budget is spent");

        // Bad input names every bad field and files nothing.
        let overrides = "/v1/orgs/acme/budget/overrides";
        let r = post(
            &app,
            &bill,
            overrides,
            json!({"reason": "", "extra_cents": 0, "expires_in_hours": 0, "scope": "team"}),
        )
        .await;
        assert_invalid(&r, &["reason", "extra_cents", "expires_in_hours", "scope"]);
        let r = post(
            &app,
            &bill,
            overrides,
            json!({"reason": " ", "extra_cents": 5, "expires_in_hours": 1}),
        )
        .await;
        assert_invalid(&r, &["reason"]);
        // A budget that does not exist cannot be raised.
        let missing = format!("service_account:{sa}");
        let r = post(
            &app,
            &bill,
            overrides,
            json!({"reason": "x", "extra_cents": 5, "expires_in_hours": 1, "scope": missing}),
        )
        .await;
        assert_problem(&r, 404, "not_found");
        // A member without billing:write cannot ask.
        let r = post(
            &app,
            &mo,
            overrides,
            json!({"reason": "x", "extra_cents": 5, "expires_in_hours": 1}),
        )
        .await;
        assert_problem(&r, 403, "forbidden");

        let r = post(
            &app,
            &ann,
            overrides,
            json!({"reason": "launch week", "extra_cents": 500, "expires_in_hours": 2}),
        )
        .await;
        assert_status(&r, 201);
        assert_eq!(r.body["status"], "pending");
        assert_eq!(
            r.body["scope"],
            json!({"type": "org", "id": r.body["org_id"]})
        );
        assert_eq!(r.body["approvals_required"], 2);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let path = format!("{overrides}/{id}");

        // Never the requester; never someone without billing:approve; nobody twice.
        let r = step(&app, &ann, &format!("{path}/approve")).await;
        assert_forbidden(&r, "second_approver_required");
        let r = step(&app, &bill, &format!("{path}/approve")).await;
        assert_problem(&r, 403, "forbidden");
        let r = step(&app, &al, &format!("{path}/approve")).await;
        assert_status(&r, 200);
        assert_eq!(r.body["status"], "pending");
        let r = step(&app, &al, &format!("{path}/approve")).await;
        assert_conflict(&r, "already_approved");
        assert!(
            !allowed(&app, &gateway, 1).await,
            "one approval raises nothing"
        );

        let r = step(&app, &admin, &format!("{path}/approve")).await;
        assert_status(&r, 200);
        assert_eq!(r.body["status"], "active");
        assert!(r.body["active_until"].is_string());
        assert!(
            allowed(&app, &gateway, 500).await,
            "the override is in force at once"
        );
        assert!(
            !allowed(&app, &gateway, 501).await,
            "and only up to its amount"
        );
        let budget = get_ok(&app, &bill, "/v1/orgs/acme/budget").await;
        assert_eq!(budget["effective_limit_cents"], 1500);
        assert_eq!(
            budget["state"], "ok",
            "1000 of 1500 is under the warning threshold"
        );

        let listed = get_ok(&app, &bill, &format!("{overrides}?status=active")).await;
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
        let listed = get_ok(&app, &bill, &format!("{overrides}?status=pending")).await;
        assert_eq!(listed["items"], json!([]));
        let r = app
            .send(Req::get(format!("{overrides}?status=maybe")).token(&bill))
            .await;
        assert_invalid(&r, &["status"]);

        // Revoked: the limit is back, and a closed request takes no more steps.
        let r = step(&app, &al, &format!("{path}/revoke")).await;
        assert_status(&r, 200);
        assert_eq!(r.body["status"], "revoked");
        assert!(!allowed(&app, &gateway, 1).await);
        let r = step(&app, &admin, &format!("{path}/approve")).await;
        assert_conflict(&r, "approval_closed");

        // A rejected request never becomes active.
        let r = post(
            &app,
            &bill,
            overrides,
            json!({"reason": "again", "extra_cents": 100, "expires_in_hours": 1}),
        )
        .await;
        assert_status(&r, 201);
        let second = format!("{overrides}/{}", r.body["id"].as_str().unwrap());
        let r = step(&app, &ann, &format!("{second}/reject")).await;
        assert_eq!(r.body["status"], "rejected", "{}", r.text);
        let r = step(&app, &al, &format!("{second}/approve")).await;
        assert_conflict(&r, "approval_closed");

        // Another org's people see nothing of it.
        let (_, stranger) = owned_org(&app, "other", "olga@example.com").await;
        let r = app.send(Req::get(&path).token(&stranger)).await;
        assert_problem(&r, 404, "not_found");
        let r = step(&app, &stranger, &format!("{path}/revoke")).await;
        assert_problem(&r, 404, "not_found");

        assert_eq!(
            audited(&app, &id).await,
            [
                "approval.requested",
                "approval.approved",
                "approval.approved",
                "approval.revoked"
            ]
        );
    }
);

backend_test!(
    a_request_past_its_time_cannot_be_approved,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        let (_, ann) = app
            .add_member(&admin, "acme", "ann@example.com", &["admin"])
            .await;
        let r = app
            .send(
                Req::put("/v1/orgs/acme/budget")
                    .token(&admin)
                    .json(json!({"period": "total", "limit_cents": 10})),
            )
            .await;
        assert_status(&r, 201);
        let r = post(
            &app,
            &ann,
            "/v1/orgs/acme/budget/overrides",
            json!({"reason": "x", "extra_cents": 5, "expires_in_hours": 1}),
        )
        .await;
        assert_status(&r, 201);
        let id: uuid::Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
        // The same request, filed a day ago: its approval window has closed.
        let store = app.state.svc.store().clone();
        let mut tx = store.begin().await.unwrap();
        let mut a = tx.get_approval(id).await.unwrap().unwrap();
        a.id = uuid::Uuid::now_v7();
        a.created_at -= chrono::Duration::days(1);
        a.pending_until = chrono::Utc::now() - chrono::Duration::minutes(1);
        tx.insert_approval(&a).await.unwrap();
        tx.commit().await.unwrap();
        let path = format!("/v1/orgs/acme/budget/overrides/{}", a.id);
        let got = get_ok(&app, &ann, &path).await;
        assert_eq!(got["status"], "expired");
        let r = step(&app, &admin, &format!("{path}/approve")).await;
        assert_problem(&r, 410, "approval_expired");
        let r = step(&app, &admin, &format!("{path}/revoke")).await;
        assert_problem(&r, 410, "approval_expired");
        // The sweep records the expiry once, whoever runs it how often.
        assert_eq!(app.state.svc.expire_lapsed_approvals().await.unwrap(), 1);
        assert_eq!(app.state.svc.expire_lapsed_approvals().await.unwrap(), 0);
        let id = a.id.to_string();
        assert_eq!(audited(&app, &id).await, ["approval.expired"]);
        let got = get_ok(&app, &ann, &path).await;
        assert_eq!(got["status"], "expired");
        let listed = get_ok(&app, &ann, "/v1/orgs/acme/budget/overrides?status=expired").await;
        assert_eq!(listed["items"][0]["id"], id.as_str());
    }
);

async fn break_glass_scenario(backend: Backend) {
    let (url, got) = webhook_receiver(false).await;
    let app = TestApp::spawn_with(backend, &webhook_settings(&url)).await;
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    app.create_org(&admin, "ops").await;
    let (_, dana) = platform_admin(&app, "ops", "dana@example.com").await;
    let (oncall_id, oncall) = app
        .add_member(&admin, "ops", "oncall@example.com", &["member"])
        .await;
    let members = "/v1/orgs/acme/users";
    let r = app.send(Req::get(members).token(&oncall)).await;
    assert_problem(&r, 404, "not_found");

    let r = post(
        &app,
        &oncall,
        "/v1/break-glass",
        json!({"org": "acme", "roles": [], "reason": "", "duration_minutes": 241}),
    )
    .await;
    assert_invalid(&r, &["roles", "reason", "duration_minutes"]);
    let r = post(
        &app,
        &oncall,
        "/v1/break-glass",
        json!({"org": "nowhere", "roles": ["auditor"], "reason": "x", "duration_minutes": 5}),
    )
    .await;
    assert_problem(&r, 404, "not_found");

    let r = post(&app, &oncall, "/v1/break-glass", json!({"org": "acme", "roles": ["auditor"], "reason": "INC-42: billing outage", "duration_minutes": 30})).await;
    assert_status(&r, 201);
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["roles"], json!(["auditor"]));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/break-glass/{id}");

    // Only platform admins decide, never the requester, and one is not enough.
    let r = step(&app, &oncall, &format!("{path}/approve")).await;
    assert_forbidden(&r, "platform_admin_required");
    let r = app.send(Req::get("/v1/break-glass").token(&oncall)).await;
    assert_forbidden(&r, "platform_admin_required");
    let r = step(&app, &dana, &format!("{path}/approve")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "pending");
    let r = app.send(Req::get(members).token(&oncall)).await;
    assert_problem(&r, 404, "not_found");
    let r = post(
        &app,
        &dana,
        "/v1/break-glass",
        json!({"roles": ["owner"], "reason": "mine", "duration_minutes": 5}),
    )
    .await;
    assert_status(&r, 201);
    let own = r.body["id"].as_str().unwrap().to_owned();
    let r = step(&app, &dana, &format!("/v1/break-glass/{own}/approve")).await;
    assert_forbidden(&r, "second_approver_required");

    let r = step(&app, &admin, &format!("{path}/approve")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");

    // The grant works in its org, with its roles only, and each use is audited.
    let r = app.send(Req::get(members).token(&oncall)).await;
    assert_status(&r, 200);
    let r = app
        .send(Req::get("/v1/orgs/acme/roles").token(&oncall))
        .await;
    assert_status(&r, 200);
    let r = post(
        &app,
        &oncall,
        "/v1/orgs/acme/invites",
        json!({"email": "x@example.com", "roles": ["member"]}),
    )
    .await;
    assert_problem(&r, 403, "forbidden");
    let r = app
        .send(Req::get("/v1/orgs/ops/budget").token(&oncall))
        .await;
    assert_ne!(r.status, 200, "the grant is for acme only: {}", r.text);

    let mut uses = Vec::new();
    for _ in 0..50 {
        uses = all_audit(&app)
            .await
            .into_iter()
            .filter(|e| e["action"] == "break_glass.used")
            .collect();
        if uses.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(uses.len() >= 2, "{uses:?}");
    for u in &uses {
        assert_eq!(u["target"]["id"], id.as_str(), "{u}");
        assert_eq!(u["actor"]["id"], oncall_id.as_str());
    }
    let used: Vec<_> = uses
        .iter()
        .map(|u| u["changes"]["after"]["action"].clone())
        .collect();
    assert!(used.contains(&json!("member.list")), "{used:?}");

    // Revoked: back to nothing, at once on this replica.
    let r = step(&app, &dana, &format!("{path}/revoke")).await;
    assert_eq!(r.body["status"], "revoked", "{}", r.text);
    let r = app.send(Req::get(members).token(&oncall)).await;
    assert_problem(&r, 404, "not_found");
    let listed = get_ok(&app, &admin, "/v1/break-glass?status=revoked").await;
    assert_eq!(listed["items"][0]["id"], id.as_str());

    assert_eq!(
        &audited(&app, &id).await[..4],
        [
            "approval.requested",
            "approval.approved",
            "approval.approved",
            "break_glass.used"
        ]
    );

    // The webhooks heard of the request, each approval, the first use and the revocation.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = got
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.body.contains(&id))
            .map(|r| r.event.clone())
            .collect::<Vec<_>>();
        if events.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    events.sort();
    assert_eq!(
        events,
        [
            "break_glass.approved",
            "break_glass.approved",
            "break_glass.requested",
            "break_glass.revoked",
            "break_glass.used",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_grants_roles_for_a_while_sqlite() {
    break_glass_scenario(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn break_glass_grants_roles_for_a_while_postgres() {
    break_glass_scenario(Backend::Postgres).await;
}
