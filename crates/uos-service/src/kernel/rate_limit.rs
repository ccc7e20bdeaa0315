//! Rate-limit settings: which operations are limited, per caller and per client address, and
//! how hard. The HTTP layer enforces them (it knows the route a request matched); they live
//! here because both the configuration (`uos-app`, which validates them) and the HTTP layer
//! read them, and this crate is the one both already depend on.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[rate_limit]`: limits on the contract's risky operations, shared by every replica.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Switch every rate limit off (`UOS_RATE_LIMIT__ENABLED=false`). The login lockout
    /// (`service.lockout`) is separate and stays on.
    pub enabled: bool,
    /// How much of its own traffic a replica reserves ahead from the shared counter, in
    /// milliseconds (`UOS_RATE_LIMIT__RESERVE_MS`): larger means fewer Redis round trips on
    /// busy routes and a wider tolerance (see docs/rate-limits.md).
    pub reserve_ms: u64,
    /// Per-rule overrides and additional rules by name (`[rate_limit.routes.<name>]`,
    /// `UOS_RATE_LIMIT__ROUTES__<NAME>__PER_ADDRESS=…`). A built-in name ([`DEFAULT_RULES`])
    /// changes only the fields given; a new name limits another operation and needs `route`
    /// and `window_secs`.
    pub routes: BTreeMap<String, RouteLimitSettings>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            reserve_ms: 100,
            routes: BTreeMap::new(),
        }
    }
}

/// One rule as configured: every field optional, so an override names only what it changes.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitSettings {
    /// `METHOD /route/{template}`, as the router declares it (`POST /v1/orgs/{slug}/invites`).
    pub route: Option<String>,
    /// Requests per window per authenticated caller (user or service account); 0: none.
    pub per_caller: Option<u64>,
    /// Requests per window per client address; 0: none.
    pub per_address: Option<u64>,
    /// The fixed window the counts run in, seconds (1 to 86400).
    pub window_secs: Option<u64>,
}

/// A rule in force: an operation and its limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteLimit {
    /// The rule's name: metrics and logs use the route, people use this.
    pub name: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// The route template as the router matches it.
    pub route: String,
    /// Requests per window per caller; 0: callers are not limited.
    pub per_caller: u64,
    /// Requests per window per client address; 0: addresses are not limited.
    pub per_address: u64,
    pub window_secs: u64,
}

/// The built-in rules: the contract's risky operations (name, route, per caller, per address,
/// window). Tight where a person or a guesser is at the other end (login, password reset
/// mail); generous where gateways call on every request of theirs (policy decisions, usage),
/// so that only a runaway client meets the limit. `POST /v1/policy/*` and `/v1/usage*` are
/// limited as soon as those routes exist.
pub const DEFAULT_RULES: &[(&str, &str, u64, u64, u64)] = &[
    ("login", "POST /v1/auth/login", 0, 30, 60),
    (
        "password_forgot",
        "POST /v1/auth/password/forgot",
        0,
        10,
        60,
    ),
    ("invite_create", "POST /v1/orgs/{slug}/invites", 60, 120, 60),
    (
        "api_key_create",
        "POST /v1/orgs/{slug}/service-accounts/{id}/api-keys",
        30,
        60,
        60,
    ),
    (
        "policy_evaluate",
        "POST /v1/policy/evaluate",
        600_000,
        1_200_000,
        60,
    ),
    (
        "policy_evaluate_batch",
        "POST /v1/policy/evaluate-batch",
        60_000,
        120_000,
        60,
    ),
    ("usage", "POST /v1/usage", 600_000, 1_200_000, 60),
    ("usage_batch", "POST /v1/usage/batch", 60_000, 120_000, 60),
];

/// Methods a rule may name (the ones the router serves).
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The longest window: counters are short-lived shared state, not quotas over days.
pub const MAX_WINDOW_SECS: u64 = 86_400;

