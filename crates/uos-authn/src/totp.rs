//! Time-based one-time passwords (RFC 6238) with the parameters every authenticator app
//! defaults to: HMAC-SHA-1, 6 digits, 30-second steps.
//!
//! [`verify`] returns the matched time step rather than a bool: a code stays valid for up to
//! three steps (±1 of skew), so the caller must remember the last step used per user and refuse
//! any step at or before it, or an observed code could be replayed.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::rngs::OsRng;
use rand::RngCore as _;
use totp_rs::{Algorithm, Secret, TOTP};

use crate::constant_time_eq;

/// Length of a generated secret: 160 bits, the size RFC 4226 recommends for HMAC-SHA-1.
pub const TOTP_SECRET_LEN: usize = 20;
/// Digits in a code.
pub const TOTP_DIGITS: usize = 6;
/// Seconds per time step.
pub const TOTP_STEP_SECS: u64 = 30;
/// Steps accepted on either side of the current one, for clock drift and typing time.
pub const TOTP_SKEW_STEPS: u64 = 1;

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded, which is
/// what authenticator apps decode in both the label and the query.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A new random secret from the OS RNG. Store it encrypted (`KeyProvider::encrypt`): unlike a
/// password hash, the raw secret is needed to verify codes.
pub fn generate_secret() -> Vec<u8> {
    let mut secret = vec![0u8; TOTP_SECRET_LEN];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// Unpadded RFC 4648 base32 (upper case), the form apps accept for manual entry.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

/// The `otpauth://` URI that enrolment QR codes carry, e.g.
/// `otpauth://totp/Acme%20Corp:alice%40example.com?secret=…&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30`.
///
/// The parameters are spelled out even where they are the defaults, so apps that guess
/// differently still agree. Issuer and account are percent-encoded (a `:` inside either becomes
/// `%3A`, though some apps still mis-split on it, so avoid colons). An empty issuer leaves out
/// both the label prefix and the `issuer` parameter.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let account = utf8_percent_encode(account, COMPONENT);
    let mut query = format!("secret={}", secret_base32(secret));
    let label = if issuer.is_empty() {
        account.to_string()
    } else {
        let issuer = utf8_percent_encode(issuer, COMPONENT);
        query.push_str(&format!("&issuer={issuer}"));
        format!("{issuer}:{account}")
    };
    query.push_str(&format!(
        "&algorithm=SHA1&digits={TOTP_DIGITS}&period={TOTP_STEP_SECS}"
    ));
    format!("otpauth://totp/{label}?{query}")
}

/// Checks `code` against `secret` at `now_unix` (seconds), accepting the previous, current and
/// next step. Returns the matched time step (`unix time / 30`), or `None` for a wrong code, a
/// code that is not exactly 6 ASCII digits (spaces anywhere are ignored, so `"123 456"` works),
/// or a secret shorter than the RFC minimum of 16 bytes.
///
/// All candidate steps are always computed and compared in constant time, so the response time
/// does not reveal which step (if any) matched. If more than one step matches (a one-in-a-million
/// coincidence), the latest is returned, which is the safe choice for replay protection.
pub fn verify(secret: &[u8], code: &str, now_unix: u64) -> Option<i64> {
    let code = normalize_code(code)?;
    let totp = TOTP::new(
        Algorithm::SHA1,
        TOTP_DIGITS,
        0,
        TOTP_STEP_SECS,
        secret.to_vec(),
        None,
        String::new(),
    )
    .ok()?;
    let current = now_unix / TOTP_STEP_SECS;
    let first = current.saturating_sub(TOTP_SKEW_STEPS);
    let last = current.saturating_add(TOTP_SKEW_STEPS);
    let mut matched = None;
    for step in first..=last {
        let Some(at) = step.checked_mul(TOTP_STEP_SECS) else {
            continue;
        };
        if constant_time_eq(totp.generate(at).as_bytes(), code.as_bytes()) {
            matched = i64::try_from(step).ok();
        }
    }
    matched
}

