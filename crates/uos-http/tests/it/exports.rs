//! Audit exports through the API: a job that ends done, a download that is the trail as
//! served plus a manifest and verifies offline (held to the checkpoint it carries), org
//! admins limited to their own org without learning of anyone else's exports, every bad field
//! named, an edited line named by the verifier, and the same on a real S3-compatible server.

use super::*;
use sha2::{Digest as _, Sha256};
use uos_audit::{parse_export, verify_export, ExportFile};

/// A checkpoint after every commit, so an export always has one to be held to.
pub(super) fn checkpoint_every_event() -> [(&'static str, Value); 1] {
    [("service.audit_checkpoint_every_events", json!(1))]
}

/// Requests an export as `token`, expecting 202; its id.
async fn request(app: &TestApp, token: &str, body: Value) -> String {
    let r = app
        .send(Req::post("/v1/audit/exports").token(token).json(body))
        .await;
    assert_status(&r, 202);
    assert_eq!(r.body["status"], "pending", "{}", r.text);
    assert_eq!(r.body["events_written"], 0, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// Polls the export's status until it is done or failed (the worker runs in the background).
async fn finished(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let body = get_ok(app, token, &format!("/v1/audit/exports/{id}")).await;
        if body["status"] == "done" || body["status"] == "failed" {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("export {id} did not finish within 30 s");
}

/// The downloaded file, after checking its media type and that it hashes to `sha256`.
async fn download(app: &TestApp, token: &str, id: &str, sha256: &str) -> String {
    let r = app
        .send(Req::get(format!("/v1/audit/exports/{id}/download")).token(token))
        .await;
    assert_status(&r, 200);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(
        hex::encode(Sha256::digest(r.text.as_bytes())),
        sha256,
        "the file hashes to the sha256 its status reports"
    );
    r.text
}

/// Exports as `token` with `body`, waits for it, downloads and parses the file.
pub(super) async fn export(app: &TestApp, token: &str, body: Value) -> (Value, String, ExportFile) {
    let id = request(app, token, body).await;
    let status = finished(app, token, &id).await;
    assert_eq!(status["status"], "done", "{status}");
    let text = download(app, token, &id, status["sha256"].as_str().unwrap()).await;
    let file = parse_export(&text).expect("the download is an export file");
    assert_eq!(
        status["events_written"].as_u64(),
        Some(file.events.len() as u64),
        "events_written counts the event lines"
    );
    (status, text, file)
}

/// Some changes in two orgs.
async fn history(app: &TestApp) {
    let admin = app.admin_token().await;
    for slug in ["acme", "beta"] {
        app.create_org(&admin, slug).await;
        let r = app
            .send(
                Req::patch(format!("/v1/orgs/{slug}"))
                    .token(&admin)
                    .json(json!({"display_name": format!("{slug} Inc")})),
            )
            .await;
        assert_status(&r, 200);
    }
}

backend_test!(
    the_whole_trail_exports_as_served_and_verifies,
    config = checkpoint_every_event(),
    |app| async move {
        history(&app).await;
        let admin = app.admin_token().await;
        let (status, _, file) = export(&app, &admin, json!({})).await;
        assert!(status.get("error").is_none(), "{status}");

        // Each line is the event exactly as GET /v1/audit/events serves it, in that order.
        let served = all_audit(&app).await;
        let lines: Vec<Value> = file
            .events
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert!(lines.len() > 5, "a real history: {}", lines.len());
        assert_eq!(
            lines[..],
            served[..lines.len()],
            "a prefix of the trail as served"
        );

        let (_, manifest) = file.manifest.clone().expect("a manifest line");
        let keys = get_ok(&app, &admin, "/v1/audit/keys").await;
        assert_eq!(serde_json::to_value(&manifest.keys).unwrap(), keys["keys"]);
        assert_eq!(manifest.count, lines.len() as u64);
        let mut chains = manifest.chains.clone();
        chains.sort();
        assert_eq!(chains.len(), 3, "two orgs and the platform: {chains:?}");
        assert!(manifest.first_seq.values().all(|&s| s == 1), "from genesis");
        let checkpoint = manifest.checkpoints.last().expect("a checkpoint").clone();
        let report = verify_export(&file, &manifest.keys, None).expect("the export verifies");
        assert_eq!(report.checkpoint, Some(checkpoint.checkpoint_id));
        assert_eq!(report.chains.len(), 3);

        // The request itself is on the platform chain.
        let trail = all_audit(&app).await;
        let exported: Vec<&Value> = trail
            .iter()
            .filter(|e| e["action"] == "audit.exported")
            .collect();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0]["target"]["type"], "audit_export");
        assert_eq!(exported[0]["target"]["id"], status["id"]);
        assert_eq!(exported[0]["chain"], "platform");
    }
);

backend_test!(
    an_org_admin_exports_its_own_org_and_nothing_else,
    config = checkpoint_every_event(),
    |app| async move {
        let (_, alice) = owned_org(&app, "acme", "alice@example.com").await;
        let (_, bob) = owned_org(&app, "beta", "bob@example.com").await;
        let acme = get_ok(&app, &alice, "/v1/orgs/acme").await["id"]
            .as_str()
            .unwrap()
            .to_string();

        let (status, _, file) = export(&app, &alice, json!({"org": "acme"})).await;
        assert_eq!(status["org_id"], acme.as_str());
        assert!(!file.events.is_empty());
        assert!(
            file.events
                .iter()
                .all(|e| e.org_id.map(|o| o.to_string()) == Some(acme.clone())),
            "only acme's events"
        );
        let (_, manifest) = file.manifest.clone().unwrap();
        assert_eq!(manifest.chains, [format!("org:{acme}")]);
        assert!(
            manifest.checkpoints.is_empty(),
            "a checkpoint would name every other org's chain"
        );
        verify_export(&file, &manifest.keys, None).expect("acme's chain verifies alone");
        let exported = all_pages(
            &app,
            &alice,
            "/v1/audit/events?org=acme&action=audit.exported",
            50,
        )
        .await;
        assert_eq!(exported.len(), 1, "recorded on acme's chain");

        // Another org, and the whole trail, are not alice's to export.
        let r = app
            .send(
                Req::post("/v1/audit/exports")
                    .token(&alice)
                    .json(json!({"org": "beta"})),
            )
            .await;
        assert_problem(&r, 404, "not_found");
        let r = app
            .send(Req::post("/v1/audit/exports").token(&alice).json(json!({})))
            .await;
        assert_forbidden(&r, "platform_admin_required");

        // Bob's export and the platform's are not found for her, as an id that names nothing.
        let bobs = request(&app, &bob, json!({"org": "beta"})).await;
        let admin = app.admin_token().await;
        let platform = request(&app, &admin, json!({})).await;
        for id in [&bobs, &platform, &uuid::Uuid::now_v7().to_string()] {
            for path in [
                format!("/v1/audit/exports/{id}"),
                format!("/v1/audit/exports/{id}/download"),
            ] {
                let r = app.send(Req::get(path.clone()).token(&alice)).await;
                assert_problem(&r, 404, "not_found");
            }
        }
        // Their owners (and platform admins) read them.
        assert_eq!(finished(&app, &bob, &bobs).await["status"], "done");
        assert_eq!(finished(&app, &admin, &bobs).await["status"], "done");
        assert_eq!(finished(&app, &admin, &platform).await["status"], "done");
        let r = app
            .send(Req::post("/v1/audit/exports").json(json!({})))
            .await;
        assert_problem(&r, 401, "unauthenticated");
    }
);

backend_test!(bad_input_names_every_bad_field, |app| async move {
    let admin = app.admin_token().await;
    let r = app
        .send(Req::post("/v1/audit/exports").token(&admin).json(json!({
            "org": "Not A Slug",
            "since": "yesterday",
            "until": 17,
            "format": "csv",
        })))
        .await;
    assert_invalid(&r, &["org", "since", "until", "format"]);
    let r = app
        .send(Req::post("/v1/audit/exports").token(&admin).json(json!({
            "since": "2026-01-02T00:00:00Z",
            "until": "2026-01-01T00:00:00Z",
        })))
        .await;
    assert_invalid(&r, &["until"]);
    for path in [
        "/v1/audit/exports/not-a-uuid",
        "/v1/audit/exports/not-a-uuid/download",
    ] {
        let r = app.send(Req::get(path).token(&admin)).await;
        assert_invalid(&r, &["id"]);
    }
    // Nothing was requested.
    assert!(all_audit(&app)
        .await
        .iter()
        .all(|e| e["action"] != "audit.exported"));
});

backend_test!(
    a_window_exports_a_segment_that_verifies_and_an_edit_is_named_by_its_line,
    config = checkpoint_every_event(),
    |app| async move {
        history(&app).await;
        let admin = app.admin_token().await;
        let all = all_audit(&app).await;
        // From the fourth event on: chains start after their genesis.
        let since = all[3]["occurred_at"].as_str().unwrap().to_string();
        let (_, text, file) = export(&app, &admin, json!({"since": since})).await;
        let (_, manifest) = file.manifest.clone().unwrap();
        assert!(manifest.first_seq.values().any(|&s| s > 1), "{manifest:?}");
        verify_export(&file, &manifest.keys, None).expect("a segment verifies from its first seq");

        // Edit the third line's action: the verifier names line 3.
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut event: Value = serde_json::from_str(&lines[2]).unwrap();
        event["action"] = json!("org.deleted");
        lines[2] = event.to_string();
        let edited = parse_export(&(lines.join("\n") + "\n")).unwrap();
        let err = verify_export(&edited, &manifest.keys, None).unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }
);

/// The same export through the S3 adapter, against moto's real S3 server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto"]
async fn exports_go_to_an_s3_bucket() {
    let moto = uos_objects::testing::Moto::start();
    moto.create_bucket("uos-audit-exports");
    let s3 = moto.settings();
    let app = TestApp::spawn_with(
        uos_testkit::Backend::Sqlite,
        &[
            ("object_store.url", json!("s3://uos-audit-exports/exports")),
            ("object_store.endpoint", json!(moto.endpoint)),
            (
                "object_store.access_key_id",
                json!(uos_objects::testing::ACCESS_KEY_ID),
            ),
            (
                "object_store.secret_access_key",
                json!(uos_objects::testing::SECRET_ACCESS_KEY),
            ),
            ("object_store.region", json!(s3.region)),
            ("service.audit_checkpoint_every_events", json!(1)),
        ],
    )
    .await;
    history(&app).await;
    let admin = app.admin_token().await;
    let (_, _, file) = export(&app, &admin, json!({})).await;
    let (_, manifest) = file.manifest.clone().unwrap();
    verify_export(&file, &manifest.keys, None).expect("the export read back from S3 verifies");
    // Nothing went to the local directory.
    assert!(!app.data_dir().join("exports/audit-exports").exists());
}

backend_test!(
    an_export_taken_while_orgs_are_written_verifies,
    config = checkpoint_every_event(),
    |app| async move {
        history(&app).await;
        let app = std::sync::Arc::new(app);
        let admin = app.admin_token().await;
        // Two orgs written to without pause while exports page through the trail. Each export
        // must come out whole and verifiable. (The commit-order race the worker's head snapshot
        // guards against, an event committing after a later-stored one of another chain, is
        // possible here on PostgreSQL but not forced: this shows no harm, not the guard.)
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = ["acme", "beta"]
            .into_iter()
            .map(|slug| {
                let (app, admin, stop) = (app.clone(), admin.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = app
                            .send(
                                Req::patch(format!("/v1/orgs/{slug}"))
                                    .token(&admin)
                                    .json(json!({"display_name": format!("{slug} {n}")})),
                            )
                            .await;
                        assert_status(&r, 200);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut files = Vec::new();
        for _ in 0..3 {
            let (_, _, file) = export(&app, &admin, json!({})).await;
            files.push(file);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            assert!(w.await.unwrap() > 0, "the writers ran");
        }
        for file in files {
            let (_, manifest) = file.manifest.clone().unwrap();
            verify_export(&file, &manifest.keys, None)
                .expect("an export taken under writes verifies");
        }
    }
);
