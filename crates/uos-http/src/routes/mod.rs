//! Handlers, one module per area of the contract. Handlers only translate: parse the request
//! into domain values, call one use case, shape the reply.

pub mod approvals;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod declarative;
pub mod federation;
pub mod health;
pub mod invites;
pub mod machine;
pub mod me;
pub mod members;
pub mod mfa;
pub mod oauth;
pub mod orgs;
pub mod policy;
pub mod resets;
pub mod roles;
pub mod tokens;
pub mod users;
pub mod webhooks;

use crate::problem::ApiError;
use serde::{de, Deserialize, Deserializer};
use uos_domain::invite::{INVITE_MAX_HOURS, INVITE_MIN_HOURS};
use uos_domain::{OrgSlug, RoleName, UserId};

pub(crate) fn slug(raw: &str) -> Result<OrgSlug, ApiError> {
    OrgSlug::parse(raw).map_err(|e| ApiError::field("slug", "invalid_slug", e.to_string()))
}

pub(crate) fn uuid(field: &str, raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| ApiError::field(field, "invalid", format!("{field} must be a UUID")))
}

pub(crate) fn user_id(raw: &str) -> Result<UserId, ApiError> {
    uuid("user_id", raw).map(UserId)
}

// Body field types whose checks need nothing but the value itself. Checking them while the
// body is parsed puts their failures in the same `errors` list as every other bad field
// (the contract asks for all of them at once); the use cases still check again.

/// `roles` of a membership or an invite: 1 to [`uos_service::MAX_ROLES`] role names.
#[derive(Debug)]
pub struct RoleList(pub Vec<RoleName>);

impl<'de> Deserialize<'de> for RoleList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let roles = Vec::<RoleName>::deserialize(d)?;
        let max = uos_service::MAX_ROLES;
        if roles.is_empty() || roles.len() > max {
            return Err(de::Error::custom(format!("give 1 to {max} roles")));
        }
        Ok(Self(roles))
    }
}

/// Why a user's status changes: at most [`uos_service::REASON_MAX_CHARS`] characters.
#[derive(Debug)]
pub struct Reason(pub String);

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let max = uos_service::REASON_MAX_CHARS;
        if s.chars().count() > max {
            return Err(de::Error::custom(format!("at most {max} characters")));
        }
        Ok(Self(s))
    }
}

/// Why a legal hold stands: 1 to [`uos_service::HOLD_REASON_MAX_CHARS`] characters, not only
/// white space.
#[derive(Debug)]
pub struct HoldReason(pub String);

impl<'de> Deserialize<'de> for HoldReason {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let max = uos_service::HOLD_REASON_MAX_CHARS;
        if s.trim().is_empty() || s.chars().count() > max {
            return Err(de::Error::custom(format!(
                "give 1 to {max} characters, not only white space"
            )));
        }
        Ok(Self(s))
    }
}

crate::json_body! {
    /// A legal hold: why it stands (recorded in the audit trail; put no personal data here).
    pub struct HoldBody {
        #[schema(schema_with = crate::schemas::hold_reason)]
        req reason: HoldReason,
    }
}

/// A custom role's description (see [`uos_service::is_valid_description`]).
#[derive(Debug)]
pub struct Description(pub String);

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !uos_service::is_valid_description(&s) {
            return Err(de::Error::custom(format!(
                "at most {} characters, no control characters",
                uos_service::DESCRIPTION_MAX_CHARS
            )));
        }
        Ok(Self(s))
    }
}

/// An invite's lifetime in hours.
#[derive(Debug, Clone, Copy)]
pub struct InviteHours(pub i64);

impl<'de> Deserialize<'de> for InviteHours {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if !(INVITE_MIN_HOURS..=INVITE_MAX_HOURS).contains(&n) {
            return Err(de::Error::custom(format!(
                "must be between {INVITE_MIN_HOURS} and {INVITE_MAX_HOURS}"
            )));
        }
        Ok(Self(n))
    }
}

/// An opaque token a client sends back (invite, refresh): 1 to 256 characters (tokens we issue
/// are far shorter; the bound keeps hashing of junk cheap).
#[derive(Debug)]
pub struct OpaqueToken(pub String);

impl<'de> Deserialize<'de> for OpaqueToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.chars().count() > 256 {
            return Err(de::Error::custom("token must be 1 to 256 characters"));
        }
        Ok(Self(s))
    }
}

/// A TOTP or recovery code as typed: 1 to 32 characters (the use case decides which it is).
#[derive(Debug)]
pub struct OneTimeCode(pub String);

impl<'de> Deserialize<'de> for OneTimeCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() || s.chars().count() > 32 {
            return Err(de::Error::custom("code must be 1 to 32 characters"));
        }
        Ok(Self(s))
    }
}
