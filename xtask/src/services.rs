//! The outside services the suite and the benchmarks talk to: make sure they run.

use anyhow::{bail, Context};
use std::net::{SocketAddr, TcpStream};
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
    let addr: SocketAddr = "127.0.0.1:5432".parse()?;
    if reachable(addr) {
        return Ok(());
    }
    eprintln!("xtask: PostgreSQL is not answering on {addr}; starting the local cluster");
    let status = Command::new("sh")
        .arg("-c")
        .arg("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
        .status()
        .context("running pg_ctlcluster")?;
    if !status.success() {
        eprintln!("xtask: pg_ctlcluster exited with {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reachable(addr) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("PostgreSQL is unreachable on {addr}: the PostgreSQL suites cannot run")
}
