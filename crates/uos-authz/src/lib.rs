//! The single authorization point of user-org-service: Rego policies decide, and an allow is
//! handed out as a [`Capability`] that services require, so an unchecked write does not compile.
//!
//! The policies in `policies/*.rego` (package `uos.authz`) are compiled into the binary and
//! parsed once by [`Authorizer::new`] (or read from a directory by [`Authorizer::from_dir`]);
//! each evaluation runs on a copy of the prepared engine. A bundle is tested (its `test_*`
//! rules) before it is used, and may be reloaded while the service runs. See
//! `docs/authorization.md` for the input shape and the rules, and `docs/policy.md` for bundles.

mod action;
mod authorizer;
mod bundle;
mod capability;
mod catalogue;
mod error;
mod kind;
mod model;
mod pdp;
mod rego_tests;

pub use action::Action;
pub use authorizer::{Authorizer, Decision, LoadedBundle, Reloaded, DECISION_RULE};
pub use bundle::{BundleInfo, BundleSource, ModuleInfo};
pub use capability::{Capability, Denied};
pub use catalogue::{builtin_role_permissions, BUILTIN_ROLES, PERMISSIONS};
pub use error::{AuthzError, PolicyProblem, RegoTestFailure};
pub use kind::{resource_kinds_markdown, ResourceKind, RESOURCE_KINDS_BEGIN, RESOURCE_KINDS_END};
pub use model::{OrgContext, Principal, PrincipalKind, Resource};
pub use pdp::{PdpInput, PdpPrincipal, PdpReason, PdpResource, PdpVerdict, PDP_RULE};
