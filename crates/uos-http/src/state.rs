//! Shared state of the router.

use crate::client_ip::TrustedProxies;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use std::ops::Deref;
use std::sync::atomic::AtomicUsize;
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
    /// Places for requests in progress ([`crate::middleware::admit`]).
    pub in_progress: tokio::sync::Semaphore,
    /// How many places there are: the bound.
    pub places: usize,
    /// Requests parked at the bound right now, waiting for a place.
    pub waiting: AtomicUsize,
    /// Proxies whose `X-Forwarded-For` names the client ([`crate::client_ip`]).
    pub trusted_proxies: TrustedProxies,
}

impl AppState {
    pub fn new(
        svc: Services,
        public_url: &str,
        rate_limit: &RateLimitConfig,
        max_in_progress: usize,
        trusted_proxies: TrustedProxies,
    ) -> Result<Self, prometheus::Error> {
        let rate_limits = RateLimits::new(rate_limit, svc.shared().clone());
        let places = in_progress_places(max_in_progress);
        Ok(Self(Arc::new(Shared {
            svc,
            metrics: Metrics::new()?,
            rate_limits,
            public_url: public_url.trim_end_matches('/').into(),
            in_progress: tokio::sync::Semaphore::new(places),
            places,
            waiting: AtomicUsize::new(0),
            trusted_proxies,
        })))
    }
}

/// Requests in progress per request-serving thread, when the configuration leaves the bound
/// to the service (`max_requests_in_progress = 0`): enough to keep every core and the database
/// pool busy, few enough that a ready request waits milliseconds, not seconds, to run again.
const IN_PROGRESS_PER_WORKER: usize = 32;

/// `configured`, or [`IN_PROGRESS_PER_WORKER`] per thread of the runtime serving requests.
fn in_progress_places(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let workers = tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers());
    IN_PROGRESS_PER_WORKER * workers.max(1)
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
