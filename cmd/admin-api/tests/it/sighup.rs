//! `SIGHUP` reloads the policy bundle of a running `admin-api` (on SQLite: no other service
//! needed), and a refused bundle leaves the process serving with the one it had.

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::replicas::{free_port, Replica, ADMIN_EMAIL, ADMIN_PASSWORD};

fn policies() -> tempfile::TempDir {
    let shipped = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn hangup(replica: &Replica) {
    let status = Command::new("kill")
        .args(["-HUP", &replica.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -HUP failed");
}

async fn revision(client: &reqwest::Client, base: &str, token: &str) -> Value {
    let r = client
        .get(format!("{base}/v1/policy/bundle"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["revision"].clone()
}

/// Polls the bundle's revision until `done` says so, or fails after 20 s.
async fn wait_for(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = revision(client, base, token).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sighup_reloads_the_policy_bundle() {
    let data = tempfile::tempdir().unwrap();
    let dir = policies();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_admin-api"))
        .env_clear()
        .env("UOS_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "UOS_DATABASE_URL",
            format!("sqlite://{}/uos.db", data.path().display()),
        )
        .env("UOS_DATA_DIR", data.path().join("data"))
        .env("UOS_POLICY_DIR", dir.path())
        // Only the signal may reload here.
        .env("UOS_POLICY_WATCH_SECS", "0")
        .env("UOS_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("UOS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("UOS_SERVICE__PASSWORD_HASHING__MEMORY_KIB", "1024")
        .env("UOS_SERVICE__PASSWORD_HASHING__ITERATIONS", "1")
        .env("UOS_SERVICE__PASSWORD_HASHING__PARALLELISM", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("admin-api starts");
    let replica = Replica {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{}/readyz", replica.base))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(Instant::now() < deadline, "admin-api did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login: Value = client
        .post(format!("{}/v1/auth/login", replica.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let first = revision(&client, &replica.base, &token).await;

    std::fs::write(
        dir.path().join("extra.rego"),
        "package uos.extra\n\nanswer := 42\n",
    )
    .unwrap();
    hangup(&replica);
    let second = wait_for(
        &client,
        &replica.base,
        &token,
        "SIGHUP did not reload",
        |r| *r != first,
    )
    .await;

    // Broken: the signal is answered with a refusal in the log, and the process keeps serving
    // with the bundle it had.
    std::fs::write(
        dir.path().join("extra.rego"),
        "package uos.extra\n\nanswer := {\n",
    )
    .unwrap();
    hangup(&replica);
    let refused = "uos_policy_reloads_total{result=\"refused\"} 1";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = client
            .get(format!("{}/metrics", replica.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(refused) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal was not counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(revision(&client, &replica.base, &token).await, second);
}
