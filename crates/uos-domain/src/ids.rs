//! Typed UUIDv7 identifiers, so an org id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// A new time-ordered id. UUIDv7 sorts by creation time, which is what keyset pagination
/// orders by ("creation order unless stated").
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(new_id())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

typed_id!(/// Identifies an organization.
    OrgId);
typed_id!(/// Identifies a user (global: one user can belong to many orgs).
    UserId);
typed_id!(/// Identifies a user's membership in one org.
    MembershipId);
typed_id!(/// Identifies an invite.
    InviteId);
typed_id!(/// Identifies a custom role.
    RoleId);
typed_id!(/// Identifies a login session.
    SessionId);
typed_id!(/// Identifies a service account (also its OAuth2 `client_id`).
    ServiceAccountId);
typed_id!(/// Identifies an API key.
    ApiKeyId);

/// The current time at the precision every store keeps (microseconds), so a value returned
/// from a write equals the value read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(6)
}
