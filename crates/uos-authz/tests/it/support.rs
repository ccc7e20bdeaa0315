//! Builders and the expected-permission table the tests hold the policy to.

use std::sync::OnceLock;

use uos_authz::{
    builtin_role_permissions, Action, Authorizer, Decision, OrgContext, Principal, Resource,
    ResourceKind,
};
use uuid::Uuid;

pub const ORG: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
pub const OTHER_ORG: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
pub const CALLER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_00aa);

/// Every org-scoped action and the permission it needs, written out independently of the
/// policy so the two check each other.
pub const ORG_ACTIONS: &[(Action, &str)] = &[
    (Action::OrgRead, "org:read"),
    (Action::OrgUpdate, "org:update"),
    (Action::OrgDelete, "org:delete"),
    (Action::OrgRestore, "org:delete"),
    (Action::OrgSuspend, "org:suspend"),
    (Action::OrgResume, "org:suspend"),
    (Action::MemberList, "users:read"),
    (Action::MemberRead, "users:read"),
    (Action::MemberRemove, "users:write"),
    (Action::MemberSetRoles, "users:write"),
    (Action::MemberSuspend, "users:write"),
    (Action::MemberReactivate, "users:write"),
    (Action::InviteCreate, "invites:write"),
    (Action::InviteRevoke, "invites:write"),
    (Action::InviteList, "invites:read"),
    (Action::RoleList, "roles:read"),
    (Action::RoleRead, "roles:read"),
    (Action::RoleCreate, "roles:write"),
    (Action::RoleUpdate, "roles:write"),
    (Action::RoleDelete, "roles:write"),
    (Action::AuditRead, "audit:read"),
    (Action::ServiceAccountList, "service_accounts:read"),
    (Action::ServiceAccountRead, "service_accounts:read"),
    (Action::ServiceAccountCreate, "service_accounts:write"),
    (Action::ServiceAccountUpdate, "service_accounts:write"),
    (Action::ServiceAccountDelete, "service_accounts:write"),
    (Action::ApiKeyList, "service_accounts:read"),
    (Action::ApiKeyRead, "service_accounts:read"),
    (Action::ApiKeyCreate, "service_accounts:write"),
    (Action::ApiKeyRevoke, "service_accounts:write"),
    (Action::ApiKeyRotate, "service_accounts:write"),
    (Action::ApiKeyRelease, "service_accounts:write"),
    (Action::ClientSecretIssue, "service_accounts:write"),
    (Action::PolicyEvaluate, "policy:evaluate"),
    (Action::BudgetRead, "billing:read"),
    (Action::BudgetWrite, "billing:write"),
    (Action::UsageRecord, "usage:write"),
    (Action::BudgetOverrideRequest, "billing:write"),
    (Action::BudgetOverrideList, "billing:read"),
    (Action::BudgetOverrideApprove, "billing:approve"),
    (Action::BudgetOverrideRevoke, "billing:approve"),
];

pub const PUBLIC_ACTIONS: &[Action] = &[
    Action::AuthLogin,
    Action::AuthRefresh,
    Action::AuthMfa,
    Action::AuthPasswordForgot,
    Action::AuthPasswordReset,
    Action::AuthOidc,
    Action::InviteAccept,
    Action::OAuthToken,
    Action::OAuthRevoke,
    Action::PolicyKeys,
    Action::DeclarativeSchema,
    Action::DeclarativeWebhook,
];

/// Parsing is done once per test binary; the tests share it like the service does.
pub fn authz() -> &'static Authorizer {
    static AUTHZ: OnceLock<Authorizer> = OnceLock::new();
    AUTHZ.get_or_init(|| Authorizer::new().expect("embedded policies load"))
}

pub fn user(status: &str) -> Principal {
    Principal::user(CALLER, status)
}

/// An active user who is an active member of [`ORG`] with exactly these roles and permissions.
pub fn member_with(roles: &[&str], permissions: &[&str]) -> Principal {
    Principal {
        org: Some(OrgContext {
            org_id: ORG,
            membership_status: "active".to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }),
        ..user("active")
    }
}

/// An active member holding one built-in role, permissions expanded as the service would.
pub fn member_as(role: &str) -> Principal {
    let perms = builtin_role_permissions(role).expect("built-in role");
    member_with(&[role], perms)
}

pub fn platform_admin() -> Principal {
    Principal {
        platform_admin: true,
        ..user("active")
    }
}

/// A resource in [`ORG`], whose status is `org_status`.
pub fn in_org(org_status: &str) -> Resource {
    Resource {
        kind: ResourceKind::Org,
        id: Some(ORG.to_string()),
        org_id: Some(ORG),
        org_status: Some(org_status.to_owned()),
        ..Resource::default()
    }
}

pub fn decide(principal: &Principal, action: Action, resource: &Resource) -> Decision {
    authz()
        .decide(principal, action, resource)
        .unwrap_or_else(|e| panic!("{action}: policy failed to decide: {e}"))
}

pub fn allow(rule: &str) -> Decision {
    Decision {
        allow: true,
        rule: rule.to_owned(),
    }
}

pub fn deny(rule: &str) -> Decision {
    Decision {
        allow: false,
        rule: rule.to_owned(),
    }
}

/// Compares a decision with what was expected, naming the case on failure.
#[track_caller]
pub fn assert_decision(case: &str, action: Action, got: Decision, want: Decision) {
    assert_eq!(
        got, want,
        "{case}, {action}: expected {want:?}, policy said {got:?}"
    );
}
