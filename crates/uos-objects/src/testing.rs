//! A real S3-compatible server for tests: moto's standalone server (PyPI `moto[server]`, which
//! `cargo xtask ci` installs) on a free loopback port, with a bucket made for the test. Used by
//! this crate's tests and the HTTP suite's S3-backed export tests.
// Test support: a server that cannot start is the test's failure, said at once.
#![allow(clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Credentials moto accepts (it checks none); real ones never appear in tests.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

/// A running moto server, killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Moto {
    /// Starts `python3 -m moto.server` and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto exited ({status}): `cargo xtask ci` installs it (pip \
                     'moto[server]==5.2.1')"
                );
            }
            assert!(Instant::now() < deadline, "moto did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Creates `bucket` (S3 `CreateBucket`: a bare `PUT /<bucket>`, which moto takes unsigned).
    pub fn create_bucket(&self, bucket: &str) {
        let url = format!("{}/{bucket}", self.endpoint);
        let status = Command::new("python3")
            .args([
                "-c",
                "import sys, urllib.request as u; \
                 r = u.urlopen(u.Request(sys.argv[1], method='PUT')); print(r.status)",
                &url,
            ])
            .output()
            .expect("python3 runs");
        assert!(
            status.status.success(),
            "creating bucket {bucket}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    /// Settings of an `s3://` store on this server.
    pub fn settings(&self) -> crate::S3Settings {
        crate::S3Settings {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET_ACCESS_KEY.to_owned().into()),
            region: Some(REGION.into()),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
