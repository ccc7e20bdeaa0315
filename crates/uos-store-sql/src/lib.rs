//! The one implementation of the storage port, for every SQL backend.
//!
//! [`SqlTx`] implements every repository of `uos-store` once, generic over a [`Dialect`]: the
//! few things that differ between SQLite and PostgreSQL (error mapping, how a statement runs,
//! JSON-array membership, row locks, id lists, date arithmetic) and the writes PostgreSQL
//! makes one statement of. A backend crate keeps only its pool set-up, its pragmas, its error
//! mapping and those hooks. A new table is written here, once.

mod approval;
mod audit;
mod budget;
mod credential;
mod declarative;
mod dialect;
mod error;
mod export;
mod idempotency;
pub mod inventory;
mod invite;
mod lease;
mod machine;
mod membership;
mod org;
mod outbox;
mod retention;
mod role;
pub mod rows;
pub mod schema;
mod session;
pub mod sql;
mod tx;
mod user;
mod webhook;

pub use dialect::{Dialect, SqlxResult};
pub use session::rotate_refresh;
pub use tx::{Mode, Read, SqlRead, SqlTx, Write};
