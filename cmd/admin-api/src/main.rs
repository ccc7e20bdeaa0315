//! `admin-api`: the REST API of user-org-service. Configuration comes from defaults, an
//! optional TOML file (`UOS_CONFIG`) and `UOS_` environment variables; see the README.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    uos_http::server::run(cfg).await.context("admin-api failed")
}
