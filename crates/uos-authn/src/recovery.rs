//! One-time MFA recovery codes: generation, normalisation of what people type, stored hash.
//!
//! A code is 10 characters of lowercase Crockford base32 (`0-9a-z` without `i l o u`) shown as
//! `abcd-efgh-jk`: 50 bits from the OS RNG. Without `i`, `l` and `o` the alphabet has no
//! look-alike pairs, and on input `o` is read as `0` and `i`/`l` as `1`, so the usual misreadings
//! still redeem.
//!
//! Storing: keep [`hash_recovery_code`] — HMAC-SHA-256 keyed with a server-side pepper (e.g.
//! `KeyProvider::secret("recovery-code-pepper")`) — not [`crate::hash_token`]. A fast unsalted
//! hash is fine for the other tokens because they carry ≥128 bits, but 50 bits is within reach
//! of offline guessing: with an unkeyed hash, one pass over 2^50 candidates tests every stored
//! code of every user at once, so a database dump would yield codes within hours on GPUs. Keyed
//! with a pepper that lives outside the database, a dump alone allows no guessing at all; online
//! guessing is already stopped by rate limits. A slow hash (argon2) is not needed, and would cost
//! one hash per stored code at each redemption, because the code does not say which row it is.

use std::collections::HashSet;

use hmac::{Hmac, Mac as _};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::Sha256;

/// Characters in a code, without the dashes.
pub const RECOVERY_CODE_LEN: usize = 10;
/// Lowercase Crockford base32: 32 symbols, so 5 bits per character and 50 bits per code.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `n` distinct codes in display form (`abcd-efgh-jk`), to be shown to the user once.
pub fn generate_recovery_codes(n: usize) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    while codes.len() < n {
        let code = random_code();
        // Repeats are astronomically unlikely, but a duplicate would silently be one code.
        if seen.insert(code.clone()) {
            codes.push(display(&code));
        }
    }
    codes
}

/// The canonical form of a typed code (10 lowercase alphabet characters, no dashes), or `None`
/// if it cannot be a code. Case is ignored, spaces and dashes anywhere are dropped, and `o`, `i`,
/// `l` are read as `0`, `1`, `1`.
pub fn normalize_recovery_code(input: &str) -> Option<String> {
    let mut code = String::with_capacity(RECOVERY_CODE_LEN);
    for c in input.chars() {
        let c = match c.to_ascii_lowercase() {
            ' ' | '-' => continue,
            'o' => '0',
            'i' | 'l' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if code.len() == RECOVERY_CODE_LEN {
            return None;
        }
        code.push(c);
    }
    (code.len() == RECOVERY_CODE_LEN).then_some(code)
}

/// What the store keeps for a code: lowercase hex HMAC-SHA-256 of its normalised form, keyed with
/// `pepper` (see the module docs for why not a plain hash). `None` if `code` is not a valid code,
/// so typed input can be passed straight in.
pub fn hash_recovery_code(pepper: &[u8], code: &str) -> Option<String> {
    let code = normalize_recovery_code(code)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(pepper).ok()?;
    mac.update(code.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

fn random_code() -> String {
    let mut bytes = [0u8; RECOVERY_CODE_LEN];
    OsRng.fill_bytes(&mut bytes);
    // 256 is a multiple of 32, so taking the low 5 bits keeps every symbol equally likely.
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// `abcdefghjk` → `abcd-efgh-jk`.
fn display(code: &str) -> String {
    let mut shown = String::with_capacity(RECOVERY_CODE_LEN + 2);
    for (i, c) in code.chars().enumerate() {
        if i == 4 || i == 8 {
            shown.push('-');
        }
        shown.push(c);
    }
    shown
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const PEPPER: &[u8] = &[7u8; 32];

    #[test]
    fn codes_have_the_display_shape_and_alphabet() {
        let codes = generate_recovery_codes(10);
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 12, "{code}");
            let groups: Vec<_> = code.split('-').map(str::len).collect();
            assert_eq!(groups, [4, 4, 2], "{code}");
            assert!(
                code.bytes().all(|b| b == b'-' || ALPHABET.contains(&b)),
                "{code}"
            );
            assert!(!code.contains(['i', 'l', 'o', 'u']), "{code}");
        }
    }

    #[test]
    fn codes_are_distinct_and_carry_at_least_50_bits() {
        let bits = RECOVERY_CODE_LEN as f64 * (ALPHABET.len() as f64).log2();
        assert!(bits >= 50.0, "{bits} bits");
        let codes = generate_recovery_codes(2_000);
        let unique: HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), codes.len());
        assert!(generate_recovery_codes(0).is_empty());
    }

    #[test]
    fn every_symbol_is_used() {
        let all: HashSet<u8> = generate_recovery_codes(500)
            .concat()
            .bytes()
            .filter(|b| *b != b'-')
            .collect();
        assert_eq!(all.len(), 32, "5,000 draws cover all 32 symbols");
    }

    #[test]
    fn normalize_accepts_what_people_type() {
        let code = &generate_recovery_codes(1)[0];
        let canonical = code.replace('-', "");
        assert_eq!(normalize_recovery_code(code).as_deref(), Some(&*canonical));
        for typed in [
            code.to_uppercase(),
            canonical.clone(),
            format!(" {} ", code.replace('-', " - ")),
            canonical.chars().flat_map(|c| [c, ' ']).collect(),
        ] {
            assert_eq!(
                normalize_recovery_code(&typed).as_deref(),
                Some(&*canonical),
                "{typed:?}"
            );
        }
        assert_eq!(
            normalize_recovery_code("OIL0-1abc-de").as_deref(),
            Some("01101abcde"),
            "look-alikes map to digits"
        );
    }

    #[test]
    fn normalize_rejects_wrong_length_or_alphabet() {
        for bad in [
            "",
            "abcd-efgh-j",
            "abcd-efgh-jkm",
            "abcd-efgh-ju",
            "abcd-efgh-j!",
            "abcd_efgh_jk",
            "abcd-efgh-jé",
            "abcd-efgh-j\u{0}",
            "ａbcd-efgh-jk",
            &"a".repeat(10_000),
        ] {
            assert_eq!(normalize_recovery_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_is_keyed_and_matches_any_typing_of_the_code() {
        let code = &generate_recovery_codes(1)[0];
        let stored = hash_recovery_code(PEPPER, code).unwrap();
        assert_eq!(stored.len(), 64);
        assert!(stored
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(
            hash_recovery_code(PEPPER, &code.to_uppercase().replace('-', " ")).as_deref(),
            Some(&*stored)
        );
        assert_ne!(hash_recovery_code(&[8u8; 32], code).unwrap(), stored);
        assert_ne!(
            stored,
            crate::hash_token(&code.replace('-', "")),
            "not the unkeyed token hash"
        );
        assert_eq!(hash_recovery_code(PEPPER, "nope"), None);
    }

    #[test]
    fn hash_matches_an_independent_hmac_sha256() {
        // Computed outside Rust: hmac.new(b"Jefe", b"0123456789", hashlib.sha256).hexdigest()
        assert_eq!(
            hash_recovery_code(b"Jefe", "0123-4567-89").as_deref(),
            Some("b34d13b25c057bcd121cfbb35c4438bac34f19bfeff09b76b2b5cc82d7bcdd96")
        );
    }
}
