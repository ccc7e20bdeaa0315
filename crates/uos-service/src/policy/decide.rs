//! `POST /v1/policy/evaluate(-batch)`: resolve the principal, ask the policy
//! (`data.uos.pdp.decision`), check every budget that applies when the action has a cost, and
//! sign the answer. A batch runs each request through exactly the same steps.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use uos_audit::AuditAction;
use uos_authz::{Action, Capability, PdpInput, PdpPrincipal, PdpResource, ResourceKind};
use uos_domain::budget::MAX_LIMIT_CENTS;
use uos_domain::{ApiKeyId, BudgetKey, BudgetScope, Org, ServiceAccountId, UserId, UserStatus};
use uos_keys::KeyPurpose;
use uos_store::ReadTx;
use uuid::Uuid;

use crate::budgets::book::BudgetStatus;
use crate::kernel::access::expand_roles;
use crate::kernel::reads::LazyRead;
use crate::kernel::uow::UnitOfWork;
use crate::kernel::views::{BudgetView, DecisionReasonView, DecisionView};
use crate::machine::auth::narrowed;
use crate::machine::service_accounts::live_account;
use crate::orgs::cache::OrgRef;
use crate::{AuthMachine, Caller, Ctx, FieldError, Result, ServiceError, Services};

/// The reason code of a denial a budget caused (the metrics count these apart).
const BUDGET_EXCEEDED: &str = "budget_exceeded";

/// Most questions one batch may ask.
pub const MAX_DECISION_BATCH: usize = 100;

/// The longest action or resource type.
pub const NAME_MAX_CHARS: usize = 200;

/// Who a decision is about, as the caller names it.
#[derive(Clone, Debug)]
pub enum PrincipalRef {
    User(Uuid),
    ServiceAccount(Uuid),
    ApiKey(Uuid),
    /// An access token or an API key, checked as a bearer credential would be.
    Token(String),
}

/// One question to the decision point.
#[derive(Clone, Debug)]
pub struct DecisionRequest {
    pub principal: PrincipalRef,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    /// The org's slug or id.
    pub org: String,
    /// An object.
    pub attributes: serde_json::Value,
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// A principal the decision cannot be about, and why.
struct Unresolved {
    code: &'static str,
    message: &'static str,
}

const UNKNOWN: Unresolved = Unresolved {
    code: "principal_unknown",
    message: "no such principal in the org, or its credential is not valid",
};
const INACTIVE: Unresolved = Unresolved {
    code: "principal_inactive",
    message: "the principal exists but may not act (suspended, disabled, revoked or expired)",
};

impl Services {
    /// Answer one question.
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    pub async fn evaluate(&self, ctx: &Ctx, req: DecisionRequest) -> Result<DecisionView> {
        let mut out = self.evaluate_each(ctx, vec![req]).await?;
        out.pop()
            .ok_or_else(|| ServiceError::Internal("a decision went missing".into()))
    }

    /// Answer 1 to [`MAX_DECISION_BATCH`] questions, in order, each exactly as
    /// [`evaluate`](Self::evaluate) would.
    #[tracing::instrument(level = "debug", skip_all, fields(n = reqs.len()), err(level = "debug"))]
    pub async fn evaluate_batch(
        &self,
        ctx: &Ctx,
        reqs: Vec<DecisionRequest>,
    ) -> Result<Vec<DecisionView>> {
        if reqs.is_empty() || reqs.len() > MAX_DECISION_BATCH {
            return Err(ServiceError::field(
                "requests",
                "invalid",
                format!("give 1 to {MAX_DECISION_BATCH} requests"),
            ));
        }
        self.evaluate_each(ctx, reqs).await
    }

    /// The public keys that verify decisions (`GET /v1/policy/keys`): public, like a JWKS.
    pub fn policy_keys(&self, ctx: &Ctx) -> Result<Vec<uos_keys::PublicKey>> {
        let _public =
            self.inner
                .authorize(ctx, Action::PolicyKeys, uos_authz::Resource::default())?;
        Ok(self.inner.keys.public_keys(KeyPurpose::Decision))
    }

