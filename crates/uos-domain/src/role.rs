//! Roles and permissions: the built-in org roles, custom roles with inheritance (no cycles),
//! and the expansion of a member's roles into the permission set the policy engine checks.

use crate::{DomainError, OrgId, RoleId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Every org-level permission. A custom role may only name these; the Rego policy maps each
/// action to one of them.
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
    "service_accounts:read",
    "service_accounts:write",
    // Asking the decision point about a principal of the org, and reporting its spend: what
    // gateways and metering services hold, kept apart from `billing:write` so that a meter
    // cannot raise its own budget.
    "policy:evaluate",
    "usage:write",
    // Approving budget overrides: one of two distinct approvers, never the requester.
    "billing:approve",
];

/// The org roles every org has; custom roles may not reuse these names. `owner` is special
/// beyond its permissions: only an owner may grant or remove `owner`, and an org always keeps
/// one active owner.
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
    "service_accounts:read",
    "service_accounts:write",
    "policy:evaluate",
    "usage:write",
    "billing:approve",
];
const MEMBER: &[&str] = &["org:read", "users:read", "roles:read"];
const BILLING: &[&str] = &["org:read", "billing:read", "billing:write"];
const AUDITOR: &[&str] = &[
    "org:read",
    "users:read",
    "roles:read",
    "invites:read",
    "audit:read",
    "service_accounts:read",
];

/// The permissions a built-in role grants, or `None` if `name` is not a built-in role.
pub fn builtin_permissions(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "owner" => Some(PERMISSIONS),
        "admin" => Some(ADMIN),
        "member" => Some(MEMBER),
        "billing" => Some(BILLING),
        "auditor" => Some(AUDITOR),
        _ => None,
    }
}

