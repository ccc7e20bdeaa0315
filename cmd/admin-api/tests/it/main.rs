#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two `admin-api` processes (the release binary's code, built for this test) against one
//! PostgreSQL database and one Redis: what one replica does must hold on the other; and the
//! audit stream into a real Kafka-protocol broker through crashes and outages; usage consumed
//! from it, counted exactly once through a `kill -9`; key material derived from a real OpenBao
//! Transit; `SIGHUP` reloading the policy bundle; and the span tree of a request exported over
//! OTLP.

mod replicas;
mod sighup;
mod stream;
mod traces;
mod usage;
mod vault;
