//! Requests racing each other: optimistic concurrency, idempotency keys, unique slugs and the
//! last-owner rule hold when two requests arrive at the same time.

use super::*;

/// Rounds per race: one lucky interleaving proves little.
const ROUNDS: usize = 5;

backend_test!(
    concurrent_patches_with_the_same_if_match,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        for round in 0..ROUNDS {
            let current = app
                .send(Req::get("/v1/orgs/acme").token(&admin))
                .await
                .etag();
            let patch = |name: String| {
                Req::patch("/v1/orgs/acme")
                    .token(&admin)
                    .header("if-match", &current)
                    .json(json!({"display_name": name}))
            };
            let (a, b) = tokio::join!(
                app.send(patch(format!("a{round}"))),
                app.send(patch(format!("b{round}")))
            );
            let mut statuses = [a.status.as_u16(), b.status.as_u16()];
            statuses.sort();
            assert_eq!(
                statuses,
                [200, 412],
                "round {round}: exactly one wins: {} / {}",
                a.text,
                b.text
            );
            let (winner, loser) = if a.status == 200 { (a, b) } else { (b, a) };
            assert_problem(&loser, 412, "precondition_failed");
            let now = app.send(Req::get("/v1/orgs/acme").token(&admin)).await;
            assert_eq!(
                now.body["display_name"], winner.body["display_name"],
                "the winner's write stands"
            );
            assert_eq!(now.etag(), winner.etag());
            let before: i64 = current.trim_matches('"').parse().unwrap();
            assert_eq!(now.etag(), etag(before + 1), "one write, one version");
        }
    }
);

// Without If-Match the client asked for no precondition: a write that loses a race to
// another writer is a 409 conflict it may retry, never the 412 reserved for a stale ETag.
backend_test!(
    concurrent_patches_without_if_match_are_never_412,
    |app| async move {
        let admin = app.admin_token().await;
        app.create_org(&admin, "acme").await;
        for round in 0..ROUNDS * 4 {
            let patch = |name: String| {
                Req::patch("/v1/orgs/acme")
                    .token(&admin)
                    .json(json!({"display_name": name}))
            };
            let (a, b) = tokio::join!(
                app.send(patch(format!("a{round}"))),
                app.send(patch(format!("b{round}")))
            );
            for r in [&a, &b] {
                match r.status.as_u16() {
                    200 => {}
                    409 => {
                        assert_problem(r, 409, "conflict");
                        assert_eq!(r.body["reason"], "concurrent_update", "{}", r.text);
                    }
                    other => panic!("round {round}: {other}: {}", r.text),
                }
            }
            assert!(
                a.status == 200 || b.status == 200,
                "round {round}: one of them wins: {} / {}",
                a.text,
                b.text
            );
            let now = app.send(Req::get("/v1/orgs/acme").token(&admin)).await;
            let winners: Vec<_> = [&a, &b]
                .into_iter()
                .filter(|r| r.status == 200)
                .map(|r| r.body["display_name"].clone())
                .collect();
            assert!(
                winners.contains(&now.body["display_name"]),
                "round {round}: a winner's write stands: {}",
                now.text
            );
        }
    }
);

backend_test!(
    concurrent_creates_with_the_same_idempotency_key,
    |app| async move {
        let admin = app.admin_token().await;
        for round in 0..ROUNDS {
            let slug = format!("race-{round}");
            let key = format!("race-key-{round}");
            let create = || {
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", &key)
                    .json(json!({"slug": slug, "display_name": "Race"}))
            };
            let (a, b) = tokio::join!(app.send(create()), app.send(create()));
            let created: Vec<&TestResponse> = [&a, &b]
                .into_iter()
                .filter(|r| r.status == 201 && r.header("idempotent-replayed").is_none())
                .collect();
            assert_eq!(
                created.len(),
                1,
                "round {round}: one request creates: {} / {}",
                a.text,
                b.text
            );
            let other = if std::ptr::eq(created[0], &a) { &b } else { &a };
            match other.status.as_u16() {
            409 => assert_problem(other, 409, "idempotency_key_in_flight"),
            201 => {
                assert_eq!(other.header("idempotent-replayed"), Some("true"), "round {round}");
                assert_eq!(other.body, created[0].body, "a replay returns the first body");
            }
            s => panic!("round {round}: the duplicate must be 409 in flight or a 201 replay, got {s}: {}", other.text),
        }
        }
        let orgs = all_pages(&app, &admin, "/v1/orgs", 100).await;
        assert_eq!(orgs.len(), ROUNDS, "each org created once: {orgs:?}");
        let created = all_audit(&app)
            .await
            .into_iter()
            .filter(|e| e["action"] == "org.created")
            .count();
        assert_eq!(created, ROUNDS, "one org.created event per org");
        // Whatever the race did, the key now replays.
        let r = app
            .send(
                Req::post("/v1/orgs")
                    .token(&admin)
                    .header("idempotency-key", "race-key-0")
                    .json(json!({"slug": "race-0", "display_name": "Race"})),
            )
            .await;
        assert_status(&r, 201);
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
    }
);

