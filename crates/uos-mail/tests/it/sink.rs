//! A real SMTP sink for the SMTP tests: `python3 -m aiosmtpd` with its Maildir handler, on a free
//! loopback port, killed on drop. What it received is read back with Python's own `email`
//! package, so the test checks our MIME encoding against an independent decoder.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tempfile::TempDir;

/// One message as the sink stored it, decoded by Python's `email` package.
#[derive(Debug, Deserialize)]
pub struct Received {
    /// Envelope recipients (the sink's `X-RcptTo` header).
    pub rcpt_to: String,
    /// Envelope sender (`X-MailFrom`).
    pub mail_from: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub content_type: String,
    pub body: String,
}

#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: TempDir,
}

/// A port nothing listens on right now (bound by the OS, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl SmtpSink {
    pub fn start() -> Self {
        // Another process may grab the released port before aiosmtpd binds it: try again.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(sink) => return sink,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start aiosmtpd (`cargo xtask ci` installs it): {last_error}");
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let log = dir.path().join("aiosmtpd.log");
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .map_err(|e| format!("spawning python3: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("aiosmtpd exited with {status}: {log}"));
            }
            if greets(port) {
                return Ok(Self {
                    child,
                    port,
                    maildir,
                    _dir: dir,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no SMTP greeting on port {port} within 15 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the sink has stored so far.
    pub fn received(&self) -> Vec<Received> {
        if !self.maildir.exists() {
            return Vec::new();
        }
        let out = Command::new("python3")
            .arg("-c")
            .arg(READ_MAILDIR)
            .arg(&self.maildir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reading the maildir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True once something on `port` sends an SMTP `220` greeting.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("220")
}

const READ_MAILDIR: &str = r#"
import email.policy, json, mailbox, sys
from email.parser import BytesParser

out = []
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
for key in sorted(box.keys()):
    msg = BytesParser(policy=email.policy.default).parsebytes(box.get_bytes(key))
    out.append({
        "rcpt_to": str(msg["X-RcptTo"]),
        "mail_from": str(msg["X-MailFrom"]),
        "from": str(msg["From"]),
        "to": str(msg["To"]),
        "subject": str(msg["Subject"]),
        "content_type": msg.get_content_type(),
        "body": msg.get_content(),
    })
print(json.dumps(out))
"#;
