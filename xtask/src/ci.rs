//! `cargo xtask ci`: the one command that passes the whole suite. `.ci/run` calls it.

use crate::services;
use anyhow::{bail, Context};

/// Runs through `release::cargo`, without the variables `cargo run` set for xtask: passed on,
/// they rebuild ring and everything above it after a plain `cargo test` built the same tree.
fn cargo(args: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = crate::release::cargo(&crate::release::workspace_root())
        .args(args)
        .status()
        .with_context(|| format!("running cargo {args:?}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

pub fn run() -> anyhow::Result<()> {
    services::ensure_postgres()?;
    services::ensure_oidc_provider()?;
    services::ensure_redis()?;
    services::drop_test_databases()?;
    services::ensure_smtp_sink()?;
    services::ensure_kafka_broker()?;
    services::ensure_s3_server()?;
    services::ensure_openbao()?;
    services::ensure_sshd()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ])?;
    // What deploys the service, before the long test run.
    crate::manifests::run()?;
    // --include-ignored runs the service-backed tests (marked `ignore = "needs PostgreSQL"` so a
    // plain `cargo test` passes anywhere); here they must run, and pass.
    cargo(&["test", "--workspace", "--locked", "--", "--include-ignored"])?;
    // The served OpenAPI against the release binary: the contract as clients read it.
    crate::api_fuzz::run(&crate::api_fuzz::ApiFuzzArgs::default())?;
    eprintln!("xtask: ci passed");
    Ok(())
}
