//! Fetching the config repository with git2: a bare mirror kept in a local directory, one
//! branch fetched into it (force-pushes included), and the org files read straight from a
//! commit's tree, so no working tree can be half-updated or left dirty.
//!
//! Everything here blocks (network and disk): callers on an async runtime run it on a
//! blocking thread.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, ObjectType, Oid,
    RemoteCallbacks, Repository,
};

use crate::repo::ORGS_DIR;

/// Where the config comes from.
#[derive(Clone)]
pub struct GitSource {
    /// A local path, `file://…`, `https://…` or `ssh://…` (or `user@host:path`).
    pub url: String,
    pub branch: String,
    pub credentials: Credentials,
    /// For ssh remotes: a `known_hosts` file whose keys the server's host key must be one of
    /// (`None`: libgit2's default, the user's `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
}

/// How to authenticate to the remote. Never printed: `Debug` names the kind only.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    None,
    /// An access token for https, sent as the password of HTTP basic auth (GitHub, GitLab and
    /// Gitea all take it this way).
    Token(String),
    /// A private key file for ssh.
    SshKey {
        private_key: PathBuf,
        passphrase: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Token(_) => "Token(…)",
            Credentials::SshKey { .. } => "SshKey(…)",
        })
    }
}

impl std::fmt::Debug for GitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitSource")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("credentials", &self.credentials)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{0:?} is not a valid branch name")]
    InvalidBranch(String),
    #[error("the remote has no branch {0}")]
    NoBranch(String),
    #[error("no commit {0} in the mirror")]
    NoCommit(String),
    #[error("the known hosts file {0}: {1}")]
    KnownHosts(PathBuf, String),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// A bare mirror of the config repository in a local directory.
pub struct Mirror {
    repo: Repository,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("path", &self.repo.path())
            .finish()
    }
}

/// A commit's signature and the bytes it signs (the commit without its signature).
#[derive(Clone, Debug)]
pub struct SignedCommit {
    pub signature: Vec<u8>,
    pub signed: Vec<u8>,
}

