//! Machine identity: service accounts (lifecycle, validation, no escalation), their API keys
//! (format, scopes, revocation, rotation, expiry, rotation policy, org maximum, usage) and how
//! keys authenticate, introspect, stay inside their org and are audited.

use super::*;
use chrono::{DateTime, Duration, Utc};
use uos_keys::KeyProvider as _;

const SA: &str = "/v1/orgs/acme/service-accounts";

/// Whether `s` is shaped like `^uos_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}$`.
fn is_key_shaped(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("uos_") else {
        return false;
    };
    let parts: Vec<&str> = rest.split('_').collect();
    parts.len() == 3
        && parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [12, 43, 6]
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("timestamp: {v}")))
        .unwrap()
        .with_timezone(&Utc)
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// `s` with its `i`-th (ASCII) character replaced by `c`.
fn replace_at(s: &str, i: usize, c: char) -> String {
    format!("{}{c}{}", &s[..i], &s[i + 1..])
}

/// Create a service account in `slug` as `token`, expecting 201; the body.
async fn account(app: &TestApp, token: &str, slug: &str, name: &str, roles: Value) -> Value {
    let r = app
        .send(
            Req::post(format!("/v1/orgs/{slug}/service-accounts"))
                .token(token)
                .json(json!({"name": name, "roles": roles})),
        )
        .await;
    assert_status(&r, 201);
    r.body
}

/// Create an API key for account `sa` in `slug`, expecting 201; the body (with `secret`).
async fn key(app: &TestApp, token: &str, slug: &str, sa: &str, scopes: Value) -> Value {
    let r = app
        .send(
            Req::post(format!("/v1/orgs/{slug}/service-accounts/{sa}/api-keys"))
                .token(token)
                .json(json!({"name": "ci", "scopes": scopes})),
        )
        .await;
    assert_status(&r, 201);
    r.body
}

fn secret(v: &Value) -> String {
    v["secret"].as_str().unwrap().to_string()
}

async fn whoami(app: &TestApp, token: &str) -> TestResponse {
    app.send(Req::get("/v1/auth/whoami").token(token)).await
}

/// The key works right now (whoami answers 200 as a service account).
async fn assert_key_works(app: &TestApp, key: &str) {
    let r = whoami(app, key).await;
    assert_status(&r, 200);
    assert_eq!(r.body["kind"], "service_account", "{}", r.text);
}

/// The key is refused right now.
async fn assert_key_refused(app: &TestApp, key: &str) {
    let r = whoami(app, key).await;
    assert_problem(&r, 401, "unauthenticated");
}

/// Audit events with this action (as the platform admin reads them).
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

/// The org `acme` owned by alice, with one account `ci` holding `roles`. Returns alice's
/// token and the account.
async fn acme_with_account(app: &TestApp, roles: Value) -> (String, Value) {
    let (_, alice) = owned_org(app, "acme", "alice@example.com").await;
    let sa = account(app, &alice, "acme", "ci", roles).await;
    (alice, sa)
}

/// Change a stored key through the store port, bypassing the service.
async fn edit_stored_key(
    app: &TestApp,
    org_id: &str,
    key_id: &str,
    f: impl FnOnce(&mut uos_domain::ApiKey),
) {
    let store = app.state.svc.store();
    let org = uos_domain::OrgId(uuid::Uuid::parse_str(org_id).unwrap());
    let id = uos_domain::ApiKeyId(uuid::Uuid::parse_str(key_id).unwrap());
    let mut tx = store.begin().await.unwrap();
    let before = tx.get_api_key(org, id).await.unwrap().expect("stored key");
    let mut k = before.clone();
    f(&mut k);
    k.version = before.version + 1;
    tx.update_api_key(&k, before.version).await.unwrap();
    tx.commit().await.unwrap();
}

/// Store a new key for the account of `template` (same org, account, scopes) created
/// `age` ago, straight through the store port; returns the key text and the row's id.
async fn insert_aged_key(
    app: &TestApp,
    org_id: &str,
    template_id: &str,
    age: Duration,
) -> (String, String) {
    let pepper = uos_keys::LocalKeyStore::open(&app.data_dir().join("keys"))
        .unwrap()
        .secret("api-key-pepper")
        .unwrap();
    let store = app.state.svc.store();
    let org = uos_domain::OrgId(uuid::Uuid::parse_str(org_id).unwrap());
    let id = uos_domain::ApiKeyId(uuid::Uuid::parse_str(template_id).unwrap());
    let mut tx = store.begin().await.unwrap();
    let template = tx
        .get_api_key(org, id)
        .await
        .unwrap()
        .expect("template key");
    let new = uos_authn::generate_api_key();
    let created = Utc::now() - age;
    let k = uos_domain::ApiKey {
        id: uos_domain::ApiKeyId::new(),
        name: "old".into(),
        prefix: new.prefix.clone(),
        secret_hash: uos_authn::hash_api_key(&pepper, &new.key),
        created_at: created,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        replaced_by: None,
        replaces: None,
        overdue_reported_at: None,
        version: 1,
        ..template
    };
    tx.insert_api_key(&k).await.unwrap();
    tx.commit().await.unwrap();
    (new.key, k.id.to_string())
}

