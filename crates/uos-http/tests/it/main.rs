#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! HTTP integration suite: every endpoint of the contract through the real router, on SQLite
//! and (with `--ignored`) on PostgreSQL, one fresh application per test.

mod approvals;
mod audit;
mod auth_me;
mod budgets;
mod concurrency;
mod conventions;
mod declarative;
mod exports;
mod federation;
mod invites;
mod isolation;
mod lockout;
mod machine;
mod members;
mod mfa;
mod monitoring;
mod oauth2;
mod ops;
mod orgs;
mod policy_bundle;
mod quarantine;
mod ratelimit;
mod read_only;
mod reconcile;
mod recovery;
mod retention;
mod roles;
mod sessions;
mod tokens;
mod users;
mod webhooks;

pub use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
pub use uos_testkit::{
    backend_test, Req, TestApp, TestResponse, ADMIN_EMAIL, ADMIN_PASSWORD, PASSWORD,
};

/// A problem+json error with the documented status and code, whose `request_id` is the one in
/// the `X-Request-Id` response header.
#[track_caller]
pub fn assert_problem(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got: {}",
        r.text
    );
    assert_eq!(r.code(), code, "expected code {code}: {}", r.text);
    assert_eq!(r.body["status"], status, "problem status field: {}", r.text);
    let ct = r.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "expected application/problem+json, got {ct:?}: {}",
        r.text
    );
    let header_id = r
        .header("x-request-id")
        .expect("every response carries X-Request-Id");
    assert_eq!(
        r.body["request_id"].as_str(),
        Some(header_id),
        "problem request_id must equal the X-Request-Id header: {}",
        r.text
    );
    assert!(
        r.body["type"].as_str().is_some_and(|t| t.ends_with(code)),
        "problem type ends with the code: {}",
        r.text
    );
}

/// A 400 `validation_failed` whose `errors` name exactly `fields` (order aside).
#[track_caller]
pub fn assert_invalid(r: &TestResponse, fields: &[&str]) {
    assert_problem(r, 400, "validation_failed");
    let mut got = r.error_fields();
    got.sort();
    got.dedup();
    let mut want: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(
        got, want,
        "expected errors for exactly {want:?}: {}",
        r.text
    );
}

/// A 403 naming the policy rule that denied.
#[track_caller]
pub fn assert_forbidden(r: &TestResponse, rule: &str) {
    assert_problem(r, 403, "forbidden");
    assert_eq!(r.body["rule"], rule, "expected rule {rule}: {}", r.text);
}

/// A 409 `conflict` with the given `reason`.
#[track_caller]
pub fn assert_conflict(r: &TestResponse, reason: &str) {
    assert_problem(r, 409, "conflict");
    assert_eq!(
        r.body["reason"], reason,
        "expected reason {reason}: {}",
        r.text
    );
}

#[track_caller]
pub fn assert_status(r: &TestResponse, status: u16) {
    assert_eq!(r.status, status, "expected {status}: {}", r.text);
}

/// `If-Match` value for a version.
pub fn etag(v: i64) -> String {
    format!("\"{v}\"")
}

/// The caller's own user id.
pub async fn my_id(app: &TestApp, token: &str) -> String {
    let r = app.send(Req::get("/v1/me").token(token)).await;
    assert_status(&r, 200);
    r.body["id"].as_str().unwrap().to_string()
}

/// GET `path` as `token`, expecting 200; the body.
pub async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let r = app.send(Req::get(path).token(token)).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text);
    r.body
}

/// Every item of a paginated list, following `next_page_token` with pages of `limit`.
pub async fn all_pages(app: &TestApp, token: &str, path: &str, limit: u32) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(t) => format!("{path}{sep}limit={limit}&page_token={t}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let r = app.send(Req::get(url.clone()).token(token)).await;
        assert_eq!(r.status, 200, "GET {url}: {}", r.text);
        let page = r.body["items"].as_array().unwrap();
        assert!(
            page.len() <= limit as usize,
            "page larger than limit {limit}: {}",
            r.text
        );
        items.extend(page.iter().cloned());
        match r.body["next_page_token"].as_str() {
            Some(t) => next = Some(t.to_string()),
            None => return items,
        }
    }
}

/// Every audit event, as the platform admin sees it.
pub async fn all_audit(app: &TestApp) -> Vec<Value> {
    let admin = app.admin_token().await;
    all_pages(app, &admin, "/v1/audit/events", 100).await
}

/// An org whose only member is a fresh owner (not the platform admin, who creates the org,
/// invites the owner and then leaves): returns the owner's id and token.
pub async fn owned_org(app: &TestApp, slug: &str, owner_email: &str) -> (String, String) {
    let admin = app.admin_token().await;
    app.create_org(&admin, slug).await;
    let (id, token) = app.add_member(&admin, slug, owner_email, &["owner"]).await;
    let admin_id = my_id(app, &admin).await;
    let r = app
        .send(Req::delete(format!("/v1/orgs/{slug}/users/{admin_id}")).token(&admin))
        .await;
    assert_eq!(r.status, 204, "admin leaves {slug}: {}", r.text);
    (id, token)
}

/// Audit events that record a change, i.e. all but logins: reading the trail needs a login,
/// and a login is itself an audit event (`session.created`), so this count leaves them out to
/// stay stable across reads.
pub async fn audit_changes(app: &TestApp) -> usize {
    all_audit(app)
        .await
        .iter()
        .filter(|e| e["action"] != "session.created")
        .count()
}

/// What the store keeps instead of an invite token.
pub fn token_hash(token: &str) -> String {
    uos_authn::hash_token(token)
}

/// What a webhook receiver got: the headers that matter and the body.
#[derive(Clone, Debug)]
pub struct Received {
    pub event: String,
    pub delivery: String,
    pub signature: String,
    pub body: String,
}

/// The secret webhook tests sign with.
pub const WEBHOOK_SECRET: &str = "a-webhook-secret-of-at-least-32-chars";

/// Settings that send every notification to `url`, signed with [`WEBHOOK_SECRET`], a failed
/// attempt retried after 50 ms.
pub fn webhook_settings(url: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("webhooks.urls", json!(url)),
        ("webhooks.secret", json!(WEBHOOK_SECRET)),
        ("webhooks.retry_base_ms", json!(50)),
    ]
}

/// A webhook receiver: an HTTP server on a free port that records every POST and answers 204,
/// or 500 to the first one with `fail_first` (to see a retry).
pub async fn webhook_receiver(fail_first: bool) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let mut all = seen.lock().unwrap();
                all.push(Received {
                    event: h("x-uos-event"),
                    delivery: h("x-uos-delivery"),
                    signature: h("x-uos-signature"),
                    body,
                });
                if fail_first && all.len() == 1 {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A member of `org` made a platform admin (as an operator would, in the store): its id and a
/// token of a login after the change.
pub async fn platform_admin(app: &TestApp, org: &str, email: &str) -> (String, String) {
    let admin = app.admin_token().await;
    let (id, _) = app.add_member(&admin, org, email, &["member"]).await;
    let store = app.state.svc.store().clone();
    let mut tx = store.begin().await.unwrap();
    let uid = uos_domain::UserId(id.parse().unwrap());
    let mut u = tx.get_user(uid).await.unwrap().unwrap();
    let v = u.version;
    u.platform_admin = true;
    u.version += 1;
    tx.update_user(&u, v).await.unwrap();
    tx.commit().await.unwrap();
    (id, app.login(email, PASSWORD).await)
}