impl Mirror {
    /// Opens the mirror at `dir`, creating an empty one if there is none.
    pub fn open(dir: &Path) -> Result<Self, GitError> {
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(dir)?,
        };
        Ok(Self { repo })
    }

    /// Fetches `source.branch` and returns the commit it points to now. A branch that was
    /// force-pushed is followed to its new commit.
    pub fn fetch(&self, source: &GitSource) -> Result<String, GitError> {
        let head = format!("refs/heads/{}", source.branch);
        if !git2::Reference::is_valid_name(&head) {
            return Err(GitError::InvalidBranch(source.branch.clone()));
        }
        let tracking = format!("refs/remotes/origin/{}", source.branch);
        let known_hosts = match &source.known_hosts {
            Some(path) => Some(KnownHosts::load(path)?),
            None => None,
        };
        let mut remote = self.repo.remote_anonymous(&source.url)?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(callbacks(&source.credentials, known_hosts))
            .download_tags(AutotagOption::None);
        remote.fetch(&[format!("+{head}:{tracking}")], Some(&mut options), None)?;
        // A branch the remote lacks fetches nothing and leaves no reference.
        let reference = self
            .repo
            .find_reference(&tracking)
            .map_err(|_| GitError::NoBranch(source.branch.clone()))?;
        Ok(reference.peel_to_commit()?.id().to_string())
    }

    /// The signature of `commit` and what it signs; `None` for an unsigned commit.
    pub fn commit_signature(&self, commit: &str) -> Result<Option<SignedCommit>, GitError> {
        let oid = Oid::from_str(commit).map_err(|_| GitError::NoCommit(commit.to_owned()))?;
        self.repo
            .find_commit(oid)
            .map_err(|_| GitError::NoCommit(commit.to_owned()))?;
        match self.repo.extract_signature(&oid, None) {
            Ok((signature, signed)) => Ok(Some(SignedCommit {
                signature: signature.to_vec(),
                signed: signed.to_vec(),
            })),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The files directly inside `orgs/` at `commit`, as (name, contents); none if the commit
    /// has no `orgs/`.
    pub fn org_files(&self, commit: &str) -> Result<Vec<(String, Vec<u8>)>, GitError> {
        let oid = Oid::from_str(commit).map_err(|_| GitError::NoCommit(commit.to_owned()))?;
        let commit = self
            .repo
            .find_commit(oid)
            .map_err(|_| GitError::NoCommit(commit.to_owned()))?;
        let tree = commit.tree()?;
        let Ok(entry) = tree.get_path(Path::new(ORGS_DIR)) else {
            return Ok(Vec::new());
        };
        let Ok(dir) = entry.to_object(&self.repo)?.peel_to_tree() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in dir.iter() {
            if entry.kind() != Some(ObjectType::Blob) {
                continue;
            }
            let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
            let blob = self.repo.find_blob(entry.id())?;
            out.push((name, blob.content().to_vec()));
        }
        Ok(out)
    }
}

/// Credential callbacks that offer `credentials` once: libgit2 asks again after a refusal,
/// and offering the same secret forever would hang the fetch instead of failing it.
fn callbacks(credentials: &Credentials, known_hosts: Option<KnownHosts>) -> RemoteCallbacks<'_> {
    let mut callbacks = RemoteCallbacks::new();
    if let Some(known) = known_hosts {
        callbacks.certificate_check(move |cert, host| {
            // TLS certificates keep libgit2's own verification.
            let Some(hostkey) = cert.as_hostkey() else {
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            match hostkey.hostkey() {
                Some(raw) if known.allows(host, raw) => Ok(CertificateCheckStatus::CertificateOk),
                _ => Err(git2::Error::from_str(&format!(
                    "the SSH host key of {host} is not in the known hosts file"
                ))),
            }
        });
    }
    let mut offered = false;
    callbacks.credentials(move |_url, username, allowed| {
        if offered {
            return Err(git2::Error::from_str("the remote refused the credentials"));
        }
        offered = true;
        match credentials {
            Credentials::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                Cred::userpass_plaintext(username.unwrap_or("x-access-token"), token)
            }
            Credentials::SshKey {
                private_key,
                passphrase,
            } if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key(
                username.unwrap_or("git"),
                None,
                private_key,
                passphrase.as_deref(),
            ),
            _ => Err(git2::Error::from_str(
                "the remote asks for credentials this source does not have",
            )),
        }
    });
    callbacks
}

/// Host keys from a `known_hosts` file: `host[,host…] keytype base64 [comment]` per line
/// (`[host]:port` for other ports). Hashed host names (`|1|…`) and markers (`@revoked`,
/// `@cert-authority`) are refused: this file pins keys, it does not delegate trust.
struct KnownHosts(Vec<(Vec<String>, Vec<u8>)>);

impl KnownHosts {
    fn load(path: &Path) -> Result<Self, GitError> {
        let bad = |m: String| GitError::KnownHosts(path.to_owned(), m);
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() < 3 || t[0].starts_with('@') || t[0].starts_with('|') {
                return Err(bad(format!(
                    "line {}: expected host[,host] keytype key (no markers, no hashed names)",
                    n + 1
                )));
            }
            let key = STANDARD
                .decode(t[2])
                .map_err(|_| bad(format!("line {}: the key is not base64", n + 1)))?;
            keys.push((t[0].split(',').map(str::to_owned).collect(), key));
        }
        Ok(Self(keys))
    }

    /// Whether `key` (the raw host key) is listed for `host`.
    fn allows(&self, host: &str, key: &[u8]) -> bool {
        let with_port = format!("[{host}]:");
        self.0.iter().any(|(hosts, k)| {
            k == key && hosts.iter().any(|h| h == host || h.starts_with(&with_port))
        })
    }
}