/// A role name: `^[a-z][a-z0-9_-]{0,62}$`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let b = raw.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_lowercase()
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(DomainError::invalid(
                "invalid_role",
                "role name must be 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter",
            ))
        }
    }

    pub fn owner() -> Self {
        Self("owner".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_builtin(&self) -> bool {
        builtin_permissions(&self.0).is_some()
    }

    pub fn is_owner(&self) -> bool {
        self.0 == "owner"
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoleName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoleName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One entry of [`PERMISSIONS`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Permission(String);

impl Permission {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if PERMISSIONS.contains(&raw) {
            Ok(Self(raw.to_string()))
        } else {
            Err(DomainError::invalid(
                "unknown_permission",
                format!("unknown permission {raw:?}"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Permission::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An org-defined role: its own permissions plus everything of the roles it inherits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomRole {
    pub id: RoleId,
    pub org_id: OrgId,
    pub name: RoleName,
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
    pub inherits: Vec<RoleName>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Check an org's custom roles as a whole: names must not shadow built-ins, every inherited
/// role must exist, and inheritance must be acyclic. Run it on the *proposed* set before any
/// create or update is stored.
pub fn validate_role_graph(custom: &[CustomRole]) -> Result<(), DomainError> {
    let by_name: BTreeMap<&str, &CustomRole> =
        custom.iter().map(|r| (r.name.as_str(), r)).collect();
    for r in custom {
        if r.name.is_builtin() {
            return Err(DomainError::invalid(
                "builtin_role",
                format!("{} is a built-in role", r.name),
            ));
        }
        for parent in &r.inherits {
            if !parent.is_builtin() && !by_name.contains_key(parent.as_str()) {
                return Err(DomainError::invalid(
                    "unknown_role",
                    format!("{} inherits unknown role {parent}", r.name),
                ));
            }
        }
    }
    // Depth-first search with an explicit "on the current path" set: a back edge is a cycle.
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a CustomRole>,
        on_path: &mut BTreeSet<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Result<(), DomainError> {
        if done.contains(name) {
            return Ok(());
        }
        if !on_path.insert(name) {
            return Err(DomainError::RoleCycle { role: name.into() });
        }
        if let Some(role) = by_name.get(name) {
            for parent in &role.inherits {
                visit(parent.as_str(), by_name, on_path, done)?;
            }
        }
        on_path.remove(name);
        done.insert(name);
        Ok(())
    }
    let (mut on_path, mut done) = (BTreeSet::new(), BTreeSet::new());
    for name in by_name.keys() {
        visit(name, &by_name, &mut on_path, &mut done)?;
    }
    Ok(())
}

/// Expand assigned roles through inheritance: all role names reached and the union of their
/// permissions. Unknown names contribute nothing (a deleted custom role grants nothing), and a
/// cycle cannot loop because each role is visited once.
pub fn expand_permissions(
    assigned: &[RoleName],
    custom: &[CustomRole],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let by_name: BTreeMap<&str, &CustomRole> =
        custom.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut roles = BTreeSet::new();
    let mut perms = BTreeSet::new();
    let mut stack: Vec<&str> = assigned.iter().map(RoleName::as_str).collect();
    while let Some(name) = stack.pop() {
        if !roles.insert(name.to_string()) {
            continue;
        }
        if let Some(p) = builtin_permissions(name) {
            perms.extend(p.iter().map(|s| s.to_string()));
        } else if let Some(r) = by_name.get(name) {
            perms.extend(r.permissions.iter().map(|p| p.as_str().to_string()));
            stack.extend(r.inherits.iter().map(RoleName::as_str));
        }
    }
    (roles, perms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn role(name: &str, perms: &[&str], inherits: &[&str]) -> CustomRole {
        let now = Utc::now();
        CustomRole {
            id: RoleId::new(),
            org_id: OrgId(uuid::Uuid::nil()),
            name: RoleName::parse(name).unwrap(),
            description: None,
            permissions: perms
                .iter()
                .map(|p| Permission::parse(p).unwrap())
                .collect(),
            inherits: inherits
                .iter()
                .map(|p| RoleName::parse(p).unwrap())
                .collect(),
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn builtins_are_subsets_of_the_catalogue() {
        for name in BUILTIN_ROLES {
            for p in builtin_permissions(name).unwrap() {
                assert!(PERMISSIONS.contains(p), "{name} grants unknown {p}");
            }
        }
        assert!(!builtin_permissions("admin")
            .unwrap()
            .contains(&"org:delete"));
    }

    #[test]
    fn inheritance_expands() {
        let roles = [
            role("support", &["invites:write"], &["member"]),
            role("lead", &["users:write"], &["support"]),
        ];
        validate_role_graph(&roles).unwrap();
        let (names, perms) = expand_permissions(&[RoleName::parse("lead").unwrap()], &roles);
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["lead", "member", "support"]
        );
        for p in [
            "users:write",
            "invites:write",
            "org:read",
            "users:read",
            "roles:read",
        ] {
            assert!(perms.contains(p), "{p}");
        }
        assert!(!perms.contains("org:delete"));
    }

    #[test]
    fn cycles_and_unknowns_rejected() {
        let cyc = [
            role("a", &[], &["b"]),
            role("b", &[], &["c"]),
            role("c", &[], &["a"]),
        ];
        assert!(matches!(
            validate_role_graph(&cyc),
            Err(DomainError::RoleCycle { .. })
        ));
        assert!(validate_role_graph(&[role("a", &[], &["a"])]).is_err());
        assert!(validate_role_graph(&[role("a", &[], &["ghost"])]).is_err());
        assert!(validate_role_graph(&[role("admin", &[], &[])]).is_err());
        // expansion terminates even on a cyclic (unvalidated) graph
        let (names, _) = expand_permissions(&[RoleName::parse("a").unwrap()], &cyc);
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn names_and_permissions_parse() {
        assert!(RoleName::parse("support-lead_2").is_ok());
        for bad in ["", "1abc", "Admin", "a b", &"a".repeat(64)] {
            assert!(RoleName::parse(bad).is_err(), "{bad}");
        }
        assert!(Permission::parse("users:read").is_ok());
        assert!(Permission::parse("users:fly").is_err());
    }

    proptest! {
        /// Random graphs over 6 names: validation accepts exactly the acyclic ones.
        #[test]
        fn validation_accepts_exactly_acyclic_graphs(edges in proptest::collection::vec((0usize..6, 0usize..6), 0..12)) {
            let names = ["r0", "r1", "r2", "r3", "r4", "r5"];
            let roles: Vec<CustomRole> = names.iter().enumerate().map(|(i, n)| {
                let inh: Vec<&str> = edges.iter().filter(|(a, _)| *a == i).map(|(_, b)| names[*b]).collect();
                role(n, &[], &inh)
            }).collect();
            // Reference: Kahn's algorithm.
            let mut indeg = [0usize; 6];
            let mut uniq: BTreeSet<(usize, usize)> = BTreeSet::new();
            for e in &edges { uniq.insert(*e); }
            for (_, b) in &uniq { indeg[*b] += 1; }
            let mut queue: Vec<usize> = (0..6).filter(|i| indeg[*i] == 0).collect();
            let mut seen = 0;
            while let Some(n) = queue.pop() {
                seen += 1;
                for (a, b) in &uniq { if *a == n { indeg[*b] -= 1; if indeg[*b] == 0 { queue.push(*b); } } }
            }
            prop_assert_eq!(validate_role_graph(&roles).is_ok(), seen == 6);
        }
    }
}
