//! Org members: list and read, replace roles, suspend and reactivate within the org, remove.

use super::*;

backend_test!(list_and_read_members, |app| async move {
    let (alice_id, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["member"])
        .await;
    let (carl_id, _) = app
        .add_member(&alice, "acme", "carl@example.com", &["auditor"])
        .await;

    let items = all_pages(&app, &alice, "/v1/orgs/acme/users", 1).await;
    let ids: Vec<&str> = items
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [alice_id.as_str(), bob_id.as_str(), carl_id.as_str()],
        "join order, one per page"
    );
    assert_eq!(items[1]["email"], "bob@example.com");
    assert_eq!(items[1]["roles"], json!(["member"]));
    assert_eq!(items[1]["status"], "active");
    assert_eq!(items[1]["user_status"], "active");

    // A plain member may read the member list (users:read).
    let r = app
        .send(Req::get(format!("/v1/orgs/acme/users/{carl_id}")).token(&bob))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["roles"], json!(["auditor"]));
    r.etag();
    let page = get_ok(&app, &bob, "/v1/orgs/acme/users?limit=2").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_page_token"].as_str().is_some());
    let last = get_ok(&app, &bob, "/v1/orgs/acme/users?limit=3").await;
    assert_eq!(
        last["next_page_token"],
        Value::Null,
        "no next page after the last item"
    );

    let r = app
        .send(Req::get("/v1/orgs/acme/users/0190aaaa-0000-7000-8000-000000000000").token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::get("/v1/orgs/acme/users/not-a-uuid").token(&alice))
        .await;
    assert_invalid(&r, &["user_id"]);
    let r = app
        .send(Req::get("/v1/orgs/absent/users").token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(replace_roles, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["member"])
        .await;
    let (_, adam) = app
        .add_member(&alice, "acme", "adam@example.com", &["admin"])
        .await;
    let path = format!("/v1/orgs/acme/users/{bob_id}/roles");

    let r = app
        .send(
            Req::put(path.clone())
                .token(&alice)
                .json(json!({"roles": ["admin", "billing", "admin"]})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(
        r.body["roles"],
        json!(["admin", "billing"]),
        "duplicates dropped, order kept"
    );
    let v = r.etag();
    let g = app
        .send(Req::get(format!("/v1/orgs/acme/users/{bob_id}")).token(&alice))
        .await;
    assert_eq!(g.body["roles"], json!(["admin", "billing"]));
    assert_eq!(g.etag(), v);
    // The new roles take effect on bob's next request.
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&bob)
                .json(json!({"email": "new@example.com", "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);

    // An admin may change non-owner roles ...
    let r = app
        .send(
            Req::put(path.clone())
                .token(&adam)
                .json(json!({"roles": ["member"]})),
        )
        .await;
    assert_status(&r, 200);
    // ... a member may not change any.
    let (_, max) = app
        .add_member(&alice, "acme", "max@example.com", &["member"])
        .await;
    let r = app
        .send(
            Req::put(path.clone())
                .token(&max)
                .json(json!({"roles": ["admin"]})),
        )
        .await;
    assert_forbidden(&r, "missing_permission:users:write");

    let audit = audit_changes(&app).await;
    let r = app
        .send(
            Req::put(path.clone())
                .token(&alice)
                .json(json!({"roles": ["nope", "member", "ghost"]})),
        )
        .await;
    assert_invalid(&r, &["roles[0]", "roles[2]"]);
    let r = app
        .send(
            Req::put(path.clone())
                .token(&alice)
                .json(json!({"roles": vec!["member"; 21]})),
        )
        .await;
    assert_invalid(&r, &["roles"]);
    let r = app
        .send(
            Req::put(path.clone())
                .token(&alice)
                .json(json!({"roles": ["Not Valid"]})),
        )
        .await;
    assert_invalid(&r, &["roles"]);
    let r = app
        .send(
            Req::put("/v1/orgs/acme/users/0190aaaa-0000-7000-8000-000000000000/roles")
                .token(&alice)
                .json(json!({"roles": ["member"]})),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    assert_eq!(audit_changes(&app).await, audit);
    let g = get_ok(&app, &alice, &format!("/v1/orgs/acme/users/{bob_id}")).await;
    assert_eq!(g["roles"], json!(["member"]));
});

backend_test!(suspend_and_reactivate_membership, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["admin"])
        .await;
    let r = app
        .send(Req::post(format!("/v1/orgs/acme/users/{bob_id}/suspend")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "suspended");
    assert_eq!(
        r.body["user_status"], "active",
        "only the membership is suspended"
    );
    let r = app
        .send(Req::post(format!("/v1/orgs/acme/users/{bob_id}/suspend")).token(&alice))
        .await;
    assert_problem(&r, 409, "conflict");

    // Bob can still log in and see himself, but not act in the org.
    get_ok(&app, &bob, "/v1/me").await;
    let r = app.send(Req::get("/v1/orgs/acme").token(&bob)).await;
    assert_forbidden(&r, "membership_suspended");
    let suspended = get_ok(&app, &alice, "/v1/orgs/acme/users?status=suspended").await;
    let ids: Vec<&str> = suspended["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [bob_id.as_str()]);

    let r = app
        .send(Req::post(format!("/v1/orgs/acme/users/{bob_id}/reactivate")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");
    let r = app
        .send(Req::post(format!("/v1/orgs/acme/users/{bob_id}/reactivate")).token(&alice))
        .await;
    assert_problem(&r, 409, "conflict");
    get_ok(&app, &bob, "/v1/orgs/acme").await;
    let active = get_ok(&app, &alice, "/v1/orgs/acme/users?status=active").await;
    assert_eq!(active["items"].as_array().unwrap().len(), 2);
});

backend_test!(remove_member, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["member"])
        .await;
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/users/{bob_id}")).token(&alice))
        .await;
    assert_status(&r, 204);
    assert!(r.text.is_empty(), "204 has no body: {}", r.text);
    let r = app
        .send(Req::get(format!("/v1/orgs/acme/users/{bob_id}")).token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/users/{bob_id}")).token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
    // Bob's account is untouched; the org is simply invisible to him now.
    let me = get_ok(&app, &bob, "/v1/me").await;
    assert_eq!(me["orgs"], json!([]));
    let r = app.send(Req::get("/v1/orgs/acme").token(&bob)).await;
    assert_problem(&r, 404, "not_found");
    // He can be invited back.
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&alice)
                .json(json!({"email": "bob@example.com", "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);
});
