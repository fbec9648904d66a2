//! NetEase's domain types, parsed once from the form: a uid, a room name, the repeat-use flag. Each has its own
//! error, which the handlers answer as a 414 naming the problem.

/// Why a form field does not make a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// `uid` is absent or empty.
    #[error("uid is empty")]
    UidEmpty,
    /// `uid` has something besides digits.
    #[error("uid must be a Long: digits only")]
    UidNotDigits,
    /// `uid` has a leading zero (one number, one spelling).
    #[error("uid must be a Long without leading zeros")]
    UidLeadingZero,
    /// `uid` is past `Long.MAX_VALUE`.
    #[error("uid is out of the Long range")]
    UidOutOfRange,
    /// `channelName` is too long.
    #[error("channelName must be at most {0} characters")]
    ChannelTooLong(usize),
    /// `channelName` has a character NERTC does not allow.
    #[error("channelName may contain only ASCII letters, digits and {CHANNEL_SPECIALS}")]
    ChannelCharacters,
    /// `repeatUse` is neither `true` nor `false`.
    #[error("repeatUse must be true or false")]
    RepeatUse,
}

/// A user id: NetEase's `Long`, digits only, canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uid(u64);

impl Uid {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<Option<&str>> for Uid {
    type Error = DomainError;

    fn try_from(value: Option<&str>) -> Result<Self, Self::Error> {
        let value = value.unwrap_or_default();
        if value.is_empty() {
            return Err(DomainError::UidEmpty);
        }
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::UidNotDigits);
        }
        if !crate::decimal::is_canonical(value) {
            return Err(DomainError::UidLeadingZero);
        }
        crate::decimal::parse_i64(value)
            .and_then(|n| u64::try_from(n).ok())
            .map(Self)
            .ok_or(DomainError::UidOutOfRange)
    }
}

/// A room name; empty means "any room".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName(String);

/// The characters NERTC allows in a channel name besides ASCII letters and digits.
const CHANNEL_SPECIALS: &str = "!#$%&()+-:;<=.>?@[]^_{|}~,";

impl ChannelName {
    /// Parses an optional channelName; an absent or empty one is "any room".
    pub fn parse(value: Option<&str>, max_chars: usize) -> Result<Self, DomainError> {
        let value = value.unwrap_or_default();
        if value.chars().count() > max_chars {
            return Err(DomainError::ChannelTooLong(max_chars));
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || CHANNEL_SPECIALS.contains(c))
        {
            return Err(DomainError::ChannelCharacters);
        }
        Ok(Self(value.to_owned()))
    }

    /// The name ("" for any room).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The rooms a token may be bound to and still admit here: this room, then "any room".
    pub fn candidate_rooms(&self) -> Vec<&str> {
        if self.0.is_empty() {
            vec![""]
        } else {
            vec![self.as_str(), ""]
        }
    }
}

/// Parses `repeatUse`: `true`/`false` in any case; absent means `true`.
pub fn repeat_use(value: Option<&str>) -> Result<bool, DomainError> {
    match value {
        None | Some("") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(DomainError::RepeatUse),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_a_canonical_long() {
        let cases = [
            (Some("123456"), Ok(123_456)),
            (Some("0"), Ok(0)),
            (None, Err(DomainError::UidEmpty)),
            (Some(""), Err(DomainError::UidEmpty)),
            (Some("12a"), Err(DomainError::UidNotDigits)),
            (Some("-1"), Err(DomainError::UidNotDigits)),
            (Some("+1"), Err(DomainError::UidNotDigits)),
            (Some("0500"), Err(DomainError::UidLeadingZero)),
            (Some("9223372036854775807"), Ok(9_223_372_036_854_775_807)),
            (Some("9223372036854775808"), Err(DomainError::UidOutOfRange)),
        ];
        for (value, expected) in cases {
            assert_eq!(Uid::try_from(value).map(Uid::get), expected, "{value:?}");
        }
    }

    #[test]
    fn a_channel_name_is_bounded_and_uses_nertc_characters() {
        assert_eq!(ChannelName::parse(None, 4).expect("any room").as_str(), "");
        assert_eq!(
            ChannelName::parse(Some("r-1:x"), 5)
                .expect("valid")
                .candidate_rooms(),
            vec!["r-1:x", ""]
        );
        assert_eq!(
            ChannelName::parse(Some("room1"), 4),
            Err(DomainError::ChannelTooLong(4))
        );
        assert_eq!(
            ChannelName::parse(Some("room 1"), 64),
            Err(DomainError::ChannelCharacters)
        );
        assert_eq!(
            ChannelName::parse(Some("房间"), 64),
            Err(DomainError::ChannelCharacters)
        );
    }

    #[test]
    fn repeat_use_is_true_false_or_absent() {
        assert_eq!(repeat_use(None), Ok(true));
        assert_eq!(repeat_use(Some("FALSE")), Ok(false));
        assert_eq!(repeat_use(Some("True")), Ok(true));
        assert_eq!(repeat_use(Some("no")), Err(DomainError::RepeatUse));
    }
}
