//! API keys and OAuth2 client secrets: random base62 text with a public lookup prefix and a
//! CRC-32 checksum, stored only as a peppered HMAC.
//!
//! An API key reads `uos_<prefix>_<secret>_<checksum>`:
//! - `prefix`: 12 random base62 characters. Public; the store looks the key up by it, so a
//!   presented key costs one indexed read, never a scan.
//! - `secret`: 43 random base62 characters, 43 × log2(62) ≈ 256 bits.
//! - `checksum`: CRC-32 (IEEE) of `uos_<prefix>_<secret>` as 6 base62 digits, most significant
//!   first, zero-padded (62^6 > 2^32, so it always fits).
//!
//! The checksum is not a secret and protects nothing cryptographically. It lets clients, secret
//! scanners and the server itself tell a typo or a truncated paste from a real key offline, like
//! GitHub's tokens: [`parse_api_key`] turns junk away before any store lookup. Client secrets
//! (`uoscs_<secret>_<checksum>`) use the same scheme without a prefix, because the client id
//! already names the row.
//!
//! Storing: keep [`hash_api_key`] — HMAC-SHA-256 keyed with a server-side pepper. A fast hash is
//! enough because the secret carries 256 bits; the pepper means a database dump alone cannot
//! even confirm a leaked key.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::Sha256;

use crate::constant_time_eq;

/// What every API key starts with; also how a bearer credential is routed (see
/// [`looks_like_api_key`]).
pub const API_KEY_PREFIX: &str = "uos_";
/// Length of an API key in bytes (all ASCII): `4 + 12 + 1 + 43 + 1 + 6`.
pub const API_KEY_LEN: usize =
    API_KEY_PREFIX.len() + LOOKUP_LEN + 1 + SECRET_LEN + 1 + CHECKSUM_LEN;

/// What every client secret starts with. Distinct from [`API_KEY_PREFIX`] so neither kind of
/// credential is ever mistaken for the other.
const CLIENT_SECRET_PREFIX: &str = "uoscs_";
/// Characters in the public lookup prefix of an API key.
const LOOKUP_LEN: usize = 12;
/// Characters of randomness: ⌈256 / log2(62)⌉ = 43.
const SECRET_LEN: usize = 43;
/// Base62 digits of the CRC-32.
const CHECKSUM_LEN: usize = 6;
/// The lengths of the random fields of each kind, in order; the checksum follows them.
const API_KEY_FIELDS: [usize; 2] = [LOOKUP_LEN, SECRET_LEN];
const CLIENT_SECRET_FIELDS: [usize; 1] = [SECRET_LEN];

/// Digits first, so the checksum's base62 digits sort like numbers.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Bytes below this map onto the alphabet exactly 4 times each; the rest are drawn again, so
/// every character is equally likely (no modulo bias).
const UNBIASED_BYTE_LIMIT: u8 = 4 * 62;

/// A freshly generated key: the full secret text (shown once) and its public prefix.
///
/// `Debug` shows only the prefix, so the key cannot end up in a log by accident.
pub struct NewApiKey {
    /// The whole key, `uos_<prefix>_<secret>_<checksum>`. Give it to the user once; store only
    /// [`hash_api_key`] of it.
    pub key: String,
    /// The 12-character lookup prefix (without `uos_`), to store next to the hash.
    pub prefix: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &"<redacted>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// A key that passed the offline checks. Borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedApiKey<'a> {
    /// The 12-character lookup prefix (without `uos_`).
    pub prefix: &'a str,
    /// The whole key as presented, for [`verify_api_key`].
    pub full: &'a str,
}

/// Why a presented key or client secret was turned away without a lookup. All of them mean
/// "unauthenticated" to a client; the variants are for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("key contains non-ASCII characters")]
    NotAscii,
    #[error("key does not start with the expected prefix")]
    WrongPrefix,
    #[error("key has the wrong length")]
    WrongLength,
    /// Wrong separators, characters outside base62, or parts of the wrong length.
    #[error("key is not shaped like a key")]
    BadShape,
    #[error("key checksum does not match")]
    BadChecksum,
}

