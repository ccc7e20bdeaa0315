//! `uosctl migrate`: bring the configured store's schema up to date without starting the API
//! (the same forward-only migrations `admin-api` runs at start-up).

use anyhow::Context;
use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    let cfg = uos_app::Config::load().context("loading configuration")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = uos_app::open_store(&cfg)
            .await
            .context("migrating the store")?;
        println!("ok: {} schema is up to date", store.backend());
        store.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
