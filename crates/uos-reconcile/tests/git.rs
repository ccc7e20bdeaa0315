//! Fetching real repositories made with `git` in temp dirs: by path, `file://` and `git://`
//! (a real `git daemon`), new commits, force-pushes and branches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use uos_reconcile::git::{Credentials, GitError, GitSource, Mirror};
use uos_reconcile::read_files;

/// Runs `git args` in `dir` with a fixed identity; returns its trimmed stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn org(slug: &str, name: &str) -> String {
    format!("version: 1\nslug: {slug}\ndisplay_name: {name}\n")
}

/// Writes `files` (path, contents) into the repository at `dir` and commits them.
fn commit(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn new_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    dir
}

fn source(url: String, branch: &str) -> GitSource {
    GitSource {
        url,
        branch: branch.to_owned(),
        credentials: Credentials::None,
        known_hosts: None,
    }
}

#[test]
fn fetches_a_branch_by_path_and_file_url_and_reads_its_org_files() {
    let upstream = new_repo();
    let first = commit(
        upstream.path(),
        &[
            ("orgs/acme.yaml", &org("acme", "Acme")),
            ("README.md", "not an org"),
        ],
        "acme",
    );
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(&cache.path().join("mirror")).unwrap();
    let path = upstream.path().to_str().unwrap().to_owned();
    assert_eq!(mirror.fetch(&source(path.clone(), "main")).unwrap(), first);
    let files = mirror.org_files(&first).unwrap();
    assert_eq!(
        files,
        [("acme.yaml".to_owned(), org("acme", "Acme").into_bytes())]
    );
    let orgs = read_files(files);
    assert_eq!(orgs[0].result.as_ref().unwrap().display_name, "Acme");

    // The same repository as a file:// URL, into a mirror opened again (it persists).
    let mirror = Mirror::open(&cache.path().join("mirror")).unwrap();
    let url = format!("file://{path}");
    assert_eq!(mirror.fetch(&source(url, "main")).unwrap(), first);
}

#[test]
fn follows_new_commits_and_force_pushes() {
    let upstream = new_repo();
    let path = upstream.path().to_str().unwrap().to_owned();
    let first = commit(
        upstream.path(),
        &[("orgs/acme.yaml", &org("acme", "A"))],
        "1",
    );
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    assert_eq!(mirror.fetch(&source(path.clone(), "main")).unwrap(), first);

    let second = commit(
        upstream.path(),
        &[("orgs/acme.yaml", &org("acme", "B"))],
        "2",
    );
    assert_eq!(mirror.fetch(&source(path.clone(), "main")).unwrap(), second);

    // History rewritten: the branch now points to a commit that does not descend from the
    // one fetched last.
    git(upstream.path(), &["reset", "-q", "--hard", &first]);
    let rewritten = commit(
        upstream.path(),
        &[("orgs/acme.yaml", &org("acme", "C"))],
        "3",
    );
    assert_eq!(mirror.fetch(&source(path, "main")).unwrap(), rewritten);
    let files = mirror.org_files(&rewritten).unwrap();
    assert_eq!(files[0].1, org("acme", "C").into_bytes());
    // Commits fetched before stay readable (the last applied revision, for drift checks).
    assert_eq!(
        mirror.org_files(&second).unwrap()[0].1,
        org("acme", "B").into_bytes()
    );
}

#[test]
fn reads_the_branch_it_is_told_and_refuses_bad_ones() {
    let upstream = new_repo();
    let path = upstream.path().to_str().unwrap().to_owned();
    let main = commit(
        upstream.path(),
        &[("orgs/acme.yaml", &org("acme", "A"))],
        "main",
    );
    git(upstream.path(), &["checkout", "-q", "-b", "staging"]);
    let staging = commit(
        upstream.path(),
        &[("orgs/beta.yaml", &org("beta", "B"))],
        "beta",
    );
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    assert_eq!(mirror.fetch(&source(path.clone(), "main")).unwrap(), main);
    assert_eq!(
        mirror.fetch(&source(path.clone(), "staging")).unwrap(),
        staging
    );
    assert_eq!(mirror.org_files(&main).unwrap().len(), 1);
    assert_eq!(mirror.org_files(&staging).unwrap().len(), 2);

    assert!(matches!(
        mirror.fetch(&source(path.clone(), "nope")),
        Err(GitError::NoBranch(b)) if b == "nope"
    ));
    // A branch name that would be a refspec of its own.
    assert!(matches!(
        mirror.fetch(&source(path, "main:refs/heads/evil")),
        Err(GitError::InvalidBranch(_))
    ));
    assert!(matches!(
        mirror.org_files("0123456789012345678901234567890123456789"),
        Err(GitError::NoCommit(_))
    ));
    let gone = source("/nonexistent/config-repo".to_owned(), "main");
    assert!(matches!(mirror.fetch(&gone), Err(GitError::Git(_))));
}

