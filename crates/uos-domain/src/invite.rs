//! Invites: a single-use, expiring token that lets an email address join an org.

use crate::{Email, InviteId, OrgId, RoleName, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Only `token_hash` is stored: the token itself goes to the invitee once and a leaked
/// database cannot be replayed into memberships.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: InviteId,
    pub org_id: OrgId,
    pub email: Email,
    pub roles: Vec<RoleName>,
    #[serde(skip_serializing, default)]
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub version: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

impl InviteState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// Bounds of `expires_in_hours`: at least an hour, at most 30 days.
pub const INVITE_MIN_HOURS: i64 = 1;
pub const INVITE_MAX_HOURS: i64 = 24 * 30;
pub const INVITE_DEFAULT_HOURS: i64 = 24 * 7;

impl Invite {
    /// Accepted and revoked win over expiry: an accepted invite stays "accepted" forever.
    pub fn state(&self, now: DateTime<Utc>) -> InviteState {
        if self.accepted_at.is_some() {
            InviteState::Accepted
        } else if self.revoked_at.is_some() {
            InviteState::Revoked
        } else if now >= self.expires_at {
            InviteState::Expired
        } else {
            InviteState::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Duration;

    #[test]
    fn states() {
        let now = Utc::now();
        let mut i = Invite {
            id: InviteId::new(),
            org_id: OrgId::new(),
            email: Email::parse("x@y.z").unwrap(),
            roles: vec![RoleName::parse("member").unwrap()],
            token_hash: "h".into(),
            expires_at: now + Duration::hours(1),
            created_by: None,
            created_at: now,
            accepted_at: None,
            revoked_at: None,
            version: 1,
        };
        assert_eq!(i.state(now), InviteState::Pending);
        assert_eq!(i.state(now + Duration::hours(2)), InviteState::Expired);
        i.revoked_at = Some(now);
        assert_eq!(i.state(now), InviteState::Revoked);
        i.accepted_at = Some(now);
        assert_eq!(i.state(now + Duration::hours(2)), InviteState::Accepted);
    }
}
