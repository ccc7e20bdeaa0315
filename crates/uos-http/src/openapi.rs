//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they use.

use crate::problem::Problem;
use crate::reply::ListBody;
use crate::routes::{
    approvals, audit, auth, budgets, declarative, federation, health, invites, machine, me,
    members, mfa, oauth, orgs, policy, resets, roles, tokens, users, webhooks,
};
use std::collections::HashSet;
use std::sync::LazyLock;
use uos_service::views;
use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::AnyOfBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    Content, Header, KnownFormat, ObjectBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
    Schema, SchemaFormat, Type,
};
use utoipa::{Modify, OpenApi};

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "user-org-service", description = "Identity and organization service: HTTP contract v1."),
    paths(
        health::healthz, health::readyz, health::metrics, health::openapi, health::error_page, health::jwks,
        auth::login, auth::logout, auth::refresh, auth::mfa, auth::forgot_password, auth::reset_password,
        federation::start, federation::callback, tokens::introspect, tokens::rotate,
        mfa::enrol, mfa::confirm, mfa::disable, resets::list_pending, resets::approve, users::unlock,
        me::get_me, me::patch_me, me::get_preferences, me::put_preferences, me::change_password, me::list_sessions, me::revoke_session, me::revoke_other_sessions,
        orgs::create, orgs::list_orgs, orgs::get, orgs::update, orgs::delete, orgs::suspend, orgs::resume, orgs::restore, orgs::place_hold, orgs::lift_hold,
        members::list_members, members::get_member, members::remove_member, members::set_roles, members::suspend, members::reactivate,
        invites::create, invites::list_invites, invites::revoke, invites::accept,
        roles::create, roles::list_roles, roles::get, roles::update, roles::delete,
        users::list_users, users::get, users::update, users::set_status, users::delete, users::restore, users::revoke_sessions, users::place_hold, users::lift_hold,
        audit::events, audit::keys, audit::checkpoints, audit::create_export, audit::get_export, audit::download_export,
        auth::whoami, oauth::token, oauth::revoke,
        machine::create_account, machine::list_accounts, machine::get_account, machine::update_account, machine::delete_account,
        machine::issue_client_secret, machine::create_key, machine::list_keys, machine::list_overdue, machine::get_key, machine::revoke_key, machine::rotate_key, machine::release_key,
        policy::evaluate, policy::evaluate_batch, policy::keys, policy::bundle, policy::reload,
        declarative::schema, declarative::statuses, declarative::status, declarative::pause,
        declarative::resume, declarative::sync, declarative::webhook, declarative::plan,
        budgets::get_org_budget, budgets::put_org_budget, budgets::delete_org_budget,
        budgets::get_account_budget, budgets::put_account_budget, budgets::delete_account_budget,
        budgets::get_member_budget, budgets::put_member_budget, budgets::delete_member_budget,
        budgets::record_usage, budgets::record_usage_batch,
        webhooks::deliveries,
        approvals::list_overrides, approvals::request_override, approvals::get_override,
        approvals::approve_override, approvals::reject_override, approvals::revoke_override,
        approvals::list_break_glass, approvals::request_break_glass, approvals::get_break_glass,
        approvals::approve_break_glass, approvals::reject_break_glass, approvals::revoke_break_glass,
    ),
    components(schemas(
        Problem, views::OrgView, views::UserView, views::MemberView, views::InviteView, views::RoleView,
        views::AcceptedInviteView, views::TokenView, views::MeView, views::MyOrgView,
        views::SessionView, views::DeviceView, ListBody<views::SessionView>,
        ListBody<views::OrgView>, ListBody<views::UserView>, ListBody<views::MemberView>,
        ListBody<views::InviteView>, ListBody<views::RoleView>,
        views::TotpEnrolmentView, views::RecoveryCodesView, views::PasswordResetView,
        ListBody<views::PasswordResetView>, views::IntrospectionView, views::KeyRotationView,
        views::ServiceAccountView, views::RotationPolicyView, ListBody<views::ServiceAccountView>,
        views::ApiKeyView, ListBody<views::ApiKeyView>, views::NewApiKeyView, views::ClientSecretView,
        views::WhoamiView, views::OAuthTokenView, oauth::OAuthErrorBody, views::AuditExportView, views::LegalHoldView,
        views::BudgetView, views::UsageReceiptView, views::UsageBatchView, views::DecisionView, views::DecisionReasonView,
        policy::DecisionsBody, views::WebhookDeliveryView, ListBody<views::WebhookDeliveryView>,
        views::PolicyBundleView, views::PolicyModuleView, views::PolicyReloadView,
        views::ApprovalView, views::ApproverView, views::BudgetRefView, ListBody<views::ApprovalView>,
        approvals::OverrideBody, approvals::BreakGlassBody, approvals::RoleItem,
        uos_service::DeclaredStatusView, uos_service::PauseView, uos_service::AttemptView,
        uos_service::DriftView, uos_service::DriftDifference, ListBody<uos_service::DeclaredStatusView>,
        declarative::PauseBody, declarative::OrgBody, declarative::PlanBody, declarative::PlanFile,
        uos_reconcile::RepoPlan, uos_reconcile::OrgPlan, uos_reconcile::InvalidFile,
        uos_reconcile::Change, uos_reconcile::Refusal, uos_reconcile::plan::LiveRole,
        uos_reconcile::DeclaredBudget, uos_reconcile::Problem,
    )),
    modifiers(&BearerAuth, &HonestResponses),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The answers the shared layers give, added to every operation they can reach, so that the
