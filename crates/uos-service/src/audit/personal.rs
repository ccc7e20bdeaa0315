//! Personal data in audit events, encrypted under a key per data subject, so that purging the
//! subject (destroying its key) erases that data from every copy of the sealed event — the
//! store, exports, and what Kafka consumers retained — while every chain still verifies: the
//! hash and signature cover the ciphertext, which never changes.
//!
//! **What is personal.** In `changes.before` and `changes.after` (top-level keys of each), the
//! values of [`PERSONAL_KEYS`]: `email` and `display_name` (user, member and invite snapshots,
//! failed logins, lockouts), `ip` and `user_agent` (logins, sessions, resets, refused
//! credentials), and `subject` (the upstream identity of `identity.linked`). A `null` stays
//! `null`. The `target.id` of an event about an email with no account (`login.failed`,
//! `account.locked`) is replaced by that email's subject (`email:<keyed hash>`), so the
//! address itself is never in the clear. Not treated as personal: ids (opaque), org names,
//! role names, statuses, counts, the free-form `reason` of a status change or legal hold
//! (operators are told not to put personal data there), and client `preferences`.
//!
//! **Whose.** Per side of `changes`: the user its `user_id` names; else the target user of a
//! user-targeted event; else the normalised `email` it holds (or the email target), as the
//! subject `email:<hex HMAC-SHA256(secret "audit-subject-email", email)>`. Fields with no
//! subject (a refresh token replayed for a session already gone) stay in the clear. Purging
//! a user destroys `user:<id>` and the subject of its email.
//!
//! **Stored form.** `uos-pd:1:<subject>:<base64url(nonce || ciphertext)>`, XChaCha20-Poly1305
//! of the value's JSON under the subject's key, with the event id, the field's JSON pointer and
//! the subject as associated data (a ciphertext moved to another event or field does not
//! open). Subject keys are 32 random bytes stored only wrapped by the key provider
//! (`KeyProvider::encrypt`, context `subject-key:<subject>`), one row per subject, created in
//! the unit of work of the first event that needs it and cached unwrapped per replica
//! ([`SubjectKeys`]), so an append costs no key-provider round trip.
//!
//! **Served form.** Readers (the events API, exports) add two unhashed members: `personal`
//! (pointer → decrypted value) and `erased` (pointers whose key is gone). The Kafka stream
//! carries only the sealed form.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac as _};
use rand::rngs::OsRng;
use rand::RngCore as _;
use serde_json::Value;
use sha2::Sha256;
use uos_audit::NewEvent;
use uos_keys::KeyProvider;
use uos_store::SubjectKey;
use uuid::Uuid;

/// The start of every encrypted field.
pub(crate) const PREFIX: &str = "uos-pd:1:";

/// Keys whose values are personal data (see the module doc).
pub(crate) const PERSONAL_KEYS: [&str; 5] =
    ["email", "display_name", "ip", "user_agent", "subject"];

/// The name of the key provider's secret behind email subjects.
pub(crate) const EMAIL_SECRET: &str = "audit-subject-email";

/// Unwrapped keys a replica keeps at most; past it the cache starts over (a miss costs one
/// read and one unwrap).
const CACHED_KEYS: usize = 50_000;

/// How long an unwrapped key is trusted without reading its row again: bounds how long a
/// replica that missed the purge's invalidation message can still decrypt.
const KEY_TTL: Duration = Duration::from_secs(300);

const NONCE_LEN: usize = 24;

/// A subject's data key.
pub(crate) type DataKey = [u8; 32];

/// The key provider context a subject's key is wrapped under.
pub(crate) fn wrap_context(subject: &str) -> String {
    format!("subject-key:{subject}")
}

pub(crate) fn user_subject(id: Uuid) -> String {
    format!("user:{id}")
}

/// A fresh random data key.
pub(crate) fn new_key() -> DataKey {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    key
}

