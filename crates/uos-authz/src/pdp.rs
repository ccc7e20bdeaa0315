//! The decision point's question and answer (`data.uos.pdp.decision`, `policies/pdp.rego`):
//! what downstream services ask through `POST /v1/policy/evaluate`. Unlike the endpoint
//! authorization, actions and resource types here are the callers' own vocabulary, so the input
//! carries them as strings.

use regorus::{Engine, Value};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AuthzError;

/// The rule the decision point evaluates.
pub const PDP_RULE: &str = "data.uos.pdp.decision";

/// The `input` document of a decision.
#[derive(Debug, Serialize)]
pub struct PdpInput<'a> {
    pub principal: &'a PdpPrincipal,
    pub action: &'a str,
    pub resource: &'a PdpResource,
    /// What the caller said about the circumstances (`cost_cents`, `ip`, …): an object.
    pub context: &'a serde_json::Value,
}

/// Who the decision is about, resolved by the service: found, active, and placed in the
/// resource's org (`member`, its roles and permissions there).
#[derive(Clone, Debug, Serialize)]
pub struct PdpPrincipal {
    /// `user`, `service_account` or `api_key`: how the caller named the principal.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: Uuid,
    pub status: String,
    /// Whether the principal belongs to the resource's org (a member, or an account of it).
    pub member: bool,
    pub membership_status: Option<String>,
    /// Roles in the resource's org, inherited ones included.
    pub roles: Vec<String>,
    /// Permissions in the resource's org (for a key, narrowed to its scopes).
    pub permissions: Vec<String>,
    pub user_id: Option<Uuid>,
    pub service_account_id: Option<Uuid>,
    pub api_key_id: Option<Uuid>,
    /// An API key's scopes; empty otherwise.
    pub scopes: Vec<String>,
}

/// What the decision is about.
#[derive(Clone, Debug, Serialize)]
pub struct PdpResource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub org_id: Uuid,
    pub org_status: String,
    /// The caller's attributes of the resource: an object.
    pub attributes: serde_json::Value,
}

/// One reason a decision gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdpReason {
    pub code: String,
    /// The rule that gave it, e.g. `uos.pdp.membership`.
    pub policy: String,
    pub message: String,
}

/// The policy's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdpVerdict {
    pub allow: bool,
    pub reasons: Vec<PdpReason>,
    pub obligations: serde_json::Map<String, serde_json::Value>,
}

/// Evaluates the decision for `input` (its JSON text) on `engine`.
pub(crate) fn evaluate(engine: &mut Engine, input: &str) -> Result<PdpVerdict, AuthzError> {
    let input =
        Value::from_json_str(input).map_err(|e| AuthzError::Evaluation(format!("{e:#}")))?;
    engine.set_input(input);
    let value = engine
        .eval_rule(PDP_RULE.to_owned())
        .map_err(|e| AuthzError::Evaluation(format!("{e:#}")))?;
    if value == Value::Undefined {
        return Err(AuthzError::MalformedDecision(format!(
            "{PDP_RULE} is undefined (is policies/pdp.rego in the bundle?)"
        )));
    }
    let json = serde_json::to_value(&value)?;
    let verdict: PdpVerdict = serde_json::from_value(json.clone())
        .map_err(|e| AuthzError::MalformedDecision(format!("{e}: got {json}")))?;
    // Every denial names why (the contract); a policy that denies silently is broken.
    if !verdict.allow && verdict.reasons.is_empty() {
        return Err(AuthzError::MalformedDecision(format!(
            "{PDP_RULE} denies without a reason: got {json}"
        )));
    }
    Ok(verdict)
}

/// Fails at start-up, not on the first request, when the decision rule is missing or
/// misshapen: asks it once about a member and once about an outsider.
pub(crate) fn self_check(engine: &mut Engine) -> Result<(), AuthzError> {
    let resource = PdpResource {
        kind: "self_check".to_owned(),
        id: None,
        org_id: Uuid::nil(),
        org_status: "active".to_owned(),
        attributes: serde_json::json!({}),
    };
    let member = PdpPrincipal {
        kind: "user",
        id: Uuid::nil(),
        status: "active".to_owned(),
        member: true,
        membership_status: Some("active".to_owned()),
        roles: vec!["member".to_owned()],
        permissions: Vec::new(),
        user_id: Some(Uuid::nil()),
        service_account_id: None,
        api_key_id: None,
        scopes: Vec::new(),
    };
    let outsider = PdpPrincipal {
        member: false,
        membership_status: None,
        roles: Vec::new(),
        ..member.clone()
    };
    let context = serde_json::json!({});
    for principal in [&member, &outsider] {
        let input = serde_json::to_string(&PdpInput {
            principal,
            action: "self_check",
            resource: &resource,
            context: &context,
        })?;
        evaluate(engine, &input).map_err(|e| AuthzError::invalid(PDP_RULE, &e.to_string()))?;
    }
    Ok(())
}
