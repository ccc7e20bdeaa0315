//! The Rego engine wrapper: loads and checks the policies once, then answers each question on a
//! clone of the prepared engine, failing closed when the policy misbehaves.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

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

/// The policies shipped with the service, compiled into the binary.
const EMBEDDED_POLICIES: &[(&str, &str)] = &[
    (
        "policies/tables.rego",
        include_str!("../../../policies/tables.rego"),
    ),
    (
        "policies/decision.rego",
        include_str!("../../../policies/decision.rego"),
    ),
    (
        "policies/pdp.rego",
        include_str!("../../../policies/pdp.rego"),
    ),
];

/// The raw outcome of the policy: allowed or not, and which rule said so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub rule: String,
}

/// The policy decision point. Cheap to share (`Arc`) and to clone; evaluation takes `&self`.
#[derive(Clone, Debug)]
pub struct Authorizer {
    // Prepared once (policies parsed, analysed and scheduled); every evaluation clones it, which
    // copies reference-counted state instead of re-parsing.
    engine: Engine,
    // Decisions by their exact input. The policies are fixed for the life of the authorizer
    // and a decision is a pure function of policy and input, so a repeated question (the
    // same caller doing the same thing) need not run the evaluator again (~50 µs).
    memo: Arc<RwLock<HashMap<String, Decision>>>,
    // The same for the decision point's questions, whose inputs come from other services.
    pdp_memo: Arc<RwLock<HashMap<String, Arc<PdpVerdict>>>>,
    // The content hash of the policies (`policy_revision`): decisions name what decided them.
    revision: Arc<str>,
}

/// More remembered decisions than this and the memo starts over: inputs carry ids, so
/// their number is unbounded, and a miss only costs one evaluation.
const MEMO_MAX: usize = 20_000;

/// The `input` document; built once per evaluation.
#[derive(Serialize)]
struct Input<'a> {
    principal: &'a Principal,
    action: Action,
    resource: &'a Resource,
}

impl Authorizer {
    /// Builds the authorizer from the policies compiled into the binary.
    pub fn new() -> Result<Self, AuthzError> {
        Self::from_sources(
            EMBEDDED_POLICIES
                .iter()
                .map(|(name, text)| ((*name).to_owned(), (*text).to_owned())),
        )
    }

    /// Builds the authorizer from every `*.rego` file directly inside `dir`, for operators who
    /// ship their own policies. The same checks apply as for the embedded ones.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, AuthzError> {
        let dir = dir.as_ref();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| AuthzError::Io { path, source }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            if path.is_file() && path.extension().is_some_and(|ext| ext == "rego") {
                files.push(path);
            }
        }
        if files.is_empty() {
            return Err(AuthzError::NoPolicies {
                path: dir.to_path_buf(),
            });
        }
        // Directory order is arbitrary; a fixed order makes errors reproducible.
        files.sort();
        let mut sources = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            sources.push((path.display().to_string(), text));
        }
        Self::from_sources(sources)
    }

    fn from_sources(
        sources: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, AuthzError> {
        let mut engine = Engine::new();
        let mut hash = Sha256::new();
        for (name, text) in sources {
            // Name and text, each length-prefixed: moving text between files changes the hash.
            for part in [&name, &text] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part.as_bytes());
            }
            engine
                .add_policy(name.clone(), text)
                .map_err(|e| AuthzError::InvalidPolicy {
                    file: name,
                    message: format!("{e:#}"),
                })?;
        }
        self_check(&mut engine)?;
        pdp::self_check(&mut engine)?;
        // The input of the last check is not meant to linger in the template every clone
        // starts from.
        engine.set_input(Value::new_object());
        Ok(Self {
            engine,
            memo: Arc::default(),
            pdp_memo: Arc::default(),
            revision: hex::encode(hash.finalize()).into(),
        })
    }

    /// The content hash of the loaded policies, hex: the `policy_revision` of decisions.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The decision point's answer (`data.uos.pdp.decision`) for `input`, remembered by the
    /// input: the policies are fixed for the life of the authorizer, so the same question
    /// gets the same answer. Errors mean the policy could not decide.
    pub fn pdp_decide(&self, input: &PdpInput<'_>) -> Result<Arc<PdpVerdict>, AuthzError> {
        let key = serde_json::to_string(input)?;
        if let Some(v) = self
            .pdp_memo
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(v));
        }
        let verdict = Arc::new(pdp::evaluate(&mut self.engine.clone(), &key)?);
        let mut memo = self.pdp_memo.write().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert(key, Arc::clone(&verdict));
        Ok(verdict)
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
        if let Some(d) = self
            .memo
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(d.clone());
        }
        let decision = evaluate(&mut self.engine.clone(), principal, action, resource)?;
        let mut memo = self.memo.write().unwrap_or_else(|e| e.into_inner());
        if memo.len() >= MEMO_MAX {
            memo.clear();
        }
        memo.insert(key, decision.clone());
        Ok(decision)
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
            .engine
            .clone()
            .eval_rule(rule.to_owned())
            .map_err(|e| AuthzError::Evaluation(format!("{e:#}")))?;
        Ok(serde_json::to_value(&value)?)
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
                AuthzError::Evaluation(msg) => AuthzError::InvalidPolicy {
                    file: DECISION_RULE.to_owned(),
                    message: format!("{action}: {msg}"),
                },
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

    #[test]
    fn remembered_decisions_equal_evaluated_ones() {
        let authz = Authorizer::new().unwrap();
        let member = Principal {
            org: Some(OrgContext {
                org_id: Uuid::nil(),
                membership_status: "active".to_owned(),
                roles: vec!["viewer".to_owned()],
                permissions: vec!["org:read".to_owned()],
            }),
            ..Principal::user(Uuid::nil(), "active")
        };
        let resource = Resource {
            kind: ResourceKind::Org,
            org_id: Some(Uuid::nil()),
            org_status: Some("active".to_owned()),
            ..Resource::default()
        };
        for principal in [Principal::anonymous(), member] {
            for &action in Action::ALL {
                let fresh =
                    evaluate(&mut authz.engine.clone(), &principal, action, &resource).unwrap();
                let first = authz.decide(&principal, action, &resource).unwrap();
                let again = authz.decide(&principal, action, &resource).unwrap();
                assert_eq!((&first, &again), (&fresh, &fresh), "{action}");
            }
        }
        assert!(!authz.memo.read().unwrap().is_empty());
    }

    #[test]
    fn authorizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Authorizer>();
    }
}