backend_test!(service_account_lifecycle, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = app
        .send(Req::post(SA).token(&alice).json(json!({
            "name": "  deployer ",
            "roles": ["member", "auditor", "member"],
            "description": "Deploys things",
            "rotation_policy": {"max_key_age_days": 90},
        })))
        .await;
    assert_status(&r, 201);
    assert_eq!(r.etag(), etag(1));
    let sa = r.body.clone();
    let sa_id = id_of(&sa);
    assert_eq!(sa["name"], "deployer", "trimmed");
    assert_eq!(sa["roles"], json!(["member", "auditor"]), "deduplicated");
    assert_eq!(sa["description"], "Deploys things");
    assert_eq!(sa["status"], "active");
    assert_eq!(sa["client_id"], sa_id.as_str());
    assert_eq!(
        sa["rotation_policy"],
        json!({"max_key_age_days": 90, "refuse_after_days": null})
    );
    assert_eq!(sa["client_secret_created_at"], Value::Null);
    assert_eq!(sa["deleted_at"], Value::Null);
    let org = get_ok(&app, &alice, "/v1/orgs/acme").await;
    assert_eq!(sa["org_id"], org["id"]);

    let r = app
        .send(Req::get(format!("{SA}/{sa_id}")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.etag(), etag(1));
    assert_eq!(r.body, sa);

    // Duplicate name: 409, nothing created.
    let r = app
        .send(
            Req::post(SA)
                .token(&alice)
                .json(json!({"name": "deployer", "roles": ["member"]})),
        )
        .await;
    assert_conflict(&r, "name_taken");
    let other = account(&app, &alice, "acme", "reporter", json!(["auditor"])).await;

    // Pages of one, creation order.
    let r = app
        .send(Req::get(format!("{SA}?limit=1")).token(&alice))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert!(r.body["next_page_token"].is_string(), "{}", r.text);
    let all = all_pages(&app, &alice, SA, 1).await;
    let names: Vec<&str> = all.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["deployer", "reporter"]);

    // A key of the account, to watch status changes take effect.
    let k = key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let k_secret = secret(&k);
    assert_key_works(&app, &k_secret).await;

    // PATCH with a stale If-Match changes nothing.
    let audit = audit_changes(&app).await;
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .header("if-match", &etag(7))
                .json(json!({"name": "renamed"})),
        )
        .await;
    assert_problem(&r, 412, "precondition_failed");
    assert_eq!(get_ok(&app, &alice, &format!("{SA}/{sa_id}")).await, sa);
    assert_eq!(audit_changes(&app).await, audit);

    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .header("if-match", &etag(1))
                .json(json!({
                    "name": "renamed",
                    "description": null,
                    "roles": ["admin"],
                    "rotation_policy": {"max_key_age_days": 30, "refuse_after_days": 7},
                })),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.etag(), etag(2));
    assert_eq!(r.body["name"], "renamed");
    assert_eq!(r.body["description"], Value::Null, "null clears");
    assert_eq!(r.body["roles"], json!(["admin"]));
    assert_eq!(
        r.body["rotation_policy"],
        json!({"max_key_age_days": 30, "refuse_after_days": 7})
    );
    assert_eq!(r.body["created_at"], sa["created_at"]);
    // Absent fields stay.
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"description": "again"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["name"], "renamed");
    assert_eq!(r.body["roles"], json!(["admin"]));
    assert_eq!(r.etag(), etag(3));

    // Disabled: its key fails at once; enabled again: it works again.
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"status": "disabled"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "disabled");
    assert_key_refused(&app, &k_secret).await;
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"status": "deleted"})),
        )
        .await;
    assert_invalid(&r, &["status"]);
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"status": "active"})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["status"], "active");
    assert_key_works(&app, &k_secret).await;

    // DELETE: stale If-Match first, then for real.
    let r = app
        .send(
            Req::delete(format!("{SA}/{sa_id}"))
                .token(&alice)
                .header("if-match", &etag(1)),
        )
        .await;
    assert_problem(&r, 412, "precondition_failed");
    assert_key_works(&app, &k_secret).await;
    let r = app
        .send(Req::delete(format!("{SA}/{sa_id}")).token(&alice))
        .await;
    assert_status(&r, 204);
    assert_key_refused(&app, &k_secret).await;
    for req in [
        Req::get(format!("{SA}/{sa_id}")),
        Req::patch(format!("{SA}/{sa_id}")).json(json!({"name": "zombie"})),
        Req::delete(format!("{SA}/{sa_id}")),
        Req::get(format!("{SA}/{sa_id}/api-keys")),
        Req::post(format!("{SA}/{sa_id}/api-keys"))
            .json(json!({"name": "k", "scopes": ["users:read"]})),
        Req::post(format!("{SA}/{sa_id}/client-secret")),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req.token(&alice)).await;
        assert_eq!(r.status, 404, "{label} of a deleted account: {}", r.text);
        assert_problem(&r, 404, "not_found");
    }
    let names: Vec<String> = all_pages(&app, &alice, SA, 50)
        .await
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["reporter"], "deleted accounts are hidden");
    let with_deleted = all_pages(&app, &alice, &format!("{SA}?include_deleted=true"), 50).await;
    assert_eq!(with_deleted.len(), 2);
    let gone = with_deleted
        .iter()
        .find(|a| a["id"] == sa_id.as_str())
        .unwrap();
    assert_eq!(gone["status"], "deleted");
    assert!(gone["deleted_at"].is_string());
    // Its keys were revoked and stay readable.
    let g = get_ok(
        &app,
        &alice,
        &format!("/v1/orgs/acme/api-keys/{}", id_of(&k)),
    )
    .await;
    assert_eq!(g["state"], "revoked", "{g}");
    assert!(g["revoked_at"].is_string());
    // The name is free again.
    let again = account(&app, &alice, "acme", "renamed", json!(["member"])).await;
    assert_ne!(again["id"], sa_id.as_str());
    assert_eq!(other["name"], "reporter");
});

backend_test!(bad_input_lists_every_field, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = app
        .send(Req::post(SA).token(&alice).json(json!({
            "name": "",
            "roles": ["member", "no-such-role", "owner"],
            "description": "d".repeat(600),
            "rotation_policy": {"max_key_age_days": 0},
            "colour": "blue",
        })))
        .await;
    assert_invalid(
        &r,
        &[
            "name",
            "roles[1]",
            "roles[2]",
            "description",
            "rotation_policy.max_key_age_days",
            "colour",
        ],
    );
    for (body, fields) in [
        (json!({"name": "x", "roles": []}), vec!["roles"]),
        (json!({"roles": ["member"]}), vec!["name"]),
        (json!({"name": "x", "roles": ["Not A Role"]}), vec!["roles"]),
        (json!({"name": "x", "roles": ["owner"]}), vec!["roles[0]"]),
        (
            json!({"name": "x", "roles": ["member"], "rotation_policy": {"refuse_after_days": 3}}),
            vec!["rotation_policy.refuse_after_days"],
        ),
        (
            json!({"name": "x", "roles": ["member"], "rotation_policy": {"max_key_age_days": 5, "nope": 1}}),
            vec!["rotation_policy.nope"],
        ),
        (
            json!({"name": "x", "roles": ["member"], "rotation_policy": {"max_key_age_days": 5, "refuse_after_days": 4000}}),
            vec!["rotation_policy.refuse_after_days"],
        ),
    ] {
        let r = app
            .send(Req::post(SA).token(&alice).json(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert_invalid(&r, &fields);
    }
    assert!(
        all_pages(&app, &alice, SA, 50).await.is_empty(),
        "nothing created"
    );

    let sa = account(&app, &alice, "acme", "ci", json!(["member"])).await;
    let sa_id = id_of(&sa);
    let keys = format!("{SA}/{sa_id}/api-keys");
    let r = app
        .send(Req::post(&keys).token(&alice).json(json!({
            "name": "",
            "scopes": ["users:read", "users:fly"],
            "expires_in_days": 0,
            "extra": true,
        })))
        .await;
    assert_invalid(&r, &["name", "scopes", "expires_in_days", "extra"]);
    assert!(r.text.contains("users:fly"), "{}", r.text);
    let r = app
        .send(Req::post(&keys).token(&alice).json(json!({
            "name": "k",
            "scopes": [],
            "expires_in_days": 3651,
            "extra": true,
        })))
        .await;
    assert_invalid(&r, &["scopes", "expires_in_days", "extra"]);
    let r = app
        .send(Req::post(&keys).token(&alice).json(json!({"name": "k"})))
        .await;
    assert_invalid(&r, &["scopes"]);
    assert!(all_pages(&app, &alice, &keys, 50).await.is_empty());

    // PATCH: every bad field too, and nothing changes.
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({
                    "name": " ",
                    "roles": ["ghost", "owner"],
                    "status": "gone",
                    "rotation_policy": {"max_key_age_days": 4000},
                    "extra": 1,
                })),
        )
        .await;
    assert_invalid(
        &r,
        &[
            "name",
            "roles[0]",
            "roles[1]",
            "status",
            "rotation_policy.max_key_age_days",
            "extra",
        ],
    );
    assert_eq!(get_ok(&app, &alice, &format!("{SA}/{sa_id}")).await, sa);

    // Rotation overlap bounds.
    let k = key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let r = app
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k)))
                .token(&alice)
                .json(json!({"overlap_seconds": -1, "x": 1})),
        )
        .await;
    assert_invalid(&r, &["overlap_seconds", "x"]);
    let r = app
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k)))
                .token(&alice)
                .json(json!({"overlap_seconds": 30 * 24 * 3600 + 1})),
        )
        .await;
    assert_invalid(&r, &["overlap_seconds"]);
    let rot = format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k));
    let r = app
        .send(Req::post(&rot).token(&alice).raw("", "application/json"))
        .await;
    assert_invalid(&r, &["body"]);
    let r = app
        .send(
            Req::post(&rot)
                .token(&alice)
                .raw("overlap_seconds=5", "application/x-www-form-urlencoded"),
        )
        .await;
    assert_invalid(&r, &["Content-Type"]);
    let r = app
        .send(Req::post(&rot).token(&alice).raw("[]", "application/json"))
        .await;
    assert_invalid(&r, &["body"]);
    assert_eq!(
        get_ok(
            &app,
            &alice,
            &format!("/v1/orgs/acme/api-keys/{}", id_of(&k))
        )
        .await["state"],
        "active",
        "refused rotations change nothing"
    );

    // Ids: not UUIDs → 400, unknown → 404.
    let ghost = "0190aaaa-0000-7000-8000-000000000001";
    for (req, bad) in [
        (Req::get(format!("{SA}/nope")), true),
        (
            Req::patch(format!("{SA}/nope")).json(json!({"name": "x"})),
            true,
        ),
        (Req::delete(format!("{SA}/nope")), true),
        (Req::get(format!("{SA}/nope/api-keys")), true),
        (
            Req::post(format!("{SA}/nope/api-keys"))
                .json(json!({"name": "k", "scopes": ["users:read"]})),
            true,
        ),
        (Req::post(format!("{SA}/nope/client-secret")), true),
        (Req::get("/v1/orgs/acme/api-keys/nope"), true),
        (Req::delete("/v1/orgs/acme/api-keys/nope"), true),
        (
            Req::post("/v1/orgs/acme/api-keys/nope/rotate").json(json!({})),
            true,
        ),
        (Req::get(format!("{SA}/{ghost}")), false),
        (
            Req::patch(format!("{SA}/{ghost}")).json(json!({"name": "x"})),
            false,
        ),
        (Req::delete(format!("{SA}/{ghost}")), false),
        (Req::get(format!("{SA}/{ghost}/api-keys")), false),
        (
            Req::post(format!("{SA}/{ghost}/api-keys"))
                .json(json!({"name": "k", "scopes": ["users:read"]})),
            false,
        ),
        (Req::post(format!("{SA}/{ghost}/client-secret")), false),
        (Req::get(format!("/v1/orgs/acme/api-keys/{ghost}")), false),
        (
            Req::delete(format!("/v1/orgs/acme/api-keys/{ghost}")),
            false,
        ),
        (
            Req::post(format!("/v1/orgs/acme/api-keys/{ghost}/rotate")).json(json!({})),
            false,
        ),
        // An account id is not a key id and the other way round.
        (Req::get(format!("/v1/orgs/acme/api-keys/{sa_id}")), false),
        (Req::get(format!("{SA}/{}", id_of(&k))), false),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req.token(&alice)).await;
        if bad {
            assert_eq!(r.status, 400, "{label}: {}", r.text);
            assert_invalid(&r, &["id"]);
        } else {
            assert_eq!(r.status, 404, "{label}: {}", r.text);
            assert_problem(&r, 404, "not_found");
        }
    }
    let r = app
        .send(Req::get(format!("{SA}?limit=0&include_deleted=maybe&x=1")).token(&alice))
        .await;
    assert_invalid(&r, &["limit", "include_deleted", "x"]);
});