/// handlers' annotations only declare what is particular to them. What reaches what:
///
/// - every request passes the request-context layer (413 for a declared oversized body, 500
///   from the panic catcher) and, outside `/oauth2/`, authentication (401 for a bad
///   `Authorization` header, even where none is needed; 403 `api_key_quarantined` for a
///   quarantined API key, likewise);
/// - an operation with a security requirement is decided by the policy (403);
/// - anything that takes input can be refused for it (400), a path names something that may
///   not exist (404), and an operation that reads the store may find it unavailable (503);
/// - `If-Match` (declared at the route with `params(IfMatch)`) can fail (412);
/// - `Idempotency-Key` is honoured on every `POST` outside `/v1/auth/` and `/oauth2/` (see
///   [`crate::middleware::idempotency`]): declared here, with 409 and 422;
/// - a rate-limited operation (the built-in rules; [`document_limited`] adds configured ones)
///   answers 429 `rate_limited`, and carries `RateLimit-Policy` and `RateLimit` on its answers.
///
/// Every error answer outside `/oauth2/` is `application/problem+json`; every answer carries
/// `X-Request-Id`.
struct HonestResponses;

/// Operations that never touch the store or another dependency, so never answer 503.
const NO_DEPENDENCY: &[&str] = &["/healthz", "/metrics", "/openapi.json", "/errors/{code}"];

/// Names of the shared responses under `components/responses`.
const SHARED: &[(u16, &str, &str)] = &[
    (
        400,
        "ValidationFailed",
        "`validation_failed`: malformed JSON, unknown field, bad value, bad header or query \
         parameter; `errors` lists every one",
    ),
    (
        401,
        "Unauthenticated",
        "`unauthenticated`: missing, invalid, expired or revoked credentials (an `Authorization` \
         header is checked even where none is needed)",
    ),
    (
        403,
        "Forbidden",
        "`forbidden`: the policy denies; `rule` names the rule. Or `api_key_quarantined`: the \
         bearer API key is quarantined after a spike in its request rate, until an admin \
         releases it (on any operation: an `Authorization` header is checked even where none \
         is needed)",
    ),
    (
        404,
        "NotFound",
        "`not_found`: absent, or not visible to the caller",
    ),
    (
        409,
        "Conflict",
        "`conflict` (uniqueness or state transition, `reason` says which) or \
         `idempotency_key_in_flight`",
    ),
    (
        412,
        "PreconditionFailed",
        "`precondition_failed`: `If-Match` does not match the current `ETag`",
    ),
    (
        413,
        "PayloadTooLarge",
        "`payload_too_large`: the body is larger than 1 MiB",
    ),
    (
        422,
        "IdempotencyKeyReused",
        "`idempotency_key_reused`: this `Idempotency-Key` was used for a different request",
    ),
    (
        500,
        "Internal",
        "`internal`: the server failed; the request id identifies it in the logs",
    ),
    (
        503,
        "Unavailable",
        "`unavailable`: a dependency is unavailable; retry later. Or `read_only`: the database \
         accepts no writes for now (a read-only replica, a failover) and nothing was changed; \
         retry after `Retry-After`",
    ),
];

const PROBLEM_JSON: &str = "application/problem+json";

fn shared_ref(status: u16) -> RefOr<Response> {
    let name = SHARED
        .iter()
        .find(|(s, _, _)| *s == status)
        .map_or("Internal", |(_, name, _)| name);
    RefOr::Ref(Ref::from_response_name(name))
}

