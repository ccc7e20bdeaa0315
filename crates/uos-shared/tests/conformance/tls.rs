//! A Redis that speaks only TLS, for the `rediss://` runs of the suite: `redis-server` on a
//! free loopback port with a certificate from a CA made for the test process, started once
//! per process and stopped when the process ends.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TlsRedis {
    /// `rediss://127.0.0.1:<port>/`.
    pub url: String,
    /// The CA (PEM) the server's certificate chains to.
    pub ca_pem: Vec<u8>,
    /// Another CA, which signed nothing the server has.
    pub other_ca_pem: Vec<u8>,
    _dir: tempfile::TempDir,
    _server: Child,
    /// The server's shell waits on this pipe and stops the server when it closes, which it
    /// does when this process ends, however it ends.
    _lifeline: ChildStdin,
}

/// This process's TLS Redis.
pub fn server() -> &'static TlsRedis {
    static SERVER: OnceLock<TlsRedis> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A CA certificate (PEM) and its key.
fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

fn start() -> TlsRedis {
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = ca("uos test CA");
    let (other_ca, _) = ca("uos unrelated CA");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert_file, key_file, ca_file) = (
        file("server.crt", &cert.pem()),
        file("server.key", &key.serialize_pem()),
        file("ca.crt", &ca_cert.pem()),
    );
    // A free port: bound, then released for the server (a tiny window another process could
    // take it in, which the readiness wait below would report).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis = format!(
        "redis-server --port 0 --bind 127.0.0.1 --tls-port {port} --tls-cert-file {cert_file} \
         --tls-key-file {key_file} --tls-ca-cert-file {ca_file} --tls-auth-clients no \
         --save '' --appendonly no --loglevel warning"
    );
    let mut server = Command::new("sh")
        .args(["-c", &format!("{redis} & pid=$!; read _; kill $pid")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (Debian's redis-server package) on PATH");
    let lifeline = server.stdin.take().unwrap();
    let since = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "TLS redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRedis {
        url: format!("rediss://127.0.0.1:{port}/"),
        ca_pem: ca_cert.pem().into_bytes(),
        other_ca_pem: other_ca.pem().into_bytes(),
        _dir: dir,
        _server: server,
        _lifeline: lifeline,
    }
}
