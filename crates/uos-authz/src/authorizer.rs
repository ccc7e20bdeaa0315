//! The Rego engine wrapper: loads and checks a policy bundle, then answers each question on a
//! copy of the prepared engine, failing closed when the policy misbehaves. The loaded bundle
//! can be replaced while the service runs (a reload); each decision is made, and named, by the
//! one bundle that was current when it started.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bundle::{BundleFiles, BundleInfo, BundleSource};
use crate::pdp::{self, PdpInput, PdpVerdict};
use crate::{
    Action, AuthzError, Capability, Denied, OrgContext, Principal, Resource, ResourceKind,
};

/// The rule every policy set must define.
pub const DECISION_RULE: &str = "data.uos.authz.decision";

/// The rule name a caller that is not a member of the resource's org gets; mapped to
/// [`Denied::NotFound`] so org existence does not leak.
const NOT_MEMBER: &str = "not_member";

/// The rule name reported when the policy could not be evaluated.
const POLICY_ERROR: &str = "policy_error";

/// The raw outcome of the policy: allowed or not, and which rule said so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub rule: String,
}

/// The policy decision point. Cheap to clone: clones share the current bundle, so a reload
/// through any of them is seen by all. Evaluation takes `&self`.
#[derive(Clone, Debug)]
pub struct Authorizer {
    source: Arc<BundleSource>,
    // The lock is held only to clone or replace the `Arc`, never during an evaluation: a
    // reload waits for no decision and a decision waits for no reload (only for a pointer
    // swap).
    current: Arc<RwLock<Arc<LoadedBundle>>>,
    stats: Arc<ReloadStats>,
}

/// Reloads so far, for the metrics.
#[derive(Debug, Default)]
struct ReloadStats {
    replaced: AtomicU64,
    refused: AtomicU64,
}

/// One compiled, tested bundle and the decisions it made. Decisions are remembered here and
/// not in the [`Authorizer`], so they are dropped with the bundle that made them.
#[derive(Debug)]
pub struct LoadedBundle {
    engines: Engines,
    // Decisions by their exact input. A bundle never changes and a decision is a pure
    // function of policy and input, so a repeated question (the same caller doing the same
    // thing) need not run the evaluator again (~50 µs).
    memo: Memo<Decision>,
    // The same for the decision point's questions, whose inputs come from other services.
    pdp_memo: Memo<Arc<PdpVerdict>>,
    info: BundleInfo,
    rego_tests: usize,
}

/// The prepared engine (policies parsed, analysed and scheduled) and the copies that evaluate.
/// A copy is a clone, which shares the reference-counted policy state instead of parsing it
/// again. regorus resets an engine's evaluation state at every evaluation, but a fresh clone
/// first builds what it evaluates in (its own copies of the shared tables, the loop-variable
/// table): a third of the evaluation's time when measured on `pdp.rego` alone, 5 to 15 % of
/// a whole new decision. So a copy that has answered is kept for the next question instead of
/// dropped.
#[derive(Debug)]
struct Engines {
    template: Engine,
    idle: Mutex<Vec<Engine>>,
}

/// More idle copies than this are dropped. As many are needed as threads evaluate at once:
/// the runtime's workers and the blocking threads of batches.
const IDLE_ENGINES_MAX: usize = 64;

impl Engines {
    fn new(template: Engine) -> Self {
        Self {
            template,
            idle: Mutex::default(),
        }
    }

    /// `evaluate` on a copy of the template that no other evaluation is using. A copy whose
    /// evaluation panicked is dropped with the unwinding, never handed out again.
    fn with<T>(&self, evaluate: impl FnOnce(&mut Engine) -> T) -> T {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut engine = idle.unwrap_or_else(|| self.template.clone());
        let answer = evaluate(&mut engine);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_ENGINES_MAX {
            idle.push(engine);
        }
        answer
    }
}

/// More remembered decisions than this and the memo starts over: inputs carry ids, so
/// their number is unbounded, and a miss only costs one evaluation.
const MEMO_MAX: usize = 20_000;

/// Answers by the exact JSON text of their input.
#[derive(Debug)]
struct Memo<V>(RwLock<HashMap<String, V>>);

