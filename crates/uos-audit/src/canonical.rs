//! Canonical JSON (the exact bytes that get hashed) and redaction of secrets in audit payloads.

use serde_json::Value;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// JSON with object keys sorted bytewise and no whitespace; strings and numbers are spelled the
/// way serde_json spells them. Sorting here, rather than trusting `serde_json::Map`'s order, keeps
/// hashes stable even if some crate in the build enables serde_json's `preserve_order`.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(v, &mut out);
    // Only JSON text is written, and serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// [`canonical_json`] into `out`, without building an intermediate string per key or scalar
/// (verification hashes every event, so this is the hot path of an offline check).
pub(crate) fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Scalars have one compact spelling in serde_json; writing into a Vec cannot fail.
        scalar => {
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Replaces, at any depth, the value of every key that names a secret with `"[redacted]"`, so an
/// audit event can never leak one even if a caller passes a whole record as `changes`.
///
/// Matching is case-insensitive on: `password`, `password_hash`, `secret`, `token`, `token_hash`,
/// `client_secret`, `private_key`, `totp_secret`, `recovery_codes`, `api_key`, and any key ending
/// in `_secret`, `_token` or `_hash`. A `null` stays `null`: it carries no secret, and "was unset"
/// vs. "was set" is itself worth auditing.
pub fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if is_secret_key(key) {
                    if !value.is_null() {
                        *value = Value::String(REDACTED.to_owned());
                    }
                } else {
                    redact(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    // `otpauth_uri` carries the TOTP secret in its query; `code` is a one-time or recovery
    // code (still usable if it was wrong for this request but right for another).
    const NAMES: [&str; 12] = [
        "password",
        "password_hash",
        "secret",
        "token",
        "token_hash",
        "client_secret",
        "private_key",
        "totp_secret",
        "recovery_codes",
        "api_key",
        "otpauth_uri",
        "code",
    ];
    const SUFFIXES: [&str; 3] = ["_secret", "_token", "_hash"];
    let key = key.to_ascii_lowercase();
    NAMES.contains(&key.as_str()) || SUFFIXES.iter().any(|s| key.ends_with(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn sorts_keys_at_every_depth_without_whitespace() {
        let v = json!({"b": 1, "a": {"z": [true, null, {"y": "x", "x": 1.5}], "a": "é\"\n"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"a":"é\"\n","z":[true,null,{"x":1.5,"y":"x"}]},"b":1}"#
        );
    }

    #[test]
    fn sort_is_bytewise() {
        let v = json!({"a": 1, "B": 2, "_": 3, "é": 4, "aa": 5});
        assert_eq!(canonical_json(&v), r#"{"B":2,"_":3,"a":1,"aa":5,"é":4}"#);
    }

    /// Arbitrary JSON values, with objects built from the generated key/value pairs.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((".{0,6}", inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// The same value with every object's entries inserted in reverse order.
    fn reinsert_reversed(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.reverse();
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), reinsert_reversed(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(reinsert_reversed).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn key_order_does_not_change_output(v in json_value()) {
            prop_assert_eq!(canonical_json(&v), canonical_json(&reinsert_reversed(&v)));
        }

        #[test]
        fn output_is_json_that_parses_back_to_the_same_value(v in json_value()) {
            let text = canonical_json(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(canonical_json(&back), text);
        }
    }

    #[test]
    fn redacts_secret_keys_at_any_depth() {
        let mut v = json!({
            "email": "a@example.com",
            "Password": "hunter2",
            "password_hash": "$argon2id$...",
            "profile": {"name": "A", "totp_secret": "JBSWY3DP", "recovery_codes": ["a", "b"]},
            "clients": [{"client_secret": {"nested": 1}, "client_id": "c1"}],
            "refresh_TOKEN": "t",
            "key_hash": "h",
            "webhook_secret": 7,
            "token": "x",
            "secret": "y",
            "private_key": "z",
            "api_key": "uos_abc",
            "otpauth_uri": "otpauth://totp/x?secret=JBSWY3DP",
            "code": "123456",
            "mfa_token": null,
            "tokens_issued": 3,
            "hashing": "argon2id",
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "email": "a@example.com",
                "Password": REDACTED,
                "password_hash": REDACTED,
                "profile": {"name": "A", "totp_secret": REDACTED, "recovery_codes": REDACTED},
                "clients": [{"client_secret": REDACTED, "client_id": "c1"}],
                "refresh_TOKEN": REDACTED,
                "key_hash": REDACTED,
                "webhook_secret": REDACTED,
                "token": REDACTED,
                "secret": REDACTED,
                "private_key": REDACTED,
                "api_key": REDACTED,
                "otpauth_uri": REDACTED,
                "code": REDACTED,
                "mfa_token": null,
                "tokens_issued": 3,
                "hashing": "argon2id",
            })
        );
    }
}
