//! Outgoing webhooks: the port notifications leave the service through, and its HTTP adapter.
//!
//! Every delivery is a `POST` of a JSON body, signed so the receiver can tell it came from this
//! service and was not replayed later: `X-UOS-Signature: t=<unix seconds>,v1=<hex>`, where the
//! hex is HMAC-SHA256 under the shared secret of `<t>.<body>` (the scheme Stripe and others
//! use, so receivers have libraries for it). `X-UOS-Event` names the event type and
//! `X-UOS-Delivery` the delivery id, the same on every retry, for the receiver to deduplicate.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long one delivery attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One delivery attempt's request.
#[derive(Clone, Debug)]
pub struct Delivery<'a> {
    pub url: &'a str,
    pub id: &'a str,
    pub event_type: &'a str,
    pub body: &'a [u8],
    /// Seconds since the Unix epoch, signed with the body.
    pub timestamp: i64,
}

/// Why an attempt failed: the receiver's status, or no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("answered {0}")]
    Status(u16),
    #[error("no answer: {0}")]
    Transport(String),
}

/// Where webhook deliveries are sent.
#[async_trait]
pub trait WebhookTransport: Send + Sync + fmt::Debug + 'static {
    /// Sends one delivery; `Ok` with the status when the receiver answered 2xx.
    async fn send(&self, delivery: &Delivery<'_>) -> Result<u16, WebhookError>;
}

/// The HTTP adapter: reqwest with rustls, one client for every endpoint.
pub struct HttpWebhooks {
    client: reqwest::Client,
    secret: Vec<u8>,
}

impl fmt::Debug for HttpWebhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is never shown.
        f.debug_struct("HttpWebhooks").finish_non_exhaustive()
    }
}

impl HttpWebhooks {
    pub fn new(secret: &[u8]) -> Result<Self, WebhookError> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A receiver redirecting elsewhere would get the signed body at an address
            // nobody configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Transport(e.to_string()))?;
        Ok(Self {
            client,
            secret: secret.to_vec(),
        })
    }
}

#[async_trait]
impl WebhookTransport for HttpWebhooks {
    async fn send(&self, d: &Delivery<'_>) -> Result<u16, WebhookError> {
        let res = self
            .client
            .post(d.url)
            .header("content-type", "application/json")
            .header("x-uos-event", d.event_type)
            .header("x-uos-delivery", d.id)
            .header(
                "x-uos-signature",
                signature_header(&self.secret, d.timestamp, d.body),
            )
            .body(d.body.to_vec())
            .send()
            .await
            .map_err(|e| WebhookError::Transport(without_url(&e)))?;
        let status = res.status().as_u16();
        if res.status().is_success() {
            Ok(status)
        } else {
            Err(WebhookError::Status(status))
        }
    }
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature_header(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", sign(secret, timestamp, body))
}

/// The hex HMAC of one delivery, for receivers (and tests) to check against.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A reqwest error's text without the URL, which may carry credentials in its query.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = sign(b"secret", 1, b"{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign(b"secret", 2, b"{}"));
        assert_ne!(a, sign(b"secret", 1, b"{ }"));
        assert_ne!(a, sign(b"other", 1, b"{}"));
        assert_eq!(signature_header(b"secret", 1, b"{}"), format!("t=1,v1={a}"));
    }
}
