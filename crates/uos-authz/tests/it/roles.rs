//! Built-in roles and custom permission lists against every org action, in an active org.

use uos_authz::{builtin_role_permissions, Action, BUILTIN_ROLES, PERMISSIONS};

use crate::support::*;

#[test]
fn every_builtin_role_against_every_org_action() {
    let resource = in_org("active");
    for role in BUILTIN_ROLES {
        let principal = member_as(role);
        let granted = builtin_role_permissions(role).unwrap();
        for &(action, perm) in ORG_ACTIONS {
            let want = if granted.contains(&perm) {
                allow(&format!("permission:{perm}"))
            } else {
                deny(&format!("missing_permission:{perm}"))
            };
            let got = decide(&principal, action, &resource);
            assert_decision(&format!("role {role}"), action, got, want);
        }
    }
}

#[test]
fn builtin_roles_match_the_documented_grants() {
    // Spot checks that read like the contract, on top of the exhaustive table above.
    let resource = in_org("active");
    let cases = [
        ("owner", Action::OrgDelete, true),
        ("admin", Action::OrgDelete, false),
        ("admin", Action::MemberSetRoles, true),
        ("member", Action::MemberList, true),
        ("member", Action::InviteCreate, false),
        ("billing", Action::OrgRead, true),
        ("billing", Action::MemberList, false),
        ("auditor", Action::AuditRead, true),
        ("auditor", Action::InviteList, true),
        ("auditor", Action::InviteCreate, false),
    ];
    for (role, action, allowed) in cases {
        let got = decide(&member_as(role), action, &resource);
        assert_eq!(got.allow, allowed, "role {role}, {action}: {got:?}");
    }
}

#[test]
fn a_single_permission_allows_exactly_the_actions_it_names() {
    let resource = in_org("active");
    for perm in PERMISSIONS {
        let principal = member_with(&["custom"], &[perm]);
        for &(action, needed) in ORG_ACTIONS {
            let got = decide(&principal, action, &resource);
            assert_eq!(
                got.allow,
                needed == *perm,
                "custom role with only {perm}, {action} (needs {needed}): {got:?}"
            );
        }
    }
}

#[test]
fn only_invites_write_allows_creating_and_revoking_invites() {
    let principal = member_with(&["inviter"], &["invites:write"]);
    let allowed: Vec<Action> = ORG_ACTIONS
        .iter()
        .map(|&(action, _)| action)
        .filter(|&action| decide(&principal, action, &in_org("active")).allow)
        .collect();
    assert_eq!(allowed, vec![Action::InviteCreate, Action::InviteRevoke]);
}

#[test]
fn role_names_alone_grant_nothing() {
    // The caller expands roles; an "owner" with no permissions passed gets nothing.
    let principal = member_with(&["owner"], &[]);
    for &(action, perm) in ORG_ACTIONS {
        let got = decide(&principal, action, &in_org("active"));
        assert_decision(
            "owner role without permissions",
            action,
            got,
            deny(&format!("missing_permission:{perm}")),
        );
    }
}

#[test]
fn every_action_is_classified_for_an_owner() {
    // Each action must land on a deliberate rule, never `default_deny`: a new action that was
    // added to Rust but not to the policy tables fails here.
    let principal = member_as("owner");
    let resource = in_org("active");
    for &action in Action::ALL {
        let want = if PUBLIC_ACTIONS.contains(&action) {
            allow("public")
        } else if let Some((_, perm)) = ORG_ACTIONS.iter().find(|(a, _)| *a == action) {
            allow(&format!("permission:{perm}"))
        } else {
            match action {
                Action::OrgCreate
                | Action::OrgList
                | Action::AuditKeys
                | Action::AuthLogout
                | Action::MeRead
                | Action::MeUpdate
                | Action::MePassword
                | Action::SessionList
                | Action::SessionRevoke
                | Action::MeMfa
                | Action::AuthIntrospect
                | Action::AuthWhoami
                | Action::BreakGlassRequest => allow("authenticated"),
                Action::UserList
                | Action::UserRead
                | Action::UserUpdate
                | Action::UserSetStatus
                | Action::UserDelete
                | Action::UserRestore
                | Action::UserRevokeSessions
                | Action::UserUnlock
                | Action::PasswordResetList
                | Action::PasswordResetApprove
                | Action::KeysRotate
                | Action::UserLegalHold
                | Action::OrgLegalHold
                | Action::WebhookList
                | Action::BreakGlassList
                | Action::BreakGlassApprove
                | Action::BreakGlassRevoke
                | Action::PolicyBundle
                | Action::PolicyReload
                | Action::DeclarativeStatus
                | Action::DeclarativePause
                | Action::DeclarativeSync
                | Action::DeclarativePlan
                | Action::DeclarativeRecord => deny("platform_admin_required"),
                other => panic!("{other} is missing from this test's classification"),
            }
        };
        assert_decision("owner", action, decide(&principal, action, &resource), want);
    }
}