backend_test!(
    api_keys_authenticate_within_their_scopes,
    |app| async move {
        let (alice, sa) = acme_with_account(&app, json!(["admin"])).await;
        let sa_id = id_of(&sa);
        let r = app
        .send(
            Req::post(format!("{SA}/{sa_id}/api-keys"))
                .token(&alice)
                .json(json!({"name": "deploy", "scopes": ["users:read", "invites:read", "users:read"], "expires_in_days": 10})),
        )
        .await;
        assert_status(&r, 201);
        assert_eq!(r.etag(), etag(1));
        let k = r.body.clone();
        let secret = secret(&k);
        assert!(is_key_shaped(&secret), "{secret}");
        assert_eq!(k["prefix"].as_str().unwrap(), &secret[4..16]);
        assert_eq!(k["scopes"], json!(["invites:read", "users:read"]));
        assert_eq!(k["state"], "active");
        assert_eq!(k["rotation_overdue"], false);
        assert_eq!(k["service_account_id"], sa_id.as_str());
        assert_eq!(k["name"], "deploy");
        assert_eq!(k["last_used_at"], Value::Null);
        assert_eq!(k["revoked_at"], Value::Null);
        let lifetime = ts(&k["expires_at"]) - ts(&k["created_at"]);
        assert_eq!(lifetime, Duration::days(10), "{k}");
        let kid = id_of(&k);

        // The secret is never shown again.
        for path in [
            format!("/v1/orgs/acme/api-keys/{kid}"),
            format!("{SA}/{sa_id}/api-keys"),
        ] {
            let r = app.send(Req::get(&path).token(&alice)).await;
            assert_status(&r, 200);
            assert!(!r.text.contains(&secret), "{path} shows the secret");
            assert!(
                !r.text.contains(&secret[17..60]),
                "{path} shows the secret part"
            );
            assert!(r.text.contains(&secret[4..16]), "{path} shows the prefix");
        }
        let r = app
            .send(Req::get(format!("/v1/orgs/acme/api-keys/{kid}")).token(&alice))
            .await;
        assert_eq!(r.etag(), etag(1));
        assert!(r.body.get("secret").is_none());

        let r = whoami(&app, &secret).await;
        assert_status(&r, 200);
        assert_eq!(r.body["kind"], "service_account");
        assert_eq!(r.body["credential"], "api_key");
        assert_eq!(r.body["id"], sa_id.as_str());
        assert_eq!(r.body["org_id"], sa["org_id"]);
        assert_eq!(r.body["roles"], json!(["admin"]));
        assert_eq!(r.body["permissions"], json!(["invites:read", "users:read"]));

        // Within scope.
        let members = get_ok(&app, &secret, "/v1/orgs/acme/users").await;
        assert_eq!(members["items"].as_array().unwrap().len(), 1);
        get_ok(&app, &secret, "/v1/orgs/acme/invites").await;
        // Within the roles but outside the key's scopes.
        let r = app
            .send(
                Req::post("/v1/orgs/acme/invites")
                    .token(&secret)
                    .json(json!({"email": "x@example.com", "roles": ["member"]})),
            )
            .await;
        assert_forbidden(&r, "missing_permission:invites:write");
        let r = app
            .send(Req::get("/v1/orgs/acme/roles").token(&secret))
            .await;
        assert_forbidden(&r, "missing_permission:roles:read");
        // People-only endpoints.
        for req in [
            Req::get("/v1/me"),
            Req::get("/v1/me/sessions"),
            Req::post("/v1/orgs").json(json!({"slug": "machines", "display_name": "m"})),
            Req::get("/v1/orgs"),
            Req::get("/v1/users"),
            Req::post("/v1/auth/logout"),
        ] {
            let label = format!("{req:?}");
            let r = app.send(req.token(&secret)).await;
            assert_eq!(r.status, 403, "{label}: {}", r.text);
            assert_forbidden(&r, "user_required");
        }

        // Roles shrink: the key shrinks with them, at once (scopes ∩ role permissions).
        let r = app
            .send(
                Req::patch(format!("{SA}/{sa_id}"))
                    .token(&alice)
                    .json(json!({"roles": ["member"]})),
            )
            .await;
        assert_status(&r, 200);
        let r = whoami(&app, &secret).await;
        assert_eq!(r.body["permissions"], json!(["users:read"]), "{}", r.text);
        assert_eq!(r.body["roles"], json!(["member"]));
        let r = app
            .send(Req::get("/v1/orgs/acme/invites").token(&secret))
            .await;
        assert_forbidden(&r, "missing_permission:invites:read");
        get_ok(&app, &secret, "/v1/orgs/acme/users").await;

        // A custom role held by the account: changing the role changes the key at once.
        let r = app
            .send(
                Req::post("/v1/orgs/acme/roles")
                    .token(&alice)
                    .json(json!({"name": "inviter", "permissions": ["invites:read"]})),
            )
            .await;
        assert_status(&r, 201);
        let r = app
            .send(
                Req::patch(format!("{SA}/{sa_id}"))
                    .token(&alice)
                    .json(json!({"roles": ["member", "inviter"]})),
            )
            .await;
        assert_status(&r, 200);
        get_ok(&app, &secret, "/v1/orgs/acme/invites").await;
        let r = app
            .send(
                Req::patch("/v1/orgs/acme/roles/inviter")
                    .token(&alice)
                    .json(json!({"permissions": []})),
            )
            .await;
        assert_status(&r, 200);
        let r = app
            .send(Req::get("/v1/orgs/acme/invites").token(&secret))
            .await;
        assert_forbidden(&r, "missing_permission:invites:read");
        // A role in use by an account stays.
        let r = app
            .send(Req::delete("/v1/orgs/acme/roles/inviter").token(&alice))
            .await;
        assert_conflict(&r, "role_in_use");
    }
);