/// The code without spaces, if what remains is exactly [`TOTP_DIGITS`] ASCII digits.
fn normalize_code(code: &str) -> Option<String> {
    let code: String = code.trim().chars().filter(|c| *c != ' ').collect();
    (code.len() == TOTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit())).then_some(code)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// RFC 6238 appendix B uses this ASCII secret for its SHA-1 vectors.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// (time, 8-digit code) from RFC 6238 appendix B, SHA-1 column. Dynamic truncation is the
    /// same for any length, so the 6-digit code is the last 6 digits.
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn code_at(secret: &[u8], time: u64) -> String {
        TOTP::new(
            Algorithm::SHA1,
            6,
            0,
            30,
            secret.to_vec(),
            None,
            String::new(),
        )
        .unwrap()
        .generate(time)
    }

    #[test]
    fn rfc6238_sha1_vectors_truncated_to_6_digits() {
        for (time, eight) in RFC_VECTORS {
            let six = &eight[2..];
            assert_eq!(
                verify(RFC_SECRET, six, time),
                Some((time / 30) as i64),
                "T={time} code {six}"
            );
            assert_eq!(verify(RFC_SECRET, eight, time), None, "8 digits refused");
        }
    }

    #[test]
    fn one_step_of_skew_is_accepted_and_reports_the_codes_own_step() {
        let secret = generate_secret();
        let now = 1_700_000_015;
        let step = (now / 30) as i64;
        let previous = code_at(&secret, now - 30);
        let next = code_at(&secret, now + 30);
        assert_eq!(verify(&secret, &code_at(&secret, now), now), Some(step));
        assert_eq!(verify(&secret, &previous, now), Some(step - 1));
        assert_eq!(verify(&secret, &next, now), Some(step + 1));
    }

    #[test]
    fn two_steps_of_skew_are_refused() {
        let secret = RFC_SECRET;
        let now = 1_700_000_015;
        for time in [now - 60, now + 60, now - 90, now + 90] {
            let code = code_at(secret, time);
            let inside: Vec<String> = [now - 30, now, now + 30]
                .iter()
                .map(|t| code_at(secret, *t))
                .collect();
            assert!(!inside.contains(&code), "fixture codes must differ");
            assert_eq!(verify(secret, &code, now), None, "code from T={time}");
        }
    }

    #[test]
    fn malformed_codes_are_refused_without_panic() {
        let (time, eight) = RFC_VECTORS[0];
        let good = &eight[2..];
        assert!(verify(RFC_SECRET, good, time).is_some());
        assert!(verify(RFC_SECRET, &format!("  {good} "), time).is_some());
        assert!(verify(RFC_SECRET, "287 082", time).is_some(), "grouped");
        for bad in [
            "",
            " ",
            "28708",
            "2870822",
            "28708a",
            "-28708",
            "+28708",
            "2870 8",
            "２８７０８２",
            "287082\u{0}",
            "28\u{301}7082",
            "٢٨٧٠٨٢",
            "0x1234",
        ] {
            assert_eq!(verify(RFC_SECRET, bad, time), None, "{bad:?}");
        }
    }

    #[test]
    fn short_secret_or_edge_times_do_not_panic() {
        assert_eq!(verify(b"short", "123456", 59), None);
        assert_eq!(verify(&[], "123456", 59), None);
        let secret = generate_secret();
        let at_zero = code_at(&secret, 0);
        assert_eq!(verify(&secret, &at_zero, 0), Some(0));
        assert_eq!(verify(&secret, &at_zero, 29), Some(0));
        let _ = verify(&secret, "123456", u64::MAX);
    }

    #[test]
    fn secret_is_20_random_bytes() {
        let a = generate_secret();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn base32_is_unpadded_rfc4648() {
        assert_eq!(
            secret_base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
        assert_eq!(secret_base32(b"f"), "MY", "no '=' padding");
        assert_eq!(secret_base32(&generate_secret()).len(), 32);
    }

    #[test]
    fn otpauth_uri_spells_out_parameters_and_encodes_names() {
        let uri = otpauth_uri(RFC_SECRET, "Acme Corp", "alice+mfa@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20Corp:alice%2Bmfa%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp\
             &algorithm=SHA1&digits=6&period=30"
        );
        let colon = otpauth_uri(RFC_SECRET, "a:b", "c&d=e?f/g#h");
        assert!(
            colon.starts_with("otpauth://totp/a%3Ab:c%26d%3De%3Ff%2Fg%23h?"),
            "{colon}"
        );
        assert!(colon.contains("&issuer=a%3Ab&"), "{colon}");
        assert_eq!(
            otpauth_uri(RFC_SECRET, "", "bob"),
            "otpauth://totp/bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &algorithm=SHA1&digits=6&period=30"
        );
        let unicode = otpauth_uri(RFC_SECRET, "Zürich", "é");
        assert!(
            unicode.starts_with("otpauth://totp/Z%C3%BCrich:%C3%A9?"),
            "{unicode}"
        );
    }
}