impl<V> Default for Memo<V> {
    fn default() -> Self {
        Self(RwLock::default())
    }
}

impl<V: Clone> Memo<V> {
    /// The answer remembered for `key`, or `answer(key)` remembered.
    fn get_or_try(
        &self,
        key: String,
        answer: impl FnOnce(&str) -> Result<V, AuthzError>,
    ) -> Result<V, AuthzError> {
        if let Some(v) = self.0.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(v.clone());
        }
        let v = answer(&key)?;
        let mut memo = self.0.write().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert(key, v.clone());
        Ok(v)
    }
}

/// The `input` document; built once per evaluation.
#[derive(Serialize)]
struct Input<'a> {
    principal: &'a Principal,
    action: Action,
    resource: &'a Resource,
}

/// What a reload did.
#[derive(Clone, Debug)]
pub enum Reloaded {
    /// The source holds the running revision; nothing was compiled or replaced.
    Unchanged(Arc<LoadedBundle>),
    /// A new bundle replaced `previous`.
    Replaced {
        previous: Arc<LoadedBundle>,
        current: Arc<LoadedBundle>,
    },
}

impl Authorizer {
    /// Builds the authorizer from the policies compiled into the binary.
    pub fn new() -> Result<Self, AuthzError> {
        Self::from_source(BundleSource::Embedded)
    }

