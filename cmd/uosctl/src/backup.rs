//! `uosctl backup` and `uosctl restore`: the configured store (configured as for `admin-api`)
//! and its key files, copied into a directory with a manifest while the service runs, and
//! restored from one into an empty store (see `uos_app::backup`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn backup(out: &Path) -> anyhow::Result<ExitCode> {
    let cfg = uos_app::Config::load().context("loading configuration")?;
    let started = std::time::Instant::now();
    let manifest = runtime()?
        .block_on(uos_app::backup::backup(&cfg, out))
        .with_context(|| format!("backing up into {}", out.display()))?;
    let rows: i64 = manifest.row_counts.values().sum();
    println!(
        "ok: {} backup of {} at {} in {} ({} bytes, {rows} rows, {} audit chains, {} key \
         files) in {:.1} s",
        manifest.backend,
        manifest.database.path,
        manifest.created_at.to_rfc3339(),
        out.display(),
        manifest.database.bytes,
        manifest.audit_heads.len(),
        manifest.keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn restore(from: &Path) -> anyhow::Result<ExitCode> {
    let cfg = uos_app::Config::load().context("loading configuration")?;
    let started = std::time::Instant::now();
    let manifest = runtime()?
        .block_on(uos_app::backup::restore(&cfg, from))
        .with_context(|| format!("restoring from {}", from.display()))?;
    let rows: i64 = manifest.row_counts.values().sum();
    println!(
        "ok: restored the {} backup taken at {}: {rows} rows and {} audit chain heads as \
         recorded, {} key files, in {:.1} s",
        manifest.backend,
        manifest.created_at.to_rfc3339(),
        manifest.audit_heads.len(),
        manifest.keys.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
