//! SSH-signed commits made by real `git` with keys from real `ssh-keygen`, checked against an
//! allowed-signers file as `git verify-commit` checks them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use uos_reconcile::git::{Credentials, GitSource, Mirror};
use uos_reconcile::signature::{AllowedSigners, SignatureError};

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

/// A new Ed25519 key pair in `dir`; returns the private key's path and the public line.
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
    let line = format!("{} {}", parts.next().unwrap(), parts.next().unwrap());
    (path, line)
}

/// Commits a change in `repo`, signed with `key` if given; returns the commit id.
fn commit(repo: &Path, key: Option<&Path>, message: &str) -> String {
    std::fs::create_dir_all(repo.join("orgs")).unwrap();
    std::fs::write(repo.join("orgs/acme.yaml"), message).unwrap();
    run(repo, "git", &["add", "-A"]);
    let mut args = vec!["-c", "gpg.format=ssh", "-c", "commit.gpgsign=false"];
    let signing;
    if let Some(k) = key {
        signing = format!("user.signingkey={}", k.display());
        args.extend(["-c", signing.as_str(), "commit", "-q", "-S", "-m", message]);
    } else {
        args.extend(["commit", "-q", "-m", message]);
    }
    run(repo, "git", &args);
    run(repo, "git", &["rev-parse", "HEAD"])
}

struct Fixture {
    _keys: tempfile::TempDir,
    repo: tempfile::TempDir,
    _cache: tempfile::TempDir,
    mirror: Mirror,
    ann: PathBuf,
    ann_public: String,
    mallory: PathBuf,
}

fn fixture() -> Fixture {
    let keys = tempfile::tempdir().unwrap();
    let (ann, ann_public) = key(keys.path(), "ann");
    let (mallory, _) = key(keys.path(), "mallory");
    let repo = tempfile::tempdir().unwrap();
    run(
        repo.path(),
        "git",
        &["-c", "init.defaultBranch=main", "init", "-q"],
    );
    let cache = tempfile::tempdir().unwrap();
    let mirror = Mirror::open(cache.path()).unwrap();
    Fixture {
        _keys: keys,
        repo,
        _cache: cache,
        mirror,
        ann,
        ann_public,
        mallory,
    }
}

impl Fixture {
    fn fetch(&self) -> String {
        self.mirror
            .fetch(&GitSource {
                url: self.repo.path().to_str().unwrap().to_owned(),
                branch: "main".into(),
                credentials: Credentials::None,
                known_hosts: None,
            })
            .unwrap()
    }

    fn check(&self, signers: &AllowedSigners, commit: &str) -> Result<Vec<String>, SignatureError> {
        match self.mirror.commit_signature(commit).unwrap() {
            None => Err(SignatureError::Unsigned),
            Some(c) => signers.verify(&c.signature, &c.signed),
        }
    }
}

#[test]
fn a_commit_signed_by_an_allowed_key_verifies_as_git_verifies_it() {
    let f = fixture();
    let signed = commit(f.repo.path(), Some(&f.ann), "signed");
    assert_eq!(f.fetch(), signed);
    let file = format!("ann@example.com,ann@corp.example {}\n", f.ann_public);
    let signers = AllowedSigners::parse(&file).unwrap();
    assert_eq!(
        f.check(&signers, &signed).unwrap(),
        ["ann@example.com", "ann@corp.example"]
    );

    // git itself agrees with the same file.
    let allowed = f.repo.path().join("allowed_signers");
    std::fs::write(&allowed, &file).unwrap();
    let setting = format!("gpg.ssh.allowedSignersFile={}", allowed.display());
    run(
        f.repo.path(),
        "git",
        &["-c", &setting, "verify-commit", &signed],
    );
}

#[test]
fn unsigned_unknown_and_tampered_commits_are_refused() {
    let f = fixture();
    let signers = AllowedSigners::parse(&format!("ann@example.com {}", f.ann_public)).unwrap();

    let unsigned = commit(f.repo.path(), None, "unsigned");
    let by_mallory = commit(f.repo.path(), Some(&f.mallory), "by mallory");
    let by_ann = commit(f.repo.path(), Some(&f.ann), "by ann");
    assert_eq!(f.fetch(), by_ann);
    assert_eq!(f.check(&signers, &unsigned), Err(SignatureError::Unsigned));
    assert!(matches!(
        f.check(&signers, &by_mallory),
        Err(SignatureError::UnknownSigner(fp)) if fp.starts_with("SHA256:")
    ));
    assert!(f.check(&signers, &by_ann).is_ok());

    // Ann's signature over different bytes (a commit altered after signing).
    let c = f.mirror.commit_signature(&by_ann).unwrap().unwrap();
    let (signature, signed) = (c.signature, c.signed);
    let mut altered = signed.clone();
    altered.extend_from_slice(b"\nand one more line");
    assert_eq!(
        signers.verify(&signature, &altered),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        signers.verify(b"not a signature", &signed),
        Err(SignatureError::NotSsh)
    );

    // A key allowed for other namespaces only does not sign commits.
    let file_only = format!("ann@example.com namespaces=\"file,email\" {}", f.ann_public);
    let signers = AllowedSigners::parse(&file_only).unwrap();
    assert!(matches!(
        f.check(&signers, &by_ann),
        Err(SignatureError::UnknownSigner(_))
    ));
    let git_too = format!("ann@example.com namespaces=\"file,git\" {}", f.ann_public);
    assert!(f
        .check(&AllowedSigners::parse(&git_too).unwrap(), &by_ann)
        .is_ok());
}

#[test]
fn an_allowed_signers_file_is_read_strictly() {
    let f = fixture();
    let ok = format!(
        "# team keys\n\nann@example.com {} ann's laptop\n",
        f.ann_public
    );
    assert!(!AllowedSigners::parse(&ok).unwrap().is_empty());
    for (text, expected) in [
        (
            format!("ann@example.com cert-authority {}", f.ann_public),
            "line 1: unsupported option \"cert-authority\"",
        ),
        (
            format!("ann@example.com valid-after=\"20260101\" {}", f.ann_public),
            "line 1: unsupported option \"valid-after=\\\"20260101\\\"\"",
        ),
        ("ann@example.com".to_owned(), "line 1: no key"),
        (
            "ann@example.com ssh-ed25519".to_owned(),
            "line 1: a key type without its key",
        ),
    ] {
        let err = AllowedSigners::parse(&text).unwrap_err();
        assert!(err.starts_with(expected), "{text}: {err}");
    }
    assert!(AllowedSigners::parse("a ssh-ed25519 AAAAnotbase64!")
        .unwrap_err()
        .starts_with("line 1: bad key"));
}
