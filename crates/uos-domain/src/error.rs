//! The one error type of the domain crate: a value failed to parse or a transition is not allowed.

use thiserror::Error;

/// Why a domain value or a state change was refused. Carries a stable machine `code` so the
/// HTTP layer can name it in problem+json without string matching on messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A value did not parse; `code` is a short machine-readable reason.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// A state machine refused a move.
    #[error("cannot move from {from} to {to}")]
    Transition { from: String, to: String },
    /// A role graph would contain a cycle through `role`.
    #[error("role inheritance cycle through {role}")]
    RoleCycle { role: String },
}

impl DomainError {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}
