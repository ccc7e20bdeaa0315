//! `uosctl declarative schema|validate|plan` on real repository checkouts, planned against a
//! store and through a running API.

use std::process::{Command, Output};

fn uosctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uosctl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A repository checkout whose `orgs/` declares acme with one owner; and its `orgs/`.
fn repo_with_acme() -> (tempfile::TempDir, std::path::PathBuf) {
    let repo = tempfile::tempdir().unwrap();
    let orgs = repo.path().join("orgs");
    std::fs::create_dir(&orgs).unwrap();
    std::fs::write(
        orgs.join("acme.yaml"),
        "version: 1\nslug: acme\ndisplay_name: Acme\nmembers:\n  - email: ann@example.com\n    roles: [owner]\n",
    )
    .unwrap();
    (repo, orgs)
}

#[test]
fn schema_prints_the_org_file_schema() {
    let out = uosctl(&["declarative", "schema"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema, uos_reconcile::json_schema());
}

#[test]
fn validate_names_each_problem_and_fails_only_if_a_file_is_invalid() {
    let (repo, orgs) = repo_with_acme();
    let dir = repo.path().to_str().unwrap();
    let out = uosctl(&["declarative", "validate", "--repo", dir]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok orgs/acme.yaml (acme)\n");

    std::fs::write(
        orgs.join("beta.yaml"),
        "version: 1\nslug: beta\ndisplay_name: Beta\nmembers:\n  - email: nobody\n    roles: [owner]\n",
    )
    .unwrap();
    let out = uosctl(&["declarative", "validate", "--repo", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout),
        "ok orgs/acme.yaml (acme)\norgs/beta.yaml:5:12: members[0].email: email must contain '@'\n"
    );
    assert!(text(&out.stderr).contains("2 org files, 1 valid, 1 invalid"));

    let out = uosctl(&["declarative", "validate", "--repo", dir, "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["orgs"][0]["valid"], true);
    assert_eq!(report["orgs"][1]["problems"][0]["line"], 5);
    assert_eq!(
        report["orgs"][1]["problems"][0]["field"],
        "members[0].email"
    );

    let out = uosctl(&["declarative", "validate", "--repo", "/nonexistent/repo"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plan_reads_the_configured_store_and_prints_what_would_change() {
    let (repo, orgs) = repo_with_acme();
    let data = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/uos.db", data.path().display());
    let dir = repo.path().to_str().unwrap();
    let plan = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_uosctl"))
            .args(["declarative", "plan", "--repo", dir])
            .args(args)
            .env("UOS_DATABASE_URL", &url)
            .env_remove("UOS_MIGRATION_DATABASE_URL")
            .output()
            .unwrap()
    };
    // A plan migrates and creates nothing: a store that does not exist is an error.
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no database at"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.path().join("uos.db").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_uosctl"))
        .arg("migrate")
        .env("UOS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The store is empty: nobody with an account owns the new org, so it cannot be
    // created yet, and the plan says so and fails.
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "orgs/acme.yaml (acme):\n  ! refused: members: a new org needs an owner who already \
         has an account: declare one with the owner role\n"
    );
    let out = plan(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["plans"][0]["changes"], serde_json::json!([]));
    assert_eq!(report["plans"][0]["refusals"][0]["field"], "members");

    // An invalid file fails the plan (exit 1) and is named; the valid one is still planned.
    std::fs::write(orgs.join("beta.yaml"), "version: 1\nslug: beta\n").unwrap();
    let out = plan(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).starts_with("orgs/acme.yaml (acme):"));
    assert!(
        text(&out.stdout).contains("orgs/beta.yaml:"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_through_a_running_api_as_a_platform_admin() {
    let app = uos_testkit::TestApp::spawn(uos_testkit::Backend::Sqlite).await;
    let admin = app.admin_token().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let router = app.router.clone();
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).await
    });
    let repo = tempfile::tempdir().unwrap();
    let orgs = repo.path().join("orgs");
    std::fs::create_dir(&orgs).unwrap();
    std::fs::write(
        orgs.join("acme.yaml"),
        format!(
            "version: 1\nslug: acme\ndisplay_name: Acme\nmembers:\n  - email: {}\n    roles: [owner]\n",
            uos_testkit::ADMIN_EMAIL
        ),
    )
    .unwrap();
    std::fs::write(orgs.join("beta.yaml"), "version: 1\nslug: beta\n").unwrap();
    let dir = repo.path().to_str().unwrap().to_owned();
    let plan = move |token: Option<&str>, json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_uosctl"));
        cmd.args(["declarative", "plan", "--repo", &dir, "--api", &api]);
        if json {
            cmd.arg("--json");
        }
        match token {
            Some(t) => cmd.env("UOS_TOKEN", t),
            None => cmd.env_remove("UOS_TOKEN"),
        };
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };

    let out = plan(Some(&admin), false).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("orgs/acme.yaml (acme):\n  + create org \"Acme\" founded by "),
        "{stdout}"
    );
    assert!(stdout.contains("orgs/beta.yaml:"), "{stdout}");
    let out = plan(Some(&admin), true).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["plans"][0]["changes"][0]["op"], "create_org");
    assert_eq!(report["invalid"][0]["file"], "orgs/beta.yaml");
    assert_eq!(report["blocked"], true);

    std::fs::remove_file(orgs.join("beta.yaml")).unwrap();
    let out = plan(Some(&admin), false).await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Planning changed nothing.
    let r = app
        .send(uos_testkit::Req::get("/v1/orgs/acme").token(&admin))
        .await;
    assert_eq!(r.status, 404);

    let out = plan(None, false).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("UOS_TOKEN"),
        "{}",
        text(&out.stderr)
    );
    let out = plan(Some("not-a-token"), false).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));
}
