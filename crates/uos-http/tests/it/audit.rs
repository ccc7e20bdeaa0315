//! The audit trail through the API: each org's exported chain verifies offline on its own,
//! events carry the request id that made them, secrets never appear, tampering and (with a
//! checkpoint) truncation are detected, filters and pages.

use super::*;
use uos_audit::{chain_of, verify_chain, verify_chains, AuditEvent};

const NEW_PASSWORD: &str = "the second password of dan";

/// Some changes of every kind, each with a known request id. Returns the invite token used.
async fn history(app: &TestApp) -> String {
    let admin = app.admin_token().await;
    let with_id = |req: Req, id: &str| req.token(&admin).header("x-request-id", id);
    let r = app
        .send(with_id(
            Req::post("/v1/orgs").json(json!({"slug": "acme", "display_name": "Acme"})),
            "req-create-acme",
        ))
        .await;
    assert_status(&r, 201);
    let r = app
        .send(with_id(
            Req::post("/v1/orgs/acme/invites")
                .json(json!({"email": "dan@example.com", "roles": ["member"]})),
            "req-invite-dan",
        ))
        .await;
    assert_status(&r, 201);
    let invite_token = r.body["token"].as_str().unwrap().to_string();
    let r = app
        .send(
            Req::post("/v1/invites/accept")
                .header("x-request-id", "req-accept-dan")
                .json(json!({"token": invite_token, "password": PASSWORD})),
        )
        .await;
    assert_status(&r, 200);
    let dan = app.login("dan@example.com", PASSWORD).await;
    let r = app
        .send(
            Req::post("/v1/me/password")
                .token(&dan)
                .header("x-request-id", "req-password-dan")
                .json(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_status(&r, 204);
    let r = app
        .send(with_id(
            Req::patch("/v1/orgs/acme").json(json!({"display_name": "Acme Inc"})),
            "req-rename-acme",
        ))
        .await;
    assert_status(&r, 200);
    let r = app
        .send(with_id(
            Req::post("/v1/orgs/acme/roles")
                .json(json!({"name": "support", "permissions": ["invites:read"]})),
            "req-role",
        ))
        .await;
    assert_status(&r, 201);
    invite_token
}

async fn keys(app: &TestApp) -> Vec<uos_keys::PublicKey> {
    let admin = app.admin_token().await;
    let r = app.send(Req::get("/v1/audit/keys").token(&admin)).await;
    assert_status(&r, 200);
    uos_audit::parse_keys(&r.text).expect("GET /v1/audit/keys is a key list")
}

fn parse(items: &[Value]) -> Vec<AuditEvent> {
    items
        .iter()
        .map(|v| serde_json::from_value(v.clone()).expect("every item is an audit event"))
        .collect()
}

backend_test!(
    exported_chain_verifies_and_carries_request_ids,
    |app| async move {
        let invite_token = history(&app).await;
        let admin = app.admin_token().await;
        // Pages of 3 so the chain is stitched together across many pages.
        let items = all_pages(&app, &admin, "/v1/audit/events", 3).await;
        assert!(
            items.len() > 10,
            "expected a real history, got {}",
            items.len()
        );
        let events = parse(&items);
        let keys = keys(&app).await;
        let reports = verify_chains(&events, &keys).expect("every exported chain verifies");
        let chains: Vec<&str> = reports.iter().map(|r| r.chain.as_str()).collect();
        let acme = get_ok(&app, &admin, "/v1/orgs/acme").await["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(chains, [format!("org:{acme}").as_str(), "platform"]);
        for e in &events {
            assert_eq!(
                e.chain,
                chain_of(e.org_id),
                "an event is on its org's chain"
            );
        }
        for r in &reports {
            let seqs: Vec<i64> = events
                .iter()
                .filter(|e| e.chain == r.chain)
                .map(|e| e.seq)
                .collect();
            assert_eq!(
                seqs,
                (1..=r.events as i64).collect::<Vec<_>>(),
                "chronological, gap-free"
            );
        }

        // Each change names the request that made it.
        for (rid, action) in [
            ("req-create-acme", "org.created"),
            ("req-create-acme", "member.added"),
            ("req-invite-dan", "invite.created"),
            ("req-accept-dan", "user.created"),
            ("req-accept-dan", "invite.accepted"),
            ("req-accept-dan", "member.added"),
            ("req-password-dan", "user.password_changed"),
            ("req-rename-acme", "org.updated"),
            ("req-role", "role.created"),
        ] {
            assert!(
                events
                    .iter()
                    .any(|e| e.request_id.as_deref() == Some(rid) && e.action == action),
                "an {action} event with request id {rid}"
            );
        }
        let create = events.iter().find(|e| e.action == "org.created").unwrap();
        assert_eq!(create.actor.kind, "user");
        assert_eq!(
            create.actor.id.as_deref(),
            Some(my_id(&app, &admin).await.as_str())
        );
        assert_eq!(create.changes.after["slug"], "acme");
        let rename = events.iter().find(|e| e.action == "org.updated").unwrap();
        assert_eq!(rename.changes.before["display_name"], "Acme");
        assert_eq!(rename.changes.after["display_name"], "Acme Inc");

        // Secrets never appear, in any form.
        let text = serde_json::to_string(&items).unwrap();
        for secret in [
            invite_token.as_str(),
            PASSWORD,
            NEW_PASSWORD,
            ADMIN_PASSWORD,
            "argon2",
            "$argon2id",
        ] {
            assert!(
                !text.contains(secret),
                "the audit trail must not contain {secret:?}"
            );
        }
        // Nor does the invite token's hash.
        assert!(
            !text.contains(&token_hash(&invite_token)),
            "the invite token hash must not appear"
        );
    }
);

backend_test!(tampering_is_detected_every_way, |app| async move {
    history(&app).await;
    let admin = app.admin_token().await;
    // The org's own chain, verified without any other org's events.
    let events = parse(&all_pages(&app, &admin, "/v1/audit/events?org=acme", 100).await);
    let keys = keys(&app).await;
    verify_chain(&events, &keys, None).expect("the untouched chain verifies");
    let n = events.len();
    assert!(n >= 6);

    let mut edited = events.clone();
    edited[3].changes.after = json!({"slug": "evil"});
    assert!(
        verify_chain(&edited, &keys, None).is_err(),
        "an edited event is detected"
    );
    let mut edited = events.clone();
    edited[2].actor.id = Some("someone-else".into());
    assert!(
        verify_chain(&edited, &keys, None).is_err(),
        "an edited actor is detected"
    );

    let mut deleted = events.clone();
    deleted.remove(n / 2);
    assert!(
        verify_chain(&deleted, &keys, None).is_err(),
        "a deleted event is detected"
    );

    let mut swapped = events.clone();
    swapped.swap(1, 2);
    assert!(
        verify_chain(&swapped, &keys, None).is_err(),
        "swapped events are detected"
    );

    // A forged event that links correctly and is re-hashed, but cannot be signed.
    let mut inserted = events.clone();
    let mut forged = events[n / 2].clone();
    forged.id = uuid::Uuid::now_v7();
    forged.action = "org.deleted".into();
    forged.prev_hash = events[n / 2].hash.clone();
    forged.seq = events[n / 2].seq + 1;
    forged.hash = uos_audit::compute_hash(&forged);
    inserted.insert(n / 2 + 1, forged);
    assert!(
        verify_chain(&inserted, &keys, None).is_err(),
        "an inserted event is detected"
    );

    // And the chain still verifies against the untouched export.
    verify_chain(&events, &keys, None).unwrap();
});

backend_test!(filters_and_pages, |app| async move {
    history(&app).await;
    let admin = app.admin_token().await;
    let all = all_audit(&app).await;
    let acme_id = get_ok(&app, &admin, "/v1/orgs/acme").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_id = my_id(&app, &admin).await;

    let by_org = all_pages(&app, &admin, "/v1/audit/events?org=acme", 2).await;
    assert!(!by_org.is_empty());
    assert!(
        by_org.iter().all(|e| e["org_id"] == acme_id.as_str()),
        "org filter"
    );
    assert_eq!(
        by_org.len(),
        all.iter()
            .filter(|e| e["org_id"] == acme_id.as_str())
            .count()
    );

    let by_actor = all_pages(
        &app,
        &admin,
        &format!("/v1/audit/events?actor={admin_id}"),
        2,
    )
    .await;
    assert!(!by_actor.is_empty());
    assert!(
        by_actor
            .iter()
            .all(|e| e["actor"]["id"] == admin_id.as_str()),
        "actor filter"
    );
    assert_eq!(
        by_actor.len(),
        all.iter()
            .filter(|e| e["actor"]["id"] == admin_id.as_str())
            .count()
    );

    let by_action = all_pages(&app, &admin, "/v1/audit/events?action=member.added", 1).await;
    assert_eq!(
        by_action.len(),
        2,
        "the admin as creator and dan: {by_action:?}"
    );
    assert!(by_action.iter().all(|e| e["action"] == "member.added"));

    let by_target = all_pages(
        &app,
        &admin,
        &format!("/v1/audit/events?target={acme_id}"),
        10,
    )
    .await;
    let actions: Vec<&str> = by_target
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["org.created", "org.updated"], "target filter");

    // since is inclusive, until exclusive.
    let mid = &all[all.len() / 2];
    let t = mid["occurred_at"].as_str().unwrap().to_string();
    let enc = t.replace('+', "%2B");
    let since = all_pages(&app, &admin, &format!("/v1/audit/events?since={enc}"), 100).await;
    let until = all_pages(&app, &admin, &format!("/v1/audit/events?until={enc}"), 100).await;
    assert!(
        since.iter().any(|e| e["id"] == mid["id"]),
        "since includes its instant"
    );
    assert!(
        until.iter().all(|e| e["id"] != mid["id"]),
        "until excludes its instant"
    );
    assert_eq!(
        since.len() + until.len(),
        all.len(),
        "since and until split the trail"
    );
    let both = all_pages(
        &app,
        &admin,
        &format!("/v1/audit/events?since={enc}&until={enc}"),
        100,
    )
    .await;
    assert!(both.is_empty());

    let combined = all_pages(
        &app,
        &admin,
        &format!("/v1/audit/events?org=acme&actor={admin_id}&action=org.updated"),
        10,
    )
    .await;
    assert_eq!(combined.len(), 1);

    let r = get_ok(&app, &admin, "/v1/audit/events?action=nothing.like.this").await;
    assert_eq!(r, json!({"items": [], "next_page_token": null}));
});

backend_test!(who_may_read_the_trail, |app| async move {
    let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
    let (_, carl) = app
        .add_member(&alice, "acme", "carl@example.com", &["auditor"])
        .await;
    let (_, max) = app
        .add_member(&alice, "acme", "max@example.com", &["member"])
        .await;
    // Owners and auditors read their org's trail; members do not.
    let acme_id = get_ok(&app, &alice, "/v1/orgs/acme").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for t in [&alice, &carl] {
        let items = all_pages(&app, t, "/v1/audit/events?org=acme", 50).await;
        assert!(!items.is_empty());
        assert!(items.iter().all(|e| e["org_id"] == acme_id.as_str()));
    }
    let r = app
        .send(Req::get("/v1/audit/events?org=acme").token(&max))
        .await;
    assert_forbidden(&r, "missing_permission:audit:read");
    // The whole trail is for platform admins only.
    let r = app.send(Req::get("/v1/audit/events").token(&alice)).await;
    assert_forbidden(&r, "platform_admin_required");
    let r = app.send(Req::get("/v1/audit/events")).await;
    assert_problem(&r, 401, "unauthenticated");
    let r = app
        .send(Req::get("/v1/audit/events?org=absent").token(&alice))
        .await;
    assert_problem(&r, 404, "not_found");

    // Any signed-in user may fetch the keys to verify with; anonymous callers may not.
    let r = app.send(Req::get("/v1/audit/keys").token(&max)).await;
    assert_status(&r, 200);
    let keys = r.body["keys"].as_array().unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k["key_id"].is_string()
        && k["public_key"].is_string()
        && k["algorithm"] == "Ed25519"));
    let r = app.send(Req::get("/v1/audit/keys")).await;
    assert_problem(&r, 401, "unauthenticated");
});

