//! Tenant isolation and in-org authorization: another org is invisible (404, never 403), plain
//! members are refused admin actions with the rule named, only owners make owners, and an org
//! always keeps an owner.

use super::*;

/// Org `alpha` owned by alice and org `bravo` owned by bea, with a member, a custom role and a
/// pending invite in bravo. Returns alice's token and the bravo ids to aim at.
struct TwoOrgs {
    alice: String,
    bea: String,
    bravo_member: String,
    bravo_invite: String,
}

async fn two_orgs(app: &TestApp) -> TwoOrgs {
    let (_, alice) = owned_org(app, "alpha", "alice@example.com").await;
    let (_, bea) = owned_org(app, "bravo", "bea@example.com").await;
    let (bravo_member, _) = app
        .add_member(&bea, "bravo", "bert@example.com", &["member"])
        .await;
    let r = app
        .send(
            Req::post("/v1/orgs/bravo/roles")
                .token(&bea)
                .json(json!({"name": "crew", "permissions": ["org:read"]})),
        )
        .await;
    assert_status(&r, 201);
    let r = app
        .send(
            Req::post("/v1/orgs/bravo/invites")
                .token(&bea)
                .json(json!({"email": "later@example.com", "roles": ["member"]})),
        )
        .await;
    assert_status(&r, 201);
    let bravo_invite = r.body["id"].as_str().unwrap().to_string();
    TwoOrgs {
        alice,
        bea,
        bravo_member,
        bravo_invite,
    }
}

/// Every org-scoped endpoint, aimed at `slug` with the given member, invite and role.
fn org_endpoints(slug: &str, member: &str, invite: &str, role: &str) -> Vec<Req> {
    vec![
        Req::get(format!("/v1/orgs/{slug}")),
        Req::patch(format!("/v1/orgs/{slug}")).json(json!({"display_name": "pwned"})),
        Req::delete(format!("/v1/orgs/{slug}")),
        Req::post(format!("/v1/orgs/{slug}/suspend")),
        Req::post(format!("/v1/orgs/{slug}/resume")),
        Req::post(format!("/v1/orgs/{slug}/restore")),
        Req::get(format!("/v1/orgs/{slug}/users")),
        Req::get(format!("/v1/orgs/{slug}/users/{member}")),
        Req::put(format!("/v1/orgs/{slug}/users/{member}/roles")).json(json!({"roles": ["admin"]})),
        Req::post(format!("/v1/orgs/{slug}/users/{member}/suspend")),
        Req::post(format!("/v1/orgs/{slug}/users/{member}/reactivate")),
        Req::delete(format!("/v1/orgs/{slug}/users/{member}")),
        Req::post(format!("/v1/orgs/{slug}/invites"))
            .json(json!({"email": "spy@example.com", "roles": ["member"]})),
        Req::get(format!("/v1/orgs/{slug}/invites")),
        Req::delete(format!("/v1/orgs/{slug}/invites/{invite}")),
        Req::post(format!("/v1/orgs/{slug}/roles"))
            .json(json!({"name": "spy", "permissions": ["org:read"]})),
        Req::get(format!("/v1/orgs/{slug}/roles")),
        Req::get(format!("/v1/orgs/{slug}/roles/{role}")),
        Req::patch(format!("/v1/orgs/{slug}/roles/{role}"))
            .json(json!({"permissions": ["org:delete"]})),
        Req::delete(format!("/v1/orgs/{slug}/roles/{role}")),
        Req::get(format!("/v1/audit/events?org={slug}")),
    ]
}

backend_test!(another_orgs_endpoints_are_all_404, |app| async move {
    let w = two_orgs(&app).await;
    let audit = audit_changes(&app).await;
    let before = (
        get_ok(&app, &w.bea, "/v1/orgs/bravo").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/users").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/roles").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/invites").await,
    );

    let against_bravo = org_endpoints("bravo", &w.bravo_member, &w.bravo_invite, "crew");
    let against_nothing = org_endpoints("no-such-org", &w.bravo_member, &w.bravo_invite, "crew");
    assert_eq!(against_bravo.len(), against_nothing.len());
    for (req, ghost) in against_bravo.into_iter().zip(against_nothing) {
        let label = format!("{req:?}");
        let r = app.send(req.token(&w.alice)).await;
        assert_eq!(
            r.status, 404,
            "alice (owner of alpha) on {label} must get 404: {}",
            r.text
        );
        assert_problem(&r, 404, "not_found");
        // Indistinguishable from an org that does not exist.
        let g = app.send(ghost.token(&w.alice)).await;
        let strip = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("request_id");
            v
        };
        assert_eq!(
            strip(&r.body),
            strip(&g.body),
            "{label}: an existing org looks like an absent one"
        );
    }
    let orgs = all_pages(&app, &w.alice, "/v1/orgs", 50).await;
    let slugs: Vec<&str> = orgs.iter().map(|o| o["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["alpha"], "alice lists only her org");
    let orgs = all_pages(&app, &w.alice, "/v1/orgs?include_deleted=true", 50).await;
    assert_eq!(orgs.len(), 1);

    assert_eq!(
        audit_changes(&app).await,
        audit,
        "nothing happened in bravo"
    );
    let after = (
        get_ok(&app, &w.bea, "/v1/orgs/bravo").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/users").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/roles").await,
        get_ok(&app, &w.bea, "/v1/orgs/bravo/invites").await,
    );
    assert_eq!(after, before);
    // Alice's own org still answers her (the 404s were about bravo, not her).
    get_ok(&app, &w.alice, "/v1/orgs/alpha").await;
});

