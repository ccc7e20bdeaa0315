//! Membership and org-status rules: outsiders see nothing, suspended members do nothing,
//! deleted and suspended orgs allow only what the contract says, only owners make owners.

use uos_authz::{Action, Denied, OrgContext, Principal, Resource, ResourceKind};

use crate::support::*;

const SUSPENDED_ORG_READS: &[Action] = &[
    Action::OrgRead,
    Action::MemberList,
    Action::MemberRead,
    Action::InviteList,
    Action::RoleList,
    Action::RoleRead,
    Action::AuditRead,
    Action::ServiceAccountList,
    Action::ServiceAccountRead,
    Action::ApiKeyList,
    Action::ApiKeyRead,
    Action::BudgetRead,
    Action::BudgetOverrideList,
    // Not a read, but taking a leaked credential away must work in a suspended org too.
    Action::ApiKeyRevoke,
    // Asked about a suspended org, the decision point answers a signed denial.
    Action::PolicyEvaluate,
];

#[test]
fn non_members_get_not_found_for_every_org_action() {
    let outsider = user("active");
    let member_elsewhere = Principal {
        org: Some(OrgContext {
            org_id: OTHER_ORG,
            ..member_as("owner").org.unwrap()
        }),
        ..user("active")
    };
    for principal in [outsider, member_elsewhere] {
        for status in ["active", "suspended", "deleted"] {
            for &(action, _) in ORG_ACTIONS {
                let got = authz().authorize(&principal, action, &in_org(status));
                assert_eq!(
                    got.err(),
                    Some(Denied::NotFound),
                    "{action} in a {status} org by a non-member"
                );
            }
        }
    }
}

#[test]
fn an_org_action_without_an_org_is_not_found() {
    // A handler that forgot to fill in the org must not be let through.
    let resource = Resource {
        kind: ResourceKind::Org,
        org_status: Some("active".to_owned()),
        ..Resource::default()
    };
    let got = authz().authorize(&member_as("owner"), Action::OrgUpdate, &resource);
    assert_eq!(got.err(), Some(Denied::NotFound));
}

#[test]
fn suspended_members_are_denied_every_org_action() {
    let mut principal = member_as("owner");
    if let Some(org) = principal.org.as_mut() {
        org.membership_status = "suspended".to_owned();
    }
    for &(action, _) in ORG_ACTIONS {
        let got = authz().authorize(&principal, action, &in_org("active"));
        assert_eq!(
            got.err(),
            Some(Denied::Forbidden {
                rule: "membership_suspended".to_owned()
            }),
            "{action} by a suspended member"
        );
    }
    // Their own account is unaffected.
    assert!(decide(&principal, Action::MeRead, &in_org("active")).allow);
}

#[test]
fn deleted_org_allows_only_reading_and_lifecycle_moves() {
    let resource = in_org("deleted");
    for role in ["owner", "admin", "member"] {
        let principal = member_as(role);
        for &(action, perm) in ORG_ACTIONS {
            let got = decide(&principal, action, &resource);
            let has = uos_authz::builtin_role_permissions(role)
                .unwrap()
                .contains(&perm);
            // Lifecycle moves reach the state machine, which refuses the invalid ones.
            let passes = matches!(
                action,
                Action::OrgRead
                    | Action::OrgRestore
                    | Action::OrgDelete
                    | Action::OrgSuspend
                    | Action::OrgResume
            );
            let want = match action {
                _ if passes && has => allow(&format!("permission:{perm}")),
                _ if passes => deny(&format!("missing_permission:{perm}")),
                _ => deny("org_deleted"),
            };
            assert_decision(&format!("{role} in deleted org"), action, got, want);
        }
    }
}

#[test]
fn suspended_org_allows_reads_and_lifecycle_moves_only() {
    let resource = in_org("suspended");
    let principal = member_as("owner");
    for &(action, perm) in ORG_ACTIONS {
        let got = decide(&principal, action, &resource);
        let lifecycle = matches!(
            action,
            Action::OrgResume | Action::OrgSuspend | Action::OrgDelete | Action::OrgRestore
        );
        let want = if SUSPENDED_ORG_READS.contains(&action) || lifecycle {
            allow(&format!("permission:{perm}"))
        } else {
            deny("org_suspended")
        };
        assert_decision("owner in suspended org", action, got, want);
    }
    // Reads still need their permission.
    let got = decide(&member_as("billing"), Action::MemberList, &resource);
    assert_eq!(got, deny("missing_permission:users:read"));
}

#[test]
fn an_unknown_or_missing_org_status_is_denied() {
    let principal = member_as("owner");
    let unknown = in_org("archived");
    let missing = Resource {
        org_status: None,
        ..in_org("active")
    };
    for resource in [unknown, missing] {
        let got = decide(&principal, Action::OrgRead, &resource);
        assert_eq!(got, deny("org_status_unknown"), "{resource:?}");
    }
}

#[test]
fn only_owners_grant_or_remove_owner() {
    let resource = Resource {
        grants_owner: true,
        ..in_org("active")
    };
    for action in [Action::MemberSetRoles, Action::MemberRemove] {
        assert_eq!(
            decide(&member_as("admin"), action, &resource),
            deny("owner_required"),
            "admin, {action}"
        );
        assert_eq!(
            decide(&member_as("owner"), action, &resource),
            allow("permission:users:write"),
            "owner, {action}"
        );
        // Missing the permission altogether is the more basic reason.
        assert_eq!(
            decide(&member_as("member"), action, &resource),
            deny("missing_permission:users:write"),
            "member, {action}"
        );
    }
}

#[test]
fn members_may_suspend_or_remove_themselves_by_permission() {
    // The service, not the policy, keeps an org from losing its last owner.
    let me = Resource {
        kind: ResourceKind::Membership,
        is_self: true,
        ..in_org("active")
    };
    assert!(decide(&member_as("admin"), Action::MemberRemove, &me).allow);
    assert!(decide(&member_as("admin"), Action::MemberSuspend, &me).allow);
    assert!(!decide(&member_as("member"), Action::MemberRemove, &me).allow);
}
