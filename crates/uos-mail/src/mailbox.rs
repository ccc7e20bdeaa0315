//! The embedded default: a dev mailbox of JSON files in the data directory.
//!
//! Layout: `<dir>/<uuid-v7>.json`, one file per mail. Mails carry reset and invite tokens, so the
//! directory is 0700 and each file 0600 (Unix only, like the local key store). UUID v7 ids start
//! with the send time, so sorting ids sorts mails oldest first.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{check_mail, Mail, MailError, Mailer};

/// Mails "sent" in development, kept as files for `uosctl mail list|show` to print.
#[derive(Clone, Debug)]
pub struct DevMailbox {
    dir: PathBuf,
}

/// One mail as the dev mailbox stored it; also the JSON format of its file.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMail {
    /// UUID v7, lowercase hyphenated; also the file name without `.json`.
    pub id: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub sent_at: DateTime<Utc>,
}

impl fmt::Debug for StoredMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMail")
            .field("id", &self.id)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("sent_at", &self.sent_at)
            .finish()
    }
}

impl DevMailbox {
    /// Opens the mailbox directory, creating it (and its parents) if missing, and makes it 0700
    /// even if it already existed with a looser mode.
    pub fn open(dir: &Path) -> Result<Self, MailError> {
        let io = |source| MailError::Io {
            path: dir.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        // `DirBuilder::mode` only applies to directories it creates.
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every stored mail, oldest first. Files that are not stored mails (foreign, malformed,
    /// misnamed, unreadable) are skipped with a warning, so one bad file cannot hide the others;
    /// only an unreadable directory is an error.
    pub fn list(&self) -> Result<Vec<StoredMail>, MailError> {
        let io = |source| MailError::Io {
            path: self.dir.clone(),
            source,
        };
        let mut mails = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                tracing::warn!(path = %path.display(), "skipping a file that is not a stored mail");
                continue;
            };
            // Dot files are our temporary files: in flight, or left by a crash mid-write.
            if name.starts_with('.') {
                continue;
            }
            let Some(id) = id_from_file_name(name) else {
                tracing::warn!(path = %path.display(), "skipping a file that is not a stored mail");
                continue;
            };
            match read_mail(&path, &id) {
                Ok(mail) => mails.push(mail),
                // Deleted between listing and reading: it is simply no longer there.
                Err(MailError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a stored mail that cannot be read");
                }
            }
        }
        mails.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(mails)
    }

    /// The mail with this id, `None` if there is none. Any UUID spelling is accepted; anything
    /// else is no id of ours (and is never joined into a path).
    pub fn get(&self, id: &str) -> Result<Option<StoredMail>, MailError> {
        let Ok(uuid) = Uuid::parse_str(id.trim()) else {
            return Ok(None);
        };
        let id = uuid.hyphenated().to_string();
        match read_mail(&self.dir.join(format!("{id}.json")), &id) {
            Ok(mail) => Ok(Some(mail)),
            Err(MailError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    fn backend(&self) -> &'static str {
        "mailbox"
    }

    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to = check_mail(mail)?;
        let stored = StoredMail {
            id: Uuid::now_v7().hyphenated().to_string(),
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            text: mail.text.clone(),
            sent_at: Utc::now(),
        };
        let id = stored.id.clone();
        let dir = self.dir.clone();
        // Small writes, but blocking ones (fsync): keep them off the async workers.
        tokio::task::spawn_blocking(move || write_mail(&dir, &stored))
            .await
            .map_err(|e| MailError::Internal(format!("dev mailbox write task: {e}")))??;
        tracing::debug!(%id, to_domain = %to.email.domain(), subject = %mail.subject, "mail stored in the dev mailbox");
        tracing::info!(%id, "mail stored in the dev mailbox; print it with `uosctl mail show {id}`");
        Ok(())
    }
}

/// `<uuid>.json` with the UUID in the canonical form we write, or `None`.
fn id_from_file_name(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".json")?;
    let uuid = Uuid::parse_str(stem).ok()?;
    let id = uuid.hyphenated().to_string();
    (id == stem).then_some(id)
}

fn read_mail(path: &Path, id: &str) -> Result<StoredMail, MailError> {
    let malformed = |reason: String| MailError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let bytes = fs::read(path).map_err(|source| MailError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mail: StoredMail = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    if mail.id != id {
        return Err(malformed(format!(
            "its id {:?} does not match its file name",
            mail.id
        )));
    }
    Ok(mail)
}

/// Writes the mail to a 0600 temporary file and renames it into place, so a reader never sees a
/// half-written mail and a crash leaves only a dot file that listing skips.
fn write_mail(dir: &Path, mail: &StoredMail) -> Result<(), MailError> {
    let path = dir.join(format!("{}.json", mail.id));
    let tmp = dir.join(format!(".{}.json.tmp", mail.id));
    let json = serde_json::to_vec_pretty(mail)
        .map_err(|e| MailError::Internal(format!("encoding a stored mail: {e}")))?;
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(&json)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &path));
    if result.is_err() {
        // Best effort: the error below is what matters, and listing skips dot files anyway.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|source| MailError::Io { path, source })
}