/// The OAuth2 endpoints' own errors for a body over the limit and an unavailable dependency.
fn oauth2_error(status: u16) -> RefOr<Response> {
    let description = if status == 413 {
        "`invalid_request`: the body is larger than 1 MiB"
    } else {
        "`temporarily_unavailable`: a dependency is unavailable; retry later"
    };
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("OAuthErrorBody"))),
            )
            .header("X-Request-Id", request_id_header())
            .build(),
    )
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn string_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::String));
    h.description = Some(description.to_string());
    h
}

fn request_id_header() -> Header {
    string_header("The request id: the client's `X-Request-Id` if it was short and printable, else a new one; it also appears in error bodies, logs and audit events")
}

/// `Idempotency-Key` as the idempotency middleware accepts it.
fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "1 to 255 printable ASCII characters, scoped to the caller. A replay within 24 h \
             returns the first status and body with `Idempotent-Replayed: true` and does \
             nothing again; the same key with another request body is 422, with a request \
             still in flight 409.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x20-\\x7E]+$")),
        ))
        .build()
}

/// `If-Match` as [`crate::extract::IfMatch`] parses it; routes declare it with
/// `params(IfMatch)`.
impl utoipa::IntoParams for crate::extract::IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        // `*` and the list are separate branches: tools that generate header values (such
        // as schemathesis) cannot draw from a pattern that needs `"`, but can from a const.
        // Empty list elements are allowed (RFC 9110 §5.6.1.2); obs-text is allowed in tags.
        let tag = r#"(W/)?"[\x21\x23-\x7E\x80-\xFF]*""#;
        let list = format!(r"^[ \t,]*{tag}([ \t]*,[ \t,]*{tag})*[ \t,]*$");
        let schema = AnyOfBuilder::new()
            .schema_type(Type::String)
            .item(string().enum_values(Some(["*"])))
            .item(string().pattern(Some(r"^[ \t]*\*[ \t]*$")))
            .item(string().pattern(Some(list)))
            .examples(["\"1\""]);
        vec![ParameterBuilder::new()
            .name("If-Match")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "RFC 9110 §13.1.1: `*` (any existing resource) or a comma-separated list of \
                 entity tags, one of which must equal the current `ETag` (`\"<version>\"`) under \
                 the strong comparison; weak tags never match. A failed precondition is 412 and \
                 changes nothing; a header that is not entity-tag syntax is 400.",
            ))
            .schema(Some(schema))
            .build()]
    }
}

impl Modify for HonestResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description) in SHARED {
            let mut r = ResponseBuilder::new()
                .description(*description)
                .content(
                    PROBLEM_JSON,
                    Content::new(Some(Ref::from_schema_name("Problem"))),
                )
                .header("X-Request-Id", request_id_header());
            if *status == 401 {
                r = r.header(
                    "WWW-Authenticate",
                    string_header("`Bearer`: how to authenticate"),
                );
            }
            if *status == 503 {
                r = r.header("Retry-After", retry_after_header());
            }
            components
                .responses
                .insert((*name).to_string(), RefOr::T(r.build()));
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [
                (Method::Get, item.get.as_mut()),
                (Method::Put, item.put.as_mut()),
                (Method::Post, item.post.as_mut()),
                (Method::Delete, item.delete.as_mut()),
                (Method::Patch, item.patch.as_mut()),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    complete(path, method, op);
                }
            }
        }
        unique_operation_ids(openapi);
    }
}

