//! `OrgSlug`: the URL-safe, unique handle of an organization.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`: 3 to 63 characters, lower-case letters, digits and
/// inner hyphens, so it is valid as a DNS label and in a URL path without escaping.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OrgSlug(String);

impl OrgSlug {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let ok_len = (3..=63).contains(&raw.len());
        let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let bytes = raw.as_bytes();
        let ok = ok_len
            && bytes.first().copied().is_some_and(edge)
            && bytes.last().copied().is_some_and(edge)
            && bytes.iter().all(|&c| edge(c) || c == b'-');
        if ok {
            Ok(Self(raw.to_string()))
        } else {
            Err(DomainError::invalid(
                "invalid_slug",
                "slug must be 3-63 characters of a-z, 0-9 and inner '-'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrgSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OrgSlug::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_and_rejects() {
        for good in ["acme", "a-b", "abc", "0rg", &"a".repeat(63)] {
            assert!(OrgSlug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "ab",
            "-abc",
            "abc-",
            "Acme",
            "a_b",
            "a b",
            "ac/me",
            &"a".repeat(64),
            "ünï",
        ] {
            assert!(OrgSlug::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn matches_the_contract_regex(s in "\\PC{0,70}") {
            // Reference implementation of ^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$ written differently.
            let chars: Vec<char> = s.chars().collect();
            let inner = |c: &char| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-';
            let edge = |c: &char| c.is_ascii_lowercase() || c.is_ascii_digit();
            let expected = chars.len() >= 3 && chars.len() <= 63
                && edge(&chars[0]) && edge(&chars[chars.len() - 1])
                && chars.iter().all(inner);
            prop_assert_eq!(OrgSlug::parse(&s).is_ok(), expected);
        }

        #[test]
        fn valid_slugs_parse(s in "[a-z0-9][a-z0-9-]{1,61}[a-z0-9]") {
            prop_assert!(OrgSlug::parse(&s).is_ok());
        }
    }
}