backend_test!(no_escalation_through_machines, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let sa_id = id_of(&sa);
    // Scopes beyond the account's roles: named by their index as sent.
    let r = app
        .send(
            Req::post(format!("{SA}/{sa_id}/api-keys"))
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:write", "org:read", "audit:read", "users:read"]})),
        )
        .await;
    assert_invalid(&r, &["scopes[0]", "scopes[2]"]);
    for e in r.body["errors"].as_array().unwrap() {
        assert_eq!(e["code"], "scope_exceeds_roles", "{}", r.text);
    }

    // An admin (no org:delete) cannot hand org:delete to a machine, even through a custom role
    // (which it may not define either; the owner does).
    let (_, adam) = app
        .add_member(&alice, "acme", "adam@example.com", &["admin"])
        .await;
    let destroyer = json!({"name": "destroyer", "permissions": ["org:delete"]});
    let r = app
        .send(
            Req::post("/v1/orgs/acme/roles")
                .token(&adam)
                .json(destroyer.clone()),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::post("/v1/orgs/acme/roles")
                .token(&alice)
                .json(destroyer),
        )
        .await;
    assert_status(&r, 201);
    let audit = audit_changes(&app).await;
    let r = app
        .send(
            Req::post(SA)
                .token(&adam)
                .json(json!({"name": "bomb", "roles": ["destroyer"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&adam)
                .json(json!({"roles": ["member", "destroyer"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::post(SA)
                .token(&adam)
                .json(json!({"name": "o", "roles": ["owner"]})),
        )
        .await;
    assert_invalid(&r, &["roles[0]"]);
    assert_eq!(
        r.body["errors"][0]["code"], "owner_not_allowed",
        "{}",
        r.text
    );
    assert_eq!(audit_changes(&app).await, audit, "refusals change nothing");
    // The owner may.
    let bomb = account(&app, &alice, "acme", "bomb", json!(["destroyer"])).await;
    // ... but the admin may not mint a key of it carrying org:delete.
    let r = app
        .send(
            Req::post(format!("{SA}/{}/api-keys", id_of(&bomb)))
                .token(&adam)
                .json(json!({"name": "k", "scopes": ["org:delete"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let bomb_key = key(&app, &alice, "acme", &id_of(&bomb), json!(["org:delete"])).await;
    // ... nor rotate the owner's key to learn a secret with org:delete ...
    let r = app
        .send(
            Req::post(format!(
                "/v1/orgs/acme/api-keys/{}/rotate",
                id_of(&bomb_key)
            ))
            .token(&adam)
            .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    assert_key_works(&app, &secret(&bomb_key)).await;
    // ... nor take the account's client secret.
    let r = app
        .send(Req::post(format!("{SA}/{}/client-secret", id_of(&bomb))).token(&adam))
        .await;
    assert_forbidden(&r, "permission_escalation");
    // Taking credentials away is not an escalation.
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/api-keys/{}", id_of(&bomb_key))).token(&adam))
        .await;
    assert_status(&r, 204);

    // A key with service_accounts:write cannot create more than it holds itself.
    let boss = account(&app, &alice, "acme", "boss", json!(["admin"])).await;
    let mgr = key(
        &app,
        &alice,
        "acme",
        &id_of(&boss),
        json!(["service_accounts:write", "service_accounts:read"]),
    )
    .await;
    let mgr = secret(&mgr);
    let r = app
        .send(
            Req::post(SA)
                .token(&mgr)
                .json(json!({"name": "wider", "roles": ["member"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::post(format!("{SA}/{sa_id}/api-keys"))
                .token(&mgr)
                .json(json!({"name": "k", "scopes": ["users:read"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(
            Req::patch(format!("{SA}/{}", id_of(&boss)))
                .token(&mgr)
                .json(json!({"roles": ["admin", "destroyer"]})),
        )
        .await;
    assert_forbidden(&r, "permission_escalation");
    let r = app
        .send(Req::post(format!("{SA}/{sa_id}/client-secret")).token(&mgr))
        .await;
    assert_forbidden(&r, "permission_escalation");
    // Within what it holds, it may: a key with its own service_accounts:read for itself.
    let r = app
        .send(
            Req::post(format!("{SA}/{}/api-keys", id_of(&boss)))
                .token(&mgr)
                .json(json!({"name": "k", "scopes": ["service_accounts:read"]})),
        )
        .await;
    assert_status(&r, 201);
    let created = events(&app, "api_key.created").await;
    let last = created.last().unwrap();
    assert_eq!(last["actor"]["type"], "service_account");
    assert_eq!(last["actor"]["id"], boss["id"]);
});

backend_test!(malformed_keys_fail_before_any_lookup, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let k = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
    let real = secret(&k);
    assert_key_works(&app, &real).await;
    let last = real.chars().last().unwrap();
    let bad_checksum = replace_at(&real, real.len() - 1, if last == 'A' { 'B' } else { 'A' });
    let bad_secret = replace_at(
        &real,
        30,
        if real.as_bytes()[30] == b'A' {
            'B'
        } else {
            'A'
        },
    );
    let malformed = vec![
        bad_checksum,
        bad_secret,
        format!("uoz_{}", &real[4..]),
        format!("UOS_{}", &real[4..]),
        real[..60].to_string(),
        real[..66].to_string(),
        format!("{real}A"),
        format!("{}é{}", &real[..30], &real[31..]),
        replace_at(&real, 10, '_'),
        format!("{real}_"),
        "uos_".to_string(),
    ];
    let unknown = uos_authn::generate_api_key().key;
    for bad in &malformed {
        let r = whoami(&app, bad).await;
        assert_eq!(r.status, 401, "{bad:?}: {}", r.text);
        assert_problem(&r, 401, "unauthenticated");
    }
    assert_key_refused(&app, &unknown).await;
    assert!(
        events(&app, "api_key.refused").await.is_empty(),
        "a wrong secret is not a refusal of a known key"
    );

    // With the store gone, junk is still turned away cleanly; only a well-formed key needs
    // the store, so it cannot be answered with 401.
    app.state.svc.store().close().await;
    for bad in &malformed {
        let r = whoami(&app, bad).await;
        assert_eq!(r.status, 401, "{bad:?} needs no store: {}", r.text);
        assert_problem(&r, 401, "unauthenticated");
    }
    let fresh = uos_authn::generate_api_key().key;
    let r = whoami(&app, &fresh).await;
    assert_ne!(r.status, 401, "a well-formed key is looked up: {}", r.text);
    assert!(r.status.is_server_error(), "{}", r.text);
});

backend_test!(revoke_and_rotate, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let sa_id = id_of(&sa);
    let a = key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let a_secret = secret(&a);
    assert_key_works(&app, &a_secret).await;
    let a_path = format!("/v1/orgs/acme/api-keys/{}", id_of(&a));
    // Stale If-Match on revoke.
    let r = app
        .send(
            Req::delete(&a_path)
                .token(&alice)
                .header("if-match", &etag(9)),
        )
        .await;
    assert_problem(&r, 412, "precondition_failed");
    assert_key_works(&app, &a_secret).await;
    let r = app.send(Req::delete(&a_path).token(&alice)).await;
    assert_status(&r, 204);
    assert_key_refused(&app, &a_secret).await;
    let r = app.send(Req::delete(&a_path).token(&alice)).await;
    assert_status(&r, 204);
    assert_eq!(
        events(&app, "api_key.revoked").await.len(),
        1,
        "revoked once"
    );
    let g = get_ok(&app, &alice, &a_path).await;
    assert_eq!(g["state"], "revoked");
    let r = app
        .send(
            Req::post(format!("{a_path}/rotate"))
                .token(&alice)
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_conflict(&r, "key_not_active");

    // Rotation without overlap: the old key dies at once, the new one works.
    let b = key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let b_secret = secret(&b);
    assert_key_works(&app, &b_secret).await;
    let b_path = format!("/v1/orgs/acme/api-keys/{}", id_of(&b));
    let r = app
        .send(
            Req::post(format!("{b_path}/rotate"))
                .token(&alice)
                .header("if-match", &etag(5))
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_problem(&r, 412, "precondition_failed");
    let r = app
        .send(
            Req::post(format!("{b_path}/rotate"))
                .token(&alice)
                .header("if-match", &etag(1))
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_status(&r, 201);
    let c = r.body.clone();
    let c_secret = secret(&c);
    assert!(is_key_shaped(&c_secret));
    assert_ne!(c_secret, b_secret);
    assert_ne!(c["prefix"], b["prefix"]);
    assert_eq!(c["replaces"], b["id"]);
    assert_eq!(c["scopes"], b["scopes"]);
    assert_eq!(c["name"], b["name"]);
    assert_key_refused(&app, &b_secret).await;
    assert_key_works(&app, &c_secret).await;
    let g = get_ok(&app, &alice, &b_path).await;
    assert_eq!(g["replaced_by"], c["id"]);
    assert_eq!(g["state"], "rotated_out");
    let r = app
        .send(
            Req::post(format!("{b_path}/rotate"))
                .token(&alice)
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_conflict(&r, "key_not_active");

    // With an overlap, both work until it ends; rotating again during it is refused.
    let r = app
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&c)))
                .token(&alice)
                .json(json!({"overlap_seconds": 2})),
        )
        .await;
    assert_status(&r, 201);
    let d_secret = secret(&r.body);
    assert_key_works(&app, &c_secret).await;
    assert_key_works(&app, &d_secret).await;
    let g = get_ok(
        &app,
        &alice,
        &format!("/v1/orgs/acme/api-keys/{}", id_of(&c)),
    )
    .await;
    assert_eq!(g["state"], "active", "within the overlap");
    assert_eq!(g["replaced_by"], r.body["id"]);
    let r2 = app
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&c)))
                .token(&alice)
                .json(json!({})),
        )
        .await;
    assert_conflict(&r2, "key_not_active");
    tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
    assert_key_refused(&app, &c_secret).await;
    assert_key_works(&app, &d_secret).await;
    let rotated = events(&app, "api_key.rotated").await;
    assert_eq!(rotated.len(), 2);
    assert_eq!(rotated[0]["target"]["id"], b["id"]);

    // The default overlap is a day; the body may be left out.
    let r = app
        .send(
            Req::post(format!(
                "/v1/orgs/acme/api-keys/{}/rotate",
                r.body["id"].as_str().unwrap()
            ))
            .token(&alice),
        )
        .await;
    assert_status(&r, 201);
    assert_key_works(&app, &d_secret).await;
    let old = get_ok(
        &app,
        &alice,
        &format!(
            "/v1/orgs/acme/api-keys/{}",
            r.body["replaces"].as_str().unwrap()
        ),
    )
    .await;
    let left = ts(&old["expires_at"]) - Utc::now();
    assert!(
        left > Duration::hours(23) && left <= Duration::hours(24),
        "{old}"
    );

    // Every key of the account, revoked and rotated ones too, in creation order, in pages.
    let listed = all_pages(&app, &alice, &format!("{SA}/{sa_id}/api-keys"), 2).await;
    let ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    let want = [&a["id"], &b["id"], &c["id"], &old["id"], &r.body["id"]];
    assert_eq!(ids, want.map(|v| v.as_str().unwrap()));
    let states: Vec<&str> = listed
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["revoked", "rotated_out", "rotated_out", "active", "active"]
    );
});

backend_test!(overdue_keys_are_listed_in_pages, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let r = app
        .send(Req::post(SA).token(&alice).json(json!({
            "name": "ci",
            "roles": ["member"],
            "rotation_policy": {"max_key_age_days": 10},
        })))
        .await;
    assert_status(&r, 201);
    let sa = r.body;
    let org_id = sa["org_id"].as_str().unwrap().to_string();
    let fresh = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
    let mut aged = Vec::new();
    for days in [11, 12, 30] {
        let (secret, id) =
            insert_aged_key(&app, &org_id, &id_of(&fresh), Duration::days(days)).await;
        aged.push((secret, id));
    }
    // Younger than the maximum: not overdue.
    insert_aged_key(&app, &org_id, &id_of(&fresh), Duration::days(9)).await;
    let overdue = all_pages(&app, &alice, "/v1/orgs/acme/api-keys/overdue", 1).await;
    let ids: Vec<&str> = overdue.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        aged.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>()
    );
    assert!(overdue.iter().all(|k| k["rotation_overdue"] == true));
    assert!(
        overdue.iter().all(|k| k["state"] == "active"),
        "report only"
    );
    for (secret, _) in &aged {
        assert_key_works(&app, secret).await;
    }
    assert_eq!(app.state.svc.sweep_api_keys().await.unwrap(), 3);
    assert_eq!(app.state.svc.sweep_api_keys().await.unwrap(), 0);
    let metrics = app.send(Req::get("/metrics")).await.text;
    assert!(
        metrics
            .lines()
            .any(|l| l == "uos_api_keys_rotation_overdue 3"),
        "{metrics}"
    );
    // A revoked key is no longer due.
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/api-keys/{}", aged[0].1)).token(&alice))
        .await;
    assert_status(&r, 204);
    let overdue = all_pages(&app, &alice, "/v1/orgs/acme/api-keys/overdue", 50).await;
    assert_eq!(overdue.len(), 2);
    // Nor are other orgs' keys listed here.
    let (_, bea) = owned_org(&app, "bravo", "bea@example.com").await;
    assert!(all_pages(&app, &bea, "/v1/orgs/bravo/api-keys/overdue", 50)
        .await
        .is_empty());
});

backend_test!(
    expired_keys_are_refused,
    config = [("service.auth_cache_secs", json!(0))],
    |app| async move {
        let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
        let k = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
        let k_secret = secret(&k);
        assert_key_works(&app, &k_secret).await;
        edit_stored_key(&app, sa["org_id"].as_str().unwrap(), &id_of(&k), |k| {
            k.expires_at = Some(Utc::now() - Duration::seconds(5));
        })
        .await;
        assert_key_refused(&app, &k_secret).await;
        let g = get_ok(
            &app,
            &alice,
            &format!("/v1/orgs/acme/api-keys/{}", id_of(&k)),
        )
        .await;
        assert_eq!(g["state"], "expired");
        let refused = events(&app, "api_key.refused").await;
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["changes"]["after"]["reason"], "expired");
        let r = app
            .send(
                Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k)))
                    .token(&alice)
                    .json(json!({})),
            )
            .await;
        assert_conflict(&r, "key_not_active");
    }
);

backend_test!(changes_and_refusals_are_audited, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let sa_id = id_of(&sa);
    let k = key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let k_secret = secret(&k);
    let kid = id_of(&k);
    assert_key_works(&app, &k_secret).await;
    let r = app
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"description": "audited"})),
        )
        .await;
    assert_status(&r, 200);
    let r = app
        .send(Req::post(format!("{SA}/{sa_id}/client-secret")).token(&alice))
        .await;
    assert_status(&r, 201);
    assert_eq!(r.body["client_id"], sa_id.as_str());
    let client_secret = r.body["client_secret"].as_str().unwrap().to_string();
    assert!(client_secret.starts_with("uoscs_"), "{}", r.text);
    let g = get_ok(&app, &alice, &format!("{SA}/{sa_id}")).await;
    assert!(g["client_secret_created_at"].is_string());
    assert!(!serde_json::to_string(&g).unwrap().contains(&client_secret));
    let r = app
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{kid}/rotate"))
                .token(&alice)
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_status(&r, 201);
    let k2_secret = secret(&r.body);
    let k2 = id_of(&r.body);
    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/api-keys/{k2}")).token(&alice))
        .await;
    assert_status(&r, 204);

    // A revoked key used five times: one refusal event.
    for _ in 0..5 {
        assert_key_refused(&app, &k2_secret).await;
    }
    let refused = events(&app, "api_key.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["target"]["id"], k2.as_str());
    assert_eq!(refused[0]["changes"]["after"]["reason"], "revoked");
    assert_eq!(refused[0]["org_id"], sa["org_id"]);

    let r = app
        .send(Req::delete(format!("{SA}/{sa_id}")).token(&alice))
        .await;
    assert_status(&r, 204);

    let alice_id = my_id(&app, &alice).await;
    for (action, target) in [
        ("service_account.created", sa_id.as_str()),
        ("service_account.updated", sa_id.as_str()),
        ("service_account.deleted", sa_id.as_str()),
        ("client_secret.issued", sa_id.as_str()),
        ("api_key.created", kid.as_str()),
        ("api_key.rotated", kid.as_str()),
        ("api_key.revoked", k2.as_str()),
    ] {
        let e = events(&app, action).await;
        assert_eq!(e.len(), 1, "one {action}: {e:?}");
        assert_eq!(e[0]["target"]["id"], target, "{action}");
        assert_eq!(e[0]["actor"]["id"], alice_id.as_str(), "{action}");
        assert_eq!(e[0]["org_id"], sa["org_id"], "{action}");
    }
    let updated = &events(&app, "service_account.updated").await[0];
    assert_eq!(updated["changes"]["before"]["description"], Value::Null);
    assert_eq!(updated["changes"]["after"]["description"], "audited");

    let text = serde_json::to_string(&all_audit(&app).await).unwrap();
    for s in [&k_secret, &k2_secret, &client_secret] {
        assert!(
            !text.contains(s.as_str()),
            "a secret reached the audit trail"
        );
        // Nor its random part alone.
        let random = s.rsplit_once('_').unwrap().0;
        assert!(!text.contains(random), "a secret reached the audit trail");
    }
});

backend_test!(last_used_at_is_recorded, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let k = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
    let path = format!("/v1/orgs/acme/api-keys/{}", id_of(&k));
    assert_eq!(
        get_ok(&app, &alice, &path).await["last_used_at"],
        Value::Null
    );
    app.state.svc.flush_api_key_usage().await.unwrap();
    assert_eq!(
        get_ok(&app, &alice, &path).await["last_used_at"],
        Value::Null
    );
    let before = Utc::now() - Duration::seconds(1);
    assert_key_works(&app, &secret(&k)).await;
    assert_key_works(&app, &secret(&k)).await;
    app.state.svc.flush_api_key_usage().await.unwrap();
    let g = get_ok(&app, &alice, &path).await;
    let used = ts(&g["last_used_at"]);
    assert!(used >= before && used <= Utc::now(), "{g}");
    let listed = all_pages(&app, &alice, &format!("{SA}/{}/api-keys", id_of(&sa)), 10).await;
    assert_eq!(listed[0]["last_used_at"], g["last_used_at"]);
    assert_eq!(
        app.send(Req::get(&path).token(&alice)).await.etag(),
        etag(1),
        "usage is not an edit"
    );
});

backend_test!(
    rotation_policy_reports_and_refuses_overdue_keys,
    config = [("service.auth_cache_secs", json!(0))],
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let r = app
            .send(Req::post(SA).token(&alice).json(json!({
                "name": "ci",
                "roles": ["member"],
                "rotation_policy": {"max_key_age_days": 1, "refuse_after_days": 0},
            })))
            .await;
        assert_status(&r, 201);
        let sa = r.body;
        let org_id = sa["org_id"].as_str().unwrap().to_string();
        let fresh = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
        let (old_secret, old_id) =
            insert_aged_key(&app, &org_id, &id_of(&fresh), Duration::days(2)).await;
        let overdue = all_pages(&app, &alice, "/v1/orgs/acme/api-keys/overdue", 10).await;
        assert_eq!(overdue.len(), 1, "{overdue:?}");
        assert_eq!(overdue[0]["id"], old_id.as_str());
        assert_eq!(overdue[0]["rotation_overdue"], true);
        assert_eq!(overdue[0]["state"], "rotation_overdue");
        let g = get_ok(
            &app,
            &alice,
            &format!("/v1/orgs/acme/api-keys/{}", id_of(&fresh)),
        )
        .await;
        assert_eq!(g["rotation_overdue"], false);
        assert_eq!(g["state"], "active");

        let n1 = app.state.svc.sweep_api_keys().await.unwrap();
        let n2 = app.state.svc.sweep_api_keys().await.unwrap();
        assert_eq!(n2, 0, "reported once");
        assert!(n1 <= 1);
        let reported = events(&app, "api_key.rotation_overdue").await;
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!(reported[0]["target"]["id"], old_id.as_str());
        assert_eq!(reported[0]["org_id"], org_id.as_str());
        let metrics = app.send(Req::get("/metrics")).await.text;
        assert!(
            metrics
                .lines()
                .any(|l| l == "uos_api_keys_rotation_overdue 1"),
            "{metrics}"
        );
        assert_key_refused(&app, &old_secret).await;
        assert_key_works(&app, &secret(&fresh)).await;
        let refused = events(&app, "api_key.refused").await;
        assert_eq!(refused[0]["changes"]["after"]["reason"], "rotation_overdue");

        // Report-only: the overdue key is listed but works.
        let r = app
            .send(
                Req::patch(format!("{SA}/{}", id_of(&sa)))
                    .token(&alice)
                    .json(json!({"rotation_policy": {"max_key_age_days": 1}})),
            )
            .await;
        assert_status(&r, 200);
        assert_key_works(&app, &old_secret).await;
        let overdue = all_pages(&app, &alice, "/v1/orgs/acme/api-keys/overdue", 10).await;
        assert_eq!(overdue.len(), 1);
        assert_eq!(overdue[0]["state"], "active");
        assert_eq!(overdue[0]["rotation_overdue"], true);
        // Rotating it clears the report.
        let r = app
            .send(
                Req::post(format!("/v1/orgs/acme/api-keys/{old_id}/rotate"))
                    .token(&alice)
                    .json(json!({"overlap_seconds": 0})),
            )
            .await;
        assert_status(&r, 201);
        assert!(
            all_pages(&app, &alice, "/v1/orgs/acme/api-keys/overdue", 10)
                .await
                .is_empty()
        );
        app.state.svc.sweep_api_keys().await.unwrap();
        let metrics = app.send(Req::get("/metrics")).await.text;
        assert!(
            metrics
                .lines()
                .any(|l| l == "uos_api_keys_rotation_overdue 0"),
            "{metrics}"
        );
        assert_eq!(events(&app, "api_key.rotation_overdue").await.len(), 1);
    }
);

backend_test!(org_maximum_key_lifetime, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let keys = format!("{SA}/{}/api-keys", id_of(&sa));
    let r = app
        .send(
            Req::patch("/v1/orgs/acme")
                .token(&alice)
                .json(json!({"api_key_max_days": 30})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["api_key_max_days"], 30);
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:read"], "expires_in_days": 31})),
        )
        .await;
    assert_invalid(&r, &["expires_in_days"]);
    assert_eq!(r.body["errors"][0]["code"], "lifetime_exceeds_org_maximum");
    // Both service-level failures at once.
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:write"], "expires_in_days": 31})),
        )
        .await;
    assert_invalid(&r, &["expires_in_days", "scopes[0]"]);
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:read"], "expires_in_days": 30})),
        )
        .await;
    assert_status(&r, 201);
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:read"]})),
        )
        .await;
    assert_status(&r, 201);
    let lifetime = ts(&r.body["expires_at"]) - ts(&r.body["created_at"]);
    assert_eq!(lifetime, Duration::days(30));
    let left = ts(&r.body["expires_at"]) - Utc::now();
    assert!(
        left > Duration::days(30) - Duration::minutes(1),
        "{}",
        r.text
    );

    let r = app
        .send(
            Req::patch("/v1/orgs/acme")
                .token(&alice)
                .json(json!({"api_key_max_days": 0})),
        )
        .await;
    assert_invalid(&r, &["api_key_max_days"]);
    let r = app
        .send(
            Req::patch("/v1/orgs/acme")
                .token(&alice)
                .json(json!({"api_key_max_days": null})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["api_key_max_days"], Value::Null);
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:read"]})),
        )
        .await;
    assert_status(&r, 201);
    assert_eq!(r.body["expires_at"], Value::Null, "no maximum, no expiry");
    let r = app
        .send(
            Req::post(&keys)
                .token(&alice)
                .json(json!({"name": "k", "scopes": ["users:read"], "expires_in_days": 31})),
        )
        .await;
    assert_status(&r, 201);
});

