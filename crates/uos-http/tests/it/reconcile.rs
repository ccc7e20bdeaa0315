//! The reconciler against the service: applying org files through the use cases, the status
//! API, pause and resume, the guard on managed orgs, drift, pruning, failures that change
//! nothing, and the leader lock.

use super::*;
use std::path::Path;
use uos_reconcile::{Engine, Outcome, Pass, Source};

/// A config repo as a plain directory: `orgs/<slug>.yaml` per (slug, text).
fn write_repo(dir: &Path, files: &[(&str, &str)]) {
    let orgs = dir.join("orgs");
    let _ = std::fs::remove_dir_all(&orgs);
    std::fs::create_dir_all(&orgs).unwrap();
    for (slug, text) in files {
        std::fs::write(orgs.join(format!("{slug}.yaml")), text).unwrap();
    }
}

fn engine(app: &TestApp, dir: &Path) -> Engine {
    Engine::new(
        app.state.svc.clone(),
        Source::Directory(dir.to_owned()),
        None,
        "main".into(),
    )
}

fn outcome(pass: &Pass, slug: &str) -> Outcome {
    pass.orgs
        .iter()
        .find(|o| o.slug == slug)
        .unwrap_or_else(|| panic!("{slug} in {pass:?}"))
        .outcome
        .clone()
}

fn acme(display_name: &str, extra: &str) -> String {
    format!(
        "version: 1\nslug: acme\ndisplay_name: {display_name}\n\
         roles:\n  - name: release-manager\n    inherits: [deployer]\n\
         \x20 - name: deployer\n    permissions: [service_accounts:read]\n\
         members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\n\
         \x20 - email: bob@example.com\n    roles: [deployer]\n\
         service_accounts:\n  - name: ci\n    roles: [deployer]\n\
         budget:\n  period: monthly\n  limit_cents: 5000\n{extra}"
    )
}

async fn status(app: &TestApp, admin: &str, slug: &str) -> Value {
    get_ok(app, admin, &format!("/v1/declarative/status/{slug}")).await
}

backend_test!(
    a_repo_is_applied_through_the_use_cases_and_audited_with_its_commit,
    |app| async move {
        let admin = app.admin_token().await;
        let repo = tempfile::tempdir().unwrap();
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
        let engine = engine(&app, repo.path());

        let pass = engine.reconcile(true).await.unwrap();
        // Org, two roles (the parent first, whatever the file's order), the invite, the
        // account and the budget; the admin founded the org as its owner.
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 6 });
        let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_eq!(org["display_name"], "Acme Corp");
        let roles = get_ok(&app, &admin, "/v1/orgs/acme/roles").await;
        let names: Vec<_> = roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert!(
            names.contains(&json!("deployer")) && names.contains(&json!("release-manager")),
            "{roles}"
        );
        let accounts = get_ok(&app, &admin, "/v1/orgs/acme/service-accounts").await;
        assert_eq!(accounts["items"][0]["name"], "ci");
        let budget = get_ok(&app, &admin, "/v1/orgs/acme/budget").await;
        assert_eq!(budget["limit_cents"], 5000);
        let invites = get_ok(&app, &admin, "/v1/orgs/acme/invites").await;
        assert_eq!(invites["items"][0]["email"], "bob@example.com");
        // The invitee gets the token by mail: the reconciler has nobody to hand it to.
        let mails = app.wait_for_mails(1).await;
        assert_eq!(mails[0].to, "bob@example.com");
        assert!(mails[0].text.contains("uosinv_"), "{}", mails[0].text);

        // Every change is audited as the reconciler, naming the commit and the file.
        let events = all_audit(&app).await;
        let by_reconciler: Vec<_> = events
            .iter()
            .filter(|e| e["actor"]["type"] == "reconciler")
            .collect();
        assert!(by_reconciler.len() >= 6, "{events:?}");
        for e in &by_reconciler {
            assert_eq!(e["actor"]["id"], json!(pass.revision));
            assert_eq!(
                e["request_id"],
                json!(format!("declarative:{}:orgs/acme.yaml", pass.revision))
            );
        }
        assert!(by_reconciler.iter().any(|e| e["action"] == "org.created"));

        let s = status(&app, &admin, "acme").await;
        assert_eq!(s["org"], "acme");
        assert_eq!(s["file"], "orgs/acme.yaml");
        assert_eq!(s["paused"], false);
        assert_eq!(s["revision"], json!(pass.revision));
        assert_eq!(s["last_applied_revision"], json!(pass.revision));
        assert_eq!(s["last_attempt"]["result"], "applied");
        assert_eq!(s["drift"]["detected"], false);
        let all = get_ok(&app, &admin, "/v1/declarative/status").await;
        assert_eq!(all["items"].as_array().unwrap().len(), 1);

        // Nothing new: up to date, whether or not drift is checked, and nothing written.
        let before = audit_changes(&app).await;
        let pass = engine.reconcile(false).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::UpToDate);
        let pass = engine.reconcile(true).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::UpToDate);
        assert_eq!(audit_changes(&app).await, before);

        // A new commit changes what it declares, and only that.
        write_repo(repo.path(), &[("acme", &acme("Acme Inc", ""))]);
        let pass = engine.reconcile(false).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 1 });
        let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_eq!(org["display_name"], "Acme Inc");

        // The file leaves the repo: the org stays as it is, and is no longer managed.
        write_repo(repo.path(), &[]);
        let pass = engine.reconcile(false).await.unwrap();
        assert!(pass.orgs.is_empty());
        let r = app
            .send(Req::get("/v1/declarative/status/acme").token(&admin))
            .await;
        assert_status(&r, 404);
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&admin)
                    .json(json!({"display_name": "By Hand"})),
            )
            .await;
        assert_status(&r, 200);
    }
);