backend_test!(
    members_of_a_get_403_naming_the_rule_on_admin_actions,
    |app| async move {
        let (alice_id, alice) = owned_org(&app, "alpha", "alice@example.com").await;
        let (max_id, max) = app
            .add_member(&alice, "alpha", "max@example.com", &["member"])
            .await;
        let r = app
            .send(
                Req::post("/v1/orgs/alpha/roles")
                    .token(&alice)
                    .json(json!({"name": "crew", "permissions": ["org:read"]})),
            )
            .await;
        assert_status(&r, 201);
        let r = app
            .send(
                Req::post("/v1/orgs/alpha/invites")
                    .token(&alice)
                    .json(json!({"email": "later@example.com", "roles": ["member"]})),
            )
            .await;
        let invite = r.body["id"].as_str().unwrap().to_string();
        let audit = audit_changes(&app).await;

        let cases: Vec<(Req, &str)> = vec![
            (
                Req::patch("/v1/orgs/alpha").json(json!({"display_name": "x"})),
                "missing_permission:org:update",
            ),
            (
                Req::delete("/v1/orgs/alpha"),
                "missing_permission:org:delete",
            ),
            (
                Req::post("/v1/orgs/alpha/suspend"),
                "missing_permission:org:suspend",
            ),
            (
                Req::put(format!("/v1/orgs/alpha/users/{alice_id}/roles"))
                    .json(json!({"roles": ["member"]})),
                "missing_permission:users:write",
            ),
            (
                Req::put(format!("/v1/orgs/alpha/users/{max_id}/roles"))
                    .json(json!({"roles": ["admin"]})),
                "missing_permission:users:write",
            ),
            (
                Req::post(format!("/v1/orgs/alpha/users/{alice_id}/suspend")),
                "missing_permission:users:write",
            ),
            (
                Req::delete(format!("/v1/orgs/alpha/users/{alice_id}")),
                "missing_permission:users:write",
            ),
            (
                Req::post("/v1/orgs/alpha/invites")
                    .json(json!({"email": "x@example.com", "roles": ["member"]})),
                "missing_permission:invites:write",
            ),
            (
                Req::get("/v1/orgs/alpha/invites"),
                "missing_permission:invites:read",
            ),
            (
                Req::delete(format!("/v1/orgs/alpha/invites/{invite}")),
                "missing_permission:invites:write",
            ),
            (
                Req::post("/v1/orgs/alpha/roles").json(json!({"name": "x", "permissions": []})),
                "missing_permission:roles:write",
            ),
            (
                Req::patch("/v1/orgs/alpha/roles/crew")
                    .json(json!({"permissions": ["org:delete"]})),
                "missing_permission:roles:write",
            ),
            (
                Req::delete("/v1/orgs/alpha/roles/crew"),
                "missing_permission:roles:write",
            ),
            (
                Req::get("/v1/audit/events?org=alpha"),
                "missing_permission:audit:read",
            ),
        ];
        for (req, rule) in cases {
            let label = format!("{req:?}");
            let r = app.send(req.token(&max)).await;
            assert_eq!(r.status, 403, "member on {label}: {}", r.text);
            assert_forbidden(&r, rule);
        }
        // What a member may do.
        for path in [
            "/v1/orgs/alpha",
            "/v1/orgs/alpha/users",
            "/v1/orgs/alpha/roles",
            "/v1/orgs/alpha/roles/crew",
        ] {
            get_ok(&app, &max, path).await;
        }
        assert_eq!(
            audit_changes(&app).await,
            audit,
            "refused actions change nothing"
        );
    }
);

