//! `Email`: a trimmed, lower-cased address, the unit of user identity and uniqueness.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An email address normalised for comparison: surrounding whitespace removed and the whole
/// address lower-cased, so `Ann@Example.COM ` and `ann@example.com` are one user.
///
/// Validation is deliberately structural (one `@`, sane lengths, a DNS-like domain): the only
/// real proof that an address works is a mail that arrives, which invites and recovery do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().to_lowercase();
        let bad = |m: &str| DomainError::invalid("invalid_email", m.to_string());
        if s.is_empty() {
            return Err(bad("email must not be empty"));
        }
        if s.len() > 254 {
            return Err(bad("email must be at most 254 characters"));
        }
        let (local, domain) = s
            .split_once('@')
            .ok_or_else(|| bad("email must contain '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before '@' must be 1 to 64 characters"));
        }
        if local.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '@' | '<' | '>' | '"' | ',')
        }) {
            return Err(bad("email contains a character that is not allowed"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(bad("the part before '@' has misplaced dots"));
        }
        if domain.is_empty() || domain.len() > 253 {
            return Err(bad("the domain must be 1 to 253 characters"));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if !domain.split('.').all(label_ok) {
            return Err(bad("the domain is not a valid host name"));
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.split_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let e = Email::parse("  Ann.Lee@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "ann.lee@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn accepts_single_label_domain_for_localhost() {
        assert!(Email::parse("admin@localhost").is_ok());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "   ",
            "no-at",
            "@example.com",
            "a@",
            "a@@b.com",
            "a b@c.com",
            "a@-b.com",
            "a@b..com",
            ".a@b.com",
            "a..b@c.com",
            "a@b_c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Email::parse(&format!("{}@b.com", "a".repeat(65))).is_err());
    }

    proptest! {
        #[test]
        fn parse_is_idempotent(local in "[a-zA-Z0-9._%+-]{1,20}", domain in "[a-zA-Z0-9]{1,10}(\\.[a-zA-Z]{2,5}){0,2}") {
            let raw = format!("{local}@{domain}");
            if let Ok(e) = Email::parse(&raw) {
                let again = Email::parse(e.as_str()).unwrap();
                prop_assert_eq!(&e, &again);
                prop_assert_eq!(e.as_str(), raw.to_lowercase());
            }
        }

        #[test]
        fn case_insensitive_equality(s in "[a-z]{1,10}@[a-z]{1,10}\\.com") {
            prop_assert_eq!(Email::parse(&s.to_uppercase()).unwrap(), Email::parse(&s).unwrap());
        }

        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            let _ = Email::parse(&s);
        }
    }
}
