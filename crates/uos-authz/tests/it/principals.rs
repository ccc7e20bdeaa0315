//! Who may act at all: anonymous callers, user statuses, platform admins, self actions.

use uos_authz::{Action, Principal, PrincipalKind, Resource, ResourceKind};

use crate::support::*;

#[test]
fn anonymous_may_only_use_the_public_actions() {
    let anonymous = Principal::anonymous();
    for &action in Action::ALL {
        let want = if PUBLIC_ACTIONS.contains(&action) {
            allow("public")
        } else {
            deny("authentication_required")
        };
        let got = decide(&anonymous, action, &in_org("active"));
        assert_decision("anonymous", action, got, want);
    }
}

#[test]
fn anonymous_gets_a_capability_without_a_principal_id() {
    let cap = authz()
        .authorize(
            &Principal::anonymous(),
            Action::AuthLogin,
            &Resource::default(),
        )
        .unwrap();
    assert_eq!(cap.principal_id(), None);
    assert_eq!(cap.rule(), "public");
}

#[test]
fn platform_admin_is_allowed_everything() {
    // Even with no membership and in a deleted org: platform admins repair things.
    let admin = platform_admin();
    for resource in [in_org("active"), in_org("deleted"), Resource::default()] {
        for &action in Action::ALL {
            let want = if PUBLIC_ACTIONS.contains(&action) {
                allow("public")
            } else {
                allow("platform_admin")
            };
            let got = decide(&admin, action, &resource);
            assert_decision("platform admin", action, got, want);
        }
    }
}

#[test]
fn platform_admin_may_grant_owner() {
    let resource = uos_authz::Resource {
        grants_owner: true,
        ..in_org("active")
    };
    let got = decide(&platform_admin(), Action::MemberSetRoles, &resource);
    assert_eq!(got, allow("platform_admin"));
}

#[test]
fn password_reset_required_limits_the_user_to_resetting() {
    let limited = [Action::MeRead, Action::MePassword, Action::AuthLogout];
    // A platform admin with a pending reset is limited just the same.
    for principal in [
        member_as("owner"),
        Principal {
            platform_admin: true,
            ..member_as("owner")
        },
    ] {
        let principal = Principal {
            status: Some("password_reset_required".to_owned()),
            ..principal
        };
        for &action in Action::ALL {
            let got = decide(&principal, action, &in_org("active"));
            if PUBLIC_ACTIONS.contains(&action) {
                assert_decision("password reset", action, got, allow("public"));
            } else if limited.contains(&action) {
                assert!(got.allow, "password reset, {action}: {got:?}");
            } else {
                assert_decision(
                    "password reset",
                    action,
                    got,
                    deny("password_reset_required"),
                );
            }
        }
    }
}

#[test]
fn inactive_users_are_denied_everything_but_public_actions() {
    for status in [
        Some("suspended"),
        Some("deactivated"),
        Some("deleted"),
        Some("pending_verification"),
        Some("something_new"),
        None,
    ] {
        let principal = Principal {
            status: status.map(str::to_owned),
            platform_admin: true,
            ..member_as("owner")
        };
        for &action in Action::ALL {
            let want = if PUBLIC_ACTIONS.contains(&action) {
                allow("public")
            } else {
                deny("inactive_principal")
            };
            let got = decide(&principal, action, &in_org("active"));
            assert_decision(&format!("status {status:?}"), action, got, want);
        }
    }
}

#[test]
fn a_user_kind_is_needed_for_anything_private() {
    // Status and admin flags on a non-user principal count for nothing.
    let principal = Principal {
        kind: PrincipalKind::Anonymous,
        platform_admin: true,
        ..member_as("owner")
    };
    let got = decide(&principal, Action::OrgDelete, &in_org("active"));
    assert_eq!(got, deny("authentication_required"));
}

#[test]
fn any_active_user_may_act_on_their_own_behalf() {
    let principal = user("active");
    for action in [
        Action::MeRead,
        Action::MeUpdate,
        Action::MePassword,
        Action::AuthLogout,
        Action::OrgCreate,
        Action::OrgList,
        Action::AuditKeys,
        Action::SessionList,
        Action::SessionRevoke,
        Action::MeMfa,
        Action::AuthIntrospect,
    ] {
        let got = decide(&principal, action, &Resource::default());
        assert_decision("active user", action, got, allow("authenticated"));
    }
}