backend_test!(introspecting_api_keys, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["admin"])).await;
    let k = key(
        &app,
        &alice,
        "acme",
        &id_of(&sa),
        json!(["users:read", "org:read"]),
    )
    .await;
    let k_secret = secret(&k);
    let admin = app.admin_token().await;
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&admin)
                .json(json!({"token": k_secret})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["token_type"], "api_key");
    assert_eq!(r.body["client_id"], sa["id"]);
    assert_eq!(r.body["sub"], sa["id"]);
    assert_eq!(r.body["org_id"], sa["org_id"]);
    assert_eq!(r.body["scope"], "org:read users:read");
    assert_eq!(r.body["iat"], ts(&k["created_at"]).timestamp());
    assert!(
        r.body.get("exp").is_none(),
        "a key without expiry: {}",
        r.text
    );
    assert!(!r.text.contains(&k_secret));
    // A key may introspect (itself included).
    let r = app
        .send(
            Req::post("/v1/auth/introspect")
                .token(&k_secret)
                .json(json!({"token": k_secret})),
        )
        .await;
    assert_status(&r, 200);
    assert_eq!(r.body["active"], true);

    let r = app
        .send(Req::delete(format!("/v1/orgs/acme/api-keys/{}", id_of(&k))).token(&alice))
        .await;
    assert_status(&r, 204);
    let forged = uos_authn::generate_api_key().key;
    let mangled = format!("{}x", &k_secret[..k_secret.len() - 1]);
    for t in [k_secret.as_str(), forged.as_str(), mangled.as_str(), "uos_"] {
        let r = app
            .send(
                Req::post("/v1/auth/introspect")
                    .token(&admin)
                    .json(json!({"token": t})),
            )
            .await;
        assert_status(&r, 200);
        assert_eq!(r.body, json!({"active": false}), "{t}");
    }
});

