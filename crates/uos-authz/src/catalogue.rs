//! The org permission catalogue and the built-in roles, owned by the domain crate and
//! re-exported here because the policy checks permissions, never role names (except
//! "owner"): callers expand roles with these tables before asking.

pub use uos_domain::role::{
    builtin_permissions as builtin_role_permissions, BUILTIN_ROLES, PERMISSIONS,
};

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
        let admin: Vec<_> = builtin_role_permissions("admin")
            .unwrap_or_default()
            .iter()
            .collect();
        assert_eq!(admin, expected);
    }
}