/// OpenAPI requires operation ids to be unique, and utoipa takes them from handler names,
/// which repeat across route modules (`get`, `create`, `delete`…). A repeated one gets the
/// operation's tag in front (`orgs_get`, `roles_get`), which makes it unique: a module's
/// handlers share its tag and have distinct names.
fn unique_operation_ids(openapi: &mut utoipa::openapi::OpenApi) {
    let mut uses: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for item in openapi.paths.paths.values() {
        for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
            .into_iter()
            .flatten()
        {
            if let Some(id) = &op.operation_id {
                *uses.entry(id.clone()).or_default() += 1;
            }
        }
    }
    for item in openapi.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            let Some(id) = op.operation_id.clone() else {
                continue;
            };
            if uses.get(&id).is_some_and(|n| *n > 1) {
                let tag = op
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .map(|t| t.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
                    .unwrap_or_default();
                op.operation_id = Some(format!("{tag}_{id}"));
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Put,
    Post,
    Delete,
    Patch,
}

/// Path and query parameters are named alike across the API and parsed alike (see
/// `routes::slug`, `routes::uuid`, `RoleName::parse`, [`crate::extract::Query`]), so their
/// schemas are given by name here rather than on every handler.
fn param_schema(path: &str, location: &ParameterIn, name: &str) -> Option<Schema> {
    let uuid = || {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into()
    };
    let time = || {
        string()
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .into()
    };
    Some(match (location, name) {
        (ParameterIn::Path, "slug") | (ParameterIn::Query, "org") => crate::schemas::slug().into(),
        (ParameterIn::Path, "id" | "user_id") => uuid(),
        (ParameterIn::Path, "name") => crate::schemas::role_name().into(),
        // Names come from the configuration (`[oidc_providers.<name>]`), codes from the registry.
        (ParameterIn::Path, "provider" | "code") => {
            string().min_length(Some(1)).max_length(Some(64)).into()
        }
        (ParameterIn::Query, "limit") => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1.0))
            .maximum(Some(100.0))
            .into(),
        // Opaque to clients; only tokens the same list issued are accepted.
        (ParameterIn::Query, "page_token") => {
            string().pattern(Some("^[A-Za-z0-9_-]{1,512}$")).into()
        }
        (ParameterIn::Query, "include_deleted") => {
            ObjectBuilder::new().schema_type(Type::Boolean).into()
        }
        (ParameterIn::Query, "since" | "until") => time(),
        (ParameterIn::Query, "actor" | "action" | "target") => {
            string().min_length(Some(1)).max_length(Some(200)).into()
        }
        (ParameterIn::Query, "status") if path == "/v1/users" => {
            crate::schemas::user_status().into()
        }
        (ParameterIn::Query, "status") if path == "/v1/orgs/{slug}/users" => {
            string().enum_values(Some(["active", "suspended"])).into()
        }
        (ParameterIn::Query, "q") => string().max_length(Some(254)).into(),
        (ParameterIn::Query, "code" | "state") => {
            string().min_length(Some(1)).max_length(Some(2048)).into()
        }
        _ => return None,
    })
}

/// Whether a built-in rate-limit rule covers `method path`.
fn limited_by_default(method: Method, path: &str) -> bool {
    let method = match method {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Post => "POST",
        Method::Delete => "DELETE",
        Method::Patch => "PATCH",
    };
    uos_service::DEFAULT_RULES
        .iter()
        .any(|(_, route, ..)| route.split_once(' ') == Some((method, path)))
}

/// Declare what the rate-limit layer adds to a limited operation: its headers on every answer
/// the operation declares itself, and the 429 (inline, since it carries them too).
fn mark_limited(op: &mut Operation) {
    let responses = &mut op.responses.responses;
    let too_many = responses.entry("429".to_string()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("`rate_limited`: too many requests from the caller or the address")
                .content(
                    PROBLEM_JSON,
                    Content::new(Some(Ref::from_schema_name("Problem"))),
                )
                .build(),
        )
    });
    if let RefOr::T(r) = too_many {
        if !r.description.contains("rate_limited") {
            r.description
                .push_str("; or `rate_limited`: too many requests from the caller or the address");
        }
        r.headers
            .entry("Retry-After".to_string())
            .or_insert_with(retry_after_header);
        r.headers
            .entry("X-Request-Id".to_string())
            .or_insert_with(request_id_header);
    }
    for r in responses.values_mut() {
        let RefOr::T(r) = r else { continue };
        r.headers
            .entry("RateLimit-Policy".to_string())
            .or_insert_with(|| {
                string_header(
                    "The limits of this operation (draft-ietf-httpapi-ratelimit-headers): \
                     `\"caller\";q=<requests>;w=<seconds>` and/or `\"address\";q=…;w=…`",
                )
            });
        r.headers.entry("RateLimit".to_string()).or_insert_with(|| {
            string_header(
                "Where the counts stand: `\"<scope>\";r=<remaining>;t=<seconds until the window \
                 ends>` for each limit that applied to this request",
            )
        });
    }
}

fn retry_after_header() -> Header {
    let mut h = Header::new(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1.0)),
    );
    h.description = Some("Seconds to wait before trying again".to_string());
    h
}

