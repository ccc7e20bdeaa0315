//! The single authorization point of user-org-service: Rego policies decide, and an allow is
//! handed out as a [`Capability`] that services require, so an unchecked write does not compile.
//!
//! The policies in `policies/*.rego` (package `uos.authz`) are compiled into the binary and
//! parsed once by [`Authorizer::new`]; each evaluation clones the prepared engine. See
//! `docs/authorization.md` for the input shape and the rules.

mod action;
mod authorizer;
mod capability;
mod catalogue;
mod error;
mod kind;
mod model;
mod pdp;

pub use action::Action;
pub use authorizer::{Authorizer, Decision, DECISION_RULE};
pub use capability::{Capability, Denied};
pub use catalogue::{builtin_role_permissions, BUILTIN_ROLES, PERMISSIONS};
pub use error::AuthzError;
pub use kind::{resource_kinds_markdown, ResourceKind, RESOURCE_KINDS_BEGIN, RESOURCE_KINDS_END};
pub use model::{OrgContext, Principal, PrincipalKind, Resource};
pub use pdp::{PdpInput, PdpPrincipal, PdpReason, PdpResource, PdpVerdict, PDP_RULE};
