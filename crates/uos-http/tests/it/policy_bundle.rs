//! Policy bundles over HTTP: `GET /v1/policy/bundle` describes the bundle deciding now;
//! `POST /v1/policy/reload` (platform admins) replaces it with a changed policy directory,
//! which changes what `POST /v1/policy/evaluate` answers and the `policy_revision` it names;
//! a bundle that does not compile or fails its Rego tests is refused with file and line while
//! the running one stays; a watched directory reloads by itself.
//!
//! These tests need their own policy directory before the app starts, so they spell out the
//! two backends that `backend_test!` would generate.

use super::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uos_testkit::Backend;

fn shipped_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A copy of the shipped policies to change.
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped_policies()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// An extra rule of the decision point: `model.train` is frozen for everyone. (The shipped
/// Rego tests ask about `model.invoke`, so they still pass.)
const FREEZE: &str = r#"package uos.pdp

deny contains reason("frozen", "uos.pdp.freeze", "model training is frozen") if {
	input.action == "model.train"
}
"#;

async fn spawn(backend: Backend, dir: &Path, watch_secs: u64) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[
            ("policy_dir", json!(dir)),
            ("policy_watch_secs", json!(watch_secs)),
        ],
    )
    .await
}

async fn evaluate(app: &TestApp, admin: &str, admin_id: &str) -> Value {
    let r = app
        .send(Req::post("/v1/policy/evaluate").token(admin).json(json!({
            "principal": {"type": "user", "id": admin_id},
            "action": "model.train",
            "resource": {"type": "model", "id": "gpt", "org": "acme"},
        })))
        .await;
    assert_status(&r, 200);
    r.body
}

async fn reload_changes_decisions_and_refuses_broken_bundles(backend: Backend) {
    let dir = policy_dir();
    let app = spawn(backend, dir.path(), 0).await;
    let admin = app.admin_token().await;
    let admin_id = my_id(&app, &admin).await;
    app.create_org(&admin, "acme").await;

    let bundle = get_ok(&app, &admin, "/v1/policy/bundle").await;
    let first = bundle["revision"].as_str().unwrap().to_owned();
    assert_eq!(first.len(), 64, "a hex SHA-256: {bundle}");
    assert!(bundle["loaded_at"].as_str().is_some(), "{bundle}");
    let files: Vec<&str> = bundle["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "decision.rego",
            "decision_test.rego",
            "pdp.rego",
            "pdp_test.rego",
            "tables.rego"
        ]
    );
    let before = evaluate(&app, &admin, &admin_id).await;
    assert_eq!(before["allow"], true, "{before}");
    assert_eq!(before["policy_revision"], first.as_str());

    // Nothing changed: nothing replaced, nothing audited.
    let r = app.send(Req::post("/v1/policy/reload").token(&admin)).await;
    assert_status(&r, 200);
    assert_eq!(r.body["changed"], false, "{}", r.text);
    assert_eq!(r.body["revision"], first.as_str());

    std::fs::write(dir.path().join("freeze.rego"), FREEZE).unwrap();
    let r = app.send(Req::post("/v1/policy/reload").token(&admin)).await;
    assert_status(&r, 200);
    assert_eq!(r.body["changed"], true, "{}", r.text);
    assert_eq!(r.body["previous_revision"], first.as_str());
    let second = r.body["revision"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let bundle = get_ok(&app, &admin, "/v1/policy/bundle").await;
    assert_eq!(bundle["revision"], second.as_str());
    assert_eq!(bundle["modules"].as_array().unwrap().len(), 6);

    let after = evaluate(&app, &admin, &admin_id).await;
    assert_eq!(after["allow"], false, "{after}");
    assert_eq!(after["reasons"][0]["code"], "frozen", "{after}");
    assert_eq!(after["policy_revision"], second.as_str());

    let events = get_ok(&app, &admin, "/v1/audit/events?action=policy.reloaded").await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one reload changed the revision: {events}");
    assert_eq!(items[0]["target"]["id"], second.as_str(), "{events}");

    // A file that does not parse: refused with its file and line; the running bundle stays.
    std::fs::write(
        dir.path().join("broken.rego"),
        "package uos.pdp\n\nbroken := {\n",
    )
    .unwrap();
    let r = app.send(Req::post("/v1/policy/reload").token(&admin)).await;
    assert_problem(&r, 422, "policy_refused");
    let field = r.body["errors"][0]["field"].as_str().unwrap_or_default();
    assert!(field.starts_with("broken.rego:"), "{}", r.text);
    assert_eq!(r.body["errors"][0]["code"], "compile_error", "{}", r.text);
    assert!(
        r.body["detail"].as_str().unwrap().contains("broken.rego:"),
        "{}",
        r.text
    );
    std::fs::remove_file(dir.path().join("broken.rego")).unwrap();

    // A Rego test that fails: refused naming the test's file and line.
    std::fs::write(
        dir.path().join("freeze_test.rego"),
        "package uos.freeze_test\n\ntest_models_run if {\n\tdata.uos.pdp.decision.allow with input as {\"action\": \"model.train\"}\n}\n",
    )
    .unwrap();
    let r = app.send(Req::post("/v1/policy/reload").token(&admin)).await;
    assert_problem(&r, 422, "policy_refused");
    assert_eq!(
        r.body["errors"][0]["field"], "freeze_test.rego:3",
        "{}",
        r.text
    );
    assert_eq!(r.body["errors"][0]["code"], "test_failed", "{}", r.text);

    let bundle = get_ok(&app, &admin, "/v1/policy/bundle").await;
    assert_eq!(
        bundle["revision"],
        second.as_str(),
        "the running bundle stays"
    );
    let still = evaluate(&app, &admin, &admin_id).await;
    assert_eq!(still["policy_revision"], second.as_str());
    assert_eq!(still["allow"], false);

    let metrics = app.send(Req::get("/metrics")).await.text;
    assert!(
        metrics.contains("uos_policy_reloads_total{result=\"refused\"} 2"),
        "{metrics}"
    );

    // Bundles are for platform admins only.
    let (_, bob) = app
        .add_member(&admin, "acme", "bob@example.com", &["owner"])
        .await;
    let r = app.send(Req::get("/v1/policy/bundle").token(&bob)).await;
    assert_forbidden(&r, "platform_admin_required");
    let r = app.send(Req::post("/v1/policy/reload").token(&bob)).await;
    assert_forbidden(&r, "platform_admin_required");
}

async fn a_watched_directory_reloads_itself(backend: Backend) {
    let dir = policy_dir();
    let app = spawn(backend, dir.path(), 1).await;
    let admin = app.admin_token().await;
    let first = get_ok(&app, &admin, "/v1/policy/bundle").await["revision"].clone();
    std::fs::write(dir.path().join("freeze.rego"), FREEZE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = get_ok(&app, &admin, "/v1/policy/bundle").await;
        if now["revision"] != first {
            assert_eq!(now["modules"].as_array().unwrap().len(), 6, "{now}");
            break;
        }
        assert!(Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

mod reload {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        reload_changes_decisions_and_refuses_broken_bundles(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL"]
    async fn postgres() {
        reload_changes_decisions_and_refuses_broken_bundles(Backend::Postgres).await;
    }
}

mod watch {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        a_watched_directory_reloads_itself(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL"]
    async fn postgres() {
        a_watched_directory_reloads_itself(Backend::Postgres).await;
    }
}
