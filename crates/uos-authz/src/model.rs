//! The facts a caller hands the policy: who is asking, and about what. These serialize to the
//! policy `input`; absent optional fields are left out so that Rego sees them as undefined.

use serde::Serialize;
use uuid::Uuid;

use crate::ResourceKind;

/// Who a principal is, as far as authorization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// An authenticated person.
    User,
    /// A service account, by API key or client-credentials token.
    ServiceAccount,
    /// No credentials were presented.
    Anonymous,
    /// The reconciler applying a declarative config repo: it may make the changes an org
    /// file declares, and nothing else.
    Reconciler,
}

/// The caller, with their standing in the resource's org already looked up.
#[derive(Clone, Debug, Serialize)]
pub struct Principal {
    pub kind: PrincipalKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    pub platform_admin: bool,
    /// User status: "active", "password_reset_required", "suspended", ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The caller's membership in the resource's org; `None` when not a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<OrgContext>,
}

impl Principal {
    /// A caller that presented no credentials.
    pub fn anonymous() -> Self {
        Self {
            kind: PrincipalKind::Anonymous,
            id: None,
            platform_admin: false,
            status: None,
            org: None,
        }
    }

    /// A service account (always "active" when it gets this far) with its standing in its
    /// own org: roles expanded, permissions already narrowed to the credential's scopes.
    pub fn service_account(id: Uuid, org: OrgContext) -> Self {
        Self {
            kind: PrincipalKind::ServiceAccount,
            id: Some(id),
            platform_admin: false,
            status: Some("active".into()),
            org: Some(org),
        }
    }

    /// The reconciler, which acts in whichever org a file declares.
    pub fn reconciler() -> Self {
        Self {
            kind: PrincipalKind::Reconciler,
            id: None,
            platform_admin: false,
            status: Some("active".into()),
            org: None,
        }
    }

    /// A user with the given status, no platform role and no org context yet.
    pub fn user(id: Uuid, status: impl Into<String>) -> Self {
        Self {
            kind: PrincipalKind::User,
            id: Some(id),
            platform_admin: false,
            status: Some(status.into()),
            org: None,
        }
    }
}

/// A caller's membership in one org.
#[derive(Clone, Debug, Serialize)]
pub struct OrgContext {
    pub org_id: Uuid,
    /// "active" or "suspended".
    pub membership_status: String,
    /// Direct and inherited role names, expanded by the caller.
    pub roles: Vec<String>,
    /// Every permission those roles grant, expanded by the caller.
    pub permissions: Vec<String>,
}

/// What the action is about.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Resource {
    /// What kind of object this is (see `docs/authorization.md`, "Resource kinds").
    pub kind: ResourceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<Uuid>,
    /// "active" | "suspended" | "deleted".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_status: Option<String>,
    /// The change grants or removes the owner role.
    pub grants_owner: bool,
    /// The resource is the caller's own user or membership.
    pub is_self: bool,
    /// Permissions the change hands to a service account or key; the caller must hold each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants_permissions: Vec<String>,
}
