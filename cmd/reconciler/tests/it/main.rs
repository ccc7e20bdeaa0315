//! The `reconciler` binary on real repositories made by real `git`: one pass (`--once`) with
//! commit signatures required, and the long-running leader with its metrics endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use uos_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD};

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ann")
        .env("GIT_AUTHOR_EMAIL", "ann@example.com")
        .env("GIT_COMMITTER_NAME", "Ann")
        .env("GIT_COMMITTER_EMAIL", "ann@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A store with the platform admin (the founder of declared orgs) and a config repo.
struct Fixture {
    dir: tempfile::TempDir,
    repo: PathBuf,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = uos_app::Config::from_figment(
            uos_app::Config::figment()
                .merge(("database_url", Self::url_in(dir.path())))
                .merge(("data_dir", dir.path().join("data")))
                .merge(("bootstrap_admin_email", ADMIN_EMAIL))
                .merge(("bootstrap_admin_password", ADMIN_PASSWORD)),
        )
        .unwrap();
        let svc = uos_app::build(&cfg).await.unwrap();
        svc.store().close().await;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("orgs")).unwrap();
        run(&repo, "git", &["init", "-q", "-b", "main"]);
        Self { dir, repo }
    }

    fn url_in(dir: &Path) -> String {
        format!("sqlite://{}/uos.db", dir.display())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_reconciler"));
        c.args(args)
            .env("UOS_DATABASE_URL", Self::url_in(self.dir.path()))
            .env("UOS_DATA_DIR", self.dir.path().join("data"))
            .env_remove("UOS_MIGRATION_DATABASE_URL")
            .env_remove("UOS_CONFIG");
        c
    }

    /// Commit `orgs/acme.yaml` with `display_name`, signed with `key` if given.
    fn commit(&self, display_name: &str, key: Option<&Path>) {
        std::fs::write(
            self.repo.join("orgs/acme.yaml"),
            format!(
                "version: 1\nslug: acme\ndisplay_name: {display_name}\n\
                 members:\n  - email: {ADMIN_EMAIL}\n    roles: [owner]\n"
            ),
        )
        .unwrap();
        run(&self.repo, "git", &["add", "-A"]);
        let mut args = vec!["-c", "gpg.format=ssh", "-c", "commit.gpgsign=false"];
        let signing;
        if let Some(k) = key {
            signing = format!("user.signingkey={}", k.display());
            args.extend([
                "-c",
                signing.as_str(),
                "commit",
                "-q",
                "-S",
                "-m",
                display_name,
            ]);
        } else {
            args.extend(["commit", "-q", "-m", display_name]);
        }
        run(&self.repo, "git", &args);
    }

    async fn store(&self) -> std::sync::Arc<dyn uos_store::Store> {
        let cfg = uos_app::Config::from_figment(
            uos_app::Config::figment()
                .merge(("database_url", Self::url_in(self.dir.path())))
                .merge(("data_dir", self.dir.path().join("data"))),
        )
        .unwrap();
        uos_app::open_store(&cfg).await.unwrap()
    }

    async fn display_name(&self) -> Option<String> {
        let store = self.store().await;
        let mut r = store.read().await.unwrap();
        let slug = uos_domain::OrgSlug::parse("acme").unwrap();
        r.get_org_by_slug(&slug)
            .await
            .unwrap()
            .map(|o| o.display_name)
    }
}

/// A new Ed25519 key in `dir`: its private key file and its allowed-signers line.
fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    run(
        dir,
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            name,
            "-f",
            path.to_str().unwrap(),
        ],
    );
    let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let line = format!(
        "ann@example.com namespaces=\"git\" {} {}",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    (path, line)
}

fn once(f: &Fixture, signers: &Path) -> Output {
    f.command(&["--once", "--repo", f.repo.to_str().unwrap()])
        .env("UOS_DECLARATIVE__ALLOWED_SIGNERS", signers)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_applies_signed_commits_only() {
    let f = Fixture::new().await;
    let keys = tempfile::tempdir().unwrap();
    let (ann, ann_line) = key(keys.path(), "ann");
    let (mallory, _) = key(keys.path(), "mallory");
    let signers = keys.path().join("allowed_signers");
    std::fs::write(&signers, format!("{ann_line}\n")).unwrap();

    // Unsigned, then signed by a stranger: rejected, nothing applied, shown and audited.
    f.commit("Unsigned", None);
    let out = once(&f, &signers);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("acme (orgs/acme.yaml) at ")
            && text(&out.stdout).contains("rejected: the commit is not signed"),
        "{}",
        text(&out.stdout)
    );
    f.commit("Stranger", Some(&mallory));
    let out = once(&f, &signers);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("rejected: signed by a key"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(f.display_name().await, None);
    {
        let store = f.store().await;
        let mut r = store.read().await.unwrap();
        let status = r.get_declared_org("acme").await.unwrap().unwrap();
        assert_eq!(status.last_attempt.unwrap().result, "rejected");
        let events = r
            .list_audit(&Default::default(), &uos_store::PageRequest::first(100))
            .await
            .unwrap();
        let rejected = events
            .items
            .iter()
            .filter(|e| e.action == "declarative.rejected")
            .count();
        assert_eq!(rejected, 2, "each rejected commit is audited");
    }

    // Signed by an allowed signer: applied.
    f.commit("Acme Signed", Some(&ann));
    let out = once(&f, &signers);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("applied (1 changes)"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(f.display_name().await.as_deref(), Some("Acme Signed"));

    // A force-push back to an unsigned history is rejected in turn; the org stays.
    run(&f.repo, "git", &["reset", "-q", "--hard", "HEAD~2"]);
    let out = once(&f, &signers);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(f.display_name().await.as_deref(), Some("Acme Signed"));
}

/// A free local port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_serves_metrics_and_runs_when_asked() {
    let f = Fixture::new().await;
    f.commit("First", None);
    let port = free_port();
    let child = f
        .command(&["--repo", f.repo.to_str().unwrap()])
        .env("UOS_DECLARATIVE__LISTEN", format!("127.0.0.1:{port}"))
        .env("UOS_DECLARATIVE__POLL_SECS", "3600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Killed(child);
    let wait_for = |want: &'static str| {
        let f = &f;
        async move {
            for _ in 0..200 {
                if f.display_name().await.as_deref() == Some(want) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the org never became {want:?}");
        }
    };
    // The first pass runs at once.
    wait_for("First").await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\nuos_reconcile_leader 1\n"), "{metrics}");
    assert!(
        metrics.contains("uos_reconcile_last_success_timestamp_seconds"),
        "{metrics}"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // A new commit waits for the next poll (an hour away) unless someone asks: a sync
    // request (as the API and the push webhook make) runs a pass at once.
    f.commit("Second", None);
    let store = f.store().await;
    let mut tx = store.begin().await.unwrap();
    tx.request_declarative_sync(uos_domain::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    wait_for("Second").await;
}