#[test]
fn a_commit_without_orgs_declares_nothing() {
    let upstream = new_repo();
    let only = commit(upstream.path(), &[("README.md", "soon")], "empty");
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    let url = upstream.path().to_str().unwrap().to_owned();
    assert_eq!(mirror.fetch(&source(url, "main")).unwrap(), only);
    assert!(mirror.org_files(&only).unwrap().is_empty());
}

/// `base/config`: a new repository whose `main` declares acme; its path and head commit.
fn config_repo(base: &Path) -> (PathBuf, String) {
    let upstream = base.join("config");
    std::fs::create_dir(&upstream).unwrap();
    git(&upstream, &["init", "-q"]);
    let head = commit(
        &upstream,
        &[("orgs/acme.yaml", &org("acme", "Acme"))],
        "acme",
    );
    (upstream, head)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A real `git daemon` serving `base` on a free port; killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_daemon(base: &Path) -> (Daemon, u16) {
    let port = free_port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
            &base.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, "git daemon");
    (Daemon(child), port)
}

#[test]
fn fetches_over_the_git_protocol_from_a_real_daemon() {
    let base = tempfile::tempdir().unwrap();
    let (_, head) = config_repo(base.path());
    let (_daemon, port) = git_daemon(base.path());
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    let url = format!("git://127.0.0.1:{port}/config");
    assert_eq!(mirror.fetch(&source(url, "main")).unwrap(), head);
    assert_eq!(mirror.org_files(&head).unwrap()[0].0, "acme.yaml");
}

/// The smart-HTTP server of `git_http_server.py` serving `root`, which takes `token` as the
/// basic-auth password; killed on drop.
fn http_server(root: &Path, token: &str) -> (Daemon, u16) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/git_http_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root)
        .arg(token)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    (Daemon(child), line.trim().parse().unwrap())
}

#[test]
fn fetches_over_http_with_a_token_and_fails_fast_without_the_right_one() {
    let base = tempfile::tempdir().unwrap();
    let (_, head) = config_repo(base.path());
    let (_server, port) = http_server(base.path(), "s3cret-token");
    let url = format!("http://127.0.0.1:{port}/config");
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();

    let with = |credentials| GitSource {
        url: url.clone(),
        branch: "main".into(),
        credentials,
        known_hosts: None,
    };
    for refused in [Credentials::None, Credentials::Token("wrong".into())] {
        let err = mirror.fetch(&with(refused)).unwrap_err();
        assert!(matches!(err, GitError::Git(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
    let source = with(Credentials::Token("s3cret-token".into()));
    assert!(
        !format!("{source:?}").contains("s3cret"),
        "secrets stay out of logs"
    );
    assert_eq!(mirror.fetch(&source).unwrap(), head);
}

/// A real OpenSSH server on a free port of 127.0.0.1 that lets in exactly the holder of
/// `client_public` as the current user; returns it with its port and its host key line.
fn sshd(dir: &Path, client_public: &str) -> (Daemon, u16, String) {
    let host_key = dir.join("host_key");
    keygen(&host_key);
    std::fs::write(dir.join("authorized_keys"), client_public).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\n",
            host_key.display(),
            dir.join("authorized_keys").display(),
            dir.join("sshd.pid").display(),
        ),
    )
    .unwrap();
    // sshd refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd (openssh-server) is installed");
    wait_listening(port, "sshd");
    let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let line = format!(
        "[127.0.0.1]:{port} {} {}\n",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    (Daemon(child), port, line)
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
#[ignore = "needs sshd (cargo xtask ci installs openssh-server)"]
fn fetches_over_ssh_with_a_key_and_a_pinned_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let (upstream, head) = config_repo(dir.path());
    let client = dir.path().join("client_key");
    keygen(&client);
    let stranger = dir.path().join("stranger_key");
    keygen(&stranger);
    let client_public = std::fs::read_to_string(client.with_extension("pub")).unwrap();
    let (_sshd, port, host_line) = sshd(dir.path(), &client_public);
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, &host_line).unwrap();
    let other_host = dir.path().join("other_known_hosts");
    let other_key = dir.path().join("other_host_key");
    keygen(&other_key);
    let other = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    std::fs::write(&other_host, format!("[127.0.0.1]:{port} {other}")).unwrap();

    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let url = format!("ssh://{user}@127.0.0.1:{port}{}", upstream.display());
    let source = |key: &Path, known_hosts: &Path| GitSource {
        url: url.clone(),
        branch: "main".into(),
        credentials: Credentials::SshKey {
            private_key: key.to_owned(),
            passphrase: None,
        },
        known_hosts: Some(known_hosts.to_owned()),
    };
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    // A server whose host key is not the pinned one is not talked to.
    // (libgit2 reports the refusal in its own words: "invalid or unknown remote ssh hostkey".)
    let err = mirror.fetch(&source(&client, &other_host)).unwrap_err();
    assert!(err.to_string().contains("hostkey"), "{err}");
    // A key the server does not know is refused, once.
    assert!(mirror.fetch(&source(&stranger, &known)).is_err());
    assert_eq!(mirror.fetch(&source(&client, &known)).unwrap(), head);
}
