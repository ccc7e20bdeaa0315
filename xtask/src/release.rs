//! The release build of a workspace binary, found where cargo actually puts it: `cargo metadata`
//! answers with the target directory after `CARGO_TARGET_DIR`, `build.target-dir` and the
//! workspace default, so a build shared between worktrees is found like a local one.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's root directory (xtask's parent), as compiled in.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build `package` in release mode and return the path of its binary `package`.
pub fn build(root: &Path, package: &str) -> anyhow::Result<PathBuf> {
    eprintln!("xtask: building the release binary {package}");
    let status = cargo(root)
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
    let mut cargo = cargo(root);
    cargo.args([
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

/// `cargo`, run in `root` with the variables `cargo run` set for xtask itself removed.
/// `cargo xtask` runs through `cargo run`, which puts xtask's `CARGO_MANIFEST_DIR` and
/// `CARGO_PKG_*` in our environment; passed on, they reach build scripts, and ring's tracks
/// `CARGO_MANIFEST_DIR`: a bench's release build and a plain `cargo build --release` then
/// each rebuilt ring and everything above it, `admin-api` included, for the other.
pub(crate) fn cargo(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// The variables `cargo run` sets for the program it runs, about that program's package.
fn set_by_cargo_run(key: &str) -> bool {
    matches!(
        key,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
    ) || key.starts_with("CARGO_PKG_")
}

/// Where the release binary `name` is (built or not).
pub fn binary(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    Ok(target_dir(root)?.join("release").join(name))
}

/// The workspace's target directory, as cargo resolves it.
pub fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = cargo(root)
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
