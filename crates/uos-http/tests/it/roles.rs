//! Custom roles: create, list, read (built-ins too), change, delete; the role graph stays
//! acyclic, permissions come from the catalogue, and roles in use stay.

use super::*;

fn role(name: &str, permissions: Value, inherits: Value) -> Value {
    json!({"name": name, "permissions": permissions, "inherits": inherits})
}

backend_test!(create_list_read_update_delete, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = app.send(Req::post("/v1/orgs/acme/roles").token(&alice).json(json!({"name": "support", "description": "Helps", "permissions": ["invites:write", "invites:read", "invites:write"], "inherits": ["member"]}))).await;
    assert_status(&r, 201);
    assert_eq!(r.body["name"], "support");
    assert_eq!(r.body["builtin"], false);
    assert_eq!(
        r.body["permissions"],
        json!(["invites:read", "invites:write"]),
        "deduplicated"
    );
    assert_eq!(r.body["inherits"], json!(["member"]));
    let v1 = r.etag();
    let r = app
        .send(Req::post("/v1/orgs/acme/roles").token(&alice).json(role(
            "analyst",
            json!(["audit:read"]),
            json!([]),
        )))
        .await;
    assert_status(&r, 201);

    let list = all_pages(&app, &alice, "/v1/orgs/acme/roles", 1).await;
    let names: Vec<&str> = list.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["analyst", "support"], "custom roles by name");

    let r = app
        .send(Req::get("/v1/orgs/acme/roles/support").token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.etag(), v1);
    assert_eq!(r.body["description"], "Helps");
    let r = app
        .send(Req::get("/v1/orgs/acme/roles/admin").token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["builtin"], true);
    assert!(r.body["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("users:write")));

    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/support")
                .token(&alice)
                .json(json!({"permissions": ["invites:read"], "description": "Reads invites"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["permissions"], json!(["invites:read"]));
    assert_eq!(r.body["inherits"], json!(["member"]), "absent lists stay");
    assert_ne!(r.etag(), v1);

    let r = app
        .send(Req::delete("/v1/orgs/acme/roles/support").token(&alice))
        .await;
    assert_status(&r, 204);
    let r = app
        .send(Req::get("/v1/orgs/acme/roles/support").token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::delete("/v1/orgs/acme/roles/support").token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/support")
                .token(&alice)
                .json(json!({"description": "x"})),
        )
        .await;
    assert_problem(&r, 404, "not_found");
    let r = app
        .send(Req::get("/v1/orgs/acme/roles/Bad%20Name").token(&alice))
        .await;
    assert_invalid(&r, &["name"]);
});

backend_test!(the_role_graph_has_no_cycles, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let post = |body: Value| Req::post("/v1/orgs/acme/roles").token(&admin).json(body);
    assert_status(
        &app.send(post(role("r1", json!(["org:read"]), json!(["member"]))))
            .await,
        201,
    );
    assert_status(
        &app.send(post(role("r2", json!(["org:read"]), json!(["r1"]))))
            .await,
        201,
    );
    assert_status(
        &app.send(post(role("r3", json!(["org:read"]), json!(["r2"]))))
            .await,
        201,
    );
    let audit = audit_changes(&app).await;
    let before = get_ok(&app, &admin, "/v1/orgs/acme/roles/r1").await;

    // r1 -> r3 -> r2 -> r1
    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/r1")
                .token(&admin)
                .json(json!({"inherits": ["r3"]})),
        )
        .await;
    assert_invalid(&r, &["inherits"]);
    assert_eq!(r.body["errors"][0]["code"], "role_cycle", "{}", r.text);
    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/r1")
                .token(&admin)
                .json(json!({"inherits": ["r1"]})),
        )
        .await;
    assert_invalid(&r, &["inherits"]);
    let r = app
        .send(post(role("self", json!(["org:read"]), json!(["self"]))))
        .await;
    assert_invalid(&r, &["inherits"]);
    let r = app
        .send(post(role("orphan", json!(["org:read"]), json!(["nobody"]))))
        .await;
    assert_invalid(&r, &["inherits"]);
    assert_eq!(
        audit_changes(&app).await,
        audit,
        "refused graphs change nothing"
    );
    assert_eq!(get_ok(&app, &admin, "/v1/orgs/acme/roles/r1").await, before);
    let r = app
        .send(Req::get("/v1/orgs/acme/roles/self").token(&admin))
        .await;
    assert_problem(&r, 404, "not_found");
});

backend_test!(permissions_and_names_are_validated, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    let post = |body: Value| Req::post("/v1/orgs/acme/roles").token(&admin).json(body);
    let r = app
        .send(post(role(
            "x",
            json!(["users:read", "users:fly"]),
            json!([]),
        )))
        .await;
    assert_invalid(&r, &["permissions"]);
    assert!(
        r.text.contains("users:fly"),
        "the unknown permission is named: {}",
        r.text
    );
    let r = app
        .send(post(role("owner", json!(["org:read"]), json!([]))))
        .await;
    assert_invalid(&r, &["name"]);
    let r = app
        .send(post(
            json!({"name": "x", "permissions": [], "description": "d".repeat(501)}),
        ))
        .await;
    assert_invalid(&r, &["description"]);
    assert_status(
        &app.send(post(role("dup", json!([]), json!([])))).await,
        201,
    );
    let r = app
        .send(post(role("dup", json!(["org:read"]), json!([]))))
        .await;
    assert_conflict(&r, "role_exists");
    // Built-in roles are read-only.
    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/admin")
                .token(&admin)
                .json(json!({"permissions": ["org:read"]})),
        )
        .await;
    assert_conflict(&r, "builtin_role");
    let r = app
        .send(Req::delete("/v1/orgs/acme/roles/member").token(&admin))
        .await;
    assert_conflict(&r, "builtin_role");
});

