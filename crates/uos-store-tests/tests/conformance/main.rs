//! The storage conformance suite: what the port promises, checked on every backend.
//!
//! One file per aggregate. Each case is an `async fn` taking a freshly migrated store and owning
//! all of its data; `#[conformance]` makes it a test per backend (`<case>::sqlite`,
//! `<case>::postgres`), so no case can skip a backend. Every store starts from the schema that
//! had landed before the one storage implementation (`testdata/landed-6754f4d`) and migrates
//! forward from there, so each case also proves that an existing database upgrades.
//! PostgreSQL tests are ignored by default; run them with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `assert!(matches!(..))` with the value in the message.
macro_rules! assert_err {
    ($value:expr, $pattern:pat, $why:expr) => {
        match $value {
            Err($pattern) => {}
            other => panic!("{}: got {:?}", $why, other),
        }
    };
}

mod backends;
mod support;

mod approval;
mod audit;
mod credential;
mod declarative;
mod export;
mod idempotency;
mod invite;
mod machine;
mod membership;
mod org;
mod outbox;
mod retention;
mod role;
mod session;
mod store;
mod tx;
mod user;
