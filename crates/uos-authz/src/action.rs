//! The closed list of things a caller can ask to do; its names are the `action` strings the
//! policies match on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AuthzError;

/// Generates the enum, its wire names, `as_str`, and `ALL` from one list so they cannot drift.
macro_rules! actions {
    ($($variant:ident => $name:literal,)+) => {
        /// An action an endpoint performs, serialized as its policy name (`"org.create"`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum Action {
            $(#[serde(rename = $name)] $variant,)+
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)+];

            /// The name the policies see, e.g. `"member.set_roles"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }
        }
    };
}

actions! {
    OrgCreate => "org.create",
    OrgList => "org.list",
    OrgRead => "org.read",
    OrgUpdate => "org.update",
    OrgDelete => "org.delete",
    OrgSuspend => "org.suspend",
    OrgResume => "org.resume",
    OrgRestore => "org.restore",
    UserList => "user.list",
    UserRead => "user.read",
    UserUpdate => "user.update",
    UserSetStatus => "user.set_status",
    UserDelete => "user.delete",
    UserRestore => "user.restore",
    MemberList => "member.list",
    MemberRead => "member.read",
    MemberRemove => "member.remove",
    MemberSetRoles => "member.set_roles",
    MemberSuspend => "member.suspend",
    MemberReactivate => "member.reactivate",
    InviteCreate => "invite.create",
    InviteList => "invite.list",
    InviteRevoke => "invite.revoke",
    InviteAccept => "invite.accept",
    RoleCreate => "role.create",
    RoleList => "role.list",
    RoleRead => "role.read",
    RoleUpdate => "role.update",
    RoleDelete => "role.delete",
    AuditRead => "audit.read",
    AuditKeys => "audit.keys",
    AuthLogin => "auth.login",
    AuthLogout => "auth.logout",
    MeRead => "me.read",
    MeUpdate => "me.update",
    MePassword => "me.password",
    AuthRefresh => "auth.refresh",
    SessionList => "session.list",
    SessionRevoke => "session.revoke",
    UserRevokeSessions => "user.revoke_sessions",
    AuthMfa => "auth.mfa",
    AuthPasswordForgot => "auth.password_forgot",
    AuthPasswordReset => "auth.password_reset",
    AuthOidc => "auth.oidc",
    AuthIntrospect => "auth.introspect",
    MeMfa => "me.mfa",
    UserUnlock => "user.unlock",
    PasswordResetList => "password_reset.list",
    PasswordResetApprove => "password_reset.approve",
    KeysRotate => "keys.rotate",
    ServiceAccountCreate => "service_account.create",
    ServiceAccountList => "service_account.list",
    ServiceAccountRead => "service_account.read",
    ServiceAccountUpdate => "service_account.update",
    ServiceAccountDelete => "service_account.delete",
    ApiKeyCreate => "api_key.create",
    ApiKeyList => "api_key.list",
    ApiKeyRead => "api_key.read",
    ApiKeyRevoke => "api_key.revoke",
    ApiKeyRotate => "api_key.rotate",
    ApiKeyRelease => "api_key.release",
    ClientSecretIssue => "client_secret.issue",
    AuthWhoami => "auth.whoami",
    OAuthToken => "oauth2.token",
    OAuthRevoke => "oauth2.revoke",
    UserLegalHold => "user.legal_hold",
    OrgLegalHold => "org.legal_hold",
    PolicyEvaluate => "policy.evaluate",
    PolicyKeys => "policy.keys",
    PolicyBundle => "policy.bundle",
    PolicyReload => "policy.reload",
    BudgetRead => "budget.read",
    BudgetWrite => "budget.write",
    UsageRecord => "usage.record",
    WebhookList => "webhook.list",
    BudgetOverrideRequest => "budget_override.request",
    BudgetOverrideList => "budget_override.list",
    BudgetOverrideApprove => "budget_override.approve",
    BudgetOverrideRevoke => "budget_override.revoke",
    BreakGlassRequest => "break_glass.request",
    BreakGlassList => "break_glass.list",
    BreakGlassApprove => "break_glass.approve",
    BreakGlassRevoke => "break_glass.revoke",
    DeclarativeSchema => "declarative.schema",
    DeclarativeStatus => "declarative.status",
    DeclarativePause => "declarative.pause",
    DeclarativeSync => "declarative.sync",
    DeclarativeWebhook => "declarative.webhook",
    DeclarativeRecord => "declarative.record",
    DeclarativePlan => "declarative.plan",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = AuthzError;

    /// Parses a policy name; the policy decision endpoint receives actions as strings.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| AuthzError::UnknownAction(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn serde_name_is_as_str_and_round_trips() {
        for &action in Action::ALL {
            let json = serde_json::to_value(action).unwrap();
            assert_eq!(json, serde_json::Value::from(action.as_str()));
            let back: Action = serde_json::from_value(json).unwrap();
            assert_eq!(back, action);
            assert_eq!(action.as_str().parse::<Action>().unwrap(), action);
        }
    }

    #[test]
    fn all_has_every_action_once() {
        let mut names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(Action::ALL.len(), 90);
    }

    #[test]
    fn unknown_name_is_an_error() {
        assert!(matches!(
            "org.explode".parse::<Action>(),
            Err(AuthzError::UnknownAction(name)) if name == "org.explode"
        ));
    }
}
