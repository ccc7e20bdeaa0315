//! The production adapter: SMTP through lettre's async tokio transport.
//!
//! `none` speaks plain SMTP and is meant for a relay or sink on loopback; `starttls` requires the
//! upgrade (no opportunistic fallback, so a relay that stops offering STARTTLS cannot downgrade
//! us to clear text); `tls` is implicit TLS (SMTPS). TLS is rustls with the ring provider and the
//! webpki roots, fixed in the workspace's lettre features.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType, MIME_VERSION_1_0};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use schemars::JsonSchema;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::{check_mail, parse_mailbox, Mail, MailError, Mailer};

/// The `[smtp]` settings.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or address of the SMTP relay.
    pub host: String,
    /// Its port (usually 587 with `starttls`, 465 with `tls`).
    pub port: u16,
    /// How the connection is protected.
    pub security: SmtpSecurity,
    /// Set together with `password`, and only with `starttls` or `tls`.
    pub username: Option<String>,
    /// The relay's password for `username`.
    #[schemars(with = "Option<String>", extend("writeOnly" = true))]
    pub password: Option<SecretString>,
    /// The From mailbox, `noreply@example.com` or `Example <noreply@example.com>`.
    pub from: String,
    /// Upper bound for one whole send, connect to QUIT; 1 to 3600.
    pub timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP: for a relay or sink on loopback only.
    None,
    /// Plain connect, then a required STARTTLS upgrade (usually port 587).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Sends each mail over a new SMTP connection; invites and recovery mails are too rare for a
/// connection pool to pay for its idle connections.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    timeout: Duration,
    host: String,
    port: u16,
    security: SmtpSecurity,
}

impl SmtpMailer {
    /// Checks the settings and prepares the transport; connects only when a mail is sent.
    pub fn new(cfg: &SmtpConfig) -> Result<Self, MailError> {
        let from = parse_mailbox("from", &cfg.from)?;
        let host = cfg.host.trim();
        if host.is_empty() {
            return Err(MailError::Config("host is empty".into()));
        }
        // An hour is far past any sane relay; the cap also keeps deadline arithmetic in range.
        if !(1..=3600).contains(&cfg.timeout_secs) {
            return Err(MailError::Config(
                "timeout_secs must be between 1 and 3600".into(),
            ));
        }
        let timeout = Duration::from_secs(cfg.timeout_secs);

        let tls = match cfg.security {
            SmtpSecurity::None => {
                if !is_loopback(host) {
                    tracing::warn!(
                        host,
                        "SMTP security is `none` for a host that is not loopback: mail, including \
                         reset tokens, crosses the network in clear text"
                    );
                }
                Tls::None
            }
            SmtpSecurity::Starttls => Tls::Required(tls_parameters(host)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(cfg.port)
            .tls(tls)
            .timeout(Some(timeout));
        match (&cfg.username, &cfg.password) {
            (None, None) => {}
            (Some(user), Some(password)) => {
                if cfg.security == SmtpSecurity::None {
                    return Err(MailError::Config(
                        "username and password need security `starttls` or `tls`: with `none` \
                         they would be sent in clear text"
                            .into(),
                    ));
                }
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose_secret().to_owned(),
                ));
            }
            _ => {
                return Err(MailError::Config(
                    "username and password must be set together".into(),
                ))
            }
        }
        Ok(Self {
            transport: builder.build(),
            from,
            timeout,
            host: host.to_owned(),
            port: cfg.port,
            security: cfg.security,
        })
    }
}

impl fmt::Debug for SmtpMailer {
    // Hand-written so the transport (which holds the credentials) is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from.to_string())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn backend(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let to = check_mail(mail)?;
        // Only the domain: the full address is personal data, and the body holds tokens.
        let to_domain = to.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .message_id(None)
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(encode_body(&mail.text)?)
            .map_err(|e| MailError::Internal(format!("building the message: {e}")))?;
        // lettre's timeout bounds each step; this one bounds the whole exchange, so a relay that
        // answers slowly but steadily cannot hold a request for long.
        let result = match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Err(_) => Err(MailError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(MailError::Smtp {
                permanent: e.is_permanent(),
                message: e.to_string(),
            }),
            Ok(Ok(_)) => Ok(()),
        };
        match &result {
            Ok(()) => {
                tracing::debug!(%to_domain, subject = %mail.subject, "mail handed to the SMTP relay")
            }
            Err(e) => {
                tracing::debug!(%to_domain, subject = %mail.subject, error = %e, "SMTP send failed")
            }
        }
        result
    }
}

/// The body as 7bit when it is plain ASCII with short lines, else quoted-printable (readable in
/// raw form, and it keeps line breaks as line breaks, unlike base64).
///
/// SMTP ends the data with `CRLF . CRLF`, and lettre always sends that whole sequence, so the
/// body's own final line break is dropped here: otherwise every mail would arrive with an extra
/// empty line. A text without a final line break arrives with one; SMTP cannot carry the
/// difference.
fn encode_body(text: &str) -> Result<Body, MailError> {
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::SevenBit)
        .or_else(|_| {
            Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::QuotedPrintable)
        })
        .map_err(|_| MailError::Internal("encoding the body as quoted-printable".into()))
}

fn tls_parameters(host: &str) -> Result<TlsParameters, MailError> {
    TlsParameters::builder(host.to_owned())
        .certificate_store(CertificateStore::WebpkiRoots)
        .build_rustls()
        .map_err(|e| MailError::Config(format!("TLS for host {host:?}: {e}")))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
