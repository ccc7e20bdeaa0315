//! Prometheus metrics: requests by route and status, latency histogram, rate-limited requests,
//! requests in progress and waiting at the request bound, store pool gauges, and the service's
//! own counts (keys overdue for rotation, audit-head contention, the audit relay's backlog,
//! decisions allowed and denied and the denials budgets caused, policy bundles reloaded and
//! refused, the usage consumer's messages and lag).
//!
//! The dashboards and alert rules shipped with the chart and kustomize name these metrics;
//! `monitoring` in this crate's integration suite fails if they name one not exported here.

use crate::state::Shared;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::atomic::Ordering;
use uos_service::Services;

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    /// Requests refused with 429 `rate_limited`, by route template, method and scope
    /// (`caller` or `address`).
    pub rate_limited: IntCounterVec,
    /// Rate-limit reservations the shared state did not answer (those requests were admitted).
    rate_limit_shared_failures: IntCounter,
    pool: IntGaugeVec,
    /// The request bound (`max_requests_in_progress`): in progress, waiting, max.
    admission: IntGaugeVec,
    overdue_keys: IntGauge,
    audit_head_conflicts: IntCounter,
    /// Decisions of the decision point, by `result` (`allow` or `deny`).
    decisions: IntCounterVec,
    /// Denied decisions with a `budget_exceeded` reason (a subset of `decisions{result="deny"}`).
    budget_denials: IntCounter,
    /// Policy bundle reloads, by `result` (`replaced` or `refused`).
    policy_reloads: IntCounterVec,
    relay: RelayGauges,
    usage_stream: UsageStreamGauges,
}

/// The usage consumer's figures (0 until one runs on this replica).
#[derive(Debug)]
struct UsageStreamGauges {
    /// Messages by what became of them: `consumed` (handed to the store, redeliveries
    /// included), `stored`, `duplicate`, `rejected` (written to the dead-letter topic).
    messages: IntCounterVec,
    lag: IntGauge,
    active: IntGauge,
}

/// The `outcome` label values of `uos_usage_stream_messages_total`.
const USAGE_OUTCOMES: [&str; 4] = ["consumed", "stored", "duplicate", "rejected"];

