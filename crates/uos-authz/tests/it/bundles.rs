//! Policy bundles: the shipped Rego tests run and pass, a bundle whose tests fail or that does
//! not compile is refused with file and line, and a reload swaps the bundle (and its
//! remembered decisions) only when the new one is sound.

use std::path::{Path, PathBuf};

use uos_authz::{
    Action, Authorizer, AuthzError, PdpInput, PdpPrincipal, PdpResource, Reloaded, Resource,
};
use uuid::Uuid;

use crate::support::*;

fn repo_policies() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A copy of the shipped policies in a directory of its own, to change.
fn shipped_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_policies()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// The shipped decision with a first rule that freezes reads of [`ORG`] (an `else` chain
/// cannot be extended from another file, so the rule is edited in place). The shipped Rego
/// tests still pass: they ask about other resources.
fn freeze_org_reads(decision_rego: &str) -> String {
    let public = "decision := {\"allow\": true, \"rule\": \"public\"} if {";
    assert!(decision_rego.contains(public));
    decision_rego.replace(
        public,
        &format!(
            "decision := {{\"allow\": false, \"rule\": \"reads_frozen\"}} if {{\n\
             \tinput.action == \"org.read\"\n\tinput.resource.id == \"{ORG}\"\n}} else := \
             {{\"allow\": true, \"rule\": \"public\"}} if {{"
        ),
    )
}

#[test]
fn the_shipped_rego_tests_run_and_pass_with_the_embedded_bundle() {
    let bundle = authz().current();
    // decision_test.rego and pdp_test.rego; a test that stopped being found would lower this.
    assert!(
        bundle.rego_tests() >= 18,
        "only {} Rego tests ran",
        bundle.rego_tests()
    );
    let files: Vec<&str> = bundle
        .info()
        .modules
        .iter()
        .map(|m| m.file.as_str())
        .collect();
    assert!(files.contains(&"decision_test.rego") && files.contains(&"pdp_test.rego"));
}

#[test]
fn the_embedded_bundle_is_the_shipped_directory() {
    // Same names, same text, same revision: a file added to policies/ but not embedded (or
    // the reverse) shows here.
    let from_dir = Authorizer::from_dir(repo_policies()).unwrap();
    assert_eq!(from_dir.revision(), authz().revision());
    assert_eq!(
        from_dir.current().info().modules,
        authz().current().info().modules
    );
}

#[test]
fn a_failing_rego_test_refuses_the_bundle_naming_test_file_and_line() {
    let dir = shipped_copy();
    write(
        dir.path(),
        "extra_test.rego",
        "package uos.extra_test\n\ntest_holds if true\n\n# Members may not read orgs (they may).\ntest_wrong if {\n\tnot data.uos.authz.decision.allow with input as {\"action\": \"auth.login\"}\n}\n",
    );
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    let AuthzError::RegoTestsFailed(failures) = &err else {
        panic!("expected a failed Rego test, got {err}");
    };
    assert_eq!(failures.len(), 1, "{err}");
    let f = &failures[0];
    assert_eq!(
        (f.test.as_str(), f.file.as_str(), f.line),
        ("data.uos.extra_test.test_wrong", "extra_test.rego", 6)
    );
    let problems = err.problems();
    assert_eq!(problems[0].code, "test_failed");
    assert_eq!(problems[0].location(), "extra_test.rego:6");
}

#[test]
fn a_compile_error_is_refused_with_file_and_line() {
    let dir = shipped_copy();
    write(
        dir.path(),
        "broken.rego",
        "package uos.extra\n\nok := true\n\nbad if {\n\tnot_defined_anywhere == 1\n}\n",
    );
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    let problems = err.problems();
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].code, "compile_error");
    assert_eq!(problems[0].location(), "broken.rego:6", "{err}");

    write(dir.path(), "broken.rego", "package uos.extra\n\nok := {\n");
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    let p = &err.problems()[0];
    assert_eq!(
        (p.code, p.file.as_str()),
        ("compile_error", "broken.rego"),
        "{err}"
    );
    assert!(p.line.is_some(), "{err}");
}

#[test]
fn a_reload_of_the_same_content_changes_nothing() {
    let authz = Authorizer::new().unwrap();
    let before = authz.current();
    let Reloaded::Unchanged(now) = authz.reload().unwrap() else {
        panic!("the embedded bundle cannot change");
    };
    assert!(std::sync::Arc::ptr_eq(&before, &now));
    assert_eq!(authz.reload_counts(), (0, 0));
}

#[test]
fn a_reload_swaps_the_bundle_and_its_decisions() {
    let dir = shipped_copy();
    let authz = Authorizer::from_dir(dir.path()).unwrap();
    let sharer = authz.clone();
    let member = member_as("member");
    let resource = in_org("active");
    // Remembered by the first bundle...
    assert!(
        authz
            .decide(&member, Action::OrgRead, &resource)
            .unwrap()
            .allow
    );
    let first = authz.revision();

    let decision = std::fs::read_to_string(dir.path().join("decision.rego")).unwrap();
    write(dir.path(), "decision.rego", &freeze_org_reads(&decision));
    assert_ne!(authz.source_revision().unwrap(), first);
    let Reloaded::Replaced { previous, current } = authz.reload().unwrap() else {
        panic!("the directory changed");
    };
    assert_eq!(previous.revision(), first);
    assert_ne!(current.revision(), first);
    // ...which does not outlive it: every clone sees the new bundle at once.
    assert_eq!(
        sharer.decide(&member, Action::OrgRead, &resource).unwrap(),
        deny("reads_frozen")
    );
    assert_eq!(sharer.revision(), current.revision());
    // A decision already holding the old bundle still gets, and names, the old answer.
    assert!(
        previous
            .decide(&member, Action::OrgRead, &resource)
            .unwrap()
            .allow
    );
    assert_eq!(authz.reload_counts(), (1, 0));
}

#[test]
fn a_refused_reload_keeps_the_running_bundle() {
    let dir = shipped_copy();
    let authz = Authorizer::from_dir(dir.path()).unwrap();
    let running = authz.revision();
    write(dir.path(), "pdp.rego", "package uos.pdp\n\ndecision := {\n");
    let err = authz.reload().unwrap_err();
    assert_eq!(err.problems()[0].file, "pdp.rego", "{err}");
    assert_eq!(authz.revision(), running);
    assert!(
        authz
            .decide(&member_as("member"), Action::OrgRead, &in_org("active"))
            .unwrap()
            .allow
    );
    // The decision point still answers from the running bundle too.
    let principal = PdpPrincipal {
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
    let resource = PdpResource {
        kind: "model".to_owned(),
        id: None,
        org_id: Uuid::nil(),
        org_status: "active".to_owned(),
        attributes: serde_json::json!({}),
    };
    let verdict = authz
        .pdp_decide(&PdpInput {
            principal: &principal,
            action: "model.invoke",
            resource: &resource,
            context: &serde_json::json!({}),
        })
        .unwrap();
    assert!(verdict.allow);
    assert_eq!(authz.reload_counts(), (0, 1));

    // Fixed again, it loads; a bundle equal to the running one is no change at all.
    std::fs::copy(
        repo_policies().join("pdp.rego"),
        dir.path().join("pdp.rego"),
    )
    .unwrap();
    assert!(matches!(authz.reload().unwrap(), Reloaded::Unchanged(_)));
}

#[test]
fn a_resource_default_is_still_a_platform_question() {
    // The new actions are asked about the bundle, not about an org.
    let got = decide(
        &member_as("owner"),
        Action::PolicyReload,
        &Resource::default(),
    );
    assert_eq!(got, deny("platform_admin_required"));
}
