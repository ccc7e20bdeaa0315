//! Key material from a real OpenBao Transit: two replicas sign tokens, audit events and
//! checkpoints and seal TOTP secrets with keys derived from Transit, agree on them without
//! sharing a file, survive a rotation and a restart, and never write a key to disk; a Vault
//! that cannot be used stops start-up with a message naming the setting.

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use uos_keys::testing::{Bao, ROOT_TOKEN};
use uos_testkit::totp_code;

use crate::replicas::{
    admin_token, audit_export, audit_keys, call, free_port, jwks_ids, kid_of, me_status,
    rotate_token_key, Cluster, Replica, ADMIN_EMAIL, ADMIN_PASSWORD,
};

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Turns on TOTP for the admin on `r`; the base32 secret and the recovery codes.
async fn enable_totp(client: &reqwest::Client, r: &Replica, admin: &str) -> (String, Vec<String>) {
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        "/v1/me/mfa/totp",
        admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    let code = json!({"code": totp_code(&secret, 0)});
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        "/v1/me/mfa/totp/confirm",
        admin,
        Some(code),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["recovery_codes"].as_array().unwrap();
    (
        secret,
        codes
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect(),
    )
}

/// Password then a second factor (a TOTP or recovery code, each good once) on `r`: the access
/// token.
async fn login_with(client: &reqwest::Client, r: &Replica, code: &str) -> String {
    let res = client
        .post(format!("{}/v1/auth/login", r.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    let mfa_token = body["mfa_token"]
        .as_str()
        .expect("mfa_required")
        .to_string();
    let res = client
        .post(format!("{}/v1/auth/mfa", r.base))
        .json(&json!({"mfa_token": mfa_token, "code": code}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL, Redis and OpenBao"]
async fn replicas_on_transit_share_keys_rotate_restart_and_write_no_key_file() {
    let bao = Bao::start();
    let cluster = Cluster::new(&[
        ("UOS_VAULT__ADDRESS", bao.address.as_str()),
        ("UOS_VAULT__TOKEN", ROOT_TOKEN),
    ])
    .await;
    let a = cluster.replica().await;
    let b = cluster.replica().await;
    let client = reqwest::Client::new();

    // One key set, derived by each replica on its own.
    let admin = admin_token(&client, &a).await;
    let first = kid_of(&admin);
    assert_eq!(jwks_ids(&client, &b).await, std::slice::from_ref(&first));
    assert_eq!(me_status(&client, &b, &admin).await, 200);

    // A TOTP secret sealed on one replica opens on the other; recovery codes hashed with the
    // derived pepper on one verify on the other (and, below, after a restart).
    let (secret, recovery) = enable_totp(&client, &a, &admin).await;
    let from_b = login_with(&client, &b, &totp_code(&secret, 1)).await;
    assert_eq!(me_status(&client, &a, &from_b).await, 200);

    // A rotation on one replica reaches the other; old tokens keep working on both.
    let new = rotate_token_key(&client, &a, &from_b).await;
    assert_ne!(new, first);
    let rotated_at = Instant::now();
    while jwks_ids(&client, &b).await != [new.clone(), first.clone()] {
        assert!(
            rotated_at.elapsed() < Duration::from_secs(2),
            "the other replica still publishes {:?}",
            jwks_ids(&client, &b).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = login_with(&client, &b, &recovery[0]).await;
    assert_eq!(kid_of(&fresh), new, "b signs with the new key");
    for r in [&a, &b] {
        assert_eq!(me_status(&client, r, &admin).await, 200);
        assert_eq!(me_status(&client, r, &fresh).await, 200);
    }

    // Audit events from both replicas, and the checkpoints, verify with the published keys.
    let body = json!({"slug": "vaulted", "display_name": "Vaulted"});
    let (status, body) = call(
        &client,
        &b,
        reqwest::Method::POST,
        "/v1/orgs",
        &fresh,
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let events = audit_export(&client, &a, &fresh).await;
    let keys = audit_keys(&client, &a, &fresh).await;
    uos_audit::verify_chains(&events, &keys).expect("the chains verify");

    // A restarted replica derives the same keys: nothing was lost with the process.
    drop(a);
    let a = cluster.replica().await;
    assert_eq!(jwks_ids(&client, &a).await, [new.clone(), first.clone()]);
    assert_eq!(me_status(&client, &a, &admin).await, 200);
    let after_restart = login_with(&client, &a, &recovery[1]).await;
    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::GET,
        "/v1/audit/checkpoints",
        &after_restart,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let audit_ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
    let checkpoints = body["items"].as_array().unwrap();
    assert!(!checkpoints.is_empty(), "{body}");
    for c in checkpoints {
        assert!(audit_ids.contains(&c["key_id"].as_str().unwrap()), "{c}");
    }

    // No key material on disk: not a key directory, not a key file.
    let written = files_under(cluster.data_dir());
    assert!(
        !cluster.data_dir().join("keys").exists(),
        "data dir holds {written:?}"
    );
    assert!(
        written
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "key")),
        "{written:?}"
    );
}

#[test]
#[ignore = "needs OpenBao"]
fn a_vault_that_cannot_be_used_stops_start_up_naming_the_setting() {
    let mut bao = Bao::start();
    bao.bao(&["secrets", "disable", "transit"]);
    for (address, token, setting) in [
        (
            "http://127.0.0.1:9".to_string(),
            ROOT_TOKEN,
            "vault.address",
        ),
        (bao.address.clone(), "wrong-token", "vault.token"),
        (bao.address.clone(), ROOT_TOKEN, "vault.transit_mount"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_admin-api"))
            .env_clear()
            .env("UOS_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("UOS_DATA_DIR", dir.path())
            .env(
                "UOS_DATABASE_URL",
                format!("sqlite://{}/uos.db", dir.path().display()),
            )
            .env("UOS_VAULT__ADDRESS", &address)
            .env("UOS_VAULT__TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("admin-api kept running with {setting} unusable");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains(setting), "{setting}: {said}");
        assert!(
            !said.contains("wrong-token"),
            "the token is never printed: {said}"
        );
        assert!(
            !dir.path().join("keys").exists(),
            "no key written on the way out"
        );
    }
}