backend_test!(
    managed_orgs_refuse_interactive_changes_until_paused_and_drift_is_reported_or_healed,
    |app| async move {
        let admin = app.admin_token().await;
        let repo = tempfile::tempdir().unwrap();
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
        let engine = engine(&app, repo.path());
        engine.reconcile(true).await.unwrap();
        let admin_id = my_id(&app, &admin).await;
        let accounts = get_ok(&app, &admin, "/v1/orgs/acme/service-accounts").await;
        let sa = accounts["items"][0]["id"].as_str().unwrap().to_owned();

        // Every write to a declared field answers 409 while the org is managed.
        let guarded = [
            Req::patch("/v1/orgs/acme").json(json!({"display_name": "Hand Made"})),
            Req::post("/v1/orgs/acme/roles").json(json!({"name": "extra", "permissions": []})),
            Req::patch("/v1/orgs/acme/roles/deployer").json(json!({"permissions": ["org:read"]})),
            Req::delete("/v1/orgs/acme/roles/release-manager"),
            Req::put(format!("/v1/orgs/acme/users/{admin_id}/roles"))
                .json(json!({"roles": ["owner", "deployer"]})),
            Req::delete(format!("/v1/orgs/acme/users/{admin_id}")),
            Req::post("/v1/orgs/acme/service-accounts")
                .json(json!({"name": "extra", "roles": ["member"]})),
            Req::patch(format!("/v1/orgs/acme/service-accounts/{sa}"))
                .json(json!({"description": "by hand"})),
            Req::delete(format!("/v1/orgs/acme/service-accounts/{sa}")),
            Req::put("/v1/orgs/acme/budget").json(json!({"period": "monthly", "limit_cents": 1})),
            Req::delete("/v1/orgs/acme/budget"),
        ];
        let before = audit_changes(&app).await;
        for req in guarded {
            let what = format!("{req:?}");
            let r = app.send(req.token(&admin)).await;
            assert_eq!(r.status, 409, "{what}: {}", r.text);
            assert_eq!(
                r.body["reason"], "managed_by_declarative",
                "{what}: {}",
                r.text
            );
        }
        assert_eq!(
            audit_changes(&app).await,
            before,
            "a refused change changes nothing"
        );
        // Fields the file does not declare stay open.
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&admin)
                    .json(json!({"api_key_max_days": 30})),
            )
            .await;
        assert_status(&r, 200);

        // Paused, people may change it; the reconciler leaves it alone.
        let r = app
            .send(
                Req::post("/v1/declarative/pause")
                    .token(&admin)
                    .json(json!({"org": "acme", "reason": "incident 42"})),
            )
            .await;
        assert_status(&r, 204);
        let s = status(&app, &admin, "acme").await;
        assert_eq!(s["paused"], true);
        assert_eq!(s["pause"]["reason"], "incident 42");
        let r = app
            .send(
                Req::patch("/v1/orgs/acme")
                    .token(&admin)
                    .json(json!({"display_name": "Hand Made"})),
            )
            .await;
        assert_status(&r, 200);
        let pass = engine.reconcile(true).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Paused);

        // Resumed: the hand-made change is drift, reported and left alone by default.
        let r = app
            .send(
                Req::post("/v1/declarative/resume")
                    .token(&admin)
                    .json(json!({"org": "acme"})),
            )
            .await;
        assert_status(&r, 204);
        let pass = engine.reconcile(true).await.unwrap();
        assert_eq!(
            outcome(&pass, "acme"),
            Outcome::Drifted {
                differences: 1,
                healed: false
            }
        );
        let s = status(&app, &admin, "acme").await;
        assert_eq!(s["drift"]["detected"], true);
        assert_eq!(
            s["drift"]["differences"],
            json!([{"path": "display_name", "declared": "Acme Corp", "live": "Hand Made"}])
        );
        let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_eq!(org["display_name"], "Hand Made");

        // With `heal: true` the next check puts the file's value back.
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", "heal: true\n"))]);
        engine.reconcile(false).await.unwrap();
        let pass = engine.reconcile(true).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::UpToDate);
        let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
        assert_eq!(org["display_name"], "Acme Corp");
        assert_eq!(
            status(&app, &admin, "acme").await["drift"]["detected"],
            false
        );

        // Pausing every org pauses this one too, and is audited like the org's pause.
        let r = app
            .send(
                Req::post("/v1/declarative/pause")
                    .token(&admin)
                    .json(json!({"reason": "freeze"})),
            )
            .await;
        assert_status(&r, 204);
        let s = status(&app, &admin, "acme").await;
        assert_eq!(s["pause"]["global"], true);
        let pass = engine.reconcile(true).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Paused);
        let r = app
            .send(
                Req::post("/v1/declarative/resume")
                    .token(&admin)
                    .json(json!({})),
            )
            .await;
        assert_status(&r, 204);
        let actions: Vec<_> = all_audit(&app)
            .await
            .iter()
            .map(|e| (e["action"].clone(), e["target"]["id"].clone()))
            .filter(|(a, _)| a.as_str().is_some_and(|a| a.starts_with("declarative.")))
            .collect();
        assert_eq!(
            actions,
            [
                (json!("declarative.paused"), json!("acme")),
                (json!("declarative.resumed"), json!("acme")),
                (json!("declarative.paused"), json!("*")),
                (json!("declarative.resumed"), json!("*")),
            ]
        );
    }
);