/// Per-replica state: the email-subject secret and the cache of unwrapped keys.
pub(crate) struct SubjectKeys {
    email_secret: [u8; 32],
    cache: Mutex<HashMap<String, (Arc<DataKey>, Instant)>>,
}

impl std::fmt::Debug for SubjectKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectKeys").finish_non_exhaustive()
    }
}

impl SubjectKeys {
    pub(crate) fn new(email_secret: [u8; 32]) -> Self {
        Self {
            email_secret,
            cache: Mutex::default(),
        }
    }

    /// `email:<hex HMAC-SHA256>` of the trimmed, lower-cased address: the same for every
    /// spelling the service treats as one address, and not reversible without the secret.
    pub(crate) fn email_subject(&self, email: &str) -> String {
        // HMAC zero-pads a key shorter than the hash's 64-byte block, so keying it with the
        // padded block is HMAC under the 32-byte secret, without a fallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.email_secret);
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&block.into());
        mac.update(email.trim().to_lowercase().as_bytes());
        format!("email:{}", hex::encode(mac.finalize().into_bytes()))
    }

    pub(crate) fn cached(&self, subject: &str) -> Option<Arc<DataKey>> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(subject)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(k, _)| Arc::clone(k))
    }

    /// Keep an unwrapped key. Only keys whose row is committed may be remembered: a key of a
    /// rolled-back transaction would encrypt data nobody can ever decrypt.
    pub(crate) fn remember(&self, subject: &str, key: Arc<DataKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_KEYS {
            cache.clear();
        }
        cache.insert(subject.to_owned(), (key, Instant::now()));
    }

    /// A user changed (it may have been purged): drop its key and every email subject's (which
    /// of them was its address is not known here, and they are few and cheap to reload).
    pub(crate) fn forget_user(&self, user: Uuid) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&user_subject(user));
        cache.retain(|subject, _| !subject.starts_with("email:"));
    }

    pub(crate) fn forget_emails(&self) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.retain(|subject, _| !subject.starts_with("email:"));
    }

    pub(crate) fn clear(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// One personal field of an event: `changes.<side>.<key>`, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) side: &'static str,
    pub(crate) key: String,
    pub(crate) subject: String,
}

impl Field {
    pub(crate) fn pointer(&self) -> String {
        format!("/changes/{}/{}", self.side, self.key)
    }
}

/// The subject one side of `changes` speaks about (see the module doc).
fn subject_of(
    side: &serde_json::Map<String, Value>,
    event: &NewEvent,
    keys: &SubjectKeys,
) -> Option<String> {
    if let Some(id) = side
        .get("user_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
    {
        return Some(user_subject(id));
    }
    if event.target.kind == "user" {
        if let Some(id) = event
            .target
            .id
            .as_deref()
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            return Some(user_subject(id));
        }
    }
    if let Some(email) = side.get("email").and_then(Value::as_str) {
        return Some(keys.email_subject(email));
    }
    if event.target.kind == "email" {
        return event.target.id.as_deref().map(|e| keys.email_subject(e));
    }
    None
}

/// Replaces an email target's address by its subject, and lists the personal fields of
/// `event` still to be encrypted.
pub(crate) fn personal_fields(event: &mut NewEvent, keys: &SubjectKeys) -> Vec<Field> {
    if event.target.kind == "email" {
        if let Some(email) = event.target.id.as_deref() {
            if !email.starts_with("email:") {
                event.target.id = Some(keys.email_subject(email));
            }
        }
    }
    let mut fields = Vec::new();
    for (side, value) in [
        ("before", &event.changes.before),
        ("after", &event.changes.after),
    ] {
        let Value::Object(map) = value else { continue };
        let personal: Vec<&String> = map
            .iter()
            // A value already encrypted (an event sealed again after a head conflict) is
            // left as it is.
            .filter(|(k, v)| {
                PERSONAL_KEYS.contains(&k.as_str())
                    && !v.is_null()
                    && !v.as_str().is_some_and(|s| s.starts_with(PREFIX))
            })
            .map(|(k, _)| k)
            .collect();
        if personal.is_empty() {
            continue;
        }
        // With the target's address already replaced, an email target's side falls back to
        // the `email` it holds, which is the same address.
        let Some(subject) = subject_of(map, event, keys) else {
            continue;
        };
        fields.extend(personal.into_iter().map(|k| Field {
            side,
            key: k.clone(),
            subject: subject.clone(),
        }));
    }
    fields
}

