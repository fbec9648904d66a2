//! Twilio SIDs: a two-letter prefix naming the resource type, then 32 hex digits.

use std::fmt;

/// The resource types tokenmint accepts SIDs for, each with its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidKind {
    /// `AC`: an account.
    Account,
    /// `SK`: an API key.
    ApiKey,
    /// `IS`: a Chat/Conversations or Sync service.
    ChatService,
    /// `IS`: a Sync service.
    SyncService,
    /// `RL`: a Chat deployment role.
    Role,
    /// `CR`: a push credential.
    Credential,
    /// `AP`: a TwiML application.
    Application,
    /// `WS`: a TaskRouter workspace.
    Workspace,
    /// `WK`: a TaskRouter worker.
    Worker,
}

impl SidKind {
    /// The two-letter prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Account => "AC",
            Self::ApiKey => "SK",
            Self::ChatService | Self::SyncService => "IS",
            Self::Role => "RL",
            Self::Credential => "CR",
            Self::Application => "AP",
            Self::Workspace => "WS",
            Self::Worker => "WK",
        }
    }
}

/// A SID that does not match its kind's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be '{prefix}' followed by 32 hex digits")]
pub struct SidError {
    prefix: &'static str,
}

/// A SID checked against its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sid(String);

impl Sid {
    /// Checks `value` against the format of `kind`.
    pub fn parse(value: &str, kind: SidKind) -> Result<Self, SidError> {
        let prefix = kind.prefix();
        let valid = value.len() == 34
            && value.starts_with(prefix)
            && value.as_bytes()[2..].iter().all(u8::is_ascii_hexdigit);
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(SidError { prefix })
        }
    }

    /// The SID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserializers that parse a SID of one kind where settings are read, so a provider only ever sees valid SIDs.
pub mod de {
    use serde::{Deserialize, Deserializer};

    use super::{Sid, SidKind};

    fn parse<'de, D: Deserializer<'de>>(deserializer: D, kind: SidKind) -> Result<Sid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sid::parse(&text, kind).map_err(serde::de::Error::custom)
    }

    /// An account SID.
    pub fn account<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Sid, D::Error> {
        parse(deserializer, SidKind::Account)
    }

    /// An API key SID.
    pub fn api_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Sid, D::Error> {
        parse(deserializer, SidKind::ApiKey)
    }

    /// An optional Chat service SID.
    pub fn chat_service<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Sid>, D::Error> {
        parse(deserializer, SidKind::ChatService).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_prefix_and_32_hex_digits() {
        let sid =
            Sid::parse("AC0123456789abcdef0123456789abcdef", SidKind::Account).expect("valid");
        assert_eq!(sid.as_str(), "AC0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn refuses_wrong_prefix_length_or_digits() {
        let cases = [
            ("SK0123456789abcdef0123456789abcdef", "wrong prefix"),
            ("AC0123456789abcdef0123456789abcde", "31 digits"),
            ("AC0123456789abcdef0123456789abcdef0", "33 digits"),
            ("AC0123456789abcdef0123456789abcdeg", "not hex"),
            ("", "empty"),
            ("ACé123456789abcdef0123456789abcde", "multibyte"),
        ];
        for (value, why) in cases {
            let err = Sid::parse(value, SidKind::Account).expect_err(why);
            assert_eq!(
                err.to_string(),
                "must be 'AC' followed by 32 hex digits",
                "{why}"
            );
        }
    }
}