    async fn evaluate_each(
        &self,
        ctx: &Ctx,
        reqs: Vec<DecisionRequest>,
    ) -> Result<Vec<DecisionView>> {
        let costs = check_requests(&reqs)?;
        let inner = &*self.inner;
        // Credentials are checked before a store connection is held, and budgets after it is
        // given back: either may need a connection of its own (a cache miss), and a request
        // holding one while waiting for another can exhaust the pool under load.
        let mut credentials = Vec::with_capacity(reqs.len());
        for req in &reqs {
            credentials.push(match &req.principal {
                PrincipalRef::Token(token) => Some(self.authenticate(token, || ctx.clone()).await),
                _ => None,
            });
        }
        // The store is asked only for what misses the replica's copies (orgs here, the
        // credentials and budgets in their own caches): a decision about a cached org and
        // credential takes no connection at all.
        let mut r = LazyRead::new(&*inner.store);
        // The caller must hold `policy:evaluate` in each org it asks about.
        let mut orgs: HashMap<String, (Arc<Org>, Capability)> = HashMap::new();
        for req in &reqs {
            if !orgs.contains_key(&req.org) {
                let org = self.org_for_decision(&mut r, &req.org).await?;
                let cap = match inner.standing_without_store(ctx) {
                    Some(standing) => inner.authorize_with_standing(
                        ctx,
                        &org,
                        Action::PolicyEvaluate,
                        |res| res.kind = ResourceKind::Org,
                        standing,
                        &[],
                    )?,
                    None => {
                        inner
                            .authorize_in_org(
                                r.get().await?,
                                ctx,
                                &org,
                                Action::PolicyEvaluate,
                                |res| {
                                    res.kind = ResourceKind::Org;
                                },
                            )
                            .await?
                    }
                };
                orgs.insert(req.org.clone(), (org, cap));
            }
        }
        let mut principals = Vec::with_capacity(reqs.len());
        for (req, credential) in reqs.iter().zip(credentials) {
            let (org, _) = &orgs[&req.org];
            principals.push(
                self.resolve(&mut r, org, &req.principal, credential)
                    .await?,
            );
        }
        drop(r);
        let now = uos_domain::now();
        let mut decisions = Vec::with_capacity(reqs.len());
        let mut denials: Vec<(usize, serde_json::Value)> = Vec::new();
        for (i, ((req, cost), principal)) in reqs.iter().zip(costs).zip(principals).enumerate() {
            let (org, _) = &orgs[&req.org];
            let (decision, audit) = self.decide(req, org, principal, cost, now).await?;
            if let Some(changes) = audit {
                denials.push((i, changes));
            }
            decisions.push(decision);
        }
        let stats = &inner.policy;
        let denied = denials.len() as u64;
        stats.denied.fetch_add(denied, Ordering::Relaxed);
        let budget_denied = decisions
            .iter()
            .filter(|d| !d.allow && d.reasons.iter().any(|r| r.code == BUDGET_EXCEEDED))
            .count() as u64;
        stats
            .budget_denied
            .fetch_add(budget_denied, Ordering::Relaxed);
        stats
            .allowed
            .fetch_add(decisions.len() as u64 - denied, Ordering::Relaxed);
        self.audit_denials(ctx, &reqs, &orgs, &decisions, denials)
            .await?;
        Ok(decisions)
    }

    /// The org `raw` names (`NotFound` if none), by id or slug; a copy no older than the
    /// budget copies, so a lost invalidation delays a decision as little as a spend.
    async fn org_for_decision(&self, r: &mut LazyRead<'_>, raw: &str) -> Result<Arc<Org>> {
        let max_age = std::time::Duration::from_millis(self.inner.cfg.budget_cache_ms);
        self.inner.cached_org(r, &OrgRef::parse(raw), max_age).await
    }