fn aad(event_id: Uuid, pointer: &str, subject: &str) -> Vec<u8> {
    // None of the three contains a newline, so the joined form cannot be read two ways.
    format!("{event_id}\n{pointer}\n{subject}").into_bytes()
}

/// Replace each field's value of `event` by its ciphertext under `key_of(subject)`.
pub(crate) fn encrypt_fields(
    event: &mut NewEvent,
    fields: &[Field],
    key_of: impl Fn(&str) -> Option<Arc<DataKey>>,
) -> Result<(), String> {
    for f in fields {
        let key = key_of(&f.subject).ok_or_else(|| format!("no key for subject {}", f.subject))?;
        let side = match f.side {
            "before" => &mut event.changes.before,
            _ => &mut event.changes.after,
        };
        let Some(slot) = side.get_mut(&f.key) else {
            continue;
        };
        let plain = serde_json::to_vec(slot).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let sealed = XChaCha20Poly1305::new(key.as_ref().into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad(event.id, &f.pointer(), &f.subject),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut payload = nonce.to_vec();
        payload.extend_from_slice(&sealed);
        *slot = Value::String(format!(
            "{PREFIX}{}:{}",
            f.subject,
            URL_SAFE_NO_PAD.encode(payload)
        ));
    }
    Ok(())
}

/// The subject an encrypted field's text names, and its payload.
fn parse_field(text: &str) -> Option<(&str, Vec<u8>)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (subject, body) = rest.rsplit_once(':')?;
    let payload = URL_SAFE_NO_PAD.decode(body).ok()?;
    (payload.len() > NONCE_LEN).then_some((subject, payload))
}

/// The encrypted fields of a served event (its JSON), as `(pointer, subject, text)`.
pub(crate) fn encrypted_fields(event: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for side in ["before", "after"] {
        let Some(Value::Object(map)) = event.get("changes").and_then(|c| c.get(side)) else {
            continue;
        };
        for (k, v) in map {
            if let Some(text) = v.as_str() {
                if let Some((subject, _)) = parse_field(text) {
                    found.push((
                        format!("/changes/{side}/{k}"),
                        subject.to_owned(),
                        text.to_owned(),
                    ));
                }
            }
        }
    }
    found
}

/// Decrypt one field; `None` if it does not open (wrong or destroyed key, moved ciphertext).
fn open_field(key: &DataKey, event_id: Uuid, pointer: &str, text: &str) -> Option<Value> {
    let (subject, payload) = parse_field(text)?;
    let (nonce, sealed) = payload.split_at(NONCE_LEN);
    let plain = XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad(event_id, pointer, subject),
            },
        )
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

/// Adds `personal` and `erased` to each served event: what `key_of` still opens, and what it
/// no longer can. Events without encrypted fields are left as they are.
pub(crate) fn reveal(events: &mut [Value], keys: &HashMap<String, Arc<DataKey>>) {
    for event in events {
        let fields = encrypted_fields(event);
        if fields.is_empty() {
            continue;
        }
        let id = event
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_default();
        let mut personal = BTreeMap::new();
        let mut erased = Vec::new();
        for (pointer, subject, text) in fields {
            match keys
                .get(&subject)
                .and_then(|k| open_field(k, id, &pointer, &text))
            {
                Some(value) => {
                    personal.insert(pointer, value);
                }
                None => erased.push(pointer),
            }
        }
        if let Value::Object(map) = event {
            if !personal.is_empty() {
                map.insert(
                    "personal".into(),
                    Value::Object(personal.into_iter().collect()),
                );
            }
            if !erased.is_empty() {
                map.insert(
                    "erased".into(),
                    erased.into_iter().map(Value::String).collect(),
                );
            }
        }
    }
}