    /// Builds the authorizer from every `*.rego` file directly inside `dir`, for operators who
    /// ship their own policies. The same checks apply as for the embedded ones.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, AuthzError> {
        Self::from_source(BundleSource::Dir(dir.as_ref().to_path_buf()))
    }

    /// Builds the authorizer from the bundle at `source`, which later reloads read again.
    pub fn from_source(source: BundleSource) -> Result<Self, AuthzError> {
        let bundle = LoadedBundle::load(BundleFiles::read(&source)?)?;
        Ok(Self {
            source: Arc::new(source),
            current: Arc::new(RwLock::new(Arc::new(bundle))),
            stats: Arc::default(),
        })
    }

    /// Where this authorizer's bundles come from.
    pub fn source(&self) -> &BundleSource {
        &self.source
    }

    /// The bundle deciding now. Hold it for the length of one decision (or batch) so that what
    /// decided and the revision reported with it agree, whatever a reload does meanwhile.
    pub fn current(&self) -> Arc<LoadedBundle> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The content hash of the current bundle, hex: the `policy_revision` of decisions.
    pub fn revision(&self) -> String {
        self.current().info.revision.clone()
    }

    /// The revision of what the source holds now (read, not compiled): differs from
    /// [`revision`](Self::revision) when a reload would find something new.
    pub fn source_revision(&self) -> Result<String, AuthzError> {
        Ok(BundleFiles::read(&self.source)?.revision)
    }

    /// Reads the source and, if it holds another revision, compiles it and runs its Rego tests
    /// and self-checks, without installing it: `None` when the running revision is what the
    /// source holds. A refusal is counted.
    pub fn stage(&self) -> Result<Option<LoadedBundle>, AuthzError> {
        let staged = BundleFiles::read(&self.source).and_then(|files| {
            if files.revision == self.current().info.revision {
                return Ok(None);
            }
            LoadedBundle::load(files).map(Some)
        });
        if staged.is_err() {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
        }
        staged
    }

    /// Makes `bundle` current; evaluations already running finish on the one it replaces,
    /// which is returned. Callers serialize reloads (stage, then install).
    pub fn install(&self, bundle: LoadedBundle) -> Arc<LoadedBundle> {
        let bundle = Arc::new(bundle);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        self.stats.replaced.fetch_add(1, Ordering::Relaxed);
        std::mem::replace(&mut *current, bundle)
    }

    /// [`stage`](Self::stage) and [`install`](Self::install) in one, for callers with nothing
    /// to do in between. A refused bundle leaves the running one in place.
    pub fn reload(&self) -> Result<Reloaded, AuthzError> {
        Ok(match self.stage()? {
            None => Reloaded::Unchanged(self.current()),
            Some(bundle) => {
                let previous = self.install(bundle);
                Reloaded::Replaced {
                    previous,
                    current: self.current(),
                }
            }
        })
    }

    /// Bundles installed by a reload, and bundles refused, since start-up.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.stats.replaced.load(Ordering::Relaxed),
            self.stats.refused.load(Ordering::Relaxed),
        )
    }

    /// The decision point's answer for `input` from the current bundle; see
    /// [`LoadedBundle::pdp_decide`].
    pub fn pdp_decide(&self, input: &PdpInput<'_>) -> Result<Arc<PdpVerdict>, AuthzError> {
        self.current().pdp_decide(input)
    }

    /// Asks the current bundle and returns its raw decision. Errors mean the policy could not
    /// decide.
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<Decision, AuthzError> {
        self.current().decide(principal, action, resource)
    }

    /// The check every endpoint makes: a [`Capability`] on allow, otherwise why not. A policy
    /// that cannot be evaluated denies (fail closed) and is logged.
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<Capability, Denied> {
        match self.decide(principal, action, resource) {
            Ok(Decision { allow: true, rule }) => {
                tracing::debug!(%action, %rule, "authorization allowed");
                Ok(Capability::new(action, principal.id, resource.org_id, rule))
            }
            Ok(Decision { allow: false, rule }) => {
                tracing::debug!(%action, %rule, "authorization denied");
                if rule == NOT_MEMBER {
                    Err(Denied::NotFound)
                } else {
                    Err(Denied::Forbidden { rule })
                }
            }
            Err(error) => {
                tracing::error!(%action, %error, "authorization policy failed; denying");
                Err(Denied::Forbidden {
                    rule: POLICY_ERROR.to_owned(),
                })
            }
        }
    }

    /// A capability for work the service does on its own behalf at start-up (bootstrapping
    /// the first platform admin), where no request and no principal exist. It is recorded
    /// with the rule `system` so audit readers can tell it apart; no request path calls it.
    pub fn system_task(&self, action: Action) -> Capability {
        Capability::new(action, None, None, "system".to_owned())
    }

    /// [`system_task`](Self::system_task) confined to one org: for work the service does on
    /// its own behalf for a trusted internal source that names the org (usage consumed from
    /// the billing stream). Unlike a request's capability it is not the answer of a policy
    /// check, but it covers changes in `org_id` only, like one.
    pub fn system_task_in_org(&self, action: Action, org_id: Uuid) -> Capability {
        Capability::new(action, None, Some(org_id), "system".to_owned())
    }

    /// Evaluates any rule of the loaded policies, as JSON; for tests and diagnostics.
    #[cfg(test)]
    fn eval_json(&self, rule: &str) -> Result<serde_json::Value, AuthzError> {
        let value = self
            .current()
            .engines
            .template
            .clone()
            .eval_rule(rule.to_owned())
            .map_err(|e| AuthzError::Evaluation(format!("{e:#}")))?;
        Ok(serde_json::to_value(&value)?)
    }
}

impl LoadedBundle {
    /// Compiles `files`, runs their Rego tests, and checks that both decision rules answer
    /// well-formed decisions: a bundle that fails any of it is refused.
    fn load(files: BundleFiles) -> Result<Self, AuthzError> {
        let mut engine = Engine::new();
        for (name, text) in &files.files {
            engine
                .add_policy(name.clone(), text.clone())
                .map_err(|e| AuthzError::invalid(name, &format!("{e:#}")))?;
        }
        // regorus analyses the modules together at the first evaluation: a trivial query
        // surfaces every compile error (unknown names, unsafe variables) here, with its
        // position, before any test or check could mistake it for its own failure.
        engine
            .eval_query("true".to_owned(), false)
            .map_err(|e| AuthzError::invalid(DECISION_RULE, &format!("{e:#}")))?;
        let rego_tests = crate::rego_tests::run(&mut engine, &files.files)?;
        self_check(&mut engine)?;
        pdp::self_check(&mut engine)?;
        // The input of the last check is not meant to linger in the template every clone
        // starts from.
        engine.set_input(Value::new_object());
        Ok(Self {
            engines: Engines::new(engine),
            memo: Memo::default(),
            pdp_memo: Memo::default(),
            info: BundleInfo {
                modules: files.modules(),
                revision: files.revision,
                loaded_at: SystemTime::now(),
            },
            rego_tests,
        })
    }