backend_test!(concurrent_creates_of_the_same_slug, |app| async move {
    let admin = app.admin_token().await;
    for round in 0..ROUNDS {
        let slug = format!("same-{round}");
        let create = |n: u8| {
            Req::post("/v1/orgs")
                .token(&admin)
                .json(json!({"slug": slug, "display_name": format!("Same {n}")}))
        };
        let (a, b) = tokio::join!(app.send(create(1)), app.send(create(2)));
        let mut statuses = [a.status.as_u16(), b.status.as_u16()];
        statuses.sort();
        assert_eq!(
            statuses,
            [201, 409],
            "round {round}: {} / {}",
            a.text,
            b.text
        );
        let loser = if a.status == 409 { &a } else { &b };
        assert_conflict(loser, "slug_taken");
    }
    assert_eq!(all_pages(&app, &admin, "/v1/orgs", 100).await.len(), ROUNDS);
});

backend_test!(
    concurrent_owner_demotions_keep_one_owner,
    |app| async move {
        let admin = app.admin_token().await;
        for round in 0..ROUNDS {
            let slug = format!("own-{round}");
            let (alice_id, alice) =
                owned_org(&app, &slug, &format!("alice{round}@example.com")).await;
            let (olly_id, olly) = app
                .add_member(
                    &alice,
                    &slug,
                    &format!("olly{round}@example.com"),
                    &["owner"],
                )
                .await;
            // Each owner steps down at the same time; only one may.
            let demote = |id: &str, token: &str| {
                Req::put(format!("/v1/orgs/{slug}/users/{id}/roles"))
                    .token(token)
                    .json(json!({"roles": ["admin"]}))
            };
            let (a, b) = tokio::join!(
                app.send(demote(&alice_id, &alice)),
                app.send(demote(&olly_id, &olly))
            );
            let mut statuses = [a.status.as_u16(), b.status.as_u16()];
            statuses.sort();
            assert_eq!(
                statuses,
                [200, 409],
                "round {round}: {} / {}",
                a.text,
                b.text
            );
            let loser = if a.status == 409 { &a } else { &b };
            assert_conflict(loser, "last_owner");
            let members = all_pages(&app, &admin, &format!("/v1/orgs/{slug}/users"), 50).await;
            let owners = members
                .iter()
                .filter(|m| m["roles"].as_array().unwrap().contains(&json!("owner")))
                .count();
            assert_eq!(
                owners, 1,
                "round {round}: exactly one owner remains: {members:?}"
            );
        }
    }
);

/// Requests beyond `max_requests_in_progress` wait for a place and are never refused for it;
/// probes and the authentication endpoints do not wait.
#[tokio::test]
async fn requests_beyond_the_bound_wait_their_turn_and_probes_pass() {
    let app = TestApp::spawn_with(
        uos_testkit::Backend::Sqlite,
        &[("max_requests_in_progress", json!(2))],
    )
    .await;
    let admin = app.admin_token().await;
    let taken = app.state.in_progress.acquire_many(2).await.unwrap();
    let wait = std::time::Duration::from_millis(300);
    let queued = app.send(Req::get("/v1/orgs").token(&admin));
    tokio::pin!(queued);
    let early = tokio::time::timeout(wait, &mut queued).await;
    assert!(early.is_err(), "a request beyond the bound waits");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = tokio::time::timeout(wait, app.send(Req::get(path))).await;
        assert_eq!(r.expect("probes do not wait").status, 200, "{path}");
    }
    assert_admission(&app, 2, 1).await;
    let whoami = Req::get("/v1/auth/whoami").token(&admin);
    let r = tokio::time::timeout(wait, app.send(whoami)).await;
    assert_eq!(r.expect("authentication does not wait").status, 200);
    drop(taken);
    assert_eq!(queued.await.status, 200, "the waiting request is served");
    assert_admission(&app, 0, 0).await;
}

/// `/metrics` shows `in_progress` requests holding places of the bound of 2 and `waiting`
/// parked for one.
async fn assert_admission(app: &TestApp, in_progress: u32, waiting: u32) {
    let text = app.send(Req::get("/metrics")).await.text;
    for (state, n) in [
        ("in_progress", in_progress),
        ("waiting", waiting),
        ("max", 2),
    ] {
        let line = format!("uos_http_admission_requests{{state=\"{state}\"}} {n}");
        assert!(
            text.lines().any(|l| l == line),
            "{line} in {:?}",
            text.lines()
                .filter(|l| l.starts_with("uos_http_admission"))
                .collect::<Vec<_>>()
        );
    }
}
