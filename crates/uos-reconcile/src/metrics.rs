//! The reconciler's Prometheus metrics: how long passes take, how many orgs are behind the
//! newest revision or drifted, and when a pass last succeeded.

use std::time::Duration;

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::run::{Outcome, Pass};

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    duration: Histogram,
    passes: IntCounterVec,
    behind: IntGauge,
    drifted: IntGauge,
    last_success: IntGauge,
    leader: IntGauge,
}

impl Metrics {
    /// The metrics on a registry of their own. Registering fixed, distinct names cannot fail.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "uos_reconcile_duration_seconds",
                    "Time of one reconcile pass: fetch, verify, plan and apply every org",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ]),
            )
            .expect("valid histogram"),
            passes: IntCounterVec::new(
                Opts::new(
                    "uos_reconcile_passes_total",
                    "Reconcile passes by result (ok: the repo was read; error: it was not)",
                ),
                &["result"],
            )
            .expect("valid counter"),
            behind: IntGauge::new(
                "uos_reconcile_orgs_behind",
                "Declared orgs the last pass left behind the newest revision (failed, rejected \
                 or paused)",
            )
            .expect("valid gauge"),
            drifted: IntGauge::new(
                "uos_reconcile_drifted_orgs",
                "Declared orgs whose live state differs from the applied file (as last checked)",
            )
            .expect("valid gauge"),
            last_success: IntGauge::new(
                "uos_reconcile_last_success_timestamp_seconds",
                "Unix time of the last pass that read the repo",
            )
            .expect("valid gauge"),
            leader: IntGauge::new(
                "uos_reconcile_leader",
                "1 while this reconciler holds the leader lock",
            )
            .expect("valid gauge"),
            registry,
        };
        for c in [
            Box::new(m.duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.passes.clone()),
            Box::new(m.behind.clone()),
            Box::new(m.drifted.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.leader.clone()),
        ] {
            m.registry.register(c).expect("distinct metric names");
        }
        m
    }

    pub(crate) fn record_pass(&self, took: Duration, pass: Option<&Pass>) {
        self.duration.observe(took.as_secs_f64());
        let Some(pass) = pass else {
            self.passes.with_label_values(&["error"]).inc();
            return;
        };
        self.passes.with_label_values(&["ok"]).inc();
        self.last_success.set(uos_domain::now().timestamp());
        let count = |f: fn(&Outcome) -> bool| {
            i64::try_from(pass.orgs.iter().filter(|o| f(&o.outcome)).count()).unwrap_or(i64::MAX)
        };
        self.behind.set(count(|o| {
            matches!(
                o,
                Outcome::Failed(_) | Outcome::Rejected(_) | Outcome::Paused
            )
        }));
        // A pass that skipped the drift check keeps the last count it had.
        let checked = pass
            .orgs
            .iter()
            .any(|o| matches!(o.outcome, Outcome::Drifted { .. } | Outcome::UpToDate));
        if checked {
            self.drifted.set(count(|o| {
                matches!(o, Outcome::Drifted { healed: false, .. })
            }));
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
