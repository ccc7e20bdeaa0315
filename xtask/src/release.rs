//! The release build of a workspace binary, found where cargo actually puts it: `cargo metadata`
//! answers with the target directory after `CARGO_TARGET_DIR`, `build.target-dir` and the
//! workspace default, so a build shared between worktrees is found like a local one.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `package` in release mode and return the path of its binary `package`.
pub fn build(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    eprintln!("xtask: building the release binary {package}");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["build", "--release", "--quiet", "--locked", "-p", package])
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(
        status.success(),
        "cargo build --release -p {package} failed ({status})"
    );
    binary(root, package)
}

/// `cargo <verb> --release -p <package> --example <name> [-- <args>]`, its standard output:
/// `build` an example before a run, so no measurement waits for a compile, then `run` it.
pub fn example(
    root: &Path,
    package: &str,
    name: &str,
    verb: &str,
    args: &[String],
) -> anyhow::Result<String> {
    let mut cargo = Command::new(env!("CARGO"));
    cargo.current_dir(root).args([
        verb,
        "--release",
        "--quiet",
        "--locked",
        "-p",
        package,
        "--example",
        name,
    ]);
    if !args.is_empty() {
        cargo.arg("--").args(args);
    }
    crate::bench::sh(&mut cargo)
}

/// Where the release binary `name` is (built or not).
pub fn binary(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    Ok(target_dir(root)?.join("release").join(name))
}

/// The workspace's target directory, as cargo resolves it.
pub fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed no JSON")?;
    let target = meta["target_directory"]
        .as_str()
        .context("cargo metadata names no target_directory")?;
    Ok(PathBuf::from(target))
}
