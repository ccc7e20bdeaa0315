//! Declarative config over HTTP: the org file schema.

use super::*;

backend_test!(the_org_file_schema_is_served_to_anyone, |app| async move {
    let r = app.send(Req::get("/v1/declarative/schema")).await;
    assert_status(&r, 200);
    assert_eq!(r.body, uos_reconcile::json_schema());
    assert_eq!(
        r.body["properties"]["members"]["type"], "array",
        "{}",
        r.text
    );
});

mod plans {
    use super::*;
    use uos_reconcile::plan::LiveRole;
    use uos_reconcile::{plan_org, Change, DeclaredBudget, OrgPlan};

    fn declared() -> uos_reconcile::DeclaredOrg {
        let text = format!(
            "version: 1\nslug: acme\ndisplay_name: Acme Corp\n\
             roles:\n  - name: deployer\n    permissions: [service_accounts:read]\n\
             members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\n\
             \x20 - email: bob@example.com\n    roles: [admin]\n\
             \x20 - email: new@example.com\n    roles: [member]\n\
             service_accounts:\n  - name: ci\n    roles: [deployer]\n\
             budget:\n  period: monthly\n  limit_cents: 5000\n"
        );
        uos_reconcile::parse_org("orgs/acme.yaml", &text).unwrap()
    }

    async fn plan(app: &TestApp, org: &uos_reconcile::DeclaredOrg) -> OrgPlan {
        let mut r = app.state.svc.store().read().await.unwrap();
        plan_org(&mut *r, org).await.unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn monthly(limit_cents: i64) -> DeclaredBudget {
        DeclaredBudget {
            period: "monthly",
            limit_cents,
            warn_percent: 80,
            block_percent: 100,
        }
    }

    backend_test!(
        a_plan_shows_what_applying_would_change_and_what_is_refused,
        |app| async move {
            let admin = app.admin_token().await;
            let org = declared();

            // Nothing exists: the org and everything it declares would be created, founded by
            // the admin (a declared owner with an account); the others are invited.
            let p = plan(&app, &org).await;
            assert_eq!(
                p.changes,
                [
                    Change::CreateOrg {
                        display_name: "Acme Corp".into(),
                        owner: ADMIN_EMAIL.into(),
                    },
                    Change::CreateRole {
                        name: "deployer".into(),
                        permissions: strings(&["service_accounts:read"]),
                        inherits: vec![],
                        description: None
                    },
                    Change::Invite {
                        email: "bob@example.com".into(),
                        roles: strings(&["admin"])
                    },
                    Change::Invite {
                        email: "new@example.com".into(),
                        roles: strings(&["member"])
                    },
                    Change::CreateServiceAccount {
                        name: "ci".into(),
                        roles: strings(&["deployer"]),
                        description: None
                    },
                    Change::SetBudget {
                        from: None,
                        to: monthly(5000)
                    },
                ]
            );
            assert!(p.refusals.is_empty());

            // The org exists, made through the API, and differs from the file.
            app.create_org(&admin, "acme").await;
            app.add_member(&admin, "acme", "bob@example.com", &["member"])
                .await;
            let r = app
                .send(
                    Req::post("/v1/orgs/acme/roles")
                        .token(&admin)
                        .json(json!({"name": "deployer", "permissions": ["org:read"]})),
                )
                .await;
            assert_status(&r, 201);
            let r = app
                .send(
                    Req::put("/v1/orgs/acme/budget")
                        .token(&admin)
                        .json(json!({"period": "monthly", "limit_cents": 1000})),
                )
                .await;
            assert_status(&r, 201);
            let r = app
                .send(
                    Req::post("/v1/orgs/acme/invites")
                        .token(&admin)
                        .json(json!({"email": "new@example.com", "roles": ["member"]})),
                )
                .await;
            assert_status(&r, 201);
            let p = plan(&app, &org).await;
            assert_eq!(
                p.changes,
                [
                    Change::SetDisplayName {
                        from: "acme".into(),
                        to: "Acme Corp".into()
                    },
                    Change::UpdateRole {
                        name: "deployer".into(),
                        permissions: strings(&["service_accounts:read"]),
                        inherits: vec![],
                        description: None,
                        from: LiveRole {
                            permissions: strings(&["org:read"]),
                            inherits: vec![],
                            description: None,
                        },
                    },
                    // The admin is already the owner; new@ has a pending invite.
                    Change::SetMemberRoles {
                        email: "bob@example.com".into(),
                        from: strings(&["member"]),
                        to: strings(&["admin"])
                    },
                    Change::CreateServiceAccount {
                        name: "ci".into(),
                        roles: strings(&["deployer"]),
                        description: None
                    },
                    Change::SetBudget {
                        from: Some(monthly(1000)),
                        to: monthly(5000)
                    },
                ],
                "{}",
                p.render()
            );
            assert!(p
                .render()
                .contains("~ member bob@example.com: roles [member] → [admin]"));

            // Declaring the org's only owner without the owner role is refused in the plan,
            // as the API refuses it.
            let text = format!(
                "version: 1\nslug: acme\ndisplay_name: acme\n\
                 members:\n  - email: {ADMIN_EMAIL}\n    roles: [admin]\n"
            );
            let demote = uos_reconcile::parse_org("orgs/acme.yaml", &text).unwrap();
            let p = plan(&app, &demote).await;
            assert!(p.changes.is_empty(), "{p:?}");
            assert_eq!(p.refusals.len(), 1);
            assert_eq!(p.refusals[0].field, "members[0].roles");
            assert!(p.render().contains("! refused: members[0].roles:"));

            // A suspended org changes in nothing: the plan says so and plans nothing.
            let r = app
                .send(
                    Req::post("/v1/orgs/acme/suspend")
                        .token(&admin)
                        .json(json!({})),
                )
                .await;
            assert_status(&r, 200);
            let p = plan(&app, &org).await;
            assert!(p.changes.is_empty(), "{p:?}");
            assert_eq!(p.refusals[0].field, "slug");
            assert!(p.refusals[0].reason.contains("suspended"), "{p:?}");
        }
    );
}