backend_test!(keys_stay_in_their_org, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["admin"])).await;
    let k = key(
        &app,
        &alice,
        "acme",
        &id_of(&sa),
        json!([
            "service_accounts:read",
            "service_accounts:write",
            "users:read"
        ]),
    )
    .await;
    let a_key = secret(&k);
    let (_, bea) = owned_org(&app, "bravo", "bea@example.com").await;
    let b_sa = account(&app, &bea, "bravo", "b-ci", json!(["member"])).await;
    let b_key = key(&app, &bea, "bravo", &id_of(&b_sa), json!(["users:read"])).await;
    let b_sa_id = id_of(&b_sa);
    let b_kid = id_of(&b_key);
    let a_sa_id = id_of(&sa);
    let a_kid = id_of(&k);

    let bravo = |sa: &str, kid: &str| {
        vec![
            Req::get("/v1/orgs/bravo"),
            Req::get("/v1/orgs/bravo/users"),
            Req::get("/v1/orgs/bravo/service-accounts"),
            Req::post("/v1/orgs/bravo/service-accounts")
                .json(json!({"name": "spy", "roles": ["member"]})),
            Req::get(format!("/v1/orgs/bravo/service-accounts/{sa}")),
            Req::patch(format!("/v1/orgs/bravo/service-accounts/{sa}"))
                .json(json!({"status": "disabled"})),
            Req::delete(format!("/v1/orgs/bravo/service-accounts/{sa}")),
            Req::get(format!("/v1/orgs/bravo/service-accounts/{sa}/api-keys")),
            Req::post(format!("/v1/orgs/bravo/service-accounts/{sa}/api-keys"))
                .json(json!({"name": "spy", "scopes": ["users:read"]})),
            Req::post(format!(
                "/v1/orgs/bravo/service-accounts/{sa}/client-secret"
            )),
            Req::get("/v1/orgs/bravo/api-keys/overdue"),
            Req::get(format!("/v1/orgs/bravo/api-keys/{kid}")),
            Req::delete(format!("/v1/orgs/bravo/api-keys/{kid}")),
            Req::post(format!("/v1/orgs/bravo/api-keys/{kid}/rotate")).json(json!({})),
        ]
    };
    let audit = audit_changes(&app).await;
    for req in bravo(&b_sa_id, &b_kid) {
        let label = format!("{req:?}");
        let r = app.send(req.token(&a_key)).await;
        assert_eq!(r.status, 404, "acme's key on {label}: {}", r.text);
        assert_problem(&r, 404, "not_found");
    }
    // Ids of acme's own things under bravo's slug: just as absent.
    for req in bravo(&a_sa_id, &a_kid) {
        let label = format!("{req:?}");
        let r = app.send(req.token(&a_key)).await;
        assert_eq!(r.status, 404, "{label}: {}", r.text);
    }
    // Bea (owner of bravo) cannot see acme's machines, even with real ids.
    for req in [
        Req::get("/v1/orgs/acme/service-accounts"),
        Req::get(format!("/v1/orgs/acme/service-accounts/{a_sa_id}")),
        Req::get(format!("/v1/orgs/acme/service-accounts/{a_sa_id}/api-keys")),
        Req::get(format!("/v1/orgs/acme/api-keys/{a_kid}")),
        Req::delete(format!("/v1/orgs/acme/api-keys/{a_kid}")),
        Req::post(format!("/v1/orgs/acme/api-keys/{a_kid}/rotate")).json(json!({})),
        Req::get("/v1/orgs/acme/api-keys/overdue"),
        // Acme's ids under bravo's slug.
        Req::get(format!("/v1/orgs/bravo/service-accounts/{a_sa_id}")),
        Req::get(format!(
            "/v1/orgs/bravo/service-accounts/{a_sa_id}/api-keys"
        )),
        Req::get(format!("/v1/orgs/bravo/api-keys/{a_kid}")),
        Req::delete(format!("/v1/orgs/bravo/api-keys/{a_kid}")),
        Req::post(format!("/v1/orgs/bravo/api-keys/{a_kid}/rotate")).json(json!({})),
        Req::post(format!(
            "/v1/orgs/bravo/service-accounts/{a_sa_id}/api-keys"
        ))
        .json(json!({"name": "spy", "scopes": ["users:read"]})),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req.token(&bea)).await;
        assert_eq!(r.status, 404, "bea on {label}: {}", r.text);
        assert_problem(&r, 404, "not_found");
    }
    assert_eq!(audit_changes(&app).await, audit, "nothing changed anywhere");
    assert_key_works(&app, &a_key).await;
    assert_key_works(&app, &secret(&b_key)).await;
    // Acme's key still works at home.
    let list = get_ok(&app, &a_key, "/v1/orgs/acme/service-accounts").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
});

