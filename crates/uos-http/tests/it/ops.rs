//! Operating the service: liveness, readiness (and what a failing store looks like to
//! clients), Prometheus metrics, and an OpenAPI document that matches the router.

use super::*;
use std::collections::BTreeSet;

/// Every (method, path template) of the contract implemented so far.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/auth/mfa"),
    ("POST", "/v1/auth/password/forgot"),
    ("POST", "/v1/auth/password/reset"),
    ("POST", "/v1/auth/introspect"),
    ("GET", "/v1/auth/oidc/{provider}/start"),
    ("GET", "/v1/auth/oidc/{provider}/callback"),
    ("POST", "/v1/keys/rotate"),
    ("GET", "/v1/auth/whoami"),
    ("POST", "/oauth2/token"),
    ("POST", "/oauth2/revoke"),
    ("POST", "/v1/orgs/{slug}/service-accounts"),
    ("GET", "/v1/orgs/{slug}/service-accounts"),
    ("GET", "/v1/orgs/{slug}/service-accounts/{id}"),
    ("PATCH", "/v1/orgs/{slug}/service-accounts/{id}"),
    ("DELETE", "/v1/orgs/{slug}/service-accounts/{id}"),
    (
        "POST",
        "/v1/orgs/{slug}/service-accounts/{id}/client-secret",
    ),
    ("POST", "/v1/orgs/{slug}/service-accounts/{id}/api-keys"),
    ("GET", "/v1/orgs/{slug}/service-accounts/{id}/api-keys"),
    ("GET", "/v1/orgs/{slug}/api-keys/overdue"),
    ("GET", "/v1/orgs/{slug}/api-keys/{id}"),
    ("DELETE", "/v1/orgs/{slug}/api-keys/{id}"),
    ("POST", "/v1/orgs/{slug}/api-keys/{id}/rotate"),
    ("POST", "/v1/orgs/{slug}/api-keys/{id}/release"),
    ("POST", "/v1/me/mfa/totp"),
    ("DELETE", "/v1/me/mfa/totp"),
    ("POST", "/v1/me/mfa/totp/confirm"),
    ("GET", "/v1/password-resets"),
    ("POST", "/v1/password-resets/{id}/approve"),
    ("POST", "/v1/users/{id}/unlock"),
    ("GET", "/v1/me"),
    ("PATCH", "/v1/me"),
    ("GET", "/v1/me/preferences"),
    ("PUT", "/v1/me/preferences"),
    ("POST", "/v1/me/password"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/v1/orgs"),
    ("GET", "/v1/orgs"),
    ("GET", "/v1/orgs/{slug}"),
    ("PATCH", "/v1/orgs/{slug}"),
    ("DELETE", "/v1/orgs/{slug}"),
    ("POST", "/v1/orgs/{slug}/suspend"),
    ("POST", "/v1/orgs/{slug}/resume"),
    ("POST", "/v1/orgs/{slug}/restore"),
    ("GET", "/v1/users"),
    ("GET", "/v1/users/{id}"),
    ("PATCH", "/v1/users/{id}"),
    ("DELETE", "/v1/users/{id}"),
    ("POST", "/v1/users/{id}/status"),
    ("POST", "/v1/users/{id}/restore"),
    // Retention: legal holds stop the purge.
    ("PUT", "/v1/users/{id}/legal-hold"),
    ("DELETE", "/v1/users/{id}/legal-hold"),
    ("PUT", "/v1/orgs/{slug}/legal-hold"),
    ("DELETE", "/v1/orgs/{slug}/legal-hold"),
    ("GET", "/v1/orgs/{slug}/users"),
    ("GET", "/v1/orgs/{slug}/users/{user_id}"),
    ("DELETE", "/v1/orgs/{slug}/users/{user_id}"),
    ("PUT", "/v1/orgs/{slug}/users/{user_id}/roles"),
    ("POST", "/v1/orgs/{slug}/users/{user_id}/suspend"),
    ("POST", "/v1/orgs/{slug}/users/{user_id}/reactivate"),
    ("POST", "/v1/orgs/{slug}/invites"),
    ("GET", "/v1/orgs/{slug}/invites"),
    ("DELETE", "/v1/orgs/{slug}/invites/{id}"),
    ("POST", "/v1/invites/accept"),
    ("POST", "/v1/orgs/{slug}/roles"),
    ("GET", "/v1/orgs/{slug}/roles"),
    ("GET", "/v1/orgs/{slug}/roles/{name}"),
    ("PATCH", "/v1/orgs/{slug}/roles/{name}"),
    ("DELETE", "/v1/orgs/{slug}/roles/{name}"),
    ("GET", "/v1/audit/events"),
    ("GET", "/v1/audit/keys"),
    ("GET", "/v1/audit/checkpoints"),
    ("POST", "/v1/audit/exports"),
    ("GET", "/v1/audit/exports/{id}"),
    ("GET", "/v1/audit/exports/{id}/download"),
    ("POST", "/v1/policy/evaluate"),
    ("POST", "/v1/policy/evaluate-batch"),
    ("GET", "/v1/policy/keys"),
    ("GET", "/v1/policy/bundle"),
    ("POST", "/v1/policy/reload"),
    ("GET", "/v1/declarative/schema"),
    ("GET", "/v1/declarative/status"),
    ("GET", "/v1/declarative/status/{slug}"),
    ("POST", "/v1/declarative/pause"),
    ("POST", "/v1/declarative/resume"),
    ("POST", "/v1/declarative/sync"),
    ("POST", "/v1/declarative/webhook"),
    ("POST", "/v1/declarative/plan"),
    ("GET", "/v1/orgs/{slug}/budget"),
    ("PUT", "/v1/orgs/{slug}/budget"),
    ("DELETE", "/v1/orgs/{slug}/budget"),
    ("GET", "/v1/orgs/{slug}/service-accounts/{id}/budget"),
    ("PUT", "/v1/orgs/{slug}/service-accounts/{id}/budget"),
    ("DELETE", "/v1/orgs/{slug}/service-accounts/{id}/budget"),
    ("GET", "/v1/orgs/{slug}/users/{user_id}/budget"),
    ("PUT", "/v1/orgs/{slug}/users/{user_id}/budget"),
    ("DELETE", "/v1/orgs/{slug}/users/{user_id}/budget"),
    ("POST", "/v1/usage"),
    ("POST", "/v1/usage/batch"),
    ("GET", "/v1/webhooks/deliveries"),
    ("GET", "/v1/orgs/{slug}/budget/overrides"),
    ("POST", "/v1/orgs/{slug}/budget/overrides"),
    ("GET", "/v1/orgs/{slug}/budget/overrides/{id}"),
    ("POST", "/v1/orgs/{slug}/budget/overrides/{id}/approve"),
    ("POST", "/v1/orgs/{slug}/budget/overrides/{id}/reject"),
    ("POST", "/v1/orgs/{slug}/budget/overrides/{id}/revoke"),
    ("GET", "/v1/break-glass"),
    ("POST", "/v1/break-glass"),
    ("GET", "/v1/break-glass/{id}"),
    ("POST", "/v1/break-glass/{id}/approve"),
    ("POST", "/v1/break-glass/{id}/reject"),
    ("POST", "/v1/break-glass/{id}/revoke"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/errors/{code}"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/me/sessions"),
    ("DELETE", "/v1/me/sessions"),
    ("DELETE", "/v1/me/sessions/{id}"),
    ("DELETE", "/v1/users/{id}/sessions"),
];

