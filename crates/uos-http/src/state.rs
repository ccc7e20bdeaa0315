//! Shared state of the router.

use crate::metrics::Metrics;
use std::sync::Arc;
use uos_service::Services;

#[derive(Clone, Debug)]
pub struct AppState {
    pub svc: Services,
    pub metrics: Arc<Metrics>,
    /// Where clients reach the API (no trailing slash); error `type` URIs point under it.
    pub public_url: Arc<str>,
}

impl AppState {
    pub fn new(svc: Services, public_url: &str) -> Result<Self, prometheus::Error> {
        Ok(Self {
            svc,
            metrics: Arc::new(Metrics::new()?),
            public_url: public_url.trim_end_matches('/').into(),
        })
    }
}
