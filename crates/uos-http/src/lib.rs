//! The HTTP face of user-org-service: the axum router with its conventions (problem+json,
//! request ids, idempotency keys, ETags, keyset pages), the OpenAPI document and the serve
//! loop. It sees the services only; which store, keys and mail sit behind them is decided by
//! the composition root (`uos-app`).

pub mod client_ip;
pub mod error_code;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
pub mod reply;
pub mod routes;
pub mod schemas;
pub mod server;
pub mod state;

pub use state::AppState;

use crate::problem::ApiError;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::Router;
use routes::{
    approvals, audit, auth, budgets, declarative, federation, health, invites, machine, me,
    members, mfa, oauth, orgs, policy, resets, roles, tokens, users, webhooks,
};
use tower_http::catch_panic::CatchPanicLayer;

/// The full router. Layer order, outermost first: request context (id, span, early 413),
/// panic catcher, authentication; then on each matched route metrics, rate limits, the 401 for
/// anonymous callers of secured operations, idempotency.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/v1/auth/mfa", post(auth::mfa))
        .route("/v1/auth/password/forgot", post(auth::forgot_password))
        .route("/v1/auth/password/reset", post(auth::reset_password))
        .route("/v1/auth/introspect", post(tokens::introspect))
        .route("/v1/auth/whoami", get(auth::whoami))
        .route(
            "/oauth2/token",
            post(oauth::token).fallback(oauth::method_not_allowed),
        )
        .route(
            "/oauth2/revoke",
            post(oauth::revoke).fallback(oauth::method_not_allowed),
        )
        .route(
            "/v1/orgs/{slug}/service-accounts",
            post(machine::create_account).get(machine::list_accounts),
        )
        .route(
            "/v1/orgs/{slug}/service-accounts/{id}",
            get(machine::get_account)
                .patch(machine::update_account)
                .delete(machine::delete_account),
        )
        .route(
            "/v1/orgs/{slug}/service-accounts/{id}/client-secret",
            post(machine::issue_client_secret),
        )
        .route(
            "/v1/orgs/{slug}/service-accounts/{id}/api-keys",
            post(machine::create_key).get(machine::list_keys),
        )
        .route(
            "/v1/orgs/{slug}/api-keys/overdue",
            get(machine::list_overdue),
        )
        .route(
            "/v1/orgs/{slug}/api-keys/{id}",
            get(machine::get_key).delete(machine::revoke_key),
        )
        .route(
            "/v1/orgs/{slug}/api-keys/{id}/rotate",
            post(machine::rotate_key),
        )
        .route(
            "/v1/orgs/{slug}/api-keys/{id}/release",
            post(machine::release_key),
        )
        .route("/v1/auth/oidc/{provider}/start", get(federation::start))
        .route(
            "/v1/auth/oidc/{provider}/callback",
            get(federation::callback),
        )
        .route("/v1/keys/rotate", post(tokens::rotate))
        .route("/v1/me/mfa/totp", post(mfa::enrol).delete(mfa::disable))
        .route("/v1/me/mfa/totp/confirm", post(mfa::confirm))
        .route("/v1/password-resets", get(resets::list_pending))
        .route("/v1/password-resets/{id}/approve", post(resets::approve))
        .route("/v1/users/{id}/unlock", post(users::unlock))
        .route(
            "/v1/me/sessions",
            get(me::list_sessions).delete(me::revoke_other_sessions),
        )
        .route(
            "/v1/me/sessions/{id}",
            axum::routing::delete(me::revoke_session),
        )
        .route("/v1/me", get(me::get_me).patch(me::patch_me))
        .route(
            "/v1/me/preferences",
            get(me::get_preferences).put(me::put_preferences),
        )
        .route("/v1/me/password", post(me::change_password))
        .route("/v1/orgs", post(orgs::create).get(orgs::list_orgs))
        .route(
            "/v1/orgs/{slug}",
            get(orgs::get).patch(orgs::update).delete(orgs::delete),
        )
        .route("/v1/orgs/{slug}/suspend", post(orgs::suspend))
        .route("/v1/orgs/{slug}/resume", post(orgs::resume))
        .route("/v1/orgs/{slug}/restore", post(orgs::restore))
        .route(
            "/v1/orgs/{slug}/legal-hold",
            axum::routing::put(orgs::place_hold).delete(orgs::lift_hold),
        )
        .route("/v1/orgs/{slug}/users", get(members::list_members))
        .route(
            "/v1/orgs/{slug}/users/{user_id}",
            get(members::get_member).delete(members::remove_member),
        )
        .route(
            "/v1/orgs/{slug}/users/{user_id}/roles",
            put(members::set_roles),
        )
        .route(
            "/v1/orgs/{slug}/users/{user_id}/suspend",
            post(members::suspend),
        )
        .route(
            "/v1/orgs/{slug}/users/{user_id}/reactivate",
            post(members::reactivate),
        )
        .route(
            "/v1/orgs/{slug}/invites",
            post(invites::create).get(invites::list_invites),
        )
        .route(
            "/v1/orgs/{slug}/invites/{id}",
            axum::routing::delete(invites::revoke),
        )
        .route("/v1/invites/accept", post(invites::accept))
        .route(
            "/v1/orgs/{slug}/roles",
            post(roles::create).get(roles::list_roles),
        )
        .route(
            "/v1/orgs/{slug}/roles/{name}",
            get(roles::get).patch(roles::update).delete(roles::delete),
        )
        .route("/v1/users", get(users::list_users))
        .route(
            "/v1/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route("/v1/users/{id}/status", post(users::set_status))
        .route("/v1/users/{id}/restore", post(users::restore))
        .route(
            "/v1/users/{id}/legal-hold",
            axum::routing::put(users::place_hold).delete(users::lift_hold),
        )
        .route(
            "/v1/users/{id}/sessions",
            axum::routing::delete(users::revoke_sessions),
        )
        .route("/v1/audit/events", get(audit::events))
        .route("/v1/audit/keys", get(audit::keys))
        .route("/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/v1/audit/exports", post(audit::create_export))
        .route("/v1/audit/exports/{id}", get(audit::get_export))
        .route(
            "/v1/audit/exports/{id}/download",
            get(audit::download_export),
        )
        .route("/v1/policy/evaluate", post(policy::evaluate))
        .route("/v1/policy/evaluate-batch", post(policy::evaluate_batch))
        .route("/v1/policy/keys", get(policy::keys))
        .route("/v1/policy/bundle", get(policy::bundle))
        .route("/v1/policy/reload", post(policy::reload))
        .route("/v1/declarative/schema", get(declarative::schema))
        .route("/v1/declarative/status", get(declarative::statuses))
        .route("/v1/declarative/status/{slug}", get(declarative::status))
        .route("/v1/declarative/pause", post(declarative::pause))
        .route("/v1/declarative/resume", post(declarative::resume))
        .route("/v1/declarative/sync", post(declarative::sync))
        .route("/v1/declarative/webhook", post(declarative::webhook))
        .route("/v1/declarative/plan", post(declarative::plan))
        .route(
            "/v1/orgs/{slug}/budget",
            get(budgets::get_org_budget)
                .put(budgets::put_org_budget)
                .delete(budgets::delete_org_budget),
        )
        .route(
            "/v1/orgs/{slug}/service-accounts/{id}/budget",
            get(budgets::get_account_budget)
                .put(budgets::put_account_budget)
                .delete(budgets::delete_account_budget),
        )
        .route(
            "/v1/orgs/{slug}/users/{user_id}/budget",
            get(budgets::get_member_budget)
                .put(budgets::put_member_budget)
                .delete(budgets::delete_member_budget),
        )
        .route("/v1/usage", post(budgets::record_usage))
        .route("/v1/usage/batch", post(budgets::record_usage_batch))
        .route("/v1/webhooks/deliveries", get(webhooks::deliveries))
        .route(
            "/v1/orgs/{slug}/budget/overrides",
            get(approvals::list_overrides).post(approvals::request_override),
        )
        .route(
            "/v1/orgs/{slug}/budget/overrides/{id}",
            get(approvals::get_override),
        )
        .route(
            "/v1/orgs/{slug}/budget/overrides/{id}/approve",
            post(approvals::approve_override),
        )
        .route(
            "/v1/orgs/{slug}/budget/overrides/{id}/reject",
            post(approvals::reject_override),
        )
        .route(
            "/v1/orgs/{slug}/budget/overrides/{id}/revoke",
            post(approvals::revoke_override),
        )
        .route(
            "/v1/break-glass",
            get(approvals::list_break_glass).post(approvals::request_break_glass),
        )
        .route("/v1/break-glass/{id}", get(approvals::get_break_glass))
        .route(
            "/v1/break-glass/{id}/approve",
            post(approvals::approve_break_glass),
        )
        .route(
            "/v1/break-glass/{id}/reject",
            post(approvals::reject_break_glass),
        )
        .route(
            "/v1/break-glass/{id}/revoke",
            post(approvals::revoke_break_glass),
        )
        .route("/.well-known/jwks.json", get(health::jwks))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
        .route("/errors/{code}", get(health::error_page))
        // Innermost first: the 401 for anonymous callers of secured operations, then
        // idempotency (on a matched route only, so a 404 or 405 claims no key), then rate
        // limits (a refused request claims no key and reaches nothing), then metrics (which
        // count the 429s).
        .route_layer(from_fn_with_state(state.clone(), middleware::route_guard))
        .route_layer(from_fn_with_state(state.clone(), ratelimit::rate_limit))
        .route_layer(from_fn_with_state(state.clone(), middleware::metrics))
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() });

    api.layer(from_fn_with_state(state.clone(), middleware::authenticate))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(from_fn_with_state(state.clone(), middleware::admit))
        .layer(from_fn_with_state(
            state.public_url.clone(),
            middleware::request_context,
        ))
        .with_state(state)
}