/// A concrete path for a template: ids that match nothing, so no request changes anything.
fn concrete(template: &str) -> String {
    template
        .replace("{slug}", "nowhere")
        .replace("{user_id}", "0190aaaa-0000-7000-8000-000000000001")
        .replace("{id}", "0190aaaa-0000-7000-8000-000000000002")
        .replace("{name}", "ghost")
}

/// The `route`/`method` label pairs of `uos_http_requests_total` in a Prometheus text page.
fn request_counter_labels(text: &str) -> BTreeSet<(String, String)> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_string())
    };
    text.lines()
        .filter(|l| l.starts_with("uos_http_requests_total{"))
        .filter_map(|l| Some((label(l, "method")?, label(l, "route")?)))
        .collect()
}

backend_test!(health_and_readiness, |app| async move {
    let r = app.send(Req::get("/healthz")).await;
    assert_status(&r, 200);
    let r = app.send(Req::get("/readyz")).await;
    assert_status(&r, 200);
    assert_eq!(r.body["checks"]["store"]["ok"], true, "{}", r.text);
});

backend_test!(
    a_lost_store_is_503_and_5xx_bodies_stay_generic,
    |app| async move {
        let admin = app.admin_token().await;
        app.state.svc.store().close().await;
        let r = app.send(Req::get("/readyz")).await;
        assert_status(&r, 503);
        assert_eq!(r.body["checks"]["store"]["ok"], false);
        // Liveness does not depend on the store.
        assert_status(&app.send(Req::get("/healthz")).await, 200);
        for req in [
            Req::get("/v1/me").token(&admin),
            Req::post("/v1/auth/login")
                .json(json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
            // An anonymous caller of a secured operation is refused (401) before the store is
            // asked, and so is a refresh token that is not one of ours; these two reach the
            // store, with and without a caller (a token of the shape issued before migration
            // 0015 is looked up by its hash).
            Req::get("/v1/orgs/acme").token(&admin),
            Req::post("/v1/auth/refresh")
                .json(json!({"refresh_token": format!("uosrt_{}", "A".repeat(43))})),
        ] {
            let label = format!("{req:?}");
            let r = app.send(req).await;
            assert!(
                r.status.is_server_error(),
                "{label}: a store failure is a 5xx: {}",
                r.text
            );
            assert!(
                ["unavailable", "internal"].contains(&r.code()),
                "{label}: {}",
                r.text
            );
            assert_problem(&r, r.status.as_u16(), r.code());
            let lower = r.text.to_lowercase();
            for internal in [
                "sqlx",
                "sqlite",
                "postgres",
                "pool",
                "closed",
                "database",
                "error returned",
            ] {
                assert!(
                    !lower.contains(internal),
                    "{label}: a 5xx body must not carry internals ({internal}): {}",
                    r.text
                );
            }
        }
    }
);

backend_test!(metrics_count_requests_by_route_template, |app| async move {
    let admin = app.admin_token().await;
    app.create_org(&admin, "acme").await;
    get_ok(&app, &admin, "/v1/orgs/acme").await;
    let r = app.send(Req::get("/metrics")).await;
    assert_status(&r, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "Prometheus text"
    );
    let text = &r.text;
    assert!(
        text.contains("# TYPE uos_http_requests_total counter"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("uos_http_requests_total{")
                && l.contains("route=\"/v1/orgs/{slug}\"")
                && l.contains("method=\"GET\"")
                && l.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("a counter for GET /v1/orgs/{{slug}} 200:\n{text}"));
    assert!(line.ends_with(" 1"), "one such request so far: {line}");
    assert!(
        !text.contains("route=\"/v1/orgs/acme\""),
        "labels are route templates, never raw paths"
    );
    assert!(text.contains("uos_http_request_duration_seconds_bucket"));
    assert!(text.contains("uos_store_pool_connections"));
});

// The document says what the shared layers answer, in the media type they answer it in.
backend_test!(
    openapi_documents_errors_headers_and_strict_bodies,
    |app| async move {
        let doc = app.send(Req::get("/openapi.json")).await.body;
        let shared = &doc["components"]["responses"];
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let label = format!("{} {path}", method.to_uppercase());
                let responses = op["responses"].as_object().expect("responses");
                let params: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                    .unwrap_or_default();
                assert!(responses.contains_key("500"), "{label}: 500");
                if !path.starts_with("/oauth2/") {
                    assert!(responses.contains_key("401"), "{label}: 401");
                    // The readiness report is the one error-status body that is not a problem.
                    let errors = responses.iter().filter(|(s, _)| {
                        s.as_str() >= "400" && !(path == "/readyz" && s.as_str() == "503")
                    });
                    for (status, r) in errors {
                        let r = match r["$ref"].as_str() {
                            Some(name) => &shared[name.rsplit('/').next().unwrap()],
                            None => r,
                        };
                        let types: Vec<&String> = r["content"]
                            .as_object()
                            .map(|c| c.keys().collect())
                            .unwrap_or_default();
                        assert_eq!(
                            types,
                            ["application/problem+json"],
                            "{label} {status}: errors are problem+json"
                        );
                    }
                }
                if params.contains(&"If-Match") {
                    assert!(responses.contains_key("412"), "{label}: If-Match can fail");
                }
                if method == "post"
                    && !path.starts_with("/v1/auth/")
                    && !path.starts_with("/oauth2/")
                {
                    assert!(
                        params.contains(&"Idempotency-Key"),
                        "{label}: Idempotency-Key is honoured"
                    );
                    assert!(responses.contains_key("422"), "{label}: a reused key");
                }
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for op in item.as_object().expect("path item").values() {
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
            }
        }
        let ok = &doc["paths"]["/v1/orgs/{slug}"]["patch"]["responses"]["200"]["headers"];
        assert!(
            ok.get("ETag").is_some(),
            "a write that takes If-Match answers its ETag"
        );
        let created = &doc["paths"]["/v1/orgs"]["post"]["responses"]["201"]["headers"];
        assert!(
            created.get("Idempotent-Replayed").is_some(),
            "an idempotent POST documents the replay header"
        );
        let update_org = &doc["paths"]["/v1/orgs/{slug}"]["patch"];
        let names: Vec<&str> = update_org["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"If-Match"),
            "PATCH declares If-Match: {names:?}"
        );
        for body in [
            "CreateOrgBody",
            "UpdateOrgBody",
            "ProfileBody",
            "CreateServiceAccountBody",
        ] {
            assert_eq!(
                doc["components"]["schemas"][body]["additionalProperties"], false,
                "{body}: unknown fields are rejected"
            );
        }
        assert_eq!(
            doc["components"]["schemas"]["CreateOrgBody"]["properties"]["slug"]["pattern"],
            "^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"
        );
    }
);

backend_test!(
    openapi_lists_exactly_the_routes_the_router_serves,
    |app| async move {
        let r = app.send(Req::get("/openapi.json")).await;
        assert_status(&r, 200);
        let doc = &r.body;
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "OpenAPI 3.1: {}",
            doc["openapi"]
        );
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let expected: BTreeSet<(String, String)> = ENDPOINTS
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(
            documented, expected,
            "the OpenAPI document lists exactly the contract's endpoints"
        );
        assert!(
            doc["components"]["schemas"]["Problem"].is_object(),
            "errors are documented"
        );

        // And the router serves each one: every request below reaches its route (metrics label
        // matched routes only). A separate session is used so logout ends nothing else.
        let admin = app.admin_token().await;
        let throwaway = app.admin_token().await;
        for (method, template) in ENDPOINTS {
            let token = if *template == "/v1/auth/logout" {
                &throwaway
            } else {
                &admin
            };
            let r = app
                .send(Req::new(method.parse().unwrap(), concrete(template)).token(token))
                .await;
            assert!(
                !r.status.is_server_error(),
                "{method} {template}: {}",
                r.text
            );
            assert_ne!(r.status, 405, "{method} {template} is routed");
        }
        let served = request_counter_labels(&app.send(Req::get("/metrics")).await.text);
        let missing: Vec<_> = expected.difference(&served).collect();
        assert!(missing.is_empty(), "documented but not served: {missing:?}");
        let undocumented: Vec<_> = served.difference(&expected).collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented: {undocumented:?}"
        );
        // Nothing was changed by the probes.
        let r = app.send(Req::get("/v1/orgs/nowhere").token(&admin)).await;
        assert_problem(&r, 404, "not_found");
    }
);

/// A Redis CA that cannot be used stops the start with a message naming it, before any
/// connection is tried: a replica must not run without the shared state it was given.
#[tokio::test]
async fn an_unusable_redis_ca_stops_the_start() {
    use figment::providers::Serialized;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    for (ca, expect) in [(&missing, "redis_ca_file"), (&garbage, "Redis CA")] {
        let f = figment::Figment::new()
            .merge(Serialized::default(
                "database_url",
                format!("sqlite://{}/uos.db", dir.path().display()),
            ))
            .merge(Serialized::default("data_dir", dir.path().join("data")))
            .merge(Serialized::default("redis_url", "rediss://127.0.0.1:1/"))
            .merge(Serialized::default("redis_ca_file", ca));
        let cfg = uos_app::Config::from_figment(f).unwrap();
        let err = uos_app::build(&cfg).await.unwrap_err().to_string();
        assert!(err.contains(expect), "{}: {err}", ca.display());
    }
}
