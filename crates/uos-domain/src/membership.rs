//! Membership: one user's standing in one org (roles and a membership-level suspension).

use crate::{DomainError, MembershipId, OrgId, RoleName, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipStatus {
    Active,
    /// Suspended in this org only; the user keeps access to their other orgs.
    Suspended,
}

impl MembershipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(DomainError::invalid(
                "invalid_status",
                "membership status must be active or suspended",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub id: MembershipId,
    pub org_id: OrgId,
    pub user_id: UserId,
    /// Directly assigned roles (built-in or custom); never empty.
    pub roles: Vec<RoleName>,
    pub status: MembershipStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Membership {
    pub fn new(org_id: OrgId, user_id: UserId, roles: Vec<RoleName>, now: DateTime<Utc>) -> Self {
        Self {
            id: MembershipId::new(),
            org_id,
            user_id,
            roles,
            status: MembershipStatus::Active,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    pub fn is_owner(&self) -> bool {
        self.roles.iter().any(RoleName::is_owner)
    }

    /// An *active* owner: the one kind of member an org must always keep.
    pub fn is_active_owner(&self) -> bool {
        self.status == MembershipStatus::Active && self.is_owner()
    }

    pub fn set_status(
        &mut self,
        to: MembershipStatus,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if self.status == to {
            return Err(DomainError::Transition {
                from: self.status.as_str().into(),
                to: to.as_str().into(),
            });
        }
        self.status = to;
        self.updated_at = now;
        self.version += 1;
        Ok(())
    }

    pub fn set_roles(&mut self, roles: Vec<RoleName>, now: DateTime<Utc>) {
        self.roles = roles;
        self.updated_at = now;
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn suspend_and_reactivate() {
        let now = Utc::now();
        let mut m = Membership::new(
            OrgId::new(),
            UserId::new(),
            vec![RoleName::parse("owner").unwrap()],
            now,
        );
        assert!(m.is_active_owner());
        m.set_status(MembershipStatus::Suspended, now).unwrap();
        assert!(!m.is_active_owner());
        assert!(m.set_status(MembershipStatus::Suspended, now).is_err());
        m.set_status(MembershipStatus::Active, now).unwrap();
        assert_eq!(m.version, 3);
    }
}
