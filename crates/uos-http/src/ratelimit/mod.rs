//! Rate limits on the risky operations (contract § Rate limits): per authenticated caller and
//! per client address, counted across replicas through the shared state, with the IETF
//! `RateLimit-Policy` / `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) on every
//! answer of a limited operation and 429 `rate_limited` with `Retry-After` over the limit.
//!
//! Rules are keyed by method and route template (axum's `MatchedPath`), so a rule for a route
//! that does not exist yet applies from the moment it is registered. How requests are counted
//! without a round trip per request, and the tolerance that buys, is [`lease`]'s business.

pub mod lease;

use crate::client_ip::ClientIp;
use crate::problem::ApiError;
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use lease::{Leases, Limit, Verdict};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use uos_service::SharedState;
use uos_service::{Caller, RateLimitConfig, RouteLimit};
use uuid::Uuid;

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Who a count is kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The authenticated principal: a user or a service account.
    Caller,
    /// The client address (the peer of the connection, as the lockout and audit see it).
    Address,
}

impl Scope {
    /// The policy name in the headers and the metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Caller => "caller",
            Scope::Address => "address",
        }
    }
}

/// A bucket: one rule, one scope, one caller or address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BucketKey {
    rule: usize,
    who: Who,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Caller(Uuid),
    Address(IpAddr),
}

impl Who {
    fn scope(self) -> Scope {
        match self {
            Who::Caller(_) => Scope::Caller,
            Who::Address(_) => Scope::Address,
        }
    }
}

/// A rule in force, with its header value ready.
#[derive(Debug)]
struct Rule {
    name: String,
    per_caller: Option<Limit>,
    per_address: Option<Limit>,
    /// `RateLimit-Policy` of this operation (same on every answer).
    policy: HeaderValue,
}

/// The rules and this replica's share of their counts.
#[derive(Debug)]
pub struct RateLimits {
    /// Route template → its limited methods, each with an index into `rules`. Keyed by the
    /// template alone so a lookup borrows the matched path instead of allocating: this runs
    /// on every request.
    routes: HashMap<String, Vec<(Method, usize)>>,
    rules: Vec<Rule>,
    leases: Arc<Leases<BucketKey>>,
}

impl RateLimits {
    /// The rules of `cfg` (none when switched off), counted in `shared`. `cfg` was validated
    /// with the rest of the configuration; a rule that still does not parse is left out and
    /// logged rather than failing the start.
    pub fn new(cfg: &RateLimitConfig, shared: Arc<dyn SharedState>) -> Self {
        let rules = cfg.rules().unwrap_or_else(|e| {
            tracing::error!(key = %e.key, why = %e.why, "rate limits: invalid configuration; none apply");
            Vec::new()
        });
        Self::from_rules(&rules, shared, Duration::from_millis(cfg.reserve_ms))
    }

    fn from_rules(rules: &[RouteLimit], shared: Arc<dyn SharedState>, reserve: Duration) -> Self {
        let mut routes = HashMap::new();
        let mut out = Vec::new();
        for r in rules {
            let Ok(method) = Method::from_bytes(r.method.as_bytes()) else {
                continue;
            };
            let window = Duration::from_secs(r.window_secs);
            let limit = |quota: u64| (quota > 0).then_some(Limit { quota, window });
            let (per_caller, per_address) = (limit(r.per_caller), limit(r.per_address));
            let policies: Vec<String> =
                [(Scope::Caller, per_caller), (Scope::Address, per_address)]
                    .into_iter()
                    .filter_map(|(scope, l)| {
                        l.map(|l| {
                            format!("\"{}\";q={};w={}", scope.as_str(), l.quota, r.window_secs)
                        })
                    })
                    .collect();
            // A rule with both limits at 0 limits nothing: the way to lift one built-in rule.
            let Ok(policy) = HeaderValue::from_str(&policies.join(", ")) else {
                continue;
            };
            if policies.is_empty() {
                continue;
            }
            routes
                .entry(r.route.clone())
                .or_insert_with(Vec::new)
                .push((method, out.len()));
            out.push(Rule {
                name: r.name.clone(),
                per_caller,
                per_address,
                policy,
            });
        }
        Self {
            routes,
            rules: out,
            leases: Arc::new(Leases::new(shared, reserve)),
        }
    }

    /// The operations limited, as `(METHOD, route template)`: the OpenAPI document declares
    /// their 429 and headers.
    pub fn operations(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes
            .iter()
            .flat_map(|(r, ms)| ms.iter().map(move |(m, _)| (m.as_str(), r.as_str())))
    }