backend_test!(
    roles_in_use_or_inherited_cannot_be_deleted,
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let (bob_id, _) = app
            .add_member(&alice, "acme", "bob@example.com", &["member"])
            .await;
        let post = |body: Value| Req::post("/v1/orgs/acme/roles").token(&alice).json(body);
        assert_status(
            &app.send(post(role("base", json!(["org:read"]), json!([]))))
                .await,
            201,
        );
        assert_status(
            &app.send(post(role("child", json!([]), json!(["base"]))))
                .await,
            201,
        );
        assert_status(
            &app.send(post(role("held", json!(["org:read"]), json!([]))))
                .await,
            201,
        );
        let r = app
            .send(
                Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                    .token(&alice)
                    .json(json!({"roles": ["member", "held"]})),
            )
            .await;
        assert_status(&r, 200);

        let r = app
            .send(Req::delete("/v1/orgs/acme/roles/held").token(&alice))
            .await;
        assert_conflict(&r, "role_in_use");
        let r = app
            .send(Req::delete("/v1/orgs/acme/roles/base").token(&alice))
            .await;
        assert_conflict(&r, "role_inherited");
        get_ok(&app, &alice, "/v1/orgs/acme/roles/held").await;

        // Once nobody holds it, it goes.
        let r = app
            .send(
                Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                    .token(&alice)
                    .json(json!({"roles": ["member"]})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(Req::delete("/v1/orgs/acme/roles/held").token(&alice))
            .await;
        assert_status(&r, 204);
    }
);

backend_test!(
    custom_roles_grant_their_permissions_through_inheritance,
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let post = |body: Value| Req::post("/v1/orgs/acme/roles").token(&alice).json(body);
        assert_status(
            &app.send(post(role("inviter", json!(["invites:write"]), json!([]))))
                .await,
            201,
        );
        assert_status(
            &app.send(post(role("lead", json!([]), json!(["inviter", "member"]))))
                .await,
            201,
        );
        let (lead_id, lead) = app
            .add_member(&alice, "acme", "lead@example.com", &["lead"])
            .await;
        // Inherited through lead -> inviter.
        let r = app
            .send(
                Req::post("/v1/orgs/acme/invites")
                    .token(&lead)
                    .json(json!({"email": "z@example.com", "roles": ["member"]})),
            )
            .await;
        assert_status(&r, 201);
        // Inherited through lead -> member.
        get_ok(&app, &lead, &format!("/v1/orgs/acme/users/{lead_id}")).await;
        // Not granted anywhere.
        let r = app
            .send(Req::post("/v1/orgs/acme/roles").token(&lead).json(role(
                "x",
                json!([]),
                json!([]),
            )))
            .await;
        assert_forbidden(&r, "missing_permission:roles:write");
        let r = app
            .send(Req::get("/v1/orgs/acme/invites").token(&lead))
            .await;
        assert_forbidden(&r, "missing_permission:invites:read");

        // Taking the permission away from the parent takes it from the child at once.
        let r = app
            .send(
                Req::patch("/v1/orgs/acme/roles/inviter")
                    .token(&alice)
                    .json(json!({"permissions": []})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(
                Req::post("/v1/orgs/acme/invites")
                    .token(&lead)
                    .json(json!({"email": "y@example.com", "roles": ["member"]})),
            )
            .await;
        assert_forbidden(&r, "missing_permission:invites:write");
    }
);

backend_test!(nobody_hands_out_permissions_they_lack, |app| async move {
    // An admin holds everything but org:delete: no role, membership or invite may give
    // org:delete through them, or a custom role would be a way up.
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (bob_id, bob) = app
        .add_member(&alice, "acme", "bob@example.com", &["admin"])
        .await;
    let r = app
        .send(Req::post("/v1/orgs/acme/roles").token(&bob).json(role(
            "deleter",
            json!(["org:delete"]),
            json!([]),
        )))
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(Req::post("/v1/orgs/acme/roles").token(&bob).json(role(
            "helper",
            json!(["invites:read"]),
            json!(["owner"]),
        )))
        .await;
    assert_forbidden(&r, "permission_escalation");
    // The owner may define it; the admin still may not hand it out or widen a role to it.
    let r = app
        .send(Req::post("/v1/orgs/acme/roles").token(&alice).json(role(
            "deleter",
            json!(["org:delete"]),
            json!([]),
        )))
        .await;
    assert_status(&r, 201);
    let r = app
        .send(Req::post("/v1/orgs/acme/roles").token(&bob).json(role(
            "reader",
            json!(["users:read"]),
            json!([]),
        )))
        .await;
    assert_status(&r, 201);
    let r = app
        .send(
            Req::patch("/v1/orgs/acme/roles/reader")
                .token(&bob)
                .json(json!({"inherits": ["deleter"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::put(format!("/v1/orgs/acme/users/{bob_id}/roles"))
                .token(&bob)
                .json(json!({"roles": ["admin", "deleter"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&bob)
                .json(json!({"email": "eve@example.com", "roles": ["deleter"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    // Within their own permissions, all of it works.
    let r = app
        .send(
            Req::post("/v1/orgs/acme/invites")
                .token(&bob)
                .json(json!({"email": "eve@example.com", "roles": ["reader"]})),
        )
        .await;
    assert_status(&r, 201);
    let r = app
        .send(Req::get(format!("/v1/orgs/acme/users/{bob_id}")).token(&bob))
        .await;
    assert_eq!(
        r.body["roles"],
        json!(["admin"]),
        "nothing changed: {}",
        r.text
    );
});
