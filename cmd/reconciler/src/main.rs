//! `reconciler`: applies the declarative config repo to the store, as one leader among any
//! number of replicas. Configured like the admin-api (`UOS_` variables, `UOS_CONFIG`), plus
//! `[declarative]`; `--repo` names the repo on the command line. See docs/declarative.md.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use uos_reconcile::leader::{self, Schedule};
use uos_reconcile::{Engine, Outcome};

#[derive(Debug, Parser)]
#[command(
    name = "reconciler",
    version,
    about = "Applies the declarative config repo"
)]
struct Args {
    /// The config repo: a directory, a local Git repository, or a file://, https:// or
    /// ssh:// URL (overrides `declarative.repo`).
    #[arg(long)]
    repo: Option<String>,
    /// Run one pass as the leader (waiting for the lock), print each org's outcome, and exit:
    /// 0 when every org is applied or up to date, 1 otherwise.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = match uos_app::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("reconciler: {e}");
            return ExitCode::from(2);
        }
    };
    // Declared before the runtime, so dropped after it: see `init_logging`.
    let _traces = match uos_app::init_logging(&cfg, "reconciler") {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("reconciler: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("reconciler: starting the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cfg, args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("reconciler: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cfg: uos_app::Config, args: Args) -> anyhow::Result<ExitCode> {
    uos_app::ensure_data_dir(&cfg.data_dir).context("creating the data directory")?;
    let engine = uos_app::reconciler(&cfg, args.repo)
        .await
        .context("starting the reconciler")?;
    if args.once {
        return once(&engine).await;
    }
    let listener = tokio::net::TcpListener::bind(cfg.declarative.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.declarative.listen))?;
    let metrics = engine.metrics().clone();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    let schedule = Schedule {
        poll: Duration::from_secs(cfg.declarative.poll_secs),
        drift: Duration::from_secs(cfg.declarative.drift_secs),
    };
    leader::run(&engine, schedule, shutdown()).await;
    engine.services().store().close().await;
    Ok(ExitCode::SUCCESS)
}

/// One pass as the leader: each org's outcome on stdout.
async fn once(engine: &Engine) -> anyhow::Result<ExitCode> {
    let store = engine.services().store().clone();
    let _lock = loop {
        if let Some(lock) = store.try_lock_leader(leader::LOCK).await? {
            break lock;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pass = engine.reconcile(true).await?;
    let mut ok = true;
    for org in &pass.orgs {
        let line = match &org.outcome {
            Outcome::Applied { changes } => format!("applied ({changes} changes)"),
            Outcome::UpToDate => "up to date".into(),
            Outcome::Drifted {
                differences,
                healed,
            } => {
                ok &= *healed;
                let healed = if *healed { ", healed" } else { "" };
                format!("drifted ({differences} differences{healed})")
            }
            Outcome::Paused => "paused".into(),
            Outcome::Failed(why) => {
                ok = false;
                format!("failed: {why}")
            }
            Outcome::Rejected(why) => {
                ok = false;
                format!("rejected: {why}")
            }
        };
        println!("{} ({}) at {}: {line}", org.slug, org.file, pass.revision);
    }
    store.close().await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Completes on SIGTERM or Ctrl-C. A pass in progress is cut short safely: each org applies in
/// one transaction, so an interrupted one simply did not happen.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
