//! The org permission catalogue and the built-in roles. The policy checks permissions, never
//! role names (except "owner"), so callers expand roles with these tables before asking.

/// Every org-level permission. `policies/tables.rego` carries the same list (a test checks).
pub const PERMISSIONS: &[&str] = &[
    "org:read",
    "org:update",
    "org:delete",
    "org:suspend",
    "users:read",
    "users:write",
    "invites:read",
    "invites:write",
    "roles:read",
    "roles:write",
    "audit:read",
    "billing:read",
    "billing:write",
];

/// The org roles every org has; custom roles may not reuse these names.
pub const BUILTIN_ROLES: &[&str] = &["owner", "admin", "member", "billing", "auditor"];

// Admin is everything except deleting the org: deletion stays with owners.
const ADMIN: &[&str] = &[
    "org:read",
    "org:update",
    "org:suspend",
    "users:read",
    "users:write",
    "invites:read",
    "invites:write",
    "roles:read",
    "roles:write",
    "audit:read",
    "billing:read",
    "billing:write",
];
const MEMBER: &[&str] = &["org:read", "users:read", "roles:read"];
const BILLING: &[&str] = &["org:read", "billing:read", "billing:write"];
const AUDITOR: &[&str] = &[
    "org:read",
    "users:read",
    "roles:read",
    "invites:read",
    "audit:read",
];

/// The permissions a built-in role grants, or `None` if `name` is not a built-in role.
pub fn builtin_role_permissions(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "owner" => Some(PERMISSIONS),
        "admin" => Some(ADMIN),
        "member" => Some(MEMBER),
        "billing" => Some(BILLING),
        "auditor" => Some(AUDITOR),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_role_has_permissions_from_the_catalogue() {
        for role in BUILTIN_ROLES {
            let perms = builtin_role_permissions(role);
            assert!(perms.is_some(), "built-in role {role} has no permissions");
            for p in perms.unwrap_or_default() {
                assert!(PERMISSIONS.contains(p), "{role} grants unknown {p}");
            }
        }
        assert_eq!(builtin_role_permissions("custom"), None);
    }

    #[test]
    fn admin_is_owner_minus_org_delete() {
        let expected: Vec<_> = PERMISSIONS.iter().filter(|p| **p != "org:delete").collect();
        let admin: Vec<_> = ADMIN.iter().collect();
        assert_eq!(admin, expected);
    }
}