/// Unwraps stored subject keys through the key provider, off the async runtime (a provider
/// may make a network call). A key that does not unwrap is an error, never "erased": only a
/// missing row means the subject was purged.
pub(crate) async fn unwrap_keys(
    provider: Arc<dyn KeyProvider>,
    rows: Vec<SubjectKey>,
) -> Result<Vec<(String, Arc<DataKey>)>, String> {
    tokio::task::spawn_blocking(move || {
        rows.into_iter()
            .map(|row| {
                let plain = provider
                    .decrypt(&wrap_context(&row.subject), &row.wrapped_key)
                    .map_err(|e| format!("subject key of {}: {e}", row.subject))?;
                let key: DataKey = plain
                    .try_into()
                    .map_err(|_| format!("subject key of {}: not 32 bytes", row.subject))?;
                Ok((row.subject, Arc::new(key)))
            })
            .collect()
    })
    .await
    .map_err(|e| format!("subject key unwrap task: {e}"))?
}

/// Wraps a new subject key through the key provider, off the async runtime.
pub(crate) async fn wrap_key(
    provider: Arc<dyn KeyProvider>,
    subject: &str,
    key: DataKey,
) -> Result<String, String> {
    let context = wrap_context(subject);
    tokio::task::spawn_blocking(move || provider.encrypt(&context, &key))
        .await
        .map_err(|e| format!("subject key wrap task: {e}"))?
        .map_err(|e| format!("subject key wrap: {e}"))
}

