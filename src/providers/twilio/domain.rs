//! Twilio's domain types, each parsed once with its own error: an identity and a region.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Longest identity accepted (Sync's limit; the largest of Twilio's products).
pub const MAX_IDENTITY_CHARS: usize = 256;
/// Longest identity Video accepts.
pub const MAX_VIDEO_IDENTITY_CHARS: usize = 128;

/// A user identity: 1..=256 characters, no control characters. Case-sensitive, as Twilio treats it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity(String);

impl Identity {
    /// The identity text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a value is not an identity; answered as 400 `invalid_identity`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdentityError(String);

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        ApiError::invalid("invalid_identity", e.0)
    }
}

impl TryFrom<Option<String>> for Identity {
    type Error = IdentityError;

    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        let value = value.ok_or_else(|| invalid_identity("identity is required".to_owned()))?;
        if value.is_empty() {
            return Err(invalid_identity("identity must not be empty".to_owned()));
        }
        if value.chars().count() > MAX_IDENTITY_CHARS {
            return Err(invalid_identity(format!(
                "identity must be at most {MAX_IDENTITY_CHARS} characters"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid_identity(
                "identity must not contain control characters".to_owned(),
            ));
        }
        Ok(Self(value))
    }
}

fn invalid_identity(message: String) -> IdentityError {
    IdentityError(message)
}

/// A Twilio region code such as `ie1` or `us1`: 2..=16 characters of lowercase letters, digits and `-`,
/// starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region(String);

/// A region that does not match the format.
#[derive(Debug, thiserror::Error)]
#[error(
    "region must be 2 to 16 lowercase letters, digits or '-', starting with a letter (e.g. ie1)"
)]
pub struct RegionError;

impl TryFrom<&str> for Region {
    type Error = RegionError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let ok = (2..=16).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(RegionError)
        }
    }
}

impl Region {
    /// The region code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Region {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::try_from(text.as_str()).map_err(serde::de::Error::custom)
    }
}
