//! Handlers, one module per area of the contract. Handlers only translate: parse the request
//! into domain values, call one use case, shape the reply.

pub mod audit;
pub mod auth;
pub mod health;
pub mod invites;
pub mod me;
pub mod members;
pub mod orgs;
pub mod roles;
pub mod users;

use crate::problem::ApiError;
use uos_domain::{OrgSlug, UserId};

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
