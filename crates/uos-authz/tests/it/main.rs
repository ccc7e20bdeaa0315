//! Integration tests of the authorization policy: the real `policies/*.rego`, evaluated through
//! the public API, table by table.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bundles;
mod capability;
mod docs;
mod loading;
mod machines;
mod org_rules;
mod principals;
mod roles;
mod support;