    /// The content hash of this bundle, hex: the `policy_revision` of its decisions.
    pub fn revision(&self) -> &str {
        &self.info.revision
    }

    /// Revision, load time and files.
    pub fn info(&self) -> &BundleInfo {
        &self.info
    }

    /// How many Rego tests the bundle passed when it was loaded.
    pub fn rego_tests(&self) -> usize {
        self.rego_tests
    }

    /// The decision point's answer (`data.uos.pdp.decision`) for `input`, remembered by the
    /// input: the bundle never changes, so the same question gets the same answer. Errors mean
    /// the policy could not decide.
    pub fn pdp_decide(&self, input: &PdpInput<'_>) -> Result<Arc<PdpVerdict>, AuthzError> {
        self.pdp_decide_text(serde_json::to_string(input)?)
    }

    /// [`pdp_decide`](Self::pdp_decide) for a caller that has the input's JSON text already
    /// (`serde_json::to_string` of a [`PdpInput`]) and keys something of its own by it.
    pub fn pdp_decide_text(&self, input: String) -> Result<Arc<PdpVerdict>, AuthzError> {
        self.pdp_memo.get_or_try(input, |key| {
            Ok(Arc::new(self.engines.with(|e| pdp::evaluate(e, key))?))
        })
    }

    /// Asks the policy and returns its raw decision. Errors mean the policy could not decide.
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
    ) -> Result<Decision, AuthzError> {
        let key = serde_json::to_string(&Input {
            principal,
            action,
            resource,
        })?;
        self.memo.get_or_try(key, |_| {
            self.engines
                .with(|e| evaluate(e, principal, action, resource))
        })
    }
}

/// Fails loudly at startup rather than on the first request: the decision rule must exist
/// and yield a well-formed decision for every action, for both kinds of principal. The
/// first evaluation also prepares the engine (analysis, scheduling), which the stored copy
/// keeps, so later clones start ready.
fn self_check(engine: &mut Engine) -> Result<(), AuthzError> {
    let org_id = Uuid::nil();
    let member = Principal {
        org: Some(OrgContext {
            org_id,
            membership_status: "active".to_owned(),
            roles: vec!["member".to_owned()],
            permissions: Vec::new(),
        }),
        ..Principal::user(Uuid::nil(), "active")
    };
    let resource = Resource {
        kind: ResourceKind::Org,
        org_id: Some(org_id),
        org_status: Some("active".to_owned()),
        ..Resource::default()
    };
    for principal in [&Principal::anonymous(), &member] {
        for &action in Action::ALL {
            evaluate(engine, principal, action, &resource).map_err(|e| match e {
                AuthzError::Evaluation(msg) => {
                    AuthzError::invalid(DECISION_RULE, &format!("{action}: {msg}"))
                }
                other => other,
            })?;
        }
    }
    Ok(())
}

