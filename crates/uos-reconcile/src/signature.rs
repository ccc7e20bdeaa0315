//! SSH commit signatures (`git commit -S` with `gpg.format=ssh`), checked against an
//! allowed-signers file in OpenSSH's format (`ssh-keygen -Y verify`'s `-f`), as
//! `git verify-commit` checks them: the signature is an SSHSIG over the commit in the `git`
//! namespace, made by a key the file lists for that namespace.

use ssh_key::{PublicKey, SshSig};

/// The namespace git signs commits in.
const NAMESPACE: &str = "git";

/// The keys allowed to sign, each with its principals.
#[derive(Clone, Debug, Default)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

#[derive(Clone, Debug)]
struct Signer {
    principals: Vec<String>,
    /// `namespaces="…"`; `None`: every namespace.
    namespaces: Option<Vec<String>>,
    key: PublicKey,
}

/// Why a commit's signature is not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the commit is not signed")]
    Unsigned,
    #[error("the commit's signature is not an SSH signature")]
    NotSsh,
    #[error("the commit's signature is malformed: {0}")]
    Malformed(String),
    #[error("signed by a key the allowed signers do not list for git: {0}")]
    UnknownSigner(String),
    #[error("the signature does not verify")]
    Invalid,
}

impl AllowedSigners {
    /// Parses an allowed-signers file: `principals [options] keytype base64 [comment]` per
    /// line, `#` comments. Supported option: `namespaces="…"`; others (`cert-authority`,
    /// `valid-after`, `valid-before`) are refused rather than ignored, since ignoring one
    /// would accept signatures the file means to refuse.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut signers = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            signers.push(parse_line(line).map_err(|e| format!("line {}: {e}", n + 1))?);
        }
        Ok(Self { signers })
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Checks `signature` (the armored SSHSIG of a commit) over `signed` (the commit without
    /// its signature); returns the signer's principals.
    pub fn verify(&self, signature: &[u8], signed: &[u8]) -> Result<Vec<String>, SignatureError> {
        let text = std::str::from_utf8(signature).map_err(|_| SignatureError::NotSsh)?;
        if !text
            .trim_start()
            .starts_with("-----BEGIN SSH SIGNATURE-----")
        {
            return Err(SignatureError::NotSsh);
        }
        let sig = SshSig::from_pem(text).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        if sig.namespace() != NAMESPACE {
            return Err(SignatureError::Malformed(format!(
                "namespace {:?}, not {NAMESPACE:?}",
                sig.namespace()
            )));
        }
        let signer = self
            .signers
            .iter()
            .find(|s| {
                s.key.key_data() == sig.public_key()
                    && s.namespaces
                        .as_ref()
                        .is_none_or(|ns| ns.iter().any(|n| n == NAMESPACE))
            })
            .ok_or_else(|| {
                SignatureError::UnknownSigner(
                    PublicKey::from(sig.public_key().clone())
                        .fingerprint(Default::default())
                        .to_string(),
                )
            })?;
        signer
            .key
            .verify(NAMESPACE, signed, &sig)
            .map_err(|_| SignatureError::Invalid)?;
        Ok(signer.principals.clone())
    }
}

fn parse_line(line: &str) -> Result<Signer, String> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let is_key_type =
        |t: &str| t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-");
    let key_at = tokens
        .iter()
        .skip(1)
        .position(|t| is_key_type(t))
        .map(|i| i + 1)
        .ok_or("no key (expected principals, then e.g. ssh-ed25519 AAAA…)")?;
    let principals: Vec<String> = tokens[0].split(',').map(str::to_owned).collect();
    let mut namespaces = None;
    for option in split_options(&tokens[1..key_at].join(" ")) {
        match option.split_once('=') {
            Some(("namespaces", list)) => {
                let list = list.trim_matches('"');
                namespaces = Some(list.split(',').map(str::to_owned).collect());
            }
            _ => return Err(format!("unsupported option {option:?}")),
        }
    }
    let blob = tokens.get(key_at + 1).ok_or("a key type without its key")?;
    let key = PublicKey::from_openssh(&format!("{} {blob}", tokens[key_at]))
        .map_err(|e| format!("bad key: {e}"))?;
    Ok(Signer {
        principals,
        namespaces,
        key,
    })
}

/// `a,b="x,y",c` → `a`, `b="x,y"`, `c`: commas inside quotes belong to the value.
fn split_options(options: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in options.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    out.push(current);
    out.retain(|o| !o.is_empty());
    out
}