#[test]
fn users_may_read_themselves_but_not_others() {
    let principal = user("active");
    let me = Resource {
        kind: ResourceKind::User,
        id: Some(CALLER.to_string()),
        is_self: true,
        ..Resource::default()
    };
    let someone = Resource {
        is_self: false,
        id: Some(OTHER_ORG.to_string()),
        ..me.clone()
    };
    assert_eq!(decide(&principal, Action::UserRead, &me), allow("self"));
    assert_eq!(
        decide(&principal, Action::UserRead, &someone),
        deny("platform_admin_required")
    );
}

#[test]
fn platform_user_management_needs_a_platform_admin() {
    let principal = member_as("owner");
    let me = Resource {
        kind: ResourceKind::User,
        is_self: true,
        ..Resource::default()
    };
    for action in [
        Action::UserList,
        Action::UserUpdate,
        Action::UserSetStatus,
        Action::UserDelete,
        Action::UserRestore,
        Action::UserRevokeSessions,
        Action::UserUnlock,
        Action::PasswordResetList,
        Action::PasswordResetApprove,
        Action::KeysRotate,
        Action::UserLegalHold,
        Action::OrgLegalHold,
        Action::PolicyBundle,
        Action::PolicyReload,
        Action::BreakGlassList,
        Action::BreakGlassApprove,
        Action::BreakGlassRevoke,
    ] {
        // Being the subject does not help: self-service goes through the `me.*` actions.
        let got = decide(&principal, action, &me);
        assert_decision("org owner", action, got, deny("platform_admin_required"));
    }
}

#[test]
fn the_platform_audit_log_needs_a_platform_admin() {
    let audit = Resource {
        kind: ResourceKind::Audit,
        ..Resource::default()
    };
    let got = decide(&member_as("auditor"), Action::AuditRead, &audit);
    assert_eq!(got, deny("platform_admin_required"));
    let org_audit = Resource {
        kind: ResourceKind::Audit,
        ..in_org("active")
    };
    let got = decide(&member_as("auditor"), Action::AuditRead, &org_audit);
    assert_eq!(got, allow("permission:audit:read"));
}

/// What the reconciler applies: an org file's changes and the reads that plan them.
const RECONCILER_ACTIONS: &[Action] = &[
    Action::OrgCreate,
    Action::OrgRead,
    Action::OrgUpdate,
    Action::MemberList,
    Action::MemberRead,
    Action::MemberSetRoles,
    Action::MemberRemove,
    Action::InviteList,
    Action::InviteCreate,
    Action::InviteRevoke,
    Action::RoleList,
    Action::RoleRead,
    Action::RoleCreate,
    Action::RoleUpdate,
    Action::RoleDelete,
    Action::ServiceAccountList,
    Action::ServiceAccountRead,
    Action::ServiceAccountCreate,
    Action::ServiceAccountUpdate,
    Action::ServiceAccountDelete,
    Action::BudgetRead,
    Action::BudgetWrite,
    Action::DeclarativeRecord,
];

#[test]
fn the_reconciler_may_make_declared_changes_only() {
    let reconciler = Principal::reconciler();
    for &action in Action::ALL {
        let want = if PUBLIC_ACTIONS.contains(&action) {
            allow("public")
        } else if RECONCILER_ACTIONS.contains(&action) {
            allow("reconciler")
        } else {
            deny("reconciler_scope")
        };
        let got = decide(&reconciler, action, &in_org("active"));
        assert_decision("reconciler", action, got, want);
    }
}

#[test]
fn the_reconciler_leaves_inactive_orgs_alone() {
    for status in ["suspended", "deleted"] {
        for &action in RECONCILER_ACTIONS {
            let got = decide(&Principal::reconciler(), action, &in_org(status));
            assert_decision(status, action, got, deny("org_inactive"));
        }
    }
}