impl UsageStreamGauges {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauges = Self {
            messages: IntCounterVec::new(
                Opts::new(
                    "uos_usage_stream_messages_total",
                    "Usage messages consumed from the usage topic by this replica, by outcome \
                     (consumed, stored, duplicate, rejected)",
                ),
                &["outcome"],
            )?,
            lag: IntGauge::new(
                "uos_usage_stream_lag_messages",
                "Usage messages on the topic past the consumer's position (as last measured)",
            )?,
            active: IntGauge::new(
                "uos_usage_stream_active",
                "1 while this replica holds the usage consumer lease and consumes",
            )?,
        };
        // Every outcome exists from the start, so `increase()` sees a consumer's first
        // rejection and dashboards show 0 rather than no data.
        for outcome in USAGE_OUTCOMES {
            gauges.messages.with_label_values(&[outcome]);
        }
        registry.register(Box::new(gauges.messages.clone()))?;
        registry.register(Box::new(gauges.lag.clone()))?;
        registry.register(Box::new(gauges.active.clone()))?;
        Ok(gauges)
    }

    fn set(&self, svc: &Services) {
        let Some(c) = svc.usage_stream_counts() else {
            return;
        };
        for (outcome, count) in
            USAGE_OUTCOMES
                .into_iter()
                .zip([c.consumed, c.stored, c.duplicates, c.rejected])
        {
            let counter = self.messages.with_label_values(&[outcome]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        self.lag.set(i64::try_from(c.lag).unwrap_or(i64::MAX));
        self.active.set(i64::from(c.active));
    }
}

/// The audit relay's figures (left at 0 when no event stream is configured).
#[derive(Debug)]
struct RelayGauges {
    behind: IntGauge,
    oldest: IntGauge,
    leader: IntGauge,
    published: IntCounter,
}

impl RelayGauges {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let gauges = Self {
            behind: IntGauge::new(
                "uos_audit_relay_behind_events",
                "Audit events committed but not yet published to the event stream (as counted \
                 by the relaying replica)",
            )?,
            oldest: IntGauge::new(
                "uos_audit_relay_oldest_unpublished_seconds",
                "Age of the oldest audit event not yet published (0: none)",
            )?,
            leader: IntGauge::new(
                "uos_audit_relay_leader",
                "1 while this replica holds the relay lease and publishes",
            )?,
            published: IntCounter::new(
                "uos_audit_relay_published_total",
                "Audit events this replica published to the event stream",
            )?,
        };
        registry.register(Box::new(gauges.behind.clone()))?;
        registry.register(Box::new(gauges.oldest.clone()))?;
        registry.register(Box::new(gauges.leader.clone()))?;
        registry.register(Box::new(gauges.published.clone()))?;
        Ok(gauges)
    }

    fn set(&self, svc: &Services) {
        let Some(stats) = svc.relay_stats() else {
            return;
        };
        self.leader.set(i64::from(stats.leader));
        // A replica that does not relay has no count of its own; the leader's is the truth.
        let behind = if stats.leader { stats.behind } else { 0 };
        self.behind.set(i64::try_from(behind).unwrap_or(i64::MAX));
        self.oldest.set(if stats.leader {
            stats.oldest_unpublished_secs
        } else {
            0
        });
        self.published
            .inc_by(stats.published.saturating_sub(self.published.get()));
    }
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
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "uos_http_rate_limited_total",
                "Requests refused by a rate limit, by route template, method and scope",
            ),
            &["route", "method", "scope"],
        )?;
        let rate_limit_shared_failures = IntCounter::new(
            "uos_rate_limit_shared_failures_total",
            "Rate-limit reservations the shared state (Redis) did not answer; the requests were \
             admitted without being counted",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_limit_shared_failures.clone()))?;
        let overdue_keys = IntGauge::new(
            "uos_api_keys_rotation_overdue",
            "API keys past their service account's maximum key age (at the last sweep)",
        )?;
        let audit_head_conflicts = IntCounter::new(
            "uos_audit_head_conflicts_total",
            "Audit appends that found the chain head moved by another writer and chained again",
        )?;
        let admission = IntGaugeVec::new(
            Opts::new(
                "uos_http_admission_requests",
                "Requests under the bound on requests in progress, by state (in_progress: \
                 being worked on; waiting: parked for a place; max: the bound)",
            ),
            &["state"],
        )?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(admission.clone()))?;
        registry.register(Box::new(overdue_keys.clone()))?;
        registry.register(Box::new(audit_head_conflicts.clone()))?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "uos_policy_decisions_total",
                "Decisions of the decision point on this replica, by result (allow, deny)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        let budget_denials = IntCounter::new(
            "uos_policy_budget_denials_total",
            "Decisions on this replica denied because a budget would be or is exhausted \
             (also counted as uos_policy_decisions_total{result=\"deny\"})",
        )?;
        registry.register(Box::new(budget_denials.clone()))?;
        let policy_reloads = IntCounterVec::new(
            Opts::new(
                "uos_policy_reloads_total",
                "Policy bundle reloads on this replica, by result (replaced; refused: it failed to \
                 compile or its Rego tests, and the running bundle stayed)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(policy_reloads.clone()))?;
        let relay = RelayGauges::new(&registry)?;
        let usage_stream = UsageStreamGauges::new(&registry)?;
        Ok(Self {
            registry,
            requests,
            latency,
            rate_limited,
            rate_limit_shared_failures,
            pool,
            admission,
            overdue_keys,
            audit_head_conflicts,
            decisions,
            budget_denials,
            policy_reloads,
            relay,
            usage_stream,
        })
    }

    /// The text exposition of the figures as they stand in `s`, this registry's owner.
    pub fn render(&self, s: &Shared) -> String {
        let svc = &s.svc;
        let rate_limit_failures = s.rate_limits.shared_failures();
        let stats = svc.store().pool_stats();
        self.rate_limit_shared_failures
            .inc_by(rate_limit_failures.saturating_sub(self.rate_limit_shared_failures.get()));
        self.overdue_keys.set(svc.overdue_api_keys());
        // The service counts on its own; the counter catches up to it (both only grow).
        let conflicts = svc.audit_head_conflicts();
        self.audit_head_conflicts
            .inc_by(conflicts.saturating_sub(self.audit_head_conflicts.get()));
        let (allowed, denied) = svc.decision_counts();
        for (result, count) in [("allow", allowed), ("deny", denied)] {
            let c = self.decisions.with_label_values(&[result]);
            c.inc_by(count.saturating_sub(c.get()));
        }
        self.budget_denials.inc_by(
            svc.budget_denials()
                .saturating_sub(self.budget_denials.get()),
        );
        let (replaced, refused) = svc.policy_reload_counts();
        for (result, count) in [("replaced", replaced), ("refused", refused)] {
            let c = self.policy_reloads.with_label_values(&[result]);
            c.inc_by(count.saturating_sub(c.get()));
        }
        self.relay.set(svc);
        self.usage_stream.set(svc);
        self.pool
            .with_label_values(&["size"])
            .set(i64::from(stats.size));
        self.pool
            .with_label_values(&["idle"])
            .set(i64::from(stats.idle));
        self.pool
            .with_label_values(&["max"])
            .set(i64::from(stats.max));
        let in_progress = s.places.saturating_sub(s.in_progress.available_permits());
        for (state, n) in [
            ("in_progress", in_progress),
            ("waiting", s.waiting.load(Ordering::Relaxed)),
            ("max", s.places),
        ] {
            self.admission
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
