//! Cross-cutting request handling, implemented once: request ids, authentication, idempotency
//! keys and metrics.

use crate::client_ip::ClientIp;
use crate::extract::{ctx_from_parts, parse_if_match, read_body, RequestId, MAX_BODY_BYTES};
use crate::problem::{ApiError, LostRace, ProblemScope, PROBLEM_SCOPE};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use uos_service::{Caller, IdemOutcome, IdemTicket};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A client-sent request id is echoed if it is short and printable (it ends up in logs and
/// audit events); otherwise a new one is generated.
fn request_id_of(req: &Request) -> String {
    req.headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The OAuth2 endpoints speak OAuth2 (their own client authentication, error bodies, no
/// idempotency keys), not the rest of the API's conventions.
fn is_oauth2(path: &str) -> bool {
    path.starts_with("/oauth2/")
}

/// Outermost layer: request id (extension, task-local for error bodies, response header),
/// a tracing span, and an early 413 for declared oversized bodies.
///
/// Its state is only the public URL (for error `type` URIs): it runs on every request, and a
/// smaller state is cheaper to clone per request.
pub async fn request_context(
    State(public_url): State<Arc<str>>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = request_id_of(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = request_span(&req, &id);
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let header_id = id.clone();
    let oauth2 = is_oauth2(req.uri().path());
    // `*` still holds after another writer got in first (the resource exists), so only a list
    // of entity tags turns a lost race into 412.
    let if_match = matches!(
        parse_if_match(req.headers().get_all(header::IF_MATCH)),
        Some(uos_service::Precondition::OneOf(_))
    );
    let fut = async move {
        let mut res = if declared_len.is_some_and(|n| n > MAX_BODY_BYTES) {
            if oauth2 {
                crate::routes::oauth::body_too_large()
            } else {
                ApiError::payload_too_large().into_response()
            }
        } else {
            next.run(req).await
        };
        // A write that lost a race to another writer: with `If-Match`, the precondition no
        // longer holds (412, as for a stale ETag); without, a plain conflict (409).
        if if_match && res.extensions().get::<LostRace>().is_some() {
            res = ApiError::from(uos_service::ServiceError::PreconditionFailed).into_response();
        }
        tracing::debug!(status = res.status().as_u16(), "response");
        if uos_telemetry::exporting() {
            let span = tracing::Span::current();
            span.record("http.response.status_code", res.status().as_u16());
            if res.status().is_server_error() {
                span.record("otel.status_code", "error");
            }
        }
        if let Ok(v) = HeaderValue::from_str(&header_id) {
            res.headers_mut().insert(X_REQUEST_ID.clone(), v);
        }
        res
    };
    let scope = ProblemScope {
        request_id: id,
        public_url,
    };
    PROBLEM_SCOPE.scope(scope, fut.instrument(span)).await
}

/// The span of a request. When traces are exported it is also an OpenTelemetry server span
/// named by its route (`GET /v1/users/{id}`), the child of the caller's span when the request
/// carries a W3C `traceparent`; those fields stay out of the log otherwise.
fn request_span(req: &Request, id: &str) -> tracing::Span {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
    );
    if uos_telemetry::exporting() {
        // Routing ran before this layer, so the template is known (none for a 404).
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        span.record("otel.name", format!("{} {route}", req.method()));
        span.record("otel.kind", "server");
        span.record("http.route", route);
        let parent = req
            .headers()
            .get(uos_telemetry::TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        uos_telemetry::continue_trace(&span, parent);
    }
    span
}

/// Bound the requests the API works on at once; the rest wait their turn in arrival order and
/// are never refused for it. With thousands of connections sending at once, the runtime's
/// queue would otherwise hold thousands of ready requests, mostly answered from memory, and a
/// request holding one of the few pooled database connections would wait behind all of them
/// each time it is polled: the pool starves and its waiters time out (503). Held here, the
/// waiting requests are parked instead of queued, so a connection's holder runs promptly.
/// Probes and metrics pass, so they answer under any load; so do the authentication
/// endpoints, whose requests mostly wait for the password hasher's threads, not the runtime,
/// and must not keep other requests waiting.
pub async fn admit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if passes_admission(req.uri().path()) {
        return next.run(req).await;
    }
    // The semaphore is never closed; were it, requests would run unbounded, as before.
    let _permit = match state.in_progress.try_acquire() {
        Ok(permit) => Some(permit),
        Err(_) => {
            let _parked = Parked::enter(&state.waiting);
            state.in_progress.acquire().await.ok()
        }
    };
    next.run(req).await
}

/// One request counted among those waiting for a place
/// (`uos_http_admission_requests{state="waiting"}`), until it gets one or its client goes
/// away (the future is dropped either way).
struct Parked<'a>(&'a AtomicUsize);

impl<'a> Parked<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self(waiting)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn passes_admission(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/v1/auth/")
        || is_oauth2(path)
}

/// Resolve the client's address ([`ClientIp`], through the trusted proxies) and
/// `Authorization: Bearer` into a [`Caller`]. No header means anonymous (the policy decides
/// what anonymous may do); a bad one is a 401 right away.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Where the request comes from, first: OAuth2 clients are rate-limited and audited by it too.
    if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = state.trusted_proxies.client(peer.0.ip(), req.headers());
        req.extensions_mut().insert(ClientIp(client));
    }
    // The OAuth2 endpoints authenticate the client themselves (HTTP Basic or form fields).
    if is_oauth2(req.uri().path()) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let caller = match parts.headers.get(header::AUTHORIZATION) {
        None => Caller::Anonymous,
        Some(v) => {
            let token = v.to_str().ok().and_then(|s| {
                let (scheme, rest) = s.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
            let Some(token) = token else {
                return ApiError::from(uos_service::ServiceError::Unauthenticated).into_response();
            };
            match state
                .svc
                .authenticate(token, || ctx_from_parts(&parts))
                .await
            {
                Ok(c) => c,
                Err(e) => return ApiError::from(e).into_response(),
            }
        }
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// `Idempotency-Key` on POST: claim the key (per caller), replay a finished response, refuse
/// a different request or one still in flight. The handler's unit of work stores the response
/// in the same transaction as the change; a failed request releases the claim.
/// Authentication endpoints are excluded: their responses are credentials, never stored.
pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if req.method() != Method::POST || path.starts_with("/v1/auth/") || is_oauth2(path) {
        return next.run(req).await;
    }
    let Some(raw) = req.headers().get(&IDEMPOTENCY_KEY) else {
        return next.run(req).await;
    };
    let key = match raw.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            k.to_string()
        }
        _ => {
            return ApiError::field(
                "Idempotency-Key",
                "invalid",
                "must be 1 to 255 printable ASCII characters",
            )
            .into_response()
        }
    };
    let (parts, body) = req.into_parts();
    let bytes = match read_body(Request::from_parts(parts.clone(), body)).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update(b"\n");
    h.update(parts.uri.path());
    h.update(b"\n");
    h.update(&bytes);
    let request_hash = hex_lower(&h.finalize());
    let ctx = ctx_from_parts(&parts);
    let ticket: IdemTicket = match state.svc.claim_idempotency(&ctx, &key, &request_hash).await {
        Ok(IdemOutcome::Proceed(t)) => t,
        Ok(IdemOutcome::Replay { status, body }) => return replay(status, body),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(ticket.clone());
    let res = next.run(req).await;
    if !res.status().is_success() {
        if let Err(e) = state.svc.release_idempotency(&ticket).await {
            tracing::warn!(error = %e, "could not release idempotency claim; it expires on its own");
        }
    }
    res
}

fn replay(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut res = if status == StatusCode::NO_CONTENT || body.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    };
    res.headers_mut().insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    res
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The route layer in front of every handler (a route layer, so it knows the route template):
/// first an operation the OpenAPI document declares with a security requirement answers an
/// anonymous request 401 before it looks at anything else, so a client without credentials
/// learns that first, not what is wrong with its body or headers, and no idempotency key is
/// claimed for it; then [`idempotency`]. One layer for both, since it runs on every request.
pub async fn route_guard(state: State<AppState>, req: Request, next: Next) -> Response {
    let anonymous = matches!(
        req.extensions().get::<Caller>(),
        None | Some(Caller::Anonymous)
    );
    let secured = anonymous
        && req
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|p| crate::openapi::requires_caller(req.method(), p.as_str()));
    if secured {
        return ApiError::from(uos_service::ServiceError::Unauthenticated).into_response();
    }
    idempotency(state, req, next).await
}

/// Per-route counters and latency. Applied as a route layer, so the label is the route
/// template (`/v1/orgs/{slug}`), never a raw path with ids in it.
pub async fn metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Both clones are reference counts (MatchedPath holds an Arc<str>; standard methods are
    // inline): this layer runs on every request and should not allocate.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let start = Instant::now();
    let res = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let m = &state.metrics;
    m.latency
        .with_label_values(&[route, method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route, method.as_str(), res.status().as_str()])
        .inc();
    res
}
