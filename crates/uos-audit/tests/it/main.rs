//! Integration tests for uos-audit: sealing, verifying and tampering with whole chains,
//! checkpoints of their heads, and the generated list of audit events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chain;
mod checkpoint;
mod docs;
mod signatures;
