//! The reconciler's composition: the services it applies through, and where the config repo
//! is and what it trusts, all from configuration.

use secrecy::ExposeSecret;
use uos_reconcile::git::{Credentials, GitSource};
use uos_reconcile::signature::AllowedSigners;
use uos_reconcile::{Engine, Source};

use crate::{services, AppError, Config, ConfigError};

/// The reconciler for `cfg`; `repo` (its command line's `--repo`) wins over
/// `declarative.repo`.
pub async fn reconciler(cfg: &Config, repo: Option<String>) -> Result<Engine, AppError> {
    let d = &cfg.declarative;
    let url = repo.or_else(|| d.repo.clone()).ok_or_else(|| {
        ConfigError("declarative.repo: set it (or pass --repo) to the config repo".into())
    })?;
    let credentials = match (&d.token, &d.ssh_key) {
        (Some(_), Some(_)) => {
            return Err(ConfigError(
                "declarative.token: set a token or an SSH key, not both".into(),
            )
            .into())
        }
        (Some(token), None) => Credentials::Token(token.expose_secret().to_owned()),
        (None, Some(key)) => Credentials::SshKey {
            private_key: key.clone(),
            passphrase: None,
        },
        (None, None) => Credentials::None,
    };
    let is_ssh = url.starts_with("ssh://") || (url.contains('@') && url.contains(':'));
    if is_ssh && d.known_hosts.is_none() {
        return Err(ConfigError(
            "declarative.known_hosts: an ssh repo needs the server's host key pinned".into(),
        )
        .into());
    }
    let signers = match &d.allowed_signers {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!(
                    "declarative.allowed_signers: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            let signers = AllowedSigners::parse(&text)
                .map_err(|e| ConfigError(format!("declarative.allowed_signers: {e}")))?;
            if signers.is_empty() {
                return Err(ConfigError(
                    "declarative.allowed_signers: the file lists no signer".into(),
                )
                .into());
            }
            Some(signers)
        }
        None => None,
    };
    let source = Source::for_repo(
        GitSource {
            url,
            branch: d.branch.clone(),
            credentials,
            known_hosts: d.known_hosts.clone(),
        },
        cfg.data_dir.join("declarative-mirror"),
    );
    let svc = services(cfg).await?;
    Ok(Engine::new(svc, source, signers, d.branch.clone()))
}