backend_test!(
    pruning_removes_only_what_the_reconciler_created_and_only_when_asked,
    |app| async move {
        let admin = app.admin_token().await;
        let repo = tempfile::tempdir().unwrap();
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
        let engine = engine(&app, repo.path());
        engine.reconcile(true).await.unwrap();
        // Paused, a person adds a role of their own.
        app.send(
            Req::post("/v1/declarative/pause")
                .token(&admin)
                .json(json!({"org": "acme", "reason": "adding by hand"})),
        )
        .await;
        let r = app
            .send(
                Req::post("/v1/orgs/acme/roles")
                    .token(&admin)
                    .json(json!({"name": "by-hand", "permissions": []})),
            )
            .await;
        assert_status(&r, 201);
        app.send(
            Req::post("/v1/declarative/resume")
                .token(&admin)
                .json(json!({"org": "acme"})),
        )
        .await;

        // The file drops the account and a role: without prune they stay.
        let smaller = format!(
            "version: 1\nslug: acme\ndisplay_name: Acme Corp\n\
             roles:\n  - name: deployer\n    permissions: [service_accounts:read]\n\
             members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\n"
        );
        write_repo(repo.path(), &[("acme", &smaller)]);
        let pass = engine.reconcile(false).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 0 });
        let accounts = get_ok(&app, &admin, "/v1/orgs/acme/service-accounts").await;
        assert_eq!(accounts["items"].as_array().unwrap().len(), 1);

        // With prune: what the reconciler created goes (account, role, the invite); the
        // hand-made role stays.
        write_repo(repo.path(), &[("acme", &format!("{smaller}prune: true\n"))]);
        let pass = engine.reconcile(false).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 3 });
        let accounts = get_ok(&app, &admin, "/v1/orgs/acme/service-accounts").await;
        assert!(
            accounts["items"].as_array().unwrap().is_empty(),
            "{accounts}"
        );
        let roles = get_ok(&app, &admin, "/v1/orgs/acme/roles").await;
        let names: Vec<_> = roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].clone())
            .collect();
        assert!(names.contains(&json!("by-hand")), "{roles}");
        assert!(!names.contains(&json!("release-manager")), "{roles}");
        let invites = get_ok(&app, &admin, "/v1/orgs/acme/invites").await;
        assert!(invites["items"][0]["revoked_at"].is_string(), "{invites}");
    }
);

