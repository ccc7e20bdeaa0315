//! Rate limits (contract § Rate limits): per client address and per caller, headers on every
//! answer of a limited operation, 429 `rate_limited` with `Retry-After` over the limit,
//! configurable per route, switchable off, and shared by replicas through Redis.

use crate::{assert_problem, json, Req, TestApp, Value};
use std::time::Duration;
use uos_testkit::{Backend, ADMIN_PASSWORD};

async fn app(config: &[(&str, Value)]) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, config).await
}

fn failed_login(email: &str, ip: &str) -> Req {
    Req::post("/v1/auth/login")
        .json(json!({"email": email, "password": "not the password"}))
        .from_ip(ip)
}

/// `"<scope>";r=<n>;t=<secs>` → (n, secs) for `scope`.
fn standing(header: &str, scope: &str) -> Option<(u64, u64)> {
    let item = header
        .split(',')
        .map(str::trim)
        .find(|i| i.starts_with(&format!("\"{scope}\";")))?;
    let field = |name: &str| {
        item.split(';')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
    };
    Some((field("r")?, field("t")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_over_its_limit_gets_429_with_headers_and_others_do_not() {
    let app = app(&[("rate_limit.routes.login.per_address", json!(3))]).await;
    for (i, left) in [2, 1, 0].into_iter().enumerate() {
        let r = app
            .send(failed_login(&format!("u{i}@example.com"), "203.0.113.7"))
            .await;
        assert_problem(&r, 401, "invalid_credentials");
        assert_eq!(r.header("ratelimit-policy"), Some("\"address\";q=3;w=60"));
        let (remaining, reset) = standing(r.header("ratelimit").unwrap(), "address")
            .unwrap_or_else(|| panic!("RateLimit names the address: {:?}", r.headers));
        assert_eq!(remaining, left, "{:?}", r.headers);
        assert!((1..=60).contains(&reset), "{reset}");
    }
    let r = app
        .send(failed_login("u9@example.com", "203.0.113.7"))
        .await;
    assert_problem(&r, 429, "rate_limited");
    assert!(
        r.body["detail"].as_str().unwrap().contains("address"),
        "{}",
        r.text
    );
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"address\";q=3;w=60"));
    assert_eq!(
        standing(r.header("ratelimit").unwrap(), "address").map(|s| s.0),
        Some(0)
    );
    // The refused request never reached the login: the lockout counted nothing for it.
    // Another address has its own allowance.
    let r = app
        .send(failed_login("u9@example.com", "198.51.100.1"))
        .await;
    assert_problem(&r, 401, "invalid_credentials");
    assert_eq!(
        standing(r.header("ratelimit").unwrap(), "address").map(|s| s.0),
        Some(2)
    );
    // Requests without an address (none here: a router call without a connection) are not
    // counted per address at all.
    let r = app
        .send(
            Req::post("/v1/auth/login")
                .json(json!({"email": "admin@example.com", "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ratelimit"), None);
    let metrics = app.send(Req::get("/metrics")).await.text;
    assert!(
        metrics.contains(
            "uos_http_rate_limited_total{method=\"POST\",route=\"/v1/auth/login\",scope=\"address\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_login_limit_is_thirty_a_minute_per_address() {
    let app = app(&[]).await;
    for i in 0..30 {
        let r = app
            .send(failed_login(&format!("d{i}@example.com"), "192.0.2.1"))
            .await;
        assert_problem(&r, 401, "invalid_credentials");
    }
    let r = app.send(failed_login("d30@example.com", "192.0.2.1")).await;
    assert_problem(&r, 429, "rate_limited");
    assert_eq!(r.header("ratelimit-policy"), Some("\"address\";q=30;w=60"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_its_limit_is_refused_and_other_callers_are_not() {
    let app = app(&[("rate_limit.routes.invite_create.per_caller", json!(2))]).await;
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    // The admin's first invite of two.
    let (_, alice) = app
        .add_member(&admin, "acme", "alice@example.com", &["admin"])
        .await;
    let invite = |token: &str, email: &str| {
        Req::post("/v1/orgs/acme/invites")
            .token(token)
            .json(json!({"email": email, "roles": ["member"]}))
    };
    let r = app.send(invite(&admin, "b@example.com")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"caller\";q=2;w=60, \"address\";q=120;w=60")
    );
    assert_eq!(
        standing(r.header("ratelimit").unwrap(), "caller").map(|s| s.0),
        Some(0)
    );
    let r = app.send(invite(&admin, "c@example.com")).await;
    assert_problem(&r, 429, "rate_limited");
    assert!(
        r.body["detail"].as_str().unwrap().contains("caller"),
        "{}",
        r.text
    );
    assert!(r.header("retry-after").is_some());
    // The refused request claimed no idempotency key and created nothing.
    let r = app
        .send(Req::get("/v1/orgs/acme/invites").token(&admin))
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2, "{}", r.text);
    // Alice counts on her own.
    let r = app.send(invite(&alice, "c@example.com")).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_of_ones_own_limits_another_route_and_its_window_resets() {
    let app = app(&[(
        "rate_limit.routes.me",
        json!({"route": "GET /v1/me", "per_caller": 2, "window_secs": 1}),
    )])
    .await;
    let admin = app.admin_token().await;
    let me = || Req::get("/v1/me").token(&admin);
    for _ in 0..2 {
        let r = app.send(me()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("ratelimit-policy"), Some("\"caller\";q=2;w=1"));
    }
    let r = app.send(me()).await;
    assert_problem(&r, 429, "rate_limited");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Other operations are not limited by it.
    let r = app.send(Req::get("/v1/me/sessions").token(&admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ratelimit-policy"), None);
    // The served document declares the 429 of the configured route too.
    let doc = app.send(Req::get("/openapi.json")).await.body;
    let responses = &doc["paths"]["/v1/me"]["get"]["responses"];
    assert!(
        responses["429"]["headers"]["Retry-After"].is_object(),
        "{responses}"
    );
    assert!(
        responses["200"]["headers"]["RateLimit-Policy"].is_object(),
        "{responses}"
    );
    // A new window: allowed again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = app.send(me()).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_nothing_is_limited() {
    let app = app(&[
        ("rate_limit.enabled", json!(false)),
        ("rate_limit.routes.login.per_address", json!(1)),
    ])
    .await;
    for i in 0..3 {
        let r = app
            .send(failed_login(&format!("o{i}@example.com"), "203.0.113.9"))
            .await;
        assert_problem(&r, 401, "invalid_credentials");
        assert_eq!(r.header("ratelimit-policy"), None);
        assert_eq!(r.header("ratelimit"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_429_and_the_headers_of_every_limited_operation() {
    let app = app(&[]).await;
    let doc = app.send(Req::get("/openapi.json")).await.body;
    for (path, ok) in [
        ("/v1/auth/login", "200"),
        ("/v1/auth/password/forgot", "202"),
        ("/v1/orgs/{slug}/invites", "201"),
        ("/v1/orgs/{slug}/service-accounts/{id}/api-keys", "201"),
    ] {
        let responses = &doc["paths"][path]["post"]["responses"];
        let too_many = &responses["429"];
        assert!(
            too_many["description"]
                .as_str()
                .unwrap_or("")
                .contains("rate_limited"),
            "{path}: {too_many}"
        );
        for h in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(
                too_many["headers"][h].is_object(),
                "{path} 429 {h}: {too_many}"
            );
        }
        assert!(
            responses[ok]["headers"]["RateLimit-Policy"].is_object(),
            "{path} {ok}: {responses}"
        );
    }
    let responses = &doc["paths"]["/v1/orgs/{slug}/invites"]["get"]["responses"];
    assert!(responses.get("429").is_none(), "{responses}");
}

/// Two replicas sharing one Redis share every limit: an exact one (login, one round trip per
/// request) to the request, and a batched one within the documented tolerance
/// (`limit − replicas × 2 × max(1, limit / 100)` to `limit`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Redis"]
async fn two_replicas_share_the_limits_through_redis() {
    let redis_url =
        std::env::var("UOS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let quota = 1000u64;
    let config = [
        ("redis_url", json!(redis_url)),
        (
            "redis_prefix",
            json!(format!("uos-test-{}:", uos_domain::new_id())),
        ),
        ("rate_limit.routes.login.per_address", json!(10)),
        (
            "rate_limit.routes.me",
            json!({"route": "GET /v1/me", "per_caller": quota, "window_secs": 600}),
        ),
    ];
    let a = app(&config).await;
    let b = a.replica(&config).await;
    let replicas = [&a, &b];

    let mut statuses = Vec::new();
    for i in 0..20 {
        let r = replicas[i % 2]
            .send(failed_login(&format!("r{i}@example.com"), "203.0.113.20"))
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429; 10], "{statuses:?}");

    let token = a.admin_token().await;
    let a = std::sync::Arc::new(a);
    let b = std::sync::Arc::new(b);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let app = if t % 2 == 0 { a.clone() } else { b.clone() };
            let token = token.clone();
            tokio::spawn(async move {
                let mut allowed = 0u64;
                for _ in 0..175 {
                    let r = app.send(Req::get("/v1/me").token(&token)).await;
                    match r.status.as_u16() {
                        200 => allowed += 1,
                        429 => {}
                        s => panic!("unexpected {s}: {}", r.text),
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    let tolerance = 2 * 2 * (quota / 100);
    assert!(
        (quota - tolerance..=quota).contains(&allowed),
        "{allowed} of 1400 admitted across two replicas; the limit is {quota}, tolerance {tolerance}"
    );
}

/// Behind an ingress every connection comes from the proxy: with the proxy trusted, each
/// client behind it has its own allowance, named by `X-Forwarded-For`; a client that writes
/// the header itself, not through a trusted proxy, is still counted by its own address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_a_trusted_proxy_are_counted_by_their_forwarded_address() {
    let app = app(&[
        ("rate_limit.routes.login.per_address", json!(2)),
        ("trusted_proxies", json!(["10.0.0.0/8"])),
    ])
    .await;
    let via_ingress = |email: &str, client: &str| {
        failed_login(email, "10.0.0.5").header("x-forwarded-for", &format!("1.2.3.4, {client}"))
    };
    for i in 0..2 {
        let r = app
            .send(via_ingress(&format!("a{i}@example.com"), "203.0.113.7"))
            .await;
        assert_problem(&r, 401, "invalid_credentials");
    }
    let r = app.send(via_ingress("a9@example.com", "203.0.113.7")).await;
    assert_problem(&r, 429, "rate_limited");
    // Another client through the same ingress: its own allowance.
    let r = app.send(via_ingress("b@example.com", "198.51.100.1")).await;
    assert_problem(&r, 401, "invalid_credentials");
    assert_eq!(
        standing(r.header("ratelimit").unwrap(), "address").map(|s| s.0),
        Some(1)
    );
    // Not from a trusted proxy: the header is ignored, the peer is counted.
    for expect in [401, 401, 429] {
        let r = app
            .send(
                failed_login("c@example.com", "192.0.2.50")
                    .header("x-forwarded-for", "198.51.100.77"),
            )
            .await;
        assert_eq!(r.status, expect, "{}", r.text);
    }
    let r = app
        .send(via_ingress("d@example.com", "198.51.100.77"))
        .await;
    assert_problem(&r, 401, "invalid_credentials");
}
