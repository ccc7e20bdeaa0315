//! The closed list of resource kinds: what an authorization question is about (`resource.kind`
//! in the policy input). The "Resource kinds" section of `docs/authorization.md` is generated
//! from this table.

use std::fmt;

use serde::Serialize;

/// Generates the enum, its wire names, descriptions and `ALL` from one list.
macro_rules! resource_kinds {
    ($($variant:ident => $name:literal, $about:literal;)+) => {
        /// What an action is about, serialized as its policy name (`"membership"`).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
        pub enum ResourceKind {
            /// The service as a whole: no particular object (the default).
            #[default]
            #[serde(rename = "platform")]
            Platform,
            $(#[serde(rename = $name)] $variant,)+
        }

        impl ResourceKind {
            /// Every kind, in the order of the document.
            pub const ALL: &'static [ResourceKind] =
                &[ResourceKind::Platform, $(ResourceKind::$variant,)+];

            /// The name the policies see.
            pub const fn as_str(self) -> &'static str {
                match self {
                    ResourceKind::Platform => "platform",
                    $(ResourceKind::$variant => $name,)+
                }
            }

            /// What a resource of this kind is, in one line.
            pub const fn about(self) -> &'static str {
                match self {
                    ResourceKind::Platform => {
                        "the service as a whole, for a question about no particular object"
                    }
                    $(ResourceKind::$variant => $about,)+
                }
            }
        }
    };
}

resource_kinds! {
    Org => "org", "an organization; `id` and `org_id` are the org's, `org_status` its status";
    User => "user", "a user account, for platform user management (`id` is the user)";
    SelfUser => "self", "the caller's own account and sessions (`/v1/me`, `auth.whoami`)";
    Session => "session", "a login session: logging in, refreshing, logging out";
    Membership => "membership", "a user's membership in an org (`id` is the user, `is_self` when it is the caller's)";
    Invite => "invite", "an invitation to an org (`id` is the invite)";
    Role => "role", "a custom role of an org (`id` is its name)";
    ServiceAccount => "service_account", "a service account of an org (`id` is the account)";
    ApiKey => "api_key", "an API key of a service account (`id` is the key)";
    Audit => "audit", "the audit trail: of one org when `org_id` is set, of the platform otherwise";
    Token => "token", "a token handed to `/v1/auth/introspect`";
    Key => "key", "the service's signing keys (rotation)";
    Budget => "budget", "a spend budget of an org, service account or member, and the usage counted against it (`id` is the scope and its id)";
    OAuth2 => "oauth2", "the OAuth2 token endpoint (client credentials, revocation)";
    PasswordReset => "password_reset", "a password-reset request: asking, completing, approving";
    PolicyBundle => "policy_bundle", "the policy bundle the service decides with: inspecting and reloading it";
    BudgetOverride => "budget_override", "a request to raise a budget of an org for a while, and the override it became (`id` is the request)";
    BreakGlass => "break_glass", "a request for emergency roles, and the grant it became (`id` is the request)";
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// First and last line of the generated section of `docs/authorization.md`.
pub const RESOURCE_KINDS_BEGIN: &str =
    "<!-- BEGIN resource kinds: generated from crates/uos-authz/src/kind.rs -->";
pub const RESOURCE_KINDS_END: &str = "<!-- END resource kinds -->";

/// The "Resource kinds" section of `docs/authorization.md`, markers included: generated from
/// [`ResourceKind::ALL`]; a test keeps the committed document equal to it.
pub fn resource_kinds_markdown() -> String {
    let mut out = format!(
        "{RESOURCE_KINDS_BEGIN}\n\
         <!-- Regenerate with UPDATE_DOCS=1 cargo test -p uos-authz --test it docs -->\n\
         | kind | what it is |\n\
         |---|---|\n"
    );
    for k in ResourceKind::ALL {
        out.push_str(&format!("| `{}` | {} |\n", k.as_str(), k.about()));
    }
    out.push_str(RESOURCE_KINDS_END);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn serde_name_is_as_str() {
        for &kind in ResourceKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, serde_json::Value::from(kind.as_str()));
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = ResourceKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ResourceKind::ALL.len());
        assert_eq!(ResourceKind::ALL.len(), 19);
    }
}
