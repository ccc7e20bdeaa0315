//! The crate's one error type. Denials are not errors (see [`crate::Denied`]); these are
//! failures to load or run the policy, or a service misusing a capability.

use std::path::PathBuf;

use uuid::Uuid;

use crate::Action;

/// A `test_*` rule that did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegoTestFailure {
    /// Its full name, `data.<package>.test_…`.
    pub test: String,
    pub file: String,
    pub line: u32,
    /// `undefined` (a condition failed), `false`, another value, or the evaluation error.
    pub outcome: String,
}

impl std::fmt::Display for RegoTestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} is {}",
            self.file, self.line, self.test, self.outcome
        )
    }
}

/// One reason a bundle was refused, where it is: what an operator needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem {
    /// `compile_error`, `test_failed`, `self_check_failed` or `unreadable`.
    pub code: &'static str,
    /// The file (relative to the bundle), or the rule or directory when no file is known.
    pub file: String,
    pub line: Option<u32>,
    pub message: String,
}

impl PolicyProblem {
    /// `file:line`, or the file alone.
    pub fn location(&self) -> String {
        location(&self.file, self.line)
    }
}

fn location(file: &str, line: Option<u32>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_owned(),
    }
}

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
    /// `file` and `line` say where, when regorus knows (it names a rule otherwise).
    #[error("invalid policy {}: {message}", location(file, *line))]
    InvalidPolicy {
        file: String,
        line: Option<u32>,
        message: String,
    },

    /// Rego unit tests of the bundle (`test_*` rules) did not all evaluate to `true`.
    #[error("{} Rego test(s) failed: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    RegoTestsFailed(Vec<RegoTestFailure>),

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

impl AuthzError {
    /// An invalid policy from a regorus error message, which points at the source as
    /// `--> file:line:col` above a caret and a final `error: …` line: the position becomes
    /// `file` and `line`, the last line the message. Without a position the error is put on
    /// `fallback` (the rule being checked).
    pub(crate) fn invalid(fallback: &str, message: &str) -> Self {
        match locate(message) {
            Some((file, line, message)) => AuthzError::InvalidPolicy {
                file,
                line: Some(line),
                message,
            },
            None => AuthzError::InvalidPolicy {
                file: fallback.to_owned(),
                line: None,
                message: one_line(message),
            },
        }
    }

    /// Why a bundle was refused, one entry per place to fix.
    pub fn problems(&self) -> Vec<PolicyProblem> {
        match self {
            AuthzError::InvalidPolicy {
                file,
                line,
                message,
            } => vec![PolicyProblem {
                code: "compile_error",
                file: file.clone(),
                line: *line,
                message: message.clone(),
            }],
            AuthzError::RegoTestsFailed(failures) => failures
                .iter()
                .map(|f| PolicyProblem {
                    code: "test_failed",
                    file: f.file.clone(),
                    line: Some(f.line),
                    message: format!("{} is {}", f.test, f.outcome),
                })
                .collect(),
            AuthzError::Io { path, .. } | AuthzError::NoPolicies { path } => vec![PolicyProblem {
                code: "unreadable",
                file: path.display().to_string(),
                line: None,
                message: self.to_string(),
            }],
            other => vec![PolicyProblem {
                code: "self_check_failed",
                file: crate::DECISION_RULE.to_owned(),
                line: None,
                message: other.to_string(),
            }],
        }
    }
}

/// `(file, line, message)` of a regorus error that carries a position.
fn locate(message: &str) -> Option<(String, u32, String)> {
    let at = message.rfind("--> ")?;
    let position = message[at + 4..].lines().next()?;
    let mut parts = position.rsplitn(3, ':');
    let _column = parts.next()?;
    let line = parts.next()?.trim().parse().ok()?;
    let file = parts.next()?.trim().to_owned();
    let what = message[at..]
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().strip_prefix("error: ").unwrap_or(l.trim()))
        .unwrap_or_default();
    // What came before the position (an outer context such as "while evaluating") helps too.
    let before = one_line(&message[..at]);
    let before = before.trim_end_matches(':').trim();
    let message = if before.is_empty() {
        what.to_owned()
    } else {
        format!("{before}: {what}")
    };
    Some((file, line, message))
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positioned_regorus_error_names_file_line_and_message() {
        let raw = "\n--> broken.rego:3:14\n  |\n3 | decision := {\n  |              ^\nerror: expecting `}`";
        let err = AuthzError::invalid("data.uos.authz.decision", raw);
        assert_eq!(
            err.problems(),
            vec![PolicyProblem {
                code: "compile_error",
                file: "broken.rego".to_owned(),
                line: Some(3),
                message: "expecting `}`".to_owned(),
            }]
        );
        assert_eq!(
            err.to_string(),
            "invalid policy broken.rego:3: expecting `}`"
        );
    }

    #[test]
    fn an_error_without_position_falls_back_to_the_rule() {
        let err = AuthzError::invalid("data.uos.pdp.decision", "rule conflict\n  here");
        let p = &err.problems()[0];
        assert_eq!(
            (p.file.as_str(), p.line, p.message.as_str()),
            ("data.uos.pdp.decision", None, "rule conflict here")
        );
    }
}
