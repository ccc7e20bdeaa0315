//! Support of the storage conformance suite (`tests/conformance`, one file per aggregate, every
//! case on every backend): builders of valid records ([`fixtures`]) and the [`Fixture`] that
//! holds a store with what must outlive it. Backend crates use the builders in their own
//! backend-specific tests.

// Test support: a failed expectation is a panic with a message, as in any test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod fixtures;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use uos_store::Store;

type Teardown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A freshly migrated store plus what must outlive it (a temp dir) and what runs after the
/// case (dropping a test database).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    keep: Option<Box<dyn Any + Send>>,
    teardown: Option<Teardown>,
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keep: None,
            teardown: None,
        }
    }

    /// Keep `guard` (e.g. a `TempDir`) alive until the case is over.
    pub fn keep(mut self, guard: impl Any + Send) -> Self {
        self.keep = Some(Box::new(guard));
        self
    }

    /// Run `teardown` after the store is closed (only when the case passed).
    pub fn on_teardown(mut self, teardown: impl Future<Output = ()> + Send + 'static) -> Self {
        self.teardown = Some(Box::pin(teardown));
        self
    }

    /// Close the store, run the teardown, then drop the guard.
    pub async fn finish(self) {
        self.store.close().await;
        if let Some(teardown) = self.teardown {
            teardown.await;
        }
        drop(self.keep);
    }
}