backend_test!(
    a_failure_in_the_middle_of_an_apply_leaves_nothing_and_an_invalid_file_stops_only_its_org,
    |app| async move {
        let admin = app.admin_token().await;
        // 101 roles: the service allows 100 per org, so the apply fails after creating the
        // org and 100 roles, and every one of them must roll back.
        let mut big = format!(
            "version: 1\nslug: big\ndisplay_name: Big\n\
             members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\nroles:\n"
        );
        for i in 0..101 {
            big.push_str(&format!("  - name: role-{i}\n"));
        }
        let repo = tempfile::tempdir().unwrap();
        write_repo(
            repo.path(),
            &[
                ("big", &big),
                (
                    "broken",
                    "version: 1\nslug: broken\ndisplay_name: [not text]\n",
                ),
                ("acme", &acme("Acme Corp", "")),
            ],
        );
        let before = audit_changes(&app).await;
        let engine = engine(&app, repo.path());
        let pass = engine.reconcile(true).await.unwrap();
        assert!(
            matches!(outcome(&pass, "big"), Outcome::Failed(why) if why.contains("too_many_roles") || why.contains("at most 100")),
            "{pass:?}"
        );
        assert!(
            matches!(outcome(&pass, "broken"), Outcome::Failed(why) if why.contains("orgs/broken.yaml:3:")),
            "{pass:?}"
        );
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 6 });
        let r = app.send(Req::get("/v1/orgs/big").token(&admin)).await;
        assert_status(&r, 404);
        let events = all_audit(&app).await;
        assert!(
            !events.iter().any(|e| e["request_id"]
                .as_str()
                .is_some_and(|r| r.ends_with("orgs/big.yaml"))),
            "nothing of the failed apply was recorded"
        );
        assert!(audit_changes(&app).await > before);
        let s = status(&app, &admin, "big").await;
        assert_eq!(s["last_attempt"]["result"], "failed");
        assert!(s["last_applied_revision"].is_null());
        let s = status(&app, &admin, "broken").await;
        assert_eq!(s["last_attempt"]["result"], "failed");
        assert!(
            s["last_attempt"]["error"]
                .as_str()
                .unwrap()
                .contains("display_name"),
            "{s}"
        );

        // The status survives a restart, and a restart between fetch and apply loses
        // nothing: the next run applies what the lost one would have.
        write_repo(
            repo.path(),
            &[
                ("big", &big),
                (
                    "broken",
                    "version: 1\nslug: broken\ndisplay_name: [not text]\n",
                ),
                ("acme", &acme("Acme After Restart", "")),
            ],
        );
        let fetched = engine.snapshot().await.unwrap();
        drop(fetched);
        drop(engine);
        let engine = self::engine(&app, repo.path());
        let pass = engine.reconcile(false).await.unwrap();
        assert_eq!(outcome(&pass, "acme"), Outcome::Applied { changes: 1 });
        assert_eq!(
            status(&app, &admin, "big").await["last_attempt"]["result"],
            "failed"
        );
    }
);

backend_test!(
    the_last_owner_cannot_be_demoted_by_a_file_and_a_new_org_needs_an_owner,
    |app| async move {
        let admin = app.admin_token().await;
        let repo = tempfile::tempdir().unwrap();
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
        let engine = engine(&app, repo.path());
        engine.reconcile(true).await.unwrap();
        let demoted = format!(
            "version: 1\nslug: acme\ndisplay_name: Acme Corp\n\
             members:\n  - email: {ADMIN_EMAIL}\n    roles: [admin]\n"
        );
        let ownerless = "version: 1\nslug: nobody\ndisplay_name: Nobody\n\
             members:\n  - email: stranger@example.com\n    roles: [owner]\n";
        write_repo(repo.path(), &[("acme", &demoted), ("nobody", ownerless)]);
        let pass = engine.reconcile(false).await.unwrap();
        assert!(
            matches!(outcome(&pass, "acme"), Outcome::Failed(why) if why.contains("last owner")),
            "{pass:?}"
        );
        assert!(
            matches!(outcome(&pass, "nobody"), Outcome::Failed(why) if why.contains("needs an owner")),
            "{pass:?}"
        );
        let me = my_id(&app, &admin).await;
        let m = get_ok(&app, &admin, &format!("/v1/orgs/acme/users/{me}")).await;
        assert_eq!(m["roles"], json!(["owner"]));
    }
);

