//! The reconciler's loop: only the holder of the leader lock reconciles (a PostgreSQL advisory
//! lock, a file lock on SQLite), so two reconcilers never apply at once; the other waits and
//! takes over when the holder's connection or process goes. The leader runs a pass every poll
//! interval and at once when someone asks (the sync API or a push webhook), and compares the
//! applied orgs with the store every drift interval.

use std::future::Future;
use std::time::{Duration, Instant};

use uos_service::{Ctx, DeclaredSource};

use crate::run::{Engine, Outcome, Pass};

/// The name of the leader lock.
pub const LOCK: &str = "reconciler";

/// How often the leader looks for a sync request, and a follower for the lock.
const TICK: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Between fetches of the repo.
    pub poll: Duration,
    /// Between drift checks of orgs already applied.
    pub drift: Duration,
}

/// Reconcile while this process holds the leader lock, until `shutdown` completes.
pub async fn run(engine: &Engine, schedule: Schedule, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = lead_when_possible(engine, schedule) => {}
        }
    }
}

/// Wait for the lock, then lead until it is lost.
async fn lead_when_possible(engine: &Engine, schedule: Schedule) {
    let store = engine.services().store().clone();
    let mut lock = loop {
        match store.try_lock_leader(LOCK).await {
            Ok(Some(lock)) => break lock,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot ask for the leader lock"),
        }
        tokio::time::sleep(TICK).await;
    };
    tracing::info!("leading: this reconciler applies the config repo");
    engine.metrics().set_leader(true);
    let ctx = Ctx::reconciler(DeclaredSource {
        revision: String::new(),
        file: String::new(),
    });
    let mut seen_sync = None;
    let mut last_pass: Option<Instant> = None;
    let mut last_drift: Option<Instant> = None;
    loop {
        if !lock.still_held().await {
            tracing::warn!("lost the leader lock; waiting to take it again");
            break;
        }
        let sync = match engine.services().declarative_control(&ctx).await {
            Ok(control) => {
                let asked = last_pass.is_some() && control.sync_requested_at != seen_sync;
                seen_sync = control.sync_requested_at;
                asked
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the reconciler's switches");
                false
            }
        };
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        if sync || due(last_pass, schedule.poll) {
            let check_drift = due(last_drift, schedule.drift);
            match engine.reconcile(check_drift).await {
                Ok(pass) => log_pass(&pass),
                Err(e) => tracing::error!(error = %e, "reconcile failed"),
            }
            last_pass = Some(Instant::now());
            if check_drift {
                last_drift = last_pass;
            }
        }
        tokio::time::sleep(TICK).await;
    }
    engine.metrics().set_leader(false);
}

fn log_pass(pass: &Pass) {
    let count = |f: fn(&Outcome) -> bool| pass.orgs.iter().filter(|o| f(&o.outcome)).count();
    tracing::info!(
        revision = %pass.revision,
        orgs = pass.orgs.len(),
        applied = count(|o| matches!(o, Outcome::Applied { .. })),
        failed = count(|o| matches!(o, Outcome::Failed(_) | Outcome::Rejected(_))),
        drifted = count(|o| matches!(o, Outcome::Drifted { .. })),
        paused = count(|o| matches!(o, Outcome::Paused)),
        "reconcile pass"
    );
}