    /// Who the request is about, placed in `org`; or why it cannot be. `credential` is what
    /// checking a token principal's credential gave.
    async fn resolve(
        &self,
        r: &mut LazyRead<'_>,
        org: &Org,
        principal: &PrincipalRef,
        credential: Option<Result<Caller>>,
    ) -> Result<std::result::Result<PdpPrincipal, Unresolved>> {
        match principal {
            PrincipalRef::Token(_) => {
                match credential.unwrap_or(Err(ServiceError::Unauthenticated)) {
                    Ok(Caller::User(u)) => {
                        self.user_principal(r.get().await?, org, u.user.clone())
                            .await
                    }
                    Ok(Caller::Machine(m)) => Ok(Ok(machine_principal(&m, org))),
                    Ok(Caller::Anonymous | Caller::System | Caller::Reconciler(_))
                    | Err(ServiceError::Unauthenticated) => Ok(Err(UNKNOWN)),
                    // A known key that may not act, like a revoked one named by id.
                    Err(ServiceError::Refused {
                        code: crate::Refusal::ApiKeyQuarantined,
                        ..
                    }) => Ok(Err(INACTIVE)),
                    Err(e) => Err(e),
                }
            }
            PrincipalRef::User(id) => {
                let r = r.get().await?;
                match r.get_user(UserId(*id)).await? {
                    None => Ok(Err(UNKNOWN)),
                    Some(user) => self.user_principal(r, org, user).await,
                }
            }
            PrincipalRef::ServiceAccount(id) => {
                let r = r.get().await?;
                let Some(sa) = live_account(r, org.id, ServiceAccountId(*id)).await? else {
                    return Ok(Err(UNKNOWN));
                };
                if !sa.is_usable() {
                    return Ok(Err(INACTIVE));
                }
                let (roles, perms) =
                    expand_roles(&mut LazyRead::over(&mut *r), org.id, &sa.roles).await?;
                Ok(Ok(account_principal(
                    &sa,
                    org,
                    roles.into_iter().collect(),
                    perms.into_iter().collect(),
                    Vec::new(),
                    None,
                )))
            }
            PrincipalRef::ApiKey(id) => {
                let r = r.get().await?;
                let Some(key) = r.get_api_key(org.id, ApiKeyId(*id)).await? else {
                    return Ok(Err(UNKNOWN));
                };
                let Some(sa) = live_account(r, org.id, key.service_account_id).await? else {
                    return Ok(Err(UNKNOWN));
                };
                if !sa.is_usable() || key.refusal(&sa.rotation, uos_domain::now()).is_some() {
                    return Ok(Err(INACTIVE));
                }
                let (roles, perms) =
                    expand_roles(&mut LazyRead::over(&mut *r), org.id, &sa.roles).await?;
                let scopes: Vec<String> =
                    key.scopes.iter().map(|p| p.as_str().to_owned()).collect();
                let permissions = narrowed(&perms, &scopes);
                Ok(Ok(account_principal(
                    &sa,
                    org,
                    roles.into_iter().collect(),
                    permissions,
                    scopes,
                    Some(key.id),
                )))
            }
        }
    }

