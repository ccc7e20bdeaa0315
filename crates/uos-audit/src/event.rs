//! Audit event types as stored and served, and parsing of exports (NDJSON or a list body).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uos_keys::PublicKey;
use uuid::Uuid;

use crate::ParseError;

/// Who did it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// `"user"`, `"system"`, `"api_key"` or `"anonymous"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

/// What it was done to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

/// The state before and after the change (`null` where there was none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Changes {
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// An event as the service layer describes it, before it gets its place in the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub org_id: Option<Uuid>,
    pub target: Target,
    pub changes: Changes,
    pub request_id: Option<String>,
}

/// A sealed event: part of the hash chain and signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Uuid,
    /// `org:<org_id>`, `platform` for events of no org, or `legacy` for the one chain of every
    /// event written before chains were per org (their stored form has no `chain`).
    #[serde(default = "legacy_chain")]
    pub chain: String,
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// RFC 3339 UTC with exactly six fractional digits and `Z`: microseconds are what Postgres
    /// `timestamptz` keeps, so the value (and therefore the hash) survives a round trip.
    #[serde(with = "micros_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub org_id: Option<Uuid>,
    pub target: Target,
    pub changes: Changes,
    pub request_id: Option<String>,
    /// Lowercase hex SHA-256 of the previous event; [`crate::GENESIS_HASH`] for seq 1.
    pub prev_hash: String,
    /// Lowercase hex SHA-256 of this event's canonical JSON (without `hash` and `signature`).
    pub hash: String,
    /// Standard base64 of the Ed25519 signature over the 32 raw bytes of `hash`.
    pub signature: String,
    /// Which audit key signed it.
    pub key_id: String,
    /// Personal data a reader could still decrypt, by JSON pointer into the event (e.g.
    /// `/changes/after/email`). Not hashed and never stored: the service adds it when it serves
    /// the event, and the hashed field at that pointer holds the ciphertext.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub personal: BTreeMap<String, serde_json::Value>,
    /// Pointers of personal data that can no longer be decrypted: its subject was purged and
    /// the key destroyed. Not hashed, like `personal`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<String>,
}

fn legacy_chain() -> String {
    crate::LEGACY_CHAIN.to_owned()
}

/// The one timestamp spelling used in events, shared by serde and the hash input.
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) mod micros_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// One event per line; blank lines are ignored, and so is a last manifest line (an export
/// file: see [`crate::parse_export`], which keeps it). Errors name the 1-based line.
pub fn parse_ndjson(input: &str) -> Result<Vec<AuditEvent>, ParseError> {
    crate::parse_export(input).map(|file| file.events)
}

/// An audit export in either shape the service produces: NDJSON (the export download) or the
/// `{"items": [...]}` body of `GET /v1/audit/events`. Events keep the order they appear in.
pub fn parse_events(input: &str) -> Result<Vec<AuditEvent>, ParseError> {
    // A list body is one JSON document with `items`; anything else (including a one-line NDJSON
    // file, which is also a single document) is read as NDJSON.
    if let Ok(serde_json::Value::Object(mut body)) = serde_json::from_str(input) {
        if let Some(items) = body.remove("items") {
            return serde_json::from_value(items).map_err(ParseError::Json);
        }
    }
    parse_ndjson(input)
}

/// The body of `GET /v1/audit/keys` (`{"keys": [...]}`), or a bare array of public keys.
pub fn parse_keys(input: &str) -> Result<Vec<PublicKey>, ParseError> {
    let value: serde_json::Value = serde_json::from_str(input).map_err(ParseError::Json)?;
    let keys = match value {
        serde_json::Value::Object(mut body) => body
            .remove("keys")
            .ok_or(ParseError::Shape(r#"an object with "keys""#))?,
        list @ serde_json::Value::Array(_) => list,
        _ => return Err(ParseError::Shape(r#"{"keys": [...]}"#)),
    };
    serde_json::from_value(keys).map_err(ParseError::Json)
}