/// Add what the shared layers can answer to one operation (see [`HonestResponses`]).
fn complete(path: &str, method: Method, op: &mut Operation) {
    let oauth2 = path.starts_with("/oauth2/");
    if limited_by_default(method, path) {
        mark_limited(op);
    }
    let params = op.parameters.get_or_insert_with(Vec::new);
    let idempotent = method == Method::Post && !oauth2 && !path.starts_with("/v1/auth/");
    if idempotent {
        params.retain(|p| !p.name.eq_ignore_ascii_case("Idempotency-Key"));
        params.push(idempotency_key());
    }
    for p in params.iter_mut() {
        if let Some(schema) = param_schema(path, &p.parameter_in, &p.name) {
            p.schema = Some(RefOr::T(schema));
        }
    }
    let if_match = params.iter().any(|p| p.name == "If-Match");
    let has_path_params = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let takes_input = !params.is_empty() || op.request_body.is_some();
    if params.is_empty() {
        op.parameters = None;
    }

    let responses = &mut op.responses.responses;
    for (status, r) in responses.iter_mut() {
        let RefOr::T(r) = r else { continue };
        // A declared `Problem` body is sent as problem+json; other JSON (the OAuth2 errors,
        // the readiness report) is what it says.
        let is_problem = r.content.get("application/json").is_some_and(
            |c| matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem")),
        );
        if is_problem {
            if let Some(content) = r.content.shift_remove("application/json") {
                r.content.insert(PROBLEM_JSON.to_string(), content);
            }
        }
        r.headers
            .entry("X-Request-Id".to_string())
            .or_insert_with(request_id_header);
        if status.starts_with('2') {
            // Single-resource reads and the writes that take `If-Match` answer with the
            // version to send back in it; an idempotent replay says so.
            if if_match || (method == Method::Get && has_path_params) {
                r.headers
                    .entry("ETag".to_string())
                    .or_insert_with(|| string_header("The resource's version, for `If-Match`"));
            }
            if idempotent {
                r.headers
                    .entry("Idempotent-Replayed".to_string())
                    .or_insert_with(|| {
                        string_header(
                            "`true` when this is the stored answer to an earlier request \
                             with the same `Idempotency-Key`",
                        )
                    });
            }
        }
        if status == "429" {
            r.headers
                .entry("Retry-After".to_string())
                .or_insert_with(retry_after_header);
        }
    }
    let mut add = |status: u16| {
        responses.entry(status.to_string()).or_insert_with(|| {
            if oauth2 && matches!(status, 413 | 503) {
                oauth2_error(status)
            } else {
                shared_ref(status)
            }
        });
    };
    add(413);
    add(500);
    if !oauth2 {
        add(401);
        // The policy on a secured operation; a quarantined API key on any.
        add(403);
    }
    if takes_input {
        add(400);
    }
    if has_path_params {
        add(404);
    }
    if if_match {
        add(412);
    }
    if idempotent {
        add(409);
        add(422);
    }
    if !NO_DEPENDENCY.contains(&path) {
        add(503);
    }
}

/// Whether the operation `method path` (a route template) declares a security requirement,
/// i.e. needs a caller (see [`crate::middleware::require_caller`]). Read from the document, so
/// the document and the server cannot disagree.
pub fn requires_caller(method: &axum::http::Method, path: &str) -> bool {
    static SECURED: LazyLock<HashSet<(String, String)>> = LazyLock::new(|| {
        let doc = document();
        let mut set = HashSet::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("GET", &item.get),
                ("PUT", &item.put),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            for (method, op) in ops {
                if op
                    .as_ref()
                    .and_then(|op| op.security.as_ref())
                    .is_some_and(|s| !s.is_empty())
                {
                    set.insert((method.to_string(), path.clone()));
                }
            }
        }
        set
    });
    SECURED.contains(&(method.as_str().to_string(), path.to_string()))
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document with every operation in `limited` (`(METHOD, route template)`, as the
/// configuration names them) declared rate-limited, beyond the built-in rules.
pub fn document_limited<'a>(
    limited: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> utoipa::openapi::OpenApi {
    let mut doc = document();
    for (method, path) in limited {
        let Some(item) = doc.paths.paths.get_mut(path) else {
            continue;
        };
        let op = match method {
            "GET" => item.get.as_mut(),
            "PUT" => item.put.as_mut(),
            "POST" => item.post.as_mut(),
            "DELETE" => item.delete.as_mut(),
            "PATCH" => item.patch.as_mut(),
            _ => None,
        };
        if let Some(op) = op {
            mark_limited(op);
        }
    }
    doc
}