    async fn user_principal(
        &self,
        r: &mut dyn ReadTx,
        org: &Org,
        user: uos_domain::User,
    ) -> Result<std::result::Result<PdpPrincipal, Unresolved>> {
        if user.status != UserStatus::Active {
            return Ok(Err(if user.status == UserStatus::Purged {
                UNKNOWN
            } else {
                INACTIVE
            }));
        }
        let membership = r.get_membership(org.id, user.id).await?;
        let (roles, permissions) = match &membership {
            Some(m) => {
                let (roles, perms) =
                    expand_roles(&mut LazyRead::over(&mut *r), org.id, &m.roles).await?;
                (roles.into_iter().collect(), perms.into_iter().collect())
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(Ok(PdpPrincipal {
            kind: "user",
            id: user.id.0,
            status: user.status.as_str().to_owned(),
            member: membership.is_some(),
            membership_status: membership.map(|m| m.status.as_str().to_owned()),
            roles,
            permissions,
            user_id: Some(user.id.0),
            service_account_id: None,
            api_key_id: None,
            scopes: Vec::new(),
        }))
    }

    /// The decision for one request, and the audit changes if it denies.
    async fn decide(
        &self,
        req: &DecisionRequest,
        org: &Org,
        principal: std::result::Result<PdpPrincipal, Unresolved>,
        cost: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<(DecisionView, Option<serde_json::Value>)> {
        let inner = &*self.inner;
        // One bundle answers and is named, whatever a reload does meanwhile.
        let policy = inner.authz.current();
        let mut reasons = Vec::new();
        let mut obligations = serde_json::Map::new();
        let mut who = serde_json::Value::Null;
        // The policy input as JSON text, once: the policy's memo and the signed allows are
        // both keyed by it.
        let mut asked = None;
        match principal {
            Err(why) => reasons.push(DecisionReasonView {
                code: why.code.to_owned(),
                policy: "uos.pdp.principal".to_owned(),
                message: why.message.to_owned(),
                budget: None,
            }),
            Ok(principal) => {
                who = serde_json::json!({"type": principal.kind, "id": principal.id});
                let resource = PdpResource {
                    kind: req.resource_type.clone(),
                    id: req.resource_id.clone(),
                    org_id: org.id.0,
                    org_status: org.status.as_str().to_owned(),
                    attributes: req.attributes.clone(),
                };
                let context = serde_json::Value::Object(req.context.clone());
                let input = PdpInput {
                    principal: &principal,
                    action: &req.action,
                    resource: &resource,
                    context: &context,
                };
                let text = serde_json::to_string(&input).map_err(internal)?;
                let verdict = policy.pdp_decide_text(text.clone());
                asked = Some(text);
                match verdict {
                    Ok(verdict) => {
                        if !verdict.allow {
                            reasons.extend(verdict.reasons.iter().map(|r| DecisionReasonView {
                                code: r.code.clone(),
                                policy: r.policy.clone(),
                                message: r.message.clone(),
                                budget: None,
                            }));
                        }
                        obligations.clone_from(&verdict.obligations);
                    }
                    Err(error) => {
                        tracing::error!(%error, "decision policy failed; denying");
                        reasons.push(DecisionReasonView {
                            code: "policy_error".to_owned(),
                            policy: "uos.pdp".to_owned(),
                            message: "the policy could not decide; denied".to_owned(),
                            budget: None,
                        });
                    }
                }
                if let Some(cost) = cost {
                    let (blocked, warnings) =
                        self.check_budgets(&principal, org, cost, now).await?;
                    reasons.extend(blocked);
                    if !warnings.is_empty() {
                        obligations.insert(
                            "budget_warning".to_owned(),
                            serde_json::to_value(warnings).map_err(internal)?,
                        );
                    }
                }
            }
        }
        let allow = reasons.is_empty();
        let key = inner.keys.signing_key(KeyPurpose::Decision);
        // Everything a fresh allow would say besides its id and times: when it is what an
        // allow signed within the second said, that one answers (see `reuse`).
        let reuse = match asked {
            Some(input) if allow => {
                let obligations = serde_json::to_string(&obligations).map_err(internal)?;
                let reuse = format!(
                    "{}\n{}\n{obligations}\n{input}",
                    policy.revision(),
                    key.key_id()
                );
                if let Some(view) = inner.signed_allows.get(&reuse) {
                    return Ok(((*view).clone(), None));
                }
                Some(reuse)
            }
            _ => None,
        };
        let issued_at = now;
        let mut view = DecisionView {
            decision_id: Uuid::now_v7(),
            allow,
            reasons,
            obligations,
            policy_revision: policy.revision().to_owned(),
            issued_at,
            expires_at: issued_at
                + Duration::seconds(i64::try_from(inner.cfg.decision_ttl_secs).unwrap_or(60)),
            key_id: key.key_id().to_owned(),
            signature: String::new(),
        };
        let mut signed = serde_json::to_value(&view).map_err(internal)?;
        if let Some(fields) = signed.as_object_mut() {
            fields.remove("signature");
        }
        view.signature = STANDARD.encode(key.sign(uos_audit::canonical_json(&signed).as_bytes()));
        if let Some(reuse) = reuse {
            inner.signed_allows.put(reuse, Arc::new(view.clone()));
        }
        let audit = (!allow).then(|| {
            serde_json::json!({
                "principal": who,
                "action": req.action,
                "resource": {"type": req.resource_type, "id": req.resource_id, "org_id": org.id},
                // As `rule` and not `code`: the audit trail redacts every `code` field (one-time
                // codes), which would hide why the decision denied.
                "reasons": view.reasons.iter().map(|r| serde_json::json!({
                    "rule": r.code,
                    "policy": r.policy,
                    "budget": r.budget.as_ref().map(|b| serde_json::json!({
                        "scope": b.scope,
                        "scope_id": b.scope_id,
                        "spent_cents": b.spent_cents,
                        "effective_limit_cents": b.effective_limit_cents,
                        "state": b.state,
                    })),
                })).collect::<Vec<_>>(),
                "policy_revision": view.policy_revision,
            })
        });
        Ok((view, audit))
    }

    /// Every budget that applies to `principal` in `org`: those `cost_cents` would take past
    /// their block threshold (or that are blocked already) as reasons, and those it leaves
    /// at `warn` as warnings.
    async fn check_budgets(
        &self,
        principal: &PdpPrincipal,
        org: &Org,
        cost: i64,
        now: DateTime<Utc>,
    ) -> Result<(Vec<DecisionReasonView>, Vec<BudgetView>)> {
        let key = |scope, scope_id| BudgetKey {
            org_id: org.id,
            scope,
            scope_id,
        };
        let mut keys = vec![key(BudgetScope::Org, org.id.0)];
        if let Some(sa) = principal.service_account_id.filter(|_| principal.member) {
            keys.push(key(BudgetScope::ServiceAccount, sa));
        }
        if let Some(user) = principal.user_id.filter(|_| principal.member) {
            keys.push(key(BudgetScope::Member, user));
        }
        let mut blocked = Vec::new();
        let mut warnings = Vec::new();
        for status in self
            .budget_statuses(&keys, now)
            .await?
            .into_iter()
            .flatten()
        {
            let limit = status.effective_limit_cents;
            if status.budget.refuses(status.spent_cents, cost, limit) {
                blocked.push(DecisionReasonView {
                    code: BUDGET_EXCEEDED.to_owned(),
                    policy: "uos.budget".to_owned(),
                    message: format!(
                        "the {} budget {}: {} of {} cents spent this period, {} more asked",
                        status.budget.key.scope,
                        if status.state() == uos_domain::BudgetState::Blocked {
                            "is blocked"
                        } else {
                            "would pass its block threshold"
                        },
                        status.spent_cents,
                        limit,
                        cost
                    ),
                    budget: Some(status.view()),
                });
            } else if status.after(cost).state() == uos_domain::BudgetState::Warn {
                warnings.push(status.view());
            }
        }
        Ok((blocked, warnings))
    }

    /// The status of each key's budget (`None`: it has none), from the replica's copies where
    /// fresh, the store otherwise.
    async fn budget_statuses(
        &self,
        keys: &[BudgetKey],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<Arc<BudgetStatus>>>> {
        let book = &self.inner.budgets;
        let mut out: Vec<Option<Option<Arc<BudgetStatus>>>> =
            keys.iter().map(|k| book.get(k, now)).collect();
        let missing: Vec<BudgetKey> = keys
            .iter()
            .zip(&out)
            .filter(|(_, hit)| hit.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            let ticket = book.ticket();
            let mut r = self.inner.store.read().await?;
            let budgets = r.get_budgets(&missing).await?;
            for (k, slot) in keys.iter().zip(out.iter_mut()) {
                if slot.is_some() {
                    continue;
                }
                let status = match budgets.iter().find(|b| b.key == *k) {
                    Some(b) => Some(Arc::new(BudgetStatus::read(&mut *r, b.clone(), now).await?)),
                    None => None,
                };
                book.put(ticket, *k, status.clone());
                *slot = Some(status);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Record each denial in its org's trail, one unit of work per org.
    async fn audit_denials(
        &self,
        ctx: &Ctx,
        reqs: &[DecisionRequest],
        orgs: &HashMap<String, (Arc<Org>, Capability)>,
        decisions: &[DecisionView],
        denials: Vec<(usize, serde_json::Value)>,
    ) -> Result<()> {
        let mut by_org: Vec<(&str, Vec<(usize, serde_json::Value)>)> = Vec::new();
        for (i, changes) in denials {
            let org = reqs[i].org.as_str();
            match by_org
                .iter_mut()
                .find(|(o, _)| orgs[*o].0.id == orgs[org].0.id)
            {
                Some((_, list)) => list.push((i, changes)),
                None => by_org.push((org, vec![(i, changes)])),
            }
        }
        for (org_ref, list) in by_org {
            let (org, cap) = &orgs[org_ref];
            let mut uow = UnitOfWork::begin(&self.inner, ctx).await?;
            for (i, changes) in list {
                uow.record(
                    AuditAction::PolicyDenied,
                    Some(org.id),
                    decisions[i].decision_id.to_string(),
                    serde_json::Value::Null,
                    changes,
                )
                .await?;
            }
            uow.commit_unanswered(cap).await?;
        }
        Ok(())
    }
}

/// A service account that authenticated with a credential, placed in `org`.
fn machine_principal(m: &AuthMachine, org: &Org) -> PdpPrincipal {
    let key = match &m.credential {
        crate::MachineCredential::ApiKey { id, .. } => Some(*id),
        crate::MachineCredential::ClientToken { .. } => None,
    };
    account_principal(
        &m.account,
        org,
        m.roles.clone(),
        m.permissions.clone(),
        m.scopes.clone(),
        key,
    )
}

/// A service account, or one of its keys when `key` is set, placed in `org`: a member only of
/// its own org, with no roles elsewhere.
fn account_principal(
    sa: &uos_domain::ServiceAccount,
    org: &Org,
    roles: Vec<String>,
    permissions: Vec<String>,
    scopes: Vec<String>,
    key: Option<ApiKeyId>,
) -> PdpPrincipal {
    let member = sa.org_id == org.id;
    PdpPrincipal {
        kind: if key.is_some() {
            "api_key"
        } else {
            "service_account"
        },
        id: key.map_or(sa.id.0, |k| k.0),
        status: sa.status.as_str().to_owned(),
        member,
        membership_status: member.then(|| "active".to_owned()),
        roles: if member { roles } else { Vec::new() },
        permissions: if member { permissions } else { Vec::new() },
        user_id: None,
        service_account_id: Some(sa.id.0),
        api_key_id: key.map(|k| k.0),
        scopes,
    }
}

/// The checks that need only the requests, every failure named; returns each request's
/// `context.cost_cents`.
fn check_requests(reqs: &[DecisionRequest]) -> Result<Vec<Option<i64>>> {
    let mut bad = Vec::new();
    let mut costs = Vec::with_capacity(reqs.len());
    for (i, req) in reqs.iter().enumerate() {
        let field = |name: &str| {
            if reqs.len() == 1 {
                name.to_owned()
            } else {
                format!("requests[{i}].{name}")
            }
        };
        for (name, value) in [
            ("action", &req.action),
            ("resource.type", &req.resource_type),
        ] {
            if value.is_empty()
                || value.chars().count() > NAME_MAX_CHARS
                || value.chars().any(char::is_control)
            {
                bad.push(FieldError::new(
                    field(name),
                    "invalid",
                    format!("1 to {NAME_MAX_CHARS} characters, no control characters"),
                ));
            }
        }
        if !req.attributes.is_object() {
            bad.push(FieldError::new(
                field("resource.attributes"),
                "invalid",
                "must be an object",
            ));
        }
        let cost = match req.context.get("cost_cents") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_i64().filter(|c| (0..=MAX_LIMIT_CENTS).contains(c)) {
                Some(c) => Some(c),
                None => {
                    bad.push(FieldError::new(
                        field("context.cost_cents"),
                        "invalid",
                        format!("must be a whole number of cents between 0 and {MAX_LIMIT_CENTS}"),
                    ));
                    None
                }
            },
        };
        costs.push(cost);
    }
    if bad.is_empty() {
        Ok(costs)
    } else {
        Err(ServiceError::Validation(bad))
    }
}

fn internal(e: serde_json::Error) -> ServiceError {
    ServiceError::Internal(format!("decision encode: {e}"))
}
