//! Cross-replica behaviour through Redis: revocations (of sessions, API keys, service accounts
//! and client-credentials tokens) and signing-key rotations reach the other replica within a
//! second, and parallel password guesses spread over both replicas lock an account at exactly
//! the threshold; and entity reads served from the replicas' copies see a change on the other
//! replica within a second, and a stale `If-Match` on either is refused.

use serde_json::{json, Value};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";
pub(crate) const ADMIN_PASSWORD: &str = "violet kayak sprinkles 42";

fn redis_url() -> String {
    std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One replica; killed when dropped.
pub(crate) struct Replica {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything two replicas share: database, Redis prefix, key directory.
pub(crate) struct Cluster {
    /// The database's owner, who runs the migrations.
    database_url: String,
    /// The role the replicas serve as: it owns nothing, so row-level security binds it.
    service_url: String,
    data_dir: tempfile::TempDir,
    prefix: String,
    extra: Vec<(String, String)>,
}

impl Cluster {
    pub(crate) async fn new(extra: &[(&str, &str)]) -> Self {
        let admin = uos_store_postgres::testing::admin_url();
        let database_url = uos_store_postgres::testing::fresh_database(&admin)
            .await
            .expect("PostgreSQL reachable");
        let service_url = uos_store_postgres::testing::service_role_url(&database_url)
            .await
            .expect("a service role on the test server");
        Self {
            database_url,
            service_url,
            data_dir: tempfile::tempdir().unwrap(),
            prefix: format!("uos-test-{}:", uuid::Uuid::now_v7()),
            extra: extra
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    pub(crate) fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    pub(crate) async fn replica(&self) -> Replica {
        self.replica_with(&[]).await
    }

    /// A replica with settings of its own on top of the cluster's.
    async fn replica_with(&self, own: &[(&str, &str)]) -> Replica {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_admin-api"));
        cmd.env_clear()
            .env("UOS_LISTEN", format!("127.0.0.1:{port}"))
            .env("UOS_DATABASE_URL", &self.service_url)
            .env("UOS_MIGRATION_DATABASE_URL", &self.database_url)
            .env("UOS_DATA_DIR", self.data_dir.path())
            .env("UOS_REDIS_URL", redis_url())
            .env("UOS_REDIS_PREFIX", &self.prefix)
            .env("UOS_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("UOS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("UOS_SERVICE__PASSWORD_HASHING__MEMORY_KIB", "1024")
            .env("UOS_SERVICE__PASSWORD_HASHING__ITERATIONS", "1")
            .env("UOS_SERVICE__PASSWORD_HASHING__PARALLELISM", "1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        for (k, v) in own {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("admin-api starts");
        let replica = Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .get(format!("{}/readyz", replica.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return replica;
            }
            assert!(Instant::now() < deadline, "replica did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A cluster with default settings, two replicas of it, and a client.
async fn two_replicas() -> (Cluster, Replica, Replica, reqwest::Client) {
    let cluster = Cluster::new(&[]).await;
    let a = cluster.replica().await;
    let b = cluster.replica().await;
    (cluster, a, b, reqwest::Client::new())
}

async fn login(client: &reqwest::Client, r: &Replica, password: &str) -> (u16, Value) {
    let res = client
        .post(format!("{}/v1/auth/login", r.base))
        .json(&json!({"email": ADMIN_EMAIL, "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn me_status(client: &reqwest::Client, r: &Replica, token: &str) -> u16 {
    client
        .get(format!("{}/v1/me", r.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_logout_on_one_replica_cuts_the_token_on_the_other_within_a_second() {
    // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
    let (_cluster, a, b, client) = two_replicas().await;
    let (status, body) = login(&client, &a, ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    // B has verified and cached the token and its session.
    for _ in 0..3 {
        assert_eq!(me_status(&client, &b, &token).await, 200);
    }
    let res = client
        .post(format!("{}/v1/auth/logout", a.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let revoked_at = Instant::now();
    loop {
        if me_status(&client, &b, &token).await == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "replica B still accepts a token revoked on A after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn parallel_guesses_over_two_replicas_lock_at_exactly_the_threshold() {
    // 102 logins from one address: far past the address's rate limit on login, which is not
    // what this test is about (the ratelimit tests are).
    let cluster = Cluster::new(&[
        ("UOS_SERVICE__LOCKOUT__THRESHOLD", "5"),
        ("UOS_SERVICE__LOCKOUT__IP_THRESHOLD", "1000"),
        ("UOS_RATE_LIMIT__ROUTES__LOGIN__PER_ADDRESS", "1000"),
    ])
    .await;
    let replicas = std::sync::Arc::new([cluster.replica().await, cluster.replica().await]);
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let replicas = replicas.clone();
            let client = client.clone();
            tokio::spawn(async move {
                login(&client, &replicas[i % 2], "wrong password here")
                    .await
                    .0
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(counts, [(401, 5), (429, 95)].into_iter().collect());
    // Still locked on both, for the right password too.
    for r in replicas.iter() {
        assert_eq!(login(&client, r, ADMIN_PASSWORD).await.0, 429);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn one_address_guessing_many_accounts_is_throttled_on_every_replica() {
    let cluster = Cluster::new(&[("UOS_SERVICE__LOCKOUT__IP_THRESHOLD", "10")]).await;
    let replicas = [cluster.replica().await, cluster.replica().await];
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..14 {
        let res = client
            .post(format!("{}/v1/auth/login", replicas[i % 2].base))
            .json(&json!({"email": format!("user{i}@example.com"), "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
        statuses.push(res.status().as_u16());
    }
    // Ten distinct accounts from one address are checked; then the address is throttled.
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429; 4]);
}

// ---------------------------------------------------------------------------------------------
// Machine identity: API keys and client-credentials tokens are cached per replica (a hit never
// reads the store), so what revokes them on one replica must evict them on the other through
// the Redis fan-out, within a second.

/// The admin's access token, logged in on `r`.
pub(crate) async fn admin_token(client: &reqwest::Client, r: &Replica) -> String {
    let (status, body) = login(client, r, ADMIN_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// `method path` on `r` with a bearer token and an optional JSON body; status and JSON body.
pub(crate) async fn call(
    client: &reqwest::Client,
    r: &Replica,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client
        .request(method, format!("{}{path}", r.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// An org (slug `m-<random>`) with one service account holding `member`, created on `r`.
/// Returns (slug, service account id).
async fn org_with_account(client: &reqwest::Client, r: &Replica, admin: &str) -> (String, String) {
    let slug = format!("m-{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        "/v1/orgs",
        admin,
        Some(json!({"slug": slug, "display_name": "Machines"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        &format!("/v1/orgs/{slug}/service-accounts"),
        admin,
        Some(json!({"name": "deployer", "roles": ["member"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (slug, body["id"].as_str().unwrap().to_string())
}

/// A new API key with scope `users:read` for the account, created on `r`: (key id, secret).
async fn api_key(
    client: &reqwest::Client,
    r: &Replica,
    admin: &str,
    slug: &str,
    account: &str,
) -> (String, String) {
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        &format!("/v1/orgs/{slug}/service-accounts/{account}/api-keys"),
        admin,
        Some(json!({"name": "ci", "scopes": ["users:read"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("uos_"), "{secret}");
    (body["id"].as_str().unwrap().to_string(), secret)
}

async fn whoami_status(client: &reqwest::Client, r: &Replica, credential: &str) -> u16 {
    client
        .get(format!("{}/v1/auth/whoami", r.base))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Make `r` verify and cache `credential` (three uses, all 200) and check it is the account's.
async fn warm(client: &reqwest::Client, r: &Replica, credential: &str, account: &str) {
    for _ in 0..3 {
        let res = client
            .get(format!("{}/v1/auth/whoami", r.base))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["kind"], "service_account", "{body}");
        assert_eq!(body["id"], account, "{body}");
    }
}

/// Poll `r` every 50 ms from `since` until `credential` is refused with 401; fails if it is
/// still accepted (or answered anything but 200/401) after one second.
async fn refused_within_a_second(
    client: &reqwest::Client,
    r: &Replica,
    credential: &str,
    since: Instant,
    what: &str,
) {
    loop {
        let status = whoami_status(client, r, credential).await;
        if status == 401 {
            let elapsed = since.elapsed();
            assert!(
                elapsed < Duration::from_secs(1),
                "{what}: refused on replica B only after {elapsed:?}"
            );
            eprintln!("{what}: refused on replica B after {elapsed:?}");
            return;
        }
        assert_eq!(status, 200, "{what}: unexpected status on replica B");
        assert!(
            since.elapsed() < Duration::from_secs(1),
            "{what}: replica B still accepts the credential after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas, the admin's token from A, an org with one account, and a key of it that
/// both replicas have looked up and cached.
struct WarmKey {
    _cluster: Cluster,
    a: Replica,
    b: Replica,
    client: reqwest::Client,
    admin: String,
    slug: String,
    account: String,
    key_id: String,
    key: String,
}

async fn warm_key_on_two_replicas() -> WarmKey {
    let (cluster, a, b, client) = two_replicas().await;
    let admin = admin_token(&client, &a).await;
    let (slug, account) = org_with_account(&client, &a, &admin).await;
    let (key_id, key) = api_key(&client, &a, &admin, &slug, &account).await;
    warm(&client, &b, &key, &account).await;
    warm(&client, &a, &key, &account).await;
    WarmKey {
        _cluster: cluster,
        a,
        b,
        client,
        admin,
        slug,
        account,
        key_id,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_revoked_api_key_fails_on_the_other_replica_within_a_second() {
    let WarmKey {
        // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
        _cluster,
        a,
        b,
        client,
        admin,
        slug,
        key_id,
        key,
        ..
    } = warm_key_on_two_replicas().await;

    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::DELETE,
        &format!("/v1/orgs/{slug}/api-keys/{key_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let revoked_at = Instant::now();
    assert_eq!(whoami_status(&client, &a, &key).await, 401, "at once on A");
    refused_within_a_second(&client, &b, &key, revoked_at, "revoked key").await;
    // And it stays refused (no stale entry comes back).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(whoami_status(&client, &b, &key).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_disabled_service_account_fails_on_the_other_replica_within_a_second() {
    let WarmKey {
        // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
        _cluster,
        a,
        b,
        client,
        admin,
        slug,
        account,
        key,
        ..
    } = warm_key_on_two_replicas().await;

    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::PATCH,
        &format!("/v1/orgs/{slug}/service-accounts/{account}"),
        &admin,
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "disabled", "{body}");
    let disabled_at = Instant::now();
    assert_eq!(whoami_status(&client, &a, &key).await, 401, "at once on A");
    refused_within_a_second(&client, &b, &key, disabled_at, "key of a disabled account").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_key_rotated_without_overlap_fails_on_the_other_replica_within_a_second() {
    let WarmKey {
        // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
        _cluster,
        a,
        b,
        client,
        admin,
        slug,
        account,
        key_id,
        key: old,
    } = warm_key_on_two_replicas().await;

    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::POST,
        &format!("/v1/orgs/{slug}/api-keys/{key_id}/rotate"),
        &admin,
        Some(json!({"overlap_seconds": 0})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rotated_at = Instant::now();
    let new = body["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(body["replaces"], key_id.as_str(), "{body}");
    assert_eq!(whoami_status(&client, &a, &old).await, 401, "at once on A");
    refused_within_a_second(&client, &b, &old, rotated_at, "key rotated out").await;
    warm(&client, &b, &new, &account).await;
    warm(&client, &a, &new, &account).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_revoked_client_credentials_token_fails_on_the_other_replica_within_a_second() {
    // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
    let (_cluster, a, b, client) = two_replicas().await;
    let admin = admin_token(&client, &a).await;
    let (slug, account) = org_with_account(&client, &a, &admin).await;
    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::POST,
        &format!("/v1/orgs/{slug}/service-accounts/{account}/client-secret"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let client_id = body["client_id"].as_str().unwrap().to_string();
    let secret = body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(client_id, account);

    let res = client
        .post(format!("{}/oauth2/token", a.base))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let grant: Value = res.json().await.unwrap();
    assert_eq!(grant["token_type"], "Bearer", "{grant}");
    let token = grant["access_token"].as_str().unwrap().to_string();
    // Issued by A, verified and cached by B.
    warm(&client, &b, &token, &account).await;
    warm(&client, &a, &token, &account).await;

    let res = client
        .post(format!("{}/oauth2/revoke", a.base))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked_at = Instant::now();
    assert_eq!(
        whoami_status(&client, &a, &token).await,
        401,
        "at once on A"
    );
    refused_within_a_second(&client, &b, &token, revoked_at, "revoked client token").await;
}

/// Every audit event from `r`'s export, parsed.
pub(crate) async fn audit_export(
    client: &reqwest::Client,
    r: &Replica,
    admin: &str,
) -> Vec<uos_audit::AuditEvent> {
    let mut events = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(t) => format!("/v1/audit/events?limit=100&page_token={t}"),
            None => "/v1/audit/events?limit=100".to_string(),
        };
        let (status, body) = call(client, r, reqwest::Method::GET, &path, admin, None).await;
        assert_eq!(status, 200, "{body}");
        for item in body["items"].as_array().unwrap() {
            events.push(serde_json::from_value(item.clone()).expect("an audit event"));
        }
        match body["next_page_token"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => return events,
        }
    }
}

/// The audit keys `r` publishes.
pub(crate) async fn audit_keys(
    client: &reqwest::Client,
    r: &Replica,
    token: &str,
) -> Vec<uos_keys::PublicKey> {
    let text = client
        .get(format!("{}/v1/audit/keys", r.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    uos_audit::parse_keys(&text).expect("GET /v1/audit/keys is a key list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn two_replicas_writing_at_once_keep_one_whole_audit_chain() {
    // Each replica chains its next event from the head of the org's chain it last committed,
    // without reading it: here every write to one org races the other replica's and its own,
    // so the remembered head is often stale and the append must fall back to the locked head,
    // never fork or fail.
    // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
    let (_cluster, a, b, client) = two_replicas().await;
    let tokens = [
        admin_token(&client, &a).await,
        admin_token(&client, &b).await,
    ];
    let body = json!({"slug": "shared", "display_name": "Shared"});
    let (status, body) = call(
        &client,
        &a,
        reqwest::Method::POST,
        "/v1/orgs",
        &tokens[0],
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let writes = (0..40).map(|i| {
        let (client, replica, token) = (&client, [&a, &b][i % 2], &tokens[i % 2]);
        async move {
            let body = json!({"name": format!("role-{i}"), "permissions": ["invites:read"]});
            call(
                client,
                replica,
                reqwest::Method::POST,
                "/v1/orgs/shared/roles",
                token,
                Some(body),
            )
            .await
        }
    });
    for (status, body) in futures::future::join_all(writes).await {
        assert_eq!(status, 201, "{body}");
    }
    let events = audit_export(&client, &a, &tokens[0]).await;
    let keys = audit_keys(&client, &a, &tokens[0]).await;
    let reports = uos_audit::verify_chains(&events, &keys).expect("unbroken chains");
    let shared = events
        .iter()
        .find(|e| e.action == "org.created")
        .map(|e| e.chain.clone())
        .unwrap();
    let report = reports.iter().find(|r| r.chain == shared).unwrap();
    let created = events
        .iter()
        .filter(|e| e.action == "role.created" && e.chain == shared)
        .count();
    assert_eq!(
        created, 40,
        "one role.created event per write, in the org's chain"
    );
    // org.created, the creator's member.added and the 40 roles.
    assert_eq!(report.events, 42);
}

// Signing keys: replicas share a key directory. The one that rotates tells the others to
// reload; one that missed the message reloads when a token names a key it does not know.

/// The key ids `r` publishes, current first.
pub(crate) async fn jwks_ids(client: &reqwest::Client, r: &Replica) -> Vec<String> {
    let body: Value = client
        .get(format!("{}/.well-known/jwks.json", r.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// The `kid` in a JWT's header.
pub(crate) fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_string()
}

/// Rotates the access-token key on `r`; the new key id.
pub(crate) async fn rotate_token_key(client: &reqwest::Client, r: &Replica, admin: &str) -> String {
    let (status, body) = call(
        client,
        r,
        reqwest::Method::POST,
        "/v1/keys/rotate",
        admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["key_id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_key_rotated_on_one_replica_is_used_by_the_other_within_a_second() {
    // Bound first, so dropped last: the cluster (its key directory) outlives the replicas.
    let (_cluster, a, b, client) = two_replicas().await;
    let admin = admin_token(&client, &a).await;
    let old = kid_of(&admin);
    let new = rotate_token_key(&client, &a, &admin).await;
    let rotated_at = Instant::now();
    loop {
        if jwks_ids(&client, &b).await == [new.clone(), old.clone()] {
            break;
        }
        assert!(
            rotated_at.elapsed() < Duration::from_secs(1),
            "the other replica still publishes {:?}",
            jwks_ids(&client, &b).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let from_b = admin_token(&client, &b).await;
    assert_eq!(
        kid_of(&from_b),
        new,
        "the other replica signs with the new key"
    );
    let from_a = admin_token(&client, &a).await;
    assert_eq!(me_status(&client, &b, &from_a).await, 200);
    assert_eq!(me_status(&client, &a, &from_b).await, 200);
    assert_eq!(
        me_status(&client, &b, &admin).await,
        200,
        "tokens of the previous key keep working"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn a_replica_that_missed_a_rotation_reloads_on_a_token_of_the_new_key() {
    let cluster = Cluster::new(&[]).await;
    let a = cluster.replica().await;
    // Its own Redis prefix: no fan-out reaches it, as if the message had been lost.
    let deaf_prefix = format!("uos-test-{}:", uuid::Uuid::now_v7());
    let b = cluster
        .replica_with(&[("UOS_REDIS_PREFIX", deaf_prefix.as_str())])
        .await;
    let client = reqwest::Client::new();
    let admin = admin_token(&client, &a).await;
    let old = kid_of(&admin);
    let new = rotate_token_key(&client, &a, &admin).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        jwks_ids(&client, &b).await,
        std::slice::from_ref(&old),
        "b heard nothing"
    );

    let fresh = admin_token(&client, &a).await;
    assert_eq!(kid_of(&fresh), new);
    assert_eq!(me_status(&client, &b, &fresh).await, 200);
    assert_eq!(jwks_ids(&client, &b).await, [new, old]);
}

/// `method path` on `r` with a bearer token, and `If-Match` and a JSON body when given:
/// status, `ETag` and body.
async fn send_tagged(
    client: &reqwest::Client,
    r: &Replica,
    (method, path): (reqwest::Method, &str),
    token: &str,
    change: Option<(&str, &Value)>,
) -> (u16, String, Value) {
    let mut req = client
        .request(method, format!("{}{path}", r.base))
        .bearer_auth(token);
    if let Some((etag, body)) = change {
        req = req.header("if-match", etag).json(body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let etag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, etag, res.json().await.unwrap_or(Value::Null))
}

async fn get_tagged(
    client: &reqwest::Client,
    r: &Replica,
    path: &str,
    token: &str,
) -> (u16, String, Value) {
    send_tagged(client, r, (reqwest::Method::GET, path), token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Redis"]
async fn entity_reads_from_replica_copies_never_serve_a_change_late_or_let_a_stale_write_through() {
    let (_cluster, a, b, client) = two_replicas().await;
    let admin_a = admin_token(&client, &a).await;
    let admin_b = admin_token(&client, &b).await;
    let (slug, account) = org_with_account(&client, &a, &admin_a).await;
    let (_, _, me) = get_tagged(&client, &b, "/v1/me", &admin_b).await;
    let me = me["id"].as_str().unwrap().to_owned();
    // Each entity kind B keeps copies of, and a change of it made on A.
    let cases = [
        (
            format!("/v1/users/{me}"),
            reqwest::Method::PATCH,
            json!({"display_name": "Changed on A"}),
        ),
        (
            format!("/v1/orgs/{slug}"),
            reqwest::Method::PATCH,
            json!({"display_name": "Changed on A"}),
        ),
        (
            format!("/v1/orgs/{slug}/service-accounts/{account}"),
            reqwest::Method::PATCH,
            json!({"description": "changed on A"}),
        ),
        (
            format!("/v1/orgs/{slug}/users/{me}"),
            reqwest::Method::PUT,
            json!({"roles": ["owner", "billing"]}),
        ),
    ];
    for (path, method, body) in cases {
        let change_path = if method == reqwest::Method::PUT {
            format!("{path}/roles")
        } else {
            path.clone()
        };
        // B reads twice: the second answer comes from its copy.
        let (status, old, _) = get_tagged(&client, &b, &path, &admin_b).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(get_tagged(&client, &b, &path, &admin_b).await.1, old);
        let (status, new, _) = send_tagged(
            &client,
            &a,
            (method.clone(), &change_path),
            &admin_a,
            Some((&old, &body)),
        )
        .await;
        assert_eq!(status, 200, "{change_path} on A");
        assert_ne!(new, old);
        let changed_at = Instant::now();
        // A serves its own change at once; B within a second, through the fan-out.
        assert_eq!(get_tagged(&client, &a, &path, &admin_a).await.1, new);
        loop {
            let (status, seen, _) = get_tagged(&client, &b, &path, &admin_b).await;
            assert_eq!(status, 200);
            if seen == new {
                break;
            }
            assert!(
                changed_at.elapsed() < Duration::from_secs(1),
                "{path}: B still serves {seen} a second after A's change to {new}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A write on B with the ETag B served before the change is refused, whatever B holds.
        let (status, _, _) = send_tagged(
            &client,
            &b,
            (method, &change_path),
            &admin_b,
            Some((&old, &body)),
        )
        .await;
        assert_eq!(status, 412, "{change_path}: a stale If-Match on B");
    }
}