fn evaluate(
    engine: &mut Engine,
    principal: &Principal,
    action: Action,
    resource: &Resource,
) -> Result<Decision, AuthzError> {
    let input = serde_json::to_value(Input {
        principal,
        action,
        resource,
    })?;
    engine.set_input(Value::from(input));
    let value = engine
        .eval_rule(DECISION_RULE.to_owned())
        .map_err(|e| AuthzError::Evaluation(format!("{e:#}")))?;
    if value == Value::Undefined {
        return Err(AuthzError::MalformedDecision(
            "decision is undefined (a `default decision` is missing)".to_owned(),
        ));
    }
    let json = serde_json::to_value(&value)?;
    serde_json::from_value(json.clone())
        .map_err(|e| AuthzError::MalformedDecision(format!("{e}: got {json}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::PERMISSIONS;

    #[test]
    fn policy_catalogue_matches_rust() {
        let authz = Authorizer::new().unwrap();
        let in_policy = authz.eval_json("data.uos.authz.permissions").unwrap();
        assert_eq!(in_policy, serde_json::json!(PERMISSIONS));
    }

    #[test]
    fn every_required_permission_is_in_the_catalogue() {
        let authz = Authorizer::new().unwrap();
        let table = authz.eval_json("data.uos.authz.action_permission").unwrap();
        let table = table.as_object().unwrap();
        for (action, perm) in table {
            assert!(action.parse::<Action>().is_ok(), "unknown action {action}");
            let perm = perm.as_str().unwrap();
            assert!(PERMISSIONS.contains(&perm), "{action} needs unknown {perm}");
        }
    }

    /// An active member of the nil org with `roles` granting `permissions`.
    fn member(roles: &[&str], permissions: &[&str]) -> Principal {
        Principal {
            org: Some(OrgContext {
                org_id: Uuid::nil(),
                membership_status: "active".to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            }),
            ..Principal::user(Uuid::nil(), "active")
        }
    }

    /// The nil org, active.
    fn org() -> Resource {
        Resource {
            kind: ResourceKind::Org,
            org_id: Some(Uuid::nil()),
            org_status: Some("active".to_owned()),
            ..Resource::default()
        }
    }

    #[test]
    fn remembered_decisions_equal_evaluated_ones() {
        let authz = Authorizer::new().unwrap();
        let (member, resource) = (member(&["viewer"], &["org:read"]), org());
        for principal in [Principal::anonymous(), member] {
            for &action in Action::ALL {
                let fresh = evaluate(
                    &mut authz.current().engines.template.clone(),
                    &principal,
                    action,
                    &resource,
                )
                .unwrap();
                let first = authz.decide(&principal, action, &resource).unwrap();
                let again = authz.decide(&principal, action, &resource).unwrap();
                assert_eq!((&first, &again), (&fresh, &fresh), "{action}");
            }
        }
        assert!(!authz.current().memo.0.read().unwrap().is_empty());
    }

    /// A copy kept from an earlier question answers the next one as a fresh copy does:
    /// nothing of an allow carries into a denial or back, for either rule.
    #[test]
    fn reused_engines_answer_as_fresh_copies() {
        let authz = Authorizer::new().unwrap();
        let bundle = authz.current();
        let member = member(&["owner"], &["org:read", "org:delete"]);
        let resource = org();
        for &action in Action::ALL {
            for principal in [&member, &Principal::anonymous(), &member] {
                let fresh = evaluate(
                    &mut bundle.engines.template.clone(),
                    principal,
                    action,
                    &resource,
                )
                .unwrap();
                let reused = bundle
                    .engines
                    .with(|e| evaluate(e, principal, action, &resource))
                    .unwrap();
                assert_eq!(reused, fresh, "{action}");
            }
        }
        let question = |roles: &[&str], required: &[&str]| {
            let principal = crate::PdpPrincipal {
                kind: "user",
                id: Uuid::nil(),
                status: "active".to_owned(),
                member: true,
                membership_status: Some("active".to_owned()),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                permissions: Vec::new(),
                user_id: Some(Uuid::nil()),
                service_account_id: None,
                api_key_id: None,
                scopes: Vec::new(),
            };
            let resource = crate::PdpResource {
                kind: "model".to_owned(),
                id: Some("m".to_owned()),
                org_id: Uuid::nil(),
                org_status: "active".to_owned(),
                attributes: serde_json::json!({ "required_roles": required }),
            };
            let context = serde_json::json!({});
            serde_json::to_string(&PdpInput {
                principal: &principal,
                action: "llm.invoke",
                resource: &resource,
                context: &context,
            })
            .unwrap()
        };
        let allowed = question(&["ml-user"], &["ml-user"]);
        let denied = question(&["viewer"], &["ml-user", "admin"]);
        for input in [&allowed, &denied, &allowed, &denied] {
            let fresh = pdp::evaluate(&mut bundle.engines.template.clone(), input).unwrap();
            let reused = bundle.engines.with(|e| pdp::evaluate(e, input)).unwrap();
            assert_eq!(reused, fresh);
        }
        assert!(
            !pdp::evaluate(&mut bundle.engines.template.clone(), &denied)
                .unwrap()
                .allow
        );
        // One thread asked, so one copy answered every question.
        assert_eq!(bundle.engines.idle.lock().unwrap().len(), 1);
    }

    #[test]
    fn authorizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authorizer>();
    }
}