backend_test!(
    the_reconciler_api_is_for_platform_admins_and_checks_its_input,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "plain").await;
        let (_, member) = app
            .add_member(&admin, "plain", "m@example.com", &["admin"])
            .await;
        for req in [
            Req::get("/v1/declarative/status"),
            Req::get("/v1/declarative/status/plain"),
            Req::post("/v1/declarative/pause").json(json!({"reason": "x"})),
            Req::post("/v1/declarative/resume").json(json!({})),
            Req::post("/v1/declarative/sync").json(json!({})),
            Req::post("/v1/declarative/plan")
                .json(json!({"files": [{"name": "plain.yaml", "content": "version: 1"}]})),
        ] {
            let what = format!("{req:?}");
            let r = app.send(req.token(&member)).await;
            assert_eq!(r.status, 403, "{what}: {}", r.text);
        }
        // Undeclared orgs are not found; bad bodies name every bad field.
        let r = app
            .send(Req::get("/v1/declarative/status/plain").token(&admin))
            .await;
        assert_status(&r, 404);
        let r = app
            .send(
                Req::post("/v1/declarative/pause")
                    .token(&admin)
                    .json(json!({"org": "plain", "reason": "x"})),
            )
            .await;
        assert_status(&r, 404);
        let r = app
            .send(
                Req::post("/v1/declarative/pause")
                    .token(&admin)
                    .json(json!({"org": "Not A Slug", "reason": " ", "extra": 1})),
            )
            .await;
        assert_invalid(&r, &["org", "reason", "extra"]);
        let r = app
            .send(
                Req::post("/v1/declarative/sync")
                    .token(&admin)
                    .json(json!({})),
            )
            .await;
        assert_status(&r, 202);
        // Without a configured secret the webhook does not exist.
        let r = app
            .send(Req::post("/v1/declarative/webhook").json(json!({"ref": "refs/heads/main"})))
            .await;
        assert_status(&r, 404);
    }
);

backend_test!(
    a_plan_request_plans_files_against_the_store_and_changes_nothing,
    |app| async move {
        let admin = app.admin_token().await;
        let plan = |files: Value| {
            let app = &app;
            let admin = admin.clone();
            async move {
                app.send(
                    Req::post("/v1/declarative/plan")
                        .token(&admin)
                        .json(json!({ "files": files })),
                )
                .await
            }
        };
        let audited = audit_changes(&app).await;
        let r = plan(json!([
            {"name": "acme.yaml", "content": acme("Acme Corp", "")},
            {"name": "beta.yaml", "content": "version: 1\nslug: beta\n"},
        ]))
        .await;
        assert_status(&r, 200);
        assert_eq!(r.body["plans"][0]["org"], "acme", "{}", r.text);
        assert_eq!(r.body["plans"][0]["changes"][0]["op"], "create_org");
        assert_eq!(r.body["invalid"][0]["file"], "orgs/beta.yaml");
        assert!(r.body["invalid"][0]["problems"][0]["line"].is_u64());
        assert_eq!(r.body["blocked"], true, "an invalid file blocks");
        let text = r.body["text"].as_str().unwrap();
        assert!(
            text.starts_with("orgs/acme.yaml (acme):\n  + create org \"Acme Corp\""),
            "{text}"
        );
        assert!(text.contains("orgs/beta.yaml:"), "{text}");
        // Planning wrote nothing: no org, no audit event, no declarative record.
        let r = app.send(Req::get("/v1/orgs/acme").token(&admin)).await;
        assert_status(&r, 404);
        assert_eq!(audit_changes(&app).await, audited);
        let r = app
            .send(Req::get("/v1/declarative/status/acme").token(&admin))
            .await;
        assert_status(&r, 404);

        // Once applied, the plan of a changed file is that change alone, and nothing blocks.
        let repo = tempfile::tempdir().unwrap();
        write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
        engine(&app, repo.path()).reconcile(true).await.unwrap();
        let r = plan(json!([{"name": "acme.yaml", "content": acme("Acme Inc", "")}])).await;
        assert_status(&r, 200);
        assert_eq!(
            r.body["plans"][0]["changes"],
            json!([{"op": "set_display_name", "from": "Acme Corp", "to": "Acme Inc"}])
        );
        assert_eq!(r.body["blocked"], false);
        assert_eq!(r.body["invalid"], json!([]));

        // Every bad field is named, and nothing is planned.
        assert_invalid(&plan(json!([])).await, &["files"]);
        let r = plan(json!([
            {"name": "a/b.yaml", "content": ""},
            {"name": "acme.yaml", "content": ""},
            {"name": "acme.yaml", "content": ""},
            {"name": "", "content": ""},
        ]))
        .await;
        assert_invalid(&r, &["files[0].name", "files[2].name", "files[3].name"]);
        let r = plan(json!([{"name": "acme.yaml"}])).await;
        assert_invalid(&r, &["files"]);
        let many: Vec<_> = (0..101)
            .map(|i| json!({"name": format!("o{i}.yaml"), "content": ""}))
            .collect();
        assert_invalid(&plan(json!(many)).await, &["files"]);
    }
);

