//! Small free-text values with bounds: display names, locales and time zones.

use crate::org::parse_display_name;
use crate::user::{parse_locale, parse_timezone};
use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $parse:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                $parse(raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_value!(/// A person- or org-facing name: 1-200 characters, trimmed, no control characters.
    DisplayName, parse_display_name);
text_value!(/// A BCP 47-shaped language tag.
    Locale, parse_locale);
text_value!(/// An IANA time-zone name.
    Timezone, parse_timezone);