backend_test!(
    idempotent_key_creation_never_replays_the_secret,
    |app| async move {
        let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
        let keys = format!("{SA}/{}/api-keys", id_of(&sa));
        let body = json!({"name": "k", "scopes": ["users:read"]});
        let send = || {
            app.send(
                Req::post(&keys)
                    .token(&alice)
                    .header("idempotency-key", "create-key-1")
                    .json(body.clone()),
            )
        };
        let first = send().await;
        assert_status(&first, 201);
        assert!(first.header("idempotent-replayed").is_none());
        let s = secret(&first.body);
        let second = send().await;
        assert_status(&second, 201);
        assert_eq!(second.header("idempotent-replayed"), Some("true"));
        assert!(
            !second.text.contains(&s),
            "a replay shows the secret: {}",
            second.text
        );
        assert_eq!(second.body["id"], first.body["id"]);
        assert_eq!(second.body["prefix"], first.body["prefix"]);
        assert_ne!(second.body["secret"], first.body["secret"]);
        let listed = all_pages(&app, &alice, &keys, 10).await;
        assert_eq!(listed.len(), 1, "one key");
        assert_eq!(events(&app, "api_key.created").await.len(), 1);
        // Same key, different body.
        let r = app
            .send(
                Req::post(&keys)
                    .token(&alice)
                    .header("idempotency-key", "create-key-1")
                    .json(json!({"name": "other", "scopes": ["users:read"]})),
            )
            .await;
        assert_problem(&r, 422, "idempotency_key_reused");

        // Rotation and client secrets: replays are redacted too.
        let rot = format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&first.body));
        let rotate = || {
            app.send(
                Req::post(&rot)
                    .token(&alice)
                    .header("idempotency-key", "rotate-1")
                    .json(json!({"overlap_seconds": 0})),
            )
        };
        let r1 = rotate().await;
        assert_status(&r1, 201);
        let r2 = rotate().await;
        assert_status(&r2, 201);
        assert_eq!(r2.header("idempotent-replayed"), Some("true"));
        assert!(!r2.text.contains(&secret(&r1.body)));
        assert_eq!(all_pages(&app, &alice, &keys, 10).await.len(), 2);
        let cs = format!("{SA}/{}/client-secret", id_of(&sa));
        let issue = || {
            app.send(
                Req::post(&cs)
                    .token(&alice)
                    .header("idempotency-key", "cs-1"),
            )
        };
        let c1 = issue().await;
        assert_status(&c1, 201);
        let c2 = issue().await;
        assert_status(&c2, 201);
        assert_eq!(c2.header("idempotent-replayed"), Some("true"));
        assert!(!c2.text.contains(c1.body["client_secret"].as_str().unwrap()));
        assert_eq!(events(&app, "client_secret.issued").await.len(), 1);
    }
);