backend_test!(only_owners_grant_owner, |app| async move {
    let (_, alice) = owned_org(&app, "alpha", "alice@example.com").await;
    let (_, adam) = app
        .add_member(&alice, "alpha", "adam@example.com", &["admin"])
        .await;
    let (max_id, _) = app
        .add_member(&alice, "alpha", "max@example.com", &["member"])
        .await;
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{max_id}/roles"))
                .token(&adam)
                .json(json!({"roles": ["owner"]})),
        )
        .await;
    assert_forbidden(&r, "owner_required");
    let r = app
        .send(
            Req::post("/v1/orgs/alpha/invites")
                .token(&adam)
                .json(json!({"email": "boss@example.com", "roles": ["member", "owner"]})),
        )
        .await;
    assert_forbidden(&r, "owner_required");
    let g = get_ok(&app, &alice, &format!("/v1/orgs/alpha/users/{max_id}")).await;
    assert_eq!(g["roles"], json!(["member"]));
    // Nor can an admin make themselves owner.
    let adam_id = my_id(&app, &adam).await;
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{adam_id}/roles"))
                .token(&adam)
                .json(json!({"roles": ["owner"]})),
        )
        .await;
    assert_forbidden(&r, "owner_required");
    // ... or take it from an owner.
    let alice_id = my_id(&app, &alice).await;
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{alice_id}/roles"))
                .token(&adam)
                .json(json!({"roles": ["member"]})),
        )
        .await;
    assert_forbidden(&r, "owner_required");
    // The owner can.
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{max_id}/roles"))
                .token(&alice)
                .json(json!({"roles": ["owner"]})),
        )
        .await;
    assert_status(&r, 200);
});

backend_test!(the_last_owner_stays, |app| async move {
    let (alice_id, alice) = owned_org(&app, "alpha", "alice@example.com").await;
    let admin = app.admin_token().await;
    let audit = audit_changes(&app).await;
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{alice_id}/roles"))
                .token(&alice)
                .json(json!({"roles": ["admin"]})),
        )
        .await;
    assert_conflict(&r, "last_owner");
    let r = app
        .send(Req::delete(format!("/v1/orgs/alpha/users/{alice_id}")).token(&alice))
        .await;
    assert_conflict(&r, "last_owner");
    let r = app
        .send(Req::post(format!("/v1/orgs/alpha/users/{alice_id}/suspend")).token(&alice))
        .await;
    assert_conflict(&r, "last_owner");
    // Not even the platform admin can strip the last owner.
    let r = app
        .send(Req::delete(format!("/v1/orgs/alpha/users/{alice_id}")).token(&admin))
        .await;
    assert_conflict(&r, "last_owner");
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{alice_id}/roles"))
                .token(&admin)
                .json(json!({"roles": ["member"]})),
        )
        .await;
    assert_conflict(&r, "last_owner");
    assert_eq!(
        audit_changes(&app).await,
        audit,
        "refused demotions change nothing"
    );
    let g = get_ok(&app, &alice, &format!("/v1/orgs/alpha/users/{alice_id}")).await;
    assert_eq!(g["roles"], json!(["owner"]));
    assert_eq!(g["status"], "active");

    // With a second owner, the first may step down.
    let (olly_id, olly) = app
        .add_member(&alice, "alpha", "olly@example.com", &["owner"])
        .await;
    let r = app
        .send(
            Req::put(format!("/v1/orgs/alpha/users/{alice_id}/roles"))
                .token(&alice)
                .json(json!({"roles": ["admin"]})),
        )
        .await;
    assert_status(&r, 200);
    // Now olly is the last one.
    let r = app
        .send(Req::delete(format!("/v1/orgs/alpha/users/{olly_id}")).token(&olly))
        .await;
    assert_conflict(&r, "last_owner");
    // A suspended owner does not count as keeping the org owned.
    let (_, _) = app
        .add_member(&olly, "alpha", "otto@example.com", &["owner"])
        .await;
    let otto_id = {
        let list = all_pages(&app, &olly, "/v1/orgs/alpha/users", 50).await;
        list.iter()
            .find(|m| m["email"] == "otto@example.com")
            .unwrap()["user_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let r = app
        .send(Req::post(format!("/v1/orgs/alpha/users/{otto_id}/suspend")).token(&olly))
        .await;
    assert_status(&r, 200);
    let r = app
        .send(Req::delete(format!("/v1/orgs/alpha/users/{olly_id}")).token(&olly))
        .await;
    assert_conflict(&r, "last_owner");
});