/// A new API key from the OS RNG.
pub fn generate_api_key() -> NewApiKey {
    let prefix = random_base62(LOOKUP_LEN);
    let key = with_checksum(format!(
        "{API_KEY_PREFIX}{prefix}_{}",
        random_base62(SECRET_LEN)
    ));
    NewApiKey { key, prefix }
}

/// Offline validation: ASCII only, starts with "uos_", total length 67, the three parts separated
/// by single '_' have lengths 12/43/6 and only base62 chars, checksum matches. Cheap,
/// allocation-free, runs before any store lookup.
pub fn parse_api_key(raw: &str) -> Result<ParsedApiKey<'_>, MalformedKey> {
    let [prefix, _secret] = check(raw, API_KEY_PREFIX, API_KEY_FIELDS)?;
    Ok(ParsedApiKey { prefix, full: raw })
}

/// Looks like an API key (starts with "uos_"), used to route a bearer credential; says nothing
/// about validity.
pub fn looks_like_api_key(raw: &str) -> bool {
    raw.starts_with(API_KEY_PREFIX)
}

/// What the store keeps: lowercase hex HMAC-SHA-256(pepper, full key text).
pub fn hash_api_key(pepper: &[u8; 32], full: &str) -> String {
    // HMAC zero-pads a key shorter than the hash's 64-byte block (RFC 2104), so keying with the
    // padded block is HMAC keyed with `pepper` itself — and, unlike `new_from_slice`, infallible.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(pepper);
    let mut mac = <Hmac<Sha256> as Mac>::new(&block.into());
    mac.update(full.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a presented key against a stored hash (compute HMAC, compare the hex
/// strings with [`crate::constant_time_eq`]).
pub fn verify_api_key(pepper: &[u8; 32], full: &str, stored_hash: &str) -> bool {
    constant_time_eq(
        hash_api_key(pepper, full).as_bytes(),
        stored_hash.as_bytes(),
    )
}

/// A client secret `uoscs_<43 base62>_<6-char checksum>` (checksum = CRC-32 of
/// `uoscs_<43 chars>`), for OAuth2 client credentials. Store it like an API key, with
/// [`hash_api_key`].
pub fn generate_client_secret() -> String {
    with_checksum(format!(
        "{CLIENT_SECRET_PREFIX}{}",
        random_base62(SECRET_LEN)
    ))
}

/// The offline checks of [`parse_api_key`] for a client secret: ASCII, `uoscs_`, length 56,
/// 43 base62 characters, `_`, a matching 6-character checksum. Returns the input.
pub fn parse_client_secret(raw: &str) -> Result<&str, MalformedKey> {
    let [_secret] = check(raw, CLIENT_SECRET_PREFIX, CLIENT_SECRET_FIELDS)?;
    Ok(raw)
}

/// `text` followed by `_` and its checksum.
fn with_checksum(mut text: String) -> String {
    let sum = checksum(text.as_bytes());
    text.reserve(1 + CHECKSUM_LEN);
    text.push('_');
    text.extend(sum.iter().map(|&b| char::from(b)));
    text
}

/// `n` characters drawn uniformly from [`BASE62`] with the OS RNG.
fn random_base62(n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        OsRng.fill_bytes(&mut buf);
        for &b in buf
            .iter()
            .filter(|&&b| b < UNBIASED_BYTE_LIMIT)
            .take(n - out.len())
        {
            out.push(char::from(BASE62[usize::from(b % 62)]));
        }
    }
    out
}

/// Checks `raw` against `<tag><field>_<field>…_<checksum>` and returns the fields. Cheapest
/// checks first, and no allocation, because this runs on every presented credential, including
/// an attacker's junk.
fn check<'a, const N: usize>(
    raw: &'a str,
    tag: &str,
    lens: [usize; N],
) -> Result<[&'a str; N], MalformedKey> {
    // First, so a multi-byte string of the right byte length is reported as what it is.
    if !raw.is_ascii() {
        return Err(MalformedKey::NotAscii);
    }
    let body = raw.strip_prefix(tag).ok_or(MalformedKey::WrongPrefix)?;
    if raw.len() != encoded_len(tag, &lens) {
        return Err(MalformedKey::WrongLength);
    }
    let mut parts = body.split('_');
    let mut fields = [""; N];
    for (field, len) in fields.iter_mut().zip(lens) {
        *field = parts
            .next()
            .filter(|p| is_base62_of_len(p, len))
            .ok_or(MalformedKey::BadShape)?;
    }
    let shaped = parts
        .next()
        .is_some_and(|p| is_base62_of_len(p, CHECKSUM_LEN))
        && parts.next().is_none();
    // With the shape known good, the last '_' is the one before the checksum.
    let Some((checked, sum)) = raw.rsplit_once('_').filter(|_| shaped) else {
        return Err(MalformedKey::BadShape);
    };
    if sum.as_bytes() != checksum(checked.as_bytes()) {
        return Err(MalformedKey::BadChecksum);
    }
    Ok(fields)
}

fn encoded_len(tag: &str, fields: &[usize]) -> usize {
    // Each field is followed by a `_`, then comes the checksum.
    tag.len() + fields.iter().map(|len| len + 1).sum::<usize>() + CHECKSUM_LEN
}

fn is_base62_of_len(part: &str, len: usize) -> bool {
    part.len() == len && part.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// CRC-32 (IEEE) of `text` as 6 base62 digits, most significant first, zero-padded.
fn checksum(text: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(text);
    let mut digits = [BASE62[0]; CHECKSUM_LEN];
    for digit in digits.iter_mut().rev() {
        // `n % 62` < 62, so the index is always in range.
        *digit = BASE62[(n % 62) as usize];
        n /= 62;
    }
    digits
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;

    use super::*;

    /// A key whose random parts are all '0', with its checksum computed outside Rust:
    /// `zlib.crc32(b"uos_000000000000_000…0")` = 0x6e58e516 = base62 `21Hwn8`.
    const ZERO_KEY: &str = "uos_000000000000_0000000000000000000000000000000000000000000_21Hwn8";

    /// An independent reading of the format: no shared code with `check` except the CRC itself
    /// (pinned separately by `crc_is_ieee`).
    fn oracle_accepts(s: &str) -> bool {
        let b = s.as_bytes();
        if b.len() != 67 || !s.starts_with("uos_") || b[16] != b'_' || b[60] != b'_' {
            return false;
        }
        let alnum = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_alphanumeric);
        if !(alnum(4..16) && alnum(17..60) && alnum(61..67)) {
            return false;
        }
        oracle_checksum(&s[..60]) == s[61..]
    }

    fn oracle_checksum(text: &str) -> String {
        let alphabet: Vec<char> = ('0'..='9').chain('A'..='Z').chain('a'..='z').collect();
        let mut n = u64::from(crc32fast::hash(text.as_bytes()));
        let mut digits = Vec::new();
        while n > 0 {
            digits.push(alphabet[(n % 62) as usize]);
            n /= 62;
        }
        let digits: String = digits.iter().rev().collect();
        format!("{digits:0>6}")
    }

    fn replace_at(s: &str, i: usize, c: char) -> String {
        let mut out = String::with_capacity(s.len() + 4);
        out.push_str(&s[..i]);
        out.push(c);
        out.push_str(&s[i + 1..]);
        out
    }

    #[test]
    fn api_key_len_is_67() {
        assert_eq!(API_KEY_LEN, 67);
        assert_eq!(ZERO_KEY.len(), API_KEY_LEN);
        assert_eq!(encoded_len(CLIENT_SECRET_PREFIX, &CLIENT_SECRET_FIELDS), 56);
    }

    #[test]
    fn crc_is_ieee() {
        // The CRC-32 check value from the catalogue: CRC-32/ISO-HDLC of "123456789".
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(&checksum(b"123456789"), b"3jZRME");
    }

    #[test]
    fn checksum_known_answers() {
        let signed = &ZERO_KEY[..60];
        assert_eq!(&checksum(signed.as_bytes()), b"21Hwn8");
        assert_eq!(oracle_checksum(signed), "21Hwn8");
        // From Python: base62 of zlib.crc32(b"uos_AbCdEf012345_" + b"x" * 43).
        let other = format!("uos_AbCdEf012345_{}", "x".repeat(43));
        assert_eq!(&checksum(other.as_bytes()), b"24H5pX");
        assert_eq!(
            parse_api_key(ZERO_KEY),
            Ok(ParsedApiKey {
                prefix: "000000000000",
                full: ZERO_KEY
            })
        );
    }

    #[test]
    fn checksum_is_fixed_width() {
        // Smallest and largest CRC values: padded to, and still within, six digits.
        let encode = |mut n: u32| {
            let mut d = [b'0'; 6];
            for digit in d.iter_mut().rev() {
                *digit = BASE62[(n % 62) as usize];
                n /= 62;
            }
            (d, n)
        };
        assert_eq!(encode(0), (*b"000000", 0));
        assert_eq!(encode(u32::MAX), (*b"4gfFC3", 0), "nothing left over");
    }

    #[test]
    fn generated_keys_parse_and_have_the_layout() {
        for _ in 0..100 {
            let new = generate_api_key();
            assert_eq!(new.key.len(), API_KEY_LEN);
            let parsed = parse_api_key(&new.key).unwrap();
            assert_eq!(parsed.prefix, new.prefix);
            assert_eq!(parsed.full, new.key);
            assert!(oracle_accepts(&new.key));
            assert!(looks_like_api_key(&new.key));

            let rest = new.key.strip_prefix("uos_").unwrap();
            let parts: Vec<&str> = rest.split('_').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [12, 43, 6]
            );
            assert_eq!(parts[0], new.prefix);
            assert!(parts.iter().all(|p| p.bytes().all(|b| BASE62.contains(&b))));
        }
    }

    #[test]
    fn generations_differ() {
        let a = generate_api_key();
        let b = generate_api_key();
        assert_ne!(a.key, b.key);
        assert_ne!(a.prefix, b.prefix);
        assert_ne!(generate_client_secret(), generate_client_secret());
    }

    #[test]
    fn random_characters_cover_the_alphabet() {
        // 20 keys give 1100 random characters; each symbol is expected ~18 times, so a missing
        // one would mean a broken mapping, not bad luck (p ≈ 62 × e^-18).
        let mut seen = [false; 256];
        for _ in 0..20 {
            let key = generate_api_key().key;
            for b in key[4..60].bytes().filter(|&b| b != b'_') {
                seen[usize::from(b)] = true;
            }
        }
        for &b in BASE62 {
            assert!(seen[usize::from(b)], "{:?} never drawn", char::from(b));
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let new = generate_api_key();
        let shown = format!("{new:?}");
        assert!(!shown.contains(&new.key));
        assert!(shown.contains(&new.prefix));
    }

    #[test]
    fn every_single_substitution_is_rejected() {
        let key = generate_api_key().key;
        let candidates: Vec<char> = BASE62
            .iter()
            .map(|&b| char::from(b))
            .chain(['_', '-', '.', ' ', '+', '/', '='])
            .collect();
        for i in 0..key.len() {
            let original = char::from(key.as_bytes()[i]);
            for &c in candidates.iter().filter(|&&c| c != original) {
                let bad = replace_at(&key, i, c);
                let got = parse_api_key(&bad);
                let expected = match i {
                    0..=3 => MalformedKey::WrongPrefix,
                    16 | 60 => MalformedKey::BadShape,
                    _ if c.is_ascii_alphanumeric() => MalformedKey::BadChecksum,
                    _ => MalformedKey::BadShape,
                };
                assert_eq!(got, Err(expected), "{bad:?}");
            }
        }
    }

    #[test]
    fn truncations_are_rejected() {
        let key = generate_api_key().key;
        for len in 0..API_KEY_LEN {
            let got = parse_api_key(&key[..len]);
            let expected = if len < 4 {
                MalformedKey::WrongPrefix
            } else {
                MalformedKey::WrongLength
            };
            assert_eq!(got, Err(expected), "length {len}");
        }
        assert_eq!(
            parse_api_key(&format!("{key}0")),
            Err(MalformedKey::WrongLength)
        );
        assert_eq!(
            parse_api_key(&key[1..]),
            Err(MalformedKey::WrongPrefix),
            "front-truncated"
        );
    }

    #[test]
    fn wrong_prefix_is_rejected() {
        let key = generate_api_key().key;
        for tag in ["UOS_", "uos-", "xos_", "Uos_", "uos.", "uoscs_"] {
            let bad = format!("{tag}{}", &key[4..]);
            assert_eq!(parse_api_key(&bad), Err(MalformedKey::WrongPrefix), "{bad}");
        }
        assert!(!looks_like_api_key("UOS_abc"));
        assert!(!looks_like_api_key("uoscs_abc"));
        assert!(looks_like_api_key("uos_"), "routing only, not validity");
    }

    #[test]
    fn non_ascii_is_rejected_without_panicking() {
        let key = generate_api_key().key;
        for c in ['é', '０', '٣', 'ß', '€', '😀'] {
            for i in [0, 3, 4, 16, 30, 60, 66] {
                let bad = replace_at(&key, i, c);
                assert_eq!(parse_api_key(&bad), Err(MalformedKey::NotAscii), "{bad:?}");
                assert_eq!(
                    parse_client_secret(&bad),
                    Err(MalformedKey::NotAscii),
                    "{bad:?}"
                );
            }
        }
        assert!(parse_api_key(&replace_at(&key, 30, '\u{0}')).is_err());
        // Byte length exactly 67 with multi-byte characters: two ASCII characters become one
        // two-byte 'é', three become one three-byte full-width digit.
        let two = format!("{}é{}", &key[..20], &key[22..]);
        let three = format!("{}０{}", &key[..30], &key[33..]);
        let four = format!("{}😀{}", &key[..62], &key[66..]);
        let all = format!("uos_{}", "é".repeat(31) + "a");
        for bad in [two, three, four, all] {
            assert_eq!(bad.len(), API_KEY_LEN, "{bad:?}");
            assert_eq!(parse_api_key(&bad), Err(MalformedKey::NotAscii), "{bad:?}");
        }
    }

    #[test]
    fn extra_or_missing_separators_are_rejected() {
        let key = generate_api_key().key;
        let cases = [
            // Same length, a separator moved or added.
            replace_at(&key, 10, '_'),
            replace_at(&key, 64, '_'),
            format!("uos__{}", &key[5..]),
            format!("{}__{}", &key[..16], &key[18..]),
            format!("{}_{}", &key[..66], "_"),
            // Separator removed (one character short, so also the wrong length).
            format!("{}{}", &key[..16], &key[17..]),
        ];
        for bad in &cases {
            let got = parse_api_key(bad);
            assert!(
                matches!(got, Err(MalformedKey::BadShape | MalformedKey::WrongLength)),
                "{bad:?} gave {got:?}"
            );
        }
        assert_eq!(
            parse_api_key(&format!("{key}_")),
            Err(MalformedKey::WrongLength)
        );
    }

    #[test]
    fn hash_is_deterministic_and_pepper_dependent() {
        let key = generate_api_key().key;
        let pepper = [7u8; 32];
        let h = hash_api_key(&pepper, &key);
        assert_eq!(h, hash_api_key(&pepper, &key));
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(h, hash_api_key(&[8u8; 32], &key));
        assert_ne!(h, hash_api_key(&pepper, &generate_api_key().key));
    }

    #[test]
    fn hash_matches_an_independent_hmac_sha256() {
        // Computed outside Rust:
        // hmac.new(bytes(range(32)), ZERO_KEY.encode(), hashlib.sha256).hexdigest()
        let pepper: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            hash_api_key(&pepper, ZERO_KEY),
            "f441f881eaba2151d47066ccafb9dbc77da3da4482afdd18ec5a914c1b2c952b"
        );
        // And the padded-block keying equals keying with the 32 bytes themselves.
        let mut mac = Hmac::<Sha256>::new_from_slice(&pepper).unwrap();
        mac.update(ZERO_KEY.as_bytes());
        assert_eq!(
            hash_api_key(&pepper, ZERO_KEY),
            hex::encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn verify_accepts_only_the_right_key_and_pepper() {
        let pepper = [1u8; 32];
        let key = generate_api_key().key;
        let stored = hash_api_key(&pepper, &key);
        assert!(verify_api_key(&pepper, &key, &stored));
        assert!(!verify_api_key(&pepper, &generate_api_key().key, &stored));
        assert!(!verify_api_key(&[2u8; 32], &key, &stored));
        assert!(!verify_api_key(&pepper, &key, &stored.to_uppercase()));
        assert!(!verify_api_key(&pepper, &key, &stored[..63]));
        assert!(!verify_api_key(&pepper, &key, ""));
    }

    #[test]
    fn client_secrets_parse_and_reject() {
        let zero = "uoscs_0000000000000000000000000000000000000000000_3eEppY";
        assert_eq!(parse_client_secret(zero), Ok(zero), "checksum from Python");

        let secret = generate_client_secret();
        assert_eq!(secret.len(), 56);
        assert!(secret.starts_with("uoscs_"));
        assert_eq!(parse_client_secret(&secret), Ok(secret.as_str()));
        assert!(!looks_like_api_key(&secret));
        assert_eq!(parse_api_key(&secret), Err(MalformedKey::WrongPrefix));
        assert_eq!(
            parse_client_secret(&generate_api_key().key),
            Err(MalformedKey::WrongPrefix)
        );
        for len in 0..secret.len() {
            assert!(parse_client_secret(&secret[..len]).is_err());
        }
        for i in 6..secret.len() {
            let original = char::from(secret.as_bytes()[i]);
            let c = if original == 'a' { 'b' } else { 'a' };
            let expected = if i == 49 {
                MalformedKey::BadShape
            } else {
                MalformedKey::BadChecksum
            };
            assert_eq!(
                parse_client_secret(&replace_at(&secret, i, c)),
                Err(expected)
            );
        }
        assert_eq!(
            parse_client_secret(&format!("{}é{}", &secret[..10], &secret[12..])),
            Err(MalformedKey::NotAscii)
        );
    }

    const SHAPED: &str = "uos_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}_[0-9A-Za-z]{6}";

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,80}") {
            let got = parse_api_key(&s);
            prop_assert_eq!(got.is_ok(), oracle_accepts(&s));
            prop_assert!(parse_client_secret(&s).is_err());
        }

        #[test]
        fn spliced_keys_are_judged_like_the_oracle(
            a in 0..=API_KEY_LEN, b in 0..=API_KEY_LEN, insert in "\\PC{0,4}|[0-9A-Za-z_]{0,4}"
        ) {
            let (from, to) = (a.min(b), a.max(b));
            let s = format!("{}{insert}{}", &ZERO_KEY[..from], &ZERO_KEY[to..]);
            let got = parse_api_key(&s);
            prop_assert_eq!(got.is_ok(), oracle_accepts(&s), "{:?} gave {:?}", s, got);
        }

        #[test]
        fn well_shaped_strings_pass_only_with_the_right_checksum(s in SHAPED) {
            let got = parse_api_key(&s);
            prop_assert_eq!(got.is_ok(), oracle_accepts(&s));
            if got.is_err() {
                prop_assert_eq!(got, Err(MalformedKey::BadChecksum));
            }
        }

        #[test]
        fn well_shaped_with_their_checksum_pass(
            prefix in "[0-9A-Za-z]{12}", secret in "[0-9A-Za-z]{43}"
        ) {
            let signed = format!("uos_{prefix}_{secret}");
            let key = format!("{signed}_{}", oracle_checksum(&signed));
            prop_assert_eq!(
                parse_api_key(&key),
                Ok(ParsedApiKey { prefix: &prefix, full: &key })
            );
        }
    }
}
