//! Service accounts: org-scoped principals whose permissions are their roles narrowed to the
//! credential's scopes; nothing outside their org, and no handing out more than they hold.

use uos_authz::{Action, OrgContext, Principal, Resource};

use crate::support::*;

fn machine(org: uuid::Uuid, permissions: &[&str]) -> Principal {
    Principal::service_account(
        CALLER,
        OrgContext {
            org_id: org,
            membership_status: "active".to_owned(),
            roles: vec!["admin".to_owned()],
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        },
    )
}

#[test]
fn a_service_account_acts_in_its_org_by_permission() {
    let all: Vec<&str> = uos_authz::PERMISSIONS.to_vec();
    let sa = machine(ORG, &all);
    for (action, perm) in ORG_ACTIONS {
        let got = decide(&sa, *action, &in_org("active"));
        assert_decision(
            "service account",
            *action,
            got,
            allow(&format!("permission:{perm}")),
        );
    }
    let none = machine(ORG, &[]);
    for (action, perm) in ORG_ACTIONS {
        let got = decide(&none, *action, &in_org("active"));
        assert_decision(
            "unscoped service account",
            *action,
            got,
            deny(&format!("missing_permission:{perm}")),
        );
    }
}

#[test]
fn a_service_account_sees_nothing_of_another_org() {
    let all: Vec<&str> = uos_authz::PERMISSIONS.to_vec();
    let sa = machine(OTHER_ORG, &all);
    for (action, _) in ORG_ACTIONS {
        let got = decide(&sa, *action, &in_org("active"));
        assert_decision("foreign service account", *action, got, deny("not_member"));
    }
}

#[test]
fn a_service_account_does_no_self_or_platform_actions() {
    let all: Vec<&str> = uos_authz::PERMISSIONS.to_vec();
    let sa = machine(ORG, &all);
    for &action in Action::ALL {
        if PUBLIC_ACTIONS.contains(&action) || ORG_ACTIONS.iter().any(|(a, _)| *a == action) {
            continue;
        }
        let want = match action {
            Action::AuthIntrospect | Action::AuthWhoami => allow("authenticated"),
            _ => deny("user_required"),
        };
        assert_decision(
            "service account",
            action,
            decide(&sa, action, &Resource::default()),
            want,
        );
    }
}

#[test]
fn nobody_grants_a_permission_they_lack() {
    let resource = |grants: &[&str]| Resource {
        grants_permissions: grants.iter().map(|p| (*p).to_owned()).collect(),
        ..in_org("active")
    };
    let admin = member_as("admin");
    let ok = decide(
        &admin,
        Action::ApiKeyCreate,
        &resource(&["users:read", "audit:read"]),
    );
    assert_eq!(ok, allow("permission:service_accounts:write"));
    let escalate = decide(
        &admin,
        Action::ApiKeyCreate,
        &resource(&["users:read", "org:delete"]),
    );
    assert_eq!(escalate, deny("permission_escalation"));
    let sa = machine(ORG, &["service_accounts:write", "users:read"]);
    let got = decide(
        &sa,
        Action::ServiceAccountCreate,
        &resource(&["users:write"]),
    );
    assert_eq!(got, deny("permission_escalation"));
    let got = decide(
        &sa,
        Action::ServiceAccountCreate,
        &resource(&["users:read"]),
    );
    assert_eq!(got, allow("permission:service_accounts:write"));
    // Platform admins are above the org rules.
    let got = decide(
        &platform_admin(),
        Action::ApiKeyCreate,
        &resource(&["org:delete"]),
    );
    assert_eq!(got, allow("platform_admin"));
}
