//! Test kit: a fully wired application (real router, real store, real keys and policies) per
//! test, on SQLite in a temp dir or on a fresh PostgreSQL database, plus small request helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use figment::providers::Serialized;
use figment::Figment;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uos_http::AppState;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "violet kayak sprinkles 42";
/// Passwords used for test users; long and strong enough for the default policy.
pub const PASSWORD: &str = "orbit lantern quiche meadow";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// PostgreSQL server the tests create their databases on.
pub fn postgres_admin_url() -> String {
    uos_store_postgres::testing::admin_url()
}

/// One running application. Dropping it removes its temp dir (keys, SQLite file).
#[derive(Debug)]
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub backend: Backend,
    pub database_url: String,
    /// The data directory (keys, pepper, dev mailbox); a replica shares its original's.
    data: std::path::PathBuf,
    /// Holds the SQLite file and the data directory of an original until it is dropped.
    _dir: tempfile::TempDir,
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem `code`, for error responses.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Field names listed in a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn etag(&self) -> String {
        self.header("etag")
            .expect("response has an ETag")
            .to_string()
    }
}

/// A request under construction.
#[derive(Debug)]
pub struct Req {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    /// The client's address, as a served connection would give it (none by default: a
    /// request the router gets without a connection, which no per-address limit counts).
    peer: Option<std::net::SocketAddr>,
}

impl Req {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            token: None,
            body: None,
            content_type: None,
            headers: Vec::new(),
            peer: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }
    pub fn token(mut self, t: &str) -> Self {
        self.token = Some(t.to_string());
        self
    }
    pub fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).unwrap());
        self.content_type = Some("application/json".into());
        self
    }
    /// A raw body (for malformed JSON and oversized bodies).
    pub fn raw(mut self, bytes: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.body = Some(bytes.into());
        self.content_type = Some(content_type.into());
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    /// Send as if from the client address `ip` (e.g. `"203.0.113.7"`).
    pub fn from_ip(mut self, ip: &str) -> Self {
        self.peer = Some(std::net::SocketAddr::new(ip.parse().unwrap(), 40_000));
        self
    }
}

