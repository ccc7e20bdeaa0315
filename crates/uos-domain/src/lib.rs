//! Domain types of user-org-service: parsed values, entities and their state machines.
//!
//! Everything here is pure (no I/O, no clock reads, no randomness beyond id generation), so it
//! can be unit- and property-tested exhaustively. Values are parsed once at the edge and are
//! valid for as long as they exist ("parse, don't validate").

pub mod approval;
pub mod budget;
pub mod email;
pub mod error;
pub mod ids;
pub mod invite;
pub mod machine;
pub mod membership;
pub mod org;
pub mod role;
pub mod slug;
pub mod text;
pub mod user;

pub use approval::{
    Approval, ApprovalKind, ApprovalRefusal, ApprovalRequest, ApprovalStatus, Approved, Approver,
    REQUIRED_APPROVERS,
};
pub use budget::{Budget, BudgetKey, BudgetScope, BudgetSettings, BudgetState, Period};
pub use email::Email;
pub use error::DomainError;
pub use ids::{
    new_id, now, ApiKeyId, InviteId, MembershipId, OrgId, RoleId, ServiceAccountId, SessionId,
    UserId,
};
pub use invite::{Invite, InviteState};
pub use machine::{
    key_lifetime_days, ApiKey, KeyRefusal, RotationPolicy, ServiceAccount, ServiceAccountStatus,
    API_KEY_MAX_DAYS,
};
pub use membership::{Membership, MembershipStatus};
pub use org::{Org, OrgStatus};
pub use role::{
    builtin_permissions, expand_permissions, validate_role_graph, CustomRole, Permission, RoleName,
    BUILTIN_ROLES, PERMISSIONS,
};
pub use slug::OrgSlug;
pub use text::{DisplayName, Locale, Timezone};
pub use user::{StatusCause, User, UserStatus};
