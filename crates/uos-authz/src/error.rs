//! The crate's one error type. Denials are not errors (see [`crate::Denied`]); these are
//! failures to load or run the policy, or a service misusing a capability.

use std::path::PathBuf;

use uuid::Uuid;

use crate::Action;

/// Why the authorizer could not be built or could not reach a decision.
#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    /// A policy directory or file could not be read.
    #[error("cannot read policy path {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A policy directory holds no `.rego` file; starting without policy would deny everything
    /// silently, so it is refused up front.
    #[error("no .rego policy found in {path}")]
    NoPolicies { path: PathBuf },

    /// A policy file does not parse, or the set of policies does not compile together.
    #[error("invalid policy {file}: {message}")]
    InvalidPolicy { file: String, message: String },

    /// Evaluating the decision failed (a policy bug, e.g. a conflict or a builtin error).
    #[error("policy evaluation failed: {0}")]
    Evaluation(String),

    /// The policy produced something other than `{"allow": bool, "rule": string}`.
    #[error("policy decision is malformed: {0}")]
    MalformedDecision(String),

    /// The input document could not be encoded.
    #[error("cannot encode authorization input: {0}")]
    Input(#[from] serde_json::Error),

    /// A string names no known action.
    #[error("unknown action {0:?}")]
    UnknownAction(String),

    /// A service was handed a capability for something other than what it is about to do.
    #[error(
        "capability for {held_action} in org {held_org:?} used for {wanted_action} in org {wanted_org:?}"
    )]
    CapabilityMismatch {
        held_action: Action,
        held_org: Option<Uuid>,
        wanted_action: Action,
        wanted_org: Option<Uuid>,
    },

    /// A change in one org was about to be committed with a capability issued for another.
    #[error(
        "capability for {action} in org {held_org} does not cover a change in org {wanted_org}"
    )]
    CapabilityOutsideOrg {
        action: Action,
        held_org: Uuid,
        wanted_org: Uuid,
    },
}
