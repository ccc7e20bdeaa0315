//! Loading policies: from the binary, from an operator's directory, and refusing bad ones;
//! a policy that breaks at evaluation time denies.

use std::path::PathBuf;

use uos_authz::{Action, Authorizer, AuthzError, Denied, Principal, Resource};

use crate::support::*;

fn repo_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A directory holding `files`; kept alive by the returned guard.
fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn from_dir_on_the_shipped_policies_agrees_with_the_embedded_ones() {
    let from_dir = Authorizer::from_dir(repo_policies()).unwrap();
    let principals = [
        Principal::anonymous(),
        member_as("member"),
        member_as("owner"),
        user("suspended"),
    ];
    for principal in &principals {
        for &action in Action::ALL {
            let resource = in_org("active");
            assert_eq!(
                from_dir.decide(principal, action, &resource).unwrap(),
                decide(principal, action, &resource),
                "{action}"
            );
        }
    }
}

#[test]
fn from_dir_refuses_a_policy_that_does_not_parse() {
    let dir = policy_dir(&[
        (
            "ok.rego",
            "package uos.authz\ndefault decision := {\"allow\": false, \"rule\": \"x\"}\n",
        ),
        (
            "broken.rego",
            "package uos.authz\ndecision := {\"allow\": true,\n",
        ),
    ]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(
        matches!(&err, AuthzError::InvalidPolicy { file, .. } if file.ends_with("broken.rego")),
        "{err}"
    );
}

#[test]
fn from_dir_refuses_an_empty_or_missing_directory() {
    let empty = policy_dir(&[("README.md", "not a policy")]);
    let err = Authorizer::from_dir(empty.path()).unwrap_err();
    assert!(matches!(err, AuthzError::NoPolicies { .. }), "{err}");

    let err = Authorizer::from_dir(empty.path().join("nope")).unwrap_err();
    assert!(matches!(err, AuthzError::Io { .. }), "{err}");
}

#[test]
fn from_dir_refuses_policies_without_the_decision_rule() {
    let dir = policy_dir(&[("other.rego", "package uos.other\nallow := true\n")]);
    assert!(Authorizer::from_dir(dir.path()).is_err());
}

#[test]
fn from_dir_refuses_a_malformed_decision() {
    for body in [
        "decision := true",
        "decision := {\"allow\": \"yes\", \"rule\": \"x\"}",
        "decision := {\"allow\": true}",
        "decision := {\"allow\": true, \"rule\": \"x\"} if input.nothing",
    ] {
        let text = format!("package uos.authz\n{body}\n");
        let dir = policy_dir(&[("p.rego", &text)]);
        let err = Authorizer::from_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, AuthzError::MalformedDecision(_)),
            "{body}: {err}"
        );
    }
}

#[test]
fn a_policy_error_at_evaluation_time_denies() {
    // Two complete definitions that disagree only for one input: the startup check passes,
    // the request that hits the conflict must not be allowed.
    let text = r#"package uos.authz
default decision := {"allow": false, "rule": "default_deny"}
decision := {"allow": true, "rule": "a"} if input.resource.id == "boom"
decision := {"allow": true, "rule": "b"} if input.resource.id == "boom"
"#;
    let pdp = include_str!("../../../../policies/pdp.rego");
    let dir = policy_dir(&[("p.rego", text), ("pdp.rego", pdp)]);
    let authz = Authorizer::from_dir(dir.path()).unwrap();
    let boom = Resource {
        id: Some("boom".to_owned()),
        ..Resource::default()
    };
    let principal = member_as("owner");
    assert!(matches!(
        authz.decide(&principal, Action::OrgRead, &boom),
        Err(AuthzError::Evaluation(_))
    ));
    assert_eq!(
        authz.authorize(&principal, Action::OrgRead, &boom).err(),
        Some(Denied::Forbidden {
            rule: "policy_error".to_owned()
        })
    );
}