/// The subjects whose keys `events` need.
pub(crate) fn subjects_of(events: &[Value]) -> HashSet<String> {
    events
        .iter()
        .flat_map(encrypted_fields)
        .map(|(_, subject, _)| subject)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;
    use uos_audit::{Actor, Changes, Target};

    fn event(target: (&str, &str), before: Value, after: Value) -> NewEvent {
        NewEvent {
            id: Uuid::now_v7(),
            occurred_at: chrono::Utc::now(),
            actor: Actor {
                kind: "system".into(),
                id: None,
            },
            action: "test.action".into(),
            org_id: None,
            target: Target {
                kind: target.0.into(),
                id: Some(target.1.into()),
            },
            changes: Changes { before, after },
            request_id: None,
        }
    }

    fn keys() -> SubjectKeys {
        SubjectKeys::new([7; 32])
    }

    #[test]
    fn subjects_follow_user_id_then_target_user_then_email() {
        let k = keys();
        let user = Uuid::now_v7();
        let other = Uuid::now_v7();
        let mut e = event(
            ("user", &user.to_string()),
            json!({"email": "A@x.test", "display_name": null, "status": "active"}),
            json!({"user_id": other, "ip": "10.0.0.1", "user_agent": "ua"}),
        );
        let fields = personal_fields(&mut e, &k);
        assert_eq!(
            fields,
            [
                Field {
                    side: "before",
                    key: "email".into(),
                    subject: user_subject(user)
                },
                Field {
                    side: "after",
                    key: "ip".into(),
                    subject: user_subject(other)
                },
                Field {
                    side: "after",
                    key: "user_agent".into(),
                    subject: user_subject(other)
                },
            ],
            "a null is not personal; user_id wins over the target"
        );

        let mut invite = event(
            ("invite", "i1"),
            Value::Null,
            json!({"email": " Bob@X.test ", "roles": ["member"]}),
        );
        let fields = personal_fields(&mut invite, &k);
        assert_eq!(
            fields[0].subject,
            k.email_subject("bob@x.test"),
            "normalised email"
        );
        assert!(fields[0].subject.starts_with("email:") && fields[0].subject.len() == 6 + 64);
        assert_ne!(
            k.email_subject("bob@x.test"),
            SubjectKeys::new([8; 32]).email_subject("bob@x.test"),
            "keyed"
        );
    }

    #[test]
    fn an_email_target_is_replaced_by_its_subject() {
        let k = keys();
        let mut e = event(
            ("email", "nobody@x.test"),
            Value::Null,
            json!({"email": "nobody@x.test", "reason": "unknown"}),
        );
        let fields = personal_fields(&mut e, &k);
        let subject = k.email_subject("nobody@x.test");
        assert_eq!(e.target.id.as_deref(), Some(subject.as_str()));
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].subject, subject);
        // Idempotent: sealing the event again (after a head conflict) keeps the subject.
        personal_fields(&mut e, &k);
        assert_eq!(e.target.id.as_deref(), Some(subject.as_str()));
    }

    #[test]
    fn encrypted_fields_open_with_their_key_only_where_they_were_written() {
        let k = keys();
        let user = Uuid::now_v7();
        let mut e = event(
            ("user", &user.to_string()),
            Value::Null,
            json!({"email": "a@x.test", "display_name": "Ann", "status": "active"}),
        );
        let fields = personal_fields(&mut e, &k);
        let key = Arc::new(new_key());
        encrypt_fields(&mut e, &fields, |_| Some(Arc::clone(&key))).unwrap();
        let stored = e.changes.after["email"].as_str().unwrap().to_owned();
        assert!(
            stored.starts_with(&format!("{PREFIX}user:{user}:")),
            "{stored}"
        );
        assert!(!stored.contains("a@x.test"));
        assert_eq!(
            e.changes.after["status"], "active",
            "what is not personal stays"
        );

        let served =
            json!({"id": e.id, "changes": {"before": null, "after": e.changes.after.clone()}});
        let mut with_key = vec![served.clone()];
        reveal(
            &mut with_key,
            &HashMap::from([(user_subject(user), Arc::clone(&key))]),
        );
        assert_eq!(
            with_key[0]["personal"],
            json!({"/changes/after/email": "a@x.test", "/changes/after/display_name": "Ann"})
        );
        assert!(with_key[0].get("erased").is_none());

        let mut without = vec![served.clone()];
        reveal(&mut without, &HashMap::new());
        assert_eq!(
            without[0]["erased"],
            json!(["/changes/after/display_name", "/changes/after/email"])
        );
        assert!(without[0].get("personal").is_none());

        // Another key (the subject was purged and a new key made) does not open it either.
        let mut other_key = vec![served.clone()];
        reveal(
            &mut other_key,
            &HashMap::from([(user_subject(user), Arc::new(new_key()))]),
        );
        assert_eq!(other_key[0]["erased"].as_array().unwrap().len(), 2);

        // A ciphertext moved to another field or event does not open.
        let mut moved = served.clone();
        moved["changes"]["after"]["display_name"] = Value::String(stored.clone());
        moved["changes"]["after"]["email"] = Value::Null;
        let mut moved = vec![moved];
        reveal(
            &mut moved,
            &HashMap::from([(user_subject(user), Arc::clone(&key))]),
        );
        assert_eq!(moved[0]["erased"], json!(["/changes/after/display_name"]));
        let mut other_event = served;
        other_event["id"] = json!(Uuid::now_v7());
        let mut other_event = vec![other_event];
        reveal(
            &mut other_event,
            &HashMap::from([(user_subject(user), key)]),
        );
        assert_eq!(other_event[0]["erased"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_cache_forgets_a_user_and_every_email_subject() {
        let k = keys();
        let user = Uuid::now_v7();
        let other = Uuid::now_v7();
        let email = k.email_subject("a@x.test");
        for s in [user_subject(user), user_subject(other), email.clone()] {
            k.remember(&s, Arc::new(new_key()));
        }
        k.forget_user(user);
        assert!(k.cached(&user_subject(user)).is_none());
        assert!(k.cached(&email).is_none());
        assert!(k.cached(&user_subject(other)).is_some());
    }
}
