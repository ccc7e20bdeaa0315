//! Outgoing-mail port: invites and account-recovery mails leave the service through a
//! [`Mailer`].
//!
//! The embedded default is [`DevMailbox`], one JSON file per mail in the data directory, which
//! `uosctl mail list|show` prints. The production adapter is [`SmtpMailer`] (lettre over tokio,
//! rustls with the ring provider).
//!
//! Mail bodies carry password-reset and invite tokens, so nothing here logs a body, and `Debug`
//! of [`Mail`] and [`StoredMail`] shows only its length.

mod mailbox;
mod smtp;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;

pub use mailbox::{DevMailbox, StoredMail};
pub use smtp::{SmtpConfig, SmtpMailer, SmtpSecurity};

/// One plain-text mail to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    /// `user@example.com` or `Name <user@example.com>`.
    pub to: String,
    /// One line; line breaks are refused (they would let a caller inject headers).
    pub subject: String,
    /// Plain-text body; may contain secrets, so it is never logged.
    pub text: String,
}

impl fmt::Debug for Mail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// Where outgoing mail goes. Implementations validate the mail the same way (see
/// [`MailError::InvalidAddress`], [`MailError::InvalidMail`]) so that a mail the dev mailbox
/// accepts is one SMTP accepts too.
#[async_trait]
pub trait Mailer: Send + Sync + fmt::Debug + 'static {
    /// `"mailbox"` or `"smtp"`, for logs and the health report.
    fn backend(&self) -> &'static str;

    /// Delivers `mail` (to the relay, for SMTP) or fails; never panics on bad input.
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// `from` or `to` is not a mailbox. The address itself is left out of the message because
    /// errors end up in logs and addresses are personal data.
    #[error("invalid {field} address: {reason}")]
    InvalidAddress { field: &'static str, reason: String },
    /// The mail cannot be sent as given (e.g. a line break in the subject).
    #[error("invalid mail: {0}")]
    InvalidMail(&'static str),
    /// The SMTP settings are unusable; reported at start-up by [`SmtpMailer::new`].
    #[error("invalid SMTP configuration: {0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored mail that was asked for by id could not be read back.
    #[error("{}: malformed stored mail: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    /// The relay refused the mail or could not be reached. `permanent` is true for a 5xx reply:
    /// sending the same mail again will fail again.
    #[error("SMTP delivery failed: {message}")]
    Smtp { permanent: bool, message: String },
    #[error("SMTP delivery did not finish within {0:?}")]
    Timeout(Duration),
    /// A background task died (a bug, not bad input).
    #[error("internal mail error: {0}")]
    Internal(String),
}

/// Validation shared by every backend; returns the parsed recipient.
pub(crate) fn check_mail(mail: &Mail) -> Result<Mailbox, MailError> {
    let to = parse_mailbox("to", &mail.to)?;
    if mail.subject.chars().any(char::is_control) {
        return Err(MailError::InvalidMail(
            "the subject contains a line break or another control character",
        ));
    }
    Ok(to)
}

pub(crate) fn parse_mailbox(field: &'static str, value: &str) -> Result<Mailbox, MailError> {
    value
        .trim()
        .parse::<Mailbox>()
        .map_err(|e| MailError::InvalidAddress {
            field,
            reason: e.to_string(),
        })
}