/// A setting that cannot work, with the key that names it (`rate_limit.routes.login.route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfigError {
    pub key: String,
    pub why: String,
}

impl RateLimitConfig {
    /// The rules in force: the built-in ones with their overrides, then the added ones, in
    /// name order. Empty when rate limiting is off.
    pub fn rules(&self) -> Result<Vec<RouteLimit>, RateLimitConfigError> {
        let bad = |key: String, why: &str| RateLimitConfigError {
            key,
            why: why.to_string(),
        };
        if !(10..=10_000).contains(&self.reserve_ms) {
            return Err(bad(
                "rate_limit.reserve_ms".into(),
                "must be between 10 and 10000",
            ));
        }
        let mut rules: BTreeMap<String, RouteLimit> = DEFAULT_RULES
            .iter()
            .map(|&(name, route, per_caller, per_address, window_secs)| {
                let (method, route) = route.split_once(' ').unwrap_or(("POST", route));
                let rule = RouteLimit {
                    name: name.to_string(),
                    method: method.to_string(),
                    route: route.to_string(),
                    per_caller,
                    per_address,
                    window_secs,
                };
                (name.to_string(), rule)
            })
            .collect();
        for (name, s) in &self.routes {
            let key = |field: &str| format!("rate_limit.routes.{name}.{field}");
            let valid_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid_name {
                return Err(bad(
                    format!("rate_limit.routes.{name}"),
                    "a rule name is 1 to 64 of a-z, 0-9 and '_'",
                ));
            }
            let route = match &s.route {
                Some(r) => Some(parse_route(r).ok_or_else(|| {
                    bad(
                        key("route"),
                        "must be a method and a route template, like \"POST /v1/orgs/{slug}/invites\"",
                    )
                })?),
                None => None,
            };
            let rule =
                match (rules.get_mut(name), route) {
                    (Some(rule), route) => {
                        if let Some((method, route)) = route {
                            rule.method = method;
                            rule.route = route;
                        }
                        rule
                    }
                    (None, Some((method, route))) => {
                        let window_secs = s.window_secs.ok_or_else(|| {
                            bad(key("window_secs"), "is required for a rule of one's own")
                        })?;
                        rules.entry(name.clone()).or_insert(RouteLimit {
                            name: name.clone(),
                            method,
                            route,
                            per_caller: 0,
                            per_address: 0,
                            window_secs,
                        })
                    }
                    (None, None) => return Err(bad(
                        key("route"),
                        "is required: the name is not a built-in rule (login, password_forgot, \
                         invite_create, api_key_create, policy_evaluate, policy_evaluate_batch, \
                         usage, usage_batch)",
                    )),
                };
            if let Some(n) = s.per_caller {
                rule.per_caller = n;
            }
            if let Some(n) = s.per_address {
                rule.per_address = n;
            }
            if let Some(w) = s.window_secs {
                rule.window_secs = w;
            }
            if !(1..=MAX_WINDOW_SECS).contains(&rule.window_secs) {
                return Err(bad(key("window_secs"), "must be between 1 and 86400"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for rule in rules.values() {
            if !seen.insert((rule.method.as_str(), rule.route.as_str())) {
                return Err(bad(
                    format!("rate_limit.routes.{}.route", rule.name),
                    "another rule limits the same operation",
                ));
            }
        }
        if !self.enabled {
            return Ok(Vec::new());
        }
        Ok(rules.into_values().collect())
    }
}

/// `METHOD /path/{param}` → (method, route); `None` unless it looks like a route the router
/// could declare.
fn parse_route(s: &str) -> Option<(String, String)> {
    let (method, route) = s.trim().split_once(' ')?;
    let method = method.to_ascii_uppercase();
    let route = route.trim();
    let valid = METHODS.contains(&method.as_str())
        && route.starts_with('/')
        && route.len() <= 256
        && route
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#'));
    valid.then(|| (method, route.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(
        routes: &[(&str, RouteLimitSettings)],
    ) -> Result<Vec<RouteLimit>, RateLimitConfigError> {
        RateLimitConfig {
            routes: routes
                .iter()
                .map(|(n, s)| ((*n).to_string(), s.clone()))
                .collect(),
            ..RateLimitConfig::default()
        }
        .rules()
    }

    #[test]
    fn defaults_cover_the_contracts_risky_operations() {
        let rules = with(&[]).unwrap();
        let ops: Vec<_> = rules
            .iter()
            .map(|r| format!("{} {}", r.method, r.route))
            .collect();
        for op in [
            "POST /v1/auth/login",
            "POST /v1/auth/password/forgot",
            "POST /v1/orgs/{slug}/invites",
            "POST /v1/orgs/{slug}/service-accounts/{id}/api-keys",
            "POST /v1/policy/evaluate",
            "POST /v1/policy/evaluate-batch",
            "POST /v1/usage",
            "POST /v1/usage/batch",
        ] {
            assert!(
                ops.contains(&op.to_string()),
                "{op} is not limited: {ops:?}"
            );
        }
        let login = rules.iter().find(|r| r.name == "login").unwrap();
        assert_eq!((login.per_caller, login.per_address), (0, 30));
    }

    #[test]
    fn an_override_changes_only_what_it_names() {
        let rules = with(&[(
            "login",
            RouteLimitSettings {
                per_address: Some(5),
                ..Default::default()
            },
        )])
        .unwrap();
        let login = rules.iter().find(|r| r.name == "login").unwrap();
        assert_eq!(
            (login.route.as_str(), login.per_address, login.window_secs),
            ("/v1/auth/login", 5, 60)
        );
    }

    #[test]
    fn a_rule_of_ones_own_limits_another_route() {
        let rules = with(&[(
            "me",
            RouteLimitSettings {
                route: Some("get /v1/me".into()),
                per_caller: Some(100),
                window_secs: Some(10),
                ..Default::default()
            },
        )])
        .unwrap();
        let me = rules.iter().find(|r| r.name == "me").unwrap();
        assert_eq!(
            (me.method.as_str(), me.per_caller, me.per_address),
            ("GET", 100, 0)
        );
    }

    #[test]
    fn switched_off_means_no_rules() {
        let cfg = RateLimitConfig {
            enabled: false,
            ..RateLimitConfig::default()
        };
        assert_eq!(cfg.rules().unwrap(), Vec::new());
    }

    #[test]
    fn bad_rules_name_their_key() {
        let route = |r: &str| RouteLimitSettings {
            route: Some(r.into()),
            window_secs: Some(60),
            ..Default::default()
        };
        for (name, s, key) in [
            (
                "nope",
                RouteLimitSettings::default(),
                "rate_limit.routes.nope.route",
            ),
            ("x", route("/v1/me"), "rate_limit.routes.x.route"),
            ("x", route("FETCH /v1/me"), "rate_limit.routes.x.route"),
            ("x", route("GET v1/me"), "rate_limit.routes.x.route"),
            (
                "x",
                route("POST /v1/auth/login"),
                "rate_limit.routes.x.route",
            ),
            (
                "x",
                RouteLimitSettings {
                    route: Some("GET /v1/me".into()),
                    ..Default::default()
                },
                "rate_limit.routes.x.window_secs",
            ),
            (
                "login",
                RouteLimitSettings {
                    window_secs: Some(0),
                    ..Default::default()
                },
                "rate_limit.routes.login.window_secs",
            ),
            (
                "Bad-Name",
                route("GET /v1/me"),
                "rate_limit.routes.Bad-Name",
            ),
        ] {
            let err = with(&[(name, s)]).unwrap_err();
            assert_eq!(err.key, key, "{err:?}");
        }
        let err = RateLimitConfig {
            reserve_ms: 0,
            ..RateLimitConfig::default()
        }
        .rules()
        .unwrap_err();
        assert_eq!(err.key, "rate_limit.reserve_ms");
    }
}
