//! Integration tests for the `uosctl` binary, run as a subprocess.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_verify;
mod backup;
mod declarative;
mod mail;