/// `uos_audit_head_conflicts_total` on `app`'s `/metrics`.
async fn head_conflicts(app: &TestApp) -> u64 {
    let r = app.send(Req::get("/metrics")).await;
    assert_status(&r, 200);
    r.text
        .lines()
        .find_map(|l| l.strip_prefix("uos_audit_head_conflicts_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no audit head conflict counter:\n{}", r.text))
}

/// Renames `org` on `app` as `token`.
async fn rename(app: &TestApp, token: &str, org: &str, name: &str) {
    let r = app
        .send(
            Req::patch(format!("/v1/orgs/{org}"))
                .token(token)
                .json(json!({ "display_name": name })),
        )
        .await;
    assert_status(&r, 200);
}

backend_test!(
    replicas_writing_in_turn_keep_each_chain_whole_and_count_their_conflicts,
    |a| async move {
        // Each replica chains from the head of its own last commit to a chain. When the other
        // replica moved that chain's head meanwhile, the append is refused, chained again from
        // the locked head, and counted. Writes to different chains never conflict.
        let b = a.replica(&[]).await;
        let on_a = a.admin_token().await;
        a.create_org(&on_a, "acme").await;
        assert_eq!(head_conflicts(&a).await, 0, "a's heads were current");
        let on_b = b.admin_token().await;
        rename(&b, &on_b, "acme", "by b").await;
        assert_eq!(head_conflicts(&b).await, 0, "b had no heads to be stale");
        rename(&a, &on_a, "acme", "by a").await;
        assert_eq!(head_conflicts(&a).await, 1, "b's rename moved acme's head");
        // A login chains in one step from the remembered platform head, and is counted the
        // same.
        a.admin_token().await;
        assert_eq!(
            head_conflicts(&a).await,
            2,
            "b's login moved the platform head"
        );
        b.create_org(&on_b, "beta").await;
        a.create_org(&on_a, "gamma").await;
        assert_eq!(
            head_conflicts(&a).await,
            2,
            "other orgs' chains do not contend"
        );
        assert_eq!(
            head_conflicts(&b).await,
            0,
            "b's own commits kept its heads current"
        );

        let items = all_pages(&a, &on_a, "/v1/audit/events", 100).await;
        let events = parse(&items);
        let reports = verify_chains(&events, &keys(&a).await).expect("each chain whole");
        assert_eq!(reports.len(), 4, "three orgs' chains and the platform's");
        let created = events.iter().filter(|e| e.action == "org.created").count();
        assert_eq!(created, 3, "every org's event is in its chain");
    }
);

