//! `admin-api`: the REST API of user-org-service. Configuration comes from defaults, an
//! optional TOML file (`UOS_CONFIG`) and `UOS_` environment variables; see the README.

use anyhow::Context;

/// Every request allocates (headers, bodies, JSON) from several threads at once; mimalloc's
/// per-thread free lists serve that with less locking and fewer page faults than the system
/// allocator (measured with `cargo xtask bench-machine`, see the README).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cfg = match uos_app::Config::load() {
        Ok(c) => c,
        Err(e) => {
            // Before logging is set up: a bad configuration must still be readable.
            eprintln!("admin-api: {e}");
            std::process::exit(2);
        }
    };
    // Dropped at the end of `main`, after the runtime: see `init_logging`.
    let _traces = match uos_app::init_logging(&cfg, "admin-api") {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("admin-api: {e}");
            std::process::exit(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if cfg.worker_threads > 0 {
        runtime.worker_threads(cfg.worker_threads);
    }
    runtime
        .build()
        .context("starting the async runtime")?
        .block_on(run(cfg))
}

/// Build the services from `cfg` (the composition root) and serve them over HTTP.
async fn run(cfg: uos_app::Config) -> anyhow::Result<()> {
    uos_app::ensure_data_dir(&cfg.data_dir).context("creating the data directory")?;
    // Bind first: a taken port should fail before the store is touched or an admin bootstrapped.
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let svc = uos_app::build(&cfg).await.context("starting admin-api")?;
    uos_app::reload_policy_on_sighup(&svc).context("listening for SIGHUP")?;
    let grace = std::time::Duration::from_secs(cfg.shutdown_grace_secs);
    uos_http::server::serve(
        listener,
        svc,
        &cfg.public_url(),
        &cfg.rate_limit,
        cfg.max_requests_in_progress,
        uos_http::client_ip::TrustedProxies::new(cfg.trusted_proxy_networks()),
        grace,
    )
    .await
    .context("admin-api failed")
}