backend_test!(auditors_read_but_do_not_write, |app| async move {
    let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
    let k = key(&app, &alice, "acme", &id_of(&sa), json!(["users:read"])).await;
    let (_, carl) = app
        .add_member(&alice, "acme", "carl@example.com", &["auditor"])
        .await;
    let (_, max) = app
        .add_member(&alice, "acme", "max@example.com", &["member"])
        .await;
    get_ok(&app, &carl, SA).await;
    get_ok(&app, &carl, &format!("{SA}/{}", id_of(&sa))).await;
    get_ok(
        &app,
        &carl,
        &format!("/v1/orgs/acme/api-keys/{}", id_of(&k)),
    )
    .await;
    get_ok(&app, &carl, "/v1/orgs/acme/api-keys/overdue").await;
    let audit = audit_changes(&app).await;
    for (who, req, rule) in [
        (
            &carl,
            Req::post(SA).json(json!({"name": "x", "roles": ["member"]})),
            "missing_permission:service_accounts:write",
        ),
        (
            &carl,
            Req::delete(format!("/v1/orgs/acme/api-keys/{}", id_of(&k))),
            "missing_permission:service_accounts:write",
        ),
        (
            &carl,
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k))).json(json!({})),
            "missing_permission:service_accounts:write",
        ),
        (
            &carl,
            Req::post(format!("{SA}/{}/client-secret", id_of(&sa))),
            "missing_permission:service_accounts:write",
        ),
        (
            &max,
            Req::get(SA),
            "missing_permission:service_accounts:read",
        ),
        (
            &max,
            Req::get(format!("/v1/orgs/acme/api-keys/{}", id_of(&k))),
            "missing_permission:service_accounts:read",
        ),
    ] {
        let label = format!("{req:?}");
        let r = app.send(req.token(who)).await;
        assert_eq!(r.status, 403, "{label}: {}", r.text);
        assert_forbidden(&r, rule);
    }
    assert_eq!(audit_changes(&app).await, audit);
    assert_key_works(&app, &secret(&k)).await;
});

backend_test!(
    machines_of_a_suspended_or_deleted_org_stop,
    |app| async move {
        let (alice, sa) = acme_with_account(&app, json!(["member"])).await;
        let sa_id = id_of(&sa);
        let k = secret(&key(&app, &alice, "acme", &sa_id, json!(["users:read"])).await);
        assert_key_works(&app, &k).await;
        let admin = app.admin_token().await;
        let r = app
            .send(
                Req::post("/v1/orgs/acme/suspend")
                    .token(&admin)
                    .json(json!({})),
            )
            .await;
        assert_status(&r, 200);
        assert_key_refused(&app, &k).await;
        let r = app
            .send(
                Req::post("/v1/auth/introspect")
                    .token(&admin)
                    .json(json!({"token": k})),
            )
            .await;
        assert_status(&r, 200);
        assert_eq!(r.body, json!({"active": false}));
        let r = app
            .send(
                Req::post("/v1/orgs/acme/resume")
                    .token(&admin)
                    .json(json!({})),
            )
            .await;
        assert_status(&r, 200);
        assert_key_works(&app, &k).await;
        let r = app.send(Req::delete("/v1/orgs/acme").token(&admin)).await;
        assert_status(&r, 200);
        assert_key_refused(&app, &k).await;
    }
);

/// How long until `key` is refused on `app`, polling; panics after 5 s.
async fn refused_after(app: &TestApp, key: &str, since: std::time::Instant) -> std::time::Duration {
    loop {
        let r = whoami(app, key).await;
        if r.status == 401 {
            assert_problem(&r, 401, "unauthenticated");
            return since.elapsed();
        }
        assert_status(&r, 200);
        assert!(since.elapsed().as_secs() < 5, "still accepted after 5 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Revocation, rotation and disabling reach every replica within a second, through Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn revocations_reach_other_replicas_within_a_second() {
    let redis_url =
        std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let config = [
        ("redis_url", json!(redis_url)),
        (
            "redis_prefix",
            json!(format!("uos-test-{}:", uos_domain::new_id())),
        ),
    ];
    let a = TestApp::spawn_with(uos_testkit::Backend::Postgres, &config).await;
    let b = a.replica(&config).await;
    let (alice, sa) = acme_with_account(&a, json!(["member"])).await;
    let sa_id = id_of(&sa);
    let k1 = key(&a, &alice, "acme", &sa_id, json!(["users:read"])).await;
    let k2 = key(&a, &alice, "acme", &sa_id, json!(["users:read"])).await;
    // B has both keys cached (default cache TTL: far longer than a second).
    for k in [&k1, &k2] {
        assert_key_works(&b, &secret(k)).await;
    }
    let t = std::time::Instant::now();
    let r = a
        .send(Req::delete(format!("/v1/orgs/acme/api-keys/{}", id_of(&k1))).token(&alice))
        .await;
    assert_status(&r, 204);
    let took = refused_after(&b, &secret(&k1), t).await;
    assert!(
        took < std::time::Duration::from_secs(1),
        "revocation took {took:?}"
    );
    assert_key_works(&b, &secret(&k2)).await;
    // Refusals are audited once per key and minute across replicas, not once per replica.
    for app in [&a, &b, &a, &b] {
        assert_key_refused(app, &secret(&k1)).await;
    }
    let refused = events(&a, "api_key.refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["target"]["id"], k1["id"]);

    let t = std::time::Instant::now();
    let r = a
        .send(
            Req::post(format!("/v1/orgs/acme/api-keys/{}/rotate", id_of(&k2)))
                .token(&alice)
                .json(json!({"overlap_seconds": 0})),
        )
        .await;
    assert_status(&r, 201);
    let k3 = secret(&r.body);
    let took = refused_after(&b, &secret(&k2), t).await;
    assert!(
        took < std::time::Duration::from_secs(1),
        "rotation took {took:?}"
    );
    assert_key_works(&b, &k3).await;

    let t = std::time::Instant::now();
    let r = a
        .send(
            Req::patch(format!("{SA}/{sa_id}"))
                .token(&alice)
                .json(json!({"status": "disabled"})),
        )
        .await;
    assert_status(&r, 200);
    let took = refused_after(&b, &k3, t).await;
    assert!(
        took < std::time::Duration::from_secs(1),
        "disabling took {took:?}"
    );
}