impl TestApp {
    /// Cheap argon2 parameters: the suite hashes hundreds of passwords.
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Spawn with extra configuration values (`("service.retention_days", json!(0))`, ...).
    pub async fn spawn_with(backend: Backend, extra: &[(&str, Value)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database_url = match backend {
            Backend::Sqlite => format!("sqlite://{}/uos.db", dir.path().display()),
            Backend::Postgres => uos_store_postgres::testing::fresh_database(&postgres_admin_url())
                .await
                .expect("PostgreSQL reachable for tests"),
        };
        let data = dir.path().join("data");
        Self::build(backend, database_url, data, dir, 8, extra).await
    }

    /// A second replica of this application: its own process state (caches, remembered
    /// audit head) over the same store and data directory (keys, pepper, mailbox). `extra`
    /// is its whole extra configuration (give it the same shared state, say, to link them).
    pub async fn replica(&self, extra: &[(&str, Value)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, data) = (self.database_url.clone(), self.data.clone());
        Self::build(self.backend, url, data, dir, 4, extra).await
    }

    async fn build(
        backend: Backend,
        database_url: String,
        data: std::path::PathBuf,
        dir: tempfile::TempDir,
        max_connections: u32,
        extra: &[(&str, Value)],
    ) -> Self {
        // On PostgreSQL the service runs as a role that owns nothing (so row-level security
        // binds it) and migrations run as the database's owner, as in production.
        let service_url = match backend {
            Backend::Sqlite => database_url.clone(),
            Backend::Postgres => uos_store_postgres::testing::service_role_url(&database_url)
                .await
                .expect("a service role on the test server"),
        };
        let mut f = Figment::new()
            .merge(Serialized::default("database_url", &service_url))
            .merge(Serialized::default(
                "database_max_connections",
                max_connections,
            ))
            .merge(Serialized::default("data_dir", &data))
            .merge(Serialized::default("bootstrap_admin_email", ADMIN_EMAIL))
            .merge(Serialized::default(
                "bootstrap_admin_password",
                ADMIN_PASSWORD,
            ))
            .merge(Serialized::default(
                "service.password_hashing",
                json!({"memory_kib": 1024, "iterations": 1, "parallelism": 1}),
            ));
        if backend == Backend::Postgres {
            f = f.merge(Serialized::default("migration_database_url", &database_url));
        }
        for (k, v) in extra {
            f = f.merge(Serialized::default(k, v));
        }
        let cfg = uos_app::Config::from_figment(f).unwrap();
        let state = AppState::new(
            uos_app::build(&cfg).await.unwrap(),
            &cfg.public_url(),
            &cfg.rate_limit,
            cfg.max_requests_in_progress,
            uos_http::client_ip::TrustedProxies::new(cfg.trusted_proxy_networks()),
        )
        .unwrap();
        Self {
            router: uos_http::router(state.clone()),
            state,
            backend,
            database_url,
            data,
            _dir: dir,
        }
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data.clone()
    }

    /// Mails "sent" so far (the embedded dev mailbox), oldest first.
    pub fn mails(&self) -> Vec<uos_mail::StoredMail> {
        match uos_mail::DevMailbox::open(&self.data_dir().join("mailbox")) {
            Ok(m) => m.list().unwrap(),
            Err(e) => panic!("mailbox: {e}"),
        }
    }

    /// Wait (up to 5 s) until `n` mails were sent: mail goes out in the background.
    pub async fn wait_for_mails(&self, n: usize) -> Vec<uos_mail::StoredMail> {
        for _ in 0..100 {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("expected {n} mails, have {:?}", self.mails());
    }

    pub async fn send(&self, req: Req) -> TestResponse {
        let mut b = Request::builder().method(req.method).uri(req.path);
        if let Some(t) = &req.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = &req.content_type {
            b = b.header("content-type", ct);
        }
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let mut request = b
            .body(req.body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        if let Some(peer) = req.peer {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        let res = self.router.clone().oneshot(request).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .send(Req::post("/v1/auth/login").json(json!({"email": email, "password": password})))
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login of {email} failed: {}",
            r.text
        );
        r.body["access_token"].as_str().unwrap().to_string()
    }

    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Create an org as `token`'s user (who becomes its owner).
    pub async fn create_org(&self, token: &str, slug: &str) -> Value {
        let r = self
            .send(
                Req::post("/v1/orgs")
                    .token(token)
                    .json(json!({"slug": slug, "display_name": slug})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "create org {slug}: {}",
            r.text
        );
        r.body
    }

    /// Invite `email` into `slug` with `roles` (as `token`), accept it, log in. Returns the
    /// new user's id and access token.
    pub async fn add_member(
        &self,
        token: &str,
        slug: &str,
        email: &str,
        roles: &[&str],
    ) -> (String, String) {
        let r = self
            .send(
                Req::post(format!("/v1/orgs/{slug}/invites"))
                    .token(token)
                    .json(json!({"email": email, "roles": roles})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "invite {email}: {}", r.text);
        let invite_token = r.body["token"].as_str().unwrap().to_string();
        let r = self
            .send(
                Req::post("/v1/invites/accept")
                    .json(json!({"token": invite_token, "password": PASSWORD})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "accept {email}: {}", r.text);
        let id = r.body["user"]["id"].as_str().unwrap().to_string();
        (id, self.login(email, PASSWORD).await)
    }
}

/// The TOTP code for a base32 secret (as enrolment shows it), `steps` periods from now.
pub fn totp_code(secret_base32: &str, steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_base32.to_string())
        .to_bytes()
        .unwrap();
    let totp = totp_rs::TOTP::new(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        None,
        "test".into(),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = i64::try_from(now).unwrap() + steps * 30;
    totp.generate(u64::try_from(t).unwrap())
}

/// Define a test that runs once on SQLite and once on PostgreSQL (the latter ignored unless
/// asked for, since it needs a server): `backend_test!(name, |app| async move { ... });`
/// With `config = [("key", json!(value)), ...]` the app starts with those settings.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, config = $cfg:expr, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = $crate::TestApp::spawn_with($crate::Backend::Sqlite, &$cfg).await;
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL"]
            async fn postgres() {
                let $app = $crate::TestApp::spawn_with($crate::Backend::Postgres, &$cfg).await;
                $body.await
            }
        }
    };
    ($name:ident, |$app:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $app = $crate::TestApp::spawn($crate::Backend::Sqlite).await;
                $body.await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs PostgreSQL"]
            async fn postgres() {
                let $app = $crate::TestApp::spawn($crate::Backend::Postgres).await;
                $body.await
            }
        }
    };
}
