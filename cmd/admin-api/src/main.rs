//! `admin-api`: the REST API of user-org-service. Configuration comes from defaults, an
//! optional TOML file (`UOS_CONFIG`) and `UOS_` environment variables; see the README.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Every request allocates (headers, bodies, JSON) from several threads at once; mimalloc's
/// per-thread free lists serve that with less locking and fewer page faults than the system
/// allocator (measured with `cargo xtask bench-machine`, see the README).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cfg = match uos_http::Config::load() {
        Ok(c) => c,
        Err(e) => {
            // Before logging is set up: a bad configuration must still be readable.
            eprintln!("admin-api: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if cfg.log_format == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if cfg.worker_threads > 0 {
        runtime.worker_threads(cfg.worker_threads);
    }
    runtime
        .build()
        .context("starting the async runtime")?
        .block_on(uos_http::server::run(cfg))
        .context("admin-api failed")
}
