//! Capabilities: what an allow hands out, and that a service can refuse one made for
//! something else or a change outside its org.

use uos_authz::{Action, AuthzError, Denied};

use crate::support::*;

#[test]
fn an_allow_yields_a_capability_for_exactly_that_check() {
    let cap = authz()
        .authorize(&member_as("admin"), Action::InviteCreate, &in_org("active"))
        .unwrap();
    assert_eq!(cap.action(), Action::InviteCreate);
    assert_eq!(cap.principal_id(), Some(CALLER));
    assert_eq!(cap.org_id(), Some(ORG));
    assert_eq!(cap.rule(), "permission:invites:write");
    assert!(cap.ensure(Action::InviteCreate, Some(ORG)).is_ok());
}

#[test]
fn ensure_rejects_another_action_or_org() {
    let cap = authz()
        .authorize(&member_as("admin"), Action::InviteCreate, &in_org("active"))
        .unwrap();
    for (action, org) in [
        (Action::InviteRevoke, Some(ORG)),
        (Action::InviteCreate, Some(OTHER_ORG)),
        (Action::InviteCreate, None),
    ] {
        let err = cap.ensure(action, org).unwrap_err();
        assert!(
            matches!(
                err,
                AuthzError::CapabilityMismatch {
                    held_action: Action::InviteCreate,
                    held_org: Some(ORG),
                    wanted_action,
                    wanted_org,
                } if wanted_action == action && wanted_org == org
            ),
            "ensure({action}, {org:?}) gave {err:?}"
        );
    }
}

#[test]
fn a_self_action_capability_has_no_org() {
    let cap = authz()
        .authorize(&user("active"), Action::OrgCreate, &Default::default())
        .unwrap();
    assert_eq!(cap.org_id(), None);
    assert!(cap.ensure(Action::OrgCreate, None).is_ok());
}

#[test]
fn an_org_capability_covers_changes_in_its_org_only() {
    let cap = authz()
        .authorize(&member_as("admin"), Action::InviteCreate, &in_org("active"))
        .unwrap();
    assert!(cap.ensure_covers_org(ORG).is_ok());
    let err = cap.ensure_covers_org(OTHER_ORG).unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::CapabilityOutsideOrg {
                action: Action::InviteCreate,
                held_org: ORG,
                wanted_org: OTHER_ORG,
            }
        ),
        "a capability for one org covered a change in another: {err:?}"
    );
}

#[test]
fn a_capability_without_org_is_not_confined_to_one() {
    let cap = authz()
        .authorize(&user("active"), Action::OrgCreate, &Default::default())
        .unwrap();
    assert!(cap.ensure_covers_org(ORG).is_ok());
    assert!(cap.ensure_covers_org(OTHER_ORG).is_ok());
}

#[test]
fn a_deny_names_its_rule() {
    let got = authz().authorize(&member_as("member"), Action::OrgDelete, &in_org("active"));
    assert_eq!(
        got.err(),
        Some(Denied::Forbidden {
            rule: "missing_permission:org:delete".to_owned()
        })
    );
}
