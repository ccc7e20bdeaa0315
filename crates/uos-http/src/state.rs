//! Shared state of the router.

use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use std::ops::Deref;
use std::sync::Arc;
use uos_service::{RateLimitConfig, Services};

/// What every handler and middleware shares. One `Arc` around all of it: each stateful layer
/// clones the state for every request, and one reference count is cheaper than one per field.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub svc: Services,
    pub metrics: Metrics,
    /// The rate limits in force and this replica's share of their counts.
    pub rate_limits: RateLimits,
    /// Where clients reach the API (no trailing slash); error `type` URIs point under it.
    pub public_url: Arc<str>,
}

impl AppState {
    pub fn new(
        svc: Services,
        public_url: &str,
        rate_limit: &RateLimitConfig,
    ) -> Result<Self, prometheus::Error> {
        let rate_limits = RateLimits::new(rate_limit, svc.shared().clone());
        Ok(Self(Arc::new(Shared {
            svc,
            metrics: Metrics::new()?,
            rate_limits,
            public_url: public_url.trim_end_matches('/').into(),
        })))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
