//! Prometheus metrics: requests by route and status, latency histogram, store pool gauges.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use uos_store::PoolStats;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pool: IntGaugeVec,
    overdue_keys: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "uos_http_requests_total",
                "HTTP requests by route template, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "uos_http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route", "method"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "uos_store_pool_connections",
                "Store connection pool by state",
            ),
            &["state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        let overdue_keys = IntGauge::new(
            "uos_api_keys_rotation_overdue",
            "API keys past their service account's maximum key age (at the last sweep)",
        )?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(overdue_keys.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            pool,
            overdue_keys,
        })
    }

    pub fn render(&self, stats: PoolStats, overdue_keys: i64) -> String {
        self.overdue_keys.set(overdue_keys);
        self.pool
            .with_label_values(&["size"])
            .set(i64::from(stats.size));
        self.pool
            .with_label_values(&["idle"])
            .set(i64::from(stats.idle));
        self.pool
            .with_label_values(&["max"])
            .set(i64::from(stats.max));
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