    /// Reservations the shared state failed to answer (the requests were admitted).
    pub fn shared_failures(&self) -> u64 {
        self.leases.failures()
    }

    fn rule_of(&self, method: &Method, route: &str) -> Option<usize> {
        self.routes
            .get(route)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, i)| *i)
    }
}

/// The principal to count a request against: users and service accounts, never anonymous.
fn caller_id(caller: Option<&Caller>) -> Option<Uuid> {
    match caller? {
        Caller::User(u) => Some(u.user.id.0),
        Caller::Machine(m) => Some(m.account.id.0),
        Caller::Anonymous | Caller::System | Caller::Reconciler(_) => None,
    }
}

/// Where a count stands after a request: what the `RateLimit` header says of it.
struct Standing {
    scope: Scope,
    remaining: u64,
    reset: Duration,
}

/// Route layer: count the request in each scope its rule limits (caller first, then address:
/// a caller over its limit does not use up its address's allowance), refuse with 429 when one
/// is over, and put the headers on every answer.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limits = &state.rate_limits;
    let Some(route) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    let Some(index) = limits.rule_of(req.method(), route.as_str()) else {
        return next.run(req).await;
    };
    let rule = &limits.rules[index];
    let caller = caller_id(req.extensions().get::<Caller>()).map(Who::Caller);
    let address = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| Who::Address(c.0));
    let mut standings = Vec::with_capacity(2);
    for (who, limit) in [(caller, rule.per_caller), (address, rule.per_address)] {
        let (Some(who), Some(limit)) = (who, limit) else {
            continue;
        };
        let key = BucketKey { rule: index, who };
        let verdict = limits
            .leases
            .acquire(&key, limit, || shared_key(&rule.name, who, limit))
            .await;
        match verdict {
            Verdict::Allowed { remaining, reset } => standings.push(Standing {
                scope: who.scope(),
                remaining,
                reset,
            }),
            Verdict::Limited { reset } => {
                let scope = who.scope();
                state
                    .metrics
                    .rate_limited
                    .with_label_values(&[route.as_str(), req.method().as_str(), scope.as_str()])
                    .inc();
                standings.push(Standing {
                    scope,
                    remaining: 0,
                    reset,
                });
                let mut res = ApiError::rate_limited(scope.as_str(), secs(reset)).into_response();
                headers(&mut res, rule, &standings);
                return res;
            }
        }
    }
    let mut res = next.run(req).await;
    headers(&mut res, rule, &standings);
    res
}

/// The shared counter of a bucket: the rule, the scope and who, and the window length (so a
/// changed window starts new counters rather than inheriting a differently sized one).
fn shared_key(rule: &str, who: Who, limit: Limit) -> String {
    let w = limit.window.as_secs();
    match who {
        Who::Caller(id) => format!("ratelimit:{rule}:{w}:caller:{id}"),
        Who::Address(ip) => format!("ratelimit:{rule}:{w}:address:{ip}"),
    }
}

/// Whole seconds, rounded up: a client waiting that long finds the window over.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn headers(res: &mut Response, rule: &Rule, standings: &[Standing]) {
    let h = res.headers_mut();
    h.insert(RATELIMIT_POLICY.clone(), rule.policy.clone());
    if standings.is_empty() {
        return;
    }
    let value: Vec<String> = standings
        .iter()
        .map(|s| {
            format!(
                "\"{}\";r={};t={}",
                s.scope.as_str(),
                s.remaining,
                secs(s.reset)
            )
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&value.join(", ")) {
        h.insert(RATELIMIT.clone(), v);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn policies_are_structured_field_lists() {
        let rules = RateLimitConfig::default().rules().unwrap();
        let limits = RateLimits::from_rules(
            &rules,
            Arc::new(uos_shared::MemoryState::new()),
            Duration::from_millis(100),
        );
        let i = limits.rule_of(&Method::POST, "/v1/auth/login").unwrap();
        assert_eq!(limits.rules[i].policy, "\"address\";q=30;w=60");
        let i = limits
            .rule_of(&Method::POST, "/v1/orgs/{slug}/invites")
            .unwrap();
        assert_eq!(
            limits.rules[i].policy,
            "\"caller\";q=60;w=60, \"address\";q=120;w=60"
        );
        assert!(limits
            .rule_of(&Method::GET, "/v1/orgs/{slug}/invites")
            .is_none());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_secs(41)), 41);
        assert_eq!(secs(Duration::from_millis(41_200)), 42);
    }
}
