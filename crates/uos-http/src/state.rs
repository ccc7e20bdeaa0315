//! Shared state of the router.

use crate::metrics::Metrics;
use std::sync::Arc;
use uos_service::Services;

#[derive(Clone, Debug)]
pub struct AppState {
    pub svc: Services,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(svc: Services) -> Result<Self, prometheus::Error> {
        Ok(Self {
            svc,
            metrics: Arc::new(Metrics::new()?),
        })
    }
}