backend_test!(
    checkpoints_seal_every_chain_and_catch_a_cut_tail,
    |app| async move {
        history(&app).await;
        let admin = app.admin_token().await;
        // The issuer may have run on its own already (it does at start-up).
        let svc = &app.state.svc;
        svc.issue_checkpoint().await.unwrap();
        assert_eq!(
            svc.issue_checkpoint().await.unwrap(),
            None,
            "no checkpoint while no head moves"
        );
        let listed = all_pages(&app, &admin, "/v1/audit/checkpoints", 1).await;
        let listed: Vec<uos_audit::Checkpoint> = listed
            .into_iter()
            .map(|c| serde_json::from_value(c).expect("a checkpoint"))
            .collect();
        let second = listed.last().expect("a checkpoint was issued").clone();
        let t = second.issued_at.to_rfc3339().replace('+', "%2B");
        let since = all_pages(
            &app,
            &admin,
            &format!("/v1/audit/checkpoints?since={t}"),
            10,
        )
        .await;
        assert_eq!(since.len(), 1, "since is inclusive");

        let keys = keys(&app).await;
        uos_audit::verify_checkpoint(&second, &keys).expect("signed by an audit key");
        let events = parse(&all_audit(&app).await);
        verify_chains(&events, &keys).unwrap();
        let acme = events
            .iter()
            .find(|e| e.action == "org.created")
            .unwrap()
            .chain
            .clone();
        let chain: Vec<AuditEvent> = events.iter().filter(|e| e.chain == acme).cloned().collect();
        uos_audit::check_against_checkpoint(&second, &acme, &chain).expect("whole");
        let cut = &chain[..chain.len() - 1];
        verify_chain(cut, &keys, None).expect("a cut chain alone still verifies");
        assert!(
            matches!(
                uos_audit::check_against_checkpoint(&second, &acme, cut),
                Err(uos_audit::CheckpointError::Truncated { .. })
            ),
            "the checkpoint shows the cut"
        );
        let mut edited = second.clone();
        edited.heads[0].seq -= 1;
        assert_eq!(
            uos_audit::verify_checkpoint(&edited, &keys),
            Err(uos_audit::CheckpointError::BadSignature)
        );

        // They name every org's chain: platform auditors only.
        let (_, alice) = owned_org(&app, "solo", "alice@example.com").await;
        let r = app
            .send(Req::get("/v1/audit/checkpoints").token(&alice))
            .await;
        assert_forbidden(&r, "platform_admin_required");
        let r = app.send(Req::get("/v1/audit/checkpoints")).await;
        assert_problem(&r, 401, "unauthenticated");
        let r = app
            .send(Req::get("/v1/audit/checkpoints?since=yesterday&page_token=x").token(&admin))
            .await;
        assert_invalid(&r, &["since", "page_token"]);
    }
);
