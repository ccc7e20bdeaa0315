//! Integration tests for uos-audit: sealing, verifying and tampering with whole chains.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chain;
