//! Integration tests for uos-mail: the dev mailbox on a real directory, SMTP against a real
//! SMTP sink (Python `aiosmtpd`, started per test on a free loopback port).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod mailbox;
mod sink;
mod smtp;