/// The HMAC-SHA256 signature a Git host sends for `body`.
fn hub_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

const PUSH_SECRET: &str = "a-push-secret-of-some-length";

backend_test!(
    a_signed_push_webhook_asks_the_reconciler_to_run,
    config = [("declarative.webhook_secret", json!(PUSH_SECRET))],
    |app| async move {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let control = || async {
            let mut r = app.state.svc.store().read().await.unwrap();
            r.declarative_control().await.unwrap().sync_requested_at
        };
        assert_eq!(control().await, None);
        for bad in [
            None,
            Some("sha256=00".to_owned()),
            Some(hub_signature("wrong", body)),
        ] {
            let mut req =
                Req::post("/v1/declarative/webhook").raw(body.to_vec(), "application/json");
            if let Some(sig) = &bad {
                req = req.header("x-hub-signature-256", sig);
            }
            let r = app.send(req).await;
            assert_eq!(r.status, 401, "{bad:?}: {}", r.text);
        }
        assert_eq!(control().await, None, "an unsigned push asks for nothing");
        let r = app
            .send(
                Req::post("/v1/declarative/webhook")
                    .raw(body.to_vec(), "application/json")
                    .header("x-hub-signature-256", &hub_signature(PUSH_SECRET, body)),
            )
            .await;
        assert_status(&r, 202);
        assert!(control().await.is_some());
    }
);

backend_test!(two_reconcilers_race_and_one_leads, |app| async move {
    use uos_reconcile::leader::{self, Schedule};
    let repo = tempfile::tempdir().unwrap();
    write_repo(repo.path(), &[("acme", &acme("Acme Corp", ""))]);
    let (a, b) = (engine(&app, repo.path()), engine(&app, repo.path()));
    let metrics = [a.metrics().clone(), b.metrics().clone()];
    let schedule = Schedule {
        poll: std::time::Duration::from_millis(200),
        drift: std::time::Duration::from_secs(60),
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let run = |e: Engine, mut stop: tokio::sync::watch::Receiver<bool>| {
        tokio::spawn(async move {
            leader::run(&e, schedule, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        })
    };
    let tasks = [run(a, stop.clone()), run(b, stop)];
    // Let several passes run: the leader keeps the lock, the other waits for it.
    let ran = |text: &str| text.contains("uos_reconcile_passes_total{result=");
    for _ in 0..100 {
        if metrics
            .iter()
            .any(|m| m.render().contains("result=\"ok\"} 3"))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let texts: Vec<String> = metrics.iter().map(|m| m.render()).collect();
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        texts.iter().filter(|t| ran(t)).count(),
        1,
        "exactly one reconciler ran passes:\n{}\n{}",
        texts[0],
        texts[1]
    );
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("\nuos_reconcile_leader 1\n"))
            .count(),
        1
    );
    let admin = app.admin_token().await;
    let org = get_ok(&app, &admin, "/v1/orgs/acme").await;
    assert_eq!(org["display_name"], "Acme Corp");
});
